//! Shared by the EPG integration tests: a week of EIT written by biTStream
//! (tests/c/eit_schedule.c, Debian libbitstream-dev) and its manifest.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use capbox::ts::section::packetize;

/// The schedule's first day: 2026-05-29 00:00 UTC.
pub const T0: i64 = 1_780_012_800;

/// One event of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub sid: u16,
    pub start: i64,
    pub duration: u32,
    pub min_age: u8,
    pub content: u8,
    pub title: String,
}

pub struct Generated {
    pub dir: PathBuf,
    pub events: Vec<Expected>,
}

impl Generated {
    /// `name`.sec cut into sections.
    pub fn sections(&self, name: &str) -> Vec<Vec<u8>> {
        let b = std::fs::read(self.dir.join(format!("{name}.sec"))).unwrap();
        let mut out = Vec::new();
        let mut rest = &b[..];
        while rest.len() >= 3 {
            let len = 3 + (u16::from_be_bytes([rest[1], rest[2]]) & 0x0FFF) as usize;
            out.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        assert!(rest.is_empty(), "{name}.sec: trailing bytes");
        out
    }
}

/// The sections as transport packets on PID 0x0012.
pub fn packets(sections: &[Vec<u8>], cc: &mut u8) -> Vec<u8> {
    let mut out = Vec::new();
    for s in sections {
        packetize(s, 0x0012, cc, &mut out);
    }
    out
}

/// Compile and run the generator; `None` (with a loud message) only when
/// the compiler or the headers are absent.
pub fn generate(tag: &str) -> Option<Generated> {
    generate_at(tag, T0)
}

/// As `generate`, the week starting at `t0` (Unix seconds at 00:00 UTC).
pub fn generate_at(tag: &str, t0: i64) -> Option<Generated> {
    if !Path::new("/usr/include/bitstream/dvb/si.h").exists() {
        eprintln!("SKIPPED: /usr/include/bitstream missing: apt-get install libbitstream-dev");
        return None;
    }
    if Command::new("cc").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no C compiler (cc)");
        return None;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("epg-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/eit_schedule.c");
    let exe = dir.join("eit_schedule");
    let st = Command::new("cc")
        .args(["-std=gnu99", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "compiling {src:?} failed");
    let out = Command::new(&exe)
        .arg(&dir)
        .arg(t0.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "eit_schedule failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(7, ' ').collect();
            assert_eq!(f[0], "ev", "manifest line {l:?}");
            Expected {
                sid: f[1].parse().unwrap(),
                start: f[2].parse().unwrap(),
                duration: f[3].parse().unwrap(),
                min_age: f[4].parse().unwrap(),
                content: f[5].parse().unwrap(),
                title: f[6].to_string(),
            }
        })
        .collect();
    Some(Generated { dir, events })
}
