//! The EPG store: every channel's programme guide, from every source, in
//! bounded memory.
//!
//! Owns the events (one `Event` per programme, UTC start, duration, text,
//! genre, rating) grouped per channel into *parts*: one part is one complete
//! schedule as one source hands it out (an EIT present/following table, one
//! EIT schedule table — 4 days —, one XMLTV file's channel). A part is
//! replaced as a whole (`Store::replace`), never patched, so a section that
//! repeats every few seconds costs a comparison and nothing else, and an
//! event dropped by the broadcaster disappears with the next version.
//!
//! Promises:
//! - Validation before anything is stored, with one counter per reason
//!   (`Rejects`): undefined or far (> `max_future`) or long-gone
//!   (> `max_past`) times, zero or absurd (> `max_duration`) durations,
//!   empty or mostly unprintable titles (a wrong character table), events
//!   overlapping an earlier one of the same part, duplicates. Titles in
//!   broken capitals are normalised (`normalise_caps`) and counted.
//! - A sudden wipe-out (a new version of a part with fewer than
//!   `wipeout_ratio` of the upcoming events the stored one has) is refused:
//!   the last good part stays and `Rejects::wipeout` counts it. A part that
//!   keeps arriving shrunk for `wipeout_hold` seconds is believed (a
//!   broadcaster that really stops its guide must not be overruled for
//!   ever).
//! - Bounded: `bytes()` (the events' measured footprint, see
//!   `Event::footprint`) stays under `Limits::budget_bytes`; when a part
//!   would not fit, the events furthest in the future (of any channel) go
//!   first, counted in `Rejects::over_budget`. At most `max_channels`
//!   channels and `MAX_PARTS` parts per channel.
//! - Never panics on any input; the clock is passed in (`now`, Unix seconds
//!   UTC), so tests need no wall clock.
//!
//! Reading merges a channel's parts by priority: an event of a lower part is
//! kept only where it overlaps nothing already taken (the higher source wins
//! where they overlap, the lower fills its gaps). The order is per origin
//! (`Origin`: the air's EIT, each XMLTV source), set for every channel or
//! for one (`Store::set_priority`, the config's `priority`); by default
//! `PartKey` order: EIT p/f over EIT schedule over XMLTV by source index.
//! Within EIT, p/f always comes before the schedule tables.

use std::collections::BTreeMap;
use std::mem::size_of;

use crate::ts::text::{clean_line, clean_name};

/// Longest description kept, in bytes (cut at a character boundary). An EIT
/// extended event text can reach 16 × 255 bytes; a guide line needs less.
pub const MAX_DESCRIPTION_BYTES: usize = 2048;
/// Longest subtitle (short event text) kept, in bytes.
pub const MAX_SUBTITLE_BYTES: usize = 512;
/// Parts per channel: p/f, 16 schedule tables, a few XMLTV sources.
pub const MAX_PARTS: usize = 24;

/// One programme. Times are UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// EIT event_id, or a hash of the start for sources without one.
    pub event_id: u16,
    /// Unix seconds, UTC.
    pub start: i64,
    /// Seconds.
    pub duration: u32,
    /// One clean line (`text::clean_name`).
    pub title: Box<str>,
    /// Short event text / XMLTV sub-title: one line.
    pub subtitle: Box<str>,
    /// Extended event text / XMLTV desc: may hold line breaks.
    pub description: Box<str>,
    /// ISO 639-2 code, lowercase ASCII, `[0; 3]` when unknown.
    pub language: [u8; 3],
    /// Up to 3 content classifications, level_1 << 4 | level_2; 0 = none.
    pub content: [u8; 3],
    /// Minimum age (EN 300 468 rating + 3), 0 = none.
    pub min_age: u8,
}

impl Event {
    pub fn end(&self) -> i64 {
        self.start.saturating_add(self.duration as i64)
    }

    pub fn language_str(&self) -> Option<&str> {
        if self.language == [0; 3] {
            return None;
        }
        std::str::from_utf8(&self.language).ok()
    }

    /// Bytes this event costs in the store: the struct plus each string's
    /// heap block as glibc's malloc hands it out (the request plus an 8-byte
    /// header, rounded up to 16, at least 32). `tests/epg_memory.rs` checks
    /// this against a counting allocator.
    pub fn footprint(&self) -> usize {
        fn block(len: usize) -> usize {
            if len == 0 {
                0
            } else {
                ((len + 8).div_ceil(16) * 16).max(32)
            }
        }
        size_of::<Event>()
            + block(self.title.len())
            + block(self.subtitle.len())
            + block(self.description.len())
    }
}

/// Which source a part comes from; the order is the merge priority (first
/// wins where events overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartKey {
    /// EIT present/following (table 0x4E/0x4F): the broadcaster's word on
    /// what runs now.
    EitPresentFollowing,
    /// EIT schedule table `table_id & 0x0F` (0x50..=0x5F / 0x60..=0x6F): 4
    /// days each.
    EitSchedule(u8),
    /// An operator XMLTV source, by its index in the config.
    Xmltv(u8),
}

/// Where a part's events come from, for the merge order
/// (`Store::set_priority`): the air (every EIT part) or one operator XMLTV
/// source (by its index in the config, as in `PartKey::Xmltv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Eit,
    Xmltv(u8),
}

impl PartKey {
    pub fn origin(self) -> Origin {
        match self {
            PartKey::EitPresentFollowing | PartKey::EitSchedule(_) => Origin::Eit,
            PartKey::Xmltv(i) => Origin::Xmltv(i),
        }
    }
}

/// Validation and store limits. Defaults fit 200 channels × 7 days: see
/// `Limits::default`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// The store's memory budget (`Store::bytes`).
    pub budget_bytes: usize,
    pub max_channels: usize,
    /// Longer events are absurd (a day: a 24-hour loop channel still
    /// announces one event per day).
    pub max_duration: u32,
    /// Events ending longer ago than this are garbage (a wrong MJD).
    pub max_past: i64,
    /// Events ended longer ago than this are no longer kept (history).
    pub keep_past: i64,
    /// Events starting further ahead are garbage.
    pub max_future: i64,
    /// A new version of a part with fewer upcoming events than this
    /// fraction of the stored one's is a wipe-out…
    pub wipeout_ratio: f32,
    /// …when the stored one has at least this many upcoming events.
    pub wipeout_min_events: usize,
    /// A shrunk part seen for this long (seconds) is believed.
    pub wipeout_hold: i64,
    /// Title-case titles sent in capitals (see `normalise_caps`).
    pub normalise_caps: bool,
}

/// Events a channel carries per day on average, for the default budget:
/// news channels run 15-minute slots, film channels 2-hour ones.
pub const DEFAULT_EVENTS_PER_DAY: usize = 48;
/// Bytes an event costs on average with a full description (measured by
/// `tests/epg_memory.rs` with 250-byte descriptions: 424, within 1 % of
/// what malloc hands out), with headroom.
pub const DEFAULT_EVENT_BYTES: usize = 600;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // 200 channels × 8 days (7 ahead + 1 of history) × 48 events
            // × 600 bytes ≈ 44 MiB.
            budget_bytes: 200 * 8 * DEFAULT_EVENTS_PER_DAY * DEFAULT_EVENT_BYTES,
            max_channels: 1000,
            max_duration: 24 * 3600,
            max_past: 30 * 86_400,
            keep_past: 86_400,
            max_future: 30 * 86_400,
            wipeout_ratio: 0.5,
            wipeout_min_events: 8,
            wipeout_hold: 6 * 3600,
            normalise_caps: true,
        }
    }
}

/// Why events or parts were not stored, or what was changed; one counter
/// per reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rejects {
    /// Start or duration undefined (all ones) or not valid BCD/MJD.
    pub undefined_time: u64,
    pub zero_duration: u64,
    pub absurd_duration: u64,
    /// Ending more than `max_past` ago.
    pub far_past: u64,
    /// Starting more than `max_future` ahead.
    pub far_future: u64,
    /// Ended more than `keep_past` ago: valid, but history not kept.
    pub expired: u64,
    pub empty_title: u64,
    /// More than a third of the title's characters unprintable (U+FFFD, a
    /// private-use DVB control code): a wrong character table.
    pub unprintable_title: u64,
    /// Starting before the previous event of the same part ended.
    pub overlap: u64,
    /// The same start and title twice in one part.
    pub duplicate: u64,
    /// Titles rewritten from capitals (not a drop).
    pub caps_normalised: u64,
    /// Descriptions or subtitles cut to their maximum (not a drop).
    pub truncated: u64,
    /// New parts refused as a wipe-out (the last good one kept).
    pub wipeout: u64,
    /// Events evicted or not stored for the memory budget.
    pub over_budget: u64,
    /// Parts refused: `max_channels` or `MAX_PARTS` reached.
    pub too_many: u64,
}

impl Rejects {
    /// (name, count) of every counter, for metrics and status.
    pub fn counters(&self) -> [(&'static str, u64); 15] {
        [
            ("undefined_time", self.undefined_time),
            ("zero_duration", self.zero_duration),
            ("absurd_duration", self.absurd_duration),
            ("far_past", self.far_past),
            ("far_future", self.far_future),
            ("expired", self.expired),
            ("empty_title", self.empty_title),
            ("unprintable_title", self.unprintable_title),
            ("overlap", self.overlap),
            ("duplicate", self.duplicate),
            ("caps_normalised", self.caps_normalised),
            ("truncated", self.truncated),
            ("wipeout", self.wipeout),
            ("over_budget", self.over_budget),
            ("too_many", self.too_many),
        ]
    }
}

/// What one `Store::replace` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The part was stored (this many events).
    Stored(usize),
    /// Same events as the stored part: nothing changed.
    Unchanged,
    /// Refused as a wipe-out; the last good part stays.
    Wipeout,
    /// Refused: too many channels or parts.
    TooMany,
}

#[derive(Debug)]
struct Part {
    events: Vec<Event>,
    bytes: usize,
    /// Since when a shrunk version has kept arriving (wipe-out hold).
    shrunk_since: Option<i64>,
}

#[derive(Debug, Default)]
struct Channel {
    parts: BTreeMap<PartKey, Part>,
}

/// A raw event before validation (times may be undefined).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawEvent {
    pub event_id: u16,
    pub start: Option<i64>,
    pub duration: Option<u32>,
    pub title: String,
    pub subtitle: String,
    pub description: String,
    pub language: Option<String>,
    pub content: Vec<u8>,
    pub min_age: Option<u8>,
}

#[derive(Debug)]
pub struct Store {
    limits: Limits,
    channels: BTreeMap<String, Channel>,
    bytes: usize,
    pub rejects: Rejects,
    /// The merge order for every channel (empty: `PartKey` order).
    priority: Vec<Origin>,
    /// Channels with their own order.
    channel_priority: BTreeMap<String, Vec<Origin>>,
    /// Bumped by every change of what `guide` returns (a reader's cache
    /// key: `generation`).
    generation: u64,
}

impl Store {
    pub fn new(limits: Limits) -> Store {
        Store {
            limits,
            channels: BTreeMap::new(),
            bytes: 0,
            rejects: Rejects::default(),
            priority: Vec::new(),
            channel_priority: BTreeMap::new(),
            generation: 0,
        }
    }

    /// The merge order of `channel`'s parts (every channel's with `None`):
    /// earlier origins win where events overlap. Origins left out come
    /// after the listed ones, in `PartKey` order; a repeated one counts at
    /// its first place. An empty order for a channel goes back to the
    /// every-channel order.
    pub fn set_priority(&mut self, channel: Option<&str>, order: &[Origin]) {
        self.generation += 1;
        let mut o: Vec<Origin> = Vec::with_capacity(order.len());
        for x in order {
            if !o.contains(x) {
                o.push(*x);
            }
        }
        match channel {
            None => self.priority = o,
            Some(c) if o.is_empty() => {
                self.channel_priority.remove(c);
            }
            Some(c) => {
                self.channel_priority.insert(c.to_string(), o);
            }
        }
    }

    /// The merge order in force for `channel`.
    pub fn priority(&self, channel: &str) -> &[Origin] {
        self.channel_priority.get(channel).unwrap_or(&self.priority)
    }

    /// Changes whenever what `guide` returns may have changed (parts
    /// stored, events expired or evicted, the merge order): a rendered
    /// guide of an older generation is stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A new budget (a reload): a smaller one evicts the furthest-future
    /// events of any channel until the store fits (counted in
    /// `over_budget`).
    pub fn set_budget(&mut self, bytes: usize) {
        self.generation += 1;
        self.limits.budget_bytes = bytes;
        while self.bytes > bytes {
            let furthest = self
                .channels
                .iter()
                .flat_map(|(name, c)| {
                    c.parts.iter().filter_map(move |(k, p)| {
                        p.events.last().map(|e| (e.start, name.clone(), *k))
                    })
                })
                .max_by_key(|(s, _, _)| *s);
            let Some((_, name, k)) = furthest else { break };
            let Some(p) = self
                .channels
                .get_mut(&name)
                .and_then(|c| c.parts.get_mut(&k))
            else {
                break;
            };
            if let Some(e) = p.events.pop() {
                let f = e.footprint();
                p.bytes -= f;
                self.bytes -= f;
                self.rejects.over_budget += 1;
            }
        }
    }

    /// The events' footprint (`Event::footprint`), always ≤ the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn events(&self) -> usize {
        self.channels
            .values()
            .flat_map(|c| c.parts.values())
            .map(|p| p.events.len())
            .sum()
    }

    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    /// Validate `raw` into the events a part would hold, counting every
    /// drop: sorted by start, no overlap, no duplicate.
    pub fn validate(&mut self, raw: Vec<RawEvent>, now: i64) -> Vec<Event> {
        let l = &self.limits;
        let r = &mut self.rejects;
        let mut out: Vec<Event> = Vec::with_capacity(raw.len());
        for e in raw {
            let (Some(start), Some(duration)) = (e.start, e.duration) else {
                r.undefined_time += 1;
                continue;
            };
            if duration == 0 {
                r.zero_duration += 1;
                continue;
            }
            if duration > l.max_duration {
                r.absurd_duration += 1;
                continue;
            }
            let end = start.saturating_add(duration as i64);
            if end < now.saturating_sub(l.max_past) {
                r.far_past += 1;
                continue;
            }
            if start > now.saturating_add(l.max_future) {
                r.far_future += 1;
                continue;
            }
            if end < now.saturating_sub(l.keep_past) {
                r.expired += 1;
                continue;
            }
            let mut title = clean_name(&e.title);
            if title.is_empty() {
                r.empty_title += 1;
                continue;
            }
            if mostly_unprintable(&title) {
                r.unprintable_title += 1;
                continue;
            }
            if l.normalise_caps {
                if let Some(t) = normalise_caps(&title) {
                    title = t;
                    r.caps_normalised += 1;
                }
            }
            let mut subtitle = clean_line(&e.subtitle, usize::MAX);
            if cut(&mut subtitle, MAX_SUBTITLE_BYTES) {
                r.truncated += 1;
            }
            let mut description = clean_text(&e.description);
            if cut(&mut description, MAX_DESCRIPTION_BYTES) {
                r.truncated += 1;
            }
            let mut language = [0u8; 3];
            if let Some(lang) = e.language.as_deref() {
                let b = lang.as_bytes();
                if b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic) {
                    for (d, s) in language.iter_mut().zip(b) {
                        *d = s.to_ascii_lowercase();
                    }
                }
            }
            let mut content = [0u8; 3];
            for (d, s) in content
                .iter_mut()
                .zip(e.content.iter().filter(|&&c| c != 0))
            {
                *d = *s;
            }
            out.push(Event {
                event_id: e.event_id,
                start,
                duration,
                title: title.into(),
                subtitle: subtitle.into(),
                description: description.into(),
                language,
                content,
                min_age: e.min_age.unwrap_or(0),
            });
        }
        // Stable: of two events at one start, the first sent is kept.
        out.sort_by_key(|e| e.start);
        let mut kept: Vec<Event> = Vec::with_capacity(out.len());
        for e in out {
            if let Some(prev) = kept.last() {
                if prev.start == e.start && prev.title == e.title {
                    r.duplicate += 1;
                    continue;
                }
                if e.start < prev.end() {
                    r.overlap += 1;
                    continue;
                }
            }
            kept.push(e);
        }
        kept
    }

    /// Validate `raw` and replace `channel`'s part `key` with it.
    pub fn replace_raw(
        &mut self,
        channel: &str,
        key: PartKey,
        raw: Vec<RawEvent>,
        now: i64,
    ) -> Outcome {
        let events = self.validate(raw, now);
        self.replace(channel, key, events, now)
    }

    /// Replace `channel`'s part `key` with validated `events` (sorted, no
    /// overlap: `validate`'s output).
    pub fn replace(
        &mut self,
        channel: &str,
        key: PartKey,
        mut events: Vec<Event>,
        now: i64,
    ) -> Outcome {
        self.expire(now);
        if !self.channels.contains_key(channel) {
            if self.channels.len() >= self.limits.max_channels {
                self.rejects.too_many += 1;
                return Outcome::TooMany;
            }
            self.channels
                .insert(channel.to_string(), Channel::default());
        }
        let Some(ch) = self.channels.get_mut(channel) else {
            return Outcome::TooMany;
        };
        if !ch.parts.contains_key(&key) && ch.parts.len() >= MAX_PARTS {
            self.rejects.too_many += 1;
            return Outcome::TooMany;
        }
        // Events already over (kept as history) do not count either way: a
        // broadcaster drops past segments as the day goes by.
        let upcoming = |v: &[Event]| v.iter().filter(|e| e.end() > now).count();
        if let Some(old) = ch.parts.get_mut(&key) {
            if old.events == events {
                old.shrunk_since = None;
                return Outcome::Unchanged;
            }
            let (was, is) = (upcoming(&old.events), upcoming(&events));
            let l = &self.limits;
            if was >= l.wipeout_min_events && (is as f32) < was as f32 * l.wipeout_ratio {
                let since = *old.shrunk_since.get_or_insert(now);
                if now.saturating_sub(since) < l.wipeout_hold {
                    self.rejects.wipeout += 1;
                    return Outcome::Wipeout;
                }
            }
        }
        let old_bytes = ch.parts.get(&key).map_or(0, |p| p.bytes);
        let mut bytes: usize = events.iter().map(Event::footprint).sum();
        // Room: the old part goes; then evict the furthest-future events of
        // any channel (this part's new events included) until it fits.
        let budget = self.limits.budget_bytes;
        while self.bytes - old_bytes + bytes > budget {
            let furthest_other = self
                .channels
                .iter()
                .flat_map(|(name, c)| {
                    c.parts
                        .iter()
                        .filter(move |(k, _)| !(name == channel && **k == key))
                        .filter_map(move |(k, p)| {
                            p.events.last().map(|e| (e.start, name.clone(), *k))
                        })
                })
                .max_by_key(|(s, _, _)| *s);
            let own = events.last().map(|e| e.start);
            match (furthest_other, own) {
                (Some((s, name, k)), o) if o.is_none_or(|o| s > o) => {
                    let Some(p) = self
                        .channels
                        .get_mut(&name)
                        .and_then(|c| c.parts.get_mut(&k))
                    else {
                        break;
                    };
                    if let Some(e) = p.events.pop() {
                        let f = e.footprint();
                        p.bytes -= f;
                        self.bytes -= f;
                        self.rejects.over_budget += 1;
                    }
                }
                (_, Some(_)) => {
                    if let Some(e) = events.pop() {
                        bytes -= e.footprint();
                        self.rejects.over_budget += 1;
                    }
                }
                (_, None) => break,
            }
        }
        let n = events.len();
        let Some(ch) = self.channels.get_mut(channel) else {
            return Outcome::TooMany;
        };
        self.bytes = self.bytes - old_bytes + bytes;
        ch.parts.insert(
            key,
            Part {
                events,
                bytes,
                shrunk_since: None,
            },
        );
        self.generation += 1;
        Outcome::Stored(n)
    }

    /// Drop events ended more than `keep_past` ago (counted as `expired`).
    pub fn expire(&mut self, now: i64) {
        let limit = now.saturating_sub(self.limits.keep_past);
        for c in self.channels.values_mut() {
            for p in c.parts.values_mut() {
                let gone = p.events.iter().take_while(|e| e.end() < limit).count();
                if gone > 0 {
                    let f: usize = p.events.drain(..gone).map(|e| e.footprint()).sum();
                    p.bytes -= f;
                    self.bytes -= f;
                    self.rejects.expired += gone as u64;
                    self.generation += 1;
                }
            }
        }
    }

    /// Forget a channel (removed from the config).
    pub fn remove_channel(&mut self, channel: &str) {
        self.generation += 1;
        if let Some(c) = self.channels.remove(channel) {
            self.bytes -= c.parts.values().map(|p| p.bytes).sum::<usize>();
        }
    }

    /// `channel`'s guide between `from` and `to` (events overlapping the
    /// range), parts merged by priority, sorted by start.
    pub fn guide(&self, channel: &str, from: i64, to: i64) -> Vec<&Event> {
        let Some(c) = self.channels.get(channel) else {
            return Vec::new();
        };
        let order = self.priority(channel);
        let rank = |k: &PartKey| {
            let o = k.origin();
            (
                order.iter().position(|x| *x == o).unwrap_or(order.len()),
                *k,
            )
        };
        let mut parts: Vec<(&PartKey, &Part)> = c.parts.iter().collect();
        parts.sort_by_key(|(k, _)| rank(k));
        let mut taken: Vec<&Event> = Vec::new();
        for (_, p) in parts {
            let before = taken.len();
            for e in &p.events {
                if e.end() <= from || e.start >= to {
                    continue;
                }
                let clash = taken[..before]
                    .iter()
                    .any(|t| e.start < t.end() && t.start < e.end());
                if !clash {
                    taken.push(e);
                }
            }
        }
        taken.sort_by_key(|e| e.start);
        taken
    }

    /// Check what this module promises of what it holds (for the fuzz
    /// targets and tests): `bytes` is the sum of the events' footprints and
    /// within the budget; at most `max_channels` channels and `MAX_PARTS`
    /// parts each; every part's events have a duration in
    /// 1..=`max_duration`, are sorted by start without overlap, have a
    /// title, texts within their maxima, a lowercase ISO 639 code or none.
    /// The error names the channel and part that broke which promise.
    pub fn check(&self) -> Result<(), String> {
        let l = &self.limits;
        if self.channels.len() > l.max_channels {
            return Err(format!(
                "{} channels, max_channels {}",
                self.channels.len(),
                l.max_channels
            ));
        }
        let mut total = 0usize;
        for (name, c) in &self.channels {
            if c.parts.len() > MAX_PARTS {
                return Err(format!("channel {name:?}: {} parts", c.parts.len()));
            }
            for (k, p) in &c.parts {
                let at = |what: String| format!("channel {name:?} part {k:?}: {what}");
                let f: usize = p.events.iter().map(Event::footprint).sum();
                if f != p.bytes {
                    return Err(at(format!("bytes {} but footprints sum to {f}", p.bytes)));
                }
                total += f;
                let mut prev: Option<&Event> = None;
                for e in &p.events {
                    if e.duration == 0 || e.duration > l.max_duration || e.end() <= e.start {
                        return Err(at(format!("event at {} lasts {}", e.start, e.duration)));
                    }
                    if let Some(q) = prev {
                        if e.start < q.end() {
                            return Err(at(format!(
                                "event at {} overlaps the one at {} (ending {})",
                                e.start,
                                q.start,
                                q.end()
                            )));
                        }
                    }
                    if e.title.is_empty()
                        || e.subtitle.len() > MAX_SUBTITLE_BYTES
                        || e.description.len() > MAX_DESCRIPTION_BYTES
                    {
                        return Err(at(format!(
                            "event at {}: title {} bytes, subtitle {}, description {}",
                            e.start,
                            e.title.len(),
                            e.subtitle.len(),
                            e.description.len()
                        )));
                    }
                    if e.language != [0; 3] && !e.language.iter().all(u8::is_ascii_lowercase) {
                        return Err(at(format!(
                            "event at {}: language {:?}",
                            e.start, e.language
                        )));
                    }
                    prev = Some(e);
                }
            }
        }
        if total != self.bytes {
            return Err(format!("bytes {} but the parts hold {total}", self.bytes));
        }
        if self.bytes > l.budget_bytes {
            return Err(format!(
                "bytes {} over the budget {}",
                self.bytes, l.budget_bytes
            ));
        }
        Ok(())
    }

    /// Programmes starting in `[now, now + secs)` plus the one running at
    /// `now`: the coverage figure (`capbox_epg_programmes_next_12h`).
    pub fn coverage(&self, channel: &str, now: i64, secs: i64) -> usize {
        self.guide(channel, now, now.saturating_add(secs)).len()
    }
}

/// More than a third of the characters are U+FFFD or DVB control codes: the
/// text was decoded with the wrong character table.
fn mostly_unprintable(s: &str) -> bool {
    let (mut bad, mut all) = (0usize, 0usize);
    for c in s.chars() {
        all += 1;
        if c == '\u{FFFD}' || ('\u{E000}'..='\u{F8FF}').contains(&c) {
            bad += 1;
        }
    }
    bad * 3 > all
}

/// A description: control characters dropped except line breaks, runs of
/// blank lines and spaces collapsed, ends trimmed.
fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_DESCRIPTION_BYTES + 4));
    for line in s.split('\n') {
        let l = clean_line(line, usize::MAX);
        if l.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&l);
        if out.len() > MAX_DESCRIPTION_BYTES {
            break;
        }
    }
    out
}

/// Cut `s` to at most `max` bytes at a character boundary; whether it cut.
fn cut(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    s.truncate(i);
    true
}

/// A title sent all in capitals ("THE EVENING NEWS"), rewritten in title
/// case ("The Evening News"); `None` when the title has lower-case letters
/// (the broadcaster chose its case) or fewer than 8 letters (an acronym or a short name:
/// "CNN", "NBA LIVE" stays). Words of up to 4 letters without a vowel stay
/// capitals (acronyms: "BBC", "NFL", "TV"), as do Roman numerals ("II",
/// "XIV"). Normalised rather than flagged: a viewer reads the guide, not a
/// flag, and capitals read as shouting; the counter tells the operator.
const ROMAN: [&str; 12] = [
    "II", "III", "IV", "VI", "VII", "VIII", "IX", "XI", "XII", "XIII", "XIV", "XV",
];

pub fn normalise_caps(title: &str) -> Option<String> {
    let letters = title.chars().filter(|c| c.is_alphabetic()).count();
    if letters < 8 || title.chars().any(|c| c.is_lowercase()) {
        return None;
    }
    let cased = title.chars().filter(|c| c.is_uppercase()).count();
    if cased * 2 < letters {
        return None; // mostly uncased script (CJK…): leave it
    }
    let mut out = String::with_capacity(title.len());
    for (i, word) in title.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let alpha: String = word.chars().filter(|c| c.is_alphabetic()).collect();
        let vowel = alpha
            .chars()
            .any(|c| "AEIOUYÀÁÂÄÅÆÈÉÊËÌÍÎÏÒÓÔÖØÙÚÛÜАЕЁИОУЫЭЮЯΑΕΗΙΟΥΩ".contains(c));
        let roman = ROMAN.contains(&alpha.as_str());
        if (alpha.chars().count() <= 4 && !vowel) || roman {
            out.push_str(word);
            continue;
        }
        // Per hyphenated piece ("X-MEN" → "X-Men"): the first letter stays,
        // the rest goes through str::to_lowercase (Greek final sigma).
        for (j, piece) in word.split('-').enumerate() {
            if j > 0 {
                out.push('-');
            }
            match piece.char_indices().find(|(_, c)| c.is_alphabetic()) {
                Some((at, c)) => {
                    let rest = at + c.len_utf8();
                    out.push_str(&piece[..rest]);
                    out.push_str(&piece[rest..].to_lowercase());
                }
                None => out.push_str(piece),
            }
        }
    }
    (out != title).then_some(out)
}

#[cfg(test)]
mod tests;
