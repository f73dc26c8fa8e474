// The browser side of the passkey tests: headless Chromium (Debian's, through playwright-core)
// with a virtual authenticator on each of two pages (the DevTools protocol's WebAuthn domain:
// CTAP2, resident keys, user verification), answering WebAuthn ceremonies for the test.
//
// Usage: node passkeys.cjs <page url>. Prints {"ready":true}, then reads one JSON command per
// line on stdin, {"page": 0|1, "op": "create"|"get", "options": "<publicKey options JSON>"},
// and prints {"ok": "<credential.toJSON() as JSON>"} or {"error": "..."} for each.
// NODE_PATH must reach playwright-core.
const { launch } = require("./chromium.cjs");
const readline = require("node:readline");

// Runs in the page: the browser's own WebAuthn API with the server's options.
async function ceremony(cmd) {
  const options = JSON.parse(cmd.options);
  const credential =
    cmd.op === "create"
      ? await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) })
      : await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
  return JSON.stringify(credential.toJSON());
}

(async () => {
  const browser = await launch();
  const pages = [];
  for (let i = 0; i < 2; i++) {
    const page = await browser.newPage();
    await page.goto(process.argv[2]);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: {
        protocol: "ctap2",
        ctap2Version: "ctap2_1",
        transport: "internal",
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
    pages.push(page);
  }
  console.log(JSON.stringify({ ready: true }));
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line);
    try {
      // WebAuthn answers only a focused document.
      await pages[cmd.page].bringToFront();
      console.log(JSON.stringify({ ok: await pages[cmd.page].evaluate(ceremony, cmd) }));
    } catch (e) {
      console.log(JSON.stringify({ error: String(e && e.message ? e.message : e) }));
    }
  }
  await browser.close();
  process.exit(0);
})().catch((e) => {
  console.log(JSON.stringify({ error: "driver failed " + e }));
  process.exit(1);
});
