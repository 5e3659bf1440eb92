//! LNB arithmetic and shared LNB cables.
//!
//! Owns: which local oscillator (LOF) an LNB uses for a transponder, the
//! resulting IF the tuner must tune to, the supply voltage that selects the
//! polarisation and the 22 kHz tone that selects the high band; and the rule
//! for several tuners on one LNB cable (only the master drives voltage and
//! tone, so every tuner on the cable must want the same band and
//! polarisation).
//!
//! The arithmetic follows libdvbv5's `dvb_sat_set_parms` (v4l-utils
//! lib/libdvbv5/dvb-sat.c): high band when f > switch frequency (strictly),
//! IF = |f - LOF| (so a C-band LNB, LOF above the downlink, gives the
//! inverted IF = LOF - f), vertical/right → 13 V, horizontal/left → 18 V.
//!
//! Promises: pure functions, no panics, errors name the transponder.

use std::fmt;

use capbox_sys::bindings as b;

use crate::dvb::diseqc::{Scr, Switch};
use crate::dvb::tuning::{Polarization, Tuning};

/// LNB supply voltage (`fe_sec_voltage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Voltage {
    V13,
    V18,
    Off,
}

impl Voltage {
    pub fn raw(self) -> u32 {
        match self {
            Voltage::V13 => b::SEC_VOLTAGE_13,
            Voltage::V18 => b::SEC_VOLTAGE_18,
            Voltage::Off => b::SEC_VOLTAGE_OFF,
        }
    }
    pub fn for_polarization(pol: Polarization) -> Voltage {
        if pol.is_18v() {
            Voltage::V18
        } else {
            Voltage::V13
        }
    }
}

/// An LNB's local oscillators, in MHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lnb {
    /// Two LOFs switched by the 22 kHz tone: "universal" Ku (9750/10600,
    /// switch 11700) is dvbv5's `UNIVERSAL`.
    Dual {
        low_lof_mhz: u32,
        high_lof_mhz: u32,
        switch_mhz: u32,
    },
    /// One LOF below the downlink: Ku single (10750 for circular
    /// 11.7–12.5 GHz, 10000, 11300, 11250 for North-American DBS...).
    Single { lof_mhz: u32 },
    /// C band: LOF above the downlink (5150), IF = LOF − f, spectrum
    /// inverted (the demodulator handles it: INVERSION_AUTO).
    CBand { lof_mhz: u32 },
}

impl Lnb {
    pub const UNIVERSAL: Lnb = Lnb::Dual {
        low_lof_mhz: 9750,
        high_lof_mhz: 10600,
        switch_mhz: 11700,
    };
    pub const CIRCULAR: Lnb = Lnb::Single { lof_mhz: 10750 };
    pub const C_BAND: Lnb = Lnb::CBand { lof_mhz: 5150 };

    /// Config names: `universal`, `circular`, `c-band`/`cband`, dvbv5 aliases
    /// `UNIVERSAL`, `DBS` (11250), `STANDARD` (10000), `ENHANCED` (9750),
    /// `C-BAND`; `single:<LOF MHz>`, `cband:<LOF MHz>`, or
    /// `<low>,<high>,<switch>` for another dual LNB.
    pub fn from_name(name: &str) -> Result<Lnb, LnbError> {
        let n = name.trim().to_ascii_lowercase();
        let num = |s: &str| {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|v| (1..100_000).contains(v))
                .ok_or_else(|| LnbError::UnknownLnb(name.to_string()))
        };
        Ok(match n.as_str() {
            "universal" => Lnb::UNIVERSAL,
            "circular" => Lnb::CIRCULAR,
            "c-band" | "cband" => Lnb::C_BAND,
            "dbs" => Lnb::Single { lof_mhz: 11250 },
            "standard" => Lnb::Single { lof_mhz: 10000 },
            "enhanced" => Lnb::Single { lof_mhz: 9750 },
            _ => {
                if let Some(v) = n.strip_prefix("single:") {
                    Lnb::Single { lof_mhz: num(v)? }
                } else if let Some(v) = n
                    .strip_prefix("cband:")
                    .or_else(|| n.strip_prefix("c-band:"))
                {
                    Lnb::CBand { lof_mhz: num(v)? }
                } else {
                    let parts: Vec<&str> = n.split(',').collect();
                    match parts.as_slice() {
                        [l, h, s] => Lnb::Dual {
                            low_lof_mhz: num(l)?,
                            high_lof_mhz: num(h)?,
                            switch_mhz: num(s)?,
                        },
                        _ => return Err(LnbError::UnknownLnb(name.to_string())),
                    }
                }
            }
        })
    }

    /// Band, LOF, IF, voltage and tone for a transponder.
    pub fn plan(&self, frequency_khz: u32, pol: Polarization) -> Result<LnbPlan, LnbError> {
        let (lof_mhz, high_band) = match *self {
            Lnb::Dual {
                low_lof_mhz,
                high_lof_mhz,
                switch_mhz,
            } => {
                // dvb-sat.c: `high_band = (freq > lnb->rangeswitch * 1000)`.
                let high = u64::from(frequency_khz) > u64::from(switch_mhz) * 1000;
                (if high { high_lof_mhz } else { low_lof_mhz }, high)
            }
            Lnb::Single { lof_mhz } | Lnb::CBand { lof_mhz } => (lof_mhz, false),
        };
        let lof_khz = i64::from(lof_mhz) * 1000;
        let if_khz = (i64::from(frequency_khz) - lof_khz).unsigned_abs();
        let inverted = i64::from(frequency_khz) < lof_khz;
        if !(950_000..=2_150_000).contains(&if_khz) {
            return Err(LnbError::IfOutOfRange {
                frequency_khz,
                lof_mhz,
                if_khz: if_khz.min(u64::from(u32::MAX)) as u32,
            });
        }
        Ok(LnbPlan {
            lof_mhz,
            if_khz: if_khz as u32,
            high_band,
            inverted,
            voltage: Voltage::for_polarization(pol),
            tone: high_band,
        })
    }
}

/// What the LNB needs for one transponder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LnbPlan {
    pub lof_mhz: u32,
    /// Intermediate frequency on the cable, kHz.
    pub if_khz: u32,
    pub high_band: bool,
    /// Spectrum inverted by the LNB (C band).
    pub inverted: bool,
    pub voltage: Voltage,
    /// 22 kHz tone on.
    pub tone: bool,
}

impl LnbPlan {
    /// What a tuner sharing the cable must agree on.
    pub fn signal_path(&self) -> SignalPath {
        SignalPath {
            high_band: self.high_band,
            voltage: self.voltage,
        }
    }
}

/// LNB and the switch gear between it and one tuner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LnbSetup {
    pub lnb: Lnb,
    pub switch: Switch,
}

impl LnbSetup {
    pub fn new(lnb: Lnb) -> Self {
        LnbSetup {
            lnb,
            switch: Switch::None,
        }
    }

    /// The frequency (kHz) to put in DTV_FREQUENCY: the IF, or with Unicable
    /// the user-band frequency corrected by the tuning-word rounding.
    pub fn tuner_frequency_khz(
        &self,
        frequency_khz: u32,
        pol: Polarization,
    ) -> Result<u32, LnbError> {
        let plan = self.lnb.plan(frequency_khz, pol)?;
        match &self.switch {
            Switch::Unicable(scr) => Ok(scr_tune(scr, &plan, pol)?.tune_khz),
            _ => Ok(plan.if_khz),
        }
    }
}

fn scr_tune(
    scr: &Scr,
    plan: &LnbPlan,
    pol: Polarization,
) -> Result<crate::dvb::diseqc::ScrCommand, LnbError> {
    scr.command(plan.if_khz, pol, plan.high_band)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LnbError {
    UnknownLnb(String),
    /// The transponder is not reachable with this LNB: its IF falls outside
    /// the 950–2150 MHz a tuner takes.
    IfOutOfRange {
        frequency_khz: u32,
        lof_mhz: u32,
        if_khz: u32,
    },
    /// Unicable: the tuning word does not fit its field.
    ScrOutOfRange {
        if_khz: u32,
        ub_mhz: u32,
        t: i64,
    },
    /// A switch setting out of its range (port, user band, position).
    BadSwitch(String),
}

impl fmt::Display for LnbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LnbError::UnknownLnb(n) => write!(
                f,
                "unknown LNB {n:?} (universal, circular, c-band, dbs, single:<MHz>, cband:<MHz>, <low>,<high>,<switch>)"
            ),
            LnbError::IfOutOfRange {
                frequency_khz,
                lof_mhz,
                if_khz,
            } => write!(
                f,
                "transponder {} MHz with LOF {lof_mhz} MHz gives IF {} MHz, outside 950..2150 MHz",
                *frequency_khz as f64 / 1000.0,
                *if_khz as f64 / 1000.0
            ),
            LnbError::ScrOutOfRange { if_khz, ub_mhz, t } => write!(
                f,
                "Unicable tuning word {t} out of range for IF {} MHz and user band {ub_mhz} MHz",
                *if_khz as f64 / 1000.0
            ),
            LnbError::BadSwitch(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for LnbError {}

/// Band and polarisation as the LNB sees them (tone and voltage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalPath {
    pub high_band: bool,
    pub voltage: Voltage,
}

impl fmt::Display for SignalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let band = if self.high_band { "high" } else { "low" };
        let pol = match self.voltage {
            Voltage::V13 => "vertical/right (13 V)",
            Voltage::V18 => "horizontal/left (18 V)",
            Voltage::Off => "LNB power off",
        };
        write!(f, "{band} band, {pol}")
    }
}

/// Tuners sharing one LNB cable (a splitter, or a twin tuner's loop-through):
/// `master` drives voltage and tone, `slaves` leave them alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCable {
    pub name: String,
    pub lnb: Lnb,
    pub master: String,
    pub slaves: Vec<String>,
}

/// One mux given to one tuner.
#[derive(Debug, Clone, Copy)]
pub struct Assignment<'a> {
    pub tuner: &'a str,
    pub mux: &'a str,
    pub tuning: &'a Tuning,
}

/// Why an assignment breaks a shared cable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CableError {
    /// The mux cannot be received through this LNB at all.
    Lnb {
        cable: String,
        tuner: String,
        mux: String,
        error: LnbError,
    },
    /// A mux on this cable that is not satellite.
    NotSatellite {
        cable: String,
        tuner: String,
        mux: String,
    },
    /// Tuners want different band/polarisation: `reference` is what the
    /// cable carries (the master's mux, or the first slave's when the master
    /// is idle), `conflicts` every tuner/mux that wants something else.
    Conflict {
        cable: String,
        reference: (String, String, SignalPath),
        conflicts: Vec<(String, String, SignalPath)>,
    },
}

impl fmt::Display for CableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CableError::Lnb {
                cable,
                tuner,
                mux,
                error,
            } => write!(f, "cable {cable}: tuner {tuner}, mux {mux}: {error}"),
            CableError::NotSatellite { cable, tuner, mux } => write!(
                f,
                "cable {cable}: tuner {tuner} is on an LNB cable but mux {mux} is not satellite"
            ),
            CableError::Conflict {
                cable,
                reference,
                conflicts,
            } => {
                write!(
                    f,
                    "cable {cable} carries {} for tuner {} (mux {}); ",
                    reference.2, reference.0, reference.1
                )?;
                let list: Vec<String> = conflicts
                    .iter()
                    .map(|(t, m, p)| format!("tuner {t} mux {m} needs {p}"))
                    .collect();
                write!(f, "{}", list.join("; "))
            }
        }
    }
}

impl std::error::Error for CableError {}

impl SharedCable {
    /// Checks the assignments that concern this cable's tuners (others are
    /// ignored). Ok when every tuner on the cable wants the same band and
    /// polarisation as the one that drives it.
    pub fn check(&self, assignments: &[Assignment<'_>]) -> Result<(), CableError> {
        let on_cable = |t: &str| t == self.master || self.slaves.iter().any(|s| s == t);
        let mut paths: Vec<(String, String, SignalPath, bool)> = Vec::new();
        for a in assignments.iter().filter(|a| on_cable(a.tuner)) {
            let sat = a
                .tuning
                .satellite()
                .ok_or_else(|| CableError::NotSatellite {
                    cable: self.name.clone(),
                    tuner: a.tuner.to_string(),
                    mux: a.mux.to_string(),
                })?;
            let plan = self
                .lnb
                .plan(sat.frequency_khz, sat.polarization)
                .map_err(|error| CableError::Lnb {
                    cable: self.name.clone(),
                    tuner: a.tuner.to_string(),
                    mux: a.mux.to_string(),
                    error,
                })?;
            paths.push((
                a.tuner.to_string(),
                a.mux.to_string(),
                plan.signal_path(),
                a.tuner == self.master,
            ));
        }
        // The master sets the cable; if it is idle it still has to power the
        // LNB for the slaves, so the first slave's wish becomes the reference.
        let reference = match paths.iter().find(|p| p.3).or_else(|| paths.first()) {
            Some(r) => r.clone(),
            None => return Ok(()),
        };
        let conflicts: Vec<(String, String, SignalPath)> = paths
            .iter()
            .filter(|p| p.2 != reference.2)
            .map(|p| (p.0.clone(), p.1.clone(), p.2))
            .collect();
        if conflicts.is_empty() {
            Ok(())
        } else {
            Err(CableError::Conflict {
                cable: self.name.clone(),
                reference: (reference.0, reference.1, reference.2),
                conflicts,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(lnb: Lnb, mhz: u32, pol: Polarization) -> LnbPlan {
        lnb.plan(mhz * 1000, pol).unwrap()
    }

    // Expected values: dvb-sat.c arithmetic (freq_offset = LOF * 1000, IF =
    // abs(freq - freq_offset), high band iff freq > rangeswitch * 1000,
    // vol_high = !pol_v, tone_on = high_band), worked by hand per case.
    #[test]
    fn universal_low_band_vertical() {
        let p = plan(Lnb::UNIVERSAL, 11362, Polarization::Vertical);
        assert_eq!(p.if_khz, 1_612_000);
        assert!(!p.high_band && !p.tone);
        assert_eq!(p.voltage, Voltage::V13);
        assert_eq!(p.lof_mhz, 9750);
    }

    #[test]
    fn universal_high_band_horizontal() {
        let p = plan(Lnb::UNIVERSAL, 12522, Polarization::Horizontal);
        assert_eq!(p.if_khz, 1_922_000);
        assert!(p.high_band && p.tone);
        assert_eq!(p.voltage, Voltage::V18);
    }

    #[test]
    fn universal_switch_point_is_low_band() {
        // dvbv5 uses a strict `>`: 11700 MHz itself stays on the low LOF.
        let p = plan(Lnb::UNIVERSAL, 11700, Polarization::Vertical);
        assert_eq!((p.if_khz, p.high_band), (1_950_000, false));
        let p = Lnb::UNIVERSAL
            .plan(11_700_001, Polarization::Vertical)
            .unwrap();
        assert_eq!((p.if_khz, p.high_band), (1_100_001, true));
    }

    #[test]
    fn universal_astra_transponders() {
        // Astra 19.2E transponders from dtv-scan-tables' Astra-19.2E file.
        let cases = [
            (
                10714,
                Polarization::Horizontal,
                964_000,
                false,
                Voltage::V18,
            ),
            (
                11493,
                Polarization::Horizontal,
                1_743_000,
                false,
                Voltage::V18,
            ),
            (
                11954,
                Polarization::Horizontal,
                1_354_000,
                true,
                Voltage::V18,
            ),
            (12603, Polarization::Vertical, 2_003_000, true, Voltage::V13),
        ];
        for (f, pol, ifk, high, v) in cases {
            let p = plan(Lnb::UNIVERSAL, f, pol);
            assert_eq!((p.if_khz, p.high_band, p.voltage), (ifk, high, v), "{f}");
        }
    }

    #[test]
    fn c_band_is_inverted() {
        let p = plan(Lnb::C_BAND, 3800, Polarization::Horizontal);
        assert_eq!(p.if_khz, 1_350_000);
        assert!(p.inverted && !p.tone);
        assert_eq!(
            plan(Lnb::C_BAND, 4200, Polarization::Vertical).if_khz,
            950_000
        );
    }

    #[test]
    fn circular_and_single() {
        let p = plan(Lnb::CIRCULAR, 12226, Polarization::Left);
        assert_eq!(
            (p.if_khz, p.voltage, p.tone),
            (1_476_000, Voltage::V18, false)
        );
        assert_eq!(
            plan(Lnb::CIRCULAR, 11900, Polarization::Right).voltage,
            Voltage::V13
        );
        let dbs = Lnb::from_name("DBS").unwrap();
        assert_eq!(plan(dbs, 12224, Polarization::Vertical).if_khz, 974_000);
        let ku = Lnb::from_name("single:11300").unwrap();
        assert_eq!(plan(ku, 12500, Polarization::Vertical).if_khz, 1_200_000);
    }

    #[test]
    fn unreachable_transponder_is_an_error() {
        // 12522 MHz through the low LOF only (an "ENHANCED" single 9750).
        let e = Lnb::from_name("enhanced")
            .unwrap()
            .plan(12_522_000, Polarization::Vertical)
            .unwrap_err();
        assert!(e.to_string().contains("2772 MHz"), "{e}");
        assert!(Lnb::from_name("bogus").is_err());
        assert_eq!(Lnb::from_name("9750,10600,11700").unwrap(), Lnb::UNIVERSAL);
    }

    fn sat(args: &str) -> Tuning {
        Tuning::from_args(args).unwrap()
    }

    #[test]
    fn shared_cable_accepts_same_band_and_pol() {
        let cable = SharedCable {
            name: "dish1".into(),
            lnb: Lnb::UNIVERSAL,
            master: "tbs0".into(),
            slaves: vec!["tbs1".into(), "tbs2".into()],
        };
        let a = sat("dvbs2 11362000 V 22000000");
        let b2 = sat("dvbs2 11303000 V 22000000");
        let other = sat("dvbs2 12522000 H 22000000");
        let asg = [
            Assignment {
                tuner: "tbs0",
                mux: "a",
                tuning: &a,
            },
            Assignment {
                tuner: "tbs1",
                mux: "b",
                tuning: &b2,
            },
            // Not on this cable: ignored.
            Assignment {
                tuner: "other",
                mux: "c",
                tuning: &other,
            },
        ];
        cable.check(&asg).unwrap();
    }

    #[test]
    fn shared_cable_names_offenders() {
        let cable = SharedCable {
            name: "dish1".into(),
            lnb: Lnb::UNIVERSAL,
            master: "tbs0".into(),
            slaves: vec!["tbs1".into(), "tbs2".into()],
        };
        let a = sat("dvbs2 11362000 V 22000000");
        let hv = sat("dvbs2 11362000 H 22000000");
        let hi = sat("dvbs2 12603000 V 22000000");
        let asg = [
            Assignment {
                tuner: "tbs1",
                mux: "pol-h",
                tuning: &hv,
            },
            Assignment {
                tuner: "tbs0",
                mux: "master-mux",
                tuning: &a,
            },
            Assignment {
                tuner: "tbs2",
                mux: "high",
                tuning: &hi,
            },
        ];
        let e = cable.check(&asg).unwrap_err();
        let msg = e.to_string();
        match &e {
            CableError::Conflict {
                reference,
                conflicts,
                ..
            } => {
                assert_eq!(reference.0, "tbs0");
                assert_eq!(conflicts.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        for word in [
            "dish1",
            "tbs0",
            "master-mux",
            "tbs1",
            "pol-h",
            "tbs2",
            "high band",
        ] {
            assert!(msg.contains(word), "{word} missing in {msg}");
        }
    }

    #[test]
    fn shared_cable_idle_master_uses_first_slave() {
        let cable = SharedCable {
            name: "c".into(),
            lnb: Lnb::UNIVERSAL,
            master: "m".into(),
            slaves: vec!["s1".into(), "s2".into()],
        };
        let a = sat("dvbs2 11362000 V 22000000");
        let b2 = sat("dvbs2 11362000 H 22000000");
        let asg = [
            Assignment {
                tuner: "s1",
                mux: "a",
                tuning: &a,
            },
            Assignment {
                tuner: "s2",
                mux: "b",
                tuning: &b2,
            },
        ];
        let e = cable.check(&asg).unwrap_err();
        assert!(e.to_string().contains("tuner s2 mux b"), "{e}");
        let t = Tuning::from_args("dvbt 474000000 8MHz").unwrap();
        let asg = [Assignment {
            tuner: "m",
            mux: "ter",
            tuning: &t,
        }];
        assert!(matches!(
            cable.check(&asg),
            Err(CableError::NotSatellite { .. })
        ));
    }
}
