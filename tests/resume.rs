//! Long runs: a migration killed with SIGKILL, resumed from its state file
//! until it ends; the refusals that keep a state from being misused; and
//! `replay` of a dead-letter file once its cause is fixed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::common::*;

/// Items in flight and queued that a kill can catch, at the settings of
/// [`RUN`]: pages waiting for the transform (and one blocked page per
/// segment reading), the sink's queue, the batch being filled, the calls in
/// flight, and what was acknowledged after the last save (the write-rate
/// ceiling times the save interval). A resume redoes at most this much.
fn redo_bound(segments_reading: usize, page: usize, per_second: usize, save_ms: usize) -> usize {
    let queued_pages = (singletable::pipeline::SOURCE_QUEUE + segments_reading + 1) * page;
    let sink = singletable::pipeline::SINK_QUEUE + 25 + 4 * 25;
    let unsaved = per_second * save_ms / 1000 + 25;
    queued_pages + sink + unsaved
}

/// The run every attempt makes: slow enough to be killed mid-way.
const RUN: &str = "--create-table --report run.json --dead-letter dead.jsonl --write-rate 3000 \
                   --page-size 50 --segments 2 --max-in-flight 4 --state-interval 100ms";

fn spawn_migrate(dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> Child {
    let mapping = m();
    let words = [&["migrate", "--mapping", &mapping][..], &args(RUN), extra].concat();
    spawn_singletable(dir, &words, env)
}

/// Kills attempts with SIGKILL at `kills` random points (and on, up to
/// four times as many, until one lands in phase `until_phase`), resuming each
/// time (the first attempt starts fresh); then resumes to the end. Returns
/// the final report, the phases the kills landed in (one entry per kill),
/// and the output of the last run.
fn kill_and_resume(
    dir: &Path,
    env: &[(&str, &str)],
    source: &[&str],
    (kills, until_phase): (usize, u64),
    seed: u64,
) -> (serde_json::Value, Vec<u64>, String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut phases_killed = Vec::new();
    for attempt in 0..4 * kills {
        let reached = phases_killed.iter().any(|&p| p >= until_phase);
        if attempt >= kills && reached {
            break;
        }
        // A kill before the run saved its first state leaves none to resume.
        let kept = dir.join("singletable-state.json").exists();
        let resume: &[&str] = if kept { &["--resume"] } else { &[] };
        let mut child = spawn_migrate(dir, env, &[source, resume].concat());
        std::thread::sleep(Duration::from_millis(rng.random_range(500..1800)));
        if child.try_wait().unwrap().is_some() {
            let o = child.wait_with_output().unwrap();
            assert_ne!(o.status.code(), Some(2), "seed {seed}: {}", text(&o));
            break;
        }
        child.kill().unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), None, "killed by a signal: {}", text(&o));
        let mut phase = 0;
        if dir.join("singletable-state.json").exists() {
            let state = status_json(dir);
            assert_eq!(state["status"], "running", "a killed run stays running");
            assert_eq!(state["running_now"], false, "and no run holds it");
            phase = state["phase"].as_u64().unwrap();
        }
        phases_killed.push(phase);
    }
    let o = spawn_migrate(dir, env, &[source, &["--resume"]].concat())
        .wait_with_output()
        .unwrap();
    let out = format!("kills landed in phases {phases_killed:?}\n{}", text(&o));
    (report(dir, "run.json"), phases_killed, out)
}

/// `singletable status` in `dir` (it takes no AWS options).
fn status(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_singletable"))
        .current_dir(dir)
        .arg("status")
        .args(extra)
        .output()
        .unwrap()
}

fn status_json(dir: &Path) -> serde_json::Value {
    let o = status(dir, &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Items the proxy saw sent in BatchWriteItem calls.
fn items_sent(proxy: &Proxy) -> usize {
    proxy.calls.lock().unwrap().iter().map(|c| c.requests).sum()
}

/// Every dead letter once: no two lines for one source key.
fn assert_each_dead_letter_once(dir: &Path, expected: u64) {
    let lines = dead_letters(dir, "dead.jsonl");
    let keys: BTreeSet<String> = lines
        .iter()
        .map(|l| format!("{} {} {}", l["source_table"], l["source_key"], l["raw"]))
        .collect();
    assert_eq!(keys.len(), lines.len(), "a dead letter twice: {lines:#?}");
    assert_eq!(lines.len() as u64, expected);
    assert!(lines.iter().all(|l| l["stage"] != "unwritten"));
}

#[tokio::test]
async fn a_scan_killed_ten_times_resumes_to_a_verified_target() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 12_000, 21, 0.01).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = [("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint.as_str())];
    let (r, phases, out) = kill_and_resume(d, &env, &[], (10, 0), 21);
    let kills = phases.len();
    assert!(kills >= 5, "most kills landed mid-run: {kills}\n{out}");
    // One report for the whole migration: every source item read once.
    assert_eq!(r["exit_code"], 3, "dirty rows dead-lettered: {out}");
    assert_eq!(r["reconciled"], true, "{r:#}");
    let t = &r["totals"];
    assert_eq!(t["read"], legacy.len() as u64, "{r:#}");
    assert_eq!(t["transformed"], legacy.len() as u64, "{r:#}");
    assert_eq!(t["not_written"], 0);
    assert!(out.contains("resumed from"), "{out}");
    assert_each_dead_letter_once(d, t["dead_lettered"].as_u64().unwrap());
    // Redone: at most what each kill caught in flight and queued.
    let written = (t["written"].as_u64().unwrap() + t["overwritten"].as_u64().unwrap()) as usize;
    let sent = items_sent(&proxy);
    let bound = written + kills * redo_bound(14, 50, 3000, 100);
    assert!(
        sent <= bound,
        "{sent} items sent for {written} written over {kills} kills (bound {bound})"
    );
    eprintln!("scan: {sent} items sent for {written} written, {kills} kills");
    assert_eq!(status_json(d)["status"], "finished");
    let (code, _, vout) = verify(d, &db.endpoint, &["--full"]);
    assert_eq!(code, 0, "{vout}");
}

#[tokio::test]
async fn exports_with_an_incremental_round_killed_ten_times_resume_to_a_verified_target() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data =
        "--scale 12000 --seed 22 --dirty-rate 0 --exports-only --export-to exp --incremental --change-rate 0.2";
    demo_exports(d, &db.endpoint, "exports.txt", &args(data));
    let env = [("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint.as_str())];
    let source = ["--exports-file", "exports.txt"];
    let (r, phases, out) = kill_and_resume(d, &env, &source, (10, 1), 22);
    let kills = phases.len();
    assert!(kills >= 5, "most kills landed mid-run: {kills}\n{out}");
    assert!(
        phases.contains(&1),
        "a kill landed in the incremental round: {out}"
    );
    assert_eq!(r["exit_code"], 0, "{out}");
    assert_eq!(r["reconciled"], true, "{r:#}");
    let t = &r["totals"];
    assert!(
        t["deleted"].as_u64().unwrap() > 0,
        "the incremental round ran: {r:#}"
    );
    let state = status_json(d);
    assert_eq!(state["status"], "finished");
    assert_eq!((&state["phases"], &state["phase"]), (&2.into(), &2.into()));
    // The full export's records plus the incremental's, each read once.
    let manifests: u64 = state["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["expected"].as_u64().unwrap())
        .sum();
    assert_eq!(t["read"], manifests, "{r:#}");
    let done: u64 = t["written"].as_u64().unwrap()
        + t["overwritten"].as_u64().unwrap()
        + t["deleted"].as_u64().unwrap()
        + t["stale_keys_deleted"].as_u64().unwrap();
    let sent = items_sent(&proxy);
    let bound = done as usize + kills * redo_bound(16, 256, 3000, 100);
    assert!(
        sent <= bound,
        "{sent} sent for {done} done over {kills} kills"
    );
    eprintln!("exports: {sent} items sent for {done} done, {kills} kills");
    let verify = args("verify --exports-file exports.txt --full");
    let o = singletable_env(
        d,
        &[("AWS_ENDPOINT_URL_DYNAMODB", db.endpoint.as_str())],
        &[&verify[..], &["--mapping", &m()]].concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A stopped run: `migrate` alone is refused, so is `--resume` with another
/// mapping; `status` tells where it stopped; `--fresh` starts over.
#[tokio::test]
async fn an_unfinished_state_is_only_resumed_as_it_was_started() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 9_000, 23, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mp = m();
    let env = [("AWS_ENDPOINT_URL_DYNAMODB", db.endpoint.as_str())];
    let mut child = spawn_migrate(d, &env, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();

    let o = status(d, &[]);
    let shown = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(shown.contains("killed: not finished"), "{shown}");
    assert!(shown.contains("migrate --resume --state"), "{shown}");
    let pct = status_percent(d);
    assert!(pct > 0.0 && pct < 100.0, "{shown}");

    let o = singletable(
        d,
        &db.endpoint,
        &[&["migrate", "--mapping", &mp][..], &args(RUN)].concat(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("a previous run was killed"), "{said}");
    assert!(
        said.contains("pass --resume to continue it, or --fresh"),
        "{said}"
    );

    let changed = d.join("changed.toml");
    let mut toml = std::fs::read_to_string(mapping_path()).unwrap();
    toml.push_str("\n# an edit\n");
    std::fs::write(&changed, toml).unwrap();
    let run = [
        &["migrate", "--resume", "--mapping", "changed.toml"][..],
        &args(RUN),
    ]
    .concat();
    let o = singletable(d, &db.endpoint, &run);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("the mapping changed"), "{}", text(&o));
    let other_target = [&run[..], &["--target-table", "elsewhere"]].concat();
    let o = singletable(d, &db.endpoint, &other_target);
    assert!(text(&o).contains("the target changed"), "{}", text(&o));
    assert_eq!(
        status_json(d)["attempts"],
        1,
        "refusals leave the state alone"
    );

    let fresh = [&["migrate", "--fresh", "--mapping", &mp][..], &args(RUN)].concat();
    let o = singletable(d, &db.endpoint, &fresh);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(d, "run.json");
    assert!(!text(&o).contains("resumed from"));
    assert_eq!(r["totals"]["read"], r["totals"]["written"]);
    let o = singletable(
        d,
        &db.endpoint,
        &[&["migrate", "--resume", "--mapping", &mp][..], &args(RUN)].concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("nothing to resume"), "{}", text(&o));
}

fn status_percent(dir: &Path) -> f64 {
    let o = status(dir, &[]);
    let shown = String::from_utf8_lossy(&o.stdout).to_string();
    let line = shown.lines().nth(1).unwrap_or_default();
    line.trim()
        .split('%')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1.0)
}

/// Dead letters of two kinds (a mapping that cannot make one entity's
/// items; items the backend rejects), re-driven after the fix: the replay
/// writes them all, its report reconciles, and the target verifies.
#[tokio::test]
async fn replay_after_a_fix_writes_the_dead_letters_and_the_target_verifies() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    proxy.faults.lock().unwrap().poison_pk = Some("SESSION#session456".into());
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 800, 24, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broken = d.join("broken.toml");
    let toml = std::fs::read_to_string(mapping_path()).unwrap();
    let toml = toml.replace(
        "sk = \"PERSONALITY\"",
        "sk = \"PERSONALITY#{noSuchAttribute}\"",
    );
    std::fs::write(&broken, toml).unwrap();
    let extra = ["--skip-data-check"];
    let (r, _) = migrate_expect(d, &proxy.endpoint, "broken.toml", &extra, 3);
    let lines = dead_letters(d, "dead.jsonl");
    let stages: BTreeSet<&str> = lines.iter().map(|l| l["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, BTreeSet::from(["transform", "write"]), "{lines:#?}");
    assert_eq!(r["totals"]["dead_lettered"], lines.len() as u64);
    let personalities = legacy
        .iter()
        .filter(|(t, _)| *t == "ai-girlfriend-personalities")
        .count();
    assert!(lines.len() > personalities, "{lines:#?}");

    // Fixed: the shipped mapping, and the backend without the fault.
    let replay = args("replay --dead-letter dead.jsonl --report replay.json");
    let o = singletable(
        d,
        &db.endpoint,
        &[&replay[..], &["--mapping", &m()]].concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rr = report(d, "replay.json");
    let t = &rr["totals"];
    assert_eq!(rr["command"], "replay");
    assert_eq!(rr["reconciled"], true, "{rr:#}");
    assert_eq!(t["read"], lines.len() as u64);
    assert_eq!(t["written"], lines.len() as u64, "{rr:#}");
    assert_eq!(dead_letters(d, "dead.replay.jsonl").len(), 0);
    let (code, _, vout) = verify(d, &db.endpoint, &["--full"]);
    assert_eq!(code, 0, "{vout}");

    // Replaying with the broken mapping again: what still fails goes to
    // the new file, and the exit code says so.
    let again =
        args("replay --dead-letter dead.jsonl --still-failing still.jsonl --report again.json");
    let o = singletable(
        d,
        &db.endpoint,
        &[&again[..], &["--mapping", "broken.toml"]].concat(),
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let still = dead_letters(d, "still.jsonl");
    assert_eq!(still.len(), personalities);
    assert!(still.iter().all(|l| l["stage"] == "transform"));
    let same = args("replay --dead-letter dead.jsonl --still-failing dead.jsonl");
    let o = singletable(d, &db.endpoint, &[&same[..], &["--mapping", &m()]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("is the file being replayed"),
        "{}",
        text(&o)
    );
}
