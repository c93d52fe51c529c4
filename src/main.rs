//! `colony`: the supervisor (`colony run`), the control commands
//! (`colony ctl …`) and the hosted jobs. A thin entry point: it only picks
//! the subcommand and hands argv over.

use std::ffi::OsString;

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "ctl") {
        // `colony ctl …` is exactly `colony-ctl …`.
        let rest = std::iter::once(OsString::from("colony ctl")).chain(argv.into_iter().skip(2));
        std::process::exit(colony_ctl::cli::run("colony ctl", rest));
    }
    std::process::exit(colony::cli::main(argv));
}
