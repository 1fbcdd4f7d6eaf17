//! Items in Amazon Ion, as DynamoDB exports write them.
//!
//! An ION export line is `$ion_1_0 {Item:{...}}`: S is an Ion string, N an
//! Ion decimal, B a blob, BOOL a bool, NULL a null, M a struct, L a list,
//! and the sets are lists annotated `$dynamodb_SS`, `$dynamodb_NS` or
//! `$dynamodb_BS`. Parsing is ion-rs's; this module only maps Ion values to
//! attribute values and back, naming the path of a value it cannot map.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use ion_rs::{Element, IonType, Struct};

use crate::item::{Decimal, Item, JsonValueError};

const SS: &str = "$dynamodb_SS";
const NS: &str = "$dynamodb_NS";
const BS: &str = "$dynamodb_BS";

fn err(path: &str, message: impl Into<String>) -> JsonValueError {
    JsonValueError {
        path: if path.is_empty() {
            "$".into()
        } else {
            path.into()
        },
        message: message.into(),
    }
}

/// Reads an Ion struct of attributes as an item.
pub fn item_from_ion(e: &Element, path: &str) -> Result<Item, JsonValueError> {
    let s = e.as_struct().ok_or_else(|| {
        err(
            path,
            format!("expected a struct of attributes, found {}", e.ion_type()),
        )
    })?;
    let mut out = Item::new();
    for (name, value) in s.fields() {
        let name = name
            .text()
            .ok_or_else(|| err(path, "a field name has no text"))?;
        let p = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        out.insert(name.to_string(), value_from_ion(value, &p)?);
    }
    Ok(out)
}

fn number_text(e: &Element, path: &str) -> Result<String, JsonValueError> {
    let text = if let Some(d) = e.as_decimal() {
        let sign = if d.coefficient().is_negative() {
            "-"
        } else {
            ""
        };
        format!("{sign}{}E{}", d.coefficient().magnitude(), d.exponent())
    } else if let Some(i) = e.as_int() {
        i.to_string()
    } else {
        return Err(err(
            path,
            format!("expected a decimal for a number, found {}", e.ion_type()),
        ));
    };
    let d = Decimal::parse_dynamodb(&text).map_err(|x| err(path, x.to_string()))?;
    Ok(d.canonical())
}

/// Maps one Ion value to an attribute value.
pub fn value_from_ion(e: &Element, path: &str) -> Result<AttributeValue, JsonValueError> {
    let annotation = e.annotations().first().map(str::to_string);
    if e.is_null() {
        return Ok(AttributeValue::Null(true));
    }
    if let Some(a) = annotation.as_deref() {
        if [SS, NS, BS].contains(&a) {
            let seq = e
                .as_sequence()
                .ok_or_else(|| err(path, format!("{a} must annotate a list")))?;
            if seq.is_empty() {
                return Err(err(path, format!("an empty {a} set is invalid")));
            }
            let items = seq.elements().enumerate();
            return match a {
                SS => items
                    .map(|(i, x)| {
                        x.as_string()
                            .map(str::to_string)
                            .ok_or_else(|| err(&format!("{path}[{i}]"), "SS needs strings"))
                    })
                    .collect::<Result<_, _>>()
                    .map(AttributeValue::Ss),
                NS => items
                    .map(|(i, x)| number_text(x, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()
                    .map(AttributeValue::Ns),
                _ => items
                    .map(|(i, x)| {
                        x.as_blob()
                            .map(Blob::new)
                            .ok_or_else(|| err(&format!("{path}[{i}]"), "BS needs blobs"))
                    })
                    .collect::<Result<_, _>>()
                    .map(AttributeValue::Bs),
            };
        }
        return Err(err(path, format!("unknown annotation {a:?}")));
    }
    Ok(match e.ion_type() {
        IonType::String | IonType::Symbol => AttributeValue::S(
            e.as_text()
                .ok_or_else(|| err(path, "a string without text"))?
                .to_string(),
        ),
        IonType::Decimal | IonType::Int => AttributeValue::N(number_text(e, path)?),
        IonType::Bool => AttributeValue::Bool(e.as_bool().unwrap_or_default()),
        IonType::Blob | IonType::Clob => {
            AttributeValue::B(Blob::new(e.as_lob().unwrap_or_default()))
        }
        IonType::Struct => AttributeValue::M(item_from_ion(e, path)?),
        IonType::List => {
            let seq = e
                .as_sequence()
                .ok_or_else(|| err(path, "a list without elements"))?;
            AttributeValue::L(
                seq.elements()
                    .enumerate()
                    .map(|(i, x)| value_from_ion(x, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        other => return Err(err(path, format!("Ion {other} is not a DynamoDB value"))),
    })
}

fn decimal_element(text: &str) -> Element {
    match Decimal::parse(text) {
        Ok(d) if d.digits.is_empty() => Element::from(ion_rs::Decimal::new(0, 0)),
        Ok(d) => {
            let magnitude: u128 = d.digits.parse().unwrap_or_default();
            let coefficient = ion_rs::Int::from(if d.negative {
                -(magnitude as i128)
            } else {
                magnitude as i128
            });
            Element::from(ion_rs::Decimal::new(coefficient, d.exponent))
        }
        // Not a number: written as a string, which the reader will refuse.
        Err(_) => Element::string(text),
    }
}

/// Maps an attribute value to Ion, as DynamoDB writes it.
pub fn value_to_ion(v: &AttributeValue) -> Element {
    let list = |elements: Vec<Element>| Element::from(ion_rs::List::from(elements));
    match v {
        AttributeValue::S(s) => Element::string(s.as_str()),
        AttributeValue::N(n) => decimal_element(n),
        AttributeValue::B(b) => Element::blob(b.as_ref()),
        AttributeValue::Bool(b) => Element::from(*b),
        AttributeValue::Null(_) => Element::null(IonType::Null),
        AttributeValue::M(m) => item_to_ion(m),
        AttributeValue::L(l) => list(l.iter().map(value_to_ion).collect()),
        AttributeValue::Ss(s) => {
            list(s.iter().map(|x| Element::string(x.as_str())).collect()).with_annotations([SS])
        }
        AttributeValue::Ns(s) => {
            list(s.iter().map(|x| decimal_element(x)).collect()).with_annotations([NS])
        }
        AttributeValue::Bs(s) => {
            list(s.iter().map(|x| Element::blob(x.as_ref())).collect()).with_annotations([BS])
        }
        _ => Element::null(IonType::Null),
    }
}

/// An item as an Ion struct, fields in name order.
pub fn item_to_ion(item: &Item) -> Element {
    let mut names: Vec<&String> = item.keys().collect();
    names.sort();
    let mut b = Struct::builder();
    for n in names {
        b = b.with_field(n.as_str(), value_to_ion(&item[n]));
    }
    Element::from(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_dynamodb_writes() {
        let text = r#"$ion_1_0 {Item:{id:"a",n:1.50,big:12345678901234567890123456789012345678.,b:{{aGk=}},t:true,z:null,
            m:{x:"y"},l:["s",2.],ss:$dynamodb_SS::["a","b"],ns:$dynamodb_NS::[1.,2.5],bs:$dynamodb_BS::[{{aGk=}}]}}"#;
        let e = Element::read_one(text).unwrap();
        let item = item_from_ion(e.as_struct().unwrap().get("Item").unwrap(), "").unwrap();
        assert_eq!(item["id"], AttributeValue::S("a".into()));
        assert_eq!(item["n"], AttributeValue::N("1.5".into()));
        assert_eq!(
            item["big"],
            AttributeValue::N("12345678901234567890123456789012345678".into())
        );
        assert_eq!(item["b"], AttributeValue::B(Blob::new(b"hi".to_vec())));
        assert_eq!(item["z"], AttributeValue::Null(true));
        assert_eq!(item["ss"], AttributeValue::Ss(vec!["a".into(), "b".into()]));
        assert_eq!(
            item["ns"],
            AttributeValue::Ns(vec!["1".into(), "2.5".into()])
        );
        assert!(matches!(&item["l"], AttributeValue::L(l) if l.len() == 2));
    }

    #[test]
    fn round_trips_through_text() {
        let item: Item = [
            ("s".to_string(), AttributeValue::S("é 日".into())),
            ("n".to_string(), AttributeValue::N("-0.25".into())),
            (
                "big".to_string(),
                AttributeValue::N("98765432109876543210".into()),
            ),
            (
                "ns".to_string(),
                AttributeValue::Ns(vec!["3".into(), "150".into()]),
            ),
            (
                "m".to_string(),
                AttributeValue::M([("k".to_string(), AttributeValue::Bool(false))].into()),
            ),
        ]
        .into();
        let text = item_to_ion(&item).to_string();
        let back = item_from_ion(&Element::read_one(text.as_bytes()).unwrap(), "").unwrap();
        assert_eq!(back, item);
    }

    #[test]
    fn unknown_annotations_and_types_are_named() {
        let e = Element::read_one(r#"{a:$dynamodb_XS::["x"]}"#).unwrap();
        assert!(item_from_ion(&e, "")
            .unwrap_err()
            .message
            .contains("unknown annotation"));
        let e = Element::read_one(r#"{a:2024-01-01T00:00Z}"#).unwrap();
        let err = item_from_ion(&e, "").unwrap_err();
        assert_eq!(err.path, "a");
    }
}
