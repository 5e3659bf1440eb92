//! Key slots: the mailbox between whatever produces control words (a BISS
//! key from config, a smart card answering ECMs, a softcam over dvbapi) and
//! the descrambler on the runner thread.
//!
//! Owns: the latest control word delivered for each parity of one service,
//! with a generation number per delivery. Producers write from any thread;
//! the descrambler reads a snapshot when `generation()` moved.
//!
//! Promises: writes never block the runner for longer than a copy of 2 × 8
//! bytes; a snapshot is consistent (both slots from one moment). The slots
//! do not decide which word the descrambler may use when: the descrambler
//! keeps its own active keys and applies the rule "a new word never
//! replaces the slot of the parity on air while that slot is still good"
//! (see `crate::ca::descrambler`). Control words never appear in `Debug`.

use crate::ca::csa::Parity;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One delivered control word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub cw: [u8; 8],
    /// Generation of the delivery (increasing over the slots' life).
    pub generation: u64,
}

impl std::fmt::Debug for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Delivered(gen {})", self.generation)
    }
}

/// Both slots at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub even: Option<Delivered>,
    pub odd: Option<Delivered>,
    pub generation: u64,
}

impl Snapshot {
    pub fn get(&self, p: Parity) -> Option<Delivered> {
        match p {
            Parity::Even => self.even,
            Parity::Odd => self.odd,
        }
    }
}

/// The even and odd slots of one service.
#[derive(Debug, Default)]
pub struct KeySlots {
    generation: AtomicU64,
    inner: Mutex<Snapshot>,
}

impl KeySlots {
    pub fn new() -> KeySlots {
        KeySlots::default()
    }

    /// Both slots set to one fixed word (BISS).
    pub fn fixed(cw: [u8; 8]) -> KeySlots {
        let s = KeySlots::new();
        s.set_pair(Some(cw), Some(cw));
        s
    }

    /// Deliver a word for one parity.
    pub fn set(&self, parity: Parity, cw: [u8; 8]) {
        match parity {
            Parity::Even => self.set_pair(Some(cw), None),
            Parity::Odd => self.set_pair(None, Some(cw)),
        }
    }

    /// Deliver the words of one answer (an ECM gives both; a softcam may
    /// give one). A word equal to the one already in its slot is not a new
    /// delivery: its generation stays, so a repeated answer changes nothing.
    pub fn set_pair(&self, even: Option<[u8; 8]>, odd: Option<[u8; 8]>) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let g = &mut *guard;
        let mut changed = false;
        for (slot, new) in [(&mut g.even, even), (&mut g.odd, odd)] {
            if let Some(cw) = new {
                if slot.map(|d| d.cw) != Some(cw) {
                    let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                    *slot = Some(Delivered { cw, generation });
                    changed = true;
                }
            }
        }
        if changed {
            g.generation = self.generation.load(Ordering::Acquire);
        }
    }

    /// Forget both words (card removed, softcam gone): the descrambler then
    /// counts packets as having no key instead of using stale words.
    pub fn clear(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *g = Snapshot {
            even: None,
            odd: None,
            generation,
        };
    }

    /// Changes whenever a slot changes: a cheap check before `snapshot`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Snapshot {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_and_generations() {
        let s = KeySlots::new();
        assert_eq!(s.generation(), 0);
        s.set(Parity::Even, [1; 8]);
        let a = s.snapshot();
        assert_eq!(a.even.unwrap().cw, [1; 8]);
        assert!(a.odd.is_none());
        // The same word again is not a new delivery.
        s.set_pair(Some([1; 8]), Some([2; 8]));
        let b = s.snapshot();
        assert_eq!(b.even, a.even);
        assert!(b.odd.unwrap().generation > a.even.unwrap().generation);
        assert_eq!(b.generation, s.generation());
        s.clear();
        assert_eq!(s.snapshot().even, None);
        assert!(s.generation() > b.generation);
        assert!(!format!("{:?}", KeySlots::fixed([7; 8])).contains("7, 7"));
    }
}
