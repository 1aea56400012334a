//! `EventRatingType`: one row per button press on an event rating box, with the event's name.
//!
//! A rating names its event only by a code, and codes are reused over time, so the event is the
//! one whose code was valid at the moment of the press (strictly inside its validity window).

use aurora_plugin_sdk::{
    Capability, Document, Field, Host, Outcome, Plugin, PluginError, export_plugin,
};
use serde::Deserialize;

struct EventRating;

/// The reference table of events, configured by the operator (`DATAPLATTFORM_EVENT_CODE_TABLE`).
const EVENT_CODES: &str = "event-codes";

#[derive(Deserialize)]
struct Rating {
    #[serde(default)]
    button: Field<i64>,
    #[serde(default)]
    event_code: Field<EventCode>,
}

/// Codes are strings (`"101010"`), but a number is read the same way.
#[derive(Deserialize)]
#[serde(untagged)]
enum EventCode {
    Text(String),
    Number(u64),
}

/// One item of the event-code table.
#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    event_name: Field<serde_json::Value>,
    #[serde(default)]
    code_valid_from: Field<f64>,
    #[serde(default)]
    code_valid_to: Field<f64>,
}

impl Event {
    /// The event's name as the old job stored it: a string as it is, a number as its text
    /// (`5` → `"5"`, `5.5` → `"5.5"`: Python's `str()` of the `Decimal` boto3 reads from
    /// DynamoDB, in plain decimal notation). Anything else (a boolean, a list, an object) is no
    /// name.
    fn name(self) -> Option<String> {
        match self.event_name.into_option()? {
            serde_json::Value::String(name) => Some(name),
            serde_json::Value::Number(number) => Some(number_text(&number)),
            _ => None,
        }
    }

    fn valid_at(&self, timestamp: i64) -> bool {
        let at = timestamp as f64;
        matches!(
            (self.code_valid_from.get(), self.code_valid_to.get()),
            (Some(from), Some(to)) if *from < at && at < *to
        )
    }
}

/// A number in plain decimal notation, as DynamoDB gives it and Python's `str(Decimal)` keeps
/// it: integers exactly (`-0` is 0), others by their shortest round-trip digits.
fn number_text(number: &serde_json::Number) -> String {
    if let Some(integer) = aurora_plugin_sdk::integer(number) {
        return integer.to_string();
    }
    if let Some(unsigned) = number.as_u64() {
        return unsigned.to_string();
    }
    // Every JSON number serde_json reads without arbitrary precision is an f64 otherwise;
    // Rust's `Display` of an f64 is plain decimal notation with the shortest exact digits.
    number
        .as_f64()
        .map_or_else(|| number.to_string(), |float| float.to_string())
}

aurora_plugin_sdk::columns! {
    /// One row per press.
    struct PressRow {
        button: Int,
        event_name: Text,
    }
}

impl Plugin for EventRating {
    const TYPE_NAME: &'static str = "EventRatingType";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    type Row = PressRow;

    fn capabilities() -> Vec<Capability> {
        vec![Capability::ReferenceTable(EVENT_CODES.into())]
    }

    fn transform(document: &Document, host: &dyn Host) -> Result<Outcome, PluginError> {
        let rating: Rating = document.parse()?;
        let code = match rating.event_code.into_option() {
            Some(EventCode::Text(code)) => code,
            Some(EventCode::Number(code)) => code.to_string(),
            None => return Ok(Outcome::refused("no event_code")),
        };
        // A lookup failure fails the document (it is kept), rather than refusing it for good.
        let items = host.reference_lookup(EVENT_CODES, &code)?;
        let mut event_name = None;
        for item in &items {
            let event: Event = serde_json::from_str(item).map_err(|error| {
                PluginError::CapabilityFailed(format!("event item is not valid: {error}"))
            })?;
            if event.valid_at(document.timestamp) {
                event_name = Some(event.name());
                break;
            }
        }
        match event_name {
            Some(Some(name)) => Ok(Outcome::row(PressRow {
                button: rating.button.into(),
                event_name: Some(name),
            })),
            // The old job's `accept_row` required the event's name.
            Some(None) => Ok(Outcome::refused(format!(
                "the event with code {code} valid at {} has no event_name",
                document.timestamp
            ))),
            None => Ok(Outcome::refused(format!(
                "no event with code {code} valid at {}",
                document.timestamp
            ))),
        }
    }
}

export_plugin!(EventRating);

#[cfg(test)]
mod tests {
    use super::*;
    use aurora_plugin_sdk::Value;
    use aurora_plugin_sdk::testing::StaticHost;
    use serde_json::json;

    fn host() -> StaticHost {
        let event = |name: &str, from: i64, to: i64| {
            json!({"event_id": name, "event_code": "101010", "event_name": name,
                   "code_valid_from": from, "code_valid_to": to})
        };
        StaticHost::new()
            .with_reference(EVENT_CODES, "101010", event("asdf", 0, 1000))
            .with_reference(EVENT_CODES, "101010", event("asdf2", 5000, 99000))
    }

    fn press(timestamp: i64, data: &str) -> Outcome {
        let document = Document {
            id: "AAAAAF0Qp79lNx8dkdk1qQ==".into(),
            timestamp,
            data: data.into(),
        };
        EventRating::transform(&document, &host()).unwrap()
    }

    fn event_name(outcome: Outcome) -> Option<String> {
        match outcome {
            Outcome::Rows(rows) => match &rows[0].values[..] {
                [Value::Int(1), Value::Text(name)] => Some(name.clone()),
                other => panic!("unexpected row {other:?}"),
            },
            Outcome::Refused(_) => None,
            Outcome::Failed(error) => panic!("failed: {error}"),
        }
    }

    #[test]
    fn contract_6_presses_match_the_event_valid_at_their_time() {
        let data = r#"{"button":1,"event_code":"101010"}"#;
        assert_eq!(event_name(press(50, data)).as_deref(), Some("asdf"));
        assert_eq!(event_name(press(5001, data)).as_deref(), Some("asdf2"));
        assert_eq!(event_name(press(1001, data)), None);
    }

    #[test]
    fn validity_bounds_are_strict() {
        let data = r#"{"button":1,"event_code":"101010"}"#;
        assert_eq!(event_name(press(0, data)), None);
        assert_eq!(event_name(press(1000, data)), None);
    }

    #[test]
    fn a_press_without_a_code_is_refused() {
        assert!(matches!(press(50, r#"{"button":1}"#), Outcome::Refused(_)));
        assert_eq!(
            event_name(press(50, r#"{"button":1,"event_code":101010}"#)).as_deref(),
            Some("asdf")
        );
    }

    #[test]
    fn issue_7_a_matched_event_without_a_name_is_refused() {
        for event in [
            json!({"event_code": "7", "code_valid_from": 0, "code_valid_to": 1000}),
            json!({"event_code": "7", "event_name": null, "code_valid_from": 0, "code_valid_to": 1000}),
            json!({"event_code": "7", "event_name": true, "code_valid_from": 0, "code_valid_to": 1000}),
            json!({"event_code": "7", "event_name": ["a"], "code_valid_from": 0, "code_valid_to": 1000}),
        ] {
            let host = StaticHost::new().with_reference(EVENT_CODES, "7", event.clone());
            let document = Document {
                id: "x".into(),
                timestamp: 50,
                data: r#"{"button":1,"event_code":"7"}"#.into(),
            };
            let outcome = EventRating::transform(&document, &host).unwrap();
            assert!(
                matches!(&outcome, Outcome::Refused(reason) if reason.contains("no event_name")),
                "{event}: {outcome:?}"
            );
        }
    }

    #[test]
    fn a_numeric_event_name_is_stored_as_the_old_job_stored_it() {
        for (name, stored) in [
            (json!(5), "5"),
            (json!(-0.0), "0"),
            (json!(5.5), "5.5"),
            (json!(5.0), "5"),
            (
                json!(100_000_000_000_000_000_000.0),
                "100000000000000000000",
            ),
            (
                json!(18_446_744_073_709_551_615_u64),
                "18446744073709551615",
            ),
            (json!("asdf"), "asdf"),
        ] {
            let item = json!({"event_code": "7", "event_name": name, "code_valid_from": 0,
                              "code_valid_to": 1000});
            let host = StaticHost::new().with_reference(EVENT_CODES, "7", item);
            let document = Document {
                id: "x".into(),
                timestamp: 50,
                data: r#"{"button":1,"event_code":"7"}"#.into(),
            };
            let outcome = EventRating::transform(&document, &host).unwrap();
            assert_eq!(event_name(outcome).as_deref(), Some(stored), "{name}");
        }
    }

    #[test]
    fn golden_fixtures() {
        aurora_plugin_sdk::testing::golden::<EventRating>(env!("CARGO_MANIFEST_DIR"), &host());
    }

    #[test]
    fn an_unconfigured_table_fails_the_document_so_it_is_kept() {
        let document = Document {
            id: "x".into(),
            timestamp: 50,
            data: r#"{"button":1,"event_code":"101010"}"#.into(),
        };
        assert!(EventRating::transform(&document, &StaticHost::new()).is_err());
    }
}
