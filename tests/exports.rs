//! The export source: local folders and S3, both formats, full and
//! incremental, and every kind of bad input.

use std::path::{Path, PathBuf};

use crate::common::*;

fn run_ok(dir: &Path, endpoint: &str, args: &[&str]) -> String {
    run_code(dir, endpoint, args, 0)
}

/// Runs the binary and asserts its exit code: 3 for a migration of dirty
/// demo data, whose dirty rows are dead-lettered (not migrated).
fn run_code(dir: &Path, endpoint: &str, args: &[&str], code: i32) -> String {
    let o = singletable(dir, endpoint, args);
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    text(&o)
}

#[tokio::test]
async fn a_local_export_migrates_to_what_a_scan_would_write() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines = demo_exports(
        d,
        &db.endpoint,
        "exports.txt",
        &args("--scale 400 --seed 5 --dirty-rate 0.03 --export-to exp"),
    );
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert!(
        lines[0].starts_with("ai-girlfriend-users=exp/ai-girlfriend-users/AWSDynamoDB/"),
        "{lines:?}"
    );
    let m = m();
    run_code(
        d,
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "exports.txt",
            "--create-table",
            "--report",
            "run.json",
            "--dead-letter",
            "dead.jsonl",
        ],
        3,
    );
    let r = report(d, "run.json");
    assert_eq!(r["source"], "export");
    assert_eq!(r["reconciled"], true);
    let c = client(&db.endpoint).await;
    let scanned: usize = futures::future::join_all(
        singletable::demo::LEGACY_TABLES
            .iter()
            .map(|t| scan_all(&c, t.0)),
    )
    .await
    .iter()
    .map(Vec::len)
    .sum();
    assert_eq!(r["totals"]["read"].as_u64().unwrap() as usize, scanned);
    assert!(r["totals"]["dead_lettered"].as_u64().unwrap() > 0);
    // The target equals what the mapping makes of the tables (Scan side) ...
    let (code, _, out) = verify(d, &db.endpoint, &["--sample", "100000"]);
    assert_eq!(code, 0, "{out}");
    // ... and of the exports.
    let (code, v, out) = verify(
        d,
        &db.endpoint,
        &["--sample", "100000", "--exports-file", "exports.txt"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["verdict"], "sample-match");
}

#[tokio::test]
async fn ion_and_dynamodb_json_exports_of_the_same_data_give_the_same_target() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = ["--scale", "300", "--seed", "8", "--dirty-rate", "0.02"];
    demo_exports(
        d,
        &db.endpoint,
        "ion.txt",
        &[&data[..], &["--export-to", "ion", "--export-format", "ion"]].concat(),
    );
    demo_exports(
        d,
        &db.endpoint,
        "json.txt",
        // The tables hold this data already: the exports alone.
        &[&data[..], &["--export-to", "json", "--exports-only"]].concat(),
    );
    let gz = std::fs::read_dir(first_export_dir(d, "ion").join("data"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(gz.to_str().unwrap().ends_with(".ion.gz"), "{gz:?}");
    let m = m();
    run_code(
        d,
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "ion.txt",
            "--create-table",
            "--report",
            "run.json",
        ],
        3,
    );
    let (code, _, out) = verify(
        d,
        &db.endpoint,
        &["--sample", "100000", "--exports-file", "json.txt"],
    );
    assert_eq!(code, 0, "{out}");
}

/// The users table's full export folder under `root`.
fn first_export_dir(root: &Path, dest: &str) -> PathBuf {
    let base = root.join(dest).join("ai-girlfriend-users/AWSDynamoDB");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest-summary.json").exists())
        .collect();
    dirs.sort();
    dirs.remove(0)
}

#[tokio::test]
async fn full_and_incremental_exports_give_what_a_scan_of_the_changed_tables_gives() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines = demo_exports(d, &db.endpoint, "exports.txt", &args("--scale 600 --seed 12 --dirty-rate 0.0 --export-to exp --incremental --change-rate 0.05"));
    assert_eq!(lines.len(), 14);
    // Given in the reverse order: the tool applies them by export time.
    let mut reversed = lines.clone();
    reversed.reverse();
    std::fs::write(d.join("reversed.txt"), reversed.join("\n")).unwrap();
    let m = m();
    run_ok(
        d,
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "reversed.txt",
            "--create-table",
            "--report",
            "run.json",
        ],
    );
    let r = report(d, "run.json");
    assert_eq!(r["reconciled"], true, "{r:#}");
    assert!(r["totals"]["deleted"].as_u64().unwrap() > 10, "{r:#}");
    assert!(
        r["totals"]["stale_keys_deleted"].as_u64().unwrap() > 0,
        "sessions moved to another user: {r:#}"
    );
    let (code, _, out) = verify(d, &db.endpoint, &["--sample", "100000"]);
    assert_eq!(code, 0, "scan of the changed tables: {out}");
    let (code, _, out) = verify(
        d,
        &db.endpoint,
        &["--sample", "100000", "--exports-file", "exports.txt"],
    );
    assert_eq!(code, 0, "full + incremental exports: {out}");
}

#[tokio::test]
async fn exports_in_s3_on_moto_with_dynamodb_elsewhere() {
    let db = Dynoxide::start();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = endpoints(&db.endpoint, &moto.endpoint);
    let data = "--scale 300 --seed 4 --export-to s3://legacy-exports/nightly --incremental";
    let lines = demo_exports_s3(d, &env, data);
    assert!(
        lines
            .lines()
            .all(|l| l.contains("=s3://legacy-exports/nightly/")),
        "{lines}"
    );
    let m = m();
    let o = singletable_env(
        d,
        &env,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "exports.txt",
            "--create-table",
            "--report",
            "run.json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "dirty rows dead-lettered: {}",
        text(&o)
    );
    let o = singletable_env(d, &env, &["verify", "--mapping", &m, "--sample", "100000"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = singletable_env(
        d,
        &env,
        &[
            "preview",
            "--mapping",
            &m,
            "--exports-file",
            "exports.txt",
            "-n",
            "2",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("by export s3://legacy-exports/nightly/ai-girlfriend-users/AWSDynamoDB/"),
        "{}",
        text(&o)
    );
}

// ---- bad input ----

/// A fresh single-export setup: every table exported to `exp/`, and the
/// users export's folder.
async fn bad_input_setup(db: &Dynoxide, d: &Path) -> PathBuf {
    demo_exports(
        d,
        &db.endpoint,
        "exports.txt",
        &args("--scale 100 --seed 1 --dirty-rate 0 --export-to exp"),
    );
    first_export_dir(d, "exp")
}

fn data_files(export: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(export.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

/// Rewrites manifest-files.json with `f`, and its .md5 to match.
fn edit_manifest(export: &Path, f: impl Fn(&mut Vec<serde_json::Value>)) {
    let path = export.join("manifest-files.json");
    let mut entries: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    f(&mut entries);
    let text: String = entries.iter().map(|e| e.to_string() + "\n").collect();
    std::fs::write(
        export.join("manifest-files.md5"),
        singletable::export::md5_base64(text.as_bytes()),
    )
    .unwrap();
    std::fs::write(path, text).unwrap();
}

/// The first data file that holds records, and its lines.
fn first_nonempty(export: &Path) -> (PathBuf, Vec<String>) {
    data_files(export)
        .into_iter()
        .map(|p| {
            let l = read_gz_lines(&p);
            (p, l)
        })
        .find(|(_, l)| !l.is_empty())
        .unwrap()
}

/// Runs the binary and expects exit 2 with every needle in stderr.
fn fails_with(d: &Path, endpoint: &str, args: &[&str], needles: &[&str]) {
    let o = singletable(d, endpoint, args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in: {err}");
    }
}

fn migrate_fails_with(d: &Path, endpoint: &str, needles: &[&str]) {
    let m = m();
    fails_with(
        d,
        endpoint,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "exports.txt",
            "--create-table",
        ],
        needles,
    );
}

#[tokio::test]
async fn a_truncated_and_a_corrupt_gzip_are_errors_naming_the_file() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let export = bad_input_setup(&db, d).await;
    let (file, _) = first_nonempty(&export);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    refresh_all_checksums(&export);
    let name = file.file_name().unwrap().to_str().unwrap();
    migrate_fails_with(d, &db.endpoint, &[name, "cannot decompress"]);
    // The report says what stopped the run, and what was written before.
    let run = args(
        "migrate --exports-file exports.txt --create-table --fresh --skip-data-check --report r.json",
    );
    let o = singletable(d, &db.endpoint, &[&run[..], &["--mapping", &m()]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let r = report(d, "r.json");
    assert!(
        r["error"].as_str().is_some_and(|e| e.contains(name)),
        "{r:#}"
    );
    assert!(
        r["warnings"]
            .to_string()
            .contains("were written or deleted before it"),
        "{r:#}"
    );

    let mut corrupt = bytes.clone();
    for b in corrupt.iter_mut().skip(20).take(40) {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &corrupt).unwrap();
    refresh_all_checksums(&export);
    migrate_fails_with(d, &db.endpoint, &[name, "cannot decompress"]);
}

#[tokio::test]
async fn lines_that_are_not_dynamodb_json_are_errors_naming_file_and_line() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let export = bad_input_setup(&db, d).await;
    let (file, lines) = first_nonempty(&export);
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    for (bad, why) in [
        ("this is not json", "not JSON"),
        (r#"{"userId":{"S":"x"}}"#, "a full-export line without Item"),
    ] {
        let mut l = lines.clone();
        l.insert(1, bad.to_string());
        write_gz_lines(&file, &l);
        refresh_all_checksums(&export);
        migrate_fails_with(d, &db.endpoint, &[&format!("{name}:2: {why}")]);
    }
}

#[tokio::test]
async fn bad_values_in_a_good_file_are_dead_lettered_with_file_and_line() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let export = bad_input_setup(&db, d).await;
    let (file, mut lines) = first_nonempty(&export);
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    lines.push(r#"{"Item":{"userId":{"S":"bad-type"},"x":{"Q":"1"}}}"#.into());
    lines.push(r#"{"Item":{"userId":{"S":"bad-null"},"x":{"NULL":false}}}"#.into());
    let n = lines.len();
    write_gz_lines(&file, &lines);
    refresh_all_checksums(&export);
    edit_manifest(&export, |entries| {
        for e in entries
            .iter_mut()
            .filter(|e| e["dataFileS3Key"].as_str().unwrap().ends_with(&name))
        {
            e["itemCount"] = (n as u64).into();
        }
    });
    // The summary's total must agree with the files: accept that one mismatch.
    let m = m();
    let o = singletable(
        d,
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "exports.txt",
            "--create-table",
            "--report",
            "run.json",
            "--dead-letter",
            "dead.jsonl",
            "--accept-export-mismatch",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "the bad values are not migrated: {}",
        text(&o)
    );
    let r = report(d, "run.json");
    assert!(
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("itemCount")),
        "{r:#}"
    );
    let dead = std::fs::read_to_string(d.join("dead.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert!(
        dead[0]["reason"].as_str().unwrap().contains(&format!(
            "{name}:{}: Item.at x: unknown type descriptor \"Q\"",
            n - 1
        )),
        "{dead:#?}"
    );
    assert!(
        dead[1]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("{name}:{n}: Item.at x: NULL must be true")),
        "{dead:#?}"
    );
    assert_eq!(dead[0]["stage"], "read");
    assert!(dead[0]["raw"].as_str().unwrap().contains("bad-type"));
}

#[tokio::test]
async fn manifest_problems_are_errors_naming_the_file() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let export = bad_input_setup(&db, d).await;
    let (file, _) = first_nonempty(&export);
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    let pristine = std::fs::read(export.join("manifest-files.json")).unwrap();
    let restore = || {
        std::fs::write(export.join("manifest-files.json"), &pristine).unwrap();
        std::fs::write(
            export.join("manifest-files.md5"),
            singletable::export::md5_base64(&pristine),
        )
        .unwrap();
    };

    // An MD5 that does not match the file as read.
    edit_manifest(&export, |e| {
        e[0]["md5Checksum"] = "AAAAAAAAAAAAAAAAAAAAAA==".into()
    });
    migrate_fails_with(
        d,
        &db.endpoint,
        &[
            "MD5 of the file as read",
            "manifest-files.json says AAAAAAAAAAAAAAAAAAAAAA==",
        ],
    );
    restore();

    // A file's itemCount that does not match its lines (the summary's
    // total lowered to agree, so only the file is wrong).
    edit_manifest(&export, |e| {
        let i = e
            .iter()
            .position(|x| x["dataFileS3Key"].as_str().unwrap().ends_with(&name))
            .unwrap();
        e[i]["itemCount"] = (e[i]["itemCount"].as_u64().unwrap() - 1).into();
    });
    let summary_path = export.join("manifest-summary.json");
    let pristine_summary = std::fs::read(&summary_path).unwrap();
    let mut summary: serde_json::Value = serde_json::from_slice(&pristine_summary).unwrap();
    summary["itemCount"] = (summary["itemCount"].as_u64().unwrap() - 1).into();
    let text = summary.to_string();
    std::fs::write(
        export.join("manifest-summary.md5"),
        singletable::export::md5_base64(text.as_bytes()),
    )
    .unwrap();
    std::fs::write(&summary_path, text).unwrap();
    migrate_fails_with(
        d,
        &db.endpoint,
        &[&name, "records, manifest-files.json says"],
    );
    restore();
    std::fs::write(
        export.join("manifest-summary.md5"),
        singletable::export::md5_base64(&pristine_summary),
    )
    .unwrap();
    std::fs::write(&summary_path, &pristine_summary).unwrap();

    // A checksum file that does not match its manifest.
    std::fs::write(
        export.join("manifest-files.md5"),
        "AAAAAAAAAAAAAAAAAAAAAA==",
    )
    .unwrap();
    migrate_fails_with(
        d,
        &db.endpoint,
        &["manifest-files.md5", "does not match manifest-files.json"],
    );
    restore();

    // A manifest naming a file that is not there.
    std::fs::remove_file(&file).unwrap();
    migrate_fails_with(
        d,
        &db.endpoint,
        &[&name, "missing (named by manifest-files.json)"],
    );

    // An unknown outputFormat.
    let summary = std::fs::read_to_string(&summary_path)
        .unwrap()
        .replace("\"DYNAMODB_JSON\"", "\"CSV\"");
    std::fs::write(
        export.join("manifest-summary.md5"),
        singletable::export::md5_base64(summary.as_bytes()),
    )
    .unwrap();
    std::fs::write(&summary_path, summary).unwrap();
    migrate_fails_with(
        d,
        &db.endpoint,
        &["manifest-summary.json", "unknown outputFormat \"CSV\""],
    );
}

#[tokio::test]
async fn new_image_incrementals_are_refused_up_front_where_deletes_need_more_than_keys() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines = demo_exports(
        d,
        &db.endpoint,
        "exports.txt",
        &args("--scale 100 --seed 2 --export-to exp --incremental"),
    );
    let sessions = lines
        .iter()
        .filter(|l| l.starts_with("ai-girlfriend-sessions="))
        .nth(1)
        .unwrap();
    let dir_of = PathBuf::from(d).join(sessions.split_once('=').unwrap().1);
    let summary_path = dir_of.join("manifest-summary.json");
    let summary = std::fs::read_to_string(&summary_path)
        .unwrap()
        .replace("NEW_AND_OLD_IMAGES", "NEW_IMAGE");
    std::fs::write(
        dir_of.join("manifest-summary.md5"),
        singletable::export::md5_base64(summary.as_bytes()),
    )
    .unwrap();
    std::fs::write(&summary_path, summary).unwrap();
    migrate_fails_with(
        d,
        &db.endpoint,
        &["entity session", "NEW_IMAGE view", "needs userId"],
    );
    let c = client(&db.endpoint).await;
    assert!(
        c.describe_table().table_name(TARGET).send().await.is_err(),
        "refused before creating anything"
    );
}

/// moto's own ExportTableToPointInTime writes data files and no manifests:
/// read by listing `data/`, with a warning that nothing could be checked.
#[tokio::test]
async fn moto_native_exports_without_manifests_are_read_with_a_warning() {
    use aws_sdk_dynamodb::types::{ExportFormat, PointInTimeRecoverySpecification};
    let moto = Moto::start();
    let c = client(&moto.endpoint).await;
    let s3 = s3_client(&moto.endpoint).await;
    s3.create_bucket()
        .bucket("moto-exports")
        .send()
        .await
        .unwrap();
    let (mut legacy, _) = singletable::demo::generate(&singletable::demo::DemoOptions {
        scale: 200,
        seed: 6,
        dirty_rate: 0.02,
    });
    legacy.retain(|(_, i)| i.get("sessionId") != Some(&s("s-near-limit")));
    singletable::demo::create_legacy_tables(&c).await.unwrap();
    singletable::demo::load(&c, &legacy).await.unwrap();
    let mut lines = Vec::new();
    for (table, _, _) in singletable::demo::LEGACY_TABLES {
        c.update_continuous_backups()
            .table_name(table)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let arn = c
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap()
            .table
            .unwrap()
            .table_arn
            .unwrap();
        let prefix = format!("nightly/{table}");
        c.export_table_to_point_in_time()
            .table_arn(arn)
            .s3_bucket("moto-exports")
            .s3_prefix(&prefix)
            .export_format(ExportFormat::DynamodbJson)
            .send()
            .await
            .unwrap();
        // moto writes the export in the background: wait for its data file.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let key = loop {
            let listed = s3
                .list_objects_v2()
                .bucket("moto-exports")
                .prefix(format!("{prefix}/AWSDynamoDB/"))
                .send()
                .await
                .unwrap();
            if let Some(k) = listed.contents().first().and_then(|o| o.key()) {
                break k.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "moto never wrote the export of {table}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let export_dir = &key[..key.find("/data/").unwrap()];
        lines.push(format!("{table}=s3://moto-exports/{export_dir}/"));
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("exports.txt"), lines.join("\n")).unwrap();
    let m = m();
    run_ok(
        d,
        &moto.endpoint,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "exports.txt",
            "--create-table",
            "--report",
            "run.json",
        ],
    );
    let r = report(d, "run.json");
    assert_eq!(
        r["totals"]["read"].as_u64().unwrap(),
        legacy.len() as u64,
        "{r:#}"
    );
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("no manifest-summary.json"))
            .count(),
        7,
        "{warnings:#?}"
    );
    let (code, _, out) = verify(d, &moto.endpoint, &["--sample", "100000"]);
    assert_eq!(code, 0, "{out}");
}

/// Which tables an export plan covers, and what it refuses.
#[tokio::test]
async fn scan_missing_fills_in_tables_without_exports_and_plans_are_checked() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines = demo_exports(
        d,
        &db.endpoint,
        "all.txt",
        &args("--scale 200 --seed 3 --export-to exp"),
    );
    let users = lines
        .iter()
        .find(|l| l.starts_with("ai-girlfriend-users="))
        .unwrap()
        .clone();
    std::fs::write(d.join("users.txt"), &users).unwrap();
    let m = m();
    // Only one table exported: the others need --scan-missing.
    fails_with(
        d,
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "users.txt",
            "--create-table",
        ],
        &["table ai-girlfriend-credits (entity credits) has no --export"],
    );
    run_code(
        d,
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "users.txt",
            "--scan-missing",
            "--create-table",
            "--report",
            "run.json",
        ],
        3,
    );
    assert_eq!(report(d, "run.json")["source"], "export+scan");
    let (code, _, out) = verify(d, &db.endpoint, &["--full"]);
    assert_eq!(code, 0, "{out}");
    // Two full exports of one table, and an export of a table the mapping does not read.
    fails_with(
        d,
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "all.txt",
            "--export",
            &users,
        ],
        &["table ai-girlfriend-users has 2 full exports"],
    );
    let stray = users.replace("ai-girlfriend-users=", "ai-girlfriend-payments=");
    fails_with(
        d,
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            &m,
            "--exports-file",
            "all.txt",
            "--export",
            &stray,
        ],
        &["--export names table \"ai-girlfriend-payments\", which no entity of the mapping reads"],
    );
    // An export named for the wrong table.
    let wrong = users.replace("ai-girlfriend-users=", "ai-girlfriend-credits=");
    fails_with(
        d,
        &db.endpoint,
        &["migrate", "--mapping", &m, "--export", &wrong, "--scan-missing"],
        &["this is an export of table \"ai-girlfriend-users\", named for table \"ai-girlfriend-credits\""],
    );
}

/// The real AWS export (read from `../shared/data` at test time): its first
/// incremental starts 69 s after the full export, so it is refused, naming
/// both exports and the window; with the override flags it migrates to its
/// documented final state.
#[tokio::test]
async fn the_real_aws_export_is_refused_for_its_gap_and_migrates_with_the_overrides() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/aws-export-test-table/AWSDynamoDB");
    assert!(
        root.is_dir(),
        "the real AWS export is read from {} (the shared data beside the project)",
        root.display()
    );
    let full = "01768385930622-efd1a093";
    let lines: Vec<String> = [full, "01768386924000-d339e52d", "01768388186000-4a2fc3ff"]
        .iter()
        .map(|id| format!("test={}/", root.join(id).display()))
        .collect();
    std::fs::write(d.join("exports.txt"), lines.join("\n")).unwrap();
    let mapping = "[table]\nname = \"test-copy\"\npartition_key = \"pk\"\nsort_key = \"sk\"\n\
        entity_type_attribute = \"entityType\"\n\n[[entity]]\nname = \"item\"\nsource = \"test\"\n\
        source_key = [\"pk\", \"sk\"]\nentity_type = \"ITEM\"\n[entity.keys]\npk = \"{pk}\"\nsk = \"{sk}\"\n";
    std::fs::write(d.join("copy.toml"), mapping).unwrap();
    let base = args(
        "migrate --mapping copy.toml --exports-file exports.txt --create-table --report run.json",
    );
    // The summaries were edited after export: their .md5 files do not match.
    let o = singletable(d, &db.endpoint, &base);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("manifest-summary.md5"), "{}", text(&o));
    let o = singletable(
        d,
        &db.endpoint,
        &[&base[..], &["--accept-export-mismatch"]].concat(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("a gap of 69.378 s between"), "{out}");
    assert!(
        out.contains(full) && out.contains("01768386924000-d339e52d"),
        "{out}"
    );
    assert!(out.contains("--accept-export-gaps"), "{out}");
    let c = client(&db.endpoint).await;
    assert!(
        c.describe_table()
            .table_name("test-copy")
            .send()
            .await
            .is_err(),
        "refused before creating"
    );

    let both = [
        &base[..],
        &["--accept-export-mismatch", "--accept-export-gaps"],
    ]
    .concat();
    let o = singletable(d, &db.endpoint, &both);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(d, "run.json");
    assert!(
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("a gap of 69.378 s")),
        "the accepted gap is on record: {r:#}"
    );
    let items = scan_all(&c, "test-copy").await;
    let keys: Vec<(String, String)> = items
        .iter()
        .map(|i| (str_of(i, "pk").to_string(), str_of(i, "sk").to_string()))
        .collect();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    let want: Vec<(String, String)> = ["1,2", "1,3", "2,1", "2,2", "3,1", "3,2", "3,3", "4,2"]
        .iter()
        .map(|k| {
            let (a, b) = k.split_once(',').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    assert_eq!(keys_sorted, want);
    let find = |pk: &str, sk: &str| {
        items
            .iter()
            .find(|i| str_of(i, "pk") == pk && str_of(i, "sk") == sk)
            .unwrap()
    };
    assert!(find("1", "3").contains_key("bin_update"));
    assert!(!find("3", "2").contains_key("number"));
    assert!(find("3", "1").contains_key("number"));
}

/// The users whose records a data file's lines hold.
fn users_in(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["Item"]["userId"]["S"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Replaces the first record's user id: a substituted file.
fn substitute(lines: &[String]) -> Vec<String> {
    let mut out = lines.to_vec();
    let first = users_in(lines)[0].clone();
    out[0] = out[0].replace(&first, "usubstituted");
    out
}

async fn none_of(c: &aws_sdk_dynamodb::Client, users: &[String]) {
    if c.describe_table().table_name(TARGET).send().await.is_err() {
        return; // refused before the target was even created
    }
    for u in users
        .iter()
        .chain(std::iter::once(&"usubstituted".to_string()))
    {
        assert!(
            get(c, &format!("USER#{u}"), "METADATA").await.is_none(),
            "{u} reached the target"
        );
    }
}

/// A substituted local data file (its MD5 no longer the manifest's) is
/// proven before any record of it is sent: nothing of it is written.
#[tokio::test]
async fn a_substituted_local_data_file_writes_nothing_of_itself() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let export = bad_input_setup(&db, d).await;
    let (file, lines) = first_nonempty(&export);
    write_gz_lines(&file, &substitute(&lines));
    let name = file.file_name().unwrap().to_str().unwrap();
    // Past the data check (which reads these small files whole and would
    // refuse them too): the pipeline itself proves each file first.
    let m = m();
    let run = [
        &args("migrate --exports-file exports.txt --create-table --skip-data-check")[..],
        &["--mapping", &m],
    ]
    .concat();
    fails_with(
        d,
        &db.endpoint,
        &run,
        &[name, "MD5 of the file as read", "nothing of it was written"],
    );
    let c = client(&db.endpoint).await;
    none_of(&c, &users_in(&lines)).await;
}

/// The same for an export in S3: the object is spooled and proven first.
#[tokio::test]
async fn a_substituted_s3_data_file_writes_nothing_of_itself() {
    let db = Dynoxide::start();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = endpoints(&db.endpoint, &moto.endpoint);
    let data = "--scale 100 --seed 1 --dirty-rate 0 --exports-only --export-to s3://subst/x";
    demo_exports_s3(d, &env, data);
    let s3 = s3_client(&moto.endpoint).await;
    let listed = s3
        .list_objects_v2()
        .bucket("subst")
        .prefix("x/ai-girlfriend-users/")
        .send()
        .await
        .unwrap();
    let mut replaced = None;
    for obj in listed.contents() {
        let key = obj.key().unwrap();
        if !key.ends_with(".json.gz") {
            continue;
        }
        let body = s3
            .get_object()
            .bucket("subst")
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let local = d.join("object.gz");
        std::fs::write(&local, &body).unwrap();
        let lines = read_gz_lines(&local);
        if lines.is_empty() {
            continue;
        }
        write_gz_lines(&local, &substitute(&lines));
        let new = std::fs::read(&local).unwrap();
        s3.put_object()
            .bucket("subst")
            .key(key)
            .body(new.into())
            .send()
            .await
            .unwrap();
        replaced = Some((key.to_string(), lines));
        break;
    }
    let (key, lines) = replaced.expect("a users data file with records");
    let m = m();
    let run = [
        &args(
            "migrate --exports-file exports.txt --create-table --spool-dir spool --skip-data-check",
        )[..],
        &["--mapping", &m],
    ]
    .concat();
    let o = singletable_env(d, &env, &run);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(&key) && out.contains("MD5 of the file as read"),
        "{out}"
    );
    let c = client(&db.endpoint).await;
    none_of(&c, &users_in(&lines)).await;
    let left: Vec<_> = std::fs::read_dir(d.join("spool"))
        .map(|r| r.collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the spool is emptied: {left:?}");
}
