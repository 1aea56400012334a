//! The document envelope and its checks.

use std::ops::Range;

use bytes::Bytes;
use bytestring::ByteString;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::source::scan::{Element, MemberSpan};

/// The longest id the tables accept (`VARCHAR(24)`: base64 of 16 bytes).
pub const MAX_ID_LEN: usize = 24;

/// Checks that an id fits the tables (1 to [`MAX_ID_LEN`] characters, not bytes); the reason
/// when it does not.
pub fn check_id_length(id: &str) -> Result<(), String> {
    let length = id.chars().count();
    if length == 0 || length > MAX_ID_LEN {
        return Err(format!(
            "id must have 1 to {MAX_ID_LEN} characters, has {length}"
        ));
    }
    Ok(())
}

/// A checked document envelope: `{"id", "timestamp", "type", "data"}`. It keeps the element
/// exactly as read (a slice of the source's buffer, not a copy), so that a failed document is
/// kept byte for byte, and `data` is a range of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub timestamp: i64,
    /// The type the document says it is, when it says.
    pub type_name: Option<String>,
    /// The element as read (UTF-8 was checked once, when the envelope was).
    raw: ByteString,
    /// Where the payload is in `raw`: always an object.
    data: Range<usize>,
    /// In a replay, the dead letter it came from (its place in the replay's list).
    pub origin: Option<usize>,
}

impl Envelope {
    /// The payload as JSON text: always an object.
    pub fn data(&self) -> &str {
        &self.raw[self.data.clone()]
    }

    /// The document exactly as the source had it.
    pub fn raw(&self) -> &str {
        &self.raw
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
            raw: ByteString::from(raw),
            data: start..end,
            origin: None,
        }
    }
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

/// The members of a JSON object, each value as its raw text. A repeated key keeps its last value,
/// as Python's `json` (and so the old job) does, at the top level as everywhere else. Values
/// are only checked to be well formed, however deep they nest: a member nobody reads is never
/// parsed into anything.
pub struct ObjectMembers<'a> {
    members: std::collections::HashMap<String, &'a RawValue>,
}

impl<'a> ObjectMembers<'a> {
    /// The members of `text`, which must be one JSON object.
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The raw value of a member, when the object has it.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members.get(key).copied()
    }
}

impl<'de> Deserialize<'de> for ObjectMembers<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> serde::de::Visitor<'de> for MembersVisitor {
            type Value = ObjectMembers<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = std::collections::HashMap::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    members.insert(key, value);
                }
                Ok(ObjectMembers { members })
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// Checks one element of a source, as read. When the scan noted the members of the element's
/// object, only their bytes are read: `id`, `timestamp` and `type` are parsed from their own
/// few bytes and `data` is checked to be an object by its brackets; its inside is left to the
/// plugin's parser, the one full pass over it. A repeated member keeps its last value, both
/// ways. Anything unusual (a member key with an escape, a value of the wrong kind, a top level
/// that is not well formed) goes the long way, [`parse_envelope`], which parses the element
/// whole and says what is wrong.
pub fn envelope_of_element(element: Element) -> Result<Envelope, EnvelopeError> {
    let Element { bytes, members } = element;
    let Some(members) = members else {
        return parse_envelope(bytes);
    };
    // A clone of `Bytes` shares the buffer; the long way needs the bytes to say what is wrong.
    let Ok(raw) = ByteString::try_from(bytes.clone()) else {
        return parse_envelope(bytes);
    };
    match from_members(&raw, &members) {
        Some(fields) => Ok(Envelope {
            id: fields.id,
            timestamp: fields.timestamp,
            type_name: fields.type_name,
            raw,
            data: fields.data,
            origin: None,
        }),
        None => parse_envelope(raw.into_bytes()),
    }
}

/// The envelope's fields read from their members, or `None` when anything is unusual.
struct Fields {
    id: String,
    timestamp: i64,
    type_name: Option<String>,
    data: Range<usize>,
}

fn from_members(raw: &str, members: &[MemberSpan]) -> Option<Fields> {
    let (mut id, mut timestamp, mut type_name, mut data) = (None, None, None, None);
    for member in members {
        let value = &raw[member.value.clone()];
        let slot = match &raw[member.key.clone()] {
            "\"id\"" => &mut id,
            "\"timestamp\"" => &mut timestamp,
            "\"type\"" => &mut type_name,
            "\"data\"" => &mut data,
            // Any other member is ignored, as the long way ignores it, once it parses.
            key if !key.contains('\\') => {
                serde_json::from_str::<IgnoredAny>(value).ok()?;
                continue;
            }
            _ => return None,
        };
        // A repeated member keeps its last value, as the long way does.
        *slot = Some(member.value.clone());
    }
    let id: String = serde_json::from_str(&raw[id?]).ok()?;
    check_id_length(&id).ok()?;
    let timestamp: i64 = serde_json::from_str(&raw[timestamp?]).ok()?;
    let type_name = match type_name {
        None => None,
        Some(range) => serde_json::from_str::<Option<String>>(&raw[range]).ok()?,
    };
    // The scan ended the value at its closing bracket; which bracket it was, it did not say.
    let data = data?;
    let text = &raw[data.clone()];
    if !(text.starts_with('{') && text.ends_with('}')) {
        return None;
    }
    Some(Fields {
        id,
        timestamp,
        type_name,
        data,
    })
}

/// Reads one element of a source into an envelope by parsing it whole, saying what is wrong.
pub fn parse_envelope(element: Bytes) -> Result<Envelope, EnvelopeError> {
    let text = match ByteString::try_from(element.clone()) {
        Ok(text) => text,
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
    let raw: &str = &text;
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
    let members = ObjectMembers::parse(raw)
        .map_err(|error| fail(format!("not a JSON object: {error}"), None, None, None))?;
    let [id_value, timestamp_value, type_value, data] =
        ["id", "timestamp", "type", "data"].map(|key| members.get(key));
    let id = id_value.and_then(|v| serde_json::from_str::<String>(v.get()).ok());
    let timestamp = timestamp_value.and_then(|v| serde_json::from_str::<i64>(v.get()).ok());
    let type_name = match type_value {
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
    let Some(id_value) = id_value else {
        return Err(fail("missing id".into()));
    };
    let Some(checked_id) = id.clone() else {
        return Err(fail(format!("id is not a string: {}", id_value.get())));
    };
    check_id_length(&checked_id).map_err(fail)?;
    let Some(timestamp_value) = timestamp_value else {
        return Err(fail("missing timestamp".into()));
    };
    let Some(checked_timestamp) = timestamp else {
        return Err(fail(format!(
            "timestamp is not an integer of Unix seconds: {}",
            timestamp_value.get()
        )));
    };
    let Some(data) = data else {
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
        raw: text.clone(),
        data,
        origin: None,
    })
}

/// Text cut short (80 characters) for a message.
pub(crate) fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::scan::ArrayScanner;

    /// The element as a source gives it: from the array scanner, with its members noted.
    fn scanned(raw: &str) -> Element {
        let body = format!("[{raw}]");
        let mut scanner = ArrayScanner::new(body.as_bytes());
        scanner.next_element().unwrap().unwrap()
    }

    #[test]
    fn the_scanned_members_give_what_parsing_the_whole_element_gives() {
        let cases = [
            r#"{"id":"AAAAAF0Qp79lNx8dkdk1qQ==","timestamp":1561372607,"type":"GithubType","data":{"a":"}"}}"#,
            " { \"id\" : \"a\" ,\n\t\"timestamp\" : -1 , \"data\" : { \"x\" : [1, {\"y\": \"}]\"}] } } ",
            r#"{"data":{},"timestamp":1,"id":"a\"b\\c\u00e9","type":null,"extra":[1,{"n":null}],"z":-2.5e3}"#,
            r#"{"id":"a","timestamp":1,"data":{},"flag":true,"none":null}"#,
            r#"{"\u0069d":"escaped key","timestamp":1,"data":{}}"#,
            r#"{"id":"a","id":"b","timestamp":1,"data":{}}"#,
            r#"{"id":"a" "timestamp":1,"data":{}}"#,
            r#"{"id":"a","timestamp":1,"data":{},}"#,
            r#"{"id":"a","timestamp":1,"data":{}]"#,
            r#"{"id":"a","timestamp":1 2,"data":{}}"#,
            r#"{"id":"a","timestamp":1e3,"data":{}}"#,
            r#"{"id":"a","timestamp":1,"data":"{}"}"#,
            r#"{"id":"a","timestamp":1,"data":[1}}"#,
            r#"{"id":"a","timestamp":1,"data":{]}"#,
            r#"{"id":"a","timestamp":1,"data":{},"x":tru}"#,
            r#"{"id":"\ud800","timestamp":1,"data":{}}"#,
            r#"{id:"a","timestamp":1,"data":{}}"#,
            "{}",
        ];
        for raw in cases {
            // The array scanner gives an element without the whitespace around it.
            let whole = parse_envelope(Bytes::from(raw.trim().to_owned()));
            assert_eq!(envelope_of_element(scanned(raw)), whole, "{raw}");
        }
        // The usual shape is read from its members, not parsed whole: a payload that does not
        // parse passes here and is refused by the plugin's parser.
        let raw = r#"{"id":"a","timestamp":1,"type":"T","data":{"x": tru}}"#;
        assert!(scanned(raw).members.is_some());
        assert_eq!(
            envelope_of_element(scanned(raw)).unwrap().data(),
            r#"{"x": tru}"#
        );
        assert!(parse_envelope(Bytes::from_static(raw.as_bytes())).is_err());
    }

    #[test]
    fn a_repeated_member_keeps_its_last_value_both_ways() {
        // Python's `json` keeps the last value of a repeated key, so the old job did too.
        let cases = [
            (
                r#"{"id":"a","timestamp":1,"data":{"x":1},"id":"b","data":{"y":2}}"#,
                "b",
                1,
                r#"{"y":2}"#,
            ),
            (
                r#"{"id":5,"timestamp":"x","id":"c","timestamp":7,"data":{}}"#,
                "c",
                7,
                "{}",
            ),
            (
                r#"{"\u0069d":"escaped","id":"d","timestamp":1,"data":[],"data":{}}"#,
                "d",
                1,
                "{}",
            ),
        ];
        for (raw, id, timestamp, data) in cases {
            for envelope in [
                parse_envelope(Bytes::from(raw.to_owned())),
                envelope_of_element(scanned(raw)),
            ] {
                let envelope = envelope.unwrap_or_else(|error| panic!("{raw}: {error:?}"));
                assert_eq!(
                    (envelope.id.as_str(), envelope.timestamp, envelope.data()),
                    (id, timestamp, data),
                    "{raw}"
                );
                assert_eq!(envelope.raw(), raw);
            }
        }
        // The last value decides, also when it is the wrong one.
        let raw = r#"{"id":"a","timestamp":1,"data":{},"data":"{}"}"#;
        let error = envelope_of_element(scanned(raw)).unwrap_err();
        assert!(
            error.reason.starts_with("data is not an object"),
            "{error:?}"
        );
    }

    #[test]
    fn a_good_envelope_passes_with_its_data_untouched() {
        let raw = r#"{"id":"AAAAAF0Qp79lNx8dkdk1qQ==","timestamp":1561372607,"type":"GithubType","data":{"a": [1, 2]}}"#;
        let envelope = parse_envelope(Bytes::from_static(raw.as_bytes())).unwrap();
        assert_eq!(envelope.id, "AAAAAF0Qp79lNx8dkdk1qQ==");
        assert_eq!(envelope.timestamp, 1561372607);
        assert_eq!(envelope.type_name.as_deref(), Some("GithubType"));
        assert_eq!(envelope.data(), r#"{"a": [1, 2]}"#);
        assert_eq!(envelope.raw(), raw);
        let made = Envelope::from_parts("i", 5, Some("T"), r#"{"x":1}"#);
        let checked = parse_envelope(Bytes::from(made.raw().to_owned())).unwrap();
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
        assert!(parse_envelope(Bytes::from(accented.clone())).is_ok());
        assert!(envelope_of_element(scanned(&accented)).is_ok());
        for (raw, reason) in cases {
            let error = parse_envelope(Bytes::from_static(raw.as_bytes())).unwrap_err();
            assert!(error.reason.starts_with(reason), "{raw}: {}", error.reason);
            assert_eq!(error.raw, raw);
            assert_eq!(
                envelope_of_element(scanned(raw)),
                Err(error),
                "read from an array"
            );
        }
        let error = parse_envelope(Bytes::from_static(
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
