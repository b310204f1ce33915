//! Conversation threads across all synced folders, after JWZ
//! (<https://www.jwz.org/doc/threading.html>), tuned for one note per thread:
//!
//! - A Message-ID seen in several folders (INBOX and the Sent copy, INBOX and Archive) is
//!   one message with several locations.
//! - A message's parent comes from its own References/In-Reply-To only; the References of
//!   other messages place only messages we do not have. So adding a message to the set
//!   never moves a message we already had, and the `thread_id` — the id at the top of the
//!   tree, even when that message is missing — stays the same from one sync to the next.
//! - Subjects join trees only where a reply carries no references at all ("Re: x" from a
//!   mailer that drops headers), and only to a thread with that subject active within
//!   [`SUBJECT_WINDOW_SECS`]. JWZ's other subject merges (two unrelated "Hello" threads,
//!   two trees whose roots are known to differ) are left out: they merge strangers.
//! - Near-linear time in the number of messages and references (hash maps, no pairwise
//!   passes; the loop check walks up the tree only when a message that already has
//!   replies gets a parent). Loops in References are refused rather than followed.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;

use crate::message::{normalize_message_id, ParsedMessage};

/// How far from a thread's messages a reference-less reply may be and still join it by
/// subject.
pub const SUBJECT_WINDOW_SECS: i64 = 30 * 24 * 3600;

/// How much earlier than a thread a reply may be dated and still join it (clock skew).
const SKEW_SECS: i64 = 24 * 3600;

/// Only the most recent threads with a subject are considered for a subject merge,
/// keeping the pass linear even when thousands of messages share one subject.
const SUBJECT_CANDIDATES: usize = 32;

/// What threading needs to know about one fetched message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub folder: String,
    pub uid: u32,
    /// None when the message has none; better, pass [`ParsedMessage::stable_id`].
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub subject: String,
    /// Seconds since the Unix epoch.
    pub date: Option<i64>,
}

impl MessageRef {
    pub fn from_parsed(folder: &str, uid: u32, m: &ParsedMessage) -> Self {
        MessageRef {
            folder: folder.to_string(),
            uid,
            message_id: Some(m.stable_id()),
            in_reply_to: m.in_reply_to.clone(),
            references: m.references.clone(),
            subject: m.subject.clone().unwrap_or_default(),
            date: m.date.as_ref().map(|d| d.timestamp),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    pub folder: String,
    pub uid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadMessage {
    pub message_id: String,
    /// The id was made up because the message had none.
    pub synthetic_id: bool,
    /// The message this one answers, when known (it may be missing from the set).
    pub parent: Option<String>,
    pub date: Option<i64>,
    pub subject: String,
    /// Every folder/UID holding a copy, sorted.
    pub locations: Vec<Location>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Thread {
    /// The root's Message-ID; when the root is missing, the id the members name as their
    /// oldest ancestor. Stable as later syncs add messages.
    pub thread_id: String,
    /// The root message itself is not among the messages.
    pub root_missing: bool,
    /// The first message's subject.
    pub subject: String,
    /// In date order (undated last), ties by Message-ID.
    pub messages: Vec<ThreadMessage>,
}

impl Thread {
    /// A thread of these messages, put in date order (undated last, ties by
    /// Message-ID), named after the first one's subject.
    pub fn of_messages(
        thread_id: String,
        root_missing: bool,
        mut messages: Vec<ThreadMessage>,
    ) -> Thread {
        messages.sort_by(|a, b| {
            date_key(a.date)
                .cmp(&date_key(b.date))
                .then_with(|| a.message_id.cmp(&b.message_id))
        });
        Thread {
            thread_id,
            root_missing,
            subject: messages
                .first()
                .map(|m| m.subject.clone())
                .unwrap_or_default(),
            messages,
        }
    }

    pub fn first_date(&self) -> Option<i64> {
        self.messages.iter().filter_map(|m| m.date).min()
    }

    pub fn last_date(&self) -> Option<i64> {
        self.messages.iter().filter_map(|m| m.date).max()
    }

    pub fn message_ids(&self) -> impl Iterator<Item = &str> {
        self.messages.iter().map(|m| m.message_id.as_str())
    }
}

const SYNTHETIC_SUFFIX: &str = "@mailbridge.invalid>";

/// A Message-ID for a message that has none, from whatever identifies it: the same
/// inputs give the same id on every run and platform (FNV-1a, not std's hasher).
pub fn synthetic_message_id(parts: &[&str]) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for part in parts {
        for &byte in part.as_bytes().iter().chain(std::iter::once(&0xffu8)) {
            a ^= byte as u64;
            a = a.wrapping_mul(0x0000_0100_0000_01b3);
            b ^= byte as u64;
            b = b.wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5);
        }
    }
    format!("<{a:016x}{b:016x}{SYNTHETIC_SUFFIX}")
}

/// An id made by [`synthetic_message_id`].
pub fn is_synthetic_message_id(id: &str) -> bool {
    id.ends_with(SYNTHETIC_SUFFIX)
}

const REPLY_PREFIXES: &[&str] = &[
    "re", "aw", "sv", "vs", "antw", "antwort", "r", "rif", "res", "odp", "ynt", "vá", "回复",
    "回覆", "答复", "返信",
];
const FORWARD_PREFIXES: &[&str] = &[
    "fw", "fwd", "wg", "tr", "enc", "rv", "doorst", "vb", "vl", "转发", "轉寄", "転送",
];

/// The subject without reply/forward prefixes and list tags, lowercase with single
/// spaces, and whether a reply prefix was found.
pub fn normalize_subject(subject: &str) -> (String, bool) {
    let mut s: &str = subject;
    let mut is_reply = false;
    loop {
        let t = s.trim_start_matches(|c: char| c.is_whitespace());
        // A list tag: "[rust-users] ..."
        if let Some(rest) = t.strip_prefix('[') {
            if let Some(end) = rest.find(']') {
                if end <= 40 {
                    s = &rest[end + 1..];
                    continue;
                }
            }
        }
        let word_end = t
            .char_indices()
            .find(|(_, c)| !c.is_alphabetic())
            .map_or(t.len(), |(i, _)| i);
        let word = t[..word_end].to_lowercase();
        let is_re = REPLY_PREFIXES.contains(&word.as_str());
        let is_fw = FORWARD_PREFIXES.contains(&word.as_str());
        if word_end > 0 && (is_re || is_fw) {
            let mut rest = &t[word_end..];
            // "Re[2]:", "Re^2:", "Re(2):"
            for (open, close) in [("[", "]"), ("(", ")")] {
                if let Some(r) = rest.strip_prefix(open) {
                    if let Some(e) = r.find(close) {
                        if r[..e].chars().all(|c| c.is_ascii_digit()) {
                            rest = &r[e + 1..];
                        }
                    }
                }
            }
            if let Some(r) = rest.strip_prefix('^') {
                rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
            }
            let rest = rest.trim_start_matches([' ', '\u{a0}']);
            if let Some(r) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('：')) {
                is_reply |= is_re;
                s = r;
                continue;
            }
        }
        break;
    }
    (
        crate::message::squash_whitespace(s).to_lowercase(),
        is_reply,
    )
}

/// Ids borrow from the input where they are already normalized: threading a large
/// mailbox is mostly string handling, and most ids need no change.
struct Msg<'a> {
    id: Cow<'a, str>,
    synthetic: bool,
    /// Ancestors, oldest first, from References then In-Reply-To; never the message itself.
    chain: Vec<Cow<'a, str>>,
    subject: &'a str,
    date: Option<i64>,
    locations: Vec<Location>,
}

fn norm_id(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw
        .strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .unwrap_or("");
    let clean = !inner.is_empty()
        && inner
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    if clean {
        return Some(Cow::Borrowed(raw));
    }
    normalize_message_id(raw).map(Cow::Owned)
}

/// Groups messages into threads. Output order is deterministic: threads by first date,
/// then `thread_id`; messages by date, then Message-ID.
pub fn thread_messages(input: &[MessageRef]) -> Vec<Thread> {
    let msgs = merge_copies(input);
    let mut core = CoreInput::with_capacity(msgs.len());
    for m in &msgs {
        core.push(
            m.id.as_ref(),
            m.chain.iter().map(AsRef::as_ref),
            SubjectKey::of(m.subject),
            m.date,
        );
    }
    let core_threads = thread_core(&core);
    let mut threads: Vec<Thread> = core_threads
        .threads
        .iter()
        .map(|tree| {
            let messages: Vec<ThreadMessage> = core_threads
                .members_of(tree)
                .iter()
                .map(|&CoreMember { message, parent }| {
                    let m = &msgs[message as usize];
                    ThreadMessage {
                        message_id: m.id.to_string(),
                        synthetic_id: m.synthetic,
                        parent: parent.map(str::to_string),
                        date: m.date,
                        subject: m.subject.to_string(),
                        locations: m.locations.clone(),
                    }
                })
                .collect();
            Thread::of_messages(tree.root.to_string(), tree.root_missing, messages)
        })
        .collect();
    threads.sort_by(|a, b| {
        date_key(a.messages.first().and_then(|m| m.date))
            .cmp(&date_key(b.messages.first().and_then(|m| m.date)))
            .then_with(|| a.thread_id.cmp(&b.thread_id))
    });
    threads
}

/// What the threading core reads of one message, its copies already merged.
/// The id type is a `&str` for [`thread_messages`], or a hash of the id where a
/// whole mailbox is threaded and its ids should not all be held as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMessage<I> {
    pub id: I,
    chain_start: u32,
    chain_len: u32,
    pub subject: SubjectKey,
    pub date: Option<i64>,
}

/// The core's input: messages, and their ancestor chains in one flat list
/// (no allocation per message; a mailbox has tens of thousands).
#[derive(Debug, Clone, Default)]
pub struct CoreInput<I> {
    messages: Vec<CoreMessage<I>>,
    chains: Vec<I>,
}

impl<I: Copy> CoreInput<I> {
    pub fn with_capacity(messages: usize) -> CoreInput<I> {
        CoreInput {
            messages: Vec::with_capacity(messages),
            chains: Vec::with_capacity(messages * 2),
        }
    }

    /// Adds a message. `chain`: its ancestors, oldest first (References,
    /// then In-Reply-To when References do not name it), normalized, never
    /// `id` itself.
    pub fn push(
        &mut self,
        id: I,
        chain: impl IntoIterator<Item = I>,
        subject: SubjectKey,
        date: Option<i64>,
    ) {
        let start = self.chains.len();
        self.chains.extend(chain);
        let index = |n: usize| u32::try_from(n).expect("fewer than 4 billion references");
        self.messages.push(CoreMessage {
            id,
            chain_start: index(start),
            chain_len: index(self.chains.len() - start),
            subject,
            date,
        });
    }

    /// Gives back the room the reference chains were not given (they grow
    /// by doubling).
    pub fn shrink_to_fit(&mut self) {
        self.chains.shrink_to_fit();
    }

    pub fn messages(&self) -> &[CoreMessage<I>] {
        &self.messages
    }

    pub fn chain(&self, message: &CoreMessage<I>) -> &[I] {
        let start = message.chain_start as usize;
        &self.chains[start..start + message.chain_len as usize]
    }
}

impl CoreInput<u64> {
    /// Adds a stored message's threading headers, ids hashed ([`id_hash`]),
    /// by the same chain rules as [`MessageRef`]s follow.
    pub fn push_hashed(
        &mut self,
        key: &str,
        in_reply_to: Option<&str>,
        references: &[String],
        subject: &str,
        date: Option<i64>,
    ) {
        let id = norm_id(key).map_or_else(|| id_hash(key), |id| id_hash(&id));
        let irt = in_reply_to.filter(|irt| !references.iter().any(|x| x == irt));
        let chain = references
            .iter()
            .map(String::as_str)
            .chain(irt)
            .filter_map(norm_id)
            .map(|x| id_hash(&x))
            .filter(|x| *x != id);
        self.push(id, chain, SubjectKey::of(subject), date);
    }
}

/// A 64-bit hash of a normalized Message-ID ([`normalized_id`]), stable within a
/// run: what the hashed core threads by.
pub fn id_hash(normalized: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    normalized.hash(&mut hasher);
    hasher.finish()
}

/// A Message-ID as threading compares it: `<…>` with the decoration removed.
pub fn normalized_id(raw: &str) -> Option<String> {
    norm_id(raw).map(Cow::into_owned)
}

/// A subject as threading compares it: its normalized base (hashed; 0 when
/// empty) and whether it carried a reply prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubjectKey {
    base: u64,
    is_reply: bool,
}

impl SubjectKey {
    pub fn of(subject: &str) -> SubjectKey {
        let (base, is_reply) = normalize_subject(subject);
        SubjectKey {
            base: if base.is_empty() {
                0
            } else {
                id_hash(&base) | 1
            },
            is_reply,
        }
    }
}

/// A thread as the core finds it: the id at the top of its tree (a missing
/// message's when `root_missing`), and where its members are in
/// [`CoreThreads::members`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreThread<I> {
    pub root: I,
    pub root_missing: bool,
    start: u32,
    len: u32,
}

/// A member of a [`CoreThread`]: the message's index in the core's input,
/// and the id of its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreMember<I> {
    pub message: u32,
    pub parent: Option<I>,
}

/// What the core finds, flat: no allocation per thread, so threading a
/// whole mailbox leaves no scattered small blocks behind (they kept the
/// process's memory high long after they were freed).
#[derive(Debug, Clone, Default)]
pub struct CoreThreads<I> {
    pub threads: Vec<CoreThread<I>>,
    members: Vec<CoreMember<I>>,
}

impl<I> CoreThreads<I> {
    pub fn members_of(&self, thread: &CoreThread<I>) -> &[CoreMember<I>] {
        &self.members[thread.start as usize..(thread.start + thread.len) as usize]
    }
}

/// No heap per container (a mailbox has one per message and per missing
/// ancestor): children are a list threaded through `first_child` and
/// `next_sibling`, `NO_CONTAINER` ending it.
struct Container<I> {
    id: I,
    /// The message's index in the input; `NO_CONTAINER` for a missing one.
    msg: u32,
    parent: u32,
    first_child: u32,
    next_sibling: u32,
}

const NO_CONTAINER: u32 = u32::MAX;

fn index_u32(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 4 billion messages and ids")
}

impl<I> Container<I> {
    fn new(id: I, msg: Option<usize>) -> Container<I> {
        Container {
            id,
            msg: msg.map_or(NO_CONTAINER, index_u32),
            parent: NO_CONTAINER,
            first_child: NO_CONTAINER,
            next_sibling: NO_CONTAINER,
        }
    }

    fn msg(&self) -> Option<usize> {
        (self.msg != NO_CONTAINER).then_some(self.msg as usize)
    }

    fn parent(&self) -> Option<usize> {
        (self.parent != NO_CONTAINER).then_some(self.parent as usize)
    }
}

/// JWZ over a [`CoreInput`] (see the module docs for the rules); threads in
/// no particular order. Ties in date are broken by id, so the order of the
/// input does not matter.
pub fn thread_core<I: Copy + Ord + std::hash::Hash>(input: &CoreInput<I>) -> CoreThreads<I> {
    let msgs = input.messages();
    // Containers for real messages first, in processing order, so indices are stable.
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| {
        date_key(msgs[a].date)
            .cmp(&date_key(msgs[b].date))
            .then_with(|| msgs[a].id.cmp(&msgs[b].id))
    });
    // Missing ancestors add a few percent to the messages in real mail.
    let capacity = msgs.len() + msgs.len() / 4;
    let mut containers: Vec<Container<I>> = Vec::with_capacity(capacity);
    let mut index: HashMap<I, u32> = HashMap::with_capacity(capacity);
    for &m in &order {
        index.insert(msgs[m].id, index_u32(containers.len()));
        containers.push(Container::new(msgs[m].id, Some(m)));
    }

    for &m in &order {
        let mut prev: Option<usize> = None;
        for &r in input.chain(&msgs[m]) {
            let c = match index.get(&r) {
                Some(&c) => c as usize,
                None => {
                    let c = containers.len();
                    containers.push(Container::new(r, None));
                    index.insert(r, index_u32(c));
                    c
                }
            };
            // Another message's References only place messages we do not have.
            if let Some(p) = prev {
                if containers[c].msg().is_none()
                    && containers[c].parent().is_none()
                    && can_link(&containers, p, c)
                {
                    link(&mut containers, p, c);
                }
            }
            prev = Some(c);
        }
        if let Some(p) = prev {
            let own = index[&msgs[m].id] as usize;
            if containers[own].parent().is_none() && can_link(&containers, p, own) {
                link(&mut containers, p, own);
            }
        }
    }
    drop(index);

    // Trees: each container with a message knows its tree, and each tree its
    // dates, size and earliest message (which names it when its root is missing).
    struct Tree {
        root: u32,
        first: Option<i64>,
        last: Option<i64>,
        earliest: u32,
        size: u32,
        /// The tree it joined by subject; `NO_CONTAINER` for none.
        merged_into: u32,
        /// The previous tree left standing with the same subject.
        previous_same_subject: u32,
    }
    let mut tree_of: Vec<u32> = vec![NO_CONTAINER; containers.len()];
    let mut trees: Vec<Tree> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    for root in 0..containers.len() {
        if containers[root].parent().is_some() {
            continue;
        }
        let mut tree = Tree {
            root: index_u32(root),
            first: None,
            last: None,
            earliest: NO_CONTAINER,
            size: 0,
            merged_into: NO_CONTAINER,
            previous_same_subject: NO_CONTAINER,
        };
        stack.push(root);
        while let Some(c) = stack.pop() {
            if let Some(m) = containers[c].msg() {
                tree_of[c] = index_u32(trees.len());
                tree.size += 1;
                let date = msgs[m].date;
                tree.first = min_opt(tree.first, date);
                tree.last = max_opt(tree.last, date);
                let earlier = tree.earliest == NO_CONTAINER || {
                    let e = &msgs[tree.earliest as usize];
                    (date_key(date), &msgs[m].id) < (date_key(e.date), &e.id)
                };
                if earlier {
                    tree.earliest = index_u32(m);
                }
            }
            let mut child = containers[c].first_child;
            while child != NO_CONTAINER {
                stack.push(child as usize);
                child = containers[child as usize].next_sibling;
            }
        }
        if tree.size > 0 {
            trees.push(tree);
        }
    }

    // Reference-less replies join a recent thread with the same subject.
    let mut tree_order: Vec<u32> = (0..index_u32(trees.len())).collect();
    tree_order.sort_by(|&a, &b| {
        let (a, b) = (&trees[a as usize], &trees[b as usize]);
        date_key(a.first).cmp(&date_key(b.first)).then_with(|| {
            containers[a.root as usize]
                .id
                .cmp(&containers[b.root as usize].id)
        })
    });
    let mut latest_by_subject: HashMap<u64, u32> = HashMap::new();
    let mut extra_parent: HashMap<usize, usize> = HashMap::new(); // root container → container
    for &t in &tree_order {
        let t = t as usize;
        let root = trees[t].root as usize;
        let root_msg = containers[root].msg().map(|m| &msgs[m]);
        // A thread whose root is missing is known by its earliest message's subject.
        let subject = root_msg.map_or(msgs[trees[t].earliest as usize].subject, |m| m.subject);
        if subject.base == 0 {
            continue;
        }
        let attachable =
            subject.is_reply && root_msg.is_some_and(|m| m.chain_len == 0 && m.date.is_some());
        if attachable {
            let date = root_msg.and_then(|m| m.date).unwrap_or(0);
            let latest_first =
                std::iter::successors(latest_by_subject.get(&subject.base).copied(), |&s| {
                    Some(trees[s as usize].previous_same_subject).filter(|&p| p != NO_CONTAINER)
                });
            let best = latest_first
                .take(SUBJECT_CANDIDATES)
                .filter_map(|s| {
                    let candidate = &trees[s as usize];
                    let (first, last) = (candidate.first?, candidate.last?);
                    let distance = if date < first {
                        if first - date > SKEW_SECS {
                            return None;
                        }
                        first - date
                    } else {
                        (date - last).max(0)
                    };
                    (distance <= SUBJECT_WINDOW_SECS).then_some((distance, s as usize))
                })
                .min_by_key(|&(d, _)| d)
                .map(|(_, s)| s);
            if let Some(s) = best {
                trees[t].merged_into = index_u32(s);
                extra_parent.insert(root, trees[s].root as usize);
                let (f, l) = (trees[t].first, trees[t].last);
                let target = &mut trees[s];
                target.first = min_opt(target.first, f);
                target.last = max_opt(target.last, l);
                continue;
            }
        }
        trees[t].previous_same_subject = latest_by_subject
            .insert(subject.base, index_u32(t))
            .unwrap_or(NO_CONTAINER);
    }

    // Threading a whole mailbox peaks here: what is no longer needed goes
    // before the output is allocated.
    drop(tree_order);
    drop(latest_by_subject);

    // Output: the trees left standing, in tree order, each with its members
    // and those of the trees that joined it (a tree joins one left standing).
    let mut output_of: Vec<u32> = vec![NO_CONTAINER; trees.len()];
    let mut threads: Vec<CoreThread<I>> = Vec::new();
    for (t, tree) in trees.iter().enumerate() {
        if tree.merged_into == NO_CONTAINER {
            output_of[t] = index_u32(threads.len());
            let root = &containers[tree.root as usize];
            threads.push(CoreThread {
                root: root.id,
                root_missing: root.msg().is_none(),
                start: 0,
                len: 0,
            });
        }
    }
    for (t, tree) in trees.iter().enumerate() {
        if tree.merged_into != NO_CONTAINER {
            output_of[t] = output_of[tree.merged_into as usize];
        }
        threads[output_of[t] as usize].len += tree.size;
    }
    drop(trees);
    let mut next = 0;
    for thread in &mut threads {
        thread.start = next;
        next += thread.len;
    }
    let mut filled: Vec<u32> = threads.iter().map(|thread| thread.start).collect();
    let mut members = vec![
        CoreMember {
            message: 0,
            parent: None
        };
        next as usize
    ];
    for (c, container) in containers.iter().enumerate() {
        let Some(m) = container.msg() else {
            continue;
        };
        let output = output_of[tree_of[c] as usize] as usize;
        let parent = container
            .parent()
            .or_else(|| extra_parent.get(&c).copied())
            .map(|p| containers[p].id);
        members[filled[output] as usize] = CoreMember {
            message: index_u32(m),
            parent,
        };
        filled[output] += 1;
    }
    CoreThreads { threads, members }
}

/// Undated messages sort last.
fn date_key(d: Option<i64>) -> (bool, i64) {
    (d.is_none(), d.unwrap_or(0))
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// One entry per Message-ID; copies add locations. The copy with the longest ancestry
/// wins (a Sent copy may lack headers the delivered copy has).
fn merge_copies(input: &[MessageRef]) -> Vec<Msg<'_>> {
    let mut sorted: Vec<&MessageRef> = input.iter().collect();
    sorted.sort_by(|a, b| a.folder.cmp(&b.folder).then(a.uid.cmp(&b.uid)));
    let mut msgs: Vec<Msg> = Vec::with_capacity(input.len());
    let mut by_id: HashMap<Cow<'_, str>, usize> = HashMap::with_capacity(input.len());
    for r in sorted {
        let (id, synthetic) = match r.message_id.as_deref().and_then(norm_id) {
            // A stable id made by `ParsedMessage::stable_id` is synthetic too.
            Some(id) => {
                let synthetic = is_synthetic_message_id(&id);
                (id, synthetic)
            }
            None => (
                Cow::Owned(synthetic_message_id(&[
                    "folder-uid",
                    &r.folder,
                    &r.uid.to_string(),
                ])),
                true,
            ),
        };
        // In-Reply-To counts where References do not already name it (JWZ trusts the
        // last reference). Repeated ids need no filtering: linking one again is refused
        // as a loop.
        let irt = r
            .in_reply_to
            .as_deref()
            .filter(|irt| !r.references.iter().any(|x| x == irt));
        let chain: Vec<Cow<'_, str>> = r
            .references
            .iter()
            .map(String::as_str)
            .chain(irt)
            .filter_map(norm_id)
            .filter(|x| *x != id)
            .collect();
        let location = Location {
            folder: r.folder.clone(),
            uid: r.uid,
        };
        match by_id.get(&id) {
            Some(&i) => {
                let m = &mut msgs[i];
                if !m.locations.contains(&location) {
                    m.locations.push(location);
                    m.locations.sort();
                }
                if chain.len() > m.chain.len() {
                    m.chain = chain;
                }
                if m.date.is_none() {
                    m.date = r.date;
                }
                if m.subject.is_empty() {
                    m.subject = &r.subject;
                }
            }
            None => {
                by_id.insert(id.clone(), msgs.len());
                msgs.push(Msg {
                    id,
                    synthetic,
                    chain,
                    subject: &r.subject,
                    date: r.date,
                    locations: vec![location],
                });
            }
        }
    }
    msgs
}

/// Linking `child` under `parent` must not close a loop: `child` may not be `parent` or
/// one of its ancestors. A container without children is no one's ancestor, which
/// spares the walk in the common case.
fn can_link<I>(containers: &[Container<I>], parent: usize, child: usize) -> bool {
    if parent == child {
        return false;
    }
    if containers[child].first_child == NO_CONTAINER {
        return true;
    }
    let mut p = Some(parent);
    while let Some(x) = p {
        if x == child {
            return false;
        }
        p = containers[x].parent();
    }
    true
}

fn link<I>(containers: &mut [Container<I>], parent: usize, child: usize) {
    containers[child].parent = index_u32(parent);
    containers[child].next_sibling = containers[parent].first_child;
    containers[parent].first_child = index_u32(child);
}

#[cfg(test)]
#[path = "thread_tests.rs"]
mod tests;
