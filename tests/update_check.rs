//! A config the new version refuses is reported, not lost (issue 16).
//!
//! - Before `capbox update` reboots into a freshly written slot, it runs
//!   that slot's capbox as `check-config` on this box's config
//!   (`update::check_config_in`). Here the "slot" is a directory built like
//!   one: the real capbox binary (dynamically linked on this host) with
//!   its own dynamic loader and libraries copied in, `/lib64` an absolute
//!   symbolic link as in a root filesystem. A config it refuses comes
//!   back with the file, line and key; one it accepts, accepted; a slot
//!   without capbox or whose capbox cannot answer is "unchecked" (the
//!   trial decides), never a refusal.
//! - When a new slot's trial fails, the trial guard of
//!   /etc/init.d/S20update records why in the state file (`failure=`)
//!   before it rolls back: here the real init script runs
//!   `S20update trial-failed` against the real capbox, and the state file
//!   capbox reads on the old slot carries the key and line.

mod e2e_common;

use capbox::update::{self, ConfigCheck, State};
use e2e_common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn good_config() -> String {
    format!(
        "{}{}",
        server_toml(),
        channel_toml("news", &sample_mux(), 1, &[])
    )
}

/// The same with a value the config refuses, on a known line.
fn bad_config() -> (String, usize) {
    let bad = format!("{}\n[update]\nmark_good_after_s = 1\n", good_config());
    let line = 1 + bad
        .lines()
        .position(|l| l.starts_with("mark_good_after_s"))
        .unwrap();
    (bad, line)
}

fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A slot root holding the real capbox with its loader and libraries.
fn real_slot(root: &Path) {
    let usr_bin = root.join("usr/bin");
    std::fs::create_dir_all(&usr_bin).unwrap();
    // A debug build is ~100 MB: linked, not copied, when it can be.
    if std::fs::hard_link(BIN, usr_bin.join("capbox")).is_err() {
        std::fs::copy(BIN, usr_bin.join("capbox")).unwrap();
    }
    let mut bin = Vec::new();
    use std::io::Read;
    std::fs::File::open(BIN)
        .unwrap()
        .take(64 * 1024)
        .read_to_end(&mut bin)
        .unwrap();
    let lib = root.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let Some(interp) = update::elf_interp(&bin).unwrap() else {
        return; // a static build: nothing more to copy
    };
    // /lib64 -> /lib, absolute: resolved inside the slot, not on the host.
    std::os::unix::fs::symlink("/lib", root.join("lib64")).unwrap();
    let name = Path::new(&interp).file_name().unwrap();
    std::fs::copy(&interp, lib.join(name)).unwrap();
    if !interp.starts_with("/lib64/") && !interp.starts_with("/lib/") {
        let p = root.join(interp.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(&interp, p).unwrap();
    }
    let ldd = Command::new("ldd").arg(BIN).output().unwrap();
    for l in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(p) = l.split("=> ").nth(1).and_then(|r| r.split(' ').next()) {
            if p.starts_with('/') {
                let name = Path::new(p).file_name().unwrap();
                std::fs::copy(p, lib.join(name)).unwrap();
            }
        }
    }
}

#[test]
fn the_new_slots_capbox_judges_the_config() {
    let dir = TempDir::new("update-check");
    let cfg = dir.join("capbox.toml");
    let slot = dir.join("slot");
    real_slot(&slot);
    let t = Duration::from_secs(60);

    std::fs::write(&cfg, good_config()).unwrap();
    assert_eq!(
        update::check_config_in(&slot, &cfg, t),
        ConfigCheck::Accepted
    );

    let (bad, line) = bad_config();
    std::fs::write(&cfg, bad).unwrap();
    let ConfigCheck::Refused(lines) = update::check_config_in(&slot, &cfg, t) else {
        panic!("a refused config not refused");
    };
    let want = format!("{}:{line}: update.mark_good_after_s", cfg.display());
    assert!(lines.iter().any(|l| l.starts_with(&want)), "{lines:?}");
    let words = update::refusal_words(&lines);
    assert!(words.starts_with(&want), "{words}");
    assert!(
        !words.contains("error(s) in"),
        "the summary is not an error: {words}"
    );

    // The slot's program is what runs: a capbox that ends otherwise than
    // 0 or 1 cannot be asked; the update goes on to its trial.
    let other = dir.join("slot2");
    script(
        &other.join("usr/bin/capbox"),
        "echo \"slot2 capbox: $1 $2\" >&2\nexit 7",
    );
    match update::check_config_in(&other, &cfg, t) {
        ConfigCheck::Unchecked(why) => {
            assert!(
                why.contains("7") && why.contains("slot2 capbox: check-config"),
                "{why}"
            )
        }
        r => panic!("{r:?}"),
    }
    script(
        &other.join("usr/bin/capbox"),
        "echo \"$2:3: channel.name: not in this version\" >&2\nexit 1",
    );
    assert_eq!(
        update::check_config_in(&other, &cfg, t),
        ConfigCheck::Refused(vec![format!(
            "{}:3: channel.name: not in this version",
            cfg.display()
        )])
    );
    match update::check_config_in(&dir.join("empty"), &cfg, t) {
        ConfigCheck::Unchecked(why) => assert!(why.contains("/usr/bin/capbox"), "{why}"),
        r => panic!("{r:?}"),
    }
}

#[test]
fn the_trial_guard_records_why() {
    let dir = TempDir::new("update-guard");
    let cfg = dir.join("capbox.toml");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let (bad, line) = bad_config();
    std::fs::write(&cfg, bad).unwrap();
    let st = dir.join("capbox-update.state");
    let trial = State {
        outcome: update::Outcome::Trial,
        slot: "B".into(),
        version: "2026.12.2".into(),
        from_slot: "A".into(),
        message: "on trial".into(),
        ..State::default()
    };
    trial.store(&st).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("buildroot/board/capbox/rootfs-overlay/etc/init.d/S20update");
    let guard = |bin: &str| {
        let out = Command::new("sh")
            .arg(&script)
            .arg("trial-failed")
            .env("CAPBOX_CONF", &cfg)
            .env("CAPBOX_BIN", bin)
            .env("CAPBOX_RUN", &run)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        State::load(&st).unwrap().unwrap()
    };
    // The new capbox refuses the config: its words, with file, line, key.
    let s = guard(BIN);
    let want = format!("{}:{line}: update.mark_good_after_s", cfg.display());
    assert!(
        s.failure.starts_with("capbox refused the config: ") && s.failure.contains(&want),
        "{s:?}"
    );
    assert_eq!(
        State {
            failure: String::new(),
            ..s
        },
        trial,
        "the guard changes only failure="
    );
    // It accepts the config but does not stay up: the keeper's last exit.
    std::fs::write(&cfg, good_config()).unwrap();
    std::fs::write(
        run.join("capbox.last-exit"),
        "capbox exited with status 101 after 0 s\n",
    )
    .unwrap();
    let s = guard(BIN);
    assert_eq!(
        s.failure,
        "capbox does not stay up: capbox exited with status 101 after 0 s"
    );
    // It runs (its pid is alive) but its health never held.
    std::fs::write(run.join("capbox.pid"), format!("{}\n", std::process::id())).unwrap();
    std::fs::write(run.join("capbox.trial-health"), "channel news starting\n").unwrap();
    let s = guard(BIN);
    assert_eq!(
        s.failure,
        "capbox ran but its health did not hold: channel news starting"
    );
    assert_eq!(s.outcome, update::Outcome::Trial);
}
