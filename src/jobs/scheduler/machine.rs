//! The scheduler's state machine: when to start a run, when to signal it,
//! what to remember, when to exit. Pure: time, exits, signals and the
//! spread stamp come in as inputs; decisions go out as [`Effect`]s that the
//! shell performs. Production and tests run the same type.
//!
//! The rules, in one place:
//!
//! * **Every N** (ncolony): a tick at start, then every N seconds on that
//!   grid. With a remembered success less than N ago, the grid starts N
//!   after it instead.
//! * **Cron**: a run is *owed* once a fire time has passed since the last
//!   success (or since start, without `--state`; at once when a state file
//!   shows no success yet). Ticks are the fire times, plus, while a run is
//!   owed (and the window still open), every `retry` (`--frequency` next
//!   to `--cron`). An owed run starts at a tick only within `window` after
//!   the latest fire time.
//! * **Spread** (fc.util.spread): a tick when the stamp says due; the run
//!   touches the stamp.
//! * A tick that finds a run in progress is skipped and logged. A run gets
//!   SIGTERM at `timeout` and SIGKILL `grace` later; a stop request sends
//!   SIGTERM at once, SIGKILL after `grace` (at once on a second request),
//!   and exits 0 when the run has been reaped.
//!
//! Depends on jiff and the sibling pure modules.

use super::calendar::{self, CronCalendar};
use super::spread::{self, Stamp};
use super::state::State;
use crate::core::supervisor::ExitStatus;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// What decides the ticks.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Every `period`, the first at start.
    Every {
        /// The interval.
        period: SignedDuration,
    },
    /// At the fire times of a cron expression.
    Cron {
        /// The expression and its zone.
        calendar: Box<CronCalendar>,
        /// While a run is owed, try again this often.
        retry: Option<SignedDuration>,
        /// Only start a run this long after a fire time.
        window: Option<SignedDuration>,
    },
    /// At most once per slot of `slot` seconds, as a stamp file says.
    Spread {
        /// N, in whole seconds.
        slot: i64,
    },
}

/// Everything the machine needs to know besides time.
#[derive(Debug, Clone)]
pub struct Rules {
    /// When to tick.
    pub plan: Plan,
    /// SIGTERM a run this long after it started.
    pub timeout: Option<SignedDuration>,
    /// SIGKILL this long after SIGTERM.
    pub grace: SignedDuration,
    /// One decision, at most one run, then exit.
    pub once: bool,
    /// Whether a state file records the runs (`--state`).
    pub remember: bool,
}

/// What is known at start.
#[derive(Debug, Clone)]
pub struct Start {
    /// The time now.
    pub now: Timestamp,
    /// The state file's content (`None` without `--state`; the default
    /// for a new file).
    pub state: Option<State>,
    /// The spread stamp (only with [`Plan::Spread`]).
    pub stamp: Option<Stamp>,
}

/// A log line's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Detail.
    Debug,
    /// Normal events.
    Info,
    /// A run that failed, a tick skipped.
    Warn,
    /// Something the user must fix.
    Error,
}

/// A signal the machine sends to a run's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnFailure {
    /// The command does not exist (exit code 127 with `--once`).
    NotFound(String),
    /// Any other reason (exit code 126 with `--once`).
    Other(String),
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write a log line.
    Log(Level, String),
    /// Start the command, then report with [`Job::spawned`].
    Spawn,
    /// Signal the process group of `pid`.
    Signal {
        /// The run's pid (= its process group).
        pid: i32,
        /// Which signal.
        sig: Sig,
    },
    /// Set the stamp file's mtime.
    TouchStamp(Timestamp),
    /// Write the state file.
    Save(State),
    /// Exit with this code (after the effects before it).
    Exit(i32),
}

#[derive(Debug, Clone)]
struct Run {
    id: u64,
    pid: Option<i32>,
    started: Timestamp,
    why: String,
    term_at: Option<Timestamp>,
    kill_at: Option<Timestamp>,
    termed: bool,
    killed: bool,
}

/// One scheduled job.
#[derive(Debug, Clone)]
pub struct Job {
    rules: Rules,
    zone: TimeZone,
    state: State,
    /// Cron: the time owed runs count from (the last success, or start);
    /// `None`: never ran. Every: the remembered success.
    reference: Option<Timestamp>,
    stamp: Option<Stamp>,
    /// Every: the grid's origin.
    anchor: Timestamp,
    next_tick: Option<Timestamp>,
    run: Option<Run>,
    runs: u64,
    /// How the last run ended, when it failed.
    failed: bool,
    stops: u32,
    exited: bool,
}

impl Job {
    /// Starts the job at `start.now`: the first decision (a catch-up, the
    /// first interval run, a due spread) is made at once.
    pub fn start(rules: Rules, start: Start) -> (Job, Vec<Effect>) {
        let now = start.now;
        let preview = rules.once.then(|| (rules.clone(), start.clone()));
        let zone = match &rules.plan {
            Plan::Cron { calendar, .. } => calendar.zone().clone(),
            _ => TimeZone::UTC,
        };
        let remembered = start.state.as_ref().and_then(|s| s.last_success);
        let reference = match (&rules.plan, &start.state) {
            (Plan::Cron { .. }, Some(_)) => remembered,
            (Plan::Cron { .. }, None) if rules.once => None,
            (Plan::Cron { .. }, None) => Some(now),
            _ => remembered,
        };
        let anchor = match (&rules.plan, remembered) {
            (Plan::Every { period }, Some(s)) if calendar::add(s, *period) > now => calendar::add(s, *period),
            _ => now,
        };
        let failed = start
            .state
            .as_ref()
            .is_some_and(|s| s.last_result.is_some() && s.last_ended.is_some() && s.last_ended != s.last_success);
        let mut job = Job {
            state: start.state.clone().unwrap_or_default(),
            rules,
            zone,
            reference,
            stamp: start.stamp,
            anchor,
            next_tick: None,
            run: None,
            runs: 0,
            failed,
            stops: 0,
            exited: false,
        };
        let mut fx = Vec::new();
        if let Some(why) = job.due(now, true) {
            job.begin(now, why, &mut fx);
        } else if let Some((rules, start)) = preview {
            // When the next run would start if nothing else happened.
            let next = upcoming(&rules, start, 1).first().map(|t| format!("; next at {}", job.show(*t)));
            fx.push(Effect::Log(Level::Info, format!("not due{}", next.unwrap_or_default())));
            job.exit(0, &mut fx);
            return (job, fx);
        }
        job.next_tick = job.plan_next(now);
        match job.next_tick {
            Some(t) if !job.rules.once => {
                let what = if job.run.is_some() { "next tick" } else { "first tick" };
                fx.push(Effect::Log(Level::Info, format!("{what} at {}", job.show(t))));
            }
            None if !job.rules.once => {
                fx.push(Effect::Log(Level::Warn, "the schedule has no future fire time".to_string()));
            }
            _ => {}
        }
        (job, fx)
    }

    /// The earliest instant at which [`Job::on_time`] has something to do.
    pub fn deadline(&self) -> Option<Timestamp> {
        if self.exited {
            return None;
        }
        let mut d = if self.stops > 0 || self.rules.once { None } else { self.next_tick };
        if let Some(run) = &self.run {
            if !run.termed {
                d = earliest(d, run.term_at);
            }
            if !run.killed {
                d = earliest(d, run.kill_at);
            }
        }
        d
    }

    /// Whether the job has exited (an [`Effect::Exit`] was emitted).
    pub fn exited(&self) -> bool {
        self.exited
    }

    /// The pid of the run in progress.
    pub fn running(&self) -> Option<i32> {
        self.run.as_ref().and_then(|r| r.pid)
    }

    /// The time is `now`: signal an overdue run, tick when a tick is due.
    /// `stamp` is the spread stamp as read now (re-read, so that a hand
    /// edit counts), or `None` to keep the last one.
    pub fn on_time(&mut self, now: Timestamp, stamp: Option<Stamp>) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.exited {
            return fx;
        }
        if stamp.is_some() {
            self.stamp = stamp;
        }
        let (grace, timeout) = (self.rules.grace, self.rules.timeout);
        if let Some(run) = self.run.as_mut() {
            if let Some(pid) = run.pid {
                if !run.termed && run.term_at.is_some_and(|t| t <= now) {
                    run.termed = true;
                    run.kill_at = Some(earliest(run.kill_at, Some(calendar::add(now, grace))).unwrap_or(now));
                    let limit = timeout.map(secs).unwrap_or_default();
                    fx.push(Effect::Log(
                        Level::Warn,
                        format!("run {} timed out after {limit}: SIGTERM, SIGKILL in {}", run.id, secs(grace)),
                    ));
                    fx.push(Effect::Signal { pid, sig: Sig::Term });
                }
                if !run.killed && run.kill_at.is_some_and(|t| t <= now) {
                    run.killed = true;
                    fx.push(Effect::Log(Level::Warn, format!("run {} still running after SIGTERM: SIGKILL", run.id)));
                    fx.push(Effect::Signal { pid, sig: Sig::Kill });
                }
            }
        }
        if self.stops == 0 && !self.rules.once && self.next_tick.is_some_and(|t| t <= now) {
            self.tick(now, &mut fx);
        }
        fx
    }

    /// The run started as `pid`, or could not start.
    pub fn spawned(&mut self, now: Timestamp, result: Result<i32, SpawnFailure>) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(run) = self.run.as_mut() else { return fx };
        match result {
            Ok(pid) => {
                run.pid = Some(pid);
                fx.push(Effect::Log(Level::Info, format!("run {} started ({}): pid {pid}", run.id, run.why)));
            }
            Err(failure) => {
                let (msg, code) = match failure {
                    SpawnFailure::NotFound(m) => (m, 127),
                    SpawnFailure::Other(m) => (m, 126),
                };
                fx.push(Effect::Log(Level::Error, format!("run {} cannot start: {msg}", run.id)));
                self.finish(now, format!("cannot start: {msg}"), false, code, &mut fx);
            }
        }
        fx
    }

    /// A child exited. Exits of anything but the run are ignored.
    pub fn on_exit(&mut self, now: Timestamp, pid: i32, status: ExitStatus) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.run.as_ref().and_then(|r| r.pid) != Some(pid) {
            return fx;
        }
        let id = self.run.as_ref().map_or(0, |r| r.id);
        let started = self.run.as_ref().map_or(now, |r| r.started);
        let result = describe(status);
        let ok = status == ExitStatus::Exited(0);
        let took = secs(now.duration_since(started));
        let level = if ok { Level::Info } else { Level::Warn };
        fx.push(Effect::Log(level, format!("run {id} ended: {result} after {took}")));
        self.finish(now, result, ok, status.code(), &mut fx);
        fx
    }

    /// SIGTERM or SIGINT: stop the run (SIGTERM, SIGKILL after grace; at
    /// once the second time) and exit 0 when it is gone.
    pub fn on_stop(&mut self, now: Timestamp) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.exited {
            return fx;
        }
        self.stops += 1;
        let grace = self.rules.grace;
        match self.run.as_mut().and_then(|r| r.pid.map(|p| (r, p))) {
            None => {
                fx.push(Effect::Log(Level::Info, "stopping".to_string()));
                self.exit(0, &mut fx);
            }
            Some((run, pid)) if self.stops == 1 => {
                fx.push(Effect::Log(
                    Level::Info,
                    format!("stopping: SIGTERM to run {}, SIGKILL in {}", run.id, secs(grace)),
                ));
                run.termed = true;
                run.kill_at = earliest(run.kill_at, Some(calendar::add(now, grace)));
                fx.push(Effect::Signal { pid, sig: Sig::Term });
            }
            Some((run, pid)) => {
                if !run.killed {
                    run.killed = true;
                    fx.push(Effect::Log(Level::Info, format!("stopping at once: SIGKILL to run {}", run.id)));
                    fx.push(Effect::Signal { pid, sig: Sig::Kill });
                }
            }
        }
        fx
    }

    /// The instant shown in the log: in the cron zone, else UTC.
    pub fn show(&self, t: Timestamp) -> String {
        show(t, &self.zone)
    }

    fn tick(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        match (self.due(now, false), &self.run) {
            (Some(_), Some(run)) => fx.push(Effect::Log(
                Level::Warn,
                format!(
                    "tick at {} skipped: run {} still running (started {} ago)",
                    self.show(now),
                    run.id,
                    secs(now.duration_since(run.started))
                ),
            )),
            (Some(why), None) => self.begin(now, why, fx),
            (None, _) => {
                if let Plan::Cron { window: Some(w), .. } = &self.rules.plan {
                    if self.owed(now) {
                        fx.push(Effect::Log(
                            Level::Debug,
                            format!("a run is owed, but {} is outside the {} window", self.show(now), secs(*w)),
                        ));
                    }
                }
            }
        }
        self.next_tick = self.plan_next(now);
        if let Some(t) = self.next_tick {
            fx.push(Effect::Log(Level::Debug, format!("next tick at {}", self.show(t))));
        }
    }

    /// Whether a tick at `now` starts a run, and why.
    fn due(&self, now: Timestamp, at_start: bool) -> Option<String> {
        match &self.rules.plan {
            Plan::Every { period } => {
                if !at_start {
                    return Some("scheduled".to_string());
                }
                match self.reference {
                    None => Some(if self.rules.remember { "first run, none remembered" } else { "first run" }.into()),
                    Some(s) if calendar::add(s, *period) <= now => {
                        Some(format!("last success at {}, more than {} ago", self.show(s), secs(*period)))
                    }
                    Some(_) => None,
                }
            }
            Plan::Cron { calendar, window, .. } => {
                if !self.owed(now) {
                    return None;
                }
                if let Some(w) = window {
                    if !calendar.in_window(now, *w) {
                        return None;
                    }
                }
                let fire = calendar.latest_at_or_before(now).map(|f| self.show(f)).unwrap_or_default();
                Some(match self.reference {
                    _ if self.failed => format!("retry; fire time {fire}"),
                    None => format!("never ran; fire time {fire}"),
                    Some(_) if at_start => format!("catch-up; missed fire time {fire}"),
                    Some(_) => format!("fire time {fire}"),
                })
            }
            Plan::Spread { slot } => {
                let stamp = self.stamp?;
                spread::is_due(stamp, *slot, now).then(|| {
                    if stamp.mtime == spread::NEW_MTIME {
                        "new stamp".to_string()
                    } else {
                        format!("due at {}", self.show(spread::next_due(stamp, *slot)))
                    }
                })
            }
        }
    }

    /// Cron: whether a fire time has passed since the reference.
    fn owed(&self, now: Timestamp) -> bool {
        let Plan::Cron { calendar, .. } = &self.rules.plan else { return false };
        match self.reference {
            None => true,
            Some(r) => calendar.next_after(r).is_some_and(|f| f <= now),
        }
    }

    /// The next tick strictly after `now`.
    fn plan_next(&self, now: Timestamp) -> Option<Timestamp> {
        match &self.rules.plan {
            Plan::Every { period } => Some(calendar::next_on_grid(self.anchor, *period, now)),
            Plan::Cron { calendar, retry, window } => {
                let fire = calendar.next_after(now);
                match retry {
                    Some(r) if self.run.is_none() && self.owed(now) => {
                        // Retry ticks outside the window would find nothing
                        // to do: the next fire time comes first.
                        let at = calendar::add(now, *r);
                        let useful = window.is_none_or(|w| calendar.in_window(at, w));
                        if useful {
                            earliest(fire, Some(at))
                        } else {
                            fire
                        }
                    }
                    _ => fire,
                }
            }
            Plan::Spread { slot } => {
                let stamp = self.stamp?;
                let due = spread::next_due(stamp, *slot);
                Some(if due > now { due } else { spread::next_due(spread::after_run(stamp, now), *slot) })
            }
        }
    }

    fn begin(&mut self, now: Timestamp, why: String, fx: &mut Vec<Effect>) {
        self.runs += 1;
        if let (Plan::Spread { .. }, Some(stamp)) = (&self.rules.plan, self.stamp) {
            let touched = spread::after_run(stamp, now);
            self.stamp = Some(touched);
            fx.push(Effect::TouchStamp(touched.mtime));
        }
        self.run = Some(Run {
            id: self.runs,
            pid: None,
            started: now,
            why,
            term_at: self.rules.timeout.map(|t| calendar::add(now, t)),
            kill_at: None,
            termed: false,
            killed: false,
        });
        fx.push(Effect::Spawn);
    }

    fn finish(&mut self, now: Timestamp, result: String, ok: bool, code: i32, fx: &mut Vec<Effect>) {
        let started = self.run.take().map_or(now, |r| r.started);
        self.failed = !ok;
        self.state.last_started = Some(started);
        self.state.last_ended = Some(now);
        self.state.last_result = Some(result);
        if ok {
            self.state.last_success = Some(now);
            self.reference = Some(now);
        }
        if self.rules.remember {
            if self.state.created.is_none() {
                self.state.created = Some(started);
            }
            fx.push(Effect::Save(self.state.clone()));
        }
        if self.stops > 0 {
            fx.push(Effect::Log(Level::Info, "stopped".to_string()));
            self.exit(0, fx);
        } else if self.rules.once {
            self.exit(code, fx);
        } else {
            self.next_tick = self.plan_next(now);
            if let Some(t) = self.next_tick {
                fx.push(Effect::Log(Level::Debug, format!("next tick at {}", self.show(t))));
            }
        }
    }

    fn exit(&mut self, code: i32, fx: &mut Vec<Effect>) {
        self.exited = true;
        fx.push(Effect::Exit(code));
    }
}

/// The next `n` times a run would start if every run succeeded at once
/// (for `--next`). The machine itself is run, so this cannot drift from
/// what the loop does.
pub fn upcoming(rules: &Rules, start: Start, n: usize) -> Vec<Timestamp> {
    let rules = Rules { once: false, timeout: None, ..rules.clone() };
    let mut out = Vec::new();
    let mut now = start.now;
    let (mut job, mut fx) = Job::start(rules, start);
    // A guard against a schedule that ticks without ever running.
    let mut steps = 0u32;
    while out.len() < n && steps < 1_000_000 {
        steps += 1;
        if fx.contains(&Effect::Spawn) {
            out.push(now);
            job.spawned(now, Ok(1));
            job.on_exit(now, 1, ExitStatus::Exited(0));
        }
        match job.deadline() {
            Some(t) => now = t,
            None => break,
        }
        fx = job.on_time(now, None);
    }
    out
}

/// An instant for people: RFC 3339 in `zone`, to the millisecond, the
/// fraction only when there is one.
pub fn show(t: Timestamp, zone: &TimeZone) -> String {
    let t = t.round(jiff::Unit::Millisecond).unwrap_or(t);
    match jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.f%:z", &t.to_zoned(zone.clone())) {
        Ok(s) if zone == &TimeZone::UTC => s.trim_end_matches("+00:00").to_string() + "Z",
        Ok(s) => s,
        Err(_) => t.to_string(),
    }
}

/// A duration for people: "2.5 s".
pub fn secs(d: SignedDuration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.3} s")
    }
}

fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(c) => format!("exit code {c}"),
        ExitStatus::Signaled(s) => match nix::sys::signal::Signal::try_from(s) {
            Ok(sig) => format!("signal {}", sig.as_str()),
            Err(_) => format!("signal {s}"),
        },
    }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
