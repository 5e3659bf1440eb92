//! The AVX-512 CSA engine on an emulated AVX-512 CPU, as a cargo test:
//! writes the vectors with Debian's libdvbcsa (tests/c/csa_vectors.c,
//! through the shared C-helper builder), runs `hw-tests/run-bochs.sh`
//! (Linux in Bochs with an Ice Lake CPU model, the static
//! examples/csa_selftest.rs as /init's program) and fails with the
//! script's output unless every in-guest check passed. This host's CPU and
//! QEMU TCG cannot execute AVX-512, so this is the only test that runs
//! `Simd::Avx512` / `Simd::Avx512Vbmi`.
//! Not skipped silently: without libdvbcsa-dev the helper builder says so
//! loudly; `CAPBOX_SKIP_BOCHS=1` skips, loudly.

mod c_helpers;

use std::process::Command;

#[test]
fn avx512_engine_in_bochs_matches_libdvbcsa() {
    if std::env::var("CAPBOX_SKIP_BOCHS").as_deref() == Ok("1") {
        eprintln!("\n*** SKIPPED: csa_avx512_bochs (CAPBOX_SKIP_BOCHS=1): the AVX-512 CSA engine was NOT tested ***\n");
        return;
    }
    let Some(gen) = c_helpers::dvbcsa_helper("csa_vectors") else {
        return; // said loudly by the builder
    };
    let vectors = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("csa-avx512-vectors-{}.bin", std::process::id()));
    let st = Command::new(&gen)
        .arg("0x5eed2026")
        .arg(&vectors)
        .status()
        .unwrap();
    assert!(st.success(), "csa_vectors failed: {st}");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/hw-tests/run-bochs.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("CAPBOX_CSA_VECTORS", &vectors)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let _ = std::fs::remove_file(&vectors);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout.lines().chain(stderr.lines()) {
        if ["PASS", "FAIL", "run-bochs", "csa-selftest", "init:", "  "]
            .iter()
            .any(|p| line.starts_with(p))
        {
            println!("{line}");
        }
    }
    assert!(
        out.status.success(),
        "hw-tests/run-bochs.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The guest ran the AVX-512 variants and reported a clean summary.
    assert!(
        stdout.contains("PASS Avx512 vs libdvbcsa")
            && stdout.contains("csa-selftest: ")
            && stdout.contains(" 0 failed")
            && stdout.contains("init: csa-selftest exit 0"),
        "the guest did not report a clean AVX-512 run:\n{stdout}"
    );
}
