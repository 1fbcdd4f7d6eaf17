//! A run's state file, as the pipeline uses it: how a run begins (fresh,
//! or resumed from where the last one stood) and the task that saves where
//! it stands every few seconds and once more at the end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checkpoint::{self, Counts, DeadLetterFile, EntityState, Fingerprint, Start};
use crate::checkpoint::{State, StateError, Status, Tracker, UnitState};
use crate::mapping::Mapping;
use crate::report::RunStats;
use crate::sources::{self, EntitySource};

/// Where the state is kept and how the run starts from it.
#[derive(Debug, Clone)]
pub struct StateOptions {
    pub path: PathBuf,
    /// Continue the run the state describes.
    pub resume: bool,
    /// Start over, replacing any state.
    pub fresh: bool,
    /// How often it is saved while the run goes.
    pub every: Duration,
    /// The target, in words (table, region, endpoint): part of the fingerprint.
    pub target: String,
    /// This process's share of the run (`--shard I/N`).
    pub shard: Option<sources::Shard>,
}

/// How a run begins.
pub struct Begun {
    pub units: Vec<UnitState>,
    pub counters: Vec<Counts>,
    /// Everything the saved states share (fingerprint, start, attempts).
    pub template: State,
    pub resumed: bool,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What the state belongs to: the mapping's text, where each entity is
/// read from, and the target.
pub fn fingerprint(
    mapping: &Mapping,
    plan: &[EntitySource],
    target: &str,
) -> Result<Fingerprint, StateError> {
    let origin = &mapping.origin;
    let md5 = mapping.text_md5.clone();
    let sources = mapping
        .entities
        .iter()
        .zip(plan)
        .map(|(e, s)| match s {
            EntitySource::Scan(_) => format!("{}: scan", e.source_table),
            EntitySource::Export { full, incrementals } => {
                let labels: Vec<String> = full
                    .iter()
                    .chain(incrementals)
                    .map(|x| format!("{} (as of {})", x.label, x.as_of))
                    .collect();
                format!("{}: exports {}", e.source_table, labels.join(", "))
            }
        })
        .collect();
    Ok(Fingerprint {
        mapping_path: origin.display().to_string(),
        mapping_md5: md5,
        sources,
        target: target.to_string(),
    })
}

/// Decides how the run begins (refusing what `checkpoint::decide`
/// refuses) and, on resume, trims the dead-letter file to the lines of
/// acknowledged batches.
pub fn begin(
    mapping: &Mapping,
    plan: &[EntitySource],
    scan: &sources::scan::ScanConfig,
    opts: &StateOptions,
    dead_letter: &std::path::Path,
) -> Result<Begun, StateError> {
    let fp = fingerprint(mapping, plan, &opts.target)?;
    let entities: Vec<EntityState> = mapping
        .entities
        .iter()
        .zip(plan)
        .map(|(e, s)| EntityState {
            name: e.name.clone(),
            source_table: e.source_table.clone(),
            // A shard reads about its share (a guide for progress only).
            expected: s.expected() / opts.shard.map_or(1, |s| u64::from(s.count)),
        })
        .collect();
    let template = |started_at: String, attempts: u32| State {
        version: 1,
        status: Status::Running,
        fingerprint: fp.clone(),
        started_at,
        saved_at: now(),
        advanced_at: None,
        attempts,
        pid: std::process::id(),
        phases: sources::phases(plan),
        phase: 0,
        entities: entities.clone(),
        units: Vec::new(),
        counters: Vec::new(),
        dead_letter: DeadLetterFile {
            path: dead_letter.display().to_string(),
            bytes: 0,
        },
        exit_code: None,
        stopped_because: None,
        follow: None,
    };
    match checkpoint::decide(&opts.path, opts.resume, opts.fresh, &fp)? {
        Start::Resume(state) => {
            let saved = &state.dead_letter;
            if saved.path != dead_letter.display().to_string() {
                return Err(StateError::Changed {
                    path: opts.path.clone(),
                    changes: format!(
                        "its dead-letter file is {}, not {}; pass --dead-letter {}",
                        saved.path,
                        dead_letter.display(),
                        saved.path
                    ),
                });
            }
            let trim = checkpoint::trim_dead_letters(dead_letter, saved, &state.units)?;
            let mut trimmed = (*state).clone();
            trimmed.dead_letter.bytes = trim.bytes;
            trimmed.save(&opts.path)?;
            trim.commit()?;
            // A follow recorded with the copy (--then-follow) stays.
            let mut kept = template(state.started_at.clone(), state.attempts + 1);
            kept.follow = state.follow.clone();
            Ok(Begun {
                template: kept,
                units: state.units,
                counters: state.counters,
                resumed: true,
            })
        }
        Start::Fresh => Ok(Begun {
            units: sources::units(plan, scan, opts.shard),
            counters: vec![Counts::default(); mapping.entities.len()],
            template: template(now(), 1),
            resumed: false,
        }),
        Start::Finished(state) => Err(StateError::Unreadable {
            path: opts.path.clone(),
            message: format!(
                "the run it records finished (exit code {}); there is nothing to resume",
                state.exit_code.unwrap_or_default()
            ),
        }),
    }
}

/// The lag of each table now, for a follow's saves.
pub type Lags = Arc<dyn Fn() -> Vec<crate::checkpoint::TableLag> + Send + Sync>;

/// Saves the run's state: every `every` while it goes, and at the end.
pub struct Saver {
    pub path: PathBuf,
    pub template: State,
    pub tracker: Arc<Tracker>,
    pub stats: Arc<RunStats>,
    /// The dead-letter file's length as of its last fsync.
    pub synced_bytes: Arc<AtomicU64>,
    /// A follow's saver: the tracker's units are its shards, and this says
    /// how far behind each table is. None: a copy's saver.
    pub follow_lags: Option<Lags>,
    /// (tracker advances seen, when they last changed)
    advanced: Mutex<(u64, Option<String>)>,
    /// Held while saving; true once the last state is saved (a periodic
    /// save that comes later must not overwrite it).
    closed: Mutex<bool>,
}

impl Saver {
    pub fn new(
        path: PathBuf,
        template: State,
        tracker: Arc<Tracker>,
        stats: Arc<RunStats>,
        synced_bytes: Arc<AtomicU64>,
    ) -> Saver {
        let advanced = Mutex::new((0, template.advanced_at.clone()));
        Saver {
            path,
            template,
            tracker,
            stats,
            synced_bytes,
            follow_lags: None,
            advanced,
            closed: Mutex::new(false),
        }
    }

    /// The state as it stands.
    pub fn state(&self, status: Status) -> State {
        // The dead-letter length first: every line acknowledged below is on
        // disk by then (the task syncs before it settles).
        let bytes = self.synced_bytes.load(Ordering::Relaxed);
        let (units, mut counters) = self.tracker.snapshot();
        for (i, c) in counters.iter_mut().enumerate() {
            self.stats.fill_unreconciled(i, c);
        }
        let advanced_at = {
            let mut a = self.advanced.lock().unwrap_or_else(|p| p.into_inner());
            let n = self.tracker.advances();
            if n != a.0 {
                *a = (n, Some(now()));
            }
            a.1.clone()
        };
        let mut s = self.template.clone();
        s.saved_at = now();
        s.advanced_at = advanced_at;
        match (&self.follow_lags, s.follow.as_mut()) {
            (Some(lags), Some(f)) => {
                f.status = status;
                f.saved_at = Some(s.saved_at.clone());
                f.shards = units;
                f.counters = counters;
                f.dead_letter.bytes = bytes;
                f.lag = lags();
            }
            _ => {
                s.status = status;
                s.phase = State::phase_of(&units, s.phases);
                s.units = units;
                s.counters = counters;
                s.dead_letter.bytes = bytes;
            }
        }
        s
    }

    /// Saves the state as it stands, unless the last one is saved.
    pub fn save_running(&self) -> Result<(), StateError> {
        let closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if *closed {
            return Ok(());
        }
        self.state(Status::Running).save(&self.path)?;
        tracing::debug!("state saved to {}", self.path.display());
        Ok(())
    }

    /// Saves the last state of this run; no periodic save follows it.
    pub fn save_last(&self, state: &State) -> Result<(), StateError> {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        *closed = true;
        state.save(&self.path)
    }

    /// Saves every `every` until aborted. A save that fails is reported
    /// once; the run goes on (the final save reports again).
    pub fn spawn(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                tokio::time::sleep(every).await;
                let me = self.clone();
                let saved = tokio::task::spawn_blocking(move || me.save_running()).await;
                if let Ok(Err(e)) = saved {
                    if !warned {
                        eprintln!("singletable: warning: {e}; the run goes on, but could not be resumed from here");
                        warned = true;
                    }
                }
            }
        })
    }
}
