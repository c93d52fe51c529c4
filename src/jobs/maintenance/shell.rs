//! The maintenance job's imperative shell: the lock, the loop and its one
//! wait point (the signalfd and an inotify watch on the spool, with the
//! next tick as the timeout), and the scan that feeds each tick.
//!
//! Depends on mio, libc, colony-ctl's spool and the sibling modules.

use super::machine;
use super::process::{Clock, Signals};
use super::session::{self, Report};
use super::settings::Settings;
use super::world::Real;
use super::{EXIT_CANTCREAT, EXIT_OK, EXIT_SOFTWARE, EXIT_TEMPFAIL};
use crate::logging::{Format, Style};
use colony_ctl::maintenance::{Request, Spool, SpoolError, DELETE_FILE};
use jiff::SignedDuration;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The longest single wait: a changed wall clock is noticed this fast.
const MAX_WAIT: SignedDuration = SignedDuration::from_secs(60);
/// Without inotify, the trigger and new requests are looked for this often.
const RESCAN: SignedDuration = SignedDuration::from_secs(1);

/// Runs `colony maintenance` with validated settings; returns the exit code.
pub fn run(settings: Settings) -> i32 {
    crate::logging::init(Style { format: Format::Text, timestamps: false });
    let clock = Clock::new(settings.now);
    let mut signals = match Signals::setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("colony maintenance: cannot set up signal handling: {e}");
            return EXIT_SOFTWARE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&settings.spool) {
        eprintln!("colony maintenance: cannot create spool {}: {e}", settings.spool.display());
        return EXIT_CANTCREAT;
    }
    let spool = Spool::new(&settings.spool);
    if let Err(e) = spool.ensure() {
        eprintln!("colony maintenance: {e}");
        return EXIT_CANTCREAT;
    }
    let _lock = match spool.try_lock() {
        Ok(Ok(lock)) => lock,
        Ok(Err(pid)) => {
            let who = pid.map_or("another process".to_string(), |p| format!("another colony maintenance (pid {p})"));
            eprintln!("colony maintenance: {who} holds {}", spool.lock_path().display());
            return EXIT_TEMPFAIL;
        }
        Err(e) => {
            eprintln!("colony maintenance: {e}");
            return EXIT_CANTCREAT;
        }
    };
    describe(&settings);
    if let Some(t) = settings.now {
        log::info!("pretending the time is {}", machine::show(t));
    }
    let watcher = match Watcher::new(&spool) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!("cannot watch {} ({e}): looking for new requests every second", spool.dir.display());
            None
        }
    };
    let mut poll = match Poll::new().and_then(|p| {
        let raw = signals.raw_fd();
        p.registry().register(&mut SourceFd(&raw), Token(0), Interest::READABLE)?;
        if let Some(w) = &watcher {
            let raw = w.fd.as_raw_fd();
            p.registry().register(&mut SourceFd(&raw), Token(1), Interest::READABLE)?;
        }
        Ok(p)
    }) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("colony maintenance: cannot poll: {e}");
            return EXIT_SOFTWARE;
        }
    };
    let mut events = Events::with_capacity(8);
    loop {
        // Names before the tick: a request queued while it runs (by a
        // script, say) makes the next tick come at once.
        let known = request_names(&spool);
        let (report, queued) = tick(&settings, &spool, clock, &mut signals);
        if signals.stopping() {
            log::info!("stopped");
            return EXIT_OK;
        }
        if settings.once {
            return report.code;
        }
        let now = clock.now();
        let wake = machine::next_wake(
            now,
            &queued,
            settings.interval,
            &settings.config.limits,
            settings.config.reboot_timeout,
        );
        log::debug!("next tick at {}", machine::show(wake));
        loop {
            let now = clock.now();
            if now >= wake {
                break;
            }
            let cap = if watcher.is_some() { MAX_WAIT } else { RESCAN };
            let wait = wake.duration_since(now).clamp(SignedDuration::ZERO, cap);
            if let Err(e) = poll.poll(&mut events, Some(std::time::Duration::try_from(wait).unwrap_or_default())) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                }
            }
            signals.drain();
            reap_strays();
            if signals.stopping() {
                log::info!("stopped");
                return EXIT_OK;
            }
            if let Some(w) = &watcher {
                w.drain();
            }
            if spool.trigger_path().exists() {
                log::info!("tick asked for ({} exists)", spool.trigger_path().display());
                break;
            }
            if request_names(&spool).difference(&known).next().is_some() {
                log::info!("new request queued");
                break;
            }
        }
    }
}

fn describe(s: &Settings) {
    let windows = if s.config.windows.is_empty() {
        "no maintenance windows: requests run as soon as they are queued".to_string()
    } else {
        let list: Vec<String> = s.config.windows.iter().map(|w| w.describe()).collect();
        format!("windows {}", list.join(", "))
    };
    log::info!("maintenance spool {}: {windows}; tick every {}", s.spool.display(), machine::show_secs(s.interval));
}

/// One tick: consume the trigger, read the spool, run the session.
/// Returns the report and the requests still queued.
fn tick(settings: &Settings, spool: &Spool, clock: Clock, signals: &mut Signals) -> (Report, Vec<Request>) {
    let _ = std::fs::remove_file(spool.trigger_path());
    let (mut requests, deletions) = scan(spool);
    let mut world = Real { settings, spool, clock, signals };
    let report = session::tick(&mut world, &settings.config, &mut requests, &deletions);
    (report, requests)
}

/// Reads the queued requests and the deletion asks; a request file that
/// does not parse is moved to the archive with a `load_error` file.
fn scan(spool: &Spool) -> (Vec<Request>, Vec<String>) {
    let entries = match spool.queued() {
        Ok(e) => e,
        Err(e) => {
            log::error!("{e}");
            return (Vec::new(), Vec::new());
        }
    };
    let mut requests = Vec::new();
    for entry in entries {
        match entry {
            Ok(r) => requests.push(r),
            Err(SpoolError::Bad(file, why)) => quarantine(spool, &file, &why),
            Err(e) => log::error!("{e}"),
        }
    }
    let deletions =
        requests.iter().filter(|r| spool.request_dir(&r.id).join(DELETE_FILE).exists()).map(|r| r.id.clone()).collect();
    (requests, deletions)
}

fn quarantine(spool: &Spool, file: &Path, why: &str) {
    let Some(dir) = file.parent() else { return };
    let Some(name) = dir.file_name() else { return };
    log::error!("{}: {why}; moved to the archive", file.display());
    let _ = colony_ctl::write_atomic(dir, "load_error", format!("{why}\n").as_bytes());
    let mut to = spool.archive_dir().join(name);
    let mut n = 1;
    while to.exists() {
        to = spool.archive_dir().join(format!("{}-{n}", name.to_string_lossy()));
        n += 1;
    }
    if let Err(e) = std::fs::rename(dir, &to) {
        log::error!("cannot move {} to {}: {e}", dir.display(), to.display());
    }
}

/// The names in `requests/` (dot-names aside).
fn request_names(spool: &Spool) -> BTreeSet<String> {
    std::fs::read_dir(spool.requests_dir())
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Reaps children nobody waits for (none are expected between ticks).
fn reap_strays() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(status) = waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// An inotify descriptor watching the spool (the trigger) and
/// `requests/` (new requests). Events are never interpreted: a wake-up
/// only makes the loop look at the files.
struct Watcher {
    fd: OwnedFd,
}

impl Watcher {
    fn new(spool: &Spool) -> io::Result<Watcher> {
        // SAFETY: plain system calls; the descriptor is owned at once.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for dir in [spool.dir.clone(), spool.requests_dir()] {
            let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
            let mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;
            // SAFETY: a valid descriptor and NUL-terminated path.
            if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Watcher { fd })
    }

    fn drain(&self) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into a local buffer of the given length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
        }
    }
}
