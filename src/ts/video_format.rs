//! What a video stream looks like to a decoder downstream: codec, coded
//! size, scan (interlaced or progressive) and frame rate, read from the
//! bitstream's own headers — the H.264 sequence parameter set (ITU-T H.264
//! §7.3.2.1.1, with its VUI timing), the HEVC SPS (H.265 §7.3.2.2, size
//! only) and the MPEG-2 sequence header and extension (ISO/IEC 13818-2
//! §6.2.2.1, §6.2.2.3).
//!
//! capbox plays a slate in the channel's own format when all its sources
//! are down (a change of codec, size, scan or rate makes a downstream
//! transcoder reinitialise), so it must know that format.
//!
//! Promises: the parsers read untrusted bytes and never panic (every read
//! past the end is an error); `VideoFormatProbe` keeps at most
//! `MAX_HEADER` bytes, whatever it is fed.

use super::packet::Packet;
use super::pmt::VideoCodec;

/// The format of a video stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VideoFormat {
    #[serde(serialize_with = "codec_name")]
    pub codec: VideoCodec,
    pub width: u16,
    pub height: u16,
    pub interlaced: bool,
    /// Frames (not fields) per second × 1000, when the headers say
    /// (H.264 VUI timing, MPEG-2 frame_rate_code); HEVC leaves it to the
    /// caller (PES timing).
    pub frame_rate_milli: Option<u32>,
}

fn codec_name<S: serde::Serializer>(c: &VideoCodec, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(codec_str(*c))
}

pub fn codec_str(c: VideoCodec) -> &'static str {
    match c {
        VideoCodec::Mpeg2 => "mpeg2",
        VideoCodec::H264 => "h264",
        VideoCodec::Hevc => "hevc",
        VideoCodec::Other => "other",
    }
}

impl std::fmt::Display for VideoFormat {
    /// `h264 1920x1080i 25 fps`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}x{}{}",
            codec_str(self.codec),
            self.width,
            self.height,
            if self.interlaced { 'i' } else { 'p' }
        )?;
        if let Some(r) = self.frame_rate_milli {
            if r % 1000 == 0 {
                write!(f, " {} fps", r / 1000)?;
            } else {
                write!(f, " {:.3} fps", r as f64 / 1000.0)?;
            }
        }
        Ok(())
    }
}

/// Why a header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The header ends before the field named.
    Truncated(&'static str),
    /// A field holds a value the standard forbids.
    Invalid(&'static str),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Truncated(w) => write!(f, "header truncated before {w}"),
            FormatError::Invalid(w) => write!(f, "invalid {w}"),
        }
    }
}

type Result<T> = std::result::Result<T, FormatError>;

/// An RBSP bit reader (emulation prevention bytes already removed).
struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(b: &'a [u8]) -> Bits<'a> {
        Bits { b, pos: 0 }
    }
    fn bit(&mut self, what: &'static str) -> Result<u32> {
        let byte = *self
            .b
            .get(self.pos / 8)
            .ok_or(FormatError::Truncated(what))?;
        let v = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(v as u32)
    }
    fn bits(&mut self, n: u32, what: &'static str) -> Result<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit(what)?;
        }
        Ok(v)
    }
    fn skip(&mut self, n: usize, what: &'static str) -> Result<()> {
        if self.pos + n > self.b.len() * 8 {
            return Err(FormatError::Truncated(what));
        }
        self.pos += n;
        Ok(())
    }
    /// ue(v), at most 32 bits of value.
    fn ue(&mut self, what: &'static str) -> Result<u32> {
        let mut zeros = 0;
        while self.bit(what)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(FormatError::Invalid(what));
            }
        }
        let rest = self.bits(zeros, what)?;
        Ok(((1u64 << zeros) - 1 + rest as u64).min(u32::MAX as u64) as u32)
    }
    fn se(&mut self, what: &'static str) -> Result<i32> {
        let k = self.ue(what)? as i64;
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) } as i32)
    }
}

/// A NAL unit's payload without its emulation prevention bytes
/// (00 00 03 → 00 00), at most `limit` bytes of output.
fn rbsp(nal: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len().min(limit));
    let mut zeros = 0;
    for &b in nal {
        if out.len() >= limit {
            break;
        }
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

fn skip_scaling_list(r: &mut Bits, size: usize) -> Result<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se("scaling list")?;
            if !(-128..=127).contains(&delta) {
                return Err(FormatError::Invalid("delta_scale"));
            }
            next = (last + delta + 256) % 256;
        }
        last = if next == 0 { last } else { next };
    }
    Ok(())
}

/// H.264 SPS, from the NAL unit (its header byte first, type 7).
pub fn parse_h264_sps(nal: &[u8]) -> Result<VideoFormat> {
    let d = rbsp(
        nal.get(1..).ok_or(FormatError::Truncated("nal header"))?,
        512,
    );
    let mut r = Bits::new(&d);
    let profile_idc = r.bits(8, "profile_idc")?;
    r.skip(16, "level_idc")?;
    r.ue("seq_parameter_set_id")?;
    let mut chroma_format_idc = 1;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue("chroma_format_idc")?;
        if chroma_format_idc > 3 {
            return Err(FormatError::Invalid("chroma_format_idc"));
        }
        if chroma_format_idc == 3 {
            r.bit("separate_colour_plane_flag")?;
        }
        r.ue("bit_depth_luma_minus8")?;
        r.ue("bit_depth_chroma_minus8")?;
        r.bit("qpprime_y_zero_transform_bypass_flag")?;
        if r.bit("seq_scaling_matrix_present_flag")? == 1 {
            let n = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..n {
                if r.bit("seq_scaling_list_present_flag")? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue("log2_max_frame_num_minus4")?;
    match r.ue("pic_order_cnt_type")? {
        0 => {
            r.ue("log2_max_pic_order_cnt_lsb_minus4")?;
        }
        1 => {
            r.bit("delta_pic_order_always_zero_flag")?;
            r.se("offset_for_non_ref_pic")?;
            r.se("offset_for_top_to_bottom_field")?;
            let n = r.ue("num_ref_frames_in_pic_order_cnt_cycle")?;
            if n > 255 {
                return Err(FormatError::Invalid(
                    "num_ref_frames_in_pic_order_cnt_cycle",
                ));
            }
            for _ in 0..n {
                r.se("offset_for_ref_frame")?;
            }
        }
        2 => {}
        _ => return Err(FormatError::Invalid("pic_order_cnt_type")),
    }
    r.ue("max_num_ref_frames")?;
    r.bit("gaps_in_frame_num_value_allowed_flag")?;
    let w_mbs = r.ue("pic_width_in_mbs_minus1")? as u64 + 1;
    let h_units = r.ue("pic_height_in_map_units_minus1")? as u64 + 1;
    let frame_mbs_only = r.bit("frame_mbs_only_flag")?;
    if frame_mbs_only == 0 {
        r.bit("mb_adaptive_frame_field_flag")?;
    }
    r.bit("direct_8x8_inference_flag")?;
    let mut width = w_mbs * 16;
    let mut height = (2 - frame_mbs_only as u64) * h_units * 16;
    if r.bit("frame_cropping_flag")? == 1 {
        let (cx, cy) = match chroma_format_idc {
            0 | 3 => (1, 2 - frame_mbs_only as u64),
            2 => (2, 2 - frame_mbs_only as u64),
            _ => (2, 2 * (2 - frame_mbs_only as u64)),
        };
        let l = r.ue("frame_crop_left_offset")? as u64;
        let rt = r.ue("frame_crop_right_offset")? as u64;
        let t = r.ue("frame_crop_top_offset")? as u64;
        let b = r.ue("frame_crop_bottom_offset")? as u64;
        width = width.saturating_sub(cx * (l + rt));
        height = height.saturating_sub(cy * (t + b));
    }
    if width == 0 || height == 0 || width > 8192 || height > 8192 {
        return Err(FormatError::Invalid("picture size"));
    }
    let mut frame_rate_milli = None;
    if r.bit("vui_parameters_present_flag").unwrap_or(0) == 1 {
        frame_rate_milli = h264_vui_rate(&mut r).ok().flatten();
    }
    Ok(VideoFormat {
        codec: VideoCodec::H264,
        width: width as u16,
        height: height as u16,
        interlaced: frame_mbs_only == 0,
        frame_rate_milli,
    })
}

/// The VUI up to its timing info: frames per second × 1000.
fn h264_vui_rate(r: &mut Bits) -> Result<Option<u32>> {
    if r.bit("aspect_ratio_info_present_flag")? == 1 && r.bits(8, "aspect_ratio_idc")? == 255 {
        r.skip(32, "sar")?;
    }
    if r.bit("overscan_info_present_flag")? == 1 {
        r.bit("overscan_appropriate_flag")?;
    }
    if r.bit("video_signal_type_present_flag")? == 1 {
        r.skip(4, "video_format")?;
        if r.bit("colour_description_present_flag")? == 1 {
            r.skip(24, "colour description")?;
        }
    }
    if r.bit("chroma_loc_info_present_flag")? == 1 {
        r.ue("chroma_sample_loc_type_top_field")?;
        r.ue("chroma_sample_loc_type_bottom_field")?;
    }
    if r.bit("timing_info_present_flag")? == 0 {
        return Ok(None);
    }
    let units = r.bits(32, "num_units_in_tick")? as u64;
    let scale = r.bits(32, "time_scale")? as u64;
    if units == 0 || scale == 0 {
        return Ok(None);
    }
    // A frame is two ticks (H.264 E.2.1: one tick per field).
    let milli = scale * 1000 / (2 * units);
    Ok((1..=300_000).contains(&milli).then_some(milli as u32))
}

/// HEVC SPS, from the NAL unit (its two header bytes first, type 33):
/// size only; broadcast HEVC is progressive.
pub fn parse_hevc_sps(nal: &[u8]) -> Result<VideoFormat> {
    let d = rbsp(
        nal.get(2..).ok_or(FormatError::Truncated("nal header"))?,
        512,
    );
    let mut r = Bits::new(&d);
    r.skip(4, "sps_video_parameter_set_id")?;
    let max_sub_layers_minus1 = r.bits(3, "sps_max_sub_layers_minus1")?;
    r.skip(1, "sps_temporal_id_nesting_flag")?;
    // profile_tier_level(1, max_sub_layers_minus1): general part 88 bits +
    // general_level_idc 8.
    r.skip(96, "profile_tier_level")?;
    let mut present = [(0u32, 0u32); 8];
    for p in present.iter_mut().take(max_sub_layers_minus1 as usize) {
        *p = (
            r.bit("sub_layer_profile_present_flag")?,
            r.bit("sub_layer_level_present_flag")?,
        );
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(
            2 * (8 - max_sub_layers_minus1 as usize),
            "reserved_zero_2bits",
        )?;
    }
    for &(p, l) in present.iter().take(max_sub_layers_minus1 as usize) {
        if p == 1 {
            r.skip(88, "sub_layer profile")?;
        }
        if l == 1 {
            r.skip(8, "sub_layer_level_idc")?;
        }
    }
    r.ue("sps_seq_parameter_set_id")?;
    let chroma_format_idc = r.ue("chroma_format_idc")?;
    if chroma_format_idc > 3 {
        return Err(FormatError::Invalid("chroma_format_idc"));
    }
    if chroma_format_idc == 3 {
        r.bit("separate_colour_plane_flag")?;
    }
    let mut width = r.ue("pic_width_in_luma_samples")? as u64;
    let mut height = r.ue("pic_height_in_luma_samples")? as u64;
    if r.bit("conformance_window_flag")? == 1 {
        let (cx, cy) = match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let l = r.ue("conf_win_left_offset")? as u64;
        let rt = r.ue("conf_win_right_offset")? as u64;
        let t = r.ue("conf_win_top_offset")? as u64;
        let b = r.ue("conf_win_bottom_offset")? as u64;
        width = width.saturating_sub(cx * (l + rt));
        height = height.saturating_sub(cy * (t + b));
    }
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(FormatError::Invalid("picture size"));
    }
    Ok(VideoFormat {
        codec: VideoCodec::Hevc,
        width: width as u16,
        height: height as u16,
        interlaced: false,
        frame_rate_milli: None,
    })
}

/// MPEG-2 video: the sequence header (after its 00 00 01 B3 start code)
/// and, when given, the sequence extension (after 00 00 01 B5).
pub fn parse_mpeg2_sequence(header: &[u8], extension: Option<&[u8]>) -> Result<VideoFormat> {
    let h = header
        .get(..4)
        .ok_or(FormatError::Truncated("sequence header"))?;
    let mut width = ((h[0] as u32) << 4) | (h[1] as u32 >> 4);
    let mut height = (((h[1] & 0x0F) as u32) << 8) | h[2] as u32;
    let code = h[3] & 0x0F;
    let base: Option<(u32, u32)> = match code {
        1 => Some((24000, 1001)),
        2 => Some((24, 1)),
        3 => Some((25, 1)),
        4 => Some((30000, 1001)),
        5 => Some((30, 1)),
        6 => Some((50, 1)),
        7 => Some((60000, 1001)),
        8 => Some((60, 1)),
        _ => None,
    };
    // MPEG-1 streams have no extension: progressive.
    let mut interlaced = false;
    let (mut n, mut d) = (1u32, 1u32);
    if let Some(e) = extension {
        if e.len() >= 6 && e[0] >> 4 == 1 {
            interlaced = e[1] & 0x08 == 0;
            width |= (((e[1] & 0x01) as u32) << 1 | (e[2] >> 7) as u32) << 12;
            height |= (((e[2] >> 5) & 0x03) as u32) << 12;
            n = ((e[5] >> 5) & 0x03) as u32 + 1;
            d = (e[5] & 0x1F) as u32 + 1;
        }
    }
    if width == 0 || height == 0 {
        return Err(FormatError::Invalid("picture size"));
    }
    let frame_rate_milli =
        base.map(|(num, den)| (num as u64 * 1000 * n as u64 / (den as u64 * d as u64)) as u32);
    Ok(VideoFormat {
        codec: VideoCodec::Mpeg2,
        width: width.min(u16::MAX as u32) as u16,
        height: height.min(u16::MAX as u32) as u16,
        interlaced,
        frame_rate_milli,
    })
}

/// Bytes of a header kept after its start code: more than any SPS or
/// sequence header + extension needs.
pub const MAX_HEADER: usize = 512;

/// Finds the format of one video PID from its TS packets: looks for the
/// codec's header in the payload bytes (across packet boundaries), keeps at
/// most `MAX_HEADER` bytes, and parses it once whole. Cheap when done.
#[derive(Debug)]
pub struct VideoFormatProbe {
    codec: VideoCodec,
    pid: u16,
    /// Payload bytes from the last start code candidate on.
    buf: Vec<u8>,
    found: Option<VideoFormat>,
    pub errors: u64,
    last_error: Option<FormatError>,
}

impl VideoFormatProbe {
    pub fn new(codec: VideoCodec, pid: u16) -> VideoFormatProbe {
        VideoFormatProbe {
            codec,
            pid,
            buf: Vec::with_capacity(MAX_HEADER + 188),
            found: None,
            errors: 0,
            last_error: None,
        }
    }

    pub fn format(&self) -> Option<VideoFormat> {
        self.found
    }

    pub fn last_error(&self) -> Option<FormatError> {
        self.last_error
    }

    /// Feed one packet (any PID; others are ignored).
    pub fn push(&mut self, pkt: &Packet<&[u8]>) {
        if self.found.is_some() || pkt.pid() != self.pid || self.codec == VideoCodec::Other {
            return;
        }
        let mut payload = pkt.payload();
        if payload.is_empty() {
            return;
        }
        if pkt.payload_unit_start() {
            // Skip the PES header: the ES starts after it.
            match super::pes::PesHeader::new_checked(payload) {
                Ok(h) => payload = &payload[h.payload_offset().min(payload.len())..],
                Err(_) => return,
            }
        }
        self.buf.extend_from_slice(payload);
        self.scan();
        if self.buf.len() > MAX_HEADER {
            // Keep a tail long enough to hold a start code split across
            // packets, and any header being collected.
            let cut = self.buf.len() - MAX_HEADER;
            self.buf.drain(..cut);
        }
    }

    fn scan(&mut self) {
        let mut b = std::mem::take(&mut self.buf);
        let keep_from = self.scan_in(&b).min(b.len());
        b.drain(..keep_from);
        if self.found.is_none() {
            self.buf = b;
        }
    }

    /// Looks for the header in `b`; returns the offset from which the
    /// bytes are still needed.
    fn scan_in(&mut self, b: &[u8]) -> usize {
        let mut i = 0;
        while i + 4 <= b.len() {
            if !(b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1) {
                i += 1;
                continue;
            }
            let code = b[i + 3];
            let wanted = match self.codec {
                VideoCodec::H264 => code & 0x1F == 7,
                VideoCodec::Hevc => (code >> 1) & 0x3F == 33,
                VideoCodec::Mpeg2 => code == 0xB3,
                VideoCodec::Other => false,
            };
            if !wanted {
                i += 1;
                continue;
            }
            let body = &b[i + 3..];
            // Whole when the next start code is in the buffer.
            let Some(end) = next_start(body, 1) else {
                if body.len() >= MAX_HEADER - 8 {
                    self.fail(FormatError::Truncated("next start code"));
                    return b.len();
                }
                return i;
            };
            let r = match self.codec {
                VideoCodec::H264 => parse_h264_sps(&body[..end]),
                VideoCodec::Hevc => parse_hevc_sps(&body[..end]),
                _ => {
                    // The sequence extension follows the header.
                    let after = &body[end..];
                    let ext = if after.len() >= 10 && after[..4] == [0, 0, 1, 0xB5] {
                        Some(&after[4..])
                    } else if after.len() < 10 {
                        // The extension may be still coming.
                        return i;
                    } else {
                        None
                    };
                    parse_mpeg2_sequence(&body[1..end], ext)
                }
            };
            match r {
                Ok(f) => {
                    self.found = Some(f);
                    return b.len();
                }
                Err(e) => self.fail(e),
            }
            i += 3 + end;
        }
        0
    }

    fn fail(&mut self, e: FormatError) {
        self.errors += 1;
        self.last_error = Some(e);
    }
}

/// Offset of the next 00 00 01 at or after `from`.
fn next_start(b: &[u8], from: usize) -> Option<usize> {
    (from..b.len().saturating_sub(2)).find(|&j| b[j] == 0 && b[j + 1] == 0 && b[j + 2] == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_and_emulation_prevention() {
        // 1 → 0; 010 → 1; 011 → 2; 00100 → 3
        let mut r = Bits::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(r.ue("a").unwrap(), 0);
        assert_eq!(r.ue("b").unwrap(), 1);
        assert_eq!(r.ue("c").unwrap(), 2);
        assert_eq!(r.ue("d").unwrap(), 3);
        assert_eq!(rbsp(&[0, 0, 3, 1, 0, 0, 3], 100), vec![0, 0, 1, 0, 0]);
        assert!(Bits::new(&[0, 0, 0, 0, 0]).ue("x").is_err());
    }

    #[test]
    fn mpeg2_sequence_header_and_extension() {
        // 720x576, aspect 3 (16:9), frame_rate_code 3 (25).
        let h = [0x2D, 0x02, 0x40, 0x33, 0xFF, 0xFF, 0xE0, 0x18];
        // Extension id 1, main@main, progressive_sequence 0 (interlaced).
        let e = [0x14, 0x82, 0x00, 0x01, 0x00, 0x00];
        let f = parse_mpeg2_sequence(&h, Some(&e)).unwrap();
        assert_eq!((f.width, f.height, f.interlaced), (720, 576, true));
        assert_eq!(f.frame_rate_milli, Some(25000));
        assert_eq!(f.to_string(), "mpeg2 720x576i 25 fps");
        let e = [0x14, 0x8A, 0x00, 0x01, 0x00, 0x00];
        assert!(!parse_mpeg2_sequence(&h, Some(&e)).unwrap().interlaced);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..300 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = parse_h264_sps(&v);
            let _ = parse_hevc_sps(&v);
            let _ = parse_mpeg2_sequence(&v, Some(&v));
        }
    }
}
