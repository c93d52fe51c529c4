//! Starting a child: argv and PATH lookup, the exact environment, user and
//! groups, own process group, stdin from /dev/null, stdout and stderr as
//! pipes. Never waits for the child: the loop reaps.
//!
//! Depends on std::process, nix (users, groups) and libc.

use colony_ctl::{ProgramName, ProgramSpec};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A started child.
pub struct Child {
    /// Its pid, which is also its process-group id.
    pub pid: i32,
    /// Read end of its stdout.
    pub stdout: File,
    /// Read end of its stderr.
    pub stderr: File,
    /// Read end of its readiness notification pipe (`readiness: {"fd": N}`).
    pub ready: Option<File>,
}

/// Why a program could not be started, with the exit code a shell would
/// report (127: not found, 126: found but cannot be run).
#[derive(Debug)]
pub struct SpawnError {
    /// 126 or 127.
    pub code: i32,
    /// One line for the log.
    pub message: String,
}

impl SpawnError {
    fn new(code: i32, message: String) -> SpawnError {
        SpawnError { code, message }
    }
}

/// What colony adds to a start beyond the spec.
pub struct Extras {
    /// Further environment entries (after the spec's, before NCOLONY_*).
    pub env: Vec<(OsString, OsString)>,
    /// The open-files limit the child gets back.
    pub nofile: Option<libc::rlimit>,
}

/// Looks `program` up on the supervisor's `PATH` when it has no `/`.
pub fn resolve(program: &str, path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path_var = path_var.ok_or_else(|| format!("{program:?} has no '/' and the supervisor has no PATH"))?;
    for dir in std::env::split_paths(path_var) {
        let candidate = dir.join(program);
        if let Ok(meta) = candidate.metadata() {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(format!("{program:?} not found on the supervisor's PATH"))
}

/// The child's whole environment: `env`, then `env_inherit` (unset → ""),
/// then `NCOLONY_CONFIG`/`COLONY_CONFIG` (the raw file) and
/// `NCOLONY_NAME`/`COLONY_NAME`; later entries win.
pub fn environment(
    name: &ProgramName,
    spec: &ProgramSpec,
    raw: &[u8],
    extra: &[(OsString, OsString)],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::with_capacity(spec.env().len() + spec.env_inherit().len() + 4);
    let mut set = |k: OsString, v: OsString| {
        if let Some(slot) = env.iter_mut().find(|(key, _)| *key == k) {
            slot.1 = v;
        } else {
            env.push((k, v));
        }
    };
    for (k, v) in spec.env() {
        set(k.into(), v.into());
    }
    for var in spec.env_inherit() {
        set(var.into(), std::env::var_os(var).unwrap_or_default());
    }
    for (k, v) in extra {
        set(k.clone(), v.clone());
    }
    let raw = OsStr::from_bytes(raw).to_os_string();
    set("NCOLONY_CONFIG".into(), raw.clone());
    set("NCOLONY_NAME".into(), name.as_str().into());
    set("COLONY_CONFIG".into(), raw);
    set("COLONY_NAME".into(), name.as_str().into());
    env
}

/// The ids to switch to, resolved in the parent (nothing in the child may
/// allocate or read /etc).
struct Identity {
    uid: Option<u32>,
    gid: Option<u32>,
    groups: Vec<libc::gid_t>,
}

fn identity(spec: &ProgramSpec) -> Result<Identity, SpawnError> {
    let (uid, mut gid) = (spec.uid(), spec.gid());
    let mut groups = Vec::new();
    if let Some(uid) = uid {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten();
        if user.is_none() && gid.is_none() {
            // Keeping colony's own group (root's) would be a surprise.
            return Err(SpawnError::new(126, format!("uid {uid} has no user entry: give \"gid\" too")));
        }
        if let Some(user) = user {
            let primary = gid.unwrap_or(user.gid.as_raw());
            gid = Some(primary);
            if let Ok(name) = CString::new(user.name.as_bytes()) {
                if let Ok(list) = nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(primary)) {
                    groups = list.into_iter().map(|g| g.as_raw()).collect();
                }
            }
        }
    }
    if groups.is_empty() {
        groups.extend(gid);
    }
    Ok(Identity { uid, gid, groups })
}

/// Starts `spec` as `name`. `raw` is the config file's bytes;
/// `extras` what colony adds.
pub fn spawn(name: &ProgramName, spec: &ProgramSpec, raw: &[u8], extras: &Extras) -> Result<Child, SpawnError> {
    let child_nofile = extras.nofile;
    let args = spec.args();
    let exe = resolve(&args[0], std::env::var_os("PATH").as_deref()).map_err(|msg| SpawnError::new(127, msg))?;
    if let Some(dir) = spec.cwd() {
        if let Err(e) = std::fs::read_dir(dir) {
            return Err(SpawnError::new(126, format!("cannot start in the working directory {dir}: {e}")));
        }
    }
    let mut cmd = Command::new(&exe);
    cmd.arg0(&args[0])
        .args(&args[1..])
        .env_clear()
        .envs(environment(name, spec, raw, &extras.env))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = spec.cwd() {
        cmd.current_dir(Path::new(dir));
    }
    // The readiness pipe: the child writes a newline to fd N.
    let notify = match spec.policies().readiness {
        Some(colony_ctl::Readiness::Fd(n)) => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| SpawnError::new(126, format!("cannot create the readiness pipe: {e}")))?;
            Some((n, r, w))
        }
        _ => None,
    };
    let plain = spec.uid().is_none()
        && spec.gid().is_none()
        && spec.umask().is_none()
        && spec.nice().is_none()
        && spec.limits().is_empty();
    if plain {
        let env = environment(name, spec, raw, &extras.env);
        return spawn_plain(&exe, args, spec.cwd(), env, notify, child_nofile);
    }
    let notify_fds = notify.as_ref().map(|(n, _, w)| (*n, std::os::fd::AsRawFd::as_raw_fd(w)));
    let umask = spec.umask();
    let nice = spec.nice();
    let limits: Vec<(libc::__rlimit_resource_t, libc::rlimit)> = spec
        .limits()
        .iter()
        .map(|&(limit, value)| {
            let resource = match limit {
                colony_ctl::Limit::Nofile => libc::RLIMIT_NOFILE,
                colony_ctl::Limit::Nproc => libc::RLIMIT_NPROC,
                colony_ctl::Limit::Core => libc::RLIMIT_CORE,
                colony_ctl::Limit::As => libc::RLIMIT_AS,
            };
            let v = value.unwrap_or(libc::RLIM_INFINITY);
            (resource, libc::rlimit { rlim_cur: v, rlim_max: v })
        })
        .collect();
    let id = identity(spec)?;
    let switch_ids = id.uid.is_some() || id.gid.is_some();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls on memory prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            crate::sys::reset_signals();
            if let Some(lim) = child_nofile {
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            if let Some(mask) = umask {
                libc::umask(mask as libc::mode_t);
            }
            if let Some(n) = nice {
                // The absolute priority, whatever colony's own is.
                if libc::setpriority(libc::PRIO_PROCESS, 0, n) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (resource, lim) in &limits {
                if libc::setrlimit(*resource, lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((target, w)) = notify_fds {
                if w == target {
                    libc::fcntl(w, libc::F_SETFD, 0);
                } else if libc::dup2(w, target) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if switch_ids {
                if libc::setgroups(id.groups.len(), id.groups.as_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(gid) = id.gid {
                    if libc::setgid(gid) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if let Some(uid) = id.uid {
                    if libc::setuid(uid) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        let code = if e.kind() == io::ErrorKind::NotFound { 127 } else { 126 };
        SpawnError::new(code, format!("cannot start {}: {e}", exe.display()))
    })?;
    let pid = child.id() as i32;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SpawnError::new(126, "child pipes missing".into()));
    };
    // The `Child` handle is dropped without waiting: the loop reaps. Our
    // copy of the write end closes here, so EOF means the child closed it.
    let ready = notify.map(|(_, r, _w)| File::from(r));
    Ok(Child {
        pid,
        stdout: File::from(std::os::fd::OwnedFd::from(out)),
        stderr: File::from(std::os::fd::OwnedFd::from(err)),
        ready,
    })
}

/// The fast path for a program that needs nothing done between fork and
/// exec: `posix_spawn`. Colony's raised open-files limit is given back to
/// the child right after the start.
fn spawn_plain(
    exe: &Path,
    args: &[String],
    cwd: Option<&str>,
    env: Vec<(OsString, OsString)>,
    notify: Option<(i32, std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
    nofile: Option<libc::rlimit>,
) -> Result<Child, SpawnError> {
    use std::os::unix::ffi::OsStrExt as _;
    let bad = |what: &str| SpawnError::new(126, format!("cannot start {}: {what} contains a NUL byte", exe.display()));
    let exe_c = CString::new(exe.as_os_str().as_bytes()).map_err(|_| bad("the path"))?;
    let argv: Vec<CString> =
        args.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>().map_err(|_| bad("an argument"))?;
    let cwd_c = cwd.map(CString::new).transpose().map_err(|_| bad("the working directory"))?;
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| SpawnError::new(126, format!("cannot start {}: no output pipes: {e}", exe.display())))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let request = super::fastspawn::Request {
        exe: &exe_c,
        argv: &argv,
        env,
        cwd: cwd_c.as_deref(),
        stdout: &out_w,
        stderr: &err_w,
        notify: notify.as_ref().map(|(n, _, w)| (*n, w)),
    };
    let pid = super::fastspawn::spawn(request).map_err(|e| {
        let code = if e.kind() == io::ErrorKind::NotFound { 127 } else { 126 };
        SpawnError::new(code, format!("cannot start {}: {e}", exe.display()))
    })?;
    if let Some(lim) = nofile {
        // SAFETY: prlimit(2) on our own child with a valid limit.
        unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    }
    Ok(Child {
        pid,
        stdout: File::from(out_r),
        stderr: File::from(err_r),
        ready: notify.map(|(_, r, _)| File::from(r)),
    })
}

/// Starts a command probe: its own process group, the program's
/// environment, no input or output. The loop reaps it.
pub fn spawn_probe(argv: &[String], env: Vec<(OsString, OsString)>, nofile: Option<libc::rlimit>) -> io::Result<i32> {
    let exe = resolve(&argv[0], std::env::var_os("PATH").as_deref())
        .map_err(|msg| io::Error::new(io::ErrorKind::NotFound, msg))?;
    let mut cmd = Command::new(exe);
    cmd.arg0(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: async-signal-safe calls only, after fork.
    unsafe {
        cmd.pre_exec(move || {
            crate::sys::reset_signals();
            if let Some(lim) = nofile {
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            Ok(())
        });
    }
    Ok(cmd.spawn()?.id() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_is_exact_and_ordered_by_precedence() {
        let spec = ProgramSpec::parse(
            br#"{"args": ["x"], "env": {"A": "1", "NCOLONY_NAME": "spoof"}, "env_inherit": ["COLONY_TEST_SURELY_UNSET"]}"#,
        )
        .unwrap();
        let name = ProgramName::new("web").unwrap();
        let env = environment(&name, &spec, b"RAW", &[]);
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.to_str().unwrap().to_string());
        assert_eq!(get("A").as_deref(), Some("1"));
        assert_eq!(get("COLONY_TEST_SURELY_UNSET").as_deref(), Some(""));
        assert_eq!(get("NCOLONY_NAME").as_deref(), Some("web"));
        assert_eq!(get("NCOLONY_CONFIG").as_deref(), Some("RAW"));
        assert_eq!(get("COLONY_CONFIG").as_deref(), Some("RAW"));
        assert_eq!(get("COLONY_NAME").as_deref(), Some("web"));
        assert_eq!(env.len(), 6);
    }

    #[test]
    fn resolves_on_the_given_path() {
        let path = OsString::from("/nonexistent:/bin:/usr/bin");
        assert!(resolve("sh", Some(&path)).unwrap().ends_with("sh"));
        assert!(resolve("surely-not-a-command", Some(&path)).unwrap_err().contains("not found"));
        assert_eq!(resolve("./x", None).unwrap(), PathBuf::from("./x"));
        assert!(resolve("sh", None).is_err());
    }
}
