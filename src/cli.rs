//! The command line as the user types it: subcommands, flags, defaults.
//!
//! Only parsing and the help text live here; nothing is validated against
//! AWS and nothing is built. `app` turns these into a plan and runs it.
//! `--help` therefore returns before any SDK setup.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Migrate a one-table-per-entity DynamoDB layout into a single-table design,
/// and prove it did.
#[derive(Debug, Parser)]
#[command(
    name = "singletable",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit codes: 0 success (verify: the target matches), 1 verify found differences, 2 the tool failed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy every legacy table through the mapping into the target table.
    Migrate(MigrateArgs),
    /// Show what the first items of each legacy table would become; writes nothing.
    Preview(PreviewArgs),
    /// Prove the target holds what the mapping makes of the source.
    Verify(VerifyArgs),
    /// Create the seven legacy tables and fill them with generated data.
    DemoData(DemoDataArgs),
    /// Run the whole job on an embedded DynamoDB: demo data, preview, migrate, verify.
    Demo(DemoArgs),
}

/// Where AWS is and who we are there. Credentials come from the standard
/// chain: environment, shared config and credentials files, SSO, instance roles.
#[derive(Debug, Clone, Args)]
pub struct AwsArgs {
    /// AWS region (default: from the environment or profile).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Named profile from the shared AWS config.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Send every request (DynamoDB and S3) here instead of AWS. Per service:
    /// AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3; for both: AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Seconds one attempt of one request may take before it is retried.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub request_timeout: u64,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The mapping and the target.
#[derive(Debug, Clone, Args)]
pub struct MappingArgs {
    /// The mapping: a .toml file, or a folder of them.
    #[arg(long, value_name = "PATH")]
    pub mapping: PathBuf,
    /// The target table, instead of the one the mapping names.
    #[arg(long, env = "DYNAMODB_TABLE_NAME", value_name = "NAME")]
    pub target_table: Option<String>,
}

/// Where the legacy tables are read from: by Scan (the default), or from
/// DynamoDB's Export-to-S3 files.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Read TABLE from an export: s3://bucket/.../AWSDynamoDB/<ExportId>/, the
    /// same folder on local disk, or its manifest-summary.json. Repeatable: one
    /// full export and any number of incremental ones per table, applied in
    /// order of their export times.
    #[arg(long = "export", value_name = "TABLE=LOCATION")]
    pub exports: Vec<String>,
    /// A file of TABLE=LOCATION lines, read like --export (# starts a comment).
    #[arg(long, value_name = "PATH")]
    pub exports_file: Option<PathBuf>,
    /// With exports: scan the tables that have none (otherwise an error).
    #[arg(long)]
    pub scan_missing: bool,
    /// Read an export whose checksums or item counts do not match its
    /// manifests; each mismatch is recorded in the report.
    #[arg(long)]
    pub accept_export_mismatch: bool,
}

/// How the legacy tables are read.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// Parallel Scan segments per table (default: one per 2 GB, at least 4
    /// for tables over 5,000 items).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub segments: Option<u32>,
    /// Scan segments and export files read at once, across all tables.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub read_concurrency: usize,
    /// Strongly consistent reads (twice the read cost).
    #[arg(long)]
    pub consistent_read: bool,
    /// Read units per second per table (default: unlimited).
    #[arg(long, value_name = "RCU")]
    pub read_rate: Option<u32>,
    /// Items per Scan page. Small pages keep memory low (a full 1 MB page of
    /// small items takes several MB in memory) and cost no extra read units.
    #[arg(long, value_name = "N", default_value_t = 250, value_parser = clap::value_parser!(i32).range(1..))]
    pub page_size: i32,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    #[command(flatten)]
    pub sources: SourceArgs,
    #[command(flatten)]
    pub scan: ScanArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Create the target table from the mapping if it does not exist.
    #[arg(long)]
    pub create_table: bool,
    /// Write the run report (JSON) here.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Write items that cannot be migrated here, one JSON object a line.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "singletable-dead-letters.jsonl"
    )]
    pub dead_letter: PathBuf,
    /// Items written per second (default: unlimited).
    #[arg(long, value_name = "ITEMS")]
    pub write_rate: Option<u32>,
    /// Write units per second, counting each index an item lands in (default: unlimited).
    #[arg(long, value_name = "WCU")]
    pub write_units: Option<u32>,
    /// BatchWriteItem calls in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_in_flight: usize,
    /// Calls per batch (first try included) before its items are dead-lettered.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    #[command(flatten)]
    pub sources: SourceArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Items shown per legacy table.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 3)]
    pub limit: usize,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    #[command(flatten)]
    pub sources: SourceArgs,
    #[command(flatten)]
    pub scan: ScanArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Records compared attribute by attribute per entity (the same ones
    /// for the same --seed, whatever order the tables are read in).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub sample: usize,
    /// Compare this share of each entity's records instead (0 to 1),
    /// checked as the source streams by, in flat memory.
    #[arg(long, value_name = "R", conflicts_with = "full")]
    pub sample_rate: Option<f64>,
    /// Compare every record: digests of both sides in one pass each,
    /// narrowed to the exact missing, extra and changed keys where they differ.
    #[arg(long)]
    pub full: bool,
    /// Seed of the sample: the same seed picks the same items.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Write the verification report here (JSON), and a Markdown copy beside
    /// it (the same name ending in .md).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Full mode: records held at most to list differences (more: split again).
    #[arg(long, value_name = "N", default_value_t = crate::verify::full::COLLECT_LIMIT, hide = true)]
    pub collect_limit: u64,
    /// Mismatches listed in full.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_listed: usize,
}

#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// About this many items in all, over the seven tables.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub scale: usize,
    /// Seed: the same seed and scale give the same data.
    #[arg(long, value_name = "N", default_value_t = 42)]
    pub seed: u64,
    /// Share of rows given each kind of dirty data (0 to 1).
    #[arg(long, value_name = "R", default_value_t = 0.01)]
    pub dirty_rate: f64,
}

/// An export's data format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// DYNAMODB_JSON: `{"Item":{...}}` lines.
    Json,
    /// ION: `$ion_1_0 {Item:{...}}` lines.
    Ion,
}

#[derive(Debug, Clone, Args)]
pub struct DemoDataArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Also write each legacy table as a full DynamoDB export here: a folder,
    /// or s3://bucket/prefix. The TABLE=LOCATION lines for --export (or
    /// --exports-file) are printed on stdout.
    #[arg(long, value_name = "DEST")]
    pub export_to: Option<String>,
    /// The exports' data format.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "json")]
    pub export_format: ExportFormat,
    /// Also write an incremental export of generated changes (inserts,
    /// updates, deletes), and load the tables in their changed state.
    #[arg(long, requires = "export_to")]
    pub incremental: bool,
    /// Write the exports only: create and load no tables.
    #[arg(long, requires = "export_to")]
    pub exports_only: bool,
    /// Share of each table's items changed by --incremental, per kind of change.
    #[arg(long, value_name = "R", default_value_t = 0.05)]
    pub change_rate: f64,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The mapping to migrate with.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "mappings/ai-girlfriend.toml"
    )]
    pub mapping: PathBuf,
    /// Folder for the reports and the dead-letter file.
    #[arg(long, value_name = "DIR", default_value = "singletable-demo")]
    pub out: PathBuf,
    /// Keep serving the embedded DynamoDB afterwards, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Port of the embedded DynamoDB (default: a free one; 8000 with --serve).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}
