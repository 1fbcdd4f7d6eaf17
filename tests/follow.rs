//! Zero downtime: the legacy tables' streams followed into the target while
//! an application keeps writing, against dynoxide's Streams through the
//! real SDK; a follow killed and resumed; streams that cannot be followed.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::*;
use singletable::demo::{self, Dataset};

/// The demo's legacy tables with streams of `view`, loaded before the
/// streams are enabled (the load is not a change to follow).
async fn legacy_with_streams(endpoint: &str, view: &str) -> (aws_sdk_dynamodb::Client, Dataset) {
    let c = client(endpoint).await;
    let items = load_legacy(&c, 400, 7, 0.0).await;
    demo::enable_streams(&c, view).await.unwrap();
    (c, items)
}

/// Rounds `from..=to` of an application's writes: about 8% of each table's
/// items updated (some sessions moved to another user: their target key
/// moves), deleted and inserted per round. Returns the data as it now is.
async fn application(
    c: &aws_sdk_dynamodb::Client,
    mut items: Dataset,
    rounds: std::ops::RangeInclusive<i64>,
) -> (Dataset, usize) {
    let mut made = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for round in rounds {
        let (changes, updated) = demo::changes_round(&items, round as u64, 0.08, round);
        for (table, change) in &changes {
            let kind = match (&change.old, &change.new) {
                (None, _) => "insert",
                (Some(_), None) => "delete",
                (Some(old), Some(new)) if old.get("userId") != new.get("userId") => "move",
                _ => "update",
            };
            kinds.insert((table.to_string(), kind));
        }
        demo::apply(c, &changes).await.unwrap();
        made += changes.len();
        items = updated;
    }
    // Puts, updates and deletes in every one of the seven tables, and a
    // session moved to another user (its target key changes).
    for (table, _, _) in demo::LEGACY_TABLES {
        for kind in ["insert", "update", "delete"] {
            let moved = kind == "update" && kinds.contains(&(table.to_string(), "move"));
            assert!(
                moved || kinds.contains(&(table.to_string(), kind)),
                "{table}: no {kind} in {kinds:?}"
            );
        }
    }
    assert!(kinds.contains(&("ai-girlfriend-sessions".to_string(), "move")));
    (items, made)
}

fn spawn(dir: &Path, endpoint: &str, words: &[&str]) -> Child {
    let mapping = m();
    let more = ["--mapping", &mapping, "--endpoint-url", endpoint];
    spawn_singletable(dir, &[words, &more].concat(), &[])
}

/// Waits for a child for at most two minutes (a follow that never catches
/// up fails the test instead of hanging the suite).
fn finish(child: Child) -> std::process::Output {
    finish_within(child, 120)
}

fn state(dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(dir.join("singletable-state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Waits (up to a minute) until the state file says `ready`.
fn wait_for(dir: &Path, what: &str, ready: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&state(dir)) {
        assert!(
            Instant::now() < deadline,
            "waited a minute for {what}: {}",
            state(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Records the follow has applied, as its state counts them.
fn applied(s: &serde_json::Value) -> u64 {
    let counters = s["follow"]["counters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    counters
        .iter()
        .map(|c| c["read"].as_u64().unwrap_or(0))
        .sum()
}

fn verify_full_matches(dir: &Path, endpoint: &str) {
    let (code, report, out) = verify(dir, endpoint, &["--full"]);
    assert_eq!(code, 0, "verify --full: {out}");
    assert_eq!(report["verdict"], "match", "{out}");
}

#[tokio::test]
async fn then_follow_catches_up_with_what_the_application_wrote_during_the_copy() {
    let db = Dynoxide::start();
    let (c, items) = legacy_with_streams(&db.endpoint, "NEW_AND_OLD_IMAGES").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A copy slow enough (about 4 s) for the application to write during it.
    let child = spawn(
        d,
        &db.endpoint,
        &args("migrate --create-table --then-follow --until-caught-up --max-lag 1s --write-rate 150 --report run.json"),
    );
    wait_for(d, "the copy to start", |s| s["status"] == "running");
    let (_, made) = application(&c, items, 2..=4).await;
    let copying = state(d)["follow"]["started_at"].is_null();
    let o = finish(child);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(copying, "the application wrote while the copy ran: {out}");
    let follow = report(d, "run.follow.json");
    assert_eq!(follow["command"], "follow");
    assert_eq!(follow["follow"]["caught_up"], true, "{follow}");
    assert!(follow["reconciled"].as_bool().unwrap());
    let read = follow["totals"]["read"].as_u64().unwrap();
    assert!(
        read >= made as u64,
        "every change of the {made} was read: {read}"
    );
    assert!(
        follow["totals"]["deleted"].as_u64().unwrap() > 0,
        "deletes applied"
    );
    assert!(
        follow["totals"]["stale_keys_deleted"].as_u64().unwrap() > 0,
        "a session moved to another user left its old target key, deleted: {follow}"
    );
    let lag = follow["follow"]["lag"].as_array().unwrap();
    assert_eq!(lag.len(), 7, "every table's lag: {follow}");
    assert!(lag
        .iter()
        .all(|l| l["caught_up"] == true && l["behind"] == 0));
    assert!(out.contains("caught up: every change"), "{out}");
    verify_full_matches(d, &db.endpoint);
    // The state says where every shard stands, and the check says GO.
    let s = state(d);
    assert_eq!(s["follow"]["status"], "finished");
    assert!(s["follow"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["sequence"].is_string() || u["records"] == 0));
    let o = singletable(d, &db.endpoint, &["cutover-check", "--mapping", &m()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("GO: nothing is behind"), "{}", text(&o));
}

#[tokio::test]
async fn a_killed_follow_resumes_and_the_target_still_matches() {
    let db = Dynoxide::start();
    let (c, items) = legacy_with_streams(&db.endpoint, "NEW_AND_OLD_IMAGES").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = spawn(
        d,
        &db.endpoint,
        &args("migrate --create-table --then-follow --state-interval 100ms"),
    );
    wait_for(d, "the follow to start", |s| {
        s["follow"]["started_at"].is_string()
    });
    let (items, _) = application(&c, items, 2..=3).await;
    wait_for(d, "some changes applied", |s| applied(s) > 0);
    child.kill().unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), None, "killed: {}", text(&o));
    assert_eq!(
        state(d)["follow"]["status"],
        "running",
        "a killed follow stays running"
    );
    // The application goes on while no follow runs: the state says so, and
    // the check says NO-GO with the changes the streams hold beyond it.
    let (_, _) = application(&c, items, 4..=5).await;
    let o = Command::new(env!("CARGO_BIN_EXE_singletable"))
        .current_dir(d)
        .arg("status")
        .output()
        .unwrap();
    assert!(
        text(&o).contains("follow of the streams: killed"),
        "{}",
        text(&o)
    );
    let o = singletable(d, &db.endpoint, &["cutover-check", "--mapping", &m()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "the sample differs: {out}");
    assert!(out.contains("NO-GO:"), "{out}");
    assert!(
        out.contains("change(s) beyond the follow's last saved position"),
        "{out}"
    );
    assert!(out.contains("the sampled verify found"), "{out}");
    let o = finish(spawn(
        d,
        &db.endpoint,
        &["follow", "--until-caught-up", "--report", "follow.json"],
    ));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let s = state(d);
    assert_eq!(s["follow"]["attempts"], 2, "{s}");
    let r = report(d, "follow.json");
    assert!(r["reconciled"].as_bool().unwrap(), "{r}");
    assert_eq!(r["totals"]["dead_lettered"], 0, "{r}");
    verify_full_matches(d, &db.endpoint);
    // --from with positions kept is refused: it would skip or redo changes.
    let o = singletable(
        d,
        &db.endpoint,
        &["follow", "--mapping", &m(), "--from", "LATEST"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("pass --fresh"), "{}", text(&o));
}

#[tokio::test]
async fn streams_that_cannot_be_followed_are_refused_with_the_fix_before_anything_is_copied() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 100, 7, 0.0).await;
    // Sessions' target key needs userId, which a NEW_IMAGE delete lacks; the
    // daily stats have no stream at all.
    demo::enable_streams(&c, "NEW_IMAGE").await.unwrap();
    c.update_table()
        .table_name("ai-girlfriend-daily-stats")
        .stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(false)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for words in [
        vec!["follow", "--mapping", &m()],
        vec![
            "migrate",
            "--mapping",
            &m(),
            "--create-table",
            "--then-follow",
        ],
    ] {
        let o = singletable(d, &db.endpoint, &words);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}");
        assert!(out.contains("ai-girlfriend-daily-stats: it has no stream; enable one: aws dynamodb update-table --table-name ai-girlfriend-daily-stats --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"), "{out}");
        assert!(
            out.contains("ai-girlfriend-sessions: its view is NEW_IMAGE, so a delete carries only the legacy key, but the target key also needs userId"),
            "{out}"
        );
        assert!(out.contains("StreamEnabled=false, then"), "{out}");
        assert!(
            !out.contains("ai-girlfriend-users:"),
            "users' key suffices: {out}"
        );
    }
    let target = singletable::sinks::table::describe(&c, TARGET)
        .await
        .unwrap();
    assert!(target.is_none(), "nothing was copied");
}

#[tokio::test]
async fn a_follow_through_throttling_errors_and_resets_applies_every_change() {
    let db = Dynoxide::start();
    let (c, items) = legacy_with_streams(&db.endpoint, "NEW_AND_OLD_IMAGES").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = singletable(
        d,
        &db.endpoint,
        &["migrate", "--mapping", &m(), "--create-table"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The copy's state knows no start to follow from: it says so.
    let o = singletable(d, &db.endpoint, &["follow", "--mapping", &m()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("pass --from"), "{}", text(&o));
    // A start the streams no longer hold is refused.
    let o = singletable(
        d,
        &db.endpoint,
        &[
            "follow",
            "--mapping",
            &m(),
            "--from",
            "2020-01-01T00:00:00Z",
            "--state",
            "old.json",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("keeps records 24 h: changes made since are lost"),
        "{}",
        text(&o)
    );
    let from = chrono::Utc::now().to_rfc3339();
    application(&c, items, 2..=3).await;
    let proxy = Proxy::start(&db.endpoint);
    {
        let mut f = proxy.faults.lock().unwrap();
        f.stream_error_rate = 0.3;
        f.rate = 0.3;
        f.kinds = vec![Fault::Throttle, Fault::ServerError, Fault::Reset];
    }
    let o = finish(spawn(
        d,
        &proxy.endpoint,
        &[
            "follow",
            "--from",
            &from,
            "--until-caught-up",
            "--report",
            "f.json",
            // Another endpoint (the proxy) is another target to a state.
            "--state",
            "follow-state.json",
        ],
    ));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let served = proxy.faults.lock().unwrap().stream_errors_served;
    assert!(served > 0, "stream calls failed: {out}");
    assert!(proxy.served(Fault::Throttle) > 0, "writes throttled: {out}");
    let r = report(d, "f.json");
    assert_eq!(
        r["totals"]["dead_lettered"], 0,
        "a transient fault never dead-letters: {r}"
    );
    assert_eq!(r["totals"]["not_written"], 0, "{r}");
    verify_full_matches(d, &db.endpoint);
}
