// A page of a listed origin uploads a file the way a browser app does: fetch PUT to the
// presigned URL of the local backend (a preflighted cross-origin request). Prints the status.
// Usage: node upload.cjs <page origin> <upload url> <content type> <text>
const { launch } = require("./chromium.cjs");

const [origin, uploadUrl, contentType, text] = process.argv.slice(2);

(async () => {
  const browser = await launch();
  const page = await browser.newPage();
  await page.goto(origin);
  const put = await page.evaluate(async ({ uploadUrl, contentType, text }) => {
    try {
      const r = await fetch(uploadUrl, {
        method: "PUT",
        headers: { "content-type": contentType },
        body: new TextEncoder().encode(text),
      });
      return String(r.status);
    } catch (e) {
      return "failed " + e;
    }
  }, { uploadUrl, contentType, text });
  console.log("put " + put);
  await browser.close();
})().catch((e) => {
  console.log("driver failed " + e);
  process.exit(1);
});
