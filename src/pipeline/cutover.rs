//! `cutover-check`: may the application switch to the target now?
//!
//! This module owns the go/no-go. It reads the follow's part of the state
//! file (is a follow running, how far behind was each table at its last
//! save), asks each stream how many changes it holds beyond the positions
//! saved there (read now, not assumed), and runs a sampled verify of the
//! legacy tables against the target. GO needs all three: nothing behind,
//! every table caught up at the last save, the sample matched. The report
//! says which figure failed, and that a sample is a sample.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::follow::START_SLACK;
use super::PipelineError;
use crate::checkpoint::{FollowState, State, StateError, StateLock, TableLag};
use crate::mapping::Mapping;
use crate::report::{EXIT_DIFFERS, EXIT_NOT_MIGRATED, EXIT_OK};
use crate::sources::export::Store;
use crate::sources::streams::{self, Position, StreamsClient};
use crate::verify::{self, VerifyOptions};

/// Changes counted beyond a shard's position at most (the count says "at least").
const BEHIND_CAP: u64 = 10_000;

/// What the check needs.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    pub state: PathBuf,
    pub max_lag: Duration,
    pub verify: VerifyOptions,
}

/// One table's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CutoverTable {
    pub table: String,
    /// Changes the stream holds beyond the saved positions, read now
    /// (at most the cap: "at least" when it is reached).
    pub behind_now: u64,
    pub behind_capped: bool,
    /// The follow's own figures at its last save.
    pub at_last_save: TableLag,
}

/// The go/no-go, with its figures.
#[derive(Debug, Clone, Serialize)]
pub struct CutoverReport {
    pub state: String,
    /// A follow holds the state's lock now.
    pub follow_running: bool,
    pub saved_at: Option<String>,
    pub max_lag_seconds: f64,
    pub tables: Vec<CutoverTable>,
    /// The sampled verify's verdict ("sample-match" or "differs") and size.
    pub verify_verdict: String,
    pub verify_records_compared: u64,
    pub verify_mismatches: u64,
    pub go: bool,
    /// Why not, when not.
    pub reasons: Vec<String>,
    /// 0 GO, 1 the sample differs, 3 changes not applied yet.
    pub exit_code: i32,
}

/// Runs the check.
pub async fn check(
    client: &aws_sdk_dynamodb::Client,
    streams_client: &StreamsClient,
    mapping: &Mapping,
    opts: &CutoverOptions,
) -> Result<CutoverReport, PipelineError> {
    let path = &opts.state;
    let state =
        State::load(path)?.ok_or_else(|| StateError::NothingToResume { path: path.clone() })?;
    let follow = started_follow(path, &state)?;
    let running = StateLock::held(path);
    let mut tables = Vec::new();
    for s in &follow.streams {
        let behind = behind(streams_client, s, follow).await?;
        let lag = follow.lag.iter().find(|l| l.table == s.table).cloned();
        tables.push(CutoverTable {
            table: s.table.clone(),
            behind_now: behind,
            behind_capped: behind >= BEHIND_CAP,
            at_last_save: lag.unwrap_or_else(|| TableLag {
                table: s.table.clone(),
                ..TableLag::default()
            }),
        });
    }
    let store = Store::new(None);
    let v = verify::verify(client, &store, mapping, &opts.verify).await?;
    let compared = v.entities.iter().map(|e| e.sampled).sum();
    let mut report = CutoverReport {
        state: path.display().to_string(),
        follow_running: running,
        saved_at: follow.saved_at.clone(),
        max_lag_seconds: opts.max_lag.as_secs_f64(),
        tables,
        verify_verdict: v.verdict.clone(),
        verify_records_compared: compared,
        verify_mismatches: v.mismatches.len() as u64 + v.mismatches_not_listed,
        go: false,
        reasons: Vec::new(),
        exit_code: EXIT_OK,
    };
    judge(&mut report, follow, v.matches());
    Ok(report)
}

/// The follow part of a state, if a follow has run on it.
fn started_follow<'a>(path: &Path, state: &'a State) -> Result<&'a FollowState, PipelineError> {
    match &state.follow {
        Some(f) if f.started_at.is_some() => Ok(f),
        _ => Err(StateError::Refused {
            path: path.to_path_buf(),
            message: "no follow has run on it: run singletable follow --until-caught-up (or migrate --then-follow) first".into(),
        }
        .into()),
    }
}

/// Changes the stream holds beyond the follow's saved positions.
async fn behind(
    streams_client: &StreamsClient,
    s: &crate::checkpoint::StreamRef,
    follow: &FollowState,
) -> Result<u64, PipelineError> {
    let skip = s
        .skip_before
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis() - START_SLACK.as_millis() as i64);
    let listed = streams::shards(streams_client, s, Duration::from_secs(60)).await?;
    let mut total = 0;
    for shard in listed {
        let unit = follow
            .shards
            .iter()
            .find(|u| u.entity == s.entity && u.name == shard.id);
        if unit.is_some_and(|u| u.done) {
            continue;
        }
        let from = unit
            .and_then(|u| u.sequence.clone())
            .map_or(Position::TrimHorizon, Position::After);
        let left = BEHIND_CAP.saturating_sub(total);
        total += streams::count_after(streams_client, (s, &shard.id), &from, skip, left).await?;
        if total >= BEHIND_CAP {
            break;
        }
    }
    Ok(total)
}

/// GO, or NO-GO and why.
fn judge(r: &mut CutoverReport, follow: &FollowState, sample_matches: bool) {
    for t in &r.tables {
        if t.behind_now > 0 {
            let more = if t.behind_capped { "at least " } else { "" };
            r.reasons.push(format!(
                "{}: the stream holds {more}{} change(s) beyond the follow's last saved position",
                t.table, t.behind_now
            ));
        }
        if r.follow_running && !t.at_last_save.caught_up {
            r.reasons.push(format!(
                "{}: not caught up at the follow's last save",
                t.table
            ));
        }
    }
    if follow.max_lag_seconds > r.max_lag_seconds && r.follow_running {
        r.reasons.push(format!(
            "the follow allows a lag of {} s, more than --max-lag {} s",
            follow.max_lag_seconds, r.max_lag_seconds
        ));
    }
    if !sample_matches {
        r.reasons.push(format!(
            "the sampled verify found {} difference(s)",
            r.verify_mismatches
        ));
    }
    r.go = r.reasons.is_empty();
    r.exit_code = match (r.go, sample_matches) {
        (true, _) => EXIT_OK,
        (false, false) => EXIT_DIFFERS,
        (false, true) => EXIT_NOT_MIGRATED,
    };
}

impl CutoverReport {
    /// The terminal summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let how = match self.follow_running {
            true => "running",
            false => "not running",
        };
        let _ = writeln!(
            out,
            "follow ({how}), last saved {}:",
            self.saved_at.as_deref().unwrap_or("never")
        );
        for t in &self.tables {
            let more = if t.behind_capped { "at least " } else { "" };
            let lag = crate::checkpoint::follow::lag_lines(
                std::slice::from_ref(&t.at_last_save),
                self.max_lag_seconds,
            );
            let _ = writeln!(
                out,
                "  {}; in the stream beyond it now: {more}{}",
                lag.join(""),
                t.behind_now
            );
        }
        let _ = writeln!(
            out,
            "sampled verify: {} ({} record(s) compared; records outside the sample were not compared)",
            self.verify_verdict, self.verify_records_compared
        );
        match self.go {
            true => out.push_str("GO: nothing is behind and the sample matched; stop the application's writes to the legacy tables, run this check once more, then switch\n"),
            false => {
                out.push_str("NO-GO:\n");
                for r in &self.reasons {
                    let _ = writeln!(out, "  {r}");
                }
            }
        }
        out
    }
}
