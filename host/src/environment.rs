//! What the environment says, read in one place for both binaries: the old job's variables
//! (the fetch API, the database, Slack, the event-code table) and this job's own.

use std::path::PathBuf;

use crate::capability::CapabilitySpecs;

pub use crate::database_variables::{ConfigError, database_url_from_env};

/// What the environment says: the old job's variables and this job's own, read in one place
/// for both binaries. Flags of the local runner beat it.
#[derive(Clone, Default)]
pub struct Environment {
    /// `DATAPLATTFORM_AURORA_FETCH_API_URL`.
    pub fetch_api_url: Option<String>,
    /// `DATAPLATTFORM_AURORA_FETCH_KEY`, or the secret `DATAPLATTFORM_AURORA_FETCH_KEY_SECRET`.
    pub fetch_key: Option<crate::credentials::ApiCredential>,
    /// From `DATAPLATTFORM_AURORA_HOST` and its siblings ([`database_url_from_env`]).
    pub database_url: Option<String>,
    /// `DATAPLATTFORM_AURORA_SLACK_TOKEN` (or the secret `…_SLACK_TOKEN_SECRET`),
    /// `DATAPLATTFORM_AURORA_SLACK_API_URL` and `DATAPLATTFORM_EVENT_CODE_TABLE`.
    pub capabilities: CapabilitySpecs,
    /// `BATCH_JOB_AURORA_PLUGINS`.
    pub plugins_dir: Option<PathBuf>,
    /// `BATCH_JOB_AURORA_COMPILE_CACHE`: the local runner's compile cache, or `off`.
    pub compile_cache: Option<String>,
    /// `BATCH_JOB_AURORA_CATCH_UP=true`.
    pub catch_up: bool,
    /// This user's cache folder for the job ([`cache_dir`]).
    pub cache_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Environment {
    /// Never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field(
                "fetch_api_url",
                &self.fetch_api_url.as_deref().map(crate::http::redact),
            )
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::http::redact),
            )
            .field("plugins_dir", &self.plugins_dir)
            .field("catch_up", &self.catch_up)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

/// Reads the environment through `var` (`|name| std::env::var(name).ok()` in the binaries; a
/// map in tests). Empty values count as unset.
pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Environment, ConfigError> {
    use crate::credentials::ApiCredential;
    let var = |name: &str| var(name).filter(|value| !value.is_empty());
    Ok(Environment {
        fetch_api_url: var("DATAPLATTFORM_AURORA_FETCH_API_URL"),
        fetch_key: ApiCredential::from_env(
            var,
            "DATAPLATTFORM_AURORA_FETCH_KEY",
            "DATAPLATTFORM_AURORA_FETCH_KEY_SECRET",
        ),
        database_url: database_url_from_env(var)?,
        capabilities: CapabilitySpecs {
            slack_channels: None,
            slack_token: ApiCredential::from_env(
                var,
                "DATAPLATTFORM_AURORA_SLACK_TOKEN",
                "DATAPLATTFORM_AURORA_SLACK_TOKEN_SECRET",
            ),
            slack_api_url: var("DATAPLATTFORM_AURORA_SLACK_API_URL"),
            event_codes: var("DATAPLATTFORM_EVENT_CODE_TABLE"),
        },
        plugins_dir: var("BATCH_JOB_AURORA_PLUGINS").map(PathBuf::from),
        compile_cache: var("BATCH_JOB_AURORA_COMPILE_CACHE"),
        catch_up: var("BATCH_JOB_AURORA_CATCH_UP").is_some_and(|value| value == "true"),
        cache_dir: cache_dir(var),
    })
}

/// The job's folder in this user's cache: `$XDG_CACHE_HOME/batch-job-aurora`, else
/// `~/.cache/batch-job-aurora`; `None` without a home. The compile cache and the plugin kit's
/// tools live there.
pub fn cache_dir(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let var = |name: &str| var(name).filter(|value| !value.is_empty());
    var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|folder| folder.join("batch-job-aurora"))
}

/// An environment made of `pairs`, for the `var` argument of the `from_env` readers.
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_variables_make_a_url_with_secrets_encoded() {
        let env = test_env;
        assert_eq!(database_url_from_env(env(&[])).unwrap(), None);
        let url = database_url_from_env(env(&[
            ("DATAPLATTFORM_AURORA_HOST", "db.example"),
            ("DATAPLATTFORM_AURORA_DB_NAME", "raw"),
            ("DATAPLATTFORM_AURORA_USER", "job"),
            ("DATAPLATTFORM_AURORA_PASSWORD", "p@ss:w/rd"),
            ("DATAPLATTFORM_AURORA_TLS", "verify-full"),
        ]))
        .unwrap();
        assert_eq!(
            url.as_deref(),
            Some("mysql://job:p%40ss%3Aw%2Frd@db.example:3306/raw?ssl-mode=VERIFY_IDENTITY")
        );
        let url = database_url_from_env(env(&[
            ("DATAPLATTFORM_AURORA_HOST", "h"),
            ("DATAPLATTFORM_AURORA_ENGINE", "postgres"),
            ("DATAPLATTFORM_AURORA_DB_NAME", "d"),
            ("DATAPLATTFORM_AURORA_USER", "u"),
        ]))
        .unwrap();
        assert_eq!(url.as_deref(), Some("postgres://u:@h:5432/d"));
        assert!(database_url_from_env(env(&[("DATAPLATTFORM_AURORA_HOST", "h")])).is_err());
    }

    #[test]
    fn the_environment_is_read_in_one_place_and_empty_means_unset() {
        let vars = [
            (
                "DATAPLATTFORM_AURORA_FETCH_API_URL",
                "https://api/get_docs/",
            ),
            ("DATAPLATTFORM_AURORA_FETCH_KEY", "k3y-value"),
            ("DATAPLATTFORM_AURORA_HOST", "db"),
            ("DATAPLATTFORM_AURORA_DB_NAME", "raw"),
            ("DATAPLATTFORM_AURORA_USER", "job"),
            ("DATAPLATTFORM_AURORA_SLACK_TOKEN", ""),
            ("DATAPLATTFORM_EVENT_CODE_TABLE", "events"),
            ("BATCH_JOB_AURORA_CATCH_UP", "true"),
        ];
        let environment = from_env(test_env(&vars)).unwrap();
        assert_eq!(environment.fetch_key, Some("k3y-value".into()));
        assert_eq!(
            environment.database_url.as_deref(),
            Some("mysql://job:@db:3306/raw")
        );
        assert_eq!(environment.capabilities.slack_token, None);
        assert_eq!(
            environment.capabilities.event_codes.as_deref(),
            Some("events")
        );
        assert!(environment.catch_up);
        assert!(!format!("{environment:?}").contains("k3y-value"));
    }
}
