//! PesHeader::new_checked on arbitrary bytes, then every accessor; and PTS
//! encode/decode agreement.
#![no_main]
use capbox::ts::pes::{encode_pts, pts_delta, PesHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = PesHeader::new_checked(data) else {
        return;
    };
    let _ = (
        h.stream_id(),
        h.pes_packet_length(),
        h.has_optional_header(),
    );
    let _ = (
        h.pes_scrambling_control(),
        h.pes_priority(),
        h.data_alignment_indicator(),
    );
    let _ = (h.copyright(), h.original_or_copy(), h.pts_dts_flags());
    let _ = h.pes_header_data_length();
    let (pts, dts) = (h.pts(), h.dts());
    assert!(h.payload_offset() <= data.len());
    assert_eq!(h.payload().len(), data.len() - h.payload_offset());
    if let Some(p) = pts {
        assert!(p < 1 << 33);
        // Re-encoding the PTS in a minimal header gives it back.
        let mut raw = [0u8; 14];
        raw[..9].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5]);
        let mut ts = [0u8; 5];
        encode_pts(p, 0b0010, &mut ts);
        raw[9..].copy_from_slice(&ts);
        let h2 = PesHeader::new_checked(&raw[..]).expect("built header");
        assert_eq!(h2.pts(), Some(p));
        if let Some(d) = dts {
            assert!(d < 1 << 33);
            assert!(pts_delta(d, p) < 1 << 33);
        }
    }
});
