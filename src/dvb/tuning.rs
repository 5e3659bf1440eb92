//! Typed tuning parameters (`Tuning`) and their DVBv5 property sequence.
//!
//! Owns: what a mux is, as the frontend needs it — delivery system, frequency,
//! symbol rate, modulation, code rates, multistream (ISI + PLS) or PLP — parsed
//! from config key/values, dvbv5 channel-file keys and `capbox tune` argument
//! strings, validated against the standards (EN 300 421 DVB-S, EN 302 307
//! DVB-S2, EN 300 744 DVB-T, EN 302 755 DVB-T2, EN 300 429 DVB-C), and turned
//! into the exact `(DTV_* command, value)` list for `FE_SET_PROPERTY`.
//!
//! Promises: no panics on any input; every error names the parameter and the
//! value; no I/O here (the frontend engineer issues the ioctls).
//!
//! ## `capbox tune` argument syntax
//!
//! ```text
//! dvbs  <freq> <pol> <symbol_rate> [fec] [key=value...]
//! dvbs2 <freq> <pol> <symbol_rate> [modulation] [fec] [rolloff] [pilot] [key=value...]
//! dvbt  <freq> [bandwidth] [key=value...]
//! dvbt2 <freq> [bandwidth] [key=value...]
//! dvbc  <freq> <symbol_rate> [modulation] [fec] [key=value...]
//! ```
//!
//! * Satellite frequencies are the transponder frequency in kHz
//!   (`11362000`), or with a unit (`11362MHz`, `11.362GHz`); terrestrial and
//!   cable frequencies are in Hz (`474000000`) or with a unit (`474MHz`).
//! * Polarisation: `H`, `V`, `L`, `R` (or the dvbv5 words `HORIZONTAL`, ...).
//! * Symbol rate in symbols/s (`22000000`) or with a unit (`22000k`, `22M`).
//! * Modulation: `qpsk`, `8psk`, `16apsk`, `32apsk`, `qam16`..`qam256`,
//!   `auto` (dvbv5 spellings `PSK/8`, `QAM/64` also accepted).
//! * FEC / code rates: `1/2`, `2/3`, `3/4`, `3/5`, `4/5`, `5/6`, `7/8`, `8/9`,
//!   `9/10`, `auto`, `none`. Rolloff: `0.35`, `0.25`, `0.20` (or `35`...).
//!   Pilot: `pilot=on|off|auto` or a positional `on`/`off`.
//! * Bandwidth: `1.7MHz`, `5MHz`, `6MHz`, `7MHz`, `8MHz`, `10MHz` or Hz.
//! * Keys: `isi=<0..255>` (DVB-S2 input stream), `pls_mode=root|gold`,
//!   `pls_code=<n>` (or `pls=gold:<n>` / `pls=root:<n>`), `plp=<0..255>`
//!   (DVB-T2), `code_rate_hp=`, `code_rate_lp=`, `guard=`, `mode=` (FFT,
//!   e.g. `8k`), `hierarchy=`, `modulation=`, `fec=`, `rolloff=`, `pilot=`.
//!
//! Examples: `dvbs2 11362000 V 22000000 8psk 3/4 0.35`,
//! `dvbt 474000000 8MHz`, `dvbt2 490MHz 8MHz plp=1`, `dvbc 474MHz 6900k qam256`.

use std::fmt;

use capbox_sys::bindings as b;

use crate::dvb::lnb::{LnbError, LnbSetup};

/// `NO_STREAM_ID_FILTER` of linux/dvb/frontend.h: no ISI / PLP selection.
pub const NO_STREAM_ID_FILTER: u32 = !0u32;

/// Satellite polarisation as broadcast (EN 300 468 satellite_delivery_system_descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Polarization {
    Horizontal,
    Vertical,
    Left,
    Right,
}

impl Polarization {
    /// Whether the LNB selects it with 18 V (horizontal and circular left)
    /// rather than 13 V (vertical and circular right).
    pub fn is_18v(self) -> bool {
        matches!(self, Polarization::Horizontal | Polarization::Left)
    }
    /// dvbv5 channel-file spelling.
    pub fn dvbv5_name(self) -> &'static str {
        match self {
            Polarization::Horizontal => "HORIZONTAL",
            Polarization::Vertical => "VERTICAL",
            Polarization::Left => "LEFT",
            Polarization::Right => "RIGHT",
        }
    }
    fn parse(v: &str) -> Option<Self> {
        match v.to_ascii_uppercase().as_str() {
            "H" | "HORIZONTAL" => Some(Polarization::Horizontal),
            "V" | "VERTICAL" => Some(Polarization::Vertical),
            "L" | "LEFT" => Some(Polarization::Left),
            "R" | "RIGHT" => Some(Polarization::Right),
            _ => None,
        }
    }
}

/// Constellation (`fe_modulation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modulation {
    Qpsk,
    Psk8,
    Apsk16,
    Apsk32,
    Qam16,
    Qam32,
    Qam64,
    Qam128,
    Qam256,
    QamAuto,
}

impl Modulation {
    pub fn raw(self) -> u32 {
        match self {
            Modulation::Qpsk => b::QPSK,
            Modulation::Psk8 => b::PSK_8,
            Modulation::Apsk16 => b::APSK_16,
            Modulation::Apsk32 => b::APSK_32,
            Modulation::Qam16 => b::QAM_16,
            Modulation::Qam32 => b::QAM_32,
            Modulation::Qam64 => b::QAM_64,
            Modulation::Qam128 => b::QAM_128,
            Modulation::Qam256 => b::QAM_256,
            Modulation::QamAuto => b::QAM_AUTO,
        }
    }
    /// dvbv5 channel-file spelling (libdvbv5 `fe_modulation_name`).
    pub fn dvbv5_name(self) -> &'static str {
        match self {
            Modulation::Qpsk => "QPSK",
            Modulation::Psk8 => "PSK/8",
            Modulation::Apsk16 => "APSK/16",
            Modulation::Apsk32 => "APSK/32",
            Modulation::Qam16 => "QAM/16",
            Modulation::Qam32 => "QAM/32",
            Modulation::Qam64 => "QAM/64",
            Modulation::Qam128 => "QAM/128",
            Modulation::Qam256 => "QAM/256",
            Modulation::QamAuto => "QAM/AUTO",
        }
    }
    fn parse(v: &str) -> Option<Self> {
        let s: String = v
            .to_ascii_uppercase()
            .chars()
            .filter(|c| !matches!(c, '/' | '-' | '_'))
            .collect();
        Some(match s.as_str() {
            "QPSK" => Modulation::Qpsk,
            "PSK8" | "8PSK" => Modulation::Psk8,
            "APSK16" | "16APSK" => Modulation::Apsk16,
            "APSK32" | "32APSK" => Modulation::Apsk32,
            "QAM16" | "16QAM" => Modulation::Qam16,
            "QAM32" | "32QAM" => Modulation::Qam32,
            "QAM64" | "64QAM" => Modulation::Qam64,
            "QAM128" | "128QAM" => Modulation::Qam128,
            "QAM256" | "256QAM" => Modulation::Qam256,
            "QAMAUTO" | "AUTO" => Modulation::QamAuto,
            _ => return None,
        })
    }
}

/// Inner FEC / code rate (`fe_code_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeRate {
    None,
    R1_2,
    R2_3,
    R3_4,
    R4_5,
    R5_6,
    R6_7,
    R7_8,
    R8_9,
    R3_5,
    R9_10,
    R2_5,
    Auto,
}

impl CodeRate {
    pub fn raw(self) -> u32 {
        match self {
            CodeRate::None => b::FEC_NONE,
            CodeRate::R1_2 => b::FEC_1_2,
            CodeRate::R2_3 => b::FEC_2_3,
            CodeRate::R3_4 => b::FEC_3_4,
            CodeRate::R4_5 => b::FEC_4_5,
            CodeRate::R5_6 => b::FEC_5_6,
            CodeRate::R6_7 => b::FEC_6_7,
            CodeRate::R7_8 => b::FEC_7_8,
            CodeRate::R8_9 => b::FEC_8_9,
            CodeRate::R3_5 => b::FEC_3_5,
            CodeRate::R9_10 => b::FEC_9_10,
            CodeRate::R2_5 => b::FEC_2_5,
            CodeRate::Auto => b::FEC_AUTO,
        }
    }
    pub fn dvbv5_name(self) -> &'static str {
        match self {
            CodeRate::None => "NONE",
            CodeRate::R1_2 => "1/2",
            CodeRate::R2_3 => "2/3",
            CodeRate::R3_4 => "3/4",
            CodeRate::R4_5 => "4/5",
            CodeRate::R5_6 => "5/6",
            CodeRate::R6_7 => "6/7",
            CodeRate::R7_8 => "7/8",
            CodeRate::R8_9 => "8/9",
            CodeRate::R3_5 => "3/5",
            CodeRate::R9_10 => "9/10",
            CodeRate::R2_5 => "2/5",
            CodeRate::Auto => "AUTO",
        }
    }
    fn parse(v: &str) -> Option<Self> {
        Some(match v.to_ascii_uppercase().as_str() {
            "NONE" => CodeRate::None,
            "1/2" => CodeRate::R1_2,
            "2/3" => CodeRate::R2_3,
            "3/4" => CodeRate::R3_4,
            "4/5" => CodeRate::R4_5,
            "5/6" => CodeRate::R5_6,
            "6/7" => CodeRate::R6_7,
            "7/8" => CodeRate::R7_8,
            "8/9" => CodeRate::R8_9,
            "3/5" => CodeRate::R3_5,
            "9/10" => CodeRate::R9_10,
            "2/5" => CodeRate::R2_5,
            "AUTO" => CodeRate::Auto,
            _ => return None,
        })
    }
}

/// DVB-S2 roll-off (`fe_rolloff`); DVB-S is always 0.35.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rolloff {
    R35,
    R25,
    R20,
    Auto,
}

impl Rolloff {
    pub fn raw(self) -> u32 {
        match self {
            Rolloff::R35 => b::ROLLOFF_35,
            Rolloff::R25 => b::ROLLOFF_25,
            Rolloff::R20 => b::ROLLOFF_20,
            Rolloff::Auto => b::ROLLOFF_AUTO,
        }
    }
    pub fn dvbv5_name(self) -> &'static str {
        match self {
            Rolloff::R35 => "35",
            Rolloff::R25 => "25",
            Rolloff::R20 => "20",
            Rolloff::Auto => "AUTO",
        }
    }
    fn parse(v: &str) -> Option<Self> {
        Some(match v.to_ascii_uppercase().as_str() {
            "35" | "0.35" | ".35" => Rolloff::R35,
            "25" | "0.25" | ".25" => Rolloff::R25,
            "20" | "0.20" | "0.2" | ".20" | ".2" => Rolloff::R20,
            "AUTO" => Rolloff::Auto,
            _ => return None,
        })
    }
}

/// DVB-S2 pilot symbols (`fe_pilot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pilot {
    On,
    Off,
    Auto,
}

impl Pilot {
    pub fn raw(self) -> u32 {
        match self {
            Pilot::On => b::PILOT_ON,
            Pilot::Off => b::PILOT_OFF,
            Pilot::Auto => b::PILOT_AUTO,
        }
    }
    pub fn dvbv5_name(self) -> &'static str {
        match self {
            Pilot::On => "ON",
            Pilot::Off => "OFF",
            Pilot::Auto => "AUTO",
        }
    }
    fn parse(v: &str) -> Option<Self> {
        Some(match v.to_ascii_uppercase().as_str() {
            "ON" => Pilot::On,
            "OFF" => Pilot::Off,
            "AUTO" => Pilot::Auto,
            _ => return None,
        })
    }
}

/// OFDM guard interval (`fe_guard_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuardInterval {
    G1_32,
    G1_16,
    G1_8,
    G1_4,
    G1_128,
    G19_128,
    G19_256,
    Auto,
}

impl GuardInterval {
    pub fn raw(self) -> u32 {
        match self {
            GuardInterval::G1_32 => b::GUARD_INTERVAL_1_32,
            GuardInterval::G1_16 => b::GUARD_INTERVAL_1_16,
            GuardInterval::G1_8 => b::GUARD_INTERVAL_1_8,
            GuardInterval::G1_4 => b::GUARD_INTERVAL_1_4,
            GuardInterval::G1_128 => b::GUARD_INTERVAL_1_128,
            GuardInterval::G19_128 => b::GUARD_INTERVAL_19_128,
            GuardInterval::G19_256 => b::GUARD_INTERVAL_19_256,
            GuardInterval::Auto => b::GUARD_INTERVAL_AUTO,
        }
    }
    pub fn dvbv5_name(self) -> &'static str {
        match self {
            GuardInterval::G1_32 => "1/32",
            GuardInterval::G1_16 => "1/16",
            GuardInterval::G1_8 => "1/8",
            GuardInterval::G1_4 => "1/4",
            GuardInterval::G1_128 => "1/128",
            GuardInterval::G19_128 => "19/128",
            GuardInterval::G19_256 => "19/256",
            GuardInterval::Auto => "AUTO",
        }
    }
    fn parse(v: &str) -> Option<Self> {
        Some(match v.to_ascii_uppercase().as_str() {
            "1/32" => GuardInterval::G1_32,
            "1/16" => GuardInterval::G1_16,
            "1/8" => GuardInterval::G1_8,
            "1/4" => GuardInterval::G1_4,
            "1/128" => GuardInterval::G1_128,
            "19/128" => GuardInterval::G19_128,
            "19/256" => GuardInterval::G19_256,
            "AUTO" => GuardInterval::Auto,
            _ => return None,
        })
    }
    fn t2_only(self) -> bool {
        matches!(
            self,
            GuardInterval::G1_128 | GuardInterval::G19_128 | GuardInterval::G19_256
        )
    }
}

/// OFDM FFT size (`fe_transmit_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransmissionMode {
    K1,
    K2,
    K4,
    K8,
    K16,
    K32,
    Auto,
}

impl TransmissionMode {
    pub fn raw(self) -> u32 {
        match self {
            TransmissionMode::K1 => b::TRANSMISSION_MODE_1K,
            TransmissionMode::K2 => b::TRANSMISSION_MODE_2K,
            TransmissionMode::K4 => b::TRANSMISSION_MODE_4K,
            TransmissionMode::K8 => b::TRANSMISSION_MODE_8K,
            TransmissionMode::K16 => b::TRANSMISSION_MODE_16K,
            TransmissionMode::K32 => b::TRANSMISSION_MODE_32K,
            TransmissionMode::Auto => b::TRANSMISSION_MODE_AUTO,
        }
    }
    pub fn dvbv5_name(self) -> &'static str {
        match self {
            TransmissionMode::K1 => "1K",
            TransmissionMode::K2 => "2K",
            TransmissionMode::K4 => "4K",
            TransmissionMode::K8 => "8K",
            TransmissionMode::K16 => "16K",
            TransmissionMode::K32 => "32K",
            TransmissionMode::Auto => "AUTO",
        }
    }
    fn parse(v: &str) -> Option<Self> {
        Some(match v.to_ascii_uppercase().as_str() {
            "1K" => TransmissionMode::K1,
            "2K" => TransmissionMode::K2,
            "4K" => TransmissionMode::K4,
            "8K" => TransmissionMode::K8,
            "16K" => TransmissionMode::K16,
            "32K" => TransmissionMode::K32,
            "AUTO" => TransmissionMode::Auto,
            _ => return None,
        })
    }
}

/// DVB-T hierarchy (`fe_hierarchy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hierarchy {
    None,
    A1,
    A2,
    A4,
    Auto,
}

impl Hierarchy {
    pub fn raw(self) -> u32 {
        match self {
            Hierarchy::None => b::HIERARCHY_NONE,
            Hierarchy::A1 => b::HIERARCHY_1,
            Hierarchy::A2 => b::HIERARCHY_2,
            Hierarchy::A4 => b::HIERARCHY_4,
            Hierarchy::Auto => b::HIERARCHY_AUTO,
        }
    }
    pub fn dvbv5_name(self) -> &'static str {
        match self {
            Hierarchy::None => "NONE",
            Hierarchy::A1 => "1",
            Hierarchy::A2 => "2",
            Hierarchy::A4 => "4",
            Hierarchy::Auto => "AUTO",
        }
    }
    fn parse(v: &str) -> Option<Self> {
        Some(match v.to_ascii_uppercase().as_str() {
            "NONE" => Hierarchy::None,
            "1" => Hierarchy::A1,
            "2" => Hierarchy::A2,
            "4" => Hierarchy::A4,
            "AUTO" => Hierarchy::Auto,
            _ => return None,
        })
    }
}

/// DVB-S2 physical-layer scrambling: ETSI EN 302 307-1 §5.5.4. The "root"
/// is the 18-bit x-sequence state; the "gold" index n is how many steps from
/// the initial state 1. Default (no PLS signalled) is gold 0 == root 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlsMode {
    Root,
    Gold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pls {
    pub mode: PlsMode,
    pub code: u32,
}

impl Pls {
    pub const DEFAULT: Pls = Pls {
        mode: PlsMode::Gold,
        code: 0,
    };
    /// The gold index, as mainline's DTV_SCRAMBLING_SEQUENCE_INDEX wants it.
    pub fn gold(self) -> Option<u32> {
        match self.mode {
            PlsMode::Gold => Some(self.code),
            PlsMode::Root => root_to_gold(self.code),
        }
    }
    pub fn is_default(self) -> bool {
        self.gold() == Some(0)
    }
}

/// Gold index → root (x-sequence state). The LFSR is x^18 + x^7 + 1
/// (EN 302 307-1 §5.5.4); the same stepping is in DigitalDevices' dddvb
/// `apps/pls.c` and minisatip `pls_scrambling_index`.
pub fn gold_to_root(gold: u32) -> u32 {
    let mut x: u32 = 1;
    for _ in 0..gold.min(0x3ffff) {
        x = (((x ^ (x >> 7)) & 1) << 17) | (x >> 1);
    }
    x
}

/// Root → gold index, `None` if the root is not a state of the sequence.
pub fn root_to_gold(root: u32) -> Option<u32> {
    let mut x: u32 = 1;
    for g in 0..0x3ffffu32 {
        if x == root {
            return Some(g);
        }
        x = (((x ^ (x >> 7)) & 1) << 17) | (x >> 1);
    }
    None
}

/// How a frontend driver takes the PLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlsStyle {
    /// Mainline (DVB API 5.11+): DTV_STREAM_ID = ISI, and
    /// DTV_SCRAMBLING_SEQUENCE_INDEX = gold index.
    Mainline,
    /// TBS's own tree (tbsdtv/linux_media): DTV_STREAM_ID =
    /// ISI | pls_code << 8 | pls_mode << 26, mode 0 = root, 1 = gold.
    /// Decoded that way in its m88rs6060.c, gx1133.c and si2183.c
    /// (`pls_mode = (c->stream_id >> 26) & 3; pls_code = (c->stream_id >> 8)
    /// & 0x3ffff`); enigma2 and minisatip (DVB API < 5.11) encode the same.
    Tbs,
}

/// Satellite mux (DVB-S or DVB-S2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SatParams {
    /// Transponder (downlink) frequency in kHz, or an L-band IF when used
    /// without an LNB.
    pub frequency_khz: u32,
    pub symbol_rate: u32,
    pub polarization: Polarization,
    pub modulation: Modulation,
    pub fec: CodeRate,
    pub rolloff: Rolloff,
    pub pilot: Pilot,
    /// Input stream identifier (ISI) for multistream; `None` = all.
    pub stream_id: Option<u8>,
    pub pls: Pls,
}

/// Terrestrial mux (DVB-T or DVB-T2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerParams {
    pub frequency_hz: u32,
    /// 0 = let the driver decide (dvbv5's `BANDWIDTH_HZ = 0`).
    pub bandwidth_hz: u32,
    pub code_rate_hp: CodeRate,
    pub code_rate_lp: CodeRate,
    pub guard_interval: GuardInterval,
    pub transmission_mode: TransmissionMode,
    pub hierarchy: Hierarchy,
    pub modulation: Modulation,
    /// DVB-T2 PLP; `None` = driver default.
    pub plp_id: Option<u8>,
}

/// Cable mux (DVB-C annex A/C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CableParams {
    pub frequency_hz: u32,
    pub symbol_rate: u32,
    pub modulation: Modulation,
    pub fec: CodeRate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    DvbS(SatParams),
    DvbS2(SatParams),
    DvbT(TerParams),
    DvbT2(TerParams),
    DvbC(CableParams),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TuningError {
    /// A parameter the system needs is absent.
    Missing(&'static str),
    /// A value that cannot be read at all.
    BadValue {
        key: String,
        value: String,
    },
    /// A key that does not exist for this system.
    UnknownKey(String),
    /// The delivery system is not one capbox tunes (ATSC, ISDB, DVB-C annex B...).
    UnsupportedSystem(String),
    /// A readable value that the standard forbids here.
    Impossible(String),
    Lnb(LnbError),
}

impl fmt::Display for TuningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TuningError::Missing(k) => write!(f, "missing {k}"),
            TuningError::BadValue { key, value } => write!(f, "bad value {value:?} for {key}"),
            TuningError::UnknownKey(k) => write!(f, "unknown key {k:?}"),
            TuningError::UnsupportedSystem(s) => write!(f, "unsupported delivery system {s:?}"),
            TuningError::Impossible(s) => write!(f, "{s}"),
            TuningError::Lnb(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TuningError {}

impl From<LnbError> for TuningError {
    fn from(e: LnbError) -> Self {
        TuningError::Lnb(e)
    }
}

type Result<T> = std::result::Result<T, TuningError>;

fn bad(key: &str, value: &str) -> TuningError {
    TuningError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn impossible(s: String) -> TuningError {
    TuningError::Impossible(s)
}

/// Delivery systems `Tuning` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    DvbS,
    DvbS2,
    DvbT,
    DvbT2,
    DvbC,
}

impl System {
    /// Accepts dvbv5 names (`DVBS2`, `DVBC/ANNEX_A`) and common spellings
    /// (`dvb-s2`, `dvbc`). `Err(UnsupportedSystem)` for real systems capbox
    /// does not tune (ATSC, ISDB-T, DVB-C annex B, DTMB...).
    pub fn parse(v: &str) -> Result<System> {
        let s: String = v
            .to_ascii_uppercase()
            .chars()
            .filter(|c| *c != '-')
            .collect();
        Ok(match s.as_str() {
            "DVBS" => System::DvbS,
            "DVBS2" => System::DvbS2,
            "DVBT" => System::DvbT,
            "DVBT2" => System::DvbT2,
            "DVBC" | "DVBC/ANNEX_A" | "DVBC/ANNEX_C" | "DVBC_ANNEX_A" | "DVBC_ANNEX_AC" => {
                System::DvbC
            }
            "ATSC" | "ATSCMH" | "DVBC/ANNEX_B" | "ISDBT" | "ISDBS" | "ISDBC" | "DTMB" | "DVBH"
            | "DSS" | "TURBO" | "CMMB" | "DAB" | "DVBC2" => {
                return Err(TuningError::UnsupportedSystem(v.to_string()))
            }
            _ => return Err(bad("DELIVERY_SYSTEM", v)),
        })
    }
    pub fn raw(self) -> u32 {
        match self {
            System::DvbS => b::SYS_DVBS,
            System::DvbS2 => b::SYS_DVBS2,
            System::DvbT => b::SYS_DVBT,
            System::DvbT2 => b::SYS_DVBT2,
            System::DvbC => b::SYS_DVBC_ANNEX_A,
        }
    }
    pub fn dvbv5_name(self) -> &'static str {
        match self {
            System::DvbS => "DVBS",
            System::DvbS2 => "DVBS2",
            System::DvbT => "DVBT",
            System::DvbT2 => "DVBT2",
            System::DvbC => "DVBC/ANNEX_A",
        }
    }
}

/// Parses an unsigned number with an optional unit; `units` maps a unit suffix
/// (lower case) to a multiplier of the base unit. Decimal
/// fractions are allowed with a unit (`1.7MHz`, `11.362GHz`).
fn parse_scaled(v: &str, units: &[(&str, u64)]) -> Option<u32> {
    let t = v.trim();
    let lower = t.to_ascii_lowercase();
    let (num, scale) = units
        .iter()
        .filter(|(u, _)| lower.ends_with(u))
        .max_by_key(|(u, _)| u.len())
        .map(|(u, s)| (t[..t.len() - u.len()].trim(), *s))
        .unwrap_or((t, 1));
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    // A fraction only with a unit, and only if it lands on a whole base unit.
    let int_v: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int_v.checked_mul(scale)?;
    if !frac.is_empty() {
        let den = 10u64.pow(frac.len() as u32);
        let f: u64 = frac.parse().ok()?;
        let scaled = f.checked_mul(scale)?;
        if scaled % den != 0 {
            return None;
        }
        value = value.checked_add(scaled / den)?;
    }
    u32::try_from(value).ok()
}

const KHZ_UNITS: &[(&str, u64)] = &[("khz", 1), ("mhz", 1_000), ("ghz", 1_000_000)];
const HZ_UNITS: &[(&str, u64)] = &[
    ("hz", 1),
    ("khz", 1_000),
    ("mhz", 1_000_000),
    ("ghz", 1_000_000_000),
];
const SR_UNITS: &[(&str, u64)] = &[
    ("k", 1_000),
    ("ks", 1_000),
    ("ksym", 1_000),
    ("m", 1_000_000),
    ("ms", 1_000_000),
    ("msym", 1_000_000),
];

fn parse_u32(key: &str, v: &str) -> Result<u32> {
    let t = v.trim();
    t.parse::<u32>().map_err(|_| bad(key, v))
}

fn parse_pls_mode(key: &str, v: &str) -> Result<PlsMode> {
    match v.trim().to_ascii_uppercase().as_str() {
        // dtv-scan-tables and enigma2 number them 0 = root, 1 = gold.
        "0" | "ROOT" => Ok(PlsMode::Root),
        "1" | "GOLD" => Ok(PlsMode::Gold),
        _ => Err(bad(key, v)),
    }
}

/// The raw, unvalidated bag of parameters every input syntax fills in.
#[derive(Debug, Default, Clone)]
struct Draft {
    system: Option<System>,
    frequency: Option<u32>,
    symbol_rate: Option<u32>,
    polarization: Option<Polarization>,
    modulation: Option<Modulation>,
    fec: Option<CodeRate>,
    rolloff: Option<Rolloff>,
    pilot: Option<Pilot>,
    stream_id: Option<u32>,
    pls_mode: Option<PlsMode>,
    pls_code: Option<u32>,
    bandwidth_hz: Option<u32>,
    code_rate_hp: Option<CodeRate>,
    code_rate_lp: Option<CodeRate>,
    guard_interval: Option<GuardInterval>,
    transmission_mode: Option<TransmissionMode>,
    hierarchy: Option<Hierarchy>,
}

/// Whether a key is one `Tuning` understands (dvbv5 or config spelling).
pub fn is_tuning_key(key: &str) -> bool {
    canonical_key(key).is_some()
}

fn canonical_key(key: &str) -> Option<&'static str> {
    let k = key.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    Some(match k.as_str() {
        "DELIVERY_SYSTEM" | "SYSTEM" | "DELSYS" => "DELIVERY_SYSTEM",
        "FREQUENCY" | "FREQ" => "FREQUENCY",
        "SYMBOL_RATE" | "SR" => "SYMBOL_RATE",
        "POLARIZATION" | "POLARISATION" | "POL" => "POLARIZATION",
        "MODULATION" | "MOD" => "MODULATION",
        "INNER_FEC" | "FEC" => "INNER_FEC",
        "ROLLOFF" | "ROLL_OFF" => "ROLLOFF",
        "PILOT" => "PILOT",
        "STREAM_ID" | "ISI" | "PLP" | "PLP_ID" => "STREAM_ID",
        "PLS_MODE" => "PLS_MODE",
        "PLS_CODE" => "PLS_CODE",
        "PLS" => "PLS",
        "BANDWIDTH_HZ" | "BANDWIDTH" | "BW" => "BANDWIDTH_HZ",
        "CODE_RATE_HP" => "CODE_RATE_HP",
        "CODE_RATE_LP" => "CODE_RATE_LP",
        "GUARD_INTERVAL" | "GUARD" | "GI" => "GUARD_INTERVAL",
        "TRANSMISSION_MODE" | "MODE" | "FFT" => "TRANSMISSION_MODE",
        "HIERARCHY" => "HIERARCHY",
        // Accepted and ignored: every driver in use does automatic inversion.
        "INVERSION" => "INVERSION",
        _ => return None,
    })
}

impl Draft {
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let v = value.trim();
        let canon = canonical_key(key).ok_or_else(|| TuningError::UnknownKey(key.to_string()))?;
        match canon {
            "DELIVERY_SYSTEM" => self.system = Some(System::parse(v)?),
            // Unit handling depends on the system; kept raw until build().
            "FREQUENCY" => self.frequency = Some(self.parse_frequency(key, v)?),
            "SYMBOL_RATE" => {
                self.symbol_rate = Some(parse_scaled(v, SR_UNITS).ok_or_else(|| bad(key, v))?)
            }
            "POLARIZATION" => {
                self.polarization = Some(Polarization::parse(v).ok_or_else(|| bad(key, v))?)
            }
            "MODULATION" => {
                self.modulation = Some(Modulation::parse(v).ok_or_else(|| bad(key, v))?)
            }
            "INNER_FEC" => self.fec = Some(CodeRate::parse(v).ok_or_else(|| bad(key, v))?),
            "ROLLOFF" => self.rolloff = Some(Rolloff::parse(v).ok_or_else(|| bad(key, v))?),
            "PILOT" => self.pilot = Some(Pilot::parse(v).ok_or_else(|| bad(key, v))?),
            "STREAM_ID" => self.stream_id = Some(parse_u32(key, v)?),
            "PLS_MODE" => self.pls_mode = Some(parse_pls_mode(key, v)?),
            "PLS_CODE" => self.pls_code = Some(parse_u32(key, v)?),
            "PLS" => {
                let (m, c) = v.split_once(':').ok_or_else(|| bad(key, v))?;
                self.pls_mode = Some(parse_pls_mode(key, m)?);
                self.pls_code = Some(parse_u32(key, c)?);
            }
            "BANDWIDTH_HZ" => {
                self.bandwidth_hz = Some(if v.eq_ignore_ascii_case("auto") {
                    0
                } else {
                    match parse_scaled(v, HZ_UNITS).ok_or_else(|| bad(key, v))? {
                        // "1.7 MHz" is 1.712 MHz in EN 302 755 (and in the
                        // kernel's DTV_BANDWIDTH_HZ).
                        1_700_000 => 1_712_000,
                        hz => hz,
                    }
                })
            }
            "CODE_RATE_HP" => {
                self.code_rate_hp = Some(CodeRate::parse(v).ok_or_else(|| bad(key, v))?)
            }
            "CODE_RATE_LP" => {
                self.code_rate_lp = Some(CodeRate::parse(v).ok_or_else(|| bad(key, v))?)
            }
            "GUARD_INTERVAL" => {
                self.guard_interval = Some(GuardInterval::parse(v).ok_or_else(|| bad(key, v))?)
            }
            "TRANSMISSION_MODE" => {
                self.transmission_mode =
                    Some(TransmissionMode::parse(v).ok_or_else(|| bad(key, v))?)
            }
            "HIERARCHY" => self.hierarchy = Some(Hierarchy::parse(v).ok_or_else(|| bad(key, v))?),
            "INVERSION" => {
                if !matches!(v.to_ascii_uppercase().as_str(), "AUTO" | "ON" | "OFF") {
                    return Err(bad(key, v));
                }
            }
            _ => return Err(TuningError::UnknownKey(key.to_string())),
        }
        Ok(())
    }

    /// Frequencies keep their native unit: kHz for satellite, Hz otherwise.
    /// A unit suffix is converted once the system is known, so the raw text
    /// is scaled here with the satellite/terrestrial rule of the current
    /// system (dvbv5 files always name DELIVERY_SYSTEM first; config may not,
    /// so `build` re-checks).
    fn parse_frequency(&self, key: &str, v: &str) -> Result<u32> {
        let sat = matches!(self.system, Some(System::DvbS | System::DvbS2));
        let units = if sat { KHZ_UNITS } else { HZ_UNITS };
        parse_scaled(v, units).ok_or_else(|| bad(key, v))
    }

    fn build(self) -> Result<Tuning> {
        let system = self.system.ok_or(TuningError::Missing("DELIVERY_SYSTEM"))?;
        let frequency = self.frequency.ok_or(TuningError::Missing("FREQUENCY"))?;
        match system {
            System::DvbS | System::DvbS2 => self.build_sat(system, frequency),
            System::DvbT | System::DvbT2 => self.build_ter(system, frequency),
            System::DvbC => self.build_cable(frequency),
        }
    }

    fn no_ter_keys(&self, sys: &str) -> Result<()> {
        let ter = self.bandwidth_hz.is_some()
            || self.code_rate_hp.is_some()
            || self.code_rate_lp.is_some()
            || self.guard_interval.is_some()
            || self.transmission_mode.is_some()
            || self.hierarchy.is_some();
        if ter {
            return Err(impossible(format!(
                "{sys} has no bandwidth, code rates HP/LP, guard interval, transmission mode or hierarchy"
            )));
        }
        Ok(())
    }

    fn build_sat(self, system: System, frequency_khz: u32) -> Result<Tuning> {
        let name = if system == System::DvbS {
            "DVB-S"
        } else {
            "DVB-S2"
        };
        self.no_ter_keys(name)?;
        check_sat_frequency(frequency_khz)?;
        let symbol_rate = self
            .symbol_rate
            .ok_or(TuningError::Missing("SYMBOL_RATE"))?;
        // EN 300 421 / EN 302 307 allow any rate; real demodulators (STV0910,
        // M88RS6060, Si2183) take 1..45 Msym/s (0.1..67.5 with S2X ones).
        if !(100_000..=67_500_000).contains(&symbol_rate) {
            return Err(impossible(format!(
                "{name} symbol rate {symbol_rate} sym/s out of range 100000..67500000 (give sym/s, e.g. 22000000)"
            )));
        }
        let polarization = self
            .polarization
            .ok_or(TuningError::Missing("POLARIZATION"))?;
        let fec = self.fec.unwrap_or(CodeRate::Auto);
        let stream_id = match self.stream_id {
            None | Some(NO_STREAM_ID_FILTER) => None,
            Some(v) if v <= 255 => Some(v as u8),
            Some(v) => {
                return Err(impossible(format!(
                    "{name} stream id (ISI) {v} out of range 0..255"
                )))
            }
        };
        let pls = match (self.pls_mode, self.pls_code) {
            (None, None) => Pls::DEFAULT,
            (mode, code) => Pls {
                mode: mode.unwrap_or(PlsMode::Gold),
                code: code.unwrap_or(0),
            },
        };
        if pls.code > 0x3ffff {
            return Err(impossible(format!(
                "PLS code {} out of range 0..262143 (18 bits)",
                pls.code
            )));
        }
        if pls.gold().is_none() {
            return Err(impossible(format!(
                "PLS root code {} is not a state of the DVB-S2 scrambling sequence",
                pls.code
            )));
        }
        match system {
            System::DvbS => {
                // QAM_AUTO is fe_modulation's only "auto" value: dvbv5 files
                // write it as QAM/AUTO for "unknown", whatever the system.
                let modulation = match self.modulation {
                    None | Some(Modulation::QamAuto) => Modulation::Qpsk,
                    Some(m) => m,
                };
                if modulation != Modulation::Qpsk {
                    return Err(impossible(format!(
                        "DVB-S is QPSK only, not {} (use dvbs2)",
                        modulation.dvbv5_name()
                    )));
                }
                if !matches!(
                    fec,
                    CodeRate::R1_2
                        | CodeRate::R2_3
                        | CodeRate::R3_4
                        | CodeRate::R5_6
                        | CodeRate::R7_8
                        | CodeRate::Auto
                        | CodeRate::None
                ) {
                    return Err(impossible(format!(
                        "DVB-S has no FEC {} (1/2, 2/3, 3/4, 5/6, 7/8)",
                        fec.dvbv5_name()
                    )));
                }
                let rolloff = self.rolloff.unwrap_or(Rolloff::R35);
                if !matches!(rolloff, Rolloff::R35 | Rolloff::Auto) {
                    return Err(impossible(format!(
                        "DVB-S roll-off is 0.35, not 0.{}",
                        rolloff.dvbv5_name()
                    )));
                }
                if stream_id.is_some() || !pls.is_default() {
                    return Err(impossible(
                        "DVB-S has no multistream (stream id / PLS): use dvbs2".to_string(),
                    ));
                }
                Ok(Tuning::DvbS(SatParams {
                    frequency_khz,
                    symbol_rate,
                    polarization,
                    modulation,
                    fec,
                    rolloff: Rolloff::R35,
                    pilot: self.pilot.unwrap_or(Pilot::Auto),
                    stream_id: None,
                    pls: Pls::DEFAULT,
                }))
            }
            _ => {
                // Absent means "let the demodulator find it": libdvbv5 writes
                // a DVB-S2 entry without MODULATION back as QAM/AUTO.
                let modulation = self.modulation.unwrap_or(Modulation::QamAuto);
                if !matches!(
                    modulation,
                    Modulation::Qpsk
                        | Modulation::Psk8
                        | Modulation::Apsk16
                        | Modulation::Apsk32
                        | Modulation::QamAuto
                ) {
                    return Err(impossible(format!(
                        "DVB-S2 modulation is QPSK, 8PSK, 16APSK, 32APSK or auto, not {}",
                        modulation.dvbv5_name()
                    )));
                }
                // EN 302 307-1 table 12: which rates exist per constellation.
                let ok = match modulation {
                    Modulation::Qpsk => !matches!(fec, CodeRate::R6_7 | CodeRate::R7_8),
                    Modulation::Psk8 => matches!(
                        fec,
                        CodeRate::R3_5
                            | CodeRate::R2_3
                            | CodeRate::R3_4
                            | CodeRate::R5_6
                            | CodeRate::R8_9
                            | CodeRate::R9_10
                            | CodeRate::Auto
                    ),
                    Modulation::QamAuto => true,
                    Modulation::Apsk16 => matches!(
                        fec,
                        CodeRate::R2_3
                            | CodeRate::R3_4
                            | CodeRate::R4_5
                            | CodeRate::R5_6
                            | CodeRate::R8_9
                            | CodeRate::R9_10
                            | CodeRate::Auto
                    ),
                    _ => matches!(
                        fec,
                        CodeRate::R3_4
                            | CodeRate::R4_5
                            | CodeRate::R5_6
                            | CodeRate::R8_9
                            | CodeRate::R9_10
                            | CodeRate::Auto
                    ),
                };
                // dtv-scan-tables writes INNER_FEC = NONE for "unknown".
                if !ok && fec != CodeRate::None {
                    return Err(impossible(format!(
                        "DVB-S2 {} has no FEC {}",
                        modulation.dvbv5_name(),
                        fec.dvbv5_name()
                    )));
                }
                Ok(Tuning::DvbS2(SatParams {
                    frequency_khz,
                    symbol_rate,
                    polarization,
                    modulation,
                    fec,
                    rolloff: self.rolloff.unwrap_or(Rolloff::Auto),
                    pilot: self.pilot.unwrap_or(Pilot::Auto),
                    stream_id,
                    pls,
                }))
            }
        }
    }

    fn build_ter(self, system: System, frequency_hz: u32) -> Result<Tuning> {
        let t2 = system == System::DvbT2;
        let name = if t2 { "DVB-T2" } else { "DVB-T" };
        if self.symbol_rate.is_some() || self.polarization.is_some() {
            return Err(impossible(format!(
                "{name} has no symbol rate or polarisation"
            )));
        }
        if self.rolloff.is_some() || self.pilot.is_some() || self.pls_code.is_some() {
            return Err(impossible(format!("{name} has no roll-off, pilot or PLS")));
        }
        // Band I starts at 47 MHz, UHF ends at 862 MHz (EN 300 744 is band
        // agnostic; the tuners in use cover 42..1002 MHz).
        if !(47_000_000..=1_002_000_000).contains(&frequency_hz) {
            return Err(impossible(format!(
                "{name} frequency {frequency_hz} Hz out of band 47..1002 MHz (give Hz, e.g. 474000000 or 474MHz)"
            )));
        }
        let bandwidth_hz = self.bandwidth_hz.unwrap_or(8_000_000);
        let allowed: &[u32] = if t2 {
            &[
                0, 1_712_000, 5_000_000, 6_000_000, 7_000_000, 8_000_000, 10_000_000,
            ]
        } else {
            &[0, 5_000_000, 6_000_000, 7_000_000, 8_000_000]
        };
        if !allowed.contains(&bandwidth_hz) {
            return Err(impossible(format!(
                "{name} bandwidth {bandwidth_hz} Hz is not one of {}",
                if t2 {
                    "1.7, 5, 6, 7, 8, 10 MHz"
                } else {
                    "5, 6, 7, 8 MHz"
                }
            )));
        }
        let modulation = self.modulation.unwrap_or(Modulation::QamAuto);
        let mod_ok = match modulation {
            Modulation::Qpsk | Modulation::Qam16 | Modulation::Qam64 | Modulation::QamAuto => true,
            Modulation::Qam256 => t2,
            _ => false,
        };
        if !mod_ok {
            return Err(impossible(format!(
                "{name} has no modulation {}",
                modulation.dvbv5_name()
            )));
        }
        let code_rate_hp = self.code_rate_hp.unwrap_or(CodeRate::Auto);
        let code_rate_lp = self.code_rate_lp.unwrap_or(CodeRate::Auto); // absent = auto, as libdvbv5 writes it back
        for (k, cr) in [
            ("CODE_RATE_HP", code_rate_hp),
            ("CODE_RATE_LP", code_rate_lp),
        ] {
            let ok = match cr {
                CodeRate::R1_2
                | CodeRate::R2_3
                | CodeRate::R3_4
                | CodeRate::R5_6
                | CodeRate::Auto
                | CodeRate::None => true,
                CodeRate::R7_8 => !t2,
                CodeRate::R3_5 | CodeRate::R4_5 => t2,
                _ => false,
            };
            if !ok {
                return Err(impossible(format!("{name} has no {k} {}", cr.dvbv5_name())));
            }
        }
        let guard_interval = self.guard_interval.unwrap_or(GuardInterval::Auto);
        if !t2 && guard_interval.t2_only() {
            return Err(impossible(format!(
                "DVB-T has no guard interval {} (DVB-T2 only)",
                guard_interval.dvbv5_name()
            )));
        }
        let transmission_mode = self.transmission_mode.unwrap_or(TransmissionMode::Auto);
        if !t2
            && matches!(
                transmission_mode,
                TransmissionMode::K1 | TransmissionMode::K16 | TransmissionMode::K32
            )
        {
            return Err(impossible(format!(
                "DVB-T has no transmission mode {} (DVB-T2 only)",
                transmission_mode.dvbv5_name()
            )));
        }
        let hierarchy = self.hierarchy.unwrap_or(Hierarchy::Auto);
        if t2 && !matches!(hierarchy, Hierarchy::None | Hierarchy::Auto) {
            return Err(impossible(
                "DVB-T2 has no hierarchical modulation (it uses PLPs)".to_string(),
            ));
        }
        let plp_id = match self.stream_id {
            None | Some(NO_STREAM_ID_FILTER) => None,
            Some(v) if !t2 => {
                // dvbv5 writes STREAM_ID = 0 on every DVB-T entry: harmless.
                if v == 0 {
                    None
                } else {
                    return Err(impossible(format!(
                        "DVB-T has no PLP (stream id {v}): use dvbt2"
                    )));
                }
            }
            Some(v) if v <= 255 => Some(v as u8),
            Some(v) => return Err(impossible(format!("DVB-T2 PLP id {v} out of range 0..255"))),
        };
        let p = TerParams {
            frequency_hz,
            bandwidth_hz,
            code_rate_hp,
            code_rate_lp,
            guard_interval,
            transmission_mode,
            hierarchy,
            modulation,
            plp_id,
        };
        Ok(if t2 {
            Tuning::DvbT2(p)
        } else {
            Tuning::DvbT(p)
        })
    }

    fn build_cable(self, frequency_hz: u32) -> Result<Tuning> {
        self.no_ter_keys("DVB-C")?;
        if self.polarization.is_some() || self.rolloff.is_some() || self.pilot.is_some() {
            return Err(impossible(
                "DVB-C has no polarisation, roll-off or pilot".to_string(),
            ));
        }
        if !(47_000_000..=1_002_000_000).contains(&frequency_hz) {
            return Err(impossible(format!(
                "DVB-C frequency {frequency_hz} Hz out of band 47..1002 MHz (give Hz, e.g. 474000000 or 474MHz)"
            )));
        }
        let symbol_rate = self
            .symbol_rate
            .ok_or(TuningError::Missing("SYMBOL_RATE"))?;
        if !(870_000..=7_200_000).contains(&symbol_rate) {
            return Err(impossible(format!(
                "DVB-C symbol rate {symbol_rate} sym/s out of range 870000..7200000 (e.g. 6900000)"
            )));
        }
        let modulation = self.modulation.unwrap_or(Modulation::QamAuto);
        if !matches!(
            modulation,
            Modulation::Qam16
                | Modulation::Qam32
                | Modulation::Qam64
                | Modulation::Qam128
                | Modulation::Qam256
                | Modulation::QamAuto
        ) {
            return Err(impossible(format!(
                "DVB-C modulation is QAM16..QAM256, not {}",
                modulation.dvbv5_name()
            )));
        }
        if matches!(self.stream_id, Some(v) if v != 0 && v != NO_STREAM_ID_FILTER) {
            return Err(impossible("DVB-C has no stream id".to_string()));
        }
        Ok(Tuning::DvbC(CableParams {
            frequency_hz,
            symbol_rate,
            modulation,
            fec: self.fec.unwrap_or(CodeRate::Auto),
        }))
    }
}

/// Satellite downlink bands (kHz): S (2.5–2.7 GHz, used in Indonesia), C
/// with extended C (3.4–4.8 GHz), Ku
/// (10.7–12.75 GHz), Ka broadcast including the 21.4–22 GHz BSS band
/// (17.3–22 GHz), or an L-band IF (950–2150 MHz) for a tuner used without
/// LNB arithmetic.
fn check_sat_frequency(f: u32) -> Result<()> {
    let bands = [
        (950_000, 2_150_000),
        (2_500_000, 2_700_000),
        (3_400_000, 4_800_000),
        (10_700_000, 12_750_000),
        (17_300_000, 22_000_000),
    ];
    if bands.iter().any(|(lo, hi)| (*lo..=*hi).contains(&f)) {
        return Ok(());
    }
    let hint = if (950..=21_200).contains(&f) {
        format!(" (did you mean {f}MHz, i.e. {}?)", u64::from(f) * 1000)
    } else {
        String::new()
    };
    Err(impossible(format!(
        "satellite frequency {f} kHz is not in the L (IF), S, C, Ku or Ka band{hint}"
    )))
}

impl Tuning {
    /// From key/value pairs: dvbv5 channel-file keys (`FREQUENCY`,
    /// `SYMBOL_RATE`...) or config spellings (`frequency`, `symbol_rate`,
    /// `pol`, `fec`, `isi`, `plp`...), case-insensitive. Unknown keys are
    /// errors; the channel-file reader filters out non-tuning keys first.
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Tuning>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        let mut d = Draft::default();
        // The frequency unit depends on the system: read the system first.
        for (k, v) in &pairs {
            if canonical_key(k) == Some("DELIVERY_SYSTEM") {
                d.set(k, v)?;
            }
        }
        for (k, v) in &pairs {
            if canonical_key(k) != Some("DELIVERY_SYSTEM") {
                d.set(k, v)?;
            }
        }
        d.build()
    }

    /// From a `capbox tune` argument string; syntax in the module docs.
    pub fn from_args(args: &str) -> Result<Tuning> {
        let words: Vec<&str> = args.split_whitespace().collect();
        Self::from_arg_words(&words)
    }

    /// Same as [`Tuning::from_args`] for already-split arguments.
    pub fn from_arg_words(words: &[&str]) -> Result<Tuning> {
        let (first, rest) = words
            .split_first()
            .ok_or(TuningError::Missing("DELIVERY_SYSTEM"))?;
        let system = System::parse(first)?;
        let mut d = Draft {
            system: Some(system),
            ..Draft::default()
        };
        let (keyed, positional): (Vec<&str>, Vec<&str>) =
            rest.iter().partition(|w| w.contains('='));
        let mut pos = positional.into_iter();
        let freq = pos.next().ok_or(TuningError::Missing("FREQUENCY"))?;
        d.set("FREQUENCY", freq)?;
        match system {
            System::DvbS | System::DvbS2 => {
                let pol = pos.next().ok_or(TuningError::Missing("POLARIZATION"))?;
                d.set("POLARIZATION", pol)?;
                let sr = pos.next().ok_or(TuningError::Missing("SYMBOL_RATE"))?;
                d.set("SYMBOL_RATE", sr)?;
                // The rest are recognised by their shape, in any order.
                for w in pos {
                    if Modulation::parse(w).is_some() && !w.eq_ignore_ascii_case("auto") {
                        d.set("MODULATION", w)?;
                    } else if CodeRate::parse(w).is_some() {
                        d.set("INNER_FEC", w)?;
                    } else if Rolloff::parse(w).is_some() {
                        d.set("ROLLOFF", w)?;
                    } else if Pilot::parse(w).is_some() {
                        d.set("PILOT", w)?;
                    } else {
                        return Err(bad("argument", w));
                    }
                }
            }
            System::DvbT | System::DvbT2 => {
                for w in pos {
                    if parse_scaled(w, HZ_UNITS).is_some() {
                        d.set("BANDWIDTH_HZ", w)?;
                    } else {
                        return Err(bad("argument", w));
                    }
                }
            }
            System::DvbC => {
                let sr = pos.next().ok_or(TuningError::Missing("SYMBOL_RATE"))?;
                d.set("SYMBOL_RATE", sr)?;
                for w in pos {
                    if Modulation::parse(w).is_some() && !w.eq_ignore_ascii_case("auto") {
                        d.set("MODULATION", w)?;
                    } else if CodeRate::parse(w).is_some() {
                        d.set("INNER_FEC", w)?;
                    } else {
                        return Err(bad("argument", w));
                    }
                }
            }
        }
        for kv in keyed {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad("argument", kv))?;
            if canonical_key(k) == Some("DELIVERY_SYSTEM") {
                return Err(bad(k, v));
            }
            d.set(k, v)?;
        }
        d.build()
    }

    pub fn system(&self) -> System {
        match self {
            Tuning::DvbS(_) => System::DvbS,
            Tuning::DvbS2(_) => System::DvbS2,
            Tuning::DvbT(_) => System::DvbT,
            Tuning::DvbT2(_) => System::DvbT2,
            Tuning::DvbC(_) => System::DvbC,
        }
    }

    pub fn satellite(&self) -> Option<&SatParams> {
        match self {
            Tuning::DvbS(p) | Tuning::DvbS2(p) => Some(p),
            _ => None,
        }
    }

    /// The `capbox tune` argument string for this tuning;
    /// `Tuning::from_args(&t.to_args()) == Ok(t)`.
    pub fn to_args(&self) -> String {
        let lc = |s: &str| s.to_ascii_lowercase();
        match self {
            Tuning::DvbS(p) | Tuning::DvbS2(p) => {
                let sys = if matches!(self, Tuning::DvbS(_)) {
                    "dvbs"
                } else {
                    "dvbs2"
                };
                let pol = &p.polarization.dvbv5_name()[..1];
                let mut s = format!(
                    "{sys} {} {pol} {} modulation={} fec={} rolloff={} pilot={}",
                    p.frequency_khz,
                    p.symbol_rate,
                    lc(p.modulation.dvbv5_name()),
                    lc(p.fec.dvbv5_name()),
                    lc(p.rolloff.dvbv5_name()),
                    lc(p.pilot.dvbv5_name()),
                );
                if let Some(isi) = p.stream_id {
                    s.push_str(&format!(" isi={isi}"));
                }
                if !p.pls.is_default() {
                    let m = match p.pls.mode {
                        PlsMode::Root => "root",
                        PlsMode::Gold => "gold",
                    };
                    s.push_str(&format!(" pls={m}:{}", p.pls.code));
                }
                s
            }
            Tuning::DvbT(t) | Tuning::DvbT2(t) => {
                let sys = if matches!(self, Tuning::DvbT(_)) {
                    "dvbt"
                } else {
                    "dvbt2"
                };
                let bw = if t.bandwidth_hz == 0 {
                    "bandwidth=auto".to_string()
                } else {
                    t.bandwidth_hz.to_string()
                };
                let mut s = format!(
                    "{sys} {} {bw} modulation={} code_rate_hp={} code_rate_lp={} guard={} mode={} hierarchy={}",
                    t.frequency_hz,
                    lc(t.modulation.dvbv5_name()),
                    lc(t.code_rate_hp.dvbv5_name()),
                    lc(t.code_rate_lp.dvbv5_name()),
                    lc(t.guard_interval.dvbv5_name()),
                    lc(t.transmission_mode.dvbv5_name()),
                    lc(t.hierarchy.dvbv5_name()),
                );
                if let Some(plp) = t.plp_id {
                    s.push_str(&format!(" plp={plp}"));
                }
                s
            }
            Tuning::DvbC(c) => format!(
                "dvbc {} {} modulation={} fec={}",
                c.frequency_hz,
                c.symbol_rate,
                lc(c.modulation.dvbv5_name()),
                lc(c.fec.dvbv5_name()),
            ),
        }
    }

    /// The dvbv5 channel-file keys and values describing this tuning, in
    /// the order dvbv5-scan writes them (DELIVERY_SYSTEM first).
    pub fn to_dvbv5_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("DELIVERY_SYSTEM", self.system().dvbv5_name().to_string())];
        match self {
            Tuning::DvbS(p) | Tuning::DvbS2(p) => {
                out.push(("FREQUENCY", p.frequency_khz.to_string()));
                out.push(("POLARIZATION", p.polarization.dvbv5_name().to_string()));
                out.push(("SYMBOL_RATE", p.symbol_rate.to_string()));
                out.push(("INNER_FEC", p.fec.dvbv5_name().to_string()));
                out.push(("MODULATION", p.modulation.dvbv5_name().to_string()));
                if matches!(self, Tuning::DvbS2(_)) {
                    out.push(("PILOT", p.pilot.dvbv5_name().to_string()));
                    out.push(("ROLLOFF", p.rolloff.dvbv5_name().to_string()));
                    if let Some(isi) = p.stream_id {
                        out.push(("STREAM_ID", isi.to_string()));
                    }
                    if !p.pls.is_default() {
                        let mode = match p.pls.mode {
                            PlsMode::Root => "0",
                            PlsMode::Gold => "1",
                        };
                        out.push(("PLS_CODE", p.pls.code.to_string()));
                        out.push(("PLS_MODE", mode.to_string()));
                    }
                }
            }
            Tuning::DvbT(p) | Tuning::DvbT2(p) => {
                out.push(("FREQUENCY", p.frequency_hz.to_string()));
                out.push(("BANDWIDTH_HZ", p.bandwidth_hz.to_string()));
                out.push(("CODE_RATE_HP", p.code_rate_hp.dvbv5_name().to_string()));
                out.push(("CODE_RATE_LP", p.code_rate_lp.dvbv5_name().to_string()));
                out.push(("MODULATION", p.modulation.dvbv5_name().to_string()));
                out.push((
                    "TRANSMISSION_MODE",
                    p.transmission_mode.dvbv5_name().to_string(),
                ));
                out.push(("GUARD_INTERVAL", p.guard_interval.dvbv5_name().to_string()));
                out.push(("HIERARCHY", p.hierarchy.dvbv5_name().to_string()));
                if let Some(plp) = p.plp_id {
                    out.push(("STREAM_ID", plp.to_string()));
                }
            }
            Tuning::DvbC(p) => {
                out.push(("FREQUENCY", p.frequency_hz.to_string()));
                out.push(("SYMBOL_RATE", p.symbol_rate.to_string()));
                out.push(("INNER_FEC", p.fec.dvbv5_name().to_string()));
                out.push(("MODULATION", p.modulation.dvbv5_name().to_string()));
            }
        }
        out.push(("INVERSION", "AUTO".to_string()));
        out
    }

    /// The exact `FE_SET_PROPERTY` sequence: DTV_CLEAR, DTV_DELIVERY_SYSTEM,
    /// DTV_FREQUENCY (satellite: the IF in kHz after LNB and Unicable
    /// arithmetic; terrestrial/cable: Hz), the system's parameters, and
    /// DTV_TUNE last. Satellite without `lnb` takes the frequency as an IF
    /// and refuses one outside 950..2150 MHz.
    pub fn to_props(&self, lnb: Option<&LnbSetup>, pls_style: PlsStyle) -> Result<Vec<(u32, u32)>> {
        let mut p = vec![
            (b::DTV_CLEAR, 0),
            (b::DTV_DELIVERY_SYSTEM, self.system().raw()),
        ];
        match self {
            Tuning::DvbS(s) | Tuning::DvbS2(s) => {
                let freq = match lnb {
                    Some(setup) => setup.tuner_frequency_khz(s.frequency_khz, s.polarization)?,
                    None => {
                        if !(950_000..=2_150_000).contains(&s.frequency_khz) {
                            return Err(impossible(format!(
                                "satellite frequency {} kHz needs an LNB (an IF without LNB is 950000..2150000 kHz)",
                                s.frequency_khz
                            )));
                        }
                        s.frequency_khz
                    }
                };
                p.push((b::DTV_FREQUENCY, freq));
                p.push((b::DTV_SYMBOL_RATE, s.symbol_rate));
                p.push((b::DTV_MODULATION, s.modulation.raw()));
                p.push((b::DTV_INNER_FEC, s.fec.raw()));
                p.push((b::DTV_ROLLOFF, s.rolloff.raw()));
                p.push((b::DTV_PILOT, s.pilot.raw()));
                if matches!(self, Tuning::DvbS2(_)) {
                    let gold = s.pls.gold().ok_or_else(|| {
                        impossible(format!("PLS root {} has no gold index", s.pls.code))
                    })?;
                    match pls_style {
                        PlsStyle::Mainline => {
                            let isi = s.stream_id.map_or(NO_STREAM_ID_FILTER, u32::from);
                            p.push((b::DTV_STREAM_ID, isi));
                            p.push((b::DTV_SCRAMBLING_SEQUENCE_INDEX, gold));
                        }
                        PlsStyle::Tbs => match s.stream_id {
                            Some(isi) => {
                                let (mode, code) = match s.pls.mode {
                                    PlsMode::Root => (0u32, s.pls.code),
                                    PlsMode::Gold => (1u32, s.pls.code),
                                };
                                p.push((
                                    b::DTV_STREAM_ID,
                                    u32::from(isi) | (code << 8) | (mode << 26),
                                ));
                            }
                            None if s.pls.is_default() => {
                                p.push((b::DTV_STREAM_ID, NO_STREAM_ID_FILTER))
                            }
                            None => {
                                // TBS drivers ignore the high bits when the
                                // whole word is NO_STREAM_ID_FILTER.
                                return Err(impossible(
                                    "TBS-style PLS needs a stream id (isi=...)".to_string(),
                                ));
                            }
                        },
                    }
                }
            }
            Tuning::DvbT(t) | Tuning::DvbT2(t) => {
                p.push((b::DTV_FREQUENCY, t.frequency_hz));
                p.push((b::DTV_BANDWIDTH_HZ, t.bandwidth_hz));
                p.push((b::DTV_CODE_RATE_HP, t.code_rate_hp.raw()));
                p.push((b::DTV_CODE_RATE_LP, t.code_rate_lp.raw()));
                p.push((b::DTV_GUARD_INTERVAL, t.guard_interval.raw()));
                p.push((b::DTV_TRANSMISSION_MODE, t.transmission_mode.raw()));
                p.push((b::DTV_HIERARCHY, t.hierarchy.raw()));
                p.push((b::DTV_MODULATION, t.modulation.raw()));
                if matches!(self, Tuning::DvbT2(_)) {
                    p.push((
                        b::DTV_STREAM_ID,
                        t.plp_id.map_or(NO_STREAM_ID_FILTER, u32::from),
                    ));
                }
            }
            Tuning::DvbC(c) => {
                p.push((b::DTV_FREQUENCY, c.frequency_hz));
                p.push((b::DTV_SYMBOL_RATE, c.symbol_rate));
                p.push((b::DTV_MODULATION, c.modulation.raw()));
                p.push((b::DTV_INNER_FEC, c.fec.raw()));
            }
        }
        p.push((b::DTV_TUNE, 0));
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvb::diseqc::{Scr, ScrStandard, Switch};
    use crate::dvb::lnb::Lnb;

    fn t(args: &str) -> Tuning {
        Tuning::from_args(args).unwrap_or_else(|e| panic!("{args}: {e}"))
    }

    fn err(args: &str) -> String {
        match Tuning::from_args(args) {
            Ok(t) => panic!("{args} accepted: {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_tune_args_dvbs2() {
        let tu = t("dvbs2 11362000 V 22000000 8psk 3/4 0.35");
        let Tuning::DvbS2(p) = tu else {
            panic!("{tu:?}")
        };
        assert_eq!(p.frequency_khz, 11_362_000);
        assert_eq!(p.symbol_rate, 22_000_000);
        assert_eq!(p.polarization, Polarization::Vertical);
        assert_eq!(p.modulation, Modulation::Psk8);
        assert_eq!(p.fec, CodeRate::R3_4);
        assert_eq!(p.rolloff, Rolloff::R35);
        assert_eq!(p.stream_id, None);
        // Units and word order.
        assert_eq!(t("dvbs2 11362MHz v 22000k 0.35 3/4 8PSK"), tu);
        assert_eq!(t("dvbs2 11.362GHz V 22M PSK/8 3/4 35"), tu);
    }

    #[test]
    fn parses_tune_args_terrestrial_and_cable() {
        let Tuning::DvbT(p) = t("dvbt 474000000 8MHz") else {
            panic!()
        };
        assert_eq!((p.frequency_hz, p.bandwidth_hz), (474_000_000, 8_000_000));
        assert_eq!(p.plp_id, None);
        let Tuning::DvbT2(p) = t("dvbt2 490MHz 1.7MHz plp=3 guard=19/256 mode=32k") else {
            panic!()
        };
        assert_eq!(
            (p.frequency_hz, p.bandwidth_hz, p.plp_id),
            (490_000_000, 1_712_000, Some(3))
        );
        let Tuning::DvbC(p) = t("dvbc 474MHz 6900k qam256") else {
            panic!()
        };
        assert_eq!(
            (p.symbol_rate, p.modulation),
            (6_900_000, Modulation::Qam256)
        );
    }

    #[test]
    fn refuses_impossible_combinations() {
        assert!(err("dvbs 11362000 V 22000000 8psk").contains("QPSK only"));
        assert!(err("dvbs2 11362000 V 22000000 qam64").contains("DVB-S2 modulation"));
        assert!(err("dvbs2 11362000 V 22000000 8psk 1/2").contains("no FEC 1/2"));
        assert!(err("dvbt 474000000 8MHz plp=1").contains("use dvbt2"));
        assert!(err("dvbt 474000000 8MHz guard=19/256").contains("DVB-T2 only"));
        assert!(err("dvbt2 474000000 8MHz hierarchy=2").contains("hierarchical"));
        assert!(err("dvbs2 11362000 V 90000000").contains("symbol rate"));
        assert!(err("dvbs2 11362000 V 2200").contains("symbol rate"));
        assert!(err("dvbs2 11362 V 22000000").contains("did you mean 11362MHz"));
        assert!(err("dvbs2 9000000 V 22000000").contains("not in the L"));
        assert!(err("dvbt 474000 8MHz").contains("out of band"));
        assert!(err("dvbt 474000000 9MHz").contains("bandwidth"));
        assert!(err("dvbt 474000000 10MHz").contains("bandwidth"));
        assert!(t("dvbt2 474000000 10MHz").satellite().is_none());
        assert!(err("dvbc 474000000 6900000 8psk").contains("QAM16"));
        assert!(err("dvbs 11362000 V 22000000 isi=3").contains("multistream"));
        assert!(err("dvbs2 11362000 V 22000000 isi=300").contains("ISI"));
        assert!(err("dvbs2 11362000 V 22000000 pls=gold:300000").contains("18 bits"));
        assert!(err("dvbs2 11362000 X 22000000").contains("POLARIZATION"));
        assert!(err("atsc 474000000").contains("unsupported"));
        assert!(err("dvbs2 11362000 V 22000000 frobnicate=1").contains("unknown key"));
        assert!(err("dvbs2 11362000 V").contains("missing SYMBOL_RATE"));
    }

    #[test]
    fn parses_config_pairs() {
        let a = Tuning::from_pairs([
            ("system", "dvb-s2"),
            ("frequency", "11362MHz"),
            ("polarisation", "V"),
            ("symbol_rate", "22000000"),
            ("modulation", "8psk"),
            ("fec", "3/4"),
            ("rolloff", "0.35"),
        ])
        .unwrap();
        assert_eq!(a, t("dvbs2 11362000 V 22000000 8psk 3/4 0.35"));
    }

    #[test]
    fn props_dvbs2_through_universal_lnb() {
        // The vidtv rig locks DVB-S2 at IF 1612000 kHz = 11362 MHz − 9750.
        let setup = LnbSetup::new(Lnb::UNIVERSAL);
        let p = t("dvbs2 11362000 V 22000000 8psk 3/4 0.35")
            .to_props(Some(&setup), PlsStyle::Mainline)
            .unwrap();
        assert_eq!(
            p,
            vec![
                (b::DTV_CLEAR, 0),
                (b::DTV_DELIVERY_SYSTEM, b::SYS_DVBS2),
                (b::DTV_FREQUENCY, 1_612_000),
                (b::DTV_SYMBOL_RATE, 22_000_000),
                (b::DTV_MODULATION, b::PSK_8),
                (b::DTV_INNER_FEC, b::FEC_3_4),
                (b::DTV_ROLLOFF, b::ROLLOFF_35),
                (b::DTV_PILOT, b::PILOT_AUTO),
                (b::DTV_STREAM_ID, NO_STREAM_ID_FILTER),
                (b::DTV_SCRAMBLING_SEQUENCE_INDEX, 0),
                (b::DTV_TUNE, 0),
            ]
        );
        // Without an LNB only an IF is accepted.
        assert!(t("dvbs2 11362000 V 22000000")
            .to_props(None, PlsStyle::Mainline)
            .is_err());
        let direct = t("dvbs2 1612000 V 22000000")
            .to_props(None, PlsStyle::Mainline)
            .unwrap();
        assert_eq!(direct[2], (b::DTV_FREQUENCY, 1_612_000));
    }

    #[test]
    fn props_multistream_both_styles() {
        let tu = t("dvbs2 12648000 V 29500000 8psk 8/9 isi=1 pls=gold:121212");
        let m = tu
            .to_props(Some(&LnbSetup::new(Lnb::UNIVERSAL)), PlsStyle::Mainline)
            .unwrap();
        assert!(m.contains(&(b::DTV_STREAM_ID, 1)));
        assert!(m.contains(&(b::DTV_SCRAMBLING_SEQUENCE_INDEX, 121_212)));
        let tbs = tu
            .to_props(Some(&LnbSetup::new(Lnb::UNIVERSAL)), PlsStyle::Tbs)
            .unwrap();
        assert!(tbs.contains(&(b::DTV_STREAM_ID, 1 | (121_212 << 8) | (1 << 26))));
        assert!(!tbs
            .iter()
            .any(|(c, _)| *c == b::DTV_SCRAMBLING_SEQUENCE_INDEX));
        // Root mode: TBS passes it through, mainline converts to gold.
        let tu = t("dvbs2 11000000 H 30000000 isi=4 pls=root:16416");
        let tbs = tu
            .to_props(Some(&LnbSetup::new(Lnb::UNIVERSAL)), PlsStyle::Tbs)
            .unwrap();
        assert!(tbs.contains(&(b::DTV_STREAM_ID, 4 | (16416 << 8))));
        let m = tu
            .to_props(Some(&LnbSetup::new(Lnb::UNIVERSAL)), PlsStyle::Mainline)
            .unwrap();
        let gold = root_to_gold(16416).unwrap();
        assert!(m.contains(&(b::DTV_SCRAMBLING_SEQUENCE_INDEX, gold)));
        assert_eq!(gold_to_root(gold), 16416);
        // TBS cannot carry a PLS without an ISI.
        assert!(t("dvbs2 11000000 H 30000000 pls=gold:5")
            .to_props(Some(&LnbSetup::new(Lnb::UNIVERSAL)), PlsStyle::Tbs)
            .is_err());
    }

    #[test]
    fn pls_sequence_endpoints() {
        assert_eq!(gold_to_root(0), 1);
        assert_eq!(root_to_gold(1), Some(0));
        // One step of x^18 + x^7 + 1 from state 1 feeds bit 0 into bit 17.
        assert_eq!(gold_to_root(1), 1 << 17);
        assert_eq!(root_to_gold(0), None);
        for g in [2u32, 8, 131_070, 262_141] {
            assert_eq!(root_to_gold(gold_to_root(g)), Some(g));
        }
    }

    #[test]
    fn props_terrestrial_and_cable() {
        let p = t("dvbt 474000000 8MHz")
            .to_props(None, PlsStyle::Mainline)
            .unwrap();
        assert_eq!(
            p,
            vec![
                (b::DTV_CLEAR, 0),
                (b::DTV_DELIVERY_SYSTEM, b::SYS_DVBT),
                (b::DTV_FREQUENCY, 474_000_000),
                (b::DTV_BANDWIDTH_HZ, 8_000_000),
                (b::DTV_CODE_RATE_HP, b::FEC_AUTO),
                (b::DTV_CODE_RATE_LP, b::FEC_AUTO),
                (b::DTV_GUARD_INTERVAL, b::GUARD_INTERVAL_AUTO),
                (b::DTV_TRANSMISSION_MODE, b::TRANSMISSION_MODE_AUTO),
                (b::DTV_HIERARCHY, b::HIERARCHY_AUTO),
                (b::DTV_MODULATION, b::QAM_AUTO),
                (b::DTV_TUNE, 0),
            ]
        );
        let p = t("dvbt2 474000000 8MHz plp=2")
            .to_props(None, PlsStyle::Tbs)
            .unwrap();
        assert_eq!(p[1], (b::DTV_DELIVERY_SYSTEM, b::SYS_DVBT2));
        assert_eq!(p[p.len() - 2], (b::DTV_STREAM_ID, 2));
        let p = t("dvbc 474000000 6900000 qam64")
            .to_props(None, PlsStyle::Mainline)
            .unwrap();
        assert_eq!(
            p,
            vec![
                (b::DTV_CLEAR, 0),
                (b::DTV_DELIVERY_SYSTEM, b::SYS_DVBC_ANNEX_A),
                (b::DTV_FREQUENCY, 474_000_000),
                (b::DTV_SYMBOL_RATE, 6_900_000),
                (b::DTV_MODULATION, b::QAM_64),
                (b::DTV_INNER_FEC, b::FEC_AUTO),
                (b::DTV_TUNE, 0),
            ]
        );
    }

    #[test]
    fn props_unicable_tunes_user_band() {
        let setup = LnbSetup {
            lnb: Lnb::UNIVERSAL,
            switch: Switch::Unicable(Scr {
                standard: ScrStandard::En50607,
                user_band: 0,
                ub_freq_mhz: 1210,
                position: 0,
                pin: None,
            }),
        };
        let p = t("dvbs2 11362000 V 22000000")
            .to_props(Some(&setup), PlsStyle::Mainline)
            .unwrap();
        assert_eq!(p[2], (b::DTV_FREQUENCY, 1_210_000));
    }

    #[test]
    fn args_round_trip() {
        for a in [
            "dvbs 10714000 H 22000000 5/6",
            "dvbs2 11362000 V 22000000 8psk 3/4 0.35",
            "dvbs2 12648000 V 29500000 8psk 8/9 isi=1 pls=gold:121212 pilot=on",
            "dvbs2 11000000 L 30000000 16apsk 9/10 isi=4 pls=root:16416",
            "dvbt 474000000 8MHz guard=1/8 mode=8k code_rate_hp=2/3 hierarchy=none",
            "dvbt2 490000000 bandwidth=auto plp=3",
            "dvbc 474000000 6900000 qam256",
        ] {
            let tu = t(a);
            assert_eq!(t(&tu.to_args()), tu, "{a} -> {}", tu.to_args());
            let pairs = tu.to_dvbv5_pairs();
            let back = Tuning::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
            assert_eq!(back, tu, "{a} via dvbv5 keys");
        }
    }
}
