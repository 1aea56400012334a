//! [`Field`]: a lenient typed attribute for serde structs.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::{
    BoolDeserializer, BorrowedStrDeserializer, F64Deserializer, I64Deserializer,
    MapAccessDeserializer, SeqAccessDeserializer, StrDeserializer, StringDeserializer,
    U64Deserializer,
};
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::value::RawValue;

/// An attribute that is `Some` only when the JSON value exists and has the kind `T` wants.
///
/// The contract says a missing step or a value of the wrong kind gives NULL, never an error; a
/// plain `Option<T>` would instead fail the whole document on a wrong kind. `Field<T>` also
/// remembers whether the value was *truthy* in the sense of the old Python job (`null`, `false`,
/// `0`, `""`, `[]` and `{}` are not), which accept rules such as "`head_commit` is present and not
/// empty" need.
///
/// It deserializes without buffering: a value of the wrong kind is skipped in place. Use it with
/// `#[serde(default)]` so that a missing key is a NULL too. A struct used as `Field<Struct>`
/// should itself have only `Field` members, so that nothing inside it can fail.
#[derive(Clone, PartialEq)]
pub struct Field<T> {
    value: Option<T>,
    truthy: bool,
}

impl<T> Default for Field<T> {
    fn default() -> Self {
        Field {
            value: None,
            truthy: false,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Field<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T> Field<T> {
    /// The value, when present and of the right kind.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// The value, when present and of the right kind.
    pub fn into_option(self) -> Option<T> {
        self.value
    }

    /// Whether the JSON value was present and truthy (Python's `bool(value)`).
    pub fn is_truthy(&self) -> bool {
        self.truthy
    }
}

impl<T> From<Field<T>> for Option<T> {
    fn from(field: Field<T>) -> Self {
        field.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The input paths' probe: `T` itself tells the tracer what it reads.
        if crate::input::tracing() {
            return T::deserialize(deserializer).map(|value| Field {
                value: Some(value),
                truthy: true,
            });
        }
        deserializer.deserialize_any(FieldVisitor(PhantomData))
    }
}

struct FieldVisitor<T>(PhantomData<T>);

impl<T> FieldVisitor<T> {
    fn scalar<E>(value: Result<T, E>, truthy: bool) -> Field<T> {
        Field {
            value: value.ok(),
            truthy,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for FieldVisitor<T> {
    type Value = Field<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Self::scalar(
            T::deserialize(BoolDeserializer::<E>::new(v)),
            v,
        ))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Self::scalar(
            T::deserialize(I64Deserializer::<E>::new(v)),
            v != 0,
        ))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Self::scalar(
            T::deserialize(U64Deserializer::<E>::new(v)),
            v != 0,
        ))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        let value = T::deserialize(F64Deserializer::<E>::new(v)).or_else(|error| {
            // serde_json reads the integer `-0` as the float -0.0 (an i64 has no negative
            // zero); Python's `json` reads it as the int 0, and the old job stored 0.
            if crate::is_negative_zero(v) {
                T::deserialize(I64Deserializer::<E>::new(0))
            } else {
                Err(error)
            }
        });
        Ok(Self::scalar(value, v != 0.0))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Self::scalar(
            T::deserialize(StrDeserializer::<E>::new(v)),
            !v.is_empty(),
        ))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        let truthy = !v.is_empty();
        Ok(Self::scalar(
            T::deserialize(BorrowedStrDeserializer::<E>::new(v)),
            truthy,
        ))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        let truthy = !v.is_empty();
        Ok(Self::scalar(
            T::deserialize(StringDeserializer::<E>::new(v)),
            truthy,
        ))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Field::deserialize(deserializer)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut counted = Counted {
            inner: map,
            seen: 0,
            broken: false,
        };
        let value = match T::deserialize(MapAccessDeserializer::new(&mut counted)) {
            Ok(value) => Some(value),
            // The parser itself failed (not JSON, a lone surrogate escape): that fails the
            // document, wherever it happened.
            Err(error) if counted.broken => return Err(error),
            // `T` did not want what it saw: NULL.
            Err(_) => None,
        };
        // Whatever `T` did not take (all of it, when `T` is not a map type) is skipped in place.
        while counted.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field {
            value,
            truthy: counted.seen > 0,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let mut counted = Counted {
            inner: seq,
            seen: 0,
            broken: false,
        };
        // A key step on an array finds nothing: a struct or a map is never read from an array
        // by position (`"head_commit": ["abc", "2019-…"]` gives NULL columns), as in the old
        // job and CONTRACT §2. A `Vec` or a tuple still reads it.
        let value = match T::deserialize(NotByPosition(SeqAccessDeserializer::new(&mut counted))) {
            Ok(value) => Some(value),
            Err(error) if counted.broken => return Err(error),
            Err(_) => None,
        };
        while counted.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field {
            value,
            truthy: counted.seen > 0,
        })
    }
}

/// A deserializer over a JSON array that refuses to be read as a struct or a map, which serde's
/// derive would otherwise allow by position.
struct NotByPosition<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for NotByPosition<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Seq, &visitor))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Seq, &visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct enum identifier
        ignored_any
    }
}

/// Counts the entries pulled through it, so that emptiness is known after `T` had its go, and
/// remembers whether the parser underneath failed, which no leniency may hide.
///
/// An error that comes out of the parser is a broken document as long as everything inside a
/// `Field<Struct>` is a `Field` (which never fails on a wrong kind), as [`Field`] asks.
struct Counted<A> {
    inner: A,
    seen: usize,
    broken: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Counted<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let key = self
            .inner
            .next_key_seed(seed)
            .inspect_err(|_| self.broken = true)?;
        self.seen += usize::from(key.is_some());
        Ok(key)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner
            .next_value_seed(seed)
            .inspect_err(|_| self.broken = true)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Counted<A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let element = self
            .inner
            .next_element_seed(seed)
            .inspect_err(|_| self.broken = true)?;
        self.seen += usize::from(element.is_some());
        Ok(element)
    }
}

/// One JSON value, as its text, read so that a repeated key keeps its last value at every
/// depth, as Python's `json` does, and members nobody asks for are never parsed (whatever they
/// hold: a lone surrogate escape, `1e400`, nesting past serde_json's limit).
///
/// The typed parse is the fast path; a derived struct refuses a repeated key, so a document that
/// fails it is read again through this. Each object is split into its members' raw texts (the
/// last one of a key kept), and each member is read only when the target asks for it.
pub(crate) struct LastWins<'de>(pub(crate) &'de str);

impl<'de> Deserializer<'de> for LastWins<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0.trim_start().as_bytes().first() {
            Some(b'{') => {
                let Members(members) = serde_json::from_str(self.0)?;
                visitor.visit_map(MembersAccess {
                    members: members.into_iter(),
                    value: None,
                })
            }
            Some(b'[') => {
                let elements: Vec<&'de RawValue> = serde_json::from_str(self.0)?;
                visitor.visit_seq(ElementsAccess(elements.into_iter()))
            }
            _ => serde_json::Deserializer::from_str(self.0).deserialize_any(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        // Already checked to be well formed when its object was split; never parsed.
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.0.trim() == "null" {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        serde_json::Deserializer::from_str(self.0).deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// An object's members as raw texts, in order, a repeated key keeping its first place and its
/// last value (as a Python `dict` does).
struct Members<'de>(Vec<(String, &'de RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members: Vec<(String, &'de RawValue)> = Vec::new();
                let mut places: HashMap<String, usize> = HashMap::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    match places.get(&key) {
                        Some(&place) => members[place].1 = value,
                        None => {
                            places.insert(key.clone(), members.len());
                            members.push((key, value));
                        }
                    }
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersAccess<'de> {
    members: std::vec::IntoIter<(String, &'de RawValue)>,
    value: Option<&'de RawValue>,
}

impl<'de> MapAccess<'de> for MembersAccess<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.members.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a member's value was asked for before its key"))?;
        seed.deserialize(LastWins(value.get()))
    }
}

struct ElementsAccess<'de>(std::vec::IntoIter<&'de RawValue>);

impl<'de> SeqAccess<'de> for ElementsAccess<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        self.0
            .next()
            .map(|element| seed.deserialize(LastWins(element.get())))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, Default)]
    struct Repo {
        #[serde(default)]
        full_name: Field<String>,
        #[serde(default)]
        stars: Field<i64>,
    }

    #[derive(Deserialize, Debug)]
    struct Doc {
        #[serde(default)]
        repository: Field<Repo>,
        #[serde(default)]
        name: Field<String>,
        #[serde(default)]
        after: Field<String>,
    }

    fn parse(json: &str) -> Doc {
        serde_json::from_str(json).expect("lenient parse never fails on valid JSON")
    }

    #[test]
    fn right_kinds_are_kept() {
        let doc = parse(r#"{"repository":{"full_name":"a/b","stars":3},"name":"x"}"#);
        let repo = doc.repository.get().unwrap();
        assert_eq!(repo.full_name.get().map(String::as_str), Some("a/b"));
        assert_eq!(repo.stars.get(), Some(&3));
        assert!(doc.repository.is_truthy());
    }

    #[test]
    fn wrong_kinds_and_missing_steps_are_null_and_skipped_in_place() {
        let doc =
            parse(r#"{"repository":"not an object","name":{"deep":[1,{"x":2}]},"after":"kept"}"#);
        assert!(doc.repository.get().is_none());
        assert!(doc.name.get().is_none());
        assert_eq!(doc.after.get().map(String::as_str), Some("kept"));
        let doc = parse(r#"{"repository":{"full_name":7,"stars":"many"}}"#);
        let repo = doc.repository.get().unwrap();
        assert!(repo.full_name.get().is_none() && repo.stars.get().is_none());
    }

    #[test]
    fn truthiness_follows_python() {
        for (json, truthy) in [
            ("null", false),
            ("{}", false),
            ("[]", false),
            ("\"\"", false),
            ("0", false),
            ("false", false),
            ("{\"a\":1}", true),
            ("\"x\"", true),
            ("1", true),
        ] {
            let field: Field<IgnoredAny> = serde_json::from_str(json).unwrap();
            assert_eq!(field.is_truthy(), truthy, "{json}");
        }
    }

    #[test]
    fn an_array_is_never_read_as_a_struct_by_position() {
        let doc = parse(r#"{"repository":["a/b",3],"name":"x"}"#);
        assert!(doc.repository.get().is_none());
        assert!(doc.repository.is_truthy(), "a non-empty list is truthy");
        assert_eq!(doc.name.get().map(String::as_str), Some("x"));
        let list: Field<Vec<i64>> = serde_json::from_str("[1,2]").unwrap();
        assert_eq!(list.get(), Some(&vec![1, 2]));
        let pair: Field<(String, i64)> = serde_json::from_str(r#"["a",1]"#).unwrap();
        assert_eq!(pair.get(), Some(&("a".to_owned(), 1)));
    }

    #[test]
    fn a_broken_document_fails_even_inside_a_lenient_field() {
        for json in [
            r#"{"repository":{"full_name":"\ud800"}}"#,
            r#"{"repository":{"full_name":"a" "stars":1}}"#,
            r#"{"repository":{"stars":1,"full_name":"\udc00"}}"#,
        ] {
            assert!(serde_json::from_str::<Doc>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn a_negative_zero_is_the_integer_zero_as_in_python() {
        let field: Field<i64> = serde_json::from_str("-0").unwrap();
        assert_eq!(field.get(), Some(&0));
        assert!(!field.is_truthy());
        // serde_json gives `-0.0` the same way; the old job's MySQL INT stored it as 0 too.
        let field: Field<i64> = serde_json::from_str("-0.0").unwrap();
        assert_eq!(field.get(), Some(&0));
        let field: Field<f64> = serde_json::from_str("-0").unwrap();
        assert_eq!(field.get(), Some(&0.0));
        let field: Field<String> = serde_json::from_str("-0").unwrap();
        assert_eq!(field.get(), None);
        let field: Field<i64> = serde_json::from_str("-0.5").unwrap();
        assert_eq!(field.get(), None);
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_and_members_nobody_reads_stay_unparsed() {
        let document = |data: String| crate::Document {
            id: "i".into(),
            timestamp: 1,
            data,
        };
        let deep = format!("{}1{}", "[".repeat(600), "]".repeat(600));
        for unread in [r#""\ud800""#, "1e400", deep.as_str()] {
            let data = format!(
                r#"{{"name":"a","skip":{unread},"repository":{{"full_name":"x","more":{unread},
                    "full_name":"o/r","stars":-0}},"name":"b","after":[{unread}]}}"#
            );
            let doc: Doc = document(data).parse().unwrap();
            assert_eq!(doc.name.get().map(String::as_str), Some("b"), "{unread}");
            let repo = doc.repository.get().unwrap();
            assert_eq!(repo.full_name.get().map(String::as_str), Some("o/r"));
            assert_eq!(repo.stars.get(), Some(&0));
            assert!(doc.after.get().is_none());
        }
        // Broken where it is read: the document fails, and the message says where, in the
        // document's own lines and columns.
        let error = document(r#"{"name":"a","name":"\ud800"}"#.into())
            .parse::<Doc>()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("lone surrogate") && error.contains("column 27"),
            "{error}"
        );
        let error = document(r#"{"name":"a","name":"b" "x":1}"#.into())
            .parse::<Doc>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("data is not valid JSON"), "{error}");
    }

    #[test]
    fn integers_do_not_accept_floats_or_overflow() {
        let field: Field<i64> = serde_json::from_str("1.5").unwrap();
        assert!(field.get().is_none());
        let field: Field<i64> = serde_json::from_str("18446744073709551615").unwrap();
        assert!(field.get().is_none());
        let field: Field<f64> = serde_json::from_str("2").unwrap();
        assert_eq!(field.get(), Some(&2.0));
    }
}
