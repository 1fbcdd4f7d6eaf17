//! DYNAMODB_JSON data lines read straight into attribute values.
//!
//! This module owns the fast path of [`super::parse_line`]: a streaming
//! deserializer that turns `{"Item":{"id":{"S":"x"}}}` into SDK values in
//! one pass, without the intermediate JSON tree. It only ever accepts; any
//! line it does not like (bad JSON, a value DynamoDB would not have
//! written, a missing image, a repeated type descriptor) makes it give up,
//! and the tree-based reader decides, with its exact messages. So the two
//! can differ only in speed, which a property test checks.

use std::fmt;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Record;
use crate::item::{Decimal, Item};

/// The record on one line, or `None` for the tree-based reader to decide.
pub fn fast_record(incremental: bool, line: &str) -> Option<Record> {
    let mut de = serde_json::Deserializer::from_str(line);
    let images = LineSeed { incremental }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    if incremental {
        return Some(Record::Change {
            keys: images.keys?,
            new: images.new,
            old: images.old,
        });
    }
    images.item.map(Record::Item)
}

/// The images a line holds (the last of a repeated name wins, as in the tree).
#[derive(Default)]
struct Images {
    item: Option<Item>,
    keys: Option<Item>,
    new: Option<Item>,
    old: Option<Item>,
}

/// Reads a line's object, parsing only the images its kind uses.
struct LineSeed {
    incremental: bool,
}

impl<'de> DeserializeSeed<'de> for LineSeed {
    type Value = Images;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Images, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineSeed {
    type Value = Images;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an export line")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Images, A::Error> {
        let mut images = Images::default();
        while let Some(name) = map.next_key::<Name>()? {
            let slot = match (self.incremental, name) {
                (false, Name::Item) => &mut images.item,
                (true, Name::Keys) => &mut images.keys,
                (true, Name::NewImage) => &mut images.new,
                (true, Name::OldImage) => &mut images.old,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value_seed(ItemSeed(TOP_LEVEL))?);
        }
        Ok(images)
    }
}

/// The names a line's object may hold; anything else is skipped.
enum Name {
    Item,
    Keys,
    NewImage,
    OldImage,
    Other,
}

impl<'de> de::Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        d.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl Visitor<'_> for NameVisitor {
    type Value = Name;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
        Ok(match v {
            "Item" => Name::Item,
            "Keys" => Name::Keys,
            "NewImage" => Name::NewImage,
            "OldImage" => Name::OldImage,
            _ => Name::Other,
        })
    }
}

/// An item: attribute names to values, in a map made with room for this
/// many (JSON does not say how many are coming).
struct ItemSeed(usize);

/// Room for an item's attributes: most items of a legacy table have a
/// dozen or fewer, and growing a map rehashes it.
const TOP_LEVEL: usize = 12;
/// Room for a map value's entries.
const NESTED: usize = 4;

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Item;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed {
    type Value = Item;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of attributes")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let mut item = Item::with_capacity(map.size_hint().unwrap_or(self.0));
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed)?;
            item.insert(name, value);
        }
        Ok(item)
    }
}

/// One value: an object with exactly one type descriptor.
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = AttributeValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AttributeValue, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = AttributeValue;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("one type descriptor")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributeValue, A::Error> {
        let tag = map
            .next_key::<Tag>()?
            .ok_or_else(|| de::Error::custom("no type descriptor"))?;
        let value = match tag {
            Tag::S => AttributeValue::S(map.next_value()?),
            Tag::N => AttributeValue::N(number(map.next_value()?)?),
            Tag::B => AttributeValue::B(blob(map.next_value()?)?),
            Tag::Bool => AttributeValue::Bool(map.next_value()?),
            Tag::Null => match map.next_value()? {
                true => AttributeValue::Null(true),
                false => return Err(de::Error::custom("NULL must be true")),
            },
            Tag::M => AttributeValue::M(map.next_value_seed(ItemSeed(NESTED))?),
            Tag::L => AttributeValue::L(map.next_value_seed(ListSeed)?),
            Tag::Ss => AttributeValue::Ss(set(map.next_value()?)?),
            Tag::Ns => AttributeValue::Ns(
                set(map.next_value()?)?
                    .into_iter()
                    .map(number)
                    .collect::<Result<_, _>>()?,
            ),
            Tag::Bs => AttributeValue::Bs(
                set(map.next_value()?)?
                    .into_iter()
                    .map(blob)
                    .collect::<Result<_, _>>()?,
            ),
        };
        // A second descriptor (even the same one again) is the tree's to judge.
        match map.next_key::<IgnoredAny>()? {
            None => Ok(value),
            Some(_) => Err(de::Error::custom("more than one type descriptor")),
        }
    }
}

/// A type descriptor, read without allocating.
enum Tag {
    S,
    N,
    B,
    Bool,
    Null,
    M,
    L,
    Ss,
    Ns,
    Bs,
}

impl<'de> de::Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tag, D::Error> {
        d.deserialize_str(TagVisitor)
    }
}

struct TagVisitor;

impl Visitor<'_> for TagVisitor {
    type Value = Tag;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a type descriptor")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tag, E> {
        Ok(match v {
            "S" => Tag::S,
            "N" => Tag::N,
            "B" => Tag::B,
            "BOOL" => Tag::Bool,
            "NULL" => Tag::Null,
            "M" => Tag::M,
            "L" => Tag::L,
            "SS" => Tag::Ss,
            "NS" => Tag::Ns,
            "BS" => Tag::Bs,
            _ => return Err(E::custom("unknown type descriptor")),
        })
    }
}

/// The elements of an `L`.
struct ListSeed;

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = Vec<AttributeValue>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = Vec<AttributeValue>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(v) = seq.next_element_seed(ValueSeed)? {
            out.push(v);
        }
        Ok(out)
    }
}

fn number<E: de::Error>(text: String) -> Result<String, E> {
    Decimal::check_dynamodb(&text).map_err(E::custom)?;
    Ok(text)
}

fn blob<E: de::Error>(text: String) -> Result<Blob, E> {
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map(Blob::new)
        .map_err(E::custom)
}

fn set<E: de::Error>(members: Vec<String>) -> Result<Vec<String>, E> {
    if members.is_empty() {
        return Err(E::custom("an empty set"));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{parse_line, Format};
    use crate::item::item_to_json;
    use proptest::prelude::*;

    /// Random DynamoDB JSON values, valid and not: wrong types, empty sets,
    /// bad numbers and base64, two descriptors, unknown descriptors.
    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::json;
        let number = prop_oneof![
            "-?[0-9]{1,4}(\\.[0-9]{0,3})?([eE][-+]?[0-9]{1,3})?",
            Just("1".repeat(39)),
            Just("1e126".to_string()),
            Just("abc".to_string()),
        ];
        let text = "[a-z\"\\\\\u{e9}\n ]{0,6}";
        let leaf = prop_oneof![
            text.prop_map(|s| json!({"S": s})),
            number.clone().prop_map(|n| json!({"N": n})),
            prop_oneof![Just("aGk="), Just("not base64!")].prop_map(|b| json!({"B": b})),
            any::<bool>().prop_map(|b| json!({"BOOL": b})),
            any::<bool>().prop_map(|b| json!({"NULL": b})),
            proptest::collection::vec(text, 0..3).prop_map(|v| json!({"SS": v})),
            proptest::collection::vec(number, 0..3).prop_map(|v| json!({"NS": v})),
            Just(json!({"S": 5})),
            Just(json!({"S": "a", "N": "1"})),
            Just(json!({"X": "a"})),
            Just(json!({})),
            Just(json!("bare")),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({"L": v})),
                proptest::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| json!({"M": m})),
            ]
        })
    }

    fn arb_line() -> impl Strategy<Value = (bool, String)> {
        let image = || proptest::collection::btree_map("[a-d]{1,2}", arb_json(), 0..5);
        let line = (
            proptest::option::of(image()),
            proptest::option::of(image()),
            proptest::option::of(image()),
            any::<bool>(),
        )
            .prop_map(|(a, b, c, incremental)| {
                let mut m = serde_json::Map::new();
                let names = if incremental {
                    ["Keys", "NewImage", "OldImage"]
                } else {
                    ["Item", "Keys", "Metadata"]
                };
                for (name, image) in names.iter().zip([a, b, c]) {
                    if let Some(i) = image {
                        m.insert(name.to_string(), serde_json::json!(i));
                    }
                }
                (incremental, serde_json::Value::Object(m).to_string())
            });
        prop_oneof![
            8 => line,
            1 => Just((false, "{\"Item\":{\"a\":{\"S\":\"x\"}}} trailing".to_string())),
            1 => Just((false, "[1]".to_string())),
            1 => Just((false, "{\"Item\":{\"a\":{\"S\":\"x\",\"S\":\"y\"}},\"Item\":{\"b\":{\"N\":\"1\"}}}".to_string())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The fast path gives the tree's record whenever it gives one, and
        /// `parse_line` as a whole gives exactly the tree's answer.
        #[test]
        fn fast_and_tree_readers_agree((incremental, line) in arb_line()) {
            let slow = super::super::json_tree_record(incremental, &line);
            if let Some(fast) = fast_record(incremental, &line) {
                prop_assert_eq!(Ok(fast), slow.clone());
            }
            prop_assert_eq!(parse_line(Format::DynamoDbJson, incremental, &line), slow);
        }

        /// Every valid item round-trips through the fast path.
        #[test]
        fn valid_items_take_the_fast_path(item in proptest::collection::hash_map("[a-zA-Z]{1,6}", crate::item::tests::arb_value(), 0..6)) {
            let line = serde_json::json!({"Item": item_to_json(&item)}).to_string();
            prop_assert_eq!(fast_record(false, &line), Some(Record::Item(item)));
        }
    }
}
