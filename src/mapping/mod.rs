//! Mappings: the declarative files in `mappings/` and their compiled form.
//!
//! This module owns reading a mapping (one TOML file, or a folder of them),
//! checking it, and compiling it into a [`Mapping`]: the target table's spec
//! and one [`Entity`] per legacy table, with every template parsed. Every
//! error names the file, the line and the field. It does no AWS I/O; applying
//! an entity to an item is `transform`'s job.

pub mod data_check;
pub mod iam;
pub mod patterns;
pub mod table_code;
pub mod template;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use md5::Digest as _;

use serde::Deserialize;
use toml::Spanned;

pub use template::Template;

/// Why a mapping could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{path}: cannot read: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// The compiled mapping: what the target looks like and how each legacy
/// table's items become target items.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub table: TableSpec,
    pub entities: Vec<Entity>,
    /// The application's queries (`[[access_pattern]]`), for `verify --access-patterns`.
    pub patterns: Vec<patterns::AccessPattern>,
    /// The file or folder it was loaded from.
    pub origin: PathBuf,
    /// MD5 of its text (of a folder: each file's name and text, in name
    /// order), as loaded: what a resumed run compares.
    pub text_md5: String,
}

/// The shipped mapping's text, built into the binary.
pub const SHIPPED: &str = include_str!("../../mappings/ai-girlfriend.toml");
/// The entity-type attribute of a mapping whose entities give types but
/// whose table names none.
pub const DEFAULT_TYPE_ATTRIBUTE: &str = "entityType";
/// What the built-in mapping is called in messages and reports.
pub const SHIPPED_NAME: &str = "mappings/ai-girlfriend.toml (built in)";

/// The target table's design.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub name: String,
    pub partition_key: String,
    pub sort_key: Option<String>,
    pub indexes: Vec<IndexSpec>,
    pub billing_mode: String,
    pub ttl_attribute: Option<String>,
    /// The attribute that names an item's entity (`entityType`); none: no
    /// such attribute is written, and `identify` rules tell entities apart.
    pub entity_type_attribute: Option<String>,
    /// Point-in-time recovery on the table (`singletable table` prints it).
    pub point_in_time_recovery: bool,
    /// The type of each key attribute declared other than S.
    pub key_types: BTreeMap<String, KeyType>,
}

/// The type of a key attribute: what the table declares and the
/// transform writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    #[default]
    S,
    N,
    B,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::S => "S",
            KeyType::N => "N",
            KeyType::B => "B",
        }
    }

    /// A rendered template as a value of this type (a number's text is
    /// trimmed; it is not checked here).
    pub fn value(self, text: String) -> aws_sdk_dynamodb::types::AttributeValue {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        match self {
            KeyType::S => A::S(text),
            KeyType::N => A::N(text.trim().to_string()),
            KeyType::B => A::B(aws_sdk_dynamodb::primitives::Blob::new(text)),
        }
    }

    fn parse(text: &str) -> Option<KeyType> {
        match text {
            "S" => Some(KeyType::S),
            "N" => Some(KeyType::N),
            "B" => Some(KeyType::B),
            _ => None,
        }
    }
}

/// One global secondary index of the target.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    pub name: String,
    pub partition_key: String,
    pub sort_key: Option<String>,
    pub projection: String,
}

impl TableSpec {
    /// Every key attribute of the table and its indexes, with its limit in bytes.
    pub fn key_attributes(&self) -> impl Iterator<Item = (&str, usize)> {
        use crate::item::{MAX_PARTITION_KEY_BYTES as P, MAX_SORT_KEY_BYTES as S};
        fn pair<'a>(pk: &'a str, sk: Option<&'a str>) -> impl Iterator<Item = (&'a str, usize)> {
            std::iter::once((pk, P)).chain(sk.map(|k| (k, S)))
        }
        pair(&self.partition_key, self.sort_key.as_deref()).chain(
            self.indexes
                .iter()
                .flat_map(|ix| pair(&ix.partition_key, ix.sort_key.as_deref())),
        )
    }

    /// Whether `name` is one of the primary key's attributes.
    pub fn is_primary_key(&self, name: &str) -> bool {
        name == self.partition_key || self.sort_key.as_deref() == Some(name)
    }

    /// The declared type of a key attribute (S unless the mapping says).
    pub fn key_type(&self, name: &str) -> KeyType {
        self.key_types.get(name).copied().unwrap_or_default()
    }

    /// The primary key attribute names.
    pub fn primary_key(&self) -> Vec<&str> {
        let mut k = vec![self.partition_key.as_str()];
        k.extend(self.sort_key.as_deref());
        k
    }
}

/// One legacy table and the rules that turn its items into target items.
#[derive(Debug, Clone)]
pub struct Entity {
    /// The mapping's name for it (`user`, `message`).
    pub name: String,
    pub source_table: String,
    /// The legacy table's key attributes (partition, then sort).
    pub source_key: Vec<String>,
    /// The value of the target's entity-type attribute (`USER`); empty
    /// when the table has no such attribute.
    pub entity_type: String,
    /// Which of the source table's items this entity applies to (none: all).
    pub when: Option<When>,
    /// Target key attributes and their templates, in the order written.
    pub keys: Vec<(String, Template)>,
    /// Computed attributes, in name order.
    pub set: Vec<Computed>,
    /// When present, only these source attributes are copied.
    pub keep: Option<Vec<String>>,
    pub drop: Vec<String>,
    pub rename: Vec<(String, String)>,
    /// Attributes that must be numbers; a string holding a number becomes one.
    pub numbers: Vec<String>,
    /// Rules that leave an item out on purpose.
    pub skip: Vec<SkipRule>,
    /// How `verify` recognises this entity's target items when the entity
    /// type attribute is not enough: a key prefix or value.
    pub identify: Option<Identify>,
    /// Where it was written, for errors found after loading.
    pub at: Written,
}

/// Where an entity was written: its file, its line, and the line of each
/// key template and computed attribute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    pub file: PathBuf,
    pub line: usize,
    /// `keys.NAME` or `set.NAME` -> line.
    pub fields: Vec<(String, usize)>,
}

impl Written {
    /// The line of a field (`keys.gsi1pk`), or the entity's own line.
    pub fn line_of(&self, field: &str) -> usize {
        self.fields
            .iter()
            .find(|(f, _)| f == field)
            .map_or(self.line, |(_, l)| *l)
    }

    /// An error at a field of this entity.
    pub fn error(&self, field: &str, message: String) -> MappingError {
        MappingError::At {
            path: self.file.clone(),
            line: self.line_of(field),
            message,
        }
    }
}

/// Recognises an entity's target items by one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Identify {
    pub attribute: String,
    pub prefix: Option<String>,
    pub equals: Option<String>,
}

impl Identify {
    pub fn matches(&self, item: &crate::item::Item) -> bool {
        match item.get(&self.attribute) {
            Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => {
                self.prefix
                    .as_ref()
                    .is_none_or(|p| s.starts_with(p.as_str()))
                    && self.equals.as_ref().is_none_or(|e| s == e)
            }
            _ => false,
        }
    }
}

/// Chooses the source items an entity applies to, by one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct When {
    pub attribute: String,
    pub test: WhenTest,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WhenTest {
    /// The attribute (S or N) is exactly this text.
    Equals(String),
    /// The attribute (S) starts with this text.
    Prefix(String),
    /// The attribute is there (any type).
    Present,
    /// The attribute is not there.
    Absent,
}

impl When {
    pub fn matches(&self, item: &crate::item::Item) -> bool {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        let value = item.get(&self.attribute);
        match (&self.test, value) {
            (WhenTest::Present, v) => v.is_some(),
            (WhenTest::Absent, v) => v.is_none(),
            (WhenTest::Equals(e), Some(A::S(s) | A::N(s))) => s == e,
            (WhenTest::Prefix(p), Some(A::S(s))) => s.starts_with(p.as_str()),
            _ => false,
        }
    }
}

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.test {
            WhenTest::Equals(v) => write!(f, "when {} = {v:?}", self.attribute),
            WhenTest::Prefix(p) => write!(f, "when {} begins with {p:?}", self.attribute),
            WhenTest::Present => write!(f, "when {} is present", self.attribute),
            WhenTest::Absent => write!(f, "when {} is absent", self.attribute),
        }
    }
}

/// An attribute computed by a template.
#[derive(Debug, Clone)]
pub struct Computed {
    pub name: String,
    pub template: Template,
    pub value_type: ValueType,
    /// When an attribute it reads is missing, leave it out instead of failing.
    pub optional: bool,
}

/// The type a computed attribute is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    S,
    N,
}

/// A rule that filters an item out of the migration, counted in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct SkipRule {
    pub attribute: String,
    pub condition: SkipCondition,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SkipCondition {
    Missing,
    Equals(String),
}

impl std::fmt::Display for SkipRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.condition {
            SkipCondition::Missing => write!(f, "skip when {} is missing", self.attribute),
            SkipCondition::Equals(v) => write!(f, "skip when {} = {v:?}", self.attribute),
        }
    }
}

impl Mapping {
    /// Loads a mapping from a `.toml` file or a folder of them.
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let files: Vec<PathBuf> = if path.is_dir() {
            let rd = std::fs::read_dir(path).map_err(|cause| MappingError::Io {
                path: path.into(),
                cause,
            })?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(MappingError::File {
                    path: path.into(),
                    message: "folder holds no .toml files".into(),
                });
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        let mut table: Option<(PathBuf, TableSpec)> = None;
        let mut entities: Vec<Entity> = Vec::new();
        let mut parsed = Vec::new();
        let mut hash = md5::Md5::new();
        let folder = files.len() > 1 || path.is_dir();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|cause| MappingError::Io {
                path: file.clone(),
                cause,
            })?;
            if folder {
                hash.update(file.file_name().unwrap_or_default().as_encoded_bytes());
            }
            hash.update(text.as_bytes());
            let (t, e, p) = compile_file(&file, &text)?;
            parsed.extend(p);
            if let Some(t) = t {
                if let Some((first, _)) = &table {
                    return Err(MappingError::File {
                        path: file,
                        message: format!("a second [table]; the first is in {}", first.display()),
                    });
                }
                table = Some((file.clone(), t));
            }
            entities.extend(e);
        }
        let (_, table) = table.ok_or_else(|| MappingError::File {
            path: path.into(),
            message: "no [table] section: the mapping must name its target table".into(),
        })?;
        let mapping = Mapping {
            table,
            entities,
            patterns: Vec::new(),
            origin: path.to_path_buf(),
            text_md5: format!("{:x}", hash.finalize()),
        };
        mapping.finish(parsed)
    }

    /// The shipped mapping, built into the binary.
    pub fn shipped() -> Mapping {
        // Checked by a unit test: the shipped text always compiles.
        Mapping::from_str(Path::new(SHIPPED_NAME), SHIPPED)
            .unwrap_or_else(|e| unreachable!("the built-in mapping does not load: {e}"))
    }

    /// Parses a mapping from text, as if read from `path` (tests, `--help` examples).
    pub fn from_str(path: &Path, text: &str) -> Result<Mapping, MappingError> {
        let (table, entities, parsed) = compile_file(path, text)?;
        let table = table.ok_or_else(|| MappingError::File {
            path: path.into(),
            message: "no [table] section".into(),
        })?;
        let mapping = Mapping {
            table,
            entities,
            patterns: Vec::new(),
            origin: path.to_path_buf(),
            text_md5: format!("{:x}", md5::Md5::digest(text.as_bytes())),
        };
        mapping.finish(parsed)
    }

    /// Checks the mapping as a whole and puts each entity's keys in the
    /// table's order (pk, sk, then index keys), so that a rejection names
    /// the first key a reader would look at.
    fn finish(mut self, parsed: Vec<patterns::Parsed>) -> Result<Mapping, MappingError> {
        // Entity types and no attribute named for them: `entityType`, as
        // always; no entity types: a plain copy writes no such attribute.
        if self.table.entity_type_attribute.is_none()
            && self.entities.iter().any(|e| !e.entity_type.is_empty())
        {
            self.table.entity_type_attribute = Some(DEFAULT_TYPE_ATTRIBUTE.into());
        }
        self.check_whole()?;
        self.patterns = patterns::resolve(&self, parsed)?;
        let order: Vec<String> = self
            .table
            .key_attributes()
            .map(|(a, _)| a.to_string())
            .collect();
        for e in &mut self.entities {
            e.keys.sort_by_key(|(name, _)| {
                order.iter().position(|o| o == name).unwrap_or(usize::MAX)
            });
        }
        Ok(self)
    }

    fn check_whole(&self) -> Result<(), MappingError> {
        let err = |message: String| MappingError::File {
            path: self.origin.clone(),
            message,
        };
        if self.entities.is_empty() {
            return Err(err("no [[entity]] sections".into()));
        }
        let mut names = HashSet::new();
        let mut sources: BTreeMap<&str, &Entity> = BTreeMap::new();
        for e in &self.entities {
            if !names.insert(&e.name) {
                return Err(err(format!("entity {:?} is defined twice", e.name)));
            }
            // Several entities may read one table (a fan-out), but they
            // must agree on what its key is.
            let first = *sources.entry(&e.source_table).or_insert(e);
            if first.source_key != e.source_key {
                return Err(e.at.error(
                    "",
                    format!(
                        "entities {} and {} both read {:?} but give different source_key ({} and {}); a table has one key",
                        first.name,
                        e.name,
                        e.source_table,
                        first.source_key.join(", "),
                        e.source_key.join(", ")
                    ),
                ));
            }
            if let (Some(attr), true) =
                (&self.table.entity_type_attribute, e.entity_type.is_empty())
            {
                return Err(e.at.error("", format!(
                    "entity {}: no entity_type; the entity-type attribute {attr:?} is written on every item (other entities give entity_type, or [table] names entity_type_attribute), so each entity names its value (entity_type = \"...\"); for a plain copy, give no entity_type and no entity_type_attribute",
                    e.name
                )));
            }
            if e.source_table == self.table.name {
                return Err(err(format!(
                    "entity {:?} reads from the target table {:?}",
                    e.name, self.table.name
                )));
            }
            for (attr, _) in self.table.key_attributes() {
                let has = e.keys.iter().any(|(k, _)| k == attr);
                let is_primary = self.table.primary_key().contains(&attr);
                if is_primary && !has {
                    return Err(err(format!(
                        "entity {:?} has no template for key attribute {attr:?}",
                        e.name
                    )));
                }
            }
            self.check_index_keys(e)?;
        }
        self.check_entity_types()
    }

    /// Every key template names a key of the table or of one of its
    /// indexes, and an index's keys come in pairs: an item with only one
    /// of them is left out of the index, silently.
    fn check_index_keys(&self, e: &Entity) -> Result<(), MappingError> {
        let known: Vec<(&str, usize)> = self.table.key_attributes().collect();
        for (attr, _) in &e.keys {
            if !known.iter().any(|(k, _)| k == attr) {
                let names: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
                return Err(e.at.error(
                    &format!("keys.{attr}"),
                    format!(
                        "entity {}, keys.{attr}: no key of the table or of its indexes is called {attr:?} (they are {}); declare the index under [[table.indexes]], or move the attribute to [entity.set]",
                        e.name,
                        names.join(", ")
                    ),
                ));
            }
        }
        for ix in &self.table.indexes {
            let Some(sk) = &ix.sort_key else { continue };
            let has = |a: &str| e.keys.iter().any(|(k, _)| k == a);
            let (pk, has_pk, has_sk) = (&ix.partition_key, has(&ix.partition_key), has(sk));
            if has_pk != has_sk {
                let (given, missing) = if has_pk { (pk, sk) } else { (sk, pk) };
                return Err(e.at.error(
                    &format!("keys.{given}"),
                    format!(
                        "entity {}, keys.{given}: index {} needs {missing} too; an item with only one of its keys is not in the index",
                        e.name, ix.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Two entities with one entity type are told apart only by `identify`;
    /// without an entity-type attribute, every entity needs one (unless
    /// there is only one entity: every target item is its).
    fn check_entity_types(&self) -> Result<(), MappingError> {
        if self.table.entity_type_attribute.is_none() && self.entities.len() > 1 {
            if let Some(e) = self.entities.iter().find(|e| e.identify.is_none()) {
                return Err(e.at.error(
                    "",
                    format!(
                        "entity {}: [table] has no entity_type_attribute, so verify tells entities apart by identify rules; give it identify = {{ attribute = \"sk\", prefix = \"...\" }}, or set [table] entity_type_attribute",
                        e.name
                    ),
                ));
            }
            return Ok(());
        }
        for (i, e) in self.entities.iter().enumerate() {
            let twin = self.entities[..i]
                .iter()
                .find(|o| o.entity_type == e.entity_type);
            if let Some(o) = twin {
                if e.identify.is_none() || o.identify.is_none() {
                    return Err(e.at.error(
                        "",
                        format!(
                            "entities {} and {} both have entity_type {:?}: verify could not tell their items apart; give each an [entity.identify] rule, or different types",
                            o.name, e.name, e.entity_type
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The first entity reading from a source table (a fan-out has more).
    pub fn entity_for_table(&self, table: &str) -> Option<(usize, &Entity)> {
        self.entities
            .iter()
            .enumerate()
            .find(|(_, e)| e.source_table == table)
    }

    /// The entity a target item belongs to: the first whose `identify`
    /// rule matches, or (for entities without one) whose entity type the
    /// item carries.
    pub fn entity_of(&self, item: &crate::item::Item) -> Option<usize> {
        let Some(attr) = &self.table.entity_type_attribute else {
            // Identify rules, or the mapping's only entity.
            return match self.entities.len() {
                1 => Some(0),
                _ => self
                    .entities
                    .iter()
                    .position(|e| e.identify.as_ref().is_some_and(|r| r.matches(item))),
            };
        };
        let ty = match item.get(attr) {
            Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => Some(s.as_str()),
            _ => None,
        };
        self.entities.iter().position(|e| match &e.identify {
            Some(rule) => rule.matches(item),
            None => ty == Some(e.entity_type.as_str()),
        })
    }

    /// The attributes `verify` reads to count target items by entity.
    pub fn identifying_attributes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .table
            .primary_key()
            .iter()
            .map(|s| s.to_string())
            .collect();
        out.extend(self.table.entity_type_attribute.clone());
        out.extend(
            self.entities
                .iter()
                .filter_map(|e| e.identify.as_ref().map(|i| i.attribute.clone())),
        );
        out.sort();
        out.dedup();
        out
    }

    /// Overrides the target table's name (`--target-table`).
    pub fn set_target_name(&mut self, name: &str) -> Result<(), MappingError> {
        if let Some(e) = self.entities.iter().find(|e| e.source_table == name) {
            return Err(MappingError::File {
                path: self.origin.clone(),
                message: format!(
                    "target table {name:?} is the source table of entity {:?}",
                    e.name
                ),
            });
        }
        self.table.name = name.to_string();
        Ok(())
    }
}

// ---- the file format ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    table: Option<Spanned<TableConfig>>,
    #[serde(default)]
    entity: Vec<Spanned<EntityConfig>>,
    #[serde(default)]
    access_pattern: Vec<Spanned<patterns::PatternConfig>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableConfig {
    name: String,
    partition_key: KeyConfig,
    sort_key: Option<KeyConfig>,
    #[serde(default)]
    indexes: Vec<IndexConfig>,
    #[serde(default = "default_billing")]
    billing_mode: String,
    ttl_attribute: Option<String>,
    entity_type_attribute: Option<String>,
    #[serde(default)]
    point_in_time_recovery: bool,
}

fn default_billing() -> String {
    "PAY_PER_REQUEST".into()
}

/// A key attribute: `"pk"` (type S) or `{ name = "pk", type = "N" }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum KeyConfig {
    Name(String),
    Typed {
        name: String,
        #[serde(default = "default_type")]
        r#type: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexConfig {
    name: String,
    partition_key: KeyConfig,
    sort_key: Option<KeyConfig>,
    #[serde(default = "default_projection")]
    projection: String,
}

/// Collects the key attributes' declared types, refusing an unknown type
/// and one attribute declared with two.
#[derive(Default)]
struct KeyTypes(BTreeMap<String, KeyType>);

impl KeyTypes {
    fn take(&mut self, key: KeyConfig) -> Result<String, String> {
        let (name, text) = match key {
            KeyConfig::Name(n) => (n, "S".to_string()),
            KeyConfig::Typed { name, r#type } => (name, r#type),
        };
        let ty = KeyType::parse(&text)
            .ok_or_else(|| format!("key attribute {name}: type must be S, N or B, not {text:?}"))?;
        match self.0.insert(name.clone(), ty) {
            Some(other) if other != ty => Err(format!(
                "key attribute {name} is declared both {} and {}",
                other.as_str(),
                ty.as_str()
            )),
            _ => Ok(name),
        }
    }

    /// The types other than S (the default).
    fn finish(self) -> BTreeMap<String, KeyType> {
        self.0
            .into_iter()
            .filter(|(_, t)| *t != KeyType::S)
            .collect()
    }
}

fn default_type() -> String {
    "S".into()
}

fn default_projection() -> String {
    "ALL".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityConfig {
    name: String,
    source: String,
    source_key: Vec<String>,
    entity_type: Option<String>,
    when: Option<Spanned<WhenConfig>>,
    keys: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    set: BTreeMap<String, Spanned<SetValue>>,
    keep: Option<Vec<String>>,
    #[serde(default)]
    drop: Vec<String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    numbers: Vec<String>,
    #[serde(default)]
    skip: Vec<Spanned<SkipConfig>>,
    identify: Option<Spanned<IdentifyConfig>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentifyConfig {
    attribute: String,
    prefix: Option<String>,
    equals: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenConfig {
    attribute: String,
    equals: Option<String>,
    prefix: Option<String>,
    present: Option<bool>,
    absent: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SetValue {
    Text(String),
    Typed {
        template: String,
        #[serde(default = "default_type")]
        r#type: String,
        #[serde(default)]
        optional: bool,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipConfig {
    attribute: String,
    missing: Option<bool>,
    equals: Option<String>,
}

fn when(w: WhenConfig) -> Result<When, String> {
    let test = match (w.equals, w.prefix, w.present, w.absent) {
        (Some(v), None, None, None) => WhenTest::Equals(v),
        (None, Some(p), None, None) => WhenTest::Prefix(p),
        (None, None, Some(true), None) => WhenTest::Present,
        (None, None, None, Some(true)) => WhenTest::Absent,
        _ => {
            return Err(format!(
                "on {}: give exactly one of equals = \"...\", prefix = \"...\", present = true or absent = true",
                w.attribute
            ))
        }
    };
    Ok(When {
        attribute: w.attribute,
        test,
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

type Compiled = (Option<TableSpec>, Vec<Entity>, Vec<patterns::Parsed>);

fn compile_file(path: &Path, text: &str) -> Result<Compiled, MappingError> {
    let at = |offset: usize, message: String| MappingError::At {
        path: path.into(),
        line: line_of(text, offset),
        message,
    };
    let file: FileConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        at(offset, e.message().to_string())
    })?;
    let table = match file.table {
        None => None,
        Some(t) => {
            let start = t.span().start;
            let t = t.into_inner();
            if !["PAY_PER_REQUEST", "PROVISIONED"].contains(&t.billing_mode.as_str()) {
                return Err(at(
                    start,
                    format!(
                        "table.billing_mode must be PAY_PER_REQUEST or PROVISIONED, not {:?}",
                        t.billing_mode
                    ),
                ));
            }
            for ix in &t.indexes {
                if !["ALL", "KEYS_ONLY"].contains(&ix.projection.as_str()) {
                    return Err(at(
                        start,
                        format!("index {}: projection must be ALL or KEYS_ONLY", ix.name),
                    ));
                }
            }
            let mut types = KeyTypes::default();
            let mut key =
                |k: KeyConfig| types.take(k).map_err(|m| at(start, format!("table: {m}")));
            let partition_key = key(t.partition_key)?;
            let sort_key = t.sort_key.map(&mut key).transpose()?;
            let mut indexes = Vec::new();
            for i in t.indexes {
                indexes.push(IndexSpec {
                    name: i.name,
                    partition_key: key(i.partition_key)?,
                    sort_key: i.sort_key.map(&mut key).transpose()?,
                    projection: i.projection,
                });
            }
            Some(TableSpec {
                name: t.name,
                partition_key,
                sort_key,
                indexes,
                billing_mode: t.billing_mode,
                ttl_attribute: t.ttl_attribute,
                entity_type_attribute: t.entity_type_attribute,
                point_in_time_recovery: t.point_in_time_recovery,
                key_types: types.finish(),
            })
        }
    };
    let mut entities = Vec::new();
    for e in file.entity {
        let e_start = e.span().start;
        let e = e.into_inner();
        let name = e.name.clone();
        if e.source_key.is_empty() || e.source_key.len() > 2 {
            return Err(at(
                e_start,
                format!("entity {name}: source_key lists the legacy table's 1 or 2 key attributes"),
            ));
        }
        let mut written = Written {
            file: path.to_path_buf(),
            line: line_of(text, e_start),
            fields: Vec::new(),
        };
        let mut keys = Vec::new();
        for (attr, tpl) in e.keys {
            let off = tpl.span().start;
            written
                .fields
                .push((format!("keys.{attr}"), line_of(text, off)));
            let t = Template::parse(tpl.get_ref())
                .map_err(|err| at(off, format!("entity {name}, keys.{attr}: {err}")))?;
            keys.push((attr, t));
        }
        let mut set = Vec::new();
        for (attr, v) in e.set {
            let off = v.span().start;
            written
                .fields
                .push((format!("set.{attr}"), line_of(text, off)));
            let (text, ty, optional) = match v.into_inner() {
                SetValue::Text(t) => (t, ValueType::S, false),
                SetValue::Typed {
                    template,
                    r#type,
                    optional,
                } => match r#type.as_str() {
                    "S" => (template, ValueType::S, optional),
                    "N" => (template, ValueType::N, optional),
                    other => {
                        return Err(at(
                            off,
                            format!(
                                "entity {name}, set.{attr}: type must be S or N, not {other:?}"
                            ),
                        ))
                    }
                },
            };
            let t = Template::parse(&text)
                .map_err(|err| at(off, format!("entity {name}, set.{attr}: {err}")))?;
            set.push(Computed {
                name: attr,
                template: t,
                value_type: ty,
                optional,
            });
        }
        let mut skip = Vec::new();
        for s in e.skip {
            let off = s.span().start;
            let s = s.into_inner();
            let condition = match (s.missing, s.equals) {
                (Some(true), None) => SkipCondition::Missing,
                (None, Some(v)) => SkipCondition::Equals(v),
                _ => return Err(at(off, format!("entity {name}, skip on {}: give exactly one of missing = true or equals = \"...\"", s.attribute))),
            };
            skip.push(SkipRule {
                attribute: s.attribute,
                condition,
            });
        }
        let when = match e.when {
            None => None,
            Some(w) => {
                let off = w.span().start;
                Some(
                    when(w.into_inner())
                        .map_err(|m| at(off, format!("entity {name}, when: {m}")))?,
                )
            }
        };
        let identify = match e.identify {
            None => None,
            Some(i) => {
                let off = i.span().start;
                let i = i.into_inner();
                if i.prefix.is_none() == i.equals.is_none() {
                    return Err(at(off, format!("entity {name}, identify: give exactly one of prefix = \"...\" or equals = \"...\"")));
                }
                Some(Identify {
                    attribute: i.attribute,
                    prefix: i.prefix,
                    equals: i.equals,
                })
            }
        };
        entities.push(Entity {
            name,
            source_table: e.source,
            source_key: e.source_key,
            entity_type: e.entity_type.unwrap_or_default(),
            when,
            keys,
            set,
            keep: e.keep,
            drop: e.drop,
            rename: e.rename.into_iter().collect(),
            numbers: e.numbers,
            skip,
            identify,
            at: written,
        });
    }
    let mut parsed = Vec::new();
    for p in file.access_pattern {
        let line = line_of(text, p.span().start);
        parsed.push(patterns::parse(p.into_inner(), path, line)?);
    }
    Ok((table, entities, parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"
[table]
name = "t"
partition_key = "pk"
sort_key = "sk"
"#;

    #[test]
    fn bad_template_names_file_line_and_field() {
        let text = format!(
            "{TABLE}\n[[entity]]\nname = \"user\"\nsource = \"users\"\nsource_key = [\"userId\"]\nentity_type = \"USER\"\n[entity.keys]\npk = \"USER#{{userId}}\"\nsk = \"X#{{userId | nope}}\"\n"
        );
        let e = Mapping::from_str(Path::new("m.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m.toml:14:"), "{e}");
        assert!(
            e.contains("keys.sk") && e.contains("unknown function \"nope\""),
            "{e}"
        );
    }

    #[test]
    fn identify_rules_recognise_target_items() {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        let text = format!(
            "{TABLE}\n[[entity]]\nname = \"s\"\nsource = \"ss\"\nsource_key = [\"id\"]\nentity_type = \"X\"\nidentify = {{ attribute = \"sk\", prefix = \"SESSION#\" }}\n[entity.keys]\npk = \"U#{{u}}\"\nsk = \"SESSION#{{id}}\"\n[[entity]]\nname = \"u\"\nsource = \"us\"\nsource_key = [\"id\"]\nentity_type = \"X\"\nidentify = {{ attribute = \"sk\", equals = \"METADATA\" }}\n[entity.keys]\npk = \"U#{{id}}\"\nsk = \"METADATA\"\n"
        );
        let m = Mapping::from_str(Path::new("m.toml"), &text).unwrap();
        let item = |sk: &str| -> crate::item::Item { [("sk".to_string(), A::S(sk.into()))].into() };
        assert_eq!(m.entity_of(&item("SESSION#1")), Some(0));
        assert_eq!(m.entity_of(&item("METADATA")), Some(1));
        assert_eq!(m.entity_of(&item("CREDITS")), None);
        assert!(m.identifying_attributes().contains(&"sk".to_string()));
        let bad = text.replace(
            "prefix = \"SESSION#\"",
            "prefix = \"SESSION#\", equals = \"x\"",
        );
        assert!(Mapping::from_str(Path::new("m.toml"), &bad)
            .unwrap_err()
            .to_string()
            .contains("exactly one of prefix"));
    }

    fn entity(name: &str, source: &str, extra: &str, keys: &str) -> String {
        format!("\n[[entity]]\nname = \"{name}\"\nsource = \"{source}\"\nsource_key = [\"id\"]\n{extra}\n[entity.keys]\n{keys}\n")
    }

    #[test]
    fn several_entities_may_read_one_table_chosen_by_when() {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        let text = format!(
            "{TABLE}{}{}",
            entity(
                "a",
                "src",
                "entity_type = \"A\"\nwhen = { attribute = \"kind\", equals = \"a\" }",
                "pk = \"X#{id}\"\nsk = \"A\""
            ),
            entity(
                "b",
                "src",
                "entity_type = \"B\"\nwhen = { attribute = \"kind\", prefix = \"b\" }",
                "pk = \"X#{id}\"\nsk = \"B\""
            ),
        );
        let m = Mapping::from_str(Path::new("m.toml"), &text).unwrap();
        assert_eq!(m.table.entity_type_attribute.as_deref(), Some("entityType"));
        let item = |k: A| -> crate::item::Item { [("kind".to_string(), k)].into() };
        let (a, b) = (
            m.entities[0].when.clone().unwrap(),
            m.entities[1].when.clone().unwrap(),
        );
        assert!(a.matches(&item(A::S("a".into()))) && !a.matches(&item(A::S("ab".into()))));
        assert!(b.matches(&item(A::S("bee".into()))) && !b.matches(&item(A::N("1".into()))));
        assert_eq!(b.to_string(), "when kind begins with \"b\"");
        // Two source keys for one table, two tests in one `when`: refused.
        let other_key = text.replacen("source_key = [\"id\"]", "source_key = [\"id\", \"at\"]", 1);
        let e = Mapping::from_str(Path::new("m.toml"), &other_key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("different source_key"), "{e}");
        let two = text.replace("equals = \"a\"", "equals = \"a\", present = true");
        let e = Mapping::from_str(Path::new("m.toml"), &two)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.toml:") && e.contains("exactly one of equals"),
            "{e}"
        );
    }

    #[test]
    fn a_plain_copy_has_no_entity_type_and_typed_keys() {
        let table = "[table]\nname = \"t\"\npartition_key = { name = \"id\", type = \"N\" }\nsort_key = { name = \"at\", type = \"B\" }\n";
        let text = format!(
            "{table}{}",
            entity("x", "s", "", "id = \"{id}\"\nat = \"{at}\"")
        );
        let m = Mapping::from_str(Path::new("m.toml"), &text).unwrap();
        assert_eq!(m.table.entity_type_attribute, None);
        assert_eq!(m.table.key_type("id"), KeyType::N);
        assert_eq!(m.table.key_type("at"), KeyType::B);
        assert_eq!(m.table.key_type("other"), KeyType::S);
        assert_eq!(
            m.entity_of(&crate::item::Item::new()),
            Some(0),
            "the only entity"
        );
        // A second entity without identify rules cannot be told apart.
        let two = format!(
            "{text}{}",
            entity("y", "s2", "", "id = \"{id}\"\nat = \"{at}\"")
        );
        let e = Mapping::from_str(Path::new("m.toml"), &two)
            .unwrap_err()
            .to_string();
        assert!(e.contains("entity x") && e.contains("identify"), "{e}");
        // Only some entities typed: the untyped one is named.
        let mixed = format!(
            "{text}{}",
            entity(
                "y",
                "s2",
                "entity_type = \"Y\"",
                "id = \"{id}\"\nat = \"{at}\""
            )
        );
        let e = Mapping::from_str(Path::new("m.toml"), &mixed)
            .unwrap_err()
            .to_string();
        assert!(e.contains("entity x: no entity_type"), "{e}");
        let bad = text.replace("type = \"N\"", "type = \"X\"");
        let e = Mapping::from_str(Path::new("m.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("type must be S, N or B"), "{e}");
    }

    #[test]
    fn unknown_field_is_an_error_with_a_line() {
        let text = format!("{TABLE}\n[[entity]]\nname = \"u\"\nsource = \"s\"\nsource_key = [\"id\"]\nentity_type = \"U\"\nkeyz = 1\n");
        let e = Mapping::from_str(Path::new("m.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.toml:") && e.contains("keyz"), "{e}");
    }

    #[test]
    fn missing_primary_key_template_is_an_error() {
        let text = format!("{TABLE}\n[[entity]]\nname = \"u\"\nsource = \"s\"\nsource_key = [\"id\"]\nentity_type = \"U\"\n[entity.keys]\npk = \"U#{{id}}\"\n");
        let e = Mapping::from_str(Path::new("m.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no template for key attribute \"sk\""), "{e}");
    }

    #[test]
    fn the_examples_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/examples");
        for (file, entities) in [
            ("identity-copy.toml", 1),
            ("fan-out.toml", 2),
            ("discriminated.toml", 3),
        ] {
            let m = Mapping::load(&root.join(file)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(m.entities.len(), entities, "{file}");
        }
    }

    #[test]
    fn the_shipped_mapping_loads_as_a_file_and_split_into_a_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = root.join("mappings/ai-girlfriend.toml");
        let file = Mapping::load(&path).unwrap();
        assert_eq!(file.table.name, "ai-girlfriend-table");
        assert_eq!(file.entities.len(), 7);
        // The same text split into one file per section is the folder form.
        let text = std::fs::read_to_string(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (i, chunk) in text.split("\n[[entity]]").enumerate() {
            let body = if i == 0 {
                chunk.to_string()
            } else {
                format!("[[entity]]{chunk}")
            };
            std::fs::write(dir.path().join(format!("{i:02}.toml")), body).unwrap();
        }
        let folder = Mapping::load(dir.path()).unwrap();
        assert_eq!(folder.table, file.table);
        let names = |m: &Mapping| {
            m.entities
                .iter()
                .map(|e| e.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&file), names(&folder));
    }
}
