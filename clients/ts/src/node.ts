// Node's transports (`@connectrpc/connect-node`): native gRPC, gRPC-Web or the Connect protocol
// over HTTP/1.1 or HTTP/2. Everything of `./index.js` is re-exported, so Node code imports
// from here alone.
import type { Interceptor, Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

export * from "./index.js";

/** Which wire protocol a transport speaks. */
export type Protocol = "grpc" | "grpc-web" | "connect";

/** What a transport needs: the server's base URL, the protocol, and interceptors. */
export interface TransportOptions {
  baseUrl: string;
  protocol: Protocol;
  /** For gRPC-Web and Connect: "1.1" or "2" (default "2"). */
  httpVersion?: "1.1" | "2";
  /** For Connect: binary messages rather than JSON (default false). */
  binary?: boolean;
  interceptors?: Interceptor[];
}

/** A Node transport. Browsers use `webTransport` with the same base URL. */
export function nodeTransport(o: TransportOptions): Transport {
  const interceptors = o.interceptors ?? [];
  const httpVersion = o.httpVersion ?? "2";
  switch (o.protocol) {
    case "grpc":
      return createGrpcTransport({ baseUrl: o.baseUrl, interceptors });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl: o.baseUrl, httpVersion, interceptors });
    case "connect":
      // Side-effect-free methods (marked in the protos) go as cacheable GETs.
      return createConnectTransport({
        baseUrl: o.baseUrl,
        httpVersion,
        interceptors,
        useBinaryFormat: o.binary ?? false,
        useHttpGet: true,
      });
  }
}

