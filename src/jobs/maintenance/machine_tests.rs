//! Tests of the request state machine: every transition of the table,
//! fc.maintenance's own test cases, and properties, all with fake time.

use super::*;
use colony_ctl::maintenance::Activity;
use jiff::tz::TimeZone;
use proptest::prelude::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn mins(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

fn req(id: &str, est_mins: f64, added: &str) -> Request {
    let mut r = Request::new(Activity::Script { script: "true".into() }, id, est_mins * 60.0, unix(ts(added)));
    r.id = format!("{id}xxxxxxxxxxxxxxxxxxxxxx")[..22].to_string();
    r
}

fn with(mut r: Request, state: RequestState, due: Option<&str>) -> Request {
    r.state = state;
    r.next_due = due.map(|d| unix(ts(d)));
    r
}

fn nightly() -> Vec<Window> {
    vec![Window::parse("0 2 * * * +2h", TimeZone::UTC).unwrap()]
}

fn states(rs: &[Request]) -> Vec<RequestState> {
    rs.iter().map(|r| r.state).collect()
}

fn due_at(r: &Request) -> Option<Timestamp> {
    r.next_due.map(at)
}

const ADDED: &str = "2026-05-01T10:00:00Z";

#[test]
fn pending_without_slot_gets_the_first_window_that_fits() {
    let mut rs = vec![req("a", 30.0, ADDED), req("b", 60.0, "2026-05-01T10:01:00Z")];
    let notes = settle(ts("2026-05-01T12:00:00Z"), &mut rs, &nightly(), &Limits::default());
    assert_eq!(states(&rs), [RequestState::Pending, RequestState::Pending]);
    assert_eq!(due_at(&rs[0]), Some(ts("2026-05-02T02:00:00Z")));
    // Back to back after the first.
    assert_eq!(due_at(&rs[1]), Some(ts("2026-05-02T02:30:00Z")));
    assert!(notes[0].msg.contains("scheduled at 2026-05-02T02:00:00Z (estimate 30m)"), "{notes:?}");
}

#[test]
fn pending_that_fits_no_window_is_an_error() {
    let mut rs = vec![req("a", 150.0, ADDED)];
    let notes = settle(ts("2026-05-01T12:00:00Z"), &mut rs, &nightly(), &Limits::default());
    assert_eq!(states(&rs), [RequestState::Error]);
    assert!(notes[0].warn && notes[0].msg.contains("fits in no maintenance window"), "{notes:?}");
}

#[test]
fn pending_becomes_due_at_its_slot_and_not_before() {
    let mut rs = vec![with(req("a", 30.0, ADDED), RequestState::Pending, Some("2026-05-02T02:00:00Z"))];
    settle(ts("2026-05-02T01:59:59Z"), &mut rs, &nightly(), &Limits::default());
    assert_eq!(states(&rs), [RequestState::Pending]);
    settle(ts("2026-05-02T02:00:00Z"), &mut rs, &nightly(), &Limits::default());
    assert_eq!(states(&rs), [RequestState::Due]);
}

#[test]
fn fc_update_states_continuous_requests() {
    // fc HEAD's test: due at 12:00 with 25 min (20 + preparation) makes a
    // session up to 12:26; 12:20 (15 min) joins, then up to 12:36; 12:35
    // joins, then up to 12:51; 12:52 waits.
    let now = ts("2026-05-01T12:00:00Z");
    let mut rs = vec![
        with(req("a", 25.0, ADDED), RequestState::Pending, Some("2026-05-01T12:00:00Z")),
        with(req("b", 15.0, ADDED), RequestState::Pending, Some("2026-05-01T12:20:00Z")),
        with(req("c", 15.0, ADDED), RequestState::Pending, Some("2026-05-01T12:35:00Z")),
        with(req("d", 15.0, ADDED), RequestState::Pending, Some("2026-05-01T12:52:00Z")),
    ];
    let notes = settle(now, &mut rs, &[], &Limits::default());
    assert_eq!(states(&rs), [RequestState::Due, RequestState::Due, RequestState::Due, RequestState::Pending]);
    assert!(notes[1].msg.contains("runs right after the requests before it"), "{notes:?}");
}

#[test]
fn the_batch_never_shrinks() {
    // A long request, then a short one, then one inside the long one's
    // span: fc's max(now, …) would drop the third; colony keeps it.
    let now = ts("2026-05-01T12:00:00Z");
    let mut rs = vec![
        with(req("a", 120.0, ADDED), RequestState::Pending, Some("2026-05-01T12:00:00Z")),
        with(req("b", 1.0, ADDED), RequestState::Pending, Some("2026-05-01T12:30:00Z")),
        with(req("c", 1.0, ADDED), RequestState::Pending, Some("2026-05-01T13:00:00Z")),
    ];
    settle(now, &mut rs, &[], &Limits::default());
    assert_eq!(states(&rs), [RequestState::Due; 3]);
}

#[test]
fn fc_overdue() {
    let slot = "2026-05-02T02:00:00Z";
    let mut rs = vec![with(req("a", 10.0, ADDED), RequestState::Due, Some(slot))];
    settle(ts("2026-05-02T02:19:00Z"), &mut rs, &nightly(), &Limits::default());
    assert_eq!(states(&rs), [RequestState::Due]);
    let notes = settle(ts("2026-05-02T02:31:00Z"), &mut rs, &nightly(), &Limits::default());
    // Postponed, and at once rescheduled: no slot before 02:31 + 2 × 10 min.
    assert_eq!(states(&rs), [RequestState::Pending]);
    assert_eq!(due_at(&rs[0]), Some(ts("2026-05-02T02:51:00Z")));
    assert_eq!(rs[0].not_before.map(at), Some(ts("2026-05-02T02:51:00Z")));
    let text: Vec<&str> = notes.iter().map(|n| n.msg.as_str()).collect();
    assert!(text[0].contains("overdue: its slot 2026-05-02T02:00:00Z is more than 30m ago"), "{text:?}");
    assert!(text[1].contains("postponed: no slot before 2026-05-02T02:51:00Z"), "{text:?}");
    assert!(text[2].contains("scheduled at 2026-05-02T02:51:00Z"), "{text:?}");
}

#[test]
fn postponed_moves_back_by_twice_its_estimate_into_the_next_window() {
    // Slot 03:00 with 50 min: 03:00 + 100 min = 04:40 is past the window.
    let mut rs = vec![with(req("a", 50.0, ADDED), RequestState::Postpone, Some("2026-05-02T03:00:00Z"))];
    settle(ts("2026-05-02T03:05:00Z"), &mut rs, &nightly(), &Limits::default());
    assert_eq!(states(&rs), [RequestState::Pending]);
    assert_eq!(due_at(&rs[0]), Some(ts("2026-05-03T02:00:00Z")));
}

#[test]
fn unknown_state_becomes_pending() {
    let mut rs = vec![with(req("a", 10.0, ADDED), RequestState::Unknown, None)];
    let notes = settle(ts("2026-05-01T12:00:00Z"), &mut rs, &nightly(), &Limits::default());
    assert_eq!(states(&rs), [RequestState::Pending]);
    assert!(rs[0].next_due.is_some());
    assert!(notes[0].warn);
}

#[test]
fn due_at_the_retry_limit_is_an_error() {
    let limits = Limits { max_attempts: 3, ..Limits::default() };
    let mut r = with(req("a", 10.0, ADDED), RequestState::Due, Some("2026-05-02T02:00:00Z"));
    for _ in 0..3 {
        begin_attempt(&mut r, ts("2026-05-02T02:00:00Z"));
    }
    r.state = RequestState::Due;
    let mut rs = vec![r];
    let notes = settle(ts("2026-05-02T02:05:00Z"), &mut rs, &nightly(), &limits);
    assert_eq!(states(&rs), [RequestState::Error]);
    assert!(notes[0].msg.contains("retry limit: 3 attempts"));
}

#[test]
fn exit_codes() {
    let l = Limits::default();
    assert_eq!(evaluate(Some(0), 1, &l), RequestState::Success);
    assert_eq!(evaluate(Some(69), 1, &l), RequestState::Postpone);
    assert_eq!(evaluate(Some(75), 1, &l), RequestState::Due);
    assert_eq!(evaluate(Some(75), 47, &l), RequestState::Due);
    assert_eq!(evaluate(Some(75), 48, &l), RequestState::Error);
    for c in [1, 2, 65, 70, 80, 126, 127, 255] {
        assert_eq!(evaluate(Some(c), 1, &l), RequestState::Error, "{c}");
    }
    assert_eq!(evaluate(None, 1, &l), RequestState::Error);
}

#[test]
fn running_ends_by_exit_code() {
    let now = ts("2026-05-02T02:00:00Z");
    for (code, want) in [
        (Some(0), RequestState::Success),
        (Some(69), RequestState::Postpone),
        (Some(75), RequestState::Due),
        (Some(3), RequestState::Error),
        (None, RequestState::Error),
    ] {
        let mut r = with(req("a", 10.0, ADDED), RequestState::Due, Some("2026-05-02T02:00:00Z"));
        begin_attempt(&mut r, now);
        assert_eq!(r.state, RequestState::Running);
        let n = end_attempt(&mut r, now + mins(1), code, "out".into(), None, &Limits::default());
        assert_eq!(r.state, want, "{code:?}");
        assert_eq!(n.warn, want != RequestState::Success);
        let a = r.attempts.last().unwrap();
        assert_eq!((a.started, a.finished, a.exit_code), (unix(now), Some(unix(now + mins(1))), code));
        assert_eq!(a.output, "out");
    }
}

#[test]
fn deletion_applies_to_queued_requests_only() {
    let now = ts("2026-05-02T02:00:00Z");
    let mut rs = vec![
        with(req("a", 10.0, ADDED), RequestState::Pending, None),
        with(req("b", 10.0, ADDED), RequestState::Success, None),
    ];
    let ids: Vec<String> = rs.iter().map(|r| r.id.clone()).collect();
    let notes = apply_deletions(now, &mut rs, &ids);
    assert_eq!(states(&rs), [RequestState::Deleted, RequestState::Success]);
    assert_eq!(notes.len(), 1);
}

#[test]
fn enter_hook_verdicts() {
    use HookOutcome::*;
    assert_eq!(enter_verdict(&[]), Verdict::Proceed);
    assert_eq!(enter_verdict(&[Exited(0), Exited(0)]), Verdict::Proceed);
    assert_eq!(enter_verdict(&[Exited(0), Exited(75)]), Verdict::Retry);
    assert_eq!(enter_verdict(&[Exited(69)]), Verdict::Postpone);
    // Postpone beats tempfail, whatever the order.
    assert_eq!(enter_verdict(&[Exited(75), Exited(69)]), Verdict::Postpone);
    assert_eq!(enter_verdict(&[Exited(69), Exited(75)]), Verdict::Postpone);
    assert_eq!(enter_verdict(&[Exited(69), Exited(1)]), Verdict::Postpone);
    for failure in [Exited(1), Signaled(9), TimedOut, NotStarted("x".into()), Interrupted] {
        assert_eq!(enter_verdict(&[Exited(0), failure.clone()]), Verdict::Retry, "{failure:?}");
        assert!(!continue_after(&failure), "{failure:?}");
    }
    assert!(continue_after(&Exited(0)) && continue_after(&Exited(69)) && continue_after(&Exited(75)));
}

#[test]
fn enter_hook_postpone_moves_every_due_request() {
    let now = ts("2026-05-02T02:00:00Z");
    let mut rs = vec![
        with(req("a", 10.0, ADDED), RequestState::Due, Some("2026-05-02T02:00:00Z")),
        with(req("b", 10.0, ADDED), RequestState::Pending, Some("2026-05-03T02:00:00Z")),
    ];
    postpone_due(now, &mut rs);
    assert_eq!(states(&rs), [RequestState::Postpone, RequestState::Pending]);
    settle(now, &mut rs, &nightly(), &Limits::default());
    // 02:00 + 20 min, clear of b (next night).
    assert_eq!(due_at(&rs[0]), Some(ts("2026-05-02T02:20:00Z")));
}

#[test]
fn restart_and_reboot_progress() {
    let t = SignedDuration::from_secs(60);
    let p = |started: Option<f64>| vec![("web".to_string(), started), ("db".to_string(), Some(105.0))];
    assert_eq!(restart_progress(&p(Some(101.0)), 100.0, 102.0, t), RestartProgress::Done);
    assert_eq!(restart_progress(&p(Some(99.0)), 100.0, 102.0, t), RestartProgress::Waiting(vec!["web".into()]));
    assert_eq!(restart_progress(&p(None), 100.0, 102.0, t), RestartProgress::Waiting(vec!["web".into()]));
    assert_eq!(restart_progress(&p(None), 100.0, 160.0, t), RestartProgress::TimedOut(vec!["web".into()]));
    let s = ts("2026-05-02T02:00:00Z");
    assert_eq!(reboot_progress("a", Some("b"), s, s, mins(10)), RebootProgress::Done);
    assert_eq!(reboot_progress("a", Some("a"), s, s + mins(9), mins(10)), RebootProgress::Waiting);
    assert_eq!(reboot_progress("a", None, s, s + mins(9), mins(10)), RebootProgress::Waiting);
    assert_eq!(reboot_progress("a", Some("a"), s, s + mins(10), mins(10)), RebootProgress::TimedOut);
}

#[test]
fn wakes_at_the_next_slot_or_after_the_interval() {
    let now = ts("2026-05-02T01:00:00Z");
    let l = Limits::default();
    let rs = vec![with(req("a", 10.0, ADDED), RequestState::Pending, Some("2026-05-02T01:05:00Z"))];
    assert_eq!(next_wake(now, &rs, mins(10), &l, mins(10)), ts("2026-05-02T01:05:00Z"));
    assert_eq!(next_wake(now, &rs, mins(2), &l, mins(10)), ts("2026-05-02T01:02:00Z"));
    let rs = vec![with(req("a", 10.0, ADDED), RequestState::Due, Some("2026-05-02T00:40:00Z"))];
    assert_eq!(next_wake(now, &rs, mins(60), &l, mins(10)), ts("2026-05-02T01:10:01Z"));
}

fn arb_state() -> impl Strategy<Value = RequestState> {
    prop_oneof![
        Just(RequestState::Pending),
        Just(RequestState::Due),
        Just(RequestState::Postpone),
        Just(RequestState::Unknown),
        Just(RequestState::Success),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn settle_is_stable_and_leaves_nothing_pending_in_the_past(
        reqs in proptest::collection::vec((arb_state(), proptest::option::of(-600i64..600), 0u32..90, 0u32..20), 0..8),
        windowed in any::<bool>(),
    ) {
        let now = ts("2026-05-02T02:30:00Z");
        let windows = if windowed { nightly() } else { Vec::new() };
        let limits = Limits { max_attempts: 10, ..Limits::default() };
        let mut rs: Vec<Request> = reqs.iter().enumerate().map(|(i, (state, due, est, tries))| {
            let mut r = req(&format!("r{i}"), f64::from(*est), ADDED);
            r.state = *state;
            r.next_due = due.map(|d| unix(now + mins(d)));
            for _ in 0..*tries { r.attempts.push(colony_ctl::maintenance::Attempt { started: 0.0, finished: Some(1.0), exit_code: Some(75), output: String::new(), note: None }); }
            r
        }).collect();
        settle(now, &mut rs, &windows, &limits);
        for r in &rs {
            prop_assert!(!matches!(r.state, RequestState::Postpone | RequestState::Unknown), "{:?}", r.state);
            if r.state == RequestState::Pending {
                let slot = r.next_due.map(at);
                prop_assert!(slot.is_some_and(|s| s > now), "pending at {:?}", slot);
            }
            if r.state == RequestState::Due {
                prop_assert!(r.attempts.len() < limits.max_attempts);
                prop_assert!(r.next_due.map(at).is_some_and(|s| now <= s + limits.overdue));
            }
        }
        let again = rs.clone();
        let notes = settle(now, &mut rs, &windows, &limits);
        prop_assert_eq!(&rs, &again, "{:?}", notes);
    }

    #[test]
    fn a_request_that_always_says_75_is_tried_max_attempts_times(max in 1usize..60) {
        let limits = Limits { max_attempts: max, ..Limits::default() };
        let mut now = ts("2026-05-02T02:00:00Z");
        let mut rs = vec![with(req("a", 1.0, ADDED), RequestState::Pending, Some("2026-05-02T02:00:00Z"))];
        let mut runs = 0;
        for _ in 0..200 {
            settle(now, &mut rs, &[], &limits);
            for i in runnable(&rs) {
                begin_attempt(&mut rs[i], now);
                end_attempt(&mut rs[i], now, Some(75), String::new(), None, &limits);
                runs += 1;
            }
            // Ticks close together: never overdue.
            now += SignedDuration::from_secs(5);
        }
        prop_assert_eq!(rs[0].state, RequestState::Error);
        prop_assert_eq!(runs, max);
    }

    #[test]
    fn back_to_back_requests_all_run_in_one_session(ests in proptest::collection::vec(1u32..60, 1..10)) {
        // Scheduled one after the other by the window search, the whole
        // chain becomes due at the first slot.
        let mut rs: Vec<Request> = ests.iter().enumerate().map(|(i, e)| {
            req(&format!("r{i}"), f64::from(*e), &format!("2026-05-01T10:00:{:02}Z", i))
        }).collect();
        let windows = vec![Window::parse("0 2 * * * +10h", TimeZone::UTC).unwrap()];
        settle(ts("2026-05-01T12:00:00Z"), &mut rs, &windows, &Limits::default());
        prop_assert!(rs.iter().all(|r| r.state == RequestState::Pending));
        settle(ts("2026-05-02T02:00:00Z"), &mut rs, &windows, &Limits::default());
        prop_assert!(rs.iter().all(|r| r.state == RequestState::Due), "{:?}", states(&rs));
    }
}

proptest! {
    #[test]
    fn unix_seconds_round_trip_never_later(ns in 0i128..4_000_000_000_000_000_000) {
        let t = Timestamp::from_nanosecond(ns).unwrap();
        let back = at(unix(t));
        prop_assert!(back <= t);
        prop_assert!(t.duration_since(back) < SignedDuration::from_micros(1));
        prop_assert_eq!(at(unix(back)), back);
    }
}
