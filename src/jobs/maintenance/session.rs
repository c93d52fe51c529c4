//! One tick of `colony maintenance`: resume what a stop interrupted,
//! settle the requests, and when some are due, enter maintenance (marker,
//! enter hooks), run them, reboot if asked, and leave (leave hooks,
//! marker removed). Every decision is here; every effect (clock, files,
//! processes) goes through the [`World`] trait, which tests implement
//! with fake time and scripted outcomes and the shell implements for real.
//!
//! Depends on the machine and windows modules and colony-ctl's types.

use super::machine::{self, HookOutcome, Limits, Note, RebootProgress, RestartProgress, Verdict};
use super::windows::Window;
use colony_ctl::maintenance::{Activity, Request, RequestState};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;

/// Enter or leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the requests run.
    Enter,
    /// After they ran (and on idle ticks).
    Leave,
}

impl Phase {
    /// "enter" or "leave".
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Enter => "enter",
            Phase::Leave => "leave",
        }
    }
}

/// How an activity's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEnd {
    /// Its exit code (`None`: killed, interrupted, not started).
    pub code: Option<i32>,
    /// Its output, bounded.
    pub output: String,
    /// What happened besides the code.
    pub note: Option<String>,
}

/// The effects a tick needs.
pub trait World {
    /// The time (possibly pretended with `--now`).
    fn now(&mut self) -> Timestamp;
    /// The real wall clock, Unix seconds (compared with status files).
    fn real_now(&mut self) -> f64;
    /// Whether colony maintenance has been asked to stop.
    fn stopping(&self) -> bool;
    /// Writes a queued request's file.
    fn save(&mut self, r: &Request);
    /// Moves a finished request to the archive.
    fn archive(&mut self, r: &Request);
    /// Whether the marker exists.
    fn marker(&mut self) -> bool;
    /// Writes the marker (maintenance began at `since`).
    fn write_marker(&mut self, since: Timestamp);
    /// Removes the marker.
    fn remove_marker(&mut self);
    /// The hooks of a phase, in the order they run.
    fn hooks(&mut self, phase: Phase) -> Vec<String>;
    /// Runs one hook; `ids` are the requests of the session.
    fn run_hook(&mut self, phase: Phase, name: &str, ids: &[String]) -> HookOutcome;
    /// Runs a script activity.
    fn run_script(&mut self, r: &Request) -> ActivityEnd;
    /// Writes RESTART messages; an error comes with its exit code.
    fn send_restarts(&mut self, programs: &[String]) -> Result<(), (i32, String)>;
    /// Waits until every program has started since `sent_at` (real time)
    /// or `timeout` after it; returns [`RestartProgress::Waiting`] only
    /// when asked to stop meanwhile.
    fn wait_restarted(&mut self, programs: &[String], sent_at: f64, timeout: SignedDuration) -> RestartProgress;
    /// The kernel's boot id.
    fn boot_id(&mut self) -> Option<String>;
    /// Runs the reboot command.
    fn reboot(&mut self) -> ActivityEnd;
    /// A log line.
    fn log(&mut self, warn: bool, msg: String);
}

/// What the tick needs besides the requests.
#[derive(Debug, Clone)]
pub struct Config {
    /// The windows (none: any time).
    pub windows: Vec<Window>,
    /// Retry limit, overdue time, batching gap.
    pub limits: Limits,
    /// How long a restart activity waits for the programs.
    pub restart_timeout: SignedDuration,
    /// How long a reboot activity waits for the machine to go down.
    pub reboot_timeout: SignedDuration,
}

/// How a tick ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// 0, 69 (enter hooks postponed), 75 (enter hooks or leave hooks
    /// failed: try again later).
    pub code: i32,
    /// Whether the machine is still in maintenance.
    pub in_maintenance: bool,
}

struct Tick<'a, W: World> {
    w: &'a mut W,
    cfg: &'a Config,
    requests: &'a mut Vec<Request>,
    saved: Vec<Request>,
}

impl<W: World> Tick<'_, W> {
    fn notes(&mut self, notes: Vec<Note>) {
        for n in notes {
            self.w.log(n.warn, n.msg);
        }
    }

    /// Saves every request that changed since the last commit.
    fn commit(&mut self) {
        for r in self.requests.iter() {
            if self.saved.iter().find(|s| s.id == r.id) != Some(r) {
                self.w.save(r);
            }
        }
        self.saved = self.requests.clone();
    }

    fn settle(&mut self) {
        let now = self.w.now();
        let notes = machine::settle(now, self.requests, &self.cfg.windows, &self.cfg.limits);
        self.notes(notes);
        self.commit();
    }

    fn end(&mut self, i: usize, end: ActivityEnd) {
        let now = self.w.now();
        let n = machine::end_attempt(&mut self.requests[i], now, end.code, end.output, end.note, &self.cfg.limits);
        self.notes(vec![n]);
        self.commit();
    }

    /// Running requests found at the start: the job was stopped while
    /// they ran, or they wait for a restart or a reboot. Returns whether
    /// a reboot is still on its way.
    fn resume(&mut self) -> bool {
        let mut rebooting = false;
        let running: Vec<usize> =
            (0..self.requests.len()).filter(|&i| self.requests[i].state == RequestState::Running).collect();
        for i in running {
            let now = self.w.now();
            let started = self.requests[i].attempts.last().map_or(now, |a| machine::at(a.started));
            match self.requests[i].activity.clone() {
                Activity::Script { .. } => self.end(
                    i,
                    ActivityEnd {
                        code: None,
                        output: String::new(),
                        note: Some(
                            "interrupted: colony maintenance stopped while it ran; not retried, it may be unsafe"
                                .into(),
                        ),
                    },
                ),
                Activity::Restart { sent_at: None, .. } | Activity::Reboot { boot_id: None } => {
                    // Stopped before anything was done: run it again.
                    self.requests[i].state = RequestState::Due;
                    let id = self.requests[i].short_id().to_string();
                    self.w.log(true, format!("request {id}: interrupted before it did anything: due again"));
                    self.commit();
                }
                Activity::Restart { programs, sent_at: Some(sent) } => {
                    let timeout = self.cfg.restart_timeout;
                    let end = self.restart_outcome(&programs, sent, timeout);
                    if let Some(end) = end {
                        self.end(i, end);
                    }
                }
                Activity::Reboot { boot_id: Some(before) } => {
                    let boot = self.w.boot_id();
                    match machine::reboot_progress(&before, boot.as_deref(), started, now, self.cfg.reboot_timeout) {
                        RebootProgress::Done => self.end(
                            i,
                            ActivityEnd {
                                code: Some(0),
                                output: String::new(),
                                note: Some("the machine rebooted".into()),
                            },
                        ),
                        RebootProgress::TimedOut => self.end(
                            i,
                            ActivityEnd {
                                code: None,
                                output: String::new(),
                                note: Some(format!(
                                    "the machine did not reboot within {}",
                                    machine::show_secs(self.cfg.reboot_timeout)
                                )),
                            },
                        ),
                        RebootProgress::Waiting => rebooting = true,
                    }
                }
            }
        }
        rebooting
    }

    /// Waits for a restart; `None` when interrupted (the request stays
    /// running and is resumed at the next start).
    fn restart_outcome(&mut self, programs: &[String], sent: f64, timeout: SignedDuration) -> Option<ActivityEnd> {
        match self.w.wait_restarted(programs, sent, timeout) {
            RestartProgress::Done => Some(ActivityEnd {
                code: Some(0),
                output: String::new(),
                note: Some(format!("started again: {}", programs.join(", "))),
            }),
            RestartProgress::TimedOut(names) => Some(ActivityEnd {
                code: Some(1),
                output: String::new(),
                note: Some(format!("not started again within {}: {}", machine::show_secs(timeout), names.join(", "))),
            }),
            RestartProgress::Waiting(_) => None,
        }
    }

    /// Runs one due request (not a reboot).
    fn execute(&mut self, i: usize) {
        let now = self.w.now();
        machine::begin_attempt(&mut self.requests[i], now);
        self.w.log(
            false,
            format!("request {}: running ({})", self.requests[i].short_id(), self.requests[i].activity.kind()),
        );
        self.commit();
        match self.requests[i].activity.clone() {
            Activity::Script { .. } => {
                let end = self.w.run_script(&self.requests[i]);
                self.end(i, end);
            }
            Activity::Restart { programs, .. } => {
                let sent = self.w.real_now();
                if let Activity::Restart { sent_at, .. } = &mut self.requests[i].activity {
                    *sent_at = Some(sent);
                }
                self.commit();
                match self.w.send_restarts(&programs) {
                    Err((code, why)) => {
                        self.end(i, ActivityEnd { code: Some(code), output: String::new(), note: Some(why) })
                    }
                    Ok(()) => {
                        let timeout = self.cfg.restart_timeout;
                        if let Some(end) = self.restart_outcome(&programs, sent, timeout) {
                            self.end(i, end);
                        }
                    }
                }
            }
            Activity::Reboot { .. } => unreachable!("reboots run last"),
        }
    }

    /// The reboot requests of the session, all with one reboot command.
    /// Returns whether the machine is going down.
    fn reboot(&mut self, idx: &[usize]) -> bool {
        let now = self.w.now();
        let boot = self.w.boot_id();
        for &i in idx {
            machine::begin_attempt(&mut self.requests[i], now);
            if let Activity::Reboot { boot_id } = &mut self.requests[i].activity {
                *boot_id = Some(boot.clone().unwrap_or_default());
            }
        }
        self.commit();
        self.w.log(false, format!("rebooting for {} request(s)", idx.len()));
        let end = self.w.reboot();
        if end.code == Some(0) && !self.w.stopping() {
            for &i in idx {
                if let Some(a) = self.requests[i].attempts.last_mut() {
                    a.output = end.output.clone();
                    a.note = Some("the reboot command ran; waiting for the machine to come back".into());
                }
            }
            self.commit();
            return true;
        }
        for &i in idx {
            self.end(i, end.clone());
        }
        false
    }

    fn run_hooks(&mut self, phase: Phase, ids: &[String]) -> Vec<HookOutcome> {
        let mut outcomes = Vec::new();
        for name in self.w.hooks(phase) {
            let outcome = self.w.run_hook(phase, &name, ids);
            let go_on =
                outcome == HookOutcome::Exited(0) || (phase == Phase::Enter && machine::continue_after(&outcome));
            if outcome != HookOutcome::Exited(0) {
                self.w.log(true, format!("{} hook {name}: {}", phase.as_str(), describe(&outcome)));
            }
            outcomes.push(outcome);
            if self.w.stopping() || (phase == Phase::Enter && !go_on) {
                break;
            }
        }
        outcomes
    }

    /// Leave hooks, then the marker goes; a failed hook keeps the marker
    /// (and the leave hooks run again at the next tick).
    fn leave(&mut self, ids: &[String]) -> bool {
        let outcomes = self.run_hooks(Phase::Leave, ids);
        let ok = outcomes.iter().all(|o| *o == HookOutcome::Exited(0));
        if ok && self.w.marker() {
            self.w.remove_marker();
            self.w.log(false, "left maintenance".into());
        }
        ok
    }

    fn archive(&mut self) {
        let (done, queued): (Vec<Request>, Vec<Request>) = self.requests.drain(..).partition(|r| r.state.is_final());
        *self.requests = queued;
        for r in done {
            self.w.archive(&r);
        }
        self.saved = self.requests.clone();
    }
}

/// A hook's outcome for the log.
pub fn describe(o: &HookOutcome) -> String {
    match o {
        HookOutcome::Exited(machine::EX_POSTPONE) => "exit code 69: postpone".into(),
        HookOutcome::Exited(machine::EX_TEMPFAIL) => "exit code 75: try again at the next tick".into(),
        HookOutcome::Exited(c) => format!("exit code {c}"),
        HookOutcome::Signaled(s) => format!("killed by signal {s}"),
        HookOutcome::TimedOut => "timed out".into(),
        HookOutcome::NotStarted(why) => format!("cannot start: {why}"),
        HookOutcome::Interrupted => "interrupted".into(),
    }
}

/// Runs one tick over `requests` (the queued ones; archived ones are
/// removed from it). `deletions` are the ids with a `delete` file.
pub fn tick<W: World>(w: &mut W, cfg: &Config, requests: &mut Vec<Request>, deletions: &[String]) -> Report {
    let saved = requests.clone();
    let mut t = Tick { w, cfg, requests, saved };
    let now = t.w.now();
    let notes = machine::apply_deletions(now, t.requests, deletions);
    t.notes(notes);
    t.commit();
    let rebooting = t.resume();
    if rebooting || t.w.stopping() {
        t.archive();
        return Report { code: 0, in_maintenance: t.w.marker() };
    }
    t.settle();
    let due = machine::runnable(t.requests);
    if due.is_empty() {
        // An idle tick still leaves maintenance (fc HEAD): the leave hooks
        // run every time and must be idempotent.
        let ok = t.leave(&[]);
        t.archive();
        return Report { code: if ok { 0 } else { machine::EX_TEMPFAIL }, in_maintenance: t.w.marker() };
    }
    let ids: Vec<String> = due.iter().map(|&i| t.requests[i].id.clone()).collect();
    if !t.w.marker() {
        t.w.write_marker(now);
    }
    t.w.log(false, format!("entering maintenance for {} request(s)", ids.len()));
    let outcomes = t.run_hooks(Phase::Enter, &ids);
    let verdict = if t.w.stopping() { Verdict::Retry } else { machine::enter_verdict(&outcomes) };
    match verdict {
        Verdict::Postpone => {
            let now = t.w.now();
            let notes = machine::postpone_due(now, t.requests);
            t.notes(notes);
            t.settle();
            let ok = t.leave(&ids);
            t.archive();
            return Report { code: machine::EX_POSTPONE, in_maintenance: !ok };
        }
        Verdict::Retry => {
            if !t.w.stopping() {
                t.w.log(true, "enter hooks failed: staying in maintenance, trying again at the next tick".into());
            }
            t.archive();
            return Report { code: machine::EX_TEMPFAIL, in_maintenance: true };
        }
        Verdict::Proceed => {}
    }
    // Run the due requests; requests that become due meanwhile (back to
    // back) join the session; each runs at most once per session.
    let mut attempted = BTreeSet::new();
    let mut reboots = Vec::new();
    let mut session_ids = ids.clone();
    'session: loop {
        let due: Vec<usize> = machine::runnable(t.requests)
            .into_iter()
            .filter(|&i| !attempted.contains(&t.requests[i].id) && !reboots.contains(&t.requests[i].id))
            .collect();
        if due.is_empty() {
            break;
        }
        for i in due {
            if t.w.stopping() {
                break 'session;
            }
            let id = t.requests[i].id.clone();
            if !session_ids.contains(&id) {
                session_ids.push(id.clone());
            }
            if matches!(t.requests[i].activity, Activity::Reboot { .. }) {
                reboots.push(id);
                continue;
            }
            attempted.insert(id);
            t.execute(i);
        }
        t.settle();
    }
    if t.w.stopping() {
        t.archive();
        return Report { code: 0, in_maintenance: true };
    }
    let reboot_idx: Vec<usize> = (0..t.requests.len())
        .filter(|&i| reboots.contains(&t.requests[i].id) && t.requests[i].state == RequestState::Due)
        .collect();
    if !reboot_idx.is_empty() && t.reboot(&reboot_idx) {
        // Still in maintenance: the marker survives the reboot and the
        // first tick after it completes the requests and leaves.
        t.archive();
        return Report { code: 0, in_maintenance: true };
    }
    let ok = t.leave(&session_ids);
    t.archive();
    Report { code: if ok { 0 } else { machine::EX_TEMPFAIL }, in_maintenance: !ok }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
