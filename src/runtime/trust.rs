//! StrictModes for config files: when colony runs as root, a file or a
//! config directory that someone other than root (or the program's own
//! user) could have written is refused, since it decides what runs as whom.
//!
//! Depends on std's file metadata only.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a config file owned by `uid` with permission bits `mode` cannot be
/// trusted for a program that runs as `target` (None: as root), if it can't.
pub fn file((uid, mode): (u32, u32), target: Option<u32>) -> Option<String> {
    if uid != 0 && Some(uid) != target {
        let who = match target {
            Some(t) => format!("root or the program's user {t}"),
            None => "root".into(),
        };
        return Some(format!("owned by uid {uid}, not {who} (see --no-strict-modes)"));
    }
    if mode & 0o022 != 0 {
        return Some(format!("writable by group or others (mode {:04o}) (see --no-strict-modes)", mode & 0o7777));
    }
    None
}

/// Why the config directory cannot be trusted, if it can't: it must belong
/// to root and not be writable by group or others (unless sticky, as /tmp).
pub fn directory(dir: &Path) -> Option<String> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot check the directory: {e}")),
    };
    if meta.uid() != 0 {
        return Some(format!("the directory {} is owned by uid {}, not root", dir.display(), meta.uid()));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Some(format!(
            "the directory {} is writable by group or others (mode {:04o})",
            dir.display(),
            mode & 0o7777
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_files_others_could_write() {
        assert_eq!(file((0, 0o644), None), None);
        assert_eq!(file((1000, 0o600), Some(1000)), None);
        assert!(file((1000, 0o644), None).unwrap().contains("owned by uid 1000"));
        assert!(file((1000, 0o644), Some(1001)).unwrap().contains("program's user 1001"));
        assert!(file((0, 0o664), None).unwrap().contains("mode 0664"));
        assert!(file((0, 0o646), None).is_some());
    }
}
