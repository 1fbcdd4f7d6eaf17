//! Acknowledgements: which records are done, as low watermarks per unit.
//!
//! A unit is one Scan segment or one export file. Its reader issues a
//! [`Part`] (a ticket) for every batch it sends, in order, each carrying
//! where the unit stands after that batch (a `LastEvaluatedKey`, a record
//! count). The part travels with the batch; the transform splits it into
//! one part per write and per dead letter, and each holder settles its
//! part when its item is done: written (after the call succeeded),
//! filtered, or on disk in the dead-letter file. When every part of a
//! batch has settled, the batch is acknowledged; a unit's watermark moves
//! over acknowledged batches in order only, so it never passes a batch
//! still in flight. A part that is dropped unsettled (an item the run
//! stopped before writing, a task that failed) holds its unit's watermark
//! where it is: resuming redoes that batch, never skips it.
//!
//! Each batch also tallies what became of its records; the tallies of
//! acknowledged batches are added to the durable counters, so the counters
//! saved with the watermarks describe exactly the records below them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::item::{item_to_json, Item};

/// The counters a resume carries over, per entity: those the report
/// reconciles (exact, from acknowledged batches) and the rest (as counted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub produced: u64,
    pub read: u64,
    pub written: u64,
    pub overwritten: u64,
    pub filtered: u64,
    pub dead_lettered: u64,
    pub not_written: u64,
    pub deleted: u64,
    pub stale_deleted: u64,
    pub stale_dead_lettered: u64,
    pub retries: u64,
    pub throttles: u64,
    pub consumed_milli_wcu: u64,
    pub estimated_wcu: u64,
    pub repeated_keys: u64,
    /// "stage: reason" -> items not migrated for it.
    pub reasons: BTreeMap<String, u64>,
    /// The mapping rule -> items it filtered out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filtered_by: BTreeMap<String, u64>,
}

/// What became of one batch's records, counted as its parts settle.
#[derive(Debug, Default)]
struct Tally {
    read: AtomicU64,
    written: AtomicU64,
    overwritten: AtomicU64,
    filtered: AtomicU64,
    dead_lettered: AtomicU64,
    deleted: AtomicU64,
    stale_deleted: AtomicU64,
    stale_dead_lettered: AtomicU64,
    reasons: Mutex<Vec<String>>,
    /// The rule of each filtered record.
    rules: Mutex<Vec<String>>,
}

/// One of the counters a part can bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Read,
    Written,
    Overwritten,
    Filtered,
    Deleted,
    StaleDeleted,
}

impl Tally {
    fn counter(&self, o: Outcome) -> &AtomicU64 {
        match o {
            Outcome::Read => &self.read,
            Outcome::Written => &self.written,
            Outcome::Overwritten => &self.overwritten,
            Outcome::Filtered => &self.filtered,
            Outcome::Deleted => &self.deleted,
            Outcome::StaleDeleted => &self.stale_deleted,
        }
    }

    fn add_to(&self, c: &mut Counts, produced: u64) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        c.produced += produced;
        c.read += get(&self.read);
        c.written += get(&self.written);
        c.overwritten += get(&self.overwritten);
        c.filtered += get(&self.filtered);
        c.dead_lettered += get(&self.dead_lettered);
        c.deleted += get(&self.deleted);
        c.stale_deleted += get(&self.stale_deleted);
        c.stale_dead_lettered += get(&self.stale_dead_lettered);
        let reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        for r in reasons.iter() {
            *c.reasons.entry(r.clone()).or_default() += 1;
        }
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        for r in rules.iter() {
            *c.filtered_by.entry(r.clone()).or_default() += 1;
        }
    }
}

/// Where a unit stands, as saved in the state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitState {
    /// Index of the entity (mapping order).
    pub entity: usize,
    /// 0: scans and full exports; N: the Nth incremental round.
    pub phase: usize,
    /// "scan segment 3 of 8", or the export file's location.
    pub name: String,
    /// Scan segment index and count (none for an export file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<(u32, u32)>,
    /// Read to the end, and every record of it acknowledged.
    pub done: bool,
    /// Records acknowledged: an export file restarts after this many.
    pub records: u64,
    /// A Scan segment restarts from this key (DynamoDB JSON); none: from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
    /// Batches acknowledged: dead letters tagged with a lower number are kept
    /// on resume, the others are redone.
    pub batches: u64,
    /// A stream shard restarts after this sequence number; none: from where
    /// the follow starts (its `--from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// A stream shard's parent: the shard is read once its parent is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// When the last acknowledged record of a stream shard was made
    /// (its ApproximateCreationDateTime, epoch milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_ms: Option<i64>,
}

/// What one batch moves its unit on to.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Records in the batch.
    pub records: u64,
    /// For a Scan page: the `LastEvaluatedKey` after it.
    pub after: Option<Item>,
    /// The unit ends with this batch.
    pub end: bool,
    /// For a stream shard: the last record's sequence number and when it
    /// was made (epoch milliseconds).
    pub sequence: Option<(String, i64)>,
}

struct Pending {
    step: Step,
    settled: Option<Arc<Ticket>>,
}

struct Unit {
    state: UnitState,
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
}

struct Inner {
    units: Vec<Unit>,
    /// Per entity: the saved counters plus every acknowledged batch's tally.
    durable: Vec<Counts>,
}

/// The acknowledgements of one run, shared by every stage.
pub struct Tracker {
    inner: Mutex<Inner>,
    /// Bumped whenever a watermark moves (for "last advanced").
    advanced: AtomicU64,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracker")
    }
}

/// One batch's ticket: settled when its last part is.
struct Ticket {
    tracker: Arc<Tracker>,
    unit: usize,
    seq: u64,
    entity: usize,
    parts: AtomicUsize,
    produced: u64,
    tally: Tally,
}

/// A share of a batch that must be settled before the batch is
/// acknowledged. Cloning makes another share; dropping one unsettled
/// keeps the batch (and its unit's watermark) from ever being acknowledged.
pub struct Part(Arc<Ticket>);

impl Clone for Part {
    fn clone(&self) -> Part {
        self.0.parts.fetch_add(1, Ordering::AcqRel);
        Part(self.0.clone())
    }
}

impl PartialEq for Part {
    fn eq(&self, other: &Part) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Part(unit {}, batch {})", self.0.unit, self.0.seq)
    }
}

impl Part {
    /// Counts one record's outcome in the batch's tally.
    pub fn count(&self, o: Outcome) {
        self.0.tally.counter(o).fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one record a mapping rule filtered out, with its rule.
    pub fn count_filtered(&self, rule: &str) {
        let t = &self.0.tally;
        t.filtered.fetch_add(1, Ordering::Relaxed);
        t.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rule.to_string());
    }

    /// Counts one dead letter (on disk) with its reason key.
    pub fn count_dead(&self, counted: bool, reason_key: String) {
        let t = &self.0.tally;
        let c = if counted {
            &t.dead_lettered
        } else {
            &t.stale_dead_lettered
        };
        c.fetch_add(1, Ordering::Relaxed);
        t.reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(reason_key);
    }

    /// (unit, batch) for tagging dead letters.
    pub fn tag(&self) -> (usize, u64) {
        (self.0.unit, self.0.seq)
    }

    /// This share is done.
    pub fn settle(self) {
        if self.0.parts.fetch_sub(1, Ordering::AcqRel) == 1 {
            let ticket = self.0.clone();
            ticket.tracker.clone().acknowledge(ticket);
        }
    }
}

impl Tracker {
    /// A tracker over `units`, with the counters saved so far.
    pub fn new(units: Vec<UnitState>, durable: Vec<Counts>) -> Arc<Tracker> {
        let units = units
            .into_iter()
            .map(|state| Unit {
                next_seq: state.batches,
                state,
                pending: BTreeMap::new(),
            })
            .collect();
        Arc::new(Tracker {
            inner: Mutex::new(Inner { units, durable }),
            advanced: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ticket for the next batch of `unit`: its first part.
    pub fn issue(self: &Arc<Tracker>, unit: usize, step: Step) -> Part {
        let mut inner = self.lock();
        let Some(u) = inner.units.get_mut(unit) else {
            // No such unit: a part that can never settle anything.
            return self.orphan(unit, step.records);
        };
        let seq = u.next_seq;
        u.next_seq += 1;
        let (entity, produced) = (u.state.entity, step.records);
        u.pending.insert(
            seq,
            Pending {
                step,
                settled: None,
            },
        );
        Part(Arc::new(Ticket {
            tracker: self.clone(),
            unit,
            seq,
            entity,
            parts: AtomicUsize::new(1),
            produced,
            tally: Tally::default(),
        }))
    }

    fn orphan(self: &Arc<Tracker>, unit: usize, produced: u64) -> Part {
        Part(Arc::new(Ticket {
            tracker: self.clone(),
            unit,
            seq: u64::MAX,
            entity: 0,
            parts: AtomicUsize::new(1),
            produced,
            tally: Tally::default(),
        }))
    }

    /// Adds a unit (a stream shard found while the run goes); its index.
    pub fn add_unit(&self, state: UnitState) -> usize {
        let mut inner = self.lock();
        inner.units.push(Unit {
            next_seq: state.batches,
            state,
            pending: BTreeMap::new(),
        });
        inner.units.len() - 1
    }

    /// Records issued but not yet acknowledged, per unit.
    pub fn in_flight(&self) -> Vec<u64> {
        let inner = self.lock();
        let pending = |u: &Unit| u.pending.values().map(|p| p.step.records).sum();
        inner.units.iter().map(pending).collect()
    }

    /// Marks `unit` read to the end (after its last batch).
    pub fn finish(self: &Arc<Tracker>, unit: usize) {
        let end = Step {
            end: true,
            ..Step::default()
        };
        self.issue(unit, end).settle();
    }

    /// A batch is done: move its unit's watermark over every batch that is.
    fn acknowledge(&self, ticket: Arc<Ticket>) {
        let mut inner = self.lock();
        let Inner { units, durable } = &mut *inner;
        let Some(u) = units.get_mut(ticket.unit) else {
            return;
        };
        if let Some(p) = u.pending.get_mut(&ticket.seq) {
            p.settled = Some(ticket);
        }
        let mut moved = false;
        while let Some(entry) = u.pending.first_entry() {
            if entry.get().settled.is_none() {
                break;
            }
            let Pending { step, settled } = entry.remove();
            let Some(t) = settled else { break };
            if let Some(c) = durable.get_mut(t.entity) {
                t.tally.add_to(c, t.produced);
            }
            let s = &mut u.state;
            s.records += step.records;
            s.batches = t.seq + 1;
            if let Some(after) = &step.after {
                s.after = Some(item_to_json(after));
            }
            if let Some((seq, made)) = &step.sequence {
                s.sequence = Some(seq.clone());
                s.made_ms = Some(*made);
            }
            s.done |= step.end;
            moved = true;
        }
        if moved {
            self.advanced.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The units and the durable counters as they stand.
    pub fn snapshot(&self) -> (Vec<UnitState>, Vec<Counts>) {
        let inner = self.lock();
        let units = inner.units.iter().map(|u| u.state.clone()).collect();
        (units, inner.durable.clone())
    }

    /// How many times a watermark has moved.
    pub fn advances(&self) -> u64 {
        self.advanced.load(Ordering::Relaxed)
    }

    /// How many units are not done yet.
    pub fn open_units(&self) -> usize {
        self.lock().units.iter().filter(|u| !u.state.done).count()
    }
}

/// A reader's handle on its unit: issues the tickets of its batches.
#[derive(Clone)]
pub struct Cursor {
    pub tracker: Arc<Tracker>,
    pub unit: usize,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cursor(unit {})", self.unit)
    }
}

impl Cursor {
    /// The ticket of the unit's next batch.
    pub fn issue(&self, step: Step) -> Part {
        self.tracker.issue(self.unit, step)
    }

    /// The unit is read to the end.
    pub fn finish(&self) {
        self.tracker.finish(self.unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn tracker(units: usize) -> Arc<Tracker> {
        let states = (0..units)
            .map(|i| UnitState {
                entity: 0,
                name: format!("u{i}"),
                ..UnitState::default()
            })
            .collect();
        Tracker::new(states, vec![Counts::default()])
    }
    fn step(records: u64, after: &str) -> Step {
        let key: Item = [("id".to_string(), AttributeValue::S(after.into()))].into();
        Step {
            records,
            after: Some(key),
            ..Step::default()
        }
    }

    #[test]
    fn the_watermark_never_passes_a_batch_in_flight() {
        let t = tracker(1);
        let first = t.issue(0, step(10, "a"));
        let second = t.issue(0, step(10, "b"));
        let writes: Vec<Part> = (0..3).map(|_| second.clone()).collect();
        second.settle();
        for w in writes {
            w.count(Outcome::Written);
            w.settle();
        }
        // The second batch is done, the first is not: nothing moves.
        let (units, counts) = t.snapshot();
        assert_eq!((units[0].records, units[0].batches), (0, 0));
        assert_eq!(counts[0].written, 0);
        first.count(Outcome::Filtered);
        first.settle();
        let (units, counts) = t.snapshot();
        assert_eq!((units[0].records, units[0].batches), (20, 2));
        assert_eq!(units[0].after, Some(serde_json::json!({"id": {"S": "b"}})));
        assert_eq!((counts[0].written, counts[0].filtered), (3, 1));
        assert_eq!(counts[0].produced, 20);
        assert!(!units[0].done);
        t.finish(0);
        assert!(t.snapshot().0[0].done);
    }

    #[test]
    fn a_part_dropped_unsettled_holds_the_watermark_for_good() {
        let t = tracker(1);
        let first = t.issue(0, step(5, "a"));
        let lost = first.clone();
        first.settle();
        drop(lost);
        t.issue(0, step(5, "b")).settle();
        let (units, counts) = t.snapshot();
        assert_eq!((units[0].records, units[0].batches), (0, 0));
        assert_eq!(counts[0].produced, 0);
    }

    #[test]
    fn numbering_continues_from_the_saved_watermark() {
        let state = UnitState {
            records: 40,
            batches: 4,
            ..UnitState::default()
        };
        let t = Tracker::new(vec![state], vec![Counts::default()]);
        let p = t.issue(0, step(10, "e"));
        assert_eq!(p.tag(), (0, 4));
        p.settle();
        assert_eq!(t.snapshot().0[0].records, 50);
    }

    #[test]
    fn filtered_records_carry_their_rules_into_the_counters() {
        let t = Tracker::new(vec![UnitState::default()], vec![Counts::default()]);
        let p = t.issue(0, step(3, "k"));
        let (a, b) = (p.clone(), p.clone());
        a.count_filtered("only when type = \"ORDER\"");
        a.settle();
        b.count_filtered("only when type = \"ORDER\"");
        b.settle();
        p.count_filtered("skip when deleted = \"true\"");
        p.settle();
        let (_, counts) = t.snapshot();
        assert_eq!(counts[0].filtered, 3);
        assert_eq!(counts[0].filtered_by["only when type = \"ORDER\""], 2);
        assert_eq!(counts[0].filtered_by["skip when deleted = \"true\""], 1);
    }

    #[test]
    fn dead_letters_carry_their_reasons_into_the_counters() {
        let t = tracker(2);
        let p = t.issue(1, step(2, "a"));
        p.clone().count_dead_and_settle("transform: bad".into());
        p.count(Outcome::Read);
        p.settle();
        let (_, counts) = t.snapshot();
        assert_eq!(counts[0].dead_lettered, 1);
        assert_eq!(counts[0].reasons.get("transform: bad"), Some(&1));
    }

    impl Part {
        fn count_dead_and_settle(self, reason: String) {
            self.count_dead(true, reason);
            self.settle();
        }
    }
}
