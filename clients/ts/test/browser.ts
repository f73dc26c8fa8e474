// Headless Chromium (Debian's, driven by playwright-core) on a page of another origin that
// uses this package over gRPC-Web: it signs in (the refresh token set as an HttpOnly cookie),
// shows messages arriving live on the event stream, decodes field violations from the
// trailers, and when its access token expires (the server runs with a 5 s lifetime and ends
// the stream then) renews it through the cookie and resumes with nothing missed; then it
// signs in with single sign-on through the suite's OpenID Provider and back to its callback
// page. Proves CORS, trailers, the cookies and streaming.
//   node out/browser.mjs API_BASE_URL ADMIN_PASSWORD PAGE_PORT
import { createClient } from "@connectrpc/connect";
import { chromium, type ConsoleMessage } from "playwright-core";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { AdminService, ConversationKind, ConversationService, Session, nodeTransport } from "@epop/client/node";

const [api, password, pagePort] = process.argv.slice(2);
const here = new URL(".", import.meta.url).pathname;
const session = new Session({
  transport: (interceptors) => nodeTransport({ baseUrl: api, protocol: "grpc", interceptors }),
});
await session.login("admin@epop.local", password);
const admin = session.transport;
const email = `browser-${Date.now()}@example.com`;
const bea = await createClient(AdminService, admin).createUser({ email, password: "browser-password-1" });
const conversations = createClient(ConversationService, admin);
const group = await conversations.createConversation({
  kind: ConversationKind.GROUP,
  title: "Browser",
  memberIds: [bea.id],
});
const send = (text: string) =>
  conversations.sendMessage({
    conversationId: group.id,
    content: { type: "doc", content: [{ type: "paragraph", content: [{ type: "text", text }] }] },
  });

// The page's own origin.
const files: Record<string, [string, string]> = {
  "/": ["text/html", readFileSync(`${here}../browser/page.html`, "utf8")],
  "/auth/callback": ["text/html", readFileSync(`${here}../browser/page.html`, "utf8")],
  "/page.js": ["text/javascript", readFileSync(`${here}page.js`, "utf8")],
};
const site = createServer((req, res) => {
  const f = files[new URL(req.url!, "http://x").pathname];
  res.writeHead(f ? 200 : 404, { "content-type": f ? f[0] : "text/plain" }).end(f ? f[1] : "");
});
await new Promise<void>((r) => site.listen(Number(pagePort), "127.0.0.1", r));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"],
});
const lines: string[] = [];
const page = await browser.newPage();
page.on("console", (m: ConsoleMessage) => lines.push(m.text()));
page.on("pageerror", (e) => lines.push(`pageerror ${e.message}`));
async function seen(line: string) {
  for (let i = 0; i < 200; i++) {
    if (lines.includes(line)) return;
    if (lines.some((l) => l.startsWith("failed") || l.startsWith("pageerror"))) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the page did not say "${line}"; it said: ${JSON.stringify(lines)}`);
}
const origin = `http://localhost:${pagePort}`;
const q = new URLSearchParams({ api, email, password: "browser-password-1" });
try {
  await page.goto(`${origin}/?${q}`);
  await seen(`signed in as ${email}`);
  await seen("live");
  await send("first live message");
  await seen("message first live message");
  const shown = await page.locator("#messages li").allTextContents();
  if (shown.join("|") !== "first live message") throw new Error(`the page shows ${shown}`);

  const violations = await page.evaluate(() => (window as any).epop.violations());
  if (violations.length !== 1 || violations[0].field !== "name") {
    throw new Error(`violations in the browser: ${JSON.stringify(violations)}`);
  }
  // The cookie is scoped to AuthService's path: the page's script cannot read it.
  const cookies = await page.context().cookies(`${api}/epop.v1.AuthService/Refresh`);
  if (!cookies.some((c) => c.name === "epop_refresh" && c.httpOnly)) throw new Error("no HttpOnly refresh cookie");

  // The access token expires after 5 s: the stream ends UNAUTHENTICATED, the page renews
  // through the cookie and resumes; a message sent meanwhile arrives once.
  await send("before the expiry");
  await seen("message before the expiry");
  await seen("renewed the token through the cookie");
  await send("after the refresh");
  await seen("message after the refresh");
  const who = await page.evaluate(() => (window as any).epop.whoAmI());
  if (who !== email) throw new Error(`GetMe after the refresh: ${who}`);
  // The Connect protocol from the page's origin: GetMe as a GET, errors with their details.
  const overConnect = await page.evaluate(() => (window as any).epop.overConnect());
  if (overConnect.email !== email || overConnect.violations[0]?.field !== "name") {
    throw new Error(`over Connect: ${JSON.stringify(overConnect)}`);
  }
  const all = await page.locator("#messages li").allTextContents();
  if (all.join("|") !== "first live message|before the expiry|after the refresh") {
    throw new Error(`the page shows ${JSON.stringify(all)}`);
  }
  // Single sign-on: the page goes to the identity provider (the suite's oidc-provider) and
  // comes back to /auth/callback, which finishes the sign-in with its binder cookie.
  await page.evaluate(() => (window as any).epop.singleSignOn("acme", "alice")).catch(() => {});
  await seen("single sign-on as alice@example.com");
  if (!page.url().startsWith(`${origin}/auth/callback?`)) throw new Error(`ended at ${page.url()}`);
  console.log(
    `browser: ${origin} signed in over gRPC-Web to ${api}, saw messages live, decoded violations, refreshed through the cookie; Connect (GET and POST, error details) works too; single sign-on through oidc-provider and back with the binder cookie`,
  );
} finally {
  await browser.close();
  site.close();
}
