//! Slack's Web API `conversations.info`, behind the `slack-channels` capability.

use std::time::Duration;

use tokio::runtime::Handle;

use super::{LookupLimits, SlackDirectory};
use crate::credentials::ApiCredential;
use crate::http::{HttpError, RetryPolicy, client_builder, read_body, with_retries};

/// Slack's Web API, or a server that speaks it.
pub const DEFAULT_BASE_URL: &str = "https://slack.com/api/";

/// The most bytes read from an answer of `conversations.info` (a few kilobytes in practice).
const ANSWER_LIMIT: usize = 1 << 20;

/// Errors of `conversations.info` that mean the token, not the channel, is wrong: they fail
/// the lookup instead of turning every name into a silent NULL.
const TOKEN_ERRORS: [&str; 6] = [
    "not_authed",
    "invalid_auth",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "missing_scope",
];

/// What a failed lookup was doing, in its message.
const ASKING: &str = "asking Slack about a channel at";

/// Of those, the ones a rotated token gives: the token is read again from its secret and the
/// lookup tried once more.
const ROTATED_TOKEN_ERRORS: [&str; 3] = ["invalid_auth", "token_revoked", "token_expired"];

pub struct SlackWebApi {
    base: String,
    token: ApiCredential,
    client: reqwest::Client,
    runtime: Handle,
    retry: RetryPolicy,
    timeout: Duration,
}

impl std::fmt::Debug for SlackWebApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackWebApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    channel: Option<Channel>,
}

/// Direct-message channels (`D…`) have no name.
#[derive(serde::Deserialize)]
struct Channel {
    #[serde(default)]
    name: Option<String>,
}

impl SlackWebApi {
    /// A client that blocks on `runtime`: lookups come from plugin threads, not async tasks.
    pub fn new(
        base: &str,
        token: impl Into<ApiCredential>,
        runtime: Handle,
    ) -> Result<Self, HttpError> {
        let base = if base.ends_with('/') {
            base.to_owned()
        } else {
            format!("{base}/")
        };
        let client = client_builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| HttpError::transport("building the Slack client", &base, &error))?;
        Ok(SlackWebApi {
            base,
            token: token.into(),
            client,
            runtime,
            retry: RetryPolicy {
                backoff: crate::http::backoff().with_max_times(4),
                ..RetryPolicy::default()
            },
            timeout: Duration::from_secs(10),
        })
    }

    /// Another backoff and request timeout (tests use short ones).
    pub fn with_retries(mut self, backoff: backon::ExponentialBuilder, timeout: Duration) -> Self {
        self.retry.backoff = backoff;
        self.timeout = timeout;
        self
    }

    /// One lookup, its tries and waits ending by the deadline of `limits`.
    async fn lookup(
        &self,
        channel_id: &str,
        limits: LookupLimits,
    ) -> Result<Option<String>, HttpError> {
        let url = format!("{}conversations.info", self.base);
        let unreadable = |error: crate::credentials::CredentialsError| {
            HttpError::other(ASKING, &url, error.to_string())
        };
        let mut retry = self.retry;
        if !limits.retries {
            retry.backoff = retry.backoff.with_max_times(0);
        }
        let token = self.token.get().await.map_err(unreadable)?;
        let mut answer = self.ask(&url, &token, channel_id, retry, limits).await?;
        if let Some(error) = answer.error.as_deref()
            && ROTATED_TOKEN_ERRORS.contains(&error)
            && self.token.can_refresh()
        {
            tracing::warn!("Slack refused the token ({error}); reading it again");
            let token = self.token.refresh(&token).await.map_err(unreadable)?;
            answer = self.ask(&url, &token, channel_id, retry, limits).await?;
        }
        match answer {
            Answer {
                ok: true, channel, ..
            } => Ok(channel.and_then(|channel| channel.name)),
            Answer {
                error: Some(error), ..
            } if TOKEN_ERRORS.contains(&error.as_str()) => Err(HttpError::other(
                ASKING,
                &url,
                format!("Slack refused the token: {error}"),
            )),
            // `ok: false` (channel_not_found and the like): no name.
            _ => Ok(None),
        }
    }

    /// One `conversations.info` with `token`, retried on transport errors, 429 and 5xx, its
    /// tries and waits ending by the deadline of `limits`.
    async fn ask(
        &self,
        url: &str,
        token: &str,
        channel_id: &str,
        retry: RetryPolicy,
        limits: LookupLimits,
    ) -> Result<Answer, HttpError> {
        with_retries(retry, limits.deadline, ASKING, url, || async {
            // The token goes in the Authorization header, never in the query string.
            let response = self
                .client
                .get(url)
                .query(&[("channel", channel_id)])
                .bearer_auth(token)
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|error| HttpError::transport(ASKING, url, &error))?;
            if !response.status().is_success() {
                return Err(HttpError::from_response(ASKING, url, response).await);
            }
            let body = read_body(ASKING, url, response, ANSWER_LIMIT).await?;
            serde_json::from_slice::<Answer>(&body).map_err(|error| {
                HttpError::other(ASKING, url, format!("not a Slack answer: {error}"))
            })
        })
        .await
    }
}

impl SlackDirectory for SlackWebApi {
    fn channel_name(
        &self,
        channel_id: &str,
        limits: LookupLimits,
    ) -> Result<Option<String>, String> {
        self.runtime
            .block_on(self.lookup(channel_id, limits))
            .map_err(|error| error.to_string())
    }
}
