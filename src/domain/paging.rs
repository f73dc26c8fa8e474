//! Cursor paging: page sizes and opaque page tokens that carry the last key seen.

use crate::error::{Error, Result};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Datelike, Utc};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// True for a year the database stores and every client can show: 1 to 9999. (PostgreSQL
/// takes a wider range, chrono a different one; a value outside either is a client error,
/// never a 500.)
pub fn year_in_range(year: i32) -> bool {
    (1..=9999).contains(&year)
}

/// The key a page token carries, checked once decoded: a hand-made token must not carry a
/// value the database cannot take.
pub trait PageKey: Serialize + DeserializeOwned {
    /// True when every value of the key is one the database takes.
    fn in_range(&self) -> bool {
        true
    }
}

impl PageKey for i64 {}
impl PageKey for (String, Uuid) {}
impl PageKey for (DateTime<Utc>, Uuid) {
    fn in_range(&self) -> bool {
        year_in_range(self.0.year())
    }
}
impl PageKey for (DateTime<Utc>, Uuid, String) {
    fn in_range(&self) -> bool {
        year_in_range(self.0.year()) && !self.2.contains('\0')
    }
}
impl PageKey for (DateTime<Utc>, i64) {
    fn in_range(&self) -> bool {
        year_in_range(self.0.year())
    }
}

/// A page size within bounds: 0 means the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(pub i64);

impl PageSize {
    /// Checks `page_size` against `default` and `max`.
    pub fn parse(raw: i32, default: i64, max: i64) -> Result<Self> {
        match raw {
            0 => Ok(Self(default)),
            n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
            n if i64::from(n) > max => Err(Error::invalid(
                "page_size",
                format!("must be at most {max}"),
            )),
            n => Ok(Self(i64::from(n))),
        }
    }
}

/// An opaque page token: the base64 of the JSON of the last key of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken<K>(pub Option<K>);

impl<K: PageKey> PageToken<K> {
    /// Decodes `page_token` (empty means the first page).
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.is_empty() {
            return Ok(Self(None));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| Error::invalid("page_token", "is not a token from a previous page"))?;
        // PostgreSQL text cannot hold NUL: a forged token with one is malformed, not a 500.
        if bytes.windows(6).any(|w| w == b"\\u0000") {
            return Err(Error::invalid(
                "page_token",
                "is not a token from a previous page",
            ));
        }
        match serde_json::from_slice::<K>(&bytes) {
            Ok(k) if k.in_range() => Ok(Self(Some(k))),
            _ => Err(Error::invalid(
                "page_token",
                "is not a token from a previous page",
            )),
        }
    }
}

impl<K: Serialize> PageToken<K> {
    /// Encodes a key as a token.
    pub fn encode(key: &K) -> String {
        // Serialising plain keys (strings, uuids, numbers) cannot fail.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
    }
}

/// One page of results and the token of the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// The token of the next page; empty on the last page.
    pub next_page_token: String,
}

impl<T> Page<T> {
    /// Builds a page from up to `size + 1` rows fetched: the extra row only tells that a
    /// next page exists; `key` makes the token from the last item kept.
    pub fn from_rows<K: Serialize + DeserializeOwned>(
        mut rows: Vec<T>,
        size: PageSize,
        key: impl Fn(&T) -> K,
    ) -> Self {
        let more = rows.len() as i64 > size.0;
        rows.truncate(size.0 as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => PageToken::<K>::encode(&key(last)),
            _ => String::new(),
        };
        Self {
            items: rows,
            next_page_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl PageKey for (String, i32) {}

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let t = PageToken::<(String, i32)>::encode(&("b".into(), 7));
        assert_eq!(
            PageToken::<(String, i32)>::parse(&t).unwrap().0,
            Some(("b".into(), 7))
        );
        assert!(PageToken::<(String, i32)>::parse("!!").is_err());
    }

    #[test]
    fn page_sizes_default_and_are_bounded() {
        assert_eq!(PageSize::parse(0, 50, 200).unwrap().0, 50);
        assert!(PageSize::parse(-1, 50, 200).is_err());
        assert!(PageSize::parse(201, 50, 200).is_err());
    }

    #[test]
    fn a_page_has_a_next_token_only_when_more_rows_exist() {
        let p = Page::from_rows(vec![1, 2, 3], PageSize(2), |x| *x);
        assert_eq!(p.items, vec![1, 2]);
        assert!(!p.next_page_token.is_empty());
        let p = Page::from_rows(vec![1, 2], PageSize(2), |x| *x);
        assert!(p.next_page_token.is_empty());
    }
}
