//! The plan's report: the tallies turned into a forecast (duration, cost,
//! pre-warming advice) for people (terminal, Markdown) and machines (JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::tally::{EntityTally, SizeSummary};
use super::PlanOptions;
use crate::mapping::Mapping;
use crate::sources::EntitySource;

/// Write units per second one partition-key value takes at most.
pub const PARTITION_WRITE_UNITS: f64 = 1000.0;
/// What a new on-demand table takes at once, write units per second.
pub const NEW_TABLE_WRITE_UNITS: u64 = 4000;
/// The largest warm throughput suggested (a table's default quota).
const MAX_SUGGESTED: u64 = 40_000;

/// Prices of the cost forecast, in US dollars (flags; defaults are the
/// us-east-1 list prices seen in 2025: check the pricing page).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Prices {
    pub on_demand_write_per_million: f64,
    pub on_demand_read_per_million: f64,
    pub provisioned_wcu_hour: f64,
    pub import_per_gb: f64,
    pub export_per_gb: f64,
}

impl Default for Prices {
    fn default() -> Prices {
        Prices {
            on_demand_write_per_million: 0.625,
            on_demand_read_per_million: 0.125,
            provisioned_wcu_hour: 0.00065,
            import_per_gb: 0.15,
            export_per_gb: 0.10,
        }
    }
}

/// One record of a collision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CollisionRecord {
    pub entity: String,
    /// Its legacy key (DynamoDB JSON).
    pub source_key: serde_json::Value,
}

/// A target key more than one source record makes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Collision {
    /// The target's primary key values, " / " between them.
    pub target_key: String,
    pub across_entities: bool,
    pub records: Vec<CollisionRecord>,
}

/// A partition-key value by the write units it takes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HotPartition {
    pub value: String,
    pub write_units: u64,
    /// Of the table's (or index's) write units.
    pub share: f64,
    /// At 1,000 write units/s per partition, the least time its writes take.
    pub min_seconds: f64,
}

/// What the plan gathered, for [`build`].
pub struct Inputs<'a> {
    pub mapping: &'a Mapping,
    pub plan: &'a [EntitySource],
    pub tallies: Vec<EntityTally>,
    pub collisions: Vec<Collision>,
    /// Collisions in all (more than are listed, maybe).
    pub colliding: u64,
    /// (table or index name, its write units, its hottest values)
    pub hot: Vec<(String, u64, Vec<HotPartition>)>,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

/// One entity's (or the total's) forecast.
#[derive(Debug, Clone, Serialize)]
pub struct EntityPlan {
    pub entity: String,
    pub source_table: String,
    pub read: u64,
    pub would_write: u64,
    pub would_delete: u64,
    /// Clean-up deletes of keys an update moves away from.
    pub stale_key_deletes: u64,
    pub filtered: u64,
    pub filtered_by_rule: BTreeMap<String, u64>,
    pub would_dead_letter: u64,
    pub dead_letter_reasons: BTreeMap<String, u64>,
    /// read = would write + would delete + filtered + would dead-letter.
    pub reconciled: bool,
    pub write_units: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Collisions {
    pub count: u64,
    pub across_entities: u64,
    pub listed: Vec<Collision>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    pub total: SizeSummary,
    pub by_entity: BTreeMap<String, SizeSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WriteUnits {
    /// Every write unit the migration takes (table and index copies): what
    /// the sink's `write_units_estimated` sums.
    pub total: u64,
    pub table: u64,
    pub indexes: BTreeMap<String, u64>,
    pub by_entity: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HotPartitions {
    /// "table" or the index's name.
    pub on: String,
    pub write_units: u64,
    pub top: Vec<HotPartition>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Duration {
    pub write_units_per_second: u64,
    /// Total write units at that rate.
    pub seconds_at_rate: f64,
    /// The hottest partition-key value's least time, and where it is.
    pub hottest_partition_seconds: f64,
    pub hottest_partition: String,
    /// The larger of the two.
    pub seconds: f64,
    /// "rate" or "hot partition".
    pub binds: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub prices: Prices,
    pub on_demand_writes_usd: f64,
    /// Provisioned write capacity at the rate, for the duration.
    pub provisioned_writes_usd: f64,
    /// ImportTable into a new table (uncompressed item bytes).
    pub import_table_usd: f64,
    pub read_by_scan_usd: f64,
    pub read_by_export_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WarmAdvice {
    /// `migrate --create-table --warm-write-units N`; none: not needed.
    pub write_units_per_second: Option<u64>,
    pub why: String,
}

/// The plan report.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub command: String,
    pub mapping: String,
    pub target_table: String,
    pub source: String,
    pub seconds: f64,
    pub entities: Vec<EntityPlan>,
    pub totals: EntityPlan,
    pub collisions: Collisions,
    pub sizes: Sizes,
    pub write_units: WriteUnits,
    pub hot_partitions: Vec<HotPartitions>,
    pub duration: Duration,
    pub cost: Cost,
    pub warm_throughput: WarmAdvice,
    pub dead_letter_file: Option<String>,
    pub warnings: Vec<String>,
}

fn entity_plan(name: &str, table: &str, t: &EntityTally) -> EntityPlan {
    let filtered: u64 = t.filtered.values().sum();
    let dead: u64 = t.dead.values().sum();
    EntityPlan {
        entity: name.into(),
        source_table: table.into(),
        read: t.read,
        would_write: t.puts,
        would_delete: t.deletes,
        stale_key_deletes: t.stale_deletes,
        filtered,
        filtered_by_rule: t.filtered.clone(),
        would_dead_letter: dead,
        dead_letter_reasons: t.dead.clone(),
        reconciled: t.read == t.puts + t.deletes + filtered + dead,
        write_units: t.estimated_units,
    }
}

/// The forecast from what the plan gathered.
pub fn build(i: Inputs<'_>, opts: &PlanOptions) -> PlanReport {
    let m = i.mapping;
    let mut total = EntityTally::default();
    for t in &i.tallies {
        total.merge(t);
    }
    let entities: Vec<EntityPlan> = m
        .entities
        .iter()
        .zip(&i.tallies)
        .map(|(e, t)| entity_plan(&e.name, &e.source_table, t))
        .collect();
    let names = || m.entities.iter().map(|e| e.name.clone());
    let write_units = WriteUnits {
        total: total.estimated_units,
        table: total.table_units,
        indexes: m
            .table
            .indexes
            .iter()
            .zip(total.index_units.iter().chain(std::iter::repeat(&0)))
            .map(|(ix, u)| (ix.name.clone(), *u))
            .collect(),
        by_entity: names()
            .zip(i.tallies.iter().map(|t| t.estimated_units))
            .collect(),
    };
    let hot_partitions: Vec<HotPartitions> = i
        .hot
        .into_iter()
        .map(|(on, write_units, top)| HotPartitions {
            on,
            write_units,
            top,
        })
        .collect();
    let duration = duration(total.estimated_units, &hot_partitions, opts.write_units);
    let cost = cost(&total, &duration, &opts.prices);
    let warm_throughput = warm(total.estimated_units, &duration);
    PlanReport {
        command: "plan".into(),
        mapping: m.origin.display().to_string(),
        target_table: m.table.name.clone(),
        source: crate::sources::source_words(i.plan),
        seconds: i.seconds,
        totals: entity_plan("TOTAL", "", &total),
        entities,
        collisions: Collisions {
            count: i.colliding,
            across_entities: i.collisions.iter().filter(|c| c.across_entities).count() as u64,
            listed: i.collisions,
        },
        sizes: Sizes {
            total: total.sizes.summary(),
            by_entity: names()
                .zip(i.tallies.iter().map(|t| t.sizes.summary()))
                .collect(),
        },
        write_units,
        hot_partitions,
        duration,
        cost,
        warm_throughput,
        dead_letter_file: opts.dead_letter.as_ref().map(|p| p.display().to_string()),
        warnings: i.warnings,
    }
}

fn duration(total: u64, hot: &[HotPartitions], rate: u64) -> Duration {
    let rate = rate.max(1);
    let seconds_at_rate = total as f64 / rate as f64;
    let (hottest_partition_seconds, hottest_partition) = hot
        .iter()
        .filter_map(|h| {
            h.top
                .first()
                .map(|t| (t.min_seconds, format!("{} {}", h.on, t.value)))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((0.0, String::new()));
    let binds = if hottest_partition_seconds > seconds_at_rate {
        "hot partition"
    } else {
        "rate"
    };
    Duration {
        write_units_per_second: rate,
        seconds_at_rate,
        hottest_partition_seconds,
        hottest_partition,
        seconds: seconds_at_rate.max(hottest_partition_seconds),
        binds: binds.into(),
    }
}

fn cost(total: &EntityTally, d: &Duration, p: &Prices) -> Cost {
    const GB: f64 = 1024.0 * 1024.0 * 1024.0;
    let units = total.estimated_units as f64;
    let read_units = (total.source_bytes as f64 / 4096.0).ceil() / 2.0;
    Cost {
        prices: p.clone(),
        on_demand_writes_usd: units / 1e6 * p.on_demand_write_per_million,
        provisioned_writes_usd: d.write_units_per_second as f64
            * (d.seconds / 3600.0)
            * p.provisioned_wcu_hour,
        import_table_usd: total.sizes.total as f64 / GB * p.import_per_gb,
        read_by_scan_usd: read_units / 1e6 * p.on_demand_read_per_million,
        read_by_export_usd: total.source_bytes as f64 / GB * p.export_per_gb,
    }
}

/// Pre-warming advice: the rate beyond which the hottest partition binds
/// (more capacity does not shorten the run).
fn warm(total: u64, d: &Duration) -> WarmAdvice {
    if total == 0 {
        return WarmAdvice {
            write_units_per_second: None,
            why: "nothing to write".into(),
        };
    }
    let useful = match d.hottest_partition_seconds > 0.0 {
        true => (total as f64 / d.hottest_partition_seconds).ceil() as u64,
        false => MAX_SUGGESTED,
    };
    let rounded = useful.div_ceil(1000) * 1000;
    if rounded <= NEW_TABLE_WRITE_UNITS {
        return WarmAdvice {
            write_units_per_second: None,
            why: format!(
                "none needed: a new on-demand table takes {NEW_TABLE_WRITE_UNITS} write units/s at once, and above {useful}/s the hottest partition ({}) binds",
                d.hottest_partition
            ),
        };
    }
    let n = rounded.min(MAX_SUGGESTED);
    WarmAdvice {
        write_units_per_second: Some(n),
        why: format!(
            "--warm-write-units {n}: up to about {useful} write units/s the run goes faster; above it the hottest partition ({}) binds",
            d.hottest_partition
        ),
    }
}

/// Dollars: cents from a dollar up, four decimals below.
fn usd(x: f64) -> String {
    if x >= 1.0 {
        format!("${x:.2}")
    } else {
        format!("${x:.4}")
    }
}

fn hms(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
}

impl PlanReport {
    /// Per entity and the total: name, read, would write, would delete,
    /// filtered, would dead-letter, write units.
    fn rows(&self) -> Vec<[String; 7]> {
        let all = self.entities.iter().chain(std::iter::once(&self.totals));
        all.map(|e| {
            [
                e.entity.clone(),
                e.read.to_string(),
                e.would_write.to_string(),
                e.would_delete.to_string(),
                e.filtered.to_string(),
                e.would_dead_letter.to_string(),
                e.write_units.to_string(),
            ]
        })
        .collect()
    }

    /// The forecast for the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan: {} -> {} ({}), nothing written, read in {:.1} s",
            self.mapping, self.target_table, self.source, self.seconds
        );
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        let _ = writeln!(
            out,
            "{:<14} {:>9} {:>9} {:>8} {:>8} {:>8} {:>10}",
            "entity", "read", "write", "delete", "filter", "dead", "WCU"
        );
        for [name, n @ ..] in self.rows() {
            let _ = writeln!(
                out,
                "{name:<14} {:>9} {:>9} {:>8} {:>8} {:>8} {:>10}",
                n[0], n[1], n[2], n[3], n[4], n[5]
            );
        }
        self.render_findings(&mut out);
        out
    }

    fn render_findings(&self, out: &mut String) {
        let c = &self.collisions;
        let _ = writeln!(
            out,
            "collisions: {} target key(s) made by more than one record ({} across entities)",
            c.count, c.across_entities
        );
        for x in c.listed.iter().take(20) {
            let who: Vec<String> = x
                .records
                .iter()
                .map(|r| format!("{} {}", r.entity, r.source_key))
                .collect();
            let _ = writeln!(out, "  {} <- {}", x.target_key, who.join(", "));
        }
        let s = &self.sizes.total;
        let _ = writeln!(
            out,
            "item sizes: p50 {} B, p90 {} B, p99 {} B, max {} B, {} over 100 KB",
            s.p50, s.p90, s.p99, s.max, s.over_100kb
        );
        let ix: Vec<String> = self
            .write_units
            .indexes
            .iter()
            .map(|(n, u)| format!("{n} {u}"))
            .collect();
        let _ = writeln!(
            out,
            "write units: {} (table {}, {})",
            self.write_units.total,
            self.write_units.table,
            ix.join(", ")
        );
        for h in &self.hot_partitions {
            for t in h.top.iter().take(3) {
                let _ = writeln!(
                    out,
                    "  hot {:<6} {:<28} {:>9} WCU {:>5.1}%  >= {}",
                    h.on,
                    t.value,
                    t.write_units,
                    t.share * 100.0,
                    hms(t.min_seconds)
                );
            }
        }
        let d = &self.duration;
        let _ = writeln!(
            out,
            "duration: {} (at {} WCU/s: {}; hottest partition {}: {}); {} binds",
            hms(d.seconds),
            d.write_units_per_second,
            hms(d.seconds_at_rate),
            d.hottest_partition,
            hms(d.hottest_partition_seconds),
            d.binds
        );
        let k = &self.cost;
        let _ = writeln!(
            out,
            "cost: on-demand writes {}, provisioned for the duration {}, ImportTable {}; reading by Scan {}, by export {} (prices: --price-* flags)",
            usd(k.on_demand_writes_usd),
            usd(k.provisioned_writes_usd),
            usd(k.import_table_usd),
            usd(k.read_by_scan_usd),
            usd(k.read_by_export_usd)
        );
        if k.import_table_usd < k.on_demand_writes_usd {
            let _ = writeln!(
                out,
                "a new target is cheaper through ImportTable (no write capacity): migrate --to-import s3://bucket/prefix/ --import-table"
            );
        }
        let _ = writeln!(out, "warm throughput: {}", self.warm_throughput.why);
        if let Some(f) = &self.dead_letter_file {
            let _ = writeln!(out, "would-be dead letters listed in {f}");
        }
    }

    /// The forecast as Markdown.
    pub fn render_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Migration plan: {}\n", self.target_table);
        let _ = writeln!(
            out,
            "Mapping `{}`, source {}; nothing was written.\n",
            self.mapping, self.source
        );
        let _ = writeln!(
            out,
            "| entity | read | would write | would delete | filtered | would dead-letter | write units |\n|---|---|---|---|---|---|---|"
        );
        for row in self.rows() {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        let _ = writeln!(out, "\n## Hot partitions\n\n| on | value | write units | share | least time |\n|---|---|---|---|---|");
        for h in &self.hot_partitions {
            for t in &h.top {
                let _ = writeln!(
                    out,
                    "| {} | `{}` | {} | {:.1}% | {} |",
                    h.on,
                    t.value,
                    t.write_units,
                    t.share * 100.0,
                    hms(t.min_seconds)
                );
            }
        }
        let _ = writeln!(out, "\n## Findings\n\n```");
        self.render_findings(&mut out);
        let _ = writeln!(out, "```");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(on: &str, units: u64) -> HotPartitions {
        HotPartitions {
            on: on.into(),
            write_units: units,
            top: vec![HotPartition {
                value: "ALL_MESSAGES".into(),
                write_units: units,
                share: 1.0,
                min_seconds: units as f64 / PARTITION_WRITE_UNITS,
            }],
        }
    }

    #[test]
    fn the_slower_of_rate_and_hottest_partition_binds() {
        // 400,000 units at 4,000/s: 100 s; a 50,000-unit partition: 50 s.
        let d = duration(400_000, &[hot("gsi2", 50_000)], 4000);
        assert_eq!((d.seconds, d.binds.as_str()), (100.0, "rate"));
        // At 40,000/s the rate needs 10 s; the partition still needs 50.
        let d = duration(400_000, &[hot("gsi2", 50_000)], 40_000);
        assert_eq!((d.seconds, d.binds.as_str()), (50.0, "hot partition"));
        assert_eq!(d.hottest_partition, "gsi2 ALL_MESSAGES");
    }

    #[test]
    fn warm_throughput_stops_where_the_hot_partition_binds() {
        // Above 400,000 / 50 s = 8,000 units/s more capacity does not help.
        let d = duration(400_000, &[hot("gsi2", 50_000)], 4000);
        let w = warm(400_000, &d);
        assert_eq!(w.write_units_per_second, Some(8000));
        // A hot partition that binds below 4,000/s: no pre-warming.
        let d = duration(100_000, &[hot("gsi2", 50_000)], 4000);
        assert_eq!(warm(100_000, &d).write_units_per_second, None);
        assert!(warm(0, &d).why.contains("nothing"));
    }

    #[test]
    fn costs_follow_the_prices() {
        let mut t = EntityTally {
            estimated_units: 2_000_000,
            source_bytes: 1024 * 1024 * 1024,
            ..EntityTally::default()
        };
        t.sizes.record(1000);
        let d = duration(2_000_000, &[], 4000);
        let c = cost(&t, &d, &Prices::default());
        assert!((c.on_demand_writes_usd - 1.25).abs() < 1e-9);
        assert!((c.read_by_export_usd - 0.10).abs() < 1e-9);
        // 1 GB / 4 KB = 262,144 units, halved (eventually consistent).
        assert!((c.read_by_scan_usd - 131_072.0 / 1e6 * 0.125).abs() < 1e-9);
        // 500 s of 4,000 WCU at $0.00065 an hour.
        assert!((c.provisioned_writes_usd - 4000.0 * 500.0 / 3600.0 * 0.00065).abs() < 1e-9);
    }
}
