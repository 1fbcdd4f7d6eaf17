//! Access patterns: the application's own queries, declared in the mapping.
//!
//! An `[[access_pattern]]` names a query the application runs against the
//! target: the table or an index, a partition key template, an optional
//! sort-key condition, an order, and the entity it returns. Templates read
//! the entity's *source* items (the sample of values is taken from the
//! legacy tables). This module owns their file format and compiled form;
//! running them is `verify::patterns`.

use serde::Deserialize;

use super::{Mapping, MappingError, Template};

/// One declared query.
#[derive(Debug, Clone)]
pub struct AccessPattern {
    pub name: String,
    /// The entity the query returns (index into the mapping's entities).
    pub entity: usize,
    /// The index queried; none: the table.
    pub index: Option<String>,
    pub partition: Template,
    pub sort: Option<SortCondition>,
    /// `ScanIndexForward = false`: the highest sort key first.
    pub descending: bool,
    /// Where it was written.
    pub file: std::path::PathBuf,
    pub line: usize,
}

/// A sort-key condition, its values rendered from a source item.
#[derive(Debug, Clone)]
pub enum SortCondition {
    Equals(Template),
    BeginsWith(Template),
    Between(Template, Template),
}

/// The file form, before the entity and index are resolved.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatternConfig {
    name: String,
    entity: String,
    index: Option<String>,
    partition: String,
    sort: Option<SortConfig>,
    order: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SortConfig {
    equals: Option<String>,
    begins_with: Option<String>,
    between: Option<[String; 2]>,
}

/// A pattern as parsed from one file; its entity is resolved by name once
/// every file is read.
#[derive(Debug, Clone)]
pub(super) struct Parsed {
    pattern: AccessPattern,
    entity: String,
}

pub(super) fn parse(
    c: PatternConfig,
    file: &std::path::Path,
    line: usize,
) -> Result<Parsed, MappingError> {
    let err = |message: String| MappingError::At {
        path: file.into(),
        line,
        message: format!("access pattern {:?}: {message}", c.name),
    };
    let template = |t: &str| Template::parse(t).map_err(|e| err(e.to_string()));
    let sort = match &c.sort {
        None => None,
        Some(s) => Some(match (&s.equals, &s.begins_with, &s.between) {
            (Some(e), None, None) => SortCondition::Equals(template(e)?),
            (None, Some(b), None) => SortCondition::BeginsWith(template(b)?),
            (None, None, Some([lo, hi])) => SortCondition::Between(template(lo)?, template(hi)?),
            _ => {
                return Err(err(
                    "sort: give exactly one of equals = \"...\", begins_with = \"...\" or between = [\"...\", \"...\"]".into(),
                ))
            }
        }),
    };
    let descending = match c.order.as_deref() {
        None | Some("ascending") => false,
        Some("descending") => true,
        Some(other) => {
            return Err(err(format!(
                "order must be ascending or descending, not {other:?}"
            )))
        }
    };
    Ok(Parsed {
        pattern: AccessPattern {
            name: c.name.clone(),
            entity: usize::MAX,
            index: c.index.clone(),
            partition: template(&c.partition)?,
            sort,
            descending,
            file: file.into(),
            line,
        },
        entity: c.entity,
    })
}

/// Resolves each pattern's entity and checks its index exists, has a sort
/// key when the pattern needs one, and that names are unique.
pub(super) fn resolve(
    mapping: &Mapping,
    parsed: Vec<Parsed>,
) -> Result<Vec<AccessPattern>, MappingError> {
    let mut out: Vec<AccessPattern> = Vec::new();
    for Parsed {
        mut pattern,
        entity,
    } in parsed
    {
        let err = |message: String| MappingError::At {
            path: pattern.file.clone(),
            line: pattern.line,
            message: format!("access pattern {:?}: {message}", pattern.name),
        };
        if out.iter().any(|p| p.name == pattern.name) {
            return Err(err("declared twice".into()));
        }
        pattern.entity = mapping
            .entities
            .iter()
            .position(|e| e.name == entity)
            .ok_or_else(|| err(format!("no entity is called {entity:?}")))?;
        let sort_key = match &pattern.index {
            None => mapping.table.sort_key.clone(),
            Some(ix) => {
                let spec = mapping
                    .table
                    .indexes
                    .iter()
                    .find(|i| &i.name == ix)
                    .ok_or_else(|| err(format!("the table has no index {ix:?}")))?;
                spec.sort_key.clone()
            }
        };
        if pattern.sort.is_some() && sort_key.is_none() {
            return Err(err(
                "a sort condition on a table or index without a sort key".into(),
            ));
        }
        out.push(pattern);
    }
    Ok(out)
}

impl AccessPattern {
    /// The (partition, sort) key attributes the query reads.
    pub fn keys<'a>(&self, mapping: &'a Mapping) -> (&'a str, Option<&'a str>) {
        let t = &mapping.table;
        match self
            .index
            .as_ref()
            .and_then(|n| t.indexes.iter().find(|i| &i.name == n))
        {
            Some(ix) => (&ix.partition_key, ix.sort_key.as_deref()),
            None => (&t.partition_key, t.sort_key.as_deref()),
        }
    }

    /// Where it is queried, for messages: `gsi2` or `the table`.
    pub fn target(&self) -> String {
        self.index
            .as_ref()
            .map_or("the table".to_string(), |i| format!("index {i}"))
    }
}
