//! The guide out, as XMLTV (the format every IPTV middleware and player
//! reads; DTD: xmltv.dtd of the XMLTV project, Debian `xmltv-util`).
//!
//! Channel ids are the playlist's `tvg-id` (`text::clean_name` of the
//! channel's `tvg_id`, exactly as `daemon.rs` writes the `#EXTINF` line), so
//! a player matches guide and channel without a mapping table.
//!
//! Audiences: the same guide for viewers in another time zone. Players
//! differ in whether they honour the `+hhmm` offset of an XMLTV time or show
//! the wall-clock digits as they are, so every time is written in the
//! audience's local time with that zone's offset at that instant: right for
//! both kinds of player. Offsets come from the IANA time zone database
//! bundled into capbox (jiff with `tzdb-bundle-always`): the appliance image
//! may have no /usr/share/zoneinfo, and every box of a fleet running one
//! capbox version then shows the same times.
//!
//! Promises: the output is well-formed UTF-8 XML that validates against the
//! XMLTV DTD whatever the events hold (text is escaped; characters XML 1.0
//! forbids are dropped); never panics.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::store::{Event, Store};
use crate::ts::descriptor::ContentNibbles;
use crate::ts::text::clean_name;

/// An audience: a name the operator picks (`?audience=miami`) and an IANA
/// time zone.
#[derive(Debug, Clone)]
pub struct Audience {
    pub name: String,
    pub tz_name: String,
    tz: TimeZone,
}

impl Audience {
    /// An error in words when the zone is unknown to the bundled database.
    pub fn new(name: &str, tz: &str) -> Result<Audience, String> {
        let zone = TimeZone::get(tz).map_err(|e| {
            format!("audience {name:?}: tz {tz:?} is not an IANA time zone name ({e})")
        })?;
        Ok(Audience {
            name: name.to_string(),
            tz_name: tz.to_string(),
            tz: zone,
        })
    }

    /// `secs` (Unix, UTC) as an XMLTV time in this audience's zone:
    /// "YYYYMMDDhhmmss +hhmm".
    pub fn format(&self, secs: i64) -> String {
        format_in(&self.tz, secs)
    }
}

fn format_in(tz: &TimeZone, secs: i64) -> String {
    match Timestamp::from_second(secs) {
        Ok(t) => t
            .to_zoned_datetime(tz.clone())
            .strftime("%Y%m%d%H%M%S %z")
            .to_string(),
        // Out of jiff's range (±9999 years): the store never keeps such
        // events; write the epoch rather than panic.
        Err(_) => "19700101000000 +0000".to_string(),
    }
}

/// A channel of the guide: its key in the store, its playlist `tvg-id`
/// and display name.
#[derive(Debug, Clone, Copy)]
pub struct Channel<'a> {
    /// The store's key for the channel (the daemon's: the channel name).
    pub key: &'a str,
    /// The XMLTV channel id: the playlist's `tvg-id`.
    pub id: &'a str,
    pub name: &'a str,
}

/// Write the XMLTV document for `channels` (events overlapping
/// [`from`, `to`)), times in `audience`'s zone or UTC.
pub fn write(
    store: &Store,
    channels: &[Channel<'_>],
    audience: Option<&Audience>,
    from: i64,
    to: i64,
) -> String {
    let utc = TimeZone::UTC;
    let tz = audience.map_or(&utc, |a| &a.tz);
    let mut out = String::with_capacity(4096);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n");
    out.push_str("<tv generator-info-name=\"capbox\"");
    if let Some(a) = audience {
        // Not an XMLTV attribute: a comment says which audience this is.
        out.push_str(">\n<!-- audience ");
        escape_comment(&a.name, &mut out);
        out.push_str(", time zone ");
        escape_comment(&a.tz_name, &mut out);
        out.push_str(" -->\n");
    } else {
        out.push_str(">\n");
    }
    // Two channels with one tvg-id are one channel to a player: the first
    // one's guide is written, once.
    let mut ids: Vec<String> = Vec::with_capacity(channels.len());
    let mut written: Vec<&Channel<'_>> = Vec::with_capacity(channels.len());
    for c in channels {
        let id = clean_name(c.id);
        if ids.contains(&id) {
            continue;
        }
        out.push_str("  <channel id=\"");
        escape(&id, &mut out);
        out.push_str("\">\n    <display-name>");
        escape(&clean_name(c.name), &mut out);
        out.push_str("</display-name>\n  </channel>\n");
        ids.push(id);
        written.push(c);
    }
    for (c, id) in written.iter().zip(&ids) {
        for e in store.guide(c.key, from, to) {
            programme(id, e, tz, &mut out);
        }
    }
    out.push_str("</tv>\n");
    out
}

fn programme(channel: &str, e: &Event, tz: &TimeZone, out: &mut String) {
    out.push_str("  <programme start=\"");
    out.push_str(&format_in(tz, e.start));
    out.push_str("\" stop=\"");
    out.push_str(&format_in(tz, e.end()));
    out.push_str("\" channel=\"");
    escape(channel, out);
    out.push_str("\">\n");
    let lang = e.language_str();
    element("title", lang, &e.title, out);
    if !e.subtitle.is_empty() && *e.subtitle != *e.title {
        element("sub-title", lang, &e.subtitle, out);
    }
    if !e.description.is_empty() {
        element("desc", lang, &e.description, out);
    }
    for &c in e.content.iter().filter(|&&c| c != 0) {
        let n = ContentNibbles {
            content_nibble_level_1: c >> 4,
            content_nibble_level_2: c & 0x0F,
            user_byte: 0,
        };
        // Category names are English (EN 300 468 table 29).
        element("category", Some("en"), n.genre(), out);
    }
    if e.min_age > 0 {
        let _ = write!(
            out,
            "    <rating system=\"DVB\">\n      <value>{}</value>\n    </rating>\n",
            e.min_age
        );
    }
    out.push_str("  </programme>\n");
}

fn element(name: &str, lang: Option<&str>, text: &str, out: &mut String) {
    let _ = write!(out, "    <{name}");
    if let Some(l) = lang {
        out.push_str(" lang=\"");
        escape(l, out);
        out.push('"');
    }
    out.push('>');
    escape(text, out);
    let _ = writeln!(out, "</{name}>");
}

/// Text or attribute value: the five XML entities escaped, characters XML
/// 1.0 forbids (C0 controls but tab and line feed, lone surrogates cannot
/// occur in a `str`, U+FFFE/U+FFFF) dropped.
fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(c),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// Text inside `<!-- -->`: no "--", nothing XML forbids.
fn escape_comment(s: &str, out: &mut String) {
    let mut prev_dash = false;
    for c in s.chars() {
        if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' || (c == '-' && prev_dash) {
            continue;
        }
        prev_dash = c == '-';
        out.push(c);
    }
    if prev_dash {
        out.push(' ');
    }
}

#[cfg(test)]
mod tests;
