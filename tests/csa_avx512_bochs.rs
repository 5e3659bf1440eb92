//! The AVX-512 CSA engine on an emulated AVX-512 CPU, as a cargo test:
//! writes the vectors with Debian's libdvbcsa (tests/c/csa_vectors.c,
//! through the shared C-helper builder), runs `hw-tests/run-bochs.sh`
//! (Linux in Bochs with an Ice Lake CPU model, the static
//! examples/csa_selftest.rs as /init's program) and fails with the
//! script's output unless every in-guest check passed. This host's CPU and
//! QEMU TCG cannot execute AVX-512, so this is the only test that runs
//! `Simd::Avx512` / `Simd::Avx512Vbmi`. On a host that has both, the
//! native run of tests/csa_libdvbcsa.rs covers them and this one says so
//! and returns (`CAPBOX_BOCHS_ALWAYS=1`: run anyway).
//! Not skipped silently: without libdvbcsa-dev the helper builder says so
//! loudly; `CAPBOX_SKIP_BOCHS=1` skips, loudly.

mod c_helpers;
mod rig_script;

use capbox::ca::csa::Simd;
use std::process::Command;

#[test]
fn avx512_engine_in_bochs_matches_libdvbcsa() {
    let vectors = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("csa-avx512-vectors-{}.bin", std::process::id()));
    let rig = rig_script::Rig {
        test: "csa_avx512_bochs::avx512_engine_in_bochs_matches_libdvbcsa",
        script: "hw-tests/run-bochs.sh",
        not_tested: "the AVX-512 CSA engine was NOT tested",
        show: &["run-bochs", "csa-selftest", "init:", "  "],
        summary: "csa-selftest: ",
        skip_var: "CAPBOX_SKIP_BOCHS",
        env: &[("CAPBOX_CSA_VECTORS", vectors.as_os_str())],
        // The guest ran the AVX-512 variants and exited cleanly.
        must_contain: &["PASS Avx512 vs libdvbcsa", "init: csa-selftest exit 0"],
    };
    if rig_script::skipped(&rig) {
        return;
    }
    // On a host that executes AVX-512 (incl. VBMI) itself,
    // tests/csa_libdvbcsa.rs already runs both engines natively against
    // libdvbcsa; the emulated CPU adds ≈ 4 min of CI and nothing else.
    // `CAPBOX_BOCHS_ALWAYS=1` runs it anyway.
    if Simd::Avx512.available()
        && Simd::Avx512Vbmi.available()
        && std::env::var("CAPBOX_BOCHS_ALWAYS").as_deref() != Ok("1")
    {
        eprintln!(
            "\n*** SKIPPED: {}: this CPU runs AVX-512 and AVX-512 VBMI natively, and \
             tests/csa_libdvbcsa.rs checked Simd::Avx512 and Simd::Avx512Vbmi against \
             libdvbcsa on it (CAPBOX_BOCHS_ALWAYS=1 runs Bochs too) ***\n",
            rig.test
        );
        return;
    }
    let Some(gen) = c_helpers::dvbcsa_helper("csa_vectors") else {
        return; // said loudly by the builder
    };
    let st = Command::new(&gen)
        .arg("0x5eed2026")
        .arg(&vectors)
        .status()
        .unwrap();
    assert!(st.success(), "csa_vectors failed: {st}");
    rig_script::run(rig);
    let _ = std::fs::remove_file(&vectors);
}
