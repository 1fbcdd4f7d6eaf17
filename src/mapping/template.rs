//! Key and attribute templates: `USER#{userId}`, `{sentAt | epoch_ms}`.
//!
//! A template is literal text with `{...}` references to source attributes,
//! each optionally piped through a fixed set of functions. Templates are
//! parsed once, when the mapping loads, into [`Part`]s, so an unknown
//! function or a stray brace is reported with its file and line before a
//! single item is read. Rendering is pure and names the attribute that was
//! missing or of the wrong type. `{{` and `}}` stand for literal braces.

use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};

use crate::item::{Decimal, Item};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
    /// The capacity a rendering starts with: the literals, and room for a
    /// typical value per reference.
    size_hint: usize,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text copied as is.
    Literal(String),
    /// A source attribute, passed through functions left to right.
    Reference {
        attribute: String,
        functions: Vec<Function>,
    },
}

/// The functions a template may apply. Each takes text and gives text.
#[derive(Debug, Clone, PartialEq)]
pub enum Function {
    /// Epoch seconds -> `2024-01-15T10:00:00Z`.
    EpochSeconds,
    /// Epoch milliseconds -> `2024-01-15T10:00:00Z` (sub-second part dropped).
    EpochMillis,
    /// Any ISO-8601 / RFC 3339 time -> UTC `2024-01-15T10:00:00Z`.
    Iso,
    /// An ISO-8601 time -> its UTC date, `2024-01-15`.
    Date,
    /// An ISO-8601 time -> epoch seconds.
    ToEpochSeconds,
    /// Adds an integer to an integer.
    Add(i64),
    /// Left-pads with zeros to a width.
    Pad(usize),
    Lower,
    Upper,
}

/// The names of the functions, for error messages.
pub const FUNCTION_NAMES: &str =
    "epoch_s, epoch_ms, iso, date, to_epoch_s, add(N), pad(N), lower, upper";

/// Why a template text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} in template {template:?}")]
pub struct TemplateError {
    pub template: String,
    pub message: String,
}

/// Why a template could not be rendered for one item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("needs attribute {0}, which the item lacks")]
    Missing(String),
    #[error("attribute {attribute} is {found}; a template can use only S or N values")]
    WrongType {
        attribute: String,
        found: &'static str,
    },
    #[error("{function} cannot read {value:?} (from attribute {attribute}): {why}")]
    Function {
        attribute: String,
        function: String,
        value: String,
        why: String,
    },
}

impl Template {
    /// Parses a template text.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let err = |message: String| TemplateError {
            template: text.to_string(),
            message,
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(err(format!("unmatched '}}' at byte {i}"))),
                '{' => {
                    let rest = &text[i + 1..];
                    let end = rest
                        .find('}')
                        .ok_or_else(|| err(format!("unclosed '{{' at byte {i}")))?;
                    let inner = &rest[..end];
                    if inner.contains('{') {
                        return Err(err(format!("nested '{{' at byte {i}")));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(parse_reference(inner).map_err(err)?);
                    // Skip the characters of the reference and its closing brace.
                    while let Some((j, _)) = chars.peek() {
                        if *j > i + end + 1 {
                            break;
                        }
                        chars.next();
                    }
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let size_hint = parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.len(),
                Part::Reference { .. } => 24,
            })
            .sum();
        Ok(Template {
            parts,
            source: text.to_string(),
            size_hint,
        })
    }

    /// The template's text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The source attributes the template reads.
    pub fn attributes(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Reference { attribute, .. } => Some(attribute.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The attribute a template copies whole (`{id}`: one reference, no
    /// functions, nothing around it), if that is all it does.
    pub fn bare_attribute(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Reference {
                attribute,
                functions,
            }] if functions.is_empty() => Some(attribute),
            _ => None,
        }
    }

    /// Renders the template against an item.
    pub fn render(&self, item: &Item) -> Result<String, RenderError> {
        // One buffer, sized for the literals and a typical value each.
        let mut out = String::with_capacity(self.size_hint);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Reference {
                    attribute,
                    functions,
                } => {
                    let text = match item.get(attribute) {
                        None => return Err(RenderError::Missing(attribute.clone())),
                        Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => s.as_str(),
                        Some(other) => {
                            return Err(RenderError::WrongType {
                                attribute: attribute.clone(),
                                found: crate::item::type_name(other),
                            })
                        }
                    };
                    // The value is copied only when a function changes it.
                    let mut value = std::borrow::Cow::Borrowed(text);
                    for f in functions {
                        let changed = f.apply(&value).map_err(|why| RenderError::Function {
                            attribute: attribute.clone(),
                            function: f.to_string(),
                            value: value.to_string(),
                            why,
                        })?;
                        value = std::borrow::Cow::Owned(changed);
                    }
                    out.push_str(&value);
                }
            }
        }
        Ok(out)
    }
}

fn parse_reference(inner: &str) -> Result<Part, String> {
    let mut pieces = inner.split('|').map(str::trim);
    let attribute = pieces.next().unwrap_or_default();
    if attribute.is_empty() {
        return Err("empty reference '{}'".to_string());
    }
    if attribute.contains(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        return Err(format!("{attribute:?} is not an attribute name"));
    }
    let functions = pieces.map(parse_function).collect::<Result<Vec<_>, _>>()?;
    Ok(Part::Reference {
        attribute: attribute.to_string(),
        functions,
    })
}

fn parse_function(text: &str) -> Result<Function, String> {
    let (name, arg) = match text.find('(') {
        Some(i) if text.ends_with(')') => (&text[..i], Some(text[i + 1..text.len() - 1].trim())),
        Some(_) => return Err(format!("function {text:?} has an unclosed '('")),
        None => (text, None),
    };
    let int_arg = |what: &str| -> Result<i64, String> {
        arg.ok_or_else(|| format!("{name} needs an argument: {name}({what})"))?
            .parse::<i64>()
            .map_err(|_| format!("{name} needs an integer argument, got {text:?}"))
    };
    let no_arg = |f: Function| match arg {
        None => Ok(f),
        Some(_) => Err(format!("{name} takes no argument")),
    };
    match name.trim() {
        "epoch_s" => no_arg(Function::EpochSeconds),
        "epoch_ms" => no_arg(Function::EpochMillis),
        "iso" => no_arg(Function::Iso),
        "date" => no_arg(Function::Date),
        "to_epoch_s" => no_arg(Function::ToEpochSeconds),
        "lower" => no_arg(Function::Lower),
        "upper" => no_arg(Function::Upper),
        "add" => Ok(Function::Add(int_arg("N")?)),
        "pad" => {
            let n = int_arg("WIDTH")?;
            if !(1..=64).contains(&n) {
                return Err(format!("pad width must be 1 to 64, got {n}"));
            }
            Ok(Function::Pad(n as usize))
        }
        "" => Err("empty function after '|'".to_string()),
        other => Err(format!(
            "unknown function {other:?} (known: {FUNCTION_NAMES})"
        )),
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Function::EpochSeconds => write!(f, "epoch_s"),
            Function::EpochMillis => write!(f, "epoch_ms"),
            Function::Iso => write!(f, "iso"),
            Function::Date => write!(f, "date"),
            Function::ToEpochSeconds => write!(f, "to_epoch_s"),
            Function::Add(n) => write!(f, "add({n})"),
            Function::Pad(n) => write!(f, "pad({n})"),
            Function::Lower => write!(f, "lower"),
            Function::Upper => write!(f, "upper"),
        }
    }
}

impl Function {
    fn apply(&self, value: &str) -> Result<String, String> {
        match self {
            Function::EpochSeconds => Ok(iso_utc(&from_epoch(value, 1)?)),
            Function::EpochMillis => Ok(iso_utc(&from_epoch(value, 1000)?)),
            Function::Iso => Ok(iso_utc(&parse_time(value)?)),
            Function::Date => Ok(parse_time(value)?.format("%Y-%m-%d").to_string()),
            Function::ToEpochSeconds => Ok(parse_time(value)?.timestamp().to_string()),
            Function::Add(n) => {
                let v = integer(value)?;
                v.checked_add(*n)
                    .map(|x| x.to_string())
                    .ok_or_else(|| "overflow".to_string())
            }
            Function::Pad(width) => {
                let (sign, digits) = match value.strip_prefix('-') {
                    Some(d) => ("-", d),
                    None => ("", value),
                };
                Ok(format!(
                    "{sign}{digits:0>width$}",
                    width = width - sign.len().min(*width)
                ))
            }
            Function::Lower => Ok(value.to_lowercase()),
            Function::Upper => Ok(value.to_uppercase()),
        }
    }
}

/// The one time format of the target: UTC, whole seconds, `Z`. Fixed width
/// for years 0000-9999, so it sorts in time order as a string.
pub fn iso_utc(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn integer(value: &str) -> Result<i64, String> {
    // Plain digits need no decimal arithmetic.
    if let Ok(n) = value.parse::<i64>() {
        return Ok(n);
    }
    let d = Decimal::parse(value).map_err(|e| e.to_string())?;
    let text = d.canonical();
    text.parse::<i64>()
        .map_err(|_| format!("{value:?} is not an integer"))
}

fn from_epoch(value: &str, per_second: i64) -> Result<DateTime<Utc>, String> {
    let n = integer(value)?;
    let secs = n.div_euclid(per_second);
    let t = Utc
        .timestamp_opt(secs, 0)
        .single()
        .ok_or_else(|| format!("{value} is out of range"))?;
    let year = chrono::Datelike::year(&t);
    if !(0..=9999).contains(&year) {
        return Err(format!(
            "year {year} cannot be written as a sortable ISO-8601 string"
        ));
    }
    Ok(t)
}

/// Parses an ISO-8601 time: RFC 3339 with any offset, or without an offset
/// (taken as UTC), or a bare date (midnight UTC).
fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err("not an ISO-8601 time".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
    fn s(x: &str) -> AttributeValue {
        AttributeValue::S(x.into())
    }
    fn n(x: &str) -> AttributeValue {
        AttributeValue::N(x.into())
    }

    #[test]
    fn renders_the_seed_patterns() {
        let it = item(&[
            ("userId", s("user123")),
            ("createdAt", s("2024-01-15T10:00:00Z")),
            ("sentAt", n("1705327530000")),
        ]);
        assert_eq!(
            Template::parse("USER#{userId}")
                .unwrap()
                .render(&it)
                .unwrap(),
            "USER#user123"
        );
        assert_eq!(
            Template::parse("USER#{createdAt | iso}#{userId}")
                .unwrap()
                .render(&it)
                .unwrap(),
            "USER#2024-01-15T10:00:00Z#user123"
        );
        assert_eq!(
            Template::parse("MSG#{sentAt|epoch_ms}")
                .unwrap()
                .render(&it)
                .unwrap(),
            "MSG#2024-01-15T14:05:30Z"
        );
        assert_eq!(
            Template::parse("METADATA").unwrap().render(&it).unwrap(),
            "METADATA"
        );
        assert_eq!(
            Template::parse("{{literal}}").unwrap().render(&it).unwrap(),
            "{literal}"
        );
    }

    #[test]
    fn conversions() {
        let it = item(&[
            ("ts", s("2024-01-15T16:05:30+02:00")),
            ("secs", n("1705312800")),
            ("ms", n("1705327530999")),
            ("k", n("7")),
        ]);
        let r = |t: &str| Template::parse(t).unwrap().render(&it).unwrap();
        assert_eq!(r("{ts|iso}"), "2024-01-15T14:05:30Z");
        assert_eq!(r("{ts|date}"), "2024-01-15");
        assert_eq!(r("{ts|to_epoch_s}"), "1705327530");
        assert_eq!(r("{ts|to_epoch_s|add(86400)}"), "1705413930");
        assert_eq!(r("{secs|epoch_s}"), "2024-01-15T10:00:00Z");
        assert_eq!(r("{ms|epoch_ms}"), "2024-01-15T14:05:30Z");
        assert_eq!(r("{k|pad(4)}"), "0007");
        assert_eq!(r("{ts|lower}"), "2024-01-15t16:05:30+02:00");
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let e = Template::parse("USER#{userId | frobnicate}").unwrap_err();
        assert!(e.message.contains("unknown function \"frobnicate\""), "{e}");
        assert!(Template::parse("USER#{userId")
            .unwrap_err()
            .message
            .contains("unclosed"));
        assert!(Template::parse("USER#userId}")
            .unwrap_err()
            .message
            .contains("unmatched"));
        assert!(Template::parse("{}")
            .unwrap_err()
            .message
            .contains("empty reference"));
        assert!(Template::parse("{a|pad}")
            .unwrap_err()
            .message
            .contains("needs an argument"));
        assert!(Template::parse("{a|iso(3)}")
            .unwrap_err()
            .message
            .contains("takes no argument"));
        assert!(Template::parse("{a|}").is_err());
    }

    #[test]
    fn render_errors_name_the_attribute() {
        let it = item(&[
            ("m", AttributeValue::M(Item::new())),
            ("bad", s("yesterday")),
        ]);
        assert_eq!(
            Template::parse("{x}").unwrap().render(&it),
            Err(RenderError::Missing("x".into()))
        );
        assert!(matches!(
            Template::parse("{m}").unwrap().render(&it),
            Err(RenderError::WrongType { .. })
        ));
        let e = Template::parse("{bad|date}")
            .unwrap()
            .render(&it)
            .unwrap_err();
        assert!(
            e.to_string().contains("date cannot read \"yesterday\""),
            "{e}"
        );
    }

    proptest! {
        /// Sort keys built from epoch values sort in time order as strings.
        #[test]
        fn epoch_renderings_sort_in_time_order(a in 0i64..253_402_300_799, b in 0i64..253_402_300_799) {
            let t = Template::parse("{x|epoch_s}").unwrap();
            let ra = t.render(&item(&[("x", n(&a.to_string()))])).unwrap();
            let rb = t.render(&item(&[("x", n(&b.to_string()))])).unwrap();
            prop_assert_eq!(a.cmp(&b), ra.cmp(&rb));
        }

        /// iso is idempotent: a normalized time normalizes to itself.
        #[test]
        fn iso_is_idempotent(a in 0i64..253_402_300_799) {
            let first = Template::parse("{x|epoch_s}").unwrap().render(&item(&[("x", n(&a.to_string()))])).unwrap();
            let again = Template::parse("{x|iso}").unwrap().render(&item(&[("x", s(&first))])).unwrap();
            prop_assert_eq!(first, again);
        }

        /// Any text without braces is a template that renders to itself.
        #[test]
        fn plain_text_is_literal(text in "[^{}]{0,40}") {
            prop_assert_eq!(Template::parse(&text).unwrap().render(&Item::new()).unwrap(), text);
        }
    }
}
