//! The gRPC surface: thin adapters per service, and the router that serves them over native
//! gRPC and gRPC-Web, with health, reflection, CORS and the authentication layer.

pub mod admin;
pub mod ai;
pub mod auth;
pub mod codec;
pub mod conversations;
pub mod convert;
pub mod deadline;
pub mod files;
pub mod notifications;
pub mod projects;
pub mod security;
pub mod tasks;
pub mod users;
pub mod web_body;

use crate::{auth::layer::authenticate, pb, service::State};
use axum::middleware::from_fn_with_state;
use http::Method;
use tonic::service::Routes;

/// The client's address, as the rate limits found it (peer, or a trusted proxy's header), on
/// the RPCs limited per address.
pub fn client_ip<T>(request: &tonic::Request<T>) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<crate::ratelimit::ClientIp>()
        .map(|c| c.0)
}

/// Who is calling: the user agent they send and their address.
pub fn client_info<T>(request: &tonic::Request<T>) -> crate::domain::security::ClientInfo {
    let agent = request
        .metadata()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    crate::domain::security::ClientInfo::new(agent, client_ip(request))
}

/// The fully-qualified names of EPOP's ten services, from the generated code.
pub const SERVICE_NAMES: [&str; 10] = [
    pb::auth_service_server::SERVICE_NAME,
    pb::user_service_server::SERVICE_NAME,
    pb::admin_service_server::SERVICE_NAME,
    pb::project_service_server::SERVICE_NAME,
    pb::task_service_server::SERVICE_NAME,
    pb::conversation_service_server::SERVICE_NAME,
    pb::file_service_server::SERVICE_NAME,
    pb::ai_service_server::SERVICE_NAME,
    pb::notification_service_server::SERVICE_NAME,
    pb::security_service_server::SERVICE_NAME,
];

/// The gRPC router: every EPOP service, `grpc.health.v1`, reflection v1 and v1alpha; behind
/// authentication and rate limits, gRPC-Web translation and CORS.
pub fn router(
    state: &State,
    limits: std::sync::Arc<crate::ratelimit::RateLimits>,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    cors_origins: &[String],
    bodies: web_body::Bodies,
    rpc_timeout: std::time::Duration,
) -> anyhow::Result<axum::Router> {
    let max_message = bodies.max_message;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // Every EPOP service sends and accepts messages of at most `max_message` bytes.
    macro_rules! limited {
        ($server:ty, $api:expr) => {
            <$server>::new($api)
                .max_encoding_message_size(max_message)
                .max_decoding_message_size(max_message)
        };
    }
    use pb::{
        ai_service_server::AiServiceServer, auth_service_server::AuthServiceServer,
        conversation_service_server::ConversationServiceServer,
        file_service_server::FileServiceServer, project_service_server::ProjectServiceServer,
        task_service_server::TaskServiceServer, user_service_server::UserServiceServer,
    };
    // Sign-in and the other public calls take small messages only: strangers' bytes.
    let routes = Routes::new(
        limited!(AuthServiceServer<_>, auth::AuthApi::new(state.clone()))
            .max_decoding_message_size(crate::intake::STRANGER_LIMIT),
    )
    .add_service(limited!(
        UserServiceServer<_>,
        users::UserApi::new(state.clone())
    ))
    .add_service(limited!(
        pb::admin_service_server::AdminServiceServer<_>,
        admin::AdminApi::new(state.clone())
    ))
    .add_service(limited!(
        ProjectServiceServer<_>,
        projects::ProjectApi::new(state.clone())
    ))
    .add_service(limited!(
        TaskServiceServer<_>,
        tasks::TaskApi::new(state.clone())
    ))
    .add_service(limited!(
        ConversationServiceServer<_>,
        conversations::ConversationApi::new(state.clone())
    ))
    .add_service(limited!(
        FileServiceServer<_>,
        files::FileApi::new(state.clone())
    ))
    .add_service(limited!(AiServiceServer<_>, ai::AiApi::new(state.clone())))
    .add_service(limited!(
        pb::notification_service_server::NotificationServiceServer<_>,
        notifications::NotificationApi::new(state.clone())
    ))
    .add_service(limited!(
        pb::security_service_server::SecurityServiceServer<_>,
        security::SecurityApi::new(state.clone())
    ))
    // Public too: strangers' messages are small (and what tonic reserves for them as well).
    .add_service(health.max_decoding_message_size(crate::intake::STRANGER_LIMIT))
    .add_service(
        reflection()
            .build_v1()?
            .max_decoding_message_size(crate::intake::STRANGER_LIMIT),
    )
    .add_service(
        reflection()
            .build_v1alpha()?
            .max_decoding_message_size(crate::intake::STRANGER_LIMIT),
    );
    // The layers wrap the router as a whole (outermost first), not each of its routes as
    // `Router::layer` would: a call then clones one plain stack instead of a boxed service
    // per layer and route.
    let stack = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn(crate::metrics::tag_protocol))
        .layer(cors(cors_origins)?)
        .layer(tonic_web::GrpcWebLayer::new())
        .map_request(|req: http::Request<tonic::body::Body>| req.map(axum::body::Body::new))
        // Every call counted, refused ones included, as native gRPC (trailers, not frames).
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(from_fn_with_state(state.gate(), authenticate))
        // Bodies are read only once their caller is known.
        .layer(from_fn_with_state(bodies, web_body::take))
        // Inside authentication: per-user limits know the caller.
        .layer(from_fn_with_state(limits, crate::ratelimit::limit))
        .layer(from_fn_with_state(rpc_timeout, deadline::bound))
        .service(routes.into_axum_router());
    Ok(axum::Router::new().fallback_service(stack))
}

/// CORS for browser gRPC-Web and Connect clients (their preflights come here): only the
/// configured origins, with credentials (the refresh cookie), exposing the gRPC status
/// headers. GET: Connect's side-effect-free calls.
fn cors(origins: &[String]) -> anyhow::Result<tower_http::cors::CorsLayer> {
    Ok(crate::cors::layer(
        crate::cors::origins(origins)?,
        vec![Method::POST, Method::GET, Method::OPTIONS],
        &[
            "authorization",
            "content-type",
            "x-grpc-web",
            "x-user-agent",
            "grpc-timeout",
            "x-request-id",
            "connect-protocol-version",
            "connect-timeout-ms",
        ],
        &[
            "grpc-status",
            "grpc-message",
            "grpc-status-details-bin",
            "x-request-id",
        ],
    ))
}
