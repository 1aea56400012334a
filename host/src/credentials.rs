//! Credentials without a plain secret in the environment.
//!
//! The database's: a Secrets Manager secret (`DATAPLATTFORM_AURORA_PASSWORD_SECRET`), read once
//! and again when a login fails, or IAM database authentication
//! (`DATAPLATTFORM_AURORA_IAM_AUTH=true`), a token signed with SigV4 as the AWS SDKs' RDS auth
//! token generators make it.
//!
//! The APIs' ([`ApiCredential`]): the fetch API's key and Slack's token, each a plain variable
//! (`DATAPLATTFORM_AURORA_FETCH_KEY`, `DATAPLATTFORM_AURORA_SLACK_TOKEN`) or a secret
//! (`…_SECRET`), read once and again when the API refuses it.
//!
//! Every value is registered with [`crate::secrets`] as soon as it is known, so it is scrubbed
//! from every message; URLs are logged through [`crate::http::redact`] besides.

use std::sync::Arc;
#[cfg(feature = "aws")]
use std::time::SystemTime;
use std::time::{Duration, Instant};

#[cfg(feature = "aws")]
use aws_credential_types::Credentials;
#[cfg(feature = "aws")]
use aws_credential_types::provider::ProvideCredentials;
#[cfg(feature = "aws")]
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
#[cfg(feature = "aws")]
use aws_sigv4::sign::v4;
use tokio::sync::{Mutex, OnceCell};

use crate::database_variables::{ConfigError, database_engine_and_port, database_url_from_env};
use crate::features::Missing;

/// The AWS SDK's configuration (region, credentials), loaded once per process; nothing in a
/// build without the `aws` feature, whose secrets and tokens are refused with [`NO_AWS`].
#[cfg(feature = "aws")]
type AwsConfig = aws_config::SdkConfig;
#[cfg(not(feature = "aws"))]
type AwsConfig = ();

/// What a build without the `aws` feature says when a secret or an IAM token is asked for.
#[cfg(not(feature = "aws"))]
const NO_AWS: Missing = Missing {
    what: "AWS (Secrets Manager, IAM database auth)",
    feature: "aws",
};

/// How long an IAM auth token is valid (the most RDS accepts).
#[cfg(feature = "aws")]
pub const TOKEN_EXPIRY: Duration = Duration::from_secs(900);
/// A token older than this is made anew before a new connection needs it.
const TOKEN_REUSE: Duration = Duration::from_secs(600);

/// Where the database password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `DATAPLATTFORM_AURORA_PASSWORD` (or none).
    Environment,
    /// A Secrets Manager secret, by ARN or name: a plain string, or JSON with `password`, as
    /// RDS writes them (the user is still `DATAPLATTFORM_AURORA_USER`).
    Secret(String),
    /// IAM database authentication: a fresh token as the password, over TLS.
    IamAuth,
}

/// Why the credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read secret {secret}: {reason}")]
    Secret { secret: String, reason: String },
    #[error("cannot make an IAM database auth token: {0}")]
    Token(String),
    #[error(transparent)]
    Missing(#[from] Missing),
}

/// The database credentials of a process, cached between runs.
#[derive(Debug)]
pub struct DatabaseCredentials {
    source: PasswordSource,
    aws: OnceCell<AwsConfig>,
    secret: Mutex<Option<SecretValue>>,
    token: Mutex<Option<(String, Instant)>>,
}

#[derive(Debug, Clone)]
struct SecretValue {
    password: String,
}

impl DatabaseCredentials {
    /// Reads which source the environment names. Nothing is fetched yet.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let iam = match var("DATAPLATTFORM_AURORA_IAM_AUTH").as_deref() {
            None | Some("" | "false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "DATAPLATTFORM_AURORA_IAM_AUTH",
                    value: other.to_owned(),
                    reason: "expected true or false",
                });
            }
        };
        let secret = var("DATAPLATTFORM_AURORA_PASSWORD_SECRET").filter(|id| !id.is_empty());
        let source = match (iam, secret) {
            (true, Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "DATAPLATTFORM_AURORA_PASSWORD_SECRET",
                    value: "(set)".into(),
                    reason: "IAM authentication (DATAPLATTFORM_AURORA_IAM_AUTH=true) uses no password; set one or the other",
                });
            }
            (true, None) => PasswordSource::IamAuth,
            (false, Some(secret)) => PasswordSource::Secret(secret),
            (false, None) => PasswordSource::Environment,
        };
        Ok(DatabaseCredentials {
            source,
            aws: OnceCell::new(),
            secret: Mutex::new(None),
            token: Mutex::new(None),
        })
    }

    /// Whether reading the credentials again may help after a refused login.
    pub fn can_refresh(&self) -> bool {
        self.source != PasswordSource::Environment
    }

    /// The database URL from the environment's variables with the password (or token) filled
    /// in; `None` when no host is set. `refresh` reads the secret, or makes the token, anew.
    pub async fn database_url(
        &self,
        var: impl Fn(&str) -> Option<String>,
        refresh: bool,
    ) -> Result<Option<String>, CredentialsError> {
        let url = self.url(var, refresh).await?;
        if let Some(url) = &url {
            // The password or token, wherever an error might quote it, is never shown.
            crate::secrets::register_url(url);
        }
        Ok(url)
    }

    async fn url(
        &self,
        var: impl Fn(&str) -> Option<String>,
        refresh: bool,
    ) -> Result<Option<String>, CredentialsError> {
        match &self.source {
            PasswordSource::Environment => Ok(database_url_from_env(var)?),
            PasswordSource::Secret(secret_id) => {
                if var("DATAPLATTFORM_AURORA_HOST").is_none_or(|host| host.is_empty()) {
                    return Ok(None);
                }
                let secret = self.secret(secret_id, refresh).await?;
                let url = database_url_from_env(|name| match name {
                    "DATAPLATTFORM_AURORA_PASSWORD" => Some(secret.password.clone()),
                    _ => var(name),
                })?;
                Ok(url)
            }
            PasswordSource::IamAuth => {
                let Some(host) = var("DATAPLATTFORM_AURORA_HOST").filter(|host| !host.is_empty())
                else {
                    return Ok(None);
                };
                let tls = match var("DATAPLATTFORM_AURORA_TLS").as_deref() {
                    None | Some("") => "require".to_owned(),
                    Some(mode @ ("require" | "verify-ca" | "verify-full")) => mode.to_owned(),
                    Some(other) => {
                        return Err(ConfigError::Invalid {
                            name: "DATAPLATTFORM_AURORA_TLS",
                            value: other.to_owned(),
                            reason: "IAM database authentication needs TLS: require, verify-ca or verify-full",
                        }
                        .into());
                    }
                };
                let (_, port) = database_engine_and_port(&var)?;
                let user = var("DATAPLATTFORM_AURORA_USER")
                    .ok_or(ConfigError::Missing("DATAPLATTFORM_AURORA_USER"))?;
                let token = self.token(&host, port, &user, refresh).await?;
                let url = database_url_from_env(|name| match name {
                    "DATAPLATTFORM_AURORA_PASSWORD" => Some(token.clone()),
                    "DATAPLATTFORM_AURORA_TLS" => Some(tls.clone()),
                    _ => var(name),
                })?;
                Ok(url)
            }
        }
    }

    async fn aws(&self) -> &AwsConfig {
        self.aws.get_or_init(load_aws_config).await
    }

    async fn secret(
        &self,
        secret_id: &str,
        refresh: bool,
    ) -> Result<SecretValue, CredentialsError> {
        let mut cached = self.secret.lock().await;
        if !refresh && let Some(secret) = cached.as_ref() {
            return Ok(secret.clone());
        }
        let text = read_secret_string(self.aws().await, secret_id).await?;
        let secret = parse_secret(&text).map_err(|reason| CredentialsError::Secret {
            secret: secret_id.to_owned(),
            reason,
        })?;
        crate::secrets::register(&secret.password);
        tracing::info!(
            secret = secret_id,
            "read the database password from Secrets Manager"
        );
        *cached = Some(secret.clone());
        Ok(secret)
    }

    async fn token(
        &self,
        host: &str,
        port: u16,
        user: &str,
        refresh: bool,
    ) -> Result<String, CredentialsError> {
        let mut cached = self.token.lock().await;
        if !refresh
            && let Some((token, made)) = cached.as_ref()
            && made.elapsed() < TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        let token = sign_token(self.aws().await, host, port, user).await?;
        crate::secrets::register(&token);
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }
}

#[cfg(feature = "aws")]
async fn load_aws_config() -> AwsConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

#[cfg(not(feature = "aws"))]
async fn load_aws_config() -> AwsConfig {}

/// A fresh IAM database auth token, signed with the SDK's region and credentials.
#[cfg(feature = "aws")]
async fn sign_token(
    aws: &AwsConfig,
    host: &str,
    port: u16,
    user: &str,
) -> Result<String, CredentialsError> {
    let region = aws
        .region()
        .ok_or_else(|| CredentialsError::Token("no AWS region (AWS_REGION)".into()))?
        .to_string();
    let provider = aws
        .credentials_provider()
        .ok_or_else(|| CredentialsError::Token("no AWS credentials".into()))?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|error| CredentialsError::Token(format!("no AWS credentials: {error}")))?;
    rds_auth_token(host, port, user, &region, credentials, SystemTime::now())
}

#[cfg(not(feature = "aws"))]
async fn sign_token(
    _aws: &AwsConfig,
    _host: &str,
    _port: u16,
    _user: &str,
) -> Result<String, CredentialsError> {
    Err(NO_AWS.into())
}

/// A secret's string value, as Secrets Manager holds it now. The caller registers what it takes
/// from it with [`crate::secrets`] before anything can print it.
#[cfg(feature = "aws")]
async fn read_secret_string(aws: &AwsConfig, secret_id: &str) -> Result<String, CredentialsError> {
    let fail = |reason: String| CredentialsError::Secret {
        secret: secret_id.to_owned(),
        reason,
    };
    let answer = aws_sdk_secretsmanager::Client::new(aws)
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|error| {
            fail(format!(
                "{}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&error)
            ))
        })?;
    answer
        .secret_string()
        .map(str::to_owned)
        .ok_or_else(|| fail("the secret has no string value".into()))
}

#[cfg(not(feature = "aws"))]
async fn read_secret_string(
    _aws: &AwsConfig,
    _secret_id: &str,
) -> Result<String, CredentialsError> {
    Err(NO_AWS.into())
}

/// A refused value is read again at most this often: when the secret itself still holds it
/// (not rotated yet, or a wrong value), every refused request would otherwise cost a read.
const MIN_REREAD_INTERVAL: Duration = Duration::from_secs(30);

/// An API's key or token (the fetch API's key, Slack's bot token): the value given in the
/// environment, or a Secrets Manager secret whose string value is the key itself. A secret is
/// read once, at first use (the Lambda's init asks for it), and again after the API refused
/// the value, so that a warm container picks up a rotated secret. Clones share the value.
#[derive(Clone)]
pub struct ApiCredential(Arc<CredentialInner>);

struct CredentialInner {
    source: CredentialSource,
    aws: OnceCell<AwsConfig>,
    /// A secret's value as last read.
    state: Mutex<SecretState>,
}

#[derive(Default)]
struct SecretState {
    value: Option<Arc<str>>,
    /// When the secret was last read again after a refusal.
    reread: Option<Instant>,
}

/// Where an [`ApiCredential`] comes from. Two credentials are equal when they come from the
/// same place.
#[derive(Clone, PartialEq, Eq)]
enum CredentialSource {
    /// The plain variable (the old contract): never read again.
    Value(Arc<str>),
    /// A Secrets Manager secret, by ARN or name; `variable` names the setting in messages.
    Secret {
        variable: &'static str,
        secret_id: String,
    },
}

impl ApiCredential {
    /// A fixed value (registered to be scrubbed at once).
    pub fn value(value: &str) -> Self {
        crate::secrets::register(value);
        Self::new(CredentialSource::Value(Arc::from(value)))
    }

    /// A Secrets Manager secret, named by `variable` in messages; nothing is read yet.
    pub fn secret(variable: &'static str, secret_id: &str) -> Self {
        Self::new(CredentialSource::Secret {
            variable,
            secret_id: secret_id.to_owned(),
        })
    }

    fn new(source: CredentialSource) -> Self {
        ApiCredential(Arc::new(CredentialInner {
            source,
            aws: OnceCell::new(),
            state: Mutex::default(),
        }))
    }

    /// From `variable` (the plain value) or `secret_variable` (a secret's ARN), read through
    /// `var`; empty means unset. The secret wins, as the database password's does.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
        variable: &'static str,
        secret_variable: &'static str,
    ) -> Option<Self> {
        let var = |name: &str| var(name).filter(|value| !value.is_empty());
        match (var(secret_variable), var(variable)) {
            (Some(secret_id), plain) => {
                // Unused beside a secret, but a secret still: never printed.
                if let Some(plain) = plain {
                    crate::secrets::register(&plain);
                }
                Some(Self::secret(secret_variable, &secret_id))
            }
            (None, Some(plain)) => Some(Self::value(&plain)),
            (None, None) => None,
        }
    }

    /// The secret's ARN (or name), when the value comes from Secrets Manager.
    pub fn secret_id(&self) -> Option<&str> {
        match &self.0.source {
            CredentialSource::Value(_) => None,
            CredentialSource::Secret { secret_id, .. } => Some(secret_id),
        }
    }

    /// Whether reading it again may help after a refusal.
    pub fn can_refresh(&self) -> bool {
        self.secret_id().is_some()
    }

    /// The value: the one given, or the secret as read (read now if it never was).
    pub async fn get(&self) -> Result<Arc<str>, CredentialsError> {
        if let CredentialSource::Value(value) = &self.0.source {
            return Ok(Arc::clone(value));
        }
        let mut state = self.0.state.lock().await;
        if let Some(value) = &state.value {
            return Ok(Arc::clone(value));
        }
        let value = self.read().await?;
        state.value = Some(Arc::clone(&value));
        Ok(value)
    }

    /// The value to try after the API refused `refused`: the secret read again, unless another
    /// request has already got a newer value (then that one), or it was read again less than
    /// [`MIN_REREAD_INTERVAL`] ago (then the value as it is: the secret still holds it). A
    /// plain value is returned as it is.
    pub async fn refresh(&self, refused: &str) -> Result<Arc<str>, CredentialsError> {
        if let CredentialSource::Value(value) = &self.0.source {
            return Ok(Arc::clone(value));
        }
        let mut state = self.0.state.lock().await;
        if let Some(value) = &state.value {
            let recently = state
                .reread
                .is_some_and(|at| at.elapsed() < MIN_REREAD_INTERVAL);
            if &**value != refused || recently {
                return Ok(Arc::clone(value));
            }
        }
        let value = self.read().await?;
        state.value = Some(Arc::clone(&value));
        state.reread = Some(Instant::now());
        Ok(value)
    }

    /// Reads the secret; only called for [`CredentialSource::Secret`].
    async fn read(&self) -> Result<Arc<str>, CredentialsError> {
        let CredentialSource::Secret {
            variable,
            secret_id,
        } = &self.0.source
        else {
            unreachable!("a plain value is never read");
        };
        let aws = self.0.aws.get_or_init(load_aws_config).await;
        let value = read_secret_string(aws, secret_id).await?;
        if value.is_empty() {
            return Err(CredentialsError::Secret {
                secret: secret_id.clone(),
                reason: "the secret is empty".into(),
            });
        }
        crate::secrets::register(&value);
        tracing::info!(
            secret = %secret_id,
            "read {} from Secrets Manager",
            variable.trim_end_matches("_SECRET")
        );
        Ok(Arc::from(value))
    }
}

impl From<&str> for ApiCredential {
    fn from(value: &str) -> Self {
        ApiCredential::value(value)
    }
}

impl From<String> for ApiCredential {
    fn from(value: String) -> Self {
        ApiCredential::value(&value)
    }
}

impl PartialEq for ApiCredential {
    fn eq(&self, other: &Self) -> bool {
        self.0.source == other.0.source
    }
}

impl Eq for ApiCredential {}

impl std::fmt::Debug for ApiCredential {
    /// The secret's ARN, never a value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.secret_id() {
            None => f.write_str("ApiCredential(***)"),
            Some(secret_id) => f.debug_tuple("ApiCredential").field(&secret_id).finish(),
        }
    }
}

/// A secret's value: JSON with `password`, or the password itself.
fn parse_secret(text: &str) -> Result<SecretValue, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => {
            let password = object
                .get("password")
                .and_then(|value| value.as_str())
                .ok_or("the secret is JSON without a \"password\" string")?;
            Ok(SecretValue {
                password: password.to_owned(),
            })
        }
        _ => Ok(SecretValue {
            password: text.to_owned(),
        }),
    }
}

/// An RDS IAM database auth token: the presigned URL `HOST:PORT/?Action=connect&DBUser=USER&…`
/// (SigV4, service `rds-db`, valid 15 minutes) without its scheme, exactly as the AWS SDKs'
/// `generate_db_auth_token` makes it.
#[cfg(feature = "aws")]
pub fn rds_auth_token(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    credentials: Credentials,
    time: SystemTime,
) -> Result<String, CredentialsError> {
    let error = |error: &dyn std::fmt::Display| CredentialsError::Token(error.to_string());
    let mut settings = SigningSettings::default();
    settings.expires_in = Some(TOKEN_EXPIRY);
    settings.signature_location = SignatureLocation::QueryParams;
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("rds-db")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| error(&e))?;
    let mut url = reqwest::Url::parse(&format!("https://{host}:{port}/?Action=connect"))
        .map_err(|e| error(&e))?;
    url.query_pairs_mut().append_pair("DBUser", user);
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| error(&e))?;
    let (instructions, _signature) = sign(request, &params.into())
        .map_err(|e| error(&e))?
        .into_parts();
    // The signature last, as botocore has it (the order does not matter to RDS).
    let mut params = instructions.params().to_vec();
    params.sort_by_key(|(name, _)| *name == "X-Amz-Signature");
    for (name, value) in params {
        url.query_pairs_mut().append_pair(name, &value);
    }
    let url = url.to_string();
    Ok(url["https://".len()..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_json_with_a_password_or_the_password_itself() {
        let secret =
            parse_secret(r#"{"username": "job", "password": "p@ss", "engine": "mysql"}"#).unwrap();
        assert_eq!(secret.password, "p@ss");
        let secret = parse_secret("plain secret").unwrap();
        assert_eq!(secret.password, "plain secret");
        assert!(parse_secret(r#"{"user": "x"}"#).is_err());
    }

    #[test]
    fn the_source_is_one_of_three_and_never_two() {
        let env = crate::environment::test_env;
        let source = |pairs| DatabaseCredentials::from_env(env(pairs)).map(|c| c.source);
        assert_eq!(source(&[]).unwrap(), PasswordSource::Environment);
        assert_eq!(
            source(&[("DATAPLATTFORM_AURORA_PASSWORD_SECRET", "arn:s")]).unwrap(),
            PasswordSource::Secret("arn:s".into())
        );
        assert_eq!(
            source(&[("DATAPLATTFORM_AURORA_IAM_AUTH", "true")]).unwrap(),
            PasswordSource::IamAuth
        );
        assert!(
            source(&[
                ("DATAPLATTFORM_AURORA_IAM_AUTH", "true"),
                ("DATAPLATTFORM_AURORA_PASSWORD_SECRET", "arn:s")
            ])
            .is_err()
        );
        assert!(source(&[("DATAPLATTFORM_AURORA_IAM_AUTH", "yes")]).is_err());
    }

    #[tokio::test]
    async fn an_api_credential_is_its_secret_or_its_plain_variable_and_never_shown() {
        let env = crate::environment::test_env;
        let credential = |pairs| ApiCredential::from_env(env(pairs), "KEY", "KEY_SECRET");
        assert_eq!(credential(&[]), None);
        assert_eq!(credential(&[("KEY", ""), ("KEY_SECRET", "")]), None);
        let plain = credential(&[("KEY", "plain-k3y-value")]).unwrap();
        assert!(!plain.can_refresh());
        assert_eq!(&*plain.get().await.unwrap(), "plain-k3y-value");
        // A plain value is the only one there is: a refusal does not change it.
        assert_eq!(
            &*plain.refresh("plain-k3y-value").await.unwrap(),
            "plain-k3y-value"
        );
        assert_eq!(format!("{plain:?}"), "ApiCredential(***)");
        // The secret wins; the plain value beside it is still scrubbed.
        let arn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:key-AbCdEf";
        let secret = credential(&[("KEY", "unused-plain-k3y"), ("KEY_SECRET", arn)]).unwrap();
        assert_eq!(secret.secret_id(), Some(arn));
        assert!(secret.can_refresh());
        assert_eq!(secret, ApiCredential::secret("KEY_SECRET", arn));
        assert_eq!(format!("{secret:?}"), format!("ApiCredential({arn:?})"));
        assert_eq!(crate::secrets::scrub("x unused-plain-k3y"), "x ***");
    }

    /// The expected tokens were made once by botocore's `generate_db_auth_token` (boto3 1.44,
    /// from moto's install) with these credentials at this time, and pasted here.
    #[cfg(feature = "aws")]
    #[test]
    fn the_iam_token_is_the_one_the_aws_sdks_make() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645); // 2024-01-02T03:04:05Z
        let host = "aurora.cluster-abc.eu-central-1.rds.amazonaws.com";
        let credentials = |token: Option<&str>| {
            Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                token.map(str::to_owned),
                None,
                "test",
            )
        };
        assert_eq!(
            rds_auth_token(
                host,
                3306,
                "batch_job",
                "eu-central-1",
                credentials(None),
                time
            )
            .unwrap(),
            "aurora.cluster-abc.eu-central-1.rds.amazonaws.com:3306/?Action=connect&DBUser=batch_job\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20240102%2Feu-central-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20240102T030405Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=ec9bdef1f2c764ca97a23802b20df310386664456f6407858fcc9ccf0838459b"
        );
        assert_eq!(
            rds_auth_token(
                host,
                3306,
                "batch_job",
                "eu-central-1",
                credentials(Some("FwoGZXIvYXdzEXAMPLETOKEN")),
                time
            )
            .unwrap(),
            "aurora.cluster-abc.eu-central-1.rds.amazonaws.com:3306/?Action=connect&DBUser=batch_job\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20240102%2Feu-central-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20240102T030405Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLETOKEN\
             &X-Amz-Signature=ebc878cc32d35b0a9c60adb80c4fa5a2b50e289329c99e8ce2fc9071bf620a27"
        );
    }

    #[tokio::test]
    async fn iam_auth_requires_tls() {
        let env = |tls: Option<&'static str>| {
            move |name: &str| {
                Some(
                    match name {
                        "DATAPLATTFORM_AURORA_IAM_AUTH" => "true",
                        "DATAPLATTFORM_AURORA_HOST" => "db.example",
                        "DATAPLATTFORM_AURORA_DB_NAME" => "raw",
                        "DATAPLATTFORM_AURORA_USER" => "job",
                        "DATAPLATTFORM_AURORA_TLS" => return tls.map(str::to_owned),
                        _ => return None,
                    }
                    .to_owned(),
                )
            }
        };
        let credentials = DatabaseCredentials::from_env(env(Some("disable"))).unwrap();
        let error = credentials
            .database_url(env(Some("disable")), false)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("DATAPLATTFORM_AURORA_TLS"),
            "{error}"
        );
    }
}
