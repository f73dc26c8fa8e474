//! Stream cursors: the position reached in each conversation's event log, as an opaque
//! URL-safe string (16-byte conversation id + 8-byte big-endian sequence per entry), signed
//! for the user it was issued to (HMAC-SHA256, 128-bit tag), so a client can hand back only
//! positions the server gave it.

use crate::{
    domain::UserId,
    error::{Error, Result},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use uuid::Uuid;

/// Positions per conversation.
pub type Positions = HashMap<Uuid, i64>;

/// The most entries a cursor may hold (one per conversation of the user).
pub const MAX_ENTRIES: usize = 10_000;
const ENTRY: usize = 24;
const TAG: usize = 16;

/// Signs and checks cursors.
#[derive(Clone)]
pub struct CursorKey(Hmac<Sha256>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    /// A key from secret bytes (derived from the token-signing secret, so every instance
    /// that verifies the same tokens accepts the same cursors).
    pub fn new(secret: &[u8; 32]) -> Self {
        Self(Hmac::new_from_slice(secret).expect("HMAC takes keys of any length"))
    }

    fn mac(&self, user: UserId, entries: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(user.0.as_bytes());
        mac.update(entries);
        mac
    }

    /// Encodes `user`'s positions (sorted, so equal positions give equal cursors).
    pub fn encode(&self, user: UserId, positions: &Positions) -> String {
        let mut entries: Vec<(&Uuid, &i64)> = positions.iter().collect();
        entries.sort();
        let mut bytes = Vec::with_capacity(entries.len() * ENTRY + TAG);
        for (c, s) in entries {
            bytes.extend_from_slice(c.as_bytes());
            bytes.extend_from_slice(&s.to_be_bytes());
        }
        let tag = self.mac(user, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes a cursor of `user` from request field `field`: refused unless this server
    /// signed it for this user.
    pub fn decode(&self, field: &str, user: UserId, raw: &str) -> Result<Positions> {
        let bad = || Error::invalid(field, "is not a cursor from this stream");
        if raw.len() > (MAX_ENTRIES * ENTRY + TAG).div_ceil(3) * 4 {
            return Err(Error::invalid(
                field,
                format!("holds more than {MAX_ENTRIES} positions"),
            ));
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        if bytes.len() < TAG || !(bytes.len() - TAG).is_multiple_of(ENTRY) {
            return Err(bad());
        }
        let (entries, tag) = bytes.split_at(bytes.len() - TAG);
        self.mac(user, entries)
            .verify_truncated_left(tag)
            .map_err(|_| bad())?;
        entries
            .chunks(ENTRY)
            .map(|c| {
                let id = Uuid::from_slice(&c[..16]).map_err(|_| bad())?;
                let seq = i64::from_be_bytes(c[16..].try_into().map_err(|_| bad())?);
                if seq < 0 { Err(bad()) } else { Ok((id, seq)) }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_for_their_user_only_and_reject_garbage_and_forgeries() {
        let key = CursorKey::new(&[3; 32]);
        let (ann, bob) = (UserId(Uuid::new_v4()), UserId(Uuid::new_v4()));
        let c = Uuid::new_v4();
        let p: Positions = [(c, 3), (Uuid::new_v4(), 0)].into_iter().collect();
        let cursor = key.encode(ann, &p);
        assert_eq!(key.decode("c", ann, &cursor).unwrap(), p);
        assert!(
            key.decode("c", bob, &cursor).is_err(),
            "another user's cursor"
        );
        assert!(CursorKey::new(&[4; 32]).decode("c", ann, &cursor).is_err());
        assert!(key.decode("c", ann, "abc").is_err());
        assert!(key.decode("c", ann, "!!").is_err());
        // The unsigned form of earlier versions, and a rewound position, are refused.
        let mut forged = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        let i = forged.len() - TAG - 1;
        forged[i] ^= 1;
        assert!(
            key.decode("c", ann, &URL_SAFE_NO_PAD.encode(forged))
                .is_err()
        );
        let unsigned = [c.as_bytes().as_slice(), &0i64.to_be_bytes()].concat();
        assert!(
            key.decode("c", ann, &URL_SAFE_NO_PAD.encode(unsigned))
                .is_err()
        );
        let huge = "A".repeat((MAX_ENTRIES + 1) * 32 + 100);
        let err = key.decode("c", ann, &huge).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
    }
}
