//! `plan`: the whole migration forecast, before one item is written.
//!
//! This room reads every source record as `migrate` would (the same plan,
//! phases and readers), makes of it what the transform would (the same
//! [`steps`]), and writes nothing: it counts what would be written,
//! filtered and dead-lettered (optionally listing the dead letters in the
//! migrate format), item sizes, write units per table and index, and
//! spills two things to partitioned temp files so memory stays flat:
//! every target key the first phase puts (collisions are the keys made by
//! more than one record) and write units per partition-key value (hot
//! partitions). Workers on every core take batches from one channel.
//! [`report`] turns the tallies into durations, costs and advice.

pub mod report;
pub mod spill;
pub mod tally;

use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Mutex};

use crate::item::{item_size, key_text, write_units, Item, JsonItem};
use crate::mapping::{Entity, Mapping};
use crate::pipeline::{steps, PipelineError, Step};
use crate::progress::{Mode as ProgressMode, Progress};
use crate::sinks::batcher::Op;
use crate::sinks::dead_letter::{self, DeadLetter};
use crate::sources::export::Store;
use crate::sources::{self, EntitySource, Readers, SourceMsg, SourceOptions, SourceRecord};
use crate::transform::lands_in;
use report::{Collision, CollisionRecord, HotPartition, PlanReport, Prices};
use spill::{Spill, SpillDir};
use tally::EntityTally;

/// Distinct partition-key values a worker sums in memory before spilling.
const HOT_IN_MEMORY: usize = 50_000;
/// Records a spill partition is sized for (at most [`MAX_PARTITIONS`]).
const PER_PARTITION: u64 = 40_000;
/// Partitions at most: each worker keeps two files a partition open.
const MAX_PARTITIONS: u64 = 128;

/// What `plan` needs beyond the mapping and the clients.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub sources: SourceOptions,
    pub scan: sources::scan::ScanConfig,
    pub read_concurrency: usize,
    /// List every record that would be dead-lettered here.
    pub dead_letter: Option<PathBuf>,
    /// The write rate the duration is forecast at (write units/s).
    pub write_units: u64,
    /// Hot partitions listed per table and index.
    pub top: usize,
    /// Collisions listed in full (all are counted).
    pub max_listed: usize,
    pub prices: Prices,
    /// Where the spill files go (default: the system's temp folder).
    pub spill_dir: Option<PathBuf>,
    /// Workers transforming at once (default: one per core).
    pub workers: usize,
    /// No progress.
    pub quiet: bool,
    /// Without a terminal: a progress line this often.
    pub progress_every: std::time::Duration,
    /// `plan --shard I/N`: this process's share of the sources only.
    pub shard: Option<sources::Shard>,
}

/// One worker's state.
struct Worker {
    mapping: Arc<Mapping>,
    entities: Vec<EntityTally>,
    keys: Spill,
    hot_spill: Spill,
    /// (index: 0 the table, i the i-th index; partition key) -> write units.
    hot: HotSums,
    dead: Option<mpsc::Sender<DeadLetter>>,
    /// Records transformed, per entity (the progress).
    done: Arc<Vec<AtomicU64>>,
}

type Shared = Arc<Mutex<mpsc::Receiver<SourceMsg>>>;

/// Key attribute names of one batch's entity.
struct Names<'a> {
    /// The legacy key.
    source: Vec<&'a str>,
    /// The target's primary key.
    target: Vec<&'a str>,
}

/// Forecasts the migration: reads everything, writes nothing. A signal
/// stops it at once (nothing to drain: it writes nothing), its temp files
/// removed.
pub async fn plan(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    opts: &PlanOptions,
) -> Result<PlanReport, PipelineError> {
    tokio::select! {
        planned = forecast(client, store, mapping, opts) => planned,
        Some(name) = crate::pipeline::next_signal() => {
            eprintln!("singletable: interrupted ({name}); plan stopped, its temp files removed");
            Err(PipelineError::Interrupted)
        }
    }
}

async fn forecast(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    opts: &PlanOptions,
) -> Result<PlanReport, PipelineError> {
    let clock = std::time::Instant::now();
    let (plan, mut warnings) = sources::plan(client, store, mapping, &opts.sources).await?;
    if let Some(s) = opts.shard {
        warnings.push(format!("{}: this plan covers the share of the sources it reads (Scan segments and export files modulo {}): its counts, sizes, time and cost are of that share, and collisions and hot partitions across shards are not seen", s.words(), s.count));
    }
    let expected: u64 = plan.iter().map(EntitySource::expected).sum();
    let partitions = (expected / PER_PARTITION).clamp(16, MAX_PARTITIONS) as usize;
    let spill = SpillDir::new(opts.spill_dir.as_deref(), partitions).map_err(spill_error)?;
    let workers = opts.workers.max(1);
    let (dead_tx, dead_task) = dead_letters(mapping, opts).await?;
    let mut tallies = vec![EntityTally::default(); mapping.entities.len()];
    let done: Arc<Vec<AtomicU64>> = Arc::new(plan.iter().map(|_| AtomicU64::new(0)).collect());
    let progress = progress(mapping, &plan, opts, &done);
    let (p, pf) = (progress.clone(), progress.clone());
    let readers = Readers {
        on_records: Arc::new(move |e, n| p.inc(e, n)),
        on_file: Arc::new(move |e| pf.file_done(e)),
        units: Arc::new(sources::units(&plan, &opts.scan, opts.shard)),
        ..Readers::plain(client, store, &opts.scan, opts.read_concurrency, &plan)
    };
    let shared_mapping = Arc::new(mapping.clone());
    let mut worker_count = 0;
    for phase in 0..sources::phases(&plan) {
        let (tx, rx) = mpsc::channel::<SourceMsg>(4 * workers);
        let rx: Shared = Arc::new(Mutex::new(rx));
        let mut tasks = tokio::task::JoinSet::new();
        sources::spawn_phase(phase, &plan, &readers, &tx, &mut tasks);
        drop(tx);
        let mut running = Vec::new();
        for _ in 0..workers {
            let w = Worker {
                mapping: shared_mapping.clone(),
                entities: vec![EntityTally::default(); mapping.entities.len()],
                keys: spill.writer("keys", worker_count).map_err(spill_error)?,
                hot_spill: spill.writer("hot", worker_count).map_err(spill_error)?,
                hot: HotSums::default(),
                dead: dead_tx.clone(),
                done: done.clone(),
            };
            worker_count += 1;
            running.push(tokio::spawn(w.run(rx.clone(), phase)));
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(_))) => {}
                Ok((_, Err(e))) => return Err(e.into()),
                Err(e) => return Err(PipelineError::Task(e.to_string())),
            }
        }
        for r in running {
            let done = r.await.map_err(|e| PipelineError::Task(e.to_string()))?;
            let entities = done.map_err(spill_error)?;
            for (t, w) in tallies.iter_mut().zip(&entities) {
                t.merge(w);
            }
        }
    }
    progress.finish();
    drop(dead_tx);
    if let Some(task) = dead_task {
        task.await
            .map_err(|e| PipelineError::Task(e.to_string()))??;
    }
    let (collisions, colliding) =
        find_collisions(&spill, worker_count, mapping, opts.max_listed).map_err(spill_error)?;
    let hot = hot_partitions(&spill, worker_count, mapping, opts.top).map_err(spill_error)?;
    let inputs = report::Inputs {
        mapping,
        plan: &plan,
        tallies,
        collisions,
        colliding,
        hot,
        warnings,
        seconds: clock.elapsed().as_secs_f64(),
    };
    Ok(report::build(inputs, opts))
}

/// The progress of the reading: records transformed of those expected.
fn progress(
    mapping: &Mapping,
    plan: &[EntitySource],
    opts: &PlanOptions,
    done: &Arc<Vec<AtomicU64>>,
) -> Arc<Progress> {
    let tables: Vec<(String, u64, usize)> = mapping
        .entities
        .iter()
        .zip(plan)
        .map(|(e, s)| (e.source_table.clone(), s.expected(), s.files()))
        .collect();
    let counts = done.clone();
    let settled = Box::new(move |i: usize| counts.get(i).map_or(0, |c| c.load(Ordering::Relaxed)));
    let mode = ProgressMode::detect(opts.quiet, opts.progress_every);
    let progress = Arc::new(Progress::counting(mode, &tables, settled, None));
    progress.start();
    progress
}

fn spill_error(e: std::io::Error) -> PipelineError {
    PipelineError::Task(format!(
        "plan's spill files (--spill-dir): {e}; free some disk space or name another folder"
    ))
}

/// The dead-letter file, when asked for: the same task and format as migrate's.
async fn dead_letters(
    mapping: &Mapping,
    opts: &PlanOptions,
) -> Result<
    (
        Option<mpsc::Sender<DeadLetter>>,
        Option<tokio::task::JoinHandle<Result<u64, dead_letter::DeadLetterError>>>,
    ),
    PipelineError,
> {
    let Some(path) = &opts.dead_letter else {
        return Ok((None, None));
    };
    let tables = dead_letter::entities(mapping);
    let stats = Arc::new(crate::report::RunStats::new(mapping.entities.len()));
    let (stop, _) = watch::channel(false);
    let dl = dead_letter::spawn(path.clone(), false, tables, stats, stop).await?;
    Ok((Some(dl.tx), Some(dl.task)))
}

impl Worker {
    /// Takes batches until the phase's channel closes; returns the tallies.
    async fn run(mut self, rx: Shared, phase: usize) -> std::io::Result<Vec<EntityTally>> {
        loop {
            let msg = rx.lock().await.recv().await;
            let Some(SourceMsg::Batch(batch)) = msg else {
                if msg.is_none() {
                    break;
                }
                continue;
            };
            let mapping = self.mapping.clone();
            let Some(entity) = mapping.entities.get(batch.entity) else {
                continue;
            };
            // Worked out once a batch, not once a record.
            let names = Names {
                source: entity.source_key.iter().map(String::as_str).collect(),
                target: mapping.table.primary_key(),
            };
            for record in batch.records {
                let first = phase == 0;
                self.record((batch.entity, entity), record, first, &names)
                    .await?;
            }
            if self.hot.len >= HOT_IN_MEMORY {
                self.spill_hot()?;
            }
        }
        self.spill_hot()?;
        self.keys.finish()?;
        self.hot_spill.finish()?;
        Ok(self.entities)
    }

    /// One record of entity `e`: what it would become, counted.
    async fn record(
        &mut self,
        (e, entity): (usize, &Entity),
        record: SourceRecord,
        first: bool,
        names: &Names<'_>,
    ) -> std::io::Result<()> {
        let mapping = self.mapping.clone();
        let source_key = crate::pipeline::source_key(&names.source, &record);
        if let Some(n) = self.done.get(e) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let t = &mut self.entities[e];
        t.read += 1;
        t.source_bytes += source_bytes(&record) as u64;
        for step in steps(entity, &mapping, record) {
            match step {
                Step::Write { op, item, counted } => {
                    self.write(e, op, &item, counted)?;
                    if first && counted && op == Op::Put {
                        let key = key_text(&item, &names.target);
                        let shown: Vec<_> =
                            names.target.iter().map(|n| attr_text(&item, n)).collect();
                        let source = serde_json::to_string(&JsonItem(&source_key))?;
                        let line = serde_json::to_string(&(&key, e, source, shown.join(" / ")))?;
                        self.keys.push(&key, &line)?;
                    }
                }
                Step::Filtered(rule) => {
                    *self.entities[e].filtered.entry(rule).or_default() += 1;
                }
                Step::Dead(dead) => {
                    let dl = dead.letter(e, source_key.clone(), None);
                    let key = crate::report::reason_key(dl.stage, &dl.reason);
                    *self.entities[e].dead.entry(key).or_default() += 1;
                    if let Some(tx) = &self.dead {
                        let _ = tx.send(dl).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Counts a write's units as the sink estimates them, by table and index.
    fn write(&mut self, e: usize, op: Op, item: &Item, counted: bool) -> std::io::Result<()> {
        let table = &self.mapping.table;
        let size = item_size(item);
        let per_copy = write_units(size, 0);
        let t = &mut self.entities[e];
        t.index_units.resize(table.indexes.len(), 0);
        if op == Op::Put {
            t.sizes.record(size);
        }
        match (op, counted) {
            (Op::Put, _) => t.puts += 1,
            (Op::Delete, true) => t.deletes += 1,
            (Op::Delete, false) => t.stale_deletes += 1,
        }
        t.table_units += per_copy;
        self.hot
            .add(0, &attr_text(item, &table.partition_key), per_copy);
        let mut copies = 0;
        for (i, ix) in table.indexes.iter().enumerate() {
            // A delete's index copies are unknown: the sink counts all.
            if op == Op::Put && !lands_in(item, ix) {
                continue;
            }
            copies += 1;
            t.index_units[i] += per_copy;
            if op == Op::Put {
                self.hot
                    .add(i + 1, &attr_text(item, &ix.partition_key), per_copy);
            }
        }
        t.estimated_units += write_units(size, copies);
        Ok(())
    }

    fn spill_hot(&mut self) -> std::io::Result<()> {
        for (index, sums) in self.hot.by_index.iter_mut().enumerate() {
            for (pk, units) in sums.drain() {
                let line = serde_json::to_string(&(index, &pk, units))?;
                self.hot_spill.push(&pk, &line)?;
            }
        }
        self.hot.len = 0;
        Ok(())
    }
}

/// Write units per partition-key value, per table (0) and index (1..),
/// until spilled.
#[derive(Default)]
struct HotSums {
    by_index: Vec<HashMap<String, u64>>,
    /// Values held, across indexes.
    len: usize,
}

impl HotSums {
    /// Adds `units` to `pk` of table or index `index` (a new value is
    /// copied; a known one is not).
    fn add(&mut self, index: usize, pk: &str, units: u64) {
        if self.by_index.len() <= index {
            self.by_index.resize_with(index + 1, HashMap::new);
        }
        let sums = &mut self.by_index[index];
        match sums.get_mut(pk) {
            Some(u) => *u += units,
            None => {
                sums.insert(pk.to_string(), units);
                self.len += 1;
            }
        }
    }
}

/// An attribute's value as text (a partition key value), or "" if absent.
fn attr_text<'a>(item: &'a Item, name: &str) -> std::borrow::Cow<'a, str> {
    use aws_sdk_dynamodb::types::AttributeValue;
    match item.get(name) {
        Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => s.into(),
        Some(other) => crate::item::value_to_json(other).to_string().into(),
        None => "".into(),
    }
}

/// The size of what a record read (for the read side's cost).
fn source_bytes(record: &SourceRecord) -> usize {
    match record {
        SourceRecord::Item(i) => item_size(i),
        SourceRecord::Change { new, old, keys } => new
            .as_ref()
            .or(old.as_ref())
            .map_or_else(|| item_size(keys), item_size),
        SourceRecord::Bad { raw, .. } => raw.len(),
        SourceRecord::Target { item, .. } => item_size(item),
    }
}

/// Target keys put by more than one record of the first phase, partition
/// by partition. Returns the first `max_listed` and how many there are.
fn find_collisions(
    spill: &SpillDir,
    workers: usize,
    mapping: &Mapping,
    max_listed: usize,
) -> std::io::Result<(Vec<Collision>, u64)> {
    let mut listed = Vec::new();
    let mut count = 0u64;
    for p in 0..spill.partitions {
        let mut by_key: HashMap<String, (String, Records)> = HashMap::new();
        spill.read_partition("keys", workers, p, |line| {
            // Lines this run wrote: [target key, entity, source key, shown].
            if let Ok((key, e, source, shown)) =
                serde_json::from_str::<(String, usize, String, String)>(line)
            {
                let entry = by_key.entry(key).or_default();
                if entry.0.is_empty() {
                    entry.0 = shown;
                }
                entry.1.push((e, source));
            }
        })?;
        let mut found: Vec<(String, Records)> =
            by_key.into_values().filter(|(_, v)| v.len() > 1).collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        for (shown, records) in found {
            count += 1;
            if listed.len() < max_listed {
                listed.push(collision(shown, records, mapping));
            }
        }
    }
    listed.sort_by(|a, b| a.target_key.cmp(&b.target_key));
    Ok((listed, count))
}

/// The records that made one target key: (entity, source key as JSON text).
type Records = Vec<(usize, String)>;

fn collision(target_key: String, records: Records, mapping: &Mapping) -> Collision {
    let name = |e: usize| mapping.entities.get(e).map(|x| x.name.clone());
    let first = records.first().map(|r| r.0);
    Collision {
        target_key,
        across_entities: records.iter().any(|r| Some(r.0) != first),
        records: records
            .into_iter()
            .map(|(e, source_key)| CollisionRecord {
                entity: name(e).unwrap_or_default(),
                source_key: serde_json::from_str(&source_key).unwrap_or_default(),
            })
            .collect(),
    }
}

/// The top `top` partition-key values by write units, per table (index 0)
/// and index, from the spilled sums.
fn hot_partitions(
    spill: &SpillDir,
    workers: usize,
    mapping: &Mapping,
    top: usize,
) -> std::io::Result<Vec<(String, u64, Vec<HotPartition>)>> {
    let n = 1 + mapping.table.indexes.len();
    let mut heaps: Vec<BinaryHeap<std::cmp::Reverse<(u64, String)>>> = vec![BinaryHeap::new(); n];
    let mut totals = vec![0u64; n];
    for p in 0..spill.partitions {
        let mut sums: HashMap<(usize, String), u64> = HashMap::new();
        spill.read_partition("hot", workers, p, |line| {
            // Lines this run wrote: [table or index, partition key, units].
            if let Ok((i, pk, units)) = serde_json::from_str::<(usize, String, u64)>(line) {
                *sums.entry((i, pk)).or_default() += units;
            }
        })?;
        for ((i, pk), units) in sums {
            let Some(heap) = heaps.get_mut(i) else {
                continue;
            };
            totals[i] += units;
            heap.push(std::cmp::Reverse((units, pk)));
            if heap.len() > top.max(1) {
                heap.pop();
            }
        }
    }
    let names: Vec<String> = std::iter::once("table".to_string())
        .chain(mapping.table.indexes.iter().map(|ix| ix.name.clone()))
        .collect();
    let mut out = Vec::new();
    for ((name, heap), total) in names.into_iter().zip(heaps).zip(totals) {
        let mut top: Vec<(u64, String)> = heap.into_iter().map(|r| r.0).collect();
        top.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let list = top
            .into_iter()
            .map(|(units, value)| HotPartition {
                value,
                write_units: units,
                share: if total == 0 {
                    0.0
                } else {
                    units as f64 / total as f64
                },
                min_seconds: units as f64 / report::PARTITION_WRITE_UNITS,
            })
            .collect();
        out.push((name, total, list));
    }
    Ok(out)
}
