//! The scheduler's own heartbeat, as ncolony-scheduler kept one: when the
//! scheduler's program file asks for a heartbeat (`ncolony.beatcheck` or
//! `heartbeat`), the scheduler touches the file every third of the period,
//! so that the supervisor does not restart it as stale. Pure: the
//! environment's values come in as arguments.
//!
//! Depends on serde_json and jiff.

use jiff::SignedDuration;
use std::path::{Path, PathBuf};

/// Which file to touch, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heart {
    /// The file.
    pub path: PathBuf,
    /// How often.
    pub every: SignedDuration,
}

/// The period when the program file gives none (`heartbeat.lost_after`'s
/// default).
const DEFAULT_PERIOD: f64 = 300.0;

/// Works out the heartbeat from `COLONY_HEARTBEAT_FILE` (set by colony),
/// the program file (`COLONY_CONFIG` or `NCOLONY_CONFIG`) and the program's
/// name (for an ncolony `status` directory, when the job runs under
/// ncolony itself). `is_dir` tells whether a path is a directory.
pub fn from_env(
    heartbeat_file: Option<&str>,
    config: Option<&[u8]>,
    name: Option<&str>,
    is_dir: impl Fn(&Path) -> bool,
) -> Option<Heart> {
    let config: Option<serde_json::Value> = config.and_then(|c| serde_json::from_slice(c).ok());
    let beatcheck = config.as_ref().and_then(|c| c.get("ncolony.beatcheck")).filter(|b| b.is_object());
    let heartbeat = config.as_ref().and_then(|c| c.get("heartbeat")).filter(|b| b.is_object());
    let positive = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_f64()).filter(|p| p.is_finite() && *p > 0.0);
    let period = positive(beatcheck.and_then(|b| b.get("period")))
        .or_else(|| heartbeat.map(|h| positive(h.get("lost_after")).unwrap_or(DEFAULT_PERIOD)));
    let path = match heartbeat_file.filter(|f| !f.is_empty()) {
        Some(f) => PathBuf::from(f),
        None => {
            let status = beatcheck?.get("status")?.as_str().filter(|s| !s.is_empty())?;
            let status = PathBuf::from(status);
            match name {
                Some(n) if is_dir(&status) => status.join(n),
                _ => status,
            }
        }
    };
    let third = period.unwrap_or(DEFAULT_PERIOD) / 3.0;
    let every = SignedDuration::try_from_secs_f64(third.clamp(0.05, 60.0)).ok()?;
    Some(Heart { path, every })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dir(_: &Path) -> bool {
        false
    }

    #[test]
    fn nothing_asked_no_heart() {
        assert_eq!(from_env(None, None, None, no_dir), None);
        assert_eq!(from_env(None, Some(br#"{"args": ["x"]}"#), Some("s"), no_dir), None);
        assert_eq!(from_env(None, Some(b"not json"), Some("s"), no_dir), None);
    }

    #[test]
    fn colony_file_with_the_beatcheck_period() {
        let cfg = br#"{"args": ["x"], "ncolony.beatcheck": {"period": 9, "grace": 2, "status": "/s"}}"#;
        let h = from_env(Some("/run/hb/sched"), Some(cfg), Some("sched"), no_dir).unwrap();
        assert_eq!(h, Heart { path: "/run/hb/sched".into(), every: SignedDuration::from_secs(3) });
    }

    #[test]
    fn colony_heartbeat_key() {
        let cfg = br#"{"args": ["x"], "heartbeat": {"lost_after": 0.3}}"#;
        let h = from_env(Some("/hb"), Some(cfg), None, no_dir).unwrap();
        assert_eq!(h.every, SignedDuration::from_millis(100));
        let cfg = br#"{"args": ["x"], "heartbeat": {}}"#;
        assert_eq!(from_env(Some("/hb"), Some(cfg), None, no_dir).unwrap().every, SignedDuration::from_secs(60));
    }

    #[test]
    fn under_ncolony_the_status_directory_holds_the_named_file() {
        let cfg = br#"{"args": ["x"], "ncolony.beatcheck": {"period": 30, "grace": 1, "status": "/st"}}"#;
        let h = from_env(None, Some(cfg), Some("sched"), |p| p == Path::new("/st")).unwrap();
        assert_eq!(h, Heart { path: "/st/sched".into(), every: SignedDuration::from_secs(10) });
        let h = from_env(None, Some(cfg), Some("sched"), no_dir).unwrap();
        assert_eq!(h.path, PathBuf::from("/st"));
    }
}
