//! The transform stage: each source record becomes its writes, a filter
//! or a dead letter.
//!
//! [`steps`] is the pure part (what one record becomes, shared with
//! `preview`); [`transform_stage`] is the task between the sources and the
//! sink: it counts every record it takes, sends writes to the sink and
//! dead letters to their file, settles each batch's share of its ticket
//! once the batch is handed on, and marks first-phase puts to a key
//! already written as collisions.

use std::sync::Arc;

use futures::StreamExt as _;
use tokio::sync::mpsc;

use crate::checkpoint::tracker::Outcome as Counted;
use crate::checkpoint::Part;
use crate::item::{item_size, key_text, project, wire_bytes, Item};
use crate::mapping::{Entity, Mapping};
use crate::report::RunStats;
use crate::seen::SeenKeys;
use crate::sinks::batcher::{Op, WriteRequest};
use crate::sinks::dead_letter::{DeadLetter, Stage};
use crate::sinks::writer::SinkMsg;
use crate::sources::{SourceBatch, SourceMsg, SourceRecord};
use crate::transform::{indexes_landed_in, target_key, transform_owned, Owned};

/// What the transform makes of one record.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send this write; `counted` as in [`WriteRequest::counted`].
    Write {
        op: Op,
        item: Item,
        counted: bool,
    },
    Filtered(String),
    Dead(Dead),
}

/// A record the transform cannot make a target item of.
#[derive(Debug, PartialEq)]
pub struct Dead {
    pub reason: String,
    /// What was to be done with `item` (for `replay`).
    pub op: Op,
    pub item: Item,
    /// The line as read, when it held no item.
    pub raw: Option<String>,
}

impl Dead {
    /// Its line in the dead-letter file: stage `read` for a line that held
    /// no item, `transform` otherwise.
    pub fn letter(self, entity: usize, source_key: Item, part: Option<Part>) -> DeadLetter {
        DeadLetter {
            entity,
            source_key,
            stage: match self.raw {
                Some(_) => Stage::Read,
                None => Stage::Transform,
            },
            op: self.op,
            reason: self.reason,
            item: self.item,
            raw: self.raw,
            counted: true,
            part,
        }
    }
}

/// The steps for one record: exactly one counted outcome, plus at most one
/// uncounted clean-up delete (an update that moved an item's target key).
pub fn steps(entity: &Entity, mapping: &Mapping, record: SourceRecord) -> Vec<Step> {
    let table = &mapping.table;
    let put_or_not = |item: Item| match transform_owned(entity, table, item) {
        Owned::Put(target) => Step::Write {
            op: Op::Put,
            item: target,
            counted: true,
        },
        Owned::Filtered(rule) => Step::Filtered(rule),
        Owned::Reject(r, item) => Step::Dead(Dead {
            reason: r.to_string(),
            op: Op::Put,
            item,
            raw: None,
        }),
    };
    match record {
        SourceRecord::Item(item) => vec![put_or_not(item)],
        SourceRecord::Bad { reason, raw } => vec![Step::Dead(Dead {
            reason,
            op: Op::Put,
            item: Item::new(),
            raw: Some(raw),
        })],
        SourceRecord::Target { delete, item } => vec![Step::Write {
            op: if delete { Op::Delete } else { Op::Put },
            item,
            counted: true,
        }],
        SourceRecord::Change {
            new: Some(new),
            old,
            ..
        } => {
            // The old item goes when the new one lands elsewhere (its key
            // moved) or not at all (now filtered or dead-lettered): the
            // target then holds what the mapping makes of the source.
            let step = put_or_not(new);
            let key_names = table.primary_key();
            let new_key = match &step {
                Step::Write { item, .. } => Some(project(item, &key_names)),
                _ => None,
            };
            let mut out = vec![step];
            if let Some(old_key) = old.and_then(|o| target_key(entity, table, &o).ok()) {
                if new_key.as_ref() != Some(&old_key) {
                    out.push(Step::Write {
                        op: Op::Delete,
                        item: old_key,
                        counted: false,
                    });
                }
            }
            out
        }
        SourceRecord::Change {
            new: None,
            old,
            keys,
        } => {
            let known = old.unwrap_or(keys);
            match target_key(entity, table, &known) {
                Ok(key) => vec![Step::Write {
                    op: Op::Delete,
                    item: key,
                    counted: true,
                }],
                Err(r) => vec![Step::Dead(Dead {
                    reason: format!("cannot work out the target key to delete: {r}"),
                    op: Op::Delete,
                    item: known,
                    raw: None,
                })],
            }
        }
    }
}

/// The transform stage: every record read is counted, then written,
/// filtered or dead-lettered. Barriers pass through to the sink. In the
/// first phase (scans and full exports, one record per source item), a put
/// to a target key an earlier record already wrote is marked as
/// overwriting it: a collision. `full_phase` is false for a run that
/// starts after the first phase (a resume, a replay).
///
/// The work of a batch (transforming, sizing, keying its writes) runs on
/// every core, [`PREPARED_AHEAD`] batches per core at a time; what is left
/// (counting, collisions, handing on) runs here, in the order the batches
/// came, so that a barrier still follows everything sent before it.
pub async fn transform_stage(
    mapping: Arc<Mapping>,
    rx: mpsc::Receiver<SourceMsg>,
    out: Outlets,
    stats: Arc<RunStats>,
    expected: u64,
    mut full_phase: bool,
) {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let prepare_mapping = mapping.clone();
    let prepared =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|msg| (msg, rx)) },
        )
        .map(move |msg| {
            let mapping = prepare_mapping.clone();
            async move {
                match msg {
                    SourceMsg::Batch(b) => {
                        match tokio::spawn(async move { prepare(&mapping, b) }).await {
                            Ok(batch) => Prepared::Batch(batch),
                            // A panic stays a panic of this stage, as it was.
                            Err(e) => std::panic::resume_unwind(e.into_panic()),
                        }
                    }
                    SourceMsg::Barrier(ack) => Prepared::Barrier(ack),
                }
            }
        })
        .buffered(cores * PREPARED_AHEAD);
    let mut prepared = std::pin::pin!(prepared);
    let mut seen = SeenKeys::new(expected);
    while let Some(msg) = prepared.next().await {
        let batch = match msg {
            Prepared::Batch(b) => b,
            Prepared::Barrier(ack) => {
                full_phase = false;
                let _ = out.sink.send(SinkMsg::Barrier(ack)).await;
                continue;
            }
        };
        let mut taken = Taken {
            index: batch.entity,
            part: batch.part,
            stats: &stats,
            seen: full_phase.then_some(&mut seen),
        };
        for record in batch.records {
            taken.one(record, &out).await;
        }
        if let Some(part) = taken.part {
            part.settle();
        }
        stats.set_overwrite_false_alarms(seen.expected_false_alarms());
    }
}

/// Batches being prepared per core, ahead of the one handed on.
const PREPARED_AHEAD: usize = 2;

/// A source message once its batch is prepared.
enum Prepared {
    Batch(ReadyBatch),
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// A source batch, each record's steps worked out.
struct ReadyBatch {
    entity: usize,
    part: Option<Part>,
    records: Vec<Ready>,
}

/// One record's legacy key and steps, its writes sized and keyed.
struct Ready {
    source_key: Item,
    steps: Vec<ReadyStep>,
}

enum ReadyStep {
    Write(WriteRequest),
    /// Left out by this rule.
    Filtered(String),
    Dead(Dead),
}

/// The pure work of a batch: what each record becomes. Runs on any core.
fn prepare(mapping: &Mapping, batch: SourceBatch) -> ReadyBatch {
    let key_names: Vec<&str> = mapping.table.primary_key();
    let Some(entity) = mapping.entities.get(batch.entity) else {
        // No such entity: nothing is made, and the ticket is dropped
        // unsettled (it holds its unit's watermark), as a lost batch does.
        return ReadyBatch {
            entity: batch.entity,
            part: None,
            records: Vec::new(),
        };
    };
    let source_key_names: Vec<&str> = entity.source_key.iter().map(String::as_str).collect();
    let records = batch
        .records
        .into_iter()
        .map(|record| Ready {
            source_key: source_key(&source_key_names, &record),
            steps: steps(entity, mapping, record)
                .into_iter()
                .map(|step| match step {
                    Step::Write { op, item, counted } => {
                        let mut req = write_request(mapping, batch.entity, op, item, &key_names);
                        req.counted = counted;
                        ReadyStep::Write(req)
                    }
                    Step::Filtered(rule) => ReadyStep::Filtered(rule),
                    Step::Dead(dead) => ReadyStep::Dead(dead),
                })
                .collect(),
        })
        .collect();
    ReadyBatch {
        entity: batch.entity,
        part: batch.part,
        records,
    }
}

/// One prepared batch in the sequencer.
struct Taken<'a> {
    index: usize,
    part: Option<Part>,
    stats: &'a RunStats,
    /// The keys written so far, in the first phase.
    seen: Option<&'a mut SeenKeys>,
}

impl Taken<'_> {
    /// Counts one record and hands on what it becomes.
    async fn one(&mut self, record: Ready, out: &Outlets) {
        let c = self.stats.entity(self.index);
        RunStats::add(&c.read, 1);
        self.count(Counted::Read);
        let Ready {
            mut source_key,
            steps,
        } = record;
        let last = steps.len().saturating_sub(1);
        for (i, step) in steps.into_iter().enumerate() {
            // The last step takes the key; any before it get a copy.
            let key = if i == last {
                std::mem::take(&mut source_key)
            } else {
                source_key.clone()
            };
            match step {
                ReadyStep::Write(mut req) => {
                    req.source_key = key;
                    let put = req.counted && req.op == Op::Put;
                    req.overwrites = put && self.seen.as_mut().is_some_and(|s| s.insert(&req.key));
                    req.part = self.part.clone();
                    out.write(req).await;
                }
                ReadyStep::Filtered(rule) => {
                    self.stats.count_filtered(self.index, &rule);
                    if let Some(p) = &self.part {
                        p.count_filtered(&rule);
                    }
                }
                ReadyStep::Dead(dead) => {
                    let dl = dead.letter(self.index, key, self.part.clone());
                    let _ = out.dead.send(dl).await;
                }
            }
        }
    }

    fn count(&self, o: Counted) {
        if let Some(p) = &self.part {
            p.count(o);
        }
    }
}

/// The legacy key of a record (`names` are the entity's key attributes),
/// for dead letters and collision listings.
pub fn source_key(names: &[&str], record: &SourceRecord) -> Item {
    match record {
        SourceRecord::Item(i) => project(i, names),
        SourceRecord::Change { keys, .. } => keys.clone(),
        SourceRecord::Bad { .. } | SourceRecord::Target { .. } => Item::new(),
    }
}

/// Where the transform sends what it makes.
pub struct Outlets {
    pub sink: mpsc::Sender<SinkMsg>,
    pub dead: mpsc::Sender<DeadLetter>,
}

impl Outlets {
    /// Sends a write; if the sink is gone (it failed), the item is recorded
    /// as not written instead.
    async fn write(&self, req: WriteRequest) {
        let Err(back) = self.sink.send(SinkMsg::Write(req)).await else {
            return;
        };
        if let SinkMsg::Write(r) = back.0 {
            let dl = DeadLetter {
                entity: r.entity,
                source_key: r.source_key,
                stage: Stage::Unwritten,
                op: r.op,
                reason: "the writer stopped before this item".to_string(),
                item: r.item,
                raw: None,
                counted: r.counted,
                part: r.part,
            };
            let _ = self.dead.send(dl).await;
        }
    }
}

/// A put or delete of `item` with its size, units and key worked out.
fn write_request(
    mapping: &Mapping,
    entity: usize,
    op: Op,
    item: Item,
    key_names: &[&str],
) -> WriteRequest {
    let landed = if op == Op::Put {
        indexes_landed_in(&item, &mapping.table)
    } else {
        mapping.table.indexes.len()
    };
    WriteRequest {
        entity,
        key: key_text(&item, key_names),
        wire_bytes: wire_bytes(&item),
        write_units: crate::item::write_units(item_size(&item), landed),
        source_key: Item::new(),
        op,
        counted: true,
        overwrites: false,
        item,
        part: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn shipped() -> Mapping {
        Mapping::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/ai-girlfriend.toml"),
        )
        .unwrap()
    }
    fn session(user: &str, started: Option<&str>) -> Item {
        let mut i: Item = [
            ("sessionId".to_string(), AttributeValue::S("s1".into())),
            ("userId".to_string(), AttributeValue::S(user.into())),
        ]
        .into();
        if let Some(t) = started {
            i.insert("startedAt".into(), AttributeValue::S(t.into()));
        }
        i
    }
    fn key(user: &str) -> Item {
        [
            ("pk".to_string(), AttributeValue::S(format!("USER#{user}"))),
            ("sk".to_string(), AttributeValue::S("SESSION#s1".into())),
        ]
        .into()
    }
    fn kinds(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Write { op, counted, .. } => {
                    format!("{op:?}{}", if *counted { "" } else { " (clean-up)" })
                }
                Step::Filtered(_) => "Filtered".into(),
                Step::Dead(_) => "Dead".into(),
            })
            .collect()
    }

    #[test]
    fn incremental_changes_become_the_right_writes() {
        let m = shipped();
        let e = m.entities.iter().find(|e| e.name == "session").unwrap();
        let t = "2024-01-15T14:00:00Z";
        let keys: Item = [("sessionId".to_string(), AttributeValue::S("s1".into()))].into();
        let change = |new: Option<Item>, old: Option<Item>| SourceRecord::Change {
            keys: keys.clone(),
            new,
            old,
        };

        // An update in place: one put.
        let s = steps(
            e,
            &m,
            change(Some(session("u1", Some(t))), Some(session("u1", Some(t)))),
        );
        assert_eq!(kinds(&s), ["Put"]);
        // An update that moves the session to another user: put, and the old key goes.
        let s = steps(
            e,
            &m,
            change(Some(session("u2", Some(t))), Some(session("u1", Some(t)))),
        );
        assert_eq!(kinds(&s), ["Put", "Delete (clean-up)"]);
        assert!(matches!(&s[1], Step::Write { item, .. } if *item == key("u1")));
        // An update the mapping can no longer write: dead-lettered, and the old item goes.
        let s = steps(
            e,
            &m,
            change(Some(session("u1", None)), Some(session("u1", Some(t)))),
        );
        assert_eq!(kinds(&s), ["Dead", "Delete (clean-up)"]);
        // A delete with its old image: one counted delete of the mapped key.
        let s = steps(e, &m, change(None, Some(session("u1", Some(t)))));
        assert_eq!(kinds(&s), ["Delete"]);
        assert!(matches!(&s[0], Step::Write { item, .. } if *item == key("u1")));
        // A delete with only the legacy key cannot find a session's target key.
        let s = steps(e, &m, change(None, None));
        assert_eq!(kinds(&s), ["Dead"]);
        // An insert: one put, nothing to clean up.
        let s = steps(e, &m, change(Some(session("u1", Some(t))), None));
        assert_eq!(kinds(&s), ["Put"]);
    }
}
