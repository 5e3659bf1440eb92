//! `sys/regen.sh` must reproduce the committed `sys/src/bindings.rs` byte for
//! byte: the committed file is what the headers say, not a hand-edited copy.
//! Skips (loudly) only when the bindgen CLI or libclang is absent; a bindgen
//! of another version than the script pins is a failure, not a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

fn sys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bindgen_present() -> bool {
    if let Some(b) = std::env::var_os("BINDGEN") {
        return Command::new(b).arg("--version").output().is_ok();
    }
    if Command::new("bindgen").arg("--version").output().is_ok() {
        return true;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    home.is_some_and(|h| h.join("bin/bindgen").is_file())
}

#[test]
fn regen_reproduces_committed_bindings() {
    if !bindgen_present() {
        eprintln!(
            "SKIPPED regen_reproduces_committed_bindings: bindgen CLI absent \
             (CI: cargo install bindgen-cli --locked --version 0.73.2)"
        );
        return;
    }
    let out = std::env::temp_dir().join(format!("capbox-sys-regen-{}.rs", std::process::id()));
    let run = Command::new("sh")
        .arg(sys_dir().join("regen.sh"))
        .arg(&out)
        .env("CAPBOX_BINDGEN_NO_INSTALL", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    if !run.status.success() && stderr.contains("libclang") {
        eprintln!("SKIPPED regen_reproduces_committed_bindings: libclang absent:\n{stderr}");
        return;
    }
    assert!(run.status.success(), "sys/regen.sh failed:\n{stderr}");

    let fresh = std::fs::read(&out).unwrap();
    let committed = std::fs::read(sys_dir().join("src/bindings.rs")).unwrap();
    if fresh != committed {
        let diff = Command::new("diff")
            .arg("-u")
            .arg(sys_dir().join("src/bindings.rs"))
            .arg(&out)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        panic!(
            "sys/src/bindings.rs differs from sys/regen.sh output; run sys/regen.sh \
             and commit:\n{diff}"
        );
    }
    let _ = std::fs::remove_file(&out);
}
