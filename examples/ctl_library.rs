//! Driving colony (or ncolony) from Rust with the `colony-ctl` library.
//!
//! ```text
//! cargo run --example ctl_library                    # in a temporary directory
//! cargo run --example ctl_library -- CONFIG MESSAGES # in existing directories
//! ```
//!
//! The example configures one program, asks for restarts and reads the
//! configuration back: everything `colony ctl` does, as library calls.
//! Nothing here needs a running supervisor; it only writes files.

use colony_ctl::{Places, ProgramName, ProgramSpec};
use std::error::Error;

fn main() {
    // Errors from the library display as one clear line.
    if let Err(e) = run() {
        eprintln!("ctl_library: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    // Where to write: the two directories from the command line, or two
    // fresh ones in a temporary directory (removed when `_tmp` is dropped).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (places, _tmp) = match args.as_slice() {
        [config, messages] => (Places::new(config, messages), None),
        [] => {
            let tmp = tempfile::tempdir()?;
            let places = Places::new(tmp.path().join("config"), tmp.path().join("messages"));
            std::fs::create_dir(&places.config)?;
            std::fs::create_dir(&places.messages)?;
            (places, Some(tmp))
        }
        _ => {
            eprintln!("usage: ctl_library [CONFIG MESSAGES]");
            std::process::exit(2);
        }
    };

    // A name is also a file name, so it is validated: no '/', no leading
    // '.', no '.new' suffix.
    let name = ProgramName::new("library-example")?;
    assert!(ProgramName::new("../etc/passwd").is_err());

    // The builder writes keys in the order ncolony's `ctl add` does, so the
    // file is byte-for-byte what `python -m ncolony ctl add` would write.
    let spec = ProgramSpec::builder("/bin/sh")
        .args(["-c", "echo hello from $NCOLONY_NAME; exec sleep 3600"])
        .env("GREETING", "hello")
        .env_inherit("HOME")
        .group("demo")
        .build()?;

    // `add` writes CONFIG/library-example atomically (temporary file +
    // rename): the supervisor starts the program, or restarts it if the
    // file changed.
    places.add(&name, &spec)?;
    let file = places.config.join(name.as_str());
    println!("wrote {}:\n  {}", file.display(), std::fs::read_to_string(&file)?);

    // Each request is one file in the messages directory; the returned path
    // is the new message. `restart` checks that the program exists.
    let restart = places.restart(&name)?;
    let group = places.restart_group("demo")?;
    for message in [restart, group] {
        println!("sent {}:\n  {}", message.display(), std::fs::read_to_string(&message)?);
    }

    // Read everything back, sorted by name. A file that does not parse
    // comes with the reason instead of stopping the listing.
    for (name, spec) in places.programs()? {
        match spec {
            Ok(spec) => println!("program {name}: {:?} groups {:?}", spec.args(), spec.groups()),
            Err(e) => println!("program {name}: invalid: {e}"),
        }
    }
    println!("{} message(s) pending", places.pending_messages()?.len());
    Ok(())
}
