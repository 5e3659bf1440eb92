//! No elementary-stream analyser panics or grows on hostile input: random
//! payloads, start-code-dense garbage, valid audio headers over random
//! bodies, and bit flips and cuts of ffmpeg-made streams, for every codec.

use capbox::monitor::es::{
    audio, EsFlow, FlowConfig, FreezeConfig, FreezeDetector, SilenceConfig, SilenceDetector,
};
use capbox::ts::pmt::{AudioCodec, VideoCodec};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const VIDEO: [VideoCodec; 4] = [
    VideoCodec::Mpeg2,
    VideoCodec::H264,
    VideoCodec::Hevc,
    VideoCodec::Other,
];
const AUDIO: [AudioCodec; 6] = [
    AudioCodec::Mpeg,
    AudioCodec::Ac3,
    AudioCodec::Aac,
    AudioCodec::AacLatm,
    AudioCodec::Eac3,
    AudioCodec::Other,
];

/// Every analyser on every payload, checking the bounds after each.
fn feed_all(payloads: &[Vec<u8>]) {
    for vc in VIDEO {
        let mut v = FreezeDetector::new(vc, FreezeConfig::default());
        for (i, p) in payloads.iter().enumerate() {
            v.push_pes(i as u64 * 40, p);
            let _ = v.state(i as u64 * 40);
        }
        let s = v.stats();
        assert!(s.skip_pictures + s.identical_pictures + s.near_identical_pictures <= s.pictures);
    }
    for ac in AUDIO {
        let mut a = SilenceDetector::new(ac, SilenceConfig::default());
        for (i, p) in payloads.iter().enumerate() {
            a.push_pes(i as u64 * 24, p);
            assert!(a.buffered() <= audio::MAX_BUFFER);
            if let Some(l) = a.last_level_dbfs() {
                assert!(l <= 6.1, "{ac:?}: level {l}");
            }
            let _ = a.state(i as u64 * 24);
        }
        let s = a.stats();
        assert!(s.silent_frames <= s.frames);
    }
    let mut f = EsFlow::new(FlowConfig::default(), 0);
    let mut rng = Rng(payloads.len() as u64 | 1);
    for (i, p) in payloads.iter().enumerate() {
        let pts = (rng.below(4) > 0).then(|| rng.next() % (1 << 34));
        let pcr = (rng.below(4) > 0).then(|| rng.next());
        f.on_pes(i as u64 * 13, p.len(), pts, pcr);
        let _ = f.report(i as u64 * 13);
    }
}

#[test]
fn random_and_start_code_dense_payloads() {
    let mut rng = Rng(0x5eed_e5e5);
    for round in 0..300 {
        let mut payloads = Vec::new();
        for _ in 0..40 {
            let n = rng.below(if round % 10 == 0 { 20_000 } else { 2_000 });
            let dense = round % 2 == 1;
            let p: Vec<u8> = (0..n)
                .map(|_| {
                    if dense {
                        // Mostly 00 00 01 xx and sync words.
                        [0, 0, 1, 0xFF, 0x0B, 0x77, 0xF1, rng.byte()][rng.below(8)]
                    } else {
                        rng.byte()
                    }
                })
                .collect();
            payloads.push(p);
        }
        feed_all(&payloads);
    }
}

/// A valid header of each audio codec followed by random bytes, often
/// shorter than the header says.
#[test]
fn valid_audio_headers_over_random_bodies() {
    let mut rng = Rng(0xac3_aac);
    let headers: [&[u8]; 8] = [
        &[0xFF, 0xFD, 0xA4, 0x00],             // MPEG-1 L2 192k 48k stereo
        &[0xFF, 0xF5, 0x84, 0xC0],             // MPEG-2 LSF L2 mono
        &[0x0B, 0x77, 0, 0, 0x14, 0x40],       // AC-3 48k 192k bsid 8
        &[0x0B, 0x77, 0, 0, 0x40, 0x50],       // AC-3 44.1k bsid 10
        &[0xFF, 0xF1, 0x4C, 0x80, 0x2E, 0x7F], // ADTS LC 48k stereo
        &[0xFF, 0xF0, 0x4C, 0x40, 0x01, 0x1F], // ADTS with CRC
        &[0x56, 0xE0, 0xDD, 0x20, 0x00, 0x11, 0x88, 0x1F], // LOAS, StreamMuxConfig
        &[0x0B, 0x77, 0x00, 0xBF, 0x32, 0x87], // E-AC-3 48k stereo
    ];
    for _ in 0..3000 {
        let mut payloads = Vec::new();
        for _ in 0..8 {
            let mut p = headers[rng.below(headers.len())].to_vec();
            // ADTS: a random frame_length too.
            if p[0] == 0xFF && p[1] & 0xF6 == 0xF0 && rng.below(2) == 0 {
                p.push(rng.byte() & 0x1F);
            }
            let n = rng.below(1500);
            p.extend((0..n).map(|_| rng.byte()));
            payloads.push(p);
        }
        feed_all(&payloads);
    }
}

/// A flood of one long frame's header and nothing else: the buffer stays
/// bounded and the bytes are counted.
#[test]
fn partial_frames_never_grow_the_buffer() {
    let mut a = SilenceDetector::new(AudioCodec::Aac, SilenceConfig::default());
    // frame_length 8191, never completed by anything that parses.
    let hdr = [0xFF, 0xF1, 0x4C, 0x83, 0xFF, 0xFF, 0xFC];
    for i in 0..10_000u64 {
        a.push_pes(i, &hdr);
        assert!(a.buffered() <= audio::MAX_BUFFER);
    }
    // The headers make up 8191-byte "frames" that do not parse: counted.
    let s = a.stats();
    assert!(s.bad_frames >= 8 && s.frames == 0, "{s:?}");
    // One payload larger than the bound.
    a.push_pes(0, &vec![0xFF; 3 * audio::MAX_BUFFER]);
    assert!(a.buffered() <= audio::MAX_BUFFER);
}

fn ffmpeg_stream(args: &[&str], name: &str) -> Option<Vec<u8>> {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("eshp_{name}"));
    let st = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&out)
        .status()
        .ok()?;
    if !st.success() {
        eprintln!("!!!!! SKIPPING {name}: ffmpeg failed or lacks an encoder !!!!!");
        return None;
    }
    std::fs::read(&out).ok()
}

/// Raw elementary streams ffmpeg wrote, cut into payloads at random points,
/// with bit flips, dropped and repeated pieces.
#[test]
fn mutated_ffmpeg_elementary_streams() {
    let v = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=176x144:rate=25",
        "-t",
        "2",
    ];
    let a = ["-f", "lavfi", "-i", "sine=f=700:r=48000", "-t", "2"];
    let mut streams = Vec::new();
    for (args, enc, fmt, name) in [
        (&v, "mpeg2video", "mpeg2video", "v.m2v"),
        (&v, "libx264", "h264", "v.264"),
        (&v, "libx265", "hevc", "v.265"),
        (&a, "mp2", "mp2", "a.mp2"),
        (&a, "ac3", "ac3", "a.ac3"),
        (&a, "aac", "adts", "a.aac"),
        (&a, "aac", "latm", "a.latm"),
        (&a, "eac3", "eac3", "a.ec3"),
    ] {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-c", enc, "-f", fmt]);
        if let Some(s) = ffmpeg_stream(&full, name) {
            streams.push(s);
        }
    }
    if streams.is_empty() {
        eprintln!("!!!!! SKIPPING: no ffmpeg (apt-get install ffmpeg) !!!!!");
        return;
    }
    let mut rng = Rng(0x00f1_f00d);
    for s in &streams {
        for _ in 0..40 {
            let mut data = s.clone();
            for _ in 0..rng.below(64) {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            let mut payloads = Vec::new();
            let mut i = 0;
            while i < data.len() {
                let n = 1 + rng.below(4000);
                let end = (i + n).min(data.len());
                match rng.below(10) {
                    0 => {} // dropped
                    1 => {
                        // repeated
                        payloads.push(data[i..end].to_vec());
                        payloads.push(data[i..end].to_vec());
                    }
                    _ => payloads.push(data[i..end].to_vec()),
                }
                i = end;
            }
            feed_all(&payloads);
        }
    }
}
