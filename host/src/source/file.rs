//! Files of envelopes: a JSON array (streamed element by element) or NDJSON (line by line).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::scan::ArrayScanner;
use super::{SourceError, SourceItem};
use crate::document::{envelope_of_element, parse_envelope};

const READ_BUFFER: usize = 256 << 10;

/// Reads a file, or every `.json`/`.ndjson`/`.jsonl` file of a folder in name order, handing
/// each element to `deliver` as soon as it is read. `deliver` returns `Break` to stop reading.
/// An error after some elements were delivered leaves those delivered.
#[cfg(any(feature = "kit", test))]
pub fn read_files(
    files: &[PathBuf],
    deliver: impl FnMut(SourceItem) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    read_files_counted(files, &AtomicU64::new(0), deliver)
}

/// [`read_files`], adding every byte read to `bytes_read` (for a progress display).
pub fn read_files_counted(
    files: &[PathBuf],
    bytes_read: &AtomicU64,
    mut deliver: impl FnMut(SourceItem) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    for file in files {
        read_file(file, bytes_read, &mut deliver)?;
    }
    Ok(())
}

/// A reader that adds the bytes it reads to a counter.
pub(super) struct Counted<'a, R> {
    pub inner: R,
    pub bytes_read: &'a AtomicU64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

/// The files a `file:` source names: the file itself, or the document files of a folder.
/// Checked before a run starts, so that an unreadable source stops it before anything else.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let io_error = |source| SourceError::Io {
        path: path.to_owned(),
        source,
    };
    if !path.is_dir() {
        // Opening it reports a missing or unreadable file with the OS's reason.
        File::open(path).map_err(io_error)?;
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_error)? {
        let file = entry.map_err(io_error)?.path();
        let is_documents = file
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| matches!(extension, "json" | "ndjson" | "jsonl"));
        if is_documents && file.is_file() {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(SourceError::Empty {
            path: path.to_owned(),
        });
    }
    files.sort();
    Ok(files)
}

fn read_file(
    path: &Path,
    bytes_read: &AtomicU64,
    deliver: &mut impl FnMut(SourceItem) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    let io_error = |source| SourceError::Io {
        path: path.to_owned(),
        source,
    };
    let file = Counted {
        inner: File::open(path).map_err(io_error)?,
        bytes_read,
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let first = loop {
        let buffer = reader.fill_buf().map_err(io_error)?;
        let Some(&byte) = buffer.first() else {
            return Ok(()); // An empty file holds no documents.
        };
        if byte.is_ascii_whitespace() || buffer.starts_with(b"\xEF\xBB\xBF") {
            let skip = if byte.is_ascii_whitespace() { 1 } else { 3 };
            reader.consume(skip);
            continue;
        }
        break byte;
    };
    match first {
        b'[' => read_array(path, reader, deliver),
        b'{' => read_lines(path, reader, deliver),
        other => Err(SourceError::NotDocuments {
            path: path.to_owned(),
            found: char::from(other),
        }),
    }
}

/// Streams a JSON array, checking each element as soon as its end is read. Also used for HTTP
/// bodies. An element that is not a usable envelope is delivered as such and the read goes on;
/// only a body whose structure is lost stops it.
pub fn read_array(
    path: &Path,
    reader: impl Read,
    deliver: &mut impl FnMut(SourceItem) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    let mut scanner = ArrayScanner::new(reader);
    loop {
        let element = scanner.next_element().map_err(|source| SourceError::Scan {
            path: path.to_owned(),
            source,
        })?;
        let Some(element) = element else {
            return Ok(());
        };
        if deliver(envelope_of_element(element)).is_break() {
            return Err(SourceError::Stopped {
                path: path.to_owned(),
            });
        }
    }
}

/// NDJSON: one envelope per line. A broken line, invalid UTF-8 included, fails that document
/// only.
fn read_lines(
    path: &Path,
    mut reader: impl BufRead,
    deliver: &mut impl FnMut(SourceItem) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| SourceError::Io {
                path: path.to_owned(),
                source,
            })?;
        if read == 0 {
            return Ok(());
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let item = parse_envelope(Bytes::copy_from_slice(text));
        if deliver(item).is_break() {
            return Err(SourceError::Stopped {
                path: path.to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(path: &Path) -> (Vec<SourceItem>, Result<(), SourceError>) {
        let mut items = Vec::new();
        let result = files(path).and_then(|files| {
            read_files(&files, |item| {
                items.push(item);
                ControlFlow::Continue(())
            })
        });
        (items, result)
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }

    #[test]
    fn arrays_and_ndjson_files_give_the_same_envelopes() {
        let dir = tempfile::tempdir().unwrap();
        let doc = r#"{"id":"a","timestamp":1,"type":"T","data":{}}"#;
        let array = write(dir.path(), "a.json", &format!("\n [{doc}, 5, {doc}]\n"));
        let lines = write(
            dir.path(),
            "b.ndjson",
            &format!("{doc}\nnot json\n\n{doc}\n"),
        );
        let (items, result) = collect(&array);
        result.unwrap();
        assert_eq!(
            items.iter().map(Result::is_ok).collect::<Vec<_>>(),
            [true, false, true]
        );
        let (items, result) = collect(&lines);
        result.unwrap();
        assert_eq!(
            items.iter().map(Result::is_ok).collect::<Vec<_>>(),
            [true, false, true]
        );
        let (items, result) = collect(dir.path());
        result.unwrap();
        assert_eq!(items.len(), 6);
    }

    #[test]
    fn a_line_of_invalid_utf8_fails_that_document_only() {
        let dir = tempfile::tempdir().unwrap();
        let doc = r#"{"id":"a","timestamp":1,"type":"T","data":{}}"#;
        let path = dir.path().join("bad.ndjson");
        std::fs::write(
            &path,
            [doc.as_bytes(), b"\n\xff\xfe\n", doc.as_bytes()].concat(),
        )
        .unwrap();
        let (items, result) = collect(&path);
        result.unwrap();
        assert_eq!(
            items.iter().map(Result::is_ok).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert!(
            items[1]
                .as_ref()
                .unwrap_err()
                .reason
                .starts_with("not UTF-8")
        );
    }

    #[test]
    fn a_cut_off_array_keeps_what_came_before_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let doc = r#"{"id":"a","timestamp":1,"type":"T","data":{}}"#;
        let path = write(
            dir.path(),
            "cut.json",
            &format!("[{doc},{doc},{{\"id\":\"b\",\"tim"),
        );
        let (items, result) = collect(&path);
        assert_eq!(items.len(), 2);
        assert!(
            matches!(result, Err(SourceError::Scan { .. })),
            "{result:?}"
        );
        let tail = result.as_ref().unwrap_err().unread_tail().unwrap();
        assert_eq!(&tail[..], br#"{"id":"b","tim"#);
    }

    #[test]
    fn unreadable_and_wrong_sources_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            collect(&dir.path().join("missing.json")).1,
            Err(SourceError::Io { .. })
        ));
        assert!(matches!(
            collect(dir.path()).1,
            Err(SourceError::Empty { .. })
        ));
        let path = write(dir.path(), "x.json", "\"text\"");
        assert!(matches!(
            collect(&path).1,
            Err(SourceError::NotDocuments { found: '"', .. })
        ));
    }
}
