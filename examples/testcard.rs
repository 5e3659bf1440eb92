//! `testcard`: a virtual smart card of capbox's test CA system (`testca`,
//! specified in `src/ca/testca.rs`) for Debian's `vsmartcard-vpcd`.
//!
//! The card is the TCP client of vpcd (`Virtual PCD 00 00` listens on
//! 35963, the next reader on 35964). Frames are a 2-byte big-endian length
//! and a payload; a 1-byte payload is a control byte (0 power off, 1 power
//! on, 2 reset, 4 get ATR: only the ATR is answered), a longer one is a
//! C-APDU answered with an R-APDU. Closing the socket is pulling the card.
//!
//! Faults for tests: `--slow-ms` delays every answer; `--die-after N`
//! answers N APDUs and exits on the next one (the card is pulled mid-APDU);
//! `--mute-after N` answers N APDUs, then holds each further one for
//! `--mute-ms` and answers 6F 00 (a card that hung: a reader would time
//! out) until vpcd resets or powers the card off.
//!
//! Exits 0 when vpcd closes the connection.

use capbox::ca::testca;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const HELP: &str = "\
usage: testcard [--host 127.0.0.1] [--port 35963] --key HEX32 [--key HEX32 ...]
                [--address HEX8] [--caid HEX4] [--entitled-until DAY]
                [--slow-ms N] [--die-after N] [--mute-after N] [--mute-ms N]

A virtual testca card for vsmartcard-vpcd. --key may repeat: key index 0, 1, …
--address is the card's unique address (default C0FFEE01); --entitled-until
is a day number (days since 1970-01-01, default today + 30; 0 = not entitled).
";

struct Card {
    keys: Vec<[u8; 16]>,
    address: u32,
    caid: u16,
    entitled_until: u32,
    slow: Duration,
    die_after: Option<u64>,
    mute_after: Option<u64>,
    mute: Duration,
    /// APDUs answered since the last reset (for --die-after / --mute-after).
    apdus: u64,
}

/// ATR: TS 3B, T0 86 (TD1 follows, 6 historical bytes), TD1 01 (T=1),
/// historical "testca", TCK (XOR of T0..last historical byte: required
/// when a protocol other than T=0 is indicated).
fn atr() -> Vec<u8> {
    let mut a = vec![0x3B, 0x86, 0x01];
    a.extend_from_slice(b"testca");
    let tck = a[1..].iter().fold(0u8, |x, b| x ^ b);
    a.push(tck);
    a
}

fn sw(out: &mut Vec<u8>, sw: u16) {
    out.extend_from_slice(&sw.to_be_bytes());
}

impl Card {
    fn key(&self, section: &[u8]) -> Option<&[u8; 16]> {
        testca::key_index(section).and_then(|i| self.keys.get(i as usize))
    }

    /// The R-APDU for one C-APDU.
    fn apdu(&mut self, c: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if c.len() < 4 {
            sw(&mut out, 0x6700);
            return out;
        }
        if c[0] != testca::CLA {
            sw(&mut out, testca::SW_BAD_CLA);
            return out;
        }
        // Case 2 (header + Le) or case 3/4 (header + Lc + data [+ Le]).
        let data: &[u8] = if c.len() > 5 {
            let lc = c[4] as usize;
            if c.len() != 5 + lc && c.len() != 6 + lc {
                sw(&mut out, 0x6700);
                return out;
            }
            &c[5..5 + lc]
        } else {
            &[]
        };
        match c[1] {
            testca::INS_INFO => {
                let le = match c.get(4) {
                    Some(0) | None => 256,
                    Some(&n) => n as usize,
                };
                let mut info = Vec::new();
                info.extend_from_slice(&self.caid.to_be_bytes());
                info.extend_from_slice(&self.address.to_be_bytes());
                info.push(testca::VERSION);
                info.extend_from_slice(&self.entitled_until.to_be_bytes());
                info.truncate(le);
                out.extend_from_slice(&info);
                sw(&mut out, testca::SW_OK);
            }
            testca::INS_ECM => {
                let Some(key) = self.key(data) else {
                    sw(&mut out, testca::SW_INTEGRITY);
                    return out;
                };
                match testca::open_ecm(key, data) {
                    Ok(e) if e.access_day > self.entitled_until => {
                        sw(&mut out, testca::SW_NOT_ENTITLED)
                    }
                    Ok(e) => {
                        out.extend_from_slice(&e.even);
                        out.extend_from_slice(&e.odd);
                        sw(&mut out, testca::SW_OK);
                    }
                    Err(e) => sw(&mut out, e.status_word()),
                }
            }
            testca::INS_EMM => {
                let Some(key) = self.key(data) else {
                    sw(&mut out, testca::SW_INTEGRITY);
                    return out;
                };
                match testca::open_emm(key, self.address, data) {
                    Ok(e) => {
                        self.entitled_until = e.entitled_until_day;
                        sw(&mut out, testca::SW_OK);
                    }
                    Err(e) => sw(&mut out, e.status_word()),
                }
            }
            _ => sw(&mut out, testca::SW_BAD_INS),
        }
        out
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    let t = s.trim_start_matches("0x");
    u32::from_str_radix(t, 16).ok()
}

fn args() -> Result<(String, u16, Card), String> {
    let mut host = "127.0.0.1".to_string();
    let mut port = 35963u16;
    let mut card = Card {
        keys: Vec::new(),
        address: 0xC0FF_EE01,
        caid: testca::CAID,
        entitled_until: testca::today() + 30,
        slow: Duration::ZERO,
        die_after: None,
        mute_after: None,
        mute: Duration::from_millis(3000),
        apdus: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |what: &str| it.next().ok_or(format!("{a} needs {what}"));
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--host" => host = val("a host")?,
            "--port" => port = val("a port")?.parse().map_err(|_| "bad --port")?,
            "--key" => card.keys.push(
                testca::parse_key(&val("32 hex digits")?).map_err(|e| format!("--key: {e}"))?,
            ),
            "--address" => {
                card.address = parse_u32(&val("8 hex digits")?).ok_or("bad --address")?
            }
            "--caid" => {
                card.caid = parse_u32(&val("4 hex digits")?)
                    .and_then(|v| u16::try_from(v).ok())
                    .ok_or("bad --caid")?
            }
            "--entitled-until" => {
                card.entitled_until = val("a day")?.parse().map_err(|_| "bad day")?
            }
            "--slow-ms" => {
                card.slow = Duration::from_millis(val("ms")?.parse().map_err(|_| "bad ms")?)
            }
            "--mute-ms" => {
                card.mute = Duration::from_millis(val("ms")?.parse().map_err(|_| "bad ms")?)
            }
            "--die-after" => card.die_after = Some(val("N")?.parse().map_err(|_| "bad N")?),
            "--mute-after" => card.mute_after = Some(val("N")?.parse().map_err(|_| "bad N")?),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if card.keys.is_empty() {
        return Err("at least one --key is needed".into());
    }
    Ok((host, port, card))
}

/// Without TCP_QUICKACK the delayed ACK of the card's side meets vpcd's
/// Nagle and every APDU takes about 40 ms; Linux clears the flag again
/// after a while, so it is set before every recv.
fn quickack(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn send(s: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    let mut f = Vec::with_capacity(payload.len() + 2);
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(payload);
    s.write_all(&f)
}

fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    // vpcd may not be listening yet when a test starts the card right after
    // pcscd: retry for a while.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect((host, port)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < until && e.kind() == ErrorKind::ConnectionRefused => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(format!("cannot connect to vpcd at {host}:{port}: {e}")),
        }
    }
}

fn main() {
    let (host, port, mut card) = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("testcard: {e}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    let mut s = match connect(&host, port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testcard: {e}");
            std::process::exit(1);
        }
    };
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 65536];
    loop {
        quickack(&s);
        let mut len = [0u8; 2];
        match s.read_exact(&mut len) {
            Ok(()) => {}
            // vpcd closed: the reader went away (pcscd stopped).
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => std::process::exit(0),
            Err(e) => {
                eprintln!("testcard: reading from vpcd: {e}");
                std::process::exit(0);
            }
        }
        let n = u16::from_be_bytes(len) as usize;
        quickack(&s);
        if s.read_exact(&mut buf[..n]).is_err() {
            std::process::exit(0);
        }
        let msg = &buf[..n];
        let result = if n == 1 {
            match msg[0] {
                // Power off and reset bring a hung card back.
                0 | 2 => {
                    card.apdus = 0;
                    Ok(())
                }
                1 => Ok(()),
                4 => send(&mut s, &atr()),
                _ => Ok(()),
            }
        } else if n == 0 {
            Ok(())
        } else {
            if card.die_after.is_some_and(|d| card.apdus >= d) {
                // Pulled in the middle of an APDU.
                std::process::exit(0);
            }
            let hung = card.mute_after.is_some_and(|m| card.apdus >= m);
            card.apdus += 1;
            let answer = if hung {
                std::thread::sleep(card.mute);
                vec![0x6F, 0x00]
            } else {
                if !card.slow.is_zero() {
                    std::thread::sleep(card.slow);
                }
                card.apdu(msg)
            };
            send(&mut s, &answer)
        };
        if let Err(e) = result {
            eprintln!("testcard: writing to vpcd: {e}");
            std::process::exit(0);
        }
    }
}
