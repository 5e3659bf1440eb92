//! A channel's plain verdict from its streams' analysers: what `/status`
//! and `capbox status` will show (`scrambled` and `slate` are known
//! elsewhere: the descrambler and the slate player).

use super::{AudioState, FlowVerdict, PictureState};

/// Worst first, as the precedence of [`channel_verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelVerdict {
    /// The channel's video stream has no PES or its PTS do not advance.
    NoVideo,
    /// None of the channel's audio streams has PES with PTS advancing.
    NoAudio,
    Frozen,
    /// Every audio stream that carries frames is silent.
    Silent,
    /// Too early to say: an analyser has not seen a window yet.
    Starting,
    Ok,
}

impl ChannelVerdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelVerdict::NoVideo => "no video",
            ChannelVerdict::NoAudio => "no audio",
            ChannelVerdict::Frozen => "frozen",
            ChannelVerdict::Silent => "silent",
            ChannelVerdict::Starting => "starting",
            ChannelVerdict::Ok => "ok",
        }
    }
}

fn flowing(f: FlowVerdict) -> bool {
    // PTS − PCR out of range is a fault of its own (a metric, an alert),
    // not an absent stream.
    matches!(f, FlowVerdict::Ok | FlowVerdict::PtsPcrOutOfRange)
}

/// The verdict of a channel with an optional video stream (radio has
/// none) and its audio streams, each as (flow, content) at the same
/// moment. A channel with several audio tracks is silent only when all
/// that carry frames are (a silent second language is not an outage).
pub fn channel_verdict(
    video: Option<(FlowVerdict, PictureState)>,
    audio: &[(FlowVerdict, AudioState)],
) -> ChannelVerdict {
    let mut starting = false;
    if let Some((flow, _)) = video {
        match flow {
            FlowVerdict::Starting => starting = true,
            f if !flowing(f) => return ChannelVerdict::NoVideo,
            _ => {}
        }
    }
    if !audio.is_empty() {
        if audio.iter().all(|(f, _)| *f == FlowVerdict::Starting) {
            starting = true;
        } else if !audio.iter().any(|(f, _)| flowing(*f)) {
            return ChannelVerdict::NoAudio;
        }
    }
    if let Some((_, PictureState::Frozen { .. })) = video {
        return ChannelVerdict::Frozen;
    }
    let measured: Vec<&AudioState> = audio
        .iter()
        .filter(|(f, s)| flowing(*f) && *s != AudioState::Unknown)
        .map(|(_, s)| s)
        .collect();
    if !measured.is_empty()
        && measured
            .iter()
            .all(|s| matches!(s, AudioState::Silent { .. }))
    {
        return ChannelVerdict::Silent;
    }
    if starting {
        ChannelVerdict::Starting
    } else {
        ChannelVerdict::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FlowVerdict as F;

    const MOVING: PictureState = PictureState::Moving;
    const FROZEN: PictureState = PictureState::Frozen { since_ms: 0 };
    const SOUND: AudioState = AudioState::Sound;
    const SILENT: AudioState = AudioState::Silent { since_ms: 0 };

    #[test]
    fn precedence_and_each_verdict() {
        let v = Some((F::Ok, MOVING));
        assert_eq!(channel_verdict(v, &[(F::Ok, SOUND)]), ChannelVerdict::Ok);
        assert_eq!(
            channel_verdict(Some((F::NoPes, FROZEN)), &[(F::NoPes, SILENT)]),
            ChannelVerdict::NoVideo
        );
        assert_eq!(
            channel_verdict(Some((F::PtsStalled, MOVING)), &[]),
            ChannelVerdict::NoVideo
        );
        assert_eq!(
            channel_verdict(v, &[(F::NoPes, SOUND), (F::PtsStalled, SOUND)]),
            ChannelVerdict::NoAudio
        );
        assert_eq!(
            channel_verdict(Some((F::Ok, FROZEN)), &[(F::Ok, SILENT)]),
            ChannelVerdict::Frozen
        );
        assert_eq!(
            channel_verdict(v, &[(F::Ok, SILENT)]),
            ChannelVerdict::Silent
        );
        // One track of two silent: not silent; the other stopped: still not.
        assert_eq!(
            channel_verdict(v, &[(F::Ok, SILENT), (F::Ok, SOUND)]),
            ChannelVerdict::Ok
        );
        assert_eq!(
            channel_verdict(v, &[(F::Ok, SILENT), (F::NoPes, SOUND)]),
            ChannelVerdict::Silent
        );
        // Radio: no video stream at all.
        assert_eq!(channel_verdict(None, &[(F::Ok, SOUND)]), ChannelVerdict::Ok);
        assert_eq!(
            channel_verdict(None, &[(F::Ok, SILENT)]),
            ChannelVerdict::Silent
        );
        // PTS − PCR out of range is flowing.
        assert_eq!(
            channel_verdict(Some((F::PtsPcrOutOfRange, MOVING)), &[(F::Ok, SOUND)]),
            ChannelVerdict::Ok
        );
        assert_eq!(
            channel_verdict(
                Some((F::Starting, MOVING)),
                &[(F::Starting, AudioState::Unknown)]
            ),
            ChannelVerdict::Starting
        );
    }
}
