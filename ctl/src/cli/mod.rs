//! The `colony-ctl` / `colony ctl` command line: argv in, files out, an exit
//! code back. Shared by both binaries so they cannot drift apart.
//!
//! Depends on `clap` and the rest of this crate.

mod maintenance;
mod status;

use crate::{Error, Places, ProgramName, ProgramSpec};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the operation failed (missing directory, unknown program, I/O error).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: bad command line or bad value (name, `--env`, `--extras`, spec).
pub const EXIT_USAGE: i32 = 2;

const AFTER_HELP: &str = "\
The directories may also be given as COLONY_CONFIG_DIR and COLONY_MESSAGES_DIR.
Exit status: 0 success, 1 failure (missing directory, unknown program, I/O),
2 usage error (bad option, name or value). See colony-ctl(1).";

/// Control a colony (or ncolony) supervisor by writing files.
#[derive(Debug, Parser)]
#[command(version, infer_long_args = true, after_help = AFTER_HELP)]
struct Cli {
    /// Messages directory (one file per request).
    #[arg(long, env = "COLONY_MESSAGES_DIR", value_name = "DIR", global = true)]
    messages: Option<PathBuf>,
    /// Config directory (one file per program).
    #[arg(long, env = "COLONY_CONFIG_DIR", value_name = "DIR", global = true)]
    config: Option<PathBuf>,
    /// Status directory of the running supervisor [default: MESSAGES/.status].
    #[arg(long, env = "COLONY_STATUS_DIR", value_name = "DIR", global = true)]
    status: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write (or replace) the config file of a program.
    Add(AddArgs),
    /// Remove a program's config file; the supervisor stops it.
    Remove {
        /// The program.
        name: String,
    },
    /// Ask the supervisor to restart one program.
    Restart {
        /// The program.
        name: String,
        /// Return only once the new instance runs (or fail).
        #[arg(long)]
        wait: bool,
        /// Seconds --wait waits at most.
        #[arg(long, value_name = "S", default_value = "30", requires = "wait")]
        timeout: f64,
    },
    /// Ask the supervisor to stop a program and keep it stopped.
    Stop {
        /// The program.
        name: String,
    },
    /// Ask the supervisor to start a stopped program (or one in backoff) now.
    Start {
        /// The program.
        name: String,
    },
    /// Ask the supervisor to send a signal to a program's main process.
    Signal {
        /// The program.
        name: String,
        /// A signal name (HUP, SIGUSR1, ...) or number.
        signal: String,
    },
    /// Show what the supervisor is doing, from its status directory.
    Status {
        /// Only this program.
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the supervisor to restart every program.
    RestartAll,
    /// Ask the supervisor to restart every program of a group.
    RestartGroup {
        /// The group, as listed in the programs' "group" key.
        group: String,
    },
    /// Queue, list, show and delete requests of colony maintenance.
    Maintenance(maintenance::MaintenanceArgs),
    /// List the configured programs and their commands.
    List {
        /// Print one JSON object mapping each name to its config.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The program's name (also its file name).
    name: String,
    /// The executable (looked up on the supervisor's PATH if it has no '/').
    #[arg(long, value_name = "CMD")]
    cmd: Option<String>,
    /// One argument, repeatable; use --arg=-x for one that starts with '-'.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// An environment variable KEY=VALUE, repeatable; the last one for a KEY wins.
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Run as this user id.
    #[arg(long)]
    uid: Option<u32>,
    /// Run with this group id.
    #[arg(long)]
    gid: Option<u32>,
    /// A JSON file whose object is merged into the config last.
    #[arg(long, value_name = "FILE.json")]
    extras: Option<PathBuf>,
    /// Copy this variable from the supervisor's environment, repeatable.
    #[arg(long = "env-inherit", value_name = "VAR")]
    env_inherit: Vec<String>,
    /// Put the program in this group (for restart-group), repeatable.
    #[arg(long, value_name = "GROUP")]
    group: Vec<String>,
    /// The command and its arguments, instead of --cmd and --arg.
    #[arg(last = true, value_name = "CMD ARGS")]
    command: Vec<String>,
}

/// A failure with its exit code; printed as one line.
pub(crate) struct Failure(i32, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let code = match e {
            Error::InvalidName { .. } | Error::Spec(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        };
        Failure(code, e.to_string())
    }
}

pub(crate) fn usage(msg: impl Into<String>) -> Failure {
    Failure(EXIT_USAGE, msg.into())
}

/// Runs the command line `argv` (including the program name) and returns
/// the exit code. `bin` names the command in messages ("colony-ctl" or
/// "colony ctl"). A leading word `ctl` after the program name is skipped,
/// as ncolony's `python -m ncolony ctl` allows.
pub fn run(bin: &str, argv: impl IntoIterator<Item = OsString>) -> i32 {
    let mut argv: Vec<OsString> = argv.into_iter().collect();
    if argv.get(1).is_some_and(|a| a == "ctl") {
        argv.remove(1);
    }
    let cmd = <Cli as clap::CommandFactory>::command().bin_name(bin.to_string());
    let cli = match cmd.try_get_matches_from(argv).and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(bin, e),
    };
    match execute(cli) {
        Ok(()) => EXIT_OK,
        Err(Failure(code, msg)) => {
            eprintln!("{bin}: {msg}");
            code
        }
    }
}

fn name(s: &str) -> Result<ProgramName, Failure> {
    ProgramName::new(s).map_err(|reason| Error::InvalidName { name: s.to_string(), reason }.into())
}

fn places(cli: &Cli, need_messages: bool) -> Result<Places, Failure> {
    let config = cli.config.clone().ok_or_else(|| usage("--config DIR (or COLONY_CONFIG_DIR) is required"))?;
    let messages = match &cli.messages {
        Some(m) => m.clone(),
        None if need_messages => return Err(usage("--messages DIR (or COLONY_MESSAGES_DIR) is required")),
        None => PathBuf::new(),
    };
    Ok(Places::new(config, messages))
}

fn execute(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Add(add) => {
            let name = name(&add.name)?;
            let spec = build_spec(add)?;
            let places = places(&cli, true)?;
            Ok(places.add(&name, &spec)?)
        }
        Command::Remove { name: n } => Ok(places(&cli, true)?.remove(&name(n)?)?),
        Command::Restart { name: n, wait, timeout } => {
            let n = name(n)?;
            let places = places(&cli, true)?;
            if *wait {
                let dir = status_dir(&cli, &places);
                status::restart_and_wait(&places, &dir, &n, *timeout)
            } else {
                places.restart(&n).map(drop).map_err(Into::into)
            }
        }
        Command::Stop { name: n } => {
            let n = name(n)?;
            places(&cli, true)?.stop(&n).map(drop).map_err(Into::into)
        }
        Command::Start { name: n } => {
            let n = name(n)?;
            let places = places(&cli, true)?;
            if let Some(s) = status::current(&status_dir(&cli, &places), &n) {
                if s.disabled {
                    return Err(Failure(EXIT_FAILURE, format!("{n} is disabled in its config file")));
                }
            }
            places.start(&n).map(drop).map_err(Into::into)
        }
        Command::Signal { name: n, signal } => {
            let n = name(n)?;
            let sig = crate::parse_signal(&serde_json::Value::from(signal.as_str()))
                .or_else(|| signal.parse::<i32>().ok().filter(|s| (1..=64).contains(s)))
                .ok_or_else(|| usage(format!("signal: {signal:?} is not a signal name or number")))?;
            let places = places(&cli, true)?;
            if let Some(s) = status::current(&status_dir(&cli, &places), &n) {
                if s.pid.is_none() {
                    return Err(Failure(EXIT_FAILURE, format!("{n} is not running ({})", s.state.as_str())));
                }
            }
            places.signal(&n, sig).map(drop).map_err(Into::into)
        }
        Command::Status { name: n, json } => {
            let n = n.as_deref().map(name).transpose()?;
            let dir = match &cli.status {
                Some(dir) => dir.clone(),
                None => status_dir(&cli, &places(&cli, true)?),
            };
            status::show(&dir, n.as_ref(), *json)
        }
        Command::RestartAll => places(&cli, true)?.restart_all().map(drop).map_err(Into::into),
        Command::RestartGroup { group } => places(&cli, true)?.restart_group(group).map(drop).map_err(Into::into),
        Command::List { json } => list(&places(&cli, false)?, *json),
        Command::Maintenance(args) => maintenance::execute(args),
    }
}

fn status_dir(cli: &Cli, places: &Places) -> PathBuf {
    cli.status.clone().unwrap_or_else(|| places.default_status_dir())
}

fn build_spec(add: &AddArgs) -> Result<ProgramSpec, Failure> {
    let mut builder = match (&add.cmd, add.command.split_first()) {
        (Some(cmd), None) => ProgramSpec::builder(cmd).args(&add.args),
        (None, Some((cmd, rest))) if add.args.is_empty() => ProgramSpec::builder(cmd).args(rest),
        (None, None) => return Err(usage("add: give the command as --cmd CMD or after --")),
        _ => return Err(usage("add: give the command either as --cmd/--arg or after --, not both")),
    };
    for kv in &add.env {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(usage(format!("--env {kv:?}: expected KEY=VALUE")));
        };
        builder = builder.env(k, v);
    }
    if let Some(uid) = add.uid {
        builder = builder.uid(uid);
    }
    if let Some(gid) = add.gid {
        builder = builder.gid(gid);
    }
    for var in &add.env_inherit {
        builder = builder.env_inherit(var);
    }
    for g in &add.group {
        builder = builder.group(g);
    }
    if let Some(path) = &add.extras {
        builder = builder.extras(read_extras(path)?);
    }
    builder.build().map_err(|e| usage(e.to_string()))
}

fn read_extras(path: &PathBuf) -> Result<Map<String, Value>, Failure> {
    let bytes = std::fs::read(path).map_err(|e| usage(format!("--extras {}: {e}", path.display())))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(usage(format!("--extras {}: expected a JSON object", path.display()))),
        Err(e) => Err(usage(format!("--extras {}: invalid JSON: {e}", path.display()))),
    }
}

fn list(places: &Places, json: bool) -> Result<(), Failure> {
    let programs = places.programs()?;
    let mut out = std::io::stdout().lock();
    let mut bad = 0;
    let mut all = Map::new();
    for (name, spec) in &programs {
        match spec {
            Ok(spec) if json => {
                all.insert(name.to_string(), Value::Object(spec.to_map()));
            }
            Ok(spec) => {
                let _ = writeln!(out, "{name}\t{}", shell_words(spec.args()));
            }
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    if json {
        let _ = writeln!(out, "{}", Value::Object(all));
    }
    if bad > 0 {
        return Err(Failure(EXIT_FAILURE, format!("{bad} config file(s) are invalid")));
    }
    Ok(())
}

/// Joins argv for display, quoting words a shell would split.
fn shell_words(args: &[String]) -> String {
    let quote = |a: &String| {
        if !a.is_empty() && a.chars().all(|c| c.is_alphanumeric() || "-_./=:,@%+".contains(c)) {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    args.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// Prints a clap outcome: help and version in full, a usage error as one
/// line (exit 2).
pub fn clap_exit(bin: &str, e: clap::Error) -> i32 {
    if !e.use_stderr() {
        let _ = e.print();
        return EXIT_OK;
    }
    let text = e.render().to_string();
    // The first paragraph, on one line ("required arguments were not
    // provided: <NAME>").
    let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let first = first.join(" ");
    let first = first.trim_start_matches("error: ");
    eprintln!("{bin}: {first} (see {bin} --help)");
    EXIT_USAGE
}
