//! `follow`: the legacy tables' streams applied to the target until cutover.
//!
//! This module owns the shape of a follow: where it starts (a fresh start
//! from `--from`, the start recorded by `migrate --then-follow`, or the
//! shards' positions in the state file), the coordinator that lists each
//! stream's shards and starts a reader for a shard once its parent is
//! drained, the lag of every table (the [`Board`]), and the stop: a
//! signal, a failure, or with `--until-caught-up` the moment every table
//! is caught up. The records flow through the same transform, sink and
//! dead-letter file as `migrate`'s (one bounded channel in), so a change
//! is written through the same adaptive, rate-limited BatchWriteItem sink,
//! and two writes of one target key land in the order the stream made
//! them. Every record read is counted into exactly one outcome, as in a
//! copy, and the state file keeps each shard's last acknowledged sequence
//! number so a killed follow resumes after it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::{state, MigrateOptions, PipelineError, StageSpec, Stages};
use crate::checkpoint::{self, FollowState, State, StateError, StateLock, Status};
use crate::checkpoint::{StreamRef, TableLag, Tracker, UnitState};
use crate::mapping::Mapping;
use crate::report::RunStats;
use crate::sources::streams::{self, now_ms, Position, ShardRead, ShardWatch, StreamsClient};
use crate::sources::SourceMsg;

/// Records made this long before the start time are applied all the same:
/// the clocks of this machine and AWS may differ, and the stream rounds its
/// times down to the second. Applying a change again is harmless.
pub const START_SLACK: Duration = Duration::from_secs(60);
/// How often each stream's shards are listed (and at once after a shard closes).
const SHARD_REFRESH: Duration = Duration::from_secs(10);
/// How often the coordinator looks at the lag.
const TICK: Duration = Duration::from_millis(250);

/// Where a follow starts.
#[derive(Debug, Clone, PartialEq)]
pub enum StartAt {
    /// Every record the streams keep (24 hours).
    TrimHorizon,
    /// Records made from the moment the follow starts.
    Latest,
    /// Records made from this time on.
    Time(chrono::DateTime<chrono::Utc>),
}

impl std::str::FromStr for StartAt {
    type Err = String;

    fn from_str(s: &str) -> Result<StartAt, String> {
        match s.trim() {
            "TRIM_HORIZON" | "trim_horizon" => Ok(StartAt::TrimHorizon),
            "LATEST" | "latest" => Ok(StartAt::Latest),
            t => chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| StartAt::Time(t.to_utc()))
                .map_err(|e| {
                    format!("{t:?} is not TRIM_HORIZON, LATEST or an RFC 3339 time such as 2026-11-25T21:00:00Z ({e})")
                }),
        }
    }
}

impl StartAt {
    /// In words, for the state and the report.
    pub fn describe(&self) -> String {
        match self {
            StartAt::TrimHorizon => "TRIM_HORIZON (every record the streams keep)".into(),
            StartAt::Latest => "LATEST (changes made from the follow's start)".into(),
            StartAt::Time(t) => format!("{} (changes made from then)", rfc3339(*t)),
        }
    }

    /// Records made before this are skipped.
    pub fn skip_before(&self) -> Option<String> {
        match self {
            StartAt::TrimHorizon => None,
            StartAt::Latest => Some(rfc3339(chrono::Utc::now())),
            StartAt::Time(t) => Some(rfc3339(*t)),
        }
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The time records are skipped before, in epoch ms, slack included.
fn skip_before_ms(stream: &StreamRef) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(stream.skip_before.as_deref()?).ok()?;
    Some(t.timestamp_millis() - START_SLACK.as_millis() as i64)
}

/// Everything a follow needs beyond the mapping and the clients.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The sink, dead-letter file, state file and progress, as for `migrate`.
    pub write: MigrateOptions,
    /// Where to start; none: where the state says.
    pub from: Option<StartAt>,
    /// Stop once every table is caught up.
    pub until_caught_up: bool,
    /// Caught up: every change made more than this long ago is applied.
    pub max_lag: Duration,
    /// Start over: the state's follow positions are replaced.
    pub fresh: bool,
}

/// How the follow starts: its state, and whether it resumes.
struct Begun {
    template: State,
    resumed: bool,
}

/// Why a follow cannot start from a state.
fn refuse(path: &Path, message: String) -> PipelineError {
    StateError::Refused {
        path: path.to_path_buf(),
        message,
    }
    .into()
}

/// Decides where the follow starts, from the state file and the options.
fn begin(
    mapping: &Mapping,
    found: &[StreamRef],
    opts: &FollowOptions,
) -> Result<Begun, PipelineError> {
    let path = &opts.write.state.path;
    let dead = opts.write.dead_letter.display().to_string();
    let now_fp = state::fingerprint(mapping, &[], &opts.write.state.target)?;
    let Some(mut saved) = State::load(path)? else {
        let start = opts.from.clone().unwrap_or(StartAt::TrimHorizon);
        return Ok(Begun {
            template: fresh_state(mapping, found, &start, now_fp, dead),
            resumed: false,
        });
    };
    let fp = &saved.fingerprint;
    if fp.mapping_md5 != now_fp.mapping_md5 || fp.target != now_fp.target {
        let changes = fp.changes(&now_fp);
        let changes = changes
            .into_iter()
            .filter(|c| !c.starts_with("the sources"));
        return Err(StateError::Changed {
            path: path.clone(),
            changes: changes.collect::<Vec<_>>().join("; "),
        }
        .into());
    }
    if saved.phases > 0 && saved.status != Status::Finished {
        return Err(refuse(path, format!(
            "the bulk copy it records has not finished; finish it first: singletable migrate --resume --then-follow --state {}",
            path.display()
        )));
    }
    let follow = match (saved.follow.take(), opts.fresh, &opts.from) {
        (Some(f), false, None) => f,
        (Some(f), false, Some(_)) => {
            let what = match f.started_at {
                Some(_) => "holds the shards' positions of an earlier follow",
                None => "records where the bulk copy wants the streams followed from",
            };
            return Err(refuse(path, format!(
                "it {what} ({}); drop --from to go on from there, or pass --fresh to follow from --from instead", f.from
            )));
        }
        (_, _, Some(start)) => new_follow(found, start, dead.clone()),
        (_, _, None) if saved.phases == 0 => new_follow(found, &StartAt::TrimHorizon, dead.clone()),
        (_, _, None) => {
            return Err(refuse(path, format!(
                "its copy (started {}) did not record where to follow the streams from (migrate --then-follow does); pass --from with the time the copy's data is as of: the export's time, or when the scan began",
                saved.started_at
            )))
        }
    };
    let resumed = follow.started_at.is_some();
    saved.follow = Some(check_streams(path, follow, found)?);
    Ok(Begun {
        template: saved,
        resumed,
    })
}

/// A state that holds only a follow (no bulk copy).
fn fresh_state(
    mapping: &Mapping,
    found: &[StreamRef],
    start: &StartAt,
    fingerprint: checkpoint::Fingerprint,
    dead: String,
) -> State {
    let entities = mapping
        .entities
        .iter()
        .map(|e| checkpoint::EntityState {
            name: e.name.clone(),
            source_table: e.source_table.clone(),
            expected: 0,
        })
        .collect();
    let now = rfc3339(chrono::Utc::now());
    State {
        version: 1,
        status: Status::Finished,
        fingerprint,
        started_at: now.clone(),
        saved_at: now,
        advanced_at: None,
        attempts: 0,
        pid: std::process::id(),
        phases: 0,
        phase: 0,
        entities,
        units: Vec::new(),
        counters: Vec::new(),
        dead_letter: checkpoint::DeadLetterFile {
            path: String::new(),
            bytes: 0,
        },
        exit_code: None,
        stopped_because: None,
        follow: Some(new_follow(found, start, dead)),
    }
}

/// A follow of `found` from `start`, not begun.
fn new_follow(found: &[StreamRef], start: &StartAt, dead: String) -> FollowState {
    let skip = start.skip_before();
    let streams = found
        .iter()
        .map(|s| StreamRef {
            skip_before: skip.clone(),
            ..s.clone()
        })
        .collect();
    FollowState::new(start.describe(), streams, dead)
}

/// The recorded streams must be the ones the tables have now: a stream
/// disabled and enabled again is a new one, and the changes between are in
/// neither.
fn check_streams(
    path: &Path,
    mut follow: FollowState,
    found: &[StreamRef],
) -> Result<FollowState, PipelineError> {
    for f in found {
        let Some(recorded) = follow.streams.iter_mut().find(|s| s.entity == f.entity) else {
            return Err(refuse(
                path,
                format!("it records no stream for {}", f.table),
            ));
        };
        if recorded.arn != f.arn {
            return Err(refuse(path, format!(
                "the stream of {} is not the one it records (was {}, is {}): it was disabled and enabled again, and changes made in between are in neither; migrate again, then follow from that copy's start",
                f.table, recorded.arn, f.arn
            )));
        }
        recorded.view = f.view.clone();
    }
    Ok(follow)
}

/// What a follow shows and saves of each table, and what it knows of each
/// shard: its watch (from its reader) and whether a reader has it.
pub struct Board {
    streams: Vec<StreamRef>,
    tracker: Arc<Tracker>,
    max_lag: Duration,
    slots: Mutex<Vec<Slot>>,
    /// Per entity: records skipped as made before the start.
    skipped: Vec<AtomicU64>,
    /// Every stream's shards have been listed at least once.
    listed: AtomicBool,
}

struct Slot {
    watch: Arc<ShardWatch>,
    running: bool,
}

impl Board {
    fn new(
        streams: Vec<StreamRef>,
        tracker: Arc<Tracker>,
        max_lag: Duration,
        entities: usize,
    ) -> Board {
        let units = tracker.snapshot().0.len();
        let slots = (0..units).map(|_| Slot::idle()).collect();
        Board {
            streams,
            tracker,
            max_lag,
            slots: Mutex::new(slots),
            skipped: (0..entities).map(|_| AtomicU64::new(0)).collect(),
            listed: AtomicBool::new(false),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the shards of `stream` not known yet; a known shard that is
    /// gone from the listing before it was drained is an error (its records
    /// were trimmed unread).
    fn add_shards(
        &self,
        stream: &StreamRef,
        listed: &[streams::ShardInfo],
    ) -> Result<(), PipelineError> {
        let (units, _) = self.tracker.snapshot();
        let known: Vec<&UnitState> = units.iter().filter(|u| u.entity == stream.entity).collect();
        for u in &known {
            if !u.done && !listed.iter().any(|s| s.id == u.name) {
                return Err(streams::StreamError::Trimmed {
                    table: stream.table.clone(),
                    shard: u.name.clone(),
                    position: u
                        .sequence
                        .as_deref()
                        .map_or("its start".into(), |s| format!("after sequence number {s}")),
                }
                .into());
            }
        }
        let mut slots = self.slots();
        for s in listed {
            if known.iter().any(|u| u.name == s.id) {
                continue;
            }
            self.tracker.add_unit(UnitState {
                entity: stream.entity,
                name: s.id.clone(),
                parent: s.parent.clone(),
                ..UnitState::default()
            });
            slots.push(Slot::idle());
        }
        Ok(())
    }

    /// Shards to start reading: not done, no reader, and their parent done
    /// or unknown (gone from the stream, or never part of this follow).
    fn ready(&self) -> Vec<(usize, UnitState)> {
        let (units, _) = self.tracker.snapshot();
        let mut slots = self.slots();
        let mut out = Vec::new();
        for (i, u) in units.iter().enumerate() {
            let Some(slot) = slots.get_mut(i) else {
                continue;
            };
            if u.done || slot.running {
                continue;
            }
            let parent_open = u.parent.as_ref().is_some_and(|p| {
                units
                    .iter()
                    .any(|o| o.entity == u.entity && &o.name == p && !o.done)
            });
            if !parent_open {
                slot.running = true;
                slot.watch = Arc::new(ShardWatch::default());
                out.push((i, u.clone()));
            }
        }
        out
    }

    fn watch(&self, unit: usize) -> Arc<ShardWatch> {
        self.slots()
            .get(unit)
            .map(|s| s.watch.clone())
            .unwrap_or_default()
    }

    fn stopped(&self, unit: usize) {
        if let Some(s) = self.slots().get_mut(unit) {
            s.running = false;
        }
    }

    /// The lag of every table now.
    pub fn lags(&self) -> Vec<TableLag> {
        let (units, _) = self.tracker.snapshot();
        let behind = self.tracker.in_flight();
        let slots = self.slots();
        let now = now_ms();
        let fresh = self.max_lag.as_millis() as i64;
        self.streams
            .iter()
            .map(|s| {
                let mut lag = TableLag {
                    table: s.table.clone(),
                    ..TableLag::default()
                };
                let mut made: Option<i64> = None;
                for (i, u) in units
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| u.entity == s.entity)
                {
                    lag.shards += 1;
                    lag.behind += behind.get(i).copied().unwrap_or(0);
                    let tip = slots
                        .get(i)
                        .map_or(0, |s| s.watch.tip_seen_ms.load(Ordering::Relaxed));
                    if u.done || (tip > 0 && now - tip <= fresh) {
                        lag.shards_at_tip += 1;
                    }
                    made = made.max(u.made_ms);
                }
                lag.last_applied_made_at = made
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(rfc3339);
                lag.last_applied_age_seconds = made.map(|m| (now - m).max(0) as f64 / 1000.0);
                lag.caught_up = self.listed.load(Ordering::Relaxed)
                    && lag.shards_at_tip == lag.shards
                    && lag.behind == 0;
                lag
            })
            .collect()
    }

    /// Records skipped per entity (made before the start), this run.
    pub fn skipped(&self, entity: usize) -> u64 {
        self.skipped
            .get(entity)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// The newest record read per table that is older than the stream's
    /// warning age: the follower is near losing records.
    fn near_expiry(&self) -> Vec<(String, f64)> {
        let (units, _) = self.tracker.snapshot();
        let slots = self.slots();
        let now = now_ms();
        let warn = streams::RETENTION_WARNING.as_millis() as i64;
        let mut out: Vec<(String, f64)> = Vec::new();
        for (i, u) in units.iter().enumerate() {
            let Some(slot) = slots.get(i).filter(|s| s.running) else {
                continue;
            };
            let newest = slot.watch.newest_read_ms.load(Ordering::Relaxed);
            if newest > 0 && now - newest > warn {
                if let Some(s) = self.streams.iter().find(|s| s.entity == u.entity) {
                    out.push((s.table.clone(), (now - newest) as f64 / 3_600_000.0));
                }
            }
        }
        out
    }
}

impl Slot {
    fn idle() -> Slot {
        Slot {
            watch: Arc::new(ShardWatch::default()),
            running: false,
        }
    }
}

/// Follows the streams until a signal, a failure or (with
/// `--until-caught-up`) every table caught up. Returns the report, and the
/// error that stopped the follow, if one did.
pub async fn follow(
    client: &aws_sdk_dynamodb::Client,
    streams_client: &StreamsClient,
    mapping: &Mapping,
    opts: &FollowOptions,
) -> Result<(crate::report::RunReport, Option<PipelineError>), PipelineError> {
    let (clock, started_at) = (Instant::now(), rfc3339(chrono::Utc::now()));
    let found = streams::discover(client, mapping).await?;
    let _lock = StateLock::take(&opts.write.state.path)?;
    let mut begun = begin(mapping, &found, opts)?;
    let (f, warnings) = open_follow(&mut begun, &found, opts)?;
    let entities = mapping.entities.len();
    let stats = Arc::new(RunStats::new(entities));
    stats.preload(&f.counters);
    let tracker = Tracker::new(f.shards.clone(), f.counters.clone());
    let streams = f.streams.clone();
    let board = Arc::new(Board::new(streams, tracker.clone(), opts.max_lag, entities));
    let progress = watched(mapping, opts, &stats, &board);
    let spec = StageSpec {
        append: begun.resumed,
        full_phase: false,
        expected: 0,
        progress: progress.clone(),
    };
    let stages = Stages::start(client, mapping, &opts.write, &stats, spec).await?;
    let from = f.from.clone();
    begun.template.follow = Some(f);
    let mut saver = state::Saver::new(
        opts.write.state.path.clone(),
        begun.template,
        tracker,
        stats.clone(),
        stages.synced_bytes.clone(),
    );
    let lags = board.clone();
    saver.follow_lags = Some(Arc::new(move || lags.lags()));
    let saver = Arc::new(saver);
    saver.save_running()?;
    let saving = saver.clone().spawn(opts.write.state.every);
    let coordinator = Coordinator {
        streams_client: streams_client.clone(),
        board: board.clone(),
        tx: stages.src_tx.clone(),
        shutdown: stages.shutdown_tx.clone(),
        stats: stats.clone(),
        progress,
        opts: opts.clone(),
    };
    let (failure, caught_up) = coordinator.run().await;
    let (failure, interrupted) = stages.join(failure).await;
    saving.abort();
    let ended = super::Ended {
        command: "follow",
        import: None,
        source: "streams".into(),
        started_at,
        clock,
        interrupted,
        warnings,
    };
    let (mut report, failure) = super::finish_report(&stats, mapping, &opts.write, ended, failure);
    report.follow = Some(crate::report::FollowAccount {
        from,
        until_caught_up: opts.until_caught_up,
        caught_up,
        max_lag_seconds: opts.max_lag.as_secs_f64(),
        skipped_before_start: (0..entities).map(|e| board.skipped(e)).sum(),
        lag: board.lags(),
    });
    Ok(save_last(&saver, report, failure, caught_up, opts))
}

/// The follow part of the state, made ready for this attempt: its start
/// checked against the streams' retention (a fresh one), its dead-letter
/// file opened or trimmed, the attempt counted. Returns it and the
/// warnings for the report.
fn open_follow(
    begun: &mut Begun,
    found: &[StreamRef],
    opts: &FollowOptions,
) -> Result<(FollowState, Vec<String>), PipelineError> {
    let mut f = begun
        .template
        .follow
        .take()
        .unwrap_or_else(|| new_follow(found, &StartAt::TrimHorizon, String::new()));
    // A start past the streams' retention is refused: changes since are lost.
    let warnings = match begun.resumed {
        true => Vec::new(),
        false => super::follow_window(&f)?,
    };
    let (path, dead) = (&opts.write.state.path, &opts.write.dead_letter);
    prepare_dead_letters(path, &mut f, dead, begun.resumed)?;
    f.attempts += 1;
    f.started_at
        .get_or_insert_with(|| rfc3339(chrono::Utc::now()));
    f.status = Status::Running;
    f.max_lag_seconds = opts.max_lag.as_secs_f64();
    f.exit_code = None;
    f.stopped_because = None;
    f.counters
        .resize(begun.template.entities.len(), Default::default());
    Ok((f, warnings))
}

/// The run's progress, each table's lag beside it.
fn watched(
    mapping: &Mapping,
    opts: &FollowOptions,
    stats: &Arc<RunStats>,
    board: &Arc<Board>,
) -> Arc<crate::progress::Progress> {
    let tables: Vec<(String, u64, usize)> = mapping
        .entities
        .iter()
        .map(|e| (e.source_table.clone(), 0, 0))
        .collect();
    let progress = super::progress(&tables, &opts.write, stats);
    let (board, max_lag) = (board.clone(), opts.max_lag.as_secs_f64());
    progress.set_lag(Box::new(move || {
        crate::checkpoint::follow::lag_lines(&board.lags(), max_lag)
    }));
    progress
}

/// The follow's dead-letter file: the same one on a resume (trimmed to the
/// lines of acknowledged batches), a new one otherwise.
fn prepare_dead_letters(
    path: &Path,
    f: &mut FollowState,
    dead: &Path,
    resumed: bool,
) -> Result<(), PipelineError> {
    let named = dead.display().to_string();
    if !resumed {
        f.dead_letter = checkpoint::DeadLetterFile {
            path: named,
            bytes: 0,
        };
        return Ok(());
    }
    if f.dead_letter.path != named {
        return Err(StateError::Changed {
            path: path.to_path_buf(),
            changes: format!(
                "its follow's dead-letter file is {}, not {named}; pass --dead-letter {}",
                f.dead_letter.path, f.dead_letter.path
            ),
        }
        .into());
    }
    let trim = checkpoint::trim_dead_letters(dead, &f.dead_letter, &f.shards)?;
    f.dead_letter.bytes = trim.bytes;
    trim.commit()?;
    Ok(())
}

/// Saves the follow's last state: caught up (with `--until-caught-up`) or
/// stopped, and why.
fn save_last(
    saver: &state::Saver,
    mut report: crate::report::RunReport,
    mut failure: Option<PipelineError>,
    caught_up: bool,
    opts: &FollowOptions,
) -> (crate::report::RunReport, Option<PipelineError>) {
    let status = match caught_up && failure.is_none() {
        true => Status::Finished,
        false => Status::Stopped,
    };
    let mut last = saver.state(status);
    if let Some(f) = last.follow.as_mut() {
        f.exit_code = Some(report.exit_code);
        f.stopped_because = Some(match &failure {
            Some(e) => e.to_string(),
            None if caught_up => "caught up (--until-caught-up)".into(),
            None => "stopped".into(),
        });
    }
    if let Err(e) = saver.save_last(&last) {
        failure.get_or_insert(e.into());
        report.judge(true, opts.write.allow_dead_letters);
    }
    (report, failure)
}

/// Lists shards, starts their readers, watches the lag, and stops.
struct Coordinator {
    streams_client: StreamsClient,
    board: Arc<Board>,
    tx: mpsc::Sender<SourceMsg>,
    shutdown: watch::Sender<bool>,
    stats: Arc<RunStats>,
    progress: Arc<crate::progress::Progress>,
    opts: FollowOptions,
}

type Readers = tokio::task::JoinSet<(usize, Result<streams::ShardEnd, streams::StreamError>)>;

impl Coordinator {
    /// Runs until a stop; returns the failure, and whether it stopped
    /// because every table caught up.
    async fn run(self) -> (Option<PipelineError>, bool) {
        let mut readers = Readers::new();
        let mut stop = self.shutdown.subscribe();
        let mut listed_at: Option<Instant> = None;
        let mut warned = HashSet::new();
        let mut failure: Option<PipelineError> = None;
        let mut caught_up = false;
        loop {
            if listed_at.is_none_or(|t| t.elapsed() >= SHARD_REFRESH) {
                if let Err(e) = self.list().await {
                    failure = Some(e);
                    break;
                }
                listed_at = Some(Instant::now());
            }
            for (unit, state) in self.board.ready() {
                readers.spawn(self.reader(unit, state));
            }
            tokio::select! {
                Some(joined) = readers.join_next(), if !readers.is_empty() => {
                    match self.reaped(joined) {
                        Ok(true) => listed_at = None,
                        Ok(false) => {}
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            self.warn_near_expiry(&mut warned);
            if self.opts.until_caught_up && self.board.lags().iter().all(|l| l.caught_up) {
                caught_up = true;
                break;
            }
        }
        let _ = self.shutdown.send(true);
        while let Some(joined) = readers.join_next().await {
            if let Err(e) = self.reaped(joined) {
                failure.get_or_insert(e);
            }
        }
        (failure, caught_up)
    }

    /// A reader ended: true when its shard is drained (its children may
    /// start: list the shards again).
    fn reaped(
        &self,
        joined: Result<
            (usize, Result<streams::ShardEnd, streams::StreamError>),
            tokio::task::JoinError,
        >,
    ) -> Result<bool, PipelineError> {
        let (unit, end) = joined.map_err(|e| PipelineError::Task(e.to_string()))?;
        self.board.stopped(unit);
        Ok(end? == streams::ShardEnd::Drained)
    }

    /// Warns, once a table, when its follow reads records near expiry.
    fn warn_near_expiry(&self, warned: &mut HashSet<String>) {
        for (table, hours) in self.board.near_expiry() {
            if warned.insert(table.clone()) {
                self.progress.note(&format!(
                    "singletable: warning: {table}: the follow is reading records {hours:.1} h old; the stream drops records at 24 h, and a record dropped unread stops the follow: give the sink more room (--max-in-flight, --write-units) or the target more capacity"
                ));
            }
        }
    }

    /// Lists every stream's shards and adds the new ones.
    async fn list(&self) -> Result<(), PipelineError> {
        let stall = self.opts.write.stall_timeout;
        for s in &self.board.streams {
            let listed = streams::shards(&self.streams_client, s, stall).await?;
            self.board.add_shards(s, &listed)?;
        }
        self.board.listed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The reading of one shard, from its position or the follow's start.
    fn reader(
        &self,
        unit: usize,
        state: UnitState,
    ) -> impl std::future::Future<Output = (usize, Result<streams::ShardEnd, streams::StreamError>)>
    {
        let stream = self
            .board
            .streams
            .iter()
            .find(|s| s.entity == state.entity)
            .cloned();
        let read = stream.map(|stream| ShardRead {
            streams: self.streams_client.clone(),
            skip_before_ms: skip_before_ms(&stream),
            stream,
            shard: state.name.clone(),
            from: state
                .sequence
                .clone()
                .map_or(Position::TrimHorizon, Position::After),
            tx: self.tx.clone(),
            cursor: checkpoint::Cursor {
                tracker: self.board.tracker.clone(),
                unit,
            },
            shutdown: self.shutdown.subscribe(),
            watch: self.board.watch(unit),
            // At most four calls a second at a shard's tip (AWS allows five).
            poll: (self.opts.max_lag / 4).clamp(Duration::from_millis(250), Duration::from_secs(1)),
            stall: self.opts.write.stall_timeout,
            on_records: self.on_records(),
            on_skipped: self.on_skipped(),
        });
        async move {
            match read {
                Some(r) => (unit, r.run().await),
                None => (unit, Ok(streams::ShardEnd::Stopped)),
            }
        }
    }

    fn on_records(&self) -> Arc<dyn Fn(usize, u64) + Send + Sync> {
        let (stats, progress) = (self.stats.clone(), self.progress.clone());
        Arc::new(move |e, n| {
            RunStats::add(&stats.entity(e).produced, n);
            progress.inc(e, n);
        })
    }

    fn on_skipped(&self) -> Arc<dyn Fn(usize, u64) + Send + Sync> {
        let board = self.board.clone();
        Arc::new(move |e, n| {
            if let Some(c) = board.skipped.get(e) {
                c.fetch_add(n, Ordering::Relaxed);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Counts, Step};

    fn stream(entity: usize) -> StreamRef {
        StreamRef {
            entity,
            table: format!("T{entity}"),
            arn: "arn".into(),
            view: "NEW_AND_OLD_IMAGES".into(),
            skip_before: None,
        }
    }

    #[test]
    fn a_table_is_caught_up_when_its_shards_are_at_their_tips_and_nothing_is_in_flight() {
        let tracker = Tracker::new(Vec::new(), vec![Counts::default()]);
        let board = Board::new(vec![stream(0)], tracker.clone(), Duration::from_secs(5), 1);
        let shards = [
            streams::ShardInfo {
                id: "a".into(),
                parent: None,
            },
            streams::ShardInfo {
                id: "b".into(),
                parent: Some("a".into()),
            },
        ];
        board.add_shards(&stream(0), &shards).unwrap();
        // The child waits for its parent.
        let ready: Vec<String> = board.ready().into_iter().map(|(_, u)| u.name).collect();
        assert_eq!(ready, ["a"]);
        assert!(!board.lags()[0].caught_up, "never listed, never at a tip");
        board.listed.store(true, Ordering::Relaxed);
        board
            .watch(0)
            .tip_seen_ms
            .store(now_ms(), Ordering::Relaxed);
        let lag = &board.lags()[0];
        assert_eq!((lag.shards, lag.shards_at_tip), (2, 1));
        assert!(!lag.caught_up, "the child has not been read");
        // The parent drains: the child is ready, then found at its tip.
        tracker.finish(0);
        board.stopped(0);
        let ready: Vec<usize> = board.ready().into_iter().map(|(i, _)| i).collect();
        assert_eq!(ready, [1]);
        board
            .watch(1)
            .tip_seen_ms
            .store(now_ms(), Ordering::Relaxed);
        assert!(board.lags()[0].caught_up);
        // A page in flight: behind, not caught up; applied: caught up again.
        let made = now_ms() - 3_000;
        let step = Step {
            records: 4,
            sequence: Some(("100000000000000000007".into(), made)),
            ..Step::default()
        };
        let part = tracker.issue(1, step);
        let lag = &board.lags()[0];
        assert_eq!(lag.behind, 4);
        assert!(!lag.caught_up);
        part.settle();
        let lag = &board.lags()[0];
        assert!(lag.caught_up, "{lag:?}");
        assert!(lag.last_applied_age_seconds.unwrap() >= 3.0);
        // A tip seen longer ago than the lag allowed is no longer enough.
        board
            .watch(1)
            .tip_seen_ms
            .store(now_ms() - 6_000, Ordering::Relaxed);
        assert!(!board.lags()[0].caught_up);
        // A shard gone from the listing before it was drained: trimmed.
        let gone = board.add_shards(&stream(0), &shards[..1]).unwrap_err();
        assert!(gone.to_string().contains("shard b"), "{gone}");
    }

    #[test]
    fn a_start_is_trim_horizon_latest_or_a_time() {
        assert_eq!("TRIM_HORIZON".parse::<StartAt>(), Ok(StartAt::TrimHorizon));
        assert_eq!("LATEST".parse::<StartAt>(), Ok(StartAt::Latest));
        let t: StartAt = "2026-11-25T21:00:00+01:00".parse().unwrap();
        assert_eq!(t.skip_before().as_deref(), Some("2026-11-25T20:00:00.000Z"));
        assert!("yesterday"
            .parse::<StartAt>()
            .unwrap_err()
            .contains("RFC 3339"));
        assert_eq!(StartAt::TrimHorizon.skip_before(), None);
        let stream = StreamRef {
            entity: 0,
            table: "T".into(),
            arn: "a".into(),
            view: "NEW_AND_OLD_IMAGES".into(),
            skip_before: t.skip_before(),
        };
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-25T20:00:00Z").unwrap();
        assert_eq!(
            skip_before_ms(&stream),
            Some(at.timestamp_millis() - 60_000),
            "a minute's slack"
        );
    }
}
