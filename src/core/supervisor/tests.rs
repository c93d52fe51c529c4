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
        }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Spawn { name, .. } => {
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
                Effect::Scheduled { .. } | Effect::Forgotten { .. } | Effect::CriticalExit { .. } => {}
            }
        }
    }

    fn die(&mut self, pid: Pid) {
        if self.live.remove(&pid).is_some() {
            self.reaped.insert(pid);
            let mut out = Vec::new();
            self.sup.exited(pid, ExitStatus::Signaled(9), self.now, &mut out).expect("a pid the supervisor started");
            self.apply(out);
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let mut out = Vec::new();
        self.sup.tick(self.now, &mut out);
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

#[derive(Debug, Clone)]
enum Op {
    Configure(usize, Option<usize>),
    Restart(usize),
    Hold(usize),
    Release(usize),
    Signal(usize),
    RestartAll,
    Die(usize),
    Advance(u64),
    FailSpawns(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize, prop::option::of(0..4usize)).prop_map(|(n, s)| Op::Configure(n, s)),
        (0..4usize).prop_map(Op::Restart),
        (0..4usize).prop_map(Op::Hold),
        (0..4usize).prop_map(Op::Release),
        (0..4usize).prop_map(Op::Signal),
        Just(Op::RestartAll),
        (0..4usize).prop_map(Op::Die),
        (0..3000u64).prop_map(Op::Advance),
        any::<bool>().prop_map(Op::FailSpawns),
    ]
}

const SPECS: [&str; 4] = [
    r#"{"args": ["a"]}"#,
    r#"{"args": ["b"], "killtime": 0.5}"#,
    r#"{"args": ["c"], "stop_signal": "INT", "group": ["g"]}"#,
    r#"{"args": ["d"], "disabled": true}"#,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
            prop_assert!(steps <= 11, "shutdown did not complete within the kill time");
        }
        prop_assert!(w.live.is_empty());
        let spawns = w.spawns.len();
        w.advance(secs(100.0));
        prop_assert_eq!(w.spawns.len(), spawns, "nothing starts after shutdown");
    }
}
