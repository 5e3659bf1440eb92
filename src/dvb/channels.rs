//! dvbv5 channel files and dtv-scan-tables initial tuning files.
//!
//! Owns: reading and writing the key = value format of libdvbv5
//! (v4l-utils lib/libdvbv5/dvb-file.c, what `dvbv5-scan` writes and
//! `dvbv5-zap` reads) and of the dtv-scan-tables initial files (the same
//! format, `[CHANNEL]` sections without services), and a capbox `[[channel]]`
//! config snippet from scanned entries.
//!
//! Format, as libdvbv5 reads it: leading blanks are skipped; empty lines and
//! lines starting with `#` are comments; `[NAME]` opens an entry (the name
//! ends at the first `]`; `[CHANNEL]` means unnamed); other lines are
//! `KEY = VALUE` with blanks around both. Keys are case-insensitive. PIDs are
//! blank-separated lists. Unknown keys are ignored by libdvbv5 for forward
//! compatibility; capbox keeps them (`extra`) so a rewrite loses nothing.
//! Files are UTF-8 or, failing that, Latin-1 (some dtv-scan-tables files).
//!
//! Promises: no panics on any bytes; every error names the file, the line and
//! the key; memory is proportional to the input.

use std::fmt;

use crate::dvb::tuning::{Tuning, TuningError};

/// One `[...]` section: a service (from dvbv5-scan) or a bare mux (initial
/// tuning file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEntry {
    /// Service name; `None` for `[CHANNEL]`.
    pub name: Option<String>,
    pub vchannel: Option<String>,
    pub service_id: Option<u16>,
    pub video_pids: Vec<u16>,
    pub audio_pids: Vec<u16>,
    /// `PID_xx = ...`: other elementary streams by stream_type (hex in the key).
    pub other_pids: Vec<(u8, Vec<u16>)>,
    pub sat_number: Option<i32>,
    pub freq_bpf: Option<u32>,
    pub diseqc_wait: Option<u32>,
    pub lnb: Option<String>,
    pub tuning: Tuning,
    /// Keys capbox does not interpret, in file order.
    pub extra: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelErrorKind {
    /// The line is not `[name]` or `KEY = VALUE`, or has no section.
    Syntax(String),
    /// The entry's tuning parameters are wrong or impossible.
    Tuning(TuningError),
    /// A service/PID key with a bad value.
    BadValue(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFileError {
    pub file: String,
    pub line: usize,
    pub key: Option<String>,
    pub kind: ChannelErrorKind,
}

impl ChannelFileError {
    /// The entry uses a delivery system capbox does not tune (ATSC, ISDB...):
    /// skipped with a note rather than a failure by callers that scan whole
    /// directories.
    pub fn is_unsupported_system(&self) -> bool {
        matches!(
            self.kind,
            ChannelErrorKind::Tuning(TuningError::UnsupportedSystem(_))
        )
    }
}

impl fmt::Display for ChannelFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        match &self.kind {
            ChannelErrorKind::Syntax(s) | ChannelErrorKind::BadValue(s) => write!(f, "{s}"),
            ChannelErrorKind::Tuning(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ChannelFileError {}

/// Keys that describe the mux (handed to `Tuning::from_pairs`).
const TUNING_KEYS: &[&str] = &[
    "DELIVERY_SYSTEM",
    "FREQUENCY",
    "SYMBOL_RATE",
    "POLARIZATION",
    "MODULATION",
    "INNER_FEC",
    "ROLLOFF",
    "PILOT",
    "STREAM_ID",
    "PLS_CODE",
    "PLS_MODE",
    "BANDWIDTH_HZ",
    "CODE_RATE_HP",
    "CODE_RATE_LP",
    "GUARD_INTERVAL",
    "TRANSMISSION_MODE",
    "HIERARCHY",
    "INVERSION",
];

/// Decodes a file's bytes: UTF-8, else Latin-1 (every byte a code point).
pub fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&c| char::from(c)).collect(),
    }
}

struct Section {
    header_line: usize,
    name: Option<String>,
    /// (line, key as written, value)
    pairs: Vec<(usize, String, String)>,
}

/// Reads a whole file; the first error stops it.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<ChannelEntry>, ChannelFileError> {
    let (entries, mut errors) = parse_lenient(file, bytes);
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors.swap_remove(0))
    }
}

/// Reads a whole file, skipping bad entries: the good entries and one error
/// per bad entry (or bad line outside an entry).
pub fn parse_lenient(file: &str, bytes: &[u8]) -> (Vec<ChannelEntry>, Vec<ChannelFileError>) {
    let text = decode(bytes);
    let mut sections: Vec<Section> = Vec::new();
    let mut errors = Vec::new();
    let err = |line: usize, key: Option<&str>, kind: ChannelErrorKind| ChannelFileError {
        file: file.to_string(),
        line,
        key: key.map(str::to_string),
        kind,
    };
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let l = raw.trim_start_matches([' ', '\t']);
        if l.is_empty() || l.starts_with('#') || l.trim().is_empty() {
            continue;
        }
        if let Some(rest) = l.strip_prefix('[') {
            let Some((name, _)) = rest.split_once(']') else {
                errors.push(err(
                    line_no,
                    None,
                    ChannelErrorKind::Syntax("section name without closing ]".into()),
                ));
                continue;
            };
            let name = name.trim();
            let name = if name.is_empty() || name.eq_ignore_ascii_case("CHANNEL") {
                None
            } else {
                Some(name.to_string())
            };
            sections.push(Section {
                header_line: line_no,
                name,
                pairs: Vec::new(),
            });
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            errors.push(err(
                line_no,
                None,
                ChannelErrorKind::Syntax(format!("expected KEY = VALUE, got {:?}", l.trim())),
            ));
            continue;
        };
        let key = k.trim();
        if key.is_empty() {
            errors.push(err(
                line_no,
                None,
                ChannelErrorKind::Syntax("missing key before =".into()),
            ));
            continue;
        }
        match sections.last_mut() {
            Some(s) => s
                .pairs
                .push((line_no, key.to_string(), v.trim().to_string())),
            None => errors.push(err(
                line_no,
                Some(key),
                ChannelErrorKind::Syntax("key/value before the first [section]".into()),
            )),
        }
    }
    let mut entries = Vec::with_capacity(sections.len());
    for s in sections {
        match build_entry(file, s) {
            Ok(e) => entries.push(e),
            Err(e) => errors.push(e),
        }
    }
    errors.sort_by_key(|e| e.line);
    (entries, errors)
}

fn parse_pids(file: &str, line: usize, key: &str, v: &str) -> Result<Vec<u16>, ChannelFileError> {
    v.split_whitespace()
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&pid| pid <= 0x1fff)
                .ok_or_else(|| ChannelFileError {
                    file: file.to_string(),
                    line,
                    key: Some(key.to_string()),
                    kind: ChannelErrorKind::BadValue(format!("bad PID {p:?} (0..8191)")),
                })
        })
        .collect()
}

fn build_entry(file: &str, s: Section) -> Result<ChannelEntry, ChannelFileError> {
    let bad = |line: usize, key: &str, msg: String| ChannelFileError {
        file: file.to_string(),
        line,
        key: Some(key.to_string()),
        kind: ChannelErrorKind::BadValue(msg),
    };
    let mut tuning_pairs: Vec<(usize, &str, &str)> = Vec::new();
    let mut e = ChannelEntryDraft::default();
    for (line, key, value) in &s.pairs {
        let upper = key.to_ascii_uppercase();
        let v = value.as_str();
        match upper.as_str() {
            k if TUNING_KEYS.contains(&k) => tuning_pairs.push((*line, key, v)),
            "SERVICE_ID" => {
                e.service_id = Some(
                    v.parse::<u16>()
                        .map_err(|_| bad(*line, key, format!("bad service id {v:?}")))?,
                )
            }
            "VCHANNEL" => e.vchannel = Some(v.to_string()),
            "VIDEO_PID" => e.video_pids = parse_pids(file, *line, key, v)?,
            "AUDIO_PID" => e.audio_pids = parse_pids(file, *line, key, v)?,
            "SAT_NUMBER" => {
                e.sat_number = Some(
                    v.parse::<i32>()
                        .map_err(|_| bad(*line, key, format!("bad number {v:?}")))?,
                )
            }
            "FREQ_BPF" => {
                e.freq_bpf = Some(
                    v.parse::<u32>()
                        .map_err(|_| bad(*line, key, format!("bad number {v:?}")))?,
                )
            }
            "DISEQC_WAIT" => {
                e.diseqc_wait = Some(
                    v.parse::<u32>()
                        .map_err(|_| bad(*line, key, format!("bad number {v:?}")))?,
                )
            }
            "LNB" => e.lnb = Some(v.to_string()),
            k if k.starts_with("PID_") => {
                let st = u8::from_str_radix(&k[4..], 16)
                    .map_err(|_| bad(*line, key, "bad stream type in key".to_string()))?;
                e.other_pids.push((st, parse_pids(file, *line, key, v)?));
            }
            _ => e.extra.push((key.clone(), value.clone())),
        }
    }
    let tuning =
        Tuning::from_pairs(tuning_pairs.iter().map(|(_, k, v)| (*k, *v))).map_err(|te| {
            // Point at the key's line when the error names one.
            let named = match &te {
                TuningError::BadValue { key, .. } | TuningError::UnknownKey(key) => {
                    Some(key.clone())
                }
                TuningError::UnsupportedSystem(_) => Some("DELIVERY_SYSTEM".to_string()),
                TuningError::Missing(k) => Some((*k).to_string()),
                _ => None,
            };
            let line = named
                .as_ref()
                .and_then(|n| {
                    tuning_pairs
                        .iter()
                        .find(|(_, k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(l, _, _)| *l)
                })
                .unwrap_or(s.header_line);
            ChannelFileError {
                file: file.to_string(),
                line,
                key: named,
                kind: ChannelErrorKind::Tuning(te),
            }
        })?;
    Ok(ChannelEntry {
        name: s.name,
        vchannel: e.vchannel,
        service_id: e.service_id,
        video_pids: e.video_pids,
        audio_pids: e.audio_pids,
        other_pids: e.other_pids,
        sat_number: e.sat_number,
        freq_bpf: e.freq_bpf,
        diseqc_wait: e.diseqc_wait,
        lnb: e.lnb,
        tuning,
        extra: e.extra,
    })
}

#[derive(Default)]
struct ChannelEntryDraft {
    vchannel: Option<String>,
    service_id: Option<u16>,
    video_pids: Vec<u16>,
    audio_pids: Vec<u16>,
    other_pids: Vec<(u8, Vec<u16>)>,
    sat_number: Option<i32>,
    freq_bpf: Option<u32>,
    diseqc_wait: Option<u32>,
    lnb: Option<String>,
    extra: Vec<(String, String)>,
}

/// A name as it can stand between `[` and `]` on one line.
fn header_name(name: &str) -> String {
    name.chars()
        .map(|c| if c == ']' || c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn one_line(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Writes entries in the dvbv5 format, in the order libdvbv5's
/// `dvb_write_file` uses: name, VCHANNEL, SERVICE_ID, VIDEO_PID, AUDIO_PID,
/// PID_xx, SAT_NUMBER, FREQ_BPF, DISEQC_WAIT, LNB, then the tuning
/// properties (DELIVERY_SYSTEM first), then keys capbox kept but does not
/// interpret; a blank line after each entry.
pub fn write(entries: &[ChannelEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        match e.name.as_deref().map(header_name) {
            Some(n) if !n.is_empty() && !n.eq_ignore_ascii_case("CHANNEL") => {
                out.push_str(&format!("[{n}]\n"))
            }
            _ => out.push_str("[CHANNEL]\n"),
        }
        if let Some(v) = &e.vchannel {
            out.push_str(&format!("\tVCHANNEL = {}\n", one_line(v)));
        }
        if let Some(sid) = e.service_id {
            out.push_str(&format!("\tSERVICE_ID = {sid}\n"));
        }
        let pids = |label: &str, p: &[u16]| {
            let list: Vec<String> = p.iter().map(u16::to_string).collect();
            format!("\t{label} = {}\n", list.join(" "))
        };
        if !e.video_pids.is_empty() {
            out.push_str(&pids("VIDEO_PID", &e.video_pids));
        }
        if !e.audio_pids.is_empty() {
            out.push_str(&pids("AUDIO_PID", &e.audio_pids));
        }
        for (st, p) in &e.other_pids {
            if !p.is_empty() {
                out.push_str(&pids(&format!("PID_{st:02x}"), p));
            }
        }
        if let Some(n) = e.sat_number {
            out.push_str(&format!("\tSAT_NUMBER = {n}\n"));
        }
        if let Some(n) = e.freq_bpf {
            out.push_str(&format!("\tFREQ_BPF = {n}\n"));
        }
        if let Some(n) = e.diseqc_wait {
            out.push_str(&format!("\tDISEQC_WAIT = {n}\n"));
        }
        if let Some(l) = &e.lnb {
            out.push_str(&format!("\tLNB = {}\n", one_line(l)));
        }
        for (k, v) in e.tuning.to_dvbv5_pairs() {
            out.push_str(&format!("\t{k} = {v}\n"));
        }
        for (k, v) in &e.extra {
            out.push_str(&format!("\t{} = {}\n", one_line(k), one_line(v)));
        }
        out.push('\n');
    }
    out
}

/// Folds a service name to a capbox channel name: `[a-z0-9._-]`, 1..=64
/// characters. Latin letters lose their accents; anything else becomes `-`;
/// runs of `-` collapse.
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        let mapped: &str = match c {
            'a'..='z' | '0'..='9' | '.' | '_' => {
                out.push(c);
                continue;
            }
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => "a",
            'æ' => "ae",
            'ç' => "c",
            'è' | 'é' | 'ê' | 'ë' => "e",
            'ì' | 'í' | 'î' | 'ï' => "i",
            'ñ' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => "o",
            'ù' | 'ú' | 'û' | 'ü' => "u",
            'ý' | 'ÿ' => "y",
            'ß' => "ss",
            '+' => "plus",
            '&' => "and",
            _ => "-",
        };
        if mapped == "-" {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push_str(mapped);
        }
    }
    let mut s: String = out.trim_matches('-').chars().take(64).collect();
    while s.ends_with('-') {
        s.pop();
    }
    s
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A capbox config snippet: one `[[channel]]` per entry that has a service
/// id, with a `[[channel.source]]` naming the mux in `capbox tune` syntax
/// (`tune = "dvbs2 11362000 H ..."`) and the service as `program`. Names are
/// sanitized and made unique (`-2`, `-3`...); an entry without a usable name
/// becomes `service-<id>`. The DVB source keys follow the tune syntax of
/// `dvb::tuning`; the config module must accept them (not yet in
/// src/config/REFERENCE.md).
pub fn capbox_config_snippet(entries: &[ChannelEntry]) -> String {
    let mut used: Vec<String> = Vec::new();
    let mut out = String::new();
    for e in entries {
        let Some(sid) = e.service_id else { continue };
        let base = e
            .name
            .as_deref()
            .map(sanitize_name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("service-{sid}"));
        let mut name = base.clone();
        let mut n = 2;
        while used.contains(&name) {
            let suffix = format!("-{n}");
            let keep = 64usize.saturating_sub(suffix.len());
            name = format!("{}{suffix}", &base[..base.len().min(keep)]);
            n += 1;
        }
        used.push(name.clone());
        out.push_str("[[channel]]\n");
        out.push_str(&format!("name = {}\n", toml_string(&name)));
        if let Some(title) = &e.name {
            let title: String = title
                .chars()
                .filter(|c| !c.is_control() && *c != '"')
                .take(128)
                .collect();
            if !title.is_empty() {
                out.push_str(&format!("tvg_name = {}\n", toml_string(&title)));
            }
        }
        out.push_str("\n[[channel.source]]\n");
        out.push_str(&format!("tune = {}\n", toml_string(&e.tuning.to_args())));
        out.push_str(&format!("program = {sid}\n\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCANNED: &str = "\
# written by hand in the layout dvbv5-scan uses
[Das Erste HD]
\tSERVICE_ID = 10301
\tVIDEO_PID = 5101
\tAUDIO_PID = 5102 5103 5106
\tPID_06 = 5104 5105
\tLNB = UNIVERSAL
\tFREQUENCY = 11494000
\tMODULATION = PSK/8
\tDELIVERY_SYSTEM = DVBS2
\tPOLARIZATION = HORIZONTAL
\tSYMBOL_RATE = 22000000
\tINNER_FEC = 2/3
\tROLLOFF = 35
\tPILOT = AUTO
\tINVERSION = AUTO
\tSTREAM_ID = 4294967295

[CHANNEL]
  DELIVERY_SYSTEM=DVBT
  FREQUENCY=474000000
  BANDWIDTH_HZ=8000000
  FUTURE_KEY = kept
";

    #[test]
    fn reads_scanned_entries() {
        let v = parse("scan.conf", SCANNED.as_bytes()).unwrap();
        assert_eq!(v.len(), 2);
        let e = &v[0];
        assert_eq!(e.name.as_deref(), Some("Das Erste HD"));
        assert_eq!(e.service_id, Some(10301));
        assert_eq!(e.audio_pids, vec![5102, 5103, 5106]);
        assert_eq!(e.other_pids, vec![(6, vec![5104, 5105])]);
        assert_eq!(e.lnb.as_deref(), Some("UNIVERSAL"));
        match e.tuning {
            Tuning::DvbS2(p) => {
                assert_eq!(p.frequency_khz, 11_494_000);
                assert_eq!(p.stream_id, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(v[1].name, None);
        assert_eq!(
            v[1].extra,
            vec![("FUTURE_KEY".to_string(), "kept".to_string())]
        );
    }

    #[test]
    fn round_trip() {
        let v = parse("scan.conf", SCANNED.as_bytes()).unwrap();
        let text = write(&v);
        let again = parse("rewritten.conf", text.as_bytes()).unwrap();
        assert_eq!(v, again);
        assert_eq!(write(&again), text);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = "[A]\n\tDELIVERY_SYSTEM = DVBS\n\tFREQUENCY = 11362000\n\tPOLARIZATION = DIAGONAL\n\tSYMBOL_RATE = 22000000\n";
        let e = parse("bad.conf", text.as_bytes()).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("bad.conf", 4));
        assert_eq!(e.key.as_deref(), Some("POLARIZATION"));
        assert!(
            e.to_string().starts_with("bad.conf:4: POLARIZATION:"),
            "{e}"
        );

        let text = "[A]\n\tDELIVERY_SYSTEM = DVBS\n\tFREQUENCY = 11362000\n\tPOLARIZATION = V\n\tSYMBOL_RATE = 22000000\n\tMODULATION = PSK/8\n";
        let e = parse("bad.conf", text.as_bytes()).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.to_string().contains("QPSK only"), "{e}");

        let e = parse("x", b"FREQUENCY = 1\n").unwrap_err();
        assert!(e.to_string().contains("before the first [section]"), "{e}");
        let e = parse("x", b"[A\n").unwrap_err();
        assert!(matches!(e.kind, ChannelErrorKind::Syntax(_)));
        let e = parse(
            "x",
            b"[A]\n\tDELIVERY_SYSTEM = DVBT\n\tFREQUENCY = 474000000\n\tAUDIO_PID = 12 x\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (4, Some("AUDIO_PID")));
        let e = parse(
            "x",
            b"[A]\n\tDELIVERY_SYSTEM = ISDBT\n\tFREQUENCY = 474000000\n",
        )
        .unwrap_err();
        assert!(e.is_unsupported_system());
        assert_eq!(e.line, 2);
    }

    #[test]
    fn latin1_names() {
        let mut bytes = b"[RNE Arag".to_vec();
        bytes.push(0xF3);
        bytes.extend_from_slice(b"n]\n\tDELIVERY_SYSTEM = DVBT\n\tFREQUENCY = 474000000\n");
        let v = parse("es", &bytes).unwrap();
        assert_eq!(v[0].name.as_deref(), Some("RNE Aragón"));
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_name("Das Erste HD"), "das-erste-hd");
        assert_eq!(sanitize_name("RNE Aragón"), "rne-aragon");
        assert_eq!(sanitize_name("  ***  "), "");
        assert_eq!(sanitize_name("Canal+ Sport 1"), "canalplus-sport-1");
        assert_eq!(sanitize_name("N24 Doku (HD)"), "n24-doku-hd");
        assert_eq!(sanitize_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn config_snippet() {
        let mut v = parse("scan.conf", SCANNED.as_bytes()).unwrap();
        let mut dup = v[0].clone();
        dup.service_id = Some(10302);
        v.push(dup);
        let s = capbox_config_snippet(&v);
        // Parses as TOML and carries what a channel needs.
        let doc: toml::Value = toml::from_str(&s).unwrap();
        let ch = doc["channel"].as_array().unwrap();
        assert_eq!(ch.len(), 2, "entry without service id skipped");
        assert_eq!(ch[0]["name"].as_str(), Some("das-erste-hd"));
        assert_eq!(ch[1]["name"].as_str(), Some("das-erste-hd-2"));
        assert_eq!(ch[0]["tvg_name"].as_str(), Some("Das Erste HD"));
        let src = &ch[0]["source"][0];
        assert_eq!(src["program"].as_integer(), Some(10301));
        let tune = src["tune"].as_str().unwrap();
        assert_eq!(Tuning::from_args(tune).unwrap(), v[0].tuning);
    }
}
