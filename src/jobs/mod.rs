//! Jobs hosted as supervised children (DESIGN.md §6): separate subcommands
//! that talk to the supervisor only through files.

pub mod maintenance;
pub mod manage;
pub mod scheduler;
