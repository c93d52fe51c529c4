//! Integration tests of `colony manage` (issue 7): the real binary with
//! `--once` (steps in order, a failing step does not stop the others, the
//! spread gate, with-maintenance filing, the lock, the run's time limit,
//! bad configuration) and under the supervisor next to `colony
//! maintenance`, which runs what manage filed. Waits have deadlines;
//! guards kill whatever a test started.

mod common;

use colony_ctl::maintenance::{Activity, RequestState, Spool};
use common::*;
use serde_json::json;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new().prefix("colony-manage-").tempdir().unwrap();
    let p = t.path().canonicalize().unwrap();
    (t, p)
}

/// Runs `colony manage ARGS` to its end (killed after 10 s, with its
/// process group): (code, stdout, stderr, how long it took).
fn manage(args: &[&str], dir: &Path) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(colony_bin())
        .arg("manage")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("COLONY_LOG", "info")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(10) {
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait();
            panic!("colony manage {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    // Whatever it left in its group dies.
    signal_group(pid, libc::SIGKILL);
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    (code, t.join().unwrap(), e.join().unwrap(), took)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn write_steps(dir: &Path, steps: serde_json::Value) -> PathBuf {
    let f = dir.join("steps.json");
    fs::write(&f, json!({ "steps": steps }).to_string()).unwrap();
    f
}

#[test]
fn once_runs_its_steps_skips_a_gated_step_that_is_not_due_and_files_a_request() {
    let (_t, dir) = tmp();
    let trace = dir.join("trace");
    let t = path_str(&trace);
    let spool = dir.join("spool");
    fs::create_dir(&spool).unwrap();
    // A stamp used a moment ago with an offset of a whole slot: the next
    // run is more than an hour away.
    fs::write(dir.join("gated.stamp"), "3600\n").unwrap();
    let steps = write_steps(
        &dir,
        json!([
            { "name": "first", "shell": format!("echo first >> {t}; echo to the log") },
            { "name": "fails", "command": ["/bin/sh", "-c", format!("echo fails >> {t}; exit 4")] },
            { "name": "gated", "shell": format!("echo gated >> {t}"),
              "spread": { "every": "1h", "stamp": "gated.stamp" } },
            { "name": "fresh", "shell": format!("echo fresh >> {t}"),
              "spread": { "every": "1h", "stamp": "fresh.stamp" } },
            { "name": "update", "shell": format!("echo update $COLONY_MAINTENANCE_REQUEST >> {t}"),
              "maintenance": { "estimate": "5m", "comment": "System update" } },
            { "name": "last", "command": ["/bin/sh", "-c", format!("echo $COLONY_MANAGE_STEP >> {t}")] },
        ]),
    );
    let lock = dir.join("lock");
    let args =
        ["--steps", path_str(&steps), "--lock", path_str(&lock), "--with-maintenance", path_str(&spool), "--once"];
    let (code, out, err, _) = manage(&args, &dir);
    // A step failed: 75; every other step still ran.
    assert_eq!(code, 75, "{err}");
    assert_eq!(lines(&trace), ["first", "fails", "fresh", "last"], "{err}");
    assert_eq!(out, "to the log\n");
    assert!(err.contains("step gated: skipped: not due until "), "{err}");
    assert!(err.contains("step fails: failed: exit code 4"), "{err}");
    assert!(
        err.contains(
            "run 1 failed: 6 step(s): 3 ok, 1 skipped, 1 filed for maintenance, 1 failed (fails: exit code 4)"
        ),
        "{err}"
    );
    // The update was filed, not run.
    let queued: Vec<_> = Spool::new(&spool).queued().unwrap().into_iter().map(Result::unwrap).collect();
    assert_eq!(queued.len(), 1);
    let r = &queued[0];
    assert_eq!((r.comment.as_str(), r.estimate, r.state), ("System update", 300.0, RequestState::Pending));
    assert_eq!(r.activity, Activity::Script { script: format!("echo update $COLONY_MAINTENANCE_REQUEST >> {t}") });
    assert!(err.contains(&format!("step update: filed as maintenance request {}", r.id)), "{err}");
    // The fresh stamp was created and used; the old one kept.
    let offset: i64 = fs::read_to_string(dir.join("fresh.stamp")).unwrap().trim().parse().unwrap();
    assert!((0..=3600).contains(&offset));
    assert_eq!(fs::read_to_string(dir.join("gated.stamp")).unwrap(), "3600\n");
    // The lock is free again and empty.
    assert_eq!(fs::read_to_string(&lock).unwrap(), "");
    // Again: the request is already queued (same comment), the fresh
    // stamp is now in its slot.
    fs::remove_file(&trace).unwrap();
    let (_, _, err, _) = manage(&args, &dir);
    assert_eq!(lines(&trace), ["first", "fails", "last"], "{err}");
    assert!(err.contains(&format!("step update: maintenance request {} is already queued for it", r.id)), "{err}");
    assert_eq!(Spool::new(&spool).queued().unwrap().len(), 1);
    // Without with-maintenance mode, the update just runs.
    fs::remove_file(&trace).unwrap();
    let (_, _, err, _) = manage(&["--steps", path_str(&steps), "--lock", path_str(&lock), "--once"], &dir);
    assert_eq!(lines(&trace), ["first", "fails", "update", "last"], "{err}");
}

#[test]
fn once_succeeds_with_zero_and_steps_from_flags() {
    let (_t, dir) = tmp();
    let trace = dir.join("trace");
    let t = path_str(&trace);
    let (code, _, err, _) = manage(
        &[
            "--step",
            &format!("a=echo a >> {t}"),
            "--step",
            &format!("b=echo $COLONY_MANAGE_STEP >> {t}"),
            "--lock",
            path_str(&dir.join("lock")),
            "--once",
        ],
        &dir,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&trace), ["a", "b"]);
    assert!(err.contains("run 1 done: 2 step(s): 2 ok"), "{err}");
}

#[test]
fn a_held_lock_names_its_holder_and_exits_75() {
    let (_t, dir) = tmp();
    let lock = dir.join("lock");
    let mut held = fs::OpenOptions::new().create(true).truncate(true).write(true).open(&lock).unwrap();
    held.lock().unwrap();
    writeln!(held, "4242").unwrap();
    let trace = dir.join("trace");
    let (code, _, err, _) =
        manage(&["--step", &format!("a=echo a >> {}", path_str(&trace)), "--lock", path_str(&lock), "--once"], &dir);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("is held by pid 4242"), "{err}");
    assert!(!trace.exists(), "no step ran");
    drop(held);
}

#[test]
fn the_run_time_limit_kills_the_step_and_skips_the_rest() {
    let (_t, dir) = tmp();
    let trace = dir.join("trace");
    let t = path_str(&trace);
    let (code, _, err, took) = manage(
        &[
            "--step",
            &format!("slow=trap '' TERM; echo slow >> {t}; sleep 30"),
            "--step",
            &format!("after=echo after >> {t}"),
            "--timeout",
            "0.5",
            "--grace",
            "0.2",
            "--lock",
            path_str(&dir.join("lock")),
            "--once",
        ],
        &dir,
    );
    assert_eq!(code, 75, "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(lines(&trace), ["slow"]);
    assert!(err.contains("step slow: failed: the run took longer than 0.500 s; killed (signal SIGKILL)"), "{err}");
    assert!(err.contains("step after: not run: the run took longer than 0.500 s"), "{err}");
}

#[test]
fn bad_configuration_is_one_line_with_2_or_65() {
    let (_t, dir) = tmp();
    let bad = write_steps(&dir, json!([{ "name": "x", "shell": "true", "spread": { "every": "1h" } }]));
    for (argv, code, want) in [
        (&["--once"][..], 2, "no steps"),
        (&["--step", "nocommand", "--once"], 2, "NAME=COMMAND"),
        (&["--step", "a=true", "--interval", "0", "--once"], 2, "--interval"),
        (&["--steps", "/nonexistent/steps.json", "--once"], 2, "--steps"),
        (&["--steps", path_str(&bad), "--once"], 65, "step 1 (\"x\"): \"spread\": \"stamp\""),
        (&["--step", "a=true", "--lock", "/nonexistent/dir/lock", "--once"], 73, "lock file"),
    ] {
        let (got, _, err, _) = manage(argv, &dir);
        assert_eq!(got, code, "{argv:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{argv:?}: {err}");
        assert!(err.contains(want), "{argv:?}: {err}");
    }
}

#[test]
fn under_the_supervisor_manage_files_a_request_that_maintenance_runs() {
    let (_t, dir) = tmp();
    let spool = dir.join("spool");
    let trace = dir.join("trace");
    let t = path_str(&trace);
    let steps = write_steps(
        &dir,
        json!([
            { "name": "switch", "shell": "echo switched" },
            { "name": "update", "shell": format!("echo updating; echo update >> {t}"),
              "maintenance": { "estimate": "1m", "comment": "System update" } },
        ]),
    );
    let job = |args: &[&str]| {
        let argv: Vec<&str> = [colony_bin()].into_iter().chain(args.iter().copied()).collect();
        json!({ "args": argv, "env": { "COLONY_LOG": "info" }, "killtime": 5 }).to_string()
    };
    let lock = dir.join("lock");
    let colony = Colony::with(Options {
        configs: vec![
            ("maint".into(), job(&["maintenance", "--spool", path_str(&spool), "--interval", "1h"])),
            (
                "manage".into(),
                job(&[
                    "manage",
                    "--steps",
                    path_str(&steps),
                    "--lock",
                    path_str(&lock),
                    "--with-maintenance",
                    path_str(&spool),
                    "--interval",
                    "1h",
                ]),
            ),
        ],
        ..Options::default()
    });
    colony.wait_log("[manage] switched");
    colony.wait_log("[manage] INFO  run 1 done: 2 step(s): 1 ok, 1 filed for maintenance");
    let done = colony.wait_for("the filed request archived", || {
        let archived = Spool::new(&spool).archived().ok()?;
        archived.into_iter().flatten().find(|r| r.comment == "System update" && r.state.is_final())
    });
    assert_eq!(done.state, RequestState::Success, "{done:?}");
    assert_eq!(done.attempts[0].output, "updating\n");
    assert_eq!(lines(&trace), ["update"]);
    colony.wait_log("[maint] INFO  left maintenance");
}
