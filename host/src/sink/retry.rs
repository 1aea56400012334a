//! Which database errors are worth another try, and the backoff between tries.

use std::time::Duration;

use backon::ExponentialBuilder;

/// Exponential backoff with jitter: 200 ms, 400 ms, … up to 10 s, 8 tries (about a minute in
/// all), which rides out an Aurora failover (typically under 30 s).
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(8)
        .with_jitter()
}

/// MySQL's "packet bigger than max_allowed_packet": the statement itself is too large, and
/// will be on every try. (Its SQLSTATE, 08S01, otherwise means a lost connection.)
pub const MYSQL_PACKET_TOO_LARGE: u16 = 1153;

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
            if let Some(mysql) = database.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                // MySQL/MariaDB say what happened in their error number; the SQLSTATE is a
                // broad class. Deadlock, lock wait timeout, too many connections, read-only
                // (after a failover), server gone or lost, shutdown, connection killed.
                const TRANSIENT: [u16; 10] =
                    [1213, 1205, 1040, 1290, 1836, 1792, 2006, 2013, 1053, 1927];
                let number = mysql.number();
                return number != MYSQL_PACKET_TOO_LARGE
                    && (TRANSIENT.contains(&number)
                        || code.starts_with("08")
                        || database.message().contains("read-only"));
            }
            // PostgreSQL SQLSTATEs: serialization, deadlock, too many connections, read-only
            // transaction, admin shutdown, crash shutdown, cannot connect now; class 08 is
            // connection exceptions.
            const POSTGRES: [&str; 7] = [
                "40001", "40P01", "53300", "25006", "57P01", "57P02", "57P03",
            ];
            POSTGRES.contains(&code.as_ref()) || code.starts_with("08")
        }
        _ => false,
    }
}
