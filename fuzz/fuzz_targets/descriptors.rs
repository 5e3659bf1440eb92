//! A descriptor loop of arbitrary bytes through the Descriptors iterator and
//! every typed descriptor parser of ts::descriptor.
#![no_main]
use libfuzzer_sys::fuzz_target;
#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::walk_descriptors(data);
});
