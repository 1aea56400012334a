//! `SlackType`: one row per Slack Events API envelope, with the channel's name looked up.

use aurora_plugin_sdk::{
    Capability, Document, Field, Host, LookupError, Outcome, Plugin, PluginError, export_plugin,
};
use serde::Deserialize;

struct Slack;

/// The parts of an Events API envelope this type keeps. Every member is a lenient [`Field`], so
/// a missing attribute or one of the wrong kind gives NULL, and the members it does not read are
/// skipped unparsed, as the GitHub and EventRating plugins skip theirs (and as the old job,
/// which read only these paths, stored such documents).
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    team_id: Field<String>,
    #[serde(default)]
    event_time: Field<i64>,
    #[serde(default)]
    event: Field<Event>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Event {
    #[serde(rename = "type")]
    event_type: Field<String>,
    /// A channel id; some events carry none, or a channel object (`channel_created`).
    channel: Field<String>,
}

aurora_plugin_sdk::columns! {
    /// One row per Events API envelope.
    struct EventRow {
        event_type: Text,
        slack_timestamp: Int,
        team_id: Text,
        channel_name: Text,
    }
}

impl Plugin for Slack {
    const TYPE_NAME: &'static str = "SlackType";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    type Row = EventRow;

    fn capabilities() -> Vec<Capability> {
        vec![Capability::SlackChannels]
    }

    fn transform(document: &Document, host: &dyn Host) -> Result<Outcome, PluginError> {
        let envelope: Envelope = document.parse()?;
        let event = envelope.event.into_option().unwrap_or_default();
        // Events without a channel id get a NULL name rather than a lookup. The old job
        // crashed on them.
        let channel_name = match event.channel.get() {
            Some(channel_id) => channel_name(host, channel_id)?,
            None => None,
        };
        Ok(Outcome::row(EventRow {
            event_type: event.event_type.into(),
            slack_timestamp: envelope.event_time.into(),
            team_id: envelope.team_id.into(),
            channel_name,
        }))
    }
}

/// The channel's name; NULL when Slack does not know the channel or no token is configured
/// (the host's run summary says so). Any other failure fails the document, so that it is kept
/// and can be loaded again rather than stored with a name missing for good.
fn channel_name(host: &dyn Host, channel_id: &str) -> Result<Option<String>, PluginError> {
    match host.slack_channel(channel_id) {
        Ok(channel) => Ok(channel.map(|channel| channel.name)),
        Err(LookupError::NotConfigured(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

export_plugin!(Slack);

#[cfg(test)]
mod tests {
    use super::*;
    use aurora_plugin_sdk::Value::{self, Int as I, Null, Text as T};
    use aurora_plugin_sdk::testing::StaticHost;

    fn transform(data: &str, host: &StaticHost) -> Vec<Value> {
        let document = Document {
            id: "AAAAAF0Qp79lNx8dkdk1qQ==".into(),
            timestamp: 1561372607,
            data: data.into(),
        };
        match Slack::transform(&document, host).unwrap() {
            Outcome::Rows(rows) => rows.into_iter().next().unwrap().values,
            other => panic!("expected a row, got {other:?}"),
        }
    }

    const MESSAGE: &str = r#"{"type":"event_callback","team_id":"T1","event_time":1561372607,
        "event":{"type":"message","channel":"C1","ts":"1561372607.000200"}}"#;

    #[test]
    fn contract_6_a_known_channel_gives_its_name() {
        let host = StaticHost::new().with_channel("C1", Some("Epic Channel name"));
        assert_eq!(
            transform(MESSAGE, &host),
            vec![
                T("message".into()),
                I(1561372607),
                T("T1".into()),
                T("Epic Channel name".into())
            ]
        );
    }

    #[test]
    fn contract_6_an_unknown_channel_gives_null() {
        let host = StaticHost::new().with_channel("C1", None);
        assert_eq!(transform(MESSAGE, &host)[3], Null);
    }

    #[test]
    fn no_token_gives_null_names() {
        assert_eq!(transform(MESSAGE, &StaticHost::new())[3], Null);
    }

    #[test]
    fn golden_fixtures() {
        let host = StaticHost::new()
            .with_channel("C1", Some("Epic Channel name"))
            .with_channel("C9", None);
        aurora_plugin_sdk::testing::golden::<Slack>(env!("CARGO_MANIFEST_DIR"), &host);
    }

    #[test]
    fn members_it_never_reads_are_skipped_unparsed_as_in_the_other_plugins() {
        let host = StaticHost::new().with_channel("C1", Some("general"));
        let deep = format!("{}1{}", "[".repeat(600), "]".repeat(600));
        for unread in [r#""\ud800""#, "1e400", deep.as_str()] {
            let data = format!(
                r#"{{"team_id":"T1","event_time":5,"authed_users":{unread},
                    "event":{{"type":"message","channel":"C1","blocks":{unread}}}}}"#
            );
            assert_eq!(
                transform(&data, &host),
                vec![
                    T("message".into()),
                    I(5),
                    T("T1".into()),
                    T("general".into())
                ],
                "{unread}"
            );
        }
        // In a member it reads, a lone surrogate is a broken document, as everywhere.
        let document = Document {
            id: "AAAAAF0Qp79lNx8dkdk1qQ==".into(),
            timestamp: 1,
            data: r#"{"team_id":"\ud800"}"#.into(),
        };
        let error = Slack::transform(&document, &host).unwrap_err().to_string();
        assert!(error.contains("lone surrogate"), "{error}");
    }

    #[test]
    fn an_integer_minus_zero_is_zero_and_a_repeated_key_keeps_its_last_value() {
        let host = StaticHost::new().with_channel("C2", Some("second"));
        let data = r#"{"event_time":-0,"event":{"channel":"C1","type":"a"},
            "event":{"channel":"C2","type":"b"},"team_id":"T0","team_id":"T1"}"#;
        assert_eq!(
            transform(data, &host),
            vec![T("b".into()), I(0), T("T1".into()), T("second".into())]
        );
    }

    #[test]
    fn events_without_a_channel_or_with_a_channel_object_do_not_crash() {
        let host = StaticHost::new().with_channel("C1", Some("x"));
        let reaction = r#"{"team_id":"T1","event_time":1,"event":{"type":"reaction_added",
            "item":{"type":"message","channel":"C1","ts":"1.2"}}}"#;
        let created = r#"{"team_id":"T1","event_time":1,"event":{"type":"channel_created",
            "channel":{"id":"C2","name":"new","created":1}}}"#;
        assert_eq!(transform(reaction, &host)[3], Null);
        assert_eq!(transform(created, &host)[3], Null);
        assert_eq!(transform("{}", &host), vec![Null, Null, Null, Null]);
    }
}
