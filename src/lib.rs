//! EPOP: the backend of a team-collaboration app, as one gRPC-first Rust service that also
//! speaks gRPC-Web and REST/JSON on the same port.
//!
//! # Layout
//!
//! - [`ai`]: the OpenAI-compatible AI provider (async-openai), streamed piece by piece.
//! - [`app`]: builds the server from a [`config::Config`], binds, runs until stopped.
//! - [`serve`]: the accept loop and its transport limits.
//! - [`intake`]: request bodies: read deadlines and the budget of buffered bytes.
//! - [`edge`]: the router in front of everything: protocol dispatch, security headers.
//! - [`config`]: typed settings from flags and environment variables.
//! - [`cors`]: the one origin allow-list of gRPC-Web and the REST edge.
//! - [`csrf`]: the cookie routes refuse requests that other sites' pages started.
//! - [`error`]: the one error type and its one mapping to `tonic::Status`.
//! - [`parts`]: file storage and the AI assistant, built from the configuration.
//! - [`probes`]: `/healthz`, `/readyz`, `/metrics` and gRPC health.
//! - [`pb`]: generated protobuf types, servers, clients and the descriptor set.
//! - [`grpc`]: thin adapters from tonic requests to services, and the router.
//! - [`rest`]: the REST/JSON edge transcoded from `google.api.http`, SSE, OpenAPI.
//! - [`auth`]: JWTs, password hashing, the authentication layer and the caller type.
//! - [`domain`]: typed ids and validated values; no IO.
//! - [`service`]: business rules, authorization and transactions.
//! - [`db`]: the pool, the embedded PostgreSQL, the generated schema and the queries.
//! - [`realtime`]: the broker, resumable event stream sessions and their cursors.
//! - [`redis_link`]: Redis, a single server or a cluster; [`bounded_redis`]: Redis for
//!   checks that must not wait on it.
//! - [`jobs`]: the durable jobs table worker (handlers are registered in [`app`]).
//! - [`mail`]: the email sender (SMTP or `.eml` files).
//! - [`push`]: push services (Web Push with VAPID, FCM HTTP v1, APNs).
//! - [`metrics`]: Prometheus metrics, `/metrics`, and the layer that counts every RPC.
//! - [`storage`]: file objects (S3/MinIO or a local directory) and their presigned URLs.
//! - [`telemetry`]: logging (text or JSON lines) and the request span.
//! - [`tls`]: TLS on the listener, reloaded on SIGHUP.

pub mod ai;
pub mod app;
pub mod auth;
pub mod bounded_redis;
pub mod config;
pub mod cors;
pub mod csrf;
pub mod db;
pub mod domain;
pub mod edge;
pub mod error;
pub mod grpc;
pub mod intake;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod parts;
pub mod pb;
pub mod probes;
pub mod push;
pub mod ratelimit;
pub mod realtime;
pub mod redis_link;
pub mod rest;
pub mod serve;
pub mod service;
pub mod storage;
pub mod telemetry;
pub mod tls;
