//! The old job's database variables (`DATAPLATTFORM_AURORA_HOST`, `_ENGINE`, `_TLS`, …): the URL
//! they make, the engine and port. A leaf: the environment and the credentials both read them.

/// Why the environment does not describe a database.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set (needed with DATAPLATTFORM_AURORA_HOST)")]
    Missing(&'static str),
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// The database URL from the old job's variables (`DATAPLATTFORM_AURORA_HOST`, `_PORT`,
/// `_DB_NAME`, `_USER`, `_PASSWORD`), plus `DATAPLATTFORM_AURORA_ENGINE` (`mysql`, the default,
/// or `postgres`), `DATAPLATTFORM_AURORA_TLS` (`disable`, `prefer`, `require`, `verify-ca`,
/// `verify-full`) and `DATAPLATTFORM_AURORA_TLS_CA` (a CA bundle file). `None` when no host is
/// set.
pub fn database_url_from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let Some(host) = var("DATAPLATTFORM_AURORA_HOST").filter(|host| !host.is_empty()) else {
        return Ok(None);
    };
    let (engine, port) = database_engine_and_port(&var)?;
    let (scheme, tls_key, ca_key) = match engine {
        DatabaseEngine::Mysql => ("mysql", "ssl-mode", "ssl-ca"),
        DatabaseEngine::Postgres => ("postgres", "sslmode", "sslrootcert"),
    };
    let name = var("DATAPLATTFORM_AURORA_DB_NAME")
        .ok_or(ConfigError::Missing("DATAPLATTFORM_AURORA_DB_NAME"))?;
    let user = var("DATAPLATTFORM_AURORA_USER")
        .ok_or(ConfigError::Missing("DATAPLATTFORM_AURORA_USER"))?;
    let password = var("DATAPLATTFORM_AURORA_PASSWORD").unwrap_or_default();
    let encode = |text: &str| utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
    let mut url = format!(
        "{scheme}://{}:{}@{host}:{port}/{}",
        encode(&user),
        encode(&password),
        encode(&name)
    );
    let mut parameters = Vec::new();
    if let Some(tls) = var("DATAPLATTFORM_AURORA_TLS") {
        let mode = match (scheme, tls.as_str()) {
            ("mysql", "disable") => "DISABLED",
            ("mysql", "prefer") => "PREFERRED",
            ("mysql", "require") => "REQUIRED",
            ("mysql", "verify-ca") => "VERIFY_CA",
            ("mysql", "verify-full") => "VERIFY_IDENTITY",
            (
                "postgres",
                mode @ ("disable" | "prefer" | "require" | "verify-ca" | "verify-full"),
            ) => mode,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "DATAPLATTFORM_AURORA_TLS",
                    value: tls,
                    reason: "expected disable, prefer, require, verify-ca or verify-full",
                });
            }
        };
        parameters.push(format!("{tls_key}={mode}"));
    }
    if let Some(ca) = var("DATAPLATTFORM_AURORA_TLS_CA") {
        parameters.push(format!("{ca_key}={}", encode(&ca)));
    }
    if !parameters.is_empty() {
        url = format!("{url}?{}", parameters.join("&"));
    }
    Ok(Some(url))
}

/// The engine `DATAPLATTFORM_AURORA_ENGINE` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatabaseEngine {
    Mysql,
    Postgres,
}

/// `DATAPLATTFORM_AURORA_ENGINE` (`mysql`, the default, or `postgres`) and
/// `DATAPLATTFORM_AURORA_PORT` (by default the engine's), read once for the URL and for an IAM
/// token alike.
pub(crate) fn database_engine_and_port(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<(DatabaseEngine, u16), ConfigError> {
    let engine = var("DATAPLATTFORM_AURORA_ENGINE").unwrap_or_else(|| "mysql".into());
    let engine = match engine.as_str() {
        "mysql" => DatabaseEngine::Mysql,
        "postgres" | "postgresql" => DatabaseEngine::Postgres,
        _ => {
            return Err(ConfigError::Invalid {
                name: "DATAPLATTFORM_AURORA_ENGINE",
                value: engine,
                reason: "expected mysql or postgres",
            });
        }
    };
    let default_port = match engine {
        DatabaseEngine::Mysql => 3306,
        DatabaseEngine::Postgres => 5432,
    };
    let Some(port) = var("DATAPLATTFORM_AURORA_PORT") else {
        return Ok((engine, default_port));
    };
    let port = port.parse::<u16>().map_err(|_| ConfigError::Invalid {
        name: "DATAPLATTFORM_AURORA_PORT",
        value: port,
        reason: "expected a port number",
    })?;
    Ok((engine, port))
}
