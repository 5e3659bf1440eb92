//! `Cidr`: an IPv4 or IPv6 network written `address/prefix`, for allow-lists.
//!
//! Owns parsing and matching of the networks in `[access]`. Promises: parsing
//! never panics and refuses anything that is not exactly `ip/len` with a prefix
//! in range; `contains` is a constant-time mask compare. Host bits are allowed
//! (`10.1.2.3/8` means `10.0.0.0/8`), as in iptables and nginx, and are cleared
//! so that two spellings of one network compare equal.
//!
//! An IPv4-mapped IPv6 peer (`::ffff:10.0.0.1`, what a dual-stack `[::]`
//! socket reports for IPv4 clients) is matched against IPv4 networks too, so
//! `10.0.0.0/8` admits it whichever socket the server listens on.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: address with host bits cleared, and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a string is not a `Cidr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidrError {
    /// No `/`: a bare address is refused so that `10.0.0.0` is never
    /// silently read as a single host when a network was meant.
    MissingPrefix,
    /// The part before `/` is not an IPv4 or IPv6 address.
    BadAddress(String),
    /// The part after `/` is not a decimal number.
    BadPrefix(String),
    /// The prefix is longer than the address (32 for IPv4, 128 for IPv6).
    PrefixTooLong { prefix_len: u32, max: u8 },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            CidrError::MissingPrefix => {
                write!(f, "missing /prefix (write 10.0.0.5/32 for a single host)")
            }
            CidrError::BadAddress(a) => write!(f, "{:?} is not an IPv4 or IPv6 address", a),
            CidrError::BadPrefix(p) => write!(f, "prefix {:?} is not a number", p),
            CidrError::PrefixTooLong { prefix_len, max } => {
                write!(f, "prefix /{} is longer than {} bits", prefix_len, max)
            }
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// A network from an address and prefix; host bits are cleared.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Cidr, CidrError> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > max {
            return Err(CidrError::PrefixTooLong {
                prefix_len: prefix_len.into(),
                max,
            });
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix_len))),
        };
        Ok(Cidr { addr, prefix_len })
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses are
    /// matched as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if self.addr.is_ipv4() => IpAddr::V4(v4),
                _ => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & mask_v4(self.prefix_len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask_v6(self.prefix_len) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(prefix_len: u8) -> u32 {
    // checked_shl: a shift by 32 would overflow; /0 matches everything.
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask_v6(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = s.split_once('/').ok_or(CidrError::MissingPrefix)?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(addr.to_string()))?;
        // Decimal digits only: u32::from_str would accept "+8".
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::BadPrefix(prefix.to_string()));
        }
        let prefix_len: u32 = prefix
            .parse()
            .map_err(|_| CidrError::BadPrefix(prefix.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > u32::from(max) {
            return Err(CidrError::PrefixTooLong { prefix_len, max });
        }
        // prefix_len <= 128 here, so the cast is exact.
        Cidr::new(addr, prefix_len as u8)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_display() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert_eq!(c, "10.0.0.0/8".parse().unwrap());
        let c: Cidr = "fc00::1/7".parse().unwrap();
        assert_eq!(c.to_string(), "fc00::/7");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix_len(), 0);
        assert_eq!("::1/128".parse::<Cidr>().unwrap().addr(), ip("::1"));
    }

    #[test]
    fn cidr_bad_input() {
        use CidrError::*;
        let cases: &[(&str, CidrError)] = &[
            (
                "10.0.0.0/33",
                PrefixTooLong {
                    prefix_len: 33,
                    max: 32,
                },
            ),
            (
                "::1/129",
                PrefixTooLong {
                    prefix_len: 129,
                    max: 128,
                },
            ),
            ("1.2.3", MissingPrefix),
            ("1.2.3/8", BadAddress("1.2.3".into())),
            ("10.0.0.0", MissingPrefix),
            ("10.0.0.0/", BadPrefix("".into())),
            ("10.0.0.0/+8", BadPrefix("+8".into())),
            ("10.0.0.0/8/8", BadPrefix("8/8".into())),
            ("10.0.0.0/99999", BadPrefix("99999".into())),
            ("/8", BadAddress("".into())),
            ("host.example/8", BadAddress("host.example".into())),
            ("", MissingPrefix),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<Cidr>().as_ref(), Err(want), "input {:?}", s);
        }
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string(),
            "prefix /33 is longer than 32 bits"
        );
    }

    #[test]
    fn cidr_contains_v4() {
        let c: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(c.contains(ip("172.16.0.1")));
        assert!(c.contains(ip("172.31.255.255")));
        assert!(!c.contains(ip("172.32.0.0")));
        assert!(!c.contains(ip("172.15.255.255")));
        assert!(!c.contains(ip("::1")));
        let host: Cidr = "192.168.1.10/32".parse().unwrap();
        assert!(host.contains(ip("192.168.1.10")));
        assert!(!host.contains(ip("192.168.1.11")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("255.255.255.255")));
        assert!(!all.contains(ip("2001:db8::1")));
    }

    #[test]
    fn cidr_contains_v6_and_mapped() {
        let ula: Cidr = "fc00::/7".parse().unwrap();
        assert!(ula.contains(ip("fd12:3456::1")));
        assert!(ula.contains(ip("fc00::")));
        assert!(!ula.contains(ip("fe80::1")));
        assert!(!ula.contains(ip("10.0.0.1")));
        let lo: Cidr = "::1/128".parse().unwrap();
        assert!(lo.contains(ip("::1")));
        assert!(!lo.contains(ip("::2")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        let ten: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(ten.contains(ip("::ffff:10.9.8.7")));
        assert!(!ten.contains(ip("::ffff:11.0.0.1")));
        // ... but an IPv6 network is matched on the IPv6 form.
        let mapped: Cidr = "::ffff:0:0/96".parse().unwrap();
        assert!(mapped.contains(ip("::ffff:10.9.8.7")));
    }
}
