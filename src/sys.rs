//! Process helpers shared by the supervisor's runtime and the jobs: the
//! signals they read from a signalfd, the reaper, and what children need
//! between fork and exec.
//!
//! Depends on libc, nix and the core's exit status type.

use crate::core::supervisor::{ExitStatus, Pid};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// Blocks SIGCHLD, SIGTERM, SIGINT and SIGHUP in the calling thread (do it
/// before any other thread starts, so that all inherit the mask) and
/// returns a signalfd that receives them. Children get a clean mask back
/// (`reset_signals`, or the spawn attributes).
pub fn block_and_open() -> nix::Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    // A signal ignored by whoever started us (a background job ignores
    // SIGINT, SIGCHLD ignored would auto-reap) is discarded before it can
    // be queued: restore the defaults, which blocking makes harmless.
    for sig in set.iter() {
        // SAFETY: resetting a disposition to SIG_DFL installs no handler.
        unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl)? };
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Reaps every child that has exited, orphans included.
pub fn reap_all() -> Vec<(Pid, ExitStatus)> {
    let mut out = Vec::new();
    loop {
        match waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid.as_raw(), ExitStatus::Exited(code))),
            Ok(WaitStatus::Signaled(pid, sig, _core)) => out.push((pid.as_raw(), ExitStatus::Signaled(sig as i32))),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(e) => {
                log::error!("waitpid failed: {e}");
                break;
            }
        }
    }
    out
}

/// Gives the calling process default signal dispositions and an empty
/// signal mask. Async-signal-safe: meant for `pre_exec`, after fork.
pub fn reset_signals() {
    // SAFETY: sigaction/sigprocmask with valid arguments; errors (for
    // SIGKILL, SIGSTOP and the C library's reserved signals) are harmless.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=libc::SIGRTMAX() {
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Waits `d` in poll(2) with no descriptor: for the jobs' degraded paths
/// (no event loop could be set up), which must still not spin.
pub fn pause(d: std::time::Duration) {
    let ms = d.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: poll(2) with no descriptors only waits.
    unsafe { libc::poll(std::ptr::null_mut(), 0, ms) };
}
