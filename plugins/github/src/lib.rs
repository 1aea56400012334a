//! `GithubType`: one row per GitHub push delivery that has a `head_commit`.
//!
//! The raw store holds the body of every webhook delivery of a public repository (push, ping,
//! create, issues, …). Only real pushes carry a `head_commit`; everything else is refused.

use aurora_plugin_sdk::{Document, Field, Host, Outcome, Plugin, PluginError, export_plugin};
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

aurora_plugin_sdk::columns! {
    /// One row per push: the columns of the old job's `GithubType` table, in its order.
    struct PushRow {
        repository_name: Text,
        github_username: Text,
        commit_id: Text,
        commit_timestamp: Text,
        stargazers_count: Int,
        language: Text,
        forks_count: Int,
        open_issues_count: Int,
        git_ref as "ref": Text,
    }
}

impl Plugin for Github {
    const TYPE_NAME: &'static str = "GithubType";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    type Row = PushRow;

    fn transform(document: &Document, _host: &dyn Host) -> Result<Outcome, PluginError> {
        let delivery: Delivery = document.parse()?;
        // The old job kept a document when `data.get("head_commit")` was truthy.
        if !delivery.head_commit.is_truthy() {
            return Ok(Outcome::refused("no head_commit: not a push"));
        }
        let repository = delivery.repository.into_option().unwrap_or_default();
        let sender = delivery.sender.into_option().unwrap_or_default();
        let head_commit = delivery.head_commit.into_option().unwrap_or_default();
        Ok(Outcome::row(PushRow {
            repository_name: repository.full_name.into(),
            github_username: sender.login.into(),
            commit_id: head_commit.id.into(),
            commit_timestamp: head_commit.timestamp.into(),
            stargazers_count: repository.stargazers_count.into(),
            language: repository.language.into(),
            forks_count: repository.forks_count.into(),
            open_issues_count: repository.open_issues_count.into(),
            git_ref: delivery.git_ref.into(),
        }))
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
    fn issue_7_arrays_are_not_read_as_objects_by_position() {
        let values = only_row(transform(
            r#"{"head_commit":{"id":"c"},"repository":["o/r",7,"Rust",1,2],"sender":["octocat"]}"#,
        ));
        assert_eq!(values[0], Null, "repository_name");
        assert_eq!(values[1], Null, "github_username");
        assert_eq!(&values[4..8], [Null, Null, Null, Null]);
        // A non-empty list is truthy, so the push is kept, with NULL commit columns.
        let values = only_row(transform(
            r#"{"head_commit":["abc","2019-06-24T10:36:47Z"],"repository":{"full_name":"o/r"}}"#,
        ));
        assert_eq!(values[..4], [T("o/r".into()), Null, Null, Null]);
    }

    #[test]
    fn issue_7_a_repeated_key_keeps_the_last_value_at_every_depth() {
        let values = only_row(transform(
            r#"{"ref":"a","head_commit":{"id":"x","id":"c"},"ref":"b",
                "repository":{"full_name":"o/old","stargazers_count":1,"full_name":"o/r"}}"#,
        ));
        assert_eq!(values[0], T("o/r".into()));
        assert_eq!(values[2], T("c".into()));
        assert_eq!(values[4], I(1));
        assert_eq!(values[8], T("b".into()));
        // Nested twice, and a repeated object replaced whole.
        let values = only_row(transform(
            r#"{"head_commit":{"id":"c"},"repository":{"full_name":"o/a"},"repository":{"language":"Go"}}"#,
        ));
        assert_eq!(values[0], Null);
        assert_eq!(values[5], T("Go".into()));
    }

    #[test]
    fn issue_7_a_lone_surrogate_fails_the_document_naming_the_fault() {
        let document = Document {
            id: "AAAAAF0Qp79lNx8dkdk1qQ==".into(),
            timestamp: 1,
            data: r#"{"head_commit":{"id":"\ud800"}}"#.into(),
        };
        let error = Github::transform(&document, &StaticHost::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("lone surrogate"), "{error}");
        assert!(!error.contains("end of hex escape"), "{error}");
    }

    #[test]
    fn golden_fixtures() {
        aurora_plugin_sdk::testing::golden::<Github>(
            env!("CARGO_MANIFEST_DIR"),
            &StaticHost::new(),
        );
    }

    #[test]
    fn wrong_kinds_give_null_not_errors() {
        let values = only_row(transform(
            r#"{"head_commit":{"id":5},"repository":{"full_name":["x"],"stargazers_count":"3"}}"#,
        ));
        assert!(values.iter().all(|value| *value == Null));
    }
}

#[cfg(test)]
mod input_paths {
    use super::*;

    /// The paths the host hands the plugin are those of `Delivery`'s fields, found by the SDK.
    #[test]
    fn are_the_fields_of_the_delivery() {
        assert_eq!(
            aurora_plugin_sdk::input::input_paths::<Github>().unwrap(),
            [
                "/data/head_commit/id",
                "/data/head_commit/timestamp",
                "/data/ref",
                "/data/repository/forks_count",
                "/data/repository/full_name",
                "/data/repository/language",
                "/data/repository/open_issues_count",
                "/data/repository/stargazers_count",
                "/data/sender/login",
            ]
        );
    }
}
