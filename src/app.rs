//! The commands: arguments in, a plan built and checked, the run, an exit code.
//!
//! This is the edge: it loads the mapping (so a broken one is refused
//! before any AWS call), builds the one SDK client, runs the pipeline,
//! writes reports and prints summaries. Errors here are `anyhow`, with the
//! typed errors of the library modules inside. Exit codes: 0 success,
//! 1 verification found differences, 2 the tool failed or was interrupted,
//! 3 a migration finished with items not migrated.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::aws::AwsOptions;
use crate::checkpoint::{State, Status};
use crate::cli::{
    AwsArgs, Command, CutoverArgs, DataArgs, DemoArgs, DemoDataArgs, ExportFormat, FollowArgs,
    MappingArgs, MigrateArgs, PlanArgs, PreviewArgs, ReplayArgs, ScanArgs, ShardArgs, SourceArgs,
    StatusArgs, VerifyArgs, WriteArgs,
};
use crate::export::write::ExportSpec;
use crate::export::Record;
use crate::mapping::Mapping;
use crate::pipeline::{self, MigrateOptions, StateOptions};
use crate::report::write_json;
use crate::sources::export::Store;
use crate::sources::scan::ScanConfig;
use crate::sources::streams::StreamsClient;
use crate::sources::{Shard, SourceOptions};
use crate::verify::{self, VerifyOptions};

pub use crate::report::{EXIT_DIFFERS, EXIT_FAILED, EXIT_NOT_MIGRATED, EXIT_OK};

/// Runs one command; returns the exit code.
pub async fn run(command: Command) -> Result<i32> {
    match command {
        Command::Plan(a) => plan(&a).await,
        Command::Migrate(a) => migrate(&a).await,
        Command::Follow(a) => follow(&a).await,
        Command::CutoverCheck(a) => cutover_check(&a).await,
        Command::Status(a) => status(&a),
        Command::Report(crate::cli::ReportCommand::Merge(a)) => report_merge(&a),
        Command::Replay(a) => replay(&a).await,
        Command::Preview(a) => preview(&a).await,
        Command::Verify(a) => verify_cmd(&a).await,
        Command::DemoData(a) => {
            let (client, s3) = clients(&a.aws, None).await;
            let export = match &a.export_to {
                Some(dest) => Some((crate::export::write::Dest::parse(dest, Some(s3))?, &a)),
                None => None,
            };
            demo_data(&client, &a.data, export, a.replace).await?;
            Ok(EXIT_OK)
        }
        Command::Demo(a) => demo(&a).await,
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut script = Vec::new();
            let mut cmd = crate::cli::Cli::command();
            clap_complete::generate(shell, &mut cmd, "singletable", &mut script);
            out(&String::from_utf8_lossy(&script));
            Ok(EXIT_OK)
        }
        Command::Table(a) => {
            use crate::cli::TableFormat as F;
            use crate::mapping::table_code::{render, Format};
            let mapping = load_mapping(&a.mapping)?;
            let format = match a.format {
                F::AwsCli => Format::AwsCli,
                F::Terraform => Format::Terraform,
                F::Cloudformation => Format::CloudFormation,
                F::Json => Format::Json,
            };
            out(&render(&mapping.table, format));
            Ok(EXIT_OK)
        }
        Command::IamPolicy(a) => {
            use crate::cli::PolicyJob as J;
            use crate::mapping::iam::{policy, Job, PolicyOptions};
            let mapping = load_mapping(&a.mapping)?;
            let job = match a.job {
                J::Migrate => Job::Migrate,
                J::Verify => Job::Verify,
                J::Plan => Job::Plan,
                J::Follow => Job::Follow,
                J::Import => Job::Import,
            };
            if a.to_import
                .as_deref()
                .is_some_and(|t| !t.starts_with("s3://"))
            {
                anyhow::bail!("--to-import: ImportTable reads from S3; give s3://bucket/prefix/");
            }
            if (a.access_patterns || a.repair) && job != Job::Verify {
                anyhow::bail!(
                    "--access-patterns and --repair are verify options: use them with --job verify"
                );
            }
            let opts = PolicyOptions {
                job,
                region: a.region.clone(),
                account: a.account.clone(),
                create_table: a.create_table,
                exports: a.exports.clone(),
                to_import: a.to_import.clone(),
                access_patterns: a.access_patterns,
                repair: a.repair,
            };
            out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&policy(&mapping, &opts))?
            ));
            Ok(EXIT_OK)
        }
        Command::Mapping(crate::cli::MappingCommand::Show) => {
            out(crate::mapping::SHIPPED);
            Ok(EXIT_OK)
        }
    }
}

/// The mapping named, or the built-in one.
fn mapping_or_shipped(path: Option<&Path>) -> Result<Mapping> {
    Ok(match path {
        Some(p) => Mapping::load(p)?,
        None => Mapping::shipped(),
    })
}

fn load_mapping(args: &MappingArgs) -> Result<Mapping> {
    let mut m = mapping_or_shipped(args.mapping.as_deref())?;
    if let Some(t) = args.target_table.as_deref().filter(|t| !t.is_empty()) {
        m.set_target_name(t)?;
    }
    Ok(m)
}

fn aws_options(a: &AwsArgs) -> AwsOptions {
    AwsOptions {
        region: a.region.clone(),
        profile: a.profile.clone(),
        endpoint_url: a.endpoint_url.clone(),
        attempt_timeout: Some(Duration::from_secs(a.request_timeout.max(1))),
        static_credentials: None,
    }
}

/// The one DynamoDB client and the one S3 client of a run.
async fn clients(
    a: &AwsArgs,
    creds: Option<(String, String)>,
) -> (aws_sdk_dynamodb::Client, aws_sdk_s3::Client) {
    let (dynamodb, s3, _) = all_clients(a, creds).await;
    (dynamodb, s3)
}

/// The DynamoDB, S3 and DynamoDB Streams clients of a run, from one
/// configuration (the credential chain is resolved once).
async fn all_clients(
    a: &AwsArgs,
    creds: Option<(String, String)>,
) -> (aws_sdk_dynamodb::Client, aws_sdk_s3::Client, StreamsClient) {
    let mut opts = aws_options(a);
    opts.static_credentials = creds;
    let config = crate::aws::load(&opts).await;
    (
        crate::aws::dynamodb(&config),
        crate::aws::s3(&config, &opts),
        crate::aws::streams(&config),
    )
}

/// The DynamoDB client and the DynamoDB Streams client of a follow.
async fn stream_clients(a: &AwsArgs) -> (aws_sdk_dynamodb::Client, StreamsClient) {
    let (dynamodb, _, streams) = all_clients(a, None).await;
    (dynamodb, streams)
}

/// The source options: `--export` and `--exports-file` lines, in order.
fn source_options(a: &SourceArgs) -> Result<SourceOptions> {
    let mut lines: Vec<(String, String)> = Vec::new();
    let split = |text: &str, origin: &str| -> Result<(String, String)> {
        let (table, location) = text
            .split_once('=')
            .with_context(|| format!("{origin}: {text:?} is not TABLE=LOCATION"))?;
        Ok((table.trim().to_string(), location.trim().to_string()))
    };
    for e in &a.exports {
        lines.push(split(e, "--export")?);
    }
    if let Some(path) = &a.exports_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if !line.is_empty() {
                lines.push(split(line, &format!("{}:{}", path.display(), i + 1))?);
            }
        }
    }
    Ok(SourceOptions {
        exports: lines,
        scan_missing: a.scan_missing,
        accept_mismatch: a.accept_export_mismatch,
        accept_gaps: a.accept_export_gaps,
    })
}

fn scan_config(a: &ScanArgs) -> ScanConfig {
    ScanConfig {
        segments: a.segments,
        consistent_read: a.consistent_read,
        read_units_per_second: a.read_rate.and_then(NonZeroU32::new),
        page_limit: Some(a.page_size),
        projection: None,
        stall_timeout: a.stall_timeout,
    }
}

/// The write options shared by migrate and replay, from their arguments.
fn write_options(w: &WriteArgs, aws: &AwsArgs, dead_letter: PathBuf) -> MigrateOptions {
    MigrateOptions {
        create_table: w.create_table,
        sources: SourceOptions::default(),
        scan: scan_config(&ScanArgs::default()),
        read_concurrency: 16,
        max_in_flight: w.rate.max_in_flight.unwrap_or(8) as usize,
        stall_timeout: ScanArgs::default().stall_timeout,
        items_per_second: w.rate.write_rate.and_then(NonZeroU32::new),
        write_units_per_second: w.rate.write_units.and_then(NonZeroU32::new),
        dead_letter,
        allow_dead_letters: w.rate.allow_dead_letters.unwrap_or_default(),
        rate_sample_every: w.rate_sample_interval,
        skip_data_check: false,
        quiet: aws.quiet,
        state: StateOptions {
            path: PathBuf::from("singletable-state.json"),
            resume: false,
            fresh: false,
            every: Duration::from_secs(2),
            target: String::new(),
            shard: None,
        },
        progress_every: w.progress_interval,
        warm: w.warm_write_units.map(|write| crate::sinks::table::Warm {
            write,
            read: w.warm_read_units,
        }),
        to_import: None,
        then_follow: None,
        shard_states: Vec::new(),
    }
}

fn migrate_options(a: &MigrateArgs, mapping: &Mapping) -> Result<MigrateOptions> {
    let shard = shard_of(&a.shard)?;
    let mut o = write_options(&a.write, &a.aws, shard_path(&a.dead_letter, shard));
    o.sources = source_options(&a.sources)?;
    o.scan = scan_config(&a.scan);
    o.read_concurrency = a.scan.read_concurrency as usize;
    o.stall_timeout = a.scan.stall_timeout;
    o.skip_data_check = a.skip_data_check;
    let mut target = target_words(&mapping.table.name, &a.aws);
    if let Some(s) = shard {
        target.push_str(&format!(", {}", s.words()));
        o.shard_states = (0..s.count)
            .filter(|&i| i != s.index)
            .map(|index| shard_path(&a.state, Some(Shard { index, ..s })))
            .collect();
    }
    o.state = StateOptions {
        path: shard_path(&a.state, shard),
        resume: a.resume,
        fresh: a.fresh,
        every: a.state_interval,
        target,
        shard,
    };
    if let Some(location) = &a.to_import {
        // The state's target is where the files go.
        o.state.target = format!("files for ImportTable in {location}");
        o.to_import = Some(import_target(location, a)?);
    }
    Ok(o)
}

/// `--shard I/N`, or `--shards N` with the index from the scheduler's
/// environment (Kubernetes Indexed Jobs, AWS Batch array jobs).
fn shard_of(a: &ShardArgs) -> Result<Option<Shard>> {
    let (index, count) = match (&a.shard, a.shards) {
        (Some(text), _) => {
            let parsed = text
                .split_once('/')
                .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
            parsed.with_context(|| format!("--shard {text:?} is not I/N, e.g. 0/3"))?
        }
        (None, Some(n)) => {
            let var = ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"]
                .into_iter()
                .find_map(|v| std::env::var(v).ok().map(|value| (v, value)));
            let (var, value) = var.context("--shards N takes this shard's index from JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs) or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array jobs), and neither is set; or pass --shard I/N")?;
            let index = value
                .trim()
                .parse()
                .with_context(|| format!("{var}={value:?} is not a shard index"))?;
            (index, n)
        }
        (None, None) => return Ok(None),
    };
    if count == 0 || index >= count {
        anyhow::bail!("shard {index} of {count}: the index counts from 0 and must be below the number of shards");
    }
    Ok(Some(Shard { index, count }))
}

/// A shard's own file: `state.json` becomes `state.shard-2-of-3.json`.
fn shard_path(path: &Path, shard: Option<Shard>) -> PathBuf {
    let Some(s) = shard else {
        return path.to_path_buf();
    };
    let tag = format!("shard-{}-of-{}", s.index, s.count);
    let stem = path
        .file_stem()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{tag}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{tag}"),
    };
    path.with_file_name(name)
}

/// `--to-import`: a local folder, or S3 through a staging folder.
fn import_target(location: &str, a: &MigrateArgs) -> Result<crate::pipeline::ImportTarget> {
    let upload = crate::sinks::upload::S3Place::parse(location);
    if a.import_table && upload.is_none() {
        anyhow::bail!(
            "--import-table imports from S3: give --to-import s3://bucket/prefix/ (not {location})"
        );
    }
    let dir = match &upload {
        Some(_) => a
            .sources
            .spool_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("singletable-import-{}", std::process::id())),
        None => PathBuf::from(location),
    };
    Ok(crate::pipeline::ImportTarget {
        dir,
        upload,
        import_table: a.import_table,
        file_size: a.import_file_size,
        allow_collisions: a.allow_collisions,
    })
}

/// The target table and where it is, for the state's fingerprint.
fn target_words(table: &str, a: &AwsArgs) -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let endpoint =
        crate::aws::dynamodb_endpoint(a.endpoint_url.as_deref()).unwrap_or_else(|| "AWS".into());
    let region = a
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "the default region".into());
    let profile = a.profile.as_deref().map(|p| format!(", profile {p}"));
    format!(
        "{table} in {region} at {endpoint}{}",
        profile.unwrap_or_default()
    )
}

/// The export store, spooling S3 data files as the source arguments say.
fn store(s3: aws_sdk_s3::Client, a: &SourceArgs) -> Store {
    let spool = crate::sources::proof::Spool::new(a.spool_dir.clone(), a.spool_limit_mb);
    Store::new(Some(s3)).with_spool(spool)
}

async fn migrate(a: &MigrateArgs) -> Result<i32> {
    let mapping = load_mapping(&a.mapping)?;
    let mut opts = migrate_options(a, &mapping)?;
    if a.until.until_caught_up && !a.then_follow {
        anyhow::bail!("--until-caught-up stops a follow: pass --then-follow with it");
    }
    if opts.state.shard.is_some() && (a.then_follow || a.to_import.is_some()) {
        anyhow::bail!("--shard splits a copy by Scan segments and export files; --then-follow and --to-import run on one host (follow after the shards have finished)");
    }
    let report = a
        .write
        .report
        .as_ref()
        .map(|r| shard_path(r, opts.state.shard));
    if a.resume {
        if let Some(done) = State::load(&a.state)?.filter(|s| s.status == Status::Finished) {
            if a.then_follow && done.follow.is_some() {
                eprintln!("the copy finished before; following the streams");
                let (client, streams) = stream_clients(&a.aws).await;
                return then_follow(a, (&client, &streams), &mapping, &opts).await;
            }
            eprint!(
                "{}",
                crate::checkpoint::render_status(&a.state, &done, false)
            );
            eprintln!(
                "nothing to resume: that run finished; run without --resume to migrate again"
            );
            return Ok(done.exit_code.unwrap_or(EXIT_OK));
        }
    }
    let (client, s3, streams) = all_clients(&a.aws, None).await;
    if a.then_follow {
        // Refused before anything is copied: a copy that cannot be followed.
        opts.then_follow = Some(crate::sources::streams::discover(&client, &mapping).await?);
    }
    let code = run_migrate(
        (&client, &streams),
        &store(s3, &a.sources),
        &mapping,
        &opts,
        report.as_deref(),
    )
    .await?;
    if !a.then_follow {
        return Ok(code);
    }
    if code != EXIT_OK {
        eprintln!(
            "not following the streams: the copy ended with exit {code}; once it is fixed, singletable migrate --resume --then-follow --state {} goes on (or follow --state {} once the copy has finished)",
            a.state.display(),
            a.state.display()
        );
        return Ok(code);
    }
    then_follow(a, (&client, &streams), &mapping, &opts).await
}

/// `migrate --then-follow`, once the copy has finished: the follow, from
/// where the copy recorded, its dead letters and report named *.follow.*.
async fn then_follow(
    a: &MigrateArgs,
    (client, streams): (&aws_sdk_dynamodb::Client, &StreamsClient),
    mapping: &Mapping,
    copy: &MigrateOptions,
) -> Result<i32> {
    let mut write = copy.clone();
    write.then_follow = None;
    write.create_table = false;
    write.warm = None;
    write.dead_letter = a.dead_letter.with_extension("follow.jsonl");
    write.allow_dead_letters = crate::report::Allowance::Count(0);
    let opts = pipeline::follow::FollowOptions {
        write,
        from: None,
        until_caught_up: a.until.until_caught_up,
        max_lag: a.until.max_lag,
        fresh: false,
    };
    let report = a
        .write
        .report
        .as_ref()
        .map(|r| r.with_extension("follow.json"));
    let ran = pipeline::follow::follow(client, streams, mapping, &opts).await?;
    finish_run(ran, report.as_deref())
}

/// `follow`: the streams into the target, from where the state stands.
async fn follow(a: &FollowArgs) -> Result<i32> {
    let mapping = load_mapping(&a.mapping)?;
    let mut write = write_options(&a.write, &a.aws, a.dead_letter.clone());
    write.stall_timeout = a.stall_timeout;
    write.state = StateOptions {
        path: a.state.clone(),
        resume: false,
        fresh: a.fresh,
        every: a.state_interval,
        target: target_words(&mapping.table.name, &a.aws),
        shard: None,
    };
    let opts = pipeline::follow::FollowOptions {
        write,
        from: a.from.clone(),
        until_caught_up: a.until.until_caught_up,
        max_lag: a.until.max_lag,
        fresh: a.fresh,
    };
    let (client, streams) = stream_clients(&a.aws).await;
    let ran = pipeline::follow::follow(&client, &streams, &mapping, &opts).await?;
    finish_run(ran, a.write.report.as_deref())
}

/// `cutover-check`: GO (exit 0) or NO-GO with the figures.
async fn cutover_check(a: &CutoverArgs) -> Result<i32> {
    let mapping = load_mapping(&a.mapping)?;
    let opts = pipeline::cutover::CutoverOptions {
        state: a.state.clone(),
        max_lag: a.max_lag,
        verify: VerifyOptions {
            sample: a.sample as usize,
            sample_rate: None,
            full: false,
            seed: a.seed,
            sources: SourceOptions::default(),
            scan: scan_config(&ScanArgs::default()),
            read_concurrency: 16,
            max_listed: 100,
            collect_limit: crate::verify::full::COLLECT_LIMIT,
            shard: None,
        },
    };
    let (client, streams) = stream_clients(&a.aws).await;
    let report = pipeline::cutover::check(&client, &streams, &mapping, &opts).await?;
    if let Some(path) = &a.report {
        write_json(path, &report)
            .with_context(|| format!("writing the check {}", path.display()))?;
    }
    out(&report.render());
    Ok(report.exit_code)
}

async fn run_migrate(
    (client, streams): (&aws_sdk_dynamodb::Client, &StreamsClient),
    store: &Store,
    mapping: &Mapping,
    opts: &MigrateOptions,
    report: Option<&Path>,
) -> Result<i32> {
    let ran = pipeline::migrate((client, streams), store, mapping, opts).await?;
    finish_run(ran, report)
}

/// Writes and prints a run's report; its exit code, or the error that
/// stopped it.
fn finish_run(
    (report_data, failure): (crate::report::RunReport, Option<pipeline::PipelineError>),
    report: Option<&Path>,
) -> Result<i32> {
    if let Some(path) = report {
        write_json(path, &report_data)
            .with_context(|| format!("writing the run report {}", path.display()))?;
    }
    out(&report_data.render());
    if let Some(path) = report {
        eprintln!("run report: {}", path.display());
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(report_data.exit_code),
    }
}

/// `plan`: the forecast, on the terminal and in the reports.
async fn plan(a: &PlanArgs) -> Result<i32> {
    let mapping = load_mapping(&a.mapping)?;
    let shard = shard_of(&a.shard)?;
    let opts = crate::plan::PlanOptions {
        sources: source_options(&a.sources)?,
        scan: scan_config(&a.scan),
        read_concurrency: a.scan.read_concurrency as usize,
        dead_letter: a.dead_letter.as_ref().map(|d| shard_path(d, shard)),
        write_units: a.write_units,
        top: a.top as usize,
        max_listed: a.max_listed as usize,
        prices: crate::plan::report::Prices {
            on_demand_write_per_million: a.price_write_million,
            on_demand_read_per_million: a.price_read_million,
            provisioned_wcu_hour: a.price_wcu_hour,
            import_per_gb: a.price_import_gb,
            export_per_gb: a.price_export_gb,
        },
        spill_dir: a.spill_dir.clone(),
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        quiet: a.aws.quiet,
        progress_every: a.progress_interval,
        shard,
    };
    let (client, s3) = clients(&a.aws, None).await;
    let report = crate::plan::plan(&client, &store(s3, &a.sources), &mapping, &opts).await?;
    if let Some(path) = &a.report {
        let path = shard_path(path, shard);
        write_both(&path, "the plan", &report, report.render_markdown())?;
    }
    Shown {
        width: 0,
        json: a.json,
    }
    .print(&report, |_| report.render())?;
    Ok(EXIT_OK)
}

/// Writes data to stdout. A reader that went away (a closed pipe, as
/// `| head` closes it) ends the program quietly with exit 0, never a panic.
pub fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(EXIT_OK),
        Err(e) => {
            eprintln!("singletable: cannot write to stdout: {e}");
            std::process::exit(EXIT_FAILED);
        }
    }
}

/// Writes a report as JSON at `path` and as Markdown beside it (the same
/// name ending in .md).
fn write_both<T: serde::Serialize>(path: &Path, what: &str, data: &T, md: String) -> Result<()> {
    write_json(path, data).with_context(|| format!("writing {what} {}", path.display()))?;
    let md_path = path.with_extension("md");
    std::fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))
}

/// `report merge`: one report of a sharded run's; its exit code.
fn report_merge(a: &crate::cli::ReportMergeArgs) -> Result<i32> {
    let mut reports = Vec::new();
    for path in &a.files {
        let r = crate::report::merge::read(path)?;
        reports.push((path.display().to_string(), r));
    }
    let merged = crate::report::merge::merge(&reports)?;
    if let Some(path) = &a.out {
        write_json(path, &merged)
            .with_context(|| format!("writing the merged report {}", path.display()))?;
    }
    out(&merged.render());
    Ok(merged.exit_code)
}

/// `status`: the state file, for people or as JSON.
fn status(a: &StatusArgs) -> Result<i32> {
    let Some(state) = State::load(&a.state)? else {
        anyhow::bail!(
            "state file {} does not exist: no run kept its state there (migrate --state names it)",
            a.state.display()
        );
    };
    let live = crate::checkpoint::StateLock::held(&a.state);
    if a.json {
        let mut v = serde_json::to_value(&state)?;
        v["running_now"] = live.into();
        out(&format!("{}\n", serde_json::to_string_pretty(&v)?));
    } else {
        out(&crate::checkpoint::render_status(&a.state, &state, live));
    }
    Ok(EXIT_OK)
}

/// `replay`: a dead-letter file's items, written again.
async fn replay(a: &ReplayArgs) -> Result<i32> {
    let mapping = load_mapping(&a.mapping)?;
    let shard = shard_of(&a.shard)?;
    let out = a
        .still_failing
        .clone()
        .unwrap_or_else(|| pipeline::replay::still_failing_path(&a.dead_letter));
    let mut opts = write_options(&a.write, &a.aws, shard_path(&out, shard));
    opts.stall_timeout = a.stall_timeout;
    opts.state.shard = shard;
    let (client, _) = clients(&a.aws, None).await;
    let ran = pipeline::replay::replay(&client, &mapping, &opts, &a.dead_letter).await?;
    let report = a.write.report.as_ref().map(|r| shard_path(r, shard));
    finish_run(ran, report.as_deref())
}

async fn preview(a: &PreviewArgs) -> Result<i32> {
    let mapping = load_mapping(&a.mapping)?;
    let sources = source_options(&a.sources)?;
    let (client, s3) = clients(&a.aws, None).await;
    let store = store(s3, &a.sources);
    let limit = a.limit as usize;
    let report = pipeline::preview::preview(
        &client,
        &store,
        &mapping,
        &sources,
        limit,
        a.skip_data_check,
    )
    .await?;
    let shown = Shown {
        width: a.max_value_width as usize,
        json: a.json,
    };
    shown.print(&report, |w| report.render(w))?;
    Ok(EXIT_OK)
}

fn verify_options(a: &VerifyArgs) -> Result<VerifyOptions> {
    if let Some(r) = a.sample_rate {
        if !(0.0..=1.0).contains(&r) {
            anyhow::bail!("--sample-rate must be between 0 and 1, not {r}");
        }
    }
    Ok(VerifyOptions {
        sample: a.sample as usize,
        sample_rate: a.sample_rate,
        full: a.full,
        seed: a.seed,
        sources: source_options(&a.sources)?,
        scan: scan_config(&a.scan),
        read_concurrency: a.scan.read_concurrency as usize,
        max_listed: a.max_listed as usize,
        collect_limit: a.collect_limit.max(1),
        shard: shard_of(&a.shard)?,
    })
}

async fn verify_cmd(a: &VerifyArgs) -> Result<i32> {
    if let Some(crate::cli::VerifyCommand::Merge(m)) = &a.command {
        return verify_merge(m);
    }
    let mapping = load_mapping(&a.mapping)?;
    let opts = verify_options(a)?;
    if a.repair.rate.given() && !a.repair.repair {
        anyhow::bail!("--write-rate, --write-units, --max-in-flight and --allow-dead-letters set how a repair writes: use them with --full --repair");
    }
    if a.repair.repair && opts.shard.is_some() {
        anyhow::bail!("--repair runs on one host: a shard's digests name no keys (run verify --full --repair without --shard)");
    }
    let (client, s3) = clients(&a.aws, None).await;
    if a.repair.repair {
        return verify_repair(&client, &store(s3, &a.sources), &mapping, &opts, a).await;
    }
    if let Some(shard) = opts.shard {
        if !a.full {
            anyhow::bail!(
                "--shard splits a full verification (--full); a sample is checked from one host"
            );
        }
        let store = store(s3, &a.sources);
        let d = verify::shard::digests(&client, &store, &mapping, &opts).await?;
        let base = a
            .report
            .clone()
            .unwrap_or_else(|| PathBuf::from("verify-digests.json"));
        let path = shard_path(&base, Some(shard));
        write_json(&path, &d).with_context(|| format!("writing {}", path.display()))?;
        let (src, tgt): (u64, u64) = d.entities.iter().fold((0, 0), |(s, t), e| {
            (s + e.expected_in_target, t + e.target_items)
        });
        out(&format!(
            "{}: {src} record(s) the mapping makes of this shard's source, {tgt} target item(s) of its share, digested into {}\nno verdict from one shard: singletable verify merge with every shard's file\n",
            shard.words(),
            path.display()
        ));
        return Ok(EXIT_OK);
    }
    if a.access_patterns {
        return verify_patterns(&client, &store(s3, &a.sources), &mapping, &opts, a).await;
    }
    run_verify(
        &client,
        &store(s3, &a.sources),
        &mapping,
        &opts,
        (
            a.report.as_deref(),
            Shown {
                width: a.max_value_width as usize,
                json: a.json,
            },
        ),
    )
    .await
}

/// A verify report (`title`, data) written to `--report` (JSON, and the
/// `whole` text in Markdown beside it) and shown: as JSON with `--json`,
/// else the `shown` text.
fn show<T: serde::Serialize>(
    a: &VerifyArgs,
    (title, data): (&str, &T),
    whole: String,
    shown: String,
) -> Result<()> {
    if let Some(path) = &a.report {
        let md = format!("# {title}\n\n```text\n{whole}```\n");
        write_both(
            path,
            &format!("the {} report", title.to_lowercase()),
            data,
            md,
        )?;
    }
    match a.json {
        true => out(&serde_json::to_string_pretty(data)?),
        false => out(&shown),
    }
    Ok(())
}

/// `verify --full --repair`: what differs, repaired (or, with --dry-run,
/// listed); exit 0 when the target then matches.
async fn verify_repair(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    opts: &VerifyOptions,
    a: &VerifyArgs,
) -> Result<i32> {
    let write = WriteArgs {
        create_table: false,
        warm_write_units: None,
        warm_read_units: None,
        report: None,
        rate: a.repair.rate.clone(),
        rate_sample_interval: Duration::from_secs(2),
        progress_interval: Duration::from_secs(30),
    };
    let mut wopts = write_options(&write, &a.aws, a.repair.dead_letter.clone());
    wopts.stall_timeout = a.scan.stall_timeout;
    let ropts = pipeline::repair::RepairOptions {
        dry_run: a.repair.dry_run,
        orphans: a.repair.repair_orphans,
        log: a.repair.repairs.clone(),
    };
    let (r, failure) =
        pipeline::repair::repair(client, store, mapping, (opts, &wopts), &ropts).await?;
    let width = a.max_value_width as usize;
    show(a, ("Repair", &r), r.render(1000), r.render(width))?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(r.exit_code),
    }
}

/// `verify --access-patterns`: exit 0 when every pattern answered as the
/// source implies, 1 when one did not.
async fn verify_patterns(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    opts: &VerifyOptions,
    a: &VerifyArgs,
) -> Result<i32> {
    if mapping.patterns.is_empty() {
        anyhow::bail!(
            "{}: the mapping declares no access patterns; add [[access_pattern]] entries (see the shipped mapping: singletable mapping show)",
            mapping.origin.display()
        );
    }
    let popts = verify::patterns::PatternOptions {
        partitions: a.pattern_sample as usize,
        items: a.pattern_items as usize,
        seed: a.seed,
    };
    let r = verify::access_patterns(client, store, mapping, opts, popts).await?;
    show(a, ("Access patterns", &r), r.render(), r.render())?;
    Ok(if r.differs() { EXIT_DIFFERS } else { EXIT_OK })
}

/// `verify merge`: the verdict of a sharded full verification.
fn verify_merge(a: &crate::cli::VerifyMergeArgs) -> Result<i32> {
    let mut shards = Vec::new();
    for path in &a.files {
        shards.push((path.display().to_string(), verify::shard::read(path)?));
    }
    let r = verify::shard::merge(&shards)?;
    if let Some(path) = &a.report {
        write_both(path, "the verification report", &r, r.render_markdown())?;
    }
    out(&r.render(120));
    Ok(if r.matches() { EXIT_OK } else { EXIT_DIFFERS })
}

/// How a report is shown on stdout.
#[derive(Debug, Clone, Copy)]
struct Shown {
    /// Values cut at this many characters.
    width: usize,
    /// The report as JSON instead of the table.
    json: bool,
}

impl Shown {
    fn print<T: serde::Serialize>(
        self,
        report: &T,
        table: impl FnOnce(usize) -> String,
    ) -> Result<()> {
        match self.json {
            true => out(&format!("{}\n", serde_json::to_string_pretty(report)?)),
            false => out(&table(self.width)),
        }
        Ok(())
    }
}

async fn run_verify(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    opts: &VerifyOptions,
    (report, shown): (Option<&Path>, Shown),
) -> Result<i32> {
    let r = verify::verify(client, store, mapping, opts).await?;
    if let Some(path) = report {
        write_both(path, "the verification report", &r, r.render_markdown())?;
    }
    shown.print(&r, |w| r.render(w))?;
    Ok(if r.matches() { EXIT_OK } else { EXIT_DIFFERS })
}

/// Makes the demo data; returns how many of its rows the shipped mapping
/// dead-letters.
/// Legacy tables that already hold items are refused, or with `replace`
/// deleted first: two datasets are never mixed.
async fn prepare_tables(client: &aws_sdk_dynamodb::Client, replace: bool) -> Result<()> {
    let holding = crate::demo::tables_with_items(client).await?;
    if holding.is_empty() {
        return Ok(());
    }
    if !replace {
        anyhow::bail!(
            "the legacy tables {} already hold items; pass --replace to delete and recreate them (their items are lost), or use another endpoint",
            holding.join(", ")
        );
    }
    eprintln!("--replace: deleting {}", holding.join(", "));
    Ok(crate::demo::drop_legacy_tables(client).await?)
}

async fn demo_data(
    client: &aws_sdk_dynamodb::Client,
    a: &DataArgs,
    export: Option<(crate::export::write::Dest, &DemoDataArgs)>,
    replace: bool,
) -> Result<u64> {
    if !(0.0..=1.0).contains(&a.dirty_rate) {
        anyhow::bail!("--dirty-rate must be between 0 and 1, not {}", a.dirty_rate);
    }
    let opts = crate::demo::DemoOptions {
        scale: a.scale as usize,
        seed: a.seed,
        dirty_rate: a.dirty_rate,
    };
    let (items, summary) = crate::demo::generate(&opts);
    let mut tables_hold = items.clone();
    let load_tables = export.as_ref().is_none_or(|(_, args)| !args.exports_only);
    let incremental = export.as_ref().is_some_and(|(_, args)| args.incremental);
    if let Some((dest, args)) = export {
        if !(0.0..=0.3).contains(&args.change_rate) {
            anyhow::bail!(
                "--change-rate must be between 0 and 0.3, not {}",
                args.change_rate
            );
        }
        dest.prepare().await?;
        let format = match args.export_format {
            ExportFormat::Json => crate::export::Format::DynamoDbJson,
            ExportFormat::Ion => crate::export::Format::Ion,
        };
        let (changes, updated) = crate::demo::changes(&items, a.seed, args.change_rate);
        for (table, _, _) in crate::demo::LEGACY_TABLES {
            let records: Vec<Record> = items
                .iter()
                .filter(|(t, _)| *t == table)
                .map(|(_, i)| Record::Item(i.clone()))
                .collect();
            let id = format!(
                "01705276800000-{:08x}",
                crate::verify::seeded_hash(a.seed, table.as_bytes()) as u32
            );
            let spec = ExportSpec {
                table,
                export_id: &id,
                format,
                files: 3,
                time: "2024-01-15T00:00:00Z",
                from_time: None,
            };
            let location = crate::export::write::write(&dest, &spec, &records).await?;
            out(&format!("{table}={location}\n"));
            if args.incremental {
                let records: Vec<Record> = changes
                    .iter()
                    .filter(|(t, _)| *t == table)
                    .map(|(_, c)| Record::Change {
                        keys: c.keys.clone(),
                        new: c.new.clone(),
                        old: c.old.clone(),
                    })
                    .collect();
                let id = format!(
                    "01705280400000-{:08x}",
                    crate::verify::seeded_hash(a.seed ^ 1, table.as_bytes()) as u32
                );
                let spec = ExportSpec {
                    table,
                    export_id: &id,
                    format,
                    files: 2,
                    time: "2024-01-15T01:00:00Z",
                    from_time: Some("2024-01-15T00:00:00Z"),
                };
                let location = crate::export::write::write(&dest, &spec, &records).await?;
                out(&format!("{table}={location}\n"));
            }
        }
        if args.incremental {
            eprintln!("incremental exports: {} changes", changes.len());
            tables_hold = updated;
        }
    }
    if load_tables {
        prepare_tables(client, replace).await?;
        crate::demo::create_legacy_tables(client).await?;
        crate::demo::load(client, &tables_hold).await?;
        if incremental {
            eprintln!("the tables hold the data with the incremental changes applied");
        }
    }
    eprintln!(
        "demo data (seed {}, scale {}, dirty rate {}):",
        a.seed, a.scale, a.dirty_rate
    );
    for (t, n) in &summary.items {
        eprintln!("  {t:<30} {n:>8} items");
    }
    for (k, n) in &summary.dirty {
        eprintln!("  dirty: {k:<32} {n:>5}");
    }
    Ok(summary.expected_dead_letters())
}

async fn demo(a: &DemoArgs) -> Result<i32> {
    let mut mapping = mapping_or_shipped(a.mapping.as_deref())?;
    // The embedded engine keeps no backups: nothing to turn on.
    mapping.table.point_in_time_recovery = false;
    let port = a.port.unwrap_or(if a.serve { 8000 } else { 0 });
    let server = crate::embedded::Embedded::start(port).await?;
    eprintln!("embedded DynamoDB (dynoxide) at {}", server.endpoint);
    let aws = AwsArgs {
        region: Some("us-east-1".into()),
        profile: None,
        endpoint_url: Some(server.endpoint.clone()),
        request_timeout: 60,
        quiet: a.quiet,
    };
    let mut opts = aws_options(&aws);
    opts.static_credentials = Some(("singletable-demo".into(), "singletable-demo".into()));
    let config = crate::aws::load(&opts).await;
    let client = crate::aws::dynamodb(&config);
    let streams = crate::aws::streams(&config);
    let result = demo_steps((&client, &streams), &mapping, a).await;
    if a.serve && result.is_ok() {
        eprintln!(
            "\nserving {ep} until Ctrl-C (or SIGTERM). Try the seed's own commands, for example:\n  \
             AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws dynamodb get-item --endpoint-url {ep} --region us-east-1 \\\n    \
             --table-name {t} --key '{{\"pk\": {{\"S\": \"USER#user123\"}}, \"sk\": {{\"S\": \"METADATA\"}}}}'\n  \
             AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws dynamodb query --endpoint-url {ep} --region us-east-1 \\\n    \
             --table-name {t} --index-name gsi1 --key-condition-expression \"gsi1pk = :pk\" \\\n    \
             --expression-attribute-values '{{\":pk\": {{\"S\": \"USERS\"}}}}'",
            ep = server.endpoint,
            t = mapping.table.name
        );
        // Ctrl-C, SIGTERM or SIGHUP (a run before registered handlers for all three).
        let _ = crate::pipeline::next_signal().await;
    }
    server.stop().await;
    result
}

/// The demo's plan, its reports in `out`.
async fn demo_plan(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    scan: &ScanConfig,
    dir: &Path,
) -> Result<()> {
    let opts = crate::plan::PlanOptions {
        sources: SourceOptions::default(),
        scan: scan.clone(),
        read_concurrency: 16,
        dead_letter: None,
        write_units: crate::plan::report::NEW_TABLE_WRITE_UNITS,
        top: 3,
        max_listed: 100,
        prices: crate::plan::report::Prices::default(),
        spill_dir: None,
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        quiet: true,
        progress_every: Duration::from_secs(30),
        shard: None,
    };
    let report = crate::plan::plan(client, store, mapping, &opts).await?;
    write_both(
        &dir.join("plan.json"),
        "the plan",
        &report,
        report.render_markdown(),
    )?;
    out(&report.render());
    Ok(())
}

async fn demo_steps(
    (client, streams): (&aws_sdk_dynamodb::Client, &StreamsClient),
    mapping: &Mapping,
    a: &DemoArgs,
) -> Result<i32> {
    let store = Store::new(None);
    eprintln!("\n== 1. demo data: the seven legacy tables");
    // The embedded engine is new: there is nothing to replace.
    let unwritable = demo_data(client, &a.data, None, false).await?;

    eprintln!("\n== 2. preview (writes nothing)");
    let scan_only = SourceOptions::default();
    let shown = pipeline::preview::preview(client, &store, mapping, &scan_only, 2, false).await?;
    out(&shown.render(120));

    let scan = ScanConfig {
        segments: None,
        consistent_read: false,
        read_units_per_second: None,
        page_limit: Some(250),
        projection: None,
        stall_timeout: Duration::from_secs(600),
    };
    eprintln!("\n== 3. plan: the whole run forecast (writes nothing)");
    demo_plan(client, &store, mapping, &scan, &a.out).await?;

    if a.follow {
        // The application's owners enable the streams before the copy.
        crate::demo::enable_streams(client, "NEW_AND_OLD_IMAGES").await?;
    }
    eprintln!(
        "\n== 4. migrate --create-table{}",
        if a.follow {
            " --then-follow, while the demo application keeps writing"
        } else {
            ""
        }
    );
    let mut opts = MigrateOptions {
        create_table: true,
        sources: scan_only.clone(),
        scan: scan.clone(),
        read_concurrency: 16,
        max_in_flight: 8,
        stall_timeout: Duration::from_secs(600),
        items_per_second: None,
        write_units_per_second: None,
        dead_letter: a.out.join("dead-letters.jsonl"),
        // Some dirty rows are there to be dead-lettered: exactly those.
        allow_dead_letters: crate::report::Allowance::Count(unwritable),
        rate_sample_every: Duration::from_secs(2),
        skip_data_check: false,
        quiet: a.quiet,
        // The demo makes its data anew each time: it starts over.
        state: StateOptions {
            path: a.out.join("state.json"),
            resume: false,
            fresh: true,
            every: Duration::from_secs(2),
            target: format!("{} (demo)", mapping.table.name),
            shard: None,
        },
        warm: None,
        progress_every: Duration::from_secs(30),
        to_import: None,
        then_follow: None,
        shard_states: Vec::new(),
    };
    eprintln!(
        "(allowing {unwritable} dead letters: the demo's dirty rows the mapping cannot write)"
    );
    let application = match a.follow {
        true => {
            opts.then_follow = Some(crate::sources::streams::discover(client, mapping).await?);
            Some(DemoApplication::start(client, mapping, &a.data))
        }
        false => None,
    };
    let migrated = run_migrate(
        (client, streams),
        &store,
        mapping,
        &opts,
        Some(&a.out.join("migrate-report.json")),
    )
    .await?;
    if let Some(app) = application {
        let made = app.stop().await?;
        eprintln!("the demo application made {made} changes while the copy ran, and stopped");
    }
    if migrated != EXIT_OK {
        return Ok(migrated);
    }
    if a.follow {
        let followed = demo_follow((client, streams), mapping, &opts, &a.out).await?;
        if followed != EXIT_OK {
            return Ok(followed);
        }
    }

    eprintln!("\n== 5. verify");
    let vopts = VerifyOptions {
        sample: 1000,
        sample_rate: None,
        full: false,
        seed: 0,
        sources: scan_only,
        scan,
        read_concurrency: 16,
        max_listed: 100,
        collect_limit: crate::verify::full::COLLECT_LIMIT,
        shard: None,
    };
    let code = run_verify(
        client,
        &store,
        mapping,
        &vopts,
        (
            Some(&a.out.join("verify-report.json")),
            Shown {
                width: 120,
                json: false,
            },
        ),
    )
    .await?;
    if a.follow && code == EXIT_OK {
        eprintln!("\n== 6. cutover-check");
        return demo_cutover((client, streams), mapping, &a.out, vopts).await;
    }
    eprintln!("reports: {}", a.out.display());
    Ok(code)
}

/// The demo's application: rounds of changes to the legacy tables (updates,
/// deletes, inserts, sessions moving between users) until it is stopped.
/// It writes only what the mapping can migrate, as a healthy application
/// would; the dirty rows of the bulk data are the copy's to dead-letter.
struct DemoApplication {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<usize>>,
}

impl DemoApplication {
    fn start(client: &aws_sdk_dynamodb::Client, mapping: &Mapping, data: &DataArgs) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (client, mapping) = (client.clone(), mapping.clone());
        let (mut items, _) = crate::demo::generate(&crate::demo::DemoOptions {
            scale: data.scale as usize,
            seed: data.seed,
            dirty_rate: data.dirty_rate,
        });
        let task = tokio::spawn(async move {
            let mut made = 0;
            for round in 2.. {
                if *stopped.borrow() {
                    break;
                }
                let (changes, updated) =
                    crate::demo::changes_round(&items, round, 0.002, round as i64);
                let clean: Vec<_> = changes
                    .into_iter()
                    .filter(|(t, c)| migratable(&mapping, t, c))
                    .collect();
                crate::demo::apply(&client, &clean).await?;
                made += clean.len();
                items = updated;
                let pause = tokio::time::sleep(Duration::from_millis(200));
                tokio::select! { _ = pause => {}, _ = stopped.wait_for(|s| *s) => {} }
            }
            Ok(made)
        });
        DemoApplication { stop, task }
    }

    /// Stops the application; how many changes it made.
    async fn stop(self) -> Result<usize> {
        let _ = self.stop.send(true);
        self.task.await.context("the demo application failed")?
    }
}

/// Whether the mapping makes a target item of a change (no dead letter).
fn migratable(mapping: &Mapping, table: &str, c: &crate::demo::Change) -> bool {
    let Some((_, entity)) = mapping.entity_for_table(table) else {
        return false;
    };
    let record = crate::sources::SourceRecord::Change {
        keys: c.keys.clone(),
        new: c.new.clone(),
        old: c.old.clone(),
    };
    let steps = pipeline::steps(entity, mapping, record);
    !steps.iter().any(|s| matches!(s, pipeline::Step::Dead(_)))
}

/// The demo's follow of the streams, until caught up within 2 s.
async fn demo_follow(
    (client, streams): (&aws_sdk_dynamodb::Client, &StreamsClient),
    mapping: &Mapping,
    copy: &MigrateOptions,
    out: &Path,
) -> Result<i32> {
    eprintln!("\n== 4b. follow the streams until caught up (--then-follow --until-caught-up --max-lag 2s)");
    let mut write = copy.clone();
    write.then_follow = None;
    write.dead_letter = out.join("dead-letters.follow.jsonl");
    write.allow_dead_letters = crate::report::Allowance::Count(0);
    let opts = pipeline::follow::FollowOptions {
        write,
        from: None,
        until_caught_up: true,
        max_lag: Duration::from_secs(2),
        fresh: false,
    };
    let ran = pipeline::follow::follow(client, streams, mapping, &opts).await?;
    finish_run(ran, Some(&out.join("follow-report.json")))
}

/// The demo's cutover-check: GO or NO-GO from the follow's state.
async fn demo_cutover(
    (client, streams): (&aws_sdk_dynamodb::Client, &StreamsClient),
    mapping: &Mapping,
    out: &Path,
    verify: VerifyOptions,
) -> Result<i32> {
    let opts = pipeline::cutover::CutoverOptions {
        state: out.join("state.json"),
        max_lag: Duration::from_secs(2),
        verify,
    };
    let report = pipeline::cutover::check(client, streams, mapping, &opts).await?;
    write_json(&out.join("cutover-check.json"), &report)?;
    crate::app::out(&report.render());
    eprintln!("reports: {}", out.display());
    Ok(report.exit_code)
}
