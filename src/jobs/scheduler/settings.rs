//! Turns `colony scheduler` flags into validated settings, in one place:
//! every value is parsed and every combination checked before anything
//! runs, and a problem is one line (exit code 2).
//!
//! Depends on jiff (zones, timestamps) and the pure schedule modules; reads
//! the time-zone database, and the clock once (does `--cron` ever fire?).

use super::calendar::CronCalendar;
use super::machine::{Plan, Rules};
use super::SchedulerArgs;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::path::PathBuf;

/// The grace before SIGKILL when `--grace` is not given.
pub const DEFAULT_GRACE: SignedDuration = SignedDuration::from_secs(3);

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// argv of the command (empty only with `--next`).
    pub command: Vec<String>,
    /// The machine's rules.
    pub rules: Rules,
    /// `--spread-stamp`.
    pub stamp: Option<PathBuf>,
    /// `--state`.
    pub state: Option<PathBuf>,
    /// `--now`.
    pub now: Option<Timestamp>,
    /// `--next`.
    pub next: Option<usize>,
}

impl Settings {
    /// Validates `args`; the error is one line for the user.
    pub fn from_args(args: &SchedulerArgs) -> Result<Settings, String> {
        let command = match (args.args.is_empty(), args.command.is_empty()) {
            (false, false) => return Err("give the command either with --arg or after --, not both".into()),
            (false, true) => args.args.clone(),
            (true, false) => args.command.clone(),
            (true, true) if args.next.is_some() => Vec::new(),
            (true, true) => return Err("no command: give it after -- (or with --arg, repeated)".into()),
        };
        if command.first().is_some_and(|c| c.is_empty()) {
            return Err("the command is an empty string".into());
        }
        let frequency = args.frequency.as_deref().map(|v| duration("--frequency", v)).transpose()?;
        let timeout = args.timeout.as_deref().map(|v| duration("--timeout", v)).transpose()?;
        let grace = match args.grace.as_deref() {
            Some(v) => duration_or_zero("--grace", v)?,
            None => DEFAULT_GRACE,
        };
        let window = args.window.as_deref().map(|v| duration_or_zero("--window", v)).transpose()?;
        if args.tz.is_some() && args.cron.is_none() {
            return Err("--tz only applies to --cron".into());
        }
        if args.window.is_some() && args.cron.is_none() {
            return Err("--window only applies to --cron".into());
        }
        let plan = if let Some(expr) = &args.cron {
            let zone = match args.tz.as_deref() {
                None => TimeZone::UTC,
                Some(name) => TimeZone::get(name).map_err(|_| format!("--tz: unknown time zone {name:?}"))?,
            };
            let calendar = CronCalendar::parse(expr, zone).map_err(|e| format!("--cron {expr:?}: {e}"))?;
            let from = args.now.as_deref().and_then(|v| timestamp(v).ok()).unwrap_or_else(Timestamp::now);
            if calendar.next_after(from).is_none() {
                return Err(format!("--cron {expr:?}: never fires"));
            }
            Plan::Cron { calendar: Box::new(calendar), retry: frequency, window }
        } else {
            let Some(period) = frequency else {
                return Err("no schedule: give --frequency S or --cron EXPR".into());
            };
            if args.spread_stamp.is_some() {
                let slot = period.as_secs();
                if period.subsec_nanos() != 0 || slot < 1 {
                    return Err(format!(
                        "--frequency {:?}: with --spread-stamp it must be a whole number of seconds",
                        args.frequency.as_deref().unwrap_or_default()
                    ));
                }
                if args.state.is_some() {
                    return Err("--state cannot be combined with --spread-stamp (the stamp is the memory)".into());
                }
                Plan::Spread { slot }
            } else {
                Plan::Every { period }
            }
        };
        let now = args.now.as_deref().map(timestamp).transpose()?;
        let next = match args.next.as_deref() {
            None => None,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(format!("--next: {v:?} is not a positive whole number")),
            },
        };
        let rules = Rules { plan, timeout, grace, once: args.once, remember: args.state.is_some() };
        Ok(Settings { command, rules, stamp: args.spread_stamp.clone(), state: args.state.clone(), now, next })
    }
}

/// A positive duration: seconds (decimals allowed) or a number with `s`,
/// `m`, `h` or `d`.
pub fn duration(flag: &str, text: &str) -> Result<SignedDuration, String> {
    let d = duration_or_zero(flag, text)?;
    if d.is_zero() {
        return Err(format!("{flag}: {text:?} is not a positive duration"));
    }
    Ok(d)
}

/// A duration that may be zero.
pub fn duration_or_zero(flag: &str, text: &str) -> Result<SignedDuration, String> {
    let bad = || format!("{flag}: {text:?} is not a duration (seconds, or a number with s, m, h or d)");
    let t = text.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let scale = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86_400.0,
        _ => return Err(bad()),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+') {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() {
        return Err(bad());
    }
    if n < 0.0 {
        return Err(format!("{flag}: {text:?} is negative"));
    }
    let secs = n * scale;
    if secs > 100.0 * 365.0 * 86_400.0 {
        return Err(format!("{flag}: {text:?} is too long"));
    }
    SignedDuration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// `--now`: RFC 3339 (with an offset or `Z`) or Unix seconds.
pub fn timestamp(text: &str) -> Result<Timestamp, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() {
            if let Ok(ts) = Timestamp::from_millisecond((secs * 1000.0).round() as i64) {
                return Ok(ts);
            }
        }
    }
    t.parse::<Timestamp>().map_err(|_| {
        format!("--now: {text:?} is neither an RFC 3339 time with an offset (2026-03-29T01:30:00Z) nor Unix seconds")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SchedulerArgs,
    }

    fn settings(argv: &[&str]) -> Result<Settings, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("scheduler").chain(argv.iter().copied())).map_err(|e| e.to_string())?;
        Settings::from_args(&cli.args)
    }

    #[test]
    fn ncolony_form() {
        let s = settings(&["--arg", "echo", "--arg", "hello", "--frequency", "10", "--timeout", "5", "--grace", "10"])
            .unwrap();
        assert_eq!(s.command, ["echo", "hello"]);
        assert!(matches!(s.rules.plan, Plan::Every { period } if period == SignedDuration::from_secs(10)));
        assert_eq!(s.rules.timeout, Some(SignedDuration::from_secs(5)));
        assert_eq!(s.rules.grace, SignedDuration::from_secs(10));
        // `--arg=--x` style values that start with a dash.
        let s = settings(&["--arg=sh", "--arg=-c", "--arg", "-x", "--frequency=1"]).unwrap();
        assert_eq!(s.command, ["sh", "-c", "-x"]);
    }

    #[test]
    fn trailing_form() {
        let s = settings(&["--frequency", "1.5", "--", "/bin/echo", "--arg", "x"]).unwrap();
        assert_eq!(s.command, ["/bin/echo", "--arg", "x"]);
        assert!(matches!(s.rules.plan, Plan::Every { period } if period == SignedDuration::from_millis(1500)));
        assert_eq!(s.rules.grace, DEFAULT_GRACE);
    }

    #[test]
    fn bad_values() {
        for (argv, want) in [
            (&["--frequency", "0", "--", "x"][..], "not a positive duration"),
            (&["--frequency", "-5", "--", "x"], "negative"),
            (&["--frequency", "abc", "--", "x"], "not a duration"),
            (&["--frequency", "5x", "--", "x"], "not a duration"),
            (&["--frequency", "inf", "--", "x"], "not a duration"),
            (&["--timeout", "0", "--frequency", "1", "--", "x"], "--timeout"),
            (&["--cron", "61 * * * *", "--", "x"], "--cron"),
            (&["--cron", "* * *", "--", "x"], "5 or 6 fields"),
            (&["--cron", "0 0 30 2 *", "--", "x"], "never fires"),
            (&["--cron", "@daily", "--tz", "Mars/Olympus", "--", "x"], "unknown time zone"),
            (&["--frequency", "1"], "no command"),
            (&["--frequency", "1", "--arg", "a", "--", "b"], "not both"),
            (&["--", "x"], "no schedule"),
            (&["--frequency", "1", "--window", "5", "--", "x"], "--window only"),
            (&["--frequency", "1", "--tz", "UTC", "--", "x"], "--tz only"),
            (&["--frequency", "1.5", "--spread-stamp", "s", "--", "x"], "whole number"),
            (&["--frequency", "60", "--spread-stamp", "s", "--state", "t", "--", "x"], "--state"),
            (&["--frequency", "1", "--now", "yesterday", "--", "x"], "--now"),
            (&["--frequency", "1", "--next", "0"], "--next"),
        ] {
            let err = settings(argv).unwrap_err();
            assert!(err.contains(want), "{argv:?}: {err}");
            assert!(!err.trim_end().contains('\n') || err.starts_with("error:"), "{argv:?}: {err}");
        }
    }

    #[test]
    fn durations() {
        let d = |s| duration_or_zero("--x", s).unwrap();
        assert_eq!(d("30m"), SignedDuration::from_mins(30));
        assert_eq!(d("2h"), SignedDuration::from_hours(2));
        assert_eq!(d("1d"), SignedDuration::from_hours(24));
        assert_eq!(d("0.25"), SignedDuration::from_millis(250));
        assert_eq!(d("0"), SignedDuration::ZERO);
        assert!(duration_or_zero("--x", "").is_err());
        assert!(duration_or_zero("--x", "m").is_err());
        assert!(duration_or_zero("--x", "1e3").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp("2026-03-29T01:30:00Z").unwrap(), "2026-03-29T01:30:00Z".parse().unwrap());
        assert_eq!(timestamp("2026-03-29T03:30:00+02:00").unwrap(), "2026-03-29T01:30:00Z".parse().unwrap());
        assert_eq!(timestamp("1790000000").unwrap(), Timestamp::from_second(1_790_000_000).unwrap());
        assert_eq!(timestamp("1790000000.5").unwrap(), Timestamp::from_millisecond(1_790_000_000_500).unwrap());
        assert!(timestamp("2026-03-29T01:30:00").is_err());
    }

    #[test]
    fn cron_with_retry_and_window() {
        let s = settings(&[
            "--cron",
            "0 1 * * *",
            "--tz",
            "Europe/Berlin",
            "--frequency",
            "15m",
            "--window",
            "30m",
            "--state",
            "f",
            "--",
            "x",
        ])
        .unwrap();
        let Plan::Cron { retry, window, calendar } = s.rules.plan else { panic!() };
        assert_eq!(retry, Some(SignedDuration::from_mins(15)));
        assert_eq!(window, Some(SignedDuration::from_mins(30)));
        assert_eq!(calendar.text(), "0 1 * * *");
        assert!(s.rules.remember);
    }
}
