//! Integration tests of `colony scheduler` (issue 6): the real binary,
//! alone (`--once`, `--next`, `--now`, stamp and state files, signals,
//! invalid flags) and under the supervisor (`colony run`). Every wait is
//! on something observable (a file a run appends to, a log line) with a
//! deadline; guards kill whatever a test started, even when it fails.

mod common;

use common::*;
use serde_json::json;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A scheduler started by a test, in its own process group. Dropping it
/// SIGKILLs it and every process it started.
struct Sched {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    done: Option<std::process::ExitStatus>,
}

fn reader(mut r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let out = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            out.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

impl Sched {
    fn start(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Sched {
        let mut cmd = Command::new(colony_bin());
        cmd.arg("scheduler")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("COLONY_LOG", "info")
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start colony scheduler");
        let stdout = reader(child.stdout.take().unwrap());
        let stderr = reader(child.stderr.take().unwrap());
        Sched { child, stderr, stdout, done: None }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn context(&self) -> String {
        format!("--- stderr ---\n{}--- stdout ---\n{}--- end ---", self.stderr(), self.stdout())
    }

    fn wait_for<T>(&self, what: &str, cond: impl FnMut() -> Option<T>) -> T {
        wait_until(DEADLINE, what, || self.context(), cond)
    }

    fn wait_stderr(&self, pattern: &str) {
        self.wait_for(&format!("{pattern:?} on stderr"), || self.stderr().contains(pattern).then_some(()));
    }

    /// Waits for the exit; returns the code (128+N for signal N).
    fn wait_exit(&mut self, deadline: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.done = Some(st);
                // Let the readers see the last bytes: they end at EOF
                // (unless something that outlived the scheduler holds a
                // pipe).
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until
                    && (Arc::strong_count(&self.stderr) > 1 || Arc::strong_count(&self.stdout) > 1)
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                use std::os::unix::process::ExitStatusExt;
                return st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
            }
            if start.elapsed() > deadline {
                panic!("colony scheduler did not exit within {deadline:?}\n{}", self.context());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Sched {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.context());
        }
        let me = self.pid();
        let mut victims = descendants(me);
        if self.done.is_none() {
            signal(me, libc::SIGKILL);
        }
        for _ in 0..200 {
            victims.retain(|&p| alive(p));
            if victims.is_empty() {
                break;
            }
            for &p in &victims {
                if let Some(g) = pgid(p).filter(|&g| g > 1) {
                    // SAFETY: getpgrp cannot fail.
                    if g != unsafe { libc::getpgrp() } {
                        signal_group(g, libc::SIGKILL);
                    }
                }
                signal(p, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.done.is_none() {
            let _ = self.child.wait();
        }
    }
}

/// Runs a scheduler that must exit by itself (within 10 s); returns
/// (code, stdout, stderr).
fn run(args: &[&str], dir: &Path) -> (i32, String, String) {
    let mut s = Sched::start(args, dir, &[]);
    let code = s.wait_exit(Duration::from_secs(10));
    (code, s.stdout(), s.stderr())
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new().prefix("colony-sched-").tempdir().unwrap();
    let p = t.path().canonicalize().unwrap();
    (t, p)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn mtime_secs(path: &Path) -> f64 {
    let m = fs::metadata(path).unwrap().modified().unwrap();
    match m.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn state_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

// ---------------------------------------------------------------------------
// The binary alone
// ---------------------------------------------------------------------------

#[test]
fn once_runs_passes_output_through_and_returns_the_code() {
    let (_t, dir) = tmp();
    let (code, out, err) =
        run(&["--once", "--frequency", "10", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"], &dir);
    assert_eq!(code, 3, "{err}");
    assert_eq!(out, "out\n");
    assert!(err.contains("err\n"), "{err}");
    assert!(err.contains("run 1 started (first run): pid "), "{err}");
    assert!(err.contains("run 1 ended: exit code 3 after "), "{err}");
}

#[test]
fn ncolony_argv_works_unchanged() {
    let (_t, dir) = tmp();
    let (code, out, err) = run(
        &[
            "--arg=/bin/sh",
            "--arg=-c",
            "--arg",
            "echo \"$0\" hello",
            "--frequency=10",
            "--timeout=5",
            "--grace=10",
            "--once",
        ],
        &dir,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "/bin/sh hello\n");
}

#[test]
fn once_with_a_command_that_cannot_start() {
    let (_t, dir) = tmp();
    let (code, _, err) = run(&["--once", "--frequency", "10", "--", "/nonexistent/cmd"], &dir);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("cannot start: /nonexistent/cmd"), "{err}");
}

#[test]
fn timeout_kills_a_run_that_ignores_term() {
    let (_t, dir) = tmp();
    let started = Instant::now();
    let (code, _, err) = run(
        &[
            "--once",
            "--frequency",
            "10",
            "--timeout",
            "0.2",
            "--grace",
            "0.2",
            "--",
            "/bin/sh",
            "-c",
            "trap '' TERM; sleep 30",
        ],
        &dir,
    );
    assert_eq!(code, 128 + libc::SIGKILL, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("run 1 timed out after 0.200 s: SIGTERM"), "{err}");
    assert!(err.contains("run 1 ended: signal SIGKILL"), "{err}");
}

#[test]
fn next_prints_cron_times_across_both_berlin_changes() {
    let (_t, dir) = tmp();
    let spring = ["--next", "4", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "--now", "2026-03-27T12:00:00Z"];
    let (code, out, err) = run(&spring, &dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "2026-03-28T02:30:00+01:00\n2026-03-29T03:00:00+02:00\n2026-03-30T02:30:00+02:00\n2026-03-31T02:30:00+02:00\n"
    );
    let fall = ["--next", "3", "--cron", "0 * * * *", "--tz", "Europe/Berlin", "--now", "2026-10-25T02:30:00+02:00"];
    let (_, out, _) = run(&fall, &dir);
    // The repeated hour: 03:00 CEST is 02:00 CET; each real hour once.
    assert_eq!(out, "2026-10-25T02:00:00+01:00\n2026-10-25T03:00:00+01:00\n2026-10-25T04:00:00+01:00\n");
    let daily = ["--next", "2", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "--now", "2026-10-24T12:00:00Z"];
    let (_, out, _) = run(&daily, &dir);
    assert_eq!(out, "2026-10-25T02:30:00+02:00\n2026-10-26T02:30:00+01:00\n");
}

#[test]
fn next_with_an_interval_and_unix_seconds() {
    let (_t, dir) = tmp();
    let (code, out, _) = run(&["--next", "3", "--frequency", "1h", "--now", "1790000000"], &dir);
    assert_eq!(code, 0);
    assert_eq!(out, "2026-09-21T14:13:20Z\n2026-09-21T15:13:20Z\n2026-09-21T16:13:20Z\n");
    let (_, out, _) = run(&["--next", "2", "--cron", "0 0 1 1 *", "--now", "2026-06-01T00:00:00Z"], &dir);
    assert_eq!(out, "2027-01-01T00:00:00Z\n2028-01-01T00:00:00Z\n");
}

#[test]
fn now_and_window_decide_once() {
    let (_t, dir) = tmp();
    let base = ["--once", "--cron", "0 1 * * *", "--window", "30m", "--now"];
    let (code, out, err) = run(&[&base[..], &["2026-05-01T01:20:00Z", "--", "/bin/echo", "ran"]].concat(), &dir);
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    let (code, out, err) = run(&[&base[..], &["2026-05-01T01:31:00Z", "--", "/bin/echo", "ran"]].concat(), &dir);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("not due; next at 2026-05-02T01:00:00Z"), "{err}");
}

#[test]
fn spread_stamp_semantics() {
    let (_t, dir) = tmp();
    let stamp = dir.join("stamp");
    let s = path_str(&stamp);
    let t0 = 1_790_000_000i64;
    let call = |now: f64| {
        run(
            &[
                "--once",
                "--frequency",
                "7200",
                "--spread-stamp",
                s,
                "--now",
                &now.to_string(),
                "--",
                "/bin/echo",
                "ran",
            ],
            &dir,
        )
    };
    // A fresh stamp: the first call runs; the content is the offset.
    let (code, out, err) = call(t0 as f64);
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    assert!(err.contains("new spread stamp"), "{err}");
    let content = fs::read_to_string(&stamp).unwrap();
    assert!(content.ends_with('\n'), "{content:?}");
    let offset: i64 = content.trim().parse().unwrap();
    assert!((0..=7200).contains(&offset), "{offset}");
    // mtime = the run minus the offset (the pretend clock moved a little).
    let m = mtime_secs(&stamp);
    assert!((m - (t0 - offset) as f64).abs() < 5.0, "mtime {m}, offset {offset}");
    // Due at mtime − (mtime mod N) + N + offset, not a moment before.
    let due = m - m.rem_euclid(7200.0) + 7200.0 + offset as f64;
    let (_, out, err) = call(due - 2.0);
    assert_eq!(out, "", "{err}");
    assert!(err.contains("not due; next at"), "{err}");
    let (_, out, _) = call(due + 0.001);
    assert_eq!(out, "ran\n");
    // A timer faster than N: no second run in the same slot.
    let (_, out, _) = call(due + 60.0);
    assert_eq!(out, "");
    // `--next` reads but changes nothing.
    let before = (fs::read(&stamp).unwrap(), mtime_secs(&stamp));
    let (code, out, _) =
        run(&["--next", "2", "--frequency", "7200", "--spread-stamp", s, "--now", &(due + 60.0).to_string()], &dir);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2);
    assert_eq!(before, (fs::read(&stamp).unwrap(), mtime_secs(&stamp)));
    // A garbled stamp is regenerated with a warning, and the call runs.
    for bad in ["", "abc\n", "99999999\n"] {
        fs::write(&stamp, bad).unwrap();
        let (code, out, err) = call(due + 120.0);
        assert_eq!((code, out.as_str()), (0, "ran\n"), "{bad:?}: {err}");
        assert!(err.contains("WARN") && err.contains("regenerated with offset"), "{err}");
        let offset: i64 = fs::read_to_string(&stamp).unwrap().trim().parse().unwrap();
        assert!((0..=7200).contains(&offset));
    }
    // No temporary files left.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn state_catches_up_once_and_retries_a_failure() {
    let (_t, dir) = tmp();
    let state = dir.join("state.json");
    let s = path_str(&state);
    let week_ago = now_secs() - 7.0 * 86_400.0;
    fs::write(&state, json!({ "last_success": week_ago }).to_string()).unwrap();
    let call = |cmd: &str| run(&["--once", "--cron", "0 1 * * *", "--state", s, "--", "/bin/sh", "-c", cmd], &dir);
    // Seven fire times missed: one run, which fails; the success stays.
    let (code, _, err) = call("exit 1");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("(catch-up; missed fire time"), "{err}");
    let v = state_json(&state);
    assert_eq!(v["last_result"], "exit code 1");
    assert!((v["last_success"].as_f64().unwrap() - week_ago).abs() < 0.01);
    // The next call retries it, and succeeds.
    let (code, _, err) = call("exit 0");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(retry; fire time"), "{err}");
    let v = state_json(&state);
    assert!((v["last_success"].as_f64().unwrap() - now_secs()).abs() < 10.0, "{v}");
    // Nothing owed any more.
    let (_, out, err) = call("echo ran");
    assert_eq!(out, "", "{err}");
    assert!(err.contains("not due; next at"), "{err}");
}

#[test]
fn state_loop_catches_up_at_start_then_waits_for_the_calendar() {
    let (_t, dir) = tmp();
    let state = dir.join("state.json");
    let runs = dir.join("runs");
    fs::write(&state, json!({ "last_success": now_secs() - 3.0 * 86_400.0 }).to_string()).unwrap();
    let script = format!("echo run >> {}", path_str(&runs));
    let mut s = Sched::start(
        &["--cron", "0 1 * * *", "--state", path_str(&state), "--", "/bin/sh", "-c", &script],
        &dir,
        &[("COLONY_LOG", "debug")],
    );
    // After the run, the machine announces its next tick: the calendar's
    // next 01:00, no second catch-up.
    let next = s.wait_for("the next tick after run 1", || {
        let err = s.stderr();
        let after = &err[err.find("run 1 ended: exit code 0")?..];
        Some(after[after.find("next tick at ")?..].lines().next()?.to_string())
    });
    assert!(next.ends_with("T01:00:00Z"), "{}", s.context());
    assert_eq!(lines(&runs), ["run"]);
    assert!(signal(s.pid(), libc::SIGTERM));
    assert_eq!(s.wait_exit(DEADLINE), 0);
    assert!(state_json(&state)["last_success"].as_f64().unwrap() > now_secs() - 60.0);
    // Restarted: the success is remembered, no run at start.
    let mut s =
        Sched::start(&["--cron", "0 1 * * *", "--state", path_str(&state), "--", "/bin/sh", "-c", &script], &dir, &[]);
    s.wait_stderr("first tick at ");
    assert!(signal(s.pid(), libc::SIGTERM));
    assert_eq!(s.wait_exit(DEADLINE), 0);
    assert_eq!(lines(&runs), ["run"]);
    assert!(!s.stderr().contains("run 1"), "{}", s.context());
}

#[test]
fn state_loop_retries_at_every_tick_until_success() {
    let (_t, dir) = tmp();
    let state = dir.join("state.json");
    let runs = dir.join("runs");
    // Fails twice, then succeeds.
    let script = format!("echo run >> {r}; test $(wc -l < {r}) -ge 3", r = path_str(&runs));
    let mut s = Sched::start(
        &["--cron", "0 1 * * *", "--frequency", "0.1", "--state", path_str(&state), "--", "/bin/sh", "-c", &script],
        &dir,
        &[("COLONY_LOG", "debug")],
    );
    s.wait_stderr("run 3 ended: exit code 0");
    s.wait_for("the next tick after the success", || {
        let err = s.stderr();
        let after = &err[err.find("run 3 ended")?..];
        after.contains("next tick at").then_some(())
    });
    let err = s.stderr();
    assert!(err.contains("run 1 started (never ran;"), "{err}");
    assert!(err.contains("run 2 started (retry;"), "{err}");
    assert!(err.contains("run 3 started (retry;"), "{err}");
    assert!(err.contains("run 1 ended: exit code 1") && err.contains("run 2 ended: exit code 1"), "{err}");
    // After the success, the next tick is the calendar's, not a retry.
    let after = &err[err.find("run 3 ended").unwrap()..];
    assert!(after.contains("T01:00:00Z"), "{err}");
    assert_eq!(state_json(&state)["last_result"], "exit code 0");
    assert!(signal(s.pid(), libc::SIGTERM));
    assert_eq!(s.wait_exit(DEADLINE), 0);
    assert_eq!(lines(&runs).len(), 3);
}

#[test]
fn sigterm_stops_the_run_and_exits_zero() {
    let (_t, dir) = tmp();
    let pidfile = dir.join("pid");
    let script = format!("trap '' TERM; echo $$ > {}; sleep 30", path_str(&pidfile));
    let mut s = Sched::start(&["--frequency", "60", "--grace", "0.3", "--", "/bin/sh", "-c", &script], &dir, &[]);
    let run_pid = s.wait_for("the run's pid", || read_pid(&pidfile));
    assert_eq!(pgid(run_pid), Some(run_pid), "the run has its own process group");
    let sent = Instant::now();
    assert!(signal(s.pid(), libc::SIGTERM));
    assert_eq!(s.wait_exit(DEADLINE), 0, "{}", s.context());
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
    assert!(proc_state(run_pid).is_none(), "the run was not reaped");
    let err = s.stderr();
    assert!(err.contains("stopping: SIGTERM to run 1, SIGKILL in 0.300 s"), "{err}");
    assert!(err.contains("run 1 ended: signal SIGKILL"), "{err}");
    assert!(err.contains("stopped"), "{err}");
}

#[test]
fn sigterm_while_idle_exits_at_once() {
    let (_t, dir) = tmp();
    let mut s = Sched::start(&["--cron", "0 0 1 1 *", "--", "/bin/true"], &dir, &[]);
    s.wait_stderr("first tick at");
    assert!(signal(s.pid(), libc::SIGTERM));
    assert_eq!(s.wait_exit(DEADLINE), 0);
}

#[test]
fn invalid_flags_are_one_line_and_exit_2() {
    let (_t, dir) = tmp();
    for (argv, want) in [
        (&["--frequency", "0", "--", "x"][..], "--frequency"),
        (&["--frequency", "-5", "--", "x"], "negative"),
        (&["--frequency", "1.5x", "--", "x"], "--frequency"),
        (&["--cron", "not a cron", "--", "x"], "--cron"),
        (&["--cron", "0 25 * * *", "--", "x"], "--cron"),
        (&["--cron", "0 1 * * *", "--tz", "Nowhere/City", "--", "x"], "unknown time zone"),
        (&["--frequency", "10"], "no command"),
        (&["--", "x"], "no schedule"),
        (&["--cron", "@daily", "--spread-stamp", "s", "--frequency", "1", "--", "x"], "--cron"),
        (&["--frequency", "10", "--bogus", "--", "x"], "--bogus"),
        (&["--frequency", "10", "--now", "noon", "--", "x"], "--now"),
        (&["--once", "--next", "2", "--frequency", "1"], "--next"),
    ] {
        let (code, out, err) = run(argv, &dir);
        assert_eq!(code, 2, "{argv:?}: {err}");
        assert_eq!(out, "", "{argv:?}");
        assert_eq!(err.lines().count(), 1, "{argv:?}: {err}");
        assert!(err.contains(want), "{argv:?}: {err}");
    }
}

#[test]
fn unwritable_stamp_or_state_file_exits_73() {
    let (_t, dir) = tmp();
    // A regular file as the directory: fails for root too.
    fs::write(dir.join("file"), "").unwrap();
    let bad = dir.join("file").join("x");
    for argv in [
        vec!["--frequency", "60", "--spread-stamp", path_str(&bad), "--", "/bin/true"],
        vec!["--cron", "@daily", "--state", path_str(&bad), "--", "/bin/true"],
        vec!["--once", "--frequency", "60", "--state", path_str(&bad), "--", "/bin/true"],
    ] {
        let (code, _, err) = run(&argv, &dir);
        assert_eq!(code, 73, "{argv:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{argv:?}: {err}");
        assert!(err.contains(path_str(&bad)), "{err}");
    }
}

// ---------------------------------------------------------------------------
// Under the supervisor
// ---------------------------------------------------------------------------

fn scheduler_config(args: &[&str], script: &str) -> String {
    let mut argv: Vec<&str> = vec![colony_bin(), "scheduler"];
    argv.extend(args);
    argv.extend(["--", "/bin/sh", "-c", script]);
    json!({ "args": argv, "env": { "COLONY_LOG": "debug" }, "killtime": 5 }).to_string()
}

fn times(path: &Path) -> Vec<f64> {
    lines(path).iter().filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect()
}

#[test]
fn under_the_supervisor_it_runs_about_once_a_second() {
    let root = tempfile::Builder::new().prefix("colony-sched-runs-").tempdir().unwrap();
    let runs = root.path().canonicalize().unwrap().join("runs");
    let script = format!("echo \"start $(date +%s.%N)\" >> {}; echo hello from the run", path_str(&runs));
    let colony = Colony::with(Options {
        configs: vec![("ticker".into(), scheduler_config(&["--frequency", "1"], &script))],
        ..Options::default()
    });
    colony.wait_for("four runs", || (times(&runs).len() >= 4).then_some(()));
    let t = times(&runs);
    for w in t.windows(2) {
        let gap = w[1] - w[0];
        assert!((0.5..1.5).contains(&gap), "runs {t:?}\n{}", colony.log_text());
    }
    // The run's output and the scheduler's lines land in the supervisor's
    // log under the scheduler's name.
    colony.wait_log("[ticker] hello from the run");
    colony.wait_log("[ticker] INFO  run 1 started (first run): pid ");
    colony.wait_log("[ticker] INFO  run 1 ended: exit code 0 after ");
}

#[test]
fn under_the_supervisor_a_stubborn_run_is_killed_and_never_overlaps() {
    let root = tempfile::Builder::new().prefix("colony-sched-stub-").tempdir().unwrap();
    let dir = root.path().canonicalize().unwrap();
    let runs = dir.join("runs");
    let cur = dir.join("cur");
    // Each run: complain if the previous one is still alive, then ignore
    // SIGTERM and outstay the timeout (with a grandchild).
    let script = format!(
        "if [ -f {c} ] && kill -0 $(cat {c}) 2>/dev/null; then echo OVERLAP >> {r}; fi; echo $$ > {c}; \
         echo \"start $(date +%s.%N) $$\" >> {r}; trap '' TERM; sleep 30",
        c = path_str(&cur),
        r = path_str(&runs)
    );
    let colony = Colony::with(Options {
        configs: vec![(
            "stubborn".into(),
            scheduler_config(&["--frequency", "1", "--timeout", "0.3", "--grace", "0.3"], &script),
        )],
        ..Options::default()
    });
    colony.wait_for("three runs", || (times(&runs).len() >= 3).then_some(()));
    colony.wait_log("[stubborn] WARN  run 1 timed out after 0.300 s: SIGTERM, SIGKILL in 0.300 s");
    colony.wait_log("[stubborn] WARN  run 1 still running after SIGTERM: SIGKILL");
    colony.wait_log("[stubborn] WARN  run 1 ended: signal SIGKILL after ");
    colony.wait_log("[stubborn] WARN  run 2 ended: signal SIGKILL");
    let all = lines(&runs);
    assert!(!all.iter().any(|l| l.contains("OVERLAP")), "{all:?}");
    // The killed runs are gone, their grandchildren (sleep) too.
    for l in &all {
        let pid: i32 = l.split_whitespace().nth(2).unwrap().parse().unwrap();
        if Some(pid) != read_pid(&cur) {
            assert!(!alive(pid), "run {pid} still alive");
        }
    }
    let sleeps: Vec<i32> =
        colony.leftovers().into_iter().filter(|&p| cmdline(p).first().is_some_and(|c| c.ends_with("sleep"))).collect();
    assert!(sleeps.len() <= 1, "grandchildren of killed runs survive: {sleeps:?}\n{}", colony.log_text());
}

#[test]
fn under_the_supervisor_state_survives_a_restart() {
    let root = tempfile::Builder::new().prefix("colony-sched-state-").tempdir().unwrap();
    let dir = root.path().canonicalize().unwrap();
    let state = dir.join("state.json");
    let runs = dir.join("runs");
    fs::write(&state, json!({ "last_success": now_secs() - 2.0 * 86_400.0 }).to_string()).unwrap();
    let script = format!("echo \"start $(date +%s.%N)\" >> {}", path_str(&runs));
    let colony = Colony::with(Options {
        configs: vec![(
            "nightly".into(),
            scheduler_config(&["--cron", "0 3 * * *", "--state", path_str(&state)], &script),
        )],
        ..Options::default()
    });
    // The missed night is caught up once, at start.
    colony.wait_log("[nightly] INFO  run 1 started (catch-up; missed fire time");
    colony.wait_log("[nightly] INFO  run 1 ended: exit code 0");
    colony.ctl(&["restart", "nightly"]);
    colony.wait_log_n("[nightly] INFO  scheduling", 2);
    colony.wait_log("[nightly] INFO  first tick at ");
    assert_eq!(times(&runs).len(), 1, "{}", colony.log_text());
    assert_eq!(colony.count_log("run 1 started"), 1, "{}", colony.log_text());
}

#[test]
fn under_the_supervisor_the_scheduler_keeps_its_heartbeat() {
    // ncolony-scheduler kept a heart when its config asked for one; so
    // does colony's, or the supervisor would restart it as stale.
    let root = tempfile::Builder::new().prefix("colony-sched-heart-").tempdir().unwrap();
    let dir = root.path().canonicalize().unwrap();
    let hb = dir.join("hb");
    let mut cfg: serde_json::Value = serde_json::from_str(&scheduler_config(&["--cron", "0 0 1 1 *"], "true")).unwrap();
    cfg["ncolony.beatcheck"] = json!({ "period": 0.6, "grace": 1, "status": path_str(&hb) });
    let colony = Colony::with(Options { configs: vec![("beating".into(), cfg.to_string())], ..Options::default() });
    // Watch the file being touched for well over period × grace.
    let mut seen = std::collections::BTreeSet::new();
    colony.wait_for("eight heartbeats", || {
        if let Ok(m) = fs::metadata(&hb).and_then(|m| m.modified()) {
            seen.insert(m);
        }
        (seen.len() >= 8).then_some(())
    });
    assert_eq!(colony.count_log("[beating] INFO  scheduling"), 1, "{}", colony.log_text());
    assert_eq!(colony.count_log("stale"), 0, "{}", colony.log_text());
}

#[test]
fn example_configs_are_valid_scheduler_command_lines() {
    let (_t, dir) = tmp();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scheduler");
    let mut seen = 0;
    for entry in fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let spec: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let args: Vec<&str> = spec["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        if args.get(1) != Some(&"scheduler") {
            continue;
        }
        seen += 1;
        // The supervisor's kill time outlasts the scheduler's grace.
        let grace = args.iter().position(|a| *a == "--grace").map_or(3.0, |i| args[i + 1].parse::<f64>().unwrap());
        assert!(spec["killtime"].as_f64().unwrap_or(5.0) > grace, "{}: killtime <= grace", path.display());
        // Only --next: the files they name are read if they exist, never written.
        let argv: Vec<&str> = ["--next", "2"].into_iter().chain(args[2..].iter().copied()).collect();
        let (code, out, err) = run(&argv, &dir);
        assert_eq!(code, 0, "{}: {err}", path.display());
        assert!(!out.is_empty(), "{}", path.display());
    }
    assert!(seen >= 3, "scheduler examples in examples/scheduler: {seen}");
}
