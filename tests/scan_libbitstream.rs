//! Follow-NIT logic of `dvb::scan` on a NIT written by biTStream (VideoLAN's
//! libbitstream headers, tests/c/si_gen.c): a terrestrial 474 MHz mux and a
//! cable 346 MHz mux. The analyzer must turn both delivery descriptors into
//! the tunings the generator meant, and a DVB-T scan must treat 474 MHz as
//! the mux it is on and leave the cable mux alone.

mod si_common;

use std::time::Duration;

use capbox::dvb::scan::{scan, MuxAnalyzer, ScanOptions, Tuner};
use capbox::dvb::tuning::Tuning;
use capbox::dvb::DvbError;
use capbox::ts::section::packetize;

fn nit_ts(tag: &str) -> Option<Vec<u8>> {
    // One generator directory per test: tests run in parallel.
    let g = si_common::generate(tag)?;
    let mut ts = Vec::new();
    let mut cc = 0;
    packetize(&g.section("nit"), 0x0010, &mut cc, &mut ts);
    Some(ts)
}

#[test]
fn nit_delivery_descriptors_become_tunings() {
    let Some(ts) = nit_ts("scan-nit-a") else {
        return;
    };
    let mut a = MuxAnalyzer::new();
    a.push(&ts);
    let m = a.nit_muxes();
    assert_eq!(a.network_name().as_deref(), Some("CapNet Télé €"));
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(
        (m[0].transport_stream_id, m[0].original_network_id),
        (4, 0x233A)
    );
    assert_eq!(
        m[0].tuning,
        Tuning::from_args(
            "dvbt 474000000 8MHz modulation=qam64 code_rate_hp=2/3 code_rate_lp=none \
             guard=1/4 mode=8k hierarchy=none"
        )
        .unwrap()
    );
    assert_eq!(
        m[1].tuning,
        Tuning::from_args("dvbc 346000000 6900000 qam64 none").unwrap()
    );
    assert_eq!(a.stats.nit_unusable, 0);
}

struct OneMux(Vec<u8>, usize);

impl Tuner for OneMux {
    fn tune_lock(&mut self, t: &Tuning, _: Duration) -> Result<(bool, String), DvbError> {
        self.1 = 0;
        Ok((
            matches!(t, Tuning::DvbT(p) if p.frequency_hz == 474_000_000),
            String::new(),
        ))
    }
    fn read(&mut self, buf: &mut [u8], _: Duration) -> Result<usize, DvbError> {
        let n = buf.len().min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
}

#[test]
fn scan_dedupes_own_mux_and_skips_other_medium() {
    let Some(mut ts) = nit_ts("scan-nit-b") else {
        return;
    };
    ts.extend(std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/mux.ts")).unwrap());
    let mut t = OneMux(ts, 0);
    let initial = [Tuning::from_args("dvbt 474000000 8MHz").unwrap()];
    let r = scan(&mut t, &initial, &ScanOptions::default(), |_| {});
    assert_eq!(r.muxes.len(), 1);
    assert_eq!(r.stats.nit_duplicates, 1);
    assert_eq!(r.stats.nit_other_medium, 1);
    assert_eq!(r.stats.nit_added, 0);
    assert_eq!(r.muxes[0].services.len(), 3);
}
