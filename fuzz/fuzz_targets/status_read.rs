//! The status-file reader: serde_json into `ProgramStatus` and
//! `DaemonStatus`, and `read_status_dir` / `read_program_status` over a
//! directory holding the fuzzed bytes.
//!
//! Never panics; what is read writes back to JSON that reads to the same
//! value; the directory readers agree with the plain parse.
#![no_main]

use colony_ctl::{read_program_status, read_status_dir, DaemonStatus, ProgramStatus, DAEMON_FILE};
use colony_fuzz::values_close;
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};

/// Where the scratch directories go: tmpfs when there is one (a disk makes
/// this target a hundred times slower), or `$COLONY_FUZZ_TMP`.
fn base_dir() -> PathBuf {
    match std::env::var_os("COLONY_FUZZ_TMP") {
        Some(d) => d.into(),
        None if Path::new("/dev/shm").is_dir() => "/dev/shm".into(),
        None => std::env::temp_dir(),
    }
}

/// Equal, but for floats a few units in the last place apart (finding F1).
fn close<T: serde::Serialize + std::fmt::Debug>(a: &T, b: &T, bytes: &[u8]) {
    let (va, vb) = (serde_json::to_value(a).unwrap(), serde_json::to_value(b).unwrap());
    assert!(values_close(&va, &vb), "{a:?} != {b:?} ({})", String::from_utf8_lossy(bytes));
}

fuzz_target!(|data: &[u8]| {
    let program = serde_json::from_slice::<ProgramStatus>(data).ok();
    if let Some(p) = &program {
        let bytes = serde_json::to_vec(p).expect("a status serializes");
        let back: ProgramStatus = serde_json::from_slice(&bytes).expect("a written status reads back");
        close(&back, p, &bytes);
    }
    let daemon = serde_json::from_slice::<DaemonStatus>(data).ok();
    if let Some(d) = &daemon {
        let bytes = serde_json::to_vec(d).expect("a daemon status serializes");
        let back: DaemonStatus = serde_json::from_slice(&bytes).expect("a written daemon status reads back");
        close(&back, d, &bytes);
    }

    // The directory readers, over the same bytes as a program file and as
    // the daemon's file.
    let scratch = tempfile::Builder::new().prefix("colony-fuzz-").tempdir_in(base_dir()).expect("a scratch directory");
    let dir = scratch.path();
    colony_ctl::write_volatile(dir, "web", data).unwrap();
    colony_ctl::write_volatile(dir, DAEMON_FILE, data).unwrap();
    assert_eq!(read_program_status(dir, "web"), program);
    let snap = read_status_dir(dir).unwrap();
    assert_eq!(snap.daemon, daemon);
    assert_eq!(snap.programs, program.clone().into_iter().collect::<Vec<_>>());
    let _ = snap.daemon_alive();
    if let Some(p) = &program {
        assert_eq!(snap.program(&p.name), Some(p));
    }
});
