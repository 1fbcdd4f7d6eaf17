//! The full check: order-independent digests, narrowed to the differences.
//!
//! Every record of both sides goes into a bucket chosen by the first bytes
//! of the hash of its target key; each bucket keeps a [`Digest`] (the count
//! and the sum, mod 2^128, of the records' canonical hashes), so memory is
//! 256 digests per entity whatever the table size, and the order items
//! arrive in does not matter. Equal digests everywhere prove equality.
//! Where buckets differ, another pass splits only those buckets 256 ways
//! again, while they hold more records than may be held (`--collect-limit`)
//! and splitting still sheds records; a last pass collects the records of
//! the differing buckets, up to that limit, and names every missing, extra
//! and changed key among them, with diffs. Records of differing buckets
//! beyond the limit are counted as unresolved: they differ, unnamed.

use std::collections::{HashMap, HashSet};

use super::canonical::{hash_bytes, item_hash};
use super::report::Digest;
use crate::item::Item;

/// The most records held at once to list the differences (the default of
/// `VerifyOptions::collect_limit`).
pub const COLLECT_LIMIT: u64 = 20_000;

/// Which records a pass looks at: those whose key hash starts with one of
/// these prefixes (all, at the first level).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Prefix length in bytes of the buckets this pass keeps.
    pub level: usize,
    /// The differing buckets of the previous level (`None`: everything).
    pub within: Option<HashSet<Bucket>>,
}

impl Scope {
    pub fn first() -> Scope {
        Scope {
            level: 1,
            within: None,
        }
    }

    /// The bucket of a key hash at this level, if the pass keeps it.
    pub fn bucket(&self, entity: usize, key_hash: u128) -> Option<Vec<u8>> {
        let bytes = key_hash.to_be_bytes();
        if let Some(within) = &self.within {
            let parent = bytes[..self.level - 1].to_vec();
            if !within.contains(&(entity, parent)) {
                return None;
            }
        }
        Some(bytes[..self.level].to_vec())
    }
}

/// The hash of a target key's text.
pub fn key_hash(key_text: &str) -> u128 {
    hash_bytes(key_text.as_bytes())
}

/// An entity and a bucket: the first bytes of a key hash.
pub type Bucket = (usize, Vec<u8>);

/// Digests of one side, per (entity, bucket).
#[derive(Debug, Default)]
pub struct Digests {
    pub buckets: HashMap<Bucket, Digest>,
}

impl Digests {
    pub fn add(&mut self, scope: &Scope, entity: usize, key_text: &str, item: &Item) {
        if let Some(b) = scope.bucket(entity, key_hash(key_text)) {
            self.buckets
                .entry((entity, b))
                .or_default()
                .add(item_hash(item));
        }
    }

    /// The whole entity's digest (level one covers everything).
    pub fn total(&self, entity: usize) -> Digest {
        let mut d = Digest::default();
        for ((e, _), b) in &self.buckets {
            if *e == entity {
                d.merge(b);
            }
        }
        d
    }
}

/// The buckets where the two sides differ, each with the records it holds
/// (the larger side), sorted by bucket.
pub fn differing(source: &Digests, target: &Digests) -> Vec<(Bucket, u64)> {
    let mut out: Vec<(Bucket, u64)> = Vec::new();
    let mut seen = HashSet::new();
    let empty = Digest::default();
    for key in source.buckets.keys().chain(target.buckets.keys()) {
        let (s, t) = (
            source.buckets.get(key).unwrap_or(&empty),
            target.buckets.get(key).unwrap_or(&empty),
        );
        if s != t && seen.insert(key.clone()) {
            out.push((key.clone(), s.count.max(t.count)));
        }
    }
    out.sort();
    out
}

/// The records the differing buckets hold in all.
pub fn load(diff: &[(Bucket, u64)]) -> u64 {
    diff.iter().map(|(_, n)| n).sum()
}

/// The differing buckets to list, in order, up to `limit` records; the
/// records of the others, per entity, are left unresolved.
pub fn within_limit(
    diff: Vec<(Bucket, u64)>,
    limit: u64,
) -> (HashSet<Bucket>, HashMap<usize, u64>) {
    let mut kept = HashSet::new();
    let mut unresolved: HashMap<usize, u64> = HashMap::new();
    let mut held = 0;
    for (bucket, n) in diff {
        if held + n <= limit {
            held += n;
            kept.insert(bucket);
        } else {
            *unresolved.entry(bucket.0).or_default() += n;
        }
    }
    (kept, unresolved)
}

/// All the differing buckets, in rounds of at most `limit` records each
/// (a bucket larger than the limit alone is a round of its own), in order.
pub fn rounds(diff: Vec<(Bucket, u64)>, limit: u64) -> Vec<HashSet<Bucket>> {
    let mut out: Vec<HashSet<Bucket>> = Vec::new();
    let mut held = 0;
    for (bucket, n) in diff {
        match out.last_mut() {
            Some(round) if held + n <= limit => {
                held += n;
                round.insert(bucket);
            }
            _ => {
                held = n;
                out.push(HashSet::from([bucket]));
            }
        }
    }
    out
}

/// The scope of the next pass: the differing buckets, one byte deeper.
pub fn narrow(differing: HashSet<Bucket>, level: usize) -> Scope {
    Scope {
        level: level + 1,
        within: Some(differing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use proptest::prelude::*;

    fn item(k: u32, v: &str) -> Item {
        [
            ("pk".to_string(), AttributeValue::S(k.to_string())),
            ("v".to_string(), AttributeValue::S(v.into())),
        ]
        .into()
    }

    #[test]
    fn rounds_hold_every_bucket_once_within_the_limit() {
        let diff: Vec<(Bucket, u64)> = [5u64, 5, 20, 3, 3, 3, 1]
            .iter()
            .enumerate()
            .map(|(i, n)| ((0, vec![i as u8]), *n))
            .collect();
        let r = rounds(diff.clone(), 10);
        let sizes: Vec<usize> = r.iter().map(HashSet::len).collect();
        assert_eq!(sizes, [2, 1, 4], "5+5 | 20 alone | 3+3+3+1");
        let all: HashSet<Bucket> = r.into_iter().flatten().collect();
        assert_eq!(all.len(), diff.len());
    }

    proptest! {
        /// Digests do not depend on order, and one changed record is found
        /// in exactly one bucket, at every level.
        #[test]
        fn digests_are_order_free_and_localise_a_change(n in 1u32..300, changed in 0u32..300) {
            let changed = changed % n;
            let items: Vec<Item> = (0..n).map(|k| item(k, "a")).collect();
            let scope = Scope::first();
            let (mut fwd, mut rev, mut other) = (Digests::default(), Digests::default(), Digests::default());
            for (k, it) in items.iter().enumerate() {
                fwd.add(&scope, 0, &k.to_string(), it);
                let alt = if k as u32 == changed { item(k as u32, "b") } else { it.clone() };
                other.add(&scope, 0, &k.to_string(), &alt);
            }
            for (k, it) in items.iter().enumerate().rev() {
                rev.add(&scope, 0, &k.to_string(), it);
            }
            prop_assert_eq!(fwd.total(0), rev.total(0));
            prop_assert!(differing(&fwd, &rev).is_empty());
            let diff = differing(&fwd, &other);
            prop_assert_eq!(diff.len(), 1);
            let load = super::load(&diff);
            prop_assert!(load >= 1);
            // One level deeper, only the changed record's bucket is kept.
            let (kept, unresolved) = within_limit(diff, u64::MAX);
            prop_assert!(unresolved.is_empty());
            let deeper = narrow(kept, 1);
            let kept = (0..n).filter(|k| deeper.bucket(0, key_hash(&k.to_string())).is_some()).count();
            prop_assert!(kept >= 1 && kept as u64 <= load);
        }
    }
}
