//! The `ca` and `caid` keys of a `[[channel.source]]`: where the control
//! words of a scrambled service come from (besides `biss`).
//!
//! Owns: parsing and checking them (a child of `walk`, so it reports
//! through the same `Walker`: every error names `file:line: key`).
//! Promises: `caid` without `ca` and `ca` together with `biss` are refused
//! (one source of control words per service).

use super::{Table, Walker};

/// Where a source's control words come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaSourceConfig {
    /// `ca = "card"`: ECMs go to a local card (PC/SC, the card manager)
    /// that serves the CA system. `caid` (CA_system_id) picks among
    /// several CA_descriptors of the PMT; without it, a CA system a card
    /// can serve.
    Card { caid: Option<u16> },
    /// `ca = "dvbapi"`: from the softcam of `[softcam]` (OSCam's dvbapi
    /// network protocol); `caid` is not used (the softcam picks).
    Dvbapi,
}

/// `ca` (+ `caid`) of one source table; `has_biss` when `biss` is set too.
pub(super) fn source_ca(w: &mut Walker, t: &mut Table, has_biss: bool) -> Option<CaSourceConfig> {
    let what = "\"card\" (control words from a local smart card) or \"dvbapi\" \
                (control words from the [softcam])";
    let ca = w.string(t, "ca", what);
    let caid_given = t.entries.iter().any(|e| e.key.name == "caid");
    let caid = if caid_given {
        Some(w.int(t, "caid", 1, 0xFFFF, 0, "a CA_system_id") as u16).filter(|&c| c != 0)
    } else {
        None
    };
    let Some((s, f)) = ca else {
        if caid_given && !t.entries.iter().any(|e| e.key.name == "ca") {
            let path = super::join(&t.path, "caid");
            let line = w.lines.get(&path).copied().unwrap_or(t.line);
            w.error(
                line,
                &path,
                "given without `ca`; expected `ca = \"card\"` with it".to_string(),
            );
        }
        return None;
    };
    match s.as_str() {
        "card" | "dvbapi" if has_biss => {
            w.error(
                f.line,
                &f.path,
                "set together with `biss`; expected one source of control words: \
                 remove `ca` or `biss`"
                    .to_string(),
            );
            None
        }
        "card" => Some(CaSourceConfig::Card { caid }),
        "dvbapi" => Some(CaSourceConfig::Dvbapi),
        _ => {
            w.error(
                f.line,
                &f.path,
                format!("{s:?} is not known; expected {what}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::{parse as parse_config, CaSourceConfig};

    fn parse(src: &str) -> Result<Option<CaSourceConfig>, String> {
        let text = format!("[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"x.ts\"\n{src}");
        match parse_config(&text, "c.toml", std::path::Path::new("/")) {
            Ok(c) => Ok(c.channels[0].sources[0].ca.clone()),
            Err(e) => Err(e
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")),
        }
    }

    #[test]
    fn ca_card_and_caid() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(
            parse("ca = \"card\""),
            Ok(Some(CaSourceConfig::Card { caid: None }))
        );
        assert_eq!(
            parse("ca = \"card\"\ncaid = 0xFFFE"),
            Ok(Some(CaSourceConfig::Card { caid: Some(0xFFFE) }))
        );
        let e = parse("ca = \"cam\"").unwrap_err();
        assert!(
            e.starts_with("c.toml:5: channel[0].source[0].ca: \"cam\" is not known"),
            "{e}"
        );
        let e = parse("caid = 0x0B00").unwrap_err();
        assert!(
            e.starts_with("c.toml:5: channel[0].source[0].caid: given without `ca`"),
            "{e}"
        );
        let e = parse("ca = \"card\"\ncaid = 0x10000").unwrap_err();
        assert!(
            e.starts_with("c.toml:6: channel[0].source[0].caid: 65536 is out of range"),
            "{e}"
        );
        let e = parse("ca = \"card\"\nbiss = \"0102030405060708\"").unwrap_err();
        assert!(
            e.contains("channel[0].source[0].ca: set together with `biss`"),
            "{e}"
        );
        assert!(!e.contains("0102030405060708"), "{e}");
    }
}
