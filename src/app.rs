//! The commands: arguments in, a plan built and checked, the run, an exit code.
//!
//! This is the edge: it loads the mapping (so a broken one is refused
//! before any AWS call), builds the one SDK client, runs the pipeline,
//! writes reports and prints summaries. Errors here are `anyhow`, with the
//! typed errors of the library modules inside. Exit codes: 0 success,
//! 1 verification found differences, 2 the tool failed.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::aws::AwsOptions;
use crate::cli::{
    AwsArgs, Command, DemoArgs, MappingArgs, MigrateArgs, PreviewArgs, ScanArgs, VerifyArgs,
};
use crate::mapping::Mapping;
use crate::pipeline::{self, MigrateOptions};
use crate::report::write_json;
use crate::sources::scan::ScanConfig;
use crate::verify::{self, VerifyOptions};

/// Exit code: the tool did its job (and verify found a match).
pub const EXIT_OK: i32 = 0;
/// Exit code: verify found the target differs from the source.
pub const EXIT_DIFFERS: i32 = 1;
/// Exit code: the tool failed.
pub const EXIT_FAILED: i32 = 2;

/// Runs one command; returns the exit code.
pub async fn run(command: Command) -> Result<i32> {
    match command {
        Command::Migrate(a) => migrate(&a).await,
        Command::Preview(a) => preview(&a).await,
        Command::Verify(a) => verify_cmd(&a).await,
        Command::DemoData(a) => {
            let client = client(&a.aws, None).await;
            demo_data(&client, &a.data).await?;
            Ok(EXIT_OK)
        }
        Command::Demo(a) => demo(&a).await,
    }
}

fn load_mapping(args: &MappingArgs) -> Result<Mapping> {
    let mut m = Mapping::load(&args.mapping)?;
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

async fn client(a: &AwsArgs, creds: Option<(String, String)>) -> aws_sdk_dynamodb::Client {
    let mut opts = aws_options(a);
    opts.static_credentials = creds;
    crate::aws::dynamodb(&crate::aws::load(&opts).await)
}

fn scan_config(a: &ScanArgs) -> ScanConfig {
    ScanConfig {
        segments: a.segments,
        consistent_read: a.consistent_read,
        read_units_per_second: a.read_rate.and_then(NonZeroU32::new),
        page_limit: a.page_size,
    }
}

fn migrate_options(a: &MigrateArgs) -> MigrateOptions {
    MigrateOptions {
        create_table: a.create_table,
        scan: scan_config(&a.scan),
        scan_concurrency: a.scan.scan_concurrency,
        max_in_flight: a.max_in_flight,
        max_attempts: a.max_attempts.max(1),
        items_per_second: a.write_rate.and_then(NonZeroU32::new),
        write_units_per_second: a.write_units.and_then(NonZeroU32::new),
        dead_letter: a.dead_letter.clone(),
        quiet: a.aws.quiet,
    }
}

async fn migrate(a: &MigrateArgs) -> Result<i32> {
    let mapping = load_mapping(&a.mapping)?;
    let client = client(&a.aws, None).await;
    run_migrate(&client, &mapping, &migrate_options(a), a.report.as_deref()).await
}

async fn run_migrate(
    client: &aws_sdk_dynamodb::Client,
    mapping: &Mapping,
    opts: &MigrateOptions,
    report: Option<&Path>,
) -> Result<i32> {
    let (report_data, failure) = pipeline::migrate(client, mapping, opts).await?;
    if let Some(path) = report {
        write_json(path, &report_data)
            .with_context(|| format!("writing the run report {}", path.display()))?;
    }
    eprint!("{}", report_data.render());
    if let Some(path) = report {
        eprintln!("run report: {}", path.display());
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(EXIT_OK),
    }
}

async fn preview(a: &PreviewArgs) -> Result<i32> {
    let mapping = load_mapping(&a.mapping)?;
    let client = client(&a.aws, None).await;
    print!("{}", pipeline::preview(&client, &mapping, a.limit).await?);
    Ok(EXIT_OK)
}

fn verify_options(a: &VerifyArgs) -> VerifyOptions {
    VerifyOptions {
        sample: a.sample,
        seed: a.seed,
        scan: scan_config(&a.scan),
        scan_concurrency: a.scan.scan_concurrency,
        max_listed: a.max_listed,
    }
}

async fn verify_cmd(a: &VerifyArgs) -> Result<i32> {
    let mapping = load_mapping(&a.mapping)?;
    let client = client(&a.aws, None).await;
    run_verify(&client, &mapping, &verify_options(a), a.report.as_deref()).await
}

async fn run_verify(
    client: &aws_sdk_dynamodb::Client,
    mapping: &Mapping,
    opts: &VerifyOptions,
    report: Option<&Path>,
) -> Result<i32> {
    let r = verify::verify(client, mapping, opts).await?;
    if let Some(path) = report {
        write_json(path, &r)
            .with_context(|| format!("writing the verification report {}", path.display()))?;
    }
    print!("{}", r.render());
    Ok(if r.matches() { EXIT_OK } else { EXIT_DIFFERS })
}

async fn demo_data(client: &aws_sdk_dynamodb::Client, a: &crate::cli::DataArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&a.dirty_rate) {
        anyhow::bail!("--dirty-rate must be between 0 and 1, not {}", a.dirty_rate);
    }
    let opts = crate::demo::DemoOptions {
        scale: a.scale,
        seed: a.seed,
        dirty_rate: a.dirty_rate,
    };
    let (items, summary) = crate::demo::generate(&opts);
    crate::demo::create_legacy_tables(client).await?;
    crate::demo::load(client, &items).await?;
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
    Ok(())
}

async fn demo(a: &DemoArgs) -> Result<i32> {
    let mapping = Mapping::load(&a.mapping)?;
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
    let client = client(
        &aws,
        Some(("singletable-demo".into(), "singletable-demo".into())),
    )
    .await;
    let result = demo_steps(&client, &mapping, a).await;
    if a.serve && result.is_ok() {
        eprintln!(
            "\nserving {ep} until Ctrl-C. Try the seed's own commands, for example:\n  \
             AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws dynamodb get-item --endpoint-url {ep} --region us-east-1 \\\n    \
             --table-name {t} --key '{{\"pk\": {{\"S\": \"USER#user123\"}}, \"sk\": {{\"S\": \"METADATA\"}}}}'\n  \
             AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws dynamodb query --endpoint-url {ep} --region us-east-1 \\\n    \
             --table-name {t} --index-name gsi1 --key-condition-expression \"gsi1pk = :pk\" \\\n    \
             --expression-attribute-values '{{\":pk\": {{\"S\": \"USERS\"}}}}'",
            ep = server.endpoint,
            t = mapping.table.name
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    server.stop().await;
    result
}

async fn demo_steps(
    client: &aws_sdk_dynamodb::Client,
    mapping: &Mapping,
    a: &DemoArgs,
) -> Result<i32> {
    eprintln!("\n== 1. demo data: the seven legacy tables");
    demo_data(client, &a.data).await?;

    eprintln!("\n== 2. preview (writes nothing)");
    print!("{}", pipeline::preview(client, mapping, 2).await?);

    eprintln!("\n== 3. migrate --create-table");
    let opts = MigrateOptions {
        create_table: true,
        scan: ScanConfig {
            segments: None,
            consistent_read: false,
            read_units_per_second: None,
            page_limit: None,
        },
        scan_concurrency: 16,
        max_in_flight: 8,
        max_attempts: 10,
        items_per_second: None,
        write_units_per_second: None,
        dead_letter: a.out.join("dead-letters.jsonl"),
        quiet: a.quiet,
    };
    run_migrate(
        client,
        mapping,
        &opts,
        Some(&a.out.join("migrate-report.json")),
    )
    .await?;
    eprintln!("dead letters: {}", opts.dead_letter.display());

    eprintln!("\n== 4. verify");
    let vopts = VerifyOptions {
        sample: 1000,
        seed: 0,
        scan: opts.scan.clone(),
        scan_concurrency: 16,
        max_listed: 100,
    };
    let code = run_verify(
        client,
        mapping,
        &vopts,
        Some(&a.out.join("verify-report.json")),
    )
    .await?;
    eprintln!("reports: {}", a.out.display());
    Ok(code)
}
