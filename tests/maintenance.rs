//! Integration tests of `colony maintenance` and `colony ctl maintenance`
//! (issue 7): the real binary alone (`--once`, `--now`, hooks, the lock,
//! reboots) and under the supervisor (a request waits for its window and
//! runs inside it; a restart request restarts a supervised program). Every
//! wait is on something observable with a deadline; guards kill whatever a
//! test started, even when it fails.

mod common;

use colony_ctl::maintenance::{Activity, Request, RequestState, Spool};
use common::*;
use serde_json::json;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new().prefix("colony-maint-").tempdir().unwrap();
    let p = t.path().canonicalize().unwrap();
    (t, p)
}

/// A `colony` process started by a test, in its own process group;
/// dropping it kills it and everything it started.
struct Proc {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    done: Option<i32>,
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

impl Proc {
    fn start(args: &[&str], dir: &Path) -> Proc {
        let mut cmd = Command::new(colony_bin());
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("COLONY_LOG", "info")
            .env_remove("COLONY_MAINTENANCE_SPOOL")
            .process_group(0);
        let mut child = cmd.spawn().expect("start colony");
        let out = reader(child.stdout.take().unwrap());
        let err = reader(child.stderr.take().unwrap());
        Proc { child, out, err, done: None }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    fn context(&self) -> String {
        format!("--- stderr ---\n{}--- stdout ---\n{}--- end ---", self.stderr(), self.out.lock().unwrap())
    }

    fn wait_stderr(&self, pattern: &str) {
        wait_until(
            DEADLINE,
            &format!("{pattern:?} on stderr"),
            || self.context(),
            || self.stderr().contains(pattern).then_some(()),
        );
    }

    /// Waits for the exit (code, or 128 + signal), then for the output.
    fn wait_exit(&mut self, deadline: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                use std::os::unix::process::ExitStatusExt;
                let code = st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
                self.done = Some(code);
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until && (Arc::strong_count(&self.out) > 1 || Arc::strong_count(&self.err) > 1) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                return code;
            }
            if start.elapsed() > deadline {
                panic!("colony did not exit within {deadline:?}\n{}", self.context());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
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
                signal(p, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.done.is_none() {
            let _ = self.child.wait();
        }
    }
}

/// Runs colony with `args` to its end (10 s at most): (code, stdout, stderr).
fn run(args: &[&str], dir: &Path) -> (i32, String, String) {
    let mut p = Proc::start(args, dir);
    let code = p.wait_exit(Duration::from_secs(10));
    let out = p.out.lock().unwrap().clone();
    (code, out, p.stderr())
}

/// `colony ctl maintenance --spool SPOOL ARGS`.
fn ctl(spool: &Path, args: &[&str]) -> (i32, String, String) {
    let mut argv = vec!["ctl", "maintenance", "--spool", path_str(spool)];
    argv.extend(args);
    run(&argv, spool.parent().unwrap())
}

fn ctl_ok(spool: &Path, args: &[&str]) -> String {
    let (code, out, err) = ctl(spool, args);
    assert_eq!(code, 0, "ctl maintenance {args:?}: {err}");
    out
}

fn hook(dir: &Path, name: &str, script: &str) {
    fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn archived(spool: &Path) -> Vec<Request> {
    Spool::new(spool).archived().unwrap().into_iter().map(Result::unwrap).collect()
}

fn queued(spool: &Path) -> Vec<Request> {
    Spool::new(spool).queued().unwrap().into_iter().map(Result::unwrap).collect()
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------
// The ctl alone
// ---------------------------------------------------------------------------

#[test]
fn ctl_requests_dedup_list_show_and_delete() {
    let (_t, dir) = tmp();
    let spool = dir.join("spool");
    // No spool: one line, exit 1.
    let (code, _, err) = ctl(&spool, &["request", "reboot"]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist") && err.lines().count() == 1, "{err}");
    fs::create_dir(&spool).unwrap();
    let id = ctl_ok(&spool, &["request", "script", "-c", "rotate logs", "-e", "4m 2s", "echo rotated"]);
    let id = id.trim();
    assert_eq!(id.len(), 22, "{id}");
    // The same comment is not queued twice: the queued id comes back.
    let (code, out, err) = ctl(&spool, &["request", "script", "-c", "rotate logs", "echo again"]);
    assert_eq!((code, out.trim()), (0, id), "{err}");
    assert!(err.contains("already queued"), "{err}");
    ctl_ok(&spool, &["request", "reboot"]);
    ctl_ok(&spool, &["request", "restart", "web", "db"]);
    let list = ctl_ok(&spool, &["list"]);
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 4, "{list}");
    assert!(rows[0].starts_with("St Id"), "{list}");
    assert!(list.contains(&format!("-  {} --- TBA ---", &id[..7])), "{list}");
    assert!(list.contains("4m 2s       rotate logs"), "{list}");
    assert!(list.contains("Scheduled reboot") && list.contains("Restart web, db"), "{list}");
    let show = ctl_ok(&spool, &["show", &id[..5]]);
    assert!(show.contains(&format!("Request    {id}")) && show.contains("| echo rotated"), "{show}");
    let json: serde_json::Value = serde_json::from_str(&ctl_ok(&spool, &["list", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    // Bad input: exit 2, one line.
    for args in [
        &["request", "script", "-e", "12h30m", "x"][..],
        &["request", "script", "-e", "2d", "x"],
        &["request", "script", "  "],
        &["request", "restart", "../x"],
        &["request", "bogus"],
    ] {
        let (code, _, err) = ctl(&spool, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // Delete without a running job: archived at once.
    ctl_ok(&spool, &["delete", id]);
    assert_eq!(queued(&spool).len(), 2);
    let gone = &archived(&spool)[0];
    assert_eq!((gone.id.as_str(), gone.state), (id, RequestState::Deleted));
    let list = ctl_ok(&spool, &["list", "--all"]);
    assert!(list.contains(&format!("d  {}", &id[..7])), "{list}");
    // Unknown id: exit 1.
    let (code, _, err) = ctl(&spool, &["delete", "nosuchid"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no queued request"), "{err}");
}

#[test]
fn ctl_delete_refuses_an_ambiguous_prefix() {
    let (_t, dir) = tmp();
    let spool = Spool::new(dir.join("spool"));
    fs::create_dir(&spool.dir).unwrap();
    for (id, comment) in [("abcAAAAAAAAAAAAAAAAAAA", "one"), ("abcBBBBBBBBBBBBBBBBBBB", "two")] {
        let mut r = Request::new(Activity::Script { script: "true".into() }, comment, 60.0, 1.0);
        r.id = id.into();
        spool.add(&r).unwrap();
    }
    let (code, _, err) = ctl(&spool.dir, &["delete", "abc"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ambiguous") && err.contains("abcAAAA") && err.contains("abcBBBB"), "{err}");
    assert_eq!(queued(&spool.dir).len(), 2, "nothing deleted");
    ctl_ok(&spool.dir, &["delete", "abcB"]);
    assert_eq!(queued(&spool.dir).len(), 1);
}

// ---------------------------------------------------------------------------
// The job alone
// ---------------------------------------------------------------------------

#[test]
fn once_runs_due_requests_with_hooks_and_archives_their_output() {
    let (_t, dir) = tmp();
    let spool = dir.join("spool");
    fs::create_dir(&spool).unwrap();
    let trace = dir.join("trace");
    let t = path_str(&trace);
    hook(&dir.join("enter"), "10-first", &format!("echo enter $COLONY_MAINTENANCE_REQUESTS >> {t}"));
    hook(&dir.join("enter"), "20-second", &format!("echo enter2 >> {t}"));
    hook(&dir.join("leave"), "10-leave", &format!("echo leave >> {t}"));
    let ok = ctl_ok(&spool, &["request", "script", "-c", "ok", &format!("echo out; echo err >&2; echo run >> {t}")]);
    let flaky = ctl_ok(&spool, &["request", "script", "-c", "flaky", "exit 75"]);
    let fails = ctl_ok(&spool, &["request", "script", "-c", "fails", "#!/bin/sh\nexit 3"]);
    let (enter, leave) = (dir.join("enter"), dir.join("leave"));
    let args = [
        "maintenance",
        "--spool",
        path_str(&spool),
        "--enter-hooks",
        path_str(&enter),
        "--leave-hooks",
        path_str(&leave),
        "--once",
    ];
    let (code, _, err) = run(&args, &dir);
    assert_eq!(code, 0, "{err}");
    let ids: Vec<String> = [&ok, &flaky, &fails].iter().map(|s| s.trim().to_string()).collect();
    assert_eq!(lines(&trace), [format!("enter {}", ids.join(" ")), "enter2".into(), "run".into(), "leave".into()]);
    let done = archived(&spool);
    let ok_req = done.iter().find(|r| r.comment == "ok").unwrap();
    assert_eq!(ok_req.state, RequestState::Success);
    assert_eq!(ok_req.attempts[0].exit_code, Some(0));
    assert_eq!(ok_req.attempts[0].output, "out\nerr\n");
    assert!(spool.join("archive").join(&ok_req.id).join("request.json").is_file());
    let fails_req = done.iter().find(|r| r.comment == "fails").unwrap();
    assert_eq!((fails_req.state, fails_req.attempts[0].exit_code), (RequestState::Error, Some(3)));
    // 75: still queued, due again, one attempt recorded.
    let q = queued(&spool);
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].state, q[0].attempts.len()), (RequestState::Due, 1));
    assert!(!spool.join("in_maintenance").exists());
    assert!(err.contains("request") && err.contains("tries again at the next tick"), "{err}");
}

#[test]
fn enter_hooks_69_postpones_and_75_retries_with_the_exit_code() {
    let (_t, dir) = tmp();
    let spool = dir.join("spool");
    fs::create_dir(&spool).unwrap();
    let id = ctl_ok(&spool, &["request", "script", "-c", "job", "-e", "10m", "true"]);
    let id = id.trim();
    let enter = dir.join("enter");
    let args = ["maintenance", "--spool", path_str(&spool), "--enter-hooks", path_str(&enter), "--once"];
    // 75: stays due and in maintenance (the marker shows it).
    hook(&enter, "10-busy", "exit 75");
    let (code, _, err) = run(&args, &dir);
    assert_eq!(code, 75, "{err}");
    assert_eq!(queued(&spool)[0].state, RequestState::Due);
    let marker = fs::read_to_string(spool.join("in_maintenance")).unwrap();
    assert!(marker.trim().ends_with('Z'), "{marker:?}");
    let list = ctl_ok(&spool, &["list"]);
    assert!(list.starts_with(&format!("in maintenance since {}", marker.trim())), "{list}");
    // 69 beats 75: postponed by twice the estimate, out of maintenance.
    hook(&enter, "20-not-now", "exit 69");
    let (code, _, err) = run(&args, &dir);
    assert_eq!(code, 69, "{err}");
    let r = &queued(&spool)[0];
    assert_eq!((r.id.as_str(), r.state), (id, RequestState::Pending));
    assert!(r.next_due.unwrap() >= r.updated_at.unwrap() + 1199.0, "{r:?}");
    assert!(r.attempts.is_empty());
    assert!(!spool.join("in_maintenance").exists());
}

#[test]
fn a_second_instance_names_the_holder_and_exits_75() {
    let (_t, dir) = tmp();
    let spool = dir.join("spool");
    let first = Proc::start(&["maintenance", "--spool", path_str(&spool), "--interval", "1h"], &dir);
    first.wait_stderr("maintenance spool");
    let (code, _, err) = run(&["maintenance", "--spool", path_str(&spool), "--once"], &dir);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains(&format!("(pid {})", first.pid())) && err.contains(".lock"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(fs::read_to_string(spool.join(".lock")).unwrap().trim(), first.pid().to_string());
}

#[test]
fn ctl_run_and_delete_reach_the_running_job() {
    let (_t, dir) = tmp();
    let spool = dir.join("spool");
    let job = Proc::start(
        &["maintenance", "--spool", path_str(&spool), "--interval", "1h", "--window", "0 0 1 1 * +1h"],
        &dir,
    );
    job.wait_stderr("maintenance spool");
    // A new request is scheduled at once (next 1 January).
    let id = ctl_ok(&spool, &["request", "script", "-c", "later", "true"]);
    job.wait_stderr("-01-01T00:00:00Z (estimate 10m)");
    // `run` makes it tick now.
    ctl_ok(&spool, &["run"]);
    job.wait_stderr("tick asked for");
    // `delete` while it holds the spool: the job archives it.
    let (code, _, err) = ctl(&spool, &["delete", &id[..6]]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("(pid {})", job.pid())), "{err}");
    job.wait_stderr("deleted on request");
    wait_until(
        DEADLINE,
        "the deleted request in the archive",
        || job.context(),
        || archived(&spool).first().filter(|r| r.state == RequestState::Deleted).map(drop),
    );
    assert!(queued(&spool).is_empty());
}

#[test]
fn reboot_keeps_maintenance_across_the_reboot_and_fails_if_none_comes() {
    let (_t, dir) = tmp();
    let spool = dir.join("spool");
    fs::create_dir(&spool).unwrap();
    let trace = dir.join("trace");
    hook(&dir.join("leave"), "leave", &format!("echo leave >> {}", path_str(&trace)));
    ctl_ok(&spool, &["request", "reboot"]);
    let leave = dir.join("leave");
    let base = [
        "maintenance",
        "--spool",
        path_str(&spool),
        "--leave-hooks",
        path_str(&leave),
        "--reboot-command",
        &format!("echo going down; echo reboot >> {}", path_str(&trace)),
        "--reboot-timeout",
        "10m",
        "--once",
    ];
    let (code, _, err) = run(&base, &dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&trace), ["reboot"], "no leave hook before the reboot");
    assert!(spool.join("in_maintenance").exists());
    let r = &queued(&spool)[0];
    assert_eq!(r.state, RequestState::Running);
    assert_eq!(r.attempts[0].output, "going down\n");
    // The machine did not go down: still waiting ...
    let (code, _, err) = run(&base, &dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(queued(&spool)[0].state, RequestState::Running);
    // ... and after the timeout (pretending it is an hour later), error
    // and out of maintenance.
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let (code, _, err) = run(&[&base[..], &["--now", &later]].concat(), &dir);
    assert_eq!(code, 0, "{err}");
    let done = &archived(&spool)[0];
    assert_eq!(done.state, RequestState::Error);
    assert!(done.attempts[0].note.as_deref().unwrap().contains("did not reboot within 10m"), "{done:?}");
    assert_eq!(lines(&trace), ["reboot", "leave"]);
    assert!(!spool.join("in_maintenance").exists());
}

#[test]
fn bad_flags_and_files_are_one_line() {
    let (_t, dir) = tmp();
    let w = dir.join("w.json");
    fs::write(&w, r#"{"windows": ["0 2 * * *"]}"#).unwrap();
    for (argv, code, want) in [
        (&["--window", "0 2 * * *"][..], 2, "CRON +DURATION"),
        (&["--window", "0 25 * * * +1h"], 2, "--window"),
        (&["--tz", "Nowhere/Land"], 2, "unknown time zone"),
        (&["--interval", "0"], 2, "--interval"),
        (&["--config", "c"], 2, "go together"),
        (&["--windows", path_str(&w)], 65, "CRON +DURATION"),
        (&["--bogus"], 2, "--bogus"),
    ] {
        let all: Vec<&str> =
            ["maintenance", "--spool", path_str(&dir), "--once"].into_iter().chain(argv.iter().copied()).collect();
        let (got, _, err) = run(&all, &dir);
        assert_eq!(got, code, "{argv:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{argv:?}: {err}");
        assert!(err.contains(want), "{argv:?}: {err}");
    }
}

// ---------------------------------------------------------------------------
// Under the supervisor
// ---------------------------------------------------------------------------

fn job_config(args: &[&str]) -> String {
    let mut argv: Vec<&str> = vec![colony_bin(), "maintenance"];
    argv.extend(args);
    json!({ "args": argv, "env": { "COLONY_LOG": "info" }, "killtime": 5 }).to_string()
}

#[test]
fn under_the_supervisor_a_request_waits_for_its_window_and_runs_inside_it() {
    let (_t, dir) = tmp();
    let spool = dir.join("spool");
    fs::create_dir(&spool).unwrap();
    let trace = dir.join("trace");
    let t = path_str(&trace);
    hook(&dir.join("enter"), "enter", &format!("echo enter >> {t}"));
    hook(&dir.join("leave"), "leave", &format!("echo leave >> {t}"));
    let id =
        ctl_ok(&spool, &["request", "script", "-c", "patch", "-e", "5m", &format!("echo patched; echo run >> {t}")]);
    let id = id.trim().to_string();
    // The job starts two seconds before its window opens (pretended
    // time, advancing at the real pace).
    let config = job_config(&[
        "--spool",
        path_str(&spool),
        "--window",
        "0 2 * * * +1h",
        "--tz",
        "Europe/Berlin",
        "--now",
        "2026-05-02T01:59:58+02:00",
        "--interval",
        "1h",
        "--enter-hooks",
        path_str(&dir.join("enter")),
        "--leave-hooks",
        path_str(&dir.join("leave")),
    ]);
    let colony = Colony::with(Options { configs: vec![("maint".into(), config)], ..Options::default() });
    colony.wait_log(&format!("[maint] INFO  request {}: scheduled at 2026-05-02T00:00:00Z (estimate 5m)", &id[..7]));
    colony.wait_within(Duration::from_secs(10), "the request archived", || {
        archived(&spool).into_iter().find(|r| r.id == id && r.state == RequestState::Success)
    });
    let done = archived(&spool).into_iter().find(|r| r.id == id).unwrap();
    let slot = jiff::Timestamp::from_second(1_777_680_000).unwrap(); // 2026-05-02T00:00:00Z
    assert_eq!(done.next_due, Some(slot.as_second() as f64));
    assert!(done.attempts[0].started >= slot.as_second() as f64, "{done:?}");
    assert_eq!(done.attempts[0].output, "patched\n");
    let log = colony.log_text();
    let (sched, enter) = (log.find("scheduled at").unwrap(), log.find("entering maintenance").unwrap());
    assert!(sched < enter, "{log}");
    // The first tick, before the window, was idle: it ran the leave hook.
    colony.wait_for("the leave hook", || (lines(&trace).len() >= 4).then_some(()));
    assert_eq!(lines(&trace), ["leave", "enter", "run", "leave"], "{log}");
    // Inside the open window, a new request runs at once.
    let second = ctl_ok(&spool, &["request", "script", "-c", "second", "echo second"]);
    colony.wait_for("the second request archived", || {
        archived(&spool).into_iter().find(|r| r.id == second.trim() && r.state == RequestState::Success)
    });
    colony.wait_for("the second leave hook", || (lines(&trace).len() >= 6).then_some(()));
    assert_eq!(lines(&trace), ["leave", "enter", "run", "leave", "enter", "leave"]);
    assert!(!spool.join("in_maintenance").exists());
}

#[test]
fn under_the_supervisor_a_restart_request_restarts_a_program() {
    let (_t, dir) = tmp();
    let spool = dir.join("spool");
    fs::create_dir(&spool).unwrap();
    let starts = dir.join("starts");
    let web = sh_spec(&format!("echo $$ >> {}; exec sleep 1000", path_str(&starts)), &[]);
    let colony = Colony::with(Options { configs: vec![("web".into(), web)], ..Options::default() });
    let old = colony.wait_running("web");
    colony.add(
        "maint",
        &job_config(&[
            "--spool",
            path_str(&spool),
            "--config",
            path_str(&colony.config),
            "--messages",
            path_str(&colony.messages),
            "--interval",
            "1h",
        ]),
    );
    colony.wait_log("[maint] INFO  maintenance spool");
    let id = ctl_ok(&spool, &["request", "restart", "web"]);
    let done = colony.wait_for("the restart request archived", || {
        archived(&spool).into_iter().find(|r| r.id == id.trim() && r.state.is_final())
    });
    assert_eq!(done.state, RequestState::Success, "{done:?}");
    let new = colony.wait_new_pid("web", old);
    assert_eq!(lines(&starts).len(), 2);
    let Activity::Restart { sent_at: Some(sent), .. } = done.activity else { panic!("{done:?}") };
    let status = colony_ctl::read_program_status(&colony.messages.join(".status"), "web").unwrap();
    assert_eq!(status.pid, Some(new));
    assert!(status.started.unwrap() >= sent, "started {:?} < sent {sent}", status.started);
    assert!(done.attempts[0].note.as_deref().unwrap().contains("started again: web"), "{done:?}");
    // An unknown program: error, named.
    let id = ctl_ok(&spool, &["request", "restart", "nosuch"]);
    let done = colony.wait_for("the failed restart archived", || {
        archived(&spool).into_iter().find(|r| r.id == id.trim() && r.state.is_final())
    });
    assert_eq!((done.state, done.attempts[0].exit_code), (RequestState::Error, Some(65)));
    assert_eq!(colony.pid_of("web"), Some(new), "web untouched");
}

#[test]
fn under_the_supervisor_a_stop_interrupts_a_script_which_then_fails() {
    let (_t, dir) = tmp();
    let spool = dir.join("spool");
    fs::create_dir(&spool).unwrap();
    let pidfile = dir.join("script.pid");
    let colony = Colony::with(Options {
        configs: vec![("maint".into(), job_config(&["--spool", path_str(&spool), "--interval", "1h"]))],
        ..Options::default()
    });
    colony.wait_log("[maint] INFO  maintenance spool");
    let id = ctl_ok(
        &spool,
        &["request", "script", "-c", "long", &format!("echo $$ > {}; exec sleep 1000", path_str(&pidfile))],
    );
    let script = colony.wait_for("the script to run", || read_pid(&pidfile).filter(|&p| alive(p)));
    colony.ctl(&["restart", "maint"]);
    colony.wait_dead(script);
    let done = colony.wait_for("the interrupted request archived", || {
        archived(&spool).into_iter().find(|r| r.id == id.trim() && r.state.is_final())
    });
    assert_eq!(done.state, RequestState::Error);
    assert!(done.attempts[0].note.as_deref().unwrap().contains("interrupted"), "{done:?}");
    colony.wait_log_n("[maint] INFO  maintenance spool", 2);
}

#[test]
fn example_files_are_valid() {
    let (_t, dir) = tmp();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/maintenance");
    for hook in ["enter.d/10-peer-in-service", "enter.d/20-drain", "leave.d/90-undrain"] {
        let path = examples.join(hook);
        assert!(fs::metadata(&path).unwrap().permissions().mode() & 0o111 != 0, "{hook} is not executable");
        let ok = Command::new("/bin/sh").arg("-n").arg(&path).status().unwrap().success();
        assert!(ok, "{hook}: syntax error");
    }
    let (spool, config, messages, hooks) =
        (dir.join("spool"), dir.join("config"), dir.join("messages"), dir.join("hooks"));
    for d in [&config, &messages, &hooks] {
        fs::create_dir(d).unwrap();
    }
    let steps = dir.join("steps.json");
    fs::write(&steps, r#"{"steps": [{"name": "ok", "shell": "true"}]}"#).unwrap();
    let windows = examples.join("windows.json");
    let lock = dir.join("lock");
    // The example program files, with their paths moved into the test's
    // directory (hooks: empty directories; steps: one harmless step).
    let map = |a: &str| -> String {
        match a {
            "/var/spool/colony/maintenance" => path_str(&spool).into(),
            "/etc/colony/config" => path_str(&config).into(),
            "/run/colony/messages" => path_str(&messages).into(),
            "/etc/colony/maintenance/enter.d" | "/etc/colony/maintenance/leave.d" => path_str(&hooks).into(),
            "/etc/colony/maintenance/windows.json" => path_str(&windows).into(),
            "/etc/colony/maintenance/steps.json" => path_str(&steps).into(),
            "/run/lock/colony-manage.lock" => path_str(&lock).into(),
            other => {
                assert!(!other.starts_with('/'), "unmapped path {other}");
                other.into()
            }
        }
    };
    fs::create_dir(&spool).unwrap();
    for (name, job) in [("maintenance", "maintenance"), ("manage", "manage")] {
        let spec: serde_json::Value = serde_json::from_slice(&fs::read(examples.join(name)).unwrap()).unwrap();
        let args: Vec<String> =
            spec["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
        assert_eq!((args[0].as_str(), args[1].as_str()), ("colony", job));
        assert!(spec["killtime"].as_f64().unwrap() > 20.0, "{name}: killtime");
        let mut argv: Vec<String> = args[1..].iter().map(|a| map(a)).collect();
        // A Wednesday noon: outside both windows.
        argv.extend(["--once".into(), "--now".into(), "2026-12-02T12:00:00Z".into()]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (code, _, err) = run(&argv, &dir);
        assert_eq!(code, 0, "{name}: {err}");
    }
}
