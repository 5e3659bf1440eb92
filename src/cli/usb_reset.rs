//! `capbox usb-reset`: a technician's manual USB reset of a tuner (or any
//! USB device), the same path the adapter ladder's USB step takes
//! (`dvb::usb`): shows the USB device found, resets it (`authorized` 0/1,
//! then USBDEVFS_RESET) and says what was done. Refuses what is not on USB.

use std::path::Path;
use std::time::Duration;

use crate::dvb::adapter;
use crate::dvb::usb::{self, ResetSteps, UsbDevice};

const HELP: &str = "\
usage: capbox usb-reset [options] <adapterN | stable name | sysfs path | /dev node>

Finds the USB device that carries a DVB adapter (or any sysfs node or
device node: /sys/block/sda, /dev/dvb/adapter0/frontend0) and resets it:
`authorized` 0 then 1 (every interface is unbound and bound again, the
drivers probe anew), then USBDEVFS_RESET if that fails or the device does
not come back. Every frontend of that device goes down for a moment; a
running capbox finds them again by stable name. Needs root. Refuses a
device that is not on USB (vidtv, PCIe cards).

options:
  --dry-run          only show the USB device found
  --wait S           how long to wait for the device to come back (10)
  --authorized-only  do not fall back to USBDEVFS_RESET
  --usbdevfs-only    skip `authorized`, only USBDEVFS_RESET
";

#[derive(Debug, PartialEq)]
struct Args {
    target: String,
    dry_run: bool,
    wait: Duration,
    steps: ResetSteps,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut target = None;
    let mut dry_run = false;
    let mut wait = Duration::from_secs(10);
    let mut steps = ResetSteps::Both;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dry-run" => dry_run = true,
            "--authorized-only" => steps = ResetSteps::AuthorizedOnly,
            "--usbdevfs-only" => steps = ResetSteps::UsbdevfsResetOnly,
            "--wait" => {
                let v = it.next().ok_or("--wait needs seconds")?;
                let s: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && (0.0..=600.0).contains(s))
                    .ok_or_else(|| format!("--wait {v:?}: seconds from 0 to 600"))?;
                wait = Duration::from_secs_f64(s);
            }
            o if o.starts_with('-') => return Err(format!("unknown option '{o}'")),
            t => {
                if target.replace(t.to_string()).is_some() {
                    return Err("one device at a time".into());
                }
            }
        }
    }
    Ok(Args {
        target: target.ok_or("which device? an adapter, a stable name or a path")?,
        dry_run,
        wait,
        steps,
    })
}

/// The USB device of what the technician named, `Ok(None)` when it is not
/// on USB.
fn find(target: &str) -> Result<Option<UsbDevice>, String> {
    let is_adapter_dir = target
        .strip_prefix("/dev/dvb/adapter")
        .is_some_and(|n| n.trim_end_matches('/').parse::<u32>().is_ok());
    if target.starts_with('/') && !is_adapter_dir {
        return usb::owner_of(Path::new(target));
    }
    let found = adapter::discover_in(Path::new("/sys/class/dvb"));
    let n = super::scan::resolve_adapter(target.trim_end_matches('/'), &found.adapters)?;
    usb::owner_of_adapter(n)
}

pub fn run(args: &[String]) -> i32 {
    if super::wants_help(args) {
        print!("{HELP}");
        return 0;
    }
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("capbox usb-reset: {e}\n\n{HELP}");
            return 2;
        }
    };
    let dev = match find(&a.target) {
        Ok(Some(d)) => d,
        Ok(None) => {
            eprintln!(
                "capbox usb-reset: {} is not on a USB device (vidtv, PCI, virtual): nothing to reset",
                a.target
            );
            return 1;
        }
        Err(e) => {
            eprintln!("capbox usb-reset: {e}");
            return 1;
        }
    };
    let adapters = usb::adapters_of(&dev);
    println!("{}", dev.describe());
    println!("  sysfs:    {}", dev.sysfs.display());
    println!("  usbfs:    {}", dev.usbfs_node().display());
    println!(
        "  adapters: {}",
        if adapters.is_empty() {
            "none".to_string()
        } else {
            adapters
                .iter()
                .map(|n| format!("adapter{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if a.dry_run {
        return 0;
    }
    match usb::reset_with(&dev, a.wait, a.steps) {
        Ok(words) => {
            println!("{words}");
            let now = usb::adapters_of(&dev);
            if !adapters.is_empty() {
                println!(
                    "  adapters now: {}",
                    now.iter()
                        .map(|n| format!("adapter{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            0
        }
        Err(e) => {
            eprintln!("capbox usb-reset: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Args, String> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let a = p(&["adapter0"]).unwrap();
        assert_eq!(
            a,
            Args {
                target: "adapter0".into(),
                dry_run: false,
                wait: Duration::from_secs(10),
                steps: ResetSteps::Both
            }
        );
        let a = p(&[
            "--wait",
            "2.5",
            "--usbdevfs-only",
            "--dry-run",
            "/sys/block/sda",
        ])
        .unwrap();
        assert_eq!(a.wait, Duration::from_millis(2500));
        assert_eq!(a.steps, ResetSteps::UsbdevfsResetOnly);
        assert!(a.dry_run);
        assert_eq!(
            p(&["--authorized-only", "x"]).unwrap().steps,
            ResetSteps::AuthorizedOnly
        );
        assert_eq!(
            p(&[]).unwrap_err(),
            "which device? an adapter, a stable name or a path"
        );
        assert_eq!(p(&["a", "b"]).unwrap_err(), "one device at a time");
        assert!(p(&["--wait", "nan", "a"])
            .unwrap_err()
            .contains("seconds from 0 to 600"));
        assert!(p(&["--wait", "-1", "a"])
            .unwrap_err()
            .contains("seconds from 0 to 600"));
        assert!(p(&["--wait"]).unwrap_err().contains("needs seconds"));
        assert_eq!(
            p(&["--force", "a"]).unwrap_err(),
            "unknown option '--force'"
        );
    }
}
