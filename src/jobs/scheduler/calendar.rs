//! When a schedule fires: cron expressions in a time zone, fixed periods
//! and the `--window` test. Pure: every instant comes in as an argument,
//! nothing here reads a clock or a file.
//!
//! Depends on jiff (instants and zones) and croner (cron expressions).

use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// A cron expression (five fields, or six with seconds first) evaluated on
/// the wall clock of a time zone.
///
/// Daylight-saving changes follow Vixie cron (as croner implements it): a
/// fixed time of day that a spring-forward change skips runs once at the
/// first instant after the gap, and once only when a fall-back change
/// repeats it; a wildcard or stepped hour runs at each real hour, so
/// neither a skipped nor a repeated hour changes how often it runs.
#[derive(Debug, Clone)]
pub struct CronCalendar {
    cron: croner::Cron,
    zone: TimeZone,
    text: String,
}

impl CronCalendar {
    /// Parses `text`: five fields (minute hour day-of-month month
    /// day-of-week), six fields (seconds first), or a nickname such as
    /// `@daily`.
    pub fn parse(text: &str, zone: TimeZone) -> Result<CronCalendar, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty expression".to_string());
        }
        if !text.starts_with('@') {
            let fields = text.split_whitespace().count();
            if fields != 5 && fields != 6 {
                return Err(format!("expected 5 or 6 fields, found {fields}"));
            }
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser.parse(text).map_err(|e| e.to_string())?;
        Ok(CronCalendar { cron, zone, text: text.to_string() })
    }

    /// The expression as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The zone the expression is read in.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The first fire time strictly after `t`, if there is one before the
    /// year 5000.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let z = t.to_zoned(self.zone.clone());
        let next = self.cron.find_next_occurrence(&z, false).ok()?.timestamp();
        // croner searches from the next whole second; guard the contract.
        (next > t).then_some(next)
    }

    /// The last fire time at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let z = t.to_zoned(self.zone.clone());
        let prev = self.cron.find_previous_occurrence(&z, true).ok()?.timestamp();
        (prev <= t).then_some(prev)
    }

    /// Whether `now` lies within `window` after the last fire time (both
    /// ends included).
    pub fn in_window(&self, now: Timestamp, window: SignedDuration) -> bool {
        self.latest_at_or_before(now).is_some_and(|fire| now.duration_since(fire) <= window)
    }
}

/// The first tick of the grid `anchor + k·period` strictly after `now`
/// (`anchor` itself when it is still ahead).
pub fn next_on_grid(anchor: Timestamp, period: SignedDuration, now: Timestamp) -> Timestamp {
    if anchor > now {
        return anchor;
    }
    let p = period.as_nanos().max(1);
    let since = now.duration_since(anchor).as_nanos();
    let k = since / p + 1;
    add_nanos(anchor, k * p)
}

/// `t` plus `nanos`, saturating at the ends of jiff's range.
pub fn add_nanos(t: Timestamp, nanos: i128) -> Timestamp {
    let sum = t.as_nanosecond().saturating_add(nanos);
    Timestamp::from_nanosecond(sum).unwrap_or(if nanos < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// `t` plus `d`, saturating.
pub fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    add_nanos(t, d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn cal(expr: &str, zone: TimeZone) -> CronCalendar {
        CronCalendar::parse(expr, zone).unwrap()
    }

    fn fires(c: &CronCalendar, from: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut t = from;
        for _ in 0..n {
            t = c.next_after(t).unwrap();
            out.push(t);
        }
        out
    }

    #[test]
    fn field_counts() {
        assert!(CronCalendar::parse("0 1 * * *", TimeZone::UTC).is_ok());
        assert!(CronCalendar::parse("30 0 1 * * *", TimeZone::UTC).is_ok());
        assert!(CronCalendar::parse("@daily", TimeZone::UTC).is_ok());
        assert!(CronCalendar::parse("0 1 * *", TimeZone::UTC).unwrap_err().contains("5 or 6"));
        assert!(CronCalendar::parse("0 0 1 * * * 2030", TimeZone::UTC).unwrap_err().contains("5 or 6"));
        assert!(CronCalendar::parse("61 * * * *", TimeZone::UTC).is_err());
        assert!(CronCalendar::parse("", TimeZone::UTC).is_err());
        assert!(CronCalendar::parse("a b c d e", TimeZone::UTC).is_err());
    }

    #[test]
    fn six_fields_put_seconds_first() {
        let c = cal("30 0 1 * * *", TimeZone::UTC);
        assert_eq!(c.next_after(ts("2026-01-01T00:00:00Z")), Some(ts("2026-01-01T01:00:30Z")));
    }

    #[test]
    fn utc_daily() {
        let c = cal("0 1 * * *", TimeZone::UTC);
        assert_eq!(c.next_after(ts("2026-05-01T14:00:00Z")), Some(ts("2026-05-02T01:00:00Z")));
        assert_eq!(c.next_after(ts("2026-05-02T01:00:00Z")), Some(ts("2026-05-03T01:00:00Z")));
        assert_eq!(c.next_after(ts("2026-05-02T00:59:59.5Z")), Some(ts("2026-05-02T01:00:00Z")));
        assert_eq!(c.latest_at_or_before(ts("2026-05-02T01:00:00Z")), Some(ts("2026-05-02T01:00:00Z")));
        assert_eq!(c.latest_at_or_before(ts("2026-05-02T01:00:00.5Z")), Some(ts("2026-05-02T01:00:00Z")));
        assert_eq!(c.latest_at_or_before(ts("2026-05-02T00:59:59Z")), Some(ts("2026-05-01T01:00:00Z")));
    }

    #[test]
    fn window_is_inclusive() {
        // emptyhammock's reboot task: 01:00 with a 30-minute window.
        let c = cal("0 1 * * *", TimeZone::UTC);
        let w = SignedDuration::from_mins(30);
        assert!(!c.in_window(ts("2026-05-02T14:00:00Z"), w));
        assert!(c.in_window(ts("2026-05-02T01:00:00Z"), w));
        assert!(c.in_window(ts("2026-05-02T01:15:00Z"), w));
        assert!(c.in_window(ts("2026-05-02T01:30:00Z"), w));
        assert!(!c.in_window(ts("2026-05-02T01:30:01Z"), w));
    }

    #[test]
    fn berlin_spring_forward_fixed_time_runs_once_after_the_gap() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
        let c = cal("30 2 * * *", berlin());
        let got = fires(&c, ts("2026-03-27T12:00:00Z"), 4);
        assert_eq!(
            got,
            vec![
                ts("2026-03-28T01:30:00Z"), // 02:30 CET
                ts("2026-03-29T01:00:00Z"), // 03:00 CEST, just after the gap
                ts("2026-03-30T00:30:00Z"), // 02:30 CEST
                ts("2026-03-31T00:30:00Z"),
            ]
        );
    }

    #[test]
    fn berlin_fall_back_fixed_time_runs_once() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let c = cal("30 2 * * *", berlin());
        let got = fires(&c, ts("2026-10-24T12:00:00Z"), 2);
        assert_eq!(got, vec![ts("2026-10-25T00:30:00Z"), ts("2026-10-26T01:30:00Z")]);
    }

    #[test]
    fn berlin_hourly_is_every_real_hour_across_both_changes() {
        let c = cal("0 * * * *", berlin());
        for start in ["2026-03-28T22:00:00Z", "2026-10-24T22:00:00Z"] {
            let got = fires(&c, ts(start), 6);
            for pair in got.windows(2) {
                assert_eq!(pair[1].duration_since(pair[0]), SignedDuration::from_hours(1), "{got:?}");
            }
        }
    }

    #[test]
    fn grid() {
        let a = ts("2026-01-01T00:00:00Z");
        let p = SignedDuration::from_secs(10);
        assert_eq!(next_on_grid(a, p, ts("2025-12-31T00:00:00Z")), a);
        assert_eq!(next_on_grid(a, p, a), ts("2026-01-01T00:00:10Z"));
        assert_eq!(next_on_grid(a, p, ts("2026-01-01T00:00:09.9Z")), ts("2026-01-01T00:00:10Z"));
        assert_eq!(next_on_grid(a, p, ts("2026-01-01T00:00:35Z")), ts("2026-01-01T00:00:40Z"));
    }

    /// Expressions for the properties: fixed times, steps, lists, ranges,
    /// seconds.
    fn expr() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u32..60, 0u32..24).prop_map(|(m, h)| format!("{m} {h} * * *")),
            (0u32..60, 1u32..4).prop_map(|(m, h)| format!("{m} 1-{h} * * *")),
            (1u32..30).prop_map(|s| format!("*/{s} * * * *")),
            (0u32..60).prop_map(|m| format!("{m} * * * *")),
            (0u32..60, 0u32..7).prop_map(|(m, d)| format!("{m} 2 * * {d}")),
            (0u32..60, 0u32..60).prop_map(|(s, m)| format!("{s} {m} 2,3 * * *")),
            Just("*/20 * * * * *".to_string()),
            Just("0 0 29 2 *".to_string()),
        ]
    }

    fn zone() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("UTC"),
            Just("Europe/Berlin"),
            Just("America/New_York"),
            Just("Australia/Lord_Howe"),
            Just("Pacific/Chatham"),
        ]
    }

    /// Starts around the 2026 changes in Berlin and New York, and
    /// anywhere else.
    fn start() -> impl Strategy<Value = Timestamp> {
        let near =
            |s: &'static str| (-3 * 86_400i64..3 * 86_400).prop_map(move |d| ts(s) + SignedDuration::from_secs(d));
        prop_oneof![
            near("2026-03-29T01:00:00Z"),
            near("2026-10-25T01:00:00Z"),
            near("2026-03-08T07:00:00Z"),
            near("2026-11-01T06:00:00Z"),
            (0i64..4_000_000_000).prop_map(|s| Timestamp::from_second(s).unwrap()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn fire_times_strictly_increase_and_skip_nothing(e in expr(), z in zone(), t in start()) {
            let c = cal(&e, TimeZone::get(z).unwrap());
            let mut prev = t;
            for _ in 0..40 {
                let next = c.next_after(prev).unwrap();
                prop_assert!(next > prev);
                // Nothing in between: the instant before `next` still
                // finds `next`.
                let just_before = next - SignedDuration::from_nanos(1);
                if just_before > prev {
                    prop_assert_eq!(c.next_after(just_before), Some(next));
                }
                prop_assert_eq!(c.latest_at_or_before(next), Some(next));
                prev = next;
            }
        }

        #[test]
        fn berlin_no_fire_in_a_skipped_hour_none_doubled_in_a_repeated_one(
            m in 0u32..60, h in 0u32..24, year in 2026i16..2030,
        ) {
            // A fixed time of day fires exactly once on every local day,
            // the change days included, and every fire time reads, on the
            // Berlin wall clock, as the expression's time or (only when
            // that time is skipped) as the first minute after the gap.
            let tz = berlin();
            let c = cal(&format!("{m} {h} * * *"), tz.clone());
            let start = jiff::civil::date(year, 3, 20).to_zoned(tz.clone()).unwrap().timestamp();
            let mut t = start;
            let mut days = std::collections::BTreeSet::new();
            for _ in 0..230 {
                t = c.next_after(t).unwrap();
                let local = t.to_zoned(tz.clone());
                prop_assert!(days.insert(local.date()), "two fire times on {}", local.date());
                let wanted = jiff::civil::time(h as i8, m as i8, 0, 0);
                if local.time() != wanted {
                    // Only when the wanted time does not exist that day.
                    let civil = local.date().to_datetime(wanted);
                    let gap = matches!(tz.to_ambiguous_zoned(civil).offset(), jiff::tz::AmbiguousOffset::Gap { .. });
                    prop_assert!(gap, "{} fired at {}", c.text(), local);
                    prop_assert_eq!(local.time(), jiff::civil::time(3, 0, 0, 0));
                }
            }
        }
    }
}
