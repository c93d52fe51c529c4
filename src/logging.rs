//! colony's own log: text or JSON lines on stderr, with or without
//! timestamps, filtered by `COLONY_LOG`. Also the timestamp and JSON
//! helpers that child output uses, so both look alike.
//!
//! Depends on log, env_logger and serde_json.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `2026-12-01T10:00:00.000Z INFO  message`, child lines `[name] line`.
    Text,
    /// One JSON object per line: `ts`, `level`, `msg`; child lines carry
    /// `program`, `stream` and `line`.
    Json,
}

/// When text lines start with a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Timestamps {
    /// When stderr is not a terminal.
    Auto,
    /// Always.
    Always,
    /// Never (for example under journald, which adds its own).
    Never,
}

/// The resolved log style, shared by colony's messages and child output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Text or JSON.
    pub format: Format,
    /// Whether text lines carry a timestamp (JSON always does).
    pub timestamps: bool,
}

impl Style {
    /// Resolves `auto` against stderr.
    pub fn new(format: Format, timestamps: Timestamps) -> Style {
        use std::io::IsTerminal;
        let timestamps = match timestamps {
            Timestamps::Always => true,
            Timestamps::Never => false,
            Timestamps::Auto => !std::io::stderr().is_terminal(),
        };
        Style { format, timestamps }
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-12-01T10:00:00.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, day) = colony_ctl::time::civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// Installs the logger for colony's own messages.
pub fn init(style: Style) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::new().filter_or("COLONY_LOG", "info"));
    builder.format(move |buf, record| {
        let level = record.level();
        match style.format {
            Format::Json => {
                let obj = serde_json::json!({
                    "ts": rfc3339_millis(SystemTime::now()),
                    "level": level.as_str().to_ascii_lowercase(),
                    "msg": record.args().to_string(),
                });
                writeln!(buf, "{obj}")
            }
            Format::Text if style.timestamps => {
                writeln!(buf, "{} {level:<5} {}", rfc3339_millis(SystemTime::now()), record.args())
            }
            Format::Text => writeln!(buf, "{level:<5} {}", record.args()),
        }
    });
    let _ = builder.try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_dates() {
        let at = |s: u64| rfc3339_millis(UNIX_EPOCH + Duration::from_millis(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(at(1_796_167_370_392), "2026-12-01T23:22:50.392Z");
        assert_eq!(at(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
