//! `colony run` settings: ncolony's option names and defaults, each also
//! from a `COLONY_*` environment variable, validated into one value.
//!
//! Depends on clap and the core's policy type.

use crate::core::backoff::Policy;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// The raw `colony run` flags (command line beats environment beats default).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Config directory: one JSON file per program (created if missing).
    #[arg(long, env = "COLONY_CONFIG_DIR", value_name = "DIR")]
    pub config: PathBuf,
    /// Messages directory: one JSON file per request (created if missing).
    #[arg(long, env = "COLONY_MESSAGES_DIR", value_name = "DIR")]
    pub messages: PathBuf,
    /// Seconds between two safety rescans of both directories (changes are
    /// seen at once through inotify).
    #[arg(long, env = "COLONY_FREQUENCY", value_name = "S", default_value = "10")]
    pub frequency: String,
    /// Directory of PID files: DIR/NAME holds the pid while NAME runs.
    #[arg(long, env = "COLONY_PID_DIR", value_name = "DIR")]
    pub pid: Option<PathBuf>,
    /// Status directory: one JSON file per program and `.colony` for the
    /// daemon [default: MESSAGES/.status].
    #[arg(long, env = "COLONY_STATUS_DIR", value_name = "DIR")]
    pub status: Option<PathBuf>,
    /// Write Prometheus metrics to this file (node_exporter textfile
    /// collector), at most once per second.
    #[arg(long, env = "COLONY_METRICS_FILE", value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Log format of colony's messages and of child output on stderr.
    #[arg(long, env = "COLONY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::logging::Format,
    /// Whether text log lines start with a timestamp (auto: when stderr is
    /// not a terminal).
    #[arg(long, env = "COLONY_LOG_TIMESTAMPS", value_enum, default_value = "auto")]
    pub log_timestamps: crate::logging::Timestamps,
    /// Accept config files and a config directory that someone other than
    /// root (or the program's own user) could have written. By default, when
    /// colony runs as root, such files are refused, like sshd's StrictModes.
    #[arg(long, env = "COLONY_NO_STRICT_MODES")]
    pub no_strict_modes: bool,
    /// A program that lived less than this many seconds died "instantly".
    #[arg(short = 't', long, env = "COLONY_THRESHOLD", value_name = "S", default_value = "1")]
    pub threshold: String,
    /// Seconds between the stop signal and SIGKILL.
    #[arg(short = 'k', long, env = "COLONY_KILLTIME", value_name = "S", default_value = "5")]
    pub killtime: String,
    /// First restart delay after an instant death, in seconds.
    #[arg(short = 'm', long, env = "COLONY_MINRESTARTDELAY", value_name = "S", default_value = "1")]
    pub minrestartdelay: String,
    /// Cap of the doubling restart delay, in seconds.
    #[arg(short = 'M', long, env = "COLONY_MAXRESTARTDELAY", value_name = "S", default_value = "3600")]
    pub maxrestartdelay: String,
}

/// Validated settings of the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The config directory.
    pub config: PathBuf,
    /// The messages directory.
    pub messages: PathBuf,
    /// The safety rescan period.
    pub frequency: Duration,
    /// Where PID files go, if anywhere.
    pub pid_dir: Option<PathBuf>,
    /// The status directory.
    pub status_dir: PathBuf,
    /// The metrics file, if any.
    pub metrics: Option<PathBuf>,
    /// How log lines look.
    pub log_style: crate::logging::Style,
    /// Refuse files others could have written (when running as root).
    pub strict_modes: bool,
    /// Restart and stop timing.
    pub policy: Policy,
}

/// Parses decimal seconds: a finite, non-negative number.
pub fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    match value.trim().parse::<f64>() {
        Ok(s) if (0.0..1e12).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("--{flag}: expected a non-negative number of seconds, got {value:?}")),
    }
}

impl RunArgs {
    /// Checks every value; the error is one line naming the flag.
    pub fn settings(&self) -> Result<Settings, String> {
        let frequency = seconds("frequency", &self.frequency)?;
        if frequency.is_zero() {
            return Err("--frequency: must be more than 0 seconds".into());
        }
        let policy = Policy {
            threshold: seconds("threshold", &self.threshold)?,
            killtime: seconds("killtime", &self.killtime)?,
            min_delay: seconds("minrestartdelay", &self.minrestartdelay)?,
            max_delay: seconds("maxrestartdelay", &self.maxrestartdelay)?,
        };
        if policy.min_delay > policy.max_delay {
            return Err(format!(
                "--minrestartdelay ({}) may not exceed --maxrestartdelay ({})",
                self.minrestartdelay, self.maxrestartdelay
            ));
        }
        Ok(Settings {
            config: self.config.clone(),
            messages: self.messages.clone(),
            frequency,
            pid_dir: self.pid.clone(),
            status_dir: self.status.clone().unwrap_or_else(|| self.messages.join(colony_ctl::DEFAULT_STATUS_SUBDIR)),
            metrics: self.metrics.clone(),
            log_style: crate::logging::Style::new(self.log_format, self.log_timestamps),
            strict_modes: !self.no_strict_modes,
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_decimal_and_checked() {
        assert_eq!(seconds("k", "0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(seconds("k", "3600"), Ok(Duration::from_secs(3600)));
        assert!(seconds("killtime", "-1").unwrap_err().starts_with("--killtime"));
        assert!(seconds("k", "abc").is_err());
        assert!(seconds("k", "inf").is_err());
        assert!(seconds("k", "NaN").is_err());
    }
}
