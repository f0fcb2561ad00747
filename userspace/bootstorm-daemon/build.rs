//! Keeps the embedded web dashboard in step with its sources. The daemon embeds the bundle that
//! Vite built into `dashboard/dist/` (committed, so a plain `cargo build` on a machine without
//! Node.js works). This script hashes the dashboard's sources as `dashboard/stamp.mjs` does and
//! hands the hash to the crate (`DASHBOARD_SOURCES_SHA256`); when it differs from the one the
//! bundle was built from, it rebuilds the bundle with `npm run build` if the dashboard's
//! packages are installed (`npm ci` in `dashboard/`), else it warns, and the crate's bundle test
//! fails until the bundle is rebuilt.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn sources(dash: &Path) -> Vec<String> {
    let mut files: Vec<String> = [
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.js",
        "stamp.mjs",
    ]
    .map(String::from)
    .to_vec();
    fn walk(dash: &Path, rel: &str, out: &mut Vec<String>) {
        let mut names: Vec<String> = std::fs::read_dir(dash.join(rel))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for n in names {
            let r = format!("{rel}/{n}");
            if dash.join(&r).is_dir() {
                walk(dash, &r, out);
            } else {
                out.push(r);
            }
        }
    }
    walk(dash, "src", &mut files);
    files.sort();
    files
}

fn hash(dash: &Path, files: &[String]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_bytes());
        h.update([0]);
        h.update(std::fs::read(dash.join(f)).unwrap_or_default());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    let dash: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboard");
    let files = sources(&dash);
    println!("cargo:rerun-if-changed={}", dash.join("src").display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", dash.join(f).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        dash.join("dist/SOURCES.sha256").display()
    );
    let want = hash(&dash, &files);
    let have = std::fs::read_to_string(dash.join("dist/SOURCES.sha256")).unwrap_or_default();
    if have.trim() != want {
        if dash.join("node_modules/.bin/vite").exists() {
            let built = std::process::Command::new("npm")
                .args(["run", "build"])
                .current_dir(&dash)
                .status();
            match built {
                Ok(s) if s.success() => {
                    println!("cargo:warning=rebuilt the dashboard bundle (dashboard/dist)")
                }
                other => println!(
                    "cargo:warning=the dashboard bundle could not be rebuilt ({other:?}): run `npm run build` in dashboard/"
                ),
            }
        } else {
            println!(
                "cargo:warning=the dashboard bundle (dashboard/dist) is older than its sources: run `npm ci && npm run build` in dashboard/"
            );
        }
    }
    println!("cargo:rustc-env=DASHBOARD_SOURCES_SHA256={want}");
}
