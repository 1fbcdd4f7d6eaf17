//! An instant DynamoDB stand-in for the benchmarks: a loopback HTTP server
//! that answers DescribeTable (a table keyed and indexed as the shipped
//! mapping's), Scan (empty) and BatchWriteItem (all processed) at once, so
//! that a benchmark measures the client alone. With `--record FILE` it
//! appends every BatchWriteItem body to FILE, one per line, for the raw
//! writer to replay.
//!
//!   cargo run --release --example standin -- [--port N] [--record FILE]
//!
//! It prints `listening on PORT` once it accepts connections. It is bench
//! code: it reads only what it needs of a request (the target header, the
//! content length, the table name), and one thread serves every connection
//! so that it takes as little of the machine from the client as it can.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

type Recorder = Option<Arc<Mutex<std::fs::File>>>;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let port: u16 = flag("--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let record: Recorder = match flag("--record") {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            Some(Arc::new(Mutex::new(file)))
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {}", listener.local_addr()?.port());
        loop {
            let (socket, _) = listener.accept().await?;
            let _ = socket.set_nodelay(true);
            tokio::spawn(serve(socket, record.clone()));
        }
    })
}

/// Answers requests on one keep-alive connection until the client closes it.
async fn serve(socket: TcpStream, record: Recorder) {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let mut body = Vec::new();
    while let Some(target) = request(&mut read, &mut body).await {
        let answer = answer(&target, &body, &record);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nx-amzn-requestid: standin\r\n\r\n",
            answer.len()
        );
        if write.write_all(head.as_bytes()).await.is_err()
            || write.write_all(answer.as_bytes()).await.is_err()
        {
            return;
        }
    }
}

/// Reads one request: its `x-amz-target` header, and its body into `body`.
async fn request<R: tokio::io::AsyncBufRead + Unpin>(
    read: &mut R,
    body: &mut Vec<u8>,
) -> Option<String> {
    let mut line = String::new();
    let (mut target, mut len) = (String::new(), 0usize);
    loop {
        line.clear();
        if read.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "x-amz-target" => target = value.trim().to_string(),
                "content-length" => len = value.trim().parse().ok()?,
                _ => {}
            }
        }
    }
    body.resize(len, 0);
    read.read_exact(body).await.ok()?;
    Some(target)
}

fn answer(target: &str, body: &[u8], record: &Recorder) -> String {
    let op = target.rsplit('.').next().unwrap_or_default();
    match op {
        "BatchWriteItem" => {
            if let Some(file) = record {
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                let _ = f.write_all(body).and_then(|()| f.write_all(b"\n"));
            }
            r#"{"UnprocessedItems":{}}"#.to_string()
        }
        "Scan" => r#"{"Items":[],"Count":0,"ScannedCount":0}"#.to_string(),
        "DescribeTable" => describe(&table_name(body)),
        _ => format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#UnknownOperationException","message":"the stand-in does not answer {op}"}}"#
        ),
    }
}

fn table_name(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["TableName"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// An active table keyed `pk`/`sk` with the shipped mapping's two indexes.
fn describe(name: &str) -> String {
    let index = |n: &str| {
        serde_json::json!({
            "IndexName": n,
            "KeySchema": [
                {"AttributeName": format!("{n}pk"), "KeyType": "HASH"},
                {"AttributeName": format!("{n}sk"), "KeyType": "RANGE"}
            ],
            "Projection": {"ProjectionType": "ALL"},
            "IndexStatus": "ACTIVE"
        })
    };
    let attrs: Vec<_> = ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
        .iter()
        .map(|a| serde_json::json!({"AttributeName": a, "AttributeType": "S"}))
        .collect();
    serde_json::json!({"Table": {
        "TableName": name,
        "TableStatus": "ACTIVE",
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"}
        ],
        "AttributeDefinitions": attrs,
        "GlobalSecondaryIndexes": [index("gsi1"), index("gsi2")],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "ItemCount": 0,
        "TableSizeBytes": 0
    }})
    .to_string()
}
