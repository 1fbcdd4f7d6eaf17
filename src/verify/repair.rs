//! What a repair does to one key, and who does it.
//!
//! `verify --full --repair` narrows the differences to exact keys
//! ([`super::narrow`]) and, a round at a time, turns each into an
//! [`Action`]: put the item the mapping makes of the source (a missing or
//! changed key), or delete a key no source record makes (an extra item of
//! an entity the mapping owns, or, when asked, an orphan of no entity).
//! Verification only decides; a [`Repairs`] (the pipeline's, which owns
//! the sink) carries the actions out.

use serde::Serialize;

use crate::item::Item;
use crate::pipeline::PipelineError;

/// Why a key is repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Why {
    /// The source makes it; the target lacks it.
    Missing,
    /// The target holds another version of it.
    Changed,
    /// An item of an entity of the mapping that no source record makes.
    Extra,
    /// An item of no entity of the mapping (`--repair-orphans`).
    Orphan,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Missing => "missing",
            Why::Changed => "changed",
            Why::Extra => "extra",
            Why::Orphan => "orphan",
        }
    }

    /// A put of the expected item (else a delete of the key).
    pub fn puts(self) -> bool {
        matches!(self, Why::Missing | Why::Changed)
    }
}

/// One key to repair.
#[derive(Debug, Clone)]
pub struct Action {
    /// The entity (none: an orphan).
    pub entity: Option<usize>,
    pub why: Why,
    /// For a put, the whole item; for a delete, its key.
    pub item: Item,
}

impl Action {
    pub fn put(entity: usize, why: Why, item: Item) -> Action {
        Action {
            entity: Some(entity),
            why,
            item,
        }
    }

    pub fn delete(entity: Option<usize>, why: Why, key: Item) -> Action {
        Action {
            entity,
            why,
            item: key,
        }
    }
}

/// Carries out a repair's actions, a round at a time.
pub(crate) trait Repairs {
    /// Orphans are deleted too (`--repair-orphans`).
    fn orphans(&self) -> bool;
    /// Nothing is written (`--dry-run`).
    fn dry_run(&self) -> bool;
    /// One round's actions; returns once they are handed on.
    async fn apply(&mut self, actions: Vec<Action>) -> Result<(), PipelineError>;
}

/// No repair: a plain verification.
pub(crate) struct NoRepairs;

impl Repairs for NoRepairs {
    fn orphans(&self) -> bool {
        false
    }
    fn dry_run(&self) -> bool {
        true
    }
    async fn apply(&mut self, _actions: Vec<Action>) -> Result<(), PipelineError> {
        Ok(())
    }
}
