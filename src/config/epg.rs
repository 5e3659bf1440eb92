//! `[epg]`, `[[xmltv]]` and `[[audience]]`: the programme guide (issue 15,
//! `crate::epg`). A child of `walk` so it uses the same `Walker` (every
//! error names `file:line: key`).
//!
//! ```toml
//! [epg]
//! enabled = true          # EIT collected from every input, /epg.xml served
//! budget_mib = 44         # the store's memory budget (200 channels × 7 days)
//! charset = "iso-8859-9"  # strings without a selector (per source: epg_charset)
//! priority = "air"        # "air": EIT wins where the guides overlap; "operator": XMLTV
//! language = "fra"        # an event described in several languages: this one
//!
//! [[xmltv]]
//! name = "operator"
//! url = "http://guide.example/xmltv.xml"   # or file = "guide.xml"; gzip too (.xml.gz)
//! every_h = 6
//! map = { "bbc1.uk" = "bbc1" }   # source channel id → capbox channel name
//!
//! [[audience]]
//! name = "miami"
//! tz = "America/New_York"
//! ```

use super::*;

/// `[epg] priority`: whose guide wins where the two overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EpgPriority {
    /// The broadcaster's EIT (default: it follows a late programme).
    #[default]
    Air,
    /// The operator's XMLTV (an operator who curates the guide).
    Operator,
}

/// `[epg]`, with the `[[xmltv]]` sources and `[[audience]]`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpgConfig {
    /// `enabled`, default true: EIT collected, XMLTV fetched, `/epg.xml`
    /// served. Off: no guide (404) and nothing held.
    pub enabled: bool,
    /// `budget_mib`, default 44, 1..=4096: the store's memory budget; the
    /// default holds 200 channels × 8 days (7 ahead, 1 behind) of 48
    /// events with descriptions (`epg::store::Limits::default`).
    pub budget_mib: u64,
    /// `charset`, default none (EN 300 468: ISO 6937): the character table
    /// of EIT strings that carry no selector byte, for every source that
    /// has no `epg_charset` of its own.
    pub charset: Option<crate::ts::text::Charset>,
    /// `priority`, default `"air"`.
    pub priority: EpgPriority,
    /// `language`, default none (the first the broadcaster lists): the ISO
    /// 639-2 code preferred when an event is described in several.
    pub language: Option<String>,
    /// `[[xmltv]]` in file order.
    pub xmltv: Vec<XmltvConfig>,
    /// `[[audience]]` in file order.
    pub audiences: Vec<AudienceConfig>,
}

impl Default for EpgConfig {
    fn default() -> EpgConfig {
        EpgConfig {
            enabled: true,
            budget_mib: DEFAULT_BUDGET_MIB,
            charset: None,
            priority: EpgPriority::Air,
            language: None,
            xmltv: Vec::new(),
            audiences: Vec::new(),
        }
    }
}

/// `budget_mib` default: `epg::store::Limits::default().budget_bytes`
/// rounded up to MiB (46 080 000 bytes).
pub const DEFAULT_BUDGET_MIB: u64 = 44;

impl EpgConfig {
    pub fn budget_bytes(&self) -> usize {
        (self.budget_mib as usize).saturating_mul(1 << 20)
    }
}

/// Where an `[[xmltv]]` source is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XmltvLocation {
    /// `url`: `http://host[:port]/path` (no TLS).
    Url(String),
    /// `file`: a path, relative to the config file's directory.
    File(PathBuf),
}

/// One `[[xmltv]]`: an operator's XMLTV guide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmltvConfig {
    /// `name`, required, unique, `[a-z0-9._-]{1,64}`: the `source` label in
    /// metrics and status.
    pub name: String,
    /// `url` or `file`, exactly one. The document may be gzip-compressed
    /// (found by its magic bytes, inflated under the 64 MiB cap: see
    /// `epg::fetch`).
    pub location: XmltvLocation,
    /// `every_h`, default 6, 1..=168: hours between fetches (never more
    /// often; errors back off from there).
    pub every_h: u32,
    /// `map`, default empty: source channel id → capbox channel name.
    /// Ids not in the map match a channel whose `tvg_id` (else `name`)
    /// equals them.
    pub map: BTreeMap<String, String>,
    pub line: usize,
    /// Key path, e.g. `xmltv[0]`.
    pub key: String,
}

/// One `[[audience]]`: viewers in another time zone (`/epg.xml?audience=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudienceConfig {
    /// `name`, required, unique, `[a-z0-9._-]{1,64}`.
    pub name: String,
    /// `tz`, required: an IANA time zone name (`America/New_York`), checked
    /// against the database bundled into capbox.
    pub tz: String,
    pub line: usize,
}

const EPG_KEYS: &[&str] = &["enabled", "budget_mib", "charset", "priority", "language"];
const XMLTV_KEYS: &[&str] = &["name", "url", "file", "every_h", "map"];
const AUDIENCE_KEYS: &[&str] = &["name", "tz"];

/// A charset name for `text::charset_by_name`, or the error words.
pub(super) fn charset(
    w: &mut Walker,
    t: &mut Table,
    key: &str,
) -> Option<crate::ts::text::Charset> {
    let what = "a DVB character table such as \"iso-8859-9\", \"iso-6937\" or \"utf-8\"";
    let (s, f) = w.string(t, key, what)?;
    match crate::ts::text::charset_by_name(&s) {
        Some(c) => Some(c),
        None => {
            w.error(
                f.line,
                &f.path,
                format!(
                    "{s:?} is not a character table capbox knows; expected {what} \
                     (iso-8859-1..16 but 12, iso-6937, utf-8, ucs-2)"
                ),
            );
            None
        }
    }
}

/// Reads `[epg]`, `[[xmltv]]` and `[[audience]]` from the top table;
/// `channels` for the map's cross-check.
pub(super) fn epg(
    w: &mut Walker,
    root: &mut Table,
    base_dir: &Path,
    channels: &[ChannelConfig],
) -> EpgConfig {
    let mut c = EpgConfig::default();
    if let Some(f) = w.take(root, "epg") {
        if let Some(mut t) = open(w, &f) {
            c.enabled = w.boolean(&mut t, "enabled", c.enabled);
            c.budget_mib = w.int(
                &mut t,
                "budget_mib",
                1,
                4096,
                DEFAULT_BUDGET_MIB as i64,
                "MiB (the default 44 holds 200 channels × 7 days)",
            ) as u64;
            c.charset = charset(w, &mut t, "charset");
            let pwhat = "\"air\" (the broadcaster's EIT wins) or \"operator\" (the XMLTV wins)";
            if let Some((s, pf)) = w.string(&mut t, "priority", pwhat) {
                match s.as_str() {
                    "air" => c.priority = EpgPriority::Air,
                    "operator" => c.priority = EpgPriority::Operator,
                    _ => w.error(pf.line, &pf.path, format!("{s:?}; expected {pwhat}")),
                }
            }
            let lwhat = "an ISO 639-2 language code of 3 letters such as \"eng\"";
            if let Some((s, lf)) = w.string(&mut t, "language", lwhat) {
                if s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()) {
                    c.language = Some(s.to_ascii_lowercase());
                } else {
                    w.error(lf.line, &lf.path, format!("{s:?}; expected {lwhat}"));
                }
            }
            w.finish(t, EPG_KEYS);
        }
    }
    c.xmltv = xmltv(w, root, base_dir, channels);
    c.audiences = audiences(w, root);
    c
}

/// The items of an array of tables `[[key]]` and the line of the key, or
/// None (absent, or not an array: reported).
fn array_of_tables<'a>(
    w: &mut Walker,
    root: &mut Table<'a>,
    key: &str,
) -> Option<(usize, &'a [SpNode])> {
    let f = w.take(root, key)?;
    match f.node {
        Node::Array(items) => Some((f.line, items.as_slice())),
        _ => {
            w.wrong_type(
                &f,
                &format!("an array of tables: write [[{key}]], not [{key}]"),
            );
            None
        }
    }
}

/// `name` of an `[[xmltv]]` or `[[audience]]`: required, a name, unique.
fn unique_name(
    w: &mut Walker,
    t: &mut Table,
    path: &str,
    seen: &mut BTreeMap<String, usize>,
    example: &str,
) -> Option<String> {
    let what = format!("a name such as \"{example}\" ([a-z0-9._-], at most 64)");
    match w.string(t, "name", &what) {
        None => {
            if !t.entries.iter().any(|e| e.key.name == "name") {
                w.error(
                    t.line,
                    &join(path, "name"),
                    format!("missing; expected {what}"),
                );
            }
            None
        }
        Some((n, nf)) => {
            if let Some(p) = name_problem(&n) {
                w.error(nf.line, &nf.path, format!("{p}; expected {what}"));
                return None;
            }
            if let Some(first) = seen.get(&n) {
                w.error(
                    nf.line,
                    &nf.path,
                    format!("{n:?} is defined twice (first at line {first}); names are unique"),
                );
                return None;
            }
            seen.insert(n.clone(), nf.line);
            Some(n)
        }
    }
}

fn xmltv(
    w: &mut Walker,
    root: &mut Table,
    base_dir: &Path,
    channels: &[ChannelConfig],
) -> Vec<XmltvConfig> {
    let mut out = Vec::new();
    let Some((fline, items)) = array_of_tables(w, root, "xmltv") else {
        return out;
    };
    let mut seen = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("xmltv[{i}]");
        let Some(mut t) = w.table(item, &path, fline) else {
            continue;
        };
        let name = unique_name(w, &mut t, &path, &mut seen, "operator");
        let has = |t: &Table, k: &str| t.entries.iter().any(|e| e.key.name == k);
        let lwhat = "url = \"http://host/guide.xml\" or file = \"guide.xml\"";
        if has(&t, "url") && has(&t, "file") {
            let line = t
                .entries
                .iter()
                .find(|e| e.key.name == "file")
                .map_or(t.line, |e| e.line);
            w.error(
                line,
                &join(&path, "file"),
                format!("both url and file given; expected one: {lwhat}"),
            );
        }
        let mut location = None;
        if let Some((u, uf)) = w.string(&mut t, "url", "an http:// URL") {
            let rest = u.strip_prefix("http://").unwrap_or("");
            let host = rest.split(['/', '?']).next().unwrap_or("");
            if u.starts_with("https://") {
                w.error(
                    uf.line,
                    &uf.path,
                    format!(
                        "{u:?}: capbox fetches over http:// only (no TLS); put the guide \
                         behind the site's tunnel, or fetch it with a timer and give file = …"
                    ),
                );
            } else if host.is_empty() || u.chars().any(|c| c.is_control() || c == ' ') {
                w.error(
                    uf.line,
                    &uf.path,
                    format!("{u:?} is not an http://host[:port]/path URL"),
                );
            } else {
                location = Some(XmltvLocation::Url(u));
            }
        }
        if let Some((p, pf)) = w.string(&mut t, "file", "a path") {
            if p.is_empty() || p.contains('\0') {
                w.error(
                    pf.line,
                    &pf.path,
                    "empty or not a path; expected a path to an XMLTV file".into(),
                );
            } else if location.is_none() {
                location = Some(XmltvLocation::File(base_dir.join(p)));
            }
        }
        if !has(&t, "url") && !has(&t, "file") {
            w.error(
                t.line,
                &join(&path, "url"),
                format!("missing; expected {lwhat}"),
            );
        }
        let every_h = w.int(
            &mut t,
            "every_h",
            1,
            168,
            6,
            "hours between fetches (a source polled more often blocks you)",
        ) as u32;
        let map = xmltv_map(w, &mut t, channels);
        let line = t.line;
        w.finish(t, XMLTV_KEYS);
        if let (Some(name), Some(location)) = (name, location) {
            out.push(XmltvConfig {
                name,
                location,
                every_h,
                map,
                line,
                key: path,
            });
        }
    }
    out
}

fn xmltv_map(
    w: &mut Walker,
    t: &mut Table,
    channels: &[ChannelConfig],
) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let Some(f) = w.take(t, "map") else {
        return map;
    };
    let what = "a table of source channel id = capbox channel name, such as map = { \"bbc1.uk\" = \"bbc1\" }";
    let Node::Table(entries) = f.node else {
        w.wrong_type(&f, what);
        return map;
    };
    for (k, v) in entries {
        let path = format!("{}.{:?}", f.path, k.name);
        let line = w.span_line(&k.span, w.span_line(&v.span, f.line));
        w.lines.insert(path.clone(), line);
        let Node::String(ch) = &v.node else {
            let msg = format!(
                "found {}; expected a capbox channel name (a string)",
                v.node.describe()
            );
            w.error(line, &path, msg);
            continue;
        };
        if !channels.iter().any(|c| &c.name == ch) {
            let names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();
            let msg = format!(
                "no channel {ch:?}; expected one of: {}",
                crate::source::runner::list_some(names.into_iter(), 16)
            );
            w.error(line, &path, msg);
            continue;
        }
        map.insert(k.name.clone(), ch.clone());
    }
    map
}

fn audiences(w: &mut Walker, root: &mut Table) -> Vec<AudienceConfig> {
    let mut out = Vec::new();
    let Some((fline, items)) = array_of_tables(w, root, "audience") else {
        return out;
    };
    let mut seen = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("audience[{i}]");
        let Some(mut t) = w.table(item, &path, fline) else {
            continue;
        };
        let name = unique_name(w, &mut t, &path, &mut seen, "miami");
        let twhat = "an IANA time zone name such as \"America/New_York\" or \"Europe/Paris\"";
        let tz = match w.string(&mut t, "tz", twhat) {
            None => {
                if !t.entries.iter().any(|e| e.key.name == "tz") {
                    w.error(
                        t.line,
                        &join(&path, "tz"),
                        format!("missing; expected {twhat}"),
                    );
                }
                None
            }
            Some((z, zf)) => match jiff::tz::TimeZone::get(&z) {
                Ok(_) => Some(z),
                Err(_) => {
                    w.error(
                        zf.line,
                        &zf.path,
                        format!(
                            "{z:?} is not in the time zone database; expected {twhat} \
                             (names are case-sensitive; offsets like \"UTC+5\" do not follow DST)"
                        ),
                    );
                    None
                }
            },
        };
        let line = t.line;
        w.finish(t, AUDIENCE_KEYS);
        if let (Some(name), Some(tz)) = (name, tz) {
            out.push(AudienceConfig { name, tz, line });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{EpgPriority, XmltvLocation};
    use crate::config::parse;
    use crate::ts::text::Charset;
    use std::path::Path;

    const CH: &str = "\n[[channel]]\nname = \"bbc1\"\ntvg_id = \"bbc1.uk\"\n[[channel.source]]\nfile = \"x.ts\"\n";

    fn errors(text: &str) -> Vec<String> {
        match parse(text, "t.toml", Path::new("/etc/capbox")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(CH, "t.toml", Path::new("/")).unwrap();
        assert!(c.epg.enabled);
        assert_eq!(c.epg.budget_mib, 44);
        // The default budget is the store's default, rounded up to MiB.
        let store = crate::epg::Limits::default().budget_bytes;
        assert!(c.epg.budget_bytes() >= store && c.epg.budget_bytes() - store < 1 << 20);
        assert_eq!(c.epg.priority, EpgPriority::Air);
        assert_eq!(c.epg.charset, None);
        assert!(c.epg.xmltv.is_empty() && c.epg.audiences.is_empty());
        assert_eq!(c.channels[0].sources[0].epg_charset, None);
    }

    #[test]
    fn values() {
        let text = format!(
            "[epg]\nenabled = false\nbudget_mib = 100\ncharset = \"iso-8859-9\"\npriority = \"operator\"\nlanguage = \"FRA\"\n\
             [[xmltv]]\nname = \"op\"\nurl = \"http://guide.example:8080/x.xml\"\nevery_h = 12\nmap = {{ \"BBC One\" = \"bbc1\" }}\n\
             [[xmltv]]\nname = \"local\"\nfile = \"guide.xml\"\n\
             [[audience]]\nname = \"miami\"\ntz = \"America/New_York\"\n{CH}epg_charset = \"iso-8859-7\"\n"
        );
        let c = parse(&text, "t.toml", Path::new("/etc/capbox")).unwrap();
        assert!(!c.epg.enabled);
        assert_eq!(c.epg.budget_mib, 100);
        assert_eq!(c.epg.charset, Some(Charset::Iso8859(9)));
        assert_eq!(c.epg.priority, EpgPriority::Operator);
        assert_eq!(c.epg.language.as_deref(), Some("fra"));
        assert_eq!(c.epg.xmltv.len(), 2);
        let x = &c.epg.xmltv[0];
        assert_eq!(
            x.location,
            XmltvLocation::Url("http://guide.example:8080/x.xml".into())
        );
        assert_eq!(x.every_h, 12);
        assert_eq!(x.map.get("BBC One").map(String::as_str), Some("bbc1"));
        assert_eq!(
            c.epg.xmltv[1].location,
            XmltvLocation::File("/etc/capbox/guide.xml".into())
        );
        assert_eq!(c.epg.xmltv[1].every_h, 6);
        assert_eq!(c.epg.audiences[0].tz, "America/New_York");
        assert_eq!(
            c.channels[0].sources[0].epg_charset,
            Some(Charset::Iso8859(7))
        );
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let text = format!(
            "[epg]\nbudget_mib = 0\ncharset = \"klingon\"\npriority = \"both\"\ncolour = 1\n\
             [[xmltv]]\nname = \"op\"\nurl = \"https://guide.example/x.xml\"\nevery_h = 0\n\
             [[xmltv]]\nname = \"op\"\nfile = \"a.xml\"\nmap = {{ \"x\" = \"nosuch\" }}\n\
             [[xmltv]]\nname = \"none\"\n\
             [[audience]]\nname = \"miami\"\ntz = \"America/Miami_Beach\"\n\
             [[audience]]\ntz = \"Europe/Paris\"\n{CH}"
        );
        let e = errors(&text);
        let has = |prefix: &str| {
            assert!(
                e.iter().any(|l| l.starts_with(prefix)),
                "no {prefix:?} in {e:#?}"
            );
        };
        has("t.toml:2: epg.budget_mib: 0 is out of range");
        has("t.toml:3: epg.charset: \"klingon\" is not a character table");
        has("t.toml:4: epg.priority: \"both\"; expected \"air\"");
        has("t.toml:5: epg.colour: unknown key");
        has("t.toml:8: xmltv[0].url: \"https://guide.example/x.xml\": capbox fetches over http:// only");
        has("t.toml:9: xmltv[0].every_h: 0 is out of range");
        has("t.toml:11: xmltv[1].name: \"op\" is defined twice (first at line 7)");
        has("t.toml:13: xmltv[1].map.\"x\": no channel \"nosuch\"; expected one of: bbc1");
        has("t.toml:14: xmltv[2].url: missing; expected url = ");
        has("t.toml:18: audience[0].tz: \"America/Miami_Beach\" is not in the time zone database");
        has("t.toml:19: audience[1].name: missing");
    }

    #[test]
    fn one_mux_one_charset() {
        let text = "[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"m.ts\"\nprogram = 1\nepg_charset = \"iso-8859-9\"\n\
                    [[channel]]\nname = \"b\"\n[[channel.source]]\nfile = \"m.ts\"\nprogram = 2\nepg_charset = \"iso-8859-7\"\n";
        let e = errors(text);
        assert!(
            e.iter().any(|l| l.starts_with("t.toml:12: channel[1].source[0].epg_charset: Iso8859(7), but channel[0].source[0].epg_charset says")),
            "{e:#?}"
        );
        let same = text.replace("8859-7", "8859-9");
        assert!(parse(&same, "t.toml", Path::new("/")).is_ok());
    }

    #[test]
    fn xmltv_written_as_a_table_is_refused() {
        let e = errors(&format!("[xmltv]\nname = \"a\"\n{CH}"));
        assert!(
            e.iter()
                .any(|l| l
                    .starts_with("t.toml:1: xmltv: found a table; expected an array of tables")),
            "{e:#?}"
        );
    }
}
