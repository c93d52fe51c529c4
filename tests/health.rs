//! Integration tests of health (issue 5, "Done when"): heartbeats
//! (`ncolony.beatcheck` and SLAMon-style `heartbeat`), liveness checks
//! (HTTP against a server the test controls, TCP, command), readiness (fd
//! and probe), start order (`after`) and reverse shutdown, and the failure
//! policy (`restart`, `success_codes`, `no_restart_codes`, `give_up`,
//! `critical`). The real binary, sub-second periods, and every wait a
//! handshake on something observable (a status file, a log line, a file a
//! child writes); see `common/mod.rs` for the guard that cleans up.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Deadline of the waits that span several health periods.
const LONG: Duration = Duration::from_secs(10);

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A config running `/bin/sh -c script` with `env`, plus the keys of `extra`.
fn sh_with(script: &str, env: &[(&str, &Path)], extra: Value) -> String {
    let env: serde_json::Map<String, Value> =
        env.iter().map(|(k, v)| (k.to_string(), Value::String(path_str(v).to_string()))).collect();
    let mut v = json!({ "args": ["/bin/sh", "-c", script], "env": env });
    for (k, val) in extra.as_object().expect("extra keys as an object") {
        v[k] = val.clone();
    }
    v.to_string()
}

/// `/bin/sleep 1000` plus the keys of `extra`.
fn sleeper(extra: Value) -> String {
    let mut v = json!({ "args": ["/bin/sleep", "1000"] });
    for (k, val) in extra.as_object().expect("extra keys as an object") {
        v[k] = val.clone();
    }
    v.to_string()
}

/// The lines of a file a child appends to (none if it does not exist yet).
fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// The Unix times a child appended to `path` with `date +%s.%N`.
fn times(path: &Path) -> Vec<f64> {
    lines(path).iter().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The default status directory: MESSAGES/.status.
fn status_dir(c: &Colony) -> PathBuf {
    c.messages.join(".status")
}

/// The status file of `name`, parsed.
fn status_of(c: &Colony, name: &str) -> Option<Value> {
    serde_json::from_slice(&fs::read(status_dir(c).join(name)).ok()?).ok()
}

/// Waits until the status of `name` satisfies `pred`; returns it.
fn wait_status(c: &Colony, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    c.wait_within(LONG, &format!("status of {name}: {what}"), || status_of(c, name).filter(|s| pred(s)))
}

/// How many log lines end with `suffix` (a note like "NAME: ready" is
/// the end of its line; "NAME: readiness ..." must not count).
fn count_log_end(c: &Colony, suffix: &str) -> usize {
    c.log().iter().filter(|l| l.ends_with(suffix)).count()
}

/// The index of the first log line containing `pattern`.
fn log_pos(c: &Colony, pattern: &str) -> Option<usize> {
    c.log().iter().position(|l| l.contains(pattern))
}

/// The times (seconds, from colony's own log timestamps, which
/// `--log-timestamps always` guarantees) of the log lines containing
/// `pattern`: colony's clock, without a child's start-up latency.
fn log_times(c: &Colony, pattern: &str) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for line in c.log_lines(pattern) {
        // 2026-12-01T23:36:52.724Z LEVEL ...
        let clock = line.get(11..23).unwrap_or_else(|| panic!("no timestamp in {line:?}"));
        let parts: Vec<f64> = clock.split(':').map(|p| p.parse().expect("timestamp")).collect();
        let mut t = parts[0] * 3600.0 + parts[1] * 60.0 + parts[2];
        while out.last().is_some_and(|&last| t < last) {
            t += 86400.0; // past midnight
        }
        out.push(t);
    }
    out
}

/// The appends a shell makes to record its start time.
const STAMP: &str = r#"echo "$(/bin/date +%s.%N)" >> "$STARTS""#;

// ---------------------------------------------------------------------------
// A small HTTP server the test controls
// ---------------------------------------------------------------------------

/// How the server answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Mode {
    /// 200 OK.
    Ok = 0,
    /// 503 Service Unavailable.
    Error = 1,
    /// Accepts and never answers (the check times out).
    Hang = 2,
}

/// An HTTP (and TCP) server on 127.0.0.1 that counts the connections it
/// accepts; it can answer 200, 503 or nothing, and can be closed and
/// opened again on the same port.
struct Server {
    port: u16,
    mode: Arc<AtomicU8>,
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on an ephemeral port, answering 200.
    fn start() -> Server {
        let mut s = Server {
            port: 0,
            mode: Arc::new(AtomicU8::new(Mode::Ok as u8)),
            hits: Arc::new(AtomicUsize::new(0)),
            requests: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        s.open();
        s
    }

    /// Listens (again) on its port.
    fn open(&mut self) {
        assert!(self.thread.is_none(), "already listening");
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind 127.0.0.1");
        self.port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        self.stop.store(false, Ordering::SeqCst);
        let (mode, hits, requests, stop) =
            (self.mode.clone(), self.hits.clone(), self.requests.clone(), self.stop.clone());
        self.thread = Some(std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let m = mode.load(Ordering::SeqCst);
                        if m == Mode::Hang as u8 {
                            held.push(conn);
                            continue;
                        }
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        if head.is_empty() {
                            continue; // a TCP check: connect and close
                        }
                        let first = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
                        requests.lock().unwrap().push(first);
                        let status = if m == Mode::Ok as u8 { "200 OK" } else { "503 Service Unavailable" };
                        let _ = conn.write_all(
                            format!("HTTP/1.0 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                        );
                    }
                    Err(_) => {
                        if mode.load(Ordering::SeqCst) != Mode::Hang as u8 {
                            held.clear();
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
        }));
    }

    /// Stops listening: connections are refused.
    fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits until `n` more connections than `from` were accepted.
    fn wait_hits(&self, c: &Colony, from: usize, n: usize) {
        c.wait_within(LONG, &format!("{n} more checks against the server"), || (self.hits() >= from + n).then_some(()));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}

// ---------------------------------------------------------------------------
// ncolony.beatcheck
// ---------------------------------------------------------------------------

#[test]
fn beatcheck_restarts_a_silent_program_once_per_period_times_grace_and_never_a_beating_one() {
    let c = Colony::start(&["--log-timestamps", "always"]);
    let root = &c.root;
    // period 0.2 × grace 2: stale 0.4 s after each start.
    let (period, grace) = (0.2, 2.0);
    let window = period * grace;
    let silent_file = root.join("silent.beat");
    let env_out = root.join("silent.env");
    c.add(
        "silent",
        &sh_with(
            r#"echo "$COLONY_HEARTBEAT_FILE" >> "$ENVOUT"; exec /bin/sleep 1000"#,
            &[("ENVOUT", &env_out)],
            json!({"ncolony.beatcheck": {"period": period, "grace": grace, "status": path_str(&silent_file)}}),
        ),
    );
    // A program touching its file every 0.05 s, far more often than its
    // period of 0.5 s.
    let steady_file = root.join("steady.beat");
    let (beats, steady_env) = (root.join("steady.beats"), root.join("steady.env"));
    c.add(
        "steady",
        &sh_with(
            r#"echo "$COLONY_HEARTBEAT_FILE" >> "$ENVOUT"
while :; do echo beat > "$COLONY_HEARTBEAT_FILE"; echo beat >> "$BEATS"; /bin/sleep 0.05; done"#,
            &[("BEATS", &beats), ("ENVOUT", &steady_env)],
            json!({"ncolony.beatcheck": {"period": 0.5, "grace": 1, "status": path_str(&steady_file)}}),
        ),
    );
    let steady_pid = c.wait_running("steady");

    c.wait_within(LONG, "six starts of the silent program", || {
        (c.count_log("silent: started, pid") >= 6).then_some(())
    });
    let all = log_times(&c, "silent: started, pid");
    let context = || format!("starts: {all:?}\n{}", c.log_text());
    let env = lines(&env_out);
    assert!(!env.is_empty() && env.iter().all(|l| l == path_str(&silent_file)), "COLONY_HEARTBEAT_FILE: {env:?}");
    // Restarted after period × grace, and then not more often: every gap
    // at least that (minus some jitter of the loop under load), none much
    // longer (a restart is immediate, without a restart delay).
    for (i, w) in all.windows(2).enumerate() {
        let gap = w[1] - w[0];
        assert!(
            gap >= window - 0.05 && gap <= window + 0.5,
            "gap {i} between starts is {gap:.3} s, want about {window} s\n{}",
            context()
        );
    }
    // Counted over windows: never more starts in 1 s than 1 / 0.4 allows.
    let span = 1.0;
    let most = (span / (window - 0.05)).floor() as usize + 1;
    for (i, &t) in all.iter().enumerate() {
        let n = all[i..].iter().take_while(|&&u| u < t + span).count();
        assert!(n <= most, "{n} starts within {span} s from start {i} (at most {most})\n{}", context());
    }
    c.wait_log_n("silent: heartbeat is stale (no heartbeat yet): restarting it", 5);
    // (The status file may lag behind the child's own record.)
    wait_status(&c, "silent", "health lost, sixth instance", |s| {
        s["health"] == "lost" && s["instance"].as_u64() >= Some(6)
    });

    // The beating program kept its single instance all along; a few more
    // beats (well past its period × grace) show that it still does.
    let seen = lines(&beats).len();
    c.wait_within(LONG, "ten more beats", || (lines(&beats).len() >= seen + 10).then_some(()));
    assert_eq!(c.pid_of("steady"), Some(steady_pid), "{}", c.log_text());
    assert!(alive(steady_pid));
    assert_eq!(lines(&steady_env), [path_str(&steady_file)]);
    assert_eq!(c.count_log("steady: heartbeat"), 0, "{}", c.log_text());
    c.wait_log("steady: started");
    assert_eq!(c.count_log("steady: started"), 1, "{}", c.log_text());
    let st = status_of(&c, "steady").unwrap();
    assert_eq!((st["instance"].as_u64(), &st["health"]), (Some(1), &Value::Null), "{st}");
}

#[test]
fn beatcheck_status_directory_holds_one_file_per_program_and_a_missing_one_is_stale() {
    let c = Colony::start(&[]);
    let dir = c.root.join("beats");
    fs::create_dir(&dir).unwrap();
    let spec = |script: &str, env: &[(&str, &Path)], period: f64| {
        sh_with(script, env, json!({"ncolony.beatcheck": {"period": period, "grace": 1, "status": path_str(&dir)}}))
    };
    // "alive" beats in DIR/alive; "quiet" never writes DIR/quiet.
    let (beats, env_out) = (c.root.join("alive.beats"), c.root.join("alive.env"));
    c.add(
        "alive",
        &spec(
            r#"echo "$COLONY_HEARTBEAT_FILE" >> "$ENVOUT"
while :; do echo beat > "$COLONY_HEARTBEAT_FILE"; echo beat >> "$BEATS"; /bin/sleep 0.05; done"#,
            &[("BEATS", &beats), ("ENVOUT", &env_out)],
            0.5,
        ),
    );
    let quiet_env = c.root.join("quiet.env");
    c.add(
        "quiet",
        &spec(r#"echo "$COLONY_HEARTBEAT_FILE" >> "$ENVOUT"; exec /bin/sleep 1000"#, &[("ENVOUT", &quiet_env)], 0.25),
    );
    let alive_pid = c.wait_running("alive");
    let first_quiet = c.wait_running("quiet");

    // The missing file is stale: restarted, again and again, and nothing
    // else suffers.
    c.wait_within(LONG, "three restarts of quiet", || {
        (c.count_log("quiet: heartbeat is stale (no heartbeat yet): restarting it") >= 3).then_some(())
    });
    let now_quiet = c.wait_running("quiet");
    assert_ne!(now_quiet, first_quiet);
    wait_status(&c, "quiet", "health lost", |s| s["health"] == "lost");
    assert!(alive(c.pid()), "colony is still running\n{}", c.log_text());
    assert!(!dir.join("quiet").exists());
    let env = lines(&quiet_env);
    assert!(!env.is_empty() && env.iter().all(|l| l == path_str(&dir.join("quiet"))), "{env:?}");

    let seen = lines(&beats).len();
    c.wait_within(LONG, "ten more beats", || (lines(&beats).len() >= seen + 10).then_some(()));
    assert_eq!(lines(&env_out), [path_str(&dir.join("alive"))], "COLONY_HEARTBEAT_FILE is DIR/NAME");
    assert!(dir.join("alive").is_file());
    assert_eq!(c.pid_of("alive"), Some(alive_pid), "{}", c.log_text());
    assert_eq!(c.count_log("alive: heartbeat"), 0, "{}", c.log_text());
    let st = status_of(&c, "alive").unwrap();
    assert_eq!((st["instance"].as_u64(), &st["health"], &st["state"]), (Some(1), &Value::Null, &json!("running")));
}

// ---------------------------------------------------------------------------
// heartbeat (SLAMon): lost, dropped, back
// ---------------------------------------------------------------------------

#[test]
fn heartbeat_lost_restarts_dropped_stops_restarting_and_a_beat_brings_it_back() {
    let c = Colony::start(&["--log-timestamps", "always"]);
    let root = c.root.clone();
    // "agent" never beats: lost (restarted) every 0.3 s, dropped once 1.2 s
    // have passed since colony first saw it; then it ticks on, unrestarted.
    let (ticks, env_out) = (root.join("agent.ticks"), root.join("agent.env"));
    c.add(
        "agent",
        &sh_with(
            r#"echo "$COLONY_HEARTBEAT_FILE" >> "$ENVOUT"
while :; do echo "$$" >> "$TICKS"; /bin/sleep 0.05; done"#,
            &[("TICKS", &ticks), ("ENVOUT", &env_out)],
            json!({"heartbeat": {"poll": 0.05, "lost_after": 0.3, "drop_after": 1.2}}),
        ),
    );
    // "comeback" beats in its own file only while FLAG exists.
    let (flag, beats, cb_file) = (root.join("flag"), root.join("comeback.beats"), root.join("comeback.beat"));
    c.add(
        "comeback",
        &sh_with(
            r#"while :; do if [ -e "$FLAG" ]; then echo b > "$COLONY_HEARTBEAT_FILE"; echo b >> "$BEATS"; fi; /bin/sleep 0.05; done"#,
            &[("FLAG", &flag), ("BEATS", &beats)],
            json!({"heartbeat": {"file": path_str(&cb_file), "poll": 0.05, "lost_after": 0.3, "drop_after": 100}}),
        ),
    );
    c.add("heartbeat", &sleeper(json!({})));
    // "steady" beats in the default file, far more often than lost_after.
    let steady_beats = root.join("steady.beats");
    c.add(
        "steady",
        &sh_with(
            r#"while :; do echo b > "$COLONY_HEARTBEAT_FILE"; echo b >> "$BEATS"; /bin/sleep 0.05; done"#,
            &[("BEATS", &steady_beats)],
            json!({"heartbeat": {"poll": 0.05, "lost_after": 0.5, "drop_after": 1}}),
        ),
    );

    wait_status(&c, "agent", "health lost", |s| s["health"] == "lost" && s["instance"].as_u64() >= Some(2));
    c.wait_log("agent: heartbeat is stale (no heartbeat yet): restarting it");
    let st = wait_status(&c, "agent", "health dropped", |s| s["health"] == "dropped");
    c.wait_log("agent: no heartbeat for the drop threshold: dropped, no longer restarted for it");
    // Every start before the verdict is in the log by now.
    let all = log_times(&c, "agent: started, pid");
    let context = || format!("starts: {all:?}\n{}", c.log_text());
    assert!((2..=6).contains(&all.len()), "lost about every 0.3 s until dropped at 1.2 s\n{}", context());
    for w in all.windows(2) {
        assert!(w[1] - w[0] >= 0.3 - 0.05, "no verdict within lost_after of a start\n{}", context());
    }
    assert_eq!(st["state"], "running", "a dropped program is left running: {st}");
    let pid = st["pid"].as_i64().unwrap() as i32;
    // Ten ticks (0.5 s, well past lost_after) of the same instance: no
    // more restarts once dropped.
    let mine = |t: &Path| lines(t).iter().filter(|l| l.trim() == pid.to_string()).count();
    let seen = mine(&ticks);
    c.wait_within(LONG, "ten more ticks of the dropped agent", || (mine(&ticks) >= seen + 10).then_some(()));
    assert_eq!(c.count_log("agent: started, pid"), all.len(), "{}", context());
    assert_eq!(c.pid_of("agent"), Some(pid));
    let st = status_of(&c, "agent").unwrap();
    assert_eq!((&st["health"], &st["instance"]), (&json!("dropped"), &json!(all.len())), "{st}");
    // The default heartbeat file: the program's own, inside the status
    // directory, where it clashes with no program's status file (a
    // program may be named "heartbeat").
    let status = status_dir(&c).canonicalize().unwrap();
    let default_file = PathBuf::from(&lines(&env_out)[0]);
    assert!(
        default_file.starts_with(&status) && default_file.file_name().unwrap() == "agent",
        "COLONY_HEARTBEAT_FILE is {}",
        default_file.display()
    );

    // comeback: lost, then beating again makes it healthy, and it stays so.
    wait_status(&c, "comeback", "health lost", |s| s["health"] == "lost");
    fs::write(&flag, "").unwrap();
    c.wait_log("comeback: heartbeat is back");
    let st = wait_status(&c, "comeback", "healthy again", |s| s["health"].is_null());
    let pid = st["pid"].as_i64().unwrap() as i32;
    let restarts = c.count_log("comeback: heartbeat is stale");
    let seen = lines(&beats).len();
    c.wait_within(LONG, "ten more beats", || (lines(&beats).len() >= seen + 10).then_some(()));
    assert_eq!(c.pid_of("comeback"), Some(pid), "{}", c.log_text());
    assert_eq!(c.count_log("comeback: heartbeat is stale"), restarts);
    assert!(cb_file.is_file(), "heartbeat.file is the file given");

    // All along (past its drop_after too), "steady" was neither lost nor
    // dropped.
    assert!(lines(&steady_beats).len() >= 20, "{}", c.log_text());
    assert_eq!(c.count_log("steady: heartbeat"), 0, "{}", c.log_text());
    assert_eq!(c.count_log("steady: no heartbeat"), 0, "{}", c.log_text());
    let st = status_of(&c, "steady").unwrap();
    assert_eq!((&st["instance"], &st["health"]), (&json!(1), &Value::Null), "{st}");
    let st = status_of(&c, "heartbeat").expect("the status file of the program named heartbeat");
    assert_eq!(st["state"], "running", "{st}");
}

#[test]
fn heartbeat_a_touch_brings_back_a_program_dropped_without_having_been_lost() {
    // drop_after = lost_after (allowed): the first verdict on a silent
    // program is "dropped", never "lost". man colony.5: "A touch makes it
    // alive again."
    let c = Colony::start(&[]);
    let (flag, beats) = (c.root.join("flag"), c.root.join("beats"));
    c.add(
        "agent",
        &sh_with(
            r#"while :; do if [ -e "$FLAG" ]; then echo b > "$COLONY_HEARTBEAT_FILE"; echo b >> "$BEATS"; fi; /bin/sleep 0.05; done"#,
            &[("FLAG", &flag), ("BEATS", &beats)],
            json!({"heartbeat": {"poll": 0.05, "lost_after": 0.3, "drop_after": 0.3}}),
        ),
    );
    let pid = c.wait_running("agent");
    wait_status(&c, "agent", "dropped", |s| s["health"] == "dropped");
    fs::write(&flag, "").unwrap();
    c.wait_within(LONG, "ten beats", || (lines(&beats).len() >= 10).then_some(()));
    wait_status(&c, "agent", "alive again", |s| s["health"].is_null());
    assert_eq!(c.pid_of("agent"), Some(pid), "{}", c.log_text());
}

// ---------------------------------------------------------------------------
// Liveness checks
// ---------------------------------------------------------------------------

#[test]
fn liveness_http_check_fails_and_passes_as_the_server_stops_and_starts() {
    let mut srv = Server::start();
    let c = Colony::start(&[]);
    let url = format!("http://127.0.0.1:{}/health", srv.port);
    c.add("web", &sleeper(json!({"liveness": {"http": url, "period": 0.05, "timeout": 0.3, "failure_threshold": 3}})));
    let restarts = || c.count_log("web: liveness check failed 3 times: restarting it");

    // Passing: never restarted.
    let pid = c.wait_running("web");
    srv.wait_hits(&c, 0, 15);
    assert_eq!(c.pid_of("web"), Some(pid));
    assert_eq!(c.count_log("web: liveness check failed"), 0, "{}", c.log_text());
    assert_eq!(srv.requests.lock().unwrap()[0], "GET /health HTTP/1.0");

    // 503: restarted after three failures in a row.
    let from = srv.hits();
    srv.set(Mode::Error);
    let pid2 = c.wait_new_pid("web", pid);
    // (One check may have been accepted just before the switch.)
    assert!(srv.hits() >= from + 2, "restarted after {} checks", srv.hits() - from);
    // (The log reader may lag behind the PID file.)
    c.wait_log(&format!("web: started, pid {pid2}"));
    for n in ["(1 in a row)", "(2 in a row)"] {
        assert!(c.count_log(&format!("web: liveness check failed {n}")) >= 1, "{}", c.log_text());
    }
    assert!(restarts() >= 1);
    c.wait_reaped(pid);

    // Passing again: the instance then running stays.
    let settle = |srv: &Server| {
        let from = srv.hits();
        srv.wait_hits(&c, from, 3);
        let pid = c.wait_running("web");
        // Every restart note before this instance is in the log.
        c.wait_log(&format!("web: started, pid {pid}"));
        let n = restarts();
        srv.wait_hits(&c, srv.hits(), 15);
        assert_eq!((c.pid_of("web"), restarts()), (Some(pid), n), "{}", c.log_text());
        pid
    };
    srv.set(Mode::Ok);
    let pid3 = settle(&srv);

    // No answer: each check times out, restarted after three.
    srv.set(Mode::Hang);
    c.wait_new_pid("web", pid3);
    srv.set(Mode::Ok);
    let pid5 = settle(&srv);

    // Listener closed: refused connections fail; restarted.
    let n = restarts();
    srv.close();
    c.wait_new_pid("web", pid5);
    c.wait_within(LONG, "a second restart while the server is closed", || (restarts() >= n + 2).then_some(()));
    // Open again on the same port: passes, restarts stop.
    srv.open();
    settle(&srv);
}

#[test]
fn liveness_tcp_and_command_checks_restart_only_when_failing() {
    let mut srv = Server::start();
    let c = Colony::start(&[]);
    let (flag, probes) = (c.root.join("flag"), c.root.join("probes"));
    fs::write(&flag, "").unwrap();
    c.add(
        "tcp",
        &sleeper(
            json!({"liveness": {"tcp": format!("127.0.0.1:{}", srv.port), "period": 0.05, "failure_threshold": 2}}),
        ),
    );
    // The command runs with the program's environment.
    c.add(
        "cmd",
        &json!({
            "args": ["/bin/sleep", "1000"],
            "env": {"FLAG": path_str(&flag), "PROBES": path_str(&probes)},
            "liveness": {
                "command": ["/bin/sh", "-c", r#"echo "$COLONY_NAME" >> "$PROBES"; test -e "$FLAG""#],
                "period": 0.05, "failure_threshold": 3
            }
        })
        .to_string(),
    );
    // A check that hangs fails at its timeout and is killed.
    c.add(
        "hung",
        &sleeper(json!({"liveness": {
            "command": ["/bin/sleep", "77"], "period": 0.05, "timeout": 0.1, "failure_threshold": 2
        }})),
    );
    let (tcp, cmd) = (c.wait_running("tcp"), c.wait_running("cmd"));
    srv.wait_hits(&c, 0, 10);
    c.wait_within(LONG, "ten command checks", || (lines(&probes).len() >= 10).then_some(()));
    assert!(lines(&probes).iter().all(|l| l == "cmd"), "the program's environment");
    assert_eq!((c.pid_of("tcp"), c.pid_of("cmd")), (Some(tcp), Some(cmd)));
    assert_eq!(c.count_log("tcp: liveness check failed"), 0, "{}", c.log_text());
    assert_eq!(c.count_log("cmd: liveness check failed"), 0, "{}", c.log_text());

    // The hanging check: two restarts, and at no point more than one
    // check process alive (those that timed out were killed).
    c.wait_within(LONG, "two restarts of hung", || {
        let checks: Vec<i32> =
            descendants(c.pid()).into_iter().filter(|&p| alive(p) && cmdline(p) == ["/bin/sleep", "77"]).collect();
        assert!(checks.len() <= 1, "timed-out checks left running: {checks:?}");
        (c.count_log("hung: liveness check failed 2 times: restarting it") >= 2).then_some(())
    });
    // Each restart came after a first failure.
    let restarts = c.count_log("hung: liveness check failed 2 times");
    assert!(c.count_log("hung: liveness check failed (1 in a row)") >= restarts, "{}", c.log_text());

    // TCP: nobody listens any more.
    srv.close();
    c.wait_new_pid("tcp", tcp);
    c.wait_log("tcp: liveness check failed (1 in a row)");
    c.wait_log("tcp: liveness check failed 2 times: restarting it");
    assert_eq!(c.pid_of("cmd"), Some(cmd), "the other program is not affected");

    // Command: the file is gone.
    let seen = lines(&probes).len();
    fs::remove_file(&flag).unwrap();
    c.wait_new_pid("cmd", cmd);
    // (One check may have started just before the removal.)
    assert!(lines(&probes).len() >= seen + 2, "restarted after three failing checks");
    c.wait_log("cmd: liveness check failed 3 times: restarting it");

    // Both pass again: no more restarts.
    fs::write(&flag, "").unwrap();
    srv.open();
    let from = srv.hits();
    srv.wait_hits(&c, from, 3);
    let seen = lines(&probes).len();
    c.wait_within(LONG, "three more command checks", || (lines(&probes).len() >= seen + 3).then_some(()));
    let (tcp3, cmd3) = (c.wait_running("tcp"), c.wait_running("cmd"));
    c.wait_log(&format!("tcp: started, pid {tcp3}"));
    c.wait_log(&format!("cmd: started, pid {cmd3}"));
    let (n_tcp, n_cmd) =
        (c.count_log("tcp: liveness check failed 2 times"), c.count_log("cmd: liveness check failed 3 times"));
    srv.wait_hits(&c, srv.hits(), 10);
    let seen = lines(&probes).len();
    c.wait_within(LONG, "ten more command checks", || (lines(&probes).len() >= seen + 10).then_some(()));
    assert_eq!((c.pid_of("tcp"), c.pid_of("cmd")), (Some(tcp3), Some(cmd3)), "{}", c.log_text());
    assert_eq!(c.count_log("tcp: liveness check failed 2 times"), n_tcp);
    assert_eq!(c.count_log("cmd: liveness check failed 3 times"), n_cmd);
}

// ---------------------------------------------------------------------------
// Readiness
// ---------------------------------------------------------------------------

/// Waits until `$GO` exists (appending to `$TICKS` meanwhile if set),
/// removes it, creates `$CREATED` if set, then tells fd 3 it is ready.
const READY_ON_GO: &str = r#"while [ ! -e "$GO" ]; do [ -n "$TICKS" ] && echo t >> "$TICKS"; /bin/sleep 0.01; done
/bin/rm -f "$GO"; [ -n "$CREATED" ] && : > "$CREATED"; echo >&3; exec /bin/sleep 1000"#;

#[test]
fn readiness_by_fd_and_by_probe_shows_in_status() {
    let c = Colony::start(&[]);
    let (go, created, flag) = (c.root.join("go"), c.root.join("created"), c.root.join("flag"));
    c.add("byfd", &sh_with(READY_ON_GO, &[("GO", &go), ("CREATED", &created)], json!({"readiness": {"fd": 3}})));
    c.add(
        "byprobe",
        &sleeper(json!({"readiness": {
            "command": ["test", "-e", path_str(&flag)], "period": 0.05, "failure_threshold": 2
        }})),
    );
    c.add("plain", &sleeper(json!({})));
    // Closing the descriptor without a newline is no readiness.
    c.add("closer", &sh_with("exec 3>&-; exec /bin/sleep 1000", &[], json!({"readiness": {"fd": 3}})));

    let fd_pid = c.wait_running("byfd");
    let probe_pid = c.wait_running("byprobe");
    wait_status(&c, "plain", "ready as soon as it runs", |s| s["state"] == "running" && s["ready"] == true);
    let st = wait_status(&c, "byfd", "running", |s| s["state"] == "running");
    assert_eq!(st["ready"], false, "{st}");
    let st = wait_status(&c, "byprobe", "running", |s| s["state"] == "running");
    assert_eq!(st["ready"], false, "{st}");

    // fd: the newline comes after the file is created.
    fs::write(&go, "").unwrap();
    wait_status(&c, "byfd", "ready", |s| s["ready"] == true);
    assert!(created.exists(), "ready only after the program said so");
    c.wait_for("the ready note", || (count_log_end(&c, "byfd: ready") == 1).then_some(()));

    // Probe: ready when it passes, not ready after two failures, ready
    // again; never restarted for it.
    fs::write(&flag, "").unwrap();
    wait_status(&c, "byprobe", "ready", |s| s["ready"] == true);
    fs::remove_file(&flag).unwrap();
    wait_status(&c, "byprobe", "not ready", |s| s["ready"] == false);
    c.wait_log("byprobe: readiness check failing: not ready");
    fs::write(&flag, "").unwrap();
    wait_status(&c, "byprobe", "ready again", |s| s["ready"] == true);
    c.wait_for("the second ready note", || (count_log_end(&c, "byprobe: ready") >= 2).then_some(()));
    assert_eq!(count_log_end(&c, "byprobe: ready"), 2, "{}", c.log_text());
    assert_eq!((c.pid_of("byfd"), c.pid_of("byprobe")), (Some(fd_pid), Some(probe_pid)));
    let st = status_of(&c, "closer").unwrap();
    assert_eq!((&st["state"], &st["ready"]), (&json!("running"), &json!(false)), "{st}");
    c.wait_log_n("started, pid", 4);
    assert_eq!(c.count_log("started, pid"), 4, "nothing restarted\n{}", c.log_text());
}

#[test]
fn ctl_restart_wait_returns_only_once_the_new_instance_is_ready() {
    let c = Colony::start(&[]);
    let (go, ticks) = (c.root.join("go"), c.root.join("ticks"));
    c.add("svc", &sh_with(READY_ON_GO, &[("GO", &go), ("TICKS", &ticks)], json!({"readiness": {"fd": 3}})));
    c.wait_running("svc");
    fs::write(&go, "").unwrap();
    wait_status(&c, "svc", "ready", |s| s["ready"] == true && s["instance"] == 1);

    let mut ctl = Command::new(colony_bin())
        .arg("ctl")
        .arg("--config")
        .arg(&c.config)
        .arg("--messages")
        .arg(&c.messages)
        .args(["restart", "svc", "--wait", "--timeout", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run colony ctl");
    let guard = KillOnDrop(ctl.id() as i32);
    wait_status(&c, "svc", "a new instance, not ready", |s| {
        s["instance"] == 2 && s["state"] == "running" && s["ready"] == false
    });
    // The new instance has been running unready for twenty loops (≥ 0.2 s,
    // ctl looks every 10 ms): ctl is still waiting.
    let seen = lines(&ticks).len();
    c.wait_for("twenty ticks of the new instance", || (lines(&ticks).len() >= seen + 20).then_some(()));
    assert!(ctl.try_wait().unwrap().is_none(), "ctl restart --wait returned before the program was ready");
    fs::write(&go, "").unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = ctl.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < DEADLINE, "ctl restart --wait did not return\n{}", c.log_text());
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    ctl.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "ctl restart --wait failed: {err}");
    let st = status_of(&c, "svc").unwrap();
    assert_eq!((&st["instance"], &st["ready"]), (&json!(2), &json!(true)), "{st}");
    drop(guard);
}

/// SIGKILLs a process started by the test when dropped (a panicking test
/// leaves no ctl behind).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            signal(self.0, libc::SIGKILL);
        }
    }
}

// ---------------------------------------------------------------------------
// Start order
// ---------------------------------------------------------------------------

#[test]
fn after_starts_only_once_the_other_is_ready_and_shutdown_goes_in_reverse() {
    let mut c = Colony::start(&[]);
    let (go, order, b_started) = (c.root.join("go"), c.root.join("order"), c.root.join("b.started"));
    // A is ready once GO exists. B takes its time to stop: if both were
    // told at once, A would end before B has.
    c.add(
        "a",
        &sh_with(
            r#"trap 'echo a >> "$ORDER"; exit 0' TERM
while [ ! -e "$GO" ]; do /bin/sleep 0.01; done
echo >&3; /bin/sleep 1000 & wait"#,
            &[("GO", &go), ("ORDER", &order)],
            json!({"readiness": {"fd": 3}}),
        ),
    );
    c.add(
        "b",
        &sh_with(
            r#"trap 'echo b-term >> "$ORDER"; /bin/sleep 0.3; echo b-done >> "$ORDER"; exit 0' TERM
: > "$STARTED"; /bin/sleep 1000 & wait"#,
            &[("ORDER", &order), ("STARTED", &b_started)],
            json!({"after": ["a"]}),
        ),
    );
    let a = c.wait_running("a");
    let st = wait_status(&c, "b", "waiting for a", |s| s["waiting_for"] == json!(["a"]));
    assert_eq!(st["state"], "starting", "{st}");
    assert_eq!(status_of(&c, "a").unwrap()["ready"], false);
    assert_eq!(c.pid_of("b"), None);
    assert!(!b_started.exists());

    fs::write(&go, "").unwrap();
    let b = c.wait_running("b");
    c.wait_for("b to be up", || b_started.exists().then_some(()));
    c.wait_log("b: started");
    let ready = c.log().iter().position(|l| l.ends_with("a: ready"));
    let started = log_pos(&c, "b: started");
    assert!(ready.is_some() && ready < started, "b started before a was ready\n{}", c.log_text());
    let st = wait_status(&c, "b", "running", |s| s["state"] == "running");
    assert_eq!(st["waiting_for"], json!([]), "{st}");

    c.kill(libc::SIGTERM);
    let (exit, _) = c.wait_exit(LONG);
    assert_eq!(exit.code(), Some(0), "{}", c.log_text());
    assert_eq!(lines(&order), ["b-term", "b-done", "a"], "b is stopped before a\n{}", c.log_text());
    let (b_stop, a_stop) = (log_pos(&c, "b: stopping"), log_pos(&c, "a: stopping"));
    assert!(b_stop.is_some() && b_stop < a_stop, "{}", c.log_text());
    assert!(!alive(a) && !alive(b));
}

#[test]
fn after_cycles_and_unknown_names_block_only_the_programs_concerned() {
    let sleep_after = |after: &[&str]| sleeper(json!({"after": after}));
    let c = Colony::with(Options {
        configs: vec![
            ("w".into(), sleep_after(&[])),
            ("x".into(), sleep_after(&["y"])),
            ("y".into(), sleep_after(&["x"])),
            ("z".into(), sleep_after(&["nope"])),
        ],
        ..Options::default()
    });
    c.wait_running("w");
    c.wait_log("x: cannot start: after: dependency cycle");
    c.wait_log("y: cannot start: after: dependency cycle");
    c.wait_log("z: cannot start: after: no program named nope");
    for name in ["x", "y", "z"] {
        let st = wait_status(&c, name, "blocked", |s| s["blocked"].is_string());
        assert_eq!(st["state"], "stopped", "{st}");
        assert_eq!(c.pid_of(name), None, "{name} runs\n{}", c.log_text());
        assert_eq!(c.count_log(&format!("{name}: started")), 0, "{}", c.log_text());
    }
    assert!(status_of(&c, "z").unwrap()["blocked"].as_str().unwrap().contains("nope"));
    // y is known: x is reported for the cycle only, not for a missing y
    // while the directory was being read.
    assert_eq!(c.count_log("no program named y"), 0, "{}", c.log_text());
    assert!(alive(c.pid()));

    // Fixing the files lets them start, in order.
    c.add("nope", &sleeper(json!({})));
    c.wait_running("z");
    c.wait_log("z: its \"after\" list can be satisfied again");
    c.add("y", &sleep_after(&[]));
    c.wait_running("x");
    c.wait_running("y");
    let st = wait_status(&c, "x", "unblocked", |s| s["state"] == "running");
    assert!(st["blocked"].is_null(), "{st}");
}

#[test]
fn after_naming_a_program_of_the_same_scan_is_not_reported_unknown() {
    // "a" sorts before "b": it is read first.
    let c = Colony::with(Options {
        configs: vec![("a".into(), sleeper(json!({"after": ["b"]}))), ("b".into(), sleeper(json!({})))],
        ..Options::default()
    });
    c.wait_running("b");
    c.wait_running("a");
    assert_eq!(c.count_log("cannot start"), 0, "{}", c.log_text());
    assert_eq!(c.count_log("can be satisfied again"), 0, "{}", c.log_text());
}

// ---------------------------------------------------------------------------
// Failure policy
// ---------------------------------------------------------------------------

#[test]
fn restart_policies_success_codes_and_no_restart_codes() {
    let c = Colony::start(&["-m", "0.05", "-M", "0.1"]);
    let cases: [(&str, i32, Value, bool); 8] = [
        ("never0", 0, json!({"restart": "never"}), false),
        ("never1", 1, json!({"restart": "never"}), false),
        ("onfail0", 0, json!({"restart": "on-failure"}), false),
        ("onfail1", 1, json!({"restart": "on-failure"}), true),
        ("success3", 3, json!({"restart": "on-failure", "success_codes": [0, 3]}), false),
        ("onfail4", 4, json!({"restart": "on-failure", "success_codes": [0, 3]}), true),
        ("norestart42", 42, json!({"no_restart_codes": [42]}), false),
        ("always0", 0, json!({}), true),
    ];
    let runs = |name: &str| c.root.join(format!("{name}.runs"));
    for (name, code, extra, _) in &cases {
        c.add(name, &sh_with(&format!(r#"echo run >> "$RUNS"; exit {code}"#), &[("RUNS", &runs(name))], extra.clone()));
    }
    for (name, code, _, restarted) in &cases {
        if *restarted {
            c.wait_within(LONG, &format!("five runs of {name}"), || (lines(&runs(name)).len() >= 5).then_some(()));
        } else {
            let st = wait_status(&c, name, "stopped", |s| s["state"] == "stopped");
            assert_eq!(st["last_exit"]["code"], json!(code), "{st}");
            assert_eq!(st["instance"], 1, "{st}");
        }
    }
    // By now the restarted ones have run five times each: the others
    // would have been restarted too.
    for (name, _, _, restarted) in &cases {
        if !restarted {
            assert_eq!(lines(&runs(name)).len(), 1, "{name} was restarted\n{}", c.log_text());
            let why =
                if *name == "norestart42" { "its exit code asks not to restart it" } else { "its restart policy" };
            c.wait_log(&format!("{name}: not restarted: {why}"));
            assert_eq!(c.count_log(&format!("{name}: not restarted: {why}")), 1, "{}", c.log_text());
        }
    }
}

#[test]
fn give_up_makes_a_crash_loop_failed_until_cooldown_or_ctl_restart() {
    let c = Colony::start(&["-m", "0.05", "-M", "0.1"]);
    // Each run records its start; with FLAG present it stays up.
    let script = format!(r#"{STAMP}; [ -e "$FLAG" ] && exec /bin/sleep 1000; exit 1"#);
    let file = |name: &str, what: &str| c.root.join(format!("{name}.{what}"));
    for (name, give_up) in
        [("cool", json!({"failures": 3, "within": 10, "cooldown": 1})), ("hand", json!({"failures": 3, "within": 10}))]
    {
        c.add(
            name,
            &sh_with(
                &script,
                &[("STARTS", &file(name, "starts")), ("FLAG", &file(name, "flag"))],
                json!({ "give_up": give_up }),
            ),
        );
    }

    let st = wait_status(&c, "cool", "failed", |s| s["state"] == "failed");
    c.wait_log("cool: failed 3 times within 10 s: giving up, trying again in 1 s");
    assert_eq!(times(&file("cool", "starts")).len(), 3);
    let (since, next) = (st["since"].as_f64().unwrap(), st["next_start"].as_f64().unwrap());
    assert!((next - since - 1.0).abs() < 0.05, "next start one cool-down after: {st}");
    let st = wait_status(&c, "hand", "failed", |s| s["state"] == "failed");
    c.wait_log("hand: failed 3 times within 10 s: giving up, until restarted by hand");
    assert!(st["next_start"].is_null(), "{st}");

    // After the cool-down "cool" comes back (and stays up this time).
    fs::write(file("cool", "flag"), "").unwrap();
    wait_status(&c, "cool", "running again", |s| s["state"] == "running" && s["instance"] == 4);
    c.wait_log("cool: cool-down over: trying again");
    let t = c.wait_for("the fourth start's record", || Some(times(&file("cool", "starts"))).filter(|t| t.len() >= 4));
    assert_eq!(t.len(), 4);
    let gap = t[3] - t[2];
    assert!((0.98..2.5).contains(&gap), "came back {gap:.3} s after its third start, want the 1 s cool-down");

    // "hand" stayed failed all that time.
    let st = status_of(&c, "hand").unwrap();
    assert_eq!((&st["state"], &st["instance"]), (&json!("failed"), &json!(3)), "{st}");
    assert_eq!(times(&file("hand", "starts")).len(), 3);

    // ctl restart resets it: three fresh failures make it failed again,
    // then with FLAG it runs.
    c.ctl(&["restart", "hand"]);
    wait_status(&c, "hand", "failed again", |s| s["state"] == "failed" && s["instance"] == 6);
    assert_eq!(times(&file("hand", "starts")).len(), 6);
    fs::write(file("hand", "flag"), "").unwrap();
    c.ctl(&["restart", "hand"]);
    wait_status(&c, "hand", "running", |s| s["state"] == "running" && s["instance"] == 7);
}

#[test]
fn critical_program_with_a_restart_policy_ends_colony_once_it_gives_up() {
    let mut c = Colony::start(&["-m", "0.05", "-M", "0.1"]);
    let runs = c.root.join("runs");
    c.add("other", &sleeper(json!({})));
    let other = c.wait_running("other");
    c.add(
        "crit",
        &sh_with(
            r#"echo run >> "$RUNS"; exit 7"#,
            &[("RUNS", &runs)],
            json!({"critical": true, "restart": "always", "give_up": {"failures": 3, "within": 10}}),
        ),
    );
    let (exit, _) = c.wait_exit(LONG);
    assert_eq!(exit.code(), Some(7), "{}", c.log_text());
    assert_eq!(lines(&runs).len(), 3, "restarted until it gave up\n{}", c.log_text());
    assert_eq!(c.count_log("crit: failed 3 times within 10 s: giving up"), 1, "{}", c.log_text());
    assert_eq!(c.count_log("crit is critical and ended"), 1, "{}", c.log_text());
    assert!(!alive(other), "everything is stopped");
}
