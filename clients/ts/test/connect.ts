// Node, against a live server, over gRPC-Web (HTTP/1.1 and HTTP/2) and native gRPC, with the
// generated Connect-ES client: a bad token gives UNAUTHENTICATED (over HTTP/1.1 this used to
// be EPIPE), the admin signs in, creates a project and a task, a conversation, and receives
// a message, a reply in its thread and a reaction on the event stream; a user's inbox and a
// browser's push subscription go through the package's notification helpers; a user signs
// in in two steps (TOTP) and with single sign-on (OpenID Connect, the suite's provider).
//   node out/connect.mjs BASE_URL ADMIN_PASSWORD
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createECDH, randomBytes } from "node:crypto";
import * as OTPAuth from "otpauth";
import {
  AdminService,
  AuthService,
  ConversationKind,
  NotificationService,
  NotificationKind,
  ConversationService,
  ProjectService,
  SecurityService,
  TaskService,
  UserService,
  Session,
  bearer,
  events,
  fieldViolations,
  inbox,
  markNotificationsRead,
  nodeTransport,
  subscribeToPush,
  unsubscribeFromPush,
  type PushManagerLike,
  type PushSubscriptionLike,
} from "@epop/client/node";

const [base, password] = process.argv.slice(2);
let token: string | undefined;
const cases = [
  { name: "grpc-web http/1.1", protocol: "grpc-web", httpVersion: "1.1" },
  { name: "grpc-web http/2", protocol: "grpc-web", httpVersion: "2" },
  { name: "grpc", protocol: "grpc" },
  { name: "connect json http/1.1", protocol: "connect", httpVersion: "1.1" },
  { name: "connect binary http/2", protocol: "connect", httpVersion: "2", binary: true },
] as const;
for (const c of cases) {
  const bad = nodeTransport({ baseUrl: base, ...c, interceptors: [bearer(() => "not-a-token")] });
  try {
    await createClient(UserService, bad).getMe({});
    throw new Error(`${c.name}: a bad token was accepted`);
  } catch (e) {
    const err = ConnectError.from(e);
    if (err.code !== Code.Unauthenticated) throw new Error(`${c.name}: ${Code[err.code]} ${err.message}`);
  }
  const t = nodeTransport({ baseUrl: base, ...c, interceptors: [bearer(() => token)] });
  token = (await createClient(AuthService, t).login({ email: "admin@epop.local", password })).accessToken;
  const me = await createClient(UserService, t).getMe({});
  const project = await createClient(ProjectService, t).createProject({ name: `From Node ${c.name}` });
  const task = await createClient(TaskService, t).createTask({ projectId: project.id, title: "Try the client" });
  const conversations = createClient(ConversationService, t);
  const group = await conversations.createConversation({ kind: ConversationKind.GROUP, title: `Node ${c.name}` });
  const abort = new AbortController();
  const events = conversations.streamEvents({}, { signal: abort.signal });
  const seen: string[] = [];
  const received = (async () => {
    for await (const e of events) {
      if (e.kind.case === "messageCreated") {
        const m = e.kind.value;
        seen.push(m.threadRootId ? `reply to ${m.threadRootId}: ${m.text}` : m.text);
      } else if (e.kind.case === "reactionChanged") {
        seen.push(`${e.kind.value.emoji} ${e.kind.value.count}`);
      }
      if (seen.length === 3) return;
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  const doc = (text: string) => ({ type: "doc", content: [{ type: "paragraph", content: [{ type: "text", text }] }] });
  const root = await conversations.sendMessage({ conversationId: group.id, content: doc(`hello over ${c.name}`) });
  await conversations.sendMessage({ conversationId: group.id, content: doc("in its thread"), threadRootId: root.id });
  await conversations.addReaction({ conversationId: group.id, messageId: root.id, emoji: ":tada:" });
  await received;
  abort.abort();
  const expected = [`hello over ${c.name}`, `reply to ${root.id}: in its thread`, "🎉 1"];
  if (JSON.stringify(seen) !== JSON.stringify(expected)) throw new Error(`${c.name}: got ${JSON.stringify(seen)}`);
  // The conversation view: the root alone, with its thread and the caller's reaction.
  const [listed] = (await conversations.listMessages({ conversationId: group.id })).messages;
  const reaction = listed?.reactions[0];
  if (listed?.thread?.replyCount !== 1n || reaction?.emoji !== "🎉" || !reaction.reacted) {
    throw new Error(`${c.name}: listed ${listed?.thread?.replyCount} replies, reactions ${reaction?.emoji} ${reaction?.count}`);
  }
  const text = seen[0];
  console.log(`${c.name}: bad token UNAUTHENTICATED; ${me.email} made task "${task.title}", got "${text}", a thread reply and a reaction live`);
}

// A session refreshes an expired access token once and retries (the server runs with a 5 s
// access-token lifetime here), and INVALID_ARGUMENT carries decoded field violations.
for (const c of cases) {
  // refreshAheadMs 0: no refresh ahead of time, so the retry on UNAUTHENTICATED is what works.
  const session = new Session({
    transport: (interceptors) => nodeTransport({ baseUrl: base, ...c, interceptors }),
    refreshAheadMs: 0,
  });
  await session.login("admin@epop.local", password);
  const t = session.transport;
  const users = createClient(UserService, t);
  await users.getMe({});
  const first = session.accessToken;
  await new Promise((r) => setTimeout(r, 6000));
  const me = await users.getMe({});
  if (session.accessToken === first) throw new Error(`${c.name}: the token was not refreshed`);
  try {
    await createClient(ProjectService, t).createProject({ name: "" });
    throw new Error(`${c.name}: an empty name was accepted`);
  } catch (e) {
    const v = fieldViolations(e);
    if (v.length !== 1 || v[0].field !== "name") throw new Error(`${c.name}: ${JSON.stringify(v)}`);
  }
  console.log(`${c.name}: an expired token was refreshed once for ${me.email}; violations decoded`);
}

// The event helper across a lost connection: a server of this test's own (EPOP_BIN, on
// EPOP_TEST_DATABASE_URL) is killed with SIGKILL after the first message and started again;
// the helper reconnects by itself and resumes from its cursor: every message once, in order.
const bin = process.env.EPOP_BIN!;
const dir = mkdtempSync(join(tmpdir(), "epop-clients-"));
const own = 18491;
const ownBase = `http://127.0.0.1:${own}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function startServer(): Promise<ChildProcess> {
  const child = spawn(bin, [], {
    env: {
      ...process.env,
      DATABASE_URL: process.env.EPOP_TEST_DATABASE_URL,
      EPOP_LISTEN: `127.0.0.1:${own}`,
      EPOP_DATA_DIR: dir,
      EPOP_ADMIN_PASSWORD: password,
    },
    stdio: "ignore",
  });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${ownBase}/readyz`)).ok) return child;
    } catch {}
    await sleep(100);
  }
  throw new Error("the test's server did not start");
}
async function until(check: () => boolean, what: string) {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}
for (const c of [cases[0], cases[2], cases[3]]) {
  let server = await startServer();
  const session = new Session({
    transport: (interceptors) => nodeTransport({ baseUrl: ownBase, ...c, interceptors }),
  });
  await session.login("admin@epop.local", password);
  const conversations = createClient(ConversationService, session.transport);
  const group = await conversations.createConversation({ kind: ConversationKind.GROUP, title: "Resume" });
  const got: string[] = [];
  let reconnects = 0;
  const abort = new AbortController();
  const reading = (async () => {
    const opts = { signal: abort.signal, minDelayMs: 100, onReconnect: () => (reconnects += 1) };
    for await (const e of events(conversations, opts)) {
      if (e.kind.case === "messageCreated" && e.kind.value.conversationId === group.id) got.push(e.kind.value.text);
    }
  })();
  const say = (text: string) =>
    conversations.sendMessage({
      conversationId: group.id,
      content: { type: "doc", content: [{ type: "paragraph", content: [{ type: "text", text }] }] },
    });
  await sleep(300);
  await say("m1");
  await until(() => got.length === 1, "m1");
  server.kill("SIGKILL");
  await new Promise((r) => server.once("exit", r));
  server = await startServer();
  await say("m2");
  await say("m3");
  await until(() => got.length >= 3, "m2 and m3 after the restart");
  await sleep(500);
  abort.abort();
  await reading;
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  if (got.join(",") !== "m1,m2,m3") throw new Error(`${c.name}: got ${got.join(",")}`);
  if (reconnects < 1) throw new Error(`${c.name}: no reconnect`);
  console.log(`${c.name}: the event helper reconnected ${reconnects}x after a SIGKILL, every message once`);
}

// The session refreshes ahead of expiry (the 5 s token, 3 s ahead) with no call failing,
// hands every new token to onTokens, and logout ends it on the server and here.
{
  const seen: number[] = [];
  let expired = 0;
  const session = new Session({
    transport: (interceptors) => nodeTransport({ baseUrl: base, protocol: "grpc", interceptors }),
    refreshAheadMs: 3000,
    onTokens: (t) => seen.push(t.accessTokenExpiresAt),
    onExpired: () => (expired += 1),
  });
  await session.login("admin@epop.local", password);
  const first = session.accessToken;
  await sleep(2500);
  if (session.accessToken === first || seen.length < 2) throw new Error("no refresh ahead of expiry");
  await session.logout();
  if (expired !== 1 || session.accessToken) throw new Error("logout did not end the session");
  try {
    await createClient(UserService, session.transport).getMe({});
    throw new Error("a call after logout was accepted");
  } catch (e) {
    if (ConnectError.from(e).code !== Code.Unauthenticated) throw e;
  }
  console.log(`refreshed ahead of expiry (${seen.length} tokens); logout ended the session`);
}

// events(): aborting ends a backoff at once; what cannot succeed is not retried.
{
  const dead = nodeTransport({ baseUrl: "http://127.0.0.1:9", protocol: "grpc" });
  const stop = new AbortController();
  const started = Date.now();
  setTimeout(() => stop.abort(), 300);
  for await (const _ of events(createClient(ConversationService, dead), { signal: stop.signal, minDelayMs: 10_000 })) {
    throw new Error("an event from nowhere");
  }
  if (Date.now() - started > 2000) throw new Error("the abort waited for the backoff");
  const session = new Session({
    transport: (interceptors) => nodeTransport({ baseUrl: base, protocol: "grpc", interceptors }),
  });
  await session.login("admin@epop.local", password);
  let attempts = 0;
  try {
    // A resume cursor that is not one: INVALID_ARGUMENT, thrown rather than retried.
    const opts = { cursor: "not-a-cursor", onReconnect: () => (attempts += 1), minDelayMs: 50 };
    for await (const _ of events(createClient(ConversationService, session.transport), opts)) break;
    throw new Error("a bad cursor was accepted");
  } catch (e) {
    const code = ConnectError.from(e).code;
    if (code !== Code.InvalidArgument || attempts !== 0) throw new Error(`${Code[code]} after ${attempts} retries`);
  }
  console.log("events: an abort ends the backoff at once; INVALID_ARGUMENT is thrown, not retried");
}

// Notifications: the inbox of a user a direct message reached, read all; a browser's push
// subscription (keys made as a browser makes them) registered with the server's VAPID key,
// then removed.
{
  const admin = new Session({
    transport: (interceptors) => nodeTransport({ baseUrl: base, protocol: "grpc", interceptors }),
  });
  await admin.login("admin@epop.local", password);
  const email = `push-${Date.now()}@example.com`;
  const dana = await createClient(AdminService, admin.transport).createUser({
    email,
    displayName: "Dana",
    password: "a long enough password",
  });
  const session = new Session({
    transport: (interceptors) => nodeTransport({ baseUrl: base, protocol: "grpc-web", interceptors }),
  });
  await session.login(email, "a long enough password");
  const direct = await createClient(ConversationService, admin.transport).createConversation({
    kind: ConversationKind.DIRECT,
    memberIds: [dana.id],
  });
  const doc = { type: "doc", content: [{ type: "paragraph", content: [{ type: "text", text: "welcome" }] }] };
  await createClient(ConversationService, admin.transport).sendMessage({ conversationId: direct.id, content: doc });
  const notifications = createClient(NotificationService, session.transport);
  let page = await inbox(notifications);
  for (let i = 0; i < 50 && page.notifications.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    page = await inbox(notifications);
  }
  const [first] = page.notifications;
  if (first?.kind !== NotificationKind.DIRECT_MESSAGE || page.unreadCount !== 1n) {
    throw new Error(`inbox: ${JSON.stringify(page.notifications.map((n) => n.body))} unread ${page.unreadCount}`);
  }
  if ((await markNotificationsRead(notifications)) !== 0n) throw new Error("mark all read left some unread");

  // A real browser's push manager fits the helpers (checked by tsc with the DOM's types).
  const fromBrowser: (r: ServiceWorkerRegistration) => PushManagerLike = (r) => r.pushManager;
  void fromBrowser;
  const held: { key?: string; active: PushSubscriptionLike | null } = { active: null };
  const browser: PushManagerLike = {
    async subscribe(options) {
      held.key = options.applicationServerKey;
      const ecdh = createECDH("prime256v1");
      const keys = { p256dh: ecdh.generateKeys().toString("base64url"), auth: randomBytes(16).toString("base64url") };
      const endpoint = `https://push.example.com/send/${randomBytes(8).toString("hex")}`;
      const subscription = { endpoint, toJSON: () => ({ endpoint, keys }), unsubscribe: async () => ((held.active = null), true) };
      held.active = subscription;
      return subscription;
    },
    getSubscription: async () => held.active,
  };
  const device = await subscribeToPush(notifications, browser, "Node test browser");
  const { vapidPublicKey } = await notifications.getPushConfig({});
  if (held.key === undefined || held.key !== vapidPublicKey || Buffer.from(held.key, "base64url").length !== 65) {
    throw new Error("subscribed without the server's VAPID key");
  }
  const listed = (await notifications.listPushDevices({})).devices.map((d) => d.name);
  if (JSON.stringify(listed) !== JSON.stringify(["Node test browser"])) throw new Error(`devices: ${listed}`);
  await unsubscribeFromPush(notifications, browser, device.id);
  if (held.active !== null || (await notifications.listPushDevices({})).devices.length !== 0) {
    throw new Error("unsubscribing left the subscription or the device");
  }
  console.log("notifications: the inbox listed and cleared; a push subscription registered with the VAPID key, then removed");
}

// Two-step sign-in: a user turns TOTP on (codes from the `otpauth` package, as an
// authenticator app makes them), then the session's login answers a challenge and
// verifySecondFactor finishes it.
{
  const admin = new Session({
    transport: (interceptors) => nodeTransport({ baseUrl: base, protocol: "grpc", interceptors }),
  });
  await admin.login("admin@epop.local", password);
  const email = `totp-${Date.now()}@example.com`;
  await createClient(AdminService, admin.transport).createUser({ email, displayName: "Tom", password: "a long enough password" });
  const first = new Session({
    transport: (interceptors) => nodeTransport({ baseUrl: base, protocol: "grpc-web", interceptors }),
  });
  if ((await first.login(email, "a long enough password")) !== undefined) throw new Error("a challenge before any factor");
  const security = createClient(SecurityService, first.transport);
  const enrollment = await security.beginTotpEnrollment({});
  const totp = OTPAuth.URI.parse(enrollment.otpauthUri);
  if (!(totp instanceof OTPAuth.TOTP)) throw new Error(`not a TOTP URI: ${enrollment.otpauthUri}`);
  const { codes } = await security.confirmTotp({ code: totp.generate(), password: "a long enough password" });
  if (codes.length !== 10) throw new Error(`recovery codes: ${codes.length}`);

  const session = new Session({
    transport: (interceptors) => nodeTransport({ baseUrl: base, protocol: "connect", interceptors }),
  });
  const challenge = await session.login(email, "a long enough password");
  if (!challenge || session.accessToken !== undefined || challenge.methods.join() !== "totp,recovery_code") {
    throw new Error(`no challenge, or a token before the code: ${JSON.stringify(challenge?.methods)}`);
  }
  try {
    await session.verifySecondFactor(challenge.challenge, { code: "000000" });
    throw new Error("a wrong code was accepted");
  } catch (e) {
    if (ConnectError.from(e).code !== Code.Unauthenticated) throw e;
  }
  // The next time step's code: this one was used to confirm the authenticator.
  await session.verifySecondFactor(challenge.challenge, { code: totp.generate({ timestamp: Date.now() + 30_000 }) });
  const me = await createClient(UserService, session.transport).getMe({});
  if (me.email !== email) throw new Error(`signed in as ${me.email}`);
  console.log("sign-in: two steps with a TOTP code from otpauth; a wrong code refused");

  // Single sign-on with the suite's OpenID Provider: the redirect helper's URL is followed as
  // a browser would (its cookies kept), and the callback finishes the sign-in.
  const sso = new Session({
    transport: (interceptors) => nodeTransport({ baseUrl: base, protocol: "grpc-web", interceptors }),
  });
  let callback = "";
  await sso.startSingleSignOn("acme", async (url) => {
    callback = await followAsBrowser(`${url}&login_hint=alice`);
  });
  if ((await sso.finishSingleSignOn(callback)) !== undefined) throw new Error("alice has no second factor");
  const alice = await createClient(UserService, sso.transport).getMe({});
  if (alice.email !== "alice@example.com") throw new Error(`single sign-on as ${alice.email}`);
  const sessions = await createClient(SecurityService, sso.transport).listSessions({});
  if (sessions.sessions.find((s) => s.current)?.method !== "oidc:acme") throw new Error("not an SSO session");
  try {
    await sso.finishSingleSignOn("http://localhost/auth/callback?error=access_denied&error_description=declined");
    throw new Error("a provider's error was not thrown");
  } catch (e) {
    if (ConnectError.from(e).code !== Code.PermissionDenied) throw e;
  }
  console.log("sign-in: single sign-on through the redirect helper with oidc-provider");
}

/** Follows redirects from `url` with a cookie jar until one leaves the provider: that URL. */
async function followAsBrowser(url: string): Promise<string> {
  const jar = new Map<string, string>();
  let at = new URL(url);
  const origin = at.origin;
  for (let i = 0; i < 10; i++) {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const r = await fetch(at, { redirect: "manual", headers: { cookie } });
    for (const c of r.headers.getSetCookie()) {
      const [pair = ""] = c.split(";");
      const eq = pair.indexOf("=");
      if (eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    const location = r.headers.get("location");
    if (!location) throw new Error(`no redirect from ${at}: ${r.status} ${await r.text()}`);
    at = new URL(location, at);
    if (at.origin !== origin) return at.href;
  }
  throw new Error("too many redirects");
}
