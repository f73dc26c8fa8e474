// The AI SDK's own client (the `ai` package: DefaultChatTransport and readUIMessageStream, what
// `useChat` runs) against POST /api/ai/ui-chat, answered by the fake OpenAI-compatible
// provider: the answer streams in as a UI message with its saved chat in the metadata; a
// second turn with the same SDK chat id continues the same saved chat; an answer whose client
// aborted runs on and `reconnectToStream` (what `resume: true` calls) replays it whole; no
// token is a 401.
//   node out/ai-sdk.mjs BASE_URL ADMIN_PASSWORD
import { DefaultChatTransport, readUIMessageStream, type UIMessage } from "ai";

const [base, password] = process.argv.slice(2);
const login = await fetch(`${base}/api/auth/login`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ email: "admin@epop.local", password }),
});
const { accessToken } = (await login.json()) as { accessToken: string };
const api = `${base}/api/ai/ui-chat`;
const transport = new DefaultChatTransport<UIMessage>({
  api,
  headers: { authorization: `Bearer ${accessToken}` },
});

const chatId = `sdk-${Date.now()}`;
async function ask(messages: UIMessage[]): Promise<UIMessage> {
  const stream = await transport.sendMessages({
    chatId,
    messages,
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  let last: UIMessage | undefined;
  for await (const m of readUIMessageStream({ stream })) last = m;
  if (!last) throw new Error("no message streamed");
  return last;
}
const text = (m: UIMessage) =>
  m.parts.map((p) => (p.type === "text" ? p.text : "")).join("");
const question = (id: string, t: string): UIMessage => ({
  id,
  role: "user",
  parts: [{ type: "text", text: t }],
});

const q1 = question("q1", "What is EPOP?");
const a1 = await ask([q1]);
const saved = (a1.metadata as { chatId?: string } | undefined)?.chatId;
if (a1.role !== "assistant" || !/t0@\d+ t1@/.test(text(a1)) || !saved) {
  throw new Error(`first answer: ${JSON.stringify(a1)}`);
}
const a2 = await ask([q1, a1, question("q2", "And then?")]);
if ((a2.metadata as { chatId?: string } | undefined)?.chatId !== saved) {
  throw new Error(`the second turn went to another chat: ${JSON.stringify(a2.metadata)}`);
}
// The saved chat holds both questions and both answers, once each.
const chat = await fetch(`${base}/api/ai/chats/${saved}`, {
  headers: { authorization: `Bearer ${accessToken}` },
});
const turns = ((await chat.json()) as { turns: unknown[] }).turns;
if (turns.length !== 4) throw new Error(`the saved chat has ${turns.length} turns`);

// Resumption: abort a slow answer after its first part, then rejoin it from its start.
const slowChat = `${chatId}-resumed`;
const abort = new AbortController();
const first = await transport.sendMessages({
  chatId: slowChat,
  messages: [question("s1", "tokens=20 every=100")],
  trigger: "submit-message",
  messageId: undefined,
  abortSignal: abort.signal,
});
await first.getReader().read();
abort.abort();
const rejoined = await transport.reconnectToStream({ chatId: slowChat });
if (!rejoined) throw new Error("no answer in progress to rejoin");
let resumed: UIMessage | undefined;
for await (const m of readUIMessageStream({ stream: rejoined })) resumed = m;
const tokens = resumed ? text(resumed).match(/t\d+@/g) ?? [] : [];
if (tokens.length !== 20 || tokens[0] !== "t0@" || tokens[19] !== "t19@") {
  throw new Error(`the rejoined answer: ${JSON.stringify(resumed)}`);
}
if ((await transport.reconnectToStream({ chatId: slowChat })) !== null) {
  throw new Error("an ended answer is still offered for rejoining");
}

const anonymous = new DefaultChatTransport<UIMessage>({ api });
try {
  await anonymous.sendMessages({
    chatId,
    messages: [q1],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  throw new Error("a call without a token was answered");
} catch (e) {
  // The SDK surfaces the error body: the REST edge's UNAUTHENTICATED (code 16).
  if (!String(e).includes('"code":16')) throw e;
}
console.log(
  `ai-sdk: useChat's transport streamed two answers into saved chat ${saved}, rejoined an aborted answer whole; no token refused`,
);
