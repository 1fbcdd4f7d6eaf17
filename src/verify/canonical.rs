//! The canonical form of an item, and its 128-bit hash.
//!
//! Two items are equal as DynamoDB means it exactly when their canonical
//! forms are equal: attribute names in order, numbers as normalized
//! decimals (`1.0` = `1`, `1.5E2` = `150`), sets sorted (and compared as
//! sets), binary as bytes, maps by key and lists in order, recursively.
//! The form is a byte string with a type tag and a length before every
//! piece, so no two different items encode alike; its MD5 is the item's
//! 128-bit hash, which the full verification sums per bucket.

use aws_sdk_dynamodb::types::AttributeValue;
use md5::{Digest as _, Md5};

use crate::item::{canonical_number, Item};

/// The canonical bytes of an item.
pub fn canonical(item: &Item) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_map(&mut out, item);
    out
}

/// The 128-bit hash of an item's canonical form.
pub fn item_hash(item: &Item) -> u128 {
    hash_bytes(&canonical(item))
}

/// The 128-bit hash of some bytes.
pub fn hash_bytes(bytes: &[u8]) -> u128 {
    u128::from_be_bytes(Md5::digest(bytes).into())
}

fn write_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_be_bytes());
}

fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    write_len(out, s.len());
    out.extend_from_slice(s);
}

fn write_map(out: &mut Vec<u8>, m: &Item) {
    let mut names: Vec<&String> = m.keys().collect();
    names.sort();
    out.push(b'M');
    write_len(out, names.len());
    for n in names {
        write_str(out, n.as_bytes());
        write_value(out, &m[n]);
    }
}

fn write_set(out: &mut Vec<u8>, tag: u8, mut elements: Vec<Vec<u8>>) {
    elements.sort();
    elements.dedup();
    out.push(tag);
    write_len(out, elements.len());
    for e in elements {
        write_str(out, &e);
    }
}

fn write_value(out: &mut Vec<u8>, v: &AttributeValue) {
    match v {
        AttributeValue::S(s) => {
            out.push(b'S');
            write_str(out, s.as_bytes());
        }
        AttributeValue::N(n) => {
            out.push(b'N');
            write_str(out, canonical_number(n).as_bytes());
        }
        AttributeValue::B(b) => {
            out.push(b'B');
            write_str(out, b.as_ref());
        }
        AttributeValue::Bool(b) => out.extend_from_slice(if *b { b"T" } else { b"F" }),
        AttributeValue::Null(_) => out.push(b'0'),
        AttributeValue::M(m) => write_map(out, m),
        AttributeValue::L(l) => {
            out.push(b'L');
            write_len(out, l.len());
            for x in l {
                write_value(out, x);
            }
        }
        AttributeValue::Ss(s) => {
            write_set(out, b's', s.iter().map(|x| x.as_bytes().to_vec()).collect())
        }
        AttributeValue::Ns(s) => write_set(
            out,
            b'n',
            s.iter().map(|x| canonical_number(x).into_bytes()).collect(),
        ),
        AttributeValue::Bs(s) => {
            write_set(out, b'b', s.iter().map(|x| x.as_ref().to_vec()).collect())
        }
        _ => out.push(b'?'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::values_equal;
    use aws_sdk_dynamodb::primitives::Blob;
    use proptest::prelude::*;

    fn n(x: &str) -> AttributeValue {
        AttributeValue::N(x.into())
    }

    #[test]
    fn the_documented_equalities() {
        let a: Item = [("x".to_string(), n("1.0")), ("y".to_string(), n("1.5E2"))].into();
        let b: Item = [("y".to_string(), n("150")), ("x".to_string(), n("1"))].into();
        assert_eq!(canonical(&a), canonical(&b));
        let s1: Item = [(
            "s".to_string(),
            AttributeValue::Ss(vec!["b".into(), "a".into()]),
        )]
        .into();
        let s2: Item = [(
            "s".to_string(),
            AttributeValue::Ss(vec!["a".into(), "b".into()]),
        )]
        .into();
        assert_eq!(item_hash(&s1), item_hash(&s2));
        // A string "1" is not the number 1; a list is not a set.
        let t1: Item = [("x".to_string(), AttributeValue::S("1".into()))].into();
        let t2: Item = [("x".to_string(), n("1"))].into();
        assert_ne!(canonical(&t1), canonical(&t2));
        let l: Item = [(
            "s".to_string(),
            AttributeValue::L(vec![AttributeValue::S("a".into())]),
        )]
        .into();
        let ss: Item = [("s".to_string(), AttributeValue::Ss(vec!["a".into()]))].into();
        assert_ne!(canonical(&l), canonical(&ss));
        // Length prefixes keep neighbours apart: {"ab":"c"} vs {"a":"bc"}.
        let p: Item = [("ab".to_string(), AttributeValue::S("c".into()))].into();
        let q: Item = [("a".to_string(), AttributeValue::S("bc".into()))].into();
        assert_ne!(canonical(&p), canonical(&q));
    }

    fn arb_number() -> impl Strategy<Value = (String, String)> {
        // The same number written two ways.
        (-100_000i64..100_000, 0u32..4, 0usize..3).prop_map(|(m, scale, zeros)| {
            let plain = if scale == 0 {
                m.to_string()
            } else {
                format!("{}E-{}", m, scale)
            };
            let padded = format!("{}{}E-{}", m, "0".repeat(zeros), scale as usize + zeros);
            (plain, padded)
        })
    }

    fn arb_value() -> impl Strategy<Value = AttributeValue> {
        let leaf = prop_oneof![
            "[a-z0-9é]{0,6}".prop_map(AttributeValue::S),
            arb_number().prop_map(|(a, _)| AttributeValue::N(a)),
            any::<bool>().prop_map(AttributeValue::Bool),
            proptest::collection::vec(any::<u8>(), 0..6)
                .prop_map(|b| AttributeValue::B(Blob::new(b))),
            proptest::collection::btree_set("[a-c]{1,2}", 1..4)
                .prop_map(|s| AttributeValue::Ss(s.into_iter().collect())),
            proptest::collection::btree_set(0i64..50, 1..4)
                .prop_map(|s| AttributeValue::Ns(s.into_iter().map(|x| x.to_string()).collect())),
        ];
        leaf.prop_recursive(3, 20, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(AttributeValue::L),
                proptest::collection::hash_map("[a-d]{1,3}", inner, 0..4)
                    .prop_map(AttributeValue::M),
            ]
        })
    }

    fn arb_item() -> impl Strategy<Value = Item> {
        proptest::collection::hash_map("[a-f]{1,3}", arb_value(), 0..5)
    }

    /// Rewrites a value the way another writer might: sets reordered,
    /// numbers with trailing zeros. Still the same value.
    fn restyle(v: &AttributeValue) -> AttributeValue {
        match v {
            AttributeValue::N(x) => AttributeValue::N(match x.split_once('E') {
                // 5E-2 -> 50E-3
                Some((m, e)) => format!("{m}0E{}", e.parse::<i64>().unwrap_or(0) - 1),
                // 5 -> 5.000
                None => format!("{x}.000"),
            }),
            AttributeValue::Ss(s) => AttributeValue::Ss(s.iter().rev().cloned().collect()),
            AttributeValue::Ns(s) => {
                AttributeValue::Ns(s.iter().rev().map(|x| format!("{x}.00")).collect())
            }
            AttributeValue::M(m) => {
                AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), restyle(v))).collect())
            }
            AttributeValue::L(l) => AttributeValue::L(l.iter().map(restyle).collect()),
            other => other.clone(),
        }
    }

    proptest! {
        /// Equal items have equal canonical forms however they are written.
        #[test]
        fn restyled_items_are_equal(item in arb_item()) {
            let other: Item = item.iter().map(|(k, v)| (k.clone(), restyle(v))).collect();
            prop_assert_eq!(canonical(&item), canonical(&other));
        }

        /// Canonical equality is exactly DynamoDB equality.
        #[test]
        fn canonical_equality_is_value_equality(a in arb_item(), b in arb_item()) {
            let equal = a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| values_equal(v, w)));
            prop_assert_eq!(canonical(&a) == canonical(&b), equal);
        }

        /// Two spellings of one number are one number.
        #[test]
        fn numbers_normalize((a, b) in arb_number()) {
            let x: Item = [("n".to_string(), AttributeValue::N(a))].into();
            let y: Item = [("n".to_string(), AttributeValue::N(b))].into();
            prop_assert_eq!(item_hash(&x), item_hash(&y));
        }
    }
}
