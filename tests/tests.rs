//! The one integration-test binary: the real `singletable` binary against
//! real DynamoDB implementations (dynoxide in-process, moto as a server),
//! through the real AWS SDK. Each test has its own server and temp dir.

mod common;
mod exports;
mod faults;
mod follow;
mod import;
mod mappings;
mod plan;
mod repair;
mod resume;
mod shards;
mod usability;
mod verifier;

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use singletable::item::{differing_attributes, item_from_json, Item};

fn record(json: serde_json::Value) -> Item {
    item_from_json(&json).unwrap()
}

/// The seed's data model examples, exactly as `seed-design.md` shows them.
fn seed_records() -> Vec<Item> {
    use serde_json::json;
    vec![
        record(json!({
            "pk": {"S": "USER#user123"}, "sk": {"S": "METADATA"}, "entityType": {"S": "USER"},
            "userId": {"S": "user123"}, "email": {"S": "user@example.com"}, "name": {"S": "John Doe"},
            "createdAt": {"S": "2024-01-15T10:00:00Z"}, "lastActiveAt": {"S": "2024-01-15T15:30:00Z"},
            "messageCount": {"N": "50"}, "sessionCount": {"N": "3"}, "subscriptionStatus": {"S": "free"},
            "gsi1pk": {"S": "USERS"}, "gsi1sk": {"S": "USER#2024-01-15T10:00:00Z#user123"},
            "gsi2pk": {"S": "ACTIVE_USERS"}, "gsi2sk": {"S": "2024-01-15T15:30:00Z"}
        })),
        record(json!({
            "pk": {"S": "USER#user123"}, "sk": {"S": "CREDITS"}, "entityType": {"S": "CREDITS"},
            "credits": {"N": "85"}, "totalCreditsUsed": {"N": "15"}, "lastUpdated": {"S": "2024-01-15T15:30:00Z"}
        })),
        record(json!({
            "pk": {"S": "USER#user123"}, "sk": {"S": "SESSION#session456"}, "entityType": {"S": "SESSION"},
            "sessionId": {"S": "session456"}, "userId": {"S": "user123"},
            "startedAt": {"S": "2024-01-15T14:00:00Z"}, "lastMessageAt": {"S": "2024-01-15T15:30:00Z"},
            "messageCount": {"N": "25"}, "relationshipStage": {"S": "comfortable"},
            "gsi1pk": {"S": "SESSIONS"}, "gsi1sk": {"S": "SESSION#2024-01-15T14:00:00Z#session456"},
            "gsi2pk": {"S": "USER_SESSIONS#user123"}, "gsi2sk": {"S": "2024-01-15T14:00:00Z"}
        })),
        record(json!({
            "pk": {"S": "SESSION#session456"}, "sk": {"S": "MSG#2024-01-15T14:05:30Z#msg789"}, "entityType": {"S": "MESSAGE"},
            "messageId": {"S": "msg789"}, "sessionId": {"S": "session456"}, "userId": {"S": "user123"},
            "role": {"S": "user"}, "content": {"S": "Hello, how are you today?"},
            "timestamp": {"S": "2024-01-15T14:05:30Z"},
            "metadata": {"M": {"emotion": {"S": "happy"}, "topics": {"SS": ["greeting", "wellbeing"]}}},
            "gsi1pk": {"S": "USER_MESSAGES#user123"}, "gsi1sk": {"S": "2024-01-15T14:05:30Z#msg789"},
            "gsi2pk": {"S": "ALL_MESSAGES"}, "gsi2sk": {"S": "2024-01-15T14:05:30Z"}
        })),
        record(json!({
            "pk": {"S": "ANALYTICS#2024-01-15"}, "sk": {"S": "EVENT#2024-01-15T14:05:30Z#evt123"}, "entityType": {"S": "ANALYTICS"},
            "eventId": {"S": "evt123"}, "userId": {"S": "user123"}, "eventType": {"S": "message_sent"},
            "eventData": {"M": {"sessionId": {"S": "session456"}, "messageLength": {"N": "25"}, "creditsUsed": {"N": "1"}}},
            "timestamp": {"S": "2024-01-15T14:05:30Z"}, "date": {"S": "2024-01-15"},
            "gsi1pk": {"S": "EVENT_TYPE#message_sent"}, "gsi1sk": {"S": "2024-01-15T14:05:30Z#evt123"},
            "gsi2pk": {"S": "USER_ANALYTICS#user123"}, "gsi2sk": {"S": "2024-01-15T14:05:30Z"}
        })),
    ]
}

async fn load_golden(c: &aws_sdk_dynamodb::Client) {
    singletable::demo::create_legacy_tables(c).await.unwrap();
    singletable::demo::load(c, &singletable::demo::golden_legacy_items())
        .await
        .unwrap();
}

#[tokio::test]
async fn golden_legacy_rows_become_exactly_the_seed_records() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_golden(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let report = migrate(dir.path(), &db.endpoint);
    assert_eq!(report["totals"]["written"], 5, "{report:#}");
    assert_eq!(report["totals"]["dead_lettered"], 0);
    for want in seed_records() {
        let (AttributeValue::S(pk), AttributeValue::S(sk)) = (&want["pk"], &want["sk"]) else {
            unreachable!()
        };
        let got = get(&c, pk, sk)
            .await
            .unwrap_or_else(|| panic!("{pk}/{sk} is missing"));
        assert_eq!(
            differing_attributes(&want, &got),
            Vec::<String>::new(),
            "{pk}/{sk}: {got:?}"
        );
    }
    assert_eq!(
        scan_all(&c, TARGET).await.len(),
        5,
        "nothing but the five records"
    );
}

#[tokio::test]
async fn all_seven_entities_answer_every_access_pattern_in_order() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 800, 11, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let report = migrate(dir.path(), &db.endpoint);
    let count = |t: &str| legacy.iter().filter(|(x, _)| *x == t).count();
    for e in report["entities"].as_array().unwrap() {
        assert_eq!(e["written"], e["read"], "{e}");
        assert!(e["read"].as_u64().unwrap() > 0, "{e}");
    }
    let target = scan_all(&c, TARGET).await;
    let types: BTreeSet<&str> = target.iter().map(|i| str_of(i, "entityType")).collect();
    assert_eq!(
        types,
        [
            "ANALYTICS",
            "CREDITS",
            "DAILY_STATS",
            "MESSAGE",
            "PERSONALITY",
            "SESSION",
            "USER"
        ]
        .into()
    );

    // Primary key patterns.
    let user123: BTreeSet<String> = target
        .iter()
        .filter(|i| str_of(i, "pk") == "USER#user123")
        .map(|i| str_of(i, "sk").to_string())
        .collect();
    assert_eq!(
        user123,
        ["CREDITS", "METADATA", "SESSION#session456"]
            .map(String::from)
            .into()
    );
    assert!(
        get(&c, "SESSION#session456", "MSG#2024-01-15T14:05:30Z#msg789")
            .await
            .is_some()
    );
    assert!(get(
        &c,
        "ANALYTICS#2024-01-15",
        "EVENT#2024-01-15T14:05:30Z#evt123"
    )
    .await
    .is_some());
    assert!(get(&c, "STATS#2024-01-01", "TYPE#login").await.is_some());
    assert!(get(&c, "USER#u000001", "PERSONALITY").await.is_some());

    // Each index query returns every item of its pattern, sorted by its sort key.
    let sorted = |items: &[Item], attr: &str| {
        let keys: Vec<&str> = items.iter().map(|i| str_of(i, attr)).collect();
        let mut s = keys.clone();
        s.sort();
        keys == s
    };
    let users = query_index(&c, "gsi1", "gsi1pk", "USERS").await;
    assert_eq!(users.len(), count("ai-girlfriend-users"));
    assert!(sorted(&users, "gsi1sk"));
    assert!(users.iter().all(|u| str_of(u, "gsi1sk")
        == format!("USER#{}#{}", str_of(u, "createdAt"), str_of(u, "userId"))));
    let sessions = query_index(&c, "gsi1", "gsi1pk", "SESSIONS").await;
    assert_eq!(sessions.len(), count("ai-girlfriend-sessions"));
    assert!(sorted(&sessions, "gsi1sk"));
    let sent = query_index(&c, "gsi1", "gsi1pk", "EVENT_TYPE#message_sent").await;
    let want_sent = legacy
        .iter()
        .filter(|(t, i)| {
            *t == "ai-girlfriend-analytics" && i.get("eventType") == Some(&s("message_sent"))
        })
        .count();
    assert_eq!(sent.len(), want_sent);
    assert!(sorted(&sent, "gsi1sk"));
    let msgs = query_index(&c, "gsi1", "gsi1pk", "USER_MESSAGES#user123").await;
    assert_eq!(
        msgs.iter().map(|m| str_of(m, "gsi1sk")).collect::<Vec<_>>(),
        ["2024-01-15T14:05:30Z#msg789"]
    );

    let active = query_index(&c, "gsi2", "gsi2pk", "ACTIVE_USERS").await;
    assert_eq!(active.len(), count("ai-girlfriend-users"));
    assert!(sorted(&active, "gsi2sk"));
    let mine = query_index(&c, "gsi2", "gsi2pk", "USER_SESSIONS#user123").await;
    assert_eq!(mine.len(), 1);
    assert_eq!(str_of(&mine[0], "sessionId"), "session456");
    let analytics = query_index(&c, "gsi2", "gsi2pk", "USER_ANALYTICS#user123").await;
    assert_eq!(
        analytics
            .iter()
            .map(|a| str_of(a, "eventId"))
            .collect::<Vec<_>>(),
        ["evt123"]
    );
    let all = query_index(&c, "gsi2", "gsi2pk", "ALL_MESSAGES").await;
    assert_eq!(all.len(), count("ai-girlfriend-messages"));
    assert!(sorted(&all, "gsi2sk"));
    // Time order: the message timeline agrees with the legacy epoch order.
    let mut epochs: Vec<i64> = legacy
        .iter()
        .filter(|(t, _)| *t == "ai-girlfriend-messages")
        .map(|(_, i)| match &i["sentAt"] {
            AttributeValue::N(n) => n.parse::<i64>().unwrap() / 1000,
            other => panic!("{other:?}"),
        })
        .collect();
    epochs.sort();
    let rendered: Vec<String> = epochs
        .iter()
        .map(|e| {
            singletable::mapping::template::iso_utc(
                &chrono::DateTime::from_timestamp(*e, 0).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        all.iter()
            .map(|m| str_of(m, "gsi2sk").to_string())
            .collect::<Vec<_>>(),
        rendered
    );
}

#[tokio::test]
async fn dirty_rows_are_dead_lettered_with_reasons_and_counts_reconcile() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 1500, 5, 0.05).await;
    let dir = tempfile::tempdir().unwrap();
    let report = migrate_dirty(dir.path(), &db.endpoint);
    let t = &report["totals"];
    let (read, written, filtered, dead) = (
        t["read"].as_u64().unwrap(),
        t["written"].as_u64().unwrap(),
        t["filtered"].as_u64().unwrap(),
        t["dead_lettered"].as_u64().unwrap(),
    );
    assert_eq!(read, legacy.len() as u64);
    assert_eq!(read, written + filtered + dead);
    assert_eq!(report["reconciled"], true);

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("dead.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, dead);
    let no_created = legacy
        .iter()
        .filter(|(t, i)| *t == "ai-girlfriend-users" && !i.contains_key("createdAt"))
        .count();
    let no_msg_id = legacy
        .iter()
        .filter(|(t, i)| *t == "ai-girlfriend-messages" && !i.contains_key("messageId"))
        .count();
    assert!(no_created > 0 && no_msg_id > 0);
    let with = |table: &str, needle: &str| {
        lines
            .iter()
            .filter(|l| {
                l["source_table"] == table && l["reason"].as_str().unwrap().contains(needle)
            })
            .count()
    };
    assert_eq!(
        with("ai-girlfriend-users", "needs attribute createdAt"),
        no_created
    );
    assert_eq!(
        with("ai-girlfriend-messages", "needs attribute messageId"),
        no_msg_id
    );
    assert_eq!(with("ai-girlfriend-messages", "400 KB"), 1);
    assert_eq!(
        dead as usize,
        no_created + no_msg_id + 1,
        "nothing else is dead-lettered"
    );
    for l in &lines {
        assert!(
            l["source_key"].as_object().is_some_and(|k| !k.is_empty()),
            "{l}"
        );
        assert!(l["item"].as_object().is_some_and(|k| !k.is_empty()), "{l}");
    }

    // Documented rules, not dead letters: numbers stored as strings become
    // numbers; orphan sessions are migrated as they are.
    let stringly = legacy
        .iter()
        .find(|(t, i)| {
            *t == "ai-girlfriend-users"
                && matches!(i.get("messageCount"), Some(AttributeValue::S(_)))
                && i.contains_key("createdAt")
        })
        .map(|(_, i)| i.clone())
        .expect("the dataset has a number stored as a string");
    let uid = str_of(&stringly, "userId");
    let migrated = get(&c, &format!("USER#{uid}"), "METADATA").await.unwrap();
    assert!(
        matches!(migrated.get("messageCount"), Some(AttributeValue::N(_))),
        "{migrated:?}"
    );
    let orphan = legacy
        .iter()
        .find(|(t, i)| *t == "ai-girlfriend-sessions" && str_of(i, "userId").starts_with("ghost"))
        .unwrap();
    let owner = str_of(&orphan.1, "userId");
    assert!(get(
        &c,
        &format!("USER#{owner}"),
        &format!("SESSION#{}", str_of(&orphan.1, "sessionId"))
    )
    .await
    .is_some());
}

#[tokio::test]
async fn a_second_run_leaves_the_target_identical() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 600, 3, 0.02).await;
    let dir = tempfile::tempdir().unwrap();
    migrate_dirty(dir.path(), &db.endpoint);
    let first = scan_all(&c, TARGET).await;
    let again = migrate_dirty(dir.path(), &db.endpoint);
    assert_eq!(again["reconciled"], true);
    assert_eq!(scan_all(&c, TARGET).await, first);
}

#[tokio::test]
async fn preview_writes_nothing_and_shows_reasons() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_golden(&c).await;
    // A user the mapping cannot place: no createdAt for the gsi1sk template.
    c.put_item()
        .table_name("ai-girlfriend-users")
        .item("userId", s("nocreated"))
        .item("lastActiveAt", s("2024-02-01T00:00:00Z"))
        .send()
        .await
        .unwrap();
    let before: Vec<Vec<Item>> = futures::future::join_all(
        singletable::demo::LEGACY_TABLES
            .iter()
            .map(|t| scan_all(&c, t.0)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let m = mapping_path();
    let o = singletable(
        dir.path(),
        &db.endpoint,
        &["preview", "--mapping", m.to_str().unwrap(), "-n", "10"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(r#"target: {"content":{"S":"Hello, how are you today?"}"#),
        "{out}"
    );
    assert!(out.contains("DEAD-LETTER: gsi1sk: template \"USER#{createdAt | iso}#{userId}\" needs attribute createdAt"), "{out}");
    let tables = c.list_tables().send().await.unwrap();
    assert!(
        !tables.table_names().iter().any(|t| t == TARGET),
        "preview created the target"
    );
    let after: Vec<Vec<Item>> = futures::future::join_all(
        singletable::demo::LEGACY_TABLES
            .iter()
            .map(|t| scan_all(&c, t.0)),
    )
    .await;
    assert_eq!(before, after);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "preview wrote no files"
    );
}

#[tokio::test]
async fn no_26th_item_and_no_duplicate_key_ever_reaches_batch_write_item() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    let c = client(&db.endpoint).await;
    load_legacy(&c, 600, 4, 0.0).await;
    // A mapping that sends many users to the same few target keys.
    let dir = tempfile::tempdir().unwrap();
    let colliding = std::fs::read_to_string(mapping_path()).unwrap().replace(
        "pk = \"USER#{userId}\"\nsk = \"METADATA\"",
        "pk = \"ALL\"\nsk = \"{subscriptionStatus}\"",
    );
    assert_ne!(colliding, std::fs::read_to_string(mapping_path()).unwrap());
    std::fs::write(dir.path().join("colliding.toml"), colliding).unwrap();
    // Many users collide on a few keys: exit 3, the replaced ones counted.
    let (report, _) = migrate_expect(dir.path(), &proxy.endpoint, "colliding.toml", &[], 3);
    assert!(
        report["totals"]["overwritten"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    let calls = proxy.calls.lock().unwrap().clone();
    assert!(calls.len() > 20, "{calls:?}");
    assert!(
        calls.iter().any(|c| c.requests == 25),
        "full batches were made"
    );
    for call in &calls {
        assert!(call.requests <= 25, "{call:?}");
        assert_eq!(
            call.distinct_keys, call.requests,
            "duplicate key in one call: {call:?}"
        );
    }
    assert!(
        report["totals"]["repeated_keys_in_batch"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert!(report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("same target key")));
}

#[tokio::test]
async fn unprocessed_items_are_resent_until_written() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    proxy.faults.lock().unwrap().unprocessed_calls = 30;
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 400, 8, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let report = migrate(dir.path(), &proxy.endpoint);
    assert_eq!(
        proxy.faults.lock().unwrap().unprocessed_calls,
        0,
        "every fault was served"
    );
    let t = &report["totals"];
    assert_eq!(
        t["written"].as_u64().unwrap(),
        legacy.len() as u64,
        "{report:#}"
    );
    assert!(t["retries"].as_u64().unwrap() >= 30, "{report:#}");
    assert!(t["throttles"].as_u64().unwrap() >= 30, "{report:#}");
    assert_eq!(scan_all(&c, TARGET).await.len(), legacy.len());
}

#[tokio::test]
async fn a_rejected_batch_is_split_and_only_the_bad_items_are_dead_lettered() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    proxy.faults.lock().unwrap().poison_pk = Some("USER#user123".into());
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 300, 2, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let m = mapping_path();
    let (report, _) = migrate_expect(dir.path(), &proxy.endpoint, m.to_str().unwrap(), &[], 3);
    let t = &report["totals"];
    // user123's METADATA, CREDITS and SESSION records share the poisoned pk.
    assert_eq!(t["dead_lettered"], 3, "{report:#}");
    assert_eq!(t["written"].as_u64().unwrap(), legacy.len() as u64 - 3);
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 3);
    for line in dead.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["stage"], "write");
        assert!(
            v["reason"]
                .as_str()
                .unwrap()
                .contains("Injected: item rejected"),
            "{v}"
        );
        assert_eq!(v["item"]["pk"]["S"], "USER#user123");
    }
}

#[tokio::test]
async fn a_table_that_disappears_stops_the_run_and_every_item_read_is_accounted_for() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    proxy.faults.lock().unwrap().table_gone_after = Some(10);
    let c = client(&db.endpoint).await;
    load_legacy(&c, 2000, 3, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let m = mapping_path();
    let args = [
        "migrate",
        "--mapping",
        m.to_str().unwrap(),
        "--create-table",
        "--report",
        "run.json",
        "--dead-letter",
        "dead.jsonl",
        "--max-in-flight",
        "1",
    ];
    let o = singletable(dir.path(), &proxy.endpoint, &args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the run stopped: ResourceNotFoundException"),
        "{}",
        text(&o)
    );
    let report = report(dir.path(), "run.json");
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["reconciled"], true, "{report:#}");
    let t = &report["totals"];
    assert_eq!(t["written"].as_u64().unwrap(), 10 * 25, "{report:#}");
    // Good items the run could not write: not written, not dead letters.
    assert_eq!(t["dead_lettered"], 0, "{report:#}");
    let dead = dead_letters(dir.path(), "dead.jsonl");
    assert!(!dead.is_empty());
    assert_eq!(dead.len() as u64, t["not_written"].as_u64().unwrap());
    for l in &dead {
        assert_eq!(l["stage"], "unwritten", "{l}");
        assert!(l["reason"]
            .as_str()
            .unwrap()
            .contains("ResourceNotFoundException"));
    }
}

#[tokio::test]
async fn a_broken_mapping_is_refused_before_any_request_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let broken = std::fs::read_to_string(mapping_path()).unwrap().replace(
        "sk = \"SESSION#{sessionId}\"",
        "sk = \"SESSION#{sessionId | shout}\"",
    );
    std::fs::write(dir.path().join("broken.toml"), &broken).unwrap();
    let line = broken.lines().position(|l| l.contains("shout")).unwrap() + 1;
    // Nothing listens on this endpoint: the error must come first.
    let o = singletable(
        dir.path(),
        "http://127.0.0.1:9",
        &["migrate", "--mapping", "broken.toml"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "broken.toml:{line}: entity session, keys.sk: unknown function \"shout\""
        )),
        "{err}"
    );
}

/// A mapping edited from the shipped one; the error `migrate` gives for it
/// before any request (nothing listens on the endpoint), and the line of
/// the first line holding `marker`.
fn refused(edit: impl Fn(String) -> String, marker: &str) -> (String, usize) {
    let dir = tempfile::tempdir().unwrap();
    let edited = edit(std::fs::read_to_string(mapping_path()).unwrap());
    std::fs::write(dir.path().join("m.toml"), &edited).unwrap();
    let line = edited.lines().position(|l| l.contains(marker)).unwrap() + 1;
    let o = singletable(
        dir.path(),
        "http://127.0.0.1:9",
        &args("migrate --mapping m.toml"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    (String::from_utf8_lossy(&o.stderr).to_string(), line)
}

#[test]
fn an_index_key_without_its_pair_or_without_an_index_is_refused() {
    let (err, line) = refused(
        |t| t.replacen("gsi1sk = \"USER#{createdAt | iso}#{userId}\"\n", "", 1),
        "gsi1pk = \"USERS\"",
    );
    assert!(
        err.contains(&format!(
            "m.toml:{line}: entity user, keys.gsi1pk: index gsi1 needs gsi1sk too"
        )),
        "{err}"
    );
    let (err, line) = refused(
        |t| t.replacen("gsi2pk = \"ACTIVE_USERS\"", "gsi3pk = \"ACTIVE_USERS\"", 1),
        "gsi3pk",
    );
    assert!(
        err.contains(&format!("m.toml:{line}: entity user, keys.gsi3pk: no key of the table or of its indexes is called \"gsi3pk\"")),
        "{err}"
    );
    let (err, _) = refused(
        |t| t.replacen("entity_type = \"CREDITS\"", "entity_type = \"USER\"", 1),
        "entity_type = \"USER\"",
    );
    assert!(
        err.contains("entities user and credits both have entity_type \"USER\""),
        "{err}"
    );
}

/// A one-letter typo in a template: refused by preview and migrate before
/// anything is created, with the attribute the data does have.
#[tokio::test]
async fn a_template_typo_is_refused_with_its_did_you_mean() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 600, 9, 0.02).await;
    let dir = tempfile::tempdir().unwrap();
    let typo = std::fs::read_to_string(mapping_path()).unwrap().replacen(
        "pk = \"USER#{userId}\"",
        "pk = \"USER#{userid}\"",
        1,
    );
    std::fs::write(dir.path().join("typo.toml"), &typo).unwrap();
    let line = typo.lines().position(|l| l.contains("{userid}")).unwrap() + 1;
    for cmd in ["preview", "migrate --create-table"] {
        let o = singletable(
            dir.path(),
            &db.endpoint,
            &args(&format!("{cmd} --mapping typo.toml")),
        );
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("typo.toml:{line}: entity user, keys.pk: names attribute \"userid\", which none of the ")),
            "{err}"
        );
        assert!(err.contains("did you mean \"userId\""), "{err}");
        assert!(err.contains("--skip-data-check"), "{err}");
    }
    assert!(
        c.describe_table().table_name(TARGET).send().await.is_err(),
        "nothing was created"
    );
    // The shipped mapping on dirty data: warnings with the share, no refusal.
    let o = singletable(
        dir.path(),
        &db.endpoint,
        &args(&format!("preview --mapping {}", mapping_path().display())),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("warning: ") && out.contains("\"messageId\" is in "),
        "{out}"
    );
}

#[tokio::test]
async fn missing_sources_and_a_mismatched_target_are_clear_errors() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let m = mapping_path();
    let o = singletable(
        dir.path(),
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            m.to_str().unwrap(),
            "--create-table",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("source table ai-girlfriend-users does not exist (entity user)"),
        "{}",
        text(&o)
    );

    load_golden(&c).await;
    // Verify of a target that was never made: a clear error, not a match.
    let (code, _, out) = verify(dir.path(), &db.endpoint, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("does not exist, so there is nothing to verify"),
        "{out}"
    );
    c.create_table()
        .table_name(TARGET)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type("S".into())
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type("HASH".into())
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let o = singletable(
        dir.path(),
        &db.endpoint,
        &["migrate", "--mapping", m.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("does not match the mapping: its key is id/, the mapping's is pk/sk"),
        "{}",
        text(&o)
    );

    let o = singletable(
        dir.path(),
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            m.to_str().unwrap(),
            "--target-table",
            "ai-girlfriend-users",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is the source table of entity \"user\""),
        "{}",
        text(&o)
    );
}

#[tokio::test]
async fn moto_migrate_and_verify_agree() {
    let moto = Moto::start();
    let c = client(&moto.endpoint).await;
    // moto sizes items its own way and refuses the generator's item that
    // sits just under AWS's 400 KB; everything else of the dirty data stays.
    let (mut legacy, _) = singletable::demo::generate(&singletable::demo::DemoOptions {
        scale: 300,
        seed: 21,
        dirty_rate: 0.02,
    });
    legacy.retain(|(_, i)| i.get("sessionId") != Some(&s("s-near-limit")));
    singletable::demo::create_legacy_tables(&c).await.unwrap();
    singletable::demo::load(&c, &legacy).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Pre-warming asked of a backend that may not know it: the run goes on.
    let warm = args("--warm-write-units 8000 --warm-read-units 12000");
    let (report, _) = migrate_expect(dir.path(), &moto.endpoint, &m(), &warm, 3);
    assert_eq!(
        report["totals"]["read"].as_u64().unwrap(),
        legacy.len() as u64
    );
    assert_eq!(report["reconciled"], true);
    let (code, report, out) = verify(dir.path(), &moto.endpoint, &["--sample", "100000"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["verdict"], "sample-match");
    for want in seed_records() {
        let (AttributeValue::S(pk), AttributeValue::S(sk)) = (&want["pk"], &want["sk"]) else {
            unreachable!()
        };
        let got = get(&c, pk, sk).await.unwrap();
        assert_eq!(
            differing_attributes(&want, &got),
            Vec::<String>::new(),
            "{pk}/{sk}"
        );
    }
}

/// The Done-when check: a legacy dataset written by an independent script
/// (boto3, typed from `legacy-layout.md`, sharing no code with us) migrates
/// into a target whose counts, dead letters and access patterns are what
/// the script says they must be.
#[tokio::test]
async fn an_independently_written_legacy_dataset_migrates_as_its_author_expects() {
    let db = Dynoxide::start();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy_dataset.py");
    let o = std::process::Command::new("python3")
        .arg(&script)
        .arg(&db.endpoint)
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", text(&o));
    let expect: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = client(&db.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let report = migrate_dirty(dir.path(), &db.endpoint);
    assert_eq!(report["reconciled"], true);

    let target = scan_all(&c, TARGET).await;
    let mut counts = std::collections::BTreeMap::new();
    for item in &target {
        *counts
            .entry(str_of(item, "entityType").to_string())
            .or_insert(0u64) += 1;
    }
    let want: std::collections::BTreeMap<String, u64> =
        serde_json::from_value(expect["counts"].clone()).unwrap();
    assert_eq!(counts, want);

    let dead: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("dead.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want_dead = expect["dead"].as_array().unwrap();
    assert_eq!(dead.len(), want_dead.len(), "{dead:#?}");
    for w in want_dead {
        let key = item_from_json(&w["key"]).unwrap();
        let hit = dead.iter().find(|d| {
            d["source_table"] == w["table"] && item_from_json(&d["source_key"]).unwrap() == key
        });
        let hit = hit.unwrap_or_else(|| panic!("not dead-lettered: {w}"));
        assert!(
            hit["reason"]
                .as_str()
                .unwrap()
                .contains(w["because"].as_str().unwrap()),
            "{hit}"
        );
    }

    let users = query_index(&c, "gsi1", "gsi1pk", "USERS").await;
    assert_eq!(users.len() as u64, want["USER"]);
    assert!(users
        .windows(2)
        .all(|w| str_of(&w[0], "gsi1sk") <= str_of(&w[1], "gsi1sk")));
    let stringly = get(&c, "USER#indep-user-7", "METADATA").await.unwrap();
    assert_eq!(stringly["messageCount"], AttributeValue::N("21".into()));
    let (code, _, out) = verify(dir.path(), &db.endpoint, &["--sample", "100000"]);
    assert_eq!(code, 0, "{out}");
}

/// The README names no flag the binary does not have.
#[test]
fn every_flag_the_readme_names_exists() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let help: String = [
        "plan",
        "migrate",
        "status",
        "replay",
        "preview",
        "verify",
        "demo-data",
        "demo",
        "follow",
        "cutover-check",
        "table",
        "iam-policy",
    ]
    .iter()
    .map(|cmd| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_singletable"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap()
    })
    .collect();
    let mut flags: Vec<&str> = readme
        .match_indices("--")
        .map(|(i, _)| {
            let rest = &readme[i + 2..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
                .unwrap_or(rest.len());
            &readme[i..i + 2 + end]
        })
        .filter(|f| f.len() > 2 && f.as_bytes()[2].is_ascii_lowercase())
        // cargo's own, in the install line; the AWS CLI's, in the fix
        // for a legacy table without a stream
        .filter(|f| {
            ![
                "--path",
                "--release",
                "--table-name",
                "--stream-specification",
            ]
            .contains(f)
        })
        .collect();
    flags.sort();
    flags.dedup();
    assert!(flags.len() > 20, "{flags:?}");
    for f in flags {
        assert!(
            help.contains(&format!("{f} ")) || help.contains(&format!("{f}\n")),
            "README names {f}, which no subcommand has"
        );
    }
}

/// `DYNAMODB_TABLE_NAME`, as in the seed's environment section, names the target.
#[tokio::test]
async fn the_target_table_can_come_from_the_environment() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_golden(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let m = mapping_path();
    let o = singletable_env(
        dir.path(),
        &[("DYNAMODB_TABLE_NAME", "staging-single-table")],
        &[
            "migrate",
            "--mapping",
            m.to_str().unwrap(),
            "--create-table",
            "--endpoint-url",
            &db.endpoint,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(scan_all(&c, "staging-single-table").await.len(), 5);
    assert!(
        c.describe_table().table_name(TARGET).send().await.is_err(),
        "nothing went to the mapping's table"
    );
}

/// The README's first command: the demo runs end to end, allowing exactly
/// the dead letters its dirty rows make, and verifies.
#[test]
fn the_demo_migrates_within_exactly_its_dirty_rows_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let m = mapping_path();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_singletable"))
        .current_dir(dir.path())
        .args(["demo", "--quiet", "--scale", "2000", "--dirty-rate", "0.02"])
        .args(["--mapping", m.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&dir.path().join("singletable-demo"), "migrate-report.json");
    assert_eq!(r["exit_code"], 0);
    let dead = r["totals"]["dead_lettered"].as_u64().unwrap();
    assert!(dead > 0, "{r:#}");
    assert_eq!(r["allowed_dead_letters"], dead, "the allowance is exact");
    let v = report(&dir.path().join("singletable-demo"), "verify-report.json");
    assert_eq!(v["verdict"], "sample-match");
}

#[test]
fn the_demo_application_keeps_writing_and_the_follow_catches_up_to_a_go() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_singletable"))
        .current_dir(dir.path())
        .args(["demo", "--quiet", "--follow", "--scale", "2000"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = dir.path().join("singletable-demo");
    let f = report(&out, "follow-report.json");
    assert_eq!(f["follow"]["caught_up"], true, "{f:#}");
    assert!(f["reconciled"].as_bool().unwrap());
    let read = f["totals"]["read"].as_u64().unwrap();
    assert!(read > 0, "the application's changes were followed: {f:#}");
    let v = report(&out, "verify-report.json");
    assert_eq!(v["verdict"], "sample-match");
    let c = report(&out, "cutover-check.json");
    assert_eq!(c["go"], true, "{c:#}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("GO: nothing is behind"));
}
