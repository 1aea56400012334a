//! The database's credentials without a plain password in the environment: a Secrets Manager
//! secret (`DATAPLATTFORM_AURORA_PASSWORD_SECRET`), read once and again when a login fails, or
//! IAM database authentication (`DATAPLATTFORM_AURORA_IAM_AUTH=true`), a token signed with
//! SigV4 as the AWS SDKs' RDS auth token generators make it. Neither a password nor a token is
//! ever logged: URLs are logged through [`crate::http::redact`], which drops them.

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use tokio::sync::{Mutex, OnceCell};

use crate::config::{ConfigError, database_url_from_env};

/// How long an IAM auth token is valid (the most RDS accepts).
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
}

/// The database credentials of a process, cached between runs.
#[derive(Debug)]
pub struct DatabaseCredentials {
    source: PasswordSource,
    aws: OnceCell<aws_config::SdkConfig>,
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

    pub fn source(&self) -> &PasswordSource {
        &self.source
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
                let postgres = matches!(
                    var("DATAPLATTFORM_AURORA_ENGINE").as_deref(),
                    Some("postgres" | "postgresql")
                );
                let port = var("DATAPLATTFORM_AURORA_PORT")
                    .unwrap_or_else(|| if postgres { "5432" } else { "3306" }.into());
                let port: u16 = port.parse().map_err(|_| ConfigError::Invalid {
                    name: "DATAPLATTFORM_AURORA_PORT",
                    value: port.clone(),
                    reason: "expected a port number",
                })?;
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

    async fn aws(&self) -> &aws_config::SdkConfig {
        self.aws
            .get_or_init(|| aws_config::defaults(aws_config::BehaviorVersion::latest()).load())
            .await
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
        let fail = |reason: String| CredentialsError::Secret {
            secret: secret_id.to_owned(),
            reason,
        };
        let client = aws_sdk_secretsmanager::Client::new(self.aws().await);
        let answer = client
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
        let text = answer
            .secret_string()
            .ok_or_else(|| fail("the secret has no string value".into()))?;
        let secret = parse_secret(text).map_err(fail)?;
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
        let aws = self.aws().await;
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
        let token = rds_auth_token(host, port, user, &region, credentials, SystemTime::now())?;
        crate::secrets::register(&token);
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
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
        let env = crate::config::test_env;
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

    /// The expected tokens were made once by botocore's `generate_db_auth_token` (boto3 1.44,
    /// from moto's install) with these credentials at this time, and pasted here.
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
