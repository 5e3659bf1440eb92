//! Who may use which route: per route class, an allow-list of networks and
//! an optional token. Closed by default: loopback and private networks for
//! streams and read-only routes, loopback only for control.

use std::net::IpAddr;

// One CIDR type for the whole crate: the config parses it, the server
// checks clients against it.
pub use crate::config::{Cidr, CidrError};

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
    /// Whether any route's allow-list holds `ip` (tokens aside): a peer for
    /// which this is false can be refused at accept, before it takes a slot.
    pub fn admits_somewhere(&self, ip: IpAddr) -> bool {
        [
            &self.stream,
            &self.playlist,
            &self.metrics,
            &self.status,
            &self.epg,
            &self.control,
        ]
        .iter()
        .any(|r| r.allow.iter().any(|c| c.contains(ip)))
    }

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

    #[test]
    fn admits_somewhere_is_the_union_of_the_lists() {
        let only = |net: &str| RouteAccess {
            allow: vec![net.parse().unwrap()],
            token: Some("tokens do not matter here".into()),
        };
        let none = RouteAccess {
            allow: Vec::new(),
            token: None,
        };
        let a = Access {
            stream: none.clone(),
            playlist: none.clone(),
            metrics: none.clone(),
            status: none.clone(),
            epg: only("10.1.0.0/16"),
            control: only("127.0.0.1/32"),
        };
        assert!(a.admits_somewhere(ip("10.1.2.3")));
        assert!(a.admits_somewhere(ip("::ffff:10.1.2.3")));
        assert!(a.admits_somewhere(ip("127.0.0.1")));
        assert!(!a.admits_somewhere(ip("127.0.0.2")));
        assert!(!a.admits_somewhere(ip("10.2.0.1")));
        assert!(Access::default().admits_somewhere(ip("192.168.1.1")));
        assert!(!Access::default().admits_somewhere(ip("8.8.8.8")));
    }
}
