//! `capbox probe <file|url>`: what is in a transport stream, in one screen.
//!
//! Owns the probe: reading a bounded amount of a file or of an `http://`
//! stream, the per-PID accounting (packets, CC errors, scrambling, PCR and
//! PTS clocks), the PSI/SI picture (PAT, PMT, CAT, SDT actual, NIT actual)
//! and its two renderings, an 80-column text report and a JSON document
//! (both from the one `Report`, so they cannot disagree).
//!
//! Promises: bounded memory (one read buffer, one section per PSI PID, one
//! record per PID — at most 8192 — and per program), never panics on input,
//! every refused byte or section is counted in the report. Bit rates come
//! from the PCR clock of the capture (the mux rate between PCRs of the PID
//! with the longest PCR-measured span, spread over the PIDs by their packet
//! share); with no usable PCR, from the longest PTS span of a PID.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::source::Resync;
use crate::ts::cat::CatRepr;
use crate::ts::descriptor::{self, tag};
use crate::ts::nit::NitRepr;
use crate::ts::packet::{pcr_delta, Packet, PCR_HZ};
use crate::ts::pat::{PatRepr, MAX_PAT_ENTRIES};
use crate::ts::pes::{pts_delta, PesHeader, PTS_HZ};
use crate::ts::pmt::{stream_type_name, PmtRepr, PmtStream};
use crate::ts::sdt::{SdtRepr, SdtService};
use crate::ts::section::{Assembler, AssemblerStats, Section};
use crate::ts::text::clean_name;
use crate::ts::{pid, table_id, PACKET_SIZE};

const USAGE: &str = "\
usage: capbox probe <file|http://host[:port]/path>
                    [--json] [--seconds N] [--bytes N]

Show what a transport stream carries: transport_stream_id, network,
programs (PMT PID, PCR PID, service name, provider, CA systems), their
streams (PID, stream_type, language, bit rate), EMM PIDs and a per-PID
table (packets, bit rate, CC errors, scrambling, PIDs no table refers to).

  --json        print a JSON document instead of text
  --seconds N   for a URL: read for N seconds (default 5)
  --bytes N     read at most N bytes (default 67108864 = 64 MiB);
                suffixes k, M, G (powers of 1024) are accepted
  -h, --help    this text

Exit status: 0 success, 1 the input could not be probed, 2 bad usage.";

/// Default read bound: 64 MiB, a few minutes of a busy mux.
const DEFAULT_MAX_BYTES: u64 = 64 << 20;
const DEFAULT_SECONDS: f64 = 5.0;
/// Text report width.
pub const TEXT_WIDTH: usize = 80;
/// A PCR step longer than this is a gap or a jump, not stream time.
const MAX_PCR_STEP: u64 = PCR_HZ;
/// A PTS step longer than half the circle is taken as going backwards.
const PTS_HALF: u64 = 1 << 32;
/// Largest HTTP response head we accept.
const MAX_HTTP_HEAD: usize = 16 * 1024;

struct Opts {
    input: String,
    json: bool,
    seconds: f64,
    max_bytes: u64,
}

/// Entry point: `args` are the words after `probe`. Returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let opts = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("capbox probe: {e}");
            eprintln!("{USAGE}");
            return 2;
        }
    };
    let mut probe = Probe::new();
    let read = if opts.input.starts_with("http://") || opts.input.starts_with("https://") {
        read_http(&opts.input, opts.seconds, opts.max_bytes, &mut probe)
    } else {
        read_file(&opts.input, opts.max_bytes, &mut probe)
    };
    if let Err(e) = read {
        eprintln!("capbox probe: {}: {e}", opts.input);
        return 1;
    }
    let report = match probe.finish(&opts.input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("capbox probe: {}: {e}", opts.input);
            return 1;
        }
    };
    if opts.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("capbox probe: JSON: {e}");
                return 1;
            }
        }
    } else {
        super::term::print(&report.to_text());
    }
    0
}

fn parse_args(args: &[String]) -> Result<Option<Opts>, String> {
    let mut input = None;
    let mut json = false;
    let mut seconds = DEFAULT_SECONDS;
    let mut max_bytes = DEFAULT_MAX_BYTES;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => json = true,
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| format!("--seconds {v}: want a number of seconds > 0"))?;
            }
            "--bytes" => {
                let v = it.next().ok_or("--bytes needs a value")?;
                max_bytes = parse_size(v)
                    .filter(|&n| n >= PACKET_SIZE as u64)
                    .ok_or_else(|| {
                        format!("--bytes {v}: want a size >= 188 (e.g. 1000000, 64M)")
                    })?;
            }
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            s => {
                if input.is_some() {
                    return Err(format!("one input only (extra: {s})"));
                }
                input = Some(s.to_string());
            }
        }
    }
    let input = input.ok_or("missing <file|url>")?;
    Ok(Some(Opts {
        input,
        json,
        seconds,
        max_bytes,
    }))
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, mul) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

fn read_file(path: &str, max_bytes: u64, probe: &mut Probe) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = max_bytes;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        probe.push_bytes(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// `http://host[:port]/path` → ("host:port", "host", "/path").
fn split_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("URL wants http://host[:port]/path".into());
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let addr = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority.to_string(), path.to_string()))
}

/// A plain HTTP/1.0 GET, read for `seconds` or `max_bytes`, whichever ends
/// first (or the server closing).
fn read_http(url: &str, seconds: f64, max_bytes: u64, probe: &mut Probe) -> Result<(), String> {
    let (addr, host, path) = split_url(url)?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("resolving {addr}: {e}"))?
        .collect();
    let mut last_err = format!("{addr}: no address");
    let mut stream = None;
    for a in &addrs {
        let t = remaining().max(Duration::from_millis(100));
        match TcpStream::connect_timeout(a, t) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = format!("connecting to {a}: {e}"),
        }
    }
    let mut s = stream.ok_or(last_err)?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: capbox-probe\r\nAccept: */*\r\n\r\n"
    );
    s.set_write_timeout(Some(remaining().max(Duration::from_millis(100))))
        .map_err(|e| e.to_string())?;
    s.write_all(req.as_bytes())
        .map_err(|e| format!("sending request: {e}"))?;

    let mut buf = vec![0u8; 64 * 1024];
    let mut head: Vec<u8> = Vec::new();
    let mut body_left = max_bytes;
    let mut in_head = true;
    loop {
        let t = remaining();
        if t.is_zero() {
            break;
        }
        s.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(e) => return Err(format!("reading: {e}")),
        };
        let mut data = &buf[..n];
        if in_head {
            head.extend_from_slice(data);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if head.len() > MAX_HTTP_HEAD {
                    return Err(format!("HTTP response head over {MAX_HTTP_HEAD} bytes"));
                }
                continue;
            };
            let status = String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or(&[]))
                .into_owned();
            let code = status.split_whitespace().nth(1).unwrap_or("");
            if !status.starts_with("HTTP/") || code != "200" {
                return Err(format!("server answered {status:?}"));
            }
            in_head = false;
            let body = head.split_off(end + 4);
            let take = body
                .len()
                .min(usize::try_from(body_left).unwrap_or(usize::MAX));
            probe.push_bytes(&body[..take]);
            body_left -= take as u64;
            data = &[];
        }
        let take = data
            .len()
            .min(usize::try_from(body_left).unwrap_or(usize::MAX));
        probe.push_bytes(&data[..take]);
        body_left -= take as u64;
        if body_left == 0 {
            break;
        }
    }
    if in_head {
        return Err(format!(
            "no HTTP response within {seconds} s ({} bytes of head)",
            head.len()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Accounting
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct PidState {
    packets: u64,
    cc_errors: u64,
    transport_errors: u64,
    scrambled_packets: u64,
    last_cc: Option<u8>,
    /// One repeated packet is allowed (§2.4.3.3); a second is an error.
    dup_seen: bool,
    pcr_count: u64,
    /// (PCR, packet index) of the last PCR.
    last_pcr: Option<(u64, u64)>,
    /// Sum of accepted PCR steps (27 MHz) and the packets they span.
    pcr_ticks: u64,
    pcr_span_packets: u64,
    first_pts: Option<u64>,
    /// Largest forward PTS distance from `first_pts` (B-frames go back).
    pts_span: u64,
    /// MPEG audio layer sniffed from a PES payload (1, 2 or 3).
    mpeg_audio_layer: Option<u8>,
}

/// What was refused while reading tables.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct PsiStats {
    pub sections: u64,
    pub crc_errors: u64,
    pub incomplete: u64,
    pub malformed: u64,
    pub bad_pointer: u64,
    /// Sections that reassembled but a table decoder refused.
    pub table_errors: u64,
    /// Sections with current_next_indicator = 0 (ignored).
    pub not_current: u64,
    /// PAT programs, SDT services and CAT EMM streams not kept: over
    /// `MAX_PAT_ENTRIES` (`MAX_EMM_STREAMS` for the CAT); a hostile mux may
    /// announce thousands.
    pub entries_refused: u64,
}

/// Most EMM streams (CA system, PID) kept from the CAT.
const MAX_EMM_STREAMS: usize = 256;

/// The probe state: feed bytes, then `finish`.
pub struct Probe {
    resync: Resync,
    aligned: Vec<u8>,
    packets: u64,
    /// Packets the resync handed out but `Packet::new_checked` refused.
    bad_packets: u64,
    pids: BTreeMap<u16, PidState>,
    assemblers: BTreeMap<u16, Assembler>,
    psi: PsiStats,
    pat_seen: bool,
    transport_stream_id: Option<u16>,
    network_pid: u16,
    /// program_number → PMT PID, from the PAT.
    pat: BTreeMap<u16, u16>,
    pmts: BTreeMap<u16, PmtRepr>,
    sdt: BTreeMap<u16, SdtService>,
    sdt_onid: Option<u16>,
    network_id: Option<u16>,
    network_name: Option<String>,
    emm: Vec<(u16, u16)>,
    cat_seen: bool,
    sdt_seen: bool,
    nit_seen: bool,
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe {
    pub fn new() -> Probe {
        let mut assemblers = BTreeMap::new();
        for p in [pid::PAT, pid::CAT, pid::NIT, pid::SDT] {
            assemblers.insert(p, Assembler::new());
        }
        Probe {
            resync: Resync::new(),
            aligned: Vec::new(),
            packets: 0,
            bad_packets: 0,
            pids: BTreeMap::new(),
            assemblers,
            psi: PsiStats::default(),
            pat_seen: false,
            transport_stream_id: None,
            network_pid: pid::NIT,
            pat: BTreeMap::new(),
            pmts: BTreeMap::new(),
            sdt: BTreeMap::new(),
            sdt_onid: None,
            network_id: None,
            network_name: None,
            emm: Vec::new(),
            cat_seen: false,
            sdt_seen: false,
            nit_seen: false,
        }
    }

    /// Any bytes: they are aligned on the sync byte first.
    pub fn push_bytes(&mut self, data: &[u8]) {
        let mut aligned = std::mem::take(&mut self.aligned);
        aligned.clear();
        self.resync.push(data, &mut aligned);
        for p in aligned.chunks_exact(PACKET_SIZE) {
            self.push_packet(p);
        }
        self.aligned = aligned;
    }

    fn push_packet(&mut self, raw: &[u8]) {
        let Ok(p) = Packet::new_checked(raw) else {
            self.bad_packets += 1;
            return;
        };
        let idx = self.packets;
        self.packets += 1;
        let pid = p.pid();
        let st = self.pids.entry(pid).or_default();
        st.packets += 1;
        if p.transport_error() {
            // The header itself may be wrong: count, and trust nothing else.
            st.transport_errors += 1;
            return;
        }
        let scrambled = p.scrambling_control() != 0;
        if scrambled {
            st.scrambled_packets += 1;
        }
        if pid != pid::NULL {
            check_cc(st, &p);
        }
        if let Some(pcr) = p.pcr() {
            st.pcr_count += 1;
            if let Some((prev, prev_idx)) = st.last_pcr {
                let d = pcr_delta(prev, pcr);
                if !p.discontinuity() && d > 0 && d <= MAX_PCR_STEP {
                    st.pcr_ticks += d;
                    st.pcr_span_packets += idx - prev_idx;
                }
            }
            st.last_pcr = Some((pcr, idx));
        }
        if let Some(asm) = self.assemblers.get_mut(&pid) {
            let mut sections: Vec<Vec<u8>> = Vec::new();
            asm.push(&p, |s| sections.push(s.to_vec()));
            for s in sections {
                self.on_section(pid, &s);
            }
        } else if p.payload_unit_start() && !scrambled {
            if let Ok(h) = PesHeader::new_checked(p.payload()) {
                if let Some(pts) = h.pts() {
                    match st.first_pts {
                        None => st.first_pts = Some(pts),
                        Some(first) => {
                            let d = pts_delta(first, pts);
                            if d < PTS_HALF {
                                st.pts_span = st.pts_span.max(d);
                            }
                        }
                    }
                }
                if st.mpeg_audio_layer.is_none() {
                    st.mpeg_audio_layer = mpeg_audio_layer(h.payload());
                }
            }
        }
    }

    fn on_section(&mut self, pid: u16, bytes: &[u8]) {
        self.psi.sections += 1;
        let Ok(s) = Section::new_checked(bytes) else {
            self.psi.table_errors += 1;
            return;
        };
        if s.syntax_indicator() && !s.current_next() {
            self.psi.not_current += 1;
            return;
        }
        let tid = s.table_id();
        let ok = match tid {
            table_id::PAT if pid == pid::PAT => PatRepr::parse(&s).map(|pat| self.on_pat(pat)),
            table_id::CAT if pid == pid::CAT => CatRepr::parse(&s).map(|cat| {
                self.cat_seen = true;
                for e in cat.emm_pids() {
                    if self.emm.contains(&e) {
                        continue;
                    }
                    if self.emm.len() >= MAX_EMM_STREAMS {
                        self.psi.entries_refused += 1;
                        continue;
                    }
                    self.emm.push(e);
                }
                self.emm.sort_unstable();
            }),
            table_id::PMT => PmtRepr::parse(&s).map(|pmt| {
                // Only the PMT the PAT announces on this PID.
                if self.pat.get(&pmt.program_number) == Some(&pid) {
                    self.pmts.insert(pmt.program_number, pmt);
                }
            }),
            table_id::SDT_ACTUAL if pid == pid::SDT => SdtRepr::parse(&s).map(|sdt| {
                self.sdt_seen = true;
                self.sdt_onid = Some(sdt.original_network_id);
                for svc in sdt.services {
                    if self.sdt.len() >= MAX_PAT_ENTRIES && !self.sdt.contains_key(&svc.service_id)
                    {
                        self.psi.entries_refused += 1;
                        continue;
                    }
                    self.sdt.insert(svc.service_id, svc);
                }
            }),
            table_id::NIT_ACTUAL if pid == self.network_pid => NitRepr::parse(&s).map(|nit| {
                self.nit_seen = true;
                self.network_id = Some(nit.network_id);
                if let Some(n) = nit.network_name() {
                    self.network_name = Some(n);
                }
            }),
            // Other tables sharing these PIDs (BAT, SDT other, ST…): not ours.
            _ => Ok(()),
        };
        if ok.is_err() {
            self.psi.table_errors += 1;
        }
    }

    fn on_pat(&mut self, pat: PatRepr) {
        self.pat_seen = true;
        self.transport_stream_id = Some(pat.transport_stream_id);
        for e in &pat.entries {
            if e.program_number == 0 {
                if e.pid != self.network_pid {
                    self.assemblers.remove(&self.network_pid);
                    self.network_pid = e.pid;
                    self.assemblers.entry(e.pid).or_default();
                }
                continue;
            }
            if self.pat.len() >= MAX_PAT_ENTRIES && !self.pat.contains_key(&e.program_number) {
                self.psi.entries_refused += 1;
                continue;
            }
            self.pat.insert(e.program_number, e.pid);
            self.assemblers.entry(e.pid).or_default();
        }
    }

    /// Settle the clocks and build the report.
    pub fn finish(mut self, input: &str) -> Result<Report, ProbeError> {
        let mut tail = Vec::new();
        self.resync.finish(&mut tail);
        for p in tail.chunks_exact(PACKET_SIZE) {
            self.push_packet(p);
        }
        let sync = self.resync.stats;
        if self.packets == 0 {
            return Err(ProbeError::NoSync { bytes: sync.bytes });
        }
        if !self.pat_seen {
            let pat_packets = self.pids.get(&pid::PAT).map_or(0, |s| s.packets);
            return Err(ProbeError::NoPat {
                packets: self.packets,
                pat_packets,
            });
        }
        Ok(self.report(input))
    }

    fn clock(&self) -> (Option<f64>, Option<&'static str>, Option<u16>) {
        let total_bits = (self.packets * PACKET_SIZE as u64 * 8) as f64;
        let best = self
            .pids
            .iter()
            .filter(|(_, s)| s.pcr_ticks > 0 && s.pcr_span_packets > 0)
            .max_by_key(|(_, s)| s.pcr_ticks);
        if let Some((&p, s)) = best {
            let secs = s.pcr_ticks as f64 / PCR_HZ as f64;
            let mux_bps = (s.pcr_span_packets * PACKET_SIZE as u64 * 8) as f64 / secs;
            return (Some(total_bits / mux_bps), Some("pcr"), Some(p));
        }
        let best = self
            .pids
            .iter()
            .filter(|(_, s)| s.pts_span > 0)
            .max_by_key(|(_, s)| s.pts_span);
        if let Some((&p, s)) = best {
            return (
                Some(s.pts_span as f64 / PTS_HZ as f64),
                Some("pts"),
                Some(p),
            );
        }
        (None, None, None)
    }

    fn report(&self, input: &str) -> Report {
        let (duration, clock, clock_pid) = self.clock();
        let kbps = |packets: u64| {
            duration
                .filter(|d| *d > 0.0)
                .map(|d| round1((packets * PACKET_SIZE as u64 * 8) as f64 / d / 1000.0))
        };

        // What every PID is for, as the tables say.
        let mut usage: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        let mut add = |pid: u16, what: String| {
            let v = usage.entry(pid).or_default();
            if !v.contains(&what) {
                v.push(what);
            }
        };
        add(pid::PAT, "PAT".into());
        add(pid::CAT, "CAT".into());
        add(self.network_pid, "NIT".into());
        add(pid::SDT, "SDT/BAT".into());
        add(pid::EIT, "EIT".into());
        add(pid::TDT, "TDT/TOT".into());
        add(pid::NULL, "null".into());

        let mut programs = Vec::new();
        for (&pn, &pmt_pid) in &self.pat {
            add(pmt_pid, format!("PMT {pn}"));
            let svc = self.sdt.get(&pn);
            let sd = svc.and_then(|s| s.service_descriptor());
            let mut prog = ProgramReport {
                program_number: pn,
                pmt_pid,
                pmt_seen: false,
                pcr_pid: None,
                service_name: svc.and_then(|s| s.service_name()),
                provider: svc.and_then(|s| s.provider_name()),
                service_type: sd.as_ref().map(|d| d.service_type),
                service_type_name: sd.as_ref().map(|d| service_type_name(d.service_type)),
                free_ca_mode: svc.map(|s| s.free_ca_mode),
                running_status: svc.map(|s| s.running_status),
                ca: Vec::new(),
                streams: Vec::new(),
            };
            if let Some(pmt) = self.pmts.get(&pn) {
                prog.pmt_seen = true;
                prog.pcr_pid = Some(pmt.pcr_pid);
                if pmt.pcr_pid != pid::NULL {
                    add(pmt.pcr_pid, format!("PCR {pn}"));
                }
                for (sys, ecm) in pmt.ecm_pids() {
                    add(ecm, format!("ECM {pn} {}", ca_system_name(sys)));
                    prog.ca.push(CaReport::new(sys, ecm));
                }
                for s in &pmt.streams {
                    let st = self.pids.get(&s.elementary_pid);
                    let packets = st.map_or(0, |st| st.packets);
                    let layer = st.and_then(|st| st.mpeg_audio_layer);
                    let codec = codec_name(s, layer);
                    let kind = s.kind().as_str();
                    add(
                        s.elementary_pid,
                        format!("{} {} {pn}", codec.unwrap_or(kind), kind),
                    );
                    prog.streams.push(StreamReport {
                        pid: s.elementary_pid,
                        stream_type: s.stream_type,
                        stream_type_name: stream_type_name(s.stream_type),
                        codec,
                        kind,
                        languages: languages(s),
                        packets,
                        bitrate_kbps: kbps(packets),
                        scrambled: st.is_some_and(|st| st.scrambled_packets > 0),
                    });
                }
            }
            programs.push(prog);
        }
        let emm: Vec<CaReport> = self
            .emm
            .iter()
            .map(|&(sys, p)| {
                add(p, format!("EMM {}", ca_system_name(sys)));
                CaReport::new(sys, p)
            })
            .collect();

        // Named by a table but never seen: a stream the mux lost.
        let missing: Vec<u16> = usage
            .keys()
            .copied()
            .filter(|p| *p > 0x1F && *p != pid::NULL && !self.pids.contains_key(p))
            .collect();
        let mut pids = Vec::new();
        let mut unreferenced = Vec::new();
        for (&p, st) in &self.pids {
            let uses = usage.get(&p);
            // The DVB SI range 0x00..=0x1F is reserved for tables: known.
            let referenced = uses.is_some() || p <= 0x1F;
            if !referenced {
                unreferenced.push(p);
            }
            pids.push(PidReport {
                pid: p,
                packets: st.packets,
                bitrate_kbps: kbps(st.packets),
                cc_errors: st.cc_errors,
                transport_errors: st.transport_errors,
                scrambled: st.scrambled_packets > 0,
                scrambled_packets: st.scrambled_packets,
                pcr: st.pcr_count > 0,
                referenced,
                usage: match uses {
                    Some(u) => u.join(", "),
                    None if referenced => "SI (reserved)".into(),
                    None => "unreferenced".into(),
                },
            });
        }

        let mut psi = self.psi;
        for a in self.assemblers.values() {
            let AssemblerStats {
                crc_errors,
                incomplete,
                malformed,
                bad_pointer,
                ..
            } = a.stats;
            psi.crc_errors += crc_errors;
            psi.incomplete += incomplete;
            psi.malformed += malformed;
            psi.bad_pointer += bad_pointer;
        }
        let sync = self.resync.stats;
        Report {
            input: input.to_string(),
            bytes_read: sync.bytes,
            packets: self.packets,
            sync: SyncReport {
                bytes_skipped: sync.bytes_skipped,
                sync_losses: sync.sync_losses,
                truncated_packets: sync.truncated_packets,
                bad_packets: self.bad_packets,
            },
            duration_s: duration.map(|d| (d * 1000.0).round() / 1000.0),
            clock,
            clock_pid,
            mux_bitrate_kbps: kbps(self.packets),
            transport_stream_id: self.transport_stream_id,
            original_network_id: self.sdt_onid,
            network_id: self.network_id,
            network_name: self.network_name.clone(),
            nit_pid: self.network_pid,
            tables: TablesSeen {
                pat: self.pat_seen,
                pmt: self.pmts.len(),
                cat: self.cat_seen,
                sdt: self.sdt_seen,
                nit: self.nit_seen,
            },
            programs,
            emm,
            pids,
            unreferenced_pids: unreferenced,
            missing_pids: missing,
            psi,
        }
    }
}

fn check_cc<T: AsRef<[u8]>>(st: &mut PidState, p: &Packet<T>) {
    let cc = p.continuity_counter();
    if p.discontinuity() {
        st.last_cc = None;
    }
    // Without payload the counter does not advance: nothing to check.
    if !p.has_payload() {
        return;
    }
    if let Some(last) = st.last_cc {
        if cc == last {
            if st.dup_seen {
                st.cc_errors += 1;
            }
            st.dup_seen = true;
            return;
        }
        if cc != (last + 1) & 0x0F {
            st.cc_errors += 1;
        }
    }
    st.dup_seen = false;
    st.last_cc = Some(cc);
}

/// Layer of an MPEG audio frame header at the start of a PES payload.
fn mpeg_audio_layer(b: &[u8]) -> Option<u8> {
    if b.len() < 2 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
        return None;
    }
    match (b[1] >> 1) & 3 {
        0 => None,
        bits => Some(4 - bits),
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Why a probe gave no report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    NoSync { bytes: u64 },
    NoPat { packets: u64, pat_packets: u64 },
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::NoSync { bytes } => {
                write!(
                    f,
                    "not a transport stream: no MPEG-TS sync found in {bytes} bytes"
                )
            }
            ProbeError::NoPat {
                packets,
                pat_packets,
            } => write!(
                f,
                "no PAT in {packets} packets ({pat_packets} packets on PID 0x0000)"
            ),
        }
    }
}

impl std::error::Error for ProbeError {}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// ffmpeg's codec name for a stream, where the PMT (and, for MPEG audio, the
/// first frame header) tells.
fn codec_name(s: &PmtStream, mpeg_audio_layer: Option<u8>) -> Option<&'static str> {
    Some(match s.stream_type {
        0x01 => "mpeg1video",
        0x02 => "mpeg2video",
        0x03 | 0x04 => match mpeg_audio_layer {
            Some(1) => "mp1",
            Some(3) => "mp3",
            _ => "mp2",
        },
        0x0F => "aac",
        0x10 => "mpeg4",
        0x11 => "aac_latm",
        0x1B => "h264",
        0x24 => "hevc",
        0x42 => "cavs",
        0x81 => "ac3",
        0x87 => "eac3",
        0xD1 => "dirac",
        0xEA => "vc1",
        0x06 => {
            for d in s.descriptors() {
                let c = match d.tag {
                    tag::AC3 => "ac3",
                    tag::ENHANCED_AC3 => "eac3",
                    tag::AAC => "aac",
                    0x7B => "dts",
                    tag::SUBTITLING => "dvb_subtitle",
                    tag::TELETEXT => "dvb_teletext",
                    tag::REGISTRATION if d.data.len() >= 4 => match &d.data[..4] {
                        b"AC-3" => "ac3",
                        b"EAC3" => "eac3",
                        b"Opus" => "opus",
                        b"DTS1" | b"DTS2" | b"DTS3" => "dts",
                        b"BSSD" => "s302m",
                        b"KLVA" => "klv",
                        _ => continue,
                    },
                    _ => continue,
                };
                return Some(c);
            }
            return None;
        }
        _ => return None,
    })
}

/// Languages of a stream: ISO 639, subtitling and teletext descriptors.
fn languages(s: &PmtStream) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for d in s.descriptors() {
        let codes: Vec<[u8; 3]> = match d.tag {
            tag::ISO_639_LANGUAGE => descriptor::languages(&d).map(|l| l.code).collect(),
            tag::SUBTITLING => descriptor::subtitling(&d)
                .map(|x| x.iso_639_language_code)
                .collect(),
            tag::TELETEXT => descriptor::teletext(&d)
                .map(|x| x.iso_639_language_code)
                .collect(),
            _ => continue,
        };
        for c in codes {
            let l = descriptor::lang_str(&c);
            if !v.contains(&l) {
                v.push(l);
            }
        }
    }
    v
}

/// service_type (EN 300 468 table 87).
pub fn service_type_name(t: u8) -> &'static str {
    match t {
        0x01 => "digital television",
        0x02 => "digital radio",
        0x03 => "teletext",
        0x04 => "NVOD reference",
        0x05 => "NVOD time-shifted",
        0x06 => "mosaic",
        0x07 => "FM radio",
        0x0A => "advanced codec radio",
        0x0C => "data broadcast",
        0x10 => "DVB MHP",
        0x11 => "MPEG-2 HD television",
        0x16 => "H.264 SD television",
        0x19 => "H.264 HD television",
        0x1C => "H.264 3D HD television",
        0x1F => "HEVC television",
        0x20 => "HEVC UHD television",
        _ => "other",
    }
}

/// CA system from the top byte of its CA_system_ID (ETSI TS 101 162).
pub fn ca_system_name(id: u16) -> &'static str {
    match id >> 8 {
        0x01 => "Seca/Mediaguard",
        0x05 => "Viaccess",
        0x06 => "Irdeto",
        0x09 => "NDS Videoguard",
        0x0B => "Conax",
        0x0D => "Cryptoworks",
        0x0E => "PowerVu",
        0x10 => "RAS",
        0x17 => "BetaCrypt",
        0x18 => "Nagravision",
        0x26 => "BISS",
        0x4A if id == 0x4AE0 || id == 0x4AE1 => "DRE-Crypt",
        0x56 => "Verimatrix",
        _ => "CA",
    }
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub bytes_skipped: u64,
    pub sync_losses: u64,
    pub truncated_packets: u64,
    pub bad_packets: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TablesSeen {
    pub pat: bool,
    /// PMTs seen (of the programs in the PAT).
    pub pmt: usize,
    pub cat: bool,
    pub sdt: bool,
    pub nit: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaReport {
    pub ca_system_id: u16,
    pub ca_system: &'static str,
    /// ECM PID (in a program) or EMM PID (in `emm`).
    pub pid: u16,
}

impl CaReport {
    fn new(ca_system_id: u16, pid: u16) -> CaReport {
        CaReport {
            ca_system_id,
            ca_system: ca_system_name(ca_system_id),
            pid,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub pid: u16,
    pub stream_type: u8,
    pub stream_type_name: &'static str,
    /// ffmpeg's codec name, when the PMT says it.
    pub codec: Option<&'static str>,
    /// video, audio, subtitles, teletext, data.
    pub kind: &'static str,
    pub languages: Vec<String>,
    pub packets: u64,
    pub bitrate_kbps: Option<f64>,
    pub scrambled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProgramReport {
    pub program_number: u16,
    pub pmt_pid: u16,
    pub pmt_seen: bool,
    pub pcr_pid: Option<u16>,
    pub service_name: Option<String>,
    pub provider: Option<String>,
    pub service_type: Option<u8>,
    pub service_type_name: Option<&'static str>,
    pub free_ca_mode: Option<bool>,
    pub running_status: Option<u8>,
    /// CA systems with their ECM PIDs (program and stream level).
    pub ca: Vec<CaReport>,
    pub streams: Vec<StreamReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PidReport {
    pub pid: u16,
    pub packets: u64,
    pub bitrate_kbps: Option<f64>,
    pub cc_errors: u64,
    pub transport_errors: u64,
    pub scrambled: bool,
    pub scrambled_packets: u64,
    /// Carries PCRs.
    pub pcr: bool,
    /// Named by the PAT, a PMT or the CAT, or in the SI range 0x00..=0x1F.
    pub referenced: bool,
    pub usage: String,
}

/// Everything `capbox probe` says, text and JSON alike.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub input: String,
    pub bytes_read: u64,
    pub packets: u64,
    pub sync: SyncReport,
    pub duration_s: Option<f64>,
    /// "pcr" or "pts": which clock measured the duration.
    pub clock: Option<&'static str>,
    pub clock_pid: Option<u16>,
    pub mux_bitrate_kbps: Option<f64>,
    pub transport_stream_id: Option<u16>,
    pub original_network_id: Option<u16>,
    pub network_id: Option<u16>,
    pub network_name: Option<String>,
    pub nit_pid: u16,
    pub tables: TablesSeen,
    pub programs: Vec<ProgramReport>,
    pub emm: Vec<CaReport>,
    pub pids: Vec<PidReport>,
    pub unreferenced_pids: Vec<u16>,
    /// PIDs a table names (PMT, PCR, ECM, EMM, streams) with no packet.
    pub missing_pids: Vec<u16>,
    pub psi: PsiStats,
}

/// `s` cut to `width` characters, with an ellipsis when cut.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Control characters (a DVB string may carry '\n') would break the layout.
/// The input (path or URL) on one line. Names use `text::clean_name`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn opt_hex(v: Option<u16>) -> String {
    v.map_or("-".into(), |v| format!("0x{v:04X} ({v})"))
}

fn opt_kbps(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

impl Report {
    /// The text rendering; no line is wider than `TEXT_WIDTH` characters.
    pub fn to_text(&self) -> String {
        let mut lines: Vec<String> = Vec::new();
        let mut l = |s: String| lines.push(fit(&s, TEXT_WIDTH));
        l(format!("Input: {}", clean(&self.input)));
        let clock = match (self.duration_s, self.clock, self.clock_pid) {
            (Some(d), Some(c), Some(p)) => {
                format!("{d:.3} s by {} of PID 0x{p:04X}", c.to_uppercase())
            }
            _ => "no PCR nor PTS clock".into(),
        };
        l(format!(
            "  {} bytes, {} packets, {clock}, {} kbit/s",
            self.bytes_read,
            self.packets,
            opt_kbps(self.mux_bitrate_kbps)
        ));
        let s = &self.sync;
        if s.bytes_skipped + s.sync_losses + s.truncated_packets + s.bad_packets > 0 {
            l(format!(
                "  sync: {} bytes skipped, {} losses, {} truncated packets",
                s.bytes_skipped, s.sync_losses, s.truncated_packets
            ));
        }
        l(format!(
            "  transport_stream_id {}  original_network_id {}",
            opt_hex(self.transport_stream_id),
            opt_hex(self.original_network_id)
        ));
        let name = self
            .network_name
            .as_deref()
            .map_or("-".into(), |n| format!("\"{}\"", clean_name(n)));
        l(format!(
            "  network {}  network_id {}  (NIT on PID 0x{:04X})",
            name,
            opt_hex(self.network_id),
            self.nit_pid
        ));
        let t = &self.tables;
        let yn = |b: bool| if b { "yes" } else { "no" };
        l(format!(
            "  tables: PAT {}, PMT {}/{}, CAT {}, SDT {}, NIT {}",
            yn(t.pat),
            t.pmt,
            self.programs.len(),
            yn(t.cat),
            yn(t.sdt),
            yn(t.nit)
        ));
        let p = &self.psi;
        if p.crc_errors + p.incomplete + p.malformed + p.bad_pointer + p.table_errors > 0 {
            l(format!(
                "  PSI errors: {} CRC, {} incomplete, {} malformed, {} pointer, {} table",
                p.crc_errors, p.incomplete, p.malformed, p.bad_pointer, p.table_errors
            ));
        }
        if p.entries_refused > 0 {
            l(format!(
                "  PSI entries over the bounds, not kept: {}",
                p.entries_refused
            ));
        }

        for prog in &self.programs {
            l(String::new());
            let name = prog
                .service_name
                .as_deref()
                .map_or("(no SDT entry)".into(), |n| {
                    format!("\"{}\"", clean_name(n))
                });
            l(format!("Program {}: {}", prog.program_number, name));
            let provider = prog
                .provider
                .as_deref()
                .map_or("-".into(), |n| format!("\"{}\"", clean_name(n)));
            let stype = match (prog.service_type, prog.service_type_name) {
                (Some(t), Some(n)) => format!("0x{t:02X} {n}"),
                _ => "-".into(),
            };
            l(format!("  provider {provider}  service_type {stype}"));
            let pcr = prog.pcr_pid.map_or("-".into(), |p| format!("0x{p:04X}"));
            let seen = if prog.pmt_seen { "" } else { " (PMT not seen)" };
            l(format!(
                "  PMT PID 0x{:04X}  PCR PID {pcr}{seen}",
                prog.pmt_pid
            ));
            for ca in &prog.ca {
                l(format!(
                    "  CA 0x{:04X} {}  ECM PID 0x{:04X}",
                    ca.ca_system_id, ca.ca_system, ca.pid
                ));
            }
            if prog.streams.is_empty() {
                continue;
            }
            l("    PID     type  codec          kind       language     kbit/s  scr".into());
            for st in &prog.streams {
                let codec = st.codec.unwrap_or(st.stream_type_name);
                let lang = if st.languages.is_empty() {
                    "-".to_string()
                } else {
                    st.languages.join(",")
                };
                l(format!(
                    "    0x{:04X}  0x{:02X}  {:<14} {:<10} {:<10} {:>8}  {}",
                    st.pid,
                    st.stream_type,
                    fit(codec, 14),
                    st.kind,
                    fit(&lang, 10),
                    opt_kbps(st.bitrate_kbps),
                    if st.scrambled { "yes" } else { "no" }
                ));
            }
        }

        l(String::new());
        if self.emm.is_empty() {
            l("EMM: none (no CA descriptor in the CAT)".into());
        }
        for e in &self.emm {
            l(format!(
                "EMM: CA 0x{:04X} {}  EMM PID 0x{:04X}",
                e.ca_system_id, e.ca_system, e.pid
            ));
        }

        l(String::new());
        l("PID       packets    kbit/s  cc_err  scr  use".into());
        for p in &self.pids {
            l(format!(
                "0x{:04X} {:>10} {:>9} {:>7}  {:<3}  {}",
                p.pid,
                p.packets,
                opt_kbps(p.bitrate_kbps),
                p.cc_errors,
                if p.scrambled { "yes" } else { "no" },
                p.usage
            ));
        }
        if !self.unreferenced_pids.is_empty() {
            let list: Vec<String> = self
                .unreferenced_pids
                .iter()
                .map(|p| format!("0x{p:04X}"))
                .collect();
            l(format!(
                "Unreferenced PIDs ({}): {}",
                list.len(),
                list.join(" ")
            ));
        }
        if !self.missing_pids.is_empty() {
            let list: Vec<String> = self
                .missing_pids
                .iter()
                .map(|p| format!("0x{p:04X}"))
                .collect();
            l(format!(
                "Referenced but absent PIDs ({}): {}",
                list.len(),
                list.join(" ")
            ));
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_on_chars_not_bytes() {
        let s = "é".repeat(100);
        let f = fit(&s, 80);
        assert_eq!(f.chars().count(), 80);
        assert!(f.ends_with('…'));
        assert_eq!(fit("abc", 80), "abc");
    }

    #[test]
    fn url_split() {
        let (a, h, p) = split_url("http://example.org/x/y?z").unwrap();
        assert_eq!(
            (a.as_str(), h.as_str(), p.as_str()),
            ("example.org:80", "example.org", "/x/y?z")
        );
        let (a, _, p) = split_url("http://[::1]:8080").unwrap();
        assert_eq!((a.as_str(), p.as_str()), ("[::1]:8080", "/"));
        let (a, _, _) = split_url("http://[::1]/s").unwrap();
        assert_eq!(a, "[::1]:80");
        assert!(split_url("https://x/").is_err());
    }

    #[test]
    fn size_suffixes() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn mpeg_audio_layers() {
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xFD]), Some(2)); // MPEG-1 layer II
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xFB]), Some(3)); // MPEG-1 layer III
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xFF]), Some(1));
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xF1]), None); // ADTS (layer 0)
        assert_eq!(mpeg_audio_layer(&[0x00, 0x00]), None);
    }

    #[test]
    fn cc_counts_gaps_and_second_duplicate() {
        let mk = |cc: u8| {
            let mut b = [0xFFu8; 188];
            crate::ts::packet::write_header(&mut b, 0x100, false, cc);
            b
        };
        let mut st = PidState::default();
        for cc in [0u8, 1, 2, 2, 4, 4, 4, 5] {
            let b = mk(cc);
            let p = Packet::new_checked(&b[..]).unwrap();
            check_cc(&mut st, &p);
        }
        // 2→2 allowed, 2→4 gap, 4→4 allowed, 4→4 again error.
        assert_eq!(st.cc_errors, 2);
    }

    /// PAT sections announcing thousands of distinct programs (each 253,
    /// the most a section holds): the probe keeps MAX_PAT_ENTRIES of them
    /// and counts the rest.
    #[test]
    fn pat_flood_is_bounded_and_counted() {
        use crate::ts::pat::PatEntry;
        use crate::ts::section::packetize;
        let mut probe = Probe::new();
        let mut cc = 0;
        let mut ts = Vec::new();
        for k in 0..40u32 {
            let pat = PatRepr {
                transport_stream_id: 1,
                version: (k % 32) as u8,
                section_number: 0,
                last_section_number: 0,
                entries: (0..253u32)
                    .map(|j| PatEntry {
                        program_number: (1 + k * 253 + j) as u16,
                        pid: 0x20 + j as u16,
                    })
                    .collect(),
            };
            packetize(&pat.emit(), 0, &mut cc, &mut ts);
        }
        probe.push_bytes(&ts);
        assert_eq!(probe.pat.len(), MAX_PAT_ENTRIES);
        assert_eq!(
            probe.psi.entries_refused,
            (40 * 253 - MAX_PAT_ENTRIES) as u64
        );
    }
}
