//! `singletable iam-policy`: the least privilege each job needs.
//!
//! For a job (`migrate`, `verify`, `plan`, `follow`, `import`) this prints
//! an IAM policy with exactly the DynamoDB and S3 actions that job calls,
//! on exactly the mapping's legacy tables, their streams, the target, its
//! indexes (where a job queries them), its imports, and the S3 prefixes in
//! use. ImportTable also reads the files and writes CloudWatch logs as the
//! caller: those grants are statements of their own (`ImportTable...`),
//! the only actions the tool itself never sends. The lists below follow
//! the calls the code makes; a test runs each job through the recording
//! proxy and checks both ways.

use serde_json::{json, Value};

use super::Mapping;

/// The jobs a policy can be printed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Migrate,
    Verify,
    Plan,
    Follow,
    /// `migrate --to-import s3://... --import-table`.
    Import,
}

/// What the policy is for.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    pub job: Job,
    /// `*` when not given.
    pub region: String,
    pub account: String,
    /// `migrate --create-table`: the target is created (and its TTL set).
    pub create_table: bool,
    /// Export locations read (s3://bucket/prefix/); the legacy tables are
    /// then not scanned by `migrate`, `plan` and `import`.
    pub exports: Vec<String>,
    /// `import`: where the import files are written (s3://bucket/prefix/).
    pub to_import: Option<String>,
    /// `verify --access-patterns`: the target is queried, not scanned.
    pub access_patterns: bool,
    /// `verify --full --repair`: the target is written too.
    pub repair: bool,
}

/// What a job does to the legacy tables, their streams and the target.
pub struct Actions {
    pub legacy: Vec<&'static str>,
    pub streams: Vec<&'static str>,
    pub target: Vec<&'static str>,
    /// On the target's indexes (`verify --access-patterns` queries them).
    pub indexes: Vec<&'static str>,
    /// On the target's imports (DescribeImport).
    pub imports: Vec<&'static str>,
}

/// The actions a job calls (`ttl`, `pitr`: the table has a TTL attribute,
/// point-in-time recovery, which a job creating it turns on).
pub fn actions(o: &PolicyOptions, ttl: bool, pitr: bool) -> Actions {
    let reads_legacy = o.exports.is_empty() || matches!(o.job, Job::Verify | Job::Follow);
    let legacy: Vec<&str> = match (o.job, reads_legacy) {
        (Job::Follow, _) => vec!["dynamodb:DescribeTable"],
        (_, true) => vec!["dynamodb:DescribeTable", "dynamodb:Scan"],
        (_, false) => Vec::new(),
    };
    // A copy by Scan reads the streams of tables that have one, to warn
    // when they changed during the run (`sources::moved`).
    let copies_by_scan = matches!(o.job, Job::Migrate | Job::Import) && reads_legacy;
    let streams = match o.job == Job::Follow || copies_by_scan {
        true => vec![
            "dynamodb:DescribeStream",
            "dynamodb:GetShardIterator",
            "dynamodb:GetRecords",
        ],
        false => Vec::new(),
    };
    let mut indexes = Vec::new();
    let mut imports = Vec::new();
    let mut target = match o.job {
        Job::Migrate | Job::Follow => vec!["dynamodb:DescribeTable", "dynamodb:BatchWriteItem"],
        Job::Verify if o.access_patterns => {
            indexes.push("dynamodb:Query");
            vec!["dynamodb:DescribeTable", "dynamodb:Query"]
        }
        Job::Verify if o.repair => vec![
            "dynamodb:DescribeTable",
            "dynamodb:Scan",
            "dynamodb:BatchGetItem",
            "dynamodb:BatchWriteItem",
        ],
        Job::Verify => vec![
            "dynamodb:DescribeTable",
            "dynamodb:Scan",
            "dynamodb:BatchGetItem",
        ],
        Job::Plan => Vec::new(),
        Job::Import => {
            imports.push("dynamodb:DescribeImport");
            vec!["dynamodb:DescribeTable", "dynamodb:ImportTable"]
        }
    };
    let creates = (o.create_table && o.job == Job::Migrate) || o.job == Job::Import;
    if o.create_table && o.job == Job::Migrate {
        target.push("dynamodb:CreateTable");
    }
    if creates && ttl {
        target.push("dynamodb:UpdateTimeToLive");
    }
    if creates && pitr {
        target.push("dynamodb:UpdateContinuousBackups");
    }
    Actions {
        legacy,
        streams,
        target,
        indexes,
        imports,
    }
}

/// The CloudWatch Logs actions ImportTable takes as the caller.
const IMPORT_LOGS: [&str; 6] = [
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:PutRetentionPolicy",
];

/// The policy document.
pub fn policy(mapping: &Mapping, o: &PolicyOptions) -> Value {
    let arn = |what: &str| format!("arn:aws:dynamodb:{}:{}:{what}", o.region, o.account);
    let mut legacy_tables: Vec<&str> = mapping
        .entities
        .iter()
        .map(|e| e.source_table.as_str())
        .collect();
    legacy_tables.sort();
    legacy_tables.dedup();
    let t = &mapping.table;
    let a = actions(o, t.ttl_attribute.is_some(), t.point_in_time_recovery);
    let mut statements = Vec::new();
    let mut add = |sid: &str, actions: Vec<&str>, resources: Vec<String>| {
        if !actions.is_empty() && !resources.is_empty() {
            statements.push(
                json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}),
            );
        }
    };
    let tables = |suffix: &str| -> Vec<String> {
        legacy_tables
            .iter()
            .map(|t| arn(&format!("table/{t}{suffix}")))
            .collect()
    };
    let target = |suffix: &str| vec![arn(&format!("table/{}{suffix}", mapping.table.name))];
    add("ReadTheLegacyTables", a.legacy, tables(""));
    add("ReadTheirStreams", a.streams, tables("/stream/*"));
    add("TheTarget", a.target, target(""));
    add("QueryItsIndexes", a.indexes, target("/index/*"));
    add("FollowItsImport", a.imports, target("/import/*"));
    let (buckets, objects) = s3_resources(&o.exports);
    add("ListTheExports", vec!["s3:ListBucket"], buckets);
    add("ReadTheExports", vec!["s3:GetObject"], objects);
    if o.job == Job::Import {
        let (bucket, objects) = s3_resources(o.to_import.as_slice());
        add("WriteTheImportFiles", vec!["s3:PutObject"], objects.clone());
        let mut read = bucket;
        read.extend(objects);
        add(
            "ImportTableReadsTheFiles",
            vec!["s3:GetObject", "s3:ListBucket"],
            read,
        );
        let logs = format!(
            "arn:aws:logs:{}:{}:log-group:/aws-dynamodb/*",
            o.region, o.account
        );
        add("ImportTableWritesItsLogs", IMPORT_LOGS.to_vec(), vec![logs]);
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The buckets and the object prefixes of s3:// export locations.
fn s3_resources(exports: &[String]) -> (Vec<String>, Vec<String>) {
    let mut buckets = Vec::new();
    let mut objects = Vec::new();
    for e in exports {
        let Some(rest) = e.strip_prefix("s3://") else {
            continue;
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let b = format!("arn:aws:s3:::{bucket}");
        if !buckets.contains(&b) {
            buckets.push(b);
        }
        objects.push(format!("arn:aws:s3:::{bucket}/{prefix}*"));
    }
    (buckets, objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(job: Job) -> PolicyOptions {
        PolicyOptions {
            job,
            region: "us-east-1".into(),
            account: "123456789012".into(),
            create_table: false,
            exports: Vec::new(),
            to_import: None,
            access_patterns: false,
            repair: false,
        }
    }

    #[test]
    fn each_job_gets_its_actions_on_its_resources() {
        let m = Mapping::shipped();
        let p = policy(&m, &opts(Job::Follow));
        let s = p["Statement"].as_array().unwrap();
        assert_eq!(s[1]["Sid"], "ReadTheirStreams");
        assert_eq!(
            s[1]["Resource"][0],
            "arn:aws:dynamodb:us-east-1:123456789012:table/ai-girlfriend-analytics/stream/*"
        );
        assert_eq!(s.len(), 3, "{p:#}");
        let mut o = opts(Job::Migrate);
        o.exports = vec!["s3://exports/prod/AWSDynamoDB/0123/".into()];
        o.create_table = true;
        let p = policy(&m, &o);
        let sids: Vec<&str> = p["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        assert_eq!(sids, ["TheTarget", "ListTheExports", "ReadTheExports"]);
        assert_eq!(
            p["Statement"][2]["Resource"][0],
            "arn:aws:s3:::exports/prod/AWSDynamoDB/0123/*"
        );
        let target = p["Statement"][0]["Action"].as_array().unwrap();
        assert!(target.contains(&"dynamodb:UpdateTimeToLive".into()));
        let mut o = opts(Job::Import);
        o.to_import = Some("s3://imports/run1/".into());
        let p = policy(&m, &o);
        let s = p["Statement"].as_array().unwrap();
        let sid = |i: usize| s[i]["Sid"].as_str().unwrap();
        assert_eq!(
            (0..s.len()).map(sid).collect::<Vec<_>>(),
            [
                "ReadTheLegacyTables",
                "ReadTheirStreams",
                "TheTarget",
                "FollowItsImport",
                "WriteTheImportFiles",
                "ImportTableReadsTheFiles",
                "ImportTableWritesItsLogs"
            ]
        );
        assert_eq!(s[4]["Resource"][0], "arn:aws:s3:::imports/run1/*");
        assert_eq!(
            s[3]["Resource"][0],
            "arn:aws:dynamodb:us-east-1:123456789012:table/ai-girlfriend-table/import/*"
        );
    }
}
