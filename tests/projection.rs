//! Input projection cannot be told apart: every document gives the same rows, refusal or
//! failure (with the same message) whether its plugin is handed the projected payload or the
//! whole one. Over the golden fixtures, the bundled examples, GitHub's webhook samples, bent
//! documents and a seeded corpus of generated and mutated ones, through the real wasm plugins.
//!
//! `BATCH_JOB_AURORA_FUZZ_DOCUMENTS` sets the generated corpus per plugin (CI runs the default;
//! `cargo xtask fuzz-projection` runs 100,000).

use std::path::Path;
use std::sync::Arc;

use batch_job_aurora::Envelope;
use batch_job_aurora::capability::CapabilityHub;
use batch_job_aurora::plugin::{DocumentResult, PluginEngine, SandboxLimits, TransformWorker};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::support::{example_backends, wasm, workspace_root};

/// Generated documents per plugin when the environment does not say.
const DEFAULT_GENERATED: usize = 2_000;
const BATCH: usize = 100;

/// A small deterministic generator (xorshift64*): the corpus is the same on every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The payloads (`data` as written) of a file of envelopes: a JSON array or NDJSON.
fn payloads_of_envelopes(path: &Path) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    }
    let text = std::fs::read_to_string(path).unwrap();
    let elements: Vec<&RawValue> = match serde_json::from_str(&text) {
        Ok(elements) => elements,
        Err(_) => text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect(),
    };
    elements
        .into_iter()
        .filter_map(|element| serde_json::from_str::<Raw>(element.get()).ok())
        .filter_map(|raw| raw.data.map(|data| data.get().to_owned()))
        .filter(|data| data.starts_with('{'))
        .collect()
}

/// The hand-written corpus of a plugin: its golden fixtures and the bundled example documents,
/// plus GitHub's own webhook samples for the GitHub plugin.
fn written_corpus(plugin: &str) -> Vec<String> {
    let root = workspace_root();
    let mut payloads = Vec::new();
    for entry in std::fs::read_dir(root.join("plugins").join(plugin).join("fixtures")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".json") && !name.ends_with(".rows.json") {
            payloads.extend(payloads_of_envelopes(&path));
        }
    }
    let example = match plugin {
        "slack" => "slack.ndjson".to_owned(),
        other => format!("{other}.json"),
    };
    payloads.extend(payloads_of_envelopes(
        &root.join("examples/documents").join(example),
    ));
    if plugin == "github" {
        let samples = root.join("tests/data/fixtures/github-webhooks");
        for event in std::fs::read_dir(samples).unwrap() {
            for file in std::fs::read_dir(event.unwrap().path())
                .into_iter()
                .flatten()
            {
                let path = file.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.ends_with("payload.json") {
                    payloads.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
    }
    payloads.extend(bent_payloads());
    payloads
}

/// Values no plugin can take, where a plugin reads them and where none does.
fn bent_payloads() -> Vec<String> {
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let mut payloads = Vec::new();
    for bent in [
        r#""\ud800""#,
        "1e400",
        deep.as_str(),
        r#""\udc00x""#,
        "-0",
        "{}",
        "[]",
    ] {
        for template in [
            r#"{"head_commit":{"id":"c","added":BENT},"repository":{"full_name":BENT},"bent":BENT}"#,
            r#"{"head_commit":BENT,"sender":{"login":BENT},"ref":BENT}"#,
            r#"{"team_id":BENT,"event_time":BENT,"event":{"type":"message","channel":BENT,"blocks":BENT}}"#,
            r#"{"button":BENT,"event_code":BENT,"extra":BENT}"#,
            r#"{"button":1,"event_code":"303030","button":BENT,"event_code":BENT}"#,
        ] {
            payloads.push(template.replace("BENT", bent));
        }
    }
    payloads
}

/// A value of any kind, sometimes awkward.
fn random_value(seeded: &mut Seeded, depth: usize) -> String {
    let scalars = [
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1",
        "-7",
        "1.5",
        "2e3",
        "1e400",
        "-1e-400",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "0.1",
        r#""""#,
        r#""text""#,
        r#""\ud800""#,
        r#""\ud83d\ude00""#,
        r#""tab\tand\"quote\\""#,
        r#""\u00e9t\u00e9""#,
        r#""日本""#,
        r#""101010""#,
        r#""C1""#,
        r#""message""#,
    ];
    if depth > 3 || seeded.chance(60) {
        return seeded.pick(&scalars).to_string();
    }
    let count = seeded.below(4);
    if seeded.chance(50) {
        let members: Vec<String> = (0..count)
            .map(|_| format!("{}:{}", random_key(seeded), random_value(seeded, depth + 1)))
            .collect();
        format!("{{{}}}", members.join(","))
    } else {
        let elements: Vec<String> = (0..count)
            .map(|_| random_value(seeded, depth + 1))
            .collect();
        format!("[{}]", elements.join(","))
    }
}

/// A key, often one a plugin reads.
fn random_key(seeded: &mut Seeded) -> String {
    let keys = [
        "id",
        "timestamp",
        "head_commit",
        "repository",
        "full_name",
        "sender",
        "login",
        "ref",
        "stargazers_count",
        "language",
        "forks_count",
        "open_issues_count",
        "team_id",
        "event_time",
        "event",
        "type",
        "channel",
        "user",
        "text",
        "button",
        "event_code",
        "blocks",
        "x",
        "",
        "a/b",
        "~",
        r#"\u0069d"#,
        "0",
    ];
    format!("\"{}\"", seeded.pick(&keys))
}

/// Rewrites one value of `payload` (as a tree) into a random one, adds or repeats a member, or
/// changes the text itself (a byte, whitespace, a cut), so that the corpus holds well-formed
/// documents of every shape and malformed ones of every kind.
fn mutate(seeded: &mut Seeded, payload: &str) -> String {
    match seeded.below(6) {
        0 | 1 => {
            let Ok(mut tree) = serde_json::from_str::<Value>(payload) else {
                return payload.to_owned();
            };
            let marker = "\u{1}MARK\u{1}";
            replace_random_node(seeded, &mut tree, marker);
            let text = if seeded.chance(20) {
                serde_json::to_string_pretty(&tree).unwrap()
            } else {
                tree.to_string()
            };
            text.replacen(
                &format!("\"{}\"", marker.replace('\u{1}', "\\u0001")),
                &random_value(seeded, 0),
                1,
            )
        }
        2 => {
            // A member added (or repeated) just inside a random object.
            let opens: Vec<usize> = payload.match_indices('{').map(|(at, _)| at).collect();
            let at = *seeded.pick(&opens) + 1;
            let member = format!("{}:{}", random_key(seeded), random_value(seeded, 1));
            let rest = &payload[at..];
            let separator = if rest.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            format!("{}{member}{separator}{rest}", &payload[..at])
        }
        3 => {
            // One character inserted, removed or replaced.
            let chars: Vec<char> = payload.chars().collect();
            let at = seeded.below(chars.len());
            let inserted = *seeded.pick(&[
                '{', '}', '[', ']', '"', ',', ':', '\\', '0', '-', 'e', '.', ' ', '\n', 'u', 'x',
                '\t',
            ]);
            let mut changed: Vec<char> = chars.clone();
            match seeded.below(3) {
                0 => changed.insert(at, inserted),
                1 => {
                    changed.remove(at);
                }
                _ => changed[at] = inserted,
            }
            changed.into_iter().collect()
        }
        4 => {
            // Whitespace everywhere it may go.
            let tree: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
            if tree.is_object() {
                serde_json::to_string_pretty(&tree)
                    .unwrap()
                    .replace(": ", " :\r\n\t ")
            } else {
                payload.to_owned()
            }
        }
        _ => {
            // Cut short, then closed as best as a careless writer would.
            let chars: Vec<char> = payload.chars().collect();
            let cut: String = chars[..seeded.below(chars.len()).max(1)].iter().collect();
            format!("{cut}}}")
        }
    }
}

fn replace_random_node(seeded: &mut Seeded, tree: &mut Value, marker: &str) {
    let replace_here = seeded.chance(25);
    match tree {
        Value::Object(members) if !members.is_empty() && !replace_here => {
            let index = seeded.below(members.len());
            let key = members.keys().nth(index).unwrap().clone();
            replace_random_node(seeded, members.get_mut(&key).unwrap(), marker);
        }
        Value::Array(elements) if !elements.is_empty() && !replace_here => {
            let index = seeded.below(elements.len());
            replace_random_node(seeded, &mut elements[index], marker);
        }
        // The root stays an object: the envelope check refuses anything else before plugins.
        Value::Object(members) if members.is_empty() => {
            members.insert("x".into(), Value::from(marker));
        }
        other => *other = Value::from(marker),
    }
}

/// The generated corpus: `count` documents, each a mutation of a written one, sometimes
/// mutated again. Only payloads that are still bracketed as an object are kept: the envelope
/// check refuses the others before any plugin.
fn generated_corpus(written: &[String], count: usize, seed: u64) -> Vec<String> {
    let mut seeded = Seeded(seed);
    let mut corpus = Vec::with_capacity(count);
    while corpus.len() < count {
        let mut payload = seeded.pick(written).clone();
        for _ in 0..1 + seeded.below(3) {
            payload = mutate(&mut seeded, &payload);
            if !payload.starts_with('{') {
                break;
            }
        }
        if payload.trim_start().starts_with('{') && payload.trim_end().ends_with('}') {
            corpus.push(payload);
        }
    }
    corpus
}

fn worker(engine: &PluginEngine, plugin: &str) -> TransformWorker {
    let loaded = Arc::new(engine.load(&wasm(plugin)).unwrap());
    let hub = Arc::new(CapabilityHub::new(example_backends()));
    let grants = hub.grants(&loaded.info.type_name, &loaded.info.capabilities);
    engine.worker(loaded, grants)
}

/// Runs every payload through the plugin with and without projection; the results must be
/// equal. Returns how many documents ended in each way, for the report.
fn compare(plugin: &str, payloads: &[String]) -> [usize; 3] {
    let projected_engine = PluginEngine::new(SandboxLimits::default()).unwrap();
    let whole_engine = PluginEngine::new(SandboxLimits::default())
        .unwrap()
        .with_projection(false);
    let mut projected = worker(&projected_engine, plugin);
    let mut whole = worker(&whole_engine, plugin);
    let mut ended = [0; 3];
    for (batch_number, batch) in payloads.chunks(BATCH).enumerate() {
        let envelopes: Vec<Envelope> = batch
            .iter()
            .enumerate()
            .map(|(index, data)| {
                Envelope::from_parts(
                    &format!("d{batch_number}-{index}"),
                    1_764_000_000,
                    None,
                    data,
                )
            })
            .collect();
        let with = projected.transform(&envelopes);
        let without = whole.transform(&envelopes);
        for ((envelope, with), without) in envelopes.iter().zip(&with).zip(&without) {
            assert_eq!(
                same_ending(with),
                same_ending(without),
                "{plugin}: projection changed the result of {}",
                envelope.data()
            );
            ended[match with {
                DocumentResult::Rows(_) => 0,
                DocumentResult::Refused(_) => 1,
                _ => 2,
            }] += 1;
        }
    }
    ended
}

/// A result as the comparison sees it: everything, except which unrepresentable value a
/// failure names. A payload with several (a lone surrogate here, `1e400` there) fails either
/// way, with the same stage; the SDK's message names the first it finds in what the plugin
/// was handed, which with projection is the first among the paths it reads.
fn same_ending(result: &DocumentResult) -> DocumentResult {
    match result {
        DocumentResult::Failed { stage, error }
            if error.starts_with("invalid document: data is not valid: a lone surrogate")
                || error.starts_with(
                    "invalid document: data is not valid JSON: number out of range",
                ) =>
        {
            DocumentResult::Failed {
                stage: *stage,
                error: "an unrepresentable value where the plugin reads".into(),
            }
        }
        other => other.clone(),
    }
}

fn generated_per_plugin() -> usize {
    std::env::var("BATCH_JOB_AURORA_FUZZ_DOCUMENTS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(DEFAULT_GENERATED)
}

fn differential(plugin: &str, seed: u64) {
    let written = written_corpus(plugin);
    let generated = generated_corpus(&written, generated_per_plugin(), seed);
    let [rows, refused, failed] = compare(plugin, &written);
    eprintln!(
        "{plugin}: {} written documents: {rows} rows, {refused} refused, {failed} failed",
        written.len()
    );
    let [rows, refused, failed] = compare(plugin, &generated);
    eprintln!(
        "{plugin}: {} generated documents: {rows} rows, {refused} refused, {failed} failed",
        generated.len()
    );
    // The corpus reaches every ending, or it proves little.
    assert!(
        rows > 0 && refused + failed > 0,
        "{plugin}: {rows} {refused} {failed}"
    );
}

#[test]
fn github_rows_are_the_same_with_projection() {
    differential("github", 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn slack_rows_are_the_same_with_projection() {
    differential("slack", 0xd1b5_4a32_d192_ed03);
}

#[test]
fn event_rating_rows_are_the_same_with_projection() {
    differential("event_rating", 0x8cb9_2ba7_2f3d_8dd7);
}

/// A plugin built against WIT 1.0.0 exports no `input`: it loads, lists no paths and is handed
/// whole documents.
#[test]
fn a_plugin_built_against_1_0_0_gets_whole_documents() {
    let engine = PluginEngine::new(SandboxLimits::default()).unwrap();
    let frozen = engine.load(&wasm("frozen_1_0_0")).unwrap();
    assert_eq!(frozen.input_paths(), None);
    let github = engine.load(&wasm("github")).unwrap();
    assert_eq!(
        github.input_paths().unwrap(),
        [
            "/data/head_commit/id",
            "/data/head_commit/timestamp",
            "/data/ref",
            "/data/repository/forks_count",
            "/data/repository/full_name",
            "/data/repository/language",
            "/data/repository/open_issues_count",
            "/data/repository/stargazers_count",
            "/data/sender/login",
        ]
    );
}
