//! colony-ctl: the colony file protocol, shared by the supervisor, the
//! `colony ctl` / `colony-ctl` commands and any program that wants to drive
//! colony (or ncolony) by writing files.
//!
//! Depends on `serde_json` (and `clap` for the optional `cli` feature); no
//! event loop, no system calls beyond plain file I/O.
//!
//! A colony installation is two directories ([`Places`]):
//!
//! * the **config directory** holds one JSON file per program, named after
//!   the program ([`ProgramName`]) and parsed into a [`ProgramSpec`];
//! * the **messages directory** holds one JSON file per request
//!   ([`Message`]), consumed once by the supervisor in name order.
//!
//! Every file is written through [`write_atomic`], so a reader never sees a
//! partial file. The formats are described in `man/colony.5`.
//!
//! ```
//! use colony_ctl::{Places, ProgramName, ProgramSpec};
//! # let tmp = tempfile::tempdir().unwrap();
//! # let config = tmp.path().join("config");
//! # let messages = tmp.path().join("messages");
//! # std::fs::create_dir(&config).unwrap();
//! # std::fs::create_dir(&messages).unwrap();
//! let places = Places::new(&config, &messages);
//! let name = ProgramName::new("sleeper").unwrap();
//! let spec = ProgramSpec::builder("/bin/sleep").arg("1000").build().unwrap();
//! places.add(&name, &spec).unwrap();
//! assert_eq!(std::fs::read(config.join("sleeper")).unwrap(), br#"{"args": ["/bin/sleep", "1000"]}"#);
//! places.restart_all().unwrap();
//! ```

#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
mod error;
mod files;
mod json;
pub mod maintenance;
mod message;
mod name;
mod places;
mod policy;
mod spec;
mod status;
pub mod time;

pub use error::Error;
pub use files::{list_messages, scan_config_dir, write_atomic, write_volatile, ConfigScan};
pub use json::to_python_json;
pub use maintenance::{Activity, Attempt, Request, RequestState, Spool, SpoolError};
pub use message::{message_name, new_message_name, Message, MessageError};
pub use name::{is_ignored_file_name, NameError, ProgramName};
pub use places::{ConfiguredProgram, Places};
pub use policy::{
    parse_host_port, parse_http_url, GiveUp, Heartbeat, Policies, Probe, ProbeAction, Readiness, RestartPolicy,
};
pub use spec::{
    parse_signal, signal_name, Beatcheck, Limit, LogFile, ProgramSpec, SpecBuilder, SpecError, KNOWN_KEYS, SIGNALS,
};
pub use status::{
    read_program_status, read_status_dir, DaemonStatus, LastExit, ProgramStatus, StateName, StatusSnapshot,
    DAEMON_FILE, DEFAULT_STATUS_SUBDIR,
};
