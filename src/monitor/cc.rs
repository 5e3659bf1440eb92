//! The continuity-count rule, once for all of capbox (ISO/IEC 13818-1
//! §2.4.3.3 and TR 101 290 1.4 "Continuity_count_error").
//!
//! Owns: when a packet's continuity_counter is an error. Packets without
//! payload (adaptation-only) do not advance the counter and are not checked;
//! a discontinuity_indicator restarts the check; one duplicate packet is
//! allowed, a second duplicate, a gap or a step back is an error.
//!
//! Used by: `capbox probe`, the input mux's remux, each channel source's
//! health. What a caller does with a duplicate (forward it, drop it) is its
//! own business; only the counting is here.

/// The continuity state of one PID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CcCheck {
    last: Option<u8>,
    dup_seen: bool,
}

impl CcCheck {
    /// Check the next packet of this PID; true if it is a continuity error.
    #[inline]
    pub fn check(&mut self, cc: u8, has_payload: bool, discontinuity: bool) -> bool {
        if discontinuity {
            self.last = None;
        }
        if !has_payload {
            return false;
        }
        let cc = cc & 0x0F;
        let mut error = false;
        if let Some(last) = self.last {
            if cc == last {
                error = self.dup_seen;
                self.dup_seen = true;
                return error;
            }
            error = cc != (last + 1) & 0x0F;
        }
        self.dup_seen = false;
        self.last = Some(cc);
        error
    }

    /// The counter a packet with payload must carry to continue the PID
    /// plainly (no error, not a duplicate), once a counter was seen.
    #[inline]
    pub fn next_cc(&self) -> Option<u8> {
        self.last.map(|l| (l + 1) & 0x0F)
    }

    /// What `check` does for packets with payload carrying `next_cc`, the
    /// last of them `cc`: no error, no duplicate pending.
    #[inline]
    pub fn continued(&mut self, cc: u8) {
        self.dup_seen = false;
        self.last = Some(cc & 0x0F);
    }

    /// The same, from a parsed packet.
    #[inline]
    pub fn check_packet<T: AsRef<[u8]>>(&mut self, p: &crate::ts::packet::Packet<T>) -> bool {
        self.check(p.continuity_counter(), p.has_payload(), p.discontinuity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cc_check_follows_tr_101_290() {
        let mut c = CcCheck::default();
        assert!(!c.check(3, true, false));
        assert!(!c.check(4, true, false));
        assert!(!c.check(4, true, false), "one duplicate is allowed");
        assert!(c.check(4, true, false), "a second duplicate is an error");
        assert!(!c.check(5, true, false));
        assert!(c.check(7, true, false), "a gap");
        assert!(!c.check(7, false, false), "no payload: not checked");
        assert!(!c.check(8, true, false));
        assert!(!c.check(2, true, true), "discontinuity_indicator restarts");
        assert!(!c.check(3, true, false));
        assert!(c.check(2, true, false), "a step back");
        // Wrap.
        let mut c = CcCheck::default();
        assert!(!c.check(15, true, false));
        assert!(!c.check(0, true, false));
    }

    #[test]
    fn gaps_and_second_duplicate_counted() {
        let mut c = CcCheck::default();
        let errors = [0u8, 1, 2, 2, 4, 4, 4, 5]
            .iter()
            .filter(|&&cc| c.check(cc, true, false))
            .count();
        // 2→4 a gap, the third 4 a second duplicate.
        assert_eq!(errors, 2);
    }

    #[test]
    fn adaptation_only_with_discontinuity_restarts() {
        let mut c = CcCheck::default();
        assert!(!c.check(5, true, false));
        // Adaptation-only packet announcing a break: not checked, but the
        // next payload packet may carry any counter.
        assert!(!c.check(4, false, true));
        assert!(!c.check(11, true, false));
        assert!(!c.check(12, true, false));
    }
}
