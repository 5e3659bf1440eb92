//! Scramble a clear transport stream with capbox's test CA system (testca):
//! DVB-CSA with a new control word every crypto period, testca ECMs, a PMT
//! with a CA_descriptor, a CAT and EMMs. See `capbox::ca::scrambler`.
//!
//! ```text
//! cargo run --example testca_scramble -- samples/mux.ts /tmp/scrambled.ts \
//!     --key 000102030405060708090a0b0c0d0e0f [--service 1]... [--period-ms 500] \
//!     [--seed 1] [--emm-address c0ffee01]... [--key-log /tmp/keys.txt] [--late]
//! ```
//! The key log has one line per (service, period): the control word and the
//! range of output packets it scrambled. Control words are test data here.

use capbox::ca::{scrambler, testca};

fn usage() -> ! {
    eprintln!(
        "usage: testca_scramble IN.ts OUT.ts --key <32 hex> [--service N]... \
         [--period-ms MS] [--seed N] [--emm-address HEX]... [--key-log PATH] [--late]"
    );
    std::process::exit(2)
}

fn num(s: &str) -> u64 {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.unwrap_or_else(|_| usage())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let mut key = None;
    let mut cfg = scrambler::ScramblerConfig::new([0; 16], 1);
    let mut key_log = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--key" => {
                key = Some(testca::parse_key(&val()).unwrap_or_else(|e| {
                    eprintln!("--key: {e}");
                    usage()
                }))
            }
            "--service" => cfg.services.push(num(&val()) as u16),
            "--period-ms" => cfg.period_ms = num(&val()).max(1),
            "--seed" => cfg.seed = num(&val()),
            "--emm-address" => {
                let v = val();
                cfg.emm_addresses.push(
                    u32::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or_else(|_| usage()),
                )
            }
            "--key-log" => key_log = Some(val()),
            // Each word only in the ECM of its own period (late answers).
            "--late" => cfg.announce_next = false,
            _ if a.starts_with("--") => usage(),
            _ => pos.push(a),
        }
    }
    let (Some(k), [input, output]) = (key, pos.as_slice()) else {
        usage()
    };
    cfg.card_key = k;
    let clear = std::fs::read(input).unwrap_or_else(|e| {
        eprintln!("{input}: {e}");
        std::process::exit(1)
    });
    let (out, log, stats) = scrambler::scramble(&clear, cfg);
    if let Err(e) = std::fs::write(output, &out) {
        eprintln!("{output}: {e}");
        std::process::exit(1)
    }
    if let Some(p) = key_log {
        if let Err(e) = std::fs::write(&p, scrambler::write_key_log(&log)) {
            eprintln!("{p}: {e}");
            std::process::exit(1)
        }
    }
    eprintln!("{stats:?}");
}
