//! Runs one of the VM/emulator rigs in `hw-tests/` as a cargo test: the
//! script's exit status and the guest's summary line decide; the checks and
//! timings are shown in the test log. Not skipped silently: when a rig
//! cannot install or boot, the test fails with the script's message.
//! `CAPBOX_SKIP_VM=1` skips the QEMU rigs, `CAPBOX_SKIP_BOCHS=1` the Bochs
//! one, loudly.

use std::process::Command;

pub struct Rig<'a> {
    /// `module::test` for the skip message.
    pub test: &'a str,
    /// Path from the repository root, e.g. `hw-tests/run-vm.sh`.
    pub script: &'a str,
    /// What goes untested when the rig is skipped.
    pub not_tested: &'a str,
    /// Line prefixes worth showing in the test log (besides PASS/FAIL).
    pub show: &'a [&'a str],
    /// The guest's summary line starts with this and ends " 0 failed".
    pub summary: &'a str,
    /// The variable that skips this rig (`CAPBOX_SKIP_VM`, …).
    pub skip_var: &'a str,
    /// Environment for the script.
    pub env: &'a [(&'a str, &'a std::ffi::OsStr)],
    /// Lines the script's output must also have.
    pub must_contain: &'a [&'a str],
}

/// True (and said loudly) when the rig's skip variable is set.
pub fn skipped(rig: &Rig) -> bool {
    let skip = std::env::var(rig.skip_var).as_deref() == Ok("1");
    if skip {
        eprintln!(
            "\n*** SKIPPED: {} ({}=1): {} ***\n",
            rig.test, rig.skip_var, rig.not_tested
        );
    }
    skip
}

pub fn run(rig: Rig) {
    if skipped(&rig) {
        return;
    }
    let script = format!("{}/{}", env!("CARGO_MANIFEST_DIR"), rig.script);
    let out = Command::new("bash")
        .arg(&script)
        .envs(rig.env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout.lines().chain(stderr.lines()) {
        if line.starts_with("PASS")
            || line.starts_with("FAIL")
            || rig.show.iter().any(|p| line.starts_with(p))
        {
            println!("{line}");
        }
    }
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        rig.script,
        out.status
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(rig.summary) && l.contains(" 0 failed")),
        "the guest did not report a clean run:\n{stdout}"
    );
    for want in rig.must_contain {
        assert!(stdout.contains(want), "no '{want}' in:\n{stdout}");
    }
}
