//! Mappings beyond one-to-one (issue 16): a fan-out, a discriminated table
//! with N keys, an identity copy of a real AWS export; each migrated and
//! verified through the real binary against dynoxide.

use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use singletable::item::Item;

use crate::common::*;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mappings/examples")
        .join(name)
}

fn n(x: impl ToString) -> AttributeValue {
    AttributeValue::N(x.to_string())
}

/// Creates a legacy table with `keys` (name, type) and puts `items`.
async fn legacy(
    c: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[(&str, ScalarAttributeType)],
    items: &[Item],
) {
    let mut create = c
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (i, (name, ty)) in keys.iter().enumerate() {
        let kind = if i == 0 {
            KeyType::Hash
        } else {
            KeyType::Range
        };
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*name)
                    .attribute_type(ty.clone())
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*name)
                    .key_type(kind)
                    .build()
                    .unwrap(),
            );
    }
    create.send().await.unwrap();
    for item in items {
        c.put_item()
            .table_name(table)
            .set_item(Some(item.clone()))
            .send()
            .await
            .unwrap();
    }
}

/// One entity's line of a run report.
fn entity<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entity"] == name)
        .unwrap_or_else(|| panic!("no entity {name}: {r:#}"))
}

fn counts(r: &serde_json::Value, name: &str) -> (u64, u64, u64) {
    let e = entity(r, name);
    let get = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k}: {e:#}"));
    assert_eq!(e["reconciled"], true, "{e:#}");
    (get("read"), get("written"), get("filtered"))
}

/// One `accounts` row becomes a profile and a balance (closed accounts: a
/// profile only); counts are per (row, entity), and verify --full matches.
#[tokio::test]
async fn a_fan_out_makes_two_items_of_each_row_and_verifies() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let rows: Vec<Item> = (0..30)
        .map(|i| {
            let mut it: Item = [
                ("accountId".to_string(), s(&format!("a{i:02}"))),
                ("email".to_string(), s(&format!("A{i}@Example.com"))),
                ("name".to_string(), s(&format!("Name {i}"))),
                ("credits".to_string(), s(&format!("{}", i * 10))),
                ("spent".to_string(), n(i)),
            ]
            .into();
            if i % 5 == 0 {
                it.insert("closedAt".into(), s("2024-02-01T00:00:00Z"));
            }
            it
        })
        .collect();
    legacy(
        &c,
        "accounts",
        &[("accountId", ScalarAttributeType::S)],
        &rows,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mapping = example("fan-out.toml");
    let r = migrate_with(d, &db.endpoint, mapping.to_str().unwrap());
    assert_eq!(counts(&r, "account"), (30, 30, 0));
    assert_eq!(
        counts(&r, "balance"),
        (30, 24, 6),
        "closed accounts filtered"
    );
    let rules = &entity(&r, "balance")["filtered_by_rule"];
    assert_eq!(rules["only when closedAt is absent"], 6, "{rules}");
    let items = scan_all(&c, "accounts-table").await;
    assert_eq!(items.len(), 54);
    let balance = items
        .iter()
        .find(|i| str_of(i, "pk") == "ACCOUNT#a01" && str_of(i, "sk") == "CREDITS")
        .unwrap();
    let mut names: Vec<&str> = balance.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["credits", "entityType", "pk", "sk", "spent"]);
    assert_eq!(balance["credits"], n(10), "numbers coerced");
    let profile = items
        .iter()
        .find(|i| str_of(i, "pk") == "ACCOUNT#a05" && str_of(i, "sk") == "METADATA")
        .unwrap();
    assert_eq!(str_of(profile, "gsi1sk"), "a5@example.com");
    assert_eq!(str_of(profile, "closedAt"), "2024-02-01T00:00:00Z");

    let o = singletable(
        d,
        &db.endpoint,
        &["verify", "--mapping", mapping.to_str().unwrap(), "--full"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A balance item left behind by a closed account is extra.
    c.put_item()
        .table_name("accounts-table")
        .set_item(Some(
            [
                ("pk".to_string(), s("ACCOUNT#a05")),
                ("sk".to_string(), s("CREDITS")),
                ("entityType".to_string(), s("BALANCE")),
            ]
            .into(),
        ))
        .send()
        .await
        .unwrap();
    let o = singletable(
        d,
        &db.endpoint,
        &["verify", "--mapping", mapping.to_str().unwrap(), "--full"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ACCOUNT#a05"), "{}", text(&o));
}

/// A fan-out followed from the stream: each change of an `accounts` row
/// reaches both its entities (each entity follows the stream on its own),
/// a closed account's balance is deleted; the target then verifies.
#[tokio::test]
async fn a_fan_out_is_followed_from_the_stream() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let account = |i: usize, closed: bool| -> Item {
        let mut it: Item = [
            ("accountId".to_string(), s(&format!("a{i:02}"))),
            ("email".to_string(), s(&format!("a{i}@example.com"))),
            ("name".to_string(), s(&format!("Name {i}"))),
            ("credits".to_string(), n(i)),
            ("spent".to_string(), n(0)),
        ]
        .into();
        if closed {
            it.insert("closedAt".into(), s("2024-02-01T00:00:00Z"));
        }
        it
    };
    legacy(
        &c,
        "accounts",
        &[("accountId", ScalarAttributeType::S)],
        &[],
    )
    .await;
    let spec = aws_sdk_dynamodb::types::StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
        .build()
        .unwrap();
    let update = c
        .update_table()
        .table_name("accounts")
        .stream_specification(spec);
    update.send().await.unwrap();
    for i in 0..12 {
        let put = c.put_item().table_name("accounts");
        put.set_item(Some(account(i, false))).send().await.unwrap();
    }
    // Account 3 closes: its balance item must go.
    let put = c.put_item().table_name("accounts");
    put.set_item(Some(account(3, true))).send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mapping = example("fan-out.toml");
    let m = mapping.to_str().unwrap();
    let words = [
        "follow",
        "--mapping",
        m,
        "--create-table",
        "--from",
        "TRIM_HORIZON",
        "--until-caught-up",
        "--report",
        "follow.json",
    ];
    let o = singletable(d, &db.endpoint, &words);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let items = scan_all(&c, "accounts-table").await;
    assert_eq!(items.len(), 12 + 11, "12 profiles, 11 balances");
    assert!(!items
        .iter()
        .any(|i| str_of(i, "pk") == "ACCOUNT#a03" && str_of(i, "sk") == "CREDITS"));
    let o = singletable(d, &db.endpoint, &["verify", "--mapping", m, "--full"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A ledger of three kinds of rows, keyed by numbers: each kind becomes its
/// entity, rows of no kind are filtered by all, `seq` stays an N key.
#[tokio::test]
async fn a_discriminated_table_with_number_keys_migrates_and_verifies() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let kinds = ["ORDER", "REFUND", "NOTE:internal", "ORDER", "NOTE", "OTHER"];
    let rows: Vec<Item> = (0..60)
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            let mut it: Item = [
                ("accountId".to_string(), n(i % 4)),
                ("seq".to_string(), n(i * 7)),
                ("type".to_string(), s(kind)),
            ]
            .into();
            if !kind.starts_with("NOTE") {
                it.insert("amount".into(), s(&format!("{}.5", i)));
            }
            it
        })
        .collect();
    let keys = [
        ("accountId", ScalarAttributeType::N),
        ("seq", ScalarAttributeType::N),
    ];
    legacy(&c, "ledger", &keys, &rows).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mapping = example("discriminated.toml");
    let r = migrate_with(d, &db.endpoint, mapping.to_str().unwrap());
    assert_eq!(counts(&r, "order"), (60, 20, 40));
    assert_eq!(counts(&r, "refund"), (60, 10, 50));
    assert_eq!(counts(&r, "note"), (60, 20, 40));
    let rules = &entity(&r, "order")["filtered_by_rule"];
    assert_eq!(rules["only when type = \"ORDER\""], 40, "{rules}");

    let table = c
        .describe_table()
        .table_name("ledger-table")
        .send()
        .await
        .unwrap();
    let defs = table.table().unwrap().attribute_definitions();
    let seq = defs.iter().find(|d| d.attribute_name() == "seq").unwrap();
    assert_eq!(seq.attribute_type(), &ScalarAttributeType::N);
    // Account 1's entries come back in number order (7, 35, 63 ... as N,
    // not text order, where "105" would sort before "35").
    let q = c
        .query()
        .table_name("ledger-table")
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", s("ACCOUNT#1"))
        .send()
        .await
        .unwrap();
    let seqs: Vec<i64> = q
        .items()
        .iter()
        .map(|i| match &i["seq"] {
            AttributeValue::N(x) => x.parse().unwrap(),
            other => panic!("seq is {other:?}"),
        })
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(seqs, sorted);
    assert!(
        seqs.len() >= 10 && seqs.iter().any(|&x| x >= 100),
        "{seqs:?}"
    );
    let o = singletable(
        d,
        &db.endpoint,
        &["verify", "--mapping", mapping.to_str().unwrap(), "--full"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// The real AWS export (read from `../shared/data`), copied as it is with
/// the example identity mapping: keys and attributes unchanged, nothing
/// added; verify --full from the same exports matches.
#[tokio::test]
async fn an_identity_copy_of_the_real_aws_export_verifies() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/aws-export-test-table/AWSDynamoDB");
    let lines: Vec<String> = [
        "01768385930622-efd1a093",
        "01768386924000-d339e52d",
        "01768388186000-4a2fc3ff",
    ]
    .iter()
    .map(|id| format!("test={}/", root.join(id).display()))
    .collect();
    std::fs::write(d.join("exports.txt"), lines.join("\n")).unwrap();
    let mapping = example("identity-copy.toml");
    let m = mapping.to_str().unwrap();
    let accept = [
        "--exports-file",
        "exports.txt",
        "--accept-export-mismatch",
        "--accept-export-gaps",
    ];
    migrate_expect(d, &db.endpoint, m, &accept, 0);
    let c = client(&db.endpoint).await;
    let items = scan_all(&c, "test-copy").await;
    assert_eq!(items.len(), 8, "the documented final state");
    let updated = items
        .iter()
        .find(|i| str_of(i, "pk") == "1" && str_of(i, "sk") == "3")
        .unwrap();
    assert!(updated.contains_key("bin_update"), "{updated:?}");
    for item in &items {
        assert!(!item.contains_key("entityType"), "nothing added: {item:?}");
    }
    let o = singletable(
        d,
        &db.endpoint,
        &[&["verify", "--mapping", m, "--full"][..], &accept].concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("MATCH"), "{}", text(&o));
}

/// The seed's access patterns (declared in the shipped mapping) answer as
/// the source implies after a clean migration; one session's `gsi2sk`
/// altered makes the pattern that reads it fail, naming it and the item.
#[tokio::test]
async fn access_patterns_pass_after_a_migration_and_name_an_altered_sort_key() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 150, 16, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    migrate(d, &db.endpoint);
    let m = m();
    let run = |extra: &[&str]| {
        let words = [&["verify", "--mapping", &m, "--access-patterns"][..], extra].concat();
        singletable(d, &db.endpoint, &words)
    };
    let o = run(&["--report", "patterns.json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(d, "patterns.json");
    let md = std::fs::read_to_string(d.join("patterns.md")).unwrap();
    assert!(md.contains("a user's sessions, newest first"), "{md}");
    let patterns = r["patterns"].as_array().unwrap();
    assert_eq!(patterns.len(), 15, "7 key patterns, 4 on gsi1, 4 on gsi2");
    for p in patterns {
        assert!(p["queries"].as_u64().unwrap() > 0, "{p:#}");
        assert!(p["items_compared"].as_u64().unwrap() > 0, "{p:#}");
        assert_eq!(p["differences"], 0, "{p:#}");
    }
    assert!(text(&o).contains("a sample"), "{}", text(&o));

    // The newest session of some user gets an older gsi2sk: its answer is
    // out of order and its sort key is not what the source implies.
    let (_, session) = legacy
        .iter()
        .find(|(t, i)| *t == "ai-girlfriend-sessions" && i.contains_key("userId"))
        .unwrap();
    let (user, id) = (str_of(session, "userId"), str_of(session, "sessionId"));
    let (pk, sk) = (format!("USER#{user}"), format!("SESSION#{id}"));
    set_target(&c, (&pk, &sk), "gsi2sk", s("1999-01-01T00:00:00Z")).await;
    // And the user's credits item strays into the same answer.
    let sessions_of_user = format!("USER_SESSIONS#{user}");
    set_target(&c, (&pk, "CREDITS"), "gsi2pk", s(&sessions_of_user)).await;
    set_target(&c, (&pk, "CREDITS"), "gsi2sk", s("2000-01-01T00:00:00Z")).await;
    let o = run(&["--pattern-sample", "100000", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let failed: Vec<&serde_json::Value> = r["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["differences"] != 0)
        .collect();
    assert_eq!(failed.len(), 1, "{r:#}");
    assert_eq!(failed[0]["name"], "a user's sessions, newest first");
    let listed = failed[0]["listed"].to_string();
    assert!(
        listed.contains(&sk) && listed.contains("gsi2sk is") && listed.contains("1999-01-01"),
        "{listed}"
    );
    assert!(
        listed.contains("CREDITS") && listed.contains("an item of entity credits, not of session"),
        "{listed}"
    );
    // The table's own text says which pattern differs.
    let o = run(&["--pattern-sample", "100000"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("DIFFERS: 1 of 15 access patterns"),
        "{}",
        text(&o)
    );
}
