//! A private pcscd with Debian's vpcd driver and capbox's virtual testca
//! card (examples/testcard.rs), for the card tests: see tests/cards_pcsc.rs
//! for why it runs in its own mount namespace.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const VPCD: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
pub const K0: [u8; 16] = *b"capbox-testca-k0";
pub const K1: [u8; 16] = *b"capbox-testca-k1";
pub const ADDR: u32 = 0xC0FF_EE01;
pub const R0: &str = "Virtual PCD 00 00";
pub const R1: &str = "Virtual PCD 00 01";

pub struct Rig {
    pub dir: PathBuf,
    pub port: u16,
    pub pcscd: Option<Child>,
    pub cards: Vec<Child>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for c in self.cards.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut p) = self.pcscd.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if std::thread::panicking() {
            // Keep pcscd.log for the post-mortem.
            eprintln!("cards_pcsc: kept {} (pcscd.log)", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn hexs(k: &[u8; 16]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// Two consecutive free TCP ports (vpcd listens on port and port + 1).
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65535 && std::net::TcpListener::bind(("0.0.0.0", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free ports");
}

pub fn testcard_exe() -> PathBuf {
    // `cargo test --test cards_pcsc` does not build examples: build it.
    let st = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--example",
            "testcard",
            "--manifest-path",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .status()
        .expect("run cargo");
    assert!(st.success(), "cargo build --example testcard failed");
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/testcard");
    assert!(p.exists(), "{} missing", p.display());
    p
}

impl Rig {
    pub fn start_pcscd(&mut self) {
        // pcscd makes /run/pcscd itself; /run is this test's directory in
        // pcscd's mount namespace.
        let run = self.dir.join("run/pcscd");
        // A killed pcscd leaves these behind and the next one refuses to
        // start ("Another pcscd seems to be running").
        let _ = std::fs::remove_file(run.join("pcscd.comm"));
        let _ = std::fs::remove_file(run.join("pcscd.pid"));
        let script = format!(
            "mount --bind '{}' /run && exec pcscd -f -d -c '{}'",
            self.dir.join("run").display(),
            self.dir.join("conf").display()
        );
        let log = std::fs::File::create(self.dir.join("pcscd.log")).unwrap();
        // Root: a mount namespace; anyone else: a user namespace too
        // (root inside it may mount).
        let root = unsafe { libc::geteuid() } == 0;
        let ns: &[&str] = if root { &["-m"] } else { &["-r", "-m"] };
        let child = Command::new("unshare")
            .args(ns)
            .args(["--propagation", "private", "sh", "-c", &script])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn unshare/pcscd");
        self.pcscd = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while !run.join("pcscd.comm").exists() {
            assert!(
                Instant::now() < until,
                "pcscd did not start: {}",
                std::fs::read_to_string(self.dir.join("pcscd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill_pcscd(&mut self) {
        if let Some(mut p) = self.pcscd.take() {
            p.kill().unwrap();
            p.wait().unwrap();
        }
    }

    /// Insert a card in reader `slot` (0 or 1).
    pub fn card(&mut self, slot: u16, extra: &[&str]) -> usize {
        let exe = testcard_exe();
        let child = Command::new(exe)
            .args(["--port", &(self.port + slot).to_string()])
            .args(["--key", &hexs(&K0), "--key", &hexs(&K1)])
            .args(["--address", &format!("{ADDR:08X}")])
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.cards.push(child);
        self.cards.len() - 1
    }

    pub fn pull(&mut self, i: usize) {
        let _ = self.cards[i].kill();
        let _ = self.cards[i].wait();
    }
}

/// A rig with pcscd started and PCSCLITE_CSOCK_NAME pointing at it (for
/// this process and the processes it starts); None (skipped, said loudly)
/// when pcscd or vpcd is not installed.
pub fn rig(tag: &str) -> Option<Rig> {
    for (what, path) in [("pcscd", "/usr/sbin/pcscd"), ("vsmartcard-vpcd", VPCD)] {
        if !Path::new(path).exists() {
            eprintln!("\n\n*** SKIPPED {tag}: {what} is not installed ({path}); apt-get install -y pcscd vsmartcard-vpcd ***\n");
            return None;
        }
    }
    let dir = std::env::temp_dir().join(format!("capbox-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    let port = free_port_pair();
    std::fs::write(
        dir.join("conf/vpcd"),
        format!(
            "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{port:04X}\nLIBPATH {VPCD}\nCHANNELID 0x{port:04X}\n"
        ),
    )
    .unwrap();
    // Before the first PC/SC call: libpcsclite reads it once.
    std::env::set_var("PCSCLITE_CSOCK_NAME", dir.join("run/pcscd/pcscd.comm"));
    let mut rig = Rig {
        dir,
        port,
        pcscd: None,
        cards: Vec::new(),
    };
    rig.start_pcscd();
    Some(rig)
}
