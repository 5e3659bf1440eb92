//! A TOML document as a tree that keeps the byte span of every key and value.
//!
//! Owns the one place where capbox reads toml's private span protocol. We walk
//! this tree by hand (see `walk.rs`) instead of deriving `Deserialize` on the
//! config structs, because serde stops at the first error and does not say
//! which key it was in; the walk reports every error with its key path and
//! line. Promises: never panics; any TOML value deserializes into a `SpNode`.
//!
//! toml 0.8 hands out spans through the `serde_spanned` protocol: asking for a
//! struct with the magic name below yields a map of start, end and value. Keys
//! of dotted tables (`server.listen = …`) and implicit tables have no span; for
//! those toml falls back to plain values, which the visitors below also accept
//! (span `None`, and the walk uses the enclosing line instead).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;

// The `serde_spanned` 0.6 protocol (what `toml::Spanned` itself uses).
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
static SPANNED_FIELDS: [&str; 3] = [SPANNED_START, SPANNED_END, SPANNED_VALUE];
// The `toml_datetime` protocol: a datetime arrives as a one-entry map.
const DATETIME_FIELD: &str = "$__toml_private_datetime";

/// A value and, when toml knows it, the byte range it came from.
#[derive(Debug, Clone)]
pub(super) struct SpNode {
    pub span: Option<Range<usize>>,
    pub node: Node,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    /// Entries in document order (order matters for "first defined at").
    Table(Vec<(Key, SpNode)>),
    Array(Vec<SpNode>),
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
}

impl Node {
    /// Type and a short rendering of the value, e.g. `string "0x1f4"`.
    pub fn describe(&self) -> String {
        match self {
            Node::Table(_) => "a table".to_string(),
            Node::Array(_) => "an array".to_string(),
            Node::String(s) => {
                let short: String = s.chars().take(40).collect();
                let ell = if short.len() < s.len() { "…" } else { "" };
                format!("string {:?}{}", short, ell)
            }
            Node::Integer(i) => format!("integer {}", i),
            Node::Float(f) => format!("float {:?}", f),
            Node::Boolean(b) => format!("boolean {}", b),
            Node::Datetime(d) => format!("datetime {}", d),
        }
    }
}

/// A table key and, when toml knows it, its byte range.
#[derive(Debug, Clone)]
pub(super) struct Key {
    pub name: String,
    pub span: Option<Range<usize>>,
}

impl<'de> Deserialize<'de> for SpNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SpNode, D::Error> {
        d.deserialize_struct(SPANNED_NAME, &SPANNED_FIELDS, SpNodeVisitor)
    }
}

/// Deserializes the bare value inside a span envelope.
struct NodeSeed;

impl<'de> de::DeserializeSeed<'de> for NodeSeed {
    type Value = SpNode;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<SpNode, D::Error> {
        d.deserialize_any(SpNodeVisitor)
    }
}

struct SpNodeVisitor;

fn bare(node: Node) -> SpNode {
    SpNode { span: None, node }
}

impl<'de> Visitor<'de> for SpNodeVisitor {
    type Value = SpNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any TOML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<SpNode, E> {
        Ok(bare(Node::Boolean(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<SpNode, E> {
        Ok(bare(Node::Integer(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SpNode, E> {
        // TOML integers are i64; kept for completeness.
        i64::try_from(v)
            .map(|i| bare(Node::Integer(i)))
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<SpNode, E> {
        Ok(bare(Node::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<SpNode, E> {
        Ok(bare(Node::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<SpNode, E> {
        Ok(bare(Node::String(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SpNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<SpNode>()? {
            items.push(item);
        }
        Ok(bare(Node::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SpNode, A::Error> {
        // Three shapes arrive here: a span envelope, a datetime, or a table.
        let first: Option<Key> = map.next_key()?;
        let Some(first) = first else {
            return Ok(bare(Node::Table(Vec::new())));
        };
        match first.name.as_str() {
            SPANNED_START => {
                let start: usize = map.next_value()?;
                let mut end: Option<usize> = None;
                let mut value: Option<SpNode> = None;
                while let Some(k) = map.next_key::<Key>()? {
                    match k.name.as_str() {
                        SPANNED_END => end = Some(map.next_value()?),
                        SPANNED_VALUE => value = Some(map.next_value_seed(NodeSeed)?),
                        other => return Err(de::Error::unknown_field(other, &SPANNED_FIELDS)),
                    }
                }
                let end = end.ok_or_else(|| de::Error::missing_field(SPANNED_END))?;
                let mut value = value.ok_or_else(|| de::Error::missing_field(SPANNED_VALUE))?;
                value.span = Some(start..end);
                Ok(value)
            }
            DATETIME_FIELD => {
                let text: String = map.next_value()?;
                Ok(bare(Node::Datetime(text)))
            }
            _ => {
                let mut entries = vec![(first, map.next_value::<SpNode>()?)];
                while let Some(k) = map.next_key::<Key>()? {
                    let v = map.next_value::<SpNode>()?;
                    entries.push((k, v));
                }
                Ok(bare(Node::Table(entries)))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        d.deserialize_struct(SPANNED_NAME, &SPANNED_FIELDS, KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key {
            name: v.to_string(),
            span: None,
        })
    }
    fn visit_string<E>(self, v: String) -> Result<Key, E> {
        Ok(Key {
            name: v,
            span: None,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let mut start: Option<usize> = None;
        let mut end: Option<usize> = None;
        let mut name: Option<String> = None;
        while let Some(k) = map.next_key::<String>()? {
            match k.as_str() {
                SPANNED_START => start = Some(map.next_value()?),
                SPANNED_END => end = Some(map.next_value()?),
                SPANNED_VALUE => name = Some(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, &SPANNED_FIELDS)),
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field(SPANNED_VALUE))?;
        let span = match (start, end) {
            (Some(s), Some(e)) => Some(s..e),
            _ => None,
        };
        Ok(Key { name, span })
    }
}

/// Parses a whole document. The error is toml's, with its span.
pub(super) fn parse_document(text: &str) -> Result<SpNode, toml::de::Error> {
    // The root table: toml does not wrap the document itself in a span.
    toml::from_str::<SpNode>(text)
}
