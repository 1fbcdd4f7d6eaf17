//! Cutting a stream of writes into BatchWriteItem calls.
//!
//! Pure: the [`Batcher`] takes [`WriteRequest`]s one at a time and hands
//! back full batches that real DynamoDB accepts: at most [`MAX_ITEMS`]
//! requests, at most [`MAX_BYTES`] of request body, and never two requests
//! for the same primary key (AWS rejects the whole call for any of these;
//! emulators such as moto accept them). A request for a key already in the
//! open batch closes that batch first; the writer then holds the next batch
//! until the first has landed, as it does for any key still in flight, so
//! two writes of one key happen in the order they were made.

use std::collections::HashSet;

use crate::checkpoint::Part;
use crate::item::Item;

/// DynamoDB's limit on requests in one BatchWriteItem call.
pub const MAX_ITEMS: usize = 25;
/// DynamoDB's limit on one BatchWriteItem request body.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// One put or delete, with what the sink needs to account for it.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRequest {
    /// Index of the entity (mapping order) it came from.
    pub entity: usize,
    /// The legacy key it came from, for dead letters.
    pub source_key: Item,
    /// Put this whole item, or delete the item with this key.
    pub op: Op,
    /// False for a delete that only cleans up after a key change (an
    /// incremental update that moved the item): it is not one of the
    /// records the reconciliation counts.
    pub counted: bool,
    /// A put to a key an earlier record of this run already wrote (a
    /// collision, as far as the filter of `seen` can tell).
    pub overwrites: bool,
    /// The target item (a put) or its primary key (a delete).
    pub item: Item,
    /// The target's primary key, as text, for duplicate detection.
    pub key: String,
    /// Its size on the wire (DynamoDB JSON), for the 16 MB limit.
    pub wire_bytes: usize,
    /// Write units it costs, counting the indexes it lands in.
    pub write_units: u64,
    /// Its share of the source batch's ticket: settled once it is written.
    pub part: Option<Part>,
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Delete,
}

/// A closed batch, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub requests: Vec<WriteRequest>,
}

/// Accumulates requests into valid batches.
#[derive(Debug, Default)]
pub struct Batcher {
    open: Vec<WriteRequest>,
    bytes: usize,
    keys: HashSet<String>,
    /// Requests that named a key already in the open batch.
    pub repeated_keys: u64,
}

/// Fixed bytes a request adds around each item (`{"PutRequest":{"Item":...}},`).
const PER_REQUEST_OVERHEAD: usize = 32;
/// Fixed bytes of the call around its requests (table name, braces).
const PER_CALL_OVERHEAD: usize = 1024;

impl Batcher {
    pub fn new() -> Batcher {
        Batcher::default()
    }

    /// Adds a request; returns the batch it closed, if adding it closed one.
    pub fn push(&mut self, req: WriteRequest) -> Option<Batch> {
        let cost = req.wire_bytes + PER_REQUEST_OVERHEAD;
        let repeated = self.keys.contains(&req.key);
        if repeated {
            self.repeated_keys += 1;
        }
        let full =
            self.open.len() >= MAX_ITEMS || self.bytes + cost + PER_CALL_OVERHEAD > MAX_BYTES;
        let closed = if (full || repeated) && !self.open.is_empty() {
            self.take()
        } else {
            None
        };
        self.bytes += cost;
        self.keys.insert(req.key.clone());
        self.open.push(req);
        closed
    }

    /// Whether a batch is open (requests wait in it).
    pub fn is_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Hands back whatever is open (the last, partial batch).
    pub fn finish(&mut self) -> Option<Batch> {
        self.take()
    }

    fn take(&mut self) -> Option<Batch> {
        if self.open.is_empty() {
            return None;
        }
        self.bytes = 0;
        self.keys.clear();
        Some(Batch {
            requests: std::mem::take(&mut self.open),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use proptest::prelude::*;

    fn req(key: &str, bytes: usize) -> WriteRequest {
        WriteRequest {
            entity: 0,
            source_key: Item::new(),
            op: Op::Put,
            counted: true,
            overwrites: false,
            item: [("pk".to_string(), AttributeValue::S(key.into()))].into(),
            key: key.to_string(),
            wire_bytes: bytes,
            write_units: 1,
            part: None,
        }
    }

    fn drain_batches(reqs: Vec<WriteRequest>) -> Vec<Batch> {
        let mut b = Batcher::new();
        let mut out: Vec<Batch> = reqs.into_iter().filter_map(|r| b.push(r)).collect();
        out.extend(b.finish());
        out
    }

    fn drain(reqs: Vec<WriteRequest>) -> Vec<Vec<WriteRequest>> {
        drain_batches(reqs)
            .into_iter()
            .map(|b| b.requests)
            .collect()
    }

    #[test]
    fn a_26th_item_starts_a_new_batch() {
        let batches = drain((0..26).map(|i| req(&i.to_string(), 10)).collect());
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![25, 1]
        );
    }

    #[test]
    fn a_duplicate_key_starts_a_new_batch() {
        let batches = drain_batches(vec![req("a", 1), req("b", 1), req("a", 2), req("c", 1)]);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].requests.len(), 2);
        assert_eq!(
            batches[1].requests[0].wire_bytes, 2,
            "the repeat comes second"
        );
    }

    #[test]
    fn bytes_close_a_batch() {
        let batches = drain(
            (0..5)
                .map(|i| req(&i.to_string(), 6 * 1024 * 1024))
                .collect(),
        );
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
    }

    proptest! {
        /// Every batch obeys AWS's limits, and nothing is lost or reordered.
        #[test]
        fn batches_obey_the_limits(keys in proptest::collection::vec((0u8..40, 1usize..3_000_000), 0..200)) {
            let reqs: Vec<WriteRequest> = keys.iter().map(|(k, b)| req(&k.to_string(), *b)).collect();
            let batches = drain(reqs.clone());
            for batch in &batches {
                prop_assert!(!batch.is_empty());
                prop_assert!(batch.len() <= MAX_ITEMS);
                let bytes: usize = batch.iter().map(|r| r.wire_bytes + PER_REQUEST_OVERHEAD).sum::<usize>() + PER_CALL_OVERHEAD;
                prop_assert!(bytes <= MAX_BYTES || batch.len() == 1);
                let distinct: HashSet<&String> = batch.iter().map(|r| &r.key).collect();
                prop_assert_eq!(distinct.len(), batch.len());
            }
            let flat: Vec<WriteRequest> = batches.into_iter().flatten().collect();
            prop_assert_eq!(flat, reqs);
        }
    }
}
