//! Sinks: where transformed items go.
//!
//! [`batcher`] cuts writes into batches AWS accepts, [`writer`] sends them
//! with rate limits and explicit retry decisions, [`dead_letter`] records
//! every item that cannot be written, and [`table`] makes sure the target
//! exists and matches the mapping before anything is written. `preview`
//! needs no sink: it prints instead (see `pipeline::preview`).

pub mod batcher;
pub mod dead_letter;
pub mod table;
pub mod writer;
