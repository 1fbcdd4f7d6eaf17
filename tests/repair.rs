//! Converging after the source moved (issue 17): `verify --full --repair`
//! after changes the migration never saw, its dry run, orphans, and a
//! repair through injected throttling; against dynoxide through the real
//! binary.

use std::collections::BTreeSet;
use std::path::Path;

use singletable::item::Item;
use singletable::mapping::Mapping;
use singletable::transform::{transform, Outcome};

use crate::common::*;

/// (pk, sk, why) of a repair.
type Repaired = BTreeSet<(String, String, String)>;

/// The target key the shipped mapping makes of a legacy item, if it makes one.
fn target_of(m: &Mapping, table: &str, item: &Item) -> Option<(String, String)> {
    let (_, e) = m.entity_for_table(table)?;
    match transform(e, &m.table, item) {
        Outcome::Put(t) => Some((str_of(&t, "pk").into(), str_of(&t, "sk").into())),
        _ => None,
    }
}

/// A round of the demo application's writes (inserts, updates, deletes,
/// sessions moved to another user) made after the migration; what a
/// repair must do about each.
async fn move_the_source(
    c: &aws_sdk_dynamodb::Client,
    items: &[(&'static str, Item)],
    rate: f64,
) -> Repaired {
    let m = Mapping::shipped();
    let (changes, _) = singletable::demo::changes_round(items, 41, rate, 7);
    singletable::demo::apply(c, &changes).await.unwrap();
    let mut want = Repaired::new();
    let mut add = |key: Option<(String, String)>, why: &str| {
        if let Some((pk, sk)) = key {
            want.insert((pk, sk, why.to_string()));
        }
    };
    for (table, change) in &changes {
        let old = change.old.as_ref().and_then(|o| target_of(&m, table, o));
        let new = change.new.as_ref().and_then(|n| target_of(&m, table, n));
        match (old, new) {
            (Some(o), Some(n)) if o == n => add(Some(n), "changed"),
            (o, n) => {
                add(o, "extra");
                add(n, "missing");
            }
        }
    }
    assert!(want.iter().any(|r| r.2 == "extra") && want.iter().any(|r| r.2 == "missing"));
    want
}

/// The repairs file as (pk, sk, why), with the action it names checked.
fn repairs(dir: &Path, name: &str) -> Repaired {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let why = v["why"].as_str().unwrap().to_string();
            let action = if why == "missing" || why == "changed" {
                "put"
            } else {
                "delete"
            };
            assert_eq!(v["action"], action, "{v}");
            let key = |k: &str| v["key"][k]["S"].as_str().unwrap().to_string();
            (key("pk"), key("sk"), why)
        })
        .collect()
}

fn verify_full(dir: &Path, endpoint: &str, extra: &[&str]) -> (i32, String) {
    let m = m();
    let words = [&["verify", "--mapping", &m, "--full"][..], extra].concat();
    let o = singletable(dir, endpoint, &words);
    (o.status.code().unwrap_or(-1), text(&o))
}

#[tokio::test]
async fn a_repair_converges_after_the_source_moved_and_keeps_orphans_unless_asked() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let items = load_legacy(&c, 400, 23, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    migrate(d, &db.endpoint);
    let want = move_the_source(&c, &items, 0.05).await;
    let (code, out) = verify_full(d, &db.endpoint, &[]);
    assert_eq!(code, 1, "{out}");

    // A dry run lists exactly those keys, and writes nothing.
    let before = scan_all(&c, TARGET).await;
    let dry = ["--repair", "--dry-run", "--repairs", "dry.jsonl"];
    let (code, out) = verify_full(d, &db.endpoint, &dry);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("dry run:"), "{out}");
    assert_eq!(repairs(d, "dry.jsonl"), want);
    assert_eq!(
        scan_all(&c, TARGET).await,
        before,
        "a dry run writes nothing"
    );

    let (code, out) = verify_full(d, &db.endpoint, &["--repair", "--report", "repair.json"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(repairs(d, "singletable-repairs.jsonl"), want);
    let r = report(d, "repair.json");
    assert_eq!(r["after"]["verdict"], "match", "{r:#}");
    assert_eq!(r["writes"]["reconciled"], true, "{r:#}");
    let n = want.len() as u64;
    let total = &r["writes"]["totals"];
    assert_eq!(
        total["written"].as_u64().unwrap() + total["deleted"].as_u64().unwrap(),
        n,
        "{r:#}"
    );
    assert_eq!(verify_full(d, &db.endpoint, &[]).0, 0);

    // An item of an entity type the mapping does not own survives a
    // repair (reported); --repair-orphans deletes it.
    let ghost: Item = [
        ("pk".to_string(), s("GHOST#1")),
        ("sk".to_string(), s("GHOST")),
        ("entityType".to_string(), s("GHOST")),
    ]
    .into();
    let put = c.put_item().table_name(TARGET).set_item(Some(ghost));
    put.send().await.unwrap();
    let (code, out) = verify_full(d, &db.endpoint, &["--repair"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("GHOST") && out.contains("--repair-orphans"),
        "{out}"
    );
    assert!(
        get(&c, "GHOST#1", "GHOST").await.is_some(),
        "the orphan is kept"
    );
    let (code, out) = verify_full(d, &db.endpoint, &["--repair", "--repair-orphans"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        get(&c, "GHOST#1", "GHOST").await.is_none(),
        "the orphan is deleted"
    );
    let orphans = repairs(d, "singletable-repairs.jsonl");
    assert_eq!(
        orphans,
        [(
            "GHOST#1".to_string(),
            "GHOST".to_string(),
            "orphan".to_string()
        )]
        .into()
    );
}

/// A repair through 30% of its writes throttled, failed with 500, reset or
/// half-processed loses nothing: no dead letter, and the target matches.
#[tokio::test]
async fn a_repair_through_throttling_and_errors_loses_nothing() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let items = load_legacy(&c, 400, 29, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    migrate(d, &db.endpoint);
    let want = move_the_source(&c, &items, 0.4).await;
    assert!(
        want.len() > 300,
        "enough writes for the faults: {}",
        want.len()
    );
    let proxy = Proxy::start(&db.endpoint);
    {
        let mut f = proxy.faults.lock().unwrap();
        f.rate = 0.3;
        f.kinds = vec![
            Fault::Throttle,
            Fault::ServerError,
            Fault::Reset,
            Fault::Unprocessed,
        ];
    }
    // A small collect limit: the repair goes round by round, holding at
    // most 50 records of each side at a time.
    let words = [
        "--repair",
        "--report",
        "repair.json",
        "--collect-limit",
        "50",
    ];
    let (code, out) = verify_full(d, &proxy.endpoint, &words);
    assert_eq!(code, 0, "{out}");
    let r = report(d, "repair.json");
    assert!(r["rounds"].as_u64().unwrap() > 3, "{}", r["rounds"]);
    assert_eq!(r["writes"]["totals"]["dead_lettered"], 0, "{r:#}");
    assert!(
        r["writes"]["totals"]["retries"].as_u64().unwrap() > 0,
        "{r:#}"
    );
    assert!(proxy.served(Fault::Throttle) > 0, "faults were injected");
    assert_eq!(repairs(d, "singletable-repairs.jsonl"), want);
    assert_eq!(verify_full(d, &db.endpoint, &[]).0, 0);
}

/// The application writes while a Scan-based migration runs: the run warns
/// that the source changed under it (naming the table and the ways to
/// converge), verify --full differs, and one repair converges; what the
/// dry run lists is among the keys the application touched.
#[tokio::test]
async fn a_scan_that_the_source_moved_under_warns_and_a_repair_converges() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let items = load_legacy(&c, 400, 31, 0.0).await;
    singletable::demo::enable_streams(&c, "NEW_AND_OLD_IMAGES")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = m();
    let words = [
        "migrate",
        "--mapping",
        &m,
        "--create-table",
        "--write-rate",
        "50",
        "--report",
        "run.json",
        "--endpoint-url",
        &db.endpoint,
    ];
    let run = spawn_singletable(d, &words, &[]);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let want = move_the_source(&c, &items, 0.05).await;
    let o = finish_within(run, 120);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(d, "run.json");
    let warned: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .filter(|w| w.contains("a Scan is not a snapshot"))
        .collect();
    assert!(!warned.is_empty(), "{r:#}");
    assert!(
        warned
            .iter()
            .all(|w| w.starts_with("ai-girlfriend-") && w.contains("--repair")),
        "{warned:?}"
    );
    let (code, out) = verify_full(d, &db.endpoint, &[]);
    assert_eq!(code, 1, "the changes behind the scan differ: {out}");
    let (code, out) = verify_full(d, &db.endpoint, &["--repair", "--dry-run"]);
    assert_eq!(code, 1, "{out}");
    let listed = repairs(d, "singletable-repairs.jsonl");
    assert!(
        !listed.is_empty() && listed.is_subset(&want),
        "{listed:?}\n{want:?}"
    );
    let (code, out) = verify_full(d, &db.endpoint, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(verify_full(d, &db.endpoint, &[]).0, 0);
}
