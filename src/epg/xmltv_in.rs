//! The guide from the operator: an XMLTV document parsed into raw events
//! per capbox channel, for the store's same validation.
//!
//! Parsed with quick-xml, a streaming pull parser: an operator's guide for
//! hundreds of channels runs to tens of megabytes, and a DOM (roxmltree)
//! would hold all of it at once; quick-xml holds one element. Entities: the
//! five XML ones and character references; anything else (an external DTD's
//! entity) is dropped and counted, never fetched.
//!
//! Channel ids are mapped by the caller's `resolve` (the config's mapping,
//! else the tvg-id itself); programmes of unknown ids are counted and
//! skipped. A programme without `stop` lasts until the next one of its
//! channel (common in operator files); the last one without `stop` is left
//! undefined for the store to count.
//!
//! Promises: never panics; a document that is not well-formed is an error
//! in words with its byte position, and nothing of it is used (the caller
//! keeps the last good guide); bounded by `MAX_EVENTS_PER_CHANNEL` and
//! `MAX_TEXT_BYTES` per element.

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::store::{Outcome, PartKey, RawEvent, Store};

/// Programmes kept per channel (a fortnight of 5-minute slots).
pub const MAX_EVENTS_PER_CHANNEL: usize = 4096;
/// Text kept per element, in bytes.
pub const MAX_TEXT_BYTES: usize = 8192;

/// What the parse skipped, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XmltvStats {
    pub programmes: u64,
    /// `channel` attribute not mapped to a capbox channel.
    pub unknown_channel: u64,
    /// `start` or `stop` not an XMLTV time.
    pub bad_time: u64,
    /// Entities other than the five XML ones and character references.
    pub unknown_entity: u64,
    /// Programmes past `MAX_EVENTS_PER_CHANNEL`.
    pub over_limit: u64,
}

/// A parsed document: raw events per capbox channel id.
#[derive(Debug, Default)]
pub struct Parsed {
    pub channels: BTreeMap<String, Vec<RawEvent>>,
    pub stats: XmltvStats,
}

/// Parse `xml`; `resolve` maps a source channel id to a capbox channel id.
pub fn parse(xml: &[u8], resolve: impl Fn(&str) -> Option<String>) -> Result<Parsed, String> {
    let text = std::str::from_utf8(xml).map_err(|e| {
        format!(
            "XMLTV is not UTF-8 at byte {} (capbox reads UTF-8 XMLTV only)",
            e.valid_up_to()
        )
    })?;
    let mut r = Reader::from_str(text);
    let mut out = Parsed::default();
    // (channel, start, stop) of the programme being read, and its fields.
    let mut cur: Option<Current> = None;
    // The element whose text we collect inside a programme.
    let mut field: Option<Field> = None;
    let mut buf = String::new();
    loop {
        let pos = r.buffer_position();
        let ev = r
            .read_event()
            .map_err(|e| format!("XMLTV is not well-formed near byte {pos}: {e}"))?;
        match ev {
            Event::Start(e) => match e.name().as_ref() {
                "programme" => {
                    cur = start_programme(&e, &resolve, &mut out.stats);
                }
                name if cur.is_some() => {
                    field = Field::of(name);
                    buf.clear();
                    if let (Some(Field::Title), Some((_, _, _, ev))) = (&field, &mut cur) {
                        if ev.language.is_none() {
                            ev.language = attr(&e, "lang");
                        }
                    }
                }
                _ => {}
            },
            Event::Text(t) if field.is_some() => push(&mut buf, &t.xml10_content()),
            Event::CData(t) if field.is_some() => push(&mut buf, &t.into_inner()),
            Event::GeneralRef(g) if field.is_some() => {
                let c = match g.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => match &*g {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        _ => None,
                    },
                };
                match c {
                    Some(c) => push(&mut buf, c.encode_utf8(&mut [0; 4])),
                    None => out.stats.unknown_entity += 1,
                }
            }
            Event::End(e) => match e.name().as_ref() {
                "programme" => {
                    if let Some((ch, start, stop, mut ev)) = cur.take() {
                        ev.start = start;
                        // Stop: Some(Some(t)) given, Some(None) bad, None absent.
                        ev.duration = match (start, stop) {
                            (Some(s), Some(Some(t))) if t > s => u32::try_from(t - s).ok(),
                            (Some(_), Some(Some(_))) => Some(0),
                            _ => None,
                        };
                        let v = out.channels.entry(ch).or_default();
                        if v.len() >= MAX_EVENTS_PER_CHANNEL {
                            out.stats.over_limit += 1;
                        } else {
                            // Marks "no stop given": filled from the next start.
                            if stop.is_none() {
                                ev.duration = None;
                                ev.event_id = u16::MAX;
                            }
                            out.stats.programmes += 1;
                            v.push(ev);
                        }
                    }
                    field = None;
                }
                _ => {
                    if let (Some(f), Some((_, _, _, ev))) = (field.take(), &mut cur) {
                        f.store(std::mem::take(&mut buf), ev);
                    }
                }
            },
            Event::Eof => break,
            _ => {}
        }
    }
    for v in out.channels.values_mut() {
        v.sort_by_key(|e| e.start);
        for i in 0..v.len() {
            if v[i].event_id == u16::MAX && v[i].duration.is_none() {
                let next = v.get(i + 1).and_then(|n| n.start);
                v[i].duration = match (v[i].start, next) {
                    (Some(s), Some(n)) if n > s => u32::try_from(n - s).ok(),
                    _ => None,
                };
            }
            v[i].event_id = synthetic_id(v[i].start);
        }
    }
    Ok(out)
}

/// Put a parsed document into the store as part `Xmltv(source)` of each
/// channel it has programmes for; the outcome per channel.
pub fn load(store: &mut Store, source: u8, parsed: Parsed, now: i64) -> Vec<(String, Outcome)> {
    parsed
        .channels
        .into_iter()
        .map(|(ch, raw)| {
            let o = store.replace_raw(&ch, PartKey::Xmltv(source), raw, now);
            (ch, o)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Title,
    SubTitle,
    Desc,
    Category,
    Rating,
}

impl Field {
    fn of(name: &str) -> Option<Field> {
        Some(match name {
            "title" => Field::Title,
            "sub-title" => Field::SubTitle,
            "desc" => Field::Desc,
            "category" => Field::Category,
            "value" => Field::Rating, // <rating><value>12</value></rating>
            _ => return None,
        })
    }

    /// The first title, sub-title and desc win (XMLTV lists one per
    /// language).
    fn store(self, text: String, ev: &mut RawEvent) {
        match self {
            Field::Title if ev.title.is_empty() => ev.title = text,
            Field::SubTitle if ev.subtitle.is_empty() => ev.subtitle = text,
            Field::Desc if ev.description.is_empty() => ev.description = text,
            Field::Category => {
                if let Some(n) = genre_nibble(text.trim()) {
                    ev.content.push(n);
                }
            }
            Field::Rating if ev.min_age.is_none() => {
                let digits: String = text.chars().filter(char::is_ascii_digit).take(2).collect();
                ev.min_age = digits.parse().ok();
            }
            _ => {}
        }
    }
}

fn push(buf: &mut String, s: &str) {
    if buf.len() + s.len() <= MAX_TEXT_BYTES {
        buf.push_str(s);
    }
}

fn attr(e: &BytesStart<'_>, key: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == key)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

type Current = (String, Option<i64>, Option<Option<i64>>, RawEvent);

fn start_programme(
    e: &BytesStart<'_>,
    resolve: &impl Fn(&str) -> Option<String>,
    stats: &mut XmltvStats,
) -> Option<Current> {
    let Some(ch) = attr(e, "channel").and_then(|c| resolve(&c)) else {
        stats.unknown_channel += 1;
        return None;
    };
    let start = attr(e, "start").and_then(|s| parse_time(&s));
    if start.is_none() {
        stats.bad_time += 1;
    }
    let stop = attr(e, "stop").map(|s| {
        let t = parse_time(&s);
        if t.is_none() {
            stats.bad_time += 1;
        }
        t
    });
    Some((ch, start, stop, RawEvent::default()))
}

/// An XMLTV time, "YYYYMMDDhhmmss +hhmm": seconds and minutes may be
/// missing (then zero), the offset too (then UTC, as the DTD says).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (digits, zone) = match s.find([' ', '+', '-']) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() < 8 || digits.len() > 14 {
        return None;
    }
    let n = |a: usize, b: usize| -> Option<i64> {
        digits.get(a..b).map_or(Some(0), |x| x.parse().ok())
    };
    let (y, mo, d) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (h, mi, sec) = (n(8, 10)?, n(10, 12)?, n(12, 14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let offset = if zone.is_empty() || zone.eq_ignore_ascii_case("UTC") || zone == "Z" {
        0
    } else {
        let (sign, rest) = match zone.as_bytes()[0] {
            b'+' => (1, &zone[1..]),
            b'-' => (-1, &zone[1..]),
            _ => return None,
        };
        if rest.len() != 4 || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (oh, om): (i64, i64) = (rest[..2].parse().ok()?, rest[2..].parse().ok()?);
        if oh > 14 || om > 59 {
            return None;
        }
        sign * (oh * 3600 + om * 60)
    };
    // Rejects 31 April, 29 February of a common year.
    jiff::civil::Date::new(y as i16, mo as i8, d as i8).ok()?;
    // Days since 1970-01-01 (H. Hinnant's days_from_civil).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset)
}

/// A category that names an EN 300 468 genre ("Movie/Drama", "Sports") →
/// its level-1 nibble; other words are not DVB genres.
fn genre_nibble(s: &str) -> Option<u8> {
    (1..=0x0Bu8).find_map(|l1| {
        let n = crate::ts::descriptor::ContentNibbles {
            content_nibble_level_1: l1,
            content_nibble_level_2: 0,
            user_byte: 0,
        };
        n.genre().eq_ignore_ascii_case(s).then_some(l1 << 4)
    })
}

/// XMLTV has no event id: the start's minutes, enough to tell events apart.
fn synthetic_id(start: Option<i64>) -> u16 {
    start.map_or(0, |s| (s / 60) as u16)
}

#[cfg(test)]
mod tests;
