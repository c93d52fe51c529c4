//! Turns `colony maintenance` flags (and a `--windows` file) into
//! validated settings, in one place; a problem is one line, exit code 2
//! for flags and 65 for a file's content.
//!
//! Depends on jiff, colony-ctl's places and the windows module; reads the
//! `--windows` file.

use super::machine::Limits;
use super::session::Config;
use super::windows::Window;
use super::{MaintenanceArgs, EXIT_DATAERR};
use crate::jobs::scheduler::settings::{duration, timestamp};
use colony_ctl::Places;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::path::PathBuf;

use crate::jobs::usage;
pub use crate::jobs::Invalid;

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The spool.
    pub spool: PathBuf,
    /// What the tick needs.
    pub config: Config,
    /// Enter hooks.
    pub enter_hooks: Option<PathBuf>,
    /// Leave hooks.
    pub leave_hooks: Option<PathBuf>,
    /// Hook timeout.
    pub hook_timeout: SignedDuration,
    /// The reboot command (a shell command).
    pub reboot_command: String,
    /// The supervisor's directories, for restart requests.
    pub places: Option<Places>,
    /// The status directory.
    pub status: Option<PathBuf>,
    /// Tick at least this often.
    pub interval: SignedDuration,
    /// `--once`.
    pub once: bool,
    /// `--now`.
    pub now: Option<Timestamp>,
}

fn opt_duration(flag: &str, v: &Option<String>, default: SignedDuration) -> Result<SignedDuration, Invalid> {
    v.as_deref().map_or(Ok(default), |v| duration(flag, v).map_err(usage))
}

impl Settings {
    /// Validates `args`.
    pub fn from_args(args: &MaintenanceArgs) -> Result<Settings, Invalid> {
        let zone = match args.tz.as_deref() {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| usage(format!("--tz: unknown time zone {name:?}")))?,
        };
        let mut windows = Vec::new();
        for w in &args.windows {
            windows.push(Window::parse(w, zone.clone()).map_err(|e| usage(format!("--window: {e}")))?);
        }
        if let Some(path) = &args.windows_file {
            let bytes = std::fs::read(path).map_err(|e| usage(format!("--windows {}: {e}", path.display())))?;
            let parsed = parse_windows_file(&bytes, &zone)
                .map_err(|e| Invalid { code: EXIT_DATAERR, msg: format!("--windows {}: {e}", path.display()) })?;
            windows.extend(parsed);
        }
        let from = args.now.as_deref().and_then(|v| timestamp(v).ok()).unwrap_or_else(Timestamp::now);
        for w in &windows {
            if w.calendar.next_after(from).is_none() {
                return Err(usage(format!("window {:?} never opens", w.calendar.text())));
            }
        }
        let max_attempts = match args.max_attempts.as_deref() {
            None => 48,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| usage(format!("--max-attempts: {v:?} is not a positive whole number")))?,
        };
        let places = match (&args.config, &args.messages) {
            (Some(c), Some(m)) => Some(Places::new(
                std::path::absolute(c).unwrap_or_else(|_| c.clone()),
                std::path::absolute(m).unwrap_or_else(|_| m.clone()),
            )),
            (None, None) => None,
            _ => return Err(usage("--config and --messages go together (both are needed for restart requests)")),
        };
        let status = args
            .status
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .or_else(|| places.as_ref().map(Places::default_status_dir));
        if args.reboot_command.trim().is_empty() {
            return Err(usage("--reboot-command is empty"));
        }
        for (flag, dir) in [("--enter-hooks", &args.enter_hooks), ("--leave-hooks", &args.leave_hooks)] {
            if let Some(d) = dir {
                if !d.is_dir() {
                    return Err(usage(format!("{flag} {}: not a directory", d.display())));
                }
            }
        }
        let config = Config {
            windows,
            limits: Limits { max_attempts, ..Limits::default() },
            restart_timeout: opt_duration("--restart-timeout", &args.restart_timeout, SignedDuration::from_mins(5))?,
            reboot_timeout: opt_duration("--reboot-timeout", &args.reboot_timeout, SignedDuration::from_mins(15))?,
        };
        let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        Ok(Settings {
            spool: abs(&args.spool),
            config,
            enter_hooks: args.enter_hooks.as_ref().map(abs),
            leave_hooks: args.leave_hooks.as_ref().map(abs),
            hook_timeout: opt_duration("--hook-timeout", &args.hook_timeout, SignedDuration::from_mins(10))?,
            reboot_command: args.reboot_command.clone(),
            places,
            status,
            interval: opt_duration("--interval", &args.interval, SignedDuration::from_mins(10))?,
            once: args.once,
            now: args.now.as_deref().map(timestamp).transpose().map_err(usage)?,
        })
    }
}

/// A `--windows` file: `{"tz": "Europe/Berlin", "windows": ["0 2 * * *
/// +2h", ...]}`; `tz` is optional (then `--tz`, or UTC).
pub fn parse_windows_file(bytes: &[u8], zone: &TimeZone) -> Result<Vec<Window>, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("expected a JSON object with a \"windows\" list")?;
    if let Some(k) = obj.keys().find(|k| *k != "tz" && *k != "windows") {
        return Err(format!("unknown key {k:?} (expected \"tz\" and \"windows\")"));
    }
    let zone = match obj.get("tz") {
        None => zone.clone(),
        Some(serde_json::Value::String(name)) => {
            TimeZone::get(name).map_err(|_| format!("\"tz\": unknown time zone {name:?}"))?
        }
        Some(_) => return Err("\"tz\" must be a string".into()),
    };
    let list =
        obj.get("windows").and_then(|w| w.as_array()).ok_or("\"windows\" must be a list of \"CRON +D\" strings")?;
    list.iter()
        .map(|w| {
            let s = w.as_str().ok_or("\"windows\" must be a list of \"CRON +D\" strings")?;
            Window::parse(s, zone.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MaintenanceArgs,
    }

    fn settings(argv: &[&str]) -> Result<Settings, Invalid> {
        let cli =
            Cli::try_parse_from(std::iter::once("m").chain(argv.iter().copied())).map_err(|e| usage(e.to_string()))?;
        Settings::from_args(&cli.args)
    }

    #[test]
    fn defaults() {
        let s = settings(&["--spool", "/tmp/x"]).unwrap();
        assert_eq!(s.interval, SignedDuration::from_mins(10));
        assert_eq!(s.config.limits.max_attempts, 48);
        assert!(s.config.windows.is_empty());
        assert!(s.places.is_none());
        let s = settings(&["--spool", "/x", "--config", "/c", "--messages", "/m"]).unwrap();
        assert_eq!(s.status, Some(PathBuf::from("/m/.status")));
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for (argv, want) in [
            (&["--window", "0 2 * * *"][..], "CRON +DURATION"),
            (&["--window", "0 2 * * * +2x"], "length"),
            (&["--window", "0 0 30 2 * +1h"], "never opens"),
            (&["--tz", "Nowhere/Land"], "unknown time zone"),
            (&["--interval", "0"], "--interval"),
            (&["--max-attempts", "0"], "--max-attempts"),
            (&["--config", "/c"], "go together"),
            (&["--enter-hooks", "/nonexistent/hooks"], "not a directory"),
            (&["--now", "noon"], "--now"),
            (&["--windows", "/nonexistent/w.json"], "--windows"),
        ] {
            let e = settings(argv).unwrap_err();
            assert_eq!(e.code, 2, "{argv:?}: {}", e.msg);
            assert!(e.msg.contains(want), "{argv:?}: {}", e.msg);
        }
    }

    #[test]
    fn windows_files() {
        let berlin = parse_windows_file(
            br#"{"tz": "Europe/Berlin", "windows": ["0 2 * * * +2h", "@weekly +1h"]}"#,
            &TimeZone::UTC,
        )
        .unwrap();
        assert_eq!(berlin.len(), 2);
        assert_eq!(berlin[0].calendar.zone().iana_name(), Some("Europe/Berlin"));
        for (text, want) in [
            (&b"nope"[..], "invalid JSON"),
            (b"[]", "JSON object"),
            (br#"{"windows": "0 2 * * * +2h"}"#, "list"),
            (br#"{"windows": [], "zone": "UTC"}"#, "unknown key"),
            (br#"{"tz": "Mars/Base", "windows": []}"#, "unknown time zone"),
            (br#"{"windows": ["0 2 * * *"]}"#, "CRON +DURATION"),
        ] {
            let e = parse_windows_file(text, &TimeZone::UTC).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        let example = parse_windows_file(include_bytes!("../../../examples/maintenance/windows.json"), &TimeZone::UTC);
        assert_eq!(example.unwrap().len(), 2);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.json");
        std::fs::write(&f, br#"{"windows": ["bad"]}"#).unwrap();
        let e = settings(&["--windows", f.to_str().unwrap()]).unwrap_err();
        assert_eq!(e.code, 65);
    }
}
