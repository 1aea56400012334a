//! [`Field`]: a lenient typed attribute for serde structs.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::{
    BoolDeserializer, BorrowedStrDeserializer, F64Deserializer, I64Deserializer,
    MapAccessDeserializer, SeqAccessDeserializer, StrDeserializer, StringDeserializer,
    U64Deserializer,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
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
        Ok(Self::scalar(
            T::deserialize(F64Deserializer::<E>::new(v)),
            v != 0.0,
        ))
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
        };
        let value = T::deserialize(MapAccessDeserializer::new(&mut counted)).ok();
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
        };
        let value = T::deserialize(SeqAccessDeserializer::new(&mut counted)).ok();
        while counted.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field {
            value,
            truthy: counted.seen > 0,
        })
    }
}

/// Counts the entries pulled through it, so that emptiness is known after `T` had its go.
struct Counted<A> {
    inner: A,
    seen: usize,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Counted<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let key = self.inner.next_key_seed(seed)?;
        self.seen += usize::from(key.is_some());
        Ok(key)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Counted<A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let element = self.inner.next_element_seed(seed)?;
        self.seen += usize::from(element.is_some());
        Ok(element)
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
    fn integers_do_not_accept_floats_or_overflow() {
        let field: Field<i64> = serde_json::from_str("1.5").unwrap();
        assert!(field.get().is_none());
        let field: Field<i64> = serde_json::from_str("18446744073709551615").unwrap();
        assert!(field.get().is_none());
        let field: Field<f64> = serde_json::from_str("2").unwrap();
        assert_eq!(field.get(), Some(&2.0));
    }
}
