//! The steps of `colony manage`: what each one runs, its spread gate and
//! whether it may be deferred to a maintenance window; read from a JSON
//! steps file or `--step NAME=CMD` flags. Pure parsing: the file's bytes
//! come in, steps or one line of error go out.
//!
//! ```json
//! {"steps": [
//!   {"name": "update-enc", "command": ["/usr/local/bin/update-enc", "--quiet"]},
//!   {"name": "switch", "shell": "nixos-rebuild switch"},
//!   {"name": "channel", "shell": "update-channel",
//!    "spread": {"every": "2h", "stamp": "/var/lib/colony/channel.stamp"},
//!    "maintenance": {"estimate": "10m", "comment": "System update"}}
//! ]}
//! ```
//!
//! Depends on serde_json and colony-ctl's estimate grammar.

use crate::jobs::scheduler::settings::duration;
use colony_ctl::maintenance::parse_estimate;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// A spread gate (fc.util.spread): at most once per slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// N, whole seconds.
    pub slot: i64,
    /// The stamp file.
    pub stamp: PathBuf,
}

/// How a step is filed as a maintenance request.
#[derive(Debug, Clone, PartialEq)]
pub struct Defer {
    /// Its estimate, seconds.
    pub estimate: f64,
    /// Its comment (requests with the same comment are queued once).
    pub comment: String,
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its name.
    pub name: String,
    /// argv.
    pub argv: Vec<String>,
    /// The script a maintenance request would run.
    pub script: String,
    /// Spread gate.
    pub gate: Option<Gate>,
    /// Filed as a request in with-maintenance mode.
    pub defer: Option<Defer>,
}

fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid step name {name:?} (letters, digits, '-', '_', '.')"))
    }
}

/// Quotes argv for `/bin/sh`.
pub fn shell_quote(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A step from `--step NAME=CMD` (a shell command, no gate).
pub fn parse_flag(text: &str) -> Result<Step, String> {
    let Some((name, cmd)) = text.split_once('=') else {
        return Err(format!("--step {text:?}: expected NAME=COMMAND"));
    };
    valid_name(name).map_err(|e| format!("--step {text:?}: {e}"))?;
    if cmd.trim().is_empty() {
        return Err(format!("--step {text:?}: the command is empty"));
    }
    Ok(shell_step(name, cmd))
}

fn shell_step(name: &str, cmd: &str) -> Step {
    Step {
        name: name.to_string(),
        argv: vec!["/bin/sh".into(), "-c".into(), cmd.to_string()],
        script: cmd.to_string(),
        gate: None,
        defer: None,
    }
}

/// Parses a steps file; relative stamp paths are relative to `base` (the
/// file's directory).
pub fn parse_file(bytes: &[u8], base: &Path) -> Result<Vec<Step>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("expected a JSON object with a \"steps\" list")?;
    if let Some(k) = obj.keys().find(|k| *k != "steps") {
        return Err(format!("unknown key {k:?}"));
    }
    let list = obj.get("steps").and_then(Value::as_array).ok_or("\"steps\" must be a list")?;
    let mut steps: Vec<Step> = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let label = match item.get("name").and_then(Value::as_str) {
            Some(n) => format!("step {} ({n:?})", i + 1),
            None => format!("step {}", i + 1),
        };
        let step = parse_step(item, base).map_err(|e| format!("{label}: {e}"))?;
        if steps.iter().any(|s| s.name == step.name) {
            return Err(format!("{label}: the name is used twice"));
        }
        steps.push(step);
    }
    Ok(steps)
}

fn parse_step(item: &Value, base: &Path) -> Result<Step, String> {
    let obj = item.as_object().ok_or("expected an object")?;
    const KEYS: [&str; 5] = ["name", "command", "shell", "spread", "maintenance"];
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key {k:?} (expected one of {})", KEYS.join(", ")));
    }
    let name = obj.get("name").and_then(Value::as_str).ok_or("\"name\" (a string) is required")?;
    valid_name(name)?;
    let mut step = match (obj.get("command"), obj.get("shell")) {
        (Some(c), None) => {
            let argv: Option<Vec<String>> =
                c.as_array().map(|a| a.iter().map(|w| w.as_str().map(str::to_owned)).collect()).unwrap_or(None);
            let argv = argv.filter(|a| !a.is_empty() && !a[0].is_empty());
            let argv = argv.ok_or("\"command\" must be a non-empty list of strings")?;
            Step { name: name.into(), script: shell_quote(&argv), argv, gate: None, defer: None }
        }
        (None, Some(s)) => {
            let s = s.as_str().filter(|s| !s.trim().is_empty()).ok_or("\"shell\" must be a non-empty string")?;
            shell_step(name, s)
        }
        (Some(_), Some(_)) => return Err("give either \"command\" or \"shell\", not both".into()),
        (None, None) => return Err("\"command\" (a list) or \"shell\" (a string) is required".into()),
    };
    if let Some(g) = obj.get("spread") {
        step.gate = Some(parse_gate(g, base)?);
    }
    if let Some(m) = obj.get("maintenance") {
        step.defer = Some(parse_defer(m, name)?);
    }
    Ok(step)
}

fn keys_only(obj: &Map<String, Value>, what: &str, keys: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!("\"{what}\": unknown key {k:?} (expected {})", keys.join(", "))),
        None => Ok(()),
    }
}

fn parse_gate(v: &Value, base: &Path) -> Result<Gate, String> {
    let obj = v.as_object().ok_or("\"spread\" must be an object with \"every\" and \"stamp\"")?;
    keys_only(obj, "spread", &["every", "stamp"])?;
    let every = match obj.get("every") {
        Some(Value::String(s)) => duration("\"spread\": \"every\"", s)?,
        Some(Value::Number(n)) => duration("\"spread\": \"every\"", &n.to_string())?,
        _ => return Err("\"spread\": \"every\" (a duration) is required".into()),
    };
    if every.subsec_nanos() != 0 || every.as_secs() < 1 {
        return Err("\"spread\": \"every\" must be a whole number of seconds".into());
    }
    let stamp = obj.get("stamp").and_then(Value::as_str).filter(|s| !s.is_empty());
    let stamp = stamp.ok_or("\"spread\": \"stamp\" (a file) is required")?;
    Ok(Gate { slot: every.as_secs(), stamp: base.join(stamp) })
}

fn parse_defer(v: &Value, name: &str) -> Result<Defer, String> {
    let obj = v.as_object().ok_or("\"maintenance\" must be an object")?;
    keys_only(obj, "maintenance", &["estimate", "comment"])?;
    let estimate = match obj.get("estimate") {
        None => 600.0,
        Some(Value::String(s)) => parse_estimate(s).map_err(|e| format!("\"maintenance\": {e}"))?,
        Some(Value::Number(n)) => parse_estimate(&n.to_string()).map_err(|e| format!("\"maintenance\": {e}"))?,
        Some(_) => return Err("\"maintenance\": \"estimate\" must be a string or a number".into()),
    };
    let comment = match obj.get("comment") {
        None => format!("colony manage: {name}"),
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(_) => return Err("\"maintenance\": \"comment\" must be a non-empty string".into()),
    };
    Ok(Defer { estimate, comment })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file() {
        let text = br#"{"steps": [
            {"name": "enc", "command": ["/bin/echo", "it's"]},
            {"name": "switch", "shell": "echo switch"},
            {"name": "channel", "shell": "update", "spread": {"every": "2h", "stamp": "channel.stamp"},
             "maintenance": {"estimate": "6h 4s"}},
            {"name": "x", "shell": "y", "spread": {"every": 60, "stamp": "/abs"}, "maintenance": {"comment": "C", "estimate": 30}}
        ]}"#;
        let steps = parse_file(text, Path::new("/etc/colony")).unwrap();
        assert_eq!(steps.len(), 4);
        assert_eq!(steps[0].argv, ["/bin/echo", "it's"]);
        assert_eq!(steps[0].script, r"/bin/echo 'it'\''s'");
        assert_eq!(steps[1].argv, ["/bin/sh", "-c", "echo switch"]);
        assert_eq!(steps[2].gate, Some(Gate { slot: 7200, stamp: "/etc/colony/channel.stamp".into() }));
        assert_eq!(steps[2].defer, Some(Defer { estimate: 21_604.0, comment: "colony manage: channel".into() }));
        assert_eq!(steps[3].gate.as_ref().unwrap().stamp, PathBuf::from("/abs"));
        assert_eq!(steps[3].defer, Some(Defer { estimate: 30.0, comment: "C".into() }));
    }

    #[test]
    fn problems_are_one_line_naming_the_step() {
        for (text, want) in [
            (&b"{"[..], "invalid JSON"),
            (b"[]", "JSON object"),
            (br#"{"steps": {}}"#, "must be a list"),
            (br#"{"steps": [], "x": 1}"#, "unknown key \"x\""),
            (br#"{"steps": [{"shell": "x"}]}"#, "step 1: \"name\""),
            (br#"{"steps": [{"name": "a b", "shell": "x"}]}"#, "invalid step name"),
            (br#"{"steps": [{"name": "a"}]}"#, "step 1 (\"a\"): \"command\" (a list) or \"shell\""),
            (br#"{"steps": [{"name": "a", "shell": "x", "command": ["y"]}]}"#, "not both"),
            (br#"{"steps": [{"name": "a", "command": []}]}"#, "non-empty list"),
            (br#"{"steps": [{"name": "a", "shell": " "}]}"#, "non-empty string"),
            (br#"{"steps": [{"name": "a", "shell": "x", "when": 1}]}"#, "unknown key \"when\""),
            (br#"{"steps": [{"name": "a", "shell": "x", "spread": {"every": "1.5"}}]}"#, "whole number"),
            (br#"{"steps": [{"name": "a", "shell": "x", "spread": {"every": "1h"}}]}"#, "\"stamp\""),
            (br#"{"steps": [{"name": "a", "shell": "x", "spread": {"every": "x", "stamp": "s"}}]}"#, "every"),
            (br#"{"steps": [{"name": "a", "shell": "x", "maintenance": {"estimate": "2d"}}]}"#, "invalid estimate"),
            (br#"{"steps": [{"name": "a", "shell": "x", "maintenance": {"at": 1}}]}"#, "unknown key \"at\""),
            (
                br#"{"steps": [{"name": "a", "shell": "x"}, {"name": "a", "shell": "y"}]}"#,
                "step 2 (\"a\"): the name is used twice",
            ),
        ] {
            let e = parse_file(text, Path::new("/")).unwrap_err();
            assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(text));
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_example_file() {
        let steps = parse_file(include_bytes!("../../../examples/maintenance/steps.json"), Path::new("/")).unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["inventory", "configure", "os-updates"]);
        assert!(steps[2].gate.is_some() && steps[2].defer.is_some());
    }

    #[test]
    fn flags() {
        let s = parse_flag("switch=nixos-rebuild switch --fast").unwrap();
        assert_eq!(s.name, "switch");
        assert_eq!(s.argv, ["/bin/sh", "-c", "nixos-rebuild switch --fast"]);
        assert_eq!(parse_flag("a=b=c").unwrap().script, "b=c");
        assert!(parse_flag("nocommand").unwrap_err().contains("NAME=COMMAND"));
        assert!(parse_flag("a=").unwrap_err().contains("empty"));
        assert!(parse_flag("=x").unwrap_err().contains("invalid step name"));
    }
}
