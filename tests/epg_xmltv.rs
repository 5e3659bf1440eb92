//! The guide out: EIT written by biTStream (an independent writer) through
//! the packet path and the store to XMLTV that `xmllint --dtdvalid`
//! accepts against the XMLTV project's DTD (Debian xmltv-util), for UTC and
//! for audiences; hostile text stays valid XML.

mod epg_common;

use std::path::Path;
use std::process::Command;

use capbox::epg::eit::EitCollector;
use capbox::epg::xmltv::{self, Audience, Channel};
use capbox::epg::{Limits, PartKey, RawEvent, Store};
use epg_common::{packets, T0};

const DTD: &str = "/usr/share/xmltv/xmltv.dtd";

fn tools() -> bool {
    if !Path::new(DTD).exists() || Command::new("xmllint").arg("--version").output().is_err() {
        eprintln!("SKIPPED: {DTD} or xmllint missing: apt-get install xmltv-util libxml2-utils");
        return false;
    }
    true
}

/// xmllint's verdict on `doc` against the DTD.
fn validate(doc: &str, name: &str) {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, doc).unwrap();
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--dtdvalid", DTD])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} does not validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn libbitstream_eit_to_valid_xmltv() {
    if !tools() {
        return;
    }
    let Some(g) = epg_common::generate("xmltv") else {
        return;
    };
    let now = T0 + 3600;
    let mut store = Store::new(Limits::default());
    let mut c = EitCollector::new(
        [
            (0x0880, "Beethoven.uk".to_string()),
            (0x0881, "Second & Co".to_string()),
        ],
        None,
        None,
    );
    let mut cc = 0;
    c.push_packets(&packets(&g.sections("good"), &mut cc), &mut store, now);
    let channels = [
        Channel {
            key: "Beethoven.uk",
            id: "Beethoven.uk",
            name: "Beethoven",
        },
        Channel {
            key: "Second & Co",
            id: "Second & Co",
            name: "Second <HD>",
        },
    ];
    let to = T0 + 8 * 86_400;
    let utc = xmltv::write(&store, &channels, None, now, to);
    validate(&utc, "epg-utc.xml");
    assert_eq!(utc.matches("<programme ").count(), 2 * (8 * 48 - 2));
    assert!(utc.contains(
        "<programme start=\"20260529010000 +0000\" stop=\"20260529013000 +0000\" channel=\"Beethoven.uk\">\n    <title lang=\"eng\">Programme 2</title>"
    ));
    assert!(utc.contains("<title lang=\"eng\">Télé 3</title>"));
    assert!(utc.contains("<title lang=\"eng\">Late Night Movie</title>"));
    // Same programme for an audience in New York (EDT in May) and Tokyo.
    let ny = Audience::new("miami", "America/New_York").unwrap();
    let doc = xmltv::write(&store, &channels, Some(&ny), now, to);
    validate(&doc, "epg-miami.xml");
    assert!(doc.contains(
        "start=\"20260528210000 -0400\" stop=\"20260528213000 -0400\" channel=\"Beethoven.uk\""
    ));
    let jp = Audience::new("tokyo", "Asia/Tokyo").unwrap();
    let doc = xmltv::write(&store, &channels[1..], Some(&jp), now, to);
    validate(&doc, "epg-tokyo.xml");
    assert!(doc.contains("start=\"20260529100000 +0900\""));
    assert!(!doc.contains("Beethoven.uk"));
}

#[test]
fn dst_change_and_hostile_text_stay_valid() {
    if !tools() {
        return;
    }
    // Hourly events across New York's 2026 spring change (08 Mar 07:00 UTC).
    let change = 1_772_953_200;
    let mut store = Store::new(Limits::default());
    let nasty = "<&>\"' \u{1}\u{7}\u{FFFE}\u{FFFF} ]]> <!-- -- --> \u{202E}ﬀ 日本";
    let raw: Vec<RawEvent> = (-3..3)
        .map(|i| RawEvent {
            event_id: i as u16,
            start: Some(change + i * 3600),
            duration: Some(3600),
            title: format!("Hour {i} {nasty}"),
            subtitle: nasty.into(),
            description: format!("{nasty}\n{nasty}"),
            language: Some("e\"g".into()),
            content: vec![0xFF, 0x11],
            min_age: Some(4),
        })
        .collect();
    store.replace_raw("a\"b<c>", PartKey::Xmltv(0), raw, change);
    let ch = [Channel {
        key: "a\"b<c>",
        id: "a\"b<c>",
        name: nasty,
    }];
    let ny = Audience::new("x -- y", "America/New_York").unwrap();
    let doc = xmltv::write(&store, &ch, Some(&ny), change - 86_400, change + 86_400);
    validate(&doc, "epg-dst.xml");
    let starts: Vec<&str> = doc
        .match_indices("start=\"")
        .map(|(i, _)| &doc[i + 7..i + 27])
        .collect();
    assert_eq!(
        starts,
        [
            "20260307230000 -0500",
            "20260308000000 -0500",
            "20260308010000 -0500",
            "20260308030000 -0400",
            "20260308040000 -0400",
            "20260308050000 -0400"
        ]
    );
}
