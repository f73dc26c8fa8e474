// The event stream that survives lost connections: it reconnects with backoff and resumes
// from the last cursor it saw, so the caller gets every durable event once and in order.
// A `resync` event is passed on (the caller reloads its state) and the stream restarts live.
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { ConversationService, type Event } from "./gen/epop/v1/conversations_pb.js";

export interface EventOptions {
  /** Resume after this cursor (empty: from now). */
  cursor?: string;
  /** Stops the stream. */
  signal?: AbortSignal;
  /** Called before each reconnect with the attempt number and the error. */
  onReconnect?: (attempt: number, error: ConnectError) => void;
  /** Called on UNAUTHENTICATED before reconnecting (e.g. `session.renew()`); without it, the error ends the stream. */
  renew?: () => Promise<void>;
  minDelayMs?: number;
  maxDelayMs?: number;
}

export async function* events(
  client: Client<typeof ConversationService>,
  o: EventOptions = {},
): AsyncGenerator<Event> {
  let cursor = o.cursor ?? "";
  let attempt = 0;
  const min = o.minDelayMs ?? 250;
  const max = o.maxDelayMs ?? 10_000;
  while (!o.signal?.aborted) {
    try {
      for await (const e of client.streamEvents({ resumeCursor: cursor }, { signal: o.signal })) {
        attempt = 0;
        if (e.kind.case === "resync") cursor = "";
        else if (e.cursor) cursor = e.cursor;
        yield e;
      }
    } catch (err) {
      const e = ConnectError.from(err);
      if (o.signal?.aborted) return;
      if (e.code === Code.Unauthenticated) {
        if (!o.renew) throw e;
        await o.renew();
      }
      attempt += 1;
      o.onReconnect?.(attempt, e);
      const delay = Math.min(max, min * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      await new Promise((r) => setTimeout(r, delay));
      continue;
    }
    // The server ended the stream cleanly (shutdown): reconnect at once.
  }
}
