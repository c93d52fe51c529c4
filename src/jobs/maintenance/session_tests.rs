//! Tests of a whole tick against a fake world: scripted hook and activity
//! outcomes, fake time, every effect recorded.

use super::*;
use crate::jobs::maintenance::machine::{at, unix};
use jiff::tz::TimeZone;
use std::collections::{BTreeMap, VecDeque};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[derive(Default)]
struct Fake {
    now: Option<Timestamp>,
    stop_after_runs: Option<usize>,
    stopping: bool,
    files: BTreeMap<String, Request>,
    archived: Vec<Request>,
    marker: Option<Timestamp>,
    enter: Vec<(String, HookOutcome)>,
    leave: Vec<(String, HookOutcome)>,
    /// Exit codes by comment, consumed in order (default 0).
    codes: BTreeMap<String, VecDeque<i32>>,
    /// How long each script takes.
    takes: SignedDuration,
    send: Option<(i32, String)>,
    restart: VecDeque<RestartProgress>,
    boot: String,
    reboot_code: i32,
    /// Effects in order: "enter:NAME", "script:COMMENT", "restart", "reboot", "leave:NAME".
    trace: Vec<String>,
    logs: Vec<String>,
}

impl World for Fake {
    fn now(&mut self) -> Timestamp {
        self.now.unwrap()
    }
    fn real_now(&mut self) -> f64 {
        unix(self.now.unwrap())
    }
    fn stopping(&self) -> bool {
        self.stopping
    }
    fn save(&mut self, r: &Request) {
        self.files.insert(r.id.clone(), r.clone());
    }
    fn archive(&mut self, r: &Request) {
        self.files.remove(&r.id);
        self.archived.push(r.clone());
    }
    fn marker(&mut self) -> bool {
        self.marker.is_some()
    }
    fn write_marker(&mut self, since: Timestamp) {
        self.trace.push("marker".into());
        self.marker = Some(since);
    }
    fn remove_marker(&mut self) {
        self.trace.push("unmark".into());
        self.marker = None;
    }
    fn hooks(&mut self, phase: Phase) -> Vec<String> {
        let list = if phase == Phase::Enter { &self.enter } else { &self.leave };
        list.iter().map(|(n, _)| n.clone()).collect()
    }
    fn run_hook(&mut self, phase: Phase, name: &str, _ids: &[String]) -> HookOutcome {
        self.trace.push(format!("{}:{name}", phase.as_str()));
        let list = if phase == Phase::Enter { &self.enter } else { &self.leave };
        list.iter().find(|(n, _)| n == name).unwrap().1.clone()
    }
    fn run_script(&mut self, r: &Request) -> ActivityEnd {
        self.trace.push(format!("script:{}", r.comment));
        self.now = Some(self.now.unwrap() + self.takes);
        let code = self.codes.get_mut(&r.comment).and_then(|q| q.pop_front()).unwrap_or(0);
        let runs = self.trace.iter().filter(|t| t.starts_with("script:")).count();
        if self.stop_after_runs == Some(runs) {
            self.stopping = true;
        }
        ActivityEnd { code: Some(code), output: format!("ran {}\n", r.comment), note: None }
    }
    fn send_restarts(&mut self, programs: &[String]) -> Result<(), (i32, String)> {
        self.trace.push(format!("restart:{}", programs.join(",")));
        self.send.clone().map_or(Ok(()), Err)
    }
    fn wait_restarted(&mut self, _p: &[String], _sent: f64, _t: SignedDuration) -> RestartProgress {
        let p = self.restart.pop_front().unwrap_or(RestartProgress::Done);
        // Only a stop interrupts the wait.
        self.stopping |= matches!(p, RestartProgress::Waiting(_));
        p
    }
    fn boot_id(&mut self) -> Option<String> {
        Some(self.boot.clone())
    }
    fn reboot(&mut self) -> ActivityEnd {
        self.trace.push("reboot".into());
        ActivityEnd { code: Some(self.reboot_code), output: String::new(), note: None }
    }
    fn log(&mut self, _warn: bool, msg: String) {
        self.logs.push(msg);
    }
}

fn fake(now: &str) -> Fake {
    Fake { now: Some(ts(now)), boot: "boot-1".into(), ..Fake::default() }
}

fn cfg(windows: &[&str]) -> Config {
    Config {
        windows: windows.iter().map(|w| Window::parse(w, TimeZone::UTC).unwrap()).collect(),
        limits: Limits::default(),
        restart_timeout: SignedDuration::from_mins(5),
        reboot_timeout: SignedDuration::from_mins(10),
    }
}

fn request(comment: &str, activity: Activity, est_mins: f64, due: Option<&str>) -> Request {
    let mut r = Request::new(activity, comment, est_mins * 60.0, unix(ts("2026-05-01T10:00:00Z")));
    r.next_due = due.map(|d| unix(ts(d)));
    r
}

fn script(comment: &str, est_mins: f64, due: Option<&str>) -> Request {
    request(comment, Activity::Script { script: "true".into() }, est_mins, due)
}

fn ok(name: &str) -> (String, HookOutcome) {
    (name.to_string(), HookOutcome::Exited(0))
}

fn hook(name: &str, code: i32) -> (String, HookOutcome) {
    (name.to_string(), HookOutcome::Exited(code))
}

fn state_of(w: &Fake, rs: &[Request], comment: &str) -> RequestState {
    rs.iter().chain(w.archived.iter()).find(|r| r.comment == comment).map(|r| r.state).unwrap()
}

const SLOT: &str = "2026-05-02T02:00:00Z";

#[test]
fn idle_tick_runs_the_leave_hooks_and_clears_the_marker() {
    let mut w = fake("2026-05-02T03:00:00Z");
    w.leave = vec![ok("10-a"), ok("20-b")];
    w.marker = Some(ts(SLOT));
    let mut rs = Vec::new();
    let r = tick(&mut w, &cfg(&[]), &mut rs, &[]);
    assert_eq!(r, Report { code: 0, in_maintenance: false });
    assert_eq!(w.trace, ["leave:10-a", "leave:20-b", "unmark"]);
}

#[test]
fn a_request_waits_for_its_window_then_runs_and_is_archived() {
    let c = cfg(&["0 2 * * * +2h"]);
    let mut w = fake("2026-05-01T12:00:00Z");
    w.enter = vec![ok("a")];
    w.leave = vec![ok("z")];
    let mut rs = vec![script("fix", 10.0, None)];
    tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(rs[0].state, RequestState::Pending);
    assert_eq!(rs[0].next_due.map(at), Some(ts(SLOT)));
    assert_eq!(w.files[&rs[0].id].next_due, rs[0].next_due, "saved");
    assert_eq!(w.trace, ["leave:z"]);
    w.trace.clear();
    w.now = Some(ts(SLOT));
    let r = tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(r, Report { code: 0, in_maintenance: false });
    assert_eq!(w.trace, ["marker", "enter:a", "script:fix", "leave:z", "unmark"]);
    assert!(rs.is_empty());
    let done = &w.archived[0];
    assert_eq!(done.state, RequestState::Success);
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(done.attempts[0].output, "ran fix\n");
}

#[test]
fn enter_hook_69_postpones_everything_and_leaves() {
    let c = cfg(&["0 2 * * * +2h"]);
    let mut w = fake(SLOT);
    w.enter = vec![hook("a", 75), hook("b", 69), ok("c")];
    w.leave = vec![ok("z")];
    let mut rs = vec![script("one", 10.0, Some(SLOT)), script("two", 10.0, Some("2026-05-02T02:10:00Z"))];
    let r = tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(r, Report { code: 69, in_maintenance: false });
    // All hooks ran (69 and 75 do not stop them), nothing else did.
    assert_eq!(w.trace, ["marker", "enter:a", "enter:b", "enter:c", "leave:z", "unmark"]);
    // Both moved back by twice their estimate, and rescheduled.
    assert!(rs.iter().all(|r| r.state == RequestState::Pending && r.attempts.is_empty()));
    assert!(rs.iter().all(|r| r.next_due.map(at).unwrap() >= ts("2026-05-02T02:20:00Z")), "{rs:?}");
}

#[test]
fn enter_hook_75_or_failure_stays_in_maintenance_and_retries_next_tick() {
    let c = cfg(&[]);
    for (hooks, trace) in [
        (vec![hook("a", 75), ok("b")], vec!["marker", "enter:a", "enter:b"]),
        (vec![hook("a", 1), hook("b", 69)], vec!["marker", "enter:a"]),
        (vec![("a".to_string(), HookOutcome::TimedOut), ok("b")], vec!["marker", "enter:a"]),
    ] {
        let mut w = fake(SLOT);
        w.enter = hooks;
        w.leave = vec![ok("z")];
        let mut rs = vec![script("one", 10.0, Some(SLOT))];
        let r = tick(&mut w, &c, &mut rs, &[]);
        assert_eq!(r, Report { code: 75, in_maintenance: true });
        assert_eq!(w.trace, trace, "no leave, nothing ran");
        assert_eq!(rs[0].state, RequestState::Due);
        // Next tick: the hooks agree, the request runs.
        w.enter = vec![ok("a")];
        w.trace.clear();
        w.now = Some(ts("2026-05-02T02:10:00Z"));
        let r = tick(&mut w, &c, &mut rs, &[]);
        assert_eq!(r, Report { code: 0, in_maintenance: false });
        assert_eq!(w.trace, ["enter:a", "script:one", "leave:z", "unmark"], "marker kept from the first tick");
    }
}

#[test]
fn back_to_back_requests_run_in_one_session() {
    let c = cfg(&["0 2 * * * +4h"]);
    let mut w = fake("2026-05-01T12:00:00Z");
    w.enter = vec![ok("a")];
    w.leave = vec![ok("z")];
    let mut rs = vec![script("one", 30.0, None), script("two", 30.0, None), script("three", 30.0, None)];
    for (i, r) in rs.iter_mut().enumerate() {
        r.added_at += i as f64;
    }
    tick(&mut w, &c, &mut rs, &[]);
    let slots: Vec<_> = rs.iter().map(|r| r.next_due.map(at).unwrap()).collect();
    assert_eq!(slots, [ts(SLOT), ts("2026-05-02T02:30:00Z"), ts("2026-05-02T03:00:00Z")]);
    // Each run takes 5 minutes: two is pulled forward (due: within
    // one's estimate + 60 s), three joins after two.
    w.takes = SignedDuration::from_mins(5);
    w.trace.clear();
    w.now = Some(ts(SLOT));
    tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(w.trace, ["marker", "enter:a", "script:one", "script:two", "script:three", "leave:z", "unmark"]);
    assert!(rs.is_empty());
}

#[test]
fn activity_75_retries_next_tick_and_69_postpones() {
    let c = cfg(&[]);
    let mut w = fake(SLOT);
    w.codes.insert("flaky".into(), VecDeque::from([75, 0]));
    w.codes.insert("busy".into(), VecDeque::from([69]));
    let mut rs =
        vec![script("flaky", 5.0, Some(SLOT)), script("busy", 5.0, Some(SLOT)), script("fine", 5.0, Some(SLOT))];
    let r = tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(r.code, 0);
    // Once each in the session, the 75 is not retried within it.
    assert_eq!(w.trace.iter().filter(|t| t.starts_with("script:")).count(), 3);
    assert_eq!(state_of(&w, &rs, "flaky"), RequestState::Due);
    assert_eq!(state_of(&w, &rs, "busy"), RequestState::Pending);
    assert_eq!(state_of(&w, &rs, "fine"), RequestState::Success);
    let busy = rs.iter().find(|r| r.comment == "busy").unwrap();
    assert_eq!(busy.next_due.map(at), Some(ts(SLOT) + SignedDuration::from_mins(10)));
    w.trace.clear();
    w.now = Some(ts("2026-05-02T02:05:00Z"));
    tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(w.trace, ["marker", "script:flaky", "unmark"]);
    assert_eq!(state_of(&w, &rs, "flaky"), RequestState::Success);
    assert_eq!(w.archived.iter().find(|r| r.comment == "flaky").unwrap().attempts.len(), 2);
}

#[test]
fn a_script_found_running_was_interrupted_and_fails() {
    let mut w = fake(SLOT);
    let mut r = script("half", 5.0, Some(SLOT));
    machine::begin_attempt(&mut r, ts(SLOT));
    let mut rs = vec![r];
    tick(&mut w, &cfg(&[]), &mut rs, &[]);
    assert!(rs.is_empty());
    assert_eq!(w.archived[0].state, RequestState::Error);
    assert!(w.archived[0].attempts[0].note.as_deref().unwrap().contains("interrupted"));
    assert!(!w.trace.iter().any(|t| t.starts_with("script:")));
}

fn restart(comment: &str) -> Request {
    request(comment, Activity::Restart { programs: vec!["web".into()], sent_at: None }, 1.0, Some(SLOT))
}

#[test]
fn restart_requests() {
    let c = cfg(&[]);
    // Started again: success.
    let mut w = fake(SLOT);
    let mut rs = vec![restart("r")];
    tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(w.archived[0].state, RequestState::Success);
    assert_eq!(w.trace, ["marker", "restart:web", "unmark"]);
    assert!(matches!(w.archived[0].activity, Activity::Restart { sent_at: Some(_), .. }));
    // Not started in time: error naming the program.
    let mut w = fake(SLOT);
    w.restart.push_back(RestartProgress::TimedOut(vec!["web".into()]));
    let mut rs = vec![restart("r")];
    tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(w.archived[0].state, RequestState::Error);
    assert!(w.archived[0].attempts[0].note.as_deref().unwrap().contains("not started again within 5m: web"));
    // Unknown program: the code of the failure.
    let mut w = fake(SLOT);
    w.send = Some((65, "no program named \"web\"".into()));
    let mut rs = vec![restart("r")];
    tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(w.archived[0].attempts[0].exit_code, Some(65));
    // Stopped while waiting: stays running, completes at the next start.
    let mut w = fake(SLOT);
    w.restart.push_back(RestartProgress::Waiting(vec!["web".into()]));
    let mut rs = vec![restart("r")];
    assert_eq!(tick(&mut w, &c, &mut rs, &[]), Report { code: 0, in_maintenance: true });
    assert_eq!(rs[0].state, RequestState::Running);
    assert_eq!(w.files[&rs[0].id].state, RequestState::Running);
    w.stopping = false;
    w.trace.clear();
    tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(w.archived[0].state, RequestState::Success);
    assert_eq!(w.trace, ["unmark"], "resumed without sending again");
}

#[test]
fn reboot_runs_last_and_completes_after_the_boot() {
    let c = cfg(&[]);
    let mut w = fake(SLOT);
    w.enter = vec![ok("a")];
    w.leave = vec![ok("z")];
    let mut rs =
        vec![request("boot", Activity::Reboot { boot_id: None }, 5.0, Some(SLOT)), script("later", 5.0, Some(SLOT))];
    rs[1].added_at += 1.0;
    let r = tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(r, Report { code: 0, in_maintenance: true });
    assert_eq!(w.trace, ["marker", "enter:a", "script:later", "reboot"], "no leave before the reboot");
    let boot = rs.iter().find(|r| r.comment == "boot").unwrap();
    assert_eq!(boot.state, RequestState::Running);
    assert_eq!(boot.activity, Activity::Reboot { boot_id: Some("boot-1".into()) });
    // Same boot: still waiting, nothing else happens.
    w.trace.clear();
    w.now = Some(ts("2026-05-02T02:01:00Z"));
    assert_eq!(tick(&mut w, &c, &mut rs, &[]), Report { code: 0, in_maintenance: true });
    assert!(w.trace.is_empty());
    // After the boot: success, then the idle tick leaves maintenance.
    w.boot = "boot-2".into();
    assert_eq!(tick(&mut w, &c, &mut rs, &[]), Report { code: 0, in_maintenance: false });
    assert_eq!(w.trace, ["leave:z", "unmark"]);
    assert_eq!(state_of(&w, &rs, "boot"), RequestState::Success);
}

#[test]
fn reboot_that_never_comes_or_fails() {
    let c = cfg(&[]);
    let mut w = fake(SLOT);
    let mut rs = vec![request("boot", Activity::Reboot { boot_id: None }, 5.0, Some(SLOT))];
    tick(&mut w, &c, &mut rs, &[]);
    w.now = Some(ts("2026-05-02T02:10:00Z"));
    tick(&mut w, &c, &mut rs, &[]);
    assert_eq!(w.archived[0].state, RequestState::Error);
    assert!(w.archived[0].attempts[0].note.as_deref().unwrap().contains("did not reboot within 10m"));
    let mut w = fake(SLOT);
    w.reboot_code = 1;
    w.leave = vec![ok("z")];
    let mut rs = vec![request("boot", Activity::Reboot { boot_id: None }, 5.0, Some(SLOT))];
    assert_eq!(tick(&mut w, &c, &mut rs, &[]), Report { code: 0, in_maintenance: false });
    assert_eq!(w.archived[0].state, RequestState::Error);
    assert_eq!(w.trace, ["marker", "reboot", "leave:z", "unmark"]);
}

#[test]
fn a_failing_leave_hook_keeps_the_marker_and_all_leave_hooks_run() {
    let mut w = fake(SLOT);
    w.leave = vec![hook("a", 1), ok("b")];
    let mut rs = vec![script("one", 5.0, Some(SLOT))];
    assert_eq!(tick(&mut w, &cfg(&[]), &mut rs, &[]), Report { code: 75, in_maintenance: true });
    assert_eq!(w.trace, ["marker", "script:one", "leave:a", "leave:b"]);
    assert!(w.marker.is_some());
    w.leave = vec![ok("a"), ok("b")];
    w.trace.clear();
    assert_eq!(tick(&mut w, &cfg(&[]), &mut rs, &[]), Report { code: 0, in_maintenance: false });
    assert_eq!(w.trace, ["leave:a", "leave:b", "unmark"]);
}

#[test]
fn deleted_requests_are_archived_without_running() {
    let mut w = fake(SLOT);
    let mut rs = vec![script("one", 5.0, Some(SLOT)), script("two", 5.0, Some(SLOT))];
    let id = rs[0].id.clone();
    tick(&mut w, &cfg(&[]), &mut rs, &[id]);
    assert_eq!(w.trace, ["marker", "script:two", "unmark"]);
    assert_eq!(state_of(&w, &rs, "one"), RequestState::Deleted);
}

#[test]
fn a_stop_ends_the_session_after_the_current_request() {
    let mut w = fake(SLOT);
    w.stop_after_runs = Some(1);
    w.leave = vec![ok("z")];
    let mut rs = vec![script("one", 5.0, Some(SLOT)), script("two", 5.0, Some(SLOT))];
    rs[1].added_at += 1.0;
    let r = tick(&mut w, &cfg(&[]), &mut rs, &[]);
    assert_eq!(r, Report { code: 0, in_maintenance: true });
    assert_eq!(w.trace, ["marker", "script:one"]);
    assert_eq!(state_of(&w, &rs, "two"), RequestState::Due);
}
