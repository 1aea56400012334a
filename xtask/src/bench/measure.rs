//! Measuring a child process: wall time, its own CPU (from `wait4`, so nothing of ours counts)
//! and its peak resident memory; and the CPU other processes (the database server, the fake
//! fetch API) spent meanwhile, from `/proc`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// What a finished child cost.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    pub wall: Duration,
    pub user: Duration,
    pub system: Duration,
    /// The high-water mark of resident memory: the larger of `ru_maxrss` and the polled
    /// `VmHWM`.
    pub peak_rss_kib: u64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Measured {
    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The child's stderr, for an error message.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }
}

/// Runs `command` to its end and measures it, capturing its stdout and stderr.
pub fn run(command: &mut Command) -> Result<Measured> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))?;
    let pid = child.id();
    let drain = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let mut hwm = 0;
    let (status, usage) = loop {
        hwm = hwm.max(vm_hwm_kib(pid).unwrap_or(0));
        if let Some(done) = wait4_nohang(pid)? {
            break done;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = started.elapsed();
    // The child is reaped: `Child` must not wait for it again (dropping it does not).
    drop(child);
    let timeval = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    Ok(Measured {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        wall,
        user: timeval(usage.ru_utime),
        system: timeval(usage.ru_stime),
        peak_rss_kib: hwm.max(usage.ru_maxrss as u64),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Reaps `pid` if it has exited, with its resource usage.
fn wait4_nohang(pid: u32) -> Result<Option<(libc::c_int, libc::rusage)>> {
    let mut status = 0;
    // SAFETY: a zeroed `rusage` is a valid value; `wait4` only writes into the two locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain system call on our own child with valid pointers.
    let reaped = unsafe { libc::wait4(pid as libc::pid_t, &mut status, libc::WNOHANG, &mut usage) };
    match reaped {
        0 => Ok(None),
        r if r == pid as libc::pid_t => Ok(Some((status, usage))),
        _ => Err(std::io::Error::last_os_error()).context("wait4"),
    }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Clock ticks per second of `/proc/*/stat`.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// utime, stime, cutime and cstime of a process, in ticks, and its command name.
fn stat(pid: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_owned();
    // After the name: state is field 3; utime..cstime are fields 14..17.
    let fields: Vec<&str> = text[close + 2..].split(' ').collect();
    let ticks = fields
        .get(11..15)?
        .iter()
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    Some((name, ticks))
}

/// The CPU time spent so far by every process whose command name is one of `names`, their
/// reaped children included (a PostgreSQL backend's time moves to the postmaster when it
/// exits, so a difference of two readings counts it once).
pub fn cpu_of_processes(names: &[&str]) -> Duration {
    let mut ticks = 0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(pid) = file_name.to_str() else {
                continue;
            };
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Some((name, spent)) = stat(pid)
                && names.contains(&name.as_str())
            {
                ticks += spent;
            }
        }
    }
    Duration::from_micros(ticks * 1_000_000 / ticks_per_second())
}

/// The CPU time one process has spent so far (its threads included).
pub fn cpu_of_pid(pid: u32) -> Duration {
    let ticks = stat(&pid.to_string()).map_or(0, |(_, ticks)| ticks);
    Duration::from_micros(ticks * 1_000_000 / ticks_per_second())
}
