//! The pipeline: sources -> transform -> sink, wired for one run.
//!
//! This module owns the shape of `migrate` and `preview`: it plans where
//! every entity is read from and checks the target before anything flows,
//! then joins the stages with bounded channels (backpressure is a full
//! channel, never a sleep). Reading happens in phases: scans and full
//! exports first, then each round of incremental exports, with a barrier
//! between phases so a later change never lands before an earlier one.
//! Every record read is counted into exactly one of written, deleted,
//! filtered, dead-lettered or recorded as not written, and the counters
//! become a [`RunReport`] that reconciles them and gives the exit code. On
//! Ctrl-C, SIGTERM or SIGHUP (or a fatal write error, a stall, a dead-letter
//! file that cannot be written) the sources stop reading, and everything
//! already read is written or accounted for before the run ends, never
//! abandoned mid-batch.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::item::{item_size, item_to_json, key_display, project, Item};
use crate::item::{key_text, wire_bytes};
use crate::mapping::{data_check, Entity, Mapping};
use crate::report::{Allowance, RunMeta, RunReport, RunStats};
use crate::seen::SeenKeys;
use crate::sinks::batcher::{Op, WriteRequest};
use crate::sinks::dead_letter::{self, DeadLetter, Stage};
use crate::sinks::writer::{SinkIo, SinkMsg};
use crate::sinks::{table, writer};
use crate::sources::export::Store;
use crate::sources::scan::ScanConfig;
use crate::sources::{self, EntitySource, Readers, SourceMsg, SourceOptions, SourceRecord};
use crate::transform::{indexes_landed_in, target_key, transform, Outcome};

/// Pages waiting between the sources and the transform. Small on purpose:
/// on Ctrl-C everything already read is written before the run ends.
const SOURCE_QUEUE: usize = 16;
/// Writes waiting for the batcher: about 40 batches.
const SINK_QUEUE: usize = 1024;

/// Everything `migrate` needs beyond the mapping and the clients.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub create_table: bool,
    pub sources: SourceOptions,
    pub scan: ScanConfig,
    /// Scan segments and export files read at once, across all tables.
    pub read_concurrency: usize,
    pub max_in_flight: usize,
    /// Stop when no write has succeeded for this long.
    pub stall_timeout: Duration,
    pub items_per_second: Option<NonZeroU32>,
    pub write_units_per_second: Option<NonZeroU32>,
    pub dead_letter: PathBuf,
    /// Dead letters the run may have and still exit 0.
    pub allow_dead_letters: Allowance,
    /// How often the achieved write rate is sampled for the report.
    pub rate_sample_every: Duration,
    /// Do not check the mapping against a sample of the data first.
    pub skip_data_check: bool,
    pub quiet: bool,
}

/// Why a run failed. The report, when there is one, still says what was done.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] sources::SourceError),
    #[error(transparent)]
    Table(#[from] table::TableError),
    #[error(transparent)]
    Sink(#[from] writer::SinkError),
    #[error(transparent)]
    DeadLetter(#[from] dead_letter::DeadLetterError),
    #[error("the counts do not reconcile (read != written + deleted + filtered + dead-lettered); see the report")]
    NotReconciled,
    #[error("interrupted: the legacy tables were not read to the end; the report counts what was written")]
    Interrupted,
    #[error("the mapping names attributes the data does not have (checked against the first {DATA_CHECK_SAMPLE} items of each source):\n{0}\nfix the mapping, or pass --skip-data-check")]
    DataCheck(String),
    #[error("a pipeline task failed: {0}")]
    Task(String),
}

/// How long `preview` retries failing reads (it has no --stall-timeout).
const PREVIEW_STALL: Duration = Duration::from_secs(600);

/// Items of each source the mapping is checked against before a run.
pub const DATA_CHECK_SAMPLE: usize = 250;

/// Checks the attributes the mapping names against the first items of
/// each source; an attribute none of them has stops the run before
/// anything is written. Returns the warnings (attributes some items lack).
pub async fn check_data(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    plan: &[EntitySource],
    stall: Duration,
) -> Result<Vec<String>, PipelineError> {
    let mut samples = Vec::new();
    for (entity, source) in mapping.entities.iter().zip(plan) {
        let table = &entity.source_table;
        let n = DATA_CHECK_SAMPLE;
        let (records, _) = sources::first_records(client, store, table, source, n, stall).await?;
        samples.push(sources::images(&records));
    }
    judge_data(mapping, &samples)
}

/// [`check_data`] on samples already read: one per entity.
fn judge_data(mapping: &Mapping, samples: &[Vec<Item>]) -> Result<Vec<String>, PipelineError> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for (entity, sample) in mapping.entities.iter().zip(samples) {
        let found = data_check::check(entity, sample);
        errors.extend(found.errors);
        warnings.extend(found.warnings);
    }
    if !errors.is_empty() {
        return Err(PipelineError::DataCheck(errors.join("\n")));
    }
    Ok(warnings)
}

/// Runs a migration to the end. Returns the report, and the error that
/// stopped the run, if one did.
pub async fn migrate(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    opts: &MigrateOptions,
) -> Result<(RunReport, Option<PipelineError>), PipelineError> {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let clock = Instant::now();
    let (plan, mut source_warnings) = sources::plan(client, store, mapping, &opts.sources).await?;
    if !opts.skip_data_check {
        let stall = opts.scan.stall_timeout;
        source_warnings.extend(check_data(client, store, mapping, &plan, stall).await?);
    }
    let stats = Arc::new(RunStats::new(mapping.entities.len()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let source_tables: Vec<String> = mapping
        .entities
        .iter()
        .map(|e| e.source_table.clone())
        .collect();
    // The record of what fails must be possible before anything is written.
    let (dead_tx, dead_task) = dead_letter::spawn(
        opts.dead_letter.clone(),
        source_tables,
        stats.clone(),
        shutdown_tx.clone(),
    )
    .await?;
    table::ensure(client, &mapping.table, opts.create_table).await?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let signals = spawn_signals(shutdown_tx.clone(), interrupted.clone());

    let (sink_tx, sink_rx) = mpsc::channel::<SinkMsg>(SINK_QUEUE);
    let sink_io = SinkIo {
        rx: sink_rx,
        dead: dead_tx.clone(),
        on_stop: shutdown_tx.clone(),
        shutdown: shutdown_rx.clone(),
    };
    let sink = tokio::spawn(writer::run(
        client.clone(),
        writer_config(mapping, opts),
        sink_io,
        stats.clone(),
    ));
    let (src_tx, src_rx) = mpsc::channel::<SourceMsg>(SOURCE_QUEUE);
    let expected: u64 = plan.iter().map(EntitySource::expected).sum();
    let outlets = Outlets {
        sink: sink_tx,
        dead: dead_tx,
    };
    let shared_mapping = Arc::new(mapping.clone());
    let transformer = tokio::spawn(transform_stage(
        shared_mapping,
        src_rx,
        outlets,
        stats.clone(),
        expected,
    ));

    let (readers, progress) = readers(client, store, mapping, &plan, opts, &stats, shutdown_rx);
    let phases = Phases {
        plan: &plan,
        readers: &readers,
        tx: src_tx,
        shutdown: &shutdown_tx,
        stats: &stats,
        clock,
    };
    let (mut failure, warnings) = phases.read(source_warnings).await;
    progress.finish();
    // Sources are done: the transform drains, then the sink, then the dead letters.
    let (transformed, sunk, dead) = (transformer.await, sink.await, dead_task.await);
    failure = first_failure(failure, transformed, sunk, dead);
    signals.abort();
    let ended = Ended {
        started_at,
        clock,
        interrupted: interrupted.load(Ordering::SeqCst),
        warnings,
    };
    Ok(finish_report(&stats, mapping, &plan, opts, ended, failure))
}

type Joined<T> = Result<T, tokio::task::JoinError>;

/// The error that explains a run's end: the dead-letter file's own failure
/// first (it explains the others), then the reading's, then the transform's
/// and the sink's.
fn first_failure(
    reading: Option<PipelineError>,
    transformed: Joined<()>,
    sunk: Joined<Result<(), writer::SinkError>>,
    dead: Joined<Result<u64, dead_letter::DeadLetterError>>,
) -> Option<PipelineError> {
    let task = |e: tokio::task::JoinError| PipelineError::Task(e.to_string());
    let dead = match dead {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.into()),
        Err(e) => Some(task(e)),
    };
    let sunk = match sunk {
        Ok(r) => r.err().map(PipelineError::from),
        Err(e) => Some(task(e)),
    };
    dead.or(reading).or(transformed.err().map(task)).or(sunk)
}

/// How the sink writes, from the options.
fn writer_config(mapping: &Mapping, opts: &MigrateOptions) -> writer::WriterConfig {
    writer::WriterConfig {
        table: mapping.table.name.clone(),
        key_names: mapping
            .table
            .primary_key()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        max_in_flight: opts.max_in_flight,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(20),
        stall_timeout: opts.stall_timeout,
        items_per_second: opts.items_per_second,
        write_units_per_second: opts.write_units_per_second,
        sample_every: opts.rate_sample_every,
    }
}

/// What every source task shares, and the progress bars they move.
fn readers(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    plan: &[EntitySource],
    opts: &MigrateOptions,
    stats: &Arc<RunStats>,
    shutdown: watch::Receiver<bool>,
) -> (Readers, Arc<crate::progress::Progress>) {
    let tables: Vec<(String, u64, usize)> = mapping
        .entities
        .iter()
        .zip(plan)
        .map(|(e, s)| (e.source_table.clone(), s.expected(), s.files()))
        .collect();
    let progress = Arc::new(crate::progress::Progress::new(opts.quiet, &tables));
    let (p, pf, produced) = (progress.clone(), progress.clone(), stats.clone());
    let readers = Readers {
        client: client.clone(),
        store: store.clone(),
        scan: opts.scan.clone(),
        permits: Arc::new(Semaphore::new(opts.read_concurrency.max(1))),
        shutdown,
        on_records: Arc::new(move |e, n| {
            // Counted where records are produced, apart from the transform.
            RunStats::add(&produced.entity(e).produced, n);
            p.inc(e, n)
        }),
        on_file: Arc::new(move |e| pf.file_done(e)),
    };
    (readers, progress)
}

/// The reading of a run, phase by phase.
struct Phases<'a> {
    plan: &'a [EntitySource],
    readers: &'a Readers,
    tx: mpsc::Sender<SourceMsg>,
    shutdown: &'a watch::Sender<bool>,
    stats: &'a RunStats,
    clock: Instant,
}

impl Phases<'_> {
    /// Reads every phase, each written before the next begins, until the
    /// end, a failure or a shutdown. Returns the failure and the warnings.
    async fn read(self, mut warnings: Vec<String>) -> (Option<PipelineError>, Vec<String>) {
        let mut failure: Option<PipelineError> = None;
        for phase in 0..sources::phases(self.plan) {
            let mut tasks = tokio::task::JoinSet::new();
            sources::spawn_phase(phase, self.plan, self.readers, &self.tx, &mut tasks);
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok((entity, Ok(w))) => {
                        warnings.extend(w);
                        let millis = self.clock.elapsed().as_millis() as u64;
                        let c = self.stats.entity(entity);
                        c.read_millis.fetch_max(millis, Ordering::Relaxed);
                    }
                    Ok((_, Err(e))) => {
                        let _ = self.shutdown.send(true);
                        failure.get_or_insert(e.into());
                    }
                    Err(e) => {
                        let _ = self.shutdown.send(true);
                        failure.get_or_insert(PipelineError::Task(e.to_string()));
                    }
                }
            }
            if failure.is_some() || *self.shutdown.borrow() {
                break;
            }
            // The next phase's changes apply on top of this one's writes.
            let (ack_tx, ack_rx) = oneshot::channel();
            let sent = self.tx.send(SourceMsg::Barrier(ack_tx)).await;
            if sent.is_err() || ack_rx.await.is_err() {
                failure.get_or_insert(PipelineError::Task("the transform stopped".into()));
                break;
            }
        }
        (failure, warnings)
    }
}

/// How a run ended, for its report.
struct Ended {
    started_at: String,
    clock: Instant,
    interrupted: bool,
    warnings: Vec<String>,
}

/// The run report from the final counters, with the verdict: a run that
/// does not reconcile, or was interrupted, fails.
fn finish_report(
    stats: &RunStats,
    mapping: &Mapping,
    plan: &[EntitySource],
    opts: &MigrateOptions,
    ended: Ended,
    mut failure: Option<PipelineError>,
) -> (RunReport, Option<PipelineError>) {
    let names: Vec<(String, String)> = mapping
        .entities
        .iter()
        .map(|e| (e.name.clone(), e.source_table.clone()))
        .collect();
    let mut kinds: Vec<&str> = plan.iter().map(EntitySource::describe).collect();
    kinds.sort();
    kinds.dedup();
    let meta = RunMeta {
        command: "migrate".into(),
        mapping: mapping.origin.display().to_string(),
        target_table: mapping.table.name.clone(),
        source: kinds.join("+"),
        started_at: ended.started_at,
        duration: ended.clock.elapsed(),
        interrupted: ended.interrupted || failure.is_some(),
        dead_letter_file: Some(opts.dead_letter.display().to_string()),
        source_warnings: ended.warnings,
    };
    let mut report = RunReport::build(stats, &names, meta);
    if failure.is_none() && !report.reconciled {
        failure = Some(PipelineError::NotReconciled);
    }
    if failure.is_none() && ended.interrupted {
        failure = Some(PipelineError::Interrupted);
    }
    report.judge(failure.is_some(), opts.allow_dead_letters);
    (report, failure)
}

/// Ctrl-C, SIGTERM, SIGHUP: stop reading; what is in flight still lands
/// or is accounted for. A second signal exits at once.
fn spawn_signals(
    shutdown: watch::Sender<bool>,
    interrupted: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(name) = next_signal().await else {
            return;
        };
        eprintln!(
            "singletable: interrupted ({name}); finishing the writes in flight (a second signal aborts)"
        );
        interrupted.store(true, Ordering::SeqCst);
        let _ = shutdown.send(true);
        if next_signal().await.is_some() {
            std::process::exit(crate::report::EXIT_FAILED);
        }
    })
}

/// Waits for the next stopping signal; its name.
async fn next_signal() -> Option<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            return tokio::select! {
                r = tokio::signal::ctrl_c() => r.ok().map(|_| "SIGINT"),
                _ = term.recv() => Some("SIGTERM"),
                _ = hup.recv() => Some("SIGHUP"),
            };
        }
    }
    tokio::signal::ctrl_c().await.ok().map(|_| "Ctrl-C")
}

/// What the transform makes of one record.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send this write; `counted` as in [`WriteRequest::counted`].
    Write {
        op: Op,
        item: Item,
        counted: bool,
    },
    Filtered(String),
    Dead {
        reason: String,
        item: Item,
        raw: Option<String>,
    },
}

/// The steps for one record: exactly one counted outcome, plus at most one
/// uncounted clean-up delete (an update that moved an item's target key).
pub fn steps(entity: &Entity, mapping: &Mapping, record: SourceRecord) -> Vec<Step> {
    let table = &mapping.table;
    let put_or_not = |item: Item| match transform(entity, table, &item) {
        Outcome::Put(target) => Step::Write {
            op: Op::Put,
            item: target,
            counted: true,
        },
        Outcome::Filtered(rule) => Step::Filtered(rule),
        Outcome::Reject(r) => Step::Dead {
            reason: r.to_string(),
            item,
            raw: None,
        },
    };
    match record {
        SourceRecord::Item(item) => vec![put_or_not(item)],
        SourceRecord::Bad { reason, raw } => vec![Step::Dead {
            reason,
            item: Item::new(),
            raw: Some(raw),
        }],
        SourceRecord::Change {
            new: Some(new),
            old,
            ..
        } => {
            // The old item goes when the new one lands elsewhere (its key
            // moved) or not at all (now filtered or dead-lettered): the
            // target then holds what the mapping makes of the source.
            let step = put_or_not(new);
            let key_names = table.primary_key();
            let new_key = match &step {
                Step::Write { item, .. } => Some(project(item, &key_names)),
                _ => None,
            };
            let mut out = vec![step];
            if let Some(old_key) = old.and_then(|o| target_key(entity, table, &o).ok()) {
                if new_key.as_ref() != Some(&old_key) {
                    out.push(Step::Write {
                        op: Op::Delete,
                        item: old_key,
                        counted: false,
                    });
                }
            }
            out
        }
        SourceRecord::Change {
            new: None,
            old,
            keys,
        } => {
            let known = old.unwrap_or(keys);
            match target_key(entity, table, &known) {
                Ok(key) => vec![Step::Write {
                    op: Op::Delete,
                    item: key,
                    counted: true,
                }],
                Err(r) => vec![Step::Dead {
                    reason: format!("cannot work out the target key to delete: {r}"),
                    item: known,
                    raw: None,
                }],
            }
        }
    }
}

/// The transform stage: every record read is counted, then written,
/// filtered or dead-lettered. Barriers pass through to the sink. In the
/// first phase (scans and full exports, one record per source item), a put
/// to a target key an earlier record already wrote is marked as
/// overwriting it: a collision.
async fn transform_stage(
    mapping: Arc<Mapping>,
    mut rx: mpsc::Receiver<SourceMsg>,
    out: Outlets,
    stats: Arc<RunStats>,
    expected: u64,
) {
    let key_names: Vec<&str> = mapping.table.primary_key();
    let mut seen = SeenKeys::new(expected);
    let mut full_phase = true;
    while let Some(msg) = rx.recv().await {
        let batch = match msg {
            SourceMsg::Batch(b) => b,
            SourceMsg::Barrier(ack) => {
                full_phase = false;
                let _ = out.sink.send(SinkMsg::Barrier(ack)).await;
                continue;
            }
        };
        let Some(entity) = mapping.entities.get(batch.entity) else {
            continue;
        };
        let source_key_names: Vec<&str> = entity.source_key.iter().map(String::as_str).collect();
        let c = stats.entity(batch.entity);
        for record in batch.records {
            RunStats::add(&c.read, 1);
            let source_key = match &record {
                SourceRecord::Item(i) => project(i, &source_key_names),
                SourceRecord::Change { keys, .. } => keys.clone(),
                SourceRecord::Bad { .. } => Item::new(),
            };
            for step in steps(entity, &mapping, record) {
                match step {
                    Step::Write { op, item, counted } => {
                        let mut req = write_request(&mapping, batch.entity, op, item, &key_names);
                        req.counted = counted;
                        req.source_key = source_key.clone();
                        req.overwrites =
                            full_phase && counted && op == Op::Put && seen.insert(&req.key);
                        out.write(req).await;
                    }
                    Step::Filtered(_) => RunStats::add(&c.filtered, 1),
                    Step::Dead { reason, item, raw } => {
                        let stage = if raw.is_some() {
                            Stage::Read
                        } else {
                            Stage::Transform
                        };
                        let dl = DeadLetter {
                            entity: batch.entity,
                            source_key: source_key.clone(),
                            stage,
                            reason,
                            item,
                            raw,
                            counted: true,
                        };
                        let _ = out.dead.send(dl).await;
                    }
                }
            }
        }
        stats.set_overwrite_false_alarms(seen.expected_false_alarms());
    }
}

/// Where the transform sends what it makes.
struct Outlets {
    sink: mpsc::Sender<SinkMsg>,
    dead: mpsc::Sender<DeadLetter>,
}

impl Outlets {
    /// Sends a write; if the sink is gone (it failed), the item is recorded
    /// as not written instead.
    async fn write(&self, req: WriteRequest) {
        let Err(back) = self.sink.send(SinkMsg::Write(req)).await else {
            return;
        };
        if let SinkMsg::Write(r) = back.0 {
            let dl = DeadLetter {
                entity: r.entity,
                source_key: r.source_key,
                stage: Stage::Unwritten,
                reason: "the writer stopped before this item".to_string(),
                item: r.item,
                raw: None,
                counted: r.counted,
            };
            let _ = self.dead.send(dl).await;
        }
    }
}

/// A put or delete of `item` with its size, units and key worked out.
fn write_request(
    mapping: &Mapping,
    entity: usize,
    op: Op,
    item: Item,
    key_names: &[&str],
) -> WriteRequest {
    let landed = if op == Op::Put {
        indexes_landed_in(&item, &mapping.table)
    } else {
        mapping.table.indexes.len()
    };
    WriteRequest {
        entity,
        key: key_text(&item, key_names),
        wire_bytes: wire_bytes(&item),
        write_units: crate::item::write_units(item_size(&item), landed),
        source_key: Item::new(),
        op,
        counted: true,
        overwrites: false,
        item,
    }
}

/// Preview: the first `limit` records of each source and what they become.
pub async fn preview(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    sources_opts: &SourceOptions,
    limit: usize,
    skip_data_check: bool,
) -> Result<String, PipelineError> {
    let (plan, mut warnings) = sources::plan(client, store, mapping, sources_opts).await?;
    // One read per source serves the data check and the items shown.
    let wanted = if skip_data_check {
        limit
    } else {
        limit.max(DATA_CHECK_SAMPLE)
    };
    let mut read = Vec::new();
    for (entity, source) in mapping.entities.iter().zip(&plan) {
        let table = &entity.source_table;
        let first = sources::first_records(client, store, table, source, wanted, PREVIEW_STALL);
        read.push(first.await?);
    }
    if !skip_data_check {
        let samples: Vec<Vec<Item>> = read.iter().map(|(r, _)| sources::images(r)).collect();
        warnings.extend(judge_data(mapping, &samples)?);
    }
    let mut out = String::new();
    for w in warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    for (entity, (mut records, from)) in mapping.entities.iter().zip(read) {
        records.truncate(limit);
        out.push_str(&format!(
            "== {} ({} by {} -> {} {}): {} record(s) shown\n",
            entity.name,
            entity.source_table,
            from,
            mapping.table.name,
            entity.entity_type,
            records.len()
        ));
        for record in records {
            out.push_str(&preview_one(mapping, entity, record));
        }
        out.push('\n');
    }
    out.push_str("preview wrote nothing.\n");
    Ok(out)
}

fn preview_one(mapping: &Mapping, entity: &Entity, record: SourceRecord) -> String {
    let shown = match &record {
        SourceRecord::Item(i) => format!("  source: {}\n", item_to_json(i)),
        SourceRecord::Change { keys, new, .. } => format!(
            "  change: {} {}\n",
            if new.is_some() { "put" } else { "delete" },
            new.as_ref()
                .map(|n| item_to_json(n).to_string())
                .unwrap_or_else(|| key_display(keys))
        ),
        SourceRecord::Bad { raw, .. } => format!("  source: {raw}\n"),
    };
    let mut out = shown;
    for step in steps(entity, mapping, record) {
        out.push_str(&match step {
            Step::Write {
                op: Op::Put, item, ..
            } => format!("  target: {}\n", item_to_json(&item)),
            Step::Write {
                op: Op::Delete,
                item,
                ..
            } => format!("  delete: {}\n", key_display(&item)),
            Step::Filtered(rule) => format!("  filtered: {rule}\n"),
            Step::Dead { reason, .. } => format!("  DEAD-LETTER: {reason}\n"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn shipped() -> Mapping {
        Mapping::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/ai-girlfriend.toml"),
        )
        .unwrap()
    }
    fn session(user: &str, started: Option<&str>) -> Item {
        let mut i: Item = [
            ("sessionId".to_string(), AttributeValue::S("s1".into())),
            ("userId".to_string(), AttributeValue::S(user.into())),
        ]
        .into();
        if let Some(t) = started {
            i.insert("startedAt".into(), AttributeValue::S(t.into()));
        }
        i
    }
    fn key(user: &str) -> Item {
        [
            ("pk".to_string(), AttributeValue::S(format!("USER#{user}"))),
            ("sk".to_string(), AttributeValue::S("SESSION#s1".into())),
        ]
        .into()
    }
    fn kinds(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Write { op, counted, .. } => {
                    format!("{op:?}{}", if *counted { "" } else { " (clean-up)" })
                }
                Step::Filtered(_) => "Filtered".into(),
                Step::Dead { .. } => "Dead".into(),
            })
            .collect()
    }

    #[test]
    fn incremental_changes_become_the_right_writes() {
        let m = shipped();
        let e = m.entities.iter().find(|e| e.name == "session").unwrap();
        let t = "2024-01-15T14:00:00Z";
        let keys: Item = [("sessionId".to_string(), AttributeValue::S("s1".into()))].into();
        let change = |new: Option<Item>, old: Option<Item>| SourceRecord::Change {
            keys: keys.clone(),
            new,
            old,
        };

        // An update in place: one put.
        let s = steps(
            e,
            &m,
            change(Some(session("u1", Some(t))), Some(session("u1", Some(t)))),
        );
        assert_eq!(kinds(&s), ["Put"]);
        // An update that moves the session to another user: put, and the old key goes.
        let s = steps(
            e,
            &m,
            change(Some(session("u2", Some(t))), Some(session("u1", Some(t)))),
        );
        assert_eq!(kinds(&s), ["Put", "Delete (clean-up)"]);
        assert!(matches!(&s[1], Step::Write { item, .. } if *item == key("u1")));
        // An update the mapping can no longer write: dead-lettered, and the old item goes.
        let s = steps(
            e,
            &m,
            change(Some(session("u1", None)), Some(session("u1", Some(t)))),
        );
        assert_eq!(kinds(&s), ["Dead", "Delete (clean-up)"]);
        // A delete with its old image: one counted delete of the mapped key.
        let s = steps(e, &m, change(None, Some(session("u1", Some(t)))));
        assert_eq!(kinds(&s), ["Delete"]);
        assert!(matches!(&s[0], Step::Write { item, .. } if *item == key("u1")));
        // A delete with only the legacy key cannot find a session's target key.
        let s = steps(e, &m, change(None, None));
        assert_eq!(kinds(&s), ["Dead"]);
        // An insert: one put, nothing to clean up.
        let s = steps(e, &m, change(Some(session("u1", Some(t))), None));
        assert_eq!(kinds(&s), ["Put"]);
    }
}
