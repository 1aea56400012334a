//! What the HTTP clients (the fetch API, Slack) share: the client, retry policy, and messages
//! that never carry a secret.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

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

    /// An answer with a status that is not success; reads its body for the message.
    pub async fn from_response(what: &'static str, url: &str, response: reqwest::Response) -> Self {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        // A server may echo the request's headers, the key among them.
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

/// Exponential backoff with jitter, 500 ms to 30 s, 6 tries.
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(6)
        .with_jitter()
}

/// Runs `exchange` until it succeeds, fails for good, or runs out of tries; waits what a 429's
/// `Retry-After` asks.
/// Every single wait is capped at `max_wait`: a server asking for an hour does not get it.
pub async fn with_retries<T, F, Fut>(
    backoff: ExponentialBuilder,
    max_wait: Duration,
    exchange: F,
) -> Result<T, HttpError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, HttpError>>,
{
    exchange
        .retry(backoff)
        .when(HttpError::is_retryable)
        .adjust(move |error, delay| {
            delay.map(|delay| error.retry_after.unwrap_or(delay).min(max_wait))
        })
        .notify(|error, delay| tracing::warn!("{error}; retrying in {delay:?}"))
        .await
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
}
