//! Which database errors are worth another try, and the backoff between tries.

use std::time::{Duration, Instant};

use backon::ExponentialBuilder;

/// Exponential backoff with jitter: 200 ms, 400 ms, … up to 10 s, 8 tries (about a minute in
/// all), which rides out an Aurora failover (typically under 30 s). [`Budget`] bounds it by
/// time as well.
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(8)
        .with_jitter()
}

/// The longest one operation may spend retrying, its tries included, without a deadline.
pub const MAX_RETRYING: Duration = Duration::from_secs(120);

/// When retrying one operation must stop: at the run's deadline, and at [`MAX_RETRYING`] after
/// its first try. A wait that would end past either is not taken.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    ends: Instant,
}

impl Budget {
    pub fn new(deadline: Option<Instant>) -> Budget {
        Budget {
            ends: crate::window::operation_end(MAX_RETRYING, deadline),
        }
    }

    /// The wait before the next try, or `None` (give up) when it would end past the budget.
    pub fn next_delay(&self, delay: Option<Duration>) -> Option<Duration> {
        delay.filter(|delay| Instant::now() + *delay < self.ends)
    }
}

/// MySQL's "packet bigger than max_allowed_packet": the statement itself is too large, and
/// will be on every try. (Its SQLSTATE, 08S01, otherwise means a lost connection.)
pub const MYSQL_PACKET_TOO_LARGE: u16 = 1153;

/// MySQL's error number, when the error is MySQL's (never in a build without MySQL).
fn mysql_number(database: &dyn sqlx::error::DatabaseError) -> Option<u16> {
    #[cfg(feature = "mysql")]
    return database
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|mysql| mysql.number());
    #[cfg(not(feature = "mysql"))]
    return {
        let _ = database;
        None
    };
}

/// Whether the error is SQLite's.
fn is_sqlite(database: &dyn sqlx::error::DatabaseError) -> bool {
    #[cfg(feature = "sqlite")]
    return database
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some();
    #[cfg(not(feature = "sqlite"))]
    return {
        let _ = database;
        false
    };
}

/// Whether an error is likely to pass on its own: a lost connection, a deadlock, a failover
/// that left the connection on a read-only instance, too many connections.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(database) => {
            let code = database.code().unwrap_or_default();
            if let Some(number) = mysql_number(database.as_ref()) {
                // MySQL/MariaDB say what happened in their error number; the SQLSTATE is a
                // broad class. Deadlock, lock wait timeout, too many connections, read-only
                // (after a failover), server gone or lost, shutdown, connection killed,
                // MariaDB's max_statement_time and MySQL's max_execution_time.
                const TRANSIENT: [u16; 12] = [
                    1213, 1205, 1040, 1290, 1836, 1792, 2006, 2013, 1053, 1927, 1969, 3024,
                ];
                return number != MYSQL_PACKET_TOO_LARGE
                    && (TRANSIENT.contains(&number)
                        || code.starts_with("08")
                        || database.message().contains("read-only"));
            }
            // PostgreSQL SQLSTATEs: serialization, deadlock, too many connections, read-only
            // transaction, admin shutdown, crash shutdown, cannot connect now, lock_timeout,
            // statement_timeout; class 08 is connection exceptions.
            const POSTGRES: [&str; 9] = [
                "40001", "40P01", "53300", "25006", "57P01", "57P02", "57P03", "55P03", "57014",
            ];
            POSTGRES.contains(&code.as_ref()) || code.starts_with("08")
        }
        _ => false,
    }
}

/// Whether an error says the database cannot store anything now (a full disk or table, an I/O
/// error, no right to write, a timeout, a missing table), as opposed to a value of the rows
/// that it refuses. Such a write fails as a whole: its rows are neither counted nor tried one
/// by one, and the run stops with the reason.
pub fn is_storage_failure(error: &sqlx::Error) -> bool {
    if is_transient(error) {
        return true;
    }
    let sqlx::Error::Database(database) = error else {
        return false;
    };
    if let Some(number) = mysql_number(database.as_ref()) {
        // File not found, disk full, engine error, table full, error during COMMIT or
        // ROLLBACK, access denied (database, table, column, command), no such table or
        // column, out of memory, read-only schema.
        const STORAGE: [u16; 16] = [
            3, 1021, 1030, 1114, 1180, 1181, 1044, 1045, 1142, 1143, 1146, 1054, 1037, 1038, 3989,
            1036,
        ];
        return STORAGE.contains(&number);
    }
    let code = database.code().unwrap_or_default();
    if is_sqlite(database.as_ref()) {
        // The primary result code: SQLITE_PERM, BUSY and LOCKED (another process held the
        // file past the busy timeout), NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB
        // (extended codes keep it in their low byte).
        let primary = code.parse::<u32>().unwrap_or(0) & 0xff;
        return [3, 5, 6, 7, 8, 10, 11, 13, 14, 26].contains(&primary);
    }
    // PostgreSQL: insufficient resources (53: disk full, out of memory), operator
    // intervention (57), system errors (58), internal errors (XX), invalid transaction state
    // (25), no privilege, no such table or column.
    ["53", "57", "58", "XX", "25"]
        .iter()
        .any(|class| code.starts_with(class))
        || ["42501", "42P01", "42703"].contains(&code.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_at_the_deadline_and_within_the_budget_without_one() {
        let unbounded = Budget::new(None);
        assert_eq!(
            unbounded.next_delay(Some(Duration::from_secs(10))),
            Some(Duration::from_secs(10))
        );
        // No wait that would end past the retry budget, even without a deadline.
        assert_eq!(unbounded.next_delay(Some(MAX_RETRYING)), None);
        // None past the deadline either.
        let soon = Budget::new(Some(Instant::now() + Duration::from_secs(2)));
        assert_eq!(
            soon.next_delay(Some(Duration::from_millis(200))),
            Some(Duration::from_millis(200))
        );
        assert_eq!(soon.next_delay(Some(Duration::from_secs(3))), None);
        assert_eq!(
            Budget::new(Some(Instant::now())).next_delay(Some(Duration::ZERO)),
            None
        );
    }
}
