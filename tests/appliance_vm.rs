//! The appliance rig as a cargo test: runs `hw-tests/run-appliance-vm.sh`,
//! which builds the test image (`images/build-test-image.sh`: the disk
//! layout, GRUB config, overlay and init scripts of the Buildroot image,
//! with Debian's kernel and a static musl capbox) and boots it in QEMU
//! (TCG, i6300esb, capbox's port forwarded), twice: login prompt on ttyS0;
//! capbox started by S60capbox; the default config installed on first
//! boot; `/status` and the first served byte through the forwarded port;
//! the watchdog armed; the keeper restarting a killed capbox; vidtv tuned
//! from config (DVB-T 474 MHz, program 0x0880) and read by ffprobe on the
//! host; capbox's udev rules; a clean stop without a reset; SIGSTOP → the
//! VM resets; boot 2 names the reset's cause; `poweroff` stops capbox
//! cleanly. The figures (build minutes, boots, sizes, boot → first byte)
//! are printed as a table (`APPLIANCE figures`). `CAPBOX_SKIP_VM=1` skips
//! it, loudly.

mod rig_script;

#[test]
fn appliance_image_boots_serves_and_resets() {
    rig_script::run(rig_script::Rig {
        test: "appliance_vm::appliance_image_boots_serves_and_resets",
        script: "hw-tests/run-appliance-vm.sh",
        not_tested: "the appliance image (GRUB, init scripts, watchdog, capbox from the \
                     init script, the serial console) was NOT booted",
        show: &[
            "run-appliance-vm",
            "build-test-image",
            "appliance-vm",
            "APPLIANCE",
            "|",
            "SKIP",
            "  guest|",
        ],
        skip_var: "CAPBOX_SKIP_VM",
        env: &[],
        must_contain: &[
            "PASS boot 1: login prompt on ttyS0",
            "PASS capbox started from the init script",
            "PASS /status through the forwarded port",
            "PASS watchdog armed by capbox",
            "PASS vidtv tuned from config, served, read by ffprobe on the host",
            "PASS clean stop: no reset",
            "PASS SIGSTOP capbox: the VM resets",
            "PASS boot 2: capbox up and armed",
        ],
        summary: "appliance-vm: ",
    });
}
