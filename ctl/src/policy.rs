//! The health and failure-policy keys of a config file: `restart`,
//! `success_codes`, `no_restart_codes`, `give_up`, `heartbeat`, `liveness`,
//! `readiness` and `after`; parsed and validated, every problem reported.
//!
//! Depends on serde_json only; no I/O.

use serde_json::{Map, Value};

/// When a program that ended on its own is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Whatever the exit (ncolony's behaviour; the default).
    #[default]
    Always,
    /// Only when it failed (an exit code not in `success_codes`, or a signal).
    OnFailure,
    /// Never: it stays stopped once it ends.
    Never,
}

/// Giving up on a program that keeps failing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GiveUp {
    /// This many failures …
    pub failures: u32,
    /// … within this many seconds make the program `failed`.
    pub within: f64,
    /// Seconds after which a failed program is tried again (`None`: only
    /// `ctl restart` or `ctl start` brings it back).
    pub cooldown: Option<f64>,
}

/// SLAMon-style agent liveness: the program touches a heartbeat file.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// The heartbeat file (default: `STATUS/.heartbeat/NAME` in colony's
    /// status directory; programs find it in `COLONY_HEARTBEAT_FILE`).
    pub file: Option<String>,
    /// Seconds between two checks (default 60).
    pub poll: f64,
    /// Seconds without a beat after which the program is lost and
    /// restarted (default 300).
    pub lost_after: f64,
    /// Seconds without a beat after which it is dropped from the fleet
    /// view and no longer restarted for it (default 3600).
    pub drop_after: f64,
}

/// What a probe tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// An HTTP GET; any status from 200 to 399 passes.
    Http {
        /// Host (an IP address or `localhost`).
        host: String,
        /// Port.
        port: u16,
        /// Path and query, starting with `/`.
        path: String,
    },
    /// A TCP connection that succeeds.
    Tcp {
        /// Host (an IP address or `localhost`).
        host: String,
        /// Port.
        port: u16,
    },
    /// A command that exits 0 (argv; run with the program's environment).
    Command(Vec<String>),
}

/// A liveness or readiness check, like a Kubernetes probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// What to try.
    pub action: ProbeAction,
    /// Seconds between two tries (default 10).
    pub period: f64,
    /// Seconds a try may take (default 1).
    pub timeout: f64,
    /// Consecutive failures that make the verdict (default 3).
    pub failure_threshold: u32,
    /// Seconds after the start before the first try (default 0).
    pub initial_delay: f64,
}

/// How a program says it is ready.
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    /// It writes a newline to this file descriptor (s6's notification-fd).
    Fd(i32),
    /// It passes this probe.
    Probe(Probe),
}

/// Every policy key of one spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policies {
    /// `restart`, if given (the default is `always`, or `never` for a
    /// critical program).
    pub restart: Option<RestartPolicy>,
    /// `success_codes` (default `[0]`).
    pub success_codes: Vec<i32>,
    /// `no_restart_codes`.
    pub no_restart_codes: Vec<i32>,
    /// `give_up`.
    pub give_up: Option<GiveUp>,
    /// `heartbeat`.
    pub heartbeat: Option<Heartbeat>,
    /// `liveness`.
    pub liveness: Option<Probe>,
    /// `readiness`.
    pub readiness: Option<Readiness>,
    /// `after`: programs that must be ready first.
    pub after: Vec<String>,
}

struct Check<'a> {
    problems: &'a mut Vec<String>,
}

impl Check<'_> {
    fn bad(&mut self, key: &str, what: impl std::fmt::Display) {
        self.problems.push(format!("\"{key}\": {what}"));
    }

    fn num(&mut self, obj: &Map<String, Value>, prefix: &str, key: &str, default: f64, positive: bool) -> f64 {
        match obj.get(key) {
            None => default,
            Some(v) => match v.as_f64() {
                Some(n) if n.is_finite() && (n > 0.0 || (!positive && n >= 0.0)) => n,
                _ => {
                    let want = if positive { "a positive number" } else { "a non-negative number" };
                    self.bad(&format!("{prefix}.{key}"), format!("expected {want} of seconds, found {v}"));
                    default
                }
            },
        }
    }

    fn count(&mut self, obj: &Map<String, Value>, prefix: &str, key: &str, default: u32) -> u32 {
        match obj.get(key) {
            None => default,
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n >= 1 => n,
                _ => {
                    self.bad(&format!("{prefix}.{key}"), format!("expected a whole number of at least 1, found {v}"));
                    default
                }
            },
        }
    }

    fn codes(&mut self, v: Option<&Value>, key: &str, default: &[i32]) -> Vec<i32> {
        let Some(v) = v else { return default.to_vec() };
        let list = v.as_array().map(|a| {
            a.iter().map(|c| c.as_i64().and_then(|n| i32::try_from(n).ok()).filter(|n| (0..=255).contains(n))).collect()
        });
        match list.and_then(|l: Vec<Option<i32>>| l.into_iter().collect::<Option<Vec<i32>>>()) {
            Some(codes) => codes,
            None => {
                self.bad(key, format!("expected an array of exit codes (0 to 255), found {v}"));
                default.to_vec()
            }
        }
    }

    fn object<'v>(&mut self, v: &'v Value, key: &str, example: &str) -> Option<&'v Map<String, Value>> {
        let obj = v.as_object();
        if obj.is_none() {
            self.bad(key, format!("expected an object like {example}, found {v}"));
        }
        obj
    }

    fn probe(&mut self, obj: &Map<String, Value>, key: &str) -> Option<Probe> {
        let actions: Vec<&str> = ["http", "tcp", "command"].into_iter().filter(|k| obj.contains_key(*k)).collect();
        let action = match actions.as_slice() {
            ["http"] => match obj["http"].as_str().map(parse_http_url) {
                Some(Ok((host, port, path))) => Some(ProbeAction::Http { host, port, path }),
                Some(Err(e)) => {
                    self.bad(&format!("{key}.http"), e);
                    None
                }
                None => {
                    self.bad(&format!("{key}.http"), "expected a URL like \"http://127.0.0.1:8080/health\"");
                    None
                }
            },
            ["tcp"] => match obj["tcp"].as_str().map(parse_host_port) {
                Some(Ok((host, port))) => Some(ProbeAction::Tcp { host, port }),
                Some(Err(e)) => {
                    self.bad(&format!("{key}.tcp"), e);
                    None
                }
                None => {
                    self.bad(&format!("{key}.tcp"), "expected \"HOST:PORT\"");
                    None
                }
            },
            ["command"] => {
                let argv: Option<Vec<String>> = obj["command"]
                    .as_array()
                    .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
                    .filter(|a: &Vec<String>| !a.is_empty() && !a[0].is_empty());
                if argv.is_none() {
                    self.bad(&format!("{key}.command"), "expected a non-empty array of strings");
                }
                argv.map(ProbeAction::Command)
            }
            [] => {
                self.bad(key, "needs one of \"http\", \"tcp\" or \"command\"");
                None
            }
            _ => {
                self.bad(key, "give only one of \"http\", \"tcp\" and \"command\"");
                None
            }
        };
        let period = self.num(obj, key, "period", 10.0, true);
        let timeout = self.num(obj, key, "timeout", 1.0, true);
        let failure_threshold = self.count(obj, key, "failure_threshold", 3);
        let initial_delay = self.num(obj, key, "initial_delay", 0.0, false);
        Some(Probe { action: action?, period, timeout, failure_threshold, initial_delay })
    }
}

/// Splits `HOST:PORT` (IPv6 as `[::1]:80`).
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(|| format!("{s:?}: expected [ADDRESS]:PORT"))?;
        (h, p)
    } else {
        s.rsplit_once(':').ok_or_else(|| format!("{s:?}: expected HOST:PORT"))?
    };
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("{s:?}: bad port"))?;
    if host.is_empty() {
        return Err(format!("{s:?}: missing host"));
    }
    if host != "localhost" && host.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("{s:?}: the host must be an IP address or localhost (colony resolves no names)"));
    }
    Ok((host.to_string(), port))
}

/// Splits `http://HOST[:PORT][/PATH]`.
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority.contains(']') || authority.matches(':').count() == 1 {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let (host, port) = parse_host_port(&with_port).map_err(|e| format!("{url:?}: {e}"))?;
    if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?}: the path may not contain spaces"));
    }
    Ok((host, port, path.to_string()))
}

/// Reads the policy keys of `raw`, adding problems to `problems`.
pub(crate) fn parse(raw: &Map<String, Value>, problems: &mut Vec<String>) -> Policies {
    let mut c = Check { problems };
    let restart = match raw.get("restart") {
        None => None,
        Some(Value::String(s)) if s == "always" => Some(RestartPolicy::Always),
        Some(Value::String(s)) if s == "on-failure" => Some(RestartPolicy::OnFailure),
        Some(Value::String(s)) if s == "never" => Some(RestartPolicy::Never),
        Some(v) => {
            c.bad("restart", format!("expected \"always\", \"on-failure\" or \"never\", found {v}"));
            None
        }
    };
    let success_codes = c.codes(raw.get("success_codes"), "success_codes", &[0]);
    let no_restart_codes = c.codes(raw.get("no_restart_codes"), "no_restart_codes", &[]);
    let give_up = raw.get("give_up").and_then(|v| {
        let obj = c.object(v, "give_up", r#"{"failures": 5, "within": 60, "cooldown": 600}"#)?;
        let failures = c.count(obj, "give_up", "failures", 5);
        let within = c.num(obj, "give_up", "within", 60.0, true);
        let cooldown = match obj.get("cooldown") {
            None | Some(Value::Null) => None,
            Some(_) => Some(c.num(obj, "give_up", "cooldown", 600.0, true)),
        };
        Some(GiveUp { failures, within, cooldown })
    });
    let heartbeat = raw.get("heartbeat").and_then(|v| {
        let obj = c.object(v, "heartbeat", r#"{"lost_after": 300}"#)?;
        let file = match obj.get("file") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(v) => {
                c.bad("heartbeat.file", format!("expected a path, found {v}"));
                None
            }
        };
        let poll = c.num(obj, "heartbeat", "poll", 60.0, true);
        let lost_after = c.num(obj, "heartbeat", "lost_after", 300.0, true);
        let drop_after = c.num(obj, "heartbeat", "drop_after", 3600.0, true);
        if drop_after < lost_after {
            c.bad("heartbeat.drop_after", "must not be less than lost_after");
        }
        Some(Heartbeat { file, poll, lost_after, drop_after })
    });
    let liveness = raw.get("liveness").and_then(|v| {
        let obj = c.object(v, "liveness", r#"{"http": "http://127.0.0.1:8080/health"}"#)?;
        c.probe(obj, "liveness")
    });
    let readiness = raw.get("readiness").and_then(|v| {
        let obj = c.object(v, "readiness", r#"{"fd": 3}"#)?;
        if let Some(fd) = obj.get("fd") {
            if obj.len() > 1 {
                c.bad("readiness", "\"fd\" takes no other keys");
            }
            return match fd.as_u64().filter(|n| (3..=1023).contains(n)) {
                Some(n) => Some(Readiness::Fd(n as i32)),
                None => {
                    c.bad("readiness.fd", format!("expected a file descriptor from 3 to 1023, found {fd}"));
                    None
                }
            };
        }
        c.probe(obj, "readiness").map(Readiness::Probe)
    });
    let after = match raw.get("after") {
        None => Vec::new(),
        Some(v) => match v.as_array().and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect()) {
            Some(names) => names,
            None => {
                c.bad("after", format!("expected an array of program names, found {v}"));
                Vec::new()
            }
        },
    };
    Policies { restart, success_codes, no_restart_codes, give_up, heartbeat, liveness, readiness, after }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(v: Value) -> (Policies, Vec<String>) {
        let mut problems = Vec::new();
        let p = parse(v.as_object().unwrap(), &mut problems);
        (p, problems)
    }

    #[test]
    fn defaults() {
        let (p, problems) = parse_json(json!({"args": ["x"]}));
        assert!(problems.is_empty());
        assert_eq!(p.restart, None);
        assert_eq!(p.success_codes, [0]);
        assert_eq!(p.give_up, None);
    }

    #[test]
    fn reads_every_key() {
        let (p, problems) = parse_json(json!({
            "restart": "on-failure", "success_codes": [0, 2], "no_restart_codes": [78],
            "give_up": {"failures": 3, "within": 10, "cooldown": 60},
            "heartbeat": {"lost_after": 30},
            "liveness": {"http": "http://127.0.0.1:8080/healthz?x=1", "period": 2, "failure_threshold": 2},
            "readiness": {"fd": 3},
            "after": ["db"]
        }));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.restart, Some(RestartPolicy::OnFailure));
        assert_eq!(p.give_up, Some(GiveUp { failures: 3, within: 10.0, cooldown: Some(60.0) }));
        assert_eq!(p.heartbeat.unwrap().drop_after, 3600.0);
        let live = p.liveness.unwrap();
        assert_eq!(
            live.action,
            ProbeAction::Http { host: "127.0.0.1".into(), port: 8080, path: "/healthz?x=1".into() }
        );
        assert_eq!((live.period, live.timeout, live.failure_threshold), (2.0, 1.0, 2));
        assert_eq!(p.readiness, Some(Readiness::Fd(3)));
        assert_eq!(p.after, ["db"]);
    }

    #[test]
    fn reports_every_problem() {
        let (_, problems) = parse_json(json!({
            "restart": "sometimes", "success_codes": [300], "give_up": {"failures": 0},
            "liveness": {"http": "https://x", "tcp": "a:1"}, "readiness": {"fd": 1}, "after": "db",
            "heartbeat": {"lost_after": 100, "drop_after": 10}
        }));
        assert_eq!(problems.len(), 7, "{problems:#?}");
    }

    #[test]
    fn urls_and_addresses() {
        assert_eq!(parse_http_url("http://localhost/x"), Ok(("localhost".into(), 80, "/x".into())));
        assert_eq!(parse_http_url("http://[::1]:81"), Ok(("::1".into(), 81, "/".into())));
        assert!(parse_http_url("http://example.com/").is_err());
        assert_eq!(parse_host_port("127.0.0.1:5432"), Ok(("127.0.0.1".into(), 5432)));
        assert!(parse_host_port("127.0.0.1:0").is_err());
        assert!(parse_host_port("127.0.0.1").is_err());
    }
}
