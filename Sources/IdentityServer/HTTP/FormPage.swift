/// The page at `GET /`: try identify from a browser, and a small admin view over the HTTP API
/// (look up a profile, explain a link, erase a contact, unmerge a link, list keep-apart rules).
/// Self-contained (no external assets, plain JavaScript); blank fields are sent as `null` or
/// left out of the query, never as empty strings. Every answer, problem documents included, is
/// shown in one output area whose `data-answers` counts the answers shown, so that a test can wait
/// for the next one.
enum FormPage {
    static let html = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>identity-graph</title>
        <style>
          body { font: 16px/1.45 system-ui, sans-serif; color: #1b1b1b; }
          body { max-width: 78rem; margin: 1.5rem auto; padding: 0 1rem; }
          h1 { margin: 0 0 .25rem; }
          h2 { font-size: 1.25rem; margin: 1rem 0 .5rem; }
          h3 { font-size: 1.05rem; margin: 0 0 .25rem; }
          h4 { font-size: 1rem; margin: 0; }
          .layout { display: grid; gap: 0 2rem; }
          @media (min-width: 60rem) {
            .layout { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
            #output { position: sticky; top: 0; align-self: start; max-height: 100vh; overflow-y: auto; }
          }
          form { border: 1px solid #c8c8c8; border-radius: 6px; padding: .75rem 1rem 1rem; margin: 0 0 1rem; }
          .row { display: flex; flex-wrap: wrap; gap: 0 .75rem; }
          .row > div { flex: 1 1 9rem; }
          label { display: block; margin: .5rem 0 .2rem; }
          input[type=text] { width: 100%; padding: .4rem; box-sizing: border-box; font: inherit; }
          .check { margin-top: .5rem; }
          .check label { display: inline; margin: 0 0 0 .3rem; }
          button { margin-top: .75rem; padding: .45rem 1.1rem; font: inherit; cursor: pointer; }
          button.danger { color: #fff; background: #b3261e; border: 1px solid #8c1d18; border-radius: 4px; }
          .hint { color: #4a4a4a; font-size: .92rem; margin: 0; }
          #status { font-weight: 600; }
          #problem { background: #fdecea; border-left: 4px solid #b3261e; padding: .5rem .75rem; }
          #problem, #status { overflow-wrap: anywhere; }
          .profile { border: 1px solid #c8c8c8; border-radius: 6px; padding: .5rem .75rem; margin: .5rem 0; }
          dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: .15rem 1rem; margin: .4rem 0 0; }
          dt { color: #4a4a4a; }
          dd { margin: 0; overflow-wrap: anywhere; }
          ul.values { display: inline; margin: 0; padding: 0; list-style: none; }
          ul.values li { display: inline; }
          ul.values li + li::before { content: ", "; }
          #steps li, #rules li { margin: .2rem 0; overflow-wrap: anywhere; }
          pre { background: #f4f4f4; padding: 1rem; min-height: 3rem; white-space: pre-wrap; overflow-wrap: anywhere; }
        </style>
        </head>
        <body>
        <header>
        <h1>identity-graph</h1>
        <p>Send an email and/or a phone number to <code>POST /identify</code> and see the unified profile.
        The admin view below looks into profiles and undoes merges that should not have happened.</p>
        <p><label for="token">Access token</label>
        <input id="token" name="token" type="password" autocomplete="off"
          placeholder="only when the server asks for one (it was started with --auth-tokens)">
        <span id="tokenHint" class="hint"></span></p>
        </header>
        <div class="layout">
        <main>
        <h2>Identify</h2>
        <form id="identify" method="post" action="/identify" aria-label="Identify">
          <div class="row">
            <div>
              <label for="email">Email</label>
              <input id="email" name="email" type="text" autocomplete="off" placeholder="lorraine@hillvalley.edu">
            </div>
            <div>
              <label for="phoneNumber">Phone number</label>
              <input id="phoneNumber" name="phoneNumber" type="text" autocomplete="off" placeholder="123456">
            </div>
          </div>
          <button id="identifySubmit" type="submit">Identify</button>
        </form>

        <h2>Admin</h2>
        <form id="lookup" aria-labelledby="lookupTitle">
          <h3 id="lookupTitle">Look up a profile</h3>
          <p class="hint">By email and/or phone number (writes nothing), or by the id of any of its contacts.</p>
          <div class="row">
            <div>
              <label for="lookupEmail">Email</label>
              <input id="lookupEmail" type="text" autocomplete="off">
            </div>
            <div>
              <label for="lookupPhoneNumber">Phone number</label>
              <input id="lookupPhoneNumber" type="text" autocomplete="off">
            </div>
            <div>
              <label for="lookupContactId">or contact id</label>
              <input id="lookupContactId" type="text" inputmode="numeric" autocomplete="off">
            </div>
          </div>
          <button id="lookupSubmit" type="submit">Look up</button>
        </form>

        <form id="explain" aria-labelledby="explainTitle">
          <h3 id="explainTitle">Explain a link</h3>
          <p class="hint">Why two contacts are one person: the shortest chain of shared values and links.</p>
          <div class="row">
            <div>
              <label for="explainFrom">From contact id</label>
              <input id="explainFrom" type="text" inputmode="numeric" autocomplete="off">
            </div>
            <div>
              <label for="explainTo">To contact id</label>
              <input id="explainTo" type="text" inputmode="numeric" autocomplete="off">
            </div>
          </div>
          <button id="explainSubmit" type="submit">Explain</button>
        </form>

        <form id="unmerge" aria-labelledby="unmergeTitle">
          <h3 id="unmergeTitle">Unmerge a link</h3>
          <p class="hint">The email and phone number of the link, as explain names it. No contact is erased.</p>
          <div class="row">
            <div>
              <label for="unmergeEmail">Email</label>
              <input id="unmergeEmail" type="text" autocomplete="off">
            </div>
            <div>
              <label for="unmergePhoneNumber">Phone number</label>
              <input id="unmergePhoneNumber" type="text" autocomplete="off">
            </div>
          </div>
          <div class="check">
            <input id="unmergeKeepApart" type="checkbox">
            <label for="unmergeKeepApart">Keep apart: never join this email and this phone number again</label>
          </div>
          <button id="unmergeSubmit" type="submit">Unmerge</button>
          <button id="keepApartList" type="button">List keep-apart rules</button>
        </form>

        <form id="erase" aria-labelledby="eraseTitle">
          <h3 id="eraseTitle">Erase a contact</h3>
          <p class="hint">Removes the contact's email and phone number for good (a tombstone stays)
          and splits its profile if need be.</p>
          <label for="eraseContactId">Contact id</label>
          <input id="eraseContactId" type="text" inputmode="numeric" autocomplete="off">
          <button id="eraseSubmit" class="danger" type="submit">Erase</button>
        </form>
        </main>

        <section id="output" aria-labelledby="outputTitle" data-state="idle" data-answers="0">
          <h2 id="outputTitle">Answer</h2>
          <p id="status" role="status">(nothing sent yet)</p>
          <p id="problem" role="alert" hidden><strong id="problemStatus"></strong>: <span id="problemDetail"></span></p>
          <div id="result" aria-live="polite"></div>
          <h3>JSON</h3>
          <pre id="answer">(nothing sent yet)</pre>
        </section>
        </div>
        <script>
        const byId = (id) => document.getElementById(id);
        const field = (id) => {
          const value = byId(id).value;
          return value.trim() === "" ? null : value;
        };
        // Every request goes through `api`, which adds the token when one is given. The token stays in
        // this tab (sessionStorage), never in the page's address.
        const tokenInput = byId("token");
        tokenInput.value = sessionStorage.getItem("identity-graph-token") ?? "";
        tokenInput.addEventListener("change", () => sessionStorage.setItem("identity-graph-token", tokenInput.value.trim()));
        const api = (path, init = {}) => {
          const token = tokenInput.value.trim();
          const headers = Object.assign({}, init.headers ?? {});
          if (token !== "") headers["Authorization"] = "Bearer " + token;
          return fetch(path, Object.assign({}, init, { headers }));
        };
        const postJSON = (value) => ({
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(value)
        });
        // `path` with only the given values, each percent-encoded (a space as %20: the server reads
        // + as a plus sign).
        const withQuery = (path, values) => {
          const query = Object.entries(values)
            .filter(([, value]) => value !== null)
            .map(([name, value]) => name + "=" + encodeURIComponent(value.trim()))
            .join("&");
          return query === "" ? path : path + "?" + query;
        };

        const output = byId("output");
        let answers = 0;

        const make = (tag, text, className) => {
          const node = document.createElement(tag);
          if (text !== undefined) node.textContent = text;
          if (className) node.className = className;
          return node;
        };
        const say = (text, id) => {
          const paragraph = make("p", text);
          if (id) paragraph.id = id;
          byId("result").append(paragraph);
          return paragraph;
        };

        // Starts a new answer: clears the output area and returns its number.
        function begin(statusText) {
          answers += 1;
          output.dataset.state = "sending";
          output.setAttribute("aria-busy", "true");
          byId("status").textContent = statusText;
          byId("problem").hidden = true;
          byId("problemStatus").textContent = "";
          byId("problemDetail").textContent = "";
          byId("result").replaceChildren();
          byId("answer").textContent = "";
          return answers;
        }
        function finish(number) {
          output.dataset.state = "done";
          output.dataset.answers = String(number);
          output.removeAttribute("aria-busy");
        }
        function showProblem(status, detail) {
          byId("problemStatus").textContent = status;
          byId("problemDetail").textContent = detail;
          byId("problem").hidden = false;
        }
        // An answer given by the page itself, nothing sent: a missing field, a cancelled erase.
        function refuse(detail) {
          const number = begin("Not sent");
          showProblem("Not sent", detail);
          finish(number);
        }
        function note(text) {
          finish(begin(text));
        }

        // Sends one request and shows its answer: `render` for a success, the problem otherwise.
        async function present(request, send, render) {
          const number = begin(request + " …");
          try {
            const response = await send();
            const text = await response.text();
            let body = null;
            try { body = JSON.parse(text); } catch (_) {}
            if (number !== answers) return;
            byId("status").textContent = request + " → " + response.status + " " + response.statusText;
            byId("answer").textContent = body === null ? text : JSON.stringify(body, null, 2);
            byId("tokenHint").textContent = response.status === 401
              ? "This server needs a token: enter one above."
              : response.status === 403 ? "This token's role does not allow that." : "";
            if (response.ok) {
              render(body);
            } else if (body !== null && typeof body === "object") {
              const status = [body.status ?? response.status, body.title ?? response.statusText].join(" ");
              showProblem(status.trim(), body.detail ?? "(no detail)");
            } else {
              showProblem(String(response.status + " " + response.statusText).trim(), text || "(no detail)");
            }
          } catch (error) {
            if (number !== answers) return;
            byId("status").textContent = request + " → no answer";
            showProblem("Request failed", String(error));
          } finally {
            if (number === answers) finish(number);
          }
        }

        function valueList(values, className) {
          if (values.length === 0) return make("span", "none", className);
          const list = make("ul", undefined, "values " + className);
          for (const value of values) list.append(make("li", String(value)));
          return list;
        }
        function profileCard(profile) {
          const card = make("article", undefined, "profile");
          card.id = "profile-" + profile.primaryContactId;
          card.dataset.primary = String(profile.primaryContactId);
          const members = document.createElement("dl");
          const add = (term, value) => {
            const description = make("dd");
            description.append(value);
            members.append(make("dt", term), description);
          };
          add("Primary contact", make("span", String(profile.primaryContactId), "primary"));
          add("Secondary contacts", valueList(profile.secondaryContactIds, "secondaries"));
          add("Emails", valueList(profile.emails, "emails"));
          add("Phone numbers", valueList(profile.phoneNumbers, "phoneNumbers"));
          card.append(make("h4", "Profile of contact " + profile.primaryContactId), members);
          return card;
        }
        function showProfiles(profiles) {
          for (const profile of profiles) byId("result").append(profileCard(profile));
        }
        const plural = (count, one, many) => count + " " + (count === 1 ? one : many);

        function stepText(step) {
          const pair = step.from + " → " + step.to + ": ";
          if (typeof step.email === "string") return pair + "share email " + step.email;
          if (typeof step.phoneNumber === "string") return pair + "share phone number " + step.phoneNumber;
          if (step.link) {
            const { email, phoneNumber, at } = step.link;
            return pair + "joined by a link (" + email + ", " + phoneNumber + ") made at " + at;
          }
          return pair + JSON.stringify(step);
        }

        byId("identify").addEventListener("submit", (event) => {
          event.preventDefault();
          const body = { email: field("email"), phoneNumber: field("phoneNumber") };
          present("POST /identify", () => api("/identify", postJSON(body)), (answer) => {
            say("The unified profile:");
            showProfiles([answer.contact]);
            for (const ignored of answer.ignored ?? []) {
              say("Ignored " + ignored.field + " (" + ignored.reason + "): " + ignored.detail, "ignored");
            }
          });
        });

        byId("lookup").addEventListener("submit", (event) => {
          event.preventDefault();
          const email = field("lookupEmail");
          const phoneNumber = field("lookupPhoneNumber");
          const contactId = field("lookupContactId");
          if (contactId !== null && (email !== null || phoneNumber !== null)) {
            refuse("look up by contact id, or by email and/or phone number, not both");
            return;
          }
          if (contactId !== null) {
            const path = "/profiles/" + encodeURIComponent(contactId.trim());
            present("GET " + path, () => api(path), (answer) => {
              say("The profile of contact " + contactId.trim() + ":");
              showProfiles([answer.contact]);
            });
          } else if (email !== null || phoneNumber !== null) {
            const path = withQuery("/profiles", { email, phoneNumber });
            present("GET " + path, () => api(path), (answer) => {
              say(answer.profiles.length === 0
                ? "No profile holds this email or phone number."
                : plural(answer.profiles.length, "profile holds", "profiles hold") + " these values:");
              showProfiles(answer.profiles);
            });
          } else {
            refuse("give an email and/or a phone number, or a contact id");
          }
        });

        byId("explain").addEventListener("submit", (event) => {
          event.preventDefault();
          const from = field("explainFrom");
          const to = field("explainTo");
          const path = withQuery("/explain", { from, to });
          present("GET " + path, () => api(path), (answer) => {
            const pair = "Contacts " + (from ?? "").trim() + " and " + (to ?? "").trim();
            if (!answer.linked) {
              say(pair + " are not linked: one of them is erased, or they are in different profiles.", "verdict");
            } else if (answer.steps.length === 0) {
              say(pair + " are the same contact.", "verdict");
            } else {
              say(pair + " are one person, in " + plural(answer.steps.length, "step", "steps") + ":", "verdict");
              const list = make("ol");
              list.id = "steps";
              for (const step of answer.steps) list.append(make("li", stepText(step)));
              byId("result").append(list);
            }
          });
        });

        byId("unmerge").addEventListener("submit", (event) => {
          event.preventDefault();
          const body = {
            email: field("unmergeEmail"),
            phoneNumber: field("unmergePhoneNumber"),
            keepApart: byId("unmergeKeepApart").checked
          };
          present("POST /unmerge", () => api("/unmerge", postJSON(body)), (answer) => {
            const pieces = answer.profiles.length;
            say(pieces === 1
              ? "The link is undone; its contacts are still one profile: other shared values join them."
              : "The link is undone; its profile is now " + pieces + " profiles:", "unmerged");
            if (body.keepApart) say("This email and this phone number are kept apart from now on.", "keptApart");
            showProfiles(answer.profiles);
          });
        });

        byId("keepApartList").addEventListener("click", () => {
          present("GET /keep-apart", () => api("/keep-apart"), (answer) => {
            if (answer.rules.length === 0) {
              say("No keep-apart rules.");
              return;
            }
            say(plural(answer.rules.length, "keep-apart rule", "keep-apart rules") + ", oldest first:");
            const list = make("ul");
            list.id = "rules";
            for (const rule of answer.rules) {
              list.append(make("li", rule.email + " and " + rule.phoneNumber + ", since " + rule.at));
            }
            byId("result").append(list);
          });
        });

        byId("erase").addEventListener("submit", (event) => {
          event.preventDefault();
          const contactId = field("eraseContactId");
          if (contactId === null) {
            refuse("give the id of the contact to erase");
            return;
          }
          const id = contactId.trim();
          const question = "Erase contact " + id + "? Its email and phone number are removed for good;"
            + " this cannot be undone.";
          if (!confirm(question)) {
            note("Erasing contact " + id + " was cancelled; nothing was sent.");
            return;
          }
          const path = "/contacts/" + encodeURIComponent(id);
          present("DELETE " + path, () => api(path, { method: "DELETE" }), (answer) => {
            const erased = answer.erasedContactIds;
            say(erased.length === 0
              ? "Nothing was erased: contact " + id + " was erased already."
              : "Erased " + plural(erased.length, "contact", "contacts") + ": " + erased.join(", ") + ".", "erased");
            if (answer.profiles.length > 0) {
              say("What is left of its profile:");
              showProfiles(answer.profiles);
            } else if (erased.length > 0) {
              say("No live contact is left in its profile.");
            }
          });
        });
        </script>
        </body>
        </html>
        """
}
