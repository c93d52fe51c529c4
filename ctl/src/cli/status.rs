//! `status` and `restart --wait`: reading the supervisor's status directory.
//!
//! Depends on the status module; sleeps only here, in the command, never in
//! the supervisor.

use super::{Failure, EXIT_FAILURE};
use crate::{read_program_status, read_status_dir, Places, ProgramName, ProgramStatus, StateName};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn fail(msg: impl Into<String>) -> Failure {
    Failure(EXIT_FAILURE, msg.into())
}

use crate::time::unix_now;

/// "3d4h", "5m12s", "0.4s": a short duration for the table.
fn short(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s < 86400.0 {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    } else {
        format!("{}d{:02}h", (s / 86400.0) as u64, ((s % 86400.0) / 3600.0) as u64)
    }
}

fn last_exit(p: &ProgramStatus) -> String {
    match p.last_exit {
        Some(e) => match (e.code, e.signal) {
            (Some(c), _) => format!("code {c}"),
            (_, Some(s)) => format!("signal {}", crate::signal_name(s).map_or(s.to_string(), |n| format!("SIG{n}"))),
            _ => "-".into(),
        },
        None => "-".into(),
    }
}

fn note(p: &ProgramStatus, now: f64) -> String {
    let mut notes = Vec::new();
    if let Some(at) = p.next_start {
        notes.push(format!("starts in {}", short(at - now)));
    }
    if p.held {
        notes.push("stopped on request".into());
    }
    if p.disabled {
        notes.push("disabled".into());
    }
    if p.state == StateName::Running && !p.ready {
        notes.push("not ready".into());
    }
    if let Some(h) = &p.health {
        notes.push(format!("heartbeat {h}"));
    }
    if !p.waiting_for.is_empty() {
        notes.push(format!("waiting for {}", p.waiting_for.join(", ")));
    }
    if let Some(b) = &p.blocked {
        notes.push(format!("cannot start: {b}"));
    }
    notes.join(", ")
}

/// The status of `name`, if a live supervisor keeps `dir`.
pub(crate) fn current(dir: &Path, name: &ProgramName) -> Option<ProgramStatus> {
    let snap = read_status_dir(dir).ok()?;
    if !snap.daemon_alive() {
        return None;
    }
    snap.program(name.as_str()).cloned()
}

/// Prints the table (or JSON) of `dir`.
pub(crate) fn show(dir: &Path, only: Option<&ProgramName>, json: bool) -> Result<(), Failure> {
    let snap =
        read_status_dir(dir).map_err(|e| fail(format!("cannot read the status directory {}: {e}", dir.display())))?;
    let programs: Vec<&ProgramStatus> =
        snap.programs.iter().filter(|p| only.is_none_or(|n| p.name == n.as_str())).collect();
    if let Some(n) = only {
        if programs.is_empty() {
            return Err(fail(format!("no status for {n:?} in {}", dir.display())));
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({"daemon": snap.daemon, "programs": programs});
        let _ = writeln!(out, "{value}");
    } else {
        let now = unix_now();
        let rows: Vec<[String; 7]> = programs
            .iter()
            .map(|p| {
                [
                    p.name.clone(),
                    p.state.as_str().to_string(),
                    p.pid.map_or("-".into(), |pid| pid.to_string()),
                    p.started.map_or("-".into(), |t| short(now - t)),
                    p.restarts.to_string(),
                    last_exit(p),
                    note(p, now),
                ]
            })
            .collect();
        let header = ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "NOTE"].map(String::from);
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  "));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    if !snap.daemon_alive() {
        let why = match &snap.daemon {
            Some(d) => format!("colony (pid {}) is not running; this status may be stale", d.pid),
            None => format!("no colony is running with the status directory {}", dir.display()),
        };
        return Err(fail(why));
    }
    Ok(())
}

/// Sends RESTART and waits until a new instance of `name` runs.
pub(crate) fn restart_and_wait(places: &Places, dir: &Path, name: &ProgramName, timeout: f64) -> Result<(), Failure> {
    if !(timeout.is_finite() && (0.0..=1e9).contains(&timeout)) {
        return Err(super::usage(format!("--timeout: expected a number of seconds, got {timeout}")));
    }
    let snap = read_status_dir(dir).unwrap_or_default();
    if !snap.daemon_alive() {
        return Err(fail(format!("cannot wait: no colony is running with the status directory {}", dir.display())));
    }
    let before = snap.program(name.as_str()).map_or(0, |p| p.instance);
    if snap.program(name.as_str()).is_some_and(|p| p.disabled) {
        return Err(fail(format!("{name} is disabled in its config file")));
    }
    places.restart(name)?;
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    loop {
        let status = read_program_status(dir, name.as_str());
        if let Some(s) = &status {
            // A program with a readiness check counts once it is ready.
            if s.instance > before && s.state == StateName::Running && s.ready {
                return Ok(());
            }
            if s.instance > before && s.state == StateName::Failed {
                return Err(fail(format!("{name} failed (last exit: {})", last_exit(s))));
            }
        }
        if Instant::now() >= deadline {
            let state =
                status.map_or("unknown".to_string(), |s| format!("{}, last exit {}", s.state.as_str(), last_exit(&s)));
            return Err(fail(format!("{name} did not come back within {timeout} s (now {state})")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
