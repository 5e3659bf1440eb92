//! The technician's console as a technician meets it: a terminal of 80x24,
//! TERM=vt100 and no locale (busybox getty on ttyS0), driven through tmux
//! (send-keys, capture-pane) against a `capbox serve` this test starts with
//! 14 channels (12 files; one on an absent tuner; one failing over from an
//! absent tuner to a file), two adapters whose devices are absent, and
//! [cards] without pcscd. Checks that no line is wider than 80 columns
//! (capture-pane -J joins what the terminal wrapped), that each screen shows
//! what it should (`capbox status` on one screen with the command line above
//! and the prompt below, `capbox signal` a line a second until Ctrl-C gives
//! the prompt back, `capbox logs` and `logs -f`, `capbox cards` in words,
//! `capbox pin` refusing and pinning), plain ASCII without colour on the
//! vt100, colour on an xterm only without NO_COLOR.
//!
//! tmux is installed with apt-get when missing (as root); without it the
//! test says SKIPPED. The same checks on the appliance's serial console
//! (QEMU `-serial mon:stdio` in a tmux pane, busybox getty on ttyS0, the
//! vidtv tuner locked): `hw-tests/run-console-serial.sh`.

mod e2e_common;
use e2e_common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// tmux present, or installed; false (and a loud line) when it cannot be.
fn ensure_tmux() -> bool {
    let ok = || {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok() {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !apt(&["install", "-y", "-q", "tmux"]) {
            apt(&["update", "-q"]);
            apt(&["install", "-y", "-q", "tmux"]);
        }
    }
    if !ok() {
        eprintln!("\n!!! SKIPPED: tmux missing and not installable; apt-get install tmux !!!\n");
    }
    ok()
}

/// One tmux server of this test (its own socket), killed on drop.
struct Tmux {
    sock: String,
    /// The session in use ("con0", "con1", …): each fresh terminal is a
    /// new session, the old one killed after it exists (killing the last
    /// session first would stop the tmux server under the next one).
    session: std::cell::RefCell<String>,
    next: std::cell::Cell<u32>,
    bin_dir: std::path::PathBuf,
    home: std::path::PathBuf,
}

impl Tmux {
    fn new(dir: &TempDir) -> Tmux {
        let bin_dir = dir.join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::os::unix::fs::symlink(BIN, bin_dir.join("capbox")).unwrap();
        Tmux {
            sock: format!("capbox-console-{}", std::process::id()),
            session: std::cell::RefCell::new(String::new()),
            next: std::cell::Cell::new(0),
            bin_dir,
            home: dir.path().to_path_buf(),
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.sock, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A fresh 80x24 terminal running sh with `env` (TERM, LANG, …) and the
    /// prompt "$ ".
    fn fresh(&self, env: &[&str]) {
        let old = self.session.borrow().clone();
        let name = format!("con{}", self.next.get());
        self.next.set(self.next.get() + 1);
        let path = format!(
            "PATH={}:/usr/bin:/bin:/usr/sbin:/sbin",
            self.bin_dir.display()
        );
        let home = format!("HOME={}", self.home.display());
        let mut cmd = vec!["env", "-i", &path, &home, "PS1=$ "];
        cmd.extend_from_slice(env);
        cmd.push("/bin/sh");
        let line = cmd
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        self.tmux(&[
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            &name,
            &line,
        ]);
        self.tmux(&["set-option", "-t", &name, "history-limit", "5000"]);
        if !old.is_empty() {
            self.tmux(&["kill-session", "-t", &old]);
        }
        *self.session.borrow_mut() = name;
        self.wait_screen("a shell prompt", Duration::from_secs(10), |s| {
            s.trim_end().ends_with('$')
        });
    }

    /// The visible screen, wrapped lines joined (-J), trailing spaces off.
    fn screen(&self) -> String {
        self.capture(&["-p", "-J"])
    }

    /// Everything since the session started (history too).
    fn everything(&self) -> String {
        self.capture(&["-p", "-J", "-S", "-"])
    }

    /// The visible screen with its colour sequences (-e).
    fn screen_escapes(&self) -> String {
        let name = self.session.borrow().clone();
        self.tmux(&["capture-pane", "-t", &name, "-p", "-e"])
    }

    fn capture(&self, flags: &[&str]) -> String {
        let name = self.session.borrow().clone();
        let mut args = vec!["capture-pane", "-t", name.as_str()];
        args.extend_from_slice(flags);
        let text = self.tmux(&args);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        let mut s = lines.join("\n");
        while s.ends_with('\n') {
            s.pop();
        }
        s
    }

    fn type_line(&self, line: &str) {
        let name = self.session.borrow().clone();
        self.tmux(&["send-keys", "-t", &name, "-l", line]);
        self.tmux(&["send-keys", "-t", &name, "Enter"]);
    }

    /// Ctrl-C at the terminal. The tty echoes "^C" when it sees the key
    /// while the command's handler is already writing its last words, so
    /// the echo may land before those words or in front of the next prompt:
    /// [`ends_with_prompt`] takes both.
    fn ctrl_c(&self) {
        let name = self.session.borrow().clone();
        self.tmux(&["send-keys", "-t", &name, "C-c"]);
    }

    fn wait_screen(&self, what: &str, t: Duration, f: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            assert!(
                start.elapsed() < t,
                "no {what} after {t:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Lines that are a prompt ("$", or "$ " and a command typed on it).
    fn prompts(&self) -> usize {
        self.everything()
            .lines()
            .filter(|l| *l == "$" || l.starts_with("$ "))
            .count()
    }

    /// Type `cmd` at the prompt and wait for the next prompt: the screen
    /// then.
    fn run(&self, cmd: &str, t: Duration) -> String {
        let before = self.prompts();
        self.type_line(cmd);
        let start = Instant::now();
        loop {
            let all = self.everything();
            let n = all
                .lines()
                .filter(|l| *l == "$" || l.starts_with("$ "))
                .count();
            if n > before && all.ends_with("\n$") {
                return self.screen();
            }
            assert!(
                start.elapsed() < t,
                "no prompt after `{cmd}` in {t:?}; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// Every line at most 80 columns, and (vt100) plain ASCII.
fn assert_fits(what: &str, text: &str, ascii: bool) {
    for l in text.lines() {
        assert!(
            l.chars().count() <= 80,
            "{what}: a line of {} columns:\n{l}\n--- the whole capture:\n{text}",
            l.chars().count()
        );
        if ascii {
            assert!(
                l.chars().all(|c| c.is_ascii() && !c.is_ascii_control()),
                "{what}: not plain ASCII on a vt100:\n{l:?}"
            );
        }
    }
}

/// The part of `screen` from the line typing `cmd` on.
fn after<'a>(screen: &'a str, cmd: &str) -> &'a str {
    let echo = format!("$ {cmd}");
    match screen.rfind(&echo) {
        Some(i) => &screen[i..],
        None => screen,
    }
}

fn config(dir: &TempDir) -> String {
    let m = sample_mux();
    let mut c = server_toml();
    c += "[cards]\n\n";
    c += "[[adapter]]\nname = \"ter1\"\ndevice = \"adapter97\"\n\n";
    c +=
        "[[adapter]]\nname = \"sat1\"\ndevice = \"usb-dead:beef-0000001\"\nlnb = \"universal\"\n\n";
    c += "[[channel]]\nname = \"beethoven\"\n[[channel.source]]\nadapter = \"ter1\"\n\
          tune = \"dvbt 474000000 8MHz\"\nprogram = 0x880\n\n";
    c += &format!(
        "[[channel]]\nname = \"sat-news\"\n[[channel.source]]\nadapter = \"sat1\"\n\
         tune = \"dvbs2 11362000 V 22000000 8psk 3/4 0.35\"\nprogram = 0x1f4\n\
         [[channel.source]]\nfile = \"{}\"\nprogram = 1\nloop = true\n\n",
        m.display()
    );
    let names = ["news", "sport", "music"];
    for i in 0..12u16 {
        c += &channel_toml(
            &format!("file-{}-{i}", names[usize::from(i % 3)]),
            &m,
            i % 3 + 1,
            &[],
        );
    }
    let _ = dir;
    c
}

#[test]
fn the_console_commands_at_80x24_on_a_vt100() {
    if !ensure_tmux() {
        return;
    }
    let dir = TempDir::new("console-tmux");
    let cfg = dir.join("capbox.toml");
    std::fs::write(&cfg, config(&dir)).unwrap();
    let srv = Server::start_in(TempDir::new("console-tmux-srv"), cfg.clone());
    srv.wait_up(&["file-news-0", "file-music-11", "sat-news"]);
    let url = format!("http://{}", srv.addr);
    let t = Tmux::new(&dir);
    let secs = Duration::from_secs;

    // ---- capbox status: one screen at 80x24.
    t.fresh(&["TERM=vt100"]);
    let cmd = format!("capbox status --url {url}");
    let s = t.run(&cmd, secs(20));
    println!("--- capbox status at 80x24, TERM=vt100:\n{s}");
    assert_fits("capbox status", &s, true);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines[0],
        format!("$ {cmd}"),
        "the command line scrolled away: status is more than a screen\n{s}"
    );
    assert_eq!(lines.last(), Some(&"$"), "{s}");
    assert!(lines.len() <= 24, "{s}");
    assert!(
        lines[1].starts_with("capbox ") && lines[1].contains("14 channels"),
        "{s}"
    );
    for want in [
        "\nADAPTER ",
        "\nter1 ",
        "not tuned: adapter97/frontend0",
        "\nsat1 ",
        "\nCHANNEL ",
        // The VERDICT column (issue 14) sits between STATE and ON AIR.
        "\nbeethoven      down  ",
        " ter1 dvbt 474000000 ",
        "\nsat-news       up    ",
        " 1 file ~",
        " more channels, all up on their first source: capbox status channels",
        "cards: no card reader: pcscd",
        "\nwatchdog off: no watchdog configured",
        "\nLAST EVENTS (",
        "\nmore: capbox status --all",
    ] {
        assert!(s.contains(want), "capbox status: no {want:?}\n{s}");
    }
    // No colour on a vt100.
    let e = t.screen_escapes();
    assert!(!e.contains('\x1b'), "escape sequences on a vt100:\n{e:?}");

    // ---- capbox status --all scrolls, and stays in 80 columns.
    let cmd = format!("capbox status --all --url {url}");
    t.run(&cmd, secs(20));
    let all = t.everything();
    let all = after(&all, &cmd);
    assert_fits("capbox status --all", all, true);
    assert!(
        all.contains("\nfile-music-11 ") && all.contains("  on air: source 1"),
        "{all}"
    );

    // ---- capbox status channels: the section whole.
    t.fresh(&["TERM=vt100"]);
    let cmd = format!("capbox status channels --url {url}");
    t.run(&cmd, secs(20));
    let all = t.everything();
    let ch = after(&all, &cmd);
    assert_fits("capbox status channels", ch, true);
    assert!(
        ch.contains("\nfile-music-11 ") && !ch.contains("watchdog"),
        "{ch}"
    );

    // ---- capbox signal: a line a second, Ctrl-C gives the prompt back.
    t.fresh(&["TERM=vt100"]);
    let cmd = format!("capbox signal ter1 --url {url}");
    t.type_line(&cmd);
    let s = t.wait_screen("3 signal lines", secs(15), |s| {
        after(s, &cmd).matches("NO LOCK").count() >= 3
    });
    let started = Instant::now();
    let s = after(&s, &cmd).to_string();
    assert!(s.contains("ter1 (from the capbox at "), "{s}");
    assert!(s.contains("Ctrl-C stops"), "{s}");
    assert!(s.contains("not locked: ter1 (adapter97)"), "{s}");
    // Let more come, then count: about one a second (generous bounds).
    std::thread::sleep(secs(3));
    let s = t.screen();
    let n = after(&s, &cmd).matches("NO LOCK").count();
    let el = started.elapsed().as_secs_f64() + 3.0;
    assert!(
        n >= 4 && (n as f64) <= el + 2.0,
        "{n} lines in about {el:.1} s:\n{s}"
    );
    let clocks: Vec<&str> = after(&s, &cmd)
        .lines()
        .filter(|l| l.contains("NO LOCK"))
        .map(|l| &l[..8])
        .collect();
    let mut distinct = clocks.clone();
    distinct.dedup();
    assert!(
        distinct.len() + 1 >= clocks.len(),
        "not a line a second: {clocks:?}"
    );
    t.ctrl_c();
    let s = t.wait_screen("the prompt after Ctrl-C", secs(10), |s| {
        ends_with_prompt(s, "") && s.contains("stopped: ")
    });
    println!("--- capbox signal, Ctrl-C:\n{s}");
    assert_fits("capbox signal", &s, true);
    assert!(s.contains("locked in 0, no C/N reported"), "{s}");

    // ---- capbox logs: the events in words.
    t.fresh(&["TERM=vt100"]);
    let cmd = format!("capbox logs --url {url}");
    t.run(&cmd, secs(20));
    let all = t.everything();
    let s = after(&all, &cmd);
    assert_fits("capbox logs", s, true);
    assert!(s.contains("This run, since "), "{s}");
    assert!(
        s.contains(" warning: channel 'beethoven': down: source: ter1"),
        "{s}"
    );

    // ---- capbox logs -f: a new event shows up; Ctrl-C stops.
    t.fresh(&["TERM=vt100"]);
    let cmd = format!("capbox logs -f -n 2 --url {url}");
    t.type_line(&cmd);
    t.wait_screen("following", secs(10), |s| {
        s.contains("-- following; Ctrl-C stops --")
    });
    // A config that does not load, then SIGHUP: capbox logs errors.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.clone() + "\n[[channel]]\nname = 7\n").unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &srv.pid().to_string()])
        .status();
    let s = t.wait_screen("the refused reload in logs -f", secs(15), |s| {
        s.contains("error: reload refused")
    });
    std::fs::write(&cfg, good).unwrap();
    t.ctrl_c();
    let s2 = t.wait_screen("the prompt after Ctrl-C", secs(10), |s| {
        ends_with_prompt(s, "\n-- stopped --")
    });
    println!("--- capbox logs -f:\n{s2}");
    assert_fits("capbox logs -f", &s, true);
    assert_fits("capbox logs -f", &s2, true);

    // ---- capbox cards: no pcscd, in words.
    t.fresh(&["TERM=vt100"]);
    let cmd = format!("capbox cards --url {url}");
    let s = t.run(&cmd, secs(20));
    let s = after(&s, &cmd);
    assert_fits("capbox cards", s, true);
    assert!(
        s.contains("no card readers: pcscd, the PC/SC daemon, is not running")
            || s.contains("READER"),
        "{s}"
    );

    // ---- capbox pin: refuses in words, then pins.
    let cmd = format!("capbox pin file-news-0 3 --url {url}");
    let s = t.run(&cmd, secs(20));
    let s = after(&s, &cmd).to_string();
    assert_fits("capbox pin (refused)", &s, true);
    assert!(s.contains("no source '3' in this channel"), "{s}");
    let cmd = format!("capbox pin sat-news 1 --for 1m --url {url}");
    let s = t.run(&cmd, secs(20));
    let s = after(&s, &cmd).to_string();
    assert_fits("capbox pin", &s, true);
    assert!(s.contains("channel 'sat-news': pinned to source 1"), "{s}");
    let cmd = format!("capbox pin sat-news auto --url {url}");
    let s = t.run(&cmd, secs(20));
    assert!(after(&s, &cmd).contains("unpinned"), "{s}");

    // ---- capbox scan on an absent adapter: why, in 80 columns.
    let init = dir.join("de-Berlin");
    std::fs::write(
        &init,
        "[CHANNEL]\n\tDELIVERY_SYSTEM = DVBT\n\tFREQUENCY = 474000000\n\tBANDWIDTH_HZ = 8000000\n",
    )
    .unwrap();
    let cmd = format!("capbox scan adapter97 {}", init.display());
    t.fresh(&["TERM=vt100"]);
    let s = t.run(&cmd, secs(30));
    let s = after(&s, &cmd).to_string();
    assert_fits("capbox scan", &s, true);
    assert!(
        s.contains("capbox scan: ") && s.contains("adapter97"),
        "{s}"
    );

    // ---- Colour: an xterm gets it, NO_COLOR and a vt100 do not.
    t.fresh(&["TERM=xterm-256color", "LANG=C.UTF-8"]);
    let cmd = format!("capbox status --url {url}");
    t.run(&cmd, secs(20));
    let e = t.screen_escapes();
    assert!(e.contains("\x1b[31m"), "no colour on an xterm:\n{e:?}");
    assert_fits("capbox status (xterm)", &t.screen(), false);
    t.fresh(&["TERM=xterm-256color", "LANG=C.UTF-8", "NO_COLOR=1"]);
    t.run(&cmd, secs(20));
    let e = t.screen_escapes();
    assert!(!e.contains("\x1b[31m"), "colour despite NO_COLOR:\n{e:?}");
}

/// The screen ends with `last` (if not empty) on its own line, then a bare
/// prompt, with or without the tty's "^C" echo in front of the prompt.
fn ends_with_prompt(s: &str, last: &str) -> bool {
    let s = s.trim_end();
    ["\n$", "\n^C$"]
        .iter()
        .any(|p| s.ends_with(&format!("{last}{p}")))
}
