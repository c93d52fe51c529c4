//! colony as a container entrypoint and as a systemd `Type=notify` service,
//! on the real binary.
//!
//! The container tests run the ENTRYPOINT of examples/docker/Dockerfile
//! (read from the Dockerfile: same argv, the image's directories mapped to
//! temporary ones) on a copy of examples/docker/config as PID 1 of a new PID
//! namespace, `unshare --pid --fork --mount-proc`, which is what `docker run`
//! does minus the image. Where unshare is missing or not allowed they skip,
//! saying why. The notification tests bind the socket systemd would and
//! check what colony sends to it.
//!
//! Every wait polls a condition against a deadline; nothing sleeps to
//! synchronise. A guard SIGKILLs what a test started, also when it fails.
//!
//! Self-contained: std, libc, serde_json and tempfile.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long anything may take when all is well; only a broken or very
/// loaded machine gets near it.
const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(5);
/// colony's default kill time (`-k`), which the entrypoint does not change.
const DEFAULT_KILLTIME: Duration = Duration::from_secs(5);
/// PATH of the Debian runtime image (the Dockerfile does not change it).
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn colony_bin() -> &'static str {
    env!("CARGO_BIN_EXE_colony")
}

/// Polls `cond` until it gives a value; panics after `within` with `what`
/// and `context()`.
fn wait_for<T>(within: Duration, what: &str, context: impl Fn() -> String, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() > within {
            panic!("timed out after {:.1} s waiting for {what}\n{}", within.as_secs_f64(), context());
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// /proc, seen from the test's (the host's) PID namespace
// ---------------------------------------------------------------------------

/// State letter and parent pid.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = text[text.rfind(')')? + 2..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Every process with its state and parent.
fn processes() -> BTreeMap<i32, (char, i32)> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            if let Some(s) = stat(pid) {
                out.insert(pid, s);
            }
        }
    }
    out
}

fn children_of(pid: i32) -> Vec<i32> {
    processes().into_iter().filter(|(_, (_, ppid))| *ppid == pid).map(|(p, _)| p).collect()
}

/// Every descendant of `root` with its state (zombies included).
fn descendants_of(root: i32) -> BTreeMap<i32, char> {
    let all = processes();
    let mut out = BTreeMap::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (&pid, &(state, ppid)) in &all {
            if ppid == parent && out.insert(pid, state).is_none() {
                frontier.push(pid);
            }
        }
    }
    out
}

/// The process group.
fn pgid(pid: i32) -> Option<i32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 2..].split_whitespace().nth(2)?.parse().ok()
}

fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

fn environ(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(raw.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

fn env_var(pid: i32, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    environ(pid)?.into_iter().find_map(|kv| kv.strip_prefix(&prefix).map(str::to_owned))
}

/// The `NSpid:` line: the pid in each PID namespace, outermost first.
fn nspid(pid: i32) -> Option<Vec<i32>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().map(|p| p.parse().ok()).collect()
}

fn pid_namespace(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid, sig) };
}

// ---------------------------------------------------------------------------
// Output capture and the process guard
// ---------------------------------------------------------------------------

/// Everything colony (and unshare) wrote, for assertions and failure reports.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn capture(&self, mut from: impl Read + Send + 'static) {
        let log = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.0.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn context(&self) -> impl Fn() -> String {
        let log = self.clone();
        move || format!("--- colony's log\n{}", log.text())
    }
}

/// A started process (colony, or unshare running colony) and the pid of
/// colony itself. Dropping it SIGKILLs colony, every descendant of it and
/// the process, then reaps the process.
struct Started {
    child: Child,
    /// colony's pid in the test's namespace (the child itself, or
    /// unshare's child).
    colony: i32,
    log: Log,
    status: Option<ExitStatus>,
}

impl Started {
    /// Starts `cmd` with stdout and stderr captured; `colony_is_child`
    /// says whether colony is the started process's child (unshare --fork)
    /// or the process itself.
    fn start(mut cmd: Command, colony_is_child: bool) -> Started {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start colony");
        let log = Log::default();
        log.capture(child.stdout.take().unwrap());
        log.capture(child.stderr.take().unwrap());
        let parent = child.id() as i32;
        let mut started = Started { child, colony: parent, log, status: None };
        if colony_is_child {
            // colony may also be gone already (a critical program that
            // cannot start): then there is no pid to learn.
            let log = started.log.clone();
            started.colony = wait_for(DEADLINE, "colony to start under unshare", log.context(), || {
                let colony = children_of(parent)
                    .into_iter()
                    .find(|&p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "colony"));
                match colony {
                    Some(pid) => Some(pid),
                    None => {
                        started.status = started.child.try_wait().expect("try_wait");
                        started.status.map(|_| 0)
                    }
                }
            });
        }
        started
    }

    /// Waits up to `within` for the started process to exit.
    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                return Some(status);
            }
            if start.elapsed() > within {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// The exit code, which must come within `within`.
    fn exit_code(&mut self, within: Duration, what: &str) -> i32 {
        match self.wait_exit(within) {
            Some(status) => status.code().unwrap_or_else(|| panic!("{what}: killed by a signal: {status:?}")),
            None => panic!("{what}: still running after {:.1} s\n{}", within.as_secs_f64(), self.log.context()()),
        }
    }

    /// The program processes colony runs right now: its children that
    /// lead their own process group (an orphan re-parented to colony
    /// inherits its program's group and environment), by the COLONY_NAME
    /// of their environment.
    fn programs(&self) -> BTreeMap<String, i32> {
        children_of(self.colony)
            .into_iter()
            .filter(|&p| pgid(p) == Some(p))
            .filter_map(|p| Some((env_var(p, "COLONY_NAME")?, p)))
            .collect()
    }

    /// Waits until every one of `names` runs, and returns their pids.
    fn wait_programs(&self, names: &[&str]) -> BTreeMap<String, i32> {
        wait_for(DEADLINE, &format!("programs {names:?} to run"), self.log.context(), || {
            let running = self.programs();
            names.iter().all(|n| running.contains_key(*n)).then_some(running)
        })
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.status.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let colony_alive = self.colony > 0
                && stat(self.colony)
                    .is_some_and(|(_, ppid)| self.colony == self.child.id() as i32 || ppid == self.child.id() as i32);
            let mut victims: Vec<i32> = Vec::new();
            if colony_alive {
                victims.extend(descendants_of(self.colony).keys());
                victims.push(self.colony);
            }
            for pid in victims {
                kill(pid, libc::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// The Dockerfile and its config, mapped to temporary directories
// ---------------------------------------------------------------------------

/// What the test needs to know from examples/docker/Dockerfile.
struct Dockerfile {
    /// The ENTRYPOINT, exec form.
    entrypoint: Vec<String>,
    /// Where `COPY examples/docker/config/ DIR` puts the program files.
    config_dir: String,
    /// The value of `--messages` in the entrypoint.
    messages_dir: String,
}

fn dockerfile() -> Dockerfile {
    let text = fs::read_to_string(repo().join("examples/docker/Dockerfile")).unwrap();
    let instructions: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    let with = |keyword: &str| -> Vec<&str> {
        instructions.iter().filter_map(|l| l.strip_prefix(keyword)).map(str::trim).collect::<Vec<_>>()
    };
    let entrypoints = with("ENTRYPOINT ");
    assert_eq!(entrypoints.len(), 1, "one ENTRYPOINT: {entrypoints:?}");
    let entrypoint: Vec<String> =
        serde_json::from_str(entrypoints[0]).expect("ENTRYPOINT in exec form (a JSON array): colony must be PID 1");
    assert_eq!(with("STOPSIGNAL "), ["SIGTERM"], "docker stop must send SIGTERM");
    let copies = with("COPY examples/docker/config/ ");
    assert_eq!(copies.len(), 1, "one COPY of examples/docker/config/: {copies:?}");
    let config_dir = copies[0].trim_end_matches('/').to_string();
    let value_of = |flag: &str| -> String {
        let at = entrypoint.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {entrypoint:?}"));
        entrypoint[at + 1].clone()
    };
    assert_eq!(&entrypoint[..2], ["colony", "run"], "{entrypoint:?}");
    assert_eq!(value_of("--config"), config_dir, "the entrypoint reads the config the image copies");
    let messages_dir = value_of("--messages");
    Dockerfile { entrypoint, config_dir, messages_dir }
}

/// A temporary "image": the Dockerfile's directories, and what the
/// programs of examples/docker/config use.
struct Image {
    tmp: tempfile::TempDir,
    config: PathBuf,
    messages: PathBuf,
    www: PathBuf,
    port: u16,
}

impl Image {
    /// A copy of examples/docker/config where the only changes are the
    /// absolute paths that the image has and the host has not (/srv/www),
    /// and the web port (tests run in parallel on the host's network).
    fn new() -> Image {
        let tmp = tempfile::tempdir().unwrap();
        // The web server runs as nobody and must reach the files.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let (config, messages, www) = (tmp.path().join("config"), tmp.path().join("messages"), tmp.path().join("www"));
        fs::create_dir(&config).unwrap();
        fs::create_dir(&www).unwrap();
        fs::set_permissions(&www, fs::Permissions::from_mode(0o755)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut replaced = BTreeSet::new();
        for entry in fs::read_dir(repo().join("examples/docker/config")).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let mut text = fs::read_to_string(entry.path()).unwrap();
            for (from, to) in [("/srv/www", www.display().to_string()), ("\"8080\"", format!("\"{port}\""))] {
                if text.contains(from) {
                    replaced.insert(from);
                    text = text.replace(from, &to);
                }
            }
            fs::write(config.join(&name), text).unwrap();
        }
        assert_eq!(replaced.len(), 2, "the example config changed: update the test's path mapping");
        Image { tmp, config, messages, www, port }
    }

    /// Replaces (or adds) the program file `name`.
    fn program(&self, name: &str, spec: Value) {
        fs::write(self.config.join(name), spec.to_string()).unwrap();
    }

    fn spec(&self, name: &str) -> Value {
        serde_json::from_slice(&fs::read(self.config.join(name)).unwrap()).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The Dockerfile's entrypoint, run by `unshare` as PID 1 of a new PID
    /// namespace, with the environment of the image.
    fn run_entrypoint(&self, unshare: &Path) -> Started {
        let docker = dockerfile();
        let argv: Vec<OsString> = docker
            .entrypoint
            .iter()
            .enumerate()
            .map(|(i, arg)| match arg.as_str() {
                _ if i == 0 => colony_bin().into(),
                a if a == docker.config_dir => self.config.clone().into(),
                a if a == docker.messages_dir => self.messages.clone().into(),
                a => a.into(),
            })
            .collect();
        let mut cmd = Command::new(unshare);
        cmd.args(["--pid", "--fork", "--mount-proc", "--"]).args(argv).env_clear().env("PATH", IMAGE_PATH);
        Started::start(cmd, true)
    }
}

/// `unshare` when it can make a PID namespace here; otherwise why not.
fn unshare() -> Result<PathBuf, String> {
    static PROBE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let dirs =
                std::env::split_paths(&path).chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from));
            let Some(unshare) = dirs.map(|d| d.join("unshare")).find(|p| p.is_file()) else {
                return Err("unshare(1) (util-linux) is not installed".into());
            };
            match Command::new(&unshare).args(["--pid", "--fork", "--mount-proc", "true"]).output() {
                Ok(out) if out.status.success() => Ok(unshare),
                Ok(out) => Err(format!(
                    "`{} --pid --fork --mount-proc true` failed ({}): {} (creating a PID namespace needs \
                     CAP_SYS_ADMIN, which this environment does not grant)",
                    unshare.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => Err(format!("cannot run {}: {e}", unshare.display())),
            }
        })
        .clone()
}

/// The unshare binary, or None after printing why the test is skipped.
fn unshare_or_skip(test: &str) -> Option<PathBuf> {
    match unshare() {
        Ok(path) => Some(path),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// Whether python3 is on the image's PATH (the `web` program needs it).
fn have_python3() -> bool {
    std::env::split_paths(IMAGE_PATH).any(|d| d.join("python3").is_file())
}

fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The namespace checks: colony is PID 1 of its own PID namespace, and
/// its programs run in that namespace.
fn assert_in_namespace(run: &Started, programs: &BTreeMap<String, i32>) {
    let ns = nspid(run.colony).expect("NSpid of colony");
    assert_eq!(ns.len(), 2, "colony is in a nested PID namespace: NSpid {ns:?}");
    assert_eq!(ns[1], 1, "colony is PID 1 in its namespace: NSpid {ns:?}");
    let colony_ns = pid_namespace(run.colony).expect("colony's pid namespace");
    assert_ne!(Some(&colony_ns), pid_namespace(std::process::id() as i32).as_ref());
    for (name, &pid) in programs {
        let ns = nspid(pid).unwrap_or_else(|| panic!("{name} vanished"));
        assert_eq!(ns.len(), 2, "{name} runs in colony's namespace: NSpid {ns:?}");
        assert_eq!(pid_namespace(pid).as_ref(), Some(&colony_ns), "{name}'s pid namespace");
    }
}

// ---------------------------------------------------------------------------
// The container tests
// ---------------------------------------------------------------------------

/// The Dockerfile's entrypoint as PID 1: programs run in the namespace, an
/// orphan is reaped, `docker stop` (SIGTERM to PID 1) stops everything and
/// exits 0 within the kill time.
#[test]
fn entrypoint_as_pid_1_runs_programs_reaps_orphans_and_stops_on_sigterm() {
    let Some(unshare) = unshare_or_skip("entrypoint_as_pid_1_runs_programs_reaps_orphans_and_stops_on_sigterm") else {
        return;
    };
    let image = Image::new();
    // A test-only program that leaves an orphan behind: the subshell exits
    // at once, so its background child is re-parented to PID 1 (colony)
    // and exits later, when the test creates the release file.
    let release = image.path("release");
    let script = image.path("orphan.sh");
    fs::write(
        &script,
        "( /bin/sh -c 'while [ ! -e \"$1\" ]; do sleep 0.02; done' orphan-marker \"$RELEASE\" & )\nexec sleep 3600\n",
    )
    .unwrap();
    image.program(
        "orphans",
        serde_json::json!({"args": ["/bin/sh", script], "env": {"PATH": "/usr/bin:/bin", "RELEASE": release}}),
    );
    let python = have_python3();
    if !python {
        eprintln!("note: no python3 on {IMAGE_PATH}: the web program cannot run, its HTTP check is skipped");
    }

    let mut run = image.run_entrypoint(&unshare);
    let ctx = run.log.context();
    let expected: Vec<&str> = if python { vec!["app", "web", "orphans"] } else { vec!["app", "orphans"] };
    let programs = run.wait_programs(&expected);
    assert_in_namespace(&run, &programs);

    if python {
        // web serves what app writes: both run, with the image's paths.
        let greeting = image.spec("app")["env"]["GREETING"].as_str().unwrap().to_string();
        wait_for(DEADLINE, "web to serve app's page", &ctx, || {
            http_get(image.port).filter(|body| body.starts_with("HTTP/1.0 200") && body.contains(&greeting))
        });
    }
    // app writes its page once its TERM trap is in place.
    wait_for(DEADLINE, "app's first page", &ctx, || image.www.join("index.html").is_file().then_some(()));

    // The orphan: re-parented to colony, then reaped once it exits.
    let orphan = wait_for(DEADLINE, "the orphan to be re-parented to colony", &ctx, || {
        children_of(run.colony)
            .into_iter()
            .find(|&p| cmdline(p).is_some_and(|c| c.iter().any(|a| a == "orphan-marker")))
    });
    assert_eq!(pgid(orphan), Some(programs["orphans"]), "the orphan comes from the orphans program");
    assert_eq!(nspid(orphan).map(|n| n.len()), Some(2), "the orphan is in the namespace");
    fs::write(&release, "").unwrap();
    wait_for(DEADLINE, "the orphan to exit and be reaped", &ctx, || match stat(orphan) {
        None => Some(()),
        Some((_, ppid)) if ppid != run.colony => Some(()), // pid reused meanwhile
        Some(_) => None,
    });
    wait_for(DEADLINE, "no zombie among colony's descendants", &ctx, || {
        descendants_of(run.colony).values().all(|&s| s != 'Z').then_some(())
    });

    // docker stop: SIGTERM to PID 1, i.e. to colony's pid out here.
    let stopping = Instant::now();
    kill(run.colony, libc::SIGTERM);
    let code = run.exit_code(DEFAULT_KILLTIME + Duration::from_secs(1), "colony after SIGTERM");
    assert_eq!(code, 0, "{}", ctx());
    assert!(stopping.elapsed() <= DEFAULT_KILLTIME + Duration::from_secs(1));
    let log = run.log.text();
    for name in &expected {
        assert!(log.contains(&format!("{name}: stopping, SIGTERM")), "colony stopped {name} itself\n{log}");
    }
    assert!(log.contains("app: exited with code 0"), "app's trap ran: a clean stop\n{log}");
    assert!(log.contains("every program stopped; exiting"), "{log}");
    for (name, pid) in programs {
        assert!(stat(pid).is_none(), "{name} (pid {pid}) still exists");
    }
}

/// Runs the entrypoint with `app` replaced by `app_spec` (critical) and a
/// test-only `sidecar` that says when it is stopped; returns the exit code
/// and the log. `go` is created once all programs run.
fn critical_exit(test: &str, app_spec: impl FnOnce(&Path) -> Value, wait_running: bool) -> Option<(i32, String)> {
    let unshare = unshare_or_skip(test)?;
    let image = Image::new();
    let (go, ready) = (image.path("go"), image.path("sidecar-ready"));
    image.program("app", app_spec(&go));
    // The sidecar says when its TERM trap is in place.
    image.program(
        "sidecar",
        serde_json::json!({
            "args": ["/bin/sh", "-c", "trap 'echo sidecar stopped; exit 0' TERM; : > \"$READY\"; sleep 3600 & wait $!"],
            "env": {"READY": ready},
        }),
    );
    let mut run = image.run_entrypoint(&unshare);
    let started = Instant::now();
    if wait_running {
        let programs = run.wait_programs(&["app", "sidecar"]);
        assert_in_namespace(&run, &programs);
        wait_for(DEADLINE, "the sidecar's trap", run.log.context(), || ready.exists().then_some(()));
        fs::write(&go, "").unwrap();
    }
    // Every program stops within its kill time (web 3 s, others 5 s).
    let code = run.exit_code(DEADLINE + DEFAULT_KILLTIME, "colony after app ended");
    let log = run.log.text();
    assert!(log.contains("app is critical and ended"), "{log}");
    if wait_running {
        assert!(log.contains("[sidecar] sidecar stopped"), "colony stopped the others cleanly\n{log}");
        assert!(log.contains("every program stopped; exiting"), "{log}");
    }
    assert!(started.elapsed() < DEADLINE + DEFAULT_KILLTIME);
    Some((code, log))
}

#[test]
fn critical_program_exiting_3_makes_the_entrypoint_exit_3() {
    let Some((code, log)) = critical_exit(
        "critical_program_exiting_3_makes_the_entrypoint_exit_3",
        |go| {
            serde_json::json!({
                "args": ["/bin/sh", "-c", "while [ ! -e \"$GO\" ]; do sleep 0.02; done; exit 3"],
                "env": {"PATH": "/usr/bin:/bin", "GO": go},
                "critical": true,
            })
        },
        true,
    ) else {
        return;
    };
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("colony will exit with code 3"), "{log}");
}

#[test]
fn critical_program_killed_by_sigkill_makes_the_entrypoint_exit_137() {
    let Some((code, log)) = critical_exit(
        "critical_program_killed_by_sigkill_makes_the_entrypoint_exit_137",
        |go| {
            serde_json::json!({
                "args": ["/bin/sh", "-c", "while [ ! -e \"$GO\" ]; do sleep 0.02; done; kill -9 $$"],
                "env": {"PATH": "/usr/bin:/bin", "GO": go},
                "critical": true,
            })
        },
        true,
    ) else {
        return;
    };
    assert_eq!(code, 128 + 9, "{log}");
}

#[test]
fn critical_program_that_cannot_start_makes_the_entrypoint_exit_127() {
    let Some((code, log)) = critical_exit(
        "critical_program_that_cannot_start_makes_the_entrypoint_exit_127",
        |_| serde_json::json!({"args": ["/nonexistent/colony-test-app"], "critical": true}),
        false,
    ) else {
        return;
    };
    assert_eq!(code, 127, "{log}");
}

// ---------------------------------------------------------------------------
// systemd's notification protocol, without systemd
// ---------------------------------------------------------------------------

/// colony run directly (no namespace) with `env` added to a clean
/// environment.
fn run_colony(config: &Path, messages: &Path, env: &[(&str, &str)]) -> Started {
    let mut cmd = Command::new(colony_bin());
    cmd.arg("run").arg("--config").arg(config).arg("--messages").arg(messages);
    cmd.env_clear().env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Started::start(cmd, false)
}

/// Receives the next datagram from colony, split into its lines.
fn receive(sock: &UnixDatagram, log: &Log) -> Vec<String> {
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).lines().map(str::to_owned).collect(),
        Err(e) => panic!("no notification within {:?}: {e}\n{}", DEADLINE, log.context()()),
    }
}

/// The whole exchange on a socket bound at `addr`, with colony told
/// `notify_socket`: READY=1 only once every program of the config runs
/// (also with a bad file and a program that cannot start), programs never
/// see NOTIFY_SOCKET, STOPPING=1 on SIGTERM, nothing else.
fn notify_exchange(sock: UnixDatagram, notify_socket: &str) {
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (config, messages) = (tmp.path().join("config"), tmp.path().join("messages"));
    fs::create_dir(&config).unwrap();
    let programs = [("alpha", "3601"), ("beta", "3602"), ("gamma", "3603")];
    for (name, secs) in programs {
        fs::write(config.join(name), serde_json::json!({"args": ["sleep", secs]}).to_string()).unwrap();
    }
    // Nothing of these may hold READY=1 back.
    fs::write(config.join("broken"), "{\"args\": [").unwrap();
    fs::write(config.join("missing"), r#"{"args": ["/nonexistent/colony-test"]}"#).unwrap();
    // Inherited explicitly: colony removed it from its own environment.
    fs::write(config.join("inherits"), r#"{"args": ["sleep", "3604"], "env_inherit": ["NOTIFY_SOCKET"]}"#).unwrap();

    let mut run = run_colony(&config, &messages, &[("NOTIFY_SOCKET", notify_socket)]);
    let first = receive(&sock, &run.log);
    // At this moment every program has been started: its process has
    // already exec'd the program (spawn returns after exec).
    let children: BTreeMap<String, i32> = run.programs();
    assert_eq!(first, ["READY=1"], "the first notification");
    for (name, secs) in programs {
        let pid = *children.get(name).unwrap_or_else(|| panic!("{name} not running at READY=1: {children:?}"));
        assert_eq!(cmdline(pid), Some(vec!["sleep".to_string(), secs.to_string()]), "{name} at READY=1");
    }
    assert!(children.contains_key("inherits"), "{children:?}");
    for (name, pid) in &children {
        let env = environ(*pid).unwrap();
        let leaked: Vec<&String> = env.iter().filter(|kv| kv.starts_with("NOTIFY_SOCKET=")).collect();
        assert!(leaked.is_empty() || (name == "inherits" && leaked == ["NOTIFY_SOCKET="]), "{name} sees {leaked:?}");
    }

    kill(run.colony, libc::SIGTERM);
    assert_eq!(receive(&sock, &run.log), ["STOPPING=1"]);
    assert_eq!(run.exit_code(DEFAULT_KILLTIME + Duration::from_secs(1), "colony after SIGTERM"), 0);
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let extra = sock.recv(&mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    assert!(extra.is_err(), "unexpected notification {extra:?}");
}

#[test]
fn notify_socket_path_gets_ready_after_programs_run_and_stopping_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    notify_exchange(sock, path.to_str().unwrap());
}

#[test]
fn notify_socket_abstract_name_gets_ready_and_stopping() {
    let name = format!("colony-test-notify-{}-{:?}", std::process::id(), Instant::now());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    notify_exchange(sock, &format!("@{name}"));
}

/// A critical program ending is a shutdown too: STOPPING=1, then colony
/// exits with the program's code.
#[test]
fn notify_stopping_when_a_critical_program_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let (config, messages, go) = (tmp.path().join("config"), tmp.path().join("messages"), tmp.path().join("go"));
    fs::create_dir(&config).unwrap();
    fs::write(
        config.join("main"),
        serde_json::json!({
            "args": ["/bin/sh", "-c", "while [ ! -e \"$GO\" ]; do sleep 0.02; done; exit 4"],
            "env": {"PATH": "/usr/bin:/bin", "GO": go},
            "critical": true,
        })
        .to_string(),
    )
    .unwrap();
    fs::write(config.join("other"), r#"{"args": ["sleep", "3600"]}"#).unwrap();
    let mut run = run_colony(&config, &messages, &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    assert_eq!(receive(&sock, &run.log), ["READY=1"]);
    run.wait_programs(&["main", "other"]);
    fs::write(&go, "").unwrap();
    assert_eq!(receive(&sock, &run.log), ["STOPPING=1"]);
    assert_eq!(run.exit_code(DEADLINE, "colony after main ended"), 4);
}

/// Without NOTIFY_SOCKET colony sends nothing and runs as usual (a unit
/// with Type=simple, a shell); with an unusable one it warns and goes on.
#[test]
fn no_or_unusable_notify_socket_is_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, messages) = (tmp.path().join("config"), tmp.path().join("messages"));
    fs::create_dir(&config).unwrap();
    fs::write(config.join("alpha"), r#"{"args": ["sleep", "3600"]}"#).unwrap();
    for env in [vec![], vec![("NOTIFY_SOCKET", "/nonexistent/colony-test/notify.sock")]] {
        let mut run = run_colony(&config, &messages, &env);
        run.wait_programs(&["alpha"]);
        kill(run.colony, libc::SIGTERM);
        assert_eq!(run.exit_code(DEFAULT_KILLTIME + Duration::from_secs(1), "colony after SIGTERM"), 0);
    }
}

// ---------------------------------------------------------------------------
// The systemd unit
// ---------------------------------------------------------------------------

/// examples/systemd/colony.service says what the tests above exercise:
/// Type=notify, the same directories as the container, a stop timeout
/// above every kill time of the shipped examples.
#[test]
fn systemd_unit_matches_what_colony_does() {
    let path = repo().join("examples/systemd/colony.service");
    let text = fs::read_to_string(&path).unwrap();
    let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.starts_with('[')) {
        if let Some((k, v)) = line.split_once('=') {
            keys.entry(k).or_default().push(v);
        }
    }
    let one = |k: &str| -> &str {
        match keys.get(k).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!("{k}= should be set once, found {other:?}"),
        }
    };
    assert_eq!(one("Type"), "notify");
    assert_ne!(one("NotifyAccess"), "all", "programs must not be able to notify for colony");
    let exec: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert_eq!(exec[1..3], ["run", "--config"]);
    let docker = dockerfile();
    let flag = |f: &str| exec.iter().position(|a| *a == f).map(|i| exec[i + 1]);
    assert_eq!(flag("--config"), Some(docker.config_dir.as_str()), "same config directory as the container");
    assert_eq!(flag("--messages"), Some(docker.messages_dir.as_str()), "same messages directory as the container");
    let runtime = format!("/run/{}/", one("RuntimeDirectory"));
    assert!(docker.messages_dir.starts_with(&runtime), "messages live in RuntimeDirectory");
    assert!(one("ExecReload").ends_with("kill -HUP $MAINPID"));
    assert!(["mixed", "process"].contains(&one("KillMode")), "colony stops its programs itself");
    assert_eq!(one("Restart"), "on-failure");

    // The stop timeout outlasts the default kill time and every "killtime"
    // of the example programs.
    let timeout: f64 = one("TimeoutStopSec").parse().expect("TimeoutStopSec in seconds");
    let mut longest = DEFAULT_KILLTIME.as_secs_f64();
    for dir in ["examples/config", "examples/scheduler", "examples/docker/config", "examples/ansible/files/programs"] {
        for entry in fs::read_dir(repo().join(dir)).unwrap() {
            let spec: Value = serde_json::from_slice(&fs::read(entry.unwrap().path()).unwrap()).unwrap();
            longest = longest.max(spec["killtime"].as_f64().unwrap_or(0.0));
        }
    }
    assert!(timeout > longest, "TimeoutStopSec={timeout} must exceed the longest kill time {longest}");

    // systemd's own parser, where it is installed (it needs the binary
    // named in ExecStart, so check a copy that points at the one built).
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].into_iter().find(|p| Path::new(p).is_file());
    let Some(analyze) = analyze else {
        eprintln!("note: systemd-analyze is not installed: the unit's syntax is not verified");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let unit = tmp.path().join("colony.service");
    fs::write(&unit, text.replace("/usr/local/bin/colony", colony_bin())).unwrap();
    let out = Command::new(analyze).args(["verify", "--man=no"]).arg(&unit).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("not found") && !l.contains("not executable") && !l.trim().is_empty())
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify: {stderr}");
}

// ---------------------------------------------------------------------------
// Bugs found while writing these tests
// ---------------------------------------------------------------------------

/// A program whose `cwd` does not exist cannot start, and colony says
/// "cannot start /bin/sleep: No such file or directory": it blames the
/// executable, which exists, instead of the directory (and a critical
/// program exits colony with 127, "command not found").
#[test]
fn a_missing_cwd_is_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, messages) = (tmp.path().join("config"), tmp.path().join("messages"));
    fs::create_dir(&config).unwrap();
    let dir = "/nonexistent/colony-test-cwd";
    fs::write(
        config.join("main"),
        serde_json::json!({"args": ["/bin/sleep", "1"], "cwd": dir, "critical": true}).to_string(),
    )
    .unwrap();
    let mut run = run_colony(&config, &messages, &[]);
    run.exit_code(DEADLINE, "colony after main could not start");
    let log = run.log.text();
    let line = log.lines().find(|l| l.contains("main: cannot start")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(dir), "the error should name the missing directory: {line}");
}

/// When a critical program cannot be started at the first scan, the
/// programs after it in the same scan are still spawned (after colony has
/// decided to stop everything), are unknown to the supervisor, and end up
/// SIGKILLed as "leftover process(es) adopted by colony": no stop signal,
/// no kill time. Either they should not be started at all, or be stopped
/// like every program on shutdown (DESIGN.md §3: stop signal, SIGKILL only
/// after the kill time).
#[test]
fn programs_after_a_critical_start_failure_are_not_started_or_are_stopped_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, messages) = (tmp.path().join("config"), tmp.path().join("messages"));
    fs::create_dir(&config).unwrap();
    fs::write(config.join("app"), r#"{"args": ["/nonexistent/colony-test-app"], "critical": true}"#).unwrap();
    fs::write(config.join("sidecar"), r#"{"args": ["sleep", "3600"]}"#).unwrap();
    let mut run = run_colony(&config, &messages, &[]);
    assert_eq!(run.exit_code(DEADLINE, "colony after app could not start"), 127);
    let log = run.log.text();
    assert!(
        !log.contains("sidecar: started") || log.contains("sidecar: stopping, SIGTERM"),
        "sidecar was started, then not stopped with its stop signal\n{log}"
    );
}
