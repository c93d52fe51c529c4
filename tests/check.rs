//! `colony check` on the real binary: the shipped example files are valid
//! (examples/config, examples/docker/config, the Ansible example), and bad
//! input is reported completely (every problem of every file, one line
//! each), with the documented exit codes: 0 valid, 1 problems, 2 usage.
//!
//! Self-contained: only std and tempfile.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `colony check ARGS` without any COLONY_* variable of the test's
/// environment (COLONY_CONFIG_DIR would stand in for `--config`).
fn check<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_colony"));
    cmd.arg("check").args(args);
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"COLONY_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("run colony check")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(out: Output) -> Run {
        Run {
            code: out.status.code().expect("colony check was killed by a signal"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// The program files of a directory as colony sees them: regular files
/// whose names neither start with a dot nor end in `.new`.
fn program_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            !name.starts_with('.') && !name.ends_with(".new")
        })
        .collect();
    files.sort();
    files
}

/// An example directory must pass `colony check --config DIR` and the
/// same files given one by one, without a single note (a misspelt key
/// such as "critcal" would be a note: kept but unused).
fn assert_example_valid(rel: &str, at_least: usize) {
    let dir = repo().join(rel);
    let files = program_files(&dir);
    assert!(files.len() >= at_least, "{rel}: expected at least {at_least} program files, found {files:?}");
    let run = Run::of(check([OsStr::new("--config"), dir.as_os_str()]));
    assert_eq!(run.code, 0, "colony check --config {rel}\n{run}");
    assert_eq!(run.stdout.trim(), format!("ok: {} program file(s) valid", files.len()), "{run}");
    assert_eq!(run.stderr, "", "{rel}: notes or warnings about the example files\n{run}");

    let run = Run::of(check(&files));
    assert_eq!(run.code, 0, "colony check {files:?}\n{run}");
    assert_eq!(run.stdout.trim(), format!("ok: {} program file(s) valid", files.len()), "{run}");
}

#[test]
fn shipped_example_config_is_valid() {
    assert_example_valid("examples/config", 1);
}

#[test]
fn scheduler_examples_are_valid() {
    assert_example_valid("examples/scheduler", 1);
}

#[test]
fn docker_example_config_is_valid() {
    assert_example_valid("examples/docker/config", 2);
}

#[test]
fn ansible_example_program_files_are_valid() {
    assert_example_valid("examples/ansible/files/programs", 2);
}

/// The playbook checks exactly the files it installs: its glob names the
/// directory tested above, it runs `colony check --config` on the staging
/// directory and fails on any non-zero exit code.
#[test]
fn ansible_playbook_checks_the_files_it_installs() {
    let text = fs::read_to_string(repo().join("examples/ansible/playbook.yml")).unwrap();
    assert!(text.contains("'/files/programs/*'"), "the playbook should install files/programs/*");
    let check_at = text.find("- check\n").expect("a task running `colony check`");
    let install_at = text.find("name: The program files are installed").expect("an install task");
    assert!(check_at < install_at, "the check must run before the files are installed");
    let check_task = &text[check_at..install_at];
    assert!(check_task.contains("- --config"), "{check_task}");
    assert!(check_task.contains("changed_when: false"), "{check_task}");
    assert!(check_task.contains("failed_when: colony_check.rc != 0"), "{check_task}");
    // The copy into the live directory must not go through a temporary
    // file without a leading dot (see examples/ansible/README.md).
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        assert!(!line.contains("remote_src: true"), "remote_src copies leave tmpXXXX files: {line}");
        assert!(!line.contains("backup: true"), "backups in the config directory are programs: {line}");
    }
}

/// A config directory where each file has a known number of problems.
/// Returns (dir, problems expected per file name).
fn bad_config_dir() -> (tempfile::TempDir, BTreeMap<String, usize>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bad: &[(&str, &str, usize)] = &[
        ("empty", "", 1),
        ("blank", "  \n\t\n", 1),
        ("truncated", r#"{"args": ["sleep", "#, 1),
        ("array", r#"["sleep", "10"]"#, 1),
        ("no-args", r#"{"env": {"A": "1"}}"#, 1),
        ("empty-args", r#"{"args": []}"#, 1),
        // args, env.A, env name "B=C", uid, gid, critical, killtime,
        // stop_signal, disabled: nine problems in one file.
        (
            "wrong-types",
            r#"{"args": "sleep 10", "env": {"A": 1, "B=C": "x"}, "uid": -1, "gid": "root",
                "critical": "yes", "killtime": -2, "stop_signal": "FOO", "disabled": 1}"#,
            9,
        ),
        // log.file missing, log.max_size, log.keep.
        ("bad-log", r#"{"args": ["true"], "log": {"max_size": 0, "keep": 5000}}"#, 3),
        ("bad-beatcheck", r#"{"args": ["true"], "ncolony.beatcheck": "often"}"#, 1),
    ];
    let mut expected = BTreeMap::new();
    for (name, content, n) in bad {
        fs::write(dir.join(name), content).unwrap();
        expected.insert(name.to_string(), *n);
    }
    // Valid or ignored: never reported.
    fs::write(dir.join("fine"), r#"{"args": ["sleep", "10"], "critical": true}"#).unwrap();
    fs::write(dir.join(".hidden"), "not json at all").unwrap();
    fs::write(dir.join(".fine.new"), "not json at all").unwrap();
    fs::write(dir.join("half-written.new"), "{\"args\": [").unwrap();
    // A file name that is not UTF-8 cannot be a program name.
    fs::write(dir.join(OsStr::from_bytes(b"caf\xe9")), r#"{"args": ["true"]}"#).unwrap();
    expected.insert("caf\u{FFFD}".to_string(), 1);
    (tmp, expected)
}

/// The file name a problem line is about (lines are `PATH: problem`).
fn line_file<'a>(line: &'a str, dir: &Path) -> &'a str {
    let prefix = format!("{}/", dir.display());
    let rest = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("line does not name a file of the dir: {line}"));
    rest.split_once(": ").unwrap_or_else(|| panic!("line is not `PATH: problem`: {line}")).0
}

#[test]
fn every_problem_of_every_file_is_reported() {
    let (tmp, expected) = bad_config_dir();
    let run = Run::of(check([OsStr::new("--config"), tmp.path().as_os_str()]));
    assert_eq!(run.code, 1, "{run}");
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for line in run.lines() {
        *found.entry(line_file(line, tmp.path()).to_string()).or_default() += 1;
    }
    assert_eq!(found, expected, "problems per file\n{run}");
    let total: usize = expected.values().sum();
    assert_eq!(run.lines().len(), total, "{run}");
    assert!(run.stderr.contains(&format!("{total} problem(s) found")), "{run}");
    assert!(!run.stdout.contains("ok:"), "{run}");
}

#[test]
fn a_single_bad_file_argument_is_reported_with_every_problem() {
    let (tmp, expected) = bad_config_dir();
    let file = tmp.path().join("wrong-types");
    let run = Run::of(check([&file]));
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(run.lines().len(), expected["wrong-types"], "{run}");
    for line in run.lines() {
        assert!(line.starts_with(&format!("{}: ", file.display())), "{line}");
    }
    for key in ["args", "env", "uid", "gid", "critical", "killtime", "stop_signal", "disabled"] {
        assert!(run.stdout.contains(&format!("\"{key}")), "no problem names {key:?}\n{run}");
    }
}

#[test]
fn good_and_bad_file_arguments_report_only_the_bad_ones() {
    let (tmp, _) = bad_config_dir();
    let good = tmp.path().join("fine");
    let bad = tmp.path().join("truncated");
    let run = Run::of(check([&good, &bad]));
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(run.lines().len(), 1, "{run}");
    assert!(run.stdout.starts_with(&format!("{}: invalid JSON", bad.display())), "{run}");
}

#[test]
fn a_dot_file_argument_is_noted_as_ignored() {
    let (tmp, _) = bad_config_dir();
    for name in [".hidden", "half-written.new"] {
        let file = tmp.path().join(name);
        let run = Run::of(check([&file]));
        // Ignored files are not checked (their content is garbage here).
        assert_eq!(run.code, 0, "{name}\n{run}");
        assert!(run.stderr.contains(&format!("{}: note: colony ignores this file", file.display())), "{run}");
        assert!(!run.stdout.contains("invalid JSON"), "{run}");
    }
    // Next to a valid file: only that one counts.
    let run = Run::of(check([tmp.path().join(".hidden"), tmp.path().join("fine")]));
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stdout.trim(), "ok: 1 program file(s) valid", "{run}");
}

#[test]
fn a_missing_file_or_directory_is_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::of(check([tmp.path().join("nope")]));
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("nope: cannot read"), "{run}");

    let run = Run::of(check([OsStr::new("--config"), tmp.path().join("nodir").as_os_str()]));
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("cannot read the config directory"), "{run}");
}

#[test]
fn an_unknown_key_is_a_note_not_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("web"), r#"{"args": ["true"], "critcal": true}"#).unwrap();
    let run = Run::of(check([OsStr::new("--config"), tmp.path().as_os_str()]));
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stderr.contains("\"critcal\" is not used by colony"), "{run}");
}

#[test]
fn quiet_prints_nothing_on_success_but_problems_on_failure() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("web"), r#"{"args": ["true"]}"#).unwrap();
    let run = Run::of(check([OsStr::new("--quiet"), OsStr::new("--config"), tmp.path().as_os_str()]));
    assert_eq!((run.code, run.stdout.as_str(), run.stderr.as_str()), (0, "", ""), "{run}");
    fs::write(tmp.path().join("bad"), "{").unwrap();
    let run = Run::of(check([OsStr::new("-q"), OsStr::new("--config"), tmp.path().as_os_str()]));
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(run.lines().len(), 1, "{run}");
}

#[test]
fn usage_errors_exit_2() {
    let run = Run::of(check(Vec::<&str>::new()));
    assert_eq!(run.code, 2, "no arguments\n{run}");
    assert!(run.stderr.contains("--config DIR"), "{run}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "one line, no backtrace\n{run}");

    let tmp = tempfile::tempdir().unwrap();
    let run = Run::of(check([OsStr::new("--config"), tmp.path().as_os_str(), OsStr::new("some-file")]));
    assert_eq!(run.code, 2, "--config and FILE together\n{run}");

    let run = Run::of(check(["--no-such-flag"]));
    assert_eq!(run.code, 2, "unknown flag\n{run}");
}

/// DESIGN.md §2.1: subdirectories of the config directory are ignored
/// (ncolony breaks on them; colony must not). The supervisor skips one, but
/// `colony check --config` counts it as a problem and exits 1, so a
/// configuration-management pipeline fails on a directory the supervisor
/// runs happily.
#[test]
fn a_subdirectory_of_the_config_directory_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("web"), r#"{"args": ["true"]}"#).unwrap();
    fs::create_dir(tmp.path().join("archive")).unwrap();
    let run = Run::of(check([OsStr::new("--config"), tmp.path().as_os_str()]));
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stdout.trim(), "ok: 1 program file(s) valid", "{run}");
}
