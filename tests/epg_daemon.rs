//! The guide through the whole daemon (issue 15): `capbox serve` reads a
//! file whose EIT was written by biTStream (tests/c/eit_schedule.c, an
//! independent writer) around a service ffmpeg muxed, collects it in the
//! mux runner, and serves it: /epg.xml validates against the XMLTV DTD
//! (xmllint --dtdvalid) with the playlist's tvg-ids, ?audience= shifts
//! every time into the audience's zone, ?channel= keeps one channel, the
//! playlist's x-tvg-url points at /epg.xml, the coverage metric and
//! /status agree with the generator's manifest, `capbox epg` prints the
//! next programmes in 80 columns.

mod e2e_common;
mod epg_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use capbox::epg::xmltv_in::parse_time;
use e2e_common::{run_capbox, server_toml, wait_until, Server, TempDir};

const DTD: &str = "/usr/share/xmltv/xmltv.dtd";

fn tools() -> bool {
    if !Path::new(DTD).exists() || Command::new("xmllint").arg("--version").output().is_err() {
        eprintln!("SKIPPED: {DTD} or xmllint missing: apt-get install xmltv-util libxml2-utils");
        return false;
    }
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("SKIPPED: ffmpeg missing: apt-get install ffmpeg");
        return false;
    }
    true
}

fn validate(doc: &str, dir: &Path, name: &str) {
    let f = dir.join(name);
    std::fs::write(&f, doc).unwrap();
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--dtdvalid", DTD])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} does not validate against {DTD}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// (start attribute, title) of every programme of `channel` in `xml`.
fn programmes(xml: &str, channel: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let tag = format!("channel=\"{channel}\">");
    for block in xml.split("<programme ").skip(1) {
        if !block.contains(&tag) {
            continue;
        }
        let start = block
            .split("start=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string();
        let title = block
            .split("<title")
            .nth(1)
            .and_then(|r| r.split_once('>'))
            .and_then(|(_, r)| r.split("</title>").next())
            .unwrap()
            .to_string();
        out.push((start, title));
    }
    out
}

/// A real service 0x0880 (2176) muxed by ffmpeg with the EIT of services
/// 0x0880 and 0x0881 (`gen`'s "good" tables) spread through its packets,
/// as in a broadcast mux; written to `dir`/mux.ts.
fn eit_mux(gen: &epg_common::Generated, dir: &Path) -> std::path::PathBuf {
    let av = dir.join("av.ts");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=160x120:rate=25:duration=3")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=3"])
        .args([
            "-c:v",
            "mpeg2video",
            "-c:a",
            "mp2",
            "-mpegts_service_id",
            "2176",
        ])
        .args(["-f", "mpegts"])
        .arg(&av)
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg failed");
    // The EIT spread through the service's packets, as in a broadcast mux.
    let mut cc = 0u8;
    let eit = epg_common::packets(&gen.sections("good"), &mut cc);
    let av = std::fs::read(&av).unwrap();
    let (e, a) = (eit.len() / 188, av.len() / 188);
    let mut ts = Vec::with_capacity(eit.len() + av.len());
    for i in 0..a {
        ts.extend_from_slice(&av[i * 188..(i + 1) * 188]);
        // EIT packet k goes after AV packet k * a / e.
        for k in (i * e / a)..((i + 1) * e / a) {
            ts.extend_from_slice(&eit[k * 188..(k + 1) * 188]);
        }
    }
    let mux = dir.join("mux.ts");
    std::fs::write(&mux, &ts).unwrap();
    mux
}

#[test]
fn eit_from_the_air_served_as_xmltv_per_audience_and_channel() {
    if !tools() {
        return;
    }
    let t = now();
    let t0 = t - t.rem_euclid(86_400);
    let Some(gen) = epg_common::generate_at("daemon", t0) else {
        return;
    };
    let dir = TempDir::new("epg-daemon");
    let mux = eit_mux(&gen, dir.path());
    let cfg = server_toml()
        + &format!(
            "[[audience]]\nname = \"miami\"\ntz = \"America/New_York\"\n\n\
             [[channel]]\nname = \"news\"\ntvg_id = \"News.test\"\ntvg_name = \"Test News\"\n\
             [[channel.source]]\nfile = \"{m}\"\nprogram = 0x0880\n\n\
             [[channel]]\nname = \"film\"\ntvg_id = \"Film.test\"\n\
             [[channel.source]]\nfile = \"{m}\"\nprogram = 0x0881\n",
            m = mux.display()
        );
    let srv = Server::start("epg-daemon-srv", &cfg);

    // The guide fills as the runner reads the tables: every event of a
    // service not yet over by more than the day of history kept.
    let want = gen
        .events
        .iter()
        .filter(|e| e.sid == 0x0880 && e.start + i64::from(e.duration) >= t - 86_400 + 60)
        .count();
    let mut xml = String::new();
    let full = wait_until(Duration::from_secs(15), || {
        let r = srv.get("/epg.xml");
        xml = r.text();
        // The whole week of both services (8 tables) is in.
        r.status == 200
            && programmes(&xml, "News.test").len() >= want
            && programmes(&xml, "Film.test").len() >= want
    });
    assert!(
        full,
        "no guide after 30 s:\n{}\n{}\n{}",
        xml,
        srv.status()["epg"],
        srv.log_tail(20)
    );
    let r = srv.get("/epg.xml");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/xml; charset=utf-8")
    );
    validate(&xml, dir.path(), "all.xml");
    // Channel ids are the playlist's tvg-ids.
    assert!(xml.contains("<channel id=\"News.test\">"), "{xml}");
    assert!(xml.contains("<display-name>Test News</display-name>"));
    let playlist = srv.get("/playlist.m3u").text();
    let first = playlist.lines().next().unwrap();
    assert_eq!(
        first,
        format!("#EXTM3U x-tvg-url=\"http://{}/epg.xml\"", srv.addr),
        "{playlist}"
    );
    assert!(playlist.contains("tvg-id=\"News.test\""));

    // Every schedule event of the manifest still in the guide's window is
    // there, with its title, at its time.
    let news = programmes(&xml, "News.test");
    let keep_from = t - 86_400;
    for e in gen.events.iter().filter(|e| e.sid == 0x0880) {
        if e.start + i64::from(e.duration) < keep_from + 60 {
            continue;
        }
        assert!(
            news.iter()
                .any(|(s, title)| parse_time(s) == Some(e.start) && *title == e.title),
            "event at {} {:?} missing from /epg.xml",
            e.start,
            e.title
        );
    }

    // ?audience=miami: the same programmes, every time in New York's zone.
    let miami = srv.get("/epg.xml?audience=miami").text();
    validate(&miami, dir.path(), "miami.xml");
    let m = programmes(&miami, "News.test");
    assert_eq!(m.len(), news.len());
    for ((su, tu), (sm, tm)) in news.iter().zip(&m) {
        assert_eq!(tu, tm);
        assert_eq!(parse_time(su), parse_time(sm), "{su} vs {sm}");
        assert!(su.ends_with(" +0000"), "{su}");
        assert!(sm.ends_with(" -0500") || sm.ends_with(" -0400"), "{sm}");
    }
    assert_eq!(srv.get("/epg.xml?audience=nowhere").status, 404);

    // ?channel=film: that channel only.
    let film = srv.get("/epg.xml?channel=film").text();
    validate(&film, dir.path(), "film.xml");
    assert!(film.contains("<channel id=\"Film.test\">"));
    assert!(!film.contains("News.test"), "{film}");
    assert_eq!(
        programmes(&film, "Film.test").len(),
        programmes(&xml, "Film.test").len()
    );
    let r = srv.get("/epg.xml?channel=nosuch");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("channels: news, film"), "{}", r.text());

    // Coverage: programmes running or starting in the next 12 h, as the
    // manifest has them (30-minute slots; a boundary may pass between the
    // count and the scrape).
    let expect = |at: i64| {
        gen.events
            .iter()
            .filter(|e| e.sid == 0x0880)
            .filter(|e| e.start + i64::from(e.duration) > at && e.start < at + 12 * 3600)
            .count() as f64
    };
    let (before, samples, after) = (expect(now()), srv.metrics(), expect(now()));
    let cov = samples
        .iter()
        .find(|s| {
            s.name == "capbox_epg_programmes_next_12h"
                && s.labels.get("channel").map(String::as_str) == Some("news")
        })
        .expect("capbox_epg_programmes_next_12h{channel=\"news\"}");
    assert!(
        cov.value == before || cov.value == after,
        "coverage {} vs manifest {before}/{after}",
        cov.value
    );
    assert!(cov.value >= 23.0, "{}", cov.value);
    let get = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let (bytes, budget) = (get("capbox_epg_bytes"), get("capbox_epg_budget_bytes"));
    assert!(bytes > 0.0 && bytes <= budget, "{bytes} of {budget}");
    assert_eq!(budget, (44u64 << 20) as f64);
    let st = srv.status();
    let ch = st["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "news")
        .unwrap();
    let n = ch["epg"]["programmes_next_12h"].as_f64().unwrap();
    assert!(
        (n - cov.value).abs() <= 1.0,
        "/status {n} vs /metrics {}",
        cov.value
    );
    let inputs = &st["epg"]["inputs"];
    assert!(
        inputs
            .as_object()
            .is_some_and(|m| m.values().any(|i| i["tables"].as_u64().unwrap_or(0) > 0)),
        "{inputs}"
    );

    // `capbox epg news`: the next programmes in 80 columns.
    let url = format!("http://{}", srv.addr);
    let (code, out) = run_capbox(
        &["epg", "news", "--tz", "UTC", "--hours", "3", "--url", &url],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("news (tvg-id News.test), next 3 h, times in UTC"),
        "{out}"
    );
    for l in &lines {
        assert!(l.chars().count() <= 80, "wider than 80: {l:?}");
    }
    let running = gen
        .events
        .iter()
        .find(|e| e.sid == 0x0880 && e.start <= now() && now() < e.start + 1800)
        .unwrap();
    let hhmm = jiff::Timestamp::from_second(running.start)
        .unwrap()
        .strftime("%H:%M")
        .to_string();
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with(&hhmm)),
        "the running programme ({hhmm}) missing:\n{out}"
    );
    let (code, out) = run_capbox(&["epg", "nosuch", "--url", &url], Duration::from_secs(20));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no channel 'nosuch'"), "{out}");
}

/// A channel whose source is another capbox's `/stream/<channel>` (the
/// other site's box) gets its guide from that stream: capbox's output
/// carries its service's EIT, and the remote input collects it like a
/// tuner's.
#[test]
fn eit_through_a_remote_source_reaches_the_guide() {
    if !tools() {
        return;
    }
    let t = now();
    let t0 = t - t.rem_euclid(86_400);
    let Some(gen) = epg_common::generate_at("remote", t0) else {
        return;
    };
    let dir = TempDir::new("epg-remote");
    let mux = eit_mux(&gen, dir.path());
    let a = Server::start(
        "epg-remote-a",
        &(server_toml()
            + &format!(
                "[[channel]]\nname = \"news\"\ntvg_id = \"News.test\"\n\
                 [[channel.source]]\nfile = \"{}\"\nprogram = 0x0880\n",
                mux.display()
            )),
    );
    a.wait_up(&["news"]);
    let b = Server::start(
        "epg-remote-b",
        &(server_toml()
            + &format!(
                "[[channel]]\nname = \"news-b\"\ntvg_id = \"News.other-site\"\n\
                 [[channel.source]]\nurl = \"http://{}/stream/news\"\n",
                a.addr
            )),
    );
    let want = gen
        .events
        .iter()
        .filter(|e| e.sid == 0x0880 && e.start + i64::from(e.duration) >= t - 86_400 + 60)
        .count();
    let mut xml = String::new();
    let full = wait_until(Duration::from_secs(30), || {
        xml = b.get("/epg.xml").text();
        programmes(&xml, "News.other-site").len() >= want
    });
    assert!(
        full,
        "box B has {} of {want} programmes from box A's stream:\n{}\n{}",
        programmes(&xml, "News.other-site").len(),
        b.status()["epg"],
        b.log_tail(20)
    );
    validate(&xml, dir.path(), "remote.xml");
    // The other service of the mux is not this channel's: not in B's guide.
    assert!(!xml.contains("0x0881") && programmes(&xml, "Film.test").is_empty());
    let news = programmes(&xml, "News.other-site");
    for e in gen.events.iter().filter(|e| e.sid == 0x0880) {
        if e.start + i64::from(e.duration) < t - 86_400 + 60 {
            continue;
        }
        assert!(
            news.iter()
                .any(|(s, title)| parse_time(s) == Some(e.start) && *title == e.title),
            "event at {} {:?} missing from box B's /epg.xml",
            e.start,
            e.title
        );
    }
}
