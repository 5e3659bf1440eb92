//! `[recovery]`: the timings and counts of every adapter's escalation
//! ladder (`dvb::recovery`): how long locked but silent before a retune,
//! retunes before a reopen, reopens before a USB reset, how long a reset
//! may take, how long data must flow to call it healed, and how often a
//! failed adapter is retried.
//!
//! A child of `walk` so it uses the same `Walker` (every error names
//! `file:line: key`).

use super::*;
use crate::dvb::recovery::RecoveryConfig;

/// The keys of `[recovery]`, for `finish`'s "expected one of".
const KEYS: &[&str] = &[
    "silent_ms",
    "retunes",
    "reopens",
    "usb_reset_wait_ms",
    "healed_after_s",
    "failed_retry_s",
];

/// Reads `[recovery]`; the defaults for what is not written.
pub(super) fn recovery(w: &mut Walker, f: Field) -> RecoveryConfig {
    let d = RecoveryConfig::default();
    let Some(mut t) = open(w, &f) else { return d };
    let silent_ms = w.int(
        &mut t,
        "silent_ms",
        200,
        600_000,
        d.silent_ms as i64,
        "milliseconds (locked with no dvr data this long is a fault)",
    ) as u64;
    let retunes = w.int(
        &mut t,
        "retunes",
        0,
        20,
        d.retunes as i64,
        "a number of retunes before the adapter is reopened",
    ) as u32;
    let reopens = w.int(
        &mut t,
        "reopens",
        0,
        20,
        d.reopens as i64,
        "a number of reopens before the USB device is reset",
    ) as u32;
    let usb_reset_wait_ms = w.int(
        &mut t,
        "usb_reset_wait_ms",
        1000,
        120_000,
        d.usb_reset_wait_ms as i64,
        "milliseconds (how long a USB reset may take, device back included)",
    ) as u64;
    let healed_after_s = w.int(
        &mut t,
        "healed_after_s",
        1,
        86_400,
        (d.healed_after_ms / 1000) as i64,
        "seconds (data flowing this long after a step: the ladder starts over)",
    ) as u64;
    let failed_retry_s = w.int(
        &mut t,
        "failed_retry_s",
        1,
        86_400,
        (d.failed_retry_ms / 1000) as i64,
        "seconds (how often a failed adapter is tried again)",
    ) as u64;
    w.finish(t, KEYS);
    RecoveryConfig {
        silent_ms,
        retunes,
        reopens,
        usb_reset_wait_ms,
        healed_after_ms: healed_after_s * 1000,
        failed_retry_ms: failed_retry_s * 1000,
    }
}
