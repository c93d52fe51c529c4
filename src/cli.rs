//! The `colony` command line: turns argv into a subcommand and runs it.
//!
//! Depends on clap and the subcommands' modules.

use crate::check::CheckArgs;
use crate::settings::RunArgs;
use clap::{Parser, Subcommand};
use std::ffi::OsString;

/// A process supervisor for one machine, controlled through files.
#[derive(Debug, Parser)]
#[command(name = "colony", version, infer_long_args = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the supervisor in the foreground (alias: supervise).
    #[command(visible_alias = "supervise")]
    Run(Box<RunArgs>),
    /// Validate config files as the supervisor would read them.
    Check(CheckArgs),
    /// Run a command periodically (a job hosted under the supervisor).
    Scheduler(Box<crate::jobs::scheduler::SchedulerArgs>),
    /// Run queued maintenance requests inside maintenance windows (a job).
    Maintenance(Box<crate::jobs::maintenance::MaintenanceArgs>),
    /// Run configuration steps every tick, under a lock (a job).
    Manage(Box<crate::jobs::manage::ManageArgs>),
    /// Control the supervisor by writing files (same as colony-ctl).
    #[command(disable_help_flag = true)]
    Ctl {
        #[arg(allow_hyphen_values = true, num_args = 0..)]
        args: Vec<OsString>,
    },
}

/// Runs the `colony` command line and returns the exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => return colony_ctl::cli::clap_exit("colony", e),
    };
    match cli.command {
        Command::Run(args) => match args.settings() {
            Ok(settings) => {
                crate::logging::init(settings.log_style);
                crate::runtime::run(settings)
            }
            Err(msg) => {
                eprintln!("colony run: {msg}");
                2
            }
        },
        Command::Check(args) => crate::check::run(&args),
        Command::Scheduler(args) => crate::jobs::scheduler::run(&args),
        Command::Maintenance(args) => crate::jobs::maintenance::run(&args),
        Command::Manage(args) => crate::jobs::manage::run(&args),
        Command::Ctl { args } => colony_ctl::cli::run("colony ctl", std::iter::once("colony ctl".into()).chain(args)),
    }
}
