use super::*;

#[test]
fn state_round_trip_and_bad_lines() {
    let s = State {
        outcome: Outcome::Trial,
        slot: "B".into(),
        version: "2026.12.1".into(),
        from_slot: "A".into(),
        from_version: "2026.11.3".into(),
        at: 1_764_900_000,
        message: "installed\nwith a newline".into(),
        failure: "capbox refused the config: capbox.toml:3: update.x: unknown key".into(),
    };
    let t = s.to_text();
    // One line per key: S20update greps `outcome=trial` and `slot=B`.
    assert!(t.lines().any(|l| l == "outcome=trial"), "{t}");
    assert!(t.lines().any(|l| l == "slot=B"), "{t}");
    // The trial guard (shell) writes failure= the same way.
    assert!(
        t.lines()
            .any(|l| l == "failure=capbox refused the config: capbox.toml:3: update.x: unknown key"),
        "{t}"
    );
    let back = State::parse(&t).unwrap();
    assert_eq!(back.message, "installed with a newline");
    assert_eq!(
        State {
            message: back.message.clone(),
            ..s
        },
        back
    );
    // Unknown keys and junk are ignored; a wrong outcome names its line.
    let p = State::parse("junk\nfuture=1\n\noutcome=good\n").unwrap();
    assert_eq!(p.outcome, Outcome::Good);
    let e = State::parse("# c\nslot=A\noutcome=maybe\n").unwrap_err();
    assert!(e.contains("line 3") && e.contains("\"maybe\""), "{e}");
    // Bounded: a huge value is cut, no panic on multi-byte characters.
    let big = format!("message={}\n", "é".repeat(5000));
    assert!(State::parse(&big).unwrap().message.len() <= MAX_VALUE);
}

#[test]
fn state_store_and_load() {
    let dir = std::env::temp_dir().join(format!("capbox-update-{}", std::process::id()));
    let p = dir.join("sub/capbox-update.state");
    assert_eq!(State::load(&p).unwrap(), None);
    let s = State {
        outcome: Outcome::Failed,
        message: "bad signature".into(),
        ..State::default()
    };
    s.store(&p).unwrap();
    assert_eq!(State::load(&p).unwrap(), Some(s));
    assert!(!p.with_extension("tmp").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn booted_slot_and_release() {
    let cmd = "BOOT_IMAGE=/boot/bzImage root=PARTLABEL=rootfs-b console=ttyS0,115200 ro capbox.slot=B rauc.slot=B\n";
    assert_eq!(booted_slot(cmd).as_deref(), Some("B"));
    assert_eq!(booted_slot("root=/dev/sda2 ro"), None);
    assert_eq!(booted_slot("rauc.slot="), None);
    assert_eq!(
        release_version("NAME=capbox\nVERSION=\"0.9.0+g1a2b3c\"\n").as_deref(),
        Some("0.9.0+g1a2b3c")
    );
    assert_eq!(release_version("NAME=capbox\n"), None);
}

// The repository's own system.conf (what the image ships).
const SYSTEM_CONF: &str =
    include_str!("../../buildroot/board/capbox/rootfs-overlay/etc/rauc/system.conf");

// RAUC 1.8's central status file as it writes it (GKeyFile, one section
// per slot it installed into).
const RAUC_STATUS: &str = "[slot.rootfs.1]
bundle.compatible=capbox-x86_64
bundle.version=0.9.1-test
bundle.hash=3e1b0c6f
status=ok
sha256=0c1e8b
size=67108864
installed.timestamp=2026-12-05T21:40:00Z
installed.count=1
";

#[test]
fn rauc_files() {
    assert_eq!(
        bootnames(SYSTEM_CONF),
        vec!["A".to_string(), "B".to_string()]
    );
    assert_eq!(
        slot_section(SYSTEM_CONF, "B").as_deref(),
        Some("slot.rootfs.1")
    );
    assert_eq!(slot_section(SYSTEM_CONF, "C"), None);
    assert_eq!(other_of(&bootnames(SYSTEM_CONF), "A").as_deref(), Some("B"));
    let r = slot_record(RAUC_STATUS, "slot.rootfs.1");
    assert_eq!(r.version.as_deref(), Some("0.9.1-test"));
    assert_eq!(r.installed.as_deref(), Some("2026-12-05T21:40:00Z"));
    assert_eq!(
        slot_record(RAUC_STATUS, "slot.rootfs.0"),
        SlotRecord::default()
    );
    // Garbage is no panic.
    let _ = parse_keyfile("[\n=\n[a]]\nx\n]=[\n");
}

#[test]
fn boot_actions() {
    let trial = State {
        outcome: Outcome::Trial,
        slot: "B".into(),
        ..State::default()
    };
    assert_eq!(boot_action(None, "A"), BootAction::Ordinary);
    assert_eq!(boot_action(Some(&trial), "B"), BootAction::Trial);
    assert_eq!(boot_action(Some(&trial), "A"), BootAction::RolledBack);
    let inst = State {
        outcome: Outcome::Installing,
        ..trial.clone()
    };
    assert_eq!(boot_action(Some(&inst), "A"), BootAction::Interrupted);
    let good = State {
        outcome: Outcome::Good,
        ..trial
    };
    assert_eq!(boot_action(Some(&good), "B"), BootAction::Ordinary);
}

#[test]
fn health() {
    let ok = serde_json::json!({
        "adapters": [{"name": "ter1", "device": "adapter0", "number": 0}],
        "channels": [{"name": "a", "state": "up"}],
        "supervisor": {"watchdog": {"configured": true, "armed": true},
                       "resets": {"guard_tripped": false},
                       "threads": [{"name": "http", "stalled": false}]},
    });
    assert_eq!(health_verdict(&ok), Ok(()));
    let mut bad = ok.clone();
    bad["adapters"][0]["number"] = serde_json::Value::Null;
    bad["channels"][0]["state"] = "starting".into();
    bad["supervisor"]["watchdog"]["armed"] = false.into();
    bad["supervisor"]["threads"][0]["stalled"] = true.into();
    let e = health_verdict(&bad).unwrap_err();
    for want in [
        "adapter ter1 (adapter0) not present",
        "channel a starting",
        "watchdog configured but not armed",
        "thread http stalled",
    ] {
        assert!(e.contains(want), "{e}");
    }
    assert!(health_verdict(&serde_json::json!({}))
        .unwrap_err()
        .contains("no channel"));
}

#[test]
fn rauc_errors_in_words() {
    // RAUC 1.8's words for a bundle signed by an unknown CA (through the
    // service).
    let stderr = "installing `/data/bad.raucb`: started\ninstalling /data/bad.raucb: LastError: Failed to check bundle identifier: signature verification failed: Verify error:unable to get local issuer certificate\ninstalling `/data/bad.raucb` failed\n";
    let e = rauc_error(stderr, "").unwrap();
    assert!(
        e.starts_with("the bundle is not signed by a key this box trusts"),
        "{e}"
    );
    assert!(e.contains("unable to get local issuer certificate"), "{e}");
    let e = rauc_error("LastError: Compatible mismatch: Expected 'capbox-x86_64' but bundle manifest has 'other'\n", "").unwrap();
    assert!(
        e.starts_with("the bundle is for another kind of box"),
        "{e}"
    );
    // A progress line that names the signature is not the error.
    let e = rauc_error("rauc-Message: 21:41:31.555: Verified detached signature by 'CN = capbox update test signing'\nFailed to extract manifest from bundle: Failed to start unsquashfs: Failed to execute child process \"unsquashfs\" (No such file or directory)\n", "").unwrap();
    assert!(e.starts_with("Failed to extract manifest"), "{e}");
    assert_eq!(rauc_error("", ""), None);
}

#[test]
fn rauc_errors_for_another_box_name_both_compatibles() {
    // What RAUC 1.8's `rauc install` printed in the update rig
    // (hw-tests/run-update-vm.sh, case wrongbox) for a bundle signed by the
    // trusted key whose manifest says compatible=capbox-aarch64.
    let out = "installing\n  0% Installing\n  0% Determining slot states\n 20% Determining slot states done.\n 20% Checking bundle\n 20% Verifying signature\n 40% Verifying signature done.\n 40% Checking bundle done.\n 40% Checking manifest contents\n 60% Checking manifest contents done.\n 60% Determining target install group\n 80% Determining target install group done.\n100% Installing failed.\nLastError: Installation error: Compatible mismatch: Expected 'capbox-x86_64' but bundle manifest has 'capbox-aarch64'\nInstalling `http://10.0.2.2:52757/wrongbox.raucb` failed\n";
    let e = rauc_error(out, "").unwrap();
    assert!(
        e.starts_with(
            "the bundle is for another kind of box \
             (this box is 'capbox-x86_64', the bundle is for 'capbox-aarch64'): "
        ),
        "{e}"
    );
    assert!(e.contains("Compatible mismatch"), "{e}");
    // Without both names, the hint alone.
    let e = rauc_error("LastError: Compatible mismatch\n", "").unwrap();
    assert_eq!(
        e,
        "the bundle is for another kind of box: LastError: Compatible mismatch"
    );
}

#[test]
fn rauc_errors_for_a_cut_bundle_say_damaged_not_untrusted() {
    // RAUC 1.8's `rauc info` on the good bundle cut to half its size (the
    // rig's case cut: a download that stopped halfway). It reads a
    // nonsense signature size from the last bytes and names the
    // signature: that must not read as "not signed by a trusted key".
    // The error line as the rig's guest printed it; the progress line as
    // RAUC 1.8 prints it on the host for the same kind of file.
    let stderr = "rauc-Message: 04:47:39.326: Reading bundle: /tmp/ub-b/cut.raucb\nInvalid bundle format: Signature size (14371367299186377665) exceeds bundle size\n";
    let e = rauc_error(stderr, "").unwrap();
    assert_eq!(
        e,
        "the bundle is incomplete or damaged (download cut short?): \
         Invalid bundle format: Signature size (14371367299186377665) exceeds bundle size"
    );
}

#[test]
fn status_and_metrics() {
    let dir = std::env::temp_dir().join(format!("capbox-update-info-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status_path = dir.join("status.raucs");
    std::fs::write(&status_path, RAUC_STATUS).unwrap();
    let conf = SYSTEM_CONF.replace("/data/rauc/status.raucs", status_path.to_str().unwrap());
    std::fs::write(dir.join("system.conf"), &conf).unwrap();
    std::fs::write(dir.join("release"), "VERSION=0.9.0-test\n").unwrap();
    let cfg = crate::config::UpdateConfig {
        state_file: dir.join("capbox-update.state"),
        ..Default::default()
    };
    State {
        outcome: Outcome::RolledBack,
        slot: "B".into(),
        version: "0.9.1-test".into(),
        ..State::default()
    }
    .store(&cfg.state_file)
    .unwrap();
    let info = Info::read_from(
        &cfg,
        "ro rauc.slot=A",
        &dir.join("release"),
        &dir.join("system.conf"),
    );
    let s = info.status();
    assert_eq!(s["version"], "0.9.0-test");
    assert_eq!(s["slot"], "A");
    assert_eq!(s["other_slot"], "B");
    assert_eq!(s["other_version"], "0.9.1-test");
    assert_eq!(s["last"]["outcome"], "rolled_back");
    let mut m = String::new();
    info.metrics(&mut m);
    assert!(
        m.contains("capbox_build_info{version=\"0.9.0-test\",capbox_version=\""),
        "{m}"
    );
    assert!(m.contains("slot=\"A\"} 1"), "{m}");
    assert!(
        m.contains("capbox_update_other_slot_info{slot=\"B\",version=\"0.9.1-test\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("capbox_update_last_outcome{outcome=\"rolled_back\",version=\"0.9.1-test\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("capbox_update_last_outcome{outcome=\"good\",version=\"\"} 0"),
        "{m}"
    );
    // `capbox update` (another process) writes the state file: the next
    // /status shows it.
    State {
        outcome: Outcome::Failed,
        message: "bad signature".into(),
        ..State::default()
    }
    .store(&cfg.state_file)
    .unwrap();
    assert_eq!(info.status()["last"]["outcome"], "failed");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn elf_interp_of_what_is_not_an_executable() {
    // Scripts and short files: no interpreter (run as they are).
    assert_eq!(elf_interp(b"#!/bin/sh\nexit 1\n"), Ok(None));
    assert_eq!(elf_interp(b"\x7fELF"), Ok(None));
    // A 32-bit ELF is not for this box.
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 1;
    h[5] = 1;
    assert!(elf_interp(&h).is_err());
    // Program headers pointing anywhere: errors, never a panic.
    h[4] = 2;
    for (phoff, phnum, phentsize) in [
        (u64::MAX, 3u16, 56u16),
        (64, 1000, 56),
        (64, 1, 0),
        (1 << 40, 1, 56),
    ] {
        h[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        h[0x36..0x38].copy_from_slice(&phentsize.to_le_bytes());
        h[0x38..0x3a].copy_from_slice(&phnum.to_le_bytes());
        assert!(elf_interp(&h).is_err(), "{phoff} {phnum} {phentsize}");
    }
    // One PT_INTERP right after the header.
    let mut e = h.clone();
    e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    let interp = b"/lib64/ld-linux-x86-64.so.2\0";
    let mut ph = vec![0u8; 56];
    ph[..4].copy_from_slice(&3u32.to_le_bytes());
    ph[8..16].copy_from_slice(&120u64.to_le_bytes());
    ph[32..40].copy_from_slice(&(interp.len() as u64).to_le_bytes());
    e.extend_from_slice(&ph);
    e.extend_from_slice(interp);
    assert_eq!(
        elf_interp(&e).unwrap().as_deref(),
        Some("/lib64/ld-linux-x86-64.so.2")
    );
    // Its length beyond the bytes read: an error.
    e.truncate(130);
    assert!(elf_interp(&e).is_err());
}

#[test]
fn resolve_in_keeps_links_inside_the_slot() {
    let dir = std::env::temp_dir().join(format!("capbox-update-resolve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("/usr/lib", dir.join("lib")).unwrap();
    std::os::unix::fs::symlink("lib", dir.join("lib64")).unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", dir.join("usr/lib/up")).unwrap();
    std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
    assert_eq!(
        resolve_in(&dir, "/lib64/ld.so"),
        Some(dir.join("usr/lib/ld.so"))
    );
    // `..` stops at the slot's root.
    assert_eq!(
        resolve_in(&dir, "/usr/lib/up"),
        Some(dir.join("etc/passwd"))
    );
    assert_eq!(resolve_in(&dir, "/../../../etc/x"), Some(dir.join("etc/x")));
    assert_eq!(resolve_in(&dir, "/loop"), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rolled_back_messages() {
    let mut s = State {
        outcome: Outcome::Trial,
        slot: "A".into(),
        version: "1.0-x".into(),
        ..State::default()
    };
    // GRUB's own environment block as grub-editenv writes it.
    let env = "# GRUB Environment Block\nORDER=A B\nA_OK=1\nA_TRY=3\nB_OK=1\nB_TRY=0\n####";
    assert_eq!(grubenv_value(env, "A_TRY"), Some("3"));
    assert_eq!(grubenv_value(env, "A"), None);
    let m = rolled_back_message(&s, "B", env);
    assert!(m.starts_with("slot A (version 1.0-x) was not marked good: the box is back on slot B after slot A's 3 boot tries ran out"), "{m}");
    assert!(m.contains("no reason recorded"), "{m}");
    // No count to show: said without one.
    let m = rolled_back_message(&s, "B", "");
    assert!(m.contains("; no reason recorded on slot A"), "{m}");
    assert!(!m.contains("boot tries"), "{m}");
    // The guard's reason wins.
    s.failure = "capbox does not stay up: capbox exited with status 1".into();
    let m = rolled_back_message(&s, "B", env);
    assert!(
        m.ends_with("; on slot A: capbox does not stay up: capbox exited with status 1"),
        "{m}"
    );
    assert!(!m.contains("no reason"), "{m}");
}
