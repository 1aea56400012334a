//! The fetch API's key and Slack's token from Secrets Manager (moto's): read once at init, read
//! again after the API refuses them (a rotation), never printed; in the Lambda and the local
//! runner alike.

use std::process::Command;

use serde_json::{Value, json};

use crate::cli::binary;
use crate::lambda::{Bootstrap, RuntimeApi, body, every_type_ever, lambda_env, lambda_plugins};
use crate::support::{
    Engine, FakePlatform, Moto, TestDatabase, plugin_folder, query, workspace_root,
};

/// One generation of the two credentials, as the platform and the secrets hold them.
struct Credentials {
    fetch_key: &'static str,
    slack_token: &'static str,
}

const FIRST: Credentials = Credentials {
    fetch_key: "first-fetch-K3y",
    slack_token: "xoxb-first-T0ken",
};
const SECOND: Credentials = Credentials {
    fetch_key: "second-fetch-K3y",
    slack_token: "xoxb-second-T0ken",
};

const FETCH_KEY_SECRET: &str = "batch-job-aurora/fetch-key";
const SLACK_TOKEN_SECRET: &str = "batch-job-aurora/slack-token";

/// Makes `credentials` the only ones the platform accepts and the secrets' values; returns the
/// secrets' full ARNs (fetch key, Slack token).
async fn rotate(platform: &FakePlatform, moto: &Moto, credentials: &Credentials) -> [String; 2] {
    platform
        .put(
            "/control/credentials",
            &json!({"api_key": credentials.fetch_key, "slack_token": credentials.slack_token}),
        )
        .await;
    [
        moto.put_secret(FETCH_KEY_SECRET, credentials.fetch_key),
        moto.put_secret(SLACK_TOKEN_SECRET, credentials.slack_token),
    ]
}

/// The plain variables replaced by the secrets' ARNs, and the AWS SDK pointed at moto.
fn secret_env(
    mut env: Vec<(&'static str, String)>,
    moto: &Moto,
    arns: &[String; 2],
) -> Vec<(&'static str, String)> {
    env.retain(|(name, _)| {
        !matches!(
            *name,
            "DATAPLATTFORM_AURORA_FETCH_KEY" | "DATAPLATTFORM_AURORA_SLACK_TOKEN"
        )
    });
    env.push(("DATAPLATTFORM_AURORA_FETCH_KEY_SECRET", arns[0].clone()));
    env.push(("DATAPLATTFORM_AURORA_SLACK_TOKEN_SECRET", arns[1].clone()));
    env.extend(moto.env());
    env
}

/// None of the credentials' values, in any generation, shows in `output`.
fn assert_no_secret(output: &str) {
    for credentials in [FIRST, SECOND] {
        for value in [credentials.fetch_key, credentials.slack_token] {
            assert!(!output.contains(value), "{value} printed in:\n{output}");
        }
    }
}

/// The Slack lookups the platform answered with `token`.
async fn slack_requests_with(platform: &FakePlatform, token: &str) -> usize {
    let bearer = format!("Bearer {token}");
    platform
        .requests()
        .await
        .iter()
        .filter(|request| {
            request["path"] == "/api/conversations.info"
                && request["headers"]["authorization"] == bearer.as_str()
        })
        .count()
}

/// How many log lines' messages contain `text`.
fn logged(logs: &[Value], text: &str) -> usize {
    logs.iter()
        .filter(|line| line["message"].as_str().is_some_and(|m| m.contains(text)))
        .count()
}

/// Both API secrets were read from Secrets Manager `times` times, as the logs say.
fn assert_each_secret_read(logs: &[Value], times: usize) {
    for variable in [
        "DATAPLATTFORM_AURORA_FETCH_KEY",
        "DATAPLATTFORM_AURORA_SLACK_TOKEN",
    ] {
        let read = logged(logs, &format!("read {variable} from Secrets Manager"));
        assert_eq!(read, times, "{variable} read {read} times, not {times}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_secrets_are_read_at_init_and_again_after_a_refusal_and_never_printed() {
    let platform = FakePlatform::start();
    crate::fetch::serve_examples(&platform).await;
    let database = TestDatabase::new(Engine::Mysql, "api_secrets").await;
    let moto = Moto::start();
    let arns = rotate(&platform, &moto, &FIRST).await;
    assert!(
        arns[0].starts_with("arn:aws:secretsmanager:eu-central-1:"),
        "{arns:?}"
    );
    let plugins = lambda_plugins();
    let runtime = RuntimeApi::start();
    let env = secret_env(
        lambda_env(&platform, &database, plugins.path(), 3306),
        &moto,
        &arns,
    );
    let lambda = Bootstrap::start(&runtime, &env);

    let first = runtime.invoke(every_type_ever()).await;
    assert_eq!(
        body(&first),
        "10 records inserted into Aurora. 0 duplicates skipped. 0 errors."
    );
    // The Slack token from its secret gave the channel names.
    assert_eq!(
        database
            .count_rows("SlackType", "channel_name = 'general'")
            .await,
        2
    );
    let second = runtime.invoke(every_type_ever()).await;
    body(&second);
    // Read once, at init: not again for the second invocation.
    let logs = lambda.logs();
    assert_each_secret_read(&logs, 1);

    // Rotated: the platform now refuses the first key (403) and token (invalid_auth).
    rotate(&platform, &moto, &SECOND).await;
    let slack_before = slack_requests_with(&platform, SECOND.slack_token).await;
    let rotated = runtime.invoke(every_type_ever()).await;
    assert_eq!(
        body(&rotated),
        "0 records inserted into Aurora. 10 duplicates skipped. 0 errors."
    );
    assert!(slack_requests_with(&platform, SECOND.slack_token).await > slack_before);
    let logs = lambda.logs();
    assert_each_secret_read(&logs, 2);
    assert!(
        logged(&logs, "Slack refused the token (invalid_auth)") >= 1,
        "{logs:?}"
    );
    // The refusal echoed the first key back; the log has it masked.
    let refusals: Vec<&str> = logs
        .iter()
        .filter_map(|line| line["message"].as_str())
        .filter(|message| message.contains("reading the fetch API key again"))
        .collect();
    assert!(!refusals.is_empty(), "{logs:?}");
    assert!(
        refusals
            .iter()
            .all(|message| message.contains("HTTP 403") && message.contains("***")),
        "{refusals:?}"
    );
    assert_no_secret(&lambda.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_that_cannot_be_read_fails_the_init_by_its_arn() {
    let platform = FakePlatform::start();
    let database = TestDatabase::new(Engine::Mysql, "api_secret_missing").await;
    let moto = Moto::start();
    let mut arns = rotate(&platform, &moto, &FIRST).await;
    arns[1] = arns[1].replace(SLACK_TOKEN_SECRET, "batch-job-aurora/no-such-secret");
    let plugins = lambda_plugins();
    let runtime = RuntimeApi::start();
    let env = secret_env(
        lambda_env(&platform, &database, plugins.path(), 3306),
        &moto,
        &arns,
    );
    let lambda = Bootstrap::start(&runtime, &env);
    let results = runtime.wait(1).await;
    assert_eq!(results[0]["kind"], "init_error", "{results:?}");
    assert_eq!(results[0]["body"]["errorType"], "CredentialsUnavailable");
    let message = results[0]["body"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("batch-job-aurora/no-such-secret"),
        "{message}"
    );
    assert_no_secret(&lambda.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_runner_reads_the_api_secrets_too() {
    let platform = FakePlatform::start();
    crate::fetch::serve_examples(&platform).await;
    let moto = Moto::start();
    let arns = rotate(&platform, &moto, &FIRST).await;
    let plugins = plugin_folder(&["github", "slack", "event_rating"]);
    let database = plugins.path().join("secrets.db");
    let env = secret_env(
        vec![
            ("DATAPLATTFORM_AURORA_FETCH_API_URL", platform.fetch_url()),
            ("DATAPLATTFORM_AURORA_SLACK_API_URL", platform.slack_url()),
        ],
        &moto,
        &arns,
    );
    let output = Command::new(binary())
        .args(["run", "--json", "--types", "GithubType,SlackType"])
        .args(["--from", "0", "--to", "100000000000"])
        .arg("--database")
        .arg(format!("sqlite://{}", database.display()))
        .arg("--plugins")
        .arg(plugins.path())
        .arg("--compile-cache")
        .arg("off")
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(workspace_root())
        .output()
        .unwrap();
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    let rows = query(
        &database,
        "SELECT COUNT(*) AS named FROM SlackType WHERE channel_name = 'general'",
    )
    .await;
    assert_eq!(rows[0]["named"], 2, "{printed}");
    assert_no_secret(&printed);
}
