//! The document envelope and its checks.

use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The longest id the tables accept (`VARCHAR(24)`: base64 of 16 bytes).
pub const MAX_ID_LEN: usize = 24;

/// A checked document envelope: `{"id", "timestamp", "type", "data"}`. It keeps the element
/// exactly as read (a slice of the source's buffer, not a copy), so that a failed document is
/// kept byte for byte, and `data` is a range of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub timestamp: i64,
    /// The type the document says it is, when it says.
    pub type_name: Option<String>,
    /// The element as read; valid UTF-8 (checked when the envelope was).
    raw: Bytes,
    /// Where the payload is in `raw`: always an object.
    data: Range<usize>,
}

impl Envelope {
    /// The payload as JSON text: always an object.
    pub fn data(&self) -> &str {
        as_text(&self.raw[self.data.clone()])
    }

    /// The document exactly as the source had it.
    pub fn raw(&self) -> &str {
        as_text(&self.raw)
    }

    /// The bytes this envelope holds on to.
    pub fn size(&self) -> usize {
        self.raw.len()
    }

    /// An envelope made from its parts, for documents that come from elsewhere than a source
    /// (tests, `plugin check`): the raw text is composed from them.
    pub fn from_parts(id: &str, timestamp: i64, type_name: Option<&str>, data: &str) -> Self {
        let mut raw = format!(
            "{{\"id\":{},\"timestamp\":{timestamp},",
            serde_json::Value::from(id)
        );
        if let Some(type_name) = type_name {
            raw.push_str(&format!("\"type\":{},", serde_json::Value::from(type_name)));
        }
        raw.push_str("\"data\":");
        let start = raw.len();
        raw.push_str(data);
        let end = raw.len();
        raw.push('}');
        Envelope {
            id: id.to_owned(),
            timestamp,
            type_name: type_name.map(str::to_owned),
            raw: Bytes::from(raw),
            data: start..end,
        }
    }
}

/// `raw` was checked to be UTF-8 when the envelope was made; a range of it taken from the
/// parser's own slices keeps that.
fn as_text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
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

/// Checks one element of a source, as read.
pub fn check_envelope(element: Bytes) -> Result<Envelope, EnvelopeError> {
    let raw = match std::str::from_utf8(&element) {
        Ok(raw) => raw,
        Err(error) => {
            return Err(EnvelopeError {
                id: None,
                timestamp: None,
                type_name: None,
                reason: format!("not UTF-8: {error}"),
                raw: String::from_utf8_lossy(&element).into_owned(),
            });
        }
    };
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
    let id_length = checked_id.chars().count();
    if id_length == 0 || id_length > MAX_ID_LEN {
        return Err(fail(format!(
            "id must have 1 to {MAX_ID_LEN} characters, has {id_length}"
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
    // `data` borrows from `raw`, so its place in the element is where its text starts.
    let start = data.get().as_ptr() as usize - raw.as_ptr() as usize;
    let data = start..start + data.get().len();
    Ok(Envelope {
        id: checked_id,
        timestamp: checked_timestamp,
        type_name,
        raw: element,
        data,
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
        let envelope = check_envelope(Bytes::from_static(raw.as_bytes())).unwrap();
        assert_eq!(envelope.id, "AAAAAF0Qp79lNx8dkdk1qQ==");
        assert_eq!(envelope.timestamp, 1561372607);
        assert_eq!(envelope.type_name.as_deref(), Some("GithubType"));
        assert_eq!(envelope.data(), r#"{"a": [1, 2]}"#);
        assert_eq!(envelope.raw(), raw);
        let made = Envelope::from_parts("i", 5, Some("T"), r#"{"x":1}"#);
        let checked = check_envelope(Bytes::from(made.raw().to_owned())).unwrap();
        assert_eq!(checked, made);
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
            // Characters, not bytes: 24 two-byte characters are a valid length.
            (
                r#"{"id":"ééééééééééééééééééééééééé","timestamp":1,"data":{}}"#,
                "id must have 1 to 24 characters, has 25",
            ),
        ];
        let accented = format!(r#"{{"id":"{}","timestamp":1,"data":{{}}}}"#, "é".repeat(24));
        assert!(check_envelope(Bytes::from(accented)).is_ok());
        for (raw, reason) in cases {
            let error = check_envelope(Bytes::from_static(raw.as_bytes())).unwrap_err();
            assert!(error.reason.starts_with(reason), "{raw}: {}", error.reason);
            assert_eq!(error.raw, raw);
        }
        let error = check_envelope(Bytes::from_static(
            br#"{"id":"a","timestamp":"x","data":{}}"#,
        ))
        .unwrap_err();
        assert_eq!(
            error.id.as_deref(),
            Some("a"),
            "a usable id is kept for the dead letter"
        );
    }
}
