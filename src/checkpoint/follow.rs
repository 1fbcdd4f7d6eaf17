//! The follow's part of the state file: which streams it reads, where each
//! shard stands, what it has applied, and how far behind it was.
//!
//! A follow keeps one [`UnitState`] per shard (its last acknowledged
//! sequence number, its parent, when its last applied record was made),
//! its own counters and dead-letter file, and the lag of each table as of
//! the last save, which `status` and `cutover-check` read. `migrate
//! --then-follow` writes this part before the bulk copy starts (the streams
//! and the time to follow from, no shards yet), so a resumed copy still
//! follows from where the first attempt began.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{Counts, DeadLetterFile, Status, UnitState};

/// The stream of one legacy table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRef {
    /// Index of the entity (mapping order) whose table this is.
    pub entity: usize,
    pub table: String,
    pub arn: String,
    /// KEYS_ONLY, NEW_IMAGE, OLD_IMAGE or NEW_AND_OLD_IMAGES.
    pub view: String,
    /// Records made before this time (RFC 3339) are skipped: the bulk copy
    /// holds them. None: every record the stream keeps is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_before: Option<String>,
}

/// How far one table's follow was behind, at a save.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableLag {
    pub table: String,
    /// Shards known, and those read to their tip within the lag allowed
    /// (or closed and drained).
    pub shards: usize,
    pub shards_at_tip: usize,
    /// Records read from the stream and not yet applied.
    pub behind: u64,
    /// When the last applied record was made at the source (RFC 3339).
    pub last_applied_made_at: Option<String>,
    /// Its age then, in seconds.
    pub last_applied_age_seconds: Option<f64>,
    /// Every change made more than the allowed lag ago is applied.
    pub caught_up: bool,
}

/// The follow, as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowState {
    /// Where it was asked to start: TRIM_HORIZON, LATEST, a time, or the
    /// start of the bulk copy (`--then-follow`).
    pub from: String,
    pub streams: Vec<StreamRef>,
    pub status: Status,
    /// When the first follow of this state started (none before it has).
    pub started_at: Option<String>,
    pub saved_at: Option<String>,
    /// Follows of this state so far, the current one included.
    pub attempts: u32,
    /// One per shard, in the order they were found.
    pub shards: Vec<UnitState>,
    /// Per entity: the counters of every record below the shards' positions.
    pub counters: Vec<Counts>,
    pub dead_letter: DeadLetterFile,
    /// The lag allowed (`--max-lag`), in seconds, when `lag` was measured.
    pub max_lag_seconds: f64,
    /// Per table, as of `saved_at`.
    pub lag: Vec<TableLag>,
    pub exit_code: Option<i32>,
    pub stopped_because: Option<String>,
}

impl FollowState {
    /// A follow not started yet: the streams and where to start.
    pub fn new(from: String, streams: Vec<StreamRef>, dead_letter: String) -> FollowState {
        let entities = streams.iter().map(|s| s.entity + 1).max().unwrap_or(0);
        FollowState {
            from,
            streams,
            status: Status::Stopped,
            started_at: None,
            saved_at: None,
            attempts: 0,
            shards: Vec::new(),
            counters: vec![Counts::default(); entities],
            dead_letter: DeadLetterFile {
                path: dead_letter,
                bytes: 0,
            },
            max_lag_seconds: 0.0,
            lag: Vec::new(),
            exit_code: None,
            stopped_because: None,
        }
    }

    /// Every table caught up at the last save.
    pub fn caught_up(&self) -> bool {
        !self.lag.is_empty() && self.lag.iter().all(|l| l.caught_up)
    }

    /// The follow's lines of `status`.
    pub fn render(&self, live: bool) -> String {
        let mut out = String::new();
        let how = match (self.status, live, self.started_at.is_some()) {
            (_, _, false) => "recorded, not started (it starts once the bulk copy finishes)",
            (_, true, _) => "following now",
            (Status::Running, false, _) => {
                "killed: the state says following, but no follow holds it"
            }
            (Status::Finished, false, _) => "stopped, caught up (--until-caught-up)",
            (Status::Stopped, false, _) => "stopped",
        };
        let _ = writeln!(out, "follow of the streams: {how}");
        let _ = writeln!(
            out,
            "  from {}; attempt {}; saved {}",
            self.from,
            self.attempts,
            self.saved_at.as_deref().unwrap_or("never")
        );
        if let Some(why) = &self.stopped_because {
            let _ = writeln!(out, "  stopped because: {why}");
        }
        for line in lag_lines(&self.lag, self.max_lag_seconds) {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

/// One line per table: applied, age of the last applied record, behind.
pub fn lag_lines(lag: &[TableLag], max_lag_seconds: f64) -> Vec<String> {
    lag.iter()
        .map(|l| {
            let age = l
                .last_applied_age_seconds
                .map_or("none applied yet".to_string(), |a| {
                    format!("last applied record {a:.1} s old")
                });
            let verdict = match l.caught_up {
                true => format!("caught up (within {max_lag_seconds} s)"),
                false => "not caught up".to_string(),
            };
            format!(
                "{:<28} {age}, {} behind, {}/{} shard(s) at the tip: {verdict}",
                l.table, l.behind, l.shards_at_tip, l.shards
            )
        })
        .collect()
}
