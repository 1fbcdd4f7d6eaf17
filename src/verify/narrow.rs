//! Full mode's passes: digests of both sides, narrowed to the exact keys.
//!
//! Level one digests every record of both sides; where buckets differ,
//! further passes split only those buckets; then rounds of collect passes
//! hold the records of some differing buckets at a time (never more than
//! the collect limit) and name every missing, extra, changed and colliding
//! key among them. A plain verification runs one round and counts the rest
//! as unresolved; a repair runs as many rounds as it takes and hands each
//! round's [`Action`]s to its [`Repairs`] before the next, so memory stays
//! within the limit however many keys differ. Orphans (target items of no
//! entity) are collected only for a repair that deletes them.

use std::collections::{HashMap, HashSet};

use super::full::{self, Bucket, Scope};
use super::repair::{Action, Repairs, Why};
use super::sample::{self, Expected};
use super::{
    held_elsewhere, Context, Counts, EntityCheck, FullSource, FullTarget, Mismatch, TargetCounts,
};
use crate::item::{differing_attributes, key_display, project, Item};
use crate::pipeline::PipelineError;

/// What the full check found.
pub(super) struct Found {
    pub counts: Counts,
    pub targets: TargetCounts,
    pub warnings: Vec<String>,
    pub listing: Listing,
}

/// The mismatches listed, up to a limit; the rest counted.
#[derive(Default)]
pub(super) struct Listing {
    pub mismatches: Vec<Mismatch>,
    pub limit: usize,
    pub not_listed: u64,
}

impl Listing {
    fn push(&mut self, m: Mismatch) {
        if self.mismatches.len() < self.limit {
            self.mismatches.push(m);
        } else {
            self.not_listed += 1;
        }
    }
}

/// Runs the full check (and, with `repairs`, the repair round by round).
pub(super) async fn run<R: Repairs>(
    ctx: &Context<'_>,
    checks: &mut [EntityCheck],
    new_counts: &dyn Fn() -> TargetCounts,
    mut repairs: Option<&mut R>,
) -> Result<Found, PipelineError> {
    let key_names: Vec<String> = ctx.key_names().iter().map(|s| s.to_string()).collect();
    let orphans = repairs.as_ref().is_some_and(|r| r.orphans());
    let mut scope = Scope::first();
    let mut src = FullSource::new(&scope, &key_names, false);
    let (counts, warnings) = ctx.source_pass(&mut src).await?;
    let mut tgt = FullTarget::new(&scope, &key_names, false, true, new_counts());
    tgt.orphans = orphans.then(|| (ctx.opts.collect_limit as usize, Vec::new()));
    ctx.target_pass(None, &mut tgt).await?;
    for (e, check) in checks.iter_mut().enumerate() {
        check.source_digest = Some(src.digests.total(e));
        check.target_digest = Some(tgt.digests.total(e));
    }
    let targets = std::mem::take(&mut tgt.counts);
    let first_orphans = tgt.orphans.take().map(|(_, keys)| keys);
    let mut diff = full::differing(&src.digests, &tgt.digests);
    // Narrow while the differing buckets hold too many records, and while
    // splitting them helps (many real differences do not shrink).
    let mut previous = u64::MAX;
    while full::load(&diff) > ctx.opts.collect_limit
        && full::load(&diff) <= previous / 2
        && scope.level < 15
    {
        previous = full::load(&diff);
        let all: HashSet<Bucket> = diff.into_iter().map(|(b, _)| b).collect();
        scope = full::narrow(all, scope.level);
        let mut s = FullSource::new(&scope, &key_names, false);
        ctx.source_pass(&mut s).await?;
        let mut t = FullTarget::new(&scope, &key_names, false, false, new_counts());
        ctx.target_pass(None, &mut t).await?;
        diff = full::differing(&s.digests, &t.digests);
    }
    let mut listing = Listing {
        limit: ctx.opts.max_listed,
        ..Listing::default()
    };
    let rounds = match repairs.is_some() {
        // A repair names every differing key, a round at a time.
        true => full::rounds(diff, ctx.opts.collect_limit),
        false => {
            let (kept, unresolved) = full::within_limit(diff, ctx.opts.collect_limit);
            for (e, n) in unresolved {
                checks[e].unresolved += n;
            }
            vec![kept]
        }
    };
    for kept in rounds.into_iter().filter(|k| !k.is_empty()) {
        let actions = round(ctx, checks, &mut listing, full::narrow(kept, scope.level)).await?;
        if let Some(r) = repairs.as_deref_mut() {
            r.apply(actions).await?;
        }
    }
    if let (Some(r), Some(keys)) = (repairs, first_orphans) {
        delete_orphans(ctx, r, keys, new_counts).await?;
    }
    Ok(Found {
        counts,
        targets,
        warnings,
        listing,
    })
}

/// One collect round over the differing buckets of `scope`: lists what
/// differs and returns what would make the target agree.
async fn round(
    ctx: &Context<'_>,
    checks: &mut [EntityCheck],
    listing: &mut Listing,
    scope: Scope,
) -> Result<Vec<Action>, PipelineError> {
    let key_names: Vec<String> = ctx.key_names().iter().map(|s| s.to_string()).collect();
    let mut s = FullSource::new(&scope, &key_names, true);
    ctx.source_pass(&mut s).await?;
    let mut t = FullTarget::new(&scope, &key_names, true, false, TargetCounts::default());
    ctx.target_pass(None, &mut t).await?;
    let mut r = Round {
        mapping: ctx.mapping,
        names: key_names.iter().map(String::as_str).collect(),
        checks,
        listing,
        actions: Vec::new(),
    };
    let mut targets = t.collected;
    r.collisions(&s, &mut targets);
    let missing = r.compare(s, &mut targets);
    let at = sample::Lookup {
        client: ctx.client,
        table: &ctx.mapping.table.name,
        stall: ctx.opts.scan.stall_timeout,
    };
    let missing = held_elsewhere(&at, ctx.mapping, &r.names, missing).await?;
    r.missing(missing);
    r.extras(targets);
    Ok(r.actions)
}

/// What one round found, as it is worked through.
struct Round<'a> {
    mapping: &'a crate::mapping::Mapping,
    names: Vec<&'a str>,
    checks: &'a mut [EntityCheck],
    listing: &'a mut Listing,
    actions: Vec<Action>,
}

impl Round<'_> {
    /// Keys several source records make: listed, never repaired.
    fn collisions(&mut self, s: &FullSource<'_>, targets: &mut HashMap<(usize, String), Item>) {
        for ((e, key), sources) in &s.collisions {
            targets.remove(&(*e, key.clone()));
            self.checks[*e].collisions += 1;
            self.checks[*e].collided_records += sources.len() as u64;
            let keys: Vec<String> = sources.iter().map(key_display).collect();
            self.listing.push(Mismatch {
                entity: self.mapping.entities[*e].name.clone(),
                key: s.collected[&(*e, key.clone())].item_key(&self.names),
                source_key: keys.join(" and "),
                kind: "collision".into(),
                differences: Vec::new(),
            });
        }
    }

    /// Each expected record against its target item: changed ones are
    /// listed and put; the missing ones are returned (another entity's
    /// item may hold their key).
    fn compare(
        &mut self,
        s: FullSource<'_>,
        targets: &mut HashMap<(usize, String), Item>,
    ) -> Vec<(usize, Expected)> {
        let mut expected: Vec<((usize, String), Expected)> = s
            .collected
            .into_iter()
            .filter(|(at, _)| !s.collisions.contains_key(at))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let mut missing = Vec::new();
        for ((e, key), want) in expected {
            match targets.remove(&(e, key)) {
                None => missing.push((e, want)),
                Some(a) if !differing_attributes(&want.item, &a).is_empty() => {
                    self.checks[e].changed += 1;
                    let name = &self.mapping.entities[e].name;
                    self.listing
                        .push(sample::mismatch(name, &self.names, &want, Some(&a)));
                    self.actions.push(Action::put(e, Why::Changed, want.item));
                }
                Some(_) => {}
            }
        }
        missing
    }

    /// Missing records are put, unless another entity's item holds the
    /// key (a collision across entities: listed only).
    fn missing(&mut self, missing: Vec<(usize, Expected, Option<usize>)>) {
        for (e, expected, holder) in missing {
            let name = &self.mapping.entities[e].name;
            let Some(other) = holder else {
                self.checks[e].missing += 1;
                self.listing
                    .push(sample::mismatch(name, &self.names, &expected, None));
                self.actions
                    .push(Action::put(e, Why::Missing, expected.item));
                continue;
            };
            self.checks[e].collisions += 1;
            self.checks[e].collided_records += 1;
            let source_key = format!(
                "{} ({name}), and an item of entity {} holds the key",
                key_display(&expected.source_key),
                self.mapping.entities[other].name
            );
            self.listing.push(Mismatch {
                entity: name.clone(),
                key: expected.item_key(&self.names),
                source_key,
                kind: "collision".into(),
                differences: Vec::new(),
            });
        }
    }

    /// Target items no source record makes: listed and deleted.
    fn extras(&mut self, targets: HashMap<(usize, String), Item>) {
        let mut extras: Vec<((usize, String), Item)> = targets.into_iter().collect();
        extras.sort_by(|a, b| a.0.cmp(&b.0));
        for ((e, _), item) in extras {
            self.checks[e].extra += 1;
            let key = project(&item, &self.names);
            self.listing.push(Mismatch {
                entity: self.mapping.entities[e].name.clone(),
                key: key_display(&key),
                source_key: "(none: no source record makes this key)".into(),
                kind: "extra".into(),
                differences: Vec::new(),
            });
            self.actions.push(Action::delete(Some(e), Why::Extra, key));
        }
    }
}

/// Deletes the orphans found, then looks for more while a pass found as
/// many as may be held (a dry run looks once: nothing goes away).
async fn delete_orphans<R: Repairs>(
    ctx: &Context<'_>,
    repairs: &mut R,
    mut keys: Vec<Item>,
    new_counts: &dyn Fn() -> TargetCounts,
) -> Result<(), PipelineError> {
    let limit = ctx.opts.collect_limit as usize;
    let key_names: Vec<String> = ctx.key_names().iter().map(|s| s.to_string()).collect();
    loop {
        let full_pass = keys.len() >= limit;
        let actions = keys
            .drain(..)
            .map(|k| Action::delete(None, Why::Orphan, k))
            .collect::<Vec<_>>();
        let acted = !actions.is_empty();
        repairs.apply(actions).await?;
        if !full_pass || !acted || repairs.dry_run() {
            return Ok(());
        }
        let scope = Scope::first();
        let mut t = FullTarget::new(&scope, &key_names, false, false, new_counts());
        t.orphans = Some((limit, Vec::new()));
        ctx.target_pass(None, &mut t).await?;
        keys = t.orphans.take().map(|(_, k)| k).unwrap_or_default();
    }
}
