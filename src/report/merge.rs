//! `report merge`: the run reports of a sharded run made one.
//!
//! Each shard (`--shard I/N`) writes its own report. Merged, the counters
//! add up per entity (every record was read by exactly one shard), each
//! entity is reconciled again from the sums, and the verdict is judged on
//! the whole: failed if any shard failed, items not migrated beyond the
//! shards' allowances together. The merge refuses reports of different
//! runs (mapping, target, command), two reports of one shard, and a set
//! that lacks a shard: the merged report is of the whole run or nothing.

use std::path::Path;

use super::{Allowance, RunReport, EXIT_FAILED};

/// Why reports cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("report {path}: {message}")]
    Read { path: String, message: String },
    #[error("{0}")]
    Mismatch(String),
}

/// Reads a run report written with `--report`.
pub fn read(path: &Path) -> Result<RunReport, MergeError> {
    read_json(path, "a run report")
}

/// Reads a JSON file a shard wrote (`what` names it in the error).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, MergeError> {
    let err = |message: String| MergeError::Read {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(format!("not {what}: {e}")))
}

/// The shards' reports, checked to be every shard of one run, as one.
pub fn merge(reports: &[(String, RunReport)]) -> Result<RunReport, MergeError> {
    let Some((first_name, first)) = reports.first() else {
        return Err(MergeError::Mismatch("no reports to merge".into()));
    };
    check_shards(reports)?;
    let mut merged = first.clone();
    for (name, r) in &reports[1..] {
        same_run(first_name, first, name, r)?;
        for (m, e) in merged.entities.iter_mut().zip(&r.entities) {
            m.add(e);
        }
        merged.duration_seconds = merged.duration_seconds.max(r.duration_seconds);
        merged.started_at = merged.started_at.clone().min(r.started_at.clone());
        merged.interrupted |= r.interrupted;
        merged.rate_backoffs += r.rate_backoffs;
        merged.lowest_rate = match (merged.lowest_rate, r.lowest_rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        merged.overwrite_false_alarms_expected += r.overwrite_false_alarms_expected;
        merged.allowed_dead_letters += r.allowed_dead_letters;
    }
    finish(&mut merged, reports);
    Ok(merged)
}

/// Totals, verdict and notes of the merged report.
fn finish(merged: &mut RunReport, reports: &[(String, RunReport)]) {
    for e in &mut merged.entities {
        e.reconciled &= e.reconciles();
    }
    let mut totals = merged
        .entities
        .iter()
        .fold(super::EntityReport::totals(), |mut t, e| {
            t.add(e);
            t
        });
    // The reasons are listed per entity; the totals keep none.
    totals.not_migrated_reasons.clear();
    totals.filtered_by_rule.clear();
    merged.reconciled = totals.reconciled;
    merged.totals = totals;
    merged.rate_samples.clear();
    merged.shard = None;
    merged.dead_letter_file = None;
    merged.merged_from = reports.iter().map(|(n, _)| n.clone()).collect();
    merged.warnings = reports
        .iter()
        .flat_map(|(n, r)| r.warnings.iter().map(move |w| format!("{n}: {w}")))
        .collect();
    let errors: Vec<String> = reports
        .iter()
        .filter_map(|(n, r)| r.error.as_ref().map(|e| format!("{n}: {e}")))
        .collect();
    merged.error = (!errors.is_empty()).then(|| errors.join("; "));
    let failed = reports.iter().any(|(_, r)| r.exit_code == EXIT_FAILED) || merged.error.is_some();
    merged.judge(failed, Allowance::Count(merged.allowed_dead_letters));
}

/// Every report is a shard of the same count, each index once, none missing.
fn check_shards(reports: &[(String, RunReport)]) -> Result<(), MergeError> {
    let mut set = Vec::new();
    for (name, r) in reports {
        let Some(shard) = r.shard else {
            return Err(MergeError::Mismatch(format!(
                "{name} is not a shard's report (it was not run with --shard)"
            )));
        };
        set.push((name.as_str(), shard));
    }
    crate::sources::Shard::complete(&set).map_err(MergeError::Mismatch)
}

fn same_run(a_name: &str, a: &RunReport, b_name: &str, b: &RunReport) -> Result<(), MergeError> {
    let differs = |what: &str, x: &str, y: &str| {
        MergeError::Mismatch(format!(
            "{a_name} and {b_name} are of different runs: {what} {x:?} and {y:?}"
        ))
    };
    if a.command != b.command {
        return Err(differs("command", &a.command, &b.command));
    }
    if a.mapping != b.mapping {
        return Err(differs("mapping", &a.mapping, &b.mapping));
    }
    if a.target_table != b.target_table {
        return Err(differs("target", &a.target_table, &b.target_table));
    }
    let names =
        |r: &RunReport| -> Vec<String> { r.entities.iter().map(|e| e.entity.clone()).collect() };
    if names(a) != names(b) {
        return Err(differs(
            "entities",
            &names(a).join(","),
            &names(b).join(","),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{RunMeta, RunStats, EXIT_NOT_MIGRATED, EXIT_OK};

    /// Shard `index` of `count`: `read` records, `dead` of them dead-lettered.
    fn shard(index: u32, count: u32, read: u64, dead: u64, allowed: u64) -> (String, RunReport) {
        let stats = RunStats::new(1);
        let c = stats.entity(0);
        RunStats::add(&c.produced, read);
        RunStats::add(&c.read, read);
        RunStats::add(&c.written, read - dead);
        RunStats::add(&c.dead_lettered, dead);
        let meta = RunMeta {
            command: "migrate".into(),
            mapping: "m.toml".into(),
            target_table: "T".into(),
            source: "scan".into(),
            started_at: format!("2026-11-26T00:0{index}:00Z"),
            duration: std::time::Duration::from_secs(u64::from(10 + index)),
            interrupted: false,
            error: None,
            dead_letter_file: None,
            source_warnings: Vec::new(),
        };
        let names = [("user".to_string(), "Users".to_string())];
        let mut r = RunReport::build(&stats, &names, meta);
        r.shard = Some((index, count));
        r.judge(false, Allowance::Count(allowed));
        (format!("s{index}"), r)
    }

    #[test]
    fn shards_add_up_reconcile_and_are_judged_on_the_whole() {
        let m = merge(&[shard(1, 2, 50, 1, 1), shard(0, 2, 30, 0, 0)]).unwrap();
        assert_eq!(
            (m.totals.read, m.totals.written, m.totals.dead_lettered),
            (80, 79, 1)
        );
        assert!(m.reconciled && m.entities[0].reconciled);
        assert_eq!(m.allowed_dead_letters, 1);
        assert_eq!(m.exit_code, EXIT_OK);
        assert_eq!(m.duration_seconds, 11.0, "the longest shard");
        assert_eq!(m.started_at, "2026-11-26T00:00:00Z", "the first start");
        assert_eq!(m.merged_from, ["s1", "s0"]);
        // Dead letters beyond the shards' allowances together: exit 3.
        let m = merge(&[shard(0, 2, 30, 2, 1), shard(1, 2, 50, 0, 0)]).unwrap();
        assert_eq!(m.exit_code, EXIT_NOT_MIGRATED);
        // A failed shard fails the whole.
        let mut failed = shard(1, 2, 50, 0, 0);
        failed.1.exit_code = EXIT_FAILED;
        failed.1.error = Some("stalled".into());
        let m = merge(&[shard(0, 2, 30, 0, 0), failed]).unwrap();
        assert_eq!(m.exit_code, EXIT_FAILED);
        assert_eq!(m.error.as_deref(), Some("s1: stalled"));
    }

    #[test]
    fn only_every_shard_of_one_run_merges() {
        let missing = merge(&[shard(0, 3, 1, 0, 0), shard(2, 3, 1, 0, 0)]).unwrap_err();
        assert!(
            missing.to_string().contains("shard(s) 1 of 3 missing"),
            "{missing}"
        );
        let twice = merge(&[shard(0, 2, 1, 0, 0), shard(0, 2, 1, 0, 0)]).unwrap_err();
        assert!(twice.to_string().contains("both shard 0 of 2"), "{twice}");
        let counts = merge(&[shard(0, 2, 1, 0, 0), shard(1, 3, 1, 0, 0)]).unwrap_err();
        assert!(counts.to_string().contains("is shard 1 of 3"), "{counts}");
        let mut other = shard(1, 2, 1, 0, 0);
        other.1.mapping = "other.toml".into();
        let runs = merge(&[shard(0, 2, 1, 0, 0), other]).unwrap_err();
        assert!(
            runs.to_string().contains("different runs: mapping"),
            "{runs}"
        );
        let mut unsharded = shard(0, 1, 1, 0, 0);
        unsharded.1.shard = None;
        assert!(merge(&[unsharded]).is_err());
    }
}
