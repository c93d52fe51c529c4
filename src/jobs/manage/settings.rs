//! Turns `colony manage` flags (and the steps file) into validated
//! settings, in one place; a problem is one line, exit code 2 for flags
//! and 65 for the steps file's content.
//!
//! Depends on jiff and the steps module; reads the steps file.

use super::steps::{self, Step};
use super::{ManageArgs, EXIT_DATAERR};
use crate::jobs::scheduler::settings::{duration, duration_or_zero, timestamp};
use jiff::{SignedDuration, Timestamp};
use std::path::{Path, PathBuf};

use crate::jobs::usage;
pub use crate::jobs::Invalid;

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The lock file.
    pub lock: PathBuf,
    /// A run's time limit.
    pub timeout: SignedDuration,
    /// SIGKILL after SIGTERM.
    pub grace: SignedDuration,
    /// Between runs.
    pub interval: SignedDuration,
    /// With-maintenance mode's spool.
    pub spool: Option<PathBuf>,
    /// `--once`.
    pub once: bool,
    /// `--now`.
    pub now: Option<Timestamp>,
}

fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Settings {
    /// Validates `args`.
    pub fn from_args(args: &ManageArgs) -> Result<Settings, Invalid> {
        let mut all: Vec<Step> = Vec::new();
        if let Some(path) = &args.steps {
            let bytes = std::fs::read(path).map_err(|e| usage(format!("--steps {}: {e}", path.display())))?;
            let base = abs(path.parent().unwrap_or(Path::new(".")));
            all = steps::parse_file(&bytes, &base)
                .map_err(|e| Invalid { code: EXIT_DATAERR, msg: format!("--steps {}: {e}", path.display()) })?;
        }
        for flag in &args.step {
            let step = steps::parse_flag(flag).map_err(usage)?;
            if all.iter().any(|s| s.name == step.name) {
                return Err(usage(format!("--step {flag:?}: a step named {:?} exists already", step.name)));
            }
            all.push(step);
        }
        if all.is_empty() {
            return Err(usage("no steps: give --steps FILE or --step NAME=CMD"));
        }
        let grace = match args.grace.as_deref() {
            Some(v) => duration_or_zero("--grace", v).map_err(usage)?,
            None => SignedDuration::from_secs(10),
        };
        let opt = |flag: &str, v: &Option<String>, d: SignedDuration| {
            v.as_deref().map_or(Ok(d), |v| duration(flag, v).map_err(usage))
        };
        Ok(Settings {
            steps: all,
            lock: abs(&args.lock),
            timeout: opt("--timeout", &args.timeout, SignedDuration::from_hours(1))?,
            grace,
            interval: opt("--interval", &args.interval, SignedDuration::from_mins(10))?,
            spool: args.with_maintenance.as_deref().map(abs),
            once: args.once,
            now: args.now.as_deref().map(timestamp).transpose().map_err(usage)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ManageArgs,
    }

    fn settings(argv: &[&str]) -> Result<Settings, Invalid> {
        let cli =
            Cli::try_parse_from(std::iter::once("m").chain(argv.iter().copied())).map_err(|e| usage(e.to_string()))?;
        Settings::from_args(&cli.args)
    }

    #[test]
    fn flags_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("steps.json");
        std::fs::write(
            &f,
            br#"{"steps": [{"name": "a", "shell": "true", "spread": {"every": "1h", "stamp": "a.stamp"}}]}"#,
        )
        .unwrap();
        let s =
            settings(&["--steps", f.to_str().unwrap(), "--step", "b=echo b", "--with-maintenance", "spool"]).unwrap();
        assert_eq!(s.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(s.steps[0].gate.as_ref().unwrap().stamp, dir.path().join("a.stamp"));
        assert!(s.spool.unwrap().is_absolute());
        assert_eq!(s.timeout, SignedDuration::from_hours(1));
        assert_eq!(s.interval, SignedDuration::from_mins(10));
        std::fs::write(&f, br#"{"steps": [{"name": "a"}]}"#).unwrap();
        let e = settings(&["--steps", f.to_str().unwrap()]).unwrap_err();
        assert_eq!(e.code, 65, "{}", e.msg);
        assert!(e.msg.contains("step 1 (\"a\")"), "{}", e.msg);
    }

    #[test]
    fn bad_flags() {
        for (argv, want) in [
            (&[][..], "no steps"),
            (&["--step", "x"], "NAME=COMMAND"),
            (&["--step", "a=1", "--step", "a=2"], "exists already"),
            (&["--step", "a=1", "--timeout", "0"], "--timeout"),
            (&["--step", "a=1", "--interval", "soon"], "--interval"),
            (&["--step", "a=1", "--now", "later"], "--now"),
            (&["--steps", "/nonexistent/steps.json"], "--steps"),
        ] {
            let e = settings(argv).unwrap_err();
            assert_eq!(e.code, 2, "{argv:?}: {}", e.msg);
            assert!(e.msg.contains(want), "{argv:?}: {}", e.msg);
        }
    }
}
