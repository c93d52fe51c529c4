//! `ProgramName::new` against its documented rule and against
//! `is_ignored_file_name`: a valid name is never a file every reader skips,
//! is one plain path component (it cannot leave its directory), and every
//! way of making a name agrees.
#![no_main]

use colony_ctl::{is_ignored_file_name, Message, ProgramName};
use libfuzzer_sys::fuzz_target;
use std::ffi::OsStr;
use std::path::{Component, Path};

fn check(s: &str) {
    let documented =
        !s.is_empty() && !s.contains('/') && !s.contains('\0') && !s.starts_with('.') && !s.ends_with(".new");
    let name = ProgramName::new(s);
    assert_eq!(name.is_ok(), documented, "{s:?}: {name:?}");
    assert_eq!(s.parse::<ProgramName>(), name);
    assert_eq!(ProgramName::try_from(s), name);
    assert_eq!(ProgramName::try_from(s.to_string()), name);
    if is_ignored_file_name(s) {
        assert!(name.is_err(), "{s:?} is skipped by readers but accepted as a name");
    }
    let Ok(name) = name else { return };
    assert_eq!(name.as_str(), s);
    assert_eq!(name.to_string(), s);
    assert_eq!(format!("{name:?}"), format!("{s:?}"));
    // One normal component: joined to a directory it stays in it.
    let comps: Vec<Component> = Path::new(s).components().collect();
    assert_eq!(comps, [Component::Normal(OsStr::new(s))], "{s:?}");
    let dir = Path::new("/etc/colony");
    let path = dir.join(s);
    assert_eq!(path.parent(), Some(dir));
    assert_eq!(path.file_name(), Some(OsStr::new(s)));
    // A message naming it round-trips.
    let m = Message::Restart(name.clone());
    assert_eq!(Message::parse(&m.to_bytes()), Ok(m));
}

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(s) => check(s),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});
