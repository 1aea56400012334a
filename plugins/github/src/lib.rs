//! `GithubType`: one row per GitHub push delivery that has a `head_commit`.
//!
//! The raw store holds the body of every webhook delivery of a public repository (push, ping,
//! create, issues, …). Only real pushes carry a `head_commit`; everything else is refused.

use aurora_plugin_sdk::ColumnType::{Int, Text};
use aurora_plugin_sdk::{
    Column, Document, Field, Host, Outcome, Plugin, PluginError, column, export_plugin,
};
use serde::Deserialize;

struct Github;

/// The parts of a webhook body this type keeps. Every member is a lenient [`Field`], so a
/// missing attribute or one of the wrong kind gives NULL, as the contract requires.
#[derive(Deserialize)]
struct Delivery {
    #[serde(default)]
    repository: Field<Repository>,
    #[serde(default)]
    sender: Field<Sender>,
    #[serde(default)]
    head_commit: Field<HeadCommit>,
    #[serde(default, rename = "ref")]
    git_ref: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Repository {
    full_name: Field<String>,
    stargazers_count: Field<i64>,
    language: Field<String>,
    forks_count: Field<i64>,
    open_issues_count: Field<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Sender {
    login: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HeadCommit {
    id: Field<String>,
    timestamp: Field<String>,
}

impl Plugin for Github {
    const TYPE_NAME: &'static str = "GithubType";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn columns() -> Vec<Column> {
        vec![
            column("repository_name", Text),
            column("github_username", Text),
            column("commit_id", Text),
            column("commit_timestamp", Text),
            column("stargazers_count", Int),
            column("language", Text),
            column("forks_count", Int),
            column("open_issues_count", Int),
            column("ref", Text),
        ]
    }

    fn transform(document: &Document, _host: &dyn Host) -> Result<Outcome, PluginError> {
        let delivery: Delivery = document.parse()?;
        // The old job kept a document when `data.get("head_commit")` was truthy.
        if !delivery.head_commit.is_truthy() {
            return Ok(Outcome::refused("no head_commit: not a push"));
        }
        let repository = delivery.repository.into_option().unwrap_or_default();
        let sender = delivery.sender.into_option().unwrap_or_default();
        let head_commit = delivery.head_commit.into_option().unwrap_or_default();
        Ok(Outcome::row(vec![
            repository.full_name.into(),
            sender.login.into(),
            head_commit.id.into(),
            head_commit.timestamp.into(),
            repository.stargazers_count.into(),
            repository.language.into(),
            repository.forks_count.into(),
            repository.open_issues_count.into(),
            delivery.git_ref.into(),
        ]))
    }
}

export_plugin!(Github);

#[cfg(test)]
mod tests {
    use super::*;
    use aurora_plugin_sdk::Value::{self, Int as I, Null, Text as T};
    use aurora_plugin_sdk::testing::StaticHost;

    fn transform(data: &str) -> Outcome {
        let document = Document {
            id: "AAAAAF0Qp79lNx8dkdk1qQ==".into(),
            timestamp: 1561372607,
            data: data.into(),
        };
        Github::transform(&document, &StaticHost::new()).unwrap()
    }

    fn only_row(outcome: Outcome) -> Vec<Value> {
        match outcome {
            Outcome::Rows(mut rows) if rows.len() == 1 => {
                let row = rows.remove(0);
                assert_eq!(row.id, None, "the row is keyed by the document id");
                row.values
            }
            other => panic!("expected one row, got {other:?}"),
        }
    }

    #[test]
    fn contract_6_minimal_push_has_only_commit_id_and_repository_name() {
        let values = only_row(transform(
            r#"{"head_commit":{"id":"abc"},"repository":{"full_name":"o/r"}}"#,
        ));
        assert_eq!(
            values,
            vec![
                T("o/r".into()),
                Null,
                T("abc".into()),
                Null,
                Null,
                Null,
                Null,
                Null,
                Null
            ]
        );
    }

    #[test]
    fn a_full_push_fills_every_column() {
        let values = only_row(transform(
            r#"{"ref":"refs/heads/main","head_commit":{"id":"c","timestamp":"2019-06-24T10:36:47Z"},
                "sender":{"login":"octocat"},
                "repository":{"full_name":"o/r","stargazers_count":3,"language":"Rust",
                              "forks_count":1,"open_issues_count":0}}"#,
        ));
        assert_eq!(
            values,
            vec![
                T("o/r".into()),
                T("octocat".into()),
                T("c".into()),
                T("2019-06-24T10:36:47Z".into()),
                I(3),
                T("Rust".into()),
                I(1),
                I(0),
                T("refs/heads/main".into()),
            ]
        );
    }

    #[test]
    fn deliveries_without_a_truthy_head_commit_are_refused() {
        for data in [
            r#"{"zen":"ping"}"#,
            r#"{"head_commit":null}"#,
            r#"{"head_commit":{}}"#,
            r#"{"head_commit":""}"#,
        ] {
            assert!(matches!(transform(data), Outcome::Refused(_)), "{data}");
        }
    }

    #[test]
    fn wrong_kinds_give_null_not_errors() {
        let values = only_row(transform(
            r#"{"head_commit":{"id":5},"repository":{"full_name":["x"],"stargazers_count":"3"}}"#,
        ));
        assert!(values.iter().all(|value| *value == Null));
    }
}
