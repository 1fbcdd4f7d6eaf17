//! One AWS configuration and one DynamoDB client for the whole run.
//!
//! This module owns how singletable talks to AWS: the standard aws-config
//! chain (environment, profiles, SSO, instance roles), the region, profile
//! and endpoint overrides, explicit timeouts (the SDK has no read timeout by
//! default, so a silent server would hang a run forever) and the SDK's own
//! retry budget (3 attempts; BatchWriteItem gets one, so the sink's rate
//! controller sees every throttle). Which errors are retried after that,
//! and for how long, is `retry`'s decision, not this module's.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

/// What the user said about AWS.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Overrides every service's endpoint (`--endpoint-url`).
    pub endpoint_url: Option<String>,
    /// How long one attempt of one request may take.
    pub attempt_timeout: Option<Duration>,
    /// Fixed credentials (the embedded demo), instead of the chain.
    pub static_credentials: Option<(String, String)>,
}

/// The region used when none is configured and the endpoint is local.
const LOCAL_REGION: &str = "us-east-1";

/// Where requests go and how long one may take, for error messages: set
/// once, when the configuration is loaded (there is one per process).
static WHERE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Where DynamoDB requests go when not to AWS: `--endpoint-url`, else the
/// SDK's environment variables (the DynamoDB one first).
pub fn dynamodb_endpoint(endpoint_url: Option<&str>) -> Option<String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    endpoint_url
        .map(str::to_string)
        .or_else(|| env("AWS_ENDPOINT_URL_DYNAMODB"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
}

fn where_words(opts: &AwsOptions) -> String {
    let endpoint = dynamodb_endpoint(opts.endpoint_url.as_deref())
        .unwrap_or_else(|| "AWS (the region's endpoint)".into());
    let secs = opts
        .attempt_timeout
        .unwrap_or(Duration::from_secs(60))
        .as_secs();
    format!("endpoint {endpoint}, --request-timeout {secs} s")
}

/// How long a request may go unanswered before it is reported.
pub const SLOW: Duration = Duration::from_secs(5);

/// Requests waiting longer than [`SLOW`] now.
static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Requests waiting longer than [`SLOW`] now, and where they went.
pub fn slow_requests() -> (usize, &'static str) {
    let n = WAITING.load(std::sync::atomic::Ordering::Relaxed);
    (n, WHERE.get().map_or("", String::as_str))
}

/// Awaits one request; one unanswered after [`SLOW`] is logged (a warning,
/// with the endpoint) and counted for the progress until it ends.
pub async fn noting_slow<F: std::future::Future>(what: &str, request: F) -> F::Output {
    use std::sync::atomic::Ordering;
    tokio::pin!(request);
    tokio::select! {
        out = &mut request => return out,
        _ = tokio::time::sleep(SLOW) => {}
    }
    let place = WHERE.get().map_or("", String::as_str);
    tracing::warn!("{what}: no answer after {} s ({place})", SLOW.as_secs());
    WAITING.fetch_add(1, Ordering::Relaxed);
    let out = request.await;
    WAITING.fetch_sub(1, Ordering::Relaxed);
    out
}

/// Loads the shared SDK configuration once.
pub async fn load(opts: &AwsOptions) -> aws_config::SdkConfig {
    let _ = WHERE.set(where_words(opts));
    tracing::info!("requests go to {}", where_words(opts));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(opts.attempt_timeout.unwrap_or(Duration::from_secs(60)))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3));
    if let Some(p) = &opts.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &opts.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(url) = &opts.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some((id, secret)) = &opts.static_credentials {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            id.clone(),
            secret.clone(),
            None,
            None,
            "singletable-static",
        ));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        // A local endpoint needs some region to sign with; real AWS needs the
        // user's, which the chain found or the user must give.
        let local = custom_endpoint(opts, "AWS_ENDPOINT_URL_DYNAMODB")
            || custom_endpoint(opts, "AWS_ENDPOINT_URL_S3");
        if local {
            return config
                .into_builder()
                .region(Region::new(LOCAL_REGION))
                .build();
        }
    }
    config
}

/// True when requests to a service go to a custom endpoint (not AWS).
fn custom_endpoint(opts: &AwsOptions, service_var: &str) -> bool {
    opts.endpoint_url.is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os(service_var).is_some()
}

/// The S3 client, for export locations. A custom endpoint gets path-style
/// addressing (`http://host/bucket/key`), which local stores need.
pub fn s3(config: &aws_config::SdkConfig, opts: &AwsOptions) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(custom_endpoint(opts, "AWS_ENDPOINT_URL_S3"))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The DynamoDB Streams client (`follow`), from the shared configuration:
/// `--endpoint-url` applies to it too; per service,
/// AWS_ENDPOINT_URL_DYNAMODB_STREAMS.
pub fn streams(config: &aws_config::SdkConfig) -> aws_sdk_dynamodbstreams::Client {
    aws_sdk_dynamodbstreams::Client::new(config)
}

/// The DynamoDB client, built once from the shared configuration.
pub fn dynamodb(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// A table's description, `None` when it does not exist, or the error in
/// words. Shared by the sink (the target check) and verify.
pub async fn describe_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>, String> {
    match client.describe_table().table_name(name).send().await {
        Ok(out) => Ok(out.table),
        Err(e) if error_code(&e).as_deref() == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(describe_error(&e)),
    }
}

/// A readable account of an SDK error: its code and message, not `Debug`.
pub fn describe_error<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::SdkError;
    match err {
        SdkError::ServiceError(e) => {
            let inner = e.err();
            match (inner.code(), inner.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => inner.to_string(),
            }
        }
        SdkError::TimeoutError(_) => format!(
            "no answer within the time one request may take ({}); a slow endpoint needs a larger --request-timeout",
            WHERE.get().map_or("--request-timeout", String::as_str)
        ),
        SdkError::DispatchFailure(e) => {
            let chain = match e.as_connector_error() {
                Some(c) => chain(c),
                None => format!("{e:?}"),
            };
            setup_problem(&chain).unwrap_or_else(|| {
                let place = WHERE.get().map_or("", String::as_str);
                format!("could not reach the endpoint ({place}): {chain}")
            })
        }
        other => {
            let msg = chain(other);
            setup_problem(&msg).unwrap_or(msg)
        }
    }
}

/// An error and its sources, ": " between them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

/// Missing credentials or region, in words that say what to do.
fn setup_problem(chain: &str) -> Option<String> {
    let lower = chain.to_lowercase();
    if lower.contains("credential") && (lower.contains("no ") || lower.contains("not load")) {
        return Some(format!(
            "no AWS credentials: the chain tried the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), the shared files (~/.aws/credentials, ~/.aws/config, with --profile or AWS_PROFILE), SSO, web identity and container/instance roles, and found none; set one of them ({chain})"
        ));
    }
    if lower.contains("region") && (lower.contains("no region") || lower.contains("missing")) {
        return Some(format!(
            "no AWS region: pass --region, or set AWS_REGION, or a region in the profile ({chain})"
        ));
    }
    None
}

/// The error code of an SDK error (`ValidationException`), when it has one.
pub fn error_code<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> Option<String>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    match err {
        aws_sdk_dynamodb::error::SdkError::ServiceError(e) => e.err().code().map(str::to_string),
        _ => None,
    }
}
