//! Rate limits: a governor limiter that can be asked for more than its burst.
//!
//! The Scan source (read units per table) and the BatchWriteItem sink
//! (items, `--write-rate`) take capacity before (or, for reads, right
//! after) each call; the sink's write units follow the adaptive controller
//! in `sinks::rate` instead. One call can cost more than a second's allowance (25
//! items of 400 KB landing in two indexes is 30,000 write units), so a
//! large request is taken in parts of at most the burst, each waiting its
//! turn, instead of being refused.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A per-second limit whose burst is one second's allowance.
pub struct Limit {
    limiter: DefaultDirectRateLimiter,
    burst: u32,
}

impl Limit {
    pub fn new(per_second: NonZeroU32) -> Limit {
        Limit {
            limiter: RateLimiter::direct(Quota::per_second(per_second)),
            burst: per_second.get(),
        }
    }

    /// Waits until `n` units are available, taking them in parts.
    pub async fn take(&self, mut n: u64) {
        while n > 0 {
            let part = n.min(self.burst as u64) as u32;
            if let Some(part_nz) = NonZeroU32::new(part) {
                // `part` never exceeds the burst, so this cannot be refused.
                let _ = self.limiter.until_n_ready(part_nz).await;
            }
            n -= part as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// governor sleeps on the real clock, so this checks a lower bound only:
    /// 100 units of burst, then 150 more at 100/s cannot finish before 1.4 s.
    #[tokio::test]
    async fn the_rate_limit_spaces_calls() {
        let l = Limit::new(NonZeroU32::new(100).unwrap());
        let start = std::time::Instant::now();
        l.take(100).await; // the burst
        l.take(150).await; // more than the burst: taken in parts
        assert!(
            start.elapsed() >= Duration::from_millis(1400),
            "{:?}",
            start.elapsed()
        );
    }
}
