//! The transform: one legacy item through one compiled entity.
//!
//! Pure and synchronous: given a source item and its [`Entity`], it returns
//! the target item to put, the skip rule that filters it out, or the reason
//! it must be dead-lettered. It then checks the target item against what
//! real DynamoDB enforces (400 KB items, key lengths, key types, empty keys),
//! because emulators are lenient and a rejected item inside a batch would
//! fail its 24 neighbours too. It knows nothing of sources, sinks or AWS.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::item::{self, Decimal, Item, MAX_ITEM_BYTES};
use crate::mapping::template::RenderError;
use crate::mapping::{Entity, SkipCondition, TableSpec, ValueType};

/// What becomes of one source item.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Put this item into the target.
    Put(Item),
    /// Left out on purpose by this rule.
    Filtered(String),
    /// Cannot be written; the reason goes into the dead-letter file.
    Reject(Rejection),
}

/// Why an item cannot be written, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Rejection {
    pub field: String,
    pub reason: String,
}

impl Rejection {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Applies an entity's rules to one source item.
pub fn transform(entity: &Entity, table: &TableSpec, source: &Item) -> Outcome {
    for rule in &entity.skip {
        let hit = match &rule.condition {
            SkipCondition::Missing => !source.contains_key(&rule.attribute),
            SkipCondition::Equals(v) => match source.get(&rule.attribute) {
                Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => s == v,
                _ => false,
            },
        };
        if hit {
            return Outcome::Filtered(rule.to_string());
        }
    }
    match build(entity, table, source) {
        Ok(item) => match validate(&item, table) {
            Ok(()) => Outcome::Put(item),
            Err(r) => Outcome::Reject(r),
        },
        Err(r) => Outcome::Reject(r),
    }
}

fn build(entity: &Entity, table: &TableSpec, source: &Item) -> Result<Item, Rejection> {
    // Numbers first: templates and the copy both see the coerced values.
    // The source is copied only when a number has to be coerced.
    let mut src = std::borrow::Cow::Borrowed(source);
    for name in &entity.numbers {
        match src.get(name) {
            None | Some(AttributeValue::N(_)) => {}
            Some(AttributeValue::S(s)) => match Decimal::parse_dynamodb(s) {
                Ok(_) => {
                    let n = s.trim().to_string();
                    src.to_mut().insert(name.clone(), AttributeValue::N(n));
                }
                Err(e) => return Err(Rejection::new(name, format!("must be a number: {e}"))),
            },
            Some(other) => {
                return Err(Rejection::new(
                    name,
                    format!("must be a number, found {}", item::type_name(other)),
                ));
            }
        }
    }

    let mut out: Item = match &entity.keep {
        Some(keep) => keep
            .iter()
            .filter_map(|k| src.get(k).map(|v| (k.clone(), v.clone())))
            .collect(),
        None => src.clone().into_owned(),
    };
    for d in &entity.drop {
        out.remove(d);
    }
    for (from, to) in &entity.rename {
        if let Some(v) = out.remove(from) {
            out.insert(to.clone(), v);
        }
    }
    // Keys first, so a rejection names the key a reader looks at first.
    let mut keys = Vec::with_capacity(entity.keys.len());
    for (name, t) in &entity.keys {
        let text = t
            .render(&src)
            .map_err(|e| Rejection::new(name, format!("template {:?} {e}", t.source())))?;
        keys.push((name.clone(), AttributeValue::S(text)));
    }
    for c in &entity.set {
        match c.template.render(&src) {
            Ok(text) => {
                let value = match c.value_type {
                    ValueType::S => AttributeValue::S(text),
                    ValueType::N => {
                        Decimal::parse_dynamodb(&text).map_err(|e| {
                            Rejection::new(
                                &c.name,
                                format!("template {:?} gave {e}", c.template.source()),
                            )
                        })?;
                        AttributeValue::N(text)
                    }
                };
                out.insert(c.name.clone(), value);
            }
            Err(RenderError::Missing(_)) if c.optional => {
                out.remove(&c.name);
            }
            Err(e) => {
                return Err(Rejection::new(
                    &c.name,
                    format!("template {:?} {e}", c.template.source()),
                ))
            }
        }
    }
    out.extend(keys);
    out.insert(
        table.entity_type_attribute.clone(),
        AttributeValue::S(entity.entity_type.clone()),
    );
    Ok(out)
}

/// The target primary key an item maps to, rendering only the key
/// templates (enough for a delete whose item is known only by its keys).
pub fn target_key(entity: &Entity, table: &TableSpec, source: &Item) -> Result<Item, Rejection> {
    let mut key = Item::new();
    for name in table.primary_key() {
        let (_, t) = entity
            .keys
            .iter()
            .find(|(k, _)| k == name)
            .ok_or_else(|| Rejection::new(name, "the mapping has no template for this key"))?;
        let text = t
            .render(source)
            .map_err(|e| Rejection::new(name, format!("template {:?} {e}", t.source())))?;
        key.insert(name.to_string(), AttributeValue::S(text));
    }
    Ok(key)
}

/// Checks a target item against DynamoDB's rules for the target table.
pub fn validate(item: &Item, table: &TableSpec) -> Result<(), Rejection> {
    for (name, limit) in table.key_attributes() {
        let primary = table.primary_key().contains(&name);
        let Some(v) = item.get(name) else {
            if primary {
                return Err(Rejection::new(name, "key attribute is missing"));
            }
            continue; // sparse index: the item is simply not in it
        };
        // The target's key attributes are all declared S (see `sinks::table`).
        let AttributeValue::S(text) = v else {
            return Err(Rejection::new(
                name,
                format!(
                    "key attribute is {}; the table declares it S",
                    item::type_name(v)
                ),
            ));
        };
        let len = text.len();
        if len == 0 {
            return Err(Rejection::new(name, "key attribute is an empty string"));
        }
        if len > limit {
            return Err(Rejection::new(
                name,
                format!("key is {len} bytes, over DynamoDB's {limit}-byte limit"),
            ));
        }
    }
    let size = item::item_size(item);
    if size > MAX_ITEM_BYTES {
        return Err(Rejection::new(
            "(item)",
            format!("item is {size} bytes after transform, over DynamoDB's {MAX_ITEM_BYTES}-byte (400 KB) limit"),
        ));
    }
    Ok(())
}

/// The number of the table's indexes an item lands in (both keys present).
pub fn indexes_landed_in(item: &Item, table: &TableSpec) -> usize {
    table.indexes.iter().filter(|ix| lands_in(item, ix)).count()
}

/// Whether an item carries both keys of an index (a sparse index holds
/// only the items that do).
pub fn lands_in(item: &Item, ix: &crate::mapping::IndexSpec) -> bool {
    item.contains_key(&ix.partition_key)
        && ix.sort_key.as_ref().is_none_or(|s| item.contains_key(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapping;
    use std::path::Path;

    fn shipped() -> Mapping {
        Mapping::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/ai-girlfriend.toml"))
            .unwrap()
    }
    fn s(x: &str) -> AttributeValue {
        AttributeValue::S(x.into())
    }
    fn n(x: &str) -> AttributeValue {
        AttributeValue::N(x.into())
    }
    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
    fn run(m: &Mapping, entity: &str, src: &Item) -> Outcome {
        let e = m.entities.iter().find(|e| e.name == entity).unwrap();
        transform(e, &m.table, src)
    }

    #[test]
    fn credits_become_the_seed_record() {
        let m = shipped();
        let src = item(&[
            ("userId", s("user123")),
            ("credits", n("85")),
            ("totalCreditsUsed", s("15")),
            ("lastUpdated", n("1705332600")),
        ]);
        let want = item(&[
            ("pk", s("USER#user123")),
            ("sk", s("CREDITS")),
            ("entityType", s("CREDITS")),
            ("credits", n("85")),
            ("totalCreditsUsed", n("15")),
            ("lastUpdated", s("2024-01-15T15:30:00Z")),
        ]);
        assert_eq!(run(&m, "credits", &src), Outcome::Put(want));
    }

    #[test]
    fn missing_template_attribute_is_rejected_naming_field() {
        let m = shipped();
        let src = item(&[
            ("userId", s("u1")),
            ("lastActiveAt", s("2024-01-15T15:30:00Z")),
        ]);
        match run(&m, "user", &src) {
            Outcome::Reject(r) => {
                assert_eq!(r.field, "gsi1sk", "keys are checked first, in table order");
                assert!(r.reason.contains("needs attribute createdAt"), "{r}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_number_that_is_not_one_is_rejected() {
        let m = shipped();
        let src = item(&[
            ("userId", s("u1")),
            ("createdAt", s("2024-01-15T10:00:00Z")),
            ("lastActiveAt", s("2024-01-15T10:00:00Z")),
            ("messageCount", s("twelve")),
        ]);
        assert!(matches!(run(&m, "user", &src), Outcome::Reject(r) if r.field == "messageCount"));
    }

    #[test]
    fn oversized_items_and_long_keys_are_rejected() {
        let m = shipped();
        let big = "x".repeat(MAX_ITEM_BYTES - 150);
        let src = item(&[
            ("sessionId", s("s1")),
            ("sentAt", n("1705327530000")),
            ("messageId", s("m1")),
            ("userId", s("u1")),
            ("content", s(&big)),
        ]);
        assert!(item::item_size(&src) < MAX_ITEM_BYTES);
        match run(&m, "message", &src) {
            Outcome::Reject(r) => assert!(r.reason.contains("400 KB"), "{r}"),
            other => panic!("{other:?}"),
        }
        let src = item(&[("date", s(&"9".repeat(2100))), ("eventType", s("x"))]);
        assert!(matches!(run(&m, "daily_stats", &src), Outcome::Reject(r) if r.field == "pk"));
    }

    #[test]
    fn wrong_gsi_key_type_is_rejected() {
        let m = shipped();
        let mut it = item(&[
            ("pk", s("a")),
            ("sk", s("b")),
            ("gsi1pk", AttributeValue::M(Item::new())),
        ]);
        assert!(validate(&it, &m.table).unwrap_err().field == "gsi1pk");
        it.insert("gsi1pk".into(), s(""));
        assert!(validate(&it, &m.table)
            .unwrap_err()
            .reason
            .contains("empty"));
        it.remove("gsi1pk");
        assert!(
            validate(&it, &m.table).is_ok(),
            "a sparse index key may be absent"
        );
    }

    #[test]
    fn skip_rules_filter() {
        let text = r#"
[table]
name = "t"
partition_key = "pk"
sort_key = "sk"
[[entity]]
name = "u"
source = "users"
source_key = ["id"]
entity_type = "U"
skip = [{ attribute = "deleted", equals = "true" }, { attribute = "email", missing = true }]
[entity.keys]
pk = "U#{id}"
sk = "U"
[entity.set]
ttl = { template = "{at | to_epoch_s | add(10)}", type = "N" }
"#;
        let m = Mapping::from_str(Path::new("t.toml"), text).unwrap();
        let e = &m.entities[0];
        let o = transform(
            e,
            &m.table,
            &item(&[("id", s("1")), ("deleted", s("true")), ("email", s("e"))]),
        );
        assert_eq!(o, Outcome::Filtered("skip when deleted = \"true\"".into()));
        let o = transform(e, &m.table, &item(&[("id", s("1"))]));
        assert_eq!(o, Outcome::Filtered("skip when email is missing".into()));
        let o = transform(
            e,
            &m.table,
            &item(&[
                ("id", s("1")),
                ("email", s("e")),
                ("at", s("1970-01-01T00:00:00Z")),
            ]),
        );
        match o {
            Outcome::Put(it) => assert_eq!(it.get("ttl"), Some(&n("10"))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn index_landing_counts_sparse_items() {
        let m = shipped();
        let it = item(&[
            ("pk", s("a")),
            ("sk", s("b")),
            ("gsi1pk", s("x")),
            ("gsi1sk", s("y")),
            ("gsi2pk", s("z")),
        ]);
        assert_eq!(indexes_landed_in(&it, &m.table), 1);
    }
}
