//! `capbox epg <channel>`: the next programmes of a channel's guide, as
//! the running capbox serves it (`/epg.xml?channel=`), in 80 columns.

use std::time::Duration;

use super::status::http_get;
use crate::epg::serve::print_events;

const HELP: &str = "\
usage: capbox epg <channel> [--hours N] [--audience NAME | --tz ZONE]
                  [--url http://127.0.0.1:8080]

Prints the programmes of <channel> running now or starting in the next N
hours (default 12), from the guide the running capbox serves at
/epg.xml?channel=<channel>: a line each, start and end time, title and
sub-title, cut to 80 columns. Times are in the box's time zone, or in
the zone of an [[audience]] of the config (--audience miami), or in any
IANA zone (--tz America/New_York). Exits 1 when nothing is scheduled:
see \"The guide is empty for a channel\" in the README.
";

pub fn run(args: &[String]) -> i32 {
    let mut url = "http://127.0.0.1:8080".to_string();
    let mut hours: i64 = 12;
    let mut audience: Option<String> = None;
    let mut tz_name: Option<String> = None;
    let mut channel: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| -> Option<String> {
            let v = it.next().cloned();
            if v.is_none() {
                super::term::warn(&format!("capbox epg: {what} needs a value"));
            }
            v
        };
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            "--url" => match value("--url") {
                Some(u) => url = u,
                None => return 2,
            },
            "--hours" => match value("--hours").and_then(|h| h.parse::<i64>().ok()) {
                Some(h) if (1..=24 * 31).contains(&h) => hours = h,
                _ => {
                    super::term::warn("capbox epg: --hours takes a number of hours 1..=744");
                    return 2;
                }
            },
            "--audience" => match value("--audience") {
                Some(v) => audience = Some(v),
                None => return 2,
            },
            "--tz" => match value("--tz") {
                Some(v) => tz_name = Some(v),
                None => return 2,
            },
            o if o.starts_with('-') => {
                eprintln!("capbox epg: unknown option '{o}'\n\n{HELP}");
                return 2;
            }
            c if channel.is_none() => channel = Some(c.to_string()),
            c => {
                eprintln!("capbox epg: one channel at a time ('{c}'?)\n\n{HELP}");
                return 2;
            }
        }
    }
    let Some(channel) = channel else {
        eprint!("capbox epg: which channel?\n\n{HELP}");
        return 2;
    };
    let timeout = Duration::from_secs(10);
    // The zone the times are printed in.
    let (tz, zone_words) = if let Some(a) = &audience {
        let status = match http_get(&url, "/status", timeout) {
            Ok(b) => b,
            Err(e) => {
                super::term::warn(&format!("capbox epg: {e}"));
                return 1;
            }
        };
        let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
        let found = v["epg"]["audiences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"].as_str() == Some(a.as_str()))
            .and_then(|x| x["tz"].as_str().map(str::to_string));
        let Some(z) = found else {
            super::term::warn(&format!(
                "capbox epg: no audience '{a}' in the running config ([[audience]])"
            ));
            return 1;
        };
        match jiff::tz::TimeZone::get(&z) {
            Ok(t) => (t, format!("audience {a}, {z}")),
            Err(e) => {
                super::term::warn(&format!("capbox epg: {z}: {e}"));
                return 1;
            }
        }
    } else if let Some(z) = &tz_name {
        match jiff::tz::TimeZone::get(z) {
            Ok(t) => (t, z.clone()),
            Err(_) => {
                super::term::warn(&format!(
                    "capbox epg: {z:?} is not an IANA time zone name (such as Europe/Paris)"
                ));
                return 2;
            }
        }
    } else {
        let t = jiff::tz::TimeZone::system();
        let name = t.iana_name().unwrap_or("the box's zone").to_string();
        (t, name)
    };
    let path = format!("/epg.xml?channel={}", pct(&channel));
    let xml = match http_get(&url, &path, timeout) {
        Ok(b) => b,
        Err(e) => {
            super::term::warn(&format!(
                "capbox epg: {e} (is capbox running with [epg] enabled?)"
            ));
            return 1;
        }
    };
    let parsed = match crate::epg::xmltv_in::parse(xml.as_bytes(), |id| Some(id.to_string())) {
        Ok(p) => p,
        Err(e) => {
            super::term::warn(&format!("capbox epg: /epg.xml: {e}"));
            return 1;
        }
    };
    let now = crate::epg::live::now_secs();
    let until = now + hours * 3600;
    let mut events: Vec<(i64, i64, String, String)> = parsed
        .channels
        .values()
        .flatten()
        .filter_map(|e| {
            let s = e.start?;
            let end = s + i64::from(e.duration?);
            (end > now && s < until).then(|| (s, end, e.title.clone(), e.subtitle.clone()))
        })
        .collect();
    events.sort();
    let id = parsed.channels.keys().next().cloned().unwrap_or_default();
    println!(
        "{}",
        super::status::cut_line(
            &format!("{channel} (tvg-id {id}), next {hours} h, times in {zone_words}"),
            80
        )
    );
    if events.is_empty() {
        println!("no programmes in the next {hours} h: see \"The guide is empty for a channel\" in the README");
        return 1;
    }
    print!("{}", print_events(&events, &tz));
    0
}

/// Percent-encode a query value (channel names are [a-z0-9._-], but a
/// mistyped argument must not break the request line).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
