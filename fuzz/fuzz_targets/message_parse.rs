//! The message parser: `Message::parse` on any bytes.
//!
//! Never panics; whatever it accepts names a valid program (so it cannot
//! point outside the config directory) and a real signal, and writes back
//! (as ASCII, in ncolony's style) to bytes that parse to the same message.
#![no_main]

use colony_ctl::{Message, ProgramName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else { return };
    match &message {
        Message::Restart(n) | Message::Stop(n) | Message::Start(n) | Message::Signal(n, _) => {
            assert_eq!(ProgramName::new(n.as_str()).as_ref(), Ok(n));
            assert!(!colony_ctl::is_ignored_file_name(n.as_str()));
        }
        Message::RestartAll | Message::RestartGroup(_) => {}
    }
    if let Message::Signal(_, sig) = message {
        assert!((1..=64).contains(&sig), "signal {sig}");
    }
    let bytes = message.to_bytes();
    assert!(bytes.is_ascii());
    assert_eq!(Message::parse(&bytes).as_ref(), Ok(&message), "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(Message::parse(&bytes).unwrap().to_bytes(), bytes);
});
