//! The watchdog rig's in-VM program (example `watchdog-guest`;
//! `hw-tests/run-watchdog-vm.sh` boots the VM once per case and reads the
//! serial log): issue 12 item 5, capbox's watchdog handling against a
//! real kernel watchdog driver (`softdog`, or QEMU's `i6300esb`).
//!
//! One case per boot, from the kernel command line (`wd.case=`):
//! - `hang`: capbox arms the watchdog (its log line, `/status`
//!   `supervisor.watchdog`, and the kernel's own word in
//!   `/sys/class/watchdog/watchdog0/state`), then the guest SIGSTOPs it and
//!   prints `WDVM-MARK hang`; the host measures from that line to QEMU's
//!   exit (`-no-reboot`: a reset ends QEMU). With the persistent disk the
//!   reset log is on it, and run N must see N-1 resets in the last hour.
//! - `stall`: a mux runner's heartbeat is stuck by
//!   `POST /control/fault?thread=mux …&kind=stall`; `WDVM-MARK stall`, then
//!   the supervisor must say it stops feeding and the VM must reset.
//! - `clean`: first (capbox only) the card manager's heartbeat is stuck
//!   (`thread=cards`): the supervisor restarts it and the VM must not reset
//!   over stall_after + timeout + 3 s; then `wd.runs` times: start, armed,
//!   SIGTERM, a clean exit with the magic close (the kernel says the
//!   watchdog is inactive), no reset over timeout + 3 s.
//! - `guard`: after the hang runs on the same disk, capbox must start
//!   without arming (reboot-loop guard): its log line, `/status`
//!   `supervisor.resets.guard_tripped` with the last cause, `capbox
//!   status` showing it, and no reset over timeout + 3 s.
//!
//! - `reboot` (i6300esb): one QEMU without -no-reboot; boot 1 arms and
//!   hangs, boot 2 must see the driver's bootstatus (card reset) and
//!   capbox's `last_cause` must name it.
//!
//! `wd.impl=standin` runs busybox's `watchdog` applet instead of capbox
//! (the rig's own check of boot, reset detection and timing): only the
//! cases and checks a plain feeder can pass (hang, clean stops).
//!
//! One PASS/FAIL line per check; the exit code is the number of failed
//! checks (the init hands it to QEMU).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../suite.rs"]
mod suite;
use suite::Suite;

const URL: &str = "http://127.0.0.1:8080";
const SYSFS: &str = "/sys/class/watchdog/watchdog0";
const CONFIG: &str = "/tmp/capbox.toml";
/// How long capbox may take to start and arm under TCG.
const START_LIMIT: Duration = Duration::from_secs(30);

/// What the host asked for on the kernel command line (`wd.KEY=VALUE`).
struct Params {
    dev: String,
    case: String,
    standin: bool,
    timeout: u64,
    stall: u64,
    guard: u64,
    runs: u64,
    run: u64,
    disk: bool,
    /// The clean case's stop signal: TERM, or KILL to show the rig sees
    /// the reset a missing magic close causes.
    stop_kill: bool,
}

impl Params {
    fn from_cmdline() -> Params {
        let line = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let get = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("wd.{k}=")))
                .map(str::to_string)
        };
        let num = |k: &str, d: u64| get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        Params {
            dev: get("dev").unwrap_or_default(),
            case: get("case").unwrap_or_default(),
            standin: get("impl").as_deref() == Some("standin"),
            timeout: num("timeout", 5),
            stall: num("stall", 3),
            guard: num("guard", 5),
            runs: num("runs", 10),
            run: num("run", 1),
            disk: get("disk").as_deref() == Some("1"),
            stop_kill: get("stop").as_deref() == Some("KILL"),
        }
    }

    /// capbox's configuration: one file channel (a shipped slate, looped)
    /// so there is a mux runner, the supervisor on /dev/watchdog, and
    /// optionally the card manager (no pcscd in the VM: its loop still
    /// turns, retrying).
    fn config(&self, cards: bool) -> String {
        let reset_log = if self.disk {
            "/data/capbox-resets.json"
        } else {
            "/tmp/capbox-resets.json"
        };
        let mut s = format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\n\n\
             [supervisor]\nwatchdog = \"/dev/watchdog\"\nwatchdog_timeout_s = {}\n\
             stall_after_s = {}\nreboot_guard_resets = {}\nreset_log = \"{reset_log}\"\n\
             fault_injection = true\n\n\
             [[channel]]\nname = \"wd\"\n\n[[channel.source]]\nfile = \"/srv/slate.ts\"\n",
            self.timeout, self.stall, self.guard
        );
        if cards {
            s.push_str("\n[cards]\n");
        }
        s
    }
}

/// The watched process (capbox serve, or the stand-in), its stderr lines
/// echoed to the console (`capbox: …`, so the serial log has them even
/// when the VM resets) and kept.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn start(p: &Params, cards: bool) -> Result<Proc, String> {
        let mut cmd = if p.standin {
            let mut c = Command::new("/bin/busybox");
            c.args(["watchdog", "-F", "-T", &p.timeout.to_string(), "-t", "1"])
                .arg("/dev/watchdog");
            c
        } else {
            std::fs::write(CONFIG, p.config(cards)).map_err(|e| format!("{CONFIG}: {e}"))?;
            let mut c = Command::new("/bin/capbox");
            c.args(["serve", "--config", CONFIG]);
            c
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the watched process: {e}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().ok_or("no stderr pipe")?;
        let keep = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                println!("capbox: {l}");
                keep.lock().unwrap().push(l);
            }
        });
        Ok(Proc { child, lines })
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, sig: nix::sys::signal::Signal) -> Result<(), String> {
        nix::sys::signal::kill(self.pid(), sig).map_err(|e| format!("kill {sig}: {e}"))
    }

    /// The first log line containing `words`.
    fn line(&self, words: &str) -> Option<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().find(|l| l.contains(words)).cloned()
    }

    fn wait_line(&self, words: &str, limit: Duration) -> Result<String, String> {
        wait_for(limit, || {
            self.line(words)
                .ok_or_else(|| format!("no log line with '{words}'"))
        })
    }

    /// Waits for the process to end; its exit status in words and whether
    /// it exited by itself with 0.
    fn wait_exit(&mut self, limit: Duration) -> (String, bool) {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            match self.child.try_wait() {
                Ok(Some(st)) => return (format!("{st}"), st.code() == Some(0)),
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return (format!("wait: {e}"), false),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        (format!("still running after {limit:?}: killed"), false)
    }
}

/// Poll `f` every 100 ms until it says Ok or `limit` passes.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let t = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if t.elapsed() >= limit => return Err(format!("{e} (after {limit:?})")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// What the kernel says about the watchdog: `state` (active/inactive)
/// and `timeout` in /sys/class/watchdog/watchdog0.
fn kernel_says(what: &str) -> String {
    std::fs::read_to_string(format!("{SYSFS}/{what}"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("({SYSFS}/{what}: {e})"))
}

fn status() -> Result<serde_json::Value, String> {
    let body = capbox::cli::status::http_get(URL, "/status", Duration::from_secs(5))?;
    serde_json::from_str(&body).map_err(|e| format!("/status: {e}"))
}

/// `POST /control/fault?thread=NAME&kind=KIND`; the answer's code and body.
fn fault(thread: &str, kind: &str) -> Result<(u16, String), String> {
    let path = format!("/control/fault?thread={}&kind={kind}", percent(thread));
    let (code, _, body) =
        capbox::cli::status::http_request(URL, "POST", &path, None, Duration::from_secs(5))?;
    Ok((code, body))
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The supervisor's entry for heartbeat `name` in /status.
fn thread_of(v: &serde_json::Value, pred: impl Fn(&str) -> bool) -> Option<serde_json::Value> {
    v["supervisor"]["threads"]
        .as_array()?
        .iter()
        .find(|t| t["name"].as_str().is_some_and(&pred))
        .cloned()
}

/// Starts the watched process and checks that it armed the watchdog:
/// the kernel says active with the asked timeout; capbox also says so in
/// its log line and /status. None when it did not. Gives up early when
/// the process ends.
fn start_armed(s: &mut Suite, p: &Params, cards: bool, label: &str) -> Option<Proc> {
    let mut proc = match Proc::start(p, cards) {
        Ok(x) => x,
        Err(e) => {
            s.check(&format!("{label}: start"), false, e);
            return None;
        }
    };
    let t = Instant::now();
    let want_line = format!(
        "supervisor: watchdog /dev/watchdog armed, timeout {} s",
        p.timeout
    );
    let timeout = p.timeout.to_string();
    // (kernel state, kernel timeout, capbox's log line, /status watchdog)
    let mut last = (String::new(), String::new(), None, serde_json::Value::Null);
    let armed = loop {
        last.0 = kernel_says("state");
        last.1 = kernel_says("timeout");
        if !p.standin {
            last.2 = proc.line(&want_line);
            if let Ok(v) = status() {
                last.3 = v["supervisor"]["watchdog"].clone();
            }
        }
        let kernel_ok = last.0 == "active" && last.1 == timeout;
        let capbox_ok = p.standin || (last.2.is_some() && last.3["armed"] == true);
        if kernel_ok && capbox_ok {
            break true;
        }
        if let Ok(Some(st)) = proc.child.try_wait() {
            println!("guest: the watched process ended: {st}");
            break false;
        }
        if t.elapsed() > START_LIMIT {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let w = &last.3;
    let ok =
        armed && (p.standin || (w["device"] == "/dev/watchdog" && w["timeout_s"] == p.timeout));
    let mut detail = format!(
        "after {:.1} s: kernel: watchdog {}, timeout {} s (asked {})",
        t.elapsed().as_secs_f64(),
        last.0,
        last.1,
        p.timeout
    );
    if !p.standin {
        detail.push_str(&format!(
            "; log: {}; /status supervisor.watchdog: {w}",
            if last.2.is_some() {
                "armed"
            } else {
                "NO 'armed' line"
            }
        ));
    }
    s.check(&format!("{label}: armed"), ok, detail);
    if !ok {
        let _ = proc.signal(nix::sys::signal::Signal::SIGTERM);
        proc.wait_exit(Duration::from_secs(10));
        return None;
    }
    Some(proc)
}

/// After a signal that must reset the VM: wait well past the bar; still
/// being here is the failure.
fn expect_reset(s: &mut Suite, label: &str, within: u64) {
    std::thread::sleep(Duration::from_secs(within + 10));
    s.check(
        label,
        false,
        format!("the VM did not reset within {} s", within + 10),
    );
}

fn case_hang(s: &mut Suite, p: &Params) {
    let label = format!("{} hang run {}", p.dev, p.run);
    let Some(proc) = start_armed(s, p, false, &label) else {
        return;
    };
    if p.disk && !p.standin {
        // The reset log is on the data disk: every earlier hang run of
        // this sequence was a watchdog reset, and none trips the guard yet.
        let want = p.run - 1;
        let r = status().map(|v| v["supervisor"]["resets"].clone());
        s.check(
            &format!("{label}: resets in the last hour"),
            r.as_ref()
                .is_ok_and(|r| r["in_last_hour"] == want && r["guard_tripped"] == false),
            format!("want {want}, guard not tripped; /status supervisor.resets: {r:?}"),
        );
    }
    // A few feeds first: the hang starts from a fed watchdog.
    std::thread::sleep(Duration::from_secs(2));
    println!("WDVM-MARK hang: SIGSTOP to pid {}", proc.pid());
    if let Err(e) = proc.signal(nix::sys::signal::Signal::SIGSTOP) {
        s.check(&label, false, e);
        return;
    }
    expect_reset(s, &format!("{label}: reset after SIGSTOP"), p.timeout);
}

fn case_stall(s: &mut Suite, p: &Params) {
    let label = format!("{} mux stall", p.dev);
    let Some(proc) = start_armed(s, p, false, &label) else {
        return;
    };
    let mux = wait_for(START_LIMIT, || {
        thread_of(&status()?, |n| n.starts_with("mux "))
            .ok_or_else(|| "no 'mux …' heartbeat in /status supervisor.threads".to_string())
    });
    let name = match mux {
        Ok(t) => {
            let ok = t["policy"] == "reboot" && t["stalled"] == false;
            s.check(
                &format!("{label}: heartbeat listed"),
                ok,
                format!("{t} (want policy reboot, not stalled)"),
            );
            t["name"].as_str().unwrap_or_default().to_string()
        }
        Err(e) => {
            s.check(&format!("{label}: heartbeat listed"), false, e);
            return;
        }
    };
    std::thread::sleep(Duration::from_secs(1));
    println!("WDVM-MARK stall: fault on '{name}'");
    match fault(&name, "stall") {
        Ok((200, _)) => {}
        other => {
            s.check(
                &format!("{label}: fault injected"),
                false,
                format!("{other:?}"),
            );
            return;
        }
    }
    let words = format!("supervisor: thread '{name}' has not turned for");
    let said = proc.wait_line(&words, Duration::from_secs(p.stall + 5));
    let ok = said
        .as_ref()
        .is_ok_and(|l| l.contains("no longer feeding the watchdog"));
    s.check(
        &format!("{label}: supervisor stops feeding"),
        ok,
        said.unwrap_or_else(|e| e),
    );
    expect_reset(
        s,
        &format!("{label}: reset after the stall"),
        p.stall + p.timeout,
    );
}

/// The card manager's heartbeat stuck: a restart, never a reset.
fn case_cards(s: &mut Suite, p: &Params) {
    let label = format!("{} cards stall", p.dev);
    let Some(mut proc) = start_armed(s, p, true, &label) else {
        return;
    };
    let listed = wait_for(START_LIMIT, || {
        thread_of(&status()?, |n| n == "cards")
            .ok_or_else(|| "no 'cards' heartbeat in /status supervisor.threads".to_string())
    });
    match &listed {
        Ok(t) => s.check(
            &format!("{label}: heartbeat listed"),
            t["policy"] == "restart",
            format!("{t} (want policy restart)"),
        ),
        Err(e) => s.check(&format!("{label}: heartbeat listed"), false, e),
    }
    let feeds0 = status()
        .map(|v| v["supervisor"]["watchdog"]["feeds"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    let r = fault("cards", "stall");
    s.check(
        &format!("{label}: fault injected"),
        matches!(r, Ok((200, _))),
        format!("{r:?}"),
    );
    let wait = p.stall + p.timeout + 3;
    println!("WDVM-MARK cards: fault on 'cards', waiting {wait} s for no reset");
    std::thread::sleep(Duration::from_secs(wait));
    let said = proc.line("supervisor: thread 'cards' has not turned for");
    s.check(
        &format!("{label}: supervisor restarts it"),
        said.as_deref().is_some_and(|l| l.contains("restarting it")),
        said.unwrap_or_else(|| "no log line".into()),
    );
    match status() {
        Ok(v) => {
            let t = thread_of(&v, |n| n == "cards").unwrap_or_default();
            let w = &v["supervisor"]["watchdog"];
            s.check(
                &format!("{label}: /status shows the restart"),
                t["restarts"].as_u64().unwrap_or(0) >= 1 && t["stalled"] == false,
                format!("{t}"),
            );
            let feeds = w["feeds"].as_u64().unwrap_or(0);
            s.check(
                &format!("{label}: still armed and feeding, no reset over {wait} s"),
                w["armed"] == true && feeds > feeds0 && kernel_says("state") == "active",
                format!(
                    "armed {}, feeds {feeds0} -> {feeds}, kernel {}",
                    w["armed"],
                    kernel_says("state")
                ),
            );
        }
        Err(e) => s.check(&format!("{label}: /status after the stall"), false, e),
    }
    let _ = proc.signal(nix::sys::signal::Signal::SIGTERM);
    let (how, ok) = proc.wait_exit(Duration::from_secs(15));
    s.check(&format!("{label}: clean stop"), ok, how);
    // The next start must find the device free and the watchdog stopped.
    std::thread::sleep(Duration::from_secs(1));
}

fn case_clean(s: &mut Suite, p: &Params) {
    if !p.standin {
        case_cards(s, p);
    }
    let wait = p.timeout + 3;
    for k in 1..=p.runs {
        let label = format!("{} clean stop {k}/{}", p.dev, p.runs);
        let Some(mut proc) = start_armed(s, p, false, &label) else {
            continue;
        };
        std::thread::sleep(Duration::from_secs(1));
        let sig = if p.stop_kill {
            nix::sys::signal::Signal::SIGKILL
        } else {
            nix::sys::signal::Signal::SIGTERM
        };
        let _ = proc.signal(sig);
        let (how, exited0) = proc.wait_exit(Duration::from_secs(15));
        let state = kernel_says("state");
        let mut ok = state == "inactive" && (exited0 || p.standin);
        let mut detail = format!("{how}; kernel: watchdog {state}");
        if !p.standin {
            match proc.line("supervisor: watchdog disarmed (clean stop)") {
                Some(_) => detail.push_str("; log: disarmed (clean stop)"),
                None => {
                    ok = false;
                    detail.push_str("; no 'supervisor: watchdog disarmed (clean stop)' line");
                }
            }
        }
        s.check(&format!("{label}: magic close"), ok, detail);
        std::thread::sleep(Duration::from_secs(wait));
        // Still running: no reset. (A reset ends QEMU here; the host then
        // finds this run's line missing.)
        s.check(
            &format!("{label}: no reset"),
            true,
            format!("still up {wait} s after the stop"),
        );
    }
}

fn case_guard(s: &mut Suite, p: &Params) {
    let label = format!("{} reboot-loop guard", p.dev);
    let mut proc = match Proc::start(p, false) {
        Ok(x) => x,
        Err(e) => return s.check(&label, false, e),
    };
    let words = format!(
        "supervisor: {} watchdog resets in the last hour: not arming the watchdog (reboot-loop guard)",
        p.guard
    );
    // At least guard resets: the log line names the count it saw.
    let said = proc.wait_line(
        "watchdog resets in the last hour: not arming the watchdog (reboot-loop guard)",
        START_LIMIT,
    );
    s.check(
        &format!("{label}: log"),
        said.is_ok(),
        said.map(|l| format!("{l} (want '{words}')"))
            .unwrap_or_else(|e| e),
    );
    let st = wait_for(START_LIMIT, || {
        let v = status()?;
        if v["supervisor"]["resets"]["guard_tripped"] == true {
            Ok(v["supervisor"].clone())
        } else {
            Err(format!("/status supervisor: {}", v["supervisor"]))
        }
    });
    match &st {
        Ok(sv) => {
            let r = &sv["resets"];
            let ok = sv["watchdog"]["armed"] == false
                && r["in_last_hour"].as_u64().unwrap_or(0) >= p.guard
                && r["last_cause"].as_str().is_some_and(|c| !c.is_empty());
            s.check(
                &format!("{label}: /status guard_tripped"),
                ok,
                format!(
                    "armed {}, disarmed_reason {}, last_cause {}, in_last_hour {}, last_events {}",
                    sv["watchdog"]["armed"],
                    sv["watchdog"]["disarmed_reason"],
                    r["last_cause"],
                    r["in_last_hour"],
                    r["last_events"]
                ),
            );
        }
        Err(e) => s.check(&format!("{label}: /status guard_tripped"), false, e),
    }
    s.check(
        &format!("{label}: kernel watchdog not started"),
        kernel_says("state") == "inactive",
        format!("kernel: {}", kernel_says("state")),
    );
    let cause = st
        .as_ref()
        .ok()
        .and_then(|sv| sv["resets"]["last_cause"].as_str().map(str::to_string))
        .unwrap_or_default();
    let out = Command::new("/bin/capbox")
        .args(["status", "--url", URL])
        .output();
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            for l in text.lines() {
                println!("capbox status: {l}");
            }
            let low = text.to_lowercase();
            s.check(
                &format!("{label}: capbox status shows it"),
                o.status.success()
                    && low.contains("guard")
                    && !cause.is_empty()
                    && text.contains(&cause),
                format!("want the guard and the last cause '{cause}'"),
            );
        }
        Err(e) => s.check(&format!("{label}: capbox status"), false, e),
    }
    let wait = p.timeout + 3;
    std::thread::sleep(Duration::from_secs(wait));
    s.check(
        &format!("{label}: no reset"),
        true,
        format!("still up {wait} s after the start"),
    );
    let _ = proc.signal(nix::sys::signal::Signal::SIGTERM);
    let (how, ok) = proc.wait_exit(Duration::from_secs(15));
    s.check(&format!("{label}: clean stop"), ok, how);
}

/// One QEMU without -no-reboot (i6300esb): boot 1 arms and hangs, the
/// watchdog resets the VM in place, boot 2 must find the driver's
/// bootstatus (the card's "timed out" flag survives a reset in QEMU, as on
/// the chipset) and capbox must name that cause. The boot number is kept
/// on the data disk by the guest itself.
fn case_reboot(s: &mut Suite, p: &Params) {
    use std::io::Write;
    const COUNTER: &str = "/data/wdvm-boots";
    let n: u64 = std::fs::read_to_string(COUNTER)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
        + 1;
    let saved = std::fs::File::create(COUNTER).and_then(|mut f| {
        f.write_all(format!("{n}\n").as_bytes())
            .and_then(|_| f.sync_all())
    });
    if let Err(e) = saved {
        return s.check("reboot: boot counter", false, format!("{COUNTER}: {e}"));
    }
    let label = format!("{} in-place reboot, boot {n}", p.dev);
    println!("guest: {label}");
    match n {
        1 => {
            let Some(proc) = start_armed(s, p, false, &label) else {
                return;
            };
            std::thread::sleep(Duration::from_secs(2));
            println!("WDVM-MARK reboot: SIGSTOP to pid {}", proc.pid());
            let _ = proc.signal(nix::sys::signal::Signal::SIGSTOP);
            expect_reset(s, &format!("{label}: reset after SIGSTOP"), p.timeout);
        }
        2 => {
            let boot = kernel_says("bootstatus");
            s.check(
                &format!("{label}: the kernel's bootstatus"),
                boot.parse::<u32>().is_ok_and(|b| b & 0x20 != 0),
                format!("{boot} (want WDIOF_CARDRESET 0x20 set)"),
            );
            let Some(mut proc) = start_armed(s, p, false, &label) else {
                return;
            };
            let r = status().map(|v| v["supervisor"]["resets"].clone());
            s.check(
                &format!("{label}: capbox names the cause"),
                r.as_ref().is_ok_and(|r| {
                    r["in_last_hour"] == 1
                        && r["last_cause"]
                            .as_str()
                            .is_some_and(|c| c.contains("the card reported it"))
                }),
                format!("/status supervisor.resets: {r:?}"),
            );
            let _ = proc.signal(nix::sys::signal::Signal::SIGTERM);
            let (how, ok) = proc.wait_exit(Duration::from_secs(15));
            s.check(&format!("{label}: clean stop"), ok, how);
        }
        _ => s.check(
            &label,
            false,
            "more boots than the case makes: the VM kept resetting",
        ),
    }
}

fn main() {
    // The same binary is capbox itself (/bin/capbox links to it).
    let argv0 = std::env::args().next().unwrap_or_default();
    if argv0.rsplit('/').next() == Some("capbox") {
        std::process::exit(capbox::cli::main());
    }
    let p = Params::from_cmdline();
    let mut s = Suite::default();
    println!(
        "guest: case {} on {} ({}), identity '{}', bootstatus {}",
        p.case,
        p.dev,
        if p.standin {
            "stand-in: busybox watchdog"
        } else {
            "capbox serve"
        },
        kernel_says("identity"),
        kernel_says("bootstatus")
    );
    match p.case.as_str() {
        "hang" => case_hang(&mut s, &p),
        "stall" => case_stall(&mut s, &p),
        "clean" => case_clean(&mut s, &p),
        "guard" => case_guard(&mut s, &p),
        "reboot" => case_reboot(&mut s, &p),
        other => s.check("case", false, format!("unknown case '{other}'")),
    }
    println!("guest: {} passed, {} failed", s.passes, s.failures);
    std::process::exit(s.failures.min(127) as i32);
}
