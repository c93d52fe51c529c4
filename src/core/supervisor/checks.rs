//! Health events of the pure supervisor: heartbeat looks, probe tries and
//! results, readiness notifications. The runtime does the I/O (stat a file,
//! connect, run a command) and reports back here.

use super::{AfterStop, Effect, Health, Pid, State, Supervisor};
use crate::core::health::{beat_verdict, BeatRule, BeatVerdict, ProbeTimer, ProbeVerdict};
use colony_ctl::{Probe, ProgramName, ProgramSpec, Readiness};
use std::time::Instant;

/// Which check a probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// Failing restarts the program.
    Liveness,
    /// Passing makes the program ready.
    Readiness,
}

/// A probe the runtime should run now.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRequest {
    /// The program.
    pub name: ProgramName,
    /// Its current instance (results for another one are ignored).
    pub pid: Pid,
    /// Liveness or readiness.
    pub kind: CheckKind,
    /// What to try, and its timeout.
    pub probe: Probe,
}

/// The heartbeat rule of a spec: `ncolony.beatcheck` or `heartbeat`.
pub fn beat_rule(spec: &ProgramSpec) -> Option<BeatRule> {
    if let Some(h) = &spec.policies().heartbeat {
        Some(BeatRule::heartbeat(h))
    } else {
        spec.beatcheck().map(BeatRule::beatcheck)
    }
}

impl Health {
    /// Fresh health for an instance started at `now`.
    pub(super) fn started(&mut self, spec: &ProgramSpec, known_since: Instant, now: Instant) {
        let policies = spec.policies();
        self.beat_next = beat_rule(spec).map(|rule| match beat_verdict(&rule, now, known_since, None, now) {
            BeatVerdict::Fresh { next } => next,
            _ => now,
        });
        self.liveness = policies.liveness.as_ref().map(|p| ProbeTimer::new(p, now));
        self.readiness = match &policies.readiness {
            Some(Readiness::Probe(p)) => Some(ProbeTimer::new(p, now)),
            _ => None,
        };
        self.ready = policies.readiness.is_none();
    }

    /// The instance is gone: nothing to look at until the next one.
    pub(super) fn stopped(&mut self) {
        self.beat_next = None;
        self.liveness = None;
        self.readiness = None;
        self.ready = false;
    }

    /// The earliest moment a check is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        [self.beat_next, self.liveness.as_ref().and_then(|t| t.next), self.readiness.as_ref().and_then(|t| t.next)]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Supervisor {
    /// Programs whose heartbeat file should be looked at now.
    pub fn beats_due(&self, now: Instant) -> Vec<ProgramName> {
        self.programs
            .iter()
            .filter(|(_, p)| matches!(p.state, State::Running { .. }) && p.health.beat_next.is_some_and(|t| t <= now))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The heartbeat file of `name` was last touched at `last_beat` (`None`:
    /// missing). Restarts a stale program, once per staleness.
    pub fn heartbeat(&mut self, name: &ProgramName, last_beat: Option<Instant>, now: Instant, out: &mut Vec<Effect>) {
        if self.shutting_down {
            return;
        }
        let Some(p) = self.programs.get_mut(name) else { return };
        let State::Running { since, .. } = p.state else { return };
        let Some(rule) = beat_rule(&p.spec) else { return };
        p.health.last_beat = last_beat.max(p.health.last_beat);
        match beat_verdict(&rule, since, p.known_since, p.health.last_beat, now) {
            BeatVerdict::Fresh { next } => {
                p.health.beat_next = Some(next);
                if (p.health.lost || p.health.dropped) && p.health.last_beat.is_some_and(|b| b >= since) {
                    p.health.lost = false;
                    p.health.dropped = false;
                    out.push(note(name, log::Level::Info, "heartbeat is back".into()));
                }
            }
            BeatVerdict::Stale => {
                p.health.lost = true;
                p.health.beat_next = None;
                let age = p.health.last_beat.map_or("no heartbeat yet".to_string(), |b| {
                    format!("last heartbeat {:.1} s ago", now.saturating_duration_since(b).as_secs_f64())
                });
                out.push(note(name, log::Level::Warn, format!("heartbeat is stale ({age}): restarting it")));
                self.stop(name, AfterStop::Start, now, out);
            }
            BeatVerdict::Dropped => {
                // Keep looking, to notice a heartbeat coming back.
                p.health.beat_next = Some(now + rule.poll.unwrap_or(rule.stale_after));
                if !p.health.dropped {
                    p.health.dropped = true;
                    out.push(note(
                        name,
                        log::Level::Warn,
                        "no heartbeat for the drop threshold: dropped, no longer restarted for it".into(),
                    ));
                }
            }
        }
    }

    /// Probes due now; each is marked in flight until its result comes.
    pub fn probes_due(&mut self, now: Instant) -> Vec<ProbeRequest> {
        let mut due = Vec::new();
        for (name, p) in self.programs.iter_mut() {
            let State::Running { pid, .. } = p.state else { continue };
            let policies = p.spec.policies();
            if let (Some(t), Some(probe)) = (&mut p.health.liveness, &policies.liveness) {
                if t.start_if_due(now) {
                    due.push(ProbeRequest { name: name.clone(), pid, kind: CheckKind::Liveness, probe: probe.clone() });
                }
            }
            if let (Some(t), Some(Readiness::Probe(probe))) = (&mut p.health.readiness, &policies.readiness) {
                if t.start_if_due(now) {
                    due.push(ProbeRequest {
                        name: name.clone(),
                        pid,
                        kind: CheckKind::Readiness,
                        probe: probe.clone(),
                    });
                }
            }
        }
        due
    }

    /// A probe of instance `pid` of `name` passed (`ok`) or failed.
    pub fn probe_result(
        &mut self,
        name: &ProgramName,
        pid: Pid,
        kind: CheckKind,
        ok: bool,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        if self.shutting_down {
            return;
        }
        let Some(p) = self.programs.get_mut(name) else { return };
        if !matches!(p.state, State::Running { pid: current, .. } if current == pid) {
            return;
        }
        let spec = p.spec.clone();
        let policies = spec.policies();
        match kind {
            CheckKind::Liveness => {
                let (Some(t), Some(probe)) = (&mut p.health.liveness, &policies.liveness) else { return };
                match t.finish(probe, ok, now) {
                    ProbeVerdict::Failed => {
                        let n = probe.failure_threshold;
                        out.push(note(
                            name,
                            log::Level::Warn,
                            format!("liveness check failed {n} times: restarting it"),
                        ));
                        self.stop(name, AfterStop::Start, now, out);
                    }
                    ProbeVerdict::Failing(n) => {
                        out.push(note(name, log::Level::Info, format!("liveness check failed ({n} in a row)")))
                    }
                    ProbeVerdict::Pass => {}
                }
            }
            CheckKind::Readiness => {
                let (Some(t), Some(Readiness::Probe(probe))) = (&mut p.health.readiness, &policies.readiness) else {
                    return;
                };
                match t.finish(probe, ok, now) {
                    ProbeVerdict::Pass if !p.health.ready => self.became_ready(name, now, out),
                    ProbeVerdict::Failed if p.health.ready => {
                        p.health.ready = false;
                        out.push(note(name, log::Level::Warn, "readiness check failing: not ready".into()));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Instance `pid` of `name` wrote a newline to its notification fd.
    pub fn notified_ready(&mut self, name: &ProgramName, pid: Pid, now: Instant, out: &mut Vec<Effect>) {
        let Some(p) = self.programs.get(name) else { return };
        if matches!(p.state, State::Running { pid: current, .. } if current == pid) && !p.health.ready {
            self.became_ready(name, now, out);
        }
    }

    pub(super) fn became_ready(&mut self, name: &ProgramName, now: Instant, out: &mut Vec<Effect>) {
        if let Some(p) = self.programs.get_mut(name) {
            p.health.ready = true;
            if p.spec.policies().readiness.is_some() {
                out.push(note(name, log::Level::Info, "ready".into()));
            }
        }
        self.poke_all(now, out);
    }
}

fn note(name: &ProgramName, level: log::Level, text: String) -> Effect {
    Effect::Note { name: name.clone(), level, text }
}
