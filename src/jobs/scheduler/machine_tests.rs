//! Tests of the scheduler's state machine: fake time, fake exits, the
//! same type as production.

use super::*;
use proptest::prelude::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn sec(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn every(n: i64) -> Rules {
    Rules { plan: Plan::Every { period: sec(n) }, timeout: None, grace: sec(3), once: false, remember: false }
}

fn cron(expr: &str, zone: &str, retry: Option<i64>, window: Option<i64>) -> Rules {
    let calendar = Box::new(CronCalendar::parse(expr, TimeZone::get(zone).unwrap()).unwrap());
    Rules {
        plan: Plan::Cron { calendar, retry: retry.map(sec), window: window.map(sec) },
        timeout: None,
        grace: sec(3),
        once: false,
        remember: true,
    }
}

fn start(now: Timestamp) -> Start {
    Start { now, state: None, stamp: None }
}

fn with_state(now: Timestamp, state: State) -> Start {
    Start { now, state: Some(state), stamp: None }
}

fn spawns(fx: &[Effect]) -> usize {
    fx.iter().filter(|e| **e == Effect::Spawn).count()
}

fn logs(fx: &[Effect]) -> String {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Log(_, m) => Some(m.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Drives a job like the shell does, with runs that take `run_for` and
/// end with `status`; records when runs started.
struct Sim {
    job: Job,
    now: Timestamp,
    next_pid: i32,
    /// (pid, when it ends, how).
    live: Option<(i32, Timestamp, ExitStatus)>,
    starts: Vec<Timestamp>,
    saved: Vec<State>,
    log: Vec<String>,
    exit: Option<i32>,
    run_for: SignedDuration,
    status: ExitStatus,
}

impl Sim {
    fn new(rules: Rules, s: Start) -> Sim {
        Sim::with(rules, s, sec(1), ExitStatus::Exited(0))
    }

    fn with(rules: Rules, s: Start, run_for: SignedDuration, status: ExitStatus) -> Sim {
        let now = s.now;
        let (job, fx) = Job::start(rules, s);
        let mut sim = Sim {
            job,
            now,
            next_pid: 100,
            live: None,
            starts: Vec::new(),
            saved: Vec::new(),
            log: Vec::new(),
            exit: None,
            run_for,
            status,
        };
        sim.apply(fx);
        sim
    }

    fn apply(&mut self, fx: Vec<Effect>) {
        for e in fx {
            match e {
                Effect::Spawn => {
                    assert!(self.live.is_none(), "spawn while a run is live");
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    self.starts.push(self.now);
                    self.live = Some((pid, calendar::add(self.now, self.run_for), self.status));
                    let more = self.job.spawned(self.now, Ok(pid));
                    self.apply(more);
                }
                Effect::Signal { pid, sig } => {
                    let (live, _, _) = self.live.expect("signal without a live run");
                    assert_eq!(pid, live, "signal to another pid");
                    if sig == Sig::Kill {
                        self.live = Some((pid, self.now, ExitStatus::Signaled(9)));
                    }
                }
                Effect::Save(s) => self.saved.push(s),
                Effect::Log(_, m) => self.log.push(m),
                Effect::TouchStamp(_) => {}
                Effect::Exit(c) => self.exit = Some(c),
            }
        }
    }

    /// Advances to the next event (a deadline or the live run's end) no
    /// later than `until`; false when there is none.
    fn step(&mut self, until: Timestamp) -> bool {
        let end = self.live.map(|(_, t, _)| t);
        let next = match (self.job.deadline(), end) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return false,
            },
        };
        if next > until {
            return false;
        }
        self.now = self.now.max(next);
        if let Some((pid, t, st)) = self.live {
            if t <= self.now {
                self.live = None;
                let fx = self.job.on_exit(self.now, pid, st);
                self.apply(fx);
            }
        }
        let fx = self.job.on_time(self.now, None);
        self.apply(fx);
        true
    }

    fn run_until(&mut self, until: Timestamp) {
        while self.exit.is_none() && self.step(until) {}
        self.now = self.now.max(until);
    }
}

#[test]
fn every_runs_at_start_then_on_the_grid() {
    let t0 = ts("2026-01-01T00:00:00Z");
    let mut sim = Sim::new(every(10), start(t0));
    sim.run_until(ts("2026-01-01T00:00:45Z"));
    let want: Vec<_> = (0..5).map(|k| calendar::add(t0, sec(10 * k))).collect();
    assert_eq!(sim.starts, want);
}

#[test]
fn every_skips_ticks_while_running_and_logs_them() {
    let t0 = ts("2026-01-01T00:00:00Z");
    let mut sim = Sim::with(every(10), start(t0), sec(25), ExitStatus::Exited(0));
    sim.run_until(ts("2026-01-01T00:00:59Z"));
    // Runs at 0 (until 25), skipped 10 and 20, runs at 30 (until 55),
    // skipped 40 and 50.
    assert_eq!(sim.starts, vec![t0, calendar::add(t0, sec(30))]);
    assert_eq!(sim.log.iter().filter(|l| l.contains("skipped: run")).count(), 4, "{:#?}", sim.log);
}

#[test]
fn timeout_terms_then_kills_after_grace() {
    let t0 = ts("2026-01-01T00:00:00Z");
    let mut rules = every(60);
    rules.timeout = Some(sec(5));
    rules.grace = sec(2);
    let (mut job, fx) = Job::start(rules, start(t0));
    assert_eq!(spawns(&fx), 1);
    job.spawned(t0, Ok(42));
    assert_eq!(job.deadline(), Some(calendar::add(t0, sec(5))));
    let fx = job.on_time(calendar::add(t0, sec(5)), None);
    assert!(fx.contains(&Effect::Signal { pid: 42, sig: Sig::Term }), "{fx:?}");
    assert_eq!(job.deadline(), Some(calendar::add(t0, sec(7))));
    let fx = job.on_time(calendar::add(t0, sec(7)), None);
    assert!(fx.contains(&Effect::Signal { pid: 42, sig: Sig::Kill }), "{fx:?}");
    // Nothing more to signal; the next tick is at 60 s.
    assert_eq!(job.deadline(), Some(calendar::add(t0, sec(60))));
    let fx = job.on_exit(calendar::add(t0, sec(7)), 42, ExitStatus::Signaled(9));
    assert!(logs(&fx).contains("run 1 ended: signal SIGKILL after 7 s"), "{fx:?}");
}

#[test]
fn stop_terms_kills_after_grace_and_exits_zero() {
    let t0 = ts("2026-01-01T00:00:00Z");
    let (mut job, _) = Job::start(every(60), start(t0));
    job.spawned(t0, Ok(7));
    let fx = job.on_stop(calendar::add(t0, sec(1)));
    assert!(fx.contains(&Effect::Signal { pid: 7, sig: Sig::Term }));
    assert_eq!(job.deadline(), Some(calendar::add(t0, sec(4))));
    let fx = job.on_time(calendar::add(t0, sec(4)), None);
    assert!(fx.contains(&Effect::Signal { pid: 7, sig: Sig::Kill }));
    assert_eq!(job.deadline(), None);
    let fx = job.on_exit(calendar::add(t0, sec(4)), 7, ExitStatus::Signaled(9));
    assert_eq!(fx.last(), Some(&Effect::Exit(0)));
    assert!(job.exited());
}

#[test]
fn second_stop_kills_at_once() {
    let t0 = ts("2026-01-01T00:00:00Z");
    let (mut job, _) = Job::start(every(60), start(t0));
    job.spawned(t0, Ok(7));
    job.on_stop(t0);
    let fx = job.on_stop(t0);
    assert!(fx.contains(&Effect::Signal { pid: 7, sig: Sig::Kill }));
}

#[test]
fn stop_while_idle_exits_at_once() {
    let t0 = ts("2026-01-01T00:00:00Z");
    let (mut job, _) = Job::start(every(60), start(t0));
    job.spawned(t0, Ok(7));
    job.on_exit(t0, 7, ExitStatus::Exited(0));
    assert_eq!(job.on_stop(t0).last(), Some(&Effect::Exit(0)));
}

#[test]
fn every_with_a_recent_success_waits() {
    let t0 = ts("2026-01-01T00:00:00Z");
    let state = State { last_success: Some(ts("2025-12-31T23:59:30Z")), ..State::default() };
    let mut rules = every(60);
    rules.remember = true;
    let (job, fx) = Job::start(rules.clone(), with_state(t0, state));
    assert_eq!(spawns(&fx), 0);
    assert_eq!(job.deadline(), Some(ts("2026-01-01T00:00:30Z")));
    let old = State { last_success: Some(ts("2025-12-31T23:58:00Z")), ..State::default() };
    let (mut job, fx) = Job::start(rules, with_state(t0, old));
    assert_eq!(spawns(&fx), 1);
    let fx = job.spawned(t0, Ok(3));
    assert!(
        logs(&fx).contains("run 1 started (last success at 2025-12-31T23:58:00Z, more than 60 s ago): pid 3"),
        "{fx:?}"
    );
}

#[test]
fn cron_without_state_waits_for_the_first_fire_time() {
    let t0 = ts("2026-05-01T14:00:00Z");
    let mut rules = cron("0 1 * * *", "UTC", None, None);
    rules.remember = false;
    let mut sim = Sim::new(rules, start(t0));
    assert!(sim.starts.is_empty());
    sim.run_until(ts("2026-05-04T00:00:00Z"));
    assert_eq!(sim.starts, vec![ts("2026-05-02T01:00:00Z"), ts("2026-05-03T01:00:00Z")]);
}

#[test]
fn cron_catches_up_once_after_downtime() {
    // Last success a week ago: seven fire times missed, one run.
    let t0 = ts("2026-05-08T14:00:00Z");
    let state = State { last_success: Some(ts("2026-05-01T01:02:00Z")), ..State::default() };
    let mut sim = Sim::new(cron("0 1 * * *", "UTC", None, None), with_state(t0, state));
    assert_eq!(sim.starts, vec![t0]);
    assert!(sim.log[0].contains("catch-up; missed fire time 2026-05-08T01:00:00Z"), "{:?}", sim.log);
    sim.run_until(ts("2026-05-09T12:00:00Z"));
    assert_eq!(sim.starts, vec![t0, ts("2026-05-09T01:00:00Z")]);
    let last = sim.saved.last().unwrap();
    assert_eq!(last.last_success, Some(ts("2026-05-09T01:00:01Z")));
    assert_eq!(last.last_result.as_deref(), Some("exit code 0"));
}

#[test]
fn cron_nothing_missed_means_no_catch_up() {
    // emptyhammock: performed at 01:02, not due at 01:15 the same day.
    let state = State { last_success: Some(ts("2026-05-01T01:02:00Z")), ..State::default() };
    let (job, fx) = Job::start(cron("0 1 * * *", "UTC", None, None), with_state(ts("2026-05-01T01:15:00Z"), state));
    assert_eq!(spawns(&fx), 0);
    assert_eq!(job.deadline(), Some(ts("2026-05-02T01:00:00Z")));
}

#[test]
fn cron_with_a_fresh_state_file_runs_at_once() {
    // emptyhammock: never performed means due.
    let now = ts("2026-05-01T14:00:00Z");
    let (mut job, fx) = Job::start(cron("0 1 * * *", "UTC", None, None), with_state(now, State::default()));
    assert_eq!(spawns(&fx), 1);
    let fx = job.spawned(now, Ok(3));
    assert!(logs(&fx).contains("never ran"), "{fx:?}");
}

#[test]
fn window_limits_when_an_owed_run_starts() {
    // emptyhammock's reboot task: 01:00, 30-minute window, never performed.
    let rules = cron("0 1 * * *", "UTC", Some(60), Some(1800));
    for (now, due) in [
        ("2026-05-01T14:00:00Z", false),
        ("2026-05-01T01:00:00Z", true), // inclusive at the fire time (a fixed quirk)
        ("2026-05-01T01:15:00Z", true),
        ("2026-05-01T01:30:00Z", true),
        ("2026-05-01T01:30:01Z", false),
    ] {
        let (_, fx) = Job::start(rules.clone(), with_state(ts(now), State::default()));
        assert_eq!(spawns(&fx), usize::from(due), "at {now}");
    }
    // Missed while down, outside the window: wait for the next fire time.
    let state = State { last_success: Some(ts("2026-04-30T01:05:00Z")), ..State::default() };
    let mut sim = Sim::new(rules, with_state(ts("2026-05-01T14:00:00Z"), state));
    sim.run_until(ts("2026-05-02T12:00:00Z"));
    assert_eq!(sim.starts, vec![ts("2026-05-02T01:00:00Z")]);
}

#[test]
fn a_failed_run_is_retried_at_every_tick_until_it_succeeds() {
    let t0 = ts("2026-05-01T00:59:00Z");
    let state = State { last_success: Some(ts("2026-04-30T01:00:05Z")), ..State::default() };
    let mut sim =
        Sim::with(cron("0 1 * * *", "UTC", Some(60), None), with_state(t0, state), sec(1), ExitStatus::Exited(1));
    sim.run_until(ts("2026-05-01T01:03:30Z"));
    // 01:00 fails, retried 01:01:01, 01:02:02, 01:03:03 (a tick 60 s
    // after each failed run ended).
    assert_eq!(
        sim.starts,
        vec![
            ts("2026-05-01T01:00:00Z"),
            ts("2026-05-01T01:01:01Z"),
            ts("2026-05-01T01:02:02Z"),
            ts("2026-05-01T01:03:03Z")
        ]
    );
    assert!(sim.log.iter().any(|l| l.contains("retry")), "{:#?}", sim.log);
    sim.status = ExitStatus::Exited(0);
    sim.run_until(ts("2026-05-01T12:00:00Z"));
    assert_eq!(sim.starts.len(), 5);
    assert_eq!(sim.starts[4], ts("2026-05-01T01:04:04Z"));
    assert_eq!(sim.saved.last().unwrap().last_success, Some(ts("2026-05-01T01:04:05Z")));
    // Failed runs do not move the last success.
    assert!(sim.saved[..4].iter().all(|s| s.last_success == Some(ts("2026-04-30T01:00:05Z"))));
}

#[test]
fn without_retry_a_failed_run_waits_for_the_next_fire_time() {
    let t0 = ts("2026-05-01T00:59:00Z");
    let state = State { last_success: Some(ts("2026-04-30T02:00:00Z")), ..State::default() };
    let mut sim = Sim::with(cron("0 1 * * *", "UTC", None, None), with_state(t0, state), sec(1), ExitStatus::Exited(1));
    sim.run_until(ts("2026-05-02T12:00:00Z"));
    assert_eq!(sim.starts, vec![ts("2026-05-01T01:00:00Z"), ts("2026-05-02T01:00:00Z")]);
}

#[test]
fn spread_fresh_stamp_runs_then_grid() {
    let t0 = ts("2026-01-01T00:02:03Z"); // 123 s past a 2 h grid line
    let rules = Rules { plan: Plan::Spread { slot: 7200 }, timeout: None, grace: sec(3), once: false, remember: false };
    let s = Start { now: t0, state: None, stamp: Some(Stamp { offset: 1800, mtime: spread::NEW_MTIME }) };
    let (job, fx) = Job::start(rules.clone(), s.clone());
    assert_eq!(fx[0], Effect::TouchStamp(calendar::add(t0, sec(-1800))));
    assert_eq!(spawns(&fx), 1);
    assert_eq!(job.deadline(), Some(ts("2026-01-01T00:30:00Z")));
    let got = upcoming(&rules, s, 4);
    assert_eq!(got, vec![t0, ts("2026-01-01T00:30:00Z"), ts("2026-01-01T02:30:00Z"), ts("2026-01-01T04:30:00Z")]);
}

#[test]
fn once_not_due_exits_zero_with_the_next_time() {
    let rules = Rules { once: true, ..cron("0 1 * * *", "UTC", None, None) };
    let state = State { last_success: Some(ts("2026-05-01T01:02:00Z")), ..State::default() };
    let (job, fx) = Job::start(rules, with_state(ts("2026-05-01T14:00:00Z"), state));
    assert_eq!(fx.last(), Some(&Effect::Exit(0)));
    assert!(logs(&fx).contains("not due; next at 2026-05-02T01:00:00Z"), "{fx:?}");
    assert!(job.exited());
}

#[test]
fn once_due_exits_with_the_run_code() {
    let rules = Rules { once: true, ..every(60) };
    let t0 = ts("2026-05-01T14:00:00Z");
    let (mut job, fx) = Job::start(rules.clone(), start(t0));
    assert_eq!(spawns(&fx), 1);
    assert_eq!(job.deadline(), None);
    job.spawned(t0, Ok(5));
    assert_eq!(job.on_exit(t0, 5, ExitStatus::Exited(3)).last(), Some(&Effect::Exit(3)));
    let (mut job, _) = Job::start(rules.clone(), start(t0));
    assert_eq!(job.spawned(t0, Err(SpawnFailure::NotFound("nope".into()))).last(), Some(&Effect::Exit(127)));
    let (mut job, _) = Job::start(rules, start(t0));
    job.spawned(t0, Ok(5));
    assert_eq!(job.on_exit(t0, 5, ExitStatus::Signaled(15)).last(), Some(&Effect::Exit(143)));
}

#[test]
fn once_without_state_counts_as_never_ran() {
    let rules = Rules { once: true, remember: false, ..cron("0 1 * * *", "UTC", None, Some(1800)) };
    let (_, fx) = Job::start(rules.clone(), start(ts("2026-05-01T01:10:00Z")));
    assert_eq!(spawns(&fx), 1);
    let (_, fx) = Job::start(rules, start(ts("2026-05-01T02:10:00Z")));
    assert_eq!(spawns(&fx), 0);
}

#[test]
fn upcoming_cron_in_berlin_across_the_spring_change() {
    let rules = Rules { remember: false, ..cron("30 2 * * *", "Europe/Berlin", None, None) };
    let got = upcoming(&rules, start(ts("2026-03-27T12:00:00Z")), 3);
    assert_eq!(got, vec![ts("2026-03-28T01:30:00Z"), ts("2026-03-29T01:00:00Z"), ts("2026-03-30T00:30:00Z")]);
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    assert_eq!(show(got[1], &tz), "2026-03-29T03:00:00+02:00");
    assert_eq!(show(ts("2026-03-29T01:00:00.25Z"), &TimeZone::UTC), "2026-03-29T01:00:00.25Z");
}

#[test]
fn exits_of_other_pids_are_ignored() {
    let t0 = ts("2026-01-01T00:00:00Z");
    let (mut job, _) = Job::start(every(60), start(t0));
    job.spawned(t0, Ok(7));
    assert!(job.on_exit(t0, 8, ExitStatus::Exited(0)).is_empty());
    assert_eq!(job.running(), Some(7));
}

/// A random event: advance to the next deadline, end the run after some
/// time, or a stop request.
#[derive(Debug, Clone)]
enum Event {
    Deadline,
    End(i64, i32),
    Stop,
    Wait(i64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => Just(Event::Deadline),
        3 => (0i64..5_000, 0i32..3).prop_map(|(ms, c)| Event::End(ms, c)),
        1 => Just(Event::Stop),
        2 => (0i64..20_000).prop_map(Event::Wait),
    ]
}

fn rules_strategy() -> impl Strategy<Value = Rules> {
    let timeout = proptest::option::of(1i64..10);
    let plan = prop_oneof![
        (1i64..30).prop_map(|n| Plan::Every { period: sec(n) }),
        (proptest::option::of(1i64..30), proptest::option::of(1i64..120)).prop_map(|(r, w)| Plan::Cron {
            calendar: Box::new(
                CronCalendar::parse("*/15 * * * * *", TimeZone::get("Europe/Berlin").unwrap()).unwrap(),
            ),
            retry: r.map(sec),
            window: w.map(sec),
        }),
        (1i64..30).prop_map(|slot| Plan::Spread { slot }),
    ];
    (plan, timeout, 0i64..5, any::<bool>()).prop_map(|(plan, timeout, grace, remember)| Rules {
        plan,
        timeout: timeout.map(sec),
        grace: sec(grace),
        once: false,
        remember,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever happens: never two runs at once, signals only to the live
    /// run, deadlines never in the past, and a stop always ends in exit 0
    /// once the run is gone.
    #[test]
    fn never_overlaps_and_always_stops(rules in rules_strategy(), events in proptest::collection::vec(event(), 1..80)) {
        let t0 = ts("2026-03-29T00:59:00Z");
        let stamp = Some(Stamp { offset: 0, mtime: spread::NEW_MTIME });
        let (mut job, fx) = Job::start(rules, Start { now: t0, state: None, stamp });
        let mut now = t0;
        let mut live: Option<i32> = None;
        let mut next_pid = 1;
        let mut exit = None;
        let mut pending = fx;
        let mut stopped = false;
        for ev in events {
            // Apply effects.
            while !pending.is_empty() {
                let mut more = Vec::new();
                for e in std::mem::take(&mut pending) {
                    match e {
                        Effect::Spawn => {
                            prop_assert!(live.is_none(), "overlap");
                            next_pid += 1;
                            live = Some(next_pid);
                            more.extend(job.spawned(now, Ok(next_pid)));
                        }
                        Effect::Signal { pid, .. } => prop_assert_eq!(Some(pid), live),
                        Effect::Exit(c) => { prop_assert!(exit.is_none()); exit = Some(c); }
                        _ => {}
                    }
                }
                pending = more;
            }
            if exit.is_some() {
                break;
            }
            if let Some(d) = job.deadline() {
                prop_assert!(d > now || live.is_some(), "deadline {d} not after {now}");
            }
            match ev {
                Event::Deadline => {
                    if let Some(d) = job.deadline() {
                        now = now.max(d);
                        pending = job.on_time(now, None);
                    }
                }
                Event::Wait(ms) => {
                    now = calendar::add(now, SignedDuration::from_millis(ms));
                    pending = job.on_time(now, None);
                }
                Event::End(ms, code) => {
                    if let Some(pid) = live.take() {
                        now = calendar::add(now, SignedDuration::from_millis(ms));
                        pending = job.on_exit(now, pid, ExitStatus::Exited(code));
                    }
                }
                Event::Stop => {
                    stopped = true;
                    pending = job.on_stop(now);
                }
            }
        }
        if exit.is_none() && stopped {
            // Let the run die (at the latest at the kill deadline).
            if let Some(pid) = live.take() {
                let fx = job.on_exit(now, pid, ExitStatus::Signaled(9));
                prop_assert_eq!(fx.last(), Some(&Effect::Exit(0)));
            } else {
                prop_assert!(job.exited());
            }
        }
        if let Some(c) = exit {
            prop_assert!(stopped && c == 0);
        }
    }

    /// The times `--next` prints strictly increase, for every plan.
    #[test]
    fn upcoming_strictly_increases(rules in rules_strategy(), offset in -3_600i64..3_600) {
        let t0 = calendar::add(ts("2026-10-25T00:30:00Z"), sec(offset));
        let stamp = Some(Stamp { offset: 0, mtime: spread::NEW_MTIME });
        let got = upcoming(&rules, Start { now: t0, state: None, stamp }, 30);
        prop_assert_eq!(got.len(), 30);
        prop_assert!(got[0] >= t0);
        for w in got.windows(2) {
            prop_assert!(w[1] > w[0]);
        }
    }
}
