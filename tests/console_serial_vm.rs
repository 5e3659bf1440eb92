//! The technician's console on the appliance's own serial console, as a
//! cargo test: runs `hw-tests/run-console-serial.sh`, which builds the
//! test image (`images/build-test-image.sh`, cached), boots it in QEMU
//! (TCG) with ttyS0 on stdio inside a tmux pane of 80x24, logs in on the
//! getty and types the console commands as a technician does: `capbox
//! status` (one screen), `capbox signal` (a line a second, Ctrl-C gives the
//! prompt back), `capbox logs`, `capbox cards`, `capbox pin`, `capbox scan`;
//! every captured line at most 80 columns of plain ASCII without escape
//! sequences. `CAPBOX_SKIP_VM=1` skips it, loudly.

mod rig_script;

#[test]
fn console_commands_on_the_serial_console_at_80x24() {
    rig_script::run(rig_script::Rig {
        test: "console_serial_vm::console_commands_on_the_serial_console_at_80x24",
        script: "hw-tests/run-console-serial.sh",
        not_tested: "the console commands were NOT tried on the appliance's serial console \
                     (80x24, TERM=vt100)",
        show: &["run-console-serial", "build-test-image", "SKIP"],
        skip_var: "CAPBOX_SKIP_VM",
        env: &[],
        must_contain: &[
            "PASS status: the command line is still on top (one screen)",
            "PASS signal: Ctrl-C stops, the prompt is back",
            "PASS logs: this run's events",
            "PASS pin: pins",
        ],
        summary: "run-console-serial: ",
    });
}
