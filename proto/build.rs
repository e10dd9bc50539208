//! Compiles the protos with `protox` (a pure-Rust protobuf compiler), so building
//! this crate never needs a system `protoc`.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "tollgate/auth/v1/token.proto",
    "tollgate/resource/v1/resource.proto",
    "tollgate/notes/v1/notes.proto",
    "tollgate/ledger/v1/ledger.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["."])?;
    // Written out for gRPC server reflection (`FILE_DESCRIPTOR_SET`).
    std::fs::write(
        out_dir.join("tollgate_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(cfg!(feature = "client"))
        .build_server(cfg!(feature = "server"))
        .compile_fds(descriptors)?;
    Ok(())
}
