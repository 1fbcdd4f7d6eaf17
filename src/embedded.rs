//! The embedded DynamoDB: dynoxide, in-process, for the demo.
//!
//! `singletable demo` needs a DynamoDB-compatible endpoint on a machine with
//! nothing installed. This module starts dynoxide's HTTP server on a
//! loopback port inside our own runtime, with an in-memory database, and
//! stops it cleanly. Everything else talks to it through the real AWS SDK,
//! exactly as it would talk to AWS.

use tokio::sync::oneshot;

/// A running embedded server.
pub struct Embedded {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

/// Why the embedded server did not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot listen on 127.0.0.1:{port}: {cause}")]
    Bind { port: u16, cause: std::io::Error },
    #[error("cannot open the in-memory database: {0}")]
    Database(String),
}

impl Embedded {
    /// Starts on `port` (0 picks a free one).
    pub async fn start(port: u16) -> Result<Embedded, EmbeddedError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|cause| EmbeddedError::Bind { port, cause })?;
        let addr = listener
            .local_addr()
            .map_err(|cause| EmbeddedError::Bind { port, cause })?;
        let db =
            dynoxide::Database::memory().map_err(|e| EmbeddedError::Database(e.to_string()))?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(dynoxide::server::serve_with_shutdown(
            listener,
            db,
            async move {
                let _ = rx.await;
            },
        ));
        Ok(Embedded {
            endpoint: format!("http://{addr}"),
            stop: Some(tx),
            task,
        })
    }

    /// Stops accepting, lets requests in progress finish, and returns.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}
