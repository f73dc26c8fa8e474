//! Stream cursors: the position reached in each conversation's event log, as an opaque
//! URL-safe string (16-byte conversation id + 8-byte big-endian sequence per entry).

use crate::error::{Error, Result};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use std::collections::HashMap;
use uuid::Uuid;

/// Positions per conversation.
pub type Positions = HashMap<Uuid, i64>;

/// Encodes positions (sorted, so equal positions give equal cursors).
pub fn encode(positions: &Positions) -> String {
    let mut entries: Vec<(&Uuid, &i64)> = positions.iter().collect();
    entries.sort();
    let mut bytes = Vec::with_capacity(entries.len() * 24);
    for (c, s) in entries {
        bytes.extend_from_slice(c.as_bytes());
        bytes.extend_from_slice(&s.to_be_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a cursor from request field `field`.
pub fn decode(field: &str, raw: &str) -> Result<Positions> {
    let bad = || Error::invalid(field, "is not a cursor from this stream");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    if bytes.len() % 24 != 0 {
        return Err(bad());
    }
    bytes
        .chunks(24)
        .map(|c| {
            let id = Uuid::from_slice(&c[..16]).map_err(|_| bad())?;
            let seq = i64::from_be_bytes(c[16..].try_into().map_err(|_| bad())?);
            if seq < 0 { Err(bad()) } else { Ok((id, seq)) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let p: Positions = [(Uuid::new_v4(), 3), (Uuid::new_v4(), 0)]
            .into_iter()
            .collect();
        assert_eq!(decode("c", &encode(&p)).unwrap(), p);
        assert!(decode("c", "abc").is_err());
        assert!(decode("c", "!!").is_err());
    }
}
