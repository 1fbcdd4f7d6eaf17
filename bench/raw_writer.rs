//! The raw-writer baseline: the least a client on the same SDK can spend to
//! write the same items. It loads the BatchWriteItem bodies the stand-in
//! recorded of a `singletable migrate` run, builds every request up front
//! (not measured), then sends them, 25 items a call and N calls in flight,
//! and prints the CPU and wall time of the sending alone, as JSON.
//!
//!   cargo run --release --example raw-writer -- --endpoint URL --bodies FILE [--in-flight N]

use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};
use futures::StreamExt as _;
use std::io::BufRead as _;
use std::time::Instant;

type Call = (String, Vec<WriteRequest>);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let endpoint = flag("--endpoint").ok_or_else(|| anyhow::anyhow!("--endpoint URL"))?;
    let bodies = flag("--bodies").ok_or_else(|| anyhow::anyhow!("--bodies FILE"))?;
    let in_flight: usize = flag("--in-flight").map_or(Ok(8), |n| n.parse())?;
    let calls = load(&bodies)?;
    let items: usize = calls.iter().map(|(_, w)| w.len()).sum();
    let rt = tokio::runtime::Runtime::new()?;
    let client = rt.block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        aws_sdk_dynamodb::Client::new(&conf)
    });
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    rt.block_on(async {
        let mut sends = futures::stream::iter(calls)
            .map(|(table, writes)| {
                let c = client.clone();
                async move {
                    c.batch_write_item()
                        .request_items(table, writes)
                        .send()
                        .await
                }
            })
            .buffer_unordered(in_flight);
        while let Some(r) = sends.next().await {
            let out = r?;
            if out.unprocessed_items().is_some_and(|u| !u.is_empty()) {
                anyhow::bail!("the stand-in left items unprocessed");
            }
        }
        anyhow::Ok(())
    })?;
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    println!(
        "{}",
        serde_json::json!({"items": items, "cpu_s": cpu, "wall_s": wall, "in_flight": in_flight})
    );
    Ok(())
}

/// Every recorded call's writes, in SDK form, 25 to a call as recorded.
fn load(path: &str) -> anyhow::Result<Vec<Call>> {
    let mut calls = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(path)?).lines() {
        let body: serde_json::Value = serde_json::from_str(&line?)?;
        let Some(tables) = body["RequestItems"].as_object() else {
            continue;
        };
        for (table, writes) in tables {
            let mut call = Vec::new();
            for w in writes.as_array().into_iter().flatten() {
                call.push(write_request(w)?);
            }
            calls.push((table.clone(), call));
        }
    }
    Ok(calls)
}

fn write_request(w: &serde_json::Value) -> anyhow::Result<WriteRequest> {
    use singletable::item::item_from_json;
    if let Some(item) = w.pointer("/PutRequest/Item") {
        let put = PutRequest::builder()
            .set_item(Some(item_from_json(item)?))
            .build()?;
        return Ok(WriteRequest::builder().put_request(put).build());
    }
    let key = w
        .pointer("/DeleteRequest/Key")
        .ok_or_else(|| anyhow::anyhow!("neither a put nor a delete"))?;
    let delete = DeleteRequest::builder()
        .set_key(Some(item_from_json(key)?))
        .build()?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}

/// User plus system CPU of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
