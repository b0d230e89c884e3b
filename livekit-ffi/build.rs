//! Compiles the FFI protocol (`../protocol/*.proto`) with prost; protox parses the
//! files in pure Rust, so no protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: the build script's binary may be reused from a cached
    // target directory by a checkout elsewhere.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let dir = std::path::Path::new(&manifest).join("../protocol");
    let files = [
        "handle.proto",
        "participant.proto",
        "track.proto",
        "audio_frame.proto",
        "video_frame.proto",
        "stats.proto",
        "room.proto",
        "rpc.proto",
        "data_stream.proto",
        "ffi.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", dir.join(f).display());
    }
    let fds = protox::compile(files, [&dir])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
