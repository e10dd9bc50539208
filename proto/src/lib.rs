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

/// The notes store's gRPC API: an internal service behind the resource server,
/// called only with exchanged tokens.
pub mod notes {
    pub mod v1 {
        tonic::include_proto!("tollgate.notes.v1");
    }
}

/// The encoded `FileDescriptorSet` of every proto here, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tollgate_descriptor.bin"));

/// Every RPC of `package` as a gRPC path (`/package.Service/Method`), read from
/// the descriptors: lets a service check that its scope table covers its contract.
pub fn rpc_paths(package: &str) -> Vec<String> {
    use prost::Message as _;
    let Ok(set) = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let mut paths: Vec<String> = set
        .file
        .iter()
        .filter(|file| file.package() == package)
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service.method.iter().map(move |method| {
                    format!("/{}.{}/{}", file.package(), service.name(), method.name())
                })
            })
        })
        .collect();
    paths.sort();
    paths
}
