//! `verify --full --shard I/N` and `verify merge`: a full verification
//! split over processes.
//!
//! A shard reads its share of both sides (the source's Scan segments and
//! export files, the target's Scan segments, each modulo N) and keeps, per
//! entity, the counts and the 256 first-level bucket digests of each side.
//! Digests add up (a count and a sum modulo 2^128), so the merge of every
//! shard's digests is the digest of the whole table: equal buckets
//! everywhere prove the sides equal. Where buckets differ, the merge says
//! how many records they hold; naming the keys takes one `verify --full`
//! on one host. A source with incremental exports is refused: its records
//! settle per key across files, which a shard of the files cannot do.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::report::{Digest, EntityCheck, Parameters, VerifyReport};
use super::{context, full, FullSource, FullTarget, TargetCounts, VerifyOptions};
use crate::mapping::Mapping;
use crate::pipeline::PipelineError;
use crate::sources::{self, export::Store};

/// One side's bucket digests: (bucket, count, sum in hex).
pub type Buckets = Vec<(u8, u64, String)>;

/// One entity's share.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardEntity {
    pub entity: String,
    pub entity_type: String,
    pub source_table: String,
    pub source_items: u64,
    pub expected_in_target: u64,
    pub filtered: u64,
    pub dead_letter: u64,
    pub target_items: u64,
    pub source: Buckets,
    pub target: Buckets,
}

/// What `verify --full --shard I/N` writes: its share's counts and digests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardDigests {
    pub mapping: String,
    pub mapping_md5: String,
    pub target_table: String,
    pub source: String,
    /// (index, count).
    pub shard: (u32, u32),
    pub started_at: String,
    pub duration_seconds: f64,
    pub entities: Vec<ShardEntity>,
    pub unmapped_entity_types: BTreeMap<String, u64>,
    pub warnings: Vec<String>,
}

/// Reads this shard's share of both sides into digests.
pub async fn digests(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    opts: &VerifyOptions,
) -> Result<ShardDigests, PipelineError> {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let clock = std::time::Instant::now();
    let Some(shard) = opts.shard else {
        return Err(PipelineError::Task("a shard's digests need --shard".into()));
    };
    let (ctx, mut warnings) = context(client, store, mapping, opts).await?;
    if sources::phases(&ctx.plan) > 1 {
        return Err(PipelineError::Target {
            table: mapping.table.name.clone(),
            message: "verify --shard reads full exports and scans only: a source with incremental exports settles each key across files; verify it from one host, or against the legacy tables by Scan".into(),
        });
    }
    let key_names: Vec<String> = ctx.key_names().iter().map(|s| s.to_string()).collect();
    let scope = full::Scope::first();
    let mut src = FullSource::new(&scope, &key_names, false);
    let (counts, w) = ctx.source_pass(&mut src).await?;
    warnings.extend(w);
    let n = mapping.entities.len();
    let new_counts = TargetCounts {
        per_entity: vec![0; n],
        unmapped: BTreeMap::new(),
        type_attribute: mapping.table.entity_type_attribute.clone(),
    };
    let mut tgt = FullTarget::new(&scope, &key_names, false, true, new_counts);
    ctx.target_pass(None, &mut tgt).await?;
    let entities = mapping
        .entities
        .iter()
        .enumerate()
        .map(|(e, m)| ShardEntity {
            entity: m.name.clone(),
            entity_type: m.entity_type.clone(),
            source_table: m.source_table.clone(),
            source_items: counts[e].0,
            expected_in_target: counts[e].1,
            filtered: counts[e].2,
            dead_letter: counts[e].3,
            target_items: tgt.counts.per_entity[e],
            source: buckets(&src.digests, e),
            target: buckets(&tgt.digests, e),
        })
        .collect();
    Ok(ShardDigests {
        mapping: mapping.origin.display().to_string(),
        mapping_md5: mapping.text_md5.clone(),
        target_table: mapping.table.name.clone(),
        source: ctx.source_kind.clone(),
        shard: (shard.index, shard.count),
        started_at,
        duration_seconds: clock.elapsed().as_secs_f64(),
        entities,
        unmapped_entity_types: std::mem::take(&mut tgt.counts.unmapped),
        warnings,
    })
}

/// An entity's first-level buckets, in order.
fn buckets(d: &full::Digests, entity: usize) -> Buckets {
    let mut out: Buckets = d
        .buckets
        .iter()
        .filter(|((e, _), _)| *e == entity)
        .filter_map(|((_, b), dg)| Some((*b.first()?, dg.count, format!("{:032x}", dg.sum))))
        .collect();
    out.sort();
    out
}

pub use crate::report::merge::MergeError;

/// Reads a shard's digests (`verify --full --shard I/N --report PATH`).
pub fn read(path: &std::path::Path) -> Result<ShardDigests, MergeError> {
    crate::report::merge::read_json(path, "a shard's digests")
}

/// Every shard's digests, added up, judged as one full verification.
pub fn merge(shards: &[(String, ShardDigests)]) -> Result<VerifyReport, MergeError> {
    let (first_name, first) = shards
        .first()
        .ok_or_else(|| MergeError::Mismatch("no digests to merge".into()))?;
    for (name, s) in shards {
        if (s.mapping_md5.as_str(), s.target_table.as_str())
            != (first.mapping_md5.as_str(), first.target_table.as_str())
            || s.entities.len() != first.entities.len()
        {
            return Err(MergeError::Mismatch(format!(
                "{name} and {first_name} are not shards of one verification (mapping or target differ)"
            )));
        }
    }
    let set: Vec<(&str, (u32, u32))> = shards.iter().map(|(n, s)| (n.as_str(), s.shard)).collect();
    crate::sources::Shard::complete(&set).map_err(MergeError::Mismatch)?;
    Ok(judge(shards))
}

/// Sums per entity and bucket; the verdict.
fn judge(shards: &[(String, ShardDigests)]) -> VerifyReport {
    let first = &shards[0].1;
    let mut unmapped = BTreeMap::new();
    let mut warnings = Vec::new();
    for (name, s) in shards {
        for (t, n) in &s.unmapped_entity_types {
            *unmapped.entry(t.clone()).or_insert(0) += n;
        }
        warnings.extend(s.warnings.iter().map(|w| format!("{name}: {w}")));
    }
    let checks: Vec<EntityCheck> = (0..first.entities.len())
        .map(|e| entity_check(shards.iter().map(|(_, s)| &s.entities[e])))
        .collect();
    let differs = checks.iter().any(|c| !c.ok) || !unmapped.is_empty();
    if differs {
        warnings.push("the differing buckets' keys are not named by a merge: run singletable verify --full on one host to list them".into());
    }
    VerifyReport {
        mapping: first.mapping.clone(),
        target_table: first.target_table.clone(),
        parameters: Parameters {
            mode: "full".into(),
            sample_per_entity: None,
            sample_rate: None,
            seed: 0,
            source: format!("{} (merged from {} shards)", first.source, shards.len()),
            segments: None,
            read_rate: None,
        },
        started_at: shards
            .iter()
            .map(|(_, s)| s.started_at.clone())
            .min()
            .unwrap_or_default(),
        duration_seconds: shards
            .iter()
            .map(|(_, s)| s.duration_seconds)
            .fold(0.0, f64::max),
        verdict_lines: checks
            .iter()
            .map(|c| super::report::verdict_line(c, true))
            .collect(),
        entities: checks,
        unmapped_entity_types: unmapped,
        mismatches: Vec::new(),
        mismatches_not_listed: 0,
        warnings,
        verdict: if differs { "differs" } else { "match" }.into(),
    }
}

/// One entity's check from its shares: counts added, buckets compared.
fn entity_check<'a>(shares: impl Iterator<Item = &'a ShardEntity>) -> EntityCheck {
    let mut c = EntityCheck::default();
    let mut sides: [HashMap<u8, Digest>; 2] = [HashMap::new(), HashMap::new()];
    for s in shares {
        c.entity.clone_from(&s.entity);
        c.entity_type.clone_from(&s.entity_type);
        c.source_table.clone_from(&s.source_table);
        c.source_items += s.source_items;
        c.expected_in_target += s.expected_in_target;
        c.filtered += s.filtered;
        c.dead_letter += s.dead_letter;
        c.target_items += s.target_items;
        for (side, buckets) in sides.iter_mut().zip([&s.source, &s.target]) {
            for (b, count, sum) in buckets {
                let sum = u128::from_str_radix(sum, 16).unwrap_or_default();
                side.entry(*b)
                    .or_default()
                    .merge(&Digest { count: *count, sum });
            }
        }
    }
    let total = |side: &HashMap<u8, Digest>| {
        side.values().fold(Digest::default(), |mut d, b| {
            d.merge(b);
            d
        })
    };
    let empty = Digest::default();
    let differing: u64 = (0..=255u8)
        .filter(|b| sides[0].get(b).unwrap_or(&empty) != sides[1].get(b).unwrap_or(&empty))
        .map(|b| {
            let (s, t) = (
                sides[0].get(&b).unwrap_or(&empty),
                sides[1].get(&b).unwrap_or(&empty),
            );
            s.count.max(t.count)
        })
        .sum();
    c.source_digest = Some(total(&sides[0]));
    c.target_digest = Some(total(&sides[1]));
    c.sampled = c.expected_in_target;
    c.unresolved = differing;
    c.matched = c.expected_in_target.saturating_sub(differing);
    c.ok = differing == 0 && c.target_items == c.expected_in_target;
    c
}
