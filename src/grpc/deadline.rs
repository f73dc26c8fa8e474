//! Per-call deadlines: a unary call gets the shorter of the client's `grpc-timeout` and the
//! server's limit, then DEADLINE_EXCEEDED (its work is dropped, its transaction rolled
//! back). A streaming call's limit covers its start only (up to its first reply headers):
//! streams live as long as their grant.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use std::time::Duration;

/// The middleware; `limit` is the server's own bound.
pub async fn bound(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let asked = req
        .headers()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse);
    let deadline = asked.map_or(limit, |a| a.min(limit));
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => tonic::Status::deadline_exceeded(format!(
            "the call did not finish within its deadline ({deadline:?})"
        ))
        .into_http(),
    }
}

/// A `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse(raw: &str) -> Option<Duration> {
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_the_spec_and_bad_ones_are_ignored() {
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("99999999u"), Some(Duration::from_micros(99_999_999)));
        for bad in ["", "S", "123456789S", "5s", "-5S", "5.0S", "1x"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
