//! The IMAP side of sync: folder status, new UIDs, and batched fetches of
//! just what notes need.
//!
//! Fetching runs in two passes over UID ranges, never one command per
//! message: first `RFC822.SIZE BODYSTRUCTURE INTERNALDATE` for a batch, then
//! the content. A batch's content FETCHes are pipelined, and the next
//! batch's first pass goes out behind them, so the server never waits a
//! round trip between commands. Of the header, only the fields a note is
//! made from are fetched ([`NOTE_HEADER_FIELDS`]), never the signatures and
//! relay stamps around them. A single-part message comes whole (those fields and its
//! `TEXT`: it is its text). A multipart one comes as those fields plus the
//! text parts a note reads (the plain alternative, not the HTML copy of it),
//! with attachments listed from BODYSTRUCTURE (size) and their MIME headers
//! (name, type): an attachment is never downloaded. The notes are the same
//! either way; the parts plan moves less and parses less. Every fetch uses
//! `PEEK`, so syncing never marks mail as read.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{mpsc, Arc, Mutex};

use async_imap::imap_proto::{
    AttributeValue, BodyContentSinglePart, BodyStructure, ContentEncoding, MailboxDatum,
    MessageSection, Response, SectionPath, StatusAttribute,
};

use crate::imap::{quote, ImapError, ImapSession, Step};
use crate::message::{self, Attachment, ParsedMessage, TextPart};

/// What STATUS says about a folder: enough to know whether to fetch at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FolderStatus {
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    pub messages: u32,
    pub highest_modseq: Option<u64>,
}

/// `1:3,7,9:12` for sorted UIDs: one short command line per batch.
pub fn uid_set(uids: &[u32]) -> String {
    let mut set = String::new();
    let mut index = 0;
    while index < uids.len() {
        let start = uids[index];
        let mut end = start;
        while index + 1 < uids.len() && uids[index + 1] == end + 1 {
            index += 1;
            end = uids[index];
        }
        if !set.is_empty() {
            set.push(',');
        }
        if start == end {
            set.push_str(&start.to_string());
        } else {
            set.push_str(&format!("{start}:{end}"));
        }
        index += 1;
    }
    set
}

/// `STATUS folder (UIDVALIDITY UIDNEXT MESSAGES [HIGHESTMODSEQ])`: one round
/// trip that tells a no-change sync it has nothing to do, without SELECT.
pub async fn folder_status(
    session: &mut ImapSession,
    folder: &str,
) -> Result<FolderStatus, ImapError> {
    let condstore = session.capabilities().has("CONDSTORE");
    let command = format!(
        "STATUS {} (UIDVALIDITY UIDNEXT MESSAGES{})",
        quote(folder),
        if condstore { " HIGHESTMODSEQ" } else { "" }
    );
    let mut status = FolderStatus::default();
    session
        .command(Step::Command("STATUS"), &command, |response| {
            if let Response::MailboxData(MailboxDatum::Status { status: items, .. }) = response {
                for item in items {
                    match item {
                        StatusAttribute::UidValidity(v) => status.uidvalidity = *v,
                        StatusAttribute::UidNext(v) => status.uidnext = Some(*v),
                        StatusAttribute::Messages(v) => status.messages = *v,
                        StatusAttribute::HighestModSeq(v) => status.highest_modseq = Some(*v),
                        _ => {}
                    }
                }
            }
        })
        .await?;
    Ok(status)
}

/// `EXAMINE`: read-only, so nothing the sync does can change the folder.
/// Returns the UIDVALIDITY the server reports for this selection.
pub async fn examine(session: &mut ImapSession, folder: &str) -> Result<u32, ImapError> {
    session.select_folder(folder, true).await
}

/// UIDs above `after`, optionally only messages since a date (`1-Jan-2025`).
/// Never `RETURN (...)`: async-imap cannot parse ESEARCH replies.
pub async fn new_uids(
    session: &mut ImapSession,
    after: u32,
    since: Option<&str>,
) -> Result<Vec<u32>, ImapError> {
    let mut command = format!("UID SEARCH UID {}:*", after.saturating_add(1));
    if let Some(date) = since {
        command.push_str(&format!(" SINCE {date}"));
    }
    let mut uids = Vec::new();
    session
        .command(Step::Command("UID SEARCH"), &command, |response| {
            if let Response::MailboxData(MailboxDatum::Search(found)) = response {
                uids.extend_from_slice(found);
            }
        })
        .await?;
    // `n:*` always matches the highest UID, even when it is below n.
    uids.retain(|uid| *uid > after);
    uids.sort_unstable();
    uids.dedup();
    Ok(uids)
}

/// What the first pass learns about one message, and how to fetch its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePlan {
    pub uid: u32,
    pub size: u32,
    pub internal_date: Option<String>,
    pub content: ContentPlan,
    /// Why the message is fetched otherwise than its structure asks: for
    /// the sync summary's problems, not for the note (the note is the same).
    pub problem: Option<&'static str>,
}

impl MessagePlan {
    /// A message whose structure is not known, fetched whole (for
    /// `problem`, when it is one of the message's).
    pub fn whole(uid: u32, problem: Option<&'static str>) -> MessagePlan {
        MessagePlan {
            uid,
            size: 0,
            internal_date: None,
            content: ContentPlan::Whole,
            problem,
        }
    }
}

/// The problem of a message planned without its BODYSTRUCTURE.
pub const STRUCTURE_UNPARSABLE: &str =
    "the server's BODYSTRUCTURE could not be parsed; fetched whole";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentPlan {
    /// Fetch the note's header fields and `BODY.PEEK[TEXT]`.
    Whole,
    /// Fetch the header, the listed text parts (body and MIME header each),
    /// and only the MIME headers of the attachment parts.
    Parts {
        text_parts: Vec<String>,
        attachment_parts: Vec<AttachmentPart>,
    },
}

/// An attachment as BODYSTRUCTURE describes it: its section and decoded size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AttachmentPart {
    pub section: String,
    pub size: usize,
}

/// A FETCH cut short by an error, with the UIDs it asked for that got no
/// answer, the likeliest culprit first: servers answer in UID order, so of
/// the command that failed, the first UID unanswered is the one whose
/// response broke it.
#[derive(Debug)]
pub struct Interrupted {
    pub error: ImapError,
    pub unanswered: Vec<u32>,
}

/// First pass: size, structure and arrival date of each message in `uids`
/// (sorted), and, if the FETCH failed part way, how (the plans are of the
/// messages answered before it).
pub async fn plan_batch(
    session: &mut ImapSession,
    uids: &[u32],
) -> (Vec<MessagePlan>, Result<(), Interrupted>) {
    let command = structure_command_line(uids);
    let mut plans = Vec::with_capacity(uids.len());
    let result = session
        .command(Step::Command("UID FETCH"), &command, |response| {
            if let Some(plan) = plan_of(response, uids) {
                plans.push(plan);
            }
        })
        .await;
    plans.sort_by_key(|plan| plan.uid);
    plans.dedup_by_key(|plan| plan.uid);
    let result = result.map(drop).map_err(|error| Interrupted {
        error,
        unanswered: uids
            .iter()
            .filter(|uid| plans.binary_search_by_key(*uid, |p| p.uid).is_err())
            .copied()
            .collect(),
    });
    (plans, result)
}

/// The first pass's `UID FETCH` line for `uids` (sorted).
fn structure_command_line(uids: &[u32]) -> String {
    format!(
        "UID FETCH {} (UID RFC822.SIZE INTERNALDATE BODYSTRUCTURE)",
        uid_set(uids)
    )
}

/// The plan of a message of `uids` (sorted) from its first-pass answer;
/// `None` for any other response.
fn plan_of(response: &Response<'_>, uids: &[u32]) -> Option<MessagePlan> {
    let Response::Fetch(_, attributes) = response else {
        return None;
    };
    let mut uid = None;
    let mut size = None;
    let mut internal_date = None;
    let mut structure = None;
    for attribute in attributes {
        match attribute {
            AttributeValue::Uid(v) => uid = Some(*v),
            AttributeValue::Rfc822Size(v) => size = Some(*v),
            AttributeValue::InternalDate(date) => internal_date = Some(date.to_string()),
            AttributeValue::BodyStructure(bs) => structure = Some(bs),
            _ => {}
        }
    }
    // Without a size it is no answer but an unsolicited FETCH (a flag
    // changed meanwhile).
    let (Some(uid), Some(size)) = (uid, size) else {
        return None;
    };
    uids.binary_search(&uid).ok()?;
    // imap-proto reads a BODYSTRUCTURE it cannot parse but whose
    // parentheses do not nest as an unknown item: no structure.
    let (content, problem) = match structure {
        Some(structure) => (plan_parts(structure), None),
        None => (ContentPlan::Whole, Some(STRUCTURE_UNPARSABLE)),
    };
    Some(MessagePlan {
        uid,
        size,
        internal_date,
        content,
        problem,
    })
}

/// Picks the parts a note needs from a BODYSTRUCTURE: the readable text
/// (text/plain preferred within an alternative) and the attachments to list.
pub fn plan_parts(structure: &BodyStructure<'_>) -> ContentPlan {
    let mut text_parts = Vec::new();
    let mut attachment_parts = Vec::new();
    match structure {
        BodyStructure::Multipart { .. } => walk(
            structure,
            &mut Vec::new(),
            &mut text_parts,
            &mut attachment_parts,
        ),
        // A large single-part message is one big text or one big blob;
        // either way the whole of it is what there is.
        _ => return ContentPlan::Whole,
    }
    if text_parts.is_empty() && attachment_parts.is_empty() {
        return ContentPlan::Whole;
    }
    ContentPlan::Parts {
        text_parts,
        attachment_parts,
    }
}

fn walk(
    structure: &BodyStructure<'_>,
    path: &mut Vec<u32>,
    text: &mut Vec<String>,
    attachments: &mut Vec<AttachmentPart>,
) {
    let section = || {
        path.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(".")
    };
    match structure {
        BodyStructure::Multipart { common, bodies, .. } => {
            let alternative = common.ty.subtype.eq_ignore_ascii_case("alternative");
            if alternative {
                // The plain part if there is one, else the last (richest).
                let chosen = bodies
                    .iter()
                    .position(|b| is_text(b, "plain"))
                    .or_else(|| bodies.iter().position(|b| is_text(b, "html")))
                    .unwrap_or(bodies.len().saturating_sub(1));
                if let Some(body) = bodies.get(chosen) {
                    path.push(chosen as u32 + 1);
                    walk(body, path, text, attachments);
                    path.pop();
                }
            } else {
                for (index, body) in bodies.iter().enumerate() {
                    path.push(index as u32 + 1);
                    walk(body, path, text, attachments);
                    path.pop();
                }
            }
        }
        BodyStructure::Text { common, other, .. } => {
            let is_attachment = common
                .disposition
                .as_ref()
                .is_some_and(|d| d.ty.eq_ignore_ascii_case("attachment"));
            let readable = common.ty.subtype.eq_ignore_ascii_case("plain")
                || common.ty.subtype.eq_ignore_ascii_case("html");
            if readable && !is_attachment {
                text.push(section());
            } else {
                attachments.push(AttachmentPart {
                    section: section(),
                    size: decoded_size(other),
                });
            }
        }
        BodyStructure::Basic { other, .. } | BodyStructure::Message { other, .. } => {
            attachments.push(AttachmentPart {
                section: section(),
                size: decoded_size(other),
            });
        }
    }
}

/// A part's size once its transfer encoding is undone, from its encoded size:
/// base64 carries 57 bytes in each 78-byte line (76 characters and CRLF).
fn decoded_size(fields: &BodyContentSinglePart<'_>) -> usize {
    let octets = fields.octets as usize;
    match fields.transfer_encoding {
        ContentEncoding::Base64 => octets / 78 * 57 + (octets % 78).saturating_sub(2) * 3 / 4,
        _ => octets,
    }
}

fn is_text(structure: &BodyStructure<'_>, subtype: &str) -> bool {
    match structure {
        BodyStructure::Text { common, .. } => common.ty.subtype.eq_ignore_ascii_case(subtype),
        BodyStructure::Multipart { bodies, .. } => bodies.iter().any(|b| is_text(b, subtype)),
        _ => false,
    }
}

/// A fetched message: parsed, or why not.
pub struct Fetched {
    pub uid: u32,
    pub internal_date: Option<String>,
    pub parsed: Result<ParsedMessage, String>,
    /// The plan's [`MessagePlan::problem`].
    pub problem: Option<&'static str>,
}

/// Parses whole messages on worker threads while the connection keeps
/// reading: parsing is the sync's largest CPU cost and the IMAP stream (TLS,
/// and the server) the other, so on two cores they overlap. The job queue is
/// bounded, so raw messages waiting for a parser stay few.
struct ParsePool {
    jobs: Option<mpsc::SyncSender<Vec<(u32, Job)>>>,
    results: mpsc::Receiver<Vec<(u32, Result<ParsedMessage, String>)>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Messages gathered for the next hand-over.
    gathering: Vec<(u32, Job)>,
    /// Every UID submitted, so none can go missing unreported.
    submitted: Vec<u32>,
    gathered_bytes: usize,
}

/// Messages handed to a parser thread at once: one wake-up per message had
/// cost a context switch each (about 10,000 for 10,000 messages).
const PARSE_GROUP: usize = 16;
/// ... or fewer, when they are this big, so large mail does not pile up.
const PARSE_GROUP_BYTES: usize = 1 << 20;

impl ParsePool {
    fn new() -> ParsePool {
        let (jobs, job_queue) = mpsc::sync_channel::<Vec<(u32, Job)>>(4);
        let (done, results) = mpsc::channel();
        let job_queue = Arc::new(Mutex::new(job_queue));
        let count = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 4);
        let workers = (0..count)
            .map(|_| {
                let job_queue = Arc::clone(&job_queue);
                let done = done.clone();
                std::thread::spawn(move || loop {
                    let group = job_queue.lock().map(|queue| queue.recv());
                    let Ok(Ok(group)) = group else { return };
                    let parsed = group
                        .into_iter()
                        .map(|(uid, job)| {
                            let parsed = std::panic::catch_unwind(|| job.parse())
                                .map_err(|_| "the parser failed on it (panic)".to_string())
                                .and_then(|parsed| parsed);
                            (uid, parsed)
                        })
                        .collect();
                    if done.send(parsed).is_err() {
                        return;
                    }
                })
            })
            .collect();
        ParsePool {
            jobs: Some(jobs),
            results,
            workers,
            gathering: Vec::with_capacity(PARSE_GROUP),
            gathered_bytes: 0,
            submitted: Vec::new(),
        }
    }

    fn submit(&mut self, uid: u32, job: Job) {
        self.gathered_bytes += job.len();
        self.submitted.push(uid);
        self.gathering.push((uid, job));
        if self.gathering.len() >= PARSE_GROUP || self.gathered_bytes >= PARSE_GROUP_BYTES {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        let group = std::mem::replace(&mut self.gathering, Vec::with_capacity(PARSE_GROUP));
        self.gathered_bytes = 0;
        if let Some(jobs) = &self.jobs {
            // Only fails when every worker has gone; `finish` reports the
            // messages that were never parsed.
            let _ = jobs.send(group);
        }
    }

    /// Every submitted message, parsed (or why not).
    fn finish(mut self) -> Vec<(u32, Result<ParsedMessage, String>)> {
        if !self.gathering.is_empty() {
            self.hand_over();
        }
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        let mut parsed: Vec<_> = self.results.try_iter().flatten().collect();
        if parsed.len() < self.submitted.len() {
            let done: std::collections::HashSet<u32> = parsed.iter().map(|(uid, _)| *uid).collect();
            for uid in &self.submitted {
                if !done.contains(uid) {
                    parsed.push((*uid, Err("the parser thread stopped before it".to_string())));
                }
            }
        }
        parsed
    }
}

/// A fetched message's bytes, owned, for a parser thread.
enum Job {
    Whole(Vec<u8>),
    Parts {
        header: Vec<u8>,
        /// (MIME header, transfer-encoded body) of each text part.
        texts: Vec<(Vec<u8>, Vec<u8>)>,
        /// (MIME header, decoded size) of each attachment.
        attachments: Vec<(Vec<u8>, usize)>,
    },
}

impl Job {
    /// Bytes held.
    fn len(&self) -> usize {
        match self {
            Job::Whole(raw) => raw.len(),
            Job::Parts {
                header,
                texts,
                attachments,
            } => {
                header.len()
                    + texts.iter().map(|(m, b)| m.len() + b.len()).sum::<usize>()
                    + attachments.iter().map(|(m, _)| m.len()).sum::<usize>()
            }
        }
    }

    fn parse(&self) -> Result<ParsedMessage, String> {
        match self {
            Job::Whole(raw) => message::parse_message_to_store(raw).map_err(|err| err.to_string()),
            Job::Parts {
                header,
                texts,
                attachments,
            } => {
                let parts: Vec<TextPart> = texts
                    .iter()
                    .map(|(mime_header, body)| TextPart { mime_header, body })
                    .collect();
                let mut parsed = message::parse_header_and_parts_to_store(header, &parts)
                    .map_err(|err| err.to_string())?;
                for (mime, size) in attachments {
                    parsed
                        .attachments
                        .push(attachment_from_mime_header(mime, *size));
                }
                Ok(parsed)
            }
        }
    }
}

/// The header fields a note is made from ([`message::parse_message`] reads
/// no others): the ids that thread it, the addresses, subject and date (the
/// first `Received` when the date is missing), the list and automation
/// marks, and the MIME fields that say how a whole-fetched body is encoded.
/// Asking for these instead of the whole header leaves out what is often
/// most of it: DKIM and ARC signatures, authentication results, relay
/// stamps of mail servers' own (in the bench's corpus, half of 1.6 KB).
const NOTE_HEADER_FIELDS: &str = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID IN-REPLY-TO REFERENCES \
     SUBJECT FROM TO CC REPLY-TO DATE RECEIVED LIST-ID LIST-UNSUBSCRIBE PRECEDENCE \
     AUTO-SUBMITTED MIME-VERSION CONTENT-TYPE CONTENT-TRANSFER-ENCODING CONTENT-DISPOSITION \
     CONTENT-ID CONTENT-DESCRIPTION CONTENT-LANGUAGE CONTENT-LOCATION)]";

/// Why a message fetched whole has no content.
const NO_BODY: &str = "the server sent no body";

/// A message fetched whole from its two answers, the header fields and the
/// text ([`message::entity`]; NIL counts as empty). `None` when the server
/// sent NIL for both.
fn whole_message(header: Option<&[u8]>, text: Option<&[u8]>) -> Option<Vec<u8>> {
    if header.is_none() && text.is_none() {
        return None;
    }
    Some(message::entity(
        header.unwrap_or_default(),
        text.unwrap_or_default(),
    ))
}

/// One FETCH response's share of the answer for a message fetched whole.
struct WholeAnswer<'a> {
    uid: u32,
    /// Each section, if this response has it (`Some(None)`: sent as NIL).
    header: Option<Option<&'a [u8]>>,
    text: Option<Option<&'a [u8]>>,
    internal_date: Option<String>,
}

impl<'a> WholeAnswer<'a> {
    /// `None` for a response with neither section (flags changing
    /// meanwhile): no answer.
    fn of(attributes: &'a [AttributeValue<'_>]) -> Option<WholeAnswer<'a>> {
        let (mut uid, mut header, mut text, mut internal_date) = (None, None, None, None);
        for attribute in attributes {
            match attribute {
                AttributeValue::Uid(v) => uid = Some(*v),
                AttributeValue::BodySection {
                    section: Some(SectionPath::Full(MessageSection::Header)),
                    data,
                    ..
                } => header = Some(data.as_deref()),
                AttributeValue::BodySection {
                    section: Some(SectionPath::Full(MessageSection::Text)),
                    data,
                    ..
                } => text = Some(data.as_deref()),
                AttributeValue::InternalDate(date) => internal_date = Some(date.to_string()),
                _ => {}
            }
        }
        (header.is_some() || text.is_some()).then_some(WholeAnswer {
            uid: uid?,
            header,
            text,
            internal_date,
        })
    }
}

/// A section of a message fetched whole, as sent (`None`: NIL).
type Section = Option<Vec<u8>>;

/// Whole messages put together from their two sections, which a server may
/// send in separate responses.
#[derive(Default)]
struct WholeSections {
    /// The sections of messages whose other section is still to come.
    waiting: BTreeMap<u32, (Option<Section>, Option<Section>)>,
}

impl WholeSections {
    /// The message, once both its sections are in (`Some(None)`: the server
    /// sent NIL for both).
    fn add(&mut self, answer: &WholeAnswer<'_>) -> Option<Option<Vec<u8>>> {
        if let (Some(header), Some(text), false) = (
            answer.header,
            answer.text,
            self.waiting.contains_key(&answer.uid),
        ) {
            // The usual case: both in one response, nothing kept.
            return Some(whole_message(header, text));
        }
        let got = self.waiting.entry(answer.uid).or_default();
        if let Some(header) = answer.header {
            got.0 = Some(header.map(<[u8]>::to_vec));
        }
        if let Some(text) = answer.text {
            got.1 = Some(text.map(<[u8]>::to_vec));
        }
        let (Some(header), Some(text)) = (&got.0, &got.1) else {
            return None;
        };
        let message = whole_message(header.as_deref(), text.as_deref());
        self.waiting.remove(&answer.uid);
        Some(message)
    }

    /// The messages one of whose sections never came, as if sent NIL.
    fn rest(self) -> impl Iterator<Item = (u32, Option<Vec<u8>>)> {
        self.waiting.into_iter().map(|(uid, (header, text))| {
            let message = whole_message(header.flatten().as_deref(), text.flatten().as_deref());
            (uid, message)
        })
    }
}

/// A message fetched whole, to the parsers; or, with no content, why not.
fn hand_over(
    pool: &mut ParsePool,
    failed: &mut Vec<(u32, String)>,
    uid: u32,
    message: Option<Vec<u8>>,
) {
    match message {
        Some(raw) => pool.submit(uid, Job::Whole(raw)),
        None => failed.push((uid, NO_BODY.to_string())),
    }
}

/// What one content FETCH asks for each of its messages.
enum Items {
    Whole,
    Parts {
        text_parts: Vec<String>,
        attachment_parts: Vec<String>,
    },
}

/// The content FETCHes for `plans`: whole messages 500 at a time, then
/// those fetched in parts grouped by identical section lists (so each group
/// is one command), 100 at a time.
fn content_commands(plans: &[&MessagePlan]) -> Vec<(Vec<u32>, Items)> {
    let whole: Vec<u32> = plans
        .iter()
        .filter(|p| p.content == ContentPlan::Whole)
        .map(|p| p.uid)
        .collect();
    let mut commands: Vec<(Vec<u32>, Items)> = whole
        .chunks(500)
        .map(|chunk| (chunk.to_vec(), Items::Whole))
        .collect();
    let mut groups: BTreeMap<(Vec<String>, Vec<String>), Vec<u32>> = BTreeMap::new();
    for plan in plans {
        if let ContentPlan::Parts {
            text_parts,
            attachment_parts,
        } = &plan.content
        {
            let sections = attachment_parts.iter().map(|a| a.section.clone()).collect();
            groups
                .entry((text_parts.clone(), sections))
                .or_default()
                .push(plan.uid);
        }
    }
    for ((text_parts, attachment_parts), uids) in groups {
        for chunk in uids.chunks(100) {
            let items = Items::Parts {
                text_parts: text_parts.clone(),
                attachment_parts: attachment_parts.clone(),
            };
            commands.push((chunk.to_vec(), items));
        }
    }
    commands
}

/// The `UID FETCH` line of one content command.
fn content_command_line(
    uids: &[u32],
    items: &Items,
    internal_dates: &BTreeMap<u32, Option<String>>,
) -> String {
    match items {
        Items::Whole => {
            // A message planned without its first-pass answer has no
            // arrival date yet.
            let dated = uids.iter().all(|uid| internal_dates[uid].is_some());
            format!(
                "UID FETCH {} (UID{} {NOTE_HEADER_FIELDS} BODY.PEEK[TEXT])",
                uid_set(uids),
                if dated { "" } else { " INTERNALDATE" }
            )
        }
        Items::Parts {
            text_parts,
            attachment_parts,
        } => {
            let mut items = vec!["UID".to_string(), NOTE_HEADER_FIELDS.to_string()];
            for part in text_parts {
                items.push(format!("BODY.PEEK[{part}.MIME]"));
                items.push(format!("BODY.PEEK[{part}]"));
            }
            for part in attachment_parts {
                items.push(format!("BODY.PEEK[{part}.MIME]"));
            }
            format!("UID FETCH {} ({})", uid_set(uids), items.join(" "))
        }
    }
}

/// Second pass: the content of every planned message, parsed as it streams
/// in so only parsed messages, not raw bytes, are held for the batch; and,
/// if a FETCH failed, how (the messages are those answered before it).
///
/// With `look_ahead`, the first pass of the next batch (those UIDs,
/// sorted) goes out in the same pipeline, after the content: the server
/// answers it while this batch's last messages are parsed, instead of
/// after a round trip at the start of the next batch.
pub async fn fetch_batch(
    session: &mut ImapSession,
    plans: &[&MessagePlan],
    look_ahead: Option<&[u32]>,
) -> FetchedBatch {
    let mut internal_dates: BTreeMap<u32, Option<String>> = plans
        .iter()
        .map(|p| (p.uid, p.internal_date.clone()))
        .collect();
    let sizes: BTreeMap<u32, Vec<usize>> = plans
        .iter()
        .filter_map(|plan| match &plan.content {
            ContentPlan::Parts {
                attachment_parts, ..
            } => Some((plan.uid, attachment_parts.iter().map(|a| a.size).collect())),
            ContentPlan::Whole => None,
        })
        .collect();
    let commands = content_commands(plans);
    let mut lines: Vec<String> = commands
        .iter()
        .map(|(uids, items)| content_command_line(uids, items, &internal_dates))
        .collect();
    if let Some(next) = look_ahead {
        lines.push(structure_command_line(next));
    }
    let mut next_plans = Vec::with_capacity(look_ahead.map_or(0, <[u32]>::len));
    // Which command asked for each UID: the commands go out at once, and a
    // server may answer them interleaved.
    let asked_in: BTreeMap<u32, usize> = commands
        .iter()
        .enumerate()
        .flat_map(|(index, (uids, _))| uids.iter().map(move |uid| (*uid, index)))
        .collect();
    let mut sections: Vec<WholeSections> =
        commands.iter().map(|_| WholeSections::default()).collect();
    let mut pool = ParsePool::new();
    let mut failed: Vec<(u32, String)> = Vec::new();
    let mut answered: BTreeSet<u32> = BTreeSet::new();
    let mut completions = session
        .pipeline(Step::Command("UID FETCH"), &lines, |response| {
            let Response::Fetch(_, attributes) = response else {
                return;
            };
            let Some(index) = attributes.iter().find_map(|attribute| match attribute {
                AttributeValue::Uid(uid) => asked_in.get(uid).copied(),
                _ => None,
            }) else {
                if let Some(plan) = look_ahead.and_then(|next| plan_of(response, next)) {
                    next_plans.push(plan);
                }
                return;
            };
            match &commands[index].1 {
                Items::Whole => {
                    let Some(answer) = WholeAnswer::of(attributes) else {
                        return;
                    };
                    if answered.contains(&answer.uid) {
                        return;
                    }
                    if let Some(known @ None) = internal_dates.get_mut(&answer.uid) {
                        known.clone_from(&answer.internal_date);
                    }
                    if let Some(body) = sections[index].add(&answer) {
                        answered.insert(answer.uid);
                        hand_over(&mut pool, &mut failed, answer.uid, body);
                    }
                }
                Items::Parts {
                    text_parts,
                    attachment_parts,
                } => {
                    let Some((uid, job)) =
                        parts_job(attributes, text_parts, attachment_parts, &sizes)
                    else {
                        return;
                    };
                    if !answered.insert(uid) {
                        return;
                    }
                    match job {
                        Ok(job) => pool.submit(uid, job),
                        Err(reason) => failed.push((uid, reason)),
                    }
                }
            }
        })
        .await;
    let look_ahead = look_ahead.map(|_| {
        let completion = completions.pop().expect("the look-ahead's completion");
        completion.map(|_| {
            next_plans.sort_by_key(|plan| plan.uid);
            next_plans.dedup_by_key(|plan| plan.uid);
            next_plans
        })
    });
    // A whole message one of whose sections never came, in a command that
    // completed, is taken as if that section were NIL.
    for (completion, sections) in completions.iter().zip(sections) {
        if completion.is_ok() {
            for (uid, body) in sections.rest() {
                answered.insert(uid);
                hand_over(&mut pool, &mut failed, uid, body);
            }
        }
    }
    // The first command that failed is the likeliest to hold the culprit:
    // its UIDs without an answer go first, then those of the commands after.
    let result = match completions
        .into_iter()
        .enumerate()
        .find_map(|(index, completion)| completion.err().map(|error| (index, error)))
    {
        None => Ok(()),
        Some((index, error)) => {
            // Those before it completed: a UID they did not answer is gone.
            let unanswered = commands[index..]
                .iter()
                .flat_map(|(uids, _)| uids)
                .filter(|uid| !answered.contains(uid))
                .copied()
                .collect();
            Err(Interrupted { error, unanswered })
        }
    };
    let problems: BTreeMap<u32, Option<&'static str>> =
        plans.iter().map(|p| (p.uid, p.problem)).collect();
    let mut fetched: Vec<Fetched> = pool
        .finish()
        .into_iter()
        .chain(failed.into_iter().map(|(uid, reason)| (uid, Err(reason))))
        .map(|(uid, parsed)| Fetched {
            uid,
            internal_date: internal_dates.get(&uid).cloned().flatten(),
            parsed,
            problem: problems.get(&uid).copied().flatten(),
        })
        .collect();
    fetched.sort_by_key(|f| f.uid);
    FetchedBatch {
        fetched,
        result,
        look_ahead,
    }
}

/// What [`fetch_batch`] got: the messages answered, and if a FETCH failed,
/// how; with a look-ahead, the next batch's plans, or why there are none
/// (their FETCH failed, or one before it broke the connection).
pub struct FetchedBatch {
    pub fetched: Vec<Fetched>,
    pub result: Result<(), Interrupted>,
    pub look_ahead: Option<Result<Vec<MessagePlan>, ImapError>>,
}

fn section_key(section: &Option<SectionPath>) -> Option<(String, bool)> {
    match section {
        Some(SectionPath::Part(path, kind)) => {
            let name = path
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".");
            Some((name, matches!(kind, Some(MessageSection::Mime))))
        }
        _ => None,
    }
}

/// The owned bytes of a message fetched in parts, for a parser thread; or
/// why it cannot be parsed.
fn parts_job(
    attributes: &[AttributeValue<'_>],
    text_parts: &[String],
    attachment_parts: &[String],
    sizes: &BTreeMap<u32, Vec<usize>>,
) -> Option<(u32, Result<Job, String>)> {
    let mut uid = None;
    let mut header: Option<&[u8]> = None;
    let mut bodies: BTreeMap<String, &[u8]> = BTreeMap::new();
    let mut mimes: BTreeMap<String, &[u8]> = BTreeMap::new();
    for attribute in attributes {
        match attribute {
            AttributeValue::Uid(v) => uid = Some(*v),
            AttributeValue::BodySection {
                section: Some(SectionPath::Full(MessageSection::Header)),
                data,
                ..
            } => header = data.as_deref(),
            AttributeValue::Rfc822Header(data) => header = data.as_deref(),
            AttributeValue::BodySection { section, data, .. } => {
                if let (Some((name, is_mime)), Some(data)) = (section_key(section), data) {
                    let data: &[u8] = match data {
                        Cow::Borrowed(b) => b,
                        Cow::Owned(v) => v.as_slice(),
                    };
                    if is_mime {
                        mimes.insert(name, data);
                    } else {
                        bodies.insert(name, data);
                    }
                }
            }
            _ => {}
        }
    }
    let uid = uid?;
    if header.is_none() && bodies.is_empty() && mimes.is_empty() {
        // An unsolicited FETCH (a flag changed meanwhile), no answer.
        return None;
    }
    let Some(header) = header else {
        return Some((uid, Err("the server sent no header".into())));
    };
    let texts = text_parts
        .iter()
        .filter_map(|name| {
            let body = bodies.get(name)?;
            let mime = mimes.get(name).copied().unwrap_or(b"");
            Some((mime.to_vec(), body.to_vec()))
        })
        .collect();
    let sizes = sizes.get(&uid).map(Vec::as_slice).unwrap_or_default();
    let attachments = attachment_parts
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let mime = mimes.get(name).copied().unwrap_or(b"");
            (mime.to_vec(), sizes.get(index).copied().unwrap_or(0))
        })
        .collect();
    Some((
        uid,
        Ok(Job::Parts {
            header: header.to_vec(),
            texts,
            attachments,
        }),
    ))
}

/// An attachment's name and type from its MIME header, decoded by
/// mail-parser (RFC 2047 and RFC 2231 names).
fn attachment_from_mime_header(mime: &[u8], size: usize) -> Attachment {
    let mut entity = mime.to_vec();
    entity.extend_from_slice(b"\r\n\r\n");
    use mail_parser::MimeHeaders;
    let parsed = mail_parser::MessageParser::default().parse_headers(&entity[..]);
    let Some(msg) = &parsed else {
        return Attachment {
            filename: None,
            mime_type: "application/octet-stream".to_string(),
            size,
            inline: false,
            content_id: None,
        };
    };
    let content_type = msg.content_type();
    let mime_type = content_type
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_else(|| "application/octet-stream".to_string());
    let filename = msg
        .content_disposition()
        .and_then(|cd| cd.attribute("filename"))
        .or_else(|| content_type.and_then(|ct| ct.attribute("name")))
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    // As for a message fetched whole (`message::attachments`): an inline
    // image of an HTML body is not listed as an attachment.
    let content_id = msg.content_id().and_then(message::normalize_message_id);
    let inline = match msg.content_disposition() {
        Some(cd) => cd.is_inline(),
        None => content_id.is_some(),
    };
    Attachment {
        filename,
        mime_type: mime_type.to_lowercase(),
        size,
        inline,
        content_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server answers to `NOTE_HEADER_FIELDS` followed by `TEXT`:
    /// the header lines (with their continuations) of the listed fields, the
    /// empty line, the body.
    fn as_fetched_whole(raw: &[u8]) -> Vec<u8> {
        let list = NOTE_HEADER_FIELDS
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(fields, _)| fields.to_ascii_lowercase())
            .unwrap();
        let wanted: Vec<&str> = list.split_whitespace().collect();
        let end = memchr::memmem::find(raw, b"\n\n").map_or(raw.len(), |at| at + 1);
        let (header, body) = (&raw[..end], raw.get(end + 1..).unwrap_or_default());
        let mut fetched = Vec::new();
        let mut keep = false;
        for line in header.split_inclusive(|&b| b == b'\n') {
            if !line.starts_with(b" ") && !line.starts_with(b"\t") {
                let name = line.split(|&b| b == b':').next().unwrap_or_default();
                let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
                keep = wanted.contains(&name.as_str());
            }
            if keep {
                fetched.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
                fetched.extend_from_slice(b"\r\n");
            }
        }
        fetched.extend_from_slice(b"\r\n");
        fetched.extend_from_slice(body);
        fetched
    }

    /// A header field the parser reads but the fetch does not ask for would
    /// change notes: every corpus message parses the same, problems
    /// included, from the fields asked for as from the whole message. (How
    /// the two answers are joined is `whole_message`'s test.)
    #[test]
    fn the_header_fields_asked_for_are_all_a_note_reads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/messages");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let raw = std::fs::read(&path).unwrap();
            if memchr::memmem::find(&raw, b"\r\n").is_some() {
                // The corpus is LF; a CRLF file would need another split.
                continue;
            }
            let whole = message::parse_message(&raw);
            let fetched = message::parse_message(&as_fetched_whole(&raw));
            match (whole, fetched) {
                (Ok(whole), Ok(fetched)) => {
                    let json = |p: &ParsedMessage| serde_json::to_value(p).unwrap();
                    assert_eq!(json(&fetched), json(&whole), "{}", path.display());
                }
                (whole, fetched) => assert_eq!(
                    whole.is_ok(),
                    fetched.is_ok(),
                    "{}: {:?} / {:?}",
                    path.display(),
                    whole.err(),
                    fetched.err()
                ),
            }
            checked += 1;
        }
        assert!(checked >= 15, "only {checked} corpus messages checked");
    }

    #[test]
    fn a_message_fetched_whole_is_its_header_fields_an_empty_line_and_its_text() {
        let whole = |h: Option<&[u8]>, t: Option<&[u8]>| {
            whole_message(h, t).map(|raw| String::from_utf8(raw).unwrap())
        };
        let body = Some(&b"Hi.\r\n"[..]);
        assert_eq!(
            whole(Some(b"A: 1\r\n\r\n"), body).unwrap(),
            "A: 1\r\n\r\nHi.\r\n"
        );
        // The empty line left out, or the line end too.
        assert_eq!(
            whole(Some(b"A: 1\r\n"), body).unwrap(),
            "A: 1\r\n\r\nHi.\r\n"
        );
        assert_eq!(whole(Some(b"A: 1"), body).unwrap(), "A: 1\r\n\r\nHi.\r\n");
        assert_eq!(whole(Some(b"A: 1\n\n"), body).unwrap(), "A: 1\n\nHi.\r\n");
        // None of the fields there: the empty line alone, as sent or added.
        assert_eq!(whole(Some(b"\r\n"), body).unwrap(), "\r\nHi.\r\n");
        assert_eq!(whole(Some(b""), body).unwrap(), "\r\nHi.\r\n");
        assert_eq!(whole(None, body).unwrap(), "\r\nHi.\r\n");
        assert_eq!(whole(Some(b"A: 1\r\n\r\n"), None).unwrap(), "A: 1\r\n\r\n");
        assert_eq!(whole(None, None), None);
    }

    /// A FETCH response's attributes: its UID, and each section given
    /// (`Some(None)`: NIL).
    fn response(
        uid: u32,
        header: Option<Option<&'static [u8]>>,
        text: Option<Option<&'static [u8]>>,
    ) -> Vec<AttributeValue<'static>> {
        let section = |kind, data: Option<&'static [u8]>| AttributeValue::BodySection {
            section: Some(SectionPath::Full(kind)),
            index: None,
            data: data.map(Cow::Borrowed),
        };
        let mut attributes = vec![AttributeValue::Uid(uid)];
        attributes.extend(header.map(|h| section(MessageSection::Header, h)));
        attributes.extend(text.map(|t| section(MessageSection::Text, t)));
        attributes
    }

    #[test]
    fn whole_messages_are_put_together_from_separate_responses() {
        let mut sections = WholeSections::default();
        let add = |sections: &mut WholeSections, attributes: &[AttributeValue<'_>]| {
            WholeAnswer::of(attributes).map(|answer| sections.add(&answer))
        };
        // Both in one response.
        let one = response(1, Some(Some(b"A: 1\r\n\r\n")), Some(Some(b"x")));
        assert_eq!(
            add(&mut sections, &one),
            Some(Some(Some(b"A: 1\r\n\r\nx".to_vec())))
        );
        // Flags changing meanwhile: no answer at all.
        assert!(add(&mut sections, &response(2, None, None)).is_none());
        // Text first, header later.
        assert_eq!(
            add(&mut sections, &response(3, None, Some(Some(b"y")))),
            Some(None)
        );
        let header = response(3, Some(Some(b"B: 2\r\n\r\n")), None);
        assert_eq!(
            add(&mut sections, &header),
            Some(Some(Some(b"B: 2\r\n\r\ny".to_vec())))
        );
        // NIL for both: no content.
        assert_eq!(
            add(&mut sections, &response(4, Some(None), Some(None))),
            Some(Some(None))
        );
        // A header whose text never comes: as if the text were NIL.
        assert_eq!(
            add(
                &mut sections,
                &response(5, Some(Some(b"C: 3\r\n\r\n")), None)
            ),
            Some(None)
        );
        let rest: Vec<_> = sections.rest().collect();
        assert_eq!(rest, vec![(5, Some(b"C: 3\r\n\r\n".to_vec()))]);
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[42]), "42");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn attachment_names_decode() {
        let mime = b"Content-Type: application/pdf; name=\"=?UTF-8?B?UmVwb3J0IMOcYmVyc2ljaHQucGRm?=\"\r\nContent-Disposition: attachment;\r\n filename*=UTF-8''Report%20%C3%9Cbersicht.pdf\r\nContent-Transfer-Encoding: base64";
        let attachment = attachment_from_mime_header(mime, 1234);
        assert_eq!(attachment.filename.as_deref(), Some("Report Übersicht.pdf"));
        assert_eq!(attachment.mime_type, "application/pdf");
    }
}
