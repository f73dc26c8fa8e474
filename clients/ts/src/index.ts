// The EPOP API for TypeScript, for browsers and Node (`@epop/client`): the generated
// Connect-ES v2 service descriptors and messages (src/gen, from proto/ with buf and
// protoc-gen-es), the google.rpc error details (for `ConnectError.findDetails`), the gRPC-Web
// transport of browsers, a session with token refresh, the resuming event stream and decoded
// field violations. Node's transports (gRPC, gRPC-Web over HTTP/2) are in `@epop/client/node`.
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

export * from "./gen/epop/v1/auth_pb.js";
export * from "./gen/epop/v1/users_pb.js";
export * from "./gen/epop/v1/admin_pb.js";
export * from "./gen/epop/v1/projects_pb.js";
export * from "./gen/epop/v1/tasks_pb.js";
export * from "./gen/epop/v1/conversations_pb.js";
export * from "./gen/epop/v1/files_pb.js";
export * from "./gen/epop/v1/ai_pb.js";
export * from "./gen/epop/v1/notifications_pb.js";
export * from "./gen/epop/v1/security_pb.js";
export * from "./gen/epop/v1/common_pb.js";
export * from "./gen/google/rpc/error_details_pb.js";
export {
  Session,
  fieldViolations,
  retryDelayMs,
  type FieldViolation,
  type SessionOptions,
  type Tokens,
} from "./session.js";
export { events, type EventOptions } from "./events.js";
export {
  inbox,
  markNotificationsRead,
  subscribeToPush,
  unsubscribeFromPush,
  type PushManagerLike,
  type PushSubscriptionLike,
} from "./push.js";

/** What a browser transport needs: the server's base URL, interceptors and the protocol. */
export interface WebTransportOptions {
  baseUrl: string;
  interceptors?: Interceptor[];
  /** gRPC-Web (the default) or the Connect protocol (JSON, GET for reads). */
  protocol?: "grpc-web" | "connect";
}

/**
 * A transport over `fetch` (browsers, or Node 18+). It sends credentials, so the
 * `epop_refresh` cookie reaches the server when the page's origin is in `EPOP_CORS_ORIGINS`.
 */
export function webTransport(o: WebTransportOptions): Transport {
  const options = {
    baseUrl: o.baseUrl,
    interceptors: o.interceptors ?? [],
    fetch: (input: RequestInfo | URL, init?: RequestInit) =>
      globalThis.fetch(input, { ...init, credentials: "include" }),
  };
  return o.protocol === "connect"
    ? createConnectTransport({ ...options, useHttpGet: true })
    : createGrpcWebTransport(options);
}

/** An interceptor that sends `Authorization: Bearer <token>` with the current token. */
export function bearer(token: () => string | undefined): Interceptor {
  return (next) => async (req) => {
    const t = token();
    if (t) req.header.set("authorization", `Bearer ${t}`);
    return next(req);
  };
}
