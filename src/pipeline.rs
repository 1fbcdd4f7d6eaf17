//! The pipeline: sources -> transform -> sink, wired for one run.
//!
//! This module owns the shape of `migrate` and `preview`: it checks every
//! source table and the target before anything flows, then joins the stages
//! with bounded channels (backpressure is a full channel, never a sleep),
//! counts every item into exactly one of written, filtered or dead-lettered,
//! and turns the counters into a [`RunReport`] whose reconciliation the
//! caller enforces. On Ctrl-C (or a fatal write error) the sources stop
//! reading, and everything already read is written or dead-lettered before
//! the run ends, never abandoned mid-batch.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};

use crate::item::{item_size, item_to_json, project, Item};
use crate::mapping::Mapping;
use crate::report::{RunMeta, RunReport, RunStats};
use crate::sinks::batcher::{key_text, wire_bytes, WriteRequest};
use crate::sinks::dead_letter::{self, DeadLetter};
use crate::sinks::{table, writer};
use crate::sources::scan::{self, ScanConfig};
use crate::sources::{self, SourceBatch, TableInfo};
use crate::transform::{indexes_landed_in, transform, Outcome};

/// Pages waiting between the sources and the transform. Small on purpose:
/// on Ctrl-C everything already read is written before the run ends.
const SOURCE_QUEUE: usize = 16;
/// Writes waiting for the batcher: about 40 batches.
const SINK_QUEUE: usize = 1024;

/// Everything `migrate` needs beyond the mapping and the client.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub create_table: bool,
    pub scan: ScanConfig,
    /// Scan segments running at once, across all tables.
    pub scan_concurrency: usize,
    pub max_in_flight: usize,
    pub max_attempts: u32,
    pub items_per_second: Option<NonZeroU32>,
    pub write_units_per_second: Option<NonZeroU32>,
    pub dead_letter: PathBuf,
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
    #[error(
        "the counts do not reconcile (read != written + filtered + dead-lettered); see the report"
    )]
    NotReconciled,
    #[error("interrupted: the legacy tables were not read to the end; the report counts what was written")]
    Interrupted,
    #[error("a pipeline task failed: {0}")]
    Task(String),
}

/// Describes every source table, checking keys and refusing to touch the target.
pub async fn describe_sources(
    client: &aws_sdk_dynamodb::Client,
    mapping: &Mapping,
) -> Result<Vec<TableInfo>, PipelineError> {
    let futures = mapping
        .entities
        .iter()
        .map(|e| sources::describe(client, &e.source_table, &e.name, &e.source_key));
    let infos = futures::future::join_all(futures).await;
    Ok(infos.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// Runs a migration to the end. Returns the report, and the error that
/// stopped the run, if one did.
pub async fn migrate(
    client: &aws_sdk_dynamodb::Client,
    mapping: &Mapping,
    opts: &MigrateOptions,
) -> Result<(RunReport, Option<PipelineError>), PipelineError> {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let clock = Instant::now();
    let infos = describe_sources(client, mapping).await?;
    table::ensure(client, &mapping.table, opts.create_table).await?;

    let n = mapping.entities.len();
    let stats = Arc::new(RunStats::new(n));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let source_tables: Vec<String> = mapping
        .entities
        .iter()
        .map(|e| e.source_table.clone())
        .collect();
    let (dead_tx, dead_task) =
        dead_letter::spawn(opts.dead_letter.clone(), source_tables, stats.clone()).await?;

    // Ctrl-C: stop reading; what is in flight still lands.
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ctrl_c = {
        let shutdown_tx = shutdown_tx.clone();
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("singletable: interrupted; finishing the writes in flight (Ctrl-C again to abort)");
                interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = shutdown_tx.send(true);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };

    let (sink_tx, sink_rx) = mpsc::channel::<WriteRequest>(SINK_QUEUE);
    let writer_cfg = writer::WriterConfig {
        table: mapping.table.name.clone(),
        key_names: mapping
            .table
            .primary_key()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        max_in_flight: opts.max_in_flight,
        max_attempts: opts.max_attempts,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(20),
        items_per_second: opts.items_per_second,
        write_units_per_second: opts.write_units_per_second,
    };
    let sink = tokio::spawn(writer::run(
        client.clone(),
        writer_cfg,
        sink_rx,
        stats.clone(),
        dead_tx.clone(),
        shutdown_tx.clone(),
    ));

    let (src_tx, src_rx) = mpsc::channel::<SourceBatch>(SOURCE_QUEUE);
    let transformer = tokio::spawn(transform_stage(
        Arc::new(mapping.clone()),
        src_rx,
        sink_tx,
        dead_tx,
        stats.clone(),
    ));

    let progress = Arc::new(crate::progress::Progress::new(
        opts.quiet,
        &infos
            .iter()
            .map(|i| (i.name.clone(), i.item_count.max(0) as u64))
            .collect::<Vec<_>>(),
    ));
    let permits = Arc::new(Semaphore::new(opts.scan_concurrency.max(1)));
    let mut scans = tokio::task::JoinSet::new();
    for (i, info) in infos.iter().enumerate() {
        let p = progress.clone();
        let on_page: Arc<dyn Fn(usize, u64) + Send + Sync> = Arc::new(move |e, n| p.inc(e, n));
        let scan = scan::scan_table(
            client.clone(),
            info.clone(),
            i,
            opts.scan.clone(),
            src_tx.clone(),
            permits.clone(),
            shutdown_rx.clone(),
            on_page,
        );
        let stats = stats.clone();
        scans.spawn(async move {
            let result = scan.await;
            let millis = clock.elapsed().as_millis() as u64;
            stats
                .entity(i)
                .read_millis
                .store(millis, std::sync::atomic::Ordering::Relaxed);
            result
        });
    }
    drop(src_tx);

    let mut failure: Option<PipelineError> = None;
    while let Some(joined) = scans.join_next().await {
        let result = joined
            .map_err(|e| PipelineError::Task(e.to_string()))
            .and_then(|r| r.map_err(PipelineError::from));
        if let Err(e) = result {
            let _ = shutdown_tx.send(true);
            failure.get_or_insert(e);
        }
    }
    progress.finish();
    // Sources are done: the transform drains, then the sink, then the dead letters.
    match transformer.await {
        Ok(()) => {}
        Err(e) => {
            failure.get_or_insert(PipelineError::Task(e.to_string()));
        }
    }
    match sink.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            failure.get_or_insert(e.into());
        }
        Err(e) => {
            failure.get_or_insert(PipelineError::Task(e.to_string()));
        }
    }
    match dead_task.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            failure.get_or_insert(e.into());
        }
        Err(e) => {
            failure.get_or_insert(PipelineError::Task(e.to_string()));
        }
    }
    ctrl_c.abort();

    let stopped_early = interrupted.load(std::sync::atomic::Ordering::SeqCst) || failure.is_some();
    let names: Vec<(String, String)> = mapping
        .entities
        .iter()
        .map(|e| (e.name.clone(), e.source_table.clone()))
        .collect();
    let meta = RunMeta {
        command: "migrate".into(),
        mapping: mapping.origin.display().to_string(),
        target_table: mapping.table.name.clone(),
        source: "scan".into(),
        started_at,
        duration: clock.elapsed(),
        interrupted: stopped_early,
        dead_letter_file: Some(opts.dead_letter.display().to_string()),
    };
    let report = RunReport::build(&stats, &names, meta);
    if failure.is_none() && !report.reconciled {
        failure = Some(PipelineError::NotReconciled);
    }
    if failure.is_none() && interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        failure = Some(PipelineError::Interrupted);
    }
    Ok((report, failure))
}

/// The transform stage: every item read is counted, then put, filtered or
/// dead-lettered.
async fn transform_stage(
    mapping: Arc<Mapping>,
    mut rx: mpsc::Receiver<SourceBatch>,
    sink: mpsc::Sender<WriteRequest>,
    dead: mpsc::Sender<DeadLetter>,
    stats: Arc<RunStats>,
) {
    let key_names: Vec<&str> = mapping.table.primary_key();
    while let Some(batch) = rx.recv().await {
        let Some(entity) = mapping.entities.get(batch.entity) else {
            continue;
        };
        let source_key_names: Vec<&str> = entity.source_key.iter().map(String::as_str).collect();
        let c = stats.entity(batch.entity);
        for item in batch.items {
            RunStats::add(&c.read, 1);
            let source_key = project(&item, &source_key_names);
            match transform(entity, &mapping.table, &item) {
                Outcome::Put(target) => {
                    let req = WriteRequest {
                        entity: batch.entity,
                        key: key_text(&target, &key_names),
                        wire_bytes: wire_bytes(&target),
                        write_units: crate::item::write_units(
                            item_size(&target),
                            indexes_landed_in(&target, &mapping.table),
                        ),
                        source_key,
                        op: crate::sinks::batcher::Op::Put,
                        item: target,
                    };
                    if let Err(back) = sink.send(req).await {
                        // The sink is gone (it failed): the item still gets a record.
                        let r = back.0;
                        let dl = DeadLetter {
                            entity: r.entity,
                            source_key: r.source_key,
                            stage: "write",
                            reason: "the writer stopped before this item".into(),
                            item: r.item,
                        };
                        let _ = dead.send(dl).await;
                    }
                }
                Outcome::Filtered(_) => RunStats::add(&c.filtered, 1),
                Outcome::Reject(r) => {
                    let dl = DeadLetter {
                        entity: batch.entity,
                        source_key,
                        stage: "transform",
                        reason: r.to_string(),
                        item,
                    };
                    let _ = dead.send(dl).await;
                }
            }
        }
    }
}

/// Preview: the first `limit` items of each source table and what they become.
pub async fn preview(
    client: &aws_sdk_dynamodb::Client,
    mapping: &Mapping,
    limit: usize,
) -> Result<String, PipelineError> {
    describe_sources(client, mapping).await?;
    let mut out = String::new();
    for entity in &mapping.entities {
        let items = scan::scan_first(client, &entity.source_table, limit).await?;
        out.push_str(&format!(
            "== {} ({} -> {} {}): {} item(s) shown\n",
            entity.name,
            entity.source_table,
            mapping.table.name,
            entity.entity_type,
            items.len()
        ));
        for item in items {
            out.push_str(&preview_one(mapping, entity, &item));
        }
        out.push('\n');
    }
    out.push_str("preview wrote nothing.\n");
    Ok(out)
}

fn preview_one(mapping: &Mapping, entity: &crate::mapping::Entity, item: &Item) -> String {
    let source = item_to_json(item);
    match transform(entity, &mapping.table, item) {
        Outcome::Put(target) => {
            format!("  source: {source}\n  target: {}\n", item_to_json(&target))
        }
        Outcome::Filtered(rule) => format!("  source: {source}\n  filtered: {rule}\n"),
        Outcome::Reject(r) => format!("  source: {source}\n  DEAD-LETTER: {r}\n"),
    }
}
