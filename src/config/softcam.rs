//! `[softcam]`: the softcam (OSCam's dvbapi network mode) that gives
//! control words to sources with `ca = "dvbapi"`, and that source key.
//!
//! A child of `walk` (declared there with `#[path]`) so it uses the same
//! walker: every problem is reported as `file:line: key: problem; expected
//! …`, and the walk goes on.

use super::{ChannelConfig, Field, Walker};
use std::path::PathBuf;

/// Where the softcam listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SoftcamEndpoint {
    /// `host` + `port`: OSCam's `listen_port` (TCP).
    Tcp { host: String, port: u16 },
    /// `host` written as an absolute path: a unix socket (OSCam's
    /// `/tmp/camd.socket` style, no port).
    Unix(PathBuf),
}

impl std::fmt::Display for SoftcamEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SoftcamEndpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            SoftcamEndpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            SoftcamEndpoint::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// `[softcam]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftcamConfig {
    pub endpoint: SoftcamEndpoint,
    /// `protocol`, 2 or 3 (default): the dvbapi protocol version announced.
    pub protocol: u16,
    /// `name`, default "capbox <version>": the client name the softcam logs.
    pub name: String,
}

impl SoftcamConfig {
    /// A TCP softcam with the defaults (tests, `capbox` wiring).
    pub fn tcp(host: &str, port: u16) -> SoftcamConfig {
        SoftcamConfig {
            endpoint: SoftcamEndpoint::Tcp {
                host: host.to_string(),
                port,
            },
            protocol: 3,
            name: default_name(),
        }
    }
}

fn default_name() -> String {
    format!("capbox {}", env!("CARGO_PKG_VERSION"))
}

pub use super::ca::CaSourceConfig as SourceCa;

pub(super) const SOFTCAM_KEYS: &[&str] = &["host", "port", "protocol", "name"];

/// `[softcam]`.
pub(super) fn softcam(w: &mut Walker, f: Field) -> Option<SoftcamConfig> {
    let mut t = w.table(f.sp, &f.path, f.line)?;
    let host_what = "a host name or address (\"127.0.0.1\"), or the absolute path of a unix socket";
    let host = match w.string(&mut t, "host", host_what) {
        Some((s, hf)) if s.is_empty() || s.contains('\0') || s.chars().any(char::is_whitespace) => {
            w.error(
                hf.line,
                &hf.path,
                format!("{s:?} is not usable; expected {host_what}"),
            );
            None
        }
        Some((s, hf)) => Some((s, hf)),
        None => {
            if !t.entries.iter().any(|e| e.key.name == "host") {
                w.error(
                    t.line,
                    &format!("{}.host", t.path),
                    format!("missing; expected {host_what}"),
                );
            }
            None
        }
    };
    let has_port = t.entries.iter().any(|e| e.key.name == "port");
    let port = w.int(&mut t, "port", 1, 65_535, 0, "a TCP port");
    let protocol = w.int(&mut t, "protocol", 2, 3, 3, "a dvbapi protocol version");
    let name = match w.string(&mut t, "name", "a client name of 1..=255 bytes") {
        Some((s, nf)) if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) => {
            w.error(
                nf.line,
                &nf.path,
                "empty, too long or with control characters; expected a client name of 1..=255 bytes"
                    .to_string(),
            );
            default_name()
        }
        Some((s, _)) => s,
        None => default_name(),
    };
    let line = t.line;
    let path = t.path.clone();
    w.finish(t, SOFTCAM_KEYS);
    let (host, hf) = host?;
    let endpoint = if host.starts_with('/') {
        if has_port {
            w.error(
                hf.line,
                &format!("{path}.port"),
                "a unix socket has no port; remove port or give a host name".to_string(),
            );
        }
        SoftcamEndpoint::Unix(PathBuf::from(host))
    } else {
        if !has_port {
            w.error(
                line,
                &format!("{path}.port"),
                "missing; expected a TCP port 1..=65535 (OSCam's dvbapi listen_port)".to_string(),
            );
            return None;
        }
        SoftcamEndpoint::Tcp {
            host,
            port: port as u16,
        }
    };
    Some(SoftcamConfig {
        endpoint,
        protocol: protocol as u16,
        name,
    })
}

/// `ca = "dvbapi"` needs a `[softcam]`: reported at each such `ca` when
/// none is written (a broken one is reported on its own keys).
pub(super) fn check_sources(w: &mut Walker, channels: &[ChannelConfig], softcam_written: bool) {
    if softcam_written {
        return;
    }
    for s in channels.iter().flat_map(|c| &c.sources) {
        if s.ca == Some(SourceCa::Dvbapi) {
            let key = format!("{}.ca", s.key);
            let line = w.lines.get(&key).copied().unwrap_or(s.line);
            let msg = "\"dvbapi\" needs a [softcam] section; add one with host and port";
            w.error(line, &key, msg.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::{parse, Diagnostic};
    use super::*;
    use std::path::Path;

    const CHANNEL: &str =
        "\n[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nca = \"dvbapi\"\n";

    fn errors(text: &str) -> Vec<Diagnostic> {
        parse(text, "t.toml", Path::new("/tmp")).unwrap_err()
    }

    #[test]
    fn softcam_and_source_ca() {
        let text = format!("[softcam]\nhost = \"127.0.0.1\"\nport = 9000\n{CHANNEL}");
        let c = parse(&text, "t.toml", Path::new("/tmp")).unwrap();
        let s = c.softcam.unwrap();
        assert_eq!(s.endpoint.to_string(), "127.0.0.1:9000");
        assert_eq!(s.protocol, 3);
        assert!(s.name.starts_with("capbox "));
        assert_eq!(c.channels[0].sources[0].ca, Some(SourceCa::Dvbapi));

        let text = "[softcam]\nhost = \"/run/oscam.sock\"\nprotocol = 2\nname = \"box7\"\n";
        let c = parse(&format!("{text}{CHANNEL}"), "t.toml", Path::new("/tmp")).unwrap();
        let s = c.softcam.unwrap();
        assert_eq!(s.endpoint, SoftcamEndpoint::Unix("/run/oscam.sock".into()));
        assert_eq!((s.protocol, s.name.as_str()), (2, "box7"));
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = errors(CHANNEL);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            (e[0].line, e[0].key.as_str()),
            (6, "channel[0].source[0].ca")
        );
        assert!(e[0].message.contains("[softcam]"));

        let e = errors(&format!("[softcam]\nhost = \"h\"\nprotocol = 4\n{CHANNEL}"));
        let keys: Vec<_> = e.iter().map(|d| (d.line, d.key.as_str())).collect();
        assert_eq!(
            keys,
            [(3, "softcam.protocol"), (1, "softcam.port")],
            "{e:?}"
        );

        let e = errors(&format!(
            "[softcam]\nhost = \"/s\"\nport = 1\nx = 1\n{CHANNEL}"
        ));
        let keys: Vec<_> = e.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["softcam.x", "softcam.port"], "{e:?}");

        let text = "[softcam]\nhost = \"h\"\nport = 1\n[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nca = \"cam\"\n";
        let e = errors(text);
        assert_eq!(
            (e[0].line, e[0].key.as_str()),
            (8, "channel[0].source[0].ca")
        );
        assert!(e[0].message.contains("\"cam\" is not known"));
    }
}
