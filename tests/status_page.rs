//! `GET /`, the status page, against a running `capbox serve` on the demo
//! channels: what it links to answers 200, it names no other origin, a
//! service name with `<script>` in it stays text, headless Chromium (Debian
//! package `chromium`) renders it with every request it makes answered 200
//! (its NetLog, `--log-net-log`), a service name from the air (an SDT
//! written here) with a script in it is shown as text, and a client
//! outside the `/status` allow-list gets the same 403 as `/status`.

mod e2e_common;
use e2e_common::*;
#[path = "hostile/crafted.rs"]
#[allow(dead_code)]
mod crafted;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const EVIL: &str = "<script>document.title='pwned'</script> News";

fn config() -> String {
    let m = sample_mux();
    server_toml()
        + &channel_toml("news", &m, 1, &[&format!("tvg_name = \"{EVIL}\"")])
        + &channel_toml("sport", &m, 2, &["tvg_name = \"Demo Sport\""])
        + &channel_toml("music", &m, 3, &["tvg_name = \"Demo Music\""])
}

/// `config()` and one of each other thing the page shows: an adapter that
/// is not there (no lock), a channel on it, a softcam nobody answers, a
/// failover channel whose remote source is refused (it plays the file).
fn everything() -> String {
    let m = sample_mux();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    format!(
        "[softcam]\nhost = \"127.0.0.1\"\nport = 9\n\n\
         [[adapter]]\nname = \"ter1\"\ndevice = \"adapter57\"\n\n{}\
         [[channel]]\nname = \"dvb\"\n[[channel.source]]\nadapter = \"ter1\"\ntune = \"dvbt 474000000 8MHz\"\n\n\
         [[channel]]\nname = \"relay\"\n[[channel.source]]\nurl = \"http://{closed}/stream/news\"\n\
         [[channel.source]]\nfile = \"{}\"\nprogram = 1\n\n",
        config(),
        m.display()
    )
}

/// Every URL in an `href`, `src` or `action` attribute.
fn urls(html: &str) -> Vec<String> {
    let mut v = Vec::new();
    for attr in ["href=\"", "src=\"", "action=\"", "href='", "src='"] {
        for part in html.split(attr).skip(1) {
            let q = attr.chars().last().unwrap();
            v.push(part.split(q).next().unwrap_or("").to_string());
        }
    }
    v
}

fn started(config: &str) -> Server {
    let s = Server::start("status-page", config);
    s.wait_up(&["news", "sport", "music"]);
    // The "now" bitrate needs one 5 s window of the sampler.
    let ok = wait_until(Duration::from_secs(20), || {
        s.get("/").text().contains("kbit/s")
    });
    assert!(
        ok,
        "no bitrate on the page after 20 s:\n{}",
        s.get("/").text()
    );
    s
}

#[test]
fn the_page_links_only_to_itself_and_every_link_answers() {
    let s = started(&config());
    let r = s.get("/");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let html = r.text();
    // The service name from the config is text, not a script.
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt; News"));
    for w in ["news", "sport", "music", "on air", "Demo Sport", "Watchdog"] {
        assert!(html.contains(w), "{w:?} missing:\n{html}");
    }
    assert!(!html.contains("://"), "an absolute URL:\n{html}");
    let links = urls(&html);
    assert!(links.len() >= 5, "{links:?}");
    for u in &links {
        if u == "data:," {
            continue; // the empty favicon: no request
        }
        assert!(
            u.starts_with('/') && !u.starts_with("//"),
            "not same-origin: {u:?}"
        );
        // HEAD: /stream/<name> would stream forever.
        let head = request(
            s.addr,
            &format!(
                "HEAD {u} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                s.addr
            ),
        );
        assert_eq!(head.status, 200, "{u}: {}", head.head);
    }
    for must in ["/playlist.m3u", "/status", "/metrics", "/stream/news"] {
        assert!(
            links.iter().any(|l| l == must),
            "no link to {must}: {links:?}"
        );
    }
    // /index.html is the same page; HEAD has no body.
    assert_eq!(s.get("/index.html").status, 200);
    let h = request(
        s.addr,
        &format!(
            "HEAD / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            s.addr
        ),
    );
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    let m = s.metrics();
    assert!(
        m.iter().any(|x| x.name == "capbox_http_requests_total"
            && x.labels.iter().any(|(k, v)| k == "route" && v == "page")),
        "page requests not counted:\n{}",
        fmt_samples(&m)
    );
}

#[test]
fn a_client_outside_the_status_list_gets_the_same_refusal_as_status() {
    // Loopback may stream (so the connection is not closed at accept) but
    // is outside the status list.
    let cfg = config() + "[access]\nstatus = [\"192.0.2.0/24\"]\n";
    let s = Server::start("status-page-refused", &cfg);
    s.wait_up(&["news"]);
    let page = s.get("/");
    let status = s.get("/status");
    assert_eq!(page.status, 403, "{}", page.head);
    assert_eq!(status.status, 403);
    assert_eq!(page.body, status.body);
    assert_eq!(page.text(), "forbidden\n");
    // Both refusals are counted alike.
    let m = s.metrics();
    for route in ["page", "status"] {
        let n = m
            .iter()
            .find(|x| {
                x.name == "capbox_http_requests_total"
                    && x.labels.iter().any(|(k, v)| k == "route" && v == route)
                    && x.labels.iter().any(|(k, v)| k == "code" && v == "403")
            })
            .map(|x| x.value);
        assert_eq!(
            n,
            Some(1.0),
            "{route} 403 not counted:\n{}",
            fmt_samples(&m)
        );
    }
}

// ---------------------------------------------------------------- chromium

fn have_chromium() -> bool {
    let ok = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "!!!!!!!! SKIPPED: `chromium` is not installed (CI must install it: apt-get install chromium) !!!!!!!!"
        );
    }
    ok
}

/// Run headless Chromium on `url` with `extra` (`--dump-dom`,
/// `--screenshot=…`), its NetLog in `dir`; returns stdout and the NetLog.
fn chromium(dir: &TempDir, tag: &str, url: &str, extra: &[String]) -> (String, Value) {
    let net = dir.join(&format!("{tag}-netlog.json"));
    let profile = dir.join(&format!("{tag}-profile"));
    let out = Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", net.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {extra:?} failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(&net).expect("chromium wrote no NetLog");
    // A NetLog cut at exit may lack the closing brackets.
    let log: Value = serde_json::from_str(&log)
        .or_else(|_| {
            serde_json::from_str(&(log.trim_end().trim_end_matches(',').to_string() + "]}"))
        })
        .expect("NetLog is JSON");
    (String::from_utf8_lossy(&out.stdout).into_owned(), log)
}

/// The requests the page made (initiated by the page's origin, or the
/// page itself): (url, status code, net error). Chromium's own
/// background requests have no such initiator and are left out.
fn page_requests(log: &Value, origin: &str) -> Vec<(String, Option<u16>, i64)> {
    let types: std::collections::HashMap<u64, String> = log["constants"]["logEventTypes"]
        .as_object()
        .expect("NetLog constants")
        .iter()
        .filter_map(|(k, v)| Some((v.as_u64()?, k.clone())))
        .collect();
    let events = log["events"].as_array().expect("NetLog events");
    let mut reqs: std::collections::BTreeMap<u64, (String, Option<u16>, i64)> = Default::default();
    for e in events {
        let ty = e["type"]
            .as_u64()
            .and_then(|t| types.get(&t))
            .map(|s| s.as_str());
        let id = e["source"]["id"].as_u64().unwrap_or(0);
        let p = &e["params"];
        match ty {
            Some("URL_REQUEST_START_JOB") => {
                let url = p["url"].as_str().unwrap_or("").to_string();
                let initiator = p["initiator"].as_str().unwrap_or("");
                let mine = url.starts_with(origin) || initiator.starts_with(origin);
                if mine {
                    reqs.entry(id).or_insert((url, None, 0));
                }
            }
            Some("HTTP_TRANSACTION_READ_RESPONSE_HEADERS") => {
                if let Some(r) = reqs.get_mut(&id) {
                    let line = p["headers"][0].as_str().unwrap_or("");
                    r.1 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok());
                }
            }
            _ => {
                if let (Some(r), Some(err)) = (reqs.get_mut(&id), p["net_error"].as_i64()) {
                    r.2 = err;
                }
            }
        }
    }
    reqs.into_values().collect()
}

fn check_requests(log: &Value, origin: &str, what: &str) {
    let reqs = page_requests(log, origin);
    assert!(
        reqs.iter().any(|(u, _, _)| u == &format!("{origin}/")),
        "{what}: the NetLog shows no request for the page: {reqs:?}"
    );
    for (url, code, err) in &reqs {
        assert!(
            url.starts_with(origin),
            "{what}: the page fetched another origin: {url}"
        );
        assert_eq!(*code, Some(200), "{what}: {url} answered {code:?}");
        assert_eq!(*err, 0, "{what}: {url} failed with net error {err}");
    }
}

/// Width and height from a PNG's IHDR.
fn png_size(p: &Path) -> (u32, u32, usize) {
    let b = std::fs::read(p).expect("screenshot written");
    assert!(b.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20), b.len())
}

#[test]
fn chromium_renders_the_page_and_no_request_fails() {
    if !have_chromium() {
        return;
    }
    let s = started(&everything());
    // The first sparkline point comes 30 s after the start.
    let ok = wait_until(Duration::from_secs(45), || {
        s.get("/").text().contains("<svg class=\"spark\"")
    });
    assert!(ok, "no sparkline after 45 s:\n{}", s.get("/").text());
    let origin = format!("http://{}", s.addr);
    let url = format!("{origin}/");
    let dir = TempDir::new("status-page-chromium");

    // The NetLog reading can fail: a page that answers 404 shows as one.
    let (_, log) = chromium(
        &dir,
        "nope",
        &format!("{origin}/nope"),
        &["--dump-dom".into()],
    );
    let reqs = page_requests(&log, &origin);
    assert!(
        reqs.iter()
            .any(|(u, c, _)| u == &format!("{origin}/nope") && *c == Some(404)),
        "the NetLog reader misses a 404: {reqs:?}"
    );

    let (dom, log) = chromium(&dir, "dom", &url, &["--dump-dom".to_string()]);
    check_requests(&log, &origin, "--dump-dom");
    // The DOM as Chromium built it: the names and the verdict words, the
    // hostile name as text (its script never ran: the title is ours).
    assert!(dom.contains("<title>capbox status</title>"), "{dom}");
    assert!(!dom.contains("pwned</title>"));
    assert!(!dom.contains("<script"), "{dom}");
    assert!(dom.contains("&lt;script&gt;"), "{dom}");
    for w in [
        "news",
        "sport",
        "music",
        "Demo Sport",
        "on air",
        "kbit/s",
        "Channels",
        "Watchdog",
        "not armed",
        "threads beating",
        "Last events",
        "Adapters",
        "ter1",
        "adapter57",
        "no lock since start",
        "softcam",
        "not connected",
        "relay",
        "dvb",
        "down",
    ] {
        assert!(dom.contains(w), "{w:?} not in Chromium's DOM:\n{dom}");
    }
    assert!(dom.contains("<svg class=\"spark\""), "no sparkline:\n{dom}");

    for (tag, w, h) in [("desk", 1280u32, 900u32), ("phone", 390, 1400)] {
        let png = dir.join(&format!("{tag}.png"));
        let (_, log) = chromium(
            &dir,
            tag,
            &url,
            &[
                format!("--screenshot={}", png.display()),
                format!("--window-size={w},{h}"),
                "--hide-scrollbars".into(),
            ],
        );
        check_requests(&log, &origin, tag);
        let (pw, ph, bytes) = png_size(&png);
        assert_eq!((pw, ph), (w, h), "{tag} screenshot size");
        // A blank page compresses to a couple of kB; text, colours and
        // lines do not.
        assert!(bytes > 15_000, "{tag} screenshot is {bytes} bytes: blank?");
        if let Ok(keep) = std::env::var("CAPBOX_KEEP_SCREENSHOTS") {
            let _ = std::fs::copy(
                &png,
                Path::new(&keep).join(format!("status-page-{tag}.png")),
            );
        }
    }
}

// ---------------------------------------------------------------- from the air

/// One SDT section (ETSI EN 300 468 §5.2.3), actual TS, one service
/// descriptor per `(service_id, provider, name)`, names as raw bytes.
fn sdt(tsid: u16, onid: u16, services: &[(u16, &[u8], &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, provider, name) in services {
        let mut d = vec![0x48, 0, 0x01, provider.len() as u8];
        d.extend_from_slice(provider);
        d.push(name.len() as u8);
        d.extend_from_slice(name);
        d[1] = (d.len() - 2) as u8;
        body.extend_from_slice(&id.to_be_bytes());
        body.push(0xFC);
        // running (4), not scrambled, descriptor loop length
        body.push(0x80 | (d.len() >> 8) as u8);
        body.push(d.len() as u8);
        body.extend_from_slice(&d);
    }
    let len = 5 + 3 + body.len() + 4;
    let mut sec = vec![0x42, 0xF0 | (len >> 8) as u8, len as u8];
    sec.extend_from_slice(&tsid.to_be_bytes());
    sec.extend_from_slice(&[0xC1 | (9 << 1), 0, 0]);
    sec.extend_from_slice(&onid.to_be_bytes());
    sec.push(0xFF);
    sec.extend_from_slice(&body);
    let crc = capbox::ts::crc::crc32_mpeg2(&sec);
    sec.extend_from_slice(&crc.to_be_bytes());
    sec
}

#[test]
fn a_service_name_from_the_air_with_a_script_stays_text() {
    // samples/mux.ts with its SDT replaced: the broadcaster names service
    // 1 with a script and an attribute breaker.
    let evil: &[u8] = b"<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";
    let section = sdt(
        0x0C0B,
        0x20FA,
        &[
            (1, b"<b>Prov</b>", evil),
            (2, b"P", b"Sport"),
            (3, b"P", b"Music"),
        ],
    );
    let dir = TempDir::new("status-page-air");
    let mux = std::fs::read(sample_mux()).unwrap();
    let mut out = Vec::with_capacity(mux.len());
    let mut cc = 0u8;
    for p in packets(&mux) {
        if pid(p) == 0x11 {
            if pusi(p) {
                out.extend_from_slice(&crafted::packetize(&section, 0x11, &mut cc));
            }
            continue;
        }
        out.extend_from_slice(p);
    }
    let file = dir.join("evil-sdt.ts");
    std::fs::write(&file, out).unwrap();
    // No tvg_name: the page names the channel with the service name.
    let cfg = server_toml() + &channel_toml("news", &file, 1, &[]);
    let s = Server::start("status-page-air", &cfg);
    s.wait_up(&["news"]);
    let named = wait_until(Duration::from_secs(15), || {
        s.status()["channels"][0]["service_name"]
            .as_str()
            .is_some_and(|n| n.contains("script"))
    });
    assert!(named, "the SDT name never reached /status: {}", s.status());
    let html = s.get("/").text();
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "the name is not shown as text:\n{html}"
    );
}
