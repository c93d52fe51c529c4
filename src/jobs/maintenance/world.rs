//! The real [`World`] of a tick: the spool's files, hook directories,
//! scripts, RESTART messages and the status directory, the reboot command
//! and the kernel's boot id.
//!
//! Depends on colony-ctl (spool, places, status) and the process module.

use super::machine::{self, HookOutcome, RestartProgress};
use super::process::{self, Clock, End, Job, Signals};
use super::session::{ActivityEnd, Phase, World};
use super::settings::Settings;
use colony_ctl::maintenance::{bound_output, Request, Spool, MARKER_FILE, MAX_OUTPUT};
use colony_ctl::{Error, ProgramName};
use jiff::{SignedDuration, Timestamp};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a restart request looks at the status files.
const STATUS_POLL: Duration = Duration::from_millis(100);

/// The real world.
pub struct Real<'a> {
    /// Flags.
    pub settings: &'a Settings,
    /// The spool.
    pub spool: &'a Spool,
    /// The clock.
    pub clock: Clock,
    /// The signals.
    pub signals: &'a mut Signals,
}

fn duration(d: SignedDuration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::MAX)
}

fn shell_job(script: &str) -> Job {
    Job { argv: vec!["/bin/sh".into(), "-c".into(), script.into()], ..Job::default() }
}

/// Executables of a hook directory, by name (dot-files and
/// non-executables skipped).
pub fn hook_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        log::warn!("cannot read hook directory {}", dir.display());
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

impl Real<'_> {
    fn env(&self) -> Vec<(String, String)> {
        vec![("COLONY_MAINTENANCE_SPOOL".into(), self.spool.dir.display().to_string())]
    }

    fn hook_dir(&self, phase: Phase) -> Option<&Path> {
        match phase {
            Phase::Enter => self.settings.enter_hooks.as_deref(),
            Phase::Leave => self.settings.leave_hooks.as_deref(),
        }
    }

    fn activity_end(&self, what: &str, out: process::Outcome) -> ActivityEnd {
        let output = bound_output(&out.output, MAX_OUTPUT);
        let (code, note) = if out.interrupted {
            (None, Some(format!("interrupted: colony maintenance was stopped ({})", out.end.describe())))
        } else if out.timed_out {
            (None, Some(format!("timed out ({})", out.end.describe())))
        } else {
            match &out.end {
                End::Exited(c) => (Some(*c), None),
                End::Signaled(_) => (None, Some(out.end.describe())),
                End::NotStarted(c, why) => (Some(*c), Some(format!("cannot start: {why}"))),
            }
        };
        log::debug!("{what}: {} after {:.1} s", out.end.describe(), out.took.as_secs_f64());
        ActivityEnd { code, output, note }
    }
}

impl World for Real<'_> {
    fn now(&mut self) -> Timestamp {
        self.clock.now()
    }

    fn real_now(&mut self) -> f64 {
        self.clock.real_unix()
    }

    fn stopping(&self) -> bool {
        self.signals.stopping()
    }

    fn save(&mut self, r: &Request) {
        if let Err(e) = self.spool.save(r) {
            log::error!("request {}: {e}", r.short_id());
        }
    }

    fn archive(&mut self, r: &Request) {
        match self.spool.archive(r) {
            Ok(to) => log::info!("request {}: archived ({}) in {}", r.short_id(), r.state.as_str(), to.display()),
            Err(e) => log::error!("request {}: {e}", r.short_id()),
        }
    }

    fn marker(&mut self) -> bool {
        self.spool.marker_path().exists()
    }

    fn write_marker(&mut self, since: Timestamp) {
        let text = format!("{}\n", machine::show(since));
        if let Err(e) = colony_ctl::write_atomic(&self.spool.dir, MARKER_FILE, text.as_bytes()) {
            log::error!("cannot write {}: {e}", self.spool.marker_path().display());
        }
    }

    fn remove_marker(&mut self) {
        if let Err(e) = std::fs::remove_file(self.spool.marker_path()) {
            log::error!("cannot remove {}: {e}", self.spool.marker_path().display());
        }
    }

    fn hooks(&mut self, phase: Phase) -> Vec<String> {
        self.hook_dir(phase).map(hook_names).unwrap_or_default()
    }

    fn run_hook(&mut self, phase: Phase, name: &str, ids: &[String]) -> HookOutcome {
        let Some(dir) = self.hook_dir(phase) else { return HookOutcome::Exited(0) };
        let mut env = self.env();
        env.push(("COLONY_MAINTENANCE_PHASE".into(), phase.as_str().into()));
        env.push(("COLONY_MAINTENANCE_REQUESTS".into(), ids.join(" ")));
        let job = Job {
            argv: vec![dir.join(name).display().to_string()],
            cwd: Some(self.spool.dir.clone()),
            env,
            capture: true,
            timeout: Some(duration(self.settings.hook_timeout)),
            grace: Duration::from_secs(3),
        };
        let out = process::run(self.signals, &job);
        for line in process::lines(&out.output) {
            log::info!("{} hook {name}: {line}", phase.as_str());
        }
        log::debug!("{} hook {name}: {}", phase.as_str(), out.end.describe());
        if out.interrupted {
            return HookOutcome::Interrupted;
        }
        if out.timed_out {
            return HookOutcome::TimedOut;
        }
        match out.end {
            End::Exited(c) => HookOutcome::Exited(c),
            End::Signaled(s) => HookOutcome::Signaled(s),
            End::NotStarted(_, why) => HookOutcome::NotStarted(why),
        }
    }

    fn run_script(&mut self, r: &Request) -> ActivityEnd {
        let colony_ctl::Activity::Script { script } = &r.activity else { unreachable!() };
        let dir = self.spool.request_dir(&r.id);
        let text = if script.starts_with("#!") { script.clone() } else { format!("#!/bin/sh\n{script}") };
        let written = colony_ctl::write_atomic(&dir, "script", text.as_bytes())
            .and_then(|()| std::fs::set_permissions(dir.join("script"), std::fs::Permissions::from_mode(0o755)));
        if let Err(e) = written {
            return ActivityEnd {
                code: Some(73),
                output: String::new(),
                note: Some(format!("cannot write the script: {e}")),
            };
        }
        let mut env = self.env();
        env.push(("COLONY_MAINTENANCE_REQUEST".into(), r.id.clone()));
        let job = Job {
            argv: vec![dir.join("script").display().to_string()],
            cwd: Some(dir),
            env,
            capture: true,
            timeout: None,
            grace: Duration::from_secs(10),
        };
        let out = process::run(self.signals, &job);
        self.activity_end(&format!("request {}", r.short_id()), out)
    }

    fn send_restarts(&mut self, programs: &[String]) -> Result<(), (i32, String)> {
        let Some(places) = &self.settings.places else {
            return Err((70, "colony maintenance has no --config and --messages: it cannot restart programs".into()));
        };
        let mut names = Vec::new();
        for p in programs {
            let name = ProgramName::new(p).map_err(|e| (65, format!("invalid program name {p:?}: {e}")))?;
            if !places.config.join(name.as_str()).is_file() {
                return Err((65, format!("no program named {p:?} in {}", places.config.display())));
            }
            names.push(name);
        }
        for name in names {
            match places.restart(&name) {
                Ok(path) => log::info!("restart {name}: wrote {}", path.display()),
                Err(e @ Error::UnknownProgram { .. }) => return Err((65, e.to_string())),
                Err(e) => return Err((75, e.to_string())),
            }
        }
        Ok(())
    }

    fn wait_restarted(&mut self, programs: &[String], sent_at: f64, timeout: SignedDuration) -> RestartProgress {
        let Some(dir) = self.settings.status.clone() else {
            return RestartProgress::TimedOut(programs.to_vec());
        };
        let mut last = Vec::new();
        loop {
            let seen: Vec<(String, Option<f64>)> = programs
                .iter()
                .map(|p| (p.clone(), colony_ctl::read_program_status(&dir, p).and_then(|s| s.pid.and(s.started))))
                .collect();
            let progress = machine::restart_progress(&seen, sent_at, self.clock.real_unix(), timeout);
            match &progress {
                RestartProgress::Waiting(names) if !self.signals.stopping() => {
                    if *names != last {
                        log::info!("waiting for {} to start again", names.join(", "));
                        last = names.clone();
                    }
                }
                _ => return progress,
            }
            self.signals.pause(Instant::now() + STATUS_POLL);
        }
    }

    fn boot_id(&mut self) -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
    }

    fn reboot(&mut self) -> ActivityEnd {
        let job = Job {
            capture: true,
            timeout: Some(Duration::from_secs(300)),
            grace: Duration::from_secs(5),
            env: self.env(),
            ..shell_job(&self.settings.reboot_command)
        };
        let out = process::run(self.signals, &job);
        for line in process::lines(&out.output) {
            log::info!("reboot command: {line}");
        }
        self.activity_end("reboot command", out)
    }

    fn log(&mut self, warn: bool, msg: String) {
        if warn {
            log::warn!("{msg}");
        } else {
            log::info!("{msg}");
        }
    }
}
