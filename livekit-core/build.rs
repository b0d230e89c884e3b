//! Compiles the data-channel and device-link messages for `no_std`: maps become `BTreeMap`s and
//! everything else comes from `alloc` through prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let dir = std::path::Path::new(&manifest).join("proto");
    for file in ["packet.proto", "link.proto"] {
        println!("cargo:rerun-if-changed={}", dir.join(file).display());
    }
    let fds = protox::compile(["packet.proto", "link.proto"], [&dir])?;
    prost_build::Config::new()
        .btree_map(["."])
        .compile_fds(fds)?;
    Ok(())
}
