//! `bridge sync`: new mail → state → threads → source notes.
//!
//! Per folder, new UIDs are processed in batches. A batch is fetched and
//! parsed, the threads it touches are re-rendered and their notes written
//! durably (all staged, one fsync pass), and only then are the batch's
//! messages and the folder cursor committed to the state store in one
//! transaction. A run killed anywhere redoes at most one batch, writing the
//! same bytes again: the same notes as an uninterrupted run, none missing,
//! none duplicated.

mod fetch;

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Account, Config};
use crate::imap::{self, ConnectOptions, Credential, ImapError, ImapSession, SpecialUse};
use crate::message::ParsedMessage;
use crate::notes::{self, NoteDate, NoteMessage, NoteThread, NoteWriter};
use crate::state::{AccountLock, FolderCursor, Location, StateStore, StoredMessage, SyncRun};
use crate::thread::{self, MessageRef, Thread};

pub use fetch::{plan_parts, uid_set, ContentPlan};

/// New messages handled per durable step: large enough to amortize the
/// fsync pass and the re-threading, small enough to bound memory and the
/// work a killed run redoes.
const BATCH_SIZE: usize = 1000;

/// The batch size, overridable with `MAILBRIDGE_SYNC_BATCH_SIZE` for tuning
/// and for tests that need many durable steps from few messages.
fn batch_size() -> usize {
    std::env::var("MAILBRIDGE_SYNC_BATCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(BATCH_SIZE)
}

/// Reconnect attempts after a network failure, with exponential backoff.
const MAX_RETRIES: u32 = 5;

/// What `bridge sync` did for one account, for its summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncSummary {
    pub account: String,
    pub messages: usize,
    pub threads_new: usize,
    pub threads_updated: usize,
    pub folders_unchanged: usize,
    /// Messages that could not be parsed fully, with the reason: noted, counted, never fatal.
    pub problems: Vec<String>,
    pub retries: u32,
    /// Draft notes written (new or regenerated) by the draft step.
    pub drafts: usize,
    /// Threads whose draft could not be made (logged with the reason).
    pub drafts_failed: usize,
}

/// What a sync does besides fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptions {
    /// Run the draft generator (`--no-generate` turns it off; stale and answered
    /// marks on existing drafts still happen).
    pub generate: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions { generate: true }
    }
}

impl std::fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} new messages, {} new threads, {} updated threads, {} folders unchanged, {} messages with problems",
            self.account,
            self.messages,
            self.threads_new,
            self.threads_updated,
            self.folders_unchanged,
            self.problems.len()
        )?;
        if self.retries > 0 {
            write!(f, ", {} reconnects", self.retries)?;
        }
        if self.drafts > 0 {
            write!(f, ", {} drafts written", self.drafts)?;
        }
        if self.drafts_failed > 0 {
            write!(f, ", {} drafts failed", self.drafts_failed)?;
        }
        Ok(())
    }
}

/// Syncs the selected accounts; prints one summary line per account.
/// Returns false when any account failed (the others still ran).
pub fn run(config: &Config, only_account: Option<&str>) -> Result<bool> {
    run_with(config, only_account, SyncOptions::default())
}

/// [`run`] with options (`bridge sync --no-generate`).
pub fn run_with(config: &Config, only_account: Option<&str>, options: SyncOptions) -> Result<bool> {
    let accounts = config.selected_accounts(only_account)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut all_ok = true;
    for account in accounts {
        let started = unix_now();
        let outcome = runtime.block_on(sync_account_with(config, account, options));
        record_run(config, account, started, &outcome);
        match outcome {
            Ok(summary) => {
                for problem in &summary.problems {
                    tracing::warn!("{}: {problem}", account.id);
                }
                println!("{summary}");
            }
            Err(err) => {
                all_ok = false;
                eprintln!("bridge: error: sync {}: {err:#}", account.id);
            }
        }
    }
    Ok(all_ok)
}

/// Records a sync's outcome in the state store, for `bridge status`.
pub fn record_run(config: &Config, account: &Account, started: i64, outcome: &Result<SyncSummary>) {
    let (ok, summary) = match outcome {
        Ok(summary) => (true, summary.to_string()),
        Err(err) => (false, format!("{}: failed: {err:#}", account.id)),
    };
    let run = SyncRun {
        account: account.id.clone(),
        started_unix: started,
        finished_unix: unix_now(),
        ok,
        summary,
    };
    let recorded = StateStore::open(&config.state_dir).and_then(|store| store.record_run(&run));
    if let Err(err) = recorded {
        tracing::warn!("cannot record the sync run: {err:#}");
    }
}

/// One account, under its lock, retrying network failures with backoff;
/// each retry resumes from the committed cursors.
pub async fn sync_account(config: &Config, account: &Account) -> Result<SyncSummary> {
    sync_account_with(config, account, SyncOptions::default()).await
}

pub async fn sync_account_with(
    config: &Config,
    account: &Account,
    options: SyncOptions,
) -> Result<SyncSummary> {
    let _lock = AccountLock::acquire(&config.state_dir, &account.id)?;
    let credential = Credential::for_account(account)?;
    let mut store = StateStore::open(&config.state_dir)?;
    let mut summary = SyncSummary {
        account: account.id.clone(),
        ..SyncSummary::default()
    };
    let mut tally = RunTally::default();
    let mut attempt = 0;
    loop {
        let outcome = sync_once(
            config,
            account,
            &credential,
            &mut store,
            &mut summary,
            &mut tally,
            options,
        )
        .await;
        tally.fill(&mut summary);
        match outcome {
            Ok(()) => return Ok(summary),
            Err(err) if attempt < MAX_RETRIES && is_retryable(&err) => {
                attempt += 1;
                summary.retries = attempt;
                let delay = backoff(attempt);
                tracing::warn!(
                    "{}: {err:#}; reconnecting in {:.1}s (attempt {attempt} of {MAX_RETRIES})",
                    account.id,
                    delay.as_secs_f32()
                );
                tokio::time::sleep(delay).await;
            }
            Err(err) if attempt > 0 && is_retryable(&err) => {
                return Err(err.context(format!("gave up after {attempt} reconnects")))
            }
            Err(err) => return Err(err),
        }
    }
}

/// 0.5 s, 1 s, 2 s, 4 s, 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << (attempt.saturating_sub(1)).min(6))
}

fn is_retryable(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<ImapError>()
            .is_some_and(ImapError::is_retryable)
    })
}

async fn sync_once(
    config: &Config,
    account: &Account,
    credential: &Credential,
    store: &mut StateStore,
    summary: &mut SyncSummary,
    tally: &mut RunTally,
    options: SyncOptions,
) -> Result<()> {
    let mut session = imap::open_session(account, credential, &ConnectOptions::default()).await?;
    let folders = session.list_folders().await?;
    // STATUS first, for every folder: a no-change sync stops here, having
    // loaded nothing and fetched nothing.
    let mut plans = Vec::new();
    for entry in imap::resolve_sync_folders(&folders, &account.folders) {
        let Some(found) = entry.found else {
            tracing::warn!(
                "{}: folder `{}` from folders.sync not found on the server; skipped",
                account.id,
                entry.entry
            );
            continue;
        };
        let display = found.folder.display_name.clone();
        let plan = plan_folder(account, &mut session, store, found.name(), summary)
            .await
            .with_context(|| format!("folder {display}"))?;
        if let Some(plan) = plan {
            plans.push((plan, display));
        }
    }
    if !plans.is_empty() {
        // Temp files of a killed run; those of a live writer are spared.
        if let Err(err) =
            notes::remove_stale_temp_files(&config.sources_dir(), Duration::from_secs(3600))
        {
            tracing::debug!("stale temp file cleanup: {err}");
        }
        let mut threads = ThreadState::load(store, config, account)?;
        // The headers of everything new in every folder, so threads (and the
        // names of new notes) are decided with the whole mailbox in view,
        // whatever order folders and batches come in.
        for (plan, display) in &plans {
            prefetch_headers(&mut session, plan, &mut threads)
                .await
                .with_context(|| format!("folder {display}"))?;
        }
        for (plan, display) in &plans {
            sync_folder(
                config,
                account,
                &mut session,
                store,
                &mut threads,
                plan,
                tally,
            )
            .await
            .with_context(|| format!("folder {display}"))?;
        }
    }
    drafts(config, account, store, &mut session, tally, options).await?;
    if let Err(err) = session.logout().await {
        tracing::debug!("logout: {err}");
    }
    // Drafts the user sent from their mail client: their copy is in Sent now.
    if let Some(sent) = imap::find_special(&folders, SpecialUse::Sent, &account.folders.sent) {
        for draft in crate::push::reconcile_sent(store, account, &[sent.name()])? {
            tracing::info!(
                "{}: {} was sent from the mail client; marked sent",
                account.id,
                draft.display()
            );
        }
    }
    Ok(())
}

/// The draft step (`generate`): drafts for the threads this sync (or a killed
/// earlier one) queued, then, with `drafts.push: auto`, the pending drafts pushed
/// over this session. A draft that fails is logged and counted, never fatal; only
/// a network error of the push fails the attempt (and is retried like any).
async fn drafts(
    config: &Config,
    account: &Account,
    store: &StateStore,
    session: &mut ImapSession,
    tally: &mut RunTally,
    options: SyncOptions,
) -> Result<()> {
    let step = crate::generate::blocking(|| {
        crate::generate::after_sync(config, account, store, options.generate, unix_now())
    });
    match step {
        Ok(done) => {
            tally.drafts += done
                .outcomes
                .iter()
                .filter(|o| o.written().is_some())
                .count();
            tally.drafts_failed += done.failed;
        }
        Err(err) => tracing::warn!("{}: drafts: {err:#}", account.id),
    }
    if !options.generate || config.drafts.push != crate::config::PushMode::Auto {
        return Ok(());
    }
    let prepared = crate::generate::auto_push_candidates(config, account, store)?;
    if prepared.is_empty() {
        return Ok(());
    }
    match crate::push::push_with_session(account, session, store, prepared, false).await {
        Ok(outcomes) => {
            for (path, outcome) in outcomes {
                match outcome {
                    Ok(outcome) => tracing::info!("{}: {}: {outcome}", account.id, path.display()),
                    Err(err) if is_retryable(&err) => return Err(err),
                    Err(err) => tracing::warn!("{}: not pushed: {err:#}", account.id),
                }
            }
        }
        Err(err) if is_retryable(&err) => return Err(err),
        Err(err) => tracing::warn!("{}: drafts not pushed: {err:#}", account.id),
    }
    Ok(())
}

/// What a folder needs this run: the new UIDs under a verified UIDVALIDITY.
struct FolderPlan {
    folder: String,
    uidvalidity: u32,
    highest_modseq: Option<u64>,
    uids: Vec<u32>,
}

/// STATUS, cursor and UIDVALIDITY checks, and the new UIDs; `None` when the
/// folder has nothing new (then no FETCH is ever sent for it).
async fn plan_folder(
    account: &Account,
    session: &mut ImapSession,
    store: &mut StateStore,
    folder: &str,
    summary: &mut SyncSummary,
) -> Result<Option<FolderPlan>> {
    let status = fetch::folder_status(session, folder).await?;
    let mut cursor = store.folder_cursor(&account.id, folder)?;
    if let Some(old) = cursor {
        if old.uidvalidity != status.uidvalidity {
            tracing::warn!(
                "{}: {folder}: UIDVALIDITY changed ({} → {}); re-reading the folder",
                account.id,
                old.uidvalidity,
                status.uidvalidity
            );
            store.reset_folder(&account.id, folder)?;
            cursor = None;
        }
    }
    let last_uid = cursor.map_or(0, |c| c.last_uid);
    let nothing_new =
        status.messages == 0 || status.uidnext.is_some_and(|next| next <= last_uid + 1);
    if nothing_new {
        if cursor.is_none() {
            let empty = FolderCursor {
                uidvalidity: status.uidvalidity,
                last_uid: 0,
                highest_modseq: status.highest_modseq,
            };
            store.commit_folder_batch(&account.id, folder, empty, &[], &[])?;
        }
        summary.folders_unchanged += 1;
        return Ok(None);
    }
    let uidvalidity = fetch::examine(session, folder).await?;
    if uidvalidity != status.uidvalidity {
        // Changed between STATUS and EXAMINE: let the retry start over.
        anyhow::bail!("UIDVALIDITY of {folder} changed during the sync");
    }
    let since = if cursor.is_none() {
        account.since.map(imap_date_ago)
    } else {
        None
    };
    let uids = fetch::new_uids(session, last_uid, since.as_deref()).await?;
    if uids.is_empty() {
        // UIDNEXT moved but the new messages are gone (expunged) or older
        // than `since`: remember that, so the next sync skips the folder.
        let cursor = FolderCursor {
            uidvalidity,
            last_uid: status
                .uidnext
                .map_or(last_uid, |next| next.saturating_sub(1)),
            highest_modseq: status.highest_modseq,
        };
        store.commit_folder_batch(&account.id, folder, cursor, &[], &[])?;
        summary.folders_unchanged += 1;
        return Ok(None);
    }
    Ok(Some(FolderPlan {
        folder: folder.to_string(),
        uidvalidity,
        highest_modseq: status.highest_modseq,
        uids,
    }))
}

/// The threading headers of every new message of a planned (and selected)
/// folder: small, and enough to place each message in its thread.
async fn prefetch_headers(
    session: &mut ImapSession,
    plan: &FolderPlan,
    threads: &mut ThreadState,
) -> Result<()> {
    if fetch::examine(session, &plan.folder).await? != plan.uidvalidity {
        anyhow::bail!("UIDVALIDITY of {} changed during the sync", plan.folder);
    }
    for chunk in plan.uids.chunks(5000) {
        for (uid, header, internal_date) in fetch::fetch_thread_headers(session, chunk).await? {
            threads.add_pending(&plan.folder, uid, &header, internal_date.as_deref());
        }
    }
    Ok(())
}

/// Fetches, renders and commits a planned folder batch by batch.
async fn sync_folder(
    config: &Config,
    account: &Account,
    session: &mut ImapSession,
    store: &mut StateStore,
    threads: &mut ThreadState,
    plan: &FolderPlan,
    tally: &mut RunTally,
) -> Result<()> {
    let folder = plan.folder.as_str();
    let uidvalidity = fetch::examine(session, folder).await?;
    if uidvalidity != plan.uidvalidity {
        anyhow::bail!("UIDVALIDITY of {folder} changed during the sync");
    }
    let uids = &plan.uids;
    let progress = progress_bar(uids.len() as u64, &account.id, folder);
    let mut done = 0;
    for batch in uids.chunks(batch_size()) {
        let plans = fetch::plan_batch(session, batch).await?;
        let fetched = fetch::fetch_batch(session, &plans).await?;
        let mut new_messages = Vec::with_capacity(fetched.len());
        for item in fetched {
            let parsed = match item.parsed {
                Ok(parsed) => parsed,
                Err(reason) => undecodable(folder, item.uid, &reason),
            };
            if !parsed.problems.is_empty() {
                tally
                    .problems
                    .insert((folder.to_string(), item.uid), parsed.problems.join("; "));
            }
            new_messages.push(FetchedMessage {
                location: Location {
                    folder: folder.to_string(),
                    uid: item.uid,
                },
                internal_date: item.internal_date,
                parsed,
            });
        }
        let batch_last_uid = *batch.last().expect("chunks are never empty");
        let note_paths = threads.write_notes(config, account, store, &new_messages, tally)?;
        let stored: Vec<(Location, StoredMessage)> = new_messages
            .iter()
            .map(|m| Ok((m.location.clone(), m.to_stored()?)))
            .collect::<Result<_>>()?;
        let cursor = FolderCursor {
            uidvalidity,
            last_uid: batch_last_uid,
            highest_modseq: plan.highest_modseq,
        };
        store.commit_folder_batch(&account.id, folder, cursor, &stored, &note_paths)?;
        threads.committed(note_paths);
        done += batch.len();
        progress.set_position(done as u64);
        if progress.is_hidden() {
            tracing::info!("{}: {folder}: {done}/{} messages", account.id, uids.len());
        }
    }
    progress.finish_and_clear();
    Ok(())
}

/// What a whole run did, kept across reconnects so a retried batch is not
/// counted twice.
#[derive(Default)]
struct RunTally {
    new_keys: HashSet<String>,
    new_notes: HashSet<PathBuf>,
    written_notes: HashSet<PathBuf>,
    problems: std::collections::BTreeMap<(String, u32), String>,
    drafts: usize,
    drafts_failed: usize,
}

impl RunTally {
    fn fill(&self, summary: &mut SyncSummary) {
        summary.messages = self.new_keys.len();
        summary.threads_new = self.new_notes.len();
        summary.threads_updated = self.written_notes.difference(&self.new_notes).count();
        summary.drafts = self.drafts;
        summary.drafts_failed = self.drafts_failed;
        summary.problems = self
            .problems
            .iter()
            .map(|((folder, uid), problem)| format!("{folder} UID {uid}: {problem}"))
            .collect();
    }
}

fn progress_bar(length: u64, account: &str, folder: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() || length < 50 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} messages, {eta} left")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{account} {folder}"));
    bar
}

/// A message that could not be parsed at all still gets a place in a note.
fn undecodable(folder: &str, uid: u32, reason: &str) -> ParsedMessage {
    ParsedMessage {
        subject: Some(format!("(undecodable message {folder} UID {uid})")),
        problems: vec![format!("could not be decoded: {reason}")],
        ..ParsedMessage::empty()
    }
}

/// One message fetched in this run.
struct FetchedMessage {
    location: Location,
    internal_date: Option<String>,
    parsed: ParsedMessage,
}

impl FetchedMessage {
    fn key(&self) -> String {
        self.parsed.stable_id()
    }

    fn date_unix(&self) -> i64 {
        self.parsed
            .date
            .as_ref()
            .map(|d| d.timestamp)
            .or_else(|| {
                self.internal_date
                    .as_deref()
                    .and_then(parse_internal_date)
                    .map(|(t, _)| t)
            })
            .unwrap_or(0)
    }

    fn to_stored(&self) -> Result<StoredMessage> {
        let mut parsed = self.parsed.clone();
        if parsed.date.is_none() {
            // Undated mail sorts and names its note by arrival time.
            if let Some((timestamp, offset)) =
                self.internal_date.as_deref().and_then(parse_internal_date)
            {
                parsed.date = NoteDate::from_unix(timestamp, offset as i16).map(|d| {
                    crate::message::MessageDate {
                        rfc3339: d.rfc3339(),
                        timestamp,
                        offset_minutes: offset,
                    }
                });
            }
        }
        Ok(StoredMessage {
            key: self.key(),
            in_reply_to: parsed.in_reply_to.clone(),
            references: parsed.references.clone(),
            subject: parsed.subject.clone().unwrap_or_default(),
            date_unix: self.date_unix(),
            data_json: serde_json::to_string(&parsed)?,
        })
    }
}

/// Threading input for the whole account, kept across batches of one run,
/// plus the notes already written (thread id → path).
struct ThreadState {
    refs: Vec<MessageRef>,
    known: HashSet<String>,
    /// New messages whose headers are known but whose batch has not come
    /// yet, by (folder, UID): they shape threads from the start of the run.
    pending: HashMap<(String, u32), Pending>,
    notes: HashMap<String, PathBuf>,
    claimed_paths: HashSet<PathBuf>,
    user_addresses: Vec<String>,
}

/// A message known by its headers only.
struct Pending {
    reference: MessageRef,
    date: Option<NoteDate>,
}

impl ThreadState {
    fn load(store: &StateStore, _config: &Config, account: &Account) -> Result<ThreadState> {
        let mut refs = Vec::new();
        let mut known = HashSet::new();
        for (message, location) in store.message_refs(&account.id)? {
            known.insert(message.key.clone());
            refs.push(MessageRef {
                folder: location
                    .as_ref()
                    .map(|l| l.folder.clone())
                    .unwrap_or_default(),
                uid: location.map_or(0, |l| l.uid),
                message_id: Some(message.key),
                in_reply_to: message.in_reply_to,
                references: message.references,
                subject: message.subject,
                date: Some(message.date_unix),
            });
        }
        let notes = store.note_paths(&account.id)?;
        let claimed_paths = notes.values().cloned().collect();
        Ok(ThreadState {
            refs,
            known,
            notes,
            claimed_paths,
            pending: HashMap::new(),
            user_addresses: vec![account.email.to_lowercase()],
        })
    }

    fn committed(&mut self, note_paths: Vec<(String, PathBuf)>) {
        for (thread_id, path) in note_paths {
            self.claimed_paths.insert(path.clone());
            self.notes.insert(thread_id, path);
        }
    }

    /// Records a new message's threading headers ahead of its batch.
    fn add_pending(
        &mut self,
        folder: &str,
        uid: u32,
        header: &ParsedMessage,
        internal_date: Option<&str>,
    ) {
        // Without a Message-ID the real key needs the body; a placeholder
        // stands in until the batch brings it (nothing can refer to it).
        let key = header
            .message_id
            .clone()
            .unwrap_or_else(|| format!("<pending-{uid}-{folder}@mailbridge.invalid>"));
        let date = message_date(header, internal_date);
        self.pending.insert(
            (folder.to_string(), uid),
            Pending {
                reference: MessageRef {
                    folder: folder.to_string(),
                    uid,
                    message_id: Some(key),
                    in_reply_to: header.in_reply_to.clone(),
                    references: header.references.clone(),
                    subject: header.subject.clone().unwrap_or_default(),
                    date: date.map(|d| d.unix()),
                },
                date,
            },
        );
    }

    /// Threads the batch into everything known, renders each thread it
    /// touches, and writes those notes durably.
    fn write_notes(
        &mut self,
        config: &Config,
        account: &Account,
        store: &StateStore,
        batch: &[FetchedMessage],
        tally: &mut RunTally,
    ) -> Result<Vec<(String, PathBuf)>> {
        let mut batch_by_key: HashMap<String, &FetchedMessage> = HashMap::new();
        for message in batch {
            self.pending
                .remove(&(message.location.folder.clone(), message.location.uid));
            let key = message.key();
            if self.known.insert(key.clone()) {
                tally.new_keys.insert(key.clone());
                self.refs.push(MessageRef {
                    folder: message.location.folder.clone(),
                    uid: message.location.uid,
                    message_id: Some(key.clone()),
                    in_reply_to: message.parsed.in_reply_to.clone(),
                    references: message.parsed.references.clone(),
                    subject: message.parsed.subject.clone().unwrap_or_default(),
                    date: Some(message.date_unix()),
                });
            }
            batch_by_key.entry(key).or_insert(message);
        }
        let mut input = self.refs.clone();
        input.extend(self.pending.values().map(|p| p.reference.clone()));
        let all_threads = thread::thread_messages(&input);
        let touched: Vec<&Thread> = all_threads
            .iter()
            .filter(|t| t.message_ids().any(|id| batch_by_key.contains_key(id)))
            .collect();

        let sources = config.sources_dir();
        let mut writer = NoteWriter::new(&sources);
        let mut new_paths = Vec::new();
        let mut staged_new = HashSet::new();
        let mut touched_paths = Vec::new();
        let now = unix_now();
        for thread in touched {
            let thread_id = self
                .existing_thread_id(thread)
                .unwrap_or_else(|| thread.thread_id.clone());
            let note_thread =
                self.note_thread(account, store, thread, &thread_id, &batch_by_key)?;
            let path = match self.notes.get(&thread_id) {
                Some(path) => path.clone(),
                None => {
                    let wanted = self.new_note_path(account, store, thread, &batch_by_key)?;
                    let path = self.free_path(wanted, &staged_new);
                    staged_new.insert(path.clone());
                    new_paths.push((thread_id.clone(), path.clone()));
                    path
                }
            };
            if crate::generate::wants_draft_step(config, store, &account.id, &note_thread, now)? {
                touched_paths.push((thread_id.clone(), path.clone()));
            }
            let existing = read_existing(&sources.join(&path))?;
            let rendered = notes::render_note(&note_thread, existing.as_deref());
            writer
                .stage(&path, rendered)
                .with_context(|| format!("cannot stage note {}", path.display()))?;
        }
        let report = writer
            .commit()
            .with_context(|| format!("cannot write notes under {}", sources.display()))?;
        // Before the caller moves the cursor: a run killed after that still makes
        // these threads' drafts.
        store.queue_threads(&account.id, &touched_paths)?;
        tally
            .new_notes
            .extend(new_paths.iter().map(|(_, path)| path.clone()));
        tally.written_notes.extend(report.written);
        Ok(new_paths)
    }

    /// A new note is named after the thread's first message, looked for
    /// among every message known this run, fetched or not yet.
    fn new_note_path(
        &self,
        account: &Account,
        store: &StateStore,
        thread: &Thread,
        batch: &HashMap<String, &FetchedMessage>,
    ) -> Result<PathBuf> {
        let mut first: Option<(i64, &str, &str, u32, NoteDate)> = None;
        for message in &thread.messages {
            for location in &message.locations {
                let date = if let Some(fetched) = batch.get(&message.message_id).filter(|f| {
                    f.location.folder == location.folder && f.location.uid == location.uid
                }) {
                    message_date(&fetched.parsed, fetched.internal_date.as_deref())
                } else if let Some(pending) =
                    self.pending.get(&(location.folder.clone(), location.uid))
                {
                    pending.date
                } else {
                    store
                        .messages_with_data(&account.id, &[message.message_id.as_str()])?
                        .first()
                        .and_then(|stored| {
                            serde_json::from_str::<ParsedMessage>(&stored.data_json).ok()
                        })
                        .and_then(|parsed| message_date(&parsed, None))
                };
                let date = date.unwrap_or_default();
                let candidate = (
                    date.unix(),
                    message.message_id.as_str(),
                    location.folder.as_str(),
                    location.uid,
                    date,
                );
                let earlier = first.as_ref().is_none_or(|best| {
                    (candidate.0, candidate.1, candidate.2, candidate.3)
                        < (best.0, best.1, best.2, best.3)
                });
                if earlier {
                    first = Some(candidate);
                }
            }
        }
        let (_, _, folder, uid, date) = first.unwrap_or((0, "", "", 0, NoteDate::default()));
        let naming = NoteThread {
            subject: thread.subject.clone(),
            messages: vec![NoteMessage {
                uid,
                folder: folder.to_string(),
                date,
                ..NoteMessage::default()
            }],
            ..NoteThread::default()
        };
        Ok(notes::note_relative_path(&naming))
    }

    /// The id under which this thread already has a note, if any: its own
    /// id, or the id of a thread it has since absorbed.
    fn existing_thread_id(&self, thread: &Thread) -> Option<String> {
        if self.notes.contains_key(&thread.thread_id) {
            return Some(thread.thread_id.clone());
        }
        // Member ids and the ids they answer (a missing root named by a
        // reply was the thread id before the thread grew).
        let mut owners = thread
            .messages
            .iter()
            .flat_map(|m| std::iter::once(m.message_id.as_str()).chain(m.parent.as_deref()))
            .filter(|id| self.notes.contains_key(*id))
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter();
        let first = owners.next();
        if let Some(other) = owners.next() {
            tracing::warn!(
                "threads {} and {other} have merged; the note of the first is kept up to date",
                first.as_deref().unwrap_or_default()
            );
        }
        first
    }

    fn free_path(&self, wanted: PathBuf, staged: &HashSet<PathBuf>) -> PathBuf {
        let taken = |p: &PathBuf| self.claimed_paths.contains(p) || staged.contains(p);
        if !taken(&wanted) {
            return wanted;
        }
        (2..)
            .map(|n| notes::alternative_path(&wanted, n))
            .find(|p| !taken(p))
            .expect("an unbounded range finds a free path")
    }

    fn note_thread(
        &self,
        account: &Account,
        store: &StateStore,
        thread: &Thread,
        thread_id: &str,
        batch: &HashMap<String, &FetchedMessage>,
    ) -> Result<NoteThread> {
        let stored_keys: Vec<&str> = thread
            .message_ids()
            .filter(|id| !batch.contains_key(*id))
            .collect();
        // (date, id) order: the order the analysis reads the thread in.
        let mut parsed_messages: Vec<(i64, String, ParsedMessage, Location)> =
            Vec::with_capacity(thread.messages.len());
        for stored in store.messages_with_data(&account.id, &stored_keys)? {
            let parsed: ParsedMessage = serde_json::from_str(&stored.data_json)
                .with_context(|| format!("state store: message {} is unreadable", stored.key))?;
            let location = store
                .locations(&account.id, &stored.key)?
                .into_iter()
                .next()
                .unwrap_or(Location {
                    folder: String::new(),
                    uid: 0,
                });
            parsed_messages.push((stored.date_unix, stored.key, parsed, location));
        }
        for id in thread.message_ids() {
            if let Some(fetched) = batch.get(id) {
                parsed_messages.push((
                    fetched.date_unix(),
                    id.to_string(),
                    fetched.parsed.clone(),
                    fetched.location.clone(),
                ));
            }
        }
        parsed_messages.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let messages = parsed_messages
            .iter()
            .map(|(date, _, parsed, location)| note_message(parsed, location, *date))
            .collect();
        let in_order: Vec<ParsedMessage> = parsed_messages
            .into_iter()
            .map(|(_, _, parsed, _)| parsed)
            .collect();
        // The thread's own last date stands in for "now", so the same thread
        // always gives the same note (a no-change sync writes nothing).
        let as_of = thread.last_date().unwrap_or(0);
        let analysis = crate::analyze::analyze_thread(&in_order, &self.user_addresses, as_of);
        Ok(NoteThread {
            account: account.id.clone(),
            thread_id: thread_id.to_string(),
            subject: thread.subject.clone(),
            messages,
            analysis: (&analysis).into(),
            user_addresses: self.user_addresses.clone(),
        })
    }
}

fn read_existing(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read note {}", path.display())),
    }
}

/// A message's date in its sender's offset: the Date header, else the
/// server's INTERNALDATE.
fn message_date(parsed: &ParsedMessage, internal_date: Option<&str>) -> Option<NoteDate> {
    parsed
        .date
        .as_ref()
        .and_then(|d| NoteDate::from_unix(d.timestamp, d.offset_minutes as i16))
        .or_else(|| {
            internal_date
                .and_then(parse_internal_date)
                .and_then(|(unix, offset)| NoteDate::from_unix(unix, offset as i16))
        })
}

fn note_message(parsed: &ParsedMessage, location: &Location, date_unix: i64) -> NoteMessage {
    let address = |m: &crate::message::Mailbox| {
        notes::Address::new(m.name.as_deref(), m.address.as_deref().unwrap_or(""))
    };
    let date = parsed
        .date
        .as_ref()
        .and_then(|d| NoteDate::from_unix(d.timestamp, d.offset_minutes as i16))
        .or_else(|| NoteDate::from_unix(date_unix, 0))
        .unwrap_or_default();
    NoteMessage {
        uid: location.uid,
        folder: location.folder.clone(),
        message_id: parsed.message_id.clone(),
        from: parsed.from.as_ref().map(address).unwrap_or_default(),
        to: parsed.to.iter().map(address).collect(),
        cc: parsed.cc.iter().map(address).collect(),
        date,
        subject: parsed.subject.clone().unwrap_or_default(),
        body_markdown: match &parsed.signature {
            // Kept short by the parser; contact details belong in the note.
            Some(signature) => format!("{}\n\n-- \n{signature}", parsed.body_new.trim_end()),
            None => parsed.body_new.clone(),
        },
        quoted: parsed.quoted.as_ref().map(|q| match &q.attribution {
            Some(attribution) => format!("{attribution}\n{}", q.text),
            None => q.text.clone(),
        }),
        attachments: parsed
            .attachments
            .iter()
            .filter(|a| !a.inline)
            .map(|a| notes::Attachment {
                name: a.filename.clone().unwrap_or_else(|| "(unnamed)".into()),
                mime_type: a.mime_type.clone(),
                size: a.size as u64,
            })
            .collect(),
        problems: parsed.problems.clone(),
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Month names as IMAP dates write them (RFC 3501 `date-month`).
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `since` as an IMAP SEARCH date (`1-Jan-2025`), counted back from now.
fn imap_date_ago(ago: Duration) -> String {
    let then = unix_now() - ago.as_secs() as i64;
    let date = NoteDate::from_unix(then, 0).unwrap_or_default();
    let rfc = date.rfc3339();
    let (year, month, day) = (&rfc[0..4], &rfc[5..7], &rfc[8..10]);
    let month: usize = month.parse().unwrap_or(1);
    let day: u32 = day.parse().unwrap_or(1);
    format!("{day}-{}-{year}", MONTHS[month.clamp(1, 12) - 1])
}

/// INTERNALDATE (`17-Jul-1996 02:44:25 -0700`) → (unix seconds, offset minutes).
fn parse_internal_date(text: &str) -> Option<(i64, i32)> {
    let mut parts = text.split_whitespace();
    let date = parts.next()?;
    let time = parts.next()?;
    let zone = parts.next()?;
    let mut date_parts = date.split('-');
    let day: u8 = date_parts.next()?.trim().parse().ok()?;
    let month_name = date_parts.next()?;
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month_name))? as u8
        + 1;
    let year: u16 = date_parts.next()?.parse().ok()?;
    let mut time_parts = time.split(':');
    let hour: u8 = time_parts.next()?.parse().ok()?;
    let minute: u8 = time_parts.next()?.parse().ok()?;
    let second: u8 = time_parts.next()?.parse().ok()?;
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits = zone.trim_start_matches(['+', '-']);
    if digits.len() != 4 {
        return None;
    }
    let offset =
        sign * (digits[0..2].parse::<i32>().ok()? * 60 + digits[2..4].parse::<i32>().ok()?);
    let local = NoteDate::new(year, month, day, hour, minute, second, offset as i16)?;
    Some((local.unix(), offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_dates_parse() {
        let (unix, offset) = parse_internal_date("17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(offset, -420);
        assert_eq!(unix, 837_596_665);
        assert_eq!(
            parse_internal_date(" 1-Jan-2025 00:00:00 +0000").unwrap().0,
            1_735_689_600
        );
        assert!(parse_internal_date("garbage").is_none());
    }

    #[test]
    fn backoff_grows() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(5), Duration::from_secs(8));
    }

    #[test]
    fn imap_dates() {
        let text = imap_date_ago(Duration::from_secs(0));
        assert!(text.contains('-'), "{text}");
        assert_eq!(text.split('-').count(), 3);
    }
}
