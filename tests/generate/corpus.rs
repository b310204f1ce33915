//! The labelled threads of `tests/corpus/threads/*.yaml` as raw RFC 5322 messages,
//! for the analysis evaluation (`src/analyze/eval.rs`), the draft tests and the
//! generate benchmark. Shared by path (`#[path]`), so it depends on nothing of the
//! crate: the caller parses the bytes it gets, and reads the labels (`expect`) into
//! its own types. The format is the one `tests/corpus/threads/README.md` describes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// `tune` or `heldout`: which part of the analysis evaluation.
    pub split: String,
    pub lang: String,
    pub subject: String,
    #[serde(default = "default_user")]
    pub user: Vec<String>,
    pub messages: Vec<CaseMessage>,
    /// The analysis's labels, left untyped here.
    pub expect: serde_norway::Value,
}

fn default_user() -> Vec<String> {
    vec!["jason@example.com".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseMessage {
    pub from: String,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    pub date: String,
    pub subject: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub html: bool,
    pub body: String,
}

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/threads")
}

/// Every thread, by file stem, sorted.
pub fn all() -> Vec<(String, Case)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/corpus/threads")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem.clone(), load_file(&stem, &p))
        })
        .collect()
}

pub fn load(stem: &str) -> Case {
    load_file(stem, &dir().join(format!("{stem}.yaml")))
}

fn load_file(stem: &str, path: &std::path::Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{stem}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{stem}: {e}"))
}

/// "2025-12-12T16:04:26-08:00" → "12 Dec 2025 16:04:26 -0800".
pub fn rfc5322_date(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (date, time) = rfc3339.split_once('T').expect("RFC 3339 date");
    let mut d = date.split('-');
    let (y, m, day) = (d.next().unwrap(), d.next().unwrap(), d.next().unwrap());
    let m: usize = m.parse().expect("month");
    let (clock, offset) = if let Some(stripped) = time.strip_suffix('Z') {
        (stripped, "+0000".to_string())
    } else {
        let at = time.rfind(['+', '-']).expect("offset");
        (&time[..at], time[at..].replace(':', ""))
    };
    format!(
        "{} {} {y} {clock} {offset}",
        day.trim_start_matches('0'),
        MONTHS[m - 1]
    )
}

/// Message `i` of the thread, threaded by Message-ID/In-Reply-To/References.
pub fn raw_message(stem: &str, case: &Case, i: usize) -> Vec<u8> {
    let m = &case.messages[i];
    let subject = m.subject.clone().unwrap_or_else(|| {
        if i == 0 {
            case.subject.clone()
        } else {
            format!("Re: {}", case.subject)
        }
    });
    let mut h = String::new();
    let _ = writeln!(h, "From: {}", m.from);
    if !m.to.is_empty() {
        let _ = writeln!(h, "To: {}", m.to.join(", "));
    }
    if !m.cc.is_empty() {
        let _ = writeln!(h, "Cc: {}", m.cc.join(", "));
    }
    let _ = writeln!(h, "Subject: {subject}");
    let _ = writeln!(h, "Date: {}", rfc5322_date(&m.date));
    let _ = writeln!(h, "Message-ID: <{stem}-{i}@corpus.test>");
    if i > 0 {
        let _ = writeln!(h, "In-Reply-To: <{stem}-{}@corpus.test>", i - 1);
        let refs: Vec<String> = (0..i)
            .map(|k| format!("<{stem}-{k}@corpus.test>"))
            .collect();
        let _ = writeln!(h, "References: {}", refs.join(" "));
    }
    for (k, v) in &m.headers {
        let _ = writeln!(h, "{k}: {v}");
    }
    let _ = writeln!(h, "MIME-Version: 1.0");
    let kind = if m.html { "html" } else { "plain" };
    let _ = writeln!(h, "Content-Type: text/{kind}; charset=utf-8");
    let _ = writeln!(h, "Content-Transfer-Encoding: 8bit");
    h.push('\n');
    h.push_str(&m.body);
    h.into_bytes()
}

pub fn raw_messages(stem: &str, case: &Case) -> Vec<Vec<u8>> {
    (0..case.messages.len())
        .map(|i| raw_message(stem, case, i))
        .collect()
}
