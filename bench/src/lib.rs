//! What the benchmark binaries share.

use std::time::Duration;

/// The CPU time this thread has used: other load on the machine does not count.
pub fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes only into `now`, a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The CPU time of this whole process, every thread (user and system).
pub fn process_cpu() -> Duration {
    // SAFETY: `getrusage` writes only into `usage`, a valid rusage.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A sample of envelopes as `cargo xtask bench` writes it: a JSON array of
/// `{id, timestamp, type, data}`.
pub fn read_envelopes(path: &str) -> anyhow::Result<Vec<batch_job_aurora::Envelope>> {
    use anyhow::Context;
    #[derive(serde::Deserialize)]
    struct Element<'a> {
        id: String,
        timestamp: i64,
        #[serde(rename = "type")]
        type_name: String,
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let elements: Vec<Element> = serde_json::from_str(&text).context("the sample")?;
    anyhow::ensure!(!elements.is_empty(), "{path} holds no documents");
    Ok(elements
        .iter()
        .map(|e| {
            batch_job_aurora::Envelope::from_parts(
                &e.id,
                e.timestamp,
                Some(&e.type_name),
                e.data.get(),
            )
        })
        .collect())
}
