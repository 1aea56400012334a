//! Dead letters read back for a replay: selected, rejoined when a document was kept in parts,
//! and marked with what their replay did. A record is never deleted but by `--purge-stored`,
//! and only once its document is stored.

use super::{DEAD_LETTER_TABLE, Engine, Sink, SinkError, engine};

/// Which dead letters a replay reads: those waiting (never replayed, or failed again), of
/// every stage but `source` (bytes that were never a document).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Only these types; `None`: every type.
    pub types: Option<Vec<String>>,
    /// Only these stages (as stored); empty: every stage.
    pub stages: Vec<&'static str>,
    /// Only records that failed at or after / at or before these Unix seconds.
    pub failed_since: Option<i64>,
    pub failed_until: Option<i64>,
    /// Only records of this run.
    pub run_id: Option<String>,
}

/// A replay: the dead letters it reads, and what it does besides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    pub query: DeadLetterQuery,
    /// Afterwards, delete the records whose documents are now stored.
    pub purge_stored: bool,
    /// Only count what would be replayed; change nothing.
    pub dry_run: bool,
}

/// The stages a replay's `--stage` names, as stored: `plugin` covers every failure in the
/// plugin (its error, a trap, rows that did not fit its columns); `all` every stage.
pub fn stages(name: &str) -> Option<Vec<&'static str>> {
    Some(match name {
        "envelope" => vec!["envelope"],
        "plugin" => vec!["plugin", "trap", "validation"],
        "sink" => vec!["sink"],
        "all" => Vec::new(),
        _ => return None,
    })
}

/// One dead-letter record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// The record's key (`failure_id`; SQLite's rowid), in the order records were written.
    pub key: i64,
    pub run_id: String,
    pub type_name: String,
    pub document_id: Option<String>,
    pub timestamp: Option<i64>,
    pub stage: String,
    pub error: String,
    pub document: String,
}

/// A failed document as a replay reads it: its records (one, or the parts of a document too
/// large for one statement, rejoined) and the document whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The keys of its records, in order; for parts, with the `[part i/n] ` prefix each
    /// record's error keeps.
    pub records: Vec<(i64, String)>,
    pub type_name: String,
    pub document_id: Option<String>,
    pub stage: String,
    /// The error, without a part prefix.
    pub error: String,
    pub document: String,
}

impl DeadLetter {
    pub fn keys(&self) -> impl Iterator<Item = i64> + '_ {
        self.records.iter().map(|(key, _)| *key)
    }
}

/// `[part i/n] rest` → (i, n, rest).
fn part_of(error: &str) -> Option<(usize, usize, &str)> {
    let rest = error.strip_prefix("[part ")?;
    let (numbers, rest) = rest.split_once("] ")?;
    let (index, count) = numbers.split_once('/')?;
    Some((index.parse().ok()?, count.parse().ok()?, rest))
}

/// Puts the parts of split documents together again: consecutive records of one run, type and
/// document id, `[part 1/n]` to `[part n/n]`, are one document. An incomplete set (a part
/// deleted by hand) is left as its records, each failing again as what it is.
pub fn rejoin(records: Vec<StoredDeadLetter>) -> Vec<DeadLetter> {
    let mut letters = Vec::new();
    let mut index = 0;
    while index < records.len() {
        let first = &records[index];
        if let Some((1, count, error)) = part_of(&first.error)
            && count > 1
            && index + count <= records.len()
        {
            let group = &records[index..index + count];
            let whole = group.iter().enumerate().all(|(offset, record)| {
                record.run_id == first.run_id
                    && record.type_name == first.type_name
                    && record.document_id == first.document_id
                    && part_of(&record.error).is_some_and(|(i, n, _)| i == offset + 1 && n == count)
            });
            if whole {
                letters.push(DeadLetter {
                    records: group
                        .iter()
                        .map(|record| {
                            (
                                record.key,
                                format!(
                                    "[part {}/{count}] ",
                                    part_of(&record.error).map_or(0, |p| p.0)
                                ),
                            )
                        })
                        .collect(),
                    type_name: first.type_name.clone(),
                    document_id: first.document_id.clone(),
                    stage: first.stage.clone(),
                    error: error.to_owned(),
                    document: group
                        .iter()
                        .map(|record| record.document.as_str())
                        .collect(),
                });
                index += count;
                continue;
            }
        }
        letters.push(DeadLetter {
            records: vec![(first.key, String::new())],
            type_name: first.type_name.clone(),
            document_id: first.document_id.clone(),
            stage: first.stage.clone(),
            error: first.error.clone(),
            document: first.document.clone(),
        });
        index += 1;
    }
    letters
}

/// What a replayed dead letter's document did this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReplayOutcome {
    Stored,
    Duplicate,
    Refused,
    Failed,
}

impl ReplayOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayOutcome::Stored => "stored",
            ReplayOutcome::Duplicate => "duplicate",
            ReplayOutcome::Refused => "refused",
            ReplayOutcome::Failed => "failed",
        }
    }
}

impl Sink {
    /// The waiting dead letters `query` selects, parts rejoined, in the order they were kept.
    pub async fn dead_letters(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetter>, SinkError> {
        let records = self
            .retrying(DEAD_LETTER_TABLE, "read", || async {
                engine!(self, engine => engine.dead_letters(query).await)
            })
            .await?;
        Ok(rejoin(records))
    }

    /// Marks records as replayed by `run_id`, with what their document did (stored, a
    /// duplicate, refused). A failure again is [`Sink::replay_failed`].
    pub async fn mark_replayed(
        &self,
        run_id: &str,
        outcome: ReplayOutcome,
        keys: &[i64],
    ) -> Result<(), SinkError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.retrying(DEAD_LETTER_TABLE, "mark replayed", || async {
            engine!(self, engine => engine.mark_replayed(run_id, outcome.as_str(), keys).await)
        })
        .await
    }

    /// A replayed dead letter failed again: its records keep the document, with the new
    /// stage and reason (each part its prefix) and one attempt more.
    pub async fn replay_failed(
        &self,
        run_id: &str,
        letter: &DeadLetter,
        stage: crate::model::Stage,
        error: &str,
    ) -> Result<(), SinkError> {
        let error: String = crate::secrets::scrub(error)
            .chars()
            .take(8_000)
            .collect::<String>()
            .replace('\0', "\\0");
        let records: Vec<(i64, String)> = letter
            .records
            .iter()
            .map(|(key, prefix)| (*key, format!("{prefix}{error}")))
            .collect();
        self.retrying(DEAD_LETTER_TABLE, "mark failed again", || async {
            engine!(self, engine => engine.replay_failed(run_id, stage.as_str(), &records).await)
        })
        .await
    }

    /// Deletes the replayed records whose documents are now stored (outcome `stored` or
    /// `duplicate`) of `types` (all when `None`); how many records that was.
    pub async fn purge_stored(&self, types: Option<&[String]>) -> Result<u64, SinkError> {
        self.retrying(DEAD_LETTER_TABLE, "purge stored", || async {
            engine!(self, engine => engine.purge_stored(types).await)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: i64, document_id: &str, error: &str, document: &str) -> StoredDeadLetter {
        StoredDeadLetter {
            key,
            run_id: "r".into(),
            type_name: "T".into(),
            document_id: Some(document_id.into()),
            timestamp: Some(1),
            stage: "plugin".into(),
            error: error.into(),
            document: document.into(),
        }
    }

    #[test]
    fn parts_are_rejoined_and_the_rest_kept_as_they_are() {
        type Case = (
            &'static str,
            Vec<StoredDeadLetter>,
            Vec<(Vec<i64>, &'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "one record",
                vec![record(1, "a", "boom", "{}")],
                vec![(vec![1], "boom", "{}")],
            ),
            (
                "three parts between two whole ones",
                vec![
                    record(1, "a", "x", "A"),
                    record(2, "b", "[part 1/3] boom", "B1"),
                    record(3, "b", "[part 2/3] boom", "B2"),
                    record(4, "b", "[part 3/3] boom", "B3"),
                    record(5, "c", "y", "C"),
                ],
                vec![
                    (vec![1], "x", "A"),
                    (vec![2, 3, 4], "boom", "B1B2B3"),
                    (vec![5], "y", "C"),
                ],
            ),
            (
                "a part missing: each record alone",
                vec![
                    record(2, "b", "[part 1/3] boom", "B1"),
                    record(4, "b", "[part 3/3] boom", "B3"),
                ],
                vec![
                    (vec![2], "[part 1/3] boom", "B1"),
                    (vec![4], "[part 3/3] boom", "B3"),
                ],
            ),
        ];
        for (name, records, expected) in cases {
            let letters = rejoin(records);
            let found: Vec<(Vec<i64>, &str, &str)> = letters
                .iter()
                .map(|l| (l.keys().collect(), l.error.as_str(), l.document.as_str()))
                .collect();
            assert_eq!(found, expected, "{name}");
        }
        let letters = rejoin(vec![
            record(7, "b", "[part 1/2] boom", "B1"),
            record(8, "b", "[part 2/2] boom", "B2"),
        ]);
        assert_eq!(
            letters[0].records,
            [(7, "[part 1/2] ".to_owned()), (8, "[part 2/2] ".to_owned())]
        );
    }
}
