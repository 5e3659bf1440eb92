//! The CCID rig as a cargo test: runs `hw-tests/run-ccid-vm.sh` (the card
//! manager against pcscd + libccid in a QEMU VM whose USB CCID readers the
//! host plugs and pulls over QMP, see that script) and fails unless every
//! in-VM check passed. Not skipped silently: when the rig cannot install or
//! boot, the test fails with the script's message. `CAPBOX_SKIP_VM=1`
//! skips it, loudly.

use std::process::Command;

#[test]
fn ccid_reader_hotplug_vm() {
    if std::env::var("CAPBOX_SKIP_VM").as_deref() == Ok("1") {
        eprintln!("\n*** SKIPPED: ccid_hotplug_vm::ccid_reader_hotplug_vm (CAPBOX_SKIP_VM=1): the card manager was NOT tested against USB reader hot-plug ***\n");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/hw-tests/run-ccid-vm.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Show the checks, the host's actions and timings in the test log.
    for line in stdout.lines().chain(stderr.lines()) {
        if line.starts_with("PASS")
            || line.starts_with("FAIL")
            || line.starts_with("run-ccid-vm")
            || line.starts_with("ccid-guest")
            || line.starts_with("host:")
            || line.starts_with("init:")
        {
            println!("{line}");
        }
    }
    assert!(
        out.status.success(),
        "hw-tests/run-ccid-vm.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("ccid-guest: ") && stdout.contains(" 0 failed"),
        "the VM did not report a clean run:\n{stdout}"
    );
}
