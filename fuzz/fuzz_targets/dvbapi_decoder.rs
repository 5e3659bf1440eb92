//! The dvbapi decoder on what a softcam (or anything listening on its port)
//! sends: arbitrary bytes, pushed in arbitrary pieces, framed (protocol 3)
//! or not, must decode into messages, NeedMore or a stop reason, never
//! panic, and never hold more than its bounded buffer.
#![no_main]
use capbox::ca::dvbapi::proto::{Decoded, Decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut d = Decoder::new(first & 1 == 1);
    let step = 1 + (first as usize >> 1) % 64;
    for piece in rest.chunks(step) {
        let mut off = 0;
        loop {
            let n = d.push(&piece[off..]);
            off += n;
            loop {
                match d.decode() {
                    Decoded::Message { .. } => continue,
                    Decoded::NeedMore => break,
                    _ => {
                        // The stream cannot be followed: a client reconnects.
                        d.clear();
                        break;
                    }
                }
            }
            if off >= piece.len() {
                break;
            }
            if n == 0 {
                // Buffer full of an unfinished message: a client gives up too.
                d.clear();
            }
        }
    }
});
