/// The page at `GET /`: try identify from a browser. Self-contained (no external assets); blank
/// fields are sent as `null`, never as empty strings.
enum FormPage {
    static let html = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>identity-graph</title>
        <style>
          body { font: 16px/1.4 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
          label { display: block; margin: .75rem 0 .25rem; }
          input { width: 100%; padding: .4rem; box-sizing: border-box; }
          button { margin-top: 1rem; padding: .5rem 1.25rem; }
          pre { background: #f4f4f4; padding: 1rem; overflow-x: auto; min-height: 3rem; }
        </style>
        </head>
        <body>
        <h1>identity-graph</h1>
        <p>Send an email and/or a phone number to <code>POST /identify</code> and see the unified profile.</p>
        <form id="identify" method="post" action="/identify">
          <label for="email">Email</label>
          <input id="email" name="email" type="text" autocomplete="off" placeholder="lorraine@hillvalley.edu">
          <label for="phoneNumber">Phone number</label>
          <input id="phoneNumber" name="phoneNumber" type="text" autocomplete="off" placeholder="123456">
          <button type="submit">Identify</button>
        </form>
        <h2>Answer</h2>
        <pre id="answer">(nothing sent yet)</pre>
        <script>
        document.getElementById("identify").addEventListener("submit", async (event) => {
          event.preventDefault();
          const field = (id) => {
            const value = document.getElementById(id).value;
            return value.trim() === "" ? null : value;
          };
          const body = JSON.stringify({ email: field("email"), phoneNumber: field("phoneNumber") });
          const answer = document.getElementById("answer");
          try {
            const response = await fetch("/identify", {
              method: "POST", headers: { "Content-Type": "application/json" }, body
            });
            const text = await response.text();
            let shown = text;
            try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) {}
            answer.textContent = response.status + " " + response.statusText + "\\n" + shown;
          } catch (error) {
            answer.textContent = "request failed: " + error;
          }
        });
        </script>
        </body>
        </html>
        """
}
