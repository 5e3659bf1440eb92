//! monitoring/capbox.rules.yml in a real Prometheus (Debian's
//! /usr/bin/prometheus) scraping a real `capbox serve`: the rules load
//! (every group and rule), and alerts go from nothing to firing when the
//! channel does what they watch for: a channel's remote source dies (one
//! channel fails over to its file, one without a second source plays its
//! slate), and a channel's audio is silent. The rules run with every
//! `for:` cut to 1 s and a 1 s evaluation, so the test takes seconds; the
//! expressions are the shipped ones.

mod e2e_common;
use e2e_common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn have_prometheus() -> bool {
    let ok = have("promtool") && have("prometheus");
    if !ok {
        eprintln!(
            "\n\n*** SKIPPED: promtool/prometheus missing: apt-get install -y prometheus ***\n"
        );
    }
    ok
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped rules with every `for:` at 1 s and group intervals at 1 s.
fn fast_rules() -> String {
    let text = std::fs::read_to_string(root().join("monitoring/capbox.rules.yml")).unwrap();
    let mut fors = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            let pad = &l[..l.len() - t.len()];
            if t.starts_with("for: ") {
                fors += 1;
                format!("{pad}for: 1s")
            } else if t.starts_with("interval: ") {
                format!("{pad}interval: 1s")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(fors >= 10, "only {fors} `for:` lines in capbox.rules.yml");
    out.join("\n") + "\n"
}

/// One alert as /api/v1/alerts lists it.
#[derive(Debug, Clone)]
struct Alert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    state: String,
}

impl Alert {
    fn is(&self, name: &str, channel: &str) -> bool {
        self.labels.get("alertname").map(String::as_str) == Some(name)
            && self.labels.get("channel").map(String::as_str) == Some(channel)
    }
}

/// A Prometheus server scraping one capbox every second with the fast
/// rules; killed on drop.
struct Prom {
    child: Child,
    dir: TempDir,
    web: SocketAddr,
}

impl Prom {
    fn start(target: SocketAddr) -> Prom {
        let dir = TempDir::new("prom-alerts");
        std::fs::write(dir.join("capbox.rules.yml"), fast_rules()).unwrap();
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: capbox\n    static_configs:\n      - targets: ['{target}']\n",
                dir.join("capbox.rules.yml").display()
            ),
        )
        .unwrap();
        let web = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        Prom { child, dir, web }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GET a JSON API path: the whole answer (`status`, `data` or
    /// `error`); None while Prometheus does not answer yet.
    fn get_raw(&self, path: &str) -> Option<serde_json::Value> {
        let mut c = std::net::TcpStream::connect(self.web).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(c, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.web).ok()?;
        let mut raw = String::new();
        c.read_to_string(&mut raw).ok()?;
        let body = raw.split_once("\r\n\r\n")?.1;
        serde_json::from_str(body).ok()
    }

    /// `data` of a successful answer.
    fn get(&self, path: &str) -> Option<serde_json::Value> {
        let v = self.get_raw(path)?;
        (v["status"] == "success").then(|| v["data"].clone())
    }

    /// An instant query: Ok(result[]) or Err(Prometheus' error).
    fn query(&self, q: &str) -> Result<Vec<serde_json::Value>, String> {
        let enc: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let v = self
            .get_raw(&format!("/api/v1/query?query={enc}"))
            .ok_or("no answer")?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Rules whose last evaluation failed (a runtime error promtool's
    /// parse cannot see: many-to-many matching, duplicate series).
    fn rule_errors(&self) -> Vec<String> {
        let Some(d) = self.get("/api/v1/rules") else {
            return vec!["no answer from /api/v1/rules".into()];
        };
        d["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .filter(|r| r["health"] == "err")
            .map(|r| format!("{}: {}", r["name"], r["lastError"]))
            .collect()
    }

    /// Number of alerting rules loaded, once Prometheus answers.
    fn alerting_rules(&self) -> Option<usize> {
        let d = self.get("/api/v1/rules")?;
        let groups = d["groups"].as_array()?;
        Some(
            groups
                .iter()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .filter(|r| r["type"] == "alerting")
                .count(),
        )
    }

    fn alerts(&self) -> Vec<Alert> {
        let Some(d) = self.get("/api/v1/alerts") else {
            return Vec::new();
        };
        let map = |v: &serde_json::Value| -> BTreeMap<String, String> {
            v.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        };
        d["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| Alert {
                labels: map(&a["labels"]),
                annotations: map(&a["annotations"]),
                state: a["state"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// Up and scraping `target`'s capbox, with every rule of the file.
    fn wait_ready(&self, channel: &str) {
        let want = fast_rules()
            .lines()
            .filter(|l| l.trim_start().starts_with("- alert: "))
            .count();
        let mut rules = None;
        let ok = wait_until(Duration::from_secs(60), || {
            rules = self.alerting_rules();
            rules == Some(want)
                && self
                    .get(&format!(
                        "/api/v1/query?query=capbox_channel_up%7Bchannel%3D%22{channel}%22%7D"
                    ))
                    .is_some_and(|d| d["result"][0]["value"][1] == "1")
        });
        assert!(
            ok,
            "Prometheus did not load the {want} alerting rules (has {rules:?}) or scrape capbox\n{}",
            self.log()
        );
    }

    /// Wait until `name` fires for `channel`; returns it.
    fn wait_firing(&self, name: &str, channel: &str, t: Duration, srv: &Server) -> Alert {
        let start = Instant::now();
        let last = loop {
            let last = self.alerts();
            if let Some(a) = last
                .iter()
                .find(|a| a.is(name, channel) && a.state == "firing")
            {
                eprintln!("{name} {channel} firing after {:?}", start.elapsed());
                return a.clone();
            }
            if start.elapsed() > t {
                break last;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        panic!(
            "{name} for channel {channel} not firing after {t:?}; alerts: {last:#?}\n\
             capbox /metrics:\n{}\ncapbox log:\n{}\nprometheus log:\n{}",
            srv.get("/metrics")
                .text()
                .lines()
                .filter(|l| l.contains(channel) && !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"),
            srv.log_tail(40),
            self.log()
        );
    }

    /// Alerts of these names for `channel`, any state.
    fn alerts_for(&self, names: &[&str], channel: &str) -> Vec<Alert> {
        self.alerts()
            .into_iter()
            .filter(|a| names.iter().any(|n| a.is(n, channel)))
            .collect()
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn failover_and_slate_alerts_fire_in_a_real_prometheus() {
    if !have_prometheus() {
        return;
    }
    // Site B: news from its file; site A pulls it over HTTP.
    let b = Server::start(
        "palerts-b",
        &(server_toml() + &channel_toml("news", &sample_mux(), 1, &[])),
    );
    b.wait_up(&["news"]);
    let m = sample_mux();
    let cfg = format!(
        "{}[[channel]]\nname = \"relay\"\nfail_after_ms = 300\n\n\
         [[channel.source]]\nurl = \"http://{b}/stream/news\"\n\n\
         [[channel.source]]\nfile = \"{m}\"\nprogram = 1\nloop = true\n\n\
         [[channel]]\nname = \"solo\"\nfail_after_ms = 300\nslate = \"auto\"\n\n\
         [[channel.source]]\nurl = \"http://{b}/stream/news\"\n\n",
        server_toml(),
        b = b.addr,
        m = m.display(),
    );
    let dir = TempDir::new("palerts-a");
    let path = dir.join("capbox.toml");
    std::fs::write(&path, cfg).unwrap();
    let slates = root().join("slates");
    let a = Server::start_in_env(dir, path, &[("CAPBOX_SLATES", slates.as_os_str())]);
    a.wait_up(&["relay", "solo"]);
    let on_first = wait_until(Duration::from_secs(20), || {
        let m = a.metrics();
        metric(&m, "capbox_channel_active_source", "relay") == Some(0.0)
            && metric(&m, "capbox_channel_active_source", "solo") == Some(0.0)
    });
    assert!(on_first, "A is not on B's stream\n{}", a.log_text());

    let prom = Prom::start(a.addr);
    prom.wait_ready("relay");
    // A few evaluations with both channels on their first source: none of
    // the two alerts, not even pending.
    std::thread::sleep(Duration::from_secs(4));
    for ch in ["relay", "solo"] {
        let early = prom.alerts_for(&["CapboxFailoverActive", "CapboxSlateOnAir"], ch);
        assert!(
            early.is_empty(),
            "{ch} on its first source, yet: {early:#?}"
        );
    }

    // B dies: relay plays its file, solo its slate.
    drop(b);
    let f = prom.wait_firing("CapboxFailoverActive", "relay", Duration::from_secs(60), &a);
    assert_eq!(f.labels["severity"], "warning");
    assert!(
        f.annotations["summary"].contains("Channel relay")
            && f.annotations["summary"].contains("backup source 1"),
        "{f:?}"
    );
    let s = prom.wait_firing("CapboxSlateOnAir", "solo", Duration::from_secs(60), &a);
    assert_eq!(s.labels["severity"], "critical");
    assert!(
        s.annotations["description"].contains("channel solo"),
        "{s:?}"
    );
    // The slate is not a failover, and relay is not on its slate.
    assert!(prom
        .alerts_for(&["CapboxFailoverActive"], "solo")
        .is_empty());
    assert!(prom.alerts_for(&["CapboxSlateOnAir"], "relay").is_empty());
    // A channel on its slate is "down" in capbox's words: one alert for
    // it (the slate), not two.
    for ch in ["relay", "solo"] {
        let down = prom.alerts_for(&["CapboxChannelDown"], ch);
        assert!(down.is_empty(), "{ch}: {down:#?}");
    }

    // Every rule evaluates without an error, and the fleet's recorded
    // series count what the box does: one channel on a backup, one on its
    // slate.
    let errors = prom.rule_errors();
    assert!(
        errors.is_empty(),
        "rules that fail to evaluate: {errors:#?}"
    );
    let inst = a.addr.to_string();
    for (rec, want) in [
        ("instance:capbox_channels_on_backup:sum", 1.0),
        ("instance:capbox_channels_on_slate:sum", 1.0),
        ("instance:capbox_channels_down:sum", 0.0),
    ] {
        let mut got = None;
        let ok = wait_until(Duration::from_secs(20), || {
            got = prom
                .query(&format!("{rec}{{instance=\"{inst}\"}}"))
                .ok()
                .and_then(|r| r.first()?["value"][1].as_str()?.parse::<f64>().ok());
            got == Some(want)
        });
        assert!(ok, "{rec}: {got:?}, want {want}");
    }

    // Every query of both dashboards runs on the live data without an
    // error (a parse is not enough: `or`, `+` and `on` fail at run time
    // on label sets the parser cannot know).
    for name in ["capbox-box.json", "capbox-fleet.json"] {
        let d: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("monitoring/grafana").join(name)).unwrap(),
        )
        .unwrap();
        let mut n = 0;
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let e = t["expr"].as_str().unwrap();
                let q = e
                    .replace("$__rate_interval", "1m")
                    .replace("$instance", &inst);
                if let Err(err) = prom.query(&q) {
                    panic!("{name}: panel {}: {err}\n{q}", p["title"]);
                }
                n += 1;
            }
        }
        assert!(n > 5, "{name}: {n} queries");
    }
    // A panel that must show this box: the source on air per channel.
    let on_air = prom
        .query(&format!(
            "capbox_channel_active_source{{instance=\"{inst}\"}}"
        ))
        .unwrap();
    assert_eq!(on_air.len(), 2, "{on_air:?}");
}

/// A TS file of `secs` s: moving test pattern (MPEG-2) and `audio` (an
/// ffmpeg lavfi source) as MPEG-1 Layer II.
fn av_ts(dir: &Path, name: &str, audio: &str, secs: u32) -> PathBuf {
    let out = dir.join(name);
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=352x288:rate=25"])
        .args(["-f", "lavfi", "-i", audio])
        .args(["-t", &secs.to_string()])
        .args([
            "-c:v",
            "mpeg2video",
            "-b:v",
            "1M",
            "-c:a",
            "mp2",
            "-b:a",
            "128k",
        ])
        .args(["-f", "mpegts"])
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "ffmpeg could not make {name}");
    out
}

// Needs capbox_channel_verdict (the eswire branch). Run on h/eswire at
// fc01718 with this file and monitoring/ copied in: passed, CapboxSilent
// firing 1.5 s after Prometheus was ready (silence_after_s = 3).
#[test]
fn silent_audio_fires_capbox_silent_in_a_real_prometheus() {
    if !have_prometheus() || !have("ffmpeg") {
        return;
    }
    let tmp = TempDir::new("palerts-silent");
    // quiet: digital silence; tone: a 1 kHz sine at −18 dBFS the whole time.
    let quiet = av_ts(tmp.path(), "quiet.ts", "anullsrc=r=48000:cl=stereo", 20);
    let tone = av_ts(tmp.path(), "tone.ts", "sine=f=1000:r=48000", 20);
    let cfg = server_toml()
        + "[monitor]\nsilence_after_s = 3\n\n"
        + &channel_toml("quiet", &quiet, 1, &[])
        + &channel_toml("tone", &tone, 1, &[]);
    let srv = Server::start("palerts-silent", &cfg);
    srv.wait_up(&["quiet", "tone"]);
    let prom = Prom::start(srv.addr);
    prom.wait_ready("quiet");

    let a = prom.wait_firing("CapboxSilent", "quiet", Duration::from_secs(60), &srv);
    assert_eq!(a.labels["severity"], "critical");
    assert_eq!(a.labels["verdict"], "silent");
    assert!(
        a.annotations["summary"].contains("Channel quiet")
            && a.annotations["summary"].contains("silent"),
        "{a:?}"
    );
    // The tone channel: never silent, never any verdict alert, over a few
    // more evaluations.
    std::thread::sleep(Duration::from_secs(5));
    let tone_alerts = prom.alerts_for(
        &[
            "CapboxSilent",
            "CapboxNoAudio",
            "CapboxNoVideo",
            "CapboxFrozen",
        ],
        "tone",
    );
    assert!(tone_alerts.is_empty(), "tone: {tone_alerts:#?}");
    // What capbox said, for the record.
    let m = srv.metrics();
    assert_eq!(
        m.iter()
            .find(|s| s.name == "capbox_channel_verdict"
                && s.labels.get("channel").map(String::as_str) == Some("quiet")
                && s.labels.get("verdict").map(String::as_str) == Some("silent"))
            .map(|s| s.value),
        Some(1.0),
        "capbox_channel_verdict{{channel=\"quiet\",verdict=\"silent\"}}"
    );
    assert!(m.iter().any(|s| s.name == "capbox_audio_silent"
        && s.labels.get("channel").map(String::as_str) == Some("quiet")
        && s.value == 1.0));
}
