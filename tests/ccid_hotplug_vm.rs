//! The CCID rig as a cargo test: runs `hw-tests/run-ccid-vm.sh` (the card
//! manager against pcscd + libccid in a QEMU VM whose USB CCID readers the
//! host plugs and pulls over QMP, see that script) and fails unless every
//! in-VM check passed. The same VM checks capbox's USB reset path
//! (`dvb::usb`) on QEMU's usb-storage disk and on reader 2.

mod rig_script;

#[test]
fn ccid_reader_hotplug_vm() {
    rig_script::run(rig_script::Rig {
        test: "ccid_hotplug_vm::ccid_reader_hotplug_vm",
        script: "hw-tests/run-ccid-vm.sh",
        not_tested: "the card manager was NOT tested against USB reader hot-plug",
        show: &["run-ccid-vm", "ccid-guest", "host:", "init:"],
        skip_var: "CAPBOX_SKIP_VM",
        env: &[],
        // The USB reset checks ran (both ways on the disk, the default way
        // on a reader), not only the hot-plug ones.
        must_contain: &[
            "PASS usb disk: reads after authorized 0/1",
            "PASS usb disk: reads after USBDEVFS_RESET",
            "PASS usb reader: found again from its interface",
        ],
        summary: "ccid-guest: ",
    });
}
