//! One run of `colony manage`: every step in order, each one run, skipped
//! by its spread gate, or (in with-maintenance mode) filed as a
//! maintenance request; a failing step does not stop the next ones; the
//! run's deadline does. Every decision is here; the effects go through
//! [`Exec`], which tests fake.
//!
//! Depends on jiff, the scheduler's spread module and the steps module.

use super::steps::{Defer, Gate, Step};
use crate::jobs::scheduler::machine::show;
use crate::jobs::scheduler::spread::{self, Stamp};
use colony_ctl::maintenance::Added;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// How a step's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// Its exit code (128 + N for signal N, 126/127 if it did not start).
    pub code: i32,
    /// "exit code 1", "signal SIGKILL", "cannot start: …".
    pub what: String,
    /// Killed at the run's deadline.
    pub timed_out: bool,
    /// Killed because colony manage was stopped.
    pub interrupted: bool,
}

/// What became of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Ran and exited 0.
    Ok,
    /// Ran and failed (or could not be gated).
    Failed(String),
    /// Its spread gate says not yet.
    Skipped(String),
    /// Filed as a new maintenance request (its id).
    Filed(String),
    /// A queued request with the same comment exists (its id).
    AlreadyFiled(String),
    /// Not run: the run's deadline passed, or colony manage is stopping.
    NotRun(String),
}

impl Outcome {
    /// Whether it makes the run fail.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed(_) | Outcome::NotRun(_))
    }
}

/// The effects of a run.
pub trait Exec {
    /// The time (possibly pretended).
    fn now(&mut self) -> Timestamp;
    /// Whether colony manage is being stopped.
    fn stopping(&self) -> bool;
    /// Reads (or creates) a spread stamp.
    fn stamp(&mut self, gate: &Gate) -> Result<Stamp, String>;
    /// Records a run in the stamp.
    fn touch(&mut self, gate: &Gate, stamp: Stamp);
    /// Runs a step's command with a timeout.
    fn run(&mut self, step: &Step, timeout: SignedDuration) -> Ran;
    /// Files a step as a maintenance request.
    fn file(&mut self, step: &Step, defer: &Defer, now: Timestamp) -> Result<Added, String>;
    /// A log line.
    fn log(&mut self, warn: bool, msg: String);
}

/// How runs are made.
#[derive(Debug, Clone)]
pub struct Mode {
    /// File steps with a "maintenance" entry instead of running them.
    pub with_maintenance: bool,
    /// The whole run's time limit.
    pub timeout: SignedDuration,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Each step and what became of it.
    pub results: Vec<(String, Outcome)>,
}

impl Report {
    /// The failed steps.
    pub fn failures(&self) -> Vec<&(String, Outcome)> {
        self.results.iter().filter(|(_, o)| o.is_failure()).collect()
    }

    /// 0 when no step failed, 75 (try again later) otherwise.
    pub fn code(&self) -> i32 {
        if self.failures().is_empty() {
            0
        } else {
            75
        }
    }

    /// "4 steps: 2 ok, 1 skipped, 1 failed (switch: exit code 1)".
    pub fn summary(&self) -> String {
        let count = |f: fn(&Outcome) -> bool| self.results.iter().filter(|(_, o)| f(o)).count();
        let mut parts = vec![format!("{} ok", count(|o| *o == Outcome::Ok))];
        let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
        if skipped > 0 {
            parts.push(format!("{skipped} skipped"));
        }
        let filed = count(|o| matches!(o, Outcome::Filed(_) | Outcome::AlreadyFiled(_)));
        if filed > 0 {
            parts.push(format!("{filed} filed for maintenance"));
        }
        let failures = self.failures();
        if !failures.is_empty() {
            let list: Vec<String> = failures
                .iter()
                .map(|(n, o)| match o {
                    Outcome::Failed(w) | Outcome::NotRun(w) => format!("{n}: {w}"),
                    _ => n.clone(),
                })
                .collect();
            parts.push(format!("{} failed ({})", failures.len(), list.join("; ")));
        }
        format!("{} step(s): {}", self.results.len(), parts.join(", "))
    }
}

/// Runs `steps` in order.
pub fn run_steps<E: Exec>(e: &mut E, steps: &[Step], mode: &Mode) -> Report {
    let start = e.now();
    let deadline = start + mode.timeout;
    let mut results = Vec::new();
    for step in steps {
        let outcome = one(e, step, mode, deadline);
        match &outcome {
            Outcome::Ok => {}
            Outcome::Failed(w) => e.log(true, format!("step {}: failed: {w}", step.name)),
            Outcome::Skipped(w) => e.log(false, format!("step {}: skipped: {w}", step.name)),
            Outcome::Filed(id) => e.log(false, format!("step {}: filed as maintenance request {id}", step.name)),
            Outcome::AlreadyFiled(id) => {
                e.log(false, format!("step {}: maintenance request {id} is already queued for it", step.name))
            }
            Outcome::NotRun(w) => e.log(true, format!("step {}: not run: {w}", step.name)),
        }
        results.push((step.name.clone(), outcome));
    }
    Report { results }
}

fn one<E: Exec>(e: &mut E, step: &Step, mode: &Mode, deadline: Timestamp) -> Outcome {
    if e.stopping() {
        return Outcome::NotRun("colony manage is stopping".into());
    }
    let now = e.now();
    if now >= deadline {
        return Outcome::NotRun(format!("the run took longer than {}", secs(mode.timeout)));
    }
    if let Some(gate) = &step.gate {
        let stamp = match e.stamp(gate) {
            Ok(s) => s,
            Err(why) => return Outcome::Failed(format!("spread stamp {}: {why}", gate.stamp.display())),
        };
        if !spread::is_due(stamp, gate.slot, now) {
            let due = spread::next_due(stamp, gate.slot);
            return Outcome::Skipped(format!("not due until {}", show(due, &TimeZone::UTC)));
        }
        e.touch(gate, spread::after_run(stamp, now));
    }
    if let (true, Some(defer)) = (mode.with_maintenance, &step.defer) {
        return match e.file(step, defer, now) {
            Ok(Added::New(id)) => Outcome::Filed(id),
            Ok(Added::Duplicate(id)) => Outcome::AlreadyFiled(id),
            Err(why) => Outcome::Failed(format!("cannot file a maintenance request: {why}")),
        };
    }
    let ran = e.run(step, deadline.duration_since(now));
    if ran.timed_out {
        Outcome::Failed(format!("the run took longer than {}; killed ({})", secs(mode.timeout), ran.what))
    } else if ran.interrupted {
        Outcome::Failed(format!("interrupted ({})", ran.what))
    } else if ran.code == 0 {
        Outcome::Ok
    } else {
        Outcome::Failed(ran.what)
    }
}

fn secs(d: SignedDuration) -> String {
    crate::jobs::scheduler::machine::secs(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    #[derive(Default)]
    struct Fake {
        now: Option<Timestamp>,
        codes: BTreeMap<String, i32>,
        takes: BTreeMap<String, i64>,
        stamps: BTreeMap<PathBuf, Stamp>,
        queued: Vec<String>,
        ran: Vec<String>,
        filed: Vec<String>,
        stop_after: Option<String>,
        stopping: bool,
    }

    impl Exec for Fake {
        fn now(&mut self) -> Timestamp {
            self.now.unwrap()
        }
        fn stopping(&self) -> bool {
            self.stopping
        }
        fn stamp(&mut self, gate: &Gate) -> Result<Stamp, String> {
            Ok(*self.stamps.entry(gate.stamp.clone()).or_insert(Stamp { offset: 0, mtime: spread::NEW_MTIME }))
        }
        fn touch(&mut self, gate: &Gate, stamp: Stamp) {
            self.stamps.insert(gate.stamp.clone(), stamp);
        }
        fn run(&mut self, step: &Step, timeout: SignedDuration) -> Ran {
            self.ran.push(step.name.clone());
            let takes = SignedDuration::from_secs(*self.takes.get(&step.name).unwrap_or(&1));
            let timed_out = takes > timeout;
            self.now = Some(self.now.unwrap() + takes.min(timeout));
            if self.stop_after.as_ref() == Some(&step.name) {
                self.stopping = true;
            }
            let code = if timed_out { 137 } else { *self.codes.get(&step.name).unwrap_or(&0) };
            Ran { code, what: format!("exit code {code}"), timed_out, interrupted: false }
        }
        fn file(&mut self, step: &Step, defer: &Defer, _now: Timestamp) -> Result<Added, String> {
            self.filed.push(step.name.clone());
            if self.queued.contains(&defer.comment) {
                return Ok(Added::Duplicate("old".into()));
            }
            self.queued.push(defer.comment.clone());
            Ok(Added::New(format!("id-{}", step.name)))
        }
        fn log(&mut self, _warn: bool, _msg: String) {}
    }

    fn step(name: &str) -> Step {
        super::super::steps::parse_flag(&format!("{name}=true")).unwrap()
    }

    fn gated(name: &str, slot: i64) -> Step {
        Step { gate: Some(Gate { slot, stamp: PathBuf::from(format!("/s/{name}")) }), ..step(name) }
    }

    fn deferred(name: &str) -> Step {
        Step { defer: Some(Defer { estimate: 600.0, comment: format!("update {name}") }), ..step(name) }
    }

    fn mode(with_maintenance: bool) -> Mode {
        Mode { with_maintenance, timeout: SignedDuration::from_secs(3600) }
    }

    fn fake() -> Fake {
        Fake { now: Some("2026-05-01T10:00:00Z".parse().unwrap()), ..Fake::default() }
    }

    #[test]
    fn a_failing_step_does_not_stop_the_next_ones() {
        let mut f = fake();
        f.codes.insert("b".into(), 3);
        let r = run_steps(&mut f, &[step("a"), step("b"), step("c")], &mode(false));
        assert_eq!(f.ran, ["a", "b", "c"]);
        assert_eq!(r.results[1], ("b".into(), Outcome::Failed("exit code 3".into())));
        assert_eq!(r.code(), 75);
        assert_eq!(r.summary(), "3 step(s): 2 ok, 1 failed (b: exit code 3)");
    }

    #[test]
    fn the_deadline_kills_the_step_and_skips_the_rest() {
        let mut f = fake();
        f.takes.insert("slow".into(), 5000);
        let r = run_steps(&mut f, &[step("a"), step("slow"), step("c")], &mode(false));
        assert_eq!(f.ran, ["a", "slow"]);
        assert!(matches!(&r.results[1].1, Outcome::Failed(w) if w.contains("longer than 3600 s")));
        assert!(matches!(&r.results[2].1, Outcome::NotRun(w) if w.contains("longer than")));
        assert_eq!(r.code(), 75);
    }

    #[test]
    fn spread_gate_runs_once_per_slot() {
        let mut f = fake();
        let steps = [gated("channel", 7200), step("switch")];
        // A fresh stamp is due.
        let r = run_steps(&mut f, &steps, &mode(false));
        assert_eq!(f.ran, ["channel", "switch"]);
        assert_eq!(r.code(), 0);
        // Ten minutes later: skipped, the other step still runs.
        f.now = Some(f.now.unwrap() + SignedDuration::from_mins(10));
        f.ran.clear();
        let r = run_steps(&mut f, &steps, &mode(false));
        assert_eq!(f.ran, ["switch"]);
        assert!(matches!(&r.results[0].1, Outcome::Skipped(w) if w.starts_with("not due until 2026-05-01T12:00:00Z")));
        assert_eq!(r.code(), 0);
        assert_eq!(r.summary(), "2 step(s): 1 ok, 1 skipped");
    }

    #[test]
    fn with_maintenance_files_instead_of_running_once() {
        let mut f = fake();
        let steps = [deferred("system"), step("switch")];
        let r = run_steps(&mut f, &steps, &mode(true));
        assert_eq!(f.ran, ["switch"]);
        assert_eq!(r.results[0].1, Outcome::Filed("id-system".into()));
        let r = run_steps(&mut f, &steps, &mode(true));
        assert_eq!(r.results[0].1, Outcome::AlreadyFiled("old".into()));
        assert_eq!(r.code(), 0);
        // Without the mode, the step just runs.
        f.ran.clear();
        run_steps(&mut f, &steps, &mode(false));
        assert_eq!(f.ran, ["system", "switch"]);
    }

    #[test]
    fn a_stop_ends_the_run() {
        let mut f = fake();
        f.stop_after = Some("a".into());
        let r = run_steps(&mut f, &[step("a"), step("b")], &mode(false));
        assert_eq!(f.ran, ["a"]);
        assert!(matches!(&r.results[1].1, Outcome::NotRun(w) if w.contains("stopping")));
    }

    proptest! {
        #[test]
        fn every_step_gets_an_outcome_and_only_failures_fail_the_run(codes in proptest::collection::vec(0i32..4, 0..10)) {
            let mut f = fake();
            let steps: Vec<Step> = (0..codes.len()).map(|i| step(&format!("s{i}"))).collect();
            for (i, c) in codes.iter().enumerate() {
                f.codes.insert(format!("s{i}"), *c);
            }
            let r = run_steps(&mut f, &steps, &mode(false));
            prop_assert_eq!(r.results.len(), codes.len());
            prop_assert_eq!(f.ran.len(), codes.len());
            prop_assert_eq!(r.code() == 0, codes.iter().all(|c| *c == 0));
            prop_assert_eq!(r.failures().len(), codes.iter().filter(|c| **c != 0).count());
        }
    }
}
