//! What one plan worker counts: per entity the records and what they would
//! become, item sizes (a log-linear histogram: exact below 1 KB, within
//! 1/128 above, in a few KB of memory), and write units for the table and
//! each index. Workers count apart and are merged at the end.

use std::collections::BTreeMap;

use serde::Serialize;

/// Item sizes, in a fixed number of buckets whatever the item count.
#[derive(Debug, Clone)]
pub struct Sizes {
    buckets: Vec<u64>,
    pub count: u64,
    pub max: u64,
    pub total: u64,
    /// Items over 100 KB (counted exactly).
    pub over_100kb: u64,
}

const LINEAR: u64 = 1024;
const SUB: u64 = 128;

impl Default for Sizes {
    fn default() -> Sizes {
        Sizes {
            buckets: vec![0; (LINEAR + 64 * SUB) as usize],
            count: 0,
            max: 0,
            total: 0,
            over_100kb: 0,
        }
    }
}

/// The bucket of a size: exact below [`LINEAR`], then [`SUB`] buckets per
/// power of two.
fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as u64; // >= 10
    let sub = (v >> (exp - 7)) & (SUB - 1);
    (LINEAR + (exp - 10) * SUB + sub) as usize
}

/// The largest size a bucket holds.
fn bucket_top(b: usize) -> u64 {
    let b = b as u64;
    if b < LINEAR {
        return b;
    }
    let exp = (b - LINEAR) / SUB + 10;
    let sub = (b - LINEAR) % SUB;
    ((SUB + sub + 1) << (exp - 7)) - 1
}

impl Sizes {
    pub fn record(&mut self, size: usize) {
        let v = size as u64;
        if let Some(b) = self.buckets.get_mut(bucket(v)) {
            *b += 1;
        }
        self.count += 1;
        self.total += v;
        self.max = self.max.max(v);
        if v > 100 * 1024 {
            self.over_100kb += 1;
        }
    }

    pub fn merge(&mut self, other: &Sizes) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.over_100kb += other.over_100kb;
    }

    /// The size at quantile `q` (0..1): at most this, within 1/128 above 1 KB.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_top(b).min(self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> SizeSummary {
        SizeSummary {
            items: self.count,
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            max: self.max,
            over_100kb: self.over_100kb,
            total_bytes: self.total,
        }
    }
}

/// Sizes of the items a plan would write, in bytes (DynamoDB's measure).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SizeSummary {
    pub items: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub over_100kb: u64,
    pub total_bytes: u64,
}

/// One entity's counts.
#[derive(Debug, Clone, Default)]
pub struct EntityTally {
    pub read: u64,
    /// Bytes of the source items read (for the read side's cost).
    pub source_bytes: u64,
    pub puts: u64,
    pub deletes: u64,
    /// Clean-up deletes (an update moved an item's key).
    pub stale_deletes: u64,
    pub filtered: BTreeMap<String, u64>,
    pub dead: BTreeMap<String, u64>,
    pub sizes: Sizes,
    /// Write units of the table's copies.
    pub table_units: u64,
    /// Write units per index, in the mapping's order.
    pub index_units: Vec<u64>,
    /// The sink's own estimate, summed as it sums it (for comparison with
    /// a run's `write_units_estimated`).
    pub estimated_units: u64,
}

impl EntityTally {
    pub fn merge(&mut self, o: &EntityTally) {
        self.read += o.read;
        self.source_bytes += o.source_bytes;
        self.puts += o.puts;
        self.deletes += o.deletes;
        self.stale_deletes += o.stale_deletes;
        for (k, v) in &o.filtered {
            *self.filtered.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.dead {
            *self.dead.entry(k.clone()).or_default() += v;
        }
        self.sizes.merge(&o.sizes);
        self.table_units += o.table_units;
        if self.index_units.len() < o.index_units.len() {
            self.index_units.resize(o.index_units.len(), 0);
        }
        for (a, b) in self.index_units.iter_mut().zip(&o.index_units) {
            *a += b;
        }
        self.estimated_units += o.estimated_units;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_a_kilobyte_and_close_above() {
        for v in [0u64, 1, 500, 1023, 1024, 1500, 4096, 100_000, 409_600] {
            let top = bucket_top(bucket(v));
            assert!(top >= v, "{v} -> {top}");
            assert!(top - v <= v / 128, "{v} -> {top}");
            assert!(bucket(top) == bucket(v), "{v}: {top} is in the same bucket");
        }
        assert_eq!(bucket_top(bucket(700)), 700);
    }

    #[test]
    fn quantiles_match_a_sorted_list() {
        let mut s = Sizes::default();
        let mut all: Vec<u64> = (0..10_000u64).map(|i| (i * 7919) % 50_000 + 10).collect();
        for v in &all {
            s.record(*v as usize);
        }
        all.sort();
        for q in [0.5, 0.9, 0.99] {
            let exact = all[((q * all.len() as f64).ceil() as usize) - 1];
            let got = s.quantile(q);
            assert!(
                got >= exact && got - exact <= exact / 128,
                "{q}: {got} vs {exact}"
            );
        }
        assert_eq!(s.quantile(1.0), *all.last().unwrap());
        assert_eq!(s.max, *all.last().unwrap());
    }
}
