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
    let mapping = ctx.mapping;
    let key_names: Vec<String> = ctx.key_names().iter().map(|s| s.to_string()).collect();
    let names: Vec<&str> = key_names.iter().map(String::as_str).collect();
    let mut s = FullSource::new(&scope, &key_names, true);
    ctx.source_pass(&mut s).await?;
    let mut t = FullTarget::new(&scope, &key_names, true, false, TargetCounts::default());
    ctx.target_pass(None, &mut t).await?;
    let mut target_items: HashMap<(usize, String), Item> = t.collected;
    let mut actions = Vec::new();
    for ((e, key), sources) in &s.collisions {
        target_items.remove(&(*e, key.clone()));
        checks[*e].collisions += 1;
        checks[*e].collided_records += sources.len() as u64;
        listing.push(Mismatch {
            entity: mapping.entities[*e].name.clone(),
            key: s.collected[&(*e, key.clone())].item_key(&names),
            source_key: sources
                .iter()
                .map(key_display)
                .collect::<Vec<_>>()
                .join(" and "),
            kind: "collision".into(),
            differences: Vec::new(),
        });
    }
    let mut source_items: Vec<((usize, String), Expected)> = s
        .collected
        .into_iter()
        .filter(|(at, _)| !s.collisions.contains_key(at))
        .collect();
    source_items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut missing = Vec::new();
    for ((e, key), expected) in source_items {
        let actual = target_items.remove(&(e, key));
        let name = &mapping.entities[e].name;
        match &actual {
            None => missing.push((e, expected)),
            Some(a) if !differing_attributes(&expected.item, a).is_empty() => {
                checks[e].changed += 1;
                listing.push(sample::mismatch(name, &names, &expected, Some(a)));
                actions.push(Action::put(e, Why::Changed, expected.item));
            }
            Some(_) => {}
        }
    }
    let at = sample::Lookup {
        client: ctx.client,
        table: &mapping.table.name,
        stall: ctx.opts.scan.stall_timeout,
    };
    for (e, expected, holder) in held_elsewhere(&at, mapping, &names, missing).await? {
        let name = &mapping.entities[e].name;
        let Some(other) = holder else {
            checks[e].missing += 1;
            listing.push(sample::mismatch(name, &names, &expected, None));
            actions.push(Action::put(e, Why::Missing, expected.item));
            continue;
        };
        checks[e].collisions += 1;
        checks[e].collided_records += 1;
        let source_key = format!(
            "{} ({name}), and an item of entity {} holds the key",
            key_display(&expected.source_key),
            mapping.entities[other].name
        );
        listing.push(Mismatch {
            entity: name.clone(),
            key: expected.item_key(&names),
            source_key,
            kind: "collision".into(),
            differences: Vec::new(),
        });
    }
    let mut extras: Vec<((usize, String), Item)> = target_items.into_iter().collect();
    extras.sort_by(|a, b| a.0.cmp(&b.0));
    for ((e, _), item) in extras {
        checks[e].extra += 1;
        let key = project(&item, &names);
        listing.push(Mismatch {
            entity: mapping.entities[e].name.clone(),
            key: key_display(&key),
            source_key: "(none: no source record makes this key)".into(),
            kind: "extra".into(),
            differences: Vec::new(),
        });
        actions.push(Action::delete(Some(e), Why::Extra, key));
    }
    Ok(actions)
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
