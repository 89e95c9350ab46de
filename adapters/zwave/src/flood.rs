//! What a node can make Warden transmit. A Nonce Get, or a frame that does not decrypt, is answered
//! with a Nonce Report: without a cap, a node (or anyone spoofing its node id) sending them in a loop
//! would make the controller transmit as fast as it can. Each node gets a token bucket; an answer
//! costs a token; an empty bucket means the request is dropped, counted and audited.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Answers a node may get at once.
pub const BURST: u32 = 6;
/// One more answer allowed per this long.
pub const REFILL: Duration = Duration::from_secs(2);

/// One node's budget.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    last: Instant,
}

/// Per-node token buckets. Node ids are one byte, so the map holds at most 256 entries.
#[derive(Debug, Default)]
pub struct NonceBudget {
    buckets: HashMap<u8, Bucket>,
}

impl NonceBudget {
    /// Takes a token for `node` at `now`: true when the node may be answered.
    pub fn take(&mut self, node: u8, now: Instant) -> bool {
        let b = self.buckets.entry(node).or_insert(Bucket {
            tokens: BURST,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last);
        let earned = elapsed.as_nanos() / REFILL.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            b.tokens = b.tokens.saturating_add(earned).min(BURST);
            // keep the remainder so a steady trickle is not rounded away
            let used = REFILL.saturating_mul(earned);
            b.last = if b.tokens == BURST {
                now
            } else {
                b.last + used
            };
        }
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_refill_period_per_node() {
        let t0 = Instant::now();
        let mut b = NonceBudget::default();
        // a flood of 1,000 requests at one instant gets BURST answers
        let answered = (0..1000).filter(|_| b.take(6, t0)).count();
        assert_eq!(answered, BURST as usize);
        // another node has its own bucket
        assert!(b.take(7, t0));
        // half a period later: still nothing; a full period: one more
        assert!(!b.take(6, t0 + REFILL / 2));
        assert!(b.take(6, t0 + REFILL));
        assert!(!b.take(6, t0 + REFILL));
        // a long quiet time refills to BURST, not beyond
        let later = t0 + REFILL * 1000;
        let answered = (0..100).filter(|_| b.take(6, later)).count();
        assert_eq!(answered, BURST as usize);
    }

    #[test]
    fn a_sustained_flood_is_answered_at_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = NonceBudget::default();
        // 100 requests per second for 60 s
        let answered = (0..6000u32)
            .filter(|i| b.take(3, t0 + Duration::from_millis(u64::from(*i) * 10)))
            .count();
        let bound = BURST as usize + (60_000 / REFILL.as_millis() as usize) + 1;
        assert!(answered <= bound, "{answered} > {bound}");
        assert!(
            answered >= bound - 2,
            "{answered} answers: the trickle was rounded away"
        );
    }

    #[test]
    fn time_going_backwards_does_not_mint_tokens() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = NonceBudget::default();
        while b.take(1, t0) {}
        assert!(!b.take(1, t0 - Duration::from_secs(5)));
    }
}
