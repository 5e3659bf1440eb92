//! Socket and process helpers of the hostile suite: connect from a chosen
//! loopback address with a chosen receive buffer (std has neither
//! bind-before-connect nor SO_RCVBUF), raise this process's descriptor
//! limit (inherited by the `capbox serve` it starts), read a child's RSS.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

/// A TCP connection to `to` from `from` (port chosen by the kernel), with
/// SO_RCVBUF set to `rcvbuf` bytes before the handshake when given, so the
/// window the server sees is small from the first byte.
pub fn connect_from(
    from: Ipv4Addr,
    to: SocketAddr,
    rcvbuf: Option<usize>,
) -> io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else {
        return Err(io::Error::other("IPv4 only"));
    };
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket that nothing else owns; TcpStream closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    if let Some(n) = rcvbuf {
        let v = n as libc::c_int;
        // SAFETY: v lives across the call; the length is its size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let sin = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let local = sin(from, 0);
    let remote = sin(*to.ip(), to.port());
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: local is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: remote is a valid sockaddr_in of `len` bytes; blocking connect.
    if unsafe { libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// Raise this process's soft RLIMIT_NOFILE to at least `want` (up to the
/// hard limit); children started afterwards inherit it. Returns the soft
/// limit now in force.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid rlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    if r.rlim_cur < want {
        r.rlim_cur = want.min(r.rlim_max);
        // SAFETY: r is a valid rlimit; lowering or raising the soft limit
        // within the hard one needs no privilege.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
        // SAFETY: as above.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    }
    r.rlim_cur
}

/// VmRSS of process `pid` in KiB, from /proc/PID/status.
pub fn vm_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Value of the sample `name{label="value"}` (or `name` without labels
/// when `label` is None) in a /metrics scrape; 0 when absent.
pub fn sample(m: &[crate::e2e_common::Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    m.iter()
        .find(|s| {
            s.name == name
                && match label {
                    Some((k, v)) => s.labels.get(k).map(String::as_str) == Some(v),
                    None => s.labels.is_empty(),
                }
        })
        .map(|s| s.value)
        .unwrap_or(0.0)
}

/// Move the calling thread (and the processes it starts from now on) into
/// a network namespace of its own with its loopback up, and set that
/// namespace's `net.ipv4.tcp_wmem` when given. False (the caller skips,
/// loudly) when the kernel refuses: not root, or no namespaces.
pub fn private_loopback(tcp_wmem: Option<&str>) -> bool {
    // SAFETY: unshare(2) with a flag only; it affects this thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!(
            "!!!!!!!! SKIPPED: unshare(CLONE_NEWNET): {} (needs root) !!!!!!!!",
            io::Error::last_os_error()
        );
        return false;
    }
    // SAFETY: a datagram socket only for the interface ioctls below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: ifr is a valid ifreq naming "lo"; the kernel fills the flags.
    let ok = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) } == 0 && {
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: as above, setting the flags just read plus IFF_UP.
        unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) == 0 }
    };
    let err = io::Error::last_os_error();
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    assert!(ok, "bringing lo up in the new namespace: {err}");
    if let Some(w) = tcp_wmem {
        // /proc/sys/net is the namespace of the thread that opens it.
        std::fs::write("/proc/sys/net/ipv4/tcp_wmem", w)
            .unwrap_or_else(|e| panic!("setting tcp_wmem: {e}"));
    }
    true
}

/// A keep-alive `GET path` on `s`; returns the response head, the body
/// read to its Content-Length and discarded.
pub fn ask(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: box\r\n\r\n").as_bytes())
        .unwrap();
    let (_, head, mut body) = crate::e2e_common::read_head(s);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut b = [0u8; 4096];
    while body.len() < len {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "EOF inside the body of {path}");
        body.extend_from_slice(&b[..n]);
    }
    head
}
