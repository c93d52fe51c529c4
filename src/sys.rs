//! Small process helpers shared by the supervisor's runtime and the jobs,
//! for use between fork and exec.
//!
//! Depends on libc only.

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
