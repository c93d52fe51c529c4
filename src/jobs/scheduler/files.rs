//! The scheduler's two files on disk: the spread stamp (content and
//! mtime) and the state file. Reading, creating, regenerating, touching
//! and writing them; every write goes through `colony_ctl::write_atomic`.
//!
//! Depends on std, nix (utimensat), jiff and colony-ctl.

use super::spread::{self, Stamp};
use super::state::State;
use jiff::Timestamp;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// A file's directory and name, as `write_atomic` wants them.
fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_string()))
}

fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, name) = split(path)?;
    colony_ctl::write_atomic(&dir, &name, bytes)
}

fn set_mtime(path: &Path, t: Timestamp) -> io::Result<()> {
    let ns = t.as_nanosecond();
    let spec = TimeSpec::new(ns.div_euclid(1_000_000_000) as i64, ns.rem_euclid(1_000_000_000) as i64);
    utimensat(nix::fcntl::AT_FDCWD, path, &spec, &spec, UtimensatFlags::FollowSymlink).map_err(io::Error::from)
}

/// Reads at most a small file (a stamp or state file is tiny; a huge one
/// is garbage).
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(1 << 20).read_to_end(&mut buf)?;
    Ok(buf)
}

/// What happened to a stamp while it was read.
#[derive(Debug)]
pub enum StampRead {
    /// The stamp as it was.
    Kept(Stamp),
    /// A new stamp was written; the reason if the old one was unusable
    /// (`None`: it did not exist).
    Generated(Stamp, Option<String>),
}

/// Reads the stamp without changing anything: `Ok(None)` when it is
/// missing or unusable (the next real call regenerates it).
pub fn peek_stamp(path: &Path, slot: i64) -> io::Result<Option<Stamp>> {
    let bytes = match read_small(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(offset) = spread::parse_offset(&bytes, slot) else { return Ok(None) };
    let mtime = Timestamp::try_from(std::fs::metadata(path)?.modified()?).map_err(io::Error::other)?;
    Ok(Some(Stamp { offset, mtime }))
}

/// Reads the stamp, generating a new one (random offset, mtime 0) when it
/// is missing, empty, garbled or its offset exceeds the slot.
pub fn load_stamp(path: &Path, slot: i64, random: impl FnMut() -> u64) -> io::Result<StampRead> {
    let reason = match read_small(path) {
        Ok(bytes) => match spread::parse_offset(&bytes, slot) {
            Ok(offset) => {
                let modified = std::fs::metadata(path)?.modified()?;
                let mtime = Timestamp::try_from(modified).map_err(io::Error::other)?;
                return Ok(StampRead::Kept(Stamp { offset, mtime }));
            }
            Err(reason) => Some(reason),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let offset = spread::draw_offset(slot, random);
    write(path, spread::render_offset(offset).as_bytes())?;
    set_mtime(path, spread::NEW_MTIME)?;
    Ok(StampRead::Generated(Stamp { offset, mtime: spread::NEW_MTIME }, reason))
}

/// Checks that the stamp's mtime can be set, by setting it to what it is.
pub fn check_touchable(path: &Path, stamp: Stamp) -> io::Result<()> {
    set_mtime(path, stamp.mtime)
}

/// Sets the stamp's mtime after a run.
pub fn touch_stamp(path: &Path, mtime: Timestamp) -> io::Result<()> {
    set_mtime(path, mtime)
}

/// Random bits from the kernel (`/dev/urandom`).
pub fn urandom() -> impl FnMut() -> u64 {
    let file = std::fs::File::open("/dev/urandom");
    let mut file = file.ok();
    move || {
        let mut b = [0u8; 8];
        if let Some(f) = file.as_mut() {
            if f.read_exact(&mut b).is_ok() {
                return u64::from_ne_bytes(b);
            }
        }
        // No /dev/urandom (a bare chroot): the clock's nanoseconds and the
        // pid still differ between machines started together.
        let t = Timestamp::now().as_nanosecond() as u64;
        t ^ (u64::from(std::process::id()) << 32)
    }
}

/// What happened to the state file while it was read.
#[derive(Debug)]
pub enum StateRead {
    /// The file as it was.
    Kept(State),
    /// The file did not exist.
    New,
    /// The file did not parse (the reason); starting afresh.
    Garbled(String),
}

/// Reads the state file.
pub fn read_state(path: &Path) -> io::Result<StateRead> {
    match read_small(path) {
        Ok(bytes) => Ok(match State::parse(&bytes) {
            Ok(s) => StateRead::Kept(s),
            Err(reason) => StateRead::Garbled(reason),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StateRead::New),
        Err(e) => Err(e),
    }
}

/// Writes the state file.
pub fn write_state(path: &Path, state: &State) -> io::Result<()> {
    write(path, &state.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_generated_kept_and_regenerated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stamp");
        let r = load_stamp(&path, 7200, || 1234).unwrap();
        assert!(
            matches!(r, StampRead::Generated(Stamp { offset: 1234, mtime }, None) if mtime == spread::NEW_MTIME),
            "{r:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1234\n");
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), std::time::UNIX_EPOCH);
        let t = Timestamp::from_second(1_790_000_000).unwrap();
        touch_stamp(&path, t).unwrap();
        let r = load_stamp(&path, 7200, || unreachable!()).unwrap();
        assert!(matches!(r, StampRead::Kept(Stamp { offset: 1234, mtime }) if mtime == t), "{r:?}");
        assert_eq!(peek_stamp(&path, 7200).unwrap(), Some(Stamp { offset: 1234, mtime: t }));
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(peek_stamp(&path, 7200).unwrap(), None);
        let r = load_stamp(&path, 7200, || 5).unwrap();
        assert!(
            matches!(&r, StampRead::Generated(Stamp { offset: 5, .. }, Some(why)) if why.contains("garbage")),
            "{r:?}"
        );
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn state_round_trip_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(matches!(read_state(&path).unwrap(), StateRead::New));
        let s = State { last_success: Some(Timestamp::from_second(5).unwrap()), ..State::default() };
        write_state(&path, &s).unwrap();
        assert!(matches!(read_state(&path).unwrap(), StateRead::Kept(k) if k == s));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(read_state(&path).unwrap(), StateRead::Garbled(_)));
    }
}
