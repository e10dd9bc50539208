//! The wire contracts of the Tollgate services.
//!
//! Each protobuf package is versioned (`tollgate.auth.v1`, `tollgate.resource.v1`);
//! a breaking change gets a new package, never an edit in place. Client and server
//! stubs sit behind the `client` and `server` features.
#![forbid(unsafe_code)]

/// The authorization server's gRPC API: the token service (RFC 6749 grants over gRPC).
pub mod auth {
    pub mod v1 {
        tonic::include_proto!("tollgate.auth.v1");
    }
}

/// The resource server's gRPC API: the resource owners' profiles and notes, and a
/// report meant for machine clients.
pub mod resource {
    pub mod v1 {
        tonic::include_proto!("tollgate.resource.v1");
    }
}

/// The encoded `FileDescriptorSet` of every proto here, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tollgate_descriptor.bin"));
