//! `Places`: the config and messages directories, and the operations the
//! ctl commands perform on them.
//!
//! Depends on the files, spec, message and name modules.

use crate::error::Error;
use crate::files::{list_messages, scan_config_dir, write_atomic};
use crate::message::{new_message_name, Message};
use crate::name::ProgramName;
use crate::spec::{ProgramSpec, SpecError};
use std::io;
use std::path::{Path, PathBuf};

/// A program read back from the config directory: its name and its spec,
/// or why its file does not parse.
pub type ConfiguredProgram = (ProgramName, Result<ProgramSpec, SpecError>);

/// The two directories that make up a colony (or ncolony) installation.
///
/// ```
/// use colony_ctl::{Places, ProgramName, ProgramSpec};
/// # let tmp = tempfile::tempdir().unwrap();
/// # let (config, messages) = (tmp.path().join("config"), tmp.path().join("messages"));
/// # std::fs::create_dir(&config).unwrap();
/// # std::fs::create_dir(&messages).unwrap();
/// let places = Places::new(&config, &messages);
/// let web = ProgramName::new("web").unwrap();
/// places.add(&web, &ProgramSpec::builder("python3").args(["-m", "http.server"]).build().unwrap()).unwrap();
/// places.restart(&web).unwrap();
/// let programs = places.programs().unwrap();
/// assert_eq!(programs[0].0, web);
/// assert_eq!(programs[0].1.as_ref().unwrap().args()[0], "python3");
/// places.remove(&web).unwrap();
/// assert!(places.remove(&web).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    /// The config directory: one file per program.
    pub config: PathBuf,
    /// The messages directory: one file per request.
    pub messages: PathBuf,
}

impl Places {
    /// Names the two directories. Nothing is checked until they are used.
    pub fn new(config: impl Into<PathBuf>, messages: impl Into<PathBuf>) -> Places {
        Places { config: config.into(), messages: messages.into() }
    }

    fn io(&self, action: &'static str, role: &'static str, dir: &Path, path: PathBuf, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() {
            Error::NoDirectory { role, path: dir.to_path_buf() }
        } else {
            Error::Io { action, path, source: e }
        }
    }

    /// The status directory the supervisor keeps by default:
    /// `.status` inside the messages directory.
    pub fn default_status_dir(&self) -> PathBuf {
        self.messages.join(crate::DEFAULT_STATUS_SUBDIR)
    }

    /// Writes (or replaces) the config file of `name`. The supervisor starts
    /// the program, or restarts it if the content changed.
    pub fn add(&self, name: &ProgramName, spec: &ProgramSpec) -> Result<(), Error> {
        write_atomic(&self.config, name.as_str(), &spec.to_bytes())
            .map_err(|e| self.io("write", "config", &self.config, self.config.join(name.as_str()), e))
    }

    /// Removes the config file of `name`; the supervisor stops the program.
    /// Fails with [`Error::UnknownProgram`] if there is no such file.
    pub fn remove(&self, name: &ProgramName) -> Result<(), Error> {
        let path = self.config.join(name.as_str());
        std::fs::remove_file(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound && self.config.is_dir() {
                Error::UnknownProgram { name: name.to_string(), dir: self.config.clone() }
            } else {
                self.io("remove", "config", &self.config, path, e)
            }
        })
    }

    /// Asks the supervisor to restart `name`. Fails with
    /// [`Error::UnknownProgram`] if `name` has no config file.
    pub fn restart(&self, name: &ProgramName) -> Result<PathBuf, Error> {
        self.require(name)?;
        self.send(&Message::Restart(name.clone()))
    }

    /// Asks the supervisor to stop `name` and keep it stopped until
    /// [`start`](Self::start) or [`restart`](Self::restart).
    pub fn stop(&self, name: &ProgramName) -> Result<PathBuf, Error> {
        self.require(name)?;
        self.send(&Message::Stop(name.clone()))
    }

    /// Asks the supervisor to start `name` (stopped on request, or waiting
    /// in backoff) now.
    pub fn start(&self, name: &ProgramName) -> Result<PathBuf, Error> {
        self.require(name)?;
        self.send(&Message::Start(name.clone()))
    }

    /// Asks the supervisor to send `signal` to the main process of `name`.
    pub fn signal(&self, name: &ProgramName, signal: i32) -> Result<PathBuf, Error> {
        self.require(name)?;
        self.send(&Message::Signal(name.clone(), signal))
    }

    /// Asks the supervisor to restart every program.
    pub fn restart_all(&self) -> Result<PathBuf, Error> {
        self.send(&Message::RestartAll)
    }

    /// Asks the supervisor to restart every program of `group`.
    pub fn restart_group(&self, group: &str) -> Result<PathBuf, Error> {
        self.send(&Message::RestartGroup(group.to_string()))
    }

    /// Writes any message; returns the path of the new message file.
    pub fn send(&self, message: &Message) -> Result<PathBuf, Error> {
        let name = new_message_name();
        write_atomic(&self.messages, &name, &message.to_bytes())
            .map_err(|e| self.io("write", "messages", &self.messages, self.messages.join(&name), e))?;
        Ok(self.messages.join(name))
    }

    /// Reads back one program's config file.
    pub fn program(&self, name: &ProgramName) -> Result<ProgramSpec, Error> {
        self.require(name)?;
        Ok(ProgramSpec::read(&self.config.join(name.as_str()))?)
    }

    /// Reads back every configured program, sorted by name; a file that does
    /// not parse comes with its error. Entries that are not program files
    /// at all (subdirectories, bad names) are left out.
    pub fn programs(&self) -> Result<Vec<ConfiguredProgram>, Error> {
        let scan = scan_config_dir(&self.config)
            .map_err(|e| self.io("read", "config", &self.config, self.config.clone(), e))?;
        Ok(scan
            .files
            .into_iter()
            .map(|(name, bytes)| {
                let spec = ProgramSpec::parse(&bytes).map_err(|e| e.in_file(self.config.join(name.as_str())));
                (name, spec)
            })
            .collect())
    }

    /// The pending message files, in the order the supervisor handles them.
    pub fn pending_messages(&self) -> Result<Vec<PathBuf>, Error> {
        list_messages(&self.messages).map_err(|e| self.io("read", "messages", &self.messages, self.messages.clone(), e))
    }

    fn require(&self, name: &ProgramName) -> Result<(), Error> {
        if !self.config.is_dir() {
            return Err(Error::NoDirectory { role: "config", path: self.config.clone() });
        }
        if self.config.join(name.as_str()).is_file() {
            Ok(())
        } else {
            Err(Error::UnknownProgram { name: name.to_string(), dir: self.config.clone() })
        }
    }
}
