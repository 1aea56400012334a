//! The bench's documents: a seeded, deterministic generator of GitHub push deliveries, Slack
//! events and event ratings, written as one JSON array file per type.
//!
//! Pushes take their shape from the push fixtures in `tests/data/fixtures/github-webhooks/push`
//! (a user's repository with an installation, and an organisation's): owner, repository, sender,
//! branch, counters and 1–8 commits vary per delivery; about 10% are branch deletions
//! (`deleted: true`, no commits, `head_commit: null`). Slack events follow
//! `examples/documents/slack.ndjson`, ratings `examples/documents/event_rating.json`, against the
//! lookups in `examples/lookups`. Nothing outside the repository is read.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

/// The window every generated document falls in (one hour), inside the validity of the event
/// codes in `examples/lookups/event-codes.json`.
pub const WINDOW_FROM: i64 = 1_764_000_000;
pub const WINDOW_TO: i64 = WINDOW_FROM + 3_599;

/// How many GitHub pushes go into the plugin-cost sample at most.
const SAMPLE_DOCUMENTS: usize = 10_000;

/// The share of each type, in parts.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Mix {
    pub github: u32,
    pub slack: u32,
    pub rating: u32,
}

impl std::str::FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<u32> = text
            .split(',')
            .map(|part| part.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|error| format!("expected GITHUB,SLACK,RATING parts: {error}"))?;
        match parts[..] {
            [github, slack, rating] if github + slack + rating > 0 => Ok(Mix {
                github,
                slack,
                rating,
            }),
            _ => Err("expected three parts, GITHUB,SLACK,RATING, not all zero".into()),
        }
    }
}

/// One type's file and what the job must make of it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TypeFile {
    pub type_name: String,
    pub path: PathBuf,
    pub documents: u64,
    pub bytes: u64,
    /// Documents that give a row; the others are refused (deletions, unknown event codes).
    pub rows: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Generated {
    pub files: Vec<TypeFile>,
    /// The first GitHub pushes again, as a smaller array for the plugin-cost binary.
    pub sample: PathBuf,
    pub sample_documents: u64,
}

impl Generated {
    pub fn documents(&self) -> u64 {
        self.files.iter().map(|file| file.documents).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|file| file.bytes).sum()
    }

    pub fn rows(&self) -> u64 {
        self.files.iter().map(|file| file.rows).sum()
    }
}

/// SplitMix64: small, fast, and the same sequence on every machine for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn hex(&mut self, length: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        (0..length)
            .map(|_| DIGITS[self.below(16) as usize] as char)
            .collect()
    }
}

/// The documents of every type in `dir`: `documents` in all, shared out by `mix`. Files an
/// earlier call wrote with the same arguments and the same generator are used again.
pub fn generate(root: &Path, dir: &Path, documents: u64, seed: u64, mix: Mix) -> Result<Generated> {
    let key = serde_json::json!({
        "documents": documents,
        "seed": seed,
        "mix": mix,
        "generator": fnv1a(include_str!("generate.rs").as_bytes()),
    });
    let manifest = dir.join("manifest.json");
    if let Some(generated) = reusable(&manifest, &key) {
        println!("  (the documents of an earlier run with the same arguments)");
        return Ok(generated);
    }
    let _ = std::fs::remove_file(&manifest);
    let generated = write_documents(root, dir, documents, seed, mix)?;
    let text = serde_json::json!({"key": key, "generated": generated}).to_string();
    std::fs::write(&manifest, text)?;
    Ok(generated)
}

/// What the manifest describes, if it was made with `key` and its files are still whole.
fn reusable(manifest: &Path, key: &Value) -> Option<Generated> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    if value["key"] != *key {
        return None;
    }
    let generated: Generated = serde_json::from_value(value["generated"].clone()).ok()?;
    let whole = generated.files.iter().all(|file| {
        std::fs::metadata(&file.path).is_ok_and(|metadata| metadata.len() == file.bytes)
    });
    (whole && generated.sample.is_file()).then_some(generated)
}

fn fnv1a(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn write_documents(
    root: &Path,
    dir: &Path,
    documents: u64,
    seed: u64,
    mix: Mix,
) -> Result<Generated> {
    std::fs::create_dir_all(dir)?;
    let parts = u64::from(mix.github + mix.slack + mix.rating);
    let github = documents * u64::from(mix.github) / parts;
    let slack = documents * u64::from(mix.slack) / parts;
    let rating = documents - github - slack;
    let pushes = Pushes::load(root)?;
    let sample = dir.join("plugin-sample.json");
    let mut sample_out = ArrayWriter::create(&sample)?;

    let mut files = Vec::new();
    // Each type draws from its own stream, so that changing the mix leaves the others' shapes.
    let mut rng = Rng::new(seed ^ 0x6769_7468_7562);
    let mut rows = 0;
    let path = dir.join("GithubType.json");
    let mut out = ArrayWriter::create(&path)?;
    for index in 0..github {
        let timestamp = spread(index, github);
        let (data, has_head) = pushes.push(&mut rng, timestamp);
        let element = envelope(&mut rng, index, timestamp, "GithubType", &data);
        out.push(&element)?;
        if (index as usize) < SAMPLE_DOCUMENTS {
            sample_out.push(&element)?;
        }
        rows += u64::from(has_head);
    }
    files.push(TypeFile {
        type_name: "GithubType".into(),
        path,
        documents: github,
        bytes: out.finish()?,
        rows,
    });
    let sample_documents = github.min(SAMPLE_DOCUMENTS as u64);
    sample_out.finish()?;

    let mut rng = Rng::new(seed ^ 0x0073_6c61_636b);
    let slack_order = Hint::parse(SLACK_ORDER)?;
    let path = dir.join("SlackType.json");
    let mut out = ArrayWriter::create(&path)?;
    for index in 0..slack {
        let timestamp = spread(index, slack);
        let data = slack_event(&mut rng, &slack_order, index, timestamp);
        out.push(&envelope(&mut rng, index, timestamp, "SlackType", &data))?;
    }
    files.push(TypeFile {
        type_name: "SlackType".into(),
        path,
        documents: slack,
        bytes: out.finish()?,
        rows: slack,
    });

    let mut rng = Rng::new(seed ^ 0x7261_7469_6e67);
    let path = dir.join("EventRatingType.json");
    let mut out = ArrayWriter::create(&path)?;
    let mut rows = 0;
    for index in 0..rating {
        let timestamp = spread(index, rating);
        let (data, valid) = event_rating(&mut rng);
        out.push(&envelope(
            &mut rng,
            index,
            timestamp,
            "EventRatingType",
            &data,
        ))?;
        rows += u64::from(valid);
    }
    files.push(TypeFile {
        type_name: "EventRatingType".into(),
        path,
        documents: rating,
        bytes: out.finish()?,
        rows,
    });
    Ok(Generated {
        files,
        sample,
        sample_documents,
    })
}

/// The timestamp of document `index` of `count`, in order across the window.
fn spread(index: u64, count: u64) -> i64 {
    WINDOW_FROM + (index * 3_600 / count.max(1)) as i64
}

/// An envelope as the store keeps it: a 16-byte id in base64 (the time, the index, then random
/// bytes, so ids are unique by construction), the time, the type and the body.
fn envelope(rng: &mut Rng, index: u64, timestamp: i64, type_name: &str, data: &str) -> String {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&(timestamp as u32).to_be_bytes());
    id[4..8].copy_from_slice(&(index as u32).to_be_bytes());
    id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    format!(
        r#"{{"id":"{}","timestamp":{timestamp},"type":"{type_name}","data":{data}}}"#,
        base64(&id)
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, byte)| n | u32::from(*byte) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Writes a JSON array element by element.
struct ArrayWriter {
    out: BufWriter<std::fs::File>,
    bytes: u64,
}

impl ArrayWriter {
    fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ArrayWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            bytes: 0,
        })
    }

    fn push(&mut self, element: &str) -> Result<()> {
        self.out
            .write_all(if self.bytes == 0 { b"[" } else { b",\n" })?;
        self.out.write_all(element.as_bytes())?;
        self.bytes += element.len() as u64 + if self.bytes == 0 { 1 } else { 2 };
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        if self.bytes == 0 {
            self.out.write_all(b"[")?;
            self.bytes = 1;
        }
        self.out.write_all(b"]")?;
        self.out.flush()?;
        Ok(self.bytes + 1)
    }
}

/// Placeholders in the templates, replaced in the serialised text of each delivery.
const OWNER: &str = "XXOWNERXX";
const REPOSITORY: &str = "XXREPOSITORYXX";
const SENDER: &str = "XXSENDERXX";

/// The push templates, with their owner, repository and sender made placeholders.
struct Pushes {
    /// A user's repository with an installation, and an organisation's.
    templates: [Value; 2],
    /// Their key orders.
    orders: [Hint; 2],
    owners: Vec<String>,
    repositories: Vec<String>,
}

impl Pushes {
    fn load(root: &Path) -> Result<Self> {
        let folder = root.join("tests/data/fixtures/github-webhooks/push");
        // The templates' owner (and organisation) become the delivery's owner, the person who
        // pushed its sender.
        let load = |name: &str, owners: &[&str]| -> Result<(Value, Hint)> {
            let path = folder.join(name);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("the bench needs {}", path.display()))?;
            let order = Hint::parse(&text)?;
            let mut value: Value = serde_json::from_str(&text)?;
            for person in ["sender", "pusher"] {
                let text = value[person].to_string().replace("Codertocat", SENDER);
                value[person] = serde_json::from_str(&text)?;
            }
            let mut text = value.to_string().replace("Hello-World", REPOSITORY);
            for owner in owners {
                text = text.replace(owner, OWNER);
            }
            let mut value: Value = serde_json::from_str(&text)?;
            ensure!(
                value["repository"]["full_name"] == format!("{OWNER}/{REPOSITORY}").as_str(),
                "unexpected template {}",
                path.display()
            );
            value["commits"] = json!([]);
            value["head_commit"] = Value::Null;
            Ok((value, order))
        };
        let (user, user_order) = load("with-new-branch.payload.json", &["Codertocat"])?;
        let (organisation, mut organisation_order) = load(
            "with-organization.payload.json",
            &["Codertocat", "Octocoders"],
        )?;
        // The organisation's template has no commit to take the order of a commit from.
        for key in ["commits", "head_commit"] {
            let hint = user_order.get(key).cloned().unwrap_or_default();
            organisation_order.set(key, hint);
        }
        // Fixed pools, so that owners, repositories and senders repeat as in a real week.
        let mut rng = Rng::new(0x6f77_6e65_7273);
        let owners = (0..400)
            .map(|_| format!("{}-{}{}", rng.pick(WORDS), rng.pick(WORDS), rng.below(100)))
            .collect();
        let repositories = (0..600)
            .map(|_| format!("{}-{}", rng.pick(WORDS), rng.pick(WORDS)))
            .collect();
        Ok(Pushes {
            templates: [user, organisation],
            orders: [user_order, organisation_order],
            owners,
            repositories,
        })
    }

    /// One push delivery and whether it has a `head_commit`.
    fn push(&self, rng: &mut Rng, timestamp: i64) -> (String, bool) {
        let organisation = rng.percent(30);
        let mut data = self.templates[usize::from(organisation)].clone();
        let owner = &self.owners[rng.below(self.owners.len() as u64) as usize];
        let repository = &self.repositories[rng.below(self.repositories.len() as u64) as usize];
        let sender = if rng.percent(60) {
            owner.clone()
        } else {
            self.owners[rng.below(self.owners.len() as u64) as usize].clone()
        };
        let branch = if rng.percent(50) {
            "main".to_owned()
        } else {
            format!(
                "{}/{}-{}",
                rng.pick(BRANCH_KINDS),
                rng.pick(WORDS),
                rng.below(1000)
            )
        };
        let deleted = rng.percent(10);
        let created = !deleted && rng.percent(8);
        let before = if created { "0".repeat(40) } else { rng.hex(40) };
        let mut commits = Vec::new();
        if !deleted {
            // Most pushes carry one or two commits; a few up to eight.
            let count = match rng.below(100) {
                0..=34 => 1,
                35..=54 => 2,
                55..=67 => 3,
                68..=76 => 4,
                77..=84 => 5,
                85..=90 => 6,
                91..=95 => 7,
                _ => 8,
            };
            for _ in 0..count {
                commits.push(commit(rng, timestamp, &sender));
            }
        }
        let after = match commits.last() {
            Some(last) => last["id"].as_str().unwrap_or_default().to_owned(),
            None => "0".repeat(40),
        };
        data["ref"] = json!(format!("refs/heads/{branch}"));
        data["before"] = json!(before);
        data["after"] = json!(after);
        data["created"] = json!(created);
        data["deleted"] = json!(deleted);
        data["forced"] = json!(!deleted && rng.percent(3));
        data["compare"] = json!(format!(
            "https://github.com/{OWNER}/{REPOSITORY}/compare/{}...{}",
            &before[..12],
            &after[..12]
        ));
        data["head_commit"] = commits.last().cloned().unwrap_or(Value::Null);
        data["commits"] = Value::Array(commits);
        let repo = &mut data["repository"];
        repo["id"] = json!(rng.between(10_000_000, 900_000_000));
        repo["node_id"] = json!(format!("R_kgDO{}", rng.hex(8)));
        repo["description"] = match rng.below(3) {
            0 => Value::Null,
            _ => json!(format!(
                "A {} {} for {} {}",
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.pick(WORDS)
            )),
        };
        repo["pushed_at"] = json!(timestamp);
        repo["size"] = json!(rng.below(500_000));
        let scale = *rng.pick(&[&10u64, &100, &5_000, &80_000]);
        let stars = rng.below(scale + 1);
        repo["stargazers_count"] = json!(stars);
        repo["watchers_count"] = json!(stars);
        repo["watchers"] = json!(stars);
        repo["language"] = match rng.pick(LANGUAGES) {
            "" => Value::Null,
            language => json!(language),
        };
        let forks = rng.below(stars / 4 + 2);
        repo["forks_count"] = json!(forks);
        repo["forks"] = json!(forks);
        let issues = rng.below(300);
        repo["open_issues_count"] = json!(issues);
        repo["open_issues"] = json!(issues);
        repo["default_branch"] = json!("main");
        repo["master_branch"] = json!("main");
        let text = self.orders[usize::from(organisation)]
            .text(&data)
            .replace(OWNER, owner)
            .replace(REPOSITORY, repository)
            .replace(SENDER, &sender);
        (text, !deleted)
    }
}

fn commit(rng: &mut Rng, timestamp: i64, author: &str) -> Value {
    let id = rng.hex(40);
    let mut message = format!(
        "{} {} {}",
        rng.pick(VERBS),
        rng.pick(WORDS),
        rng.pick(WORDS)
    );
    if rng.percent(40) {
        message.push_str("\n\n");
        for _ in 0..rng.between(4, 24) {
            message.push_str(rng.pick(WORDS));
            message.push(' ');
        }
        message.push_str(&format!("(#{})", rng.below(5_000)));
    }
    let files = |rng: &mut Rng, most: u64| -> Vec<String> {
        (0..rng.below(most + 1))
            .map(|_| {
                format!(
                    "{}/{}.{}",
                    rng.pick(FOLDERS),
                    rng.pick(WORDS),
                    rng.pick(EXTENSIONS)
                )
            })
            .collect()
    };
    let person = json!({
        "name": author,
        "email": format!("{}+{author}@users.noreply.github.com", rng.between(1_000_000, 99_999_999)),
        "username": author,
    });
    let committer = if rng.percent(30) {
        json!({"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"})
    } else {
        person.clone()
    };
    json!({
        "id": id,
        "tree_id": rng.hex(40),
        "distinct": true,
        "message": message,
        "timestamp": iso8601(timestamp - rng.below(86_400) as i64),
        "url": format!("https://github.com/{OWNER}/{REPOSITORY}/commit/{id}"),
        "author": person,
        "committer": committer,
        "added": files(rng, 2),
        "removed": files(rng, 1),
        "modified": files(rng, 3),
    })
}

/// `2025-11-24T16:00:00Z`.
fn iso8601(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .expect("a generated time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time of the years 0 to 9999")
}

pub fn now_iso8601() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    iso8601(now)
}

/// A Slack Events API callback like those in `examples/documents/slack.ndjson`, in the
/// channels `examples/lookups/slack-channels.json` knows (one of them as not found).
fn slack_event(rng: &mut Rng, order: &Hint, index: u64, timestamp: i64) -> String {
    let channel = if rng.percent(85) {
        "C012AB3CD"
    } else {
        "C0UNKNOWN"
    };
    let user = format!("U0{}", rng.hex(8).to_uppercase());
    let ts = format!("{timestamp}.{:06}", rng.below(1_000_000));
    let event = match rng.below(20) {
        0..=11 => {
            let words: Vec<&str> = (0..rng.between(3, 30)).map(|_| rng.pick(WORDS)).collect();
            json!({"type": "message", "channel": channel, "user": user, "text": words.join(" "),
                   "ts": ts, "channel_type": "channel"})
        }
        12..=14 => json!({"type": "reaction_added", "user": user,
                          "item": {"type": "message", "channel": channel, "ts": ts},
                          "reaction": rng.pick(&["thumbsup", "eyes", "tada", "rocket"]),
                          "event_ts": ts}),
        15..=18 => json!({"type": "app_mention", "channel": channel, "user": user,
                          "text": format!("<@U0AURORA> {} {}", rng.pick(WORDS), rng.pick(WORDS)),
                          "ts": ts}),
        _ => json!({"type": "channel_created",
                    "channel": {"id": format!("C0{}", rng.hex(8).to_uppercase()),
                                "name": format!("{}-{}", rng.pick(WORDS), rng.pick(WORDS)),
                                "created": timestamp, "creator": user}}),
    };
    order.text(&json!({
        "token": "redacted",
        "team_id": "T061EG9R6",
        "api_app_id": "A0MDYCDME",
        "event": event,
        "type": "event_callback",
        "event_id": format!("Ev0{index:08X}"),
        "event_time": timestamp,
    }))
}

/// A rating like `examples/documents/event_rating.json`, and whether its code names an event
/// valid in the window (`examples/lookups/event-codes.json`); the others are refused.
fn event_rating(rng: &mut Rng) -> (String, bool) {
    let button = rng.between(1, 5);
    let (value, valid) = match rng.below(20) {
        0..=8 => (json!({"button": button, "event_code": "101010"}), true),
        9..=14 => (json!({"button": button, "event_code": "202020"}), true),
        15 => (json!({"button": button, "event_code": 101010}), true),
        16 | 17 => (json!({"button": button, "event_code": "999999"}), false),
        _ => (json!({"button": button}), false),
    };
    (value.to_string(), valid)
}

/// The key order of a JSON text, object by object (an array's from its first element), so that
/// generated documents keep GitHub's and Slack's order instead of serde_json's sorted maps.
#[derive(Debug, Clone, Default)]
struct Hint {
    keys: Vec<(String, Hint)>,
}

impl Hint {
    fn parse(text: &str) -> Result<Hint> {
        Ok(serde_json::from_str(text)?)
    }

    fn get(&self, key: &str) -> Option<&Hint> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, hint)| hint)
    }

    fn set(&mut self, key: &str, hint: Hint) {
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = hint,
            None => self.keys.push((key.to_owned(), hint)),
        }
    }

    /// Writes `value` with this order; keys the hint lacks follow, sorted.
    fn write(&self, value: &Value, out: &mut String) {
        static NONE: Hint = Hint { keys: Vec::new() };
        match value {
            Value::Object(map) => {
                out.push('{');
                let mut first = true;
                let mut member = |key: &str, value: &Value, hint: &Hint, out: &mut String| {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(&Value::from(key).to_string());
                    out.push(':');
                    hint.write(value, out);
                };
                for (key, hint) in &self.keys {
                    if let Some(value) = map.get(key) {
                        member(key, value, hint, out);
                    }
                }
                for (key, value) in map {
                    if self.get(key).is_none() {
                        member(key, value, &NONE, out);
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                let hint = self.get("[]").unwrap_or(&NONE);
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    hint.write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }

    fn text(&self, value: &Value) -> String {
        let mut out = String::with_capacity(16 << 10);
        self.write(value, &mut out);
        out
    }
}

impl<'de> serde::Deserialize<'de> for Hint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Hint;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Hint, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, hint)) = map.next_entry::<String, Hint>()? {
                    keys.push((key, hint));
                }
                Ok(Hint { keys })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Hint, A::Error> {
                let mut element = None;
                while let Some(hint) = seq.next_element::<Hint>()? {
                    element.get_or_insert(hint);
                }
                Ok(Hint {
                    keys: element
                        .map(|hint| vec![("[]".to_owned(), hint)])
                        .unwrap_or_default(),
                })
            }
            fn visit_bool<E>(self, _: bool) -> Result<Hint, E> {
                Ok(Hint::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Hint, E> {
                Ok(Hint::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Hint, E> {
                Ok(Hint::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Hint, E> {
                Ok(Hint::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Hint, E> {
                Ok(Hint::default())
            }
            fn visit_unit<E>(self) -> Result<Hint, E> {
                Ok(Hint::default())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The key order of a Slack event callback, as in `examples/documents/slack.ndjson`.
const SLACK_ORDER: &str = r#"{"token":0,"team_id":0,"api_app_id":0,"event":{"type":0,"channel":{"id":0,"name":0,"created":0,"creator":0},"user":0,"text":0,"item":{"type":0,"channel":0,"ts":0},"reaction":0,"ts":0,"event_ts":0,"channel_type":0},"type":0,"event_id":0,"event_time":0}"#;

const WORDS: &[&str] = &[
    "aurora", "batch", "cache", "delta", "ember", "falcon", "garnet", "harbor", "island", "jigsaw",
    "kernel", "lumen", "meadow", "nebula", "orbit", "pixel", "quartz", "raven", "signal", "tundra",
    "umbra", "vector", "willow", "xenon", "yonder", "zephyr", "parser", "router", "schema",
    "window", "ledger", "stream", "buffer", "socket", "crate", "plugin", "tracker", "widget",
    "gadget", "engine", "config", "layout", "render", "storage", "index", "query", "filter",
];
const VERBS: &[&str] = &[
    "Fix", "Add", "Update", "Remove", "Refactor", "Bump", "Document", "Test", "Rename", "Merge",
];
const BRANCH_KINDS: &[&str] = &["feature", "fix", "chore", "release", "dependabot/cargo"];
const LANGUAGES: &[&str] = &[
    "Rust",
    "Go",
    "Python",
    "TypeScript",
    "JavaScript",
    "Java",
    "C++",
    "Ruby",
    "",
];
const FOLDERS: &[&str] = &[
    "src",
    "docs",
    "tests",
    "src/util",
    "scripts",
    ".github/workflows",
];
const EXTENSIONS: &[&str] = &["rs", "md", "py", "ts", "toml", "yml", "json"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA==");
    }

    #[test]
    fn iso8601_of_a_known_time() {
        assert_eq!(iso8601(1_764_000_000), "2025-11-24T16:00:00Z");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn the_rng_is_the_same_for_a_seed() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut rng = Rng::new(7);
                move |_| rng.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut rng = Rng::new(7);
                move |_| rng.next_u64()
            })
            .collect();
        assert_eq!(a, b);
    }
}
