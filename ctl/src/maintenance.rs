//! The maintenance spool of `colony maintenance`: the request file format
//! (JSON), the estimate grammar of Flying Circus's fc.maintenance, and the
//! spool operations that the ctl, the `manage` job and the maintenance job
//! share (add with de-duplication, list, resolve an id prefix, save,
//! archive, delete, the lock, the "in maintenance" marker, the trigger).
//!
//! Layout of a spool directory `SPOOL`:
//!
//! ```text
//! SPOOL/requests/ID/request.json   a queued request
//! SPOOL/requests/ID/delete         asks the running job to delete it
//! SPOOL/archive/ID/request.json    a finished (success, error, deleted) one
//! SPOOL/.lock                      flock(2) of the running job; its pid inside
//! SPOOL/in_maintenance             the marker: the time maintenance began
//! SPOOL/run                        the trigger: "tick now"
//! ```
//!
//! Every file goes through [`crate::write_atomic`]; a new request directory is
//! filled under a dot-name and renamed into place, so the job never sees
//! half a request. Times are Unix seconds (as in the status directory).
//!
//! Depends on serde and serde_json; the spool operations ([`Spool`]) also on
//! the files module. Plain file I/O only.

mod spool;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fs;
use std::io::Read;

pub use spool::{Added, Deleted, Spool, SpoolError, SpoolLock};

/// The default spool directory.
pub const DEFAULT_SPOOL: &str = "/var/spool/colony/maintenance";
/// The request file inside a request directory.
pub const REQUEST_FILE: &str = "request.json";
/// The file that asks the job to delete a request.
pub const DELETE_FILE: &str = "delete";
/// The marker file: present while the machine is in maintenance.
pub const MARKER_FILE: &str = "in_maintenance";
/// The trigger file: the job ticks as soon as it appears.
pub const TRIGGER_FILE: &str = "run";
/// The lock file.
pub const LOCK_FILE: &str = ".lock";
/// How many characters of an id listings show.
pub const SHORT_ID: usize = 7;
/// The output kept per attempt (its tail), in bytes.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// A request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Queued; `next_due` is its slot once scheduled.
    Pending,
    /// Its slot has come: runs at the next maintenance session.
    Due,
    /// Running (or, for restart and reboot, waiting for completion).
    Running,
    /// Done (archived).
    Success,
    /// Failed for good (archived).
    Error,
    /// Deleted by hand (archived).
    Deleted,
    /// Moved back: rescheduled at the next tick.
    Postpone,
    /// A state this version does not know (treated as pending).
    #[serde(other)]
    Unknown,
}

impl RequestState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Due => "due",
            RequestState::Running => "running",
            RequestState::Success => "success",
            RequestState::Error => "error",
            RequestState::Deleted => "deleted",
            RequestState::Postpone => "postpone",
            RequestState::Unknown => "unknown",
        }
    }

    /// fc.maintenance's one-character code for listings.
    pub fn short(self) -> char {
        match self {
            RequestState::Pending => '-',
            RequestState::Due => '*',
            RequestState::Running => '=',
            RequestState::Success => 's',
            RequestState::Error => 'e',
            RequestState::Deleted => 'd',
            RequestState::Postpone => 'p',
            RequestState::Unknown => '?',
        }
    }

    /// Whether the request is finished and belongs in the archive.
    pub fn is_final(self) -> bool {
        matches!(self, RequestState::Success | RequestState::Error | RequestState::Deleted)
    }
}

/// What a request does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Activity {
    /// A script, run with the request directory as working directory
    /// (`#!/bin/sh` is added when it has no `#!` line).
    Script {
        /// The script's text.
        script: String,
    },
    /// A reboot with the job's reboot command; complete once the machine
    /// has booted again.
    Reboot {
        /// The boot id when the reboot command ran (set by the job).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        boot_id: Option<String>,
    },
    /// RESTART messages for colony programs; complete once each has
    /// started again.
    Restart {
        /// The programs.
        programs: Vec<String>,
        /// When the messages were written (set by the job; real time).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<f64>,
    },
}

impl Activity {
    /// "script", "reboot" or "restart".
    pub fn kind(&self) -> &'static str {
        match self {
            Activity::Script { .. } => "script",
            Activity::Reboot { .. } => "reboot",
            Activity::Restart { .. } => "restart",
        }
    }
}

/// One run of a request's activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started (Unix seconds).
    pub started: f64,
    /// When it ended.
    #[serde(default)]
    pub finished: Option<f64>,
    /// The exit code (0 success, 69 postpone, 75 retry, else error).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Standard output and error, merged; only the last [`MAX_OUTPUT`]
    /// bytes.
    #[serde(default)]
    pub output: String,
    /// What the job noted about it (timeout, interruption, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A maintenance request: the file `requests/ID/request.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// 22 random characters (base 62).
    pub id: String,
    /// What it does.
    pub activity: Activity,
    /// What it is for; requests with the same non-empty comment are not
    /// queued twice.
    #[serde(default)]
    pub comment: String,
    /// How long it takes, in seconds.
    pub estimate: f64,
    /// Its state.
    pub state: RequestState,
    /// Its slot (Unix seconds), once scheduled.
    #[serde(default)]
    pub next_due: Option<f64>,
    /// After a postponement: no slot before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<f64>,
    /// When it was filed.
    pub added_at: f64,
    /// When the job last changed it.
    #[serde(default)]
    pub updated_at: Option<f64>,
    /// Every run, oldest first.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Keys this version does not know, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Request {
    /// A new pending request.
    pub fn new(activity: Activity, comment: impl Into<String>, estimate: f64, now: f64) -> Request {
        Request {
            id: new_id(),
            activity,
            comment: comment.into(),
            estimate,
            state: RequestState::Pending,
            next_due: None,
            not_before: None,
            added_at: now,
            updated_at: None,
            attempts: Vec::new(),
            extra: Map::new(),
        }
    }

    /// The id's first [`SHORT_ID`] characters.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(SHORT_ID)]
    }

    /// The file's bytes (pretty JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses a request file.
    pub fn parse(bytes: &[u8]) -> Result<Request, String> {
        let r: Request = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if r.id.is_empty() || r.id.starts_with('.') || r.id.contains('/') {
            return Err(format!("invalid id {:?}", r.id));
        }
        if !r.estimate.is_finite() || r.estimate < 0.0 {
            return Err(format!("invalid estimate {}", r.estimate));
        }
        Ok(r)
    }
}

/// A new id: 22 characters of base 62 from `/dev/urandom`.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(22);
    let mut urandom = fs::File::open("/dev/urandom").ok();
    let mut fallback =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
            ^ (u64::from(std::process::id()) << 40);
    while out.len() < 22 {
        let mut b = [0u8; 32];
        if urandom.as_mut().is_none_or(|f| f.read_exact(&mut b).is_err()) {
            // No /dev/urandom: a xorshift of the clock and the pid.
            for x in b.iter_mut() {
                fallback ^= fallback << 13;
                fallback ^= fallback >> 7;
                fallback ^= fallback << 17;
                *x = fallback as u8;
            }
        }
        // 248 = 4 × 62: no modulo bias.
        for x in b.into_iter().filter(|&x| x < 248) {
            if out.len() < 22 {
                out.push(ALPHABET[usize::from(x % 62)] as char);
            }
        }
    }
    out
}

/// Parses an estimate as fc.maintenance does: a number of seconds
/// (`"0.7"`, `"300"`), or space-separated parts with `h`, `m`, `s` or no
/// unit, summed (`"5m"`, `"6h 4s"`). `"12h30m"` and `"2d"` are invalid.
pub fn parse_estimate(spec: &str) -> Result<f64, String> {
    let bad = || format!("invalid estimate {spec:?} (seconds, or parts like \"1h 30m\" with h, m or s)");
    let t = spec.trim();
    let number = |s: &str| -> Option<f64> {
        let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && s.bytes().any(|b| b != b'.');
        ok.then(|| s.parse::<f64>().ok()).flatten()
    };
    let total = if let Some(v) = number(t) {
        v
    } else {
        let mut sum = 0.0;
        for part in t.split_whitespace() {
            let (num, scale) = match part.as_bytes().last() {
                Some(b'h') => (&part[..part.len() - 1], 3600.0),
                Some(b'm') => (&part[..part.len() - 1], 60.0),
                Some(b's') => (&part[..part.len() - 1], 1.0),
                _ => (part, 1.0),
            };
            sum += number(num).ok_or_else(bad)? * scale;
        }
        if t.is_empty() {
            return Err(bad());
        }
        sum
    };
    if !total.is_finite() || total > 10.0 * 365.0 * 86_400.0 {
        return Err(bad());
    }
    Ok(total)
}

/// Formats an estimate as fc.maintenance does: `0s`, `1s` for less than a
/// second, otherwise `1h 37m 40s` without zero parts (seconds truncated).
pub fn format_estimate(secs: f64) -> String {
    if secs <= 0.0 || !secs.is_finite() {
        return "0s".to_string();
    }
    if secs < 1.0 {
        return "1s".to_string();
    }
    let s = secs as u64;
    let parts = [(s / 3600, "h"), (s % 3600 / 60, "m"), (s % 60, "s")];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, u)| format!("{n}{u}")).collect::<Vec<_>>().join(" ")
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC` (seconds truncated).
pub fn format_time(secs: f64) -> String {
    let s = secs.floor() as i64;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    let (y, m, d) = crate::time::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub use crate::time::unix_now;

/// Keeps the last `max` bytes of `output` (on a character boundary),
/// saying how much was dropped.
pub fn bound_output(output: &[u8], max: usize) -> String {
    if output.len() <= max {
        return String::from_utf8_lossy(output).into_owned();
    }
    let mut start = output.len() - max;
    while start < output.len() && (output[start] & 0xC0) == 0x80 {
        start += 1;
    }
    format!("[... {start} bytes dropped ...]\n{}", String::from_utf8_lossy(&output[start..]))
}

/// fc.maintenance's order: scheduled requests first, by slot; then by
/// filing time; then by id.
pub fn order(a: &Request, b: &Request) -> std::cmp::Ordering {
    let due = |r: &Request| r.next_due.map_or((1, 0.0), |d| (0, d));
    let (ka, kb) = (due(a), due(b));
    ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(a.added_at.total_cmp(&b.added_at)).then_with(|| a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn script(comment: &str, added: f64) -> Request {
        Request::new(Activity::Script { script: "true".into() }, comment, 60.0, added)
    }

    #[test]
    fn fc_estimates() {
        for (spec, want) in [
            ("0.7", 0.7),
            ("3s", 3.0),
            ("5m", 300.0),
            ("3h", 10_800.0),
            ("6h 4s", 21_604.0),
            ("4m 2s", 242.0),
            (" 300 ", 300.0),
            ("1 2", 3.0),
        ] {
            assert_eq!(parse_estimate(spec), Ok(want), "{spec}");
        }
        for bad in ["foo", "12h30m", "2d", "", "-5", "1e3", "nan", "inf", "h", "5 x"] {
            assert!(parse_estimate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fc_estimate_formatting() {
        assert_eq!(format_estimate(0.0), "0s");
        assert_eq!(format_estimate(0.4), "1s");
        assert_eq!(format_estimate(3302.0), "55m 2s");
        assert_eq!(format_estimate(5860.0), "1h 37m 40s");
        assert_eq!(format_estimate(7200.0), "2h");
        assert_eq!(format_estimate(90.9), "1m 30s");
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_461_150_000.9), "2016-04-20 11:00:00 UTC");
    }

    #[test]
    fn ids_are_22_base62() {
        let a = new_id();
        assert_eq!(a.len(), 22);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn output_keeps_the_tail() {
        assert_eq!(bound_output(b"abc", 10), "abc");
        let s = bound_output("xxxxé".as_bytes(), 2);
        assert_eq!(s, "[... 4 bytes dropped ...]\né");
        let s = bound_output(b"0123456789", 3);
        assert!(s.ends_with("\n789"), "{s}");
    }

    #[test]
    fn unknown_states_and_keys_survive() {
        let text = br#"{"id": "abc", "activity": {"type": "script", "script": "true"}, "estimate": 1,
            "state": "tempfail", "added_at": 5, "future": [1]}"#;
        let r = Request::parse(text).unwrap();
        assert_eq!(r.state, RequestState::Unknown);
        assert_eq!(r.extra["future"], serde_json::json!([1]));
        let again = Request::parse(&r.to_bytes()).unwrap();
        assert_eq!(again.extra, r.extra);
        assert!(Request::parse(
            br#"{"id": "../x", "activity": {"type": "reboot"}, "estimate": 1, "state": "due", "added_at": 1}"#
        )
        .is_err());
    }

    proptest! {
        #[test]
        fn estimates_round_trip_through_their_format(secs in 1u64..1_000_000) {
            let text = format_estimate(secs as f64);
            prop_assert_eq!(parse_estimate(&text), Ok(secs as f64));
        }

        #[test]
        fn requests_round_trip(comment in ".*", est in 0u32..1_000_000, due in proptest::option::of(0u64..4_000_000_000)) {
            // serde_json reads floats to within one ulp: whole numbers here.
            let mut r = script(&comment, 5.0);
            r.estimate = f64::from(est);
            r.next_due = due.map(|d| d as f64);
            r.attempts.push(Attempt { started: 1.0, finished: Some(2.0), exit_code: Some(75), output: comment.clone(), note: None });
            prop_assert_eq!(Request::parse(&r.to_bytes()).unwrap(), r);
        }
    }
}
