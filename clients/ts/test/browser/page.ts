// The page of the browser test: signs in with the generated client over gRPC-Web (the
// refresh token stays in the HttpOnly cookie), then shows the messages of the event stream
// as they arrive. The API is on another origin: ?api=<base URL>&email=..&password=..
// At /auth/callback it is the single sign-on's redirect page: it finishes the sign-in the
// identity provider sent the browser back from (the API is remembered in sessionStorage).
// Progress goes to the console, which the driver reads; `window.epop` lets it call in.
import { createClient } from "@connectrpc/connect";
import {
  ConversationService,
  ProjectService,
  Session,
  UserService,
  bearer,
  events,
  fieldViolations,
  webTransport,
} from "@epop/client";

const q = new URLSearchParams(location.search);
const callback = location.pathname === "/auth/callback";
const api = callback ? sessionStorage.getItem("api")! : q.get("api")!;
const status = document.getElementById("status")!;
const say = (line: string) => {
  status.textContent = line;
  console.log(line);
};

// cookie: the refresh token stays in the HttpOnly cookie, out of the page's reach.
const session = new Session({
  transport: (interceptors) => webTransport({ baseUrl: api, interceptors }),
  cookie: true,
});
const transport = session.transport;
const users = createClient(UserService, transport);
const conversations = createClient(ConversationService, transport);

(window as any).epop = {
  /** Starts single sign-on at `provider` as `login` (the test provider's login_hint). */
  async singleSignOn(provider: string, login: string) {
    sessionStorage.setItem("api", api);
    await session.startSingleSignOn(provider, (url) => location.assign(`${url}&login_hint=${login}`));
  },
  /** GetMe with the session's current token. */
  async whoAmI() {
    return (await users.getMe({})).email;
  },
  /** GetMe (a GET) and an invalid CreateProject's violations, over the Connect protocol. */
  async overConnect() {
    const connect = webTransport({
      baseUrl: api,
      protocol: "connect",
      interceptors: [bearer(() => session.accessToken)],
    });
    const email = (await createClient(UserService, connect).getMe({})).email;
    try {
      await createClient(ProjectService, connect).createProject({ name: "" });
      return { email, violations: [] };
    } catch (e) {
      return { email, violations: fieldViolations(e) };
    }
  },
  /** The field violations of an invalid CreateProject (read from the grpc-status-details-bin trailer). */
  async violations() {
    try {
      await createClient(ProjectService, transport).createProject({ name: "" });
      return [];
    } catch (e) {
      return fieldViolations(e);
    }
  },
};

if (callback) {
  try {
    // The binder is the HttpOnly cookie StartOidcSignIn set: this browser started it.
    const challenge = await session.finishSingleSignOn(location.href);
    if (challenge) throw new Error("a second factor was asked");
    say(`single sign-on as ${(await users.getMe({})).email}`);
  } catch (e) {
    say(`failed ${e}`);
  }
} else try {
  await session.login(q.get("email")!, q.get("password")!);
  say(`signed in as ${(await users.getMe({})).email}`);
  // The server ends a stream when its access token expires; the helper renews the token
  // (through the cookie) and resumes from its cursor.
  const renew = async () => {
    await session.renew();
    console.log("renewed the token through the cookie");
  };
  for await (const e of events(conversations, { renew })) {
    if (e.kind.case === "presenceSnapshot") say("live");
    if (e.kind.case === "messageCreated") {
      const li = document.createElement("li");
      li.textContent = e.kind.value.text;
      document.getElementById("messages")!.append(li);
      console.log(`message ${e.kind.value.text}`);
    }
  }
} catch (e) {
  say(`failed ${e}`);
}
