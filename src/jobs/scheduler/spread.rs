//! Flying Circus's spread (fc.util.spread), exactly: at most one run per
//! slot of N seconds, the slots shifted by a per-machine random offset kept
//! in a stamp file. Pure: the stamp's content and mtime and the current
//! time come in as arguments; reading, writing and touching the file, and
//! drawing the random offset, are the caller's.
//!
//! The stamp holds the offset as a decimal number and a newline; its mtime
//! is the last run minus the offset. A job is due when
//! `now ≥ mtime − (mtime mod N) + N + offset`. A new stamp has mtime 0, so
//! its first call is due. Unlike the original, a stamp that does not parse
//! is regenerated (with a warning) instead of crashing.
//!
//! Depends on jiff (instants) only.

use jiff::Timestamp;

const NANOS: i128 = 1_000_000_000;

/// A stamp as read from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Seconds added to every slot boundary.
    pub offset: i64,
    /// The file's modification time: the last run minus `offset`.
    pub mtime: Timestamp,
}

/// Reads a stamp's content for a slot of `slot` seconds: the offset, or
/// why the stamp must be regenerated. As in fc.util.spread, surrounding
/// white space is tolerated, a negative offset is kept, and an offset
/// larger than the slot is replaced.
pub fn parse_offset(content: &[u8], slot: i64) -> Result<i64, String> {
    let text = std::str::from_utf8(content).map_err(|_| "the stamp is not text".to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("the stamp is empty".to_string());
    }
    let offset: i64 = text.parse().map_err(|_| format!("the stamp holds {text:?}, not a whole number of seconds"))?;
    if offset > slot {
        return Err(format!("the offset {offset} is larger than the interval {slot}"));
    }
    Ok(offset)
}

/// The content of a stamp holding `offset`.
pub fn render_offset(offset: i64) -> String {
    format!("{offset}\n")
}

/// The mtime of a new stamp: the epoch, so that the first call is due.
pub const NEW_MTIME: Timestamp = Timestamp::UNIX_EPOCH;

/// When the next run is due: the first slot boundary (shifted by the
/// offset) after the slot of the last run.
pub fn next_due(stamp: Stamp, slot: i64) -> Timestamp {
    let m = stamp.mtime.as_nanosecond();
    let n = i128::from(slot.max(1)) * NANOS;
    let due = m - m.rem_euclid(n) + n + i128::from(stamp.offset) * NANOS;
    Timestamp::from_nanosecond(due).unwrap_or(if due < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// Whether a run is due at `now`.
pub fn is_due(stamp: Stamp, slot: i64, now: Timestamp) -> bool {
    now >= next_due(stamp, slot)
}

/// The mtime recorded for a run at `now`: `now − offset`.
pub fn touched_mtime(now: Timestamp, offset: i64) -> Timestamp {
    let t = now.as_nanosecond() - i128::from(offset) * NANOS;
    Timestamp::from_nanosecond(t).unwrap_or(if t < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// The stamp after a run at `now`.
pub fn after_run(stamp: Stamp, now: Timestamp) -> Stamp {
    Stamp { offset: stamp.offset, mtime: touched_mtime(now, stamp.offset) }
}

/// A uniform offset in `0..=slot` (fc.util.spread's `randint(0, N)`),
/// drawn from `random` without modulo bias.
pub fn draw_offset(slot: i64, mut random: impl FnMut() -> u64) -> i64 {
    let span = slot.max(0) as u64 + 1;
    // The largest multiple of `span` that fits, as an exclusive bound.
    let zone = u64::MAX - (u64::MAX % span + 1) % span;
    loop {
        let r = random();
        if r <= zone {
            return (r % span) as i64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    // fc/manage/tests/test_spread.py, with freezegun's fixed times.
    const MTIME: i64 = 1_513_591_190;
    const GRID: i64 = 1_513_591_200; // 2017-12-18T10:00:00Z

    #[test]
    fn fc_read_offset() {
        assert_eq!(parse_offset(b"34", 7200), Ok(34));
        assert_eq!(parse_offset(b"  42\n", 7200), Ok(42));
        assert_eq!(parse_offset(b"-5\n", 7200), Ok(-5));
        assert_eq!(parse_offset(b"7200\n", 7200), Ok(7200));
    }

    #[test]
    fn garbled_stamps_are_regenerated() {
        assert!(parse_offset(b"", 7200).unwrap_err().contains("empty"));
        assert!(parse_offset(b"\n", 7200).unwrap_err().contains("empty"));
        assert!(parse_offset(b"abc", 7200).unwrap_err().contains("\"abc\""));
        assert!(parse_offset(b"1.5", 7200).is_err());
        assert!(parse_offset(b"\xff\xfe", 7200).is_err());
        assert!(parse_offset(b"99999999", 7200).unwrap_err().contains("larger"));
        assert!(parse_offset(b"7201", 7200).is_err());
    }

    #[test]
    fn fc_generate_offset_content() {
        assert_eq!(render_offset(1234), "1234\n");
        assert_eq!(parse_offset(render_offset(1234).as_bytes(), 7200), Ok(1234));
    }

    #[test]
    fn fc_no_offset() {
        let stamp = Stamp { offset: 0, mtime: at(MTIME) };
        assert_eq!(next_due(stamp, 7200), at(GRID));
        assert!(!is_due(stamp, 7200, at(GRID - 1)));
        assert!(is_due(stamp, 7200, at(GRID + 1)));
        let after = after_run(stamp, at(GRID + 1));
        assert_eq!(after.mtime, at(GRID + 1));
        assert_eq!(next_due(after, 7200), at(GRID + 7200));
    }

    #[test]
    fn fc_with_offset() {
        let stamp = Stamp { offset: 30, mtime: at(MTIME) };
        assert_eq!(next_due(stamp, 7200), at(GRID + 30));
        assert!(!is_due(stamp, 7200, at(GRID + 29)));
        assert!(is_due(stamp, 7200, at(GRID + 31)));
        let after = after_run(stamp, at(GRID + 31));
        assert_eq!(after.mtime, at(GRID + 1));
        assert_eq!(next_due(after, 7200), at(GRID + 30 + 7200));
    }

    #[test]
    fn fc_simulation() {
        // Offset 1800 s, a tick every 600 s starting 123 s past a grid
        // line: runs at +123 s, +1923 s, +9123 s.
        let slot = 7200;
        let base = 1_800_000_000 / slot * slot;
        let mut stamp = Stamp { offset: 1800, mtime: NEW_MTIME };
        let mut runs = Vec::new();
        let mut t = base + 123;
        while t < base + 10_000 {
            if is_due(stamp, slot, at(t)) {
                runs.push(t - base);
                stamp = after_run(stamp, at(t));
            }
            t += 600;
        }
        assert_eq!(runs, vec![123, 1923, 9123]);
    }

    #[test]
    fn fc_counts_per_day() {
        // M = 10 min, N = 2 h: 13 runs in 24 h (1 initial + 12); M = 3 h:
        // every call is due, 8 runs. Offset 1800 s, start 123 s past a
        // grid line, as in the seed's simulation.
        for (tick, want) in [(600, 13), (3 * 3600, 8)] {
            let mut stamp = Stamp { offset: 1800, mtime: NEW_MTIME };
            let mut n = 0;
            // 1_800_000_000 is a multiple of 7200.
            let mut t = 1_800_000_000 + 123;
            let end = t + 86_400;
            while t < end {
                if is_due(stamp, 7200, at(t)) {
                    n += 1;
                    stamp = after_run(stamp, at(t));
                }
                t += tick;
            }
            assert_eq!(n, want, "tick {tick}");
        }
    }

    #[test]
    fn draws_stay_in_range() {
        let mut seq = [u64::MAX, 5, 0].into_iter();
        // u64::MAX is rejected for a span that does not divide 2^64.
        assert_eq!(draw_offset(6, || seq.next().unwrap()), 5);
        assert_eq!(draw_offset(0, || 12345), 0);
        assert_eq!(draw_offset(7200, || 7201), 0);
        assert_eq!(draw_offset(7200, || 7200), 7200);
    }

    proptest! {
        #[test]
        fn first_call_with_a_fresh_stamp_runs(offset in 0i64..=86_400, extra in 0i64..86_400, now in 1_000_000i64..4_000_000_000) {
            let slot = offset.max(1) + extra;
            let stamp = Stamp { offset: offset.min(slot), mtime: NEW_MTIME };
            prop_assert!(is_due(stamp, slot, at(now)));
        }

        #[test]
        fn at_most_one_run_per_slot_whatever_the_cadence(
            slot in 1i64..10_000,
            offset_frac in 0.0f64..=1.0,
            start in 1_000_000_000i64..2_000_000_000,
            gaps in proptest::collection::vec(1i64..5_000, 1..200),
        ) {
            let offset = (slot as f64 * offset_frac) as i64;
            let mut stamp = Stamp { offset, mtime: NEW_MTIME };
            let mut t = start;
            let mut slots = std::collections::BTreeSet::new();
            let mut last_run: Option<i64> = None;
            for gap in gaps {
                if is_due(stamp, slot, at(t)) {
                    // Slot k holds [k·N + offset, (k+1)·N + offset).
                    let k = (t - offset).div_euclid(slot);
                    prop_assert!(slots.insert(k), "two runs in slot {}", k);
                    if let Some(prev) = last_run {
                        // The next run never comes before the next grid point.
                        prop_assert!(t >= (prev - offset).div_euclid(slot) * slot + slot + offset);
                    }
                    last_run = Some(t);
                    stamp = after_run(stamp, at(t));
                    prop_assert!(next_due(stamp, slot) > at(t));
                }
                t += gap;
            }
            prop_assert!(last_run.is_some(), "the first call must run");
        }

        #[test]
        fn a_tick_faster_than_the_slot_runs_once_per_slot(
            slot in 2i64..5_000, offset_frac in 0.0f64..=1.0, tick in 1i64..2, start in 1_000_000_000i64..2_000_000_000,
        ) {
            // Ticking every second for 10 slots: exactly one run per slot
            // after the first (fresh) one.
            let offset = (slot as f64 * offset_frac) as i64;
            let mut stamp = Stamp { offset, mtime: NEW_MTIME };
            let mut runs = 0;
            let mut t = start;
            while t < start + 10 * slot {
                if is_due(stamp, slot, at(t)) {
                    runs += 1;
                    stamp = after_run(stamp, at(t));
                }
                t += tick;
            }
            prop_assert!((10..=11).contains(&runs), "{} runs", runs);
        }

        #[test]
        fn offsets_are_uniform_bounded(slot in 0i64..100_000, r in any::<u64>()) {
            let mut once = Some(r);
            let mut fallback = 0u64;
            let o = draw_offset(slot, || once.take().unwrap_or_else(|| { fallback += 1; fallback }));
            prop_assert!((0..=slot).contains(&o));
        }
    }
}
