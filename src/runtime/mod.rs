//! The runtime: one mio loop on one thread that owns every child. It turns
//! signals, directory changes, pipe output and deadlines into events for the
//! pure supervisor, and performs the effects it returns.
//!
//! The only part of colony that talks to the operating system for the
//! supervisor: spawning, signalling, reaping, pipes, watching, PID files.

mod fastspawn;
mod logfile;
mod output;
mod probes;
mod recover;
mod sdnotify;
mod signals;
mod spawn;
mod status;
mod trust;
mod watch;

use crate::core::diff::{diff, Change};
use crate::core::supervisor::{beat_rule, CheckKind, Effect, ExitStatus, Pid, ProbeRequest, Supervisor};
use crate::settings::Settings;
use colony_ctl::{scan_config_dir, Message, ProgramName, ProgramSpec};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::signal::Signal;
use output::{Drained, Kind, Sink, Stream};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIGNALS: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_STREAM: usize = 2;

/// Starts per loop pass: a thousand programs due at once do not keep
/// messages and reaping waiting for the whole batch.
const MAX_SPAWNS_PER_PASS: usize = 64;

/// Exit code when colony cannot start (directories, signals, watcher).
pub const EXIT_STARTUP: i32 = 1;

struct Runtime {
    settings: Settings,
    sup: Supervisor,
    poll: Poll,
    /// Digest of each config file as last read, valid or not (to log a
    /// bad file once).
    seen: BTreeMap<ProgramName, u64>,
    /// Digest of the config last handed to the supervisor, per program.
    applied: BTreeMap<ProgramName, u64>,
    /// Problems of entries that are not program files, already logged.
    reported: BTreeSet<(PathBuf, String)>,
    /// Message files that could be neither handled nor moved aside.
    stuck: BTreeSet<PathBuf>,
    streams: HashMap<Token, Stream>,
    next_token: usize,
    /// Streams whose read budget ran out: read again before sleeping.
    again: Vec<Token>,
    sink: Sink,
    read_buf: Vec<u8>,
    child_nofile: Option<libc::rlimit>,
    stop_requests: u32,
    spawned_since_trim: u32,
    status: status::StatusWriter,
    metrics: Option<status::Metrics>,
    /// Probes in flight.
    probes: probes::Probes,
    /// Readiness notification pipes: program, instance, read end.
    ready_pipes: HashMap<Token, (ProgramName, Pid, std::fs::File)>,
    /// Starts left for the next pass (at most `MAX_SPAWNS_PER_PASS` a pass).
    deferred: VecDeque<Effect>,
    spawns_this_pass: usize,
    /// Descriptors held in reserve for reading the directories when
    /// programs have taken every other one.
    reserve: Vec<std::fs::File>,
    /// Why the config directory itself was refused at the last scan.
    dir_distrust: Option<String>,
    /// The last read of a directory failed (e.g. out of descriptors): read
    /// again within a second.
    scan_failed: bool,
    /// The directory watcher; `None` while inotify is unavailable (then
    /// the directories are rescanned every second and it is retried).
    watcher: Option<notify::RecommendedWatcher>,
    waker: Arc<Waker>,
    /// Pairs the loop's instants with Unix time (heartbeat mtimes).
    clock: status::Clock,
    /// The service manager, when run as a `Type=notify` unit.
    notifier: Option<sdnotify::Notifier>,
    /// Programs' own log files, by program.
    log_files: HashMap<ProgramName, Rc<RefCell<logfile::LogWriter>>>,
    /// The supervisor changed outside `turn` (a stop request).
    changed: bool,
}

/// Runs the supervisor until it is told to stop; returns the exit code.
pub fn run(settings: Settings) -> i32 {
    // Signals first, before the watcher thread exists, so every thread
    // inherits the blocked mask and they all arrive at the signalfd.
    // One malloc arena for every thread: the watcher thread would otherwise
    // get one of its own, for a few events.
    // SAFETY: mallopt before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    // Before the watcher thread exists: it edits the environment.
    let notifier = sdnotify::Notifier::from_env();
    let mut sfd = match signals::block_and_open() {
        Ok(s) => s,
        Err(e) => return startup_error(format!("cannot set up signal handling: {e}")),
    };
    signals::become_subreaper();
    close_inherited_fds();
    let child_nofile = raise_nofile();
    let mut settings = settings;
    for (role, dir) in [("config", &mut settings.config), ("messages", &mut settings.messages)] {
        match prepare_dir(role, dir) {
            Ok(canon) => *dir = canon,
            Err(msg) => return startup_error(msg),
        }
    }
    if let Ok(abs) = std::path::absolute(&settings.status_dir) {
        settings.status_dir = abs;
    }
    if let Some(dir) = &mut settings.pid_dir {
        match prepare_dir("pid", dir) {
            Ok(canon) => *dir = canon,
            Err(msg) => return startup_error(msg),
        }
        // Never two instances: what a killed colony left running goes first.
        let n = recover::stop_leftovers(dir, settings.policy.killtime);
        if n > 0 {
            log::info!("stopped {n} program(s) left running by a previous colony");
        }
    }
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => return startup_error(format!("cannot create the event loop: {e}")),
    };
    let waker = match Waker::new(poll.registry(), WAKER) {
        Ok(w) => Arc::new(w),
        Err(e) => return startup_error(format!("cannot create the event loop: {e}")),
    };
    let sig_raw = signals::raw(&sfd);
    if let Err(e) = poll.registry().register(&mut SourceFd(&sig_raw), SIGNALS, Interest::READABLE) {
        return startup_error(format!("cannot watch signals: {e}"));
    }
    let dirty = watch::Dirty::default();
    let watcher = match watch::start(&settings.config, &settings.messages, dirty.clone(), waker.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            log::error!("{}; rescanning every second and retrying", watch_error(e));
            None
        }
    };
    let clock = status::Clock::now();
    let status =
        match status::StatusWriter::new(settings.status_dir.clone(), clock, &settings.config, &settings.messages) {
            Ok(s) => s,
            Err(msg) => return startup_error(msg),
        };
    let mut metrics = settings.metrics.clone().map(|path| status::Metrics::new(path, clock));
    if let Some(m) = &mut metrics {
        // A first file even with no program configured.
        m.changed(Instant::now());
    }
    log::info!(
        "colony {} supervising {} (messages {}, pid {})",
        env!("CARGO_PKG_VERSION"),
        settings.config.display(),
        settings.messages.display(),
        std::process::id()
    );
    let log_style = settings.log_style;
    let mut rt = Runtime {
        sup: Supervisor::new(settings.policy),
        settings,
        poll,
        seen: BTreeMap::new(),
        applied: BTreeMap::new(),
        reported: BTreeSet::new(),
        stuck: BTreeSet::new(),
        streams: HashMap::new(),
        next_token: FIRST_STREAM,
        again: Vec::new(),
        sink: Sink::stderr(log_style),
        read_buf: vec![0; 64 * 1024],
        child_nofile,
        stop_requests: 0,
        spawned_since_trim: 0,
        status,
        metrics,
        log_files: HashMap::new(),
        probes: probes::Probes::default(),
        ready_pipes: HashMap::new(),
        scan_failed: false,
        reserve: reserve_fds(),
        deferred: VecDeque::new(),
        spawns_this_pass: 0,
        dir_distrust: None,
        watcher,
        waker,
        clock,
        notifier,
        changed: false,
    };
    rt.main_loop(&mut sfd, &dirty)
}

fn startup_error(msg: String) -> i32 {
    // Also when COLONY_LOG silences everything: colony is not running.
    if log::log_enabled!(log::Level::Error) {
        log::error!("{msg}");
    } else {
        eprintln!("colony: {msg}");
    }
    EXIT_STARTUP
}

fn watch_error(e: notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            "cannot watch the directories: too many inotify watches (raise fs.inotify.max_user_watches)".into()
        }
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE) => {
            "cannot watch the directories: too many inotify instances (raise fs.inotify.max_user_instances)".into()
        }
        _ => format!("cannot watch the directories: {e}"),
    }
}

/// Marks every descriptor colony inherited (beyond stdin, stdout and
/// stderr) close-on-exec, so that programs get only their own three. All of
/// colony's own descriptors are opened close-on-exec.
fn close_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<i32> =
        dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).filter(|fd| *fd > 2).collect();
    for fd in fds {
        // SAFETY: fcntl on a descriptor number; a closed one just fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Two descriptors kept aside (on /dev/null) for directory reads.
fn reserve_fds() -> Vec<std::fs::File> {
    (0..2).filter_map(|_| std::fs::File::open("/dev/null").ok()).collect()
}

/// Creates a missing directory (with a log line) and returns its canonical path.
fn prepare_dir(role: &str, dir: &Path) -> Result<PathBuf, String> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the {role} directory {}: {e}", dir.display()))?;
        log::info!("created the {role} directory {}", dir.display());
    }
    dir.canonicalize().map_err(|e| format!("cannot use the {role} directory {}: {e}", dir.display()))
}

/// Raises colony's own open-files limit to the hard limit (two pipes per
/// child) and returns the original one for children to get back.
fn raise_nofile() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return None;
        }
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            return None;
        }
    }
    Some(lim)
}

impl Runtime {
    fn main_loop(&mut self, sfd: &mut nix::sys::signalfd::SignalFd, dirty: &watch::Dirty) -> i32 {
        let mut events = Events::with_capacity(256);
        let mut next_rescan = Instant::now();
        let mut reap = true;
        let mut marks = watch::CONFIG | watch::MESSAGES;
        let mut first = true;
        loop {
            let now = Instant::now();
            if now >= next_rescan {
                marks |= watch::CONFIG | watch::MESSAGES;
                if self.watcher.is_none() {
                    self.retry_watch(dirty);
                }
                let period = if self.watcher.is_none() || self.scan_failed {
                    self.settings.frequency.min(Duration::from_secs(1))
                } else {
                    self.settings.frequency
                };
                next_rescan = now + period;
            }
            let busy = reap
                || marks != 0
                || !self.deferred.is_empty()
                || self.sup.next_deadline().is_some_and(|d| d <= now)
                || self.probes.next_deadline().is_some_and(|d| d <= now);
            self.turn(now, std::mem::take(&mut reap), std::mem::take(&mut marks));
            self.flush_output();
            if self.scan_failed {
                // Whatever woke this pass, a failed read is tried again soon.
                next_rescan = next_rescan.min(now + Duration::from_secs(1));
            }
            if first && self.deferred.is_empty() {
                // Every program of the first scan has been started.
                first = false;
                if let Some(n) = &self.notifier {
                    n.send("READY=1");
                }
            }
            if busy || std::mem::take(&mut self.changed) {
                self.publish(now);
            } else if let Some(m) = &mut self.metrics {
                m.write_if_due(&self.sup, now);
            }
            if self.spawned_since_trim >= 64 {
                // Bulk starts leave the heap fragmented; give it back.
                self.spawned_since_trim = 0;
                // SAFETY: malloc_trim only releases free memory.
                unsafe { libc::malloc_trim(0) };
            }
            if self.sup.is_done() {
                self.finish();
                self.status.close(&self.sup, Instant::now());
                return self.sup.exit_code().unwrap_or(0);
            }
            let metrics_due = self.metrics.as_ref().and_then(|m| m.due);
            let deadline = [self.sup.next_deadline(), Some(next_rescan), metrics_due, self.probes.next_deadline()]
                .into_iter()
                .flatten()
                .min();
            let timeout = if self.again.is_empty() && self.deferred.is_empty() {
                deadline.map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout.map(round_up_ms)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                }
                continue;
            }
            for token in std::mem::take(&mut self.again) {
                self.read_stream(token);
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        for sig in signals::drain(sfd) {
                            match sig {
                                Signal::SIGCHLD => reap = true,
                                Signal::SIGHUP => {
                                    log::info!("SIGHUP: rescanning both directories");
                                    marks |= watch::CONFIG | watch::MESSAGES;
                                }
                                _ => self.stop_request(sig),
                            }
                        }
                    }
                    WAKER => marks |= dirty.take(),
                    token if self.probes.owns(token) => {
                        if let Some((req, ok)) = self.probes.ready(token, self.poll.registry()) {
                            let mut effects = Vec::new();
                            let now = Instant::now();
                            self.probe_done(req, ok, now, &mut effects);
                            self.apply(effects, now);
                            self.changed = true;
                        }
                    }
                    token if self.ready_pipes.contains_key(&token) => self.read_ready_pipe(token),
                    token => self.read_stream(token),
                }
            }
        }
    }

    /// One pass over everything that may have happened.
    fn turn(&mut self, now: Instant, reap: bool, marks: u8) {
        self.spawns_this_pass = 0;
        let deferred: Vec<Effect> = self.deferred.drain(..).collect();
        self.apply(deferred, now);
        let mut effects = Vec::new();
        if reap {
            for (pid, status) in signals::reap_all() {
                self.child_exited(pid, status, now, &mut effects);
            }
        }
        if marks & (watch::CONFIG | watch::MESSAGES) != 0 && !self.sup.shutting_down() {
            // Messages may name programs added just before them: config first.
            self.rescan_config(now, &mut effects);
        }
        if marks & watch::MESSAGES != 0 && !self.sup.shutting_down() {
            self.handle_messages(now, &mut effects);
        }
        self.sup.tick(now, &mut effects);
        self.apply(effects, now);
        self.run_checks(now);
    }

    /// Heartbeat looks, probe starts and probe timeouts that are due.
    fn run_checks(&mut self, now: Instant) {
        let mut effects = Vec::new();
        for name in self.sup.beats_due(now) {
            let last =
                self.heartbeat_path(&name).and_then(|p| std::fs::metadata(p).ok()).and_then(|m| m.modified().ok());
            let last = last.map(|t| self.clock.instant(t));
            self.sup.heartbeat(&name, last, now, &mut effects);
        }
        for (req, ok) in self.probes.expire(now, self.poll.registry()) {
            self.probe_done(req, ok, now, &mut effects);
        }
        for req in self.sup.probes_due(now) {
            let token = Token(self.next_token);
            self.next_token += 1;
            let env = self.probe_env(&req);
            let nofile = self.child_nofile;
            let started =
                self.probes.start(req, token, self.poll.registry(), now, |argv| spawn::spawn_probe(argv, env, nofile));
            if let Some((req, ok)) = started {
                self.probe_done(req, ok, now, &mut effects);
            }
        }
        self.apply(effects, now);
    }

    fn probe_done(&mut self, req: ProbeRequest, ok: bool, now: Instant, effects: &mut Vec<Effect>) {
        let kind = match req.kind {
            CheckKind::Liveness => "liveness",
            CheckKind::Readiness => "readiness",
        };
        log::debug!("{}: {kind} check {}", req.name, if ok { "passed" } else { "failed" });
        self.sup.probe_result(&req.name, req.pid, req.kind, ok, now, effects);
    }

    /// The environment of a command probe: the program's own.
    fn probe_env(&self, req: &ProbeRequest) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        match self.sup.view(req.name.as_str()) {
            Some(v) => spawn::environment(&req.name, v.spec, v.spec.as_bytes(), &self.extra_env(&req.name, v.spec)),
            None => Vec::new(),
        }
    }

    /// Where `name` beats: `heartbeat.file`, colony's heartbeat directory,
    /// or the ncolony.beatcheck status file (a directory holds NAME).
    fn heartbeat_path(&self, name: &ProgramName) -> Option<PathBuf> {
        let spec = self.sup.view(name.as_str())?.spec;
        if let Some(h) = &spec.policies().heartbeat {
            return Some(match &h.file {
                Some(f) => PathBuf::from(f),
                None => self.settings.status_dir.join(".heartbeat").join(name.as_str()),
            });
        }
        let status = PathBuf::from(&spec.beatcheck()?.status);
        Some(if status.is_dir() { status.join(name.as_str()) } else { status })
    }

    /// What colony adds to a program's environment: where to beat.
    fn extra_env(&self, name: &ProgramName, spec: &ProgramSpec) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        if beat_rule(spec).is_none() {
            return Vec::new();
        }
        let path = if let Some(h) = &spec.policies().heartbeat {
            h.file
                .clone()
                .map(PathBuf::from)
                .unwrap_or_else(|| self.settings.status_dir.join(".heartbeat").join(name.as_str()))
        } else {
            let status = PathBuf::from(spec.beatcheck().map(|b| b.status.clone()).unwrap_or_default());
            if status.is_dir() {
                status.join(name.as_str())
            } else {
                status
            }
        };
        vec![("COLONY_HEARTBEAT_FILE".into(), path.into_os_string())]
    }

    /// Runs a directory read; out of descriptors, frees the reserve kept
    /// for this and tries once more, so that changes to the directories are
    /// still seen when programs hold every descriptor.
    fn with_reserve<T>(&mut self, read: impl Fn() -> io::Result<T>) -> io::Result<T> {
        match read() {
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) && !self.reserve.is_empty() => {
                self.reserve.clear();
                let again = read();
                self.reserve = reserve_fds();
                again
            }
            other => other,
        }
    }

    /// Tries again to watch the directories after inotify failed.
    fn retry_watch(&mut self, dirty: &watch::Dirty) {
        match watch::start(&self.settings.config, &self.settings.messages, dirty.clone(), self.waker.clone()) {
            Ok(w) => {
                log::info!("watching the directories again");
                self.watcher = Some(w);
            }
            Err(e) => log::debug!("still cannot watch the directories: {}", watch_error(e)),
        }
    }

    /// Status files for what changed, and metrics when due.
    fn publish(&mut self, now: Instant) {
        if self.status.sync(&self.sup, now) {
            if let Some(m) = &mut self.metrics {
                m.changed(now);
            }
        }
        if let Some(m) = &mut self.metrics {
            m.write_if_due(&self.sup, now);
        }
    }

    fn stop_request(&mut self, sig: Signal) {
        self.stop_requests += 1;
        self.changed = true;
        let now = Instant::now();
        let mut effects = Vec::new();
        if self.stop_requests == 1 {
            if let Some(n) = &self.notifier {
                n.send("STOPPING=1");
            }
            log::info!("{sig}: stopping every program (a second signal kills them at once)");
            self.sup.shutdown(now, &mut effects);
        } else {
            log::warn!("{sig} again: killing every program now");
            self.sup.force_shutdown(now, &mut effects);
        }
        self.apply(effects, now);
    }

    fn child_exited(&mut self, pid: Pid, status: ExitStatus, now: Instant, effects: &mut Vec<Effect>) {
        if let Some((req, ok)) = self.probes.reaped(pid, status.code()) {
            return self.probe_done(req, ok, now, effects);
        }
        // Forward what the child wrote last before saying it exited.
        let tokens: Vec<Token> = self.streams.keys().copied().collect();
        match self.sup.exited(pid, status, now, effects) {
            None => log::debug!("reaped orphan {pid} ({})", describe(status)),
            Some(exit) => {
                for t in tokens {
                    if self.streams.get(&t).is_some_and(|s| s.name == exit.name) {
                        self.read_stream(t);
                    }
                }
                self.sink.flush();
                let how = describe(status);
                if exit.requested {
                    log::info!("{}: {how} after {}", exit.name, secs(exit.lived));
                } else {
                    log::warn!("{}: {how} after {}", exit.name, secs(exit.lived));
                }
                if let Some(dir) = &self.settings.pid_dir {
                    recover::forget(dir, exit.name.as_str());
                }
            }
        }
    }

    fn rescan_config(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        let config = self.settings.config.clone();
        let scan = match self.with_reserve(|| scan_config_dir(&config)) {
            Ok(s) => {
                self.scan_failed = false;
                s
            }
            Err(e) => {
                self.scan_failed = true;
                let key = (self.settings.config.clone(), e.to_string());
                if self.reported.insert(key) {
                    log::error!("cannot read the config directory {}: {e}", self.settings.config.display());
                }
                return;
            }
        };
        let mut problems: BTreeSet<(PathBuf, String)> = scan.problems.into_iter().collect();
        problems.extend(scan.subdirs.into_iter().map(|d| (d, "is a directory, not a program file".to_string())));
        let strict = self.settings.strict_modes && nix::unistd::geteuid().is_root();
        let dir_distrust = if strict { trust::directory(&self.settings.config) } else { None };
        if dir_distrust != self.dir_distrust {
            // The directory's trust changed: judge every file again (what
            // runs with the same content is left alone).
            self.seen.clear();
            self.dir_distrust.clone_from(&dir_distrust);
        }
        if let Some(why) = &dir_distrust {
            problems.insert((self.settings.config.clone(), format!("every program file refused: {why}")));
        }
        for (path, why) in problems.difference(&self.reported) {
            if path.is_dir() && path != &self.settings.config {
                log::warn!("{}: {why}; skipped", path.display());
            } else {
                log::error!("{}: {why}; skipped", path.display());
            }
        }
        self.reported = problems;
        let mut files = scan.files;
        let owners = scan.owners;
        // The owner and mode count too: fixing a refused file's permissions
        // is a change.
        let digests: BTreeMap<ProgramName, u64> = files
            .iter()
            .map(|(n, b)| (n.clone(), digest(b) ^ digest(format!("{:?}", owners.get(n)).as_bytes()).rotate_left(1)))
            .collect();
        let changes: Vec<(ProgramName, Option<Vec<u8>>)> = diff(&self.seen, &digests)
            .into_iter()
            .map(|c| match c {
                Change::Set(n, _) => (n.clone(), files.remove(n)),
                Change::Gone(n) => (n.clone(), None),
            })
            .collect();
        self.seen = digests;
        for (name, bytes) in changes {
            match bytes {
                None => {
                    if self.applied.remove(&name).is_some() {
                        log::info!("{name}: config removed, stopping");
                    }
                    self.sup.configure(&name, None, now, effects);
                }
                Some(bytes) => {
                    let path = self.settings.config.join(name.as_str());
                    let parsed =
                        ProgramSpec::parse(&bytes).map_err(|e| e.in_file(&path).to_string()).and_then(|spec| {
                            if !strict {
                                return Ok(spec);
                            }
                            if let Some(why) = &dir_distrust {
                                return Err(format!("{}: refused: {why}", path.display()));
                            }
                            let owner = owners.get(&name).copied().unwrap_or((u32::MAX, 0o777));
                            match trust::file(owner, spec.uid()) {
                                Some(why) => Err(format!("{}: refused: {why}", path.display())),
                                None => Ok(spec),
                            }
                        });
                    match parsed {
                        Err(e) => {
                            let keep =
                                if self.applied.contains_key(&name) { " (the running instance is kept)" } else { "" };
                            log::error!("{e}{keep}");
                        }
                        Ok(_) if self.applied.get(&name) == Some(&digest(&bytes)) => {}
                        Ok(spec) => {
                            for key in spec.unknown_keys() {
                                log::debug!("{}: key {key:?} is not used by colony", path.display());
                            }
                            let verb =
                                if self.applied.contains_key(&name) { "config changed, restarting" } else { "added" };
                            log::info!("{name}: {verb}");
                            self.applied.insert(name.clone(), digest(&bytes));
                            self.sup.configure(&name, Some(spec), now, effects);
                        }
                    }
                }
            }
        }
    }

    fn handle_messages(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        let messages = self.settings.messages.clone();
        let list = match self.with_reserve(|| colony_ctl::list_messages(&messages)) {
            Ok(l) => l,
            Err(e) => {
                self.scan_failed = true;
                log::error!("cannot read the messages directory {}: {e}", self.settings.messages.display());
                return;
            }
        };
        for path in list {
            if self.stuck.contains(&path) {
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                    self.reject(&path, "is a directory, not a message");
                    continue;
                }
                Err(e) => {
                    self.reject(&path, &format!("cannot read: {e}"));
                    continue;
                }
            };
            match Message::parse(&bytes) {
                Err(e) => self.reject(&path, &e.to_string()),
                Ok(msg) => match self.dispatch(&msg, now, effects) {
                    Ok(()) => {
                        if let Err(e) = std::fs::remove_file(&path) {
                            if e.kind() != io::ErrorKind::NotFound {
                                log::error!("{}: handled but cannot be removed: {e}", path.display());
                                self.stuck.insert(path);
                            }
                        }
                    }
                    Err(why) => self.reject(&path, &why),
                },
            }
        }
    }

    fn dispatch(&mut self, msg: &Message, now: Instant, effects: &mut Vec<Effect>) -> Result<(), String> {
        match msg {
            Message::Restart(name) => {
                self.sup.restart(name, now, effects).map_err(|e| e.to_string())?;
                log::info!("{name}: restart requested");
            }
            Message::Stop(name) => {
                self.sup.hold(name, now, effects).map_err(|e| e.to_string())?;
                log::info!("{name}: stop requested; it stays stopped until START or RESTART");
            }
            Message::Start(name) => {
                self.sup.release(name, now, effects).map_err(|e| e.to_string())?;
                log::info!("{name}: start requested");
            }
            Message::Signal(name, sig) => {
                self.sup.signal(name, *sig, effects).map_err(|e| e.to_string())?;
                log::info!("{name}: {} requested", signals::name(*sig));
            }
            Message::RestartAll => {
                log::info!("restarting every program");
                self.sup.restart_all(now, effects);
            }
            Message::RestartGroup(group) => {
                let n = self.sup.restart_group(group, now, effects);
                if n == 0 {
                    log::warn!("restart of group {group:?}: no program is in it");
                } else {
                    log::info!("restarting group {group:?} ({n} programs)");
                }
            }
        }
        Ok(())
    }

    /// Logs a message that cannot be handled and moves it aside to a
    /// dot-file, which no reader looks at again.
    fn reject(&mut self, path: &Path, why: &str) {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let aside = path.with_file_name(format!(".{file}.rejected"));
        match std::fs::rename(path, &aside) {
            Ok(()) => log::error!("{}: {why}; moved aside to {}", path.display(), aside.display()),
            Err(e) => match std::fs::remove_file(path) {
                Ok(()) => log::error!("{}: {why}; deleted (cannot move it aside: {e})", path.display()),
                Err(e2) => {
                    log::error!("{}: {why}; cannot move or delete it ({e2}), ignoring it from now on", path.display());
                    self.stuck.insert(path.to_path_buf());
                }
            },
        }
    }

    /// Performs effects until none are left (a spawn can lead to more).
    fn apply(&mut self, effects: Vec<Effect>, now: Instant) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let mut more = Vec::new();
            match effect {
                Effect::Spawn { name, spec } if self.spawns_this_pass >= MAX_SPAWNS_PER_PASS => {
                    // Enough starts for one pass: messages, reaps and output
                    // get their turn before the rest.
                    self.deferred.push_back(Effect::Spawn { name, spec });
                }
                Effect::Spawn { name, spec } => {
                    // A decision taken later in the same pass (a critical
                    // program ending, a STOP) may have cancelled this start.
                    self.spawns_this_pass += 1;
                    if self.sup.state(name.as_str()) == Some(&crate::core::supervisor::State::Starting) {
                        let result = self.spawn(&name, &spec);
                        self.sup.spawned(&name, result, now, &mut more);
                    }
                }
                Effect::SignalProcess { name, pid, signal } => {
                    // SAFETY: kill(2) on a pid the supervisor has not reaped.
                    if unsafe { libc::kill(pid, signal) } != 0 {
                        log::warn!("{name}: cannot send {}: {}", signals::name(signal), io::Error::last_os_error());
                    }
                }
                Effect::CriticalExit { name, code } => {
                    log::warn!("{name} is critical and ended: stopping everything, colony will exit with code {code}");
                    if let Some(n) = &self.notifier {
                        n.send("STOPPING=1");
                    }
                }
                Effect::Signal { name, pgid, signal } => {
                    let how = signals::name(signal);
                    match self.sup.state(name.as_str()) {
                        Some(crate::core::supervisor::State::Stopping { kill_at: None, .. }) if signal == 9 => {
                            log::warn!("{name}: sending SIGKILL to process group {pgid}")
                        }
                        _ => log::info!("{name}: stopping, {how} to process group {pgid}"),
                    }
                    signals::signal_group(pgid, signal);
                }
                Effect::KillLeftovers { name, pgid } => {
                    if signals::signal_group(pgid, libc::SIGKILL) {
                        log::warn!("{name}: killed processes left behind in its process group {pgid}");
                    }
                }
                Effect::Note { name, level, text } => log::log!(level, "{name}: {text}"),
                Effect::Scheduled { name, delay } => log::info!("{name}: starting again in {}", secs(delay)),
                Effect::Forgotten { name } => {
                    if let Some(w) = self.log_files.remove(&name) {
                        w.borrow_mut().flush();
                    }
                    log::info!("{name}: removed");
                }
            }
            queue.extend(more);
        }
    }

    /// Starts a program; on failure returns the exit code a shell would
    /// give (127 not found, 126 cannot execute).
    fn spawn(&mut self, name: &ProgramName, spec: &ProgramSpec) -> Result<Pid, i32> {
        let extras = spawn::Extras { env: self.extra_env(name, spec), nofile: self.child_nofile };
        match spawn::spawn(name, spec, spec.as_bytes(), &extras) {
            Err(e) => {
                log::error!("{name}: {}", e.message);
                Err(e.code)
            }
            Ok(child) => {
                self.spawned_since_trim += 1;
                log::info!("{name}: started, pid {}", child.pid);
                if let Some(pipe) = child.ready {
                    self.add_ready_pipe(name, child.pid, pipe);
                }
                let file = self.log_file(name, spec);
                for (kind, pipe) in [(Kind::Stdout, child.stdout), (Kind::Stderr, child.stderr)] {
                    self.add_stream(name, kind, pipe, file.clone());
                }
                if let Some(dir) = &self.settings.pid_dir {
                    if let Err(e) = recover::record(dir, name.as_str(), child.pid) {
                        log::error!("{name}: cannot write its PID file in {}: {e}", dir.display());
                    }
                }
                Ok(child.pid)
            }
        }
    }

    /// The program's log file writer (kept across restarts while the
    /// `log` key stays the same).
    fn log_file(&mut self, name: &ProgramName, spec: &ProgramSpec) -> Option<Rc<RefCell<logfile::LogWriter>>> {
        let Some(want) = spec.log() else {
            self.log_files.remove(name);
            return None;
        };
        if let Some(w) = self.log_files.get(name) {
            if w.borrow().is_for(want) {
                return Some(w.clone());
            }
            w.borrow_mut().flush();
        }
        let w = Rc::new(RefCell::new(logfile::LogWriter::new(want)));
        self.log_files.insert(name.clone(), w.clone());
        Some(w)
    }

    fn flush_output(&mut self) {
        self.sink.flush();
        for w in self.log_files.values() {
            w.borrow_mut().flush();
        }
    }

    fn add_stream(
        &mut self,
        name: &ProgramName,
        kind: Kind,
        pipe: std::fs::File,
        file: Option<Rc<RefCell<logfile::LogWriter>>>,
    ) {
        use std::os::fd::AsRawFd;
        let token = Token(self.next_token);
        self.next_token += 1;
        let stream = match Stream::new(name.clone(), kind, pipe, file) {
            Ok(s) => s,
            Err(e) => return log::error!("{name}: cannot read its output: {e}"),
        };
        let fd = stream.pipe.as_raw_fd();
        if let Err(e) = self.poll.registry().register(&mut SourceFd(&fd), token, Interest::READABLE) {
            return log::error!("{name}: cannot watch its output: {e}");
        }
        self.streams.insert(token, stream);
    }

    fn add_ready_pipe(&mut self, name: &ProgramName, pid: Pid, pipe: std::fs::File) {
        use std::os::fd::AsRawFd;
        let token = Token(self.next_token);
        self.next_token += 1;
        let fd = pipe.as_raw_fd();
        // SAFETY: fcntl on an fd we own.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
        if let Err(e) = self.poll.registry().register(&mut SourceFd(&fd), token, Interest::READABLE) {
            return log::error!("{name}: cannot watch its readiness fd: {e}");
        }
        self.ready_pipes.insert(token, (name.clone(), pid, pipe));
    }

    /// The child wrote to its notification fd: a newline means ready; the
    /// pipe is closed after that, or at end of file.
    fn read_ready_pipe(&mut self, token: Token) {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let Some((name, pid, pipe)) = self.ready_pipes.get_mut(&token) else { return };
        let mut buf = [0u8; 256];
        let mut done = false;
        let mut ready = false;
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break done = true,
                Ok(n) if buf[..n].contains(&b'\n') => {
                    ready = true;
                    break done = true;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break done = true,
            }
        }
        let (name, pid) = (name.clone(), *pid);
        if ready {
            let now = Instant::now();
            let mut effects = Vec::new();
            self.sup.notified_ready(&name, pid, now, &mut effects);
            self.apply(effects, now);
            self.changed = true;
        }
        if done {
            if let Some((_, _, pipe)) = self.ready_pipes.remove(&token) {
                let _ = self.poll.registry().deregister(&mut SourceFd(&pipe.as_raw_fd()));
            }
        }
    }

    fn read_stream(&mut self, token: Token) {
        let Some(stream) = self.streams.get_mut(&token) else { return };
        match stream.drain(&mut self.read_buf, &mut self.sink) {
            Drained::Empty => {}
            Drained::More => {
                if !self.again.contains(&token) {
                    self.again.push(token);
                }
            }
            Drained::Closed => {
                if let Some(s) = self.streams.remove(&token) {
                    use std::os::fd::AsRawFd;
                    let _ = self.poll.registry().deregister(&mut SourceFd(&s.pipe.as_raw_fd()));
                }
            }
        }
    }

    /// After the last program stopped: forward the last output, reap any
    /// orphan still around, and say goodbye.
    fn finish(&mut self) {
        let tokens: Vec<Token> = self.streams.keys().copied().collect();
        for t in tokens {
            self.read_stream(t);
        }
        self.flush_output();
        // Orphans that escaped their program's process group (setsid) and
        // came back to colony as subreaper: they do not outlive it.
        let orphans = signals::own_children();
        if !orphans.is_empty() {
            log::warn!("killing {} leftover process(es) adopted by colony: {orphans:?}", orphans.len());
            for pid in &orphans {
                // SAFETY: kill(2) on our own unreaped children.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            for pid in orphans {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            }
        }
        for (pid, status) in signals::reap_all() {
            log::debug!("reaped orphan {pid} ({})", describe(status));
        }
        log::info!("every program stopped; exiting");
    }
}

fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => format!("exited with code {code}"),
        ExitStatus::Signaled(sig) => format!("killed by {}", signals::name(sig)),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// poll(2) counts whole milliseconds: round up so that a deadline is never
/// woken for early (which would spin).
fn round_up_ms(d: Duration) -> Duration {
    let ms = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(ms.min(u64::MAX as u128) as u64)
}

/// A 64-bit digest of a config file, to notice changes without keeping
/// every file's bytes twice.
fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}
