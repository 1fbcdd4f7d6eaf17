//! `verify --access-patterns`: the target as the application queries it.
//!
//! For each `[[access_pattern]]` of the mapping, one pass over the sources
//! renders the pattern's partition (and sort condition) from every source
//! item of its entity and keeps a sample: the partition values with the
//! lowest hashes (the same for the same `--seed`), each with the first
//! items the source implies for it, in the declared order. Then each
//! sampled query runs against the target (Query, paged) and its answer is
//! compared with that: the same items, sort keys as the source implies,
//! in order, and nothing else (an item of another entity in the answer is
//! a difference). It reads the target only through Query.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;

use super::{Context, SourceSink};
use crate::item::{key_text, project, Decimal, Item};
use crate::mapping::patterns::{AccessPattern, SortCondition};
use crate::mapping::Mapping;
use crate::pipeline::PipelineError;

/// How much of each pattern is checked.
#[derive(Debug, Clone, Copy)]
pub struct PatternOptions {
    /// Partition values queried per pattern.
    pub partitions: usize,
    /// Items compared per partition (its first, in the declared order).
    pub items: usize,
    pub seed: u64,
}

/// Distinct sort conditions queried per partition (per-item conditions,
/// like `equals = "TYPE#{eventType}"`, make one query per item).
const CONDITIONS_PER_PARTITION: usize = 20;
/// Differences listed per pattern (all are counted).
const LISTED: usize = 20;

/// The outcome of every pattern.
#[derive(Debug, Serialize)]
pub struct PatternReport {
    pub partitions_per_pattern: usize,
    pub items_per_partition: usize,
    pub patterns: Vec<PatternResult>,
    pub warnings: Vec<String>,
}

/// One pattern's outcome.
#[derive(Debug, Serialize)]
pub struct PatternResult {
    pub name: String,
    pub entity: String,
    /// `the table` or `index gsi2`.
    pub queried: String,
    pub queries: u64,
    pub items_compared: u64,
    /// Partitions whose items were more than were compared.
    pub partitions_cut: u64,
    pub differences: u64,
    pub listed: Vec<String>,
}

impl PatternResult {
    /// Checked (some query ran) and no difference.
    pub fn passed(&self) -> bool {
        self.queries > 0 && self.differences == 0
    }
}

impl PatternReport {
    pub fn differs(&self) -> bool {
        self.patterns.iter().any(|p| p.differences > 0)
    }

    /// The report for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "ACCESS PATTERNS (a sample: up to {} partition values per pattern, the first {} items of each)\n",
            self.partitions_per_pattern, self.items_per_partition
        );
        for p in &self.patterns {
            let verdict = match (p.queries, p.differences) {
                (0, _) => "NOT CHECKED: the source has no items of this entity".to_string(),
                (_, 0) => "ok".to_string(),
                (_, n) => format!("DIFFERS: {n} difference(s)"),
            };
            out.push_str(&format!(
                "  {:<34} {:<12} {:>6} queries {:>8} items  {verdict}\n",
                p.name, p.queried, p.queries, p.items_compared
            ));
            for line in &p.listed {
                out.push_str(&format!("      {line}\n"));
            }
            if p.differences > p.listed.len() as u64 {
                out.push_str(&format!(
                    "      ... and {} more\n",
                    p.differences - p.listed.len() as u64
                ));
            }
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        let failed = self.patterns.iter().filter(|p| p.differences > 0).count();
        let unchecked = self.patterns.iter().filter(|p| p.queries == 0).count();
        let total = self.patterns.len();
        out.push_str(&match (failed, unchecked) {
            (0, 0) => format!("Verdict: every one of {total} access patterns answered as the source implies, on the sample\n"),
            (0, u) => format!("Verdict: {} of {total} access patterns answered as the source implies, on the sample; {u} not checked\n", total - u),
            (f, _) => format!("Verdict: DIFFERS: {f} of {total} access patterns answered otherwise than the source implies\n"),
        });
        out
    }
}

/// Runs every pattern of the mapping.
pub(super) async fn check(
    ctx: &Context<'_>,
    opts: PatternOptions,
) -> Result<PatternReport, PipelineError> {
    let mapping = ctx.mapping;
    let mut collector = Collector::new(mapping, opts);
    let (_, warnings) = ctx.source_pass(&mut collector).await?;
    let mut patterns = Vec::new();
    for (p, sample) in mapping.patterns.iter().zip(collector.samples) {
        patterns.push(run(ctx.client, mapping, p, sample).await?);
    }
    Ok(PatternReport {
        partitions_per_pattern: opts.partitions,
        items_per_partition: opts.items,
        patterns,
        warnings,
    })
}

// ---- sort values ----

/// A key value in DynamoDB's order: S and B by bytes, N by value.
#[derive(Debug, Clone)]
struct SortValue(Option<AttributeValue>);

impl PartialEq for SortValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SortValue {}

impl Ord for SortValue {
    fn cmp(&self, other: &Self) -> Ordering {
        use AttributeValue as A;
        let rank = |v: &Option<A>| match v {
            None => 0,
            Some(A::N(_)) => 1,
            Some(A::S(_)) => 2,
            Some(A::B(_)) => 3,
            Some(_) => 4,
        };
        match (&self.0, &other.0) {
            (Some(A::S(a)), Some(A::S(b))) => a.as_bytes().cmp(b.as_bytes()),
            (Some(A::B(a)), Some(A::B(b))) => a.as_ref().cmp(b.as_ref()),
            (Some(A::N(a)), Some(A::N(b))) => match (Decimal::parse(a), Decimal::parse(b)) {
                (Ok(x), Ok(y)) => x.cmp_value(&y),
                _ => a.cmp(b),
            },
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }
}

impl PartialOrd for SortValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl SortValue {
    fn show(&self) -> String {
        match &self.0 {
            None => "(none)".into(),
            Some(v) => crate::item::value_to_json(v).to_string(),
        }
    }
}

/// A sort condition rendered for one source item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Cond {
    Equals(SortValue),
    BeginsWith(SortValue),
    Between(SortValue, SortValue),
}

impl Cond {
    fn holds(&self, v: &SortValue) -> bool {
        match self {
            Cond::Equals(e) => v == e,
            Cond::Between(lo, hi) => lo <= v && v <= hi,
            Cond::BeginsWith(p) => match (&v.0, &p.0) {
                (Some(AttributeValue::S(s)), Some(AttributeValue::S(p))) => {
                    s.starts_with(p.as_str())
                }
                (Some(AttributeValue::B(s)), Some(AttributeValue::B(p))) => {
                    s.as_ref().starts_with(p.as_ref())
                }
                _ => false,
            },
        }
    }

    fn show(&self, attr: &str) -> String {
        match self {
            Cond::Equals(v) => format!("{attr} = {}", v.show()),
            Cond::BeginsWith(v) => format!("begins_with({attr}, {})", v.show()),
            Cond::Between(a, b) => format!("{attr} BETWEEN {} AND {}", a.show(), b.show()),
        }
    }
}

// ---- the sample, from the source ----

/// One item the source implies for a partition.
#[derive(Debug, Clone)]
struct Candidate {
    key: Item,
    sort: SortValue,
    /// The sort condition its own source item renders.
    cond: Option<Cond>,
}

/// One sampled partition value and its first items in declared order,
/// keyed by (sort value, key text).
#[derive(Debug, Default)]
struct Partition {
    value: Option<AttributeValue>,
    items: BTreeMap<(SortValue, String), Candidate>,
    /// Items were dropped past the limit: compare only before this value.
    cut: Option<SortValue>,
}

/// One pattern's sample: partitions by (hash, value text).
#[derive(Debug, Default)]
struct Sample {
    partitions: BTreeMap<(u64, String), Partition>,
}

struct Collector<'m> {
    mapping: &'m Mapping,
    opts: PatternOptions,
    samples: Vec<Sample>,
    /// For the source item being transformed, per pattern of its entity:
    /// its rendered partition and condition.
    pending: Vec<(usize, String, Option<Cond>)>,
}

impl<'m> Collector<'m> {
    fn new(mapping: &'m Mapping, opts: PatternOptions) -> Self {
        Collector {
            mapping,
            opts,
            samples: mapping.patterns.iter().map(|_| Sample::default()).collect(),
            pending: Vec::new(),
        }
    }

    fn hash(&self, pattern: &str, value: &str) -> u64 {
        use md5::Digest as _;
        let d = md5::Md5::new()
            .chain_update(self.opts.seed.to_le_bytes())
            .chain_update(pattern.as_bytes())
            .chain_update([0])
            .chain_update(value.as_bytes())
            .finalize();
        u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
    }

    /// Renders a sort condition's templates; none when a value is missing.
    fn cond(&self, p: &AccessPattern, source: &Item) -> Option<Option<Cond>> {
        let Some(sort) = &p.sort else {
            return Some(None);
        };
        let ty = p
            .keys(self.mapping)
            .1
            .map(|a| self.mapping.table.key_type(a));
        let v = |t: &crate::mapping::Template| {
            t.render(source)
                .ok()
                .map(|text| SortValue(Some(ty.unwrap_or_default().value(text))))
        };
        Some(Some(match sort {
            SortCondition::Equals(t) => Cond::Equals(v(t)?),
            SortCondition::BeginsWith(t) => Cond::BeginsWith(v(t)?),
            SortCondition::Between(a, b) => Cond::Between(v(a)?, v(b)?),
        }))
    }

    /// Adds an expected target item to a pattern's sample.
    fn offer(&mut self, i: usize, value: String, cond: Option<Cond>, target: &Item) {
        let p = &self.mapping.patterns[i];
        let hash = self.hash(&p.name, &value);
        let (limit_parts, limit_items) = (self.opts.partitions, self.opts.items);
        let sample = &mut self.samples[i];
        let slot = (hash, value);
        if !sample.partitions.contains_key(&slot) {
            if sample.partitions.len() >= limit_parts {
                let Some(last) = sample.partitions.keys().next_back().cloned() else {
                    return;
                };
                if slot >= last {
                    return;
                }
                sample.partitions.remove(&last);
            }
            let (pk, _) = p.keys(self.mapping);
            let ty = self.mapping.table.key_type(pk);
            sample.partitions.insert(
                slot.clone(),
                Partition {
                    value: Some(ty.value(slot.1.clone())),
                    ..Partition::default()
                },
            );
        }
        let Some(part) = sample.partitions.get_mut(&slot) else {
            return;
        };
        let (_, sk) = p.keys(self.mapping);
        let sort = SortValue(sk.and_then(|a| target.get(a).cloned()));
        let key_names = self.mapping.table.primary_key();
        let key = project(target, &key_names);
        let order_key = (sort.clone(), key_text(&key, &key_names));
        if part.cut.as_ref().is_some_and(|c| beyond(p, &sort, c)) {
            return;
        }
        part.items.insert(order_key, Candidate { key, sort, cond });
        if part.items.len() > limit_items {
            let dropped = if p.descending {
                part.items.pop_first()
            } else {
                part.items.pop_last()
            };
            // Everything strictly before the last kept value is kept.
            let last = if p.descending {
                part.items.keys().next()
            } else {
                part.items.keys().next_back()
            };
            part.cut = last
                .map(|(s, _)| s.clone())
                .or(dropped.map(|(_, c)| c.sort));
        }
    }
}

/// Whether `v` comes at or after `cut` in the pattern's order.
fn beyond(p: &AccessPattern, v: &SortValue, cut: &SortValue) -> bool {
    if p.descending {
        v <= cut
    } else {
        v >= cut
    }
}

impl SourceSink for Collector<'_> {
    fn source(&mut self, entity: usize, item: &Item) {
        self.pending.clear();
        for (i, p) in self.mapping.patterns.iter().enumerate() {
            if p.entity != entity {
                continue;
            }
            let (Ok(value), Some(cond)) = (p.partition.render(item), self.cond(p, item)) else {
                continue; // a query this item's values cannot make
            };
            self.pending.push((i, value, cond));
        }
    }

    fn put(&mut self, entity: usize, target: Item, _source_key: Item) {
        for (i, value, cond) in std::mem::take(&mut self.pending) {
            if self.mapping.patterns[i].entity == entity {
                self.offer(i, value, cond, &target);
            }
        }
    }
}

// ---- the queries ----

/// Runs one pattern's sampled queries and compares the answers.
async fn run(
    client: &aws_sdk_dynamodb::Client,
    mapping: &Mapping,
    p: &AccessPattern,
    sample: Sample,
) -> Result<PatternResult, PipelineError> {
    let mut result = PatternResult {
        name: p.name.clone(),
        entity: mapping.entities[p.entity].name.clone(),
        queried: p.index.clone().unwrap_or_else(|| "table".into()),
        queries: 0,
        items_compared: 0,
        partitions_cut: 0,
        differences: 0,
        listed: Vec::new(),
    };
    for part in sample.partitions.into_values() {
        result.partitions_cut += u64::from(part.cut.is_some());
        let conds: BTreeSet<Option<Cond>> = part.items.values().map(|c| c.cond.clone()).collect();
        for cond in conds.into_iter().take(CONDITIONS_PER_PARTITION) {
            let answer = query(client, mapping, p, &part, cond.as_ref()).await?;
            result.queries += 1;
            compare(mapping, p, &part, cond.as_ref(), answer, &mut result);
        }
    }
    Ok(result)
}

/// The answer to one query, up to the partition's cut.
async fn query(
    client: &aws_sdk_dynamodb::Client,
    mapping: &Mapping,
    p: &AccessPattern,
    part: &Partition,
    cond: Option<&Cond>,
) -> Result<Vec<Item>, PipelineError> {
    let (pk, sk) = p.keys(mapping);
    let mut expr = "#p = :p".to_string();
    let mut values = vec![(":p".to_string(), part.value.clone())];
    match cond {
        None => {}
        Some(Cond::Equals(v)) => {
            expr.push_str(" AND #s = :a");
            values.push((":a".into(), v.0.clone()));
        }
        Some(Cond::BeginsWith(v)) => {
            expr.push_str(" AND begins_with(#s, :a)");
            values.push((":a".into(), v.0.clone()));
        }
        Some(Cond::Between(a, b)) => {
            expr.push_str(" AND #s BETWEEN :a AND :b");
            values.push((":a".into(), a.0.clone()));
            values.push((":b".into(), b.0.clone()));
        }
    }
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let mut q = client
            .query()
            .table_name(&mapping.table.name)
            .set_index_name(p.index.clone())
            .key_condition_expression(&expr)
            .expression_attribute_names("#p", pk)
            .scan_index_forward(!p.descending)
            .set_exclusive_start_key(start.take());
        if cond.is_some() {
            q = q.expression_attribute_names("#s", sk.unwrap_or_default());
        }
        for (name, v) in &values {
            q = q
                .expression_attribute_values(name, v.clone().unwrap_or(AttributeValue::Null(true)));
        }
        let page = q.send().await.map_err(|e| PipelineError::Target {
            table: mapping.table.name.clone(),
            message: format!(
                "access pattern {:?}: Query on {} failed: {}",
                p.name,
                p.target(),
                crate::aws::describe_error(&e)
            ),
        })?;
        let past_cut = |i: &Item| {
            let v = SortValue(sk.and_then(|a| i.get(a).cloned()));
            part.cut.as_ref().is_some_and(|c| beyond(p, &v, c))
        };
        for item in page.items.unwrap_or_default() {
            if past_cut(&item) {
                return Ok(out);
            }
            out.push(item);
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
}

/// Compares an answer with what the source implies for the query.
fn compare(
    mapping: &Mapping,
    p: &AccessPattern,
    part: &Partition,
    cond: Option<&Cond>,
    answer: Vec<Item>,
    result: &mut PatternResult,
) {
    let (pk, sk) = p.keys(mapping);
    let query = format!(
        "{} {pk} = {}{}",
        p.target(),
        SortValue(part.value.clone()).show(),
        cond.map(|c| format!(" AND {}", c.show(sk.unwrap_or_default())))
            .unwrap_or_default()
    );
    let expected: BTreeMap<String, &Candidate> = part
        .items
        .iter()
        .filter(|(_, c)| cond.is_none_or(|k| k.holds(&c.sort)))
        .filter(|(_, c)| part.cut.as_ref().is_none_or(|cut| !beyond(p, &c.sort, cut)))
        .map(|((_, k), c)| (k.clone(), c))
        .collect();
    let mut check = Check {
        mapping,
        p,
        sk,
        key_names: mapping.table.primary_key(),
        query,
        result,
    };
    let seen = check.answer(&expected, &answer);
    for (key, c) in &expected {
        if !seen.contains(key) {
            let shown = show_key(&c.key, &check.key_names);
            check.diff(format!(
                "{shown}: missing, the source implies it in this answer"
            ));
        }
    }
    check.result.items_compared += (expected.len() + answer.len() - seen.len()) as u64;
}

/// One answer being checked.
struct Check<'a> {
    mapping: &'a Mapping,
    p: &'a AccessPattern,
    sk: Option<&'a str>,
    key_names: Vec<&'a str>,
    query: String,
    result: &'a mut PatternResult,
}

impl Check<'_> {
    fn diff(&mut self, line: String) {
        self.result.differences += 1;
        if self.result.listed.len() < LISTED {
            let query = &self.query;
            self.result.listed.push(format!("{line} (query: {query})"));
        }
    }

    /// Walks the answer: its order, items the source does not put there,
    /// sort keys other than the source implies. Returns the keys seen.
    fn answer(
        &mut self,
        expected: &BTreeMap<String, &Candidate>,
        answer: &[Item],
    ) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut previous: Option<SortValue> = None;
        for item in answer {
            let key = key_text(item, &self.key_names);
            let shown = show_key(item, &self.key_names);
            let sort = SortValue(self.sk.and_then(|a| item.get(a).cloned()));
            let out_of_order = previous
                .as_ref()
                .is_some_and(|prev| match self.p.descending {
                    true => sort > *prev,
                    false => sort < *prev,
                });
            if out_of_order {
                self.diff(format!("{shown}: answered out of the declared order"));
            }
            previous = Some(sort.clone());
            let Some(want) = expected.get(&key) else {
                let whose = self.whose(item);
                self.diff(format!("{shown}: extra, {whose}"));
                continue;
            };
            seen.insert(key);
            if want.sort != sort {
                let attr = self.sk.unwrap_or_default();
                let (found, implied) = (sort.show(), want.sort.show());
                self.diff(format!(
                    "{shown}: {attr} is {found}, the source implies {implied}"
                ));
            }
        }
        seen
    }

    /// What an item the source does not put in the answer is.
    fn whose(&self, item: &Item) -> String {
        let wanted = &self.mapping.entities[self.p.entity].name;
        match self.mapping.entity_of(item) {
            Some(e) if e == self.p.entity => {
                format!("an item of {wanted} the source does not put in this answer")
            }
            Some(e) => format!(
                "an item of entity {}, not of {wanted}",
                self.mapping.entities[e].name
            ),
            None => "an item of no entity of the mapping".to_string(),
        }
    }
}

fn show_key(item: &Item, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            let v = SortValue(item.get(*n).cloned()).show();
            format!("{n}={v}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> SortValue {
        SortValue(Some(AttributeValue::S(x.into())))
    }
    fn n(x: &str) -> SortValue {
        SortValue(Some(AttributeValue::N(x.into())))
    }

    #[test]
    fn sort_values_order_as_dynamodb_does() {
        assert!(s("A") < s("B") && s("B") < s("a"), "bytes, not case-folded");
        assert!(n("9") < n("10") && n("-1") < n("0.5"), "numbers by value");
        assert!(SortValue(None) < s(""), "a missing value first");
    }

    #[test]
    fn conditions_hold_as_key_conditions_do() {
        assert!(Cond::BeginsWith(s("SESSION#")).holds(&s("SESSION#1")));
        assert!(!Cond::BeginsWith(s("SESSION#")).holds(&s("METADATA")));
        assert!(Cond::Between(n("2"), n("10")).holds(&n("9")));
        assert!(!Cond::Between(n("2"), n("10")).holds(&n("11")));
        assert!(Cond::Equals(s("X")).holds(&s("X")) && !Cond::Equals(s("X")).holds(&s("x")));
    }
}
