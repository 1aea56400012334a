//! The databases' own tools on exactly the rows the job stored: each type's table is exported
//! once, then loaded into a fresh empty copy of the table (same columns, same primary key) by
//! each tool, timed, and counted back.
//!
//! - MariaDB: the `mariadb` client with 1,000-row `INSERT` statements, and
//!   `LOAD DATA LOCAL INFILE` of a TSV;
//! - PostgreSQL: `psql` with `\copy` of the same TSV, and `psql` with 1,000-row `INSERT`s.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::measure::{self, Measured};

/// Rows per `INSERT` statement.
const ROWS_PER_INSERT: usize = 1_000;

/// One tool's load of every type's rows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolRun {
    pub tool: &'static str,
    pub rows: u64,
    pub wall_s: f64,
    pub rows_per_s: f64,
    /// The client's own CPU.
    pub client_cpu_us_per_row: f64,
    /// The database server's CPU meanwhile (every process of the server, so other load on the
    /// machine's database counts too).
    pub server_cpu_us_per_row: f64,
}

/// The tables' rows, exported once for every tool.
pub struct Export {
    pub table: String,
    pub tsv: PathBuf,
    pub rows: u64,
    /// Column names and whether each is numeric (written bare in `INSERT`s).
    pub columns: Vec<(String, bool)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Mariadb,
    Postgres,
}

impl Server {
    /// The command names of the server's processes.
    pub fn process_names(self) -> &'static [&'static str] {
        match self {
            Server::Mariadb => &["mariadbd", "mysqld"],
            Server::Postgres => &["postgres"],
        }
    }

    fn copy_name(self, table: &str) -> String {
        match self {
            Server::Mariadb => format!("`bench_copy_{table}`"),
            Server::Postgres => format!("\"bench_copy_{table}\""),
        }
    }

    fn quote(self, identifier: &str) -> String {
        match self {
            Server::Mariadb => format!("`{identifier}`"),
            Server::Postgres => format!("\"{identifier}\""),
        }
    }

    /// A client command on the bench database.
    fn client(self) -> Command {
        match self {
            Server::Mariadb => {
                let mut command = Command::new("mariadb");
                command.args([
                    "--protocol=TCP",
                    "-h",
                    "127.0.0.1",
                    "-P",
                    "3306",
                    "-u",
                    "root",
                ]);
                command
            }
            Server::Postgres => {
                let mut command = Command::new("psql");
                command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
                command.args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]);
                command
            }
        }
    }

    /// Runs one statement (or a psql meta-command); its output, rows tab-separated.
    pub fn query(self, sql: &str) -> Result<String> {
        let mut command = self.client();
        match self {
            Server::Mariadb => command.args(["-B", "-N", "-r", "test", "-e", sql]),
            Server::Postgres => command.args(["-A", "-t", "-F", "\t", "test", "-c", sql]),
        };
        let output = command
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {command:?}"))?;
        ensure!(
            output.status.success(),
            "{sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Drops the tables of a type plugin run and the copies of an earlier bench.
    pub fn drop_tables(self, tables: &[&str]) -> Result<()> {
        let mut names: Vec<String> = tables.iter().map(|t| self.quote(t)).collect();
        names.extend(
            tables
                .iter()
                .filter(|t| t.ends_with("Type"))
                .map(|t| self.copy_name(t)),
        );
        self.query(&format!("DROP TABLE IF EXISTS {}", names.join(", ")))
            .map(drop)
    }

    fn count(self, table: &str) -> Result<u64> {
        let text = self.query(&format!("SELECT COUNT(*) FROM {table}"))?;
        text.trim()
            .parse()
            .with_context(|| format!("COUNT(*) of {table} gave {text:?}"))
    }

    /// Writes a table's stored rows as TSV in the text format both `LOAD DATA` and `COPY`
    /// read: tab-separated, `\N` for NULL, backslash escapes.
    pub fn export(self, work: &Path, table: &str) -> Result<Option<Export>> {
        let columns = self.columns(table)?;
        if columns.is_empty() {
            return Ok(None);
        }
        let tsv = work.join(format!("{}-{table}.tsv", self.name()));
        let file = std::fs::File::create(&tsv)?;
        let mut command = self.client();
        match self {
            Server::Mariadb => {
                let escaped: Vec<String> = columns
                    .iter()
                    .map(|(name, _)| {
                        format!(
                            r"IFNULL(REPLACE(REPLACE(REPLACE(REPLACE(`{name}`, '\\', '\\\\'), '\t', '\\t'), '\n', '\\n'), '\r', '\\r'), '\\N')"
                        )
                    })
                    .collect();
                let sql = format!(
                    "SELECT CONCAT_WS(CHAR(9), {}) FROM `{table}`",
                    escaped.join(", ")
                );
                command.args(["-B", "-N", "-r", "test", "-e", &sql]);
            }
            Server::Postgres => {
                let meta = format!("\\copy \"{table}\" TO STDOUT");
                command.args(["test", "-c", &meta]);
            }
        }
        let output = command
            .stdout(file)
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot run {command:?}"))?;
        ensure!(
            output.status.success(),
            "exporting {table} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let rows = std::io::BufReader::new(std::fs::File::open(&tsv)?)
            .lines()
            .count() as u64;
        Ok(Some(Export {
            table: table.to_owned(),
            tsv,
            rows,
            columns,
        }))
    }

    fn name(self) -> &'static str {
        match self {
            Server::Mariadb => "mysql",
            Server::Postgres => "postgres",
        }
    }

    /// A table's columns in order, with whether each is numeric; empty when it does not exist.
    fn columns(self, table: &str) -> Result<Vec<(String, bool)>> {
        let sql = match self {
            Server::Mariadb => format!(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
            ),
            Server::Postgres => format!(
                "SELECT column_name, data_type FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = '{table}' ORDER BY ordinal_position"
            ),
        };
        const NUMERIC: [&str; 11] = [
            "tinyint",
            "smallint",
            "mediumint",
            "int",
            "integer",
            "bigint",
            "decimal",
            "numeric",
            "double",
            "double precision",
            "real",
        ];
        Ok(self
            .query(&sql)?
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(name, kind)| {
                (
                    name.to_owned(),
                    NUMERIC.contains(&kind.to_lowercase().as_str()),
                )
            })
            .collect())
    }

    /// An empty table shaped like `table`.
    fn fresh_copy(self, table: &str) -> Result<String> {
        let copy = self.copy_name(table);
        self.query(&format!("DROP TABLE IF EXISTS {copy}"))?;
        match self {
            Server::Mariadb => self.query(&format!("CREATE TABLE {copy} LIKE `{table}`"))?,
            Server::Postgres => self.query(&format!(
                "CREATE TABLE {copy} (LIKE \"{table}\" INCLUDING ALL)"
            ))?,
        };
        Ok(copy)
    }

    /// Every tool of this server on every export.
    pub fn tools(self, work: &Path, exports: &[Export]) -> Result<Vec<ToolRun>> {
        let tools: &[(&str, Tool)] = match self {
            Server::Mariadb => &[
                ("mariadb client, 1,000-row INSERTs", Tool::Inserts),
                ("mariadb LOAD DATA LOCAL INFILE", Tool::Bulk),
            ],
            Server::Postgres => &[
                ("psql \\copy", Tool::Bulk),
                ("psql, 1,000-row INSERTs", Tool::Inserts),
            ],
        };
        let mut runs = Vec::new();
        for (name, tool) in tools {
            let mut rows = 0;
            let mut wall = Duration::ZERO;
            let mut client = Duration::ZERO;
            let mut server = Duration::ZERO;
            for export in exports {
                let copy = self.fresh_copy(&export.table)?;
                let mut command = self.client();
                match (self, tool) {
                    (_, Tool::Inserts) => {
                        let sql = work.join(format!("{}-{}.sql", self.name(), export.table));
                        self.write_inserts(export, &copy, &sql)?;
                        command.arg("test");
                        command.stdin(std::fs::File::open(&sql)?);
                    }
                    (Server::Mariadb, Tool::Bulk) => {
                        let sql = format!(
                            "LOAD DATA LOCAL INFILE '{}' INTO TABLE {copy} CHARACTER SET utf8mb4",
                            export.tsv.display()
                        );
                        command.args(["--local-infile=1", "test", "-e", &sql]);
                        command.stdin(Stdio::null());
                    }
                    (Server::Postgres, Tool::Bulk) => {
                        let meta = format!("\\copy {copy} FROM '{}'", export.tsv.display());
                        command.args(["test", "-c", &meta]);
                        command.stdin(Stdio::null());
                    }
                }
                let before = measure::cpu_of_processes(self.process_names());
                let measured: Measured = measure::run(&mut command)?;
                // A PostgreSQL backend's time reaches the postmaster once it is reaped.
                std::thread::sleep(Duration::from_millis(50));
                let after = measure::cpu_of_processes(self.process_names());
                if !measured.success() {
                    bail!("{name} into {copy} failed: {}", measured.stderr_text());
                }
                let stored = self.count(&copy)?;
                ensure!(
                    stored == export.rows,
                    "{name} stored {stored} rows in {copy}, not the {} exported",
                    export.rows
                );
                self.query(&format!("DROP TABLE {copy}"))?;
                rows += export.rows;
                wall += measured.wall;
                client += measured.cpu();
                server += after.saturating_sub(before);
            }
            let per_row = |d: Duration| d.as_secs_f64() * 1e6 / rows.max(1) as f64;
            runs.push(ToolRun {
                tool: name,
                rows,
                wall_s: wall.as_secs_f64(),
                rows_per_s: rows as f64 / wall.as_secs_f64().max(1e-9),
                client_cpu_us_per_row: per_row(client),
                server_cpu_us_per_row: per_row(server),
            });
        }
        Ok(runs)
    }

    /// The export as `INSERT` statements of [`ROWS_PER_INSERT`] rows into `copy`, each its own
    /// transaction (autocommit), as a dump would load.
    fn write_inserts(self, export: &Export, copy: &str, path: &Path) -> Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        let columns: Vec<String> = export.columns.iter().map(|(c, _)| self.quote(c)).collect();
        let head = format!("INSERT INTO {copy} ({}) VALUES\n", columns.join(", "));
        let reader = std::io::BufReader::new(std::fs::File::open(&export.tsv)?);
        let mut in_statement = 0;
        for line in reader.lines() {
            let line = line?;
            out.write_all(if in_statement == 0 {
                head.as_bytes()
            } else {
                b",\n"
            })?;
            out.write_all(b"(")?;
            for (index, (field, (_, numeric))) in line.split('\t').zip(&export.columns).enumerate()
            {
                if index > 0 {
                    out.write_all(b", ")?;
                }
                out.write_all(self.literal(field, *numeric).as_bytes())?;
            }
            out.write_all(b")")?;
            in_statement += 1;
            if in_statement == ROWS_PER_INSERT {
                out.write_all(b";\n")?;
                in_statement = 0;
            }
        }
        if in_statement > 0 {
            out.write_all(b";\n")?;
        }
        out.flush()?;
        Ok(())
    }

    /// A TSV field as an SQL literal.
    fn literal(self, field: &str, numeric: bool) -> String {
        if field == "\\N" {
            return "NULL".into();
        }
        let text = unescape(field);
        if numeric {
            return text;
        }
        let mut literal = String::with_capacity(text.len() + 2);
        literal.push('\'');
        for c in text.chars() {
            match c {
                '\'' => literal.push_str("''"),
                '\\' if self == Server::Mariadb => literal.push_str("\\\\"),
                c => literal.push(c),
            }
        }
        literal.push('\'');
        literal
    }
}

#[derive(Clone, Copy)]
enum Tool {
    /// 1,000-row `INSERT` statements through the command-line client.
    Inserts,
    /// The bulk loader: `LOAD DATA LOCAL INFILE`, or `\copy`.
    Bulk,
}

/// Undoes the text format's backslash escapes.
fn unescape(field: &str) -> String {
    let mut text = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => text.push('\t'),
            Some('n') => text.push('\n'),
            Some('r') => text.push('\r'),
            Some('0') => text.push('\0'),
            Some(other) => text.push(other),
            None => text.push('\\'),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_for_each_server() {
        assert_eq!(Server::Mariadb.literal("a'b\\\\c", false), "'a''b\\\\c'");
        assert_eq!(Server::Postgres.literal("a'b\\\\c", false), "'a''b\\c'");
        assert_eq!(Server::Postgres.literal("\\N", false), "NULL");
        assert_eq!(Server::Mariadb.literal("42", true), "42");
        assert_eq!(Server::Mariadb.literal("x\\ty", false), "'x\ty'");
    }
}
