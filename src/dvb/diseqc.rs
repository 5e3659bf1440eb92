//! DiSEqC and Unicable: the bytes and the call sequence for one tune.
//!
//! Owns: DiSEqC 1.0 committed and 1.1 uncommitted switch commands, tone
//! burst (mini DiSEqC), Unicable I (EN 50494) and Unicable II / JESS
//! (EN 50607) channel-change commands with their tuning words, and the
//! ordered list of frontend actions (voltage, tone, send, burst, sleep) the
//! frontend engineer executes with FE_SET_VOLTAGE, FE_SET_TONE,
//! FE_DISEQC_SEND_MASTER_CMD, FE_DISEQC_SEND_BURST.
//!
//! Sources for the layouts (read, not copied):
//! * committed `E0 10 38 F0|x`, x = option/position/polarisation/band bits
//!   3..0 (band: bit 0, 1 = high; polarisation: bit 1, 1 = horizontal;
//!   position: bits 2-3): libdvbv5 dvb-sat.c `dvbsat_diseqc_write_to_port_group`
//!   and minisatip `send_diseqc` agree; uncommitted `E0 10 39 F0|port`
//!   (minisatip).
//! * EN 50494: `E0 10 5A` + [UB(3)<<5 | position<<4 | pol(H=1)<<3 |
//!   band(high=1)<<2 | T>>8, T & 0xFF], `5C` + PIN byte for the PIN variant;
//!   T = round((IF + f_UB) / 4 MHz) − 350, tuner tunes to (T+350)·4 − IF:
//!   tvheadend src/input/mpegts/linuxdvb/linuxdvb_en50494.c and minisatip
//!   `send_unicable` agree. (libdvbv5's `dvbsat_scr_odu_channel_change`
//!   puts band and polarisation inverted; we follow the two that agree.)
//! * EN 50607: no E0/address/command: framing byte `70` (`71` with PIN) +
//!   [UB(5)<<3 | T>>8, T & 0xFF, position(6)<<2 | pol(H=1)<<1 | band],
//!   T = round(IF / 1 MHz) − 100 (11 bits), tuner tunes to the user band:
//!   tvheadend `linuxdvb_en50607_freq0` and minisatip `send_jess` agree.
//! * Timings (15 ms around commands, 50 ms after a Unicable command):
//!   dvb-sat.c `dvbsat_diseqc_set_input` and tvheadend (standard: 4..22 ms
//!   after voltage change, 2..60 ms after the command).
//!
//! Promises: pure, no panics; out-of-range settings are errors.

use capbox_sys::bindings as b;

use crate::dvb::lnb::{LnbError, LnbPlan, LnbSetup, Voltage};
use crate::dvb::tuning::Polarization;

/// Tone burst (mini DiSEqC), `fe_sec_mini_cmd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Burst {
    A,
    B,
}

impl Burst {
    pub fn raw(self) -> u32 {
        match self {
            Burst::A => b::SEC_MINI_A,
            Burst::B => b::SEC_MINI_B,
        }
    }
}

/// Which Unicable standard an SCR speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrStandard {
    /// Unicable I: 8 user bands, tuning word in 4 MHz steps.
    En50494,
    /// Unicable II / JESS: 32 user bands, 1 MHz steps, 64 positions.
    En50607,
}

/// A Unicable satellite channel router: the user band this tuner owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scr {
    pub standard: ScrStandard,
    /// User band (slot) number, 0-based: 0..7 (EN 50494), 0..31 (EN 50607).
    pub user_band: u8,
    /// Centre frequency of the user band on the cable, MHz.
    pub ub_freq_mhz: u32,
    /// Satellite position: 0..1 (EN 50494), 0..63 (EN 50607).
    pub position: u8,
    pub pin: Option<u8>,
}

/// The command for one tune and where the tuner must then tune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrCommand {
    pub bytes: Vec<u8>,
    /// Tuning word as sent.
    pub t: u16,
    /// DTV_FREQUENCY for the tuner, kHz.
    pub tune_khz: u32,
    /// How far the tuned frequency is from the nominal user band: the
    /// rounding of the tuning word moves the transponder on the cable.
    pub offset_khz: i32,
}

impl Scr {
    /// The channel-change command for a transponder at `if_khz` (after the
    /// SCR's own LNB LOF), and the tuner frequency that follows.
    pub fn command(
        &self,
        if_khz: u32,
        pol: Polarization,
        high_band: bool,
    ) -> Result<ScrCommand, LnbError> {
        let pol_h = u8::from(pol.is_18v());
        let band = u8::from(high_band);
        let ub_khz = i64::from(self.ub_freq_mhz) * 1000;
        let ifk = i64::from(if_khz);
        match self.standard {
            ScrStandard::En50494 => {
                if self.user_band > 7 || self.position > 1 {
                    return Err(LnbError::BadSwitch(format!(
                        "EN 50494 user band {} / position {} out of range 0..7 / 0..1",
                        self.user_band, self.position
                    )));
                }
                // Nearest 4 MHz step (round half up, in kHz so a fractional
                // IF rounds the same way as the integer-MHz sources).
                let t = (ifk + ub_khz + 2000).div_euclid(4000) - 350;
                if !(0..=1023).contains(&t) {
                    return Err(LnbError::ScrOutOfRange {
                        if_khz,
                        ub_mhz: self.ub_freq_mhz,
                        t,
                    });
                }
                let tune = (t + 350) * 4000 - ifk;
                let d1 = (self.user_band << 5)
                    | (self.position << 4)
                    | (pol_h << 3)
                    | (band << 2)
                    | ((t >> 8) as u8 & 0x03);
                let d2 = (t & 0xff) as u8;
                let bytes = match self.pin {
                    None => vec![0xE0, 0x10, 0x5A, d1, d2],
                    Some(pin) => vec![0xE0, 0x10, 0x5C, d1, d2, pin],
                };
                Ok(ScrCommand {
                    bytes,
                    t: t as u16,
                    tune_khz: clamp_u32(tune),
                    offset_khz: (tune - ub_khz) as i32,
                })
            }
            ScrStandard::En50607 => {
                if self.user_band > 31 || self.position > 63 {
                    return Err(LnbError::BadSwitch(format!(
                        "EN 50607 user band {} / position {} out of range 0..31 / 0..63",
                        self.user_band, self.position
                    )));
                }
                let t = (ifk + 500).div_euclid(1000) - 100;
                if !(0..=2047).contains(&t) {
                    return Err(LnbError::ScrOutOfRange {
                        if_khz,
                        ub_mhz: self.ub_freq_mhz,
                        t,
                    });
                }
                let d1 = (self.user_band << 3) | ((t >> 8) as u8 & 0x07);
                let d2 = (t & 0xff) as u8;
                let d3 = (self.position << 2) | (pol_h << 1) | band;
                let bytes = match self.pin {
                    None => vec![0x70, d1, d2, d3],
                    Some(pin) => vec![0x71, d1, d2, d3, pin],
                };
                // The SCR centres (T + 100) MHz on the user band; a
                // transponder off that grid lands off the user band by the
                // same amount, mirrored like EN 50494's mixer (tune =
                // LO − IF with LO = (T+100) MHz + f_UB). tvheadend tunes the
                // bare user band; the difference is at most 500 kHz.
                let tune = ub_khz + (t + 100) * 1000 - ifk;
                Ok(ScrCommand {
                    bytes,
                    t: t as u16,
                    tune_khz: clamp_u32(tune),
                    offset_khz: (tune - ub_khz) as i32,
                })
            }
        }
    }
}

fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

/// The switch gear between the LNB(s) and a tuner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switch {
    /// LNB straight on the tuner (or a slave on a shared cable).
    None,
    /// Tone burst A/B (2-way mini DiSEqC switch).
    ToneBurst(Burst),
    /// DiSEqC 1.0 committed switch, port 0..3 (A/A, A/B, B/A, B/B).
    Committed {
        port: u8,
    },
    /// DiSEqC 1.1 uncommitted switch, port 0..15.
    Uncommitted {
        port: u8,
    },
    /// A 1.1 switch in front of 1.0 switches ("cascade"): uncommitted first.
    Cascade {
        committed: u8,
        uncommitted: u8,
    },
    Unicable(Scr),
}

/// One step for the frontend to execute, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SetVoltage(Voltage),
    /// 22 kHz continuous tone on/off.
    SetTone(bool),
    /// FE_DISEQC_SEND_MASTER_CMD with these 3..6 bytes.
    Send(Vec<u8>),
    Burst(Burst),
    Sleep(u32),
}

/// `E0 10 38 Fx`: write N0 (committed switches). x = port<<2 | pol_h<<1 | high.
pub fn committed(port: u8, pol_h: bool, high_band: bool) -> Result<[u8; 4], LnbError> {
    if port > 3 {
        return Err(LnbError::BadSwitch(format!(
            "DiSEqC 1.0 port {port} out of range 0..3"
        )));
    }
    Ok([
        0xE0,
        0x10,
        0x38,
        0xF0 | (port << 2) | (u8::from(pol_h) << 1) | u8::from(high_band),
    ])
}

/// `E0 10 39 Fx`: write N1 (uncommitted switches), x = port 0..15.
pub fn uncommitted(port: u8) -> Result<[u8; 4], LnbError> {
    if port > 15 {
        return Err(LnbError::BadSwitch(format!(
            "DiSEqC 1.1 port {port} out of range 0..15"
        )));
    }
    Ok([0xE0, 0x10, 0x39, 0xF0 | port])
}

/// Settle time after a voltage change or before a command, ms.
pub const SETTLE_MS: u32 = 15;
/// Time an SCR needs after a Unicable command, ms (tvheadend's default).
pub const SCR_COMMAND_MS: u32 = 50;

/// The actions that prepare the LNB path for a transponder already planned
/// by [`crate::dvb::lnb::Lnb::plan`]. After them the frontend sets the DVBv5
/// properties (`Tuning::to_props`). `is_slave`: a tuner on a shared cable
/// that must not touch voltage or tone gets no actions at all.
pub fn tune_sequence(
    setup: &LnbSetup,
    plan: &LnbPlan,
    pol: Polarization,
    is_slave: bool,
) -> Result<Vec<Action>, LnbError> {
    if is_slave {
        return Ok(Vec::new());
    }
    let pol_h = pol.is_18v();
    let mut a = Vec::new();
    match &setup.switch {
        Switch::None => {
            a.push(Action::SetVoltage(plan.voltage));
            a.push(Action::SetTone(plan.tone));
        }
        Switch::Unicable(scr) => {
            let cmd = scr.command(plan.if_khz, pol, plan.high_band)?;
            // The tone would disturb the SCR; 18 V signals "command coming",
            // the SCR then needs 13 V back to run (EN 50494 §7).
            a.push(Action::SetTone(false));
            a.push(Action::SetVoltage(Voltage::V18));
            a.push(Action::Sleep(SETTLE_MS));
            a.push(Action::Send(cmd.bytes));
            a.push(Action::Sleep(SCR_COMMAND_MS));
            a.push(Action::SetVoltage(Voltage::V13));
        }
        sw => {
            a.push(Action::SetVoltage(plan.voltage));
            // DiSEqC is modulated on the 22 kHz: the continuous tone must be
            // off while a message or burst is sent.
            a.push(Action::SetTone(false));
            a.push(Action::Sleep(SETTLE_MS));
            let burst = match sw {
                Switch::ToneBurst(burst) => *burst,
                Switch::Committed { port } => {
                    a.push(Action::Send(
                        committed(*port, pol_h, plan.high_band)?.to_vec(),
                    ));
                    a.push(Action::Sleep(SETTLE_MS));
                    // dvb-sat.c and minisatip follow the command with the
                    // burst for the same position, for simple A/B switches
                    // that only understand the burst.
                    if port & 1 == 1 {
                        Burst::B
                    } else {
                        Burst::A
                    }
                }
                Switch::Uncommitted { port } => {
                    a.push(Action::Send(uncommitted(*port)?.to_vec()));
                    a.push(Action::Sleep(SETTLE_MS));
                    if port & 1 == 1 {
                        Burst::B
                    } else {
                        Burst::A
                    }
                }
                Switch::Cascade {
                    committed: c,
                    uncommitted: u,
                } => {
                    a.push(Action::Send(uncommitted(*u)?.to_vec()));
                    a.push(Action::Sleep(SETTLE_MS));
                    a.push(Action::Send(committed(*c, pol_h, plan.high_band)?.to_vec()));
                    a.push(Action::Sleep(SETTLE_MS));
                    if c & 1 == 1 {
                        Burst::B
                    } else {
                        Burst::A
                    }
                }
                Switch::None | Switch::Unicable(_) => Burst::A,
            };
            a.push(Action::Burst(burst));
            a.push(Action::Sleep(SETTLE_MS));
            a.push(Action::SetTone(plan.tone));
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvb::lnb::Lnb;

    #[test]
    fn committed_bytes_all_ports() {
        // Port/position in bits 2-3, polarisation (H) bit 1, band bit 0:
        // dvb-sat.c `data0 = 0xf0 | high_band | (pol_v ? 0 : 2) | sat << 2`.
        assert_eq!(
            committed(0, false, false).unwrap(),
            [0xE0, 0x10, 0x38, 0xF0]
        );
        assert_eq!(committed(0, false, true).unwrap(), [0xE0, 0x10, 0x38, 0xF1]);
        assert_eq!(committed(0, true, false).unwrap(), [0xE0, 0x10, 0x38, 0xF2]);
        assert_eq!(
            committed(1, false, false).unwrap(),
            [0xE0, 0x10, 0x38, 0xF4]
        );
        assert_eq!(committed(2, true, true).unwrap(), [0xE0, 0x10, 0x38, 0xFB]);
        assert_eq!(committed(3, true, true).unwrap(), [0xE0, 0x10, 0x38, 0xFF]);
        assert!(committed(4, false, false).is_err());
    }

    #[test]
    fn uncommitted_bytes() {
        assert_eq!(uncommitted(0).unwrap(), [0xE0, 0x10, 0x39, 0xF0]);
        assert_eq!(uncommitted(15).unwrap(), [0xE0, 0x10, 0x39, 0xFF]);
        assert!(uncommitted(16).is_err());
    }

    fn scr(standard: ScrStandard, ub: u8, f: u32, pos: u8, pin: Option<u8>) -> Scr {
        Scr {
            standard,
            user_band: ub,
            ub_freq_mhz: f,
            position: pos,
            pin,
        }
    }

    #[test]
    fn en50494_tuning_word() {
        // Astra 11362 V low band → IF 1612 MHz; user band 0 at 1210 MHz:
        // T = round((1612 + 1210) / 4) − 350 = round(705.5) − 350 = 356
        // (the integer form (1612 + 1210 + 2) / 4 − 350 of tvheadend and
        // minisatip gives the same 356 = 0x164).
        let s = scr(ScrStandard::En50494, 0, 1210, 0, None);
        let c = s.command(1_612_000, Polarization::Vertical, false).unwrap();
        assert_eq!(c.t, 356);
        assert_eq!(c.bytes, vec![0xE0, 0x10, 0x5A, 0x01, 0x64]);
        // (356 + 350) * 4 = 2824 MHz LO; 2824 − 1612 = 1212 MHz: the
        // rounding put the transponder 2 MHz above the user band.
        assert_eq!(c.tune_khz, 1_212_000);
        assert_eq!(c.offset_khz, 2_000);
    }

    #[test]
    fn en50494_bank_bits_and_pin() {
        // 12522 H high band → IF 1922; UB 3 at 1680 MHz, position B.
        // T = (1922 + 1680 + 2) / 4 − 350 = 901 − 350 = 551 = 0x227.
        // d1 = 3<<5 | 1<<4 | H<<3 | high<<2 | 0x2 = 0x60|0x10|0x08|0x04|0x02.
        let s = scr(ScrStandard::En50494, 3, 1680, 1, None);
        let c = s
            .command(1_922_000, Polarization::Horizontal, true)
            .unwrap();
        assert_eq!(c.bytes, vec![0xE0, 0x10, 0x5A, 0x7E, 0x27]);
        assert_eq!(c.tune_khz, (551 + 350) * 4000 - 1_922_000);
        let s = scr(ScrStandard::En50494, 3, 1680, 1, Some(0x42));
        let c = s
            .command(1_922_000, Polarization::Horizontal, true)
            .unwrap();
        assert_eq!(c.bytes, vec![0xE0, 0x10, 0x5C, 0x7E, 0x27, 0x42]);
        assert!(scr(ScrStandard::En50494, 8, 1210, 0, None)
            .command(1_612_000, Polarization::Vertical, false)
            .is_err());
    }

    #[test]
    fn en50494_rounding_offset_bounded() {
        let s = scr(ScrStandard::En50494, 1, 1420, 0, None);
        for if_mhz in 950..=2150u32 {
            let c = s
                .command(if_mhz * 1000, Polarization::Vertical, false)
                .unwrap();
            assert!((-1999..=2000).contains(&c.offset_khz), "{if_mhz}");
            // What the tuner tunes is where the transponder lands.
            let lo = (i64::from(c.t) + 350) * 4000;
            assert_eq!(i64::from(c.tune_khz), lo - i64::from(if_mhz) * 1000);
        }
    }

    #[test]
    fn en50607_command() {
        // IF 1612 MHz → T = 1512 = 0x5E8; UB 12 at 1420 MHz; position 5,
        // vertical, low band: d1 = 12<<3 | 0x5 = 0x65, d2 = 0xE8,
        // d3 = 5<<2 = 0x14.
        let s = scr(ScrStandard::En50607, 12, 1420, 5, None);
        let c = s.command(1_612_000, Polarization::Vertical, false).unwrap();
        assert_eq!(c.t, 1512);
        assert_eq!(c.bytes, vec![0x70, 0x65, 0xE8, 0x14]);
        assert_eq!(c.tune_khz, 1_420_000);
        let s = scr(ScrStandard::En50607, 31, 2100, 63, Some(7));
        let c = s
            .command(1_922_400, Polarization::Horizontal, true)
            .unwrap();
        // T = round(1922.4) − 100 = 1822 = 0x71E; d3 = 63<<2 | 2 | 1.
        assert_eq!(c.bytes, vec![0x71, 0xFF, 0x1E, 0xFF, 7]);
        assert_eq!(c.offset_khz, -400);
        assert!(scr(ScrStandard::En50607, 32, 1420, 0, None)
            .command(1_612_000, Polarization::Vertical, false)
            .is_err());
    }

    #[test]
    fn sequence_plain_lnb() {
        let setup = LnbSetup::new(Lnb::UNIVERSAL);
        let plan = Lnb::UNIVERSAL
            .plan(12_522_000, Polarization::Horizontal)
            .unwrap();
        let seq = tune_sequence(&setup, &plan, Polarization::Horizontal, false).unwrap();
        assert_eq!(
            seq,
            vec![Action::SetVoltage(Voltage::V18), Action::SetTone(true)]
        );
        assert!(tune_sequence(&setup, &plan, Polarization::Horizontal, true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn sequence_committed() {
        let setup = LnbSetup {
            lnb: Lnb::UNIVERSAL,
            switch: Switch::Committed { port: 1 },
        };
        let plan = Lnb::UNIVERSAL
            .plan(11_362_000, Polarization::Vertical)
            .unwrap();
        let seq = tune_sequence(&setup, &plan, Polarization::Vertical, false).unwrap();
        assert_eq!(
            seq,
            vec![
                Action::SetVoltage(Voltage::V13),
                Action::SetTone(false),
                Action::Sleep(15),
                Action::Send(vec![0xE0, 0x10, 0x38, 0xF4]),
                Action::Sleep(15),
                Action::Burst(Burst::B),
                Action::Sleep(15),
                Action::SetTone(false),
            ]
        );
    }

    #[test]
    fn sequence_cascade_and_burst() {
        let setup = LnbSetup {
            lnb: Lnb::UNIVERSAL,
            switch: Switch::Cascade {
                committed: 2,
                uncommitted: 3,
            },
        };
        let plan = Lnb::UNIVERSAL
            .plan(12_603_000, Polarization::Vertical)
            .unwrap();
        let seq = tune_sequence(&setup, &plan, Polarization::Vertical, false).unwrap();
        let sends: Vec<&Action> = seq
            .iter()
            .filter(|a| matches!(a, Action::Send(_)))
            .collect();
        assert_eq!(
            sends,
            vec![
                &Action::Send(vec![0xE0, 0x10, 0x39, 0xF3]),
                &Action::Send(vec![0xE0, 0x10, 0x38, 0xF9]),
            ]
        );
        assert_eq!(seq.last(), Some(&Action::SetTone(true)));
        let setup = LnbSetup {
            lnb: Lnb::UNIVERSAL,
            switch: Switch::ToneBurst(Burst::B),
        };
        let seq = tune_sequence(&setup, &plan, Polarization::Vertical, false).unwrap();
        assert!(!seq.iter().any(|a| matches!(a, Action::Send(_))));
        assert!(seq.contains(&Action::Burst(Burst::B)));
    }

    #[test]
    fn sequence_unicable() {
        let s = scr(ScrStandard::En50494, 0, 1210, 0, None);
        let setup = LnbSetup {
            lnb: Lnb::UNIVERSAL,
            switch: Switch::Unicable(s),
        };
        let plan = Lnb::UNIVERSAL
            .plan(11_362_000, Polarization::Vertical)
            .unwrap();
        let seq = tune_sequence(&setup, &plan, Polarization::Vertical, false).unwrap();
        assert_eq!(
            seq,
            vec![
                Action::SetTone(false),
                Action::SetVoltage(Voltage::V18),
                Action::Sleep(15),
                Action::Send(vec![0xE0, 0x10, 0x5A, 0x01, 0x64]),
                Action::Sleep(50),
                Action::SetVoltage(Voltage::V13),
            ]
        );
        assert_eq!(
            setup
                .tuner_frequency_khz(11_362_000, Polarization::Vertical)
                .unwrap(),
            1_212_000
        );
    }
}
