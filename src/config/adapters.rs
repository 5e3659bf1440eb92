//! The `[[adapter]]` keys about how capbox uses a tuner's demux and cable:
//! `pid_filter` (per-PID hardware filters or the full TS) and `cable` +
//! `cable_master` (tuners sharing one LNB cable), and the cross-check of
//! channel assignments against shared cables.
//!
//! A child of `walk` so it uses the same `Walker` (every error names
//! `file:line: key`). Promises: a config whose channels would make a slave
//! tuner need a different band or polarisation than its cable's master is
//! refused at load, naming the cable, the tuners, the muxes and the
//! channels; a cable has exactly one master and one LNB.

use super::*;
use crate::dvb::demux::{PidFilter, DEFAULT_MAX_PIDS};
use crate::dvb::lnb::{Assignment, CableError, SharedCable};

/// The keys this file reads, for `finish`'s "expected one of".
pub(super) const KEYS: &[&str] = &["pid_filter", "pid_filter_max", "cable", "cable_master"];

/// Most PIDs `pid_filter_max` may ask for: each is a demux fd.
const MAX_PID_FILTERS: i64 = 256;

/// The new keys of one `[[adapter]]` table.
pub(super) struct Extra {
    pub pid_filter: PidFilter,
    pub cable: Option<AdapterCable>,
}

/// Reads `pid_filter`, `pid_filter_max`, `cable` and `cable_master`.
pub(super) fn extra(w: &mut Walker, t: &mut Table, path: &str) -> Extra {
    let pf_what =
        "\"auto\" (per-PID filters while few PIDs are needed) or \"full\" (always the whole TS)";
    let full = match w.string(t, "pid_filter", pf_what) {
        None => false,
        Some((v, f)) => match v.as_str() {
            "auto" => false,
            "full" => true,
            _ => {
                w.error(
                    f.line,
                    &f.path,
                    format!("{v:?} is not a filter mode; expected {pf_what}"),
                );
                false
            }
        },
    };
    let has_max = t.entries.iter().any(|e| e.key.name == "pid_filter_max");
    let max = w.int(
        t,
        "pid_filter_max",
        BASE_PID_COUNT,
        MAX_PID_FILTERS,
        DEFAULT_MAX_PIDS as i64,
        "a number of PIDs (above it the full TS is taken)",
    ) as usize;
    if full && has_max {
        let line = w
            .lines
            .get(&join(path, "pid_filter_max"))
            .copied()
            .unwrap_or(t.line);
        w.error(
            line,
            &join(path, "pid_filter_max"),
            "has no effect with pid_filter = \"full\"; remove it or set pid_filter = \"auto\""
                .into(),
        );
    }
    let pid_filter = if full {
        PidFilter::Full
    } else {
        PidFilter::Auto { max_pids: max }
    };

    let cable_what = "a cable label such as \"north\" ([a-z0-9._-], at most 64): tuners with the same label share one LNB cable";
    let cable = match w.string(t, "cable", cable_what) {
        None => None,
        Some((c, f)) => match name_problem(&c) {
            Some(p) => {
                w.error(f.line, &f.path, format!("{p}; expected {cable_what}"));
                None
            }
            None => Some((c, f.line)),
        },
    };
    let has_master = t.entries.iter().any(|e| e.key.name == "cable_master");
    let master = w.boolean(t, "cable_master", false);
    if has_master && cable.is_none() && !t.entries.iter().any(|e| e.key.name == "cable") {
        let key = join(path, "cable_master");
        let line = w.lines.get(&key).copied().unwrap_or(t.line);
        w.error(
            line,
            &key,
            "needs cable on the same adapter; add cable = \"<label>\" naming the shared LNB cable"
                .into(),
        );
    }
    Extra {
        pid_filter,
        cable: cable.map(|(name, line)| AdapterCable { name, master, line }),
    }
}

/// PAT, CAT, NIT, SDT, EIT, TDT: a per-PID set is never smaller.
const BASE_PID_COUNT: i64 = crate::dvb::demux::BASE_PIDS.len() as i64;

/// Shared-cable rules: one master per cable, the same LNB and switch gear
/// on every tuner of it, no Unicable (its tuners share a cable through
/// their own user bands), and channel assignments a slave can follow.
pub(super) fn cable_rules(w: &mut Walker, adapters: &[AdapterConfig], channels: &[ChannelConfig]) {
    let mut cables: BTreeMap<&str, Vec<&AdapterConfig>> = BTreeMap::new();
    for a in adapters {
        if let Some(c) = &a.cable {
            cables.entry(&c.name).or_default().push(a);
        }
    }
    for (name, members) in cables {
        let key = |a: &AdapterConfig, k: &str| format!("{}.{k}", a.key);
        let masters: Vec<&&AdapterConfig> = members
            .iter()
            .filter(|a| a.cable.as_ref().is_some_and(|c| c.master))
            .collect();
        let list = |v: &[&AdapterConfig]| {
            v.iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(master) = masters.first().copied().copied() else {
            let a = members[0];
            w.error(
                a.cable.as_ref().map(|c| c.line).unwrap_or(a.line),
                &key(a, "cable"),
                format!(
                    "cable {name:?} (adapters {}) has no master; expected cable_master = true on the one adapter that powers the LNB (sets voltage and tone)",
                    list(&members)
                ),
            );
            continue;
        };
        for extra in masters.iter().skip(1) {
            let line = w
                .lines
                .get(&key(extra, "cable_master"))
                .copied()
                .unwrap_or(extra.line);
            w.error(
                line,
                &key(extra, "cable_master"),
                format!(
                    "cable {name:?} already has master {:?}; expected one master per cable (two tuners setting voltage and tone fight over the LNB)",
                    master.name
                ),
            );
        }
        let Some(lnb) = master.lnb else {
            w.error(
                master.cable.as_ref().map(|c| c.line).unwrap_or(master.line),
                &key(master, "cable"),
                format!("cable {name:?}: master {:?} has no lnb; expected lnb = \"universal\" (or the LNB type) on the tuners of a shared cable", master.name),
            );
            continue;
        };
        if matches!(master.switch, Switch::Unicable(_)) {
            let line = master.cable.as_ref().map(|c| c.line).unwrap_or(master.line);
            w.error(line, &key(master, "cable"), format!("cable {name:?}: Unicable tuners share a cable through their own user bands, each sending its own commands; remove cable (and cable_master) from Unicable adapters"));
            continue;
        }
        let mut gear_ok = true;
        for a in members.iter().filter(|a| a.name != master.name) {
            if a.lnb != master.lnb || a.switch != master.switch {
                gear_ok = false;
                let line = a.cable.as_ref().map(|c| c.line).unwrap_or(a.line);
                w.error(
                    line,
                    &key(a, "cable"),
                    format!(
                        "adapter {:?} is on cable {name:?} with master {:?} but its lnb/switch differ from the master's; expected the same lnb and switch on every tuner of one cable (one LNB, one switch)",
                        a.name, master.name
                    ),
                );
            }
        }
        if !gear_ok {
            continue;
        }
        // Assignments: every DVB source on a tuner of this cable, with the
        // source that first asked for it (for the error's line).
        let mut asg: Vec<(&str, &str, &Tuning, &SourceConfig, &str)> = Vec::new();
        for c in channels {
            for s in &c.sources {
                let Some(d) = &s.dvb else { continue };
                if members.iter().any(|a| a.name == d.adapter) {
                    asg.push((&d.adapter, &d.mux, &d.tuning, s, &c.name));
                }
            }
        }
        let cable = SharedCable {
            name: name.to_string(),
            lnb,
            master: master.name.clone(),
            slaves: members
                .iter()
                .filter(|a| a.name != master.name)
                .map(|a| a.name.clone())
                .collect(),
        };
        let list: Vec<Assignment> = asg
            .iter()
            .map(|(t, m, tuning, _, _)| Assignment {
                tuner: t,
                mux: m,
                tuning,
            })
            .collect();
        let Err(e) = cable.check(&list) else { continue };
        // The first source that breaks the rule carries the error.
        let (tuner, mux) = match &e {
            CableError::Lnb { tuner, mux, .. } | CableError::NotSatellite { tuner, mux, .. } => {
                (tuner.clone(), mux.clone())
            }
            CableError::Conflict { conflicts, .. } => match conflicts.first() {
                Some((t, m, _)) => (t.clone(), m.clone()),
                None => continue,
            },
        };
        let channels_of = |tuner: &str, mux: &str| {
            let mut v: Vec<&str> = asg
                .iter()
                .filter(|x| x.0 == tuner && x.1 == mux)
                .map(|x| x.4)
                .collect();
            v.dedup();
            v.join(", ")
        };
        let Some(src) = asg.iter().find(|x| x.0 == tuner && x.1 == mux).map(|x| x.3) else {
            continue;
        };
        let tkey = format!("{}.tune", src.key);
        let line = w.lines.get(&tkey).copied().unwrap_or(src.line);
        let mut msg = format!("{e} (channels {})", channels_of(&tuner, &mux));
        if let CableError::Conflict { reference, .. } = &e {
            msg.push_str(&format!(
                "; the master's mux is carried for channels {}",
                channels_of(&reference.0, &reference.1)
            ));
        }
        msg.push_str(&format!(
            "; expected every tuner on cable {name:?} to take muxes of the same band and polarisation (move the channel to a tuner on another cable, or to the master)"
        ));
        w.error(line, &tkey, msg);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, Diagnostic};
    use crate::dvb::demux::PidFilter;
    use std::path::Path;

    fn errs(text: &str) -> Vec<Diagnostic> {
        parse(text, "t.toml", Path::new("/")).expect_err("config must be refused")
    }

    fn adapter(name: &str, extra: &str) -> String {
        format!(
            "[[adapter]]\nname = \"{name}\"\ndevice = \"adapter0\"\nlnb = \"universal\"\n{extra}"
        )
    }

    fn channel(name: &str, adapter: &str, tune: &str) -> String {
        format!("[[channel]]\nname = \"{name}\"\n[[channel.source]]\nadapter = \"{adapter}\"\ntune = \"{tune}\"\n")
    }

    const LOW_V: &str = "dvbs2 11362000 V 22000000";
    const LOW_V2: &str = "dvbs2 11303000 V 22000000";
    const HIGH_H: &str = "dvbs2 12522000 H 22000000";

    #[test]
    fn pid_filter_keys() {
        let text = format!(
            "{}{}{}",
            adapter("a", "pid_filter = \"full\"\n"),
            adapter("b", "pid_filter_max = 12\n"),
            channel("x", "a", LOW_V)
        );
        let c = parse(&text, "t.toml", Path::new("/")).unwrap();
        assert_eq!(c.adapters[0].pid_filter, PidFilter::Full);
        assert_eq!(c.adapters[1].pid_filter, PidFilter::Auto { max_pids: 12 });
        // Default: auto, 32.
        let c = parse(
            &format!("{}{}", adapter("a", ""), channel("x", "a", LOW_V)),
            "t.toml",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.adapters[0].pid_filter, PidFilter::Auto { max_pids: 32 });

        let e = errs(&format!(
            "{}{}",
            adapter("a", "pid_filter = \"some\"\npid_filter_max = 3\n"),
            channel("x", "a", LOW_V)
        ));
        let k: Vec<(usize, &str)> = e.iter().map(|d| (d.line, d.key.as_str())).collect();
        assert!(k.contains(&(5, "adapter[0].pid_filter")), "{e:?}");
        assert!(k.contains(&(6, "adapter[0].pid_filter_max")), "{e:?}");
        assert!(
            e[0].to_string()
                .starts_with("t.toml:5: adapter[0].pid_filter: \"some\" is not a filter mode"),
            "{}",
            e[0]
        );
        let e = errs(&format!(
            "{}{}",
            adapter("a", "pid_filter = \"full\"\npid_filter_max = 40\n"),
            channel("x", "a", LOW_V)
        ));
        assert_eq!(
            (e[0].line, e[0].key.as_str()),
            (6, "adapter[0].pid_filter_max")
        );
        assert!(e[0].message.contains("no effect"), "{}", e[0]);
    }

    #[test]
    fn cable_slave_on_same_band_and_polarisation_is_accepted() {
        let text = format!(
            "{}{}{}{}",
            adapter("m", "cable = \"north\"\ncable_master = true\n"),
            adapter("s", "cable = \"north\"\n"),
            channel("one", "m", LOW_V),
            channel("two", "s", LOW_V2),
        );
        let c = parse(&text, "t.toml", Path::new("/")).unwrap();
        let m = c.adapter("m").unwrap().cable.clone().unwrap();
        let s = c.adapter("s").unwrap().cable.clone().unwrap();
        assert!(m.master && !s.master && m.name == "north" && s.name == "north");
        // The slave's source config never drives the cable.
        let t = crate::dvb::tuning::Tuning::from_args(LOW_V2).unwrap();
        let st = std::sync::Arc::new(std::sync::Mutex::new(Default::default()));
        let src = crate::source::dvb::DvbSourceConfig::from_config(
            c.adapter("s").unwrap(),
            t,
            st.clone(),
        );
        assert!(src.cable_slave);
        let src = crate::source::dvb::DvbSourceConfig::from_config(c.adapter("m").unwrap(), t, st);
        assert!(!src.cable_slave);
    }

    #[test]
    fn cable_slave_on_other_band_is_refused_with_line_key_and_channels() {
        let text = format!(
            "{}{}{}{}",
            adapter("m", "cable = \"north\"\ncable_master = true\n"),
            adapter("s", "cable = \"north\"\n"),
            channel("news", "m", LOW_V),
            channel("sport", "s", HIGH_H),
        );
        let e = errs(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        // The slave's tune line: adapters take 6 + 5 lines, channel "news"
        // 5, then channel "sport": tune is its 5th line.
        assert_eq!(
            (e[0].line, e[0].key.as_str()),
            (21, "channel[1].source[0].tune"),
            "{}",
            e[0]
        );
        let msg = e[0].to_string();
        for w in [
            "t.toml:21:",
            "cable north",
            "tuner m",
            "tuner s",
            "high band",
            "channels sport",
            "channels news",
        ] {
            assert!(msg.contains(w), "{w:?} missing in {msg}");
        }
    }

    #[test]
    fn cable_idle_master_slaves_must_agree() {
        let text = format!(
            "{}{}{}{}{}",
            adapter("m", "cable = \"c\"\ncable_master = true\n"),
            adapter("s1", "cable = \"c\"\n"),
            adapter("s2", "cable = \"c\"\n"),
            channel("a", "s1", LOW_V),
            channel("b", "s2", "dvbs2 11362000 H 22000000"),
        );
        let e = errs(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].key, "channel[1].source[0].tune");
        assert!(e[0].message.contains("tuner s2"), "{}", e[0]);
    }

    #[test]
    fn cable_masters_gear_and_terrestrial() {
        // No master.
        let e = errs(&format!(
            "{}{}{}",
            adapter("a", "cable = \"c\"\n"),
            adapter("b", "cable = \"c\"\n"),
            channel("x", "a", LOW_V)
        ));
        assert_eq!((e[0].line, e[0].key.as_str()), (5, "adapter[0].cable"));
        assert!(e[0].message.contains("has no master"), "{}", e[0]);
        // Two masters: the second is named.
        let e = errs(&format!(
            "{}{}{}",
            adapter("a", "cable = \"c\"\ncable_master = true\n"),
            adapter("b", "cable = \"c\"\ncable_master = true\n"),
            channel("x", "a", LOW_V)
        ));
        assert_eq!(
            (e[0].line, e[0].key.as_str()),
            (12, "adapter[1].cable_master")
        );
        assert!(
            e[0].message.contains("already has master \"a\""),
            "{}",
            e[0]
        );
        // Different switch gear.
        let e = errs(&format!(
            "{}{}{}",
            adapter("a", "cable = \"c\"\ncable_master = true\n"),
            adapter("b", "cable = \"c\"\nswitch = \"committed:1\"\n"),
            channel("x", "a", LOW_V)
        ));
        assert_eq!(e[0].key, "adapter[1].cable");
        // cable_master alone.
        let e = errs(&format!(
            "{}{}",
            adapter("a", "cable_master = true\n"),
            channel("x", "a", LOW_V)
        ));
        assert_eq!(
            (e[0].line, e[0].key.as_str()),
            (5, "adapter[0].cable_master")
        );
        // Unicable on a cable.
        let e = errs(&format!(
            "{}{}",
            adapter("a", "cable = \"c\"\ncable_master = true\nswitch = \"unicable:en50494:ub=0:freq=1210\"\n"),
            channel("x", "a", LOW_V)
        ));
        assert!(e[0].message.contains("Unicable"), "{}", e[0]);
        // A terrestrial mux on a cable tuner.
        let e = errs(&format!(
            "{}{}",
            adapter("a", "cable = \"c\"\ncable_master = true\n"),
            channel("x", "a", "dvbt 474000000 8MHz")
        ));
        assert_eq!(e[0].key, "channel[0].source[0].tune");
        assert!(e[0].message.contains("not satellite"), "{}", e[0]);
    }
}
