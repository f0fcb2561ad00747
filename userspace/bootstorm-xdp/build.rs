//! Builds the XDP program (`ebpf/steer.c`) into OUT_DIR with clang when clang and libbpf's
//! headers are present; otherwise uses the object committed next to the source
//! (`ebpf/steer.o`), so a machine without clang still builds. `ebpf/build.sh` refreshes the
//! committed object with the same flags; a test fails when it is stale.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let ebpf = manifest.join("../../ebpf");
    let src = ebpf.join("steer.c");
    let committed = ebpf.join("steer.o");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("steer.o");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", committed.display());
    println!("cargo:rerun-if-env-changed=CLANG");
    if compile(&src, &out) {
        return;
    }
    std::fs::copy(&committed, &out).expect("ebpf/steer.o is missing and clang is not available");
}

/// `clang -O2 -g -target bpf` with the debug paths made relative, so the object is the same
/// byte for byte wherever the tree is checked out.
fn compile(src: &Path, out: &Path) -> bool {
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        return false;
    }
    let dir = src.parent().unwrap().canonicalize().unwrap();
    let status = Command::new(&clang)
        .current_dir(&dir)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg(format!("-fdebug-prefix-map={}=.", dir.display()))
        .arg("-fdebug-compilation-dir=.")
        .args(["-c", "steer.c", "-o"])
        .arg(out)
        .status();
    matches!(status, Ok(s) if s.success())
}
