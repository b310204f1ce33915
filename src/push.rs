//! `bridge push`: draft notes into the mailbox's Drafts folder (SPEC §Push).
//!
//! The rule everything here serves: the bridge deletes nothing in the
//! mailbox but its own unchanged copies. So every copy it appends is
//! recorded in the state store *before* the APPEND (a run killed mid-way
//! leaves a record to find the copy by its Message-ID), with the UID it got
//! and the SHA-256 of its bytes after. A re-push first checks each recorded
//! copy on the server: still at its UID, same size, same bytes, still a
//! `\Draft`, not flagged or deleted. Only then is it replaced — the new copy
//! appended first, so a failure in between leaves two copies rather than
//! none, then the old one removed by `UID STORE +FLAGS.SILENT (\Deleted)` and
//! `UID EXPUNGE` of that UID alone. A copy the user edited (mail clients save
//! an edit as a new message and delete the old), moved or deleted is left
//! alone, and the push refuses without `--force`.
//!
//! APPEND is sent by hand ([`ImapSession::command_with_literal`]) because
//! async-imap drops the APPENDUID response code that says where the copy
//! landed; without UIDPLUS the copy is found by `UID SEARCH HEADER
//! Message-ID`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, ResponseCode};
use lettre::message::Mailbox;
use serde_norway::{Mapping, Value};

use crate::compose::{self, Quote, Reply, Variant};
use crate::config::{Account, Config, FolderChoice};
use crate::draft::{self, key_error, DraftNote, DraftStatus, FmValue};
use crate::imap::{
    self, quote, ConnectOptions, Credential, ImapError, ImapSession, SpecialUse, Step,
};
use crate::message::ParsedMessage;
use crate::notes::NoteDate;
use crate::state::{AccountLock, CopyState, PushedCopy, StateStore};

/// The flags a pushed draft carries, set in the APPEND itself so there is
/// no moment when the copy looks like unread received mail.
const DRAFT_FLAGS: &str = "(\\Draft \\Seen)";

#[derive(Debug, Clone, Copy, Default)]
pub struct PushOptions {
    /// Print the messages instead of appending them.
    pub dry_run: bool,
    /// Append beside a copy the user changed, instead of refusing.
    pub force: bool,
}

/// What the bridge is about to do with a draft; decides which statuses are
/// acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Push,
    Send,
}

/// The date and Message-ID of a composed message; injected by tests so the
/// output is reproducible, fresh otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub date: SystemTime,
    pub message_id: String,
}

/// A draft note checked and composed, not yet sent anywhere.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub draft: DraftNote,
    /// Identifies the draft note in the state store (its absolute path).
    pub draft_key: String,
    pub account_id: String,
    pub reply: Reply,
    /// Worth telling the user, e.g. that the reply will not be threaded.
    pub warnings: Vec<String>,
}

impl Prepared {
    pub fn path(&self) -> &Path {
        &self.draft.path
    }
}

/// Reads, checks and composes the draft note at `path`, before any network
/// I/O: a draft that cannot go out fails here, naming the file and key.
///
/// `store` (optional, read only) supplies the thread's messages, so the
/// reply can quote the message it answers and carry its References.
pub fn prepare(
    config: &Config,
    store: Option<&StateStore>,
    path: &Path,
    purpose: Purpose,
    stamp: Option<Stamp>,
) -> Result<Prepared> {
    let draft = DraftNote::load(path)?;
    match (draft.status()?, purpose) {
        (DraftStatus::Sent, Purpose::Push) => {
            return Err(key_error(
                path,
                "status",
                "is `sent`: this draft was sent already, so it is not pushed again",
            ))
        }
        (DraftStatus::Sent, Purpose::Send) => {
            return Err(key_error(
                path,
                "status",
                "is `sent`: this draft was sent already; not sending it twice",
            ))
        }
        (DraftStatus::Discarded, _) => {
            return Err(key_error(
                path,
                "status",
                "is `discarded`; set it to `pending` to use this draft",
            ))
        }
        (DraftStatus::Answered, _) => {
            return Err(key_error(
                path,
                "status",
                "is `answered`: you have replied to this thread since the draft was written; set it to `pending` to use this draft anyway",
            ))
        }
        _ => {}
    }
    let to = draft.addresses("to")?;
    if to.is_empty() {
        return Err(key_error(
            path,
            "to",
            "missing: whom the reply goes to, e.g. `to: \"Name <name@example.com>\"`",
        ));
    }
    let cc = draft.addresses("cc")?;
    let bcc = draft.addresses("bcc")?;
    if draft.email_markdown().trim().is_empty() {
        bail!(
            "{}: no text to send: its `## {}` section is empty",
            path.display(),
            draft::RESPONSE_HEADING
        );
    }
    let mut warnings = Vec::new();
    // Worth a word before mail goes out, not on every push of a draft the
    // user will finish in their mail client.
    let placeholder = draft
        .email_markdown()
        .lines()
        .find(|line| line.contains("[TODO"));
    if let (Some(line), Purpose::Send) = (placeholder, purpose) {
        warnings.push(format!(
            "{}: the reply still has a placeholder: {}",
            path.display(),
            line.trim()
        ));
    }
    let source = find_source_note(config, &draft, &mut warnings)?;
    let account = choose_account(config, &draft, source.as_ref())?;
    let subject = match draft.text_value("subject")? {
        Some(subject) => subject,
        None => source
            .as_ref()
            .and_then(|s| fm_str(&s.front_matter, "subject"))
            .ok_or_else(|| {
                key_error(
                    path,
                    "subject",
                    "missing, and no source note to take it from",
                )
            })?,
    };
    let thread = thread_context(store, account, &draft, source.as_ref())?;
    if thread.in_reply_to.is_none() {
        let why = match draft.text_value("source_file")? {
            Some(source_file) if source.is_none() => {
                format!("its source note {source_file} was not found, and it has no `in_reply_to`")
            }
            Some(_) => "its source note lists no message ids".to_string(),
            None => "it has no `source_file` and no `in_reply_to`".to_string(),
        };
        warnings.push(format!(
            "{}: {why}: the message carries no In-Reply-To or References, so mail clients will not thread it with the mail it answers",
            path.display()
        ));
    }
    let from = Mailbox::new(
        account.display_name.clone(),
        account.email.parse().with_context(|| {
            format!(
                "account `{}`: `{}` is not an address lettre accepts",
                account.id, account.email
            )
        })?,
    );
    let stamp = stamp.unwrap_or_else(|| Stamp {
        date: SystemTime::now(),
        message_id: compose::new_message_id(&account.email),
    });
    let is_reply = draft.text_value("type")?.as_deref() == Some("draft-reply")
        || thread.in_reply_to.is_some()
        || source.is_some();
    let reply = Reply {
        from,
        to,
        cc,
        bcc,
        subject,
        is_reply,
        body_markdown: draft.email_markdown().to_string(),
        in_reply_to: thread.in_reply_to,
        references: thread.references,
        quote: thread.quote,
        date: stamp.date,
        message_id: stamp.message_id,
    };
    // Fails now, not halfway through a push, if lettre refuses something.
    reply.message(Variant::Draft)?;
    Ok(Prepared {
        draft_key: draft_key(path),
        account_id: account.id.clone(),
        draft,
        reply,
        warnings,
    })
}

/// The state store's name for a draft note: its absolute path, so the same
/// note is recognized whatever directory `bridge` runs from.
pub fn draft_key(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
        .to_string_lossy()
        .into_owned()
}

/// The draft's `account:`, else its source note's, else the only account.
fn choose_account<'c>(
    config: &'c Config,
    draft: &DraftNote,
    source: Option<&SourceNote>,
) -> Result<&'c Account> {
    if let Some(id) = draft.text_value("account")? {
        return config
            .account(&id)
            .map_err(|err| key_error(&draft.path, "account", err));
    }
    if let Some(id) = source.and_then(|s| fm_str(&s.front_matter, "account")) {
        if let Ok(account) = config.account(&id) {
            return Ok(account);
        }
    }
    let mut accounts = config.accounts.values();
    match (accounts.next(), accounts.next()) {
        (Some(only), None) => Ok(only),
        _ => Err(key_error(
            &draft.path,
            "account",
            format!(
                "missing, and {} has several accounts ({}): add `account: NAME` to say which one the draft is from",
                config.path.display(),
                config.accounts.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// The thread's source note, as the draft's `source_file` names it.
struct SourceNote {
    text: String,
    front_matter: Mapping,
}

/// Finds the source note even when `source_file` was written on another
/// machine or before the vault moved (the seed draft's path is under
/// `/Users/…`): as written, relative to the vault or the draft, then by its
/// path below the configured sources folder, then by its file name there.
fn find_source_note(
    config: &Config,
    draft: &DraftNote,
    warnings: &mut Vec<String>,
) -> Result<Option<SourceNote>> {
    let Some(source_file) = draft.text_value("source_file")? else {
        return Ok(None);
    };
    let written = crate::config::expand_tilde(&source_file);
    let mut candidates = Vec::new();
    if written.is_absolute() {
        candidates.push(written.clone());
    } else {
        candidates.push(config.vault.join(&written));
        if let Some(dir) = draft.path.parent() {
            candidates.push(dir.join(&written));
        }
        candidates.push(config.sources_dir().join(&written));
    }
    if let Some(below) = path_below(&written, &config.notes.sources) {
        candidates.push(config.sources_dir().join(below));
    }
    if let Some(name) = written.file_name() {
        if let Some(year) = written.parent().and_then(Path::file_name) {
            candidates.push(config.sources_dir().join(year).join(name));
        }
        candidates.push(config.sources_dir().join(name));
    }
    for candidate in candidates {
        let Ok(text) = std::fs::read_to_string(&candidate) else {
            continue;
        };
        match crate::notes::read_front_matter(&text) {
            Ok(front_matter) => {
                tracing::debug!(
                    "{}: source note {}",
                    draft.path.display(),
                    candidate.display()
                );
                return Ok(Some(SourceNote { text, front_matter }));
            }
            Err(err) => warnings.push(format!(
                "{}: source note {} is unreadable ({err}); not using it",
                draft.path.display(),
                candidate.display()
            )),
        }
    }
    Ok(None)
}

/// The part of `path` after the components of `folder` (e.g. what follows
/// `Sources/Email/` in an absolute path from another machine).
fn path_below(path: &Path, folder: &Path) -> Option<PathBuf> {
    let parts: Vec<Component> = path.components().collect();
    let wanted: Vec<Component> = folder.components().collect();
    if wanted.is_empty() {
        return None;
    }
    let start = parts
        .windows(wanted.len())
        .rposition(|window| window == wanted.as_slice())?;
    let rest: PathBuf = parts[start + wanted.len()..].iter().collect();
    (!rest.as_os_str().is_empty()).then_some(rest)
}

fn fm_str(map: &Mapping, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

fn fm_list(map: &Mapping, key: &str) -> Vec<String> {
    match map.get(key) {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// How the reply joins its thread.
#[derive(Debug, Default)]
struct ThreadContext {
    in_reply_to: Option<String>,
    references: Vec<String>,
    quote: Option<Quote>,
}

/// The message replied to is the draft's `in_reply_to`, else the newest
/// message of its source note. Its stored copy (from sync) gives the exact
/// References chain and the text to quote; without it the source note's
/// message ids and last message stand in.
fn thread_context(
    store: Option<&StateStore>,
    account: &Account,
    draft: &DraftNote,
    source: Option<&SourceNote>,
) -> Result<ThreadContext> {
    let own_parent = match draft.text_value("in_reply_to")? {
        Some(id) => Some(compose::normalize_message_id(&id).ok_or_else(|| {
            key_error(
                &draft.path,
                "in_reply_to",
                format!("`{id}` is not a message id like <id@host>"),
            )
        })?),
        None => None,
    };
    let mut own_references = Vec::new();
    for item in draft.text_list("references")? {
        for id in item.split_whitespace() {
            own_references.push(compose::normalize_message_id(id).ok_or_else(|| {
                key_error(
                    &draft.path,
                    "references",
                    format!("`{id}` is not a message id like <id@host>"),
                )
            })?);
        }
    }
    let source_ids: Vec<String> = source
        .map(|s| {
            let mut ids: Vec<String> = Vec::new();
            let root = fm_str(&s.front_matter, "thread_id");
            for id in root
                .iter()
                .chain(fm_list(&s.front_matter, "message_ids").iter())
            {
                if let Some(id) = compose::normalize_message_id(id) {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            // thread_id may be synthetic (a root never seen): only a real
            // message id listed in message_ids may be the parent.
            ids
        })
        .unwrap_or_default();
    let source_last = source.and_then(|s| {
        fm_list(&s.front_matter, "message_ids")
            .iter()
            .rev()
            .find_map(|id| compose::normalize_message_id(id))
    });
    let Some(parent) = own_parent.clone().or(source_last) else {
        return Ok(ThreadContext::default());
    };
    let stored = match store {
        Some(store) => store
            .messages_with_data(&account.id, &[parent.as_str()])?
            .into_iter()
            .next()
            .and_then(|m| ParsedMessage::from_stored_json(&m.data_json).ok()),
        None => None,
    };
    let references = if !own_references.is_empty() {
        compose::references_for(&own_references, Some(&parent))
    } else if let Some(parsed) = &stored {
        compose::references_for(&parsed.references, Some(&parent))
    } else {
        let before: Vec<String> = source_ids
            .iter()
            .take_while(|id| **id != parent)
            .cloned()
            .collect();
        compose::references_for(&before, Some(&parent))
    };
    let quote = match &stored {
        Some(parsed) => Some(Quote {
            attribution: compose::attribution(
                parsed.date.as_ref().map(|d| d.timestamp),
                parsed.date.as_ref().map_or(0, |d| d.offset_minutes),
                &parsed
                    .from
                    .as_ref()
                    .map(|f| f.to_string())
                    .unwrap_or_default(),
            ),
            markdown: parsed.body.clone(),
        }),
        // The note's last message is the parent only when we took the
        // parent from the note.
        None if own_parent.is_none() => source.and_then(quote_from_note),
        None => None,
    };
    Ok(ThreadContext {
        in_reply_to: Some(parent),
        references,
        quote,
    })
}

/// The newest message of a source note, as its `## Messages` section shows
/// it: attribution from `last_from`/`last_date`, text from the last `### `
/// entry without its header bullets, attachments and collapsed history.
fn quote_from_note(source: &SourceNote) -> Option<Quote> {
    let who = fm_str(&source.front_matter, "last_from")?;
    let date = fm_str(&source.front_matter, "last_date").and_then(|d| NoteDate::parse_rfc3339(&d));
    let body = &source.text;
    let messages_at = body.find("\n## Messages")?;
    let section = &body[messages_at..];
    let last_entry = section.rfind("\n### ")?;
    let mut text = Vec::new();
    let mut in_header = true;
    for line in section[last_entry + 1..].lines().skip(1) {
        let trimmed = line.trim_start();
        if trimmed.starts_with("### ")
            || trimmed.starts_with("## ")
            || trimmed.starts_with("<!-- mailbridge:end")
            || trimmed.starts_with("**Attachments:**")
            || trimmed.starts_with("> [!quote]")
        {
            break;
        }
        if in_header {
            if trimmed.starts_with("- **") || trimmed.is_empty() {
                continue;
            }
            if trimmed.starts_with("> [!warning]") || trimmed.starts_with("> - ") {
                continue;
            }
            in_header = false;
        }
        text.push(line);
    }
    let markdown = text.join("\n").trim().to_string();
    if markdown.is_empty() || markdown == "*(no text)*" {
        return None;
    }
    Some(Quote {
        attribution: compose::attribution(
            date.map(|d| d.unix()),
            date.map_or(0, |d| i32::from(d.offset_minutes())),
            &who,
        ),
        markdown,
    })
}

/// SHA-256 of `bytes` in hex, through the TLS provider already linked in
/// (no hashing crate of its own).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("a TLS 1.3 suite");
    suite
        .common
        .hash_provider
        .hash(bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn unix_of(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `2026-01-06T10:00:00+00:00`, the form source notes use.
pub fn rfc3339_utc(unix: i64) -> String {
    NoteDate::from_unix(unix, 0)
        .map(|d| d.rfc3339())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------

/// `bridge push DRAFT...`: each draft is prepared on its own (one bad draft
/// does not stop the others, and is never appended), then the drafts of
/// each account are pushed over one connection. Returns false if any draft
/// failed; the failures are printed to stderr as they happen.
pub fn run(
    config: &Config,
    paths: &[PathBuf],
    options: PushOptions,
    out: &mut dyn Write,
) -> Result<bool> {
    let store = open_store(config, options.dry_run)?;
    let mut all_ok = true;
    let mut by_account: BTreeMap<String, Vec<Prepared>> = BTreeMap::new();
    for path in paths {
        match prepare(config, store.as_ref(), path, Purpose::Push, None) {
            Ok(prepared) => {
                for warning in &prepared.warnings {
                    tracing::warn!("{warning}");
                }
                by_account
                    .entry(prepared.account_id.clone())
                    .or_default()
                    .push(prepared);
            }
            Err(err) => {
                all_ok = false;
                eprintln!("bridge: error: {err:#}");
            }
        }
    }
    if options.dry_run {
        let mut first = true;
        for prepared in by_account.values().flatten() {
            if !first {
                out.write_all(b"\r\n")?;
            }
            first = false;
            out.write_all(&prepared.reply.bytes(Variant::Draft)?)?;
        }
        return Ok(all_ok);
    }
    let Some(store) = store else {
        unreachable!("a store is opened unless dry-run")
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for (account_id, drafts) in by_account {
        let account = config.account(&account_id)?;
        let count = drafts.len();
        let outcomes =
            runtime.block_on(push_account(config, account, &store, drafts, options.force));
        match outcomes {
            Ok(outcomes) => {
                for (path, outcome) in outcomes {
                    match outcome {
                        Ok(outcome) => writeln!(out, "{}: {outcome}", path.display())?,
                        Err(err) => {
                            all_ok = false;
                            eprintln!("bridge: error: {err:#}");
                        }
                    }
                }
            }
            Err(err) => {
                all_ok = false;
                eprintln!(
                    "bridge: error: {count} draft{} of account `{account_id}` not pushed: {err:#}",
                    if count == 1 { "" } else { "s" }
                );
            }
        }
    }
    Ok(all_ok)
}

/// The state store; a dry run only reads one that exists (it must not
/// create state as a side effect of printing).
fn open_store(config: &Config, read_only: bool) -> Result<Option<StateStore>> {
    if read_only && !config.state_dir.join("state.sqlite3").exists() {
        return Ok(None);
    }
    StateStore::open(&config.state_dir).map(Some)
}

/// One account's drafts over one connection, under the account's lock (so
/// a sync pushing drafts and a `bridge push` never append the same draft
/// twice at once).
async fn push_account(
    config: &Config,
    account: &Account,
    store: &StateStore,
    drafts: Vec<Prepared>,
    force: bool,
) -> Result<Vec<(PathBuf, Result<PushOutcome>)>> {
    let _lock = AccountLock::acquire(&config.state_dir, &account.id)?;
    let credential = Credential::for_account(account)?;
    let mut session = imap::open_session(account, &credential, &ConnectOptions::default()).await?;
    let outcomes = push_with_session(account, &mut session, store, drafts, force).await;
    if let Err(err) = session.logout().await {
        tracing::debug!("logout: {err}");
    }
    outcomes
}

/// What one push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Appended {
        folder: String,
        uid: u32,
        message_id: String,
        /// UIDs of the bridge's earlier copies taken out.
        replaced: Vec<u32>,
        /// True when those copies are only flagged `\Deleted` (no UIDPLUS).
        replaced_flagged_only: bool,
        /// Copies the user had changed, left where they are (`--force`).
        left_alone: usize,
    },
    /// The copy in Drafts is already this draft, byte for byte.
    Unchanged { folder: String, uid: u32 },
}

impl std::fmt::Display for PushOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushOutcome::Appended {
                folder,
                uid,
                replaced,
                replaced_flagged_only,
                left_alone,
                ..
            } => {
                write!(f, "pushed to {folder} (UID {uid})")?;
                if !replaced.is_empty() {
                    let uids: Vec<String> = replaced.iter().map(u32::to_string).collect();
                    if *replaced_flagged_only {
                        write!(
                            f,
                            "; the previous copy (UID {}) is flagged \\Deleted but still there: the server lacks UIDPLUS, so only your mail client's expunge removes it",
                            uids.join(", ")
                        )?;
                    } else {
                        write!(f, ", replacing the previous copy (UID {})", uids.join(", "))?;
                    }
                }
                if *left_alone > 0 {
                    write!(
                        f,
                        "; the copy you changed in your mail client was left as it is"
                    )?;
                }
                Ok(())
            }
            PushOutcome::Unchanged { folder, uid } => write!(
                f,
                "unchanged since its last push; the copy in {folder} (UID {uid}) stays"
            ),
        }
    }
}

/// Pushes prepared drafts of `account` over an open session: the entry
/// point for `bridge sync` with `drafts.push: auto`, which holds the
/// account lock and a session already. Per draft an outcome; `Err` only
/// when the Drafts folder cannot be found or opened at all.
pub async fn push_with_session(
    account: &Account,
    session: &mut ImapSession,
    store: &StateStore,
    drafts: Vec<Prepared>,
    force: bool,
) -> Result<Vec<(PathBuf, Result<PushOutcome>)>> {
    let folders = session.list_folders().await?;
    let drafts_folder = drafts_folder(account, &folders)?;
    let mut mailbox = ImapBox::new(session);
    mailbox.select(&drafts_folder).await?;
    let mut outcomes = Vec::with_capacity(drafts.len());
    for prepared in drafts {
        let path = prepared.path().to_path_buf();
        let outcome = push_one(
            account,
            &mut mailbox,
            store,
            &drafts_folder,
            prepared,
            force,
        )
        .await;
        outcomes.push((path, outcome));
    }
    Ok(outcomes)
}

/// The account's Drafts folder, or an error saying how to name it.
pub fn drafts_folder(account: &Account, folders: &[imap::Folder]) -> Result<String> {
    match imap::find_special(folders, SpecialUse::Drafts, &account.folders.drafts) {
        Some(found) => Ok(found.name().to_string()),
        None => match &account.folders.drafts {
            FolderChoice::Named(name) => bail!(
                "account `{}`: folders.drafts names `{name}`, which the server does not have",
                account.id
            ),
            FolderChoice::Auto => bail!(
                "account `{}`: no Drafts folder found (no folder with the \\Drafts special use, none named Drafts, Draft, [Gmail]/Drafts or INBOX.Drafts); set `folders.drafts: NAME` in the account config",
                account.id
            ),
        },
    }
}

async fn push_one(
    account: &Account,
    mailbox: &mut ImapBox<'_>,
    store: &StateStore,
    folder: &str,
    prepared: Prepared,
    force: bool,
) -> Result<PushOutcome> {
    let path = prepared.path().to_path_buf();
    let review = review_copies(account, mailbox, store, &prepared).await?;
    if !review.changed.is_empty() && !force {
        bail!(
            "{}: {}; the bridge leaves it alone. To push this draft anyway, as a new copy beside it, run `bridge push --force {}`",
            path.display(),
            review.describe_changed(),
            path.display()
        );
    }
    for (copy, _) in &review.changed {
        store.set_copy_state(&account.id, &copy.message_id, CopyState::Abandoned)?;
    }
    // Nothing to do if composing the draft again, with the date and id of
    // the copy in Drafts, gives that copy's bytes.
    if let [(copy, uid)] = review.unchanged.as_slice() {
        let mut again = prepared.reply.clone();
        again.message_id = copy.message_id.clone();
        again.date = UNIX_EPOCH + std::time::Duration::from_secs(copy.date_unix.max(0) as u64);
        if copy.folder == folder && sha256_hex(&again.bytes(Variant::Draft)?) == copy.sha256 {
            write_status(
                &path,
                &copy.message_id,
                &account.id,
                copy.pushed_unix,
                DraftStatus::Pushed,
            )?;
            return Ok(PushOutcome::Unchanged {
                folder: folder.to_string(),
                uid: *uid,
            });
        }
    }
    let bytes = prepared.reply.bytes(Variant::Draft)?;
    let now = unix_now();
    let message_id = prepared.reply.message_id.clone();
    let record = PushedCopy {
        account: account.id.clone(),
        message_id: message_id.clone(),
        draft_path: prepared.draft_key.clone(),
        folder: folder.to_string(),
        uidvalidity: None,
        uid: None,
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
        date_unix: unix_of(prepared.reply.date),
        pushed_unix: now,
        in_reply_to: prepared.reply.in_reply_to.clone(),
        state: CopyState::Appending,
    };
    // Recorded before the APPEND: if this run dies after it, the next push
    // finds the copy by its Message-ID instead of leaving a stray duplicate.
    store.record_pushed_copy(&record)?;
    let (uidvalidity, uid) = mailbox
        .append(folder, &bytes, DRAFT_FLAGS, &message_id)
        .await?;
    store.set_copy_location(&account.id, &message_id, uidvalidity, uid)?;
    let mut replaced = Vec::new();
    let mut flagged_only = false;
    for (copy, old_uid) in &review.unchanged {
        match mailbox.remove(&copy.folder, *old_uid).await? {
            Removal::Expunged => {}
            Removal::FlaggedOnly => flagged_only = true,
        }
        store.set_copy_state(&account.id, &copy.message_id, CopyState::Removed)?;
        replaced.push(*old_uid);
    }
    write_status(&path, &message_id, &account.id, now, DraftStatus::Pushed)?;
    Ok(PushOutcome::Appended {
        folder: folder.to_string(),
        uid,
        message_id,
        replaced,
        replaced_flagged_only: flagged_only,
        left_alone: review.changed.len(),
    })
}

/// Writes the bridge's keys into the draft note, re-reading it first so
/// an edit the user saved meanwhile is kept.
pub(crate) fn write_status(
    path: &Path,
    message_id: &str,
    account: &str,
    when: i64,
    status: DraftStatus,
) -> Result<()> {
    let note = DraftNote::load(path)?;
    let time_key = match status {
        DraftStatus::Sent => "sent_at",
        _ => "pushed_at",
    };
    let already = note.text_value("status")?.as_deref() == Some(status.as_str())
        && note.text_value("message_id")?.as_deref() == Some(message_id)
        && note.text_value("account")?.as_deref() == Some(account)
        && note.text_value(time_key)?.is_some();
    if already {
        return Ok(());
    }
    let text = note.with_front_matter(&[
        ("status", FmValue::Plain(status.as_str().into())),
        (time_key, FmValue::Quoted(rfc3339_utc(when))),
        ("message_id", FmValue::Quoted(message_id.into())),
        ("account", FmValue::Quoted(account.into())),
    ]);
    draft::write_note_durably(path, &text)
}

/// Where the bridge's earlier copies of a draft stand on the server.
#[derive(Debug, Default)]
pub(crate) struct CopyReview {
    /// Still in Drafts exactly as appended, with their UID now.
    pub unchanged: Vec<(PushedCopy, u32)>,
    /// Edited, moved, deleted, flagged by the user: why, per copy.
    pub changed: Vec<(PushedCopy, String)>,
}

impl CopyReview {
    fn describe_changed(&self) -> String {
        let reasons: Vec<String> = self
            .changed
            .iter()
            .map(|(copy, why)| {
                format!(
                    "the copy pushed on {} ({}) {why}",
                    rfc3339_utc(copy.pushed_unix),
                    copy.message_id
                )
            })
            .collect();
        reasons.join("; ")
    }
}

/// Checks every copy the bridge appended for this draft (and believes still
/// there) against the server.
pub(crate) async fn review_copies(
    account: &Account,
    mailbox: &mut ImapBox<'_>,
    store: &StateStore,
    prepared: &Prepared,
) -> Result<CopyReview> {
    let mut copies: Vec<PushedCopy> = store
        .pushed_copies_for_draft(&account.id, &prepared.draft_key)?
        .into_iter()
        .filter(|c| c.state.is_live())
        .collect();
    let noted_id = match prepared.draft.status()? {
        DraftStatus::Pushed => prepared
            .draft
            .text_value("message_id")?
            .and_then(|id| compose::normalize_message_id(&id)),
        _ => None,
    };
    let mut review = CopyReview::default();
    if let Some(id) = &noted_id {
        match store.pushed_copy(&account.id, id)? {
            // The note moved or was renamed since: its copies follow it.
            Some(copy) if copy.state.is_live() && !copies.iter().any(|c| c.message_id == *id) => {
                copies.extend(
                    store
                        .pushed_copies_for_draft(&account.id, &copy.draft_path)?
                        .into_iter()
                        .filter(|c| c.state.is_live()),
                );
            }
            Some(_) => {}
            None if copies.is_empty() => {
                // Pushed by another machine, or the state store was lost:
                // no record of the bytes, so no way to call it unchanged.
                let folder = mailbox_folder_or(mailbox, account);
                let found = mailbox.find_by_message_id(&folder, id).await?;
                let stub = PushedCopy {
                    account: account.id.clone(),
                    message_id: id.clone(),
                    draft_path: prepared.draft_key.clone(),
                    folder: String::new(),
                    uidvalidity: None,
                    uid: None,
                    size: 0,
                    sha256: String::new(),
                    date_unix: 0,
                    pushed_unix: 0,
                    in_reply_to: None,
                    state: CopyState::Present,
                };
                let why = if found.is_empty() {
                    "is no longer in Drafts (sent, moved or deleted in a mail client?), and this state store has no record of it".to_string()
                } else {
                    "is in Drafts, but this state store has no record of pushing it, so it cannot tell whether you edited it".to_string()
                };
                review.changed.push((stub, why));
                return Ok(review);
            }
            None => {}
        }
    }
    for copy in copies {
        match mailbox.check(&copy).await? {
            CopyCheck::Unchanged(uid) => {
                if copy.uid != Some(uid) {
                    let validity = mailbox.uidvalidity(&copy.folder).await?;
                    store.set_copy_location(&account.id, &copy.message_id, validity, uid)?;
                }
                review.unchanged.push((copy, uid));
            }
            CopyCheck::Gone if copy.state == CopyState::Appending => {
                // The run that recorded it died before the APPEND landed.
                store.set_copy_state(&account.id, &copy.message_id, CopyState::Removed)?;
            }
            CopyCheck::Gone => review.changed.push((
                copy,
                "is no longer in Drafts (edited, sent, moved or deleted in a mail client)".into(),
            )),
            CopyCheck::Changed(why) => review.changed.push((copy, why)),
        }
    }
    Ok(review)
}

fn mailbox_folder_or(mailbox: &ImapBox<'_>, account: &Account) -> String {
    mailbox
        .selected
        .as_ref()
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| match &account.folders.drafts {
            FolderChoice::Named(name) => name.clone(),
            FolderChoice::Auto => "Drafts".into(),
        })
}

// ---------------------------------------------------------------------------
// IMAP
// ---------------------------------------------------------------------------

/// A session with the folder it has selected (read-write), so a batch of
/// drafts selects Drafts once.
pub(crate) struct ImapBox<'s> {
    session: &'s mut ImapSession,
    selected: Option<(String, u32)>,
}

/// What became of a copy removed by UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    Expunged,
    /// No UIDPLUS: flagged `\Deleted`, left for the user's client to expunge.
    FlaggedOnly,
}

/// One recorded copy, looked up on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CopyCheck {
    Unchanged(u32),
    Changed(String),
    Gone,
}

/// A message as fetched back for checking.
struct Fetched {
    size: u32,
    flags: Vec<String>,
    bytes: Vec<u8>,
}

impl<'s> ImapBox<'s> {
    pub(crate) fn new(session: &'s mut ImapSession) -> ImapBox<'s> {
        ImapBox {
            session,
            selected: None,
        }
    }

    /// SELECTs `folder` unless it is selected; returns its UIDVALIDITY.
    pub(crate) async fn select(&mut self, folder: &str) -> Result<u32> {
        if let Some((name, validity)) = &self.selected {
            if name == folder {
                return Ok(*validity);
            }
        }
        // A failed SELECT leaves no folder selected (RFC 3501 §6.3.1).
        self.selected = None;
        let validity = self.session.select_folder(folder, false).await?;
        self.selected = Some((folder.to_string(), validity));
        Ok(validity)
    }

    async fn uidvalidity(&mut self, folder: &str) -> Result<u32> {
        self.select(folder).await
    }

    fn uidplus(&self) -> bool {
        self.session.capabilities().has("UIDPLUS")
    }

    /// APPENDs `bytes` with `flags`; returns (UIDVALIDITY, UID) from
    /// APPENDUID, or without UIDPLUS from a search for `message_id`.
    pub(crate) async fn append(
        &mut self,
        folder: &str,
        bytes: &[u8],
        flags: &str,
        message_id: &str,
    ) -> Result<(u32, u32)> {
        let completion = self
            .session
            .command_with_literal(
                Step::Command("APPEND"),
                &format!("APPEND {} {flags}", quote(folder)),
                bytes,
                |_| {},
            )
            .await
            .with_context(|| format!("cannot append to {folder}"))?;
        if let Some(ResponseCode::AppendUid(validity, uids)) = &completion.code {
            if let Some(uid) = uids
                .iter()
                .map(|member| match member {
                    UidSetMember::Uid(uid) => *uid,
                    UidSetMember::UidRange(range) => *range.start(),
                })
                .max()
            {
                return Ok((*validity, uid));
            }
        }
        let found = self.find_by_message_id(folder, message_id).await?;
        let validity = self.select(folder).await?;
        match found.iter().max() {
            Some(uid) => Ok((validity, *uid)),
            None => bail!(
                "{folder}: the server accepted the APPEND but a search for Message-ID {message_id} does not find the message"
            ),
        }
    }

    /// UIDs in `folder` of messages whose Message-ID header contains `id`.
    pub(crate) async fn find_by_message_id(&mut self, folder: &str, id: &str) -> Result<Vec<u32>> {
        self.select(folder).await?;
        // A NOOP first, so a message appended on this connection is seen.
        self.session
            .command(Step::Command("NOOP"), "NOOP", |_| {})
            .await?;
        let mut uids = Vec::new();
        self.session
            .command(
                Step::Command("UID SEARCH"),
                &format!("UID SEARCH HEADER Message-ID {}", quote(id)),
                |response| {
                    if let Response::MailboxData(MailboxDatum::Search(found)) = response {
                        uids.extend_from_slice(found);
                    }
                },
            )
            .await?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    async fn fetch(&mut self, folder: &str, uid: u32) -> Result<Option<Fetched>> {
        self.select(folder).await?;
        let mut fetched = None;
        self.session
            .command(
                Step::Command("UID FETCH"),
                &format!("UID FETCH {uid} (UID FLAGS RFC822.SIZE BODY.PEEK[])"),
                |response| {
                    let Response::Fetch(_, attributes) = response else {
                        return;
                    };
                    let mut this_uid = None;
                    let mut item = Fetched {
                        size: 0,
                        flags: Vec::new(),
                        bytes: Vec::new(),
                    };
                    for attribute in attributes {
                        match attribute {
                            AttributeValue::Uid(v) => this_uid = Some(*v),
                            AttributeValue::Rfc822Size(v) => item.size = *v,
                            AttributeValue::Flags(flags) => {
                                item.flags = flags.iter().map(|f| f.to_string()).collect()
                            }
                            AttributeValue::BodySection {
                                data: Some(data), ..
                            } => item.bytes = data.to_vec(),
                            _ => {}
                        }
                    }
                    // Unsolicited FETCHes (flag changes) of other messages
                    // may arrive meanwhile.
                    if this_uid == Some(uid) && !item.bytes.is_empty() {
                        fetched = Some(item);
                    }
                },
            )
            .await?;
        Ok(fetched)
    }

    /// Is the recorded copy still in its folder as the bridge appended it?
    pub(crate) async fn check(&mut self, copy: &PushedCopy) -> Result<CopyCheck> {
        let validity = match self.select(&copy.folder).await {
            Ok(validity) => validity,
            // The folder itself is gone (renamed or deleted by the user).
            Err(err)
                if err
                    .downcast_ref::<ImapError>()
                    .is_some_and(|e| matches!(e, ImapError::Rejected { .. })) =>
            {
                return Ok(CopyCheck::Gone)
            }
            Err(err) => return Err(err),
        };
        let candidates = match (copy.uid, copy.uidvalidity) {
            (Some(uid), Some(recorded)) if recorded == validity => vec![uid],
            // UID unknown (the run died after APPEND) or meaningless now
            // (UIDVALIDITY changed): find it by its Message-ID.
            _ => {
                self.find_by_message_id(&copy.folder, &copy.message_id)
                    .await?
            }
        };
        let mut changed = None;
        for uid in candidates {
            let Some(found) = self.fetch(&copy.folder, uid).await? else {
                continue;
            };
            let has = |flag: &str| found.flags.iter().any(|f| f.eq_ignore_ascii_case(flag));
            let why =
                if u64::from(found.size) != copy.size || sha256_hex(&found.bytes) != copy.sha256 {
                    Some("was changed on the server (its content differs from what was pushed)")
                } else if has("\\Deleted") {
                    Some("is marked as deleted in a mail client")
                } else if !has("\\Draft") {
                    Some("is no longer marked as a draft")
                } else if has("\\Flagged") {
                    Some("was flagged in a mail client")
                } else {
                    None
                };
            match why {
                None => return Ok(CopyCheck::Unchanged(uid)),
                Some(why) => changed = Some(why.to_string()),
            }
        }
        Ok(changed.map_or(CopyCheck::Gone, CopyCheck::Changed))
    }

    /// Removes one message by UID: `UID STORE +FLAGS.SILENT (\Deleted)`,
    /// then `UID EXPUNGE` of that UID only. Never a bare EXPUNGE, which
    /// would also remove whatever else the user flagged `\Deleted`.
    pub(crate) async fn remove(&mut self, folder: &str, uid: u32) -> Result<Removal> {
        self.select(folder).await?;
        self.session
            .command(
                Step::Command("UID STORE"),
                &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"),
                |_| {},
            )
            .await?;
        if !self.uidplus() {
            return Ok(Removal::FlaggedOnly);
        }
        self.session
            .command(
                Step::Command("UID EXPUNGE"),
                &format!("UID EXPUNGE {uid}"),
                |_| {},
            )
            .await?;
        Ok(Removal::Expunged)
    }
}

// ---------------------------------------------------------------------------
// Reconciliation with mail sent from a mail client (for `bridge sync`)
// ---------------------------------------------------------------------------

/// Marks `status: sent` on pushed drafts that the user sent from their mail
/// client: a message in `sent_folders` carries the pushed copy's Message-ID,
/// or is the user's own reply to the message the draft answers. Returns the
/// draft notes it changed.
///
/// For `bridge sync`, after it has committed the account's folders, with
/// the names of the folders it treats as Sent (a draft copy synced from
/// Drafts must not count as evidence, hence the folder filter). Reads only
/// the state store and the draft notes: no IMAP. A copy of the draft that
/// is still in Drafts stays there and is no longer tracked.
pub fn reconcile_sent(
    store: &StateStore,
    account: &Account,
    sent_folders: &[&str],
) -> Result<Vec<PathBuf>> {
    let own = account.email.to_ascii_lowercase();
    let mut changed = Vec::new();
    let mut done: Vec<String> = Vec::new();
    for copy in store.live_pushed_copies(&account.id)? {
        if done.contains(&copy.draft_path) {
            store.set_copy_state(&account.id, &copy.message_id, CopyState::Sent)?;
            continue;
        }
        let mut sent_at = None;
        if store.message_in_folders(&account.id, &copy.message_id, sent_folders)? {
            sent_at = Some(
                store
                    .messages_with_data(&account.id, &[copy.message_id.as_str()])?
                    .first()
                    .map_or_else(unix_now, |m| m.date_unix),
            );
        } else if let Some(parent) = &copy.in_reply_to {
            for reply in store.replies_in_folders(&account.id, parent, sent_folders)? {
                let from_me = ParsedMessage::from_stored_json(&reply.data_json)
                    .ok()
                    .and_then(|p| p.from)
                    .and_then(|f| f.address)
                    .is_some_and(|a| a.to_ascii_lowercase() == own);
                if from_me {
                    sent_at = Some(reply.date_unix);
                    break;
                }
            }
        }
        let Some(sent_at) = sent_at else {
            continue;
        };
        store.set_copy_state(&account.id, &copy.message_id, CopyState::Sent)?;
        done.push(copy.draft_path.clone());
        let path = PathBuf::from(&copy.draft_path);
        let Ok(note) = DraftNote::load(&path) else {
            tracing::warn!(
                "{}: sent from a mail client, but the draft note is gone or unreadable",
                path.display()
            );
            continue;
        };
        if note.status()? != DraftStatus::Pushed {
            continue;
        }
        let text = note.with_front_matter(&[
            ("status", FmValue::Plain(DraftStatus::Sent.as_str().into())),
            ("sent_at", FmValue::Quoted(rfc3339_utc(sent_at))),
        ]);
        draft::write_note_durably(&path, &text)?;
        changed.push(path);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SEED: &str = include_str!("../tests/fixtures/seed-draft-reply.md");

    struct Vault {
        dir: tempfile::TempDir,
        config: Config,
    }

    fn vault() -> Vault {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "vault: {0}\nstate_dir: {0}/.state\naccounts:\n  work:\n    email: jason@example.com\n    name: Jason Vallery\n    imap: {{ host: imap.example.com }}\n",
            dir.path().display()
        );
        let config = Config::parse(&yaml, &dir.path().join("config.yaml")).unwrap();
        Vault { dir, config }
    }

    impl Vault {
        fn write(&self, relative: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    fn stamp() -> Stamp {
        Stamp {
            date: UNIX_EPOCH + Duration::from_secs(1_767_693_600),
            message_id: "<mailbridge.snapshot@example.com>".into(),
        }
    }

    fn composed(prepared: &Prepared) -> String {
        String::from_utf8(prepared.reply.bytes(Variant::Draft).unwrap()).unwrap()
    }

    #[test]
    fn seed_composes_without_threading_and_warns() {
        let vault = vault();
        let path = vault.write("Drafts/Email/seed.md", SEED);
        let prepared = prepare(&vault.config, None, &path, Purpose::Push, Some(stamp())).unwrap();
        assert_eq!(prepared.account_id, "work");
        assert_eq!(prepared.reply.in_reply_to, None);
        assert!(prepared.reply.references.is_empty());
        assert_eq!(prepared.warnings.len(), 1, "{:?}", prepared.warnings);
        assert!(
            prepared.warnings[0].contains("was not found"),
            "{:?}",
            prepared.warnings
        );
        assert!(
            prepared.warnings[0].contains("no In-Reply-To"),
            "{:?}",
            prepared.warnings
        );
        insta::assert_snapshot!("seed_draft", composed(&prepared));
    }

    const SOURCE_NOTE: &str = "---
type: email-thread
account: \"work\"
subject: \"Re: OpenAI\"
thread_id: \"<openai-intro-0@example.com>\"
last_date: \"2025-12-13T09:15:02-08:00\"
last_from: \"John Mao <john@vastdata.com>\"
message_ids: [\"<CAJm-openai-update-1@mail.vastdata.com>\", \"<jason-reply-2@example.com>\", \"<CAJm-openai-update-3@mail.vastdata.com>\"]
---
<!-- mailbridge:begin -->
# Re: OpenAI

## Messages

### 1. John Mao — 2025-12-12 16:04

- **From:** John Mao <john@vastdata.com>
- **Date:** 2025-12-12T16:04:26-08:00

Hi Jason, an update.

### 3. John Mao — 2025-12-13 09:15

- **From:** John Mao <john@vastdata.com>
- **Cc:** Priya Natarajan <priya@vastdata.com>
- **Date:** 2025-12-13T09:15:02-08:00

Thanks Jason. Adding Priya.

Could you send me the prioritized questions?

> [!quote]- Quoted history
> older

<!-- mailbridge:end hash:0 -->

## Notes
";

    #[test]
    fn seed_on_another_machine_finds_its_source_note_below_the_sources_folder() {
        let vault = vault();
        vault.write(
            "Sources/Email/2025/2025-12-12_160426_5605_Re-OpenAI.md",
            SOURCE_NOTE,
        );
        let path = vault.write("Drafts/Email/seed.md", SEED);
        let prepared = prepare(&vault.config, None, &path, Purpose::Push, Some(stamp())).unwrap();
        assert!(prepared.warnings.is_empty(), "{:?}", prepared.warnings);
        assert_eq!(
            prepared.reply.in_reply_to.as_deref(),
            Some("<CAJm-openai-update-3@mail.vastdata.com>")
        );
        assert_eq!(
            prepared.reply.references,
            [
                "<openai-intro-0@example.com>",
                "<CAJm-openai-update-1@mail.vastdata.com>",
                "<jason-reply-2@example.com>",
                "<CAJm-openai-update-3@mail.vastdata.com>"
            ]
        );
        let quote = prepared.reply.quote.as_ref().unwrap();
        assert_eq!(
            quote.attribution,
            "On Sat, 13 Dec 2025 09:15:02 -0800, John Mao <john@vastdata.com> wrote:"
        );
        assert_eq!(
            quote.markdown,
            "Thanks Jason. Adding Priya.\n\nCould you send me the prioritized questions?"
        );
    }

    #[test]
    fn threaded_draft_quotes_the_stored_message() {
        let vault = vault();
        let raw = include_bytes!("../examples/sample-mail/03-john-followup.eml");
        let parsed = crate::message::parse_message(raw).unwrap();
        let mut store = StateStore::open(&vault.config.state_dir).unwrap();
        store
            .commit_folder_batch(
                "work",
                "INBOX",
                crate::state::FolderCursor {
                    uidvalidity: 1,
                    last_uid: 3,
                    highest_modseq: None,
                },
                &[(
                    crate::state::Location {
                        folder: "INBOX".into(),
                        uid: 3,
                    },
                    crate::state::StoredMessage {
                        key: parsed.stable_id(),
                        in_reply_to: parsed.in_reply_to.clone(),
                        references: parsed.references.clone(),
                        subject: parsed.subject.clone().unwrap_or_default(),
                        date_unix: parsed.date.as_ref().unwrap().timestamp,
                        data_json: serde_json::to_string(&parsed).unwrap(),
                    },
                )],
            )
            .unwrap();
        vault.write("Sources/Email/2025/openai.md", SOURCE_NOTE);
        let path = vault.write(
            "Drafts/Email/threaded.md",
            "---\ntype: draft-reply\nstatus: pending\nto: \"John Mao <john@vastdata.com>\"\ncc: \"Priya Natarajan <priya@vastdata.com>\"\nsubject: \"RE: Re: OpenAI\"\nsource_file: \"Sources/Email/2025/openai.md\"\n---\n\n# Draft\n\n## Draft Response\n\nHi John,\n\nHere are the questions:\n\n1. **Rockset**: architecture and scaling limits\n2. CosmosDB usage patterns\n\nBest,\nJason\n\n## Original Summary\n\nPrivate notes.\n",
        );
        let prepared = prepare(
            &vault.config,
            Some(&store),
            &path,
            Purpose::Push,
            Some(stamp()),
        )
        .unwrap();
        assert!(prepared.warnings.is_empty(), "{:?}", prepared.warnings);
        let message = composed(&prepared);
        assert!(!message.contains("Private notes"));
        insta::assert_snapshot!("threaded_draft", message);
    }

    #[test]
    fn bad_drafts_name_file_and_key() {
        let vault = vault();
        let cases = [
            ("status: sent\nto: a@example.com\nsubject: x\n", "`status`"),
            ("to: \"John <not an address>\"\nsubject: x\n", "`to`"),
            ("subject: x\n", "`to`"),
            ("to: a@example.com\n", "`subject`"),
            (
                "to: a@example.com\nsubject: x\nin_reply_to: \"two ids\"\n",
                "`in_reply_to`",
            ),
            (
                "to: a@example.com\nsubject: x\naccount: home\n",
                "`account`",
            ),
        ];
        for (front_matter, key) in cases {
            let path = vault.write("Drafts/bad.md", &format!("---\n{front_matter}---\nHi\n"));
            let err = prepare(&vault.config, None, &path, Purpose::Push, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(key), "{front_matter}: {err}");
        }
    }

    #[test]
    fn an_empty_response_is_refused_and_placeholders_are_pointed_out_before_sending() {
        let vault = vault();
        let path = vault.write(
            "Drafts/empty.md",
            "---\nto: a@example.com\nsubject: x\n---\n## Draft Response\n\n## Notes\nmine\n",
        );
        let err = prepare(&vault.config, None, &path, Purpose::Push, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no text to send"), "{err}");
        let path = vault.write("Drafts/seed.md", SEED);
        let push = prepare(&vault.config, None, &path, Purpose::Push, None).unwrap();
        assert!(!push.warnings.iter().any(|w| w.contains("placeholder")));
        let send = prepare(&vault.config, None, &path, Purpose::Send, None).unwrap();
        assert!(
            send.warnings
                .iter()
                .any(|w| w.contains("placeholder") && w.contains("[TODO: Add answer]")),
            "{:?}",
            send.warnings
        );
    }

    #[test]
    fn several_accounts_need_an_account_key() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "vault: /tmp/v\naccounts:\n  a:\n    email: a@example.com\n    imap: { host: h }\n  b:\n    email: b@example.com\n    imap: { host: h }\n";
        let config = Config::parse(yaml, Path::new("/c.yaml")).unwrap();
        let path = dir.path().join("d.md");
        std::fs::write(&path, "---\nto: x@example.com\nsubject: s\n---\nHi\n").unwrap();
        let err = prepare(&config, None, &path, Purpose::Push, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`account`") && err.contains("a, b"), "{err}");
        std::fs::write(
            &path,
            "---\nto: x@example.com\nsubject: s\naccount: b\n---\nHi\n",
        )
        .unwrap();
        let prepared = prepare(&config, None, &path, Purpose::Push, None).unwrap();
        assert_eq!(prepared.account_id, "b");
        assert!(prepared.reply.message_id.ends_with("@example.com>"));
        assert_eq!(prepared.reply.from.email.to_string(), "b@example.com");
    }

    #[test]
    fn sources_path_below() {
        assert_eq!(
            path_below(
                Path::new("/Users/j/Documents/Notes/Sources/Email/2025/x.md"),
                Path::new("Sources/Email")
            ),
            Some(PathBuf::from("2025/x.md"))
        );
        assert_eq!(
            path_below(Path::new("/a/b.md"), Path::new("Sources/Email")),
            None
        );
    }

    #[test]
    fn sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// A peer speaking just enough IMAP for a server without UIDPLUS: each
    /// step is (what the client sends after its tag, the reply with `{tag}`).
    /// A line ending in a literal `{N}` is answered, then the N bytes are read
    /// and stand for the next step's line, `<literal>`.
    async fn scripted_peer(
        script: Vec<(&'static str, &'static str)>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut reader = BufReader::new(read);
            write
                .write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] scripted\r\n")
                .await
                .unwrap();
            let mut received = Vec::new();
            let mut tag = String::new();
            let mut literal: Option<usize> = None;
            for (expected, reply) in script {
                let line = match literal.take() {
                    Some(n) => {
                        let mut bytes = vec![0; n + 2];
                        reader.read_exact(&mut bytes).await.unwrap();
                        "<literal>".to_string()
                    }
                    None => {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap() == 0 {
                            break;
                        }
                        let line = line.trim_end().to_string();
                        let (got_tag, rest) = line.split_once(' ').unwrap();
                        tag = got_tag.to_string();
                        if let Some(size) = rest
                            .strip_suffix('}')
                            .and_then(|r| r.rsplit_once('{'))
                            .and_then(|(_, n)| n.parse().ok())
                        {
                            literal = Some(size);
                        }
                        rest.to_string()
                    }
                };
                assert!(
                    line.starts_with(expected),
                    "client sent {line:?}, expected {expected:?}"
                );
                received.push(line);
                write
                    .write_all(reply.replace("{tag}", &tag).as_bytes())
                    .await
                    .unwrap();
            }
            received
        });
        (port, task)
    }

    #[tokio::test]
    async fn without_uidplus_the_copy_is_found_by_message_id_and_only_flagged() {
        let (port, peer) = scripted_peer(vec![
            ("LOGIN", "{tag} OK [CAPABILITY IMAP4rev1 IDLE] in\r\n"),
            (
                "SELECT \"Drafts\"",
                "* 3 EXISTS\r\n* OK [UIDVALIDITY 9] ok\r\n{tag} OK [READ-WRITE] done\r\n",
            ),
            ("APPEND \"Drafts\" (\\Draft \\Seen) {", "+ go ahead\r\n"),
            ("<literal>", "* 4 EXISTS\r\n{tag} OK appended\r\n"),
            ("NOOP", "{tag} OK done\r\n"),
            (
                "UID SEARCH HEADER Message-ID \"<new@example.com>\"",
                "* SEARCH 12\r\n{tag} OK done\r\n",
            ),
            (
                "UID STORE 7 +FLAGS.SILENT (\\Deleted)",
                "{tag} OK stored\r\n",
            ),
            ("LOGOUT", "* BYE bye\r\n{tag} OK done\r\n"),
        ])
        .await;
        let endpoint = crate::config::Endpoint {
            host: "127.0.0.1".into(),
            port,
            security: crate::config::Security::None,
        };
        let mut session = imap::connect(&endpoint, None, &ConnectOptions::default())
            .await
            .unwrap()
            .login(
                "u",
                &Credential::Password(crate::credentials::Secret::new("p")),
            )
            .await
            .unwrap();
        assert!(!session.capabilities().has("UIDPLUS"));
        let mut mailbox = ImapBox::new(&mut session);
        assert_eq!(mailbox.select("Drafts").await.unwrap(), 9);
        let landed = mailbox
            .append(
                "Drafts",
                b"Subject: x\r\n\r\nhi\r\n",
                DRAFT_FLAGS,
                "<new@example.com>",
            )
            .await
            .unwrap();
        assert_eq!(landed, (9, 12));
        assert_eq!(
            mailbox.remove("Drafts", 7).await.unwrap(),
            Removal::FlaggedOnly
        );
        session.logout().await.unwrap();
        let received = peer.await.unwrap();
        assert_eq!(received.len(), 8, "{received:?}");
        assert!(
            !received.iter().any(|l| l.contains("EXPUNGE")),
            "{received:?}"
        );
    }

    #[test]
    fn reconcile_marks_drafts_sent_from_a_mail_client() {
        let vault = vault();
        let store = StateStore::open(&vault.config.state_dir).unwrap();
        let account = vault.config.account("work").unwrap().clone();
        let path = vault.write(
            "Drafts/Email/d.md",
            "---\nstatus: pushed\nmessage_id: \"<m1@example.com>\"\n---\nHi\n",
        );
        store
            .record_pushed_copy(&PushedCopy {
                account: "work".into(),
                message_id: "<m1@example.com>".into(),
                draft_path: draft_key(&path),
                folder: "Drafts".into(),
                uidvalidity: Some(1),
                uid: Some(1),
                size: 1,
                sha256: "x".into(),
                date_unix: 1,
                pushed_unix: 1,
                in_reply_to: Some("<p@x>".into()),
                state: CopyState::Present,
            })
            .unwrap();
        assert!(reconcile_sent(&store, &account, &["Sent"])
            .unwrap()
            .is_empty());
        let mut store = store;
        let mut parsed = crate::message::parse_message(
            b"From: Jason <JASON@example.com>\r\nMessage-ID: <other@x>\r\nIn-Reply-To: <p@x>\r\nDate: Tue, 6 Jan 2026 10:00:00 +0000\r\n\r\nSent from Mail\r\n",
        )
        .unwrap();
        parsed.subject = Some("Re: x".into());
        store
            .commit_folder_batch(
                "work",
                "Sent",
                crate::state::FolderCursor {
                    uidvalidity: 1,
                    last_uid: 1,
                    highest_modseq: None,
                },
                &[(
                    crate::state::Location {
                        folder: "Sent".into(),
                        uid: 1,
                    },
                    crate::state::StoredMessage {
                        key: "<other@x>".into(),
                        in_reply_to: Some("<p@x>".into()),
                        references: vec![],
                        subject: "Re: x".into(),
                        date_unix: 1_767_693_600,
                        data_json: serde_json::to_string(&parsed).unwrap(),
                    },
                )],
            )
            .unwrap();
        let changed = reconcile_sent(&store, &account, &["Sent"]).unwrap();
        assert_eq!(changed, [PathBuf::from(draft_key(&path))]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "---\nstatus: sent\nmessage_id: \"<m1@example.com>\"\nsent_at: \"2026-01-06T10:00:00+00:00\"\n---\nHi\n"
        );
        assert!(store.live_pushed_copies("work").unwrap().is_empty());
        assert!(reconcile_sent(&store, &account, &["Sent"])
            .unwrap()
            .is_empty());
    }
}
