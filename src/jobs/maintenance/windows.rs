//! Maintenance windows: a cron expression in a time zone (the scheduler's
//! calendar) opening a window of a fixed length at each fire time, and the
//! first-fit search that gives a request its slot. Pure: every instant is
//! an argument.
//!
//! Depends on jiff and the scheduler's calendar module.

use crate::jobs::scheduler::calendar::{self, CronCalendar};
use crate::jobs::scheduler::settings::duration;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// How many fire times of one window are looked at before giving up.
const SEARCH_LIMIT: usize = 20_000;

/// One window: open for `length` from each fire time of `calendar`.
#[derive(Debug, Clone)]
pub struct Window {
    /// When it opens.
    pub calendar: CronCalendar,
    /// How long it stays open.
    pub length: SignedDuration,
}

impl Window {
    /// Parses `EXPR +DURATION` (`"0 2 * * * +2h"`, `"@daily +30m"`): the
    /// cron expression, then the length after the last `+`.
    pub fn parse(spec: &str, zone: TimeZone) -> Result<Window, String> {
        let Some((expr, len)) = spec.rsplit_once('+') else {
            return Err(format!("window {spec:?}: expected \"CRON +DURATION\", e.g. \"0 2 * * * +2h\""));
        };
        let calendar = CronCalendar::parse(expr, zone).map_err(|e| format!("window {spec:?}: {e}"))?;
        let length = duration(&format!("window {spec:?}: length"), len.trim())?;
        Ok(Window { calendar, length })
    }

    /// The opening and closing of the window that contains `t`, or the
    /// next one.
    fn around_or_after(&self, t: Timestamp) -> Option<(Timestamp, Timestamp)> {
        if let Some(open) = self.calendar.latest_at_or_before(t) {
            let close = calendar::add(open, self.length);
            if close > t {
                return Some((open, close));
            }
        }
        let open = self.calendar.next_after(t)?;
        Some((open, calendar::add(open, self.length)))
    }

    /// "0 2 * * * +2h in Europe/Berlin".
    pub fn describe(&self) -> String {
        format!(
            "{} +{} in {}",
            self.calendar.text(),
            colony_ctl::maintenance::format_estimate(self.length.as_secs_f64()),
            self.calendar.zone().iana_name().unwrap_or("UTC")
        )
    }
}

/// A span already promised to another request: `[start, end)`.
pub type Busy = (Timestamp, Timestamp);

/// The first instant `t ≥ earliest` at which a request of `estimate` can
/// start: `[t, t + estimate]` lies inside one window and overlaps no
/// `busy` span. Without windows, any time is maintenance time and the
/// answer is `earliest` (requests are then not spread apart: they run
/// one after the other in the same session). `None` when no window within
/// the search horizon is long enough.
pub fn first_slot(
    windows: &[Window],
    earliest: Timestamp,
    estimate: SignedDuration,
    busy: &[Busy],
) -> Option<Timestamp> {
    if windows.is_empty() {
        return Some(earliest);
    }
    windows.iter().filter_map(|w| first_slot_in(w, earliest, estimate, busy)).min()
}

fn first_slot_in(w: &Window, earliest: Timestamp, estimate: SignedDuration, busy: &[Busy]) -> Option<Timestamp> {
    if estimate > w.length {
        return None;
    }
    let mut from = earliest;
    for _ in 0..SEARCH_LIMIT {
        let (open, close) = w.around_or_after(from)?;
        let mut t = from.max(open);
        // Step past every busy span that overlaps [t, t + estimate).
        loop {
            let end = calendar::add(t, estimate);
            let clash = busy.iter().filter(|(s, e)| *s < end.max(t + SignedDuration::from_nanos(1)) && *e > t);
            match clash.map(|(_, e)| *e).max() {
                Some(e) if e > t => t = e,
                _ => break,
            }
        }
        if calendar::add(t, estimate) <= close && t < close {
            return Some(t);
        }
        // Not in this window: try the next opening (windows of one
        // expression may overlap, so not the closing).
        from = w.calendar.next_after(open)?.max(from);
    }
    None
}

/// Whether `[t, t + estimate]` lies inside one window (true without
/// windows).
pub fn fits(windows: &[Window], t: Timestamp, estimate: SignedDuration) -> bool {
    windows.is_empty()
        || windows.iter().any(|w| {
            w.calendar.latest_at_or_before(t).is_some_and(|open| {
                let close = calendar::add(open, w.length);
                t < close && calendar::add(t, estimate) <= close
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn win(spec: &str) -> Window {
        Window::parse(spec, TimeZone::UTC).unwrap()
    }

    fn mins(n: i64) -> SignedDuration {
        SignedDuration::from_mins(n)
    }

    #[test]
    fn parses_expression_and_length() {
        let w = win("0 2 * * * +2h");
        assert_eq!(w.calendar.text(), "0 2 * * *");
        assert_eq!(w.length, SignedDuration::from_hours(2));
        assert_eq!(w.describe(), "0 2 * * * +2h in UTC");
        assert!(Window::parse("@daily +30m", TimeZone::UTC).is_ok());
        assert!(Window::parse("0 2 * * *", TimeZone::UTC).unwrap_err().contains("CRON +DURATION"));
        assert!(Window::parse("0 2 * * * +0", TimeZone::UTC).unwrap_err().contains("positive"));
        assert!(Window::parse("0 25 * * * +1h", TimeZone::UTC).is_err());
        assert!(Window::parse("0 2 * * * +soon", TimeZone::UTC).is_err());
    }

    #[test]
    fn first_window_that_fits() {
        let w = [win("0 2 * * * +2h")];
        // Before the window: its opening.
        assert_eq!(first_slot(&w, ts("2026-05-01T12:00:00Z"), mins(30), &[]), Some(ts("2026-05-02T02:00:00Z")));
        // Inside it, with room left: now.
        assert_eq!(first_slot(&w, ts("2026-05-02T02:10:00Z"), mins(30), &[]), Some(ts("2026-05-02T02:10:00Z")));
        // Inside it, too little room left: the next night.
        assert_eq!(first_slot(&w, ts("2026-05-02T03:45:00Z"), mins(30), &[]), Some(ts("2026-05-03T02:00:00Z")));
        // Exactly fits at the end.
        assert_eq!(first_slot(&w, ts("2026-05-02T03:30:00Z"), mins(30), &[]), Some(ts("2026-05-02T03:30:00Z")));
        // Longer than the window: never.
        assert_eq!(first_slot(&w, ts("2026-05-02T00:00:00Z"), mins(121), &[]), None);
    }

    #[test]
    fn requests_are_packed_back_to_back() {
        let w = [win("0 2 * * * +2h")];
        let t0 = ts("2026-05-01T12:00:00Z");
        let mut busy = Vec::new();
        let mut slots = Vec::new();
        for est in [60, 45, 30] {
            let s = first_slot(&w, t0, mins(est), &busy).unwrap();
            busy.push((s, s + mins(est)));
            slots.push(s);
        }
        // 02:00 (1 h), 03:00 (45 min), then 30 min do not fit before
        // 04:00: the next night.
        assert_eq!(slots, [ts("2026-05-02T02:00:00Z"), ts("2026-05-02T03:00:00Z"), ts("2026-05-03T02:00:00Z")]);
    }

    #[test]
    fn the_earliest_of_several_windows_wins() {
        let w = [win("0 2 * * * +1h"), win("0 14 * * 6 +4h")];
        // Saturday 2026-05-02: 02:00 is past, 14:00 comes first.
        assert_eq!(first_slot(&w, ts("2026-05-02T10:00:00Z"), mins(90), &[]), Some(ts("2026-05-02T14:00:00Z")));
        assert_eq!(first_slot(&w, ts("2026-05-02T10:00:00Z"), mins(30), &[]), Some(ts("2026-05-02T14:00:00Z")));
        assert_eq!(first_slot(&w, ts("2026-05-02T19:00:00Z"), mins(30), &[]), Some(ts("2026-05-03T02:00:00Z")));
    }

    #[test]
    fn windows_in_a_zone() {
        let w = [Window::parse("0 2 * * * +1h", TimeZone::get("Europe/Berlin").unwrap()).unwrap()];
        assert_eq!(first_slot(&w, ts("2026-07-01T12:00:00Z"), mins(10), &[]), Some(ts("2026-07-02T00:00:00Z")));
    }

    #[test]
    fn without_windows_any_time_is_maintenance_time() {
        let t = ts("2026-05-01T12:00:00Z");
        assert_eq!(first_slot(&[], t, mins(600), &[(t, t + mins(5))]), Some(t));
        assert!(fits(&[], t, mins(600)));
    }

    fn expr() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u32..60, 0u32..24).prop_map(|(m, h)| format!("{m} {h} * * *")),
            (0u32..60).prop_map(|m| format!("{m} * * * *")),
            (0u32..7).prop_map(|d| format!("0 1 * * {d}")),
            Just("*/20 * * * *".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]

        #[test]
        fn slots_fit_do_not_overlap_and_are_the_first(
            specs in proptest::collection::vec((expr(), 1i64..240), 1..3),
            start in 1_700_000_000i64..1_900_000_000,
            estimates in proptest::collection::vec(0i64..120, 1..8),
        ) {
            let windows: Vec<Window> = specs.iter().map(|(e, len)| {
                Window { calendar: CronCalendar::parse(e, TimeZone::UTC).unwrap(), length: mins(*len) }
            }).collect();
            let earliest = Timestamp::from_second(start).unwrap();
            let mut busy: Vec<Busy> = Vec::new();
            for est in estimates {
                let est = mins(est);
                let Some(slot) = first_slot(&windows, earliest, est, &busy) else {
                    prop_assert!(windows.iter().all(|w| est > w.length));
                    continue;
                };
                prop_assert!(slot >= earliest);
                prop_assert!(fits(&windows, slot, est), "slot {} does not fit", slot);
                let end = slot + est;
                let overlaps = |t: Timestamp, e: Timestamp| busy.iter().any(|(s, b)| *s < e.max(t + SignedDuration::from_nanos(1)) && *b > t);
                prop_assert!(!overlaps(slot, end), "slot {} overlaps {:?}", slot, busy);
                // No earlier candidate (window openings, ends of busy
                // spans, `earliest` itself) would have done.
                let mut candidates = vec![earliest];
                for w in &windows {
                    let mut t = w.calendar.latest_at_or_before(earliest).unwrap_or(earliest);
                    while t < slot {
                        if t >= earliest { candidates.push(t); }
                        t = w.calendar.next_after(t).unwrap();
                    }
                }
                candidates.extend(busy.iter().map(|(_, e)| *e).filter(|e| *e >= earliest));
                for c in candidates.into_iter().filter(|c| *c < slot) {
                    prop_assert!(!fits(&windows, c, est) || overlaps(c, c + est), "{} would fit before {}", c, slot);
                }
                busy.push((slot, end));
            }
        }
    }
}
