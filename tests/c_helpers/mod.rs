//! The C helpers of tests/c/, built once per test process against Debian's
//! libdvbcsa (and libbitstream's headers): the independent implementation
//! capbox's CSA and scrambling are checked against.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const DVBCSA_H: &str = "/usr/include/dvbcsa/dvbcsa.h";
const BITSTREAM_H: &str = "/usr/include/bitstream/mpeg/psi.h";

/// `tests/c/<name>.c` compiled with `-ldvbcsa`; None (skipped, said
/// loudly) when libdvbcsa-dev or, for helpers that include it,
/// libbitstream-dev is not installed.
pub fn dvbcsa_helper(name: &str) -> Option<PathBuf> {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
    let mut needs = vec![(DVBCSA_H, "libdvbcsa-dev")];
    if text.contains("<bitstream/") {
        needs.push((BITSTREAM_H, "libbitstream-dev"));
    }
    for (h, pkg) in needs {
        if !Path::new(h).exists() {
            eprintln!("!!!!!!!! SKIPPED: {pkg} missing ({h}): apt-get install {pkg} !!!!!!!!");
            return None;
        }
    }
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(exe) = built.get(name) {
        return Some(exe.clone());
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-helpers");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(format!("{name}-{}", std::process::id()));
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-ldvbcsa")
        .status()
        .expect("run cc");
    assert!(st.success(), "compiling {src:?} failed");
    built.insert(name.to_string(), exe.clone());
    Some(exe)
}

/// Run records (op `b'e'` encrypt / `b'd'` decrypt, control word, payload)
/// through libdvbcsa's per-packet calls (tests/c/csa_ref.c); returns the
/// payloads. Call only after `dvbcsa_helper("csa_ref")` said it is there.
pub fn csa_ref(records: &[(u8, [u8; 8], Vec<u8>)]) -> Vec<Vec<u8>> {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let exe = dvbcsa_helper("csa_ref").expect("csa_ref helper");
    let mut input = Vec::new();
    for (op, cw, data) in records {
        input.push(*op);
        input.extend_from_slice(cw);
        input.push(data.len() as u8);
        input.extend_from_slice(data);
    }
    let mut child = Command::new(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    let mut res = Vec::new();
    let mut at = 0;
    for (_, _, data) in records {
        res.push(out[at..at + data.len()].to_vec());
        at += data.len();
    }
    assert_eq!(at, out.len());
    res
}
