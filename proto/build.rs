//! Generates the protocol code at build time with the protoc binary vendored by
//! `protoc-bin-vendored`, so a fresh machine needs no system protobuf compiler.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[
            PathBuf::from("onshi/fleet/v1/uplink.proto"),
            PathBuf::from("onshi/agent/v1/local.proto"),
        ],
        // The well-known types (google/protobuf/timestamp.proto) ship with the vendored protoc.
        &[PathBuf::from("."), protoc_bin_vendored::include_path()?],
    )?;
    println!("cargo:rerun-if-changed=onshi");
    Ok(())
}
