//! What a new user meets: the demo from any folder, the built-in mapping,
//! flags that refuse 0, a closed pipe, progress without a terminal, and
//! errors said once.

use std::io::Read as _;
use std::process::{Command, Stdio};

use crate::common::*;

/// The binary in `dir` with `args` and test credentials, nothing else added.
fn command(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_singletable"));
    cmd.current_dir(dir)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    cmd
}

fn bare(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    command(dir, args).output().unwrap()
}

/// Starts the binary with its output captured.
fn spawn(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    let mut cmd = command(dir, args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// Sends SIGINT to a child.
fn interrupt(child: &std::process::Child) {
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

#[test]
fn the_demo_runs_from_an_empty_folder_with_the_built_in_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let o = bare(dir.path(), &args("demo --quiet --scale 400"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(dir
        .path()
        .join("singletable-demo/verify-report.json")
        .exists());
    let shown = bare(dir.path(), &["mapping", "show"]);
    assert_eq!(shown.status.code(), Some(0));
    let shipped = std::fs::read_to_string(mapping_path()).unwrap();
    assert_eq!(String::from_utf8(shown.stdout).unwrap(), shipped);
}

#[test]
fn zero_is_refused_for_every_rate_and_count() {
    let dir = tempfile::tempdir().unwrap();
    for flag in [
        "migrate --write-rate 0",
        "migrate --write-units 0",
        "migrate --read-rate 0",
        "migrate --max-in-flight 0",
        "migrate --read-concurrency 0",
        "migrate --request-timeout 0",
        "migrate --create-table --warm-write-units 0",
        "preview -n 0",
        "verify --sample 0",
        "plan --top 0",
        "demo-data --scale 0",
    ] {
        let o = bare(dir.path(), &args(flag));
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("invalid value '0'") && err.contains("1.."),
            "{flag}: {err}"
        );
    }
}

#[test]
fn an_error_names_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = bare(dir.path(), &args("preview --mapping missing.toml"));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("missing.toml: cannot read"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[tokio::test]
async fn a_closed_pipe_ends_quietly_and_a_run_without_a_terminal_says_where_it_is() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 3000, 41, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    // `preview | head -1`: the reader goes after one line of a long output.
    let preview = args("preview -n 200 --region us-east-1 --endpoint-url");
    let mut child = spawn(dir.path(), &[&preview[..], &[&db.endpoint]].concat());
    let mut first = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // No terminal: a progress line every interval, on stderr; none quiet.
    let endpoint = ["--region", "us-east-1", "--endpoint-url", &db.endpoint];
    let run = args(
        "migrate --create-table --write-rate 1500 --progress-interval 300ms --rate-sample-interval 200ms",
    );
    let o = bare(dir.path(), &[&run[..], &endpoint].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("singletable: progress: "))
        .collect();
    assert!(lines.len() >= 3, "{err}");
    assert!(
        lines[0].contains("records settled") && lines[0].contains(" read, "),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("; writing ") && l.contains("in flight")),
        "the sink's rate is shown: {err}"
    );
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains("reconciled"),
        "the summary is data, on stdout: {summary}"
    );
    let quiet = args("migrate --quiet --fresh --progress-interval 100ms");
    let o = bare(dir.path(), &[&quiet[..], &endpoint].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains("singletable: progress:"), "{}", text(&o));
}

#[tokio::test]
async fn demo_data_never_mixes_two_datasets() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = singletable(d, &db.endpoint, &args("demo-data --scale 300 --seed 1"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let first = scan_all(&c, "ai-girlfriend-users").await.len();
    let o = singletable(d, &db.endpoint, &args("demo-data --scale 600 --seed 2"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("already hold items; pass --replace"),
        "{}",
        text(&o)
    );
    assert_eq!(
        scan_all(&c, "ai-girlfriend-users").await.len(),
        first,
        "untouched"
    );
    let o = singletable(
        d,
        &db.endpoint,
        &args("demo-data --scale 600 --seed 2 --replace"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (items, _) = singletable::demo::generate(&singletable::demo::DemoOptions {
        scale: 600,
        seed: 2,
        dirty_rate: 0.01,
    });
    let users = items
        .iter()
        .filter(|(t, _)| *t == "ai-girlfriend-users")
        .count();
    assert_eq!(scan_all(&c, "ai-girlfriend-users").await.len(), users);
}

#[test]
fn completions_for_every_shell_know_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o = bare(dir.path(), &["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let script = String::from_utf8(o.stdout).unwrap();
        for word in [
            "migrate",
            "plan",
            "replay",
            "--resume",
            "--warm-write-units",
        ] {
            assert!(script.contains(word), "{shell}: {word}");
        }
    }
}

#[tokio::test]
async fn waiting_and_setup_errors_name_the_endpoint_the_flag_and_the_cure() {
    // An endpoint that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let dir = tempfile::tempdir().unwrap();
    let hang = args("preview --request-timeout 1 --region us-east-1 --endpoint-url");
    let o = bare(dir.path(), &[&hang[..], &[&endpoint]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("endpoint {endpoint}")), "{err}");
    assert!(err.contains("--request-timeout 1 s"), "{err}");

    let home = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_singletable"))
        .current_dir(dir.path())
        .args(["preview", "--region", "us-east-1"])
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no AWS credentials: the chain tried"), "{err}");
    assert!(!err.contains("could not reach"), "{err}");
}

#[tokio::test]
async fn long_values_are_cut_on_the_terminal_and_json_goes_to_stdout() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    let legacy = load_legacy(&c, 300, 42, 0.02).await;
    assert!(legacy
        .iter()
        .any(|(_, i)| i.get("sessionId") == Some(&s("s-near-limit"))));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = singletable(d, &db.endpoint, &args("preview -n 1000 --skip-data-check"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let shown = String::from_utf8(o.stdout).unwrap();
    let longest = shown.lines().map(str::len).max().unwrap();
    assert!(longest < 4000, "a line of {longest} characters");
    assert!(shown.contains("…\" ("), "a cut value says its length");

    let o = singletable(d, &db.endpoint, &args("preview -n 2 --json"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["entities"].as_array().unwrap().len(), 7);
    assert_eq!(
        p["entities"][0]["records"][0]["becomes"][0]["outcome"],
        "put"
    );

    migrate_dirty(d, &db.endpoint);
    let o = singletable(d, &db.endpoint, &args("verify --json --sample 50"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "sample-match");
    let o = singletable(d, &db.endpoint, &args("plan --json"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["totals"]["read"].as_u64().unwrap(), legacy.len() as u64);
}

#[tokio::test]
async fn verbose_logs_say_where_requests_go_and_each_phase() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 200, 43, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let run = args("migrate -v --create-table --region us-east-1 --endpoint-url");
    let o = bare(dir.path(), &[&run[..], &[&db.endpoint]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("requests go to endpoint {}", db.endpoint)),
        "{err}"
    );
    assert!(err.contains("phase 1 of 1 starts"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "no colours without a terminal: {err}"
    );
    let quiet = args("preview -q --region us-east-1 --endpoint-url");
    let o = command(dir.path(), &[&quiet[..], &[&db.endpoint]].concat())
        .env("RUST_LOG", "singletable=info")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("requests go to"),
        "RUST_LOG decides"
    );
}

#[test]
fn verify_refuses_flags_that_contradict_each_other() {
    let dir = tempfile::tempdir().unwrap();
    for line in [
        "verify --full --sample 10",
        "verify --full --sample-rate 0.1",
        "verify --sample 10 --sample-rate 0.1",
        "verify --full --seed 3",
    ] {
        let o = bare(dir.path(), &args(line));
        assert_eq!(o.status.code(), Some(2), "{line}: {}", text(&o));
        assert!(
            text(&o).contains("cannot be used with"),
            "{line}: {}",
            text(&o)
        );
    }
}

/// The help of every command and the main errors, as transcripts under
/// tests/cmd (regenerate with TRYCMD=overwrite after a deliberate change).
#[test]
fn help_and_main_errors_match_their_transcripts() {
    trycmd::TestCases::new()
        .register_bin(
            "singletable",
            std::path::Path::new(env!("CARGO_BIN_EXE_singletable")),
        )
        .case("tests/cmd/*.toml");
}

#[tokio::test]
async fn after_a_signal_the_progress_says_what_the_drain_waits_for() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 4000, 44, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let run = args("migrate --create-table --write-rate 500 --progress-interval 200ms --region us-east-1 --endpoint-url");
    let child = spawn(dir.path(), &[&run[..], &[&db.endpoint]].concat());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    interrupt(&child);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("interrupted (SIGINT)"), "{err}");
    assert!(err.contains("draining: waiting for"), "{err}");
}

#[tokio::test]
async fn a_request_unanswered_for_seconds_is_reported_with_its_endpoint() {
    let db = Dynoxide::start();
    let proxy = Proxy::start(&db.endpoint);
    proxy.faults.lock().unwrap().hang = true;
    let c = client(&db.endpoint).await;
    load_legacy(&c, 100, 45, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let run = args(
        "migrate --create-table --stall-timeout 8s --request-timeout 7 --progress-interval 1s --region us-east-1 --endpoint-url",
    );
    let o = bare(dir.path(), &[&run[..], &[&proxy.endpoint]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let place = format!("endpoint {}", proxy.endpoint);
    assert!(
        err.contains("BatchWriteItem: no answer after 5 s") && err.contains(&place),
        "{err}"
    );
    assert!(
        err.contains("unanswered for over 5 s"),
        "the progress says so: {err}"
    );
}

#[tokio::test]
async fn an_interrupted_plan_leaves_no_temp_files() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 3000, 46, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let run = args(
        "plan --read-rate 5 --page-size 10 --progress-interval 300ms --region us-east-1 --endpoint-url",
    );
    let spill_dir = ["--spill-dir", spill.path().to_str().unwrap()];
    let child = spawn(
        dir.path(),
        &[&run[..], &[&db.endpoint], &spill_dir].concat(),
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        std::fs::read_dir(spill.path()).unwrap().count(),
        1,
        "plan spills while it reads"
    );
    interrupt(&child);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("plan stopped, its temp files removed"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("singletable: progress: "), "{}", text(&o));
    assert_eq!(std::fs::read_dir(spill.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn verify_of_a_missing_target_gives_verify_s_own_hint() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 50, 47, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let o = singletable(
        dir.path(),
        &db.endpoint,
        &args("verify --target-table not-there"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("target table not-there: does not exist"),
        "{err}"
    );
    assert!(
        err.contains("--target-table") && !err.contains("--create-table"),
        "{err}"
    );
}

#[tokio::test]
async fn the_printed_aws_cli_commands_create_the_mapping_s_table_in_dynoxide() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_singletable"))
        .args(["table", "--format", "aws-cli"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let script = String::from_utf8(o.stdout).unwrap();
    // dynoxide has no continuous backups: that last command is checked as
    // text only.
    let (runnable, pitr) = script
        .split_once("aws dynamodb update-continuous-backups")
        .unwrap();
    assert!(pitr.contains("PointInTimeRecoveryEnabled=true"), "{script}");
    let ran = std::process::Command::new("sh")
        .args(["-ec", runnable])
        .current_dir(dir.path())
        .env("AWS_ENDPOINT_URL", &db.endpoint)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("the AWS CLI is installed (pip install awscli; .ci/run does)");
    assert!(ran.status.success(), "{}", text(&ran));
    // The table the commands made is the one the mapping describes.
    let c = client(&db.endpoint).await;
    let spec = singletable::mapping::Mapping::shipped().table;
    let made = singletable::sinks::table::ensure(&c, &spec, false, None).await;
    assert!(matches!(made, Ok(false)), "{made:?}");
    let ttl = c
        .describe_time_to_live()
        .table_name(TARGET)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
}

/// The IAM actions behind the calls the proxy saw (`DynamoDB_20120810.Scan`
/// is `dynamodb:Scan`; Streams calls are `dynamodb:` actions too).
fn actions_called(proxy: &Proxy) -> std::collections::BTreeSet<String> {
    let mut f = proxy.faults.lock().unwrap();
    let seen = std::mem::take(&mut f.targets);
    seen.iter()
        .filter_map(|t| t.split_once('.').map(|(_, op)| format!("dynamodb:{op}")))
        .collect()
}

/// The S3 actions behind the requests the proxy saw: a listing is
/// `s3:ListBucket`, reading an object (GET or HEAD) `s3:GetObject`,
/// writing one `s3:PutObject`.
fn s3_actions_called(proxy: &Proxy) -> std::collections::BTreeSet<String> {
    let mut f = proxy.faults.lock().unwrap();
    let seen = std::mem::take(&mut f.requests);
    seen.iter()
        .map(|line| {
            let mut words = line.split(' ');
            let (method, path) = (words.next().unwrap(), words.next().unwrap());
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            // Path style: /bucket, /bucket/ or /bucket/key.
            let object = path
                .trim_start_matches('/')
                .split_once('/')
                .is_some_and(|(_, key)| !key.is_empty());
            let action = match (method, object) {
                ("GET", false) if query.contains("list-type=2") => "s3:ListBucket",
                ("GET" | "HEAD", true) => "s3:GetObject",
                ("PUT" | "POST", true) => "s3:PutObject",
                _ => panic!("an S3 request the test does not know: {line}"),
            };
            action.to_string()
        })
        .collect()
}

/// The actions a printed policy allows, but those of statements named in
/// `aside` (what a service does as the caller, never sent by the tool).
fn actions_allowed_but(words: &[&str], aside: &[&str]) -> std::collections::BTreeSet<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_singletable"))
        .args([&["iam-policy", "--mapping", &m()][..], words].concat())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let statements = p["Statement"].as_array().unwrap();
    for sid in aside {
        assert!(statements.iter().any(|s| s["Sid"] == *sid), "{sid}: {p:#}");
    }
    statements
        .iter()
        .filter(|s| !aside.contains(&s["Sid"].as_str().unwrap()))
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The actions a printed policy allows.
fn actions_allowed(words: &[&str]) -> std::collections::BTreeSet<String> {
    actions_allowed_but(words, &[])
}

/// The import job (exports read from S3, files written to S3, ImportTable
/// into moto) through two recording proxies: the DynamoDB and S3 actions
/// it sends are exactly those its policy grants, but for the statements
/// ImportTable itself uses as the caller (reading the files, its logs).
#[tokio::test]
async fn the_import_job_calls_exactly_what_its_policy_allows_on_dynamodb_and_s3() {
    let db = Dynoxide::start();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s3 = s3_client(&moto.endpoint).await;
    for bucket in ["exp", "imports"] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let env = endpoints(&db.endpoint, &moto.endpoint);
    let lines = demo_exports_s3(
        d,
        &env,
        "--scale 300 --dirty-rate 0 --exports-only --export-to s3://exp/prod",
    );
    // One export without its manifests (as moto writes them) is read by
    // listing its data/ folder: s3:ListBucket, which also makes S3 answer
    // a missing object 404, not 403.
    let first = lines.lines().next().unwrap().split_once('=').unwrap().1;
    let prefix = first.trim_start_matches("s3://exp/");
    s3.delete_object()
        .bucket("exp")
        .key(format!("{prefix}manifest-summary.json"))
        .send()
        .await
        .unwrap();
    let (ddb, s3p) = (Proxy::start(&moto.endpoint), Proxy::start(&moto.endpoint));
    let through = endpoints(&ddb.endpoint, &s3p.endpoint);
    let words =
        args("migrate --exports-file exports.txt --to-import s3://imports/run1/ --import-table");
    let o = singletable_env(d, &through, &[&words[..], &["--mapping", &m()]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut called = actions_called(&ddb);
    called.extend(s3_actions_called(&s3p));
    let policy = args("--job import --to-import s3://imports/run1/ --export s3://exp/prod/");
    let aside = ["ImportTableReadsTheFiles", "ImportTableWritesItsLogs"];
    let allowed = actions_allowed_but(&policy, &aside);
    assert_eq!(called, allowed, "the calls made, the policy printed");
}

#[tokio::test]
async fn each_job_calls_exactly_the_actions_its_printed_policy_allows() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 300, 8, 0.0).await;
    singletable::demo::enable_streams(&c, "NEW_AND_OLD_IMAGES")
        .await
        .unwrap();
    let proxy = Proxy::start(&db.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let from = chrono::Utc::now().to_rfc3339();
    let jobs: [(&str, Vec<&str>, Vec<&str>); 6] = [
        ("migrate", vec!["--create-table"], vec!["--create-table"]),
        ("plan", vec![], vec![]),
        ("verify", vec![], vec![]),
        (
            "verify",
            vec!["--access-patterns"],
            vec!["--access-patterns"],
        ),
        ("verify", vec!["--full", "--repair"], vec!["--repair"]),
        ("follow", vec!["--until-caught-up", "--from", &from], vec![]),
    ];
    for (job, run, policy) in jobs {
        if job == "follow" {
            // A change to follow, so that the follow writes.
            let user = [
                ("userId".to_string(), s("u-iam")),
                ("email".to_string(), s("iam@example.com")),
                ("createdAt".to_string(), s("2024-01-15T10:00:00Z")),
                ("lastActiveAt".to_string(), s("2024-01-15T10:00:00Z")),
            ];
            let put = c.put_item().table_name("ai-girlfriend-users");
            put.set_item(Some(user.into())).send().await.unwrap();
        }
        if run.contains(&"--repair") {
            // Something to repair: a record missing from the target.
            delete_target(&c, "USER#user123", "METADATA").await;
        }
        actions_called(&proxy);
        let o = singletable(
            d,
            &proxy.endpoint,
            &[&[job, "--mapping", &m()][..], &run].concat(),
        );
        assert_eq!(o.status.code(), Some(0), "{job}: {}", text(&o));
        let called = actions_called(&proxy);
        let allowed = actions_allowed(&[&["--job", job][..], &policy].concat());
        assert_eq!(called, allowed, "{job}: the calls made, the policy printed");
    }
}

#[test]
fn demo_serve_stops_on_sigterm_as_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_singletable"))
        .current_dir(dir.path())
        .args([
            "demo", "--serve", "--port", "0", "--scale", "200", "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the line that says it serves (after the demo's own run,
    // which registered its signal handlers).
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(n > 0, "the demo ended before serving");
        if line.starts_with("serving") {
            break;
        }
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = finish_within(child, 30);
    assert_eq!(o.status.code(), Some(0), "stopped by SIGTERM, cleanly");
}
