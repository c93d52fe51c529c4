//! Directory diff: what changed between two snapshots of the config
//! directory, by content (as ncolony: same bytes, nothing to do).
//!
//! Pure: depends on `colony-ctl` names only.

use colony_ctl::ProgramName;
use std::collections::BTreeMap;

/// One change of the config directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a, V> {
    /// A new file, or a file whose content changed.
    Set(&'a ProgramName, &'a V),
    /// A file that is gone.
    Gone(&'a ProgramName),
}

/// The changes that turn `old` into `new`, in name order.
/// `V` is the content (or a digest of it).
pub fn diff<'a, V: PartialEq>(
    old: &'a BTreeMap<ProgramName, V>,
    new: &'a BTreeMap<ProgramName, V>,
) -> Vec<Change<'a, V>> {
    let mut out = Vec::new();
    for name in old.keys() {
        if !new.contains_key(name) {
            out.push(Change::Gone(name));
        }
    }
    for (name, bytes) in new {
        if old.get(name) != Some(bytes) {
            out.push(Change::Set(name, bytes));
        }
    }
    out.sort_by(|a, b| key(a).cmp(key(b)));
    out
}

fn key<'a, V>(c: &Change<'a, V>) -> &'a ProgramName {
    match c {
        Change::Set(n, _) | Change::Gone(n) => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn snap(entries: &[(&str, &str)]) -> BTreeMap<ProgramName, Vec<u8>> {
        entries.iter().map(|(n, b)| (ProgramName::new(*n).unwrap(), b.as_bytes().to_vec())).collect()
    }

    #[test]
    fn by_content() {
        let old = snap(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let new = snap(&[("a", "1"), ("b", "22"), ("d", "4")]);
        let d = diff(&old, &new);
        let n = |s: &str| ProgramName::new(s).unwrap();
        let (b, c, dd) = (n("b"), n("c"), n("d"));
        assert_eq!(d, [Change::Set(&b, &b"22".to_vec()), Change::Gone(&c), Change::Set(&dd, &b"4".to_vec())]);
    }

    proptest! {
        #[test]
        fn applying_the_diff_gives_the_new_snapshot(
            old in prop::collection::btree_map("[a-d]", "[xy]{0,2}", 0..4),
            new in prop::collection::btree_map("[a-d]", "[xy]{0,2}", 0..4),
        ) {
            let conv = |m: BTreeMap<String, String>| -> BTreeMap<ProgramName, Vec<u8>> {
                m.into_iter().map(|(k, v)| (ProgramName::new(k).unwrap(), v.into_bytes())).collect()
            };
            let (old, new) = (conv(old), conv(new));
            let mut state = old.clone();
            for c in diff(&old, &new) {
                match c {
                    Change::Set(n, b) => { state.insert(n.clone(), b.clone()); }
                    Change::Gone(n) => { state.remove(n); }
                }
            }
            prop_assert_eq!(state, new);
        }
    }
}
