//! The document envelope and its checks.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The longest id the tables accept (`VARCHAR(24)`: base64 of 16 bytes).
pub const MAX_ID_LEN: usize = 24;

/// A checked document envelope: `{"id", "timestamp", "type", "data"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub timestamp: i64,
    /// The type the document says it is, when it says.
    pub type_name: Option<String>,
    /// The payload as JSON text: always an object.
    pub data: String,
}

/// Why an element of a source is not a usable envelope. The raw text is kept with it so that
/// the document can be stored as failed and nothing is lost.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeError {
    /// The id, when the element had a usable one.
    pub id: Option<String>,
    pub timestamp: Option<i64>,
    pub type_name: Option<String>,
    pub reason: String,
    pub raw: String,
}

/// The envelope's fields, loosely typed so that every wrong kind gets its own message.
#[derive(Deserialize)]
struct Loose<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(default, rename = "type", borrow)]
    type_name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// Checks one element of a source. `raw` is the element's JSON text.
pub fn check_envelope(raw: &str) -> Result<Envelope, EnvelopeError> {
    let fail = |reason: String, id: Option<String>, timestamp, type_name| EnvelopeError {
        id,
        timestamp,
        type_name,
        reason,
        raw: raw.to_owned(),
    };
    // A derived struct would also accept an array, positionally; an envelope is an object.
    if !raw.trim_start().starts_with('{') {
        return Err(fail(
            format!("not a JSON object: {}", abbreviate(raw)),
            None,
            None,
            None,
        ));
    }
    let loose: Loose = serde_json::from_str(raw)
        .map_err(|error| fail(format!("not a JSON object: {error}"), None, None, None))?;
    let id = loose
        .id
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
    let timestamp = loose
        .timestamp
        .and_then(|v| serde_json::from_str::<i64>(v.get()).ok());
    let type_name = match loose.type_name {
        None => None,
        Some(v) if v.get() == "null" => None,
        Some(v) => match serde_json::from_str::<String>(v.get()) {
            Ok(name) => Some(name),
            Err(_) => {
                return Err(fail(
                    format!("type is not a string: {}", v.get()),
                    id,
                    timestamp,
                    None,
                ));
            }
        },
    };
    let fail = |reason: String| fail(reason, id.clone(), timestamp, type_name.clone());
    let Some(id_value) = loose.id else {
        return Err(fail("missing id".into()));
    };
    let Some(checked_id) = id.clone() else {
        return Err(fail(format!("id is not a string: {}", id_value.get())));
    };
    if checked_id.is_empty() || checked_id.len() > MAX_ID_LEN {
        return Err(fail(format!(
            "id must have 1 to {MAX_ID_LEN} characters, has {}",
            checked_id.len()
        )));
    }
    let Some(timestamp_value) = loose.timestamp else {
        return Err(fail("missing timestamp".into()));
    };
    let Some(checked_timestamp) = timestamp else {
        return Err(fail(format!(
            "timestamp is not an integer of Unix seconds: {}",
            timestamp_value.get()
        )));
    };
    let Some(data) = loose.data else {
        return Err(fail("missing data".into()));
    };
    if !data.get().starts_with('{') {
        return Err(fail(format!(
            "data is not an object: {}",
            abbreviate(data.get())
        )));
    }
    Ok(Envelope {
        id: checked_id,
        timestamp: checked_timestamp,
        type_name,
        data: data.get().to_owned(),
    })
}

fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_envelope_passes_with_its_data_untouched() {
        let raw = r#"{"id":"AAAAAF0Qp79lNx8dkdk1qQ==","timestamp":1561372607,"type":"GithubType","data":{"a": [1, 2]}}"#;
        let envelope = check_envelope(raw).unwrap();
        assert_eq!(envelope.id, "AAAAAF0Qp79lNx8dkdk1qQ==");
        assert_eq!(envelope.timestamp, 1561372607);
        assert_eq!(envelope.type_name.as_deref(), Some("GithubType"));
        assert_eq!(envelope.data, r#"{"a": [1, 2]}"#);
    }

    #[test]
    fn every_bad_envelope_has_its_own_reason_and_keeps_the_raw_text() {
        let cases = [
            (r#"[1]"#, "not a JSON object"),
            (r#"{"timestamp":1,"data":{}}"#, "missing id"),
            (r#"{"id":5,"timestamp":1,"data":{}}"#, "id is not a string"),
            (r#"{"id":"","timestamp":1,"data":{}}"#, "id must have"),
            (
                r#"{"id":"aaaaaaaaaaaaaaaaaaaaaaaaa","timestamp":1,"data":{}}"#,
                "id must have",
            ),
            (r#"{"id":"a","data":{}}"#, "missing timestamp"),
            (
                r#"{"id":"a","timestamp":"1","data":{}}"#,
                "timestamp is not an integer",
            ),
            (
                r#"{"id":"a","timestamp":1.5,"data":{}}"#,
                "timestamp is not an integer",
            ),
            (r#"{"id":"a","timestamp":1}"#, "missing data"),
            (
                r#"{"id":"a","timestamp":1,"data":[]}"#,
                "data is not an object",
            ),
            (
                r#"{"id":"a","timestamp":1,"type":3,"data":{}}"#,
                "type is not a string",
            ),
        ];
        for (raw, reason) in cases {
            let error = check_envelope(raw).unwrap_err();
            assert!(error.reason.starts_with(reason), "{raw}: {}", error.reason);
            assert_eq!(error.raw, raw);
        }
        let error = check_envelope(r#"{"id":"a","timestamp":"x","data":{}}"#).unwrap_err();
        assert_eq!(
            error.id.as_deref(),
            Some("a"),
            "a usable id is kept for the dead letter"
        );
    }
}
