//! The guide as the daemon serves it: `/epg.xml` (per audience, per
//! channel, rendered once a minute at most per query), the EPG families
//! of `/metrics`, the `epg` object of `/status`, and each channel's
//! coverage (programmes in the next 12 hours).
//!
//! Takes the channels as plain data (`GuideChannel`) so it knows nothing
//! of `Channel` or the config; the daemon lists them in playlist order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::live::{now_secs, Live};
use super::xmltv::{self, Channel};
use crate::monitor::metrics::{family, Kind};

/// The coverage window: `capbox_epg_programmes_next_12h`.
pub const COVERAGE_SECS: i64 = 12 * 3600;

/// A channel as the guide names it.
#[derive(Debug, Clone)]
pub struct GuideChannel {
    /// The channel's name: the store's key, `?channel=`.
    pub name: String,
    /// The playlist's `tvg-id`: the XMLTV channel id.
    pub tvg_id: String,
    /// The playlist's title.
    pub display: String,
}

/// A rendered guide is served again for this long: a player fleet asking
/// at once costs one rendering (the guide changes by the table, slowly).
pub const CACHE_FOR: Duration = Duration::from_secs(60);
/// Rendered guides kept (the whole guide, per audience, per channel).
pub const CACHE_ENTRIES: usize = 16;

/// (audience, channel, the store's generation, when, the document).
type Rendered = (Option<String>, Option<String>, u64, Instant, Arc<String>);

/// Rendered guides by query (audience, channel).
#[derive(Debug, Default)]
pub struct Cache {
    entries: Vec<Rendered>,
}

impl Cache {
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// `/epg.xml?audience=&channel=`: the status and the document or the
/// reason in words.
pub fn epg_xml(
    live: &Live,
    cache: &mut Cache,
    channels: &[GuideChannel],
    params: &[(String, String)],
) -> (u16, String) {
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    for (k, _) in params {
        if k != "audience" && k != "channel" {
            return (
                400,
                format!(
                    "unknown parameter '{}'; /epg.xml takes audience=NAME and channel=NAME\n",
                    crate::ts::text::clean_name(k)
                ),
            );
        }
    }
    let audience = match get("audience") {
        None => None,
        Some(a) => match live.audience(a) {
            Some(x) => Some(x),
            None => {
                let names: Vec<String> = live.audiences().into_iter().map(|a| a.name).collect();
                return (
                    404,
                    format!(
                        "no audience '{}' (audiences: {}; [[audience]] in the config)\n",
                        crate::ts::text::clean_name(a),
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
            }
        },
    };
    let channel = get("channel");
    let chosen: Vec<&GuideChannel> = match channel {
        None => channels.iter().collect(),
        Some(c) => {
            let v: Vec<&GuideChannel> = channels.iter().filter(|g| g.name == c).collect();
            if v.is_empty() {
                let names: Vec<String> = channels.iter().map(|g| g.name.clone()).collect();
                return (
                    404,
                    format!(
                        "no channel '{}' (channels: {})\n",
                        crate::ts::text::clean_name(c),
                        crate::source::runner::list_some(names.into_iter(), 16)
                    ),
                );
            }
            v
        }
    };
    let key = (
        audience.as_ref().map(|a| a.name.clone()),
        channel.map(str::to_string),
    );
    let now = Instant::now();
    let generation = live.store().generation();
    // A rendering is kept while the guide has not changed, and at most a
    // minute (the window slides with the clock).
    cache
        .entries
        .retain(|(_, _, g, at, _)| *g == generation && now.duration_since(*at) < CACHE_FOR);
    if let Some((_, _, _, _, xml)) = cache
        .entries
        .iter()
        .find(|(a, c, _, _, _)| (a, c) == (&key.0, &key.1))
    {
        return (200, xml.as_str().to_string());
    }
    let list: Vec<Channel<'_>> = chosen
        .iter()
        .map(|g| Channel {
            key: &g.name,
            id: &g.tvg_id,
            name: &g.display,
        })
        .collect();
    let (xml, generation) = {
        let store = live.store();
        let l = store.limits();
        let t = now_secs();
        let (from, to) = (
            t.saturating_sub(l.keep_past),
            t.saturating_add(l.max_future),
        );
        let xml = xmltv::write(&store, &list, audience.as_ref(), from, to);
        (xml, store.generation())
    };
    if cache.entries.len() >= CACHE_ENTRIES {
        cache.entries.remove(0);
    }
    let xml = Arc::new(xml);
    cache
        .entries
        .push((key.0, key.1, generation, now, xml.clone()));
    (200, xml.as_str().to_string())
}

/// Each channel's coverage now: programmes running or starting in the
/// next 12 hours.
pub fn coverage(live: &Live, channels: &[GuideChannel]) -> Vec<(String, usize)> {
    let store = live.store();
    let now = now_secs();
    channels
        .iter()
        .map(|g| (g.name.clone(), store.coverage(&g.name, now, COVERAGE_SECS)))
        .collect()
}

/// The EPG families of /metrics.
pub fn metrics(live: &Live, channels: &[GuideChannel], enabled: bool, m: &mut String) {
    let mut f = family(
        m,
        "capbox_epg_enabled",
        Kind::Gauge,
        "1 when the programme guide is collected and served ([epg] enabled).",
    );
    f.sample(&[], enabled);
    if !enabled {
        return;
    }
    let cov = coverage(live, channels);
    let mut f = family(
        m,
        "capbox_epg_programmes_next_12h",
        Kind::Gauge,
        "Programmes in the channel's guide running now or starting in the next 12 hours.",
    );
    for (name, n) in &cov {
        f.sample(&[("channel", name)], *n);
    }
    let (bytes, budget, events, rejects) = {
        let s = live.store();
        (s.bytes(), s.limits().budget_bytes, s.events(), s.rejects)
    };
    family(
        m,
        "capbox_epg_bytes",
        Kind::Gauge,
        "Memory the guide's events take (measured footprint; at most the budget).",
    )
    .sample(&[], bytes);
    family(
        m,
        "capbox_epg_budget_bytes",
        Kind::Gauge,
        "The guide's memory budget ([epg] budget_mib).",
    )
    .sample(&[], budget);
    family(
        m,
        "capbox_epg_events",
        Kind::Gauge,
        "Events held in the guide (every source, every channel).",
    )
    .sample(&[], events);
    let mut f = family(
        m,
        "capbox_epg_rejects_total",
        Kind::Counter,
        "Events or schedules the guide refused or changed, by reason (overlap, zero_duration, \
         empty_title, wipeout, over_budget, ...).",
    );
    for (reason, n) in rejects.counters() {
        f.sample(&[("reason", reason)], n);
    }
    let muxes = live.muxes();
    let mut f = family(
        m,
        "capbox_epg_eit_total",
        Kind::Counter,
        "EIT collection per input: sections kept, tables stored, and what was dropped, by what.",
    );
    for (mux, e) in &muxes {
        for (what, n) in e.counters() {
            f.sample(&[("input", mux), ("what", what)], n);
        }
    }
}

/// The `epg` object of /status.
pub fn status(live: &Live, channels: &[GuideChannel], enabled: bool) -> serde_json::Value {
    if !enabled {
        return serde_json::json!({ "enabled": false });
    }
    let cov = coverage(live, channels);
    let now = now_secs();
    let per_channel: Vec<serde_json::Value> = {
        let store = live.store();
        cov.iter()
            .map(|(name, n)| {
                let next = store.guide(name, now, now.saturating_add(COVERAGE_SECS));
                let (title, until) = next
                    .first()
                    .filter(|e| e.start <= now)
                    .map_or((None, None), |e| (Some(e.title.to_string()), Some(e.end())));
                let last_end = store.guide(name, now, i64::MAX / 2).last().map(|e| e.end());
                serde_json::json!({
                    "name": name,
                    "programmes_next_12h": n,
                    "now": title,
                    "now_until": until,
                    "guide_until": last_end,
                })
            })
            .collect()
    };
    let s = live.store();
    let rejects: serde_json::Map<String, serde_json::Value> = s
        .rejects
        .counters()
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect();
    serde_json::json!({
        "enabled": true,
        "bytes": s.bytes(),
        "budget_bytes": s.limits().budget_bytes,
        "events": s.events(),
        "rejects": rejects,
        "inputs": live.muxes(),
        "channels": per_channel,
        "audiences": live.audiences().iter().map(|a| serde_json::json!({"name": a.name, "tz": a.tz_name})).collect::<Vec<_>>(),
    })
}

/// `capbox epg`'s lines: (start, stop, title, sub-title) of a channel's
/// next events in `tz`, a day header when the date changes, each line cut
/// to 80 columns.
pub fn print_events(events: &[(i64, i64, String, String)], tz: &jiff::tz::TimeZone) -> String {
    let mut out = String::new();
    let mut day = String::new();
    for (start, stop, title, sub) in events {
        let (Ok(s), Ok(e)) = (
            jiff::Timestamp::from_second(*start),
            jiff::Timestamp::from_second(*stop),
        ) else {
            continue;
        };
        let s = s.to_zoned_datetime(tz.clone());
        let e = e.to_zoned_datetime(tz.clone());
        let d = s.strftime("%a %d %b %Y").to_string();
        if d != day {
            out.push_str(&d);
            out.push('\n');
            day = d;
        }
        let times = format!("  {}-{}  ", s.strftime("%H:%M"), e.strftime("%H:%M"));
        let mut line = times.clone();
        let room = 80usize.saturating_sub(times.chars().count());
        let mut text = title.clone();
        if !sub.is_empty() && sub != title {
            text.push_str(" - ");
            text.push_str(sub);
        }
        if text.chars().count() > room {
            text = text
                .chars()
                .take(room.saturating_sub(1))
                .collect::<String>()
                + "…";
        }
        line.push_str(&text);
        out.push_str(&line);
        out.push('\n');
    }
    out
}
