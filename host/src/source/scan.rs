//! Splits a JSON array into its elements while it is read, in one pass over the bytes.
//!
//! The scanner only matches brackets and strings (escape-aware); it does not parse. Each
//! element comes out as a [`Bytes`] slice of the buffer that was read, with no copy, and the
//! envelope check parses it once. Because an element's end is found without parsing it, an
//! element that does not parse (a bad literal, a missing comma inside it) is one failed
//! document, and the read goes on with the next element. Only a body whose structure is lost
//! (cut off, an unterminated string, garbage between elements) stops the read.

use std::io::Read;

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
#[derive(Debug, Default, Clone, Copy)]
struct ElementScan {
    position: usize,
    depth: u32,
    in_string: bool,
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
    pub fn next_element(&mut self) -> Result<Option<Bytes>, ScanError> {
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
    fn element(&mut self) -> Result<Bytes, ScanError> {
        match self.buffer.first() {
            None => return Err(self.cut_off("the array is not closed")),
            Some(&byte @ (b',' | b']')) => {
                return Err(
                    self.malformed(format!("expected an element, found {:?}", char::from(byte)))
                );
            }
            Some(_) => {}
        }
        let mut scan = ElementScan::default();
        loop {
            if let Some(end) = scan_element(&self.buffer, &mut scan) {
                self.state = State::AfterElement;
                self.offset += end as u64;
                return Ok(self.buffer.split_to(end).freeze());
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
                    return Ok(self.buffer.split_to(end).freeze());
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
/// `bytes[0]`, once it is in `bytes`. Containers end at their closing bracket, strings at their
/// closing quote, other scalars before the `,`, `]` or whitespace that follows them.
fn scan_element(bytes: &[u8], scan: &mut ElementScan) -> Option<usize> {
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
                        if scan.depth == 0 {
                            return Some(scan.position);
                        }
                    }
                }
            }
            continue;
        }
        match bytes[scan.position] {
            b'"' => scan.in_string = true,
            b'{' | b'[' => scan.depth += 1,
            b'}' | b']' if scan.depth == 0 => return Some(scan.position),
            b'}' | b']' => {
                scan.depth -= 1;
                if scan.depth == 0 {
                    return Some(scan.position + 1);
                }
            }
            b',' | b' ' | b'\t' | b'\n' | b'\r' if scan.depth == 0 => {
                return Some(scan.position);
            }
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
                Ok(Some(element)) => found.push(String::from_utf8(element.to_vec()).unwrap()),
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
