//! JSON output in the exact style of Python's `json.dumps` defaults, so that
//! colony writes the same bytes as ncolony for the same content.
//!
//! Depends on `serde_json` only.

use serde_json::ser::Formatter;
use serde_json::Value;
use std::io::{self, Write};

/// `json.dumps` style: `", "` and `": "` separators, every non-ASCII
/// character (and DEL) escaped as `\uXXXX`, no trailing newline.
struct PythonStyle;

impl Formatter for PythonStyle {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && c != '\u{7f}' {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// Serializes `value` as Python's `json.dumps(value)` would.
pub fn to_python_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonStyle);
    // Writing a `Value` into a Vec cannot fail.
    serde::Serialize::serialize(value, &mut ser).expect("serializing a JSON value into memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn matches_python_bytes() {
        // Captured from ncolony's ctl (Python json.dumps).
        let v = json!({"args": ["/usr/bin/env", "-0", "x y"], "env": {"FOO": "bar", "EQ": "a=b=c"}, "uid": 1000});
        assert_eq!(
            String::from_utf8(to_python_json(&v)).unwrap(),
            r#"{"args": ["/usr/bin/env", "-0", "x y"], "env": {"FOO": "bar", "EQ": "a=b=c"}, "uid": 1000}"#
        );
        let v = json!({"args": ["/bin/echo", "héllo"], "env": {"K": "välue"}});
        assert_eq!(
            String::from_utf8(to_python_json(&v)).unwrap(),
            r#"{"args": ["/bin/echo", "h\u00e9llo"], "env": {"K": "v\u00e4lue"}}"#
        );
        let v = json!(["😀\u{7f}\u{1}\n\"\\"]);
        assert_eq!(String::from_utf8(to_python_json(&v)).unwrap(), r#"["\ud83d\ude00\u007f\u0001\n\"\\"]"#);
    }

    proptest! {
        #[test]
        fn round_trips_and_is_ascii(s in "\\PC*", k in "\\PC{0,5}") {
            let v = json!({k: [s.clone(), {"x": s}]});
            let bytes = to_python_json(&v);
            prop_assert!(bytes.is_ascii());
            let back: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(back, v);
        }
    }
}
