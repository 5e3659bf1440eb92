//! Which slate a channel plays when every source is down.
//!
//! A slate is a short looped TS file (a still picture with a message, and
//! silence). It must have the channel's own format — video codec, size,
//! scan, frame rate, audio codec — because a downstream transcoder that
//! sees the format change reinitialises (a glitch, or a restart of the
//! whole output). capbox ships slates for the formats DVB channels
//! commonly have (`slates/make-slates.sh`); `choose` picks the closest to
//! what the channel last carried and says in words how far it is, so the
//! operator knows when to make an exact one (`capbox slate <channel>`) and
//! set it as the channel's `slate`.
//!
//! Pure: no I/O but `Path::is_file` on the candidates.

use crate::ts::pmt::{AudioCodec, VideoCodec};
use crate::ts::video_format::VideoFormat;
use std::path::{Path, PathBuf};

/// The video formats of the shipped slates: (name, codec, width, height,
/// interlaced, frames per second × 1000).
pub const VIDEO_FORMATS: &[(&str, VideoCodec, u16, u16, bool, u32)] = &[
    ("mpeg2-576i25", VideoCodec::Mpeg2, 720, 576, true, 25_000),
    ("h264-576i25", VideoCodec::H264, 720, 576, true, 25_000),
    ("h264-720p50", VideoCodec::H264, 1280, 720, false, 50_000),
    ("h264-1080i25", VideoCodec::H264, 1920, 1080, true, 25_000),
    ("hevc-1080p50", VideoCodec::Hevc, 1920, 1080, false, 50_000),
];

/// The audio codecs of the shipped slates.
pub const AUDIO_FORMATS: &[&str] = &["mp2", "aac", "ac3"];

/// What a channel carried, as far as capbox has seen it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelFormat {
    /// From the video stream's own headers (`ts::video_format`).
    pub video: Option<VideoFormat>,
    /// From the PMT, when the headers were not seen yet.
    pub video_codec: Option<VideoCodec>,
    /// The first audio stream's codec (PMT).
    pub audio: Option<AudioCodec>,
}

/// The slate to play and how well it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlateChoice {
    pub path: PathBuf,
    /// `h264-1080i25-aac`, or `file` for an operator's slate.
    pub name: String,
    /// Empty when the slate matches the channel in every respect capbox
    /// knows; else what differs, in words ("frame rate 29.97 vs 25").
    pub differences: Vec<String>,
}

impl SlateChoice {
    pub fn exact(&self) -> bool {
        self.differences.is_empty()
    }
}

/// The shipped slate closest to `f`, in `dir` (the `slates/` folder). An
/// operator's file (`override_file`) always wins: it is theirs to match.
pub fn choose(dir: &Path, override_file: Option<&Path>, f: &ChannelFormat) -> SlateChoice {
    if let Some(p) = override_file {
        return SlateChoice {
            path: p.to_path_buf(),
            name: "file".into(),
            differences: Vec::new(),
        };
    }
    let codec = f.video.map(|v| v.codec).or(f.video_codec);
    let mut differences = Vec::new();
    let video = match codec {
        Some(VideoCodec::Mpeg2) => VIDEO_FORMATS[0],
        Some(VideoCodec::Hevc) => VIDEO_FORMATS[4],
        Some(VideoCodec::H264) => match f.video.map(|v| v.height) {
            Some(h) if h <= 576 => VIDEO_FORMATS[1],
            Some(h) if h <= 720 => VIDEO_FORMATS[2],
            _ => VIDEO_FORMATS[3],
        },
        Some(VideoCodec::Other) => {
            differences.push("video codec not one capbox has a slate for".to_string());
            VIDEO_FORMATS[3]
        }
        None => {
            differences.push("video format not known yet".to_string());
            VIDEO_FORMATS[3]
        }
    };
    let (vname, _, w, h, interlaced, rate) = video;
    if let Some(v) = f.video {
        if (v.width, v.height) != (w, h) {
            differences.push(format!("size {}x{} vs {w}x{h}", v.width, v.height));
        }
        if v.interlaced != interlaced {
            differences.push(format!(
                "{} vs {}",
                if v.interlaced {
                    "interlaced"
                } else {
                    "progressive"
                },
                if interlaced {
                    "interlaced"
                } else {
                    "progressive"
                }
            ));
        }
        if let Some(r) = v.frame_rate_milli {
            if r != rate {
                differences.push(format!(
                    "frame rate {} vs {}",
                    rate_words(r),
                    rate_words(rate)
                ));
            }
        }
    }
    let aname = match f.audio {
        Some(AudioCodec::Mpeg) => "mp2",
        Some(AudioCodec::Aac) => "aac",
        Some(AudioCodec::AacLatm) => {
            differences.push("audio AAC in LATM vs ADTS".to_string());
            "aac"
        }
        Some(AudioCodec::Ac3) => "ac3",
        Some(AudioCodec::Eac3) => {
            differences.push("audio E-AC-3 vs AC-3".to_string());
            "ac3"
        }
        Some(AudioCodec::Other) => {
            differences.push("audio codec not one capbox has a slate for".to_string());
            "mp2"
        }
        None => {
            differences.push("audio codec not known yet".to_string());
            "mp2"
        }
    };
    let name = format!("{vname}-{aname}");
    SlateChoice {
        path: dir.join(format!("{name}.ts")),
        name,
        differences,
    }
}

fn rate_words(milli: u32) -> String {
    if milli.is_multiple_of(1000) {
        format!("{}", milli / 1000)
    } else {
        format!("{:.2}", milli as f64 / 1000.0)
    }
}

/// The shipped slates' folder: `CAPBOX_SLATES`, `/usr/share/capbox/slates`
/// (an installed box), or `slates/` beside the source tree (development).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CAPBOX_SLATES") {
        return PathBuf::from(d);
    }
    let installed = Path::new("/usr/share/capbox/slates");
    if installed.is_dir() {
        return installed.to_path_buf();
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/slates"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(codec: VideoCodec, w: u16, h: u16, i: bool, r: u32) -> Option<VideoFormat> {
        Some(VideoFormat {
            codec,
            width: w,
            height: h,
            interlaced: i,
            frame_rate_milli: Some(r),
        })
    }

    #[test]
    fn the_closest_shipped_slate_and_what_differs() {
        let dir = Path::new("/s");
        let c = |video, audio| {
            choose(
                dir,
                None,
                &ChannelFormat {
                    video,
                    video_codec: None,
                    audio,
                },
            )
        };
        let a = c(
            fmt(VideoCodec::H264, 1920, 1080, true, 25_000),
            Some(AudioCodec::Aac),
        );
        assert_eq!(a.name, "h264-1080i25-aac");
        assert!(a.exact(), "{a:?}");
        assert_eq!(a.path, Path::new("/s/h264-1080i25-aac.ts"));
        let b = c(
            fmt(VideoCodec::Mpeg2, 720, 576, true, 25_000),
            Some(AudioCodec::Mpeg),
        );
        assert_eq!((b.name.as_str(), b.exact()), ("mpeg2-576i25-mp2", true));
        let d = c(
            fmt(VideoCodec::H264, 1280, 720, false, 50_000),
            Some(AudioCodec::Ac3),
        );
        assert_eq!((d.name.as_str(), d.exact()), ("h264-720p50-ac3", true));
        let e = c(
            fmt(VideoCodec::Hevc, 1920, 1080, false, 50_000),
            Some(AudioCodec::Eac3),
        );
        assert_eq!(e.name, "hevc-1080p50-ac3");
        assert_eq!(e.differences, vec!["audio E-AC-3 vs AC-3"]);
        // An NTSC-area channel: the closest, and the operator is told.
        let f = c(
            fmt(VideoCodec::H264, 1920, 1080, true, 29_970),
            Some(AudioCodec::Ac3),
        );
        assert_eq!(f.name, "h264-1080i25-ac3");
        assert_eq!(f.differences, vec!["frame rate 29.97 vs 25"]);
        let g = c(
            fmt(VideoCodec::H264, 720, 480, true, 29_970),
            Some(AudioCodec::Mpeg),
        );
        assert_eq!(g.name, "h264-576i25-mp2");
        assert_eq!(
            g.differences,
            vec!["size 720x480 vs 720x576", "frame rate 29.97 vs 25"]
        );
        let h = c(None, None);
        assert_eq!(h.name, "h264-1080i25-mp2");
        assert_eq!(h.differences.len(), 2);
        let o = choose(
            dir,
            Some(Path::new("/etc/capbox/news.ts")),
            &ChannelFormat::default(),
        );
        assert_eq!((o.name.as_str(), o.exact()), ("file", true));
    }

    #[test]
    fn every_choice_names_a_shipped_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("slates");
        for &(_, codec, w, h, i, r) in VIDEO_FORMATS {
            for audio in [
                AudioCodec::Mpeg,
                AudioCodec::Aac,
                AudioCodec::AacLatm,
                AudioCodec::Ac3,
                AudioCodec::Eac3,
                AudioCodec::Other,
            ] {
                let ch = choose(
                    &dir,
                    None,
                    &ChannelFormat {
                        video: fmt(codec, w, h, i, r),
                        video_codec: None,
                        audio: Some(audio),
                    },
                );
                assert!(ch.path.is_file(), "{} missing", ch.path.display());
            }
        }
    }
}
