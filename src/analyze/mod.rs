//! Thread analysis, embedded and offline: what a source note's Summary, Key Points,
//! Questions and Commitments say, and its `needs_reply` and `urgency` (SPEC §Source
//! notes), plus what the draft generators need (issue #4).
//!
//! It is deliberately extractive and rule-based: no model can ship with the binary or be
//! downloaded, a sync of 10,000 threads must not notice it, and every answer must be
//! explainable from the mail. The rules are measured against the labelled threads in
//! `tests/corpus/threads/` (see `eval.rs`, which prints recall, precision and accuracy
//! per language).
//!
//! Only what senders wrote *now* counts (`ParsedMessage::body_new`; inline `>` quotes
//! and any history that slipped through are dropped again in `text.rs`): a question
//! quoted back at the user was already asked and answered.

mod dates;
mod lexicon;
mod text;

#[cfg(test)]
pub(crate) mod eval;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::message::{Mailbox, ParsedMessage};
use crate::notes::{NoteAnalysis, Urgency};
use lexicon::Tag;
use text::Sentence;

/// The analysis of one thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Analysis {
    /// Markdown: the opening sentences of what is new (the messages the user has not
    /// answered, or the last message), one line per message, sender first.
    pub summary: String,
    pub key_points: Vec<String>,
    /// Asked of the user in messages they have not answered yet, oldest first.
    pub questions: Vec<Question>,
    /// Promises made anywhere in the thread, by either side, oldest first.
    pub commitments: Vec<Commitment>,
    pub needs_reply: bool,
    pub urgency: Urgency,
    /// What made the urgency high or low ("ASAP", "by Friday", "automated message").
    pub urgency_reason: Option<String>,
    /// The sender of the last message.
    pub last_sender: Option<Mailbox>,
    pub last_from_user: bool,
    /// The last message is list, bulk or automatic mail or from a no-reply address.
    pub automated: bool,
    /// Index of the first message after the user's last one: where "unanswered" starts.
    pub unanswered_from: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Question {
    /// The sentence as written (greeting removed).
    pub text: String,
    /// The asker's display name (or address).
    pub asked_by: String,
    /// Index of the message in the thread.
    pub message: usize,
    /// A deadline in the question ("by Friday"), as written.
    pub due: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Commitment {
    /// The promiser's display name (or address).
    pub who: String,
    /// Made by the user: a follow-up they owe.
    pub by_user: bool,
    /// For English, the promised action as a bare verb phrase ("fly to San Francisco
    /// early in the New Year…"); otherwise the clause as written.
    pub what: String,
    /// `what` is a verb phrase (renders as "X committed to flying…").
    pub verb_phrase: bool,
    /// When, as written ("by Friday", "early in the New Year", "明日までに").
    pub due: Option<String>,
    /// The clause the promise was found in, as written.
    pub text: String,
    /// Index of the message in the thread.
    pub message: usize,
}

impl Commitment {
    /// One line for notes and drafts, in the seed draft's style: "John Mao committed to
    /// flying to San Francisco early in the New Year…".
    pub fn render(&self) -> String {
        let mut s = if self.verb_phrase {
            format!("{} committed to {}", self.who, gerund_phrase(&self.what))
        } else {
            format!("{}: {}", self.who, self.what)
        };
        if let Some(d) = &self.due {
            if !self.what.contains(d.as_str()) {
                s.push_str(&format!(" (due: {d})"));
            }
        }
        if !s.ends_with(['.', '!', '?', '。', '！', '？']) {
            s.push(
                if self.verb_phrase || !self.what.chars().any(text::is_cjk) {
                    '.'
                } else {
                    '。'
                },
            );
        }
        s
    }
}

impl Analysis {
    /// The questions as plain strings, for the draft's "To answer your questions".
    pub fn question_texts(&self) -> Vec<String> {
        self.questions.iter().map(|q| q.text.clone()).collect()
    }

    /// What the user promised: the follow-ups the draft should mention.
    pub fn user_commitments(&self) -> impl Iterator<Item = &Commitment> {
        self.commitments.iter().filter(|c| c.by_user)
    }

    /// What the other side promised.
    pub fn their_commitments(&self) -> impl Iterator<Item = &Commitment> {
        self.commitments.iter().filter(|c| !c.by_user)
    }
}

impl From<&Analysis> for NoteAnalysis {
    fn from(a: &Analysis) -> NoteAnalysis {
        let mut askers: Vec<&str> = a.questions.iter().map(|q| q.asked_by.as_str()).collect();
        askers.dedup();
        let several = askers.len() > 1;
        NoteAnalysis {
            summary: a.summary.clone(),
            key_points: a.key_points.clone(),
            questions: a
                .questions
                .iter()
                .map(|q| {
                    if several {
                        format!("{}: {}", q.asked_by, q.text)
                    } else {
                        q.text.clone()
                    }
                })
                .collect(),
            commitments: a.commitments.iter().map(Commitment::render).collect(),
            needs_reply: a.needs_reply,
            urgency: a.urgency,
        }
    }
}

/// Analyzes a thread.
///
/// `messages` in date order (as the note shows them); `user_addresses` are the
/// account's own addresses (any case); `now_unix` stands in for the date of a message
/// without one. Everything else is resolved against each message's own date, so the
/// result depends on the thread alone.
pub fn analyze_thread(
    messages: &[ParsedMessage],
    user_addresses: &[String],
    now_unix: i64,
) -> Analysis {
    let people = People::new(messages, user_addresses);
    let msgs: Vec<Msg> = messages
        .iter()
        .map(|p| Msg::new(p, &people, now_unix))
        .collect();
    let Some(last) = msgs.last() else {
        return Analysis::default();
    };
    let unanswered_from = msgs.iter().rposition(|m| m.from_user).map_or(0, |i| i + 1);

    let open = open_questions(&msgs, unanswered_from, &people);
    let questions: Vec<Question> = open
        .iter()
        .map(|&(mi, si)| {
            let m = &msgs[mi];
            let s = &m.sentences[si];
            Question {
                text: without_greeting(s, &people),
                asked_by: m.sender.clone(),
                message: mi,
                due: dates::find_due(s, 0, s.ntok(), m.today).map(|d| d.text),
            }
        })
        .collect();
    let commitments = commitments(&msgs);
    let needs_reply = !last.from_user && !last.automated && !questions.is_empty();
    let (urgency, urgency_reason) = urgency(&msgs, unanswered_from, &open);
    let (summary, lead) = summary(&msgs, unanswered_from);
    let key_points = key_points(&msgs, unanswered_from, &lead, &open, &commitments);

    Analysis {
        summary,
        key_points,
        questions,
        commitments,
        needs_reply,
        urgency,
        urgency_reason,
        last_sender: last.parsed.from.clone(),
        last_from_user: last.from_user,
        automated: last.automated,
        unanswered_from,
    }
}

// ---------------------------------------------------------------------------
// People

/// Who is who: the user's addresses and names, and the other participants' first
/// names, for telling "Priya, could you…" from "Jason, could you…".
struct People {
    user_addresses: Vec<String>,
    /// Lowercase first names (and full names) of the user.
    user_names: Vec<String>,
    /// Lowercase first names of everyone else.
    other_names: Vec<String>,
}

impl People {
    fn new(messages: &[ParsedMessage], user_addresses: &[String]) -> People {
        let user_addresses: Vec<String> = user_addresses
            .iter()
            .map(|a| a.trim().to_lowercase())
            .collect();
        let mut p = People {
            user_addresses,
            user_names: Vec::new(),
            other_names: Vec::new(),
        };
        // The same people recur in every message of a thread: a name already seen on
        // the same side adds nothing, so it is not lowercased again.
        let mut seen: Vec<(&str, bool)> = Vec::new();
        for m in messages {
            let boxes = m.from.iter().chain(&m.to).chain(&m.cc).chain(&m.reply_to);
            for b in boxes {
                let Some(name) = b.name.as_deref() else {
                    continue;
                };
                let user = p.is_user(b);
                if seen.contains(&(name, user)) {
                    continue;
                }
                seen.push((name, user));
                let lower = name.to_lowercase();
                let first = first_name(&lower);
                let list = if user {
                    &mut p.user_names
                } else {
                    &mut p.other_names
                };
                for n in [first, lower.as_str()] {
                    if !n.is_empty() && !list.iter().any(|x| x == n) {
                        list.push(n.to_string());
                    }
                }
            }
        }
        // The user's address local part ("jason@") names them when no header does.
        for a in &p.user_addresses {
            let local = a.split('@').next().unwrap_or("");
            if local.len() > 1
                && local.chars().all(char::is_alphabetic)
                && !p.user_names.iter().any(|x| x == local)
            {
                p.user_names.push(local.to_string());
            }
        }
        let user_names = p.user_names.clone();
        p.other_names.retain(|n| !user_names.contains(n));
        p
    }

    fn is_user(&self, b: &Mailbox) -> bool {
        b.address.as_deref().is_some_and(|a| {
            self.user_addresses
                .iter()
                .any(|u| u.eq_ignore_ascii_case(a))
        })
    }

    /// Some(true) if the token names the user, Some(false) someone else.
    fn name(&self, tok: &str) -> Option<bool> {
        if self.user_names.iter().any(|n| n == tok) {
            Some(true)
        } else if self.other_names.iter().any(|n| n == tok) {
            Some(false)
        } else {
            None
        }
    }
}

/// "O'Brien, Sarah" → "sarah"; "John Mao" → "john"; "Dr. Frank Müller" → "frank".
fn first_name(lower: &str) -> &str {
    let name = match lower.split_once(',') {
        Some((_, given)) => given.trim(),
        None => lower.trim(),
    };
    name.split_whitespace()
        .find(|w| !matches!(*w, "dr." | "dr" | "prof." | "mr." | "mrs." | "ms."))
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric())
}

// ---------------------------------------------------------------------------
// Messages

struct Msg<'a> {
    parsed: &'a ParsedMessage,
    from_user: bool,
    automated: bool,
    sender: String,
    /// The message's civil day in the sender's time zone.
    today: i64,
    sentences: Vec<Sentence>,
    /// The user is a direct recipient (in To, or not visibly only in Cc).
    direct: bool,
}

impl<'a> Msg<'a> {
    fn new(parsed: &'a ParsedMessage, people: &People, now_unix: i64) -> Msg<'a> {
        let from_user = parsed.from.as_ref().is_some_and(|f| people.is_user(f));
        let automated = parsed.is_list_bulk_or_auto()
            || parsed
                .from
                .as_ref()
                .and_then(|f| f.address.as_deref())
                .is_some_and(no_reply_address);
        let sender = parsed
            .from
            .as_ref()
            .and_then(|f| {
                f.name
                    .clone()
                    .filter(|n| !n.trim().is_empty())
                    .or_else(|| f.address.clone())
            })
            .unwrap_or_else(|| "(unknown sender)".to_string());
        let today = parsed.date.as_ref().map_or_else(
            || dates::civil_day(now_unix, 0),
            |d| dates::civil_day(d.timestamp, d.offset_minutes),
        );
        let sentences = text::sentences(&parsed.body_new);
        let automated = automated
            || sentences
                .iter()
                .any(|s| s.contains_any(&lexicon::AUTOMATED));
        let in_to = parsed.to.iter().any(|b| people.is_user(b));
        let in_cc = parsed.cc.iter().any(|b| people.is_user(b));
        let direct = in_to || !in_cc || parsed.to.is_empty();
        Msg {
            parsed,
            from_user,
            automated,
            sender,
            today,
            sentences,
            direct,
        }
    }
}

/// Senders nobody can answer: SPEC counts them with bulk mail.
fn no_reply_address(addr: &str) -> bool {
    let local = addr.split('@').next().unwrap_or("").to_lowercase();
    [
        "noreply",
        "no-reply",
        "no_reply",
        "donotreply",
        "do-not-reply",
        "do_not_reply",
        "mailer-daemon",
        "postmaster",
        "notification",
        "newsletter",
        "bounce",
        "ne-pas-repondre",
        "nepasrepondre",
        "ne_pas_repondre",
        "noreponse",
        "no-responder",
        "noresponder",
        "no-contestar",
        "nicht-antworten",
        "keine-antwort",
        "no-answer",
        "noanswer",
    ]
    .iter()
    .any(|p| local.contains(p))
}

// ---------------------------------------------------------------------------
// Questions

/// (message, sentence) of every open question to the user, oldest first.
fn open_questions(msgs: &[Msg], from: usize, people: &People) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (mi, m) in msgs.iter().enumerate().skip(from) {
        if m.automated {
            continue;
        }
        let greeted = greeting_addressee(m, people);
        for (si, s) in m.sentences.iter().enumerate() {
            if withdraws(s) {
                out.clear();
            }
            if !is_question(s, people) || followed_by_anyway(m, si) {
                continue;
            }
            let to_user = match vocative(s, people) {
                Some(v) => v,
                None => greeted.unwrap_or(m.direct),
            };
            if to_user {
                out.push((mi, si));
            }
        }
    }
    out
}

/// "Who decided to ship on a Friday? Anyway, …": venting, not a question.
fn followed_by_anyway(m: &Msg, si: usize) -> bool {
    m.sentences.get(si + 1).is_some_and(|n| {
        n.ntok() > 0
            && matches!(
                n.tok(0),
                "anyway" | "anyhow" | "whatever" | "bref" | "egal" | "jedenfalls" | "とにかく"
            )
    })
}

fn withdraws(s: &Sentence) -> bool {
    if s.cjk && s.contains_any(&lexicon::JA_WITHDRAW_ANY) {
        return true;
    }
    s.hits
        .iter()
        .any(|h| h.tag == Tag::Withdraw && h.start <= 4)
}

/// Does the sentence ask something of its reader?
fn is_question(s: &Sentence, people: &People) -> bool {
    if s.has(Tag::Pleasantry) && s.word_count() <= 8 {
        return false;
    }
    let asks = s.has(Tag::Ask) || s.has(Tag::Indirect);
    if s.has(Tag::Boiler) && !(asks && s.ends_question()) {
        return false;
    }
    if s.cjk && ja_is_question(s) {
        return true;
    }
    if s.ends_question() {
        return !is_rhetorical(s);
    }
    if asks || s.has(Tag::NeedYou) || s.has(Tag::LetMeKnow) {
        return true;
    }
    if s.has(Tag::NeedIfDue) && dates::find_due(s, 0, s.ntok(), 0).is_some_and(|d| d.firm) {
        return true;
    }
    // "Sollte sich Ihre Zahlung überschnitten haben, betrachten Sie es bitte als
    // gegenstandslos": a "please" inside an in-case clause asks nothing.
    let in_case = s.ntok() > 0 && matches!(s.tok(0), "sollte" | "sollten" | "falls" | "should");
    let please = !in_case
        && s.hits.iter().any(|h| {
            h.tag == Tag::Please
                && !s
                    .hits
                    .iter()
                    .any(|n| n.tag == Tag::PleaseNot && n.start == h.start)
        });
    please || imperative_start(s, people)
}

fn is_rhetorical(s: &Sentence) -> bool {
    let t = s.lower.trim_end_matches(['?', '？', ' ', '!']);
    matches!(
        t,
        "right" | "who knew" | "why not" | "isn't it" | "n'est-ce pas" | "oder" | "nicht wahr"
    )
}

fn ja_is_question(s: &Sentence) -> bool {
    if s.contains_any(&lexicon::JA_BOILER_ANY) {
        return false;
    }
    if s.ends_question() {
        return true;
    }
    let end = s.trimmed_end();
    lexicon::JA_QUESTION_ENDINGS
        .iter()
        .any(|e| end.ends_with(e))
        || lexicon::JA_REQUEST_ENDINGS.iter().any(|e| end.ends_with(e))
        || s.contains_any(&lexicon::JA_REQUEST_CONTAINS_ANY)
}

/// Tokens that may precede an imperative verb: "Also, send…", "If not, send…".
const LEAD_FILLERS: &[&str] = &[
    "also",
    "and",
    "so",
    "then",
    "oh",
    "btw",
    "ps",
    "but",
    "otherwise",
    "alternatively",
    "actually",
    "if",
    "not",
    ",",
    ":",
    "—",
    "–",
    "-",
    "just",
    "quick",
    "one",
    "und",
    "et",
];

/// "Send me a couple of slots", "Confirm the address", after a vocative or filler.
fn imperative_start(s: &Sentence, people: &People) -> bool {
    let mut i = 0;
    while i < s.ntok() {
        let t = s.tok(i);
        if LEAD_FILLERS.contains(&t) || people.name(t).is_some() {
            i += 1;
            continue;
        }
        return lexicon::IMPERATIVE_VERBS.contains(&t);
    }
    false
}

/// "Priya, could you…" (Some(false)), "Jason — need your sign-off…" (Some(true)).
fn vocative(s: &Sentence, people: &People) -> Option<bool> {
    let mut i = 0;
    if let Some(h) = s.first(Tag::Greeting) {
        if h.start == 0 {
            i = h.end;
        }
    }
    if i < s.ntok() && s.tok(i) == "@" {
        i += 1;
    }
    let mut named: Option<bool> = None;
    while i < s.ntok() {
        let t = s.tok(i);
        if let Some(is_user) = people.name(t) {
            named = Some(named.unwrap_or(false) || is_user);
            i += 1;
        } else if named.is_some() && matches!(t, "and" | "und" | "et" | "y" | "&") {
            i += 1;
        } else {
            break;
        }
    }
    let sep = i < s.ntok() && matches!(s.tok(i), "," | ":" | "—" | "–" | "-" | "、");
    if sep {
        named
    } else {
        None
    }
}

/// Whom the message's greeting addresses ("Hi Priya," → Some(false); "Hi both," → None).
fn greeting_addressee(m: &Msg, people: &People) -> Option<bool> {
    let s = m.sentences.first()?;
    if s.word_count() > 6 {
        return None;
    }
    vocative(s, people)
}

/// The question without a leading "Hi Jason," greeting.
fn without_greeting(s: &Sentence, people: &People) -> String {
    let greeted = s.first(Tag::Greeting).is_some_and(|h| h.start == 0);
    let mut i = if greeted {
        s.first(Tag::Greeting).map_or(0, |h| h.end)
    } else {
        0
    };
    if !greeted {
        return s.text.clone();
    }
    while i < s.ntok() && people.name(s.tok(i)).is_some() {
        i += 1;
    }
    if i < s.ntok() && matches!(s.tok(i), "," | ":" | "!") && i + 1 < s.ntok() {
        return s.rest_from(i + 1).trim().to_string();
    }
    s.text.clone()
}

// ---------------------------------------------------------------------------
// Commitments

fn commitments(msgs: &[Msg]) -> Vec<Commitment> {
    let mut out: Vec<Commitment> = Vec::new();
    for (mi, m) in msgs.iter().enumerate() {
        if m.automated {
            continue;
        }
        for s in &m.sentences {
            if s.ends_question() || (s.cjk && ja_is_question(s)) {
                continue;
            }
            if s.cjk {
                if s.contains_any(&lexicon::JA_COMMIT_ANY)
                    && !s.contains_any(&lexicon::JA_BOILER_ANY)
                {
                    push_unique(
                        &mut out,
                        Commitment {
                            who: m.sender.clone(),
                            by_user: m.from_user,
                            what: s.text.clone(),
                            verb_phrase: false,
                            due: dates::find_due(s, 0, 0, m.today).map(|d| d.text),
                            text: s.text.clone(),
                            message: mi,
                        },
                    );
                }
                continue;
            }
            for (a, b) in clauses(s) {
                if let Some(c) = clause_commitment(s, a, b, m, mi) {
                    push_unique(&mut out, c);
                }
            }
        }
    }
    out
}

fn push_unique(out: &mut Vec<Commitment>, c: Commitment) {
    if !out.iter().any(|o| o.who == c.who && o.text == c.text) {
        out.push(c);
    }
}

/// Token ranges of a sentence's clauses: split at `;` and before a conjunction (or
/// comma) that starts a clause with its own subject ("…, and I'm going to…", "… et je
/// t'enverrai…"), so each promise is found on its own.
fn clauses(s: &Sentence) -> Vec<(usize, usize)> {
    let n = s.ntok();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..n {
        let t = s.tok(i);
        // The cheap tests first: most tokens are no joint.
        let joint = i > start
            && (t == "," || lexicon::CONJUNCTIONS.contains(&t))
            && i + 1 < n
            && lexicon::CLAUSE_SUBJECTS.contains(&s.tok(i + 1));
        if t == ";" || joint {
            let mut end = i;
            while end > start && matches!(s.tok(end - 1), "," | ";") {
                end -= 1;
            }
            if end > start {
                out.push((start, end));
            }
            start = i + 1;
        }
    }
    if start < n {
        out.push((start, n));
    }
    out
}

const EN_STARTS: &[&str] = &[
    "i", "i'll", "we", "we'll", "i'm", "we're", "let", "will", "you'll", "you", "i've",
];

fn clause_commitment(s: &Sentence, a: usize, b: usize, m: &Msg, mi: usize) -> Option<Commitment> {
    // Conditional offers are no promises: "If you want, I'll share the slides."
    if matches!(
        s.tok(0),
        "if" | "wenn" | "falls" | "si" | "should" | "unless"
    ) {
        return None;
    }
    let first = s.tok(a);
    // Whether the sentence has the token sequence `seq` anywhere.
    let offer = |seq: &[&str]| {
        (0..s.ntok()).any(|i| {
            i + seq.len() <= s.ntok() && seq.iter().enumerate().all(|(k, w)| s.tok(i + k) == *w)
        })
    };
    // The promise phrase first: most clauses have none, and the tests for offers and
    // attachments below (all without side effects) then need not run.
    let hit = s.hits.iter().find(|h| {
        h.start >= a
            && h.end <= b
            && matches!(h.tag, Tag::Commit | Tag::CommitLetMe | Tag::CommitIfDue)
    });
    let (start, mut k, tag) = match hit {
        Some(h) => (h.start, h.end, h.tag),
        None => {
            if let Some(p) = romance_future(s, a, b)
                .or_else(|| german_present_promise(s, a, b, m.today))
                .or_else(|| french_present_promise(s, a, b, m.today))
            {
                (p, p + 1, Tag::Commit)
            } else if first == "expect" && dates::find_due(s, a, b, m.today).is_some() {
                // "Expect the first invoice from us next week."
                (a, a + 1, Tag::Commit)
            } else if first == "will"
                && a + 1 < b
                && !matches!(
                    s.tok(a + 1),
                    "you" | "we" | "i" | "it" | "that" | "this" | "there" | "they" | "he" | "she"
                )
            {
                (a, a + 1, Tag::Commit)
            } else {
                return None;
            }
        }
    };
    // "Ich schicke Ihnen anbei…", "je vous envoie ci-joint…": done now, not promised.
    let attached = (a..b).any(|i| {
        matches!(
            s.tok(i),
            "anbei" | "hiermit" | "beigefügt" | "adjunto" | "adjunta" | "adjuntos"
        )
    }) || offer(&["ci", "joint"])
        || offer(&["ci", "jointe"]);
    if attached
        || offer(&["if", "you", "want"])
        || offer(&["if", "you'd", "like"])
        || offer(&["if", "you", "like"])
        || offer(&["if", "helpful"])
        || offer(&["happy", "to"])
        || s.has(Tag::Boiler)
    {
        return None;
    }
    // "I'll", "I'll also", "I will then"
    while k < b && (lexicon::ADVERBS.contains(&s.tok(k)) || s.tok(k) == ",") {
        k += 1;
    }
    let english = EN_STARTS.contains(&s.tok(start));
    if k >= b && english {
        return None;
    }
    let rest: Vec<&str> = (k..b.min(k + 3)).map(|i| s.tok(i)).collect();
    let in_touch = rest.len() >= 3 && rest[..3] == ["be", "in", "touch"];
    let state = lexicon::NOT_A_PROMISE
        .iter()
        .any(|p| rest.len() >= p.len() && rest[..p.len()] == **p);
    if state && !in_touch {
        return None;
    }
    match tag {
        Tag::CommitLetMe if !lexicon::LET_ME_VERBS.contains(&s.tok(k)) => return None,
        Tag::CommitIfDue => {
            dates::find_due(s, a, b, m.today)?;
        }
        _ => {}
    }
    // German "ich werde … sein": a state ("im Urlaub sein"), not a promise.
    if matches!(s.tok(start), "ich" | "wir" | "werde" | "werden")
        && (s.tok(b - 1) == "sein"
            || offer(&["im", "urlaub"])
            || (a..b).any(|i| s.tok(i) == "abwesend"))
    {
        return None;
    }
    let clause_text = clean_clause(s.span(a, b));
    let (what, verb_phrase) = if english {
        (clean_clause(s.span(k, b)), true)
    } else {
        (clause_text.clone(), false)
    };
    if what.is_empty() {
        return None;
    }
    Some(Commitment {
        who: m.sender.clone(),
        by_user: m.from_user,
        what,
        verb_phrase,
        due: dates::find_due(s, a, b, m.today).map(|d| d.text),
        text: clause_text,
        message: mi,
    })
}

/// German present tense as a promise, in any word order: "ich" with an -e form or
/// "wir" with an -en form of a verb of doing, a time word, no modal verb ("Dann
/// warte ich … und gebe sie anschließend an den Einkauf weiter").
fn german_present_promise(s: &Sentence, a: usize, b: usize, today: i64) -> Option<usize> {
    let has = |w: &str| (a..b).any(|i| s.tok(i) == w);
    let verbs = if has("ich") {
        lexicon::DE_PROMISE_ICH
    } else if has("wir") {
        lexicon::DE_PROMISE_WIR
    } else {
        return None;
    };
    if (a..b).any(|i| {
        lexicon::DE_MODALS.contains(&s.tok(i)) || matches!(s.tok(i), "anbei" | "hiermit" | "anhang")
    }) {
        return None;
    }
    let when = (a..b).any(|i| lexicon::DE_WHEN.contains(&s.tok(i)))
        || dates::find_due(s, a, b, today).is_some();
    if !when {
        return None;
    }
    (a..b).find(|&i| verbs.contains(&s.tok(i)))
}

/// French present tense as a promise: "je transmets", "je t'appelle demain" (but not
/// "je vous rappelle que…", a reminder).
fn french_present_promise(s: &Sentence, a: usize, b: usize, today: i64) -> Option<usize> {
    const OBJECTS: &[&str] = &[
        "vous", "te", "t'", "lui", "leur", "le", "la", "les", "l'", "en", "y", "me", "m'",
    ];
    let when = || {
        let words: Vec<&str> = (a..b).map(|i| s.tok(i)).collect();
        lexicon::FR_WHEN.iter().any(|w| {
            let parts: Vec<&str> = w.split(' ').collect();
            words.windows(parts.len()).any(|x| x == parts.as_slice())
        }) || dates::find_due(s, a, b, today).is_some()
    };
    for i in a..b {
        if !matches!(s.tok(i), "je" | "j'") {
            continue;
        }
        let mut k = i + 1;
        while k < b && OBJECTS.contains(&s.tok(k)) {
            k += 1;
        }
        if k >= b || (k + 1 < b && s.tok(k + 1) == "que") {
            continue;
        }
        let v = s.tok(k);
        if lexicon::FR_PROMISE_ALWAYS.contains(&v)
            || (lexicon::FR_PROMISE_WHEN.contains(&v) && when())
        {
            return Some(i);
        }
    }
    None
}

/// A French or Spanish first-person future ("je vous enverrai", "nous préparerons",
/// "enviaré"): the position of the verb.
fn romance_future(s: &Sentence, a: usize, b: usize) -> Option<usize> {
    const OBJECTS: &[&str] = &[
        "vous", "te", "t'", "lui", "leur", "le", "la", "les", "l'", "en", "y", "me", "m'", "nous",
        "ne", "n'",
    ];
    for i in a..b {
        let t = s.tok(i);
        if matches!(t, "je" | "j'" | "nous") {
            let mut k = i + 1;
            while k < b && OBJECTS.contains(&s.tok(k)) {
                k += 1;
            }
            if k >= b {
                continue;
            }
            let v = s.tok(k);
            let je = t != "nous" && v.ends_with("rai") && v.len() > 4;
            let nous = t == "nous" && v.ends_with("rons") && v.len() > 5;
            let state = matches!(
                v,
                "serai"
                    | "pourrai"
                    | "devrai"
                    | "aurai"
                    | "serons"
                    | "pourrons"
                    | "devrons"
                    | "aurons"
            );
            if (je || nous) && !state {
                return Some(i);
            }
        }
        let es_future = (t.ends_with("aré") || t.ends_with("eré") || t.ends_with("iré"))
            && t.chars().count() > 4
            && !matches!(t, "estaré" | "seré" | "podré");
        if es_future && (i == a || !matches!(s.tok(i - 1), "si" | "no")) {
            return Some(i);
        }
    }
    None
}

fn clean_clause(s: &str) -> String {
    s.trim()
        .trim_start_matches([',', ';', ':', '—', '–', '-', ' '])
        .trim_end_matches([',', ';', ':', '—', '–', '-', ' ', '.', '!'])
        .to_string()
}

/// "fly to X and open Y" → "flying to X and open Y"; "ask him and share what I can" →
/// "asking him and sharing what I can".
fn gerund_phrase(what: &str) -> String {
    let words: Vec<&str> = what.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut infinitive_seen = false;
    for (i, w) in words.iter().enumerate() {
        let lower = w.to_lowercase();
        if i == 0 {
            out.push(gerund(w));
            continue;
        }
        if lower == "to" && words.get(i + 1).is_some_and(|n| is_verb(&n.to_lowercase())) {
            infinitive_seen = true;
        }
        let after_and = words[i - 1] == "and";
        if after_and && !infinitive_seen && is_verb(&lower) {
            out.push(gerund(w));
        } else {
            out.push((*w).to_string());
        }
    }
    out.join(" ")
}

fn is_verb(w: &str) -> bool {
    lexicon::LET_ME_VERBS.contains(&w)
        || lexicon::IMPERATIVE_VERBS.contains(&w)
        || matches!(
            w,
            "fly"
                | "visit"
                | "open"
                | "bring"
                | "hold"
                | "have"
                | "give"
                | "provide"
                | "deliver"
                | "ship"
                | "fix"
                | "write"
                | "prepare"
                | "compile"
                | "circulate"
                | "walk"
                | "stay"
                | "keep"
                | "let"
                | "go"
                | "meet"
                | "join"
                | "call"
                | "introduce"
                | "arrange"
                | "organize"
                | "organise"
                | "finish"
                | "start"
                | "publish"
                | "post"
                | "upload"
                | "test"
                | "rerun"
                | "build"
                | "merge"
                | "deploy"
                | "present"
                | "pay"
                | "invoice"
                | "email"
                | "text"
                | "print"
        )
}

fn gerund(word: &str) -> String {
    let lower = word.to_lowercase();
    if lower.ends_with("ing") || !lower.chars().all(|c| c.is_ascii_alphabetic()) {
        return word.to_string();
    }
    match lower.as_str() {
        "be" => return "being".into(),
        "see" => return "seeing".into(),
        "lie" | "die" | "tie" => return format!("{}ying", &word[..word.len() - 2]),
        _ => {}
    }
    if lower.ends_with("ie") {
        return format!("{}ying", &word[..word.len() - 2]);
    }
    if lower.ends_with("ee") || lower.ends_with("ye") || lower.ends_with("oe") {
        return format!("{word}ing");
    }
    if lower.ends_with('e') && lower.len() > 2 {
        return format!("{}ing", &word[..word.len() - 1]);
    }
    let b = lower.as_bytes();
    let vowel = |c: u8| matches!(c, b'a' | b'e' | b'i' | b'o' | b'u');
    let groups = b
        .iter()
        .enumerate()
        .filter(|&(i, &c)| vowel(c) && (i == 0 || !vowel(b[i - 1])))
        .count();
    let n = b.len();
    let cvc = n >= 3
        && !vowel(b[n - 1])
        && !matches!(b[n - 1], b'w' | b'x' | b'y')
        && vowel(b[n - 2])
        && !vowel(b[n - 3]);
    if groups == 1 && cvc {
        return format!("{word}{}ing", &word[n - 1..]);
    }
    format!("{word}ing")
}

// ---------------------------------------------------------------------------
// Urgency

/// Days within which a deadline on a request makes a thread urgent ("by Friday" is
/// always within them, "next week" never).
const URGENT_WITHIN_DAYS: i64 = 6;

fn urgency(msgs: &[Msg], from: usize, open: &[(usize, usize)]) -> (Urgency, Option<String>) {
    let Some(last) = msgs.last() else {
        return (Urgency::Normal, None);
    };
    if last.automated {
        return (Urgency::Low, Some("automated message".into()));
    }
    if last.from_user {
        return (Urgency::Normal, None);
    }
    for (mi, m) in msgs.iter().enumerate().skip(from) {
        if m.automated || m.from_user {
            continue;
        }
        let calm = m.sentences.iter().any(|s| {
            s.has(Tag::NotUrgent) || (s.cjk && s.contains_any(&lexicon::JA_NOT_URGENT_ANY))
        });
        if calm {
            continue;
        }
        if let Some(subject) = &m.parsed.subject {
            let s = Sentence::new(subject, false);
            if s.has(Tag::Urgent)
                || s.has(Tag::UrgentStatement)
                || s.contains_any(&lexicon::JA_URGENT_ANY)
            {
                return (Urgency::High, Some(format!("subject: {subject}")));
            }
        }
        for (si, s) in m.sentences.iter().enumerate() {
            if let Some(h) = s.first(Tag::UrgentStatement) {
                return (Urgency::High, Some(s.span(h.start, h.end).to_string()));
            }
            let asked = open.contains(&(mi, si));
            let urgent_word = s.first(Tag::Urgent);
            if asked {
                if let Some(h) = urgent_word {
                    return (Urgency::High, Some(s.span(h.start, h.end).to_string()));
                }
                if s.cjk {
                    if let Some(w) = lexicon::JA_URGENT.iter().find(|w| s.lower.contains(*w)) {
                        return (Urgency::High, Some((*w).to_string()));
                    }
                }
            } else if urgent_word.is_some() && s.word_count() <= 4 {
                return (Urgency::High, Some(s.text.clone()));
            }
            let deadline_talk = s.contains_any(&lexicon::DEADLINE_TALK);
            if asked || deadline_talk {
                if let Some(d) = dates::find_due(s, 0, s.ntok(), m.today) {
                    if d.firm
                        && d.days
                            .is_some_and(|x| (0..=URGENT_WITHIN_DAYS).contains(&x))
                    {
                        return (Urgency::High, Some(d.text));
                    }
                }
            }
        }
    }
    (Urgency::Normal, None)
}

// ---------------------------------------------------------------------------
// Summary and key points

fn is_greeting(s: &Sentence) -> bool {
    if s.cjk {
        let t = s.trimmed_end();
        return t.chars().count() <= 24
            && (t.ends_with('様') || t.ends_with("さん") || t.ends_with("各位"));
    }
    let greeted = s.first(Tag::Greeting).is_some_and(|h| h.start == 0);
    (greeted && s.word_count() <= 5) || (s.word_count() <= 3 && s.text.ends_with([',', ':']))
}

fn is_closing(s: &Sentence) -> bool {
    if s.cjk {
        return s.contains_any(&lexicon::JA_PLEASANTRY_ANY) && s.text.chars().count() <= 30;
    }
    s.first(Tag::Closing).is_some_and(|h| h.start == 0) && s.word_count() <= 6
}

fn is_content(s: &Sentence) -> bool {
    if is_greeting(s) || is_closing(s) {
        return false;
    }
    if s.cjk {
        return s.text.chars().count() >= 8;
    }
    s.word_count() >= 4 && !(s.has(Tag::Pleasantry) && s.word_count() <= 8)
}

/// The messages the summary and key points speak of: the unanswered ones (at most
/// three, the newest), or the last message when the user wrote it.
fn recent<'m, 'a>(msgs: &'m [Msg<'a>], from: usize) -> &'m [Msg<'a>] {
    if from < msgs.len() {
        let start = from.max(msgs.len().saturating_sub(3));
        &msgs[start..]
    } else {
        &msgs[msgs.len() - 1..]
    }
}

const SUMMARY_MAX_CHARS: usize = 320;

/// The summary, and the (message, sentence) pairs it quotes.
fn summary(msgs: &[Msg], from: usize) -> (String, Vec<(usize, usize)>) {
    let base = msgs.len() - recent(msgs, from).len();
    let mut lines = Vec::new();
    let mut used = Vec::new();
    for (k, m) in recent(msgs, from).iter().enumerate() {
        let mi = base + k;
        let mut picked: Vec<usize> = Vec::new();
        let mut len = 0;
        for (si, s) in m.sentences.iter().enumerate() {
            if !is_content(s) {
                continue;
            }
            picked.push(si);
            len += s.text.chars().count();
            if len >= 80 || picked.len() == 2 {
                break;
            }
        }
        if picked.is_empty() {
            if let Some(si) = m
                .sentences
                .iter()
                .position(|s| !is_greeting(s) && s.word_count() > 0 || s.cjk)
            {
                picked.push(si);
            }
        }
        if picked.is_empty() {
            continue;
        }
        let joiner = if m.sentences[picked[0]].cjk { "" } else { " " };
        let text: Vec<&str> = picked
            .iter()
            .map(|&si| m.sentences[si].text.as_str())
            .collect();
        let text = truncate(&text.join(joiner), SUMMARY_MAX_CHARS);
        let who = if m.from_user {
            format!("{} (you)", m.sender)
        } else if m.automated {
            format!("{} (automated)", m.sender)
        } else {
            m.sender.clone()
        };
        lines.push(format!("**{who}**: {text}"));
        used.extend(picked.into_iter().map(|si| (mi, si)));
    }
    (lines.join("\n"), used)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    let cut = match cut.rfind(' ') {
        Some(p) if p > max / 2 => &cut[..p],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end_matches([',', ';', ':', ' ']))
}

const KEY_POINTS_MAX: usize = 5;

/// Informative sentences of the recent messages not already in the summary or the
/// questions: list items, figures, names and dates score.
fn key_points(
    msgs: &[Msg],
    from: usize,
    lead: &[(usize, usize)],
    open: &[(usize, usize)],
    promised: &[Commitment],
) -> Vec<String> {
    let base = msgs.len() - recent(msgs, from).len();
    let mut scored: Vec<(i32, usize, usize, &str)> = Vec::new();
    for (k, m) in recent(msgs, from).iter().enumerate() {
        let mi = base + k;
        for (si, s) in m.sentences.iter().enumerate() {
            if lead.contains(&(mi, si)) || open.contains(&(mi, si)) || !is_content(s) {
                continue;
            }
            if s.ends_question() || s.has(Tag::Boiler) || s.has(Tag::PleaseNot) {
                continue;
            }
            if promised
                .iter()
                .any(|c| c.message == mi && s.text.contains(&c.text))
            {
                continue;
            }
            let mut score = 0;
            if s.list_item {
                score += 3;
            }
            if s.text.chars().any(|c| c.is_ascii_digit()) {
                score += 1;
            }
            let chars = s.text.chars().count();
            if (30..=220).contains(&chars) {
                score += 1;
            }
            if s.text.trim_end().ends_with(':') {
                score -= 3;
            }
            // Capitalized words past the first: names of products, people, places.
            let proper = s
                .text
                .split_whitespace()
                .skip(1)
                .filter(|w| w.chars().next().is_some_and(char::is_uppercase))
                .filter(|w| *w != "I" && !w.starts_with("I'") && !w.starts_with("I’"))
                .count();
            score += proper.min(2) as i32;
            if score >= 2 {
                scored.push((score, mi, si, s.text.as_str()));
            }
        }
    }
    let mut best = scored.clone();
    best.sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    best.truncate(KEY_POINTS_MAX);
    best.sort_by_key(|x| (x.1, x.2));
    best.into_iter()
        .map(|x| truncate(x.3, SUMMARY_MAX_CHARS))
        .collect()
}
