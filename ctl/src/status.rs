//! The status directory: one JSON file per program and one for the daemon,
//! written by the supervisor whenever something changes, read by
//! `colony ctl status` and anyone else.
//!
//! Depends on serde and the files module.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The status directory used when none is given: `.status` inside the
/// messages directory (a dot-name, so no message reader looks at it).
pub const DEFAULT_STATUS_SUBDIR: &str = ".status";

/// The daemon's own file in the status directory (a dot-name, so it can
/// never clash with a program name).
pub const DAEMON_FILE: &str = ".colony";

/// A program's state as the status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateName {
    /// Being started.
    Starting,
    /// Running.
    Running,
    /// Waiting before it is started again (see `next_start`).
    Backoff,
    /// Asked to stop, not yet gone.
    Stopping,
    /// Not running and not scheduled: stopped on request, disabled, or
    /// colony is shutting down.
    Stopped,
    /// Given up on after too many failures.
    Failed,
}

impl StateName {
    /// The lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            StateName::Starting => "starting",
            StateName::Running => "running",
            StateName::Backoff => "backoff",
            StateName::Stopping => "stopping",
            StateName::Stopped => "stopped",
            StateName::Failed => "failed",
        }
    }
}

/// How an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal, if it was killed by one.
    pub signal: Option<i32>,
}

/// The file `STATUS/NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramStatus {
    /// The program's name.
    pub name: String,
    /// Its state.
    pub state: StateName,
    /// The pid of the running (or stopping) instance.
    pub pid: Option<i32>,
    /// When the running instance started (Unix time, seconds).
    pub started: Option<f64>,
    /// How many times it has been started since colony started.
    pub instance: u64,
    /// How many of those were restarts (`instance - 1`).
    pub restarts: u64,
    /// How the previous instance ended.
    pub last_exit: Option<LastExit>,
    /// When it will be started again, in backoff (Unix time).
    pub next_start: Option<f64>,
    /// Stopped by a STOP request (until START or RESTART).
    pub held: bool,
    /// `"disabled": true` in its config.
    pub disabled: bool,
    /// When this state began (Unix time).
    pub since: f64,
    /// The running instance is ready (without a readiness check: as soon
    /// as it runs).
    #[serde(default)]
    pub ready: bool,
    /// `"lost"` (heartbeat stale, restarted) or `"dropped"` (no heartbeat
    /// for the drop threshold).
    #[serde(default)]
    pub health: Option<String>,
    /// Programs of its `after` list it is waiting for.
    #[serde(default)]
    pub waiting_for: Vec<String>,
    /// Why it cannot start at all (an `after` problem).
    #[serde(default)]
    pub blocked: Option<String>,
}

/// The file `STATUS/.colony`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// colony's pid.
    pub pid: u32,
    /// colony's version.
    pub version: String,
    /// When it started (Unix time).
    pub started: f64,
    /// The config directory.
    pub config: PathBuf,
    /// The messages directory.
    pub messages: PathBuf,
    /// Programs configured.
    pub programs: usize,
    /// Programs running.
    pub running: usize,
    /// Status files written so far (this one excluded).
    pub status_writes: u64,
    /// Whether it is shutting down.
    pub stopping: bool,
    /// When this file was written (Unix time).
    pub updated: f64,
}

/// Everything a status directory holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusSnapshot {
    /// The daemon's file, if present and readable.
    pub daemon: Option<DaemonStatus>,
    /// Every program's file, sorted by name.
    pub programs: Vec<ProgramStatus>,
}

impl StatusSnapshot {
    /// Whether the daemon that wrote it is still alive (its pid exists).
    pub fn daemon_alive(&self) -> bool {
        self.daemon.as_ref().is_some_and(|d| Path::new(&format!("/proc/{}", d.pid)).exists())
    }

    /// One program's status.
    pub fn program(&self, name: &str) -> Option<&ProgramStatus> {
        self.programs.iter().find(|p| p.name == name)
    }
}

/// Reads a status directory. Files that do not parse are skipped (a reader
/// may race with nothing: every file is replaced atomically).
pub fn read_status_dir(dir: &Path) -> io::Result<StatusSnapshot> {
    let mut snap = StatusSnapshot::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == DAEMON_FILE {
            snap.daemon = std::fs::read(entry.path()).ok().and_then(|b| serde_json::from_slice(&b).ok());
        } else if !crate::is_ignored_file_name(name) {
            if let Some(p) = std::fs::read(entry.path()).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                snap.programs.push(p);
            }
        }
    }
    snap.programs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(snap)
}

/// Reads one program's status file.
pub fn read_program_status(dir: &Path, name: &str) -> Option<ProgramStatus> {
    std::fs::read(dir.join(name)).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = ProgramStatus {
            name: "web".into(),
            state: StateName::Backoff,
            pid: None,
            started: None,
            instance: 3,
            restarts: 2,
            last_exit: Some(LastExit { code: None, signal: Some(9) }),
            next_start: Some(1.5),
            held: false,
            disabled: false,
            since: 1.0,
            ready: false,
            health: None,
            waiting_for: vec![],
            blocked: None,
        };
        crate::write_atomic(dir.path(), "web", &serde_json::to_vec(&p).unwrap()).unwrap();
        std::fs::write(dir.path().join("junk"), "not json").unwrap();
        let snap = read_status_dir(dir.path()).unwrap();
        assert_eq!(snap.programs, std::slice::from_ref(&p));
        assert_eq!(snap.daemon, None);
        assert!(!snap.daemon_alive());
        assert_eq!(read_program_status(dir.path(), "web"), Some(p));
        let text = serde_json::to_string(&StateName::Stopped).unwrap();
        assert_eq!(text, "\"stopped\"");
    }
}
