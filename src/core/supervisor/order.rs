//! Start order: the `after` key. Which programs are ready, which wait, which
//! can never start (unknown names, cycles), and the reverse order at
//! shutdown. Part of the pure supervisor.

use super::{Effect, Program, State, Supervisor};
use colony_ctl::ProgramName;
use std::collections::{BTreeMap, BTreeSet};

impl Supervisor {
    /// Whether `name` runs and is ready.
    pub(super) fn is_ready(&self, name: &str) -> bool {
        self.programs.get(name).is_some_and(|p| matches!(p.state, State::Running { .. }) && p.health.ready)
    }

    /// Whether every program `p` comes after is ready.
    pub(super) fn deps_ready(&self, p: &Program) -> bool {
        p.blocked.is_none() && p.spec.policies().after.iter().all(|d| self.is_ready(d))
    }

    /// Whether a program that comes after `name` still has a process.
    pub(super) fn dependents_alive(&self, name: &str) -> bool {
        self.programs.values().any(|p| {
            p.blocked.is_none()
                && p.spec.policies().after.iter().any(|d| d == name)
                && matches!(p.state, State::Running { .. } | State::Stopping { .. } | State::Starting)
        })
    }

    /// Re-derives which programs can never start (an unknown name or a
    /// cycle in `after`), noting every change.
    pub(super) fn recompute_blocked(&mut self, out: &mut Vec<Effect>) {
        let edges: BTreeMap<&ProgramName, Vec<&str>> = self
            .programs
            .iter()
            .map(|(n, p)| (n, p.spec.policies().after.iter().map(String::as_str).collect()))
            .collect();
        let mut reasons: BTreeMap<ProgramName, String> = BTreeMap::new();
        for (name, deps) in &edges {
            let unknown: Vec<&str> = deps.iter().copied().filter(|d| !self.programs.contains_key(*d)).collect();
            if !unknown.is_empty() {
                reasons.insert((*name).clone(), format!("after: no program named {}", unknown.join(", ")));
            }
        }
        for cycle in cycles(&edges) {
            let text = format!("after: dependency cycle {}", cycle.join(" → "));
            for n in &cycle[..cycle.len() - 1] {
                if let Ok(n) = ProgramName::new(*n) {
                    reasons.entry(n).or_insert_with(|| text.clone());
                }
            }
        }
        let names: Vec<ProgramName> = self.programs.keys().cloned().collect();
        for name in names {
            let Some(p) = self.programs.get_mut(&name) else { continue };
            let new = reasons.remove(&name);
            if p.blocked == new {
                continue;
            }
            match &new {
                Some(why) => out.push(Effect::Note {
                    name: name.clone(),
                    level: log::Level::Error,
                    text: format!("cannot start: {why}"),
                }),
                None => out.push(Effect::Note {
                    name: name.clone(),
                    level: log::Level::Info,
                    text: "its \"after\" list can be satisfied again".into(),
                }),
            }
            p.blocked = new;
        }
    }
}

/// Every cycle of the `after` graph, each as its path with the first name
/// repeated at the end.
fn cycles<'a>(edges: &BTreeMap<&'a ProgramName, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        edges: &BTreeMap<&'a str, &Vec<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        found: &mut Vec<Vec<&'a str>>,
    ) {
        marks.insert(n, Mark::Active);
        stack.push(n);
        for &d in edges.get(n).map(|v| v.as_slice()).unwrap_or(&[]) {
            match marks.get(d) {
                Some(Mark::Active) => {
                    let start = stack.iter().position(|s| *s == d).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[start..].to_vec();
                    cycle.push(d);
                    found.push(cycle);
                }
                Some(Mark::Done) => {}
                None if edges.contains_key(d) => visit(d, edges, marks, stack, found),
                None => {}
            }
        }
        stack.pop();
        marks.insert(n, Mark::Done);
    }
    let by_str: BTreeMap<&str, &Vec<&str>> = edges.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut marks = BTreeMap::new();
    let mut found = Vec::new();
    for n in by_str.keys().copied().collect::<BTreeSet<_>>() {
        if !marks.contains_key(n) {
            visit(n, &by_str, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found
}
