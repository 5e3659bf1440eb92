//! The tunnel rig as a cargo test: runs `hw-tests/run-tunnel-vm.sh` (two
//! capboxes in a QEMU VM whose Debian kernel has netem, a ~10 Mbit/s
//! channel across a 120 ms RTT path with 0.5 % loss, the sender's
//! congestion control at cubic and at bbr; see that script) and fails
//! unless every in-VM check passed: the rig carries the channel without
//! netem, the path drops packets one by one at the asked rate, the
//! sender's sockets run the configured algorithm, and at least one
//! algorithm carries the channel across the lossy path without a stall.
//! Both algorithms' figures are printed (`TUNNEL phase=… cc=…` lines).

mod rig_script;

#[test]
fn tunnel_vm_cubic_and_bbr() {
    rig_script::run(rig_script::Rig {
        test: "tunnel_vm::tunnel_vm_cubic_and_bbr",
        script: "hw-tests/run-tunnel-vm.sh",
        not_tested: "a channel across a 120 ms / 0.5 % loss path was NOT measured (cubic vs bbr)",
        show: &["run-tunnel-vm", "tunnel", "TUNNEL", "init:"],
        skip_var: "CAPBOX_SKIP_TUNNEL_VM",
        env: &[],
        must_contain: &[
            "TUNNEL phase=control",
            "TUNNEL phase=cubic",
            "TUNNEL phase=bbr",
        ],
        summary: "tunnel-vm: ",
    });
}
