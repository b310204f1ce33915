//! A deterministic generator of a realistic mailbox, for the sync benchmark
//! (`bench/sync.rs`) and for tests that want many real-looking messages.
//!
//! Include it with `#[path = "../bench/corpus.rs"] mod corpus;`. It needs only
//! `base64` and `encoding_rs` (both already in mailbridge's dependency tree).
//!
//! ```ignore
//! let options = corpus::Options::new(10_000, "Jason Vallery", "jason@example.test");
//! let mut stats = corpus::Stats::default();
//! for message in corpus::Corpus::new(options) {
//!     stats.add(&message);
//!     // message.folder, message.bytes (RFC 5322, LF line ends), message.flags ...
//! }
//! ```
//!
//! What it makes, from a seed (same seed and count: byte-identical output; a
//! smaller corpus is a prefix of a bigger one with the same seed):
//! - **Threads of 1–12 messages** between the user and 1–4 contacts, over a
//!   year of `Date`s (contacts in their own time zones). The user's messages
//!   are in `Sent`, everyone else's in `INBOX`, chained by `In-Reply-To` and
//!   `References` (mostly linear, some branching).
//! - **Edge cases threading must handle**: threads whose root is missing
//!   (never delivered, or notification replies to an issue that was never
//!   mailed), the same message in both folders (a Bcc to self: identical
//!   bytes; a mailing-list post: the Sent copy and the list's echo in INBOX
//!   with list headers and footer, same `Message-ID`), and a few messages
//!   without `Message-ID` (cron mail; last replies from broken clients).
//! - **Languages and charsets**: English, German, French, Japanese, Russian
//!   and emoji-laden international English, in UTF-8, US-ASCII, ISO-8859-1,
//!   Windows-1252, ISO-2022-JP, Shift_JIS and KOI8-R, as 7bit, 8bit,
//!   quoted-printable and base64, with RFC 2047 subjects and names and RFC
//!   2231 attachment names; each sender's "mail client" decides, like real ones.
//! - **Bodies**: text/plain (some `format=flowed`), multipart/alternative with
//!   Gmail-, Outlook- (Word HTML with `<style>`) and Apple-Mail-style HTML,
//!   HTML-only notifications and newsletters (`List-Id`, `Precedence: bulk`),
//!   calendar invitations, inline forwards, quoted history the way each client
//!   writes it ("On … wrote:" with `>` quotes, "Am … schrieb …:", Outlook's
//!   "-----Original Message-----" and its header block, Gmail's
//!   `gmail_quote`, Apple's `<blockquote type="cite">`), signatures.
//! - **Attachments**: about [`Options::attachment_rate`] of the messages (5%
//!   by default) carry one 50–500 KB attachment (PDF, PNG, XLSX, DOCX, ZIP,
//!   JPEG; incompressible bytes), base64.
//! - **Realistic headers**: `Received`, `DKIM-Signature`,
//!   `Authentication-Results`, client-specific `Message-ID`s and `X-Mailer`s,
//!   Outlook's `Thread-Index`, list headers; Maildir flags (`S`, `R`, `F`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

// ---------------------------------------------------------------------------
// Public API

/// What to generate.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    /// Message files to produce, counting both copies of a message that is in
    /// two folders.
    pub messages: usize,
    /// The mailbox owner (writes the messages in Sent).
    pub user_name: String,
    pub user_email: String,
    /// Unix time of the newest possible message.
    pub end: i64,
    /// How many days before `end` the oldest thread may start.
    pub days: i64,
    /// The share of messages carrying one 50–500 KB attachment.
    pub attachment_rate: f64,
}

impl Options {
    /// `messages` files for `user_email`, seed 1, ending 2025-11-01, over 365
    /// days, 5% with an attachment.
    pub fn new(messages: usize, user_name: &str, user_email: &str) -> Options {
        Options {
            seed: 1,
            messages,
            user_name: user_name.to_string(),
            user_email: user_email.to_string(),
            end: 1_761_955_200, // 2025-11-01T00:00:00Z
            days: 365,
            attachment_rate: 0.05,
        }
    }
}

/// The two folders of the corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Folder {
    Inbox,
    Sent,
}

impl Folder {
    /// The IMAP name.
    pub fn name(self) -> &'static str {
        match self {
            Folder::Inbox => "INBOX",
            Folder::Sent => "Sent",
        }
    }
}

/// One message file of the corpus.
#[derive(Clone, Debug)]
pub struct Message {
    pub folder: Folder,
    /// The RFC 5322 message, LF line ends (as Maildir stores them; see
    /// [`crlf`] for IMAP APPEND).
    pub bytes: Vec<u8>,
    /// Unix time of its `Date` (also a good INTERNALDATE).
    pub date: i64,
    /// Maildir flags, sorted: `S` seen, `R` answered, `F` flagged.
    pub flags: String,
    /// Which thread it belongs to (the truth a threading algorithm should find).
    pub thread: u64,
    /// None for the few messages without a `Message-ID` header.
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    /// The subject, decoded.
    pub subject: String,
    /// The sender's address.
    pub from: String,
    pub from_user: bool,
    /// The charset of its main text part.
    pub charset: &'static str,
    /// The transfer encoding of its main text part.
    pub encoding: &'static str,
    /// `text/plain`, `text/html`, `multipart/alternative`, plus `+attachment`
    /// in [`Message::attachment`].
    pub structure: &'static str,
    /// File name and decoded size of its attachment, if any.
    pub attachment: Option<(String, usize)>,
    /// The same Message-ID is also stored in the other folder.
    pub in_both_folders: bool,
    /// Its thread's root message is not in the corpus.
    pub root_missing: bool,
    /// Mailing list, newsletter or automatic mail (never awaits a reply).
    pub bulk: bool,
}

/// The corpus, one message at a time (a thread is generated whole, then
/// handed out), so that 50,000 messages never sit in memory together.
pub struct Corpus {
    options: Options,
    contacts: Vec<Person>,
    user: Person,
    next_thread: u64,
    pending: VecDeque<Message>,
    emitted: usize,
}

impl Corpus {
    pub fn new(options: Options) -> Corpus {
        let mut rng = Rng::new(options.seed ^ 0x636f_6e74_6163_7473);
        let contacts = make_contacts(&mut rng);
        let user = Person {
            name: options.user_name.clone(),
            email: options.user_email.clone(),
            first: options
                .user_name
                .split_whitespace()
                .next()
                .unwrap_or("Me")
                .to_string(),
            last: options
                .user_name
                .split_whitespace()
                .last()
                .unwrap_or("Me")
                .to_string(),
            lang: Lang::En,
            client: Client::AppleMail,
            tz: -480,
            title: "Director of Engineering",
            org: "Example Systems".to_string(),
            phone: "+1 415 555 0142".to_string(),
        };
        Corpus {
            options,
            contacts,
            user,
            next_thread: 0,
            pending: VecDeque::new(),
            emitted: 0,
        }
    }
}

impl Iterator for Corpus {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        if self.emitted >= self.options.messages {
            return None;
        }
        while self.pending.is_empty() {
            let thread = self.next_thread;
            self.next_thread += 1;
            let messages = ThreadGen::new(self, thread).run();
            self.pending.extend(messages);
        }
        self.emitted += 1;
        self.pending.pop_front()
    }
}

/// Counts over a corpus, for a one-paragraph description of it.
#[derive(Debug, Default)]
pub struct Stats {
    pub messages: usize,
    pub bytes: u64,
    pub folders: BTreeMap<&'static str, usize>,
    pub threads: HashSet<u64>,
    pub threads_missing_root: HashSet<u64>,
    pub in_both_folders: usize,
    pub without_message_id: usize,
    pub with_attachment: usize,
    pub attachment_bytes: u64,
    pub structures: BTreeMap<&'static str, usize>,
    pub charsets: BTreeMap<&'static str, usize>,
    pub encodings: BTreeMap<&'static str, usize>,
    pub bulk: usize,
}

impl Stats {
    pub fn add(&mut self, message: &Message) {
        self.messages += 1;
        self.bytes += message.bytes.len() as u64;
        *self.folders.entry(message.folder.name()).or_default() += 1;
        self.threads.insert(message.thread);
        if message.root_missing {
            self.threads_missing_root.insert(message.thread);
        }
        if message.in_both_folders && message.folder == Folder::Inbox {
            self.in_both_folders += 1;
        }
        if message.message_id.is_none() {
            self.without_message_id += 1;
        }
        if let Some((_, size)) = &message.attachment {
            self.with_attachment += 1;
            self.attachment_bytes += *size as u64;
        }
        *self.structures.entry(message.structure).or_default() += 1;
        *self.charsets.entry(message.charset).or_default() += 1;
        *self.encodings.entry(message.encoding).or_default() += 1;
        if message.bulk {
            self.bulk += 1;
        }
    }

    /// One paragraph of plain text.
    pub fn describe(&self) -> String {
        let list = |map: &BTreeMap<&'static str, usize>| {
            let mut items: Vec<_> = map.iter().collect();
            items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            items
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{} messages ({}), {:.1} MB, {} threads ({} without their root), {} in both folders, \
             {} without Message-ID, {} with an attachment ({:.1} MB), {} list/bulk/automatic; \
             structure: {}; charsets: {}; encodings: {}",
            self.messages,
            list(&self.folders),
            self.bytes as f64 / 1e6,
            self.threads.len(),
            self.threads_missing_root.len(),
            self.in_both_folders,
            self.without_message_id,
            self.with_attachment,
            self.attachment_bytes as f64 / 1e6,
            self.bulk,
            list(&self.structures),
            list(&self.charsets),
            list(&self.encodings),
        )
    }
}

/// LF → CRLF, for IMAP APPEND.
pub fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 30);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Creates `cur`, `new` and `tmp` under `dir`.
pub fn create_maildir(dir: &Path) -> std::io::Result<()> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// The Maildir file name of the `seq`th message: Dovecot's own pattern,
/// `<time>.M<seq>P<pid>.<host>,S=<size>:2,<flags>`.
pub fn maildir_file_name(seq: u64, message: &Message) -> String {
    format!(
        "{}.M{}P4242.bench,S={}:2,{}",
        message.date,
        seq,
        message.bytes.len(),
        message.flags
    )
}

/// Writes `message` into `dir/cur` (a Maildir made by [`create_maildir`]),
/// with its mtime (Dovecot's INTERNALDATE) set to its date.
pub fn write_maildir(dir: &Path, seq: u64, message: &Message) -> std::io::Result<PathBuf> {
    let path = dir.join("cur").join(maildir_file_name(seq, message));
    let mut file = std::fs::File::create(&path)?;
    file.write_all(&message.bytes)?;
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(message.date.max(0) as u64);
    file.set_modified(mtime)?;
    Ok(path)
}

// ---------------------------------------------------------------------------
// A tiny PRNG (SplitMix64): deterministic on every platform.

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `count` different indices below `n`, in random order.
    pub fn distinct(&mut self, n: usize, count: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..count.min(n) {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(count.min(n));
        all
    }

    /// A copy of one of `items`.
    pub fn one<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// An index into `weights`, chosen in proportion to them.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(total as usize) as u32;
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    pub fn string(&mut self, len: usize, alphabet: &[u8]) -> String {
        (0..len).map(|_| char::from(*self.pick(alphabet))).collect()
    }

    pub fn hex(&mut self, len: usize) -> String {
        self.string(len, b"0123456789abcdef")
    }

    pub fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..]
        )
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// ---------------------------------------------------------------------------
// People, languages, mail clients

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    En,
    De,
    Fr,
    Ja,
    Ru,
    /// English with emoji and names from everywhere: UTF-8 only.
    Intl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Gmail,
    Outlook,
    AppleMail,
    Thunderbird,
    Mutt,
    /// Becky! and friends: ISO-2022-JP, 7bit.
    Becky,
    /// Old Windows mailers: Shift_JIS, base64.
    ShiftJisMailer,
    /// The Bat!: KOI8-R, 8bit.
    TheBat,
}

#[derive(Clone, Debug)]
struct Person {
    name: String,
    email: String,
    first: String,
    last: String,
    lang: Lang,
    client: Client,
    /// Minutes east of UTC.
    tz: i32,
    title: &'static str,
    org: String,
    phone: String,
}

impl Person {
    fn domain(&self) -> &str {
        self.email.split('@').nth(1).unwrap_or("example.test")
    }
}

const TITLES: &[&str] = &[
    "Account Executive",
    "Senior Software Engineer",
    "Project Manager",
    "Head of Finance",
    "Product Manager",
    "Solutions Architect",
    "Office Manager",
    "VP Sales",
    "Legal Counsel",
    "Customer Success Manager",
];

fn make_contacts(rng: &mut Rng) -> Vec<Person> {
    let mut people = Vec::new();
    let plan: [(Lang, usize); 6] = [
        (Lang::En, 160),
        (Lang::De, 45),
        (Lang::Fr, 40),
        (Lang::Ja, 40),
        (Lang::Ru, 30),
        (Lang::Intl, 40),
    ];
    for (lang, count) in plan {
        for _ in 0..count {
            people.push(make_person(rng, lang));
        }
    }
    people
}

/// Where a language's people live and which mail clients they use.
struct Profile {
    domains: &'static [&'static str],
    tz: &'static [i32],
    clients: &'static [(Client, u32)],
}

fn profile(lang: Lang) -> Profile {
    match lang {
        Lang::En => Profile {
            domains: EN_DOMAINS,
            tz: &[-480, -420, -360, -300, 0, 60],
            clients: &[
                (Client::Gmail, 35),
                (Client::Outlook, 35),
                (Client::AppleMail, 15),
                (Client::Thunderbird, 10),
                (Client::Mutt, 5),
            ],
        },
        Lang::De => Profile {
            domains: DE_DOMAINS,
            tz: &[60, 60, 120],
            clients: &[
                (Client::Outlook, 40),
                (Client::Thunderbird, 30),
                (Client::Gmail, 15),
                (Client::AppleMail, 15),
            ],
        },
        Lang::Fr => Profile {
            domains: FR_DOMAINS,
            tz: &[60, 60, 120],
            clients: &[
                (Client::Outlook, 40),
                (Client::Gmail, 30),
                (Client::AppleMail, 20),
                (Client::Thunderbird, 10),
            ],
        },
        Lang::Ja => Profile {
            domains: JA_DOMAINS,
            tz: &[540],
            clients: &[
                (Client::Becky, 35),
                (Client::Outlook, 25),
                (Client::Gmail, 25),
                (Client::ShiftJisMailer, 15),
            ],
        },
        Lang::Ru => Profile {
            domains: RU_DOMAINS,
            tz: &[180],
            clients: &[
                (Client::TheBat, 40),
                (Client::Outlook, 30),
                (Client::Gmail, 30),
            ],
        },
        Lang::Intl => Profile {
            domains: INTL_DOMAINS,
            tz: &[0, 60, 330, 480, 540, 600, -180],
            clients: &[
                (Client::Gmail, 50),
                (Client::AppleMail, 30),
                (Client::Outlook, 20),
            ],
        },
    }
}

fn make_person(rng: &mut Rng, lang: Lang) -> Person {
    let (first, last, login) = match lang {
        Lang::En => {
            let (f, l) = (*rng.pick(EN_FIRST), *rng.pick(EN_LAST));
            (
                f.to_string(),
                l.to_string(),
                format!("{}.{}", ascii_slug(f), ascii_slug(l)),
            )
        }
        Lang::De => {
            let (f, l) = (*rng.pick(DE_FIRST), *rng.pick(DE_LAST));
            (
                f.to_string(),
                l.to_string(),
                format!("{}.{}", ascii_slug(f), ascii_slug(l)),
            )
        }
        Lang::Fr => {
            let (f, l) = (*rng.pick(FR_FIRST), *rng.pick(FR_LAST));
            (
                f.to_string(),
                l.to_string(),
                format!("{}.{}", ascii_slug(f), ascii_slug(l)),
            )
        }
        Lang::Ja => {
            let (l, l_lat) = *rng.pick(JA_LAST);
            let (f, f_lat) = *rng.pick(JA_FIRST);
            (f.to_string(), l.to_string(), format!("{f_lat}.{l_lat}"))
        }
        Lang::Ru => {
            let (f, f_lat) = *rng.pick(RU_FIRST);
            let (l, l_lat) = *rng.pick(RU_LAST);
            // Russian surnames agree with the person's gender.
            let female = f.ends_with('а') || f.ends_with('я');
            let suffix = if female { "а" } else { "" };
            let suffix_lat = if female { "a" } else { "" };
            (
                f.to_string(),
                format!("{l}{suffix}"),
                format!("{f_lat}.{l_lat}{suffix_lat}"),
            )
        }
        Lang::Intl => {
            let (f, l, login) = *rng.pick(INTL_NAMES);
            (f.to_string(), l.to_string(), login.to_string())
        }
    };
    let profile = profile(lang);
    let weights: Vec<u32> = profile.clients.iter().map(|c| c.1).collect();
    let client = profile.clients[rng.weighted(&weights)].0;
    let name = match lang {
        Lang::Ja => format!("{last} {first}"),
        Lang::Intl if last.is_empty() => first.clone(),
        _ => format!("{first} {last}"),
    };
    let domain = *rng.pick(profile.domains);
    Person {
        name,
        email: format!("{login}@{domain}"),
        first,
        last,
        lang,
        client,
        tz: *rng.pick(profile.tz),
        title: rng.one(TITLES),
        org: org_of(domain),
        phone: format!(
            "+{} {} {:04}",
            rng.pick(&["1 212", "49 89", "33 1", "81 3", "7 495", "44 20"]),
            rng.between(200, 999),
            rng.below(10_000)
        ),
    }
}

fn org_of(domain: &str) -> String {
    let base = domain.split('.').next().unwrap_or(domain);
    base.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Latin letters for an address: "Jörg" → "joerg".
fn ascii_slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' => out.push(c),
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'ß' => out.push_str("ss"),
            'à' | 'â' | 'á' => out.push('a'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'î' | 'ï' | 'í' => out.push('i'),
            'ô' | 'ó' | 'ø' => out.push('o'),
            'û' | 'ù' | 'ú' => out.push('u'),
            'ç' => out.push('c'),
            '-' | ' ' => out.push('-'),
            _ => {}
        }
    }
    out
}

const EN_FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Priya",
    "Wei",
    "Carlos",
    "Aisha",
    "Olivia",
    "Noah",
    "Emma",
    "Liam",
    "Sophia",
    "Mason",
    "Ava",
    "Ethan",
];
const EN_LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "O'Brien",
    "Patel",
    "Nguyen",
    "Kim",
    "Chen",
    "Clark",
];
const EN_DOMAINS: &[&str] = &[
    "acme-corp.example",
    "globex.example",
    "initech.example",
    "umbrella-labs.example",
    "hooli.example",
    "vandelay-industries.example",
    "mail.example",
    "stark-partners.example",
];
const DE_FIRST: &[&str] = &[
    "Jürgen",
    "Björn",
    "Lukas",
    "Anna",
    "Sophie",
    "Maximilian",
    "Jörg",
    "Günter",
    "Katharina",
    "Lena",
    "Felix",
    "Marie",
    "Uwe",
    "Sabine",
    "Tobias",
    "Ursula",
];
const DE_LAST: &[&str] = &[
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weiß",
    "Meyer",
    "Wagner",
    "Becker",
    "Schäfer",
    "Koch",
    "Bauer",
    "Hoffmann",
    "Schröder",
    "Krüger",
    "Groß",
    "Köhler",
];
const DE_DOMAINS: &[&str] = &[
    "mueller-bau.example",
    "stadtwerke-nord.example",
    "technik-gmbh.example",
    "web.example",
];
const FR_FIRST: &[&str] = &[
    "Amélie",
    "François",
    "Léa",
    "Hélène",
    "Jérôme",
    "Chloé",
    "Benoît",
    "Céline",
    "Théo",
    "Zoé",
    "Élodie",
    "Noël",
    "Gaëlle",
    "Stéphane",
    "Inès",
    "Loïc",
];
const FR_LAST: &[&str] = &[
    "Lefèvre",
    "Dubois",
    "Moreau",
    "Girard",
    "Bérenger",
    "Fournier",
    "Lemaître",
    "Durand",
    "Rousseau",
    "Faure",
    "Mercier",
    "Brunet",
    "Chevalier",
    "Lefrançois",
    "Gauthier",
    "Boucher",
];
const FR_DOMAINS: &[&str] = &[
    "atelier-lumiere.example",
    "conseil-etoile.example",
    "laposte-pro.example",
];
const JA_LAST: &[(&str, &str)] = &[
    ("佐藤", "sato"),
    ("鈴木", "suzuki"),
    ("高橋", "takahashi"),
    ("田中", "tanaka"),
    ("伊藤", "ito"),
    ("渡辺", "watanabe"),
    ("山本", "yamamoto"),
    ("中村", "nakamura"),
    ("小林", "kobayashi"),
    ("加藤", "kato"),
    ("吉田", "yoshida"),
    ("山田", "yamada"),
];
const JA_FIRST: &[(&str, &str)] = &[
    ("太郎", "taro"),
    ("花子", "hanako"),
    ("健一", "kenichi"),
    ("美咲", "misaki"),
    ("翔太", "shota"),
    ("陽菜", "hina"),
    ("大輔", "daisuke"),
    ("直樹", "naoki"),
    ("由美", "yumi"),
    ("拓也", "takuya"),
];
const JA_DOMAINS: &[&str] = &["sakura-shoji.example", "yamato-tech.example"];
const RU_FIRST: &[(&str, &str)] = &[
    ("Алексей", "aleksey"),
    ("Дмитрий", "dmitry"),
    ("Сергей", "sergey"),
    ("Анна", "anna"),
    ("Мария", "maria"),
    ("Елена", "elena"),
    ("Ольга", "olga"),
    ("Иван", "ivan"),
    ("Наталья", "natalia"),
    ("Михаил", "mikhail"),
];
const RU_LAST: &[(&str, &str)] = &[
    ("Иванов", "ivanov"),
    ("Смирнов", "smirnov"),
    ("Кузнецов", "kuznetsov"),
    ("Попов", "popov"),
    ("Васильев", "vasiliev"),
    ("Петров", "petrov"),
    ("Соколов", "sokolov"),
    ("Фёдоров", "fedorov"),
    ("Морозов", "morozov"),
    ("Волков", "volkov"),
];
const RU_DOMAINS: &[&str] = &["volga-soft.example", "sever-it.example"];
const INTL_NAMES: &[(&str, &str, &str)] = &[
    ("José", "Álvarez", "jose.alvarez"),
    ("Nguyễn Thị", "Lan", "lan.nguyen"),
    ("Søren", "Østergaard", "soren"),
    ("Zoë", "Chen", "zoe.chen"),
    ("Łukasz", "Wójcik", "lukasz.wojcik"),
    ("Ayşe", "Yılmaz", "ayse.yilmaz"),
    ("María José", "Peña", "mj.pena"),
    ("王小明", "", "xiaoming.wang"),
    ("김민준", "", "minjun.kim"),
    ("Đặng Văn", "Minh", "minh.dang"),
    ("Siobhán", "Ní Bhriain", "siobhan"),
    ("Ingrid", "Sæther", "ingrid.saether"),
];
const INTL_DOMAINS: &[&str] = &[
    "studio-nord.example",
    "freelance.example",
    "ngo-global.example",
];

// ---------------------------------------------------------------------------
// Text: what people write

struct Bank {
    greetings: &'static [&'static str],
    openers: &'static [&'static str],
    statements: &'static [&'static str],
    questions: &'static [&'static str],
    commitments: &'static [&'static str],
    thanks: &'static [&'static str],
    closings: &'static [&'static str],
    subjects: &'static [&'static str],
    topics: &'static [&'static str],
    days: &'static [&'static str],
    docs: &'static [&'static str],
}

const EN: Bank = Bank {
    greetings: &["Hi {first},", "Hello {first},", "{first},", "Hey {first},", "Dear {first},"],
    openers: &[""],
    statements: &[
        "I had a look at the {doc} for {topic} and it mostly makes sense.",
        "The numbers for {topic} came in at about {n}% above what we planned.",
        "We’re still waiting on legal to sign off on {topic}.",
        "Quick update: the {topic} rollout is on track for {day}.",
        "I talked to the team and they’re fine with the new timeline.",
        "The vendor quoted €{n},000 for the first phase, which is more than we hoped.",
        "As discussed, the “{topic}” workstream moves to next quarter.",
        "Attached is the latest version – let me know if anything is missing.",
        "There were a couple of issues with the staging environment yesterday, but they are fixed now.",
        "Finance asked for a breakdown by region before they approve anything.",
        "I think we can simplify the second half of the {doc} quite a bit.",
        "The customer is happy with the pilot and wants to expand it to {n} more sites.",
    ],
    questions: &[
        "Could you send me the {doc} by {day}?",
        "Can we move our call about {topic} to {day}?",
        "Do you have time this week to review the {doc}?",
        "What do you think about splitting {topic} into two phases?",
        "Would you be able to approve the budget before {day}?",
        "Is the {n}-day estimate still realistic?",
        "Who should own {topic} after the reorg?",
    ],
    commitments: &[
        "I’ll send you the revised {doc} by {day}.",
        "I will set up a meeting with finance for {day}.",
        "We’ll have a first draft ready by end of next week.",
        "I'll follow up with the vendor and get back to you.",
    ],
    thanks: &[
        "Thanks, that’s all I needed.",
        "Perfect, thanks!",
        "Got it, thank you.",
        "Sounds good to me.",
        "FYI, no action needed.",
    ],
    closings: &["Thanks,", "Best,", "Best regards,", "Cheers,", "Thanks!", "Kind regards,"],
    subjects: &[
        "{topic}: next steps",
        "Question about {topic}",
        "{topic} review on {day}",
        "Updated {doc} for {topic}",
        "Budget for {topic}",
        "Follow-up: {topic}",
        "{topic} kickoff",
        "Invoice #{n}",
        "{topic} timeline",
        "Lunch {day}?",
    ],
    topics: &[
        "Project Atlas",
        "the Q3 budget",
        "data migration",
        "the Berlin office move",
        "vendor onboarding",
        "Kubernetes upgrade",
        "customer renewal",
        "the hiring plan",
        "security audit",
        "the website redesign",
        "pricing update",
        "the board deck",
        "API v2",
        "the offsite",
        "SOC 2 readiness",
        "support escalation",
    ],
    days: &["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "tomorrow", "next week", "the 15th"],
    docs: &["proposal", "slides", "contract", "spreadsheet", "design doc", "report", "estimate", "roadmap"],
};

const INTL: Bank = Bank {
    greetings: &["Hi {first}! 👋", "Hello {first},", "Dear {first},"],
    openers: &[""],
    statements: &[
        "Great news 🎉 the {topic} launch went really well.",
        "See you in 東京 next month ✈️",
        "The café in Zürich was perfect for the workshop ☕",
        "Our partners in São Paulo and Kraków both confirmed {topic}.",
        "I pushed the changes for {topic} — the numbers look 💯 now.",
        "The venue costs ¥{n}0,000 or about €{n}00 per day.",
        "Naïve question maybe, but is the résumé template final?",
    ],
    questions: &[
        "Can you check the {doc} before {day}? 🙏",
        "Shall we do a quick call on {day} about {topic}?",
        "Does {day} work for the 日本 team too?",
    ],
    commitments: &[
        "I’ll share the {doc} by {day} 🚀",
        "Will book the flights to Москва tomorrow.",
    ],
    thanks: &["Thanks so much! 🙏", "Perfect 👍", "Merci ! 😊"],
    closings: &["Cheers,", "Best,", "Warmly,", "🙂"],
    subjects: &[
        "{topic} 🎉",
        "Trip to 東京 ✈️",
        "Re-thinking {topic} — ideas",
        "Café meetup on {day} ☕",
        "{topic}: résumé & next steps",
    ],
    topics: &[
        "the festival",
        "Project Ñandú",
        "the Øresund bridge photos",
        "the 🚀 launch",
        "crowdfunding",
    ],
    days: &["Monday", "Friday", "tomorrow", "next week"],
    docs: &["deck", "budget sheet", "photos", "itinerary"],
};

const DE: Bank = Bank {
    greetings: &[
        "Hallo {first},",
        "Moin {first},",
        "Servus {first},",
        "Guten Tag {first} {last},",
    ],
    openers: &[""],
    statements: &[
        "vielen Dank für die schnelle Rückmeldung.",
        "anbei die überarbeitete Version der {doc}.",
        "die Kosten für {topic} liegen etwa {n} % über dem Plan.",
        "wir haben das Thema {topic} gestern im Team besprochen.",
        "die Prüfung durch die Rechtsabteilung dauert leider länger als gedacht.",
        "das Angebot über {n}.000 € liegt uns inzwischen vor.",
        "für die Größenordnung müssen wir noch einmal mit dem Geschäftsführer sprechen.",
        "die Änderungen an der {doc} sind übernommen.",
    ],
    questions: &[
        "Könntest du mir bis {day} die {doc} schicken?",
        "Passt dir ein Termin am {day} für {topic}?",
        "Wie ist der aktuelle Stand bei {topic}?",
        "Kannst du das Budget bis {day} freigeben?",
    ],
    commitments: &[
        "Ich kümmere mich darum und melde mich bis {day}.",
        "Ich schicke dir die Unterlagen morgen früh.",
        "Wir liefern den ersten Entwurf bis Ende nächster Woche.",
    ],
    thanks: &[
        "Danke, das war alles.",
        "Passt, vielen Dank!",
        "Alles klar, danke.",
    ],
    closings: &[
        "Viele Grüße",
        "Beste Grüße",
        "Mit freundlichen Grüßen",
        "Gruß",
    ],
    subjects: &[
        "Frage zu {topic}",
        "Termin am {day}",
        "Angebot Nr. {n}",
        "{topic}: nächste Schritte",
        "Überarbeitete {doc}",
        "Rückfrage zur Rechnung {n}",
    ],
    topics: &[
        "Projekt Nordlicht",
        "Umzug nach München",
        "Jahresabschluss",
        "Datenschutz-Schulung",
        "Serverumstellung",
        "Kundenprojekt Bäckerei Müller",
        "Budgetplanung 2026",
    ],
    days: &[
        "Montag",
        "Dienstag",
        "Mittwoch",
        "Donnerstag",
        "Freitag",
        "morgen",
        "nächste Woche",
    ],
    docs: &[
        "Präsentation",
        "Unterlagen",
        "Kalkulation",
        "Übersicht",
        "Vertragsentwurf",
    ],
};

const FR: Bank = Bank {
    greetings: &[
        "Bonjour {first},",
        "Salut {first},",
        "Bonjour {first} {last},",
    ],
    openers: &[""],
    statements: &[
        "Merci pour votre réponse rapide.",
        "Je vous envoie ci-joint la dernière version de la {doc}.",
        "Le budget pour {topic} dépasse d’environ {n} % nos prévisions.",
        "Nous avons discuté de {topic} hier avec l’équipe.",
        "Le devis s’élève à {n} 000 € HT.",
        "La réunion de lundi a été très productive, à mon avis.",
        "Les premiers résultats du pilote sont très encourageants.",
    ],
    questions: &[
        "Pourriez-vous me confirmer la date de la réunion sur {topic} ?",
        "Est-ce que {day} vous convient pour faire le point ?",
        "Avez-vous eu le temps de relire la {doc} ?",
        "Pouvez-vous valider le budget avant {day} ?",
    ],
    commitments: &[
        "Je vous envoie le devis d’ici {day}.",
        "Je m’occupe de la réservation de la salle.",
        "Nous vous ferons un retour avant la fin de la semaine.",
    ],
    thanks: &[
        "Merci, c’est parfait.",
        "Très bien, merci beaucoup !",
        "C’est noté, merci.",
    ],
    closings: &[
        "Cordialement,",
        "Bien à vous,",
        "Bonne journée,",
        "À bientôt,",
    ],
    subjects: &[
        "Question sur {topic}",
        "Réunion {day}",
        "Devis n° {n}",
        "{topic} : prochaines étapes",
        "Relecture de la {doc}",
    ],
    topics: &[
        "le projet Étoile",
        "la migration des données",
        "le salon de Lyon",
        "la facturation",
        "la refonte du site",
        "le séminaire d’équipe",
    ],
    days: &[
        "lundi",
        "mardi",
        "mercredi",
        "jeudi",
        "vendredi",
        "demain",
        "la semaine prochaine",
    ],
    docs: &[
        "présentation",
        "proposition",
        "note de synthèse",
        "convention",
        "maquette",
    ],
};

const JA: Bank = Bank {
    greetings: &["{last}様", "{last}さん", "{last} {first} 様"],
    openers: &["お世話になっております。", "いつもお世話になっております。"],
    statements: &[
        "{topic}の資料を添付いたします。",
        "先日の打ち合わせではありがとうございました。",
        "{topic}の進捗についてご報告いたします。",
        "見積金額は{n}万円となります。",
        "社内で検討した結果、来月から開始することになりました。",
    ],
    questions: &[
        "{day}の会議にご出席いただけますでしょうか。",
        "{doc}をご確認いただけますか？",
        "{topic}のスケジュールについてご意見をいただけますでしょうか。",
    ],
    commitments: &[
        "{day}までに修正版をお送りいたします。",
        "社内で確認のうえ、改めてご連絡いたします。",
    ],
    thanks: &[
        "承知いたしました。ありがとうございます。",
        "ご確認ありがとうございました。",
    ],
    closings: &[
        "よろしくお願いいたします。",
        "引き続きよろしくお願いいたします。",
    ],
    subjects: &[
        "{topic}の件",
        "打ち合わせ日程のご相談",
        "お見積りのご送付（No.{n}）",
        "{doc}のご確認のお願い",
        "【ご報告】{topic}",
    ],
    topics: &[
        "新システム導入",
        "展示会",
        "年末調整",
        "サーバー移行",
        "新製品開発",
    ],
    days: &[
        "月曜日",
        "火曜日",
        "水曜日",
        "木曜日",
        "金曜日",
        "来週",
        "明日",
    ],
    docs: &["企画書", "議事録", "見積書", "仕様書"],
};

const RU: Bank = Bank {
    greetings: &[
        "Здравствуйте, {first}!",
        "Добрый день, {first}!",
        "Привет, {first}!",
    ],
    openers: &[""],
    statements: &[
        "Спасибо за быстрый ответ.",
        "Во вложении последняя версия: {doc}.",
        "По проекту \"{topic}\" всё идёт по плану.",
        "Бюджет превышен примерно на {n}%.",
        "Вчера обсудили {topic} с командой, вопросов нет.",
    ],
    questions: &[
        "Не могли бы вы прислать {doc} до {day}?",
        "Удобно ли вам созвониться в {day}?",
        "Какой сейчас статус по теме \"{topic}\"?",
    ],
    commitments: &[
        "Я пришлю исправленный вариант до {day}.",
        "Мы подготовим черновик к концу недели.",
    ],
    thanks: &["Спасибо, это всё.", "Отлично, спасибо!"],
    closings: &["С уважением,", "Всего доброго,", "Спасибо,"],
    subjects: &[
        "Вопрос по теме {topic}",
        "Встреча в {day}",
        "Счёт № {n}",
        "{topic}: следующие шаги",
    ],
    topics: &[
        "проект Восток",
        "миграция базы данных",
        "новый офис",
        "отчёт за квартал",
    ],
    days: &[
        "понедельник",
        "вторник",
        "среду",
        "четверг",
        "пятницу",
        "завтра",
    ],
    docs: &["презентацию", "отчёт", "договор", "смету"],
};

fn bank(lang: Lang) -> &'static Bank {
    match lang {
        Lang::En => &EN,
        Lang::De => &DE,
        Lang::Fr => &FR,
        Lang::Ja => &JA,
        Lang::Ru => &RU,
        Lang::Intl => &INTL,
    }
}

/// What one thread talks about: the values of the `{…}` placeholders.
struct Topic {
    topic: &'static str,
    day: &'static str,
    doc: &'static str,
    n: usize,
}

fn fill(template: &str, t: &Topic, to: Option<&Person>) -> String {
    let mut s = template
        .replace("{topic}", t.topic)
        .replace("{day}", t.day)
        .replace("{doc}", t.doc)
        .replace("{n}", &t.n.to_string());
    if let Some(p) = to {
        s = s.replace("{first}", &p.first).replace("{last}", &p.last);
    }
    s
}

// ---------------------------------------------------------------------------
// Dates

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const WEEKDAYS_LONG: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const WEEKDAYS_JA: [&str; 7] = ["木", "金", "土", "日", "月", "火", "水"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MONTHS_LONG: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Broken-down local time.
struct Tm {
    year: i64,
    month: usize, // 1..=12
    day: i64,
    hour: i64,
    min: i64,
    sec: i64,
    wday: usize, // index into WEEKDAYS
}

fn tm(unix: i64, tz_minutes: i32) -> Tm {
    let t = unix + i64::from(tz_minutes) * 60;
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Tm {
        year,
        month: month as usize,
        day,
        hour: secs / 3600,
        min: secs % 3600 / 60,
        sec: secs % 60,
        wday: days.rem_euclid(7) as usize,
    }
}

fn tz_string(tz: i32) -> String {
    let sign = if tz < 0 { '-' } else { '+' };
    format!("{sign}{:02}{:02}", tz.abs() / 60, tz.abs() % 60)
}

/// `Tue, 12 Dec 2025 16:04:26 -0800`.
fn rfc5322_date(unix: i64, tz: i32) -> String {
    let t = tm(unix, tz);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} {}",
        WEEKDAYS[t.wday],
        t.day,
        MONTHS[t.month - 1],
        t.year,
        t.hour,
        t.min,
        t.sec,
        tz_string(tz)
    )
}

fn ampm(t: &Tm) -> String {
    let h = match t.hour % 12 {
        0 => 12,
        h => h,
    };
    format!("{h}:{:02} {}", t.min, if t.hour < 12 { "AM" } else { "PM" })
}

// ---------------------------------------------------------------------------
// Charsets and transfer encodings

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Charset {
    Ascii,
    Utf8,
    Latin1,
    Win1252,
    ShiftJis,
    Iso2022Jp,
    Koi8r,
}

impl Charset {
    fn label(self) -> &'static str {
        match self {
            Charset::Ascii => "us-ascii",
            Charset::Utf8 => "utf-8",
            Charset::Latin1 => "iso-8859-1",
            Charset::Win1252 => "windows-1252",
            Charset::ShiftJis => "shift_jis",
            Charset::Iso2022Jp => "iso-2022-jp",
            Charset::Koi8r => "koi8-r",
        }
    }

    /// How a client spells it in Content-Type.
    fn spelled(self, client: Client) -> &'static str {
        let upper = matches!(
            client,
            Client::Gmail | Client::Becky | Client::ShiftJisMailer | Client::AppleMail
        );
        match (self, upper) {
            (Charset::Ascii, _) => "us-ascii",
            (Charset::Utf8, true) => "UTF-8",
            (Charset::Utf8, false) => "utf-8",
            (Charset::Latin1, true) => "ISO-8859-1",
            (Charset::Latin1, false) => "iso-8859-1",
            (Charset::Win1252, true) => "Windows-1252",
            (Charset::Win1252, false) => "windows-1252",
            (Charset::ShiftJis, true) => "Shift_JIS",
            (Charset::ShiftJis, false) => "shift_jis",
            (Charset::Iso2022Jp, true) => "ISO-2022-JP",
            (Charset::Iso2022Jp, false) => "iso-2022-jp",
            (Charset::Koi8r, true) => "KOI8-R",
            (Charset::Koi8r, false) => "koi8-r",
        }
    }

    /// The text in this charset, or None if a character does not fit.
    fn encode(self, text: &str) -> Option<Vec<u8>> {
        let with = |encoding: &'static encoding_rs::Encoding| {
            let (bytes, _, had_errors) = encoding.encode(text);
            (!had_errors).then(|| bytes.into_owned())
        };
        match self {
            Charset::Ascii => text.is_ascii().then(|| text.as_bytes().to_vec()),
            Charset::Utf8 => Some(text.as_bytes().to_vec()),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect(),
            Charset::Win1252 => with(encoding_rs::WINDOWS_1252),
            Charset::ShiftJis => with(encoding_rs::SHIFT_JIS),
            Charset::Iso2022Jp => with(encoding_rs::ISO_2022_JP),
            Charset::Koi8r => with(encoding_rs::KOI8_R),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cte {
    SevenBit,
    EightBit,
    Qp,
    Base64,
}

impl Cte {
    fn label(self) -> &'static str {
        match self {
            Cte::SevenBit => "7bit",
            Cte::EightBit => "8bit",
            Cte::Qp => "quoted-printable",
            Cte::Base64 => "base64",
        }
    }
}

/// The charset and transfer encoding a client picks for `text`.
fn choose_encoding(client: Client, lang: Lang, text: &str) -> (Charset, Cte) {
    let ascii = text.is_ascii();
    let want = match client {
        Client::Gmail => match (ascii, lang) {
            (true, _) => (Charset::Utf8, Cte::SevenBit),
            (false, Lang::Ja | Lang::Ru | Lang::Intl) => (Charset::Utf8, Cte::Base64),
            _ => (Charset::Utf8, Cte::Qp),
        },
        Client::Outlook => match lang {
            Lang::En | Lang::Fr => (Charset::Win1252, Cte::Qp),
            Lang::De => (Charset::Latin1, Cte::Qp),
            Lang::Ja => (Charset::Iso2022Jp, Cte::SevenBit),
            Lang::Ru => (Charset::Koi8r, Cte::Qp),
            Lang::Intl => (Charset::Utf8, Cte::Base64),
        },
        Client::AppleMail => {
            if ascii {
                (Charset::Ascii, Cte::SevenBit)
            } else if Charset::Latin1.encode(text).is_some() {
                (Charset::Latin1, Cte::Qp)
            } else if lang == Lang::Ja {
                (Charset::Iso2022Jp, Cte::SevenBit)
            } else {
                (Charset::Utf8, Cte::Qp)
            }
        }
        Client::Thunderbird => match lang {
            Lang::De | Lang::Fr => (Charset::Latin1, Cte::EightBit),
            _ => (Charset::Utf8, Cte::EightBit),
        },
        Client::Mutt => {
            if ascii {
                (Charset::Ascii, Cte::SevenBit)
            } else {
                (Charset::Utf8, Cte::EightBit)
            }
        }
        Client::Becky => (Charset::Iso2022Jp, Cte::SevenBit),
        Client::ShiftJisMailer => (Charset::ShiftJis, Cte::Base64),
        Client::TheBat => (Charset::Koi8r, Cte::EightBit),
    };
    if want.0.encode(text).is_some() {
        want
    } else if want.1 == Cte::SevenBit {
        (Charset::Utf8, Cte::Base64)
    } else {
        (Charset::Utf8, want.1)
    }
}

fn quoted_printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3 / 2);
    for line in bytes.split(|&b| b == b'\n') {
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal =
                (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece_len = if literal { 1 } else { 3 };
            if col + piece_len > 75 {
                out.push_str("=\n");
                col = 0;
            }
            if literal {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "={b:02X}");
            }
            col += piece_len;
        }
        out.push('\n');
    }
    // split() yields a last empty line after the final '\n'.
    if bytes.ends_with(b"\n") {
        out.pop();
    }
    out
}

fn base64_lines(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 + 1);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Wraps long lines at `width` characters on spaces, keeping `>` quote
/// prefixes; with `flowed`, soft breaks keep their trailing space (RFC 3676).
fn wrap(text: &str, width: usize, flowed: bool) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 20);
    for line in text.split('\n') {
        if line.chars().count() <= width || line == "-- " {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let prefix_len = line
            .char_indices()
            .find(|&(_, c)| c != '>' && c != ' ')
            .map_or(line.len(), |(i, _)| i);
        let (prefix, rest) = line.split_at(prefix_len);
        let mut current = String::from(prefix);
        let mut count = prefix.chars().count();
        let words: Vec<&str> = rest.split(' ').collect();
        for (i, word) in words.iter().enumerate() {
            let wlen = word.chars().count();
            if count + wlen > width && count > prefix.chars().count() {
                if flowed {
                    current.push(' ');
                } else {
                    while current.ends_with(' ') {
                        current.pop();
                    }
                }
                out.push_str(&current);
                out.push('\n');
                current = String::from(prefix);
                count = prefix.chars().count();
            }
            // Words longer than a line (Japanese has no spaces): hard splits.
            let mut w: &str = word;
            while count + w.chars().count() > width && w.chars().count() > width / 2 {
                let take = width.saturating_sub(count).max(1);
                let split = w.char_indices().nth(take).map_or(w.len(), |(i, _)| i);
                current.push_str(&w[..split]);
                out.push_str(&current);
                out.push('\n');
                current = String::from(prefix);
                count = prefix.chars().count();
                w = &w[split..];
            }
            current.push_str(w);
            count += w.chars().count();
            if i + 1 < words.len() {
                current.push(' ');
                count += 1;
            }
        }
        out.push_str(current.trim_end());
        out.push('\n');
    }
    out.pop();
    out
}

/// RFC 2047 encoded words for a header (`phrase` for display names, which
/// allow fewer literal characters), at most 75 characters each.
fn encode_words(text: &str, charset: Charset, client: Client, phrase: bool) -> String {
    let cs = if charset.encode(text).is_some() && charset != Charset::Ascii {
        charset
    } else {
        Charset::Utf8
    };
    let b = matches!(cs, Charset::Iso2022Jp | Charset::ShiftJis | Charset::Koi8r)
        || text.chars().filter(|c| !c.is_ascii()).count() * 3 > text.chars().count();
    let label = cs.spelled(client);
    let head = format!("=?{label}?{}?", if b { "B" } else { "Q" });
    let encode_chunk = |chunk: &str| -> String {
        let bytes = cs
            .encode(chunk)
            .unwrap_or_else(|| chunk.as_bytes().to_vec());
        if b {
            base64::engine::general_purpose::STANDARD.encode(bytes)
        } else {
            let mut s = String::new();
            for byte in bytes {
                match byte {
                    b' ' => s.push('_'),
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                        s.push(char::from(byte))
                    }
                    b'.' | b',' | b':' | b'(' | b')' | b'\'' if !phrase => s.push(char::from(byte)),
                    _ => {
                        let _ = write!(s, "={byte:02X}");
                    }
                }
            }
            s
        }
    };
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = start + 1;
        let mut best = encode_chunk(&chars[start..end].iter().collect::<String>());
        while end < chars.len() {
            let candidate = encode_chunk(&chars[start..end + 1].iter().collect::<String>());
            if head.len() + candidate.len() + 2 > 75 {
                break;
            }
            best = candidate;
            end += 1;
        }
        words.push(format!("{head}{best}?="));
        start = end;
    }
    words.join(" ")
}

/// Header text: as is when ASCII, else encoded words.
fn header_text(text: &str, charset: Charset, client: Client) -> String {
    if text.is_ascii() {
        text.to_string()
    } else {
        encode_words(text, charset, client, false)
    }
}

/// `Name <addr>` with the name quoted or encoded as needed.
fn mailbox(person: &Person, charset: Charset, client: Client) -> String {
    if person.name.is_ascii() {
        if person
            .name
            .chars()
            .any(|c| matches!(c, ',' | '.' | '\'' | '(' | ')' | '"' | ':' | ';' | '@'))
        {
            format!(
                "\"{}\" <{}>",
                person.name.replace('"', "\\\""),
                person.email
            )
        } else {
            format!("{} <{}>", person.name, person.email)
        }
    } else {
        format!(
            "{} <{}>",
            encode_words(&person.name, charset, client, true),
            person.email
        )
    }
}

/// Folds a header at spaces to lines of at most 78 characters where possible.
fn header(out: &mut String, name: &str, value: &str) {
    let mut line_len = name.len() + 2;
    out.push_str(name);
    out.push(':');
    let mut first = true;
    for word in value.split(' ') {
        if first {
            out.push(' ');
            first = false;
        } else if line_len + 1 + word.len() > 78 {
            out.push_str("\n\t");
            line_len = 8;
        } else {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out.push('\n');
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Plain text as an HTML fragment (line breaks kept).
fn text_to_html(text: &str) -> String {
    html_escape(text).replace('\n', "<br>\n")
}

// ---------------------------------------------------------------------------
// MIME parts

struct Part {
    /// Header lines, each ending in '\n'.
    headers: String,
    body: String,
}

struct TextInfo {
    charset: &'static str,
    cte: &'static str,
}

fn text_part(
    subtype: &str,
    text: &str,
    client: Client,
    lang: Lang,
    flowed: bool,
) -> (Part, TextInfo) {
    let (charset, cte) = choose_encoding(client, lang, text);
    let text = match cte {
        Cte::SevenBit | Cte::EightBit if subtype == "plain" => wrap(text, 76, flowed),
        Cte::SevenBit | Cte::EightBit => wrap(text, 200, false),
        _ => text.to_string(),
    };
    let bytes = charset
        .encode(&text)
        .unwrap_or_else(|| text.as_bytes().to_vec());
    let body = match cte {
        Cte::SevenBit | Cte::EightBit => {
            let mut s = match charset {
                Charset::Ascii | Charset::Utf8 => String::from_utf8(bytes)
                    .unwrap_or_else(|err| raw_bytes_to_string(err.as_bytes())),
                _ => raw_bytes_to_string(&bytes),
            };
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        Cte::Qp => quoted_printable(&bytes),
        Cte::Base64 => base64_lines(&bytes),
    };
    let mut ct = format!("text/{subtype}; charset=\"{}\"", charset.spelled(client));
    if flowed && subtype == "plain" {
        ct.push_str("; format=flowed");
        if client == Client::AppleMail {
            ct.push_str("; delsp=yes");
        }
    }
    let mut headers = String::new();
    header(&mut headers, "Content-Type", &ct);
    header(&mut headers, "Content-Transfer-Encoding", cte.label());
    (
        Part { headers, body },
        TextInfo {
            charset: charset.label(),
            cte: cte.label(),
        },
    )
}

/// 8-bit bodies in legacy charsets are not UTF-8; the message is assembled
/// as bytes in the end, so carry them through a lossless Latin-1 mapping and
/// undo it in [`into_bytes`].
fn raw_bytes_to_string(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push(RAW_MARK);
    s.extend(bytes.iter().map(|&b| char::from(b)));
    s.push(RAW_MARK);
    s
}

/// Brackets a run of raw bytes (as chars U+0000..U+00FF) inside a body.
const RAW_MARK: char = '\u{E000}';

/// Turns the assembled text into bytes, undoing [`raw_bytes_to_string`].
fn into_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut raw = false;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c == RAW_MARK {
            raw = !raw;
        } else if raw {
            out.push(u32::from(c) as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

fn boundary(rng: &mut Rng, client: Client) -> String {
    match client {
        Client::Gmail => format!("000000000000{}", rng.hex(12)),
        Client::Outlook => format!(
            "_000_{}{}namprd{:02}prodoutlookcom_",
            rng.string(6, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
            rng.hex(12).to_uppercase(),
            rng.between(1, 22)
        ),
        Client::AppleMail => format!("Apple-Mail={}", rng.uuid().to_uppercase()),
        _ => format!("------------{}", rng.string(24, ALNUM)),
    }
}

fn multipart(rng: &mut Rng, client: Client, kind: &str, parts: Vec<Part>) -> Part {
    let b = boundary(rng, client);
    let mut headers = String::new();
    header(
        &mut headers,
        "Content-Type",
        &format!("multipart/{kind}; boundary=\"{b}\""),
    );
    let mut body = String::new();
    if client == Client::Outlook || client == Client::Mutt {
        body.push_str("This is a multi-part message in MIME format.\n\n");
    }
    for part in parts {
        let _ = write!(body, "--{b}\n{}\n{}", part.headers, part.body);
        if !body.ends_with('\n') {
            body.push('\n');
        }
    }
    let _ = writeln!(body, "--{b}--");
    Part { headers, body }
}

/// An attachment of 50–500 KB with a realistic name and magic bytes.
fn attachment(rng: &mut Rng, lang: Lang, client: Client) -> (Part, String, usize) {
    let size = rng.between(50_000, 500_000);
    let kinds: &[(&str, &str, &[u8])] = &[
        ("pdf", "application/pdf", b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n"),
        ("png", "image/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
        ("jpg", "image/jpeg", b"\xFF\xD8\xFF\xE0\0\x10JFIF\0"),
        (
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            b"PK\x03\x04\x14\0\x06\0",
        ),
        (
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            b"PK\x03\x04\x14\0\x06\0",
        ),
        ("zip", "application/zip", b"PK\x03\x04\x14\0\0\0"),
    ];
    let (ext, mime, magic) = *rng.pick(kinds);
    let stem = match lang {
        Lang::De => *rng.pick(&[
            "Angebot_2025_Müller",
            "Präsentation Q3",
            "Übersicht Kosten",
            "Rechnung 4711",
        ]),
        Lang::Fr => *rng.pick(&[
            "Devis été 2025",
            "Présentation équipe",
            "Compte-rendu réunion",
        ]),
        Lang::Ja => *rng.pick(&["見積書", "議事録_第3回", "企画書（最終版）"]),
        Lang::Ru => *rng.pick(&["Отчёт за квартал", "Договор", "Смета"]),
        _ => *rng.pick(&[
            "Q3 report",
            "budget-2026",
            "signed contract",
            "IMG_4821",
            "architecture diagram",
            "invoice-10442",
        ]),
    };
    let name = format!("{stem}.{ext}");
    let mut data = vec![0u8; size];
    rng.fill(&mut data);
    data[..magic.len()].copy_from_slice(magic);
    let mut headers = String::new();
    let disposition;
    if name.is_ascii() {
        header(
            &mut headers,
            "Content-Type",
            &format!("{mime}; name=\"{name}\""),
        );
        disposition = format!("attachment; filename=\"{name}\"");
    } else if matches!(
        client,
        Client::Outlook | Client::Gmail | Client::Becky | Client::ShiftJisMailer | Client::TheBat
    ) {
        // RFC 2047 inside a parameter: not allowed, universally done.
        let cs = match lang {
            Lang::Ja => Charset::Iso2022Jp,
            Lang::Ru => Charset::Koi8r,
            Lang::De | Lang::Fr => Charset::Latin1,
            _ => Charset::Utf8,
        };
        let encoded = encode_words(&name, cs, client, false);
        header(
            &mut headers,
            "Content-Type",
            &format!("{mime}; name=\"{encoded}\""),
        );
        disposition = format!("attachment; filename=\"{encoded}\"; size={size}");
    } else {
        // RFC 2231, with continuations when long.
        // One token per character: continuations split between characters,
        // as mail clients do (never inside a UTF-8 sequence).
        let tokens: Vec<String> = name
            .chars()
            .map(|c| {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|byte| {
                        if byte.is_ascii_alphanumeric() || b"-_.".contains(&byte) {
                            char::from(byte).to_string()
                        } else {
                            format!("%{byte:02X}")
                        }
                    })
                    .collect()
            })
            .collect();
        let pct = tokens.concat();
        header(
            &mut headers,
            "Content-Type",
            &format!("{mime}; name*=utf-8''{pct}"),
        );
        if pct.len() > 40 {
            let mut segments = vec![String::new()];
            for token in &tokens {
                if segments.last().is_some_and(|s| s.len() + token.len() > 30) {
                    segments.push(String::new());
                }
                if let Some(last) = segments.last_mut() {
                    last.push_str(token);
                }
            }
            let mut d = String::from("attachment");
            for (i, segment) in segments.iter().enumerate() {
                if i == 0 {
                    let _ = write!(d, "; filename*0*=utf-8''{segment}");
                } else {
                    let _ = write!(d, "; filename*{i}*={segment}");
                }
            }
            disposition = d;
        } else {
            disposition = format!("attachment; filename*=utf-8''{pct}");
        }
    }
    header(&mut headers, "Content-Disposition", &disposition);
    header(&mut headers, "Content-Transfer-Encoding", "base64");
    (
        Part {
            headers,
            body: base64_lines(&data),
        },
        name,
        size,
    )
}

// ---------------------------------------------------------------------------
// Threads

/// A message of the thread being generated, kept for its replies to quote.
#[derive(Clone)]
struct Prior {
    sender: Person,
    to: Vec<Person>,
    cc: Vec<Person>,
    from_user: bool,
    date: i64,
    message_id: Option<String>,
    references: Vec<String>,
    subject: String,
    /// The whole plain-text body (with its own quotes).
    plain: String,
    /// The HTML body fragment (inside `<body>`).
    html: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Conversation,
    Forward,
    ListDiscussion,
    Newsletter,
    Notification,
    IssueNotifications,
    Calendar,
    Cron,
}

struct ThreadGen<'a> {
    corpus: &'a Corpus,
    rng: Rng,
    thread: u64,
    out: Vec<Message>,
    priors: Vec<Prior>,
}

impl<'a> ThreadGen<'a> {
    fn new(corpus: &'a Corpus, thread: u64) -> ThreadGen<'a> {
        let seed = corpus.options.seed
            ^ thread.wrapping_add(1).wrapping_mul(0xA24B_AED4_963E_E407)
            ^ 0x7468_7265_6164;
        ThreadGen {
            corpus,
            rng: Rng::new(seed),
            thread,
            out: Vec::new(),
            priors: Vec::new(),
        }
    }

    fn user(&self) -> &'a Person {
        &self.corpus.user
    }

    fn run(mut self) -> Vec<Message> {
        let kind = [
            Kind::Conversation,
            Kind::Forward,
            Kind::ListDiscussion,
            Kind::Newsletter,
            Kind::Notification,
            Kind::IssueNotifications,
            Kind::Calendar,
            Kind::Cron,
        ][self.rng.weighted(&[60, 3, 8, 13, 8, 4, 2, 2])];
        match kind {
            Kind::Conversation | Kind::Forward => self.conversation(kind == Kind::Forward),
            Kind::ListDiscussion => self.list_discussion(),
            Kind::Newsletter => self.newsletter(),
            Kind::Notification => self.notification(),
            Kind::IssueNotifications => self.issue_notifications(),
            Kind::Calendar => self.calendar(),
            Kind::Cron => self.cron(),
        }
        self.out
    }

    fn start_time(&mut self) -> i64 {
        let o = &self.corpus.options;
        let span = (o.days * 86_400) as usize;
        o.end - o.days * 86_400 + self.rng.below(span) as i64
    }

    fn reply_delay(&mut self) -> i64 {
        match self.rng.weighted(&[50, 35, 15]) {
            0 => self.rng.between(4 * 60, 2 * 3600) as i64,
            1 => self.rng.between(2 * 3600, 24 * 3600) as i64,
            _ => self.rng.between(86_400, 6 * 86_400) as i64,
        }
    }

    fn contacts(&mut self, lang: Lang, n: usize) -> Vec<Person> {
        let pool: Vec<&Person> = self
            .corpus
            .contacts
            .iter()
            .filter(|p| p.lang == lang)
            .collect();
        let mut chosen: Vec<Person> = Vec::new();
        while chosen.len() < n.min(pool.len()) {
            let p = *self.rng.pick(&pool);
            if !chosen.iter().any(|c| c.email == p.email) {
                chosen.push(p.clone());
            }
        }
        chosen
    }

    fn message_id(&mut self, sender: &Person, date: i64) -> String {
        let r = &mut self.rng;
        match sender.client {
            Client::Gmail => {
                let len = r.between(40, 50);
                format!(
                    "<CA{}{}@mail.gmail.com>",
                    r.string(1, b"+BDFHJLNP"),
                    r.string(
                        len,
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_=+-"
                    )
                )
            }
            Client::Outlook => {
                let host = format!(
                    "{}{}MB{}",
                    r.pick(&["DM6PR", "BN8PR", "SA1PR", "PH0PR", "AM9PR", "TYCPR"]),
                    r.between(10, 19),
                    r.between(1000, 9999)
                );
                format!(
                    "<{host}{}@{host}.{}.prod.outlook.com>",
                    r.hex(16).to_uppercase(),
                    r.pick(&["namprd11", "namprd04", "eurprd08", "jpnprd01"])
                )
            }
            Client::AppleMail => format!("<{}@{}>", r.uuid().to_uppercase(), sender.domain()),
            Client::Thunderbird => format!("<{}@{}>", r.uuid(), sender.domain()),
            Client::Mutt => {
                let t = tm(date, 0);
                format!(
                    "<{}{:02}{:02}{:02}{:02}{:02}.GA{}@{}>",
                    t.year,
                    t.month,
                    t.day,
                    t.hour,
                    t.min,
                    t.sec,
                    r.between(1000, 99_999),
                    sender.domain()
                )
            }
            Client::Becky | Client::ShiftJisMailer => format!(
                "<{}.{}.{}@{}>",
                r.hex(8).to_uppercase(),
                r.hex(4).to_uppercase(),
                r.between(100, 999),
                sender.domain()
            ),
            Client::TheBat => format!(
                "<{}.{}@{}>",
                r.between(100_000_000, 999_999_999),
                r.between(1000, 9999),
                sender.domain()
            ),
        }
    }

    /// Greeting, sentences, closing and signature in the sender's language.
    fn compose(
        &mut self,
        lang: Lang,
        sender: &Person,
        to: &Person,
        topic: &Topic,
        last: bool,
        reply: bool,
    ) -> Vec<String> {
        let b = bank(lang);
        let r = &mut self.rng;
        let mut paras = Vec::new();
        let greeting = fill(r.one(b.greetings), topic, Some(to));
        let opener = r.pick(b.openers).to_string();
        if reply && last && r.chance(0.4) && sender.email != self.corpus.user.email {
            paras.push(fill(r.one(b.thanks), topic, Some(to)));
        } else {
            let mut body = Vec::new();
            if !opener.is_empty() {
                body.push(opener);
            }
            let count = r.between(1, 3);
            for i in r.distinct(b.statements.len(), count) {
                body.push(fill(b.statements[i], topic, Some(to)));
            }
            if r.chance(0.55) {
                body.push(fill(r.one(b.questions), topic, Some(to)));
            }
            if r.chance(0.3) {
                body.push(fill(r.one(b.commitments), topic, Some(to)));
            }
            // One or two paragraphs.
            if body.len() > 2 && r.chance(0.5) {
                let cut = body.len() / 2;
                let second = body.split_off(cut);
                paras.push(body.join(" "));
                paras.push(second.join(" "));
            } else {
                paras.push(body.join(" "));
            }
        }
        let mut out = vec![greeting];
        out.extend(paras);
        let closing = r.pick(b.closings).to_string();
        let first = if lang == Lang::Ja {
            sender.last.clone()
        } else {
            sender.first.clone()
        };
        out.push(format!("{closing}\n{first}"));
        out
    }

    fn signature(&mut self, sender: &Person) -> String {
        if sender.client == Client::Mutt || self.rng.chance(0.35) {
            return String::new();
        }
        format!(
            "{}\n{} | {}\n{}",
            sender.name, sender.title, sender.org, sender.phone
        )
    }

    /// How the client introduces the quoted message.
    fn attribution(&self, lang: Lang, client: Client, p: &Prior) -> String {
        let t = tm(p.date, p.sender.tz);
        let who = format!("{} <{}>", p.sender.name, p.sender.email);
        match (client, lang) {
            (Client::Thunderbird, Lang::De) => format!(
                "Am {:02}.{:02}.{} um {:02}:{:02} schrieb {}:",
                t.day,
                t.month,
                t.year % 100,
                t.hour,
                t.min,
                p.sender.name
            ),
            (Client::Thunderbird, _) => format!(
                "On {}/{}/{} {:02}:{:02}, {} wrote:",
                t.month,
                t.day,
                t.year % 100,
                t.hour,
                t.min,
                p.sender.name
            ),
            (Client::Mutt, _) => format!(
                "* {} [{}-{:02}-{:02} {:02}:{:02}]:",
                who, t.year, t.month, t.day, t.hour, t.min
            ),
            (Client::TheBat, _) => format!(
                "Вы писали {:02}.{:02}.{} в {:02}:{:02}:",
                t.day, t.month, t.year, t.hour, t.min
            ),
            (_, Lang::De) => format!(
                "Am {:02}.{:02}.{} um {:02}:{:02} schrieb {}:",
                t.day, t.month, t.year, t.hour, t.min, who
            ),
            (_, Lang::Fr) => format!(
                "Le {} {} {} à {:02}:{:02}, {} a écrit :",
                t.day,
                MONTHS[t.month - 1].to_lowercase(),
                t.year,
                t.hour,
                t.min,
                who
            ),
            (_, Lang::Ja) => format!(
                "{}年{}月{}日({}) {}:{:02} {}:",
                t.year, t.month, t.day, WEEKDAYS_JA[t.wday], t.hour, t.min, who
            ),
            (_, Lang::Ru) => format!(
                "{:02}.{:02}.{} {:02}:{:02}, {} пишет:",
                t.day, t.month, t.year, t.hour, t.min, who
            ),
            (Client::AppleMail, _) => format!(
                "On {} {}, {}, at {:02}:{:02}, {} wrote:",
                MONTHS[t.month - 1],
                t.day,
                t.year,
                t.hour,
                t.min,
                who
            ),
            _ => format!(
                "On {}, {} {}, {} at {} {} wrote:",
                WEEKDAYS[t.wday],
                MONTHS[t.month - 1],
                t.day,
                t.year,
                ampm(&t),
                who
            ),
        }
    }

    /// Outlook's header block above the quoted message.
    fn outlook_block(&mut self, lang: Lang, p: &Prior, html: bool) -> String {
        let t = tm(p.date, p.sender.tz);
        let sent = format!(
            "{}, {} {}, {} {}",
            WEEKDAYS_LONG[t.wday],
            MONTHS_LONG[t.month - 1],
            t.day,
            t.year,
            ampm(&t)
        );
        let to =
            p.to.iter()
                .map(|x| x.name.clone())
                .collect::<Vec<_>>()
                .join("; ");
        let (sep, from, sent_l, to_l, subj) = match lang {
            Lang::De => (
                "-----Ursprüngliche Nachricht-----",
                "Von",
                "Gesendet",
                "An",
                "Betreff",
            ),
            Lang::Fr => ("-----Message d'origine-----", "De", "Envoyé", "À", "Objet"),
            _ => (
                "-----Original Message-----",
                "From",
                "Sent",
                "To",
                "Subject",
            ),
        };
        let from_v = format!("{} <{}>", p.sender.name, p.sender.email);
        if html {
            format!(
                "<div style=\"border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in\">\
                 <p class=\"MsoNormal\"><b>{from}:</b> {}<br><b>{sent_l}:</b> {}<br><b>{to_l}:</b> {}<br>\
                 <b>{subj}:</b> {}<o:p></o:p></p></div>\n",
                html_escape(&from_v),
                html_escape(&sent),
                html_escape(&to),
                html_escape(&p.subject)
            )
        } else if self.rng.chance(0.5) {
            format!(
                "{sep}\n{from}: {from_v}\n{sent_l}: {sent}\n{to_l}: {to}\n{subj}: {}\n",
                p.subject
            )
        } else {
            format!(
                "________________________________\n{from}: {from_v}\n{sent_l}: {sent}\n{to_l}: {to}\n{subj}: {}\n",
                p.subject
            )
        }
    }

    /// Renders plain and HTML bodies of a message quoting `parent`.
    fn bodies(
        &mut self,
        lang: Lang,
        sender: &Person,
        paras: &[String],
        parent: Option<&Prior>,
        extra_plain: &str,
    ) -> (String, String) {
        let client = sender.client;
        let signature = self.signature(sender);
        let mobile = client == Client::AppleMail && self.rng.chance(0.2);
        let mut new_text = paras.join("\n\n");
        if mobile {
            new_text.push_str("\n\nSent from my iPhone");
        } else if !signature.is_empty() {
            if client == Client::Outlook {
                let _ = write!(new_text, "\n\n{signature}");
            } else {
                let _ = write!(new_text, "\n\n-- \n{signature}");
            }
        }
        new_text.push_str(extra_plain);
        let mut html_new = String::new();
        for para in paras {
            match client {
                Client::Outlook => {
                    let _ = writeln!(
                        html_new,
                        "<p class=\"MsoNormal\">{}<o:p></o:p></p>\n<p class=\"MsoNormal\"><o:p>&nbsp;</o:p></p>",
                        text_to_html(para)
                    );
                }
                _ => {
                    let _ = writeln!(html_new, "<div>{}</div><div><br></div>", text_to_html(para));
                }
            }
        }
        if !signature.is_empty() && !mobile {
            let _ = write!(
                html_new,
                "<div class=\"gmail_signature\" style=\"color:#888888;font-size:small\">-- <br>{}</div>",
                text_to_html(&signature)
            );
        }
        if !extra_plain.is_empty() {
            html_new.push_str(&format!(
                "<div>{}</div>",
                text_to_html(extra_plain.trim_start())
            ));
        }
        let Some(p) = parent else {
            return (new_text, html_new);
        };
        let quote_plain = |text: &str| -> String {
            text.lines()
                .map(|l| {
                    if l.starts_with('>') {
                        format!(">{l}")
                    } else if l.is_empty() {
                        ">".to_string()
                    } else {
                        format!("> {l}")
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let attribution = self.attribution(lang, client, p);
        let (plain, html) = match client {
            Client::Outlook => {
                let block = self.outlook_block(lang, p, false);
                let block_html = self.outlook_block(lang, p, true);
                (
                    format!("{new_text}\n\n{block}\n{}", p.plain),
                    format!("{html_new}<div>{block_html}{}</div>", p.html),
                )
            }
            Client::AppleMail => (
                format!(
                    "{new_text}\n\n> {attribution}\n> \n{}",
                    quote_plain(&p.plain)
                ),
                format!(
                    "{html_new}<div><br><blockquote type=\"cite\"><div>{}</div><br class=\"Apple-interchange-newline\"><div>{}</div></blockquote></div>",
                    html_escape(&attribution),
                    p.html
                ),
            ),
            Client::Thunderbird | Client::Mutt if self.rng.chance(0.35) => (
                // Bottom-posted.
                format!("{attribution}\n{}\n\n{new_text}", quote_plain(&p.plain)),
                format!(
                    "<div class=\"moz-cite-prefix\">{}</div><blockquote type=\"cite\">{}</blockquote>{html_new}",
                    html_escape(&attribution),
                    p.html
                ),
            ),
            _ => (
                format!("{new_text}\n\n{attribution}\n\n{}", quote_plain(&p.plain)),
                format!(
                    "<div dir=\"ltr\">{html_new}</div><br><div class=\"gmail_quote\"><div dir=\"ltr\" class=\"gmail_attr\">{}<br></div>\
                     <blockquote class=\"gmail_quote\" style=\"margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex\">{}</blockquote></div>",
                    html_escape(&attribution),
                    p.html
                ),
            ),
        };
        (plain, html)
    }

    /// Wraps an HTML fragment as the client would send it.
    fn html_document(&self, client: Client, charset_label: &str, fragment: &str) -> String {
        match client {
            Client::Outlook => format!(
                "<html xmlns:v=\"urn:schemas-microsoft-com:vml\" xmlns:o=\"urn:schemas-microsoft-com:office:office\" \
                 xmlns:w=\"urn:schemas-microsoft-com:office:word\" xmlns:m=\"http://schemas.microsoft.com/office/2004/12/omml\" \
                 xmlns=\"http://www.w3.org/TR/REC-html40\">\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset={charset_label}\">\n\
                 <meta name=\"Generator\" content=\"Microsoft Word 15 (filtered medium)\">\n<style><!--\n\
                 /* Font Definitions */\n@font-face\n\t{{font-family:\"Cambria Math\";\n\tpanose-1:2 4 5 3 5 4 6 3 2 4;}}\n\
                 @font-face\n\t{{font-family:Aptos;}}\n/* Style Definitions */\np.MsoNormal, li.MsoNormal, div.MsoNormal\n\
                 \t{{margin:0in;\n\tfont-size:12.0pt;\n\tfont-family:\"Aptos\",sans-serif;}}\na:link, span.MsoHyperlink\n\
                 \t{{mso-style-priority:99;\n\tcolor:#467886;\n\ttext-decoration:underline;}}\nspan.EmailStyle19\n\
                 \t{{mso-style-type:personal-reply;\n\tfont-family:\"Aptos\",sans-serif;\n\tcolor:windowtext;}}\n\
                 .MsoChpDefault\n\t{{mso-style-type:export-only;\n\tfont-size:10.0pt;}}\n@page WordSection1\n\
                 \t{{size:8.5in 11.0in;\n\tmargin:1.0in 1.0in 1.0in 1.0in;}}\ndiv.WordSection1\n\t{{page:WordSection1;}}\n\
                 --></style><!--[if gte mso 9]><xml>\n<o:shapedefaults v:ext=\"edit\" spidmax=\"1026\" />\n</xml><![endif]-->\n\
                 </head>\n<body lang=\"EN-US\" link=\"#467886\" vlink=\"#96607D\" style=\"word-wrap:break-word\">\n\
                 <div class=\"WordSection1\">\n{fragment}\n</div>\n</body>\n</html>\n"
            ),
            Client::AppleMail => format!(
                "<html><head><meta http-equiv=\"content-type\" content=\"text/html; charset={charset_label}\"></head>\
                 <body style=\"overflow-wrap: break-word; -webkit-nbsp-mode: space; line-break: after-white-space;\">{fragment}</body></html>\n"
            ),
            Client::Thunderbird => format!(
                "<!DOCTYPE html>\n<html>\n  <head>\n    <meta http-equiv=\"Content-Type\" content=\"text/html; charset={charset_label}\">\n  </head>\n  <body>\n{fragment}\n  </body>\n</html>\n"
            ),
            _ => format!("<div dir=\"ltr\">{fragment}</div>\n"),
        }
    }

    /// Assembles a person's message: headers, MIME structure, optional
    /// attachment. Returns the message and what its replies quote.
    #[allow(clippy::too_many_arguments)]
    fn person_message(
        &mut self,
        lang: Lang,
        sender: &Person,
        to: &[Person],
        cc: &[Person],
        subject: &str,
        date: i64,
        parent: Option<&Prior>,
        paras: &[String],
        extra_plain: &str,
        with_id: bool,
        list: Option<&ListInfo>,
    ) -> (Message, Prior) {
        let client = sender.client;
        let from_user = sender.email == self.user().email;
        let (plain, fragment) = self.bodies(lang, sender, paras, parent, extra_plain);
        let plain = match list {
            Some(l) if !from_user => format!("{plain}\n{}", l.footer()),
            _ => plain,
        };
        let html_wanted = match client {
            Client::Gmail | Client::Outlook => true,
            Client::AppleMail => self.rng.chance(0.6),
            Client::Thunderbird => self.rng.chance(0.3),
            _ => false,
        } && list.is_none();
        let html_only = html_wanted && client == Client::Outlook && self.rng.chance(0.1);
        let flowed =
            matches!(client, Client::Thunderbird | Client::AppleMail) && self.rng.chance(0.7);
        let (plain_part, info) = text_part("plain", &plain, client, lang, flowed);
        let (body, structure, info) = if html_wanted {
            let (charset, _) = choose_encoding(client, lang, &plain);
            let doc = self.html_document(client, charset.spelled(client), &fragment);
            let (html_part, html_info) = text_part("html", &doc, client, lang, false);
            if html_only {
                (html_part, "text/html", html_info)
            } else {
                (
                    multipart(
                        &mut self.rng,
                        client,
                        "alternative",
                        vec![plain_part, html_part],
                    ),
                    "multipart/alternative",
                    info,
                )
            }
        } else {
            (plain_part, "text/plain", info)
        };
        let attach = self.rng.chance(self.corpus.options.attachment_rate);
        let (body, attachment) = if attach {
            let (part, name, size) = attachment(&mut self.rng, lang, client);
            (
                multipart(&mut self.rng, client, "mixed", vec![body, part]),
                Some((name, size)),
            )
        } else {
            (body, None)
        };
        let message_id = with_id.then(|| self.message_id(sender, date));
        let mut references = parent.map(|p| p.references.clone()).unwrap_or_default();
        if let Some(p) = parent {
            if let Some(id) = &p.message_id {
                references.push(id.clone());
            }
        }
        let in_reply_to = parent.and_then(|p| p.message_id.clone());
        let (charset, _) = choose_encoding(client, lang, &format!("{subject}{}", sender.name));
        let mut h = String::new();
        if !from_user {
            self.transport_headers(&mut h, sender, date);
        }
        let from = mailbox(sender, charset, client);
        let to_line = to
            .iter()
            .map(|p| mailbox(p, charset, client))
            .collect::<Vec<_>>();
        let cc_line = cc
            .iter()
            .map(|p| mailbox(p, charset, client))
            .collect::<Vec<_>>();
        let subject_h = header_text(subject, charset, client);
        let date_h = rfc5322_date(date, sender.tz);
        let refs = references.join(" ");
        // Each client has its own header order and spelling.
        match client {
            Client::AppleMail => {
                header(&mut h, "From", &from);
                h.push_str(&body.headers);
                header(
                    &mut h,
                    "Mime-Version",
                    "1.0 (Mac OS X Mail 16.0 \\(3826.400.131.1.6\\))",
                );
                header(&mut h, "Subject", &subject_h);
                if let Some(id) = &message_id {
                    header(&mut h, "Message-Id", id);
                }
                header(&mut h, "Date", &date_h);
                if !cc_line.is_empty() {
                    header(&mut h, "Cc", &cc_line.join(", "));
                }
                header(&mut h, "To", &to_line.join(", "));
                if let Some(irt) = &in_reply_to {
                    header(&mut h, "In-Reply-To", irt);
                }
                if !refs.is_empty() {
                    header(&mut h, "References", &refs);
                }
                header(&mut h, "X-Mailer", "Apple Mail (2.3826.400.131.1.6)");
            }
            Client::Outlook => {
                header(&mut h, "From", &from);
                header(&mut h, "To", &to_line.join(", "));
                if !cc_line.is_empty() {
                    header(&mut h, "CC", &cc_line.join(", "));
                }
                header(&mut h, "Subject", &subject_h);
                header(
                    &mut h,
                    "Thread-Topic",
                    &header_text(strip_reply_prefixes(subject), charset, client),
                );
                let idx = base64::engine::general_purpose::STANDARD.encode({
                    let mut b = vec![0u8; 22 + 5 * references.len().min(8)];
                    self.rng.fill(&mut b);
                    b
                });
                header(&mut h, "Thread-Index", &idx);
                header(&mut h, "Date", &date_h);
                if let Some(id) = &message_id {
                    header(&mut h, "Message-ID", id);
                }
                if !refs.is_empty() {
                    header(&mut h, "References", &refs);
                }
                if let Some(irt) = &in_reply_to {
                    header(&mut h, "In-Reply-To", irt);
                }
                header(&mut h, "Accept-Language", "en-US");
                header(
                    &mut h,
                    "Content-Language",
                    match lang {
                        Lang::De => "de-DE",
                        Lang::Fr => "fr-FR",
                        Lang::Ja => "ja-JP",
                        Lang::Ru => "ru-RU",
                        _ => "en-US",
                    },
                );
                header(
                    &mut h,
                    "X-MS-Has-Attach",
                    if attachment.is_some() { "yes" } else { "" },
                );
                header(&mut h, "X-MS-TNEF-Correlator", "");
                h.push_str(&body.headers);
                header(&mut h, "MIME-Version", "1.0");
            }
            _ => {
                header(&mut h, "MIME-Version", "1.0");
                header(&mut h, "Date", &date_h);
                if let Some(id) = &message_id {
                    header(&mut h, "Message-ID", id);
                }
                match client {
                    Client::Gmail => {}
                    Client::Thunderbird => header(&mut h, "User-Agent", "Mozilla Thunderbird"),
                    Client::Mutt => header(&mut h, "User-Agent", "Mutt/2.2.12 (2023-09-09)"),
                    Client::Becky => header(&mut h, "X-Mailer", "Becky! ver. 2.81.04 [ja]"),
                    Client::ShiftJisMailer => header(
                        &mut h,
                        "X-Mailer",
                        "Microsoft Outlook Express 6.00.2900.5931",
                    ),
                    Client::TheBat => header(&mut h, "X-Mailer", "The Bat! (v9.4.5) Professional"),
                    _ => {}
                }
                if let Some(irt) = &in_reply_to {
                    header(&mut h, "In-Reply-To", irt);
                }
                if !refs.is_empty() {
                    header(&mut h, "References", &refs);
                }
                header(&mut h, "Subject", &subject_h);
                header(&mut h, "From", &from);
                header(&mut h, "To", &to_line.join(", "));
                if !cc_line.is_empty() {
                    header(&mut h, "Cc", &cc_line.join(", "));
                }
                h.push_str(&body.headers);
            }
        }
        if let Some(l) = list {
            if !from_user {
                l.headers(&mut h);
            }
        }
        let text = format!("{h}\n{}", body.body);
        let bytes = into_bytes(&text);
        let prior = Prior {
            sender: sender.clone(),
            to: to.to_vec(),
            cc: cc.to_vec(),
            from_user,
            date,
            message_id: message_id.clone(),
            references,
            subject: subject.to_string(),
            plain,
            html: fragment,
        };
        let message = Message {
            folder: if from_user {
                Folder::Sent
            } else {
                Folder::Inbox
            },
            bytes,
            date,
            flags: String::new(),
            thread: self.thread,
            message_id,
            in_reply_to,
            subject: subject.to_string(),
            from: sender.email.clone(),
            from_user,
            charset: info.charset,
            encoding: info.cte,
            structure,
            attachment,
            in_both_folders: false,
            root_missing: false,
            bulk: list.is_some(),
        };
        (message, prior)
    }

    /// Received, Authentication-Results and DKIM of mail that came in over SMTP.
    fn transport_headers(&mut self, h: &mut String, sender: &Person, date: i64) {
        let user_domain = self
            .user()
            .email
            .split('@')
            .nth(1)
            .unwrap_or("example.test")
            .to_string();
        let r = &mut self.rng;
        let delay = r.between(1, 40) as i64;
        let relay = format!(
            "mail-{}.{}",
            r.string(6, b"abcdefghijklmnopqrstuvwxyz0123456789"),
            sender.domain()
        );
        let ip = format!(
            "{}.{}",
            r.pick(&["192.0.2", "198.51.100", "203.0.113"]),
            r.between(1, 254)
        );
        header(h, "Return-Path", &format!("<{}>", sender.email));
        header(h, "Delivered-To", &self.corpus.user.email);
        header(
            h,
            "Received",
            &format!(
                "from {relay} ({relay} [{ip}]) by mx.{user_domain} (Postfix) with ESMTPS id {} for <{}>; {}",
                r.string(11, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
                self.corpus.user.email,
                rfc5322_date(date + delay, 0)
            ),
        );
        header(
            h,
            "Received",
            &format!(
                "by {relay} with SMTP id {}; {}",
                r.string(20, b"abcdefghijklmnopqrstuvwxyz0123456789"),
                rfc5322_date(date, sender.tz)
            ),
        );
        header(
            h,
            "Authentication-Results",
            &format!(
                "mx.{user_domain}; dkim=pass header.d={d} header.s=s1 header.b={}; spf=pass (mx.{user_domain}: domain of {} designates {ip} as permitted sender) smtp.mailfrom={d}; dmarc=pass (p=NONE) header.from={d}",
                r.string(8, B64CHARS),
                sender.email,
                d = sender.domain()
            ),
        );
        if sender.client == Client::Gmail || sender.client == Client::Outlook || r.chance(0.5) {
            header(
                h,
                "DKIM-Signature",
                &format!(
                    "v=1; a=rsa-sha256; c=relaxed/relaxed; d={}; s=s1; t={}; x={}; h=to:subject:message-id:date:from:mime-version:from:to:cc:subject:date:message-id:reply-to; bh={}=; b={}",
                    sender.domain(),
                    date,
                    date + 604_800,
                    r.string(43, B64CHARS),
                    chunked(&r.string(342, B64CHARS), 60)
                ),
            );
        }
        header(
            h,
            "X-Spam-Status",
            &format!(
                "No, score=-{}.{} required=5.0 tests=DKIM_SIGNED,DKIM_VALID,SPF_PASS autolearn=ham",
                r.below(3),
                r.below(10)
            ),
        );
    }

    fn finish_flags(&mut self) {
        let end = self.corpus.options.end;
        let ids_replied_by_user: HashSet<String> = self
            .out
            .iter()
            .filter(|m| m.from_user)
            .filter_map(|m| m.in_reply_to.clone())
            .collect();
        for m in &mut self.out {
            let mut f = String::new();
            if !m.from_user && self.rng.chance(0.03) {
                f.push('F');
            }
            if m.message_id
                .as_ref()
                .is_some_and(|id| ids_replied_by_user.contains(id))
            {
                f.push('R');
            }
            let seen = m.from_user || end - m.date > 3 * 86_400 || self.rng.chance(0.5);
            if seen {
                f.push('S');
            }
            m.flags = f;
        }
    }

    // --- thread kinds -------------------------------------------------------

    fn conversation(&mut self, forward: bool) {
        let lang = [Lang::En, Lang::De, Lang::Fr, Lang::Ja, Lang::Ru, Lang::Intl]
            [self.rng.weighted(&[52, 12, 10, 10, 8, 8])];
        let count = 1 + self.rng.weighted(&[60, 25, 10, 5]);
        let others = self.contacts(lang, count);
        let b = bank(lang);
        let topic = Topic {
            topic: self.rng.one(b.topics),
            day: self.rng.one(b.days),
            doc: self.rng.one(b.docs),
            n: self.rng.between(2, 95),
        };
        let mut base_subject = fill(self.rng.one(b.subjects), &topic, None);
        let len = if forward {
            self.rng.between(1, 4)
        } else {
            1 + self.rng.weighted(&[34, 20, 13, 9, 6, 5, 4, 3, 2, 2, 1, 1])
        };
        let user = self.user().clone();
        let user_starts = forward || self.rng.chance(0.25);
        let mut extra_first = String::new();
        if forward {
            let src = others[0].clone();
            let t = tm(self.start_time() - 86_400 * 3, src.tz);
            extra_first = format!(
                "\n\n---------- Forwarded message ---------\nFrom: {} <{}>\nDate: {}, {} {}, {} at {}\nSubject: {}\nTo: {}\n\n{}",
                src.name,
                src.email,
                WEEKDAYS[t.wday],
                MONTHS[t.month - 1],
                t.day,
                t.year,
                ampm(&t),
                base_subject,
                user.email,
                fill(self.rng.one(b.statements), &topic, Some(&user))
            );
            base_subject = format!("Fwd: {base_subject}");
        }
        let missing_root = len >= 2 && self.rng.chance(0.06);
        let no_id_leaf = len >= 2 && self.rng.chance(0.02);
        let mut date = self.start_time();
        let end = self.corpus.options.end;
        for i in 0..len {
            let (sender, to, cc, parent_idx) = if i == 0 {
                if user_starts {
                    if forward {
                        (
                            user.clone(),
                            vec![others[others.len() - 1].clone()],
                            vec![],
                            None,
                        )
                    } else {
                        (
                            user.clone(),
                            vec![others[0].clone()],
                            others[1..].to_vec(),
                            None,
                        )
                    }
                } else {
                    let cc = if others.len() > 1 {
                        others[1..].to_vec()
                    } else {
                        vec![]
                    };
                    (others[0].clone(), vec![user.clone()], cc, None)
                }
            } else {
                let p = if i > 1 && self.rng.chance(0.15) {
                    self.rng.below(i)
                } else {
                    i - 1
                };
                let parent = &self.priors[p];
                let sender = if parent.from_user {
                    self.rng.pick(&others).clone()
                } else if others.len() == 1 || self.rng.chance(0.6) {
                    user.clone()
                } else {
                    let candidates: Vec<Person> = others
                        .iter()
                        .filter(|o| o.email != parent.sender.email)
                        .cloned()
                        .collect();
                    if candidates.is_empty() {
                        user.clone()
                    } else {
                        self.rng.pick(&candidates).clone()
                    }
                };
                let to = vec![parent.sender.clone()];
                let mut cc = Vec::new();
                if self.rng.chance(0.7) {
                    for x in parent.to.iter().chain(parent.cc.iter()) {
                        if x.email != sender.email
                            && x.email != parent.sender.email
                            && !cc.iter().any(|c: &Person| c.email == x.email)
                        {
                            cc.push(x.clone());
                        }
                    }
                }
                if cc.iter().all(|c| c.email != user.email)
                    && sender.email != user.email
                    && parent.sender.email != user.email
                {
                    cc.push(user.clone());
                }
                (sender, to, cc, Some(p))
            };
            if i > 0 {
                let p = parent_idx.unwrap_or(i - 1);
                date = self.priors[p].date.max(date) + self.reply_delay();
                if date > end {
                    break;
                }
            }
            let subject = if i == 0 {
                base_subject.clone()
            } else {
                let prefix = match (sender.client, lang) {
                    (Client::Outlook, Lang::De) => "AW: ",
                    (Client::Outlook, Lang::Fr) => "RE : ",
                    (Client::Outlook, _) => "RE: ",
                    _ => "Re: ",
                };
                if self.rng.chance(0.03) {
                    format!("{prefix}Re: {base_subject}")
                } else {
                    format!("{prefix}{base_subject}")
                }
            };
            let recipient = to[0].clone();
            let paras = self.compose(lang, &sender, &recipient, &topic, i + 1 == len, i > 0);
            let with_id = !(no_id_leaf && i + 1 == len && sender.email != user.email);
            let parent = parent_idx.map(|p| self.priors[p].clone());
            let extra = if i == 0 { extra_first.as_str() } else { "" };
            let (message, prior) = self.person_message(
                lang,
                &sender,
                &to,
                &cc,
                &subject,
                date,
                parent.as_ref(),
                &paras,
                extra,
                with_id,
                None,
            );
            self.priors.push(prior);
            self.out.push(message);
        }
        // A Bcc to self: the same bytes in INBOX too.
        let mut copies = Vec::new();
        for m in &mut self.out {
            if m.from_user && self.rng.chance(0.04) {
                m.in_both_folders = true;
                let mut copy = m.clone();
                copy.folder = Folder::Inbox;
                copies.push(copy);
            }
        }
        self.out.extend(copies);
        if missing_root {
            self.out
                .retain(|m| m.in_reply_to.is_some() || m.message_id.is_none());
            for m in &mut self.out {
                m.root_missing = true;
            }
        }
        self.out.sort_by_key(|m| (m.date, m.folder));
        self.finish_flags();
    }

    fn list_discussion(&mut self) {
        let lists = [
            ("rust-users", "Rust users", "lists.rust-lang.example"),
            ("dovecot", "Dovecot", "dovecot.example"),
            (
                "postgres-general",
                "PostgreSQL general",
                "lists.postgresql.example",
            ),
            ("obsidian-community", "Obsidian community", "groups.example"),
        ];
        let (id, desc, host) = *self.rng.pick(&lists);
        let list = ListInfo {
            id: id.to_string(),
            desc: desc.to_string(),
            host: host.to_string(),
        };
        let members = self.contacts(Lang::En, 6);
        let user = self.user().clone();
        let list_person = Person {
            name: desc.to_string(),
            email: format!("{id}@{host}"),
            // "Hi all,"
            first: "all".to_string(),
            last: String::new(),
            ..members[0].clone()
        };
        let topic = Topic {
            topic: self.rng.one(&[
                "IMAP IDLE timeouts",
                "connection pooling",
                "UTF-8 folder names",
                "a crash on startup",
                "backup strategy",
                "release 2.4 planning",
            ]),
            day: "Friday",
            doc: "patch",
            n: self.rng.between(2, 40),
        };
        let base = format!(
            "[{id}] {}",
            fill(
                self.rng.one(&[
                    "Question about {topic}",
                    "{topic}",
                    "RFC: {topic}",
                    "Help with {topic}"
                ]),
                &topic,
                None
            )
        );
        let len = 1 + self.rng.weighted(&[30, 20, 15, 10, 8, 6, 4, 3, 2, 1, 1]);
        let mut date = self.start_time();
        let end = self.corpus.options.end;
        for i in 0..len {
            let from_user = i > 0 && self.rng.chance(0.25);
            let mut sender = if from_user {
                user.clone()
            } else {
                self.rng.pick(&members).clone()
            };
            if !from_user && sender.client == Client::Outlook {
                sender.client = Client::Mutt;
            }
            if from_user {
                sender.client = Client::Thunderbird;
            }
            let parent_idx = (i > 0).then(|| {
                if i > 1 && self.rng.chance(0.3) {
                    self.rng.below(i)
                } else {
                    i - 1
                }
            });
            if let Some(p) = parent_idx {
                date = self.priors[p].date.max(date) + self.reply_delay() / 2;
                if date > end {
                    break;
                }
            }
            let subject = if i == 0 {
                base.clone()
            } else {
                format!("Re: {base}")
            };
            let paras = self.compose(Lang::En, &sender, &list_person, &topic, false, i > 0);
            let parent = parent_idx.map(|p| self.priors[p].clone());
            let (mut message, prior) = self.person_message(
                Lang::En,
                &sender,
                std::slice::from_ref(&list_person),
                &[],
                &subject,
                date,
                parent.as_ref(),
                &paras,
                "",
                true,
                Some(&list),
            );
            self.priors.push(prior.clone());
            message.bulk = true;
            if from_user {
                // The list sends the user's post back: same Message-ID, list
                // headers and footer added, delivered to INBOX.
                message.in_both_folders = true;
                let mut echo = message.clone();
                let text = String::from_utf8_lossy(&message.bytes).into_owned();
                let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
                let mut h = String::new();
                self.transport_headers(&mut h, &list_person, date + 2);
                h.push_str(head);
                h.push('\n');
                list.headers(&mut h);
                let body = if message.structure == "text/plain"
                    && message.encoding != "base64"
                    && message.encoding != "quoted-printable"
                {
                    format!("{body}\n{}\n", list.footer())
                } else {
                    body.to_string()
                };
                echo.bytes = format!("{h}\n{body}").into_bytes();
                echo.folder = Folder::Inbox;
                echo.date = date + 2;
                self.out.push(message);
                self.out.push(echo);
            } else {
                self.out.push(message);
            }
        }
        self.finish_flags();
    }

    fn newsletter(&mut self) {
        let senders = [
            (
                "The Weekly Byte",
                "newsletter",
                "weeklybyte.example",
                "weekly",
            ),
            ("Rust Digest", "digest", "rustdigest.example", "digest"),
            (
                "Acme Cloud",
                "no-reply",
                "updates.acme-cloud.example",
                "product-news",
            ),
            (
                "Städtische Bühnen",
                "info",
                "buehnen-stadt.example",
                "spielplan",
            ),
            (
                "Le Monde du Vin",
                "lettre",
                "mondeduvin.example",
                "lettre-hebdo",
            ),
            ("Hacker Summaries", "hello", "hsummaries.example", "daily"),
            (
                "ヨドバシ・ドット・コム",
                "news",
                "yodobashi-shop.example",
                "mailmag",
            ),
            (
                "Product Hunt Daily",
                "hello",
                "producthunt-daily.example",
                "daily",
            ),
        ];
        let (name, local, domain, list) = *self.rng.pick(&senders);
        let issue = self.rng.between(40, 400);
        let date = self.start_time();
        let lang = if name.contains('ヨ') {
            Lang::Ja
        } else if name.contains('ü') {
            Lang::De
        } else if name.contains("Vin") {
            Lang::Fr
        } else {
            Lang::En
        };
        let subject = match lang {
            Lang::Ja => format!("【メルマガ】今週のおすすめ商品 第{issue}号"),
            Lang::De => {
                format!("Spielplan Nr. {issue}: Premieren im Oktober – jetzt Karten sichern")
            }
            Lang::Fr => format!("La lettre n° {issue} : les vins d’été à découvrir"),
            _ => format!(
                "{name} #{issue}: {}",
                self.rng.pick(&[
                    "What’s new in async",
                    "The state of email in 2025",
                    "10 tools we love",
                    "Your weekly roundup",
                    "Big announcements 🎉"
                ])
            ),
        };
        let mut articles = String::new();
        let mut plain = String::new();
        for i in 0..self.rng.between(3, 8) {
            let title = format!(
                "{} {}",
                self.rng
                    .pick(&["Deep dive:", "News:", "Opinion:", "Release:", "Tutorial:"]),
                self.rng.pick(EN.topics)
            );
            let text = (0..self.rng.between(2, 4))
                .map(|_| {
                    fill(
                        self.rng.one(EN.statements),
                        &Topic {
                            topic: "the platform",
                            day: "Monday",
                            doc: "report",
                            n: i + 3,
                        },
                        None,
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            let url = format!("https://{domain}/r/{}?utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign={list}-{issue}", self.rng.hex(16));
            let _ = writeln!(
                articles,
                "<tr><td style=\"padding:24px 32px;border-bottom:1px solid #eeeeee\">\
                 <h2 style=\"margin:0 0 8px 0;font-family:Helvetica,Arial,sans-serif;font-size:20px;color:#111111\">\
                 <a href=\"{url}\" style=\"color:#111111;text-decoration:none\">{}</a></h2>\
                 <p style=\"margin:0;font-family:Helvetica,Arial,sans-serif;font-size:15px;line-height:22px;color:#444444\">{}</p>\
                 <p style=\"margin:12px 0 0 0\"><a href=\"{url}\" class=\"button\" style=\"display:inline-block;padding:8px 16px;background:#0b5fff;color:#ffffff;border-radius:4px;text-decoration:none\">Read more &rarr;</a></p>\
                 </td></tr>",
                html_escape(&title),
                html_escape(&text)
            );
            let _ = write!(
                plain,
                "{title}\n{text}\nRead more: {}\n\n",
                url.replace("&amp;", "&")
            );
        }
        let html = format!(
            "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
             <html xmlns=\"http://www.w3.org/1999/xhtml\"><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\" /><title>{t}</title>\n\
             <style type=\"text/css\">body{{margin:0;padding:0;background:#f4f4f4}} table{{border-collapse:collapse}} \
             .button:hover{{background:#0040c0 !important}} @media only screen and (max-width:600px){{.container{{width:100% !important}}}}</style>\n\
             <!--[if mso]><style>.button{{padding:0 !important}}</style><![endif]-->\n</head>\n\
             <body style=\"margin:0;padding:0;background:#f4f4f4\"><span style=\"display:none;max-height:0;overflow:hidden\">{t} — this week’s highlights</span>\n\
             <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr><td align=\"center\">\n\
             <table class=\"container\" role=\"presentation\" width=\"600\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#ffffff\">\n\
             <tr><td style=\"padding:24px 32px\"><img src=\"https://{domain}/logo.png\" width=\"120\" alt=\"{n}\" /></td></tr>\n{articles}\
             <tr><td style=\"padding:24px 32px;font-size:12px;color:#999999\">You receive this because you subscribed at {domain}. \
             <a href=\"https://{domain}/unsubscribe?u={u}\">Unsubscribe</a> · <a href=\"https://{domain}/prefs?u={u}\">Preferences</a></td></tr>\n\
             </table></td></tr></table><img src=\"https://{domain}/o/{u}.gif\" width=\"1\" height=\"1\" alt=\"\" /></body></html>\n",
            t = html_escape(&subject),
            n = html_escape(name),
            u = self.rng.hex(24),
        );
        let sender = Person {
            name: name.to_string(),
            email: format!("{local}@{domain}"),
            first: name.to_string(),
            last: String::new(),
            lang,
            client: Client::Gmail,
            tz: 0,
            title: "",
            org: name.to_string(),
            phone: String::new(),
        };
        let (html_part, info) = text_part("html", &html, Client::Gmail, Lang::Intl, false);
        let (body, structure, info) = if self.rng.chance(0.6) {
            let (plain_part, pinfo) = text_part("plain", &plain, Client::Gmail, Lang::Intl, false);
            (
                multipart(
                    &mut self.rng,
                    Client::Gmail,
                    "alternative",
                    vec![plain_part, html_part],
                ),
                "multipart/alternative",
                pinfo,
            )
        } else {
            (html_part, "text/html", info)
        };
        let mut h = String::new();
        self.transport_headers(&mut h, &sender, date);
        let id = format!(
            "<0100{}-{}-000000@email.amazonses.com>",
            self.rng.hex(12),
            self.rng.uuid()
        );
        header(
            &mut h,
            "From",
            &mailbox(&sender, Charset::Utf8, Client::Gmail),
        );
        header(&mut h, "To", &self.corpus.user.email);
        header(
            &mut h,
            "Subject",
            &header_text(&subject, Charset::Utf8, Client::Gmail),
        );
        header(&mut h, "Date", &rfc5322_date(date, 0));
        header(&mut h, "Message-ID", &id);
        header(&mut h, "MIME-Version", "1.0");
        h.push_str(&body.headers);
        header(
            &mut h,
            "List-Id",
            &format!(
                "{} <{list}.{domain}>",
                header_text(name, Charset::Utf8, Client::Gmail)
            ),
        );
        header(&mut h, "List-Unsubscribe", &format!("<https://{domain}/unsubscribe/{}>, <mailto:unsubscribe@{domain}?subject=unsubscribe>", self.rng.hex(20)));
        header(
            &mut h,
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click",
        );
        header(&mut h, "Precedence", "bulk");
        header(
            &mut h,
            "Feedback-ID",
            &format!("1.us-east-1.{}=:AmazonSES", self.rng.string(43, B64CHARS)),
        );
        header(&mut h, "X-SES-Outgoing", "2025.10.01-54.240.8.1");
        let text = format!("{h}\n{}", body.body);
        self.out.push(Message {
            folder: Folder::Inbox,
            bytes: into_bytes(&text),
            date,
            flags: String::new(),
            thread: self.thread,
            message_id: Some(id),
            in_reply_to: None,
            subject,
            from: sender.email.clone(),
            from_user: false,
            charset: info.charset,
            encoding: info.cte,
            structure,
            attachment: None,
            in_both_folders: false,
            root_missing: false,
            bulk: true,
        });
        self.finish_flags();
    }

    /// An automatic message from `sender_name <email>`, HTML-only or plain.
    #[allow(clippy::too_many_arguments)]
    fn automatic(
        &mut self,
        sender: Person,
        subject: String,
        date: i64,
        plain: &str,
        html: Option<&str>,
        message_id: Option<String>,
        in_reply_to: Option<String>,
        references: &[String],
        extra_headers: &[(&str, String)],
        root_missing: bool,
    ) {
        let client = Client::Gmail;
        let (body, structure, info) = match html {
            Some(html) => {
                let (p, info) = text_part("html", html, client, Lang::Intl, false);
                (p, "text/html", info)
            }
            None => {
                let (p, info) = text_part("plain", plain, Client::Mutt, Lang::En, false);
                (p, "text/plain", info)
            }
        };
        let attach = self.rng.chance(self.corpus.options.attachment_rate);
        let (body, attachment) = if attach {
            let (part, name, size) = attachment(&mut self.rng, Lang::En, client);
            (
                multipart(&mut self.rng, client, "mixed", vec![body, part]),
                Some((name, size)),
            )
        } else {
            (body, None)
        };
        let mut h = String::new();
        self.transport_headers(&mut h, &sender, date);
        header(&mut h, "Date", &rfc5322_date(date, sender.tz));
        header(&mut h, "From", &mailbox(&sender, Charset::Utf8, client));
        header(&mut h, "To", &self.corpus.user.email);
        header(
            &mut h,
            "Subject",
            &header_text(&subject, Charset::Utf8, client),
        );
        if let Some(id) = &message_id {
            header(&mut h, "Message-ID", id);
        }
        if let Some(irt) = &in_reply_to {
            header(&mut h, "In-Reply-To", irt);
        }
        if !references.is_empty() {
            header(&mut h, "References", &references.join(" "));
        }
        header(&mut h, "MIME-Version", "1.0");
        h.push_str(&body.headers);
        for (name, value) in extra_headers {
            header(&mut h, name, value);
        }
        let text = format!("{h}\n{}", body.body);
        self.out.push(Message {
            folder: Folder::Inbox,
            bytes: into_bytes(&text),
            date,
            flags: String::new(),
            thread: self.thread,
            message_id,
            in_reply_to,
            subject,
            from: sender.email.clone(),
            from_user: false,
            charset: info.charset,
            encoding: info.cte,
            structure,
            attachment,
            in_both_folders: false,
            root_missing,
            bulk: true,
        });
    }

    fn robot(&self, name: &str, email: &str) -> Person {
        Person {
            name: name.to_string(),
            email: email.to_string(),
            first: name.to_string(),
            last: String::new(),
            lang: Lang::En,
            client: Client::Gmail,
            tz: 0,
            title: "",
            org: String::new(),
            phone: String::new(),
        }
    }

    fn notification(&mut self) {
        let date = self.start_time();
        let n = self.rng.between(10_000, 99_999);
        let kinds: &[(&str, &str, &str)] = &[
            (
                "Acme Bank",
                "alerts@acmebank.example",
                "Your statement for account ••••{n} is ready",
            ),
            (
                "ParcelGo",
                "tracking@parcelgo.example",
                "Your package {n} is out for delivery 🚚",
            ),
            (
                "Jira",
                "jira@acme-corp.atlassian.example",
                "[JIRA] (OPS-{n}) Disk usage above 90% on db-2",
            ),
            (
                "Zoom",
                "no-reply@zoom.example",
                "Cloud recording is now available",
            ),
            (
                "Deutsche Bahn",
                "buchungsbestaetigung@bahn.example",
                "Ihre Buchungsbestätigung (Auftrag {n})",
            ),
            (
                "Amazon.example",
                "auto-confirm@shop.example",
                "Your order #{n} has shipped",
            ),
        ];
        let (name, email, subj) = *self.rng.pick(kinds);
        let subject = subj.replace("{n}", &n.to_string());
        let body_text = format!(
            "{}. Reference {n}. Sign in to see the details. This is an automatic message; please do not reply.",
            subject
        );
        let html = format!(
            "<html><head><style>.hdr{{background:#222;color:#fff;padding:12px}} td{{font-family:Arial}}</style>\
             <script type=\"text/javascript\">window.trackOpen && trackOpen('{n}');</script></head>\
             <body><table width=\"100%\"><tr><td class=\"hdr\">{name}</td></tr><tr><td><p>{}</p>\
             <p><a href=\"https://{d}/view/{n}\">View details</a></p></td></tr>\
             <tr><td style=\"font-size:11px;color:#888\">© 2025 {name}. All rights reserved.</td></tr></table></body></html>",
            html_escape(&body_text),
            d = email.split('@').nth(1).unwrap_or("example.test")
        );
        let sender = self.robot(name, email);
        let id = Some(format!(
            "<{}.{}@{}>",
            self.rng.hex(24),
            n,
            email.split('@').nth(1).unwrap_or("x")
        ));
        self.automatic(
            sender,
            subject,
            date,
            &body_text,
            Some(&html),
            id,
            None,
            &[],
            &[
                ("Auto-Submitted", "auto-generated".into()),
                ("X-Auto-Response-Suppress", "All".into()),
            ],
            false,
        );
        self.finish_flags();
    }

    /// GitHub-style notifications: replies to an issue whose opening mail
    /// never arrived (a missing root).
    fn issue_notifications(&mut self) {
        let repo = *self.rng.pick(&[
            "acme/api",
            "acme/web",
            "mailbridge/mailbridge",
            "initech/tps",
        ]);
        let num = self.rng.between(100, 4999);
        let template = self.rng.one(&[
            "Crash when {topic} is enabled",
            "Docs: {topic}",
            "Flaky test in {topic}",
            "Support {topic}",
        ]);
        let topic = Topic {
            topic: self.rng.one(EN.topics),
            day: "",
            doc: "",
            n: 0,
        };
        let title = fill(template, &topic, None);
        let root = format!("<{repo}/issues/{num}@github.example>");
        let subject = format!("Re: [{repo}] {title} (Issue #{num})");
        let mut date = self.start_time();
        let count = self.rng.between(1, 5);
        for _ in 0..count {
            let who = self.rng.pick(EN_FIRST).to_lowercase();
            let comment = self.rng.between(1_000_000_000, 3_000_000_000);
            let text = format!(
                "{}\n\n—\nReply to this email directly, view it on GitHub:\nhttps://github.example/{repo}/issues/{num}#issuecomment-{comment}\nYou are receiving this because you were mentioned.",
                fill(self.rng.one(EN.statements), &Topic { topic: "the fix", day: "Friday", doc: "patch", n: 3 }, None)
            );
            let html = format!("<p>{}</p>\n<p style=\"font-size:small;color:#666\">—<br>Reply to this email directly, <a href=\"https://github.example/{repo}/issues/{num}#issuecomment-{comment}\">view it on GitHub</a>.</p>", text_to_html(&text));
            let sender = self.robot(
                &format!("{who} (via GitHub)"),
                "notifications@github.example",
            );
            let id = format!("<{repo}/issues/{num}/{comment}@github.example>");
            self.automatic(
                sender,
                subject.clone(),
                date,
                &text,
                Some(&html),
                Some(id),
                Some(root.clone()),
                std::slice::from_ref(&root),
                &[
                    (
                        "List-ID",
                        format!("{repo} <{}.github.example>", repo.replace('/', ".")),
                    ),
                    ("X-GitHub-Reason", "mention".into()),
                    ("Precedence", "list".into()),
                ],
                true,
            );
            date += self.reply_delay();
            if date > self.corpus.options.end {
                break;
            }
        }
        self.finish_flags();
    }

    fn calendar(&mut self) {
        let lang = Lang::En;
        let organizer = self.contacts(lang, 1).remove(0);
        let date = self.start_time();
        let start = tm(date + 3 * 86_400, 0);
        let topic = *self.rng.pick(EN.topics);
        let subject = format!(
            "Invitation: {topic} sync @ {} {} {}, {}",
            WEEKDAYS[start.wday],
            MONTHS[start.month - 1],
            start.day,
            start.year
        );
        let uid = self.rng.uuid();
        let ics = format!(
            "BEGIN:VCALENDAR\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\nVERSION:2.0\nCALSCALE:GREGORIAN\nMETHOD:REQUEST\nBEGIN:VEVENT\n\
             DTSTART:{y}{m:02}{d:02}T170000Z\nDTEND:{y}{m:02}{d:02}T173000Z\nDTSTAMP:{y}{m:02}{d:02}T090000Z\nORGANIZER;CN={on}:mailto:{oe}\n\
             UID:{uid}@google.example\nATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN={ue}:mailto:{ue}\n\
             SUMMARY:{topic} sync\nDESCRIPTION:Agenda: status\\, risks\\, next steps\nLOCATION:https://meet.example/abc-defg-hij\nSEQUENCE:0\nSTATUS:CONFIRMED\nEND:VEVENT\nEND:VCALENDAR\n",
            y = start.year,
            m = start.month,
            d = start.day,
            on = organizer.name,
            oe = organizer.email,
            ue = self.corpus.user.email
        );
        let plain = format!("{} has invited you to {topic} sync.\n\nJoin: https://meet.example/abc-defg-hij\n\nReply for {}\nInvitation from Google Calendar", organizer.name, self.corpus.user.email);
        let (p1, info) = text_part("plain", &plain, Client::Gmail, lang, false);
        let (p2, _) = text_part("html", &format!("<div><p>{}</p><table><tr><td><a href=\"https://calendar.example/event?action=RESPOND&amp;rst=1\">Yes</a></td><td><a href=\"https://calendar.example/event?action=RESPOND&amp;rst=2\">No</a></td></tr></table></div>", text_to_html(&plain)), Client::Gmail, lang, false);
        let mut p3h = String::new();
        header(
            &mut p3h,
            "Content-Type",
            "text/calendar; charset=\"UTF-8\"; method=REQUEST",
        );
        header(&mut p3h, "Content-Transfer-Encoding", "7bit");
        let p3 = Part {
            headers: p3h,
            body: ics.clone(),
        };
        let alt = multipart(
            &mut self.rng,
            Client::Gmail,
            "alternative",
            vec![p1, p2, p3],
        );
        let mut ih = String::new();
        header(
            &mut ih,
            "Content-Type",
            "application/ics; name=\"invite.ics\"",
        );
        header(
            &mut ih,
            "Content-Disposition",
            "attachment; filename=\"invite.ics\"",
        );
        header(&mut ih, "Content-Transfer-Encoding", "base64");
        let ics_part = Part {
            headers: ih,
            body: base64_lines(ics.as_bytes()),
        };
        let body = multipart(&mut self.rng, Client::Gmail, "mixed", vec![alt, ics_part]);
        let mut h = String::new();
        self.transport_headers(&mut h, &organizer, date);
        let id = format!("<calendar-{}@google.example>", uid);
        header(&mut h, "MIME-Version", "1.0");
        header(&mut h, "Reply-To", &organizer.email);
        header(
            &mut h,
            "Sender",
            "Google Calendar <calendar-notification@google.example>",
        );
        header(&mut h, "Message-ID", &id);
        header(&mut h, "Date", &rfc5322_date(date, organizer.tz));
        header(
            &mut h,
            "Subject",
            &header_text(&subject, Charset::Utf8, Client::Gmail),
        );
        header(
            &mut h,
            "From",
            &mailbox(&organizer, Charset::Utf8, Client::Gmail),
        );
        header(&mut h, "To", &self.corpus.user.email);
        h.push_str(&body.headers);
        let text = format!("{h}\n{}", body.body);
        self.out.push(Message {
            folder: Folder::Inbox,
            bytes: into_bytes(&text),
            date,
            flags: String::new(),
            thread: self.thread,
            message_id: Some(id),
            in_reply_to: None,
            subject,
            from: organizer.email.clone(),
            from_user: false,
            charset: info.charset,
            encoding: info.cte,
            structure: "multipart/alternative",
            attachment: None,
            in_both_folders: false,
            root_missing: false,
            bulk: true,
        });
        self.finish_flags();
    }

    /// Cron mail from a server: plain ASCII, and half the time no Message-ID
    /// (a local sendmail that adds none).
    fn cron(&mut self) {
        let date = self.start_time();
        let host = *self.rng.pick(&["db-1", "backup", "build-03", "nas"]);
        let job = *self.rng.pick(&[
            "/usr/local/bin/backup.sh",
            "certbot renew --quiet",
            "/opt/scripts/rotate-logs",
            "apt-get -qq update",
        ]);
        let mut out = format!("+ {job}\n");
        for i in 0..self.rng.between(3, 30) {
            let _ = writeln!(
                out,
                "[{:02}:{:02}:{:02}] step {i}: {} ok ({} files, {} KiB)",
                i / 60,
                i % 60,
                (i * 7) % 60,
                self.rng.pick(&["sync", "verify", "prune", "upload"]),
                self.rng.below(5000),
                self.rng.below(900_000)
            );
        }
        let sender = self.robot("Cron Daemon", &format!("root@{host}.example.test"));
        let id = self
            .rng
            .chance(0.5)
            .then(|| format!("<{}.{}@{host}.example.test>", date, self.rng.hex(8)));
        self.automatic(
            sender,
            format!("Cron <root@{host}> {job}"),
            date,
            &out,
            None,
            id,
            None,
            &[],
            &[
                ("X-Cron-Env", "<SHELL=/bin/sh>".into()),
                ("X-Cron-Env", "<HOME=/root>".into()),
                ("Auto-Submitted", "auto-generated".into()),
            ],
            false,
        );
        self.finish_flags();
    }
}

/// "RE: AW: Re: x" → "x".
fn strip_reply_prefixes(subject: &str) -> &str {
    let mut s = subject;
    loop {
        let before = s;
        for prefix in ["Re: ", "RE: ", "AW: ", "RE : ", "Fwd: "] {
            s = s.strip_prefix(prefix).unwrap_or(s);
        }
        if s == before {
            return s;
        }
    }
}

fn chunked(s: &str, n: usize) -> String {
    s.as_bytes()
        .chunks(n)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

struct ListInfo {
    id: String,
    desc: String,
    host: String,
}

impl ListInfo {
    fn headers(&self, h: &mut String) {
        header(
            h,
            "List-Id",
            &format!("{} <{}.{}>", self.desc, self.id, self.host),
        );
        header(
            h,
            "List-Unsubscribe",
            &format!(
                "<https://{}/mailman/options/{}>, <mailto:{}-request@{}?subject=unsubscribe>",
                self.host, self.id, self.id, self.host
            ),
        );
        header(
            h,
            "List-Archive",
            &format!("<https://{}/pipermail/{}/>", self.host, self.id),
        );
        header(
            h,
            "List-Post",
            &format!("<mailto:{}@{}>", self.id, self.host),
        );
        header(
            h,
            "List-Help",
            &format!("<mailto:{}-request@{}?subject=help>", self.id, self.host),
        );
        header(h, "Precedence", "list");
        header(
            h,
            "Errors-To",
            &format!("{}-bounces@{}", self.id, self.host),
        );
    }

    fn footer(&self) -> String {
        format!(
            "_______________________________________________\n{} mailing list\n{}@{}\nhttps://{}/mailman/listinfo/{}",
            self.desc, self.id, self.host, self.host, self.id
        )
    }
}
