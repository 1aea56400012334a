//! The host's one check of a payload in all its bytes, and the cut of it down to what a plugin
//! reads (input projection).
//!
//! Every document's `data` is checked to be well-formed JSON (RFC 8259) before any plugin sees
//! it, whichever plugin it is and whether it is projected: bad literals, bad numbers, bad escape
//! syntax, control characters in strings and unterminated values fail the document here, with
//! one message for all plugins. (UTF-8 was checked with the envelope.) Values that are
//! well-formed but that a plugin may not be able to represent (a lone surrogate escape, `1e400`)
//! and nesting of any depth pass: they fail a document only where a plugin reads them.
//!
//! A plugin that lists its input paths (`aurora:plugin/input@1.1.0`) is handed a projected
//! payload, made in the same pass: for every listed path it answers as the original does (the
//! same kind, value and truthiness; a repeated key still resolves to its last value), and the
//! rest is left out. An object on a listed path that keeps none of its members keeps one
//! placeholder member (`"<its first key>":0`) so that it stays non-empty; an array on a listed
//! path keeps every element (those not listed as `0`) so that it keeps its length.

use std::fmt;
use std::ops::Range;

/// The paths of `data` a plugin reads, as a tree of steps.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputPaths {
    root: Node,
    /// The paths as the plugin listed them, for reports.
    listed: Vec<String>,
}

/// What is wanted of one value: all of it, or some of its members and elements.
#[derive(Debug, Clone, PartialEq, Default)]
struct Node {
    whole: bool,
    /// Members by name (decoded), which are also array elements when the name is an index.
    members: Vec<Member>,
    /// A `*` step: every member and every element.
    every: Option<Box<Node>>,
}

/// One named step under a node.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    name: Vec<u8>,
    /// The array index the name also is (`0`, or digits without a leading zero).
    index: Option<usize>,
    node: Node,
}

impl Node {
    fn child(&mut self, step: Vec<u8>) -> &mut Node {
        let at = match self.members.iter().position(|member| member.name == step) {
            Some(at) => at,
            None => {
                let canonical = step.first() != Some(&b'0') || step.len() == 1;
                let index = std::str::from_utf8(&step)
                    .ok()
                    .filter(|digits| canonical && digits.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|digits| digits.parse().ok());
                self.members.push(Member {
                    name: step,
                    index,
                    node: Node::default(),
                });
                self.members.len() - 1
            }
        };
        &mut self.members[at].node
    }

    fn set_whole(&mut self) {
        *self = Node {
            whole: true,
            ..Node::default()
        };
    }

    /// Adds what `other` wants to what `self` wants.
    fn merge(&mut self, other: &Node) {
        if self.whole {
            return;
        }
        if other.whole {
            self.set_whole();
            return;
        }
        for member in &other.members {
            self.child(member.name.clone()).merge(&member.node);
        }
        if let Some(every) = &other.every {
            self.every.get_or_insert_with(Default::default).merge(every);
        }
    }

    /// Makes a named member want what `*` wants too, so that a lookup takes one node.
    fn settle(&mut self) {
        if let Some(every) = self.every.as_deref_mut() {
            every.settle();
        }
        let every = self.every.clone();
        for member in &mut self.members {
            if let Some(every) = &every {
                member.node.merge(every);
            }
            member.node.settle();
        }
    }

    fn member(&self, key: &[u8]) -> Option<&Node> {
        self.members
            .iter()
            .find(|member| member.name == key)
            .map(|member| &member.node)
            .or(self.every.as_deref())
    }

    fn element(&self, index: usize) -> Option<&Node> {
        self.members
            .iter()
            .find(|member| member.index == Some(index))
            .map(|member| &member.node)
            .or(self.every.as_deref())
    }
}

/// Why a plugin's input paths were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("input path {path:?} {reason}")]
pub struct InputPathError {
    pub path: String,
    pub reason: &'static str,
}

impl InputPaths {
    /// The tree of the paths a plugin listed; `None` when it reads the whole payload (it listed
    /// `/data` itself). `/id` and `/timestamp` are always given and add nothing.
    pub fn parse(paths: &[String]) -> Result<Option<InputPaths>, InputPathError> {
        let mut root = Node::default();
        for path in paths {
            let error = |reason| InputPathError {
                path: path.clone(),
                reason,
            };
            let Some(rest) = path.strip_prefix('/') else {
                return Err(error("is not a JSON Pointer (it must start with `/`)"));
            };
            let mut steps = rest.split('/').map(unescape_step);
            match steps.next() {
                Some(Ok(first)) if first == b"data" => {}
                Some(Ok(first)) if first == b"id" || first == b"timestamp" => {
                    if steps.next().is_some() {
                        return Err(error("points inside a scalar of the envelope"));
                    }
                    continue;
                }
                Some(Err(reason)) => return Err(error(reason)),
                _ => return Err(error("is not under /data, /id or /timestamp")),
            }
            let mut node = &mut root;
            for step in steps {
                if node.whole {
                    break;
                }
                let step = step.map_err(error)?;
                node = if step == b"*" {
                    node.every.get_or_insert_with(Default::default)
                } else {
                    node.child(step)
                };
            }
            node.set_whole();
        }
        if root.whole {
            return Ok(None);
        }
        root.settle();
        Ok(Some(InputPaths {
            root,
            listed: paths.to_vec(),
        }))
    }

    /// The paths as the plugin listed them.
    pub fn listed(&self) -> &[String] {
        &self.listed
    }
}

/// One step of a JSON Pointer, with `~1` and `~0` decoded.
fn unescape_step(step: &str) -> Result<Vec<u8>, &'static str> {
    if !step.contains('~') {
        return Ok(step.as_bytes().to_vec());
    }
    let mut decoded = Vec::with_capacity(step.len());
    let mut bytes = step.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'~' {
            decoded.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b'0') => decoded.push(b'~'),
            Some(b'1') => decoded.push(b'/'),
            _ => return Err("has a `~` that is not `~0` or `~1`"),
        }
    }
    Ok(decoded)
}

/// Where and why a payload is not well-formed JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub reason: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data is not valid JSON: {} at line {} column {}",
            self.reason, self.line, self.column
        )
    }
}

/// A projected payload, with the map from its bytes back to the original's.
#[derive(Debug, Default)]
pub struct Projection {
    pub text: String,
    /// `(offset in text, offset in the original)` where each copied run of bytes starts.
    segments: Vec<(usize, usize)>,
}

impl Projection {
    /// Empties it for the next document, keeping its memory.
    pub fn clear(&mut self) {
        self.text.clear();
        self.segments.clear();
    }

    /// A plugin's message about the projected text, with every `at line L column C` in it
    /// turned into the place in the original: a person reading the failed document, which is
    /// kept whole, finds the fault where the message says.
    pub fn message_about_original(&self, original: &str, message: &str) -> String {
        const MARK: &str = " at line ";
        let mut out = String::with_capacity(message.len());
        let mut rest = message;
        while let Some(at) = rest.find(MARK) {
            let after = &rest[at + MARK.len()..];
            let Some((line, column, consumed)) = line_and_column(after) else {
                out.push_str(&rest[..at + MARK.len()]);
                rest = after;
                continue;
            };
            let (line, column) = self.original_place(original, line, column);
            out.push_str(&rest[..at]);
            out.push_str(&format!("{MARK}{line} column {column}"));
            rest = &after[consumed..];
        }
        out.push_str(rest);
        out
    }

    fn original_place(&self, original: &str, line: usize, column: usize) -> (usize, usize) {
        let Some(offset) = offset_of(&self.text, line, column) else {
            return (line, column);
        };
        let segment = self.segments.partition_point(|(start, _)| *start <= offset);
        let Some((start, original_start)) = segment.checked_sub(1).map(|i| self.segments[i]) else {
            return (line, column);
        };
        let original_offset = (original_start + (offset - start)).min(original.len());
        place_of(original, original_offset)
    }
}

/// Parses `L column C` at the start of `text`; the numbers and how many bytes they took.
fn line_and_column(text: &str) -> Option<(usize, usize, usize)> {
    let digits = |text: &str| text.bytes().take_while(u8::is_ascii_digit).count();
    let line_digits = digits(text);
    let line = text[..line_digits].parse().ok()?;
    let rest = text[line_digits..].strip_prefix(" column ")?;
    let column_digits = digits(rest);
    let column = rest[..column_digits].parse().ok()?;
    Some((line, column, line_digits + " column ".len() + column_digits))
}

/// The byte offset of 1-based `line` and `column` (bytes since the line's start, as serde_json
/// counts them).
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    Some((line_start + column.saturating_sub(1)).min(text.len()))
}

/// The 1-based line and column of a byte offset.
fn place_of(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset];
    let line = 1 + before.iter().filter(|&&byte| byte == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    (line, offset - line_start + 1)
}

/// Checks `data` in all its bytes; it must be one JSON object.
pub fn check(data: &str) -> Result<(), SyntaxError> {
    let mut parser = Parser::at_object(data)?;
    parser.skip_value()?;
    parser.end()
}

/// Checks `data` in all its bytes and writes into `into` only what `paths` want of it.
pub fn check_and_project(
    data: &str,
    paths: &InputPaths,
    into: &mut Projection,
) -> Result<(), SyntaxError> {
    into.clear();
    let mut parser = Parser::at_object(data)?;
    parser.project_value(&paths.root, into)?;
    parser.end()
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    position: usize,
    /// The closing bracket of every container `skip_value` is inside (kept between calls for
    /// its memory).
    open: Vec<u8>,
}

/// One byte repeated in every lane of a word, for the eight-bytes-at-a-time string scan.
const fn lanes(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// A high bit in each lane of `word` whose byte is zero; the lowest set one is exact (bits
/// above it may be carries of the subtraction, and are never read).
fn zero_lanes(word: u64) -> u64 {
    word.wrapping_sub(lanes(0x01)) & !word & lanes(0x80)
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            bytes: text.as_bytes(),
            position: 0,
            open: Vec::new(),
        }
    }

    /// A parser at the opening brace of `text`, which must be an object.
    fn at_object(text: &'a str) -> Result<Self, SyntaxError> {
        let mut parser = Parser::new(text);
        parser.whitespace();
        if parser.peek() != Some(b'{') {
            return Err(parser.error("expected an object"));
        }
        Ok(parser)
    }

    fn error(&self, reason: &'static str) -> SyntaxError {
        let (line, column) = place_of(self.text, self.position.min(self.bytes.len()));
        SyntaxError {
            line,
            column,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.position += 1;
        }
    }

    fn end(&mut self) -> Result<(), SyntaxError> {
        self.whitespace();
        if self.position != self.bytes.len() {
            return Err(self.error("trailing characters"));
        }
        Ok(())
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), SyntaxError> {
        self.whitespace();
        if self.peek() != Some(byte) {
            return Err(self.error(reason));
        }
        self.position += 1;
        Ok(())
    }

    /// Skips a string from its opening quote to after its closing one; whether it has escapes.
    fn string(&mut self) -> Result<bool, SyntaxError> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.position += 1;
        let mut escaped = false;
        loop {
            // Eight bytes at a time to the next quote, backslash or control character.
            while let Some(chunk) = self.bytes.get(self.position..self.position + 8) {
                let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
                let found = zero_lanes(word ^ lanes(b'"'))
                    | zero_lanes(word ^ lanes(b'\\'))
                    | (word.wrapping_sub(lanes(0x20)) & !word & lanes(0x80));
                if found != 0 {
                    self.position += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                self.position += 8;
            }
            match self.peek() {
                None => return Err(self.error("EOF while parsing a string")),
                Some(b'"') => {
                    self.position += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(byte) if byte < 0x20 => {
                    return Err(self.error(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
                Some(_) => self.position += 1,
            }
        }
    }

    fn escape(&mut self) -> Result<(), SyntaxError> {
        self.position += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.position += 1;
                Ok(())
            }
            Some(b'u') => {
                self.position += 1;
                for _ in 0..4 {
                    match self.peek() {
                        Some(byte) if byte.is_ascii_hexdigit() => self.position += 1,
                        Some(_) => return Err(self.error("invalid escape")),
                        None => return Err(self.error("EOF while parsing a string")),
                    }
                }
                Ok(())
            }
            Some(_) => Err(self.error("invalid escape")),
            None => Err(self.error("EOF while parsing a string")),
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), SyntaxError> {
        if self.bytes[self.position..].starts_with(word) {
            self.position += word.len();
            Ok(())
        } else {
            Err(self.error("expected value"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.position;
        while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            self.position += 1;
        }
        self.position - start
    }

    fn number(&mut self) -> Result<(), SyntaxError> {
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        match self.peek() {
            Some(b'0') => self.position += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.position += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.position += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.position += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        Ok(())
    }

    /// A scalar at the current position (whitespace skipped).
    fn scalar(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            None => Err(self.error("EOF while parsing a value")),
            Some(_) => Err(self.error("expected value")),
        }
    }

    /// An object's key and its colon, from the opening quote on: where the key is (quotes
    /// included) and whether it has escapes.
    fn key(&mut self) -> Result<(Range<usize>, bool), SyntaxError> {
        self.whitespace();
        if self.peek() != Some(b'"') {
            return Err(self.error("key must be a string"));
        }
        let start = self.position;
        let escaped = self.string()?;
        let key = start..self.position;
        self.expect(b':', "expected `:`")?;
        Ok((key, escaped))
    }

    /// After an opening bracket: whether the container is empty (its closing bracket taken).
    fn closes_at_once(&mut self, close: u8) -> bool {
        self.whitespace();
        let empty = self.peek() == Some(close);
        if empty {
            self.position += 1;
        }
        empty
    }

    /// After a member or element: `true` at a comma (another follows), `false` at the closing
    /// bracket (taken).
    fn comma_or_close(&mut self, close: u8) -> Result<bool, SyntaxError> {
        self.whitespace();
        match self.peek() {
            Some(b',') => {
                self.position += 1;
                Ok(true)
            }
            Some(byte) if byte == close => {
                self.position += 1;
                Ok(false)
            }
            None if close == b'}' => Err(self.error("EOF while parsing an object")),
            None => Err(self.error("EOF while parsing a list")),
            Some(_) if close == b'}' => Err(self.error("expected `,` or `}`")),
            Some(_) => Err(self.error("expected `,` or `]`")),
        }
    }

    /// Skips one value of any depth, checking it; iterative, so nesting has no limit but memory.
    fn skip_value(&mut self) -> Result<(), SyntaxError> {
        let mut open = std::mem::take(&mut self.open);
        open.clear();
        let skipped = self.skip_value_with(&mut open);
        self.open = open;
        skipped
    }

    fn skip_value_with(&mut self, open: &mut Vec<u8>) -> Result<(), SyntaxError> {
        loop {
            self.whitespace();
            match self.peek() {
                Some(bracket @ (b'{' | b'[')) => {
                    self.position += 1;
                    let close = if bracket == b'{' { b'}' } else { b']' };
                    if !self.closes_at_once(close) {
                        open.push(close);
                        if close == b'}' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                _ => self.scalar()?,
            }
            // After a value: a comma (and a key), or the end of containers.
            loop {
                let Some(&close) = open.last() else {
                    return Ok(());
                };
                if !self.comma_or_close(close)? {
                    open.pop();
                    continue;
                }
                if close == b'}' {
                    self.key()?;
                }
                break;
            }
        }
    }

    /// Copies `self.text[start..self.position]` into the projection.
    fn copy(&self, start: usize, into: &mut Projection) {
        into.segments.push((into.text.len(), start));
        into.text.push_str(&self.text[start..self.position]);
    }

    /// One value, at the current position after whitespace, projected by `node`.
    fn project_value(&mut self, node: &Node, into: &mut Projection) -> Result<(), SyntaxError> {
        self.whitespace();
        match self.peek() {
            Some(b'{') if !node.whole => self.project_object(node, into),
            Some(b'[') if !node.whole => self.project_array(node, into),
            _ => {
                let start = self.position;
                self.skip_value()?;
                self.copy(start, into);
                Ok(())
            }
        }
    }

    fn project_object(&mut self, node: &Node, into: &mut Projection) -> Result<(), SyntaxError> {
        self.position += 1;
        into.text.push('{');
        if self.closes_at_once(b'}') {
            into.text.push('}');
            return Ok(());
        }
        let mut kept_any = false;
        let mut first_key = None;
        loop {
            let (key, escaped) = self.key()?;
            let raw_key = &self.text[key.clone()];
            let wanted = if escaped {
                serde_json::from_str::<String>(raw_key)
                    .ok()
                    .and_then(|key| node.member(key.as_bytes()))
            } else {
                node.member(&raw_key.as_bytes()[1..raw_key.len() - 1])
            };
            match wanted {
                Some(child) => {
                    if kept_any {
                        into.text.push(',');
                    }
                    into.segments.push((into.text.len(), key.start));
                    into.text.push_str(raw_key);
                    into.text.push(':');
                    self.project_value(child, into)?;
                    kept_any = true;
                }
                None => {
                    first_key.get_or_insert(key);
                    self.skip_value()?;
                }
            }
            if !self.comma_or_close(b'}')? {
                break;
            }
        }
        // A non-empty object stays non-empty: its truthiness is read by rules such as the old
        // job's `head_commit`.
        if let (false, Some(key)) = (kept_any, first_key) {
            into.segments.push((into.text.len(), key.start));
            into.text.push_str(&self.text[key]);
            into.text.push_str(":0");
        }
        into.text.push('}');
        Ok(())
    }

    fn project_array(&mut self, node: &Node, into: &mut Projection) -> Result<(), SyntaxError> {
        self.position += 1;
        into.text.push('[');
        if self.closes_at_once(b']') {
            into.text.push(']');
            return Ok(());
        }
        let mut index = 0;
        loop {
            if index > 0 {
                into.text.push(',');
            }
            match node.element(index) {
                Some(child) => self.project_value(child, into)?,
                None => {
                    // Kept as a placeholder, so that the array keeps its length.
                    self.skip_value()?;
                    into.text.push('0');
                }
            }
            index += 1;
            if !self.comma_or_close(b']')? {
                break;
            }
        }
        into.text.push(']');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> InputPaths {
        let list: Vec<String> = list.iter().map(|path| path.to_string()).collect();
        InputPaths::parse(&list).unwrap().unwrap()
    }

    fn project(data: &str, list: &[&str]) -> String {
        let mut projection = Projection::default();
        check_and_project(data, &paths(list), &mut projection).unwrap();
        serde_json::from_str::<serde_json::Value>(&projection.text).unwrap_or_else(|error| {
            panic!("projection {:?} is not JSON: {error}", projection.text)
        });
        projection.text
    }

    #[test]
    fn only_listed_paths_are_kept_and_non_empty_objects_stay_non_empty() {
        let data =
            r#"{"a":{"b":1,"c":[1,2]},"head_commit":{"message":"m","tree":{}},"big":"x","r":"s"}"#;
        assert_eq!(
            project(
                data,
                &["/data/a/b", "/data/head_commit/id", "/data/r", "/id"]
            ),
            r#"{"a":{"b":1},"head_commit":{"message":0},"r":"s"}"#
        );
        assert_eq!(project(data, &["/data/a/c/1"]), r#"{"a":{"c":[0,2]}}"#);
        assert_eq!(project(data, &["/data/a/c/*"]), r#"{"a":{"c":[1,2]}}"#);
        assert_eq!(
            project(data, &["/data/*/b", "/data/a"]),
            r#"{"a":{"b":1,"c":[1,2]},"head_commit":{"message":0},"big":"x","r":"s"}"#
        );
        assert_eq!(project("{}", &["/data/a"]), "{}");
        assert_eq!(project(r#"{"x":{}}"#, &["/data/x/y"]), r#"{"x":{}}"#);
        assert_eq!(project(r#"{"x":[]}"#, &["/data/x/y"]), r#"{"x":[]}"#);
    }

    #[test]
    fn repeated_keys_and_escaped_keys_are_kept_as_written() {
        assert_eq!(
            project(r#"{"k":1,"z":0,"k":2}"#, &["/data/k"]),
            r#"{"k":1,"k":2}"#
        );
        assert_eq!(
            project(r#"{"\u006b":"v"}"#, &["/data/k"]),
            r#"{"\u006b":"v"}"#
        );
        assert_eq!(
            project(r#"{"a/b":1,"~":2}"#, &["/data/a~1b", "/data/~0"]),
            r#"{"a/b":1,"~":2}"#
        );
    }

    #[test]
    fn unrepresentable_and_deep_values_pass_the_check_and_are_left_out_unless_listed() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let data = format!(r#"{{"lone":"\ud800","big":1e400,"deep":{deep},"keep":true}}"#);
        check(&data).unwrap();
        assert_eq!(project(&data, &["/data/keep"]), r#"{"keep":true}"#);
        let mut projection = Projection::default();
        check_and_project(&data, &paths(&["/data/lone"]), &mut projection).unwrap();
        assert_eq!(projection.text, r#"{"lone":"\ud800"}"#);
    }

    #[test]
    fn malformed_json_anywhere_fails_with_its_place() {
        for (data, reason) in [
            (r#"{"a":tru}"#, "expected value"),
            (r#"{"a":01}"#, "expected `,` or `}`"),
            (r#"{"a":1.}"#, "invalid number"),
            (r#"{"a":"\x"}"#, "invalid escape"),
            (r#"{"a":"\u12"}"#, "invalid escape"),
            (
                "{\"a\":\"\t\"}",
                "control character (\\u0000-\\u001F) found while parsing a string",
            ),
            (r#"{"a":[1,]}"#, "expected value"),
            (r#"{"a":1,}"#, "key must be a string"),
            (r#"{"a" 1}"#, "expected `:`"),
            (r#"{"a":"x}"#, "EOF while parsing a string"),
            (r#"{"a":1} x"#, "trailing characters"),
            (r#"{"a":{"b":[nul]}}"#, "expected value"),
            (r#"{"a":[1"#, "EOF while parsing a list"),
            (r#"{"a":1"#, "EOF while parsing an object"),
            (r#"{"a":{"b":1"#, "EOF while parsing an object"),
        ] {
            let error = check(data).unwrap_err();
            assert_eq!(error.reason, reason, "{data}");
            let projected =
                check_and_project(data, &paths(&["/data/b"]), &mut Projection::default());
            assert_eq!(projected.unwrap_err(), error, "{data}");
        }
        let error = check("{\n\"a\": nope}").unwrap_err();
        assert_eq!((error.line, error.column), (2, 6));
        assert_eq!(
            error.to_string(),
            "data is not valid JSON: expected value at line 2 column 6"
        );
    }

    #[test]
    fn a_message_about_the_projection_names_the_place_in_the_original() {
        let original = "{\"skip\": [1, 2, 3],\n \"s\": \"ab\\ud800\"}";
        let mut projection = Projection::default();
        check_and_project(original, &paths(&["/data/s"]), &mut projection).unwrap();
        assert_eq!(projection.text, r#"{"s":"ab\ud800"}"#);
        // Byte 13 of the projection (column 14) is byte 8 of the copied value, which starts
        // at byte 26 of the original: line 2 starts at byte 20, so column 15.
        let message = projection.message_about_original(
            original,
            "invalid document: a lone surrogate at line 1 column 14; JSON text must be valid",
        );
        assert_eq!(
            message,
            "invalid document: a lone surrogate at line 2 column 15; JSON text must be valid"
        );
    }

    #[test]
    fn paths_that_are_not_pointers_under_data_are_refused() {
        for bad in ["data/x", "/other", "/data/a~2", "/id/x"] {
            assert!(InputPaths::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert_eq!(InputPaths::parse(&["/data".to_string()]).unwrap(), None);
        assert_eq!(
            InputPaths::parse(&["/data/a".into(), "/data/a/b".into()]).unwrap(),
            InputPaths::parse(&["/data/a".into()])
                .unwrap()
                .map(|mut paths| {
                    paths.listed = vec!["/data/a".into(), "/data/a/b".into()];
                    paths
                })
        );
    }
}
