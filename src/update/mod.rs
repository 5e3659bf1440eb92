//! Signed A/B updates through RAUC, and marking a new slot good only when
//! capbox is healthy on it.
//!
//! The pieces (README "Updates"):
//! - RAUC (`/etc/rauc/system.conf`): slots rootfs-a (bootname A) and
//!   rootfs-b (B), GRUB's boot counting through `/boot/grub/grubenv`
//!   (`buildroot/board/capbox/grub.cfg`).
//! - `capbox update BUNDLE|URL` (`cli::update`): checks the bundle with
//!   `rauc info`, installs it into the other slot with `rauc install`,
//!   runs the new slot's own capbox (the slot mounted read-only) as
//!   `check-config` on this box's config — refused: the errors shown, the
//!   new slot marked bad, no reboot (`config_refused`) — records the
//!   update in the state file (`[update] state_file`, on the data
//!   partition) as a trial of the new slot, and reboots.
//! - At boot, `/etc/init.d/S20update` marks an ordinary boot good and,
//!   on a trial boot, starts a guard that marks the slot bad and reboots
//!   when it is not marked good within `[update] trial_timeout_s` (shell:
//!   it must work when the new capbox cannot start at all); before it
//!   reboots it writes why (`failure=`: the new capbox's check-config
//!   errors, its last exit, its health) for the old slot's roll-back
//!   message.
//! - `capbox serve` (`Trial`): on a trial boot, marks the slot good with
//!   `rauc status mark-good booted` once its health held for
//!   `[update] mark_good_after_s`; on a boot of the old slot while a trial
//!   was pending, records the roll-back and makes the booted slot primary
//!   again.
//! - `/status` `"update"` and the `capbox_build_info`,
//!   `capbox_update_other_slot_info`, `capbox_update_last_outcome`
//!   families of /metrics (`Info`).
//!
//! Everything read here (state file, RAUC's status file, /proc/cmdline,
//! RAUC's output) is bounded and parsed without panics.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Files read here are a few hundred bytes; more is not ours.
const MAX_READ: u64 = 64 * 1024;
/// Values kept from a state file or RAUC's output (a message holds a few
/// config errors, each naming its file, line and key).
const MAX_VALUE: usize = 600;

/// Where the image build writes the image's version
/// (`images/build-test-image.sh`, Buildroot's post-build).
pub const RELEASE_FILE: &str = "/etc/capbox-release";
/// RAUC's system config.
pub const RAUC_SYSTEM_CONF: &str = "/etc/rauc/system.conf";
/// On a trial boot, capbox's health in words (one line, rewritten when it
/// changes): the trial guard of /etc/init.d/S20update says it when it
/// rolls back a slot whose capbox ran but never got healthy.
pub const TRIAL_HEALTH_FILE: &str = "/run/capbox.trial-health";
/// Where `capbox update` mounts the freshly written slot (read-only) to
/// ask its capbox about the config.
pub const SLOT_MOUNT_DIR: &str = "/run/capbox-update/slot";
/// capbox in a slot, relative to the slot's root.
pub const SLOT_CAPBOX: &str = "usr/bin/capbox";

/// What the last update came to, as the state file, /status and
/// `capbox_update_last_outcome{outcome}` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No update recorded on this data partition.
    None,
    /// `rauc install` is running (or was, when the box lost power).
    Installing,
    /// Installed; the new slot is being tried and not yet marked good.
    Trial,
    /// The new slot was marked good: the update is done.
    Good,
    /// The new slot was never marked good; the box is back on the old one.
    RolledBack,
    /// `rauc install` failed (bad signature, wrong compatible, I/O): the
    /// box never left its slot.
    Failed,
    /// The install was cut (power, reset) before it finished; the box
    /// booted its old slot.
    Interrupted,
    /// Installed, but the new version's capbox refused the config (`capbox
    /// check-config` run from the new slot before the reboot): the new slot
    /// was marked bad and the box never left its slot.
    ConfigRefused,
}

pub const OUTCOMES: &[Outcome] = &[
    Outcome::None,
    Outcome::Installing,
    Outcome::Trial,
    Outcome::Good,
    Outcome::RolledBack,
    Outcome::Failed,
    Outcome::Interrupted,
    Outcome::ConfigRefused,
];

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::None => "none",
            Outcome::Installing => "installing",
            Outcome::Trial => "trial",
            Outcome::Good => "good",
            Outcome::RolledBack => "rolled_back",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::ConfigRefused => "config_refused",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        OUTCOMES.iter().copied().find(|o| o.word() == s)
    }
}

/// The state file: the last (or running) update. `key=value` lines, so
/// that /etc/init.d/S20update can read it with grep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub outcome: Outcome,
    /// The slot the update installs into (bootname, "A" or "B").
    pub slot: String,
    /// The bundle's version.
    pub version: String,
    /// The slot and version the box ran when the update started.
    pub from_slot: String,
    pub from_version: String,
    /// Unix seconds of the last change.
    pub at: u64,
    /// In words: what happened (RAUC's error, why it rolled back).
    pub message: String,
    /// Why the trial of the new slot failed, as the trial guard of
    /// /etc/init.d/S20update saw it before it rolled back (the new
    /// capbox's `check-config` errors, its last exit, its health): written
    /// by the guard on the new slot, read by capbox on the old one.
    pub failure: String,
}

impl Default for State {
    fn default() -> Self {
        State {
            outcome: Outcome::None,
            slot: String::new(),
            version: String::new(),
            from_slot: String::new(),
            from_version: String::new(),
            at: 0,
            message: String::new(),
            failure: String::new(),
        }
    }
}

/// One line of text, bounded, without control characters.
fn clean(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.trim();
    if s.len() <= MAX_VALUE {
        return s.to_string();
    }
    let mut end = MAX_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl State {
    /// Parses a state file; unknown keys and lines without `=` are
    /// ignored, an unknown outcome is an error naming its line.
    pub fn parse(text: &str) -> Result<State, String> {
        let mut s = State::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = clean(v);
            match k.trim() {
                "outcome" => {
                    s.outcome = Outcome::parse(&v).ok_or_else(|| {
                        format!(
                            "line {}: outcome {:?} is not one of {}",
                            i + 1,
                            v,
                            OUTCOMES
                                .iter()
                                .map(|o| o.word())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?
                }
                "slot" => s.slot = v,
                "version" => s.version = v,
                "from_slot" => s.from_slot = v,
                "from_version" => s.from_version = v,
                "at" => s.at = v.parse().unwrap_or(0),
                "message" => s.message = v,
                "failure" => s.failure = v,
                _ => {}
            }
        }
        Ok(s)
    }

    pub fn to_text(&self) -> String {
        let mut t = String::from("# capbox's update state (capbox update; README \"Updates\")\n");
        let _ = writeln!(t, "outcome={}", self.outcome.word());
        for (k, v) in [
            ("slot", &self.slot),
            ("version", &self.version),
            ("from_slot", &self.from_slot),
            ("from_version", &self.from_version),
        ] {
            let _ = writeln!(t, "{k}={}", clean(v));
        }
        let _ = writeln!(t, "at={}", self.at);
        let _ = writeln!(t, "message={}", clean(&self.message));
        if !self.failure.is_empty() {
            let _ = writeln!(t, "failure={}", clean(&self.failure));
        }
        t
    }

    /// Reads the state file: `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<State>, String> {
        match read_small(path) {
            Ok(None) => Ok(None),
            Ok(Some(t)) => State::parse(&t)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) => Err(e),
        }
    }

    /// Writes the state file atomically (temporary file, fsync, rename).
    pub fn store(&self, path: &Path) -> Result<(), String> {
        let tmp = path.with_extension("tmp");
        let r = (|| -> std::io::Result<()> {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d)?;
            }
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_text().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Some(d) = path.parent() {
                if let Ok(d) = std::fs::File::open(d) {
                    let _ = d.sync_all();
                }
            }
            Ok(())
        })();
        r.map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// A file of at most `MAX_READ` bytes; `Ok(None)` when it does not exist.
fn read_small(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut buf = Vec::new();
    f.take(MAX_READ)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The booted slot's bootname from the kernel command line (`rauc.slot=`,
/// as GRUB's entries pass it).
pub fn booted_slot(cmdline: &str) -> Option<String> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .map(clean)
        .filter(|s| !s.is_empty())
}

/// The image's version from `/etc/capbox-release` (`VERSION=...`).
pub fn release_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("VERSION="))
        .map(|v| clean(v.trim_matches('"')))
        .filter(|v| !v.is_empty())
}

/// A GKeyFile (RAUC's system.conf and status file): section → key → value.
pub fn parse_keyfile(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            out.push((clean(name), Vec::new()));
        } else if let (Some((k, v)), Some(sec)) = (l.split_once('='), out.last_mut()) {
            sec.1.push((clean(k), clean(v)));
        }
    }
    out
}

fn keyfile_get<'a>(
    kf: &'a [(String, Vec<(String, String)>)],
    section: &str,
    key: &str,
) -> Option<&'a str> {
    kf.iter()
        .filter(|(s, _)| s == section)
        .flat_map(|(_, kv)| kv.iter())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The section of RAUC's system.conf (`slot.rootfs.1`) whose bootname is
/// `bootname`.
pub fn slot_section(system_conf: &str, bootname: &str) -> Option<String> {
    let kf = parse_keyfile(system_conf);
    kf.iter()
        .find(|(s, kv)| {
            s.starts_with("slot.") && kv.iter().any(|(k, v)| k == "bootname" && v == bootname)
        })
        .map(|(s, _)| s.clone())
}

/// Every bootname of RAUC's system.conf, in file order.
pub fn bootnames(system_conf: &str) -> Vec<String> {
    parse_keyfile(system_conf)
        .iter()
        .filter(|(s, _)| s.starts_with("slot."))
        .filter_map(|(_, kv)| {
            kv.iter()
                .find(|(k, _)| k == "bootname")
                .map(|(_, v)| v.clone())
        })
        .collect()
}

/// What RAUC's status file says of one slot section: the version of the
/// bundle installed there and when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotRecord {
    pub version: Option<String>,
    pub installed: Option<String>,
    pub status: Option<String>,
}

pub fn slot_record(status_file: &str, section: &str) -> SlotRecord {
    let kf = parse_keyfile(status_file);
    SlotRecord {
        version: keyfile_get(&kf, section, "bundle.version").map(String::from),
        installed: keyfile_get(&kf, section, "installed.timestamp").map(String::from),
        status: keyfile_get(&kf, section, "status").map(String::from),
    }
}

/// The other slot of a two-slot system.
pub fn other_of(names: &[String], booted: &str) -> Option<String> {
    names.iter().find(|n| n.as_str() != booted).cloned()
}

/// What a boot means for the update in the state file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootAction {
    /// Nothing pending: an ordinary boot.
    Ordinary,
    /// The booted slot is the new one of a pending update: mark it good
    /// once healthy.
    Trial,
    /// A pending trial's slot is not the booted one: GRUB (or the trial
    /// guard) went back to the old slot. Record it, make the booted slot
    /// primary again.
    RolledBack,
    /// An install never finished (power cut, reset in the middle).
    Interrupted,
}

/// GRUB's environment block (RAUC's `bootloader=grub`): slot order and
/// boot counts.
const GRUBENV: &str = "/boot/grub/grubenv";

/// `KEY=value` of GRUB's environment block (1 KiB of `KEY=value` lines
/// padded with `#`), None when absent.
pub fn grubenv_value<'a>(env: &'a str, key: &str) -> Option<&'a str> {
    env.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
}

/// The roll-back message of /status, on the old slot `booted`: the trial
/// guard's reason when it wrote one (`failure=`); without one, the new
/// slot's trial boots never reached the guard's end (a watchdog reset, a
/// hang, a kernel panic on every try) and GRUB went back by its boot
/// counting — said plainly, with the count from `grubenv` when it shows
/// the tries ran out.
pub fn rolled_back_message(s: &State, booted: &str, grubenv: &str) -> String {
    let mut m = format!(
        "slot {} (version {}) was not marked good: the box is back on slot {booted}",
        s.slot, s.version
    );
    if !s.failure.is_empty() {
        let _ = write!(m, "; on slot {}: {}", s.slot, s.failure);
        return m;
    }
    let tries =
        grubenv_value(grubenv, &format!("{}_TRY", s.slot)).and_then(|v| v.parse::<u32>().ok());
    match tries {
        Some(n) if n >= 3 => {
            let _ = write!(
                m,
                " after slot {}'s {n} boot tries ran out (GRUB's boot counting); no reason recorded: \
                 none of its trial boots lasted until the trial guard's timeout (a watchdog reset, \
                 a hang or a kernel panic each time)",
                s.slot
            );
        }
        _ => {
            let _ = write!(
                m,
                "; no reason recorded on slot {}: its trial boot ended before the trial guard's \
                 timeout (a reset, a hang or a kernel panic), or the slot was switched by hand",
                s.slot
            );
        }
    }
    m
}

pub fn boot_action(state: Option<&State>, booted: &str) -> BootAction {
    match state {
        Some(s) if s.outcome == Outcome::Trial && s.slot == booted => BootAction::Trial,
        Some(s) if s.outcome == Outcome::Trial => BootAction::RolledBack,
        Some(s) if s.outcome == Outcome::Installing => BootAction::Interrupted,
        _ => BootAction::Ordinary,
    }
}

/// capbox's health for marking a slot good, from its own /status: every
/// configured adapter open, every channel up, the watchdog armed when one
/// is configured, no stalled thread, the reboot guard not tripped.
/// `Err` says what is wrong, in words.
pub fn health_verdict(status: &serde_json::Value) -> Result<(), String> {
    let mut wrong = Vec::new();
    for a in status["adapters"].as_array().into_iter().flatten() {
        if a["number"].is_null() {
            wrong.push(format!(
                "adapter {} ({}) not present",
                a["name"].as_str().unwrap_or("?"),
                a["device"].as_str().unwrap_or("?")
            ));
        }
    }
    let chans = status["channels"].as_array();
    if chans.is_none_or(|c| c.is_empty()) {
        wrong.push("no channel".to_string());
    }
    for c in chans.into_iter().flatten() {
        if c["state"].as_str() != Some("up") {
            wrong.push(format!(
                "channel {} {}",
                c["name"].as_str().unwrap_or("?"),
                c["state"].as_str().unwrap_or("?")
            ));
        }
    }
    let sup = &status["supervisor"];
    if sup["watchdog"]["configured"].as_bool() == Some(true)
        && sup["watchdog"]["armed"].as_bool() != Some(true)
    {
        wrong.push("watchdog configured but not armed".to_string());
    }
    if sup["resets"]["guard_tripped"].as_bool() == Some(true) {
        wrong.push("reboot-loop guard tripped".to_string());
    }
    for t in sup["threads"].as_array().into_iter().flatten() {
        if t["stalled"].as_bool() == Some(true) {
            wrong.push(format!(
                "thread {} stalled",
                t["name"].as_str().unwrap_or("?")
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join(", "))
    }
}

/// Runs `rauc ARGS`; Ok(stdout) or Err(the last error line it printed).
pub fn rauc(args: &[&str]) -> Result<String, String> {
    let bin = std::env::var("CAPBOX_RAUC").unwrap_or_else(|_| "rauc".into());
    let out = Command::new(&bin)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {bin}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(rauc_error(&stderr, &stdout)
            .unwrap_or_else(|| format!("{bin} {} failed ({})", args.join(" "), out.status)))
    }
}

/// The most telling line of RAUC's failure output, in plain words when it
/// is one an operator meets (a bad signature, the wrong box).
pub fn rauc_error(stderr: &str, stdout: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // RAUC's progress messages ("Verified detached signature by ...")
    // are not the error.
    let failing = |l: &&&str| {
        let l = l.to_ascii_lowercase();
        (l.contains("fail")
            || l.contains("error")
            || l.contains("mismatch")
            || l.contains("invalid"))
            && !l.contains("verified")
    };
    let pick = lines
        .iter()
        .rev()
        .filter(failing)
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("signature") || l.contains("compatible") || l.contains("certificate")
        })
        .or_else(|| lines.iter().rev().find(failing))
        .or_else(|| lines.last())?;
    let text = clean(pick);
    let low = text.to_ascii_lowercase();
    // A bundle cut short (a download that stopped halfway) ends in the
    // middle of its squashfs: RAUC 1.8 reads a nonsense signature size
    // from its last bytes ("Invalid bundle format: Signature size (...)
    // exceeds bundle size"). That is no signature problem: checked first.
    let hint = if low.contains("invalid bundle format")
        || low.contains("exceeds bundle size")
        || low.contains("too small")
        || low.contains("truncated")
    {
        "the bundle is incomplete or damaged (download cut short?): ".to_string()
    } else if low.contains("signature") || low.contains("certificate") {
        "the bundle is not signed by a key this box trusts (/etc/rauc/keyring.pem): ".to_string()
    } else if low.contains("compatible") {
        match (quoted_after(&text, "Expected"), quoted_after(&text, "has")) {
            (Some(ours), Some(theirs)) => format!(
                "the bundle is for another kind of box (this box is '{ours}', the bundle is for '{theirs}'): "
            ),
            _ => "the bundle is for another kind of box: ".to_string(),
        }
    } else {
        String::new()
    };
    Some(format!("{hint}{text}"))
}

/// The first '...'-quoted text after `word` in `text`.
fn quoted_after<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let rest = &text[text.find(word)? + word.len()..];
    let rest = &rest[rest.find('\'')? + 1..];
    Some(&rest[..rest.find('\'')?])
}

/// What a slot's capbox says of the config (`capbox check-config`), asked
/// by `capbox update` before it reboots into the slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigCheck {
    /// Exit status 0.
    Accepted,
    /// Exit status 1: what it printed (`file:line: key: message` lines,
    /// then its summary), at most `CHECK_LINES` lines.
    Refused(Vec<String>),
    /// It could not be asked (no capbox in the slot, it does not run here,
    /// it did not answer in time, another exit status): why. The trial
    /// after the reboot decides then.
    Unchecked(String),
}

/// Lines kept of what a slot's `capbox check-config` printed.
pub const CHECK_LINES: usize = 40;

/// The program interpreter (`PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`)
/// of a 64-bit little-endian ELF executable from its first bytes: `Ok(None)`
/// for a static executable or a script, `Err` for an ELF whose headers do
/// not fit in `head`.
pub fn elf_interp(head: &[u8]) -> Result<Option<String>, String> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Ok(None);
    }
    if head[4] != 2 || head[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    // Bytes `o..o + N` of the head; `None` beyond it (or on overflow).
    let at = |o: usize, n: usize| o.checked_add(n).and_then(|end| head.get(o..end));
    let u16_at = |o: usize| at(o, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| at(o, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| {
        at(o, 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    let bad = || "ELF program headers beyond the first bytes".to_string();
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?).map_err(|_| bad())?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    if phentsize < 56 {
        return Err(format!("ELF program header size {phentsize}"));
    }
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i.checked_mul(phentsize).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        if u32_at(ph).ok_or_else(bad)? != 3 {
            continue; // not PT_INTERP
        }
        let field = |d: usize| ph.checked_add(d).and_then(u64_at).ok_or_else(bad);
        let off = usize::try_from(field(8)?).map_err(|_| bad())?;
        let len = usize::try_from(field(32)?).map_err(|_| bad())?;
        let bytes = off
            .checked_add(len)
            .and_then(|end| head.get(off..end))
            .ok_or_else(bad)?;
        let s = String::from_utf8_lossy(bytes);
        let s = s.trim_end_matches('\0');
        if !s.starts_with('/') || s.len() > 255 {
            return Err(format!("ELF interpreter {s:?}"));
        }
        return Ok(Some(s.to_string()));
    }
    Ok(None)
}

/// `path` (absolute, as the slot sees it) resolved inside `root`: every
/// symbolic link on the way is followed as the slot would follow it (an
/// absolute target is relative to `root`), so that a link such as
/// `/lib64/ld-linux-x86-64.so.2 -> /lib/...` does not lead to the
/// running system's file.
pub fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut parts: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let mut here = root.to_path_buf();
        here.extend(&parts);
        here.push(&c);
        match std::fs::read_link(&here) {
            Ok(target) => {
                links += 1;
                if links > 40 {
                    return None;
                }
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    parts.clear();
                }
                todo.extend(
                    t.split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            Err(_) => parts.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&parts);
    Some(out)
}

/// Runs `capbox check-config CONFIG` with the capbox of the slot whose
/// root filesystem is at `slot_root` (mounted read-only), on the running
/// system: it sees the data partition, /proc and the sources as it will
/// once booted. A dynamically linked capbox runs under the slot's own
/// dynamic loader and libraries (`--library-path`), a static one as is.
pub fn check_config_in(slot_root: &Path, config: &Path, timeout: Duration) -> ConfigCheck {
    use std::io::Read;
    let Some(bin) = resolve_in(slot_root, SLOT_CAPBOX).filter(|b| b.is_file()) else {
        return ConfigCheck::Unchecked(format!("the slot has no /{SLOT_CAPBOX}"));
    };
    let mut head = Vec::new();
    if let Err(e) = std::fs::File::open(&bin).and_then(|f| f.take(MAX_READ).read_to_end(&mut head))
    {
        return ConfigCheck::Unchecked(format!("cannot read {}: {e}", bin.display()));
    }
    let mut cmd = match elf_interp(&head) {
        Err(e) => return ConfigCheck::Unchecked(format!("{}: {e}", bin.display())),
        Ok(None) => Command::new(&bin),
        Ok(Some(interp)) => {
            let Some(ld) = resolve_in(slot_root, &interp).filter(|l| l.is_file()) else {
                return ConfigCheck::Unchecked(format!(
                    "the slot's capbox needs {interp}, which the slot does not have"
                ));
            };
            let libs: Vec<String> = [
                "lib",
                "usr/lib",
                "lib64",
                "usr/lib64",
                "lib/x86_64-linux-gnu",
                "usr/lib/x86_64-linux-gnu",
            ]
            .iter()
            .filter_map(|d| resolve_in(slot_root, d))
            .filter(|d| d.is_dir())
            .map(|d| d.display().to_string())
            .collect();
            let mut c = Command::new(ld);
            c.arg("--library-path").arg(libs.join(":")).arg(&bin);
            c
        }
    };
    cmd.arg("check-config")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return ConfigCheck::Unchecked(format!("cannot run the slot's capbox: {e}"));
        }
    };
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(MAX_READ).read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let err_t = reader(
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    );
    let out_t = reader(
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    );
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if t0.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "the slot's capbox check-config did not answer within {} s",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(format!("waiting for the slot's capbox: {e}")),
        }
    };
    let text = format!(
        "{}{}",
        err_t.join().unwrap_or_default(),
        out_t.join().unwrap_or_default()
    );
    let lines: Vec<String> = text
        .lines()
        .map(clean)
        .filter(|l| !l.is_empty())
        .take(CHECK_LINES)
        .collect();
    match status {
        Err(e) => ConfigCheck::Unchecked(e),
        Ok(s) if s.code() == Some(0) => ConfigCheck::Accepted,
        Ok(s) if s.code() == Some(1) => ConfigCheck::Refused(if lines.is_empty() {
            vec!["check-config ended with status 1 and said nothing".into()]
        } else {
            lines
        }),
        Ok(s) => ConfigCheck::Unchecked(format!(
            "the slot's capbox check-config ended with {s}{}",
            lines.last().map(|l| format!(": {l}")).unwrap_or_default()
        )),
    }
}

/// The config errors of a refusal for the state file and /status: the
/// `file:line: key: message` lines first (not the summary, not warnings),
/// joined with "; ".
pub fn refusal_words(lines: &[String]) -> String {
    let errs: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("capbox: warning") && !is_summary(l))
        .collect();
    if errs.is_empty() {
        lines.join("; ")
    } else {
        errs.join("; ")
    }
}

fn is_summary(l: &str) -> bool {
    l.strip_prefix("capbox: ")
        .and_then(|r| r.split_once(" error(s) in "))
        .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
}

/// Mounts the slot `bootname` of RAUC's system.conf read-only at
/// `mount_dir`, asks its capbox about `config` (`check_config_in`) and
/// unmounts it.
pub fn check_slot_config(
    system_conf: &str,
    bootname: &str,
    config: &Path,
    mount_dir: &Path,
    timeout: Duration,
) -> ConfigCheck {
    let kf = parse_keyfile(system_conf);
    let Some(section) = slot_section(system_conf, bootname) else {
        return ConfigCheck::Unchecked(format!("no slot {bootname} in {RAUC_SYSTEM_CONF}"));
    };
    let Some(device) = keyfile_get(&kf, &section, "device") else {
        return ConfigCheck::Unchecked(format!("[{section}] has no device= in {RAUC_SYSTEM_CONF}"));
    };
    let fstype = keyfile_get(&kf, &section, "type").unwrap_or("ext4");
    if let Err(e) = std::fs::create_dir_all(mount_dir) {
        return ConfigCheck::Unchecked(format!("cannot make {}: {e}", mount_dir.display()));
    }
    let mounted = Command::new("mount")
        .args(["-t", fstype, "-o", "ro,nodev,nosuid", device])
        .arg(mount_dir)
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return ConfigCheck::Unchecked(format!(
                "cannot mount slot {bootname} ({device}) read-only: {}",
                clean(&String::from_utf8_lossy(&o.stderr))
            ))
        }
        Err(e) => return ConfigCheck::Unchecked(format!("cannot run mount: {e}")),
    }
    let r = check_config_in(mount_dir, config, timeout);
    match Command::new("umount").arg(mount_dir).output() {
        Ok(o) if o.status.success() => {}
        other => log::warn!(
            "update: umount {} failed ({other:?}): the slot stays mounted read-only",
            mount_dir.display()
        ),
    }
    r
}

/// What /status and /metrics show of updates; the trial thread updates it.
pub struct Info {
    /// The image's version (`/etc/capbox-release`), else capbox's own.
    pub version: String,
    pub capbox_version: String,
    pub slot: Option<String>,
    pub other_slot: Option<String>,
    pub other_version: Mutex<Option<String>>,
    pub state: Mutex<Option<State>>,
    /// On a trial boot: what the health check says now, and since when it
    /// holds (seconds), for /status.
    pub trial: Mutex<Option<(String, u64)>>,
    pub mark_good_after_s: u32,
    /// Read again at every /status and /metrics: `capbox update` (another
    /// process) writes it.
    state_file: PathBuf,
    system_conf: PathBuf,
    /// `TRIAL_HEALTH_FILE` on a box; none in tests.
    trial_health_file: Option<PathBuf>,
}

impl Info {
    /// Reads the files of a running box (no RAUC call: cheap and safe
    /// when RAUC is not there, as on a workstation).
    pub fn read(cfg: &crate::config::UpdateConfig) -> Info {
        let mut info = Self::read_from(
            cfg,
            &std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
            Path::new(RELEASE_FILE),
            Path::new(RAUC_SYSTEM_CONF),
        );
        info.trial_health_file = Some(PathBuf::from(TRIAL_HEALTH_FILE));
        info
    }

    pub fn read_from(
        cfg: &crate::config::UpdateConfig,
        cmdline: &str,
        release: &Path,
        system_conf: &Path,
    ) -> Info {
        let capbox_version = env!("CARGO_PKG_VERSION").to_string();
        let version = read_small(release)
            .ok()
            .flatten()
            .and_then(|t| release_version(&t))
            .unwrap_or_else(|| capbox_version.clone());
        let slot = booted_slot(cmdline);
        let conf = read_small(system_conf).ok().flatten().unwrap_or_default();
        let names = bootnames(&conf);
        let other_slot = slot.as_deref().and_then(|b| other_of(&names, b));
        let info = Info {
            version,
            capbox_version,
            slot,
            other_slot,
            other_version: Mutex::new(None),
            state: Mutex::new(State::load(&cfg.state_file).ok().flatten()),
            trial: Mutex::new(None),
            mark_good_after_s: cfg.mark_good_after_s,
            state_file: cfg.state_file.clone(),
            system_conf: system_conf.to_path_buf(),
            trial_health_file: None,
        };
        info.refresh_other(&conf);
        info
    }

    /// The state file and the other slot's version, as they are now (a
    /// few hundred bytes each; an unreadable file keeps what was known).
    pub fn refresh(&self) {
        if let Ok(Some(s)) = State::load(&self.state_file) {
            *lock(&self.state) = Some(s);
        }
        if let Ok(Some(conf)) = read_small(&self.system_conf) {
            self.refresh_other(&conf);
        }
    }

    /// The other slot's version from RAUC's status file (`statusfile=` of
    /// system.conf).
    pub fn refresh_other(&self, system_conf: &str) {
        let (Some(other), kf) = (&self.other_slot, parse_keyfile(system_conf)) else {
            return;
        };
        let Some(section) = slot_section(system_conf, other) else {
            return;
        };
        let Some(status_path) = keyfile_get(&kf, "system", "statusfile") else {
            return;
        };
        if let Ok(Some(t)) = read_small(Path::new(status_path)) {
            *lock(&self.other_version) = slot_record(&t, &section).version;
        }
    }

    /// The `update` object of /status.
    pub fn status(&self) -> serde_json::Value {
        self.refresh();
        let st = lock(&self.state).clone().unwrap_or_default();
        let trial = lock(&self.trial).clone();
        serde_json::json!({
            "version": self.version,
            "capbox_version": self.capbox_version,
            "slot": self.slot,
            "other_slot": self.other_slot,
            "other_version": *lock(&self.other_version),
            "last": {
                "outcome": st.outcome.word(),
                "slot": st.slot,
                "version": st.version,
                "from_slot": st.from_slot,
                "from_version": st.from_version,
                "at": if st.at > 0 { Some(crate::supervisor::resetlog::utc_words(st.at)) } else { None },
                "message": st.message,
            },
            "trial": trial.map(|(health, held)| serde_json::json!({
                "health": health,
                "healthy_for_s": held,
                "mark_good_after_s": self.mark_good_after_s,
            })),
        })
    }

    /// `capbox_build_info`, `capbox_update_other_slot_info`,
    /// `capbox_update_last_outcome`.
    pub fn metrics(&self, m: &mut String) {
        use crate::monitor::metrics::{family, Kind};
        self.refresh();
        let slot = self.slot.clone().unwrap_or_default();
        family(
            m,
            "capbox_build_info",
            Kind::Gauge,
            "Always 1: the running image's version, capbox's own version and the booted slot.",
        )
        .sample(
            &[
                ("version", &self.version),
                ("capbox_version", &self.capbox_version),
                ("slot", &slot),
            ],
            1u64,
        );
        let other = lock(&self.other_version).clone().unwrap_or_default();
        family(
            m,
            "capbox_update_other_slot_info",
            Kind::Gauge,
            "Always 1: the version RAUC installed in the other slot (\"\" when RAUC never installed there, e.g. the factory image).",
        )
        .sample(
            &[
                ("slot", &self.other_slot.clone().unwrap_or_default()),
                ("version", &other),
            ],
            1u64,
        );
        let st = lock(&self.state).clone().unwrap_or_default();
        let mut f = family(
            m,
            "capbox_update_last_outcome",
            Kind::Gauge,
            "1 for the last update's outcome (none, installing, trial, good, rolled_back, failed, interrupted), 0 for the others.",
        );
        for o in OUTCOMES {
            f.sample(
                &[
                    ("outcome", o.word()),
                    ("version", if *o == st.outcome { &st.version } else { "" }),
                ],
                u64::from(*o == st.outcome),
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The trial of a new slot in `capbox serve`.
pub struct Trial {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trial {
    /// Looks at the state file against the booted slot: records a
    /// roll-back or an interrupted install, or starts the thread that
    /// marks a trial slot good once `health` held for `mark_good_after_s`.
    pub fn start(
        info: Arc<Info>,
        cfg: &crate::config::UpdateConfig,
        health: Box<dyn Fn() -> Result<(), String> + Send>,
    ) -> Option<Trial> {
        let booted = info.slot.clone()?;
        let state = lock(&info.state).clone();
        let path = cfg.state_file.clone();
        match boot_action(state.as_ref(), &booted) {
            BootAction::Ordinary => None,
            BootAction::Interrupted => {
                let mut s = state.unwrap_or_default();
                s.outcome = Outcome::Interrupted;
                s.message = format!(
                    "the install into slot {} did not finish (power cut or reset); slot {booted} still runs",
                    s.slot
                );
                s.at = unix_now();
                log::warn!("update: {}", s.message);
                record(&info, &path, s);
                None
            }
            BootAction::RolledBack => {
                let mut s = state.unwrap_or_default();
                s.outcome = Outcome::RolledBack;
                let grubenv = read_small(Path::new(GRUBENV))
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                s.message = rolled_back_message(&s, &booted, &grubenv);
                s.at = unix_now();
                log::error!("update: {}", s.message);
                if let Err(e) = rauc(&["status", "mark-active", "booted"]) {
                    log::error!("update: rauc status mark-active booted: {e}");
                }
                record(&info, &path, s);
                None
            }
            BootAction::Trial => {
                let stop = Arc::new(AtomicBool::new(false));
                let stop2 = stop.clone();
                let after = Duration::from_secs(u64::from(cfg.mark_good_after_s));
                log::info!(
                    "update: trial boot of slot {booted}: marking it good once healthy for {} s",
                    cfg.mark_good_after_s
                );
                let thread = std::thread::Builder::new()
                    .name("update-trial".into())
                    .spawn(move || trial_loop(info, path, after, health, stop2))
                    .ok()?;
                Some(Trial {
                    stop,
                    thread: Some(thread),
                })
            }
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn record(info: &Info, path: &Path, s: State) {
    if let Err(e) = s.store(path) {
        log::error!("update: {e}");
    }
    *lock(&info.state) = Some(s);
}

fn trial_loop(
    info: Arc<Info>,
    path: PathBuf,
    after: Duration,
    health: Box<dyn Fn() -> Result<(), String> + Send>,
    stop: Arc<AtomicBool>,
) {
    let mut since: Option<Instant> = None;
    let mut last_words = String::new();
    while !stop.load(Ordering::Relaxed) {
        let verdict = health();
        let now = Instant::now();
        let words = match &verdict {
            Ok(()) => "healthy".to_string(),
            Err(e) => e.clone(),
        };
        if verdict.is_ok() {
            since.get_or_insert(now);
        } else {
            since = None;
        }
        if words != last_words {
            log::info!("update: trial health: {words}");
            if let Some(f) = &info.trial_health_file {
                // Best effort: /run is tmpfs; the guard reads it only
                // when it rolls back.
                let _ = std::fs::write(f, format!("{}\n", clean(&words)));
            }
            last_words = words.clone();
        }
        let held = since.map(|s| now - s).unwrap_or_default();
        *lock(&info.trial) = Some((words, held.as_secs()));
        if since.is_some() && held >= after {
            match rauc(&["status", "mark-good", "booted"]) {
                Ok(_) => {
                    let mut s = lock(&info.state).clone().unwrap_or_default();
                    s.outcome = Outcome::Good;
                    s.message = format!(
                        "slot {} (version {}) marked good after {} s of health",
                        info.slot.as_deref().unwrap_or("?"),
                        info.version,
                        held.as_secs()
                    );
                    s.at = unix_now();
                    log::info!("update: {}", s.message);
                    record(&info, &path, s);
                    *lock(&info.trial) = None;
                    return;
                }
                Err(e) => {
                    log::error!("update: rauc status mark-good booted: {e}; trying again");
                    since = Some(now);
                }
            }
        }
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests;
