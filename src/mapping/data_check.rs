//! The mapping checked against the data: do the attributes it names exist?
//!
//! Pure: given an entity and a sample of its source items (the first few
//! hundred a Scan page or an export gives), every attribute a key template,
//! a computed attribute, `numbers`, `drop`, `keep` or `rename` names is
//! looked for. One that no sampled item has is almost always a typo
//! (`{userid}` for `{userId}`) that would dead-letter every item or do
//! nothing: an error, with the closest attribute that does appear. One that
//! only some items have is a warning with the share: those items will be
//! dead-lettered (a key template) or written without it. Reading the sample
//! is the sources' job; this module only judges it.

use std::collections::HashMap;

use super::Entity;
use crate::item::Item;

/// What the sample says about one entity's mapping.
#[derive(Debug, Default, PartialEq)]
pub struct Findings {
    /// Attributes no sampled item has (each names file, line and field).
    pub errors: Vec<String>,
    /// Attributes only some sampled items have.
    pub warnings: Vec<String>,
}

/// One attribute the mapping names, and where.
struct Named<'a> {
    attribute: &'a str,
    field: String,
    /// A missing attribute dead-letters the item (a key or required template).
    required: bool,
    /// The mapping says it may be missing (an optional computed attribute).
    optional: bool,
}

/// Every attribute the entity names, with the field that names it.
fn named(entity: &Entity) -> Vec<Named<'_>> {
    let mut out = Vec::new();
    for (key, t) in &entity.keys {
        for a in t.attributes() {
            let field = format!("keys.{key}");
            out.push(Named {
                attribute: a,
                field,
                required: true,
                optional: false,
            });
        }
    }
    for c in &entity.set {
        for a in c.template.attributes() {
            let field = format!("set.{}", c.name);
            let optional = c.optional;
            out.push(Named {
                attribute: a,
                field,
                required: !optional,
                optional,
            });
        }
    }
    let lists: [(&str, Vec<&str>); 4] = [
        (
            "numbers",
            entity.numbers.iter().map(String::as_str).collect(),
        ),
        ("drop", entity.drop.iter().map(String::as_str).collect()),
        (
            "keep",
            entity.keep.iter().flatten().map(String::as_str).collect(),
        ),
        (
            "rename",
            entity
                .rename
                .iter()
                .map(|(from, _)| from.as_str())
                .collect(),
        ),
    ];
    for (field, attrs) in lists {
        for a in attrs {
            out.push(Named {
                attribute: a,
                field: field.to_string(),
                required: false,
                optional: false,
            });
        }
    }
    out
}

/// Judges `entity` against `sample` (its source items; only those its
/// `when` takes count). An empty sample (an empty table, or no item of the
/// entity's kind among the first) proves nothing and finds nothing.
pub fn check(entity: &Entity, sample: &[Item]) -> Findings {
    let mut findings = Findings::default();
    let sample: Vec<&Item> = sample
        .iter()
        .filter(|i| entity.when.as_ref().is_none_or(|w| w.matches(i)))
        .collect();
    if sample.is_empty() {
        return findings;
    }
    let n = sample.len();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for item in sample {
        for name in item.keys() {
            *seen.entry(name.as_str()).or_default() += 1;
        }
    }
    let mut done = std::collections::HashSet::new();
    for named in named(entity) {
        if !done.insert((named.attribute, named.field.clone())) {
            continue;
        }
        let count = seen.get(named.attribute).copied().unwrap_or(0);
        let place = format!(
            "{}:{}: entity {}, {}",
            entity.at.file.display(),
            entity.at.line_of(&named.field),
            entity.name,
            named.field
        );
        let attr = named.attribute;
        let table = &entity.source_table;
        if count == 0 {
            let hint = did_you_mean(attr, &seen)
                .map(|(a, k)| format!("; did you mean {a:?} (in {k} of {n})?"))
                .unwrap_or_default();
            let text = format!(
                "{place}: names attribute {attr:?}, which none of the {n} sampled items of {table} has{hint}"
            );
            if named.optional {
                findings.warnings.push(text);
            } else {
                findings.errors.push(text);
            }
        } else if count < n && named.required {
            findings.warnings.push(format!(
                "{place}: attribute {attr:?} is in {count} of {n} sampled items of {table}; items without it will be dead-lettered"
            ));
        }
    }
    findings
}

/// The seen attribute closest to `wanted`: the same but for case, or at
/// most a third of its letters away.
fn did_you_mean<'a>(wanted: &str, seen: &HashMap<&'a str, usize>) -> Option<(&'a str, usize)> {
    let lower = wanted.to_lowercase();
    let mut best: Option<(usize, &'a str, usize)> = None;
    for (name, count) in seen {
        let d = if name.to_lowercase() == lower {
            0
        } else {
            distance(&lower, &name.to_lowercase())
        };
        let better = best.is_none_or(|(bd, bn, _)| (d, *name) < (bd, bn));
        if better {
            best = Some((d, name, *count));
        }
    }
    let limit = (wanted.chars().count() / 3).max(2);
    best.filter(|(d, _, _)| *d <= limit).map(|(_, n, c)| (n, c))
}

/// Levenshtein distance, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapping;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn mapping(keys: &str) -> Mapping {
        let text = format!(
            "[table]\nname = \"t\"\npartition_key = \"pk\"\nsort_key = \"sk\"\n\n[[entity]]\nname = \"user\"\nsource = \"users\"\nsource_key = [\"userId\"]\nentity_type = \"USER\"\nnumbers = [\"credits\"]\n[entity.keys]\n{keys}\n"
        );
        Mapping::from_str(std::path::Path::new("m.toml"), &text).unwrap()
    }

    fn user(i: usize, with_created: bool) -> Item {
        let mut item: Item = [
            ("userId".to_string(), AttributeValue::S(format!("u{i}"))),
            ("credits".to_string(), AttributeValue::N("1".into())),
        ]
        .into();
        if with_created {
            item.insert("createdAt".into(), AttributeValue::S("2024".into()));
        }
        item
    }

    #[test]
    fn only_the_items_an_entity_takes_are_judged() {
        let m = mapping("pk = \"USER#{userId}\"\nsk = \"C#{createdAt}\"");
        let mut e = m.entities[0].clone();
        // Half the sample lacks createdAt: a warning, unless `when` leaves
        // exactly those out.
        let sample: Vec<Item> = (0..100).map(|i| user(i, i % 2 == 0)).collect();
        assert_eq!(check(&e, &sample).warnings.len(), 1);
        e.when = Some(crate::mapping::When {
            attribute: "createdAt".into(),
            test: crate::mapping::WhenTest::Present,
        });
        assert_eq!(check(&e, &sample), Findings::default());
    }

    #[test]
    fn a_typo_is_an_error_with_its_did_you_mean() {
        let m = mapping("pk = \"USER#{userid}\"\nsk = \"METADATA\"");
        let sample: Vec<Item> = (0..250).map(|i| user(i, true)).collect();
        let f = check(&m.entities[0], &sample);
        assert_eq!(f.errors.len(), 1, "{f:?}");
        assert_eq!(
            f.errors[0],
            "m.toml:13: entity user, keys.pk: names attribute \"userid\", which none of the 250 sampled items of users has; did you mean \"userId\" (in 250 of 250)?"
        );
    }

    #[test]
    fn an_attribute_some_items_lack_is_a_warning_with_the_share() {
        let m = mapping("pk = \"USER#{userId}\"\nsk = \"U#{createdAt}\"");
        let sample: Vec<Item> = (0..200).map(|i| user(i, i % 4 != 0)).collect();
        let f = check(&m.entities[0], &sample);
        assert!(f.errors.is_empty(), "{f:?}");
        assert_eq!(f.warnings.len(), 1);
        assert!(
            f.warnings[0].contains("\"createdAt\" is in 150 of 200"),
            "{f:?}"
        );
        assert!(
            check(&m.entities[0], &[]).errors.is_empty(),
            "no sample, no verdict"
        );
    }

    #[test]
    fn lists_name_attributes_too_and_far_names_get_no_guess() {
        let m = mapping("pk = \"USER#{userId}\"\nsk = \"X\"");
        let sample: Vec<Item> = (0..10)
            .map(|i| {
                let mut u = user(i, false);
                u.remove("credits");
                u
            })
            .collect();
        let f = check(&m.entities[0], &sample);
        assert_eq!(f.errors.len(), 1);
        assert!(f.errors[0].contains("entity user, numbers: names attribute \"credits\""));
        assert!(!f.errors[0].contains("did you mean"), "{f:?}");
        assert_eq!(distance("userid", "userId".to_lowercase().as_str()), 0);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
