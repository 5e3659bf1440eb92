//! The wire: MPEG-TS packets, sections and the PSI/SI tables (ISO/IEC 13818-1,
//! ETSI EN 300 468).
//!
//! Pattern (smoltcp): a zero-copy view `Foo<T: AsRef<[u8]>>` whose
//! `new_checked` is the one place lengths are validated — after it no accessor
//! can panic — and, where capbox also emits the structure, a `FooRepr` that
//! parses from a checked view and emits into bytes. Everything here is fed
//! untrusted bytes from tuners, files and the network.

pub mod cat;
pub mod collector;
pub mod crc;
pub mod descriptor;
pub mod eit;
pub mod es;
pub mod nit;
pub mod packet;
pub mod pat;
pub mod pes;
pub mod pmt;
pub mod sdt;
pub mod section;
pub mod services;
pub mod tdt;
pub mod text;
pub mod tot;
pub mod video_format;

pub use packet::{Packet, PACKET_SIZE, SYNC_BYTE};

/// Why a structure was refused. Small and `Copy`, like smoltcp's `Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the structure's header or its declared length needs.
    Truncated,
    /// A field holds a value the standard does not allow (e.g. sync byte).
    Malformed,
    /// The CRC-32/MPEG-2 of a section does not match.
    Crc,
    /// The table_id is not the one this decoder handles.
    WrongTable,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated",
            Error::Malformed => "malformed",
            Error::Crc => "CRC-32 mismatch",
            Error::WrongTable => "unexpected table_id",
        })
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// PIDs with a fixed meaning (ISO/IEC 13818-1 table 2-3, EN 300 468 table 1).
pub mod pid {
    pub const PAT: u16 = 0x0000;
    pub const CAT: u16 = 0x0001;
    pub const TSDT: u16 = 0x0002;
    pub const NIT: u16 = 0x0010;
    pub const SDT: u16 = 0x0011;
    pub const EIT: u16 = 0x0012;
    pub const RST: u16 = 0x0013;
    pub const TDT: u16 = 0x0014;
    pub const NULL: u16 = 0x1FFF;
}

/// table_id values (ISO/IEC 13818-1 table 2-31, EN 300 468 table 2).
pub mod table_id {
    pub const PAT: u8 = 0x00;
    pub const CAT: u8 = 0x01;
    pub const PMT: u8 = 0x02;
    pub const NIT_ACTUAL: u8 = 0x40;
    pub const NIT_OTHER: u8 = 0x41;
    pub const SDT_ACTUAL: u8 = 0x42;
    pub const SDT_OTHER: u8 = 0x46;
    pub const BAT: u8 = 0x4A;
    pub const EIT_PF_ACTUAL: u8 = 0x4E;
    pub const EIT_PF_OTHER: u8 = 0x4F;
    pub const EIT_SCHED_ACTUAL_FIRST: u8 = 0x50;
    pub const EIT_SCHED_ACTUAL_LAST: u8 = 0x5F;
    pub const EIT_SCHED_OTHER_FIRST: u8 = 0x60;
    pub const EIT_SCHED_OTHER_LAST: u8 = 0x6F;
    pub const TDT: u8 = 0x70;
    pub const RST: u8 = 0x71;
    pub const ST: u8 = 0x72;
    pub const TOT: u8 = 0x73;
    pub const ECM_EVEN: u8 = 0x80;
    pub const ECM_ODD: u8 = 0x81;
}
