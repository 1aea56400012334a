//! The platform's two-step fetch API: `GET {base}{Type}?timestamp_from&timestamp_to` with the
//! API key gives a presigned URL; a `GET` of that URL gives one JSON array of documents, which is
//! parsed while it downloads.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{SourceError, SourceItem};
use crate::credentials::ApiCredential;
use crate::hooks::Progress;
use crate::http::{HttpError, RetryPolicy, client_builder, read_body, redact, with_retries};
use crate::window::Window;

/// The most bytes read from step 1's answer, a small JSON object holding one URL.
const PRESIGN_ANSWER_LIMIT: usize = 64 * 1024;

/// Timeouts of the fetch client.
#[derive(Debug, Clone)]
pub struct FetchTimeouts {
    pub connect: Duration,
    /// The whole first step (it answers a small JSON object).
    pub presign: Duration,
    /// The longest wait for any read of the document body, the first byte included. There is
    /// no limit on the whole body: windows can be large.
    pub read: Duration,
}

impl Default for FetchTimeouts {
    fn default() -> Self {
        FetchTimeouts {
            connect: Duration::from_secs(10),
            presign: Duration::from_secs(30),
            read: Duration::from_secs(60),
        }
    }
}

/// A client of the fetch API.
#[derive(Clone)]
pub struct FetchApi {
    base: String,
    /// Read again when the API refuses it (403): a rotated secret.
    key: ApiCredential,
    client: reqwest::Client,
    timeouts: FetchTimeouts,
    retry: RetryPolicy,
}

impl std::fmt::Debug for FetchApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("FetchApi")
            .field("base", &redact(&self.base))
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct Presigned {
    url: Option<String>,
    /// The name a later revision of the API gives the same URL.
    all_docs_url: Option<String>,
}

impl FetchApi {
    pub fn new(
        base: &str,
        key: impl Into<ApiCredential>,
        timeouts: FetchTimeouts,
    ) -> Result<Self, SourceError> {
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(SourceError::Unsupported(redact(base)));
        }
        // The type is appended directly, so the base must end with `/`.
        let base = if base.ends_with('/') {
            base.to_owned()
        } else {
            format!("{base}/")
        };
        let client = client_builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .build()
            .map_err(|error| {
                SourceError::Fetch(HttpError::transport(
                    "building the HTTP client",
                    &base,
                    &error,
                ))
            })?;
        Ok(FetchApi {
            base,
            key: key.into(),
            client,
            timeouts,
            retry: RetryPolicy::default(),
        })
    }

    /// Shorter backoff, for tests.
    pub fn with_backoff(mut self, backoff: backon::ExponentialBuilder) -> Self {
        self.retry.backoff = backoff;
        self
    }

    /// Caps every single wait between tries (a `Retry-After` included).
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.retry.max_wait = max_wait;
        self
    }

    /// Caps the time one request may take, its tries and waits together.
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.retry.budget = budget;
        self
    }

    /// Streams one type's window into `deliver`, on a blocking thread, as the body arrives,
    /// counting the body's bytes (and its `Content-Length`, when given) in `progress`, for the
    /// run and for the type. Fails as a whole (documents delivered so far stay delivered) when
    /// the body's structure is lost (cut off, say), or when `deadline` comes first: nothing
    /// waits past it.
    pub async fn fetch_counted(
        &self,
        type_name: &str,
        window: Window,
        deadline: Option<Instant>,
        progress: &Arc<Progress>,
        deliver: impl FnMut(SourceItem) -> ControlFlow<()> + Send + 'static,
    ) -> Result<(), SourceError> {
        let Some(deadline) = deadline else {
            return self
                .fetch_window(type_name, window, None, progress, deliver)
                .await;
        };
        match tokio::time::timeout_at(
            deadline.into(),
            self.fetch_window(type_name, window, Some(deadline), progress, deliver),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(SourceError::Deadline),
        }
    }

    async fn fetch_window(
        &self,
        type_name: &str,
        window: Window,
        deadline: Option<Instant>,
        progress: &Arc<Progress>,
        mut deliver: impl FnMut(SourceItem) -> ControlFlow<()> + Send + 'static,
    ) -> Result<(), SourceError> {
        let mut presigned = self.presign(type_name, window).await?;
        let mut renewed = false;
        let response = loop {
            match self.open(&presigned).await {
                Ok(response) => break response,
                // A presigned URL lives 5 minutes; one that expired before we got to it is
                // asked for again, once.
                Err(error) if error.status == Some(403) && !renewed => {
                    tracing::warn!(type_name, "{error}; asking the fetch API for a new URL");
                    renewed = true;
                    presigned = self.presign(type_name, window).await?;
                }
                Err(error) => return Err(SourceError::Fetch(error)),
            }
        };
        let label = format!("{} ({type_name})", redact(&presigned));
        let of_type = progress.of_type(type_name);
        match response.content_length() {
            Some(length) => {
                Progress::add(&progress.bytes_total, length);
                Progress::add(&of_type.bytes_total, length);
            }
            None => Progress::add(&progress.sizes_unknown, 1),
        }
        let counting = Arc::clone(progress);
        // At the deadline the body ends as if cut off; the reader then stops, and its lanes
        // close, instead of waiting on a server that may never send another byte.
        let until_deadline = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        let body = response
            .bytes_stream()
            .inspect_ok(move |chunk| {
                Progress::add(&counting.bytes_read, chunk.len() as u64);
                Progress::add(&of_type.bytes_read, chunk.len() as u64);
            })
            .map_err(move |error| {
                std::io::Error::other(HttpError::transport(
                    "reading documents from",
                    &presigned,
                    &error,
                ))
            })
            .take_until(Box::pin(until_deadline));
        let reader = SyncIoBridge::new(StreamReader::new(body));
        let result = tokio::task::spawn_blocking(move || {
            super::file::read_array(Path::new(&label), reader, &mut deliver)
        })
        .await
        .map_err(|error| {
            SourceError::Fetch(HttpError::other(
                "reading documents from",
                &self.base,
                error.to_string(),
            ))
        })?;
        match deadline {
            Some(deadline) if result.is_err() && Instant::now() >= deadline => {
                Err(SourceError::Deadline)
            }
            _ => result,
        }
    }

    /// Step 1: the presigned URL of a type's window. A key the API refuses (403) is read
    /// again from its secret and tried once more: it may have been rotated. The answer's query
    /// (signature, credential) is registered as a secret before anything is asked of it, so
    /// that an error quoting it is scrubbed too.
    async fn presign(&self, type_name: &str, window: Window) -> Result<String, SourceError> {
        let key = self.key.get().await?;
        match self.presign_with(&key, type_name, window).await {
            Err(SourceError::Fetch(error))
                if error.status == Some(403) && self.key.can_refresh() =>
            {
                tracing::warn!(type_name, "{error}; reading the fetch API key again");
                let key = self.key.refresh(&key).await?;
                self.presign_with(&key, type_name, window).await
            }
            result => result,
        }
    }

    async fn presign_with(
        &self,
        key: &str,
        type_name: &str,
        window: Window,
    ) -> Result<String, SourceError> {
        let url = format!("{}{type_name}", self.base);
        let what = "asking the fetch API";
        // No deadline here: `fetch` ends the whole window at the deadline, with its own error.
        let answer = with_retries(self.retry, None, what, &url, || async {
            let response = self
                .client
                .get(&url)
                .query(&[("timestamp_from", window.from), ("timestamp_to", window.to)])
                .header("x-api-key", key)
                .timeout(self.timeouts.presign)
                .send()
                .await
                .map_err(|error| HttpError::transport(what, &url, &error))?;
            if !response.status().is_success() {
                return Err(HttpError::from_response(what, &url, response).await);
            }
            let body = read_body(what, &url, response, PRESIGN_ANSWER_LIMIT).await?;
            serde_json::from_slice::<Presigned>(&body).map_err(|error| {
                HttpError::other(what, &url, format!("not a JSON answer: {error}"))
            })
        })
        .await
        .map_err(SourceError::Fetch)?;
        let presigned = answer.url.or(answer.all_docs_url).ok_or_else(|| {
            SourceError::Fetch(HttpError::other(
                what,
                &url,
                "the answer has neither url nor all_docs_url",
            ))
        })?;
        crate::secrets::register_url(&presigned);
        Ok(presigned)
    }

    /// Step 2: the response of the presigned URL, once its status is success.
    async fn open(&self, presigned: &str) -> Result<reqwest::Response, HttpError> {
        let what = "downloading documents from";
        with_retries(self.retry, None, what, presigned, || async {
            let response = self
                .client
                .get(presigned)
                .send()
                .await
                .map_err(|error| HttpError::transport(what, presigned, &error))?;
            if response.status().is_success() {
                return Ok(response);
            }
            Err(HttpError::from_response(what, presigned, response).await)
        })
        .await
    }
}
