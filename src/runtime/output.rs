//! Child output: non-blocking pipe reads split into lines and forwarded to
//! colony's stderr (`[name] line`, or JSON) in few large writes, or to the
//! program's own log file. Long lines are cut at a bound; a partial last
//! line waits for the rest.
//!
//! Depends on std, the logging style and the log file writer; the loop owns
//! every stream.

use super::logfile::LogWriter;
use crate::logging::{rfc3339_millis, Format, Style};
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::SystemTime;

/// The longest line forwarded in one piece; longer ones are cut.
pub const MAX_LINE: usize = 16 * 1024;
/// How much one stream may read per wake-up before others get a turn.
const READ_BUDGET: usize = 256 * 1024;
/// Flush the batch once it holds this much.
const FLUSH_AT: usize = 64 * 1024;

/// Which of a child's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One pipe from a child.
pub struct Stream {
    /// The program's name (the log prefix).
    pub name: colony_ctl::ProgramName,
    /// stdout or stderr (kept apart for structured logs).
    pub kind: Kind,
    /// The read end, non-blocking.
    pub pipe: File,
    /// The program's own log file, instead of colony's stderr.
    pub file: Option<Rc<RefCell<LogWriter>>>,
    partial: Vec<u8>,
}

/// What a read pass found.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// The pipe is empty for now.
    Empty,
    /// The budget ran out; more may be waiting.
    More,
    /// The child closed its end.
    Closed,
}

impl Stream {
    /// Wraps a pipe (sets it non-blocking).
    pub fn new(
        name: colony_ctl::ProgramName,
        kind: Kind,
        pipe: File,
        file: Option<Rc<RefCell<LogWriter>>>,
    ) -> io::Result<Stream> {
        set_nonblocking(&pipe)?;
        Ok(Stream { name, kind, pipe, file, partial: Vec::new() })
    }

    fn emit(&self, sink: &mut Sink, line: &[u8]) {
        match &self.file {
            Some(f) => f.borrow_mut().line(sink.stamp(), line),
            None => sink.line(self.name.as_str(), self.kind, line),
        }
    }

    /// Reads what is there (up to the budget) and forwards whole lines.
    pub fn drain(&mut self, buf: &mut [u8], sink: &mut Sink) -> Drained {
        let mut total = 0;
        let enabled = self.file.is_some() || sink.enabled(self.name.as_str());
        sink.begin();
        loop {
            match self.pipe.read(buf) {
                Ok(0) => {
                    self.flush_partial(sink, enabled);
                    return Drained::Closed;
                }
                Ok(n) => {
                    if enabled {
                        self.split(&buf[..n], sink);
                    }
                    total += n;
                    if total >= READ_BUDGET {
                        return Drained::More;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.flush_partial(sink, enabled);
                    return Drained::Closed;
                }
            }
        }
    }

    fn split(&mut self, mut data: &[u8], sink: &mut Sink) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.emit(sink, &data[..i]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&data[..i]);
                self.emit(sink, &line);
                line.clear();
                self.partial = line;
            }
            data = &data[i + 1..];
        }
        while self.partial.len() + data.len() >= MAX_LINE {
            let take = MAX_LINE - self.partial.len();
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&data[..take]);
            self.emit(sink, &line);
            line.clear();
            self.partial = line;
            data = &data[take..];
        }
        self.partial.extend_from_slice(data);
        if self.partial.is_empty() && self.partial.capacity() > MAX_LINE {
            self.partial = Vec::new();
        }
    }

    fn flush_partial(&mut self, sink: &mut Sink, enabled: bool) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            if enabled {
                self.emit(sink, &line);
            }
        }
    }
}

fn set_nonblocking(f: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where child lines go: a batch buffer written to stderr in large writes.
pub struct Sink {
    buf: Vec<u8>,
    out: Box<dyn Write>,
    style: Style,
    stamp: String,
}

impl Sink {
    /// A sink writing to colony's stderr.
    pub fn stderr(style: Style) -> Sink {
        Sink { buf: Vec::new(), out: Box::new(io::stderr()), style, stamp: String::new() }
    }

    /// A sink writing to `out` (tests).
    #[cfg(test)]
    pub fn to(out: Box<dyn Write>, style: Style) -> Sink {
        Sink { buf: Vec::new(), out, style, stamp: String::new() }
    }

    /// Whether lines of `name` are wanted (COLONY_LOG may silence a program
    /// by its name as the log target).
    pub fn enabled(&self, name: &str) -> bool {
        log::log_enabled!(target: name, log::Level::Info)
    }

    /// Takes the time once for the lines of one read pass.
    pub fn begin(&mut self) {
        self.stamp = rfc3339_millis(SystemTime::now());
    }

    /// The current pass's timestamp.
    pub fn stamp(&self) -> &str {
        &self.stamp
    }

    /// Appends one line of `name`'s output.
    pub fn line(&mut self, name: &str, kind: Kind, line: &[u8]) {
        match self.style.format {
            Format::Text => {
                if self.style.timestamps {
                    self.buf.extend_from_slice(self.stamp.as_bytes());
                    self.buf.push(b' ');
                }
                self.buf.push(b'[');
                self.buf.extend_from_slice(name.as_bytes());
                self.buf.extend_from_slice(b"] ");
                self.buf.extend_from_slice(line);
                self.buf.push(b'\n');
            }
            Format::Json => {
                let stream = match kind {
                    Kind::Stdout => "stdout",
                    Kind::Stderr => "stderr",
                };
                let obj = serde_json::json!({
                    "ts": self.stamp,
                    "program": name,
                    "stream": stream,
                    "line": String::from_utf8_lossy(line),
                });
                let _ = serde_json::to_writer(&mut self.buf, &obj);
                self.buf.push(b'\n');
            }
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Writes out the batch.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            // Logging must never stop supervision: a failed write is dropped.
            let _ = self.out.write_all(&self.buf);
            let _ = self.out.flush();
            self.buf.clear();
            if self.buf.capacity() > 4 * FLUSH_AT {
                self.buf.shrink_to(FLUSH_AT * 2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn splits_lines_joins_partials_and_bounds_long_lines() {
        let shared = Shared::default();
        let style = Style { format: Format::Text, timestamps: false };
        let mut sink = Sink::to(Box::new(shared.clone()), style);
        let (r, _w) = nix::unistd::pipe().unwrap();
        let mut s =
            Stream::new(colony_ctl::ProgramName::new("web").unwrap(), Kind::Stdout, File::from(r), None).unwrap();
        s.split(b"one\ntw", &mut sink);
        s.split(b"o\n", &mut sink);
        s.split(&vec![b'x'; MAX_LINE + 10], &mut sink);
        s.split(b"\n", &mut sink);
        sink.flush();
        let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "[web] one");
        assert_eq!(lines[1], "[web] two");
        assert_eq!(lines[2].len(), "[web] ".len() + MAX_LINE);
        assert_eq!(lines[3], "[web] xxxxxxxxxx");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn json_lines_carry_program_stream_and_line() {
        let shared = Shared::default();
        let mut sink = Sink::to(Box::new(shared.clone()), Style { format: Format::Json, timestamps: true });
        sink.begin();
        sink.line("web", Kind::Stderr, b"oops \xff \"quoted\"");
        sink.flush();
        let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["program"], "web");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["line"], "oops \u{fffd} \"quoted\"");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }
}
