//! Compiles `proto/recommend.proto` with protox (pure Rust, no `protoc` binary) into prost types,
//! and writes the file descriptor set (without source info, so comment edits do not change it)
//! for the committed copy `proto/recommend.desc` that protoc-free clients load.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/recommend.proto");
    let fds = protox::compile(["recommend.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut bare = fds.clone();
    for file in &mut bare.file {
        file.source_code_info = None;
    }
    std::fs::write(out.join("recommend.desc"), bare.encode_to_vec())?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
