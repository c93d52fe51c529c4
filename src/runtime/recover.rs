//! Crash recovery: when colony was killed (SIGKILL, OOM) its programs may
//! still run. At start, with `--pid DIR`, every recorded instance that is
//! still the same process (its start time matches the one recorded next to
//! the pid, or, for a pid file without one, its environment names the
//! program) is stopped before anything starts: colony cannot wait for a
//! process it did not start, so it does not adopt it.
//!
//! Depends on libc (kill, pidfd_open, poll) and /proc.

use colony_ctl::{is_ignored_file_name, write_volatile};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The kernel's start time of `pid` (clock ticks since boot), if it runs.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // starttime is field 22; `rest` starts at field 3.
    fields.nth(22 - 4)?.parse().ok()
}

fn start_file(name: &str) -> String {
    format!(".{name}.start")
}

/// Records `pid` and its start time for `name`.
pub fn record(dir: &Path, name: &str, pid: i32) -> std::io::Result<()> {
    if let Some(t) = start_time(pid) {
        let _ = write_volatile(dir, &start_file(name), t.to_string().as_bytes());
    }
    write_volatile(dir, name, pid.to_string().as_bytes())
}

/// Forgets `name`'s pid.
pub fn forget(dir: &Path, name: &str) {
    let _ = std::fs::remove_file(dir.join(name));
    let _ = std::fs::remove_file(dir.join(start_file(name)));
}

/// Whether `pid` is still the instance of `name` recorded in `dir`.
fn same_instance(dir: &Path, name: &str, pid: i32) -> bool {
    let Some(now) = start_time(pid) else { return false };
    match std::fs::read_to_string(dir.join(start_file(name))) {
        Ok(recorded) => recorded.trim().parse::<u64>().ok() == Some(now),
        // No start time (written by an older colony): trust the environment.
        Err(_) => std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == format!("COLONY_NAME={name}").as_bytes())),
    }
}

/// Stops every instance a previous colony left running, waiting at most
/// `killtime` before SIGKILL. Returns how many there were.
pub fn stop_leftovers(dir: &Path, killtime: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut stale: Vec<(String, i32, Option<OwnedFd>)> = Vec::new();
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(String::from) else { continue };
        if is_ignored_file_name(&name) {
            continue;
        }
        let pid = std::fs::read_to_string(e.path()).ok().and_then(|s| s.trim().parse::<i32>().ok());
        match pid {
            Some(pid) if pid > 1 && same_instance(dir, &name, pid) => {
                // SAFETY: pidfd_open(2) with a pid and no flags.
                let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
                // SAFETY: a new descriptor we own, if the call succeeded.
                let fd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) });
                log::warn!("{name}: pid {pid} still runs from before colony restarted; stopping it first");
                // SAFETY: kill(2) on its process group, then on itself.
                unsafe {
                    if libc::kill(-pid, libc::SIGTERM) != 0 {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
                stale.push((name, pid, fd));
            }
            _ => forget(dir, &name),
        }
    }
    let count = stale.len();
    let deadline = Instant::now() + killtime;
    while !stale.is_empty() {
        stale.retain(|(name, pid, _)| {
            let alive = start_time(*pid).is_some();
            if !alive {
                forget(dir, name);
            }
            alive
        });
        let left = deadline.saturating_duration_since(Instant::now());
        if stale.is_empty() || left.is_zero() {
            break;
        }
        // Wait for any of them to exit (pidfds become readable), or the
        // deadline. Without pidfds, look again every 50 ms.
        let mut fds: Vec<libc::pollfd> = stale
            .iter()
            .filter_map(|(_, _, fd)| fd.as_ref())
            .map(|fd| libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(fd), events: libc::POLLIN, revents: 0 })
            .collect();
        let wait = if fds.len() == stale.len() { left } else { left.min(Duration::from_millis(50)) };
        // SAFETY: poll(2) on valid descriptors (or none) with a timeout.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait.as_millis().max(1) as i32) };
    }
    for (name, pid, _) in stale {
        log::warn!("{name}: pid {pid} did not stop within the kill time; sending SIGKILL");
        // SAFETY: as above.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
        forget(dir, &name);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_start_time() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert_eq!(start_time(i32::MAX), None);
    }
}
