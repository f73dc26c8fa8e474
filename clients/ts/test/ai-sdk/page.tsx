// A React page on its own origin that chats with EPOP through the AI SDK's `useChat`
// (@ai-sdk/react) and its DefaultChatTransport: what the original front end does, with
// `resume: true` (a reload rejoins the answer in progress).
//   ?api=<EPOP base URL>&token=<access token>&chat=<chat id>&ask=<question>
import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport, type UIMessage } from "ai";
import { createRoot } from "react-dom/client";

const q = new URLSearchParams(location.search);
const transport = new DefaultChatTransport<UIMessage>({
  api: `${q.get("api")}/api/ai/ui-chat`,
  headers: { authorization: `Bearer ${q.get("token")}` },
});

function App() {
  const { messages, sendMessage, status, error } = useChat({
    id: q.get("chat") ?? undefined,
    transport,
    resume: true,
  });
  return (
    <div>
      <button id="ask" onClick={() => void sendMessage({ text: q.get("ask") ?? "Hello from React" })}>
        ask
      </button>
      <p id="status">{status}</p>
      {error ? <p id="error">{error.message}</p> : null}
      <ul id="messages">
        {messages.map((m) => (
          <li key={m.id} data-role={m.role} data-chat={String((m.metadata as { chatId?: string } | undefined)?.chatId ?? "")}>
            {m.parts.map((p) => (p.type === "text" ? p.text : "")).join("")}
          </li>
        ))}
      </ul>
    </div>
  );
}

createRoot(document.getElementById("root")!).render(<App />);
