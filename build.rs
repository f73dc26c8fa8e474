//! Compiles `proto/` with protox (no system `protoc`) into tonic servers and clients, and
//! writes the encoded descriptor set (options kept, so `google.api.http` rules survive) for
//! reflection and the REST edge.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "epop/v1/common.proto",
    "epop/v1/auth.proto",
    "epop/v1/users.proto",
    "epop/v1/admin.proto",
    "epop/v1/projects.proto",
    "epop/v1/tasks.proto",
    "epop/v1/conversations.proto",
    "epop/v1/files.proto",
    "epop/v1/ai.proto",
    "epop/v1/notifications.proto",
    "epop/v1/security.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // The prost-types form drops unknown extensions such as google.api.http: write the
    // encoded form, which keeps them.
    std::fs::write(
        out_dir.join("epop_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Every RPC gets a default (UNIMPLEMENTED) body, so test doubles implement only the
        // ones they need; every EPOP service implements all of its RPCs.
        .generate_default_stubs(true)
        // Smaller starting buffers: see src/grpc/codec.rs.
        .codec_path("crate::grpc::codec::SmallBufferCodec")
        .compile_fds(compiler.file_descriptor_set())?;

    // tonic's hello world, the baseline of benches/unary-overhead.sh (src/bin/greeter.rs),
    // generated as tonic's examples generate it: stock codec, not part of EPOP's API.
    println!("cargo:rerun-if-changed=benches/greeter");
    let mut greeter = protox::Compiler::new(["benches/greeter"])?;
    greeter.open_files(["helloworld.proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(greeter.file_descriptor_set())?;
    Ok(())
}
