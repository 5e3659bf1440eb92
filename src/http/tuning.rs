//! The TCP settings of the listener's connections: congestion control
//! (`TCP_CONGESTION`) and send buffer (`SO_SNDBUF`), from `[server]
//! tcp_congestion` and `send_buffer_bytes`.
//!
//! Why: a channel pulled by the other site crosses a long lossy path
//! (120 ms RTT, 0.5 % loss). Loss-based congestion control (cubic, the
//! kernel's default) halves its window at every loss and sustains about
//! MSS / RTT × 1.2 / √loss ≈ 1.7 Mbit/s there; BBR paces at the measured
//! bottleneck rate and does not take random loss for congestion. The
//! send buffer must hold at least one bandwidth-delay product (10 Mbit/s
//! × 120 ms ≈ 150 kB), more with loss (retransmissions wait in it).
//!
//! Promises: the settings are applied to every accepted socket and read
//! back with getsockopt (what the kernel actually set is what `/status`
//! shows); a refusal is an error in words naming the cure (`modprobe
//! tcp_bbr`, `net.core.wmem_max`), never a panic; the connection is then
//! served with the kernel's defaults.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{getsockopt, setsockopt, sockopt};

/// What the config asks of every accepted connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketTuning {
    /// TCP_CONGESTION, e.g. "bbr"; None leaves the kernel's default.
    pub congestion: Option<String>,
    /// SO_SNDBUF in bytes; None leaves the kernel's autotuning on.
    pub send_buffer_bytes: Option<usize>,
}

impl SocketTuning {
    pub fn is_empty(&self) -> bool {
        self.congestion.is_none() && self.send_buffer_bytes.is_none()
    }
}

/// Why a setting could not be applied, in words by `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TuningError {
    /// setsockopt(TCP_CONGESTION) failed.
    Congestion { name: String, errno: Errno },
    /// SO_SNDBUF was capped below the request (`net.core.wmem_max`) and
    /// SO_SNDBUFFORCE was not allowed. `kernel` is what getsockopt says
    /// (Linux reports twice the usable size it set).
    SendBufferCapped { wanted: usize, kernel: usize },
    /// setsockopt(SO_SNDBUF) itself failed.
    SendBuffer { wanted: usize, errno: Errno },
}

impl TuningError {
    /// The `[server]` key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            TuningError::Congestion { .. } => "tcp_congestion",
            _ => "send_buffer_bytes",
        }
    }
}

impl std::fmt::Display for TuningError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TuningError::Congestion { name, errno } => {
                let available = proc_list("tcp_available_congestion_control");
                match *errno {
                    Errno::ENOENT if module_exists(name) => write!(
                        f,
                        "the kernel has TCP congestion control {name:?} as a module that is not \
                         loaded (loaded: {available}): run `modprobe tcp_{name}` as root, and add \
                         tcp_{name} to /etc/modules-load.d/capbox.conf so it loads at boot"
                    ),
                    Errno::ENOENT => write!(
                        f,
                        "the kernel has no TCP congestion control {name:?} (available: \
                         {available}; if it is a module of another kernel: `modprobe tcp_{name}`)"
                    ),
                    Errno::EPERM => write!(
                        f,
                        "the kernel lets only privileged processes use TCP congestion control \
                         {name:?} (allowed to all: {}): run capbox with CAP_NET_ADMIN, or add it \
                         to net.ipv4.tcp_allowed_congestion_control",
                        proc_list("tcp_allowed_congestion_control")
                    ),
                    e => write!(
                        f,
                        "setsockopt(TCP_CONGESTION, {name:?}) failed: {}",
                        e.desc()
                    ),
                }
            }
            TuningError::SendBufferCapped { wanted, kernel } => {
                let max = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "?".into());
                write!(
                    f,
                    "asked {wanted} bytes, the kernel set {} (net.core.wmem_max = {max} caps it; \
                     getsockopt reports twice the size): raise it with `sysctl -w \
                     net.core.wmem_max={wanted}` (and in /etc/sysctl.d/), or run capbox with \
                     CAP_NET_ADMIN (as root it is not capped)",
                    kernel / 2
                )
            }
            TuningError::SendBuffer { wanted, errno } => {
                write!(
                    f,
                    "setsockopt(SO_SNDBUF, {wanted}) failed: {}",
                    errno.desc()
                )
            }
        }
    }
}

impl std::error::Error for TuningError {}

/// What the kernel set on one socket, read back with getsockopt.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// TCP_CONGESTION as the kernel reports it.
    pub tcp_congestion: Option<String>,
    /// SO_SNDBUF as the kernel reports it: twice the usable size (the
    /// kernel doubles a request for its bookkeeping, socket(7)).
    pub send_buffer_bytes: Option<usize>,
}

/// Apply `t` to a TCP socket, then read back what the kernel set. Every
/// setting is tried; the errors come back with what was read.
pub fn apply<F: AsFd>(sock: &F, t: &SocketTuning) -> (Applied, Vec<TuningError>) {
    let mut errors = Vec::new();
    if let Some(name) = &t.congestion {
        if let Err(errno) = setsockopt(sock, sockopt::TcpCongestion, &OsString::from(name)) {
            errors.push(TuningError::Congestion {
                name: name.clone(),
                errno,
            });
        }
    }
    if let Some(wanted) = t.send_buffer_bytes {
        // SO_SNDBUFFORCE passes net.core.wmem_max when capbox may
        // (CAP_NET_ADMIN): the operator's figure is the path's, not the
        // distribution's default cap. Else SO_SNDBUF, capped.
        if setsockopt(sock, sockopt::SndBufForce, &wanted).is_err() {
            match setsockopt(sock, sockopt::SndBuf, &wanted) {
                Ok(()) => {
                    if let Ok(kernel) = getsockopt(sock, sockopt::SndBuf) {
                        // The kernel doubles what it grants.
                        if kernel < wanted.saturating_mul(2) {
                            errors.push(TuningError::SendBufferCapped { wanted, kernel });
                        }
                    }
                }
                Err(errno) => errors.push(TuningError::SendBuffer { wanted, errno }),
            }
        }
    }
    (read_back(sock), errors)
}

/// TCP_CONGESTION and SO_SNDBUF of a socket as the kernel has them.
pub fn read_back<F: AsFd>(sock: &F) -> Applied {
    Applied {
        tcp_congestion: congestion_of(sock).ok(),
        send_buffer_bytes: getsockopt(sock, sockopt::SndBuf).ok(),
    }
}

/// The congestion control of a TCP socket ("cubic").
pub fn congestion_of<F: AsFd>(sock: &F) -> io::Result<String> {
    let name = getsockopt(sock, sockopt::TcpCongestion)?;
    // The kernel fills a 16-byte buffer; the name stops at the first NUL.
    let bytes = name.as_encoded_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// `t` on a fresh TCP socket of this process: what accepted connections
/// will get, known before the first one (check-config, serve's start).
pub fn probe(t: &SocketTuning) -> io::Result<(Applied, Vec<TuningError>)> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let s = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    Ok(apply(&s, t))
}

/// A list the kernel publishes under /proc/sys/net/ipv4, or "?".
fn proc_list(name: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys/net/ipv4").join(name))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Whether the running kernel ships `tcp_<name>` as a module.
fn module_exists(name: &str) -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let dir = Path::new("/lib/modules")
        .join(release.trim())
        .join("kernel/net/ipv4");
    ["ko", "ko.xz", "ko.zst", "ko.gz"]
        .iter()
        .any(|ext| dir.join(format!("tcp_{name}.{ext}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn available() -> String {
        proc_list("tcp_available_congestion_control")
    }

    /// A connected pair on loopback: (the accepted side, the client).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        (a, c)
    }

    #[test]
    fn congestion_set_on_an_accepted_socket_is_what_getsockopt_reads() {
        let (a, c) = pair();
        let default = congestion_of(&a).unwrap();
        // Every algorithm the kernel has loaded, so the test also covers
        // one that differs from the default whichever it is.
        let names: Vec<String> = available().split_whitespace().map(String::from).collect();
        assert!(
            names.len() >= 2,
            "the kernel lists fewer than two congestion controls ({names:?}): cannot tell a set one from the default {default:?}"
        );
        for name in &names {
            let t = SocketTuning {
                congestion: Some(name.clone()),
                send_buffer_bytes: None,
            };
            let (got, errors) = apply(&a, &t);
            assert!(errors.is_empty(), "{name}: {errors:?}");
            assert_eq!(got.tcp_congestion.as_deref(), Some(name.as_str()));
        }
        // The peer's socket kept its own.
        assert_eq!(congestion_of(&c).unwrap(), default);
    }

    #[test]
    fn an_unknown_congestion_control_is_refused_in_words() {
        let (a, _c) = pair();
        let before = congestion_of(&a).unwrap();
        let t = SocketTuning {
            congestion: Some("nosuchcc".into()),
            send_buffer_bytes: None,
        };
        let (got, errors) = apply(&a, &t);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let msg = errors[0].to_string();
        assert_eq!(errors[0].key(), "tcp_congestion");
        assert!(
            msg.contains("no TCP congestion control \"nosuchcc\"")
                && msg.contains("modprobe tcp_nosuchcc"),
            "{msg}"
        );
        assert!(
            msg.contains(available().split_whitespace().next().unwrap()),
            "{msg}"
        );
        // The socket keeps the kernel's default.
        assert_eq!(got.tcp_congestion, Some(before));
    }

    #[test]
    fn send_buffer_is_read_back_doubled_or_capped_in_words() {
        let (a, _c) = pair();
        let wanted = 600_000;
        let t = SocketTuning {
            congestion: None,
            send_buffer_bytes: Some(wanted),
        };
        let (got, errors) = apply(&a, &t);
        let kernel = got.send_buffer_bytes.unwrap();
        match errors.as_slice() {
            // Allowed past wmem_max (root) or under it: the kernel doubles.
            [] => assert_eq!(kernel, 2 * wanted),
            [e @ TuningError::SendBufferCapped { .. }] => {
                assert!(kernel < 2 * wanted);
                assert!(e.to_string().contains("net.core.wmem_max"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn probe_reports_what_a_fresh_socket_gets() {
        let t = SocketTuning {
            congestion: Some("reno".into()),
            send_buffer_bytes: Some(65536),
        };
        let (got, errors) = probe(&t).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(got.tcp_congestion.as_deref(), Some("reno"));
        assert_eq!(got.send_buffer_bytes, Some(131072));
    }
}
