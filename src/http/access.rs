//! Who may use which route: per route class, an allow-list of networks and
//! an optional token. Closed by default: loopback and private networks for
//! streams and read-only routes, loopback only for control.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network, `addr/prefix_len`; a bare address is a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(pub String);

impl std::fmt::Display for CidrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The network with host bits cleared.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Cidr, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(CidrError(format!(
                "prefix length /{prefix_len} is longer than {max} bits"
            )));
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix_len))),
        };
        Ok(Cidr { addr, prefix_len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack socket
    /// reports) match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if self.addr.is_ipv4() => IpAddr::V4(v4),
                _ => ip,
            },
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                u32::from(a) & mask32(self.prefix_len) == u32::from(n)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.prefix_len) == u128::from(n)
            }
            _ => false,
        }
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len as u32)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => {
                let len = l
                    .parse::<u8>()
                    .map_err(|_| CidrError(format!("bad prefix length in '{s}'")))?;
                (a, Some(len))
            }
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| CidrError(format!("bad address in '{s}'")))?;
        let len = len.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        Cidr::new(addr, len).map_err(|e| CidrError(format!("'{s}': {e}")))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// The classes of routes, each with its own [`RouteAccess`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteClass {
    Stream,
    Playlist,
    Metrics,
    Status,
    Epg,
    Control,
}

impl RouteClass {
    pub fn as_str(&self) -> &'static str {
        match self {
            RouteClass::Stream => "stream",
            RouteClass::Playlist => "playlist",
            RouteClass::Metrics => "metrics",
            RouteClass::Status => "status",
            RouteClass::Epg => "epg",
            RouteClass::Control => "control",
        }
    }
}

/// Networks allowed and, if set, the token a request must carry
/// (`?token=` or `Authorization: Bearer`). Both must pass.
#[derive(Clone, PartialEq, Eq)]
pub struct RouteAccess {
    pub allow: Vec<Cidr>,
    pub token: Option<String>,
}

// Tokens never reach a log: Debug shows only whether one is set.
impl std::fmt::Debug for RouteAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteAccess")
            .field("allow", &self.allow)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl RouteAccess {
    pub fn loopback() -> RouteAccess {
        RouteAccess {
            allow: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            token: None,
        }
    }

    pub fn private() -> RouteAccess {
        RouteAccess {
            allow: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
            ]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
            token: None,
        }
    }

    pub fn anyone() -> RouteAccess {
        RouteAccess {
            allow: ["0.0.0.0/0", "::/0"]
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            token: None,
        }
    }

    /// `token` is what the request carried, if anything.
    pub fn allows(&self, ip: IpAddr, token: Option<&str>) -> bool {
        if !self.allow.iter().any(|c| c.contains(ip)) {
            return false;
        }
        match (&self.token, token) {
            (None, _) => true,
            (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.as_bytes()),
            (Some(_), None) => false,
        }
    }
}

/// Compare without an early exit, so timing does not leak the token prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xFF);
    }
    diff == 0
}

/// Access rules of every route class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub stream: RouteAccess,
    pub playlist: RouteAccess,
    pub metrics: RouteAccess,
    pub status: RouteAccess,
    pub epg: RouteAccess,
    pub control: RouteAccess,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            stream: RouteAccess::private(),
            playlist: RouteAccess::private(),
            metrics: RouteAccess::private(),
            status: RouteAccess::private(),
            epg: RouteAccess::private(),
            control: RouteAccess::loopback(),
        }
    }
}

impl Access {
    pub fn route(&self, class: RouteClass) -> &RouteAccess {
        match class {
            RouteClass::Stream => &self.stream,
            RouteClass::Playlist => &self.playlist,
            RouteClass::Metrics => &self.metrics,
            RouteClass::Status => &self.status,
            RouteClass::Epg => &self.epg,
            RouteClass::Control => &self.control,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        let c: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(c.contains(ip("172.31.255.255")));
        assert!(!c.contains(ip("172.32.0.0")));
        // Host bits are cleared.
        let c: Cidr = "192.168.1.77/24".parse().unwrap();
        assert_eq!(c.to_string(), "192.168.1.0/24");
        let c: Cidr = "fc00::/7".parse().unwrap();
        assert!(c.contains(ip("fd12:3456::1")));
        assert!(!c.contains(ip("fe80::1")));
        let c: Cidr = "::1".parse().unwrap();
        assert_eq!(c.prefix_len(), 128);
        assert!(c.contains(ip("::1")));
        assert!(!c.contains(ip("127.0.0.1")), "families do not mix");
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(ip("8.8.8.8")));
        // IPv4-mapped IPv6 from a dual-stack socket.
        let c: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn cidr_rejects_garbage() {
        for s in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/x",
            "/8",
            "a/1",
        ] {
            assert!(s.parse::<Cidr>().is_err(), "{s}");
        }
    }

    #[test]
    fn defaults_are_closed() {
        let a = Access::default();
        assert!(a.stream.allows(ip("192.168.1.10"), None));
        assert!(!a.stream.allows(ip("8.8.8.8"), None));
        assert!(a.control.allows(ip("127.0.0.1"), None));
        assert!(!a.control.allows(ip("10.1.1.1"), None));
        let mut t = RouteAccess::private();
        t.token = Some("s3cret".into());
        assert!(!t.allows(ip("10.1.1.1"), None));
        assert!(!t.allows(ip("10.1.1.1"), Some("s3cre")));
        assert!(t.allows(ip("10.1.1.1"), Some("s3cret")));
        assert!(!t.allows(ip("8.8.8.8"), Some("s3cret")));
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
