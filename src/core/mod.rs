//! Pure decisions: backoff, the supervisor's state machines and directory
//! diffs. Nothing here reads the clock or calls the operating system.

pub mod backoff;
pub mod diff;
pub mod health;
pub mod supervisor;
