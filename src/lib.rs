//! singletable: move a one-table-per-entity DynamoDB layout into a
//! single-table design, and prove it.
//!
//! The rooms, in the order data flows: [`sources`] read legacy items
//! (by Scan, or from the [`export`] files of DynamoDB's Export to S3),
//! [`mapping`] and [`transform`] turn them into target items ([`plan`]
//! forecasts what they would become), [`sinks`]
//! write them (or dead-letter them), [`verify`] proves the result and
//! [`report`] tells people; [`checkpoint`] keeps the state a killed run
//! resumes from. [`pipeline`] wires one run; [`app`] and [`cli`]
//! are the command line; [`demo`] and [`embedded`] make the built-in demo.

pub mod app;
pub mod aws;
pub mod checkpoint;
pub mod cli;
pub mod demo;
pub mod embedded;
pub mod export;
pub mod item;
pub mod mapping;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod rate;
pub mod report;
pub mod retry;
pub mod seen;
pub mod sinks;
pub mod sources;
pub mod transform;
pub mod verify;
