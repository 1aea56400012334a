//! What this build was compiled with. The library's parts that pull large dependencies are Cargo
//! features (`aws`, `kit`, `sqlite`, `mysql`, `postgres`; all on by default). A part left out
//! is refused at run time, when it is asked for, with [`Missing`]'s message.

/// A part this build was compiled without, asked for at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this build has no {what} support; rebuild with --features {feature}")]
pub struct Missing {
    /// What was asked for, as a user names it ("PostgreSQL", "AWS Secrets Manager").
    pub what: &'static str,
    /// The Cargo feature that brings it.
    pub feature: &'static str,
}

/// The features this build has, in the order of the README's list.
pub const ENABLED: &[&str] = &[
    #[cfg(feature = "aws")]
    "aws",
    #[cfg(feature = "kit")]
    "kit",
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "mysql")]
    "mysql",
    #[cfg(feature = "postgres")]
    "postgres",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_part_names_the_feature_that_brings_it() {
        let missing = Missing {
            what: "PostgreSQL",
            feature: "postgres",
        };
        assert_eq!(
            missing.to_string(),
            "this build has no PostgreSQL support; rebuild with --features postgres"
        );
    }

    /// Run in a build with SQLite alone (`scripts/check-features.sh`): each part it lacks is
    /// refused by name when asked for.
    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_database_engine_this_build_lacks_is_refused_by_name() {
        let error = crate::sink::Sink::connect("postgres://job@db:5432/raw")
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "this build has no PostgreSQL support; rebuild with --features postgres"
        );
    }

    #[cfg(not(feature = "aws"))]
    #[tokio::test]
    async fn a_secret_or_a_dynamodb_table_in_a_build_without_aws_is_refused_by_name() {
        let credential = crate::credentials::ApiCredential::secret(
            "DATAPLATTFORM_AURORA_FETCH_KEY_SECRET",
            "arn:aws:secretsmanager:eu-central-1:123456789012:secret:key",
        );
        let error = credential.get().await.unwrap_err();
        assert!(
            error.to_string().contains("rebuild with --features aws"),
            "{error}"
        );
        let specs = crate::capability::CapabilitySpecs {
            event_codes: Some("event-codes".into()),
            ..Default::default()
        };
        let Err(error) = crate::capability::Backends::configure(&specs).await else {
            panic!("a DynamoDB table was set up without the AWS SDK");
        };
        let message = crate::error::chain(&error);
        assert!(
            message.contains("no DynamoDB support; rebuild with --features aws"),
            "{message}"
        );
    }
}
