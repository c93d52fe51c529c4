//! Integration tests of the faults of issue 8 (Hardening), items 2 to 5:
//! crash recovery with `--pid`, StrictModes for config files and names that
//! never escape their directory, resource faults (EMFILE, ENOSPC, inotify
//! limits and queue overflow, fork EAGAIN) and per-program `umask`, `nice`
//! and `limits`.
//!
//! The real binary, driven through its files; every wait is a handshake
//! with a deadline. A test that needs something the machine does not allow
//! (root, prlimit, a tmpfs mount, user namespaces, a pids cgroup, the
//! cgroup v1 freezer) prints "SKIPPED: why" and returns; tmpfs mounts and
//! cgroups are the test's own and removed even when it fails. Nothing machine-wide is changed except by
//! the inotify queue test, which only runs with COLONY_TEST_SYSCTL=1: the
//! inotify instance and watch limits are lowered in a private user
//! namespace (/proc/sys/user/*), which dies with the colony under test.

mod common;

use common::*;
use serde_json::json;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Prints why a test does not run here, and returns from it.
macro_rules! skip {
    ($($arg:tt)*) => {{
        eprintln!("SKIPPED: {}", format!($($arg)*));
        return;
    }};
}

fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `cmd args` runs and exits 0 (quietly).
fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The kernel's start time of `pid` (clock ticks since boot), unless it is
/// gone or a zombie: with the pid, it names one process for good.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    // Field 22 of /proc/PID/stat; `fields` starts at field 3.
    fields.get(22 - 3)?.parse().ok()
}

/// The nice value of `pid` (field 19 of /proc/PID/stat).
fn nice_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split_whitespace().nth(19 - 3)?.parse().ok()
}

/// The line of /proc/PID/limits for `what` ("Max open files"), its fields
/// after the name: soft, hard and maybe the unit.
fn limit_of(pid: i32, what: &str) -> Vec<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(what))
        .map(|rest| rest.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A line of /proc/PID/status ("Uid", "Umask"), after the colon.
fn status_line(pid: i32, key: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(&format!("{key}:")).map(|v| v.trim().to_string()))
}

fn sleep_spec() -> String {
    spec(&["sleep", "1000"])
}

/// Puts a config file in place with the given mode and owner, atomically
/// (prepared as an ignored dot-file, then renamed), so that colony never
/// sees it with other permissions.
fn place(dir: &Path, name: &str, content: &str, mode: u32, owner: Option<u32>) {
    let tmp = dir.join(format!(".{name}.placing"));
    fs::write(&tmp, content).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).unwrap();
    if let Some(uid) = owner {
        std::os::unix::fs::chown(&tmp, Some(uid), Some(uid)).unwrap();
    }
    fs::rename(&tmp, dir.join(name)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Whether some log line contains `prefix` followed by `tail`, like
/// "p3: cannot start" ... "Too many open files".
fn logged(c: &Colony, prefix: &str, tail: &str) -> bool {
    c.log().iter().any(|l| l.find(prefix).is_some_and(|i| l[i..].contains(tail)))
}

/// A `sleep 1000` started by the test itself (not by colony), with exactly
/// `env`, in its own process group. Killed and reaped when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn spawn(cwd: &Path, env: &[(&str, &str)]) -> Sleeper {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "exec sleep 1000"])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(env.iter().copied())
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let sleeper = Sleeper(cmd.spawn().expect("spawn sleep"));
        // Until the exec is over, /proc/PID/environ may read empty.
        let pid = sleeper.pid();
        let want: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        wait_until(DEADLINE, "sleep to run", String::new, || {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
            let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
            let complete = want.iter().all(|kv| vars.contains(&kv.as_bytes()));
            (comm.trim() == "sleep" && complete).then_some(())
        });
        sleeper
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A second `colony run` on the directories of an existing [`Colony`]
/// (same config, messages and pid directories, same working directory, so
/// the `Colony` guard also finds and kills what this one starts). SIGKILLed
/// and reaped when dropped.
struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(c: &Colony, args: &[&str]) -> Daemon {
        let mut cmd = Command::new(colony_bin());
        cmd.arg("run")
            .arg("--config")
            .arg(&c.config)
            .arg("--messages")
            .arg(&c.messages)
            .arg("--pid")
            .arg(&c.pids)
            .args(args)
            .current_dir(&c.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        for (var, _) in std::env::vars_os() {
            if var.to_str().is_some_and(|v| v.starts_with("COLONY_")) {
                cmd.env_remove(var);
            }
        }
        cmd.env("COLONY_LOG", "info");
        let mut child = cmd.spawn().expect("start colony again");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                match line {
                    Ok(l) => sink.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        });
        Daemon { child, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn log_text(&self) -> String {
        format!("--- log of the second colony ---\n{}\n--- end of log ---", self.log().join("\n"))
    }

    /// The index of the first line containing `pattern`.
    fn position(&self, pattern: &str) -> Option<usize> {
        self.log().iter().position(|l| l.contains(pattern))
    }

    fn wait_log(&self, pattern: &str) -> usize {
        wait_until(DEADLINE, &format!("a line containing {pattern:?}"), || self.log_text(), || self.position(pattern))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_text());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Crash recovery
// ---------------------------------------------------------------------------

/// Whether none of `procs` (pid, start time) is still that process.
fn gone(procs: &[(i32, u64)]) -> bool {
    procs.iter().all(|&(p, t)| start_time(p) != Some(t))
}

/// Starts `script` as `name` and returns every process of its instance
/// (main process first) with its start time, once it has `children`
/// descendants.
fn instance_of(c: &Colony, name: &str, script: &str, children: usize) -> Vec<(i32, u64)> {
    c.add(name, &spec(&["/bin/sh", "-c", script]));
    let pid = c.wait_running(name);
    let group = c.wait_for(&format!("the children of {name}"), || {
        let d = descendants(pid);
        (d.len() >= children).then_some(d)
    });
    std::iter::once(pid).chain(group).map(|p| (p, start_time(p).expect("start time"))).collect()
}

/// colony is SIGKILLed; its programs (one ignoring SIGTERM, both with
/// grandchildren) live on. Started again on the same directories, it stops
/// every one of them (SIGTERM to the group, SIGKILL after the kill time)
/// before it starts anything, and names them in its log. A pid file whose
/// pid is now an unrelated process (no start time and another environment,
/// or another start time) is left alone and forgotten.
#[test]
fn a_restarted_colony_stops_what_the_killed_one_left_running() {
    let mut c = Colony::start(&["-k", "0.5"]);
    let old = [
        ("plain", instance_of(&c, "plain", "sleep 1000 & sleep 1000 & wait", 2)),
        ("stubborn", instance_of(&c, "stubborn", "trap '' TERM; sleep 1000 & wait", 1)),
    ];
    let (plain, stubborn) = (old[0].1[0].0, old[1].1[0].0);
    for (name, _) in &old {
        assert!(c.pids.join(format!(".{name}.start")).is_file(), "no start time recorded for {name}");
    }

    c.kill(libc::SIGKILL);
    c.wait_exit(DEADLINE);
    let still = |procs: &[(i32, u64)]| procs.iter().all(|&(p, t)| start_time(p) == Some(t));
    for (name, procs) in &old {
        assert!(still(procs), "{name} did not outlive the killed colony: {procs:?}");
    }

    // Pid files that do not describe a live instance of their program.
    // ghost: an unrelated process, no recorded start time, no COLONY_NAME.
    let ghost = Sleeper::spawn(&c.root, &[("SOMETHING", "else")]);
    fs::write(c.pids.join("ghost"), ghost.pid().to_string()).unwrap();
    // reused: the right COLONY_NAME, but not the start time recorded: the
    // start time wins.
    let reused = Sleeper::spawn(&c.root, &[("COLONY_NAME", "reused")]);
    let reused_start = start_time(reused.pid()).unwrap();
    fs::write(c.pids.join("reused"), reused.pid().to_string()).unwrap();
    fs::write(c.pids.join(".reused.start"), (reused_start + 12345).to_string()).unwrap();
    // dead: a pid that no longer exists.
    let mut gone_child = Command::new("true").spawn().unwrap();
    let dead_pid = gone_child.id();
    gone_child.wait().unwrap();
    fs::write(c.pids.join("dead"), dead_pid.to_string()).unwrap();
    // legacy: a pid file of an older colony (no start time) whose process
    // still has the program's COLONY_NAME: stopped too.
    let legacy = Sleeper::spawn(&c.root, &[("COLONY_NAME", "legacy")]);
    fs::write(c.pids.join("legacy"), legacy.pid().to_string()).unwrap();

    let d = Daemon::start(&c, &["-k", "0.5"]);
    // When the new colony says it started plain, the main process of the
    // old instance is gone: colony waited for it to exit after SIGTERM.
    // (That every process of the old group is gone by then, and that a
    // process killed with SIGKILL has exited, is checked by the two bug
    // tests below.)
    let (plain_old, stubborn_old) = (&old[0].1, &old[1].1);
    wait_until(
        DEADLINE,
        "plain to start again",
        || d.log_text(),
        || {
            d.position("plain: started, pid")?;
            assert!(gone(&plain_old[..1]), "plain started while its old main process runs\n{}", d.log_text());
            Some(())
        },
    );
    d.wait_log("stubborn: started, pid");
    for procs in [plain_old, stubborn_old] {
        wait_until(DEADLINE, "every old process to be gone", || d.log_text(), || gone(procs).then_some(()));
    }

    let warned =
        |name: &str, pid: i32| d.position(&format!("{name}: pid {pid} still runs from before colony restarted"));
    let supervising = d.wait_log("supervising");
    for (name, pid) in [("plain", plain), ("stubborn", stubborn), ("legacy", legacy.pid())] {
        let at = warned(name, pid).unwrap_or_else(|| panic!("no warning about {name}\n{}", d.log_text()));
        assert!(at < supervising, "{name} was stopped after colony began supervising\n{}", d.log_text());
    }
    assert!(
        d.position(&format!("stubborn: pid {stubborn} did not stop within the kill time; sending SIGKILL")).is_some(),
        "{}",
        d.log_text()
    );
    assert!(d.position("did not stop within the kill time").is_some_and(|i| i < supervising));
    assert!(d.position("stopped 3 program(s) left running by a previous colony").is_some(), "{}", d.log_text());
    for name in ["ghost", "reused", "dead"] {
        assert!(d.position(&format!("{name}: pid")).is_none(), "{name} treated as a leftover\n{}", d.log_text());
    }
    assert!(alive(ghost.pid()), "an unrelated process (ghost) was killed");
    assert!(alive(reused.pid()), "a process with another start time (reused) was killed");
    assert!(!alive(legacy.pid()), "the legacy instance still runs");
    // Stale records are forgotten.
    for file in ["ghost", "reused", ".reused.start", "dead", "legacy"] {
        assert!(!c.pids.join(file).exists(), "pid/{file} was not removed");
    }
    // The new instances are the recorded ones.
    for (name, procs) in &old {
        let new = wait_until(
            DEADLINE,
            "the new pid file",
            || d.log_text(),
            || read_pid(&c.pids.join(name)).filter(|&p| alive(p) && p != procs[0].0),
        );
        assert_eq!(
            fs::read_to_string(c.pids.join(format!(".{name}.start"))).unwrap().trim().parse::<u64>().ok(),
            start_time(new)
        );
        assert!(gone(procs));
    }
    assert!(alive(d.child.id() as i32));
}

/// When the recorded process of a leftover exits on SIGTERM, what is left
/// in its process group goes too (as when colony stops a program it
/// started): here a child that ignores SIGTERM.
#[test]
fn a_restarted_colony_stops_the_whole_group_of_a_leftover() {
    let mut c = Colony::start(&["-k", "0.5"]);
    let old = instance_of(&c, "group", "(trap '' TERM; exec sleep 1000) & wait", 1);
    c.kill(libc::SIGKILL);
    c.wait_exit(DEADLINE);
    let d = Daemon::start(&c, &["-k", "0.5"]);
    d.wait_log("group: started, pid");
    assert!(gone(&old), "the old instance of group still runs next to the new one: {old:?}\n{}", d.log_text());
}

/// A leftover killed with SIGKILL has exited before the new instance
/// starts. Made observable by freezing the old processes (cgroup v1
/// freezer): killed while frozen, they exit only when thawed.
#[test]
fn a_restarted_colony_waits_for_killed_leftovers_to_exit() {
    let mut c = Colony::start(&["-k", "0.5"]);
    let freezer = match Cgroup::create("freezer") {
        Ok(cg) => cg,
        Err(why) => skip!("{why}"),
    };
    let old = instance_of(&c, "stubborn", "trap '' TERM; sleep 1000 & wait", 1);
    c.kill(libc::SIGKILL);
    c.wait_exit(DEADLINE);
    for &(p, _) in &old {
        freezer.add(p);
    }
    freezer.freeze("FROZEN");
    let d = Daemon::start(&c, &["-k", "0.5"]);
    d.wait_log("stubborn: pid");
    d.wait_log("did not stop within the kill time; sending SIGKILL");
    // An observation window in which the killed processes cannot exit.
    std::thread::sleep(Duration::from_millis(300));
    let early = d.position("stubborn: started, pid").is_some();
    freezer.freeze("THAWED");
    assert!(!early, "stubborn started while its killed old instance had not exited: {old:?}\n{}", d.log_text());
    d.wait_log("stubborn: started, pid");
    assert!(gone(&old));
}

// ---------------------------------------------------------------------------
// Trust
// ---------------------------------------------------------------------------

/// As root: a config file others could have written is refused, naming
/// the file and the reason, once; a file owned by the program's own user
/// is accepted; fixing the mode or owner (same content) is noticed.
#[test]
fn strict_modes_refuse_files_that_others_could_have_written() {
    if !is_root() {
        skip!("StrictModes apply only when colony runs as root");
    }
    let c = Colony::start(&["--frequency", "0.2"]);
    chmod(&c.config, 0o755);
    let as_nobody = json!({"args": ["sleep", "1000"], "uid": 65534, "gid": 65534}).to_string();
    let as_other = json!({"args": ["sleep", "1000"], "uid": 1000, "gid": 1000}).to_string();
    place(&c.config, "open", &sleep_spec(), 0o666, None);
    place(&c.config, "groupw", &sleep_spec(), 0o664, None);
    place(&c.config, "foreign", &sleep_spec(), 0o644, Some(65534));
    place(&c.config, "nobody", &as_nobody, 0o644, Some(65534));
    place(&c.config, "nobody_open", &as_nobody, 0o646, Some(65534));
    place(&c.config, "other", &as_other, 0o644, Some(65534));

    let nobody = c.wait_running("nobody");
    let uid = status_line(nobody, "Uid").unwrap();
    assert!(uid.split_whitespace().all(|u| u == "65534"), "nobody runs as {uid}");
    let path = |name: &str| c.config.join(name).display().to_string();
    c.wait_log(&format!("{}: refused: writable by group or others (mode 0666)", path("open")));
    c.wait_log(&format!("{}: refused: writable by group or others (mode 0664)", path("groupw")));
    c.wait_log(&format!("{}: refused: owned by uid 65534, not root (see --no-strict-modes)", path("foreign")));
    c.wait_log(&format!("{}: refused: writable by group or others (mode 0646)", path("nobody_open")));
    c.wait_log(&format!("{}: refused: owned by uid 65534, not root or the program's user 1000", path("other")));
    for name in ["open", "groupw", "foreign", "nobody_open", "other"] {
        assert_eq!(c.pid_of(name), None, "{name} was started");
        assert!(c.log_lines(&format!("{name}: started")).is_empty(), "{name} was started");
    }

    // The same content with the mode fixed: noticed at the next rescan.
    chmod(&c.config.join("open"), 0o644);
    c.wait_running("open");
    // The owner fixed, and SIGHUP.
    std::os::unix::fs::chown(c.config.join("foreign"), Some(0), Some(0)).unwrap();
    c.kill(libc::SIGHUP);
    c.wait_running("foreign");
    // Still refused ones are not reported again at every rescan (several
    // 0.2 s rescans have passed since the first report).
    c.wait_for("a few rescans", || (c.count_log("SIGHUP: rescanning") >= 1).then_some(()));
    for name in ["groupw", "nobody_open", "other"] {
        assert_eq!(c.count_log(&format!("{}: refused", path(name))), 1, "{}", c.log_text());
    }
    assert_eq!(c.pid_of("groupw"), None);
}

/// As root: a config directory others could write to (or owned by someone
/// else) refuses every file in it, naming the directory.
#[test]
fn strict_modes_refuse_every_file_of_an_untrusted_directory() {
    if !is_root() {
        skip!("StrictModes apply only when colony runs as root");
    }
    let c = Colony::start(&["--frequency", "0.2"]);
    chmod(&c.config, 0o777);
    c.add("a", &sleep_spec());
    c.add("b", &sleep_spec());
    let dir = c.config.display().to_string();
    c.wait_log(&format!(
        "{dir}: every program file refused: the directory {dir} is writable by group or others (mode 0777)"
    ));
    c.wait_log(&format!("{dir}/a: refused: the directory {dir} is writable by group or others"));
    c.wait_log(&format!("{dir}/b: refused: the directory {dir} is writable by group or others"));
    // Sticky and world-writable (like /tmp) is not a reason; another owner is.
    // Owner first: the directory must never be trustworthy in between
    // (colony would rightly start a and b at that moment).
    std::os::unix::fs::chown(&c.config, Some(65534), Some(65534)).unwrap();
    chmod(&c.config, 0o755);
    c.add("c", &sleep_spec());
    c.wait_log(&format!("{dir}/c: refused: the directory {dir} is owned by uid 65534, not root"));
    for name in ["a", "b", "c"] {
        assert_eq!(c.pid_of(name), None, "{name} was started");
    }
    std::os::unix::fs::chown(&c.config, Some(0), Some(0)).unwrap();
}

/// As root: once the config directory's mode is fixed (no file changed),
/// the files it refused are read again and started.
#[test]
fn strict_modes_notice_a_fixed_config_directory() {
    if !is_root() {
        skip!("StrictModes apply only when colony runs as root");
    }
    let c = Colony::start(&["--frequency", "0.2"]);
    chmod(&c.config, 0o777);
    c.add("a", &sleep_spec());
    c.wait_log(&format!("{}: refused", c.config.join("a").display()));
    chmod(&c.config, 0o755);
    c.kill(libc::SIGHUP);
    c.wait_running("a");
}

/// `--no-strict-modes` accepts what StrictModes refuse.
#[test]
fn no_strict_modes_accepts_every_file() {
    if !is_root() {
        skip!("StrictModes apply only when colony runs as root");
    }
    let c = Colony::start(&["--no-strict-modes"]);
    place(&c.config, "open", &sleep_spec(), 0o666, None);
    place(&c.config, "foreign", &sleep_spec(), 0o644, Some(65534));
    c.wait_running("open");
    c.wait_running("foreign");
    chmod(&c.config, 0o777);
    c.add("in_open_dir", &sleep_spec());
    c.wait_running("in_open_dir");
    chmod(&c.config, 0o755);
    assert!(c.log_lines("refused").is_empty(), "{}", c.log_text());
}

/// Names from files never leave their directory: a message naming
/// "../x" is rejected and moved aside, the ctl refuses such a name, and
/// files colony does not consider programs (dot-files, `.new`) are ignored.
#[test]
fn names_from_files_never_escape_their_directory() {
    let c = Colony::start(&[]);
    c.add("victim", &sleep_spec());
    let victim = c.wait_running("victim");
    let bad = [
        ("0001", json!({"type": "RESTART", "name": "../x"})),
        ("0002", json!({"type": "STOP", "name": "../victim"})),
        ("0003", json!({"type": "SIGNAL", "name": "/etc/passwd", "signal": "KILL"})),
        ("0004", json!({"type": "START", "name": ".."})),
    ];
    for (file, msg) in &bad {
        write_file(&c.messages, file, msg.to_string());
    }
    for (file, msg) in &bad {
        let name = msg["name"].as_str().unwrap();
        c.wait_log(&format!("invalid program name {name:?}"));
        let aside = c.messages.join(format!(".{file}.rejected"));
        c.wait_for("the message to be moved aside", || aside.is_file().then_some(()));
        assert!(!c.messages.join(file).exists());
    }
    assert_eq!(c.pid_of("victim"), Some(victim));
    assert!(alive(victim));

    // The ctl refuses a name with '/' before writing anything.
    for args in [&["add", "../x", "--", "sleep", "1"][..], &["restart", "../victim"], &["add", "a/b", "--cmd", "true"]]
    {
        let out = Command::new(colony_bin())
            .arg("ctl")
            .arg("--config")
            .arg(&c.config)
            .arg("--messages")
            .arg(&c.messages)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "colony ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("'/'"), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(!c.root.join("x").exists());
    let mut names: Vec<String> =
        fs::read_dir(&c.config).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["victim"]);

    // Files that are not program names are ignored silently.
    fs::write(c.config.join(".hidden"), sleep_spec()).unwrap();
    fs::write(c.config.join("half.new"), sleep_spec()).unwrap();
    c.add("after", &sleep_spec());
    c.wait_running("after");
    assert!(c.log_lines("hidden").is_empty() && c.log_lines("half").is_empty(), "{}", c.log_text());
    assert!(!c.pids.join(".hidden").exists() && !c.pids.join("half.new").exists());
}

// ---------------------------------------------------------------------------
// Resource faults
// ---------------------------------------------------------------------------

/// Waits until each of `names` has either started or failed to start with
/// `error`; returns the ones that run and the ones that failed.
fn started_or_failed(c: &Colony, names: &[String], error: &str) -> (Vec<String>, Vec<String>) {
    c.wait_for(&format!("every program to start or fail with {error:?}"), || {
        let done = names
            .iter()
            .all(|n| logged(c, &format!("{n}: started, pid"), "") || logged(c, &format!("{n}: cannot start"), error));
        done.then_some(())
    });
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for n in names {
        if c.pid_of(n).is_some_and(alive) {
            up.push(n.clone());
        } else {
            down.push(n.clone());
        }
    }
    (up, down)
}

/// Out of file descriptors (EMFILE): the programs that fit start, the
/// others are logged and retried with backoff; removing programs frees
/// descriptors and the others start; colony keeps running.
#[test]
fn emfile_failed_starts_are_retried_with_backoff() {
    if !runs("prlimit", &["--nofile=64:64", "true"]) {
        skip!("prlimit cannot run a command with a lower open-files limit here");
    }
    let c = Colony::with(Options {
        wrapper: vec!["prlimit".into(), "--nofile=40:40".into()],
        args: ["-m", "0.2", "-M", "1"].map(String::from).to_vec(),
        ..Options::default()
    });
    assert_eq!(limit_of(c.pid(), "Max open files")[..2], ["40", "40"]);
    let names: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    for n in &names {
        c.add(n, &sleep_spec());
    }
    let (up, down) = started_or_failed(&c, &names, "Too many open files");
    assert!(!up.is_empty(), "nothing started\n{}", c.log_text());
    assert!(!down.is_empty(), "everything started: the limit did not bite\n{}", c.log_text());
    // Retried with a growing delay.
    c.wait_log("starting again in 0.200 s");
    c.wait_log("starting again in 0.400 s");
    for n in &up {
        assert!(c.pid_of(n).is_some_and(alive), "{n} stopped");
    }
    // Free descriptors: the others start.
    for n in &up {
        fs::remove_file(c.config.join(n)).unwrap();
    }
    for n in &down {
        c.wait_running(n);
    }
    assert!(alive(c.pid()), "colony exited");
    c.add("later", &sleep_spec());
    c.wait_running("later");
}

/// Out of descriptors because programs' pipes and log files hold them all:
/// colony keeps two in reserve for reading its directories, so a change
/// made meanwhile is still seen at once (it was missed until the next
/// rescan before the reserve).
#[test]
fn emfile_the_config_directory_stays_readable() {
    if !runs("prlimit", &["--nofile=64:64", "true"]) {
        skip!("prlimit cannot run a command with a lower open-files limit here");
    }
    let c = Colony::with(Options {
        wrapper: vec!["prlimit".into(), "--nofile=40:40".into()],
        args: ["-m", "0.2", "-M", "1"].map(String::from).to_vec(),
        ..Options::default()
    });
    let go = c.root.join("go");
    let logs = c.root.join("logs");
    fs::create_dir(&logs).unwrap();
    // Each program takes two descriptors (its pipes) when it starts and a
    // third (its log file) when it first writes, after `go` exists. It
    // exits when its `leave-NAME` file exists.
    let script = "while [ ! -e \"$GO\" ]; do sleep 0.05; done; echo hello; \
                  while [ ! -e \"$LEAVE\" ]; do sleep 0.05; done";
    let names: Vec<String> = (0..20).map(|i| format!("q{i:02}")).collect();
    for n in &names {
        let leave = c.root.join(format!("leave-{n}"));
        let env = [("GO", go.to_str().unwrap()), ("LEAVE", leave.to_str().unwrap())];
        let mut v: serde_json::Value = serde_json::from_str(&sh_spec(script, &env)).unwrap();
        v["log"] = json!({"file": logs.join(format!("{n}.log")).to_str().unwrap()});
        // A program that leaves (exit 0) stays gone, so its descriptors do.
        v["restart"] = json!("on-failure");
        c.add(n, &v.to_string());
    }
    let (up, _down) = started_or_failed(&c, &names, "Too many open files");
    assert!(up.len() >= 9, "too few programs started to use up every descriptor\n{}", c.log_text());
    fs::write(&go, "").unwrap();
    // More programs write than there are descriptors left for log files.
    c.wait_log(".log: cannot write: Too many open files");
    // Remove three programs while programs hold every descriptor: colony
    // keeps a reserve for reading its directories, so it still sees it.
    let (victims, rest) = up.split_at(3);
    let (_leavers, kept) = rest.split_at(3);
    for n in victims {
        fs::remove_file(c.config.join(n)).unwrap();
    }
    for n in victims {
        c.wait_within(Duration::from_millis(2500), &format!("{n} to be stopped"), || {
            (c.count_log(&format!("{n}: config removed, stopping")) > 0).then_some(())
        });
    }
    let dir = c.config.display().to_string();
    assert_eq!(
        c.count_log(&format!("cannot read the config directory {dir}")),
        0,
        "the reserve should have kept the directory readable\n{}",
        c.log_text()
    );
    for n in kept {
        assert!(c.pid_of(n).is_some_and(alive), "{n} stopped\n{}", c.log_text());
    }
    assert!(alive(c.pid()), "colony exited");
}

/// Unmounts (lazily) when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: umount2 with a valid path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A 64 KiB tmpfs, or why there is none.
fn small_tmpfs() -> Result<(tempfile::TempDir, Unmount), String> {
    if !is_root() {
        return Err("mounting a tmpfs needs root".into());
    }
    let dir = tempfile::Builder::new().prefix("colony-small-").tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().to_path_buf();
    if !runs("mount", &["-t", "tmpfs", "-o", "size=64k", "tmpfs", path.to_str().unwrap()]) {
        return Err("mount -t tmpfs failed".into());
    }
    Ok((dir, Unmount(path)))
}

/// A program that writes about 130 KB at once, then a line every 20 ms,
/// to its own log file on a 64 KiB tmpfs.
fn chatty(log: &Path) -> String {
    let script = "i=0; while [ $i -lt 1000 ]; do \
                  echo \"burst $i ....................................................................................................\"; \
                  i=$((i+1)); done; while :; do echo tick; sleep 0.02; done";
    let mut v: serde_json::Value = serde_json::from_str(&sh_spec(script, &[])).unwrap();
    v["log"] = json!({"file": log.to_str().unwrap(), "max_size": 10_000_000, "keep": 1});
    v.to_string()
}

/// A full disk (ENOSPC) for a program's log file: the error is logged,
/// lines are dropped, other programs are supervised as usual, and lines
/// are written again once there is space.
#[test]
fn enospc_log_file_drops_lines_and_resumes() {
    let (small, _unmount) = match small_tmpfs() {
        Ok(t) => t,
        Err(why) => skip!("{why}"),
    };
    let log = small.path().join("x.log");
    let c = Colony::start(&[]);
    c.add("other", &sleep_spec());
    let other = c.wait_running("other");
    c.add("chatty", &chatty(&log));
    c.wait_log(&format!("{}: cannot write: No space left on device", log.display()));
    let chatty_pid = c.pid_of("chatty").unwrap();
    // Supervision goes on.
    c.ctl(&["restart", "other"]);
    c.wait_new_pid("other", other);
    assert!(alive(chatty_pid));
    // Free the space: lines are written again.
    let before = c.count_log("writing again");
    fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    c.wait_log_n("line(s) were dropped", before + 1);
    let ticks = || fs::read_to_string(&log).unwrap_or_default().lines().filter(|l| l.ends_with(" tick")).count();
    let first = c.wait_for("ticks in the log file", || Some(ticks()).filter(|&n| n > 0));
    c.wait_for("more ticks in the log file", || (ticks() > first).then_some(()));
    assert_eq!(c.pid_of("chatty"), Some(chatty_pid), "chatty was restarted");
}

/// While the disk stays full the error is logged once, not at every retry.
#[test]
fn enospc_log_file_error_is_logged_once() {
    let (small, _unmount) = match small_tmpfs() {
        Ok(t) => t,
        Err(why) => skip!("{why}"),
    };
    let log = small.path().join("x.log");
    let c = Colony::start(&[]);
    c.add("chatty", &chatty(&log));
    let error = format!("{}: cannot write: No space left on device", log.display());
    c.wait_log(&error);
    // Two and a half retry periods of a disk that stays full: an
    // observation window, not a synchronisation.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(c.count_log(&error), 1, "{}", c.log_text());
    assert_eq!(c.count_log("writing again"), 0, "{}", c.log_text());
}

/// Starts colony in a private user namespace where `knob`
/// (/proc/sys/user/max_inotify_*) is `value`, so that it cannot watch its
/// directories; checks that it rescans every second, picks up a new
/// program, and watches again once the limit is raised.
fn inotify_unavailable(knob: &str, value: &str, reason: &str) {
    let probe = format!("echo {value} > /proc/sys/user/{knob}");
    if !runs("unshare", &["--user", "--map-root-user", "/bin/sh", "-c", &probe]) {
        skip!("cannot lower /proc/sys/user/{knob} in a new user namespace (unshare --user --map-root-user)");
    }
    if !runs("nsenter", &["--version"]) {
        skip!("nsenter is missing");
    }
    let script = format!("{probe} && exec \"$0\" \"$@\"");
    let c = Colony::with(Options {
        wrapper: ["unshare", "--user", "--map-root-user", "/bin/sh", "-c", &script].map(String::from).to_vec(),
        ..Options::default()
    });
    let error = c.wait_log("rescanning every second and retrying");
    assert!(error.contains(reason), "{error}");
    c.add("late", &sleep_spec());
    c.wait_within(Duration::from_millis(2500), "late to run (through rescans)", || {
        c.pid_of("late").filter(|&p| alive(p))
    });
    // Raise the limit inside colony's namespace.
    let raise = format!("echo 100000 > /proc/sys/user/{knob}");
    let target = c.pid().to_string();
    assert!(
        runs("nsenter", &["--preserve-credentials", "--user", "--target", &target, "/bin/sh", "-c", &raise]),
        "cannot raise {knob}"
    );
    c.wait_within(Duration::from_millis(2500), "colony to watch again", || {
        (c.count_log("watching the directories again") > 0).then_some(())
    });
    // Watched again: a change is seen at once, long before the next
    // rescan (10 s).
    c.add("quick", &sleep_spec());
    c.wait_within(Duration::from_millis(900), "quick to run (through inotify)", || {
        c.pid_of("quick").filter(|&p| alive(p))
    });
    assert!(alive(c.pid()));
}

#[test]
fn inotify_instance_limit_falls_back_to_rescans() {
    inotify_unavailable("max_inotify_instances", "0", "too many inotify instances");
}

#[test]
fn inotify_watch_limit_falls_back_to_rescans() {
    inotify_unavailable("max_inotify_watches", "1", "too many inotify watches");
}

/// Restores a sysctl when dropped.
struct Sysctl {
    path: PathBuf,
    old: String,
}

impl Sysctl {
    fn set(path: &str, value: &str) -> Result<Sysctl, String> {
        let old = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        fs::write(path, value).map_err(|e| format!("{path}: {e}"))?;
        Ok(Sysctl { path: path.into(), old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if let Err(e) = fs::write(&self.path, self.old.trim()) {
            eprintln!("cannot restore {}: {e}", self.path.display());
        }
    }
}

/// An inotify queue of one event overflows at once: colony rescans and
/// loses no change. Lowers fs.inotify.max_queued_events machine-wide for
/// the few milliseconds colony takes to start, so it only runs with
/// COLONY_TEST_SYSCTL=1.
#[test]
fn inotify_queue_overflow_means_a_rescan() {
    if std::env::var_os("COLONY_TEST_SYSCTL").is_none_or(|v| v != "1") {
        skip!("changes fs.inotify.max_queued_events machine-wide: set COLONY_TEST_SYSCTL=1 to run it");
    }
    if !is_root() {
        skip!("changing a sysctl needs root");
    }
    let c = {
        let _lowered = match Sysctl::set("/proc/sys/fs/inotify/max_queued_events", "1") {
            Ok(s) => s,
            Err(why) => skip!("cannot lower max_queued_events: {why}"),
        };
        // The queue size is fixed when colony creates its inotify
        // instance, before it logs that it is supervising.
        Colony::start(&["--frequency", "1000"])
    };
    let names: Vec<String> = (0..40).map(|i| format!("o{i:02}")).collect();
    for n in &names {
        c.add(n, &sleep_spec());
    }
    for n in &names {
        c.wait_running(n);
    }
}

/// A cgroup of the test's own (pids: v2, or v1's pids hierarchy; freezer:
/// v1 only), removed when dropped after thawing it and killing what is left
/// in it.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    fn create(controller: &str) -> Result<Cgroup, String> {
        if !is_root() {
            return Err("creating a cgroup needs root".into());
        }
        let name = format!("colony-faults-{controller}-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup");
        let v1 = v2.join(controller);
        let base = if controller == "pids"
            && fs::read_to_string(v2.join("cgroup.controllers")).is_ok_and(|c| c.contains("pids"))
        {
            let _ = fs::write(v2.join("cgroup.subtree_control"), "+pids");
            v2.to_path_buf()
        } else if v1.join("cgroup.procs").is_file() {
            v1
        } else if controller == "freezer" {
            // cgroup v2 lets SIGKILL through to frozen processes.
            return Err("needs the cgroup v1 freezer (a frozen process killed there exits only when thawed)".into());
        } else {
            return Err(format!("no writable {controller} cgroup controller (v2 or v1)"));
        };
        let dir = base.join(name);
        fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cg = Cgroup { dir };
        let knob = if controller == "pids" { "pids.max" } else { "freezer.state" };
        if !cg.dir.join(knob).is_file() {
            return Err(format!("{} has no {knob}", cg.dir.display()));
        }
        Ok(cg)
    }

    fn procs(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn add(&self, pid: i32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    fn current(&self) -> u64 {
        fs::read_to_string(self.dir.join("pids.current")).unwrap().trim().parse().unwrap()
    }

    fn set_max(&self, max: &str) {
        fs::write(self.dir.join("pids.max"), max).unwrap();
    }

    fn freeze(&self, state: &str) {
        let path = self.dir.join("freezer.state");
        fs::write(&path, state).unwrap();
        wait_until(DEADLINE, &format!("the cgroup to be {state}"), String::new, || {
            (fs::read_to_string(&path).ok()?.trim() == state).then_some(())
        });
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("freezer.state"), "THAWED");
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            let procs = self.procs();
            if procs.is_empty() && fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            for p in procs {
                signal(p, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("cannot remove the cgroup {}", self.dir.display());
    }
}

/// fork fails (EAGAIN: the pids cgroup is full): logged, retried with
/// backoff, the running programs are untouched, and the others start once
/// processes are allowed again.
#[test]
fn eagain_failed_forks_are_retried() {
    let cg = match Cgroup::create("pids") {
        Ok(cg) => cg,
        Err(why) => skip!("{why}"),
    };
    let enter = format!("echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"", cg.dir.display());
    let c = Colony::with(Options {
        wrapper: ["/bin/sh", "-c", &enter].map(String::from).to_vec(),
        args: ["-m", "0.2", "-M", "1"].map(String::from).to_vec(),
        ..Options::default()
    });
    assert!(cg.procs().contains(&c.pid()), "colony is not in {}", cg.dir.display());
    // colony's own tasks (threads included) and three more.
    cg.set_max(&(cg.current() + 3).to_string());
    let names: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    for n in &names {
        c.add(n, &sleep_spec());
    }
    let (up, down) = started_or_failed(&c, &names, "Resource temporarily unavailable");
    assert!(!up.is_empty() && !down.is_empty(), "up {up:?}, down {down:?}\n{}", c.log_text());
    c.wait_log("starting again in 0.400 s");
    for n in &up {
        assert!(c.pid_of(n).is_some_and(alive), "{n} stopped");
    }
    cg.set_max("max");
    for n in &down {
        c.wait_running(n);
    }
    assert!(alive(c.pid()));
}

// ---------------------------------------------------------------------------
// Limits for children
// ---------------------------------------------------------------------------

/// `umask`, `nice` and `limits` reach the program (soft and hard limits).
#[test]
fn umask_nice_and_limits_reach_the_program() {
    let c = Colony::start(&[]);
    let report = c.root.join("report");
    let script = "printf '%s %s %s %s %s\\n' \"$(umask)\" \"$(ulimit -n)\" \"$(ulimit -c)\" \"$(ulimit -v)\" \
                  \"$(cut -d' ' -f19 /proc/self/stat)\" > \"$OUT.tmp\" && mv \"$OUT.tmp\" \"$OUT\"; exec sleep 1000";
    let mut v: serde_json::Value = serde_json::from_str(&sh_spec(
        script,
        &[("OUT", report.to_str().unwrap()), ("PATH", "/usr/local/bin:/usr/bin:/bin")],
    ))
    .unwrap();
    v["umask"] = json!("027");
    v["nice"] = json!(5);
    v["limits"] = json!({"nofile": 512, "nproc": 4096, "core": "unlimited", "as": 2147483648u64});
    c.add("lim", &v.to_string());
    let pid = c.wait_running("lim");
    let line = c.wait_for("the report", || fs::read_to_string(&report).ok());
    assert_eq!(line.trim(), "0027 512 unlimited 2097152 5");
    // The umask applied to the file the program created.
    assert_eq!(fs::metadata(&report).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(status_line(pid, "Umask").as_deref(), Some("0027"));
    assert_eq!(nice_of(pid), Some(5));
    assert_eq!(limit_of(pid, "Max open files")[..2], ["512", "512"]);
    assert_eq!(limit_of(pid, "Max processes")[..2], ["4096", "4096"]);
    assert_eq!(limit_of(pid, "Max core file size")[..2], ["unlimited", "unlimited"]);
    assert_eq!(limit_of(pid, "Max address space")[..2], ["2147483648", "2147483648"]);

    // Without the keys, the supervisor's own (not the ones above).
    c.add("plain", &sleep_spec());
    let plain = c.wait_running("plain");
    assert_eq!(nice_of(plain), nice_of(c.pid()));
    assert_ne!(limit_of(plain, "Max open files")[..2], ["512", "512"]);
}

/// A bad `umask`, `nice` or `limits` value is a config error naming the
/// file and the key; nothing starts, and a running instance is kept.
#[test]
fn bad_umask_nice_or_limits_are_config_errors() {
    let c = Colony::start(&[]);
    let with = |extra: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_str(&sleep_spec()).unwrap();
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v.to_string()
    };
    let cases = [
        ("badumask", json!({"umask": "999"}), r#""umask": expected an octal mode like "022", found "999""#),
        ("numumask", json!({"umask": 18}), r#""umask": expected an octal mode as a string"#),
        ("badnice", json!({"nice": 40}), r#""nice": expected a whole number from -20 to 19, found 40"#),
        ("lownice", json!({"nice": -21}), r#""nice": expected a whole number from -20 to 19, found -21"#),
        (
            "badlimit",
            json!({"limits": {"bogus": 1}}),
            r#""limits.bogus": unknown limit (known: nofile, nproc, core, as)"#,
        ),
        ("badvalue", json!({"limits": {"nofile": "lots"}}), r#""limits.nofile": expected a number or "unlimited""#),
        ("negvalue", json!({"limits": {"core": -1}}), r#""limits.core": expected a number or "unlimited""#),
        ("notobject", json!({"limits": [1]}), r#""limits": expected an object"#),
    ];
    for (name, extra, _) in &cases {
        c.add(name, &with(extra.clone()));
    }
    for (name, _, why) in &cases {
        c.wait_log(&format!("{}: {why}", c.config.join(name).display()));
    }
    for (name, _, _) in &cases {
        assert_eq!(c.pid_of(name), None, "{name} was started");
    }
    // A running program given a bad value keeps running as it was.
    c.add("running", &with(json!({"nice": 3})));
    let pid = c.wait_running("running");
    c.add("running", &with(json!({"nice": 99})));
    c.wait_log("(the running instance is kept)");
    assert_eq!(c.pid_of("running"), Some(pid));
    assert_eq!(nice_of(pid), Some(3));
}
