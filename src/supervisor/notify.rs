//! systemd's notify protocol (`sd_notify(3)`) without libsystemd: one
//! datagram per message to the unix socket named by `$NOTIFY_SOCKET` (a
//! path, or `@name` for an abstract socket).
//!
//! Promises: never blocks (a non-blocking datagram; a full queue is a
//! counted drop), never panics on a strange environment, and tells in
//! words why it is not speaking when `$NOTIFY_SOCKET` is unusable.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    /// Where it sends, as `$NOTIFY_SOCKET` said it.
    pub target: String,
    /// systemd's watchdog interval (`$WATCHDOG_USEC` for this process).
    pub watchdog: Option<Duration>,
    /// Datagrams the socket refused.
    pub failed: u64,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Notifier({})", self.target)
    }
}

/// `$WATCHDOG_USEC` as an interval, when it is meant for this process
/// (`$WATCHDOG_PID` absent or ours) and a sane number.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let us: u64 = usec?.trim().parse().ok()?;
    (us > 0).then(|| Duration::from_micros(us))
}

impl Notifier {
    /// From the environment: Ok(None) when not run under systemd's
    /// notify (no `$NOTIFY_SOCKET`), Err(words) when it is set but unusable.
    pub fn from_env() -> Result<Option<Notifier>, String> {
        let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let target = target.to_string_lossy().into_owned();
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Notifier::new(&target, watchdog).map(Some)
    }

    pub fn new(target: &str, watchdog: Option<Duration>) -> Result<Notifier, String> {
        let addr = if let Some(name) = target.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        } else if target.starts_with('/') {
            SocketAddr::from_pathname(target)
        } else {
            return Err(format!(
                "NOTIFY_SOCKET={target:?} is neither a path nor an @abstract name: not telling systemd anything"
            ));
        }
        .map_err(|e| format!("NOTIFY_SOCKET={target:?}: {e}"))?;
        let sock = UnixDatagram::unbound()
            .map_err(|e| format!("cannot make a unix datagram socket: {e}"))?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("cannot make the notify socket non-blocking: {e}"))?;
        Ok(Notifier {
            sock,
            addr,
            target: target.to_string(),
            watchdog,
            failed: 0,
        })
    }

    /// Send one message ("READY=1", "WATCHDOG=1", "STOPPING=1",
    /// "STATUS=…"); newlines in a STATUS text would start a new
    /// assignment, so they become spaces.
    pub fn send(&mut self, msg: &str) -> bool {
        let clean: String = msg
            .chars()
            .map(|c| if c == '\n' { ' ' } else { c })
            .collect();
        match self.sock.send_to_addr(clean.as_bytes(), &self.addr) {
            Ok(_) => true,
            Err(e) => {
                self.failed += 1;
                if self.failed == 1 || self.failed.is_multiple_of(100) {
                    log::warn!(
                        "supervisor: cannot notify systemd at {} ({} failed): {e}",
                        self.target,
                        self.failed
                    );
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_usec_is_for_us_or_ignored() {
        assert_eq!(
            watchdog_interval(Some("2000000"), None, 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn datagrams_arrive_on_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("capbox-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier::new(path.to_str().unwrap(), None).unwrap();
        assert!(n.send("READY=1"));
        assert!(n.send("STATUS=a\nb"));
        let mut buf = [0u8; 64];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"STATUS=a b");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("capbox-notify-test-{}", std::process::id());
        let a = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx2 = UnixDatagram::bind_addr(&a).unwrap();
        let mut n2 = Notifier::new(&format!("@{name}"), None).unwrap();
        assert!(n2.send("WATCHDOG=1"));
        let k = rx2.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");

        assert!(Notifier::new("relative", None)
            .unwrap_err()
            .contains("neither a path"));
        // Nobody listening: counted, not fatal.
        drop(rx);
        assert!(!n.send("WATCHDOG=1"));
        assert_eq!(n.failed, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
