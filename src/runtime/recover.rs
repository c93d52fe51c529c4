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

/// The live processes of process group `pgid` (from /proc).
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let f: Vec<&str> = rest.split_whitespace().collect();
                // state ppid pgrp …
                f.len() > 2 && f[0] != "Z" && f[0] != "X" && f[2] == pgid.to_string()
            })
        })
        .collect()
}

/// Waits until every process of `pids` has exited, or `deadline`. Uses
/// pidfds (readable once a process has exited); without them it looks
/// again every 50 ms.
fn wait_gone(pids: &mut Vec<i32>, deadline: Instant) {
    loop {
        pids.retain(|pid| start_time(*pid).is_some());
        let left = deadline.saturating_duration_since(Instant::now());
        if pids.is_empty() || left.is_zero() {
            return;
        }
        let fds: Vec<OwnedFd> = pids
            .iter()
            .filter_map(|pid| {
                // SAFETY: pidfd_open(2) with a pid and no flags.
                let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, *pid, 0) };
                // SAFETY: a new descriptor we own.
                (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
            })
            .collect();
        let mut polled: Vec<libc::pollfd> = fds
            .iter()
            .map(|fd| libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(fd), events: libc::POLLIN, revents: 0 })
            .collect();
        let wait = if fds.len() == pids.len() { left } else { left.min(Duration::from_millis(50)) };
        // SAFETY: poll(2) on valid descriptors (or none) with a timeout.
        unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, wait.as_millis().max(1) as i32) };
    }
}

/// Stops every instance a previous colony left running — its whole process
/// group: the stop signal first, SIGKILL after `killtime`, then waits for
/// every process of the group to be gone. Returns how many there were.
pub fn stop_leftovers(dir: &Path, killtime: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut stale: Vec<(String, i32)> = Vec::new();
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(String::from) else { continue };
        if is_ignored_file_name(&name) {
            continue;
        }
        let pid = std::fs::read_to_string(e.path()).ok().and_then(|s| s.trim().parse::<i32>().ok());
        match pid {
            Some(pid) if pid > 1 && same_instance(dir, &name, pid) => {
                log::warn!("{name}: pid {pid} still runs from before colony restarted; stopping it first");
                // SAFETY: kill(2) on its process group, then on itself.
                unsafe {
                    if libc::kill(-pid, libc::SIGTERM) != 0 {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
                stale.push((name, pid));
            }
            _ => forget(dir, &name),
        }
    }
    if stale.is_empty() {
        return 0;
    }
    // The main processes get the kill time to stop.
    let mut mains: Vec<i32> = stale.iter().map(|(_, pid)| *pid).collect();
    wait_gone(&mut mains, Instant::now() + killtime);
    // Then whatever is left of each group (main process included) is killed,
    // and colony waits until it is really gone: never two instances at once.
    let mut rest: Vec<i32> = Vec::new();
    for (name, pid) in &stale {
        let mut members = group_members(*pid);
        if start_time(*pid).is_some() && !members.contains(pid) {
            members.push(*pid);
        }
        if start_time(*pid).is_some() {
            log::warn!("{name}: pid {pid} did not stop within the kill time; sending SIGKILL");
        } else if !members.is_empty() {
            log::warn!("{name}: killing what pid {pid} left in its process group: {members:?}");
        }
        for m in &members {
            // SAFETY: kill(2) on processes of the old instance.
            unsafe { libc::kill(*m, libc::SIGKILL) };
        }
        rest.extend(members);
    }
    wait_gone(&mut rest, Instant::now() + Duration::from_secs(5));
    for pid in &rest {
        log::error!("pid {pid} of a previous instance did not die within 5 s of SIGKILL");
    }
    for (name, _) in &stale {
        forget(dir, name);
    }
    stale.len()
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
