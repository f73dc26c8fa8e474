// A page of the app signs in (the refresh cookie is set for the site), then a page of a
// sibling origin of the same site (not listed in EPOP_CORS_ORIGINS) tries what a form or a
// no-cors fetch can do without asking: sign the browser out and rotate its refresh cookie.
// Then the app's page refreshes with its cookie. Prints one line per step.
// Usage: node csrf.cjs <api> <app origin> <sibling origin> <email> <password>
const { launch } = require("./chromium.cjs");

const [api, app, sibling, email, password] = process.argv.slice(2);

(async () => {
  const browser = await launch();
  const page = await browser.newPage();
  await page.goto(app);
  const login = await page.evaluate(async ({ api, email, password }) => {
    const r = await fetch(api + "/api/auth/login", {
      method: "POST",
      credentials: "include",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email, password }),
    });
    return r.status;
  }, { api, email, password });
  console.log("login " + login);

  await page.goto(sibling);
  await page.evaluate(async ({ api }) => {
    for (const path of ["/api/auth/refresh", "/api/auth/logout"]) {
      for (const type of ["text/plain", "application/x-www-form-urlencoded"]) {
        await fetch(api + path, {
          method: "POST",
          mode: "no-cors",
          credentials: "include",
          headers: { "content-type": type },
          body: "{}",
        });
      }
    }
  }, { api });
  console.log("attacks sent");

  await page.goto(app);
  const refresh = await page.evaluate(async ({ api }) => {
    const r = await fetch(api + "/api/auth/refresh", {
      method: "POST",
      credentials: "include",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    return r.status;
  }, { api });
  console.log("refresh " + refresh);
  await browser.close();
})().catch((e) => {
  console.log("driver failed " + e);
  process.exit(1);
});
