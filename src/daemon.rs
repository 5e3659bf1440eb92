//! The running box: channels, their mux runners and the HTTP server, wired
//! from a `Config`; `reload` applies a new config touching only what changed.

use crate::channel::pin::{self, PinRecord, PinStore};
use crate::channel::{lock, Channel, ChannelState};
use crate::config::{self, Config, Diagnostic};
use crate::fanout::{Ring, RingConfig};
use crate::http::{self, Access, Backend, HttpConfig, RouteAccess, ServerHandle};
use crate::monitor::metrics::{family, Kind};
use crate::source::dvb::{AdapterStatus, AdapterStatusHandle, DvbSourceConfig};
use crate::source::remote::Demand;
use crate::source::runner::{Attach, InputSpec, MuxKey, MuxRunner, RunnerConfig};
use crate::source::Resync;
use crate::ts::services::Services;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Shared state the HTTP server reads.
pub struct App {
    channels: RwLock<BTreeMap<String, Arc<Channel>>>,
    /// Channel names in config order: the playlist's and /status's order.
    order: RwLock<Vec<String>>,
    /// Per `[[adapter]]`, in config order: what its source last saw.
    adapters: RwLock<Vec<(String, AdapterStatusHandle)>>,
    /// The softcam connection, for /status.
    softcam: Mutex<Option<Arc<crate::ca::dvbapi::client::SoftcamClient>>>,
    /// The smart-card manager, when `[cards]`/`[[card]]` or a `ca = "card"`
    /// source asks for one.
    cards: Mutex<Option<Arc<crate::ca::cards::CardManager>>>,
    /// The operator's pins, kept in `[server] state_file`.
    pins: Mutex<PinStore>,
    started: Instant,
    /// Heartbeats, watchdog and reset log, for /status, /metrics and
    /// `/control/fault`.
    pub supervisor: Arc<crate::supervisor::Shared>,
    /// `[[probe]]` results, for /status and /metrics.
    probes: Arc<crate::monitor::check::ProbeBoard>,
    /// TR 101 290 and the box clock, as the mux runners publish them.
    pub monitor: Arc<crate::monitor::tr101290::Board>,
    /// The last hour of C/N and bitrate, for the status page (`GET /`).
    history: crate::monitor::history::History,
    /// The programme guide (`[epg]`): every runner's EIT, the operator's
    /// XMLTV, served at /epg.xml. Created at start whatever `enabled`
    /// says (a reload may turn it on); `epg_on` says whether it is used.
    pub epg: Arc<crate::epg::live::Live>,
    /// Rendered guides by query, for a minute (`epg::serve::CACHE_FOR`).
    epg_cache: Mutex<crate::epg::serve::Cache>,
    /// The `[[xmltv]]` pollers, each with the config it was started with.
    xmltv: Mutex<Vec<(config::XmltvConfig, crate::epg::fetch::FetchThread)>>,
    /// (tvg_id, name) of every channel: what an XMLTV id not in a
    /// source's `map` is matched against (updated on reload).
    xmltv_ids: Arc<RwLock<Vec<(String, String)>>>,
    /// Versions, slots and the last update, for /status and /metrics.
    pub update: Arc<crate::update::Info>,
}

/// (tvg_id, name) of every channel, for XMLTV ids without a mapping.
fn xmltv_ids(c: &Config) -> Vec<(String, String)> {
    c.channels
        .iter()
        .map(|ch| (ch.tvg_id.clone(), ch.name.clone()))
        .collect()
}

/// The merge order of `[epg] priority` over `n` XMLTV sources.
fn epg_priority(c: &config::EpgConfig) -> Vec<crate::epg::Origin> {
    use crate::epg::Origin;
    let ops = (0..c.xmltv.len().min(256)).map(|i| Origin::Xmltv(i as u8));
    match c.priority {
        config::EpgPriority::Air => std::iter::once(Origin::Eit).chain(ops).collect(),
        config::EpgPriority::Operator => ops.chain(std::iter::once(Origin::Eit)).collect(),
    }
}

/// The store's limits from `[epg]`.
fn epg_limits(c: &config::EpgConfig) -> crate::epg::Limits {
    crate::epg::Limits {
        budget_bytes: c.budget_bytes(),
        ..crate::epg::Limits::default()
    }
}

fn epg_settings(c: &config::EpgConfig) -> crate::epg::live::Settings {
    crate::epg::live::Settings {
        charset: c.charset,
        language: c.language.clone(),
    }
}

/// The config's audiences (their zones were checked by the config walk).
fn epg_audiences(c: &config::EpgConfig) -> Vec<crate::epg::xmltv::Audience> {
    c.audiences
        .iter()
        .filter_map(|a| match crate::epg::xmltv::Audience::new(&a.name, &a.tz) {
            Ok(a) => Some(a),
            Err(e) => {
                log::error!("{e}");
                None
            }
        })
        .collect()
}

pub struct Daemon {
    pub app: Arc<App>,
    config: Config,
    runners: BTreeMap<MuxKey, MuxRunner>,
    /// Cold-standby remote runners: the flag the channels set when they
    /// need the source, and the next channel bit to hand out.
    demands: BTreeMap<MuxKey, (Demand, u32)>,
    server: Option<ServerHandle>,
    realtime: bool,
    /// The `[softcam]` connection, shared by every `ca = "dvbapi"` channel.
    softcam: Option<Arc<crate::ca::dvbapi::client::SoftcamClient>>,
    /// Stops the memory trimmer thread.
    trim_stop: Arc<std::sync::atomic::AtomicBool>,
    /// The supervisor thread (watchdog, notify, stall verdicts).
    supervisor: Option<crate::supervisor::Supervisor>,
    /// The `[[probe]]` poller, when any is configured.
    prober: Option<crate::monitor::check::Prober>,
    /// On the first boots of a new slot (`capbox serve`): marks it good
    /// once healthy (`crate::update`).
    trial: Option<crate::update::Trial>,
}

/// How often freed heap is handed back to the kernel.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Give the memory glibc's allocator keeps after it was freed back to the
/// kernel. Many threads freeing chunks of many sizes (clients coming and
/// going, reloads) leave its arenas holding pages the heap no longer uses:
/// the soak showed the live heap flat while RSS crept up. Returns whether
/// anything was released.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own arenas under
        // their locks; it takes no pointer from us.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

fn ring_config(c: &Config) -> RingConfig {
    RingConfig {
        max_bytes: c.buffers.ring_bytes,
        chunk_bytes: c.buffers.chunk_bytes,
        max_delay: Duration::from_millis(c.buffers.flush_ms),
    }
}

fn route(list: &[config::Cidr], token: Option<&String>) -> RouteAccess {
    RouteAccess {
        allow: list.to_vec(),
        token: token.cloned(),
    }
}

pub fn access_of(c: &Config) -> Access {
    let t = c.access.token.as_ref();
    Access {
        stream: route(&c.access.stream, t),
        playlist: route(&c.access.playlist, t),
        metrics: route(&c.access.metrics, None),
        status: route(&c.access.status, None),
        epg: route(&c.access.playlist, t),
        control: route(&c.access.control, c.access.control_token.as_ref()),
    }
}

/// Look at the start of a source file: the services its PAT lists, with
/// their names from the SDT where the file has one.
pub fn scan_services(path: &Path) -> Result<Vec<(u16, Option<String>)>, String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // Read in small blocks and stop as soon as the PAT and the SDT names
    // are in: the daemon's memory must not peak at start-up.
    const LIMIT: usize = 16 << 20;
    let mut block = vec![0u8; 188 * 1024];
    let mut r = Resync::new();
    let mut pkts = Vec::with_capacity(block.len());
    let mut services = Services::default();
    let mut read = 0usize;
    let mut packets = 0usize;
    let mut eof = false;
    while read < LIMIT && !eof {
        let n = f
            .read(&mut block)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        pkts.clear();
        if n == 0 {
            eof = true;
            r.finish(&mut pkts);
        } else {
            read += n;
            r.push(&block[..n], &mut pkts);
        }
        packets += pkts.len() / 188;
        services.push(&pkts);
        // The SDT comes at least every 2 s: 8 MiB past the PAT is plenty.
        if services.has_pat() && (services.has_names() || read > LIMIT / 2) {
            break;
        }
    }
    if packets * 188 * 2 < read {
        return Err(format!(
            "{}: not a transport stream (no sync byte 0x47 every 188 bytes in {read} bytes)",
            path.display()
        ));
    }
    if !services.has_pat() {
        return Err(format!(
            "{}: no PAT in the first {read} bytes",
            path.display()
        ));
    }
    Ok(services
        .list()
        .into_iter()
        .map(|(program, _, name)| (program, name))
        .collect())
}

/// What a scan of one file source found: (program number, service name)
/// per program, or why it could not be read.
type ScanResult = Result<Vec<(u16, Option<String>)>, String>;

/// Checks that need the files: does each source exist, is it a TS, does it
/// carry the program? Reported on the line of the key.
pub fn check_sources(cfg: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Some(key) = cards_wanted(cfg) {
        if let Err(why) = crate::ca::cards::available() {
            out.push(cfg.diag_at(&key, why));
        }
    }
    let mut cache: BTreeMap<std::path::PathBuf, ScanResult> = BTreeMap::new();
    // A FIFO or a device (a feed standing in for a tuner) is not scanned:
    // reading it here would take the data from the source.
    let scannable = |s: &config::SourceConfig| {
        s.dvb.is_none()
            && s.remote.is_none()
            && std::fs::metadata(&s.file).map_or(true, |m| {
                !m.file_type().is_fifo() && !m.file_type().is_char_device()
            })
    };
    for (_, src) in cfg.sources().filter(|(_, s)| scannable(s)) {
        let r = cache
            .entry(src.file.clone())
            .or_insert_with(|| scan_services(&src.file));
        match r {
            Err(e) => out.push(cfg.diag_at(&format!("{}.file", src.key), e.clone())),
            Ok(services) if !services.iter().any(|(id, _)| *id == src.program) => {
                // Names from the file are clean (`SdtService::service_name`):
                // this stays one line.
                let list = crate::channel::list_some(
                    services.iter().map(|(id, name)| match name {
                        Some(n) => format!("{id} \"{n}\""),
                        None => id.to_string(),
                    }),
                    crate::channel::LISTED_SERVICES,
                );
                out.push(cfg.diag_at(
                    &format!("{}.program", src.key),
                    format!(
                        "no such service {:#x} ({}) in {} (services: {list})",
                        src.program, src.program, src.file_as_written
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
    out
}

/// `[server]` tcp_congestion and send_buffer_bytes tried on a socket of
/// this process: what the kernel would refuse on every connection
/// (congestion control not loaded or not allowed, a send buffer capped),
/// on the line of the key.
pub fn check_tcp(cfg: &Config) -> Vec<Diagnostic> {
    let t = socket_tuning(&cfg.server);
    if t.is_empty() {
        return Vec::new();
    }
    match http::tuning::probe(&t) {
        Ok((_, errors)) => errors
            .iter()
            .map(|e| cfg.diag_at(&format!("server.{}", e.key()), e.to_string()))
            .collect(),
        Err(e) => vec![cfg.diag_at(
            "server",
            format!("cannot open a TCP socket to try the settings on: {e}"),
        )],
    }
}

fn socket_tuning(s: &config::ServerConfig) -> http::SocketTuning {
    http::SocketTuning {
        congestion: s.tcp_congestion.clone(),
        send_buffer_bytes: s.send_buffer_bytes,
    }
}

/// The config key that asks for the card manager (`[cards]`, `[[card]]`
/// or the first `ca = "card"` source), if any.
fn cards_wanted(cfg: &Config) -> Option<String> {
    let card_source = cfg
        .channels
        .iter()
        .flat_map(|c| c.sources.iter())
        .find(|s| matches!(s.ca, Some(config::CaSourceConfig::Card { .. })))
        .map(|s| format!("{}.ca", s.key));
    if !cfg.cards.enabled {
        return card_source;
    }
    ["cards", "card[0]"]
        .into_iter()
        .find(|k| cfg.line_of(k) > 0)
        .map(String::from)
        .or(card_source)
        .or(Some("cards".into()))
}

/// A reload's new `[server]` tcp_congestion / send_buffer_bytes: applied
/// to the connections accepted from now on.
fn retune_listener(server: &Option<ServerHandle>, new: &Config) {
    let Some(s) = server else { return };
    s.set_tuning(socket_tuning(&new.server));
    let errors = check_tcp(new);
    for diag in &errors {
        log::error!("{diag}; new connections get the kernel's default");
    }
    let shown = |v: Option<String>| v.unwrap_or_else(|| "the kernel's default".into());
    log::info!(
        "reload: server.tcp_congestion = {}, server.send_buffer_bytes = {}: applied to new connections (open ones keep theirs)",
        shown(new.server.tcp_congestion.clone()),
        shown(new.server.send_buffer_bytes.map(|n| n.to_string()))
    );
}

impl Daemon {
    /// Start every channel and the HTTP server; the supervisor watches
    /// their threads but never arms the hardware watchdog (tests, demo).
    pub fn start(config: Config, realtime: bool) -> std::io::Result<Daemon> {
        Self::start_supervised(config, realtime, false)
    }

    /// As `start`; with `arm` (`capbox serve`) the supervisor reads the
    /// reset log and arms `[supervisor] watchdog` when configured.
    pub fn start_supervised(config: Config, realtime: bool, arm: bool) -> std::io::Result<Daemon> {
        let supervisor = crate::supervisor::Shared::new(&config.supervisor);
        let app = Arc::new(App {
            channels: RwLock::new(BTreeMap::new()),
            order: RwLock::new(config.channels.iter().map(|c| c.name.clone()).collect()),
            adapters: RwLock::new(Vec::new()),
            softcam: Mutex::new(None),
            cards: Mutex::new(None),
            pins: Mutex::new(load_pins(&config)),
            started: Instant::now(),
            supervisor: supervisor.clone(),
            probes: crate::monitor::check::ProbeBoard::new(),
            monitor: Default::default(),
            history: crate::monitor::history::History::new(),
            epg: Arc::new(crate::epg::live::Live::new(
                epg_limits(&config.epg),
                epg_settings(&config.epg),
                epg_audiences(&config.epg),
                config.epg.enabled,
            )),
            epg_cache: Mutex::new(crate::epg::serve::Cache::default()),
            xmltv: Mutex::new(Vec::new()),
            xmltv_ids: Arc::new(RwLock::new(xmltv_ids(&config))),
            update: Arc::new(crate::update::Info::read(&config.update)),
        });
        app.set_adapters(&config);
        let mut d = Daemon {
            app,
            config: config.clone(),
            runners: BTreeMap::new(),
            demands: BTreeMap::new(),
            server: None,
            realtime,
            softcam: None,
            trim_stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            supervisor: None,
            prober: None,
            trial: None,
        };
        // First: a reset log is read and the watchdog armed before the
        // threads it watches start.
        d.supervisor = Some(crate::supervisor::Supervisor::start(
            supervisor,
            &config.supervisor,
            arm,
        ));
        let stop = d.trim_stop.clone();
        let _ = std::thread::Builder::new()
            .name("mem-trim".into())
            .spawn(move || {
                let mut waited = Duration::ZERO;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    waited += Duration::from_millis(200);
                    if waited >= TRIM_EVERY {
                        waited = Duration::ZERO;
                        release_free_memory();
                    }
                }
            });
        d.spawn_history_sampler();
        d.set_softcam(config.softcam.clone());
        d.set_cards(&config);
        for diag in check_sources(&config) {
            log::warn!("{diag}");
        }
        for ch in &config.channels {
            d.add_channel(ch.clone());
        }
        d.app
            .epg
            .store()
            .set_priority(None, &epg_priority(&config.epg));
        d.set_xmltv(&config);
        let mut hc = HttpConfig::new(config.server.listen);
        hc.write_timeout = Duration::from_millis(config.server.write_timeout_ms);
        hc.max_clients = config.server.max_clients;
        hc.max_clients_per_address = config.server.max_clients_per_address;
        hc.access = access_of(&config);
        hc.tuning = socket_tuning(&config.server);
        hc.heartbeat = Some(Arc::new(
            d.heartbeats()
                .register("http", crate::supervisor::Policy::Reboot),
        ));
        for diag in check_tcp(&config) {
            log::error!("{diag}; connections get the kernel's default");
        }
        let backend: Arc<dyn Backend> = d.app.clone();
        let server = match http::spawn(hc, backend) {
            Ok(s) => s,
            Err(e) => {
                // Not serving at all is a stop, not a hang: disarm cleanly
                // rather than let the watchdog reset the box over a busy
                // port (systemd's restart back-off takes it from here).
                if let Some(s) = d.supervisor.take() {
                    s.stopping();
                    s.stop();
                }
                return Err(e);
            }
        };
        log::info!("listening on http://{}", server.local_addr());
        d.server = Some(server);
        d.set_probes(&config);
        if arm {
            // Only `capbox serve` (the box) judges a trial slot; the
            // closure holds the app weakly (the thread ends in `stop`).
            let weak = Arc::downgrade(&d.app);
            d.trial = crate::update::Trial::start(
                d.app.update.clone(),
                &config.update,
                Box::new(move || match weak.upgrade() {
                    Some(app) => crate::update::health_verdict(&app.status()),
                    None => Err("stopping".into()),
                }),
            );
        }
        Ok(d)
    }

    /// The status page's sampler: once a second it folds every adapter's
    /// lock and C/N and every channel's byte counter into `App::history`
    /// (a point every 30 s). Its heartbeat is restart-policy with no
    /// action: a stuck sampler is reported, never a reason to reset the
    /// box. Stops with the memory trimmer.
    fn spawn_history_sampler(&self) {
        // Weak: the sampler never keeps the channels alive after a stop.
        let app = Arc::downgrade(&self.app);
        let stop = self.trim_stop.clone();
        let hb = self
            .heartbeats()
            .register("history", crate::supervisor::Policy::Restart);
        let _ = std::thread::Builder::new()
            .name("history".into())
            .spawn(move || {
                hb.bind_to_this_thread();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    hb.beat();
                    match app.upgrade() {
                        Some(app) => app.sample_history(Instant::now()),
                        None => break,
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
    }

    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(|s| s.local_addr())
    }

    fn heartbeats(&self) -> Arc<crate::supervisor::Heartbeats> {
        self.app.supervisor.heartbeats.clone()
    }

    /// Tell systemd the box is up (READY=1), when run under its notify.
    pub fn ready(&self) {
        if let Some(s) = &self.supervisor {
            s.ready();
        }
    }

    fn runner_cfg(&self) -> RunnerConfig {
        RunnerConfig {
            flush: Duration::from_millis(self.config.buffers.flush_ms),
            realtime: self.realtime,
            csa_batch_timeout: crate::ca::descrambler::DEFAULT_BATCH_TIMEOUT,
            monitor: crate::source::runner::MonitorHook {
                tr101290: self.config.monitor.tr101290_on(),
                clock: self.config.monitor.enabled,
                clock_drift_s: self.config.monitor.clock_drift_s as u32,
                board: Some(self.app.monitor.clone()),
            },
            epg: Some(self.app.epg.clone()),
        }
    }

    fn add_channel(&mut self, cfg: config::ChannelConfig) {
        let name = cfg.name.clone();
        if cfg.sources.is_empty() {
            return;
        }
        // Keep the ring (and so the connected clients) of a channel that
        // is being re-created by a reload.
        let existing = self
            .app
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .cloned();
        let ring = match existing {
            Some(old) => old.ring.clone(),
            None => Ring::new(ring_config(&self.config)),
        };
        let flush = Duration::from_millis(self.config.buffers.flush_ms);
        let sources = cfg.sources.clone();
        let ch = Channel::new(cfg, ring, flush);
        ch.set_monitor(&self.config.monitor);
        self.app.restore_pin(&ch);
        self.app
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), ch.clone());
        for (index, src) in sources.iter().enumerate().take(crate::channel::MAX_SOURCES) {
            let key = MuxKey::of(src);
            if !self.runners.contains_key(&key) {
                let input = match (&src.dvb, &src.remote) {
                    (None, Some(r)) => {
                        let mut rc = crate::source::remote::RemoteSourceConfig::new(r.url.clone());
                        rc.token = r.token.clone();
                        rc.origin_local = r.origin_local;
                        if r.standby == config::Standby::Cold {
                            let d = Demand::default();
                            self.demands.insert(key.clone(), (d.clone(), 0));
                            rc.demand = Some(d);
                        }
                        InputSpec::Remote(rc)
                    }
                    (None, None) => InputSpec::File,
                    (Some(d), _) => {
                        let (Some(a), Some(h)) = (
                            self.config.adapter(&d.adapter),
                            self.app.adapter(&d.adapter),
                        ) else {
                            // The config walk refuses unknown adapters.
                            log::error!("channel '{name}': no adapter {:?}", d.adapter);
                            continue;
                        };
                        InputSpec::Dvb(
                            DvbSourceConfig::from_config(a, d.tuning, h)
                                .with_recovery(self.config.recovery),
                        )
                    }
                };
                let hb = self.heartbeats().register(
                    &format!("mux {}", key.describe()),
                    crate::supervisor::Policy::Reboot,
                );
                match MuxRunner::spawn_supervised(key.clone(), input, self.runner_cfg(), hb) {
                    Ok(r) => {
                        self.runners.insert(key.clone(), r);
                    }
                    Err(e) => {
                        log::error!(
                            "channel '{name}': cannot start a thread for {}: {e}",
                            key.describe()
                        );
                        continue;
                    }
                }
            }
            if let Some((d, n)) = self.demands.get_mut(&key) {
                ch.set_demand(index, d.clone(), *n);
                *n += 1;
            }
            if let Some(r) = self.runners.get(&key) {
                r.attach(Attach {
                    sink: ch.clone(),
                    source: index,
                    program: src.program,
                    biss: src.biss.clone(),
                    ca: self.ca_session(&name, src),
                    epg_charset: src.epg_charset,
                });
            }
        }
    }

    /// The control-word session of a source with `ca` (BISS is made by the
    /// runner itself from the key).
    fn ca_session(
        &self,
        name: &str,
        src: &config::SourceConfig,
    ) -> Option<Box<dyn crate::ca::CaSession>> {
        match src.ca.as_ref()? {
            config::CaSourceConfig::Dvbapi => match &self.softcam {
                Some(c) => Some(Box::new(crate::ca::dvbapi::session::DvbapiSession::new(
                    c.clone(),
                    src.program,
                ))),
                None => {
                    log::error!("channel '{name}': ca = \"dvbapi\" but no softcam is running");
                    None
                }
            },
            ca @ config::CaSourceConfig::Card { .. } => match lock(&self.app.cards).as_ref() {
                Some(m) => Some(Box::new(crate::ca::card_session::CardSession::new(
                    crate::ca::ecm::RouterConfig::from_source(src.program, ca),
                    m.client(),
                ))),
                None => {
                    log::error!(
                        "channel '{name}': ca = \"card\" but the card manager is not running"
                    );
                    None
                }
            },
        }
    }

    /// Start the card manager when the config wants cards (`[cards]`,
    /// `[[card]]` or a `ca = "card"` source), or hand it the new config.
    fn set_cards(&mut self, cfg: &Config) {
        let wanted = cards_wanted(cfg).is_some();
        let mut slot = lock(&self.app.cards);
        match (slot.as_ref(), wanted) {
            (Some(m), true) => m.reconfigure(cfg.cards.clone()),
            (None, true) => {
                log::info!("cards: starting the card manager (PC/SC)");
                *slot = Some(Arc::new(crate::ca::cards::CardManager::start_supervised(
                    cfg.cards.clone(),
                    Some(self.heartbeats()),
                )));
            }
            (Some(_), false) => {
                if let Some(m) = slot.take().and_then(|m| Arc::try_unwrap(m).ok()) {
                    m.stop();
                }
            }
            (None, false) => {}
        }
    }

    /// Start (or replace) the softcam connection for `cfg`.
    fn set_softcam(&mut self, cfg: Option<config::SoftcamConfig>) {
        // Dropping the last handle stops the old connection's thread.
        self.softcam = None;
        *lock(&self.app.softcam) = None;
        if let Some(c) = cfg {
            match crate::ca::dvbapi::client::SoftcamClient::start_supervised(
                c,
                Some(self.heartbeats()),
            ) {
                Ok(client) => {
                    log::info!("softcam: connecting to {}", client.endpoint());
                    self.softcam = Some(client);
                }
                Err(e) => log::error!("softcam: cannot start its thread: {e}"),
            }
        }
        *lock(&self.app.softcam) = self.softcam.clone();
    }

    fn remove_channel(&mut self, name: &str, keep_ring: bool) {
        let ch = self
            .app
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let Some(ch) = ch else { return };
        let keys: Vec<MuxKey> = lock(&ch.config).sources.iter().map(MuxKey::of).collect();
        for key in keys {
            if let Some(r) = self.runners.get(&key) {
                r.remove(name);
            }
        }
        if !keep_ring {
            self.app
                .channels
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
            // Its clients get what the ring holds, then EOF; the ring is
            // freed when the last of them and the runner let go of it.
            ch.ring.close();
        }
    }

    /// Apply a new config: only added, removed and changed channels are
    /// touched; the clients of the others stay connected.
    /// (Re)start the `[[probe]]` poller on `cfg`'s list.
    fn set_probes(&mut self, cfg: &Config) {
        if let Some(p) = self.prober.take() {
            p.stop();
        }
        self.app.probes.set_config(&cfg.probes);
        if cfg.probes.is_empty() {
            return;
        }
        // A stalled check is reported, not acted on (Restart policy with
        // no action): a slow URL must never reset the box.
        let hb = self
            .heartbeats()
            .register("probes", crate::supervisor::Policy::Restart);
        self.prober = Some(crate::monitor::check::Prober::start(
            cfg.probes.clone(),
            cfg.monitor.silence_dbfs as f32,
            self.app.probes.clone(),
            hb,
        ));
    }

    pub fn reload(&mut self, new: Config) {
        if new.probes != self.config.probes
            || (!new.probes.is_empty()
                && new.monitor.silence_dbfs != self.config.monitor.silence_dbfs)
        {
            log::info!("reload: [[probe]] changed ({} probes)", new.probes.len());
            self.set_probes(&new);
        }
        self.reload_epg(&new);
        if new.supervisor != self.config.supervisor {
            if let Some(s) = &self.supervisor {
                s.reconfigure(&new.supervisor);
            }
        }
        if new.monitor != self.config.monitor {
            log::info!("reload: [monitor] changed: every channel's verdict starts over");
            let chans = self.app.channels.read().unwrap_or_else(|e| e.into_inner());
            for ch in chans.values() {
                ch.set_monitor(&new.monitor);
            }
        }
        let mut diff = Config::diff(&self.config, &new);
        let softcam_changed = self.config.softcam != new.softcam;
        if softcam_changed {
            // Every channel that takes its words from the softcam is
            // re-created on the new connection (clients stay connected).
            log::info!("reload: [softcam] changed");
            for c in &new.channels {
                let dvbapi = c
                    .sources
                    .iter()
                    .any(|s| s.ca == Some(config::CaSourceConfig::Dvbapi));
                if dvbapi
                    && self.config.channel(&c.name).is_some()
                    && !diff.changed.contains(&c.name)
                {
                    diff.changed.push(c.name.clone());
                }
            }
        }
        for diag in check_sources(&new) {
            log::warn!("{diag}");
        }
        if diff.is_empty() && !softcam_changed {
            log::info!("reload: nothing changed");
            self.config = new;
            return;
        }
        log::info!(
            "reload: {} added, {} removed, {} changed{}",
            diff.added.len(),
            diff.removed.len(),
            diff.changed.len(),
            if diff.server_changed {
                ", access/server settings changed"
            } else {
                ""
            }
        );
        for name in &diff.removed {
            log::info!("reload: channel '{name}' removed");
            self.remove_channel(name, false);
        }
        for name in &diff.changed {
            log::info!("reload: channel '{name}' changed");
            self.remove_channel(name, true);
        }
        if softcam_changed {
            // After the old sessions were let go, before the new ones.
            self.set_softcam(new.softcam.clone());
        }
        // Stop runners nobody uses any more, and those of adapters whose
        // settings changed, before new runners open: a tuner has one
        // user, so a mux moving on an adapter must free it first.
        let used: Vec<MuxKey> = new
            .channels
            .iter()
            .flat_map(|c| c.sources.iter().map(MuxKey::of))
            .collect();
        let changed_adapter = |name: &str| match (self.config.adapter(name), new.adapter(name)) {
            (Some(a), Some(b)) => !a.same_settings(b) || self.config.recovery != new.recovery,
            _ => true,
        };
        let unused: Vec<MuxKey> = self
            .runners
            .keys()
            .filter(|k| {
                !used.contains(k)
                    || matches!(k, MuxKey::Dvb { adapter, .. } if changed_adapter(adapter))
            })
            .cloned()
            .collect();
        for k in unused {
            self.demands.remove(&k);
            if let Some(r) = self.runners.remove(&k) {
                r.stop();
            }
        }
        self.app.set_adapters(&new);
        self.set_cards(&new);
        *self.app.order.write().unwrap_or_else(|e| e.into_inner()) =
            new.channels.iter().map(|c| c.name.clone()).collect();
        let old_server = self.config.server.clone();
        let old_buffers = self.config.buffers.clone();
        self.config = new.clone();
        for name in diff.changed.iter().chain(diff.added.iter()) {
            if let Some(c) = new.channel(name) {
                if diff.added.contains(name) {
                    log::info!("reload: channel '{name}' added");
                }
                self.add_channel(c.clone());
            }
        }
        if diff.server_changed {
            if let Some(s) = &self.server {
                s.set_access(access_of(&new));
                let (o, n) = (&old_server, &new.server);
                let limits = |c: &config::ServerConfig| {
                    (c.write_timeout_ms, c.max_clients, c.max_clients_per_address)
                };
                if limits(o) != limits(n) {
                    s.set_limits(
                        Duration::from_millis(n.write_timeout_ms),
                        n.max_clients,
                        n.max_clients_per_address,
                    );
                    log::info!(
                        "reload: server.write_timeout_ms {} → {}, server.max_clients {} → {}, \
                         server.max_clients_per_address {} → {}: applied",
                        o.write_timeout_ms,
                        n.write_timeout_ms,
                        o.max_clients,
                        n.max_clients,
                        o.max_clients_per_address,
                        n.max_clients_per_address
                    );
                }
            }
            if socket_tuning(&new.server) != socket_tuning(&old_server) {
                retune_listener(&self.server, &new);
            }
            if new.server.listen != old_server.listen {
                log::warn!("reload: server.listen changed; restart capbox to move the listener");
            }
            if new.buffers != old_buffers {
                log::warn!(
                    "reload: [buffers] changed; only channels added from now on get the new \
                     ring_bytes, chunk_bytes and flush_ms: restart capbox to apply them to every channel"
                );
            }
        }
    }

    /// Start the `[[xmltv]]` pollers of `cfg` that are not running with
    /// the same settings, stop those no longer configured. A poller that
    /// stays keeps its schedule and validators: a reload never makes a
    /// source be polled sooner.
    fn set_xmltv(&mut self, cfg: &Config) {
        *self
            .app
            .xmltv_ids
            .write()
            .unwrap_or_else(|e| e.into_inner()) = xmltv_ids(cfg);
        let mut running = lock(&self.app.xmltv);
        let wanted: Vec<&config::XmltvConfig> = if cfg.epg.enabled {
            cfg.epg.xmltv.iter().take(256).collect()
        } else {
            Vec::new()
        };
        // Same settings at the same index (its PartKey): kept.
        let same = |a: &config::XmltvConfig, b: &config::XmltvConfig| {
            a.name == b.name && a.location == b.location && a.every_h == b.every_h && a.map == b.map
        };
        let mut keep: Vec<(config::XmltvConfig, crate::epg::fetch::FetchThread)> = Vec::new();
        let old = std::mem::take(&mut *running);
        let mut old: Vec<Option<_>> = old.into_iter().map(Some).collect();
        for (i, x) in wanted.iter().enumerate() {
            if let Some(slot) = old.get_mut(i) {
                if slot.as_ref().is_some_and(|(c, _)| same(c, x)) {
                    if let Some(t) = slot.take() {
                        keep.push(t);
                        continue;
                    }
                }
            }
            let location = match &x.location {
                config::XmltvLocation::Url(u) => u.clone(),
                config::XmltvLocation::File(p) => p.display().to_string(),
            };
            let src = match crate::epg::fetch::XmltvSource::new(&x.name, i as u8, &location) {
                Ok(mut s) => {
                    s.every_secs = u64::from(x.every_h) * 3600;
                    s
                }
                Err(e) => {
                    log::error!("{}: {}: {e}", cfg.file, x.key);
                    continue;
                }
            };
            let map = x.map.clone();
            let ids = self.app.xmltv_ids.clone();
            let resolve: crate::epg::fetch::Resolve = Box::new(move |id: &str| {
                if let Some(ch) = map.get(id) {
                    return Some(ch.clone());
                }
                let ids = ids.read().unwrap_or_else(|e| e.into_inner());
                ids.iter()
                    .find(|(tvg, _)| tvg == id)
                    .or_else(|| ids.iter().find(|(_, name)| name == id))
                    .map(|(_, name)| name.clone())
            });
            // The last good document and the schedule live beside the
            // state file (the data partition): a restart serves the
            // operator's guide at once and does not ask the source early.
            let mut poller = crate::epg::fetch::Poller::new(src);
            if let Some(dir) = cfg.server.state_file.as_ref().and_then(|f| f.parent()) {
                poller = poller.cache_in(dir.to_path_buf());
            }
            match crate::epg::fetch::spawn(poller, self.app.epg.store_arc(), resolve) {
                Ok(t) => {
                    log::info!(
                        "epg: XMLTV source '{}' polled every {} h",
                        x.name,
                        x.every_h
                    );
                    keep.push(((*x).clone(), t));
                }
                Err(e) => log::error!(
                    "epg: cannot start a thread for XMLTV source '{}': {e}",
                    x.name
                ),
            }
        }
        // What is left in `old` stops here (dropping a FetchThread stops it).
        drop(old);
        *running = keep;
    }

    /// `[epg]`, `[[audience]]` changes apply at once; channels removed
    /// leave the guide.
    fn reload_epg(&mut self, new: &Config) {
        let (old, n) = (&self.config.epg, &new.epg);
        let live = &self.app.epg;
        if old.enabled != n.enabled {
            log::info!(
                "reload: epg.enabled {} → {}: applied",
                old.enabled,
                n.enabled
            );
            live.set_enabled(n.enabled);
        }
        if old.charset != n.charset || old.language != n.language {
            log::info!(
                "reload: epg.charset/language changed: applied to inputs started from now on \
                 (a channel that changed restarts its input)"
            );
            live.set_settings(epg_settings(n));
        }
        if old.audiences != n.audiences {
            log::info!("reload: [[audience]] changed: applied");
            live.set_audiences(epg_audiences(n));
        }
        if old.budget_mib != n.budget_mib {
            log::info!(
                "reload: epg.budget_mib {} → {}: applied",
                old.budget_mib,
                n.budget_mib
            );
            live.store().set_budget(n.budget_bytes());
        }
        for c in &self.config.channels {
            if new.channel(&c.name).is_none() {
                live.store().remove_channel(&c.name);
            }
        }
        live.store().set_priority(None, &epg_priority(n));
        self.set_xmltv(new);
        lock(&self.app.epg_cache).clear();
    }

    pub fn stop(mut self) {
        // STOPPING=1 first; injected stalls are released so every thread
        // can end. The watchdog stays armed (and fed while the threads
        // are fresh) until everything stopped: a hang here still resets.
        let sup = self.supervisor.take();
        if let Some(s) = &sup {
            s.stopping();
        }
        if let Some(t) = self.trial.take() {
            t.stop();
        }
        self.trim_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        if let Some(p) = self.prober.take() {
            p.stop();
        }
        lock(&self.app.xmltv).clear();
        for (_, r) in std::mem::take(&mut self.runners) {
            r.stop();
        }
        if let Some(m) = lock(&self.app.cards)
            .take()
            .and_then(|m| Arc::try_unwrap(m).ok())
        {
            m.stop();
        }
        self.softcam = None;
        *lock(&self.app.softcam) = None;
        if let Some(s) = sup {
            s.stop();
        }
    }
}

/// A source named by a technician: its index, `local` (the first tuner
/// or file) or `remote` (the first other site).
fn resolve_source(w: &str, ch: &Channel) -> Result<usize, String> {
    let st = ch.status();
    let n = st.sources.len();
    let found = match w {
        "local" => st.sources.iter().position(|s| !s.remote),
        "remote" => st.sources.iter().position(|s| s.remote),
        w => w.parse::<usize>().ok().filter(|&i| i < n),
    };
    found.ok_or_else(|| {
        let list: Vec<String> = st
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{i}: {}", s.source))
            .collect();
        format!(
            "no source '{}' in this channel; its sources are {} (or local, remote, auto)",
            crate::ts::text::clean_name(w),
            list.join("; ")
        )
    })
}

/// Each source's packet-level verdict as a gauge, per channel and source
/// index (failover channels; the words are in /status and capbox status).
fn render_source_health(snapshot: &[(String, crate::channel::ChannelStatus)], m: &mut String) {
    let mut f = family(
        m,
        "capbox_channel_source_healthy",
        Kind::Gauge,
        "1 while the source passes the failover's health rules (packets flowing, PAT/PMT, \
         video and audio PES, not left scrambled); why not is in /status sources[].health.",
    );
    for (ch, st) in snapshot {
        for (i, s) in st.sources.iter().enumerate() {
            if let Some(h) = s.healthy {
                f.sample(&[("channel", ch), ("source", &i.to_string())], h);
            }
        }
    }
}

/// The remote sources' own counters, per channel and source index (the
/// index of `capbox_channel_active_source`): why connections failed, bytes,
/// connects, packets dropped because the channel fell behind.
fn render_remote_metrics(snapshot: &[(String, crate::channel::ChannelStatus)], m: &mut String) {
    use crate::source::remote::RemoteStatus;
    let remotes: Vec<(&str, usize, &RemoteStatus)> = snapshot
        .iter()
        .flat_map(|(label, st)| {
            st.sources
                .iter()
                .enumerate()
                .filter_map(move |(i, s)| Some((label.as_str(), i, s.remote_status.as_ref()?)))
        })
        .collect();
    let mut f = family(
        m,
        "capbox_remote_failures_total",
        Kind::Counter,
        "Connections of a remote source that failed or ended, by reason: connect (refused, \
         timed out, unresolved), http_error (not 200), peer_not_local (503 from the peer's \
         loop guard), bad_response (not HTTP, bad framing, no response head in time), \
         not_ts, stall, truncated (body cut short), ended (the peer closed cleanly), io.",
    );
    for (ch, i, r) in &remotes {
        let i = i.to_string();
        for (reason, v) in r.counters.failures() {
            f.sample(&[("channel", ch), ("source", &i), ("reason", reason)], v);
        }
    }
    let mut rfamily = |name: &str, kind: Kind, help: &str, get: &dyn Fn(&RemoteStatus) -> u64| {
        let mut f = family(m, name, kind, help);
        for (ch, i, r) in &remotes {
            f.sample(&[("channel", ch), ("source", &i.to_string())], get(r));
        }
    };
    rfamily(
        "capbox_remote_connected",
        Kind::Gauge,
        "1 while the remote source has a response and reads its body.",
        &|r| r.connected as u64,
    );
    rfamily(
        "capbox_remote_connects_total",
        Kind::Counter,
        "TCP connections the remote source established.",
        &|r| r.counters.connects,
    );
    rfamily(
        "capbox_remote_bytes_total",
        Kind::Counter,
        "Body bytes the remote source received.",
        &|r| r.counters.bytes,
    );
    rfamily(
        "capbox_remote_queue_drops_total",
        Kind::Counter,
        "Packets of the remote source dropped because the channel fell behind.",
        &|r| r.counters.queue_drops,
    );
}

/// The escalation ladder of each adapter: steps taken per rung, the rung
/// it is on, whether it is failed.
fn render_recovery_metrics(adapters: &[AdapterStatus], m: &mut String) {
    use crate::dvb::recovery::Step;
    let mut f = family(
        m,
        "capbox_adapter_recovery_steps_total",
        Kind::Counter,
        "Steps of the adapter's escalation ladder taken (retune, reopen, usb_reset, failed).",
    );
    for a in adapters {
        for step in Step::ALL {
            let n = a.recovery.steps_total[step.number() as usize - 1];
            f.sample(&[("adapter", &a.name), ("step", step.label())], n);
        }
    }
    let mut f = family(
        m,
        "capbox_adapter_recovery_step",
        Kind::Gauge,
        "The rung the adapter is on: 0 healthy, 1 retune, 2 reopen, 3 USB reset, 4 failed.",
    );
    for a in adapters {
        f.sample(&[("adapter", &a.name)], a.recovery.step);
    }
    let mut f = family(
        m,
        "capbox_adapter_failed",
        Kind::Gauge,
        "1 while the adapter is marked failed (its ladder is exhausted; retried every failed_retry_s).",
    );
    for a in adapters {
        f.sample(&[("adapter", &a.name)], a.recovery.failed);
    }
}

impl App {
    /// The `epg` object of /status, with each XMLTV source's state.
    fn epg_status(&self) -> serde_json::Value {
        let mut v =
            crate::epg::serve::status(&self.epg, &self.guide_channels(), self.epg_enabled());
        let now = crate::epg::live::now_secs();
        let sources: Vec<serde_json::Value> = lock(&self.xmltv)
            .iter()
            .map(|(c, t)| {
                let s = t.stats();
                serde_json::json!({
                    "name": c.name,
                    "every_h": c.every_h,
                    "state": s.words(now),
                    "fetches": s.fetches,
                    "loaded": s.loaded,
                    "not_modified": s.not_modified,
                    "errors": s.results().into_iter().skip(2).filter(|(_, n)| *n > 0).collect::<BTreeMap<_, _>>(),
                    "last_success": s.last_success,
                    "last_error": s.last_error,
                    "consecutive_failures": s.consecutive_failures,
                    "channels": s.channels,
                    "events": s.events,
                    "unknown_ids": s.unknown_ids,
                })
            })
            .collect();
        if let Some(o) = v.as_object_mut() {
            o.insert("xmltv".into(), sources.into());
        }
        v
    }

    pub fn epg_enabled(&self) -> bool {
        self.epg.enabled()
    }

    /// The channels as the guide names them, in playlist order: the
    /// channel name (the store's key), its tvg-id and title as the
    /// playlist writes them.
    pub fn guide_channels(&self) -> Vec<crate::epg::serve::GuideChannel> {
        self.channels()
            .iter()
            .map(|ch| {
                let c = lock(&ch.config).clone();
                let st = ch.status();
                let display = c
                    .tvg_name
                    .clone()
                    .or(st.service_name.clone())
                    .unwrap_or_else(|| c.name.clone());
                crate::epg::serve::GuideChannel {
                    name: c.name,
                    tvg_id: c.tvg_id,
                    display,
                }
            })
            .collect()
    }

    /// One status handle per `[[adapter]]` of `cfg`, keeping the handles
    /// (and counters) of adapters that stay.
    fn set_adapters(&self, cfg: &Config) {
        let mut list = self.adapters.write().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::take(&mut *list);
        for a in &cfg.adapters {
            let h = old
                .iter()
                .find(|(n, _)| *n == a.name)
                .map(|(_, h)| h.clone())
                .unwrap_or_else(|| {
                    Arc::new(Mutex::new(AdapterStatus {
                        name: a.name.clone(),
                        device: a.device.clone(),
                        ..Default::default()
                    }))
                });
            lock(&h).device = a.device.clone();
            list.push((a.name.clone(), h));
        }
    }

    fn adapter(&self, name: &str) -> Option<AdapterStatusHandle> {
        self.adapters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| h.clone())
    }

    /// Every adapter's status, in config order.
    pub fn adapter_statuses(&self) -> Vec<AdapterStatus> {
        self.adapters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, h)| lock(h).clone())
            .collect()
    }

    /// One tick of the status page's history (see `spawn_history_sampler`).
    pub fn sample_history(&self, now: Instant) {
        use crate::monitor::history::{AdapterObs, ChannelObs};
        let adapters = self.adapter_statuses();
        let a: Vec<AdapterObs> = adapters
            .iter()
            .map(|s| AdapterObs {
                name: &s.name,
                locked: s.locked,
                cnr_db: s.cnr_db,
            })
            .collect();
        let chans: Vec<(String, u64)> = {
            let map = self.channels.read().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .map(|(n, ch)| (n.clone(), ch.ring.snapshot().bytes_in))
                .collect()
        };
        let c: Vec<ChannelObs> = chans
            .iter()
            .map(|(name, bytes)| ChannelObs {
                name,
                bytes: *bytes,
            })
            .collect();
        self.history.observe(now, &a, &c);
    }

    /// Channels in config order (the playlist's and /status's order).
    pub fn channels(&self) -> Vec<Arc<Channel>> {
        let map = self.channels.read().unwrap_or_else(|e| e.into_inner());
        let order = self.order.read().unwrap_or_else(|e| e.into_inner());
        order.iter().filter_map(|n| map.get(n).cloned()).collect()
    }
}

impl Backend for App {
    fn history(&self) -> Option<crate::monitor::history::View> {
        Some(self.history.view(Instant::now()))
    }

    fn fed_locally(&self, channel: &str) -> bool {
        self.channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .is_some_and(|c| c.fed_locally())
    }

    fn stream(&self, channel: &str) -> Option<Arc<Ring>> {
        self.channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .map(|c| c.ring.clone())
    }

    fn channel_names(&self) -> Vec<String> {
        self.channels().iter().map(|c| c.name()).collect()
    }

    fn playlist(&self, base_url: &str) -> String {
        use crate::ts::text::clean_name;
        // x-tvg-url: players (Kodi's IPTV Simple, TiviMate, VLC) fetch the
        // guide from there and match programmes to entries by tvg-id.
        let mut s = if self.epg_enabled() {
            format!("#EXTM3U x-tvg-url=\"{base_url}/epg.xml\"\n")
        } else {
            String::from("#EXTM3U\n")
        };
        for ch in self.channels() {
            let c = lock(&ch.config).clone();
            let st = ch.status();
            // M3U has no escapes: every value goes through the name cleaner
            // (the SDT's names already did; the config's may hold a quote or
            // a "\n" too), so each channel is exactly one #EXTINF line.
            let tvg_name = clean_name(
                c.tvg_name
                    .as_deref()
                    .or(st.service_name.as_deref())
                    .unwrap_or(&c.name),
            );
            let _ = writeln!(
                s,
                "#EXTINF:-1 tvg-id=\"{}\" tvg-name=\"{}\" group-title=\"{}\",{}",
                clean_name(&c.tvg_id),
                tvg_name,
                clean_name(c.group.as_deref().unwrap_or_default()),
                tvg_name
            );
            let _ = writeln!(s, "{base_url}/stream/{}", c.name);
        }
        s
    }

    fn metrics(&self) -> String {
        let mut m = String::with_capacity(4096);
        let chans = self.channels();
        // One status copy per channel per scrape, not one per metric family.
        let snapshot: Vec<(String, crate::channel::ChannelStatus)> =
            chans.iter().map(|ch| (ch.name(), ch.status())).collect();
        let mut cfamily =
            |name: &str,
             kind: Kind,
             help: &str,
             get: &dyn Fn(&crate::channel::ChannelStatus) -> f64| {
                let mut f = family(&mut m, name, kind, help);
                for (label, st) in &snapshot {
                    f.sample(&[("channel", label)], get(st));
                }
            };
        cfamily(
            "capbox_channel_up",
            Kind::Gauge,
            "1 when the channel has a PMT and fresh data.",
            &|s| (s.state == ChannelState::Up) as u8 as f64,
        );
        cfamily(
            "capbox_channel_active_source",
            Kind::Gauge,
            "Index of the source on air (config order; the slate is the last index + 1).",
            &|s| s.active_source as f64,
        );
        cfamily(
            "capbox_channel_on_slate",
            Kind::Gauge,
            "1 while every source is down and the slate plays.",
            &|s| s.failover.as_ref().is_some_and(|f| f.on_slate) as u8 as f64,
        );
        cfamily(
            "capbox_channel_pinned",
            Kind::Gauge,
            "1 while the operator has pinned the channel to a source (capbox pin, POST /control/pin).",
            &|s| s.failover.as_ref().is_some_and(|f| f.pinned.is_some()) as u8 as f64,
        );
        cfamily(
            "capbox_channel_switches_total",
            Kind::Counter,
            "Failover switches between sources (and to or from the slate).",
            &|s| s.failover.as_ref().map(|f| f.switches).unwrap_or(0) as f64,
        );
        cfamily(
            "capbox_channel_bytes_total",
            Kind::Counter,
            "Bytes written into the channel's ring.",
            &|s| (s.program_stats.packets_out * 188) as f64,
        );
        cfamily(
            "capbox_channel_packets_total",
            Kind::Counter,
            "Packets written into the channel's ring.",
            &|s| s.program_stats.packets_out as f64,
        );
        cfamily(
            "capbox_channel_input_packets_total",
            Kind::Counter,
            "Packets of the channel's PIDs read from the source.",
            &|s| s.program_stats.packets_in as f64,
        );
        cfamily(
            "capbox_channel_input_cc_errors_total",
            Kind::Counter,
            "Continuity errors on the channel's PIDs in the input.",
            &|s| s.program_stats.cc_errors as f64,
        );
        cfamily(
            "capbox_channel_pat_seen",
            Kind::Gauge,
            "1 once a PAT was read from the source.",
            &|s| s.program_stats.pat_seen as u8 as f64,
        );
        cfamily(
            "capbox_channel_pmt_seen",
            Kind::Gauge,
            "1 once the program's PMT was read from the source.",
            &|s| s.program_stats.pmt_seen as u8 as f64,
        );
        cfamily(
            "capbox_channel_pmt_changes_total",
            Kind::Counter,
            "PMT version changes followed.",
            &|s| s.program_stats.pmt_version_changes as f64,
        );
        cfamily(
            "capbox_channel_missing_pids",
            Kind::Gauge,
            "PIDs named in the PMT that carried no packet (after 2 s).",
            &|s| s.missing_pids.len() as f64,
        );
        cfamily(
            "capbox_channel_scrambled_packets_total",
            Kind::Counter,
            "Scrambled packets passed through.",
            &|s| s.program_stats.scrambled_packets as f64,
        );
        cfamily(
            "capbox_channel_descrambled_packets_total",
            Kind::Counter,
            "Scrambled packets descrambled (BISS or control words from a CA session).",
            &|s| s.descrambler.map(|b| b.descrambled).unwrap_or(0) as f64,
        );
        cfamily(
            "capbox_channel_csa_batch_fill_ratio",
            Kind::Gauge,
            "Mean packets per CSA batch divided by the batch capacity.",
            &|s| s.descrambler.map(|b| b.fill_ratio).unwrap_or(0.0),
        );
        cfamily(
            "capbox_channel_ecms_total",
            Kind::Counter,
            "ECM sections sent to the channel's card or softcam (changed ones only).",
            &|s| s.ca.as_ref().map(|c| c.ecms_sent).unwrap_or(0) as f64,
        );
        cfamily(
            "capbox_channel_ecm_answers_total",
            Kind::Counter,
            "ECMs answered with control words.",
            &|s| s.ca.as_ref().map(|c| c.ecms_answered).unwrap_or(0) as f64,
        );
        cfamily(
            "capbox_channel_ecm_errors_total",
            Kind::Counter,
            "ECMs refused or failed by the card or softcam.",
            &|s| s.ca.as_ref().map(|c| c.ecm_errors).unwrap_or(0) as f64,
        );
        cfamily(
            "capbox_channel_ecms_dropped_total",
            Kind::Counter,
            "ECMs not sent: one still pending, or over the rate limit.",
            &|s| s.ca.as_ref().map(|c| c.ecms_dropped).unwrap_or(0) as f64,
        );
        cfamily(
            "capbox_channel_emms_total",
            Kind::Counter,
            "EMM sections sent to the card or softcam.",
            &|s| s.ca.as_ref().map(|c| c.emms_sent).unwrap_or(0) as f64,
        );
        cfamily(
            "capbox_channel_emms_dropped_total",
            Kind::Counter,
            "EMMs not sent: for another card, repeated, or over the rate limit.",
            &|s| s.ca.as_ref().map(|c| c.emms_dropped).unwrap_or(0) as f64,
        );
        cfamily(
            "capbox_channel_ecm_rtt_seconds",
            Kind::Gauge,
            "Round trip of the last answered ECM.",
            &|s| {
                s.ca.as_ref()
                    .and_then(|c| c.last_ecm_rtt_ms)
                    .map(|ms| ms / 1000.0)
                    .unwrap_or(0.0)
            },
        );
        cfamily(
            "capbox_channel_cw_age_seconds",
            Kind::Gauge,
            "Seconds since the last control word arrived (0: none yet or no CA session).",
            &|s| s.ca.as_ref().and_then(|c| c.last_cw_age_s).unwrap_or(0.0),
        );
        cfamily(
            "capbox_channel_entry_points_total",
            Kind::Counter,
            "Video keyframes found.",
            &|s| s.entry_points as f64,
        );
        cfamily(
            "capbox_channel_input_psi_crc_errors_total",
            Kind::Counter,
            "PSI/SI sections with a bad CRC in the channel's mux.",
            &|s| s.mux_stats.psi_crc_errors as f64,
        );
        cfamily(
            "capbox_channel_input_psi_dropped_total",
            Kind::Counter,
            "PSI/SI sections dropped incomplete or malformed in the channel's mux.",
            &|s| s.mux_stats.psi_dropped as f64,
        );
        cfamily(
            "capbox_channel_input_pat_entries_refused_total",
            Kind::Counter,
            &format!(
                "PAT entries of the channel's mux not held: over the bound on the whole \
                 PAT ({} entries, lower section numbers first), counted per section received.",
                crate::ts::pat::MAX_PAT_ENTRIES
            ),
            &|s| s.mux_stats.pat_entries_refused as f64,
        );
        cfamily(
            "capbox_channel_input_transport_errors_total",
            Kind::Counter,
            "Packets with transport_error_indicator in the channel's mux.",
            &|s| s.mux_stats.transport_errors as f64,
        );
        cfamily(
            "capbox_channel_source_bytes_skipped_total",
            Kind::Counter,
            "Input bytes skipped to regain packet sync.",
            &|s| s.source_stats.bytes_skipped as f64,
        );
        cfamily(
            "capbox_channel_source_errors_total",
            Kind::Counter,
            "Times the source failed (cannot open, not TS, ended).",
            &|s| s.source_errors as f64,
        );
        cfamily(
            "capbox_channel_source_loops_total",
            Kind::Counter,
            "Times a file source looped to its start.",
            &|s| s.source_stats.loops as f64,
        );
        // By reason; wrong_key first (the one a wrong BISS key shows).
        let mut f = family(
            &mut m,
            "capbox_channel_undecryptable_packets_total",
            Kind::Counter,
            "Packets left scrambled (no_key, stale_key: control word late, pes_scrambled, \
             reserved, malformed), plus descrambled PES starts without a start code (wrong_key).",
        );
        for (label, st) in &snapshot {
            let d = st.descrambler.unwrap_or_default();
            for (reason, v) in [
                ("wrong_key", d.wrong_key),
                ("stale_key", d.stale_key),
                ("no_key", d.no_key),
                ("pes_scrambled", d.pes_scrambled),
                ("reserved", d.reserved),
                ("malformed", d.malformed),
            ] {
                f.sample(&[("channel", label), ("reason", reason)], v);
            }
        }
        let mut f = family(
            &mut m,
            "capbox_channel_control_words_total",
            Kind::Counter,
            "Control words by what the descrambler did with them: taken into the active keys, \
             deferred (for the parity on air), refused as a late duplicate of a retired word, \
             or taken early because the key on air failed on a PES start that the deferred \
             word opened (wrong_key_replaced).",
        );
        for (label, st) in &snapshot {
            let Some(d) = st.descrambler else { continue };
            for (event, v) in [
                ("taken", d.key_changes),
                ("deferred", d.cw_deferred),
                ("late_duplicate_refused", d.late_cw_refused),
                ("wrong_key_replaced", d.cw_healed),
            ] {
                f.sample(&[("channel", label), ("event", event)], v);
            }
        }
        render_source_health(&snapshot, &mut m);
        render_es_metrics(&snapshot, &mut m);
        render_remote_metrics(&snapshot, &mut m);
        self.render_tr101290_metrics(&snapshot, &mut m);
        let adapters = self.adapter_statuses();
        let mut afamily =
            |name: &str, kind: Kind, help: &str, get: &dyn Fn(&AdapterStatus) -> Option<f64>| {
                let mut f = family(&mut m, name, kind, help);
                for a in &adapters {
                    // Not available: no sample (Prometheus' way to say it).
                    if let Some(v) = get(a) {
                        f.sample(&[("adapter", &a.name)], v);
                    }
                }
            };
        afamily(
            "capbox_frontend_locked",
            Kind::Gauge,
            "1 when the adapter's frontend has lock.",
            &|a| Some(a.locked as u8 as f64),
        );
        afamily(
            "capbox_frontend_cnr_db",
            Kind::Gauge,
            "Carrier to noise ratio in dB, when the driver measures it.",
            &|a| a.cnr_db,
        );
        afamily(
            "capbox_frontend_signal_dbm",
            Kind::Gauge,
            "Signal strength in dBm, when the driver measures it.",
            &|a| a.signal_dbm,
        );
        afamily(
            "capbox_frontend_ber",
            Kind::Gauge,
            "Bit error ratio (post-FEC, else pre-FEC) since the tune.",
            &|a| a.ber,
        );
        afamily(
            "capbox_frontend_ucb_total",
            Kind::Counter,
            "Uncorrected blocks counted by the driver since the tune.",
            &|a| a.ucb_total.map(|v| v as f64),
        );
        afamily(
            "capbox_frontend_dvr_overflows_total",
            Kind::Counter,
            "Times the kernel's dvr buffer overflowed (data dropped).",
            &|a| Some(a.dvr_overflows as f64),
        );
        afamily(
            "capbox_frontend_stalls_total",
            Kind::Counter,
            "Lock lost or no dvr data while locked.",
            &|a| Some(a.stalls as f64),
        );
        afamily(
            "capbox_frontend_lock_failures_total",
            Kind::Counter,
            "Tunes that found no lock in time.",
            &|a| Some(a.lock_failures as f64),
        );
        afamily(
            "capbox_frontend_pid_filters",
            Kind::Gauge,
            "Hardware PID filters in use; 0 means the full TS is taken.",
            &|a| Some(a.pids.len() as f64),
        );
        afamily(
            "capbox_frontend_filter_changes_total",
            Kind::Counter,
            "Changes of the PID filter set (a PMT changed, a channel came or went).",
            &|a| Some(a.filter_changes as f64),
        );
        afamily(
            "capbox_frontend_filter_failures_total",
            Kind::Counter,
            "PID filter changes that failed and fell back to the full TS.",
            &|a| Some(a.filter_failures as f64),
        );
        afamily(
            "capbox_frontend_present",
            Kind::Gauge,
            "0 while the adapter is gone (unplugged, driver unloaded), else 1.",
            &|a| Some(!a.gone as u8 as f64),
        );
        afamily(
            "capbox_frontend_disappeared_total",
            Kind::Counter,
            "Times the adapter disappeared (ENODEV) while in use.",
            &|a| Some(a.disappeared as f64),
        );
        render_recovery_metrics(&adapters, &mut m);
        crate::ca::cards::render_metrics(&self.card_statuses(), &mut m);
        let (rss, cpu) = process_usage();
        family(
            &mut m,
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
        )
        .value(rss);
        family(
            &mut m,
            "process_cpu_seconds_total",
            Kind::Counter,
            "User and system CPU time spent in seconds.",
        )
        .value(cpu);
        self.supervisor.metrics(&mut m);
        self.probes.render_metrics(&mut m);
        crate::epg::serve::metrics(
            &self.epg,
            &self.guide_channels(),
            self.epg_enabled(),
            &mut m,
        );
        {
            let x = lock(&self.xmltv);
            let stats: Vec<(String, crate::epg::fetch::FetchStats)> =
                x.iter().map(|(c, t)| (c.name.clone(), t.stats())).collect();
            drop(x);
            let refs: Vec<(&str, &crate::epg::fetch::FetchStats)> =
                stats.iter().map(|(n, s)| (n.as_str(), s)).collect();
            crate::epg::fetch::render_metrics(&mut m, &refs);
        }
        self.update.metrics(&mut m);
        family(
            &mut m,
            "capbox_uptime_seconds",
            Kind::Gauge,
            "Seconds since capbox started.",
        )
        .value(self.started.elapsed().as_secs());
        m
    }

    fn status(&self) -> serde_json::Value {
        // Each channel's guide coverage (one lock of the store).
        let coverage: BTreeMap<String, usize> = if self.epg_enabled() {
            crate::epg::serve::coverage(&self.epg, &self.guide_channels())
                .into_iter()
                .collect()
        } else {
            BTreeMap::new()
        };
        let chans: Vec<serde_json::Value> = self
            .channels()
            .iter()
            .map(|ch| {
                let c = lock(&ch.config).clone();
                let st = ch.status();
                let ring = ch.ring.snapshot();
                let epg = coverage
                    .get(&c.name)
                    .map(|n| serde_json::json!({ "programmes_next_12h": n }));
                serde_json::json!({
                    "epg": epg,
                    "name": c.name,
                    "tvg_id": c.tvg_id,
                    "tvg_name": c.tvg_name,
                    "group": c.group,
                    "state": st.state,
                    "reason": st.reason,
                    "source": st.source,
                    "active_source": st.active_source,
                    "sources": st.sources,
                    "failover": st.failover,
                    "format": st.format,
                    "program": st.program,
                    "service_name": st.service_name,
                    "provider": st.provider,
                    "pmt_pid": st.pmt_pid,
                    "pmt_version": st.pmt_version,
                    "streams": st.streams,
                    "bytes": st.program_stats.packets_out * 188,
                    "input_cc_errors": st.program_stats.cc_errors,
                    "missing_pids": st.missing_pids,
                    "psi_crc_errors": st.mux_stats.psi_crc_errors,
                    "entry_points": st.entry_points,
                    // "biss" kept for BISS channels (older consoles read it).
                    "biss": st.ca.as_ref().filter(|c| c.kind == "biss").and(st.descrambler),
                    "descrambler": st.descrambler,
                    "ca": st.ca,
                    "program_stats": st.program_stats,
                    "mux_stats": st.mux_stats,
                    "source_stats": st.source_stats,
                    "ring": ring,
                    "tr101290": self
                        .monitor
                        .channel(&c.name, st.active_source)
                        .map(|s| s.to_json()),
                    "verdict": st.monitor.as_ref().map(|m| m.verdict),
                    "verdict_reason": st.monitor.as_ref().map(|m| m.reason.clone()),
                    "verdict_since_s": st.monitor.as_ref().map(|m| m.since_s),
                    "es": st.monitor.as_ref().map(|m| m.es.clone()).unwrap_or_default(),
                })
            })
            .collect();
        let (rss, cpu) = process_usage();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "process": { "rss_bytes": rss, "cpu_seconds": cpu },
            "channels": chans,
            "adapters": self.adapter_statuses(),
            "softcam": self.softcam_status(),
            "cards": self.card_statuses(),
            "pins": self.pins_status(),
            "supervisor": self.supervisor.status(),
            "probes": self.probes.status(),
            "muxes": self
                .monitor
                .muxes()
                .iter()
                .map(crate::monitor::tr101290::mux_json)
                .collect::<Vec<_>>(),
            "epg": self.epg_status(),
            "update": self.update.status(),
        })
    }

    fn epg(&self, params: &[(String, String)]) -> (u16, String) {
        if !self.epg_enabled() {
            return (
                404,
                "the programme guide is off ([epg] enabled = false)\n".to_string(),
            );
        }
        let channels = self.guide_channels();
        let mut cache = lock(&self.epg_cache);
        crate::epg::serve::epg_xml(&self.epg, &mut cache, &channels, params)
    }

    fn control(&self, action: &str, params: &[(String, String)], peer: IpAddr) -> (u16, String) {
        match action {
            "pin" => self.control_pin(params, peer),
            "fault" => self.supervisor.control_fault(params),
            _ => (
                404,
                format!(
                    "no control '{}'; there is: pin, fault",
                    crate::ts::text::clean_name(action)
                ),
            ),
        }
    }
}

/// The pins as the config's state file holds them (a damaged file is
/// reported and the channels follow their rules).
fn load_pins(config: &Config) -> PinStore {
    match &config.server.state_file {
        None => PinStore::in_memory(),
        Some(path) => {
            let (store, warn) = PinStore::load(path);
            if let Some(w) = warn {
                log::warn!("{w}");
            }
            store
        }
    }
}

impl App {
    /// TR 101 290 per input mux and per channel (the on-air source's
    /// output), and the box clock (issue 14, tr290).
    fn render_tr101290_metrics(
        &self,
        snapshot: &[(String, crate::channel::ChannelStatus)],
        m: &mut String,
    ) {
        let chans: Vec<(String, crate::monitor::tr101290::Snapshot)> = snapshot
            .iter()
            .filter_map(|(n, st)| Some((n.clone(), self.monitor.channel(n, st.active_source)?)))
            .collect();
        crate::monitor::tr101290::render_metrics(&self.monitor.muxes(), &chans, m);
    }

    /// Re-apply a channel's stored pin (at start, on reload). A pin whose
    /// source changed in the config since is dropped, with a line.
    fn restore_pin(&self, ch: &Channel) {
        let name = ch.name();
        let mut pins = lock(&self.pins);
        let Some(p) = pins.get(&name).cloned() else {
            return;
        };
        let now = pin::unix_now();
        let names = ch.source_names();
        let drop_why = if p.expired(now) {
            Some("its time has run".to_string())
        } else if names.get(p.source) != Some(&p.source_desc) {
            Some(format!(
                "source {} is no longer {} in the config",
                p.source, p.source_desc
            ))
        } else {
            None
        };
        if let Some(why) = drop_why {
            log::warn!(
                "channel '{name}': pin on source {} dropped: {why}",
                p.source
            );
            if let Err(e) = pins.set(&name, None) {
                log::warn!("{e}");
            }
            return;
        }
        let until = p.remaining(now).map(|d| Instant::now() + d);
        match ch.pin(Some(p.source), until) {
            Ok(()) => log::warn!(
                "channel '{name}': pinned to source {} ({}) by {} — restored from the state file{}",
                p.source,
                p.source_desc,
                p.by,
                p.remaining(now)
                    .map(|d| format!(", {} left", pin::words(d)))
                    .unwrap_or_default()
            ),
            Err(e) => log::warn!("channel '{name}': stored pin not applied: {e}"),
        }
    }

    fn pins_status(&self) -> serde_json::Value {
        let mut pins = lock(&self.pins);
        let now = pin::unix_now();
        pins.expire(now);
        serde_json::json!({
            "state_file": pins.path().map(|p| p.display().to_string()),
            "save_error": pins.save_error,
            "pins": pins.iter().map(|(c, p)| serde_json::json!({
                "channel": c,
                "source": p.source,
                "source_desc": p.source_desc,
                "by": p.by,
                "set_at": p.set_at,
                "expires_in_s": p.remaining(now).map(|d| d.as_secs()),
            })).collect::<Vec<_>>(),
        })
    }

    /// `POST /control/pin?channel=NAME&source=N|auto|local|remote[&for=30m]`.
    fn control_pin(&self, params: &[(String, String)], peer: IpAddr) -> (u16, String) {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let Some(name) = get("channel").filter(|n| !n.is_empty()) else {
            return (400, "missing channel=NAME".into());
        };
        let Some(ch) = self
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
        else {
            return (
                404,
                format!("no channel '{}'", crate::ts::text::clean_name(name)),
            );
        };
        let names = ch.source_names();
        let Some(which) = get("source").filter(|s| !s.is_empty()) else {
            return (
                400,
                "missing source=N (0 = the first source), local, remote or auto".into(),
            );
        };
        let source = match which {
            "auto" => None,
            w => match resolve_source(w, &ch) {
                Ok(i) => Some(i),
                Err(e) => return (400, e),
            },
        };
        let duration = match get("for").filter(|d| !d.is_empty()) {
            None => None,
            Some(_) if source.is_none() => {
                return (400, "for= goes with a source, not with auto".into())
            }
            Some(d) => match pin::parse_duration(d) {
                Ok(d) => Some(d),
                Err(e) => return (400, format!("for: {e}")),
            },
        };
        let until = duration.map(|d| Instant::now() + d);
        if let Err(e) = ch.pin(source, until) {
            return (409, format!("channel '{name}': {e}"));
        }
        let now = pin::unix_now();
        let record = source.map(|i| PinRecord {
            source: i,
            source_desc: names.get(i).cloned().unwrap_or_default(),
            set_at: now,
            until: duration.map(|d| now + d.as_secs()),
            by: peer.to_string(),
        });
        let saved = lock(&self.pins).set(name, record);
        let words = match source {
            Some(i) => format!(
                "channel '{name}': pinned to source {i} ({}) by {peer}{}",
                names.get(i).cloned().unwrap_or_default(),
                duration
                    .map(|d| format!(" for {}", pin::words(d)))
                    .unwrap_or_else(|| " until unpinned".into())
            ),
            None => format!("channel '{name}': unpinned by {peer}; back to the failover rules"),
        };
        log::warn!("{words}");
        if let Err(e) = &saved {
            log::warn!("{e}");
        }
        let health = source.and_then(|i| {
            let st = ch.status();
            st.sources
                .get(i)
                .filter(|s| s.healthy == Some(false))
                .map(|s| s.health.clone().unwrap_or_default())
        });
        let body = serde_json::json!({
            "channel": name,
            "pinned": source,
            "source": source.and_then(|i| names.get(i)),
            "expires_in_s": duration.map(|d| d.as_secs()),
            "saved": saved.is_ok(),
            "save_error": saved.err(),
            "message": words,
            "warning": health.map(|h| format!("source is unhealthy now ({h}); it stays on air while pinned")),
        });
        (200, body.to_string())
    }

    /// Every reader's card, with the channels whose ECMs go to its CA
    /// system; empty without a card manager.
    fn card_statuses(&self) -> Vec<crate::ca::cards::CardStatus> {
        let Some(m) = lock(&self.cards).clone() else {
            return Vec::new();
        };
        let mut cards = m.status();
        let channels = self.channels();
        for card in cards.iter_mut() {
            for ch in &channels {
                let st = lock(&ch.status);
                if let Some(ca) = &st.ca {
                    if ca.kind == "card" && ca.caid.is_some() && ca.caid == card.caid {
                        card.services.push(lock(&ch.config).name.clone());
                    }
                }
            }
        }
        cards
    }

    /// The softcam connection in words, or null without `[softcam]`.
    fn softcam_status(&self) -> serde_json::Value {
        use crate::ca::dvbapi::client::ConnState;
        let Some(c) = lock(&self.softcam).clone() else {
            return serde_json::Value::Null;
        };
        let st = c.status();
        let state = match &st.state {
            ConnState::Down { since } => {
                format!("not connected for {} s", since.elapsed().as_secs())
            }
            ConnState::Handshake => "connected, waiting for SERVER_INFO".to_string(),
            ConnState::Ready { server, protocol } => {
                format!("ready: {server} (protocol {protocol})")
            }
        };
        serde_json::json!({
            "endpoint": st.endpoint,
            "state": state,
            "last_error": st.last_error,
            "connections": st.connections,
            "desyncs": st.desyncs,
            "stray_messages": st.stray_messages,
        })
    }
}

/// RSS in bytes and CPU seconds of this process, from /proc/self.
pub fn process_usage() -> (u64, f64) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime is the 14th
            // field overall, stime the 15th. Clock ticks are 100 Hz on Linux.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: f64 = f.get(11)?.parse().ok()?;
            let st: f64 = f.get(12)?.parse().ok()?;
            Some((ut + st) / 100.0)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

/// Guard for tests and the demo: a mutex-held daemon.
pub type Shared = Arc<Mutex<Daemon>>;

/// The per-channel verdict and elementary-stream families (issue 14 item 3,
/// `monitor::channel`).
fn render_es_metrics(snapshot: &[(String, crate::channel::ChannelStatus)], m: &mut String) {
    let chans: Vec<(String, Option<&crate::monitor::channel::MonitorStatus>)> = snapshot
        .iter()
        .map(|(name, st)| (name.clone(), st.monitor.as_ref()))
        .collect();
    crate::monitor::channel::render_metrics(&chans, m);
}

#[cfg(test)]
mod dvb_tests {
    use super::*;

    /// A DVB channel on an adapter that is not there: the daemon starts,
    /// /metrics has the adapter (unlocked), /status says why in words and
    /// the channel is down naming the adapter; the runner keeps retrying.
    #[test]
    fn daemon_dvb_adapter_absent_is_reported_not_fatal() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\n[[adapter]]\nname = \"ter9\"\ndevice = \"adapter97\"\n\
                    [[channel]]\nname = \"a\"\n[[channel.source]]\nadapter = \"ter9\"\ntune = \"dvbt 474000000 8MHz\"\nprogram = 0x880\n\
                    [[channel]]\nname = \"b\"\n[[channel.source]]\nadapter = \"ter9\"\ntune = \"dvbt 474MHz 8MHz\"\nprogram = 0x881\n";
        let cfg = config::parse(text, "t.toml", Path::new("/")).unwrap();
        let d = Daemon::start(cfg, true).unwrap();
        // One runner for the two channels on the one mux.
        assert_eq!(d.runners.len(), 1);
        let end = Instant::now() + Duration::from_secs(10);
        let mut reason = String::new();
        while Instant::now() < end {
            reason = d.app.channels()[0].status().reason;
            if reason.contains("adapter97") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            reason.contains("ter9 (adapter97)") && reason.contains("No such file"),
            "{reason}"
        );
        let m = d.app.metrics();
        assert!(
            m.contains("capbox_frontend_locked{adapter=\"ter9\"} 0"),
            "{m}"
        );
        assert!(
            m.contains("capbox_frontend_lock_failures_total{adapter=\"ter9\"} 0"),
            "{m}"
        );
        assert!(
            !m.contains("capbox_frontend_cnr_db{"),
            "no C/N sample without a measure"
        );
        let st = d.app.status();
        let a = &st["adapters"][0];
        assert_eq!(a["name"], "ter9");
        assert_eq!(a["locked"], false);
        assert!(
            a["last_error"].as_str().unwrap().contains("No such file"),
            "{a}"
        );
        assert!(a["tunes"].as_u64().unwrap() >= 1);
        // An absent adapter is not a tuner fault: no ladder step, not
        // failed (it is reopened by name with the back-off).
        assert_eq!(a["recovery"]["step"], 0, "{a}");
        assert_eq!(a["recovery"]["failed"], false, "{a}");
        for step in ["retune", "reopen", "usb_reset", "failed"] {
            let line = format!(
                "capbox_adapter_recovery_steps_total{{adapter=\"ter9\",step=\"{step}\"}} 0"
            );
            assert!(m.contains(&line), "{line}\n{m}");
        }
        assert!(
            m.contains("capbox_adapter_failed{adapter=\"ter9\"} 0"),
            "{m}"
        );
        assert!(
            m.contains("capbox_adapter_recovery_step{adapter=\"ter9\"} 0"),
            "{m}"
        );
        d.stop();
    }

    /// A reload that moves `[softcam]` re-creates the dvbapi channel on a
    /// connection to the new softcam (and reports the new endpoint); the
    /// plain channel is not touched.
    #[test]
    fn reload_moves_dvbapi_channels_to_the_new_softcam() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let mux = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/mux.ts");
        let text = |port: u16| {
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[softcam]\nhost = \"127.0.0.1\"\nport = {port}\n\
                 [[channel]]\nname = \"scr\"\n[[channel.source]]\nfile = \"{m}\"\nprogram = 1\nca = \"dvbapi\"\n\
                 [[channel]]\nname = \"plain\"\n[[channel.source]]\nfile = \"{m}\"\nprogram = 2\n",
                m = mux.display()
            )
        };
        let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
        let cfg = config::parse(&text(port(&a)), "t.toml", Path::new("/")).unwrap();
        let mut d = Daemon::start(cfg, true).unwrap();
        let plain = d.app.channels.read().unwrap()["plain"].clone();
        let new = config::parse(&text(port(&b)), "t.toml", Path::new("/")).unwrap();
        d.reload(new);
        let end = Instant::now() + Duration::from_secs(10);
        let mut connected = false;
        while Instant::now() < end && !connected {
            connected = b.accept().is_ok();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(connected, "no connection to the new softcam");
        let st = d.app.softcam_status();
        assert_eq!(
            st["endpoint"].as_str(),
            Some(format!("127.0.0.1:{}", port(&b)).as_str()),
            "{st}"
        );
        // The plain channel kept its Channel (and so its clients).
        assert!(Arc::ptr_eq(
            &plain,
            &d.app.channels.read().unwrap()["plain"]
        ));
        d.stop();
    }
}
