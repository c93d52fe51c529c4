//! Integration tests of the `colony-ctl` command (and of `colony ctl`):
//!
//! * byte-for-byte compatibility with ncolony's `python -m ncolony ctl`
//!   (needs `COLONY_TEST_NCOLONY_PYTHON`, see [`ncolony_python`]);
//! * colony's additions (positional command, groups, restart-group, list,
//!   environment variables, the `colony ctl` spelling);
//! * bad input: a short message, the documented exit code, nothing written;
//! * concurrent writers: readers never see a partial file, no temporary
//!   file is left behind, message names sort in creation order.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const CTL: &str = env!("CARGO_BIN_EXE_colony-ctl");

/// The ncolony release the compatibility cases were captured with.
const NCOLONY: &str = "ncolony==2024.1.11.74140";

/// The extras file of ncolony's documentation (NCOLONY.md §2.1).
const EXTRAS: &str =
    r#"{"ncolony.beatcheck": {"period": 10, "grace": 3, "status": "/tmp/st"}, "group": ["g1"], "args": ["OVERRIDE"]}"#;

/// Extras replacing keys set by flags (they keep their place) and adding
/// a nested unknown key of every JSON type.
const OVERRIDE: &str = r#"{"env": {"Z": "z"}, "uid": 7, "x-colony": {"nested": [1, -3, 2.5, 0.1, 1e100, null, true, false, "\u00e9\ud83d\ude00", {}, []]}}"#;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A fresh temporary directory `ROOT` holding `ROOT/c` (config) and `ROOT/m`
/// (messages). Commands run with `ROOT` as their working directory, so the
/// same relative argv works in every pair.
struct Pair {
    tmp: TempDir,
}

impl Pair {
    fn new() -> Pair {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("c")).unwrap();
        fs::create_dir(tmp.path().join("m")).unwrap();
        Pair { tmp }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn config(&self) -> PathBuf {
        self.root().join("c")
    }

    fn messages(&self) -> PathBuf {
        self.root().join("m")
    }

    /// Writes `ROOT/name`.
    fn file(&self, name: &str, content: &str) -> &Pair {
        fs::write(self.root().join(name), content).unwrap();
        self
    }

    /// `colony-ctl ARGV` in `ROOT`.
    fn raw(&self, argv: &[&str]) -> Output {
        run(ctl_command().current_dir(self.root()).args(argv))
    }

    /// `colony-ctl --messages m --config c ARGS` in `ROOT`.
    fn ctl(&self, args: &[&str]) -> Output {
        self.raw(&std_argv(args).iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Like [`Pair::ctl`], and the command must succeed silently.
    fn ok(&self, args: &[&str]) {
        let out = self.ctl(args);
        assert_success(&out, &format!("{args:?}"));
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", text(&out.stdout));
    }

    /// The config file `name`, parsed.
    fn config_value(&self, name: &str) -> Value {
        parse(&fs::read(self.config().join(name)).unwrap())
    }
}

/// `--messages m --config c ARGS`.
fn std_argv(args: &[&str]) -> Vec<String> {
    ["--messages", "m", "--config", "c"].iter().chain(args).map(|s| s.to_string()).collect()
}

/// A `colony-ctl` command that does not see the caller's directory variables.
fn ctl_command() -> Command {
    let mut cmd = Command::new(CTL);
    cmd.env_remove("COLONY_CONFIG_DIR").env_remove("COLONY_MESSAGES_DIR");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", text(bytes)))
}

fn assert_success(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: exit {:?}, stderr {:?}", out.status.code(), text(&out.stderr));
    assert!(out.stderr.is_empty(), "{what}: unexpected stderr {:?}", text(&out.stderr));
}

/// Every entry below `dir`, by relative path: file bytes, or `None` for a
/// directory. Dot-files and temporaries are included on purpose.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            if path.is_dir() {
                out.insert(rel, None);
                walk(base, &path, out);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The entries of `dir` as (name, bytes), sorted by name.
fn entries(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), fs::read(e.path()).unwrap())
        })
        .collect();
    all.sort();
    all
}

fn names(dir: &Path) -> Vec<String> {
    entries(dir).into_iter().map(|(n, _)| n).collect()
}

/// colony's message names: 20-digit nanosecond stamp, 10-digit pid, 6-digit sequence.
fn is_colony_message_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 3
        && [20, 10, 6].iter().zip(&parts).all(|(&len, p)| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
}

/// ncolony's message names: `%03dMessage.<pid>`.
fn is_ncolony_message_name(name: &str) -> bool {
    name.split_once("Message.").is_some_and(|(n, pid)| {
        n.len() >= 3
            && n.bytes().all(|b| b.is_ascii_digit())
            && !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
    })
}

fn no_panic(stderr: &str, what: &str) {
    let lower = stderr.to_lowercase();
    assert!(!lower.contains("panicked") && !lower.contains("backtrace"), "{what}: {stderr:?}");
}

// ---------------------------------------------------------------------------
// a. ncolony compatibility
// ---------------------------------------------------------------------------

/// The Python interpreter that has ncolony installed, from
/// `COLONY_TEST_NCOLONY_PYTHON`. Unset: the test fails under CI and is
/// skipped (with a note on stderr) elsewhere.
fn ncolony_python() -> Option<PathBuf> {
    match std::env::var_os("COLONY_TEST_NCOLONY_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ if std::env::var_os("CI").is_some() => panic!(
            "COLONY_TEST_NCOLONY_PYTHON is not set, but CI is: the ncolony compatibility tests must run in CI \
             (.ci/run installs {NCOLONY} in a venv and exports the variable)"
        ),
        _ => {
            eprintln!(
                "SKIPPED ncolony compatibility: set COLONY_TEST_NCOLONY_PYTHON to a python with {NCOLONY} \
                 installed (e.g. /tmp/ncvenv/bin/python) to run it"
            );
            None
        }
    }
}

/// A compatibility case: the full argv of each step, run in order.
struct Case {
    label: &'static str,
    steps: Vec<Vec<String>>,
}

fn case(label: &'static str, steps: &[&[&str]]) -> Case {
    Case { label, steps: steps.iter().map(|s| std_argv(s)).collect() }
}

fn raw_case(label: &'static str, steps: &[&[&str]]) -> Case {
    Case { label, steps: steps.iter().map(|s| s.iter().map(|a| a.to_string()).collect()).collect() }
}

fn compat_cases() -> Vec<Case> {
    vec![
        case("plain", &[&["add", "sleeper", "--cmd", "/bin/sleep", "--arg", "1000"]]),
        case(
            "many args",
            &[&[
                "add",
                "many",
                "--cmd",
                "/bin/echo",
                "--arg",
                "one",
                "--arg",
                "two words",
                "--arg",
                "3",
                "--arg",
                "tab\there\nnewline",
                "--arg",
                "quote\"back\\slash/",
                "--arg",
                "ctrl\u{1}del\u{7f}",
                "--arg",
                "$HOME '*'",
            ]],
        ),
        case(
            "env repeated, last wins",
            &[&["add", "dup", "--cmd", "/usr/bin/env", "--env", "A=1", "--env", "B=2", "--env", "A=3"]],
        ),
        case(
            "env with '=' in the value",
            &[&["add", "eq", "--cmd", "/usr/bin/env", "--env", "EQ=a=b=c", "--env", "EMPTY=", "--env", "SP=x y"]],
        ),
        case("uid and gid", &[&["add", "ids", "--cmd", "/usr/bin/id", "--uid", "1000", "--gid", "0"]]),
        case(
            "env-inherit repeated",
            &[&[
                "add",
                "inh",
                "--cmd",
                "/usr/bin/env",
                "--env-inherit",
                "PATH",
                "--env-inherit",
                "HOME",
                "--env-inherit",
                "PATH",
            ]],
        ),
        case(
            "every flag (NCOLONY.md example)",
            &[&[
                "add",
                "full",
                "--cmd",
                "/usr/bin/env",
                "--arg",
                "-0",
                "--arg",
                "x y",
                "--env",
                "FOO=bar",
                "--env",
                "EQ=a=b=c",
                "--uid",
                "1000",
                "--gid",
                "1000",
                "--env-inherit",
                "PATH",
                "--env-inherit",
                "HOME",
            ]],
        ),
        case(
            "extras override args, add beatcheck and group",
            &[&["add", "withextras", "--cmd", "/bin/true", "--extras", "extras.json"]],
        ),
        case(
            "extras replace env and uid in place",
            &[&[
                "add",
                "over",
                "--cmd",
                "/bin/true",
                "--env",
                "A=1",
                "--uid",
                "1",
                "--gid",
                "2",
                "--env-inherit",
                "H",
                "--extras",
                "override.json",
            ]],
        ),
        case(
            "unicode name, args and env",
            &[&[
                "add",
                "üni",
                "--cmd",
                "/bin/echo",
                "--arg",
                "héllo",
                "--arg",
                "😀 ✓",
                "--env",
                "K=välue",
                "--env",
                "Ü=ß",
            ]],
        ),
        case("--arg=-n --arg=--foo", &[&["add", "dash", "--cmd", "/bin/echo", "--arg=-n", "--arg=--foo"]]),
        case("empty --arg", &[&["add", "emptyargs", "--cmd", "/bin/echo", "--arg", ""]]),
        raw_case(
            "leading word ctl",
            &[&["ctl", "--messages", "m", "--config", "c", "add", "sleeper", "--cmd", "/bin/sleep", "--arg", "1"]],
        ),
        raw_case(
            "prefix abbreviations",
            &[&[
                "--mess",
                "m",
                "--conf",
                "c",
                "add",
                "dup",
                "--cmd",
                "/bin/echo",
                "--env",
                "A=1",
                "--env",
                "A=2",
                "--ext",
                "extras.json",
            ]],
        ),
        case("add overwrites", &[&["add", "x", "--cmd", "/bin/a"], &["add", "x", "--cmd", "/bin/b", "--arg", "c"]]),
        case("remove", &[&["add", "x", "--cmd", "/bin/a"], &["add", "y", "--cmd", "/bin/b"], &["remove", "x"]]),
        case("restart", &[&["add", "sleeper", "--cmd", "/bin/sleep", "--arg", "1000"], &["restart", "sleeper"]]),
        case("restart of a unicode name", &[&["add", "é", "--cmd", "/bin/true"], &["restart", "é"]]),
        case("restart-all", &[&["restart-all"]]),
        case("restart then restart-all", &[&["add", "w", "--cmd", "/bin/true"], &["restart", "w"], &["restart-all"]]),
    ]
}

/// Runs `case` through ncolony and colony-ctl in two fresh pairs and
/// returns every difference found.
fn compare_with_ncolony(py: &Path, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let (nc, co) = (Pair::new(), Pair::new());
    for pair in [&nc, &co] {
        pair.file("extras.json", EXTRAS).file("override.json", OVERRIDE);
    }
    for argv in &case.steps {
        let theirs = run(Command::new(py).current_dir(nc.root()).args(["-m", "ncolony"]).args(argv));
        let ours = run(ctl_command().current_dir(co.root()).args(argv));
        if !theirs.status.success() {
            problems.push(format!("ncolony failed on {argv:?}: {}", text(&theirs.stderr)));
        }
        if !ours.status.success() || !ours.stderr.is_empty() || !ours.stdout.is_empty() {
            problems.push(format!(
                "colony-ctl on {argv:?}: exit {:?}, stdout {:?}, stderr {:?}",
                ours.status.code(),
                text(&ours.stdout),
                text(&ours.stderr)
            ));
        }
    }
    let (theirs, ours) = (entries(&nc.config()), entries(&co.config()));
    if names(&nc.config()) != names(&co.config()) {
        problems.push(format!(
            "config files differ: ncolony {:?}, colony {:?}",
            names(&nc.config()),
            names(&co.config())
        ));
    }
    for ((name, t), (_, o)) in theirs.iter().zip(&ours) {
        if parse(t) != parse(o) {
            problems.push(format!("config {name}: JSON differs: ncolony {}, colony {}", text(t), text(o)));
        } else if t != o {
            problems.push(format!("config {name}: bytes differ:\n  ncolony {}\n  colony  {}", text(t), text(o)));
        }
    }
    // ncolony's one-shot names (000Message.<pid>) do not sort in creation
    // order, so compare the messages as a multiset; names differ by design.
    let (theirs, ours) = (entries(&nc.messages()), entries(&co.messages()));
    for (name, _) in &theirs {
        if !is_ncolony_message_name(name) {
            problems.push(format!("unexpected ncolony message name {name:?}"));
        }
    }
    for (name, _) in &ours {
        if !is_colony_message_name(name) {
            problems.push(format!("unexpected colony message name {name:?}"));
        }
    }
    let mut t: Vec<Vec<u8>> = theirs.into_iter().map(|(_, b)| b).collect();
    let mut o: Vec<Vec<u8>> = ours.into_iter().map(|(_, b)| b).collect();
    t.sort();
    o.sort();
    let parsed = |v: &[Vec<u8>]| v.iter().map(|b| parse(b)).collect::<Vec<_>>();
    if parsed(&t) != parsed(&o) {
        problems.push(format!(
            "messages differ: ncolony {:?}, colony {:?}",
            t.iter().map(|b| text(b)).collect::<Vec<_>>(),
            o.iter().map(|b| text(b)).collect::<Vec<_>>()
        ));
    } else if t != o {
        problems.push("message bytes differ (same JSON)".into());
    }
    problems.into_iter().map(|p| format!("[{}] {p}", case.label)).collect()
}

#[test]
fn writes_the_same_files_as_ncolony() {
    let Some(py) = ncolony_python() else { return };
    let cases = compat_cases();
    assert!(cases.len() >= 12);
    let problems: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases.iter().map(|c| s.spawn(|| compare_with_ncolony(&py, c))).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(problems.is_empty(), "{} difference(s) from ncolony:\n{}", problems.len(), problems.join("\n"));
}

/// Sanity check of the comparison itself: the expected bytes of the
/// documented cases are written, with or without ncolony at hand.
#[test]
fn writes_the_documented_ncolony_bytes() {
    let p = Pair::new();
    p.file("extras.json", EXTRAS);
    p.ok(&["add", "sleeper", "--cmd", "/bin/sleep", "--arg", "1000"]);
    p.ok(&["add", "üni", "--cmd", "/bin/echo", "--arg", "héllo", "--env", "K=välue"]);
    p.ok(&["add", "dup", "--cmd", "/bin/echo", "--env", "A=1", "--env", "A=2", "--ext", "extras.json"]);
    p.ok(&["restart", "sleeper"]);
    let expected = [
        (
            "dup",
            r#"{"args": ["OVERRIDE"], "env": {"A": "2"}, "ncolony.beatcheck": {"period": 10, "grace": 3, "status": "/tmp/st"}, "group": ["g1"]}"#,
        ),
        ("sleeper", r#"{"args": ["/bin/sleep", "1000"]}"#),
        ("üni", r#"{"args": ["/bin/echo", "h\u00e9llo"], "env": {"K": "v\u00e4lue"}}"#),
    ];
    let got = entries(&p.config());
    assert_eq!(got.len(), expected.len());
    for ((name, bytes), (want_name, want)) in got.iter().zip(expected) {
        assert_eq!((name.as_str(), text(bytes).as_str()), (want_name, want));
    }
    let msgs = entries(&p.messages());
    assert_eq!(msgs.len(), 1);
    assert_eq!(text(&msgs[0].1), r#"{"type": "RESTART", "name": "sleeper"}"#);
}

/// Values in `--extras` whose Python `json.dumps` spelling colony-ctl does
/// not reproduce. Ignored until fixed: run with `--ignored` to see them.
#[test]
#[ignore = "known discrepancy: floats below 1e-4 and integers beyond 64 bits in --extras"]
fn extras_numbers_match_python_json() {
    let p = Pair::new();
    // What ncolony (json.loads then json.dumps) writes for each input.
    let cases = [
        ("1e-05", "1e-05"),
        ("0.00001", "1e-05"),
        ("1e-07", "1e-07"),
        ("123456789012345678901234567890", "123456789012345678901234567890"),
        ("-9223372036854775809", "-9223372036854775809"),
        ("18446744073709551616", "18446744073709551616"),
    ];
    let mut bad = Vec::new();
    for (input, python) in cases {
        p.file("n.json", &format!(r#"{{"n": {input}}}"#));
        p.ok(&["add", "n", "--cmd", "x", "--extras", "n.json"]);
        let got = text(&fs::read(p.config().join("n")).unwrap());
        let want = format!(r#"{{"args": ["x"], "n": {python}}}"#);
        if got != want {
            bad.push(format!("{input}: want {want}, got {got}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// ---------------------------------------------------------------------------
// b. colony's additions
// ---------------------------------------------------------------------------

#[test]
fn positional_command_equals_cmd_and_arg() {
    let (a, b) = (Pair::new(), Pair::new());
    a.ok(&["add", "web", "--env", "A=1", "--", "/bin/echo", "hi there", "--flag", "-n", "", "--"]);
    b.ok(&[
        "add",
        "web",
        "--env",
        "A=1",
        "--cmd",
        "/bin/echo",
        "--arg",
        "hi there",
        "--arg=--flag",
        "--arg=-n",
        "--arg",
        "",
        "--arg=--",
    ]);
    assert_eq!(snapshot(a.root()), snapshot(b.root()));
    assert_eq!(
        a.config_value("web"),
        json!({"args": ["/bin/echo", "hi there", "--flag", "-n", "", "--"], "env": {"A": "1"}})
    );
    // A program without arguments.
    a.ok(&["add", "bare", "--", "/bin/true"]);
    assert_eq!(fs::read(a.config().join("bare")).unwrap(), br#"{"args": ["/bin/true"]}"#);
}

#[test]
fn groups_are_written_after_ncolony_keys() {
    let p = Pair::new();
    p.ok(&["add", "w", "--group", "web", "--group", "workers", "--cmd", "/bin/true"]);
    assert_eq!(fs::read(p.config().join("w")).unwrap(), br#"{"args": ["/bin/true"], "group": ["web", "workers"]}"#);
    p.ok(&[
        "add",
        "all",
        "--group",
        "g",
        "--env-inherit",
        "H",
        "--gid",
        "2",
        "--uid",
        "1",
        "--env",
        "A=1",
        "--cmd",
        "x",
    ]);
    assert_eq!(
        text(&fs::read(p.config().join("all")).unwrap()),
        r#"{"args": ["x"], "env": {"A": "1"}, "uid": 1, "gid": 2, "env_inherit": ["H"], "group": ["g"]}"#
    );
    // Extras come last and replace the flag's groups in place.
    p.file("g.json", r#"{"group": ["from-extras"], "cwd": "/srv"}"#);
    p.ok(&["add", "ex", "--group", "g", "--extras", "g.json", "--cmd", "x"]);
    assert_eq!(
        text(&fs::read(p.config().join("ex")).unwrap()),
        r#"{"args": ["x"], "group": ["from-extras"], "cwd": "/srv"}"#
    );
}

#[test]
fn restart_group_writes_one_message() {
    let p = Pair::new();
    p.ok(&["restart-group", "workers"]);
    p.ok(&["restart-group", "grüppe"]);
    let msgs = entries(&p.messages());
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().all(|(n, _)| is_colony_message_name(n)), "{msgs:?}");
    // Sorted by name = creation order.
    assert_eq!(text(&msgs[0].1), r#"{"type": "RESTART-GROUP", "group": "workers"}"#);
    assert_eq!(text(&msgs[1].1), r#"{"type": "RESTART-GROUP", "group": "gr\u00fcppe"}"#);
    assert_eq!(parse(&msgs[1].1), json!({"type": "RESTART-GROUP", "group": "grüppe"}));
    assert!(names(&p.config()).is_empty());
}

#[test]
fn messages_sort_in_creation_order() {
    let p = Pair::new();
    p.ok(&["add", "w", "--cmd", "/bin/true"]);
    p.ok(&["restart", "w"]);
    p.ok(&["restart-all"]);
    p.ok(&["restart-group", "g"]);
    p.ok(&["restart", "w"]);
    let got: Vec<Value> = entries(&p.messages()).iter().map(|(_, b)| parse(b)).collect();
    assert_eq!(
        got,
        [
            json!({"type": "RESTART", "name": "w"}),
            json!({"type": "RESTART-ALL"}),
            json!({"type": "RESTART-GROUP", "group": "g"}),
            json!({"type": "RESTART", "name": "w"}),
        ]
    );
}

#[test]
fn list_shows_programs_sorted() {
    let p = Pair::new();
    let out = p.ctl(&["list"]);
    assert_success(&out, "list (empty)");
    assert!(out.stdout.is_empty());
    let out = p.ctl(&["list", "--json"]);
    assert_success(&out, "list --json (empty)");
    assert_eq!(parse(&out.stdout), json!({}));

    p.ok(&["add", "web", "--cmd", "/bin/echo", "--arg", "hello world", "--arg", "it's", "--env", "A=1"]);
    p.ok(&["add", "a", "--cmd", "sleep", "--arg", "5", "--group", "g"]);
    // Not programs: ignored by every reader.
    fs::write(p.config().join(".hidden.swp"), "junk").unwrap();
    fs::write(p.config().join("half.new"), "{").unwrap();
    let out = p.raw(&["--config", "c", "list"]); // --messages is not needed to list
    assert_success(&out, "list");
    assert_eq!(text(&out.stdout), "a\tsleep 5\nweb\t/bin/echo 'hello world' 'it'\\''s'\n");
    let out = p.raw(&["--config", "c", "list", "--json"]);
    assert_success(&out, "list --json");
    assert_eq!(text(&out.stdout).lines().count(), 1);
    let v = parse(&out.stdout);
    assert_eq!(
        v,
        json!({
            "a": {"args": ["sleep", "5"], "group": ["g"]},
            "web": {"args": ["/bin/echo", "hello world", "it's"], "env": {"A": "1"}},
        })
    );
    assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["a", "web"]);

    // A broken file is reported (one line naming it), the rest still listed, exit 1.
    fs::write(p.config().join("broken"), "{\"args\": ").unwrap();
    let out = p.ctl(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "a\tsleep 5\nweb\t/bin/echo 'hello world' 'it'\\''s'\n");
    let err = text(&out.stderr);
    no_panic(&err, "list with a broken file");
    assert!(err.lines().any(|l| l.contains("broken") && l.contains("invalid JSON")), "{err:?}");
    assert!(err.lines().last().unwrap().starts_with("colony-ctl: "), "{err:?}");
}

#[test]
fn directories_from_the_environment() {
    let p = Pair::new();
    let other = Pair::new();
    let env_cmd = || {
        let mut c = ctl_command();
        c.current_dir(p.root()).env("COLONY_CONFIG_DIR", p.config()).env("COLONY_MESSAGES_DIR", p.messages());
        c
    };
    assert_success(&run(env_cmd().args(["add", "web", "--cmd", "/bin/true"])), "add via env");
    assert_success(&run(env_cmd().args(["restart", "web"])), "restart via env");
    assert_eq!(p.config_value("web"), json!({"args": ["/bin/true"]}));
    assert_eq!(entries(&p.messages()).len(), 1);
    let out = run(env_cmd().arg("list"));
    assert_success(&out, "list via env");
    assert_eq!(text(&out.stdout), "web\t/bin/true\n");

    // Flags win over the environment.
    let flags = [
        OsString::from("--config"),
        other.config().into_os_string(),
        OsString::from("--messages"),
        other.messages().into_os_string(),
    ];
    assert_success(&run(env_cmd().args(&flags).args(["add", "api", "--cmd", "/bin/false"])), "flags over env");
    assert_success(&run(env_cmd().args(&flags).arg("restart-all")), "flags over env");
    assert_eq!(names(&other.config()), ["api"]);
    assert_eq!(entries(&other.messages()).len(), 1);
    assert_eq!(names(&p.config()), ["web"]);
    assert_eq!(entries(&p.messages()).len(), 1);

    // Neither flag nor variable: a usage error naming both spellings.
    let out = run(ctl_command().current_dir(p.root()).args(["add", "x", "--cmd", "y"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--config") && err.contains("COLONY_CONFIG_DIR"), "{err:?}");
    let out = run(ctl_command().current_dir(p.root()).args(["--config", "c", "restart-all"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("COLONY_MESSAGES_DIR"));
}

#[test]
fn help_and_version_exit_zero() {
    let p = Pair::new();
    let out = p.raw(&["--help"]);
    assert_success(&out, "--help");
    for word in ["add", "remove", "restart", "restart-all", "restart-group", "list"] {
        assert!(text(&out.stdout).contains(word), "--help lacks {word}");
    }
    let out = p.raw(&["--version"]);
    assert_success(&out, "--version");
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// `colony ctl ARGS` and `colony-ctl ARGS` are the same command.
#[test]
fn colony_ctl_subcommand_is_identical() {
    let colony = Path::new(CTL).with_file_name("colony");
    if !colony.is_file() {
        eprintln!("SKIPPED colony ctl comparison: {} is not built (cargo build --workspace)", colony.display());
        return;
    }
    let cases: &[&[&str]] = &[
        &[
            "add",
            "web",
            "--cmd",
            "/bin/echo",
            "--arg",
            "héllo",
            "--env",
            "A=1",
            "--group",
            "g",
            "--extras",
            "extras.json",
        ],
        &["add", "web", "--", "/bin/echo", "-n", "x"],
        &["add", "web", "--arg=-n", "--cmd", "x", "--uid", "3", "--gid", "4", "--env-inherit", "PATH"],
        &["restart-all"],
        &["restart-group", "g"],
        &["list"],
        &["list", "--json"],
        &["restart", "keep"],
        &["remove", "keep"],
        &["restart", "nope"],
        &["remove", "nope"],
        &["add", "../x", "--cmd", "y"],
        &["add", "x", "--env", "NOEQ", "--cmd", "y"],
        &["add", "x", "--cmd", "y", "--bogus"],
        &["add", "x"],
        &[],
    ];
    let colony_cmd = || {
        let mut c = Command::new(&colony);
        c.arg("ctl").env_remove("COLONY_CONFIG_DIR").env_remove("COLONY_MESSAGES_DIR");
        c
    };
    let mut argvs: Vec<Vec<String>> = cases.iter().map(|c| std_argv(c)).collect();
    argvs.push(vec!["ctl".into(), "--mess".into(), "m".into(), "--conf".into(), "c".into(), "restart-all".into()]);
    argvs.push(vec!["--config".into(), "missing".into(), "list".into()]);
    for argv in argvs {
        let (a, b) = (Pair::new(), Pair::new());
        for p in [&a, &b] {
            p.file("extras.json", EXTRAS);
            fs::write(p.config().join("keep"), r#"{"args": ["/bin/true"]}"#).unwrap();
        }
        let ours = run(ctl_command().current_dir(a.root()).args(&argv));
        let theirs = run(colony_cmd().current_dir(b.root()).args(&argv));
        let same_text = |x: &[u8], y: &[u8]| text(x).replace("colony-ctl", "colony ctl") == text(y);
        assert_eq!(ours.status.code(), theirs.status.code(), "{argv:?}");
        assert!(
            same_text(&ours.stdout, &theirs.stdout),
            "{argv:?}: {:?} vs {:?}",
            text(&ours.stdout),
            text(&theirs.stdout)
        );
        assert!(
            same_text(&ours.stderr, &theirs.stderr),
            "{argv:?}: {:?} vs {:?}",
            text(&ours.stderr),
            text(&theirs.stderr)
        );
        assert_eq!(snapshot(&a.config()), snapshot(&b.config()), "{argv:?}");
        let contents = |p: &Pair| entries(&p.messages()).into_iter().map(|(_, b)| b).collect::<Vec<_>>();
        assert_eq!(contents(&a), contents(&b), "{argv:?}");
    }
}

// ---------------------------------------------------------------------------
// c. bad input
// ---------------------------------------------------------------------------

/// Who reports the error: colony-ctl itself (exactly one line, prefixed
/// `colony-ctl: `) or the argument parser (clap: an `error:` line followed
/// by its usage hint).
#[derive(Debug, Clone, Copy)]
enum Reporter {
    Ctl,
    Parser,
}

#[test]
fn bad_input_fails_cleanly_and_writes_nothing() {
    use Reporter::{Ctl, Parser};
    let usage: &[(&[&str], Reporter)] = &[
        (&["add", "../x", "--cmd", "y"], Ctl),
        (&["add", "../c/keep", "--cmd", "y"], Ctl),
        (&["add", ".hidden", "--cmd", "y"], Ctl),
        (&["add", "a.new", "--cmd", "y"], Ctl),
        (&["add", "a/b", "--cmd", "y"], Ctl),
        (&["add", "..", "--cmd", "y"], Ctl),
        (&["add", ".", "--cmd", "y"], Ctl),
        (&["add", "", "--cmd", "y"], Ctl),
        (&["add", "keep", "--cmd", "y", "--env", "NOEQ"], Ctl),
        (&["add", "keep", "--cmd", "y", "--env", "=v"], Ctl),
        (&["add", "keep", "--cmd", "y", "--extras", "array.json"], Ctl),
        (&["add", "keep", "--cmd", "y", "--extras", "notjson.json"], Ctl),
        (&["add", "keep", "--cmd", "y", "--extras", "empty.json"], Ctl),
        (&["add", "keep", "--cmd", "y", "--extras", "missing.json"], Ctl),
        (&["add", "keep", "--cmd", "y", "--extras", "noargs.json"], Ctl),
        (&["add", "keep", "--cmd", "y", "--extras", "baduid.json"], Ctl),
        (&["add", "keep", "--cmd", ""], Ctl),
        (&["add", "keep"], Ctl),
        (&["add", "keep", "--cmd", "y", "--", "z"], Ctl),
        (&["add", "keep", "--arg", "y", "--", "z"], Ctl),
        (&["remove", "../c/keep"], Ctl),
        (&["restart", "a/b"], Ctl),
        (&["restart", ".keep"], Ctl),
        (&["add", "keep", "--cmd", "y", "--bogus"], Parser),
        (&["--bogus", "restart-all"], Parser),
        (&["add", "keep", "--cmd", "y", "--uid", "root"], Parser),
        (&["add", "keep", "--cmd", "y", "--gid", "-1"], Parser),
        (&["restart"], Parser),
        (&["frobnicate"], Parser),
        (&[], Parser),
    ];
    let failure: &[&[&str]] = &[
        &["--messages", "m", "--config", "c", "remove", "nope"],
        &["--messages", "m", "--config", "c", "restart", "nope"],
        &["--messages", "m", "--config", "missing", "add", "x", "--cmd", "y"],
        &["--messages", "m", "--config", "missing", "remove", "keep"],
        &["--messages", "m", "--config", "missing", "restart", "keep"],
        &["--messages", "m", "--config", "missing", "list"],
        &["--messages", "missing", "--config", "c", "restart", "keep"],
        &["--messages", "missing", "--config", "c", "restart-all"],
        &["--messages", "missing", "--config", "c", "restart-group", "g"],
    ];
    let mut cases: Vec<(Vec<String>, i32, Reporter)> = usage.iter().map(|(a, r)| (std_argv(a), 2, *r)).collect();
    // Neither --config nor --messages.
    cases.push((vec!["add".into(), "x".into(), "--cmd".into(), "y".into()], 2, Ctl));
    cases.extend(failure.iter().map(|a| (a.iter().map(|s| s.to_string()).collect(), 1, Ctl)));
    for (argv, code, reporter) in cases {
        let p = Pair::new();
        fs::write(p.config().join("keep"), r#"{"args": ["/bin/true"]}"#).unwrap();
        p.file("array.json", "[1, 2]")
            .file("notjson.json", "{\"args\": ")
            .file("empty.json", "")
            .file("noargs.json", r#"{"args": []}"#)
            .file("baduid.json", r#"{"uid": "root"}"#);
        let before = snapshot(p.root());
        let out = p.raw(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{argv:?}: stderr {err:?}");
        assert!(out.stdout.is_empty(), "{argv:?}: stdout {:?}", text(&out.stdout));
        no_panic(&err, &format!("{argv:?}"));
        match reporter {
            Ctl => {
                assert_eq!(err.lines().count(), 1, "{argv:?}: want one line, got {err:?}");
                assert!(err.starts_with("colony-ctl: ") && err.len() > 20, "{argv:?}: {err:?}");
            }
            Parser => {
                assert_eq!(err.lines().count(), 1, "{argv:?}: want one line, got {err:?}");
                assert!(
                    err.starts_with("colony-ctl: ") && err.ends_with("(see colony-ctl --help)\n"),
                    "{argv:?}: {err:?}"
                );
            }
        }
        assert_eq!(snapshot(p.root()), before, "{argv:?} changed the directories");
    }
}

// ---------------------------------------------------------------------------
// d. concurrency
// ---------------------------------------------------------------------------

/// The config bytes writer `w` produces in round `i` (filler of a
/// writer-specific size, up to 64 KiB).
fn payload(w: usize, i: usize) -> (Vec<String>, String) {
    const SIZES: [usize; 8] = [0, 1, 100, 4096, 10_000, 32 * 1024, 50_000, 64 * 1024];
    let filler: String = std::iter::repeat_n(char::from(b'a' + w as u8), SIZES[w]).collect();
    let args = vec!["/bin/true".to_string(), format!("{w}-{i}"), filler];
    let bytes = format!(r#"{{"args": ["{}", "{}", "{}"]}}"#, args[0], args[1], args[2]);
    (args, bytes)
}

#[test]
fn concurrent_adds_never_show_a_partial_file() {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 50;
    let p = Pair::new();
    let target = p.config().join("same-name");
    let reads = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let p = &p;
                s.spawn(move || {
                    for i in 0..ROUNDS {
                        let (args, _) = payload(w, i);
                        let out = p.ctl(&["add", "same-name", "--cmd", &args[0], "--arg", &args[1], "--arg", &args[2]]);
                        assert_success(&out, &format!("writer {w} round {i}"));
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut reads = 0;
        let mut finished = false;
        while !finished {
            // Observe the writers' state first: a read after all writers are
            // done sees the final content.
            finished = writers.iter().all(|h| h.is_finished());
            assert!(Instant::now() < deadline, "writers did not finish in time");
            let bytes = match fs::read(&target) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::thread::yield_now();
                    continue;
                }
                Err(e) => panic!("read: {e}"),
            };
            let v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("partial or corrupt read ({e}), {} bytes", bytes.len()));
            let args = v["args"].as_array().expect("args");
            let id = args[1].as_str().unwrap();
            let (w, i) = id.split_once('-').unwrap();
            let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
            assert!(w < WRITERS && i < ROUNDS, "{id}");
            assert_eq!(text(&bytes), payload(w, i).1, "content of {id} is not what was written");
            reads += 1;
        }
        for h in writers {
            h.join().unwrap();
        }
        reads
    });
    assert!(reads > 0);
    // The last write of some writer is what remains; no temporaries.
    assert_eq!(names(&p.config()), ["same-name"]);
    let v = p.config_value("same-name");
    let id = v["args"][1].as_str().unwrap();
    assert!(id.ends_with(&format!("-{}", ROUNDS - 1)), "final content is from {id}");
    assert!(names(&p.messages()).is_empty());
}

#[test]
fn concurrent_messages_are_distinct_and_ordered_per_writer() {
    const WRITERS: usize = 6;
    const ROUNDS: usize = 25;
    let p = Pair::new();
    p.ok(&["add", "web", "--cmd", "/bin/true"]);
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let p = &p;
            s.spawn(move || {
                for i in 0..ROUNDS {
                    // Zero-padded so that the expected order is also the group's sort order.
                    let out = p.ctl(&["restart-group", &format!("p{w}-{i:03}")]);
                    assert_success(&out, &format!("writer {w} message {i}"));
                }
            });
        }
        // Plus a burst of simultaneous `restart web` processes.
        let burst: Vec<_> = (0..8)
            .map(|_| {
                ctl_command()
                    .current_dir(p.root())
                    .args(std_argv(&["restart", "web"]))
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in burst {
            assert!(child.wait().unwrap().success());
        }
    });
    // Every writer has exited: all its files are in place.
    let total = WRITERS * ROUNDS + 8;
    let msgs = entries(&p.messages());
    assert_eq!(msgs.len(), total, "message files were lost or overwritten");
    let mut restarts = 0;
    let mut seen: Vec<Vec<usize>> = vec![Vec::new(); WRITERS];
    for (name, bytes) in &msgs {
        assert!(is_colony_message_name(name), "{name:?}");
        match parse(bytes) {
            v if v == json!({"type": "RESTART", "name": "web"}) => restarts += 1,
            v => {
                assert_eq!(v["type"], "RESTART-GROUP", "{v}");
                let g = v["group"].as_str().unwrap();
                let (w, i) = g.strip_prefix('p').unwrap().split_once('-').unwrap();
                seen[w.parse::<usize>().unwrap()].push(i.parse().unwrap());
            }
        }
    }
    assert_eq!(restarts, 8);
    // In name order, each writer's messages appear in the order it wrote them.
    for (w, order) in seen.iter().enumerate() {
        assert_eq!(*order, (0..ROUNDS).collect::<Vec<_>>(), "writer {w}'s messages sort out of order");
    }
    assert_eq!(names(&p.config()), ["web"]);
}
