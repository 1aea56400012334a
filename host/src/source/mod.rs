//! Where documents come from. A source streams envelopes as it reads them, so memory does not
//! grow with the size of the window.

mod fetch;
mod file;
pub mod scan;

use std::path::PathBuf;

pub use fetch::{FetchApi, FetchTimeouts};
#[cfg(feature = "kit")]
pub use file::read_files;
pub use file::{files, read_files_counted};

use crate::credentials::{ApiCredential, CredentialsError};
use crate::document::{Envelope, EnvelopeError};

/// Where to read documents from.
#[derive(Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A JSON array or NDJSON file of envelopes, or a folder of such files (`file:PATH`).
    Files(PathBuf),
    /// The two-step fetch API at `base_url` (`https://…/get_docs/`), with its key.
    Fetch {
        base_url: String,
        key: ApiCredential,
    },
    /// The dead letters of the run's database (`replay`): each failed document again.
    DeadLetters(crate::sink::replay::Replay),
}

impl std::fmt::Debug for SourceSpec {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Files(path) => f.debug_tuple("Files").field(path).finish(),
            SourceSpec::Fetch { base_url, .. } => f
                .debug_struct("Fetch")
                .field("base_url", &crate::http::redact(base_url))
                .finish_non_exhaustive(),
            SourceSpec::DeadLetters(replay) => f.debug_tuple("DeadLetters").field(replay).finish(),
        }
    }
}

impl SourceSpec {
    /// Parses `file:PATH` (a bare path means the same) or `https://…/` (the fetch API, which
    /// needs `key`).
    pub fn parse(spec: &str, key: Option<ApiCredential>) -> Result<Self, SourceError> {
        if spec.starts_with("http://") || spec.starts_with("https://") {
            let key = key.ok_or(SourceError::MissingKey)?;
            return Ok(SourceSpec::Fetch {
                base_url: spec.to_owned(),
                key,
            });
        }
        let path = spec.strip_prefix("file:").unwrap_or(spec);
        if path.is_empty() {
            return Err(SourceError::Unsupported(spec.to_owned()));
        }
        Ok(SourceSpec::Files(PathBuf::from(path)))
    }
}

/// Why a source could not be read (whole or from some point on).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("unsupported source {0:?}: expected file:PATH or https://…/ (the fetch API)")]
    Unsupported(String),
    #[error(
        "the fetch API needs a key: set DATAPLATTFORM_AURORA_FETCH_KEY_SECRET (a Secrets Manager secret's ARN) or DATAPLATTFORM_AURORA_FETCH_KEY"
    )]
    MissingKey,
    /// The key's secret could not be read.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Fetch(#[from] crate::http::HttpError),
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no .json, .ndjson or .jsonl files")]
    Empty { path: PathBuf },
    #[error("{path} is not a JSON array of documents or NDJSON: it starts with {found:?}")]
    NotDocuments { path: PathBuf, found: char },
    #[error("cannot read {path} on")]
    Scan {
        path: PathBuf,
        #[source]
        source: scan::ScanError,
    },
    #[error("the run's deadline came before the window was read to its end")]
    Deadline,
    #[error("the run stopped reading {path}")]
    Stopped { path: PathBuf },
}

/// One element read from a source.
pub type SourceItem = Result<Envelope, EnvelopeError>;

impl SourceError {
    /// The raw bytes a source could not read as documents, to be kept as a dead letter.
    pub fn unread_tail(&self) -> Option<&bytes::Bytes> {
        match self {
            SourceError::Scan { source, .. } => source.tail(),
            _ => None,
        }
    }
}
