//! The update rig as a cargo test: runs `hw-tests/run-update-vm.sh`, which
//! makes a throw-away CA and signing key (openssl, in its temporary
//! directory), builds the test image with that CA as RAUC's keyring,
//! makes bundles from its root filesystem (a newer version; a deliberately
//! broken capbox; one signed under a stranger's CA; one more for the power
//! cut) and drives one QEMU (TCG) through them over the serial console and
//! HTTP: a bad signature, a bundle for another kind of box (compatible
//! capbox-aarch64) and a bundle cut to half its size are refused, each
//! with words that say so, and nothing is written; the newer bundle is installed into slot B, boots and is marked
//! good by capbox after its health held; the broken one boots, is never
//! marked good, and the box comes back to slot B by itself with /status
//! saying `rolled_back`; QEMU killed in the middle of `rauc install` →
//! the old slot still boots and /status says `interrupted`; the data
//! partition's config is unchanged after every case. Prints the minutes
//! and the bundle size (`UPDATE figures`). `CAPBOX_SKIP_VM=1` skips it,
//! loudly.
//!
//! CI runs the core cases in about 5 minutes under TCG: bad signature,
//! wrong box, cut bundle (these two add about 14 s: one more bundle made
//! on the host, two refusals in the same boot), good bundle (install, boot, marked good), power cut. The broken bundle
//! (the box rolls back by itself after `trial_timeout_s`, two more boots:
//! about 3 minutes more) runs in the script's full set
//! (`bash hw-tests/run-update-vm.sh`, every case by default), whose
//! figures are in hw-tests/README.md and BENCHMARKS.md.

mod rig_script;

#[test]
fn signed_ab_updates_roll_themselves_back() {
    rig_script::run(rig_script::Rig {
        test: "update_vm::signed_ab_updates_roll_themselves_back",
        script: "hw-tests/run-update-vm.sh",
        not_tested: "RAUC updates on the appliance image (install, mark good, roll back, \
                     bad signature, wrong box, cut bundle, power cut) were NOT run",
        show: &[
            "run-update-vm",
            "update-vm",
            "UPDATE",
            "|",
            "make-bundle",
            "  guest|",
            "  serial|",
        ],
        skip_var: "CAPBOX_SKIP_VM",
        env: &[(
            "CAPBOX_UPDATE_CASES",
            std::ffi::OsStr::new("badsig wrongbox cut good powercut"),
        )],
        must_contain: &[
            "PASS boot: slot A, login prompt",
            "PASS bad signature: refused with a clear message",
            "PASS bad signature: config unchanged",
            "PASS wrong box: refused with a clear message",
            "PASS wrong box: nothing installed, /status says failed with that message, still slot A",
            "PASS wrong box: config unchanged",
            "PASS cut bundle: refused with a clear message",
            "PASS cut bundle: nothing installed, /status says failed with that message, still slot A",
            "PASS cut bundle: config unchanged",
            "PASS good bundle: boots slot B, version -b",
            "PASS good bundle: capbox marked slot B good",
            "PASS good bundle: config unchanged",
            "PASS power cut: the old slot B still boots",
            "PASS power cut: /status says interrupted",
            "PASS power cut: config unchanged",
        ],
        summary: "update-vm: ",
    });
}
