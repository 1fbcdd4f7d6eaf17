//! Shared test harness: real servers on free loopback ports, the real
//! binary, and a recording, fault-injecting HTTP proxy.
//!
//! dynoxide runs in-process on its own thread and runtime, so tests may
//! block on the binary. moto runs as a child process, killed on drop. The
//! proxy sits between the binary and a backend (dynoxide, or moto's S3),
//! records every BatchWriteItem call, and injects what real AWS does under
//! load and no emulator does on its own: throttling, 500s, resets,
//! UnprocessedItems, latency, a server that never answers, failing Scan
//! pages, S3 bodies cut short; or rejects a batch (ValidationException).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use singletable::item::Item;

pub const TARGET: &str = "ai-girlfriend-table";

pub fn mapping_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/ai-girlfriend.toml")
}

/// The shipped mapping's path, as an argument.
pub fn m() -> String {
    mapping_path().to_str().unwrap().to_string()
}

/// dynoxide, in-process, on a free port, until dropped.
pub struct Dynoxide {
    pub endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dynoxide {
    pub fn start() -> Dynoxide {
        let (tx_addr, rx_addr) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx_addr.send(listener.local_addr().unwrap()).unwrap();
                let db = dynoxide::Database::memory().unwrap();
                let _ = dynoxide::server::serve_with_shutdown(listener, db, async move {
                    let _ = stop_rx.await;
                })
                .await;
            });
        });
        let addr = rx_addr.recv().unwrap();
        Dynoxide {
            endpoint: format!("http://{addr}"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Dynoxide {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// moto server as a child process on a free port, killed on drop.
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is not installed: pip install 'moto[server]' (.ci/run does)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill(); // SIGKILL: moto takes ~20 s to exit on SIGTERM
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An SDK client for the test's own reads and writes.
pub async fn client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let opts = singletable::aws::AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.into()),
        static_credentials: Some(("test".into(), "test".into())),
        ..Default::default()
    };
    singletable::aws::dynamodb(&singletable::aws::load(&opts).await)
}

/// Runs the real binary in `dir` against `endpoint`.
pub fn singletable(dir: &Path, endpoint: &str, args: &[&str]) -> Output {
    singletable_env(dir, &[], &[args, &["--endpoint-url", endpoint]].concat())
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `migrate --create-table` with the shipped mapping and reports in `dir`;
/// asserts success and returns the run report.
pub fn migrate(dir: &Path, endpoint: &str) -> serde_json::Value {
    migrate_with(dir, endpoint, mapping_path().to_str().unwrap())
}

/// `migrate --create-table` of dirty data: it finishes with the dirty rows
/// dead-lettered, so exit 3 (items not migrated); returns the report.
pub fn migrate_dirty(dir: &Path, endpoint: &str) -> serde_json::Value {
    let m = mapping_path();
    let (r, _) = migrate_expect(dir, endpoint, m.to_str().unwrap(), &[], 3);
    assert!(r["totals"]["dead_lettered"].as_u64().unwrap() > 0, "{r:#}");
    r
}

/// `migrate --create-table` with `mapping`; asserts success, returns the report.
pub fn migrate_with(dir: &Path, endpoint: &str, mapping: &str) -> serde_json::Value {
    migrate_expect(dir, endpoint, mapping, &[], 0).0
}

/// `migrate --create-table` with `mapping` and `extra` arguments, reports
/// in `dir`; asserts the exit code and returns the report and the output.
pub fn migrate_expect(
    dir: &Path,
    endpoint: &str,
    mapping: &str,
    extra: &[&str],
    code: i32,
) -> (serde_json::Value, String) {
    let mut args = vec![
        "migrate",
        "--mapping",
        mapping,
        "--create-table",
        "--report",
        "run.json",
        "--dead-letter",
        "dead.jsonl",
    ];
    args.extend_from_slice(extra);
    let o = singletable(dir, endpoint, &args);
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    let r = report(dir, "run.json");
    assert_eq!(r["exit_code"], code, "the report agrees: {r:#}");
    (r, text(&o))
}

/// The dead-letter file `name` in `dir`, a JSON value a line.
pub fn dead_letters(dir: &Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A JSON report the binary wrote in `dir`.
pub fn report(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

/// `verify` with a report in `dir`; returns the exit code and the report.
pub fn verify(dir: &Path, endpoint: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let m = mapping_path();
    let mut args = vec![
        "verify",
        "--mapping",
        m.to_str().unwrap(),
        "--report",
        "verify.json",
    ];
    args.extend_from_slice(extra);
    let o = singletable(dir, endpoint, &args);
    let report = std::fs::read_to_string(dir.join("verify.json"))
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or_default();
    (o.status.code().unwrap_or(-1), report, text(&o))
}

/// Creates the legacy tables and loads the seed-equivalent rows plus a
/// generated dataset.
pub async fn load_legacy(
    c: &aws_sdk_dynamodb::Client,
    scale: usize,
    seed: u64,
    dirty_rate: f64,
) -> Vec<(&'static str, Item)> {
    singletable::demo::create_legacy_tables(c).await.unwrap();
    let (items, _) = singletable::demo::generate(&singletable::demo::DemoOptions {
        scale,
        seed,
        dirty_rate,
    });
    singletable::demo::load(c, &items).await.unwrap();
    items
}

/// Every item of a table, sorted by its DynamoDB JSON.
pub async fn scan_all(c: &aws_sdk_dynamodb::Client, table: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = c
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        out.extend(page.items().iter().cloned());
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    out.sort_by_key(|i| singletable::item::item_to_json(i).to_string());
    out
}

pub fn s(x: &str) -> AttributeValue {
    AttributeValue::S(x.into())
}

pub async fn get(c: &aws_sdk_dynamodb::Client, pk: &str, sk: &str) -> Option<Item> {
    c.get_item()
        .table_name(TARGET)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .send()
        .await
        .unwrap()
        .item
}

/// All pages of a query on an index, in the order DynamoDB returns them.
pub async fn query_index(
    c: &aws_sdk_dynamodb::Client,
    index: &str,
    pk_attr: &str,
    pk: &str,
) -> Vec<Item> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = c
            .query()
            .table_name(TARGET)
            .index_name(index)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", pk_attr)
            .expression_attribute_values(":v", s(pk))
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        out.extend(page.items().iter().cloned());
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    out
}

/// Deletes the target item at (`pk`, `sk`): a difference planted for verify.
pub async fn delete_target(c: &aws_sdk_dynamodb::Client, pk: &str, sk: &str) {
    c.delete_item()
        .table_name(TARGET)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .send()
        .await
        .unwrap();
}

/// Sets `attr` of the target item at (`pk`, `sk`): a planted difference.
pub async fn set_target(
    c: &aws_sdk_dynamodb::Client,
    (pk, sk): (&str, &str),
    attr: &str,
    v: AttributeValue,
) {
    c.update_item()
        .table_name(TARGET)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .update_expression("SET #a = :v")
        .expression_attribute_names("#a", attr)
        .expression_attribute_values(":v", v)
        .send()
        .await
        .unwrap();
}

pub fn str_of<'a>(item: &'a Item, attr: &str) -> &'a str {
    match item.get(attr) {
        Some(AttributeValue::S(s)) => s,
        other => panic!("{attr} is not S: {other:?} in {item:?}"),
    }
}

// ---- the proxy ----

/// One BatchWriteItem call as the proxy saw it.
#[derive(Debug, Clone)]
pub struct BatchCall {
    pub requests: usize,
    pub distinct_keys: usize,
}

/// A transient fault the proxy can answer a call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// 400 ProvisionedThroughputExceededException.
    Throttle,
    /// 500 InternalServerError.
    ServerError,
    /// The connection is closed after the request, with no answer.
    Reset,
    /// Half of the batch is written, the rest answered as UnprocessedItems.
    Unprocessed,
}

/// What the proxy does to the calls it forwards.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// For this many calls, forward only the first half of the requests
    /// and answer the rest as UnprocessedItems.
    pub unprocessed_calls: usize,
    /// Answer ValidationException to any call holding an item whose `pk` is this.
    pub poison_pk: Option<String>,
    /// After this many calls, answer every call ResourceNotFoundException
    /// (the table is gone).
    pub table_gone_after: Option<usize>,
    /// Share of BatchWriteItem calls answered with one of `kinds`, in turn
    /// (evenly spread, not at random).
    pub rate: f64,
    pub kinds: Vec<Fault>,
    /// From BatchWriteItem call number `.0` on, throttle every call for
    /// `.1` (sustained throttling, measured in time, not calls).
    pub throttle_window: Option<(usize, Duration)>,
    throttle_until: Option<Instant>,
    /// Share of Scan calls answered 500 InternalServerError.
    pub scan_error_rate: f64,
    /// Share of DynamoDB Streams calls (DescribeStream, GetShardIterator,
    /// GetRecords) answered LimitExceededException or 500, in turn.
    pub stream_error_rate: f64,
    pub stream_errors_served: usize,
    /// Every Scan call forwarded or failed.
    pub scans: Vec<ScanCall>,
    /// The X-Amz-Target of every DynamoDB (and Streams) call, in order.
    pub targets: Vec<String>,
    /// The request line (`GET /bucket/key?x-id=GetObject HTTP/1.1`) of
    /// every call without a target: S3's.
    pub requests: Vec<String>,
    /// Never answer BatchWriteItem calls.
    pub hang: bool,
    /// Wait up to this many milliseconds (at random) before forwarding a
    /// BatchWriteItem call, so calls overtake each other.
    pub jitter_ms: u64,
    /// Cut short the body of this many GetObject answers of data files.
    pub cut_bodies: usize,
    /// How many of each fault were served.
    pub served: HashMap<Fault, usize>,
    pub scan_errors_served: usize,
    pub bodies_cut: usize,
}

impl Faults {
    /// A fault for BatchWriteItem call number `seen`, if one is due.
    fn pick(&mut self, seen: usize) -> Option<Fault> {
        if let Some((from, length)) = self.throttle_window {
            if seen >= from {
                let until = *self.throttle_until.get_or_insert(Instant::now() + length);
                if Instant::now() < until {
                    return Some(Fault::Throttle);
                }
            }
        }
        // Exactly `rate` of the calls, spread evenly: call n is hit when
        // n * rate passes a whole number.
        let due = (seen as f64 * self.rate).floor() > ((seen - 1) as f64 * self.rate).floor();
        if self.kinds.is_empty() || !due {
            return None;
        }
        let total: usize = self.served.values().sum();
        Some(self.kinds[total % self.kinds.len()])
    }
}

pub struct Proxy {
    pub endpoint: String,
    pub calls: Arc<Mutex<Vec<BatchCall>>>,
    pub faults: Arc<Mutex<Faults>>,
}

/// (table, Segment, TotalSegments) of a Scan call the proxy forwarded.
pub type ScanCall = (String, i64, i64);

impl Proxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`), one thread a connection.
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let (c, f) = (calls.clone(), faults.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (up, c, f) = (upstream.clone(), c.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = serve_connection(conn, &up, &c, &f);
                });
            }
        });
        Proxy {
            endpoint,
            calls,
            faults,
        }
    }

    /// How many of `fault` were served.
    pub fn served(&self, fault: Fault) -> usize {
        let f = self.faults.lock().unwrap();
        f.served.get(&fault).copied().unwrap_or(0)
    }
}

struct Message {
    head: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_message(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Message>> {
    let mut head = String::new();
    if r.read_line(&mut head)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some(Message {
        head: head.trim_end().to_string(),
        headers,
        body,
    }))
}

/// Writes `m`, announcing `announced` bytes of body (its length, unless a
/// cut body is wanted).
fn write_message_as(w: &mut TcpStream, m: &Message, announced: usize) -> std::io::Result<()> {
    let mut out = format!("{}\r\n", m.head);
    for (k, v) in &m.headers {
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("x-amz-crc32") {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("content-length: {announced}\r\n\r\n"));
    w.write_all(out.as_bytes())?;
    w.write_all(&m.body)?;
    w.flush()
}

fn write_message(w: &mut TcpStream, m: &Message) -> std::io::Result<()> {
    write_message_as(w, m, m.body.len())
}

fn header<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A DynamoDB error answer.
fn error_answer(status: &str, kind: &str, message: &str) -> Message {
    let body = format!(r#"{{"__type":"{kind}","message":"{message}"}}"#);
    Message {
        head: format!("HTTP/1.1 {status}"),
        headers: vec![("content-type".into(), "application/x-amz-json-1.0".into())],
        body: body.into_bytes(),
    }
}

/// What to do with one BatchWriteItem call.
enum Verdict {
    Forward,
    /// Forward part, answer the rest as unprocessed.
    Hold(String, Vec<serde_json::Value>),
    Answer(Message),
    Reset,
    Hang,
}

/// Records a BatchWriteItem call and decides its fate.
fn judge_batch(
    req: &mut Message,
    calls: &Mutex<Vec<BatchCall>>,
    faults: &Mutex<Faults>,
) -> Verdict {
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    let (table, reqs) = body["RequestItems"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .map(|(t, r)| (t.clone(), r.as_array().unwrap().clone()))
        .unwrap();
    let keys: std::collections::HashSet<String> = reqs
        .iter()
        .map(|r| {
            let item = if r["PutRequest"].is_null() {
                &r["DeleteRequest"]["Key"]
            } else {
                &r["PutRequest"]["Item"]
            };
            format!("{}|{}", item["pk"], item["sk"])
        })
        .collect();
    let seen = {
        let mut calls = calls.lock().unwrap();
        calls.push(BatchCall {
            requests: reqs.len(),
            distinct_keys: keys.len(),
        });
        calls.len()
    };
    let jitter = faults.lock().unwrap().jitter_ms;
    if jitter > 0 {
        std::thread::sleep(Duration::from_millis(rand::random::<u64>() % jitter));
    }
    let mut f = faults.lock().unwrap();
    if f.hang {
        return Verdict::Hang;
    }
    if f.table_gone_after.is_some_and(|n| seen > n) {
        return Verdict::Answer(error_answer(
            "400 Bad Request",
            "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
            "Requested resource not found",
        ));
    }
    let poisoned = f.poison_pk.as_ref().is_some_and(|p| {
        reqs.iter()
            .any(|r| r["PutRequest"]["Item"]["pk"]["S"] == p.as_str())
    });
    if poisoned {
        return Verdict::Answer(error_answer(
            "400 Bad Request",
            "com.amazon.coral.validate#ValidationException",
            "Injected: item rejected",
        ));
    }
    let mut fault = f.pick(seen);
    if fault.is_none() && f.unprocessed_calls > 0 && reqs.len() > 1 {
        f.unprocessed_calls -= 1;
        fault = Some(Fault::Unprocessed);
    }
    let Some(fault) = fault else {
        return Verdict::Forward;
    };
    if fault == Fault::Unprocessed && reqs.len() < 2 {
        return Verdict::Forward;
    }
    *f.served.entry(fault).or_default() += 1;
    match fault {
        Fault::Throttle => Verdict::Answer(error_answer(
            "400 Bad Request",
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "Injected: throughput exceeded",
        )),
        Fault::ServerError => Verdict::Answer(error_answer(
            "500 Internal Server Error",
            "com.amazonaws.dynamodb.v20120810#InternalServerError",
            "Injected: internal server error",
        )),
        Fault::Reset => Verdict::Reset,
        Fault::Unprocessed => {
            let half = reqs.len() / 2;
            let (send, keep) = reqs.split_at(half);
            let mut new_body = body.clone();
            new_body["RequestItems"][&table] = serde_json::Value::Array(send.to_vec());
            req.body = serde_json::to_vec(&new_body).unwrap();
            Verdict::Hold(table, keep.to_vec())
        }
    }
}

fn serve_connection(
    client: TcpStream,
    upstream: &str,
    calls: &Mutex<Vec<BatchCall>>,
    faults: &Mutex<Faults>,
) -> std::io::Result<()> {
    let mut client_r = BufReader::new(client.try_clone()?);
    let mut client_w = client;
    let up = TcpStream::connect(upstream)?;
    let mut up_r = BufReader::new(up.try_clone()?);
    let mut up_w = up;
    while let Some(mut req) = read_message(&mut client_r)? {
        let target = header(&req, "x-amz-target").unwrap_or_default().to_string();
        if target.is_empty() {
            faults.lock().unwrap().requests.push(req.head.clone());
        } else {
            faults.lock().unwrap().targets.push(target.clone());
        }
        let mut held_back: Option<(String, Vec<serde_json::Value>)> = None;
        if target.ends_with("BatchWriteItem") {
            match judge_batch(&mut req, calls, faults) {
                Verdict::Forward => {}
                Verdict::Hold(table, keep) => held_back = Some((table, keep)),
                Verdict::Answer(resp) => {
                    write_message(&mut client_w, &resp)?;
                    continue;
                }
                Verdict::Reset => {
                    let _ = client_w.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
                Verdict::Hang => loop {
                    std::thread::sleep(Duration::from_secs(60));
                },
            }
        }
        if target.ends_with(".Scan") {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let call = (
                body["TableName"].as_str().unwrap_or_default().to_string(),
                body["Segment"].as_i64().unwrap_or(-1),
                body["TotalSegments"].as_i64().unwrap_or(-1),
            );
            faults.lock().unwrap().scans.push(call);
            let mut f = faults.lock().unwrap();
            if f.scan_error_rate > 0.0 && rand::random::<f64>() < f.scan_error_rate {
                f.scan_errors_served += 1;
                drop(f);
                let resp = error_answer(
                    "500 Internal Server Error",
                    "com.amazonaws.dynamodb.v20120810#InternalServerError",
                    "Injected: scan failed",
                );
                write_message(&mut client_w, &resp)?;
                continue;
            }
        }
        if target.starts_with("DynamoDBStreams") {
            let mut f = faults.lock().unwrap();
            if f.stream_error_rate > 0.0 && rand::random::<f64>() < f.stream_error_rate {
                f.stream_errors_served += 1;
                let resp = match f.stream_errors_served % 2 {
                    0 => error_answer(
                        "400 Bad Request",
                        "com.amazonaws.dynamodb.v20120810#LimitExceededException",
                        "Injected: too many requests for the shard",
                    ),
                    _ => error_answer(
                        "500 Internal Server Error",
                        "com.amazonaws.dynamodb.v20120810#InternalServerError",
                        "Injected: streams failed",
                    ),
                };
                drop(f);
                write_message(&mut client_w, &resp)?;
                continue;
            }
        }
        let get_data = req.head.starts_with("GET ") && req.head.contains(".json.gz");
        write_message(&mut up_w, &req)?;
        let Some(mut resp) = read_message(&mut up_r)? else {
            return Ok(());
        };
        if let Some((table, keep)) = held_back {
            let mut body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
            let mut unprocessed = HashMap::new();
            unprocessed.insert(table, keep);
            body["UnprocessedItems"] = serde_json::to_value(unprocessed).unwrap();
            resp.body = serde_json::to_vec(&body).unwrap();
        }
        if get_data && resp.head.contains(" 200") && resp.body.len() > 40 {
            let mut f = faults.lock().unwrap();
            if f.cut_bodies > 0 {
                f.cut_bodies -= 1;
                f.bodies_cut += 1;
                drop(f);
                // Announce the whole body, send half, hang up.
                let full = resp.body.len();
                resp.body.truncate(full / 2);
                write_message_as(&mut client_w, &resp, full)?;
                let _ = client_w.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
        }
        write_message(&mut client_w, &resp)?;
    }
    Ok(())
}

/// Runs the real binary in `dir` with the given environment, without the
/// `--endpoint-url` flag (for runs that reach two endpoints through the
/// SDK's per-service variables).
pub fn singletable_env(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_singletable"));
    cmd.current_dir(dir)
        .args(args)
        .args(["--region", "us-east-1", "--quiet"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("DYNAMODB_TABLE_NAME")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run singletable")
}

/// Starts the real binary in `dir` with `words` (test credentials, no
/// progress, its output piped) and `env` set; a scheduler's shard index
/// is never inherited.
pub fn spawn_singletable(dir: &Path, words: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_singletable"));
    cmd.current_dir(dir)
        .args(words)
        .args(["--region", "us-east-1", "--quiet"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits for a child for at most `secs` seconds: a run that never ends
/// fails the test (with what it printed) instead of hanging the suite.
pub fn finish_within(mut child: Child, secs: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("still running after {secs} s: {}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Command-line words from one string (no quoting: test arguments only).
pub fn args(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// `demo-data` with exports written to `dest`; returns the TABLE=LOCATION
/// lines it printed, also saved as `file` in `dir`.
pub fn demo_exports(dir: &Path, endpoint: &str, file: &str, args: &[&str]) -> Vec<String> {
    let o = singletable(dir, endpoint, &[&["demo-data"], args].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = String::from_utf8(o.stdout).unwrap();
    std::fs::write(dir.join(file), &lines).unwrap();
    lines.lines().map(str::to_string).collect()
}

/// The environment that sends DynamoDB calls to `dynamodb` and S3 calls
/// to `s3`.
pub fn endpoints<'a>(dynamodb: &'a str, s3: &'a str) -> [(&'static str, &'a str); 2] {
    [
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb),
        ("AWS_ENDPOINT_URL_S3", s3),
    ]
}

/// `demo-data` writing exports into S3 (`data` names `--export-to s3://...`)
/// through `env`; saves the TABLE=LOCATION lines as `exports.txt` in `dir`
/// and returns them.
pub fn demo_exports_s3(dir: &Path, env: &[(&str, &str)], data: &str) -> String {
    let o = singletable_env(dir, env, &[&["demo-data"], &args(data)[..]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = String::from_utf8(o.stdout).unwrap();
    std::fs::write(dir.join("exports.txt"), &lines).unwrap();
    lines
}

/// An S3 client for the test's own reads and writes (path-style).
pub async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let opts = singletable::aws::AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.into()),
        static_credentials: Some(("test".into(), "test".into())),
        ..Default::default()
    };
    singletable::aws::s3(&singletable::aws::load(&opts).await, &opts)
}

pub fn read_gz_lines(path: &Path) -> Vec<String> {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s.lines().map(str::to_string).collect()
}

pub fn write_gz_lines(path: &Path, lines: &[String]) {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for l in lines {
        writeln!(e, "{l}").unwrap();
    }
    std::fs::write(path, e.finish().unwrap()).unwrap();
}

/// Makes an export's manifests agree with its data files as they now are.
pub fn refresh_all_checksums(export: &Path) {
    let path = export.join("manifest-files.json");
    let text: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut e: serde_json::Value = serde_json::from_str(l).unwrap();
            let key = e["dataFileS3Key"].as_str().unwrap().to_string();
            // Full exports keep data under the export; incrementals in ../data.
            let name = key.rsplit('/').next().unwrap();
            let file = [
                export.join("data").join(name),
                export.parent().unwrap().join("data").join(name),
            ]
            .into_iter()
            .find(|p| p.exists())
            .unwrap();
            e["md5Checksum"] =
                singletable::export::md5_base64(&std::fs::read(file).unwrap()).into();
            e.to_string() + "\n"
        })
        .collect();
    std::fs::write(
        export.join("manifest-files.md5"),
        singletable::export::md5_base64(text.as_bytes()),
    )
    .unwrap();
    std::fs::write(path, text).unwrap();
}
