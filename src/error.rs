//! The one error type of the service layer and its one mapping to `tonic::Status`.
//!
//! Client errors carry their message to the client (invalid arguments are also logged at
//! debug level; every response's status is in the trace layer's span); internal errors are
//! logged at error level and reach the client only as "internal error".

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A field of a request that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's proto name, e.g. `email` or `update_mask`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; each violation names a field.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The resource does not exist or the caller may not know it exists.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique value is already taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller is not signed in, or the credentials are wrong.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is signed in but not allowed.
    #[error("{0}")]
    PermissionDenied(String),
    /// The system is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent change won (optimistic concurrency): reload and retry.
    #[error("{0}")]
    Aborted(String),
    /// A dependency (database, ...) is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// Too much work is waiting (e.g. password hashing): retry shortly.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Refused for now (a rate limit, a sign-in lockout): retry after the duration.
    #[error("{0}")]
    RetryLater(String, std::time::Duration),
    /// Something took longer than allowed (e.g. an AI answer).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or an unexpected failure; details are logged, never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Shorthand for results of the service layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An invalid-argument error for one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// An unexpected failure with context.
    pub fn internal(context: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{context}"))
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error as E};
        // The connection, not the query, failed (it closed, its backend was terminated):
        // the client may retry.
        let lost = match &e {
            E::DatabaseError(Kind::UnableToSendCommand | Kind::ClosedConnection, _) => true,
            E::DatabaseError(_, info) => info.message().starts_with("terminating connection"),
            _ => false,
        };
        if lost {
            tracing::warn!(error = %e, "database connection lost");
            return Self::Unavailable("database unavailable, try again".into());
        }
        Self::Internal(anyhow::Error::new(e).context("database query failed"))
    }
}

impl From<bb8::RunError<diesel_async::pooled_connection::PoolError>> for Error {
    fn from(e: bb8::RunError<diesel_async::pooled_connection::PoolError>) -> Self {
        tracing::warn!(error = %e, "database pool unavailable");
        Self::Unavailable("database unavailable, try again".into())
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(violations) => {
                tracing::debug!(error = %describe(&violations), "invalid argument");
                let message = describe(&violations);
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Aborted(m) => Status::aborted(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            Error::RetryLater(what, wait) => retry_later(&what, wait),
            Error::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            Error::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// RESOURCE_EXHAUSTED saying `what` and when to retry, with `retry-after` (whole seconds, at
/// least one) in its metadata: HTTP clients get it as the `Retry-After` header.
pub fn retry_later(what: &str, wait: std::time::Duration) -> Status {
    let secs = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1);
    // Said twice: `retry-after` for HTTP clients, a google.rpc.RetryInfo detail for gRPC ones.
    let details = ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(secs)));
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Ok(v) = secs.to_string().parse() {
        metadata.insert("retry-after", v);
    }
    Status::with_error_details_and_metadata(
        Code::ResourceExhausted,
        format!("{what}: retry in {secs} s"),
        details,
        metadata,
    )
}

/// Maps a unique-constraint violation named `constraint` to ALREADY_EXISTS with `message`,
/// leaving every other database error as it is.
pub fn on_unique(e: diesel::result::Error, constraint: &str, message: impl Into<String>) -> Error {
    use diesel::result::{DatabaseErrorKind, Error as D};
    match &e {
        D::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(constraint) =>
        {
            Error::AlreadyExists(message.into())
        }
        _ => e.into(),
    }
}
