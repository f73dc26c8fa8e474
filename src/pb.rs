//! Generated protobuf types, tonic servers and clients, and the encoded descriptor set.

#![allow(clippy::all, missing_docs)]

/// The `epop.v1` package.
pub mod epop {
    /// Version 1 of the EPOP API.
    pub mod v1 {
        tonic::include_proto!("epop.v1");
    }
}

/// The `google.api` package (HTTP annotations).
pub mod google {
    /// HTTP rules for the REST edge.
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

pub use epop::v1::*;

/// The encoded `FileDescriptorSet` of every proto, imports included, with options kept.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/epop_descriptor.bin"));
