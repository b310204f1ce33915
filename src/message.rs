//! One fetched email → the data a source note needs.
//!
//! Parsing never fails on a damaged message: the sync must go on when one message is
//! broken (SPEC §Reliability), so whatever can be decoded is returned together with a
//! list of `problems` for the note and the sync summary. Only input with nothing
//! decodable at all is an error.
//!
//! The body is turned into Markdown and split into the new text, the collapsed quoted
//! history and a short signature, so notes can show each message's own words and fold the
//! rest (see [`collapse_quotes`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use htmd::element_handler::{HandlerResult, Handlers};
use htmd::{Element, HtmlToMarkdown};
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{
    Address, DateTime, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders,
    PartType,
};
use serde::{Deserialize, Serialize};

/// A signature longer than this many lines is cut: long legal disclaimers and
/// contact blocks drown the message in a note.
pub const SIGNATURE_MAX_LINES: usize = 4;

/// An address as written in a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: Option<String>,
}

impl fmt::Display for Mailbox {
    /// `Name <addr>`, the form the note front matter uses (`participants`, `last_from`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, &self.address) {
            (Some(n), Some(a)) => write!(f, "{n} <{a}>"),
            (Some(n), None) => f.write_str(n),
            (None, Some(a)) => f.write_str(a),
            (None, None) => Ok(()),
        }
    }
}

/// A Date header kept with its original offset: notes print the sender's local time
/// (`2025-12-12T16:04:26-08:00`), ordering uses the timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDate {
    /// RFC 3339 with the header's own offset (`+00:00`, never `Z`).
    pub rfc3339: String,
    /// Seconds since the Unix epoch (UTC).
    pub timestamp: i64,
    /// The header's offset from UTC in minutes (`-480` for `-0800`).
    pub offset_minutes: i32,
}

impl MessageDate {
    fn from_mail(d: &DateTime) -> Self {
        let sign = if d.tz_before_gmt { '-' } else { '+' };
        let offset =
            (d.tz_hour as i32 * 60 + d.tz_minute as i32) * if d.tz_before_gmt { -1 } else { 1 };
        // format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}", …)
        // without the formatting machinery, a tenth of reading the headers.
        let mut rfc3339 = String::with_capacity(25);
        push_padded(&mut rfc3339, d.year.into(), 4);
        for (sep, n) in [
            ('-', d.month),
            ('-', d.day),
            ('T', d.hour),
            (':', d.minute),
            (':', d.second),
            (sign, d.tz_hour),
            (':', d.tz_minute),
        ] {
            rfc3339.push(sep);
            push_padded(&mut rfc3339, n.into(), 2);
        }
        MessageDate {
            rfc3339,
            timestamp: d.to_timestamp(),
            offset_minutes: offset,
        }
    }
}

/// `n` in decimal, zero-padded to `width` digits (`{n:0width$}`).
fn push_padded(out: &mut String, n: u32, width: usize) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut rest = n;
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for _ in len..width {
        out.push('0');
    }
    for &digit in digits[..len].iter().rev() {
        out.push(digit as char);
    }
}

/// Where the Markdown body came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodySource {
    Plain,
    Html,
    /// No text part at all (e.g. only attachments).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuoteKind {
    /// Quoted history of the conversation (`>` blocks, "On … wrote:", Outlook headers).
    Reply,
    /// A forwarded message: often the very thing the sender asks about, so notes should
    /// show it more readily than reply history.
    Forward,
}

/// The collapsed part of a body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quoted {
    pub kind: QuoteKind,
    /// The "On …, X wrote:" line, if there was one (wrapped lines joined).
    pub attribution: Option<String>,
    /// The quoted text with one level of `>` removed.
    pub text: String,
}

/// A body split into what the sender wrote now and what can be folded away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CollapsedBody {
    pub new: String,
    pub quoted: Option<Quoted>,
    /// At most [`SIGNATURE_MAX_LINES`] lines, "…" appended when cut.
    pub signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Decoded (RFC 2047/2231); a forwarded `message/rfc822` is named after its subject.
    pub filename: Option<String>,
    pub mime_type: String,
    /// Decoded size in bytes.
    pub size: usize,
    /// Shown inside the message (e.g. an image referenced by `cid:`) rather than attached.
    pub inline: bool,
    pub content_id: Option<String>,
}

/// Everything notes and threading need from one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedMessage {
    /// Normalized `<id>`; None when the header is missing or empty (see [`Self::stable_id`]).
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub subject: Option<String>,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub date: Option<MessageDate>,
    /// The id inside `List-Id` (`weekly.example.org`), lowercase.
    pub list_id: Option<String>,
    pub list_unsubscribe: Option<String>,
    /// Lowercase `Precedence` (`bulk`, `list`, `junk`, `auto_reply`).
    pub precedence: Option<String>,
    /// Lowercase `Auto-Submitted` (`auto-replied`, `auto-generated`; `no` means human).
    pub auto_submitted: Option<String>,
    pub body_source: BodySource,
    /// The whole body as Markdown, quotes included.
    pub body: String,
    /// The sender's own new text.
    pub body_new: String,
    pub quoted: Option<Quoted>,
    pub signature: Option<String>,
    pub attachments: Vec<Attachment>,
    /// What could not be decoded cleanly, for the note and the sync summary.
    pub problems: Vec<String>,
}

impl ParsedMessage {
    /// The Message-ID, or for a message without one an id derived from its headers and
    /// text, so the same message fetched again (another folder, a UIDVALIDITY reset)
    /// gets the same id and lands in the same thread and note.
    pub fn stable_id(&self) -> String {
        if let Some(id) = &self.message_id {
            return id.clone();
        }
        let date = self.date.as_ref().map(|d| d.rfc3339.as_str()).unwrap_or("");
        let from = self
            .from
            .as_ref()
            .and_then(|f| f.address.as_deref())
            .unwrap_or("");
        let subject = self.subject.as_deref().unwrap_or("");
        let to = self
            .to
            .first()
            .and_then(|t| t.address.as_deref())
            .unwrap_or("");
        let body: String = self.body.chars().take(400).collect();
        crate::thread::synthetic_message_id(&[date, from, to, subject, &body])
    }

    /// Reads a message from the state store, deriving what
    /// [`parse_message_to_store`] left out (data stored in full, as before
    /// schema 3, is read as it is).
    pub fn from_stored_json(json: &str) -> serde_json::Result<ParsedMessage> {
        let parsed: ParsedMessage = serde_json::from_str(json)?;
        if parsed.body_new.is_empty() && parsed.quoted.is_none() && parsed.signature.is_none() {
            return Ok(parsed.with_collapsed());
        }
        Ok(parsed)
    }

    /// With `body_new`, `quoted` and `signature` derived from `body`.
    fn with_collapsed(mut self) -> ParsedMessage {
        let collapsed = collapse_quotes(&self.body);
        self.body_new = collapsed.new;
        self.quoted = collapsed.quoted;
        self.signature = collapsed.signature;
        self
    }

    /// A message with nothing decoded yet: the starting point for one that
    /// could not be parsed, or is known by a few headers only.
    pub fn empty() -> ParsedMessage {
        ParsedMessage {
            message_id: None,
            in_reply_to: None,
            references: Vec::new(),
            subject: None,
            from: None,
            to: Vec::new(),
            cc: Vec::new(),
            reply_to: Vec::new(),
            date: None,
            list_id: None,
            list_unsubscribe: None,
            precedence: None,
            auto_submitted: None,
            body_source: BodySource::None,
            body: String::new(),
            body_new: String::new(),
            quoted: None,
            signature: None,
            attachments: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// True for mailing-list, bulk and automatic mail (SPEC: such mail awaits no reply).
    pub fn is_list_bulk_or_auto(&self) -> bool {
        let auto = self
            .auto_submitted
            .as_deref()
            .is_some_and(|v| !v.starts_with("no"));
        let bulk = matches!(
            self.precedence.as_deref(),
            Some("bulk" | "list" | "junk" | "auto_reply")
        );
        auto || bulk || self.list_id.is_some() || self.list_unsubscribe.is_some()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("no header or body could be decoded")]
    Undecodable,
}

/// One body part fetched on its own over IMAP: the bytes of `BODY[n.MIME]` and `BODY[n]`.
#[derive(Debug, Clone, Copy)]
pub struct TextPart<'a> {
    /// The part's own MIME header (`Content-Type`, `Content-Transfer-Encoding`).
    pub mime_header: &'a [u8],
    /// The part's body, still transfer-encoded.
    pub body: &'a [u8],
}

/// mail-parser, set to parse only the headers a note reads (and the MIME
/// headers it needs for the parts); every other header is skipped, its raw
/// text still at hand. Parsing every header had been a sixth of parsing
/// time: `Received`, `DKIM-Signature` and the like are most of a header.
/// The `Received` dates a message without a Date header falls back to are
/// parsed only then ([`date_of`]).
pub(crate) fn mail_parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .with_message_ids()
        .header_date(HeaderName::Date)
        .header_text(HeaderName::Subject)
        .header_address(HeaderName::From)
        .header_address(HeaderName::To)
        .header_address(HeaderName::Cc)
        .header_address(HeaderName::ReplyTo)
        .default_header_ignore()
}

/// [`mail_parser`], built once: building it (a map of header parsers) had
/// been a twentieth of parsing a message fetched in parts.
fn parser() -> &'static MessageParser {
    static PARSER: OnceLock<MessageParser> = OnceLock::new();
    PARSER.get_or_init(mail_parser)
}

/// Parses a whole RFC 5322 message as fetched (`BODY[]`, or the header fields
/// a note reads followed by `BODY[TEXT]`).
pub fn parse_message(raw: &[u8]) -> Result<ParsedMessage, ParseError> {
    parse_message_to_store(raw).map(ParsedMessage::with_collapsed)
}

/// [`parse_message`] without what quote collapsing derives from the body
/// (`body_new`, `quoted`, `signature` left empty), for the state store:
/// [`ParsedMessage::from_stored_json`] derives them when the message is read
/// back. They were over a third of what a sync stored, serialized, compressed
/// and read back.
pub fn parse_message_to_store(raw: &[u8]) -> Result<ParsedMessage, ParseError> {
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Empty);
    }
    let mut problems = Vec::new();
    let raw = repair_headers(raw, &mut problems);
    let msg = parser()
        .parse(raw.as_ref())
        .ok_or(ParseError::Undecodable)?;
    let mut parsed = headers_of(&msg, &mut problems);
    let body = body_of(&msg, &mut problems);
    parsed.attachments = attachments_of(&msg);
    check_structure(&msg, &mut problems);
    finish(parsed, body, problems)
}

/// Parses a message fetched in pieces: its header (`BODY[HEADER]`, or the fields a
/// note reads) and its text parts (from BODYSTRUCTURE), so a sync need not download
/// attachments. Attachments are not seen here; the caller lists them from
/// BODYSTRUCTURE if it wants.
pub fn parse_header_and_parts(
    header: &[u8],
    parts: &[TextPart<'_>],
) -> Result<ParsedMessage, ParseError> {
    parse_header_and_parts_to_store(header, parts).map(ParsedMessage::with_collapsed)
}

/// [`parse_header_and_parts`] for the state store, as
/// [`parse_message_to_store`].
pub fn parse_header_and_parts_to_store(
    header: &[u8],
    parts: &[TextPart<'_>],
) -> Result<ParsedMessage, ParseError> {
    if header.iter().all(|b| b.is_ascii_whitespace()) && parts.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut problems = Vec::new();
    let mut head = repair_headers(header, &mut problems).into_owned();
    // A header block alone must still end with the empty line.
    while !head.ends_with(b"\n\n") && !head.ends_with(b"\r\n\r\n") {
        head.extend_from_slice(b"\r\n");
    }
    let msg = parser().parse(&head[..]).ok_or(ParseError::Undecodable)?;
    let parsed = headers_of(&msg, &mut problems);
    let mut texts = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let entity = entity(part.mime_header, part.body);
        let Some(pm) = parser().parse(&entity[..]) else {
            problems.push(format!("text part {}: nothing decodable", i + 1));
            continue;
        };
        let root = pm.root_part();
        note_part_problem(root, i + 1, &mut problems);
        if let Some(t) = part_text(&pm, root, &mut problems) {
            texts.push(t);
        }
    }
    let body = assemble_body(texts);
    finish(parsed, body, problems)
}

/// A header block and the body after it as one entity, as fetched in two
/// answers (a part's `MIME` and its body; a message's header fields and its
/// `TEXT`): the header made to end with its empty line, which a server's
/// answer may leave out, or hold alone when no field is there.
pub(crate) fn entity(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut entity = Vec::with_capacity(header.len() + body.len() + 4);
    entity.extend_from_slice(header);
    let ended = entity.ends_with(b"\n\n")
        || entity.ends_with(b"\r\n\r\n")
        || entity == b"\r\n"
        || entity == b"\n";
    if !ended {
        if !entity.is_empty() && !entity.ends_with(b"\n") {
            entity.extend_from_slice(b"\r\n");
        }
        entity.extend_from_slice(b"\r\n");
    }
    entity.extend_from_slice(body);
    entity
}

fn finish(
    mut parsed: ParsedMessage,
    body: (BodySource, String),
    problems: Vec<String>,
) -> Result<ParsedMessage, ParseError> {
    let (source, text) = body;
    parsed.body_source = source;
    parsed.body = text;
    parsed.problems = problems;
    let nothing = parsed.message_id.is_none()
        && parsed.from.is_none()
        && parsed.subject.is_none()
        && parsed.date.is_none()
        && parsed.body.trim().is_empty()
        && parsed.attachments.is_empty();
    if nothing {
        return Err(ParseError::Undecodable);
    }
    Ok(parsed)
}

// ---------------------------------------------------------------------------------------
// Headers

fn repair_headers<'a>(raw: &'a [u8], problems: &mut Vec<String>) -> Cow<'a, [u8]> {
    // Nearly every header is UTF-8 (fix_raw_8bit_headers leaves it as it
    // is): its end and text found once.
    let end = header_end(raw);
    if let Ok(head) = std::str::from_utf8(&raw[..end]) {
        return match fix_encoded_word_charsets(head) {
            Some(fixed) => Cow::Owned(with_fixed_header(fixed, &raw[end..], problems)),
            None => Cow::Borrowed(raw),
        };
    }
    let raw = fix_raw_8bit_headers(raw, problems);
    let end = header_end(&raw);
    let Ok(head) = std::str::from_utf8(&raw[..end]) else {
        return raw;
    };
    match fix_encoded_word_charsets(head) {
        Some(fixed) => Cow::Owned(with_fixed_header(fixed, &raw[end..], problems)),
        None => raw,
    }
}

/// A header whose encoded words' charsets were relabelled, then the rest.
fn with_fixed_header(
    (fixed, names): (String, Vec<String>),
    rest: &[u8],
    problems: &mut Vec<String>,
) -> Vec<u8> {
    problems.push(format!(
        "unknown charset in encoded header words, read as Windows-1252: {}",
        names.join(", ")
    ));
    let mut out = fixed.into_bytes();
    out.extend_from_slice(rest);
    out
}

/// Whether mail-parser decodes this charset (natively or with a decoder).
fn known_charset(charset: &str) -> bool {
    // The charset's ASCII letters and digits, lowercase, compared as they
    // come rather than collected.
    let squashed = || {
        charset
            .bytes()
            .filter(u8::is_ascii_alphanumeric)
            .map(|b| b.to_ascii_lowercase())
    };
    ["utf8", "usascii", "ascii", "ansix341968", "us"]
        .iter()
        .any(|name| squashed().eq(name.bytes()))
        || charset_decoder(charset.as_bytes()).is_some()
}

/// RFC 2047 words labelled with a charset nobody knows (`=?x-unknown?Q?Caf=E9?=`) are
/// relabelled Windows-1252, which decodes any byte, instead of turning into U+FFFD.
fn fix_encoded_word_charsets(head: &str) -> Option<(String, Vec<String>)> {
    // Nearly every header has only known charsets: no copy then.
    if !memchr::memmem::find_iter(head.as_bytes(), b"=?").any(|pos| {
        let rest = &head[pos + 2..];
        rest.find('?')
            .and_then(|q| unknown_encoded_word_charset(rest, q))
            .is_some()
    }) {
        return None;
    }
    let mut out = String::with_capacity(head.len());
    let mut names: Vec<String> = Vec::new();
    let mut rest = head;
    while let Some(pos) = rest.find("=?") {
        out.push_str(&rest[..pos + 2]);
        rest = &rest[pos + 2..];
        let Some(q) = rest.find('?') else { continue };
        if let Some(charset) = unknown_encoded_word_charset(rest, q) {
            if !names.iter().any(|n| n == charset) {
                names.push(charset.to_string());
            }
            out.push_str("windows-1252");
            rest = &rest[q..];
        }
    }
    out.push_str(rest);
    (!names.is_empty()).then_some((out, names))
}

/// The charset of the encoded word that `rest` starts (after its `=?`, its
/// label ending at `q`), when it is one mail-parser does not know.
fn unknown_encoded_word_charset(rest: &str, q: usize) -> Option<&str> {
    let label = &rest[..q];
    let encoding_ok = rest[q + 1..]
        .get(..2)
        .is_some_and(|e| matches!(e, "Q?" | "q?" | "B?" | "b?"));
    let charset = label.split('*').next().unwrap_or(label);
    let token = !label.is_empty() && label.len() < 40 && !label.contains(char::is_whitespace);
    (token && encoding_ok && !known_charset(charset)).then_some(charset)
}

/// Headers in raw 8-bit that are not UTF-8 come from old mailers writing Latin-1 or
/// Windows-1252 without RFC 2047; read those lines as Windows-1252 (a superset of
/// Latin-1 for the printable range) instead of letting them turn into U+FFFD.
fn fix_raw_8bit_headers<'a>(raw: &'a [u8], problems: &mut Vec<String>) -> Cow<'a, [u8]> {
    let end = header_end(raw);
    let head = &raw[..end];
    if std::str::from_utf8(head).is_ok() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut fixed: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in head.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            current = line
                .iter()
                .position(|&b| b == b':')
                .map(|p| String::from_utf8_lossy(&line[..p]).trim().to_string())
                .unwrap_or_default();
        }
        if std::str::from_utf8(line).is_ok() {
            out.extend_from_slice(line);
        } else {
            out.extend_from_slice(utf8_or_cp1252(line).as_bytes());
            if !current.is_empty() && !fixed.contains(&current) {
                fixed.push(current.clone());
            }
        }
    }
    out.extend_from_slice(&raw[end..]);
    problems.push(format!(
        "raw 8-bit header not in UTF-8, read as Windows-1252: {}",
        fixed.join(", ")
    ));
    Cow::Owned(out)
}

/// Offset just past the header block's terminating empty line (or the whole input).
fn header_end(raw: &[u8]) -> usize {
    for i in memchr::memchr_iter(b'\n', raw) {
        let rest = &raw[i + 1..];
        if rest.starts_with(b"\n") {
            return i + 2;
        }
        if rest.starts_with(b"\r\n") {
            return i + 3;
        }
    }
    raw.len()
}

fn headers_of(msg: &Message<'_>, problems: &mut Vec<String>) -> ParsedMessage {
    let mut p = ParsedMessage::empty();
    p.message_id = ids_of(msg, HeaderName::MessageId).into_iter().next();
    if p.message_id.is_none() {
        problems.push("no Message-ID header".into());
    }
    p.in_reply_to = ids_of(msg, HeaderName::InReplyTo).into_iter().next();
    let mut refs: Vec<String> = Vec::new();
    for id in ids_of(msg, HeaderName::References) {
        if !refs.contains(&id) {
            refs.push(id);
        }
    }
    p.references = refs;
    p.subject = msg
        .subject()
        .map(squash_whitespace)
        .filter(|s| !s.is_empty());
    p.from = msg.from().and_then(|a| mailboxes(a).into_iter().next());
    if p.from.is_none() {
        problems.push("no From header".into());
    }
    p.to = msg.to().map(mailboxes).unwrap_or_default();
    p.cc = msg.cc().map(mailboxes).unwrap_or_default();
    p.reply_to = msg.reply_to().map(mailboxes).unwrap_or_default();
    p.date = date_of(msg, problems);
    p.list_id = msg.header_raw(HeaderName::ListId).and_then(|v| {
        let inner = match (v.rfind('<'), v.rfind('>')) {
            (Some(a), Some(b)) if a < b => &v[a + 1..b],
            _ => v,
        };
        Some(inner.trim().to_lowercase()).filter(|s| !s.is_empty())
    });
    p.list_unsubscribe = msg
        .header_raw(HeaderName::ListUnsubscribe)
        .map(squash_whitespace)
        .filter(|v| !v.is_empty());
    p.precedence = raw_lower(msg, "Precedence");
    p.auto_submitted = raw_lower(msg, "Auto-Submitted");
    p
}

/// The words of `text` with one space between them (its
/// `split_whitespace` joined with " ").
pub(crate) fn squash_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn raw_lower(msg: &Message<'_>, name: &str) -> Option<String> {
    msg.header_raw(name)
        .map(|v| v.trim().to_lowercase())
        .filter(|v| !v.is_empty())
}

fn date_of(msg: &Message<'_>, problems: &mut Vec<String>) -> Option<MessageDate> {
    if let Some(d) = msg.date() {
        if d.is_valid() {
            return Some(MessageDate::from_mail(d));
        }
        problems.push(format!(
            "invalid Date header: {}",
            msg.header_raw(HeaderName::Date).unwrap_or("").trim()
        ));
    } else if let Some(raw) = msg.header_raw(HeaderName::Date) {
        problems.push(format!("unparsable Date header: {}", raw.trim()));
    } else {
        problems.push("no Date header".into());
    }
    // The delivering server's own stamp is the best remaining guess
    // (`mail_parser` skips Received headers: parsed here, only when needed).
    let with_received = MessageParser::new()
        .header_received(HeaderName::Received)
        .default_header_ignore()
        .parse_headers(msg.raw_message());
    let received = with_received
        .iter()
        .flat_map(|m| m.received_all())
        .filter_map(|r| r.date())
        .find(|d| d.is_valid());
    match received {
        Some(d) => {
            problems.push("date taken from the Received header".into());
            Some(MessageDate::from_mail(&d))
        }
        None => None,
    }
}

/// Message ids from a header, normalized to `<id>`; falls back to scanning the raw
/// header for `<…>` when mail-parser could not make sense of it.
fn ids_of(msg: &Message<'_>, name: HeaderName<'static>) -> Vec<String> {
    let mut ids: Vec<String> = match msg.header(name.clone()) {
        Some(HeaderValue::Text(t)) => normalize_message_id(t).into_iter().collect(),
        Some(HeaderValue::TextList(l)) => {
            l.iter().filter_map(|t| normalize_message_id(t)).collect()
        }
        _ => Vec::new(),
    };
    if ids.is_empty() {
        if let Some(raw) = msg.header_raw(name) {
            ids = extract_bracketed_ids(raw);
            if ids.is_empty() {
                ids = normalize_message_id(raw).into_iter().collect();
            }
        }
    }
    ids
}

fn extract_bracketed_ids(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(a) = rest.find('<') {
        let Some(b) = rest[a..].find('>') else { break };
        if let Some(id) = normalize_message_id(&rest[a..a + b + 1]) {
            out.push(id);
        }
        rest = &rest[a + b + 1..];
    }
    out
}

/// `<id>` with surrounding space and brackets normalized and folding whitespace removed;
/// None for an empty id.
pub fn normalize_message_id(raw: &str) -> Option<String> {
    let t = raw.trim();
    let t = t.strip_prefix('<').unwrap_or(t);
    let t = t.strip_suffix('>').unwrap_or(t);
    let mut id = String::with_capacity(t.len() + 2);
    id.push('<');
    for c in t.chars() {
        match c {
            '<' | '>' => return None,
            c if c.is_whitespace() => {}
            c => id.push(c),
        }
    }
    if id.len() == 1 {
        return None;
    }
    id.push('>');
    Some(id)
}

fn mailboxes(a: &Address<'_>) -> Vec<Mailbox> {
    a.iter()
        .filter_map(|addr| {
            let name = addr
                .name
                .as_deref()
                .map(squash_whitespace)
                .filter(|n| !n.is_empty());
            let address = addr
                .address
                .as_deref()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty());
            if name.is_none() && address.is_none() {
                return None;
            }
            // Some mailers repeat the address as the name.
            let name = name.filter(|n| Some(n.as_str()) != address.as_deref());
            Some(Mailbox { name, address })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Body

fn body_of(msg: &Message<'_>, problems: &mut Vec<String>) -> (BodySource, String) {
    let mut texts = Vec::new();
    for &id in &msg.text_body {
        let Some(part) = msg.part(id) else { continue };
        note_part_problem(part, id as usize, problems);
        if let Some(t) = part_text(msg, part, problems) {
            texts.push(t);
        }
    }
    let plain_blank = texts
        .iter()
        .all(|(src, t)| *src == BodySource::Plain && t.trim().is_empty());
    if plain_blank && !texts.is_empty() {
        // An empty text/plain alternative beside real HTML: use the HTML.
        let mut html = Vec::new();
        for &id in &msg.html_body {
            if let Some(part) = msg.part(id) {
                if matches!(part.body, PartType::Html(_)) {
                    if let Some(t) = part_text(msg, part, problems) {
                        html.push(t);
                    }
                }
            }
        }
        if !html.is_empty() {
            texts = html;
        }
    }
    assemble_body(texts)
}

fn assemble_body(texts: Vec<(BodySource, String)>) -> (BodySource, String) {
    let texts: Vec<_> = texts
        .into_iter()
        .filter(|(_, t)| !t.trim().is_empty())
        .collect();
    if texts.is_empty() {
        return (BodySource::None, String::new());
    }
    let source = if texts.iter().any(|(s, _)| *s == BodySource::Plain) {
        BodySource::Plain
    } else {
        BodySource::Html
    };
    let joined = texts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join("\n\n");
    (source, joined)
}

fn note_part_problem(part: &MessagePart<'_>, n: usize, problems: &mut Vec<String>) {
    if part.is_encoding_problem {
        problems.push(format!(
            "part {n} ({}): could not be decoded, kept as raw text",
            describe_part(part)
        ));
    }
}

fn describe_part(part: &MessagePart<'_>) -> String {
    let mime = mime_of(part);
    match part.attachment_name() {
        Some(name) => format!("{mime} \"{name}\""),
        None => mime,
    }
}

fn mime_of(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(st) => format!("{}/{}", ct.ctype(), st).to_lowercase(),
            None => ct.ctype().to_lowercase(),
        },
        None => match part.body {
            PartType::Html(_) => "text/html".into(),
            PartType::Message(_) => "message/rfc822".into(),
            PartType::Multipart(_) => "multipart/mixed".into(),
            PartType::Binary(_) | PartType::InlineBinary(_) => "application/octet-stream".into(),
            PartType::Text(_) => "text/plain".into(),
        },
    }
}

fn part_text(
    msg: &Message<'_>,
    part: &MessagePart<'_>,
    problems: &mut Vec<String>,
) -> Option<(BodySource, String)> {
    match &part.body {
        PartType::Text(t) => {
            let text = recharset(msg, part, t, problems);
            let ct = part.content_type();
            let flowed = ct
                .and_then(|c| c.attribute("format"))
                .is_some_and(|f| f.eq_ignore_ascii_case("flowed"));
            let delsp = ct
                .and_then(|c| c.attribute("delsp"))
                .is_some_and(|f| f.eq_ignore_ascii_case("yes"));
            let text = if flowed {
                unflow(&text, delsp)
            } else {
                text.into_owned()
            };
            Some((BodySource::Plain, plain_to_markdown(&text)))
        }
        PartType::Html(h) => {
            let html = recharset(msg, part, h, problems);
            Some((BodySource::Html, html_to_markdown_checked(&html, problems)))
        }
        _ => None,
    }
}

/// mail-parser decodes an unknown charset as lossy UTF-8; when that lost characters,
/// decode the part's bytes again as Windows-1252, by far the likeliest real charset of
/// mislabeled 8-bit mail.
fn recharset<'t>(
    msg: &Message<'_>,
    part: &MessagePart<'_>,
    text: &'t str,
    problems: &mut Vec<String>,
) -> Cow<'t, str> {
    let Some(charset) = part.content_type().and_then(|c| c.attribute("charset")) else {
        return Cow::Borrowed(text);
    };
    if known_charset(charset) {
        return Cow::Borrowed(text);
    }
    if !text.contains('\u{FFFD}') {
        problems.push(format!("unknown charset \"{charset}\", read as UTF-8"));
        return Cow::Borrowed(text);
    }
    problems.push(format!(
        "unknown charset \"{charset}\", read as UTF-8 and Windows-1252"
    ));
    let raw = msg
        .raw_message()
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or_default();
    let decoded = match part
        .content_transfer_encoding()
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("quoted-printable") => Some(lenient_qp_decode(raw)),
        Some("base64") => mail_parser::decoders::base64::base64_decode(raw),
        _ => Some(raw.to_vec()),
    };
    match decoded {
        Some(bytes) => Cow::Owned(utf8_or_cp1252(&bytes)),
        None => Cow::Borrowed(text),
    }
}

/// UTF-8 where the bytes are valid UTF-8, Windows-1252 for the bytes that are not:
/// mislabeled mail often mixes both (a Latin-1 "é" beside a UTF-8 "€").
fn utf8_or_cp1252(mut bytes: &[u8]) -> String {
    let cp1252 = charset_decoder(b"windows-1252");
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                out.push_str(valid);
                return out;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len()).min(rest.len());
                match cp1252 {
                    Some(decode) => out.push_str(&decode(&rest[..bad])),
                    None => out.push_str(&String::from_utf8_lossy(&rest[..bad])),
                }
                bytes = &rest[bad..];
            }
        }
    }
}

/// Quoted-printable as broken mailers write it: a stray `=` or raw 8-bit byte is kept
/// as it is rather than failing the whole part.
fn lenient_qp_decode(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'=' {
            match (raw.get(i + 1), raw.get(i + 2)) {
                (Some(b'\n'), _) => {
                    i += 2;
                    continue;
                }
                (Some(b'\r'), Some(b'\n')) => {
                    i += 3;
                    continue;
                }
                (Some(&h), Some(&l)) => {
                    if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                        out.push((h << 4) | l);
                        i += 3;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

fn check_structure(msg: &Message<'_>, problems: &mut Vec<String>) {
    let raw = msg.raw_message();
    for part in &msg.parts {
        if !matches!(part.body, PartType::Multipart(_)) {
            continue;
        }
        let Some(boundary) = part.content_type().and_then(|c| c.attribute("boundary")) else {
            continue;
        };
        let close = format!("--{boundary}--");
        if !contains(raw, close.as_bytes()) {
            problems.push(format!(
                "multipart boundary \"{boundary}\" is never closed (message cut short?)"
            ));
        }
    }
    for (i, part) in msg.parts.iter().enumerate() {
        if i == 0 || msg.text_body.contains(&(i as u32)) {
            continue; // text parts were reported with the body
        }
        if part.is_encoding_problem {
            problems.push(format!(
                "part {i} ({}): could not be decoded, kept as raw text",
                describe_part(part)
            ));
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(hay, needle).is_some()
}

fn attachments_of(msg: &Message<'_>) -> Vec<Attachment> {
    msg.attachments
        .iter()
        .filter_map(|&id| msg.part(id))
        .map(|part| {
            let size = match &part.body {
                PartType::Binary(b) | PartType::InlineBinary(b) => b.len(),
                PartType::Text(t) | PartType::Html(t) => t.len(),
                PartType::Message(_) => part.offset_end.saturating_sub(part.offset_body) as usize,
                PartType::Multipart(_) => 0,
            };
            let mut filename = part
                .attachment_name()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty());
            if filename.is_none() {
                if let PartType::Message(inner) = &part.body {
                    filename = Some(format!(
                        "{}.eml",
                        inner.subject().unwrap_or("message").trim()
                    ));
                }
            }
            let content_id = part.content_id().and_then(normalize_message_id);
            let inline = match part.content_disposition() {
                Some(cd) => cd.is_inline(),
                None => content_id.is_some() || matches!(part.body, PartType::InlineBinary(_)),
            };
            Attachment {
                filename,
                mime_type: mime_of(part),
                size,
                inline,
                content_id,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Plain text and HTML to Markdown

/// RFC 3676: soft line breaks (a trailing space) join lines of the same quote depth.
fn unflow(text: &str, delsp: bool) -> String {
    // Each line written with its `\n` as it is made: the lines joined with
    // `\n`, then a `\n`.
    let mut out = String::with_capacity(text.len() + 1);
    let mut open: Option<(usize, String)> = None; // (depth, text so far) of a flowed paragraph
    for line in lines_of(text) {
        let depth = line.chars().take_while(|&c| c == '>').count();
        let mut content = &line[depth..];
        if let Some(stripped) = content.strip_prefix(' ') {
            content = stripped; // space-stuffing
        }
        let is_sig = content == "-- ";
        let soft = !is_sig && content.ends_with(' ');
        let piece = if soft && delsp {
            &content[..content.len() - 1]
        } else {
            content
        };
        match open.take() {
            Some((d, mut acc)) if d == depth => {
                acc.push_str(piece);
                if soft {
                    open = Some((d, acc));
                } else {
                    push_with_depth(&mut out, d, &acc);
                }
            }
            prev => {
                if let Some((d, acc)) = prev {
                    push_with_depth(&mut out, d, acc.trim_end());
                }
                if soft {
                    open = Some((depth, piece.to_string()));
                } else {
                    push_with_depth(&mut out, depth, piece);
                }
            }
        }
    }
    if let Some((d, acc)) = open {
        push_with_depth(&mut out, d, acc.trim_end());
    }
    if out.is_empty() {
        // No line: the empty join, then its `\n`.
        out.push('\n');
    }
    out
}

/// `text` quoted `depth` deep (`> > text`; a bare `>` for an empty line),
/// then a `\n`.
fn push_with_depth(out: &mut String, depth: usize, text: &str) {
    if depth > 0 {
        for _ in 1..depth {
            out.push_str("> ");
        }
        out.push_str(if text.is_empty() { ">" } else { "> " });
    }
    out.push_str(text);
    out.push('\n');
}

/// Plain text is kept as written, but made safe to embed in a note: nothing in it may
/// turn into raw HTML (a remote `<img>` would be loaded when the note is viewed), an
/// Obsidian tag (`#general` would pollute the vault's tag list) or a wikilink.
pub fn plain_to_markdown(text: &str) -> String {
    let normalized = normalize_text(text);
    // Normalized text has no `\r`, and escaping adds none: the escaped lines
    // tidied as they come are the same as joined, then tidied.
    let mut tidy = Tidy::with_capacity(normalized.len() + normalized.len() / 16);
    for line in lines_of(&normalized) {
        tidy.push(&escape_plain_line(line));
    }
    tidy.finish()
}

fn escape_plain_line(line: &str) -> Cow<'_, str> {
    // Only these characters are ever escaped; most lines have none of them.
    if !contains_any_ascii(line, b"#<[") {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    // An ATX heading: up to 3 spaces, 1-6 '#', then space or end (ASCII: the
    // byte counts are character counts).
    let indent = line.bytes().take_while(|&b| b == b' ').count();
    let hashes = line[indent..].bytes().take_while(|&b| b == b'#').count();
    let is_heading = indent <= 3
        && (1..=6).contains(&hashes)
        && line[indent + hashes..]
            .chars()
            .next()
            .is_none_or(|c| c == ' ');
    let mut prev: Option<char> = None;
    for (i, (at, c)) in line.char_indices().enumerate() {
        let next = line[at + c.len_utf8()..].chars().next();
        match c {
            '#' if i == indent && is_heading => out.push_str("\\#"),
            '#' if prev.is_none_or(char::is_whitespace)
                && next.is_some_and(char::is_alphabetic) =>
            {
                out.push_str("\\#")
            }
            '<' if next
                .is_some_and(|n| n.is_ascii_alphabetic() || n == '/' || n == '!' || n == '?') =>
            {
                let autolink = line[at..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '>')
                    .take(64)
                    .any(|c| c == ':' || c == '@');
                if autolink {
                    out.push('<'); // an autolink such as <https://…> or <a@b>
                } else {
                    out.push_str("\\<");
                }
            }
            '[' if next == Some('[') => out.push_str("\\["),
            _ => out.push(c),
        }
        prev = Some(c);
    }
    Cow::Owned(out)
}

/// Characters that carry nothing in a note but break matching and layout: zero-width
/// spacers newsletters pad their preheaders with, soft hyphens, BOMs.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{2060}' | '\u{FEFF}' | '\u{034F}' | '\u{00AD}'
    )
}

/// Whether `text` holds a `\r`, a no-break space or an invisible character
/// ([`is_invisible`]): a search for their first bytes (in UTF-8 only ever a
/// character's first byte), each found one checked, rather than a walk over
/// every character.
fn needs_normalizing(text: &[u8]) -> bool {
    const TWO_BYTE: [&[u8]; 3] = [
        "\u{A0}".as_bytes(),
        "\u{AD}".as_bytes(),
        "\u{34F}".as_bytes(),
    ];
    const THREE_BYTE: [&[u8]; 4] = [
        "\u{200B}".as_bytes(),
        "\u{200C}".as_bytes(),
        "\u{2060}".as_bytes(),
        "\u{FEFF}".as_bytes(),
    ];
    memchr::memchr3_iter(b'\r', 0xC2, 0xCD, text)
        .any(|i| text[i] == b'\r' || TWO_BYTE.iter().any(|c| text[i..].starts_with(c)))
        || memchr::memchr2_iter(0xE2, 0xEF, text)
            .any(|i| THREE_BYTE.iter().any(|c| text[i..].starts_with(c)))
}

fn normalize_text(text: &str) -> Cow<'_, str> {
    // What needs changing is `\r` or a non-ASCII character: most text is
    // ruled out by two vectorized scans instead of a walk over its chars.
    if text.is_ascii() && memchr::memchr(b'\r', text.as_bytes()).is_none() {
        return Cow::Borrowed(text);
    }
    if !needs_normalizing(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    // One pass: `\r\n` and a lone `\r` become `\n`, invisible characters
    // go, a no-break space becomes a space.
    let mut normalized = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' => normalized.push('\n'),
            '\u{A0}' => normalized.push(' '),
            c if is_invisible(c) => {}
            c => normalized.push(c),
        }
    }
    Cow::Owned(normalized)
}

/// Blank-only lines emptied, runs of blank lines collapsed, a blank line put between a
/// quote and following text (Markdown would otherwise pull the text into the quote).
fn tidy_markdown(text: &str) -> String {
    tidy_lines(lines_of(text), text.len())
}

/// [`tidy_markdown`] of lines joined with `\n`, without joining them: the
/// same result when no line holds a `\n` and none but the last ends with a
/// `\r` (which `str::lines` would take off the joined text). A trailing
/// empty line, which splitting the joined text would drop, is blank and
/// dropped by the tidying anyway.
fn tidy_lines<'a>(lines: impl IntoIterator<Item = &'a str>, capacity: usize) -> String {
    let mut tidy = Tidy::with_capacity(capacity);
    for line in lines {
        tidy.push(line);
    }
    tidy.finish()
}

/// [`tidy_markdown`] line by line, written straight into its result: a
/// blank line is held back until a line follows it (trailing blank lines
/// are dropped), and at most one is ever held.
struct Tidy {
    out: String,
    /// A blank line is due before the next line.
    blank: bool,
    prev_quote: bool,
}

impl Tidy {
    fn with_capacity(capacity: usize) -> Tidy {
        Tidy {
            out: String::with_capacity(capacity),
            blank: false,
            prev_quote: false,
        }
    }

    fn push(&mut self, line: &str) {
        let start = line.trim_start();
        if start.is_empty() {
            // None leading, none twice in a row.
            if !self.out.is_empty() {
                self.blank = true;
                self.prev_quote = false;
            }
            return;
        }
        let quote = start.starts_with('>');
        if self.prev_quote && !quote {
            self.blank = true;
        }
        if !self.out.is_empty() {
            self.out.push('\n');
            if self.blank {
                self.out.push('\n');
            }
        }
        self.out.push_str(line.trim_end_matches(['\t']));
        self.blank = false;
        self.prev_quote = quote;
    }

    fn finish(self) -> String {
        self.out
    }
}

/// `text.lines()`, the line ends found by a vectorized search: lines split at
/// `\n`, one `\r` before it taken off, no empty line after a final `\n`.
fn lines_of(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text).filter(|t| !t.is_empty());
    std::iter::from_fn(move || {
        let t = rest?;
        match memchr::memchr(b'\n', t.as_bytes()) {
            Some(nl) => {
                let next = &t[nl + 1..];
                rest = Some(next).filter(|n| !n.is_empty());
                let line = &t[..nl];
                Some(line.strip_suffix('\r').unwrap_or(line))
            }
            None => {
                rest = None;
                Some(t)
            }
        }
    })
}

fn converter() -> &'static HtmlToMarkdown {
    static CONVERTER: OnceLock<HtmlToMarkdown> = OnceLock::new();
    CONVERTER.get_or_init(|| {
        HtmlToMarkdown::builder()
            .skip_tags(vec![
                "head", "title", "style", "script", "noscript", "template", "meta", "link", "svg",
                "object", "embed", "iframe", "video", "audio", "canvas",
            ])
            .add_handler(
                vec![
                    "div",
                    "span",
                    "p",
                    "td",
                    "th",
                    "tr",
                    "table",
                    "tbody",
                    "thead",
                    "a",
                    "font",
                    "center",
                    "section",
                    "article",
                    "header",
                    "footer",
                    "li",
                    "ul",
                    "ol",
                    "h1",
                    "h2",
                    "h3",
                    "h4",
                    "h5",
                    "h6",
                    "blockquote",
                    "strong",
                    "b",
                    "em",
                    "i",
                ],
                |handlers: &dyn Handlers, element: Element| -> Option<HandlerResult> {
                    if with_attrs(&element, is_hidden) {
                        return None;
                    }
                    handlers.fallback(element)
                },
            )
            .add_handler(vec!["img"], |_: &dyn Handlers, element: Element| {
                with_attrs(&element, img_to_text).map(HandlerResult::from)
            })
            .build()
    })
}

/// An element's attribute by name. htmd does not re-export html5ever's
/// attribute type: the handlers read the element's own attributes through
/// this (rather than copies of them all).
type Attrs<'e> = dyn Fn(&str) -> Option<&'e str> + 'e;

fn with_attrs<R>(element: &Element<'_>, f: impl FnOnce(&Attrs<'_>) -> R) -> R {
    let attrs = element.attrs;
    let attr = |name: &str| {
        attrs
            .iter()
            .find(|a| &*a.name.local == name)
            .map(|a| &*a.value)
    };
    f(&attr)
}

fn attr<'e>(attrs: &Attrs<'e>, name: &str) -> Option<&'e str> {
    attrs(name)
}

fn style_of(attrs: &Attrs) -> String {
    attr(attrs, "style")
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Content a mail client would not show: preheaders, mobile-only copies, Outlook-only
/// blocks. Class-based hiding (`<style>` rules) is not evaluated.
fn is_hidden(attrs: &Attrs) -> bool {
    if attr(attrs, "hidden").is_some() {
        return true;
    }
    let style = style_of(attrs);
    style.contains("display:none")
        || style.contains("visibility:hidden")
        || style.contains("mso-hide:all")
        || (style.contains("max-height:0") && style.contains("overflow:hidden"))
}

/// Images become their alt text only. Loading a remote image from a note would tell the
/// sender when and where the note is read, the very thing tracking pixels are for; and
/// 1×1 pixels carry no text at all.
fn img_to_text(attrs: &Attrs) -> Option<String> {
    if is_hidden(attrs) {
        return None;
    }
    let tiny = |v: Option<&str>| {
        v.map(|s| s.trim().trim_end_matches("px"))
            .and_then(|s| s.parse::<f32>().ok())
            .is_some_and(|n| n <= 2.0)
    };
    let style = style_of(attrs);
    let style_tiny = ["width:0", "width:1px", "height:0", "height:1px"]
        .iter()
        .any(|s| style.contains(s));
    if tiny(attr(attrs, "width")) || tiny(attr(attrs, "height")) || style_tiny {
        return None;
    }
    let alt = attr(attrs, "alt")?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if alt.is_empty() {
        return None;
    }
    Some(alt.replace('[', "\\[").replace(']', "\\]"))
}

/// HTML nested at most this deep is converted on the caller's stack (2 MiB threads
/// manage a few hundred levels even unoptimized).
const HTML_INLINE_DEPTH: usize = 150;
/// Deeper HTML is converted on a thread with [`HTML_STACK`]; deeper still is reduced
/// to plain text.
const HTML_MAX_DEPTH: usize = 4000;
const HTML_STACK: usize = 64 << 20;

/// HTML mail as Markdown, without what a reader never sees: `<head>`, CSS, scripts,
/// comments, hidden preheaders, tracking pixels, remote image URLs.
pub fn html_to_markdown(html: &str) -> String {
    html_to_markdown_checked(html, &mut Vec::new())
}

/// The HTML parser and converter recurse once per nesting level, and a stack
/// overflow aborts the whole process rather than failing one message: a mail with
/// thousands of nested `<div>`s must not end a sync.
fn html_to_markdown_checked(html: &str, problems: &mut Vec<String>) -> String {
    let depth = html_nesting_depth(html);
    if depth <= HTML_INLINE_DEPTH {
        return convert_html(html);
    }
    if depth <= HTML_MAX_DEPTH {
        let converted = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(HTML_STACK)
                .spawn_scoped(scope, || convert_html(html))
                .ok()
                .and_then(|handle| handle.join().ok())
        });
        if let Some(md) = converted {
            return md;
        }
    }
    problems.push(format!(
        "HTML nested {depth} levels deep, shown as plain text"
    ));
    plain_to_markdown(&mail_parser::decoders::html::html_to_text(html))
}

/// An upper estimate of how deep elements nest, from a scan of the tags: elements the
/// parser closes implicitly (`<p>`, `<li>`, `<td>`…) and void elements do not count.
fn html_nesting_depth(html: &str) -> usize {
    const FLAT: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr", "p", "li", "td", "th", "tr", "option", "dt", "dd",
    ];
    let b = html.as_bytes();
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        i += off + 1;
        let closing = b.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let end = start
            + b[start.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
        if end == start {
            continue; // comment, doctype or a bare '<'
        }
        let name = &b[start..end];
        if FLAT.iter().any(|f| f.as_bytes().eq_ignore_ascii_case(name)) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
            continue;
        }
        let self_closing = b[end..]
            .iter()
            .position(|&c| c == b'>')
            .is_some_and(|gt| gt > 0 && b[end + gt - 1] == b'/');
        if !self_closing {
            depth += 1;
            max = max.max(depth);
        }
    }
    max
}

fn convert_html(html: &str) -> String {
    let md = converter().convert(html).unwrap_or_default();
    let md = normalize_text(&md);
    let md = drop_empty_links(&md);
    // No `\r` is left after normalizing: see plain_to_markdown.
    let mut tidy = Tidy::with_capacity(md.len() + md.len() / 16);
    for line in lines_of(&md) {
        tidy.push(&escape_markdown_line(line));
    }
    tidy.finish()
}

/// Obsidian tags only; the rest of htmd's output is already escaped Markdown.
fn escape_markdown_line(line: &str) -> Cow<'_, str> {
    if memchr::memchr(b'#', line.as_bytes()).is_none() {
        return Cow::Borrowed(line);
    }
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev = if i == 0 { None } else { Some(chars[i - 1]) };
        let next = chars.get(i + 1).copied();
        if c == '#'
            && prev.is_some_and(char::is_whitespace)
            && next.is_some_and(char::is_alphabetic)
        {
            out.push_str("\\#");
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `[](url)` left behind by links whose only content was a dropped image.
fn drop_empty_links(md: &str) -> Cow<'_, str> {
    if memchr::memmem::find(md.as_bytes(), b"[](").is_none() {
        return Cow::Borrowed(md);
    }
    let mut out = String::with_capacity(md.len());
    let mut rest = md;
    while let Some(pos) = rest.find("[](") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 3..];
        let mut depth = 1usize;
        let mut end = None;
        for (i, c) in after.char_indices().take(4096) {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                '\n' => break,
                _ => {}
            }
        }
        match end {
            Some(e) => rest = &after[e + 1..],
            None => {
                out.push_str("[](");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------------------
// Quoted history

fn is_quote_line(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// A line stripped of the Markdown decoration HTML conversion adds (`**From:**`,
/// escaped `\-----`, hard-break spaces) so header and separator patterns match.
fn plain_form(line: &str) -> Cow<'_, str> {
    let t = line.trim();
    let t = t.trim_end_matches('\\').trim_end();
    // Most lines have no emphasis or escapes: no copy then.
    if !contains_any_ascii(t, b"*\\") && !t.starts_with('_') && !t.ends_with('_') {
        return Cow::Borrowed(t);
    }
    let plain = t
        .chars()
        .filter(|&c| c != '*' && c != '\\')
        .collect::<String>();
    Cow::Owned(plain.trim().trim_matches('_').trim().to_string())
}

const REPLY_SEPARATORS: &[&str] = &[
    "original message",
    "ursprüngliche nachricht",
    "originalnachricht",
    "message d'origine",
    "message d’origine",
    "mensaje original",
    "messaggio originale",
    "oorspronkelijk bericht",
    "originalmeddelande",
    "alkuperäinen viesti",
    "元のメッセージ",
    "原始邮件",
];

const FORWARD_SEPARATORS: &[&str] = &[
    "forwarded message",
    "weitergeleitete nachricht",
    "message transféré",
    "mensaje reenviado",
    "messaggio inoltrato",
    "doorgestuurd bericht",
    "vidarebefordrat meddelande",
    "転送メッセージ",
    "転送されたメッセージ",
    "转发的邮件",
];

const FORWARD_INTROS: &[&str] = &[
    "begin forwarded message:",
    "anfang der weitergeleiteten nachricht:",
    "début du message réexpédié :",
    "début du message réexpédié:",
    "inicio del mensaje reenviado:",
    "inizio messaggio inoltrato:",
    "転送されたメッセージ:",
];

/// `-----Original Message-----`, `---------- Forwarded message ---------` and the like.
fn separator_kind(line: &str) -> Option<QuoteKind> {
    // Every intro ends with a colon and every separator starts with dashes:
    // most lines have neither, and skip the allocations below.
    if !has_colon(line) && memchr::memchr(b'-', line.as_bytes()).is_none() {
        return None;
    }
    // Every intro ends with a colon and every separator starts with "--",
    // in lowercase as in the line itself: check before lowercasing.
    let plain = plain_form(line);
    if !plain.ends_with(':') && !plain.starts_with("--") {
        return None;
    }
    let p = plain.to_lowercase();
    if FORWARD_INTROS.contains(&p.as_str()) {
        return Some(QuoteKind::Forward);
    }
    if !p.starts_with("--") {
        return None;
    }
    let inner = p.trim_matches(|c: char| c == '-' || c.is_whitespace());
    if REPLY_SEPARATORS.contains(&inner) {
        return Some(QuoteKind::Reply);
    }
    if FORWARD_SEPARATORS.contains(&inner) {
        return Some(QuoteKind::Forward);
    }
    None
}

const FROM_LABELS: &[&str] = &[
    "from",
    "von",
    "de",
    "van",
    "da",
    "från",
    "fra",
    "od",
    "差出人",
    "发件人",
    "寄件者",
];
const DATE_LABELS: &[&str] = &[
    "sent",
    "date",
    "gesendet",
    "datum",
    "envoyé",
    "enviado",
    "fecha",
    "inviato",
    "data",
    "verzonden",
    "skickat",
    "sendt",
    "送信日時",
    "日付",
    "发送时间",
    "日期",
];
const TO_LABELS: &[&str] = &[
    "to",
    "an",
    "à",
    "a",
    "para",
    "aan",
    "till",
    "til",
    "subject",
    "betreff",
    "objet",
    "asunto",
    "oggetto",
    "onderwerp",
    "ämne",
    "emne",
    "宛先",
    "件名",
    "收件人",
    "主题",
];

/// Which of the label lists the label of a `Label: value` line is in
/// (lowercase), if it is one.
fn header_label(line: &str, colon: bool) -> Option<LabelKind> {
    if !colon {
        return None;
    }
    let p = plain_form(line);
    let (label, _) = p.split_once([':', '：'])?;
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 20 {
        return None;
    }
    Some(if label.is_ascii() {
        // An ASCII label lowercases to ASCII: equal to a listed label
        // (lowercase) exactly when equal ignoring ASCII case.
        let listed = |list: &[&str]| list.iter().any(|l| l.eq_ignore_ascii_case(label));
        LabelKind {
            from: listed(FROM_LABELS),
            date: listed(DATE_LABELS),
            to: listed(TO_LABELS),
        }
    } else {
        let label = label.to_lowercase();
        let listed = |list: &[&str]| list.contains(&label.as_str());
        LabelKind {
            from: listed(FROM_LABELS),
            date: listed(DATE_LABELS),
            to: listed(TO_LABELS),
        }
    })
}

/// The label lists a header label is in.
struct LabelKind {
    from: bool,
    date: bool,
    to: bool,
}

/// An Outlook-style header block: `From:` followed within a few lines by a date and a
/// recipient or subject line. `colons[k]`: whether `lines[k]` has a colon.
fn is_header_block(lines: &[&str], colons: &[bool], i: usize) -> bool {
    let Some(label) = header_label(lines[i], colons[i]) else {
        return false;
    };
    if !label.from {
        return false;
    }
    let (mut date, mut to) = (false, false);
    for (line, &colon) in lines.iter().zip(colons).skip(i + 1).take(6) {
        if line.trim().is_empty() && (date || to) {
            break;
        }
        if let Some(l) = header_label(line, colon) {
            date |= l.date;
            to |= l.to;
        }
    }
    date && to
}

const ATTRIBUTION_VERBS: &[&str] = &[
    "wrote",
    "writes",
    "schrieb",
    "a écrit",
    "escribió",
    "ha scritto",
    "schreef",
    "escreveu",
    "skrev",
    "napisał",
    "napsal",
    "kirjoitti",
    "yazdı",
    "написал",
    "のメッセージ",
    "のメール",
    "が書きました",
    "写道",
    "寫道",
];

const ATTRIBUTION_OPENERS: &[&str] = &[
    "on ", "am ", "le ", "el ", "il ", "op ", "em ", "den ", "w dniu ", "dne ",
];

/// "On Fri, Dec 12, 2025 at 4:04 PM John Mao <john@…> wrote:" and its translations,
/// possibly wrapped over up to three lines. Returns the index of its last line.
fn attribution_at(lines: &[&str], i: usize) -> Option<usize> {
    let colons: Vec<bool> = lines[i..lines.len().min(i + 3)]
        .iter()
        .map(|line| has_colon(line))
        .collect();
    attribution_in(&lines[i..], &colons, 0).map(|end| end + i)
}

/// [`attribution_at`], told which lines have a colon (`colons[k]` for
/// `lines[k]`, at least for the three lines from `i`).
fn attribution_in(lines: &[&str], colons: &[bool], i: usize) -> Option<usize> {
    // An attribution ends with a colon within its first three lines; plain
    // text rarely has one, and is rejected here without allocating.
    if !colons[i..lines.len().min(i + 3)].contains(&true) {
        return None;
    }
    let first = plain_form(lines[i]);
    if first.is_empty() || is_quote_line(lines[i]) {
        return None;
    }
    // Every opener is ASCII, lowercase, and ends with a space: the line
    // lowercased starts with one exactly when its first bytes equal it
    // ignoring ASCII case (no other character lowercases to ASCII but the
    // Kelvin sign's `k` and the dotted I's `i` with a combining dot, which
    // no opener can take).
    let looks_like_start = ATTRIBUTION_OPENERS.iter().any(|o| {
        first
            .as_bytes()
            .get(..o.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(o.as_bytes()))
    }) || first.chars().any(|c| c.is_ascii_digit())
        || first.contains('@');
    if !looks_like_start {
        return None;
    }
    let mut joined = String::new();
    for (j, line) in lines.iter().enumerate().skip(i).take(3) {
        let p = plain_form(line);
        if p.is_empty() || is_quote_line(line) {
            return None;
        }
        if j > i {
            // A finished sentence before is text, not the start of a wrapped attribution.
            if joined.ends_with(['.', '!', '?']) {
                return None;
            }
            joined.push(' ');
        }
        joined.push_str(&p);
        if joined.chars().count() > 300 {
            return None;
        }
        let ends = joined.ends_with(':') || joined.ends_with('：');
        if ends {
            let lower = joined.to_lowercase();
            let verb = ATTRIBUTION_VERBS.iter().any(|v| lower.contains(v));
            // Gmail in Japanese: "2025年12月12日(金) 16:04 John Mao <john@…>:"
            let ja_date = joined.contains('年') && joined.contains('月') && joined.contains('>');
            return (verb || ja_date).then_some(j);
        }
    }
    None
}

/// Whether `text` holds any of these ASCII characters: a byte search
/// (vectorized for up to three), where `str::contains` with a char array
/// decodes every character. The hot filters of parsing use it.
pub(crate) fn contains_any_ascii(text: &str, set: &[u8]) -> bool {
    debug_assert!(set.is_ascii());
    let bytes = text.as_bytes();
    match *set {
        [] => false,
        [a] => memchr::memchr(a, bytes).is_some(),
        [a, b] => memchr::memchr2(a, b, bytes).is_some(),
        [a, b, c] => memchr::memchr3(a, b, c, bytes).is_some(),
        _ => bytes.iter().any(|byte| set.contains(byte)),
    }
}

/// `:` or a full-width `：` (EF BC 9A) in `line`, by a vectorized search for
/// `:` and the full-width form's rare first byte.
pub(crate) fn has_colon(line: &str) -> bool {
    let bytes = line.as_bytes();
    memchr::memchr2_iter(b':', 0xEF, bytes)
        .any(|i| bytes[i] == b':' || bytes[i..].starts_with("：".as_bytes()))
}

fn join_attribution(lines: &[&str], from: usize, to: usize) -> String {
    let joined = lines[from..=to]
        .iter()
        .map(|l| plain_form(l))
        .collect::<Vec<_>>()
        .join(" ");
    unlink(&joined)
}

/// `[text](url)` → `text`: HTML mail links the address in "… <john@x> wrote:".
fn unlink(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let link = after.find("](").and_then(|close| {
            let url = &after[close + 2..];
            url.find(')').map(|end| (close, close + 2 + end + 1))
        });
        match link {
            Some((close, end)) if !after[..close].contains('[') => {
                out.push_str(&rest[..open]);
                out.push_str(&after[..close]);
                rest = &after[end..];
            }
            _ => {
                out.push_str(&rest[..open + 1]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn next_nonblank(lines: &[&str], from: usize) -> Option<usize> {
    (from..lines.len()).find(|&k| !lines[k].trim().is_empty())
}

fn is_rule(line: &str) -> bool {
    let t: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    t.len() >= 3
        && (t.chars().all(|c| c == '_')
            || t.chars().all(|c| c == '-')
            || t.chars().all(|c| c == '*'))
}

fn is_signature_marker(line: &str) -> bool {
    line == "-- " || line.trim_end() == "--" || line.trim_end() == "\\--"
}

/// Where top-posted history starts: first line, kind, and the attribution text with
/// its last line when an attribution opened it.
type Cut = (usize, QuoteKind, Option<(String, usize)>);

/// Splits a Markdown body into new text, collapsed quoted history and a short signature.
///
/// History at the end (top-posting: Outlook header blocks, `-----Original Message-----`,
/// forwarded-message separators, an attribution line followed by `>` quotes) and quotes
/// before all new text (bottom-posting) are collapsed. Quotes between new paragraphs
/// (inline replies) stay: they are the questions the new text answers.
pub fn collapse_quotes(markdown: &str) -> CollapsedBody {
    let lines: Vec<&str> = lines_of(markdown).collect();
    let n = lines.len();
    let colons: Vec<bool> = lines.iter().map(|line| has_colon(line)).collect();
    // Lines tidied as they are, rather than joined and split again, tidy the
    // same when none holds a `\r` (see tidy_lines); nearly always so.
    let has_cr = memchr::memchr(b'\r', markdown.as_bytes()).is_some();
    let tidy_joined = |lines: &[&str]| {
        if has_cr {
            tidy_markdown(&lines.join("\n"))
        } else {
            tidy_lines(lines.iter().copied(), 0)
        }
    };

    // 1. A hard cut: everything from there on is history.
    let mut cut: Option<Cut> = None;
    let mut i = 0;
    while i < n && cut.is_none() {
        let line = lines[i];
        if is_quote_line(line) {
            i += 1;
            continue;
        }
        if let Some(kind) = separator_kind(line) {
            cut = Some((i, kind, None));
        } else if is_header_block(&lines, &colons, i) {
            let mut start = i;
            while start > 0 && (lines[start - 1].trim().is_empty() || is_rule(lines[start - 1])) {
                start -= 1;
            }
            cut = Some((start, QuoteKind::Reply, None));
        } else if let Some(end) = attribution_in(&lines, &colons, i) {
            let followed_by_quote =
                next_nonblank(&lines, end + 1).is_some_and(|k| is_quote_line(lines[k]));
            if !followed_by_quote {
                cut = Some((
                    i,
                    QuoteKind::Reply,
                    Some((join_attribution(&lines, i, end), end)),
                ));
            }
            i = end;
        }
        i += 1;
    }
    let work_end = cut.as_ref().map_or(n, |c| c.0);

    // 2. Classify the rest.
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Blank,
        Text,
        Quote,
        Attribution,
        SigMarker,
        Sig,
    }
    let mut kinds = vec![Kind::Blank; work_end];
    let mut attributions: Vec<(usize, usize)> = Vec::new();
    let mut k = 0;
    while k < work_end {
        let line = lines[k];
        kinds[k] = if line.trim().is_empty() {
            Kind::Blank
        } else if is_quote_line(line) {
            Kind::Quote
        } else if let Some(end) = attribution_in(&lines[..work_end], &colons, k) {
            for kind in kinds.iter_mut().take(end + 1).skip(k) {
                *kind = Kind::Attribution;
            }
            attributions.push((k, end));
            k = end + 1;
            continue;
        } else {
            Kind::Text
        };
        k += 1;
    }
    // The last signature marker outside quotes; the signature runs to the next quote.
    if let Some(m) = (0..work_end)
        .rev()
        .find(|&k| kinds[k] == Kind::Text && is_signature_marker(lines[k]))
    {
        kinds[m] = Kind::SigMarker;
        for kind in kinds.iter_mut().take(work_end).skip(m + 1) {
            if matches!(*kind, Kind::Quote | Kind::Attribution) {
                break;
            }
            if *kind == Kind::Text {
                *kind = Kind::Sig;
            }
        }
    }

    // 3. Quote blocks: an attribution, then `>` lines with blank lines among them.
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    let mut k = 0;
    while k < work_end {
        if matches!(kinds[k], Kind::Quote | Kind::Attribution) {
            let start = k;
            let mut end = k;
            let mut j = k;
            while j < work_end && matches!(kinds[j], Kind::Quote | Kind::Attribution | Kind::Blank)
            {
                if kinds[j] != Kind::Blank {
                    end = j;
                }
                j += 1;
            }
            blocks.push((start, end));
            k = end + 1;
        } else {
            k += 1;
        }
    }
    let first_text = kinds.iter().position(|&k| k == Kind::Text);
    let last_text = kinds.iter().rposition(|&k| k == Kind::Text);
    let mut collapsed = vec![false; work_end];
    match (first_text, last_text) {
        (Some(first), Some(last)) => {
            let inline = blocks.iter().any(|&(s, e)| s > first && e < last);
            for &(s, e) in &blocks {
                if s > last || (e < first && !inline) {
                    collapsed[s..=e].iter_mut().for_each(|c| *c = true);
                }
            }
        }
        _ => {
            for &(s, e) in &blocks {
                collapsed[s..=e].iter_mut().for_each(|c| *c = true);
            }
        }
    }

    // 4. Assemble.
    let mut new_lines: Vec<&str> = Vec::new();
    let mut sig_lines: Vec<&str> = Vec::new();
    // The quoted parts' lines, one after another, an empty line between two
    // parts: these joined with `\n` are the parts joined with "\n\n".
    let mut quoted_lines: Vec<Cow<'_, str>> = Vec::new();
    let mut parts = 0usize;
    let mut attribution: Option<String> = None;
    let mut in_part = false;
    for k in 0..work_end {
        if collapsed[k] {
            let line = match kinds[k] {
                Kind::Attribution => {
                    let Some(&(s, e)) = attributions.iter().find(|a| a.0 == k) else {
                        continue;
                    };
                    if attribution.is_none() {
                        attribution = Some(join_attribution(&lines, s, e));
                        continue;
                    }
                    Cow::Owned(join_attribution(&lines, s, e))
                }
                Kind::Quote => Cow::Borrowed(unquote_once(lines[k])),
                _ => Cow::Borrowed(""),
            };
            if !in_part {
                if parts > 0 {
                    quoted_lines.push(Cow::Borrowed(""));
                }
                parts += 1;
                in_part = true;
            }
            quoted_lines.push(line);
            continue;
        }
        in_part = false;
        match kinds[k] {
            Kind::Sig => sig_lines.push(lines[k]),
            Kind::SigMarker => {}
            _ => new_lines.push(lines[k]),
        }
    }
    let mut kind = QuoteKind::Reply;
    if let Some((start, cut_kind, cut_attr)) = cut {
        kind = cut_kind;
        // The attribution's own lines are returned on their own.
        let mut from = cut_attr.as_ref().map_or(start, |(_, end)| end + 1);
        while from < n && (lines[from].trim().is_empty() || is_rule(lines[from])) {
            from += 1;
        }
        if attribution.is_none() {
            attribution = cut_attr.map(|(text, _)| text);
        }
        if parts > 0 {
            quoted_lines.push(Cow::Borrowed(""));
        }
        parts += 1;
        if from < n {
            quoted_lines.extend(lines[from..].iter().map(|&l| Cow::Borrowed(l)));
        } else {
            // An empty part, joined, is an empty line.
            quoted_lines.push(Cow::Borrowed(""));
        }
    }
    let mut quoted_text = if has_cr {
        tidy_markdown(&quoted_lines.join("\n"))
    } else if parts == 0 {
        String::new()
    } else {
        tidy_lines(quoted_lines.iter().map(|l| l.as_ref()), 0)
    };
    if attribution.is_none() {
        // Apple Mail and Gmail put the attribution inside the quote itself.
        // An attribution at line 0 is read from its first three lines.
        let qlines: Vec<&str> = quoted_text.lines().take(3).collect();
        if let Some(end) = (!qlines.is_empty())
            .then(|| attribution_at(&qlines, 0))
            .flatten()
        {
            attribution = Some(join_attribution(&qlines, 0, end));
            quoted_text = if quoted_text.contains('\r') {
                let qlines: Vec<&str> = quoted_text.lines().collect();
                tidy_markdown(&qlines[end + 1..].join("\n"))
            } else {
                // Tidied text without `\r` is its lines joined with `\n`
                // (never a `\n` at its end): the lines after `end` joined
                // are the text after its `end + 1`th `\n`.
                let rest = memchr::memchr_iter(b'\n', quoted_text.as_bytes())
                    .nth(end)
                    .map_or("", |nl| &quoted_text[nl + 1..]);
                tidy_markdown(rest)
            };
        }
    }
    let quoted = if quoted_text.is_empty() && attribution.is_none() {
        None
    } else {
        Some(Quoted {
            kind,
            attribution,
            text: quoted_text,
        })
    };
    CollapsedBody {
        new: tidy_joined(&new_lines),
        quoted,
        signature: shorten_signature(tidy_joined(&sig_lines)),
    }
}

fn unquote_once(line: &str) -> &str {
    let t = line.trim_start();
    let t = t.strip_prefix('>').unwrap_or(t);
    t.strip_prefix(' ').unwrap_or(t)
}

/// `text`: the signature's lines, tidied.
fn shorten_signature(text: String) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if kept.len() <= SIGNATURE_MAX_LINES {
        return Some(text);
    }
    let mut s = kept[..SIGNATURE_MAX_LINES].join("\n");
    s.push_str("\n…");
    Some(s)
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
