// The event stream that survives lost connections: it reconnects with backoff and resumes
// from the last cursor it saw, so the caller gets every durable event once and in order.
// A `resync` event is passed on (the caller reloads its state when it gets it); the stream
// then waits the server's `retryAfter` and continues from the resync's fresh cursor, so it
// never asks again for what the server cannot replay.
//
// What can never succeed is not retried: INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND and
// FAILED_PRECONDITION end the stream with the error (a bad cursor is for a resync, which the
// server sends itself). RESOURCE_EXHAUSTED (too many streams) waits the time the server asked
// for. An abort ends a backoff at once.
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { ConversationService, type Event } from "./gen/epop/v1/conversations_pb.js";
import { retryDelayMs } from "./session.js";

export interface EventOptions {
  /** Resume after this cursor (empty: from now). */
  cursor?: string;
  /** Stops the stream, at once (also during a backoff). */
  signal?: AbortSignal;
  /** Called before each reconnect with the attempt number, the error and the wait in ms. */
  onReconnect?: (attempt: number, error: ConnectError, delayMs: number) => void;
  /**
   * Called on UNAUTHENTICATED before reconnecting (e.g. `() => session.renew()`); without it,
   * or when it fails, the error ends the stream.
   */
  renew?: () => Promise<void>;
  minDelayMs?: number;
  maxDelayMs?: number;
}

/** The codes that another attempt cannot fix. */
const FINAL = new Set([
  Code.InvalidArgument,
  Code.PermissionDenied,
  Code.NotFound,
  Code.FailedPrecondition,
  Code.Unimplemented,
]);

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
      if (FINAL.has(e.code)) throw e;
      let delay: number | undefined;
      if (e.code === Code.Unauthenticated) {
        if (!o.renew) throw e;
        await o.renew();
        // A fresh token: start over (the failure was the token's, not the server's).
        attempt = 0;
        delay = 0;
      } else if (e.code === Code.ResourceExhausted) {
        delay = retryDelayMs(e);
      }
      attempt += 1;
      delay ??= Math.min(max, min * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      o.onReconnect?.(attempt, e, delay);
      if (!(await sleep(delay, o.signal))) return;
      continue;
    }
    // The server ended the stream cleanly: after a resync, when it said; else (shutdown) at once.
    if (wait > 0 && !(await sleep(wait, o.signal))) return;
  }
}

/** Waits `ms`; false if `signal` aborted first (then at once). */
function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", aborted);
    };
    const aborted = () => {
      done();
      resolve(false);
    };
    const timer = setTimeout(() => {
      done();
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", aborted, { once: true });
  });
}
