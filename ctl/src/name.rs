//! Validated program names: the one place that says which file names are programs.
//!
//! Depends on nothing but `std`.

use std::fmt;

/// The name of a supervised program, which is also its file name in the
/// config directory.
///
/// A valid name is non-empty, contains no `/` and no NUL byte, does not start
/// with `.` (so it is never `.` or `..` and never a hidden or temporary file),
/// does not end in `.new` (the mark of a file being written), and is at most
/// 200 bytes long.
///
/// ```
/// use colony_ctl::ProgramName;
/// assert!(ProgramName::new("web").is_ok());
/// assert!(ProgramName::new("web-1.worker").is_ok());
/// assert!(ProgramName::new("../etc").is_err());
/// assert!(ProgramName::new(".hidden").is_err());
/// assert!(ProgramName::new("half.new").is_err());
/// ```
///
/// Cloning is cheap (a shared string): colony keeps a program's name in
/// several tables.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProgramName(std::sync::Arc<str>);

/// Why a string is not a valid [`ProgramName`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The empty string.
    Empty,
    /// Contains a `/`.
    Slash,
    /// Contains a NUL byte.
    Nul,
    /// Starts with `.` (this covers `.` and `..`).
    LeadingDot,
    /// Ends in `.new`, the suffix of temporary files.
    NewSuffix,
    /// Longer than [`ProgramName::MAX_LEN`] bytes.
    TooLong,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "a name may not be empty",
            NameError::Slash => "a name may not contain '/'",
            NameError::Nul => "a name may not contain a NUL byte",
            NameError::LeadingDot => "a name may not start with '.'",
            NameError::NewSuffix => "a name may not end in '.new' (reserved for temporary files)",
            NameError::TooLong => "a name may not be longer than 200 bytes",
        })
    }
}

impl std::error::Error for NameError {}

impl ProgramName {
    /// The longest name, in bytes: a file name (255 bytes at most) must
    /// still fit with the temporary-file marks around it.
    pub const MAX_LEN: usize = 200;

    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<ProgramName, NameError> {
        let name = name.into();
        check(&name)?;
        Ok(ProgramName(name.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        Err(NameError::Empty)
    } else if name.contains('/') {
        Err(NameError::Slash)
    } else if name.contains('\0') {
        Err(NameError::Nul)
    } else if name.starts_with('.') {
        Err(NameError::LeadingDot)
    } else if name.ends_with(".new") {
        Err(NameError::NewSuffix)
    } else if name.len() > ProgramName::MAX_LEN {
        Err(NameError::TooLong)
    } else {
        Ok(())
    }
}

/// Whether a directory entry is skipped by every reader: dot-files
/// (including colony's temporary files) and names ending in `.new`
/// (ncolony's temporary files).
pub fn is_ignored_file_name(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".new")
}

impl std::str::FromStr for ProgramName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        ProgramName::new(s)
    }
}

impl TryFrom<String> for ProgramName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        ProgramName::new(s)
    }
}

impl TryFrom<&str> for ProgramName {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Self, NameError> {
        ProgramName::new(s)
    }
}

impl AsRef<str> for ProgramName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ProgramName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProgramName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProgramName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn documented_rule(s: &str) -> bool {
        !s.is_empty() && !s.contains('/') && !s.contains('\0') && !s.starts_with('.') && !s.ends_with(".new")
    }

    #[test]
    fn examples() {
        for good in ["a", "web", "x.y", "new", "a.news", "é", "a b", "-x", "a..b", "foo.new2"] {
            assert!(ProgramName::new(good).is_ok(), "{good:?} should be accepted");
        }
        let bad = [
            ("", NameError::Empty),
            (".", NameError::LeadingDot),
            ("..", NameError::LeadingDot),
            (".x", NameError::LeadingDot),
            ("a/b", NameError::Slash),
            ("/", NameError::Slash),
            ("a\0b", NameError::Nul),
            ("x.new", NameError::NewSuffix),
            (".new", NameError::LeadingDot),
        ];
        for (name, err) in bad {
            assert_eq!(ProgramName::new(name), Err(err), "{name:?}");
        }
    }

    proptest! {
        #[test]
        fn accepts_exactly_the_documented_set(s in "[a-z./\\x00é-]{0,8}(\\.new)?") {
            prop_assert_eq!(ProgramName::new(s.clone()).is_ok(), documented_rule(&s));
        }

        #[test]
        fn valid_names_are_never_ignored_files(s in "\\PC{0,12}") {
            if let Ok(name) = ProgramName::new(s) {
                prop_assert!(!is_ignored_file_name(name.as_str()));
            }
        }
    }
}
