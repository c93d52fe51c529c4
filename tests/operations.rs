//! Integration tests of operating colony (issue 4, parts 1, 2, 3 and 6 and
//! the 1000-program "Done when"): the status directory and `ctl status`,
//! `restart --wait`, STOP / START / SIGNAL and `"disabled"`, the log
//! formats and per-program log files, and the Prometheus metrics file. The
//! real binary, driven through its files and `colony ctl`; every wait is a
//! handshake with a deadline (see `common/mod.rs`).

mod common;

use colony_ctl::{read_program_status, read_status_dir, DaemonStatus, ProgramStatus, StateName, StatusSnapshot};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A config for a `/bin/sh -c` script with `env` and extra top-level keys.
fn sh_with(script: &str, env: &[(&str, &str)], extra: Value) -> String {
    let mut v: Value = serde_json::from_str(&sh_spec(script, env)).unwrap();
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v.to_string()
}

/// The default status directory: MESSAGES/.status.
fn status_dir(c: &Colony) -> PathBuf {
    c.messages.join(".status")
}

fn status_of(c: &Colony, name: &str) -> Option<ProgramStatus> {
    read_program_status(&status_dir(c), name)
}

fn daemon_of(c: &Colony) -> Option<DaemonStatus> {
    let bytes = fs::read(status_dir(c).join(".colony")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Waits until `name`'s status file satisfies `pred`; returns it.
fn wait_status(c: &Colony, name: &str, what: &str, pred: impl Fn(&ProgramStatus) -> bool) -> ProgramStatus {
    let dir = status_dir(c);
    wait_status_in(c, &dir, name, what, pred)
}

fn wait_status_in(
    c: &Colony,
    dir: &Path,
    name: &str,
    what: &str,
    pred: impl Fn(&ProgramStatus) -> bool,
) -> ProgramStatus {
    c.wait_for(&format!("status of {name}: {what}"), || read_program_status(dir, name).filter(|s| pred(s)))
}

fn running(s: &ProgramStatus) -> bool {
    s.state == StateName::Running && s.pid.is_some_and(alive)
}

/// What a `colony ctl` run gave.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `colony ctl --config C --messages M ARGS`, whatever its outcome.
fn ctl_run(c: &Colony, args: &[&str]) -> Ran {
    let out = ctl_command(c, args).output().expect("run colony ctl");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ctl_command(c: &Colony, args: &[&str]) -> Command {
    let mut cmd = Command::new(colony_bin());
    cmd.arg("ctl")
        .arg("--config")
        .arg(&c.config)
        .arg("--messages")
        .arg(&c.messages)
        .args(args)
        .env_remove("COLONY_STATUS_DIR")
        .env_remove("COLONY_CONFIG_DIR")
        .env_remove("COLONY_MESSAGES_DIR")
        .stdin(Stdio::null());
    cmd
}

/// Runs `colony ctl ARGS` and checks that it fails with exit code 1 and
/// one line on stderr containing `want`.
fn ctl_fails(c: &Colony, args: &[&str], want: &str) -> Ran {
    let r = ctl_run(c, args);
    assert_eq!(r.code, 1, "colony ctl {args:?}: want exit 1\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(r.stderr.contains(want), "colony ctl {args:?}: stderr {:?} lacks {want:?}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one clear line: {:?}", r.stderr);
    assert!(r.stderr.starts_with("colony ctl: "), "{:?}", r.stderr);
    r
}

/// Writes a message file by hand (what `ctl` would write).
fn message(c: &Colony, json: &str) {
    write_file(&c.messages, &colony_ctl::new_message_name(), json);
}

/// Whether `s` starts with an RFC 3339 UTC timestamp with milliseconds
/// (`2026-12-01T10:00:00.123Z`) followed by `sep`.
fn stamped(s: &str, sep: char) -> bool {
    let b = s.as_bytes();
    if b.len() < 25 {
        return false;
    }
    let pattern = b"dddd-dd-ddTdd:dd:dd.dddZ";
    pattern.iter().zip(b).all(|(&p, &c)| if p == b'd' { c.is_ascii_digit() } else { p == c })
        && s[24..].starts_with(sep)
}

/// Waits until `child` exits (with a deadline); returns its exit code.
fn wait_child(c: &Colony, child: &mut std::process::Child, deadline: Duration) -> i32 {
    c.wait_within(deadline, "colony ctl to return", || {
        child.try_wait().expect("try_wait").map(|s| s.code().unwrap_or(-1))
    })
}

/// Lines of a Prometheus text file that are samples, as (series, value).
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {l:?}"));
            let value = value.parse::<f64>().unwrap_or_else(|_| panic!("not a number in {l:?}"));
            (series.to_string(), value)
        })
        .collect()
}

fn sample(text: &str, series: &str) -> Option<f64> {
    samples(text).into_iter().find(|(s, _)| s == series).map(|(_, v)| v)
}

/// What identifies one written version of a file: inode, change time and
/// content (every write is a rename of a new file, so each one shows).
fn version(path: &Path) -> Option<(u64, i64, i64, Vec<u8>)> {
    let meta = fs::metadata(path).ok()?;
    let bytes = fs::read(path).ok()?;
    Some((meta.ino(), meta.ctime(), meta.ctime_nsec(), bytes))
}

/// Temporary files (`.NAME.PID.N.new`) left in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('.') && n.ends_with(".new"))
        .collect()
}

/// A shell script that ignores SIGTERM (its grandchild too) and waits.
const STUBBORN: &str = r#"trap '' TERM; /bin/sleep 1000 & : > "$READY"; wait"#;

// ---------------------------------------------------------------------------
// 1. Status
// ---------------------------------------------------------------------------

#[test]
fn status_files_follow_each_program_and_vanish_when_it_is_removed() {
    // An instant death waits 30 s: long enough to look at the backoff.
    let c = Colony::start(&["-m", "30", "-M", "60"]);
    let dir = status_dir(&c);
    c.add("web", &spec(&["/bin/sleep", "1000"]));
    c.add("crash", &sh_spec("exit 3", &[]));

    let pid = c.wait_running("web");
    let web = wait_status(&c, "web", "running", running);
    assert_eq!(web.name, "web");
    assert_eq!(web.pid, Some(pid), "the status names the pid of the PID file");
    assert_eq!((web.instance, web.restarts), (1, 0));
    assert_eq!(web.last_exit, None);
    assert_eq!(web.next_start, None);
    assert!(web.ready && !web.held && !web.disabled, "{web:?}");
    let started = web.started.expect("a running program has a start time");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(started <= now + 0.01 && started > now - 5.0, "started {started} vs now {now}");

    // Backoff: no pid, the exit code, and when it will start again.
    let crash = wait_status(&c, "crash", "in backoff", |s| s.state == StateName::Backoff);
    assert_eq!(crash.pid, None);
    assert_eq!(crash.started, None);
    assert_eq!((crash.instance, crash.restarts), (1, 0));
    let exit = crash.last_exit.expect("last exit");
    assert_eq!((exit.code, exit.signal), (Some(3), None));
    let next = crash.next_start.expect("next_start in backoff");
    let wait = next - crash.since;
    assert!((29.0..=30.5).contains(&wait), "next_start is {wait:.3} s after the exit, want 30 s");

    // START in backoff starts it now; it fails again and waits twice as long.
    c.ctl(&["start", "crash"]);
    let crash =
        wait_status(&c, "crash", "second instance in backoff", |s| s.instance == 2 && s.state == StateName::Backoff);
    assert_eq!(crash.restarts, 1);
    let wait = crash.next_start.unwrap() - crash.since;
    assert!((59.0..=60.5).contains(&wait), "next_start is {wait:.3} s after the exit, want 60 s");

    // Nothing to signal in backoff; STOP cancels the planned start, START
    // starts it at once.
    ctl_fails(&c, &["signal", "crash", "HUP"], "crash is not running (backoff)");
    c.ctl(&["stop", "crash"]);
    let crash = wait_status(&c, "crash", "stopped on request", |s| s.state == StateName::Stopped);
    assert!(crash.held && crash.next_start.is_none() && crash.instance == 2, "{crash:?}");
    c.ctl(&["start", "crash"]);
    let crash =
        wait_status(&c, "crash", "third instance in backoff", |s| s.instance == 3 && s.state == StateName::Backoff);
    assert!(!crash.held, "{crash:?}");

    // A restart: a new pid, one restart, the old instance's signal.
    c.ctl(&["restart", "web"]);
    let web = wait_status(&c, "web", "second instance", |s| s.instance == 2 && running(s));
    assert_ne!(web.pid, Some(pid));
    assert_eq!(web.restarts, 1);
    let exit = web.last_exit.expect("last exit");
    assert_eq!((exit.code, exit.signal), (None, Some(15)));
    assert_eq!(c.wait_running("web"), web.pid.unwrap());

    // The daemon's own file.
    let d = c.wait_for("the daemon file", || daemon_of(&c).filter(|d| d.programs == 2 && d.running == 1));
    assert_eq!(d.pid as i32, c.pid());
    assert_eq!(d.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(d.config, c.config);
    assert_eq!(d.messages, c.messages);
    assert!(!d.stopping);
    assert!(d.status_writes >= 5, "{d:?}");

    // Removed: its file goes, the other stays.
    c.ctl(&["remove", "web"]);
    c.wait_for("web's status file to go", || (!dir.join("web").exists()).then_some(()));
    c.wait_for("the daemon to count one program", || daemon_of(&c).filter(|d| d.programs == 1 && d.running == 0));
    assert!(status_of(&c, "crash").is_some());
    c.ctl(&["remove", "crash"]);
    c.wait_for("crash's status file to go", || (!dir.join("crash").exists()).then_some(()));
    c.wait_for("the daemon to count no program", || daemon_of(&c).filter(|d| d.programs == 0));
    let snap = read_status_dir(&dir).unwrap();
    assert!(snap.programs.is_empty(), "{snap:?}");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
}

#[test]
fn ctl_status_prints_a_table_and_json_and_exits_1_when_colony_is_gone() {
    let mut c = Colony::start(&["-m", "30", "-M", "30"]);
    c.add("web", &spec(&["/bin/sleep", "1000"]));
    c.add("crash", &sh_spec("exit 3", &[]));
    let pid = c.wait_running("web");
    wait_status(&c, "web", "running", running);
    wait_status(&c, "crash", "in backoff", |s| s.state == StateName::Backoff);

    let r = ctl_run(&c, &["status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST", "EXIT", "NOTE"], "{}", r.stdout);
    // Sorted by name; the columns line up under the header.
    assert!(lines[1].starts_with("crash "), "{}", r.stdout);
    assert!(lines[2].starts_with("web "), "{}", r.stdout);
    let col = |h: &str| lines[0].find(h).unwrap();
    assert_eq!(&lines[1][col("STATE")..col("STATE") + 7], "backoff");
    assert_eq!(&lines[2][col("STATE")..col("STATE") + 7], "running");
    assert!(lines[2][col("PID")..].starts_with(&pid.to_string()), "{}", r.stdout);
    assert!(lines[1][col("PID")..].starts_with("- "), "{}", r.stdout);
    assert!(lines[1][col("LAST EXIT")..].starts_with("code 3"), "{}", r.stdout);
    assert!(lines[1][col("NOTE")..].starts_with("starts in "), "{}", r.stdout);
    assert!(lines[2][col("RESTARTS")..].starts_with("0 "), "{}", r.stdout);

    // One program.
    let r = ctl_run(&c, &["status", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert!(r.stdout.lines().nth(1).unwrap().starts_with("web "), "{}", r.stdout);
    ctl_fails(&c, &["status", "nosuch"], "no status for \"nosuch\"");

    // JSON: the daemon and every program, as in the files.
    let r = ctl_run(&c, &["status", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim_end()).expect("one JSON document");
    assert_eq!(v["daemon"]["pid"], json!(c.pid()));
    assert_eq!(v["daemon"]["programs"], json!(2));
    let programs = v["programs"].as_array().unwrap();
    assert_eq!(programs.len(), 2);
    assert_eq!(programs[0]["name"], "crash");
    assert_eq!(programs[0]["state"], "backoff");
    assert_eq!(programs[0]["last_exit"], json!({"code": 3, "signal": null}));
    assert!(programs[0]["next_start"].is_f64());
    assert_eq!(programs[1]["name"], "web");
    assert_eq!(programs[1]["state"], "running");
    assert_eq!(programs[1]["pid"], json!(pid));
    assert_eq!(programs[1]["instance"], json!(1));
    assert_eq!(programs[1]["restarts"], json!(0));
    let file: Value = serde_json::from_slice(&fs::read(status_dir(&c).join("web")).unwrap()).unwrap();
    assert_eq!(programs[1], file, "the JSON output is the status file");
    let r = ctl_run(&c, &["status", "crash", "--json"]);
    let v: Value = serde_json::from_str(r.stdout.trim_end()).unwrap();
    assert_eq!(v["programs"].as_array().unwrap().len(), 1);

    // colony dies without cleaning up: the stale table is still printed,
    // then the command says so and fails.
    c.kill(libc::SIGKILL);
    c.wait_exit(DEADLINE);
    let r = ctl_run(&c, &["status"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 3, "the table is printed first: {}", r.stdout);
    assert!(r.stdout.contains("running"), "{}", r.stdout);
    assert_eq!(
        r.stderr.trim_end(),
        format!("colony ctl: colony (pid {}) is not running; this status may be stale", c.pid())
    );
    let r = ctl_run(&c, &["status", "--json"]);
    assert_eq!(r.code, 1);
    assert!(serde_json::from_str::<Value>(r.stdout.trim_end()).is_ok(), "{}", r.stdout);
}

#[test]
fn ctl_status_after_a_clean_exit_and_with_a_status_flag() {
    // --status DIR (relative to colony's working directory, which is root).
    let mut c = Colony::start(&["--status", "st"]);
    let dir = c.root.join("st");
    let dir_arg = path_str(&dir).to_string();
    c.add("web", &spec(&["/bin/sleep", "1000"]));
    let s = wait_status_in(&c, &dir, "web", "running", running);
    assert_eq!(s.pid, Some(c.wait_running("web")));
    assert!(!status_dir(&c).exists(), "no default status directory when --status is given");

    let r = ctl_run(&c, &["--status", &dir_arg, "status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.lines().nth(1).is_some_and(|l| l.starts_with("web ") && l.contains("running")), "{}", r.stdout);
    // Without the flag, ctl looks in the default place and finds nothing.
    let r = ctl_run(&c, &["status"]);
    assert_eq!(r.code, 1);
    // --status alone is enough.
    let out = Command::new(colony_bin())
        .args(["ctl", "--status", &dir_arg, "status", "web", "--json"])
        .env_remove("COLONY_CONFIG_DIR")
        .env_remove("COLONY_MESSAGES_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["programs"][0]["name"], "web");

    // A clean exit removes the daemon's file; programs show stopped.
    c.kill(libc::SIGTERM);
    let (st, _) = c.wait_exit(DEADLINE);
    assert!(st.success(), "{st:?}");
    assert!(!dir.join(".colony").exists());
    let r = ctl_run(&c, &["--status", &dir_arg, "status"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.lines().nth(1).is_some_and(|l| l.starts_with("web ") && l.contains("stopped")), "{}", r.stdout);
    assert_eq!(
        r.stderr.trim_end(),
        format!("colony ctl: no colony is running with the status directory {}", dir.display())
    );
}

#[test]
fn files_of_an_earlier_run_are_removed_from_the_status_directory_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap().join("status");
    fs::create_dir(&dir).unwrap();
    // What an earlier colony left (a program since removed, its daemon
    // file), and a file that is not colony's.
    let ghost = ProgramStatus {
        name: "ghost".into(),
        state: StateName::Running,
        pid: Some(1),
        started: Some(1.0),
        instance: 1,
        restarts: 0,
        last_exit: None,
        next_start: None,
        held: false,
        disabled: false,
        since: 1.0,
        ready: true,
        health: None,
        waiting_for: vec![],
        blocked: None,
    };
    fs::write(dir.join("ghost"), serde_json::to_vec(&ghost).unwrap()).unwrap();
    fs::write(dir.join(".colony"), "{}").unwrap();
    fs::write(dir.join("notes.txt"), "mine").unwrap();

    let c = Colony::start(&["--status", path_str(&dir)]);
    assert!(!dir.join("ghost").exists(), "the stale program file is removed at start");
    assert_eq!(fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine", "other files are kept");
    c.add("web", &spec(&["/bin/sleep", "1000"]));
    wait_status_in(&c, &dir, "web", "running", running);
    let r = ctl_run(&c, &["--status", path_str(&dir), "status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let names: Vec<&str> = r.stdout.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["web"], "{}", r.stdout);
    let d = read_status_dir(&dir).unwrap().daemon.expect("a fresh daemon file");
    assert_eq!(d.pid as i32, c.pid());
}

#[test]
fn restart_wait_returns_once_the_new_instance_runs() {
    let c = Colony::start(&[]);
    c.add("web", &spec(&["/bin/sleep", "1000"]));
    let old = c.wait_running("web");
    wait_status(&c, "web", "running", running);

    let r = ctl_run(&c, &["restart", "web", "--wait"]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    // No waiting here: when --wait returns, the new instance runs.
    let s = status_of(&c, "web").expect("status");
    assert_eq!(s.state, StateName::Running);
    assert_eq!(s.instance, 2);
    let new = s.pid.expect("pid");
    assert_ne!(new, old);
    assert!(alive(new), "the new instance {new} runs");
    assert!(!alive(old), "the old instance {old} is gone");
    assert_eq!(cmdline(new), ["/bin/sleep", "1000"]);

    // Again, with an explicit timeout.
    let r = ctl_run(&c, &["restart", "web", "--wait", "--timeout", "5"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = status_of(&c, "web").unwrap();
    assert!(s.instance == 3 && running(&s), "{s:?}");

    // Unknown program: refused at once.
    let t0 = Instant::now();
    ctl_fails(&c, &["restart", "nosuch", "--wait"], "no program named \"nosuch\"");
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[test]
fn restart_wait_waits_for_readiness() {
    let c = Colony::start(&[]);
    let go = c.root.join("go");
    fs::write(&go, "").unwrap();
    // Ready (a newline on fd 3) once the file `go` exists.
    let script = r#"while [ ! -e "$GO" ]; do /bin/sleep 0.02; done; echo >&3; exec /bin/sleep 1000"#;
    c.add("r", &sh_with(script, &[("GO", path_str(&go))], json!({"readiness": {"fd": 3}})));
    let first = wait_status(&c, "r", "ready", |s| running(s) && s.ready);
    assert_eq!(first.instance, 1);

    fs::remove_file(&go).unwrap();
    let mut waiter = ctl_command(&c, &["restart", "r", "--wait", "--timeout", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let s = wait_status(&c, "r", "second instance running, not ready", |s| s.instance == 2 && running(s));
    assert!(!s.ready, "{s:?}");
    assert!(waiter.try_wait().unwrap().is_none(), "--wait returned before the new instance was ready");
    let r = ctl_run(&c, &["status", "r"]);
    assert!(r.stdout.contains("not ready"), "{}", r.stdout);

    fs::write(&go, "").unwrap();
    let code = wait_child(&c, &mut waiter, DEADLINE);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let s = status_of(&c, "r").unwrap();
    assert!(s.instance == 2 && running(&s) && s.ready, "{s:?}");
}

#[test]
fn restart_wait_fails_with_a_clear_line_on_timeout_and_without_colony() {
    let mut c = Colony::start(&[]);
    let ready = c.root.join("stub.ready");
    c.add("stub", &sh_with(STUBBORN, &[("READY", path_str(&ready))], json!({"killtime": 3})));
    wait_status(&c, "stub", "running", running);
    c.wait_for("the TERM trap", || ready.exists().then_some(()));

    // The old instance ignores SIGTERM and is killed only after 3 s.
    let t0 = Instant::now();
    let r = ctl_run(&c, &["restart", "stub", "--wait", "--timeout", "0.3"]);
    let took = t0.elapsed().as_secs_f64();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("colony ctl: stub did not come back within 0.3 s (now stopping"),
        "stderr: {:?}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1);
    assert!((0.3..2.0).contains(&took), "returned after {took:.3} s");
    assert_eq!(status_of(&c, "stub").unwrap().state, StateName::Stopping);

    // colony gone (killed): --wait refuses at once and sends nothing.
    c.add("web", &spec(&["/bin/sleep", "1000"]));
    wait_status(&c, "web", "running", running);
    c.kill(libc::SIGKILL);
    c.wait_exit(DEADLINE);
    let t0 = Instant::now();
    let dir = status_dir(&c);
    ctl_fails(
        &c,
        &["restart", "web", "--wait"],
        &format!("cannot wait: no colony is running with the status directory {}", dir.display()),
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    let left = colony_ctl::list_messages(&c.messages).unwrap();
    assert!(left.is_empty(), "no RESTART was written for a dead colony: {left:?}");

    // No status directory at all.
    let r = Command::new(colony_bin())
        .args(["ctl", "--config"])
        .arg(&c.config)
        .arg("--messages")
        .arg(c.root.join("elsewhere"))
        .args(["restart", "web", "--wait"])
        .env_remove("COLONY_STATUS_DIR")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("cannot wait: no colony is running"));
}

// ---------------------------------------------------------------------------
// 2. Runtime control: STOP, START, SIGNAL, disabled
// ---------------------------------------------------------------------------

#[test]
fn stop_holds_a_program_across_restart_all_and_a_config_change_until_start() {
    let c = Colony::start(&[]);
    c.add("a", &spec(&["/bin/sleep", "1000"]));
    c.add("b", &spec(&["/bin/sleep", "1000"]));
    let a = c.wait_running("a");
    c.wait_running("b");
    wait_status(&c, "b", "running", running);

    c.ctl(&["stop", "a"]);
    c.wait_log("a: stop requested; it stays stopped until START or RESTART");
    c.wait_reaped(a);
    let s = wait_status(&c, "a", "stopped on request", |s| s.state == StateName::Stopped);
    assert!(s.held && !s.disabled && s.pid.is_none(), "{s:?}");
    assert_eq!(s.last_exit.and_then(|e| e.signal), Some(15));
    assert_eq!(c.pid_of("a"), None);
    let r = ctl_run(&c, &["status", "a"]);
    assert!(r.stdout.contains("stopped on request"), "{}", r.stdout);

    // RESTART-ALL passes it over: b gets its second instance, a does not.
    c.ctl(&["restart-all"]);
    wait_status(&c, "b", "second instance", |s| s.instance == 2 && running(s));
    let s = status_of(&c, "a").unwrap();
    assert!(s.state == StateName::Stopped && s.held && s.instance == 1, "{s:?}");

    // A new config does not end the hold either.
    c.add("a", &spec(&["/bin/sleep", "1001"]));
    c.wait_log("a: config changed, restarting");
    c.add("zzz-later", &spec(&["/bin/sleep", "1000"]));
    wait_status(&c, "zzz-later", "running", running);
    let s = status_of(&c, "a").unwrap();
    assert!(s.state == StateName::Stopped && s.held && s.instance == 1, "{s:?}");
    assert_eq!(c.pid_of("a"), None);
    assert_eq!(c.count_log("a: started"), 1, "{}", c.log_text());

    // START: it runs again, with the new config.
    c.ctl(&["start", "a"]);
    c.wait_log("a: start requested");
    let s = wait_status(&c, "a", "running again", running);
    assert!(!s.held && s.instance == 2, "{s:?}");
    assert_eq!(cmdline(s.pid.unwrap()), ["/bin/sleep", "1001"]);
    // START of a running program leaves it alone.
    c.ctl(&["start", "a"]);
    c.wait_log_n("a: start requested", 2);
    c.ctl(&["restart", "zzz-later"]);
    wait_status(&c, "zzz-later", "second instance", |s| s.instance == 2 && running(s));
    assert_eq!(status_of(&c, "a").unwrap().instance, 2);

    // STOP written by hand, ended by RESTART (--wait).
    message(&c, r#"{"type": "STOP", "name": "a"}"#);
    wait_status(&c, "a", "stopped", |s| s.state == StateName::Stopped && s.held);
    let r = ctl_run(&c, &["restart", "a", "--wait"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = status_of(&c, "a").unwrap();
    assert!(running(&s) && !s.held && s.instance == 3, "{s:?}");
    // START by hand for an unknown program is rejected.
    message(&c, r#"{"type": "START", "name": "nosuch"}"#);
    c.wait_log("no program named \"nosuch\" is configured; moved aside");
}

#[test]
fn signal_reaches_the_main_process_only_and_does_not_restart_it() {
    let c = Colony::start(&[]);
    let out = c.root.join("got");
    let gpid_file = c.root.join("gpid");
    let script = r#"trap 'echo hup >> "$OUT"' HUP; trap 'echo usr1 >> "$OUT"' USR1
/bin/sleep 1000 & echo $! > "$GPID"; while :; do wait; done"#;
    c.add("x", &sh_spec(script, &[("OUT", path_str(&out)), ("GPID", path_str(&gpid_file))]));
    let pid = c.wait_running("x");
    let gpid = c.wait_for("the grandchild", || read_pid(&gpid_file).filter(|&p| alive(p)));
    let got = || fs::read_to_string(&out).unwrap_or_default();

    c.ctl(&["signal", "x", "HUP"]);
    c.wait_log("x: SIGHUP requested");
    c.wait_for("the HUP trap", || (got() == "hup\n").then_some(()));
    // A raw message with another signal name.
    message(&c, r#"{"type": "SIGNAL", "name": "x", "signal": "USR1"}"#);
    c.wait_for("the USR1 trap", || (got() == "hup\nusr1\n").then_some(()));
    c.ctl(&["signal", "x", "SIGHUP"]);
    c.wait_for("the second HUP", || (got() == "hup\nusr1\nhup\n").then_some(()));

    // Not restarted, and only the main process got them: the grandchild
    // (same process group, default HUP action) still runs.
    let s = status_of(&c, "x").unwrap();
    assert!(running(&s) && s.instance == 1 && s.pid == Some(pid), "{s:?}");
    assert!(alive(pid) && alive(gpid));
    assert_eq!(c.count_log("x: started"), 1);

    // A stopped program cannot be signalled: ctl refuses, and so does
    // colony for a message written by hand.
    c.ctl(&["stop", "x"]);
    wait_status(&c, "x", "stopped", |s| s.state == StateName::Stopped);
    ctl_fails(&c, &["signal", "x", "HUP"], "x is not running (stopped)");
    message(&c, r#"{"type": "SIGNAL", "name": "x", "signal": "HUP"}"#);
    c.wait_log("x is not running; moved aside");
    let r = ctl_run(&c, &["signal", "x", "NOSUCH"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn a_disabled_program_is_stopped_and_cannot_be_started() {
    let c = Colony::start(&[]);
    c.add("d", &json!({"args": ["/bin/sleep", "1000"], "disabled": true}).to_string());
    c.add("e", &spec(&["/bin/sleep", "1000"]));
    wait_status(&c, "e", "running", running);
    let s = wait_status(&c, "d", "stopped", |s| s.state == StateName::Stopped);
    assert!(s.disabled && !s.held && s.pid.is_none() && s.instance == 0, "{s:?}");
    assert_eq!(c.pid_of("d"), None);
    let r = ctl_run(&c, &["status", "d"]);
    assert!(r.stdout.contains("disabled"), "{}", r.stdout);

    ctl_fails(&c, &["start", "d"], "d is disabled in its config file");
    ctl_fails(&c, &["restart", "d", "--wait"], "d is disabled in its config file");
    // Without --wait ctl just writes the message; colony rejects it.
    c.ctl(&["restart", "d"]);
    c.wait_log("d is disabled in its config file; moved aside");
    message(&c, r#"{"type": "START", "name": "d"}"#);
    c.wait_log_n("d is disabled in its config file; moved aside", 2);
    // RESTART-ALL passes it over.
    c.ctl(&["restart-all"]);
    wait_status(&c, "e", "second instance", |s| s.instance == 2 && running(s));
    let s = status_of(&c, "d").unwrap();
    assert!(s.state == StateName::Stopped && s.instance == 0, "{s:?}");
    assert_eq!(c.count_log("d: started"), 0);

    // Enabled: it starts. Disabled again: it stops.
    c.add("d", &json!({"args": ["/bin/sleep", "1000"], "disabled": false}).to_string());
    let s = wait_status(&c, "d", "running", running);
    assert!(!s.disabled && s.instance == 1, "{s:?}");
    let pid = s.pid.unwrap();
    c.add("d", &json!({"args": ["/bin/sleep", "1000"], "disabled": true}).to_string());
    let s = wait_status(&c, "d", "stopped", |s| s.state == StateName::Stopped);
    assert!(s.disabled && s.pid.is_none(), "{s:?}");
    c.wait_reaped(pid);
    ctl_fails(&c, &["start", "d"], "d is disabled in its config file");
}

// ---------------------------------------------------------------------------
// 3. Logs
// ---------------------------------------------------------------------------

#[test]
fn json_logs_are_one_object_per_line_with_program_stream_and_line() {
    let c = Colony::start(&["--log-format", "json"]);
    let script = r#"echo to-stdout; echo to-stderr >&2; printf '%s\n' 'a "quoted" \ line'; exec /bin/sleep 1000"#;
    c.add("web", &sh_spec(script, &[]));
    c.wait_log("to-stdout");
    c.wait_log("to-stderr");
    c.wait_log("quoted");
    c.wait_log("web: started, pid");

    let parsed: Vec<Value> = c
        .log()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", c.log_text())))
        .collect();
    for v in &parsed {
        let o = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
        assert!(o.get("ts").and_then(Value::as_str).is_some_and(|t| stamped(&format!("{t} "), ' ')), "{v}");
        let keys: BTreeSet<&str> = o.keys().map(String::as_str).collect();
        let own = BTreeSet::from(["ts", "level", "msg"]);
        let child = BTreeSet::from(["ts", "program", "stream", "line"]);
        assert!(keys == own || keys == child, "unexpected keys {keys:?} in {v}");
    }
    let child = |line: &str| {
        parsed.iter().find(|v| v["line"] == line).unwrap_or_else(|| panic!("no child line {line:?}\n{}", c.log_text()))
    };
    assert_eq!(child("to-stdout")["program"], "web");
    assert_eq!(child("to-stdout")["stream"], "stdout");
    assert_eq!(child("to-stderr")["program"], "web");
    assert_eq!(child("to-stderr")["stream"], "stderr");
    assert_eq!(child(r#"a "quoted" \ line"#)["stream"], "stdout");
    let started =
        parsed.iter().find(|v| v["msg"].as_str().is_some_and(|m| m.starts_with("web: started, pid"))).unwrap();
    assert_eq!(started["level"], "info");
    assert!(parsed.iter().any(|v| v["msg"].as_str().is_some_and(|m| m.contains("supervising"))));
}

#[test]
fn log_timestamps_always_never_and_auto() {
    let script = "echo hello; exec /bin/sleep 1000";
    for (flag, want) in [("always", true), ("never", false), ("auto", true)] {
        // auto: the harness reads colony's stderr through a pipe.
        let c = Colony::start(&["--log-timestamps", flag]);
        c.add("web", &sh_spec(script, &[]));
        c.wait_log("[web] hello");
        c.wait_log("web: started, pid");
        for line in c.log() {
            assert_eq!(stamped(&line, ' '), want, "--log-timestamps {flag}: {line:?}\n{}", c.log_text());
        }
        let hello = c.wait_log("[web] hello");
        let started = c.wait_log("web: started, pid");
        if want {
            assert_eq!(&hello[25..], "[web] hello");
            assert!(started[25..].starts_with("INFO  web: started"), "{started:?}");
        } else {
            assert_eq!(hello, "[web] hello");
            assert!(started.starts_with("INFO  web: started"), "{started:?}");
        }
    }
}

#[test]
fn a_programs_log_file_rotates_by_size_keeps_n_files_and_stays_out_of_colonys_log() {
    let c = Colony::start(&[]);
    let file = c.root.join("logger.log");
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", file.display()));
    // 400 lines of 40 bytes (65 with the timestamp): about 13 files' worth.
    let script = r#"i=0; while [ $i -lt 400 ]; do printf 'line %03d ...............................\n' $i; i=$((i+1)); done
echo last-stderr >&2; echo last-stdout; exec /bin/sleep 1000"#;
    c.add("logger", &sh_with(script, &[], json!({"log": {"file": path_str(&file), "max_size": 2000, "keep": 2}})));
    let files = [numbered(2), numbered(1), file.clone()];
    let read_all = || files.iter().map(|p| fs::read_to_string(p).unwrap_or_default()).collect::<Vec<_>>();
    let texts = c.wait_for("both last lines in the log files", || {
        let t = read_all();
        let all = t.concat();
        (all.contains("last-stderr\n") && all.contains("last-stdout\n")).then_some(t)
    });
    let context = || format!("files: {texts:#?}\n{}", c.log_text());
    assert!(!numbered(3).exists(), "keep 2: no FILE.3\n{}", context());
    for (p, t) in files.iter().zip(&texts) {
        assert!(!t.is_empty(), "{} is empty\n{}", p.display(), context());
        assert!(t.len() <= 2000, "{} has {} bytes\n{}", p.display(), t.len(), context());
        assert_eq!(fs::metadata(p).unwrap().len(), t.len() as u64);
        for line in t.lines() {
            assert!(stamped(line, ' '), "{}: {line:?}", p.display());
        }
    }
    // The rotated files were full: one more line would not have fitted.
    for t in &texts[..2] {
        assert!(t.len() > 2000 - 66, "{}", context());
    }
    // Oldest to newest, the stdout lines are the last ones, in order.
    let numbers: Vec<u32> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| l[25..].strip_prefix("line "))
        .map(|rest| rest[..3].parse().unwrap())
        .collect();
    assert_eq!(numbers.last(), Some(&399), "{}", context());
    let first = numbers[0];
    assert_eq!(numbers, (first..400).collect::<Vec<_>>(), "{}", context());
    assert!(first > 300, "older lines were rotated away\n{}", context());

    // None of it went to colony's own log.
    c.wait_log("logger: started, pid");
    for l in c.log() {
        assert!(!l.contains("[logger]") && !l.contains("line 3") && !l.contains("last-"), "in colony's log: {l:?}");
    }
}

// ---------------------------------------------------------------------------
// 6. Metrics
// ---------------------------------------------------------------------------

#[test]
fn metrics_file_has_program_and_daemon_metrics() {
    // A relative path is taken from colony's working directory (root).
    let c = Colony::start(&["--metrics", "metrics.prom", "-m", "30", "-M", "30"]);
    let path = c.root.join("metrics.prom");
    let read = || fs::read_to_string(&path).unwrap_or_default();
    c.add("x", &spec(&["/bin/sleep", "1000"]));
    c.add("y", &sh_spec("exit 3", &[]));

    let text = c.wait_for("metrics of x running and y crashed", || {
        let t = read();
        (sample(&t, r#"colony_program_up{program="x"}"#) == Some(1.0)
            && sample(&t, r#"colony_program_last_exit_code{program="y"}"#) == Some(3.0))
        .then_some(t)
    });
    let context = || format!("--- metrics ---\n{text}\n{}", c.log_text());
    assert_eq!(sample(&text, r#"colony_program_up{program="y"}"#), Some(0.0), "{}", context());
    assert_eq!(sample(&text, r#"colony_program_restarts_total{program="x"}"#), Some(0.0), "{}", context());
    assert_eq!(sample(&text, r#"colony_program_restarts_total{program="y"}"#), Some(0.0), "{}", context());
    assert_eq!(sample(&text, r#"colony_program_last_exit_code{program="x"}"#), None, "{}", context());
    assert_eq!(sample(&text, "colony_programs"), Some(2.0), "{}", context());
    let build = format!(r#"colony_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&text, &build), Some(1.0), "{}", context());
    let started = wait_status(&c, "x", "running", running).started.unwrap();
    let start = sample(&text, r#"colony_program_start_time_seconds{program="x"}"#).expect("start time of x");
    assert!((start - started).abs() < 0.01, "{start} vs {started}");
    assert_eq!(sample(&text, r#"colony_program_start_time_seconds{program="y"}"#), None);
    // Every metric has its HELP and TYPE.
    for (metric, kind) in [
        ("colony_program_up", "gauge"),
        ("colony_program_restarts_total", "counter"),
        ("colony_program_last_exit_code", "gauge"),
        ("colony_program_start_time_seconds", "gauge"),
        ("colony_programs", "gauge"),
        ("colony_build_info", "gauge"),
    ] {
        assert!(text.contains(&format!("# HELP {metric} ")), "{metric}\n{}", context());
        assert!(text.contains(&format!("# TYPE {metric} {kind}\n")), "{metric}\n{}", context());
    }
    assert!(text.ends_with('\n'));

    // A restart: counted, and the exit code of a death by SIGTERM.
    c.ctl(&["restart", "x"]);
    let text = c.wait_for("x's restart in the metrics", || {
        let t = read();
        (sample(&t, r#"colony_program_restarts_total{program="x"}"#) == Some(1.0)).then_some(t)
    });
    assert_eq!(sample(&text, r#"colony_program_last_exit_code{program="x"}"#), Some(143.0), "{text}");
    assert_eq!(sample(&text, r#"colony_program_up{program="x"}"#), Some(1.0), "{text}");

    // A removed program leaves the metrics.
    c.ctl(&["remove", "y"]);
    let text = c.wait_for("y gone from the metrics", || {
        let t = read();
        (sample(&t, "colony_programs") == Some(1.0)).then_some(t)
    });
    assert!(!text.contains(r#"program="y""#), "{text}");
    assert!(temp_files(&c.root).is_empty(), "{:?}", temp_files(&c.root));
}

#[test]
fn metrics_file_appears_at_start_with_no_program() {
    let c = Colony::start(&["--metrics", "metrics.prom"]);
    let path = c.root.join("metrics.prom");
    let text = c.wait_for("the metrics file", || fs::read_to_string(&path).ok());
    assert_eq!(sample(&text, "colony_programs"), Some(0.0), "{text}");
    let build = format!(r#"colony_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&text, &build), Some(1.0), "{text}");
    assert!(!text.contains("program=\""), "{text}");
}

#[test]
fn metrics_are_rewritten_at_most_once_per_second_during_a_crash_loop() {
    let c = Colony::start(&["--metrics", "metrics.prom", "-m", "0.05", "-M", "0.05"]);
    let path = c.root.join("metrics.prom");
    c.add("crash", &sh_spec("exit 1", &[]));
    let crashes = r#"colony_program_restarts_total{program="crash"}"#;
    c.wait_for("crash in the metrics file", || {
        let v = version(&path)?;
        sample(&String::from_utf8_lossy(&v.3), crashes).map(drop)
    });
    let before = c.wait_for("crash's status", || status_of(&c, "crash")).instance;

    // Watch for 2.5 s: every rewrite is a new inode or change time.
    let t0 = Instant::now();
    let mut seen = vec![(Duration::ZERO, version(&path).unwrap())];
    while t0.elapsed() < Duration::from_millis(2500) {
        if let Some(v) = version(&path) {
            if v != seen.last().unwrap().1 {
                seen.push((t0.elapsed(), v));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let after = status_of(&c, "crash").unwrap().instance;
    let times: Vec<f64> = seen.iter().map(|(t, _)| t.as_secs_f64()).collect();
    assert!(after >= before + 10, "the crash loop went on ({before} → {after} instances)");
    assert!(seen.len() >= 2, "the metrics followed the crash loop: {times:?}");
    assert!(seen.len() <= 4, "{} versions within 2.5 s: {times:?}", seen.len());
    for w in times[1..].windows(2) {
        assert!(w[1] - w[0] >= 0.8, "two rewrites {:.3} s apart: {times:?}", w[1] - w[0]);
    }
    // The restarts counter in the versions only grows.
    let counts: Vec<f64> = seen
        .iter()
        .map(|(_, v)| {
            let t = String::from_utf8_lossy(&v.3);
            sample(&t, crashes).unwrap_or_else(|| panic!("no {crashes} in\n{t}"))
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert!(temp_files(&c.root).is_empty(), "{:?}", temp_files(&c.root));
}

#[test]
fn status_and_metrics_are_not_rewritten_without_a_change() {
    // Rescans every 0.1 s: the loop is busy, but nothing changes.
    let c = Colony::start(&["--metrics", "metrics.prom", "--frequency", "0.1"]);
    let path = c.root.join("metrics.prom");
    let dir = status_dir(&c);
    c.add("ticker", &sh_spec("while :; do echo tick; /bin/sleep 0.1; done", &[]));
    wait_status(&c, "ticker", "running", running);
    c.wait_for("ticker up in the metrics", || {
        let t = fs::read_to_string(&path).ok()?;
        (sample(&t, r#"colony_program_up{program="ticker"}"#) == Some(1.0)).then_some(())
    });
    let files = [path.clone(), dir.join("ticker"), dir.join(".colony")];
    let before: Vec<_> = files.iter().map(|p| version(p).unwrap()).collect();
    let writes = daemon_of(&c).unwrap().status_writes;

    // 15 more ticks: more than a second of output and rescans.
    let n = c.count_log("[ticker] tick");
    c.wait_log_n("[ticker] tick", n + 15);
    let after: Vec<_> = files.iter().map(|p| version(p).unwrap()).collect();
    for ((p, b), a) in files.iter().zip(&before).zip(&after) {
        assert!(b == a, "{} was rewritten without a change", p.display());
    }
    assert_eq!(daemon_of(&c).unwrap().status_writes, writes);
}

// ---------------------------------------------------------------------------
// Done when: 1000 programs and restart-all
// ---------------------------------------------------------------------------

const MANY: usize = 1000;

/// Reads the status directory once the daemon's file is at least as new as
/// every program's (they are written in one pass, the daemon's last).
fn settled(dir: &Path) -> Option<StatusSnapshot> {
    let snap = read_status_dir(dir).ok()?;
    let d = snap.daemon.as_ref()?;
    let newest = snap.programs.iter().map(|p| p.since).fold(f64::MIN, f64::max);
    (d.updated >= newest).then_some(snap)
}

#[test]
fn restart_all_of_1000_programs_leaves_a_consistent_status_directory() {
    let t0 = Instant::now();
    let configs: Vec<(String, String)> =
        (0..MANY).map(|i| (format!("p{i:04}"), spec(&["/bin/sleep", "1000"]))).collect();
    let mut c = Colony::with(Options { configs, ..Options::default() });
    let dir = status_dir(&c);
    // Only matters if something is wrong; this machine may be busy.
    let long = Duration::from_secs(60);

    let first = c.wait_within(long, "1000 programs running", || {
        let d = daemon_of(&c)?;
        if d.running != MANY {
            return None;
        }
        settled(&dir).filter(|s| s.programs.len() == MANY && s.programs.iter().all(|p| p.state == StateName::Running))
    });
    let started = t0.elapsed();
    let writes_before = first.daemon.as_ref().unwrap().status_writes;
    let old: BTreeSet<i32> = first.programs.iter().map(|p| p.pid.unwrap()).collect();
    assert_eq!(old.len(), MANY);

    let t1 = Instant::now();
    c.ctl(&["restart-all"]);
    c.wait_log("restarting every program");
    let snap = c.wait_within(long, "1000 programs running their second instance", || {
        // Cheap first: the daemon's count of writes.
        let d = daemon_of(&c)?;
        if d.running != MANY || d.status_writes < writes_before + MANY as u64 {
            return None;
        }
        settled(&dir).filter(|s| {
            s.programs.len() == MANY && s.programs.iter().all(|p| p.state == StateName::Running && p.instance == 2)
        })
    });
    let restarted = t1.elapsed();

    // Exactly one file per program, nothing stale, nothing left over.
    let names: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    let want: BTreeSet<String> = (0..MANY).map(|i| format!("p{i:04}")).collect();
    assert_eq!(names, want, "one status file per program, no stale one");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));

    // Every pid alive, colony's child, running the program; and colony has
    // no other child.
    let daemon = c.pid();
    let mut pids = BTreeSet::new();
    for p in &snap.programs {
        let pid = p.pid.expect("pid");
        assert!(alive(pid), "{}: pid {pid} is not alive", p.name);
        assert_eq!(ppid(pid), Some(daemon), "{}: pid {pid} is not colony's child", p.name);
        assert_eq!(cmdline(pid), ["/bin/sleep", "1000"], "{}", p.name);
        assert!(!old.contains(&pid), "{}: still the old pid {pid}", p.name);
        assert_eq!(p.restarts, 1);
        assert_eq!(p.last_exit.and_then(|e| e.signal), Some(15), "{}", p.name);
        pids.insert(pid);
    }
    assert_eq!(pids.len(), MANY);
    let children: BTreeSet<i32> = children_of(daemon).into_iter().filter(|&p| alive(p)).collect();
    assert_eq!(children, pids, "colony's live children are exactly the pids in the status");
    assert!(old.iter().all(|&p| !alive(p)), "an old instance survived");

    // Status writes: each program goes running → stopping → running. The
    // waiting and starting states in between last within one loop turn (the
    // reap starts the new instance at once), so 2 writes per program are
    // expected; 3 is the bound (one per state change, one to spare).
    let d = snap.daemon.unwrap();
    assert_eq!((d.programs, d.running), (MANY, MANY));
    let writes = d.status_writes - writes_before;
    eprintln!(
        "1000 programs: started in {:.2} s, restarted in {:.2} s, {writes} status writes for the restart",
        started.as_secs_f64(),
        restarted.as_secs_f64()
    );
    assert!(writes >= MANY as u64, "every new instance was written: {writes}");
    assert!(writes <= 3 * MANY as u64, "{writes} status writes for {MANY} restarts");

    // A clean stop of all of them (and a quick cleanup).
    c.kill(libc::SIGTERM);
    let (st, _) = c.wait_exit(long);
    assert!(st.success(), "{st:?}");
    assert!(pids.iter().all(|&p| !alive(p)), "a program outlived colony");
    let snap = read_status_dir(&dir).unwrap();
    assert!(snap.daemon.is_none(), "the daemon's file is removed at exit");
    assert_eq!(snap.programs.len(), MANY);
    assert!(snap.programs.iter().all(|p| p.state == StateName::Stopped && p.pid.is_none()));
}
