//! The fast way to start a plain program: `posix_spawn` (vfork + exec in
//! the C library), with an empty signal mask, default signal dispositions,
//! its own process group, stdin from /dev/null and the two output pipes.
//! Programs that need anything done between fork and exec (user and group,
//! umask, nice, limits) go through `std::process` instead.
//!
//! Depends on libc only; the caller resolves the executable and builds the
//! environment.

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::ptr;

/// What to start.
pub struct Request<'a> {
    /// The executable's path.
    pub exe: &'a CStr,
    /// argv, including argv[0].
    pub argv: &'a [CString],
    /// The whole environment.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory, if any.
    pub cwd: Option<&'a CStr>,
    /// Write ends for stdout and stderr.
    pub stdout: &'a OwnedFd,
    /// Write end for stderr.
    pub stderr: &'a OwnedFd,
    /// The readiness pipe's write end and the fd number the child sees.
    pub notify: Option<(i32, &'a OwnedFd)>,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

struct Attr(libc::posix_spawnattr_t);
impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: initialised in `spawn`.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

struct Actions(libc::posix_spawn_file_actions_t);
impl Drop for Actions {
    fn drop(&mut self) {
        // SAFETY: initialised in `spawn`.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// Starts the program; returns its pid. An exec failure comes back as the
/// error (the C library reports it synchronously).
pub fn spawn(req: Request<'_>) -> io::Result<libc::pid_t> {
    let env: Vec<CString> = req
        .env
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the environment"))
        })
        .collect::<io::Result<_>>()?;
    let mut argv_ptrs: Vec<*mut libc::c_char> = req.argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv_ptrs.push(ptr::null_mut());
    let mut env_ptrs: Vec<*mut libc::c_char> = env.iter().map(|a| a.as_ptr() as *mut _).collect();
    env_ptrs.push(ptr::null_mut());
    let dev_null = c"/dev/null";

    // SAFETY: every libc call below gets initialised structures and
    // pointers into buffers that outlive the posix_spawn call.
    unsafe {
        let mut attr = Attr(std::mem::zeroed());
        check(libc::posix_spawnattr_init(&mut attr.0))?;
        let mut actions = Actions(std::mem::zeroed());
        check(libc::posix_spawn_file_actions_init(&mut actions.0))?;

        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigdelset(&mut all, libc::SIGKILL);
        libc::sigdelset(&mut all, libc::SIGSTOP);
        check(libc::posix_spawnattr_setsigmask(&mut attr.0, &empty))?;
        check(libc::posix_spawnattr_setsigdefault(&mut attr.0, &all))?;
        check(libc::posix_spawnattr_setpgroup(&mut attr.0, 0))?;
        let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETPGROUP;
        check(libc::posix_spawnattr_setflags(&mut attr.0, flags as libc::c_short))?;

        let fa = &mut actions.0;
        check(libc::posix_spawn_file_actions_addopen(fa, 0, dev_null.as_ptr(), libc::O_RDONLY, 0))?;
        check(libc::posix_spawn_file_actions_adddup2(fa, req.stdout.as_raw_fd(), 1))?;
        check(libc::posix_spawn_file_actions_adddup2(fa, req.stderr.as_raw_fd(), 2))?;
        let mut cleared: Option<RawFd> = None;
        if let Some((target, w)) = req.notify {
            let w = w.as_raw_fd();
            if w == target {
                // dup2 onto itself keeps close-on-exec: clear it for the
                // time of the spawn (one thread: nobody else forks).
                libc::fcntl(w, libc::F_SETFD, 0);
                cleared = Some(w);
            } else {
                check(libc::posix_spawn_file_actions_adddup2(fa, w, target))?;
            }
        }
        if let Some(dir) = req.cwd {
            check(libc::posix_spawn_file_actions_addchdir_np(fa, dir.as_ptr()))?;
        }
        let mut pid: libc::pid_t = 0;
        let rc = libc::posix_spawn(&mut pid, req.exe.as_ptr(), fa, &attr.0, argv_ptrs.as_ptr(), env_ptrs.as_ptr());
        if let Some(w) = cleared {
            libc::fcntl(w, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        check(rc)?;
        Ok(pid)
    }
}
