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

use tokio::sync::{mpsc, oneshot, watch};

pub mod cutover;
pub mod follow;
pub mod preview;
pub mod repair;
pub mod replay;
mod stage;
pub mod state;

pub use stage::{source_key, steps, Step};
pub use state::StateOptions;

use crate::checkpoint::{State, StateLock, Status, Tracker, UnitState};
use crate::item::Item;
use crate::mapping::{data_check, Mapping};
use crate::progress::{Mode as ProgressMode, Progress};
use crate::report::{Allowance, RunMeta, RunReport, RunStats};
use crate::sinks::dead_letter;
use crate::sinks::writer::{SinkIo, SinkMsg};
use crate::sinks::{import_files, import_table, table, upload, writer};
use crate::sources::export::Store;
use crate::sources::scan::ScanConfig;
use crate::sources::{self, EntitySource, Readers, SourceMsg, SourceOptions};
use stage::Outlets;

/// Pages waiting between the sources and the transform. Small on purpose:
/// on Ctrl-C everything already read is written before the run ends.
pub const SOURCE_QUEUE: usize = 16;
/// Writes waiting for the batcher: about 40 batches.
pub const SINK_QUEUE: usize = 1024;

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
    /// The state file, and whether to resume from it.
    pub state: StateOptions,
    /// Without a terminal: a progress line this often.
    pub progress_every: Duration,
    /// Pre-warm a table `create_table` creates.
    pub warm: Option<table::Warm>,
    /// Write files for ImportTable here instead of writing to the table.
    pub to_import: Option<ImportTarget>,
    /// `--then-follow`: the streams to follow once the copy is done; the
    /// copy records where to follow them from before it reads anything.
    pub then_follow: Option<Vec<crate::checkpoint::StreamRef>>,
    /// With `--shard`: the other shards' state files. A phase after the
    /// first starts once every one of them has finished the phase before.
    pub shard_states: Vec<PathBuf>,
}

/// `--to-import`: where the files go and how.
#[derive(Debug, Clone)]
pub struct ImportTarget {
    /// Where the files are written (for S3, the staging folder).
    pub dir: PathBuf,
    /// Where they go once the run has finished, when that is S3.
    pub upload: Option<upload::S3Place>,
    /// Then import them into a new table (`--import-table`).
    pub import_table: bool,
    /// Uncompressed bytes per file.
    pub file_size: u64,
    pub allow_collisions: bool,
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
    #[error(transparent)]
    ImportFiles(#[from] import_files::ImportFilesError),
    #[error(transparent)]
    Upload(#[from] upload::UploadError),
    #[error(transparent)]
    ImportTable(#[from] import_table::ImportTableError),
    #[error("the counts do not reconcile (read != written + deleted + filtered + dead-lettered); see the report")]
    NotReconciled,
    #[error("interrupted: the legacy tables were not read to the end; the report counts what was written")]
    Interrupted,
    #[error("interrupted: the follow stopped on a signal; the state keeps every shard's position: run follow again with the same --state to go on")]
    FollowInterrupted,
    #[error(transparent)]
    Stream(#[from] crate::sources::streams::StreamError),
    #[error("the mapping names attributes the data does not have (checked against the first {DATA_CHECK_SAMPLE} items of each source):\n{0}\nfix the mapping, or pass --skip-data-check")]
    DataCheck(String),
    #[error("a pipeline task failed: {0}")]
    Task(String),
    #[error(transparent)]
    State(#[from] crate::checkpoint::StateError),
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
    #[error("target table {table}: {message}")]
    Target { table: String, message: String },
    #[error("{0} unit(s) of work were read but not all acknowledged; the state is kept as stopped, and --resume redoes them")]
    Unacknowledged(usize),
}

/// How long `preview` retries failing reads (it has no --stall-timeout).
pub(crate) const PREVIEW_STALL: Duration = Duration::from_secs(600);

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
pub(crate) fn judge_data(
    mapping: &Mapping,
    samples: &[Vec<Item>],
) -> Result<Vec<String>, PipelineError> {
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

/// Runs a migration to the end, or from where its state stood. Returns
/// the report, and the error that stopped the run, if one did.
pub async fn migrate(
    (client, streams): (&aws_sdk_dynamodb::Client, &sources::streams::StreamsClient),
    store: &Store,
    mapping: &Mapping,
    opts: &MigrateOptions,
) -> Result<(RunReport, Option<PipelineError>), PipelineError> {
    let clock = Instant::now();
    let (plan, mut source_warnings) = sources::plan(client, store, mapping, &opts.sources).await?;
    let scanned = sources::moved::before(&plan);
    if !opts.skip_data_check {
        let stall = opts.scan.stall_timeout;
        source_warnings.extend(check_data(client, store, mapping, &plan, stall).await?);
    }
    let _lock = StateLock::take(&opts.state.path)?;
    let mut begun = state::begin(mapping, &plan, &opts.scan, &opts.state, &opts.dead_letter)?;
    if let Some(found) = &opts.then_follow {
        let started = begun.template.started_at.clone();
        let seed = begun
            .template
            .follow
            .get_or_insert_with(|| follow_seed(found, &plan, &started));
        source_warnings.extend(follow_window(seed)?);
    }
    if begun.resumed {
        source_warnings.push(resumed_note(&begun.template, &opts.state.path));
    }
    let stats = Arc::new(RunStats::new(mapping.entities.len()));
    stats.preload(&begun.counters);
    let tracker = Tracker::new(begun.units.clone(), begun.counters.clone());
    let first_phase_open = begun.units.iter().any(|u| u.phase == 0 && !u.done);
    let tables: Vec<(String, u64, usize)> = mapping
        .entities
        .iter()
        .zip(&plan)
        .map(|(e, s)| (e.source_table.clone(), s.expected(), s.files()))
        .collect();
    let spec = StageSpec {
        append: begun.resumed,
        full_phase: first_phase_open,
        expected: plan.iter().map(EntitySource::expected).sum(),
        progress: progress(&tables, opts, &stats),
    };
    let stages = Stages::start(client, mapping, opts, &stats, spec).await?;
    let saver = Arc::new(state::Saver::new(
        opts.state.path.clone(),
        begun.template.clone(),
        tracker.clone(),
        stats.clone(),
        stages.synced_bytes.clone(),
    ));
    // The state exists from the start: a kill at any point leaves one.
    saver.save_running()?;
    let saving = saver.clone().spawn(opts.state.every);
    let window = begun
        .template
        .follow
        .as_ref()
        .map(|f| warn_before_expiry(f, stages.progress.clone()));
    let work = (begun.units, tracker.clone());
    let readers = readers((client, store), opts, &stats, &stages, work);
    let phases = Phases {
        plan: &plan,
        readers: &readers,
        tx: stages.src_tx.clone(),
        shutdown: &stages.shutdown_tx,
        stats: &stats,
        clock,
        shards: (
            &opts.shard_states,
            &begun.template.fingerprint,
            &stages.progress,
        ),
    };
    let (failure, mut warnings) = phases.read(source_warnings).await;
    drop(readers);
    let (mut failure, interrupted) = stages.join(failure).await;
    if failure.is_none() && !interrupted {
        // Before the state says finished: a kill here redoes the check.
        let since = &begun.template.started_at;
        warnings.extend(moved_warnings((client, streams), &scanned, since).await);
    }
    let mut import = None;
    if failure.is_none() && !interrupted {
        match deliver_import((client, store), mapping, opts).await {
            Ok(account) => import = account,
            Err(e) => failure = Some(e),
        }
    }
    saving.abort();
    if let Some(w) = window {
        w.abort();
    }
    let open = tracker.open_units();
    if failure.is_none() && !interrupted && open > 0 {
        failure = Some(PipelineError::Unacknowledged(open));
    }
    let ended = Ended {
        command: "migrate",
        import,
        source: sources::source_words(&plan),
        started_at: begun.template.started_at.clone(),
        clock,
        interrupted,
        warnings,
    };
    let (report, failure) = finish_report(&stats, mapping, opts, ended, failure);
    Ok(save_last_state(&saver, open, opts, report, failure))
}

/// The scanned tables that changed during the run (since `since`, the
/// first attempt's start), as warnings.
async fn moved_warnings(
    (client, streams): (&aws_sdk_dynamodb::Client, &sources::streams::StreamsClient),
    scanned: &[sources::moved::Before],
    since: &str,
) -> Vec<String> {
    let Ok(since) = chrono::DateTime::parse_from_rfc3339(since) else {
        return Vec::new();
    };
    let ms = since.timestamp_millis();
    sources::moved::warnings(client, streams, scanned, ms).await
}

/// Where `--then-follow` follows each stream from: a table copied from
/// exports, from the last export's time; a scanned one, from when the copy
/// began (its first attempt).
fn follow_seed(
    found: &[crate::checkpoint::StreamRef],
    plan: &[EntitySource],
    started_at: &str,
) -> crate::checkpoint::FollowState {
    let streams = found
        .iter()
        .map(|s| {
            let as_of = match plan.get(s.entity) {
                Some(EntitySource::Export { full, incrementals }) => incrementals
                    .last()
                    .or(full.as_ref())
                    .map(|e| e.as_of.clone()),
                _ => None,
            };
            crate::checkpoint::StreamRef {
                skip_before: Some(as_of.unwrap_or_else(|| started_at.to_string())),
                ..s.clone()
            }
        })
        .collect();
    let from = "the bulk copy's start (per table: its export's time, or when its scan began)";
    crate::checkpoint::FollowState::new(from.into(), streams, String::new())
}

/// How old each stream's start is: past the streams' 24-hour retention it
/// is refused (changes since are lost); near it, a warning.
fn follow_window(f: &crate::checkpoint::FollowState) -> Result<Vec<String>, PipelineError> {
    use crate::sources::streams::{now_ms, RETENTION, RETENTION_WARNING};
    let mut warnings = Vec::new();
    for s in &f.streams {
        let Some(at) = s.skip_before.as_deref() else {
            continue;
        };
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(at) else {
            continue;
        };
        let age = Duration::from_millis((now_ms() - t.timestamp_millis()).max(0) as u64);
        let hours = age.as_secs_f64() / 3600.0;
        if age >= RETENTION {
            return Err(PipelineError::Target {
                table: s.table.clone(),
                message: format!("its stream is to be followed from {at}, {hours:.1} h ago, but a stream keeps records 24 h: changes made since are lost; copy again (a new export or scan) and follow from its start"),
            });
        }
        if age >= RETENTION_WARNING {
            warnings.push(format!("{}: the stream must be followed from {at}, {hours:.1} h ago; its records expire at 24 h, so the copy must end and the follow start before then", s.table));
        }
    }
    Ok(warnings)
}

/// While the copy runs: a warning once the oldest start to follow from is
/// 20 hours old (the streams drop records at 24).
fn warn_before_expiry(
    f: &crate::checkpoint::FollowState,
    progress: Arc<Progress>,
) -> tokio::task::JoinHandle<()> {
    use crate::sources::streams::{now_ms, RETENTION_WARNING};
    let oldest = f
        .streams
        .iter()
        .filter_map(|s| chrono::DateTime::parse_from_rfc3339(s.skip_before.as_deref()?).ok())
        .map(|t| t.timestamp_millis())
        .min();
    tokio::spawn(async move {
        let Some(oldest) = oldest else { return };
        let due = oldest + RETENTION_WARNING.as_millis() as i64 - now_ms();
        tokio::time::sleep(Duration::from_millis(due.max(0) as u64)).await;
        progress.note("singletable: warning: --then-follow: the changes to follow began 20 h ago and the streams keep them 24 h; unless the copy ends and the follow starts within 4 h, changes will be lost and the follow refused");
    })
}

/// Uploads `--to-import s3://...`'s files once the run has finished, and
/// with `--import-table` imports them; returns ImportTable's account.
async fn deliver_import(
    (client, store): (&aws_sdk_dynamodb::Client, &Store),
    mapping: &Mapping,
    opts: &MigrateOptions,
) -> Result<Option<crate::report::ImportAccount>, PipelineError> {
    let Some((t, place)) = opts
        .to_import
        .as_ref()
        .and_then(|t| Some((t, t.upload.as_ref()?)))
    else {
        return Ok(None);
    };
    let s3 = store
        .s3_client()
        .ok_or_else(|| PipelineError::Task("no S3 client was configured for --to-import".into()))?;
    let files = upload::upload(s3, &t.dir, place).await?;
    tracing::info!("uploaded {files} import files and their manifest to {place}");
    if !t.import_table {
        return Ok(None);
    }
    let account = import_table::import(client, &mapping.table, place, opts.quiet).await?;
    Ok(Some(account))
}

/// Saves the run's last state (finished, or stopped and why). A state that
/// cannot be saved fails the run: it could not be resumed.
fn save_last_state(
    saver: &state::Saver,
    open_units: usize,
    opts: &MigrateOptions,
    mut report: RunReport,
    mut failure: Option<PipelineError>,
) -> (RunReport, Option<PipelineError>) {
    let status = match open_units == 0 && failure.is_none() {
        true => Status::Finished,
        false => Status::Stopped,
    };
    let mut last = saver.state(status);
    last.exit_code = Some(report.exit_code);
    last.stopped_because = failure.as_ref().map(ToString::to_string);
    if let Err(e) = saver.save_last(&last) {
        failure.get_or_insert(e.into());
        report.judge(true, opts.allow_dead_letters);
    }
    (report, failure)
}

/// The report's note that a run resumed.
fn resumed_note(template: &State, path: &std::path::Path) -> String {
    format!(
        "resumed from {} (attempt {} of this migration, first started {}): the counts cover every attempt; collisions are detected within an attempt only",
        path.display(),
        template.attempts,
        template.started_at
    )
}

/// How the stages after the sources are set up.
struct StageSpec {
    /// Append to the dead-letter file (a resume) rather than truncate it.
    append: bool,
    /// The first phase is read (collisions are looked for).
    full_phase: bool,
    /// Records expected, to size the collision filter.
    expected: u64,
    /// What the run shows while it goes (signals note through it).
    progress: Arc<Progress>,
}

/// The stages of a run after its sources (the transform, the sink and the
/// dead-letter file, joined by bounded channels) and its signal handling.
struct Stages {
    src_tx: mpsc::Sender<SourceMsg>,
    transformer: tokio::task::JoinHandle<()>,
    sink: tokio::task::JoinHandle<Result<(), writer::SinkError>>,
    dead_task: tokio::task::JoinHandle<Result<u64, dead_letter::DeadLetterError>>,
    synced_bytes: Arc<std::sync::atomic::AtomicU64>,
    signals: tokio::task::JoinHandle<()>,
    shutdown_tx: watch::Sender<bool>,
    shutdown_rx: watch::Receiver<bool>,
    interrupted: Arc<AtomicBool>,
    progress: Arc<Progress>,
}

impl Stages {
    /// Opens the dead-letter file (the record of what fails must be
    /// possible before anything is written), checks the target table, and
    /// starts the sink and the transform.
    async fn start(
        client: &aws_sdk_dynamodb::Client,
        mapping: &Mapping,
        opts: &MigrateOptions,
        stats: &Arc<RunStats>,
        spec: StageSpec,
    ) -> Result<Stages, PipelineError> {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let dead = dead_letter::spawn(
            opts.dead_letter.clone(),
            spec.append,
            dead_letter::entities(mapping),
            stats.clone(),
            shutdown_tx.clone(),
        )
        .await?;
        match &opts.to_import {
            None => {
                table::ensure(client, &mapping.table, opts.create_table, opts.warm).await?;
            }
            Some(t) if t.import_table => {
                import_table::ensure_absent(client, &mapping.table).await?;
            }
            Some(_) => {}
        }
        let interrupted = Arc::new(AtomicBool::new(false));
        let signals = spawn_signals(
            shutdown_tx.clone(),
            interrupted.clone(),
            spec.progress.clone(),
        );
        let (sink_tx, sink_rx) = mpsc::channel::<SinkMsg>(SINK_QUEUE);
        let sink_io = SinkIo {
            rx: sink_rx,
            dead: dead.tx.clone(),
            on_stop: shutdown_tx.clone(),
            shutdown: shutdown_rx.clone(),
        };
        let sink = match &opts.to_import {
            Some(t) => {
                // An unusable folder is an error before anything is read.
                let files = import_files::ImportFiles::create(&t.dir, t.file_size, 0)?;
                let config = import_files::ImportConfig {
                    dir: t.dir.clone(),
                    allow_collisions: t.allow_collisions,
                    key_names: mapping
                        .table
                        .primary_key()
                        .iter()
                        .map(|k| k.to_string())
                        .collect(),
                };
                tokio::spawn(import_files::run(files, config, sink_io, stats.clone()))
            }
            None => {
                let config = writer_config(mapping, opts);
                tokio::spawn(writer::run(client.clone(), config, sink_io, stats.clone()))
            }
        };
        let (src_tx, src_rx) = mpsc::channel::<SourceMsg>(SOURCE_QUEUE);
        let outlets = Outlets {
            sink: sink_tx,
            dead: dead.tx,
        };
        let transformer = tokio::spawn(stage::transform_stage(
            Arc::new(mapping.clone()),
            src_rx,
            outlets,
            stats.clone(),
            spec.expected,
            spec.full_phase,
        ));
        Ok(Stages {
            src_tx,
            transformer,
            sink,
            dead_task: dead.task,
            synced_bytes: dead.synced_bytes,
            signals,
            shutdown_tx,
            shutdown_rx,
            interrupted,
            progress: spec.progress,
        })
    }

    /// Sources are done: the transform drains, then the sink, then the
    /// dead letters. Returns the failure that explains the end, and
    /// whether a signal stopped the run.
    async fn join(self, reading: Option<PipelineError>) -> (Option<PipelineError>, bool) {
        drop(self.src_tx);
        let transformed = self.transformer.await;
        let sunk = self.sink.await;
        let dead = self.dead_task.await;
        self.signals.abort();
        self.progress.finish();
        let failure = first_failure(reading, transformed, sunk, dead);
        (failure, self.interrupted.load(Ordering::SeqCst))
    }
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
    (client, store): (&aws_sdk_dynamodb::Client, &Store),
    opts: &MigrateOptions,
    stats: &Arc<RunStats>,
    stages: &Stages,
    (units, tracker): (Vec<UnitState>, Arc<Tracker>),
) -> Readers {
    let progress = stages.progress.clone();
    let (p, pf, produced) = (progress.clone(), progress, stats.clone());
    Readers {
        shutdown: stages.shutdown_rx.clone(),
        on_records: Arc::new(move |e, n| {
            // Counted where records are produced, apart from the transform.
            RunStats::add(&produced.entity(e).produced, n);
            p.inc(e, n)
        }),
        on_file: Arc::new(move |e| pf.file_done(e)),
        units: Arc::new(units),
        tracker: Some(tracker),
        prove_first: true,
        ..Readers::plain(client, store, &opts.scan, opts.read_concurrency, &[])
    }
}

/// The progress of a run over `tables` (name, expected records, export
/// files), started; a resumed run's counts start where the last one stopped.
fn progress(
    tables: &[(String, u64, usize)],
    opts: &MigrateOptions,
    stats: &Arc<RunStats>,
) -> Arc<Progress> {
    let mode = ProgressMode::detect(opts.quiet, opts.progress_every);
    let progress = Arc::new(Progress::new(mode, tables, stats.clone()));
    for e in 0..tables.len() {
        progress.inc(e, stats.entity(e).produced.load(Ordering::Relaxed));
    }
    progress.start();
    progress
}

/// The reading of a run, phase by phase.
struct Phases<'a> {
    plan: &'a [EntitySource],
    readers: &'a Readers,
    tx: mpsc::Sender<SourceMsg>,
    shutdown: &'a watch::Sender<bool>,
    stats: &'a RunStats,
    clock: Instant,
    /// With `--shard`: the other shards' state files, this run's
    /// fingerprint (theirs must agree but for the shard), where to say
    /// what it waits for.
    shards: (
        &'a [PathBuf],
        &'a crate::checkpoint::Fingerprint,
        &'a Arc<Progress>,
    ),
}

impl Phases<'_> {
    /// Reads every phase, each written before the next begins, until the
    /// end, a failure or a shutdown. Returns the failure and the warnings.
    async fn read(self, mut warnings: Vec<String>) -> (Option<PipelineError>, Vec<String>) {
        let mut failure: Option<PipelineError> = None;
        let phases = sources::phases(self.plan);
        for phase in 0..phases {
            match self.wait_for_shards(phase).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            tracing::info!("phase {} of {phases} starts", phase + 1);
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

impl Phases<'_> {
    /// Before an incremental round of a sharded run: waits until every
    /// other shard's state shows the rounds before it done (a shard's
    /// changes apply on top of every shard's earlier writes). False when
    /// the run is stopping.
    async fn wait_for_shards(&self, phase: usize) -> Result<bool, PipelineError> {
        let (siblings, fingerprint, progress) = self.shards;
        if phase == 0 || siblings.is_empty() {
            return Ok(true);
        }
        let mut stop = self.shutdown.subscribe();
        let mut told: Option<Instant> = None;
        loop {
            let mut waiting = Vec::new();
            for path in siblings {
                if !shard_done(path, phase, fingerprint)? {
                    waiting.push(path.display().to_string());
                }
            }
            if waiting.is_empty() {
                return Ok(true);
            }
            if told.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                progress.note(&format!(
                    "singletable: incremental round {phase} waits for the other shards to finish the round before it: {}",
                    waiting.join(", ")
                ));
                told = Some(Instant::now());
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return Ok(false),
            }
        }
    }
}

/// Whether the shard whose state is at `path` has finished every phase
/// before `phase`; its state must belong to the same run.
fn shard_done(
    path: &std::path::Path,
    phase: usize,
    ours: &crate::checkpoint::Fingerprint,
) -> Result<bool, PipelineError> {
    let Some(s) = State::load(path)? else {
        return Ok(false);
    };
    let theirs = &s.fingerprint;
    if theirs.mapping_md5 != ours.mapping_md5 || theirs.sources != ours.sources {
        return Err(crate::checkpoint::StateError::Changed {
            path: path.to_path_buf(),
            changes:
                "another shard's state belongs to another migration (its mapping or sources differ)"
                    .into(),
        }
        .into());
    }
    Ok(s.status == Status::Finished || s.phase >= phase)
}

/// How a run ended, for its report.
struct Ended {
    command: &'static str,
    /// ImportTable's account, when the run imported.
    import: Option<crate::report::ImportAccount>,
    /// Where it read from, in a word or two.
    source: String,
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
    opts: &MigrateOptions,
    ended: Ended,
    mut failure: Option<PipelineError>,
) -> (RunReport, Option<PipelineError>) {
    let names: Vec<(String, String)> = mapping
        .entities
        .iter()
        .map(|e| (e.name.clone(), e.source_table.clone()))
        .collect();
    let meta = RunMeta {
        command: ended.command.into(),
        mapping: mapping.origin.display().to_string(),
        target_table: match &opts.to_import {
            Some(t) => format!(
                "files for ImportTable of {} in {}",
                mapping.table.name,
                t.upload
                    .as_ref()
                    .map_or(t.dir.display().to_string(), ToString::to_string)
            ),
            None => mapping.table.name.clone(),
        },
        source: ended.source,
        started_at: ended.started_at,
        duration: ended.clock.elapsed(),
        interrupted: ended.interrupted || failure.is_some(),
        error: failure.as_ref().map(ToString::to_string),
        dead_letter_file: Some(opts.dead_letter.display().to_string()),
        source_warnings: ended.warnings,
    };
    let mut report = RunReport::build(stats, &names, meta);
    report.import_table = ended.import;
    report.shard = opts.state.shard.map(|s| (s.index, s.count));
    if failure.is_none() && !report.reconciled {
        failure = Some(PipelineError::NotReconciled);
    }
    if failure.is_none() && ended.interrupted {
        failure = Some(match ended.command {
            "follow" => PipelineError::FollowInterrupted,
            _ => PipelineError::Interrupted,
        });
    }
    report.judge(failure.is_some(), opts.allow_dead_letters);
    report.error = failure.as_ref().map(ToString::to_string);
    (report, failure)
}

/// Ctrl-C, SIGTERM, SIGHUP: stop reading; what is in flight still lands
/// or is accounted for. A second signal exits at once.
fn spawn_signals(
    shutdown: watch::Sender<bool>,
    interrupted: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(name) = next_signal().await else {
            return;
        };
        progress.note(&format!(
            "singletable: interrupted ({name}); finishing the writes in flight, for at most {} s without progress (a second signal aborts)",
            writer::DRAIN_STALL.as_secs()
        ));
        interrupted.store(true, Ordering::SeqCst);
        progress.draining();
        let _ = shutdown.send(true);
        if next_signal().await.is_some() {
            std::process::exit(crate::report::EXIT_FAILED);
        }
    })
}

/// Waits for the next stopping signal; its name.
pub(crate) async fn next_signal() -> Option<&'static str> {
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
