//! Import files to S3: the last step of `migrate --to-import s3://...`.
//!
//! The files are written to a local staging folder first (the file sink
//! needs to close, hash and count each one, and a run that fails leaves
//! nothing half-uploaded behind in S3); once the run has finished, this
//! module uploads every data file its manifest lists, each with its MD5 so
//! that S3 refuses a corrupted body, then the manifest beside `data/`, and
//! removes the staging folder. The SDK's own retries cover transient
//! failures of one request; a file that still fails stops the upload with
//! its name.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use futures::{StreamExt as _, TryStreamExt as _};

use super::import_files::Manifest;

/// Uploads at once.
const CONCURRENCY: usize = 4;

/// Where the files go in S3.
#[derive(Debug, Clone)]
pub struct S3Place {
    pub bucket: String,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
}

impl S3Place {
    /// Parses `s3://bucket/prefix/`; `None` for anything else.
    pub fn parse(text: &str) -> Option<S3Place> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Some(S3Place {
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

impl std::fmt::Display for S3Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Why the upload stopped.
#[derive(Debug, thiserror::Error)]
#[error("uploading {file} to {place} failed: {message}; the files are kept in {staging}")]
pub struct UploadError {
    pub file: String,
    pub place: String,
    pub staging: String,
    pub message: String,
}

/// Uploads the files `staging/manifest.json` lists, then the manifest;
/// removes `staging` once all are in. Returns how many files went up.
pub async fn upload(
    s3: &aws_sdk_s3::Client,
    staging: &Path,
    place: &S3Place,
) -> Result<usize, UploadError> {
    let fail = |file: &str, message: String| UploadError {
        file: file.to_string(),
        place: place.to_string(),
        staging: staging.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(staging.join("manifest.json"))
        .map_err(|e| fail("manifest.json", e.to_string()))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| fail("manifest.json", e.to_string()))?;
    let uploads = manifest.files.iter().map(|f| {
        let path = staging.join(&f.name);
        async move {
            put(s3, place, &f.name, path, Some(&f.md5))
                .await
                .map_err(|m| fail(&f.name, m))
        }
    });
    futures::stream::iter(uploads)
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    put(
        s3,
        place,
        "manifest.json",
        staging.join("manifest.json"),
        None,
    )
    .await
    .map_err(|m| fail("manifest.json", m))?;
    // Everything is in S3: the staging copy is no longer needed.
    let _ = std::fs::remove_dir_all(staging);
    Ok(manifest.files.len())
}

async fn put(
    s3: &aws_sdk_s3::Client,
    place: &S3Place,
    name: &str,
    path: PathBuf,
    md5: Option<&str>,
) -> Result<(), String> {
    let body = ByteStream::from_path(&path)
        .await
        .map_err(|e| e.to_string())?;
    s3.put_object()
        .bucket(&place.bucket)
        .key(format!("{}{name}", place.prefix))
        .set_content_md5(md5.map(str::to_string))
        .body(body)
        .send()
        .await
        .map_err(|e| crate::aws::describe_error(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_parse_with_a_trailing_slash() {
        let p = S3Place::parse("s3://b/imports/run1").unwrap();
        assert_eq!(
            (p.bucket.as_str(), p.prefix.as_str()),
            ("b", "imports/run1/")
        );
        assert_eq!(S3Place::parse("s3://b").unwrap().prefix, "");
        assert_eq!(
            S3Place::parse("s3://b/x/").unwrap().to_string(),
            "s3://b/x/"
        );
        assert!(S3Place::parse("s3:///x").is_none());
        assert!(S3Place::parse("./folder").is_none());
    }
}
