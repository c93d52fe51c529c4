//! The spool's operations: add with de-duplication, list, resolve an id
//! prefix, load, save, archive, delete, the lock, the trigger and the
//! marker. Every file goes through [`write_atomic`].
//!
//! Depends on the request format (the parent module) and the files module.

use super::{new_id, order, Request, RequestState, DELETE_FILE, LOCK_FILE, MARKER_FILE, REQUEST_FILE, TRIGGER_FILE};
use crate::files::write_atomic;
use std::fmt;
use std::fs;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};

/// What went wrong with a spool operation.
#[derive(Debug)]
pub enum SpoolError {
    /// The spool directory does not exist.
    NoSpool(PathBuf),
    /// No queued request has an id starting with this.
    NoSuchRequest(String),
    /// Several queued requests have ids starting with this.
    Ambiguous(String, Vec<String>),
    /// A request file does not parse.
    Bad(PathBuf, String),
    /// A system call failed.
    Io(&'static str, PathBuf, io::Error),
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::NoSpool(p) => write!(f, "maintenance spool {} does not exist", p.display()),
            SpoolError::NoSuchRequest(p) => write!(f, "no queued request with an id starting with {p:?}"),
            SpoolError::Ambiguous(p, ids) => {
                write!(f, "{p:?} is ambiguous: it starts {} queued ids ({})", ids.len(), ids.join(", "))
            }
            SpoolError::Bad(p, why) => write!(f, "cannot parse {}: {why}", p.display()),
            SpoolError::Io(what, p, e) => write!(f, "cannot {what} {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for SpoolError {}

/// The outcome of [`Spool::add`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Queued with this id.
    New(String),
    /// Not queued: the queued request with this id has the same comment.
    Duplicate(String),
}

/// The outcome of [`Spool::delete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// No job was running: the request was archived as deleted.
    Archived(String),
    /// The job (this pid) holds the spool: it deletes the request at its
    /// next tick, which the trigger starts at once.
    Marked(String, Option<u32>),
}

/// The spool lock, held until dropped (the pid is written inside, and
/// removed on drop).
#[derive(Debug)]
pub struct SpoolLock {
    file: fs::File,
}

impl Drop for SpoolLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// A maintenance spool directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spool {
    /// The directory.
    pub dir: PathBuf,
}

impl Spool {
    /// Names the spool; nothing is checked until it is used.
    pub fn new(dir: impl Into<PathBuf>) -> Spool {
        Spool { dir: dir.into() }
    }

    /// `SPOOL/requests`.
    pub fn requests_dir(&self) -> PathBuf {
        self.dir.join("requests")
    }

    /// `SPOOL/archive`.
    pub fn archive_dir(&self) -> PathBuf {
        self.dir.join("archive")
    }

    /// The directory of a queued request.
    pub fn request_dir(&self, id: &str) -> PathBuf {
        self.requests_dir().join(id)
    }

    /// `SPOOL/in_maintenance`.
    pub fn marker_path(&self) -> PathBuf {
        self.dir.join(MARKER_FILE)
    }

    /// `SPOOL/run`.
    pub fn trigger_path(&self) -> PathBuf {
        self.dir.join(TRIGGER_FILE)
    }

    /// `SPOOL/.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// Creates `requests/` and `archive/` (the spool itself must exist).
    pub fn ensure(&self) -> Result<(), SpoolError> {
        if !self.dir.is_dir() {
            return Err(SpoolError::NoSpool(self.dir.clone()));
        }
        for d in [self.requests_dir(), self.archive_dir()] {
            if let Err(e) = fs::create_dir(&d) {
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(SpoolError::Io("create", d, e));
                }
            }
        }
        Ok(())
    }

    /// Queues a request, unless a queued request has the same non-empty
    /// comment (fc.maintenance 2019–2022: the second one is skipped).
    pub fn add(&self, request: &Request) -> Result<Added, SpoolError> {
        self.ensure()?;
        if !request.comment.trim().is_empty() {
            for queued in self.queued()?.into_iter().flatten() {
                if queued.comment == request.comment && !queued.state.is_final() {
                    return Ok(Added::Duplicate(queued.id));
                }
            }
        }
        let mut request = request.clone();
        loop {
            let temp = self.requests_dir().join(format!(".{}.new", request.id));
            fs::create_dir(&temp).map_err(|e| SpoolError::Io("create", temp.clone(), e))?;
            let filled = write_atomic(&temp, REQUEST_FILE, &request.to_bytes())
                .and_then(|()| fs::rename(&temp, self.request_dir(&request.id)));
            match filled {
                Ok(()) => return Ok(Added::New(request.id)),
                Err(e) => {
                    let _ = fs::remove_file(temp.join(REQUEST_FILE));
                    let _ = fs::remove_dir(&temp);
                    // The same id (astronomically unlikely): draw again.
                    if self.request_dir(&request.id).exists() {
                        request.id = new_id();
                        continue;
                    }
                    return Err(SpoolError::Io("write", self.request_dir(&request.id), e));
                }
            }
        }
    }

    fn read_dir_requests(&self, dir: &Path) -> Result<Vec<Result<Request, SpoolError>>, SpoolError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.dir.is_dir() => return Ok(Vec::new()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SpoolError::NoSpool(self.dir.clone())),
            Err(e) => return Err(SpoolError::Io("read", dir.to_path_buf(), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let file = entry.path().join(REQUEST_FILE);
            match fs::read(&file) {
                Ok(bytes) => out.push(Request::parse(&bytes).map_err(|why| SpoolError::Bad(file, why))),
                // An empty directory (filled by hand, or being removed).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => out.push(Err(SpoolError::Io("read", file, e))),
            }
        }
        out.sort_by(|a, b| match (a, b) {
            (Ok(a), Ok(b)) => order(a, b),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => std::cmp::Ordering::Equal,
        });
        Ok(out)
    }

    /// The queued requests, in fc's order (scheduled first by slot, then
    /// by filing time, then id); one that cannot be read comes with its
    /// error, last.
    pub fn queued(&self) -> Result<Vec<Result<Request, SpoolError>>, SpoolError> {
        self.read_dir_requests(&self.requests_dir())
    }

    /// The archived requests, oldest filing first.
    pub fn archived(&self) -> Result<Vec<Result<Request, SpoolError>>, SpoolError> {
        let mut v = self.read_dir_requests(&self.archive_dir())?;
        v.sort_by(|a, b| match (a, b) {
            (Ok(a), Ok(b)) => a.added_at.total_cmp(&b.added_at).then_with(|| a.id.cmp(&b.id)),
            _ => std::cmp::Ordering::Equal,
        });
        Ok(v)
    }

    /// The one queued id that starts with `prefix`.
    pub fn resolve(&self, prefix: &str) -> Result<String, SpoolError> {
        let mut ids = Vec::new();
        if prefix.is_empty() || prefix.contains('/') || prefix.starts_with('.') {
            return Err(SpoolError::NoSuchRequest(prefix.to_string()));
        }
        let dir = self.requests_dir();
        let entries = fs::read_dir(&dir).map_err(|e| {
            if self.dir.is_dir() {
                SpoolError::Io("read", dir.clone(), e)
            } else {
                SpoolError::NoSpool(self.dir.clone())
            }
        })?;
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                if name == prefix {
                    return Ok(name.to_string());
                }
                if !name.starts_with('.') && name.starts_with(prefix) && entry.path().join(REQUEST_FILE).is_file() {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        match ids.len() {
            0 => Err(SpoolError::NoSuchRequest(prefix.to_string())),
            1 => Ok(ids.remove(0)),
            _ => Err(SpoolError::Ambiguous(prefix.to_string(), ids)),
        }
    }

    /// Reads a queued request, or an archived one.
    pub fn load(&self, id: &str) -> Result<Request, SpoolError> {
        for dir in [self.request_dir(id), self.archive_dir().join(id)] {
            let file = dir.join(REQUEST_FILE);
            match fs::read(&file) {
                Ok(bytes) => return Request::parse(&bytes).map_err(|why| SpoolError::Bad(file, why)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SpoolError::Io("read", file, e)),
            }
        }
        Err(SpoolError::NoSuchRequest(id.to_string()))
    }

    /// Writes a queued request's file.
    pub fn save(&self, request: &Request) -> Result<(), SpoolError> {
        let dir = self.request_dir(&request.id);
        write_atomic(&dir, REQUEST_FILE, &request.to_bytes()).map_err(|e| SpoolError::Io("write", dir, e))
    }

    /// Moves a request's directory to the archive and writes its final
    /// content there.
    pub fn archive(&self, request: &Request) -> Result<PathBuf, SpoolError> {
        self.ensure()?;
        let from = self.request_dir(&request.id);
        let mut to = self.archive_dir().join(&request.id);
        let mut n = 1;
        while to.exists() {
            to = self.archive_dir().join(format!("{}-{n}", request.id));
            n += 1;
        }
        fs::rename(&from, &to).map_err(|e| SpoolError::Io("archive", from, e))?;
        let _ = fs::remove_file(to.join(DELETE_FILE));
        write_atomic(&to, REQUEST_FILE, &request.to_bytes()).map_err(|e| SpoolError::Io("write", to.clone(), e))?;
        Ok(to)
    }

    /// Tries to take the spool lock without waiting; `Err(Some(pid))`
    /// names the holder when it wrote its pid.
    pub fn try_lock(&self) -> Result<Result<SpoolLock, Option<u32>>, SpoolError> {
        let path = self.lock_path();
        let mut file =
            fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| {
                if self.dir.is_dir() {
                    SpoolError::Io("open", path.clone(), e)
                } else {
                    SpoolError::NoSpool(self.dir.clone())
                }
            })?;
        match file.try_lock() {
            Ok(()) => {
                let written = file
                    .set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|()| writeln!(file, "{}", std::process::id()))
                    .and_then(|()| file.flush());
                written.map_err(|e| SpoolError::Io("write", path, e))?;
                Ok(Ok(SpoolLock { file }))
            }
            Err(fs::TryLockError::WouldBlock) => Ok(Err(self.holder())),
            Err(fs::TryLockError::Error(e)) => Err(SpoolError::Io("lock", path, e)),
        }
    }

    /// The pid written in the lock file.
    pub fn holder(&self) -> Option<u32> {
        fs::read_to_string(self.lock_path()).ok()?.trim().parse().ok()
    }

    /// Deletes a queued request: archived as `deleted` at once when no
    /// job holds the spool; otherwise a `delete` file asks the job, and
    /// the trigger makes it tick.
    pub fn delete(&self, id: &str, now: f64) -> Result<Deleted, SpoolError> {
        match self.try_lock()? {
            Ok(_lock) => {
                let mut request = self.load(id)?;
                request.state = RequestState::Deleted;
                request.updated_at = Some(now);
                self.save(&request)?;
                self.archive(&request)?;
                Ok(Deleted::Archived(request.id))
            }
            Err(pid) => {
                let dir = self.request_dir(id);
                write_atomic(&dir, DELETE_FILE, format!("{now}\n").as_bytes())
                    .map_err(|e| SpoolError::Io("write", dir.join(DELETE_FILE), e))?;
                self.trigger()?;
                Ok(Deleted::Marked(id.to_string(), pid))
            }
        }
    }

    /// Asks the running job to tick now.
    pub fn trigger(&self) -> Result<(), SpoolError> {
        if !self.dir.is_dir() {
            return Err(SpoolError::NoSpool(self.dir.clone()));
        }
        write_atomic(&self.dir, TRIGGER_FILE, format!("{}\n", std::process::id()).as_bytes())
            .map_err(|e| SpoolError::Io("write", self.trigger_path(), e))
    }

    /// The marker's content (the time maintenance began), if present.
    pub fn marker(&self) -> Option<String> {
        fs::read_to_string(self.marker_path()).ok().map(|s| s.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::Activity;

    fn script(comment: &str, added: f64) -> Request {
        Request::new(Activity::Script { script: "true".into() }, comment, 60.0, added)
    }

    fn spool() -> (tempfile::TempDir, Spool) {
        let t = tempfile::tempdir().unwrap();
        let s = Spool::new(t.path());
        s.ensure().unwrap();
        (t, s)
    }

    #[test]
    fn add_dedups_by_comment_and_lists_in_order() {
        let (_t, s) = spool();
        let a = script("same", 2.0);
        assert_eq!(s.add(&a).unwrap(), Added::New(a.id.clone()));
        assert_eq!(s.add(&script("same", 3.0)).unwrap(), Added::Duplicate(a.id.clone()));
        let b = script("", 1.0);
        let c = script("", 1.5);
        s.add(&b).unwrap();
        s.add(&c).unwrap();
        let ids: Vec<String> = s.queued().unwrap().into_iter().map(|r| r.unwrap().id).collect();
        assert_eq!(ids, [b.id.clone(), c.id.clone(), a.id.clone()]);
        // No temporary directories left.
        assert_eq!(fs::read_dir(s.requests_dir()).unwrap().count(), 3);
    }

    #[test]
    fn prefixes_resolve_or_are_ambiguous() {
        let (_t, s) = spool();
        let mut a = script("a", 1.0);
        a.id = "abcdef".into();
        let mut b = script("b", 1.0);
        b.id = "abcxyz".into();
        s.add(&a).unwrap();
        s.add(&b).unwrap();
        assert_eq!(s.resolve("abcd").unwrap(), "abcdef");
        assert!(matches!(s.resolve("abc"), Err(SpoolError::Ambiguous(_, ids)) if ids.len() == 2));
        assert!(matches!(s.resolve("zz"), Err(SpoolError::NoSuchRequest(_))));
        assert!(matches!(s.resolve(""), Err(SpoolError::NoSuchRequest(_))));
    }

    #[test]
    fn delete_archives_without_a_job_and_marks_with_one() {
        let (_t, s) = spool();
        let a = script("a", 1.0);
        let b = script("b", 1.0);
        s.add(&a).unwrap();
        s.add(&b).unwrap();
        assert_eq!(s.delete(&a.id, 9.0).unwrap(), Deleted::Archived(a.id.clone()));
        let archived = s.load(&a.id).unwrap();
        assert_eq!(archived.state, RequestState::Deleted);
        assert!(s.archive_dir().join(&a.id).join(REQUEST_FILE).is_file());
        let lock = s.try_lock().unwrap().unwrap();
        assert_eq!(s.holder(), Some(std::process::id()));
        // Another open file description cannot take it.
        assert!(matches!(s.try_lock().unwrap(), Err(Some(pid)) if pid == std::process::id()));
        assert_eq!(s.delete(&b.id, 9.0).unwrap(), Deleted::Marked(b.id.clone(), Some(std::process::id())));
        assert!(s.request_dir(&b.id).join(DELETE_FILE).is_file());
        assert!(s.trigger_path().is_file());
        drop(lock);
        assert_eq!(s.holder(), None);
    }

    #[test]
    fn missing_spool_is_named() {
        let t = tempfile::tempdir().unwrap();
        let s = Spool::new(t.path().join("nope"));
        assert!(matches!(s.add(&script("x", 1.0)), Err(SpoolError::NoSpool(_))));
        assert!(matches!(s.queued(), Err(SpoolError::NoSpool(_))));
        assert!(matches!(s.trigger(), Err(SpoolError::NoSpool(_))));
    }
}
