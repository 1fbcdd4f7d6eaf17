//! Sinks: where transformed items go.
//!
//! [`batcher`] cuts writes into batches AWS accepts, [`writer`] sends them
//! in key order with explicit retry decisions at the pace [`rate`]'s
//! adaptive controller sets, [`dead_letter`] records every item that is not
//! migrated, and [`table`] makes sure the target
//! exists and matches the mapping before anything is written.
//! [`import_files`] writes target items as files for ImportTable instead
//! (`migrate --to-import`), [`upload`] puts them into S3, and
//! [`import_table`] has ImportTable make the new table of them. `preview`
//! needs no sink: it prints instead (see `pipeline::preview`).

pub mod batcher;
pub mod dead_letter;
pub mod import_files;
pub mod import_table;
pub mod rate;
pub mod table;
pub mod upload;
pub mod writer;
