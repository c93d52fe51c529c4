//! The `--state` file: what the scheduler remembers across restarts (the
//! emptyhammock bot's `maintenance-status.json`, one job per file). Pure:
//! parsing and rendering only; the caller reads and writes the file
//! (through `colony_ctl::write_atomic`).
//!
//! The file is one JSON object; times are Unix seconds (a number, with a
//! fraction when there is one):
//!
//! ```json
//! {"created": 1790000000, "last_success": 1790003605.25, "last_started": 1790003600,
//!  "last_ended": 1790003605.25, "last_result": "exit code 0"}
//! ```
//!
//! `last_success` is when the last successful run *ended* (as in the
//! emptyhammock bot). Every key is optional; unknown keys are ignored.
//!
//! Depends on jiff and serde_json.

use jiff::Timestamp;
use serde_json::{Map, Number, Value};

/// The remembered state of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// When the file was first written.
    pub created: Option<Timestamp>,
    /// When the last successful run ended.
    pub last_success: Option<Timestamp>,
    /// When the last run started.
    pub last_started: Option<Timestamp>,
    /// When the last run ended.
    pub last_ended: Option<Timestamp>,
    /// How the last run ended, in words ("exit code 0", "signal SIGKILL",
    /// "cannot start: …").
    pub last_result: Option<String>,
}

const KEYS: [&str; 4] = ["created", "last_success", "last_started", "last_ended"];

impl State {
    /// Parses a state file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<State, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err("not a JSON object".to_string());
        };
        let mut times = [None; 4];
        for (slot, key) in times.iter_mut().zip(KEYS) {
            *slot = match map.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(
                    n.as_f64()
                        .and_then(seconds_to_timestamp)
                        .ok_or_else(|| format!("{key:?}: {n} is not a time in Unix seconds"))?,
                ),
                Some(other) => return Err(format!("{key:?}: expected Unix seconds, found {other}")),
            };
        }
        let last_result = match map.get("last_result") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(format!("\"last_result\": expected a string, found {other}")),
        };
        let [created, last_success, last_started, last_ended] = times;
        Ok(State { created, last_success, last_started, last_ended, last_result })
    }

    /// The file's bytes: one JSON object and a newline.
    pub fn render(&self) -> Vec<u8> {
        let mut map = Map::new();
        let times = [self.created, self.last_success, self.last_started, self.last_ended];
        for (key, t) in KEYS.iter().zip(times) {
            if let Some(t) = t {
                map.insert(key.to_string(), Value::Number(timestamp_to_seconds(t)));
            }
        }
        if let Some(r) = &self.last_result {
            map.insert("last_result".to_string(), Value::String(r.clone()));
        }
        let mut out = serde_json::to_vec(&Value::Object(map)).expect("a JSON object always serialises");
        out.push(b'\n');
        out
    }
}

/// Unix seconds (with a fraction) to an instant, to the millisecond.
fn seconds_to_timestamp(secs: f64) -> Option<Timestamp> {
    if !secs.is_finite() {
        return None;
    }
    Timestamp::from_millisecond((secs * 1000.0).round() as i64).ok()
}

/// An instant as Unix seconds: an integer when whole, else a number with
/// millisecond precision.
fn timestamp_to_seconds(t: Timestamp) -> Number {
    let ms = t.as_millisecond();
    if ms % 1000 == 0 {
        Number::from(ms / 1000)
    } else {
        Number::from_f64(ms as f64 / 1000.0).unwrap_or_else(|| Number::from(ms / 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_renders() {
        let s = State::parse(br#"{"created": 1790000000, "last_success": 1790003605.25, "x": 1}"#).unwrap();
        assert_eq!(s.created, Some(Timestamp::from_second(1_790_000_000).unwrap()));
        assert_eq!(s.last_success, Some(Timestamp::from_millisecond(1_790_003_605_250).unwrap()));
        assert_eq!(s.last_result, None);
        assert_eq!(s.render(), b"{\"created\":1790000000,\"last_success\":1790003605.25}\n");
        assert_eq!(State::parse(b"{}").unwrap(), State::default());
    }

    #[test]
    fn rejects_garbage() {
        assert!(State::parse(b"").unwrap_err().contains("not JSON"));
        assert!(State::parse(b"[]").unwrap_err().contains("object"));
        assert!(State::parse(br#"{"last_success": "yesterday"}"#).unwrap_err().contains("last_success"));
        assert!(State::parse(br#"{"last_result": 3}"#).unwrap_err().contains("last_result"));
        assert!(State::parse(br#"{"created": 1e300}"#).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(
            ms in proptest::collection::vec(proptest::option::of(-1_000_000_000_000i64..10_000_000_000_000), 4),
            result in proptest::option::of("[ -~]{0,20}"),
        ) {
            let t = |i: usize| ms[i].map(|m| Timestamp::from_millisecond(m).unwrap());
            let s = State { created: t(0), last_success: t(1), last_started: t(2), last_ended: t(3), last_result: result };
            prop_assert_eq!(State::parse(&s.render()).unwrap(), s);
        }
    }
}
