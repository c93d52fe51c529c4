//! The program spec: one config file, parsed, validated and written back.
//!
//! Depends on `serde_json` and the JSON style module only; no I/O here.

use crate::json::to_python_json;
use crate::policy::Policies;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The keys that colony reads from a config file. Every other key is kept
/// as it is (in the file and in `NCOLONY_CONFIG`) and otherwise ignored.
pub const KNOWN_KEYS: &[&str] = &[
    "args",
    "env",
    "env_inherit",
    "uid",
    "gid",
    "group",
    "ncolony.beatcheck",
    "cwd",
    "killtime",
    "stop_signal",
    "disabled",
    "critical",
    "log",
    "restart",
    "success_codes",
    "no_restart_codes",
    "give_up",
    "heartbeat",
    "liveness",
    "readiness",
    "after",
    "umask",
    "nice",
    "limits",
];

/// The `ncolony.beatcheck` key: the program touches `status` at least every
/// `period` seconds; it is stale once `period * grace` has passed without.
#[derive(Debug, Clone, PartialEq)]
pub struct Beatcheck {
    /// Seconds between two heartbeats.
    pub period: f64,
    /// Multiplier of `period` allowed after a (re)start before checking.
    pub grace: f64,
    /// The heartbeat file, or a directory holding one file per program.
    pub status: String,
}

/// A parsed and validated config file.
///
/// The typed fields are what colony acts on; the file's bytes, unknown keys
/// included, are kept as they are and returned by [`ProgramSpec::to_bytes`]
/// (a spec built in memory is formatted as ncolony's ctl writes it).
///
/// ```
/// use colony_ctl::ProgramSpec;
/// let spec = ProgramSpec::parse(br#"{"args": ["sleep", "10"], "env": {"A": "1"}, "x-mine": 3}"#).unwrap();
/// assert_eq!(spec.args(), ["sleep", "10"]);
/// assert_eq!(spec.env(), [("A".to_string(), "1".to_string())]);
/// assert_eq!(spec.unknown_keys().collect::<Vec<_>>(), ["x-mine"]);
/// assert_eq!(spec.to_bytes(), br#"{"args": ["sleep", "10"], "env": {"A": "1"}, "x-mine": 3}"#);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramSpec {
    /// The file's bytes (what `NCOLONY_CONFIG` carries).
    bytes: Arc<[u8]>,
    unknown: Vec<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_inherit: Vec<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    groups: Vec<String>,
    beatcheck: Option<Beatcheck>,
    cwd: Option<String>,
    killtime: Option<f64>,
    stop_signal: Option<i32>,
    disabled: bool,
    critical: bool,
    log: Option<LogFile>,
    /// `None` when every policy key has its default (most programs): keeps
    /// a spec small, as colony holds one per program.
    policies: Option<Box<Policies>>,
    umask: Option<u32>,
    nice: Option<i32>,
    limits: Vec<(Limit, Option<u64>)>,
}

/// A resource limit a program can be given (`limits` key), set as both
/// the soft and the hard limit; `None` is "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `nofile`: open files.
    Nofile,
    /// `nproc`: processes of its user.
    Nproc,
    /// `core`: core file size, bytes.
    Core,
    /// `as`: address space, bytes.
    As,
}

impl Limit {
    /// Every limit with its key.
    pub const ALL: [(&'static str, Limit); 4] =
        [("nofile", Limit::Nofile), ("nproc", Limit::Nproc), ("core", Limit::Core), ("as", Limit::As)];
}

/// The `log` key: the program's output goes to its own file, rotated by
/// size, instead of colony's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// The file (relative paths are relative to colony's working directory).
    pub file: String,
    /// Rotate once the file would grow past this many bytes (default 10 MiB).
    pub max_size: u64,
    /// How many rotated files (`FILE.1` … `FILE.N`) to keep (default 5).
    pub keep: u32,
}

impl LogFile {
    /// Default `max_size`: 10 MiB.
    pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
    /// Default `keep`.
    pub const DEFAULT_KEEP: u32 = 5;
}

/// Every problem found in one config file, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file, when the spec came from one.
    pub path: Option<PathBuf>,
    /// One line per problem, for example `"args": missing`.
    pub problems: Vec<String>,
}

impl SpecError {
    /// The same error, naming `path` as its source.
    pub fn in_file(mut self, path: impl Into<PathBuf>) -> SpecError {
        self.path = Some(path.into());
        self
    }

    fn one(problem: impl Into<String>) -> SpecError {
        SpecError { path: None, problems: vec![problem.into()] }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: ", p.display())?,
            None => f.write_str("invalid program spec: ")?,
        }
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for SpecError {}

/// The policies of a spec that sets none of their keys.
fn default_policies() -> &'static Policies {
    static DEFAULT: std::sync::OnceLock<Policies> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| {
        let mut problems = Vec::new();
        crate::policy::parse(&Map::new(), &mut problems)
    })
}

/// Signal names accepted by `stop_signal` and the SIGNAL message, with
/// their Linux numbers.
pub const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The short name of a signal number ("HUP" for 1), if it has one.
pub fn signal_name(sig: i32) -> Option<&'static str> {
    SIGNALS.iter().find(|&&(_, n)| n == sig).map(|&(name, _)| name)
}

/// Parses a signal given as a name (`"TERM"`, `"SIGTERM"`, any case) or a
/// number between 1 and 64.
pub fn parse_signal(v: &Value) -> Option<i32> {
    match v {
        Value::Number(n) => n.as_u64().filter(|n| (1..=64).contains(n)).map(|n| n as i32),
        Value::String(s) => {
            let up = s.to_ascii_uppercase();
            let short = up.strip_prefix("SIG").unwrap_or(&up);
            SIGNALS.iter().find(|(name, _)| *name == short).map(|&(_, n)| n)
        }
        _ => None,
    }
}

/// Collects problems while reading one object.
struct Checker<'a> {
    raw: &'a Map<String, Value>,
    problems: Vec<String>,
}

impl Checker<'_> {
    fn bad(&mut self, key: &str, what: &str) {
        self.problems.push(format!("\"{key}\": {what}"));
    }

    fn string_list(&mut self, key: &str) -> Vec<String> {
        let Some(v) = self.raw.get(key) else { return Vec::new() };
        let Some(items) = v.as_array() else {
            self.bad(key, "expected an array of strings");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if s.contains('\0') => self.bad(&format!("{key}[{i}]"), "contains a NUL byte"),
                Some(s) => out.push(s.to_string()),
                None => self.bad(&format!("{key}[{i}]"), &format!("expected a string, found {}", kind(item))),
            }
        }
        out
    }

    fn id(&mut self, key: &str) -> Option<u32> {
        let v = self.raw.get(key)?;
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                self.bad(key, &format!("expected a non-negative integer, found {}", show(v)));
                None
            }
        }
    }

    fn boolean(&mut self, key: &str) -> bool {
        match self.raw.get(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                self.bad(key, &format!("expected true or false, found {}", show(v)));
                false
            }
        }
    }

    fn seconds(&mut self, key: &str) -> Option<f64> {
        let v = self.raw.get(key)?;
        match v.as_f64() {
            Some(n) if n >= 0.0 && n.is_finite() => Some(n),
            _ => {
                self.bad(key, &format!("expected a non-negative number of seconds, found {}", show(v)));
                None
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

impl ProgramSpec {
    /// Parses the bytes of a config file.
    pub fn parse(bytes: &[u8]) -> Result<ProgramSpec, SpecError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(SpecError::one("the file is empty"));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| SpecError::one(format!("invalid JSON: {e}")))?;
        match value {
            Value::Object(map) => ProgramSpec::check(&map, bytes.into()),
            other => Err(SpecError::one(format!("expected a JSON object, found {}", kind(&other)))),
        }
    }

    /// Reads and parses a config file; errors name the file.
    pub fn read(path: &Path) -> Result<ProgramSpec, SpecError> {
        let bytes = std::fs::read(path).map_err(|e| SpecError::one(format!("cannot read: {e}")).in_file(path))?;
        ProgramSpec::parse(&bytes).map_err(|e| e.in_file(path))
    }

    /// Validates a JSON object, reporting every problem at once.
    pub fn from_map(raw: Map<String, Value>) -> Result<ProgramSpec, SpecError> {
        let bytes = to_python_json(&Value::Object(raw));
        let Ok(Value::Object(map)) = serde_json::from_slice(&bytes) else {
            unreachable!("a serialized object parses back as an object")
        };
        ProgramSpec::check(&map, bytes.into())
    }

    fn check(raw: &Map<String, Value>, bytes: Arc<[u8]>) -> Result<ProgramSpec, SpecError> {
        let mut c = Checker { raw, problems: Vec::new() };
        let args = match raw.get("args") {
            None => {
                c.problems.push("\"args\": missing (the command to run)".into());
                Vec::new()
            }
            Some(_) => {
                let args = c.string_list("args");
                if raw["args"].as_array().is_some_and(|a| a.is_empty()) {
                    c.bad("args", "must hold at least the program to run");
                } else if args.first().is_some_and(|a| a.is_empty()) {
                    c.bad("args[0]", "the program to run may not be empty");
                }
                args
            }
        };
        let mut env = Vec::new();
        if let Some(v) = raw.get("env") {
            match v.as_object() {
                None => c.bad("env", &format!("expected an object of strings, found {}", kind(v))),
                Some(map) => {
                    for (k, val) in map {
                        if k.is_empty() || k.contains('=') || k.contains('\0') {
                            c.problems.push(format!("\"env\": invalid variable name {k:?}"));
                        }
                        match val.as_str() {
                            Some(s) if s.contains('\0') => c.bad(&format!("env.{k}"), "contains a NUL byte"),
                            Some(s) => env.push((k.clone(), s.to_string())),
                            None => c.bad(&format!("env.{k}"), &format!("expected a string, found {}", kind(val))),
                        }
                    }
                }
            }
        }
        let env_inherit = c.string_list("env_inherit");
        let uid = c.id("uid");
        let gid = c.id("gid");
        let groups = c.string_list("group");
        let beatcheck = raw.get("ncolony.beatcheck").and_then(|v| beatcheck(&mut c, v));
        let cwd = match raw.get("cwd") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() && !s.contains('\0') => Some(s.clone()),
            Some(v) => {
                c.bad("cwd", &format!("expected a directory path, found {}", show(v)));
                None
            }
        };
        let killtime = c.seconds("killtime");
        let stop_signal = match raw.get("stop_signal") {
            None => None,
            Some(v) => {
                let sig = parse_signal(v);
                if sig.is_none() {
                    c.bad(
                        "stop_signal",
                        &format!("expected a signal name like \"TERM\" or a number, found {}", show(v)),
                    );
                }
                sig
            }
        };
        let disabled = c.boolean("disabled");
        let critical = c.boolean("critical");
        let log = raw.get("log").and_then(|v| log_file(&mut c, v));
        let policies = crate::policy::parse(raw, &mut c.problems);
        let policies = (policies != *default_policies()).then(|| Box::new(policies));
        let umask = match raw.get("umask") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 4 => match u32::from_str_radix(s, 8) {
                Ok(m) if m <= 0o777 => Some(m),
                _ => {
                    c.bad("umask", &format!("expected an octal mode like \"022\", found {s:?}"));
                    None
                }
            },
            Some(v) => {
                c.bad("umask", &format!("expected an octal mode as a string, like \"022\", found {}", show(v)));
                None
            }
        };
        let nice = match raw.get("nice") {
            None => None,
            Some(v) => match v.as_i64().filter(|n| (-20..=19).contains(n)) {
                Some(n) => Some(n as i32),
                None => {
                    c.bad("nice", &format!("expected a whole number from -20 to 19, found {}", show(v)));
                    None
                }
            },
        };
        let mut limits = Vec::new();
        if let Some(v) = raw.get("limits") {
            match v.as_object() {
                None => c.bad("limits", &format!("expected an object like {{\"nofile\": 1024}}, found {}", kind(v))),
                Some(obj) => {
                    for (k, val) in obj {
                        let Some(&(_, limit)) = Limit::ALL.iter().find(|(name, _)| name == k) else {
                            c.bad(&format!("limits.{k}"), "unknown limit (known: nofile, nproc, core, as)");
                            continue;
                        };
                        match val {
                            Value::String(s) if s == "unlimited" => limits.push((limit, None)),
                            v => match v.as_u64() {
                                Some(n) => limits.push((limit, Some(n))),
                                None => c.bad(
                                    &format!("limits.{k}"),
                                    &format!("expected a number or \"unlimited\", found {}", show(v)),
                                ),
                            },
                        }
                    }
                }
            }
        }
        if !c.problems.is_empty() {
            return Err(SpecError { path: None, problems: c.problems });
        }
        let unknown = raw.keys().filter(|k| !KNOWN_KEYS.contains(&k.as_str())).cloned().collect();
        Ok(ProgramSpec {
            bytes,
            unknown,
            args,
            env,
            env_inherit,
            uid,
            gid,
            groups,
            beatcheck,
            cwd,
            killtime,
            stop_signal,
            disabled,
            critical,
            log,
            policies,
            umask,
            nice,
            limits,
        })
    }

    /// Starts a spec for `cmd`, in the key order ncolony's ctl writes.
    pub fn builder(cmd: impl Into<String>) -> SpecBuilder {
        SpecBuilder {
            args: vec![cmd.into()],
            env: None,
            uid: None,
            gid: None,
            env_inherit: None,
            groups: None,
            extras: None,
        }
    }

    /// The file's bytes: as read, or, for a spec built in memory, formatted
    /// as Python's `json.dumps` (as ncolony's ctl writes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.to_vec()
    }

    /// The file's bytes, without copying.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole JSON object, unknown keys included, in file order.
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::from_slice(&self.bytes) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// The command line: the program, then its arguments.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The `env` entries in file order.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Names copied from the supervisor's environment.
    pub fn env_inherit(&self) -> &[String] {
        &self.env_inherit
    }

    /// The user id to run as.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// The group id to run as.
    pub fn gid(&self) -> Option<u32> {
        self.gid
    }

    /// The groups this program belongs to, for `RESTART-GROUP`.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The heartbeat check, if configured.
    pub fn beatcheck(&self) -> Option<&Beatcheck> {
        self.beatcheck.as_ref()
    }

    /// The working directory (colony extension).
    pub fn cwd(&self) -> Option<&str> {
        self.cwd.as_deref()
    }

    /// Seconds between the stop signal and SIGKILL (colony extension).
    pub fn killtime(&self) -> Option<f64> {
        self.killtime
    }

    /// The signal that asks the program to stop (colony extension).
    pub fn stop_signal(&self) -> Option<i32> {
        self.stop_signal
    }

    /// Whether the program stays configured but is not run (`"disabled": true`).
    pub fn disabled(&self) -> bool {
        self.disabled
    }

    /// Whether colony stops everything and exits when this program ends
    /// (`"critical": true`, for containers).
    pub fn critical(&self) -> bool {
        self.critical
    }

    /// The program's own log file, if configured.
    pub fn log(&self) -> Option<&LogFile> {
        self.log.as_ref()
    }

    /// The file-mode creation mask (`umask`, octal string).
    pub fn umask(&self) -> Option<u32> {
        self.umask
    }

    /// The scheduling priority (`nice`, -20 to 19).
    pub fn nice(&self) -> Option<i32> {
        self.nice
    }

    /// Resource limits (`limits`), each as soft and hard limit.
    pub fn limits(&self) -> &[(Limit, Option<u64>)] {
        &self.limits
    }

    /// The failure policy and health keys.
    pub fn policies(&self) -> &Policies {
        self.policies.as_deref().unwrap_or_else(|| default_policies())
    }

    /// Keys colony does not read, in file order.
    pub fn unknown_keys(&self) -> impl Iterator<Item = &str> {
        self.unknown.iter().map(String::as_str)
    }
}

fn beatcheck(c: &mut Checker<'_>, v: &Value) -> Option<Beatcheck> {
    let Some(obj) = v.as_object() else {
        c.bad("ncolony.beatcheck", &format!("expected an object, found {}", kind(v)));
        return None;
    };
    let mut num = |key: &str| match obj.get(key).map(|v| (v, v.as_f64())) {
        Some((_, Some(n))) if n > 0.0 && n.is_finite() => Some(n),
        Some((v, _)) => {
            c.bad(&format!("ncolony.beatcheck.{key}"), &format!("expected a positive number, found {}", show(v)));
            None
        }
        None => {
            c.bad(&format!("ncolony.beatcheck.{key}"), "missing");
            None
        }
    };
    let period = num("period");
    let grace = num("grace");
    let status = match obj.get("status") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(v) => {
            c.bad("ncolony.beatcheck.status", &format!("expected a path, found {}", show(v)));
            None
        }
        None => {
            c.bad("ncolony.beatcheck.status", "missing");
            None
        }
    };
    Some(Beatcheck { period: period?, grace: grace?, status: status? })
}

fn log_file(c: &mut Checker<'_>, v: &Value) -> Option<LogFile> {
    let Some(obj) = v.as_object() else {
        c.bad("log", &format!("expected an object like {{\"file\": PATH}}, found {}", kind(v)));
        return None;
    };
    let file = match obj.get("file") {
        Some(Value::String(s)) if !s.is_empty() && !s.contains('\0') => Some(s.clone()),
        Some(v) => {
            c.bad("log.file", &format!("expected a file path, found {}", show(v)));
            None
        }
        None => {
            c.bad("log.file", "missing");
            None
        }
    };
    let max_size = match obj.get("max_size") {
        None => Some(LogFile::DEFAULT_MAX_SIZE),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                c.bad("log.max_size", &format!("expected a positive number of bytes, found {}", show(v)));
                None
            }
        },
    };
    let keep = match obj.get("keep") {
        None => Some(LogFile::DEFAULT_KEEP),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n <= 1000 => Some(n),
            _ => {
                c.bad("log.keep", &format!("expected a number of files from 0 to 1000, found {}", show(v)));
                None
            }
        },
    };
    Some(LogFile { file: file?, max_size: max_size?, keep: keep? })
}

/// Builds a config file the way ncolony's `ctl add` does: `args`, `env`,
/// `uid`, `gid`, `env_inherit`, then `group`, then the extras merged last
/// (an extra key replaces a value but keeps its place).
///
/// ```
/// use colony_ctl::ProgramSpec;
/// let spec = ProgramSpec::builder("/bin/sleep").arg("1000").env("A", "1").env("A", "2").build().unwrap();
/// assert_eq!(spec.to_bytes(), br#"{"args": ["/bin/sleep", "1000"], "env": {"A": "2"}}"#);
/// ```
#[derive(Debug, Clone)]
pub struct SpecBuilder {
    args: Vec<String>,
    env: Option<Map<String, Value>>,
    uid: Option<u32>,
    gid: Option<u32>,
    env_inherit: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    extras: Option<Map<String, Value>>,
}

impl SpecBuilder {
    /// Appends one argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Appends arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable; a later value for the same name wins.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.get_or_insert_with(Map::new).insert(k.into(), Value::String(v.into()));
        self
    }

    /// Writes an `env` key even when it is empty (as ncolony does for an
    /// empty `--env` list given from Python).
    pub fn empty_env(mut self) -> Self {
        self.env.get_or_insert_with(Map::new);
        self
    }

    /// Runs the program as this user id.
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Runs the program with this group id.
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Copies one variable from the supervisor's environment.
    pub fn env_inherit(mut self, var: impl Into<String>) -> Self {
        self.env_inherit.get_or_insert_with(Vec::new).push(var.into());
        self
    }

    /// Adds the program to a group (for `RESTART-GROUP`).
    pub fn group(mut self, g: impl Into<String>) -> Self {
        self.groups.get_or_insert_with(Vec::new).push(g.into());
        self
    }

    /// Merges further keys last, replacing any key set above.
    pub fn extras(mut self, extras: Map<String, Value>) -> Self {
        self.extras.get_or_insert_with(Map::new).extend(extras);
        self
    }

    /// Validates the result.
    pub fn build(self) -> Result<ProgramSpec, SpecError> {
        let mut raw = Map::new();
        raw.insert("args".into(), self.args.into());
        if let Some(env) = self.env {
            raw.insert("env".into(), Value::Object(env));
        }
        if let Some(uid) = self.uid {
            raw.insert("uid".into(), uid.into());
        }
        if let Some(gid) = self.gid {
            raw.insert("gid".into(), gid.into());
        }
        if let Some(vars) = self.env_inherit {
            raw.insert("env_inherit".into(), vars.into());
        }
        if let Some(groups) = self.groups {
            raw.insert("group".into(), groups.into());
        }
        for (k, v) in self.extras.unwrap_or_default() {
            raw.insert(k, v);
        }
        ProgramSpec::from_map(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn problems(bytes: &str) -> Vec<String> {
        ProgramSpec::parse(bytes.as_bytes()).unwrap_err().problems
    }

    #[test]
    fn rejects_each_malformed_file_with_a_reason() {
        assert_eq!(problems(""), ["the file is empty"]);
        assert!(problems("{").first().unwrap().starts_with("invalid JSON"));
        assert_eq!(problems("[]"), ["expected a JSON object, found an array"]);
        assert_eq!(problems("{}"), ["\"args\": missing (the command to run)"]);
        assert_eq!(problems(r#"{"args": []}"#), ["\"args\": must hold at least the program to run"]);
        assert_eq!(problems(r#"{"args": "x"}"#), ["\"args\": expected an array of strings"]);
    }

    #[test]
    fn lists_every_problem_at_once() {
        let p = problems(
            r#"{"args": ["x", 1], "env": {"A": 2}, "uid": "0", "gid": -1, "killtime": "5", "stop_signal": "NOPE"}"#,
        );
        assert_eq!(p.len(), 6, "{p:?}");
        assert!(p[0].contains("args[1]"));
        assert!(p[1].contains("env.A"));
        let err = ProgramSpec::parse(br#"{"args": [1]}"#).unwrap_err().in_file("/etc/colony/web");
        assert_eq!(err.to_string(), "/etc/colony/web: \"args[0]\": expected a string, found a number");
    }

    #[test]
    fn every_key_colony_reads_is_known() {
        let all = r#"{"args": ["x"], "env": {}, "env_inherit": [], "uid": 0, "gid": 0, "group": [],
            "ncolony.beatcheck": {"period": 1, "grace": 1, "status": "/s"}, "cwd": "/", "killtime": 1,
            "stop_signal": "TERM", "disabled": false, "critical": false, "log": {"file": "/l"},
            "restart": "always", "success_codes": [0], "no_restart_codes": [], "give_up": {},
            "heartbeat": {}, "liveness": {"tcp": "127.0.0.1:1"}, "readiness": {"fd": 3}, "after": [],
            "umask": "022", "nice": 0, "limits": {"nofile": 10}}"#;
        let spec = ProgramSpec::parse(all.as_bytes()).unwrap();
        assert_eq!(spec.unknown_keys().collect::<Vec<_>>(), Vec::<&str>::new());
        assert_eq!(spec.to_map().len(), KNOWN_KEYS.len(), "the test lists every known key");
    }

    #[test]
    fn reads_colony_extensions() {
        let s =
            ProgramSpec::parse(br#"{"args": ["x"], "cwd": "/srv", "killtime": 2.5, "stop_signal": "sigint"}"#).unwrap();
        assert_eq!(s.cwd(), Some("/srv"));
        assert_eq!(s.killtime(), Some(2.5));
        assert_eq!(s.stop_signal(), Some(2));
        let b = ProgramSpec::parse(
            br#"{"args": ["x"], "ncolony.beatcheck": {"period": 10, "grace": 3, "status": "/tmp/st"}}"#,
        )
        .unwrap();
        assert_eq!(b.beatcheck(), Some(&Beatcheck { period: 10.0, grace: 3.0, status: "/tmp/st".into() }));
    }

    #[test]
    fn builder_merges_extras_last_like_ncolony() {
        let extras = json!({"ncolony.beatcheck": {"period": 10, "grace": 3, "status": "/tmp/st"}, "group": ["g1"], "args": ["OVERRIDE"]});
        let spec = ProgramSpec::builder("/bin/echo")
            .env("A", "1")
            .env("A", "2")
            .extras(extras.as_object().unwrap().clone())
            .build()
            .unwrap();
        assert_eq!(
            String::from_utf8(spec.to_bytes()).unwrap(),
            r#"{"args": ["OVERRIDE"], "env": {"A": "2"}, "ncolony.beatcheck": {"period": 10, "grace": 3, "status": "/tmp/st"}, "group": ["g1"]}"#
        );
    }

    fn arb_spec() -> impl Strategy<Value = ProgramSpec> {
        (
            prop::collection::vec("[^\\x00]{0,6}", 0..4),
            prop::collection::vec(("[A-Z_]{1,4}", "[^\\x00]{0,6}"), 0..4),
            prop::option::of(any::<u32>()),
            prop::collection::vec("[a-z]{1,4}", 0..3),
            prop::option::of("[a-z-]{1,6}"),
        )
            .prop_map(|(args, env, uid, groups, extra)| {
                let mut b = ProgramSpec::builder("/bin/prog").args(args);
                for (k, v) in env {
                    b = b.env(k, v);
                }
                if let Some(u) = uid {
                    b = b.uid(u).gid(u);
                }
                for g in groups {
                    b = b.group(g);
                }
                if let Some(k) = extra {
                    b = b.extras(json!({ format!("x-{k}"): {"nested": [1, "two"]} }).as_object().unwrap().clone());
                }
                b.build().unwrap()
            })
    }

    proptest! {
        #[test]
        fn round_trips_through_bytes(spec in arb_spec()) {
            let back = ProgramSpec::parse(&spec.to_bytes()).unwrap();
            prop_assert_eq!(back.to_bytes(), spec.to_bytes());
            prop_assert_eq!(&back, &spec);
            prop_assert_eq!(ProgramSpec::from_map(spec.to_map()).unwrap(), spec);
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = ProgramSpec::parse(&bytes);
        }
    }
}
