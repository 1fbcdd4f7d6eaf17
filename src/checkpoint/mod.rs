//! Checkpoints: the state file that lets a killed migration resume.
//!
//! A shared room below the pipeline. It owns the state file's format (a
//! fingerprint of the mapping, the sources and the target; every unit's
//! watermark from [`tracker`]; the counters of what is below them; the
//! dead-letter file's length; whether the run finished), its atomic save
//! (a temp file, fsync, rename), the lock that keeps two runs off one
//! state, the rules for starting (`--resume`, `--fresh`, or refused), the
//! dead-letter file's trim on resume (records above a watermark are redone,
//! so their lines go), and `status`'s rendering of a state.

pub mod follow;
pub mod tracker;

use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use follow::{FollowState, StreamRef, TableLag};
pub use tracker::{Counts, Cursor, Part, Step, Tracker, UnitState};

/// The state file's format version.
const VERSION: u32 = 1;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Running, or killed while running (nothing else can say so).
    Running,
    /// Stopped before the end: an error, a stall or a signal.
    Stopped,
    /// Every phase read and acknowledged.
    Finished,
}

/// What a state belongs to: a resume with any other is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The mapping file (or folder) as given.
    pub mapping_path: String,
    /// MD5 of the mapping's text (every .toml of a folder, in name order).
    pub mapping_md5: String,
    /// Per entity, in mapping order: where it is read from.
    pub sources: Vec<String>,
    /// The target table, and where it is.
    pub target: String,
}

impl Fingerprint {
    /// What differs from `other`, in words; empty when they agree.
    pub fn changes(&self, now: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        if self.mapping_md5 != now.mapping_md5 {
            out.push(format!(
                "the mapping changed ({} was {}, is now {} {})",
                self.mapping_path, self.mapping_md5, now.mapping_path, now.mapping_md5
            ));
        }
        if self.sources != now.sources {
            for i in 0..self.sources.len().max(now.sources.len()) {
                let (was, is) = (self.sources.get(i), now.sources.get(i));
                if was != is {
                    let show = |s: Option<&String>| s.cloned().unwrap_or_else(|| "nothing".into());
                    out.push(format!(
                        "the sources changed: {} is now {}",
                        show(was),
                        show(is)
                    ));
                }
            }
        }
        if self.target != now.target {
            out.push(format!(
                "the target changed: {} is now {}",
                self.target, now.target
            ));
        }
        out
    }
}

/// One entity in the state, for `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    pub name: String,
    pub source_table: String,
    /// Records expected (DynamoDB's estimate for a Scan; the manifests' counts for exports).
    pub expected: u64,
}

/// The dead-letter file as the state knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterFile {
    pub path: String,
    /// Its length when the state was saved (every line before is on disk).
    pub bytes: u64,
}

/// The state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub status: Status,
    pub fingerprint: Fingerprint,
    /// When the first attempt started.
    pub started_at: String,
    pub saved_at: String,
    /// When a watermark last moved.
    pub advanced_at: Option<String>,
    /// Runs of this migration so far, the current one included.
    pub attempts: u32,
    /// The process that saved it.
    pub pid: u32,
    pub phases: usize,
    /// The phase being read: 0 scans and full exports, N the Nth
    /// incremental round; `phases` when every phase is read.
    #[serde(default)]
    pub phase: usize,
    pub entities: Vec<EntityState>,
    pub units: Vec<UnitState>,
    /// Per entity: the counters of every record below the watermarks.
    pub counters: Vec<Counts>,
    pub dead_letter: DeadLetterFile,
    /// The exit code of the run that ended (stopped or finished).
    pub exit_code: Option<i32>,
    /// Why the run stopped, when it did.
    pub stopped_because: Option<String>,
    /// The follow of the legacy tables' streams (`follow`, `migrate
    /// --then-follow`): where each shard stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowState>,
}

/// Why a state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("state file {path} cannot be read: {message}; pass --fresh to start over (it is replaced), or --state with another path")]
    Unreadable { path: PathBuf, message: String },
    #[error("state file {path}: {message}")]
    Refused { path: PathBuf, message: String },
    #[error("state file {path}: no earlier run to resume; run without --resume")]
    NothingToResume { path: PathBuf },
    #[error("state file {path}: a previous run {how} at {percent}% (saved {saved_at}); pass --resume to continue it, or --fresh to start over")]
    Unfinished {
        path: PathBuf,
        how: &'static str,
        percent: String,
        saved_at: String,
    },
    #[error("state file {path} belongs to another migration: {changes}; resume with what it was started with, or pass --fresh to start over")]
    Changed { path: PathBuf, changes: String },
    #[error("state file {path} is in use by another singletable run (its lock {lock} is held); wait for it, or stop it")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("dead-letter file {path} is {actual} bytes, but the state says {expected} were written: it was changed since; put it back, or pass --fresh to start over")]
    DeadLetterChanged {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("state file {path} holds the positions of a follow of the legacy tables' streams; to go on following: singletable follow --state {path}; to start over: --fresh (they are lost); or --state with another path")]
    HoldsFollow { path: PathBuf },
    #[error(
        "state file {path} was saved by format {found}; this singletable reads format {VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |cause| StateError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

impl State {
    /// The phase the units stand in: the lowest with a unit not done.
    pub fn phase_of(units: &[UnitState], phases: usize) -> usize {
        let open = units.iter().filter(|u| !u.done).map(|u| u.phase);
        open.min().unwrap_or(phases)
    }

    /// Reads a state file; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<State>, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("version").and_then(|v| v.as_u64()));
        if let Some(found) = version.filter(|&v| v != VERSION as u64) {
            return Err(StateError::Version {
                path: path.to_path_buf(),
                found: found as u32,
            });
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Unreadable {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }

    /// Writes the state atomically: a temp file beside it, fsync, rename,
    /// fsync of the folder. A reader sees the old state or the new one.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| io(path)(e.into()))?;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&text).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Ok(d) = std::fs::File::open(dir.unwrap_or(Path::new("."))) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Records acknowledged per entity.
    pub fn acknowledged(&self) -> Vec<u64> {
        let mut out = vec![0u64; self.entities.len()];
        for u in &self.units {
            if let Some(n) = out.get_mut(u.entity) {
                *n += u.records;
            }
        }
        out
    }

    /// Share of the expected records acknowledged, as text ("62.4").
    pub fn percent(&self) -> String {
        if self.status == Status::Finished {
            return "100".into();
        }
        let expected: u64 = self.entities.iter().map(|e| e.expected).sum();
        let done: u64 = self.acknowledged().iter().sum();
        if expected == 0 {
            return "?".into();
        }
        format!("{:.1}", (done as f64 * 100.0 / expected as f64).min(99.9))
    }
}

/// How a run starts, given what the state file holds.
#[derive(Debug)]
pub enum Start {
    /// From the beginning (no state, a finished one replaced, or --fresh).
    Fresh,
    /// From the saved state.
    Resume(Box<State>),
    /// `--resume` of a run that finished: nothing to do.
    Finished(Box<State>),
}

/// Decides how a run starts: an unfinished state needs `--resume` or
/// `--fresh`; a resume needs the same fingerprint.
pub fn decide(
    path: &Path,
    resume: bool,
    fresh: bool,
    now: &Fingerprint,
) -> Result<Start, StateError> {
    if fresh {
        return Ok(Start::Fresh);
    }
    let state = match State::load(path)? {
        None if resume => {
            return Err(StateError::NothingToResume {
                path: path.to_path_buf(),
            })
        }
        None => return Ok(Start::Fresh),
        Some(s) => s,
    };
    if state.status == Status::Finished {
        if state.follow.is_some() && !resume {
            return Err(StateError::HoldsFollow {
                path: path.to_path_buf(),
            });
        }
        return Ok(if resume {
            Start::Finished(Box::new(state))
        } else {
            Start::Fresh
        });
    }
    if !resume {
        return Err(StateError::Unfinished {
            path: path.to_path_buf(),
            // The caller holds the lock: a state that says running was killed.
            how: match state.status {
                Status::Running => "was killed",
                _ => "stopped",
            },
            percent: state.percent(),
            saved_at: state.saved_at.clone(),
        });
    }
    let changes = state.fingerprint.changes(now);
    if !changes.is_empty() {
        return Err(StateError::Changed {
            path: path.to_path_buf(),
            changes: changes.join("; "),
        });
    }
    Ok(Start::Resume(Box::new(state)))
}

/// The lock that keeps two runs off one state file: held while the run
/// goes, released by the system when the process ends, however it ends.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    fn path(state: &Path) -> PathBuf {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Whether a run holds the lock of `state` now.
    pub fn held(state: &Path) -> bool {
        let Ok(file) = std::fs::File::open(StateLock::path(state)) else {
            return false;
        };
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }

    pub fn take(state: &Path) -> Result<StateLock, StateError> {
        let lock = StateLock::path(state);
        if let Some(dir) = lock.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(io(&lock))?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Locked {
                path: state.to_path_buf(),
                lock,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&lock)(e)),
        }
    }
}

/// A dead-letter file trimmed beside the original, not yet in its place.
#[derive(Debug)]
pub struct Trim {
    path: PathBuf,
    tmp: PathBuf,
    /// The trimmed file's length.
    pub bytes: u64,
    pub kept: u64,
    pub dropped: u64,
}

impl Trim {
    /// Puts the trimmed file in place of the original. Save the state with
    /// the trimmed length first: a kill in between then leaves a file
    /// longer than the state says, which trims again to the same lines.
    pub fn commit(self) -> Result<(), StateError> {
        if self.tmp.exists() {
            std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path))?;
        }
        Ok(())
    }
}

/// On resume: keeps the dead-letter lines of acknowledged batches and
/// drops the rest (their records are read again and will be recorded
/// again), and a last line cut short by the kill, into a file beside it.
pub fn trim_dead_letters(
    path: &Path,
    saved: &DeadLetterFile,
    units: &[UnitState],
) -> Result<Trim, StateError> {
    let tmp = path.with_extension("jsonl.tmp");
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && saved.bytes == 0 => {
            let (path, bytes, kept, dropped) = (path.to_path_buf(), 0, 0, 0);
            let _ = std::fs::remove_file(&tmp);
            return Ok(Trim {
                path,
                tmp,
                bytes,
                kept,
                dropped,
            });
        }
        Err(e) => return Err(io(path)(e)),
    };
    let actual = file.metadata().map_err(io(path))?.len();
    if actual < saved.bytes {
        return Err(StateError::DeadLetterChanged {
            path: path.to_path_buf(),
            expected: saved.bytes,
            actual,
        });
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
    let (mut kept, mut dropped, mut bytes) = (0u64, 0u64, 0u64);
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io(path))? == 0 {
            break;
        }
        if !line.ends_with('\n') || !acknowledged(&line, units) {
            dropped += 1;
            continue;
        }
        out.write_all(line.as_bytes()).map_err(io(&tmp))?;
        kept += 1;
        bytes += line.len() as u64;
    }
    let f = out.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
    f.sync_all().map_err(io(&tmp))?;
    let path = path.to_path_buf();
    Ok(Trim {
        path,
        tmp,
        bytes,
        kept,
        dropped,
    })
}

/// Whether a dead-letter line belongs to an acknowledged batch (untagged
/// lines are kept).
fn acknowledged(line: &str, units: &[UnitState]) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return false;
    };
    let (Some(unit), Some(batch)) = (
        v.get("unit").and_then(|u| u.as_u64()),
        v.get("batch").and_then(|b| b.as_u64()),
    ) else {
        return true;
    };
    units.get(unit as usize).is_some_and(|u| batch < u.batches)
}

/// `status`: where a run stands, for people. `live`: whether a run holds
/// the state's lock now (a killed run's state still says running).
pub fn render_status(path: &Path, s: &State, live: bool) -> String {
    let Some(f) = &s.follow else {
        return render_copy(path, s, live);
    };
    let mut out = match s.phases {
        0 => format!("state {}: a follow only (no bulk copy)\n", path.display()),
        _ => render_copy(path, s, live && f.started_at.is_none()),
    };
    out.push_str(&f.render(live));
    if f.started_at.is_some() && !live {
        let _ = writeln!(
            out,
            "  to continue: singletable follow --state {} (with the same mapping and target)",
            path.display()
        );
    }
    out
}

/// `status` of a bulk copy.
fn render_copy(path: &Path, s: &State, live: bool) -> String {
    let mut out = String::new();
    let how = match (s.status, live) {
        (_, true) => format!("running now (pid {})", s.pid),
        (Status::Running, false) => "killed: not finished, and no run holds it".into(),
        (Status::Stopped, false) => "stopped before the end".into(),
        (Status::Finished, false) => "finished".into(),
    };
    let _ = writeln!(out, "state {}: {how}", path.display());
    let _ = writeln!(
        out,
        "  {}% of the expected records acknowledged; attempt {}; started {}; saved {}; last advanced {}",
        s.percent(),
        s.attempts,
        s.started_at,
        s.saved_at,
        s.advanced_at.as_deref().unwrap_or("never")
    );
    if let Some(why) = &s.stopped_because {
        let _ = writeln!(out, "  stopped because: {why}");
    }
    if let Some(code) = s.exit_code {
        let _ = writeln!(out, "  exit code: {code}");
    }
    let phase = s.units.iter().filter(|u| !u.done).map(|u| u.phase).min();
    let _ = match phase {
        Some(p) => writeln!(out, "  phase {} of {} ({})", p + 1, s.phases, phase_name(p)),
        None => writeln!(out, "  every phase read ({})", s.phases),
    };
    let _ = writeln!(
        out,
        "  {:<16} {:>10} {:>10} {:>6} {:>10} {:>9} {:>9} {:>9} {:>6}",
        "entity", "acked", "expected", "units", "written", "deleted", "filtered", "dead", "unwrit"
    );
    let acked = s.acknowledged();
    for (i, e) in s.entities.iter().enumerate() {
        let units: Vec<&UnitState> = s.units.iter().filter(|u| u.entity == i).collect();
        let done = units.iter().filter(|u| u.done).count();
        let c = s.counters.get(i).cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<16} {:>10} {:>10} {:>6} {:>10} {:>9} {:>9} {:>9} {:>6}",
            e.name,
            acked.get(i).copied().unwrap_or(0),
            e.expected,
            format!("{done}/{}", units.len()),
            c.written + c.overwritten,
            c.deleted,
            c.filtered,
            c.dead_lettered,
            c.not_written
        );
    }
    let _ = writeln!(
        out,
        "  dead-letter file: {} ({} bytes on disk at the last save)",
        s.dead_letter.path, s.dead_letter.bytes
    );
    if s.status != Status::Finished && !live {
        let _ = writeln!(
            out,
            "  to continue: singletable migrate --resume --state {} (with the same mapping, sources and target)",
            path.display()
        );
    }
    out
}

fn phase_name(p: usize) -> String {
    if p == 0 {
        "scans and full exports".into()
    } else {
        format!("incremental round {p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        Fingerprint {
            mapping_path: "m.toml".into(),
            mapping_md5: "aaa".into(),
            sources: vec!["scan Users".into(), "scan Chats".into()],
            target: "T at local".into(),
        }
    }
    fn state(status: Status) -> State {
        State {
            version: VERSION,
            status,
            fingerprint: fp(),
            started_at: "t0".into(),
            saved_at: "t1".into(),
            advanced_at: None,
            attempts: 1,
            pid: 1,
            phases: 1,
            phase: 0,
            entities: vec![EntityState {
                name: "user".into(),
                source_table: "Users".into(),
                expected: 200,
            }],
            units: vec![UnitState {
                records: 124,
                batches: 3,
                ..UnitState::default()
            }],
            counters: vec![Counts::default()],
            dead_letter: DeadLetterFile {
                path: "dead.jsonl".into(),
                bytes: 0,
            },
            exit_code: None,
            stopped_because: None,
            follow: None,
        }
    }

    #[test]
    fn starting_needs_resume_or_fresh_and_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        assert!(matches!(
            decide(&path, false, false, &fp()),
            Ok(Start::Fresh)
        ));
        assert!(matches!(
            decide(&path, true, false, &fp()),
            Err(StateError::NothingToResume { .. })
        ));
        state(Status::Running).save(&path).unwrap();
        let refused = decide(&path, false, false, &fp()).unwrap_err().to_string();
        assert!(refused.contains("at 62.0%"), "{refused}");
        assert!(refused.contains("--resume") && refused.contains("--fresh"));
        assert!(matches!(
            decide(&path, true, false, &fp()),
            Ok(Start::Resume(_))
        ));
        assert!(matches!(
            decide(&path, false, true, &fp()),
            Ok(Start::Fresh)
        ));
        let mut other = fp();
        other.mapping_md5 = "bbb".into();
        other.sources[1] = "export Chats s3://x".into();
        let changed = decide(&path, true, false, &other).unwrap_err().to_string();
        assert!(changed.contains("the mapping changed"), "{changed}");
        assert!(
            changed.contains("scan Chats is now export Chats s3://x"),
            "{changed}"
        );
        let mut following = state(Status::Finished);
        following.follow = Some(FollowState::new("LATEST".into(), Vec::new(), "d".into()));
        following.save(&path).unwrap();
        let held = decide(&path, false, false, &fp()).unwrap_err().to_string();
        assert!(held.contains("positions of a follow"), "{held}");
        assert!(matches!(
            decide(&path, false, true, &fp()),
            Ok(Start::Fresh)
        ));
        state(Status::Finished).save(&path).unwrap();
        assert!(matches!(
            decide(&path, false, false, &fp()),
            Ok(Start::Fresh)
        ));
        assert!(matches!(
            decide(&path, true, false, &fp()),
            Ok(Start::Finished(_))
        ));
    }

    #[test]
    fn a_state_survives_its_round_trip_and_a_second_run_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let s = state(Status::Stopped);
        s.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), Some(s));
        let held = StateLock::take(&path).unwrap();
        assert!(StateLock::held(&path));
        assert!(matches!(
            StateLock::take(&path),
            Err(StateError::Locked { .. })
        ));
        drop(held);
        assert!(!StateLock::held(&path));
        assert!(StateLock::take(&path).is_ok());
    }

    #[test]
    fn trimming_keeps_acknowledged_lines_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let lines = [
            r#"{"unit":0,"batch":2,"reason":"kept"}"#,
            r#"{"unit":0,"batch":3,"reason":"redone"}"#,
            r#"{"reason":"untagged, kept"}"#,
            r#"{"unit":9,"batch":0,"reason":"no such unit"}"#,
        ];
        let mut text = lines.join("\n");
        text.push_str("\n{\"unit\":0,\"batch\":1,\"rea");
        std::fs::write(&path, &text).unwrap();
        let units = vec![UnitState {
            batches: 3,
            ..UnitState::default()
        }];
        let saved = DeadLetterFile {
            path: "d".into(),
            bytes: 10,
        };
        let trim = trim_dead_letters(&path, &saved, &units).unwrap();
        assert_eq!((trim.kept, trim.dropped), (2, 3));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "not yet in place"
        );
        trim.commit().unwrap();
        let left = std::fs::read_to_string(&path).unwrap();
        assert_eq!(left, format!("{}\n{}\n", lines[0], lines[2]));
        let longer = DeadLetterFile {
            path: "d".into(),
            bytes: 10_000,
        };
        assert!(matches!(
            trim_dead_letters(&path, &longer, &units),
            Err(StateError::DeadLetterChanged { .. })
        ));
    }
}
