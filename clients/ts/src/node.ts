// Node's transports: native gRPC, or gRPC-Web over HTTP/1.1 or HTTP/2 (`@connectrpc/connect-node`).
// Everything of `./index.js` is re-exported, so Node code imports from here alone.
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

export * from "./index.js";

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

/** A Node transport (gRPC or gRPC-Web). Browsers use `webTransport` with the same base URL. */
export function nodeTransport(o: TransportOptions): Transport {
  const interceptors = o.interceptors ?? [];
  return o.protocol === "grpc"
    ? createGrpcTransport({ baseUrl: o.baseUrl, interceptors })
    : createGrpcWebTransport({
        baseUrl: o.baseUrl,
        httpVersion: o.httpVersion ?? "2",
        interceptors,
      });
}

