//! `colony check`: validate config files the way the supervisor reads them,
//! reporting every problem of every file, for configuration-management
//! pipelines.
//!
//! Depends on colony-ctl only.

use clap::Args;
use colony_ctl::{is_ignored_file_name, scan_config_dir, ProgramName, ProgramSpec};
use std::path::{Path, PathBuf};

/// `colony check` arguments.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Check every program file of this config directory (default, when
    /// no files are given: $COLONY_CONFIG_DIR).
    #[arg(long, value_name = "DIR", conflicts_with = "files")]
    pub config: Option<PathBuf>,
    /// Check these files (their names must be valid program names).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print nothing on success.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Exit code when a problem was found.
pub const EXIT_INVALID: i32 = 1;

/// Runs the check and returns the exit code.
pub fn run(args: &CheckArgs) -> i32 {
    let mut problems: Vec<String> = Vec::new();
    let mut valid = 0;
    let mut check_one = |path: &Path, name: Option<&str>, bytes: &[u8], problems: &mut Vec<String>| {
        if let Some(name) = name {
            if let Err(e) = ProgramName::new(name) {
                problems.push(format!("{}: {e}", path.display()));
                return;
            }
        }
        match ProgramSpec::parse(bytes) {
            Ok(spec) => {
                valid += 1;
                for key in spec.unknown_keys() {
                    eprintln!("{}: note: key {key:?} is not used by colony (kept for other tools)", path.display());
                }
            }
            Err(e) => problems.extend(e.problems.iter().map(|p| format!("{}: {p}", path.display()))),
        }
    };
    let from_env = std::env::var_os("COLONY_CONFIG_DIR").map(PathBuf::from);
    let config = args.config.clone().or(if args.files.is_empty() { from_env } else { None });
    match (&config, args.files.is_empty()) {
        (Some(dir), true) => match scan_config_dir(dir) {
            Err(e) => problems.push(format!("{}: cannot read the config directory: {e}", dir.display())),
            Ok(scan) => {
                problems.extend(scan.problems.iter().map(|(p, why)| format!("{}: {why}", p.display())));
                for d in &scan.subdirs {
                    eprintln!("{}: note: a directory, not a program file; colony skips it", d.display());
                }
                for (name, bytes) in &scan.files {
                    check_one(&dir.join(name.as_str()), None, bytes, &mut problems);
                }
            }
        },
        (_, false) => {
            for path in &args.files {
                let name = path.file_name().and_then(|n| n.to_str());
                if name.is_some_and(is_ignored_file_name) {
                    eprintln!("{}: note: colony ignores this file (dot-file or .new)", path.display());
                    continue;
                }
                match std::fs::read(path) {
                    Ok(bytes) => check_one(path, name, &bytes, &mut problems),
                    Err(e) => problems.push(format!("{}: cannot read: {e}", path.display())),
                }
            }
        }
        (None, true) => {
            eprintln!("colony check: give --config DIR or the files to check (see colony check --help)");
            return 2;
        }
    }
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() {
        if !args.quiet {
            println!("ok: {valid} program file(s) valid");
        }
        0
    } else {
        eprintln!("colony check: {} problem(s) found", problems.len());
        EXIT_INVALID
    }
}
