//! The config-file parser: `ProgramSpec::parse` on any bytes.
//!
//! Never panics; whatever it accepts is valid (a program to run, no NUL
//! bytes, sane env names), keeps its bytes as they are, and survives the
//! rewrite `ctl add` and colony perform (`to_map` → `from_map`) with the same
//! meaning and stable, ASCII-only bytes.
#![no_main]

use colony_ctl::{to_python_json, ProgramSpec};
use colony_fuzz::values_close;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn same_meaning(a: &ProgramSpec, b: &ProgramSpec) {
    assert_eq!(a.args(), b.args());
    assert_eq!(a.env(), b.env());
    assert_eq!(a.env_inherit(), b.env_inherit());
    assert_eq!(a.uid(), b.uid());
    assert_eq!(a.gid(), b.gid());
    assert_eq!(a.groups(), b.groups());
    assert_eq!(a.beatcheck(), b.beatcheck());
    assert_eq!(a.cwd(), b.cwd());
    assert_eq!(a.killtime(), b.killtime());
    assert_eq!(a.stop_signal(), b.stop_signal());
    assert_eq!(a.disabled(), b.disabled());
    assert_eq!(a.critical(), b.critical());
    assert_eq!(a.log(), b.log());
    assert_eq!(a.umask(), b.umask());
    assert_eq!(a.nice(), b.nice());
    assert_eq!(a.limits(), b.limits());
    assert_eq!(a.policies(), b.policies());
    assert!(a.unknown_keys().eq(b.unknown_keys()));
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = ProgramSpec::parse(data) else { return };

    // The file's bytes are kept exactly (they become NCOLONY_CONFIG).
    assert_eq!(spec.as_bytes(), data);

    // What was accepted is runnable and safe to hand to exec.
    let args = spec.args();
    assert!(!args.is_empty() && !args[0].is_empty(), "accepted without a program: {args:?}");
    assert!(args.iter().all(|a| !a.contains('\0')));
    for (k, v) in spec.env() {
        assert!(!k.is_empty() && !k.contains('=') && !k.contains('\0') && !v.contains('\0'), "env {k:?}={v:?}");
    }
    if let Some(cwd) = spec.cwd() {
        assert!(!cwd.is_empty() && !cwd.contains('\0'));
    }
    if let Some(sig) = spec.stop_signal() {
        assert!((1..=64).contains(&sig));
    }
    if let Some(k) = spec.killtime() {
        assert!(k.is_finite() && k >= 0.0);
    }
    if let Some(m) = spec.umask() {
        assert!(m <= 0o777);
    }
    if let Some(n) = spec.nice() {
        assert!((-20..=19).contains(&n));
    }

    // Rewritten as ctl writes it: accepted again, same meaning, ASCII,
    // byte-for-byte stable from then on.
    let map = spec.to_map();
    let again = ProgramSpec::from_map(map.clone()).expect("an accepted file, rewritten, must be accepted");
    let reread = Value::Object(again.to_map());
    if reread == Value::Object(map.clone()) {
        same_meaning(&spec, &again);
    } else {
        // Only a float may have moved, by a few units in the last place (F1).
        assert!(values_close(&reread, &Value::Object(map.clone())), "rewriting changed {:?}", spec.as_bytes());
    }
    let bytes = again.to_bytes();
    assert!(bytes.is_ascii());
    assert_eq!(bytes, to_python_json(&Value::Object(map)));
    let third = ProgramSpec::parse(&bytes).expect("rewritten bytes must parse");
    assert_eq!(third, again);
});
