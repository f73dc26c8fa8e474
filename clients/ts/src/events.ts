// The event stream that survives lost connections: it reconnects with backoff and resumes
// from the last cursor it saw, so the caller gets every durable event once and in order.
// A `resync` event is passed on (the caller reloads its state when it gets it); the stream
// then waits the server's `retryAfter` and continues from the resync's fresh cursor, so it
// never asks again for what the server cannot replay.
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
    // The wait a resync asked for before the next stream.
    let wait = 0;
    try {
      for await (const e of client.streamEvents({ resumeCursor: cursor }, { signal: o.signal })) {
        attempt = 0;
        if (e.kind.case === "resync") {
          cursor = e.kind.value.cursor;
          const after = e.kind.value.retryAfter;
          wait = after ? Number(after.seconds) * 1000 + after.nanos / 1e6 : min;
        } else if (e.cursor) cursor = e.cursor;
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
    // The server ended the stream cleanly: after a resync, when it said; else (shutdown) at once.
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}
