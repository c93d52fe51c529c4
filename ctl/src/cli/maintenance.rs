//! `colony ctl maintenance …`: queue, list, show and delete the requests of
//! a `colony maintenance` spool, and ask the job to tick now.
//!
//! Depends on `clap` and the maintenance module.

use super::{usage, Failure, EXIT_FAILURE};
use crate::maintenance::{
    format_estimate, format_time, parse_estimate, unix_now, Activity, Added, Deleted, Request, RequestState, Spool,
    SpoolError, DEFAULT_SPOOL,
};
use crate::ProgramName;
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::path::PathBuf;

/// `colony ctl maintenance` arguments.
#[derive(Debug, Args)]
pub(crate) struct MaintenanceArgs {
    /// The spool directory of colony maintenance.
    #[arg(long, value_name = "DIR", env = "COLONY_MAINTENANCE_SPOOL", default_value = DEFAULT_SPOOL)]
    spool: PathBuf,
    #[command(subcommand)]
    command: MaintenanceCommand,
}

#[derive(Debug, Subcommand)]
enum MaintenanceCommand {
    /// Queue a request (prints its id).
    #[command(subcommand)]
    Request(RequestKind),
    /// List the queued requests (and the archived ones with --all).
    List {
        /// Also the archived (finished) requests.
        #[arg(long)]
        all: bool,
        /// Print a JSON list of the request files.
        #[arg(long)]
        json: bool,
    },
    /// Show one request, with its attempts and their output.
    Show {
        /// The id, or a prefix of it that only one request has.
        id: String,
        /// Print the request file.
        #[arg(long)]
        json: bool,
    },
    /// Delete a queued request (an ambiguous prefix is an error).
    Delete {
        /// The id, or a prefix of it that only one request has.
        id: String,
    },
    /// Ask the running colony maintenance to tick now.
    Run,
}

#[derive(Debug, Subcommand)]
enum RequestKind {
    /// Run a shell script (or one with its own #! line).
    Script {
        /// What it is for; a queued request with the same comment is not
        /// queued again.
        #[arg(long, short)]
        comment: Option<String>,
        /// How long it takes: seconds, or "1h 30m" (h, m, s).
        #[arg(long, short, default_value = "10m")]
        estimate: String,
        /// Read the script from FILE ("-": standard input).
        #[arg(long, short, value_name = "FILE", conflicts_with = "script")]
        file: Option<PathBuf>,
        /// The script's text.
        #[arg(allow_hyphen_values = true)]
        script: Option<String>,
    },
    /// Reboot the machine (with colony maintenance's reboot command).
    Reboot {
        /// What it is for.
        #[arg(long, short, default_value = "Scheduled reboot")]
        comment: String,
        /// How long it takes.
        #[arg(long, short, default_value = "10m")]
        estimate: String,
    },
    /// Restart colony programs; done when each has started again.
    Restart {
        /// The programs.
        #[arg(required = true)]
        names: Vec<String>,
        /// What it is for [default: "Restart NAME, ..."].
        #[arg(long, short)]
        comment: Option<String>,
        /// How long it takes.
        #[arg(long, short, default_value = "5m")]
        estimate: String,
    },
}

fn fail(e: SpoolError) -> Failure {
    Failure(EXIT_FAILURE, e.to_string())
}

fn estimate(text: &str) -> Result<f64, Failure> {
    parse_estimate(text).map_err(|e| usage(format!("--estimate: {e}")))
}

pub(crate) fn execute(args: &MaintenanceArgs) -> Result<(), Failure> {
    let spool = Spool::new(&args.spool);
    match &args.command {
        MaintenanceCommand::Request(kind) => request(&spool, kind),
        MaintenanceCommand::List { all, json } => list(&spool, *all, *json),
        MaintenanceCommand::Show { id, json } => show(&spool, id, *json),
        MaintenanceCommand::Delete { id } => {
            let id = spool.resolve(id).map_err(fail)?;
            match spool.delete(&id, unix_now()).map_err(fail)? {
                Deleted::Archived(id) => eprintln!("deleted {id} (archived)"),
                Deleted::Marked(id, pid) => {
                    let who = pid.map_or("colony maintenance".to_string(), |p| format!("colony maintenance (pid {p})"));
                    eprintln!("deleting {id}: {who} archives it at its next tick");
                }
            }
            Ok(())
        }
        MaintenanceCommand::Run => {
            spool.trigger().map_err(fail)?;
            if let Ok(Ok(_free)) = spool.try_lock() {
                eprintln!(
                    "no colony maintenance holds {}: the spool is looked at when one starts",
                    spool.lock_path().display()
                );
            }
            Ok(())
        }
    }
}

fn request(spool: &Spool, kind: &RequestKind) -> Result<(), Failure> {
    let new = match kind {
        RequestKind::Script { comment, estimate: e, file, script } => {
            let text = match (file, script) {
                (Some(f), None) => read_script(f)?,
                (None, Some(s)) if s == "-" => read_script(&PathBuf::from("-"))?,
                (None, Some(s)) => s.clone(),
                _ => return Err(usage("request script: give the script as an argument or with --file")),
            };
            if text.trim().is_empty() {
                return Err(usage("request script: the script is empty"));
            }
            Request::new(
                Activity::Script { script: text },
                comment.clone().unwrap_or_default(),
                estimate(e)?,
                unix_now(),
            )
        }
        RequestKind::Reboot { comment, estimate: e } => {
            Request::new(Activity::Reboot { boot_id: None }, comment.clone(), estimate(e)?, unix_now())
        }
        RequestKind::Restart { names, comment, estimate: e } => {
            for n in names {
                ProgramName::new(n).map_err(|reason| usage(format!("invalid program name {n:?}: {reason}")))?;
            }
            let comment = comment.clone().unwrap_or_else(|| format!("Restart {}", names.join(", ")));
            Request::new(
                Activity::Restart { programs: names.clone(), sent_at: None },
                comment,
                estimate(e)?,
                unix_now(),
            )
        }
    };
    match spool.add(&new).map_err(fail)? {
        Added::New(id) => println!("{id}"),
        Added::Duplicate(id) => {
            eprintln!("a request with the same comment is already queued: {id}");
            println!("{id}");
        }
    }
    Ok(())
}

fn read_script(path: &PathBuf) -> Result<String, Failure> {
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text)).map(drop)
    };
    read.map_err(|e| usage(format!("--file {}: {e}", path.display())))?;
    Ok(text)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn list(spool: &Spool, all: bool, json: bool) -> Result<(), Failure> {
    let mut entries = Vec::new();
    if all {
        entries.extend(spool.archived().map_err(fail)?);
    }
    entries.extend(spool.queued().map_err(fail)?);
    let mut out = std::io::stdout().lock();
    let mut bad = 0;
    let mut requests = Vec::new();
    for e in entries {
        match e {
            Ok(r) => requests.push(r),
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&requests).unwrap_or_default());
    } else {
        if let Some(since) = spool.marker() {
            let _ = writeln!(out, "in maintenance since {since}");
        }
        let _ = writeln!(out, "St Id      Scheduled                Estimate    Comment");
        for r in &requests {
            let when = r.next_due.map_or("--- TBA ---".to_string(), format_time);
            let mut comment = first_line(&r.comment).to_string();
            if r.state.is_final() {
                if let Some(d) = r.attempts.last().and_then(|a| Some(a.finished? - a.started)) {
                    comment += &format!(" (duration: {})", format_estimate(d));
                }
            }
            let _ = writeln!(
                out,
                "{}  {:7} {:24} {:11} {}",
                r.state.short(),
                r.short_id(),
                when,
                format_estimate(r.estimate),
                comment
            );
        }
    }
    if bad > 0 {
        return Err(Failure(EXIT_FAILURE, format!("{bad} request file(s) cannot be read")));
    }
    Ok(())
}

fn show(spool: &Spool, prefix: &str, json: bool) -> Result<(), Failure> {
    let id = match spool.resolve(prefix) {
        Ok(id) => id,
        Err(SpoolError::NoSuchRequest(_)) => resolve_archived(spool, prefix)?,
        Err(e) => return Err(fail(e)),
    };
    let r = spool.load(&id).map_err(fail)?;
    let mut out = std::io::stdout().lock();
    if json {
        let _ = out.write_all(&r.to_bytes());
        return Ok(());
    }
    let when = r.next_due.map_or("--- TBA ---".to_string(), format_time);
    let _ = writeln!(out, "Request    {}", r.id);
    let _ = writeln!(out, "State      {}", r.state.as_str());
    let _ = writeln!(out, "Activity   {}", describe(&r.activity));
    let _ = writeln!(out, "Comment    {}", r.comment.replace('\n', "\n           "));
    let _ = writeln!(out, "Estimate   {}", format_estimate(r.estimate));
    let _ = writeln!(out, "Added      {}", format_time(r.added_at));
    let _ = writeln!(out, "Scheduled  {when}");
    if let Some(nb) = r.not_before.filter(|_| r.state == RequestState::Pending) {
        let _ = writeln!(out, "Postponed  not before {}", format_time(nb));
    }
    let _ = writeln!(out, "Attempts   {}", r.attempts.len());
    for (i, a) in r.attempts.iter().enumerate() {
        let end = a.finished.map_or("(not finished)".to_string(), format_time);
        let code = a.exit_code.map_or("no exit code".to_string(), |c| format!("exit code {c}"));
        let _ = writeln!(out, "  {}. {} .. {end}: {code}", i + 1, format_time(a.started));
        if let Some(n) = &a.note {
            let _ = writeln!(out, "     {n}");
        }
        for line in a.output.lines() {
            let _ = writeln!(out, "     | {line}");
        }
    }
    if let Activity::Script { script } = &r.activity {
        let _ = writeln!(out, "Script");
        for line in script.lines() {
            let _ = writeln!(out, "     | {line}");
        }
    }
    Ok(())
}

fn describe(a: &Activity) -> String {
    match a {
        Activity::Script { .. } => "script".into(),
        Activity::Reboot { .. } => "reboot".into(),
        Activity::Restart { programs, .. } => format!("restart {}", programs.join(" ")),
    }
}

/// An archived id from a prefix (the archive may hold `ID-1` copies).
fn resolve_archived(spool: &Spool, prefix: &str) -> Result<String, Failure> {
    let mut ids: Vec<String> = spool
        .archived()
        .map_err(fail)?
        .into_iter()
        .flatten()
        .map(|r| r.id)
        .filter(|id| id.starts_with(prefix) && !prefix.is_empty())
        .collect();
    ids.dedup();
    match ids.len() {
        0 => Err(fail(SpoolError::NoSuchRequest(prefix.to_string()))),
        1 => Ok(ids.remove(0)),
        _ => Err(fail(SpoolError::Ambiguous(prefix.to_string(), ids))),
    }
}
