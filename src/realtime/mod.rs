//! Real-time delivery: the broker that fans events out to open streams, the resumable
//! stream sessions, and their cursors.
//!
//! The database is the truth: every durable event is in `conversation_events` with a
//! gap-free per-conversation sequence before it is published. The broker is best effort;
//! a session that sees a gap, or lags behind the broker, reads the missing events back from
//! the database, so each stream delivers every event exactly once, in order per
//! conversation. Typing and presence are ephemeral (broker only).

pub mod broker;
pub mod cursor;
pub mod inboxes;
pub mod item;
pub mod presence;
pub mod redis;
pub mod session;

pub use broker::{BoardChange, Broker, Published, Recipients, Revoked};
