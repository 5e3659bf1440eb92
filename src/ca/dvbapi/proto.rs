//! The bytes of OSCam's dvbapi network protocol (OSCam's
//! `README.dvbapi_protocol` and `module-dvbapi.h`), client side, versions
//! 2 and 3.
//!
//! Owns: encoding what capbox sends (CLIENT_INFO, CA PMT, FILTER_DATA,
//! AOT_CA_STOP) and an incremental decoder of what the softcam sends.
//! Every multi-byte integer is big-endian. With protocol 3 every message
//! after the client's first CLIENT_INFO — in both directions, SERVER_INFO
//! included — starts with 0xA5 and a u32 message id.
//!
//! Promises: the decoder never panics on any bytes and holds at most
//! `MAX_BUFFER` bytes. The protocol has no general length field: a message
//! is sized by its opcode, so an opcode the decoder does not know (or a
//! missing 0xA5) is reported, never skipped, and the caller must drop the
//! connection — reading on would desynchronise every later message.

/// Operation codes (the first u32 of a message after the optional prefix).
pub mod opcode {
    pub const FILTER_DATA: u32 = 0xFFFF_0000;
    pub const CLIENT_INFO: u32 = 0xFFFF_0001;
    pub const SERVER_INFO: u32 = 0xFFFF_0002;
    pub const ECM_INFO: u32 = 0xFFFF_0003;
    pub const DMX_SET_FILTER: u32 = 0x403C_6F2B;
    pub const DMX_STOP: u32 = 0x0000_6F2A;
    pub const CA_SET_PID: u32 = 0x4008_6F87;
    pub const CA_SET_DESCR: u32 = 0x4010_6F86;
    pub const CA_SET_DESCR_MODE: u32 = 0x400C_6F88;
    pub const CA_SET_DESCR_DATA: u32 = 0x4018_6F89;
    /// `9F 80 3F 04`: stop one demux (or all, 0xFF) without closing.
    pub const AOT_CA_STOP: u32 = 0x9F80_3F04;
}

/// The application object tag of a CA PMT (EN 50221 §8.4.3.4).
pub const AOT_CA_PMT: [u8; 3] = [0x9F, 0x80, 0x32];

/// First byte of every protocol-3 message but the client's first.
pub const MSG_START: u8 = 0xA5;

/// Highest protocol version capbox speaks.
pub const PROTOCOL_VERSION: u16 = 3;

/// The longest server message is an ECM_INFO with four 255-byte strings
/// (5 + 5 + 14 + 4 × 256 + 1 bytes); the buffer holds a few of them.
pub const MAX_BUFFER: usize = 8192;

/// Longest key or IV accepted in CA_SET_DESCR_DATA (AES-128 uses 16).
pub const MAX_DESCR_DATA: usize = 64;

/// ca_pmt_list_management (EN 50221 table 26).
pub mod list_management {
    pub const MORE: u8 = 0;
    pub const FIRST: u8 = 1;
    pub const LAST: u8 = 2;
    pub const ONLY: u8 = 3;
    pub const ADD: u8 = 4;
    pub const UPDATE: u8 = 5;
}

/// ca_pmt_cmd_id "ok_descrambling".
pub const CMD_OK_DESCRAMBLING: u8 = 1;

/// Private descriptors OSCam reads in the CA PMT program info loop.
pub mod private_tag {
    pub const ADAPTER_DEVICE: u8 = 0x83;
    pub const PMT_PID: u8 = 0x84;
    pub const DEMUX_DEVICE: u8 = 0x86;
    pub const CA_DEVICE: u8 = 0x87;
}

/// ca_descr_algo of CA_SET_DESCR_MODE.
pub mod algo {
    pub const DVBCSA: u32 = 0;
    pub const DES: u32 = 1;
    pub const AES128: u32 = 2;
}

/// Name of a CA_SET_DESCR_MODE algorithm, for status words.
pub fn algo_name(algo: u32) -> &'static str {
    match algo {
        algo::DVBCSA => "DVB-CSA",
        algo::DES => "DES",
        algo::AES128 => "AES-128",
        _ => "an unknown algorithm",
    }
}

fn push_prefix(out: &mut Vec<u8>, framed: bool, msg_id: u32) {
    if framed {
        out.push(MSG_START);
        out.extend_from_slice(&msg_id.to_be_bytes());
    }
}

/// CLIENT_INFO: opcode, u16 protocol version, u8 length, name (cut to 255
/// bytes). Never prefixed: it is the first message and tells the softcam
/// which framing follows.
pub fn encode_client_info(protocol: u16, name: &str, out: &mut Vec<u8>) {
    let name = &name.as_bytes()[..name.len().min(255)];
    out.extend_from_slice(&opcode::CLIENT_INFO.to_be_bytes());
    out.extend_from_slice(&protocol.to_be_bytes());
    out.push(name.len() as u8);
    out.extend_from_slice(name);
}

/// FILTER_DATA: opcode, u8 demux, u8 filter (both echoed from
/// DMX_SET_FILTER; no adapter byte), the section as filtered.
pub fn encode_filter_data(
    framed: bool,
    msg_id: u32,
    demux: u8,
    filter: u8,
    section: &[u8],
    out: &mut Vec<u8>,
) {
    push_prefix(out, framed, msg_id);
    out.extend_from_slice(&opcode::FILTER_DATA.to_be_bytes());
    out.push(demux);
    out.push(filter);
    out.extend_from_slice(section);
}

/// AOT_CA_STOP `9F 80 3F 04 83 02 00 <demux>`: stop the program capbox
/// announced with this demux_device.
pub fn encode_ca_stop(framed: bool, msg_id: u32, demux: u8, out: &mut Vec<u8>) {
    push_prefix(out, framed, msg_id);
    out.extend_from_slice(&opcode::AOT_CA_STOP.to_be_bytes());
    out.extend_from_slice(&[private_tag::ADAPTER_DEVICE, 0x02, 0x00, demux]);
}

/// One elementary stream of a CA PMT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPmtStream {
    pub stream_type: u8,
    pub elementary_pid: u16,
    /// The stream's CA descriptors (tag 0x09), whole, concatenated.
    pub ca_descriptors: Vec<u8>,
}

/// A CA PMT object (EN 50221 §8.4.3.4) with OSCam's private descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPmtRepr {
    pub list_management: u8,
    pub program_number: u16,
    pub version_number: u8,
    pub current_next_indicator: bool,
    /// adapter_device (0x83), demux_device (0x86), ca_device (0x87): the
    /// numbers the softcam echoes; capbox gives each service its own.
    pub adapter_device: u8,
    pub demux_device: u8,
    pub ca_device: u8,
    /// pmt_pid (0x84).
    pub pmt_pid: u16,
    /// The program-level CA descriptors, whole, concatenated.
    pub ca_descriptors: Vec<u8>,
    pub streams: Vec<CaPmtStream>,
}

/// BER length (EN 50221 §8.3.1 length_field): one byte below 128, else
/// 0x80 | number of bytes, then the bytes.
pub fn encode_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

impl CaPmtRepr {
    /// The body after the length field.
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        out.push(self.list_management);
        out.extend_from_slice(&self.program_number.to_be_bytes());
        out.push(0xC0 | (self.version_number & 0x1F) << 1 | self.current_next_indicator as u8);
        let mut info = vec![CMD_OK_DESCRAMBLING];
        info.extend_from_slice(&[private_tag::ADAPTER_DEVICE, 1, self.adapter_device]);
        info.extend_from_slice(&[private_tag::PMT_PID, 2]);
        info.extend_from_slice(&self.pmt_pid.to_be_bytes());
        info.extend_from_slice(&[private_tag::DEMUX_DEVICE, 1, self.demux_device]);
        info.extend_from_slice(&[private_tag::CA_DEVICE, 1, self.ca_device]);
        info.extend_from_slice(&self.ca_descriptors);
        // program_info_length counts the ca_pmt_cmd_id byte (EN 50221;
        // OSCam reads it so).
        let pil = info.len().min(0x0FFF) as u16;
        out.extend_from_slice(&(0xF000 | pil).to_be_bytes());
        out.extend_from_slice(&info[..pil as usize]);
        for s in &self.streams {
            out.push(s.stream_type);
            out.extend_from_slice(&(0xE000 | (s.elementary_pid & 0x1FFF)).to_be_bytes());
            if s.ca_descriptors.is_empty() {
                out.extend_from_slice(&0xF000u16.to_be_bytes());
            } else {
                let eil = (1 + s.ca_descriptors.len()).min(0x0FFF) as u16;
                out.extend_from_slice(&(0xF000 | eil).to_be_bytes());
                out.push(CMD_OK_DESCRAMBLING);
                out.extend_from_slice(&s.ca_descriptors[..eil as usize - 1]);
            }
        }
    }

    /// The whole message: optional prefix, `9F 80 32`, BER length, body.
    pub fn emit(&self, framed: bool, msg_id: u32, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(64 + self.ca_descriptors.len());
        self.emit_body(&mut body);
        push_prefix(out, framed, msg_id);
        out.extend_from_slice(&AOT_CA_PMT);
        encode_length(body.len(), out);
        out.extend_from_slice(&body);
    }
}

/// A message from the softcam. `adapter` is the adapter_device of the
/// CA PMT it is about (every message but SERVER_INFO carries it).
/// `Debug` is the `Display` text: neither shows a control word or key data.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    ServerInfo {
        protocol: u16,
        info: String,
    },
    DmxSetFilter {
        adapter: u8,
        demux: u8,
        filter: u8,
        pid: u16,
        data: [u8; 16],
        mask: [u8; 16],
        mode: [u8; 16],
        timeout: u32,
        flags: u32,
    },
    DmxStop {
        adapter: u8,
        demux: u8,
        filter: u8,
        pid: u16,
    },
    CaSetPid {
        adapter: u8,
        pid: u32,
        /// -1 disables the PID.
        index: i32,
    },
    CaSetDescr {
        adapter: u8,
        index: u32,
        parity: u32,
        cw: [u8; 8],
    },
    CaSetDescrMode {
        adapter: u8,
        index: u32,
        algo: u32,
        cipher_mode: u32,
    },
    CaSetDescrData {
        adapter: u8,
        index: u32,
        parity: u32,
        data_type: u32,
        data: Vec<u8>,
    },
    EcmInfo {
        adapter: u8,
        service_id: u16,
        caid: u16,
        pid: u16,
        provider_id: u32,
        ecm_time_ms: u32,
        cardsystem: String,
        reader: String,
        from: String,
        protocol: String,
        hops: u8,
    },
}

impl std::fmt::Debug for Message {
    // Derived Debug would print `cw` and CA_SET_DESCR_DATA's key bytes
    // wherever a message or a decode result is `{:?}`-logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Message {
    // Never the control word: statuses and logs print messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::ServerInfo { protocol, info } => {
                write!(f, "SERVER_INFO protocol {protocol} {info:?}")
            }
            Message::DmxSetFilter {
                adapter, demux, filter, pid, ..
            } => write!(
                f,
                "DMX_SET_FILTER adapter {adapter} demux {demux} filter {filter} pid {pid:#06x}"
            ),
            Message::DmxStop {
                adapter,
                demux,
                filter,
                pid,
            } => write!(
                f,
                "DMX_STOP adapter {adapter} demux {demux} filter {filter} pid {pid:#06x}"
            ),
            Message::CaSetPid {
                adapter,
                pid,
                index,
            } => write!(f, "CA_SET_PID adapter {adapter} pid {pid:#06x} index {index}"),
            Message::CaSetDescr {
                adapter,
                index,
                parity,
                ..
            } => write!(f, "CA_SET_DESCR adapter {adapter} index {index} parity {parity}"),
            Message::CaSetDescrMode {
                adapter,
                index,
                algo,
                cipher_mode,
            } => write!(
                f,
                "CA_SET_DESCR_MODE adapter {adapter} index {index} algo {algo} mode {cipher_mode}"
            ),
            Message::CaSetDescrData {
                adapter,
                index,
                parity,
                data_type,
                data,
            } => write!(
                f,
                "CA_SET_DESCR_DATA adapter {adapter} index {index} parity {parity} type {data_type} {} bytes",
                data.len()
            ),
            Message::EcmInfo {
                adapter,
                service_id,
                caid,
                reader,
                ecm_time_ms,
                ..
            } => write!(
                f,
                "ECM_INFO adapter {adapter} service {service_id} caid {caid:#06x} reader {reader:?} {ecm_time_ms} ms"
            ),
        }
    }
}

/// What the decoder found at the head of its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Not a whole message yet.
    NeedMore,
    /// One message, removed from the buffer. `msg_id` is the protocol-3 id.
    Message { msg: Message, msg_id: Option<u32> },
    /// An opcode the decoder cannot size: the stream cannot be followed.
    Unknown { opcode: u32 },
    /// Protocol 3 without the 0xA5 start byte, or a field out of range
    /// (CA_SET_DESCR_DATA longer than `MAX_DESCR_DATA`): the stream
    /// cannot be trusted either.
    Malformed { what: &'static str },
}

/// Incremental decoder of softcam messages over one connection.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    framed: bool,
}

/// Big-endian reader over a message whose length was checked first.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> u8 {
        let v = self.b.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        v
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for x in a.iter_mut() {
            *x = self.u8();
        }
        a
    }
    fn string(&mut self) -> String {
        let n = self.u8() as usize;
        let end = (self.at + n).min(self.b.len());
        let s = self.b.get(self.at..end).unwrap_or(&[]);
        self.at += n;
        // Control characters would break a status line.
        String::from_utf8_lossy(s)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }
}

/// Length of the message at the head of `b` (after the prefix), if known
/// from what is there; `Ok(None)` when more bytes are needed to tell.
fn message_len(op: u32, b: &[u8]) -> Result<Option<usize>, Decoded> {
    // Sizes after the opcode; every message but SERVER_INFO has the
    // adapter byte first.
    let fixed = |n: usize| Ok(Some(4 + n));
    match op {
        opcode::SERVER_INFO => match b.get(6) {
            Some(&n) => Ok(Some(4 + 2 + 1 + n as usize)),
            None => Ok(None),
        },
        opcode::DMX_SET_FILTER => fixed(1 + 1 + 1 + 2 + 16 * 3 + 4 + 4),
        opcode::DMX_STOP => fixed(1 + 1 + 1 + 2),
        opcode::CA_SET_PID => fixed(1 + 8),
        opcode::CA_SET_DESCR => fixed(1 + 16),
        opcode::CA_SET_DESCR_MODE => fixed(1 + 12),
        opcode::CA_SET_DESCR_DATA => {
            // adapter, index, parity, data_type, length, data.
            if b.len() < 4 + 1 + 16 {
                return Ok(None);
            }
            let n = u32::from_be_bytes([b[17], b[18], b[19], b[20]]) as usize;
            if n > MAX_DESCR_DATA {
                return Err(Decoded::Malformed {
                    what: "CA_SET_DESCR_DATA longer than any key",
                });
            }
            Ok(Some(4 + 1 + 16 + n))
        }
        opcode::ECM_INFO => {
            // adapter, sid, caid, pid, provid, ecm time, 4 strings, hops.
            let mut at = 4 + 1 + 2 + 2 + 2 + 4 + 4;
            for _ in 0..4 {
                match b.get(at) {
                    Some(&n) => at += 1 + n as usize,
                    None => return Ok(None),
                }
            }
            Ok(Some(at + 1))
        }
        _ => Err(Decoded::Unknown { opcode: op }),
    }
}

fn parse(op: u32, m: &[u8]) -> Message {
    let mut c = Cursor { b: m, at: 4 };
    if op == opcode::SERVER_INFO {
        let protocol = c.u16();
        let info = c.string();
        return Message::ServerInfo { protocol, info };
    }
    let adapter = c.u8();
    match op {
        opcode::DMX_SET_FILTER => Message::DmxSetFilter {
            adapter,
            demux: c.u8(),
            filter: c.u8(),
            pid: c.u16() & 0x1FFF,
            data: c.bytes(),
            mask: c.bytes(),
            mode: c.bytes(),
            timeout: c.u32(),
            flags: c.u32(),
        },
        opcode::DMX_STOP => Message::DmxStop {
            adapter,
            demux: c.u8(),
            filter: c.u8(),
            pid: c.u16() & 0x1FFF,
        },
        opcode::CA_SET_PID => Message::CaSetPid {
            adapter,
            pid: c.u32(),
            index: c.u32() as i32,
        },
        opcode::CA_SET_DESCR => Message::CaSetDescr {
            adapter,
            index: c.u32(),
            parity: c.u32(),
            cw: c.bytes(),
        },
        opcode::CA_SET_DESCR_MODE => Message::CaSetDescrMode {
            adapter,
            index: c.u32(),
            algo: c.u32(),
            cipher_mode: c.u32(),
        },
        opcode::CA_SET_DESCR_DATA => {
            let index = c.u32();
            let parity = c.u32();
            let data_type = c.u32();
            let n = c.u32() as usize;
            let start = c.at.min(m.len());
            let end = (start + n).min(m.len());
            Message::CaSetDescrData {
                adapter,
                index,
                parity,
                data_type,
                data: m[start..end].to_vec(),
            }
        }
        // ECM_INFO: `message_len` let no other opcode through.
        _ => Message::EcmInfo {
            adapter,
            service_id: c.u16(),
            caid: c.u16(),
            pid: c.u16() & 0x1FFF,
            provider_id: c.u32(),
            ecm_time_ms: c.u32(),
            cardsystem: c.string(),
            reader: c.string(),
            from: c.string(),
            protocol: c.string(),
            hops: c.u8(),
        },
    }
}

impl Decoder {
    /// `framed`: protocol 3 or later was announced in CLIENT_INFO.
    pub fn new(framed: bool) -> Decoder {
        Decoder {
            buf: Vec::with_capacity(1024),
            framed,
        }
    }

    /// How many more bytes the buffer takes.
    pub fn room(&self) -> usize {
        MAX_BUFFER - self.buf.len()
    }

    /// Append received bytes; returns how many were taken (at most
    /// `room()`).
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.room());
        self.buf.extend_from_slice(&bytes[..n]);
        n
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The next message, if whole. After `Unknown` or `Malformed` the
    /// buffer is left as it is: the caller drops the connection.
    pub fn decode(&mut self) -> Decoded {
        let (prefix, msg_id) = if self.framed {
            match self.buf.first() {
                None => return Decoded::NeedMore,
                Some(&MSG_START) => {}
                Some(_) => {
                    return Decoded::Malformed {
                        what: "a message without the 0xA5 start byte",
                    }
                }
            }
            if self.buf.len() < 5 {
                return Decoded::NeedMore;
            }
            let id = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
            (5, Some(id))
        } else {
            (0, None)
        };
        let b = &self.buf[prefix..];
        if b.len() < 4 {
            return Decoded::NeedMore;
        }
        let op = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let len = match message_len(op, b) {
            Err(d) => return d,
            Ok(None) => return Decoded::NeedMore,
            Ok(Some(n)) => n,
        };
        if b.len() < len {
            return Decoded::NeedMore;
        }
        let msg = parse(op, &b[..len]);
        self.buf.drain(..prefix + len);
        Decoded::Message { msg, msg_id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Messages written field by field from the tables of OSCam's
    // README.dvbapi_protocol, not by capbox's encoder.

    fn framed(id: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0xA5];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn server_info() -> Vec<u8> {
        let mut v = vec![0xFF, 0xFF, 0x00, 0x02, 0x00, 0x03, 11];
        v.extend_from_slice(b"OSCam 2.26\n");
        v
    }

    fn set_filter() -> Vec<u8> {
        let mut v = vec![0x40, 0x3C, 0x6F, 0x2B, 2, 5, 1, 0x05, 0x00];
        let mut data = [0u8; 16];
        data[0] = 0x80;
        let mut mask = [0u8; 16];
        mask[0] = 0xFF;
        v.extend_from_slice(&data);
        v.extend_from_slice(&mask);
        v.extend_from_slice(&[0u8; 16]);
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        v
    }

    fn ecm_info() -> Vec<u8> {
        let mut v = vec![
            0xFF, 0xFF, 0x00, 0x03, 2, 0x00, 0x01, 0x0B, 0x00, 0x05, 0x00,
        ];
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42]);
        for s in [&b"Conax"[..], b"constcw", b"local", b"constcw"] {
            v.push(s.len() as u8);
            v.extend_from_slice(s);
        }
        v.push(0);
        v
    }

    #[test]
    fn client_info_layout() {
        let mut v = Vec::new();
        encode_client_info(3, "capbox 0.1", &mut v);
        assert_eq!(&v[..4], &[0xFF, 0xFF, 0x00, 0x01]);
        assert_eq!(&v[4..6], &[0, 3]);
        assert_eq!(v[6], 10);
        assert_eq!(&v[7..], b"capbox 0.1");
        let mut v = Vec::new();
        encode_client_info(2, &"x".repeat(300), &mut v);
        assert_eq!(v[6], 255);
        assert_eq!(v.len(), 7 + 255);
    }

    #[test]
    fn filter_data_and_stop_layout() {
        let mut v = Vec::new();
        encode_filter_data(true, 7, 3, 1, &[0x80, 0x70, 0x01, 0xAA], &mut v);
        assert_eq!(
            v,
            [0xA5, 0, 0, 0, 7, 0xFF, 0xFF, 0, 0, 3, 1, 0x80, 0x70, 0x01, 0xAA]
        );
        let mut v = Vec::new();
        encode_ca_stop(false, 0, 4, &mut v);
        assert_eq!(v, [0x9F, 0x80, 0x3F, 0x04, 0x83, 0x02, 0x00, 4]);
    }

    #[test]
    fn ca_pmt_layout() {
        let r = CaPmtRepr {
            list_management: list_management::ADD,
            program_number: 0x0102,
            version_number: 5,
            current_next_indicator: true,
            adapter_device: 1,
            demux_device: 1,
            ca_device: 1,
            pmt_pid: 0x1000,
            ca_descriptors: vec![0x09, 4, 0x0B, 0x00, 0xE5, 0x00],
            streams: vec![
                CaPmtStream {
                    stream_type: 0x1B,
                    elementary_pid: 0x100,
                    ca_descriptors: vec![],
                },
                CaPmtStream {
                    stream_type: 0x03,
                    elementary_pid: 0x101,
                    ca_descriptors: vec![0x09, 4, 0x0B, 0x00, 0xE5, 0x01],
                },
            ],
        };
        let mut v = Vec::new();
        r.emit(false, 0, &mut v);
        let body: Vec<u8> = [
            &[4, 0x01, 0x02, 0xC0 | 5 << 1 | 1][..],
            &[0xF0, 1 + 3 + 4 + 3 + 3 + 6],
            &[1, 0x83, 1, 1, 0x84, 2, 0x10, 0x00, 0x86, 1, 1, 0x87, 1, 1],
            &[0x09, 4, 0x0B, 0x00, 0xE5, 0x00],
            &[0x1B, 0xE1, 0x00, 0xF0, 0x00],
            &[
                0x03, 0xE1, 0x01, 0xF0, 7, 1, 0x09, 4, 0x0B, 0x00, 0xE5, 0x01,
            ],
        ]
        .concat();
        let mut want = vec![0x9F, 0x80, 0x32, body.len() as u8];
        want.extend_from_slice(&body);
        assert_eq!(v, want);
    }

    #[test]
    fn ber_lengths() {
        let enc = |n| {
            let mut v = Vec::new();
            encode_length(n, &mut v);
            v
        };
        assert_eq!(enc(0x7F), [0x7F]);
        assert_eq!(enc(0x80), [0x81, 0x80]);
        assert_eq!(enc(0x1234), [0x82, 0x12, 0x34]);
    }

    #[test]
    fn decodes_protocol_3_byte_by_byte() {
        let mut stream = framed(0, &server_info());
        stream.extend(framed(9, &set_filter()));
        stream.extend(framed(
            10,
            &[
                0x40, 0x10, 0x6F, 0x86, 2, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3, 6, 5, 6, 7, 18,
            ],
        ));
        stream.extend(framed(11, &ecm_info()));
        let mut d = Decoder::new(true);
        let mut got = Vec::new();
        for b in &stream {
            assert_eq!(d.push(&[*b]), 1);
            loop {
                match d.decode() {
                    Decoded::NeedMore => break,
                    Decoded::Message { msg, msg_id } => got.push((msg, msg_id)),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(d.buffered(), 0);
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0].0,
            Message::ServerInfo {
                protocol: 3,
                info: "OSCam 2.26 ".to_string()
            }
        );
        match &got[1].0 {
            Message::DmxSetFilter {
                adapter,
                demux,
                filter,
                pid,
                data,
                mask,
                flags,
                ..
            } => {
                assert_eq!((*adapter, *demux, *filter, *pid), (2, 5, 1, 0x500));
                assert_eq!((data[0], mask[0], *flags), (0x80, 0xFF, 1));
            }
            m => panic!("{m}"),
        }
        assert_eq!(got[1].1, Some(9));
        assert_eq!(
            got[2].0,
            Message::CaSetDescr {
                adapter: 2,
                index: 1,
                parity: 1,
                cw: [1, 2, 3, 6, 5, 6, 7, 18]
            }
        );
        match &got[3].0 {
            Message::EcmInfo {
                service_id,
                caid,
                pid,
                ecm_time_ms,
                reader,
                from,
                hops,
                ..
            } => {
                assert_eq!(
                    (*service_id, *caid, *pid, *ecm_time_ms),
                    (1, 0x0B00, 0x500, 42)
                );
                assert_eq!(
                    (reader.as_str(), from.as_str(), *hops),
                    ("constcw", "local", 0)
                );
            }
            m => panic!("{m}"),
        }
    }

    #[test]
    fn decodes_protocol_2_and_the_rest() {
        let mut stream = server_info();
        stream.extend([0x00, 0x00, 0x6F, 0x2A, 0, 1, 2, 0x05, 0x00]);
        stream.extend([
            0x40, 0x08, 0x6F, 0x87, 0, 0, 0, 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        stream.extend([
            0x40, 0x0C, 0x6F, 0x88, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0,
        ]);
        stream.extend([
            0x40, 0x18, 0x6F, 0x89, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1,
        ]);
        stream.extend([0, 0, 0, 2, 0xAB, 0xCD]);
        let mut d = Decoder::new(false);
        d.push(&stream);
        let mut got = Vec::new();
        while let Decoded::Message { msg, msg_id } = d.decode() {
            assert_eq!(msg_id, None);
            got.push(msg);
        }
        assert_eq!(got.len(), 5);
        assert_eq!(
            got[1],
            Message::DmxStop {
                adapter: 0,
                demux: 1,
                filter: 2,
                pid: 0x500
            }
        );
        assert_eq!(
            got[2],
            Message::CaSetPid {
                adapter: 0,
                pid: 0x100,
                index: -1
            }
        );
        assert_eq!(
            got[3],
            Message::CaSetDescrMode {
                adapter: 0,
                index: 1,
                algo: 2,
                cipher_mode: 0
            }
        );
        assert_eq!(
            got[4],
            Message::CaSetDescrData {
                adapter: 0,
                index: 1,
                parity: 0,
                data_type: 1,
                data: vec![0xAB, 0xCD]
            }
        );
    }

    #[test]
    fn unknown_and_unframed_are_reported_not_skipped() {
        let mut d = Decoder::new(true);
        d.push(&framed(1, &[0x12, 0x34, 0x56, 0x78, 0, 0, 0]));
        assert_eq!(
            d.decode(),
            Decoded::Unknown {
                opcode: 0x1234_5678
            }
        );
        assert_eq!(
            d.decode(),
            Decoded::Unknown {
                opcode: 0x1234_5678
            }
        );
        let mut d = Decoder::new(true);
        d.push(&server_info());
        assert!(matches!(d.decode(), Decoded::Malformed { .. }));
        let mut d = Decoder::new(false);
        let mut m = vec![
            0x40, 0x18, 0x6F, 0x89, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1,
        ];
        m.extend([0, 0, 1, 0]);
        d.push(&m);
        assert!(matches!(d.decode(), Decoded::Malformed { .. }));
    }

    #[test]
    fn bounded_and_never_panics_on_noise() {
        let mut d = Decoder::new(false);
        assert_eq!(d.push(&vec![0u8; MAX_BUFFER + 10]), MAX_BUFFER);
        assert_eq!(d.room(), 0);
        // A pseudo-random walk over every opcode prefix length.
        let mut x: u32 = 0x1234_5678;
        for framed in [false, true] {
            for _ in 0..2000 {
                let mut d = Decoder::new(framed);
                let mut v = Vec::new();
                let ops = [
                    opcode::SERVER_INFO,
                    opcode::ECM_INFO,
                    opcode::CA_SET_DESCR_DATA,
                    opcode::DMX_SET_FILTER,
                ];
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if framed {
                    v.push(0xA5);
                    v.extend_from_slice(&x.to_be_bytes());
                }
                v.extend_from_slice(&ops[(x >> 3) as usize % 4].to_be_bytes());
                for _ in 0..(x >> 8) % 80 {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    v.push((x >> 16) as u8);
                }
                d.push(&v);
                for _ in 0..4 {
                    let _ = d.decode();
                }
            }
        }
    }
}
