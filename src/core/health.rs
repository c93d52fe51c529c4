//! Health verdicts: heartbeat staleness (ncolony.beatcheck and SLAMon-style
//! lost/dropped), probe counting, and the give-up window. Pure: time comes
//! in as arguments, verdicts go out as values.
//!
//! Depends on colony-ctl's policy types and `std::time`.

use colony_ctl::{Beatcheck, GiveUp, Heartbeat, Probe};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 1e9))
}

/// When a heartbeating program is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeatRule {
    /// No verdict before this long after a start.
    pub grace: Duration,
    /// A beat older than this is stale.
    pub stale_after: Duration,
    /// Without a beat for this long the program is dropped (SLAMon).
    pub drop_after: Option<Duration>,
    /// Look at most this long apart (SLAMon's poll); otherwise exactly when
    /// the verdict could change.
    pub poll: Option<Duration>,
}

impl BeatRule {
    /// ncolony's beatcheck: stale once `period * grace` has passed since
    /// the start and the last beat is older than `period`.
    pub fn beatcheck(b: &Beatcheck) -> BeatRule {
        BeatRule { grace: secs(b.period * b.grace), stale_after: secs(b.period), drop_after: None, poll: None }
    }

    /// SLAMon's agent liveness: lost after `lost_after` without a beat,
    /// dropped after `drop_after`, looked at every `poll`.
    pub fn heartbeat(h: &Heartbeat) -> BeatRule {
        BeatRule {
            grace: secs(h.lost_after),
            stale_after: secs(h.lost_after),
            drop_after: Some(secs(h.drop_after)),
            poll: Some(secs(h.poll)),
        }
    }
}

/// A heartbeat verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeatVerdict {
    /// Fine; look again at `next`.
    Fresh { next: Instant },
    /// No recent beat: restart it (once; the clock starts again then).
    Stale,
    /// No beat for the drop threshold: drop it from the fleet view and
    /// stop restarting it for this reason.
    Dropped,
}

/// Judges a heartbeat. `started` is the current instance's start,
/// `known_since` when colony started watching this program (for the drop
/// threshold), `last_beat` the heartbeat file's time, `None` if missing.
pub fn beat_verdict(
    rule: &BeatRule,
    started: Instant,
    known_since: Instant,
    last_beat: Option<Instant>,
    now: Instant,
) -> BeatVerdict {
    let cap = |t: Instant| rule.poll.map_or(t, |p| t.min(now + p));
    let judged_from = started + rule.grace;
    if now < judged_from {
        return BeatVerdict::Fresh { next: cap(judged_from) };
    }
    if let Some(drop) = rule.drop_after {
        let since = last_beat.unwrap_or(known_since).max(known_since);
        if now.saturating_duration_since(since) > drop {
            return BeatVerdict::Dropped;
        }
    }
    match last_beat {
        Some(beat) if now.saturating_duration_since(beat) <= rule.stale_after => {
            // Stale just after `beat + stale_after`.
            BeatVerdict::Fresh { next: cap(beat + rule.stale_after + Duration::from_millis(1)) }
        }
        _ => BeatVerdict::Stale,
    }
}

/// Counting of one probe: when it is due, and consecutive failures.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTimer {
    /// When the next try starts (`None` while one is in flight).
    pub next: Option<Instant>,
    /// Consecutive failures so far.
    pub failures: u32,
    /// Whether the last verdict was a pass.
    pub passing: bool,
}

/// What one probe result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// It passed.
    Pass,
    /// It failed, fewer times in a row than the threshold.
    Failing(u32),
    /// It failed `failure_threshold` times in a row.
    Failed,
}

impl ProbeTimer {
    /// A probe for an instance started at `started`.
    pub fn new(probe: &Probe, started: Instant) -> ProbeTimer {
        ProbeTimer { next: Some(started + secs(probe.initial_delay)), failures: 0, passing: false }
    }

    /// Whether a try should start now; if so it is marked in flight.
    pub fn start_if_due(&mut self, now: Instant) -> bool {
        if self.next.is_some_and(|n| n <= now) {
            self.next = None;
            true
        } else {
            false
        }
    }

    /// A try ended.
    pub fn finish(&mut self, probe: &Probe, ok: bool, now: Instant) -> ProbeVerdict {
        self.next = Some(now + secs(probe.period));
        if ok {
            self.failures = 0;
            self.passing = true;
            ProbeVerdict::Pass
        } else {
            self.failures += 1;
            self.passing = false;
            if self.failures >= probe.failure_threshold {
                self.failures = 0;
                ProbeVerdict::Failed
            } else {
                ProbeVerdict::Failing(self.failures)
            }
        }
    }
}

/// Recent failures, for giving up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureWindow {
    times: VecDeque<Instant>,
}

impl FailureWindow {
    /// Records a failure at `now`; returns whether the program should be
    /// given up on (`failures` within `within`).
    pub fn record(&mut self, rule: &GiveUp, now: Instant) -> bool {
        let within = secs(rule.within);
        self.times.push_back(now);
        while self.times.front().is_some_and(|t| now.saturating_duration_since(*t) > within) {
            self.times.pop_front();
        }
        while self.times.len() > rule.failures as usize {
            self.times.pop_front();
        }
        if self.times.len() >= rule.failures as usize {
            self.times.clear();
            true
        } else {
            false
        }
    }

    /// Forgets every failure (after a manual restart).
    pub fn clear(&mut self) {
        self.times.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use colony_ctl::ProbeAction;
    use proptest::prelude::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn beatcheck_matches_ncolony_numbers() {
        // period 10, grace 1, (re)started at t: OK at t and t+9 (grace),
        // stale at t+20 without a beat.
        let rule = BeatRule::beatcheck(&Beatcheck { period: 10.0, grace: 1.0, status: "x".into() });
        let t = t0();
        let s = |n: u64| t + Duration::from_secs(n);
        assert!(matches!(beat_verdict(&rule, t, t, None, t), BeatVerdict::Fresh { .. }));
        assert!(matches!(beat_verdict(&rule, t, t, None, s(9)), BeatVerdict::Fresh { .. }));
        assert_eq!(beat_verdict(&rule, t, t, None, s(20)), BeatVerdict::Stale);
        // touched at T = t+15: OK at T+9, stale at T+11.
        assert!(matches!(beat_verdict(&rule, t, t, Some(s(15)), s(24)), BeatVerdict::Fresh { .. }));
        assert_eq!(beat_verdict(&rule, t, t, Some(s(15)), s(26)), BeatVerdict::Stale);
        // grace 3: OK at t+29 even without a beat.
        let rule3 = BeatRule::beatcheck(&Beatcheck { period: 10.0, grace: 3.0, status: "x".into() });
        assert!(matches!(beat_verdict(&rule3, t, t, None, s(29)), BeatVerdict::Fresh { .. }));
        assert_eq!(beat_verdict(&rule3, t, t, None, s(31)), BeatVerdict::Stale);
    }

    #[test]
    fn slamon_thresholds() {
        let rule = BeatRule::heartbeat(&Heartbeat { file: None, poll: 60.0, lost_after: 300.0, drop_after: 3600.0 });
        let t = t0();
        let s = |n: u64| t + Duration::from_secs(n);
        // No verdict before the active threshold, looking every poll.
        assert_eq!(beat_verdict(&rule, t, t, None, s(10)), BeatVerdict::Fresh { next: s(70) });
        assert_eq!(beat_verdict(&rule, t, t, None, s(301)), BeatVerdict::Stale);
        // Restarted at 301: grace again, then lost again; dropped at 3601.
        assert!(matches!(beat_verdict(&rule, s(301), t, None, s(400)), BeatVerdict::Fresh { .. }));
        assert_eq!(beat_verdict(&rule, s(3300), t, None, s(3602)), BeatVerdict::Dropped);
        assert!(matches!(beat_verdict(&rule, s(3300), t, Some(s(3500)), s(3602)), BeatVerdict::Fresh { .. }));
    }

    #[test]
    fn probes_count_consecutive_failures() {
        let probe = Probe {
            action: ProbeAction::Tcp { host: "127.0.0.1".into(), port: 1 },
            period: 1.0,
            timeout: 1.0,
            failure_threshold: 3,
            initial_delay: 5.0,
        };
        let t = t0();
        let mut p = ProbeTimer::new(&probe, t);
        assert!(!p.start_if_due(t + Duration::from_secs(4)));
        assert!(p.start_if_due(t + Duration::from_secs(5)));
        assert!(!p.start_if_due(t + Duration::from_secs(6)), "one try at a time");
        let n = t + Duration::from_secs(6);
        assert_eq!(p.finish(&probe, false, n), ProbeVerdict::Failing(1));
        assert_eq!(p.finish(&probe, true, n), ProbeVerdict::Pass);
        assert_eq!(p.finish(&probe, false, n), ProbeVerdict::Failing(1));
        assert_eq!(p.finish(&probe, false, n), ProbeVerdict::Failing(2));
        assert_eq!(p.finish(&probe, false, n), ProbeVerdict::Failed);
        assert_eq!(p.next, Some(n + Duration::from_secs(1)));
    }

    #[test]
    fn gives_up_after_n_failures_within_t() {
        let rule = GiveUp { failures: 3, within: 10.0, cooldown: None };
        let t = t0();
        let mut w = FailureWindow::default();
        assert!(!w.record(&rule, t));
        assert!(!w.record(&rule, t + Duration::from_secs(5)));
        assert!(!w.record(&rule, t + Duration::from_secs(11)), "the first one fell out of the window");
        assert!(w.record(&rule, t + Duration::from_secs(12)));
    }

    proptest! {
        /// Whatever the beats, a program judged at any sequence of moments
        /// and restarted at each Stale verdict is restarted at most once per
        /// grace period: no restart storm.
        #[test]
        fn no_restart_storm(
            period in 1u64..20, grace in 1u64..4,
            beats in prop::collection::vec(0u64..400, 0..20),
            looks in prop::collection::vec(0u64..400, 1..200),
        ) {
            let rule = BeatRule::beatcheck(&Beatcheck { period: period as f64, grace: grace as f64, status: "x".into() });
            let t = t0();
            let mut beats: Vec<u64> = beats;
            beats.sort();
            let mut looks: Vec<u64> = looks;
            looks.sort();
            let mut started = t;
            let mut restarts: Vec<Instant> = Vec::new();
            for at in looks {
                let now = t + Duration::from_secs(at);
                let last = beats.iter().rev().find(|b| **b <= at).map(|b| t + Duration::from_secs(*b));
                match beat_verdict(&rule, started, t, last, now) {
                    BeatVerdict::Stale => {
                        if let Some(prev) = restarts.last() {
                            prop_assert!(now - *prev >= rule.grace, "restarts {:?} apart", now - *prev);
                        }
                        restarts.push(now);
                        started = now;
                    }
                    BeatVerdict::Fresh { next } => prop_assert!(next > now),
                    BeatVerdict::Dropped => prop_assert!(false, "beatcheck never drops"),
                }
            }
        }

        /// A program that beats more often than the period is never stale.
        #[test]
        fn regular_beats_are_never_stale(period in 1u64..20, grace in 1u64..4, looks in prop::collection::vec(0u64..10_000, 1..100)) {
            let rule = BeatRule::beatcheck(&Beatcheck { period: period as f64, grace: grace as f64, status: "x".into() });
            let t = t0();
            for at in looks {
                let now = t + Duration::from_millis(at * 37);
                // It beats every period/2 seconds.
                let half = Duration::from_millis(period * 500);
                let n = (now - t).as_nanos() / half.as_nanos();
                let last = t + half * n as u32;
                let fresh = matches!(beat_verdict(&rule, t, t, Some(last), now), BeatVerdict::Fresh { .. });
                prop_assert!(fresh, "stale at {:?}", now - t);
            }
        }
    }
}
