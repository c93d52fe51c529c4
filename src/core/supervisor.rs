//! The supervisor's decisions: every program's state machine and the
//! aggregate, driven by events and `now`, answering with effects.
//!
//! Pure: depends on `colony-ctl` types, the backoff module and `std::time`.
//! No system calls, no clock reads. The runtime performs the effects and
//! reports back (spawned, exited) as further events.

use super::backoff::{Backoff, Policy};
use super::health::{FailureWindow, ProbeTimer};
use colony_ctl::{ProgramName, ProgramSpec, RestartPolicy};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A process id; children are process-group leaders, so it is also their
/// process-group id.
pub type Pid = i32;

/// SIGTERM's number (Linux).
pub const SIGTERM: i32 = 15;
/// SIGKILL's number (Linux).
pub const SIGKILL: i32 = 9;

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start the program now and report with [`Supervisor::spawned`] —
    /// unless its state is no longer `Starting` when the runtime gets to it
    /// (a later decision in the same pass cancelled the start).
    Spawn { name: ProgramName, spec: Arc<ProgramSpec> },
    /// Send `signal` to the process group `pgid` of a live program.
    Signal { name: ProgramName, pgid: Pid, signal: i32 },
    /// Send `signal` to the main process `pid` only (SIGNAL message).
    SignalProcess { name: ProgramName, pid: Pid, signal: i32 },
    /// The main process of a program was reaped: SIGKILL whatever is left
    /// in its process group.
    KillLeftovers { name: ProgramName, pgid: Pid },
    /// The program will start again after `delay` (for the log).
    Scheduled { name: ProgramName, delay: Duration },
    /// The program's config is gone and its process too: forget it.
    Forgotten { name: ProgramName },
    /// A critical program ended: colony stops everything and exits with `code`.
    CriticalExit { name: ProgramName, code: i32 },
    /// A health verdict or policy decision worth a log line.
    Note { name: ProgramName, level: log::Level, text: String },
}

/// Why a program is being stopped: what happens once it has been reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterStop {
    /// Start it again at once (restart request or new config).
    Start,
    /// Its config file is gone: forget it.
    Forget,
    /// Keep it stopped (STOP request, disabled, shutdown).
    Halt,
}

/// One program's state.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not running; starts at `at`.
    Waiting { at: Instant },
    /// A `Spawn` effect is out; the runtime reports the result next.
    Starting,
    /// Running since `since`.
    Running { pid: Pid, since: Instant },
    /// Asked to stop; SIGKILL at `kill_at` (None once it has been sent).
    Stopping { pid: Pid, since: Instant, kill_at: Option<Instant>, then: AfterStop },
    /// Not running and not to be started (STOP, disabled, its restart
    /// policy, or shutdown).
    Halted,
    /// Given up on after too many failures; tried again at `retry_at`.
    Failed { retry_at: Option<Instant> },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal.
    pub fn code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

#[derive(Debug, Clone)]
struct Program {
    spec: Arc<ProgramSpec>,
    backoff: Backoff,
    state: State,
    /// Stopped on request (STOP) until START or RESTART.
    held: bool,
    /// How many times it was started.
    starts: u64,
    /// How its last instance ended.
    last_exit: Option<ExitStatus>,
    /// Recent failures, for `give_up`.
    failures: FailureWindow,
    /// Heartbeat and probe state of the current instance.
    health: Health,
    /// When colony started watching it (the SLAMon drop clock).
    known_since: Instant,
    /// Why its `after` list cannot be satisfied (unknown name, cycle).
    blocked: Option<String>,
}

/// Heartbeat, probes and readiness of one program.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    /// When to look at the heartbeat file next.
    beat_next: Option<Instant>,
    /// The heartbeat seen last.
    last_beat: Option<Instant>,
    /// The last heartbeat verdict was stale.
    lost: bool,
    /// Dropped from the fleet view (SLAMon).
    dropped: bool,
    liveness: Option<ProbeTimer>,
    readiness: Option<ProbeTimer>,
    /// The running instance is ready.
    ready: bool,
}

impl Program {
    fn new(spec: ProgramSpec, policy: &Policy, now: Instant) -> Program {
        let state = if spec.disabled() { State::Halted } else { State::Waiting { at: now } };
        Program {
            spec: Arc::new(spec),
            backoff: Backoff::new(policy),
            state,
            held: false,
            starts: 0,
            last_exit: None,
            failures: FailureWindow::default(),
            health: Health::default(),
            known_since: now,
            blocked: None,
        }
    }

    /// The restart policy in force: `never` by default for a critical program.
    fn restart_policy(&self) -> RestartPolicy {
        match self.spec.policies().restart {
            Some(p) => p,
            None if self.spec.critical() => RestartPolicy::Never,
            None => RestartPolicy::Always,
        }
    }

    fn wants_to_run(&self) -> bool {
        !self.held && !self.spec.disabled()
    }
}

/// What the status of one program shows.
#[derive(Debug, Clone, PartialEq)]
pub struct View<'a> {
    /// The state.
    pub state: &'a State,
    /// The spec in force.
    pub spec: &'a ProgramSpec,
    /// Stopped by a STOP request.
    pub held: bool,
    /// Times started.
    pub starts: u64,
    /// How the last instance ended.
    pub last_exit: Option<ExitStatus>,
    /// The running instance is ready (always, without a readiness check).
    pub ready: bool,
    /// "lost" or "dropped" after a heartbeat verdict.
    pub health: Option<&'static str>,
    /// Programs it waits for (its `after` list, not yet ready).
    pub waiting_for: Vec<&'a str>,
    /// Why it cannot start (an `after` problem).
    pub blocked: Option<&'a str>,
}

/// A report on one exit, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// The program.
    pub name: ProgramName,
    /// How long it ran.
    pub lived: Duration,
    /// Whether colony had asked it to stop.
    pub requested: bool,
}

/// A request that cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No program has this name.
    Unknown(ProgramName),
    /// The program is disabled in its config file.
    Disabled(ProgramName),
    /// The program has no running process to signal.
    NotRunning(ProgramName),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unknown(n) => write!(f, "no program named {n:?} is configured"),
            Refused::Disabled(n) => write!(f, "{n} is disabled in its config file"),
            Refused::NotRunning(n) => write!(f, "{n} is not running"),
        }
    }
}

/// Every program colony knows, and the shutdown flag.
#[derive(Debug, Clone)]
pub struct Supervisor {
    policy: Policy,
    programs: BTreeMap<ProgramName, Program>,
    pids: HashMap<Pid, ProgramName>,
    shutting_down: bool,
    exit_code: Option<i32>,
    /// The set of programs changed: `after` problems are derived again at
    /// the next tick, once the whole directory has been read.
    order_dirty: bool,
}

impl Supervisor {
    /// An empty supervisor.
    pub fn new(policy: Policy) -> Supervisor {
        Supervisor {
            policy,
            programs: BTreeMap::new(),
            pids: HashMap::new(),
            shutting_down: false,
            exit_code: None,
            order_dirty: false,
        }
    }

    /// The restart policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether `shutdown` was called.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The exit code colony should end with (set by a critical program).
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }

    /// The state of `name`, if known.
    pub fn state(&self, name: &str) -> Option<&State> {
        self.programs.get(name).map(|p| &p.state)
    }

    /// What the status of `name` shows.
    pub fn view(&self, name: &str) -> Option<View<'_>> {
        let p = self.programs.get(name)?;
        let waiting_for = match p.state {
            State::Waiting { .. } if p.wants_to_run() => {
                p.spec.policies().after.iter().filter(|d| !self.is_ready(d)).map(String::as_str).collect()
            }
            _ => Vec::new(),
        };
        Some(View {
            state: &p.state,
            spec: &p.spec,
            held: p.held,
            starts: p.starts,
            last_exit: p.last_exit,
            ready: matches!(p.state, State::Running { .. }) && p.health.ready,
            health: if p.health.dropped {
                Some("dropped")
            } else if p.health.lost {
                Some("lost")
            } else {
                None
            },
            waiting_for,
            blocked: p.blocked.as_deref(),
        })
    }

    /// Every known program and its state.
    pub fn programs(&self) -> impl Iterator<Item = (&ProgramName, &State)> {
        self.programs.iter().map(|(n, p)| (n, &p.state))
    }

    /// The program that owns `pid`.
    pub fn owner(&self, pid: Pid) -> Option<&ProgramName> {
        self.pids.get(&pid)
    }

    /// Whether the supervisor has finished shutting down.
    pub fn is_done(&self) -> bool {
        self.shutting_down && self.pids.is_empty()
    }

    /// The config file of `name` now holds `spec` (new or changed), or is
    /// gone (`None`).
    pub fn configure(&mut self, name: &ProgramName, spec: Option<ProgramSpec>, now: Instant, out: &mut Vec<Effect>) {
        if self.shutting_down {
            return;
        }
        let policy = self.policy;
        let Some(p) = self.programs.get_mut(name) else {
            if let Some(spec) = spec {
                self.programs.insert(name.clone(), Program::new(spec, &policy, now));
                self.order_dirty = true;
                self.poke_all(now, out);
            }
            return;
        };
        let Some(spec) = spec else {
            match p.state {
                State::Running { .. } => self.stop(name, AfterStop::Forget, now, out),
                State::Stopping { ref mut then, .. } => *then = AfterStop::Forget,
                State::Waiting { .. } | State::Halted | State::Starting | State::Failed { .. } => {
                    self.programs.remove(name);
                    out.push(Effect::Forgotten { name: name.clone() });
                }
            }
            self.order_dirty = true;
            return;
        };
        // The running instance is stopped the way its own (old) spec says;
        // the new spec applies from the next start.
        let after = if spec.disabled() || p.held { AfterStop::Halt } else { AfterStop::Start };
        if matches!(p.state, State::Running { .. }) {
            self.stop(name, after, now, out);
        }
        let Some(p) = self.programs.get_mut(name) else { return };
        p.spec = Arc::new(spec);
        p.backoff = Backoff::new(&policy);
        p.failures.clear();
        let run = p.wants_to_run();
        match p.state {
            State::Waiting { .. } | State::Halted | State::Failed { .. } if run => {
                p.state = State::Waiting { at: now };
            }
            State::Waiting { .. } | State::Failed { .. } => p.state = State::Halted,
            State::Stopping { ref mut then, .. } => *then = after,
            _ => {}
        }
        self.order_dirty = true;
        self.poke_all(now, out);
    }

    /// Restart `name` now: stop it if it runs (then start it as soon as it
    /// has been reaped), or start it at once if it is waiting in backoff,
    /// failed, or was stopped on request.
    pub fn restart(&mut self, name: &ProgramName, now: Instant, out: &mut Vec<Effect>) -> Result<(), Refused> {
        self.wake(name, true, now, out)
    }

    /// RESTART and START: clear a STOP and the failure count, and start the
    /// program if it is not running (stopping and restarting it first if
    /// `restart_running`).
    fn wake(
        &mut self,
        name: &ProgramName,
        restart_running: bool,
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> Result<(), Refused> {
        let shutting_down = self.shutting_down;
        let p = self.known(name)?;
        if p.spec.disabled() {
            return Err(Refused::Disabled(name.clone()));
        }
        p.held = false;
        p.failures.clear();
        if shutting_down {
            return Ok(());
        }
        match p.state {
            State::Running { .. } if restart_running => self.stop(name, AfterStop::Start, now, out),
            State::Waiting { .. } | State::Halted | State::Failed { .. } => {
                p.state = State::Waiting { at: now };
                self.poke(name, now, out);
            }
            State::Stopping { ref mut then, .. } => *then = AfterStop::Start,
            State::Running { .. } | State::Starting => {}
        }
        Ok(())
    }

    /// STOP: stop `name` and keep it stopped until START or RESTART.
    pub fn hold(&mut self, name: &ProgramName, now: Instant, out: &mut Vec<Effect>) -> Result<(), Refused> {
        let p = self.known(name)?;
        p.held = true;
        match p.state {
            State::Running { .. } => self.stop(name, AfterStop::Halt, now, out),
            // A start decided earlier in the same pass is cancelled too.
            State::Waiting { .. } | State::Failed { .. } | State::Starting => p.state = State::Halted,
            State::Stopping { ref mut then, .. } => *then = AfterStop::Halt,
            State::Halted => {}
        }
        Ok(())
    }

    /// START: start `name` if it is stopped on request, failed or waiting
    /// in backoff. A running program is left alone.
    pub fn release(&mut self, name: &ProgramName, now: Instant, out: &mut Vec<Effect>) -> Result<(), Refused> {
        self.wake(name, false, now, out)
    }

    /// SIGNAL: send `signal` to the main process of `name`.
    pub fn signal(&mut self, name: &ProgramName, signal: i32, out: &mut Vec<Effect>) -> Result<(), Refused> {
        match self.known(name)?.state {
            State::Running { pid, .. } | State::Stopping { pid, .. } => {
                out.push(Effect::SignalProcess { name: name.clone(), pid, signal });
                Ok(())
            }
            _ => Err(Refused::NotRunning(name.clone())),
        }
    }

    fn known(&mut self, name: &ProgramName) -> Result<&mut Program, Refused> {
        match self.programs.get_mut(name) {
            Some(p) if !matches!(p.state, State::Stopping { then: AfterStop::Forget, .. }) => Ok(p),
            _ => Err(Refused::Unknown(name.clone())),
        }
    }

    /// Restart every program (disabled and stopped ones stay as they are).
    pub fn restart_all(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let names: Vec<_> = self.programs.iter().filter(|(_, p)| p.wants_to_run()).map(|(n, _)| n.clone()).collect();
        for name in names {
            let _ = self.restart(&name, now, out);
        }
    }

    /// Restart every program whose `group` list holds `group` (disabled and
    /// stopped ones stay as they are); returns how many there were.
    pub fn restart_group(&mut self, group: &str, now: Instant, out: &mut Vec<Effect>) -> usize {
        let names: Vec<_> = self
            .programs
            .iter()
            .filter(|(_, p)| p.spec.groups().iter().any(|g| g == group) && p.wants_to_run())
            .filter(|(_, p)| !matches!(p.state, State::Stopping { then: AfterStop::Forget, .. }))
            .map(|(n, _)| n.clone())
            .collect();
        for name in &names {
            let _ = self.restart(name, now, out);
        }
        names.len()
    }

    /// The runtime performed a `Spawn`: `Ok(pid)` if the program runs,
    /// `Err(code)` if it could not be started (counted as an instant death
    /// with that exit code, 126 or 127 as a shell would say).
    pub fn spawned(&mut self, name: &ProgramName, result: Result<Pid, i32>, now: Instant, out: &mut Vec<Effect>) {
        let policy = self.policy;
        let Some(p) = self.programs.get_mut(name) else { return };
        if p.state != State::Starting {
            return;
        }
        match result {
            Ok(pid) => {
                p.state = State::Running { pid, since: now };
                p.starts += 1;
                let spec = p.spec.clone();
                p.health.started(&spec, p.known_since, now);
                let ready = p.health.ready;
                self.pids.insert(pid, name.clone());
                if ready {
                    self.poke_all(now, out);
                }
            }
            Err(code) => {
                let _ = policy;
                self.ended_on_its_own(name, ExitStatus::Exited(code), Duration::ZERO, now, out);
            }
        }
    }

    /// A program ended without being asked to: apply its restart policy,
    /// give up after too many failures, or end colony if it is critical.
    fn ended_on_its_own(
        &mut self,
        name: &ProgramName,
        status: ExitStatus,
        lived: Duration,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let policy = self.policy;
        let shutting_down = self.shutting_down;
        let Some(p) = self.programs.get_mut(name) else { return };
        p.last_exit = Some(status);
        if shutting_down || !p.wants_to_run() {
            p.state = State::Halted;
            return;
        }
        let policies = p.spec.policies();
        let code = match status {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled(_) => None,
        };
        let success = code.is_some_and(|c| policies.success_codes.contains(&c));
        let prevented = code.is_some_and(|c| policies.no_restart_codes.contains(&c));
        let restart = !prevented
            && match p.restart_policy() {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !success,
                RestartPolicy::Never => false,
            };
        if !restart {
            p.state = State::Halted;
            let why = if prevented { "its exit code asks not to restart it" } else { "its restart policy" };
            out.push(Effect::Note {
                name: name.clone(),
                level: log::Level::Info,
                text: format!("not restarted: {why}"),
            });
            if p.spec.critical() {
                self.critical_exit(name, status.code(), now, out);
            }
            return;
        }
        if let (false, Some(rule)) = (success, policies.give_up) {
            if p.failures.record(&rule, now) {
                let retry_at = rule.cooldown.map(|c| now + Duration::from_secs_f64(c));
                p.state = State::Failed { retry_at };
                let until = match rule.cooldown {
                    Some(c) => format!("trying again in {c} s"),
                    None => "until restarted by hand".into(),
                };
                out.push(Effect::Note {
                    name: name.clone(),
                    level: log::Level::Error,
                    text: format!("failed {} times within {} s: giving up, {until}", rule.failures, rule.within),
                });
                if p.spec.critical() {
                    self.critical_exit(name, status.code(), now, out);
                }
                return;
            }
        }
        let delay = p.backoff.on_exit(lived, &policy);
        p.state = State::Waiting { at: now + delay };
        if delay > Duration::ZERO {
            out.push(Effect::Scheduled { name: name.clone(), delay });
        }
        self.poke(name, now, out);
    }

    /// A child was reaped. Returns `None` for a pid colony did not start (an
    /// orphan it inherited), else what happened to the program.
    pub fn exited(&mut self, pid: Pid, status: ExitStatus, now: Instant, out: &mut Vec<Effect>) -> Option<Exit> {
        let name = self.pids.remove(&pid)?;
        let policy = self.policy;
        let p = self.programs.get_mut(&name)?;
        let (since, requested, then) = match p.state {
            State::Running { since, .. } => (since, false, None),
            State::Stopping { since, then, .. } => (since, true, Some(then)),
            _ => return None,
        };
        p.last_exit = Some(status);
        p.health.stopped();
        let _ = policy;
        let lived = now.saturating_duration_since(since);
        // Whatever the main process left in its group goes with it: never
        // two instances at once.
        out.push(Effect::KillLeftovers { name: name.clone(), pgid: pid });
        match then {
            None => self.ended_on_its_own(&name, status, lived, now, out),
            Some(AfterStop::Start) if self.shutting_down => p.state = State::Halted,
            Some(AfterStop::Start) => {
                p.state = State::Waiting { at: now };
                self.poke(&name, now, out);
            }
            Some(AfterStop::Forget) => {
                self.programs.remove(&name);
                out.push(Effect::Forgotten { name: name.clone() });
            }
            Some(AfterStop::Halt) => p.state = State::Halted,
        }
        if self.shutting_down {
            self.shutdown_step(now, out);
        }
        Some(Exit { name, lived, requested })
    }

    fn critical_exit(&mut self, name: &ProgramName, code: i32, now: Instant, out: &mut Vec<Effect>) {
        if self.exit_code.is_none() && !self.shutting_down {
            self.exit_code = Some(code);
            out.push(Effect::CriticalExit { name: name.clone(), code });
            self.shutdown(now, out);
        }
    }

    /// Time has come to `now`: start programs whose backoff has passed and
    /// SIGKILL those that outlived their kill time.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if std::mem::take(&mut self.order_dirty) {
            self.recompute_blocked(out);
            self.poke_all(now, out);
        }
        let due: Vec<ProgramName> = self
            .programs
            .iter()
            .filter(|(_, p)| match p.state {
                State::Waiting { at } => at <= now,
                State::Stopping { kill_at: Some(at), .. } => at <= now,
                State::Failed { retry_at: Some(at) } => at <= now,
                _ => false,
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let Some(p) = self.programs.get_mut(&name) else { continue };
            match p.state {
                State::Stopping { pid, ref mut kill_at, .. } => {
                    *kill_at = None;
                    out.push(Effect::Signal { name: name.clone(), pgid: pid, signal: SIGKILL });
                }
                State::Failed { .. } => {
                    p.state = State::Waiting { at: now };
                    out.push(Effect::Note {
                        name: name.clone(),
                        level: log::Level::Info,
                        text: "cool-down over: trying again".into(),
                    });
                    self.poke(&name, now, out);
                }
                _ => self.poke(&name, now, out),
            }
        }
    }

    /// Pokes every waiting program (after one became ready, or the config
    /// changed).
    fn poke_all(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let waiting: Vec<ProgramName> = self
            .programs
            .iter()
            .filter(|(_, p)| matches!(p.state, State::Waiting { at } if at <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in waiting {
            self.poke(&name, now, out);
        }
    }

    /// The earliest moment `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.programs
            .values()
            .filter_map(|p| match p.state {
                // A program waiting for others is woken by their readiness,
                // not by time.
                State::Waiting { at } if p.wants_to_run() && self.deps_ready(p) => Some(at),
                State::Waiting { .. } => None,
                State::Stopping { kill_at, .. } => kill_at,
                State::Failed { retry_at } => retry_at,
                State::Running { .. } => p.health.next_deadline(),
                State::Starting | State::Halted => None,
            })
            .min()
    }

    /// Stop everything: the stop signal to every running program, SIGKILL
    /// after its kill time, nothing restarted. Done when [`is_done`](Self::is_done).
    pub fn shutdown(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.shutting_down = true;
        for p in self.programs.values_mut() {
            // No more health checks: nothing is restarted now.
            p.health.stopped();
            match p.state {
                State::Stopping { ref mut then, .. } => *then = AfterStop::Halt,
                State::Waiting { .. } | State::Starting | State::Failed { .. } => p.state = State::Halted,
                State::Running { .. } | State::Halted => {}
            }
        }
        self.shutdown_step(now, out);
    }

    /// Stops every running program that no running program comes after
    /// (`after`): shutdown goes in reverse start order.
    fn shutdown_step(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let free: Vec<ProgramName> = self
            .programs
            .iter()
            .filter(|(n, p)| matches!(p.state, State::Running { .. }) && !self.dependents_alive(n.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        for name in free {
            self.stop(&name, AfterStop::Halt, now, out);
        }
    }

    /// A second shutdown request: SIGKILL every live program now.
    pub fn force_shutdown(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.shutdown(now, out);
        let running: Vec<ProgramName> = self
            .programs
            .iter()
            .filter(|(_, p)| matches!(p.state, State::Running { .. }))
            .map(|(n, _)| n.clone())
            .collect();
        for name in running {
            self.stop(&name, AfterStop::Halt, now, out);
        }
        for (name, p) in self.programs.iter_mut() {
            if let State::Stopping { pid, ref mut kill_at, .. } = p.state {
                *kill_at = None;
                out.push(Effect::Signal { name: name.clone(), pgid: pid, signal: SIGKILL });
            }
        }
    }

    /// Running → Stopping: the stop signal now, SIGKILL after the kill time.
    fn stop(&mut self, name: &ProgramName, then: AfterStop, now: Instant, out: &mut Vec<Effect>) {
        let policy = self.policy;
        // Nothing starts again once shutdown has begun.
        let then = if self.shutting_down && then == AfterStop::Start { AfterStop::Halt } else { then };
        let Some(p) = self.programs.get_mut(name) else { return };
        if let State::Running { pid, since } = p.state {
            let killtime = p.spec.killtime().map(Duration::from_secs_f64).unwrap_or(policy.killtime);
            let signal = p.spec.stop_signal().unwrap_or(SIGTERM);
            p.state = State::Stopping { pid, since, kill_at: Some(now + killtime), then };
            p.health.stopped();
            out.push(Effect::Signal { name: name.clone(), pgid: pid, signal });
        }
    }

    /// Waiting and due → Starting, with a `Spawn` effect.
    fn poke(&mut self, name: &ProgramName, now: Instant, out: &mut Vec<Effect>) {
        let Some(p) = self.programs.get(name) else { return };
        let State::Waiting { at } = p.state else { return };
        if at > now || self.shutting_down || !p.wants_to_run() || !self.deps_ready(p) {
            return;
        }
        let Some(p) = self.programs.get_mut(name) else { return };
        p.state = State::Starting;
        out.push(Effect::Spawn { name: name.clone(), spec: p.spec.clone() });
    }
}

mod checks;
mod order;

pub use checks::{beat_rule, CheckKind, ProbeRequest};

#[cfg(test)]
mod tests;
