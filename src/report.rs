//! What a run did: live counters, the run report, and the terminal summary.
//!
//! [`RunStats`] holds the counters every stage bumps while the run goes
//! (atomics, one set per entity). When the run ends they become a
//! [`RunReport`]: JSON for machines (`--report`) and a table for people.
//! The report also carries the reconciliation, read = written + filtered +
//! dead-lettered per entity, which the caller enforces.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Counters for one entity.
#[derive(Debug, Default)]
pub struct EntityCounters {
    pub read: AtomicU64,
    pub written: AtomicU64,
    pub filtered: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Incremental deletes written.
    pub deleted: AtomicU64,
    /// Clean-up deletes of a key an update moved away from (not counted
    /// in the reconciliation), written and dead-lettered.
    pub stale_deleted: AtomicU64,
    pub stale_dead_lettered: AtomicU64,
    pub retries: AtomicU64,
    pub throttles: AtomicU64,
    /// Write units the service reported consumed, in thousandths.
    pub consumed_milli_wcu: AtomicU64,
    /// Write units we computed from item sizes.
    pub estimated_wcu: AtomicU64,
    /// Requests whose target key was already in the same batch.
    pub repeated_keys: AtomicU64,
    /// Milliseconds from the start of the run until the table was read.
    pub read_millis: AtomicU64,
}

/// Live counters of a run, shared by every stage.
#[derive(Debug)]
pub struct RunStats {
    entities: Vec<EntityCounters>,
}

impl RunStats {
    pub fn new(entities: usize) -> RunStats {
        RunStats {
            entities: (0..entities).map(|_| EntityCounters::default()).collect(),
        }
    }

    /// The counters of entity `i`. Out-of-range indexes share a spare set,
    /// so a bookkeeping slip can never panic a migration.
    pub fn entity(&self, i: usize) -> &EntityCounters {
        &self.entities[i.min(self.entities.len().saturating_sub(1))]
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One entity's line in the run report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EntityReport {
    pub entity: String,
    pub source_table: String,
    pub read: u64,
    pub written: u64,
    pub filtered: u64,
    pub dead_lettered: u64,
    /// Incremental-export deletes applied.
    pub deleted: u64,
    /// Old keys deleted after an update moved an item to a new key.
    pub stale_keys_deleted: u64,
    pub stale_key_deletes_dead_lettered: u64,
    pub retries: u64,
    pub throttles: u64,
    pub write_units_consumed: f64,
    pub write_units_estimated: u64,
    pub repeated_keys_in_batch: u64,
    /// Seconds from the start of the run until this table was read to the end.
    pub read_seconds: f64,
    pub reconciled: bool,
}

/// The run report of `migrate`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub command: String,
    pub mapping: String,
    pub target_table: String,
    pub source: String,
    pub started_at: String,
    pub duration_seconds: f64,
    pub interrupted: bool,
    pub dead_letter_file: Option<String>,
    pub entities: Vec<EntityReport>,
    pub totals: EntityReport,
    /// True when read = written + deleted + filtered + dead-lettered for every entity.
    pub reconciled: bool,
    pub warnings: Vec<String>,
}

/// What the report says about the run itself.
#[derive(Debug, Clone)]
pub struct RunMeta {
    pub command: String,
    pub mapping: String,
    pub target_table: String,
    pub source: String,
    pub started_at: String,
    pub duration: Duration,
    pub interrupted: bool,
    pub dead_letter_file: Option<String>,
    /// Warnings from the sources (accepted export mismatches, exports
    /// without manifests).
    pub source_warnings: Vec<String>,
}

impl RunReport {
    /// Builds the report from the final counters; `names` are (entity,
    /// source table) in mapping order.
    pub fn build(stats: &RunStats, names: &[(String, String)], meta: RunMeta) -> RunReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let entities: Vec<EntityReport> = names
            .iter()
            .enumerate()
            .map(|(i, (entity, table))| {
                let c = stats.entity(i);
                let (read, written, filtered, dead, deleted) = (
                    get(&c.read),
                    get(&c.written),
                    get(&c.filtered),
                    get(&c.dead_lettered),
                    get(&c.deleted),
                );
                EntityReport {
                    entity: entity.clone(),
                    source_table: table.clone(),
                    read,
                    written,
                    filtered,
                    dead_lettered: dead,
                    deleted,
                    stale_keys_deleted: get(&c.stale_deleted),
                    stale_key_deletes_dead_lettered: get(&c.stale_dead_lettered),
                    retries: get(&c.retries),
                    throttles: get(&c.throttles),
                    write_units_consumed: get(&c.consumed_milli_wcu) as f64 / 1000.0,
                    write_units_estimated: get(&c.estimated_wcu),
                    repeated_keys_in_batch: get(&c.repeated_keys),
                    read_seconds: get(&c.read_millis) as f64 / 1000.0,
                    reconciled: read == written + deleted + filtered + dead,
                }
            })
            .collect();
        let mut totals = EntityReport {
            entity: "TOTAL".into(),
            source_table: String::new(),
            read: 0,
            written: 0,
            filtered: 0,
            dead_lettered: 0,
            deleted: 0,
            stale_keys_deleted: 0,
            stale_key_deletes_dead_lettered: 0,
            retries: 0,
            throttles: 0,
            write_units_consumed: 0.0,
            write_units_estimated: 0,
            repeated_keys_in_batch: 0,
            read_seconds: 0.0,
            reconciled: true,
        };
        for e in &entities {
            totals.read += e.read;
            totals.written += e.written;
            totals.filtered += e.filtered;
            totals.dead_lettered += e.dead_lettered;
            totals.deleted += e.deleted;
            totals.stale_keys_deleted += e.stale_keys_deleted;
            totals.stale_key_deletes_dead_lettered += e.stale_key_deletes_dead_lettered;
            totals.retries += e.retries;
            totals.throttles += e.throttles;
            totals.write_units_consumed += e.write_units_consumed;
            totals.write_units_estimated += e.write_units_estimated;
            totals.repeated_keys_in_batch += e.repeated_keys_in_batch;
            totals.read_seconds = totals.read_seconds.max(e.read_seconds);
            totals.reconciled &= e.reconciled;
        }
        let mut warnings = meta.source_warnings.clone();
        for e in &entities {
            if e.repeated_keys_in_batch > 0 {
                warnings.push(format!(
                    "{}: {} items had the same target key as an item just before them; the later one replaced the earlier",
                    e.entity, e.repeated_keys_in_batch
                ));
            }
            if e.stale_keys_deleted + e.stale_key_deletes_dead_lettered > 0 {
                warnings.push(format!(
                    "{}: {} updates left an old target key behind (the item moved, or the mapping can no longer write it); {} old keys deleted, {} dead-lettered",
                    e.entity,
                    e.stale_keys_deleted + e.stale_key_deletes_dead_lettered,
                    e.stale_keys_deleted,
                    e.stale_key_deletes_dead_lettered
                ));
            }
            if e.dead_lettered > 0 {
                warnings.push(format!(
                    "{}: {} items dead-lettered (see the dead-letter file)",
                    e.entity, e.dead_lettered
                ));
            }
        }
        if meta.interrupted {
            warnings.push(
                "interrupted: the run stopped early; the tables were not read to the end".into(),
            );
        }
        RunReport {
            command: meta.command,
            mapping: meta.mapping,
            target_table: meta.target_table,
            source: meta.source,
            started_at: meta.started_at,
            duration_seconds: meta.duration.as_secs_f64(),
            interrupted: meta.interrupted,
            dead_letter_file: meta.dead_letter_file,
            reconciled: totals.reconciled,
            entities,
            totals,
            warnings,
        }
    }

    /// The terminal summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<14} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>9} {:>11} {:>8}\n",
            "entity",
            "read",
            "written",
            "deleted",
            "filtered",
            "dead",
            "retries",
            "throttles",
            "write units",
            "read s"
        ));
        for e in self.entities.iter().chain(std::iter::once(&self.totals)) {
            out.push_str(&format!(
                "{:<14} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>9} {:>11.1} {:>8.1}{}\n",
                e.entity,
                e.read,
                e.written,
                e.deleted,
                e.filtered,
                e.dead_lettered,
                e.retries,
                e.throttles,
                e.write_units_consumed,
                e.read_seconds,
                if e.reconciled {
                    ""
                } else {
                    "  <- does not reconcile"
                }
            ));
        }
        let t = &self.totals;
        out.push_str(&format!(
            "\nread {} = written {} + deleted {} + filtered {} + dead-lettered {}: {}\n",
            t.read,
            t.written,
            t.deleted,
            t.filtered,
            t.dead_lettered,
            if self.reconciled {
                "reconciled"
            } else {
                "DOES NOT RECONCILE"
            }
        ));
        out.push_str(&format!(
            "{:.1} s into {}\n",
            self.duration_seconds, self.target_table
        ));
        if let Some(p) = &self.dead_letter_file {
            if t.dead_lettered > 0 {
                out.push_str(&format!("dead letters: {p}\n"));
            }
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

/// Writes a serializable report as pretty JSON, creating its folder.
pub fn write_json<T: Serialize>(path: &std::path::Path, value: &T) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}
