//! `singletable table`: the target table as code, from the mapping.
//!
//! One description of the table (keys, attribute definitions, indexes,
//! billing, TTL, point-in-time recovery) printed four ways: the AWS CLI
//! commands that create it, a Terraform `aws_dynamodb_table` resource, a
//! CloudFormation template, and the API requests as JSON. Every key
//! attribute is a string (`S`), as the mapping's templates render keys.

use serde_json::{json, Value};

use super::TableSpec;

/// The forms a table can be printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    AwsCli,
    Terraform,
    CloudFormation,
    Json,
}

/// The table in `format`.
pub fn render(t: &TableSpec, format: Format) -> String {
    match format {
        Format::AwsCli => aws_cli(t),
        Format::Terraform => terraform(t),
        Format::CloudFormation => pretty(&cloudformation(t)),
        Format::Json => pretty(&requests(t)),
    }
}

fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

/// Every key attribute of the table and its indexes, once each, in order.
fn attributes(t: &TableSpec) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let keys = std::iter::once((&t.partition_key, &t.sort_key))
        .chain(t.indexes.iter().map(|i| (&i.partition_key, &i.sort_key)));
    for (pk, sk) in keys {
        for a in std::iter::once(pk.as_str()).chain(sk.as_deref()) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

fn key_schema(pk: &str, sk: Option<&str>) -> Value {
    let mut keys = vec![json!({"AttributeName": pk, "KeyType": "HASH"})];
    if let Some(sk) = sk {
        keys.push(json!({"AttributeName": sk, "KeyType": "RANGE"}));
    }
    Value::Array(keys)
}

fn indexes(t: &TableSpec) -> Value {
    t.indexes
        .iter()
        .map(|i| {
            json!({
                "IndexName": i.name,
                "KeySchema": key_schema(&i.partition_key, i.sort_key.as_deref()),
                "Projection": {"ProjectionType": i.projection},
            })
        })
        .collect()
}

fn definitions(t: &TableSpec) -> Value {
    attributes(t)
        .into_iter()
        .map(|a| json!({"AttributeName": a, "AttributeType": t.key_type(a).as_str()}))
        .collect()
}

/// The CreateTable request (CloudFormation's properties have its shape).
fn create_table(t: &TableSpec) -> Value {
    let mut create = json!({
        "TableName": t.name,
        "AttributeDefinitions": definitions(t),
        "KeySchema": key_schema(&t.partition_key, t.sort_key.as_deref()),
        "BillingMode": t.billing_mode,
    });
    if !t.indexes.is_empty() {
        create["GlobalSecondaryIndexes"] = indexes(t);
    }
    create
}

/// The CreateTable request, and the calls that follow it.
fn requests(t: &TableSpec) -> Value {
    let mut out = json!({ "CreateTable": create_table(t) });
    if let Some(ttl) = &t.ttl_attribute {
        out["UpdateTimeToLive"] = json!({
            "TableName": t.name,
            "TimeToLiveSpecification": {"AttributeName": ttl, "Enabled": true},
        });
    }
    if t.point_in_time_recovery {
        out["UpdateContinuousBackups"] = json!({
            "TableName": t.name,
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
        });
    }
    out
}

fn aws_cli(t: &TableSpec) -> String {
    let mut out = format!(
        "aws dynamodb create-table \\\n  --table-name {} \\\n  --attribute-definitions",
        t.name
    );
    for a in attributes(t) {
        let ty = t.key_type(a).as_str();
        out.push_str(&format!(" \\\n    AttributeName={a},AttributeType={ty}"));
    }
    out.push_str(&format!(
        " \\\n  --key-schema \\\n    AttributeName={},KeyType=HASH",
        t.partition_key
    ));
    if let Some(sk) = &t.sort_key {
        out.push_str(&format!(" \\\n    AttributeName={sk},KeyType=RANGE"));
    }
    if !t.indexes.is_empty() {
        let gsi = serde_json::to_string_pretty(&indexes(t)).unwrap_or_default();
        out.push_str(&format!(
            " \\\n  --global-secondary-indexes '{}'",
            gsi.replace('\n', "\n    ")
        ));
    }
    out.push_str(&format!(" \\\n  --billing-mode {}\n", t.billing_mode));
    out.push_str(&format!(
        "aws dynamodb wait table-exists --table-name {}\n",
        t.name
    ));
    if let Some(ttl) = &t.ttl_attribute {
        out.push_str(&format!(
            "aws dynamodb update-time-to-live --table-name {} \\\n  --time-to-live-specification Enabled=true,AttributeName={ttl}\n",
            t.name
        ));
    }
    if t.point_in_time_recovery {
        out.push_str(&format!(
            "aws dynamodb update-continuous-backups --table-name {} \\\n  --point-in-time-recovery-specification PointInTimeRecoveryEnabled=true\n",
            t.name
        ));
    }
    out
}

/// A Terraform resource name from the table's name.
fn resource_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    match s.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => s,
        _ => format!("t_{s}"),
    }
}

fn terraform(t: &TableSpec) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = format!(
        "resource \"aws_dynamodb_table\" {} {{\n  name         = {}\n  billing_mode = {}\n  hash_key     = {}\n",
        q(&resource_name(&t.name)),
        q(&t.name),
        q(&t.billing_mode),
        q(&t.partition_key)
    );
    if let Some(sk) = &t.sort_key {
        out.push_str(&format!("  range_key    = {}\n", q(sk)));
    }
    for a in attributes(t) {
        out.push_str(&format!(
            "\n  attribute {{\n    name = {}\n    type = {}\n  }}\n",
            q(a),
            q(t.key_type(a).as_str())
        ));
    }
    for i in &t.indexes {
        out.push_str(&format!(
            "\n  global_secondary_index {{\n    name            = {}\n    hash_key        = {}\n",
            q(&i.name),
            q(&i.partition_key)
        ));
        if let Some(sk) = &i.sort_key {
            out.push_str(&format!("    range_key       = {}\n", q(sk)));
        }
        out.push_str(&format!(
            "    projection_type = {}\n  }}\n",
            q(&i.projection)
        ));
    }
    if let Some(ttl) = &t.ttl_attribute {
        out.push_str(&format!(
            "\n  ttl {{\n    attribute_name = {}\n    enabled        = true\n  }}\n",
            q(ttl)
        ));
    }
    if t.point_in_time_recovery {
        out.push_str("\n  point_in_time_recovery {\n    enabled = true\n  }\n");
    }
    out.push_str("}\n");
    out
}

fn cloudformation(t: &TableSpec) -> Value {
    let mut props = create_table(t);
    if let Some(ttl) = &t.ttl_attribute {
        props["TimeToLiveSpecification"] = json!({"AttributeName": ttl, "Enabled": true});
    }
    if t.point_in_time_recovery {
        props["PointInTimeRecoverySpecification"] = json!({"PointInTimeRecoveryEnabled": true});
    }
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("{}, from the singletable mapping", t.name),
        "Resources": {
            resource_name(&t.name).replace('_', ""): {
                "Type": "AWS::DynamoDB::Table",
                "Properties": props,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> TableSpec {
        crate::mapping::Mapping::shipped().table
    }

    #[test]
    fn the_shipped_table_prints_as_the_seed_gives_it() {
        let t = shipped();
        assert_eq!(
            attributes(&t),
            ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
        );
        let tf = render(&t, Format::Terraform);
        for line in [
            "resource \"aws_dynamodb_table\" \"ai_girlfriend_table\" {",
            "  hash_key     = \"pk\"",
            "  range_key    = \"sk\"",
            "    hash_key        = \"gsi2pk\"",
            "  point_in_time_recovery {",
            "    attribute_name = \"ttl\"",
        ] {
            assert!(tf.contains(line), "{line}\n{tf}");
        }
        assert_eq!(tf.matches('{').count(), tf.matches('}').count(), "{tf}");
        let cfn: Value = serde_json::from_str(&render(&t, Format::CloudFormation)).unwrap();
        let props = &cfn["Resources"]["aigirlfriendtable"]["Properties"];
        assert_eq!(props["GlobalSecondaryIndexes"][1]["IndexName"], "gsi2");
        assert_eq!(props["BillingMode"], "PAY_PER_REQUEST");
        assert_eq!(
            props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            true
        );
        let api: Value = serde_json::from_str(&render(&t, Format::Json)).unwrap();
        assert_eq!(api["CreateTable"]["KeySchema"][1]["KeyType"], "RANGE");
        assert_eq!(
            api["UpdateTimeToLive"]["TimeToLiveSpecification"]["AttributeName"],
            "ttl"
        );
        let cli = render(&t, Format::AwsCli);
        assert!(
            cli.contains("AttributeName=gsi2sk,AttributeType=S"),
            "{cli}"
        );
        assert!(cli.contains("update-continuous-backups"), "{cli}");
    }

    #[test]
    fn key_types_print_in_every_form() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("mappings/examples/discriminated.toml");
        let t = crate::mapping::Mapping::load(&path).unwrap().table;
        let cli = render(&t, Format::AwsCli);
        assert!(cli.contains("AttributeName=seq,AttributeType=N"), "{cli}");
        assert!(cli.contains("AttributeName=pk,AttributeType=S"), "{cli}");
        let tf = render(&t, Format::Terraform);
        assert!(tf.contains("name = \"seq\"\n    type = \"N\""), "{tf}");
        let api: Value = serde_json::from_str(&render(&t, Format::Json)).unwrap();
        let defs = api["CreateTable"]["AttributeDefinitions"]
            .as_array()
            .unwrap();
        let seq = defs.iter().find(|d| d["AttributeName"] == "seq").unwrap();
        assert_eq!(seq["AttributeType"], "N");
    }
}
