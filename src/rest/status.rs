//! gRPC status to HTTP: the standard code mapping, and `google.rpc.Status` as the JSON body.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use serde_json::{Value, json};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The HTTP status for a gRPC code (the mapping of grpc-gateway and Envoy).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `google.rpc.Status` JSON of a status: `code`, `message`, `details` (field
/// violations as a `google.rpc.BadRequest`).
pub fn status_json(status: &Status) -> Value {
    let mut details = vec![];
    if let Some(bad) = status.get_details_bad_request() {
        let violations: Vec<Value> = bad
            .field_violations
            .iter()
            .map(|v| json!({ "field": v.field, "description": v.description }))
            .collect();
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": violations,
        }));
    }
    json!({ "code": status.code() as i32, "message": status.message(), "details": details })
}

/// An error response for `status`.
pub fn error_response(status: &Status) -> Response {
    (http_status(status.code()), Json(status_json(status))).into_response()
}

/// An error response with an explicit HTTP status (404 and 405 of the router, 413).
pub fn plain_error(http: StatusCode, code: Code, message: impl Into<String>) -> Response {
    (http, Json(status_json(&Status::new(code, message)))).into_response()
}
