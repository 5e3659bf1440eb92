//! Shared by the SI integration tests: build and run tests/c/si_gen.c (a
//! section generator written with Debian's libbitstream headers) and read
//! its sections and manifest.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Generated {
    pub dir: PathBuf,
    pub manifest: HashMap<String, String>,
}

impl Generated {
    pub fn section(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(format!("{name}.sec"))).unwrap()
    }

    pub fn get(&self, key: &str) -> &str {
        self.manifest
            .get(key)
            .unwrap_or_else(|| panic!("manifest has no {key}"))
    }

    pub fn num<T: std::str::FromStr>(&self, key: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        self.get(key).parse().unwrap()
    }

    /// A text value; the manifest writes newlines as `\n`.
    pub fn text(&self, key: &str) -> String {
        self.get(key).replace("\\n", "\n")
    }
}

/// Compile and run the generator into a fresh directory under `tag`; `None`
/// (with a loud message) only when the compiler or the headers are absent.
pub fn generate(tag: &str) -> Option<Generated> {
    if !Path::new("/usr/include/bitstream/dvb/si.h").exists() {
        eprintln!("SKIPPED: /usr/include/bitstream missing: apt-get install libbitstream-dev");
        return None;
    }
    if Command::new("cc").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no C compiler (cc)");
        return None;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("si-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/si_gen.c");
    let exe = dir.join("si_gen");
    let st = Command::new("cc")
        .args(["-std=gnu99", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "compiling {src:?} failed");
    let out = Command::new(&exe).arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "si_gen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(Generated { dir, manifest })
}
