//! `colony scheduler`: runs a command periodically (being written).

pub mod calendar;
pub mod spread;

use clap::Args;

/// `colony scheduler` arguments.
#[derive(Debug, Clone, Args)]
pub struct SchedulerArgs {
    /// The command and its arguments (repeat --arg, ncolony style).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the scheduler; returns the exit code.
pub fn run(args: &SchedulerArgs) -> i32 {
    eprintln!("colony scheduler: {:?} is not supported yet", args.args);
    70
}
