//! `singletable iam-policy`: the least privilege each job needs.
//!
//! For a job (`migrate`, `verify`, `plan`, `follow`) this prints an IAM
//! policy with exactly the DynamoDB actions that job calls, on exactly the
//! mapping's legacy tables, their streams, the target and (where a job
//! reads them) its indexes, and the S3 read of the export prefixes given.
//! The lists below follow the calls the code makes; a test runs each job
//! through the recording proxy and checks both ways.

use serde_json::{json, Value};

use super::Mapping;

/// The jobs a policy can be printed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Migrate,
    Verify,
    Plan,
    Follow,
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
    /// then not scanned by `migrate` and `plan`.
    pub exports: Vec<String>,
}

/// The actions a job calls on the legacy tables, their streams and the target.
pub fn actions(
    o: &PolicyOptions,
    ttl: bool,
) -> (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>) {
    let reads_legacy = o.exports.is_empty() || matches!(o.job, Job::Verify | Job::Follow);
    let legacy: Vec<&str> = match (o.job, reads_legacy) {
        (Job::Follow, _) => vec!["dynamodb:DescribeTable"],
        (_, true) => vec!["dynamodb:DescribeTable", "dynamodb:Scan"],
        (_, false) => Vec::new(),
    };
    let streams = match o.job {
        Job::Follow => vec![
            "dynamodb:DescribeStream",
            "dynamodb:GetShardIterator",
            "dynamodb:GetRecords",
        ],
        _ => Vec::new(),
    };
    let mut target = match o.job {
        Job::Migrate | Job::Follow => vec!["dynamodb:DescribeTable", "dynamodb:BatchWriteItem"],
        Job::Verify => vec![
            "dynamodb:DescribeTable",
            "dynamodb:Scan",
            "dynamodb:BatchGetItem",
        ],
        Job::Plan => Vec::new(),
    };
    if o.create_table && o.job == Job::Migrate {
        target.push("dynamodb:CreateTable");
        if ttl {
            target.push("dynamodb:UpdateTimeToLive");
        }
    }
    (legacy, streams, target)
}

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
    let (legacy, streams, target) = actions(o, mapping.table.ttl_attribute.is_some());
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
    add("ReadTheLegacyTables", legacy, tables(""));
    add("ReadTheirStreams", streams, tables("/stream/*"));
    add(
        "TheTarget",
        target,
        vec![arn(&format!("table/{}", mapping.table.name))],
    );
    let (buckets, objects) = s3_resources(&o.exports);
    add("ListTheExports", vec!["s3:ListBucket"], buckets);
    add("ReadTheExports", vec!["s3:GetObject"], objects);
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
    }
}
