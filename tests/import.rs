//! The import path: `migrate --to-import` writes files ImportTable reads.

use std::path::Path;

use crate::common::*;

/// Demo exports with dirty rows, and the arguments of a migration of them.
fn exports(d: &Path, endpoint: &str) {
    demo_exports(
        d,
        endpoint,
        "exports.txt",
        &args("--scale 3000 --seed 9 --dirty-rate 0.02 --exports-only --export-to exp"),
    );
}

fn migrate_args<'a>(mapping: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a =
        args("migrate --exports-file exports.txt --report run.json --dead-letter dead.jsonl");
    a.extend(["--mapping", mapping]);
    a.extend_from_slice(extra);
    a
}

/// The run failed (exit 2) saying `why`.
fn assert_refused(o: &std::process::Output, why: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", text(o));
    assert!(text(o).contains(why), "{}", text(o));
}

/// An independent reader: Python's gzip and json, every file under data/.
/// Prints the item count, then each item's pk, sk and entity type.
const READER: &str = r#"
import glob, gzip, json, sys
rows = []
for path in sorted(glob.glob(sys.argv[1] + "/data/*")):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)["Item"]
            rows.append("\t".join(item[k]["S"] for k in ("pk", "sk", "entityType")))
print(len(rows))
print("\n".join(sorted(rows)))
"#;

#[tokio::test]
async fn to_import_writes_every_item_once_as_a_table_migration_would() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    exports(d, &db.endpoint);
    let m = m();
    let extra = [
        "--to-import",
        "imp",
        "--import-file-size",
        "1048576",
        "--state",
        "s1.json",
    ];
    let o = singletable(d, &db.endpoint, &migrate_args(&m, &extra));
    // The dirty rows are dead-lettered: exit 3, as any migration of them.
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let r = report(d, "run.json");
    assert_eq!(r["reconciled"], true, "{r:#}");
    assert!(
        r["target_table"]
            .as_str()
            .unwrap()
            .contains("files for ImportTable"),
        "{r:#}"
    );
    let written = r["totals"]["written"].as_u64().unwrap();
    assert!(written > 2500, "{r:#}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("imp/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["items"], written, "{manifest:#}");

    // Python reads back every item, each key once.
    let py = std::process::Command::new("python3")
        .args(["-c", READER, d.join("imp").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let out = String::from_utf8(py.stdout).unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap().parse::<u64>().unwrap(), written);
    let from_files: Vec<String> = lines.map(str::to_string).collect();

    // The same exports migrated into a table give the same keys.
    let o = singletable(
        d,
        &db.endpoint,
        &migrate_args(&m, &["--create-table", "--state", "s2.json"]),
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let c = client(&db.endpoint).await;
    let mut from_table: Vec<String> = scan_all(&c, "ai-girlfriend-table")
        .await
        .iter()
        .map(|i| {
            format!(
                "{}\t{}\t{}",
                str_of(i, "pk"),
                str_of(i, "sk"),
                str_of(i, "entityType")
            )
        })
        .collect();
    from_table.sort();
    assert_eq!(from_files.len(), from_table.len());
    assert!(
        from_files == from_table,
        "the files and the table hold different keys"
    );
}

#[tokio::test]
async fn to_import_refuses_collisions_unless_allowed() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    exports(d, &db.endpoint);
    // Every user maps to one target key.
    let shipped = std::fs::read_to_string(mapping_path()).unwrap();
    let colliding = shipped.replacen(
        "pk = \"USER#{userId}\"\nsk = \"METADATA\"",
        "pk = \"USERS\"\nsk = \"ONE\"",
        1,
    );
    assert_ne!(colliding, shipped, "the user keys were replaced");
    std::fs::write(d.join("colliding.toml"), colliding).unwrap();
    let extra = ["--to-import", "imp", "--state", "s1.json"];
    let o = singletable(d, &db.endpoint, &migrate_args("colliding.toml", &extra));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = text(&o);
    assert!(
        err.contains("pk=USERS") && err.contains("--allow-collisions"),
        "{err}"
    );
    assert!(
        !d.join("imp/manifest.json").exists(),
        "no manifest for refused files"
    );

    let extra = [
        "--to-import",
        "imp2",
        "--allow-collisions",
        "--state",
        "s2.json",
    ];
    let o = singletable(d, &db.endpoint, &migrate_args("colliding.toml", &extra));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let r = report(d, "run.json");
    assert!(r["totals"]["overwritten"].as_u64().unwrap() > 100, "{r:#}");
    assert!(d.join("imp2/manifest.json").exists());

    // A folder holding a run's files is not written into again.
    let o = singletable(d, &db.endpoint, &migrate_args("colliding.toml", &extra));
    assert_refused(&o, "already holds import files");
}

#[tokio::test]
async fn to_import_refuses_an_incremental_export_it_cannot_apply() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo_exports(
        d,
        &db.endpoint,
        "exports.txt",
        &args("--scale 600 --seed 12 --dirty-rate 0.0 --export-to exp --incremental --change-rate 0.05"),
    );
    let m = m();
    let o = singletable(
        d,
        &db.endpoint,
        &migrate_args(&m, &["--to-import", "imp", "--state", "s.json"]),
    );
    assert_refused(&o, "ImportTable cannot delete");
    assert!(!d.join("imp/manifest.json").exists());
    // The delete and what followed it are accounted for, not dropped.
    let r = report(d, "run.json");
    assert_eq!(r["reconciled"], true, "{r:#}");
    assert!(r["totals"]["not_written"].as_u64().unwrap() > 0, "{r:#}");
    let unwritten = dead_letters(d, "dead.jsonl")
        .iter()
        .filter(|l| {
            l["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("ImportTable cannot delete")
        })
        .count();
    assert!(
        unwritten > 0,
        "the refused delete is in the dead-letter file"
    );
}

/// `verify --full` of the target against the exports: a match.
fn verify_full_matches(d: &Path, env: &[(&str, &str)]) {
    let m = m();
    let v = args("verify --exports-file exports.txt --full");
    let o = singletable_env(d, env, &[&v[..], &["--mapping", &m]].concat());
    assert_eq!(
        o.status.code(),
        Some(0),
        "verify --full matches: {}",
        text(&o)
    );
}

/// dynoxide and moto, demo exports in a temp folder, an `imports` bucket.
async fn with_s3() -> (Dynoxide, Moto, tempfile::TempDir, aws_sdk_s3::Client) {
    let db = Dynoxide::start();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    exports(dir.path(), &db.endpoint);
    let s3 = s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("imports").send().await.unwrap();
    (db, moto, dir, s3)
}

#[tokio::test]
async fn to_import_into_s3_uploads_every_file_and_the_manifest() {
    let (db, moto, dir, s3) = with_s3().await;
    let d = dir.path();
    let env = endpoints(&db.endpoint, &moto.endpoint);
    let m = m();
    let extra = [
        "--to-import",
        "s3://imports/run1",
        "--import-file-size",
        "1048576",
        "--spool-dir",
        "spool",
        "--state",
        "s.json",
    ];
    let o = singletable_env(d, &env, &migrate_args(&m, &extra));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let r = report(d, "run.json");
    assert!(
        r["target_table"]
            .as_str()
            .unwrap()
            .ends_with("in s3://imports/run1/"),
        "{r:#}"
    );
    let get = |key: String| {
        let s3 = s3.clone();
        async move {
            let o = s3.get_object().bucket("imports").key(&key).send().await;
            o.unwrap_or_else(|e| panic!("{key}: {e:?}"))
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes()
        }
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&get("run1/manifest.json".into()).await).unwrap();
    assert_eq!(manifest["items"], r["totals"]["written"], "{manifest:#}");
    let listed = s3
        .list_objects_v2()
        .bucket("imports")
        .prefix("run1/data/")
        .send()
        .await
        .unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(
        listed.contents().len(),
        files.len(),
        "only the listed files are under data/"
    );
    for f in files {
        let bytes = get(format!("run1/{}", f["name"].as_str().unwrap())).await;
        assert_eq!(singletable::export::md5_base64(&bytes), f["md5"], "{f}");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .unwrap();
        assert_eq!(
            text.lines().count() as u64,
            f["items"].as_u64().unwrap(),
            "{f}"
        );
    }
    // The staging copy is gone once everything is in S3.
    let left = std::fs::read_dir(d.join("spool")).map_or(0, |r| r.count());
    assert_eq!(left, 0, "the staging folder is removed");
}

#[tokio::test]
async fn import_table_builds_a_target_verify_full_matches() {
    let (_db, moto, dir, _s3) = with_s3().await;
    let d = dir.path();
    // The target is moto's DynamoDB, which implements ImportTable.
    let env = endpoints(&moto.endpoint, &moto.endpoint);
    let m = m();
    let extra = [
        "--to-import",
        "s3://imports/run1/",
        "--import-table",
        "--spool-dir",
        "spool",
        "--state",
        "s.json",
    ];
    let o = singletable_env(d, &env, &migrate_args(&m, &extra));
    // The dirty rows are dead-lettered: exit 3, and the import agrees.
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("they agree"), "{}", text(&o));
    let r = report(d, "run.json");
    let i = &r["import_table"];
    assert_eq!(i["status"], "COMPLETED", "{r:#}");
    assert_eq!(i["imported"], r["totals"]["written"], "{r:#}");
    assert_eq!(i["errors"], 0, "{r:#}");
    let c = client(&moto.endpoint).await;
    let t = c
        .describe_table()
        .table_name("ai-girlfriend-table")
        .send()
        .await
        .unwrap();
    let indexes: Vec<&str> = t
        .table()
        .unwrap()
        .global_secondary_indexes()
        .iter()
        .filter_map(|g| g.index_name())
        .collect();
    assert_eq!(indexes.len(), 2, "{indexes:?}");
    // The mapping asks for point-in-time recovery: turned on after the import.
    let backups = c
        .describe_continuous_backups()
        .table_name("ai-girlfriend-table")
        .send()
        .await
        .unwrap();
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status());
    assert_eq!(pitr.map(|s| s.as_str()), Some("ENABLED"), "{backups:?}");

    verify_full_matches(d, &env);

    // ImportTable only creates tables: an existing target is refused before anything is read.
    let extra = [
        "--to-import",
        "s3://imports/run2/",
        "--import-table",
        "--state",
        "s2.json",
    ];
    let o = singletable_env(d, &env, &migrate_args(&m, &extra));
    assert_refused(&o, "exists: ImportTable only creates new tables");
}

#[tokio::test]
async fn local_files_uploaded_with_the_aws_cli_import_to_a_matching_table() {
    let (_db, moto, dir, _s3) = with_s3().await;
    let d = dir.path();
    let env = endpoints(&moto.endpoint, &moto.endpoint);
    let m = m();
    let o = singletable_env(
        d,
        &env,
        &migrate_args(&m, &["--to-import", "imp", "--state", "s.json"]),
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let cli = std::process::Command::new("aws")
        .args([
            "s3",
            "sync",
            "imp/data",
            "s3://imports/cli/data",
            "--endpoint-url",
            &moto.endpoint,
        ])
        .current_dir(d)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("the AWS CLI (.ci/run installs it)");
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );

    // ImportTable, called as a user would, on the uploaded prefix.
    let spec = singletable::mapping::Mapping::shipped().table;
    let c = client(&moto.endpoint).await;
    let source = aws_sdk_dynamodb::types::S3BucketSource::builder()
        .s3_bucket("imports")
        .s3_key_prefix("cli/data/")
        .build()
        .unwrap();
    let started = c
        .import_table()
        .s3_bucket_source(source)
        .input_format(aws_sdk_dynamodb::types::InputFormat::DynamodbJson)
        .input_compression_type(aws_sdk_dynamodb::types::InputCompressionType::Gzip)
        .table_creation_parameters(singletable::sinks::table::creation_parameters(&spec).unwrap())
        .send()
        .await
        .unwrap();
    let arn = started
        .import_table_description()
        .unwrap()
        .import_arn()
        .unwrap()
        .to_string();
    let mut status = String::new();
    for _ in 0..120 {
        let d = c.describe_import().import_arn(&arn).send().await.unwrap();
        status = d
            .import_table_description()
            .unwrap()
            .import_status()
            .unwrap()
            .as_str()
            .to_string();
        if status != "IN_PROGRESS" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(status, "COMPLETED");
    verify_full_matches(d, &env);
}
