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

        /// The most revoked tokens one `ListRevokedAccessTokens` page holds,
        /// whatever `page_size` asks for: part of the contract, so the server
        /// enforces it and the services ask for it.
        ///
        /// Worst case on the wire: an entry is the `jti` (22 characters: the
        /// authorization server mints it from 16 random bytes, base64url) and
        /// `expires_at` (an `int64`, at most a 10-byte varint), so 24 + 11 bytes
        /// inside and 2 bytes of tag and length around it: 37 bytes. A full page
        /// is 10,000 × 37 = 370,000 bytes plus a `next_page_token` (`<exp>.<jti>`)
        /// of about 35 bytes: under 9 % of tonic's default 4 MiB (4,194,304
        /// bytes) decode limit. The database column does not bound the `jti`'s
        /// length; the minting does, and only tokens this server signed reach
        /// the list. A page would reach 4 MiB only with `jti`s of over 400 bytes.
        pub const REVOCATION_LIST_MAX_PAGE_SIZE: u32 = 10_000;

        /// The page size when a request leaves `page_size` at 0.
        pub const REVOCATION_LIST_DEFAULT_PAGE_SIZE: u32 = 1_000;
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

/// The ledger's gRPC API: an internal service two hops behind the resource
/// server, reached only with a Transaction Token.
pub mod ledger {
    pub mod v1 {
        tonic::include_proto!("tollgate.ledger.v1");
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
