//! Beyond one machine: a run split into shards (`--shard I/N`), three
//! processes on one machine, by Scan and from exports with an incremental
//! round; one shard killed and resumed; the reports merged into one.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::*;

/// Starts `migrate` as one of three shards: `shard` is `I/3` (`--shard`),
/// or `VARIABLE=I` (`--shards 3`, the index from a scheduler's variable).
fn spawn_shard(dir: &Path, endpoint: &str, shard: &str, extra: &[&str]) -> Child {
    let mapping = m();
    let mut words = vec!["migrate", "--mapping", &mapping, "--create-table"];
    let mut env = Vec::new();
    match shard.split_once('=') {
        Some(variable_index) => {
            words.extend(["--shards", "3"]);
            env.push(variable_index);
        }
        None => words.extend(["--shard", shard]),
    }
    words.extend(["--report", "run.json", "--state-interval", "100ms"]);
    words.extend(extra);
    words.extend(["--endpoint-url", endpoint]);
    spawn_singletable(dir, &words, &env)
}

/// Waits for a shard (at most three minutes); asserts it exited 0.
fn succeeds(child: Child, what: &str) {
    let o = finish_within(child, 180);
    assert_eq!(o.status.code(), Some(0), "{what}: {}", text(&o));
}

/// A command that reaches no AWS endpoint (the merges), run in `dir`.
fn local(dir: &Path, words: &[&str], files: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_singletable"))
        .current_dir(dir)
        .args(words)
        .args(files)
        .output()
        .unwrap()
}

/// `report merge` of the three shards' reports: its exit code and report.
fn merged(dir: &Path) -> (i32, serde_json::Value, String) {
    let files: Vec<String> = (0..3).map(|i| format!("run.shard-{i}-of-3.json")).collect();
    let o = local(dir, &["report", "merge", "--out", "merged.json"], &files);
    (
        o.status.code().unwrap_or(-1),
        report(dir, "merged.json"),
        text(&o),
    )
}

#[tokio::test]
async fn three_scan_shards_read_disjoint_segments_and_merge_into_one_verified_run() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let items = load_legacy(&c, 1500, 5, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No index anywhere, or one past the count: refused, naming the fix.
    let o = singletable(
        d,
        &db.endpoint,
        &["migrate", "--mapping", &m(), "--shards", "3"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("JOB_COMPLETION_INDEX"), "{}", text(&o));
    assert!(
        text(&o).contains("AWS_BATCH_JOB_ARRAY_INDEX"),
        "{}",
        text(&o)
    );
    let o = singletable(
        d,
        &db.endpoint,
        &["migrate", "--mapping", &m(), "--shard", "3/3"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("must be below the number of shards"),
        "{}",
        text(&o)
    );
    let proxies: Vec<Proxy> = (0..3).map(|_| Proxy::start(&db.endpoint)).collect();
    let shards: Vec<Child> = proxies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // One by the flag, one by each scheduler's variable.
            let shard = match i {
                0 => "0/3".to_string(),
                1 => "JOB_COMPLETION_INDEX=1".to_string(),
                _ => format!("AWS_BATCH_JOB_ARRAY_INDEX={i}"),
            };
            spawn_shard(d, &p.endpoint, &shard, &["--segments", "2"])
        })
        .collect();
    for (i, s) in shards.into_iter().enumerate() {
        succeeds(s, &format!("shard {i}"));
    }
    // Each segment read by exactly one shard, every segment read; two
    // segments a table asked for, three (a multiple of the shards) read.
    let mut all = BTreeSet::new();
    for (i, p) in proxies.iter().enumerate() {
        // The unsegmented Scans are each shard's check of the mapping
        // against the first items; the copy reads by segments.
        let segments: BTreeSet<(String, i64, i64)> = p
            .faults
            .lock()
            .unwrap()
            .scans
            .iter()
            .filter(|s| s.2 >= 0)
            .cloned()
            .collect();
        assert!(!segments.is_empty(), "shard {i} scanned");
        for (table, segment, total) in &segments {
            assert_eq!(*total, 3, "{table}");
            assert_eq!(
                *segment % 3,
                i as i64,
                "shard {i} read {table} segment {segment}"
            );
            assert!(
                all.insert((table.clone(), *segment)),
                "read twice: {table} {segment}"
            );
        }
    }
    assert_eq!(
        all.len(),
        7 * 3,
        "every segment of the seven tables: {all:?}"
    );
    let (code, r, out) = merged(d);
    assert_eq!(code, 0, "{out}");
    assert_eq!(r["reconciled"], true, "{r:#}");
    assert_eq!(r["totals"]["read"], items.len() as u64, "{r:#}");
    assert_eq!(r["totals"]["written"], items.len() as u64, "{r:#}");
    assert_eq!(r["merged_from"].as_array().unwrap().len(), 3);
    assert!(out.contains("merged from 3 shard reports"), "{out}");
    let (code, v, vout) = verify(d, &db.endpoint, &["--full"]);
    assert_eq!((code, &v["verdict"]), (0, &"match".into()), "{vout}");
    // The same verdict from three verify shards, merged; then a target
    // item gone and one changed: the merge says the sides differ.
    let (code, v, vout) = sharded_verify(d, &db.endpoint);
    assert_eq!((code, &v["verdict"]), (0, &"match".into()), "{vout}");
    let total: u64 = v["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sampled"].as_u64().unwrap())
        .sum();
    assert_eq!(total, items.len() as u64, "every record compared: {v:#}");
    delete_target(&c, "USER#user123", "METADATA").await;
    let one = aws_sdk_dynamodb::types::AttributeValue::N("1".into());
    set_target(&c, ("USER#user123", "CREDITS"), "credits", one).await;
    let (code, v, vout) = sharded_verify(d, &db.endpoint);
    assert_eq!((code, &v["verdict"]), (1, &"differs".into()), "{vout}");
    let ent = |name: &str| {
        v["entities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["entity"] == name)
            .unwrap()
            .clone()
    };
    assert!(ent("user")["unresolved"].as_u64().unwrap() >= 1, "{v:#}");
    assert!(ent("credits")["unresolved"].as_u64().unwrap() >= 1, "{v:#}");
    assert_eq!(ent("session")["unresolved"], 0, "{v:#}");
    assert!(
        vout.contains("run singletable verify --full on one host"),
        "{vout}"
    );
    // A set without one shard is not a whole run, for either merge.
    for (merge, kind, leave_out) in [("verify", "v", 2), ("report", "run", 1)] {
        let files: Vec<String> = (0..3)
            .filter(|i| *i != leave_out)
            .map(|i| format!("{kind}.shard-{i}-of-3.json"))
            .collect();
        let o = local(d, &[merge, "merge"], &files);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let missing = format!("shard(s) {leave_out} of 3 missing");
        assert!(text(&o).contains(&missing), "{}", text(&o));
    }
}

/// `verify --full --shard I/3` three times, then `verify merge`: the exit
/// code, the merged report, the output.
fn sharded_verify(dir: &Path, endpoint: &str) -> (i32, serde_json::Value, String) {
    for i in 0..3 {
        let (mapping, more) = (m(), format!("--full --shard {i}/3 --report v.json"));
        let words = [&["verify", "--mapping", &mapping][..], &args(&more)].concat();
        let o = singletable(dir, endpoint, &words);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            text(&o).contains("no verdict from one shard"),
            "{}",
            text(&o)
        );
    }
    let files: Vec<String> = (0..3).map(|i| format!("v.shard-{i}-of-3.json")).collect();
    let o = local(dir, &["verify", "merge", "--report", "vm.json"], &files);
    (
        o.status.code().unwrap_or(-1),
        report(dir, "vm.json"),
        text(&o),
    )
}

#[tokio::test]
async fn export_shards_with_an_incremental_round_and_a_killed_shard_still_match() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data =
        "--scale 3000 --seed 9 --dirty-rate 0 --export-to exp --incremental --change-rate 0.1";
    demo_exports(d, &db.endpoint, "exports.txt", &args(data));
    let source = ["--exports-file", "exports.txt"];
    let first = spawn_shard(d, &db.endpoint, "0/3", &source);
    let last = spawn_shard(d, &db.endpoint, "2/3", &source);
    // Shard 1, slowed down, killed once it has acknowledged something.
    let slow = [&source[..], &["--write-rate", "400"]].concat();
    let mut killed = spawn_shard(d, &db.endpoint, "1/3", &slow);
    let state = d.join("singletable-state.shard-1-of-3.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s: serde_json::Value = std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let acked = s["units"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["records"].as_u64() > Some(0)));
        if acked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shard 1 never acknowledged anything"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.kill().unwrap();
    let _ = killed.wait();
    let resumed = spawn_shard(
        d,
        &db.endpoint,
        "1/3",
        &[&source[..], &["--resume"]].concat(),
    );
    succeeds(resumed, "shard 1, resumed");
    succeeds(first, "shard 0");
    succeeds(last, "shard 2");
    // Each data file in exactly one shard's state, every file in one.
    let mut files = BTreeSet::new();
    for i in 0..3 {
        let s = report(d, &format!("singletable-state.shard-{i}-of-3.json"));
        assert_eq!(s["status"], "finished", "shard {i}: {s}");
        for u in s["units"].as_array().unwrap() {
            let name = u["name"].as_str().unwrap().to_string();
            assert!(files.insert(name.clone()), "{name} in two shards");
        }
    }
    let on_disk = walk(&d.join("exp"));
    assert_eq!(
        files.len(),
        on_disk.len(),
        "every data file, once: {files:?}"
    );
    // And every record of them read once: the shards' reads add up to the
    // lines of the data files.
    let lines: usize = on_disk.iter().map(|f| read_gz_lines(f).len()).sum();
    let (code, r, out) = merged(d);
    assert_eq!(code, 0, "{out}");
    assert_eq!(r["reconciled"], true, "{r:#}");
    assert_eq!(r["totals"]["read"], lines as u64, "{r:#}");
    assert!(
        r["totals"]["deleted"].as_u64().unwrap() > 0,
        "the incremental round ran: {r:#}"
    );
    let (code, v, vout) = verify(d, &db.endpoint, &["--full"]);
    assert_eq!((code, &v["verdict"]), (0, &"match".into()), "{vout}");
    // A sharded verify of exports with an incremental round is refused:
    // a key's changes settle across files no one shard holds.
    let (mapping, more) = (m(), args("--full --shard 0/3 --exports-file exports.txt"));
    let words = [&["verify", "--mapping", &mapping][..], &more].concat();
    let o = singletable(d, &db.endpoint, &words);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("incremental exports"), "{}", text(&o));
}

/// Data files (.json.gz under a data folder) below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.to_string_lossy().ends_with(".json.gz")
            && p.to_string_lossy().contains("/data/")
        {
            out.push(p);
        }
    }
    out
}

/// The flags a piece of a recipe passes to `singletable migrate`.
fn flags(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == '"' || c == ';')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_deploy_recipes_run_flags_that_exist_with_one_shard_count() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let job = std::fs::read_to_string(root.join("kubernetes/indexed-job.yaml")).unwrap();
    let args = &job[job.find("args:").unwrap()..job.find("resources:").unwrap()];
    let batch: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("aws-batch/job-definition.json")).unwrap(),
    )
    .unwrap();
    let command = batch["containerProperties"]["command"][2]
        .as_str()
        .unwrap()
        .to_string();
    serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(root.join("iam-policy.json")).unwrap(),
    )
    .unwrap();
    let help = local(&root, &["migrate", "--help"], &[]);
    let help = String::from_utf8(help.stdout).unwrap();
    for (recipe, text) in [
        ("indexed-job.yaml", args),
        ("job-definition.json", command.as_str()),
    ] {
        assert!(text.contains("singletable migrate --shards 3"), "{recipe}");
        for flag in flags(text) {
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "{recipe}: {flag} is not a migrate flag"
            );
        }
        assert!(
            text.contains("shard-$"),
            "{recipe} resumes its own state file"
        );
    }
    assert!(job.contains("completions: 3") && job.contains("parallelism: 3"));
    assert!(job.contains("completionMode: Indexed"));
}

#[tokio::test]
async fn a_dead_letter_file_replayed_by_three_shards_is_replayed_once_and_merges() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 1500, 3, 0.05).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    migrate_dirty(d, &db.endpoint);
    let lines = std::fs::read_to_string(d.join("dead.jsonl")).unwrap();
    let lines: BTreeSet<&str> = lines.lines().collect();
    assert!(lines.len() > 3, "dead letters to share: {}", lines.len());
    for i in 0..3 {
        let shard = format!("{i}/3");
        let more = format!("--dead-letter dead.jsonl --report replay.json --shard {shard}");
        let (mapping, more) = (m(), args(&more));
        let words = [&["replay", "--mapping", &mapping][..], &more].concat();
        let o = singletable(d, &db.endpoint, &words);
        // The same mapping: what failed fails again (exit 3), once.
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    }
    // Every line in exactly one shard's still-failing file.
    let mut again = Vec::new();
    for i in 0..3 {
        let path = d.join(format!("dead.replay.shard-{i}-of-3.jsonl"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mine: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!mine.is_empty(), "shard {i} replayed its share");
        again.extend(mine.into_iter().map(|v| v["source_key"].to_string()));
    }
    let originals: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["source_key"].to_string())
        .collect();
    again.sort();
    let mut originals = originals;
    originals.sort();
    assert_eq!(again, originals, "each dead letter replayed by one shard");
    let files: Vec<String> = (0..3)
        .map(|i| format!("replay.shard-{i}-of-3.json"))
        .collect();
    let o = local(d, &["report", "merge", "--out", "replay.json"], &files);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let r = report(d, "replay.json");
    assert_eq!(r["reconciled"], true, "{r:#}");
    assert_eq!(r["totals"]["read"], lines.len() as u64, "{r:#}");
}

#[tokio::test]
async fn three_plan_shards_add_up_to_the_whole_plan() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 1500, 4, 0.02).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plan = |more: &str| {
        let (mapping, more) = (m(), args(more));
        let words = [&["plan", "--mapping", &mapping][..], &more].concat();
        let o = singletable(d, &db.endpoint, &words);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    };
    plan("--segments 2 --report plan.json");
    let whole = report(d, "plan.json");
    let mut sums = (0u64, 0u64, 0u64);
    for i in 0..3 {
        plan(&format!("--segments 2 --shard {i}/3 --report plan.json"));
        let p = report(d, &format!("plan.shard-{i}-of-3.json"));
        let t = &p["totals"];
        sums.0 += t["read"].as_u64().unwrap();
        sums.1 += t["would_write"].as_u64().unwrap();
        sums.2 += t["would_dead_letter"].as_u64().unwrap();
        let warned = p["warnings"].as_array().unwrap().iter().any(|w| {
            w.as_str()
                .unwrap()
                .contains(&format!("shard {i} of 3: this plan covers the share"))
        });
        assert!(warned, "{p:#}");
    }
    let t = &whole["totals"];
    let expected = (
        t["read"].as_u64().unwrap(),
        t["would_write"].as_u64().unwrap(),
        t["would_dead_letter"].as_u64().unwrap(),
    );
    assert_eq!(sums, expected, "the shards' plans add up to the whole");
}
