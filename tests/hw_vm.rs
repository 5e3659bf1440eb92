//! The kernel rig as a cargo test: runs `hw-tests/run-vm.sh` (vidtv in a
//! QEMU VM, see that script) and fails unless every in-VM check passed.

mod rig_script;

#[test]
fn vidtv_vm_suite() {
    rig_script::run(rig_script::Rig {
        test: "hw_vm::vidtv_vm_suite",
        script: "hw-tests/run-vm.sh",
        not_tested: "the DVB code was NOT tested against a kernel driver",
        show: &["run-vm", "hw-tests", "init:"],
        skip_var: "CAPBOX_SKIP_VM",
        env: &[],
        must_contain: &[],
        summary: "hw-tests: ",
    });
}
