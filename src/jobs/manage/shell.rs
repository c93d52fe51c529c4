//! The manage job's imperative shell: the loop (one wait point, the
//! signalfd, with the next run as the timeout), the lock around each run,
//! and the real [`Exec`]: processes, spread stamps, the maintenance spool.
//!
//! Depends on the maintenance job's process module, the scheduler's stamp
//! files, colony-ctl's spool and the sibling modules.

use super::run::{self, Exec, Mode, Ran};
use super::settings::Settings;
use super::steps::{Defer, Gate, Step};
use super::{EXIT_CANTCREAT, EXIT_OK, EXIT_SOFTWARE, EXIT_TEMPFAIL};
use crate::jobs::maintenance::machine::unix;
use crate::jobs::maintenance::process::{self, Clock, Job, Signals};
use crate::jobs::scheduler::files::{self, StampRead};
use crate::jobs::scheduler::machine::{secs, show};
use crate::jobs::scheduler::spread::Stamp;
use crate::jobs::scheduler::{calendar, spread};
use crate::logging::{Format, Style};
use colony_ctl::maintenance::{Activity, Added, Request, Spool};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek, Write};
use std::time::{Duration, Instant};

/// Runs `colony manage` with validated settings; returns the exit code.
pub fn run(settings: Settings) -> i32 {
    crate::logging::init(Style { format: Format::Text, timestamps: false });
    let clock = Clock::new(settings.now);
    let mut signals = match Signals::setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("colony manage: cannot set up signal handling: {e}");
            return EXIT_SOFTWARE;
        }
    };
    if let Err(e) = open_lock(&settings) {
        eprintln!("colony manage: cannot open lock file {}: {e}", settings.lock.display());
        return EXIT_CANTCREAT;
    }
    describe(&settings);
    if let Some(t) = settings.now {
        log::info!("pretending the time is {}", show(t, &TimeZone::UTC));
    }
    let anchor = clock.now();
    let mut random = files::urandom();
    let mut runs = 0u64;
    loop {
        runs += 1;
        let code = once(&settings, clock, &mut signals, &mut random, runs);
        if signals.stopping() {
            log::info!("stopped");
            return EXIT_OK;
        }
        if settings.once {
            return code;
        }
        let now = clock.now();
        let next = calendar::next_on_grid(anchor, settings.interval, now);
        log::debug!("next run at {}", show(next, &TimeZone::UTC));
        let wait = Duration::try_from(next.duration_since(now)).unwrap_or_default();
        signals.pause(Instant::now() + wait);
        if signals.stopping() {
            log::info!("stopped");
            return EXIT_OK;
        }
    }
}

fn describe(s: &Settings) {
    let list: Vec<String> = s
        .steps
        .iter()
        .map(|st| {
            let mut tags = Vec::new();
            if let Some(g) = &st.gate {
                tags.push(format!("spread {} s", g.slot));
            }
            if st.defer.is_some() && s.spool.is_some() {
                tags.push("maintenance".to_string());
            }
            if tags.is_empty() {
                st.name.clone()
            } else {
                format!("{} ({})", st.name, tags.join(", "))
            }
        })
        .collect();
    let mode = s.spool.as_ref().map_or(String::new(), |p| format!(", with maintenance spool {}", p.display()));
    log::info!(
        "managing {} step(s): {}; every {}, time limit {}{mode}",
        s.steps.len(),
        list.join(", "),
        secs(s.interval),
        secs(s.timeout)
    );
}

fn open_lock(settings: &Settings) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&settings.lock)
}

/// One run under the lock; returns its exit code.
fn once(settings: &Settings, clock: Clock, signals: &mut Signals, random: &mut impl FnMut() -> u64, n: u64) -> i32 {
    let mut lock = match open_lock(settings) {
        Ok(f) => f,
        Err(e) => {
            log::error!("run {n} skipped: cannot open lock file {}: {e}", settings.lock.display());
            return EXIT_CANTCREAT;
        }
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&settings.lock).unwrap_or_default();
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_string() } else { format!("pid {holder}") };
            log::warn!("run {n} skipped: {} is held by {who}", settings.lock.display());
            return EXIT_TEMPFAIL;
        }
        Err(TryLockError::Error(e)) => {
            log::error!("run {n} skipped: cannot lock {}: {e}", settings.lock.display());
            return EXIT_CANTCREAT;
        }
    }
    let _ = lock.set_len(0).and_then(|()| lock.rewind()).and_then(|()| writeln!(lock, "{}", std::process::id()));
    log::info!("run {n} started");
    let mode = Mode { with_maintenance: settings.spool.is_some(), timeout: settings.timeout };
    let mut exec = Real { settings, clock, signals, random };
    let report = run::run_steps(&mut exec, &settings.steps, &mode);
    let _ = lock.set_len(0);
    let _ = lock.unlock();
    if report.code() == 0 {
        log::info!("run {n} done: {}", report.summary());
    } else {
        log::warn!("run {n} failed: {}", report.summary());
    }
    report.code()
}

struct Real<'a, R: FnMut() -> u64> {
    settings: &'a Settings,
    clock: Clock,
    signals: &'a mut Signals,
    random: &'a mut R,
}

impl<R: FnMut() -> u64> Exec for Real<'_, R> {
    fn now(&mut self) -> Timestamp {
        self.clock.now()
    }

    fn stopping(&self) -> bool {
        self.signals.stopping()
    }

    fn stamp(&mut self, gate: &Gate) -> Result<Stamp, String> {
        match files::load_stamp(&gate.stamp, gate.slot, &mut *self.random) {
            Ok(StampRead::Kept(s)) => Ok(s),
            Ok(StampRead::Generated(s, None)) => {
                log::info!("new spread stamp {}: offset {} s", gate.stamp.display(), s.offset);
                Ok(s)
            }
            Ok(StampRead::Generated(s, Some(why))) => {
                log::warn!("spread stamp {}: {why}; regenerated with offset {} s", gate.stamp.display(), s.offset);
                Ok(s)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn touch(&mut self, gate: &Gate, stamp: Stamp) {
        if let Err(e) = files::touch_stamp(&gate.stamp, stamp.mtime) {
            log::error!("cannot touch spread stamp {}: {e}", gate.stamp.display());
        } else {
            let next = spread::next_due(stamp, gate.slot);
            log::debug!("spread stamp {}: next due at {}", gate.stamp.display(), show(next, &TimeZone::UTC));
        }
    }

    fn run(&mut self, step: &Step, timeout: SignedDuration) -> Ran {
        let job = Job {
            argv: step.argv.clone(),
            cwd: None,
            env: vec![("COLONY_MANAGE_STEP".into(), step.name.clone())],
            capture: false,
            timeout: Some(Duration::try_from(timeout).unwrap_or(Duration::ZERO)),
            grace: Duration::try_from(self.settings.grace).unwrap_or(Duration::ZERO),
        };
        log::info!("step {}: started", step.name);
        let out = process::run(self.signals, &job);
        log::info!("step {}: {} after {:.1} s", step.name, out.end.describe(), out.took.as_secs_f64());
        Ran { code: out.end.code(), what: out.end.describe(), timed_out: out.timed_out, interrupted: out.interrupted }
    }

    fn file(&mut self, step: &Step, defer: &Defer, now: Timestamp) -> Result<Added, String> {
        let Some(dir) = &self.settings.spool else { return Err("no spool".into()) };
        let request = Request::new(
            Activity::Script { script: step.script.clone() },
            defer.comment.clone(),
            defer.estimate,
            unix(now),
        );
        Spool::new(dir).add(&request).map_err(|e| e.to_string())
    }

    fn log(&mut self, warn: bool, msg: String) {
        if warn {
            log::warn!("{msg}");
        } else {
            log::info!("{msg}");
        }
    }
}
