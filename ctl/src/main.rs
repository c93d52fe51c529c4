//! `colony-ctl`: the stand-alone control command (same as `colony ctl`).
fn main() {
    std::process::exit(colony_ctl::cli::run("colony-ctl", std::env::args_os()));
}
