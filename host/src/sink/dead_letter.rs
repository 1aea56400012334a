//! Failed documents kept: every record fitted to its columns and sized under the database's
//! statement limit, a document too large for one statement split across consecutive records,
//! and a record the database still refuses written to the log whole.

use super::insert::chunks_by_size;
use super::{DEAD_LETTER_TABLE, Engine, Sink, SinkError, engine, retry};
use crate::model::FailedDocument;

impl Sink {
    /// Keeps failed documents in the dead-letter table.
    pub async fn record_failures(
        &self,
        run_id: &str,
        failures: &[FailedDocument],
    ) -> Result<(), SinkError> {
        if failures.is_empty() {
            return Ok(());
        }
        // Values come from bad input: fit them to the table's columns first, and split a
        // document too large for one statement across consecutive records.
        let max_bytes = engine!(self, engine => engine.max_statement_bytes());
        let records: Vec<FailedDocument> = failures
            .iter()
            .flat_map(|failure| split_dead_letter(fit_dead_letter(failure), max_bytes / 2))
            .collect();
        for (_, chunk) in chunks_by_size(&records, 500, max_bytes, dead_letter_bytes) {
            self.record_failure_chunk(run_id, chunk).await?;
        }
        Ok(())
    }

    /// One statement's worth of dead letters; the records the database refuses even so are
    /// tried one by one, and one it refuses alone goes to the log whole.
    async fn record_failure_chunk(
        &self,
        run_id: &str,
        failures: &[FailedDocument],
    ) -> Result<(), SinkError> {
        let batch = self
            .retrying(DEAD_LETTER_TABLE, "insert", || async {
                engine!(self, engine => engine.record_failures(run_id, failures).await)
            })
            .await;
        match batch {
            Ok(()) => Ok(()),
            // Still refused: keep every record that can be kept. A record the database cannot
            // take at all goes to the log whole, so that it is not lost either.
            Err(SinkError::Database { source, .. }) if !retry::is_transient(&source) => {
                for failure in failures {
                    let one = std::slice::from_ref(failure);
                    if let Err(error) =
                        engine!(self, engine => engine.record_failures(run_id, one).await)
                    {
                        tracing::error!(
                            type_name = %failure.type_name,
                            id = failure.id.as_deref().unwrap_or("-"),
                            stage = failure.stage.as_str(),
                            error = %failure.error,
                            document = %failure.document,
                            "cannot keep a failed document in {DEAD_LETTER_TABLE}: {error}"
                        );
                    }
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

fn dead_letter_bytes(failure: &FailedDocument) -> usize {
    failure.document.len()
        + failure.error.len()
        + failure.type_name.len()
        + failure.id.as_ref().map_or(0, String::len)
        + 128
}

/// A dead letter whose document is larger than `max_part` bytes, as consecutive records of
/// parts of it (`[part 2/5]` before the error): written in one go, in order, so that the
/// document is kept whole and can be put together again by `failure_id`.
fn split_dead_letter(failure: FailedDocument, max_part: usize) -> Vec<FailedDocument> {
    let max_part = max_part.max(1024);
    if failure.document.len() <= max_part {
        return vec![failure];
    }
    let mut parts = Vec::new();
    let mut rest = failure.document.as_str();
    while !rest.is_empty() {
        let mut end = max_part.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(index, part)| FailedDocument {
            error: format!("[part {}/{count}] {}", index + 1, failure.error),
            document: part.to_owned(),
            ..failure.clone()
        })
        .collect()
}

/// A dead-letter record that fits the table on every engine: no NUL characters (PostgreSQL
/// text cannot hold them), a type name of at most 64 characters, a document id of at most 255
/// (else none: the whole document is kept anyway), an error of at most 8,000.
fn fit_dead_letter(failure: &FailedDocument) -> FailedDocument {
    fn clean(text: &str, limit: usize) -> String {
        let text: String = text.chars().take(limit).collect();
        if text.contains('\0') {
            text.replace('\0', "\\0")
        } else {
            text
        }
    }
    FailedDocument {
        type_name: clean(&failure.type_name, 64),
        id: failure
            .id
            .as_deref()
            .filter(|id| id.chars().count() <= 255)
            .map(|id| clean(id, 255)),
        timestamp: failure.timestamp,
        stage: failure.stage,
        error: clean(&crate::secrets::scrub(&failure.error), 8_000),
        document: if failure.document.contains('\0') {
            failure.document.replace('\0', "\\u0000")
        } else {
            failure.document.clone()
        },
        origin: failure.origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_fitted_to_their_columns() {
        let failure = FailedDocument {
            type_name: "T".repeat(100),
            id: Some("x".repeat(300)),
            timestamp: None,
            stage: crate::model::Stage::Envelope,
            error: format!("bad \0 {}", "e".repeat(10_000)),
            document: "{\"id\":\"a\0\"}".into(),
            origin: None,
        };
        let fitted = fit_dead_letter(&failure);
        assert_eq!(fitted.type_name.len(), 64);
        assert_eq!(fitted.id, None);
        assert_eq!(fitted.error.chars().count(), 8_001);
        assert!(!fitted.error.contains('\0') && !fitted.document.contains('\0'));
    }

    #[test]
    fn big_documents_split_in_order() {
        let failure = FailedDocument {
            type_name: "T".into(),
            id: Some("a".into()),
            timestamp: Some(1),
            stage: crate::model::Stage::Plugin,
            error: "boom".into(),
            document: "é".repeat(3_000),
            origin: None,
        };
        let parts = split_dead_letter(failure.clone(), 1_025);
        assert_eq!(parts.len(), 6);
        assert!(parts.iter().all(|part| part.document.len() <= 1_025));
        assert_eq!(parts[1].error, "[part 2/6] boom");
        let whole: String = parts.iter().map(|part| part.document.as_str()).collect();
        assert_eq!(whole, failure.document);
        assert_eq!(split_dead_letter(failure.clone(), 1 << 20), vec![failure]);
    }
}
