//! Measures the analysis against the labelled threads of `tests/corpus/threads/`
//! (their README has the labelling rules) and asserts issue #4's targets.
//!
//! Each labelled message becomes a real RFC 5322 message parsed by
//! `message::parse_message`, so quote collapsing, HTML conversion and header parsing are
//! exercised exactly as in a sync.
//!
//! **Matching rule.** Texts are normalized (lowercase; apostrophes and full-width forms
//! folded; everything but letters and digits becomes a space; spaces collapsed) and
//! split into tokens (words; CJK text into character bigrams). A found item matches an
//! expected one when either normalized text contains the other — the contained one
//! having at least 60% of the other's tokens if it is the found one — or when at least
//! 80% of the expected tokens occur in the found item and they make up at least half of
//! it. For commitments the promiser must match too (same normalized name, or one
//! contains the other). Matching is one-to-one, greedy in label order. Recall = matched
//! / expected, precision = matched / found; `needs_reply` and `urgency` are accuracy
//! over threads.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::{analyze_thread, Analysis};
use crate::message::{parse_message, ParsedMessage};
use crate::notes::Urgency;

/// The thread reader the draft tests and benchmark use too (the crate's own
/// tests reach it here: a file may be a module only once per crate).
#[path = "../../tests/generate/corpus.rs"]
pub(crate) mod threads;

/// A labelled thread: the thread as `threads` reads it, and its labels typed.
pub(super) struct Case {
    thread: threads::Case,
    pub expect: Expect,
}

impl std::ops::Deref for Case {
    type Target = threads::Case;

    fn deref(&self) -> &threads::Case {
        &self.thread
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Expect {
    pub needs_reply: bool,
    pub urgency: Urgency,
    pub questions: Vec<String>,
    pub commitments: Vec<ExpectedCommitment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpectedCommitment {
    pub who: String,
    pub text: String,
}

fn labelled(stem: &str, thread: threads::Case) -> Case {
    let expect = serde_norway::from_value(thread.expect.clone())
        .unwrap_or_else(|e| panic!("{stem}: expect: {e}"));
    Case { thread, expect }
}

/// Every labelled thread, by file stem, sorted.
pub(super) fn load() -> Vec<(String, Case)> {
    threads::all()
        .into_iter()
        .map(|(stem, thread)| {
            let case = labelled(&stem, thread);
            (stem, case)
        })
        .collect()
}

pub(super) fn load_one(stem: &str) -> Case {
    labelled(stem, threads::load(stem))
}

pub(super) fn parsed(stem: &str, case: &Case) -> Vec<ParsedMessage> {
    (0..case.messages.len())
        .map(|i| {
            parse_message(&threads::raw_message(stem, case, i))
                .unwrap_or_else(|e| panic!("{stem} message {i}: {e}"))
        })
        .collect()
}

pub(super) fn run(stem: &str, case: &Case) -> Analysis {
    analyze_thread(&parsed(stem, case), &case.user, 0)
}

// ---------------------------------------------------------------------------
// Matching

fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c),
            _ => c,
        };
        for l in c.to_lowercase() {
            if l.is_alphanumeric() {
                out.push(l);
            } else if !out.ends_with(' ') {
                out.push(' ');
            }
        }
    }
    out.trim().to_string()
}

fn tokens(norm: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in norm.split(' ') {
        if w.chars().any(super::text::is_cjk) {
            let cs: Vec<char> = w.chars().collect();
            if cs.len() == 1 {
                out.push(w.to_string());
            }
            for pair in cs.windows(2) {
                out.push(pair.iter().collect());
            }
        } else if !w.is_empty() {
            out.push(w.to_string());
        }
    }
    out
}

pub(super) fn text_matches(expected: &str, found: &str) -> bool {
    let (e, f) = (normalize(expected), normalize(found));
    if e.is_empty() || f.is_empty() {
        return false;
    }
    let (et, ft) = (tokens(&e), tokens(&f));
    if f.contains(&e) {
        return true;
    }
    if e.contains(&f) && ft.len() * 10 >= et.len() * 6 {
        return true;
    }
    let shared = et.iter().filter(|t| ft.contains(t)).count();
    shared * 10 >= et.len() * 8 && shared * 2 >= ft.len()
}

fn who_matches(expected: &str, found: &str) -> bool {
    let (e, f) = (normalize(expected), normalize(found));
    !e.is_empty() && (e == f || f.contains(&e) || e.contains(&f))
}

/// (matched, expected, found) with one-to-one greedy matching.
fn score<E, F>(
    expected: &[E],
    found: &[F],
    m: impl Fn(&E, &F) -> bool,
) -> (usize, Vec<usize>, Vec<usize>) {
    let mut used = vec![false; found.len()];
    let mut missed = Vec::new();
    let mut hits = 0;
    for (ei, e) in expected.iter().enumerate() {
        match (0..found.len()).find(|&fi| !used[fi] && m(e, &found[fi])) {
            Some(fi) => {
                used[fi] = true;
                hits += 1;
            }
            None => missed.push(ei),
        }
    }
    let extra = (0..found.len()).filter(|&fi| !used[fi]).collect();
    (hits, missed, extra)
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    threads: usize,
    q_hit: usize,
    q_expected: usize,
    q_found: usize,
    c_hit: usize,
    c_expected: usize,
    c_found: usize,
    reply_ok: usize,
    urgency_ok: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.threads += o.threads;
        self.q_hit += o.q_hit;
        self.q_expected += o.q_expected;
        self.q_found += o.q_found;
        self.c_hit += o.c_hit;
        self.c_expected += o.c_expected;
        self.c_found += o.c_found;
        self.reply_ok += o.reply_ok;
        self.urgency_ok += o.urgency_ok;
    }
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 {
        100.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

struct Figures {
    q_recall: f64,
    q_precision: f64,
    c_recall: f64,
    c_precision: f64,
    reply: f64,
    urgency: f64,
}

impl Tally {
    fn figures(&self) -> Figures {
        Figures {
            q_recall: pct(self.q_hit, self.q_expected),
            q_precision: pct(self.q_hit, self.q_found),
            c_recall: pct(self.c_hit, self.c_expected),
            c_precision: pct(self.c_hit, self.c_found),
            reply: pct(self.reply_ok, self.threads),
            urgency: pct(self.urgency_ok, self.threads),
        }
    }

    fn row(&self, label: &str) -> String {
        let f = self.figures();
        format!(
            "| {label:<14} | {:>7} | {:>5.1}% ({}/{}) | {:>5.1}% ({}/{}) | {:>5.1}% ({}/{}) | {:>5.1}% ({}/{}) | {:>5.1}% ({}/{}) | {:>5.1}% ({}/{}) |",
            self.threads,
            f.q_recall, self.q_hit, self.q_expected,
            f.q_precision, self.q_hit, self.q_found,
            f.c_recall, self.c_hit, self.c_expected,
            f.c_precision, self.c_hit, self.c_found,
            f.reply, self.reply_ok, self.threads,
            f.urgency, self.urgency_ok, self.threads,
        )
    }
}

/// Evaluates one thread; failures are described in `log`.
fn evaluate(stem: &str, case: &Case, log: &mut String) -> Tally {
    let a = run(stem, case);
    let found_q: Vec<&str> = a.questions.iter().map(|q| q.text.as_str()).collect();
    let (q_hit, q_missed, q_extra) =
        score(&case.expect.questions, &found_q, |e, f| text_matches(e, f));
    let (c_hit, c_missed, c_extra) = score(&case.expect.commitments, &a.commitments, |e, f| {
        who_matches(&e.who, &f.who) && text_matches(&e.text, &f.text)
    });
    let reply_ok = a.needs_reply == case.expect.needs_reply;
    let urgency_ok = a.urgency == case.expect.urgency;
    let mut problems = Vec::new();
    for i in q_missed {
        problems.push(format!("  missed question: {}", case.expect.questions[i]));
    }
    for i in q_extra {
        problems.push(format!("  extra question:  {}", found_q[i]));
    }
    for i in c_missed {
        let c = &case.expect.commitments[i];
        problems.push(format!("  missed commitment: {}: {}", c.who, c.text));
    }
    for i in c_extra {
        let c = &a.commitments[i];
        problems.push(format!("  extra commitment:  {}: {}", c.who, c.text));
    }
    if !reply_ok {
        problems.push(format!(
            "  needs_reply: got {}, expected {}",
            a.needs_reply, case.expect.needs_reply
        ));
    }
    if !urgency_ok {
        problems.push(format!(
            "  urgency: got {:?} ({:?}), expected {:?}",
            a.urgency, a.urgency_reason, case.expect.urgency
        ));
    }
    if !problems.is_empty() {
        let _ = writeln!(log, "{stem} [{} {}]", case.split, case.lang);
        for p in problems {
            let _ = writeln!(log, "{p}");
        }
    }
    Tally {
        threads: 1,
        q_hit,
        q_expected: case.expect.questions.len(),
        q_found: found_q.len(),
        c_hit,
        c_expected: case.expect.commitments.len(),
        c_found: a.commitments.len(),
        reply_ok: reply_ok as usize,
        urgency_ok: urgency_ok as usize,
    }
}

const HEADER: &str = "| set            | threads | questions recall | questions precision | commitments recall | commitments precision | needs_reply | urgency |\n|---|---|---|---|---|---|---|---|";

fn targets_met(t: &Tally) -> Vec<String> {
    let f = t.figures();
    let mut fails = Vec::new();
    let mut check = |name: &str, v: f64, min: f64| {
        if v < min {
            fails.push(format!("{name} {v:.1}% < {min}%"));
        }
    };
    check("questions recall", f.q_recall, 95.0);
    check("questions precision", f.q_precision, 90.0);
    check("commitments recall", f.c_recall, 90.0);
    check("commitments precision", f.c_precision, 95.0);
    check("needs_reply accuracy", f.reply, 95.0);
    check("urgency accuracy", f.urgency, 85.0);
    fails
}

#[test]
fn matching_rule() {
    assert!(text_matches(
        "who should I address the PO to",
        "Also, who should I address the PO to on your side?"
    ));
    assert!(text_matches(
        "¿Te viene bien el jueves?",
        "¿Te viene bien el jueves a las 10?"
    ));
    assert!(text_matches(
        "本日中に正式な請求書もお送りします",
        "本日中に正式な請求書もお送りします。"
    ));
    assert!(!text_matches("send the slides", "Thanks!"));
    assert!(!text_matches("who should I address the PO to", "PO"));
}

/// Prints recall, precision and accuracy per split and language (run with
/// `cargo test --lib analyze::eval -- --nocapture` to see the table) and asserts the
/// targets on the threads used for tuning. The other splits are reported, never
/// asserted: a failing assertion there would be pressure to tune against them. Their
/// misses are listed only with `ANALYZE_EVAL_SHOW_HELDOUT=1`.
#[test]
fn corpus_meets_targets() {
    let cases = load();
    assert!(
        cases.len() >= 60,
        "corpus went missing: {} threads",
        cases.len()
    );
    let heldout = cases.iter().filter(|(_, c)| c.split != "tune").count();
    assert!(heldout * 5 >= cases.len(), "held-out part below 20%");

    let show_heldout = std::env::var_os("ANALYZE_EVAL_SHOW_HELDOUT").is_some();
    let mut by: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut log = String::new();
    for (stem, case) in &cases {
        let mut case_log = String::new();
        let t = evaluate(stem, case, &mut case_log);
        if case.split == "tune" || show_heldout {
            log.push_str(&case_log);
        }
        by.entry((case.split.clone(), case.lang.clone()))
            .or_default()
            .add(&t);
    }
    let mut table = String::from(HEADER);
    let mut all = Tally::default();
    let mut splits: BTreeMap<String, Tally> = BTreeMap::new();
    let mut langs: BTreeMap<String, Tally> = BTreeMap::new();
    for ((split, lang), t) in &by {
        all.add(t);
        splits.entry(split.clone()).or_default().add(t);
        langs.entry(lang.clone()).or_default().add(t);
    }
    for (lang, t) in &langs {
        let _ = write!(table, "\n{}", t.row(&format!("all {lang}")));
    }
    let _ = write!(table, "\n{}", all.row("ALL"));
    for (split, t) in &splits {
        let _ = write!(table, "\n{}", t.row(split));
    }
    for ((split, lang), t) in &by {
        if split != "tune" {
            let _ = write!(table, "\n{}", t.row(&format!("{split} {lang}")));
        }
    }
    println!("{table}\n");
    if !log.is_empty() {
        println!("Misses:\n{log}");
    }
    let mut fails = Vec::new();
    for f in targets_met(&splits["tune"]) {
        fails.push(format!("tune: {f}"));
    }
    assert!(fails.is_empty(), "targets missed:\n{}", fails.join("\n"));
}
