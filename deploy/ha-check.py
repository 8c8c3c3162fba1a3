#!/usr/bin/env python3
"""Kills the PostgreSQL primary of a `deploy/local-cluster.sh --ha` cluster under a load of identify
requests, and then checks that every acknowledged change is on all three servers.

    deploy/local-cluster.sh --ha &          # prints its directory, DIR; wait for "ready"
    deploy/ha-check.py DIR                  # DIR/cluster.env holds the ports and data directories

The load: --clients threads, each sending identify requests over HTTP to the leader that GET /cluster
names (found again after any refusal). Each request has a new email and a phone number from a pool of
100,000, so that some profiles grow; one in twenty reuses one of the client's recent emails with
another phone, which may join two profiles (a merge), while keeping profiles small. A request that is refused (503) or fails (connection error,
timeout) is sent again, same values, after --pause seconds, until it is acknowledged (identify is
idempotent on its values). Every acknowledged answer is recorded: the values sent and the contact ids
of the profile that came back.

At --kill-after seconds, the postmaster of the member whose Patroni answers GET /primary with 200 gets
SIGKILL (--kill none: no kill, a plain load). The load runs for --duration seconds in all. Then, once
the three servers have applied the same log position, every acknowledged answer is checked on every
server (GET /profiles?email=E&phoneNumber=P: one profile holding E and P and every id the answer had),
and GET /changes (all pages) must be identical on the three. Prints the timings and counts, writes them
as JSON with --json FILE, and exits 0 only when nothing acknowledged is missing.

Python's standard library only.
"""

import argparse
import http.client
import json
import os
import random
import signal
import sys
import threading
import time


def read_env(directory):
    values = {}
    with open(os.path.join(directory, "cluster.env")) as file:
        for line in file:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key] = value
    return values


class HTTP:
    """One keep-alive connection to 127.0.0.1:port, opened again after any failure."""

    def __init__(self, port, timeout=10):
        self.port = port
        self.timeout = timeout
        self.connection = None

    def request(self, method, path, body=None):
        """(status, headers, parsed JSON or text); raises OSError/HTTPException on connection trouble."""
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = None
            raise
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = data.decode("utf-8", "replace")
        return response.status, dict((k.lower(), v) for k, v in response.getheaders()), parsed


def ids_of(contact):
    return [contact["primaryContactId"]] + list(contact["secondaryContactIds"])


class Load:
    def __init__(self, servers, clients, pause, seed):
        self.servers = servers  # name -> http port
        self.clients = clients
        self.pause = pause
        self.seed = seed
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.acknowledged = []  # (email, phone, ids, time, node)
        self.events = []  # (time, kind): "ack", "503", "error", "other:STATUS"
        self.leader_port = None

    def find_leader(self, connections):
        """The leader's HTTP port, from GET /cluster on any server that answers."""
        for name, port in self.servers.items():
            try:
                status, _, body = connections[name].request("GET", "/cluster")
            except (OSError, http.client.HTTPException):
                continue
            if status == 200 and isinstance(body, dict) and body.get("leader"):
                address = body["leader"]["http"].rsplit(":", 1)
                return int(address[1]), body["leader"]["node"]
        return None, None

    def record(self, kind):
        with self.lock:
            self.events.append((time.time(), kind))

    def client(self, number):
        generator = random.Random(self.seed * 1000 + number)
        connections = {name: HTTP(port) for name, port in self.servers.items()}
        by_port = {port: name for name, port in self.servers.items()}
        sent_emails = []
        count = 0
        leader = None
        while not self.stopping.is_set():
            count += 1
            phone = str(5500000 + generator.randrange(100000))
            if sent_emails and generator.random() < 0.05:
                email = generator.choice(sent_emails)
            else:
                email = "c%d-%d@ha.test" % (number, count)
            body = json.dumps({"email": email, "phoneNumber": phone})
            # The same request until it is acknowledged (or the load ends).
            while not self.stopping.is_set():
                if leader is None:
                    leader, _ = self.find_leader(connections)
                    if leader is None:
                        self.record("no-leader")
                        time.sleep(self.pause)
                        continue
                node = by_port.get(leader, str(leader))
                try:
                    status, headers, answer = connections[node].request("POST", "/identify", body)
                except (OSError, http.client.HTTPException, KeyError):
                    self.record("error")
                    leader = None
                    time.sleep(self.pause)
                    continue
                if status == 200:
                    with self.lock:
                        now = time.time()
                        self.acknowledged.append((email, phone, ids_of(answer["contact"]), now, node))
                        self.events.append((now, "ack"))
                    if email not in sent_emails:
                        sent_emails = sent_emails[-999:] + [email]
                    break
                self.record("503" if status == 503 else "other:%d" % status)
                if status != 503:
                    print("unexpected answer %d: %s" % (status, answer), file=sys.stderr)
                leader = None
                time.sleep(self.pause)


class Patroni:
    """The two Patroni members of the --ha cluster, through their REST APIs and data directories."""

    def __init__(self, env):
        self.members = {}
        for member in ("1", "2"):
            if "PG%s_REST" % member in env:
                self.members["pg" + member] = (int(env["PG%s_REST" % member]), env["PG%s_DATA" % member])

    def answers(self, member, path):
        try:
            status, _, _ = HTTP(self.members[member][0], timeout=2).request("GET", path)
            return status == 200
        except (OSError, http.client.HTTPException):
            return False

    def primary(self):
        for member in self.members:
            if self.answers(member, "/primary"):
                return member
        return None

    def postmaster(self, member):
        with open(os.path.join(self.members[member][1], "postmaster.pid")) as file:
            return int(file.readline())


def wait_until(what, seconds, condition, step=0.1):
    deadline = time.time() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.time() >= deadline:
            raise SystemExit("ha-check: %s did not happen within %d s" % (what, seconds))
        time.sleep(step)


def all_changes(port):
    connection = HTTP(port, timeout=30)
    changes, after = [], 0
    while True:
        status, _, body = connection.request("GET", "/changes?after=%d&limit=10000" % after)
        if status != 200:
            raise SystemExit("ha-check: GET /changes on port %d answered %d: %s" % (port, status, body))
        changes += body["changes"]
        if not body["changes"] or changes[-1]["seq"] >= body["latestSeq"]:
            return changes
        after = changes[-1]["seq"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", help="the directory deploy/local-cluster.sh printed (holds cluster.env)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load in all (default 60)")
    parser.add_argument("--kill-after", type=float, default=15, help="seconds of load before the kill (default 15)")
    parser.add_argument("--kill", choices=["primary", "none"], default="primary")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.1,
                        help="seconds before sending a refused request again (default 0.1, finer than "
                             "Retry-After: 1, to time the refusal)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--json", help="write the summary here as JSON")
    arguments = parser.parse_args()

    env = read_env(arguments.directory)
    servers = {name: int(env[name.upper() + "_HTTP"]) for name in ("n1", "n2", "n3")}
    patroni = Patroni(env)
    if arguments.kill == "primary" and len(patroni.members) != 2:
        raise SystemExit("ha-check: %s is not an --ha cluster (no Patroni members in cluster.env)" % arguments.directory)

    load = Load(servers, arguments.clients, arguments.pause, arguments.seed)
    threads = [threading.Thread(target=load.client, args=(n,), daemon=True) for n in range(arguments.clients)]
    started = time.time()
    for thread in threads:
        thread.start()
    print("ha-check: %d clients sending identify to the leader for %g s" % (arguments.clients, arguments.duration))

    summary = {"clients": arguments.clients, "duration": arguments.duration}
    if arguments.kill == "primary":
        time.sleep(max(0, started + arguments.kill_after - time.time()))
        old = wait_until("a Patroni member answering GET /primary", 30, patroni.primary)
        new = [member for member in patroni.members if member != old][0]
        pid = patroni.postmaster(old)
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        print("ha-check: at %.1f s, kill -9 %d: the postmaster of the primary, %s" % (killed - started, pid, old))
        wait_until("Patroni promoting %s (GET /primary 200)" % new, 120, lambda: patroni.answers(new, "/primary"))
        promoted = time.time()
        print("ha-check: %s is the primary %.2f s after the kill" % (new, promoted - killed))
        rejoin = {}

        def watch_rejoin():
            # When the old primary runs as a replica again, and when it is the synchronous standby.
            deadline = killed + 300
            while time.time() < deadline and len(rejoin) < 2:
                for path in ("/replica", "/sync"):
                    if path not in rejoin and patroni.answers(old, path):
                        rejoin[path] = time.time()
                time.sleep(0.1)

        watcher = threading.Thread(target=watch_rejoin, daemon=True)
        watcher.start()
        summary.update(killedMember=old, killedPid=pid, promotedMember=new, killAt=round(killed - started, 3),
                       promotedAfter=round(promoted - killed, 3))

    time.sleep(max(0, started + arguments.duration - time.time()))
    load.stopping.set()
    for thread in threads:
        thread.join(30)
    ended = time.time()
    if arguments.kill == "primary":
        watcher.join(max(0, killed + 300 - time.time()))
        for path, name in (("/replica", "oldPrimaryReplicaAfter"), ("/sync", "oldPrimarySyncStandbyAfter")):
            summary[name] = round(rejoin[path] - killed, 3) if path in rejoin else None

    with load.lock:
        acknowledged = list(load.acknowledged)
        events = sorted(load.events)
    kinds = {}
    for _, kind in events:
        kinds[kind] = kinds.get(kind, 0) + 1
    summary.update(acknowledged=len(acknowledged), attempts=kinds, seconds=round(ended - started, 3))
    ack_times = [at for at, kind in events if kind == "ack"]
    if arguments.kill == "primary":
        # The outage: from the first refused or failed attempt after the kill to the last one; some
        # writes may be acknowledged inside it (a leader that writes again, then steps down).
        failures = [at for at, kind in events if kind != "ack" and at >= killed]
        if failures:
            before = [at for at in ack_times if at < failures[0]]
            after = [at for at in ack_times if at > failures[-1]]
            summary["firstRefusalAfterKill"] = round(failures[0] - killed, 3)
            summary["lastRefusalAfterKill"] = round(failures[-1] - killed, 3)
            summary["acknowledgedBetweenFirstAndLastRefusal"] = sum(1 for at in ack_times
                                                                    if failures[0] <= at <= failures[-1])
            summary["lastAcknowledgementBeforeOutage"] = round(before[-1] - killed, 3) if before else None
            summary["firstAcknowledgementAfterOutage"] = round(after[0] - killed, 3) if after else None
        # What happened, in half seconds from one second before the kill: acks (by server), refusals.
        timeline = []
        end = (failures[-1] if failures else killed) + 1.5
        step = killed - 1.0
        while step < end:
            bucket = {"from": round(step - killed, 1)}
            with load.lock:
                for at, kind in load.events:
                    if step <= at < step + 0.5 and kind != "ack":
                        bucket[kind] = bucket.get(kind, 0) + 1
                for _, _, _, at, node in load.acknowledged:
                    if step <= at < step + 0.5:
                        bucket["ack@" + node] = bucket.get("ack@" + node, 0) + 1
            timeline.append(bucket)
            step += 0.5
        summary["timelineAfterKill"] = timeline
    # The longest stretch without an acknowledgement, wherever it was.
    gaps = [b - a for a, b in zip([started] + ack_times, ack_times + [ended])]
    summary["longestGapWithoutAcknowledgement"] = round(max(gaps), 3)
    summary["acknowledgedPerSecondOverall"] = round(len(acknowledged) / (ended - started), 1)

    # Verification: the three servers at the same log position, then every acknowledged answer on each.
    connections = {name: HTTP(port, timeout=30) for name, port in servers.items()}

    # appliedSeq counts a server's local copy, which trails the log by a commit: the servers must reach the
    # newest change any of them acknowledged (an answer's Identity-Graph-Seq), not merely agree.
    newest = [0]

    def positions():
        seqs = []
        for name in servers:
            try:
                status, headers, body = connections[name].request("GET", "/cluster")
            except (OSError, http.client.HTTPException):
                return None
            if status != 200:
                return None
            newest[0] = max(newest[0], int(headers.get("identity-graph-seq", 0) or 0))
            seqs.append(body.get("appliedSeq"))
        return seqs if len(set(seqs)) == 1 and seqs[0] >= newest[0] else None

    seqs = wait_until("the three servers reaching the same applied seq", 120, positions, step=0.2)
    summary["appliedSeq"] = seqs[0]
    missing = []
    for name in servers:
        connection = connections[name]
        for email, phone, ids, _, node in acknowledged:
            path = "/profiles?email=%s&phoneNumber=%s" % (email.replace("@", "%40"), phone)
            status, _, body = connection.request("GET", path)
            profiles = body.get("profiles", []) if status == 200 and isinstance(body, dict) else []
            holding = [p for p in profiles if email in p["emails"]]
            if (len(holding) != 1 or phone not in holding[0]["phoneNumbers"]
                    or not set(ids) <= set(ids_of(holding[0]))):
                missing.append({"server": name, "email": email, "phoneNumber": phone, "ids": ids,
                                "acknowledgedBy": node, "found": body})
    feeds = {name: all_changes(port) for name, port in servers.items()}
    identical = len({json.dumps(feed, sort_keys=True) for feed in feeds.values()}) == 1
    summary.update(checks=len(acknowledged) * len(servers), missing=len(missing),
                   changes={name: len(feed) for name, feed in feeds.items()}, changesIdentical=identical)

    print(json.dumps(summary, indent=2))
    for problem in missing[:20]:
        print("ha-check: MISSING %s" % json.dumps(problem), file=sys.stderr)
    if arguments.json:
        with open(arguments.json, "w") as file:
            json.dump(dict(summary, missingExamples=missing[:20]), file, indent=2)
    ok = not missing and identical and len(acknowledged) > 0
    print("ha-check: %s: %d acknowledged identify requests, %d checks on 3 servers, %d missing, /changes %s"
          % ("PASS" if ok else "FAIL", len(acknowledged), len(acknowledged) * 3, len(missing),
             "identical" if identical else "DIFFER"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
