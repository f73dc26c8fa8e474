//! Connect's wire format: envelopes of streams, messages in JSON or binary (and in a GET's
//! query), content types, and the error JSON with its `google.rpc` details.

use crate::rest::bind;
use axum::response::{IntoResponse, Response};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD},
};
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, StatusCode, header};
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use serde_json::{Value, json};
use tonic::{Code, Status};

/// End-of-stream flag of a streaming envelope.
pub const END_STREAM: u8 = 0b10;
/// Compressed flag of a streaming envelope (compression is not offered).
const COMPRESSED: u8 = 0b01;

/// The encodings of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Canonical proto3 JSON.
    Json,
    /// Protobuf binary.
    Proto,
}

pub fn envelope(flags: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + data.len());
    b.put_u8(flags);
    b.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
    b.put_slice(data);
    b.freeze()
}

pub fn end_of_stream(error: Option<&Status>) -> Bytes {
    let body = match error {
        Some(s) => json!({ "error": error_json(s) }),
        None => json!({}),
    };
    envelope(END_STREAM, body.to_string().as_bytes())
}

/// The one message of a streaming request's body.
pub fn unenvelope(body: &[u8]) -> Result<Vec<u8>, Status> {
    let bad = || Status::invalid_argument("the body is not one Connect envelope");
    let (&flags, rest) = body.split_first().ok_or_else(bad)?;
    if flags & COMPRESSED != 0 {
        return Err(Status::unimplemented(
            "compressed messages are not accepted",
        ));
    }
    let len = rest.get(..4).ok_or_else(bad)?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| bad())?) as usize;
    let data = rest.get(4..4 + len).ok_or_else(bad)?;
    if rest.len() != 4 + len {
        return Err(Status::invalid_argument(
            "a server-streaming call takes one message",
        ));
    }
    Ok(data.to_vec())
}

pub fn decode(
    encoding: Encoding,
    desc: &MessageDescriptor,
    data: &[u8],
) -> Result<DynamicMessage, Status> {
    match encoding {
        Encoding::Json => bind::from_json(desc, data).map_err(Status::from),
        Encoding::Proto => DynamicMessage::decode(desc.clone(), data)
            .map_err(|e| Status::invalid_argument(format!("the message is not valid: {e}"))),
    }
}

/// A GET's message: `message` (percent-encoded JSON, or base64url bytes with `base64=1`) in
/// `encoding` (`json` or `proto`).
pub fn from_query(desc: &MessageDescriptor, query: Option<&str>) -> Result<DynamicMessage, Status> {
    let mut message = None;
    let (mut encoding, mut base64) = (Encoding::Json, false);
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "message" => message = Some(v.into_owned()),
            "encoding" if v == "proto" => encoding = Encoding::Proto,
            "encoding" if v == "json" => encoding = Encoding::Json,
            "encoding" => return Err(Status::invalid_argument("encoding must be json or proto")),
            "base64" => base64 = v == "1",
            "compression" if v != "identity" => {
                return Err(Status::unimplemented(
                    "compressed messages are not accepted",
                ));
            }
            _ => {}
        }
    }
    let raw = message.unwrap_or_default();
    let bytes = if base64 {
        URL_SAFE_NO_PAD
            .decode(raw.trim_end_matches('='))
            .map_err(|_| Status::invalid_argument("message is not base64url"))?
    } else {
        raw.into_bytes()
    };
    decode(encoding, desc, &bytes)
}

pub fn encode(encoding: Encoding, msg: &DynamicMessage) -> Vec<u8> {
    match encoding {
        Encoding::Json => bind::to_json_bytes(msg),
        Encoding::Proto => msg.encode_to_vec(),
    }
}

pub fn mime(encoding: Encoding, streaming: bool) -> HeaderValue {
    HeaderValue::from_static(match (encoding, streaming) {
        (Encoding::Json, false) => "application/json",
        (Encoding::Proto, false) => "application/proto",
        (Encoding::Json, true) => "application/connect+json",
        (Encoding::Proto, true) => "application/connect+proto",
    })
}

/// A unary error: Connect's JSON with `http` status.
pub fn unary_error(http: StatusCode, status: &Status) -> Response {
    (
        http,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        error_json(status).to_string(),
    )
        .into_response()
}

/// Connect's error JSON: `code` by name, `message`, and the `google.rpc` details.
pub fn error_json(status: &Status) -> Value {
    let details: Vec<Value> = tonic_types::pb::Status::decode(status.details())
        .map(|s| s.details)
        .unwrap_or_default()
        .into_iter()
        .map(|any| {
            let ty = any
                .type_url
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            json!({ "type": ty, "value": STANDARD_NO_PAD.encode(&any.value) })
        })
        .collect();
    let mut e = json!({ "code": code_name(status.code()), "message": status.message() });
    if !details.is_empty() {
        e["details"] = Value::Array(details);
    }
    e
}

pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}
