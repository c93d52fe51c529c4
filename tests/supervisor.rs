//! Integration tests of `colony run` (issue 3, "Done when"): the real
//! binary in a temporary directory, driven through its files, `colony ctl`,
//! ncolony's ctl and signals. Every wait is a handshake on something
//! observable (a PID file, a log line, a file a child writes); see
//! `common/mod.rs` for the guard that cleans up after a failing test.

mod common;

use common::*;
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A shell script that ignores SIGTERM, starts a grandchild (which
/// inherits the ignored SIGTERM) and writes its pid to `$GPID`, then marks
/// itself ready in `$READY` and waits.
const STUBBORN: &str = r#"trap '' TERM; /bin/sleep 1000 & echo $! > "$GPID"; : > "$READY"; wait"#;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A config for [`STUBBORN`] with its marker files under `root`, plus
/// extra keys.
fn stubborn_spec(root: &Path, name: &str, extra: serde_json::Value) -> String {
    let mut v = json!({
        "args": ["/bin/sh", "-c", STUBBORN],
        "env": {
            "GPID": path_str(&root.join(format!("{name}.gpid"))),
            "READY": path_str(&root.join(format!("{name}.ready"))),
        },
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v.to_string()
}

/// Waits until a [`STUBBORN`] program runs, has its trap in place and its
/// grandchild started; returns (pid, grandchild pid).
fn wait_stubborn(c: &Colony, name: &str) -> (i32, i32) {
    let pid = c.wait_running(name);
    let ready = c.root.join(format!("{name}.ready"));
    let gpid_file = c.root.join(format!("{name}.gpid"));
    c.wait_for(&format!("{name} to be ready"), || ready.exists().then_some(()));
    let gpid = c.wait_for(&format!("{name}'s grandchild"), || read_pid(&gpid_file).filter(|&p| alive(p)));
    (pid, gpid)
}

// ---------------------------------------------------------------------------
// Config files: add, change, identical rewrite, touch, remove
// ---------------------------------------------------------------------------

#[test]
fn ctl_add_runs_change_restarts_rewrite_and_touch_do_nothing_remove_stops() {
    let c = Colony::start(&[]);

    c.ctl(&["add", "web", "--", "/bin/sleep", "1000"]);
    let pid = c.wait_running("web");
    assert_eq!(cmdline(pid), ["/bin/sleep", "1000"]);
    assert_eq!(ppid(pid), Some(c.pid()), "colony's own child");
    assert_eq!(pgid(pid), Some(pid), "in its own process group");
    c.wait_log(&format!("web: started, pid {pid}"));

    // New content: restarted with the new args, the old process reaped.
    c.ctl(&["add", "web", "--", "/bin/sleep", "1001"]);
    let pid2 = c.wait_new_pid("web", pid);
    assert_eq!(cmdline(pid2), ["/bin/sleep", "1001"]);
    c.wait_reaped(pid);
    c.wait_log("web: config changed, restarting");
    c.wait_log("web: killed by SIGTERM after");

    // Same bytes again, then only a new mtime: nothing happens. A later
    // program (sorting after "web", so it is decided last in any pass)
    // shows that the daemon has seen both.
    c.ctl(&["add", "web", "--", "/bin/sleep", "1001"]);
    let st = Command::new("touch").arg(c.config.join("web")).status().unwrap();
    assert!(st.success());
    c.ctl(&["add", "zzz-later", "--", "/bin/sleep", "1000"]);
    c.wait_running("zzz-later");
    c.wait_log("zzz-later: started");
    assert_eq!(c.pid_of("web"), Some(pid2));
    assert!(alive(pid2));
    assert_eq!(c.count_log("web: started"), 2, "{}", c.log_text());
    assert_eq!(c.count_log("web: config changed"), 1, "{}", c.log_text());
    assert_eq!(c.count_log("web: stopping"), 1, "{}", c.log_text());

    // File removed: stopped, reaped, PID file gone, forgotten.
    let later = c.pid_of("zzz-later").unwrap();
    c.ctl(&["remove", "web"]);
    c.wait_reaped(pid2);
    c.wait_for("web's PID file to go", || (!c.pids.join("web").exists()).then_some(()));
    c.wait_log("web: removed");
    assert_eq!(c.pid_of("zzz-later"), Some(later));
    assert!(alive(later));
}

#[test]
fn a_broken_rewrite_keeps_the_running_instance_and_a_fix_applies() {
    let c = Colony::start(&[]);
    c.add("web", &spec(&["/bin/sleep", "1000"]));
    let pid = c.wait_running("web");
    c.add("web", "{\"args\": [");
    let path = c.config.join("web");
    c.wait_log(&format!("{}: invalid JSON", path.display()));
    c.add("zzz-later", &spec(&["/bin/sleep", "1000"]));
    c.wait_log("zzz-later: started");
    assert_eq!(c.pid_of("web"), Some(pid));
    assert!(alive(pid));
    assert_eq!(c.count_log("(the running instance is kept)"), 1, "{}", c.log_text());

    c.add("web", &spec(&["/bin/sleep", "1002"]));
    let pid2 = c.wait_new_pid("web", pid);
    assert_eq!(cmdline(pid2), ["/bin/sleep", "1002"]);
    assert!(!alive(pid));
}

// ---------------------------------------------------------------------------
// The child's environment
// ---------------------------------------------------------------------------

#[test]
fn child_environment_is_exactly_env_inherit_and_the_colony_variables() {
    let c = Colony::with(Options {
        env: vec![
            ("COLONY_TEST_INHERITED".into(), "from the supervisor".into()),
            ("COLONY_TEST_NOT_ASKED_FOR".into(), "must not leak".into()),
        ],
        ..Options::default()
    });
    let out = c.root.join("environ");
    // /proc/$$/environ is the environment the shell was exec'd with.
    let script = format!(
        "/bin/cat /proc/$$/environ > '{0}.tmp' && /bin/mv '{0}.tmp' '{0}'; exec /bin/sleep 1000",
        out.display()
    );
    let config = json!({
        "args": ["/bin/sh", "-c", script],
        "env": {"A": "1", "WITH SPACE": "x y=z", "PATH": "/nowhere", "NCOLONY_NAME": "spoofed"},
        "env_inherit": ["COLONY_TEST_INHERITED", "COLONY_TEST_SURELY_UNSET_VAR"],
    })
    .to_string();
    c.add("envdump", &config);
    let bytes = c.wait_for("the environment dump", || fs::read(&out).ok());
    let mut got: Vec<String> =
        bytes.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8(s.to_vec()).unwrap()).collect();
    got.sort();
    let mut want: Vec<String> = [
        "A=1".to_string(),
        "WITH SPACE=x y=z".into(),
        "PATH=/nowhere".into(),
        "COLONY_TEST_INHERITED=from the supervisor".into(),
        "COLONY_TEST_SURELY_UNSET_VAR=".into(),
        format!("NCOLONY_CONFIG={config}"),
        format!("COLONY_CONFIG={config}"),
        "NCOLONY_NAME=envdump".into(),
        "COLONY_NAME=envdump".into(),
    ]
    .into();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn child_stdin_is_dev_null_and_its_output_goes_through_pipes() {
    let c = Colony::start(&[]);
    c.add("web", &spec(&["/bin/sleep", "1000"]));
    let pid = c.wait_running("web");
    let fds = fds(pid);
    assert_eq!(fds.get(&0).map(String::as_str), Some("/dev/null"), "{fds:?}");
    for fd in [1, 2] {
        assert!(fds.get(&fd).is_some_and(|t| t.starts_with("pipe:")), "{fds:?}");
    }
    assert_ne!(fds[&1], fds[&2], "stdout and stderr are kept apart");
    assert_ne!(Some(&fds[&2]), common::fds(c.pid()).get(&2), "not colony's own stderr");
}

#[test]
fn child_inherits_no_other_descriptors() {
    let c = Colony::with(Options { leak_fd: true, ..Options::default() });
    assert!(fds(c.pid()).contains_key(&LEAKED_FD), "the harness leaks fd {LEAKED_FD} into colony");
    c.add("web", &spec(&["/bin/sleep", "1000"]));
    let pid = c.wait_running("web");
    let fds = fds(pid);
    assert_eq!(fds.keys().copied().collect::<Vec<_>>(), [0, 1, 2], "{fds:?}");
}

// ---------------------------------------------------------------------------
// Settings and start-up
// ---------------------------------------------------------------------------

#[test]
fn settings_come_from_the_environment_and_the_command_line_wins() {
    let failing = vec![("nobin".to_string(), spec(&["/no/such/binary"]))];
    let env = vec![("COLONY_MINRESTARTDELAY".to_string(), "0.3".to_string())];
    let from_env = Colony::with(Options { env: env.clone(), configs: failing.clone(), ..Options::default() });
    let from_flag =
        Colony::with(Options { env, configs: failing, args: vec!["-m".into(), "0.1".into()], ..Options::default() });
    from_env.wait_log("nobin: starting again in 0.300 s");
    from_flag.wait_log("nobin: starting again in 0.100 s");
    // Files present at start-up are applied; missing directories are made.
    from_env.wait_log("created the messages directory");
    from_env.wait_log("created the pid directory");
    assert_eq!(from_env.count_log("created the config directory"), 0);
}

#[test]
fn sigterm_right_after_start_does_not_hang() {
    use std::os::unix::process::ExitStatusExt;
    for i in 0..10u64 {
        let configs = (0..3).map(|n| (format!("p{n}"), spec(&["/bin/sleep", "1000"]))).collect();
        let mut c = Colony::with(Options { configs, no_wait: true, ..Options::default() });
        std::thread::sleep(Duration::from_micros(i * 700));
        c.kill(libc::SIGTERM);
        let (status, _) = c.wait_exit(Duration::from_secs(3));
        // Before its signals are set up colony dies of the signal; after,
        // it stops what it started and exits 0.
        assert!(status.success() || status.signal() == Some(libc::SIGTERM), "round {i}: {status:?}\n{}", c.log_text());
        let left = c.leftovers();
        assert!(left.is_empty(), "round {i}: left behind: {left:?}\n{}", c.log_text());
    }
}

// ---------------------------------------------------------------------------
// ncolony's own ctl drives colony
// ---------------------------------------------------------------------------

/// The Python interpreter with ncolony installed, from
/// `COLONY_TEST_NCOLONY_PYTHON`. Unset: fail under CI, else skip.
fn ncolony_python() -> Option<PathBuf> {
    match std::env::var_os("COLONY_TEST_NCOLONY_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("COLONY_TEST_NCOLONY_PYTHON is not set, but CI is: the ncolony test must run in CI")
        }
        _ => {
            eprintln!(
                "SKIPPED ncolony_ctl_drives_colony: set COLONY_TEST_NCOLONY_PYTHON to a python with ncolony \
                 installed (e.g. /tmp/ncvenv/bin/python) to run it"
            );
            None
        }
    }
}

#[test]
fn ncolony_ctl_drives_colony() {
    let Some(py) = ncolony_python() else { return };
    let c = Colony::start(&[]);
    let ncolony = |args: &[&str]| {
        let out = Command::new(&py)
            .args(["-m", "ncolony", "--messages"])
            .arg(&c.messages)
            .arg("--config")
            .arg(&c.config)
            .args(args)
            .output()
            .expect("run python -m ncolony");
        assert!(out.status.success(), "ncolony {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ncolony(&["add", "web", "--cmd", "/bin/sleep", "--arg", "1000"]);
    let pid = c.wait_running("web");
    assert_eq!(cmdline(pid), ["/bin/sleep", "1000"]);

    ncolony(&["restart", "web"]);
    let pid2 = c.wait_new_pid("web", pid);
    c.wait_reaped(pid);
    c.wait_log("web: restart requested");
    c.wait_for("the message to be consumed", || {
        let left: Vec<_> = fs::read_dir(&c.messages)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        left.is_empty().then_some(())
    });

    ncolony(&["remove", "web"]);
    c.wait_reaped(pid2);
    c.wait_log("web: removed");
}

// ---------------------------------------------------------------------------
// Backoff
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Run {
    start: f64,
    end: f64,
    long: bool,
}

fn runs(path: &Path) -> Vec<Run> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut start = None;
    for line in text.lines() {
        let Some((kind, t)) = line.split_once(' ') else { continue };
        let Ok(t) = t.parse::<f64>() else { continue };
        match kind {
            "start" => start = Some(t),
            "end" | "long" => {
                if let Some(s) = start.take() {
                    out.push(Run { start: s, end: t, long: kind == "long" });
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn crash_loop_backs_off_doubling_to_the_cap_and_resets_after_a_long_run() {
    let c = Colony::start(&["-m", "0.2", "-M", "0.8", "-t", "1"]);
    let out = c.root.join("runs");
    let flag = c.root.join("long");
    // Each run records its start and end on the wall clock and fails; a
    // run that finds the flag lives longer than the threshold.
    let script = r#"echo "start $(/bin/date +%s.%N)" >> "$OUT"
if [ -e "$FLAG" ]; then /bin/rm -f "$FLAG"; /bin/sleep 1.2; echo "long $(/bin/date +%s.%N)" >> "$OUT"; exit 1; fi
echo "end $(/bin/date +%s.%N)" >> "$OUT"; exit 1"#;
    c.add("crash", &sh_spec(script, &[("OUT", path_str(&out)), ("FLAG", path_str(&flag))]));

    let long_wait = Duration::from_secs(10);
    c.wait_within(long_wait, "five quick runs", || (runs(&out).len() >= 5).then_some(()));
    fs::write(&flag, "").unwrap();
    let all = c.wait_within(long_wait, "a long run and two runs after it", || {
        let r = runs(&out);
        let l = r.iter().position(|r| r.long)?;
        (r.len() >= l + 3).then_some(r)
    });
    let gap = |i: usize| all[i + 1].start - all[i].end;
    let context = || format!("runs: {all:#?}\n{}", c.log_text());

    for (i, want) in [0.2, 0.4, 0.8, 0.8].into_iter().enumerate() {
        let g = gap(i);
        assert!(g >= want - 0.02 && g <= want + 0.4, "gap {i} is {g:.3} s, want about {want} s\n{}", context());
    }
    let l = all.iter().position(|r| r.long).unwrap();
    assert!(l >= 5, "{}", context());
    for i in 4..l {
        let g = gap(i);
        assert!((0.78..=1.2).contains(&g), "gap {i} is {g:.3} s, want the cap 0.8 s\n{}", context());
    }
    assert!(all[l].end - all[l].start >= 1.0, "{}", context());
    let g = gap(l);
    assert!(g < 0.3, "after a run longer than the threshold the restart is immediate, got {g:.3} s\n{}", context());
    let g = gap(l + 1);
    assert!(
        (0.18..=0.6).contains(&g),
        "after the reset an instant death waits the minimum again, got {g:.3} s\n{}",
        context()
    );

    let delays: Vec<String> = c
        .wait_log_n("crash: starting again in ", 4)
        .iter()
        .map(|l| l.rsplit("starting again in ").next().unwrap().to_string())
        .collect();
    assert_eq!(delays[..4], ["0.200 s", "0.400 s", "0.800 s", "0.800 s"], "{}", c.log_text());
    assert!(c.count_log("crash: exited with code 1") > l);
}

// ---------------------------------------------------------------------------
// Stopping: TERM, then KILL after killtime
// ---------------------------------------------------------------------------

#[test]
fn term_ignoring_child_is_killed_after_killtime_with_its_grandchildren() {
    // The daemon's default kill time is 5 s; the program's own key says 0.5.
    let c = Colony::start(&[]);
    c.add("stubborn", &stubborn_spec(&c.root, "stubborn", json!({"killtime": 0.5})));
    let (pid, gpid) = wait_stubborn(&c, "stubborn");
    assert_eq!(pgid(gpid), Some(pid), "the grandchild is in the program's group");

    let t0 = Instant::now();
    c.ctl(&["remove", "stubborn"]);
    c.wait_log(&format!("stubborn: stopping, SIGTERM to process group {pid}"));
    c.wait_dead(pid);
    let took = t0.elapsed().as_secs_f64();
    assert!((0.5..1.5).contains(&took), "killed after {took:.3} s, want about 0.5 s\n{}", c.log_text());
    c.wait_dead(gpid);
    c.wait_reaped(pid);
    c.wait_log(&format!("stubborn: sending SIGKILL to process group {pid}"));
    c.wait_log("stubborn: killed by SIGKILL");
    c.wait_log("stubborn: removed");
}

#[test]
fn stop_signal_is_honoured_and_output_is_forwarded_line_by_line() {
    let c = Colony::start(&[]);
    let gpid_file = c.root.join("gpid");
    let script =
        r#"trap 'echo got INT; exit 7' INT; /bin/sleep 1000 & echo $! > "$GPID"; echo ready; echo to stderr >&2; wait"#;
    let mut config: serde_json::Value =
        serde_json::from_str(&sh_spec(script, &[("GPID", path_str(&gpid_file))])).unwrap();
    config["stop_signal"] = json!("INT");
    c.add("web", &config.to_string());
    let pid = c.wait_running("web");
    c.wait_log("[web] ready");
    c.wait_log("[web] to stderr");
    let gpid = c.wait_for("the grandchild", || read_pid(&gpid_file).filter(|&p| alive(p)));

    c.ctl(&["remove", "web"]);
    c.wait_log(&format!("web: stopping, SIGINT to process group {pid}"));
    c.wait_log("web: exited with code 7");
    c.wait_dead(gpid);
    c.wait_log("web: killed processes left behind in its process group");
    let log = c.log();
    let got = log.iter().position(|l| l.contains("[web] got INT")).expect("the trap's output");
    let exited = log.iter().position(|l| l.contains("web: exited with code 7")).unwrap();
    assert!(got < exited, "the last output comes before the exit line\n{}", c.log_text());

    // An unterminated last line is forwarded when the pipe closes, before
    // the exit is logged.
    c.add("partial", &spec(&["/bin/sh", "-c", "echo first; printf 'no newline'; exit 3"]));
    c.wait_log("partial: exited with code 3");
    let log = c.log();
    let at = |s: &str| log.iter().position(|l| l.ends_with(s));
    let (first, partial) = (at("[partial] first").unwrap(), at("[partial] no newline").expect("the partial line"));
    let exited = log.iter().position(|l| l.contains("partial: exited with code 3")).unwrap();
    assert!(first < partial && partial < exited, "{}", c.log_text());
}

#[test]
fn restart_starts_the_new_instance_only_after_the_old_one_is_reaped() {
    let c = Colony::start(&[]);
    c.add("stubborn", &stubborn_spec(&c.root, "stubborn", json!({"killtime": 0.4})));
    let (old, _) = wait_stubborn(&c, "stubborn");
    let t0 = Instant::now();
    c.ctl(&["restart", "stubborn"]);
    let new = c.wait_for("the new instance", || {
        let p = c.pid_of("stubborn").filter(|&p| p != old)?;
        assert!(!alive(old), "new instance {p} runs while the old one {old} is still alive\n{}", c.log_text());
        Some(p)
    });
    assert!(t0.elapsed() >= Duration::from_millis(400));
    assert!(alive(new));
    c.wait_log("stubborn: killed by SIGKILL");
}

// ---------------------------------------------------------------------------
// Malformed files
// ---------------------------------------------------------------------------

#[test]
fn malformed_configs_are_logged_once_and_skipped() {
    let c = Colony::start(&[]);
    c.add("keeper", &spec(&["/bin/sleep", "1000"]));
    let keeper = c.wait_running("keeper");

    let bad: &[(&str, &str, &str)] = &[
        ("badjson", "{\"args\": [", "invalid JSON"),
        ("empty", "", "the file is empty"),
        ("array", "[\"/bin/sleep\", \"1000\"]", "expected a JSON object, found an array"),
        ("noargs", "{\"env\": {}}", "\"args\": missing"),
        ("emptyargs", "{\"args\": []}", "\"args\": must hold at least the program to run"),
        ("argsstring", "{\"args\": \"/bin/sleep 1000\"}", "\"args\": expected an array of strings"),
        ("argsnumber", "{\"args\": [\"/bin/sleep\", 1000]}", "\"args[1]\": expected a string, found a number"),
        (
            "envnumber",
            "{\"args\": [\"/bin/sleep\"], \"env\": {\"A\": 1}}",
            "\"env.A\": expected a string, found a number",
        ),
        ("uidstring", "{\"args\": [\"/bin/sleep\"], \"uid\": \"0\"}", "\"uid\": expected a non-negative integer"),
    ];
    for (name, content, _) in bad {
        c.add(name, content);
    }
    fs::create_dir(c.config.join("subdir")).unwrap();
    fs::write(c.config.join(".junk"), "not json {").unwrap();
    fs::write(c.config.join("junk.new"), "not json {").unwrap();

    for (name, _, reason) in bad {
        c.wait_log(&format!("{}: {reason}", c.config.join(name).display()));
    }
    c.wait_log(&format!("{}: is a directory, not a program file", c.config.join("subdir").display()));

    // A valid file added afterwards is applied; a SIGHUP rescan and one
    // more program later, nothing has been logged twice.
    c.add("later", &spec(&["/bin/sleep", "1000"]));
    c.wait_running("later");
    c.kill(libc::SIGHUP);
    c.wait_log("SIGHUP: rescanning");
    c.add("zzz-last", &spec(&["/bin/sleep", "1000"]));
    c.wait_log("zzz-last: started");

    for name in bad.iter().map(|b| b.0).chain(["subdir"]) {
        let prefix = format!("{}:", c.config.join(name).display());
        assert_eq!(c.count_log(&prefix), 1, "{name} logged once\n{}", c.log_text());
        assert!(c.pid_of(name).is_none());
        assert_eq!(c.count_log(&format!("{name}: started")), 0);
    }
    assert_eq!(c.count_log(".junk"), 0, "dot-files are ignored silently\n{}", c.log_text());
    assert_eq!(c.count_log("junk.new"), 0, ".new files are ignored silently\n{}", c.log_text());
    assert_eq!(c.pid_of("keeper"), Some(keeper));
    assert!(alive(keeper));
    assert_eq!(c.count_log("keeper: started"), 1);
}

#[test]
fn malformed_messages_are_logged_once_moved_aside_and_never_block_the_rest() {
    let c = Colony::start(&[]);
    c.add("keeper", &spec(&["/bin/sleep", "1000"]));
    let keeper = c.wait_running("keeper");

    let bad: &[(&str, &str, &str)] = &[
        ("1-badjson", "{\"type\": ", "invalid JSON"),
        ("2-unknown", "{\"type\": \"X\"}", "unknown message type \"X\""),
        ("3-ghost", "{\"type\": \"RESTART\", \"name\": \"ghost\"}", "no program named \"ghost\" is configured"),
    ];
    // Stopped, the daemon finds every message in one pass, in name order.
    assert!(signal(c.pid(), libc::SIGSTOP));
    for (name, content, _) in bad {
        write_file(&c.messages, name, content);
    }
    fs::create_dir(c.messages.join("4-dir")).unwrap();
    write_file(&c.messages, "5-restart", "{\"type\": \"RESTART\", \"name\": \"keeper\"}");
    fs::write(c.messages.join(".junk"), "junk").unwrap();
    fs::write(c.messages.join("junk.new"), "junk").unwrap();
    assert!(signal(c.pid(), libc::SIGCONT));

    let keeper2 = c.wait_new_pid("keeper", keeper);
    let restart_line = c.wait_log("keeper: restart requested");
    for (name, content, reason) in bad {
        let path = c.messages.join(name);
        let aside = c.messages.join(format!(".{name}.rejected"));
        let line = c.wait_log(&format!("{}: {reason}", path.display()));
        assert!(line.ends_with(&format!("; moved aside to {}", aside.display())), "{line}");
        assert!(!path.exists());
        assert_eq!(fs::read_to_string(&aside).unwrap(), *content);
    }
    let dir = c.messages.join("4-dir");
    c.wait_log(&format!("{}: is a directory, not a message; moved aside to", dir.display()));
    assert!(c.messages.join(".4-dir.rejected").is_dir());
    assert!(!c.messages.join("5-restart").exists(), "a handled message is deleted");
    assert!(c.messages.join(".junk").exists() && c.messages.join("junk.new").exists(), "ignored, untouched");

    // Handled in name order: the rejections are logged before the restart.
    let log = c.log();
    let at = |s: &str| log.iter().position(|l| l.contains(s)).unwrap();
    let order: Vec<usize> = ["1-badjson:", "2-unknown:", "3-ghost:", "4-dir:"].iter().map(|s| at(s)).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", c.log_text());
    assert!(order[3] < at(&restart_line), "{}", c.log_text());

    // A later message and a SIGHUP rescan: nothing is handled twice.
    c.kill(libc::SIGHUP);
    c.wait_log("SIGHUP: rescanning");
    c.ctl(&["restart", "keeper"]);
    c.wait_new_pid("keeper", keeper2);
    for name in ["1-badjson", "2-unknown", "3-ghost", "4-dir"] {
        let prefix = format!("{}:", c.messages.join(name).display());
        assert_eq!(c.count_log(&prefix), 1, "{name} logged once\n{}", c.log_text());
        assert_eq!(c.count_log(&format!(".{name}.rejected:")), 0, "a rejected file is not read again");
    }
    assert_eq!(c.count_log("junk"), 0, "{}", c.log_text());
}

// ---------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------

#[test]
fn sigterm_stops_fifty_children_some_ignoring_term_within_killtime() {
    let mut c = Colony::start(&["-k", "1"]);
    let names: Vec<String> = (0..50).map(|i| format!("p{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        if i % 2 == 0 {
            c.add(name, &spec(&["/bin/sleep", "1000"]));
        } else {
            c.add(name, &stubborn_spec(&c.root, name, json!({})));
        }
    }
    for (i, name) in names.iter().enumerate() {
        if i % 2 == 0 {
            c.wait_running(name);
        } else {
            wait_stubborn(&c, name);
        }
    }
    let everything = descendants(c.pid());
    assert!(everything.len() >= 75, "50 programs and 25 grandchildren, got {}", everything.len());

    c.kill(libc::SIGTERM);
    let (status, took) = c.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}\n{}", c.log_text());
    assert!(
        took <= Duration::from_secs(2),
        "took {:.3} s, more than killtime + 1 s\n{}",
        took.as_secs_f64(),
        c.log_text()
    );
    assert!(took >= Duration::from_millis(900), "the TERM-ignoring programs get their kill time");
    let left: Vec<i32> = everything.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "still alive after colony exited: {left:?}\n{}", c.log_text());
    assert_eq!(c.count_log("sending SIGKILL to process group"), 25, "{}", c.log_text());
    assert_eq!(c.count_log("every program stopped; exiting"), 1);
    let pid_files: Vec<_> = fs::read_dir(&c.pids).unwrap().filter_map(Result::ok).collect();
    assert!(pid_files.is_empty(), "PID files left: {pid_files:?}");
}

#[test]
fn a_second_signal_kills_at_once() {
    let mut c = Colony::start(&["-k", "30"]);
    c.add("stubborn", &stubborn_spec(&c.root, "stubborn", json!({})));
    let (pid, gpid) = wait_stubborn(&c, "stubborn");
    c.kill(libc::SIGINT);
    c.wait_log("stopping every program");
    let t0 = Instant::now();
    c.kill(libc::SIGTERM);
    let (status, _) = c.wait_exit(Duration::from_secs(5));
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}\n{}", c.log_text());
    assert!(!alive(pid) && !alive(gpid));
    assert_eq!(c.count_log("killing every program now"), 1, "{}", c.log_text());
}

#[test]
fn a_crashed_instance_takes_what_it_left_behind_with_it() {
    let mut c = Colony::start(&["-m", "0.1", "-k", "1"]);
    // The first instance starts a helper and dies; the second one stays.
    let script = r#"if [ -e "$F" ]; then exec /bin/sleep 1000; fi
: > "$F"; /bin/sleep 1000 & echo $! > "$LEFT"; exit 1"#;
    let (f, left) = (c.root.join("ran"), c.root.join("left"));
    c.add("crashy", &sh_spec(script, &[("F", path_str(&f)), ("LEFT", path_str(&left))]));
    c.wait_log("crashy: exited with code 1");
    let leftover = c.wait_for("the leftover's pid", || read_pid(&left));
    // Never two instances at once: the helper dies with its instance,
    // before the next one starts.
    c.wait_for("the leftover to be killed", || (!alive(leftover)).then_some(()));
    c.wait_log("crashy: killed processes left behind");
    c.wait_log_n("crashy: started", 2);
    let second = c.wait_running("crashy");
    c.kill(libc::SIGTERM);
    let (status, _) = c.wait_exit(Duration::from_secs(5));
    assert!(status.success());
    assert!(!alive(second));
}

// ---------------------------------------------------------------------------
// Reaping: orphans, PID 1
// ---------------------------------------------------------------------------

/// A program that double-forks an orphan blocked reading `$FIFO` (its pid
/// goes to `$OPID`) and then sleeps.
const ORPHAN_MAKER: &str = r#"/bin/sh -c 'read x < "$FIFO" & echo $! > "$OPID"'; exec /bin/sleep 1000"#;

fn orphan_maker(root: &Path) -> (String, PathBuf, PathBuf) {
    let (fifo, opid) = (root.join("fifo"), root.join("opid"));
    mkfifo(&fifo);
    (sh_spec(ORPHAN_MAKER, &[("FIFO", path_str(&fifo)), ("OPID", path_str(&opid))]), fifo, opid)
}

#[test]
fn orphans_of_children_are_reaped() {
    let c = Colony::start(&[]);
    let (config, fifo, opid) = orphan_maker(&c.root);
    c.add("parent", &config);
    let parent = c.wait_running("parent");
    let orphan = c.wait_for("the orphan's pid", || read_pid(&opid).filter(|&p| alive(p)));
    c.wait_for("colony (the subreaper) to adopt the orphan", || (ppid(orphan) == Some(c.pid())).then_some(()));

    release_fifo(&fifo);
    c.wait_reaped(orphan);
    assert_eq!(zombies_of(c.pid()), Vec::<i32>::new());
    assert_eq!(c.pid_of("parent"), Some(parent));
    assert!(alive(parent));
}

#[test]
fn works_as_pid_1_in_a_pid_namespace() {
    let probe = Command::new("unshare").args(["--pid", "--fork", "--mount-proc", "/bin/true"]).output();
    match probe {
        Err(e) => {
            eprintln!("SKIPPED works_as_pid_1_in_a_pid_namespace: cannot run unshare: {e}");
            return;
        }
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            if err.contains("Operation not permitted") {
                eprintln!("SKIPPED works_as_pid_1_in_a_pid_namespace: unshare is not permitted here: {}", err.trim());
                return;
            }
            panic!("unshare --pid --fork --mount-proc /bin/true failed: {err}");
        }
        Ok(_) => {}
    }
    let mut c = Colony::with(Options {
        wrapper: ["unshare", "--pid", "--fork", "--mount-proc"].map(String::from).into(),
        ..Options::default()
    });
    c.wait_log("(messages ");
    assert!(c.log_lines("supervising")[0].ends_with(", pid 1)"), "{}", c.log_text());
    let host = c.wait_for("colony as PID 1 of the namespace", || {
        children_of(c.pid()).into_iter().find(|&p| ns_pids(p).last() == Some(&1))
    });
    // Pids in files and logs are the namespace's; find the host's.
    let host_pid = |ns: i32| descendants(host).into_iter().find(|&p| ns_pids(p).last() == Some(&ns));

    let (config, fifo, opid) = orphan_maker(&c.root);
    c.add("parent", &config);
    let parent_ns = c.wait_for("parent's PID file", || c.pid_of("parent"));
    let parent = c.wait_for("parent on the host", || host_pid(parent_ns).filter(|&p| alive(p)));
    assert_eq!(ppid(parent), Some(host));
    let orphan_ns = c.wait_for("the orphan's pid", || read_pid(&opid));
    let orphan = c.wait_for("the orphan on the host", || host_pid(orphan_ns).filter(|&p| alive(p)));
    c.wait_for("PID 1 to adopt the orphan", || (ppid(orphan) == Some(host)).then_some(()));
    release_fifo(&fifo);
    c.wait_reaped(orphan);
    assert_eq!(zombies_of(host), Vec::<i32>::new());

    assert!(signal(host, libc::SIGTERM));
    let (status, _) = c.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status:?}\n{}", c.log_text());
    assert!(!alive(parent));
    assert_eq!(c.count_log("every program stopped; exiting"), 1, "{}", c.log_text());
}

// ---------------------------------------------------------------------------
// Restart messages
// ---------------------------------------------------------------------------

#[test]
fn restart_group_restarts_only_its_members() {
    let c = Colony::start(&[]);
    c.ctl(&["add", "a", "--group", "g", "--", "/bin/sleep", "1000"]);
    c.ctl(&["add", "b", "--group", "g", "--group", "h", "--", "/bin/sleep", "1000"]);
    c.ctl(&["add", "c", "--", "/bin/sleep", "1000"]);
    let (a, b, cc) = (c.wait_running("a"), c.wait_running("b"), c.wait_running("c"));

    c.ctl(&["restart-group", "g"]);
    c.wait_log("restarting group \"g\" (2 programs)");
    let a2 = c.wait_new_pid("a", a);
    let b2 = c.wait_new_pid("b", b);
    assert_eq!(c.pid_of("c"), Some(cc));
    assert!(alive(cc));
    assert_eq!(c.count_log("c: stopping"), 0);

    c.ctl(&["restart-group", "h"]);
    c.wait_new_pid("b", b2);
    assert_eq!(c.pid_of("a"), Some(a2));
    assert_eq!(c.pid_of("c"), Some(cc));

    c.ctl(&["restart-group", "nobody"]);
    c.wait_log("restart of group \"nobody\": no program is in it");
}

#[test]
fn restart_all_restarts_every_program() {
    let c = Colony::start(&[]);
    let names = ["a", "b", "c"];
    for n in names {
        c.ctl(&["add", n, "--", "/bin/sleep", "1000"]);
    }
    let old: Vec<i32> = names.iter().map(|n| c.wait_running(n)).collect();
    c.ctl(&["restart-all"]);
    c.wait_log("restarting every program");
    for (n, &p) in names.iter().zip(&old) {
        c.wait_new_pid(n, p);
        c.wait_reaped(p);
    }
}

#[test]
fn restart_or_new_config_while_waiting_in_backoff_starts_at_once() {
    // An instant death waits 5 s: the program fails the first time only.
    let c = Colony::start(&["-m", "5", "-M", "10"]);
    let script = r#"if [ -e "$F" ]; then exec /bin/sleep 1000; fi; : > "$F"; exit 1"#;
    for n in ["x", "y"] {
        let f = c.root.join(format!("{n}.ran"));
        c.add(n, &sh_spec(script, &[("F", path_str(&f))]));
    }
    c.wait_log("x: starting again in 5.000 s");
    c.wait_log("y: starting again in 5.000 s");

    let t0 = Instant::now();
    c.ctl(&["restart", "x"]);
    let x = c.wait_within(Duration::from_secs(4), "x to start before its backoff ends", || {
        c.pid_of("x").filter(|&p| alive(p))
    });
    assert!(t0.elapsed() < Duration::from_secs(4));
    c.wait_log("x: restart requested");
    // The second run finds its marker and execs sleep.
    c.wait_for("x to exec sleep", || (cmdline(x) == ["/bin/sleep", "1000"]).then_some(()));

    let t0 = Instant::now();
    let f = c.root.join("y.ran");
    c.add("y", &sh_spec(&format!("{script} # new"), &[("F", path_str(&f))]));
    c.wait_within(Duration::from_secs(4), "y to start with its new config", || c.pid_of("y").filter(|&p| alive(p)));
    assert!(t0.elapsed() < Duration::from_secs(4));
}

// ---------------------------------------------------------------------------
// Failed exec
// ---------------------------------------------------------------------------

#[test]
fn a_failed_exec_is_logged_and_retried_with_backoff() {
    let c = Colony::start(&["-m", "0.2", "-M", "0.8"]);
    c.add("keeper", &spec(&["/bin/sleep", "1000"]));
    let keeper = c.wait_running("keeper");
    let noexec = c.root.join("not-executable");
    fs::write(&noexec, "#!/bin/sh\n").unwrap();
    c.add("nobin", &spec(&["/no/such/binary"]));
    c.add("nopath", &spec(&["no-such-command-colony-test"]));
    c.add("noexec", &spec(&[path_str(&noexec)]));

    c.wait_log_n("nobin: cannot start /no/such/binary: No such file or directory", 3);
    c.wait_log_n("nopath: \"no-such-command-colony-test\" not found on the supervisor's PATH", 2);
    c.wait_log_n(&format!("noexec: cannot start {}: Permission denied", noexec.display()), 2);
    let delays: Vec<String> = c
        .wait_log_n("nobin: starting again in ", 3)
        .iter()
        .map(|l| l.rsplit("starting again in ").next().unwrap().to_string())
        .collect();
    assert_eq!(delays[..3], ["0.200 s", "0.400 s", "0.800 s"], "{}", c.log_text());
    for n in ["nobin", "nopath", "noexec"] {
        assert!(c.pid_of(n).is_none());
        assert_eq!(c.count_log(&format!("{n}: started")), 0);
    }
    assert_eq!(c.pid_of("keeper"), Some(keeper));
    assert!(alive(keeper));
    assert_eq!(c.count_log("keeper: started"), 1);
}

// ---------------------------------------------------------------------------
// Privileges
// ---------------------------------------------------------------------------

#[test]
fn uid_and_gid_are_dropped_before_exec() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED uid_and_gid_are_dropped_before_exec: needs root");
        return;
    }
    let c = Colony::start(&[]);
    c.add("nobody", &json!({"args": ["/bin/sleep", "1000"], "uid": 65534, "gid": 65534}).to_string());
    let pid = c.wait_running("nobody");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field =
        |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).unwrap().split_whitespace().collect::<Vec<_>>();
    assert_eq!(field("Uid:"), ["65534"; 4]);
    assert_eq!(field("Gid:"), ["65534"; 4]);
    assert!(!field("Groups:").contains(&"0"), "no supplementary group of root: {:?}", field("Groups:"));
}

// ---------------------------------------------------------------------------
// Idle
// ---------------------------------------------------------------------------

/// Regression: notify 8 also reports IN_OPEN, and colony's own directory
/// reads used to mark the directories dirty again, so the loop spun.
#[test]
fn an_idle_daemon_does_not_spin() {
    let c = Colony::start(&[]);
    c.add("web", &spec(&["/bin/sleep", "1000"]));
    c.wait_running("web");
    let before = cpu_ticks(c.pid()).unwrap();
    // A measurement, not a synchronisation: CPU time over one idle second.
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(c.pid()).unwrap() - before;
    // SAFETY: sysconf cannot fail for _SC_CLK_TCK.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(used * 20 <= hz, "the idle daemon used {used} ticks of CPU in 1 s ({hz} ticks/s)\n{}", c.log_text());
}
