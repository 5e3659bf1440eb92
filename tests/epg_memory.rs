//! The EPG store's memory, measured: 200 channels × 7 days of events with
//! realistic text, counted by a global allocator that adds up what glibc's
//! malloc really hands out (`malloc_usable_size` + its 8-byte header), set
//! against the store's own figure (`Store::bytes`, `Event::footprint`) and
//! the default budget; then the same schedule repeated for an hour must
//! not grow the heap.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use capbox::epg::{Limits, Outcome, PartKey, RawEvent, Store};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

fn real(ptr: *mut u8) -> isize {
    // SAFETY: ptr came from System.alloc (glibc malloc) and is live.
    unsafe { libc::malloc_usable_size(ptr.cast()) as isize + 8 }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(real(p), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(real(p), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const NOW: i64 = 1_780_000_000;
const CHANNELS: usize = 200;
const PER_DAY: usize = 48;

/// One EIT schedule table (4 days) of channel `c`: 30-minute events, a
/// 20-byte title, a 40-byte subtitle, a 250-byte description.
fn table(c: usize, t: u8) -> Vec<RawEvent> {
    let from = NOW + t as i64 * 4 * 86_400;
    let days = if t == 0 { 4 } else { 3 };
    (0..days * PER_DAY)
        .map(|i| RawEvent {
            event_id: i as u16,
            start: Some(from + i as i64 * 1800),
            duration: Some(1800),
            title: format!("Programme {c:03} {i:06}"),
            subtitle: format!("Episode {i:04} of the series, season {c:03}."),
            description: "d".repeat(249) + ".",
            language: Some("eng".into()),
            content: vec![0x10],
            min_age: None,
        })
        .collect()
}

fn fill(s: &mut Store, now: i64) -> usize {
    let mut stored = 0;
    for c in 0..CHANNELS {
        for t in 0..2 {
            match s.replace_raw(
                &format!("channel-{c:03}"),
                PartKey::EitSchedule(t),
                table(c, t),
                now,
            ) {
                Outcome::Stored(n) => stored += n,
                Outcome::Unchanged => {}
                o => panic!("channel {c} table {t}: {o:?}"),
            }
        }
    }
    stored
}

#[test]
fn two_hundred_channels_seven_days_fit_and_do_not_grow() {
    let limits = Limits::default();
    let before = LIVE.load(Ordering::Relaxed);
    let mut s = Store::new(limits.clone());
    let n = fill(&mut s, NOW);
    assert_eq!(n, CHANNELS * 7 * PER_DAY);
    let heap = (LIVE.load(Ordering::Relaxed) - before) as usize;
    let own = s.bytes();
    eprintln!(
        "epg store: {n} events, {own} bytes by footprint ({} per event), {heap} bytes on the heap, budget {}",
        own / n,
        limits.budget_bytes
    );
    assert_eq!(s.rejects.over_budget, 0);
    assert!(own <= limits.budget_bytes);
    // The footprint leaves out only the per-part vectors' slack, the maps
    // and the channel names: within 5 %.
    assert!(
        heap as f64 <= own as f64 * 1.05,
        "heap {heap} vs footprint {own}"
    );
    assert!(
        heap as f64 >= own as f64 * 0.9,
        "heap {heap} vs footprint {own}"
    );

    // An hour of the same schedule, every 10 s (360 rounds would take a
    // while at 200 channels: every 60 s, 60 rounds).
    for i in 1..=60 {
        assert_eq!(fill(&mut s, NOW + i * 60), 0);
    }
    let after = (LIVE.load(Ordering::Relaxed) - before) as usize;
    eprintln!("after an hour of repeats: {after} bytes on the heap");
    // The counter is the whole process's: the test harness's own threads
    // may hold a few hundred bytes at the moment it is read (192 B seen
    // once). A store that grew with each repeat would show 60 times its
    // per-round growth; the store's own count must not move at all.
    assert!(
        after <= heap + 4096,
        "the store grew with a repeated schedule: {heap} -> {after} bytes"
    );
    assert_eq!(s.bytes(), own);
}
