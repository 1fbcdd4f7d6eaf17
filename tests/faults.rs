//! Transient faults slow a run down and never lose an item; a run that did
//! not migrate everything never exits 0; every signal drains. All through
//! the fault-injecting proxy in front of dynoxide (or moto's S3).

use std::time::Duration;

use crate::common::*;

/// Migrates a small dataset through the proxy with 60% of BatchWriteItem
/// calls answered with `kinds` (and, with `scan_errors`, 60% of Scan calls
/// with a 500); checks nothing was lost and the target verifies in full.
async fn survives(kinds: &[Fault], scan_errors: bool, scale: usize) {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    {
        let mut f = proxy.faults.lock().unwrap();
        f.rate = 0.6;
        f.kinds = kinds.to_vec();
        f.scan_error_rate = if scan_errors { 0.6 } else { 0.0 };
    }
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, scale, 11, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let (report, out) = migrate_expect(dir.path(), &proxy.endpoint, &m(), &[], 0);
    // Faults go round the kinds in turn: each was served about equally.
    let total: usize = kinds.iter().map(|k| proxy.served(*k)).sum();
    assert!(total >= 6 * kinds.len(), "{total} faults served: {out}");
    for kind in kinds {
        assert!(proxy.served(*kind) >= 5, "{kind:?} was injected: {out}");
    }
    if scan_errors {
        assert!(proxy.faults.lock().unwrap().scan_errors_served >= 3);
    }
    let t = &report["totals"];
    assert_eq!(t["read"], legacy.len() as u64, "{report:#}");
    assert_eq!(t["written"], legacy.len() as u64, "{report:#}");
    assert_eq!(t["dead_lettered"], 0, "{report:#}");
    assert_eq!(t["not_written"], 0, "{report:#}");
    assert!(t["retries"].as_u64().unwrap() > 0, "{report:#}");
    assert!(dead_letters(dir.path(), "dead.jsonl").is_empty());
    assert!(out.contains("reconciled"), "{out}");
    let (code, _, vout) = verify(dir.path(), &db.endpoint, &["--full"]);
    assert_eq!(code, 0, "{vout}");
}

#[tokio::test]
async fn sixty_percent_throttling_loses_nothing() {
    survives(&[Fault::Throttle], false, 250).await;
}

#[tokio::test]
async fn sixty_percent_server_errors_lose_nothing() {
    survives(&[Fault::ServerError], false, 250).await;
}

#[tokio::test]
async fn sixty_percent_resets_lose_nothing() {
    survives(&[Fault::Reset], false, 250).await;
}

#[tokio::test]
async fn sixty_percent_unprocessed_items_lose_nothing() {
    survives(&[Fault::Unprocessed], false, 250).await;
}

#[tokio::test]
async fn sixty_percent_of_every_fault_mixed_with_failing_scans_loses_nothing() {
    let all = [
        Fault::Throttle,
        Fault::ServerError,
        Fault::Reset,
        Fault::Unprocessed,
    ];
    survives(&all, true, 500).await;
}

/// Sustained throttling: the achieved rate drops, the controller cuts its
/// rate, and both recover once the throttling ends (read off the report's
/// rate samples, not the clock).
#[tokio::test]
async fn sustained_throttling_lowers_the_rate_and_it_recovers() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    proxy.faults.lock().unwrap().throttle_window = Some((40, Duration::from_secs(3)));
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 4000, 12, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--rate-sample-interval", "200ms"];
    let (report, out) = migrate_expect(dir.path(), &proxy.endpoint, &m(), &extra, 0);
    assert!(proxy.served(Fault::Throttle) >= 10, "3 s of throttling");
    assert_eq!(report["totals"]["written"], legacy.len() as u64);
    assert!(report["rate_backoffs"].as_u64().unwrap() >= 2, "{report:#}");
    assert!(out.contains("the rate was cut"), "{out}");
    let samples = report["rate_samples"].as_array().unwrap();
    let f = |s: &serde_json::Value, k: &str| s[k].as_f64().unwrap_or(f64::MAX);
    // The sample where the controller's rate was lowest.
    let (low_at, low) = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| !s["rate_limit"].is_null())
        .min_by(|a, b| f(a.1, "rate_limit").total_cmp(&f(b.1, "rate_limit")))
        .expect("the controller set a rate");
    let best = samples
        .iter()
        .map(|s| f(s, "items_per_s"))
        .fold(0.0, f64::max);
    assert!(
        f(low, "items_per_s") < best / 2.0,
        "the achieved rate dropped while throttled: {samples:#?}"
    );
    let later = &samples[low_at + 1..];
    assert!(
        later
            .iter()
            .any(|s| f(s, "rate_limit") > f(low, "rate_limit")),
        "the controller raised its rate again: {samples:#?}"
    );
    assert!(
        later
            .iter()
            .any(|s| f(s, "items_per_s") >= 2.0 * f(low, "items_per_s").max(1.0)),
        "the achieved rate recovered: {samples:#?}"
    );
    assert!(samples.iter().any(|s| s["throttles"].as_u64() > Some(0)));
}

/// A backend that accepts calls and never answers: the run stops cleanly
/// within the stall timeout, as a failure, with every item in hand recorded
/// as not written and none dead-lettered.
#[tokio::test]
async fn a_backend_that_never_answers_stops_within_the_stall_timeout() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    proxy.faults.lock().unwrap().hang = true;
    let c = client(&db.endpoint).await;
    load_legacy(&c, 300, 13, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--stall-timeout", "3s", "--request-timeout", "1"];
    let (report, out) = migrate_expect(dir.path(), &proxy.endpoint, &m(), &extra, 2);
    assert!(out.contains("--stall-timeout"), "{out}");
    assert_eq!(report["interrupted"], true);
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("--stall-timeout"),
        "the report says why: {report:#}"
    );
    let said = report["warnings"].to_string();
    assert!(
        said.contains("stopped by an error") && said.contains("0 record(s) were written"),
        "{said}"
    );
    assert_eq!(report["reconciled"], true, "{report:#}");
    let t = &report["totals"];
    assert_eq!(t["written"], 0);
    assert_eq!(t["dead_lettered"], 0, "a stall is not a dead letter");
    let unwritten = t["not_written"].as_u64().unwrap();
    assert!(unwritten > 0, "{report:#}");
    let lines = dead_letters(dir.path(), "dead.jsonl");
    assert_eq!(lines.len() as u64, unwritten);
    assert!(lines.iter().all(|l| l["stage"] == "unwritten"));
    // Well within the 60 s the SDK alone would wait: the stall timeout ruled.
    assert!(report["duration_seconds"].as_f64().unwrap() < 30.0);
}

/// One item the backend rejects: exit 3, exactly that item dead-lettered,
/// the summary says so; allowed, the same run exits 0.
#[tokio::test]
async fn one_invalid_item_gives_exit_3_and_an_allowance_makes_it_0() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    proxy.faults.lock().unwrap().poison_pk = Some("SESSION#session456".into());
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 200, 14, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let (report, out) = migrate_expect(dir.path(), &proxy.endpoint, &m(), &[], 3);
    let t = &report["totals"];
    assert_eq!(t["dead_lettered"], 1, "{report:#}");
    assert_eq!(t["written"], legacy.len() as u64 - 1);
    let lines = dead_letters(dir.path(), "dead.jsonl");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["item"]["pk"]["S"], "SESSION#session456");
    assert_eq!(lines[0]["stage"], "write");
    assert!(out.contains("exit 3"), "{out}");
    assert!(out.contains("not migrated: 1 item(s)"), "{out}");
    assert!(
        out.contains("message") && out.contains("Injected: item rejected"),
        "{out}"
    );
    let allow = ["--allow-dead-letters", "1"];
    let (report, _) = migrate_expect(dir.path(), &proxy.endpoint, &m(), &allow, 0);
    assert_eq!(report["allowed_dead_letters"], 1);
    let allow = ["--allow-dead-letters", "1%"];
    migrate_expect(dir.path(), &proxy.endpoint, &m(), &allow, 0);
}

/// Runs a slow migration, sends `signal` once writing has begun, and checks
/// the run drained: exit 2, a report that reconciles, every item read
/// written. From exports with `export`, so a file stops mid-way.
async fn drains_on(signal: &str, export: bool) {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let mut source = vec![];
    let total = if export {
        let data = "--scale 20000 --seed 6 --dirty-rate 0 --exports-only --export-to exp";
        demo_exports(dir.path(), &db.endpoint, "exports.txt", &args(data));
        source.extend(["--exports-file", "exports.txt"]);
        20_000
    } else {
        load_legacy(&c, 6_000, 6, 0.0).await.len()
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_singletable"))
        .current_dir(dir.path())
        .args(["migrate", "--mapping", &m(), "--create-table"])
        .args(&source)
        .args(args(
            "--report run.json --write-rate 1000 --page-size 25 --segments 1 --quiet",
        ))
        .args(["--endpoint-url", &db.endpoint, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_writes(&c).await;
    let kill = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("interrupted") && stderr.contains(signal),
        "{}",
        text(&o)
    );
    let report = report(dir.path(), "run.json");
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["reconciled"], true, "{report:#}");
    assert_eq!(report["exit_code"], 2);
    let t = &report["totals"];
    let (read, written) = (t["read"].as_u64().unwrap(), t["written"].as_u64().unwrap());
    assert!(read < total as u64, "it stopped reading early: {read}");
    assert_eq!(read, written, "everything read was written");
    assert_eq!(scan_all(&c, TARGET).await.len() as u64, written);
    // The state says stopped; a resume reads the rest, once.
    let mp = m();
    let resume = [&["migrate", "--resume", "--mapping", &mp][..], &source[..]].concat();
    let o = singletable(
        dir.path(),
        &db.endpoint,
        &[&resume[..], &args("--report run.json")].concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = crate::common::report(dir.path(), "run.json");
    // Exports: the manifests' counts (the demo's scale is approximate).
    let state = crate::common::report(dir.path(), "singletable-state.json");
    let expected: u64 = match export {
        true => state["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["expected"].as_u64().unwrap())
            .sum(),
        false => total as u64,
    };
    assert_eq!(state["status"], "finished");
    assert_eq!(r["totals"]["read"], expected, "{r:#}");
    assert_eq!(r["totals"]["written"], expected, "{r:#}");
}

async fn wait_for_writes(c: &aws_sdk_dynamodb::Client) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let exists = c.describe_table().table_name(TARGET).send().await.is_ok();
        if exists && !scan_all(c, TARGET).await.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the migration never started writing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sigint_drains_and_the_report_reconciles() {
    drains_on("INT", false).await;
}

#[tokio::test]
async fn sigterm_drains_and_the_report_reconciles() {
    drains_on("TERM", false).await;
}

/// An export file being read stops at its next record, not at its end.
#[tokio::test]
async fn sigterm_stops_export_files_mid_way_and_the_report_reconciles() {
    drains_on("TERM", true).await;
}

#[tokio::test]
async fn sighup_drains_and_the_report_reconciles() {
    drains_on("HUP", false).await;
}

/// A dead-letter file that cannot be written stops the run with that error,
/// before anything is written (a bad path) or as soon as it fails (a full disk).
#[tokio::test]
async fn a_dead_letter_file_on_a_full_or_impossible_path_stops_the_run() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 1000, 15, 0.05).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a-file"), "not a folder").unwrap();
    let mapping = m();
    let base = ["migrate", "--mapping", &mapping, "--create-table"];
    let o = singletable(
        d,
        &db.endpoint,
        &[&base[..], &args("--dead-letter a-file/dead.jsonl")].concat(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("dead-letter file a-file/dead.jsonl"),
        "{}",
        text(&o)
    );
    assert!(
        c.describe_table().table_name(TARGET).send().await.is_err(),
        "refused before anything was created or written"
    );

    let full = [
        &base[..],
        &args("--dead-letter /dev/full --report run.json"),
    ]
    .concat();
    let o = singletable(d, &db.endpoint, &full);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("dead-letter file /dev/full"), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
    let r = report(d, "run.json");
    assert_eq!(r["interrupted"], true);
    assert_eq!(
        r["totals"]["dead_lettered"], 0,
        "nothing is counted that is not on disk"
    );
}

/// Two writes of one target key land in the order they were read, even far
/// apart in the stream, with calls in flight overtaking each other.
#[tokio::test]
async fn two_writes_of_one_key_in_different_batches_land_in_order() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    {
        let mut f = proxy.faults.lock().unwrap();
        f.jitter_ms = 40;
        f.rate = 0.3;
        f.kinds = vec![Fault::ServerError];
    }
    let c = client(&db.endpoint).await;
    load_legacy(&c, 2000, 16, 0.0).await;
    // Every session of a user lands on one key: the last one read must win.
    let dir = tempfile::tempdir().unwrap();
    let one_key = std::fs::read_to_string(mapping_path())
        .unwrap()
        .replace("sk = \"SESSION#{sessionId}\"", "sk = \"LAST_SESSION\"");
    std::fs::write(dir.path().join("one-key.toml"), one_key).unwrap();
    let extra = args("--segments 1 --page-size 100 --max-in-flight 8");
    // Sessions of one user collide: every one after the first replaces it.
    let (run, out) = migrate_expect(dir.path(), &proxy.endpoint, "one-key.toml", &extra, 3);
    // The order a single-segment Scan reads the sessions in.
    let mut expected = std::collections::HashMap::new();
    let mut start = None;
    loop {
        let page = c
            .scan()
            .table_name("ai-girlfriend-sessions")
            .limit(100)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for s in page.items() {
            expected.insert(
                str_of(s, "userId").to_string(),
                str_of(s, "sessionId").to_string(),
            );
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    let repeated = scan_all(&c, "ai-girlfriend-sessions").await.len() - expected.len();
    assert!(
        repeated > 50,
        "many users have several sessions: {repeated}"
    );
    assert_eq!(run["totals"]["overwritten"], repeated as u64, "{run:#}");
    assert!(
        out.contains("replaced by a later record with the same target key"),
        "{out}"
    );
    // verify --full names every collision with all its source keys.
    let v = args("verify --mapping one-key.toml --full --max-listed 100000 --report v.json");
    let o = singletable(dir.path(), &db.endpoint, &v);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let vr = report(dir.path(), "v.json");
    let collisions: Vec<&serde_json::Value> = vr["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "collision")
        .collect();
    let sessions = scan_all(&c, "ai-girlfriend-sessions").await;
    let mut per_user = std::collections::HashMap::new();
    for s in &sessions {
        *per_user.entry(str_of(s, "userId").to_string()).or_insert(0) += 1;
    }
    let colliding = per_user.values().filter(|n| **n > 1).count();
    assert_eq!(collisions.len(), colliding, "{:#}", vr["entities"]);
    for m in collisions {
        let keys = m["source_key"].as_str().unwrap();
        assert!(keys.matches("sessionId=").count() >= 2, "{m}");
    }
    // A sample on the colliding data reports differences; no AWS error.
    let v = args("verify --mapping one-key.toml --sample 100000");
    let o = singletable(dir.path(), &db.endpoint, &v);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    for (user, session) in &expected {
        let item = get(&c, &format!("USER#{user}"), "LAST_SESSION")
            .await
            .unwrap();
        assert_eq!(str_of(&item, "sessionId"), session, "user {user}");
    }
}

/// An S3 body cut short mid-file is read again, skipping what was sent:
/// nothing lost, nothing twice.
#[tokio::test]
async fn an_s3_export_cut_short_is_read_again_without_losing_or_repeating() {
    let db = Dynoxide::start();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint);
    proxy.faults.lock().unwrap().cut_bodies = 3;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let direct = endpoints(&db.endpoint, &moto.endpoint);
    let data = "--scale 3000 --seed 5 --dirty-rate 0 --exports-only --export-to s3://cut/x";
    demo_exports_s3(d, &direct, data);
    let through_proxy = endpoints(&db.endpoint, &proxy.endpoint);
    let run = args("migrate --exports-file exports.txt --create-table --report run.json");
    let o = singletable_env(
        d,
        &through_proxy,
        &[&run[..], &["--mapping", &m()]].concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(proxy.faults.lock().unwrap().bodies_cut, 3);
    let r = report(d, "run.json");
    let t = &r["totals"];
    assert_eq!(t["read"], t["written"], "{r:#}");
    assert_eq!(t["read"], t["transformed"]);
    let verify = args("verify --exports-file exports.txt --full");
    let o = singletable_env(d, &direct, &[&verify[..], &["--mapping", &m()]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
