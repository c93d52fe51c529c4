//! Running probes without blocking the loop: TCP connects and HTTP GETs as
//! non-blocking sockets in the mio loop, commands as children reaped by the
//! loop, each with a timeout deadline.
//!
//! Depends on mio, std::process and the spawn module.

use crate::core::supervisor::{Pid, ProbeRequest};
use colony_ctl::ProbeAction;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

struct NetProbe {
    req: ProbeRequest,
    stream: TcpStream,
    deadline: Instant,
    /// For HTTP: the request still to send, and the response so far.
    http: Option<(Vec<u8>, Vec<u8>)>,
}

/// Probes in flight.
#[derive(Default)]
pub struct Probes {
    net: HashMap<Token, NetProbe>,
    cmds: HashMap<Pid, (ProbeRequest, Instant)>,
}

/// A finished probe: the request and whether it passed.
pub type Finished = (ProbeRequest, bool);

fn addr(host: &str, port: u16) -> SocketAddr {
    let ip = host.parse::<IpAddr>().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, port)
}

impl Probes {
    /// Starts `req`. `token` is a fresh token for a socket; `spawn_cmd`
    /// starts a command probe and returns its pid. A probe that cannot even
    /// start is returned as failed at once.
    pub fn start(
        &mut self,
        req: ProbeRequest,
        token: Token,
        registry: &Registry,
        now: Instant,
        spawn_cmd: impl FnOnce(&[String]) -> io::Result<Pid>,
    ) -> Option<Finished> {
        let deadline = now + Duration::from_secs_f64(req.probe.timeout);
        let (host, port, http) = match &req.probe.action {
            ProbeAction::Command(argv) => {
                return match spawn_cmd(argv) {
                    Ok(pid) => {
                        self.cmds.insert(pid, (req, deadline));
                        None
                    }
                    Err(e) => {
                        log::warn!("{}: cannot run its check {:?}: {e}", req.name, argv[0]);
                        Some((req, false))
                    }
                };
            }
            ProbeAction::Tcp { host, port } => (host.clone(), *port, None),
            ProbeAction::Http { host, port, path } => {
                let request = format!(
                    "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: colony/{}\r\nConnection: close\r\n\r\n",
                    env!("CARGO_PKG_VERSION")
                );
                (host.clone(), *port, Some((request.into_bytes(), Vec::new())))
            }
        };
        let mut stream = match TcpStream::connect(addr(&host, port)) {
            Ok(s) => s,
            Err(_) => return Some((req, false)),
        };
        if registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE).is_err() {
            return Some((req, false));
        }
        self.net.insert(token, NetProbe { req, stream, deadline, http });
        None
    }

    /// Whether `token` belongs to a probe.
    pub fn owns(&self, token: Token) -> bool {
        self.net.contains_key(&token)
    }

    /// A socket event: returns the verdict once there is one.
    pub fn ready(&mut self, token: Token, registry: &Registry) -> Option<Finished> {
        let p = self.net.get_mut(&token)?;
        let verdict = step(p);
        if verdict.is_some() {
            let mut p = self.net.remove(&token)?;
            let _ = registry.deregister(&mut p.stream);
            return verdict.map(|ok| (p.req, ok));
        }
        None
    }

    /// A child was reaped: if it was a command probe, its verdict.
    pub fn reaped(&mut self, pid: Pid, code: i32) -> Option<Finished> {
        self.cmds.remove(&pid).map(|(req, _)| (req, code == 0))
    }

    /// Probes whose time is up fail; their commands are killed.
    pub fn expire(&mut self, now: Instant, registry: &Registry) -> Vec<Finished> {
        let mut out = Vec::new();
        let late: Vec<Token> = self.net.iter().filter(|(_, p)| p.deadline <= now).map(|(t, _)| *t).collect();
        for t in late {
            if let Some(mut p) = self.net.remove(&t) {
                let _ = registry.deregister(&mut p.stream);
                out.push((p.req, false));
            }
        }
        let late: Vec<Pid> = self.cmds.iter().filter(|(_, (_, d))| *d <= now).map(|(p, _)| *p).collect();
        for pid in late {
            // The command keeps its pid entry until reaped, under no name.
            if let Some((req, _)) = self.cmds.remove(&pid) {
                // SAFETY: kill(2) on the process group of a child not yet reaped.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                out.push((req, false));
            }
        }
        out
    }

    /// The earliest timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.net.values().map(|p| p.deadline).chain(self.cmds.values().map(|(_, d)| *d)).min()
    }
}

/// Advances one socket probe; `Some(passed)` once decided.
fn step(p: &mut NetProbe) -> Option<bool> {
    if let Ok(Some(_)) | Err(_) = p.stream.take_error() {
        return Some(false);
    }
    match p.stream.peer_addr() {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
        Err(_) => return Some(false),
    }
    let Some((request, response)) = &mut p.http else { return Some(true) };
    while !request.is_empty() {
        match p.stream.write(request) {
            Ok(n) => {
                request.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Some(false),
        }
    }
    let mut buf = [0u8; 512];
    loop {
        match p.stream.read(&mut buf) {
            Ok(0) => return Some(http_status_ok(response).unwrap_or(false)),
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if let Some(ok) = http_status_ok(response) {
                    return Some(ok);
                }
                if response.len() > 8192 {
                    return Some(false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Some(false),
        }
    }
}

/// `Some(passed)` once the status line is complete: 200 to 399 pass.
fn http_status_ok(response: &[u8]) -> Option<bool> {
    let end = response.iter().position(|&b| b == b'\n')?;
    let line = String::from_utf8_lossy(&response[..end]);
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let code: u16 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    Some(version.starts_with("HTTP/") && (200..400).contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        assert_eq!(http_status_ok(b"HTTP/1.1 200 OK\r\n"), Some(true));
        assert_eq!(http_status_ok(b"HTTP/1.0 302 Found\r\n"), Some(true));
        assert_eq!(http_status_ok(b"HTTP/1.1 503 Unavailable\r\n"), Some(false));
        assert_eq!(http_status_ok(b"HTTP/1.1 200"), None);
        assert_eq!(http_status_ok(b"garbage\n"), Some(false));
    }
}
