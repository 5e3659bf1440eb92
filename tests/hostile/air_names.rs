//! From the air: service names are the broadcaster's text, and capbox puts
//! them in its playlist, /status and logs. A name with a DVB line break
//! (0x8A) or a `"` must not add a playlist entry, end an M3U attribute, or
//! forge a log line.
//!
//! The stream is samples/mux.ts with its SDT replaced by one written with
//! VideoLAN's biTStream (tests/c/sdt_names.c): every service name and
//! provider carries line breaks (0x8A, U+E08A in UTF-8), quotes, CR/LF,
//! emphasis codes, a right-to-left override and a line separator, one of
//! them a complete fake `#EXTINF` entry.

use super::crafted::packetize;
use crate::e2e_common::*;
use std::path::Path;
use std::process::Command;

/// tests/c/sdt_names.c compiled against libbitstream's headers; `None`
/// (said loudly) when they or the compiler are missing.
fn hostile_sdt(dir: &Path, tsid: u16, onid: u16) -> Option<Vec<u8>> {
    if !Path::new("/usr/include/bitstream/dvb/si.h").exists() {
        eprintln!("!!!!!!!! SKIPPED: libbitstream-dev missing (apt-get install libbitstream-dev) !!!!!!!!");
        return None;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/sdt_names.c");
    let exe = dir.join("sdt_names");
    let st = Command::new("cc")
        .args(["-std=gnu99", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(st.success(), "compiling {src:?} failed");
    let out = dir.join("sdt.sec");
    let st = Command::new(&exe)
        .args([tsid.to_string(), onid.to_string()])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success(), "sdt_names failed");
    Some(std::fs::read(out).unwrap())
}

/// samples/mux.ts with every SDT replaced by `sdt`.
fn with_sdt(mux: &[u8], sdt: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mux.len() + mux.len() / 8);
    let mut cc = 0u8;
    for p in packets(mux) {
        if pid(p) == 0x11 {
            if pusi(p) {
                out.extend_from_slice(&packetize(sdt, 0x11, &mut cc));
            }
            continue;
        }
        out.extend_from_slice(p);
    }
    out
}

/// Control characters, line/paragraph separators, bidi overrides.
fn has_control(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() || ('\u{2028}'..='\u{202E}').contains(&c))
}

fn has_unsafe_char(s: &str) -> bool {
    has_control(s) || s.contains('"')
}

#[test]
fn sdt_names_with_line_breaks_and_quotes_give_one_extinf_per_channel() {
    let dir = TempDir::new("air-names");
    let Some(sdt) = hostile_sdt(dir.path(), 0x0C0B, 0x20FA) else {
        return;
    };
    let mux = std::fs::read(sample_mux()).unwrap();
    let file = dir.join("hostile-sdt.ts");
    let ts = with_sdt(&mux, &sdt);
    assert!(count_pid(&ts, 0x11) > 10, "the SDT was not put in");
    std::fs::write(&file, ts).unwrap();

    // No tvg_name: the playlist title is the service name from the SDT.
    // Channel "gone" asks for a service the file does not carry: the
    // warning about it lists the file's services with their names.
    let cfg = server_toml()
        + &channel_toml("news", &file, 1, &[])
        + &channel_toml("sport", &file, 2, &[])
        + &channel_toml("music", &file, 3, &[])
        + &channel_toml("gone", &file, 9, &[]);
    let srv = Server::start("air-names", &cfg);
    srv.wait_up(&["news", "sport", "music"]);
    let mut st = serde_json::Value::Null;
    let named = wait_until(std::time::Duration::from_secs(15), || {
        st = srv.status();
        ["news", "sport", "music"]
            .iter()
            .all(|c| status_channel(&st, c).is_some_and(|ch| ch["service_name"].is_string()))
    });
    assert!(named, "no service names in /status: {st}");

    let pl = srv.get("/playlist.m3u").text();
    let lines: Vec<&str> = pl.lines().collect();
    let extinf = lines.iter().filter(|l| l.starts_with("#EXTINF")).count();
    assert_eq!(extinf, 4, "one #EXTINF line per channel:\n{pl}");
    assert_eq!(lines.len(), 1 + 2 * 4, "playlist lines:\n{pl}");
    let base = format!("http://{}", srv.addr);
    assert_eq!(lines[0], format!("#EXTM3U x-tvg-url=\"{base}/epg.xml\""));
    for (i, ch) in ["news", "sport", "music", "gone"].iter().enumerate() {
        let inf = lines[1 + 2 * i];
        assert!(inf.starts_with("#EXTINF:-1 tvg-id=\""), "{inf}");
        // Three attributes, six quotes: none of them from the air.
        assert_eq!(inf.matches('"').count(), 6, "{inf}");
        assert!(!has_control(inf), "{inf:?}");
        assert_eq!(lines[2 + 2 * i], format!("{base}/stream/{ch}"), "{pl}");
    }
    // The names are kept, cleaned: the text of the fake entry is now part
    // of one title, not a line of its own.
    assert!(
        lines[1].contains(
            "tvg-name=\"News #EXTINF:-1 tvg-name='x',Injected http://evil.example/x.ts\""
        ),
        "{}",
        lines[1]
    );
    assert!(
        lines[3].contains("tvg-name=\"Sport 'HD' group-title='Adult'\""),
        "{}",
        lines[3]
    );
    assert!(
        lines[5].contains("tvg-name=\"Music 'Radio' evil\""),
        "{}",
        lines[5]
    );

    // /status: names and providers are one clean line.
    for ch in ["news", "sport", "music"] {
        let c = status_channel(&st, ch).unwrap();
        for key in ["service_name", "provider"] {
            let v = c[key].as_str().unwrap_or_else(|| panic!("{ch}.{key}: {c}"));
            assert!(!v.is_empty() && !has_unsafe_char(v), "{ch}.{key} = {v:?}");
        }
    }
    assert_eq!(
        status_channel(&st, "news").unwrap()["provider"],
        "Evil Corp 'Ltd'"
    );

    // Logs: every line is one of capbox's (`HH:MM:SS.mmm LEVEL message`),
    // and the warning about "gone" names the services on one line.
    let log = srv.log_text();
    for l in log.lines() {
        let b = l.as_bytes();
        let stamped = b.len() > 19
            && b[2] == b':'
            && b[5] == b':'
            && b[8] == b'.'
            && b[..12]
                .iter()
                .enumerate()
                .all(|(i, c)| matches!(i, 2 | 5 | 8) || c.is_ascii_digit())
            && ["ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"].contains(&&l[13..18]);
        assert!(
            stamped,
            "a log line that capbox did not start: {l:?}\nlog:\n{log}"
        );
    }
    let warn = log
        .lines()
        .find(|l| l.contains("no such service 0x9"))
        .unwrap_or_else(|| panic!("no warning about channel gone:\n{log}"));
    assert!(
        warn.contains("1 \"News #EXTINF:-1 tvg-name='x',Injected http://evil.example/x.ts\""),
        "{warn}"
    );
}
