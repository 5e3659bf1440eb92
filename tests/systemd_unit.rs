//! `systemd/capbox.service` is well-formed (systemd-analyze verify says
//! nothing, not even an unknown key) and asks for what capbox speaks:
//! Type=notify, a WatchdogSec, Restart=on-failure with a back-off, and
//! reload by SIGHUP. Skipped with a message where systemd-analyze is absent.

use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../systemd/capbox.service");

fn have_analyze() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn unit_asks_for_notify_watchdog_restart_and_reload() {
    let keys: Vec<(&str, &str)> = UNIT
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |k: &str| keys.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    assert_eq!(get("Type"), Some("notify"));
    assert_eq!(get("Restart"), Some("on-failure"));
    let secs = |k: &str| get(k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    assert!(
        secs("WatchdogSec") >= 10,
        "WatchdogSec must leave room for stall_after_s"
    );
    assert!(secs("RestartSec") >= 1, "a back-off between restarts");
    assert!(get("ExecReload").is_some_and(|v| v.contains("-HUP $MAINPID")));
    assert!(get("ExecStart").is_some_and(|v| v.contains("capbox serve")));
}

#[test]
fn systemd_analyze_verify_is_silent() {
    if !have_analyze() {
        eprintln!("\n\n*** SKIPPED: systemd-analyze missing (apt-get install -y systemd) ***\n");
        return;
    }
    // verify checks that ExecStart's binary exists: point it at ours.
    let dir = std::env::temp_dir().join(format!("capbox-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("capbox.service");
    let bin = env!("CARGO_BIN_EXE_capbox");
    assert!(Path::new(bin).exists());
    std::fs::write(&unit, UNIT.replace("/usr/bin/capbox", bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines about the host's own units are not ours.
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("capbox")).collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {:?}\n{said}",
        out.status
    );
}
