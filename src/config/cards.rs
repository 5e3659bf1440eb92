//! `[cards]` and `[[card]]`: smart cards over PC/SC (see
//! `crate::ca::cards`). A child of `walk` so it reads the tree with the
//! same walker and reports errors the same way (`file:line: key: …`).
//!
//! ```toml
//! [cards]
//! ecm_timeout_ms = 1000   # 50..=30000: no answer by then = card not answering
//! queue_depth = 8         # 1..=256 jobs waiting per card, more are refused
//!
//! [[card]]
//! reader = "Virtual PCD 00 00"   # substring of the PC/SC reader name
//! driver = "testca"
//! caid = 0xFFFE                  # optional: CA_system_id to bind, else the card's
//! ecm_timeout_ms = 1500          # optional, else [cards]'s
//! ```

use super::{Table, Walker};
use crate::config::node::Node;

/// `[cards]` with its `[[card]]` entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardsConfig {
    /// `[cards] enabled`; default true when `[cards]` or `[[card]]` is
    /// written, else false (a box without readers runs no card manager).
    pub enabled: bool,
    /// `ecm_timeout_ms`, default 1000, 50..=30000.
    pub ecm_timeout_ms: u64,
    /// `queue_depth`, default 8, 1..=256: ECMs/EMMs waiting per card.
    pub queue_depth: usize,
    /// `[[card]]` in file order; a reader matching none is auto-detected.
    pub cards: Vec<CardConfig>,
}

impl Default for CardsConfig {
    fn default() -> CardsConfig {
        CardsConfig {
            enabled: false,
            ecm_timeout_ms: 1000,
            queue_depth: 8,
            cards: Vec::new(),
        }
    }
}

/// One `[[card]]`: which driver the card in a reader gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardConfig {
    /// `reader`: a substring of the PC/SC reader name (first entry wins).
    pub reader: String,
    /// `driver`: one of `crate::ca::cards::DRIVERS`.
    pub driver: String,
    /// `caid`: bind the card to this CA_system_id instead of the one it
    /// reports.
    pub caid: Option<u16>,
    pub ecm_timeout_ms: Option<u64>,
}

const CARDS_KEYS: &[&str] = &["enabled", "ecm_timeout_ms", "queue_depth"];
const CARD_KEYS: &[&str] = &["reader", "driver", "caid", "ecm_timeout_ms"];

/// Takes `[cards]` and `[[card]]` from the document's top table.
pub(super) fn cards(w: &mut Walker, root: &mut Table) -> CardsConfig {
    let top = w.take(root, "cards");
    let list = w.take(root, "card");
    let mut c = CardsConfig {
        enabled: top.is_some() || list.is_some(),
        ..CardsConfig::default()
    };
    if let Some(f) = top {
        if let Some(mut t) = w.table(f.sp, &f.path, f.line) {
            c.enabled = w.boolean(&mut t, "enabled", c.enabled);
            c.ecm_timeout_ms =
                w.int(&mut t, "ecm_timeout_ms", 50, 30_000, 1000, "milliseconds") as u64;
            c.queue_depth = w.int(&mut t, "queue_depth", 1, 256, 8, "jobs") as usize;
            w.finish(t, CARDS_KEYS);
        }
    }
    let Some(f) = list else { return c };
    let Node::Array(items) = f.node else {
        w.wrong_type(&f, "an array of tables: write [[card]], not [card]");
        return c;
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("card[{i}]");
        let Some(mut t) = w.table(item, &path, f.line) else {
            continue;
        };
        let line = t.line;
        let reader = match w.string(&mut t, "reader", "a substring of the reader name") {
            Some((s, _)) if !s.is_empty() => Some(s),
            Some((_, rf)) => {
                w.error(
                    rf.line,
                    &rf.path,
                    "empty; expected a substring of the reader name such as \"Virtual PCD 00 00\""
                        .into(),
                );
                None
            }
            None => {
                if !t.entries.iter().any(|e| e.key.name == "reader") {
                    w.error(line, &format!("{path}.reader"), "missing; expected a substring of the reader name such as \"Virtual PCD 00 00\"".into());
                }
                None
            }
        };
        let drivers = crate::ca::cards::DRIVERS;
        let driver = match w.string(&mut t, "driver", "a driver name") {
            Some((s, _)) if drivers.contains(&s.as_str()) => Some(s),
            Some((s, df)) => {
                let msg = format!(
                    "unknown driver {s:?}; expected one of: {}",
                    drivers.join(", ")
                );
                w.error(df.line, &df.path, msg);
                None
            }
            None => {
                if !t.entries.iter().any(|e| e.key.name == "driver") {
                    let msg = format!("missing; expected one of: {}", drivers.join(", "));
                    w.error(line, &format!("{path}.driver"), msg);
                }
                None
            }
        };
        let has_caid = t.entries.iter().any(|e| e.key.name == "caid");
        let caid = w.int(&mut t, "caid", 1, 0xFFFF, 0, "a CA_system_id") as u16;
        let has_timeout = t.entries.iter().any(|e| e.key.name == "ecm_timeout_ms");
        let timeout = w.int(&mut t, "ecm_timeout_ms", 50, 30_000, 1000, "milliseconds") as u64;
        w.finish(t, CARD_KEYS);
        if let (Some(reader), Some(driver)) = (reader, driver) {
            c.cards.push(CardConfig {
                reader,
                driver,
                caid: (has_caid && caid != 0).then_some(caid),
                ecm_timeout_ms: has_timeout.then_some(timeout),
            });
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const CH: &str = "\n[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"x.ts\"\n";

    #[test]
    fn defaults_and_entries() {
        let c = parse(CH, "t.toml", std::path::Path::new("/")).unwrap();
        assert!(!c.cards.enabled);
        let text = format!(
            "[cards]\necm_timeout_ms = 500\n\n[[card]]\nreader = \"PCD 00 00\"\ndriver = \"testca\"\ncaid = 0xFFFE\n{CH}"
        );
        let c = parse(&text, "t.toml", std::path::Path::new("/")).unwrap();
        assert!(c.cards.enabled);
        assert_eq!(c.cards.ecm_timeout_ms, 500);
        assert_eq!(c.cards.queue_depth, 8);
        assert_eq!(c.cards.cards.len(), 1);
        assert_eq!(c.cards.cards[0].caid, Some(0xFFFE));
        assert_eq!(c.cards.cards[0].ecm_timeout_ms, None);
    }

    #[test]
    fn errors_name_line_and_key() {
        let text = format!(
            "[cards]\nqueue_depth = 0\n\n[[card]]\nreader = \"x\"\ndriver = \"irdeto\"\ncolor = 1\n{CH}"
        );
        let errs = parse(&text, "t.toml", std::path::Path::new("/")).unwrap_err();
        let s: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert!(
            s.iter()
                .any(|e| e.starts_with("t.toml:2: cards.queue_depth:")),
            "{s:?}"
        );
        assert!(
            s.iter()
                .any(|e| e.starts_with("t.toml:6: card[0].driver: unknown driver")),
            "{s:?}"
        );
        assert!(
            s.iter()
                .any(|e| e.starts_with("t.toml:7: card[0].color: unknown key")),
            "{s:?}"
        );
    }
}
