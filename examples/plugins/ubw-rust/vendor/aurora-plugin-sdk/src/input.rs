//! What a plugin reads of a document: its input paths, derived from what it already declares,
//! and the rule that it reads nothing else.
//!
//! The host hands a plugin that lists its paths (`aurora:plugin/input@1.1.0`) only those parts
//! of each payload. The SDK finds them once, when the host asks, by running the plugin's
//! transform on an empty probe document in *tracing* mode:
//! - [`Document::parse`] records the paths of the struct it parses: every [`Field`] member,
//!   down to the scalars (a member read as a whole value, such as a `serde_json::Value`, is
//!   one path for all of it), and then ends the probe;
//! - [`Parsed`](crate::paths::Parsed) records every pointer it reads.
//!
//! Paths the transform reads only on some documents (behind an `if` on a value) are not seen by
//! the probe: list them in [`Plugin::EXTRA_INPUT_PATHS`]. So that a forgotten one can never be
//! a silent NULL, every document is transformed in *checking* mode: a read of a path the plugin
//! did not declare fails the document, naming the path, in golden tests, in `plugin check` and
//! at run time alike. A plugin that reads `document.data` itself must list `/data` (the whole
//! payload) in [`Plugin::EXTRA_INPUT_PATHS`].
//!
//! [`Field`]: crate::Field

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use serde::Deserialize;
use serde::de::value::{Error as TraceError, StrDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use crate::{Document, Host, LogLevel, LookupError, Outcome, Plugin, PluginError, SlackChannel};

/// A pointer's steps, decoded.
type Steps = Vec<String>;

/// A plugin's declared paths, with what was found covered so far: a transform reads the same
/// few pointers and types in every document, so each is checked once, not per document.
struct Declared {
    paths: Vec<Steps>,
    pointers: RefCell<HashMap<String, bool>>,
    types: RefCell<HashSet<TypeId>>,
}

impl Declared {
    fn covers(&self, pointer: &str) -> bool {
        if let Some(&covered) = self.pointers.borrow().get(pointer) {
            return covered;
        }
        let covered = covered(&self.paths, &steps(pointer));
        self.pointers
            .borrow_mut()
            .insert(pointer.to_owned(), covered);
        covered
    }
}

/// How reads are treated on this thread.
enum Mode {
    /// Neither recorded nor checked: a plugin that reads whole documents, or a plain unit test.
    Plain,
    /// The probe: every read is recorded.
    Tracing(BTreeSet<String>),
    /// Every read must be covered by `declared`; the first that is not is kept.
    Checking {
        declared: Rc<Declared>,
        undeclared: Option<String>,
    },
}

thread_local! {
    static MODE: RefCell<Mode> = const { RefCell::new(Mode::Plain) };
    /// Read on every [`crate::Field`]: a plain flag, cheaper than borrowing `MODE`.
    static TRACING: Cell<bool> = const { Cell::new(false) };
    /// The paths each parsed struct type reads, traced once.
    static TRACES: RefCell<HashMap<TypeId, Rc<Vec<String>>>> = RefCell::new(HashMap::new());
    /// Each plugin's declared paths, derived once (`None`: whole documents).
    static DECLARED: RefCell<HashMap<TypeId, Option<Rc<Declared>>>> = RefCell::new(HashMap::new());
}

/// Whether the probe is running (a [`crate::Field`] then hands its type to the tracer).
pub(crate) fn tracing() -> bool {
    TRACING.with(Cell::get)
}

/// Notes a read of `pointer` (from the document root): recorded by the probe, checked
/// otherwise. `Err` is the message for a read the plugin did not declare.
pub(crate) fn read(pointer: &str) -> Result<(), String> {
    if pointer == "/id" || pointer == "/timestamp" {
        return Ok(());
    }
    MODE.with_borrow_mut(|mode| match mode {
        Mode::Plain => Ok(()),
        Mode::Tracing(paths) => {
            paths.insert(pointer.to_owned());
            Ok(())
        }
        Mode::Checking {
            declared,
            undeclared,
        } => {
            if declared.covers(pointer) {
                return Ok(());
            }
            let message = format!(
                "reads {pointer}, which the plugin's input paths do not declare \
                 (list it in Plugin::EXTRA_INPUT_PATHS)"
            );
            undeclared.get_or_insert_with(|| message.clone());
            Err(message)
        }
    })
}

/// What [`Document::parse`] does before parsing: in the probe, record `T`'s paths and end the
/// transform; otherwise check them.
pub(crate) fn before_parse<T>() -> Result<(), PluginError>
where
    T: for<'de> Deserialize<'de> + 'static,
{
    if tracing() {
        for path in trace::<T>().iter() {
            read(path).ok();
        }
        return Err(PluginError::Internal("input paths traced".into()));
    }
    let declared = MODE.with_borrow(|mode| match mode {
        Mode::Checking { declared, .. } => Some(Rc::clone(declared)),
        _ => None,
    });
    if let Some(declared) = declared {
        if declared.types.borrow().contains(&TypeId::of::<T>()) {
            return Ok(());
        }
        for path in trace::<T>().iter() {
            read(path).map_err(PluginError::Internal)?;
        }
        declared.types.borrow_mut().insert(TypeId::of::<T>());
    }
    Ok(())
}

/// The paths `T` reads from `/data`, traced once per type.
fn trace<T>() -> Rc<Vec<String>>
where
    T: for<'de> Deserialize<'de> + 'static,
{
    if let Some(paths) = TRACES.with_borrow(|traces| traces.get(&TypeId::of::<T>()).cloned()) {
        return paths;
    }
    let paths = Rc::new(trace_paths(|tracer| T::deserialize(tracer).map(drop)));
    TRACES.with_borrow_mut(|traces| traces.insert(TypeId::of::<T>(), Rc::clone(&paths)));
    paths
}

/// Runs `deserialize` on a tracer at `/data` and returns the paths it read.
fn trace_paths(deserialize: impl FnOnce(Tracer) -> Result<(), TraceError>) -> Vec<String> {
    let recorded = Rc::new(RefCell::new(BTreeSet::new()));
    let was_tracing = TRACING.replace(true);
    // A type the tracer cannot fill in stops the trace; what it read so far is kept, and a
    // read past it is refused at run time rather than missed.
    let _ = deserialize(Tracer {
        path: "/data".into(),
        recorded: Rc::clone(&recorded),
    });
    TRACING.set(was_tracing);
    Rc::try_unwrap(recorded)
        .map(RefCell::into_inner)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The plugin's input paths: what the probe saw it read, plus [`Plugin::EXTRA_INPUT_PATHS`].
/// `None` (whole documents) when it reads `/data` itself or reads nothing the SDK can see.
pub fn input_paths<P: Plugin>() -> Option<Vec<String>> {
    let previous = MODE.replace(Mode::Tracing(BTreeSet::new()));
    let was_tracing = TRACING.replace(true);
    let probe = Document {
        id: "AAAAAAAAAAAAAAAAAAAAAA==".into(),
        timestamp: 0,
        data: "{}".into(),
    };
    let _ = P::transform(&probe, &ProbeHost);
    TRACING.set(was_tracing);
    let Mode::Tracing(mut paths) = MODE.replace(previous) else {
        unreachable!("the mode is only changed back by whoever changed it");
    };
    paths.extend(P::EXTRA_INPUT_PATHS.iter().map(|path| path.to_string()));
    paths.remove("/id");
    paths.remove("/timestamp");
    if paths.is_empty() || paths.contains("/data") || paths.contains("") {
        return None;
    }
    Some(paths.into_iter().collect())
}

/// Transforms one document under the rule: a read of an undeclared path fails it.
pub fn transform_checked<P: Plugin>(
    document: &Document,
    host: &dyn Host,
) -> Result<Outcome, PluginError> {
    let Some(declared) = declared::<P>() else {
        return P::transform(document, host);
    };
    let previous = MODE.replace(Mode::Checking {
        declared,
        undeclared: None,
    });
    let result = P::transform(document, host);
    let mode = MODE.replace(previous);
    match mode {
        // Even when the plugin went on (a read gave `None`), the document fails: never a NULL.
        Mode::Checking {
            undeclared: Some(message),
            ..
        } => Err(PluginError::Internal(message)),
        _ => result,
    }
}

/// The declared paths of `P`, as steps, derived once.
fn declared<P: Plugin>() -> Option<Rc<Declared>> {
    let key = TypeId::of::<P>();
    if let Some(declared) = DECLARED.with_borrow(|all| all.get(&key).cloned()) {
        return declared;
    }
    let declared = input_paths::<P>().map(|paths| {
        Rc::new(Declared {
            paths: paths.iter().map(|path| steps(path)).collect(),
            pointers: RefCell::default(),
            types: RefCell::default(),
        })
    });
    DECLARED.with_borrow_mut(|all| all.insert(key, declared.clone()));
    declared
}

/// The steps of a JSON Pointer, with `~1` and `~0` decoded.
fn steps(pointer: &str) -> Steps {
    pointer
        .split('/')
        .skip(1)
        .map(|step| step.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Whether a declared path holds all of `pointer`: one of them is a prefix of it, step by step
/// (`*` matching any step). A pointer above a declared path is not held: its projected value
/// has only the declared part.
fn covered(declared: &[Steps], pointer: &[String]) -> bool {
    declared.iter().any(|path| {
        path.len() <= pointer.len()
            && path
                .iter()
                .zip(pointer)
                .all(|(step, read)| step == "*" || step == read)
    })
}

/// A JSON Pointer step for a key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The host of the probe: no lookup answers.
struct ProbeHost;

impl Host for ProbeHost {
    fn log(&self, _level: LogLevel, _message: &str) {}

    fn slack_channel(&self, _channel_id: &str) -> Result<Option<SlackChannel>, LookupError> {
        Err(LookupError::NotConfigured("tracing input paths".into()))
    }

    fn reference_lookup(&self, _table: &str, _key: &str) -> Result<Vec<String>, LookupError> {
        Err(LookupError::NotConfigured("tracing input paths".into()))
    }
}

/// A deserializer that reads nothing: it walks the type it is asked for and records the path of
/// every scalar, struct member and element, giving each an empty value.
struct Tracer {
    path: String,
    recorded: Rc<RefCell<BTreeSet<String>>>,
}

impl Tracer {
    fn at(&self, step: &str) -> Tracer {
        Tracer {
            path: format!("{}/{}", self.path, escape(step)),
            recorded: Rc::clone(&self.recorded),
        }
    }

    fn record(&self) {
        self.recorded.borrow_mut().insert(self.path.clone());
    }
}

macro_rules! traced_scalars {
    ($($method:ident => $visit:ident $arguments:tt),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
            self.record();
            visitor.$visit $arguments
        }
    )*};
}

impl<'de> Deserializer<'de> for Tracer {
    type Error = TraceError;

    /// A value read as whatever it is (`serde_json::Value`, a custom type): all of it.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.record();
        visitor.visit_unit()
    }

    traced_scalars! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char(' '),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_unit => visit_unit(),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.record();
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_newtype_struct(self)
    }

    /// Every element: one, at `*`.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_seq(TraceElements {
            elements: vec![self.at("*")].into_iter(),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_seq(TraceElements {
            elements: (0..len)
                .map(|index| self.at(&index.to_string()))
                .collect::<Vec<_>>()
                .into_iter(),
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_tuple(len, visitor)
    }

    /// Every member: one, at `*`.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_map(TraceMembers {
            members: vec![("*", self.at("*"))].into_iter(),
            value: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        // A struct of no members is read for whether it is there and not empty: all of it.
        if fields.is_empty() {
            self.record();
        }
        visitor.visit_map(TraceMembers {
            members: fields
                .iter()
                .map(|field| (*field, self.at(field)))
                .collect::<Vec<_>>()
                .into_iter(),
            value: None,
        })
    }

    /// An enum is read whole; the tracer cannot make one up, so the trace of its parent stops.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.record();
        Err(de::Error::custom("an enum is traced as a whole value"))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_str("")
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_unit()
    }
}

struct TraceElements {
    elements: std::vec::IntoIter<Tracer>,
}

impl<'de> SeqAccess<'de> for TraceElements {
    type Error = TraceError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, TraceError> {
        self.elements
            .next()
            .map(|tracer| seed.deserialize(tracer))
            .transpose()
    }
}

struct TraceMembers {
    members: std::vec::IntoIter<(&'static str, Tracer)>,
    value: Option<Tracer>,
}

impl<'de> MapAccess<'de> for TraceMembers {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        let Some((key, tracer)) = self.members.next() else {
            return Ok(None);
        };
        self.value = Some(tracer);
        let key: StrDeserializer<'_, TraceError> = key.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, TraceError> {
        let tracer = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value before its key"))?;
        seed.deserialize(tracer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Field;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Inner {
        id: Field<String>,
        #[serde(rename = "a/b")]
        slashed: Field<i64>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default)]
        inner: Field<Inner>,
        #[serde(default)]
        list: Field<Vec<Inner>>,
        #[serde(default)]
        whole: Field<serde_json::Value>,
        #[serde(default)]
        pair: Field<(String, i64)>,
        #[serde(default, rename = "ref")]
        git_ref: Field<String>,
        #[serde(default)]
        plain: Option<bool>,
    }

    #[test]
    fn a_struct_of_fields_traces_to_the_paths_of_its_scalars() {
        assert_eq!(
            *trace::<Outer>(),
            [
                "/data/inner/a~1b",
                "/data/inner/id",
                "/data/list/*/a~1b",
                "/data/list/*/id",
                "/data/pair/0",
                "/data/pair/1",
                "/data/plain",
                "/data/ref",
                "/data/whole",
            ]
        );
    }

    #[test]
    fn coverage_is_by_whole_steps_with_stars() {
        let declared: Vec<Steps> = ["/data/a/b", "/data/list/*/id"].map(steps).to_vec();
        for (pointer, expected) in [
            ("/data/a/b", true),
            ("/data/a/b/c", true),
            ("/data/a", false),
            ("/data/a/bc", false),
            ("/data/list/3/id", true),
            ("/data/list/3", false),
            ("/data", false),
        ] {
            assert_eq!(covered(&declared, &steps(pointer)), expected, "{pointer}");
        }
    }
}
