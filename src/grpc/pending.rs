//! Services declared in the API whose implementation comes with later work (AI).
//! Every RPC answers UNIMPLEMENTED (the generated default), never fake data; authentication
//! still applies to them.

use crate::pb;

/// A service whose RPCs are not implemented yet.
#[derive(Debug, Clone, Copy)]
pub struct Pending;

impl pb::ai_service_server::AiService for Pending {}
