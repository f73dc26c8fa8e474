// The EPOP API for TypeScript: the generated Connect-ES v2 service descriptors and messages
// (src/gen, from proto/ with buf and protoc-gen-es), and a transport factory.
import type { Interceptor, Transport } from "@connectrpc/connect";

export * from "./gen/epop/v1/auth_pb.js";
export * from "./gen/epop/v1/users_pb.js";
export * from "./gen/epop/v1/admin_pb.js";
export * from "./gen/epop/v1/projects_pb.js";
export * from "./gen/epop/v1/tasks_pb.js";
export * from "./gen/epop/v1/conversations_pb.js";
export * from "./gen/epop/v1/files_pb.js";
export * from "./gen/epop/v1/ai_pb.js";
export * from "./gen/epop/v1/common_pb.js";
export { Session, fieldViolations, type FieldViolation } from "./session.js";
export { events, type EventOptions } from "./events.js";

/** Which wire protocol a transport speaks. */
export type Protocol = "grpc" | "grpc-web";

/** What a transport needs: the server's base URL, the protocol, and interceptors. */
export interface TransportOptions {
  baseUrl: string;
  protocol: Protocol;
  /** For gRPC-Web from Node: "1.1" or "2" (default "2"). */
  httpVersion?: "1.1" | "2";
  interceptors?: Interceptor[];
}

/**
 * A Node transport (gRPC or gRPC-Web). Browsers use `createGrpcWebTransport` from
 * `@connectrpc/connect-web` with the same base URL.
 */
export async function nodeTransport(o: TransportOptions): Promise<Transport> {
  const node = await import("@connectrpc/connect-node");
  const interceptors = o.interceptors ?? [];
  return o.protocol === "grpc"
    ? node.createGrpcTransport({ baseUrl: o.baseUrl, interceptors })
    : node.createGrpcWebTransport({
        baseUrl: o.baseUrl,
        httpVersion: o.httpVersion ?? "2",
        interceptors,
      });
}

/** An interceptor that sends `Authorization: Bearer <token>` with the current token. */
export function bearer(token: () => string | undefined): Interceptor {
  return (next) => async (req) => {
    const t = token();
    if (t) req.header.set("authorization", `Bearer ${t}`);
    return next(req);
  };
}
