//! What the HTTP clients (the fetch API, Slack) share: the client, retry policy, bounded
//! reads of answers, and messages that never carry a secret.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

/// The most bytes read from the body of an answer that is not success: enough for any error
/// message, and a server whose error body never ends costs no more. The message quotes only
/// its first 200 characters, scrubbed.
pub const ERROR_BODY_LIMIT: usize = 8 * 1024;

/// The longest time spent reading an error body, however slowly it trickles in.
const ERROR_BODY_TIME: Duration = Duration::from_secs(10);

/// Why one HTTP exchange failed. Messages name the URL without its query string, which for a
/// presigned URL holds the signature.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} {url}: {reason}")]
pub struct HttpError {
    pub what: &'static str,
    pub url: String,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub reason: String,
    /// An answer that will not change on another try (it does not parse, say).
    pub permanent: bool,
}

impl HttpError {
    /// A failure to reach the server or read its answer.
    pub fn transport(what: &'static str, url: &str, error: &reqwest::Error) -> Self {
        // `without_url` keeps the query string (a key, a signature) out of the message.
        let reason = if error.is_timeout() {
            "timed out".to_owned()
        } else {
            error_without_url(error)
        };
        HttpError {
            what,
            url: redact(url),
            status: None,
            retry_after: None,
            reason,
            permanent: false,
        }
    }

    /// An answer with a status that is not success; reads at most `ERROR_BODY_LIMIT` bytes of
    /// its body for the message. A redirect is not followed: it names where it points (its
    /// origin only) and fails for good.
    pub async fn from_response(what: &'static str, url: &str, response: reqwest::Response) -> Self {
        let status = response.status();
        if status.is_redirection() {
            return HttpError {
                status: Some(status.as_u16()),
                ..HttpError::other(what, url, redirect_reason(&response))
            };
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = tokio::time::timeout(ERROR_BODY_TIME, read_capped(response, ERROR_BODY_LIMIT))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|capped| capped.bytes)
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        // A server may echo the request's headers, the key among them. Scrubbed whole before
        // it is cut, so that no secret is cut in two and half of it kept.
        let body: String = crate::secrets::scrub(&body).chars().take(200).collect();
        HttpError {
            what,
            url: redact(url),
            status: Some(status.as_u16()),
            retry_after,
            reason: format!("HTTP {status}: {}", body.trim()),
            permanent: false,
        }
    }

    /// An answer that cannot be used, and will not be usable on another try.
    pub fn other(what: &'static str, url: &str, reason: impl Into<String>) -> Self {
        HttpError {
            what,
            url: redact(url),
            status: None,
            retry_after: None,
            reason: reason.into(),
            permanent: true,
        }
    }

    /// Connection errors, timeouts, 5xx and 429 are worth another try; other 4xx are not.
    pub fn is_retryable(&self) -> bool {
        if self.permanent {
            return false;
        }
        match self.status {
            None => true,
            Some(status) => status == 429 || status >= 500,
        }
    }
}

/// A client that follows no redirect and sends no `Referer`. The fetch API (API Gateway), a
/// presigned GET and Slack's Web API answer without redirects; following one would carry the
/// key, the token or a signed URL to whatever origin it names.
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .user_agent(concat!("batch-job-aurora/", env!("CARGO_PKG_VERSION")))
}

/// rustls's cryptography: ring, installed as the process's provider before the first client is
/// made. reqwest is built without a provider of its own, so that a build without the AWS SDK
/// (the demo's) compiles no aws-lc; the database's TLS uses ring too.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means another provider was installed first (a test's): it serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Why a redirect was not followed, naming only the origin it points to (a relative
/// `Location` points to the request's own).
fn redirect_reason(response: &reqwest::Response) -> String {
    let status = response.status();
    let target = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|location| location.to_str().ok())
        .and_then(|location| response.url().join(location).ok());
    match target {
        Some(target) => format!(
            "HTTP {status}: a redirect to {}, not followed (the key and signed URLs are sent only where they were configured)",
            target.origin().ascii_serialization()
        ),
        None => format!("HTTP {status}: a redirect without a usable Location, not followed"),
    }
}

/// The first bytes of a body, at most `limit`; `complete` says whether the body ended there.
/// The rest is never read: the connection is closed when the response is dropped.
pub struct Capped {
    pub bytes: Vec<u8>,
    pub complete: bool,
}

pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Capped, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Capped {
                bytes,
                complete: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Capped {
        bytes,
        complete: true,
    })
}

/// A success answer's body, read only up to `limit` bytes: a body larger than any real answer
/// fails for good instead of filling memory.
pub async fn read_body(
    what: &'static str,
    url: &str,
    response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, HttpError> {
    let capped = read_capped(response, limit)
        .await
        .map_err(|error| HttpError::transport(what, url, &error))?;
    if !capped.complete {
        return Err(HttpError::other(
            what,
            url,
            format!("the answer is larger than {limit} bytes, more than any real one"),
        ));
    }
    Ok(capped.bytes)
}

/// The error with its whole chain (the root cause says most), and its URL redacted.
fn error_without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), &redact(url.as_str()));
    }
    text
}

/// A URL without its query string and without any of its user information: safe for logs
/// and errors. Used for every URL a message names: the fetch API, presigned URLs, Slack and
/// database URLs. A password may hold `?`, `#`, `/` or `@`, so the user information is
/// everything up to the last `@`, and the query is cut only after it.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.split(['?', '#']).next().unwrap_or_default().to_owned();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let (credentials, location) = match rest.rfind('@') {
        Some(at) => ("***@", &rest[at + 1..]),
        None => ("", rest),
    };
    // A query string may carry a key, a signature or a password (`?password=`).
    let location = location.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}{credentials}{location}")
}

/// The longest single wait between tries, whatever a server's `Retry-After` asks.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The most time one request may take, its tries and the waits between them together, when
/// the run has no deadline to end it sooner: a server answering 429 for ever costs two
/// minutes, not six waits of `MAX_WAIT`.
pub const RETRY_BUDGET: Duration = Duration::from_secs(120);

/// Exponential backoff with jitter, 500 ms to 30 s, 6 tries.
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(6)
        .with_jitter()
}

/// How one request is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub backoff: ExponentialBuilder,
    /// The longest single wait, a `Retry-After` included.
    pub max_wait: Duration,
    /// The most time the request may take from its first try to its last answer.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: backoff(),
            max_wait: MAX_WAIT,
            budget: RETRY_BUDGET,
        }
    }
}

/// Runs `exchange` until it succeeds, fails for good, runs out of tries, or runs out of time:
/// its retry budget, or `deadline` when that comes first. Waits what a 429's `Retry-After`
/// asks, but every single wait is capped at `max_wait`, a wait that would end past the time
/// left is not started (the last error is returned, saying so), and a try still going when the
/// time is up is abandoned.
pub async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    deadline: Option<Instant>,
    what: &'static str,
    url: &str,
    exchange: F,
) -> Result<T, HttpError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, HttpError>>,
{
    let end = crate::window::operation_end(policy.budget, deadline);
    let limit = if deadline == Some(end) {
        "the run's deadline".to_owned()
    } else {
        format!("the retry budget of {}", seconds(policy.budget))
    };
    let out_of_time = AtomicBool::new(false);
    let tries = exchange
        .retry(policy.backoff)
        .when(HttpError::is_retryable)
        .adjust(|error, delay| {
            let wait = error.retry_after.unwrap_or(delay?).min(policy.max_wait);
            if Instant::now() + wait >= end {
                out_of_time.store(true, Ordering::Relaxed);
                return None;
            }
            Some(wait)
        })
        .notify(|error, delay| tracing::warn!("{error}; retrying in {delay:?}"));
    match tokio::time::timeout_at(end.into(), tries).await {
        Ok(Err(mut error)) if out_of_time.load(Ordering::Relaxed) => {
            error.reason = format!(
                "{}; no time left for another try within {limit}",
                error.reason
            );
            Err(error)
        }
        Ok(result) => result,
        Err(_) => Err(HttpError {
            what,
            url: redact(url),
            status: None,
            retry_after: None,
            reason: format!("no answer within {limit}"),
            permanent: false,
        }),
    }
}

/// A duration as an operator writes it.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_never_reach_messages() {
        assert_eq!(
            redact(
                "https://bucket.s3.amazonaws.com/docs.json?X-Amz-Signature=abc&X-Amz-Credential=AKIA"
            ),
            "https://bucket.s3.amazonaws.com/docs.json"
        );
        assert_eq!(redact("https://u:p@h/x?key=1"), "https://***@h/x");
        // However the password is made, no part of it is printed.
        assert_eq!(
            redact("mysql://u:pa55?w0rd@h:3306/db"),
            "mysql://***@h:3306/db"
        );
        assert_eq!(
            redact("mysql://u:a@b/c#d?e@h:3306/db?x=1"),
            "mysql://***@h:3306/db"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    fn too_many_requests() -> HttpError {
        HttpError {
            what: "asking",
            url: "http://127.0.0.1:1/x".into(),
            status: Some(429),
            retry_after: Some(Duration::from_millis(100)),
            reason: "HTTP 429".into(),
            permanent: false,
        }
    }

    fn quick(budget: Duration) -> RetryPolicy {
        RetryPolicy {
            backoff: backoff().with_max_times(1000),
            max_wait: Duration::from_secs(1),
            budget,
        }
    }

    #[tokio::test]
    async fn a_429_for_ever_ends_within_the_retry_budget() {
        let tries = std::sync::atomic::AtomicU32::new(0);
        let error = with_retries(
            quick(Duration::from_millis(350)),
            None,
            "asking",
            "u",
            || {
                tries.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>(too_many_requests()) }
            },
        )
        .await
        .unwrap_err();
        // Every wait is at least the 100 ms asked for: a try at 0, 100, 200 and 300 ms at most.
        let tries = tries.load(Ordering::Relaxed);
        assert!((1..=4).contains(&tries), "{tries} tries");
        assert!(
            error.to_string().contains(
                "HTTP 429; no time left for another try within the retry budget of 0.35 s"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_deadline_ends_retries_and_tries_that_never_answer() {
        let deadline = Some(Instant::now() + Duration::from_millis(150));
        let error = with_retries(quick(RETRY_BUDGET), deadline, "asking", "u", || async {
            Err::<(), _>(too_many_requests())
        })
        .await
        .unwrap_err();
        assert!(
            error.reason.ends_with("within the run's deadline"),
            "{error}"
        );

        let deadline = Some(Instant::now() + Duration::from_millis(150));
        let error = with_retries(quick(RETRY_BUDGET), deadline, "asking", "u", || {
            std::future::pending::<Result<(), HttpError>>()
        })
        .await
        .unwrap_err();
        assert_eq!(error.reason, "no answer within the run's deadline");
        assert!(error.is_retryable(), "a timeout, not an answer");
    }
}
