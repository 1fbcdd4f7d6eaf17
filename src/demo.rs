//! Demo data: the legacy layout's seven tables, filled from a seed.
//!
//! The generator follows `legacy-layout.md`: the seven tables and their key
//! schemas, epoch seconds on credits, epoch milliseconds on messages, and at
//! a configurable rate the dirty data real migrations meet (a missing
//! `createdAt` or `messageId`, numbers stored as strings, orphan sessions
//! and messages, one e-mail under two user ids differing in case, long
//! message content, one item that the added keys push over 400 KB, Unicode
//! everywhere). The same seed and scale give the same items, byte for byte.
//! It also holds the rows equivalent to the seed's data model examples
//! (user123, session456, msg789, evt123), which every dataset includes.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::item::Item;

/// Items by legacy table, in the order they were made.
pub type Dataset = Vec<(&'static str, Item)>;

/// A key attribute: name and scalar type (`S` or `N`).
pub type KeyAttr = (&'static str, &'static str);

/// The legacy tables: name, partition key, optional sort key.
pub const LEGACY_TABLES: [(&str, KeyAttr, Option<KeyAttr>); 7] = [
    ("ai-girlfriend-users", ("userId", "S"), None),
    ("ai-girlfriend-credits", ("userId", "S"), None),
    ("ai-girlfriend-personalities", ("userId", "S"), None),
    ("ai-girlfriend-sessions", ("sessionId", "S"), None),
    (
        "ai-girlfriend-messages",
        ("sessionId", "S"),
        Some(("sentAt", "N")),
    ),
    ("ai-girlfriend-analytics", ("eventId", "S"), None),
    (
        "ai-girlfriend-daily-stats",
        ("date", "S"),
        Some(("eventType", "S")),
    ),
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// About this many items in all.
    pub scale: usize,
    pub seed: u64,
    /// The share of rows given each kind of dirt (0.0 to 1.0).
    pub dirty_rate: f64,
}

/// What was generated, per table and per kind of dirt.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DemoSummary {
    pub items: std::collections::BTreeMap<String, u64>,
    pub dirty: std::collections::BTreeMap<String, u64>,
}

/// The kinds of dirt the shipped mapping cannot write: they are dead-
/// lettered (the others are written, coerced or kept as they are).
const UNWRITABLE: [&str; 3] = [
    "user_missing_createdAt",
    "message_missing_messageId",
    "over_400kb_after_transform",
];

impl DemoSummary {
    /// The dead letters the shipped mapping makes of this data: the
    /// allowance the demo's migration passes.
    pub fn expected_dead_letters(&self) -> u64 {
        UNWRITABLE.iter().filter_map(|k| self.dirty.get(*k)).sum()
    }
}

fn s(x: impl Into<String>) -> AttributeValue {
    AttributeValue::S(x.into())
}
fn n(x: impl ToString) -> AttributeValue {
    AttributeValue::N(x.to_string())
}
fn item<const K: usize>(pairs: [(&str, AttributeValue); K]) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The legacy rows equivalent to the seed's data model examples, by table.
pub fn golden_legacy_items() -> Vec<(&'static str, Item)> {
    vec![
        (
            "ai-girlfriend-users",
            item([
                ("userId", s("user123")),
                ("email", s("user@example.com")),
                ("name", s("John Doe")),
                ("createdAt", s("2024-01-15T10:00:00Z")),
                ("lastActiveAt", s("2024-01-15T15:30:00Z")),
                ("messageCount", n(50)),
                ("sessionCount", n(3)),
                ("subscriptionStatus", s("free")),
            ]),
        ),
        (
            "ai-girlfriend-credits",
            item([
                ("userId", s("user123")),
                ("credits", n(85)),
                ("totalCreditsUsed", n(15)),
                ("lastUpdated", n(1_705_332_600)),
            ]),
        ),
        (
            "ai-girlfriend-sessions",
            item([
                ("sessionId", s("session456")),
                ("userId", s("user123")),
                ("startedAt", s("2024-01-15T14:00:00Z")),
                ("lastMessageAt", s("2024-01-15T15:30:00Z")),
                ("messageCount", n(25)),
                ("relationshipStage", s("comfortable")),
            ]),
        ),
        (
            "ai-girlfriend-messages",
            item([
                ("sessionId", s("session456")),
                ("sentAt", n(1_705_327_530_000i64)),
                ("messageId", s("msg789")),
                ("userId", s("user123")),
                ("role", s("user")),
                ("content", s("Hello, how are you today?")),
                (
                    "metadata",
                    AttributeValue::M(item([
                        ("emotion", s("happy")),
                        (
                            "topics",
                            AttributeValue::Ss(vec!["greeting".into(), "wellbeing".into()]),
                        ),
                    ])),
                ),
            ]),
        ),
        (
            "ai-girlfriend-analytics",
            item([
                ("eventId", s("evt123")),
                ("userId", s("user123")),
                ("eventType", s("message_sent")),
                (
                    "eventData",
                    AttributeValue::M(item([
                        ("sessionId", s("session456")),
                        ("messageLength", n(25)),
                        ("creditsUsed", n(1)),
                    ])),
                ),
                ("timestamp", s("2024-01-15T14:05:30Z")),
            ]),
        ),
    ]
}

const NAMES: [&str; 10] = [
    "Ana",
    "Björn",
    "Chloé",
    "Dmitri",
    "Eun-ji",
    "Farah",
    "Giulia",
    "Hiro 博",
    "Ìfẹ́",
    "Zoë 🌸",
];
const EMOTIONS: [&str; 6] = ["happy", "curious", "sad", "excited", "calm", "😊 joyful"];
const TOPICS: [&str; 8] = [
    "greeting",
    "wellbeing",
    "music",
    "travel",
    "food",
    "work",
    "dreams",
    "日本",
];
const STAGES: [&str; 4] = ["new", "friendly", "comfortable", "close"];
const EVENT_TYPES: [&str; 4] = [
    "message_sent",
    "session_started",
    "credits_purchased",
    "login",
];
const SUBSCRIPTIONS: [&str; 3] = ["free", "plus", "pro"];
/// 2024-01-01T00:00:00Z: every generated time falls in 2024.
const BASE_EPOCH: i64 = 1_704_067_200;

fn iso(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .map(|t| crate::mapping::template::iso_utc(&t))
        .unwrap_or_default()
}

/// Generates the dataset in memory, per table in a fixed order.
pub fn generate(opts: &DemoOptions) -> (Vec<(&'static str, Item)>, DemoSummary) {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut out: Vec<(&'static str, Item)> = golden_legacy_items();
    let mut summary = DemoSummary::default();
    let dirty = |kind: &str, summary: &mut DemoSummary| {
        *summary.dirty.entry(kind.to_string()).or_default() += 1
    };
    let r = opts.dirty_rate.clamp(0.0, 1.0);
    let users = (opts.scale / 10).max(5);

    let mut emails: Vec<String> = Vec::new();
    for u in 0..users {
        let id = format!("u{u:06}");
        let created = BASE_EPOCH + rng.random_range(0..200 * 86_400);
        let active = created + rng.random_range(0..60 * 86_400);
        let name = format!("{} {}", NAMES[rng.random_range(0..NAMES.len())], u);
        let mut email = format!("user{u}@example.com");
        if !emails.is_empty() && rng.random_bool(r) {
            // The same address as an earlier user, differing only in case.
            email = emails[rng.random_range(0..emails.len())].to_uppercase();
            dirty("duplicate_email_case", &mut summary);
        }
        emails.push(email.clone());
        let mut user = item([
            ("userId", s(&id)),
            ("email", s(email)),
            ("name", s(name)),
            ("createdAt", s(iso(created))),
            ("lastActiveAt", s(iso(active))),
            ("messageCount", n(rng.random_range(0..500))),
            ("sessionCount", n(rng.random_range(0..20))),
            (
                "subscriptionStatus",
                s(SUBSCRIPTIONS[rng.random_range(0..3)]),
            ),
        ]);
        if rng.random_bool(r) {
            user.insert(
                "messageCount".into(),
                s(rng.random_range(0..500).to_string()),
            );
            dirty("number_as_string", &mut summary);
        }
        if rng.random_bool(r / 2.0) {
            user.remove("createdAt");
            dirty("user_missing_createdAt", &mut summary);
        }
        out.push(("ai-girlfriend-users", user));
        out.push((
            "ai-girlfriend-credits",
            item([
                ("userId", s(&id)),
                ("credits", n(rng.random_range(0..1000))),
                ("totalCreditsUsed", n(rng.random_range(0..5000))),
                ("lastUpdated", n(active)),
            ]),
        ));
        let traits: Item = ["playful", "caring", "witty"]
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    n(format!("{:.2}", rng.random_range(0.0..1.0f64))),
                )
            })
            .collect();
        out.push((
            "ai-girlfriend-personalities",
            item([
                ("userId", s(&id)),
                ("traits", AttributeValue::M(traits)),
                ("mood", s(EMOTIONS[rng.random_range(0..EMOTIONS.len())])),
                ("affection", n(rng.random_range(0..100))),
                ("updatedAt", s(iso(active))),
            ]),
        ));
    }

    let sessions = users * 2;
    let mut session_owner: Vec<(String, String, i64)> = Vec::new();
    for i in 0..sessions {
        let sid = format!("s{i:07}");
        let mut owner = format!("u{:06}", rng.random_range(0..users));
        if rng.random_bool(r) {
            owner = format!("ghost{i}");
            dirty("orphan_session", &mut summary);
        }
        let started = BASE_EPOCH + rng.random_range(0..300 * 86_400);
        let mut sess = item([
            ("sessionId", s(&sid)),
            ("userId", s(&owner)),
            ("startedAt", s(iso(started))),
            (
                "lastMessageAt",
                s(iso(started + rng.random_range(60..7200))),
            ),
            ("messageCount", n(rng.random_range(1..100))),
            (
                "relationshipStage",
                s(STAGES[rng.random_range(0..STAGES.len())]),
            ),
        ]);
        if rng.random_bool(r) {
            sess.insert(
                "messageCount".into(),
                s(rng.random_range(1..100).to_string()),
            );
            dirty("number_as_string", &mut summary);
        }
        out.push(("ai-girlfriend-sessions", sess));
        session_owner.push((sid, owner, started));
    }

    let messages = users * 3;
    let mut message_keys = std::collections::HashSet::new();
    for i in 0..messages {
        let (sid, owner, started) = session_owner[rng.random_range(0..session_owner.len())].clone();
        let mut sent_ms = (started + rng.random_range(0..7200)) * 1000 + rng.random_range(0..1000);
        while !message_keys.insert((sid.clone(), sent_ms)) {
            sent_ms += 1; // (sessionId, sentAt) is the legacy key: keep it unique
        }
        let mut content = format!(
            "Message {i}: {} 💬 こんにちは",
            NAMES[rng.random_range(0..NAMES.len())]
        );
        if rng.random_bool(r) {
            content = "long message — ".repeat(rng.random_range(1_200..4_000));
            dirty("long_content", &mut summary);
        }
        let topics: Vec<String> = {
            let mut t: Vec<String> = (0..rng.random_range(1..4))
                .map(|_| TOPICS[rng.random_range(0..TOPICS.len())].to_string())
                .collect();
            t.sort();
            t.dedup();
            t
        };
        let mut msg = item([
            ("sessionId", s(&sid)),
            ("sentAt", n(sent_ms)),
            ("messageId", s(format!("m{i:08}"))),
            ("userId", s(&owner)),
            ("role", s(if i % 2 == 0 { "user" } else { "assistant" })),
            ("content", s(content)),
            (
                "metadata",
                AttributeValue::M(item([
                    ("emotion", s(EMOTIONS[rng.random_range(0..EMOTIONS.len())])),
                    ("topics", AttributeValue::Ss(topics)),
                ])),
            ),
        ]);
        if rng.random_bool(r / 2.0) {
            msg.remove("messageId");
            dirty("message_missing_messageId", &mut summary);
        }
        out.push(("ai-girlfriend-messages", msg));
    }
    if r > 0.0 {
        // One item that fits in the legacy table but not once the transform
        // adds pk, sk, the four index keys, entityType and timestamp.
        let mut msg = item([
            ("sessionId", s("s-near-limit")),
            ("sentAt", n(BASE_EPOCH * 1000)),
            ("messageId", s("m-near-limit")),
            ("userId", s("u000000")),
            ("role", s("user")),
            ("content", s("")),
        ]);
        let room = crate::item::MAX_ITEM_BYTES - crate::item::item_size(&msg) - 40;
        msg.insert("content".into(), s("x".repeat(room)));
        out.push(("ai-girlfriend-messages", msg));
        dirty("over_400kb_after_transform", &mut summary);
    }

    let events = users * 3 / 2;
    for i in 0..events {
        let t = BASE_EPOCH + rng.random_range(0..300 * 86_400);
        let et = EVENT_TYPES[rng.random_range(0..EVENT_TYPES.len())];
        out.push((
            "ai-girlfriend-analytics",
            item([
                ("eventId", s(format!("e{i:08}"))),
                ("userId", s(format!("u{:06}", rng.random_range(0..users)))),
                ("eventType", s(et)),
                (
                    "eventData",
                    AttributeValue::M(item([
                        ("source", s("app")),
                        ("value", n(rng.random_range(0..100))),
                    ])),
                ),
                ("timestamp", s(iso(t))),
            ]),
        ));
    }
    let days = (users / 2 / EVENT_TYPES.len()).max(1);
    for d in 0..days {
        for et in EVENT_TYPES {
            out.push((
                "ai-girlfriend-daily-stats",
                item([
                    (
                        "date",
                        s(iso(BASE_EPOCH + d as i64 * 86_400)[..10].to_string()),
                    ),
                    ("eventType", s(et)),
                    ("count", n(rng.random_range(0..10_000))),
                    ("uniqueUsers", n(rng.random_range(0..1_000))),
                ]),
            ));
        }
    }
    for (t, _) in &out {
        *summary.items.entry(t.to_string()).or_default() += 1;
    }
    (out, summary)
}

/// Changes for an incremental export, from a seed: about `rate` of each
/// table's items updated (one `revision` attribute set; a few sessions move
/// to another user, which moves their target key), deleted, or inserted
/// anew. Returns the changes, one per key as AWS writes them, and the
/// dataset with the changes applied.
pub fn changes(
    items: &[(&'static str, Item)],
    seed: u64,
    rate: f64,
) -> (Vec<(&'static str, Change)>, Dataset) {
    changes_round(items, seed, rate, 2)
}

/// [`changes`] as round `revision` of an application that keeps writing:
/// updates set `revision` to it, moved sessions go between two users
/// (user123, user124), inserted keys end in `-r<revision>` (`-new` in
/// round 2).
pub fn changes_round(
    items: &[(&'static str, Item)],
    seed: u64,
    rate: f64,
    revision: i64,
) -> (Vec<(&'static str, Change)>, Dataset) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c4a9);
    let suffix = match revision {
        2 => "-new".to_string(),
        r => format!("-r{r}"),
    };
    let key_of = |table: &str| {
        LEGACY_TABLES
            .iter()
            .find(|t| t.0 == table)
            .map(|t| (t.1, t.2))
    };
    let mut out = Vec::new();
    let mut updated = Vec::new();
    for (table, item) in items {
        let Some((pk, sk)) = key_of(table) else {
            continue;
        };
        let keys: Item = std::iter::once(pk.0)
            .chain(sk.map(|k| k.0))
            .filter_map(|k| item.get(k).map(|v| (k.to_string(), v.clone())))
            .collect();
        let roll: f64 = rng.random();
        if roll < rate {
            out.push((
                *table,
                Change {
                    keys: keys.clone(),
                    new: None,
                    old: Some(item.clone()),
                },
            ));
            continue;
        }
        if roll < 2.0 * rate {
            let mut new = item.clone();
            new.insert("revision".into(), n(revision));
            if *table == "ai-girlfriend-sessions" && rng.random_bool(0.3) {
                let moved = match new.get("userId") {
                    Some(AttributeValue::S(u)) if u == "user123" => "user124",
                    _ => "user123",
                };
                new.insert("userId".into(), s(moved));
            }
            out.push((
                *table,
                Change {
                    keys: keys.clone(),
                    new: Some(new.clone()),
                    old: Some(item.clone()),
                },
            ));
            updated.push((*table, new));
        } else {
            updated.push((*table, item.clone()));
        }
        if roll > 1.0 - rate {
            // An insert: the same shape under a new key.
            let mut new = item.clone();
            for (k, _) in keys.iter() {
                let v = match &new[k] {
                    AttributeValue::S(x) => s(format!("{x}{suffix}")),
                    AttributeValue::N(x) => n(x.parse::<i64>().unwrap_or(0) + 1),
                    other => other.clone(),
                };
                new.insert(k.clone(), v);
            }
            let new_keys: Item = keys.keys().map(|k| (k.clone(), new[k].clone())).collect();
            out.push((
                *table,
                Change {
                    keys: new_keys,
                    new: Some(new.clone()),
                    old: None,
                },
            ));
            updated.push((*table, new));
        }
    }
    (out, updated)
}

/// Applies changes to the legacy tables as the application would: a put
/// of each new image, a delete of each removed key, one at a time, in order.
pub async fn apply(
    client: &aws_sdk_dynamodb::Client,
    changes: &[(&str, Change)],
) -> Result<(), DemoError> {
    for (table, c) in changes {
        let err = |e: String| DemoError {
            table: table.to_string(),
            message: e,
        };
        let sent = match &c.new {
            Some(new) => client
                .put_item()
                .table_name(*table)
                .set_item(Some(new.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| crate::aws::describe_error(&e)),
            None => client
                .delete_item()
                .table_name(*table)
                .set_key(Some(c.keys.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| crate::aws::describe_error(&e)),
        };
        sent.map_err(err)?;
    }
    Ok(())
}

/// Enables a stream of `view` (NEW_AND_OLD_IMAGES, NEW_IMAGE, ...) on each
/// legacy table, as the application's owners would before a zero-downtime
/// migration.
pub async fn enable_streams(
    client: &aws_sdk_dynamodb::Client,
    view: &str,
) -> Result<(), DemoError> {
    use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType};
    for (name, _, _) in LEGACY_TABLES {
        let spec = StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::from(view))
            .build()
            .map_err(|e| DemoError {
                table: name.into(),
                message: e.to_string(),
            })?;
        client
            .update_table()
            .table_name(name)
            .stream_specification(spec)
            .send()
            .await
            .map_err(|e| DemoError {
                table: name.into(),
                message: crate::aws::describe_error(&e),
            })?;
    }
    Ok(())
}

/// One change of an incremental export.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub keys: Item,
    pub new: Option<Item>,
    pub old: Option<Item>,
}

/// Why the demo data could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("demo data, table {table}: {message}")]
pub struct DemoError {
    pub table: String,
    pub message: String,
}

/// The legacy tables that exist and hold at least one item.
pub async fn tables_with_items(
    client: &aws_sdk_dynamodb::Client,
) -> Result<Vec<String>, DemoError> {
    let mut out = Vec::new();
    for (name, _, _) in LEGACY_TABLES {
        let err = |message: String| DemoError {
            table: name.into(),
            message,
        };
        let exists = crate::sinks::table::describe(client, name)
            .await
            .map_err(|e| err(e.to_string()))?;
        if exists.is_none() {
            continue;
        }
        let page = client.scan().table_name(name).limit(1).send().await;
        let page = page.map_err(|e| err(crate::aws::describe_error(&e)))?;
        if page.count() > 0 {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// Deletes the legacy tables that exist and waits until they are gone.
pub async fn drop_legacy_tables(client: &aws_sdk_dynamodb::Client) -> Result<(), DemoError> {
    for (name, _, _) in LEGACY_TABLES {
        let err = |message: String| DemoError {
            table: name.into(),
            message,
        };
        let describe = || crate::sinks::table::describe(client, name);
        if describe().await.map_err(|e| err(e.to_string()))?.is_none() {
            continue;
        }
        let deleted = client.delete_table().table_name(name).send().await;
        deleted.map_err(|e| err(crate::aws::describe_error(&e)))?;
        for _ in 0..300 {
            if describe().await.map_err(|e| err(e.to_string()))?.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(())
}

/// Creates the seven legacy tables (those missing) and waits for them.
pub async fn create_legacy_tables(client: &aws_sdk_dynamodb::Client) -> Result<(), DemoError> {
    for (name, (pk, pk_type), sk) in LEGACY_TABLES {
        let err = |message: String| DemoError {
            table: name.into(),
            message,
        };
        if crate::sinks::table::describe(client, name)
            .await
            .map_err(|e| err(e.to_string()))?
            .is_some()
        {
            continue;
        }
        let mut keys = vec![(pk, pk_type, KeyType::Hash)];
        if let Some((sk, sk_type)) = sk {
            keys.push((sk, sk_type, KeyType::Range));
        }
        let mut req = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest);
        for (attr, ty, kt) in keys {
            let ty = if ty == "N" {
                ScalarAttributeType::N
            } else {
                ScalarAttributeType::S
            };
            req = req
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(attr)
                        .attribute_type(ty)
                        .build()
                        .map_err(|e| err(e.to_string()))?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(attr)
                        .key_type(kt)
                        .build()
                        .map_err(|e| err(e.to_string()))?,
                );
        }
        req.send()
            .await
            .map_err(|e| err(crate::aws::describe_error(&e)))?;
    }
    Ok(())
}

/// Writes items into their tables, 25 a call, resending unprocessed items.
pub async fn load(
    client: &aws_sdk_dynamodb::Client,
    items: &[(&str, Item)],
) -> Result<(), DemoError> {
    let mut by_table: HashMap<&str, Vec<&Item>> = HashMap::new();
    for (t, it) in items {
        by_table.entry(t).or_default().push(it);
    }
    let mut calls = Vec::new();
    for (table, items) in by_table {
        for chunk in items.chunks(25) {
            let requests: Vec<WriteRequest> = chunk
                .iter()
                .filter_map(|it| {
                    PutRequest::builder()
                        .set_item(Some((*it).clone()))
                        .build()
                        .ok()
                })
                .map(|p| WriteRequest::builder().put_request(p).build())
                .collect();
            calls.push(put_all(client.clone(), table.to_string(), requests));
        }
    }
    use futures::{StreamExt as _, TryStreamExt as _};
    futures::stream::iter(calls)
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn put_all(
    client: aws_sdk_dynamodb::Client,
    table: String,
    mut requests: Vec<WriteRequest>,
) -> Result<(), DemoError> {
    for attempt in 1..=10u32 {
        let out = client
            .batch_write_item()
            .request_items(&table, requests.clone())
            .send()
            .await
            .map_err(|e| DemoError {
                table: table.clone(),
                message: crate::aws::describe_error(&e),
            })?;
        requests = out
            .unprocessed_items()
            .and_then(|u| u.get(&table))
            .cloned()
            .unwrap_or_default();
        if requests.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(crate::retry::backoff(
            attempt,
            Duration::from_millis(50),
            Duration::from_secs(5),
        ))
        .await;
    }
    Err(DemoError {
        table,
        message: "items still unprocessed after 10 attempts".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let opts = DemoOptions {
            scale: 500,
            seed: 7,
            dirty_rate: 0.05,
        };
        let (a, sa) = generate(&opts);
        let (b, _) = generate(&opts);
        assert_eq!(a, b);
        assert!(sa.items.values().sum::<u64>() >= 450);
        let (c, _) = generate(&DemoOptions { seed: 8, ..opts });
        assert_ne!(a, c);
    }

    #[test]
    fn dirty_data_appears_at_a_high_rate() {
        let (_, summary) = generate(&DemoOptions {
            scale: 2000,
            seed: 1,
            dirty_rate: 0.2,
        });
        for kind in [
            "duplicate_email_case",
            "number_as_string",
            "user_missing_createdAt",
            "orphan_session",
            "long_content",
            "message_missing_messageId",
            "over_400kb_after_transform",
        ] {
            assert!(
                summary.dirty.get(kind).copied().unwrap_or(0) > 0,
                "{kind}: {summary:?}"
            );
        }
    }

    #[test]
    fn changes_touch_every_kind_and_apply() {
        let (items, _) = generate(&DemoOptions {
            scale: 1000,
            seed: 3,
            dirty_rate: 0.0,
        });
        let (changes, updated) = changes(&items, 3, 0.05);
        let deletes = changes.iter().filter(|(_, c)| c.new.is_none()).count();
        let updates = changes
            .iter()
            .filter(|(_, c)| c.new.is_some() && c.old.is_some())
            .count();
        let inserts = changes.iter().filter(|(_, c)| c.old.is_none()).count();
        assert!(
            deletes > 10 && updates > 10 && inserts > 10,
            "{deletes} {updates} {inserts}"
        );
        assert_eq!(updated.len(), items.len() - deletes + inserts);
    }

    #[test]
    fn every_legacy_item_fits_in_dynamodb() {
        let (items, _) = generate(&DemoOptions {
            scale: 2000,
            seed: 3,
            dirty_rate: 0.2,
        });
        for (t, it) in &items {
            assert!(
                crate::item::item_size(it) <= crate::item::MAX_ITEM_BYTES,
                "{t}"
            );
        }
    }
}
