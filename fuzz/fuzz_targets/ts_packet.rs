//! Packet::new_checked on arbitrary bytes, then every accessor (they must not
//! panic after the check) and the Adaptation view on arbitrary bytes.
#![no_main]
use capbox::ts::packet::{Adaptation, Packet};
use capbox::ts::PACKET_SIZE;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The adaptation view is also fed raw bytes, as a field body.
    if let Ok(a) = Adaptation::new_checked(data) {
        let _ = (a.discontinuity(), a.random_access(), a.es_priority());
        let _ = (a.has_pcr(), a.has_opcr(), a.pcr(), a.opcr());
    }
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.transport_error(),
        p.payload_unit_start(),
        p.transport_priority(),
    );
    assert!(p.pid() <= 0x1FFF);
    let _ = (
        p.scrambling_control(),
        p.scrambling(),
        p.adaptation_field_control(),
    );
    let _ = (p.has_adaptation(), p.has_payload(), p.continuity_counter());
    let _ = p.adaptation_field_length();
    if let Some(a) = p.adaptation() {
        let _ = (
            a.discontinuity(),
            a.random_access(),
            a.es_priority(),
            a.opcr(),
        );
    }
    assert!(p.payload_offset() <= PACKET_SIZE);
    assert!(p.payload().len() <= PACKET_SIZE - 4);
    let _ = (p.discontinuity(), p.random_access(), p.pcr());
    assert_eq!(p.as_bytes().len() >= PACKET_SIZE, true);

    // Setters on a copy keep the packet valid and say what they wrote.
    let mut raw = [0u8; PACKET_SIZE];
    raw.copy_from_slice(&data[..PACKET_SIZE]);
    let mut m = Packet::new_checked(&mut raw[..]).expect("copy of a checked packet");
    m.set_pid(0x1234 & 0x1FFF);
    m.set_continuity_counter(0x1F);
    m.set_scrambling_control(2);
    let _ = m.payload_mut().len();
    let m = Packet::new_checked(&raw[..]).expect("setters keep the packet valid");
    assert_eq!(m.pid(), 0x1234 & 0x1FFF);
    assert_eq!(m.continuity_counter(), 0x0F);
    assert_eq!(m.scrambling_control(), 2);
});
