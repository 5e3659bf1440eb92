//! The validating walk over a spanned TOML tree (see `node.rs`).
//!
//! Owns the schema: which keys exist, their types, ranges and defaults, and
//! the cross-checks (unique channel names). Promises: every problem found is
//! reported (the walk goes on after an error, using the default in place of a
//! bad value), each with the key path and the line it was written on; a
//! `Config` is returned only when there are none. Values are never echoed for
//! `access.token`.

use super::node::{self, Key, Node, SpNode};
use super::*;

use std::net::SocketAddr;

#[path = "adapters.rs"]
mod adapters;
#[path = "cards.rs"]
pub(super) mod cards;
#[path = "epg.rs"]
pub(super) mod epg;
#[path = "monitor.rs"]
pub(super) mod monitor;
#[path = "probes.rs"]
pub(super) mod probes;
#[path = "recovery.rs"]
mod recovery;
#[path = "softcam.rs"]
pub(super) mod softcam;
#[path = "supervisor.rs"]
pub(super) mod supervisor;
#[path = "update.rs"]
pub(super) mod update;

struct Walker {
    file: String,
    /// Byte offset of the start of every line, for span → line.
    line_starts: Vec<usize>,
    errors: Vec<Diagnostic>,
    lines: BTreeMap<String, usize>,
}

/// A table being read: its entries, and which of them the schema used.
struct Table<'a> {
    path: String,
    line: usize,
    entries: Vec<Entry<'a>>,
}

struct Entry<'a> {
    key: &'a Key,
    value: &'a SpNode,
    /// Line of the key (else of the value, else of the table).
    line: usize,
    used: bool,
}

/// A value taken from a table, with what is needed to report on it.
struct Field<'a> {
    sp: &'a SpNode,
    node: &'a Node,
    path: String,
    line: usize,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{}.{}", prefix, key)
    }
}

impl Walker {
    fn new(text: &str, file: &str) -> Walker {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Walker {
            file: file.to_string(),
            line_starts,
            errors: Vec::new(),
            lines: BTreeMap::new(),
        }
    }

    fn line_at(&self, offset: usize) -> usize {
        // Number of line starts at or before offset = 1-based line number.
        self.line_starts.partition_point(|&s| s <= offset)
    }

    fn span_line(&self, span: &Option<std::ops::Range<usize>>, fallback: usize) -> usize {
        match span {
            Some(r) => self.line_at(r.start),
            None => fallback,
        }
    }

    fn error(&mut self, line: usize, key: &str, message: String) {
        self.errors.push(Diagnostic {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message,
        });
    }

    fn wrong_type(&mut self, f: &Field, expected: &str) {
        let msg = format!("found {}; expected {}", f.node.describe(), expected);
        self.error(f.line, &f.path, msg);
    }

    /// Opens `node` as a table, or reports that it is not one.
    fn table<'a>(&mut self, node: &'a SpNode, path: &str, line: usize) -> Option<Table<'a>> {
        let line = self.span_line(&node.span, line);
        let Node::Table(items) = &node.node else {
            let msg = format!("found {}; expected a table", node.node.describe());
            self.error(line, path, msg);
            return None;
        };
        let entries = items
            .iter()
            .map(|(key, value)| {
                let kline = self.span_line(&key.span, self.span_line(&value.span, line));
                Entry {
                    key,
                    value,
                    line: kline,
                    used: false,
                }
            })
            .collect();
        if !path.is_empty() {
            // `take` may have recorded the key's line already; keep it.
            self.lines.entry(path.to_string()).or_insert(line);
        }
        Some(Table {
            path: path.to_string(),
            line,
            entries,
        })
    }

    /// Takes key `name` from the table, recording its line.
    fn take<'a>(&mut self, t: &mut Table<'a>, name: &str) -> Option<Field<'a>> {
        let e = t.entries.iter_mut().find(|e| e.key.name == name)?;
        e.used = true;
        let path = join(&t.path, name);
        // Errors about a value go to the value's line (a multi-line array
        // element may be below its key).
        let line = self.span_line(&e.value.span, e.line);
        self.lines.insert(path.clone(), e.line);
        Some(Field {
            sp: e.value,
            node: &e.value.node,
            path,
            line,
        })
    }

    /// Reports the keys of `t` the schema did not take.
    fn finish(&mut self, t: Table, expected: &[&str]) {
        for e in t.entries.iter().filter(|e| !e.used) {
            let msg = format!("unknown key; expected one of: {}", expected.join(", "));
            self.error(e.line, &join(&t.path, &e.key.name), msg);
        }
    }

    fn int(
        &mut self,
        t: &mut Table,
        name: &str,
        lo: i64,
        hi: i64,
        default: i64,
        what: &str,
    ) -> i64 {
        let Some(f) = self.take(t, name) else {
            return default;
        };
        match f.node {
            Node::Integer(i) if (lo..=hi).contains(i) => *i,
            Node::Integer(i) => {
                let msg = format!("{} is out of range; expected {} {}..={}", i, what, lo, hi);
                self.error(f.line, &f.path, msg);
                default
            }
            Node::String(s) if parse_int_text(s).is_some() => {
                let msg = format!(
                    "found string {:?}; expected {} {}..={} (an integer: write it without quotes)",
                    s, what, lo, hi
                );
                self.error(f.line, &f.path, msg);
                default
            }
            _ => {
                self.wrong_type(&f, &format!("{} {}..={} (an integer)", what, lo, hi));
                default
            }
        }
    }

    /// An optional integer: None when the key is absent or its value is
    /// refused (reported, as `int` does).
    fn opt_int(&mut self, t: &mut Table, name: &str, lo: i64, hi: i64, what: &str) -> Option<i64> {
        if !t.entries.iter().any(|e| e.key.name == name) {
            return None;
        }
        // lo - 1 cannot be a value `int` accepts: it marks a refusal.
        Some(self.int(t, name, lo, hi, lo - 1, what)).filter(|&v| v >= lo)
    }

    fn boolean(&mut self, t: &mut Table, name: &str, default: bool) -> bool {
        let Some(f) = self.take(t, name) else {
            return default;
        };
        match f.node {
            Node::Boolean(b) => *b,
            _ => {
                self.wrong_type(&f, "true or false");
                default
            }
        }
    }

    /// A string value, or None if absent or not a string (reported).
    fn string<'a>(
        &mut self,
        t: &mut Table<'a>,
        name: &str,
        what: &str,
    ) -> Option<(String, Field<'a>)> {
        let f = self.take(t, name)?;
        match f.node {
            Node::String(s) => Some((s.clone(), f)),
            _ => {
                self.wrong_type(&f, what);
                None
            }
        }
    }

    /// A playlist text (tvg_id, tvg_name, group): goes into an `#EXTINF`
    /// attribute, so quotes and control characters (a newline would start a
    /// new playlist line) are refused.
    fn label(&mut self, t: &mut Table, name: &str) -> Option<String> {
        let what =
            "a non-empty string of at most 128 characters without quotes or control characters";
        let (s, f) = self.string(t, name, what)?;
        let problem = if s.is_empty() {
            Some("empty".to_string())
        } else if s.chars().count() > 128 {
            Some(format!("{} characters long", s.chars().count()))
        } else {
            s.chars()
                .find(|c| c.is_control() || *c == '"')
                .map(|c| format!("contains {:?}", c))
        };
        match problem {
            Some(p) => {
                self.error(
                    f.line,
                    &f.path,
                    format!("{}; expected {} (or leave the key out)", p, what),
                );
                None
            }
            None => Some(s),
        }
    }

    fn cidr_list(&mut self, t: &mut Table, name: &str, default: &[&str]) -> Vec<Cidr> {
        let Some(f) = self.take(t, name) else {
            return cidrs(default);
        };
        let Node::Array(items) = f.node else {
            self.wrong_type(
                &f,
                "an array of networks such as [\"10.0.0.0/8\", \"::1/128\"]",
            );
            return cidrs(default);
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{}]", f.path, i);
            let line = self.span_line(&item.span, f.line);
            self.lines.insert(path.clone(), line);
            match &item.node {
                Node::String(s) => match s.parse::<Cidr>() {
                    Ok(c) => out.push(c),
                    Err(e) => {
                        let msg = format!(
                            "{:?}: {}; expected a network such as \"10.0.0.0/8\" or \"fc00::/7\"",
                            s, e
                        );
                        self.error(line, &path, msg);
                    }
                },
                other => {
                    let msg = format!(
                        "found {}; expected a network string such as \"10.0.0.0/8\"",
                        other.describe()
                    );
                    self.error(line, &path, msg);
                }
            }
        }
        out
    }
}

/// A string that is an integer in TOML's own spellings, for the hint "write
/// it without quotes".
fn parse_int_text(s: &str) -> Option<i64> {
    let s = s.trim().replace('_', "");
    if let Some(h) = s.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

// "softcam", "cards" and "card" last: messages list the older keys first.
const ROOT_KEYS: &[&str] = &[
    "server",
    "access",
    "buffers",
    "adapter",
    "channel",
    "softcam",
    "cards",
    "card",
    "supervisor",
    "recovery",
    "probe",
    "monitor",
    "epg",
    "xmltv",
    "audience",
    "update",
];
const ADAPTER_KEYS: &[&str] = &[
    "name",
    "device",
    "frontend",
    "lnb",
    "switch",
    "pls_style",
    "dvr_buffer_bytes",
];
const SERVER_KEYS: &[&str] = &[
    "listen",
    "write_timeout_ms",
    "max_clients",
    "max_clients_per_address",
    "state_file",
    "tcp_congestion",
    "send_buffer_bytes",
];
const ACCESS_KEYS: &[&str] = &[
    "stream",
    "playlist",
    "metrics",
    "status",
    "control",
    "token",
    "control_token",
];
const BUFFERS_KEYS: &[&str] = &["ring_bytes", "chunk_bytes", "flush_ms"];
const CHANNEL_KEYS: &[&str] = &[
    "name",
    "tvg_id",
    "tvg_name",
    "group",
    "source",
    "fail_after_ms",
    "recover_after_ms",
    "slate",
    "close_after_ms",
];
#[path = "ca.rs"]
pub(super) mod ca;
const SOURCE_KEYS: &[&str] = &[
    "file",
    "adapter",
    "tune",
    "program",
    "loop",
    "biss",
    "biss_esw",
    "biss_id",
    "ca",
    "caid",
    "url",
    "token",
    "origin_local",
    "standby",
    "epg_charset",
];

const MIB: i64 = 1024 * 1024;

pub(super) fn parse(
    text: &str,
    file_name: &str,
    base_dir: &Path,
) -> Result<Config, Vec<Diagnostic>> {
    let mut w = Walker::new(text, file_name);
    let root = match node::parse_document(text) {
        Ok(root) => root,
        Err(e) => {
            let line = e.span().map(|s| w.line_at(s.start)).unwrap_or(0);
            // message() is toml's text without the rendered source excerpt.
            // It may span lines ("invalid table header\nexpected …"); a
            // diagnostic is one line.
            let msg = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            w.error(line, "", msg);
            return Err(w.errors);
        }
    };
    let Some(mut top) = w.table(&root, "", 1) else {
        return Err(w.errors);
    };

    let server = match w.take(&mut top, "server") {
        None => ServerConfig::default(),
        Some(f) => server(&mut w, f),
    };
    // The state file lives beside the config unless told otherwise.
    let mut server = server;
    if !w.lines.contains_key("server.state_file") && server.state_file.is_none() {
        server.state_file = Some(PathBuf::from(DEFAULT_STATE_FILE));
    }
    server.state_file = server.state_file.map(|p| base_dir.join(p));
    let access = match w.take(&mut top, "access") {
        None => AccessConfig::default(),
        Some(f) => access(&mut w, f),
    };
    let buffers = match w.take(&mut top, "buffers") {
        None => BuffersConfig::default(),
        Some(f) => buffers(&mut w, f),
    };
    // Outer Option: written (a broken one is reported on its keys).
    let softcam = w
        .take(&mut top, "softcam")
        .map(|f| softcam::softcam(&mut w, f));
    // Names of every [[adapter]] written, valid or not, so a source naming
    // a broken adapter is not reported twice.
    let mut adapter_names = Vec::new();
    let adapters = match w.take(&mut top, "adapter") {
        None => Vec::new(),
        Some(f) => adapters(&mut w, f, &mut adapter_names),
    };
    let channels = match w.take(&mut top, "channel") {
        None => {
            w.error(
                0,
                "channel",
                "missing; expected at least one [[channel]] table".to_string(),
            );
            Vec::new()
        }
        Some(f) => channels(&mut w, f, base_dir, &adapter_names),
    };
    let cards = cards::cards(&mut w, &mut top);
    let supervisor = supervisor::supervisor(&mut w, &mut top, base_dir);
    let monitor = match w.take(&mut top, "monitor") {
        None => monitor::MonitorConfig::default(),
        Some(f) => monitor::monitor(&mut w, f),
    };
    let update = update::update(&mut w, &mut top, base_dir);
    let recovery = match w.take(&mut top, "recovery") {
        None => crate::dvb::recovery::RecoveryConfig::default(),
        Some(f) => recovery::recovery(&mut w, f),
    };
    let probes = probes::probes(&mut w, &mut top);
    let epg = epg::epg(&mut w, &mut top, base_dir, &channels);
    w.finish(top, ROOT_KEYS);
    epg_charset_per_mux(&mut w, &channels);
    one_mux_per_adapter(&mut w, &channels);
    adapters::cable_rules(&mut w, &adapters, &channels);
    softcam::check_sources(&mut w, &channels, softcam.is_some());

    if !w.errors.is_empty() {
        return Err(w.errors);
    }
    Ok(Config {
        file: file_name.to_string(),
        base_dir: base_dir.to_path_buf(),
        server,
        access,
        buffers,
        softcam: softcam.flatten(),
        adapters,
        channels,
        cards,
        supervisor,
        update,
        recovery,
        probes,
        monitor,
        epg,
        lines: w.lines,
    })
}

fn server(w: &mut Walker, f: Field) -> ServerConfig {
    let d = ServerConfig::default();
    let Some(mut t) = open(w, &f) else { return d };
    let listen = match w.string(
        &mut t,
        "listen",
        "an address:port string such as \"0.0.0.0:8080\"",
    ) {
        None => d.listen,
        Some((s, f)) => match s.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let msg = format!(
                    "{:?} is not an address:port; expected e.g. \"0.0.0.0:8080\" or \"[::]:8080\"",
                    s
                );
                w.error(f.line, &f.path, msg);
                d.listen
            }
        },
    };
    let write_timeout_ms = w.int(
        &mut t,
        "write_timeout_ms",
        100,
        600_000,
        10_000,
        "milliseconds",
    );
    let max_clients = w.int(
        &mut t,
        "max_clients",
        1,
        65_536,
        512,
        "a number of connections",
    );
    let max_clients_per_address = w.int(
        &mut t,
        "max_clients_per_address",
        1,
        65_536,
        400,
        "a number of connections from one address",
    );
    let state_file = match w.string(&mut t, "state_file", "a path (\"\" for none)") {
        None => Some(PathBuf::from(DEFAULT_STATE_FILE)),
        Some((s, _)) if s.is_empty() => None,
        Some((s, sf)) if s.contains('\0') || s.ends_with('/') => {
            w.error(sf.line, &sf.path, "not a file path; expected a path such as \"/etc/capbox/capbox-state.json\", or \"\" for none".into());
            None
        }
        Some((s, _)) => Some(PathBuf::from(s)),
    };
    let tcp_congestion = w
        .string(
            &mut t,
            "tcp_congestion",
            "the name of a TCP congestion control such as \"bbr\" or \"cubic\"",
        )
        .and_then(|(s, f)| match congestion_name_problem(&s) {
            None => Some(s),
            Some(p) => {
                w.error(f.line, &f.path, p);
                None
            }
        });
    let send_buffer_bytes = w.opt_int(
        &mut t,
        "send_buffer_bytes",
        SEND_BUFFER_MIN,
        SEND_BUFFER_MAX,
        "bytes",
    );
    w.finish(t, SERVER_KEYS);
    ServerConfig {
        listen,
        write_timeout_ms: write_timeout_ms as u64,
        max_clients: max_clients as usize,
        max_clients_per_address: max_clients_per_address as usize,
        state_file,
        tcp_congestion,
        send_buffer_bytes: send_buffer_bytes.map(|n| n as usize),
    }
}

/// `send_buffer_bytes` range: below 16 KiB a connection cannot keep even
/// a LAN busy; 256 MiB is far beyond any path capbox serves.
const SEND_BUFFER_MIN: i64 = 16 * 1024;
const SEND_BUFFER_MAX: i64 = 256 * MIB;

/// Why `s` cannot be a kernel congestion control name, or None. The
/// kernel's names are short lower-case identifiers (TCP_CA_NAME_MAX = 16
/// with the NUL); whether this kernel has the one named is checked
/// against the kernel itself (check-config and serve), not here.
fn congestion_name_problem(s: &str) -> Option<String> {
    let expected = "expected the name of a TCP congestion control such as \"bbr\" or \"cubic\" \
                    (the kernel lists its own in /proc/sys/net/ipv4/tcp_available_congestion_control), \
                    or leave the key out for the kernel's default";
    if s.is_empty() || s.len() > 15 {
        return Some(format!("{s:?} is not 1..=15 characters; {expected}"));
    }
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Some(format!(
            "{s:?}: congestion control names are lower case (\"{}\"); {expected}",
            s.to_ascii_lowercase()
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Some(format!(
            "{s:?} holds a character other than a-z 0-9 _; {expected}"
        ));
    }
    None
}

/// Opens a taken field as a table.
fn open<'a>(w: &mut Walker, f: &Field<'a>) -> Option<Table<'a>> {
    w.table(f.sp, &f.path, f.line)
}

fn access(w: &mut Walker, f: Field) -> AccessConfig {
    let d = AccessConfig::default();
    let Some(mut t) = open(w, &f) else { return d };
    let stream = w.cidr_list(&mut t, "stream", &DEFAULT_LAN);
    let playlist = w.cidr_list(&mut t, "playlist", &DEFAULT_LAN);
    let metrics = w.cidr_list(&mut t, "metrics", &DEFAULT_LAN);
    let status = w.cidr_list(&mut t, "status", &DEFAULT_LAN);
    let control = w.cidr_list(&mut t, "control", &DEFAULT_LOCAL);
    let token = access_token(w, &mut t, "token");
    let control_token = access_token(w, &mut t, "control_token");
    w.finish(t, ACCESS_KEYS);
    AccessConfig {
        stream,
        playlist,
        metrics,
        status,
        control,
        token,
        control_token,
    }
}

/// A token of `[access]`: never echoed, usable in a URL unescaped.
fn access_token(w: &mut Walker, t: &mut Table, key: &str) -> Option<String> {
    match w.string(t, key, "a string") {
        None => None,
        Some((s, _)) if s.is_empty() => None,
        Some((s, f)) => {
            // Never echo the token: error messages reach logs.
            let ok_chars = s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !ok_chars || !(8..=256).contains(&s.len()) {
                let msg = "refused (value not shown); expected 8..=256 characters from \
                           A-Z a-z 0-9 - . _ ~ (usable in a URL without escaping), or \"\" for none"
                    .to_string();
                w.error(f.line, &f.path, msg);
                None
            } else {
                Some(s)
            }
        }
    }
}

fn buffers(w: &mut Walker, f: Field) -> BuffersConfig {
    let d = BuffersConfig::default();
    let Some(mut t) = open(w, &f) else { return d };
    let ring = w.int(
        &mut t,
        "ring_bytes",
        MIB,
        1024 * MIB,
        d.ring_bytes as i64,
        "bytes",
    );
    let chunk = w.int(
        &mut t,
        "chunk_bytes",
        16 * 1024,
        MIB,
        d.chunk_bytes as i64,
        "bytes",
    );
    if chunk > ring / 4 {
        // Both in range but a ring must hold several chunks for a slow
        // client to lag without being dropped at once.
        let path = join(&t.path, "chunk_bytes");
        let line = w.lines.get(&path).copied().unwrap_or(t.line);
        let msg = format!(
            "{} is more than a quarter of ring_bytes ({}); expected at most {}",
            chunk,
            ring,
            ring / 4
        );
        w.error(line, &path, msg);
    }
    let flush = w.int(
        &mut t,
        "flush_ms",
        1,
        1000,
        d.flush_ms as i64,
        "milliseconds",
    );
    w.finish(t, BUFFERS_KEYS);
    BuffersConfig {
        ring_bytes: ring as usize,
        chunk_bytes: chunk as usize,
        flush_ms: flush as u64,
    }
}

/// Why `name` cannot be a channel name (it is a URL path segment and a
/// metrics label), or None.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty".to_string());
    }
    if name.len() > 64 {
        return Some(format!("{} characters long", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(*c)))
    {
        let hint = if c.is_ascii_uppercase() {
            " (names are lowercase)"
        } else {
            ""
        };
        return Some(format!("{:?} contains {:?}{}", name, c, hint));
    }
    if name.bytes().all(|b| b == b'.') {
        return Some(format!("{:?} is only dots", name));
    }
    None
}

fn channels(
    w: &mut Walker,
    f: Field,
    base_dir: &Path,
    adapter_names: &[String],
) -> Vec<ChannelConfig> {
    let Node::Array(items) = f.node else {
        w.wrong_type(&f, "an array of tables: write [[channel]], not [channel]");
        return Vec::new();
    };
    if items.is_empty() {
        w.error(
            f.line,
            &f.path,
            "empty; expected at least one [[channel]] table".to_string(),
        );
    }
    let mut out = Vec::new();
    // name → line where first defined.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("channel[{}]", i);
        let Some(mut t) = w.table(item, &path, f.line) else {
            continue;
        };
        let name_what = "a channel name such as \"france2\" ([a-z0-9._-], at most 64)";
        let name = match w.string(&mut t, "name", name_what) {
            None => {
                if !t.entries.iter().any(|e| e.key.name == "name") {
                    let msg = format!("missing; expected {}", name_what);
                    w.error(t.line, &join(&path, "name"), msg);
                }
                None
            }
            Some((n, nf)) => match name_problem(&n) {
                Some(p) => {
                    w.error(nf.line, &nf.path, format!("{}; expected {}", p, name_what));
                    None
                }
                None => {
                    if let Some(first) = seen.get(&n) {
                        let msg = format!(
                            "duplicate channel name {:?} (first at line {}); expected unique names",
                            n, first
                        );
                        w.error(nf.line, &nf.path, msg);
                    } else {
                        seen.insert(n.clone(), nf.line);
                    }
                    Some(n)
                }
            },
        };
        let tvg_id = w.label(&mut t, "tvg_id");
        let tvg_name = w.label(&mut t, "tvg_name");
        let group = w.label(&mut t, "group");
        let sources = match w.take(&mut t, "source") {
            None => {
                let msg = "no sources; expected at least one [[channel.source]] table with a file"
                    .to_string();
                w.error(t.line, &join(&path, "source"), msg);
                Vec::new()
            }
            Some(sf) => sources(w, sf, base_dir, adapter_names),
        };
        let fail_after_ms = w.int(
            &mut t,
            "fail_after_ms",
            50,
            60_000,
            super::DEFAULT_FAIL_AFTER_MS as i64,
            "milliseconds the source on air may be unhealthy before a switch",
        ) as u64;
        let recover_after_ms = w.int(
            &mut t,
            "recover_after_ms",
            0,
            3_600_000,
            super::DEFAULT_RECOVER_AFTER_MS as i64,
            "milliseconds a preferred source must stay healthy before the channel goes back to it",
        ) as u64;
        let slate_what = "\"auto\" (a shipped slate in the channel's format), \"off\", \
                          or the path of a TS file";
        let slate = match w.string(&mut t, "slate", slate_what) {
            None if sources.len() > 1 => super::SlateSetting::Auto,
            None => super::SlateSetting::Off,
            Some((s, _)) if s == "auto" => super::SlateSetting::Auto,
            Some((s, _)) if s == "off" => super::SlateSetting::Off,
            Some((s, sf)) if s.is_empty() || s.contains('\0') => {
                w.error(
                    sf.line,
                    &sf.path,
                    format!("empty or not a path; expected {slate_what}"),
                );
                super::SlateSetting::Off
            }
            Some((s, _)) => super::SlateSetting::File(base_dir.join(s)),
        };
        let close_after_ms = w.int(
            &mut t,
            "close_after_ms",
            0,
            86_400_000,
            0,
            "milliseconds on the slate before the clients are disconnected (0: never)",
        ) as u64;
        let line = t.line;
        w.finish(t, CHANNEL_KEYS);
        if let Some(name) = name {
            out.push(ChannelConfig {
                tvg_id: tvg_id.unwrap_or_else(|| name.clone()),
                name,
                tvg_name,
                group,
                sources,
                fail_after_ms,
                recover_after_ms,
                slate,
                close_after_ms,
                line,
                key: path,
            });
        }
    }
    out
}

fn sources(
    w: &mut Walker,
    f: Field,
    base_dir: &Path,
    adapter_names: &[String],
) -> Vec<SourceConfig> {
    let Node::Array(items) = f.node else {
        w.wrong_type(&f, "an array of tables: write [[channel.source]]");
        return Vec::new();
    };
    if items.is_empty() {
        let msg = "no sources; expected at least one [[channel.source]] table with a file";
        w.error(f.line, &f.path, msg.to_string());
    }
    let max = crate::channel::MAX_SOURCES;
    if items.len() > max {
        w.error(
            f.line,
            &f.path,
            format!(
                "{} sources; expected at most {max} per channel",
                items.len()
            ),
        );
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate().take(max) {
        let path = format!("{}[{}]", f.path, i);
        let Some(mut t) = w.table(item, &path, f.line) else {
            continue;
        };
        let has = |t: &Table, k: &str| t.entries.iter().any(|e| e.key.name == k);
        let is_dvb = has(&t, "adapter") || has(&t, "tune");
        let is_remote = has(&t, "url");
        if is_remote && (is_dvb || has(&t, "file")) {
            w.error(
                t.line,
                &join(&path, "url"),
                "a source is a file, an adapter + tune, or a url: give one".to_string(),
            );
        }
        if is_dvb && has(&t, "file") {
            let line = t
                .entries
                .iter()
                .find(|e| e.key.name == "file")
                .map(|e| e.line)
                .unwrap_or(t.line);
            w.error(
                line,
                &join(&path, "file"),
                "a source is either a file or an adapter + tune, not both; remove one".to_string(),
            );
        }
        let file_what = "a path to an MPEG-TS file (relative to the config file's directory), \
                         or adapter + tune for a DVB source";
        if !is_remote {
            if let Some(e) = t.entries.iter_mut().find(|e| e.key.name == "standby") {
                e.used = true;
                w.error(
                    e.line,
                    &join(&path, "standby"),
                    "only a remote source (url) has a standby mode; a tuner or a file is always read"
                        .to_string(),
                );
            }
        }
        let remote = if is_remote {
            remote_source(w, &mut t)
        } else {
            None
        };
        let file = if is_dvb || is_remote {
            None
        } else {
            match w.string(&mut t, "file", file_what) {
                None => {
                    if !has(&t, "file") {
                        w.error(
                            t.line,
                            &join(&path, "file"),
                            format!("missing; expected {}", file_what),
                        );
                    }
                    None
                }
                Some((s, ff)) if s.is_empty() || s.contains('\0') => {
                    let what = if s.is_empty() {
                        "empty"
                    } else {
                        "contains a NUL byte"
                    };
                    w.error(
                        ff.line,
                        &ff.path,
                        format!("{}; expected {}", what, file_what),
                    );
                    None
                }
                Some((s, _)) => Some(s),
            }
        };
        let dvb = if is_dvb {
            dvb_source(w, &mut t, &path, adapter_names)
        } else {
            None
        };
        // A remote stream carries one program: by default whichever it is.
        let program = if is_remote {
            w.int(
                &mut t,
                "program",
                0,
                65_535,
                0,
                "a program_number (0: the stream's first)",
            )
        } else {
            w.int(&mut t, "program", 1, 65_535, 1, "a program_number")
        };
        let looping = w.boolean(&mut t, "loop", true);
        let biss = biss_key(w, &mut t, &path);
        let ca = ca::source_ca(w, &mut t, biss.is_some());
        let epg_charset = epg::charset(w, &mut t, "epg_charset");
        let line = t.line;
        // `file` of a DVB source was reported above; mark it used.
        if is_dvb {
            let _ = w.take(&mut t, "file");
        }
        w.finish(t, SOURCE_KEYS);
        if let Some(r) = remote {
            out.push(SourceConfig {
                file: PathBuf::new(),
                file_as_written: String::new(),
                dvb: None,
                remote: Some(r),
                program: program as u16,
                looping: true,
                biss: biss.clone(),
                ca: ca.clone(),
                epg_charset,
                line,
                key: path,
            });
        } else if let Some(written) = file {
            out.push(SourceConfig {
                file: base_dir.join(&written),
                file_as_written: written,
                dvb: None,
                remote: None,
                program: program as u16,
                looping,
                biss: biss.clone(),
                ca: ca.clone(),
                epg_charset,
                line,
                key: path,
            });
        } else if let Some(d) = dvb {
            out.push(SourceConfig {
                file: PathBuf::new(),
                file_as_written: String::new(),
                dvb: Some(d),
                remote: None,
                program: program as u16,
                looping,
                biss: biss.clone(),
                ca: ca.clone(),
                epg_charset,
                line,
                key: path,
            });
        }
    }
    out
}

/// `biss` (mode 1: the session word) or `biss_esw` + `biss_id` (mode E:
/// the encrypted session word and this receiver's injected ID). Messages
/// never quote a value (nor its type's rendering, which would show an
/// integer written by mistake).
fn biss_key(w: &mut Walker, t: &mut Table, path: &str) -> Option<crate::ca::biss::BissKey> {
    let what = "a BISS key: a string of 16 hex digits, or 12 for a 48-bit key";
    let clear = w.take(t, "biss");
    let esw = w.take(t, "biss_esw");
    let id = w.take(t, "biss_id");
    let secret = |w: &mut Walker, f: &Field, what: &str| match f.node {
        Node::String(s) => Some(s.to_string()),
        _ => {
            w.error(f.line, &f.path, format!("not a string; expected {what}"));
            None
        }
    };
    match (clear, esw, id) {
        (Some(f), None, None) => {
            let s = secret(w, &f, what)?;
            match crate::ca::biss::BissKey::parse(&s) {
                Ok(k) => Some(k),
                Err(e) => {
                    w.error(f.line, &f.path, format!("{e}; expected {what}"));
                    None
                }
            }
        }
        (None, None, None) => None,
        (Some(f), _, _) => {
            w.error(
                f.line,
                &f.path,
                "set together with `biss_esw`/`biss_id`; expected either the clear session \
                 word (`biss`, mode 1) or the encrypted one with the ID (mode E)"
                    .into(),
            );
            None
        }
        (None, Some(e), Some(i)) => {
            let esw_what = "the encrypted session word: a string of 16 hex digits";
            let id_what = "the receiver's injected ID: a string of 14 hex digits";
            let (esw, id) = (secret(w, &e, esw_what), secret(w, &i, id_what));
            let (esw, id) = (esw?, id?);
            match crate::ca::biss::BissKey::mode_e(&esw, &id) {
                Ok((k, checksums_ok)) => {
                    if !checksums_ok {
                        log::warn!(
                            "config line {}: {}: the session word deciphered from the ESW with \
                             this ID has checksum bytes that are not the CSA sums; if the \
                             channel reports a wrong key, check the ESW and the ID",
                            e.line,
                            e.path
                        );
                    }
                    Some(k)
                }
                Err(msg) => {
                    let (f, want) = if msg.starts_with("ID") {
                        (&i, id_what)
                    } else {
                        (&e, esw_what)
                    };
                    w.error(f.line, &f.path, format!("{msg}; expected {want}"));
                    None
                }
            }
        }
        (None, Some(f), None) => {
            w.error(
                f.line,
                &join(path, "biss_id"),
                "missing; BISS mode E (`biss_esw`) needs the receiver's injected ID, \
                 14 hex digits"
                    .into(),
            );
            None
        }
        (None, None, Some(f)) => {
            w.error(
                f.line,
                &join(path, "biss_esw"),
                "missing; `biss_id` (BISS mode E) needs the encrypted session word, \
                 16 hex digits"
                    .into(),
            );
            None
        }
    }
}

/// `url` (+ `token`, `origin_local`) of a remote source.
fn remote_source(w: &mut Walker, t: &mut Table) -> Option<super::RemoteSpec> {
    let url_what = "an http://host:port/path URL (another capbox's /stream/<channel>, \
                    or any HTTP MPEG-TS stream)";
    let (url, uf) = w.string(t, "url", url_what)?;
    if let Err(e) = crate::source::remote::HttpUrl::parse(&url, false) {
        w.error(uf.line, &uf.path, format!("{e}; expected {url_what}"));
        return None;
    }
    let token = match w.string(t, "token", "the peer's [access] token") {
        Some((s, tf)) if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            w.error(
                tf.line,
                &tf.path,
                "empty or holds spaces or control characters; expected the peer's [access] token"
                    .into(),
            );
            None
        }
        Some((s, _)) => Some(s),
        None => None,
    };
    let origin_local = w.boolean(t, "origin_local", true);
    let standby_what = "\"hot\" (pulled all the time) or \"cold\" (connected when needed)";
    let standby = match w.string(t, "standby", standby_what) {
        None => super::Standby::Hot,
        Some((s, _)) if s == "hot" => super::Standby::Hot,
        Some((s, _)) if s == "cold" => super::Standby::Cold,
        Some((s, sf)) => {
            w.error(
                sf.line,
                &sf.path,
                format!("{s:?} is not a standby mode; expected {standby_what}"),
            );
            super::Standby::Hot
        }
    };
    Some(super::RemoteSpec {
        url,
        token,
        origin_local,
        standby,
    })
}

/// `adapter` + `tune` of a DVB source.
fn dvb_source(
    w: &mut Walker,
    t: &mut Table,
    path: &str,
    adapter_names: &[String],
) -> Option<DvbSpec> {
    let adapter_what = "the name of an [[adapter]] table";
    let adapter = match w.string(t, "adapter", adapter_what) {
        None => {
            if !t.entries.iter().any(|e| e.key.name == "adapter") {
                w.error(
                    t.line,
                    &join(path, "adapter"),
                    format!("missing; a source with tune needs adapter, {adapter_what}"),
                );
            }
            None
        }
        Some((a, af)) => {
            if adapter_names.contains(&a) {
                Some(a)
            } else {
                let known = if adapter_names.is_empty() {
                    "none is defined".to_string()
                } else {
                    format!("defined: {}", adapter_names.join(", "))
                };
                w.error(
                    af.line,
                    &af.path,
                    format!("no [[adapter]] named {a:?} ({known}); expected {adapter_what}"),
                );
                None
            }
        }
    };
    let tune_what = "a tune string such as \"dvbt 474000000 8MHz\" or \
                     \"dvbs2 11362000 V 22000000 8psk 3/4\"";
    let tuning = match w.string(t, "tune", tune_what) {
        None => {
            if !t.entries.iter().any(|e| e.key.name == "tune") {
                w.error(
                    t.line,
                    &join(path, "tune"),
                    format!("missing; a source with adapter needs tune, {tune_what}"),
                );
            }
            None
        }
        Some((s, tf)) => match Tuning::from_args(&s) {
            Ok(tu) => Some(tu),
            Err(e) => {
                w.error(tf.line, &tf.path, format!("{e}; expected {tune_what}"));
                None
            }
        },
    };
    let (adapter, tuning) = (adapter?, tuning?);
    Some(DvbSpec {
        adapter,
        mux: tuning.to_args(),
        tuning,
    })
}

fn adapters(w: &mut Walker, f: Field, names: &mut Vec<String>) -> Vec<AdapterConfig> {
    let Node::Array(items) = f.node else {
        w.wrong_type(&f, "an array of tables: write [[adapter]], not [adapter]");
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("adapter[{}]", i);
        let Some(mut t) = w.table(item, &path, f.line) else {
            continue;
        };
        let name_what = "an adapter label such as \"sat1\" ([a-z0-9._-], at most 64)";
        let name = match w.string(&mut t, "name", name_what) {
            None => {
                if !t.entries.iter().any(|e| e.key.name == "name") {
                    let msg = format!("missing; expected {}", name_what);
                    w.error(t.line, &join(&path, "name"), msg);
                }
                None
            }
            Some((n, nf)) => {
                names.push(n.clone());
                match name_problem(&n) {
                    Some(p) => {
                        w.error(nf.line, &nf.path, format!("{}; expected {}", p, name_what));
                        None
                    }
                    None => {
                        if let Some(first) = seen.get(&n) {
                            let msg = format!(
                                "duplicate adapter name {:?} (first at line {}); expected unique names",
                                n, first
                            );
                            w.error(nf.line, &nf.path, msg);
                        } else {
                            seen.insert(n.clone(), nf.line);
                        }
                        Some(n)
                    }
                }
            }
        };
        let dev_what = "a stable tuner name from `capbox adapters` (usb-…) or \"adapterN\"";
        let device = match w.string(&mut t, "device", dev_what) {
            None => {
                if !t.entries.iter().any(|e| e.key.name == "device") {
                    w.error(
                        t.line,
                        &join(&path, "device"),
                        format!("missing; expected {dev_what}"),
                    );
                }
                None
            }
            Some((d, df)) => {
                let ok = !d.is_empty()
                    && d.len() <= 128
                    && d.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
                if ok {
                    Some(d)
                } else {
                    w.error(
                        df.line,
                        &df.path,
                        format!("{d:?} is not a device name; expected {dev_what}"),
                    );
                    None
                }
            }
        };
        let frontend = w.int(&mut t, "frontend", 0, 15, 0, "a frontend number") as u32;
        let lnb = match w.string(&mut t, "lnb", "an LNB type such as \"universal\"") {
            None => None,
            Some((l, lf)) => match Lnb::from_name(&l) {
                Ok(l) => Some(l),
                Err(e) => {
                    w.error(
                        lf.line,
                        &lf.path,
                        format!("{e}; expected universal, circular, cband, dbs, standard, enhanced, single:<LOF MHz>, cband:<LOF MHz> or <low>,<high>,<switch> in MHz"),
                    );
                    None
                }
            },
        };
        let switch = match w.string(&mut t, "switch", "a switch such as \"committed:2\"") {
            None => Switch::None,
            Some((sw, sf)) => match parse_switch(&sw) {
                Ok(s) => {
                    if s != Switch::None && lnb.is_none() {
                        w.error(sf.line, &sf.path, "a switch needs an lnb on the same adapter; add lnb = \"universal\" (or the LNB type)".to_string());
                    }
                    s
                }
                Err(e) => {
                    w.error(sf.line, &sf.path, format!("{e}; expected none, burst:a, burst:b, committed:<0..3>, uncommitted:<0..15>, cascade:<c>:<u> or unicable:en50494|en50607:ub=<n>:freq=<MHz>[:pos=<n>][:pin=<n>]"));
                    Switch::None
                }
            },
        };
        let pls_style = match w.string(&mut t, "pls_style", "\"mainline\" or \"tbs\"") {
            None => PlsStyle::Mainline,
            Some((p, pf)) => match p.as_str() {
                "mainline" => PlsStyle::Mainline,
                "tbs" => PlsStyle::Tbs,
                _ => {
                    w.error(pf.line, &pf.path, format!("{p:?} is not a PLS style; expected \"mainline\" (DTV_SCRAMBLING_SEQUENCE_INDEX) or \"tbs\" (TBS drivers: PLS in DTV_STREAM_ID)"));
                    PlsStyle::Mainline
                }
            },
        };
        let dvr = if t.entries.iter().any(|e| e.key.name == "dvr_buffer_bytes") {
            Some(w.int(
                &mut t,
                "dvr_buffer_bytes",
                188 * 1024,
                256 * MIB,
                0,
                "bytes",
            ) as usize)
        } else {
            None
        };
        let extra = adapters::extra(w, &mut t, &path);
        let line = t.line;
        w.finish(t, &[ADAPTER_KEYS, adapters::KEYS].concat());
        if let (Some(name), Some(device)) = (name, device) {
            out.push(AdapterConfig {
                name,
                device,
                frontend,
                lnb,
                switch,
                pls_style,
                dvr_buffer_bytes: dvr.filter(|&b| b > 0),
                pid_filter: extra.pid_filter,
                cable: extra.cable,
                line,
                key: path,
            });
        }
    }
    out
}

/// A tuner carries one mux: channels on one adapter must all want the same
/// one. Reported once per adapter, on the first source of a second mux.
/// Channels on one mux read one EIT: two sources of that mux with
/// different `epg_charset`s cannot both be right.
fn epg_charset_per_mux(w: &mut Walker, channels: &[ChannelConfig]) {
    let mut first: BTreeMap<crate::source::runner::MuxKey, (crate::ts::text::Charset, String)> =
        BTreeMap::new();
    for s in channels.iter().flat_map(|c| c.sources.iter()) {
        let Some(cs) = s.epg_charset else { continue };
        let key = crate::source::runner::MuxKey::of(s);
        match first.get(&key) {
            Some((other, at)) if *other != cs => {
                let path = format!("{}.epg_charset", s.key);
                let line = w.lines.get(&path).copied().unwrap_or(s.line);
                w.error(
                    line,
                    &path,
                    format!(
                        "{cs:?}, but {at} says {other:?} for the same mux ({}); one mux has \
                         one EIT: give the same table or leave one out",
                        key.describe()
                    ),
                );
            }
            Some(_) => {}
            None => {
                first.insert(key, (cs, format!("{}.epg_charset", s.key)));
            }
        }
    }
}

fn one_mux_per_adapter(w: &mut Walker, channels: &[ChannelConfig]) {
    // adapter → its muxes, each with (channels, first source line, key).
    type Mux<'a> = (&'a str, Vec<&'a str>, usize, String);
    let mut by_adapter: BTreeMap<&str, Vec<Mux>> = BTreeMap::new();
    for c in channels {
        for s in &c.sources {
            let Some(d) = &s.dvb else { continue };
            let muxes = by_adapter.entry(&d.adapter).or_default();
            match muxes.iter_mut().find(|m| m.0 == d.mux) {
                Some(m) => {
                    if !m.1.contains(&c.name.as_str()) {
                        m.1.push(&c.name)
                    }
                }
                None => {
                    let key = format!("{}.tune", s.key);
                    let line = w.lines.get(&key).copied().unwrap_or(s.line);
                    muxes.push((&d.mux, vec![&c.name], line, key));
                }
            }
        }
    }
    for (adapter, muxes) in by_adapter {
        if muxes.len() < 2 {
            continue;
        }
        let list: Vec<String> = muxes
            .iter()
            .map(|(mux, chans, _, _)| format!("\"{mux}\" (channels {})", chans.join(", ")))
            .collect();
        let (_, _, line, key) = &muxes[1];
        let msg = format!(
            "adapter {adapter:?} would need {} muxes at once but a tuner carries one: {}; \
             expected every source on {adapter:?} to tune the same mux (add an [[adapter]] per mux)",
            muxes.len(),
            list.join(", ")
        );
        w.error(*line, key, msg);
    }
}
