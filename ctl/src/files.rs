//! The one atomic writer and the directory readers every part of colony uses.
//!
//! Depends on `std::fs` and the name module only.

use crate::name::{is_ignored_file_name, ProgramName};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `dir/name` atomically: the bytes go to a temporary file in the same
/// directory whose name starts with `.` and ends in `.new` (so that both
/// colony's and ncolony's readers skip it), are flushed to disk, and the file
/// is renamed over `name`. A reader sees the old content or the new one,
/// never a part.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    write(dir, name, bytes, true)
}

/// [`write_atomic`] without flushing to disk: for files that only describe
/// the running system (status, PID files, metrics), which readers must never
/// see half-written but which need not survive a crash.
pub fn write_volatile(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    write(dir, name, bytes, false)
}

fn write(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> io::Result<()> {
    let pid = std::process::id();
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.{pid}.{n}.new"));
        let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o644).open(&temp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
            .and_then(|()| fs::rename(&temp, dir.join(name)));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        return written;
    }
}

/// What a config directory holds right now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigScan {
    /// Every program file, by name, with its raw bytes.
    pub files: BTreeMap<ProgramName, Vec<u8>>,
    /// Owner uid and permission bits of each program file, from the same
    /// open file as its bytes.
    pub owners: BTreeMap<ProgramName, (u32, u32)>,
    /// Entries that are neither ignored nor readable program files, with
    /// the reason (an unreadable file, a bad name).
    pub problems: Vec<(PathBuf, String)>,
    /// Subdirectories: not programs, skipped (reported by the daemon once,
    /// as a note by `colony check`).
    pub subdirs: Vec<PathBuf>,
}

/// Reads every program file of a config directory. Dot-files and names
/// ending in `.new` are skipped silently; everything else that is not a
/// readable regular file is reported in [`ConfigScan::problems`].
pub fn scan_config_dir(dir: &Path) -> io::Result<ConfigScan> {
    let mut scan = ConfigScan::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            scan.problems.push((path, "file name is not valid UTF-8".into()));
            continue;
        };
        if is_ignored_file_name(&name) {
            continue;
        }
        let name = match ProgramName::new(name) {
            Ok(n) => n,
            Err(e) => {
                scan.problems.push((path, e.to_string()));
                continue;
            }
        };
        match read_with_owner(&path) {
            Ok((bytes, owner)) => {
                scan.owners.insert(name.clone(), owner);
                scan.files.insert(name, bytes);
            }
            // Removed between listing and reading: simply not there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc_eisdir()) => scan.subdirs.push(path),
            Err(e) => scan.problems.push((path, format!("cannot read: {e}"))),
        }
    }
    Ok(scan)
}

/// Reads a file and, from the same open file, its owner and mode bits.
fn read_with_owner(path: &Path) -> io::Result<(Vec<u8>, (u32, u32))> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut f = fs::File::open(path)?;
    let meta = f.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::from_raw_os_error(libc_eisdir()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)?;
    Ok((bytes, (meta.uid(), meta.mode() & 0o7777)))
}

const fn libc_eisdir() -> i32 {
    21 // EISDIR on Linux
}

/// The message files of a messages directory, in the order they must be
/// handled (sorted by name). Dot-files and `.new` files are skipped.
pub fn list_messages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_str().is_some_and(is_ignored_file_name))
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .map(|e| e.file_name())
        .collect();
    names.sort();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "web", b"one").unwrap();
        write_atomic(dir.path(), "web", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("web")).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["web"]);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("nope"), "web", b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn scan_skips_temporaries_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("web"), "{}").unwrap();
        fs::write(d.join(".web.swp"), "junk").unwrap();
        fs::write(d.join("web.new"), "junk").unwrap();
        fs::create_dir(d.join("sub")).unwrap();
        let scan = scan_config_dir(d).unwrap();
        assert_eq!(scan.files.keys().map(|n| n.as_str()).collect::<Vec<_>>(), ["web"]);
        assert!(scan.problems.is_empty());
        assert_eq!(scan.subdirs, [d.join("sub")]);
    }

    #[test]
    fn messages_come_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b", "a", ".x", "c.new", "000Message.12"] {
            fs::write(dir.path().join(n), "").unwrap();
        }
        let got = list_messages(dir.path()).unwrap();
        let names: Vec<_> = got.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["000Message.12", "a", "b"]);
    }
}
