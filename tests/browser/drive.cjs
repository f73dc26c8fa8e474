// Drives headless Chromium (Debian's, through playwright-core) to a page, and prints the
// page's console lines on stdout until stdin closes. Usage: node drive.cjs <page url>.
// NODE_PATH must reach playwright-core; CHROMIUM may name the browser (default
// /usr/bin/chromium).
const { chromium } = require("playwright-core");

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
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
