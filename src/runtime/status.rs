//! The status directory and the metrics file: what the supervisor decided,
//! written atomically only when it changed (never on a timer), one file per
//! program plus one for the daemon; and a Prometheus textfile at most once
//! per second.
//!
//! Depends on colony-ctl's status types and the core's views.

use crate::core::supervisor::{ExitStatus, State, Supervisor, View};
use colony_ctl::{write_volatile, DaemonStatus, LastExit, ProgramName, ProgramStatus, StateName, DAEMON_FILE};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Turns loop instants into Unix time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    unix: f64,
}

impl Clock {
    /// Pairs the monotonic and the wall clock once.
    pub fn now() -> Clock {
        let unix = colony_ctl::time::unix_now();
        Clock { base: Instant::now(), unix }
    }

    /// A wall-clock time as a loop instant (for file times).
    pub fn instant(&self, t: SystemTime) -> Instant {
        let unix = colony_ctl::time::unix_secs(t);
        let delta = unix - self.unix;
        if delta >= 0.0 {
            self.base + Duration::from_secs_f64(delta.min(1e9))
        } else {
            self.base.checked_sub(Duration::from_secs_f64((-delta).min(1e9))).unwrap_or(self.base)
        }
    }

    /// `t` as Unix time.
    pub fn unix(&self, t: Instant) -> f64 {
        if t >= self.base {
            self.unix + (t - self.base).as_secs_f64()
        } else {
            self.unix - (self.base - t).as_secs_f64()
        }
    }
}

/// What makes a program's status different (everything but timestamps).
#[derive(Debug, Clone, PartialEq)]
struct Key {
    state: StateName,
    pid: Option<i32>,
    started: Option<Instant>,
    instance: u64,
    last_exit: Option<ExitStatus>,
    next_start: Option<Instant>,
    held: bool,
    disabled: bool,
    ready: bool,
    health: Option<&'static str>,
    waiting_for: Vec<String>,
    blocked: Option<String>,
}

fn key(v: &View<'_>) -> Key {
    let (state, pid, started, next_start) = match *v.state {
        State::Starting => (StateName::Starting, None, None, None),
        State::Running { pid, since } => (StateName::Running, Some(pid), Some(since), None),
        State::Stopping { pid, since, .. } => (StateName::Stopping, Some(pid), Some(since), None),
        State::Waiting { at } => (StateName::Backoff, None, None, Some(at)),
        State::Halted => (StateName::Stopped, None, None, None),
        State::Failed { retry_at } => (StateName::Failed, None, None, retry_at),
    };
    // A program waiting for others to be ready is starting, not in backoff;
    // one whose `after` can never be satisfied is stopped.
    let (state, next_start) = match state {
        StateName::Backoff if v.blocked.is_some() => (StateName::Stopped, None),
        StateName::Backoff if !v.waiting_for.is_empty() => (StateName::Starting, None),
        _ => (state, next_start),
    };
    Key {
        state,
        pid,
        started,
        instance: v.starts,
        last_exit: v.last_exit,
        next_start,
        held: v.held,
        disabled: v.spec.disabled(),
        ready: v.ready,
        health: v.health,
        waiting_for: v.waiting_for.iter().map(|s| s.to_string()).collect(),
        blocked: v.blocked.map(String::from),
    }
}

/// Keeps the status directory in step with the supervisor.
pub struct StatusWriter {
    dir: PathBuf,
    clock: Clock,
    /// A digest of each program's last written status (not the status
    /// itself: colony keeps one per program).
    written: HashMap<ProgramName, u64>,
    writes: u64,
    daemon: DaemonStatus,
    last_daemon: Option<(usize, usize, bool)>,
}

impl StatusWriter {
    /// Prepares `dir` (created if missing) and removes what an earlier run
    /// left there.
    pub fn new(dir: PathBuf, clock: Clock, config: &Path, messages: &Path) -> Result<StatusWriter, String> {
        std::fs::create_dir_all(dir.join(".heartbeat"))
            .map_err(|e| format!("cannot create the status directory {}: {e}", dir.display()))?;
        // Remove what an earlier run wrote, and only that.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let ours = e.file_name() == DAEMON_FILE
                    || std::fs::read(e.path())
                        .ok()
                        .is_some_and(|b| serde_json::from_slice::<ProgramStatus>(&b).is_ok());
                if ours {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let daemon = DaemonStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: clock.unix,
            config: config.to_path_buf(),
            messages: messages.to_path_buf(),
            programs: 0,
            running: 0,
            status_writes: 0,
            stopping: false,
            updated: clock.unix,
        };
        Ok(StatusWriter { dir, clock, written: HashMap::new(), writes: 0, daemon, last_daemon: None })
    }

    /// Writes the file of every program whose status changed, removes those
    /// of forgotten programs, and the daemon's when anything changed.
    pub fn sync(&mut self, sup: &Supervisor, now: Instant) -> bool {
        let mut changed = false;
        let mut running = 0;
        let mut count = 0;
        for (name, _) in sup.programs() {
            let Some(view) = sup.view(name.as_str()) else { continue };
            count += 1;
            let k = key(&view);
            if k.state == StateName::Running {
                running += 1;
            }
            let digest = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                format!("{k:?}").hash(&mut h);
                h.finish()
            };
            if self.written.get(name) == Some(&digest) {
                continue;
            }
            let status = ProgramStatus {
                name: name.to_string(),
                state: k.state,
                pid: k.pid,
                started: k.started.map(|t| self.clock.unix(t)),
                instance: k.instance,
                restarts: k.instance.saturating_sub(1),
                last_exit: k.last_exit.map(|e| match e {
                    ExitStatus::Exited(c) => LastExit { code: Some(c), signal: None },
                    ExitStatus::Signaled(s) => LastExit { code: None, signal: Some(s) },
                }),
                next_start: k.next_start.map(|t| self.clock.unix(t)),
                held: k.held,
                disabled: k.disabled,
                since: self.clock.unix(now),
                ready: k.ready,
                health: k.health.map(String::from),
                waiting_for: k.waiting_for.clone(),
                blocked: k.blocked.clone(),
            };
            self.write(name.as_str(), &status);
            self.written.insert(name.clone(), digest);
            changed = true;
        }
        if self.written.len() != count {
            let gone: Vec<ProgramName> =
                self.written.keys().filter(|n| sup.view(n.as_str()).is_none()).cloned().collect();
            for name in gone {
                self.written.remove(&name);
                let _ = std::fs::remove_file(self.dir.join(name.as_str()));
            }
            changed = true;
        }
        let summary = (count, running, sup.shutting_down());
        if changed || self.last_daemon != Some(summary) {
            self.last_daemon = Some(summary);
            self.daemon.programs = count;
            self.daemon.running = running;
            self.daemon.stopping = sup.shutting_down();
            self.daemon.status_writes = self.writes;
            self.daemon.updated = self.clock.unix(now);
            if let Ok(bytes) = serde_json::to_vec(&self.daemon) {
                let _ = write_volatile(&self.dir, DAEMON_FILE, &bytes);
            }
        }
        changed
    }

    fn write(&mut self, name: &str, status: &ProgramStatus) {
        let Ok(bytes) = serde_json::to_vec(status) else { return };
        match write_volatile(&self.dir, name, &bytes) {
            Ok(()) => self.writes += 1,
            Err(e) => log::error!("cannot write {}: {e}", self.dir.join(name).display()),
        }
    }

    /// Removes the daemon's file when colony exits.
    pub fn close(&mut self, sup: &Supervisor, now: Instant) {
        self.sync(sup, now);
        let _ = std::fs::remove_file(self.dir.join(DAEMON_FILE));
    }
}

/// The Prometheus textfile, rewritten at most once per second.
pub struct Metrics {
    path: PathBuf,
    clock: Clock,
    last: Option<Instant>,
    /// A write is wanted at this moment.
    pub due: Option<Instant>,
}

impl Metrics {
    /// Writes to `path` (its directory must exist).
    pub fn new(path: PathBuf, clock: Clock) -> Metrics {
        Metrics { path, clock, last: None, due: None }
    }

    /// Something changed: write now, or within a second of the last write.
    pub fn changed(&mut self, now: Instant) {
        if self.due.is_none() {
            let at = self.last.map_or(now, |l| (l + Duration::from_secs(1)).max(now));
            self.due = Some(at);
        }
    }

    /// Writes if due.
    pub fn write_if_due(&mut self, sup: &Supervisor, now: Instant) {
        if self.due.is_some_and(|d| d <= now) {
            self.due = None;
            self.last = Some(now);
            let text = render(sup, &self.clock);
            let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Err(e) = write_volatile(dir, &name, text.as_bytes()) {
                log::error!("cannot write the metrics file {}: {e}", self.path.display());
            }
        }
    }
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The metrics in Prometheus text format.
pub fn render(sup: &Supervisor, clock: &Clock) -> String {
    let mut out = String::with_capacity(4096);
    let mut up = String::new();
    let mut restarts = String::new();
    let mut last_exit = String::new();
    let mut start = String::new();
    let mut count = 0;
    for (name, state) in sup.programs() {
        let Some(v) = sup.view(name.as_str()) else { continue };
        count += 1;
        let n = label(name.as_str());
        let running = matches!(state, State::Running { .. });
        let _ = writeln!(up, "colony_program_up{{program=\"{n}\"}} {}", u8::from(running));
        let _ = writeln!(restarts, "colony_program_restarts_total{{program=\"{n}\"}} {}", v.starts.saturating_sub(1));
        if let Some(e) = v.last_exit {
            let _ = writeln!(last_exit, "colony_program_last_exit_code{{program=\"{n}\"}} {}", e.code());
        }
        if let State::Running { since, .. } | State::Stopping { since, .. } = state {
            let _ = writeln!(start, "colony_program_start_time_seconds{{program=\"{n}\"}} {:.3}", clock.unix(*since));
        }
    }
    let sections = [
        ("colony_program_up", "gauge", "Whether the program is running (1) or not (0).", up),
        (
            "colony_program_restarts_total",
            "counter",
            "Times the program was started again since colony started.",
            restarts,
        ),
        (
            "colony_program_last_exit_code",
            "gauge",
            "Exit code of the last instance (128+N for a death by signal N).",
            last_exit,
        ),
        ("colony_program_start_time_seconds", "gauge", "Unix time the running instance started.", start),
    ];
    for (metric, kind, help, body) in sections {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
        out.push_str(&body);
    }
    let _ = writeln!(
        out,
        "# HELP colony_programs Programs configured.\n# TYPE colony_programs gauge\ncolony_programs {count}"
    );
    let _ = writeln!(
        out,
        "# HELP colony_build_info colony's version.\n# TYPE colony_build_info gauge\ncolony_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}
