//! Self-test of the AVX-512 batch engine, run inside Bochs with an AVX-512
//! CPU model (hw-tests/run-bochs.sh; this machine's CPU and QEMU TCG have
//! no AVX-512). Reads the vector file written on the host by Debian's
//! libdvbcsa (tests/c/csa_vectors.c), descrambles every group of packets
//! in one `Batch` per AVX-512 variant the CPU has, and compares each packet
//! byte for byte with libdvbcsa's clear packet and with capbox's scalar
//! reference (`descramble_packet`) on the same input.
//!
//! Usage: csa_selftest VECTORS [VARIANT...]
//! VARIANT: avx512, avx512vbmi (default: both, the second where the CPU
//! has VBMI), or any other `Simd` name for a dry run on a host without
//! AVX-512. Without an explicit list, a CPU without AVX-512 F/BW/VL is a
//! failure, not a skip. Prints `PASS`/`FAIL` lines and
//! `csa-selftest: N checks, M failed`; exits with min(M, 255).

use capbox::ca::csa::{descramble_packet, Batch, Keys, Pushed, Simd};

const PKT: usize = 188;

struct Group {
    even: [u8; 8],
    odd: [u8; 8],
    /// (scrambled, expected) packets.
    packets: Vec<([u8; PKT], [u8; PKT])>,
}

fn parse(data: &[u8]) -> Result<Vec<Group>, String> {
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = data
            .get(*at..*at + n)
            .ok_or_else(|| format!("vector file truncated at byte {at}"))?;
        *at += n;
        Ok(s)
    };
    let mut at = 0;
    if take(&mut at, 8)? != b"CSAVEC01" {
        return Err("not a CSAVEC01 vector file".into());
    }
    let g = take(&mut at, 4)?;
    let ngroups = u32::from_le_bytes([g[0], g[1], g[2], g[3]]) as usize;
    let mut groups = Vec::with_capacity(ngroups);
    for _ in 0..ngroups {
        let mut even = [0u8; 8];
        let mut odd = [0u8; 8];
        even.copy_from_slice(take(&mut at, 8)?);
        odd.copy_from_slice(take(&mut at, 8)?);
        let n = take(&mut at, 2)?;
        let n = u16::from_le_bytes([n[0], n[1]]) as usize;
        let mut packets = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = [0u8; PKT];
            let mut e = [0u8; PKT];
            s.copy_from_slice(take(&mut at, PKT)?);
            e.copy_from_slice(take(&mut at, PKT)?);
            packets.push((s, e));
        }
        groups.push(Group { even, odd, packets });
    }
    if at != data.len() {
        return Err(format!("{} trailing bytes", data.len() - at));
    }
    Ok(groups)
}

/// Payload length of a (valid, generated) packet.
fn payload_len(p: &[u8; PKT]) -> usize {
    match (p[3] >> 4) & 3 {
        1 => 184,
        2 => 0,
        _ => 183 - p[4] as usize,
    }
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: csa_selftest VECTORS [VARIANT...]");
        std::process::exit(255);
    };
    let mut checks = 0u32;
    let mut failed = 0u32;
    let mut check = |ok: bool, what: String| {
        checks += 1;
        if ok {
            println!("PASS {what}");
        } else {
            failed += 1;
            println!("FAIL {what}");
        }
    };

    #[cfg(target_arch = "x86_64")]
    println!(
        "csa-selftest: cpu avx2={} avx512f={} avx512bw={} avx512vl={} avx512vbmi={}; detect() = {:?}",
        is_x86_feature_detected!("avx2"),
        is_x86_feature_detected!("avx512f"),
        is_x86_feature_detected!("avx512bw"),
        is_x86_feature_detected!("avx512vl"),
        is_x86_feature_detected!("avx512vbmi"),
        Simd::detect()
    );
    let all = [
        Simd::Portable,
        Simd::Sse2,
        Simd::Avx2,
        Simd::Avx512,
        Simd::Avx512Vbmi,
    ];
    let explicit: Vec<Simd> = args[2..]
        .iter()
        .filter_map(|a| {
            all.into_iter()
                .find(|s| format!("{s:?}").eq_ignore_ascii_case(a))
        })
        .collect();
    let variants: Vec<Simd> = if args.len() > 2 {
        explicit
    } else {
        check(
            Simd::Avx512.available(),
            "the CPU reports AVX-512 F/BW/VL (else the AVX-512 engine is NOT tested)".into(),
        );
        let best = if Simd::Avx512Vbmi.available() {
            Simd::Avx512Vbmi
        } else {
            Simd::Avx512
        };
        check(
            Simd::detect() == best,
            format!("Simd::detect() picks {best:?}"),
        );
        [Simd::Avx512, Simd::Avx512Vbmi]
            .into_iter()
            .filter(|s| s.available())
            .collect()
    };

    let groups = match std::fs::read(path)
        .map_err(|e| format!("{path}: {e}"))
        .and_then(|d| parse(&d))
    {
        Ok(g) => g,
        Err(e) => {
            check(false, format!("reading the vectors: {e}"));
            Vec::new()
        }
    };
    let total: usize = groups.iter().map(|g| g.packets.len()).sum();
    // Coverage of the file itself: every payload length with both keys.
    let mut seen = [[false; 2]; 185];
    for g in &groups {
        for (s, _) in &g.packets {
            if s[3] & 0x80 != 0 {
                seen[payload_len(s)][usize::from(s[3] & 0x40 != 0)] = true;
            }
        }
    }
    let missing = seen.iter().flatten().filter(|&&b| !b).count();
    check(
        missing == 0 && !groups.is_empty(),
        format!(
            "vectors: {} groups, {total} packets, every payload length 0..=184 scrambled with both keys ({missing} of 370 missing)",
            groups.len()
        ),
    );

    for simd in variants {
        if !simd.available() {
            check(false, format!("{simd:?}: not available on this CPU"));
            continue;
        }
        let (mut vs_lib, mut vs_scalar, mut counted) = (0usize, 0usize, true);
        let mut shown = 0;
        for (gi, g) in groups.iter().enumerate() {
            let keys = Keys::new(g.even, g.odd);
            let mut got: Vec<[u8; PKT]> = g.packets.iter().map(|p| p.0).collect();
            let mut reference: Vec<[u8; PKT]> = got.clone();
            for r in reference.iter_mut() {
                descramble_packet(r, &keys);
            }
            let counters = {
                let mut batch = Batch::with_simd(simd);
                if batch.simd() != simd {
                    check(
                        false,
                        format!("{simd:?}: Batch fell back to {:?}", batch.simd()),
                    );
                }
                for p in got.iter_mut() {
                    if let Pushed::OtherKeys(_) = batch.push(p, &keys) {
                        counted = false; // one Keys per group: cannot happen
                    }
                }
                batch.flush();
                *batch.counters()
            };
            let scrambled = g.packets.iter().filter(|p| p.0[3] & 0x80 != 0).count();
            counted &= counters.descrambled as usize == scrambled
                && counters.clear as usize == g.packets.len() - scrambled;
            for (i, ((s, want), (got, r))) in
                g.packets.iter().zip(got.iter().zip(&reference)).enumerate()
            {
                let d_lib = first_diff(got, want);
                let d_ref = first_diff(got, r);
                vs_lib += usize::from(d_lib.is_some());
                vs_scalar += usize::from(d_ref.is_some());
                if (d_lib.is_some() || d_ref.is_some()) && shown < 8 {
                    shown += 1;
                    println!(
                        "  {simd:?} group {gi} ({} packets) packet {i}: payload {} bytes, {} key: first byte differing from libdvbcsa {d_lib:?}, from scalar {d_ref:?}",
                        g.packets.len(),
                        payload_len(s),
                        if s[3] & 0x40 != 0 { "odd" } else { "even" },
                    );
                }
            }
        }
        check(
            vs_lib == 0,
            format!("{simd:?} vs libdvbcsa: {total} packets, {vs_lib} differ"),
        );
        check(
            vs_scalar == 0,
            format!("{simd:?} vs scalar reference: {total} packets, {vs_scalar} differ"),
        );
        check(counted, format!("{simd:?}: counters match the packets"));
    }
    println!("csa-selftest: {checks} checks, {failed} failed");
    std::process::exit(failed.min(255) as i32);
}
