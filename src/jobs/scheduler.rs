//! `colony scheduler`: runs a command periodically, as an ordinary program
//! under the supervisor (DESIGN.md §6). It covers ncolony-scheduler
//! (`--arg … --frequency --timeout --grace`, argv unchanged), cron
//! calendars in a time zone, Flying Circus's spread stamp, and the
//! emptyhammock bot's remembered success with catch-up, retry and windows.
//!
//! The decisions are pure ([`calendar`], [`spread`], [`state`],
//! [`machine`], [`heart`]); [`settings`] turns flags into validated settings; the
//! shell (`shell`, `files`) is the only part that reads the clock, touches
//! files, spawns, signals and reaps. See `man/colony-scheduler.1`.

pub mod calendar;
pub(crate) mod files;
pub mod heart;
pub mod machine;
pub mod settings;
mod shell;
pub mod spread;
pub mod state;

use clap::Args;
use std::path::PathBuf;

pub use super::{EXIT_CANTCREAT, EXIT_OK, EXIT_SOFTWARE, EXIT_USAGE};

/// `colony scheduler` arguments, as given. [`settings::Settings::from_args`]
/// validates them.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Durations are seconds (decimals allowed) or a number with s, m, h or d. \
                  Exit codes: 0 ok, 2 usage, 73 stamp or state file unusable at start, 70 internal; \
                  with --once the run's own code (128+N for signal N, 126/127 when it cannot start). \
                  See colony-scheduler(1).")]
pub struct SchedulerArgs {
    /// One word of the command; repeat it, the first is the program
    /// (ncolony-scheduler's form).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Run every S seconds, the first at start. With --spread-stamp: the
    /// slot length N. With --cron: how often to retry a run still owed.
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub frequency: Option<String>,
    /// Run at the fire times of a cron expression (5 fields, or 6 with
    /// seconds first, or @daily and the like).
    #[arg(long, value_name = "EXPR", conflicts_with = "spread_stamp")]
    pub cron: Option<String>,
    /// Read --cron on the wall clock of this IANA zone (default UTC).
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// Send SIGTERM to a run's process group after S seconds.
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Send SIGKILL S seconds after SIGTERM (timeout or shutdown; default 3).
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub grace: Option<String>,
    /// Run at most once per slot of --frequency seconds, shifted by a
    /// random offset kept in FILE (Flying Circus spread).
    #[arg(long, value_name = "FILE")]
    pub spread_stamp: Option<PathBuf>,
    /// Remember the last successful run in FILE: catch up one missed run
    /// at start, retry a failed one.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Start a --cron run only within D after its fire time.
    #[arg(long, value_name = "D", allow_hyphen_values = true)]
    pub window: Option<String>,
    /// Make one decision, run at most once, and exit.
    #[arg(long, conflicts_with = "next")]
    pub once: bool,
    /// Pretend the time is TIMESTAMP (RFC 3339 or Unix seconds) at start.
    #[arg(long, value_name = "TIMESTAMP", allow_hyphen_values = true)]
    pub now: Option<String>,
    /// Print the next N times a run would start, and exit.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub next: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Runs the scheduler; returns the exit code.
pub fn run(args: &SchedulerArgs) -> i32 {
    match settings::Settings::from_args(args) {
        Ok(settings) => shell::run(settings),
        Err(msg) => {
            eprintln!("colony scheduler: {msg}");
            EXIT_USAGE
        }
    }
}
