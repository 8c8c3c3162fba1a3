#!/usr/bin/env python3
"""The page at GET / in a real headless browser.

Starts `identity-graph serve` on a fresh store (ports 0), then drives the server's own page with
Playwright and Debian's chromium: identifies through the form, looks up profiles, explains a
link, unmerges it, erases a contact. Prints one line per check and, last, `N passed, M failed`;
exits 0 only when every check passed.

    python3 Tests/Browser/admin_page.py .build/debug/identity-graph [--screenshot admin.png]

The binary may instead be named by IDENTITY_GRAPH_BINARY. Needs `chromium` (apt) and
`playwright` (PyPI), which .ci/setup installs; `playwright install` is never needed.
"""

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"


class Checks:
    """Counts and prints the checks; a failed check does not stop the run."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def expect(self, name, condition, detail=""):
        if condition:
            self.passed += 1
            print(f"ok: {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAILED: {name}" + (f": {detail}" if detail else ""), flush=True)
        return condition

    def equal(self, name, actual, expected):
        return self.expect(name, actual == expected, f"expected {expected!r}, got {actual!r}")

    def summary(self):
        return f"{self.passed} passed, {self.failed} failed"


class Server:
    """`identity-graph serve` on a temporary store, HTTP and line protocol on ports 0."""

    def __init__(self, binary):
        self.directory = tempfile.mkdtemp(prefix="identity-graph-browser-")
        self.log_path = os.path.join(self.directory, "server.log")
        self.process = None
        try:
            with open(self.log_path, "w") as log:
                self.process = subprocess.Popen(
                    [binary, "serve", "--data-dir", os.path.join(self.directory, "store"),
                     "--http-port", "0", "--tcp-port", "0"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
                )
            self.url = self._wait_until_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_until_listening(self, timeout=30):
        lines = queue.Queue()

        def read():
            # Keeps draining stdout so the server never blocks on a full pipe.
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the server printed no 'http listening on' line within {timeout} s")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                status = self.process.wait()
                raise RuntimeError(f"the server exited ({status}) before listening: {self.log().strip()}")
            match = re.fullmatch(r"http listening on (.+):(\d+)", line.strip())
            if match:
                host = match.group(1)
                if ":" in host and not host.startswith("["):
                    host = f"[{host}]"
                return f"http://{host}:{match.group(2)}"

    def log(self):
        try:
            with open(self.log_path) as log:
                return log.read()
        except OSError:
            return ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class Traffic:
    """What a page sent (method, URL, body) and the script errors it raised."""

    def __init__(self, page):
        self.sent = []
        self.script_errors = []
        page.on("request", lambda request: self.sent.append((request.method, request.url, request.post_data)))
        page.on("pageerror", lambda error: self.script_errors.append(str(error)))

    def last(self, method):
        matching = [sent for sent in self.sent if sent[0] == method]
        return matching[-1] if matching else (None, None, None)

    def count(self, method):
        return len([sent for sent in self.sent if sent[0] == method])


def open_page(browser, url):
    """A laptop-sized page on the server's own GET /, and what it sends."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(15_000)
    traffic = Traffic(page)
    page.goto(url + "/")
    return page, traffic


def press(page, selector):
    """Clicks `selector` and waits until the output area shows the answer it caused."""
    before = int(page.get_attribute("#output", "data-answers"))
    page.click(selector)
    page.wait_for_selector(f'#output[data-state="done"][data-answers="{before + 1}"]', state="attached")


def fill(page, **values):
    for field, value in values.items():
        page.fill(f"#{field}", value)


def shown_profiles(page):
    return page.eval_on_selector_all(
        "#result .profile",
        """cards => cards.map(card => ({
            primary: Number(card.querySelector(".primary").textContent),
            secondaries: [...card.querySelectorAll(".secondaries li")].map(item => Number(item.textContent)),
            emails: [...card.querySelectorAll(".emails li")].map(item => item.textContent),
            phoneNumbers: [...card.querySelectorAll(".phoneNumbers li")].map(item => item.textContent),
        }))""",
    )


def profile(primary, secondaries, emails, phone_numbers):
    return {"primary": primary, "secondaries": secondaries, "emails": emails, "phoneNumbers": phone_numbers}


def text(page, selector):
    return page.inner_text(selector).strip() if page.query_selector(selector) else None


def drive(page, traffic, checks, screenshot):
    forms = ("identify", "lookup", "explain", "unmerge", "erase", "output")
    missing = [form for form in forms if page.query_selector(f"#{form}") is None]
    if not checks.expect("GET / serves the identify form, the admin forms and the output area", not missing,
                         f"missing #{', #'.join(missing)}"):
        return

    # Seed through the identify form. 1: g/919191, 2: b/717171; g/717171 joins them by a link
    # without a new row; 3: c/919191 (secondary of 1); 4: d/313131 and 5: d/424242.
    for email, phone in [("g@x.io", "919191"), ("b@x.io", "717171"), ("g@x.io", "717171")]:
        fill(page, email=email, phoneNumber=phone)
        press(page, "#identifySubmit")
    checks.equal("identify through the form shows the profile the link merged", shown_profiles(page),
                 [profile(1, [2], ["g@x.io", "b@x.io"], ["919191", "717171"])])
    for email, phone in [("c@x.io", "919191"), ("d@x.io", "313131"), ("d@x.io", "424242")]:
        fill(page, email=email, phoneNumber=phone)
        press(page, "#identifySubmit")
    fill(page, email="g@x.io", phoneNumber="  ")
    press(page, "#identifySubmit")
    _, _, body = traffic.last("POST")
    checks.equal("a blank identify field is sent as null", json.loads(body or "null"),
                 {"email": "g@x.io", "phoneNumber": None})

    # Look up.
    fill(page, lookupEmail="b@x.io")
    press(page, "#lookupSubmit")
    _, url, _ = traffic.last("GET")
    checks.equal("a look-up leaves the blank phone number out of the query",
                 urlsplit(url or "").query, "email=b%40x.io")
    checks.equal("looking up by email shows every member of the profile", shown_profiles(page),
                 [profile(1, [2, 3], ["g@x.io", "b@x.io", "c@x.io"], ["919191", "717171"])])
    fill(page, lookupEmail="", lookupContactId="5")
    press(page, "#lookupSubmit")
    checks.equal("looking up by contact id shows the profile holding that contact", shown_profiles(page),
                 [profile(4, [5], ["d@x.io"], ["313131", "424242"])])
    fill(page, lookupEmail="b@x.io", lookupPhoneNumber="313131", lookupContactId="")
    press(page, "#lookupSubmit")
    checks.equal("an email and a phone number of two profiles show both",
                 [shown["primary"] for shown in shown_profiles(page)], [1, 4])

    # Explain.
    fill(page, explainFrom="3", explainTo="2")
    press(page, "#explainSubmit")
    steps = page.eval_on_selector_all("#steps li", "items => items.map(item => item.textContent)")
    checks.equal("explain says why the contacts are one person", text(page, "#verdict"),
                 "Contacts 3 and 2 are one person, in 2 steps:")
    link_step = r"1 → 2: joined by a link \(g@x\.io, 717171\) made at \d{4}-\d\d-\d\dT[0-9:.]+Z"
    checks.expect("explain shows the shared phone number and the link, in words",
                  len(steps) == 2 and steps[0] == "3 → 1: share phone number 919191"
                  and re.fullmatch(link_step, steps[1]) is not None, repr(steps))
    if screenshot:
        page.evaluate("window.scrollTo(0, 0)")  # so that the sticky answer column sits at the top
        page.screenshot(path=screenshot, full_page=True)
        checks.expect(f"the screenshot is written to {screenshot}",
                      os.path.isfile(screenshot) and os.path.getsize(screenshot) > 0)
    fill(page, explainFrom="1", explainTo="4")
    press(page, "#explainSubmit")
    verdict = text(page, "#verdict") or ""
    checks.expect("explain says when two contacts are not linked", "not linked" in verdict, repr(verdict))

    # Unmerge the link, keeping its two values apart.
    fill(page, unmergeEmail="g@x.io", unmergePhoneNumber="717171")
    page.check("#unmergeKeepApart")
    press(page, "#unmergeSubmit")
    _, _, body = traffic.last("POST")
    checks.equal("unmerge sends the link and the keep-apart box", json.loads(body or "null"),
                 {"email": "g@x.io", "phoneNumber": "717171", "keepApart": True})
    checks.equal("unmerging the link shows the two profiles it leaves", shown_profiles(page), [
        profile(1, [3], ["g@x.io", "c@x.io"], ["919191"]),
        profile(2, [], ["b@x.io"], ["717171"]),
    ])
    press(page, "#keepApartList")
    rules = page.eval_on_selector_all("#rules li", "items => items.map(item => item.textContent)")
    checks.expect("the keep-apart rule is listed",
                  len(rules) == 1 and rules[0].startswith("g@x.io and 717171, since "), repr(rules))

    # Erase: a dismissed confirm sends nothing; an accepted one erases.
    fill(page, eraseContactId="5")
    dialogs = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    deletes = traffic.count("DELETE")
    press(page, "#eraseSubmit")
    checks.expect("erase asks for confirmation, naming the contact",
                  len(dialogs) == 1 and dialogs[0].startswith("Erase contact 5?"), repr(dialogs))
    checks.expect("a dismissed confirmation sends nothing",
                  traffic.count("DELETE") == deletes
                  and "cancelled" in (text(page, "#status") or ""), repr(text(page, "#status")))

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    press(page, "#eraseSubmit")
    checks.equal("erasing shows the erased contact id", text(page, "#erased"), "Erased 1 contact: 5.")
    checks.equal("erasing shows what is left of the profile", shown_profiles(page),
                 [profile(4, [], ["d@x.io"], ["313131"])])
    fill(page, lookupEmail="", lookupPhoneNumber="", lookupContactId="5")
    press(page, "#lookupSubmit")
    problem_visible = page.is_visible("#problem")
    checks.expect("looking up the erased contact shows a 410 problem with its detail",
                  problem_visible and (text(page, "#problemStatus") or "").startswith("410")
                  and (text(page, "#problemDetail") or "") != "",
                  f"{text(page, '#problemStatus')!r}: {text(page, '#problemDetail')!r}")

    # What every step above sent.
    origin = page.url.rstrip("/")
    checks.expect("every request went to the server itself",
                  all(url.startswith(origin + "/") for _, url, _ in traffic.sent),
                  repr([url for _, url, _ in traffic.sent if not url.startswith(origin + "/")]))
    empty = [(method, url, body) for method, url, body in traffic.sent
             if re.search(r"=(&|$)", urlsplit(url).query) or (body and '""' in body)]
    checks.expect("no request sent an empty string", not empty, repr(empty))
    checks.expect("the page raised no script error", not traffic.script_errors, repr(traffic.script_errors))


def main():
    parser = argparse.ArgumentParser(description="Checks the admin page at GET / in headless chromium.")
    parser.add_argument("binary", nargs="?", default=os.environ.get("IDENTITY_GRAPH_BINARY"),
                        help="the identity-graph executable (default: $IDENTITY_GRAPH_BINARY)")
    parser.add_argument("--screenshot", metavar="PATH",
                        help="write a full-page screenshot (the page explaining a link) here")
    arguments = parser.parse_args()
    if not arguments.binary:
        parser.error("name the identity-graph executable, or set IDENTITY_GRAPH_BINARY")

    # A SIGTERM (a test runner's timeout) still stops the server, through the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    checks = Checks()
    server = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        checks.expect("Playwright can be imported", False,
                      "run .ci/setup (python3 -m pip install playwright)")
        print(checks.summary())
        return 1
    try:
        server = Server(arguments.binary)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                drive(*open_page(browser, server.url), checks, arguments.screenshot)
            finally:
                browser.close()
    except Exception as error:  # Any failure (a timeout, a missing browser) is a failed check.
        checks.expect("the run completes", False, f"{type(error).__name__}: {error}")
        if server is not None:
            print("server log:\n" + server.log(), flush=True)
    finally:
        if server is not None:
            server.stop()
    print(checks.summary())
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
