//! The verifier: every planted difference is named, in sample and full
//! mode, and nothing that is not a difference is.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::common::*;

fn kinds(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap().to_string(),
                m["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn diff_of<'a>(report: &'a serde_json::Value, key: &str) -> Vec<&'a serde_json::Value> {
    report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["key"] == key)
        .flat_map(|m| m["differences"].as_array().unwrap())
        .collect()
}

#[tokio::test]
async fn sample_and_full_name_every_planted_difference_and_nothing_else() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 600, 17, 0.02).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    migrate_dirty(d, &db.endpoint);
    for mode in [
        &["--sample", "50"][..],
        &["--full"],
        &["--sample-rate", "0.5"],
    ] {
        let (code, report, out) = verify(d, &db.endpoint, mode);
        assert_eq!(code, 0, "{mode:?}: {out}");
        let md = std::fs::read_to_string(d.join("verify.md")).unwrap();
        if mode == ["--full"] {
            // Only a full comparison says MATCH.
            assert_eq!(report["verdict"], "match");
            assert!(
                md.contains("**Verdict: MATCH: every record compared"),
                "{md}"
            );
            assert!(out.contains("message: match: all "), "{out}");
        } else {
            assert_eq!(report["verdict"], "sample-match");
            assert!(md.contains("**Verdict: SAMPLE MATCHED"), "{md}");
            assert!(!out.contains("verdict: MATCH"), "{out}");
        }
    }
    let (_, _, out) = verify(d, &db.endpoint, &["--sample", "50"]);
    let line = out
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("message: sample matched: 50 of ")
        })
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("at 95% confidence, fewer than 5.82% of records differ"),
        "{line}"
    );

    // Plant one of each.
    let t = TARGET;
    delete_target(&c, "USER#user123", "METADATA").await;
    let msg = ("SESSION#session456", "MSG#2024-01-15T14:05:30Z#msg789");
    set_target(&c, msg, "content", s("edited")).await;
    c.update_item()
        .table_name(t)
        .key("pk", s("USER#user123"))
        .key("sk", s("SESSION#session456"))
        .update_expression("SET note = :n")
        .expression_attribute_values(":n", s("added"))
        .send()
        .await
        .unwrap();
    c.put_item()
        .table_name(t)
        .item("pk", s("X#1"))
        .item("sk", s("X"))
        .item("entityType", s("GHOST"))
        .send()
        .await
        .unwrap();
    c.put_item()
        .table_name(t)
        .item("pk", s("USER#ghost"))
        .item("sk", s("METADATA"))
        .item("entityType", s("USER"))
        .send()
        .await
        .unwrap();
    // A changed key: user123's credits moved to another sort key.
    let credits = get(&c, "USER#user123", "CREDITS").await.unwrap();
    c.delete_item()
        .table_name(t)
        .key("pk", s("USER#user123"))
        .key("sk", s("CREDITS"))
        .send()
        .await
        .unwrap();
    let mut moved = credits.clone();
    moved.insert("sk".into(), s("CREDITS2"));
    c.put_item()
        .table_name(t)
        .set_item(Some(moved))
        .send()
        .await
        .unwrap();

    let (code, report, out) = verify(d, &db.endpoint, &["--full"]);
    if std::env::var_os("SHOW_VERIFY").is_some() {
        eprintln!("{out}");
    }
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        kinds(&report),
        vec![
            (
                "changed".into(),
                "pk=SESSION#session456, sk=MSG#2024-01-15T14:05:30Z#msg789".into()
            ),
            (
                "changed".into(),
                "pk=USER#user123, sk=SESSION#session456".into()
            ),
            ("extra".into(), "pk=USER#ghost, sk=METADATA".into()),
            ("extra".into(), "pk=USER#user123, sk=CREDITS2".into()),
            ("missing".into(), "pk=USER#user123, sk=CREDITS".into()),
            ("missing".into(), "pk=USER#user123, sk=METADATA".into()),
        ],
        "{out}"
    );
    let content = diff_of(
        &report,
        "pk=SESSION#session456, sk=MSG#2024-01-15T14:05:30Z#msg789",
    );
    assert_eq!(content.len(), 1);
    assert_eq!(content[0]["attribute"], "content");
    assert_eq!(content[0]["expected"]["S"], "Hello, how are you today?");
    assert_eq!(content[0]["actual"]["S"], "edited");
    let added = diff_of(&report, "pk=USER#user123, sk=SESSION#session456");
    assert_eq!(added[0]["attribute"], "note");
    assert!(added[0]["expected"].is_null());
    assert_eq!(added[0]["actual"]["S"], "added");
    assert_eq!(report["unmapped_entity_types"]["GHOST"], 1);
    let md = std::fs::read_to_string(d.join("verify.md")).unwrap();
    assert!(
        md.contains("**Verdict: DIFFERS**")
            && md.contains("## Orphans")
            && md.contains("`content`: expected"),
        "{md}"
    );
    for e in report["entities"].as_array().unwrap() {
        let d = &e["source_digest"];
        assert!(d["sum"].as_str().unwrap().len() == 32, "{e}");
    }

    // The sample (all records) finds the missing and changed ones too.
    let (code, report, out) = verify(d, &db.endpoint, &["--sample", "100000"]);
    assert_eq!(code, 1, "{out}");
    let k = kinds(&report);
    assert_eq!(
        k.iter().filter(|(kind, _)| kind == "missing").count(),
        2,
        "{out}"
    );
    assert_eq!(
        k.iter().filter(|(kind, _)| kind == "changed").count(),
        2,
        "{out}"
    );
    let (code, report, _) = verify(d, &db.endpoint, &["--sample-rate", "1.0"]);
    assert_eq!(code, 1);
    assert_eq!(kinds(&report).len(), 4);
}

/// Numbers written `0.80` in an export and `0.8` in DynamoDB, string sets
/// in another order, maps in another key order: all equal.
#[tokio::test]
async fn no_false_mismatch_for_number_spelling_set_order_or_map_order() {
    let db = Dynoxide::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo_exports(
        d,
        &db.endpoint,
        "exports.txt",
        &args("--scale 300 --seed 23 --dirty-rate 0 --export-to exp"),
    );
    // Rewrite every export line: sets reversed, numbers with trailing zeros,
    // map keys in reverse order.
    let mut touched = 0;
    for table in std::fs::read_dir(d.join("exp")).unwrap() {
        let base = table.unwrap().path().join("AWSDynamoDB");
        for export in std::fs::read_dir(&base).unwrap() {
            let export = export.unwrap().path();
            for f in std::fs::read_dir(export.join("data")).unwrap() {
                let f = f.unwrap().path();
                let lines = read_gz_lines(&f);
                let out: Vec<String> = lines
                    .iter()
                    .map(|l| restyle(&serde_json::from_str(l).unwrap()).to_string())
                    .collect();
                touched += out.iter().zip(&lines).filter(|(a, b)| a != b).count();
                write_gz_lines(&f, &out);
            }
            refresh_all_checksums(&export);
        }
    }
    assert!(touched > 100, "{touched}");
    let m = mapping_path();
    let o = singletable(
        d,
        &db.endpoint,
        &[
            "migrate",
            "--mapping",
            m.to_str().unwrap(),
            "--exports-file",
            "exports.txt",
            "--create-table",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = client(&db.endpoint).await;
    let p = get(&c, "USER#u000001", "PERSONALITY").await.unwrap();
    let AttributeValue::M(traits) = &p["traits"] else {
        panic!()
    };
    assert!(
        traits
            .values()
            .any(|v| matches!(v, AttributeValue::N(n) if !n.ends_with('0'))),
        "DynamoDB normalised the numbers: {traits:?}"
    );
    for source in [&["--exports-file", "exports.txt"][..], &[]] {
        let (code, report, out) = verify(d, &db.endpoint, &[&["--full"], source].concat());
        assert_eq!(code, 0, "{out}");
        assert_eq!(report["mismatches"].as_array().unwrap().len(), 0);
    }
}

fn restyle(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key("N") => {
            let n = o["N"].as_str().unwrap();
            let styled = if n.contains('.') {
                format!("{n}00")
            } else {
                format!("{n}.0")
            };
            serde_json::json!({ "N": styled })
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("SS") => {
            let mut l = o["SS"].as_array().unwrap().clone();
            l.reverse();
            serde_json::json!({ "SS": l })
        }
        Value::Object(o) => {
            let mut m = serde_json::Map::new();
            for (k, v) in o.iter().rev() {
                m.insert(k.clone(), restyle(v));
            }
            Value::Object(m)
        }
        Value::Array(a) => Value::Array(a.iter().map(restyle).collect()),
        other => other.clone(),
    }
}

/// Two entities that make one key (every user's personality written over
/// their credits): migrate counts the overwritten ones, and `verify --full`
/// names each as a collision across entities, not as a plain missing item.
#[tokio::test]
async fn a_key_two_entities_make_is_a_collision_in_verify_full() {
    let db = Dynoxide::start();
    let c = client(&db.endpoint).await;
    load_legacy(&c, 300, 23, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clash = std::fs::read_to_string(mapping_path()).unwrap().replacen(
        "sk = \"PERSONALITY\"",
        "sk = \"CREDITS\"",
        1,
    );
    assert_ne!(clash, std::fs::read_to_string(mapping_path()).unwrap());
    std::fs::write(d.join("clash.toml"), clash).unwrap();
    let (run, _) = migrate_expect(d, &db.endpoint, "clash.toml", &[], 3);
    let overwritten = run["totals"]["overwritten"].as_u64().unwrap();
    assert!(overwritten >= 20, "{run:#}");
    let v = args("verify --mapping clash.toml --full --max-listed 100000 --report v.json");
    let o = singletable(d, &db.endpoint, &v);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = report(d, "v.json");
    let collisions: Vec<&serde_json::Value> = r["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "collision")
        .collect();
    assert_eq!(
        collisions.len() as u64,
        overwritten,
        "one per record written over"
    );
    for m in &collisions {
        let s = m["source_key"].as_str().unwrap();
        assert!(s.contains("userId=") && s.contains("holds the key"), "{m}");
    }
    assert!(
        r["mismatches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["kind"] != "missing"),
        "no collision is reported as a plain missing item"
    );
}
