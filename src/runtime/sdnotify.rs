//! systemd's notification protocol: `READY=1` once the first scan has
//! started every program, `STOPPING=1` when shutdown begins, sent as
//! datagrams to `$NOTIFY_SOCKET` when it is set (`Type=notify` units).
//!
//! Depends on std's Unix sockets only.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// A connection to the service manager, if colony runs under one.
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace)
    /// and removes it from colony's environment, so that programs never see
    /// it (their environment is exact anyway).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        // SAFETY: called before any other thread exists.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let bytes = path.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
            None => SocketAddr::from_pathname(std::path::Path::new(&path)),
        };
        let addr = match addr {
            Ok(a) => a,
            Err(e) => {
                log::warn!("NOTIFY_SOCKET {path:?} is not usable: {e}");
                return None;
            }
        };
        match UnixDatagram::unbound() {
            Ok(socket) => Some(Notifier { socket, addr }),
            Err(e) => {
                log::warn!("cannot notify the service manager: {e}");
                None
            }
        }
    }

    /// Sends one state line, e.g. `READY=1`.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            log::warn!("cannot notify the service manager ({state}): {e}");
        }
    }
}
