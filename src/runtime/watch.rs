//! Directory watching: inotify (through notify) only marks the config or
//! messages directory dirty and wakes the loop; the loop re-reads the
//! directory whole. Individual events are never interpreted.
//!
//! Depends on notify and mio's Waker.

use colony_ctl::is_ignored_file_name;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// The config directory changed.
pub const CONFIG: u8 = 1;
/// The messages directory changed.
pub const MESSAGES: u8 = 2;

/// Dirty marks shared with the watcher thread.
#[derive(Clone, Default)]
pub struct Dirty(Arc<AtomicU8>);

impl Dirty {
    /// Sets marks.
    pub fn mark(&self, bits: u8) {
        self.0.fetch_or(bits, Ordering::AcqRel);
    }

    /// Takes and clears every mark.
    pub fn take(&self) -> u8 {
        self.0.swap(0, Ordering::AcqRel)
    }
}

/// Whether an event touched a file that a reader cares about.
fn relevant(paths: &[PathBuf]) -> bool {
    paths.is_empty()
        || paths.iter().any(|p| match p.file_name().and_then(|n| n.to_str()) {
            Some(n) => !is_ignored_file_name(n),
            None => true,
        })
}

/// Watches both directories; the watcher lives as long as the value.
pub fn start(
    config: &Path,
    messages: &Path,
    dirty: Dirty,
    waker: Arc<mio::Waker>,
) -> notify::Result<notify::RecommendedWatcher> {
    let (cfg, msg) = (config.to_path_buf(), messages.to_path_buf());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let bits = match res {
            Ok(ev) if ev.need_rescan() => CONFIG | MESSAGES,
            // colony's own reads (open, read, close without writing) must
            // not wake it, or every rescan would cause the next one.
            Ok(ev) if matches!(ev.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write)) => 0,
            Ok(ev) if !relevant(&ev.paths) => 0,
            Ok(ev) => ev.paths.iter().fold(0, |b, p| {
                let dir = p.parent().unwrap_or(p);
                b | if dir == cfg || p == &cfg { CONFIG } else { 0 }
                    | if dir == msg || p == &msg { MESSAGES } else { 0 }
            }),
            // An error (e.g. queue overflow) is just another rescan.
            Err(_) => CONFIG | MESSAGES,
        };
        if bits != 0 {
            dirty.mark(bits);
            let _ = waker.wake();
        }
    })?;
    watcher.watch(config, RecursiveMode::NonRecursive)?;
    watcher.watch(messages, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
