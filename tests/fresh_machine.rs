//! The README's demo on a fresh machine: capbox must build and serve with
//! only a Rust toolchain and Debian 12's default packages, which have no
//! libpcsclite-dev (and often no libpcsclite1). The test builds capbox in a
//! private mount namespace (`unshare -m`) where every file of
//! libpcsclite-dev and libpcsclite1 (`.so`, `.pc`, the PCSC headers) is
//! covered by an empty file or directory, then, in the same kind of
//! namespace:
//! - runs `capbox demo` and reads the start of a stream;
//! - runs `capbox check-config` on a config with `[cards]`, and `capbox
//!   cards --local`: both must fail saying what to install;
//! - runs `capbox serve` on that config: the file channel still streams and
//!   the log says what to install.
//!
//! The build is a real one (its own target directory under target/, kept
//! between runs so a warm run only relinks). Needs root (unshare -m, mount
//! --bind): fails with that message when not root rather than pass.

mod e2e_common;
use e2e_common::*;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HINT: &str = "apt-get install libpcsclite1 pcscd";

/// The files and directories of pcsc-lite's packages a fresh machine does
/// not have: shared objects, pkg-config files, headers.
fn hidden_paths() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let out = Command::new("dpkg")
        .args(["-L", "libpcsclite-dev", "libpcsclite1"])
        .output()
        .expect("dpkg -L (is this Debian?)");
    // dpkg exits 1 when one package is not installed: the other's list
    // still comes, and what is not installed needs no hiding.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for l in text.lines().map(Path::new) {
        let name = l.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if l.ends_with("include/PCSC") && l.is_dir() {
            dirs.push(l.to_path_buf());
        } else if (name.contains(".so") || name.ends_with(".pc")) && l.is_file() {
            files.push(l.to_path_buf());
        }
    }
    (files, dirs)
}

/// A command run inside a new mount namespace where `hidden_paths` are
/// covered; the script checks the covering took before running `cmd`.
struct Namespace {
    dir: TempDir,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Namespace {
    fn new() -> Namespace {
        let dir = TempDir::new("fresh-machine");
        std::fs::write(dir.join("empty"), b"").unwrap();
        std::fs::create_dir_all(dir.join("emptydir")).unwrap();
        let (files, dirs) = hidden_paths();
        let mut sh = String::from("set -eu\n");
        for f in &files {
            sh += &format!(
                "mount --bind '{e}' '{f}'\n[ ! -s '{f}' ] || {{ echo 'still visible: {f}' >&2; exit 99; }}\n",
                e = dir.join("empty").display(),
                f = f.display()
            );
        }
        for d in &dirs {
            sh += &format!(
                "mount --bind '{e}' '{d}'\n",
                e = dir.join("emptydir").display(),
                d = d.display()
            );
        }
        sh += "if command -v pkg-config >/dev/null && pkg-config --exists libpcsclite 2>/dev/null; then\n\
               \x20   echo 'pkg-config still finds libpcsclite' >&2; exit 99\nfi\n\
               exec \"$@\"\n";
        std::fs::write(dir.join("hide.sh"), sh).unwrap();
        Namespace { dir, files, dirs }
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh"])
            .arg(self.dir.join("hide.sh"))
            .arg(program);
        c
    }
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A child whose stderr lines are collected; killed on drop.
struct Running {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn spawn(mut c: Command) -> Running {
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn under unshare");
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Running { child, log }
    }

    fn text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait until it listens on `addr` (or dies, or 60 s pass).
    fn wait_listening(&mut self, addr: SocketAddr, what: &str) {
        let up = wait_until(Duration::from_secs(60), || {
            std::net::TcpStream::connect(addr).is_ok()
                || matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{what} exited ({st}) before listening:\n{}", self.text());
        }
        assert!(
            up,
            "{what} not listening on {addr} after 60 s:\n{}",
            self.text()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // unshare execs sh, which execs capbox: this pid is capbox's.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_ts(bytes: &[u8], what: &str) {
    assert!(
        bytes.chunks(TS).all(|p| p[0] == 0x47),
        "{what}: not 188-byte TS packets"
    );
}

#[test]
fn demo_builds_and_serves_without_libpcsclite() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "tests/fresh_machine.rs needs root (unshare -m and mount --bind hide \
         libpcsclite in a private mount namespace); CI runs as root: run it \
         as root, e.g. `sudo -E cargo test --test fresh_machine`"
    );
    let ns = Namespace::new();
    assert!(
        !ns.files.is_empty() || !ns.dirs.is_empty(),
        "nothing of libpcsclite1/libpcsclite-dev is installed: the test would \
         show nothing (scripts/test installs libpcsclite-dev)"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Its own target dir: a real build with nothing of the outer one, kept
    // between runs.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fresh-machine");
    let cargo = PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    let out = ns
        .command(&cargo)
        .args(["build", "--locked", "--offline", "--bin", "capbox"])
        .current_dir(repo)
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .output()
        .expect("unshare (util-linux)");
    assert!(
        out.status.success(),
        "cargo build with libpcsclite hidden ({} files, {} dirs) failed ({}):\n{}",
        ns.files.len(),
        ns.dirs.len(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target.join("debug/capbox");

    // 1. The demo serves.
    let addr = free_addr();
    let mut c = ns.command(&bin);
    c.args(["demo", "--listen", &addr.to_string(), "--samples"])
        .arg(repo.join("samples"))
        .current_dir(repo);
    let mut demo = Running::spawn(c);
    demo.wait_listening(addr, "capbox demo");
    let bytes = fetch_bytes(addr, "/stream/news", 100 * TS);
    assert_ts(&bytes, "demo /stream/news");
    drop(demo);

    // 2. check-config on a config with cards names what to install.
    let addr = free_addr();
    let cfg = format!("[server]\nlisten = \"{addr}\"\n\n")
        + &channel_toml("news", &sample_mux(), 1, &[])
        + "[cards]\necm_timeout_ms = 1000\n";
    let cfg_path = ns.dir.join("cards.toml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let out = ns
        .command(&bin)
        .arg("check-config")
        .arg("--config")
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check-config with [cards]:\n{text}"
    );
    assert!(
        text.contains(HINT) && text.contains("cards"),
        "check-config does not say what to install (and where):\n{text}"
    );

    // 3. `capbox cards --local` (asks pcscd directly) says it too.
    let out = ns
        .command(&bin)
        .args(["cards", "--local"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "cards --local:\n{text}");
    assert!(
        text.contains(HINT),
        "cards --local does not say '{HINT}':\n{text}"
    );

    // 4. serve on it: the channel streams, the log says what to install.
    let mut c = ns.command(&bin);
    c.arg("serve").arg("--config").arg(&cfg_path);
    let mut serve = Running::spawn(c);
    serve.wait_listening(addr, "capbox serve with [cards]");
    let bytes = fetch_bytes(addr, "/stream/news", 100 * TS);
    assert_ts(&bytes, "serve /stream/news with [cards]");
    let said = wait_until(Duration::from_secs(30), || serve.text().contains(HINT));
    assert!(said, "serve's log does not say '{HINT}':\n{}", serve.text());
}
