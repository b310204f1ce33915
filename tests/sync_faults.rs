//! Fault tests of `bridge sync` against a real Dovecot (issue #3, "Done when"):
//! SIGKILL at many points then a re-run, connections cut mid-FETCH (a
//! fault-injecting TCP proxy), two syncs of one account at once, a
//! UIDVALIDITY change, and FETCH responses the parser cannot read (a TLS man
//! in the middle rewriting them). Every test compares the notes byte for byte with an
//! uninterrupted run over the same corpus.

mod support;

#[path = "faults/proxy.rs"]
mod proxy;

#[path = "faults/mitm.rs"]
mod mitm;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use mitm::{Mitm, Rewrite};
use proxy::{Fault, FaultProxy};
use support::*;

/// The account's own address in every user's corpus and config, so notes of
/// different test users (each with its own mailbox) are comparable byte for
/// byte without rewriting anything.
const ME: &str = "owner@faults.example";
/// `write_config` names the account's user so.
const ME_NAME: &str = "Test User";

// ---------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------

const THREADS: usize = 22;
/// Threads whose root message never reached the mailbox.
const MISSING_ROOTS: [usize; 2] = [6, 13];
/// Threads whose first message is the account's own (in Sent).
fn started_by_me(thread: usize) -> bool {
    thread % 5 == 1
}
fn thread_len(thread: usize) -> usize {
    1 + (thread * 5) % 7
}

const CONTACTS: [(&str, &str, &str); 8] = [
    ("Ann Lee", "ann@north.example", "+0000"),
    ("Bob Stone", "bob@west.example", "-0800"),
    ("Carla Diaz", "carla@south.example", "+0100"),
    ("Deepak Rao", "deepak@east.example", "+0530"),
    ("Eve Martin", "eve@north.example", "+0000"),
    ("Frank Moss", "frank@west.example", "-0500"),
    ("Gita Shah", "gita@south.example", "+0100"),
    ("Hiro Tanaka", "hiro@east.example", "+0900"),
];

const SUBJECTS: [&str; THREADS] = [
    "Budget review",
    "Offsite planning",
    "Quarterly report",
    "Hiring plan",
    "Vendor contract",
    "Security audit",
    "Roadmap Q3",
    "Lunch next week",
    "Customer escalation",
    "Conference talk",
    "Laptop refresh",
    "Board deck",
    "Data migration",
    "Design review",
    "Release notes",
    "Travel booking",
    "Team survey",
    "Pricing change",
    "Onboarding docs",
    "Office move",
    "Partner intro",
    "Invoice question",
];

/// One message of the corpus and where it goes.
struct Mail {
    /// Sort key: the order of APPENDs (by date, so threads interleave and
    /// later batches update notes that earlier batches created).
    order: (u32, u32, u32, usize),
    folders: Vec<&'static str>,
    raw: Vec<u8>,
}

/// The corpus, in APPEND order per folder: the same for every test user, so
/// every user's messages get the same UIDs.
struct Corpus {
    inbox: Vec<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    /// A token in the body of each distinct message, to check that each one
    /// is in exactly one note.
    tokens: Vec<String>,
    /// Notes an uninterrupted sync writes: one per thread.
    threads: usize,
}

fn me() -> String {
    format!("{ME_NAME} <{ME}>")
}

fn message_id(thread: usize, index: usize) -> String {
    format!("<t{thread}-m{index}@faults.example>")
}

fn token(thread: usize, index: usize) -> String {
    format!("tok{thread}x{index}z")
}

/// A long plain-text report: messages this size come whole from the server
/// and dominate the bytes of a sync, so a cut by byte count lands inside a
/// `UID FETCH` of bodies.
fn long_report(thread: usize, kib: usize) -> String {
    let mut text = String::new();
    let mut line = 0;
    while text.len() < kib * 1024 {
        line += 1;
        text.push_str(&format!(
            "Line {line} of the report for thread {thread}: figures for region {} are {} units, \
             {} more than last quarter.\n",
            line % 9,
            (line * 37 + thread) % 1000,
            (line * 11) % 97
        ));
    }
    text
}

/// The corpus; three of its messages carry a plain-text report of
/// `report_kib` KiB.
fn corpus(report_kib: usize) -> Corpus {
    let me = me();
    let mut mails = Vec::new();
    let mut tokens = Vec::new();
    for thread in 0..THREADS {
        let (name, address, zone) = CONTACTS[thread % CONTACTS.len()];
        let contact = format!("{name} <{address}>");
        let first_name = name.split(' ').next().unwrap();
        for index in 0..thread_len(thread) {
            if index == 0 && MISSING_ROOTS.contains(&thread) {
                continue;
            }
            let mine = (index % 2 == 0) == started_by_me(thread);
            let (from, to, greeting) = if mine {
                (me.clone(), contact.clone(), first_name)
            } else {
                (contact.clone(), me.clone(), "Test")
            };
            let subject = if index == 0 {
                SUBJECTS[thread].to_string()
            } else {
                format!("Re: {}", SUBJECTS[thread])
            };
            let day = 1 + index as u32 * 3 + (thread % 3) as u32;
            let hour = 8 + (thread % 10) as u32;
            let minute = ((thread * 7 + index * 13) % 60) as u32;
            let zone = if mine { "+0000" } else { zone };
            let date = format!("{day} Nov 2025 {hour:02}:{minute:02}:00 {zone}");
            let refs: Vec<String> = (0..index).map(|i| message_id(thread, i)).collect();
            // The last reply of thread 9 has no Message-ID: it still joins its
            // thread by In-Reply-To.
            let id = (!(thread == 9 && index + 1 == thread_len(thread)))
                .then(|| message_id(thread, index));
            let tok = token(thread, index);
            let mut body = format!(
                "Hi {greeting},\n\n{tok} About {}: {}\n\nBest,\n{}",
                SUBJECTS[thread].to_lowercase(),
                if index % 3 == 0 {
                    "can you send me your numbers by Friday?"
                } else if index % 3 == 1 {
                    "here is what I have so far, more tomorrow."
                } else {
                    "thanks, that settles it."
                },
                if mine { ME_NAME } else { name }
            );
            let mut content_type = "Content-Type: text/plain; charset=utf-8".to_string();
            // A few large messages.
            if (thread, index) == (2, 0) || (thread, index) == (5, 2) || (thread, index) == (12, 0)
            {
                body.push_str("\n\n");
                body.push_str(&long_report(thread, report_kib));
            }
            // One HTML-only message.
            if (thread, index) == (16, 0) {
                content_type = "Content-Type: text/html; charset=utf-8".to_string();
                body = format!(
                    "<html><body><p>Hi {greeting},</p><p>{tok} Please fill in the <b>team \
                     survey</b> by Monday?</p><p>{name}</p></body></html>"
                );
            }
            let mut raw = rfc822(
                id.as_deref(),
                &from,
                &to,
                &subject,
                &date,
                &refs,
                &content_type,
                &body,
            );
            // One large message with an attachment: fetched as header and text
            // part, the attachment only listed.
            if (thread, index) == (15, 0) {
                raw = with_attachment(id.as_deref(), &from, &to, &subject, &date, &body, 600);
            }
            // A message of the account's own that it also received (Cc to
            // itself): in INBOX and in Sent, one message in the notes.
            let folders = if mine {
                if (thread, index) == (1, 0) || (thread, index) == (11, 2) {
                    vec!["INBOX", "Sent"]
                } else {
                    vec!["Sent"]
                }
            } else {
                vec!["INBOX"]
            };
            tokens.push(tok);
            mails.push(Mail {
                order: (day, hour, minute, thread),
                folders,
                raw,
            });
        }
    }
    // A reply whose References name the roots of two threads (20, and 21
    // whose root is the account's own, in Sent, synced after INBOX): the
    // threads regroup as the later folder comes in.
    {
        let tok = "tokmergez".to_string();
        mails.push(Mail {
            order: (25, 9, 0, THREADS),
            folders: vec!["INBOX"],
            raw: rfc822(
                Some("<merge@faults.example>"),
                "Ann Lee <ann@north.example>",
                &me,
                "Re: Partner intro",
                "25 Nov 2025 09:00:00 +0000",
                &[message_id(20, 0), message_id(21, 0)],
                "Content-Type: text/plain; charset=utf-8",
                &format!("{tok} Both topics together."),
            ),
        });
        tokens.push(tok);
    }
    // A message without Message-ID, alone in its thread.
    let tok = "toknoidz".to_string();
    mails.push(Mail {
        order: (9, 9, 30, THREADS),
        folders: vec!["INBOX"],
        raw: rfc822(
            None,
            "Facilities <facilities@campus.example>",
            &me,
            "Printer out of toner",
            "9 Nov 2025 09:30:00 +0000",
            &[] as &[&str],
            "Content-Type: text/plain; charset=utf-8",
            &format!("{tok} The printer on floor 3 is out of toner."),
        ),
    });
    tokens.push(tok);
    mails.sort_by_key(|m| m.order);
    let pick = |folder: &str| {
        mails
            .iter()
            .filter(|m| m.folders.contains(&folder))
            .map(|m| m.raw.clone())
            .collect::<Vec<_>>()
    };
    Corpus {
        inbox: pick("INBOX"),
        sent: pick("Sent"),
        tokens,
        threads: THREADS + 1,
    }
}

fn with_attachment(
    id: Option<&str>,
    from: &str,
    to: &str,
    subject: &str,
    date: &str,
    body: &str,
    kib: usize,
) -> Vec<u8> {
    let mut text = format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n");
    if let Some(id) = id {
        text.push_str(&format!("Message-ID: {id}\r\n"));
    }
    text.push_str(
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0und\"\r\n\r\n\
         --b0und\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    text.push_str(&body.replace('\n', "\r\n"));
    text.push_str(
        "\r\n--b0und\r\nContent-Type: application/pdf; name=\"travel.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"travel.pdf\"\r\n\
         Content-Description: the \"final\" travel plan\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
    );
    let line = "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29k";
    for _ in 0..(kib * 1024 / (line.len() + 2)) {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("--b0und--\r\n");
    text.into_bytes()
}

// ---------------------------------------------------------------------------
// Accounts, syncs and notes
// ---------------------------------------------------------------------------

/// A fresh test user holding the corpus, with its own vault, state and config.
struct Account {
    user: TestUser,
    home: tempfile::TempDir,
    vault: tempfile::TempDir,
    config: PathBuf,
}

impl Account {
    /// A user with the corpus; its config reaches the server directly, or
    /// through a proxy on `via_port`.
    fn new(server: &MailServer, hint: &str, corpus: &Corpus, via_port: Option<u16>) -> Account {
        let user = server.add_user(hint);
        let inbox: Vec<&[u8]> = corpus.inbox.iter().map(Vec::as_slice).collect();
        let sent: Vec<&[u8]> = corpus.sent.iter().map(Vec::as_slice).collect();
        let uids = server.append_many(&user, "INBOX", &inbox);
        assert_eq!(uids, (1..=inbox.len() as u32).collect::<Vec<_>>());
        let uids = server.append_many(&user, "Sent", &sent);
        assert_eq!(uids, (1..=sent.len() as u32).collect::<Vec<_>>());
        let home = tempfile::tempdir().expect("temp home");
        let vault = temp_vault();
        let config_user = TestUser {
            email: ME.to_string(),
            ..user.clone()
        };
        let config = write_config(
            home.path(),
            vault.path(),
            server,
            &config_user,
            "folders: { sync: [INBOX, Sent] }",
        );
        let account = Account {
            user,
            home,
            vault,
            config,
        };
        if let Some(port) = via_port {
            account.point_at(server, port);
        }
        account
    }

    /// Rewrites the config's IMAP port (the host stays 127.0.0.1, so TLS
    /// still verifies the server's certificate through a proxy).
    fn point_at(&self, server: &MailServer, port: u16) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let from = format!("port: {}, security: tls", server.imaps_port());
        assert!(text.contains(&from), "{text}");
        let text = text.replace(&from, &format!("port: {port}, security: tls"));
        std::fs::write(&self.config, text).unwrap();
    }

    /// `bridge sync --no-generate`; with a batch size, the fetch step commits
    /// that many messages at a time and the render step takes that many notes
    /// per chunk, two chunks per durable step (so a small corpus has many
    /// steps, and chunks overlap in the render pipeline).
    fn command(&self, batch: Option<usize>) -> Command {
        let mut command = bridge_command(&self.config);
        command
            .args(["sync", "--no-generate"])
            .env_remove("RUST_LOG");
        for variable in ["MAILBRIDGE_SYNC_BATCH_SIZE", "MAILBRIDGE_RENDER_BATCH_SIZE"] {
            match batch {
                Some(n) => command.env(variable, n.to_string()),
                None => command.env_remove(variable),
            };
        }
        match batch {
            Some(_) => command.env("MAILBRIDGE_RENDER_CHUNKS_PER_STEP", "2"),
            None => command.env_remove("MAILBRIDGE_RENDER_CHUNKS_PER_STEP"),
        };
        command
    }

    /// A sync that must succeed.
    fn sync(&self, server: &MailServer, batch: Option<usize>) -> Output {
        let output = self.command(batch).output().expect("run bridge sync");
        assert!(
            output.status.success(),
            "bridge sync failed ({}):\n{}\n{}\n{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr),
            tail(&server.log(), 40)
        );
        output
    }

    /// Trusts `ca_file` instead of the server's CA (a man in the middle's).
    fn trust(&self, ca_file: &Path) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text: Vec<String> = text
            .lines()
            .map(|line| match line.split_once("ca_file: ") {
                Some((indent, _)) => {
                    format!(
                        "{indent}ca_file: {}",
                        yaml_str(&ca_file.display().to_string())
                    )
                }
                None => line.to_string(),
            })
            .collect();
        std::fs::write(&self.config, text.join("\n") + "\n").unwrap();
    }

    fn sources(&self) -> PathBuf {
        self.vault.path().join("Sources/Email")
    }

    fn state_dir(&self) -> PathBuf {
        self.home.path().join("state")
    }

    fn notes(&self) -> Notes {
        Notes::read(&self.sources())
    }
}

/// What is in the sources folder: visible notes (relative path → bytes), and
/// every other file.
#[derive(Debug, Default)]
struct Notes {
    notes: BTreeMap<PathBuf, Vec<u8>>,
    /// Hidden temp files of ours (`.<name>.mailbridge-<pid>-<n>.tmp`).
    temp_files: Vec<PathBuf>,
    /// Anything else: must never exist.
    strays: Vec<PathBuf>,
}

impl Notes {
    fn read(root: &Path) -> Notes {
        let mut notes = Notes::default();
        notes.walk(root, root);
        notes
    }

    fn walk(&mut self, root: &Path, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                self.walk(root, &path);
            } else if name.starts_with('.')
                && name.contains(".mailbridge-")
                && name.ends_with(".tmp")
            {
                self.temp_files.push(relative);
            } else if !name.starts_with('.') && name.ends_with(".md") {
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        self.notes.insert(relative, bytes);
                    }
                    // Renamed away between listing and reading (a sync runs).
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => panic!("read {}: {err}", path.display()),
                }
            } else {
                self.strays.push(relative);
            }
        }
    }
}

/// Why `actual` is not `expected`, or None when they are the same, byte for byte.
fn notes_difference(
    expected: &BTreeMap<PathBuf, Vec<u8>>,
    actual: &BTreeMap<PathBuf, Vec<u8>>,
) -> Option<String> {
    let mut problems = Vec::new();
    for path in expected.keys().filter(|p| !actual.contains_key(*p)) {
        problems.push(format!("missing note {}", path.display()));
    }
    for (path, bytes) in actual {
        match expected.get(path) {
            None => problems.push(format!(
                "unexpected note {}:\n{}",
                path.display(),
                head(&text(bytes), 25)
            )),
            Some(want) if want != bytes => {
                let (want, got) = (text(want), text(bytes));
                let line = want
                    .lines()
                    .zip(got.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| want.lines().count().min(got.lines().count()));
                problems.push(format!(
                    "note {} differs from line {}: expected {:?}, got {:?}",
                    path.display(),
                    line + 1,
                    want.lines().nth(line).unwrap_or("<end>"),
                    got.lines().nth(line).unwrap_or("<end>"),
                ));
            }
            Some(_) => {}
        }
    }
    (!problems.is_empty()).then(|| problems.join("\n"))
}

/// The `## Messages` part of a note: the analysis above it may quote a
/// message's words again, which is no duplicate.
fn messages_section(note: &str) -> &str {
    let start = note.find("\n## Messages\n").unwrap_or(0);
    let end = note[start..]
        .find("<!-- mailbridge:end")
        .map_or(note.len(), |end| start + end);
    &note[start..end]
}

/// Each message of the corpus is in exactly one note, once.
fn check_tokens(corpus: &Corpus, notes: &BTreeMap<PathBuf, Vec<u8>>) {
    for tok in &corpus.tokens {
        let holders: Vec<(&PathBuf, usize)> = notes
            .iter()
            .map(|(path, bytes)| {
                let text = text(bytes);
                (path, messages_section(&text).matches(tok.as_str()).count())
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        assert!(
            holders.len() == 1 && holders[0].1 == 1,
            "message {tok} must be in exactly one note, once: {holders:?}"
        );
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn head(text: &str, lines: usize) -> String {
    text.lines().take(lines).collect::<Vec<_>>().join("\n")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// An uninterrupted sync of a fresh user: the notes every faulty run must
/// end with. Also checks them against the corpus, and that a second sync
/// finds nothing new and changes nothing.
fn reference(server: &MailServer, corpus: &Corpus, hint: &str, batch: Option<usize>) -> Reference {
    let account = Account::new(server, hint, corpus, None);
    let started = Instant::now();
    let output = account.sync(server, batch);
    let took = started.elapsed();
    let notes = account.notes();
    assert_eq!(
        notes.notes.len(),
        corpus.threads,
        "one note per thread: {:#?}\n{}",
        notes.notes.keys(),
        text(&output.stdout)
    );
    assert!(
        notes.temp_files.is_empty() && notes.strays.is_empty(),
        "{notes:?}"
    );
    check_tokens(corpus, &notes.notes);
    if std::env::var_os("SHOW_NOTES").is_some() {
        for (path, bytes) in &notes.notes {
            eprintln!("=== {}\n{}", path.display(), text(bytes));
        }
    }
    let again = account.sync(server, batch);
    assert!(
        text(&again.stdout).contains(" 0 new messages"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(
        notes_difference(&notes.notes, &account.notes().notes),
        None,
        "a second sync changed notes"
    );
    Reference {
        notes: notes.notes,
        took,
    }
}

struct Reference {
    notes: BTreeMap<PathBuf, Vec<u8>>,
    /// Wall time of the uninterrupted `bridge sync`.
    took: Duration,
}

/// After a faulty run: the account's notes are exactly the reference's (no
/// stray files, temp files only hidden ones of ours), and one more sync
/// finds 0 new messages and changes nothing.
fn check_final(
    server: &MailServer,
    account: &Account,
    reference: &Reference,
    batch: Option<usize>,
) -> Result<(), String> {
    let notes = account.notes();
    if let Some(diff) = notes_difference(&reference.notes, &notes.notes) {
        return Err(format!("notes differ from an uninterrupted run:\n{diff}"));
    }
    if !notes.strays.is_empty() {
        return Err(format!("stray files among the notes: {:?}", notes.strays));
    }
    let output = account.command(batch).output().expect("run bridge sync");
    if !output.status.success() || !text(&output.stdout).contains(" 0 new messages") {
        return Err(format!(
            "the sync after must find 0 new messages ({}):\n{}\n{}\n{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr),
            tail(&server.log(), 20)
        ));
    }
    if let Some(diff) = notes_difference(&reference.notes, &account.notes().notes) {
        return Err(format!("the sync after changed notes:\n{diff}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. SIGKILL at many points, then a re-run
// ---------------------------------------------------------------------------

/// Many durable steps from ~100 messages.
const SMALL_BATCH: usize = 5;

/// When to SIGKILL a running `bridge sync`.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// As soon as this many notes are visible.
    Notes(usize),
    /// When a temp file of ours has been seen this many times (a note
    /// written, not yet renamed into place).
    TempFiles(usize),
    /// When the state store's WAL file has changed (size or mtime) this
    /// many times: right after a state commit.
    WalChanges(usize),
    /// When the message pack has grown this many times: a fetched batch's
    /// records appended, its commit still to come.
    PackGrowths(usize),
    /// After this long.
    After(Duration),
}

/// How one killed run went.
struct Killed {
    pid: u32,
    /// False when the sync finished before the kill point came.
    interrupted: bool,
    /// Notes visible when it was killed (or finished).
    notes: usize,
}

/// Runs `bridge sync` (batch of 5) and SIGKILLs it at `at`.
fn sync_and_kill(account: &Account, at: KillAt, log: &Path) -> Killed {
    let stdout = File::create(log.with_extension("out")).unwrap();
    let stderr = File::create(log.with_extension("err")).unwrap();
    let mut child = account
        .command(Some(SMALL_BATCH))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("spawn bridge sync");
    let started = Instant::now();
    let wal = account.state_dir().join("state.sqlite3-wal");
    let pack = account.state_dir().join("messages.pack");
    let mut pack_last = 0;
    let mut pack_growths = 0;
    let sources = account.sources();
    let mut temps_seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut temp_sightings = 0;
    let mut wal_last = None;
    let mut wal_changes = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "bridge sync failed on its own ({status}): {}",
                std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
            );
            return Killed {
                pid: child.id(),
                interrupted: false,
                notes: Notes::read(&sources).notes.len(),
            };
        }
        let fire = match at {
            KillAt::Notes(n) => Notes::read(&sources).notes.len() >= n,
            KillAt::TempFiles(n) => {
                let temps = Notes::read(&sources).temp_files;
                if temps.iter().any(|t| !temps_seen.contains(t)) {
                    temp_sightings += 1;
                    temps_seen.extend(temps);
                }
                temp_sightings >= n
            }
            KillAt::WalChanges(n) => {
                let now = std::fs::metadata(&wal)
                    .ok()
                    .map(|m| (m.len(), m.modified().ok()));
                if now.is_some() && now != wal_last {
                    wal_changes += 1;
                    wal_last = now;
                }
                wal_changes >= n
            }
            KillAt::PackGrowths(n) => {
                let now = std::fs::metadata(&pack).map_or(0, |m| m.len());
                if now > pack_last {
                    pack_growths += 1;
                    pack_last = now;
                }
                pack_growths >= n
            }
            KillAt::After(after) => started.elapsed() >= after,
        };
        if fire {
            // Child::kill is SIGKILL on Unix.
            let _ = child.kill();
            let status = child.wait().unwrap();
            let interrupted = status.signal() == Some(libc::SIGKILL);
            if !interrupted {
                assert!(status.success(), "bridge sync failed on its own ({status})");
            }
            return Killed {
                pid: child.id(),
                interrupted,
                notes: Notes::read(&sources).notes.len(),
            };
        }
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// The pid in the name of one of our temp files (`.<name>.mailbridge-<pid>-<n>.tmp`).
fn temp_file_pid(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_suffix(".tmp")?;
    let (_, tail) = rest.rsplit_once(".mailbridge-")?;
    tail.split_once('-')?.0.parse().ok()
}

/// Visible notes that are not a whole note as the bridge writes one (their
/// front matter closed, and ending as the finished note does): a write cut
/// short. Notes are written to a temp file and renamed, so a kill leaves
/// every note old or new, never partial.
fn partial_notes(
    notes: &BTreeMap<PathBuf, Vec<u8>>,
    reference: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<PathBuf> {
    let last_line = |bytes: &[u8]| text(bytes).trim_end().lines().last().map(str::to_string);
    notes
        .iter()
        .filter(|(path, bytes)| {
            let note = text(bytes);
            let closed = note.starts_with("---\n") && note[4..].contains("\n---\n");
            let ends_alike = reference
                .get(*path)
                .is_none_or(|want| last_line(want) == last_line(bytes));
            !(closed && ends_alike)
        })
        .map(|(path, _)| path.clone())
        .collect()
}

/// What one kill scenario came to.
struct ScenarioOutcome {
    number: usize,
    kills: usize,
    /// Kills that hit a running sync (not one that had finished already).
    interrupted: usize,
    report: String,
    failure: Option<String>,
}

/// A fresh user with the corpus; `bridge sync` killed at each of `kills_at`
/// in turn, then run to completion; its notes compared with the reference.
fn run_scenario(
    server: &MailServer,
    corpus: &Corpus,
    reference: &Reference,
    number: usize,
    kills_at: &[KillAt],
    logs: &Path,
) -> ScenarioOutcome {
    let account = Account::new(server, &format!("kill-{number}"), corpus, None);
    let mut killed = Vec::new();
    let mut partial = Vec::new();
    for (step, at) in kills_at.iter().enumerate() {
        let log = logs.join(format!("{number}-{step}"));
        killed.push(sync_and_kill(&account, *at, &log));
        partial.extend(partial_notes(&account.notes().notes, &reference.notes));
    }
    let recovery = account.command(Some(SMALL_BATCH)).output().unwrap();
    let temp_files = account.notes().temp_files;
    // Temp files a killed run left behind are hidden and never notes; a run
    // that completes leaves none of its own.
    let killed_pids: Vec<u32> = killed.iter().map(|k| k.pid).collect();
    let foreign: Vec<&PathBuf> = temp_files
        .iter()
        .filter(|t| temp_file_pid(t).is_none_or(|pid| !killed_pids.contains(&pid)))
        .collect();
    let result = if !partial.is_empty() {
        Err(format!(
            "a killed run left notes visibly incomplete: {partial:?}"
        ))
    } else if !foreign.is_empty() {
        Err(format!(
            "temp files not left by a killed run (pids {killed_pids:?}): {foreign:?}"
        ))
    } else if recovery.status.success() {
        check_final(server, &account, reference, Some(SMALL_BATCH))
    } else {
        Err(format!(
            "the re-run failed ({}):\n{}\n{}",
            recovery.status,
            text(&recovery.stdout),
            text(&recovery.stderr)
        ))
    };
    let summary: Vec<String> = killed
        .iter()
        .map(|k| {
            format!(
                "{} with {} notes",
                if k.interrupted { "killed" } else { "finished" },
                k.notes
            )
        })
        .collect();
    ScenarioOutcome {
        number,
        kills: killed.len(),
        interrupted: killed.iter().filter(|k| k.interrupted).count(),
        report: format!(
            "scenario {number} {kills_at:?}: {}; re-run: {}; hidden temp files left: {}",
            summary.join(", "),
            text(&recovery.stdout).trim(),
            temp_files.len()
        ),
        failure: result.err().map(|why| {
            format!(
                "scenario {number} {kills_at:?} ({}): {why}",
                summary.join(", ")
            )
        }),
    }
}

#[test]
fn sigkill_at_many_points_then_a_rerun_ends_identical_to_an_uninterrupted_run() {
    let server = MailServer::start();
    let corpus = corpus(24);
    let reference = reference(&server, &corpus, "kill-ref", Some(SMALL_BATCH));
    let t = reference.took;
    let at = |fraction: f64| KillAt::After(t.mul_f64(fraction));
    let scenarios: Vec<Vec<KillAt>> = vec![
        vec![KillAt::Notes(1)],
        vec![KillAt::Notes(3)],
        vec![KillAt::Notes(10)],
        vec![KillAt::Notes(20)],
        vec![KillAt::TempFiles(1)],
        vec![KillAt::TempFiles(4)],
        vec![KillAt::TempFiles(12)],
        vec![KillAt::WalChanges(1)],
        vec![KillAt::WalChanges(3)],
        vec![KillAt::WalChanges(8)],
        vec![KillAt::PackGrowths(1)],
        vec![KillAt::PackGrowths(4)],
        // Fractions of an uninterrupted sync's time when it ran alone; the
        // scenarios run side by side, so later points still hit running syncs.
        vec![at(0.2)],
        vec![at(0.45)],
        vec![at(0.7)],
        vec![at(0.95)],
        vec![at(1.2)],
        // Killed again while recovering, then again.
        vec![KillAt::Notes(2), KillAt::WalChanges(2), at(0.6)],
    ];
    let logs = tempfile::tempdir().unwrap();
    // Scenarios run on a few threads: most of a sync's time is fsync waits.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outcomes = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let number = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(kills_at) = scenarios.get(number) else {
                    return;
                };
                let outcome =
                    run_scenario(&server, &corpus, &reference, number, kills_at, logs.path());
                outcomes.lock().unwrap().push(outcome);
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|o| o.number);
    let kills: usize = outcomes.iter().map(|o| o.kills).sum();
    let interrupted: usize = outcomes.iter().map(|o| o.interrupted).sum();
    let report: Vec<&str> = outcomes.iter().map(|o| o.report.as_str()).collect();
    let failures: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| o.failure.as_deref())
        .collect();
    eprintln!(
        "uninterrupted sync: {:?}\n{}",
        reference.took,
        report.join("\n")
    );
    assert!(
        failures.is_empty(),
        "a sync killed with SIGKILL and run again must end with exactly the notes of an \
         uninterrupted run; {} of {} scenarios did not:\n\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n\n")
    );
    // The kill points must mostly land inside a running sync, or this test
    // tests little (a late timed kill may find the sync finished).
    assert!(
        interrupted * 2 >= kills,
        "only {interrupted} of {kills} kills interrupted a running sync:\n{}",
        report.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 2. Connections cut mid-FETCH
// ---------------------------------------------------------------------------

/// Server→client bytes of one uninterrupted sync of a fresh user through a
/// pass-through proxy (TLS handshake included).
fn bytes_of_a_sync(server: &MailServer, corpus: &Corpus, batch: Option<usize>) -> u64 {
    let proxy = FaultProxy::start(server.imaps_port(), |_| Fault::Pass);
    let account = Account::new(server, "bytes", corpus, Some(proxy.port()));
    account.sync(server, batch);
    let bytes = proxy.server_bytes();
    assert_eq!(bytes.len(), 1, "one connection: {bytes:?}");
    assert!(bytes[0] > 600_000, "the large messages dominate: {bytes:?}");
    bytes[0]
}

#[test]
fn a_connection_cut_mid_fetch_is_retried_to_completion() {
    let server = MailServer::start();
    let corpus = corpus(180);

    // One batch for the whole folder: the cut lands in the middle of the one
    // `UID FETCH ... BODY.PEEK[]` of INBOX, most of whose bytes are bodies.
    let reference_default = reference(&server, &corpus, "cut-ref", None);
    let total = bytes_of_a_sync(&server, &corpus, None);
    let cut_at = total / 2;
    let proxy = FaultProxy::start(server.imaps_port(), move |i| {
        if i == 0 {
            Fault::CutAfter(cut_at)
        } else {
            Fault::Pass
        }
    });
    let account = Account::new(&server, "cut-once", &corpus, Some(proxy.port()));
    let output = account.sync(&server, None);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    eprintln!("one cut at byte {cut_at} of {total}:\n{stdout}{stderr}");
    assert_eq!(proxy.cuts(), 1, "{stdout}\n{stderr}");
    assert!(proxy.connections() >= 2, "it reconnected: {stderr}");
    assert!(
        stdout.contains("1 reconnects"),
        "the summary says it reconnected: {stdout}"
    );
    assert!(
        stderr.contains("reconnecting") && stderr.contains("UID FETCH"),
        "a warning says the connection dropped during UID FETCH and it reconnects: {stderr}"
    );
    if let Err(why) = check_final(&server, &account, &reference_default, None) {
        panic!("after a cut mid-FETCH: {why}\n{stdout}\n{stderr}");
    }

    // Small batches: a cut well into the sync, after many batches are
    // committed; a cut in the middle of the retry's TLS handshake; a cut a
    // little into the next retry. Each retry resumes from the committed
    // cursors, so the last connection carries only what was left: at most
    // the 40% after the first cut plus the batch it cut (one 180 KiB report
    // at most, under 30%), where starting over would carry all of it.
    let reference_small = reference(&server, &corpus, "cut-ref-small", Some(SMALL_BATCH));
    let total = bytes_of_a_sync(&server, &corpus, Some(SMALL_BATCH));
    let cuts = [total * 6 / 10, 200, total / 10];
    let proxy = FaultProxy::start(server.imaps_port(), move |i| match cuts.get(i) {
        Some(at) => Fault::CutAfter(*at),
        None => Fault::Pass,
    });
    let account = Account::new(&server, "cut-thrice", &corpus, Some(proxy.port()));
    let output = account.sync(&server, Some(SMALL_BATCH));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let bytes = proxy.server_bytes();
    eprintln!("cuts at {cuts:?} of {total}; bytes per connection {bytes:?}:\n{stdout}{stderr}");
    assert_eq!(
        proxy.cuts(),
        3,
        "bytes per connection: {bytes:?}\n{stdout}\n{stderr}"
    );
    assert_eq!(bytes.len(), 4, "{bytes:?}");
    assert!(
        bytes[3] < total * 8 / 10,
        "the last retry resumes where the sync was, it does not start over: \
         {bytes:?} bytes per connection, {total} for a whole sync\n{stderr}"
    );
    assert!(stdout.contains("3 reconnects"), "{stdout}\n{stderr}");
    if let Err(why) = check_final(&server, &account, &reference_small, Some(SMALL_BATCH)) {
        panic!("after three cuts: {why}\n{stdout}\n{stderr}");
    }
}

#[test]
fn a_connection_cut_every_time_fails_after_the_retries_naming_the_server() {
    let server = MailServer::start();
    let corpus = corpus(180);
    let total = bytes_of_a_sync(&server, &corpus, None);
    let proxy = FaultProxy::start(server.imaps_port(), move |_| Fault::CutAfter(total / 2));
    let account = Account::new(&server, "cut-always", &corpus, Some(proxy.port()));
    let started = Instant::now();
    let (status, stdout, stderr) =
        run_with_timeout(account.command(None), Duration::from_secs(60), &server);
    let took = started.elapsed();
    assert_eq!(
        status.code(),
        Some(1),
        "exit code 1 ({status}):\n{stdout}\n{stderr}"
    );
    let server_name = format!("127.0.0.1:{}", proxy.port());
    assert!(
        stderr.contains("bridge: error: sync test:") && stderr.contains(&server_name),
        "a clear error naming the server {server_name}:\n{stderr}"
    );
    assert!(
        proxy.connections() >= 3 && proxy.connections() == proxy.cuts(),
        "it retried, and every connection was cut: {} connections, {} cuts\n{stderr}",
        proxy.connections(),
        proxy.cuts()
    );
    eprintln!(
        "gave up after {took:?} and {} connections: {}",
        proxy.connections(),
        stderr.lines().last().unwrap_or_default()
    );
}

/// Runs `command` to its end; panics if it takes longer than `limit` (after
/// killing it).
fn run_with_timeout(
    mut command: Command,
    limit: Duration,
    server: &MailServer,
) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = command
        .stdout(Stdio::from(File::create(&out).unwrap()))
        .stderr(Stdio::from(File::create(&err).unwrap()))
        .spawn()
        .expect("spawn bridge");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bridge sync still running after {limit:?}: it hangs\n{}\n{}",
                std::fs::read_to_string(&err).unwrap_or_default(),
                tail(&server.log(), 20)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&err).unwrap(),
    )
}

// ---------------------------------------------------------------------------
// 3. The account lock
// ---------------------------------------------------------------------------

#[test]
fn a_second_sync_of_the_same_account_fails_at_once_while_the_first_completes() {
    let server = MailServer::start();
    let corpus = corpus(180);
    let reference = reference(&server, &corpus, "lock-ref", None);
    // A slow link keeps the first sync (and its lock) busy for seconds.
    let proxy = FaultProxy::start(server.imaps_port(), |_| Fault::Slow {
        chunk: 8 * 1024,
        pause: Duration::from_millis(25),
    });
    let account = Account::new(&server, "lock", &corpus, Some(proxy.port()));
    let dir = tempfile::tempdir().unwrap();
    let mut first = account
        .command(None)
        .stdout(Stdio::from(File::create(dir.path().join("out")).unwrap()))
        .stderr(Stdio::from(File::create(dir.path().join("err")).unwrap()))
        .spawn()
        .expect("spawn the first sync");
    // It takes the lock before it connects.
    wait_for(Duration::from_secs(10), "the first sync to connect", || {
        proxy.connections() >= 1
    });
    let started = Instant::now();
    let second = account.command(None).output().expect("run the second sync");
    let took = started.elapsed();
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first sync must still run when the second has finished (slow the proxy down)"
    );
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another bridge process is syncing account `test`"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(3), "it fails at once: {took:?}");
    assert_eq!(proxy.connections(), 1, "the second sync never connects");

    let status = wait_child(&mut first, Duration::from_secs(60));
    let first_stderr = std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert!(status.success(), "first sync: {status}\n{first_stderr}");
    let first_stdout = std::fs::read_to_string(dir.path().join("out")).unwrap();
    assert!(
        !first_stdout.contains(" 0 new messages"),
        "the first sync did the work: {first_stdout}"
    );
    if let Err(why) = check_final(&server, &account, &reference, None) {
        panic!("after two syncs at once: {why}");
    }
}

fn wait_child(child: &mut std::process::Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("bridge sync still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// 4. UIDVALIDITY changes
// ---------------------------------------------------------------------------

fn uidvalidity(server: &MailServer, user: &TestUser, folder: &str) -> u32 {
    let mut imap = server.imap(user);
    let response = imap
        .command(&format!("STATUS {folder} (UIDVALIDITY)"))
        .unwrap()
        .expect_ok("STATUS");
    imap.logout();
    let found = response.lines().find_map(|line| {
        let rest = &line[line.find("UIDVALIDITY ")? + "UIDVALIDITY ".len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    });
    found.expect("UIDVALIDITY in STATUS")
}

/// Each note's modification time.
fn mtimes(account: &Account) -> BTreeMap<PathBuf, std::time::SystemTime> {
    account
        .notes()
        .notes
        .keys()
        .map(|path| {
            let modified = std::fs::metadata(account.sources().join(path))
                .and_then(|m| m.modified())
                .unwrap();
            (path.clone(), modified)
        })
        .collect()
}

/// After a re-read folder (`output` is its sync): every note as `before`, not
/// one rewritten, and the next sync finds nothing new.
fn assert_reread_changed_nothing(
    server: &MailServer,
    account: &Account,
    before: &Notes,
    mtimes_before: &BTreeMap<PathBuf, std::time::SystemTime>,
    output: &Output,
    what: &str,
) {
    assert_eq!(
        notes_difference(&before.notes, &account.notes().notes),
        None,
        "{what} changes no note\n{}",
        text(&output.stdout)
    );
    assert_eq!(
        &mtimes(account),
        mtimes_before,
        "{what}: no note is rewritten"
    );
    let output = account.sync(server, None);
    assert!(
        text(&output.stdout).contains(" 0 new messages"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn a_uidvalidity_change_rereads_the_folder_without_duplicating_or_losing_notes() {
    let server = MailServer::start();
    let corpus = corpus(24);
    let account = Account::new(&server, "uidvalidity", &corpus, None);
    account.sync(&server, None);
    let before = account.notes();
    assert_eq!(before.notes.len(), corpus.threads);
    check_tokens(&corpus, &before.notes);

    // (a) Same messages, same UIDs, new UIDVALIDITY, as after a server-side
    // index rebuild: `doveadm mailbox update --uid-validity` (the harness's
    // `set_uidvalidity`) rewrites it in Dovecot's index. Nothing a note
    // shows changed, so every note stays byte for byte, not even rewritten.
    let mtimes_before = mtimes(&account);
    let old = uidvalidity(&server, &account.user, "INBOX");
    server.set_uidvalidity(&account.user, "INBOX", old + 1000);
    assert_eq!(uidvalidity(&server, &account.user, "INBOX"), old + 1000);
    let output = account.sync(&server, None);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("UIDVALIDITY changed"), "{stderr}");
    assert_reread_changed_nothing(
        &server,
        &account,
        &before,
        &mtimes_before,
        &output,
        "a re-read INBOX",
    );

    // (a') The same again, but the re-read is killed (SIGKILL) after the
    // folder was forgotten and a few batches were committed, then run again.
    server.set_uidvalidity(&account.user, "INBOX", old + 2000);
    let logs = tempfile::tempdir().unwrap();
    let killed = sync_and_kill(&account, KillAt::WalChanges(3), &logs.path().join("uv"));
    assert!(killed.interrupted, "the kill hit the re-read");
    let output = account.sync(&server, Some(SMALL_BATCH));
    assert_reread_changed_nothing(
        &server,
        &account,
        &before,
        &mtimes_before,
        &output,
        "a re-read killed and run again",
    );

    // (b) A folder deleted and recreated with the same messages in another
    // order: RENAME moves the mailbox (and its UIDVALIDITY) away, CREATE
    // makes a new `Sent` (Dovecot gives every new mailbox a fresh
    // UIDVALIDITY, unique per user), and the APPENDs in reverse give every
    // message another UID. Still the same messages: no note changes.
    let old = uidvalidity(&server, &account.user, "Sent");
    let mut imap = server.imap(&account.user);
    imap.command("RENAME Sent Sent-old")
        .unwrap()
        .expect_ok("RENAME");
    imap.create("Sent").unwrap().expect_ok("CREATE");
    for raw in corpus.sent.iter().rev() {
        imap.append("Sent", "", None, raw)
            .unwrap()
            .expect_ok("APPEND");
    }
    imap.logout();
    let new = uidvalidity(&server, &account.user, "Sent");
    assert_ne!(new, old, "the recreated Sent has a new UIDVALIDITY");
    let output = account.sync(&server, None);
    assert!(text(&output.stderr).contains("UIDVALIDITY changed"));
    assert_eq!(
        notes_difference(&before.notes, &account.notes().notes),
        None,
        "a recreated Sent with the same messages changes no note\n{}",
        text(&output.stdout)
    );

    // (c) New mail afterwards lands in its thread's note, in both folders,
    // and changes exactly those two notes.
    let me = me();
    let thread_of = |thread: usize| -> PathBuf {
        let tok = token(thread, 0);
        before
            .notes
            .iter()
            .find(|(_, bytes)| text(bytes).contains(&tok))
            .map(|(path, _)| path.clone())
            .expect("the thread's note")
    };
    let (inbox_thread, sent_thread) = (3, 7);
    let reply_in = rfc822(
        Some("<late-in@faults.example>"),
        &format!("{} <{}>", CONTACTS[3].0, CONTACTS[3].1),
        &me,
        &format!("Re: {}", SUBJECTS[inbox_thread]),
        "28 Nov 2025 10:00:00 +0000",
        &(0..thread_len(inbox_thread))
            .map(|i| message_id(inbox_thread, i))
            .collect::<Vec<_>>(),
        "Content-Type: text/plain; charset=utf-8",
        "toklateinz One more thing: can we talk tomorrow?",
    );
    let reply_out = rfc822(
        Some("<late-out@faults.example>"),
        &me,
        &format!("{} <{}>", CONTACTS[7].0, CONTACTS[7].1),
        &format!("Re: {}", SUBJECTS[sent_thread]),
        "28 Nov 2025 11:00:00 +0000",
        &[message_id(sent_thread, 0)],
        "Content-Type: text/plain; charset=utf-8",
        "toklateoutz Tuesday works for me.",
    );
    server.append(&account.user, "INBOX", &reply_in);
    server.append(&account.user, "Sent", &reply_out);
    let output = account.sync(&server, None);
    assert!(
        text(&output.stdout).contains(" 2 new messages"),
        "{}",
        text(&output.stdout)
    );
    let after = account.notes();
    assert_eq!(
        after.notes.keys().collect::<Vec<_>>(),
        before.notes.keys().collect::<Vec<_>>(),
        "no note added or lost, names kept"
    );
    let changed: Vec<&PathBuf> = after
        .notes
        .iter()
        .filter(|(path, bytes)| before.notes[*path] != **bytes)
        .map(|(path, _)| path)
        .collect();
    let (inbox_note, sent_note) = (thread_of(inbox_thread), thread_of(sent_thread));
    assert_eq!(
        changed.into_iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([inbox_note.clone(), sent_note.clone()]),
        "exactly the two threads' notes change"
    );
    let inbox_text = text(&after.notes[&inbox_note]);
    assert!(inbox_text.contains("toklateinz"), "{inbox_text}");
    assert!(
        inbox_text.contains(&format!("message_count: {}", thread_len(inbox_thread) + 1)),
        "{inbox_text}"
    );
    let sent_text = text(&after.notes[&sent_note]);
    assert!(sent_text.contains("toklateoutz"), "{sent_text}");
    assert!(
        sent_text.contains(&format!("message_count: {}", thread_len(sent_thread) + 1)),
        "{sent_text}"
    );
    let output = account.sync(&server, None);
    assert!(
        text(&output.stdout).contains(" 0 new messages"),
        "{}",
        text(&output.stdout)
    );
}

// ---------------------------------------------------------------------------
// 5. FETCH responses the parser cannot read
// ---------------------------------------------------------------------------

/// The INBOX UID of the corpus message with this Message-ID.
fn inbox_uid(corpus: &Corpus, message_id: &str) -> u32 {
    let header = format!("Message-ID: {message_id}\r\n");
    let index = corpus
        .inbox
        .iter()
        .position(|raw| text(raw).contains(&header))
        .unwrap_or_else(|| panic!("{message_id} is in INBOX"));
    index as u32 + 1
}

/// A fresh user with the corpus whose config reaches the server through
/// `mitm`.
fn account_via(server: &MailServer, hint: &str, corpus: &Corpus, mitm: &Mitm) -> Account {
    let account = Account::new(server, hint, corpus, Some(mitm.port()));
    account.trust(mitm.ca_file());
    account
}

/// Every response the man in the middle rewrote was one imap-proto rejects.
fn assert_faults_injected(mitm: &Mitm, at_least: usize) {
    assert!(
        mitm.rewritten() >= at_least,
        "{} responses rewritten",
        mitm.rewritten()
    );
    assert_eq!(
        mitm.rejected(),
        mitm.rewritten(),
        "rewritten responses imap-proto still parses: {:?}",
        mitm.accepted()
    );
}

#[test]
fn a_bodystructure_that_cannot_be_parsed_is_fetched_whole_and_counted() {
    let server = MailServer::start();
    let corpus = corpus(24);
    let reference = reference(&server, &corpus, "bs-ref", None);
    // The multipart message with an attachment, whose Content-Description
    // has quotes: the server forgets to escape them (MailKit#1393).
    let bad = inbox_uid(&corpus, &message_id(15, 0));
    let mitm = Mitm::start(
        server.imaps_port(),
        server.ca_file(),
        unescaped_quotes_in_structure(bad),
    );
    let account = account_via(&server, "bs-bad", &corpus, &mitm);
    let output = account.sync(&server, None);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    eprintln!("{stdout}{stderr}");
    assert_faults_injected(&mitm, 1);
    // The corpus's two messages without Message-ID are problems already.
    assert!(
        stdout.contains(", 3 messages with problems"),
        "the summary counts it: {stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "INBOX UID {bad}: the server's BODYSTRUCTURE could not be parsed; fetched whole"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&account.user.password), "{stderr}");
    assert!(
        !stdout.contains("reconnects"),
        "reconnecting around a bad answer is no network retry: {stdout}"
    );
    // Fetched whole, its note is the note an undisturbed sync writes, text
    // and attachment included; so is every other note. A second sync finds
    // nothing new and changes nothing.
    if let Err(why) = check_final(&server, &account, &reference, None) {
        panic!("{why}\n{stdout}\n{stderr}");
    }

    // The same with the network failing during the narrowing: a TCP proxy
    // in front cuts the first reconnect's connection in its TLS handshake
    // (the server's first flight is well over 500 bytes). That is retried as
    // any network failure, and only it counts as a reconnect in the summary.
    let cut = FaultProxy::start(mitm.port(), |i| {
        if i == 1 {
            Fault::CutAfter(500)
        } else {
            Fault::Pass
        }
    });
    let account = Account::new(&server, "bs-cut", &corpus, Some(cut.port()));
    account.trust(mitm.ca_file());
    let output = account.sync(&server, None);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    eprintln!("{stdout}{stderr}");
    assert_eq!(cut.cuts(), 1, "{stderr}");
    assert!(
        stdout.contains(", 3 messages with problems, 1 reconnects"),
        "{stdout}\n{stderr}"
    );
    if let Err(why) = check_final(&server, &account, &reference, None) {
        panic!("after a cut while narrowing: {why}\n{stdout}\n{stderr}");
    }

    // The same in batches of 3: the bad structure then comes in the first
    // pass sent along with the batch before's content (the look-ahead),
    // whose unreadable answer costs the session. A new one plans the batch
    // again, narrowing down to the bad message as above; none is fetched
    // twice, none is lost.
    assert!(
        (4..=6).contains(&bad),
        "UID {bad} must be in the second batch"
    );
    let account = account_via(&server, "bs-ahead", &corpus, &mitm);
    let (stdout, stderr) = sync_in_batches_of_3(&account);
    // The first batch's own messages are fine: a failure before it is done
    // is the look-ahead's.
    let first_failure = stderr.find("could not be parsed").expect("a failure");
    let first_batch_done = stderr.find("INBOX: 3/").expect("a progress line");
    assert!(
        first_failure < first_batch_done,
        "the bad structure was met in the look-ahead sent with the first batch: {stderr}"
    );
    let recovered = (&server, &account, &reference, bad);
    assert_bad_structure_fetched_whole(recovered, &stdout, &stderr, "after a bad look-ahead");

    // The same from a server that answers pipelined commands one after the
    // other (a proxy holds the structures back until their own completion;
    // Dovecot interleaves them with the content): the first batch's content
    // has all come and completed when the bad structure breaks the session.
    // Nothing of the first batch is fetched again; a new session plans the
    // second batch, narrowing down to the bad message.
    let in_order = Mitm::start_structures_last(
        server.imaps_port(),
        server.ca_file(),
        unescaped_quotes_in_structure(bad),
    );
    let account = account_via(&server, "bs-last", &corpus, &in_order);
    let (stdout, stderr) = sync_in_batches_of_3(&account);
    assert_faults_injected(&in_order, 1);
    let reconnected = stderr
        .find("INBOX: the next batch's structures: ")
        .expect("the look-ahead alone failed, after the batch's content");
    let first_batch_done = stderr.find("INBOX: 3/").expect("a progress line");
    assert!(
        reconnected < first_batch_done,
        "the look-ahead sent with the first batch failed: {stderr}"
    );
    // Only the second batch's planning narrows (reconnecting for each
    // failure); nothing of the first batch, whose content had completed.
    assert!(
        !stderr[..first_batch_done].contains("reconnecting to fetch around it"),
        "the first batch's content completed: nothing of it is fetched again: {stderr}"
    );
    let recovered = (&server, &account, &reference, bad);
    let what = "after a bad look-ahead answered last";
    assert_bad_structure_fetched_whole(recovered, &stdout, &stderr, what);
}

/// A Content-Description whose quotes the server forgets to escape
/// (MailKit#1393), in the BODYSTRUCTURE of INBOX's UID `bad`.
fn unescaped_quotes_in_structure(bad: u32) -> Vec<Rewrite> {
    vec![Rewrite {
        message: Some(("INBOX", bad)),
        item: "BODYSTRUCTURE",
        from: r#""the \"final\" travel plan""#,
        to: r#""the "final" travel plan""#,
    }]
}

/// `bridge sync` in batches of 3, with debug logs: whether it succeeded,
/// and its stdout and stderr.
fn debug_sync_in_batches_of_3(account: &Account) -> (bool, String, String) {
    let output = account
        .command(Some(3))
        .env("RUST_LOG", "mailbridge=debug")
        .output()
        .expect("run bridge sync");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    eprintln!("{stdout}{stderr}");
    (output.status.success(), stdout, stderr)
}

/// [`debug_sync_in_batches_of_3`], which must succeed.
fn sync_in_batches_of_3(account: &Account) -> (String, String) {
    let (succeeded, stdout, stderr) = debug_sync_in_batches_of_3(account);
    assert!(succeeded, "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// After a sync in batches of 3 whose look-ahead met the bad BODYSTRUCTURE
/// of UID `bad`: it was fetched whole and said so, no reconnect counted
/// as a network retry, and the notes are an undisturbed run's.
fn assert_bad_structure_fetched_whole(
    (server, account, reference, bad): (&MailServer, &Account, &Reference, u32),
    stdout: &str,
    stderr: &str,
    what: &str,
) {
    assert!(
        stderr.contains(&format!(
            "INBOX UID {bad}: the server's BODYSTRUCTURE could not be parsed; fetched whole"
        )),
        "{stderr}"
    );
    assert!(
        !stdout.contains("reconnects"),
        "a look-ahead's reconnect is no network retry: {stdout}"
    );
    if let Err(why) = check_final(server, account, reference, Some(3)) {
        panic!("{what}: {why}\n{stdout}\n{stderr}");
    }
}

#[test]
fn a_commit_that_fails_stops_the_sync_naming_folder_and_file_and_a_rerun_completes() {
    let server = MailServer::start();
    let corpus = corpus(24);
    let reference = reference(&server, &corpus, "commit-ref", Some(3));
    let account = Account::new(&server, "commit-fail", &corpus, None);
    // The fetch step's commits append to the message pack, which cannot be
    // opened: a directory stands where the file goes.
    let pack = account.state_dir().join("messages.pack");
    std::fs::create_dir_all(&pack).unwrap();
    let (succeeded, stdout, stderr) = debug_sync_in_batches_of_3(&account);
    assert!(!succeeded, "{stdout}\n{stderr}");
    assert!(stderr.contains("INBOX: fetching "), "{stderr}");
    let error = stderr
        .lines()
        .find(|line| line.starts_with("bridge: error: "))
        .unwrap_or_else(|| panic!("an error line: {stderr}"));
    assert!(
        error.contains("folder INBOX") && error.contains(&pack.display().to_string()),
        "the error names the folder and the file: {error}"
    );
    // The commit error stops the sync: the next folder is never fetched.
    assert!(!stderr.contains("Sent: fetching "), "{stderr}");
    assert!(
        account.notes().notes.is_empty(),
        "no note before the mail is committed"
    );
    // Nothing is lost: with the file's place free, a rerun ends as an
    // undisturbed run.
    std::fs::remove_dir(&pack).unwrap();
    let output = account.sync(&server, Some(3));
    assert!(output.status.success(), "{}", text(&output.stderr));
    if let Err(why) = check_final(&server, &account, &reference, Some(3)) {
        panic!("after a failed commit: {why}");
    }
}

#[test]
fn content_that_cannot_be_parsed_is_fetched_whole_or_noted_undecodable() {
    let server = MailServer::start();
    let corpus = corpus(24);
    let reference = reference(&server, &corpus, "content-ref", None);
    // The multipart message (fetched in parts): its parts' answer cannot be
    // parsed, the whole message can.
    let in_parts = inbox_uid(&corpus, &message_id(15, 0));
    // A single-part message (fetched whole) no answer of which can be parsed.
    let lost = inbox_uid(&corpus, &message_id(0, 0));
    let mitm = Mitm::start(
        server.imaps_port(),
        server.ca_file(),
        vec![
            // Only the answer in parts has the part's MIME header.
            Rewrite {
                message: Some(("INBOX", in_parts)),
                item: "BODY[HEADER.FIELDS",
                from: "BODY[1.MIME]",
                to: "BODY[1.MIME]]",
            },
            Rewrite {
                message: Some(("INBOX", lost)),
                item: "BODY[HEADER.FIELDS",
                from: "BODY[TEXT]",
                to: "BODY[TEXT]]",
            },
        ],
    );
    let account = account_via(&server, "content-bad", &corpus, &mitm);
    let output = account.sync(&server, None);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    eprintln!("{stdout}{stderr}");
    assert_faults_injected(&mitm, 3);
    // The corpus's two messages without Message-ID are problems already.
    assert!(
        stdout.contains(", 4 messages with problems"),
        "the summary counts both: {stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "INBOX UID {in_parts}: the server's answer to the FETCH of its parts could not be \
             parsed; fetched whole"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "INBOX UID {lost}: could not be decoded: the server's answer to the FETCH of the \
             whole message could not be parsed"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&account.user.password), "{stderr}");

    // Every note but the lost message's is the undisturbed sync's, the one
    // fetched whole included; the lost message is a placeholder note.
    let lost_token = token(0, 0);
    let notes = account.notes().notes;
    let expected: BTreeMap<PathBuf, Vec<u8>> = reference
        .notes
        .iter()
        .filter(|(_, bytes)| !text(bytes).contains(&lost_token))
        .map(|(path, bytes)| (path.clone(), bytes.clone()))
        .collect();
    assert_eq!(expected.len(), reference.notes.len() - 1);
    let placeholder = format!("(undecodable message INBOX UID {lost})");
    let (others, placeholders): (BTreeMap<_, _>, BTreeMap<_, _>) = notes
        .into_iter()
        .partition(|(_, bytes)| !text(bytes).contains(&placeholder));
    assert_eq!(notes_difference(&expected, &others), None);
    assert_eq!(placeholders.len(), 1, "{:?}", placeholders.keys());
    let note = text(placeholders.values().next().unwrap());
    assert!(
        note.contains("could not be decoded") && !note.contains(&lost_token),
        "{note}"
    );

    // The folder moved past it: a second sync fetches nothing, changes nothing.
    let before = account.notes();
    let again = account.sync(&server, None);
    assert!(
        text(&again.stdout).contains(" 0 new messages"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(
        notes_difference(&before.notes, &account.notes().notes),
        None
    );
}

#[test]
fn a_server_whose_every_bodystructure_cannot_be_parsed_still_syncs_every_message() {
    let server = MailServer::start();
    let corpus = corpus(24);
    let reference = reference(&server, &corpus, "all-bs-ref", None);
    // NIL where the body type must be, in every BODYSTRUCTURE.
    let mitm = Mitm::start(
        server.imaps_port(),
        server.ca_file(),
        vec![Rewrite {
            message: None,
            item: "BODYSTRUCTURE",
            from: "BODYSTRUCTURE (",
            to: "BODYSTRUCTURE (NIL ",
        }],
    );
    let account = account_via(&server, "all-bs-bad", &corpus, &mitm);
    let output = account.sync(&server, None);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    eprintln!("{stdout}{stderr}");
    assert_faults_injected(&mitm, 2);
    // Per folder, four messages proven bad (two failed FETCHes each), then
    // the rest of the batch fetched whole without structures.
    assert_eq!(mitm.connections(), 1 + 2 * (4 + 4), "{stderr}");
    assert!(
        stderr.contains("BODYSTRUCTUREs of this batch could not be parsed; its other"),
        "{stderr}"
    );
    // The four of each folder, and the corpus's two without Message-ID.
    assert!(
        stdout.contains(", 10 messages with problems"),
        "the summary counts the proven ones: {stdout}"
    );
    if let Err(why) = check_final(&server, &account, &reference, None) {
        panic!("{why}\n{stdout}\n{stderr}");
    }
}

#[test]
fn a_server_whose_every_answer_cannot_be_parsed_fails_the_sync_naming_the_uids() {
    let server = MailServer::start();
    let corpus = corpus(24);
    // NIL where the body type must be, in every BODYSTRUCTURE; and every
    // answer of a whole message broken too.
    let mitm = Mitm::start(
        server.imaps_port(),
        server.ca_file(),
        vec![
            Rewrite {
                message: None,
                item: "BODYSTRUCTURE",
                from: "BODYSTRUCTURE (",
                to: "BODYSTRUCTURE (NIL ",
            },
            Rewrite {
                message: None,
                item: "BODY[HEADER.FIELDS",
                from: "BODY[TEXT]",
                to: "BODY[TEXT]]",
            },
        ],
    );
    let account = account_via(&server, "all-bad", &corpus, &mitm);
    let (status, stdout, stderr) =
        run_with_timeout(account.command(None), Duration::from_secs(120), &server);
    assert_faults_injected(&mitm, 2);
    assert_eq!(
        status.code(),
        Some(1),
        "exit code 1 ({status}):\n{stdout}\n{stderr}"
    );
    let error = stderr
        .lines()
        .find(|line| line.starts_with("bridge: error: sync test:"))
        .unwrap_or_else(|| panic!("an error line:\n{stderr}"));
    assert!(
        error.contains("folder INBOX")
            && error.contains("the server's answers for messages among UIDs 1:49 ")
            && error.contains("could not be parsed; gave up after 64 reconnects"),
        "a clear error naming the folder and the UIDs: {error}"
    );
    // The first connection; eight reconnects for the first pass's four bad
    // structures; then one per failure of the content pass but the last:
    // the cap, not the corpus's 49 INBOX messages (two failures each), ends it.
    assert_eq!(mitm.connections(), 1 + 8 + 64, "{stderr}");
    assert!(!stderr.contains(&account.user.password), "{stderr}");
    assert!(
        account.notes().notes.is_empty(),
        "nothing of INBOX committed"
    );
    eprintln!("{error}");
}
