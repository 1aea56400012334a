//! The passes over a payload's bytes, side by side on the benchmark's GitHub pushes: the
//! element scanner the sources use today (brackets and strings only), the host's check (RFC
//! 8259 in all bytes, eight bytes at a time through strings), the same check cutting the
//! payload down to the GitHub plugin's paths, serde_json skipping it (`IgnoredAny`), simd-json
//! building its tape (runtime CPU detection, as one x86-64 binary for every Lambda needs) and
//! sonic-rs skipping it (compiled, as it must be here, without `target-cpu`).
//!
//!     payload-passes DOCUMENTS.json [ROUNDS]
//!
//! `DOCUMENTS.json` is a JSON array of envelopes (`cargo xtask bench --generate-only` writes
//! `target/bench/documents/GithubType.json`). Prints one line per pass: CPU µs per document
//! (best of the rounds) and GB/s of payload. Built only with the `scanners` feature
//! (`cargo xtask payload-passes`), so that CI never compiles the SIMD crates.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use batch_job_aurora::passes::{ArrayScanner, InputPaths, Projection, check, check_and_project};
use bench_plugin_cost::thread_cpu;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Element<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, rounds) = match &args[..] {
        [path] => (path, 5),
        [path, rounds] => (path, rounds.parse().context("ROUNDS")?),
        _ => bail!("usage: payload-passes DOCUMENTS.json [ROUNDS]"),
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let elements: Vec<Element> = serde_json::from_str(&text).context("the documents")?;
    ensure!(!elements.is_empty(), "{path} holds no documents");
    let payloads: Vec<&str> = elements.iter().map(|element| element.data.get()).collect();
    let bytes: usize = payloads.iter().map(|payload| payload.len()).sum();
    let github_paths =
        github::__aurora_plugin_input_paths().context("GitHub reads whole documents")?;
    let paths = InputPaths::parse(&github_paths)?.context("the GitHub paths are not whole")?;

    println!(
        "{} documents, {:.0} bytes of payload each; CPU µs per document (best of {rounds}) and GB/s",
        payloads.len(),
        bytes as f64 / payloads.len() as f64
    );
    let report = |name: &str, pass: &mut dyn FnMut() -> usize| {
        let mut best = Duration::MAX;
        let mut checked = 0;
        for _ in 0..rounds {
            let started = thread_cpu();
            checked = std::hint::black_box(pass());
            best = best.min(thread_cpu() - started);
        }
        println!(
            "  {name:<58} {:>7.2} µs {:>6.2} GB/s  ({checked} accepted)",
            best.as_secs_f64() * 1e6 / payloads.len() as f64,
            bytes as f64 / best.as_secs_f64() / 1e9
        );
    };
    report(
        "scanner: whole array, brackets and strings (today)",
        &mut || {
            let mut scanner = ArrayScanner::new(text.as_bytes());
            let mut count = 0;
            while let Ok(Some(_)) = scanner.next_element() {
                count += 1;
            }
            count
        },
    );
    report("host check: RFC 8259, SWAR strings", &mut || {
        payloads
            .iter()
            .filter(|payload| check(payload).is_ok())
            .count()
    });
    let mut projection = Projection::default();
    report(
        "host check and cut to the GitHub plugin's paths",
        &mut || {
            payloads
                .iter()
                .filter(|payload| check_and_project(payload, &paths, &mut projection).is_ok())
                .count()
        },
    );
    report("serde_json: IgnoredAny", &mut || {
        payloads
            .iter()
            .filter(|payload| serde_json::from_str::<IgnoredAny>(payload).is_ok())
            .count()
    });
    let mut buffer = Vec::new();
    let mut buffers = simd_json::Buffers::default();
    report(
        "simd-json: tape (runtime detection; copy included)",
        &mut || {
            payloads
                .iter()
                .filter(|payload| {
                    buffer.clear();
                    buffer.extend_from_slice(payload.as_bytes());
                    simd_json::to_tape_with_buffers(&mut buffer, &mut buffers).is_ok()
                })
                .count()
        },
    );
    report(
        "sonic-rs: IgnoredAny (baseline x86-64, no target-cpu)",
        &mut || {
            payloads
                .iter()
                .filter(|payload| sonic_rs::from_str::<IgnoredAny>(payload).is_ok())
                .count()
        },
    );
    Ok(())
}
