//! `capbox adapters`: the DVB adapters sysfs shows, their frontends
//! (FE_GET_INFO), drivers and stable names, in 80 columns.

use crate::dvb::adapter;

const HELP: &str = "\
usage: capbox adapters

Lists DVB adapters: number/frontend, frontend name, driver and the stable
name to put in an [[adapter]] table's `device` (it survives USB
re-enumeration; `adapterN` is accepted too).
";

pub fn run(args: &[String]) -> i32 {
    if let Some(a) = args.first() {
        if a == "-h" || a == "--help" {
            print!("{HELP}");
            return 0;
        }
        eprintln!("capbox adapters: unknown option '{a}'\n\n{HELP}");
        return 2;
    }
    let d = adapter::discover();
    if d.adapters.is_empty() {
        super::term::say(
            "no DVB adapters found (nothing in /sys/class/dvb): is the tuner plugged in \
             (`lsusb`) and its driver loaded (`dmesg | tail`, `lsmod | grep dvb`)?",
        );
        return 1;
    }
    super::term::print(&adapter::table(&d.adapters));
    if d.skipped > 0 {
        println!("({} entries of /sys/class/dvb not understood)", d.skipped);
    }
    0
}
