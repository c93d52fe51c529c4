//! Jobs hosted as supervised children (DESIGN.md §6): separate subcommands
//! that talk to the supervisor only through files.

pub mod maintenance;
pub mod manage;
pub mod scheduler;

/// Exit code: success (and after SIGTERM). The jobs speak the sysexits
/// vocabulary of DESIGN.md §7; each job's man page says when it uses which.
pub const EXIT_OK: i32 = 0;
/// Exit code: bad flags or values.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: a file given on the command line has bad content (EX_DATAERR).
pub const EXIT_DATAERR: i32 = 65;
/// Exit code: postponed (EX_UNAVAILABLE, fc.maintenance's 69).
pub const EXIT_POSTPONE: i32 = 69;
/// Exit code: internal error, e.g. signals cannot be set up (EX_SOFTWARE).
pub const EXIT_SOFTWARE: i32 = 70;
/// Exit code: a file or directory cannot be created or used (EX_CANTCREAT).
pub const EXIT_CANTCREAT: i32 = 73;
/// Exit code: try again later (EX_TEMPFAIL).
pub const EXIT_TEMPFAIL: i32 = 75;

/// A rejected flag or file, with its exit code.
#[derive(Debug)]
pub struct Invalid {
    /// [`EXIT_USAGE`] or [`EXIT_DATAERR`].
    pub code: i32,
    /// One line.
    pub msg: String,
}

/// A usage error.
pub(crate) fn usage(msg: impl Into<String>) -> Invalid {
    Invalid { code: EXIT_USAGE, msg: msg.into() }
}
