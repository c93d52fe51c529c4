//! The operating-system edge shared by `colony maintenance` and `colony
//! manage`: the clock (real or pretended with `--now`), the signals (one
//! signalfd), and running one child at a time (own process group, output
//! captured or passed through, a timeout with SIGTERM then SIGKILL, and a
//! stop request forwarded to it). Children are reaped here and only here.
//!
//! Depends on mio, nix, libc and jiff.

use crate::jobs::scheduler::calendar;
use jiff::{SignedDuration, Timestamp};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The time, possibly pretended (`--now` at start, then advancing).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset: SignedDuration,
}

impl Clock {
    /// A clock that reads `pretend` now.
    pub fn new(pretend: Option<Timestamp>) -> Clock {
        Clock { offset: pretend.map_or(SignedDuration::ZERO, |t| t.duration_since(Timestamp::now())) }
    }

    /// The (pretended) time.
    pub fn now(&self) -> Timestamp {
        calendar::add(Timestamp::now(), self.offset)
    }

    /// The real wall clock, Unix seconds.
    pub fn real_unix(&self) -> f64 {
        Timestamp::now().as_nanosecond() as f64 / 1e9
    }
}

/// The job's signals, read from a signalfd: SIGCHLD, SIGTERM, SIGINT,
/// SIGHUP (ignored).
pub struct Signals {
    sfd: SignalFd,
    /// How many SIGTERM/SIGINT arrived.
    pub stops: u32,
}

impl Signals {
    /// Blocks the signals and opens the signalfd.
    pub fn setup() -> io::Result<Signals> {
        let sfd = crate::sys::block_and_open().map_err(io::Error::from)?;
        Ok(Signals { sfd, stops: 0 })
    }

    /// The descriptor to poll.
    pub fn raw_fd(&self) -> i32 {
        self.sfd.as_fd().as_raw_fd()
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.stops > 0
    }

    /// Reads every pending signal; counts stops; returns whether a
    /// SIGCHLD came.
    pub fn drain(&mut self) -> bool {
        let mut child = false;
        while let Ok(Some(info)) = self.sfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => child = true,
                Ok(s @ (Signal::SIGTERM | Signal::SIGINT)) => {
                    self.stops += 1;
                    log::info!("received {}", s.as_str());
                }
                Ok(other) => log::debug!("{} ignored", other.as_str()),
                Err(_) => {}
            }
        }
        child
    }

    /// Waits until `deadline` (real time) or a stop, whichever is first.
    pub fn pause(&mut self, deadline: Instant) {
        let Ok(mut poll) = Poll::new() else { return };
        let raw = self.raw_fd();
        if poll.registry().register(&mut SourceFd(&raw), Token(0), Interest::READABLE).is_err() {
            return;
        }
        let mut events = Events::with_capacity(4);
        while !self.stopping() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = poll.poll(&mut events, Some(left));
            self.drain();
        }
    }
}

/// A child to run.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// argv; the first word is the program.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Added to the job's own environment.
    pub env: Vec<(String, String)>,
    /// Capture stdout and stderr (merged) instead of passing them through.
    pub capture: bool,
    /// SIGTERM after this long.
    pub timeout: Option<Duration>,
    /// SIGKILL this long after SIGTERM.
    pub grace: Duration,
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It could not start (127: not found, 126: other), and why.
    NotStarted(i32, String),
}

impl End {
    /// The shell's convention: the code, 128 + signal, 126/127.
    pub fn code(&self) -> i32 {
        match self {
            End::Exited(c) => *c,
            End::Signaled(s) => 128 + s,
            End::NotStarted(c, _) => *c,
        }
    }

    /// "exit code 3", "signal SIGKILL", "cannot start: …".
    pub fn describe(&self) -> String {
        match self {
            End::Exited(c) => format!("exit code {c}"),
            End::Signaled(s) => match Signal::try_from(*s) {
                Ok(sig) => format!("signal {}", sig.as_str()),
                Err(_) => format!("signal {s}"),
            },
            End::NotStarted(_, why) => format!("cannot start: {why}"),
        }
    }
}

/// What a run gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub end: End,
    /// Killed because of its timeout.
    pub timed_out: bool,
    /// Stopped because the job was asked to stop.
    pub interrupted: bool,
    /// The captured output (its tail, at most twice `MAX_OUTPUT`).
    pub output: Vec<u8>,
    /// How long it ran.
    pub took: Duration,
}

const OUTPUT_KEEP: usize = colony_ctl::maintenance::MAX_OUTPUT;

/// Runs `job` to its end. A stop request (SIGTERM/SIGINT) sends SIGTERM
/// to its process group and SIGKILL after `grace` (at once on a second
/// request); the timeout does the same. Whatever the child leaves in its
/// process group is killed when it ends.
pub fn run(signals: &mut Signals, job: &Job) -> Outcome {
    let started = Instant::now();
    let not_started = |code: i32, why: String| Outcome {
        end: End::NotStarted(code, why),
        timed_out: false,
        interrupted: false,
        output: Vec::new(),
        took: Duration::ZERO,
    };
    let Some(program) = job.argv.first() else { return not_started(127, "empty command".into()) };
    let pipe = if job.capture {
        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
            Ok((r, w)) => Some((r, w)),
            Err(e) => return not_started(126, format!("cannot create a pipe: {e}")),
        }
    } else {
        None
    };
    let mut cmd = Command::new(program);
    cmd.args(&job.argv[1..]).stdin(Stdio::null()).process_group(0);
    cmd.envs(job.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &job.cwd {
        cmd.current_dir(dir);
    }
    let mut reader: Option<std::fs::File> = None;
    if let Some((r, w)) = pipe {
        // The child's ends are blocking; O_NONBLOCK was set on both by
        // pipe2, so clear it on the write end.
        let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()));
        match w.try_clone() {
            Ok(w2) => {
                cmd.stdout(Stdio::from(w)).stderr(Stdio::from(w2));
            }
            Err(e) => return not_started(126, format!("cannot duplicate a pipe: {e}")),
        }
        reader = Some(std::fs::File::from(r));
    }
    let parent = std::process::id() as libc::pid_t;
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
    let pid = match cmd.spawn() {
        // The handle is dropped without waiting: reaped below.
        Ok(child) => child.id() as i32,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return not_started(127, format!("{program}: {e}")),
        Err(e) => return not_started(126, format!("{program}: {e}")),
    };
    drop(cmd); // closes the parent's copies of the write ends
    let mut w = Watch { pid, reader, output: Vec::new(), eof: false };
    let mut end = None;
    let mut timed_out = false;
    let mut interrupted = false;
    let mut term_at = job.timeout.map(|t| started + t);
    let mut kill_at: Option<Instant> = None;
    let mut stops_seen = signals.stops;
    let poll = Poll::new().and_then(|p| {
        let raw = signals.raw_fd();
        p.registry().register(&mut SourceFd(&raw), Token(0), Interest::READABLE)?;
        if let Some(r) = &w.reader {
            let raw = r.as_raw_fd();
            p.registry().register(&mut SourceFd(&raw), Token(1), Interest::READABLE)?;
        }
        Ok(p)
    });
    let mut poll = match poll {
        Ok(p) => Some(p),
        Err(e) => {
            log::error!("cannot poll: {e}; checking every 50 ms");
            None
        }
    };
    let mut events = Events::with_capacity(8);
    loop {
        let now = Instant::now();
        let next = [term_at, kill_at].into_iter().flatten().min();
        // At most a second: in a process with other threads (the test
        // harness), one of them may take a SIGCHLD before the signalfd.
        let wait =
            next.map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now)).min(Duration::from_secs(1));
        match poll.as_mut() {
            Some(p) => {
                if let Err(e) = p.poll(&mut events, Some(wait)) {
                    if e.kind() != io::ErrorKind::Interrupted {
                        log::error!("poll failed: {e}");
                        crate::sys::pause(Duration::from_millis(50));
                    }
                }
            }
            None => crate::sys::pause(wait.min(Duration::from_millis(50))),
        }
        w.read();
        signals.drain();
        if end.is_none() {
            end = w.reap();
        }
        if end.is_some() {
            break;
        }
        let now = Instant::now();
        if signals.stops > stops_seen {
            interrupted = true;
            term_at = None;
            if stops_seen == 0 && kill_at.is_none() {
                signal_group(pid, libc::SIGTERM);
                kill_at = Some(now + job.grace);
            } else {
                signal_group(pid, libc::SIGKILL);
            }
            stops_seen = signals.stops;
        }
        if term_at.is_some_and(|t| t <= now) {
            term_at = None;
            timed_out = true;
            log::warn!("{program}: timed out: SIGTERM, SIGKILL in {:.1} s", job.grace.as_secs_f64());
            signal_group(pid, libc::SIGTERM);
            kill_at = Some(now + job.grace);
        }
        if kill_at.is_some_and(|t| t <= now) {
            kill_at = None;
            signal_group(pid, libc::SIGKILL);
        }
    }
    // What it left in its group dies with it; then read what is left.
    signal_group(pid, libc::SIGKILL);
    let until = Instant::now() + Duration::from_millis(500);
    while !w.eof && w.reader.is_some() && Instant::now() < until {
        if let Some(p) = poll.as_mut() {
            let _ = p.poll(&mut events, Some(Duration::from_millis(50)));
        } else {
            crate::sys::pause(Duration::from_millis(10));
        }
        w.read();
    }
    Outcome { end: end.unwrap_or(End::Exited(0)), timed_out, interrupted, output: w.output, took: started.elapsed() }
}

struct Watch {
    pid: i32,
    reader: Option<std::fs::File>,
    output: Vec<u8>,
    eof: bool,
}

impl Watch {
    fn read(&mut self) {
        let Some(file) = self.reader.as_mut() else { return };
        let mut buf = [0u8; 8192];
        loop {
            match file.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.output.extend_from_slice(&buf[..n]);
                    if self.output.len() > 2 * OUTPUT_KEEP {
                        let cut = self.output.len() - OUTPUT_KEEP;
                        self.output.drain(..cut);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    /// Reaps the child if it has ended (only this pid: in a process with
    /// other threads, their children are theirs to reap).
    fn reap(&mut self) -> Option<End> {
        loop {
            match waitpid(nix::unistd::Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Some(End::Exited(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Some(End::Signaled(sig as i32)),
                Ok(WaitStatus::StillAlive) => return None,
                Err(Errno::EINTR) | Ok(_) => continue,
                Err(e) => {
                    // ECHILD: someone else reaped it; nothing more to learn.
                    log::error!("waitpid {} failed: {e}", self.pid);
                    return Some(End::Signaled(0));
                }
            }
        }
    }
}

fn signal_group(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; `pid`
    // is our child's group leader, not yet reaped or just reaped (its
    // group id is not reused while group members live).
    unsafe { libc::kill(-pid, sig) };
}

/// Output as text lines, for the log.
pub fn lines(output: &[u8]) -> impl Iterator<Item = String> + '_ {
    output.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| String::from_utf8_lossy(l).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, capture: bool, timeout: Option<f64>) -> Job {
        Job {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            capture,
            timeout: timeout.map(Duration::from_secs_f64),
            grace: Duration::from_millis(200),
            ..Job::default()
        }
    }

    // One test: signals are blocked per thread, and the test harness runs
    // tests on several threads.
    #[test]
    fn runs_captures_times_out_and_reports() {
        let mut signals = Signals::setup().unwrap();
        let out = run(&mut signals, &sh("echo out; echo err >&2; exit 3", true, None));
        assert_eq!(out.end, End::Exited(3));
        assert_eq!(String::from_utf8_lossy(&out.output), "out\nerr\n");
        assert!(!out.timed_out && !out.interrupted);
        let out = run(&mut signals, &sh("trap '' TERM; sleep 5", true, Some(0.1)));
        assert_eq!(out.end, End::Signaled(libc::SIGKILL));
        assert!(out.timed_out);
        assert!(out.took < Duration::from_secs(3), "{:?}", out.took);
        let out = run(&mut signals, &Job { argv: vec!["/nonexistent/x".into()], ..Job::default() });
        assert!(matches!(out.end, End::NotStarted(127, _)), "{:?}", out.end);
        // A background child holding the pipe does not hold the run.
        let t = Instant::now();
        let out = run(&mut signals, &sh("sleep 5 & echo bye", true, None));
        assert_eq!(out.end, End::Exited(0));
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(String::from_utf8_lossy(&out.output), "bye\n");
        let out = run(&mut signals, &Job { env: vec![("X".into(), "y".into())], ..sh("echo $X", true, None) });
        assert_eq!(String::from_utf8_lossy(&out.output), "y\n");
        assert_eq!(End::Signaled(9).describe(), "signal SIGKILL");
        assert_eq!(End::Signaled(9).code(), 137);
    }
}
