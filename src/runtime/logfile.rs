//! A program's own log file (the `log` key): lines with a timestamp,
//! rotated by size (`FILE` → `FILE.1` → … → `FILE.N`), written by colony
//! itself. A write error is reported once and the lines are dropped until
//! the file can be written again; supervision never waits on it.
//!
//! Depends on std and the logging module's timestamp.

use colony_ctl::LogFile;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait before trying a failed log file again.
const RETRY: Duration = Duration::from_secs(1);

/// One program's log file.
pub struct LogWriter {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<io::BufWriter<File>>,
    size: u64,
    /// Set while the file cannot be written: when to try again.
    broken_until: Option<Instant>,
    /// A write error was reported and nothing has reached the file since.
    failing: bool,
    dropped: u64,
}

impl LogWriter {
    /// A writer for `spec` (nothing is opened until the first line).
    pub fn new(spec: &LogFile) -> LogWriter {
        LogWriter {
            path: PathBuf::from(&spec.file),
            max_size: spec.max_size,
            keep: spec.keep,
            file: None,
            size: 0,
            broken_until: None,
            failing: false,
            dropped: 0,
        }
    }

    /// Whether this writer was made for `spec`.
    pub fn is_for(&self, spec: &LogFile) -> bool {
        self.path == Path::new(&spec.file) && self.max_size == spec.max_size && self.keep == spec.keep
    }

    /// Appends `stamp line\n`, rotating first if the file would outgrow
    /// `max_size`.
    pub fn line(&mut self, stamp: &str, line: &[u8]) {
        let len = (stamp.len() + 1 + line.len() + 1) as u64;
        if let Some(until) = self.broken_until {
            if Instant::now() < until {
                self.dropped += 1;
                return;
            }
            self.broken_until = None;
        }
        if let Err(e) = self.write(stamp, line, len) {
            self.fail(e);
        }
    }

    fn write(&mut self, stamp: &str, line: &[u8], len: u64) -> io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        let f = self.file.as_mut().ok_or_else(|| io::Error::other("log file not open"))?;
        f.write_all(stamp.as_bytes())?;
        f.write_all(b" ")?;
        f.write_all(line)?;
        f.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    fn open(&mut self) -> io::Result<()> {
        let file = OpenOptions::new().create(true).append(true).mode(0o640).open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(io::BufWriter::with_capacity(16 * 1024, file));
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            for n in (1..self.keep).rev() {
                std::fs::rename(numbered(n), numbered(n + 1)).or_else(ignore_missing)?;
            }
            std::fs::rename(&self.path, numbered(1)).or_else(ignore_missing)?;
        }
        self.open()
    }

    fn fail(&mut self, e: io::Error) {
        if !self.failing {
            log::error!("{}: cannot write: {e}; dropping lines, retrying every second", self.path.display());
            self.failing = true;
        }
        self.dropped += 1;
        // The buffered lines are lost with it (and counted as one).
        if let Some(f) = self.file.take() {
            let _ = f.into_parts();
        }
        self.broken_until = Some(Instant::now() + RETRY);
    }

    /// Writes out buffered lines; only a write that reached the file ends a
    /// failure (lines merely buffered prove nothing).
    pub fn flush(&mut self) {
        let Some(f) = &mut self.file else { return };
        match f.flush() {
            Err(e) => self.fail(e),
            Ok(()) if self.failing => {
                log::warn!("{}: writing again; {} line(s) were dropped", self.path.display(), self.dropped);
                self.failing = false;
                self.dropped = 0;
            }
            Ok(()) => {}
        }
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.log");
        let spec = LogFile { file: path.to_str().unwrap().into(), max_size: 100, keep: 2 };
        let mut w = LogWriter::new(&spec);
        for i in 0..20 {
            w.line("T", format!("line {i:02} ......................").as_bytes());
        }
        w.flush();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let cur = read(&path);
        let one = read(&dir.path().join("web.log.1"));
        let two = read(&dir.path().join("web.log.2"));
        assert!(cur.ends_with("line 19 ......................\n"), "{cur}");
        assert!(cur.len() <= 100 && one.len() <= 100 && two.len() <= 100);
        assert!(!one.is_empty() && !two.is_empty());
        assert!(!dir.path().join("web.log.3").exists());
        assert!(cur.starts_with("T line"));
    }

    #[test]
    fn an_unwritable_file_drops_lines_without_failing() {
        let spec = LogFile { file: "/nonexistent-dir/x.log".into(), max_size: 100, keep: 1 };
        let mut w = LogWriter::new(&spec);
        w.line("T", b"a");
        w.line("T", b"b");
        assert_eq!(w.dropped, 2);
    }
}
