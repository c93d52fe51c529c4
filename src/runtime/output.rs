//! Child output: non-blocking pipe reads split into lines and forwarded to
//! colony's stderr as `[name] line`, batched into few writes. Long lines are
//! cut at a bound; a partial last line waits for the rest.
//!
//! Depends on std only; the loop owns every stream.

use std::fs::File;
use std::io::{self, Read, Write};

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
    pub name: String,
    /// stdout or stderr (kept apart for structured logs).
    #[allow(dead_code)]
    pub kind: Kind,
    /// The read end, non-blocking.
    pub pipe: File,
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
    pub fn new(name: String, kind: Kind, pipe: File) -> io::Result<Stream> {
        set_nonblocking(&pipe)?;
        Ok(Stream { name, kind, pipe, partial: Vec::new() })
    }

    /// Reads what is there (up to the budget) and forwards whole lines.
    pub fn drain(&mut self, buf: &mut [u8], sink: &mut Sink) -> Drained {
        let mut total = 0;
        let enabled = sink.enabled(&self.name);
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
                sink.line(&self.name, &data[..i]);
            } else {
                self.partial.extend_from_slice(&data[..i]);
                sink.line(&self.name, &self.partial);
                self.partial.clear();
            }
            data = &data[i + 1..];
        }
        while self.partial.len() + data.len() >= MAX_LINE {
            let take = MAX_LINE - self.partial.len();
            self.partial.extend_from_slice(&data[..take]);
            sink.line(&self.name, &self.partial);
            self.partial.clear();
            data = &data[take..];
        }
        self.partial.extend_from_slice(data);
        if self.partial.is_empty() && self.partial.capacity() > MAX_LINE {
            self.partial = Vec::new();
        }
    }

    fn flush_partial(&mut self, sink: &mut Sink, enabled: bool) {
        if !self.partial.is_empty() {
            if enabled {
                sink.line(&self.name, &self.partial);
            }
            self.partial = Vec::new();
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
}

impl Sink {
    /// A sink writing to colony's stderr.
    pub fn stderr() -> Sink {
        Sink { buf: Vec::with_capacity(FLUSH_AT * 2), out: Box::new(io::stderr()) }
    }

    /// A sink writing to `out` (tests).
    #[cfg(test)]
    pub fn to(out: Box<dyn Write>) -> Sink {
        Sink { buf: Vec::new(), out }
    }

    /// Whether lines of `name` are wanted (COLONY_LOG may silence a program
    /// by its name as the log target).
    pub fn enabled(&self, name: &str) -> bool {
        log::log_enabled!(target: name, log::Level::Info)
    }

    /// Appends `[name] line`.
    pub fn line(&mut self, name: &str, line: &[u8]) {
        self.buf.push(b'[');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"] ");
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
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
        let mut sink = Sink::to(Box::new(shared.clone()));
        let (r, _w) = nix::unistd::pipe().unwrap();
        let mut s = Stream::new("web".into(), Kind::Stdout, File::from(r)).unwrap();
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
}
