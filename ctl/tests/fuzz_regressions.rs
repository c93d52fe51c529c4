//! Inputs found by the fuzz targets in `fuzz/` (see fuzz/README.md), kept
//! as plain tests.
//!
//! F1 (2026-12-01, targets spec_parse and status_read): a float does not
//! survive a write and a read exactly. serde_json, as the workspace builds
//! it (without its `float_roundtrip` feature), parses many numbers to a
//! neighbour of the nearest float, so a number in a config file rewritten
//! by the ctl (`add --extras`, `from_map`) or a time in a status file moves
//! by a unit or two in the last place. Nothing panics and nothing is
//! refused; the exact tests are ignored until the feature is turned on
//! (`serde_json = { ..., features = ["preserve_order", "float_roundtrip"] }`
//! in the root Cargo.toml), after which they pass; to see that without the
//! change: `cargo test -p colony-ctl --test fuzz_regressions --features
//! serde_json/float_roundtrip -- --include-ignored`.

use colony_ctl::{ProgramSpec, ProgramStatus};

/// spec_parse's input for F1: an unknown key holding a number of 200
/// digits, nested 20 deep.
const F1_SPEC: &str = r#"{"args": ["x"], "x": [[[[[[[[[[[[[[[[[[[[{"a": [1.5E-304, -0, 123456789012345644744444444444444444444444444444444444890666666666666666666666666666666666666664666666666666666666666666666666666666666666666666666666666666666666666666666666666123]}]]]]]]]]]]]]]]]]]]]]}"#;

/// status_read's input for F1: a status file with extreme numbers.
const F1_STATUS: &str = r#"{"name":"x","state":"failed","pid":-2147483648,"started":1.7976931348623157e308,"instance":18446744073709551615,"restarts":0,"last_exit":{"code":-1,"signal":2147483647},"next_start":-1e-042,"held":false,"disabled":false,"since":5e-324}"#;

/// A status file as colony writes it (man/colony.5).
const STATUS: &str = r#"{"name":"web","state":"running","pid":4713,"started":1796167563.718,"instance":3,"restarts":2,"last_exit":{"code":null,"signal":15},"next_start":null,"held":false,"disabled":false,"since":1796167563.718,"ready":true,"health":null,"waiting_for":[],"blocked":null}"#;

#[test]
fn f1_spec_with_a_long_number_is_accepted_and_rewritten() {
    let spec = ProgramSpec::parse(F1_SPEC.as_bytes()).unwrap();
    assert_eq!(spec.args(), ["x"]);
    assert_eq!(spec.as_bytes(), F1_SPEC.as_bytes());
    let again = ProgramSpec::from_map(spec.to_map()).unwrap();
    assert_eq!(again.args(), ["x"]);
    assert_eq!(again.unknown_keys().collect::<Vec<_>>(), ["x"]);
    assert!(again.as_bytes().is_ascii());
    ProgramSpec::parse(again.as_bytes()).unwrap();
}

#[test]
fn f1_spec_rewrite_keeps_numbers_exactly() {
    let spec = ProgramSpec::parse(F1_SPEC.as_bytes()).unwrap();
    let again = ProgramSpec::from_map(spec.to_map()).unwrap();
    assert_eq!(again.to_map(), spec.to_map());
}

#[test]
fn f1_status_with_extreme_numbers_reads_and_writes_back() {
    let p: ProgramStatus = serde_json::from_str(F1_STATUS).unwrap();
    assert_eq!(p.pid, Some(i32::MIN));
    assert_eq!(p.instance, u64::MAX);
    assert_eq!(p.started, Some(f64::MAX));
    assert!(p.next_start.is_some_and(|t| t < 0.0));
    let back: ProgramStatus = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
    assert_eq!((back.pid, back.instance, back.started), (p.pid, p.instance, p.started));
}

#[test]
fn f1_status_numbers_survive_a_write_and_a_read_exactly() {
    let p: ProgramStatus = serde_json::from_str(F1_STATUS).unwrap();
    assert_eq!(p.next_start, Some(-1e-42));
    let back: ProgramStatus = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    // A Unix time with a fraction, as colony writes it: the ctl reads
    // 1875876580.4995809 back.
    let mut p: ProgramStatus = serde_json::from_str(STATUS).unwrap();
    let t = 1875876580.4995806;
    p.started = Some(t);
    p.since = t;
    let back: ProgramStatus = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
    assert_eq!(back.started, Some(t));
    assert_eq!(back.since, t);
}
