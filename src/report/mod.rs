//! What a run did: live counters, the run report, and the terminal summary.
//!
//! [`RunStats`] holds the counters every stage bumps while the run goes
//! (atomics, one set per entity). When the run ends they become a
//! [`RunReport`]: JSON for machines (`--report`) and a table for people.
//! The report also carries the reconciliation, per entity: the records the
//! sources produced = the records the transform took = written + deleted +
//! filtered + dead-lettered + not written, from counters bumped by
//! different stages; and the verdict, as the exit code: 0 everything
//! migrated (dead letters within the allowance), 2 the run failed or was
//! interrupted, 3 it finished but items were not migrated.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod merge;

use crate::checkpoint::Counts;
use crate::sinks::dead_letter::Stage;
use crate::sinks::rate::{RateSample, RateSummary};

/// Exit code: the tool did its job (and verify found a match).
pub const EXIT_OK: i32 = 0;
/// Exit code: verify found the target differs from the source.
pub const EXIT_DIFFERS: i32 = 1;
/// Exit code: the tool failed or was interrupted.
pub const EXIT_FAILED: i32 = 2;
/// Exit code: the run finished, but items were not migrated (dead letters
/// beyond `--allow-dead-letters`).
pub const EXIT_NOT_MIGRATED: i32 = 3;

/// Distinct reasons kept per entity; the rest are counted as "other".
const MAX_REASONS: usize = 50;

/// Counters for one entity.
#[derive(Debug, Default)]
pub struct EntityCounters {
    /// Records the sources produced (Scan pages, export lines).
    pub produced: AtomicU64,
    /// Records the transform took.
    pub read: AtomicU64,
    pub written: AtomicU64,
    /// Puts to a key an earlier record of this run had written (collisions).
    pub overwritten: AtomicU64,
    pub filtered: AtomicU64,
    /// Items that cannot be written (on disk in the dead-letter file).
    pub dead_lettered: AtomicU64,
    /// Good items the run stopped before writing (on disk too).
    pub not_written: AtomicU64,
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
    /// Per entity: "stage: reason" -> items not migrated for it.
    reasons: Mutex<Vec<BTreeMap<String, u64>>>,
    /// Per entity: the rule -> items it filtered out.
    filtered_by: Mutex<Vec<BTreeMap<String, u64>>>,
    rate: Mutex<Option<RateSummary>>,
    /// The sink's latest rate sample, for the progress.
    latest_rate: Mutex<Option<RateSample>>,
    /// The collision filter's expected false alarms (f64 bits).
    overwrite_false_alarms: AtomicU64,
}

impl RunStats {
    pub fn new(entities: usize) -> RunStats {
        RunStats {
            entities: (0..entities).map(|_| EntityCounters::default()).collect(),
            reasons: Mutex::new(vec![BTreeMap::new(); entities.max(1)]),
            filtered_by: Mutex::new(vec![BTreeMap::new(); entities.max(1)]),
            rate: Mutex::new(None),
            latest_rate: Mutex::new(None),
            overwrite_false_alarms: AtomicU64::new(0),
        }
    }

    /// Records how many `overwritten` counts the filter expects to be wrong.
    pub fn set_overwrite_false_alarms(&self, n: f64) {
        self.overwrite_false_alarms
            .store(n.to_bits(), Ordering::Relaxed);
    }

    /// Counts one record of the dead-letter file, once it is on disk.
    /// Returns the reason's key ("stage: kind").
    pub fn count_not_migrated(
        &self,
        entity: usize,
        stage: Stage,
        counted: bool,
        reason: &str,
    ) -> String {
        let c = self.entity(entity);
        let counter = match (counted, stage) {
            (false, _) => &c.stale_dead_lettered,
            (true, Stage::Unwritten) => &c.not_written,
            (true, _) => &c.dead_lettered,
        };
        RunStats::add(counter, 1);
        let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        let last = reasons.len() - 1;
        let map = &mut reasons[entity.min(last)];
        let mut key = reason_key(stage, reason);
        if !counted {
            key = format!("clean-up delete, {key}");
        }
        if !map.contains_key(&key) && map.len() >= MAX_REASONS {
            key = "other".into();
        }
        *map.entry(key.clone()).or_default() += 1;
        key
    }

    /// Counts one item a mapping rule filtered out, by its rule.
    pub fn count_filtered(&self, entity: usize, rule: &str) {
        RunStats::add(&self.entity(entity).filtered, 1);
        let mut by = self.filtered_by.lock().unwrap_or_else(|p| p.into_inner());
        let last = by.len() - 1;
        let map = &mut by[entity.min(last)];
        let key = match map.contains_key(rule) || map.len() < MAX_REASONS {
            true => rule.to_string(),
            false => "other".to_string(),
        };
        *map.entry(key).or_default() += 1;
    }

    /// Starts the counters where a resumed run's state left them.
    pub fn preload(&self, saved: &[Counts]) {
        for (i, s) in saved.iter().enumerate().take(self.entities.len()) {
            let c = &self.entities[i];
            let pairs = [
                (&c.produced, s.produced),
                (&c.read, s.read),
                (&c.written, s.written),
                (&c.overwritten, s.overwritten),
                (&c.filtered, s.filtered),
                (&c.dead_lettered, s.dead_lettered),
                (&c.not_written, s.not_written),
                (&c.deleted, s.deleted),
                (&c.stale_deleted, s.stale_deleted),
                (&c.stale_dead_lettered, s.stale_dead_lettered),
                (&c.retries, s.retries),
                (&c.throttles, s.throttles),
                (&c.consumed_milli_wcu, s.consumed_milli_wcu),
                (&c.estimated_wcu, s.estimated_wcu),
                (&c.repeated_keys, s.repeated_keys),
            ];
            for (counter, n) in pairs {
                counter.store(n, Ordering::Relaxed);
            }
            let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(map) = reasons.get_mut(i) {
                map.clone_from(&s.reasons);
            }
            let mut by = self.filtered_by.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(map) = by.get_mut(i) {
                map.clone_from(&s.filtered_by);
            }
        }
    }

    /// The counters a state carries that no acknowledgement tallies
    /// (retries, throttles, units), as they stand, into `c`.
    pub fn fill_unreconciled(&self, entity: usize, c: &mut Counts) {
        let e = self.entity(entity);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        c.retries = get(&e.retries);
        c.throttles = get(&e.throttles);
        c.consumed_milli_wcu = get(&e.consumed_milli_wcu);
        c.estimated_wcu = get(&e.estimated_wcu);
        c.repeated_keys = get(&e.repeated_keys);
    }

    /// Records of entity `i` whose fate is settled: written, overwritten,
    /// deleted, filtered, dead-lettered or recorded as not written.
    pub fn settled(&self, i: usize) -> u64 {
        let c = self.entity(i);
        [
            &c.written,
            &c.overwritten,
            &c.deleted,
            &c.filtered,
            &c.dead_lettered,
            &c.not_written,
        ]
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum()
    }

    /// Keeps the sink's latest rate sample.
    pub fn set_latest_rate(&self, sample: RateSample) {
        *self.latest_rate.lock().unwrap_or_else(|p| p.into_inner()) = Some(sample);
    }

    /// The sink's latest rate sample, once it has one.
    pub fn latest_rate(&self) -> Option<RateSample> {
        self.latest_rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records what the sink's rate controller did.
    pub fn set_rate(&self, summary: RateSummary) {
        *self.rate.lock().unwrap_or_else(|p| p.into_inner()) = Some(summary);
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EntityReport {
    pub entity: String,
    pub source_table: String,
    /// Records the sources produced.
    pub read: u64,
    /// Records the transform took (counted apart from `read`; they agree).
    pub transformed: u64,
    pub written: u64,
    /// Written to a key an earlier record of this run had written: the
    /// target holds only the later one (a collision).
    pub overwritten: u64,
    pub filtered: u64,
    /// Items that cannot be written: invalid source data, rejected by DynamoDB.
    pub dead_lettered: u64,
    /// Good items the run stopped before writing.
    pub not_written: u64,
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
    /// Why items were not migrated: "stage: reason" -> items.
    pub not_migrated_reasons: BTreeMap<String, u64>,
    /// The mapping rule -> items it filtered out.
    #[serde(default)]
    pub filtered_by_rule: BTreeMap<String, u64>,
}

impl EntityReport {
    /// The TOTAL line before anything is added to it.
    pub fn totals() -> EntityReport {
        EntityReport {
            entity: "TOTAL".into(),
            reconciled: true,
            ..EntityReport::default()
        }
    }

    /// Adds another's counts (of another entity for totals, or of the same
    /// entity in another shard); reconciled only if both are.
    pub fn add(&mut self, o: &EntityReport) {
        self.read += o.read;
        self.transformed += o.transformed;
        self.written += o.written;
        self.overwritten += o.overwritten;
        self.filtered += o.filtered;
        self.dead_lettered += o.dead_lettered;
        self.not_written += o.not_written;
        self.deleted += o.deleted;
        self.stale_keys_deleted += o.stale_keys_deleted;
        self.stale_key_deletes_dead_lettered += o.stale_key_deletes_dead_lettered;
        self.retries += o.retries;
        self.throttles += o.throttles;
        self.write_units_consumed += o.write_units_consumed;
        self.write_units_estimated += o.write_units_estimated;
        self.repeated_keys_in_batch += o.repeated_keys_in_batch;
        self.read_seconds = self.read_seconds.max(o.read_seconds);
        self.reconciled &= o.reconciled;
        for (reason, n) in &o.not_migrated_reasons {
            *self.not_migrated_reasons.entry(reason.clone()).or_default() += n;
        }
        for (rule, n) in &o.filtered_by_rule {
            *self.filtered_by_rule.entry(rule.clone()).or_default() += n;
        }
    }

    /// read = transformed = written + overwritten + deleted + filtered +
    /// dead-lettered + not written.
    pub fn reconciles(&self) -> bool {
        self.read == self.transformed
            && self.transformed
                == self.written
                    + self.overwritten
                    + self.deleted
                    + self.filtered
                    + self.dead_lettered
                    + self.not_written
    }
}

/// The run report of `migrate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub command: String,
    pub mapping: String,
    pub target_table: String,
    pub source: String,
    pub started_at: String,
    pub duration_seconds: f64,
    /// The run stopped before the tables were read to the end (a signal
    /// or an error).
    pub interrupted: bool,
    /// The error that stopped it, if one did (with its file, line, table
    /// or key where it has them).
    pub error: Option<String>,
    pub dead_letter_file: Option<String>,
    pub entities: Vec<EntityReport>,
    pub totals: EntityReport,
    /// True when, for every entity, read = transformed = written + deleted
    /// + filtered + dead-lettered + not written.
    pub reconciled: bool,
    pub warnings: Vec<String>,
    /// Dead letters the run may have and still exit 0 (`--allow-dead-letters`).
    pub allowed_dead_letters: u64,
    /// Times the adaptive rate was cut after a throttle.
    pub rate_backoffs: u64,
    /// The lowest rate it was cut to, write units per second.
    pub lowest_rate: Option<f64>,
    /// What the sink achieved, every few seconds.
    pub rate_samples: Vec<RateSample>,
    /// Collisions are found by a Bloom filter: how many of the
    /// `overwritten` counts it expects to be false alarms.
    pub overwrite_false_alarms_expected: f64,
    /// ImportTable's own account, when the run imported (`--import-table`).
    pub import_table: Option<ImportAccount>,
    /// A follow's start and lag, when the run followed the streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowAccount>,
    /// The share of a sharded run this report covers: (index, count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<(u32, u32)>,
    /// A merged report: the reports it was made of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// 0 migrated, 2 failed or interrupted, 3 finished with items not migrated.
    pub exit_code: i32,
}

/// What a follow reports beyond the counts: where it started and how far
/// behind each table was when it stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FollowAccount {
    pub from: String,
    pub until_caught_up: bool,
    /// It stopped because every table was caught up.
    pub caught_up: bool,
    pub max_lag_seconds: f64,
    /// Records skipped as made before the start (the bulk copy holds them).
    pub skipped_before_start: u64,
    pub lag: Vec<crate::checkpoint::TableLag>,
}

/// What ImportTable reported of an import.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportAccount {
    pub import_arn: String,
    /// COMPLETED, FAILED or CANCELLED.
    pub status: String,
    pub processed: u64,
    pub imported: u64,
    pub errors: u64,
    pub failure: Option<String>,
    pub seconds: f64,
}

impl ImportAccount {
    /// Whether it agrees with our counts: every line we wrote processed,
    /// one item imported per distinct key we wrote, no error.
    pub fn agrees(&self, totals: &EntityReport) -> bool {
        self.status == "COMPLETED"
            && self.errors == 0
            && self.processed == totals.written + totals.overwritten
            && self.imported == totals.written
    }
}

/// How many dead letters a run may have and still succeed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Allowance {
    Count(u64),
    /// A percentage of the records read.
    Percent(f64),
}

impl Default for Allowance {
    fn default() -> Allowance {
        Allowance::Count(0)
    }
}

impl Allowance {
    /// The number of dead letters allowed for `read` records.
    pub fn limit(&self, read: u64) -> u64 {
        match *self {
            Allowance::Count(n) => n,
            Allowance::Percent(p) => (read as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl std::str::FromStr for Allowance {
    type Err = String;

    fn from_str(s: &str) -> Result<Allowance, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not a count (10) or a percentage (0.5%)");
        match s.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad())?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(format!("{s:?}: a percentage is between 0% and 100%"));
                }
                Ok(Allowance::Percent(p))
            }
            None => s.parse().map(Allowance::Count).map_err(|_| bad()),
        }
    }
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
    /// The error that stopped the run, if one did.
    pub error: Option<String>,
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
        let reasons = stats
            .reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let filtered_by = stats
            .filtered_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let rate = stats
            .rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        let entities: Vec<EntityReport> = names
            .iter()
            .enumerate()
            .map(|(i, (entity, table))| {
                let c = stats.entity(i);
                let overwritten = get(&c.overwritten);
                let (read, transformed, written, filtered, dead, unwritten, deleted) = (
                    get(&c.produced),
                    get(&c.read),
                    get(&c.written),
                    get(&c.filtered),
                    get(&c.dead_lettered),
                    get(&c.not_written),
                    get(&c.deleted),
                );
                EntityReport {
                    entity: entity.clone(),
                    source_table: table.clone(),
                    read,
                    transformed,
                    written,
                    overwritten,
                    filtered,
                    dead_lettered: dead,
                    not_written: unwritten,
                    deleted,
                    stale_keys_deleted: get(&c.stale_deleted),
                    stale_key_deletes_dead_lettered: get(&c.stale_dead_lettered),
                    retries: get(&c.retries),
                    throttles: get(&c.throttles),
                    write_units_consumed: get(&c.consumed_milli_wcu) as f64 / 1000.0,
                    write_units_estimated: get(&c.estimated_wcu),
                    repeated_keys_in_batch: get(&c.repeated_keys),
                    read_seconds: get(&c.read_millis) as f64 / 1000.0,
                    reconciled: read == transformed
                        && transformed
                            == written + overwritten + deleted + filtered + dead + unwritten,
                    not_migrated_reasons: reasons.get(i).cloned().unwrap_or_default(),
                    filtered_by_rule: filtered_by.get(i).cloned().unwrap_or_default(),
                }
            })
            .collect();
        let mut totals = EntityReport::totals();
        for e in &entities {
            totals.add(e);
        }
        // The reasons are listed per entity; the totals keep none.
        totals.not_migrated_reasons.clear();
        totals.filtered_by_rule.clear();
        let mut warnings = meta.source_warnings.clone();
        let false_alarms = f64::from_bits(stats.overwrite_false_alarms.load(Ordering::Relaxed));
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
            if e.not_written > 0 {
                warnings.push(format!(
                    "{}: {} items not written: the run stopped before writing them (listed in the dead-letter file)",
                    e.entity, e.not_written
                ));
            }
            if e.overwritten > 0 {
                warnings.push(format!(
                    "{}: {} items went to a target key an earlier record of this run had written (two source records, one target key: the target holds the later one); `verify --full` lists them with their source keys",
                    e.entity, e.overwritten
                ));
            }
            if e.read != e.transformed {
                warnings.push(format!(
                    "{}: the sources produced {} records but the transform took {}",
                    e.entity, e.read, e.transformed
                ));
            }
        }
        if meta.interrupted {
            let settled = totals.written + totals.overwritten + totals.deleted;
            let why = match &meta.error {
                Some(e) => format!("stopped by an error: {e}"),
                None => "interrupted".to_string(),
            };
            warnings.push(format!(
                "{why}; the tables were not read to the end; {settled} record(s) were written or deleted before it"
            ));
        }
        RunReport {
            command: meta.command,
            mapping: meta.mapping,
            target_table: meta.target_table,
            source: meta.source,
            started_at: meta.started_at,
            duration_seconds: meta.duration.as_secs_f64(),
            interrupted: meta.interrupted,
            error: meta.error,
            dead_letter_file: meta.dead_letter_file,
            reconciled: totals.reconciled,
            entities,
            totals,
            warnings,
            allowed_dead_letters: 0,
            rate_backoffs: rate.backoffs,
            lowest_rate: rate.lowest_rate,
            rate_samples: rate.samples,
            overwrite_false_alarms_expected: (false_alarms * 1000.0).round() / 1000.0,
            import_table: None,
            follow: None,
            shard: None,
            merged_from: Vec::new(),
            exit_code: EXIT_FAILED,
        }
    }

    /// Items that did not reach the target as the mapping makes them:
    /// dead letters (clean-up deletes included), items not written, and
    /// items a later record with the same target key replaced.
    pub fn not_migrated(&self) -> u64 {
        let t = &self.totals;
        t.dead_lettered + t.stale_key_deletes_dead_lettered + t.not_written + t.overwritten
    }

    /// Sets the verdict: 2 when the run failed (or did not reconcile),
    /// 3 when it finished with more dead letters than `allowance` allows
    /// or any item not written, else 0.
    pub fn judge(&mut self, failed: bool, allowance: Allowance) {
        self.allowed_dead_letters = allowance.limit(self.totals.read);
        let import_differs = self
            .import_table
            .as_ref()
            .is_some_and(|i| !i.agrees(&self.totals));
        self.exit_code = if failed || !self.reconciled {
            EXIT_FAILED
        } else if self.not_migrated() > self.allowed_dead_letters
            || self.totals.not_written > 0
            || import_differs
        {
            EXIT_NOT_MIGRATED
        } else {
            EXIT_OK
        };
    }

    /// The terminal summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<14} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>11} {:>8}\n",
            "entity",
            "read",
            "written",
            "deleted",
            "filtered",
            "dead",
            "unwritten",
            "retries",
            "throttles",
            "write units",
            "read s"
        ));
        for e in self.entities.iter().chain(std::iter::once(&self.totals)) {
            out.push_str(&format!(
                "{:<14} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>11.1} {:>8.1}{}\n",
                e.entity,
                e.read,
                e.written,
                e.deleted,
                e.filtered,
                e.dead_lettered,
                e.not_written,
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
            "\nread {} = written {} + overwritten {} + deleted {} + filtered {} + dead-lettered {} + not written {}: {}\n",
            t.read,
            t.written,
            t.overwritten,
            t.deleted,
            t.filtered,
            t.dead_lettered,
            t.not_written,
            if self.reconciled {
                "reconciled"
            } else {
                "DOES NOT RECONCILE"
            }
        ));
        if t.read != t.transformed {
            out.push_str(&format!(
                "the sources produced {} records, the transform took {}\n",
                t.read, t.transformed
            ));
        }
        out.push_str(&format!(
            "{:.1} s into {}\n",
            self.duration_seconds, self.target_table
        ));
        if !self.merged_from.is_empty() {
            out.push_str(&format!(
                "merged from {} shard reports (the longest shard's time): {}\n",
                self.merged_from.len(),
                self.merged_from.join(", ")
            ));
        }
        out.push_str(&self.render_rate());
        out.push_str(&self.render_filtered());
        out.push_str(&self.render_not_migrated());
        out.push_str(&self.render_import());
        out.push_str(&self.render_follow());
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out.push_str(&self.render_verdict());
        out
    }

    fn render_rate(&self) -> String {
        let peak = self
            .rate_samples
            .iter()
            .map(|s| s.items_per_s)
            .fold(0.0, f64::max);
        let mut out = format!("write rate: best {peak:.0} items/s over a sample; ");
        match (self.rate_backoffs, self.lowest_rate) {
            (0, _) | (_, None) => out.push_str("no throttling, the rate was never cut\n"),
            (n, Some(low)) => out.push_str(&format!(
                "throttled, the rate was cut {n} time(s), to {low:.0} write units/s at the lowest ({} throttle(s) in all)\n",
                self.totals.throttles
            )),
        }
        out
    }

    /// What each mapping rule left out, by entity.
    fn render_filtered(&self) -> String {
        let mut out = String::new();
        for e in &self.entities {
            for (rule, n) in &e.filtered_by_rule {
                out.push_str(&format!("  {:<14} {n:>7}  {rule}\n", e.entity));
            }
        }
        match out.is_empty() {
            true => out,
            false => format!("filtered by a mapping rule, by entity and rule:\n{out}"),
        }
    }

    fn render_not_migrated(&self) -> String {
        if self.not_migrated() == 0 {
            return String::new();
        }
        let mut out = format!(
            "not migrated: {} item(s) (dead letters allowed: {}), by entity and reason:\n",
            self.not_migrated(),
            self.allowed_dead_letters
        );
        for e in self.entities.iter().filter(|e| e.overwritten > 0) {
            out.push_str(&format!(
                "  {:<14} {:>7}  replaced by a later record with the same target key (a collision; the filter expects {:.3} false alarm(s) in the whole run)\n",
                e.entity, e.overwritten, self.overwrite_false_alarms_expected
            ));
        }
        for e in &self.entities {
            for (reason, n) in &e.not_migrated_reasons {
                out.push_str(&format!("  {:<14} {n:>7}  {reason}\n", e.entity));
            }
        }
        if let Some(p) = &self.dead_letter_file {
            out.push_str(&format!("  listed in {p}\n"));
        }
        out
    }

    /// ImportTable's counts beside ours.
    fn render_import(&self) -> String {
        let Some(i) = &self.import_table else {
            return String::new();
        };
        let t = &self.totals;
        let verdict = match i.agrees(t) {
            true => "they agree",
            false => "THEY DIFFER (ImportTable's item errors are in CloudWatch Logs)",
        };
        format!(
            "ImportTable {} in {:.0} s: processed {}, imported {}, errors {}{}; we wrote {} line(s) for {} key(s): {verdict}\n",
            i.status,
            i.seconds,
            i.processed,
            i.imported,
            i.errors,
            i.failure.as_ref().map(|f| format!(" ({f})")).unwrap_or_default(),
            t.written + t.overwritten,
            t.written,
        )
    }

    fn render_follow(&self) -> String {
        let Some(f) = &self.follow else {
            return String::new();
        };
        let mut out = format!("followed the streams from {}", f.from);
        if f.skipped_before_start > 0 {
            out.push_str(&format!(
                "; {} record(s) made before that skipped",
                f.skipped_before_start
            ));
        }
        out.push_str(":\n");
        for line in crate::checkpoint::follow::lag_lines(&f.lag, f.max_lag_seconds) {
            out.push_str(&format!("  {line}\n"));
        }
        out
    }

    fn render_verdict(&self) -> String {
        match self.exit_code {
            EXIT_OK if self.follow.as_ref().is_some_and(|f| f.caught_up) => format!(
                "caught up: every change read from the streams was applied, filtered by a rule, or dead-lettered within the allowance, and every table was within {} s of its stream\n",
                self.follow.as_ref().map_or(0.0, |f| f.max_lag_seconds)
            ),
            EXIT_OK => "done: every item read was migrated, filtered by a rule, or dead-lettered within the allowance\n".into(),
            EXIT_NOT_MIGRATED => format!(
                "exit 3: the run finished, but {} item(s) were not migrated ({} allowed with --allow-dead-letters)\n",
                self.not_migrated(),
                self.allowed_dead_letters
            ),
            _ => "exit 2: the run did not finish; see the error below\n".into(),
        }
    }
}

/// A JSON value for the terminal: each string longer than `max`
/// characters is cut there, with its full length (`"Lorem ip…" (40213
/// bytes)`), so one huge item cannot flood a screen. Reports keep values whole.
pub fn clipped(v: &serde_json::Value, max: usize) -> String {
    let mut out = String::new();
    clip_into(&mut out, v, max);
    out
}

fn clip_into(out: &mut String, v: &serde_json::Value, max: usize) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.chars().count() > max => {
            let head: String = s.chars().take(max).collect();
            let quoted = Value::String(head).to_string();
            out.push_str(&quoted[..quoted.len() - 1]);
            out.push_str(&format!("…\" ({} bytes)", s.len()));
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                clip_into(out, x, max);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, x)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                clip_into(out, x, max);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// How a reason is counted in reports: "stage: kind".
pub fn reason_key(stage: Stage, reason: &str) -> String {
    format!("{}: {}", stage.as_str(), reason_kind(stage, reason))
}

/// A reason without what is particular to one record (the `file:line: `
/// of a read error), cut to a readable length, for counting.
pub fn reason_kind(stage: Stage, reason: &str) -> String {
    let mut text = reason;
    if stage == Stage::Read {
        // "path:12: message" -> "message"
        let b = reason.as_bytes();
        for (i, _) in reason.match_indices(':') {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 && reason[i + 1 + digits..].starts_with(": ") {
                text = &reason[i + 1 + digits + 2..];
                break;
            }
        }
    }
    match text.char_indices().nth(120) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
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

#[cfg(test)]
mod tests {

    #[test]
    fn long_values_are_cut_with_their_length_and_short_ones_kept() {
        let v = serde_json::json!({"content": {"S": "x".repeat(500)}, "n": {"N": "5"}, "l": [{"S": "ok"}]});
        let shown = clipped(&v, 8);
        assert_eq!(
            shown,
            r#"{"content":{"S":"xxxxxxxx…" (500 bytes)},"n":{"N":"5"},"l":[{"S":"ok"}]}"#
        );
    }
    use super::*;

    #[test]
    fn allowances_parse_as_counts_or_percentages() {
        assert_eq!("10".parse(), Ok(Allowance::Count(10)));
        assert_eq!("0.5%".parse(), Ok(Allowance::Percent(0.5)));
        assert!("-1".parse::<Allowance>().is_err());
        assert!("150%".parse::<Allowance>().is_err());
        assert!("ten".parse::<Allowance>().is_err());
        assert_eq!(Allowance::Percent(1.0).limit(1_050), 10);
        assert_eq!(Allowance::Count(3).limit(1_000_000), 3);
    }

    fn report_with(dead: u64, unwritten: u64) -> RunReport {
        let stats = RunStats::new(1);
        let c = stats.entity(0);
        RunStats::add(&c.produced, 100);
        RunStats::add(&c.read, 100);
        RunStats::add(&c.written, 100 - dead - unwritten);
        for _ in 0..dead {
            stats.count_not_migrated(0, Stage::Transform, true, "userId: missing");
        }
        for _ in 0..unwritten {
            stats.count_not_migrated(0, Stage::Unwritten, true, "stalled");
        }
        RunReport::build(&stats, &[("user".into(), "users".into())], meta())
    }

    fn meta() -> RunMeta {
        RunMeta {
            command: "migrate".into(),
            mapping: "m.toml".into(),
            target_table: "t".into(),
            source: "scan".into(),
            started_at: String::new(),
            duration: Duration::ZERO,
            interrupted: false,
            error: None,
            dead_letter_file: None,
            source_warnings: Vec::new(),
        }
    }

    #[test]
    fn the_exit_code_says_whether_everything_was_migrated() {
        let mut r = report_with(0, 0);
        r.judge(false, Allowance::default());
        assert!(r.reconciled);
        assert_eq!(r.exit_code, EXIT_OK);
        let mut r = report_with(2, 0);
        r.judge(false, Allowance::default());
        assert_eq!(r.exit_code, EXIT_NOT_MIGRATED);
        assert_eq!(
            r.entities[0].not_migrated_reasons["transform: userId: missing"],
            2
        );
        r.judge(false, Allowance::Count(2));
        assert_eq!(r.exit_code, EXIT_OK, "within the allowance");
        r.judge(false, Allowance::Percent(1.0));
        assert_eq!(r.exit_code, EXIT_NOT_MIGRATED, "1% of 100 is 1");
        r.judge(true, Allowance::Count(2));
        assert_eq!(r.exit_code, EXIT_FAILED);
        // An item not written is never allowed.
        let mut r = report_with(0, 1);
        r.judge(false, Allowance::Count(5));
        assert_eq!(r.exit_code, EXIT_NOT_MIGRATED);
    }

    #[test]
    fn an_import_whose_counts_differ_from_ours_is_not_a_success() {
        let mut r = report_with(0, 0);
        let written = r.totals.written;
        let account = |processed: u64, imported: u64, errors: u64, status: &str| ImportAccount {
            import_arn: "arn".into(),
            status: status.into(),
            processed,
            imported,
            errors,
            failure: None,
            seconds: 1.0,
        };
        r.import_table = Some(account(written, written, 0, "COMPLETED"));
        r.judge(false, Allowance::default());
        assert_eq!(r.exit_code, EXIT_OK);
        assert!(r.render().contains("they agree"));
        for differing in [
            account(written, written - 1, 0, "COMPLETED"),
            account(written + 1, written, 0, "COMPLETED"),
            account(written, written, 1, "COMPLETED"),
            account(written, written, 0, "FAILED"),
        ] {
            r.import_table = Some(differing.clone());
            r.judge(false, Allowance::default());
            assert_eq!(r.exit_code, EXIT_NOT_MIGRATED, "{differing:?}");
            assert!(r.render().contains("THEY DIFFER"));
        }
    }

    #[test]
    fn counts_that_disagree_do_not_reconcile() {
        let stats = RunStats::new(1);
        RunStats::add(&stats.entity(0).produced, 5);
        RunStats::add(&stats.entity(0).read, 4);
        RunStats::add(&stats.entity(0).written, 4);
        let r = RunReport::build(&stats, &[("user".into(), "users".into())], meta());
        assert!(!r.reconciled, "5 produced, 4 transformed");
    }

    #[test]
    fn read_errors_are_counted_without_their_file_and_line() {
        assert_eq!(
            reason_kind(Stage::Read, "data/a.json.gz:12: unknown type \"X\""),
            "unknown type \"X\""
        );
        assert_eq!(reason_kind(Stage::Write, "a: b"), "a: b");
    }
}
