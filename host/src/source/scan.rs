//! Splits a JSON array into its elements while it is read, in one pass over the bytes.
//!
//! The scanner only matches brackets and strings (escape-aware); it does not parse. Each
//! element comes out as a [`Bytes`] slice of the buffer that was read, with no copy. The same
//! pass notes where the members of the element's top-level object are (the envelope's `id`,
//! `timestamp`, `type` and `data`), so that the envelope check reads those few bytes and never
//! walks the payload again: its one other native pass is the check (and cut) of
//! `crate::projection`, before the plugin. Because an
//! element's end is found without parsing it, an element that does not parse (a bad literal, a
//! missing comma inside it) is one failed document, and the read goes on with the next element.
//! Only a body whose structure is lost (cut off, an unterminated string, garbage between
//! elements) stops the read.

use std::io::Read;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// How much is read from the source at a time.
const READ_CHUNK: usize = 64 << 10;
/// The largest element the scanner holds. A larger one cannot be a document of the platform
/// (its store caps items far below this) and is most likely an unterminated string swallowing
/// the rest of the body, so it stops the read rather than filling memory.
pub const MAX_ELEMENT_BYTES: usize = 256 << 20;

/// Why the array could not be read on.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a JSON array of documents: it starts with {found:?}")]
    NotAnArray { found: char },
    /// The body ends inside an element or before the closing `]`.
    #[error("cut off at byte {offset}: {reason}")]
    CutOff {
        offset: u64,
        reason: &'static str,
        /// The unfinished element's bytes, as read.
        tail: Bytes,
    },
    /// The structure of the array is lost at `offset`, so no later element can be found.
    #[error("malformed at byte {offset}: {reason}")]
    Malformed {
        offset: u64,
        reason: String,
        /// What was buffered from `offset` on, as read.
        tail: Bytes,
    },
}

impl ScanError {
    /// The raw bytes that could not be read as elements, to keep as a dead letter.
    pub fn tail(&self) -> Option<&Bytes> {
        match self {
            ScanError::CutOff { tail, .. } | ScanError::Malformed { tail, .. } => {
                Some(tail).filter(|tail| !tail.is_empty())
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    BeforeArray,
    FirstElement,
    AfterElement,
    Done,
}

/// Where the scan of one element stands, so that more input resumes it without rescanning.
/// Positions are offsets in the element, which stays at the start of the buffer until it ends.
#[derive(Debug, Default)]
struct ElementScan {
    position: usize,
    depth: u32,
    in_string: bool,
    top: TopLevel,
}

/// Where one member of an element's top-level object is: its key (with the quotes) and its
/// value, as byte ranges of the element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpan {
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// One element of the array, as read.
#[derive(Debug, Clone)]
pub struct Element {
    pub bytes: Bytes,
    /// The members of the element's top-level object, found by the scan that found its end;
    /// `None` when the element is not an object or its top level is not well formed (the
    /// envelope check then parses the whole element to say why). What a value holds inside its
    /// brackets or quotes is not checked here.
    pub members: Option<Vec<MemberSpan>>,
}

impl Element {
    /// An element whose members were not noted (the envelope check parses it whole).
    pub fn unscanned(bytes: Bytes) -> Self {
        Element {
            bytes,
            members: None,
        }
    }
}

/// What the top level of an object element expects next. Only bytes at depth 1 (an
/// envelope's own hundred bytes, not the payload inside `data`) move it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum Expect {
    /// Not an object, or not well formed: no members are given.
    #[default]
    Nothing,
    Key {
        first: bool,
    },
    KeyEnd {
        start: usize,
    },
    Colon {
        key: Range<usize>,
    },
    Value {
        key: Range<usize>,
    },
    /// Inside a string or a container value that started at `start` (its closing quote or
    /// bracket ends it).
    Enclosed {
        key: Range<usize>,
        start: usize,
    },
    /// Inside a number or literal that started at `start` (whitespace, a comma or the closing
    /// brace ends it).
    Scalar {
        key: Range<usize>,
        start: usize,
    },
    CommaOrEnd {
        key: Range<usize>,
        value: Range<usize>,
    },
}

/// A byte at depth 1 of the element, as the top level sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopByte {
    /// An opening quote, at this position.
    StringStart(usize),
    /// A closing quote; the position after it.
    StringEnd(usize),
    /// An opening bracket, at this position.
    Open(usize),
    /// The closing bracket of a value; the position after it.
    ContainerEnd(usize),
    Colon,
    Comma(usize),
    Whitespace(usize),
    /// Any other byte (of a number or literal), at this position.
    Other(usize),
}

/// The members of an object element's top level, noted as the scan goes.
#[derive(Debug, Default)]
struct TopLevel {
    expect: Expect,
    members: Vec<MemberSpan>,
}

impl TopLevel {
    fn object() -> Self {
        TopLevel {
            expect: Expect::Key { first: true },
            members: Vec::new(),
        }
    }

    fn step(&mut self, byte: TopByte) {
        use Expect::*;
        let expect = std::mem::take(&mut self.expect);
        self.expect = match (expect, byte) {
            (Nothing, _) => Nothing,
            (Key { first }, TopByte::Whitespace(_)) => Key { first },
            (Key { .. }, TopByte::StringStart(start)) => KeyEnd { start },
            (KeyEnd { start }, TopByte::StringEnd(end)) => Colon { key: start..end },
            (Colon { key }, TopByte::Whitespace(_)) => Colon { key },
            (Colon { key }, TopByte::Colon) => Value { key },
            (Value { key }, TopByte::Whitespace(_)) => Value { key },
            (Value { key }, TopByte::StringStart(start) | TopByte::Open(start)) => {
                Enclosed { key, start }
            }
            (Value { key }, TopByte::Other(start)) => Scalar { key, start },
            (Enclosed { key, start }, TopByte::StringEnd(end) | TopByte::ContainerEnd(end)) => {
                CommaOrEnd {
                    key,
                    value: start..end,
                }
            }
            (Scalar { key, start }, TopByte::Other(_)) => Scalar { key, start },
            (Scalar { key, start }, TopByte::Whitespace(end)) => CommaOrEnd {
                key,
                value: start..end,
            },
            (Scalar { key, start }, TopByte::Comma(end)) => {
                self.members.push(MemberSpan {
                    key,
                    value: start..end,
                });
                Key { first: false }
            }
            (CommaOrEnd { key, value }, TopByte::Whitespace(_)) => CommaOrEnd { key, value },
            (CommaOrEnd { key, value }, TopByte::Comma(_)) => {
                self.members.push(MemberSpan { key, value });
                Key { first: false }
            }
            _ => Nothing,
        };
    }

    /// The object closed with `closing` at `at`: its members, when its top level was well
    /// formed.
    fn close(&mut self, closing: u8, at: usize) -> Option<Vec<MemberSpan>> {
        let members = std::mem::take(&mut self.members);
        match (std::mem::take(&mut self.expect), closing) {
            (_, b']') | (Expect::Nothing, _) => None,
            (Expect::Key { first: true }, _) => Some(members),
            (Expect::Scalar { key, start }, _) => Some(with(members, key, start..at)),
            (Expect::CommaOrEnd { key, value }, _) => Some(with(members, key, value)),
            _ => None,
        }
    }
}

fn with(mut members: Vec<MemberSpan>, key: Range<usize>, value: Range<usize>) -> Vec<MemberSpan> {
    members.push(MemberSpan { key, value });
    members
}

/// The elements of one JSON array, read from `reader` as they are needed.
pub struct ArrayScanner<R> {
    reader: R,
    buffer: BytesMut,
    /// Bytes of the source before `buffer[0]`, for positions in messages.
    offset: u64,
    state: State,
    eof: bool,
}

impl<R: Read> ArrayScanner<R> {
    pub fn new(reader: R) -> Self {
        ArrayScanner {
            reader,
            buffer: BytesMut::new(),
            offset: 0,
            state: State::BeforeArray,
            eof: false,
        }
    }

    /// The next element as read, `None` after the closing `]`.
    pub fn next_element(&mut self) -> Result<Option<Element>, ScanError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::BeforeArray => {
                    self.skip_whitespace()?;
                    // A byte order mark may arrive split across reads.
                    while self.buffer.len() < 3 && self.buffer.first() == Some(&0xEF) {
                        if !self.fill()? {
                            break;
                        }
                    }
                    if self.buffer.starts_with(b"\xEF\xBB\xBF") {
                        self.consume(3);
                        continue;
                    }
                    match self.buffer.first() {
                        Some(b'[') => {
                            self.consume(1);
                            self.state = State::FirstElement;
                        }
                        Some(&other) => {
                            return Err(ScanError::NotAnArray {
                                found: char::from(other),
                            });
                        }
                        None => return Err(self.cut_off("the body is empty")),
                    }
                }
                State::FirstElement | State::AfterElement => {
                    self.skip_whitespace()?;
                    match self.buffer.first() {
                        None => return Err(self.cut_off("the array is not closed")),
                        Some(b']') => {
                            self.consume(1);
                            self.state = State::Done;
                            self.expect_only_whitespace()?;
                            return Ok(None);
                        }
                        Some(b',') if self.state == State::AfterElement => {
                            self.consume(1);
                            self.skip_whitespace()?;
                        }
                        Some(&other) if self.state == State::AfterElement => {
                            return Err(self.malformed(format!(
                                "expected , or ] after an element, found {:?}",
                                char::from(other)
                            )));
                        }
                        Some(_) => {}
                    }
                    return self.element().map(Some);
                }
            }
        }
    }

    /// The element that starts at `buffer[0]`.
    fn element(&mut self) -> Result<Element, ScanError> {
        let mut scan = ElementScan::default();
        match self.buffer.first() {
            None => return Err(self.cut_off("the array is not closed")),
            Some(&byte @ (b',' | b']')) => {
                return Err(
                    self.malformed(format!("expected an element, found {:?}", char::from(byte)))
                );
            }
            Some(b'{') => scan.top = TopLevel::object(),
            Some(_) => {}
        }
        loop {
            if let Some((end, members)) = scan_element(&self.buffer, &mut scan) {
                self.state = State::AfterElement;
                self.offset += end as u64;
                return Ok(Element {
                    bytes: self.buffer.split_to(end).freeze(),
                    members,
                });
            }
            if self.buffer.len() > MAX_ELEMENT_BYTES {
                return Err(self.malformed(format!(
                    "an element is larger than {} MiB (an unterminated string?)",
                    MAX_ELEMENT_BYTES >> 20
                )));
            }
            if !self.fill()? {
                // A scalar ends where the input does; anything else is cut off.
                if scan.depth == 0 && !scan.in_string && scan.position > 0 {
                    self.state = State::AfterElement;
                    let end = self.buffer.len();
                    self.offset += end as u64;
                    return Ok(Element::unscanned(self.buffer.split_to(end).freeze()));
                }
                return Err(self.cut_off("the body ends inside an element"));
            }
        }
    }

    /// Reads more input; `false` at the end of it.
    fn fill(&mut self) -> Result<bool, ScanError> {
        if self.eof {
            return Ok(false);
        }
        let filled = self.buffer.len();
        self.buffer.resize(filled + READ_CHUNK, 0);
        let read = loop {
            match self.reader.read(&mut self.buffer[filled..]) {
                Ok(read) => break read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.buffer.truncate(filled);
                    return Err(error.into());
                }
            }
        };
        self.buffer.truncate(filled + read);
        self.eof = read == 0;
        Ok(read > 0)
    }

    fn consume(&mut self, count: usize) {
        let _ = self.buffer.split_to(count);
        self.offset += count as u64;
    }

    /// Skips whitespace, reading on as needed; the buffer then starts with a non-whitespace
    /// byte, or is empty at the end of the input.
    fn skip_whitespace(&mut self) -> Result<(), ScanError> {
        loop {
            let spaces = self
                .buffer
                .iter()
                .take_while(|byte| byte.is_ascii_whitespace())
                .count();
            self.consume(spaces);
            if !self.buffer.is_empty() || !self.fill()? {
                return Ok(());
            }
        }
    }

    fn expect_only_whitespace(&mut self) -> Result<(), ScanError> {
        self.skip_whitespace()?;
        match self.buffer.first() {
            None => Ok(()),
            Some(&other) => Err(self.malformed(format!(
                "trailing characters after the array, starting with {:?}",
                char::from(other)
            ))),
        }
    }

    fn cut_off(&mut self, reason: &'static str) -> ScanError {
        ScanError::CutOff {
            offset: self.offset,
            reason,
            tail: self.buffer.split().freeze(),
        }
    }

    fn malformed(&mut self, reason: String) -> ScanError {
        ScanError::Malformed {
            offset: self.offset,
            reason,
            tail: self.buffer.split().freeze(),
        }
    }
}

/// Advances `scan` through `bytes`; the end (exclusive) of the element that starts at
/// `bytes[0]`, once it is in `bytes`, with the members of its top-level object. Containers end
/// at their closing bracket, strings at their closing quote, other scalars before the `,`, `]`
/// or whitespace that follows them.
fn scan_element(bytes: &[u8], scan: &mut ElementScan) -> Option<(usize, Option<Vec<MemberSpan>>)> {
    while scan.position < bytes.len() {
        if scan.in_string {
            // Inside a string only a quote or a backslash matters: jump to the next one.
            match memchr::memchr2(b'"', b'\\', &bytes[scan.position..]) {
                None => scan.position = bytes.len(),
                Some(found) => {
                    scan.position += found;
                    if bytes[scan.position] == b'\\' {
                        // The escaped byte may lie beyond what was read; the next call resumes
                        // after it.
                        scan.position += 2;
                    } else {
                        scan.in_string = false;
                        scan.position += 1;
                        match scan.depth {
                            0 => return Some((scan.position, None)),
                            1 => scan.top.step(TopByte::StringEnd(scan.position)),
                            _ => {}
                        }
                    }
                }
            }
            continue;
        }
        let at = scan.position;
        match bytes[at] {
            b'"' => {
                scan.in_string = true;
                if scan.depth == 1 {
                    scan.top.step(TopByte::StringStart(at));
                }
            }
            b'{' | b'[' => {
                if scan.depth == 1 {
                    scan.top.step(TopByte::Open(at));
                }
                scan.depth += 1;
            }
            b'}' | b']' if scan.depth == 0 => return Some((at, None)),
            closing @ (b'}' | b']') => {
                scan.depth -= 1;
                match scan.depth {
                    0 => return Some((at + 1, scan.top.close(closing, at))),
                    1 => scan.top.step(TopByte::ContainerEnd(at + 1)),
                    _ => {}
                }
            }
            b',' | b' ' | b'\t' | b'\n' | b'\r' if scan.depth == 0 => {
                return Some((at, None));
            }
            byte if scan.depth == 1 => scan.top.step(match byte {
                b',' => TopByte::Comma(at),
                b':' => TopByte::Colon,
                b' ' | b'\t' | b'\n' | b'\r' => TopByte::Whitespace(at),
                _ => TopByte::Other(at),
            }),
            _ => {}
        }
        scan.position += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input` in pieces of `chunk` bytes, to exercise resuming mid-element.
    struct Trickle<'a> {
        input: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            let count = self.chunk.min(buffer.len()).min(self.input.len());
            buffer[..count].copy_from_slice(&self.input[..count]);
            self.input = &self.input[count..];
            Ok(count)
        }
    }

    fn elements(input: &str, chunk: usize) -> (Vec<String>, Option<ScanError>) {
        let mut scanner = ArrayScanner::new(Trickle {
            input: input.as_bytes(),
            chunk,
        });
        let mut found = Vec::new();
        loop {
            match scanner.next_element() {
                Ok(Some(element)) => found.push(String::from_utf8(element.bytes.to_vec()).unwrap()),
                Ok(None) => return (found, None),
                Err(error) => return (found, Some(error)),
            }
        }
    }

    #[test]
    fn elements_come_out_as_written_whatever_the_read_sizes() {
        let input =
            "\u{feff} [ {\"a\": \"x,]}\\\"\\\\\"}, [1, [2]] ,\"s\\\"\",-1.5e3, true,null ]\n";
        for chunk in [1, 2, 3, 7, 64, 1 << 20] {
            let (found, error) = elements(input, chunk);
            assert!(error.is_none(), "{chunk}: {error:?}");
            assert_eq!(
                found,
                [
                    "{\"a\": \"x,]}\\\"\\\\\"}",
                    "[1, [2]]",
                    "\"s\\\"\"",
                    "-1.5e3",
                    "true",
                    "null"
                ],
                "read {chunk} bytes at a time"
            );
        }
        let (found, error) = elements(" [ ] ", 1);
        assert!(found.is_empty() && error.is_none());
    }

    #[test]
    fn the_members_of_an_object_are_noted_whatever_the_read_sizes() {
        let element = r#"{ "id" : "a\"}" , "n":-1.5,"data":{"k":[1,"]"]} ,"t":null }"#;
        let input = format!("[{element}, [1], {{}}, {{\"a\" 1}}, {{\"a\":1,}}]");
        let text = |range: &Range<usize>| &element[range.clone()];
        for chunk in [1, 3, 64] {
            let mut scanner = ArrayScanner::new(Trickle {
                input: input.as_bytes(),
                chunk,
            });
            let first = scanner.next_element().unwrap().unwrap();
            let members: Vec<(&str, &str)> = first
                .members
                .unwrap()
                .iter()
                .map(|member| (text(&member.key), text(&member.value)))
                .collect();
            assert_eq!(
                members,
                [
                    (r#""id""#, r#""a\"}""#),
                    (r#""n""#, "-1.5"),
                    (r#""data""#, r#"{"k":[1,"]"]}"#),
                    (r#""t""#, "null"),
                ],
                "read {chunk} bytes at a time"
            );
            let rest: Vec<Option<usize>> = std::iter::from_fn(|| scanner.next_element().unwrap())
                .map(|element| element.members.map(|members| members.len()))
                .collect();
            // An array is no object; an empty object has no members; a missing colon or a
            // trailing comma leaves the top level unread, for the envelope check to explain.
            assert_eq!(rest, [None, Some(0), None, None]);
        }
    }

    #[test]
    fn an_element_that_does_not_parse_still_ends_where_its_brackets_close() {
        // A bad literal and a missing comma inside an element: the scanner finds both ends,
        // so the next element is read.
        let (found, error) = elements(r#"[{"a": tru}, {"b" 1}, {"c": 2}]"#, 4);
        assert!(error.is_none());
        assert_eq!(found, [r#"{"a": tru}"#, r#"{"b" 1}"#, r#"{"c": 2}"#]);
        let deep = format!("[{}{}, 1]", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(elements(&deep, 100).0.len(), 2);
    }

    #[test]
    fn a_lost_structure_stops_the_read_with_its_raw_tail() {
        let (found, error) = elements(r#"[{"a": 1}, {"b": "unterminated}]"#, 5);
        assert_eq!(found, [r#"{"a": 1}"#]);
        let error = error.unwrap();
        assert!(matches!(error, ScanError::CutOff { .. }), "{error}");
        assert_eq!(&error.tail().unwrap()[..], br#"{"b": "unterminated}]"#);

        let (found, error) = elements(r#"[1, 2 x 3]"#, 64);
        assert_eq!(found, ["1", "2"]);
        assert!(error.unwrap().to_string().contains("expected , or ]"));

        let (_, error) = elements(r#"[1] 2"#, 64);
        assert!(error.unwrap().to_string().contains("trailing characters"));
        let (_, error) = elements(r#"{"a": 1}"#, 64);
        assert!(matches!(error, Some(ScanError::NotAnArray { found: '{' })));
        let (_, error) = elements("[1, 2", 64);
        assert!(matches!(error, Some(ScanError::CutOff { .. })));
        let (_, error) = elements("", 64);
        assert!(matches!(error, Some(ScanError::CutOff { .. })));
    }
}
