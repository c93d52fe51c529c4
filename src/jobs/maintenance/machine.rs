//! The request state machine of `colony maintenance` (fc.maintenance's,
//! with its quirks fixed). Pure: `now`, the requests and the windows come
//! in; requests change in place and notes for the log come out.
//!
//! | from      | event                                        | to        |
//! |-----------|----------------------------------------------|-----------|
//! | pending   | no slot yet: first window that fits          | pending (slot set), or error if none fits |
//! | pending   | slot ≤ due time of the session (batching)    | due       |
//! | due       | `max_attempts` attempts made                 | error     |
//! | due       | slot more than `overdue` ago                 | postpone  |
//! | due       | session runs it                              | running   |
//! | running   | exit 0 / 69 / 75 / other                     | success / postpone / due / error |
//! | running   | exit 75 at the retry limit                   | error     |
//! | running   | found at start (job was stopped): script     | error (not retried: may be unsafe) |
//! | postpone  | next tick                                    | pending, no slot before old slot + 2 × estimate |
//! | unknown   | next tick                                    | pending   |
//! | due       | no slot (edited by hand)                     | pending   |
//! | any queued| `delete` file                                | deleted   |
//!
//! The due time of a session starts at `now`; after each due request it
//! becomes `max(due time, now, slot + estimate + 60 s)` (fc HEAD's
//! `update_states`, made monotonic), so requests scheduled back to back
//! run in the same session.
//!
//! Depends on jiff, colony-ctl's request type and the windows module.

use super::windows::{self, Window};
use colony_ctl::maintenance::{format_estimate, order, Attempt, Request, RequestState};
use jiff::{SignedDuration, Timestamp};

/// Exit code of an activity or hook: postpone.
pub const EX_POSTPONE: i32 = 69;
/// Exit code of an activity or hook: try again at the next tick.
pub const EX_TEMPFAIL: i32 = 75;

/// The knobs of the state machine.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request attempted this often is not retried again.
    pub max_attempts: usize,
    /// A due request whose slot is longer ago than this is postponed.
    pub overdue: SignedDuration,
    /// Added to each request's estimate when batching.
    pub batch_gap: SignedDuration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_attempts: 48, overdue: SignedDuration::from_mins(30), batch_gap: SignedDuration::from_secs(60) }
    }
}

/// A log line about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Warn (true) or info.
    pub warn: bool,
    /// The message, starting with the short id.
    pub msg: String,
}

fn note(notes: &mut Vec<Note>, warn: bool, r: &Request, msg: impl AsRef<str>) {
    notes.push(Note { warn, msg: format!("request {}: {}", r.short_id(), msg.as_ref()) });
}

/// Unix seconds to an instant, to the microsecond (so that
/// `at(unix(t))` is `t` cut to the microsecond, never later than `t`).
pub fn at(secs: f64) -> Timestamp {
    let ns = (secs * 1e6).round() as i128 * 1000;
    Timestamp::from_nanosecond(ns).unwrap_or(if ns < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// An instant to Unix seconds, cut to the microsecond.
pub fn unix(t: Timestamp) -> f64 {
    t.as_nanosecond().div_euclid(1000) as f64 / 1e6
}

/// An estimate as a duration.
pub fn estimate(r: &Request) -> SignedDuration {
    SignedDuration::try_from_secs_f64(r.estimate.max(0.0)).unwrap_or(SignedDuration::MAX)
}

/// "2026-05-02T02:00:00Z".
pub fn show(t: Timestamp) -> String {
    crate::jobs::scheduler::machine::show(t, &jiff::tz::TimeZone::UTC)
}

fn set_state(r: &mut Request, to: RequestState, now: Timestamp) {
    r.state = to;
    r.updated_at = Some(unix(now));
}

/// Marks requests whose id is in `ids` as deleted (final states stay).
pub fn apply_deletions(now: Timestamp, requests: &mut [Request], ids: &[String]) -> Vec<Note> {
    let mut notes = Vec::new();
    for r in requests.iter_mut().filter(|r| ids.contains(&r.id) && !r.state.is_final()) {
        set_state(r, RequestState::Deleted, now);
        note(&mut notes, false, r, "deleted on request");
    }
    notes
}

/// Everything that happens between runs: postponed requests go back to
/// pending, unscheduled ones get the first window slot that fits, pending
/// ones whose slot has come become due (back-to-back ones too), due ones
/// over the retry limit fail, overdue ones are postponed (and
/// rescheduled at once).
pub fn settle(now: Timestamp, requests: &mut [Request], windows: &[Window], limits: &Limits) -> Vec<Note> {
    let mut notes = Vec::new();
    for _ in 0..2 {
        requeue(now, requests, &mut notes);
        schedule(now, requests, windows, &mut notes);
        if !update_states(now, requests, limits, &mut notes) {
            break;
        }
    }
    notes
}

/// postpone → pending (not before the old slot + 2 × estimate);
/// unknown → pending.
fn requeue(now: Timestamp, requests: &mut [Request], notes: &mut Vec<Note>) {
    for r in requests.iter_mut() {
        match r.state {
            RequestState::Postpone => {
                let base = r.next_due.map_or(now, at).max(now);
                let not_before = base + estimate(r) * 2;
                r.not_before = Some(unix(not_before));
                r.next_due = None;
                set_state(r, RequestState::Pending, now);
                note(notes, false, r, format!("postponed: no slot before {}", show(not_before)));
            }
            RequestState::Unknown => {
                set_state(r, RequestState::Pending, now);
                note(notes, true, r, "unknown state: pending again");
            }
            RequestState::Due if r.next_due.is_none() => {
                set_state(r, RequestState::Pending, now);
                note(notes, true, r, "due without a slot: pending again");
            }
            _ => {}
        }
    }
}

/// Gives each pending request without a slot the first slot that fits,
/// after the slots already given (in filing order).
fn schedule(now: Timestamp, requests: &mut [Request], windows: &[Window], notes: &mut Vec<Note>) {
    let mut todo: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].state == RequestState::Pending && requests[i].next_due.is_none())
        .collect();
    todo.sort_by(|&a, &b| {
        let (a, b) = (&requests[a], &requests[b]);
        a.added_at.total_cmp(&b.added_at).then_with(|| a.id.cmp(&b.id))
    });
    for i in todo {
        let busy: Vec<windows::Busy> = requests
            .iter()
            .filter(|r| !r.state.is_final() && r.id != requests[i].id)
            .filter_map(|r| r.next_due.map(|d| (at(d), at(d) + estimate(r))))
            .collect();
        let r = &mut requests[i];
        let earliest = r.not_before.map_or(now, at).max(now);
        match windows::first_slot(windows, earliest, estimate(r), &busy) {
            Some(slot) => {
                r.next_due = Some(unix(slot));
                r.updated_at = Some(unix(now));
                note(
                    notes,
                    false,
                    r,
                    format!("scheduled at {} (estimate {})", show(slot), format_estimate(r.estimate)),
                );
            }
            None => {
                set_state(r, RequestState::Error, now);
                note(
                    notes,
                    true,
                    r,
                    format!("its estimate {} fits in no maintenance window", format_estimate(r.estimate)),
                );
            }
        }
    }
}

/// fc HEAD's `update_states`; returns whether a request was postponed.
fn update_states(now: Timestamp, requests: &mut [Request], limits: &Limits, notes: &mut Vec<Note>) -> bool {
    let mut idx: Vec<usize> = (0..requests.len()).collect();
    idx.sort_by(|&a, &b| order(&requests[a], &requests[b]));
    let mut due_time = now;
    let mut postponed = false;
    for i in idx {
        let r = &mut requests[i];
        let Some(slot) = r.next_due.map(at) else { continue };
        if r.state == RequestState::Pending && slot <= due_time {
            set_state(r, RequestState::Due, now);
            let how = if slot > now { "due: runs right after the requests before it" } else { "due" };
            note(notes, false, r, format!("{how} (slot {})", show(slot)));
        }
        if r.state == RequestState::Due && r.attempts.len() >= limits.max_attempts {
            set_state(r, RequestState::Error, now);
            note(notes, true, r, format!("retry limit: {} attempts", r.attempts.len()));
            continue;
        }
        if r.state == RequestState::Due && now > slot + limits.overdue {
            set_state(r, RequestState::Postpone, now);
            note(
                notes,
                true,
                r,
                format!("overdue: its slot {} is more than {} ago", show(slot), show_secs(limits.overdue)),
            );
            postponed = true;
            continue;
        }
        if matches!(r.state, RequestState::Due | RequestState::Running) {
            due_time = due_time.max(slot + estimate(r) + limits.batch_gap);
        }
    }
    postponed
}

/// A duration in fc's estimate format ("30m", "1h 5s").
pub fn show_secs(d: SignedDuration) -> String {
    format_estimate(d.as_secs_f64())
}

/// The due requests, in the order they run.
pub fn runnable(requests: &[Request]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..requests.len()).filter(|&i| requests[i].state == RequestState::Due).collect();
    idx.sort_by(|&a, &b| order(&requests[a], &requests[b]));
    idx
}

/// A run begins: running, with a new attempt.
pub fn begin_attempt(r: &mut Request, now: Timestamp) {
    r.attempts.push(Attempt { started: unix(now), finished: None, exit_code: None, output: String::new(), note: None });
    set_state(r, RequestState::Running, now);
}

/// What an exit code makes of a request that has made `attempts`
/// attempts: 0 success, 69 postpone, 75 due again (error at the retry
/// limit), anything else (or no code at all) error.
pub fn evaluate(code: Option<i32>, attempts: usize, limits: &Limits) -> RequestState {
    match code {
        Some(0) => RequestState::Success,
        Some(EX_POSTPONE) => RequestState::Postpone,
        Some(EX_TEMPFAIL) if attempts < limits.max_attempts => RequestState::Due,
        _ => RequestState::Error,
    }
}

/// A run ended: the attempt is completed and the state follows the code.
pub fn end_attempt(
    r: &mut Request,
    now: Timestamp,
    code: Option<i32>,
    output: String,
    why: Option<String>,
    limits: &Limits,
) -> Note {
    let to = evaluate(code, r.attempts.len(), limits);
    if let Some(a) = r.attempts.last_mut() {
        a.finished = Some(unix(now));
        a.exit_code = code;
        a.output = output;
        a.note = why.clone();
    }
    set_state(r, to, now);
    let code_text = code.map_or("no exit code".to_string(), |c| format!("exit code {c}"));
    let extra = why.map(|w| format!(" ({w})")).unwrap_or_default();
    let what = match to {
        RequestState::Due => format!("{code_text}{extra}: tries again at the next tick"),
        RequestState::Error if code == Some(EX_TEMPFAIL) => format!("{code_text}: retry limit reached, error"),
        _ => format!("{code_text}{extra}: {}", to.as_str()),
    };
    let mut notes = Vec::new();
    note(&mut notes, !matches!(to, RequestState::Success), r, what);
    notes.remove(0)
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
    /// It ran too long and was killed.
    TimedOut,
    /// It could not be started.
    NotStarted(String),
    /// colony maintenance is being stopped.
    Interrupted,
}

/// What the enter hooks decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run the requests.
    Proceed,
    /// A hook said 69: postpone every due request and leave maintenance.
    Postpone,
    /// A hook said 75 or failed: stay in maintenance, run nothing, try
    /// again at the next tick.
    Retry,
}

/// Whether the enter hooks after this one still run: yes after 0, 69 and
/// 75; a hook that failed otherwise stops the sequence.
pub fn continue_after(outcome: &HookOutcome) -> bool {
    matches!(outcome, HookOutcome::Exited(0 | EX_POSTPONE | EX_TEMPFAIL))
}

/// The enter hooks' verdict: a 69 anywhere postpones (postpone beats
/// tempfail); otherwise a 75 or any failure retries at the next tick.
pub fn enter_verdict(outcomes: &[HookOutcome]) -> Verdict {
    if outcomes.contains(&HookOutcome::Exited(EX_POSTPONE)) {
        Verdict::Postpone
    } else if outcomes.iter().all(|o| *o == HookOutcome::Exited(0)) {
        Verdict::Proceed
    } else {
        Verdict::Retry
    }
}

/// Postpones every due request (enter hooks said 69).
pub fn postpone_due(now: Timestamp, requests: &mut [Request]) -> Vec<Note> {
    let mut notes = Vec::new();
    for r in requests.iter_mut().filter(|r| r.state == RequestState::Due) {
        set_state(r, RequestState::Postpone, now);
        note(&mut notes, true, r, "postponed by an enter hook");
    }
    notes
}

/// Progress of a restart activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartProgress {
    /// Every program has started since the messages were written.
    Done,
    /// Still waiting for these programs.
    Waiting(Vec<String>),
    /// Gave up waiting for these programs.
    TimedOut(Vec<String>),
}

/// Whether every program (with the time its running instance started, if
/// it runs) has started again since `sent_at`; gives up `timeout` after
/// `sent_at`. All times are real Unix seconds.
pub fn restart_progress(
    programs: &[(String, Option<f64>)],
    sent_at: f64,
    real_now: f64,
    timeout: SignedDuration,
) -> RestartProgress {
    let waiting: Vec<String> =
        programs.iter().filter(|(_, started)| started.is_none_or(|s| s < sent_at)).map(|(n, _)| n.clone()).collect();
    if waiting.is_empty() {
        RestartProgress::Done
    } else if real_now >= sent_at + timeout.as_secs_f64() {
        RestartProgress::TimedOut(waiting)
    } else {
        RestartProgress::Waiting(waiting)
    }
}

/// Progress of a reboot activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootProgress {
    /// The boot id changed: the machine rebooted.
    Done,
    /// Not yet.
    Waiting,
    /// It did not reboot within the timeout.
    TimedOut,
}

/// Whether the machine rebooted since the reboot command ran (its boot id
/// was `before`), or has taken longer than `timeout` since `started`.
pub fn reboot_progress(
    before: &str,
    now_boot: Option<&str>,
    started: Timestamp,
    now: Timestamp,
    timeout: SignedDuration,
) -> RebootProgress {
    match now_boot {
        Some(b) if b != before => RebootProgress::Done,
        _ if now >= started + timeout => RebootProgress::TimedOut,
        _ => RebootProgress::Waiting,
    }
}

/// When the job must tick next: after `interval` at the latest, at the
/// next slot of a pending request, when a due one becomes overdue, and
/// when a reboot wait times out.
pub fn next_wake(
    now: Timestamp,
    requests: &[Request],
    interval: SignedDuration,
    limits: &Limits,
    reboot_timeout: SignedDuration,
) -> Timestamp {
    let mut wake = now + interval;
    for r in requests {
        let t = match (r.state, r.next_due) {
            (RequestState::Pending, Some(d)) => Some(at(d)),
            (RequestState::Due, Some(d)) => Some(at(d) + limits.overdue + SignedDuration::from_secs(1)),
            (RequestState::Running, _) => r.attempts.last().map(|a| at(a.started) + reboot_timeout),
            _ => None,
        };
        if let Some(t) = t.filter(|t| *t > now) {
            wake = wake.min(t);
        }
    }
    wake
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
