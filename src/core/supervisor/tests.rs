//! Unit and property tests of the supervisor's decisions, with fake time
//! and a fake process table.

use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

fn name(s: &str) -> ProgramName {
    ProgramName::new(s).unwrap()
}

fn spec(args: &str) -> ProgramSpec {
    ProgramSpec::parse(args.as_bytes()).unwrap()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A fake runtime: hands out pids, remembers which are alive, and checks
/// the invariants on every effect.
struct World {
    sup: Supervisor,
    t0: Instant,
    now: Instant,
    next_pid: Pid,
    live: HashMap<Pid, ProgramName>,
    reaped: HashSet<Pid>,
    spawns: Vec<(ProgramName, Instant)>,
    signals: Vec<(Pid, i32)>,
    fail_spawns: bool,
    probes: Vec<ProbeRequest>,
}

impl World {
    fn new() -> World {
        let policy = Policy { threshold: secs(1.0), min_delay: secs(1.0), max_delay: secs(8.0), killtime: secs(5.0) };
        let t0 = Instant::now();
        World {
            sup: Supervisor::new(policy),
            t0,
            now: t0,
            next_pid: 100,
            live: HashMap::new(),
            reaped: HashSet::new(),
            spawns: Vec::new(),
            signals: Vec::new(),
            fail_spawns: false,
            probes: Vec::new(),
        }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Spawn { name, .. } => {
                    // As the runtime: a start cancelled later in the pass is skipped.
                    if self.sup.state(name.as_str()) != Some(&State::Starting) {
                        continue;
                    }
                    assert!(!self.live.values().any(|n| *n == name), "spawned {name} while an instance is alive");
                    self.spawns.push((name.clone(), self.now));
                    let mut out = Vec::new();
                    if self.fail_spawns {
                        self.sup.spawned(&name, Err(127), self.now, &mut out);
                    } else {
                        self.next_pid += 1;
                        self.live.insert(self.next_pid, name.clone());
                        self.sup.spawned(&name, Ok(self.next_pid), self.now, &mut out);
                    }
                    self.apply(out);
                }
                Effect::Signal { pgid, signal, .. } => {
                    assert!(!self.reaped.contains(&pgid), "signal {signal} to reaped pid {pgid}");
                    assert!(self.live.contains_key(&pgid), "signal to unknown pid {pgid}");
                    self.signals.push((pgid, signal));
                    if signal == SIGKILL {
                        self.die(pgid);
                    }
                }
                Effect::KillLeftovers { pgid, .. } => assert!(self.reaped.contains(&pgid)),
                Effect::SignalProcess { pid, .. } => {
                    assert!(self.live.contains_key(&pid), "signal to unknown pid {pid}")
                }
                Effect::Scheduled { .. }
                | Effect::Forgotten { .. }
                | Effect::CriticalExit { .. }
                | Effect::Note { .. } => {}
            }
        }
    }

    fn die(&mut self, pid: Pid) {
        self.exit(pid, ExitStatus::Signaled(9));
    }

    fn exit(&mut self, pid: Pid, status: ExitStatus) {
        if self.live.remove(&pid).is_some() {
            self.reaped.insert(pid);
            let mut out = Vec::new();
            self.sup.exited(pid, status, self.now, &mut out).expect("a pid the supervisor started");
            self.apply(out);
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let mut out = Vec::new();
        self.sup.tick(self.now, &mut out);
        // Heartbeat files are never touched in this world.
        for name in self.sup.beats_due(self.now) {
            self.sup.heartbeat(&name, None, self.now, &mut out);
        }
        // Probes start (their results come later, or never).
        self.probes.extend(self.sup.probes_due(self.now));
        self.apply(out);
        if let Some(next) = self.sup.next_deadline() {
            assert!(next > self.now, "deadline {:?} in the past after tick", next - self.t0);
        }
    }

    fn run<F: FnOnce(&mut Supervisor, Instant, &mut Vec<Effect>)>(&mut self, f: F) {
        let mut out = Vec::new();
        f(&mut self.sup, self.now, &mut out);
        self.apply(out);
    }

    fn pid_of(&self, n: &str) -> Option<Pid> {
        self.live.iter().find(|(_, v)| v.as_str() == n).map(|(p, _)| *p)
    }
}

#[test]
fn add_starts_at_once_and_crash_loop_backs_off() {
    let mut w = World::new();
    let web = name("web");
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["x"]}"#)), now, out));
    assert_eq!(w.spawns.len(), 1);
    // Instant deaths: 1, 2, 4, 8, 8 seconds.
    let mut gaps = Vec::new();
    for _ in 0..5 {
        let pid = w.pid_of("web").unwrap();
        w.die(pid);
        let before = w.spawns.len();
        let died = w.now;
        while w.spawns.len() == before {
            w.advance(secs(0.25));
        }
        gaps.push((w.now - died).as_secs_f64());
    }
    assert_eq!(gaps, [1.0, 2.0, 4.0, 8.0, 8.0]);
    // A long life resets: restarted at once, then 1 s again.
    w.advance(secs(3.0));
    let pid = w.pid_of("web").unwrap();
    let before = w.spawns.len();
    w.die(pid);
    assert_eq!(w.spawns.len(), before + 1, "restarted in the same step");
}

#[test]
fn restart_stops_then_starts_after_reap() {
    let mut w = World::new();
    let web = name("web");
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["x"]}"#)), now, out));
    let pid = w.pid_of("web").unwrap();
    w.advance(secs(2.0));
    w.run(|s, now, out| s.restart(&web, now, out).unwrap());
    assert_eq!(w.signals, [(pid, SIGTERM)]);
    assert_eq!(w.spawns.len(), 1, "no new instance before the old one is reaped");
    w.advance(secs(5.0));
    assert_eq!(w.signals, [(pid, SIGTERM), (pid, SIGKILL)]);
    assert_eq!(w.spawns.len(), 2);
}

#[test]
fn config_change_uses_its_own_stop_signal_and_killtime() {
    let mut w = World::new();
    let web = name("web");
    w.run(|s, now, out| {
        s.configure(&web, Some(spec(r#"{"args": ["x"], "stop_signal": "INT", "killtime": 1}"#)), now, out)
    });
    let pid = w.pid_of("web").unwrap();
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["y"]}"#)), now, out));
    assert_eq!(w.signals, [(pid, 2)]);
    assert_eq!(w.sup.next_deadline(), Some(w.now + secs(1.0)));
}

#[test]
fn remove_while_waiting_cancels_the_restart() {
    let mut w = World::new();
    let web = name("web");
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["x"]}"#)), now, out));
    w.die(w.pid_of("web").unwrap());
    w.run(|s, now, out| s.configure(&web, None, now, out));
    assert!(w.sup.state("web").is_none());
    assert_eq!(w.sup.next_deadline(), None);
}

#[test]
fn failed_spawn_is_an_instant_death() {
    let mut w = World::new();
    w.fail_spawns = true;
    w.run(|s, now, out| s.configure(&name("bad"), Some(spec(r#"{"args": ["x"]}"#)), now, out));
    assert_eq!(w.sup.state("bad"), Some(&State::Waiting { at: w.now + secs(1.0) }));
}

#[test]
fn unknown_restart_is_reported() {
    let mut w = World::new();
    let mut out = Vec::new();
    assert_eq!(w.sup.restart(&name("nope"), w.now, &mut out), Err(Refused::Unknown(name("nope"))));
}

#[test]
fn restart_group_touches_members_only() {
    let mut w = World::new();
    w.run(|s, now, out| s.configure(&name("a"), Some(spec(r#"{"args": ["x"], "group": ["g"]}"#)), now, out));
    w.run(|s, now, out| s.configure(&name("b"), Some(spec(r#"{"args": ["x"]}"#)), now, out));
    let mut n = 0;
    w.run(|s, now, out| n = s.restart_group("g", now, out));
    assert_eq!(n, 1);
    assert_eq!(w.signals, [(w.pid_of("a").unwrap(), SIGTERM)]);
}

#[test]
fn stop_holds_until_start_or_restart() {
    let mut w = World::new();
    let web = name("web");
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["x"]}"#)), now, out));
    let pid = w.pid_of("web").unwrap();
    w.run(|s, now, out| s.hold(&web, now, out).unwrap());
    w.die(pid);
    assert_eq!(w.sup.state("web"), Some(&State::Halted));
    w.advance(secs(100.0));
    assert_eq!(w.spawns.len(), 1, "a held program is not restarted");
    // restart-all leaves it alone; a config change keeps it held.
    w.run(|s, now, out| s.restart_all(now, out));
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["y"]}"#)), now, out));
    assert_eq!(w.spawns.len(), 1);
    w.run(|s, now, out| s.release(&web, now, out).unwrap());
    assert_eq!(w.spawns.len(), 2);
    w.run(|s, now, out| s.hold(&web, now, out).unwrap());
    w.die(w.pid_of("web").unwrap());
    w.run(|s, now, out| s.restart(&web, now, out).unwrap());
    assert_eq!(w.spawns.len(), 3, "restart also starts a held program");
}

#[test]
fn disabled_programs_stay_configured_but_never_run() {
    let mut w = World::new();
    let web = name("web");
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["x"], "disabled": true}"#)), now, out));
    assert_eq!(w.sup.state("web"), Some(&State::Halted));
    let mut out = Vec::new();
    assert_eq!(w.sup.restart(&web, w.now, &mut out), Err(Refused::Disabled(web.clone())));
    assert_eq!(w.sup.release(&web, w.now, &mut out), Err(Refused::Disabled(web.clone())));
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["x"]}"#)), now, out));
    assert_eq!(w.spawns.len(), 1, "enabling starts it");
    let pid = w.pid_of("web").unwrap();
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["x"], "disabled": true}"#)), now, out));
    assert_eq!(w.signals, [(pid, SIGTERM)]);
    w.die(pid);
    assert_eq!(w.sup.state("web"), Some(&State::Halted));
}

#[test]
fn stop_in_the_same_pass_as_the_start_cancels_it() {
    let mut w = World::new();
    let web = name("web");
    let mut out = Vec::new();
    w.sup.configure(&web, Some(spec(r#"{"args": ["x"]}"#)), w.now, &mut out);
    w.sup.hold(&web, w.now, &mut out).unwrap();
    w.apply(out);
    assert_eq!(w.spawns.len(), 0, "the start was cancelled");
    assert_eq!(w.sup.state("web"), Some(&State::Halted));
    // And a held program that ends on its own stays stopped.
    w.run(|s, now, out| s.release(&web, now, out).unwrap());
    let pid = w.pid_of("web").unwrap();
    let mut out = Vec::new();
    w.sup.hold(&web, w.now, &mut out).unwrap();
    w.live.remove(&pid);
    w.sup.exited(pid, ExitStatus::Exited(1), w.now, &mut out);
    assert_eq!(w.sup.state("web"), Some(&State::Halted));
}

#[test]
fn signal_goes_to_the_main_process_only() {
    let mut w = World::new();
    let web = name("web");
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["x"]}"#)), now, out));
    let pid = w.pid_of("web").unwrap();
    let mut out = Vec::new();
    w.sup.signal(&web, 1, &mut out).unwrap();
    assert_eq!(out, [Effect::SignalProcess { name: web.clone(), pid, signal: 1 }]);
    w.run(|s, now, out| s.hold(&web, now, out).unwrap());
    w.die(pid);
    assert_eq!(w.sup.signal(&web, 1, &mut out), Err(Refused::NotRunning(web.clone())));
}

#[test]
fn a_critical_program_ending_stops_everything_with_its_code() {
    let mut w = World::new();
    w.run(|s, now, out| s.configure(&name("main"), Some(spec(r#"{"args": ["x"], "critical": true}"#)), now, out));
    w.run(|s, now, out| s.configure(&name("side"), Some(spec(r#"{"args": ["x"]}"#)), now, out));
    let (main, side) = (w.pid_of("main").unwrap(), w.pid_of("side").unwrap());
    let mut out = Vec::new();
    w.live.remove(&main);
    w.sup.exited(main, ExitStatus::Exited(3), w.now, &mut out);
    assert!(out.contains(&Effect::CriticalExit { name: name("main"), code: 3 }));
    assert!(out.contains(&Effect::Signal { name: name("side"), pgid: side, signal: SIGTERM }));
    assert_eq!(w.sup.exit_code(), Some(3));
    assert!(w.sup.shutting_down());
}

#[test]
fn a_critical_program_that_cannot_start_ends_colony_with_127() {
    let mut w = World::new();
    w.fail_spawns = true;
    w.run(|s, now, out| s.configure(&name("main"), Some(spec(r#"{"args": ["x"], "critical": true}"#)), now, out));
    assert_eq!(w.sup.exit_code(), Some(127));
    assert!(w.sup.is_done());
}

#[test]
fn restart_policies_and_no_restart_codes() {
    let mut w = World::new();
    w.run(|s, now, out| {
        s.configure(
            &name("job"),
            Some(spec(r#"{"args": ["x"], "restart": "on-failure", "no_restart_codes": [78]}"#)),
            now,
            out,
        )
    });
    let pid = w.pid_of("job").unwrap();
    w.exit(pid, ExitStatus::Exited(1));
    w.advance(secs(1.0));
    assert_eq!(w.spawns.len(), 2, "a failure is restarted");
    w.exit(w.pid_of("job").unwrap(), ExitStatus::Exited(0));
    assert_eq!(w.sup.state("job"), Some(&State::Halted), "a success is not");
    w.run(|s, now, out| s.restart(&name("job"), now, out).unwrap());
    w.exit(w.pid_of("job").unwrap(), ExitStatus::Exited(78));
    assert_eq!(w.sup.state("job"), Some(&State::Halted), "78 asks not to be restarted");
}

#[test]
fn gives_up_then_cools_down_or_restarts_by_hand() {
    let mut w = World::new();
    let job = name("job");
    w.run(|s, now, out| {
        s.configure(
            &job,
            Some(spec(r#"{"args": ["x"], "give_up": {"failures": 3, "within": 60, "cooldown": 30}}"#)),
            now,
            out,
        )
    });
    for _ in 0..3 {
        let pid = w.pid_of("job").unwrap();
        w.exit(pid, ExitStatus::Exited(1));
        while w.pid_of("job").is_none() && !matches!(w.sup.state("job"), Some(State::Failed { .. })) {
            w.advance(secs(0.5));
        }
    }
    let failed_at = w.now;
    assert_eq!(w.sup.state("job"), Some(&State::Failed { retry_at: Some(failed_at + secs(30.0)) }));
    let spawns = w.spawns.len();
    w.advance(secs(29.0));
    assert_eq!(w.spawns.len(), spawns);
    w.advance(secs(1.0));
    assert_eq!(w.spawns.len(), spawns + 1, "tried again after the cool-down");
    // Give up again, then a manual restart brings it back at once.
    for _ in 0..3 {
        let pid = w.pid_of("job").unwrap();
        w.exit(pid, ExitStatus::Exited(1));
        while w.pid_of("job").is_none() && !matches!(w.sup.state("job"), Some(State::Failed { .. })) {
            w.advance(secs(0.5));
        }
    }
    assert!(matches!(w.sup.state("job"), Some(State::Failed { .. })));
    w.run(|s, now, out| s.restart(&job, now, out).unwrap());
    assert!(matches!(w.sup.state("job"), Some(State::Running { .. })));
}

#[test]
fn after_waits_for_readiness_and_shutdown_goes_in_reverse() {
    let mut w = World::new();
    let (db, web) = (name("db"), name("web"));
    w.run(|s, now, out| s.configure(&web, Some(spec(r#"{"args": ["w"], "after": ["db"]}"#)), now, out));
    assert!(w.pid_of("web").is_none());
    assert_eq!(w.sup.view("web").unwrap().waiting_for, ["db"]);
    assert_eq!(w.sup.next_deadline(), None, "waiting for a program is not a timer");
    w.run(|s, now, out| s.configure(&db, Some(spec(r#"{"args": ["d"], "readiness": {"fd": 3}}"#)), now, out));
    let db_pid = w.pid_of("db").unwrap();
    assert!(w.pid_of("web").is_none(), "db runs but is not ready");
    w.run(|s, now, out| s.notified_ready(&db, db_pid, now, out));
    let web_pid = w.pid_of("web").expect("web starts once db is ready");
    w.run(|s, now, out| s.shutdown(now, out));
    assert_eq!(w.signals, [(web_pid, SIGTERM)], "web stops first");
    w.die(web_pid);
    assert_eq!(w.signals, [(web_pid, SIGTERM), (db_pid, SIGTERM)], "then db");
}

#[test]
fn cycles_and_unknown_names_block_only_the_programs_concerned() {
    let mut w = World::new();
    w.run(|s, now, out| s.configure(&name("a"), Some(spec(r#"{"args": ["x"], "after": ["b"]}"#)), now, out));
    w.run(|s, now, out| s.configure(&name("b"), Some(spec(r#"{"args": ["x"], "after": ["a"]}"#)), now, out));
    w.run(|s, now, out| s.configure(&name("c"), Some(spec(r#"{"args": ["x"], "after": ["zzz"]}"#)), now, out));
    w.run(|s, now, out| s.configure(&name("d"), Some(spec(r#"{"args": ["x"]}"#)), now, out));
    // Problems are derived once the whole directory has been read (a tick).
    w.advance(Duration::ZERO);
    assert!(w.sup.view("a").unwrap().blocked.unwrap().contains("cycle"));
    assert!(w.sup.view("c").unwrap().blocked.unwrap().contains("zzz"));
    assert!(w.pid_of("d").is_some());
    assert!(w.pid_of("a").is_none() && w.pid_of("b").is_none() && w.pid_of("c").is_none());
    // Fixing the cycle lets them start.
    w.run(|s, now, out| s.configure(&name("b"), Some(spec(r#"{"args": ["x"]}"#)), now, out));
    w.advance(Duration::ZERO);
    assert!(w.pid_of("a").is_some() && w.pid_of("b").is_some());
}

#[test]
fn a_stale_heartbeat_restarts_once_per_staleness() {
    let mut w = World::new();
    let hb = name("hb");
    w.run(|s, now, out| {
        s.configure(
            &hb,
            Some(spec(r#"{"args": ["x"], "ncolony.beatcheck": {"period": 2, "grace": 3, "status": "/x"}}"#)),
            now,
            out,
        )
    });
    // Never beats: restarted after period × grace = 6 s, then every 6 s (+ the stop).
    let mut starts = Vec::new();
    for _ in 0..40 {
        w.advance(secs(0.5));
        if let Some(pid) = w.pid_of("hb") {
            if w.signals.last().is_some_and(|(p, _)| *p == pid) {
                w.die(pid); // it honours SIGTERM
            }
        }
        starts = w.spawns.iter().map(|(_, t)| (*t - w.t0).as_secs_f64()).collect::<Vec<_>>();
    }
    assert_eq!(starts, [0.0, 6.0, 12.0, 18.0]);
    assert_eq!(w.sup.view("hb").unwrap().health, Some("lost"));
    // A beat clears it.
    let now = w.now;
    let mut out = Vec::new();
    w.sup.heartbeat(&hb, Some(now), now, &mut out);
    assert_eq!(w.sup.view("hb").unwrap().health, None);
}

#[test]
fn failing_liveness_restarts_and_results_of_old_instances_are_ignored() {
    let mut w = World::new();
    let web = name("web");
    w.run(|s, now, out| {
        s.configure(
            &web,
            Some(spec(r#"{"args": ["x"], "liveness": {"tcp": "127.0.0.1:1", "period": 1, "failure_threshold": 2}}"#)),
            now,
            out,
        )
    });
    let pid = w.pid_of("web").unwrap();
    let due = w.sup.probes_due(w.now);
    assert_eq!(due.len(), 1);
    assert!(w.sup.probes_due(w.now).is_empty(), "one try at a time");
    w.run(|s, now, out| s.probe_result(&web, pid, CheckKind::Liveness, false, now, out));
    w.advance(secs(1.0));
    assert_eq!(std::mem::take(&mut w.probes).len(), 1);
    w.run(|s, now, out| s.probe_result(&web, pid + 1000, CheckKind::Liveness, false, now, out));
    assert!(w.signals.is_empty(), "a result for another pid is ignored");
    w.run(|s, now, out| s.probe_result(&web, pid, CheckKind::Liveness, false, now, out));
    assert_eq!(w.signals, [(pid, SIGTERM)]);
}

#[derive(Debug, Clone)]
enum Op {
    Configure(usize, Option<usize>),
    Restart(usize),
    Hold(usize),
    Release(usize),
    Signal(usize),
    RestartAll,
    Die(usize),
    ExitOk(usize),
    Ready(usize),
    Advance(u64),
    FailSpawns(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize, prop::option::of(0..8usize)).prop_map(|(n, s)| Op::Configure(n, s)),
        (0..4usize).prop_map(Op::Restart),
        (0..4usize).prop_map(Op::Hold),
        (0..4usize).prop_map(Op::Release),
        (0..4usize).prop_map(Op::Signal),
        Just(Op::RestartAll),
        (0..4usize).prop_map(Op::Die),
        (0..4usize).prop_map(Op::ExitOk),
        (0..4usize).prop_map(Op::Ready),
        (0..3000u64).prop_map(Op::Advance),
        any::<bool>().prop_map(Op::FailSpawns),
    ]
}

const SPECS: [&str; 8] = [
    r#"{"args": ["a"]}"#,
    r#"{"args": ["b"], "killtime": 0.5}"#,
    r#"{"args": ["c"], "stop_signal": "INT", "group": ["g"]}"#,
    r#"{"args": ["d"], "disabled": true}"#,
    r#"{"args": ["e"], "after": ["p1"], "readiness": {"fd": 3}}"#,
    r#"{"args": ["f"], "after": ["p2", "p0"], "restart": "on-failure", "give_up": {"failures": 2, "within": 5, "cooldown": 3}}"#,
    r#"{"args": ["g"], "after": ["nope"]}"#,
    r#"{"args": ["h"], "restart": "never", "ncolony.beatcheck": {"period": 1, "grace": 2, "status": "/x"}}"#,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// At most one live pid per program, no spawn before reap, no signal to
    /// a reaped pid, deadlines never in the past, and shutdown always ends.
    #[test]
    fn invariants_hold(ops in prop::collection::vec(op(), 0..60), graceful in any::<bool>()) {
        let mut w = World::new();
        let names: Vec<_> = (0..4).map(|i| name(&format!("p{i}"))).collect();
        for op in ops {
            match op {
                Op::Configure(n, s) => {
                    let sp = s.map(|i| spec(SPECS[i]));
                    w.run(|sup, now, out| sup.configure(&names[n], sp, now, out));
                }
                Op::Restart(n) => w.run(|sup, now, out| { let _ = sup.restart(&names[n], now, out); }),
                Op::Hold(n) => w.run(|sup, now, out| { let _ = sup.hold(&names[n], now, out); }),
                Op::Release(n) => w.run(|sup, now, out| { let _ = sup.release(&names[n], now, out); }),
                Op::Signal(n) => w.run(|sup, _, out| { let _ = sup.signal(&names[n], 1, out); }),
                Op::RestartAll => w.run(|sup, now, out| sup.restart_all(now, out)),
                Op::Die(n) => if let Some(pid) = w.pid_of(names[n].as_str()) { w.die(pid) },
                Op::ExitOk(n) => if let Some(pid) = w.pid_of(names[n].as_str()) { w.exit(pid, ExitStatus::Exited(0)) },
                Op::Ready(n) => if let Some(pid) = w.pid_of(names[n].as_str()) {
                    w.run(|sup, now, out| sup.notified_ready(&names[n], pid, now, out));
                },
                Op::Advance(ms) => w.advance(Duration::from_millis(ms)),
                Op::FailSpawns(f) => w.fail_spawns = f,
            }
            // Every live pid belongs to a program in a state that holds it.
            for (pid, n) in &w.live {
                let st = w.sup.state(n.as_str()).cloned();
                let ok = matches!(st, Some(State::Running { pid: p, .. }) | Some(State::Stopping { pid: p, .. }) if p == *pid);
                prop_assert!(ok, "{n} pid {pid} is live but state is {st:?}");
            }
        }
        w.run(|sup, now, out| sup.shutdown(now, out));
        // Programs that honour TERM die at once when graceful.
        if graceful {
            let term: Vec<Pid> = w.live.keys().copied().collect();
            for pid in term { w.die(pid); }
        }
        let mut steps = 0;
        while !w.sup.is_done() {
            w.advance(secs(0.5));
            steps += 1;
            // Reverse order: each level of `after` may take a kill time.
            prop_assert!(steps <= 60, "shutdown did not complete");
        }
        prop_assert!(w.live.is_empty());
        let spawns = w.spawns.len();
        w.advance(secs(100.0));
        prop_assert_eq!(w.spawns.len(), spawns, "nothing starts after shutdown");
    }
}
