//! Restart delays with Twisted procmon semantics (as ncolony): pure arithmetic.
//!
//! Depends on `std::time::Duration` only.

use std::time::Duration;

/// The restart policy shared by every program.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// A program that lived less than this died "instantly".
    pub threshold: Duration,
    /// The first delay after an instant death.
    pub min_delay: Duration,
    /// The cap of the doubling delay.
    pub max_delay: Duration,
    /// Time between the stop signal and SIGKILL.
    pub killtime: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            threshold: Duration::from_secs(1),
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3600),
            killtime: Duration::from_secs(5),
        }
    }
}

/// The per-program delay state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    delay: Duration,
}

impl Backoff {
    /// A fresh program: the next instant death waits `min_delay`.
    pub fn new(policy: &Policy) -> Backoff {
        Backoff { delay: policy.min_delay.min(policy.max_delay) }
    }

    /// The delay the next instant death will wait.
    pub fn current(&self) -> Duration {
        self.delay
    }

    /// A program died after living `lived`: returns how long to wait before
    /// starting it again. An instant death waits the current delay and
    /// doubles it (up to the cap); a longer life restarts at once and resets
    /// the delay.
    pub fn on_exit(&mut self, lived: Duration, policy: &Policy) -> Duration {
        if lived < policy.threshold {
            let wait = self.delay;
            self.delay = (self.delay * 2).min(policy.max_delay).max(policy.min_delay.min(policy.max_delay));
            wait
        } else {
            self.delay = policy.min_delay.min(policy.max_delay);
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(min: f64, max: f64) -> Policy {
        Policy {
            threshold: Duration::from_secs(1),
            min_delay: Duration::from_secs_f64(min),
            max_delay: Duration::from_secs_f64(max),
            killtime: Duration::from_secs(5),
        }
    }

    #[test]
    fn doubles_then_caps_then_resets() {
        // ncolony observed with -m 0.5 -M 4: 0.5, 1, 2, 4, 4.
        let p = policy(0.5, 4.0);
        let mut b = Backoff::new(&p);
        let quick = Duration::from_millis(10);
        let waits: Vec<f64> = (0..6).map(|_| b.on_exit(quick, &p).as_secs_f64()).collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]);
        assert_eq!(b.on_exit(Duration::from_secs(2), &p), Duration::ZERO);
        assert_eq!(b.on_exit(quick, &p), Duration::from_millis(500));
    }

    proptest! {
        #[test]
        fn follows_min_times_two_to_the_n_capped(min in 1u64..5000, max in 1u64..100_000, lives in prop::collection::vec(0u64..3000, 1..40)) {
            let p = Policy { min_delay: Duration::from_millis(min), max_delay: Duration::from_millis(max), ..policy(1.0, 1.0) };
            let mut b = Backoff::new(&p);
            let mut n = 0u32; // instant deaths since the last reset
            for lived in lives {
                let lived = Duration::from_millis(lived);
                let wait = b.on_exit(lived, &p);
                if lived < p.threshold {
                    let expect = Duration::from_millis(min.saturating_mul(1u64 << n.min(40))).min(p.max_delay);
                    prop_assert_eq!(wait, expect.max(p.min_delay.min(p.max_delay)));
                    n += 1;
                } else {
                    prop_assert_eq!(wait, Duration::ZERO);
                    n = 0;
                }
                prop_assert!(wait <= p.max_delay);
            }
        }
    }
}
