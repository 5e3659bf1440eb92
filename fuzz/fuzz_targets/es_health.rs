//! The elementary-stream analysers (es_health) on arbitrary PES payloads:
//! the input's first byte picks the codecs, then length-prefixed payloads
//! with a clock step each.
#![no_main]
use capbox::monitor::es::{
    audio, EsFlow, FlowConfig, FreezeConfig, FreezeDetector, SilenceConfig, SilenceDetector,
};
use capbox::ts::pmt::{AudioCodec, VideoCodec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let vcodec = [VideoCodec::Mpeg2, VideoCodec::H264, VideoCodec::Hevc, VideoCodec::Other]
        [(sel & 3) as usize];
    let acodec = [
        AudioCodec::Mpeg,
        AudioCodec::Ac3,
        AudioCodec::Aac,
        AudioCodec::AacLatm,
        AudioCodec::Eac3,
    ][((sel >> 2) % 5) as usize];
    let mut v = FreezeDetector::new(vcodec, FreezeConfig::default());
    let mut a = SilenceDetector::new(acodec, SilenceConfig::default());
    let mut f = EsFlow::new(FlowConfig::default(), 0);
    let mut now = 0u64;
    while rest.len() >= 3 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        now += rest[2] as u64 * 7;
        rest = &rest[3..];
        let take = len.min(rest.len());
        let (payload, tail) = rest.split_at(take);
        rest = tail;
        v.push_pes(now, payload);
        a.push_pes(now, payload);
        let pts = payload.get(..5).map(|b| u64::from_be_bytes([0, 0, 0, b[0] & 1, b[1], b[2], b[3], b[4]]));
        f.on_pes(now, payload.len(), pts, pts.map(|p| p.wrapping_sub(now).wrapping_mul(300)));
        assert!(a.buffered() <= audio::MAX_BUFFER);
        let s = a.stats();
        assert!(s.silent_frames <= s.frames);
        if let Some(l) = a.last_level_dbfs() {
            assert!(l <= 6.1, "level {l}");
        }
        let _ = (v.state(now), a.state(now), f.report(now));
        assert!(v.stats().skip_pictures + v.stats().identical_pictures <= v.stats().pictures);
    }
});
