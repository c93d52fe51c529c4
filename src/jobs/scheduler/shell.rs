//! The scheduler's imperative shell: the clock, the files, signals, one
//! child at a time. One wait point (mio on a signalfd, with the machine's
//! earliest deadline as the timeout); every decision is the machine's.
//!
//! Depends on mio, nix and libc, and on the sibling modules.

use super::files::{self, StampRead, StateRead};
use super::heart::{self, Heart};
use super::machine::{self, Effect, Job, Level, Plan, Sig, SpawnFailure, Start};
use super::settings::Settings;
use super::spread::Stamp;
use super::state::State;
use super::{calendar, EXIT_CANTCREAT, EXIT_OK, EXIT_SOFTWARE};
use crate::logging::{Format, Style};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The longest single wait: a changed wall clock is noticed this fast.
const MAX_WAIT: SignedDuration = SignedDuration::from_secs(60);

/// The time, possibly pretended (`--now` at start, then advancing).
struct Clock {
    offset: SignedDuration,
}

impl Clock {
    fn new(pretend: Option<Timestamp>) -> Clock {
        let offset = pretend.map_or(SignedDuration::ZERO, |t| t.duration_since(Timestamp::now()));
        Clock { offset }
    }

    fn now(&self) -> Timestamp {
        calendar::add(Timestamp::now(), self.offset)
    }
}

fn zone_of(plan: &Plan) -> TimeZone {
    match plan {
        Plan::Cron { calendar, .. } => calendar.zone().clone(),
        _ => TimeZone::UTC,
    }
}

fn describe_plan(plan: &Plan, timeout: Option<SignedDuration>, grace: SignedDuration) -> String {
    let mut s = match plan {
        Plan::Every { period } => format!("every {}", machine::secs(*period)),
        Plan::Cron { calendar, retry, window } => {
            let mut s = format!("cron {:?} in {}", calendar.text(), calendar.zone().iana_name().unwrap_or("UTC"));
            if let Some(r) = retry {
                s += &format!(", retry every {}", machine::secs(*r));
            }
            if let Some(w) = window {
                s += &format!(", window {}", machine::secs(*w));
            }
            s
        }
        Plan::Spread { slot } => format!("at most once per {slot} s slot"),
    };
    if let Some(t) = timeout {
        s += &format!(", timeout {}", machine::secs(t));
    }
    s + &format!(", grace {}", machine::secs(grace))
}

/// Runs `colony scheduler` with validated settings; returns the exit code.
pub fn run(settings: Settings) -> i32 {
    crate::logging::init(Style { format: Format::Text, timestamps: false });
    let clock = Clock::new(settings.now);
    if let Some(n) = settings.next {
        return print_next(&settings, &clock, n);
    }
    // Signals first: a SIGTERM while the files are prepared is handled
    // (exit 0), and no SIGCHLD of the first run is lost.
    let (sfd, mut poll) = match setup_signals() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("colony scheduler: cannot set up signal handling: {e}");
            return EXIT_SOFTWARE;
        }
    };
    let now = clock.now();
    let state = match prepare_state(&settings, now) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("colony scheduler: {msg}");
            return EXIT_CANTCREAT;
        }
    };
    let mut random: Box<dyn FnMut() -> u64> = Box::new(files::urandom());
    let stamp = match prepare_stamp(&settings, &mut random) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("colony scheduler: {msg}");
            return EXIT_CANTCREAT;
        }
    };
    let mut shell = Shell { settings, clock, sfd, random, heart: heart_from_env().map(Beat::new) };
    log::info!(
        "scheduling {:?}: {}",
        shell.settings.command,
        describe_plan(&shell.settings.rules.plan, shell.settings.rules.timeout, shell.settings.rules.grace)
    );
    if shell.settings.now.is_some() {
        log::info!("pretending the time is {}", machine::show(now, &zone_of(&shell.settings.rules.plan)));
    }
    let (mut job, fx) = Job::start(shell.settings.rules.clone(), Start { now, state, stamp });
    if let Some(code) = shell.apply(&mut job, fx) {
        return code;
    }
    let mut events = Events::with_capacity(4);
    loop {
        let now = shell.clock.now();
        let wait = job.deadline().map_or(MAX_WAIT, |d| d.duration_since(now).clamp(SignedDuration::ZERO, MAX_WAIT));
        let mut wait = std::time::Duration::try_from(wait).unwrap_or_default();
        if let Some(beat) = &shell.heart {
            wait = wait.min(beat.next.saturating_duration_since(std::time::Instant::now()));
        }
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("poll failed: {e}");
            }
        }
        for sig in shell.drain_signals() {
            let fx = match sig {
                Signal::SIGCHLD => {
                    let mut fx = Vec::new();
                    for (pid, status) in crate::sys::reap_all() {
                        fx.extend(job.on_exit(shell.clock.now(), pid, status));
                    }
                    fx
                }
                Signal::SIGTERM | Signal::SIGINT => {
                    log::info!("received {}", sig.as_str());
                    job.on_stop(shell.clock.now())
                }
                other => {
                    log::info!("{} ignored", other.as_str());
                    Vec::new()
                }
            };
            if let Some(code) = shell.apply(&mut job, fx) {
                return code;
            }
        }
        if let Some(beat) = shell.heart.as_mut() {
            beat.beat_if_due();
        }
        let now = shell.clock.now();
        if job.deadline().is_some_and(|d| d <= now) {
            let stamp = shell.reread_stamp();
            let fx = job.on_time(now, stamp);
            if let Some(code) = shell.apply(&mut job, fx) {
                return code;
            }
        }
    }
}

struct Shell {
    settings: Settings,
    clock: Clock,
    sfd: SignalFd,
    random: Box<dyn FnMut() -> u64>,
    heart: Option<Beat>,
}

/// The heartbeat asked for by the scheduler's own program file.
fn heart_from_env() -> Option<Heart> {
    use std::os::unix::ffi::OsStrExt;
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let file = var("COLONY_HEARTBEAT_FILE");
    let config = var("COLONY_CONFIG").or_else(|| var("NCOLONY_CONFIG"));
    let name = var("COLONY_NAME").or_else(|| var("NCOLONY_NAME"));
    heart::from_env(
        file.as_ref().and_then(|f| f.to_str()),
        config.as_ref().map(|c| c.as_bytes()),
        name.as_ref().and_then(|n| n.to_str()),
        |p| p.is_dir(),
    )
}

/// A heartbeat file touched on its own (real-time) schedule.
struct Beat {
    heart: Heart,
    next: std::time::Instant,
    last_error: Option<String>,
}

impl Beat {
    fn new(heart: Heart) -> Beat {
        log::debug!("heartbeat: touching {} every {}", heart.path.display(), machine::secs(heart.every));
        Beat { heart, next: std::time::Instant::now(), last_error: None }
    }

    fn beat_if_due(&mut self) {
        let now = std::time::Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + std::time::Duration::try_from(self.heart.every).unwrap_or(std::time::Duration::from_secs(1));
        let touched = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.heart.path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        match touched {
            Ok(()) => self.last_error = None,
            Err(e) => {
                let msg = e.to_string();
                if self.last_error.as_ref() != Some(&msg) {
                    log::warn!("cannot touch heartbeat file {}: {msg}", self.heart.path.display());
                }
                self.last_error = Some(msg);
            }
        }
    }
}

impl Shell {
    /// Performs effects in order; returns the exit code on [`Effect::Exit`].
    fn apply(&mut self, job: &mut Job, fx: Vec<Effect>) -> Option<i32> {
        let mut queue: std::collections::VecDeque<Effect> = fx.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Log(level, msg) => match level {
                    Level::Debug => log::debug!("{msg}"),
                    Level::Info => log::info!("{msg}"),
                    Level::Warn => log::warn!("{msg}"),
                    Level::Error => log::error!("{msg}"),
                },
                Effect::Spawn => {
                    let result = spawn(&self.settings.command);
                    queue.extend(job.spawned(self.clock.now(), result));
                }
                Effect::Signal { pid, sig } => {
                    let signal = match sig {
                        Sig::Term => libc::SIGTERM,
                        Sig::Kill => libc::SIGKILL,
                    };
                    // SAFETY: kill(2) with a negative pid signals a process
                    // group; `pid` is the live run's, not yet reaped.
                    if unsafe { libc::kill(-pid, signal) } != 0 {
                        log::debug!("cannot signal process group {pid}: {}", io::Error::last_os_error());
                    }
                }
                Effect::TouchStamp(mtime) => {
                    if let Some(path) = &self.settings.stamp {
                        if let Err(e) = files::touch_stamp(path, mtime) {
                            log::error!("cannot touch spread stamp {}: {e}", path.display());
                        }
                    }
                }
                Effect::Save(state) => {
                    if let Some(path) = &self.settings.state {
                        if let Err(e) = files::write_state(path, &state) {
                            log::error!("cannot write state file {}: {e}", path.display());
                        }
                    }
                }
                Effect::Exit(code) => return Some(code),
            }
        }
        None
    }

    fn drain_signals(&mut self) -> Vec<Signal> {
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.sfd.read_signal() {
            if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                if !out.contains(&sig) || sig != Signal::SIGCHLD {
                    out.push(sig);
                }
            }
        }
        out
    }

    /// The spread stamp as it is on disk now (regenerated if someone broke
    /// it), or `None` to keep the machine's copy.
    fn reread_stamp(&mut self) -> Option<Stamp> {
        let (Plan::Spread { slot }, Some(path)) = (&self.settings.rules.plan, &self.settings.stamp) else {
            return None;
        };
        match files::load_stamp(path, *slot, &mut self.random) {
            Ok(StampRead::Kept(s)) => Some(s),
            Ok(StampRead::Generated(s, why)) => {
                log::warn!(
                    "spread stamp {}: {}; regenerated with offset {} s",
                    path.display(),
                    why.as_deref().unwrap_or("it disappeared"),
                    s.offset
                );
                Some(s)
            }
            Err(e) => {
                log::error!("cannot read spread stamp {}: {e}", path.display());
                None
            }
        }
    }
}

/// `--next`: prints the times, reads files but changes nothing.
fn print_next(settings: &Settings, clock: &Clock, n: usize) -> i32 {
    let now = clock.now();
    let zone = zone_of(&settings.rules.plan);
    let state = match &settings.state {
        None => None,
        Some(path) => match files::read_state(path) {
            Ok(StateRead::Kept(s)) => Some(s),
            Ok(StateRead::New | StateRead::Garbled(_)) => Some(State::default()),
            Err(e) => {
                eprintln!("colony scheduler: cannot read state file {}: {e}", path.display());
                return EXIT_CANTCREAT;
            }
        },
    };
    let mut stamp = None;
    if let (Plan::Spread { slot }, Some(path)) = (&settings.rules.plan, &settings.stamp) {
        match files::peek_stamp(path, *slot) {
            Ok(Some(s)) => stamp = Some(s),
            Ok(None) => {
                println!("{}", machine::show(now, &zone));
                eprintln!(
                    "colony scheduler: {} has no usable offset yet: the first call runs at once, the later times \
                     depend on the random offset it will get",
                    path.display()
                );
                return EXIT_OK;
            }
            Err(e) => {
                eprintln!("colony scheduler: cannot read spread stamp {}: {e}", path.display());
                return EXIT_CANTCREAT;
            }
        }
    }
    for t in machine::upcoming(&settings.rules, Start { now, state, stamp }, n) {
        println!("{}", machine::show(t, &zone));
    }
    EXIT_OK
}

/// Reads (or creates) the state file and checks that it can be written.
fn prepare_state(settings: &Settings, now: Timestamp) -> Result<Option<State>, String> {
    let Some(path) = &settings.state else { return Ok(None) };
    let mut state = match files::read_state(path) {
        Ok(StateRead::Kept(s)) => s,
        Ok(StateRead::New) => State::default(),
        Ok(StateRead::Garbled(why)) => {
            log::warn!("state file {}: {why}; starting afresh (no success remembered)", path.display());
            State::default()
        }
        Err(e) => return Err(format!("cannot read state file {}: {e}", path.display())),
    };
    if state.created.is_none() {
        state.created = Some(now);
    }
    files::write_state(path, &state).map_err(|e| format!("cannot write state file {}: {e}", path.display()))?;
    Ok(Some(state))
}

/// Reads (or generates) the spread stamp and checks that it can be touched.
fn prepare_stamp(settings: &Settings, random: &mut Box<dyn FnMut() -> u64>) -> Result<Option<Stamp>, String> {
    let (Plan::Spread { slot }, Some(path)) = (&settings.rules.plan, &settings.stamp) else { return Ok(None) };
    let cant = |e: io::Error| format!("cannot use spread stamp {}: {e}", path.display());
    match files::load_stamp(path, *slot, random).map_err(cant)? {
        StampRead::Kept(s) => {
            files::check_touchable(path, s).map_err(cant)?;
            Ok(Some(s))
        }
        StampRead::Generated(s, None) => {
            log::info!("new spread stamp {}: offset {} s", path.display(), s.offset);
            Ok(Some(s))
        }
        StampRead::Generated(s, Some(why)) => {
            log::warn!("spread stamp {}: {why}; regenerated with offset {} s", path.display(), s.offset);
            Ok(Some(s))
        }
    }
}

/// Blocks the signals the loop reads, opens a signalfd and a poll for it.
fn setup_signals() -> io::Result<(SignalFd, Poll)> {
    let sfd = crate::sys::block_and_open().map_err(io::Error::from)?;
    let poll = Poll::new()?;
    let raw = sfd.as_fd().as_raw_fd();
    poll.registry().register(&mut SourceFd(&raw), Token(0), Interest::READABLE)?;
    Ok((sfd, poll))
}

/// Starts the command: own process group, stdin from /dev/null, stdout
/// and stderr shared with the scheduler, default signal handling, and
/// SIGKILL if the scheduler itself dies.
fn spawn(argv: &[String]) -> Result<i32, SpawnFailure> {
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null()).process_group(0);
    // SAFETY: only async-signal-safe calls, after fork.
    unsafe {
        cmd.pre_exec(move || {
            crate::sys::reset_signals();
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    match cmd.spawn() {
        // The handle is dropped without waiting: the loop reaps.
        Ok(child) => Ok(child.id() as i32),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SpawnFailure::NotFound(format!("{}: {e}", argv[0]))),
        Err(e) => Err(SpawnFailure::Other(format!("{}: {e}", argv[0]))),
    }
}
