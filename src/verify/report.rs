//! The verification report: JSON for machines, Markdown and a terminal
//! table for the people who decide whether to cut over.
//!
//! It records the run's parameters, one line per entity (source items,
//! records the mapping makes, target items, sampled, matched, missing,
//! extra, changed), the digests of a full verification, orphans, the first
//! mismatches with their attribute diffs, and the verdict.

use std::collections::BTreeMap;

use serde::Serialize;

/// One entity's line.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EntityCheck {
    pub entity: String,
    pub entity_type: String,
    pub source_table: String,
    /// Source items read (in their final state, after incremental exports).
    pub source_items: u64,
    /// Source items the mapping writes (neither filtered nor dead-lettered).
    pub expected_in_target: u64,
    pub filtered: u64,
    pub dead_letter: u64,
    /// Target items recognised as this entity.
    pub target_items: u64,
    /// Items compared in full (the sample; in full mode, every item).
    pub sampled: u64,
    pub matched: u64,
    /// Expected but not in the target.
    pub missing: u64,
    /// In the target, of this entity, but no source item makes them (full mode).
    pub extra: u64,
    pub changed: u64,
    /// Full mode: records in differing buckets beyond what could be listed
    /// (more differences than `--collect-limit`); they differ, unnamed.
    pub unresolved: u64,
    /// Full mode: target keys that more than one source record makes.
    pub collisions: u64,
    /// The source records those keys hold.
    pub collided_records: u64,
    /// Full mode: the digests of both sides.
    pub source_digest: Option<Digest>,
    pub target_digest: Option<Digest>,
    pub ok: bool,
}

/// An order-independent digest of a set of items.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct Digest {
    pub count: u64,
    /// The sum, modulo 2^128, of the items' 128-bit hashes, in hex.
    #[serde(serialize_with = "hex128")]
    pub sum: u128,
}

fn hex128<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:032x}"))
}

impl Digest {
    pub fn add(&mut self, hash: u128) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(hash);
    }

    pub fn merge(&mut self, other: &Digest) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

/// One attribute that differs.
#[derive(Debug, Clone, Serialize)]
pub struct AttributeDiff {
    pub attribute: String,
    pub expected: Option<serde_json::Value>,
    pub actual: Option<serde_json::Value>,
}

/// One item that is missing, extra or different in the target.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub entity: String,
    pub key: String,
    pub source_key: String,
    /// `missing`, `extra`, `changed` or `collision` (two or more source
    /// records make this key; `source_key` lists them all).
    pub kind: String,
    pub differences: Vec<AttributeDiff>,
}

/// The run's parameters, as given.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    pub mode: String,
    pub sample_per_entity: Option<usize>,
    pub sample_rate: Option<f64>,
    pub seed: u64,
    pub source: String,
    pub segments: Option<u32>,
    pub read_rate: Option<u32>,
}

/// The verification report.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub mapping: String,
    pub target_table: String,
    pub parameters: Parameters,
    pub started_at: String,
    pub duration_seconds: f64,
    pub entities: Vec<EntityCheck>,
    /// Target items no entity of the mapping makes (orphans), by entity type.
    pub unmapped_entity_types: BTreeMap<String, u64>,
    pub mismatches: Vec<Mismatch>,
    pub mismatches_not_listed: u64,
    /// Warnings from the sources (accepted export mismatches, exports
    /// without manifests).
    pub warnings: Vec<String>,
    /// `match` (full mode: every record compared, nothing differs or is
    /// unresolved), `sample-match` (a sample matched: what it rules out is
    /// in `verdict_lines`) or `differs`.
    pub verdict: String,
    /// The verdict in words, one line per entity: what was compared.
    pub verdict_lines: Vec<String>,
}

/// The share of records that could differ, at 95% confidence, when `n`
/// records drawn at random all matched: 1 - 0.05^(1/n) (about 3/n).
pub fn upper_bound_95(n: u64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    1.0 - 0.05f64.powf(1.0 / n as f64)
}

/// What a clean comparison of `e` says, in words.
pub fn verdict_line(e: &EntityCheck, full: bool) -> String {
    let n = e.expected_in_target;
    if !e.ok {
        let mut unresolved = if e.unresolved > 0 {
            format!(", {} unresolved", e.unresolved)
        } else {
            String::new()
        };
        if e.collisions > 0 {
            unresolved.push_str(&format!(
                ", {} target keys made by {} source records (collisions)",
                e.collisions, e.collided_records
            ));
        }
        return format!(
            "{}: DIFFERS: {} missing, {} extra, {} changed{unresolved}, {} in the target against {n} expected",
            e.entity, e.missing, e.extra, e.changed, e.target_items
        );
    }
    if full {
        return format!(
            "{}: match: all {n} records compared by digest, 0 differences",
            e.entity
        );
    }
    let rules_out = if e.sampled >= n {
        "every record was in the sample".to_string()
    } else {
        // Rounded up: it is an upper bound.
        let percent = (10_000.0 * upper_bound_95(e.sampled)).ceil() / 100.0;
        format!("at 95% confidence, fewer than {percent:.2}% of records differ")
    };
    format!(
        "{}: sample matched: {} of {n} records compared, 0 differences ({rules_out}); counts equal",
        e.entity, e.sampled
    )
}

/// A value for the terminal, cut at `width` characters.
fn show(v: &Option<serde_json::Value>, width: usize) -> String {
    v.as_ref()
        .map(|v| crate::report::clipped(v, width))
        .unwrap_or_else(|| "(absent)".into())
}

/// Values in the Markdown report are cut here (the JSON keeps them whole).
const MARKDOWN_WIDTH: usize = 1000;

/// Mismatches shown on the terminal; the JSON report holds every one listed.
const SHOWN: usize = 20;

impl VerifyReport {
    /// True for `match` and `sample-match` (exit 0).
    pub fn matches(&self) -> bool {
        self.verdict != "differs"
    }

    fn headline(&self) -> &'static str {
        match self.verdict.as_str() {
            "match" => "MATCH: every record compared in full, none differs, none unresolved",
            "sample-match" => "SAMPLE MATCHED: the counts agree and the sampled records match; records outside the sample were not compared",
            _ => "DIFFERS",
        }
    }

    /// The terminal summary, values cut at `width` characters.
    pub fn render(&self, width: usize) -> String {
        let mut out = format!(
            "{:<14} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            "entity",
            "source",
            "expected",
            "target",
            "dead/filt",
            "compared",
            "matched",
            "missing",
            "extra",
            "changed"
        );
        for e in &self.entities {
            out.push_str(&format!(
                "{:<14} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}{}\n",
                e.entity,
                e.source_items,
                e.expected_in_target,
                e.target_items,
                e.dead_letter + e.filtered,
                e.sampled,
                e.matched,
                e.missing,
                e.extra,
                e.changed,
                if e.ok { "" } else { "  <- differs" }
            ));
        }
        for (t, n) in &self.unmapped_entity_types {
            out.push_str(&format!("orphans: {n} target item(s) of entity type {t:?}, which no entity of the mapping makes\n"));
        }
        for m in self.mismatches.iter().take(SHOWN) {
            out.push_str(&format!(
                "{} {} ({}; source {})\n",
                m.kind, m.key, m.entity, m.source_key
            ));
            for d in &m.differences {
                out.push_str(&format!(
                    "    {}: expected {}, found {}\n",
                    d.attribute,
                    show(&d.expected, width),
                    show(&d.actual, width)
                ));
            }
        }
        if self.mismatches.len() > SHOWN {
            out.push_str(&format!(
                "... and {} more listed in the JSON report (--report)\n",
                self.mismatches.len() - SHOWN
            ));
        }
        if self.mismatches_not_listed > 0 {
            out.push_str(&format!(
                "... and {} more not listed anywhere (raise --max-listed to list them)\n",
                self.mismatches_not_listed
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for line in &self.verdict_lines {
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str(&format!("verdict: {}\n", self.headline()));
        out
    }

    /// The Markdown report, for whoever signs off the cut-over.
    pub fn render_markdown(&self) -> String {
        let p = &self.parameters;
        let mut md = format!("# Verification of `{}`\n\n", self.target_table);
        md.push_str(&format!("**Verdict: {}**\n\n", self.headline()));
        for line in &self.verdict_lines {
            md.push_str(&format!("- {line}\n"));
        }
        md.push('\n');
        md.push_str("## Parameters\n\n| | |\n|---|---|\n");
        md.push_str(&format!(
            "| mapping | `{}` |\n| target table | `{}` |\n| mode | {} |\n",
            self.mapping, self.target_table, p.mode
        ));
        if let Some(n) = p.sample_per_entity {
            md.push_str(&format!("| sample | {n} per entity |\n"));
        }
        if let Some(r) = p.sample_rate {
            md.push_str(&format!("| sample rate | {r} |\n"));
        }
        md.push_str(&format!(
            "| seed | {} |\n| source | {} |\n",
            p.seed, p.source
        ));
        md.push_str(&format!(
            "| segments | {} |\n| read rate | {} |\n| started | {} |\n| duration | {:.1} s |\n\n",
            p.segments
                .map(|s| s.to_string())
                .unwrap_or_else(|| "default".into()),
            p.read_rate
                .map(|r| format!("{r} RCU/s per table"))
                .unwrap_or_else(|| "unlimited".into()),
            self.started_at,
            self.duration_seconds
        ));
        md.push_str("## Entities\n\n| entity | source items | expected in target | target items | dead-lettered / filtered | compared | matched | missing | extra | changed | |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for e in &self.entities {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                e.entity,
                e.source_items,
                e.expected_in_target,
                e.target_items,
                e.dead_letter + e.filtered,
                e.sampled,
                e.matched,
                e.missing,
                e.extra,
                e.changed,
                if e.ok { "ok" } else { "**differs**" }
            ));
        }
        if self.entities.iter().any(|e| e.source_digest.is_some()) {
            md.push_str("\n## Digests\n\nCount and the sum (mod 2^128) of the items' 128-bit hashes of their canonical form: equal digests mean equal contents.\n\n| entity | source | target |\n|---|---|---|\n");
            for e in &self.entities {
                let d = |d: &Option<Digest>| {
                    d.map(|d| format!("{} items, `{:032x}`", d.count, d.sum))
                        .unwrap_or_default()
                };
                md.push_str(&format!(
                    "| {} | {} | {} |\n",
                    e.entity,
                    d(&e.source_digest),
                    d(&e.target_digest)
                ));
            }
        }
        if !self.unmapped_entity_types.is_empty() {
            md.push_str("\n## Orphans\n\nTarget items of an entity type no entity of the mapping makes:\n\n| entity type | items |\n|---|---:|\n");
            for (t, n) in &self.unmapped_entity_types {
                md.push_str(&format!("| `{t}` | {n} |\n"));
            }
        }
        if !self.mismatches.is_empty() {
            md.push_str("\n## Differences\n\n");
            for m in &self.mismatches {
                md.push_str(&format!(
                    "- **{}** `{}` ({}; source `{}`)\n",
                    m.kind, m.key, m.entity, m.source_key
                ));
                for d in &m.differences {
                    md.push_str(&format!(
                        "  - `{}`: expected `{}`, found `{}`\n",
                        d.attribute,
                        show(&d.expected, MARKDOWN_WIDTH),
                        show(&d.actual, MARKDOWN_WIDTH)
                    ));
                }
            }
            if self.mismatches_not_listed > 0 {
                md.push_str(&format!(
                    "\n... and {} more, not listed.\n",
                    self.mismatches_not_listed
                ));
            }
        }
        if !self.warnings.is_empty() {
            md.push_str("\n## Warnings\n\n");
            for w in &self.warnings {
                md.push_str(&format!("- {w}\n"));
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_sample_rules_out_about_three_over_n() {
        assert!((upper_bound_95(1000) - 0.002991).abs() < 1e-5);
        assert_eq!(upper_bound_95(0), 1.0);
        let e = EntityCheck {
            entity: "message".into(),
            expected_in_target: 6287,
            target_items: 6287,
            sampled: 1000,
            matched: 1000,
            ok: true,
            ..Default::default()
        };
        assert_eq!(
            verdict_line(&e, false),
            "message: sample matched: 1000 of 6287 records compared, 0 differences (at 95% confidence, fewer than 0.30% of records differ); counts equal"
        );
        assert!(verdict_line(&e, true).contains("all 6287 records compared"));
        let bad = EntityCheck {
            unresolved: 4,
            ok: false,
            ..e
        };
        assert!(verdict_line(&bad, true).contains("4 unresolved"));
    }
}
