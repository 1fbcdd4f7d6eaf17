//! `plan`: the forecast, checked against what `migrate` then does with the
//! same data, and against computations of its own.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::AttributeValue;
use singletable::item::{item_size, item_to_json, Item};

use crate::common::*;

/// The shipped mapping, with a session's sort key made from its id in
/// upper case: ids that differ only in case collide, and a session named
/// "metadata" lands on its user's record.
fn colliding_mapping() -> String {
    std::fs::read_to_string(mapping_path()).unwrap().replace(
        "sk = \"SESSION#{sessionId}\"",
        "sk = \"{sessionId | upper}\"",
    )
}

/// A copy of `item` with some attributes set.
fn with(item: &Item, set: &[(&str, AttributeValue)]) -> Item {
    let mut out = item.clone();
    for (k, v) in set {
        out.insert(k.to_string(), v.clone());
    }
    out
}

/// The legacy items of `table` the shipped mapping writes (no dirty row).
fn clean<'a>(legacy: &'a [(&'static str, Item)], table: &str) -> Vec<&'a Item> {
    let m = singletable::mapping::Mapping::load(&mapping_path()).unwrap();
    let (_, e) = m.entity_for_table(table).unwrap();
    legacy
        .iter()
        .filter(|(t, _)| *t == table)
        .map(|(_, i)| i)
        .filter(|i| {
            matches!(
                singletable::transform::transform(e, &m.table, i),
                singletable::transform::Outcome::Put(_)
            )
        })
        .collect()
}

async fn put(c: &aws_sdk_dynamodb::Client, table: &str, item: Item) {
    c.put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

/// Plants the collisions and the hot key; returns (the hot session's
/// messages, the two collisions as (target key, source keys)).
async fn plant(
    c: &aws_sdk_dynamodb::Client,
    legacy: &[(&'static str, Item)],
) -> (Vec<Item>, BTreeMap<String, BTreeSet<String>>) {
    let session = clean(legacy, "ai-girlfriend-sessions")[0].clone();
    let users: Vec<&str> = clean(legacy, "ai-girlfriend-users")
        .into_iter()
        .map(|i| str_of(i, "userId"))
        .take(2)
        .collect();
    let planted = [
        with(
            &session,
            &[("sessionId", s("metadata")), ("userId", s(users[0]))],
        ),
        with(
            &session,
            &[("sessionId", s("AbC")), ("userId", s(users[1]))],
        ),
        with(
            &session,
            &[("sessionId", s("abc")), ("userId", s(users[1]))],
        ),
    ];
    for s in planted {
        put(c, "ai-girlfriend-sessions", s).await;
    }
    let message = clean(legacy, "ai-girlfriend-messages")[0].clone();
    let mut hot = Vec::new();
    for n in 0..300 {
        let m = with(
            &message,
            &[
                ("sessionId", s("hot-session")),
                ("messageId", s(&format!("hot{n:04}"))),
                (
                    "sentAt",
                    AttributeValue::N(format!("{}", 1_705_330_000_000i64 + n)),
                ),
            ],
        );
        put(c, "ai-girlfriend-messages", m.clone()).await;
        hot.push(m);
    }
    let key = |e: &str, k: serde_json::Value| format!("{e} {k}");
    let collisions = BTreeMap::from([
        (
            format!("USER#{} / METADATA", users[0]),
            BTreeSet::from([
                key("user", serde_json::json!({"userId": {"S": users[0]}})),
                key(
                    "session",
                    serde_json::json!({"sessionId": {"S": "metadata"}}),
                ),
            ]),
        ),
        (
            format!("USER#{} / ABC", users[1]),
            BTreeSet::from([
                key("session", serde_json::json!({"sessionId": {"S": "AbC"}})),
                key("session", serde_json::json!({"sessionId": {"S": "abc"}})),
            ]),
        ),
    ]);
    (hot, collisions)
}

/// The collisions a plan listed, as (target key, entity and source key).
fn listed(plan: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
    plan["collisions"]["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let who = c["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| format!("{} {}", r["entity"].as_str().unwrap(), r["source_key"]))
                .collect();
            (c["target_key"].as_str().unwrap().to_string(), who)
        })
        .collect()
}

/// (source table, source key, reason) of each line of a dead-letter file.
fn dead_set(dir: &std::path::Path, name: &str) -> BTreeSet<String> {
    dead_letters(dir, name)
        .iter()
        .map(|l| format!("{} {} {}", l["source_table"], l["source_key"], l["reason"]))
        .collect()
}

#[tokio::test]
async fn plan_forecasts_what_the_migration_then_does() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 3000, 31, 0.02).await;
    let (hot, expected_collisions) = plant(&c, &legacy).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("m.toml"), colliding_mapping()).unwrap();
    let tables_before = c.list_tables().send().await.unwrap().table_names().to_vec();

    let run =
        args("plan --mapping m.toml --report plan.json --dead-letter plan-dead.jsonl --top 3");
    let o = singletable(d, &db.endpoint, &run);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let p = report(d, "plan.json");
    assert!(d.join("plan.md").exists());

    // Nothing was written: no table, no item.
    let tables_after = c.list_tables().send().await.unwrap().table_names().to_vec();
    assert_eq!(tables_before, tables_after);
    assert!(!tables_after.iter().any(|t| t == TARGET));

    // Collisions, listed exactly with their source keys.
    assert_eq!(listed(&p), expected_collisions, "{:#}", p["collisions"]);
    assert_eq!(p["collisions"]["count"], 2);
    assert_eq!(p["collisions"]["across_entities"], 1);
    assert!(out.contains("collisions: 2 target key(s)"), "{out}");
    // Three write units an item by BatchWriteItem cost more than the import.
    let usd = |k: &str| {
        p["cost"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k}: {:#}", p["cost"]))
    };
    assert!(
        usd("import_table_usd") < usd("on_demand_writes_usd"),
        "{:#}",
        p["cost"]
    );
    assert!(out.contains("cheaper through ImportTable"), "{out}");

    // The hot key: the table's hottest partition, with its exact units.
    let table_hot = &p["hot_partitions"][0];
    assert_eq!(table_hot["on"], "table");
    assert_eq!(table_hot["top"][0]["value"], "SESSION#hot-session");
    let gsi2 = p["hot_partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["on"] == "gsi2")
        .unwrap();
    assert_eq!(gsi2["top"][0]["value"], "ALL_MESSAGES", "{gsi2:#}");
    let all_messages = gsi2["top"][0]["write_units"].as_f64().unwrap();
    assert_eq!(
        gsi2["top"][0]["min_seconds"].as_f64().unwrap(),
        all_messages / 1000.0
    );
    let gsi1 = p["hot_partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["on"] == "gsi1");
    assert!(gsi1.is_some_and(|h| h["top"][0]["write_units"].as_u64() > Some(0)));
    assert!(p["duration"]["binds"].is_string());

    // The real migration: the same dead letters, the same write units.
    let warm = args("--warm-write-units 8000");
    let (r, _) = migrate_expect(d, &db.endpoint, "m.toml", &warm, 3);
    assert_eq!(dead_set(d, "plan-dead.jsonl"), dead_set(d, "dead.jsonl"));
    assert!(!dead_set(d, "dead.jsonl").is_empty());
    let t = &r["totals"];
    assert_eq!(p["totals"]["would_dead_letter"], t["dead_lettered"]);
    assert_eq!(p["totals"]["read"], t["read"]);
    assert_eq!(
        p["totals"]["would_write"].as_u64().unwrap(),
        t["written"].as_u64().unwrap() + t["overwritten"].as_u64().unwrap()
    );
    assert_eq!(
        p["write_units"]["total"], t["write_units_estimated"],
        "{:#}",
        p["write_units"]
    );
    assert_eq!(t["overwritten"], 2, "the two collisions: {r:#}");

    // Sizes, against the sizes of what the migration wrote.
    let mut sizes: Vec<u64> = scan_all(&c, TARGET)
        .await
        .iter()
        .map(|i| item_size(i) as u64)
        .collect();
    sizes.sort();
    let s = &p["sizes"]["total"];
    let written = sizes.len() as u64 + 2; // the two overwritten records
    assert_eq!(s["items"].as_u64().unwrap(), written);
    assert_eq!(s["max"].as_u64().unwrap(), *sizes.last().unwrap());
    let p50 = s["p50"].as_u64().unwrap();
    let exact = sizes[sizes.len() / 2];
    assert!(
        p50.abs_diff(exact) <= exact / 64 + 2,
        "p50 {p50} vs {exact}"
    );
    let hot_units: u64 = hot.len() as u64; // each hot message is under 1 KB
    assert!(
        hot.iter().all(|m| item_size(m) < 900),
        "{}",
        item_to_json(&hot[0])
    );
    assert_eq!(
        table_hot["top"][0]["write_units"].as_u64().unwrap(),
        hot_units
    );
}

/// From exports with an incremental round: the plan counts the deletes and
/// the incremental's writes, and its write units are the run's.
#[tokio::test]
async fn plan_on_exports_counts_every_phase_as_the_run_writes_it() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = "--scale 3000 --seed 32 --exports-only --export-to exp --incremental";
    demo_exports(d, &db.endpoint, "exports.txt", &args(data));
    let o = singletable(
        d,
        &db.endpoint,
        &[
            &args("plan --exports-file exports.txt --report plan.json --mapping")[..],
            &[&m()],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let p = report(d, "plan.json");
    assert!(
        p["totals"]["would_delete"].as_u64().unwrap() > 0,
        "{:#}",
        p["totals"]
    );
    assert_eq!(p["totals"]["reconciled"], true);
    let extra = args("--exports-file exports.txt --allow-dead-letters 5%");
    let (r, _) = migrate_expect(d, &db.endpoint, &m(), &extra, 0);
    let t = &r["totals"];
    assert_eq!(p["write_units"]["total"], t["write_units_estimated"]);
    assert_eq!(p["totals"]["would_delete"], t["deleted"]);
    assert_eq!(p["totals"]["stale_key_deletes"], t["stale_keys_deleted"]);
}
