//! Compiles the server's contract `../proto/recommend.proto` (protox: no `protoc` binary) so
//! `--protobuf` encodes exactly what the server decodes, without depending on the server crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto/recommend.proto");
    let fds = protox::compile(["recommend.proto"], ["../proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
