//! `capbox update BUNDLE|URL`: install a signed RAUC bundle into the other
//! slot and reboot into it (see `crate::update`).

use crate::config::{self, UpdateConfig};
use crate::update::{self, Outcome, State};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const HELP: &str = "\
usage: capbox update [--no-reboot] [--skip-config-check] [--config PATH] BUNDLE|URL
       capbox update --status [--config PATH]

Installs a signed RAUC bundle (a file, or an http:// or https:// URL that
RAUC downloads) into the slot the box is not running, then reboots into
it. The bundle's signature and compatible are checked first (`rauc info`):
a bundle not signed by a key the box trusts is refused before anything is
written. Once the slot is written, its own capbox checks this box's
config (`capbox check-config`, run from the new slot): a config the new
version refuses is shown (file, line, key), the new slot is marked bad
and the box does not reboot (outcome config_refused). After the reboot
the new slot is on trial: capbox marks it good
once its health held for [update] mark_good_after_s; when it does not,
the box goes back to the old slot by itself ([update] trial_timeout_s, or
GRUB after three boots that never got marked good). /status \"update\" and
`capbox update --status` show the versions and the last outcome.

  --no-reboot   install and switch the next boot, but do not reboot now
  --skip-config-check
                do not ask the new slot's capbox about the config (the
                trial after the reboot still rolls back a refused config)
  --status      show the slots, versions and the last update; change nothing
";

pub fn run(args: &[String]) -> i32 {
    let mut no_reboot = false;
    let mut check = true;
    let mut show = false;
    let mut rest = Vec::new();
    let mut bundle: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            "--no-reboot" => no_reboot = true,
            "--skip-config-check" => check = false,
            "--status" => show = true,
            "--config" | "-c" => {
                rest.push(a.clone());
                if let Some(p) = it.next() {
                    rest.push(p.clone());
                }
            }
            s if s.starts_with("--config=") => rest.push(a.clone()),
            s if s.starts_with('-') => {
                eprintln!("capbox update: unknown option '{s}'\n\n{HELP}");
                return 2;
            }
            s => {
                if bundle.replace(s.to_string()).is_some() {
                    eprintln!("capbox update: more than one bundle given ('{s}' is the second)");
                    return 2;
                }
            }
        }
    }
    let path = match super::config_path(&rest) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("capbox update: {e}");
            return 2;
        }
    };
    let cfg = update_config(&path);
    let info = update::Info::read(&cfg);
    if show {
        println!(
            "{}",
            serde_json::to_string_pretty(&info.status()).unwrap_or_default()
        );
        return 0;
    }
    let Some(bundle) = bundle else {
        eprintln!("capbox update: no bundle given\n\n{HELP}");
        return 2;
    };
    install(&cfg, &info, &bundle, &path, check, no_reboot)
}

/// `[update]` of the config; when the config cannot be read (an update may
/// be what fixes it) the defaults, beside the config file.
fn update_config(path: &Path) -> UpdateConfig {
    match config::load(path) {
        Ok(c) => c.update,
        Err(diags) => {
            let first = diags.first().map(|d| d.to_string()).unwrap_or_default();
            eprintln!(
                "capbox update: warning: {} has {} error(s) (first: {first}); using [update]'s defaults",
                path.display(),
                diags.len()
            );
            let dir = path.parent().unwrap_or(Path::new("/"));
            UpdateConfig {
                state_file: dir.join(config::DEFAULT_UPDATE_STATE),
                ..UpdateConfig::default()
            }
        }
    }
}

fn say(msg: &str) {
    println!("capbox update: {msg}");
    ::log::info!("update: {msg}");
}

fn refuse(cfg: &UpdateConfig, mut st: State, outcome: Outcome, msg: String) -> i32 {
    eprintln!("capbox update: FAILED: {msg}");
    ::log::error!("update: FAILED: {msg}");
    st.outcome = outcome;
    st.message = msg;
    st.at = update::unix_now();
    if let Err(e) = st.store(&cfg.state_file) {
        eprintln!("capbox update: {e}");
    }
    1
}

fn install(
    cfg: &UpdateConfig,
    info: &update::Info,
    bundle: &str,
    config: &Path,
    check: bool,
    no_reboot: bool,
) -> i32 {
    let (Some(booted), Some(other)) = (info.slot.clone(), info.other_slot.clone()) else {
        eprintln!(
            "capbox update: this system has no A/B slots (no rauc.slot= on the kernel command line, or no {}): updates are for the appliance image",
            update::RAUC_SYSTEM_CONF
        );
        return 1;
    };
    let is_url = bundle.starts_with("http://") || bundle.starts_with("https://");
    if !is_url && !Path::new(bundle).is_file() {
        eprintln!("capbox update: {bundle}: no such file (a bundle file or an http:// URL)");
        return 2;
    }
    let bundle_arg = if is_url {
        bundle.to_string()
    } else {
        std::fs::canonicalize(bundle)
            .unwrap_or_else(|_| PathBuf::from(bundle))
            .display()
            .to_string()
    };
    let mut st = State {
        outcome: Outcome::Installing,
        slot: other.clone(),
        version: String::new(),
        from_slot: booted.clone(),
        from_version: info.version.clone(),
        at: update::unix_now(),
        message: format!("installing {bundle}"),
        failure: String::new(),
    };
    // 1. The signature and format, before anything is written. `rauc
    // info` does not compare the compatible: `rauc install` refuses a
    // bundle for another box, also before it writes (the rig's wrongbox).
    say(&format!("checking {bundle} (signature, format)"));
    let out = match update::rauc(&["info", "--output-format=shell", &bundle_arg]) {
        Ok(o) => o,
        Err(e) => return refuse(cfg, st, Outcome::Failed, format!("{bundle} refused: {e}")),
    };
    let version = shell_value(&out, "RAUC_MF_VERSION").unwrap_or_default();
    st.version = version.clone();
    say(&format!(
        "bundle version {version} ({}), signature good; this box runs {} in slot {booted}",
        shell_value(&out, "RAUC_MF_COMPATIBLE").unwrap_or_default(),
        info.version
    ));
    // 2. Install: RAUC marks slot `other` bad, writes it, then makes it
    // the primary. The state says "installing" meanwhile: a power cut here
    // boots the old slot, which records it as interrupted.
    if let Err(e) = st.store(&cfg.state_file) {
        eprintln!("capbox update: {e}");
        return 1;
    }
    say(&format!("installing into slot {other} (rauc install)"));
    let bin = std::env::var("CAPBOX_RAUC").unwrap_or_else(|_| "rauc".into());
    let child = Command::new(&bin)
        .args(["install", &bundle_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return refuse(cfg, st, Outcome::Failed, format!("cannot run {bin}: {e}")),
    };
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(e) = stderr {
            for l in BufReader::new(e).lines().map_while(Result::ok).take(1000) {
                eprintln!("  rauc: {l}");
                lines.push(l);
            }
        }
        lines.join("\n")
    });
    let mut out_lines = Vec::new();
    if let Some(o) = child.stdout.take() {
        for l in BufReader::new(o).lines().map_while(Result::ok).take(1000) {
            println!("  rauc: {l}");
            out_lines.push(l);
        }
    }
    let status = child.wait();
    let err_text = err_thread.join().unwrap_or_default();
    match status {
        Ok(s) if s.success() => {}
        other_status => {
            let words = update::rauc_error(&err_text, &out_lines.join("\n")).unwrap_or_else(|| {
                format!(
                    "rauc install ended with {:?}",
                    other_status.map(|s| s.to_string())
                )
            });
            return refuse(
                cfg,
                st,
                Outcome::Failed,
                format!("install into slot {other} failed: {words}"),
            );
        }
    }
    // 3. The new version's word on this box's config, before the reboot:
    // a config it refuses would only come back as a roll-back.
    if check {
        if let Some(code) = check_new_slot(cfg, &st, &booted, &other, config) {
            return code;
        }
    } else {
        say("not asking the new slot's capbox about the config (--skip-config-check)");
    }
    st.outcome = Outcome::Trial;
    st.at = update::unix_now();
    st.message = format!(
        "version {version} installed into slot {other}; on trial until marked good (after {} s of health)",
        cfg.mark_good_after_s
    );
    if let Err(e) = st.store(&cfg.state_file) {
        eprintln!("capbox update: {e}");
    }
    say(&format!(
        "installed version {version} into slot {other}; the next boot tries it. capbox marks it good after {} s of health; otherwise the box comes back to slot {booted} by itself (within {} s, or after three boots)",
        cfg.mark_good_after_s, cfg.trial_timeout_s
    ));
    if no_reboot {
        say("not rebooting (--no-reboot): `reboot` boots the new slot");
        return 0;
    }
    say("rebooting into the new slot");
    match Command::new("reboot").status() {
        Ok(s) if s.success() => 0,
        r => {
            eprintln!("capbox update: reboot failed ({r:?}): reboot by hand to boot the new slot");
            1
        }
    }
}

/// Runs the new slot's `capbox check-config` on `config`. `None`: go on
/// (accepted, or it could not be asked: the trial decides); `Some(exit)`:
/// refused, said on the console, recorded, the new slot marked bad and the
/// booted one primary again.
fn check_new_slot(
    cfg: &UpdateConfig,
    st: &State,
    booted: &str,
    other: &str,
    config: &Path,
) -> Option<i32> {
    say(&format!(
        "asking the capbox of slot {other} about {} (check-config, slot mounted read-only)",
        config.display()
    ));
    let conf = std::fs::read_to_string(update::RAUC_SYSTEM_CONF).unwrap_or_default();
    let r = update::check_slot_config(
        &conf,
        other,
        config,
        Path::new(update::SLOT_MOUNT_DIR),
        std::time::Duration::from_secs(120),
    );
    decide(cfg, st, booted, other, config, r)
}

/// What `check_new_slot` does with the slot's answer (apart from the
/// mount: testable on any machine).
fn decide(
    cfg: &UpdateConfig,
    st: &State,
    booted: &str,
    other: &str,
    config: &Path,
    r: update::ConfigCheck,
) -> Option<i32> {
    match r {
        update::ConfigCheck::Accepted => {
            say(&format!("version {} accepts the config", st.version));
            None
        }
        update::ConfigCheck::Unchecked(why) => {
            say(&format!(
                "warning: could not ask the new version about the config ({why}); the trial after the reboot decides"
            ));
            None
        }
        update::ConfigCheck::Refused(lines) => {
            for l in &lines {
                eprintln!("  new capbox: {l}");
            }
            // The booted slot first again, the new one never tried: RAUC
            // made it primary when the install finished.
            let mut undo = Vec::new();
            for args in [
                ["status", "mark-active", "booted"],
                ["status", "mark-bad", "other"],
            ] {
                if let Err(e) = update::rauc(&args) {
                    undo.push(format!("rauc {} failed: {e}", args.join(" ")));
                }
            }
            let words = update::refusal_words(&lines);
            let msg = if undo.is_empty() {
                format!(
                    "version {} refuses the config {}: {words}. Not rebooted: slot {other} marked bad, slot {booted} stays; fix the config for the new version and run capbox update again",
                    st.version,
                    config.display()
                )
            } else {
                format!(
                    "version {} refuses the config {}: {words}. Not rebooted, but {}: the next boot may try slot {other} (its trial then rolls back)",
                    st.version,
                    config.display(),
                    undo.join("; ")
                )
            };
            Some(refuse(cfg, st.clone(), Outcome::ConfigRefused, msg))
        }
    }
}

/// `KEY='value'` (or `KEY=value`) of `rauc info --output-format=shell`.
fn shell_value(out: &str, key: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim().trim_matches('\'').trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use crate::update::{self, ConfigCheck, Outcome, State};
    use std::os::unix::fs::PermissionsExt;

    /// A refusal by the new slot's capbox: the booted slot is made primary
    /// again and the new one bad (RAUC, here a script that logs its
    /// arguments), the update recorded as config_refused with the key and
    /// line. Then the other way: the guard's reason (failure=) reaches the
    /// roll-back's message on the old slot. The only test of this binary
    /// that sets CAPBOX_RAUC.
    #[test]
    fn refused_config_and_the_rolled_back_reason() {
        let dir = std::env::temp_dir().join(format!("capbox-update-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("rauc.log");
        let fake = dir.join("rauc");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$*\" >>{}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::env::set_var("CAPBOX_RAUC", &fake);
        let cfg = crate::config::UpdateConfig {
            state_file: dir.join("capbox-update.state"),
            ..Default::default()
        };
        let st = State {
            outcome: Outcome::Installing,
            slot: "B".into(),
            version: "2026.12.2".into(),
            from_slot: "A".into(),
            ..State::default()
        };
        let conf = std::path::Path::new("/etc/capbox/capbox.toml");
        // Accepted or not asked: go on to the reboot, nothing recorded.
        assert_eq!(
            super::decide(&cfg, &st, "A", "B", conf, ConfigCheck::Accepted),
            None
        );
        assert_eq!(
            super::decide(
                &cfg,
                &st,
                "A",
                "B",
                conf,
                ConfigCheck::Unchecked("no mount".into())
            ),
            None
        );
        assert!(!log.exists() && !cfg.state_file.exists());
        let lines = vec![
            "/etc/capbox/capbox.toml:31: update.mark_good_after_s: 1 is out of range; expected seconds 5..=86400".to_string(),
            "capbox: 1 error(s) in /etc/capbox/capbox.toml".to_string(),
        ];
        assert_eq!(
            super::decide(&cfg, &st, "A", "B", conf, ConfigCheck::Refused(lines)),
            Some(1)
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "status mark-active booted\nstatus mark-bad other\n"
        );
        let s = State::load(&cfg.state_file).unwrap().unwrap();
        assert_eq!(s.outcome, Outcome::ConfigRefused);
        assert!(
            s.message.starts_with("version 2026.12.2 refuses the config /etc/capbox/capbox.toml: /etc/capbox/capbox.toml:31: update.mark_good_after_s: 1 is out of range"),
            "{}",
            s.message
        );
        assert!(
            s.message.contains("slot B marked bad, slot A stays"),
            "{}",
            s.message
        );
        let info =
            update::Info::read_from(&cfg, "rauc.slot=A", &dir.join("none"), &dir.join("none"));
        assert_eq!(info.status()["last"]["outcome"], "config_refused");
        let mut m = String::new();
        info.metrics(&mut m);
        assert!(
            m.contains(
                "capbox_update_last_outcome{outcome=\"config_refused\",version=\"2026.12.2\"} 1"
            ),
            "{m}"
        );

        // The trial of B failed; its guard wrote why; A boots.
        std::fs::remove_file(&log).unwrap();
        State {
            outcome: Outcome::Trial,
            failure: "capbox refused the config: /etc/capbox/capbox.toml:31: update.x: unknown key"
                .into(),
            ..st
        }
        .store(&cfg.state_file)
        .unwrap();
        let info = std::sync::Arc::new(update::Info::read_from(
            &cfg,
            "rauc.slot=A",
            &dir.join("none"),
            &dir.join("none"),
        ));
        assert!(update::Trial::start(info.clone(), &cfg, Box::new(|| Ok(()))).is_none());
        let s = State::load(&cfg.state_file).unwrap().unwrap();
        assert_eq!(s.outcome, Outcome::RolledBack);
        assert_eq!(
            s.message,
            "slot B (version 2026.12.2) was not marked good: the box is back on slot A; on slot B: capbox refused the config: /etc/capbox/capbox.toml:31: update.x: unknown key"
        );
        assert_eq!(info.status()["last"]["message"], s.message.as_str());
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "status mark-active booted\n"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn shell_values() {
        let out = "RAUC_MF_COMPATIBLE='capbox-x86_64'\nRAUC_MF_VERSION='0.9.1-test'\nRAUC_MF_DESCRIPTION=''\n";
        assert_eq!(
            super::shell_value(out, "RAUC_MF_VERSION").as_deref(),
            Some("0.9.1-test")
        );
        assert_eq!(
            super::shell_value(out, "RAUC_MF_COMPATIBLE").as_deref(),
            Some("capbox-x86_64")
        );
        assert_eq!(super::shell_value(out, "RAUC_MF"), None);
    }
}
