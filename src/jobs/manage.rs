//! `colony manage`: an fc-manage style job hosted under the supervisor
//! (DESIGN.md §6). Every tick it runs named steps in order, under an
//! exclusive lock (its pid inside) and a time limit for the whole run; a
//! failing step does not stop the following ones, and the run reports the
//! failure. A step can be gated by Flying Circus's spread stamp (the
//! scheduler's `spread` logic), or, in with-maintenance mode, be filed as
//! a `colony maintenance` request instead of being run.
//!
//! The decisions are pure ([`steps`] parses, [`mod@run`] decides);
//! [`settings`] validates the flags; `shell` runs processes (through the
//! maintenance job's `process` module) and touches files. See
//! `man/colony-manage.1`.

pub mod run;
pub mod settings;
mod shell;
pub mod steps;

use clap::Args;
use std::path::PathBuf;

pub use super::{EXIT_CANTCREAT, EXIT_DATAERR, EXIT_OK, EXIT_SOFTWARE, EXIT_TEMPFAIL, EXIT_USAGE};

/// `colony manage` arguments, as given; [`settings::Settings`] validates
/// them.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Durations are seconds (decimals allowed) or a number with s, m, h or d. \
                  Exit codes: 0 ok, 2 usage, 65 bad steps file, 70 internal, 73 lock file unusable, \
                  75 a step failed or another run holds the lock (--once). See colony-manage(1).")]
pub struct ManageArgs {
    /// A JSON steps file: {"steps": [{"name", "command" (a list) or "shell",
    /// "spread": {"every", "stamp"}, "maintenance": {"estimate", "comment"}}]}.
    #[arg(long, value_name = "FILE")]
    pub steps: Option<PathBuf>,
    /// A step running a shell command, after the file's steps; repeatable.
    #[arg(long = "step", value_name = "NAME=CMD")]
    pub step: Vec<String>,
    /// The lock file (flock; the pid of the run inside).
    #[arg(long, value_name = "FILE", default_value = "/run/lock/colony-manage.lock")]
    pub lock: PathBuf,
    /// The time limit of a whole run (default 1h): the step running then
    /// gets SIGTERM, and the steps after it do not run.
    #[arg(long, value_name = "D")]
    pub timeout: Option<String>,
    /// SIGKILL this long after SIGTERM (default 10s).
    #[arg(long, value_name = "D")]
    pub grace: Option<String>,
    /// Run every D (default 10m), the first at start.
    #[arg(long, value_name = "D")]
    pub interval: Option<String>,
    /// With-maintenance mode: file the steps that have a "maintenance"
    /// entry as requests in this colony maintenance spool.
    #[arg(long, value_name = "SPOOL")]
    pub with_maintenance: Option<PathBuf>,
    /// Run once and exit with the run's code.
    #[arg(long)]
    pub once: bool,
    /// Pretend the time is TIMESTAMP (RFC 3339 or Unix seconds) at start.
    #[arg(long, value_name = "TIMESTAMP", allow_hyphen_values = true)]
    pub now: Option<String>,
}

/// Runs `colony manage`; returns the exit code.
pub fn run(args: &ManageArgs) -> i32 {
    match settings::Settings::from_args(args) {
        Ok(settings) => shell::run(settings),
        Err(settings::Invalid { code, msg }) => {
            eprintln!("colony manage: {msg}");
            code
        }
    }
}
