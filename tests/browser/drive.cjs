// Drives headless Chromium (Debian's, through playwright-core) to a page, and prints the
// page's console lines on stdout until stdin closes. Usage: node drive.cjs <page url>.
// NODE_PATH must reach playwright-core; CHROMIUM may name the browser (default
// /usr/bin/chromium).
const { launch } = require("./chromium.cjs");

(async () => {
  const browser = await launch();
  const page = await browser.newPage();
  page.on("console", (m) => console.log(m.text()));
  page.on("pageerror", (e) => console.log("pageerror " + e.message));
  await page.goto(process.argv[2]);
  console.log("loaded");
  process.stdin.resume();
  process.stdin.on("end", async () => {
    await browser.close();
    process.exit(0);
  });
})().catch((e) => {
  console.log("driver failed " + e);
  process.exit(1);
});
