//! Items and attribute values: the DynamoDB facts every stage shares.
//!
//! This module owns the pure arithmetic on items: how big an item is in
//! DynamoDB's accounting (for the 400 KB limit, the 16 MB batch limit and
//! write units), how numbers normalize (so `1.0` and `1` compare equal), and
//! the conversion between SDK values and DynamoDB JSON (`{"S":"x"}`), the
//! format of dead letters, reports and exports. It does no I/O.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use serde_json::Value;

/// One DynamoDB item, as the SDK holds it.
pub type Item = HashMap<String, AttributeValue>;

/// DynamoDB's limit on one item, in bytes.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's limit on a partition key value, in bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// DynamoDB's limit on a sort key value, in bytes.
pub const MAX_SORT_KEY_BYTES: usize = 1024;

/// The one-letter (or two-letter) type descriptor of a value: `S`, `N`, `M`...
pub fn type_name(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::M(_) => "M",
        AttributeValue::L(_) => "L",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        _ => "unknown",
    }
}

/// The size of an item in DynamoDB's accounting: for each attribute, the
/// UTF-8 length of its name plus the size of its value.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// The size of one value in DynamoDB's accounting.
pub fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| k.len() + value_size(v) + 1)
                .sum::<usize>()
        }
        AttributeValue::L(l) => 3 + l.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
        AttributeValue::Ns(s) => s.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(s) => s.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

/// A number's size: one byte per two significant digits, plus one. An
/// unparsable number is counted by its text length, which over-estimates.
fn number_size(n: &str) -> usize {
    match number_shape(n) {
        Some(s) => s.digits.div_ceil(2) + 1,
        None => n.len() + 1,
    }
}

/// What DynamoDB's number rules look at, read without allocating: how many
/// significant digits, and the power of ten of the leading one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// Significant digits (no leading or trailing zeros); 0 for zero.
    digits: usize,
    /// The leading digit's power of ten (meaningless for zero).
    lead: i64,
}

/// The shape of a number in DynamoDB syntax, or `None` when it is not one.
/// Agrees with [`Decimal::parse`] (`digits` is its digit count).
fn number_shape(text: &str) -> Option<Shape> {
    let t = text.trim();
    let rest = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let all = || int_part.bytes().chain(frac_part.bytes());
    if !all().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let Some(first) = all().position(|b| b != b'0') else {
        return Some(Shape { digits: 0, lead: 0 });
    };
    let n = int_part.len() + frac_part.len();
    let trailing = all().rev().take_while(|&b| b == b'0').count();
    let lead = exp.saturating_add(int_part.len() as i64 - 1 - first as i64);
    Some(Shape {
        digits: n - trailing - first,
        lead,
    })
}

/// Write units one put of `size` bytes costs: one per started KB, once for
/// the table and once more for every GSI the item lands in.
pub fn write_units(size: usize, indexes_landed_in: usize) -> u64 {
    let per_copy = size.max(1).div_ceil(1024) as u64;
    per_copy * (1 + indexes_landed_in as u64)
}

/// Why a number is not one DynamoDB accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("{0:?} is not a number")]
    Syntax(String),
    #[error("{0:?} has more than 38 significant digits")]
    TooPrecise(String),
    #[error("{0:?} is outside DynamoDB's range (1E-130 to 9.99E+125)")]
    OutOfRange(String),
}

/// A decimal number in normal form: sign, significant digits without leading
/// or trailing zeros, and the exponent of the last digit. Zero has no digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub negative: bool,
    pub digits: String,
    pub exponent: i64,
}

impl Decimal {
    /// Parses DynamoDB number syntax: optional sign, digits with an optional
    /// point, optional exponent.
    pub fn parse(text: &str) -> Result<Decimal, NumberError> {
        let bad = || NumberError::Syntax(text.to_string());
        let t = text.trim();
        let (negative, rest) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().map_err(|_| bad())?),
            None => (rest, 0),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        if !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let all: String = format!("{int_part}{frac_part}");
        let mut exponent = exp - frac_part.len() as i64;
        let trimmed_lead = all.trim_start_matches('0');
        let trimmed = trimmed_lead.trim_end_matches('0');
        exponent += (trimmed_lead.len() - trimmed.len()) as i64;
        if trimmed.is_empty() {
            return Ok(Decimal {
                negative: false,
                digits: String::new(),
                exponent: 0,
            });
        }
        Ok(Decimal {
            negative,
            digits: trimmed.to_string(),
            exponent,
        })
    }

    /// Checks DynamoDB's number syntax and limits (38 digits,
    /// 1E-130..<1E+126) without building the number: the same verdict as
    /// [`Decimal::parse_dynamodb`], for the hot path.
    pub fn check_dynamodb(text: &str) -> Result<(), NumberError> {
        let shape = number_shape(text).ok_or_else(|| NumberError::Syntax(text.to_string()))?;
        if shape.digits > 38 {
            return Err(NumberError::TooPrecise(text.to_string()));
        }
        if shape.digits > 0 && !(-130..=125).contains(&shape.lead) {
            return Err(NumberError::OutOfRange(text.to_string()));
        }
        Ok(())
    }

    /// Parses and checks DynamoDB's limits (38 digits, 1E-130..<1E+126).
    pub fn parse_dynamodb(text: &str) -> Result<Decimal, NumberError> {
        let d = Decimal::parse(text)?;
        if d.digits.len() > 38 {
            return Err(NumberError::TooPrecise(text.to_string()));
        }
        if !d.digits.is_empty() {
            // Magnitude: the leading digit's power of ten.
            let lead = d.exponent + d.digits.len() as i64 - 1;
            if !(-130..=125).contains(&lead) {
                return Err(NumberError::OutOfRange(text.to_string()));
            }
        }
        Ok(d)
    }

    /// Numeric order (DynamoDB's order of N sort keys).
    pub fn cmp_value(&self, other: &Decimal) -> std::cmp::Ordering {
        // -1, 0 or 1; then magnitude (the leading digit's power), then digits.
        let sign = |d: &Decimal| match (d.digits.is_empty(), d.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        let (a, b) = (sign(self), sign(other));
        if a != b || a == 0 {
            return a.cmp(&b);
        }
        let lead = |d: &Decimal| d.exponent + d.digits.len() as i64;
        let magnitude = lead(self)
            .cmp(&lead(other))
            .then_with(|| self.digits.as_bytes().cmp(other.digits.as_bytes()));
        if a < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }

    /// The canonical text: `150`, `-0.25`, `0`; the same text for equal numbers.
    pub fn canonical(&self) -> String {
        if self.digits.is_empty() {
            return "0".to_string();
        }
        let sign = if self.negative { "-" } else { "" };
        if self.exponent >= 0 {
            if self.exponent > 40 {
                return format!("{sign}{}E{}", self.digits, self.exponent);
            }
            return format!(
                "{sign}{}{}",
                self.digits,
                "0".repeat(self.exponent as usize)
            );
        }
        let point = self.digits.len() as i64 + self.exponent;
        if point > 0 {
            let (a, b) = self.digits.split_at(point as usize);
            format!("{sign}{a}.{b}")
        } else if point > -40 {
            format!("{sign}0.{}{}", "0".repeat((-point) as usize), self.digits)
        } else {
            format!("{sign}{}E{}", self.digits, self.exponent)
        }
    }
}

/// The canonical text of a number, or the text itself when it is not one
/// (so that two equal bad texts still compare equal).
pub fn canonical_number(text: &str) -> String {
    Decimal::parse(text)
        .map(|d| d.canonical())
        .unwrap_or_else(|_| text.to_string())
}

/// True when two values are equal as DynamoDB means it: numbers as decimals,
/// sets as sets, maps by key, lists in order.
pub fn values_equal(a: &AttributeValue, b: &AttributeValue) -> bool {
    use AttributeValue as A;
    match (a, b) {
        (A::N(x), A::N(y)) => canonical_number(x) == canonical_number(y),
        (A::Ns(x), A::Ns(y)) => {
            let mut x: Vec<String> = x.iter().map(|n| canonical_number(n)).collect();
            let mut y: Vec<String> = y.iter().map(|n| canonical_number(n)).collect();
            x.sort();
            y.sort();
            x == y
        }
        (A::Ss(x), A::Ss(y)) => {
            let mut x: Vec<&String> = x.iter().collect();
            let mut y: Vec<&String> = y.iter().collect();
            x.sort();
            y.sort();
            x == y
        }
        (A::Bs(x), A::Bs(y)) => {
            let mut x: Vec<&[u8]> = x.iter().map(|b| b.as_ref()).collect();
            let mut y: Vec<&[u8]> = y.iter().map(|b| b.as_ref()).collect();
            x.sort();
            y.sort();
            x == y
        }
        (A::M(x), A::M(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        (A::L(x), A::L(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| values_equal(v, w))
        }
        _ => a == b,
    }
}

/// The names of the attributes on which two items differ, sorted.
pub fn differing_attributes(expected: &Item, actual: &Item) -> Vec<String> {
    let mut names: Vec<String> = expected
        .keys()
        .chain(actual.keys())
        .filter(|k| match (expected.get(*k), actual.get(*k)) {
            (Some(a), Some(b)) => !values_equal(a, b),
            _ => true,
        })
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Why a piece of DynamoDB JSON is not a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {path}: {message}")]
pub struct JsonValueError {
    pub path: String,
    pub message: String,
}

/// An item that serializes as DynamoDB JSON (`{"name":{"S":"x"}}`,
/// attribute names sorted), borrowing it: the one encoder behind
/// [`item_to_json`], dead letters, and the sink's request-size count.
pub struct JsonItem<'a>(pub &'a Item);

/// One value that serializes as DynamoDB JSON, borrowing it.
pub struct JsonValue<'a>(pub &'a AttributeValue);

impl serde::Serialize for JsonItem<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        let mut map = ser.serialize_map(Some(names.len()))?;
        for name in names {
            map.serialize_entry(name, &JsonValue(&self.0[name]))?;
        }
        map.end()
    }
}

impl serde::Serialize for JsonValue<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let b64 = |b: &Blob| base64::engine::general_purpose::STANDARD.encode(b.as_ref());
        let mut map = ser.serialize_map(Some(1))?;
        match self.0 {
            AttributeValue::S(s) => map.serialize_entry("S", s)?,
            AttributeValue::N(n) => map.serialize_entry("N", n)?,
            AttributeValue::B(b) => map.serialize_entry("B", &b64(b))?,
            AttributeValue::Bool(b) => map.serialize_entry("BOOL", b)?,
            AttributeValue::Null(b) => map.serialize_entry("NULL", b)?,
            AttributeValue::M(m) => map.serialize_entry("M", &JsonItem(m))?,
            AttributeValue::L(l) => {
                map.serialize_entry("L", &l.iter().map(JsonValue).collect::<Vec<_>>())?
            }
            AttributeValue::Ss(s) => map.serialize_entry("SS", s)?,
            AttributeValue::Ns(s) => map.serialize_entry("NS", s)?,
            AttributeValue::Bs(s) => {
                map.serialize_entry("BS", &s.iter().map(b64).collect::<Vec<_>>())?
            }
            _ => map.serialize_entry("unknown", &())?,
        }
        map.end()
    }
}

/// An item as DynamoDB JSON: `{"name":{"S":"x"}}`, attribute names sorted.
pub fn item_to_json(item: &Item) -> Value {
    // Serializing our own values into a `Value` cannot fail.
    serde_json::to_value(JsonItem(item)).unwrap_or(Value::Null)
}

/// One value as DynamoDB JSON.
pub fn value_to_json(v: &AttributeValue) -> Value {
    serde_json::to_value(JsonValue(v)).unwrap_or(Value::Null)
}

/// Reads an item from DynamoDB JSON, naming the path of the first bad value.
pub fn item_from_json(v: &Value) -> Result<Item, JsonValueError> {
    map_from_json(v, "")
}

fn map_from_json(v: &Value, path: &str) -> Result<Item, JsonValueError> {
    let obj = v.as_object().ok_or_else(|| JsonValueError {
        path: if path.is_empty() {
            "$".into()
        } else {
            path.into()
        },
        message: "expected an object of attributes".into(),
    })?;
    obj.iter()
        .map(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            value_from_json(v, &p).map(|v| (k.clone(), v))
        })
        .collect()
}

/// Reads one value from DynamoDB JSON (`{"S":"x"}`), naming `path` on error.
pub fn value_from_json(v: &Value, path: &str) -> Result<AttributeValue, JsonValueError> {
    let err = |message: String| JsonValueError {
        path: path.to_string(),
        message,
    };
    let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        err(format!(
            "expected one type descriptor like {{\"S\": ...}}, found {v}"
        ))
    })?;
    let (ty, inner) = obj.iter().next().ok_or_else(|| err("empty value".into()))?;
    let string = |x: &Value| {
        x.as_str()
            .map(str::to_string)
            .ok_or_else(|| err(format!("{ty} needs a string")))
    };
    let strings = |x: &Value| -> Result<Vec<String>, JsonValueError> {
        let arr = x
            .as_array()
            .ok_or_else(|| err(format!("{ty} needs a list")))?;
        if arr.is_empty() {
            return Err(err(format!("an empty {ty} set is invalid")));
        }
        arr.iter().map(string).collect()
    };
    let blob = |s: String| -> Result<Blob, JsonValueError> {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Blob::new)
            .map_err(|e| err(format!("bad base64: {e}")))
    };
    let number = |s: String| -> Result<String, JsonValueError> {
        Decimal::check_dynamodb(&s).map_err(|e| err(e.to_string()))?;
        Ok(s)
    };
    Ok(match ty.as_str() {
        "S" => AttributeValue::S(string(inner)?),
        "N" => AttributeValue::N(number(string(inner)?)?),
        "B" => AttributeValue::B(blob(string(inner)?)?),
        "BOOL" => AttributeValue::Bool(
            inner
                .as_bool()
                .ok_or_else(|| err("BOOL needs true or false".into()))?,
        ),
        "NULL" => match inner.as_bool() {
            Some(true) => AttributeValue::Null(true),
            _ => return Err(err("NULL must be true".into())),
        },
        "M" => AttributeValue::M(map_from_json(inner, path)?),
        "L" => {
            let arr = inner
                .as_array()
                .ok_or_else(|| err("L needs a list".into()))?;
            let items: Result<Vec<_>, _> = arr
                .iter()
                .enumerate()
                .map(|(i, x)| value_from_json(x, &format!("{path}[{i}]")))
                .collect();
            AttributeValue::L(items?)
        }
        "SS" => AttributeValue::Ss(strings(inner)?),
        "NS" => AttributeValue::Ns(
            strings(inner)?
                .into_iter()
                .map(number)
                .collect::<Result<_, _>>()?,
        ),
        "BS" => AttributeValue::Bs(
            strings(inner)?
                .into_iter()
                .map(blob)
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(err(format!("unknown type descriptor {other:?}"))),
    })
}

/// A short, readable rendering of a key: `userId=user123, sentAt=1705327530000`.
pub fn key_display(key: &Item) -> String {
    let mut names: Vec<&String> = key.keys().collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let v = match &key[*n] {
                AttributeValue::S(s) => s.clone(),
                AttributeValue::N(s) => s.clone(),
                other => value_to_json(other).to_string(),
            };
            format!("{n}={v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the named key attributes out of an item (those present).
pub fn project(item: &Item, names: &[&str]) -> Item {
    names
        .iter()
        .filter_map(|n| item.get(*n).map(|v| (n.to_string(), v.clone())))
        .collect()
}

/// The primary key of a target item as one text, for equality only.
pub fn key_text(item: &Item, key_names: &[&str]) -> String {
    let mut out = String::new();
    for name in key_names {
        match item.get(*name) {
            // Writing into a String cannot fail.
            Some(v) => out.push_str(&serde_json::to_string(&JsonValue(v)).unwrap_or_default()),
            None => out.push_str("null"),
        }
        out.push('\u{1f}');
    }
    out
}

/// The exact length of an item in DynamoDB JSON, as the SDK sends it:
/// counted from the values (the same bytes [`JsonItem`] would write,
/// without writing them).
pub fn wire_bytes(item: &Item) -> usize {
    // `{` `}`, a comma between entries, and per entry `"name":`.
    2 + item.len().saturating_sub(1)
        + item
            .iter()
            .map(|(k, v)| json_str_len(k) + 1 + value_wire_bytes(v))
            .sum::<usize>()
}

/// The length of one value in DynamoDB JSON: `{"S":"x"}` and its kin.
fn value_wire_bytes(v: &AttributeValue) -> usize {
    // `{"` + tag + `":` ... `}`
    let wrap = |tag: &str, inner: usize| 5 + tag.len() + inner;
    let list = |sizes: &mut dyn Iterator<Item = usize>| {
        let (mut n, mut total) = (0usize, 0usize);
        for s in sizes {
            n += 1;
            total += s;
        }
        2 + n.saturating_sub(1) + total
    };
    let b64 = |len: usize| 2 + len.div_ceil(3) * 4;
    match v {
        AttributeValue::S(s) => wrap("S", json_str_len(s)),
        AttributeValue::N(n) => wrap("N", json_str_len(n)),
        AttributeValue::B(b) => wrap("B", b64(b.as_ref().len())),
        AttributeValue::Bool(b) => wrap("BOOL", if *b { 4 } else { 5 }),
        AttributeValue::Null(b) => wrap("NULL", if *b { 4 } else { 5 }),
        AttributeValue::M(m) => wrap("M", wire_bytes(m)),
        AttributeValue::L(l) => wrap("L", list(&mut l.iter().map(value_wire_bytes))),
        AttributeValue::Ss(s) => wrap("SS", list(&mut s.iter().map(|x| json_str_len(x)))),
        AttributeValue::Ns(s) => wrap("NS", list(&mut s.iter().map(|x| json_str_len(x)))),
        AttributeValue::Bs(s) => wrap("BS", list(&mut s.iter().map(|b| b64(b.as_ref().len())))),
        _ => wrap("unknown", 4),
    }
}

/// The length of a string as a JSON string literal, quotes included:
/// `"` and `\` take two bytes, control characters two (`\n`) or six
/// (`\u001f`), everything else its UTF-8 bytes.
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(x: &str) -> AttributeValue {
        AttributeValue::S(x.into())
    }

    #[test]
    fn numbers_order_by_value() {
        let mut v = [
            "10", "-2.5", "0", "9.99", "1e2", "-30", "0.001", "100.0", "-0",
        ];
        v.sort_by(|a, b| {
            Decimal::parse(a)
                .unwrap()
                .cmp_value(&Decimal::parse(b).unwrap())
        });
        assert_eq!(
            v,
            ["-30", "-2.5", "0", "-0", "0.001", "9.99", "10", "1e2", "100.0"]
        );
    }

    #[test]
    fn size_matches_the_documented_example() {
        let item: Item = [
            ("shirt-color".to_string(), s("R")),
            ("shirt-size".to_string(), s("M")),
        ]
        .into();
        assert_eq!(item_size(&item), 23);
    }

    #[test]
    fn number_sizes() {
        assert_eq!(value_size(&AttributeValue::N("1".into())), 2);
        assert_eq!(value_size(&AttributeValue::N("12".into())), 2);
        assert_eq!(value_size(&AttributeValue::N("123".into())), 3);
        assert_eq!(value_size(&AttributeValue::N("0012300".into())), 3);
    }

    #[test]
    fn nested_sizes() {
        let m: Item = [("a".to_string(), s("xy"))].into();
        // 3 overhead + (1 name + 2 value + 1 element)
        assert_eq!(value_size(&AttributeValue::M(m)), 7);
        assert_eq!(
            value_size(&AttributeValue::L(vec![
                s("xy"),
                AttributeValue::Bool(true)
            ])),
            3 + 3 + 2
        );
        assert_eq!(
            value_size(&AttributeValue::Ss(vec!["ab".into(), "c".into()])),
            3
        );
    }

    #[test]
    fn write_units_count_indexes() {
        assert_eq!(write_units(1, 0), 1);
        assert_eq!(write_units(1024, 0), 1);
        assert_eq!(write_units(1025, 0), 2);
        assert_eq!(write_units(1025, 2), 6);
    }

    #[test]
    fn numbers_normalize() {
        for (a, b) in [
            ("1.0", "1"),
            ("1.5E2", "150"),
            ("00042", "42"),
            ("-0", "0"),
            ("0.0", "0"),
            ("1e-3", "0.001"),
        ] {
            assert_eq!(canonical_number(a), canonical_number(b), "{a} vs {b}");
        }
        assert_eq!(canonical_number("1.5E2"), "150");
        assert_eq!(canonical_number("-12.50"), "-12.5");
        assert_ne!(canonical_number("1"), canonical_number("10"));
        assert!(Decimal::parse("1.2.3").is_err());
        assert!(Decimal::parse("abc").is_err());
        assert!(Decimal::parse("").is_err());
        assert!(Decimal::parse_dynamodb("1E126").is_err());
        assert!(Decimal::parse_dynamodb("9.99E125").is_ok());
        assert!(Decimal::parse_dynamodb(&"1".repeat(39)).is_err());
    }

    #[test]
    fn sets_compare_as_sets() {
        let a = AttributeValue::Ss(vec!["a".into(), "b".into()]);
        let b = AttributeValue::Ss(vec!["b".into(), "a".into()]);
        assert!(values_equal(&a, &b));
        let a = AttributeValue::Ns(vec!["1.0".into(), "2".into()]);
        let b = AttributeValue::Ns(vec!["2".into(), "1".into()]);
        assert!(values_equal(&a, &b));
        assert!(!values_equal(
            &AttributeValue::L(vec![s("a"), s("b")]),
            &AttributeValue::L(vec![s("b"), s("a")])
        ));
    }

    #[test]
    fn json_rejects_bad_values_naming_the_path() {
        let v: Value = serde_json::json!({"a": {"M": {"b": {"NULL": false}}}});
        let e = item_from_json(&v).unwrap_err();
        assert_eq!(e.path, "a.b");
        let v: Value = serde_json::json!({"a": {"Q": "x"}});
        assert!(item_from_json(&v)
            .unwrap_err()
            .message
            .contains("unknown type descriptor"));
        let v: Value = serde_json::json!({"a": {"SS": []}});
        assert!(item_from_json(&v).is_err());
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = AttributeValue> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9é日 ]{0,8}".prop_map(AttributeValue::S),
            (-1_000_000i64..1_000_000).prop_map(|n| AttributeValue::N(n.to_string())),
            any::<bool>().prop_map(AttributeValue::Bool),
            Just(AttributeValue::Null(true)),
            proptest::collection::vec(any::<u8>(), 0..8)
                .prop_map(|b| AttributeValue::B(Blob::new(b))),
            proptest::collection::btree_set("[a-z]{1,4}", 1..4)
                .prop_map(|s| AttributeValue::Ss(s.into_iter().collect())),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(AttributeValue::L),
                proptest::collection::hash_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(AttributeValue::M),
            ]
        })
    }

    proptest! {
        #[test]
        fn json_round_trips(item in proptest::collection::hash_map("[a-zA-Z]{1,6}", arb_value(), 0..6)) {
            let back = item_from_json(&item_to_json(&item)).unwrap();
            prop_assert_eq!(back, item);
        }

        #[test]
        fn canonical_numbers_agree_with_f64_order(a in -1_000_000i64..1_000_000, scale in 0u32..4) {
            let text = format!("{}E-{}", a, scale);
            let d = Decimal::parse(&text).unwrap();
            let back: f64 = d.canonical().parse().unwrap();
            let want = a as f64 / 10f64.powi(scale as i32);
            prop_assert!((back - want).abs() < 1e-9);
        }
    }

    #[test]
    fn wire_bytes_is_the_json_length() {
        let item: Item = [("a".to_string(), AttributeValue::S("é".into()))].into();
        assert_eq!(wire_bytes(&item), r#"{"a":{"S":"é"}}"#.len());
    }

    fn arb_wire_value() -> impl Strategy<Value = AttributeValue> {
        let text = "[a-z\"\\\\\u{0}-\u{1f}\u{7f}é日]{0,6}";
        let leaf = prop_oneof![
            text.prop_map(AttributeValue::S),
            "-?[0-9]{1,5}(\\.[0-9]{1,3})?".prop_map(AttributeValue::N),
            any::<bool>().prop_map(AttributeValue::Bool),
            any::<bool>().prop_map(AttributeValue::Null),
            proptest::collection::vec(any::<u8>(), 0..10)
                .prop_map(|b| AttributeValue::B(Blob::new(b))),
            proptest::collection::vec(text, 0..3).prop_map(AttributeValue::Ss),
            proptest::collection::vec("[0-9]{1,3}", 0..3).prop_map(AttributeValue::Ns),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5), 0..3)
                .prop_map(|v| AttributeValue::Bs(v.into_iter().map(Blob::new).collect())),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(AttributeValue::L),
                proptest::collection::hash_map("[a-z\"]{1,4}", inner, 0..4)
                    .prop_map(AttributeValue::M),
            ]
        })
    }

    proptest! {
        /// The size counted from the values is the serializer's, byte for byte.
        #[test]
        fn wire_bytes_counts_what_the_serializer_writes(
            item in proptest::collection::hash_map("[a-zA-Z\n\"]{0,6}", arb_wire_value(), 0..6)
        ) {
            let written = serde_json::to_vec(&JsonItem(&item)).unwrap().len();
            prop_assert_eq!(wire_bytes(&item), written);
        }

        /// The allocation-free number check gives parse_dynamodb's verdict,
        /// and the size counts parse's digits.
        #[test]
        fn number_check_agrees_with_the_parser(
            text in prop_oneof![
                "[ +-]?[0-9]{0,45}(\\.[0-9]{0,45})?([eE][-+]?[0-9]{1,4})? ?",
                "[-+.eE0-9a ]{0,8}",
            ]
        ) {
            let parsed = Decimal::parse_dynamodb(&text).map(|_| ());
            prop_assert_eq!(Decimal::check_dynamodb(&text), parsed);
            let digits = Decimal::parse(&text).map(|d| d.digits.len()).ok();
            prop_assert_eq!(number_shape(&text).map(|s| s.digits), digits);
        }
    }
}
