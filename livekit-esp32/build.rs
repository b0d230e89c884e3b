//! Generates the C header with cbindgen into OUT_DIR and copies it beside the
//! library (`<target dir>/<profile>/include/livekit.h`), where a C build finds it.

use std::path::{Path, PathBuf};

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .unwrap_or_else(|e| panic!("generating livekit.h: {e}"));
    let generated = out_dir.join("livekit.h");
    bindings.write_to_file(&generated);

    // OUT_DIR is <profile dir>/build/<package>-<hash>/out.
    let Some(profile_dir) = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
    else {
        println!("cargo:warning=livekit.h left in {}", generated.display());
        return;
    };
    let include = profile_dir.join("include");
    if let Err(e) = install(&generated, &include) {
        println!(
            "cargo:warning=livekit.h not copied to {}: {e}",
            include.display()
        );
    }
}

/// Copies through a temporary name and renames, so a concurrent build never reads
/// half a header.
fn install(generated: &Path, include: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(include)?;
    let target = include.join("livekit.h");
    if std::fs::read(&target).ok() == std::fs::read(generated).ok() {
        return Ok(());
    }
    let tmp = include.join(format!("livekit.h.{}.tmp", std::process::id()));
    std::fs::copy(generated, &tmp)?;
    std::fs::rename(&tmp, &target)
}
