//! The ctl's argument handling into files: `colony_ctl::cli::run` with an
//! argv built from the fuzz input, against a fresh temporary directory.
//!
//! Checked on every input:
//! * it never panics and exits 0, 1 or 2;
//! * exit 0: at most one file changed, directly in the config or the
//!   messages directory, and nothing else anywhere (no temporary file left):
//!   a config file written (by `add`) has a valid program name and parses
//!   with `ProgramSpec::parse`, in ctl's own byte style; a config file may
//!   only disappear (by `remove`); a message file has a proper message name
//!   and parses with `Message::parse`;
//! * exit non-zero: nothing was written, changed or removed anywhere,
//!   with one documented exception: `restart --wait` sends its RESTART
//!   and then fails if the program does not come back in time, so one
//!   RESTART message may remain.
//!
//! Safety of the harness itself: the directories (`--config`, `--messages`,
//! `--status`) and the `--extras` file are only ever given as tokens that
//! point inside the temporary directory; free text that clap could take for
//! one of those options (or for `--wait`/`--timeout`, which could make a run
//! sleep for 30 s) is dropped, and the `COLONY_*_DIR` variables are removed.
//! The ctl's argument handling into files: `colony_ctl::cli::run` with an
//! argv built from the fuzz input, against a fresh temporary directory.
//!
//! The input is text, so that seeds can be written by hand:
//!
//! ```text
//! SETUP                   one line of flag letters, below
//! WORD                    one argv word per line (any bytes but '\n'),
//! WORD                    or a macro: @config @messages @status @extras
//! ...                     @extras-missing @extras-dir @wait @wait0 @waitnan
//! ==extras==              optional: the bytes of the --extras file
//! ...
//! ==status==              optional: the bytes of STATUS/db
//! ...
//! ```
//!
//! SETUP letters: `W` config/web exists (valid), `B` config/broken exists
//! (invalid JSON); the config directory is `c` omitted, `C` missing, `F` a
//! regular file (else an existing directory), likewise `m` `M` `G` for the
//! messages directory; `s` --status=TMP/status, `S` --status=a missing
//! directory (else MESSAGES/.status); `g` the --config/--messages/--status
//! options go last (else first), `n` they are not added (only macros give
//! them); status files: `D` a live daemon (this process), `d` a dead one,
//! `r` web running (pid 1), `o` web stopped, `x` web disabled.
//!
//! Checked on every input:
//! * it never panics and exits 0, 1 or 2;
//! * exit 0: at most one file changed, directly in the config or the
//!   messages directory, and nothing else anywhere (no temporary file left):
//!   a config file written (by `add`) has a valid program name and parses
//!   with `ProgramSpec::parse`, in ctl's own byte style; a config file may
//!   only disappear (by `remove`); a message file has a proper message name
//!   and parses with `Message::parse`;
//! * exit non-zero: nothing was written, changed or removed anywhere,
//!   with one documented exception: `restart --wait` sends its RESTART
//!   and then fails if the program does not come back in time, so one
//!   RESTART message may remain.
//!
//! Safety of the harness itself: the directories (`--config`, `--messages`,
//! `--status`) and the `--extras` file are only ever given by the harness,
//! pointing inside the temporary directory; a word that clap could take for
//! one of those options (long options may be abbreviated) or for
//! `--wait`/`--timeout` (a run could sleep 30 s) is dropped, so is every
//! subcommand outside the list below (`maintenance`, and any added later:
//! they are read from `colony-ctl --help`), and the `COLONY_*` variables
//! are removed (but for COLONY_FUZZ_*). Set COLONY_FUZZ_TRACE=1 to print
//! each run's argv, exit code and changes on stderr.
#![no_main]

use colony_ctl::{Message, ProgramName, ProgramSpec};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq)]
enum DirChoice {
    Dir,
    Missing,
    File,
    Omitted,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum StatusChoice {
    Default,
    Own,
    Missing,
}

struct Input<'a> {
    setup: &'a [u8],
    config: DirChoice,
    messages: DirChoice,
    status: StatusChoice,
    words: Vec<&'a [u8]>,
    extras: &'a [u8],
    status_db: Option<&'a [u8]>,
}

fn split_once<'a>(data: &'a [u8], sep: &[u8]) -> (&'a [u8], Option<&'a [u8]>) {
    match data.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (&data[..i], Some(&data[i + sep.len()..])),
        None => (data, None),
    }
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Input<'a> {
        let (main, status_db) = split_once(data, b"\n==status==\n");
        let (main, extras) = split_once(main, b"\n==extras==\n");
        let mut lines = main.split(|&b| b == b'\n');
        let setup = lines.next().unwrap_or_default();
        let has = |c: u8| setup.contains(&c);
        let dir = |omitted, missing, file| {
            if has(omitted) {
                DirChoice::Omitted
            } else if has(missing) {
                DirChoice::Missing
            } else if has(file) {
                DirChoice::File
            } else {
                DirChoice::Dir
            }
        };
        Input {
            setup,
            config: dir(b'c', b'C', b'F'),
            messages: dir(b'm', b'M', b'G'),
            status: if has(b's') {
                StatusChoice::Own
            } else if has(b'S') {
                StatusChoice::Missing
            } else {
                StatusChoice::Default
            },
            words: lines.take(32).collect(),
            extras: extras.unwrap_or_default(),
            status_db,
        }
    }

    fn has(&self, c: u8) -> bool {
        self.setup.contains(&c)
    }
}

/// Paths of one run, all inside `root`.
struct Paths {
    root: PathBuf,
    config: PathBuf,
    messages: PathBuf,
    status: PathBuf,
    extras: PathBuf,
}

impl Paths {
    fn dir_arg(&self, opt: &str, path: &Path, choice: DirChoice) -> Option<OsString> {
        let path = match choice {
            DirChoice::Dir => path.to_path_buf(),
            DirChoice::Missing => self.root.join("missing"),
            DirChoice::File => self.extras.clone(),
            DirChoice::Omitted => return None,
        };
        let mut a = OsString::from(format!("--{opt}="));
        a.push(path);
        Some(a)
    }

    fn status_arg(&self, choice: StatusChoice) -> Option<OsString> {
        let path = match choice {
            StatusChoice::Default => return None,
            StatusChoice::Own => self.status.clone(),
            StatusChoice::Missing => self.root.join("nope"),
        };
        let mut a = OsString::from("--status=");
        a.push(path);
        Some(a)
    }

    fn globals(&self, input: &Input) -> Vec<OsString> {
        let mut g = Vec::new();
        g.extend(self.dir_arg("config", &self.config, input.config));
        g.extend(self.dir_arg("messages", &self.messages, input.messages));
        g.extend(self.status_arg(input.status));
        g
    }
}

/// The argv words for one input word: a macro, or the word itself (none
/// if the harness reserves it).
fn expand(word: &[u8], p: &Paths, input: &Input) -> Vec<OsString> {
    let path = |opt: &str, path: &Path| {
        let mut a = OsString::from(opt);
        a.push(path);
        vec![a]
    };
    match word {
        b"@config" => p.dir_arg("config", &p.config, DirChoice::Dir).into_iter().collect(),
        b"@messages" => p.dir_arg("messages", &p.messages, DirChoice::Dir).into_iter().collect(),
        b"@status" => p.status_arg(StatusChoice::Own).into_iter().collect(),
        b"@globals" => p.globals(input),
        b"@extras" => path("--extras=", &p.extras),
        b"@extras-missing" => path("--extras=", &p.root.join("missing.json")),
        b"@extras-dir" => path("--extras=", &p.config),
        // `--wait` only ever comes with a short `--timeout` (its default is 30 s).
        b"@wait" => vec!["--wait".into(), "--timeout=0.002".into()],
        b"@wait0" => vec!["--timeout=0".into(), "--wait".into()],
        b"@waitnan" => vec!["--wait".into(), "--timeout=NaN".into()],
        w if reserved(w) || blocked_subcommands().iter().any(|b| b.as_bytes() == w) => vec![],
        w => vec![OsString::from_vec(w.to_vec())],
    }
}

fn is_wait(word: &[u8]) -> bool {
    matches!(word, b"@wait" | b"@wait0" | b"@waitnan")
}

/// Whether clap could read `arg` as one of the options the harness keeps
/// for itself (long options may be abbreviated: `infer_long_args`).
fn reserved(arg: &[u8]) -> bool {
    let Some(rest) = arg.strip_prefix(b"--") else { return false };
    let name = rest.split(|&b| b == b'=').next().unwrap_or_default();
    !name.is_empty()
        && ["config", "messages", "status", "extras", "wait", "timeout"]
            .iter()
            .any(|full| full.as_bytes().starts_with(name))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Other,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                out.insert(rel, Entry::Dir);
                walk(root, &path, out);
            } else if ty.is_file() {
                out.insert(rel, Entry::File(std::fs::read(&path).unwrap()));
            } else {
                out.insert(rel, Entry::Other);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn is_message_name(n: &str) -> bool {
    let parts: Vec<&str> = n.split('.').collect();
    parts.len() == 3
        && [20, 10, 6].iter().zip(&parts).all(|(&len, p)| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
}

fn base_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("COLONY_FUZZ_TMP") {
        return d.into();
    }
    // tmpfs: the ctl flushes what it writes, which is slow on a disk.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn setup(input: &Input) -> (tempfile::TempDir, Paths) {
    let tmp = tempfile::Builder::new().prefix("colony-fuzz-").tempdir_in(base_dir()).expect("a temporary directory");
    let root = tmp.path().to_path_buf();
    let p = Paths {
        config: root.join("config"),
        messages: root.join("messages"),
        status: root.join("status"),
        extras: root.join("extras.json"),
        root,
    };
    std::fs::create_dir(&p.config).unwrap();
    std::fs::create_dir(&p.messages).unwrap();
    std::fs::create_dir(&p.status).unwrap();
    if input.has(b'W') {
        std::fs::write(p.config.join("web"), br#"{"args": ["/bin/true"], "group": ["g1"]}"#).unwrap();
    }
    if input.has(b'B') {
        std::fs::write(p.config.join("broken"), b"{\"args\": [").unwrap();
    }
    std::fs::write(&p.extras, input.extras).unwrap();
    let status_dir = match input.status {
        StatusChoice::Own => p.status.clone(),
        StatusChoice::Default => p.messages.join(".status"),
        StatusChoice::Missing => return (tmp, p),
    };
    std::fs::create_dir_all(&status_dir).unwrap();
    for (flag, pid) in [(b'D', std::process::id()), (b'd', 4_000_000_000)] {
        // Our own pid is alive; no pid is ever above 2^22.
        if input.has(flag) {
            let v = json!({"pid": pid, "version": "0.1.0", "started": 1.5, "config": "/c", "messages": "/m",
                "programs": 1, "running": 1, "status_writes": 3, "stopping": false, "updated": 2.5});
            std::fs::write(status_dir.join(colony_ctl::DAEMON_FILE), v.to_string()).unwrap();
        }
    }
    let web = |state: &str, pid: Option<i32>, disabled: bool| {
        json!({"name": "web", "state": state, "pid": pid, "started": 1.5, "instance": 2, "restarts": 1,
            "last_exit": {"code": null, "signal": 15}, "next_start": null, "held": false, "disabled": disabled,
            "since": 1.5, "ready": true, "health": null, "waiting_for": [], "blocked": null})
    };
    let web = if input.has(b'x') {
        Some(web("stopped", None, true))
    } else if input.has(b'o') {
        Some(web("stopped", None, false))
    } else if input.has(b'r') {
        Some(web("running", Some(1), false))
    } else {
        None
    };
    if let Some(v) = web {
        std::fs::write(status_dir.join("web"), v.to_string()).unwrap();
    }
    if let Some(bytes) = input.status_db {
        std::fs::write(status_dir.join("db"), bytes).unwrap();
    }
    (tmp, p)
}

/// The subcommands this target runs: the ones that work on the config,
/// messages and status directories, whose paths the harness controls.
/// Every other subcommand `colony-ctl --help` lists (say `maintenance`,
/// whose `--spool` defaults to a system directory) is dropped from argv, so
/// a subcommand added later cannot make the fuzzer write outside its
/// temporary directory; cover it here once its paths are controlled too.
const SUBCOMMANDS: &[&str] =
    &["add", "remove", "restart", "stop", "start", "signal", "status", "restart-all", "restart-group", "list", "help"];

/// The subcommands `colony-ctl --help` lists that are not in [`SUBCOMMANDS`].
fn blocked_subcommands() -> &'static [String] {
    static BLOCKED: OnceLock<Vec<String>> = OnceLock::new();
    BLOCKED.get_or_init(|| {
        let help = help_text();
        let commands = help.split("Commands:").nth(1).expect("colony-ctl --help lists its commands");
        let names: Vec<String> = commands
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        assert!(names.iter().any(|n| n == "add"), "cannot read the commands from: {help}");
        names.into_iter().filter(|n| !SUBCOMMANDS.contains(&n.as_str())).collect()
    })
}

/// What `colony-ctl --help` prints on standard output (which libFuzzer may
/// have closed: it is pointed at a file for the call).
fn help_text() -> String {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    // SAFETY (all blocks): plain descriptor calls; standard output is
    // pointed at the file for one call and then put back.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } < 0 {
        // Closed: give it /dev/null, so the file below does not become it.
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null").expect("/dev/null");
        assert!(unsafe { libc::dup2(null.as_raw_fd(), 1) } == 1);
    }
    let mut file = tempfile::tempfile().expect("a temporary file");
    let _ = std::io::stdout().flush();
    let saved = unsafe { libc::dup(1) };
    assert!(saved >= 0 && unsafe { libc::dup2(file.as_raw_fd(), 1) } == 1);
    let code = colony_ctl::cli::run("colony-ctl", ["colony-ctl".into(), OsString::from("--help")]);
    let _ = std::io::stdout().flush();
    unsafe {
        libc::dup2(saved, 1);
        libc::close(saved);
    }
    assert_eq!(code, 0);
    let mut text = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut text).unwrap();
    text
}

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // No directory may come from the environment (COLONY_CONFIG_DIR, ...).
        for (var, _) in std::env::vars_os() {
            let name = var.to_string_lossy();
            if name.starts_with("COLONY_") && !name.starts_with("COLONY_FUZZ_") {
                std::env::remove_var(var);
            }
        }
        blocked_subcommands();
    });
}

fuzz_target!(|data: &[u8]| {
    init();
    let input = Input::parse(data);
    let (_tmp, p) = setup(&input);

    let globals = if input.has(b'n') { Vec::new() } else { p.globals(&input) };
    let mut rest: Vec<OsString> = Vec::new();
    for w in &input.words {
        rest.extend(expand(w, &p, &input));
    }
    let waits = input.words.iter().any(|w| is_wait(w));
    let mut argv: Vec<OsString> = vec!["colony-ctl".into()];
    if input.has(b'g') {
        argv.extend(rest);
        argv.extend(globals);
    } else {
        argv.extend(globals);
        argv.extend(rest);
    }

    let before = snapshot(&p.root);
    let code = colony_ctl::cli::run("colony-ctl", argv.clone());
    let after = snapshot(&p.root);

    if std::env::var_os("COLONY_FUZZ_TRACE").is_some() {
        // Replaying a corpus with this set shows what the inputs do.
        let changed: Vec<_> = after.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
        eprintln!("TRACE exit={code} changed={changed:?} argv={argv:?} blocked={:?}", blocked_subcommands());
    }
    assert!([0, 1, 2].contains(&code), "exit code {code} for {argv:?}");
    let mut changes: Vec<(&PathBuf, Option<&Entry>, Option<&Entry>)> = Vec::new();
    for (path, entry) in &after {
        if before.get(path) != Some(entry) {
            changes.push((path, before.get(path), Some(entry)));
        }
    }
    for (path, entry) in &before {
        if !after.contains_key(path) {
            changes.push((path, Some(entry), None));
        }
    }

    if code != 0 {
        let restart_sent = waits
            && changes.len() == 1
            && matches!(changes[0], (path, None, Some(Entry::File(bytes)))
                if path.parent() == Some(Path::new("messages"))
                    && matches!(Message::parse(bytes), Ok(Message::Restart(_))));
        assert!(changes.is_empty() || restart_sent, "exit {code} for {argv:?}, yet it changed {changes:?}");
        return;
    }
    assert!(changes.len() <= 1, "exit 0 for {argv:?} changed more than one file: {changes:?}");
    let Some(&(path, old, new)) = changes.first() else { return };
    let dir = path.parent().and_then(Path::to_str).unwrap_or_default();
    let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name");
    match (dir, old, new) {
        ("config", _, Some(Entry::File(bytes))) => {
            assert!(ProgramName::new(name).is_ok(), "{argv:?} wrote config file {name:?}");
            let spec = ProgramSpec::parse(bytes).unwrap_or_else(|e| {
                panic!("{argv:?} exited 0 but wrote {name:?} = {:?}: {e}", String::from_utf8_lossy(bytes))
            });
            // Written in ctl's own style: rewriting changes nothing.
            let again = ProgramSpec::from_map(spec.to_map()).expect("the written spec, rewritten");
            if &again.to_bytes() != bytes {
                // Only a float may have moved, by a few units in the last place (F1).
                let a: Value = serde_json::from_slice(&again.to_bytes()).unwrap();
                let b: Value = serde_json::from_slice(bytes).unwrap();
                assert!(colony_fuzz::values_close(&a, &b), "{argv:?}: not in ctl's byte style");
            }
        }
        ("config", Some(Entry::File(_)), None) => {
            assert!(ProgramName::new(name).is_ok(), "{argv:?} removed {name:?}");
        }
        ("messages", None, Some(Entry::File(bytes))) => {
            assert!(is_message_name(name), "{argv:?} wrote message {name:?}");
            let m = Message::parse(bytes)
                .unwrap_or_else(|e| panic!("{argv:?} wrote message {:?}: {e}", String::from_utf8_lossy(bytes)));
            assert_eq!(&m.to_bytes(), bytes);
        }
        _ => panic!("exit 0 for {argv:?}, and an unexpected change: {path:?}: {old:?} -> {new:?}"),
    }
});
