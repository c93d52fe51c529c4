//! The library's error type: what failed and where.
//!
//! Depends on the spec and name modules only.

use crate::name::NameError;
use crate::spec::SpecError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading or writing protocol files.
#[derive(Debug)]
pub enum Error {
    /// A directory that must exist does not.
    NoDirectory {
        /// "config" or "messages".
        role: &'static str,
        /// The directory.
        path: PathBuf,
    },
    /// No config file has this name.
    UnknownProgram {
        /// The name asked for.
        name: String,
        /// The config directory looked in.
        dir: PathBuf,
    },
    /// A name that is not a valid program name.
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: NameError,
    },
    /// A program spec that does not validate.
    Spec(SpecError),
    /// A system call failed.
    Io {
        /// What was being done, e.g. "write".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoDirectory { role, path } => write!(f, "{role} directory {} does not exist", path.display()),
            Error::UnknownProgram { name, dir } => {
                write!(f, "no program named {name:?} in {}", dir.display())
            }
            Error::InvalidName { name, reason } => write!(f, "invalid program name {name:?}: {reason}"),
            Error::Spec(e) => e.fmt(f),
            Error::Io { action, path, source } => write!(f, "cannot {action} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Spec(e) => Some(e),
            Error::InvalidName { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

impl From<SpecError> for Error {
    fn from(e: SpecError) -> Error {
        Error::Spec(e)
    }
}
