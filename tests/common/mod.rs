//! The harness of the supervisor's integration tests: a [`Colony`] guard
//! that runs the real `colony run` in a temporary directory, collects its
//! log, waits for handshakes (never fixed sleeps), and kills the daemon and
//! every process it started when dropped, even when the test panics.
//!
//! Depends on std, libc (signals, fifos) and the `colony-ctl` writer.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a handshake may take before the test fails. Every wait in
/// these tests ends as soon as its condition holds; the deadline only
/// matters when something is wrong.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(5);

/// The `colony` binary under test.
pub fn colony_bin() -> &'static str {
    env!("CARGO_BIN_EXE_colony")
}

/// Polls `cond` until it returns `Some`, or panics after `deadline` with
/// `what` and `context()` (usually the daemon's log).
pub fn wait_until<T>(
    deadline: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut cond: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {:.1} s waiting for {what}\n{}", deadline.as_secs_f64(), context());
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// /proc helpers
// ---------------------------------------------------------------------------

/// The fields of /proc/PID/stat after the command name: index 0 is the
/// state, 1 the ppid, 2 the process group.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The process state letter (R, S, Z, ...), if the pid exists.
pub fn proc_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The parent pid.
pub fn ppid(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The process group.
pub fn pgid(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// User plus system CPU time in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Whether `pid` exists and is not a zombie (kill(pid, 0) and the state in
/// /proc/PID/stat).
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence.
    let exists =
        unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !matches!(proc_state(pid), Some('Z') | Some('X') | None)
}

/// Where each open descriptor of a process points, by number.
pub fn fds(pid: i32) -> std::collections::BTreeMap<i32, String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let fd = e.file_name().to_str()?.parse().ok()?;
                    Some((fd, fs::read_link(e.path()).ok()?.to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The argv of a process.
pub fn cmdline(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Every pid on the system.
pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|d| d.filter_map(Result::ok).filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The children of `pid` (zombies included).
pub fn children_of(pid: i32) -> Vec<i32> {
    all_pids().into_iter().filter(|&p| ppid(p) == Some(pid)).collect()
}

/// Every descendant of `pid` (zombies included).
pub fn descendants(pid: i32) -> BTreeSet<i32> {
    let table: Vec<(i32, i32)> = all_pids().into_iter().filter_map(|p| Some((p, ppid(p)?))).collect();
    let mut out = BTreeSet::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &table {
            if pp == parent && out.insert(p) {
                frontier.push(p);
            }
        }
    }
    out
}

/// The zombies whose parent is `pid`.
pub fn zombies_of(pid: i32) -> Vec<i32> {
    children_of(pid).into_iter().filter(|&p| proc_state(p) == Some('Z')).collect()
}

/// The pids of `pid` in the PID namespaces it belongs to, outermost first
/// (the `NSpid` line of /proc/PID/status).
pub fn ns_pids(pid: i32) -> Vec<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|rest| rest.split_whitespace().filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_default()
}

/// Sends `sig` to `pid`; returns whether it was delivered.
pub fn signal(pid: i32, sig: i32) -> bool {
    // SAFETY: plain kill(2).
    pid > 0 && unsafe { libc::kill(pid, sig) } == 0
}

/// Sends `sig` to the process group `pgid`.
pub fn signal_group(pgid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) with a negative pid signals a group.
    pgid > 1 && unsafe { libc::kill(-pgid, sig) } == 0
}

/// Creates a named pipe.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
}

/// Writes a line to a fifo that a process is blocked reading; fails if no
/// reader is there.
pub fn release_fifo(path: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap_or_else(|e| panic!("nobody reads {}: {e}", path.display()));
    f.write_all(b"go\n").unwrap();
}

/// Parses the pid in a file, if it holds a whole one.
pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes `bytes` as `dir/name` through the protocol's one atomic writer.
pub fn write_file(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    colony_ctl::write_atomic(dir, name, bytes.as_ref())
        .unwrap_or_else(|e| panic!("cannot write {}/{name}: {e}", dir.display()));
}

/// A config file (JSON) for `args`.
pub fn spec(args: &[&str]) -> String {
    serde_json::json!({ "args": args }).to_string()
}

/// A config file running a `/bin/sh -c` script with `env`.
pub fn sh_spec(script: &str, env: &[(&str, &str)]) -> String {
    let env: serde_json::Map<String, serde_json::Value> =
        env.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect();
    serde_json::json!({ "args": ["/bin/sh", "-c", script], "env": env }).to_string()
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

/// How to start a [`Colony`].
#[derive(Default)]
pub struct Options {
    /// Extra `colony run` options (e.g. `-m 0.2`).
    pub args: Vec<String>,
    /// Extra environment of the daemon.
    pub env: Vec<(String, String)>,
    /// A command that runs colony (e.g. `unshare --pid --fork`), or nothing.
    pub wrapper: Vec<String>,
    /// Config files (name, content) present before colony starts.
    pub configs: Vec<(String, String)>,
    /// Return at once instead of waiting until colony watches its
    /// directories.
    pub no_wait: bool,
    /// Give colony an inheritable descriptor (fd 100, /dev/null), as a
    /// careless parent would.
    pub leak_fd: bool,
}

/// The descriptor [`Options::leak_fd`] leaves open in colony.
pub const LEAKED_FD: i32 = 100;

/// A running `colony run` in its own temporary directory. Dropping it
/// SIGKILLs the daemon and every process it started.
pub struct Colony {
    /// Holds the temporary directory (removed on drop).
    _tmp: tempfile::TempDir,
    /// The temporary directory, canonical; also the daemon's working
    /// directory, which every child inherits (used to find leftovers).
    pub root: PathBuf,
    /// `--config`.
    pub config: PathBuf,
    /// `--messages`.
    pub messages: PathBuf,
    /// `--pid`.
    pub pids: PathBuf,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    eof: Arc<AtomicBool>,
    exit: Option<ExitStatus>,
}

impl Colony {
    /// Starts `colony run` with extra options and waits until it watches
    /// its directories.
    pub fn start(args: &[&str]) -> Colony {
        Colony::with(Options { args: args.iter().map(|s| s.to_string()).collect(), ..Options::default() })
    }

    /// Starts colony as `opts` say and waits until it watches its
    /// directories.
    pub fn with(opts: Options) -> Colony {
        let tmp = tempfile::Builder::new().prefix("colony-it-").tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().unwrap();
        let (config, messages, pids) = (root.join("config"), root.join("messages"), root.join("pid"));
        if !opts.configs.is_empty() {
            fs::create_dir(&config).unwrap();
            for (name, content) in &opts.configs {
                write_file(&config, name, content);
            }
        }
        let mut argv: Vec<OsString> = opts.wrapper.iter().map(OsString::from).collect();
        argv.push(colony_bin().into());
        argv.extend(["run", "--config"].map(OsString::from));
        argv.push(config.clone().into());
        argv.push("--messages".into());
        argv.push(messages.clone().into());
        argv.push("--pid".into());
        argv.push(pids.clone().into());
        argv.extend(opts.args.iter().map(OsString::from));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        for var in [
            "COLONY_CONFIG_DIR",
            "COLONY_MESSAGES_DIR",
            "COLONY_PID_DIR",
            "COLONY_STATUS_DIR",
            "COLONY_METRICS_FILE",
            "COLONY_FREQUENCY",
            "COLONY_THRESHOLD",
            "COLONY_KILLTIME",
            "COLONY_MINRESTARTDELAY",
            "COLONY_MAXRESTARTDELAY",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("COLONY_LOG", "info");
        // Open until colony has been spawned (end of this function).
        let null = fs::File::open("/dev/null").unwrap();
        if opts.leak_fd {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
            // SAFETY: dup2 is async-signal-safe; the new descriptor has no
            // close-on-exec flag, so colony inherits it.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(fd, LEAKED_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {:?}: {e}", argv));
        let log = Arc::new(Mutex::new(Vec::new()));
        let eof = Arc::new(AtomicBool::new(false));
        let stderr = child.stderr.take().unwrap();
        {
            let (log, eof) = (log.clone(), eof.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(stderr);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf).trim_end_matches('\n').to_string();
                            log.lock().unwrap().push(line);
                        }
                    }
                }
                eof.store(true, Ordering::SeqCst);
            });
        }
        let colony = Colony { _tmp: tmp, root, config, messages, pids, child, log, eof, exit: None };
        if !opts.no_wait {
            colony.wait_log("supervising");
        }
        colony
    }

    /// The pid of the process started (colony itself, or the wrapper).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The log so far, one entry per line.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The log so far as one text, for failure messages.
    pub fn log_text(&self) -> String {
        format!("--- colony log ---\n{}\n--- end of log ---", self.log().join("\n"))
    }

    /// Lines containing `pattern`.
    pub fn log_lines(&self, pattern: &str) -> Vec<String> {
        self.log().into_iter().filter(|l| l.contains(pattern)).collect()
    }

    /// How many lines contain `pattern`.
    pub fn count_log(&self, pattern: &str) -> usize {
        self.log_lines(pattern).len()
    }

    /// Waits until `cond` returns `Some` (failing with the log after the
    /// default deadline).
    pub fn wait_for<T>(&self, what: &str, cond: impl FnMut() -> Option<T>) -> T {
        self.wait_within(DEADLINE, what, cond)
    }

    /// [`wait_for`](Self::wait_for) with another deadline.
    pub fn wait_within<T>(&self, deadline: Duration, what: &str, cond: impl FnMut() -> Option<T>) -> T {
        wait_until(deadline, what, || self.log_text(), cond)
    }

    /// Waits for a log line containing `pattern`; returns it.
    pub fn wait_log(&self, pattern: &str) -> String {
        self.wait_log_n(pattern, 1).pop().unwrap()
    }

    /// Waits until `n` log lines contain `pattern`; returns them.
    pub fn wait_log_n(&self, pattern: &str, n: usize) -> Vec<String> {
        self.wait_for(&format!("{n} log line(s) containing {pattern:?}"), || {
            let lines = self.log_lines(pattern);
            (lines.len() >= n).then_some(lines)
        })
    }

    /// Runs `colony ctl --config C --messages M ARGS` and checks it succeeds.
    pub fn ctl(&self, args: &[&str]) {
        let out = Command::new(colony_bin())
            .arg("ctl")
            .arg("--config")
            .arg(&self.config)
            .arg("--messages")
            .arg(&self.messages)
            .args(args)
            .output()
            .expect("run colony ctl");
        assert!(out.status.success(), "colony ctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Writes a config file.
    pub fn add(&self, name: &str, json: &str) {
        write_file(&self.config, name, json);
    }

    /// The pid in `pid/NAME`, if the file holds one.
    pub fn pid_of(&self, name: &str) -> Option<i32> {
        read_pid(&self.pids.join(name))
    }

    /// Waits until `name` runs (its PID file names a live process).
    pub fn wait_running(&self, name: &str) -> i32 {
        self.wait_for(&format!("{name} to run"), || self.pid_of(name).filter(|&p| alive(p)))
    }

    /// Waits until `name` runs with a pid other than `old`.
    pub fn wait_new_pid(&self, name: &str, old: i32) -> i32 {
        self.wait_for(&format!("{name} to run with a pid other than {old}"), || {
            self.pid_of(name).filter(|&p| p != old && alive(p))
        })
    }

    /// Waits until `pid` is gone or a zombie no more alive.
    pub fn wait_dead(&self, pid: i32) {
        self.wait_for(&format!("process {pid} to die"), || (!alive(pid)).then_some(()));
    }

    /// Waits until `pid` has been reaped (its /proc entry is gone).
    pub fn wait_reaped(&self, pid: i32) {
        self.wait_for(&format!("process {pid} to be reaped"), || proc_state(pid).is_none().then_some(()));
    }

    /// Sends a signal to the daemon (or its wrapper).
    pub fn kill(&self, sig: i32) {
        assert!(signal(self.pid(), sig), "cannot signal the daemon");
    }

    /// Polls for the daemon's exit until `deadline`; returns its status and
    /// the time it took.
    pub fn wait_exit(&mut self, deadline: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.exit = Some(st);
                let took = start.elapsed();
                // Let the reader see the last lines (a process that
                // outlived colony may hold the pipe: do not wait forever).
                let read_until = Instant::now() + Duration::from_secs(2);
                while !self.eof.load(Ordering::SeqCst) && Instant::now() < read_until {
                    std::thread::sleep(POLL);
                }
                return (st, took);
            }
            if start.elapsed() > deadline {
                panic!("colony did not exit within {:.1} s\n{}", deadline.as_secs_f64(), self.log_text());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Processes whose working directory is inside this colony's
    /// directory: the daemon and every child it started, including
    /// orphans that outlived it.
    pub fn leftovers(&self) -> BTreeSet<i32> {
        let me = std::process::id() as i32;
        all_pids()
            .into_iter()
            .filter(|&p| p != me)
            .filter(|p| fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|cwd| cwd.starts_with(&self.root)))
            .collect()
    }
}

impl Drop for Colony {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_text());
        }
        let me = std::process::id() as i32;
        // SAFETY: getpgrp has no arguments and cannot fail.
        let my_group = unsafe { libc::getpgrp() };
        let daemon = self.pid();
        let mut victims = if self.exit.is_none() { descendants(daemon) } else { BTreeSet::new() };
        if self.exit.is_none() {
            signal(daemon, libc::SIGKILL);
        }
        for _ in 0..200 {
            victims.extend(self.leftovers());
            victims.retain(|&p| p != me && p != daemon && alive(p));
            if victims.is_empty() {
                break;
            }
            for &p in &victims {
                if let Some(g) = pgid(p).filter(|&g| g > 1 && g != my_group) {
                    signal_group(g, libc::SIGKILL);
                }
                signal(p, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.exit.is_none() {
            let _ = self.child.wait();
        }
    }
}
