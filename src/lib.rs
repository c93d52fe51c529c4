//! colony: a process supervisor for one machine, controlled through files.
//!
//! The crate is split three ways (see DESIGN.md): pure decisions in
//! [`core`], the operating-system edge in `runtime`, and the command line in
//! [`cli`]. It depends on `colony-ctl` for every file format.

pub mod check;
pub mod cli;
pub mod core;
pub mod jobs;
pub mod logging;
mod runtime;
pub mod settings;
pub mod sys;
