//! The capbox configuration: `/etc/capbox/capbox.toml` by default.
//!
//! Owns the TOML schema, its defaults and its validation. Promises:
//! - every key has a documented default except `channel.name` and
//!   `channel.source.file`; the reference is the doc comments below and
//!   `src/config/REFERENCE.md`;
//! - a bad file is refused as a whole, with **all** the errors found, each as
//!   `capbox.toml:12: channel[3].source[0].program: what is wrong; what is
//!   expected` (file, 1-based line, key path with 0-based indexes);
//! - unknown keys are errors (a typo must not silently fall back to a
//!   default on a box in a rack);
//! - parsing never panics and reads at most `MAX_FILE_BYTES`;
//! - the access token never appears in `Debug` output.
//!
//! Checks that need the files themselves (is program 0x1f4 in that mux?) are
//! the caller's: `Config::sources` and `Config::diag_at` let it report them in
//! the same format, on the line where the key was written.

mod cidr;
mod node;
mod walk;
pub use walk::ca::CaSourceConfig;
pub use walk::softcam::{SoftcamConfig, SoftcamEndpoint, SourceCa};

#[cfg(test)]
mod tests;

pub use cidr::{Cidr, CidrError};
pub use walk::cards::{CardConfig, CardsConfig};
pub use walk::epg::{AudienceConfig, EpgConfig, EpgPriority, XmltvConfig, XmltvLocation};
pub use walk::monitor::MonitorConfig;
pub use walk::probes::ProbeConfig;
pub use walk::supervisor::{SupervisorConfig, DEFAULT_RESET_LOG};
pub use walk::update::{UpdateConfig, DEFAULT_UPDATE_STATE};

use crate::dvb::diseqc::{Burst, Scr, ScrStandard, Switch};
use crate::dvb::lnb::{Lnb, LnbSetup};
use crate::dvb::tuning::{PlsStyle, Tuning};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the daemon looks when the CLI is given no `--config`.
pub const DEFAULT_PATH: &str = "/etc/capbox/capbox.toml";

/// `[server] state_file` when not written: beside the config file.
pub const DEFAULT_STATE_FILE: &str = "capbox-state.json";

/// Config files are a few KiB; anything this large is a wrong path (a TS
/// file, a log) and is refused before it is read into memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// One problem in a config file, in compiler style.
///
/// `Display` is `file:line: key: message`; `line` 0 (not known, e.g. the file
/// cannot be read) and an empty `key` (a TOML syntax error) are left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when no line applies.
    pub line: usize,
    /// Key path with 0-based indexes, e.g. `channel[3].source[0].program`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// The whole configuration, validated.
///
/// Equality of two configs (for reload) is `Config::diff`; the derived
/// `PartialEq` also compares where things were written.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file name as given to `load`/`parse`, used in diagnostics.
    pub file: String,
    /// Directory that relative `file` paths of sources were resolved against.
    pub base_dir: PathBuf,
    pub server: ServerConfig,
    pub access: AccessConfig,
    pub buffers: BuffersConfig,
    /// `[softcam]`, optional: the dvbapi softcam of `ca = "dvbapi"` sources.
    pub softcam: Option<SoftcamConfig>,
    /// `[[adapter]]` tables in file order (none when every source is a file).
    pub adapters: Vec<AdapterConfig>,
    /// `[[channel]]` tables in file order. At least one.
    pub channels: Vec<ChannelConfig>,
    /// `[cards]` and `[[card]]`: smart cards over PC/SC (`walk/cards.rs`).
    pub cards: CardsConfig,
    /// `[supervisor]`: watchdog, stall detection, reboot-loop guard
    /// (`walk/supervisor.rs`).
    pub supervisor: SupervisorConfig,
    /// `[update]`: A/B updates through RAUC, marking a new slot good
    /// (`walk/update.rs`).
    pub update: UpdateConfig,
    /// `[recovery]`: every adapter's escalation ladder (`walk/recovery.rs`).
    pub recovery: crate::dvb::recovery::RecoveryConfig,
    /// `[[probe]]`: URLs checked as a viewer gets them (`walk/probes.rs`).
    pub probes: Vec<ProbeConfig>,
    /// `[monitor]`: TR 101 290, ES analysis, the box clock check.
    /// `[monitor]`: monitoring on/off, the verdicts' times (`walk/monitor.rs`).
    pub monitor: MonitorConfig,
    /// `[epg]`, `[[xmltv]]`, `[[audience]]`: the programme guide
    /// (`walk/epg.rs`).
    pub epg: EpgConfig,
    /// Line of every key path written in the file (and of each table).
    lines: BTreeMap<String, usize>,
}

/// `[server]`: the HTTP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// `listen`, default `0.0.0.0:8080`: address and port of the HTTP server
    /// (`"[::]:8080"` for IPv6 dual-stack).
    pub listen: SocketAddr,
    /// `write_timeout_ms`, default 10000, 100..=600000: a client that accepts
    /// no bytes for this long is dropped (and counted) so that one stalled
    /// reader cannot hold buffers.
    pub write_timeout_ms: u64,
    /// `max_clients`, default 512, 1..=65536: HTTP connections beyond this are
    /// refused with 503 (and counted).
    pub max_clients: usize,
    /// `max_clients_per_address`, default 400, 1..=65536: connections from
    /// one address beyond this are closed at accept (and counted), so one
    /// host cannot take every slot. 400 = a media server pulling 200
    /// channels with a second connection each while it reconnects.
    pub max_clients_per_address: usize,
    /// `state_file`, default `capbox-state.json` beside the config file
    /// (`""`: none, pins then last until capbox stops): where the
    /// operator's pins are kept across restarts. Must be on a writable
    /// file system (the data partition on the appliance).
    pub state_file: Option<PathBuf>,
    /// `tcp_congestion`, default none (the kernel's default,
    /// `net.ipv4.tcp_congestion_control`): the TCP congestion control of
    /// every connection accepted (TCP_CONGESTION), e.g. `"bbr"` for a
    /// listener the other site pulls from over a long lossy path. A name
    /// of 1..=15 characters `[a-z0-9_]`; whether the kernel has it is
    /// checked by `check-config` and at start (`http::tuning`).
    pub tcp_congestion: Option<String>,
    /// `send_buffer_bytes`, default none (the kernel's autotuning, up to
    /// `net.ipv4.tcp_wmem`'s maximum), 16 KiB..=256 MiB: SO_SNDBUF of
    /// every connection accepted. Sized by the bandwidth-delay product:
    /// 10 Mbit/s × 120 ms ≈ 150 kB, and 2–4× that with loss and bursts.
    pub send_buffer_bytes: Option<usize>,
}

/// `[access]`: who may use which class of routes.
///
/// Each list is of CIDR networks (`"10.0.0.0/8"`, `"::1/128"`); a client is
/// admitted when its address is in any of them. An empty list admits nobody.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessConfig {
    /// `stream`, default private networks (`DEFAULT_LAN`): `/stream/<name>`.
    pub stream: Vec<Cidr>,
    /// `playlist`, default `DEFAULT_LAN`: `/playlist.m3u`.
    pub playlist: Vec<Cidr>,
    /// `metrics`, default `DEFAULT_LAN`: `/metrics`.
    pub metrics: Vec<Cidr>,
    /// `status`, default `DEFAULT_LAN`: `/status`.
    pub status: Vec<Cidr>,
    /// `control`, default loopback only (`DEFAULT_LOCAL`): routes that change
    /// state (pin a source, reload).
    pub control: Vec<Cidr>,
    /// `control_token`, default `""` (none): when set, control requests
    /// must also carry it (`?token=` or `Authorization: Bearer`). Set it
    /// whenever `control` admits more than loopback. Never logged.
    pub control_token: Option<String>,
    /// `token`, default `""` (none): when set, stream and playlist requests
    /// must also carry it as `?token=` or `Authorization: Bearer`. Never
    /// logged, never in `Debug`.
    pub token: Option<String>,
}

impl fmt::Debug for AccessConfig {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("AccessConfig")
            .field("stream", &self.stream)
            .field("playlist", &self.playlist)
            .field("metrics", &self.metrics)
            .field("status", &self.status)
            .field("control", &self.control)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "control_token",
                &self.control_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Default allow-list of read-only routes: loopback and private networks.
pub const DEFAULT_LAN: [&str; 6] = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
];

/// Default allow-list of control routes: loopback only.
pub const DEFAULT_LOCAL: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// `[buffers]`: per-channel memory. Memory is bounded by
/// `channels × ring_bytes` plus per-client socket buffers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuffersConfig {
    /// `ring_bytes`, default 8388608 (8 MiB, about 4 s of a 16 Mbit/s HD
    /// service), 1 MiB..=1 GiB: the ring each channel's clients read from;
    /// a client that falls further behind is dropped.
    pub ring_bytes: usize,
    /// `chunk_bytes`, default 32768, 16 KiB..=1 MiB and at most
    /// `ring_bytes / 4`: unit of writes to clients.
    pub chunk_bytes: usize,
    /// `flush_ms`, default 50, 1..=1000: a partly filled chunk is sent after
    /// this long, bounding latency on low-rate services (radio).
    pub flush_ms: u64,
}

/// One `[[channel]]`: what a client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    /// `name`, required, unique, `[a-z0-9._-]{1,64}` and not only dots: the
    /// `<name>` in `/stream/<name>`.
    pub name: String,
    /// `tvg_id`, default `name`: the `tvg-id` of the playlist entry (the
    /// EPG key of the processing layer).
    pub tvg_id: String,
    /// `tvg_name`, default none: the playlist title; when none, the caller
    /// uses the service name from the SDT, else `name`.
    pub tvg_name: Option<String>,
    /// `group`, default none: the playlist `group-title`.
    pub group: Option<String>,
    /// `[[channel.source]]` tables in order of preference. At least one.
    pub sources: Vec<SourceConfig>,
    /// `fail_after_ms`, default 300, 50..=60000: how long the source on
    /// air must be unhealthy before the channel moves to the next healthy
    /// source (or the slate).
    pub fail_after_ms: u64,
    /// `recover_after_ms`, default 30000, 0..=3600000: how long a source
    /// preferred to the one on air must stay healthy before the channel
    /// moves back to it (a flapping dish is not taken back).
    pub recover_after_ms: u64,
    /// `slate`: what plays when every source is down.
    pub slate: SlateSetting,
    /// `close_after_ms`, default 0 (never), 0..=86400000: after the
    /// channel has played its slate this long, its clients are
    /// disconnected and new ones refused with 503 until a source is back
    /// (for a media server that does its own failover).
    pub close_after_ms: u64,
    /// Line of the `[[channel]]` header (or of the table).
    pub line: usize,
    /// Key path of this channel, e.g. `channel[3]`.
    pub key: String,
}

/// `slate` of a channel: `"auto"` (a shipped slate in the channel's
/// format; the default for a channel with two sources or more), `"off"`
/// (the default for a single-source channel: its output keeps the
/// source's own PIDs and nothing is spliced), or the path of a TS file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlateSetting {
    Off,
    Auto,
    File(PathBuf),
}

/// A remote source: another capbox's `/stream/<channel>` or any HTTP
/// MPEG-TS URL. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// `url`: `http://host:port/path?query` (no TLS: the tunnel is).
    pub url: String,
    /// `token`, optional: sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// `origin_local`, default true: asks the peer with `?origin=local`,
    /// so it answers only while it has a local source on air (no relay
    /// of a relay, no peer's slate).
    pub origin_local: bool,
    /// `standby`, default `"hot"`: `"hot"` pulls the stream all the time
    /// (measured, a switch to it is instant; costs tunnel traffic),
    /// `"cold"` connects only when the channel needs it (the source on
    /// air is unhealthy, the channel is on its slate, or it is pinned).
    pub standby: Standby,
}

/// `standby` of a remote source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Standby {
    #[default]
    Hot,
    Cold,
}

impl fmt::Debug for RemoteSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("RemoteSpec")
            .field("url", &crate::source::remote::redact_url(&self.url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("origin_local", &self.origin_local)
            .field("standby", &self.standby)
            .finish()
    }
}

/// One `[[adapter]]`: a DVB tuner and what hangs on its cable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterConfig {
    /// `name`, required, unique, same rules as channel names: the label
    /// sources use (`adapter = "sat1"`) and the `adapter` label in metrics.
    pub name: String,
    /// `device`, required: the tuner's stable name (`capbox adapters`,
    /// `Adapter::stable_name`: `usb-…` or `usb-path-…`) or `adapterN`.
    pub device: String,
    /// `frontend`, default 0, 0..=15: the frontend of that adapter.
    pub frontend: u32,
    /// `lnb`, default none (terrestrial/cable, or satellite frequencies
    /// given as IF): an LNB type for `Lnb::from_name` (`universal`,
    /// `single:10750`, `cband`, …).
    pub lnb: Option<Lnb>,
    /// `switch`, default `none`: the switch gear between LNB and tuner (see
    /// [`parse_switch`]). Needs `lnb`.
    pub switch: Switch,
    /// `pls_style`, default `mainline`: how the driver takes the DVB-S2 PLS
    /// (`mainline` or `tbs`).
    pub pls_style: PlsStyle,
    /// `dvr_buffer_bytes`, default none (sized for 60 Mbit/s × 1 s),
    /// 188 KiB..=256 MiB: the dvr ring in the kernel.
    pub dvr_buffer_bytes: Option<usize>,
    /// `pid_filter` (`auto` or `full`, default auto) and `pid_filter_max`
    /// (default 32): per-PID demux filters or the whole TS.
    pub pid_filter: crate::dvb::demux::PidFilter,
    /// `cable` + `cable_master`: this tuner shares an LNB cable.
    pub cable: Option<AdapterCable>,
    pub line: usize,
    /// Key path, e.g. `adapter[0]`.
    pub key: String,
}

/// An adapter on a shared LNB cable (`cable = "north"`, `cable_master`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterCable {
    /// The cable's label; adapters with the same label share it.
    pub name: String,
    /// This tuner sets voltage, tone and DiSEqC; the others never do.
    pub master: bool,
    /// Line of the `cable` key.
    pub line: usize,
}

impl AdapterConfig {
    /// An LNB setup when the adapter has an LNB.
    pub fn lnb_setup(&self) -> Option<LnbSetup> {
        self.lnb.map(|lnb| LnbSetup {
            lnb,
            switch: self.switch.clone(),
        })
    }

    /// Same settings, ignoring where they were written.
    pub fn same_settings(&self, o: &AdapterConfig) -> bool {
        self.name == o.name
            && self.device == o.device
            && self.frontend == o.frontend
            && self.lnb == o.lnb
            && self.switch == o.switch
            && self.pls_style == o.pls_style
            && self.dvr_buffer_bytes == o.dvr_buffer_bytes
            && self.pid_filter == o.pid_filter
            && self.cable.as_ref().map(|c| (&c.name, c.master))
                == o.cable.as_ref().map(|c| (&c.name, c.master))
    }
}

/// `adapter` + `tune` of a `[[channel.source]]`: which adapter, tuned to
/// which mux (beside `RemoteSpec`; what opens it is
/// `source::dvb::DvbSourceConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DvbSpec {
    /// `adapter`: the `name` of an `[[adapter]]`.
    pub adapter: String,
    /// `tune`: the mux, parsed (`capbox tune` syntax).
    pub tuning: Tuning,
    /// The mux in canonical form (`Tuning::to_args`): equal strings are the
    /// same mux, whatever spelling was written.
    pub mux: String,
}

/// `fail_after_ms` default.
pub const DEFAULT_FAIL_AFTER_MS: u64 = 300;
/// `recover_after_ms` default.
pub const DEFAULT_RECOVER_AFTER_MS: u64 = 30_000;

/// One `[[channel.source]]`: one way to get the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// `file`: a recorded MPEG-TS mux; relative paths are resolved against
    /// the config file's directory (this field is the result). Empty for a
    /// DVB source (`dvb` is set instead); exactly one of the two is given.
    pub file: PathBuf,
    /// `adapter` + `tune`: a DVB source instead of a file.
    pub dvb: Option<DvbSpec>,
    /// `url` (+ `token`, `origin_local`): a remote source instead.
    pub remote: Option<RemoteSpec>,
    /// `file` as written, for messages.
    pub file_as_written: String,
    /// `program`, default 1, 1..=65535: the program_number (service_id) of
    /// the service in the mux. TOML accepts hex: `program = 0x1f4`.
    pub program: u16,
    /// `loop`, default true: restart at the end of the file.
    pub looping: bool,
    /// `biss`, optional: BISS-1 session word; the channel's scrambled
    /// packets are descrambled with it. `Debug` never shows it.
    pub biss: Option<crate::ca::biss::BissKey>,
    /// `ca` (+ `caid`), optional: control words from a card (see ca.rs).
    pub ca: Option<CaSourceConfig>,
    /// `epg_charset`, default `[epg] charset`: the character table of this
    /// mux's EIT strings that carry no selector byte (a broadcaster that
    /// omits it); every source on one mux gives the same or none.
    pub epg_charset: Option<crate::ts::text::Charset>,
    /// Line of the `[[channel.source]]` header (or of the table).
    pub line: usize,
    /// Key path of this source, e.g. `channel[3].source[0]`.
    pub key: String,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            write_timeout_ms: 10_000,
            max_clients: 512,
            max_clients_per_address: 400,
            state_file: None,
            tcp_congestion: None,
            send_buffer_bytes: None,
        }
    }
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    // The defaults are constants checked by the tests; filter_map keeps this
    // free of unwrap all the same.
    list.iter().filter_map(|s| s.parse().ok()).collect()
}

impl Default for AccessConfig {
    fn default() -> AccessConfig {
        AccessConfig {
            stream: cidrs(&DEFAULT_LAN),
            playlist: cidrs(&DEFAULT_LAN),
            metrics: cidrs(&DEFAULT_LAN),
            status: cidrs(&DEFAULT_LAN),
            control: cidrs(&DEFAULT_LOCAL),
            token: None,
            control_token: None,
        }
    }
}

impl Default for BuffersConfig {
    fn default() -> BuffersConfig {
        BuffersConfig {
            ring_bytes: 8 * 1024 * 1024,
            chunk_bytes: 32 * 1024,
            flush_ms: 50,
        }
    }
}

/// What a reload changes: channels compared by name, field by field
/// (where they were written in the file does not count).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// In the new config only, in new file order.
    pub added: Vec<String>,
    /// In the old config only, in old file order.
    pub removed: Vec<String>,
    /// In both, with different settings or sources, in new file order.
    pub changed: Vec<String>,
    /// `[server]`, `[access]` or `[buffers]` differ.
    pub server_changed: bool,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.server_changed
    }
}

impl ChannelConfig {
    /// Same settings and sources, ignoring line numbers and key paths.
    pub fn same_settings(&self, other: &ChannelConfig) -> bool {
        self.name == other.name
            && self.tvg_id == other.tvg_id
            && self.tvg_name == other.tvg_name
            && self.group == other.group
            && self.fail_after_ms == other.fail_after_ms
            && self.recover_after_ms == other.recover_after_ms
            && self.slate == other.slate
            && self.close_after_ms == other.close_after_ms
            && self.sources.len() == other.sources.len()
            && self
                .sources
                .iter()
                .zip(&other.sources)
                .all(|(a, b)| a.same_settings(b))
    }
}

impl SourceConfig {
    /// Same file, program and looping, ignoring where it was written.
    pub fn same_settings(&self, other: &SourceConfig) -> bool {
        self.file == other.file
            && self.dvb == other.dvb
            && self.remote == other.remote
            && self.program == other.program
            && self.looping == other.looping
            && self.biss == other.biss
            && self.ca == other.ca
            && self.epg_charset == other.epg_charset
    }

    /// "file samples/mux.ts" or "sat1 dvbs2 11362000 V 22000000 …", for logs
    /// and /status.
    pub fn describe(&self) -> String {
        match (&self.dvb, &self.remote) {
            (Some(d), _) => format!("{} {}", d.adapter, d.mux),
            (None, Some(r)) => crate::source::remote::redact_url(&r.url),
            (None, None) => format!("file {}", self.file_as_written),
        }
    }

    /// A source of this box (tuner or file), as opposed to a remote one:
    /// what `?origin=local` asks for.
    pub fn is_local(&self) -> bool {
        self.remote.is_none()
    }
}

/// Reads and validates a config file. The file name in diagnostics is `path`
/// as given; relative source files resolve against `path`'s directory.
pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let fail = |message: String| {
        vec![Diagnostic {
            file: file.clone(),
            line: 0,
            key: String::new(),
            message,
        }]
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {}", e)))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".to_string()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(format!(
            "{} bytes; a config file is at most {} bytes (wrong path?)",
            meta.len(),
            MAX_FILE_BYTES
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {}", e)))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        vec![Diagnostic {
            file: file.clone(),
            line,
            key: String::new(),
            message: "not valid UTF-8; TOML files are UTF-8".to_string(),
        }]
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse(&text, &file, &base_dir)
}

/// Validates config text. `file_name` is only used in diagnostics; relative
/// source files resolve against `base_dir`.
pub fn parse(text: &str, file_name: &str, base_dir: &Path) -> Result<Config, Vec<Diagnostic>> {
    walk::parse(text, file_name, base_dir)
}

impl Config {
    /// A config with defaults everywhere and the given channels (used by
    /// `demo_config` and tests). Line numbers are 0 (not from a file).
    pub fn with_channels(file: &str, base_dir: &Path, channels: Vec<ChannelConfig>) -> Config {
        Config {
            file: file.to_string(),
            base_dir: base_dir.to_path_buf(),
            server: ServerConfig::default(),
            access: AccessConfig::default(),
            buffers: BuffersConfig::default(),
            softcam: None,
            adapters: Vec::new(),
            channels,
            cards: CardsConfig::default(),
            supervisor: SupervisorConfig {
                reset_log: base_dir.join(DEFAULT_RESET_LOG),
                ..SupervisorConfig::default()
            },
            update: UpdateConfig {
                state_file: base_dir.join(DEFAULT_UPDATE_STATE),
                ..UpdateConfig::default()
            },
            recovery: crate::dvb::recovery::RecoveryConfig::default(),
            probes: Vec::new(),
            monitor: MonitorConfig::default(),
            epg: EpgConfig::default(),
            lines: BTreeMap::new(),
        }
    }

    /// Every source with its channel, in file order, for checks that need
    /// the files (e.g. is `program` a service of the mux). Report problems
    /// with `diag_at(&format!("{}.program", source.key), …)`.
    pub fn sources(&self) -> impl Iterator<Item = (&ChannelConfig, &SourceConfig)> {
        self.channels
            .iter()
            .flat_map(|c| c.sources.iter().map(move |s| (c, s)))
    }

    /// The `[[adapter]]` called `name`.
    pub fn adapter(&self, name: &str) -> Option<&AdapterConfig> {
        self.adapters.iter().find(|a| a.name == name)
    }

    /// The channel called `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The 1-based line where `key_path` (e.g. `channel[3].source[0].program`)
    /// was written. A key left to its default has no line of its own; its
    /// closest written ancestor's line is returned (the table header). 0 when
    /// nothing on the path was written (e.g. a generated config).
    pub fn line_of(&self, key_path: &str) -> usize {
        let mut path = key_path;
        loop {
            if let Some(&line) = self.lines.get(path) {
                return line;
            }
            // Strip the last `.key` or `[i]`.
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return 0,
            }
        }
    }

    /// A diagnostic about `key_path`, in this config's file at the line
    /// where the key (or its closest written ancestor) is.
    pub fn diag_at(&self, key_path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: self.line_of(key_path),
            key: key_path.to_string(),
            message: message.into(),
        }
    }

    /// What changes from `old` to `new`, for a reload that restarts only the
    /// channels that changed.
    pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
        let mut d = ConfigDiff {
            // The state file is read at start only.
            server_changed: ServerConfig {
                state_file: None,
                ..old.server.clone()
            } != ServerConfig {
                state_file: None,
                ..new.server.clone()
            } || old.access != new.access
                || old.buffers != new.buffers,
            ..ConfigDiff::default()
        };
        // A channel whose adapter changed (LNB, device…) must retune.
        // A new [recovery] restarts the DVB runners (their ladders) too.
        let adapter_changed = |name: &str| match (old.adapter(name), new.adapter(name)) {
            (Some(a), Some(b)) => !a.same_settings(b) || old.recovery != new.recovery,
            (None, None) => false,
            _ => true,
        };
        for c in &new.channels {
            let on_changed_adapter = c.sources.iter().any(|s| {
                s.dvb
                    .as_ref()
                    .map(|d| adapter_changed(&d.adapter))
                    .unwrap_or(false)
            });
            match old.channel(&c.name) {
                None => d.added.push(c.name.clone()),
                Some(o) if !o.same_settings(c) || on_changed_adapter => {
                    d.changed.push(c.name.clone())
                }
                Some(_) => {}
            }
        }
        for c in &old.channels {
            if new.channel(&c.name).is_none() {
                d.removed.push(c.name.clone());
            }
        }
        d
    }
}

/// The config of `capbox demo`: three channels over programs 1, 2 and 3 of
/// `samples_dir/mux.ts`, served on `listen`.
pub fn demo_config(samples_dir: &Path, listen: SocketAddr) -> Config {
    let mux = samples_dir.join("mux.ts");
    let channel = |i: usize, name: &str, title: &str, group: &str, program: u16| ChannelConfig {
        name: name.to_string(),
        tvg_id: format!("{}.demo", name),
        tvg_name: Some(title.to_string()),
        group: Some(group.to_string()),
        sources: vec![SourceConfig {
            file: mux.clone(),
            file_as_written: mux.display().to_string(),
            dvb: None,
            remote: None,
            program,
            looping: true,
            biss: None,
            ca: None,
            epg_charset: None,
            line: 0,
            key: format!("channel[{}].source[0]", i),
        }],
        fail_after_ms: DEFAULT_FAIL_AFTER_MS,
        recover_after_ms: DEFAULT_RECOVER_AFTER_MS,
        slate: SlateSetting::Off,
        close_after_ms: 0,
        line: 0,
        key: format!("channel[{}]", i),
    };
    let mut cfg = Config::with_channels(
        "<demo>",
        samples_dir,
        vec![
            channel(0, "news", "Demo News", "News", 1),
            channel(1, "sport", "Demo Sport", "Sport", 2),
            channel(2, "music", "Demo Music", "Music", 3),
        ],
    );
    cfg.server.listen = listen;
    cfg
}

/// Parses an adapter's `switch`: `none`, `burst:a` / `burst:b` (tone
/// burst), `committed:<0..3>` (DiSEqC 1.0), `uncommitted:<0..15>` (1.1),
/// `cascade:<committed>:<uncommitted>`, or
/// `unicable:en50494|en50607:ub=<n>:freq=<MHz>[:pos=<n>][:pin=<n>]`
/// (`ub` 0-based user band, `freq` its centre on the cable in MHz).
pub fn parse_switch(text: &str) -> Result<Switch, String> {
    let t = text.trim().to_ascii_lowercase();
    let parts: Vec<&str> = t.split(':').collect();
    let num = |s: &str, max: u32, what: &str| -> Result<u32, String> {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| format!("{what} {s:?} is not a number 0..={max}"))
    };
    match parts.as_slice() {
        ["none"] | [""] => Ok(Switch::None),
        ["burst", "a"] => Ok(Switch::ToneBurst(Burst::A)),
        ["burst", "b"] => Ok(Switch::ToneBurst(Burst::B)),
        ["committed", p] => Ok(Switch::Committed {
            port: num(p, 3, "DiSEqC 1.0 port")? as u8,
        }),
        ["uncommitted", p] => Ok(Switch::Uncommitted {
            port: num(p, 15, "DiSEqC 1.1 port")? as u8,
        }),
        ["cascade", c, u] => Ok(Switch::Cascade {
            committed: num(c, 3, "DiSEqC 1.0 port")? as u8,
            uncommitted: num(u, 15, "DiSEqC 1.1 port")? as u8,
        }),
        ["unicable", std, rest @ ..] => {
            let (standard, max_ub, max_pos) = match *std {
                "en50494" => (ScrStandard::En50494, 7, 1),
                "en50607" => (ScrStandard::En50607, 31, 63),
                other => {
                    return Err(format!(
                        "unknown Unicable standard {other:?}; expected en50494 or en50607"
                    ))
                }
            };
            let (mut ub, mut freq, mut pos, mut pin) = (None, None, 0u8, None);
            for kv in rest {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("{kv:?} is not key=value"))?;
                match k {
                    "ub" => ub = Some(num(v, max_ub, "user band")? as u8),
                    "freq" => freq = Some(num(v, 3000, "user band frequency (MHz)")?),
                    "pos" => pos = num(v, max_pos, "position")? as u8,
                    "pin" => pin = Some(num(v, 255, "PIN")? as u8),
                    other => {
                        return Err(format!(
                            "unknown Unicable key {other:?}; expected ub, freq, pos or pin"
                        ))
                    }
                }
            }
            Ok(Switch::Unicable(Scr {
                standard,
                user_band: ub.ok_or("Unicable needs ub=<user band>")?,
                ub_freq_mhz: freq.ok_or("Unicable needs freq=<user band MHz>")?,
                position: pos,
                pin,
            }))
        }
        _ => Err(format!("unknown switch {text:?}")),
    }
}
