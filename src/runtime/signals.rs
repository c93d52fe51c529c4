//! Signals and reaping for the loop: read signals from the signalfd,
//! signal process groups, become a child subreaper (the signal set-up and
//! the `waitpid(-1)` drain are shared with the jobs in `crate::sys`).
//!
//! Depends on nix and libc; called only from the loop's thread.

use crate::core::supervisor::Pid;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use std::os::fd::{AsFd, AsRawFd, RawFd};

pub use crate::sys::{block_and_open, reap_all};

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
