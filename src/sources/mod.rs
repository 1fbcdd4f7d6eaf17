//! Sources: where legacy items come from.
//!
//! A source reads one legacy table and sends its records, page by page, as
//! [`SourceBatch`]es into a bounded channel; it knows nothing of mappings or
//! the target. Two sources: the parallel Scan ([`scan`]) and DynamoDB's
//! Export-to-S3 files ([`export`]). This module also owns the plan of where
//! each entity is read from ([`plan`]): the facts about a source table
//! (does it exist, does its key match the mapping, how big is it), which
//! exports belong to which table, and the order they apply in ([`phases`]:
//! full exports and scans first, then each table's incremental exports in
//! time order).

pub mod export;
pub mod moved;
pub mod proof;
pub mod scan;
pub mod streams;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::checkpoint::{Cursor, Part, UnitState};
use crate::export::ExportError;
use crate::item::Item;
use crate::mapping::Mapping;

/// One record read from a source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceRecord {
    /// A whole item (Scan, full export).
    Item(Item),
    /// An incremental export's change: put `new` if present, else delete.
    Change {
        keys: Item,
        new: Option<Item>,
        old: Option<Item>,
    },
    /// A line that holds no valid item: it is dead-lettered with `reason`.
    Bad { reason: String, raw: String },
    /// An item the mapping already made (a write `replay` re-drives): put
    /// it, or delete by its key, as it is.
    Target { delete: bool, item: Item },
}

/// A page of records from one source table.
#[derive(Debug)]
pub struct SourceBatch {
    /// Index of the entity (mapping order) whose table this is.
    pub entity: usize,
    pub records: Vec<SourceRecord>,
    /// Its ticket, when the run keeps a state: settled once every record
    /// of the batch is written, filtered or dead-lettered.
    pub part: Option<Part>,
}

/// What flows from the sources to the transform.
#[derive(Debug)]
pub enum SourceMsg {
    Batch(SourceBatch),
    /// Everything before this is to be written before it is answered.
    Barrier(oneshot::Sender<()>),
}

/// What the plan knows of a source table.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    /// Key attributes, partition first.
    pub key: Vec<String>,
    /// DynamoDB's approximate item count (refreshed about every 6 hours on AWS).
    pub item_count: i64,
    pub size_bytes: i64,
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source table {table} does not exist (entity {entity})")]
    Missing { table: String, entity: String },
    #[error("source table {table}: DescribeTable: {message}")]
    Describe { table: String, message: String },
    #[error("source table {table}: its key is {actual:?} but the mapping's source_key for entity {entity} says {expected:?}")]
    KeyMismatch {
        table: String,
        entity: String,
        expected: Vec<String>,
        actual: Vec<String>,
    },
    #[error("scanning {table} (segment {segment}): {message}")]
    Scan {
        table: String,
        segment: u32,
        message: String,
    },
    #[error("the pipeline stopped before the source finished")]
    Cancelled,
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("--export names table {0:?}, which no entity of the mapping reads")]
    UnknownExportTable(String),
    #[error("table {table} (entity {entity}) has no --export; name one, or pass --scan-missing to scan it")]
    NoExport { table: String, entity: String },
    #[error("table {table} has {count} full exports ({labels}); give one, and incremental exports on top of it")]
    TwoFullExports {
        table: String,
        count: usize,
        labels: String,
    },
    #[error("entity {entity}: the incremental export {label} has the NEW_IMAGE view, so a delete carries only the keys ({keys}), but the target key needs {missing}; export with NEW_AND_OLD_IMAGES")]
    DeletesNeedOldImages {
        entity: String,
        label: String,
        keys: String,
        missing: String,
    },
    #[error("table {table}: the exports do not chain: {problems}; pass --accept-export-gaps to read them anyway")]
    ExportChain { table: String, problems: String },
    #[error("a source task failed: {0}")]
    Task(String),
}

/// Describes a source table and checks its key against the mapping's.
pub async fn describe(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    entity: &str,
    expected_key: &[String],
) -> Result<TableInfo, SourceError> {
    let out = match client.describe_table().table_name(table).send().await {
        Ok(o) => o,
        Err(e) => {
            if crate::aws::error_code(&e).as_deref() == Some("ResourceNotFoundException") {
                return Err(SourceError::Missing {
                    table: table.into(),
                    entity: entity.into(),
                });
            }
            return Err(SourceError::Describe {
                table: table.into(),
                message: crate::aws::describe_error(&e),
            });
        }
    };
    let desc = out.table().ok_or_else(|| SourceError::Describe {
        table: table.into(),
        message: "no description returned".into(),
    })?;
    let mut key: Vec<(bool, String)> = desc
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.key_type().as_str() != "HASH",
                k.attribute_name().to_string(),
            )
        })
        .collect();
    key.sort();
    let key: Vec<String> = key.into_iter().map(|(_, n)| n).collect();
    if key != expected_key {
        return Err(SourceError::KeyMismatch {
            table: table.into(),
            entity: entity.into(),
            expected: expected_key.to_vec(),
            actual: key,
        });
    }
    Ok(TableInfo {
        name: table.to_string(),
        key,
        item_count: desc.item_count().unwrap_or(0),
        size_bytes: desc.table_size_bytes().unwrap_or(0),
    })
}

/// Where one entity's records come from.
#[derive(Debug, Clone)]
pub enum EntitySource {
    Scan(TableInfo),
    Export {
        full: Option<export::Export>,
        incrementals: Vec<export::Export>,
    },
}

impl EntitySource {
    /// The number of records expected, for progress bars.
    pub fn expected(&self) -> u64 {
        match self {
            EntitySource::Scan(i) => i.item_count.max(0) as u64,
            EntitySource::Export { full, incrementals } => full
                .iter()
                .chain(incrementals)
                .filter_map(|e| e.item_count)
                .sum(),
        }
    }

    /// The number of export files to read (none for a Scan).
    pub fn files(&self) -> usize {
        match self {
            EntitySource::Scan(_) => 0,
            EntitySource::Export { full, incrementals } => {
                full.iter().chain(incrementals).map(|e| e.files.len()).sum()
            }
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            EntitySource::Scan(_) => "scan",
            EntitySource::Export { .. } => "export",
        }
    }
}

/// How the user asked the legacy tables to be read.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// (legacy table, export location), in the order given.
    pub exports: Vec<(String, String)>,
    /// Scan the tables that have no export.
    pub scan_missing: bool,
    /// Accept checksum and count mismatches in exports, as warnings.
    pub accept_mismatch: bool,
    /// Accept export chains with gaps or overlaps, as warnings.
    pub accept_gaps: bool,
}

/// Decides where each entity is read from, checking everything that can be
/// checked before reading. Returns the plan and warnings for the report.
pub async fn plan(
    client: &aws_sdk_dynamodb::Client,
    store: &export::Store,
    mapping: &Mapping,
    opts: &SourceOptions,
) -> Result<(Vec<EntitySource>, Vec<String>), SourceError> {
    let mut by_table: HashMap<&str, Vec<&str>> = HashMap::new();
    for (table, location) in &opts.exports {
        if mapping.entity_for_table(table).is_none() {
            return Err(SourceError::UnknownExportTable(table.clone()));
        }
        by_table
            .entry(table.as_str())
            .or_default()
            .push(location.as_str());
    }
    let mut warnings = Vec::new();
    let mut plan = Vec::new();
    for entity in &mapping.entities {
        let Some(locations) = by_table.get(entity.source_table.as_str()) else {
            if !opts.exports.is_empty() && !opts.scan_missing {
                return Err(SourceError::NoExport {
                    table: entity.source_table.clone(),
                    entity: entity.name.clone(),
                });
            }
            plan.push(EntitySource::Scan(
                describe(
                    client,
                    &entity.source_table,
                    &entity.name,
                    &entity.source_key,
                )
                .await?,
            ));
            continue;
        };
        let mut full = Vec::new();
        let mut incrementals = Vec::new();
        for label in locations {
            let (e, w) =
                export::open(store, label, &entity.source_table, opts.accept_mismatch).await?;
            warnings.extend(w);
            if e.incremental {
                if !e.has_old_images {
                    check_keys_only_deletes(entity, &e, mapping)?;
                }
                incrementals.push(e);
            } else {
                full.push(e);
            }
        }
        if full.len() > 1 {
            let labels = full
                .iter()
                .map(|e| e.label.clone())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SourceError::TwoFullExports {
                table: entity.source_table.clone(),
                count: full.len(),
                labels,
            });
        }
        incrementals.sort_by(|a, b| a.as_of.cmp(&b.as_of));
        let problems = chain_problems(full.last(), &incrementals);
        if !problems.is_empty() {
            if !opts.accept_gaps {
                return Err(SourceError::ExportChain {
                    table: entity.source_table.clone(),
                    problems: problems.join("; "),
                });
            }
            warnings.extend(problems.into_iter().map(|p| {
                format!(
                    "{}: {p} (accepted: --accept-export-gaps)",
                    entity.source_table
                )
            }));
        }
        plan.push(EntitySource::Export {
            full: full.pop(),
            incrementals,
        });
    }
    Ok((plan, warnings))
}

/// What is wrong with a table's chain of exports: the full export's time,
/// then each incremental's window `[exportFromTime, exportToTime)`, must
/// follow on without a gap (changes in neither export) or an overlap, and
/// no incremental may end before the full export (it would roll data back).
pub fn chain_problems(
    full: Option<&export::Export>,
    incrementals: &[export::Export],
) -> Vec<String> {
    let windows: Vec<(&str, Option<&str>, &str)> = incrementals
        .iter()
        .map(|e| (e.label.as_str(), e.from_time.as_deref(), e.as_of.as_str()))
        .collect();
    chain_windows(full.map(|f| (f.label.as_str(), f.as_of.as_str())), &windows)
}

/// [`chain_problems`] on (label, time) and (label, from, to) alone.
pub fn chain_windows(
    full: Option<(&str, &str)>,
    incrementals: &[(&str, Option<&str>, &str)],
) -> Vec<String> {
    let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let mut problems = Vec::new();
    let Some(first) = incrementals.first() else {
        return problems;
    };
    let mut prev = match full {
        Some((label, t)) => match time(t) {
            Some(at) => (label.to_string(), at),
            None => {
                problems.push(format!("the full export {label} does not say when it was taken, so the incremental exports cannot be placed after it"));
                return problems;
            }
        },
        None => {
            problems.push(format!("incremental export {} has no full export before it: the state it starts from is unknown", first.0));
            return problems;
        }
    };
    for (label, from, to) in incrementals {
        let (Some(from), Some(to)) = (from.and_then(time), time(to)) else {
            problems.push(format!(
                "incremental export {label} has no readable exportFromTime/exportToTime"
            ));
            continue;
        };
        let (prev_label, prev_to) = &prev;
        let secs = |d: chrono::TimeDelta| d.num_milliseconds() as f64 / 1000.0;
        if to <= *prev_to {
            problems.push(format!("incremental export {label} ends at {to}, before {prev_label} (as of {prev_to}): it would roll data back"));
        } else if from > *prev_to {
            problems.push(format!("a gap of {} s between {prev_label} (as of {prev_to}) and {label} (from {from}): writes from {prev_to} to {from} are in neither export", secs(from - *prev_to)));
        } else if from < *prev_to {
            problems.push(format!(
                "{label} (from {from}) overlaps {prev_label} (as of {prev_to}) by {} s",
                secs(*prev_to - from)
            ));
        }
        prev = (label.to_string(), to);
    }
    problems
}

/// With the NEW_IMAGE view a delete has only the legacy keys: the target's
/// key templates must need nothing else.
fn check_keys_only_deletes(
    entity: &crate::mapping::Entity,
    e: &export::Export,
    mapping: &Mapping,
) -> Result<(), SourceError> {
    let missing = target_key_beyond_legacy_key(entity, mapping);
    if missing.is_empty() {
        return Ok(());
    }
    Err(SourceError::DeletesNeedOldImages {
        entity: entity.name.clone(),
        label: e.label.clone(),
        keys: entity.source_key.join(", "),
        missing: missing.join(", "),
    })
}

/// The attributes the target's primary key is made of that are not in the
/// legacy key: a change that carries only the keys cannot say where its
/// item is in the target unless this is empty.
pub fn target_key_beyond_legacy_key(
    entity: &crate::mapping::Entity,
    mapping: &Mapping,
) -> Vec<String> {
    let primary = mapping.table.primary_key();
    let mut missing: Vec<String> = entity
        .keys
        .iter()
        .filter(|(name, _)| primary.contains(&name.as_str()))
        .flat_map(|(_, t)| t.attributes())
        .filter(|a| !entity.source_key.iter().any(|k| k == a))
        .map(str::to_string)
        .collect();
    missing.dedup();
    missing
}

/// The first `limit` records of an entity's source (the full export's,
/// then the incrementals'), and where they came from, in words.
pub async fn first_records(
    client: &aws_sdk_dynamodb::Client,
    store: &export::Store,
    table: &str,
    source: &EntitySource,
    limit: usize,
    stall: std::time::Duration,
) -> Result<(Vec<SourceRecord>, String), SourceError> {
    match source {
        EntitySource::Scan(_) => {
            let items = scan::scan_first(client, table, limit, stall).await?;
            let records = items.into_iter().map(SourceRecord::Item).collect();
            Ok((records, "scan".to_string()))
        }
        EntitySource::Export { full, incrementals } => {
            let mut records = Vec::new();
            let mut labels = Vec::new();
            for e in full.iter().chain(incrementals) {
                if records.len() >= limit {
                    break;
                }
                labels.push(e.label.clone());
                let more = export::read_first(store, e, limit - records.len(), stall).await?;
                records.extend(more);
            }
            Ok((records, format!("export {}", labels.join(", "))))
        }
    }
}

/// The items among some records, for checking the mapping against the
/// data: whole items, and the images of changes.
pub fn images(records: &[SourceRecord]) -> Vec<Item> {
    records
        .iter()
        .filter_map(|r| match r {
            SourceRecord::Item(i) => Some(i.clone()),
            SourceRecord::Change { new, old, .. } => new.clone().or_else(|| old.clone()),
            SourceRecord::Bad { .. } | SourceRecord::Target { .. } => None,
        })
        .collect()
}

/// The kinds of source a plan reads, in words ("export+scan").
pub fn source_words(plan: &[EntitySource]) -> String {
    let mut kinds: Vec<&str> = plan.iter().map(EntitySource::describe).collect();
    kinds.sort();
    kinds.dedup();
    kinds.join("+")
}

/// The number of phases: 1 (scans and full exports) plus the most
/// incremental exports any table has.
pub fn phases(plan: &[EntitySource]) -> usize {
    1 + plan
        .iter()
        .map(|s| match s {
            EntitySource::Export { incrementals, .. } => incrementals.len(),
            EntitySource::Scan(_) => 0,
        })
        .max()
        .unwrap_or(0)
}

/// One process's share of a run split over several (`--shard I/N`): the
/// Scan segments and export data files whose number modulo N is I.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether the `n`th segment or file of a table (or an export) is this shard's.
    pub fn takes(&self, n: usize) -> bool {
        n as u64 % u64::from(self.count) == u64::from(self.index)
    }

    /// "shard 2 of 3" (counted from 0, as the schedulers count).
    pub fn words(&self) -> String {
        format!("shard {} of {}", self.index, self.count)
    }

    /// Checks that `set` (a name and its (index, count) per file) holds
    /// every shard of one count, each once: what a merge needs.
    pub fn complete(set: &[(&str, (u32, u32))]) -> Result<(), String> {
        let Some((first, (_, count))) = set.first() else {
            return Err("nothing to merge".into());
        };
        let mut seen: Vec<Option<&str>> = vec![None; *count as usize];
        for (name, (index, n)) in set {
            if n != count {
                return Err(format!(
                    "{name} is shard {index} of {n}, but {first} is of {count}"
                ));
            }
            match seen.get_mut(*index as usize) {
                Some(Some(other)) => {
                    return Err(format!("{name} and {other} are both shard {index} of {n}"))
                }
                Some(slot) => *slot = Some(name),
                None => return Err(format!("{name}: shard {index} of {n} is out of range")),
            }
        }
        let missing: Vec<String> = (0..seen.len())
            .filter(|i| seen[*i].is_none())
            .map(|i| i.to_string())
            .collect();
        match missing.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "shard(s) {} of {count} missing: a merge covers every shard",
                missing.join(", ")
            )),
        }
    }

    /// A table's Scan segments, rounded up to a multiple of the shards so
    /// each shard has the same number.
    pub fn segments(&self, total: u32) -> u32 {
        total.div_ceil(self.count).max(1) * self.count
    }
}

/// The units of work of a plan, in a fixed order: per entity, its Scan
/// segments, or its export files phase by phase; with a shard, only its
/// share. A state file keeps one watermark per unit.
pub fn units(
    plan: &[EntitySource],
    cfg: &scan::ScanConfig,
    shard: Option<Shard>,
) -> Vec<UnitState> {
    let mine = |n: usize| shard.is_none_or(|s| s.takes(n));
    let mut out = Vec::new();
    for (entity, source) in plan.iter().enumerate() {
        match source {
            EntitySource::Scan(info) => {
                let total = scan::segment_count(info, cfg);
                let total = shard.map_or(total, |s| s.segments(total));
                out.extend((0..total).filter(|&i| mine(i as usize)).map(|i| UnitState {
                    entity,
                    name: format!("{} scan segment {} of {total}", info.name, i + 1),
                    segment: Some((i, total)),
                    ..UnitState::default()
                }));
            }
            EntitySource::Export { full, incrementals } => {
                let by_phase = full.iter().map(|f| (0, f));
                let later = incrementals.iter().enumerate().map(|(i, e)| (i + 1, e));
                for (phase, export) in by_phase.chain(later) {
                    let files = export.files.iter().enumerate().filter(|(n, _)| mine(*n));
                    out.extend(files.map(|(_, f)| UnitState {
                        entity,
                        phase,
                        name: f.object.to_string(),
                        ..UnitState::default()
                    }));
                }
            }
        }
    }
    out
}

/// What every source task shares.
#[derive(Clone)]
pub struct Readers {
    pub client: aws_sdk_dynamodb::Client,
    pub store: export::Store,
    pub scan: scan::ScanConfig,
    /// Scan segments and export files read at once, across all tables.
    pub permits: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    pub on_records: Arc<dyn Fn(usize, u64) + Send + Sync>,
    /// Called with the entity when one of its export files is read to the end.
    pub on_file: Arc<dyn Fn(usize) + Send + Sync>,
    /// The plan's units (see [`units`]), where each starts; done ones are skipped.
    pub units: Arc<Vec<UnitState>>,
    /// Issues the tickets of every batch when the run keeps a state.
    pub tracker: Option<Arc<crate::checkpoint::Tracker>>,
    /// Prove each export file (MD5, record count) in a pass of its own
    /// before any of its records goes on: for runs that write. A run that
    /// writes nothing checks the same in its one pass, and fails as surely.
    pub prove_first: bool,
}

impl Readers {
    /// Readers of a whole plan that keep no state, show no progress and
    /// write nothing (`verify`, `plan`): files are checked as they are read.
    pub fn plain(
        client: &aws_sdk_dynamodb::Client,
        store: &export::Store,
        scan: &scan::ScanConfig,
        read_concurrency: usize,
        plan: &[EntitySource],
    ) -> Readers {
        // Nothing stops these reads early: the sender may go at once.
        let (_, shutdown) = watch::channel(false);
        Readers {
            client: client.clone(),
            store: store.clone(),
            scan: scan.clone(),
            permits: Arc::new(Semaphore::new(read_concurrency.max(1))),
            shutdown,
            on_records: Arc::new(|_, _| {}),
            on_file: Arc::new(|_| {}),
            units: Arc::new(units(plan, scan, None)),
            tracker: None,
            prove_first: false,
        }
    }

    fn cursor(&self, unit: usize) -> Option<Cursor> {
        self.tracker.as_ref().map(|t| Cursor {
            tracker: t.clone(),
            unit,
        })
    }
}

type PhaseTasks = tokio::task::JoinSet<(usize, Result<Vec<String>, SourceError>)>;

/// Starts the reads of phase `phase` (its units not done yet, each from
/// where it stands): each task returns its warnings.
pub fn spawn_phase(
    phase: usize,
    plan: &[EntitySource],
    readers: &Readers,
    tx: &mpsc::Sender<SourceMsg>,
    tasks: &mut PhaseTasks,
) {
    let mut segments: HashMap<usize, Vec<scan::Segment>> = HashMap::new();
    let mut files: HashMap<(usize, &str), (usize, &UnitState)> = HashMap::new();
    for (i, u) in readers.units.iter().enumerate() {
        if u.phase != phase || u.done {
            continue;
        }
        match u.segment {
            Some((index, total)) => segments.entry(u.entity).or_default().push(scan::Segment {
                index,
                total,
                start: u
                    .after
                    .as_ref()
                    .and_then(|k| crate::item::item_from_json(k).ok()),
                cursor: readers.cursor(i),
            }),
            None => {
                files.insert((u.entity, u.name.as_str()), (i, u));
            }
        }
    }
    for (entity, source) in plan.iter().enumerate() {
        match (source, phase) {
            (EntitySource::Scan(info), 0) => {
                let Some(segments) = segments.remove(&entity) else {
                    continue;
                };
                let r = readers.clone();
                let table = scan::TableScan {
                    client: r.client,
                    info: info.clone(),
                    entity,
                    cfg: r.scan,
                    tx: tx.clone(),
                    permits: r.permits,
                    shutdown: r.shutdown,
                    on_page: r.on_records,
                };
                tasks.spawn(async move {
                    let result = scan::scan_table(table, segments).await;
                    (entity, result.map(|_| Vec::new()))
                });
            }
            (EntitySource::Export { full, incrementals }, p) => {
                let export = if p == 0 {
                    full.as_ref()
                } else {
                    incrementals.get(p - 1)
                };
                let Some(export) = export else { continue };
                for file in &export.files {
                    let name = file.object.to_string();
                    let Some(&(unit, state)) = files.get(&(entity, name.as_str())) else {
                        continue;
                    };
                    let job = FileJob {
                        entity,
                        export: export.clone(),
                        file: file.clone(),
                        skip: state.records,
                        cursor: readers.cursor(unit),
                    };
                    tasks.spawn(job.run(readers.clone(), tx.clone()));
                }
            }
            _ => {}
        }
    }
}

/// One export file to read, from its `skip`th record.
struct FileJob {
    entity: usize,
    export: export::Export,
    file: export::DataFile,
    skip: u64,
    cursor: Option<Cursor>,
}

impl FileJob {
    async fn run(
        self,
        r: Readers,
        tx: mpsc::Sender<SourceMsg>,
    ) -> (usize, Result<Vec<String>, SourceError>) {
        let entity = self.entity;
        let Ok(_permit) = r.permits.acquire_owned().await else {
            return (entity, Err(SourceError::Cancelled));
        };
        if *r.shutdown.borrow() {
            return (entity, Ok(Vec::new()));
        }
        tracing::info!("reading {} from record {}", self.file.object, self.skip + 1);
        let out = export::FileSink {
            entity,
            tx: &tx,
            on_records: &*r.on_records,
            shutdown: Some(&r.shutdown),
            stall: r.scan.stall_timeout,
            prove: r.prove_first,
            skip: self.skip,
            cursor: self.cursor,
        };
        let result = export::read_file(&r.store, &self.export, &self.file, &out).await;
        if result.as_ref().is_ok_and(|o| !o.interrupted) {
            (r.on_file)(entity);
        }
        (
            entity,
            result.map(|o| o.warnings).map_err(SourceError::from),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: (&str, &str) = ("full", "2026-01-14T10:18:50.622Z");

    #[test]
    fn a_shard_takes_its_segments_of_a_count_made_a_multiple_of_the_shards() {
        let info = TableInfo {
            name: "Users".into(),
            key: vec!["userId".into()],
            item_count: 10,
            size_bytes: 100,
        };
        let cfg = scan::ScanConfig {
            segments: Some(4),
            consistent_read: false,
            read_units_per_second: None,
            page_limit: None,
            projection: None,
            stall_timeout: std::time::Duration::from_secs(1),
        };
        let plan = [EntitySource::Scan(info.clone()), EntitySource::Scan(info)];
        let mut all = Vec::new();
        for index in 0..3 {
            let shard = Shard { index, count: 3 };
            let units = units(&plan, &cfg, Some(shard));
            assert_eq!(units.len(), 4, "two segments of each table: {units:?}");
            for u in &units {
                let (segment, total) = u.segment.unwrap();
                assert_eq!((total, segment % 3), (6, index));
                all.push((u.entity, segment));
            }
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 12, "every segment of both tables, once");
        assert_eq!(units(&plan, &cfg, None).len(), 8, "unsharded: as asked");
        assert_eq!(Shard { index: 0, count: 1 }.segments(4), 4);
    }

    #[test]
    fn a_chain_without_gaps_is_accepted() {
        let incs = [
            (
                "a",
                Some("2026-01-14T10:18:50.622Z"),
                "2026-01-14T10:35:00Z",
            ),
            (
                "b",
                Some("2026-01-14T10:35:00.000Z"),
                "2026-01-14T10:50:00Z",
            ),
        ];
        assert!(chain_windows(Some(FULL), &incs).is_empty());
        assert!(chain_windows(Some(FULL), &[]).is_empty());
    }

    #[test]
    fn gaps_overlaps_and_older_incrementals_are_named() {
        let gap = [(
            "a",
            Some("2026-01-14T10:20:00.000Z"),
            "2026-01-14T10:35:00Z",
        )];
        let p = chain_windows(Some(FULL), &gap);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("a gap of 69.378 s between full"), "{p:?}");
        assert!(
            p[0].contains("and a (from 2026-01-14 10:20:00 +00:00)"),
            "{p:?}"
        );
        let older = [("old", Some("2026-01-14T09:00:00Z"), "2026-01-14T10:00:00Z")];
        assert!(chain_windows(Some(FULL), &older)[0].contains("roll data back"));
        let overlap = [
            (
                "a",
                Some("2026-01-14T10:18:50.622Z"),
                "2026-01-14T10:35:00Z",
            ),
            ("b", Some("2026-01-14T10:30:00Z"), "2026-01-14T10:50:00Z"),
        ];
        assert!(chain_windows(Some(FULL), &overlap)[0]
            .contains("b (from 2026-01-14 10:30:00 +00:00) overlaps a"));
        let alone = [("a", Some("2026-01-14T10:20:00Z"), "2026-01-14T10:35:00Z")];
        assert!(chain_windows(None, &alone)[0].contains("no full export"));
    }
}
