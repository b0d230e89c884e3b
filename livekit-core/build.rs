//! Compiles the data-channel messages for `no_std`: maps become `BTreeMap`s and
//! everything else comes from `alloc` through prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let dir = std::path::Path::new(&manifest).join("proto");
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("packet.proto").display()
    );
    let fds = protox::compile(["packet.proto"], [&dir])?;
    prost_build::Config::new()
        .btree_map(["."])
        .compile_fds(fds)?;
    Ok(())
}
