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
use crate::mapping::{Entity, KeyType, SkipCondition, TableSpec, ValueType};

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

/// Applies an entity's rules to one source item (a copy of it: see
/// [`transform_owned`], which moves).
pub fn transform(entity: &Entity, table: &TableSpec, source: &Item) -> Outcome {
    match transform_owned(entity, table, source.clone()) {
        Owned::Put(item) => Outcome::Put(item),
        Owned::Filtered(rule) => Outcome::Filtered(rule),
        Owned::Reject(r, _) => Outcome::Reject(r),
    }
}

/// What becomes of a source item [`transform_owned`] took.
#[derive(Debug, Clone, PartialEq)]
pub enum Owned {
    Put(Item),
    Filtered(String),
    /// The rejection, and the source item as it came in (for its dead letter).
    Reject(Rejection, Item),
}

/// Applies an entity's rules to a source item it takes: the target item is
/// made of the source's own attributes, moved, not copied. A rejected
/// item's source comes back as it was, for its dead letter.
pub fn transform_owned(entity: &Entity, table: &TableSpec, source: Item) -> Owned {
    if let Some(when) = &entity.when {
        if !when.matches(&source) {
            return Owned::Filtered(format!("only {when}"));
        }
    }
    for rule in &entity.skip {
        let hit = match &rule.condition {
            SkipCondition::Missing => !source.contains_key(&rule.attribute),
            SkipCondition::Equals(v) => match source.get(&rule.attribute) {
                Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => s == v,
                _ => false,
            },
        };
        if hit {
            return Owned::Filtered(rule.to_string());
        }
    }
    let mut journal = Journal::default();
    let built =
        build(entity, table, source, &mut journal).and_then(|item| match validate(&item, table) {
            Ok(()) => Ok(item),
            Err(r) => Err((r, item)),
        });
    match built {
        Ok(item) => Owned::Put(item),
        Err((r, item)) => Owned::Reject(r, journal.undo(item)),
    }
}

/// What [`build`] did to the source, to undo for a rejection.
#[derive(Default)]
struct Journal<'a> {
    /// Numbers coerced from S: (attribute, the S text it held).
    coerced: Vec<(&'a str, String)>,
    /// Attributes `keep` left out.
    rest: Item,
    /// The moves in order.
    moves: Vec<Move<'a>>,
}

enum Move<'a> {
    /// Removed by `drop` or an optional `set`.
    Removed(String, AttributeValue),
    /// Renamed `from` -> `to`, replacing `previous` there.
    Renamed {
        from: String,
        to: &'a str,
        previous: Option<AttributeValue>,
    },
    /// Set by `set`, `keys` or the entity type, replacing `previous`.
    Set(&'a str, Option<AttributeValue>),
}

impl Journal<'_> {
    /// The source item again, from what `build` made of it.
    fn undo(self, mut item: Item) -> Item {
        for m in self.moves.into_iter().rev() {
            match m {
                Move::Removed(name, value) => {
                    item.insert(name, value);
                }
                Move::Renamed { from, to, previous } => {
                    if let Some(v) = restore(&mut item, to, previous) {
                        item.insert(from, v);
                    }
                }
                Move::Set(name, previous) => {
                    restore(&mut item, name, previous);
                }
            }
        }
        item.extend(self.rest);
        for (name, text) in self.coerced {
            item.insert(name.to_string(), AttributeValue::S(text));
        }
        item
    }
}

/// Puts `previous` back under `name` (or removes it); returns what was there.
fn restore(
    item: &mut Item,
    name: &str,
    previous: Option<AttributeValue>,
) -> Option<AttributeValue> {
    match previous {
        Some(p) => item.insert(name.to_string(), p),
        None => item.remove(name),
    }
}

/// Builds the target item by moving the source's attributes; on a
/// rejection, returns what it made so far for the journal to undo.
fn build<'a>(
    entity: &'a Entity,
    table: &'a TableSpec,
    mut src: Item,
    journal: &mut Journal<'a>,
) -> Result<Item, (Rejection, Item)> {
    // Numbers first: templates and the copy both see the coerced values.
    for name in &entity.numbers {
        let coerced = match src.get(name) {
            None | Some(AttributeValue::N(_)) => continue,
            Some(AttributeValue::S(s)) => match Decimal::check_dynamodb(s) {
                Ok(()) => AttributeValue::N(s.trim().to_string()),
                Err(e) => {
                    return Err((Rejection::new(name, format!("must be a number: {e}")), src))
                }
            },
            Some(other) => {
                let r = Rejection::new(
                    name,
                    format!("must be a number, found {}", item::type_name(other)),
                );
                return Err((r, src));
            }
        };
        if let Some(AttributeValue::S(text)) = src.insert(name.clone(), coerced) {
            journal.coerced.push((name, text));
        }
    }
    // Every template renders from the source before anything moves.
    let rendered = match render_all(entity, table, &src) {
        Ok(r) => r,
        Err(r) => return Err((r, src)),
    };
    let mut out = match &entity.keep {
        Some(keep) => {
            let kept = keep.iter().filter_map(|k| src.remove_entry(k)).collect();
            journal.rest = src;
            kept
        }
        None => src,
    };
    for d in &entity.drop {
        if let Some((name, v)) = out.remove_entry(d) {
            journal.moves.push(Move::Removed(name, v));
        }
    }
    for (from, to) in &entity.rename {
        if let Some((from, v)) = out.remove_entry(from) {
            let previous = out.insert(to.clone(), v);
            journal.moves.push(Move::Renamed { from, to, previous });
        }
    }
    for (name, value) in rendered {
        match value {
            Some(v) => {
                let previous = out.insert(name.to_string(), v);
                journal.moves.push(Move::Set(name, previous));
            }
            None => {
                if let Some((name, v)) = out.remove_entry(name) {
                    journal.moves.push(Move::Removed(name, v));
                }
            }
        }
    }
    if let Some(attr) = &table.entity_type_attribute {
        let previous = out.insert(attr.clone(), AttributeValue::S(entity.entity_type.clone()));
        journal.moves.push(Move::Set(attr, previous));
    }
    Ok(out)
}

/// The `set` values then the keys, rendered from the source: `None` for an
/// optional value whose attribute is missing (it is removed). Keys render
/// first, so a rejection names the key a reader looks at first.
fn render_all<'a>(
    entity: &'a Entity,
    table: &TableSpec,
    src: &Item,
) -> Result<Vec<(&'a str, Option<AttributeValue>)>, Rejection> {
    let mut keys = Vec::with_capacity(entity.keys.len());
    for (name, t) in &entity.keys {
        keys.push((name.as_str(), Some(render_key(table, name, t, src)?)));
    }
    let mut out = Vec::with_capacity(entity.set.len() + keys.len());
    for c in &entity.set {
        let value = match c.template.render(src) {
            Ok(text) => match c.value_type {
                ValueType::S => AttributeValue::S(text),
                ValueType::N => {
                    Decimal::check_dynamodb(&text).map_err(|e| {
                        Rejection::new(
                            &c.name,
                            format!("template {:?} gave {e}", c.template.source()),
                        )
                    })?;
                    AttributeValue::N(text)
                }
            },
            Err(RenderError::Missing(_)) if c.optional => {
                out.push((c.name.as_str(), None));
                continue;
            }
            Err(e) => {
                return Err(Rejection::new(
                    &c.name,
                    format!("template {:?} {e}", c.template.source()),
                ))
            }
        };
        out.push((c.name.as_str(), Some(value)));
    }
    // Keys are written last: they win over a `set` of the same name.
    out.extend(keys);
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
        key.insert(name.to_string(), render_key(table, name, t, source)?);
    }
    Ok(key)
}

/// One key attribute's value, of the type the table declares: S is the
/// rendered text; N the text, which must be a number; B the bytes of a
/// B attribute the template copies whole (`{id}`), else the text's bytes.
fn render_key(
    table: &TableSpec,
    name: &str,
    t: &crate::mapping::Template,
    src: &Item,
) -> Result<AttributeValue, Rejection> {
    let ty = table.key_type(name);
    if ty == KeyType::B {
        if let Some(AttributeValue::B(b)) = t.bare_attribute().and_then(|a| src.get(a)) {
            return Ok(AttributeValue::B(b.clone()));
        }
    }
    let text = t
        .render(src)
        .map_err(|e| Rejection::new(name, format!("template {:?} {e}", t.source())))?;
    if ty == KeyType::N {
        Decimal::check_dynamodb(&text).map_err(|e| {
            Rejection::new(
                name,
                format!(
                    "template {:?} gave {e}; the table declares {name} N",
                    t.source()
                ),
            )
        })?;
    }
    Ok(ty.value(text))
}

/// Checks a target item against DynamoDB's rules for the target table.
pub fn validate(item: &Item, table: &TableSpec) -> Result<(), Rejection> {
    for (name, limit) in table.key_attributes() {
        let primary = table.is_primary_key(name);
        let Some(v) = item.get(name) else {
            if primary {
                return Err(Rejection::new(name, "key attribute is missing"));
            }
            continue; // sparse index: the item is simply not in it
        };
        let declared = table.key_type(name);
        let len = match (declared, v) {
            (KeyType::S, AttributeValue::S(text)) => text.len(),
            (KeyType::B, AttributeValue::B(b)) => b.as_ref().len(),
            (KeyType::N, AttributeValue::N(_)) => continue,
            _ => {
                return Err(Rejection::new(
                    name,
                    format!(
                        "key attribute is {}; the table declares it {}",
                        item::type_name(v),
                        declared.as_str()
                    ),
                ))
            }
        };
        if len == 0 {
            return Err(Rejection::new(name, "key attribute is empty"));
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
    use proptest::prelude::*;
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
    fn a_plain_copy_keeps_typed_keys_and_adds_nothing() {
        use aws_sdk_dynamodb::primitives::Blob;
        let text = r#"
[table]
name = "t"
partition_key = { name = "id", type = "N" }
sort_key = { name = "bin", type = "B" }
[[entity]]
name = "x"
source = "s"
source_key = ["id", "bin"]
when = { attribute = "kind", present = true }
[entity.keys]
id = "{id}"
bin = "{bin}"
"#;
        let m = Mapping::from_str(Path::new("t.toml"), text).unwrap();
        let e = &m.entities[0];
        let b = AttributeValue::B(Blob::new(vec![0u8, 255, 7]));
        let src = item(&[("id", n("42")), ("bin", b.clone()), ("kind", s("k"))]);
        assert_eq!(transform(e, &m.table, &src), Outcome::Put(src.clone()));
        let o = transform(e, &m.table, &item(&[("id", n("42")), ("bin", b.clone())]));
        assert_eq!(o, Outcome::Filtered("only when kind is present".into()));
        // An S where the table declares N: a rejection naming the key.
        let bad = item(&[("id", s("forty")), ("bin", b), ("kind", s("k"))]);
        let Outcome::Reject(r) = transform(e, &m.table, &bad) else {
            panic!("a non-number N key is written")
        };
        assert!(r.field == "id" && r.reason.contains("declares id N"), "{r}");
        // A key rendered from text into B takes the text's bytes.
        let text_key = item(&[("id", n("1")), ("bin", s("ab")), ("kind", s("k"))]);
        let Outcome::Put(out) = transform(e, &m.table, &text_key) else {
            panic!("not put")
        };
        assert_eq!(out["bin"], AttributeValue::B(Blob::new(b"ab".to_vec())));
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

    /// The transform as it was before it moved attributes: a copy of the
    /// source, then the rules. The oracle for `transform_owned`.
    fn reference(entity: &Entity, table: &TableSpec, source: &Item) -> Result<Item, Rejection> {
        let mut src = source.clone();
        for name in &entity.numbers {
            match src.get(name).cloned() {
                None | Some(AttributeValue::N(_)) => {}
                Some(AttributeValue::S(t)) => {
                    Decimal::check_dynamodb(&t)
                        .map_err(|e| Rejection::new(name, format!("must be a number: {e}")))?;
                    src.insert(name.clone(), AttributeValue::N(t.trim().to_string()));
                }
                Some(o) => {
                    return Err(Rejection::new(
                        name,
                        format!("must be a number, found {}", item::type_name(&o)),
                    ))
                }
            }
        }
        let mut out: Item = match &entity.keep {
            Some(keep) => keep
                .iter()
                .filter_map(|k| src.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
            None => src.clone(),
        };
        entity.drop.iter().for_each(|d| drop(out.remove(d)));
        for (from, to) in &entity.rename {
            if let Some(v) = out.remove(from) {
                out.insert(to.clone(), v);
            }
        }
        for (name, value) in render_all(entity, table, &src)? {
            match value {
                Some(v) => out.insert(name.to_string(), v),
                None => out.remove(name),
            };
        }
        if let Some(attr) = &table.entity_type_attribute {
            out.insert(attr.clone(), s(&entity.entity_type));
        }
        validate(&out, table)?;
        Ok(out)
    }

    const MOVING: &str = r#"
[table]
name = "t"
partition_key = "pk"
sort_key = "sk"
[[table.indexes]]
name = "gsi1"
partition_key = "gsi1pk"
sort_key = "gsi1sk"
projection = "ALL"

[[entity]]
name = "a"
source = "src-a"
source_key = ["id"]
entity_type = "A"
numbers = ["n1", "n2"]
drop = ["d"]
rename = { r = "r2", s2 = "id" }
[entity.keys]
pk = "A#{id}"
sk = "X#{n1}"
gsi1pk = "{g}"
gsi1sk = "S"
[entity.set]
n2 = { template = "{n2}", type = "N", optional = true }
t = "{id}-{n1}"
d = { template = "{k}", optional = true }

[[entity]]
name = "b"
source = "src-b"
source_key = ["id"]
entity_type = "B"
keep = ["id", "n1", "k", "r"]
numbers = ["n1"]
rename = { r = "k" }
[entity.keys]
pk = "B#{id}"
sk = "{k}"
"#;

    fn arb_source() -> impl Strategy<Value = Item> {
        let big = "x".repeat(MAX_ITEM_BYTES);
        let value = prop_oneof![
            4 => "[a-z0-9]{0,4}".prop_map(AttributeValue::S),
            2 => " ?-?[0-9]{1,3} ?".prop_map(AttributeValue::S),
            2 => "[0-9]{1,3}".prop_map(AttributeValue::N),
            1 => any::<bool>().prop_map(AttributeValue::Bool),
            1 => Just(AttributeValue::S("k".repeat(1500))),
            1 => Just(AttributeValue::S(big)),
        ];
        let names = prop::sample::select(vec![
            "id",
            "n1",
            "n2",
            "d",
            "r",
            "r2",
            "s2",
            "g",
            "k",
            "t",
            "x",
            "entityType",
            "pk",
        ]);
        let extra = proptest::collection::hash_map(names.prop_map(str::to_string), value, 0..6);
        // Most items render (id, n1, g, k present and fit), so that the
        // rejections after the moves (sizes, key lengths) are reached too.
        (extra, any::<bool>()).prop_map(|(mut item, complete)| {
            if complete {
                for (name, v) in [("id", s("i")), ("n1", n("7")), ("g", s("g")), ("k", s("k"))] {
                    item.entry(name.to_string()).or_insert(v);
                }
            }
            item
        })
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Moving gives the copy's target item, and a rejected item's
        /// source comes back exactly as it was.
        #[test]
        fn moving_transform_agrees_with_copying(source in arb_source(), which in 0usize..2) {
            let m = Mapping::from_str(Path::new("moving.toml"), MOVING).unwrap();
            let e = &m.entities[which];
            let expected = reference(e, &m.table, &source);
            match transform_owned(e, &m.table, source.clone()) {
                Owned::Put(item) => proptest::prop_assert_eq!(Ok(item), expected),
                Owned::Reject(r, back) => {
                    proptest::prop_assert_eq!(Err(r), expected);
                    proptest::prop_assert_eq!(back, source);
                }
                Owned::Filtered(_) => proptest::prop_assert!(false, "no skip rules here"),
            }
        }
    }
}
