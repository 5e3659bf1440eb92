//! Program Map Table (ISO/IEC 13818-1 §2.4.4.8) and what an elementary stream
//! is, from its stream_type and descriptors.

use super::descriptor::{self, tag, CaDescriptor, Descriptors};
use super::section::{build_long_section, Section};
use super::{table_id, Error, Result};

/// One elementary stream of a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmtStream {
    pub stream_type: u8,
    pub elementary_pid: u16,
    /// The ES_info descriptor loop, raw.
    pub descriptors: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmtRepr {
    pub program_number: u16,
    pub version: u8,
    pub pcr_pid: u16,
    /// The program_info descriptor loop, raw.
    pub program_info: Vec<u8>,
    pub streams: Vec<PmtStream>,
}

/// What an elementary stream carries, in the words of an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamKind {
    Video,
    Audio,
    Subtitles,
    Teletext,
    Data,
}

impl StreamKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamKind::Video => "video",
            StreamKind::Audio => "audio",
            StreamKind::Subtitles => "subtitles",
            StreamKind::Teletext => "teletext",
            StreamKind::Data => "data",
        }
    }
}

/// What `PmtStream::classify` says of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub kind: StreamKind,
    /// ffmpeg's codec name, where the PMT tells (MPEG audio is "mp2" until
    /// a frame header says layer 1 or 3).
    pub codec: Option<&'static str>,
}

impl Class {
    const DATA: Class = Class {
        kind: StreamKind::Data,
        codec: None,
    };
}

/// Video codec behind a stream, for keyframe detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Mpeg2,
    H264,
    Hevc,
    Other,
}

/// Audio codec behind a stream, for the slate that matches a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioCodec {
    /// MPEG-1/2 audio (Layer II in DVB).
    Mpeg,
    /// AAC in ADTS (stream_type 0x0F, 0x1C).
    Aac,
    /// AAC in LATM/LOAS (stream_type 0x11, ISO/IEC 14496-3 1.7): the
    /// same audio, another framing (DVB-T2 and satellite HE-AAC).
    #[serde(rename = "aac_latm")]
    AacLatm,
    Ac3,
    Eac3,
    /// DTS, Opus, SMPTE 302M, …
    Other,
}

impl AudioCodec {
    /// The codec a stream_type names by itself (not 0x06, whose codec is
    /// in its descriptors: `PmtStream::audio_codec`).
    pub fn of_stream_type(stream_type: u8) -> Option<AudioCodec> {
        if stream_type == 0x06 {
            return None;
        }
        PmtStream {
            stream_type,
            elementary_pid: 0,
            descriptors: Vec::new(),
        }
        .audio_codec()
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            AudioCodec::Mpeg => "mp2",
            AudioCodec::Aac => "aac",
            AudioCodec::AacLatm => "aac_latm",
            AudioCodec::Ac3 => "ac3",
            AudioCodec::Eac3 => "eac3",
            AudioCodec::Other => "other",
        }
    }
}

/// Short name of a stream_type (ISO/IEC 13818-1 table 2-34 and common DVB use).
pub fn stream_type_name(stream_type: u8) -> &'static str {
    match stream_type {
        0x01 => "MPEG-1 video",
        0x02 => "MPEG-2 video",
        0x03 => "MPEG-1 audio",
        0x04 => "MPEG-2 audio",
        0x05 => "private sections",
        0x06 => "PES private data",
        0x0F => "AAC (ADTS)",
        0x10 => "MPEG-4 video",
        0x11 => "AAC (LATM)",
        0x15 => "metadata",
        0x1B => "H.264",
        0x24 => "HEVC",
        0x81 => "AC-3 (ATSC)",
        0x87 => "E-AC-3 (ATSC)",
        _ => "other",
    }
}

impl PmtStream {
    pub fn descriptors(&self) -> Descriptors<'_> {
        Descriptors::new(&self.descriptors)
    }

    /// What the stream is and its codec (ffmpeg's name), from its
    /// stream_type and, for 0x06, its first telling descriptor: the one
    /// classification capbox has (probe, remux, health, slate).
    pub fn classify(&self) -> Class {
        let (kind, codec) = match self.stream_type {
            0x01 => (StreamKind::Video, "mpeg1video"),
            0x02 => (StreamKind::Video, "mpeg2video"),
            0x10 => (StreamKind::Video, "mpeg4"),
            0x1B => (StreamKind::Video, "h264"),
            0x24 => (StreamKind::Video, "hevc"),
            0x42 => (StreamKind::Video, "cavs"),
            0xD1 => (StreamKind::Video, "dirac"),
            0xEA => (StreamKind::Video, "vc1"),
            0x03 | 0x04 => (StreamKind::Audio, "mp2"),
            0x0F | 0x1C => (StreamKind::Audio, "aac"),
            0x11 => (StreamKind::Audio, "aac_latm"),
            0x81 => (StreamKind::Audio, "ac3"),
            0x87 => (StreamKind::Audio, "eac3"),
            0x06 => return self.classify_private(),
            _ => return Class::DATA,
        };
        Class {
            kind,
            codec: Some(codec),
        }
    }

    /// stream_type 0x06 (PES private data): the first descriptor that
    /// tells (EN 300 468 annex, registration descriptor formats).
    fn classify_private(&self) -> Class {
        for d in self.descriptors() {
            let (kind, codec) = match d.tag {
                tag::AC3 => (StreamKind::Audio, Some("ac3")),
                tag::ENHANCED_AC3 => (StreamKind::Audio, Some("eac3")),
                tag::AAC => (StreamKind::Audio, Some("aac")),
                0x7B => (StreamKind::Audio, Some("dts")),
                tag::SUBTITLING => (StreamKind::Subtitles, Some("dvb_subtitle")),
                tag::TELETEXT => (StreamKind::Teletext, Some("dvb_teletext")),
                // VBI teletext.
                0x46 => (StreamKind::Teletext, None),
                tag::REGISTRATION if d.data.len() >= 4 => match &d.data[..4] {
                    b"AC-3" => (StreamKind::Audio, Some("ac3")),
                    b"EAC3" => (StreamKind::Audio, Some("eac3")),
                    b"Opus" => (StreamKind::Audio, Some("opus")),
                    b"DTS1" | b"DTS2" | b"DTS3" => (StreamKind::Audio, Some("dts")),
                    b"BSSD" => (StreamKind::Audio, Some("s302m")),
                    b"KLVA" => (StreamKind::Data, Some("klv")),
                    _ => continue,
                },
                _ => continue,
            };
            return Class { kind, codec };
        }
        Class::DATA
    }

    pub fn kind(&self) -> StreamKind {
        self.classify().kind
    }

    pub fn video_codec(&self) -> Option<VideoCodec> {
        let c = self.classify();
        if c.kind != StreamKind::Video {
            return None;
        }
        Some(match c.codec {
            Some("mpeg1video" | "mpeg2video") => VideoCodec::Mpeg2,
            Some("h264") => VideoCodec::H264,
            Some("hevc") => VideoCodec::Hevc,
            _ => VideoCodec::Other,
        })
    }

    /// The audio codec, for an audio stream (what `kind` calls Audio).
    pub fn audio_codec(&self) -> Option<AudioCodec> {
        let c = self.classify();
        if c.kind != StreamKind::Audio {
            return None;
        }
        Some(match c.codec {
            Some("mp2") => AudioCodec::Mpeg,
            Some("aac") => AudioCodec::Aac,
            Some("aac_latm") => AudioCodec::AacLatm,
            Some("ac3") => AudioCodec::Ac3,
            Some("eac3") => AudioCodec::Eac3,
            _ => AudioCodec::Other,
        })
    }

    /// First ISO 639 language and its audio_type, if any.
    pub fn language(&self) -> Option<descriptor::Language> {
        self.descriptors()
            .find(|d| d.tag == tag::ISO_639_LANGUAGE)
            .and_then(|d| descriptor::languages(&d).next())
    }

    /// Language from an ISO 639, subtitling or teletext descriptor.
    pub fn any_language(&self) -> Option<String> {
        if let Some(l) = self.language() {
            return Some(l.code_str());
        }
        for d in self.descriptors() {
            if (d.tag == tag::SUBTITLING || d.tag == tag::TELETEXT) && d.data.len() >= 3 {
                return Some(
                    d.data[..3]
                        .iter()
                        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
                        .collect(),
                );
            }
        }
        None
    }

    pub fn ca_descriptors(&self) -> impl Iterator<Item = CaDescriptor<'_>> {
        self.descriptors().filter_map(|d| CaDescriptor::parse(&d))
    }
}

impl PmtRepr {
    pub fn parse<T: AsRef<[u8]>>(s: &Section<T>) -> Result<PmtRepr> {
        if s.table_id() != table_id::PMT {
            return Err(Error::WrongTable);
        }
        if !s.syntax_indicator() {
            return Err(Error::Malformed);
        }
        let b = s.body();
        if b.len() < 4 {
            return Err(Error::Truncated);
        }
        let pcr_pid = u16::from_be_bytes([b[0], b[1]]) & 0x1FFF;
        let pil = (u16::from_be_bytes([b[2], b[3]]) & 0x0FFF) as usize;
        if 4 + pil > b.len() {
            return Err(Error::Truncated);
        }
        let program_info = b[4..4 + pil].to_vec();
        let mut rest = &b[4 + pil..];
        let mut streams = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 5 {
                return Err(Error::Truncated);
            }
            let stream_type = rest[0];
            let elementary_pid = u16::from_be_bytes([rest[1], rest[2]]) & 0x1FFF;
            let eil = (u16::from_be_bytes([rest[3], rest[4]]) & 0x0FFF) as usize;
            if 5 + eil > rest.len() {
                return Err(Error::Truncated);
            }
            streams.push(PmtStream {
                stream_type,
                elementary_pid,
                descriptors: rest[5..5 + eil].to_vec(),
            });
            rest = &rest[5 + eil..];
        }
        Ok(PmtRepr {
            program_number: s.table_id_extension(),
            version: s.version_number(),
            pcr_pid,
            program_info,
            streams,
        })
    }

    pub fn program_info(&self) -> Descriptors<'_> {
        Descriptors::new(&self.program_info)
    }

    /// ECM PIDs named by CA descriptors at program and stream level.
    pub fn ecm_pids(&self) -> Vec<(u16, u16)> {
        let mut v: Vec<(u16, u16)> = self
            .program_info()
            .filter_map(|d| CaDescriptor::parse(&d))
            .chain(self.streams.iter().flat_map(|s| s.ca_descriptors()))
            .map(|c| (c.ca_system_id, c.ca_pid))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn emit(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.program_info.len() + self.streams.len() * 16);
        body.extend_from_slice(&(0xE000 | self.pcr_pid).to_be_bytes());
        body.extend_from_slice(&(0xF000 | self.program_info.len() as u16).to_be_bytes());
        body.extend_from_slice(&self.program_info);
        for s in &self.streams {
            body.push(s.stream_type);
            body.extend_from_slice(&(0xE000 | s.elementary_pid).to_be_bytes());
            body.extend_from_slice(&(0xF000 | s.descriptors.len() as u16).to_be_bytes());
            body.extend_from_slice(&s.descriptors);
        }
        build_long_section(
            table_id::PMT,
            self.program_number,
            self.version,
            0,
            0,
            &body,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_kinds() {
        let pmt = PmtRepr {
            program_number: 3,
            version: 4,
            pcr_pid: 0x100,
            program_info: vec![0x09, 4, 0x0B, 0x00, 0xE5, 0x00],
            streams: vec![
                PmtStream {
                    stream_type: 0x1B,
                    elementary_pid: 0x100,
                    descriptors: vec![],
                },
                PmtStream {
                    stream_type: 0x03,
                    elementary_pid: 0x101,
                    descriptors: vec![0x0A, 4, b'f', b'r', b'a', 0],
                },
                PmtStream {
                    stream_type: 0x06,
                    elementary_pid: 0x102,
                    descriptors: vec![0x59, 8, b'e', b'n', b'g', 0x10, 0, 1, 0, 1],
                },
                PmtStream {
                    stream_type: 0x06,
                    elementary_pid: 0x103,
                    descriptors: vec![0x6A, 1, 0],
                },
            ],
        };
        let bytes = pmt.emit();
        let s = Section::new_verified(&bytes[..]).unwrap();
        let back = PmtRepr::parse(&s).unwrap();
        assert_eq!(back, pmt);
        let kinds: Vec<_> = back.streams.iter().map(|s| s.kind()).collect();
        assert_eq!(
            kinds,
            vec![
                StreamKind::Video,
                StreamKind::Audio,
                StreamKind::Subtitles,
                StreamKind::Audio
            ]
        );
        assert_eq!(back.streams[1].any_language().as_deref(), Some("fra"));
        assert_eq!(back.streams[2].any_language().as_deref(), Some("eng"));
        assert_eq!(back.ecm_pids(), vec![(0x0B00, 0x0500)]);
    }

    #[test]
    fn one_classification_for_kind_codec_and_enums() {
        let st = |stream_type: u8, descriptors: Vec<u8>| PmtStream {
            stream_type,
            elementary_pid: 0x100,
            descriptors,
        };
        let c = st(0x1B, vec![]).classify();
        assert_eq!((c.kind, c.codec), (StreamKind::Video, Some("h264")));
        assert_eq!(st(0x1B, vec![]).video_codec(), Some(VideoCodec::H264));
        assert_eq!(st(0x42, vec![]).video_codec(), Some(VideoCodec::Other));
        assert_eq!(st(0x04, vec![]).audio_codec(), Some(AudioCodec::Mpeg));
        assert_eq!(st(0x1C, vec![]).audio_codec(), Some(AudioCodec::Aac));
        assert_eq!(st(0x11, vec![]).audio_codec(), Some(AudioCodec::AacLatm));
        // 0x06: the first telling descriptor decides kind and codec alike.
        let dts_then_ac3 = st(0x06, vec![0x7B, 0, tag::AC3, 0]);
        assert_eq!(dts_then_ac3.classify().codec, Some("dts"));
        assert_eq!(dts_then_ac3.audio_codec(), Some(AudioCodec::Other));
        let eac3 = st(0x06, vec![tag::REGISTRATION, 4, b'E', b'A', b'C', b'3']);
        assert_eq!(eac3.audio_codec(), Some(AudioCodec::Eac3));
        let klv = st(0x06, vec![tag::REGISTRATION, 4, b'K', b'L', b'V', b'A']);
        assert_eq!(
            klv.classify(),
            Class {
                kind: StreamKind::Data,
                codec: Some("klv")
            }
        );
        assert_eq!(st(0x06, vec![0x46, 0]).kind(), StreamKind::Teletext);
        assert_eq!(st(0x06, vec![]).classify(), Class::DATA);
        assert_eq!(st(0x99, vec![]).audio_codec(), None);
        assert_eq!(AudioCodec::of_stream_type(0x87), Some(AudioCodec::Eac3));
        assert_eq!(AudioCodec::of_stream_type(0x06), None);
    }

    #[test]
    fn truncated_es_loop_refused() {
        let mut body = vec![0xE1, 0x00, 0xF0, 0x00, 0x1B, 0xE1, 0x00, 0xF0, 0x10];
        body.extend_from_slice(&[0; 3]);
        let bytes = build_long_section(2, 1, 0, 0, 0, &body);
        let s = Section::new_verified(&bytes[..]).unwrap();
        assert_eq!(PmtRepr::parse(&s), Err(Error::Truncated));
    }
}
