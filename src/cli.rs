//! The command line as the user types it: subcommands, flags, defaults.
//!
//! Only parsing and the help text live here; nothing is validated against
//! AWS and nothing is built. `app` turns these into a plan and runs it.
//! `--help` therefore returns before any SDK setup.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::report::Allowance;

/// What the exit codes mean, for every --help.
const EXIT_CODES: &str = "Exit codes:
  0  success: everything read was migrated, filtered by a rule, or dead-lettered
     within --allow-dead-letters (verify: the target matches; follow --until-caught-up:
     caught up; cutover-check: GO)
  1  verify (or cutover-check's sample) found differences
  2  the tool failed or was interrupted (an error, a stall, Ctrl-C, SIGTERM, SIGHUP)
  3  migrate, replay or follow finished, but items were not migrated (dead letters
     beyond --allow-dead-letters); the summary says which, and the dead-letter file
     lists them (cutover-check: changes not applied yet)";

/// Migrate a one-table-per-entity DynamoDB layout into a single-table design,
/// and prove it did.
#[derive(Debug, Parser)]
#[command(
    name = "singletable",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log what happens to stderr: -v every phase, file, rate change and
    /// retry, with the endpoint; -vv more. RUST_LOG (e.g.
    /// `singletable=debug`) overrides. --quiet keeps only errors.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

impl Cli {
    /// Whether the command was asked to be quiet.
    pub fn quiet(&self) -> bool {
        match &self.command {
            Command::Plan(a) => a.aws.quiet,
            Command::Migrate(a) => a.aws.quiet,
            Command::Replay(a) => a.aws.quiet,
            Command::Preview(a) => a.aws.quiet,
            Command::Verify(a) => a.aws.quiet,
            Command::DemoData(a) => a.aws.quiet,
            Command::Demo(a) => a.quiet,
            Command::Follow(a) => a.aws.quiet,
            Command::CutoverCheck(a) => a.aws.quiet,
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Forecast the whole migration (dead letters, collisions, sizes, write
    /// units, hot partitions, duration, cost); writes nothing.
    Plan(PlanArgs),
    /// Copy every legacy table through the mapping into the target table.
    #[command(after_help = EXIT_CODES)]
    Migrate(MigrateArgs),
    /// Apply the legacy tables' DynamoDB Streams to the target until cutover
    /// (after a bulk copy; `migrate --then-follow` does both).
    #[command(after_help = EXIT_CODES)]
    Follow(FollowArgs),
    /// Whether the target may take over: the follow's lag, the changes the
    /// streams hold beyond it, and a sampled verify; GO or NO-GO.
    #[command(after_help = EXIT_CODES)]
    CutoverCheck(CutoverArgs),
    /// Where a migration stands (running, killed, stopped or finished), from its state file.
    Status(StatusArgs),
    /// Run reports: `report merge` makes one of a sharded run's.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Write the items of a dead-letter file again, once their cause is fixed.
    #[command(after_help = EXIT_CODES)]
    Replay(ReplayArgs),
    /// Show what the first items of each legacy table would become; writes nothing.
    Preview(PreviewArgs),
    /// Prove the target holds what the mapping makes of the source.
    #[command(args_conflicts_with_subcommands = true)]
    Verify(VerifyArgs),
    /// Create the seven legacy tables and fill them with generated data.
    DemoData(DemoDataArgs),
    /// Run the whole job on an embedded DynamoDB: demo data, preview, plan, migrate, verify.
    Demo(DemoArgs),
    /// The built-in mapping.
    #[command(subcommand)]
    Mapping(MappingCommand),
    /// The target table as code, from the mapping: AWS CLI commands,
    /// Terraform, CloudFormation or the API requests as JSON (keys,
    /// attribute definitions, indexes, billing, TTL, point-in-time recovery).
    Table(TableArgs),
    /// The least-privilege IAM policy of a job: exactly the DynamoDB and S3
    /// actions it calls, on the mapping's legacy tables (and their
    /// streams), the target (its indexes, its imports), and the S3 exports
    /// and import prefix given; for an import, also what ImportTable does
    /// as the caller (reads the files, writes its logs).
    IamPolicy(IamPolicyArgs),
    /// Print a shell completion script: `singletable completions bash >
    /// /etc/bash_completion.d/singletable` (zsh, fish, elvish, powershell too).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    /// Send every request (DynamoDB, its Streams, S3) here instead of AWS.
    /// Per service: AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_DYNAMODB_STREAMS,
    /// AWS_ENDPOINT_URL_S3; for all: AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Seconds one attempt of one request may take before it is retried.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The mapping and the target.
#[derive(Debug, Clone, Args)]
pub struct MappingArgs {
    /// The mapping: a .toml file, or a folder of them (default: the shipped
    /// ai-girlfriend mapping, built in; `singletable mapping show` prints it).
    #[arg(long, value_name = "PATH")]
    pub mapping: Option<PathBuf>,
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
    /// Read a table's exports even when they do not chain: a gap between the
    /// full export and the first incremental (or between incrementals), an
    /// overlap, an incremental older than the full export. Each is recorded
    /// in the report.
    #[arg(long)]
    pub accept_export_gaps: bool,
    /// Folder where S3 data files are downloaded and proven (MD5, record
    /// count) before any record of them is written (default: the system's
    /// temp folder).
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// The most the spool holds at once, in MiB (a download waits for room).
    #[arg(long, value_name = "MIB", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub spool_limit_mb: u32,
}

/// How the legacy tables are read.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// Parallel Scan segments per table (default: one per 2 GB, at least 4
    /// for tables over 5,000 items).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub segments: Option<u32>,
    /// Scan segments and export files read at once, across all tables.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub read_concurrency: u32,
    /// Strongly consistent reads (twice the read cost).
    #[arg(long)]
    pub consistent_read: bool,
    /// Read units per second per table (default: unlimited).
    #[arg(long, value_name = "RCU", value_parser = clap::value_parser!(u32).range(1..))]
    pub read_rate: Option<u32>,
    /// Items per Scan page. Small pages keep memory low (a full 1 MB page of
    /// small items takes several MB in memory) and cost no extra read units.
    #[arg(long, value_name = "N", default_value_t = 250, value_parser = clap::value_parser!(i32).range(1..))]
    pub page_size: i32,
    /// Retry throttling, 5xx errors, timeouts and resets for as long as reads
    /// and writes make progress; stop (exit 2) when none has succeeded for
    /// this long. E.g. 10m, 90s, 1h.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub stall_timeout: Duration,
}

impl Default for ScanArgs {
    /// The defaults clap gives (for commands that do not scan).
    fn default() -> ScanArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            scan: ScanArgs,
        }
        Only::parse_from(["singletable"]).scan
    }
}

/// `--max-lag`: a duration of at least 500 ms.
fn parse_max_lag(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(500) {
        return Err(format!(
            "{text:?}: at least 500ms (a shard's tip is polled at most four times a second)"
        ));
    }
    Ok(d)
}

/// A duration: a number and a unit (ms, s, m, h); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 10m, 90s or 500ms"))?;
    let seconds = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use ms, s, m or h"
            ))
        }
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("{text:?}: a duration must be more than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// How items are written to the target (migrate and replay).
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// Create the target table from the mapping if it does not exist.
    #[arg(long)]
    pub create_table: bool,
    /// With --create-table: pre-warm the new table and each index for this
    /// many write units per second (WarmThroughput, billed once; `plan`
    /// suggests a value). A new on-demand table starts at 4,000.
    #[arg(long, value_name = "WCU", requires = "create_table", value_parser = clap::value_parser!(u64).range(1..))]
    pub warm_write_units: Option<u64>,
    /// With --warm-write-units: also pre-warm reads (units per second).
    #[arg(long, value_name = "RCU", requires = "warm_write_units", value_parser = clap::value_parser!(u64).range(1..))]
    pub warm_read_units: Option<u64>,
    /// Write the run report (JSON) here.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub rate: RateArgs,
    /// How often the achieved write rate is sampled for the report.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, hide = true)]
    pub rate_sample_interval: Duration,
    /// Without a terminal (nohup, cron, Kubernetes, CI): print a progress
    /// line to stderr this often (not with --quiet). E.g. 30s, 5m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub progress_interval: Duration,
}

/// How fast a job writes: migrate's, replay's and a repair's.
#[derive(Debug, Clone, Default, Args)]
pub struct RateArgs {
    /// Items written per second at most: a ceiling for the adaptive rate
    /// (default: none).
    #[arg(long, value_name = "ITEMS", value_parser = clap::value_parser!(u32).range(1..))]
    pub write_rate: Option<u32>,
    /// Write units per second at most, counting each index an item lands in:
    /// a ceiling for the adaptive rate, which halves on every throttle and
    /// climbs back while writes succeed (default: no ceiling).
    #[arg(long, value_name = "WCU", value_parser = clap::value_parser!(u32).range(1..))]
    pub write_units: Option<u32>,
    /// BatchWriteItem calls in flight at most (fewer while throttled;
    /// default 8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_in_flight: Option<u32>,
    /// Dead letters the run may have and still exit 0: a count (10) or a
    /// share of the items read (0.5%); default 0. More gives exit 3.
    #[arg(long, value_name = "N|N%")]
    pub allow_dead_letters: Option<Allowance>,
}

impl RateArgs {
    /// Any of them given.
    pub fn given(&self) -> bool {
        self.write_rate.is_some()
            || self.write_units.is_some()
            || self.max_in_flight.is_some()
            || self.allow_dead_letters.is_some()
    }
}

/// `verify --full --repair` and its options.
#[derive(Debug, Clone, Default, Args)]
pub struct RepairArgs {
    /// With --full: once the differences are narrowed to exact keys, put
    /// the item the mapping makes for every missing or changed one and
    /// delete every extra key no source record makes (never target items
    /// of entity types the mapping does not own: see --repair-orphans),
    /// through migrate's rate-limited sink and dead-letter file; then
    /// verify in full again. Exit 0 when the target then matches.
    #[arg(long, requires = "full")]
    pub repair: bool,
    /// With --repair: list what would be done (in the repairs file and the
    /// report); write nothing.
    #[arg(long, requires = "repair")]
    pub dry_run: bool,
    /// With --repair: also delete target items of no entity of the mapping
    /// (orphans), which are otherwise reported and kept.
    #[arg(long, requires = "repair")]
    pub repair_orphans: bool,
    /// With --repair: every repaired key, what was done and why, one JSON
    /// line each.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "singletable-repairs.jsonl",
        requires = "repair"
    )]
    pub repairs: PathBuf,
    /// With --repair: where the items that cannot be written go.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "singletable-repair-dead-letters.jsonl",
        requires = "repair"
    )]
    pub dead_letter: PathBuf,
    #[command(flatten)]
    pub rate: RateArgs,
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
    #[command(flatten)]
    pub write: WriteArgs,
    /// Write every item not migrated here, one JSON object a line: dead
    /// letters, and items a stopped run did not write. A resumed run
    /// appends to it.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "singletable-dead-letters.jsonl"
    )]
    pub dead_letter: PathBuf,
    /// Do not check the mapping against the first items of each source
    /// (attributes it names that none of them has stop the run).
    #[arg(long)]
    pub skip_data_check: bool,
    /// Keep the run's state here (saved every few seconds and at the end):
    /// where every Scan segment and export file stands, and the counters,
    /// so a killed run can --resume. `singletable status` reads it.
    #[arg(long, value_name = "PATH", default_value = "singletable-state.json")]
    pub state: PathBuf,
    /// Continue the run the state file describes, from where its records
    /// were last acknowledged (the same mapping, sources and target).
    #[arg(long, conflicts_with = "fresh")]
    pub resume: bool,
    /// Start over although the state file holds an unfinished run (it is
    /// replaced, and the dead-letter file truncated).
    #[arg(long)]
    pub fresh: bool,
    /// How often the state file is saved.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, hide = true)]
    pub state_interval: Duration,
    /// Write the items as files for ImportTable instead of writing to the
    /// table: gzip DYNAMODB_JSON under LOCATION/data/, a list of the files
    /// in LOCATION/manifest.json; no write capacity is used. LOCATION is a
    /// local folder, or s3://bucket/prefix/ (written to --spool-dir first,
    /// uploaded once the run has finished). Import LOCATION/data/ into a
    /// new table. Full exports and scans only (ImportTable cannot delete).
    #[arg(long, value_name = "LOCATION", conflicts_with_all = ["resume", "create_table", "warm_write_units"])]
    pub to_import: Option<String>,
    /// Uncompressed bytes of items per import file.
    #[arg(long, value_name = "BYTES", default_value_t = 128 << 20, requires = "to_import",
        value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub import_file_size: u64,
    /// Write the import files although two records map to one target key
    /// (ImportTable keeps one of them at random).
    #[arg(long, requires = "to_import")]
    pub allow_collisions: bool,
    /// With --to-import s3://...: once the files are uploaded, have
    /// ImportTable create the target table from them (the mapping's keys,
    /// indexes and TTL), wait for it, and set its counts beside ours (exit
    /// 3 when they differ). The target must not exist.
    #[arg(long, requires = "to_import")]
    pub import_table: bool,
    /// Follow the legacy tables' streams into the target once the copy has
    /// finished (exit 0): each stream from the copy's start (per table, its
    /// export's time or when its scan began), recorded in the state before
    /// anything is read, so no change made during the copy is missed. The
    /// streams must be enabled (NEW_AND_OLD_IMAGES); checked first. The
    /// follow's dead letters and report go beside the copy's, named
    /// *.follow.*. Runs until a signal, or see --until-caught-up.
    #[arg(long, conflicts_with = "to_import")]
    pub then_follow: bool,
    #[command(flatten)]
    pub until: UntilArgs,
    #[command(flatten)]
    pub shard: ShardArgs,
}

/// One process's share of a run spread over several.
#[derive(Debug, Clone, Args)]
pub struct ShardArgs {
    /// Run shard I of N (I from 0): the Scan segments (their count made a
    /// multiple of N) and export data files whose number modulo N is I
    /// (replay: the dead-letter lines whose legacy key hashes to I).
    /// Its files (state, report, dead letters) get `.shard-I-of-N` in
    /// their names; `report merge` (migrate) or `verify merge` (verify
    /// --full) makes one of the N. Rate limits (--write-units,
    /// --write-rate, --read-rate) are this shard's share. A migrate's
    /// incremental round starts once every shard's state (beside this
    /// one's) shows the round before it done.
    #[arg(long, value_name = "I/N", conflicts_with = "shards")]
    pub shard: Option<String>,
    /// Run as one of N shards, the index from JOB_COMPLETION_INDEX
    /// (Kubernetes Indexed Jobs) or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch
    /// array jobs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub shards: Option<u32>,
}

/// When a follow stops by itself.
#[derive(Debug, Clone, Args)]
pub struct UntilArgs {
    /// Stop once every table is caught up (exit 0): every shard read to its
    /// tip within --max-lag, and every record read applied.
    #[arg(long)]
    pub until_caught_up: bool,
    /// How far behind its stream a table may be and count as caught up:
    /// every change made longer ago than this is applied. E.g. 5s, 500ms
    /// (the least: a shard's tip is polled at most four times a second).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_max_lag)]
    pub max_lag: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct FollowArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub write: WriteArgs,
    /// Where to start in each stream: TRIM_HORIZON (every record the
    /// streams keep: 24 hours), LATEST (changes made from now), or a time
    /// (RFC 3339, e.g. 2026-11-25T21:00:00Z: the time of the export or scan
    /// the target was copied from). Records made more than a minute before
    /// a time are skipped; applying a change again is harmless. Default:
    /// where the state file says (the shards' positions, or the start
    /// `migrate --then-follow` recorded), else TRIM_HORIZON.
    #[arg(long, value_name = "WHERE")]
    pub from: Option<crate::pipeline::follow::StartAt>,
    #[command(flatten)]
    pub until: UntilArgs,
    /// The state file: where every shard stands (its last applied sequence
    /// number), saved every few seconds and at the end; the follow goes on
    /// from there when run again. It may be the bulk copy's.
    #[arg(long, value_name = "PATH", default_value = "singletable-state.json")]
    pub state: PathBuf,
    /// Replace the follow positions the state file holds (start from --from).
    #[arg(long)]
    pub fresh: bool,
    /// Write every change not applied here, one JSON object a line.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "singletable-dead-letters.follow.jsonl"
    )]
    pub dead_letter: PathBuf,
    /// Stop (exit 2) when no read or write has succeeded for this long.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub stall_timeout: Duration,
    /// How often the state file is saved.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, hide = true)]
    pub state_interval: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// The state file of the follow.
    #[arg(long, value_name = "PATH", default_value = "singletable-state.json")]
    pub state: PathBuf,
    /// While a follow runs: the most lag it may allow and still give GO
    /// (its own --max-lag must be no more).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub max_lag: Duration,
    /// Records compared attribute by attribute per entity.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub sample: u32,
    /// Seed of the sample: the same seed picks the same items.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Write the check (JSON) here.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    #[command(flatten)]
    pub sources: SourceArgs,
    #[command(flatten)]
    pub scan: ScanArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Write the plan here (JSON), and a Markdown copy beside it (the same
    /// name ending in .md).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// List every record that would be dead-lettered here, in migrate's
    /// dead-letter format.
    #[arg(long, value_name = "PATH")]
    pub dead_letter: Option<PathBuf>,
    /// The write rate the duration is forecast at, in write units per
    /// second (a new on-demand table takes 4,000 at once).
    #[arg(long, value_name = "WCU", default_value_t = 4000, value_parser = clap::value_parser!(u64).range(1..))]
    pub write_units: u64,
    /// Hot partition-key values listed per table and index.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub top: u32,
    /// Collisions listed in full (all are counted).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_listed: u32,
    /// Folder for the temporary files that keep memory flat (collisions,
    /// partition-key sums); removed at the end (default: the system's temp folder).
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Price, in US dollars, of a million on-demand write request units
    /// (us-east-1 list price seen in 2025).
    #[arg(long, value_name = "USD", default_value_t = 0.625)]
    pub price_write_million: f64,
    /// Price of a million on-demand read request units.
    #[arg(long, value_name = "USD", default_value_t = 0.125)]
    pub price_read_million: f64,
    /// Price of one provisioned write capacity unit for an hour.
    #[arg(long, value_name = "USD", default_value_t = 0.00065)]
    pub price_wcu_hour: f64,
    /// Price of ImportTable per GB of uncompressed data.
    #[arg(long, value_name = "USD", default_value_t = 0.15)]
    pub price_import_gb: f64,
    /// Price of a full export per GB of table.
    #[arg(long, value_name = "USD", default_value_t = 0.10)]
    pub price_export_gb: f64,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Without a terminal: print a progress line to stderr this often
    /// (not with --quiet).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub progress_interval: Duration,
    #[command(flatten)]
    pub shard: ShardArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TableArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// The form to print.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "aws-cli")]
    pub format: TableFormat,
}

#[derive(Debug, Clone, Args)]
pub struct IamPolicyArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// The job the policy is for (import: `migrate --to-import s3://...
    /// --import-table`).
    #[arg(long, value_enum, value_name = "JOB")]
    pub job: PolicyJob,
    /// The region in the ARNs (default: any).
    #[arg(long, value_name = "REGION", default_value = "*")]
    pub region: String,
    /// The account in the ARNs (default: any).
    #[arg(long, value_name = "ID", default_value = "*")]
    pub account: String,
    /// The job creates the target (`migrate --create-table`).
    #[arg(long)]
    pub create_table: bool,
    /// An export location the job reads (s3://bucket/prefix/), repeatable;
    /// `migrate` and `plan` then scan no legacy table.
    #[arg(long = "export", value_name = "S3-LOCATION")]
    pub exports: Vec<String>,
    /// `--job import`: where the import files are written
    /// (`migrate --to-import s3://bucket/prefix/ --import-table`).
    #[arg(long, value_name = "S3-LOCATION", required_if_eq("job", "import"))]
    pub to_import: Option<String>,
    /// `--job verify`: the verification runs the access patterns
    /// (`verify --access-patterns`), which query the target and its indexes.
    #[arg(long, conflicts_with = "repair")]
    pub access_patterns: bool,
    /// `--job verify`: the verification repairs (`verify --full --repair`),
    /// which writes the target.
    #[arg(long)]
    pub repair: bool,
}

/// The jobs `iam-policy` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyJob {
    Migrate,
    Verify,
    Plan,
    Follow,
    // `migrate --to-import s3://... --import-table`.
    Import,
}

/// How `singletable table` prints the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    /// `aws dynamodb create-table ...` and the commands after it.
    AwsCli,
    /// An `aws_dynamodb_table` resource.
    Terraform,
    /// A template with an `AWS::DynamoDB::Table`.
    Cloudformation,
    /// The API requests (CreateTable, UpdateTimeToLive, UpdateContinuousBackups).
    Json,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ReportCommand {
    /// One report of the reports of every shard of a run (`migrate --shard
    /// I/N --report ...`): counts added per entity and reconciled again,
    /// the verdict judged on the whole. Refuses reports of other runs, a
    /// shard twice, a shard missing. Exits with the merged verdict.
    #[command(after_help = EXIT_CODES)]
    Merge(ReportMergeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReportMergeArgs {
    /// The shards' run reports (JSON).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Write the merged report (JSON) here.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MappingCommand {
    /// Print the shipped mapping (built into the binary): a start for your own.
    Show,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The state file of the run.
    #[arg(long, value_name = "PATH", default_value = "singletable-state.json")]
    pub state: PathBuf,
    /// Print the state as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub write: WriteArgs,
    /// The dead-letter file to re-drive: items that failed at the transform
    /// are transformed again with the mapping, items that failed at the
    /// write (or were not written) are written again as they are.
    #[arg(long, value_name = "FILE")]
    pub dead_letter: PathBuf,
    /// Where what still fails goes (default: FILE with .replay before its
    /// extension). Truncated at the start.
    #[arg(long, value_name = "PATH")]
    pub still_failing: Option<PathBuf>,
    /// Stop (exit 2) when no write has succeeded for this long.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub stall_timeout: Duration,
    #[command(flatten)]
    pub shard: ShardArgs,
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
    #[arg(long, short = 'n', value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Do not check the mapping against the first items of each source.
    #[arg(long)]
    pub skip_data_check: bool,
    /// Cut values longer than this many characters (their length is shown).
    #[arg(long, value_name = "CHARS", default_value_t = 120, value_parser = clap::value_parser!(u32).range(8..))]
    pub max_value_width: u32,
    /// Print the records and what they become as JSON on stdout.
    #[arg(long)]
    pub json: bool,
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
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..), conflicts_with_all = ["full", "sample_rate"])]
    pub sample: u32,
    /// Compare this share of each entity's records instead (0 to 1),
    /// checked as the source streams by, in flat memory.
    #[arg(long, value_name = "R", conflicts_with = "full")]
    pub sample_rate: Option<f64>,
    /// Compare every record: digests of both sides in one pass each,
    /// narrowed to the exact missing, extra and changed keys where they differ.
    #[arg(long)]
    pub full: bool,
    /// Seed of the sample: the same seed picks the same items.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "full")]
    pub seed: u64,
    /// Run the mapping's access patterns (`[[access_pattern]]`: the
    /// application's queries) against the target, each for a sample of
    /// values from the source, and check every answer holds exactly the
    /// items the source implies, in the declared order. Exit 1 when one
    /// differs.
    #[arg(long, conflicts_with_all = ["full", "sample_rate", "shard"])]
    pub access_patterns: bool,
    /// With --access-patterns: partition values queried per pattern.
    #[arg(long, value_name = "N", default_value_t = 100, requires = "access_patterns", value_parser = clap::value_parser!(u32).range(1..))]
    pub pattern_sample: u32,
    /// With --access-patterns: items compared per partition value, its
    /// first in the declared order.
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "access_patterns", value_parser = clap::value_parser!(u32).range(1..))]
    pub pattern_items: u32,
    /// Write the verification report here (JSON), and a Markdown copy beside
    /// it (the same name ending in .md).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// With --full: the most records of both sides held at once to name
    /// differences (more: the differing buckets are split again first; a
    /// plain verification counts what is left as unresolved, a repair
    /// takes it in further rounds, each a read of both sides).
    #[arg(long, value_name = "N", default_value_t = crate::verify::full::COLLECT_LIMIT, requires = "full", value_parser = clap::value_parser!(u64).range(1..))]
    pub collect_limit: u64,
    /// Mismatches listed in full.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_listed: u32,
    /// On the terminal, cut values longer than this many characters (their
    /// length is shown; the reports keep them whole).
    #[arg(long, value_name = "CHARS", default_value_t = 120, value_parser = clap::value_parser!(u32).range(8..))]
    pub max_value_width: u32,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub shard: ShardArgs,
    #[command(flatten)]
    pub repair: RepairArgs,
    #[command(subcommand)]
    pub command: Option<VerifyCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum VerifyCommand {
    /// The verdict of a full verification run as shards (`verify --full
    /// --shard I/N --report ...` on each): their bucket digests added up.
    /// Refuses digests of other runs, a shard twice, a shard missing.
    /// Exit 0 when every bucket agrees, 1 when some differ (naming the
    /// keys takes `verify --full` on one host).
    Merge(VerifyMergeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct VerifyMergeArgs {
    /// The shards' digest files.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Write the merged verification report here (JSON), and a Markdown
    /// copy beside it.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// About this many items in all, over the seven tables.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub scale: u32,
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
    /// Delete and recreate legacy tables that already hold items (without
    /// it, such tables are refused rather than mixed with a second dataset).
    #[arg(long)]
    pub replace: bool,
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
    /// The mapping to migrate with (default: the shipped one, built in).
    #[arg(long, value_name = "PATH")]
    pub mapping: Option<PathBuf>,
    /// Folder for the reports and the dead-letter file.
    #[arg(long, value_name = "DIR", default_value = "singletable-demo")]
    pub out: PathBuf,
    /// Zero downtime: the demo application keeps writing to the legacy
    /// tables (their streams enabled) while the copy runs; then migrate
    /// --then-follow follows the streams until caught up, with the lag
    /// shown, and cutover-check gives its GO or NO-GO.
    #[arg(long)]
    pub follow: bool,
    /// Keep serving the embedded DynamoDB afterwards, until Ctrl-C (or
    /// SIGTERM, SIGHUP).
    #[arg(long)]
    pub serve: bool,
    /// Port of the embedded DynamoDB (default: a free one; 8000 with --serve).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}
