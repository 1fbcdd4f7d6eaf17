//! `verify --full --repair`: the target brought to what the mapping makes
//! of the source, after the source moved under a migration.
//!
//! The full verification names every differing key, a round of buckets at
//! a time (never holding more than its collect limit); each round's
//! actions come here. A put of the expected item (missing, changed) or a
//! delete of a key no source record makes (extra; an orphan of no entity
//! with `--repair-orphans`) goes through migrate's own transform, rate-
//! limited adaptive sink and dead-letter file, as `SourceRecord::Target`
//! records (replay's path). Every key is logged, with what was done, in a
//! JSON-lines file as it goes. `--dry-run` logs and writes nothing. After a
//! repair, a second full verification says whether the target now matches
//! (if not, the source moved again, or a write failed).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::replay::feed;
use super::{finish_report, Ended, MigrateOptions, PipelineError, StageSpec, Stages};
use crate::item::item_to_json;
use crate::mapping::Mapping;
use crate::report::{RunReport, RunStats, EXIT_DIFFERS, EXIT_OK};
use crate::sources::export::Store;
use crate::sources::SourceRecord;
use crate::verify::repair::{Action, Repairs, Why};
use crate::verify::{self, VerifyOptions, VerifyReport};

/// How a repair runs.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// List what would be done; write nothing.
    pub dry_run: bool,
    /// Also delete target items of no entity of the mapping.
    pub orphans: bool,
    /// Every repaired key, one JSON line each.
    pub log: PathBuf,
}

/// What a repair found, did, and what the target looks like after.
#[derive(Debug, Serialize)]
pub struct RepairReport {
    pub dry_run: bool,
    pub repair_orphans: bool,
    /// The full verification that named the differences.
    pub found: VerifyReport,
    /// Keys put or deleted (in a dry run: that would be), by reason.
    pub puts_missing: u64,
    pub puts_changed: u64,
    pub deletes_extra: u64,
    pub deletes_orphan: u64,
    /// Rounds of keys named and repaired (each within the collect limit).
    pub rounds: u64,
    /// Every key, with what was done: JSON lines.
    pub repairs_file: String,
    /// The writes, reconciled as migrate's (none in a dry run).
    pub writes: Option<RunReport>,
    /// The full verification after the repair.
    pub after: Option<VerifyReport>,
    pub verdict: String,
    pub exit_code: i32,
}

/// One line of the repairs file.
#[derive(Serialize)]
struct Line<'a> {
    entity: &'a str,
    key: serde_json::Value,
    action: &'static str,
    why: &'static str,
    dry_run: bool,
}

/// Carries out the rounds: logs each key, sends the writes to the stages.
struct Applier<'a> {
    client: &'a aws_sdk_dynamodb::Client,
    /// The mapping, with an `(orphans)` entity last when orphans go.
    mapping: Mapping,
    opts: &'a MigrateOptions,
    repair: &'a RepairOptions,
    key_names: Vec<String>,
    log: std::io::BufWriter<std::fs::File>,
    stats: Arc<RunStats>,
    stages: Option<Stages>,
    counts: [u64; 4],
    rounds: u64,
}

impl Repairs for Applier<'_> {
    fn orphans(&self) -> bool {
        self.repair.orphans
    }

    fn dry_run(&self) -> bool {
        self.repair.dry_run
    }

    async fn apply(&mut self, actions: Vec<Action>) -> Result<(), PipelineError> {
        self.rounds += u64::from(!actions.is_empty());
        let mut records = Vec::with_capacity(actions.len());
        for a in actions {
            self.log(&a)?;
            let entity = a.entity.unwrap_or(self.mapping.entities.len() - 1);
            let delete = !a.why.puts();
            records.push((
                entity,
                SourceRecord::Target {
                    delete,
                    item: a.item,
                },
            ));
        }
        if self.repair.dry_run || records.is_empty() {
            return Ok(());
        }
        let stages = match self.stages.take() {
            Some(s) => s,
            None => self.start().await?,
        };
        let fed = feed(records, &stages, &self.stats).await;
        let stopped = *stages.shutdown_rx.borrow();
        self.stages = Some(stages);
        fed?;
        if stopped {
            return Err(PipelineError::Interrupted);
        }
        Ok(())
    }
}

impl Applier<'_> {
    fn log(&mut self, a: &Action) -> Result<(), PipelineError> {
        let i = match a.why {
            Why::Missing => 0,
            Why::Changed => 1,
            Why::Extra => 2,
            Why::Orphan => 3,
        };
        self.counts[i] += 1;
        let names: Vec<&str> = self.key_names.iter().map(String::as_str).collect();
        let entity = a
            .entity
            .and_then(|e| self.mapping.entities.get(e))
            .map_or("(no entity: an orphan)", |e| e.name.as_str());
        let line = Line {
            entity,
            key: item_to_json(&crate::item::project(&a.item, &names)),
            action: if a.why.puts() { "put" } else { "delete" },
            why: a.why.as_str(),
            dry_run: self.repair.dry_run,
        };
        let text = serde_json::to_string(&line).unwrap_or_default();
        writeln!(self.log, "{text}").map_err(|e| self.log_error(e))
    }

    fn log_error(&self, e: std::io::Error) -> PipelineError {
        PipelineError::Task(format!(
            "writing the repairs file {}: {e}",
            self.repair.log.display()
        ))
    }

    /// The stages, started at the first write: the target is checked and
    /// the dead-letter file opened then.
    async fn start(&self) -> Result<Stages, PipelineError> {
        let tables: Vec<(String, u64, usize)> = self
            .mapping
            .entities
            .iter()
            .map(|e| (e.name.clone(), 0, 0))
            .collect();
        let spec = StageSpec {
            append: false,
            full_phase: false,
            expected: 0,
            progress: super::progress(&tables, self.opts, &self.stats),
        };
        Stages::start(self.client, &self.mapping, self.opts, &self.stats, spec).await
    }
}

/// The mapping the stages write with: with `(orphans)` last when orphans
/// are deleted, so their deletes are counted (and dead-lettered) apart.
fn with_orphans(mapping: &Mapping, orphans: bool) -> Mapping {
    let mut m = mapping.clone();
    if let (true, Some(first)) = (orphans, mapping.entities.first()) {
        let mut e = first.clone();
        e.name = "(orphans)".into();
        e.source_table = format!("(target {}: no entity)", mapping.table.name);
        m.entities.push(e);
    }
    m
}

/// Verifies in full, repairs what differs, verifies again.
pub async fn repair(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    (vopts, wopts): (&VerifyOptions, &MigrateOptions),
    repair: &RepairOptions,
) -> Result<(RepairReport, Option<PipelineError>), PipelineError> {
    let clock = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let file = std::fs::File::create(&repair.log).map_err(|e| {
        PipelineError::Task(format!(
            "creating the repairs file {}: {e}",
            repair.log.display()
        ))
    })?;
    let writing = with_orphans(mapping, repair.orphans);
    let mut applier = Applier {
        client,
        stats: Arc::new(RunStats::new(writing.entities.len())),
        mapping: writing,
        opts: wopts,
        repair,
        key_names: mapping
            .table
            .primary_key()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        log: std::io::BufWriter::new(file),
        stages: None,
        counts: [0; 4],
        rounds: 0,
    };
    let found = verify::verify_with(client, store, mapping, vopts, Some(&mut applier)).await;
    applier.log.flush().map_err(|e| applier.log_error(e))?;
    let (writes, mut failure) = match applier.stages.take() {
        None => (None, None),
        Some(stages) => {
            // A verification that failed is returned below, as it is; the
            // join gives the stages' own failure, which explains it first.
            let (failure, interrupted) = stages.join(None).await;
            let ended = Ended {
                import: None,
                command: "repair",
                source: "verify --full".into(),
                started_at,
                clock,
                interrupted,
                warnings: Vec::new(),
            };
            let (r, f) = finish_report(&applier.stats, &applier.mapping, wopts, ended, failure);
            (Some(r), f)
        }
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => return Err(failure.take().unwrap_or(e)),
    };
    let acted = applier.counts.iter().sum::<u64>() > 0;
    let after = match (repair.dry_run, acted, &failure) {
        (false, true, None) => Some(verify::verify(client, store, mapping, vopts).await?),
        _ => None,
    };
    let mut report = RepairReport {
        dry_run: repair.dry_run,
        repair_orphans: repair.orphans,
        found,
        puts_missing: applier.counts[0],
        puts_changed: applier.counts[1],
        deletes_extra: applier.counts[2],
        deletes_orphan: applier.counts[3],
        rounds: applier.rounds,
        repairs_file: repair.log.display().to_string(),
        writes,
        after,
        verdict: String::new(),
        exit_code: EXIT_OK,
    };
    report.judge();
    Ok((report, failure))
}

impl RepairReport {
    fn judge(&mut self) {
        let found_differs = !self.found.matches();
        let (verdict, code) = if !found_differs {
            ("nothing to repair: the target matches".to_string(), EXIT_OK)
        } else if self.dry_run {
            (
                format!(
                    "dry run: {} key(s) would be repaired; nothing was written",
                    self.keys()
                ),
                EXIT_DIFFERS,
            )
        } else if let Some(w) = self.writes.as_ref().filter(|w| w.exit_code != EXIT_OK) {
            (
                format!(
                    "{} key(s) repaired, but not every write landed (see the dead letters)",
                    self.keys()
                ),
                w.exit_code,
            )
        } else if let Some(after) = &self.after {
            match after.matches() {
                true => (
                    format!("repaired {} key(s); verify --full now matches", self.keys()),
                    EXIT_OK,
                ),
                false => (
                    format!(
                        "repaired {} key(s), but verify --full still differs: the source moved again (or a difference no repair makes: a collision, an orphan without --repair-orphans); see the report's `after`",
                        self.keys()
                    ),
                    EXIT_DIFFERS,
                ),
            }
        } else {
            (
                "the target differs in ways no repair makes (collisions, or orphans without --repair-orphans)".to_string(),
                EXIT_DIFFERS,
            )
        };
        self.verdict = verdict;
        self.exit_code = code;
    }

    fn keys(&self) -> u64 {
        self.puts_missing + self.puts_changed + self.deletes_extra + self.deletes_orphan
    }

    /// The report for people.
    pub fn render(&self, width: usize) -> String {
        let mut out = self.found.render(width);
        let (head, put, delete) = match self.dry_run {
            true => (
                "REPAIR (dry run, nothing written)",
                "would put",
                "would delete",
            ),
            false => ("REPAIR", "put", "deleted"),
        };
        out.push_str(&format!(
            "\n{head}: {put} {} missing and {} changed item(s); {delete} {} extra and {} orphan item(s), in {} round(s); every key in {}\n",
            self.puts_missing, self.puts_changed, self.deletes_extra, self.deletes_orphan, self.rounds, self.repairs_file
        ));
        if let Some(w) = &self.writes {
            out.push_str(&w.render());
        }
        if let Some(after) = &self.after {
            out.push_str("\nAFTER THE REPAIR:\n");
            out.push_str(&after.render(width));
        }
        out.push_str(&format!("repair: {}\n", self.verdict));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_are_written_as_an_entity_of_their_own() {
        let m = Mapping::shipped();
        let w = with_orphans(&m, true);
        assert_eq!(w.entities.len(), m.entities.len() + 1);
        assert_eq!(w.entities.last().unwrap().name, "(orphans)");
        assert_eq!(with_orphans(&m, false).entities.len(), m.entities.len());
    }
}
