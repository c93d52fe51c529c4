//! Messages: the requests dropped into the messages directory, and the
//! names they are written under.
//!
//! Depends on `serde_json` and the JSON style module only; no I/O here.

use crate::json::to_python_json;
use crate::name::ProgramName;
use serde_json::{json, Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// One request to the supervisor.
///
/// ```
/// use colony_ctl::{Message, ProgramName};
/// let m = Message::parse(br#"{"type": "RESTART", "name": "web"}"#).unwrap();
/// assert_eq!(m, Message::Restart(ProgramName::new("web").unwrap()));
/// assert_eq!(m.to_bytes(), br#"{"type": "RESTART", "name": "web"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `{"type": "RESTART", "name": N}`: stop the program and start it again.
    Restart(ProgramName),
    /// `{"type": "RESTART-ALL"}`: restart every configured program.
    RestartAll,
    /// `{"type": "RESTART-GROUP", "group": G}`: restart every program whose
    /// `group` list holds G.
    RestartGroup(String),
    /// `{"type": "STOP", "name": N}` (colony extension): stop the program
    /// and keep it stopped until START or RESTART (or colony restarts).
    Stop(ProgramName),
    /// `{"type": "START", "name": N}` (colony extension): start a program
    /// stopped by STOP, or waiting in backoff, now.
    Start(ProgramName),
    /// `{"type": "SIGNAL", "name": N, "signal": S}` (colony extension):
    /// send a signal (a name like `"HUP"` or a number) to the program's main
    /// process, e.g. to make it reload.
    Signal(ProgramName, i32),
}

/// Why a message file cannot be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError(pub String);

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MessageError {}

fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, MessageError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(MessageError(format!("\"{key}\" must be a string"))),
        None => Err(MessageError(format!("\"{key}\" is missing"))),
    }
}

impl Message {
    /// Parses the bytes of a message file.
    pub fn parse(bytes: &[u8]) -> Result<Message, MessageError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| MessageError(format!("invalid JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(MessageError("expected a JSON object".into()));
        };
        let name = || {
            let name = field(&obj, "name")?;
            ProgramName::new(name).map_err(|e| MessageError(format!("invalid program name {name:?}: {e}")))
        };
        match field(&obj, "type")? {
            "RESTART" => name().map(Message::Restart),
            "RESTART-ALL" => Ok(Message::RestartAll),
            "RESTART-GROUP" => Ok(Message::RestartGroup(field(&obj, "group")?.to_string())),
            "STOP" => name().map(Message::Stop),
            "START" => name().map(Message::Start),
            "SIGNAL" => {
                let name = name()?;
                let sig = obj.get("signal").ok_or_else(|| MessageError("\"signal\" is missing".into()))?;
                let sig = crate::spec::parse_signal(sig)
                    .ok_or_else(|| MessageError(format!("\"signal\": not a signal name or number: {sig}")))?;
                Ok(Message::Signal(name, sig))
            }
            other => Err(MessageError(format!("unknown message type {other:?}"))),
        }
    }

    /// The JSON value, with keys in ncolony's order.
    pub fn to_value(&self) -> Value {
        match self {
            Message::Restart(name) => json!({"type": "RESTART", "name": name.as_str()}),
            Message::RestartAll => json!({"type": "RESTART-ALL"}),
            Message::RestartGroup(g) => json!({"type": "RESTART-GROUP", "group": g}),
            Message::Stop(name) => json!({"type": "STOP", "name": name.as_str()}),
            Message::Start(name) => json!({"type": "START", "name": name.as_str()}),
            Message::Signal(name, sig) => {
                let sig = match crate::spec::signal_name(*sig) {
                    Some(n) => Value::from(n),
                    None => Value::from(*sig),
                };
                json!({"type": "SIGNAL", "name": name.as_str(), "signal": sig})
            }
        }
    }

    /// The file's bytes, formatted as ncolony writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        to_python_json(&self.to_value())
    }
}

static LAST_STAMP: AtomicU64 = AtomicU64::new(0);
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A new message file name: nanoseconds since the epoch (20 digits), the
/// writer's pid (10 digits) and a per-process sequence number (6 digits),
/// joined by dots. Names sort in creation order: within one process the
/// stamp strictly increases, and across processes it follows the clock.
pub fn new_message_name() -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    message_name(now, std::process::id())
}

/// The name for a message created at `now_nanos` by process `pid`: the
/// deterministic half of [`new_message_name`].
pub fn message_name(now_nanos: u64, pid: u32) -> String {
    let mut prev = LAST_STAMP.load(Ordering::Relaxed);
    let stamp = loop {
        let next = now_nanos.max(prev + 1);
        match LAST_STAMP.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(p) => prev = p,
        }
    };
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) % 1_000_000;
    format!("{stamp:020}.{pid:010}.{seq:06}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_bad_messages_with_a_reason() {
        let err = |b: &str| Message::parse(b.as_bytes()).unwrap_err().0;
        assert!(err("nope").starts_with("invalid JSON"));
        assert_eq!(err("[]"), "expected a JSON object");
        assert_eq!(err("{}"), "\"type\" is missing");
        assert_eq!(err(r#"{"type": "BOOM"}"#), "unknown message type \"BOOM\"");
        assert_eq!(err(r#"{"type": "RESTART"}"#), "\"name\" is missing");
        assert_eq!(err(r#"{"type": "RESTART", "name": 3}"#), "\"name\" must be a string");
        assert!(err(r#"{"type": "RESTART", "name": "../x"}"#).starts_with("invalid program name"));
        assert_eq!(err(r#"{"type": "RESTART-GROUP"}"#), "\"group\" is missing");
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            "[a-zA-Z0-9_é-][a-zA-Z0-9_.é-]{0,10}"
                .prop_filter_map("valid", |s| ProgramName::new(s).ok())
                .prop_map(Message::Restart),
            Just(Message::RestartAll),
            "\\PC{0,10}".prop_map(Message::RestartGroup),
            Just(Message::Stop(ProgramName::new("web").unwrap())),
            Just(Message::Start(ProgramName::new("web").unwrap())),
            (1i32..=64).prop_map(|s| Message::Signal(ProgramName::new("web").unwrap(), s)),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(m in arb_message()) {
            prop_assert_eq!(Message::parse(&m.to_bytes()).unwrap(), m);
        }

        #[test]
        fn names_sort_in_creation_order(times in prop::collection::vec(0u64..=u64::MAX / 2, 1..50), pids in prop::collection::vec(1u32..4_194_304, 50)) {
            // Whatever the clock does (even going backwards), each new name
            // sorts after the previous one.
            let names: Vec<String> = times.iter().zip(&pids).map(|(&t, &p)| message_name(t, p)).collect();
            for pair in names.windows(2) {
                prop_assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
            }
        }
    }
}
