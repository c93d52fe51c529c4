//! Signals and reaping: block the signals colony handles, read them from a
//! signalfd, drain exited children with `waitpid(-1)`, and become a child
//! subreaper.
//!
//! Depends on nix and libc; called only from the loop's thread.

use crate::core::supervisor::{ExitStatus, Pid};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::os::fd::{AsFd, AsRawFd, RawFd};

/// The signals the loop handles.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// Blocks the handled signals in the calling thread (do it before any other
/// thread starts, so that all inherit the mask) and returns a signalfd that
/// receives them. Children get a clean mask back from `std::process`.
pub fn block_and_open() -> nix::Result<SignalFd> {
    let set = handled();
    // A signal ignored by whoever started colony (a background job ignores
    // SIGINT, SIGCHLD ignored would auto-reap) is discarded before it can
    // be queued: restore the defaults, which blocking makes harmless.
    for sig in set.iter() {
        // SAFETY: resetting a disposition to SIG_DFL installs no handler.
        unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl)? };
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// The raw fd of a signalfd, for registration.
pub fn raw(sfd: &SignalFd) -> RawFd {
    sfd.as_fd().as_raw_fd()
}

/// Reads every pending signal.
pub fn drain(sfd: &mut SignalFd) -> Vec<Signal> {
    let mut out = Vec::new();
    while let Ok(Some(info)) = sfd.read_signal() {
        if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
            out.push(sig);
        }
    }
    out
}

/// Reaps every child that has exited, orphans included.
pub fn reap_all() -> Vec<(Pid, ExitStatus)> {
    let mut out = Vec::new();
    loop {
        match waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid.as_raw(), ExitStatus::Exited(code))),
            Ok(WaitStatus::Signaled(pid, sig, _core)) => out.push((pid.as_raw(), ExitStatus::Signaled(sig as i32))),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Err(Errno::EINTR) => continue,
            Ok(_) => continue,
            Err(e) => {
                log::error!("waitpid failed: {e}");
                break;
            }
        }
    }
    out
}

/// Makes orphaned descendants come back to colony (not needed as PID 1).
pub fn become_subreaper() {
    if std::process::id() == 1 {
        return;
    }
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        log::warn!("cannot become a child subreaper: {}", std::io::Error::last_os_error());
    }
}

/// Sends `signal` to the process group `pgid`. Returns whether any process
/// received it.
pub fn signal_group(pgid: Pid, signal: i32) -> bool {
    // SAFETY: kill(2) with a negative pid signals a process group.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// A signal's name for the log, e.g. "SIGTERM".
pub fn name(signal: i32) -> String {
    match Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}

/// The pids of colony's live children (from /proc), for the last sweep at
/// exit. Zombies are left to `reap_all`.
pub fn own_children() -> Vec<Pid> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                // After the command, which may contain spaces: state ppid …
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let mut fields = rest.split_whitespace();
                let state = fields.next().unwrap_or("");
                fields.next() == Some(me.as_str()) && state != "Z"
            })
        })
        .collect()
}
