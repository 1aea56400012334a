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
            // MySQL/MariaDB error numbers, and PostgreSQL SQLSTATEs.
            const MYSQL: [&str; 9] = [
                "1213", "1205", "1040", "1290", "1836", "1792", "2006", "2013", "1927",
            ];
            const POSTGRES: [&str; 7] = [
                "40001", "40P01", "53300", "25006", "57P01", "57P02", "57P03",
            ];
            MYSQL.contains(&code.as_ref())
                || POSTGRES.contains(&code.as_ref())
                || code.starts_with("08")
                // MariaDB reports "Connection was killed" (1927) and a server shutdown (1053).
                || code == "1053"
                || (code == "HY000" && database.message().contains("read-only"))
        }
        _ => false,
    }
}
