//! Verification: does the target hold what the mapping makes of the source?
//!
//! Everything is checked through the mapping, not around it, because the
//! migration changes every key:
//! - counts: per entity, the records the mapping makes from the source
//!   (Scan or exports, in their final state) against the target items of
//!   that entity (by `entityType`, or by key where the mapping says so);
//!   target items no entity makes are orphans;
//! - a sample ([`sample`]), or with `--full` every record ([`full`]):
//!   order-independent digests per key-hash bucket, narrowed down to the
//!   exact missing, extra and changed keys, in memory that does not grow
//!   with the table;
//! - a report ([`report`]) in JSON, Markdown and on the terminal, and a
//!   verdict: match only when every count and every compared record agree.
//!
//! Both sides are read with the rate-limited, segmented Scan source of
//! `migrate` (or the export source); nothing is written.

pub mod canonical;
pub mod full;
mod narrow;
pub mod patterns;
pub mod repair;
pub mod report;
pub mod sample;
pub mod shard;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::mpsc;

pub use report::{AttributeDiff, Digest, EntityCheck, Mismatch, Parameters, VerifyReport};
pub use sample::{seeded_hash, BottomK};

use crate::item::key_text;
use crate::item::{project, Item};
use crate::mapping::Mapping;
use crate::pipeline::PipelineError;
use crate::sources::export::Store;
use crate::sources::scan::{self, ScanConfig};
use crate::sources::{
    self, EntitySource, Readers, SourceMsg, SourceOptions, SourceRecord, TableInfo,
};
use crate::transform::{transform_owned, Owned};
use sample::{Expected, Tally};

/// What `verify` needs beyond the mapping and the clients.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Records sampled per entity (bottom-k).
    pub sample: usize,
    /// Instead of `sample`: the share of records compared, streamed.
    pub sample_rate: Option<f64>,
    pub seed: u64,
    /// Compare every record by digests.
    pub full: bool,
    pub sources: SourceOptions,
    /// How both sides are scanned (segments, read rate, page size).
    pub scan: ScanConfig,
    /// Scan segments and export files read at once, across all tables.
    pub read_concurrency: usize,
    /// How many mismatches the report lists in full.
    pub max_listed: usize,
    /// Full mode: the most records held to list differences; more, and the
    /// differing buckets are split again first.
    pub collect_limit: u64,
    /// `verify --full --shard I/N`: this process's share of both sides.
    pub shard: Option<sources::Shard>,
}

/// Per entity: read, put, filtered, rejected.
type Counts = Vec<(u64, u64, u64, u64)>;

/// Receives the records the mapping makes of the source.
trait SourceSink {
    /// Sees each source record about to be transformed (default: nothing).
    fn source(&mut self, _entity: usize, _item: &Item) {}
    fn put(&mut self, entity: usize, target: Item, source_key: Item);
    /// Called between batches: the place for I/O.
    async fn flush(&mut self) -> Result<(), PipelineError> {
        Ok(())
    }
}

/// Receives the target's items.
trait TargetSink {
    fn item(&mut self, entity: Option<usize>, item: Item);
}

struct Context<'a> {
    client: &'a aws_sdk_dynamodb::Client,
    mapping: &'a Mapping,
    plan: Vec<EntitySource>,
    readers: Readers,
    target: TableInfo,
    opts: &'a VerifyOptions,
    /// Where the sources are read from, in a word or two.
    source_kind: String,
}

impl Context<'_> {
    fn key_names(&self) -> Vec<&str> {
        self.mapping.table.primary_key()
    }

    /// Streams one phase's records into `each`, calling `flush` between batches.
    async fn phase<S: SourceSink>(
        &self,
        phase: usize,
        sink: &mut S,
        mut each: impl FnMut(&mut S, usize, SourceRecord),
    ) -> Result<Vec<String>, PipelineError> {
        let (tx, mut rx) = mpsc::channel::<SourceMsg>(16);
        let mut tasks = tokio::task::JoinSet::new();
        sources::spawn_phase(phase, &self.plan, &self.readers, &tx, &mut tasks);
        drop(tx);
        while let Some(msg) = rx.recv().await {
            if let SourceMsg::Batch(b) = msg {
                for r in b.records {
                    each(sink, b.entity, r);
                }
                sink.flush().await?;
            }
        }
        let mut warnings = Vec::new();
        while let Some(j) = tasks.join_next().await {
            let (_, result) = j.map_err(|e| PipelineError::Task(e.to_string()))?;
            warnings.extend(result?);
        }
        Ok(warnings)
    }

    /// One pass over the source in its final state: incremental exports
    /// first (the last change of each key wins), then the full export or
    /// scan for every key that did not change. Counts what the mapping
    /// does with each record and hands the puts to `sink`.
    async fn source_pass<S: SourceSink>(
        &self,
        sink: &mut S,
    ) -> Result<(Counts, Vec<String>), PipelineError> {
        let n = self.mapping.entities.len();
        let source_keys: Vec<Vec<&str>> = self
            .mapping
            .entities
            .iter()
            .map(|e| e.source_key.iter().map(String::as_str).collect())
            .collect();
        let mut changed: Vec<HashMap<String, Option<Item>>> = vec![HashMap::new(); n];
        let mut bad = vec![0u64; n];
        let mut warnings = Vec::new();
        for phase in 1..sources::phases(&self.plan) {
            warnings.extend(
                self.phase(phase, sink, |_, e, r| match r {
                    SourceRecord::Change { keys, new, .. } => {
                        changed[e].insert(key_text(&keys, &source_keys[e]), new);
                    }
                    SourceRecord::Item(i) => {
                        changed[e].insert(key_text(&i, &source_keys[e]), Some(i));
                    }
                    SourceRecord::Bad { .. } | SourceRecord::Target { .. } => bad[e] += 1,
                })
                .await?,
            );
        }
        let mut counts: Counts = vec![(0, 0, 0, 0); n];
        let mapping = self.mapping;
        let offer = |sink: &mut S, counts: &mut Counts, e: usize, item: Item| {
            let Some(entity) = mapping.entities.get(e) else {
                return;
            };
            let c = &mut counts[e];
            c.0 += 1;
            let source_key = project(&item, &source_keys[e]);
            sink.source(e, &item);
            match transform_owned(entity, &mapping.table, item) {
                Owned::Put(target) => {
                    c.1 += 1;
                    sink.put(e, target, source_key);
                }
                Owned::Filtered(_) => c.2 += 1,
                Owned::Reject(..) => c.3 += 1,
            }
        };
        warnings.extend(
            self.phase(0, sink, |sink, e, r| match r {
                SourceRecord::Item(i) => {
                    // Without incremental exports nothing changed: no key to look up.
                    if changed[e].is_empty()
                        || !changed[e].contains_key(&key_text(&i, &source_keys[e]))
                    {
                        offer(sink, &mut counts, e, i);
                    }
                }
                SourceRecord::Change { new: Some(i), .. } => offer(sink, &mut counts, e, i),
                SourceRecord::Change { new: None, .. } => {}
                SourceRecord::Bad { .. } | SourceRecord::Target { .. } => {
                    counts[e].0 += 1;
                    counts[e].3 += 1;
                }
            })
            .await?,
        );
        for (e, changes) in changed.into_iter().enumerate() {
            for item in changes.into_values().flatten() {
                offer(sink, &mut counts, e, item);
            }
            counts[e].0 += bad[e];
            counts[e].3 += bad[e];
        }
        sink.flush().await?;
        Ok((counts, warnings))
    }

    /// One pass over the target: every item, with the entity it belongs to.
    async fn target_pass(
        &self,
        projection: Option<Vec<String>>,
        sink: &mut impl TargetSink,
    ) -> Result<(), PipelineError> {
        let (tx, mut rx) = mpsc::channel::<SourceMsg>(16);
        let scan_cfg = ScanConfig {
            projection,
            ..self.opts.scan.clone()
        };
        let mut segments = scan::all_segments(&self.target, &scan_cfg);
        if let Some(shard) = self.opts.shard {
            // This shard's share of the target.
            let total = shard.segments(segments.len() as u32);
            segments = (0..total)
                .filter(|&i| shard.takes(i as usize))
                .map(|index| scan::Segment {
                    index,
                    total,
                    start: None,
                    cursor: None,
                })
                .collect();
        }
        let table = scan::TableScan {
            client: self.client.clone(),
            info: self.target.clone(),
            entity: 0,
            cfg: scan_cfg,
            tx,
            permits: self.readers.permits.clone(),
            shutdown: self.readers.shutdown.clone(),
            on_page: Arc::new(|_, _| {}),
        };
        let task = tokio::spawn(scan::scan_table(table, segments));
        while let Some(msg) = rx.recv().await {
            if let SourceMsg::Batch(b) = msg {
                for r in b.records {
                    if let SourceRecord::Item(item) = r {
                        sink.item(self.mapping.entity_of(&item), item);
                    }
                }
            }
        }
        task.await
            .map_err(|e| PipelineError::Task(e.to_string()))??;
        Ok(())
    }
}

/// Target counts per entity, and orphans by entity type.
#[derive(Default)]
struct TargetCounts {
    per_entity: Vec<u64>,
    unmapped: BTreeMap<String, u64>,
    /// The entity-type attribute, if the table has one.
    type_attribute: Option<String>,
}

impl TargetSink for TargetCounts {
    fn item(&mut self, entity: Option<usize>, item: Item) {
        match entity {
            Some(e) => self.per_entity[e] += 1,
            None => {
                let Some(attr) = &self.type_attribute else {
                    *self
                        .unmapped
                        .entry("(no identify rule matches)".into())
                        .or_default() += 1;
                    return;
                };
                let t = match item.get(attr) {
                    Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => s.clone(),
                    Some(other) => format!("({})", crate::item::value_to_json(other)),
                    None => format!("(no {attr})"),
                };
                *self.unmapped.entry(t).or_default() += 1;
            }
        }
    }
}

/// The bottom-k sample of each entity.
struct BottomKSink {
    seed: u64,
    key_names: Vec<String>,
    samples: Vec<BottomK<Expected>>,
}

impl SourceSink for BottomKSink {
    fn put(&mut self, entity: usize, target: Item, source_key: Item) {
        let names: Vec<&str> = self.key_names.iter().map(String::as_str).collect();
        let key = key_text(&target, &names);
        let h = seeded_hash(self.seed, key.as_bytes());
        self.samples[entity].offer(
            h,
            key,
            Expected {
                item: target,
                source_key,
            },
        );
    }
}

/// The streamed sample of `--sample-rate`: checked 100 at a time.
struct RateSink<'a> {
    ctx: &'a Context<'a>,
    threshold: u64,
    pending: Vec<Vec<Expected>>,
    tallies: Vec<Tally>,
    mismatches: Vec<Mismatch>,
}

impl RateSink<'_> {
    async fn check(&mut self, force: bool) -> Result<(), PipelineError> {
        let names = self.ctx.key_names();
        for e in 0..self.pending.len() {
            if self.pending[e].len() >= 100 || (force && !self.pending[e].is_empty()) {
                let batch = std::mem::take(&mut self.pending[e]);
                let name = &self.ctx.mapping.entities[e].name;
                let at = sample::Lookup {
                    client: self.ctx.client,
                    table: &self.ctx.mapping.table.name,
                    stall: self.ctx.opts.scan.stall_timeout,
                };
                sample::check(
                    &at,
                    &names,
                    name,
                    &batch,
                    &mut self.tallies[e],
                    &mut self.mismatches,
                )
                .await?;
            }
        }
        Ok(())
    }
}

impl SourceSink for RateSink<'_> {
    fn put(&mut self, entity: usize, target: Item, source_key: Item) {
        let key = key_text(&target, &self.ctx.key_names());
        if seeded_hash(self.ctx.opts.seed, key.as_bytes()) <= self.threshold {
            self.pending[entity].push(Expected {
                item: target,
                source_key,
            });
        }
    }

    async fn flush(&mut self) -> Result<(), PipelineError> {
        self.check(false).await
    }
}

/// Full mode, source side: digests, or (in the last pass) the records.
struct FullSource<'a> {
    scope: &'a full::Scope,
    key_names: Vec<String>,
    digests: full::Digests,
    collect: bool,
    collected: HashMap<(usize, String), Expected>,
    /// Keys more than one source record makes, with every source key.
    collisions: BTreeMap<(usize, String), Vec<Item>>,
}

impl<'a> FullSource<'a> {
    fn new(scope: &'a full::Scope, key_names: &[String], collect: bool) -> Self {
        FullSource {
            scope,
            key_names: key_names.to_vec(),
            digests: Default::default(),
            collect,
            collected: HashMap::new(),
            collisions: BTreeMap::new(),
        }
    }
}

impl SourceSink for FullSource<'_> {
    fn put(&mut self, entity: usize, target: Item, source_key: Item) {
        let names: Vec<&str> = self.key_names.iter().map(String::as_str).collect();
        let key = key_text(&target, &names);
        if self.collect {
            if self.scope.bucket(entity, full::key_hash(&key)).is_some() {
                let at = (entity, key);
                if let Some(first) = self.collected.get(&at) {
                    // A second record makes this key: a collision.
                    let first = first.source_key.clone();
                    let keys = self.collisions.entry(at).or_insert_with(|| vec![first]);
                    keys.push(source_key);
                    return;
                }
                let expected = Expected {
                    item: target,
                    source_key,
                };
                self.collected.insert(at, expected);
            }
        } else {
            self.digests.add(self.scope, entity, &key, &target);
        }
    }
}

/// Full mode, target side.
struct FullTarget<'a> {
    scope: &'a full::Scope,
    key_names: Vec<String>,
    digests: full::Digests,
    collect: bool,
    collected: HashMap<(usize, String), Item>,
    counts: TargetCounts,
    count: bool,
    /// For a repair of orphans: the keys of items of no entity, up to a limit.
    orphans: Option<(usize, Vec<Item>)>,
}

impl<'a> FullTarget<'a> {
    fn new(
        scope: &'a full::Scope,
        key_names: &[String],
        collect: bool,
        count: bool,
        counts: TargetCounts,
    ) -> Self {
        FullTarget {
            scope,
            key_names: key_names.to_vec(),
            digests: Default::default(),
            collect,
            collected: HashMap::new(),
            counts,
            count,
            orphans: None,
        }
    }
}

impl TargetSink for FullTarget<'_> {
    fn item(&mut self, entity: Option<usize>, item: Item) {
        let Some(e) = entity else {
            if let Some((limit, keys)) = &mut self.orphans {
                if keys.len() < *limit {
                    let names: Vec<&str> = self.key_names.iter().map(String::as_str).collect();
                    keys.push(project(&item, &names));
                }
            }
            if self.count {
                self.counts.item(None, item);
            }
            return;
        };
        if self.count {
            self.counts.per_entity[e] += 1;
        }
        let names: Vec<&str> = self.key_names.iter().map(String::as_str).collect();
        let key = key_text(&item, &names);
        if self.collect {
            if self.scope.bucket(e, full::key_hash(&key)).is_some() {
                self.collected.insert((e, key), item);
            }
        } else {
            self.digests.add(self.scope, e, &key, &item);
        }
    }
}

/// For records missing from their entity's target items: the other entity
/// whose item holds the key, if one does (two entities make one key: a
/// collision across entities), looked up by key.
async fn held_elsewhere(
    at: &sample::Lookup<'_>,
    mapping: &Mapping,
    names: &[&str],
    missing: Vec<(usize, Expected)>,
) -> Result<Vec<(usize, Expected, Option<usize>)>, PipelineError> {
    let mut seen = std::collections::HashSet::new();
    let keys: Vec<Item> = missing
        .iter()
        .filter(|(_, x)| seen.insert(key_text(&x.item, names)))
        .map(|(_, x)| project(&x.item, names))
        .collect();
    let found = if keys.is_empty() {
        HashMap::new()
    } else {
        sample::batch_get(at, &keys, names).await?
    };
    Ok(missing
        .into_iter()
        .map(|(e, x)| {
            let holder = found
                .get(&key_text(&x.item, names))
                .and_then(|item| mapping.entity_of(item))
                .filter(|other| *other != e);
            (e, x, holder)
        })
        .collect())
}

/// Runs the verification.
/// The plan of the sources, the target's description and the readers of a
/// verification (with a shard, only its share); the sources' warnings.
async fn context<'a>(
    client: &'a aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &'a Mapping,
    opts: &'a VerifyOptions,
) -> Result<(Context<'a>, Vec<String>), PipelineError> {
    let (plan, warnings) = sources::plan(client, store, mapping, &opts.sources).await?;
    let name = &mapping.table.name;
    let target_error = |message: String| PipelineError::Target {
        table: name.clone(),
        message,
    };
    let missing = "does not exist, so there is nothing to verify; migrate into it first, or name the table the migration wrote with --target-table (or DYNAMODB_TABLE_NAME)";
    let desc = crate::aws::describe_table(client, name)
        .await
        .map_err(target_error)?
        .ok_or_else(|| target_error(missing.into()))?;
    let target = TableInfo {
        name: mapping.table.name.clone(),
        key: mapping
            .table
            .primary_key()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        item_count: desc.item_count().unwrap_or(0),
        size_bytes: desc.table_size_bytes().unwrap_or(0),
    };
    let mut readers = Readers::plain(client, store, &opts.scan, opts.read_concurrency, &plan);
    readers.units = Arc::new(sources::units(&plan, &opts.scan, opts.shard));
    let source_kind = sources::source_words(&plan);
    let ctx = Context {
        client,
        mapping,
        plan,
        readers,
        target,
        opts,
        source_kind,
    };
    Ok((ctx, warnings))
}

/// `verify --access-patterns`: each of the mapping's declared queries, run
/// for a sample of values from the source and compared with what the
/// source implies.
pub async fn access_patterns(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    opts: &VerifyOptions,
    patterns: patterns::PatternOptions,
) -> Result<patterns::PatternReport, PipelineError> {
    let (ctx, warnings) = context(client, store, mapping, opts).await?;
    let mut report = patterns::check(&ctx, patterns).await?;
    report.warnings.splice(0..0, warnings);
    Ok(report)
}

pub async fn verify(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    opts: &VerifyOptions,
) -> Result<VerifyReport, PipelineError> {
    verify_with::<repair::NoRepairs>(client, store, mapping, opts, None).await
}

/// The verification; in full mode, with `repairs`, each round of exact
/// differences is also handed to it to repair.
pub(crate) async fn verify_with<R: repair::Repairs>(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    opts: &VerifyOptions,
    repairs: Option<&mut R>,
) -> Result<VerifyReport, PipelineError> {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let clock = std::time::Instant::now();
    let (ctx, mut warnings) = context(client, store, mapping, opts).await?;
    let source_kind = ctx.source_kind.clone();
    let n = mapping.entities.len();
    let key_names: Vec<String> = ctx.key_names().iter().map(|s| s.to_string()).collect();
    let new_counts = || TargetCounts {
        per_entity: vec![0; n],
        unmapped: BTreeMap::new(),
        type_attribute: mapping.table.entity_type_attribute.clone(),
    };

    let mut checks: Vec<EntityCheck> = mapping
        .entities
        .iter()
        .map(|e| EntityCheck {
            entity: e.name.clone(),
            entity_type: e.entity_type.clone(),
            source_table: e.source_table.clone(),
            ..Default::default()
        })
        .collect();
    let mut mismatches = Vec::new();
    let counts;
    let targets: TargetCounts;
    let mode;
    let mut beyond_listed = 0;
    if opts.full {
        mode = "full";
        let found = narrow::run(&ctx, &mut checks, &new_counts, repairs).await?;
        counts = found.counts;
        warnings.extend(found.warnings);
        targets = found.targets;
        mismatches = found.listing.mismatches;
        beyond_listed = found.listing.not_listed;
        for (e, check) in checks.iter_mut().enumerate() {
            check.sampled = counts[e].1;
            check.matched = counts[e].1.saturating_sub(
                check.missing + check.changed + check.unresolved + check.collided_records,
            );
        }
    } else if let Some(rate) = opts.sample_rate {
        mode = "sample-rate";
        let threshold = (rate.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        let mut sink = RateSink {
            ctx: &ctx,
            threshold,
            pending: (0..n).map(|_| Vec::new()).collect(),
            tallies: vec![Tally::default(); n],
            mismatches: Vec::new(),
        };
        let (c, w) = ctx.source_pass(&mut sink).await?;
        sink.check(true).await?;
        counts = c;
        warnings.extend(w);
        for (check, t) in checks.iter_mut().zip(&sink.tallies) {
            (check.sampled, check.matched, check.missing, check.changed) =
                (t.compared, t.matched, t.missing, t.changed);
        }
        mismatches = sink.mismatches;
        let mut tc = new_counts();
        ctx.target_pass(Some(mapping.identifying_attributes()), &mut tc)
            .await?;
        targets = tc;
    } else {
        mode = "sample";
        let mut sink = BottomKSink {
            seed: opts.seed,
            key_names: key_names.clone(),
            samples: (0..n).map(|_| BottomK::new(opts.sample)).collect(),
        };
        let (c, w) = ctx.source_pass(&mut sink).await?;
        counts = c;
        warnings.extend(w);
        let names: Vec<&str> = key_names.iter().map(String::as_str).collect();
        for (e, samples) in sink.samples.into_iter().enumerate() {
            let expected: Vec<Expected> =
                samples.into_sorted().into_iter().map(|(_, x)| x).collect();
            let mut t = Tally::default();
            let at = sample::Lookup {
                client,
                table: &mapping.table.name,
                stall: opts.scan.stall_timeout,
            };
            for chunk in expected.chunks(100) {
                sample::check(
                    &at,
                    &names,
                    &mapping.entities[e].name,
                    chunk,
                    &mut t,
                    &mut mismatches,
                )
                .await?;
            }
            (
                checks[e].sampled,
                checks[e].matched,
                checks[e].missing,
                checks[e].changed,
            ) = (t.compared, t.matched, t.missing, t.changed);
        }
        let mut tc = new_counts();
        ctx.target_pass(Some(mapping.identifying_attributes()), &mut tc)
            .await?;
        targets = tc;
    }

    for (e, check) in checks.iter_mut().enumerate() {
        let (read, put, filtered, rejected) = counts[e];
        check.source_items = read;
        check.expected_in_target = put;
        check.filtered = filtered;
        check.dead_letter = rejected;
        check.target_items = targets.per_entity[e];
        check.ok = check.target_items == put
            && check.missing == 0
            && check.changed == 0
            && check.extra == 0
            && check.unresolved == 0
            && check.collisions == 0;
    }
    let verdict = if !checks.iter().all(|c| c.ok) || !targets.unmapped.is_empty() {
        "differs"
    } else if mode == "full" {
        "match"
    } else {
        "sample-match"
    };
    let verdict_lines = checks
        .iter()
        .map(|c| report::verdict_line(c, mode == "full"))
        .collect();
    let not_listed = mismatches.len().saturating_sub(opts.max_listed) as u64 + beyond_listed;
    mismatches.truncate(opts.max_listed);
    Ok(VerifyReport {
        mapping: mapping.origin.display().to_string(),
        target_table: mapping.table.name.clone(),
        parameters: Parameters {
            mode: mode.into(),
            sample_per_entity: (mode == "sample").then_some(opts.sample),
            sample_rate: opts.sample_rate.filter(|_| mode == "sample-rate"),
            seed: opts.seed,
            source: source_kind,
            segments: opts.scan.segments,
            read_rate: opts.scan.read_units_per_second.map(|r| r.get()),
        },
        started_at,
        duration_seconds: clock.elapsed().as_secs_f64(),
        entities: checks,
        unmapped_entity_types: targets.unmapped,
        mismatches,
        mismatches_not_listed: not_listed,
        warnings,
        verdict: verdict.into(),
        verdict_lines,
    })
}
