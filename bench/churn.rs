//! The demo application, for benchmarks: it keeps changing the legacy
//! tables (updates, deletes, inserts, sessions moving between users), as
//! fast as it can or at a rate, and prints what it did as JSON.
//!
//!   cargo run --release --example churn -- --endpoint URL --changes M
//!       [--per-second R] [--first-round N] [--probe TARGET-TABLE]
//!
//! It reads the legacy tables first and changes what it finds. Rounds are
//! numbered from `--first-round` (the `revision` its updates set), so a
//! second run makes changes of its own. `--probe` also measures the lag end
//! to end: every 250 ms it stamps a user of its own (`probe-user`) in the
//! users table with the time, and polls the target until the stamp is
//! there; it prints the delays.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use singletable::item::Item;

type Client = aws_sdk_dynamodb::Client;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let endpoint = flag("--endpoint").ok_or_else(|| anyhow::anyhow!("--endpoint URL"))?;
    let wanted: usize = flag("--changes").map_or(Ok(10_000), |n| n.parse())?;
    let per_second: f64 = flag("--per-second").map_or(Ok(0.0), |n| n.parse())?;
    let first: i64 = flag("--first-round").map_or(Ok(2), |n| n.parse())?;
    let probe = flag("--probe");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let opts = singletable::aws::AwsOptions {
            region: Some("us-east-1".into()),
            endpoint_url: Some(endpoint),
            static_credentials: Some(("bench".into(), "bench".into())),
            ..Default::default()
        };
        let client = singletable::aws::dynamodb(&singletable::aws::load(&opts).await);
        let items = legacy(&client).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let user = items.iter().find(|(t, _)| *t == "ai-girlfriend-users");
        let user = user.map(|(_, i)| i.clone()).unwrap_or_default();
        let prober = probe.map(|target| {
            let (client, stop, template) = (client.clone(), stop.clone(), user);
            tokio::spawn(async move { probe_lag(&client, &target, template, &stop).await })
        });
        let started = Instant::now();
        let made = churn(&client, items, (first, wanted, per_second), started).await?;
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let delays = match prober {
            Some(p) => p.await??,
            None => Vec::new(),
        };
        let delays: Vec<String> = delays.iter().map(|d| format!("{d:.4}")).collect();
        println!(
            "{{\"changes\": {made}, \"seconds\": {seconds:.3}, \"probe_delays\": [{}]}}",
            delays.join(", ")
        );
        Ok(())
    })
}

/// Every item of the seven legacy tables (but the probe's).
async fn legacy(client: &Client) -> anyhow::Result<Vec<(&'static str, Item)>> {
    let mut out = Vec::new();
    for (table, _, _) in singletable::demo::LEGACY_TABLES {
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start)
                .send()
                .await?;
            for item in page.items.unwrap_or_default() {
                let probe =
                    matches!(item.get("userId"), Some(AttributeValue::S(u)) if u == "probe-user");
                if !probe {
                    out.push((table, item));
                }
            }
            start = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                break;
            }
        }
    }
    out.sort_by_key(|(t, i)| (*t, format!("{:?}", singletable::item::item_to_json(i))));
    Ok(out)
}

/// Rounds of changes until `wanted` are made, at `per_second` (0: at once).
async fn churn(
    client: &Client,
    mut items: Vec<(&'static str, Item)>,
    (first, wanted, per_second): (i64, usize, f64),
    started: Instant,
) -> anyhow::Result<usize> {
    let mut made = 0usize;
    for round in first.. {
        if made >= wanted {
            break;
        }
        let (changes, updated) =
            singletable::demo::changes_round(&items, round as u64, 0.02, round);
        for chunk in changes.chunks(10) {
            if made >= wanted {
                break;
            }
            // One change per key in a round: a chunk's go at once.
            let each = chunk
                .iter()
                .map(|c| singletable::demo::apply(client, std::slice::from_ref(c)));
            futures::future::try_join_all(each).await?;
            made += chunk.len();
            if per_second > 0.0 {
                let due = Duration::from_secs_f64(made as f64 / per_second);
                tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
            }
        }
        items = updated;
    }
    Ok(made)
}

/// Stamps `probe-user` with the time every 250 ms and waits for each stamp
/// to reach the target; the delays in seconds.
async fn probe_lag(
    client: &Client,
    target: &str,
    template: Item,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<f64>> {
    let mut delays = Vec::new();
    let mut user = template;
    user.insert("userId".into(), AttributeValue::S("probe-user".into()));
    while !stop.load(Ordering::Relaxed) {
        let stamp = chrono::Utc::now().timestamp_millis();
        user.insert("revision".into(), AttributeValue::N(stamp.to_string()));
        client
            .put_item()
            .table_name("ai-girlfriend-users")
            .set_item(Some(user.clone()))
            .send()
            .await?;
        let sent = Instant::now();
        loop {
            let got = client
                .get_item()
                .table_name(target)
                .key("pk", AttributeValue::S("USER#probe-user".into()))
                .key("sk", AttributeValue::S("METADATA".into()))
                .send()
                .await?;
            let seen = got.item.as_ref().and_then(|i| match i.get("revision") {
                Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
                _ => None,
            });
            if seen.is_some_and(|s| s >= stamp) {
                delays.push(sent.elapsed().as_secs_f64());
                break;
            }
            if sent.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("a stamp did not reach {target} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(delays)
}
