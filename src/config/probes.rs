//! `[[probe]]`: URLs checked the way a viewer gets them (see
//! `crate::monitor::check`). A child of `walk`, reporting errors the same
//! way (`file:line: key: …`).
//!
//! ```toml
//! [[probe]]
//! name = "news-out"                       # required, unique
//! url = "http://10.0.0.5:8080/live/news"  # required, plain http://
//!                                         # (#program=N: that program)
//! every_s = 300                           # 10..=86400: poll period
//! listen_s = 10                           # 1..=120: how long one check watches
//! timeout_s = 15                          # 1..=120: connect + first byte
//! ```

use super::{Table, Walker};
use crate::config::node::Node;

/// One `[[probe]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    pub name: String,
    pub url: String,
    /// `every_s`, default 300, 10..=86400.
    pub every_s: u64,
    /// `listen_s`, default 10, 1..=120.
    pub listen_s: u64,
    /// `timeout_s`, default 15, 1..=120.
    pub timeout_s: u64,
}

const PROBE_KEYS: &[&str] = &["name", "url", "every_s", "listen_s", "timeout_s"];

/// Takes `[[probe]]` from the document's top table.
pub(super) fn probes(w: &mut Walker, root: &mut Table) -> Vec<ProbeConfig> {
    let mut out: Vec<ProbeConfig> = Vec::new();
    // Every name written, valid entry or not, for the uniqueness check.
    let mut names: Vec<String> = Vec::new();
    let Some(f) = w.take(root, "probe") else {
        return out;
    };
    let Node::Array(items) = f.node else {
        w.wrong_type(&f, "an array of tables: write [[probe]], not [probe]");
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("probe[{i}]");
        let Some(mut t) = w.table(item, &path, f.line) else {
            continue;
        };
        let line = t.line;
        let name = match w.string(&mut t, "name", "a name such as \"news-out\"") {
            Some((s, nf)) if !valid_name(&s) => {
                w.error(
                    nf.line,
                    &nf.path,
                    format!("{s:?} is not a probe name; expected 1 to 64 letters, digits, '-', '_' or '.' such as \"news-out\""),
                );
                None
            }
            Some((s, nf)) if names.contains(&s) => {
                w.error(
                    nf.line,
                    &nf.path,
                    format!("{s:?} is used by another [[probe]]; expected a unique name"),
                );
                None
            }
            Some((s, _)) => {
                names.push(s.clone());
                Some(s)
            }
            None => {
                if !t.entries.iter().any(|e| e.key.name == "name") {
                    w.error(
                        line,
                        &format!("{path}.name"),
                        "missing; expected a name such as \"news-out\"".into(),
                    );
                }
                None
            }
        };
        let url = match w.string(
            &mut t,
            "url",
            "a URL such as \"http://10.0.0.5:8080/live/news\"",
        ) {
            Some((s, uf)) => match crate::source::remote::HttpUrl::parse(&s, false)
                .and_then(|_| crate::monitor::check::url_program(&s))
            {
                Ok(_) => Some(s),
                Err(e) => {
                    w.error(uf.line, &uf.path, e);
                    None
                }
            },
            None => {
                if !t.entries.iter().any(|e| e.key.name == "url") {
                    w.error(
                        line,
                        &format!("{path}.url"),
                        "missing; expected a URL such as \"http://10.0.0.5:8080/live/news\"".into(),
                    );
                }
                None
            }
        };
        let every_s = w.int(&mut t, "every_s", 10, 86_400, 300, "seconds") as u64;
        let listen_s = w.int(&mut t, "listen_s", 1, 120, 10, "seconds") as u64;
        let timeout_s = w.int(&mut t, "timeout_s", 1, 120, 15, "seconds") as u64;
        w.finish(t, PROBE_KEYS);
        if let (Some(name), Some(url)) = (name, url) {
            out.push(ProbeConfig {
                name,
                url,
                every_s,
                listen_s,
                timeout_s,
            });
        }
    }
    out
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;

    const CH: &str = "[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"/x.ts\"\n";

    #[test]
    fn defaults_and_entries() {
        let text = format!(
            "{CH}[[probe]]\nname = \"news-out\"\nurl = \"http://10.0.0.5:8080/live/news\"\n\
             [[probe]]\nname = \"b\"\nurl = \"http://h/x\"\nevery_s = 60\nlisten_s = 5\ntimeout_s = 3\n"
        );
        let c = parse(&text, "t.toml", Path::new("/")).unwrap();
        assert_eq!(c.probes.len(), 2);
        let p = &c.probes[0];
        assert_eq!(
            (p.name.as_str(), p.every_s, p.listen_s, p.timeout_s),
            ("news-out", 300, 10, 15)
        );
        let p = &c.probes[1];
        assert_eq!((p.every_s, p.listen_s, p.timeout_s), (60, 5, 3));
        let none = parse(CH, "t.toml", Path::new("/")).unwrap();
        assert!(none.probes.is_empty());
    }

    #[test]
    fn errors_name_key_and_line() {
        let text = format!(
            "{CH}[[probe]]\nname = \"x\"\nurl = \"https://h/x\"\n\
             [[probe]]\nname = \"x\"\nurl = \"http://h/y\"\nevery_s = 1\nlisten = 3\n\
             [[probe]]\nurl = \"http://h/z\"\n"
        );
        let errs = parse(&text, "t.toml", Path::new("/")).unwrap_err();
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let has = |needle: &str| all.iter().any(|e| e.contains(needle));
        assert!(
            has("t.toml:7: probe[0].url") && has("https is not supported"),
            "{all:?}"
        );
        assert!(
            has(":9: probe[1].name") && has("used by another"),
            "{all:?}"
        );
        assert!(has(":11: probe[1].every_s"), "{all:?}");
        assert!(has(":12: probe[1].listen"), "{all:?}");
        assert!(has(":13: probe[2].name") && has("missing"), "{all:?}");
    }
}
