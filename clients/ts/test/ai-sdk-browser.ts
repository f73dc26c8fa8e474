// Headless Chromium (Debian's, driven by playwright-core) on a React page of another origin
// that uses the AI SDK's useChat against POST /api/ai/ui-chat (the fake provider answers):
// two questions, two streamed answers in one saved chat; then a slow answer, the page reloaded
// mid-answer, and `resume: true` rejoins it from its start to its end.
//   node out/ai-sdk-browser.mjs API_BASE_URL ADMIN_PASSWORD PAGE_PORT
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

const [api, password, pagePort] = process.argv.slice(2);
const here = new URL(".", import.meta.url).pathname;
const login = await fetch(`${api}/api/auth/login`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ email: "admin@epop.local", password }),
});
const { accessToken } = (await login.json()) as { accessToken: string };
const page = `<!doctype html><html><body><div id="root"></div><script type="module" src="/ai-page.js"></script></body></html>`;
const files: Record<string, [string, string]> = {
  "/": ["text/html", page],
  "/ai-page.js": ["text/javascript", readFileSync(`${here}ai-page.js`, "utf8")],
};
const site = createServer((req, res) => {
  const f = files[new URL(req.url!, "http://x").pathname];
  res.writeHead(f ? 200 : 404, { "content-type": f ? f[0] : "text/plain" }).end(f ? f[1] : "");
});
await new Promise<void>((r) => site.listen(Number(pagePort), "127.0.0.1", r));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"],
});
try {
  const tab = await browser.newPage();
  const q = new URLSearchParams({ api, token: accessToken });
  await tab.goto(`http://localhost:${pagePort}/?${q}`);
  const answers = tab.locator('#messages li[data-role="assistant"]');
  for (const n of [1, 2]) {
    await tab.click("#ask");
    await tab.waitForFunction(
      (n) =>
        document.querySelectorAll('#messages li[data-role="assistant"]').length === n &&
        document.getElementById("status")?.textContent === "ready",
      n,
      { timeout: 15_000 },
    );
  }
  const texts = await answers.allTextContents();
  const chats = await answers.evaluateAll((els) => els.map((e) => e.getAttribute("data-chat")));
  if (texts.some((t) => !/t0@\d+ t1@/.test(t))) throw new Error(`answers: ${JSON.stringify(texts)}`);
  if (!chats[0] || chats[0] !== chats[1]) throw new Error(`chats: ${JSON.stringify(chats)}`);
  if (await tab.locator("#error").count()) throw new Error(await tab.locator("#error").innerText());
  // Reloaded mid-answer: the new page's useChat rejoins the answer and shows it whole.
  const slow = new URLSearchParams({ api, token: accessToken, chat: `reload-${Date.now()}`, ask: "tokens=30 every=100" });
  await tab.goto(`http://localhost:${pagePort}/?${slow}`);
  await tab.click("#ask");
  await tab.waitForFunction(() => /t1@/.test(document.querySelector('#messages li[data-role="assistant"]')?.textContent ?? ""), null, { timeout: 15_000 });
  await tab.reload();
  await tab.waitForFunction(
    () =>
      /t29@/.test(document.querySelector('#messages li[data-role="assistant"]')?.textContent ?? "") &&
      document.getElementById("status")?.textContent === "ready",
    null,
    { timeout: 15_000 },
  );
  const whole = (await answers.allTextContents())[0].match(/t\d+@/g) ?? [];
  if (whole.length !== 30 || whole[0] !== "t0@") throw new Error(`the resumed answer: ${JSON.stringify(whole)}`);
  if (await tab.locator("#error").count()) throw new Error(await tab.locator("#error").innerText());
  console.log(`ai-sdk browser: a React page with useChat on another origin got two streamed answers in chat ${chats[0]}, and after a reload mid-answer resumed one whole`);
} finally {
  await browser.close();
  site.close();
}
