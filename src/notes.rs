//! Source notes: one Markdown note per thread, in the user's vault.
//!
//! A note is shared between the bridge and the user, so its layout is about
//! who owns which bytes:
//!
//! - **Front matter**: the bridge owns the keys of SPEC §Source notes
//!   ([`OWNED_KEYS`]); every other top-level key (`tags:`, `status:`, …) is
//!   the user's and is kept verbatim, with its comments and formatting, after
//!   the bridge's keys, in the user's order.
//! - **The bridge region**: everything between the lines
//!   `<!-- mailbridge:begin … -->` and `<!-- mailbridge:end … -->` (HTML
//!   comments, hidden in Obsidian's reading view) is regenerated on every
//!   sync. The end marker carries a hash of the region as written, so an edit
//!   the user made *inside* it is detected: the new region is written and the
//!   user's edited copy is kept below it, verbatim, instead of being lost.
//! - **Everything else** (text before the begin marker, and after the end
//!   marker, where a new note has its `## Notes` heading) is the user's and is
//!   kept byte for byte.
//! - A note whose markers are gone or unusable (deleted, duplicated, out of
//!   order) is treated as all user text: the new region goes first and the old
//!   body follows verbatim, stray marker lines defused so the next sync sees
//!   exactly one region again.
//!
//! Rendering is a pure function of the thread and the existing text, so an
//! unchanged thread re-renders to identical bytes and [`NoteWriter`] skips
//! the write. The note's path is chosen once ([`note_relative_path`]) and
//! persisted by the caller; rendering never looks at it, so a thread whose
//! first message changes keeps its file.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::{self, Write as _};
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------------------
// Input types
// ---------------------------------------------------------------------------

/// A thread as the notes module needs it; the sync converts its threads into
/// this so that rendering stays independent of IMAP and parsing types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NoteThread {
    /// The config's account name.
    pub account: String,
    /// Stable across syncs (the root Message-ID, or a synthesized key).
    pub thread_id: String,
    pub subject: String,
    /// In any order: rendering sorts them by date.
    pub messages: Vec<NoteMessage>,
    pub analysis: NoteAnalysis,
    /// The user's own addresses, so their messages can be marked "(you)".
    pub user_addresses: Vec<String>,
}

/// Filled by the analysis of a later issue; the defaults render empty
/// sections, `needs_reply: false` and `urgency: normal`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NoteAnalysis {
    /// Markdown.
    pub summary: String,
    pub key_points: Vec<String>,
    /// Asked of the user.
    pub questions: Vec<String>,
    /// Promises by either side: who promised what.
    pub commitments: Vec<String>,
    pub needs_reply: bool,
    pub urgency: Urgency,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    Low,
    #[default]
    Normal,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NoteMessage {
    /// UID of the message's first location; names the note file when this
    /// is the thread's first message.
    pub uid: u32,
    pub folder: String,
    pub message_id: Option<String>,
    pub from: Address,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub date: NoteDate,
    pub subject: String,
    /// The message text as Markdown (HTML already converted).
    pub body_markdown: String,
    /// The quoted history split off the body, shown collapsed.
    pub quoted: Option<String>,
    pub attachments: Vec<Attachment>,
    /// What could not be decoded; the note says so instead of hiding it.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    pub name: Option<String>,
    pub email: String,
}

impl Address {
    pub fn new(name: Option<&str>, email: &str) -> Address {
        Address {
            name: name.map(str::to_owned),
            email: email.to_owned(),
        }
    }

    /// A name worth showing: not empty and not just the address again.
    fn shown_name(&self) -> Option<&str> {
        let name = self.name.as_deref()?.trim();
        (!name.is_empty() && !name.eq_ignore_ascii_case(self.email.trim())).then_some(name)
    }

    /// `Name <email>` as mail clients show it, for front matter. A name with
    /// RFC 5322 specials is quoted (`"O'Brien, Sarah" <s@x>`), so the value
    /// also works as an address (a draft's `to:` is taken from `last_from`).
    pub fn display(&self) -> String {
        let email = self.email.trim();
        match (self.shown_name(), email.is_empty()) {
            (Some(name), false) if name.contains(|c| "()<>[]:;@\\,\"".contains(c)) => {
                let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{quoted}\" <{email}>")
            }
            (Some(name), false) => format!("{name} <{email}>"),
            (Some(name), true) => name.to_owned(),
            (None, false) => email.to_owned(),
            (None, true) => "(unknown sender)".to_owned(),
        }
    }

    /// Identity for de-duplicating participants: addresses compare without
    /// case, as every mail client treats them.
    fn key(&self) -> String {
        let email = self.email.trim();
        if email.is_empty() {
            self.shown_name().unwrap_or("").to_lowercase()
        } else {
            email.to_lowercase()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Attachment {
    pub name: String,
    pub mime_type: String,
    /// Decoded size in bytes.
    pub size: u64,
}

/// A message date kept in the sender's own UTC offset, because the note's
/// file name and the dates it shows use the time as the sender wrote it;
/// [`NoteDate::unix`] orders dates across offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoteDate {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    offset_minutes: i16,
}

impl Default for NoteDate {
    fn default() -> NoteDate {
        NoteDate {
            year: 1970,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            offset_minutes: 0,
        }
    }
}

impl NoteDate {
    /// Local date and time at `offset_minutes` east of UTC; `None` for an
    /// impossible date. A leap second (`second == 60`) is accepted because
    /// mail carries them.
    pub fn new(
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        offset_minutes: i16,
    ) -> Option<NoteDate> {
        let valid = year <= 9999
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second <= 60
            && offset_minutes.unsigned_abs() < 24 * 60;
        valid.then_some(NoteDate {
            year,
            month,
            day,
            hour,
            minute,
            second,
            offset_minutes,
        })
    }

    /// For dates known as an instant plus an offset (e.g. IMAP INTERNALDATE).
    pub fn from_unix(unix: i64, offset_minutes: i16) -> Option<NoteDate> {
        if offset_minutes.unsigned_abs() >= 24 * 60 {
            return None;
        }
        let local = unix.checked_add(i64::from(offset_minutes) * 60)?;
        let (y, m, d) = civil_from_days(local.div_euclid(86_400));
        let secs = local.rem_euclid(86_400);
        let year = u16::try_from(y).ok()?;
        NoteDate::new(
            year,
            m as u8,
            d as u8,
            (secs / 3600) as u8,
            (secs / 60 % 60) as u8,
            (secs % 60) as u8,
            offset_minutes,
        )
    }

    /// Parses RFC 3339 (`2025-12-12T16:04:26-08:00`, `…Z`, fractions dropped).
    pub fn parse_rfc3339(s: &str) -> Option<NoteDate> {
        let b = s.trim().as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = b.get(r)?;
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let mut i = 19;
        if b[i] == b'.' {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        let offset = match b.get(i)? {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
                let minutes = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
                let minutes = i16::try_from(minutes).ok()?;
                if *sign == b'-' {
                    -minutes
                } else {
                    minutes
                }
            }
            _ => return None,
        };
        NoteDate::new(
            u16::try_from(num(0..4)?).ok()?,
            num(5..7)? as u8,
            num(8..10)? as u8,
            num(11..13)? as u8,
            num(14..16)? as u8,
            num(17..19)? as u8,
            offset,
        )
    }

    pub fn unix(&self) -> i64 {
        days_from_civil(i64::from(self.year), self.month.into(), self.day.into()) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes) * 60
    }

    pub fn offset_minutes(&self) -> i16 {
        self.offset_minutes
    }

    /// Local (sender's offset) calendar fields.
    pub fn year(&self) -> u16 {
        self.year
    }

    pub fn month(&self) -> u8 {
        self.month
    }

    pub fn day(&self) -> u8 {
        self.day
    }

    pub fn hour(&self) -> u8 {
        self.hour
    }

    pub fn minute(&self) -> u8 {
        self.minute
    }

    pub fn second(&self) -> u8 {
        self.second
    }

    /// `2025-12-12T16:04:26-08:00`: the sender's offset kept, `+00:00` for UTC.
    pub fn rfc3339(&self) -> String {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let off = self.offset_minutes.unsigned_abs();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            off / 60,
            off % 60
        )
    }

    /// `2025-12-12_160426`, the file-name stamp.
    fn file_stamp(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}_{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2025-12-12 16:04`, for headings.
    fn short(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }
}

impl PartialOrd for NoteDate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NoteDate {
    /// By instant; equal instants in different offsets still get a fixed
    /// order, so sorting is deterministic.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.unix(), self.offset_minutes, self.second).cmp(&(
            other.unix(),
            other.offset_minutes,
            other.second,
        ))
    }
}

impl fmt::Display for NoteDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl std::str::FromStr for NoteDate {
    type Err = String;
    fn from_str(s: &str) -> Result<NoteDate, String> {
        NoteDate::parse_rfc3339(s).ok_or_else(|| format!("not an RFC 3339 date: {s:?}"))
    }
}

impl Serialize for NoteDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for NoteDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NoteDate, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (H. Hinnant's algorithm), to avoid a date crate.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

const MAX_SLUG: usize = 60;

/// The messages oldest first. Ties (same second) are broken by Message-ID,
/// folder and UID so that the order, and so the note, never depends on the
/// order the caller happened to collect them in.
fn chronological(thread: &NoteThread) -> Vec<&NoteMessage> {
    let mut messages: Vec<&NoteMessage> = thread.messages.iter().collect();
    messages.sort_by(|a, b| {
        (a.date, &a.message_id, &a.folder, a.uid).cmp(&(b.date, &b.message_id, &b.folder, b.uid))
    });
    messages
}

/// `<YYYY>/<YYYY-MM-DD>_<HHMMSS>_<UID>_<Subject-Slug>.md`, relative to the
/// sources folder, from the thread's first message in its own offset.
///
/// Call this once per thread and persist the result: the first message can
/// change later (an older message found in another folder), and the note must
/// not move when it does. A thread without messages (which the sync never
/// produces) gets a `0000/` path instead of a panic.
pub fn note_relative_path(thread: &NoteThread) -> PathBuf {
    let slug = subject_slug(&thread.subject);
    match chronological(thread).first() {
        Some(first) => PathBuf::from(format!("{:04}", first.date.year())).join(format!(
            "{}_{}_{}.md",
            first.date.file_stamp(),
            first.uid,
            slug
        )),
        None => PathBuf::from("0000").join(format!("0000-00-00_000000_0_{slug}.md")),
    }
}

/// The `n`th alternative of a note path (`…_Re-OpenAI-2.md`), for the rare
/// case where two threads would get the same name (same second, same UID in
/// different folders, same subject); the caller picks the first free one.
pub fn alternative_path(path: &Path, n: u32) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}-{n}.md"))
}

/// The subject as a file-name slug: `[A-Za-z0-9-]` only, other runs become
/// one `-`, common Latin accents transliterated, at most 60 characters.
pub fn subject_slug(subject: &str) -> String {
    let mut slug = String::new();
    let mut gap = false;
    for c in subject.chars() {
        // "Don't" reads better as "Dont" than "Don-t".
        if matches!(c, '\'' | '\u{2019}') {
            continue;
        }
        let start = slug.len();
        if gap && !slug.is_empty() {
            slug.push('-');
        }
        let added = if c.is_ascii_alphanumeric() {
            slug.push(c);
            true
        } else {
            push_transliterated(c, &mut slug)
        };
        if added {
            gap = false;
        } else {
            // Nothing for this character: no separator either, yet.
            slug.truncate(start);
            gap = true;
        }
    }
    if slug.len() > MAX_SLUG {
        // Cut after a whole word, unless that would lose most of the slug.
        let mid_word = slug.as_bytes()[MAX_SLUG] != b'-';
        let cut = match slug[..MAX_SLUG].rfind('-') {
            Some(i) if mid_word && i >= MAX_SLUG / 2 => i,
            _ => MAX_SLUG,
        };
        slug.truncate(cut);
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "no-subject".to_owned()
    } else {
        slug.to_owned()
    }
}

/// ASCII for the accented Latin letters common in mail subjects (German
/// umlauts as `ae`/`oe`/`ue`, as Germans write them without umlauts).
/// Pushes it onto `slug`; false (nothing pushed) for any other character.
fn push_transliterated(c: char, slug: &mut String) -> bool {
    let Some(lower) = c.to_lowercase().next() else {
        return false;
    };
    let ascii = match lower {
        'à' | 'á' | 'â' | 'ã' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ä' | 'æ' => "ae",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ł' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ø' | 'ō' | 'ő' => "o",
        'ö' | 'œ' => "oe",
        'ř' => "r",
        'ś' | 'š' | 'ş' => "s",
        'ß' => "ss",
        'ť' | 'ţ' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ü' => "ue",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return false,
    };
    if c.is_uppercase() {
        let (first, rest) = ascii.split_at(1);
        slug.push_str(&first.to_ascii_uppercase());
        slug.push_str(rest);
    } else {
        slug.push_str(ascii);
    }
    true
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// The front-matter keys the bridge writes, in the order it writes them.
/// Every other key belongs to the user.
pub const OWNED_KEYS: &[&str] = &[
    "type",
    "account",
    "subject",
    "thread_id",
    "participants",
    "first_date",
    "last_date",
    "last_from",
    "message_count",
    "needs_reply",
    "urgency",
    "message_ids",
];

const BEGIN_PREFIX: &str = "<!-- mailbridge:begin";
const END_PREFIX: &str = "<!-- mailbridge:end";
const BEGIN_LINE: &str = "<!-- mailbridge:begin: bridge sync rewrites everything up to mailbridge:end; write your own text outside it, e.g. under ## Notes -->\n";
const HASH_TAG: &str = "fnv1a64:";
const NOTES_SECTION: &str = "\n## Notes\n";
const KEPT_EDIT_NOTICE: &str = "> [!note] mailbridge: you had edited the synced part above. It was rewritten; your edited copy is kept below as it was.\n\n";

/// The note for `thread`: a new one, or `existing` with the bridge's parts
/// replaced and the user's kept (see the module doc for the rules).
pub fn render_note(thread: &NoteThread, existing: Option<&str>) -> String {
    let messages = chronological(thread);
    let region = render_region(thread, &messages);
    let parsed = existing.map(parse_note);

    let mut out = String::with_capacity(region.len() + 1024);
    out.push_str("---\n");
    render_owned_front_matter(&mut out, thread, &messages);
    if let Some(parsed) = &parsed {
        for block in &parsed.user_keys {
            out.push_str(block.text);
            if !block.text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out.push_str("---\n");

    let push_region = |out: &mut String| {
        out.push_str(BEGIN_LINE);
        out.push_str(&region);
        let _ = writeln!(
            out,
            "{END_PREFIX} {HASH_TAG}{:016x} -->",
            region_hash(&region)
        );
    };
    match parsed.map(|p| p.body) {
        None => {
            push_region(&mut out);
            out.push_str(NOTES_SECTION);
        }
        Some(Body::Marked {
            before,
            region: old,
            state,
            after,
        }) => {
            out.push_str(before);
            push_region(&mut out);
            if state == MarkedState::Edited {
                out.push('\n');
                out.push_str(KEPT_EDIT_NOTICE);
                out.push_str(old);
            }
            out.push_str(after);
        }
        Some(Body::Unmarked(body)) => {
            push_region(&mut out);
            if body.trim().is_empty() {
                out.push_str(NOTES_SECTION);
            } else {
                out.push('\n');
                out.push_str(&defuse_markers(body));
            }
        }
    }
    out
}

fn render_owned_front_matter(out: &mut String, thread: &NoteThread, messages: &[&NoteMessage]) {
    let first = messages.first();
    let last = messages.last();
    let date = |m: Option<&&NoteMessage>| m.map(|m| m.date.rfc3339()).unwrap_or_default();
    let mut ids: Vec<&str> = Vec::new();
    for id in messages.iter().filter_map(|m| m.message_id.as_deref()) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let participants: Vec<String> = participants(messages)
        .iter()
        .map(Address::display)
        .collect();

    out.push_str("type: email-thread\n");
    let _ = writeln!(out, "account: {}", yaml_str(&thread.account));
    let _ = writeln!(out, "subject: {}", yaml_str(&thread.subject));
    let _ = writeln!(out, "thread_id: {}", yaml_str(&thread.thread_id));
    let _ = writeln!(out, "participants: {}", yaml_list(&participants));
    let _ = writeln!(out, "first_date: {}", yaml_str(&date(first)));
    let _ = writeln!(out, "last_date: {}", yaml_str(&date(last)));
    let last_from = last.map(|m| m.from.display()).unwrap_or_default();
    let _ = writeln!(out, "last_from: {}", yaml_str(&last_from));
    let _ = writeln!(out, "message_count: {}", messages.len());
    let _ = writeln!(out, "needs_reply: {}", thread.analysis.needs_reply);
    let _ = writeln!(out, "urgency: {}", thread.analysis.urgency.as_str());
    let _ = writeln!(out, "message_ids: {}", yaml_list(&ids));
}

/// Everyone in the thread, in order of first appearance (From, To, Cc of
/// each message, oldest first), once each; the first real name seen wins.
fn participants(messages: &[&NoteMessage]) -> Vec<Address> {
    let mut seen: Vec<(String, Address)> = Vec::new();
    for m in messages {
        for a in std::iter::once(&m.from).chain(&m.to).chain(&m.cc) {
            let key = a.key();
            if key.is_empty() {
                continue;
            }
            match seen.iter_mut().find(|(k, _)| *k == key) {
                Some((_, known)) => {
                    if known.shown_name().is_none() && a.shown_name().is_some() {
                        known.name = a.name.clone();
                    }
                }
                None => seen.push((key, a.clone())),
            }
        }
    }
    seen.into_iter().map(|(_, a)| a).collect()
}

/// A YAML double-quoted scalar. Hand-written rather than serde_norway so the
/// layout (flow lists, key order) stays exactly SPEC's; escapes every
/// character YAML 1.1 or 1.2 could read as a line break or reject.
fn yaml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn yaml_list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|s| yaml_str(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// The bridge's part of the body, without its markers.
fn render_region(thread: &NoteThread, messages: &[&NoteMessage]) -> String {
    let mut out = String::new();
    let subject = if thread.subject.trim().is_empty() {
        "(no subject)".to_owned()
    } else {
        escape_inline(&thread.subject)
    };
    let _ = writeln!(out, "# {subject}\n");

    let a = &thread.analysis;
    out.push_str("## Summary\n\n");
    let summary = defang(&sanitize_markdown(&a.summary));
    if !summary.is_empty() {
        let _ = writeln!(out, "{summary}\n");
    }
    for (title, items) in [
        ("Key Points", &a.key_points),
        ("Questions", &a.questions),
        ("Commitments", &a.commitments),
    ] {
        let _ = writeln!(out, "## {title}\n");
        let mut any = false;
        for item in items {
            let item = defang(&sanitize_markdown(item));
            if item.is_empty() {
                continue;
            }
            any = true;
            let _ = writeln!(out, "- {}", item.replace('\n', "\n  "));
        }
        if any {
            out.push('\n');
        }
    }

    out.push_str("## Messages\n\n");
    let thread_subject = strip_reply_prefixes(&thread.subject);
    for (i, m) in messages.iter().enumerate() {
        render_message(&mut out, thread, &thread_subject, i + 1, m);
    }
    out
}

/// `thread_subject`: the thread's subject as [`strip_reply_prefixes`] gives it.
fn render_message(
    out: &mut String,
    thread: &NoteThread,
    thread_subject: &str,
    n: usize,
    m: &NoteMessage,
) {
    let own = thread
        .user_addresses
        .iter()
        .any(|u| u.trim().eq_ignore_ascii_case(m.from.email.trim()));
    let sender = m
        .from
        .shown_name()
        .map(str::to_owned)
        .unwrap_or_else(|| m.from.display());
    let you = if own { " (you)" } else { "" };
    let _ = writeln!(
        out,
        "### {n}. {}{you} — {}\n",
        escape_inline(&sender),
        m.date.short()
    );

    let _ = writeln!(out, "- **From:** {}", md_address(&m.from));
    for (label, list) in [("To", &m.to), ("Cc", &m.cc)] {
        if !list.is_empty() {
            let list: Vec<String> = list.iter().map(md_address).collect();
            let _ = writeln!(out, "- **{label}:** {}", list.join(", "));
        }
    }
    let _ = writeln!(out, "- **Date:** {}", m.date.rfc3339());
    if strip_reply_prefixes(&m.subject) != thread_subject {
        let _ = writeln!(out, "- **Subject:** {}", escape_inline(&m.subject));
    }
    out.push('\n');

    if !m.problems.is_empty() {
        out.push_str("> [!warning] Not fully decoded\n");
        for p in &m.problems {
            let _ = writeln!(out, "> - {}", escape_inline(p));
        }
        out.push('\n');
    }

    let body = demote_headings(&defang(&sanitize_markdown(&m.body_markdown)));
    if body.is_empty() {
        out.push_str("*(no text)*\n\n");
    } else {
        let _ = writeln!(out, "{body}\n");
    }

    if !m.attachments.is_empty() {
        out.push_str("**Attachments:**\n\n");
        for a in &m.attachments {
            let name = if a.name.trim().is_empty() {
                "(unnamed)".to_owned()
            } else {
                escape_inline(&a.name)
            };
            let mime = if a.mime_type.trim().is_empty() {
                "application/octet-stream".to_owned()
            } else {
                escape_inline(&a.mime_type)
            };
            let _ = writeln!(out, "- {name} ({mime}, {})", human_size(a.size));
        }
        out.push('\n');
    }

    if let Some(quoted) = m.quoted.as_deref() {
        let quoted = defang(&sanitize_markdown(quoted));
        if !quoted.is_empty() {
            out.push_str("> [!quote]- Quoted history\n");
            for line in quoted.lines() {
                if line.is_empty() {
                    out.push_str(">\n");
                } else {
                    let _ = writeln!(out, "> {line}");
                }
            }
            out.push('\n');
        }
    }
}

/// `Name <email>` for the body: the name escaped, the address as a CommonMark
/// autolink when it is a plain address, escaped text otherwise.
fn md_address(a: &Address) -> String {
    let email = a.email.trim();
    let plain = !email.is_empty()
        && email.matches('@').count() == 1
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"`".contains(c));
    let email_md = if plain {
        format!("<{email}>")
    } else {
        escape_inline(email)
    };
    match (a.shown_name(), email.is_empty()) {
        (Some(name), false) => format!("{} {email_md}", escape_inline(name)),
        (Some(name), true) => escape_inline(name),
        (None, false) => email_md,
        (None, true) => "(unknown)".to_owned(),
    }
}

/// So a message's own subject is shown only when it really differs.
fn strip_reply_prefixes(subject: &str) -> String {
    const PREFIXES: [&str; 9] = [
        "re:", "fwd:", "fw:", "aw:", "wg:", "sv:", "vs:", "antw:", "tr:",
    ];
    // An ASCII comparison finds what lowercasing the whole subject would
    // (no other character lowercases to these letters), without a copy.
    let mut s = subject.trim();
    while let Some(n) = PREFIXES
        .iter()
        .find(|p| {
            s.as_bytes()
                .get(..p.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(p.as_bytes()))
        })
        .map(|p| p.len())
    {
        s = s[n..].trim_start();
    }
    crate::message::squash_whitespace(s).to_lowercase()
}

/// Mail text inside Markdown prose (subjects, names, file names): one line,
/// with every character that Markdown or Obsidian would act on escaped
/// (`#tag`, `[[link]]`, `$math$`, `%%comment%%`, HTML, emphasis, tables).
fn escape_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if "\\`*_[]<>#|~$%&=^".contains(c) {
                out.push('\\');
            }
            if !c.is_control() {
                out.push(c);
            }
        }
    }
    out
}

/// Markdown from mail, made safe to embed: LF line ends, no HTML comment
/// openers (one could hide the rest of the note or fake a bridge marker), code
/// fences closed (an open one would swallow the rest of the note), blank
/// lines trimmed at both ends.
fn sanitize_markdown(s: &str) -> String {
    let s = if s.contains('\r') {
        Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(s)
    };
    let s = if s.contains("<!--") {
        Cow::Owned(s.replace("<!--", "<\\!--"))
    } else {
        s
    };
    let mut out = String::with_capacity(s.len());
    let mut fence: Option<(char, usize)> = None;
    for line in s.lines() {
        let line = line.trim_end();
        match fence {
            None => fence = fence_open(line),
            Some((c, n)) => {
                if fence_closes(line, c, n) {
                    fence = None;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some((c, n)) = fence {
        out.extend(std::iter::repeat_n(c, n));
        out.push('\n');
    }
    let trimmed = out.trim_end_matches('\n');
    let start = trimmed
        .find(|c| c != '\n')
        .map(|i| trimmed[..i].rfind('\n').map_or(0, |j| j + 1))
        .unwrap_or(trimmed.len());
    trimmed[start..].to_owned()
}

/// Mail text that Obsidian would turn into vault structure, escaped outside
/// code: `#word` (a tag: mail would flood the user's tag list), `$` (inline
/// math, which prices like `$5-$10` trigger) and `%%` (a comment hiding the
/// rest of the note).
fn defang(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut fence: Option<(char, usize)> = None;
    for line in s.split_inclusive('\n') {
        let was_code = fence.is_some();
        match fence {
            None => fence = fence_open(line.trim_end()),
            Some((c, n)) => {
                if fence_closes(line.trim_end(), c, n) {
                    fence = None;
                }
            }
        }
        // Most lines have nothing to escape: copied as they are.
        if was_code || fence.is_some() || !crate::message::contains_any_ascii(line, b"`#$%") {
            out.push_str(line);
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let prev = i.checked_sub(1).map(|j| chars[j]);
            if c == '`' {
                // An inline code span: copied as is up to its matching run.
                let run = chars[i..].iter().take_while(|x| **x == '`').count();
                let close = (i + run..chars.len()).find(|&j| {
                    chars[j..].iter().take_while(|x| **x == '`').count() == run
                        && (j == 0 || chars[j - 1] != '`')
                });
                let end = close.map_or(i + run, |j| j + run);
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
            let escaped = prev == Some('\\');
            let next = chars.get(i + 1).copied();
            let tag = c == '#'
                && prev.is_none_or(char::is_whitespace)
                && next.is_some_and(|n| !n.is_whitespace() && n != '#');
            let comment = c == '%' && (next == Some('%') || prev == Some('%'));
            if !escaped && (tag || c == '$' || comment) {
                out.push('\\');
            }
            out.push(c);
            i += 1;
        }
    }
    out
}

fn fence_open(line: &str) -> Option<(char, usize)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let c = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = rest.chars().take_while(|x| *x == c).count();
    (n >= 3 && !(c == '`' && rest[n..].contains('`'))).then_some((c, n))
}

fn fence_closes(line: &str, c: char, n: usize) -> bool {
    let t = line.trim();
    t.chars().take_while(|x| *x == c).count() >= n && t.chars().all(|x| x == c)
}

/// Message headings moved below the note's own (`#` → `####`), outside code,
/// so a message's `<h1>` does not break the note's outline.
fn demote_headings(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut fence: Option<(char, usize)> = None;
    for line in s.lines() {
        match fence {
            None => fence = fence_open(line),
            Some((c, n)) => {
                if fence_closes(line, c, n) {
                    fence = None;
                }
            }
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        let hashes = line[indent..].chars().take_while(|c| *c == '#').count();
        let after = &line[indent + hashes..];
        if fence.is_none()
            && indent <= 3
            && (1..=6).contains(&hashes)
            && (after.is_empty() || after.starts_with(' '))
        {
            out.push_str(&"#".repeat((hashes + 3).min(6)));
            out.push_str(after);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.pop();
    out
}

fn human_size(n: u64) -> String {
    const KB: f64 = 1024.0;
    let f = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if f < KB * KB {
        format!("{:.1} KB", f / KB)
    } else if f < KB * KB * KB {
        format!("{:.1} MB", f / (KB * KB))
    } else {
        format!("{:.1} GB", f / (KB * KB * KB))
    }
}

/// FNV-1a over the region with trailing whitespace and trailing blank lines
/// ignored, so an editor that trims whitespace does not count as an edit.
/// Hand-written because std's hasher may change between Rust releases and
/// this value is stored in notes.
fn region_hash(region: &str) -> u64 {
    fn add(h: &mut u64, bytes: &[u8]) {
        for &b in bytes {
            *h ^= u64::from(b);
            *h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // The lines, trimmed, joined with "\n", trailing blank lines dropped:
    // the separators before a line with text are added when it comes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut last_text: Option<usize> = None;
    for (k, line) in region.lines().map(str::trim_end).enumerate() {
        if line.is_empty() {
            continue;
        }
        let separators = k - last_text.map_or(0, |last| last);
        for _ in 0..separators {
            add(&mut h, b"\n");
        }
        add(&mut h, line.as_bytes());
        last_text = Some(k);
    }
    h
}

// ---------------------------------------------------------------------------
// Reading existing notes
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkedState {
    Intact,
    Edited,
}

#[derive(Debug)]
enum Body<'a> {
    Marked {
        before: &'a str,
        region: &'a str,
        state: MarkedState,
        after: &'a str,
    },
    /// No usable markers: all of it is the user's.
    Unmarked(&'a str),
}

struct ParsedNote<'a> {
    user_keys: Vec<FmBlockOwned<'a>>,
    body: Body<'a>,
}

/// One top-level front-matter entry, verbatim: its key line and the lines
/// that continue it (indented lines, list items, comments, blank lines).
#[derive(Debug)]
struct FmBlockOwned<'a> {
    key: Option<String>,
    text: &'a str,
}

fn parse_note(text: &str) -> ParsedNote<'_> {
    let (front_matter, body) = split_front_matter(text);
    let user_keys = front_matter
        .map(front_matter_blocks)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| !b.key.as_deref().is_some_and(|k| OWNED_KEYS.contains(&k)))
        .collect();
    ParsedNote {
        user_keys,
        body: split_body(body),
    }
}

/// The front matter's inner text and the rest, if the text starts with a
/// `---` line closed by a `---` (or `...`) line.
fn split_front_matter(text: &str) -> (Option<&str>, &str) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let Some(first) = lines.next() else {
        return (None, text);
    };
    if first.trim_end() != "---" {
        return (None, text);
    }
    let mut pos = first.len();
    for line in lines {
        let t = line.trim_end();
        if t == "---" || t == "..." {
            return (Some(&text[first.len()..pos]), &text[pos + line.len()..]);
        }
        pos += line.len();
    }
    (None, text)
}

fn front_matter_blocks(fm: &str) -> Vec<FmBlockOwned<'_>> {
    let mut blocks = Vec::new();
    let (mut start, mut pos) = (0, 0);
    let mut key: Option<String> = None;
    for line in fm.split_inclusive('\n') {
        if let Some(k) = top_level_key(line) {
            if pos > start {
                blocks.push(FmBlockOwned {
                    key: key.take(),
                    text: &fm[start..pos],
                });
            }
            start = pos;
            key = Some(k);
        }
        pos += line.len();
    }
    if pos > start {
        blocks.push(FmBlockOwned {
            key,
            text: &fm[start..pos],
        });
    }
    blocks
}

/// The key of a line that starts a top-level mapping entry (`key: …`,
/// `"key": …`, `'key': …`); `None` for continuation lines.
fn top_level_key(line: &str) -> Option<String> {
    let line = line.trim_end_matches(['\n', '\r']);
    let first = line.chars().next()?;
    if first.is_whitespace() || "-#?:[]{},&*!|>%@`".contains(first) {
        return None;
    }
    let colon_ends_key = |rest: &str| {
        let rest = rest.trim_start_matches([' ', '\t']);
        rest.strip_prefix(':')
            .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
    };
    match first {
        '"' => {
            let mut key = String::new();
            let mut chars = line[1..].char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => key.push(chars.next()?.1),
                    '"' => return colon_ends_key(&line[1 + i + 1..]).then_some(key),
                    c => key.push(c),
                }
            }
            None
        }
        '\'' => {
            let inner = &line[1..];
            let mut key = String::new();
            let mut i = 0;
            while i < inner.len() {
                let c = inner[i..].chars().next()?;
                if c == '\'' {
                    if inner[i + 1..].starts_with('\'') {
                        key.push('\'');
                        i += 2;
                        continue;
                    }
                    return colon_ends_key(&inner[i + 1..]).then_some(key);
                }
                key.push(c);
                i += c.len_utf8();
            }
            None
        }
        _ => {
            let bytes = line.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                match b {
                    b'#' if i > 0 && matches!(bytes[i - 1], b' ' | b'\t') => return None,
                    b':' if bytes.get(i + 1).is_none_or(|n| matches!(n, b' ' | b'\t')) => {
                        return Some(line[..i].trim_end().to_owned());
                    }
                    _ => {}
                }
            }
            None
        }
    }
}

fn is_begin(line: &str) -> bool {
    line.trim().starts_with(BEGIN_PREFIX)
}

fn is_end(line: &str) -> bool {
    line.trim().starts_with(END_PREFIX)
}

fn split_body(body: &str) -> Body<'_> {
    let mut begins = Vec::new();
    let mut ends = Vec::new();
    let mut pos = 0;
    for line in body.split_inclusive('\n') {
        if is_begin(line) {
            begins.push((pos, pos + line.len()));
        } else if is_end(line) {
            ends.push((pos, pos + line.len()));
        }
        pos += line.len();
    }
    match (begins.as_slice(), ends.as_slice()) {
        ([(b0, b1)], [(e0, e1)]) if b1 <= e0 => {
            let region = &body[*b1..*e0];
            let end_line = &body[*e0..*e1];
            let stored = end_line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(HASH_TAG))
                .and_then(|h| u64::from_str_radix(h, 16).ok());
            // No readable hash: nothing says the user edited it, so it is ours.
            let state = match stored {
                Some(h) if h != region_hash(region) => MarkedState::Edited,
                _ => MarkedState::Intact,
            };
            Body::Marked {
                before: &body[..*b0],
                region,
                state,
                after: &body[*e1..],
            }
        }
        _ => Body::Unmarked(body),
    }
}

/// Marker lines in text kept as the user's, changed so they no longer read
/// as markers; otherwise the next sync would find two regions.
fn defuse_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.split_inclusive('\n') {
        if is_begin(line) || is_end(line) {
            out.push_str(&line.replacen("<!-- mailbridge:", "<!-- (stray) mailbridge-", 1));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Why a note's front matter could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrontMatterError {
    #[error(
        "no front matter: the note does not start with a `---` line closed by another `---` line"
    )]
    Missing,
    #[error("the front matter is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("the front matter is not a mapping of keys to values")]
    NotAMapping,
}

/// The note's front matter as YAML, e.g. to find a note's `thread_id`.
pub fn read_front_matter(text: &str) -> Result<serde_norway::Mapping, FrontMatterError> {
    let (fm, _) = split_front_matter(text);
    let fm = fm.ok_or(FrontMatterError::Missing)?;
    match serde_norway::from_str::<serde_norway::Value>(fm)? {
        serde_norway::Value::Mapping(m) => Ok(m),
        serde_norway::Value::Null => Ok(serde_norway::Mapping::new()),
        _ => Err(FrontMatterError::NotAMapping),
    }
}

/// The parts of an existing note that belong to the user, as a re-render
/// keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserParts {
    /// Front-matter entries the bridge does not own, verbatim and in order
    /// (`None` key: comments before the first key).
    pub front_matter: Vec<(Option<String>, String)>,
    /// Text between the front matter and the begin marker.
    pub before: String,
    /// Text after the end marker; with [`RegionState::Missing`], the whole body.
    pub after: String,
    pub region: RegionState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionState {
    /// The region is as the bridge wrote it (or carries no hash to tell).
    Intact,
    /// The user edited inside the region; the next render keeps this text.
    Edited(String),
    /// No usable markers (none, unpaired or repeated): the body is all user text.
    Missing,
}

pub fn user_parts(text: &str) -> UserParts {
    let parsed = parse_note(text);
    let front_matter = parsed
        .user_keys
        .into_iter()
        .map(|b| (b.key, b.text.to_owned()))
        .collect();
    let (before, after, region) = match parsed.body {
        Body::Marked {
            before,
            region,
            state,
            after,
        } => (
            before.to_owned(),
            after.to_owned(),
            match state {
                MarkedState::Intact => RegionState::Intact,
                MarkedState::Edited => RegionState::Edited(region.to_owned()),
            },
        ),
        Body::Unmarked(body) => (String::new(), body.to_owned(), RegionState::Missing),
    };
    UserParts {
        front_matter,
        before,
        after,
        region,
    }
}

// ---------------------------------------------------------------------------
// Durable batched writes
// ---------------------------------------------------------------------------

/// Marks our temp files (`.<name>.mailbridge-<pid>-<n>.tmp`), so that the
/// cleanup never removes another program's temp files.
const TEMP_TAG: &str = ".mailbridge-";
const TEMP_SUFFIX: &str = ".tmp";
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Stages notes and writes them all with one round of durability work.
///
/// Per-file "write, fsync, rename, fsync the directory" costs ~0.4 ms a file,
/// which a first sync of thousands of threads feels. [`NoteWriter::commit`]
/// instead writes every changed note to a temp file beside its target, fsyncs
/// them all (in parallel, so the filesystem can merge journal commits), renames
/// them all, then fsyncs each touched directory once. A crash at any point
/// leaves every note either old or new, never partial; the sync commits its
/// state only after `commit` returns, so a killed run redoes the batch.
#[derive(Debug)]
pub struct NoteWriter {
    root: PathBuf,
    staged: BTreeMap<PathBuf, Staged>,
}

/// A staged note: its new content and, when it was rendered from what was
/// on disk, what that was ([`Seen`]).
#[derive(Debug)]
struct Staged {
    content: String,
    seen: Option<Seen>,
}

/// What a note's file held when its new content was made from it: absent, or
/// a fingerprint of its bytes. A file that no longer matches has been edited
/// since (the user, in their editor): writing would lose that edit, so the
/// note is left alone and reported as a conflict ([`WriteReport::conflicts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Absent,
    Content(u64),
}

impl Seen {
    /// The fingerprint of a file's content as read (`None`: no such file).
    pub fn of(content: Option<&[u8]>) -> Seen {
        match content {
            None => Seen::Absent,
            Some(bytes) => {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                Seen::Content(hasher.finish())
            }
        }
    }
}

/// What a commit did, by path relative to the writer's root, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub written: Vec<PathBuf>,
    /// Already had exactly this content; not touched (mtime kept).
    pub unchanged: Vec<PathBuf>,
    /// Changed on disk since their new content was made from them; not
    /// touched, so the change is kept (only notes staged with a [`Seen`]).
    pub conflicts: Vec<PathBuf>,
}

impl NoteWriter {
    /// `root` is the sources folder; it is created on commit if missing.
    pub fn new(root: impl Into<PathBuf>) -> NoteWriter {
        NoteWriter {
            root: root.into(),
            staged: BTreeMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stages `content` for `relative` (a later stage of the same path wins).
    /// Paths come from persisted state, so anything that could leave the root
    /// (absolute, `..`, empty) is refused.
    pub fn stage(
        &mut self,
        relative: impl Into<PathBuf>,
        content: impl Into<String>,
    ) -> io::Result<()> {
        let relative = relative.into();
        let inside = relative.file_name().is_some()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !inside {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "note path {} is not a plain path inside the notes folder",
                    relative.display()
                ),
            ));
        }
        self.staged.insert(
            relative,
            Staged {
                content: content.into(),
                seen: None,
            },
        );
        Ok(())
    }

    /// [`Self::stage`] for content made from the file as it was (`seen`): if
    /// the file differs from that when it is written or renamed, the note is
    /// left as it is and reported in [`WriteReport::conflicts`].
    pub fn stage_over(
        &mut self,
        relative: impl Into<PathBuf>,
        content: impl Into<String>,
        seen: Seen,
    ) -> io::Result<()> {
        let relative = relative.into();
        self.stage(relative.clone(), content)?;
        if let Some(staged) = self.staged.get_mut(&relative) {
            staged.seen = Some(seen);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.staged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Writes every staged note whose content differs from the file on disk
    /// and empties the stage. On error no temp file is left behind; notes
    /// renamed before the error are complete new versions.
    pub fn commit(&mut self) -> io::Result<WriteReport> {
        self.write_temps()?.publish()
    }

    /// The first half of [`Self::commit`]: every changed note written to a
    /// temp file beside its target, nothing made durable or put in place yet.
    /// Several of these can be published together, with one round of
    /// durability work for all.
    pub fn write_temps(&mut self) -> io::Result<PreparedNotes> {
        let staged = std::mem::take(&mut self.staged);
        let mut prepared = PreparedNotes {
            root: self.root.clone(),
            pending: Vec::new(),
            dirs: BTreeSet::new(),
            report: WriteReport::default(),
        };
        // On an error, dropping `prepared` removes the temp files written so far.
        prepared.dirs = self.prepare(staged, &mut prepared.report, &mut prepared.pending)?;
        Ok(prepared)
    }

    /// Compares, creates directories and writes temp files; returns the
    /// directories whose entries change and so need an fsync.
    fn prepare(
        &self,
        staged: BTreeMap<PathBuf, Staged>,
        report: &mut WriteReport,
        pending: &mut Vec<Pending>,
    ) -> io::Result<BTreeSet<PathBuf>> {
        let mut dirs = BTreeSet::new();
        let mut known_dirs: HashSet<PathBuf> = HashSet::new();
        for (relative, Staged { content, seen }) in staged {
            let target = self.root.join(&relative);
            // Taken before the read: a write after it shows at rename time.
            let expected = match seen {
                Some(_) => Some(FileState::of(&target)?),
                None => None,
            };
            let old = match fs::read(&target) {
                Ok(old) => Some(old),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(at(e, "cannot read", &target)),
            };
            if old.as_deref() == Some(content.as_bytes()) {
                report.unchanged.push(relative);
                continue;
            }
            if seen.is_some_and(|seen| seen != Seen::of(old.as_deref())) {
                report.conflicts.push(relative);
                continue;
            }
            let permissions = match &old {
                Some(_) => fs::metadata(&target).ok().map(|m| m.permissions()),
                None => None,
            };
            let dir = target.parent().unwrap_or(&self.root).to_path_buf();
            if !known_dirs.contains(&dir) {
                create_dirs(&dir, &mut dirs)?;
                known_dirs.insert(dir.clone());
            }
            let temp = write_temp(&dir, &target, content.as_bytes())?;
            // The rename replaces the file: keep the mode the user gave it.
            if let Some(permissions) = permissions {
                let _ = fs::set_permissions(&temp, permissions);
            }
            pending.push(Pending {
                relative,
                target,
                temp,
                expected,
                renamed: false,
            });
            dirs.insert(dir);
        }
        Ok(dirs)
    }
}

/// Notes in temp files beside their targets ([`NoteWriter::write_temps`]),
/// not yet durable or in place. Dropped unpublished, it removes its temp
/// files, so a failed batch leaves every note as it was.
#[derive(Debug)]
pub struct PreparedNotes {
    root: PathBuf,
    pending: Vec<Pending>,
    /// Directories whose entries change.
    dirs: BTreeSet<PathBuf>,
    report: WriteReport,
}

impl PreparedNotes {
    /// Notes changed (temp files written), for bounding a batch.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes in another batch, to be published with this one.
    pub fn absorb(&mut self, mut other: PreparedNotes) {
        self.pending.append(&mut other.pending);
        self.dirs.append(&mut other.dirs);
        self.report.written.append(&mut other.report.written);
        self.report.unchanged.append(&mut other.report.unchanged);
        self.report.conflicts.append(&mut other.report.conflicts);
    }

    /// Makes every temp file durable (one filesystem flush where the
    /// platform has it, else fsyncs in parallel), renames them all into
    /// place, then makes the renames durable. A crash at any point leaves
    /// every note either old or new, never partial.
    pub fn publish(mut self) -> io::Result<WriteReport> {
        let mut report = std::mem::take(&mut self.report);
        if self.pending.is_empty() {
            report.unchanged.sort();
            report.conflicts.sort();
            return Ok(report);
        }
        let whole_filesystem = sync_filesystem(&self.root)?;
        if !whole_filesystem {
            sync_files(&self.pending)?;
        }
        for p in &mut self.pending {
            if let Some(expected) = p.expected {
                if FileState::of(&p.target)? != expected {
                    // Edited since it was read: the edit stays, the temp goes.
                    let _ = fs::remove_file(&p.temp);
                    p.renamed = true;
                    report.conflicts.push(p.relative.clone());
                    continue;
                }
            }
            fs::rename(&p.temp, &p.target).map_err(|e| at(e, "cannot rename into", &p.target))?;
            p.renamed = true;
            report.written.push(p.relative.clone());
        }
        if whole_filesystem {
            sync_filesystem(&self.root)?;
        } else {
            for dir in &self.dirs {
                sync_dir(dir)?;
            }
        }
        report.written.sort();
        report.unchanged.sort();
        report.conflicts.sort();
        Ok(report)
    }
}

impl Drop for PreparedNotes {
    fn drop(&mut self) {
        for p in self.pending.iter().filter(|p| !p.renamed) {
            let _ = fs::remove_file(&p.temp);
        }
    }
}

#[derive(Debug)]
struct Pending {
    relative: PathBuf,
    target: PathBuf,
    temp: PathBuf,
    /// The target as the content check found it, for notes staged with a
    /// [`Seen`]: a different file there at rename time is an edit to keep.
    expected: Option<FileState>,
    renamed: bool,
}

/// A file's size and modification time, or its absence: a cheap check that
/// nobody wrote it since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    Absent,
    Present {
        len: u64,
        modified: Option<SystemTime>,
    },
}

impl FileState {
    fn of(path: &Path) -> io::Result<FileState> {
        match fs::symlink_metadata(path) {
            Ok(meta) => Ok(FileState::Present {
                len: meta.len(),
                modified: meta.modified().ok(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(FileState::Absent),
            Err(e) => Err(at(e, "cannot read", path)),
        }
    }
}

fn at(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Creates `dir` and its missing ancestors, recording the parents whose new
/// entries must be fsynced for the directories themselves to be durable.
fn create_dirs(dir: &Path, dirs: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir).map_err(|e| at(e, "cannot create", dir))?;
    for m in missing {
        if let Some(parent) = m.parent().filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(parent.to_path_buf());
        }
    }
    Ok(())
}

fn write_temp(dir: &Path, target: &Path, content: &[u8]) -> io::Result<PathBuf> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = std::process::id();
    // A crashed run with a reused pid may have left this name: try the next.
    for _ in 0..100 {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}{TEMP_TAG}{pid}-{n}{TEMP_SUFFIX}"));
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(at(e, "cannot create", &temp)),
        };
        if let Err(e) = file.write_all(content) {
            drop(file);
            let _ = fs::remove_file(&temp);
            return Err(at(e, "cannot write", &temp));
        }
        return Ok(temp);
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("cannot find a free temp name for {}", target.display()),
    ))
}

/// fsyncs waiting on the disk at once. fsync is I/O-bound, so this is not tied
/// to the CPU count: on a 2-CPU ext4 machine, 2000 notes took ~4.4 ms each
/// with one thread and 0.2–0.5 ms with 8–16 (per-file durability: 2–9 ms).
const FSYNC_THREADS: usize = 16;

/// Flushes the whole filesystem that holds `root` (Linux `syncfs(2)`): a
/// batch of thousands of notes becomes durable in one call instead of one
/// fsync each (~0.4 ms to 4 ms apiece on the disks seen here). It also
/// flushes other processes' dirty data on that filesystem, which costs them
/// nothing and us at most a longer wait. `false` where the platform has no
/// such call: the caller then fsyncs file by file.
#[cfg(target_os = "linux")]
fn sync_filesystem(root: &Path) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let dir = fs::File::open(root).map_err(|e| at(e, "cannot open", root))?;
    // SAFETY: syncfs takes any open descriptor on the filesystem; `dir`
    // outlives the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(true)
    } else {
        Err(at(
            io::Error::last_os_error(),
            "cannot flush the filesystem of",
            root,
        ))
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_root: &Path) -> io::Result<bool> {
    Ok(false)
}

/// fsyncs the temp files from several threads: concurrent fsyncs share
/// journal commits, which is most of the batching gain. Files are reopened
/// rather than kept open, so a batch of thousands never runs out of
/// descriptors.
fn sync_files(pending: &[Pending]) -> io::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let threads = FSYNC_THREADS.min(pending.len());
    let chunk = pending.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = pending
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> io::Result<()> {
                    for p in part {
                        OpenOptions::new()
                            .write(true)
                            .open(&p.temp)
                            .and_then(|f| f.sync_all())
                            .map_err(|e| at(e, "cannot fsync", &p.temp))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("fsync thread panicked")))
        })
    })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::durable::sync_dir(dir).map_err(|e| at(e, "cannot fsync directory", dir))
}

/// The pid in one of our temp names, `None` for any other file.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let (_, tail) = rest.rsplit_once(TEMP_TAG)?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether a process is running, where the platform tells cheaply (Linux's
/// /proc); elsewhere assume it is, and let the age rule decide.
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes temp files a crashed commit left under `root`, returning them.
/// Only our own temp names are touched, never this process's, and only those
/// older than `min_age`, so a commit running in another process (another
/// account writing into the same vault) is not disturbed. Hidden directories
/// (`.obsidian`, `.git`, `.trash`) and symlinks are not entered.
pub fn remove_stale_temp_files(root: &Path, min_age: Duration) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let now = SystemTime::now();
    let me = std::process::id();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(at(e, "cannot list", &dir)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| at(e, "cannot list", &dir))?;
            let kind = entry
                .file_type()
                .map_err(|e| at(e, "cannot stat", &entry.path()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() {
                if !name.starts_with('.') {
                    stack.push(entry.path());
                }
                continue;
            }
            let Some(owner) = temp_owner(&name).filter(|pid| *pid != me) else {
                continue;
            };
            if !kind.is_file() {
                continue;
            }
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or(Duration::ZERO);
            // A dead writer's temp file can go at once; a live one's only
            // when old enough that it cannot be a commit in progress.
            if age >= min_age || !process_alive(owner) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => removed.push(path),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(at(e, "cannot remove", &path)),
                }
            }
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(yaml: &str) -> NoteThread {
        serde_norway::from_str(yaml).expect("fixture parses")
    }

    /// John Mao and the user about OpenAI: a plain message, the user's reply
    /// from Sent, and an HTML message (converted) with attachments.
    const OPENAI: &str = r#"
account: work
thread_id: "<CAJm1-root@mail.vastdata.com>"
subject: "Re: OpenAI"
user_addresses: [jason@example.com]
analysis:
  summary: |
    John shares what he learned about **OpenAI's** data platforms and
    proposes an engineering-led approach.
  key_points:
    - OpenAI runs Rockset, Snowflake and CosmosDB side by side.
    - "DAQ storage is growing fast:\nthroughput matters more than capacity."
  questions:
    - Has anyone at VAST evaluated Rockset in depth?
  commitments:
    - "John: visit his OpenAI contact early in the New Year."
  needs_reply: true
  urgency: high
messages:
  # Given out of order on purpose: the note sorts by date.
  - uid: 5611
    folder: INBOX
    message_id: "<CAJm3@mail.vastdata.com>"
    from: { name: John Mao, email: john@vastdata.com }
    to: [{ name: Jason Vallery, email: jason@example.com }]
    cc: [{ name: "O'Brien, Sarah", email: sarah@vastdata.com }]
    date: "2025-12-13T09:15:02-08:00"
    subject: "Re: OpenAI"
    body_markdown: |
      # Agenda for the visit

      Hi Jason,

      Here is what I plan to cover:

      | Topic | Owner |
      | --- | --- |
      | Rockset | John |
      | DAQ | Jason |

      See the [org chart](https://example.com/org) and the notes below.

      ```text
      rockset: 3 clusters
      ```
    quoted: |
      On Fri, Dec 12, 2025 at 6:30 PM Jason Vallery <jason@example.com> wrote:
      > Thanks John, this is very helpful.
      >
      > > On Fri, Dec 12, 2025 John Mao wrote:
      > > OpenAI's data org is split in two.
    attachments:
      - { name: OpenAI-org.pdf, mime_type: application/pdf, size: 1258291 }
      - { name: "rockset diagram [v2].png", mime_type: image/png, size: 48213 }
  - uid: 5605
    folder: INBOX
    message_id: "<CAJm1-root@mail.vastdata.com>"
    from: { name: John Mao, email: john@vastdata.com }
    to: [{ name: Jason Vallery, email: jason@example.com }]
    date: "2025-12-12T16:04:26-08:00"
    subject: "Re: OpenAI"
    body_markdown: |
      Jason,

      OpenAI's data org is split in two: Applications and Research.
      I'll fly to SF early in the New Year.

      John
  - uid: 812
    folder: Sent
    message_id: "<reply-1@example.com>"
    from: { name: Jason Vallery, email: jason@example.com }
    to: [{ name: John Mao, email: john@vastdata.com }]
    date: "2025-12-12T18:30:00-08:00"
    subject: "Re: Re: OpenAI"
    body_markdown: "Thanks John, this is very helpful.\r\n\r\nWhat do they use for DAQ?\r\n"
    quoted: |
      On Fri, Dec 12, 2025 John Mao wrote:
      > OpenAI's data org is split in two.
"#;

    const JAPANESE: &str = r#"
account: personal
thread_id: "<20251201.tanaka@example.jp>"
subject: "Re: 来週の打ち合わせについて"
messages:
  - uid: 77
    folder: INBOX
    message_id: "<20251201.tanaka@example.jp>"
    from: { name: 田中 太郎, email: tanaka@example.jp }
    to: [{ name: 鈴木 花子, email: hanako@example.jp }]
    date: "2025-12-01T10:05:09+09:00"
    subject: "Re: 来週の打ち合わせについて"
    body_markdown: |
      鈴木様

      来週の打ち合わせは火曜日の午後でいかがでしょうか。
      #議題 は後ほどお送りします。

      田中
"#;

    const GERMAN: &str = r#"
account: work
thread_id: "<abc@example.de>"
subject: "Größenänderung der Übersicht – Änderungswünsche für Q1"
messages:
  - uid: 4242
    folder: INBOX
    message_id: "<abc@example.de>"
    from: { name: Jürgen Müller, email: juergen.mueller@example.de }
    to: [{ email: jason@example.com }]
    date: "2026-01-01T00:30:00+01:00"
    subject: "Größenänderung der Übersicht – Änderungswünsche für Q1"
    body_markdown: |
      Hallo Jason,

      die Übersicht ist zu groß; können wir sie für Q1 verkleinern? Kosten: 5 $ bzw. 4,50 €.

      Grüße
      Jürgen
"#;

    const BROKEN: &str = r#"
account: work
thread_id: "synthetic:9f2c1e"
subject: "Caf\u00e9 menu"
messages:
  - uid: 31337
    folder: INBOX
    from: { email: noreply@cafe.example }
    date: "2025-06-01T12:00:00+00:00"
    subject: "Caf\u00e9 menu"
    body_markdown: "Caf\uFFFD au lait: 3\uFFFD50\n\n```\nunterminated code block from a broken part"
    attachments:
      - { name: "", mime_type: "", size: 0 }
    problems:
      - "unknown charset \"x-mac-roman-ish\"; text decoded as UTF-8 with replacement characters"
      - "part 2 (image/png): base64 body truncated"
"#;

    #[test]
    fn snapshot_three_message_thread() {
        let t = thread(OPENAI);
        assert_eq!(
            note_relative_path(&t),
            Path::new("2025/2025-12-12_160426_5605_Re-OpenAI.md")
        );
        insta::assert_snapshot!("openai_thread", render_note(&t, None));
    }

    #[test]
    fn snapshot_japanese_thread() {
        let t = thread(JAPANESE);
        assert_eq!(
            note_relative_path(&t),
            Path::new("2025/2025-12-01_100509_77_Re.md")
        );
        insta::assert_snapshot!("japanese_thread", render_note(&t, None));
    }

    #[test]
    fn snapshot_german_thread() {
        let t = thread(GERMAN);
        // The sender's local date: already 2026 in Berlin, still 2025 in UTC.
        assert_eq!(
            note_relative_path(&t),
            Path::new(
                "2026/2026-01-01_003000_4242_Groessenaenderung-der-Uebersicht-Aenderungswuensche-fuer-Q1.md"
            )
        );
        insta::assert_snapshot!("german_thread", render_note(&t, None));
    }

    #[test]
    fn snapshot_message_with_decoding_problems() {
        let t = thread(BROKEN);
        insta::assert_snapshot!("decoding_problems", render_note(&t, None));
    }

    // --- paths and slugs ---------------------------------------------------

    fn one_message(subject: &str, date: &str, uid: u32) -> NoteThread {
        NoteThread {
            account: "work".into(),
            thread_id: "<t@x>".into(),
            subject: subject.into(),
            messages: vec![NoteMessage {
                uid,
                folder: "INBOX".into(),
                message_id: Some("<t@x>".into()),
                from: Address::new(Some("John Mao"), "john@vastdata.com"),
                date: date.parse().unwrap(),
                subject: subject.into(),
                body_markdown: "Hello".into(),
                ..NoteMessage::default()
            }],
            ..NoteThread::default()
        }
    }

    #[test]
    fn spec_example_path() {
        let t = one_message("Re: OpenAI", "2025-12-12T16:04:26-08:00", 5605);
        assert_eq!(
            note_relative_path(&t),
            Path::new("2025/2025-12-12_160426_5605_Re-OpenAI.md")
        );
    }

    #[test]
    fn path_uses_the_earliest_message_in_its_own_offset() {
        let mut t = one_message("Plan", "2025-12-12T10:00:00-08:00", 20);
        // 2025-12-12T16:00Z: earlier than 10:00-08:00 (18:00Z) though later
        // on the wall clock.
        let mut early = t.messages[0].clone();
        early.uid = 7;
        early.date = "2025-12-13T01:00:00+09:00".parse().unwrap();
        t.messages.push(early);
        assert_eq!(
            note_relative_path(&t),
            Path::new("2025/2025-12-13_010000_7_Plan.md")
        );
        assert_eq!(
            note_relative_path(&NoteThread::default()),
            Path::new("0000/0000-00-00_000000_0_no-subject.md")
        );
    }

    #[test]
    fn slugs() {
        let cases = [
            ("Re: OpenAI", "Re-OpenAI"),
            ("Re: Re: [EXT] Q3 plan — v2!!", "Re-Re-EXT-Q3-plan-v2"),
            ("  --leading and trailing--  ", "leading-and-trailing"),
            ("Don't forget", "Dont-forget"),
            ("Größe Über ÄÖÜ ß", "Groesse-Ueber-AeOeUe-ss"),
            ("Café déjà vu, señor Łukasz", "Cafe-deja-vu-senor-Lukasz"),
            ("来週の打ち合わせについて", "no-subject"),
            ("Re: 来週の打ち合わせ", "Re"),
            ("", "no-subject"),
            ("!!! ???", "no-subject"),
            ("a-b_c.d/e\\f", "a-b-c-d-e-f"),
        ];
        for (subject, slug) in cases {
            assert_eq!(subject_slug(subject), slug, "{subject:?}");
        }
    }

    #[test]
    fn slug_is_at_most_60_characters_without_a_trailing_dash() {
        let long = "Quarterly business review preparation for the enterprise storage team meeting";
        let slug = subject_slug(long);
        assert!(slug.len() <= 60, "{slug}");
        assert_eq!(
            slug,
            "Quarterly-business-review-preparation-for-the-enterprise"
        );
        // The cut lands right after a word: no dangling `-`.
        let slug = subject_slug(&format!("{} tail", "x".repeat(59)));
        assert_eq!(slug, "x".repeat(59));
        assert!(subject_slug(&"ab ".repeat(40))
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn alternative_paths() {
        let p = Path::new("2025/2025-12-12_160426_5605_Re-OpenAI.md");
        assert_eq!(
            alternative_path(p, 2),
            Path::new("2025/2025-12-12_160426_5605_Re-OpenAI-2.md")
        );
    }

    // --- dates ---------------------------------------------------------------

    #[test]
    fn dates_round_trip_and_order() {
        for (s, unix) in [
            ("2025-12-12T16:04:26-08:00", 1_765_584_266),
            ("1970-01-01T00:00:00+00:00", 0),
            ("2000-02-29T23:59:59+05:30", 951_848_999),
            ("1969-12-31T23:59:59+00:00", -1),
        ] {
            let d: NoteDate = s.parse().unwrap();
            assert_eq!(d.unix(), unix, "{s}");
            assert_eq!(d.rfc3339(), s);
            assert_eq!(NoteDate::from_unix(unix, d.offset_minutes()), Some(d));
        }
        let d = NoteDate::from_unix(1_765_584_266, -480).unwrap();
        assert_eq!(
            (
                d.year(),
                d.month(),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            ),
            (2025, 12, 12, 16, 4, 26)
        );
        let z = NoteDate::parse_rfc3339("2025-12-12T16:04:26.123Z").unwrap();
        assert_eq!(z.rfc3339(), "2025-12-12T16:04:26+00:00");
        for bad in [
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-12-12 16:04:26",
            "2025-12-12T24:00:00Z",
            "2025-12-12T16:04:26+24:00",
            "Fri, 12 Dec 2025 16:04:26 -0800",
        ] {
            assert_eq!(NoteDate::parse_rfc3339(bad), None, "{bad}");
        }
        assert!(NoteDate::parse_rfc3339("2024-02-29T00:00:00Z").is_some());
        let a: NoteDate = "2025-12-13T01:00:00+09:00".parse().unwrap();
        let b: NoteDate = "2025-12-12T10:00:00-08:00".parse().unwrap();
        assert!(a < b);
    }

    // --- front matter --------------------------------------------------------

    #[test]
    fn front_matter_round_trips_awkward_strings() {
        let subjects = [
            "Re: \"quoted\" and 'single'",
            "key: value: more",
            "#hashtag # not a comment",
            "- leading dash",
            "--- three dashes",
            "[bracketed] {braced} &anchor *alias !tag %percent @at `tick`",
            "yes",
            "null",
            "~",
            "123",
            "back\\slash and tab\there",
            "line\nbreak and \u{2028} separator and \u{85} NEL and \u{7} bell",
            "emoji 🎉 and 日本語",
            "",
        ];
        for subject in subjects {
            let mut t = one_message(subject, "2025-12-12T16:04:26-08:00", 1);
            t.thread_id = format!("<{subject}@x>");
            t.account = subject.to_owned();
            t.messages[0].from = Address::new(Some(subject), "a@b.c");
            let note = render_note(&t, None);
            let fm = read_front_matter(&note).unwrap_or_else(|e| panic!("{subject:?}: {e}"));
            let get = |k: &str| fm.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            assert_eq!(get("subject").as_deref(), Some(subject));
            assert_eq!(get("account").as_deref(), Some(subject));
            assert_eq!(get("thread_id"), Some(format!("<{subject}@x>")));
            assert_eq!(get("last_from"), Some(t.messages[0].from.display()));
        }
    }

    #[test]
    fn front_matter_has_spec_keys_and_types() {
        let note = render_note(&thread(OPENAI), None);
        let fm = read_front_matter(&note).unwrap();
        let keys: Vec<&str> = fm.keys().filter_map(|k| k.as_str()).collect();
        assert_eq!(keys, OWNED_KEYS);
        assert_eq!(fm["type"].as_str(), Some("email-thread"));
        assert_eq!(fm["message_count"].as_u64(), Some(3));
        assert_eq!(fm["needs_reply"].as_bool(), Some(true));
        assert_eq!(fm["urgency"].as_str(), Some("high"));
        assert_eq!(fm["message_ids"].as_sequence().map(Vec::len), Some(3));
        assert_eq!(
            fm["participants"][2].as_str(),
            Some("\"O'Brien, Sarah\" <sarah@vastdata.com>")
        );
        assert!(matches!(
            read_front_matter("no front matter"),
            Err(FrontMatterError::Missing)
        ));
        assert!(matches!(
            read_front_matter("---\n- a list\n---\n"),
            Err(FrontMatterError::NotAMapping)
        ));
        assert!(matches!(
            read_front_matter("---\nkey: [unclosed\n---\n"),
            Err(FrontMatterError::Yaml(_))
        ));
        assert!(read_front_matter("---\n---\nbody").unwrap().is_empty());
    }

    #[test]
    fn top_level_keys() {
        let cases = [
            ("tags: [a]\n", Some("tags")),
            ("status:\n", Some("status")),
            ("\"quoted: key\": 1\n", Some("quoted: key")),
            ("'it''s': 1\n", Some("it's")),
            ("http://x: y\n", Some("http://x")),
            ("  - item\n", None),
            ("- item\n", None),
            ("# comment: x\n", None),
            ("plain text\n", None),
            ("key # comment: x\n", None),
        ];
        for (line, key) in cases {
            assert_eq!(top_level_key(line).as_deref(), key, "{line:?}");
        }
    }

    // --- preserving the user's text -------------------------------------------

    /// The note as a user would leave it: properties added in Obsidian (which
    /// writes block lists), text in `## Notes`, text before the region, a
    /// bridge key hand-edited.
    fn user_edited(note: &str) -> String {
        let note = note.replacen(
            "urgency: high\n",
            "urgency: high\ntags:\n  - email\n  - openai  # the big one\nstatus: waiting\n",
            1,
        );
        let note = note.replacen("message_count: 2\n", "message_count: 99\n", 1);
        let note = note.replacen(
            "---\n<!-- mailbridge:begin",
            "---\nRelated: [[VAST OpenAI account]]\n\n<!-- mailbridge:begin",
            1,
        );
        format!("{note}\nCall John on Monday.\n- ask about DAQ\n\n## Later\n\nMore thoughts.\n")
    }

    fn first_two_messages() -> NoteThread {
        let mut t = thread(OPENAI);
        t.messages.retain(|m| m.uid != 5611);
        t
    }

    #[test]
    fn rerender_keeps_user_text_and_keys() {
        let before = render_note(&first_two_messages(), None);
        let edited = user_edited(&before);
        let after = render_note(&thread(OPENAI), Some(&edited));
        insta::assert_snapshot!("rerender_with_user_edits", after);

        let fm = read_front_matter(&after).unwrap();
        assert_eq!(fm["message_count"].as_u64(), Some(3));
        assert_eq!(fm["status"].as_str(), Some("waiting"));
        assert_eq!(fm["tags"][1].as_str(), Some("openai"));
        assert!(after.contains("  - openai  # the big one\n"));
        assert!(after.contains("---\nRelated: [[VAST OpenAI account]]\n\n<!-- mailbridge:begin"));
        assert!(after.ends_with(
            "## Notes\n\nCall John on Monday.\n- ask about DAQ\n\n## Later\n\nMore thoughts.\n"
        ));
        assert!(after.contains("### 3. John Mao"));
        let parts = user_parts(&after);
        assert_eq!(parts.region, RegionState::Intact);
        let keys: Vec<_> = parts
            .front_matter
            .iter()
            .map(|(k, _)| k.as_deref())
            .collect();
        assert_eq!(keys, [Some("tags"), Some("status")]);
        assert_eq!(parts.before, "Related: [[VAST OpenAI account]]\n\n");
        assert_eq!(render_note(&thread(OPENAI), Some(&after)), after);
    }

    #[test]
    fn front_matter_rewritten_by_obsidian_is_restored_with_user_keys() {
        let t = thread(JAPANESE);
        let note = render_note(&t, None);
        let body = &note[note.find("<!-- mailbridge:begin").unwrap()..];
        // What Obsidian's property editor writes after the user adds a tag.
        let obsidian = format!(
            "---\ntype: email-thread\naccount: personal\nsubject: \"Re: 来週の打ち合わせについて\"\n\
             thread_id: <20251201.tanaka@example.jp>\nparticipants:\n  - 田中 太郎 <tanaka@example.jp>\n\
             \x20 - 鈴木 花子 <hanako@example.jp>\nfirst_date: 2025-12-01T10:05:09+09:00\n\
             last_date: 2025-12-01T10:05:09+09:00\nlast_from: 田中 太郎 <tanaka@example.jp>\n\
             message_count: 1\nneeds_reply: false\nurgency: normal\nmessage_ids:\n\
             \x20 - <20251201.tanaka@example.jp>\ntags:\n  - meeting\n---\n{body}"
        );
        let after = render_note(&t, Some(&obsidian));
        let expected = note.replacen(
            "message_ids: [\"<20251201.tanaka@example.jp>\"]\n",
            "message_ids: [\"<20251201.tanaka@example.jp>\"]\ntags:\n  - meeting\n",
            1,
        );
        assert_eq!(after, expected);
    }

    #[test]
    fn crlf_files_keep_their_user_text() {
        let t = thread(GERMAN);
        let note = render_note(&t, None);
        let crlf = format!("{note}\nMy notes.\n")
            .replace('\n', "\r\n")
            .replacen(
                "urgency: normal\r\n",
                "urgency: normal\r\nstatus: open\r\n",
                1,
            );
        let parts = user_parts(&crlf);
        assert_eq!(
            parts.region,
            RegionState::Intact,
            "line ends are not an edit"
        );
        assert_eq!(
            parts.front_matter,
            [(Some("status".to_owned()), "status: open\r\n".to_owned())]
        );
        let after = render_note(&t, Some(&crlf));
        assert!(after.contains("message_ids: [\"<abc@example.de>\"]\nstatus: open\r\n---\n"));
        assert!(after.ends_with("\r\n## Notes\r\n\r\nMy notes.\r\n"));
        assert_eq!(render_note(&t, Some(&after)), after);
    }

    #[test]
    fn rendering_is_idempotent() {
        for fixture in [OPENAI, JAPANESE, GERMAN, BROKEN] {
            let t = thread(fixture);
            let first = render_note(&t, None);
            assert_eq!(render_note(&t, None), first);
            assert_eq!(render_note(&t, Some(&first)), first);
            let edited = user_edited(&first);
            let second = render_note(&t, Some(&edited));
            assert_eq!(render_note(&t, Some(&second)), second);
        }
    }

    #[test]
    fn message_order_does_not_depend_on_input_order() {
        let t = thread(OPENAI);
        let mut reversed = t.clone();
        reversed.messages.reverse();
        assert_eq!(render_note(&t, None), render_note(&reversed, None));
    }

    #[test]
    fn user_keys_move_after_the_bridge_keys_once() {
        let t = thread(GERMAN);
        let note = render_note(&t, None);
        let edited = note.replacen(
            "account: \"work\"\n",
            "aliases: [Q1 Übersicht]\naccount: \"work\"\nsubject: \"I changed it\"\n",
            1,
        );
        let after = render_note(&t, Some(&edited));
        let fm = read_front_matter(&after).unwrap();
        assert_eq!(
            fm["subject"].as_str(),
            Some("Größenänderung der Übersicht – Änderungswünsche für Q1")
        );
        assert!(
            after.contains("message_ids: [\"<abc@example.de>\"]\naliases: [Q1 Übersicht]\n---\n")
        );
        assert_eq!(render_note(&t, Some(&after)), after);
    }

    #[test]
    fn edits_inside_the_region_are_kept_not_lost() {
        let t = first_two_messages();
        let note = render_note(&t, None);
        let edited = note.replacen(
            "## Summary\n\n",
            "## Summary\n\nMy own summary: John is our way in.\n\n",
            1,
        );
        let parts = user_parts(&edited);
        assert!(matches!(parts.region, RegionState::Edited(ref r) if r.contains("My own summary")));

        let after = render_note(&thread(OPENAI), Some(&edited));
        insta::assert_snapshot!("rerender_after_edit_inside_region", after);
        assert_eq!(
            after.matches("My own summary: John is our way in.").count(),
            1
        );
        assert_eq!(user_parts(&after).region, RegionState::Intact);
        assert_eq!(render_note(&thread(OPENAI), Some(&after)), after);

        // Whitespace an editor strips is not an edit.
        let trimmed = note.replace(" \n", "\n").trim_end().to_owned() + "\n";
        assert_eq!(user_parts(&trimmed).region, RegionState::Intact);
    }

    #[test]
    fn missing_markers_keep_the_whole_body() {
        let t = first_two_messages();
        let note = render_note(&t, None);
        let body_start = note.find("<!-- mailbridge:begin").unwrap();
        // The user deleted both markers and wrote on top.
        let unmarked = note
            .lines()
            .filter(|l| !l.starts_with("<!-- mailbridge:"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\nmy note\n";
        assert_eq!(user_parts(&unmarked).region, RegionState::Missing);
        let after = render_note(&thread(OPENAI), Some(&unmarked));
        let old_body = &unmarked[body_start..];
        assert!(
            after.ends_with(old_body),
            "old body kept verbatim at the end"
        );
        assert_eq!(user_parts(&after).region, RegionState::Intact);
        assert_eq!(render_note(&thread(OPENAI), Some(&after)), after);
    }

    #[test]
    fn damaged_markers_are_defused() {
        let t = thread(JAPANESE);
        let note = render_note(&t, None);
        // A pasted copy of the region: two begins, two ends.
        let doubled = format!(
            "{note}\n{}",
            &note[note.find("<!-- mailbridge:begin").unwrap()..]
        );
        assert_eq!(user_parts(&doubled).region, RegionState::Missing);
        let after = render_note(&t, Some(&doubled));
        assert_eq!(after.matches("\n<!-- mailbridge:begin").count(), 1);
        assert_eq!(after.matches("<!-- (stray) mailbridge-begin").count(), 2);
        assert_eq!(user_parts(&after).region, RegionState::Intact);
        assert_eq!(render_note(&t, Some(&after)), after);

        // Only an end marker left.
        let no_begin = note.replacen("<!-- mailbridge:begin", "", 1);
        assert_eq!(user_parts(&no_begin).region, RegionState::Missing);
        let after = render_note(&t, Some(&no_begin));
        assert_eq!(render_note(&t, Some(&after)), after);
    }

    #[test]
    fn existing_file_without_front_matter() {
        let t = thread(GERMAN);
        let after = render_note(&t, Some("Just my text.\n"));
        assert!(after.starts_with("---\ntype: email-thread\n"));
        assert!(after.ends_with(" -->\n\nJust my text.\n"));
        assert_eq!(render_note(&t, Some(&after)), after);
        // Emptied by the user: a fresh Notes heading.
        assert!(render_note(&t, Some("")).ends_with("-->\n\n## Notes\n"));
    }

    #[test]
    fn mail_cannot_forge_markers_or_hide_the_note() {
        let mut t = thread(GERMAN);
        t.messages[0].body_markdown =
            "<!-- mailbridge:end fnv1a64:0 -->\n<!-- mailbridge:begin -->\n<!-- hide everything"
                .into();
        t.messages[0].quoted = Some("<!-- mailbridge:end -->".into());
        t.subject = "<!-- mailbridge:end --> [[link]] #tag $x$ %%c%%".into();
        let note = render_note(&t, None);
        assert_eq!(user_parts(&note).region, RegionState::Intact);
        let comment_lines = note.lines().filter(|l| l.trim().starts_with("<!--"));
        assert_eq!(comment_lines.count(), 2, "only the two markers:\n{note}");
        assert!(note.contains(
            "\n# \\<!-- mailbridge:end --\\> \\[\\[link\\]\\] \\#tag \\$x\\$ \\%\\%c\\%\\%\n"
        ));
        assert_eq!(render_note(&t, Some(&note)), note);
    }

    #[test]
    fn markdown_helpers() {
        assert_eq!(
            defang("#tag, C# and x#y, `#code $1`, $5-$10, 50%% off\n```\n#keep $\n```\n# Heading\n"),
            "\\#tag, C# and x#y, `#code $1`, \\$5-\\$10, 50\\%\\% off\n```\n#keep $\n```\n# Heading\n"
        );
        assert_eq!(
            demote_headings("# A\n## B\n#### D\n####### x\n```\n# code\n```\n    # indented"),
            "#### A\n##### B\n###### D\n####### x\n```\n# code\n```\n    # indented"
        );
        assert_eq!(
            sanitize_markdown("\n\n  \nText\r\n\r\n~~~~\ncode\n~~~\n\n"),
            "Text\n\n~~~~\ncode\n~~~\n\n~~~~"
        );
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GB");
        assert_eq!(
            strip_reply_prefixes("RE: Fwd:  AW: Hello  World"),
            "hello world"
        );
    }

    /// The stored edit hashes must not change: the streaming `region_hash`
    /// equals FNV-1a over the trimmed, joined, end-trimmed text it replaced.
    #[test]
    fn region_hash_is_fnv_of_the_trimmed_joined_lines() {
        fn reference(region: &str) -> u64 {
            let joined = region
                .lines()
                .map(str::trim_end)
                .collect::<Vec<_>>()
                .join("\n");
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in joined.trim_end().bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h
        }
        for region in [
            "",
            "\n\n",
            "a",
            "a\n",
            "a  \n\n \n",
            "\n\na\n\n\nb  \nc\n\n",
            "  lead\r\n\r\ntrail \t\r\n",
            "Grüße\n\u{3000}\nend",
        ] {
            assert_eq!(region_hash(region), reference(region), "{region:?}");
        }
    }

    // --- NoteWriter ------------------------------------------------------------

    fn temp_files(root: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else if e.file_name().to_string_lossy().ends_with(".tmp") {
                    found.push(e.path());
                }
            }
        }
        found
    }

    #[test]
    fn writer_writes_creates_dirs_and_skips_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Sources/Email");
        let mut w = NoteWriter::new(&root);
        w.stage("2025/a.md", "A1").unwrap();
        w.stage("2026/b.md", "B1").unwrap();
        w.stage("2025/a.md", "A2").unwrap();
        assert_eq!(w.len(), 2);
        let report = w.commit().unwrap();
        assert!(w.is_empty());
        assert_eq!(
            report.written,
            [Path::new("2025/a.md"), Path::new("2026/b.md")]
        );
        assert!(report.unchanged.is_empty());
        assert_eq!(fs::read_to_string(root.join("2025/a.md")).unwrap(), "A2");
        assert_eq!(fs::read_to_string(root.join("2026/b.md")).unwrap(), "B1");

        // Unchanged: no write at all, so the mtime stays where we put it.
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        fs::File::options()
            .write(true)
            .open(root.join("2025/a.md"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        w.stage("2025/a.md", "A2").unwrap();
        w.stage("2026/b.md", "B2").unwrap();
        let report = w.commit().unwrap();
        assert_eq!(report.written, [Path::new("2026/b.md")]);
        assert_eq!(report.unchanged, [Path::new("2025/a.md")]);
        assert_eq!(
            fs::metadata(root.join("2025/a.md"))
                .unwrap()
                .modified()
                .unwrap(),
            old
        );
        assert_eq!(fs::read_to_string(root.join("2026/b.md")).unwrap(), "B2");
        assert!(temp_files(dir.path()).is_empty());
        assert_eq!(w.commit().unwrap(), WriteReport::default());
    }

    #[test]
    fn prepared_batches_publish_together_or_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Sources");
        let mut w = NoteWriter::new(&root);
        w.stage("2025/a.md", "A").unwrap();
        let mut first = w.write_temps().unwrap();
        w.stage("2026/b.md", "B").unwrap();
        let second = w.write_temps().unwrap();
        // Temp files only, until published.
        assert_eq!(temp_files(dir.path()).len(), 2);
        assert!(!root.join("2025/a.md").exists());
        first.absorb(second);
        assert_eq!(first.len(), 2);
        let report = first.publish().unwrap();
        assert_eq!(
            report.written,
            [Path::new("2025/a.md"), Path::new("2026/b.md")]
        );
        assert_eq!(fs::read_to_string(root.join("2025/a.md")).unwrap(), "A");
        assert_eq!(fs::read_to_string(root.join("2026/b.md")).unwrap(), "B");
        assert!(temp_files(dir.path()).is_empty());

        // Dropped unpublished (a failed step): the notes stay as they were.
        w.stage("2025/a.md", "A2").unwrap();
        let abandoned = w.write_temps().unwrap();
        assert_eq!(temp_files(dir.path()).len(), 1);
        drop(abandoned);
        assert!(temp_files(dir.path()).is_empty());
        assert_eq!(fs::read_to_string(root.join("2025/a.md")).unwrap(), "A");
    }

    #[test]
    fn a_note_edited_while_it_was_rendered_is_left_as_the_user_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in ["before.md", "between.md", "untouched.md"] {
            fs::write(root.join(name), "as read").unwrap();
        }
        let seen = Seen::of(Some(b"as read"));
        let mut w = NoteWriter::new(root);
        w.stage_over("before.md", "new", seen).unwrap();
        w.stage_over("between.md", "new", seen).unwrap();
        w.stage_over("untouched.md", "new", seen).unwrap();
        w.stage_over("appeared.md", "new", Seen::of(None)).unwrap();
        // Edited after rendering, before the temp files are written...
        fs::write(root.join("before.md"), "user edit 1").unwrap();
        fs::write(root.join("appeared.md"), "user's own file").unwrap();
        let prepared = w.write_temps().unwrap();
        // ...and after, before the rename (a longer file: another size).
        fs::write(root.join("between.md"), "user edit number 2").unwrap();
        let report = prepared.publish().unwrap();
        assert_eq!(report.written, [Path::new("untouched.md")]);
        assert_eq!(
            report.conflicts,
            [
                Path::new("appeared.md"),
                Path::new("before.md"),
                Path::new("between.md")
            ]
        );
        assert_eq!(
            fs::read_to_string(root.join("untouched.md")).unwrap(),
            "new"
        );
        assert_eq!(
            fs::read_to_string(root.join("before.md")).unwrap(),
            "user edit 1"
        );
        assert_eq!(
            fs::read_to_string(root.join("between.md")).unwrap(),
            "user edit number 2"
        );
        assert_eq!(
            fs::read_to_string(root.join("appeared.md")).unwrap(),
            "user's own file"
        );
        assert!(temp_files(root).is_empty());
    }

    #[test]
    fn writer_refuses_paths_outside_the_root() {
        let mut w = NoteWriter::new("/nonexistent");
        for bad in ["../x.md", "/etc/x.md", "a/../../x.md", "", "./x.md"] {
            assert!(w.stage(bad, "x").is_err(), "{bad}");
        }
        assert!(w.is_empty());
    }

    #[test]
    fn writer_leaves_no_temp_files_on_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b"), "a file where a folder should be").unwrap();
        let mut w = NoteWriter::new(dir.path());
        w.stage("a/one.md", "1").unwrap();
        w.stage("b/two.md", "2").unwrap();
        assert!(w.commit().is_err());
        assert!(temp_files(dir.path()).is_empty());
        assert!(!dir.path().join("a/one.md").exists());
    }

    #[cfg(unix)]
    #[test]
    fn writer_keeps_the_file_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.md");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let mut w = NoteWriter::new(dir.path());
        w.stage("n.md", "new").unwrap();
        w.commit().unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn stale_temp_cleanup_removes_only_our_old_temps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("2025")).unwrap();
        fs::create_dir_all(root.join(".obsidian")).unwrap();
        let me = std::process::id();
        // A writer that no longer runs, and one that does (PID 1 always runs).
        let dead = root.join("2025/.a.md.mailbridge-4000000001-3.tmp");
        let live = root.join("2025/.c.md.mailbridge-1-0.tmp");
        let mine = root.join(format!("2025/.b.md.mailbridge-{me}-0.tmp"));
        let keep = [
            mine.clone(),
            root.join("2025/.other-editor.tmp"),
            root.join("2025/a.md"),
            root.join(".obsidian/.x.md.mailbridge-4000000001-1.tmp"),
        ];
        for p in keep.iter().chain([&dead, &live]) {
            fs::write(p, "x").unwrap();
        }
        let young_but_dead = if cfg!(target_os = "linux") {
            vec![dead.clone()]
        } else {
            Vec::new()
        };
        assert_eq!(
            remove_stale_temp_files(root, Duration::from_secs(3600)).unwrap(),
            young_but_dead
        );
        let mut old_enough = remove_stale_temp_files(root, Duration::ZERO).unwrap();
        old_enough.extend(young_but_dead);
        old_enough.sort();
        let mut expected = vec![dead.clone(), live.clone()];
        expected.sort();
        assert_eq!(old_enough, expected);
        assert!(!dead.exists() && !live.exists());
        assert!(keep.iter().all(|p| p.exists()));
        assert!(
            remove_stale_temp_files(&root.join("missing"), Duration::ZERO)
                .unwrap()
                .is_empty()
        );
        assert_eq!(temp_owner(".a.md.mailbridge-12-0.tmp"), Some(12));
        assert_eq!(temp_owner(".a.md.mailbridge-12.tmp"), None);
        assert_eq!(temp_owner("a.md.mailbridge-12-0.tmp"), None);
    }
}
