//! `colony maintenance`: runs queued maintenance requests inside
//! maintenance windows, as an ordinary program under the supervisor
//! (DESIGN.md §6). It follows Flying Circus's fc.maintenance: requests in
//! a spool (JSON, written by `colony ctl maintenance request …` or the
//! `manage` job), the pending → due → running → success | error state
//! machine with postpone and retry, enter and leave hooks, an
//! "in maintenance" marker, and a lock.
//!
//! The decisions are pure ([`windows`], [`machine`], [`session`]);
//! [`settings`] validates the flags; `shell` and `world` are the only
//! parts that read the clock, touch files and run processes (through
//! [`process`], which `colony manage` shares). See
//! `man/colony-maintenance.1`.

pub mod machine;
pub mod process;
pub mod session;
pub mod settings;
mod shell;
pub mod windows;
mod world;

use clap::Args;
use std::path::PathBuf;

pub use super::{EXIT_CANTCREAT, EXIT_DATAERR, EXIT_OK, EXIT_POSTPONE, EXIT_SOFTWARE, EXIT_TEMPFAIL, EXIT_USAGE};

/// `colony maintenance` arguments, as given; [`settings::Settings`]
/// validates them.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Durations are seconds (decimals allowed) or a number with s, m, h or d. \
                  Exit codes: 0 ok, 2 usage, 65 bad --windows file, 69 maintenance postponed by an enter hook (--once), \
                  70 internal, 73 spool unusable, 75 spool locked by another instance, or try again later (--once). \
                  See colony-maintenance(1).")]
pub struct MaintenanceArgs {
    /// The spool directory (created if missing).
    #[arg(long, value_name = "DIR", env = "COLONY_MAINTENANCE_SPOOL", default_value = colony_ctl::maintenance::DEFAULT_SPOOL)]
    pub spool: PathBuf,
    /// A maintenance window: a cron expression, then + and how long it
    /// stays open ("0 2 * * * +2h"); repeatable. Without any, requests run
    /// as soon as they are queued.
    #[arg(long = "window", value_name = "'CRON +D'")]
    pub windows: Vec<String>,
    /// A JSON file of windows: {"tz": ZONE, "windows": ["CRON +D", ...]}.
    #[arg(long = "windows", value_name = "FILE")]
    pub windows_file: Option<PathBuf>,
    /// Read the windows' cron expressions on the wall clock of this IANA
    /// zone (default UTC; a --windows file's "tz" wins for its windows).
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// A directory of executables run in name order when entering
    /// maintenance (69 postpones, 75 or a failure retries at the next tick).
    #[arg(long, value_name = "DIR")]
    pub enter_hooks: Option<PathBuf>,
    /// A directory of executables run in name order when leaving
    /// maintenance, and on every idle tick (they must be idempotent).
    #[arg(long, value_name = "DIR")]
    pub leave_hooks: Option<PathBuf>,
    /// SIGTERM a hook after D (default 10m).
    #[arg(long, value_name = "D")]
    pub hook_timeout: Option<String>,
    /// The shell command that reboots the machine.
    #[arg(long, value_name = "CMD", default_value = "shutdown -r +1 'colony maintenance: scheduled reboot'")]
    pub reboot_command: String,
    /// A reboot request fails when the machine has not rebooted D after
    /// the reboot command (default 15m).
    #[arg(long, value_name = "D")]
    pub reboot_timeout: Option<String>,
    /// Config directory of the supervisor (for restart requests).
    #[arg(long, value_name = "DIR", env = "COLONY_CONFIG_DIR")]
    pub config: Option<PathBuf>,
    /// Messages directory of the supervisor (for restart requests).
    #[arg(long, value_name = "DIR", env = "COLONY_MESSAGES_DIR")]
    pub messages: Option<PathBuf>,
    /// Status directory of the supervisor [default: MESSAGES/.status].
    #[arg(long, value_name = "DIR", env = "COLONY_STATUS_DIR")]
    pub status: Option<PathBuf>,
    /// A restart request fails when its programs have not started again D
    /// after the RESTART messages (default 5m).
    #[arg(long, value_name = "D")]
    pub restart_timeout: Option<String>,
    /// Tick at least this often (default 10m); also at each request's slot,
    /// and at once on `colony ctl maintenance run` or a new request.
    #[arg(long, value_name = "D")]
    pub interval: Option<String>,
    /// A request that asked to be retried (75) this many times fails
    /// (default 48).
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<String>,
    /// Tick once and exit with the tick's code.
    #[arg(long)]
    pub once: bool,
    /// Pretend the time is TIMESTAMP (RFC 3339 or Unix seconds) at start.
    #[arg(long, value_name = "TIMESTAMP", allow_hyphen_values = true)]
    pub now: Option<String>,
}

/// Runs `colony maintenance`; returns the exit code.
pub fn run(args: &MaintenanceArgs) -> i32 {
    match settings::Settings::from_args(args) {
        Ok(settings) => shell::run(settings),
        Err(settings::Invalid { code, msg }) => {
            eprintln!("colony maintenance: {msg}");
            code
        }
    }
}
