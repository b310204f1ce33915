//! `bridge sync`: new mail → state → threads → source notes.
//!
//! Two steps. **Fetch**: per folder, new UIDs in batches; a batch is fetched
//! and parsed, then its messages, their place on the render queue and how far
//! the folder is fetched (the journal) are committed in one transaction. A
//! FETCH response the IMAP parser cannot read is fetched around (`narrow`):
//! the message it came from is fetched whole, or noted as undecodable.
//! **Render** ([`render`]): once every folder is fetched, the threads of the
//! queued messages are threaded with the whole mailbox in view and each note
//! is written once, durably, before its messages leave the queue; the folder
//! cursors move when the queue is empty (SPEC §Reliability). A run killed anywhere
//! refetches at most one batch and re-renders what was still queued, writing
//! the same bytes: the same notes as an uninterrupted run, none missing, none
//! duplicated.

mod fetch;
mod narrow;
mod render;

use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Account, Config};
use crate::imap::{self, ConnectOptions, Credential, ImapError, ImapSession, SpecialUse};
use crate::message::ParsedMessage;
use crate::notes::NoteDate;
use crate::state::{AccountLock, FolderCursor, Location, StateStore, StoredMessage, SyncRun};

/// New messages handled per durable step: large enough to amortize a
/// commit, small enough to bound memory (two batches are held: one
/// committing, one being fetched) and the work a killed run redoes.
const BATCH_SIZE: usize = 500;

/// The batch size, overridable with `MAILBRIDGE_SYNC_BATCH_SIZE` for tuning
/// and for tests that need many durable steps from few messages.
fn batch_size() -> usize {
    count_from_env("MAILBRIDGE_SYNC_BATCH_SIZE", BATCH_SIZE)
}

/// A positive count from the environment variable `name` (tuning knobs and
/// tests), else `default`.
fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
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
    // One connection at a time, read on this thread: a multi-threaded
    // runtime woke this thread from a worker for every read, a context
    // switch each. CPU-heavy work runs on threads of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
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
/// each retry resumes from where the folders are fetched to.
pub async fn sync_account(config: &Config, account: &Account) -> Result<SyncSummary> {
    sync_account_with(config, account, SyncOptions::default()).await
}

pub async fn sync_account_with(
    config: &Config,
    account: &Account,
    options: SyncOptions,
) -> Result<SyncSummary> {
    let _lock = AccountLock::acquire(&config.state_dir, &account.id)?;
    // Here rather than in `run`, so `bridge watch` has it too.
    keep_big_blocks_out_of_the_heap();
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

/// For glibc's heap: in the `bridge` binary, which allocates with jemalloc
/// (src/main.rs), only SQLite's C allocations are left on it; anything else
/// linking the library (tests, the bench harness) has it all.
///
/// glibc's allocator raises its mmap threshold each time a big block is
/// freed, so after the first fetch batches the sync's big tables (the whole
/// mailbox's threading tables) land on the heap, and once freed they stay
/// resident there among live blocks: peak memory then grows with the
/// mailbox. A fixed threshold keeps them in mappings of their own, given
/// back when freed. 1 MiB rather than glibc's initial 128 KiB: a batch's
/// buffers and note texts, mostly below it, reuse the heap instead of an
/// mmap, page faults and munmap each (measured: the same peak either way).
fn keep_big_blocks_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

/// Hands back to the system the heap pages a finished step freed (the
/// fetch's buffers, the threading tables), which glibc would otherwise keep
/// resident until the heap's top is free. (jemalloc, the binary's
/// allocator, gives freed pages back by itself after 200 ms.)
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
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
            || cause.is::<UidValidityChanged>()
    })
}

/// A folder's UIDVALIDITY changed between two commands of one sync. Retried
/// like a network failure: the retry starts over with STATUS, which sees the
/// new UIDVALIDITY and re-reads the folder (without it, the sync failed).
#[derive(Debug, thiserror::Error)]
#[error("UIDVALIDITY of {folder} changed during the sync")]
pub(crate) struct UidValidityChanged {
    folder: String,
}

impl UidValidityChanged {
    pub(crate) fn of(folder: &str) -> UidValidityChanged {
        UidValidityChanged {
            folder: folder.to_string(),
        }
    }
}

/// EXAMINEs a planned folder again (a new batch loop, a new session), making
/// sure its UIDVALIDITY is still the one its UIDs were planned under.
async fn examine_unchanged(
    session: &mut ImapSession,
    folder: &str,
    uidvalidity: u32,
) -> Result<()> {
    if fetch::examine(session, folder).await? != uidvalidity {
        return Err(UidValidityChanged::of(folder).into());
    }
    Ok(())
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
        // One committer for every folder: a folder's last commit overlaps
        // the next folder's EXAMINE and first pass.
        let mut committer = Committer::start(store, &account.id)?;
        let mut fetched = Ok(());
        for (plan, display) in &plans {
            let reopen = narrow::Reopen {
                account,
                credential,
                folder: &plan.folder,
                uidvalidity: plan.uidvalidity,
            };
            fetched = fetch_folder(&reopen, &mut session, plan, tally, &mut committer)
                .await
                .with_context(|| format!("folder {display}"));
            if fetched.is_err() {
                break;
            }
        }
        // Every batch handed over is committed (or failed) before the render
        // step or a retry, so either starts from where the store really is.
        let (committed, commit_result) = committer.finish();
        tally.messages += committed;
        commit_result?;
        fetched?;
    }
    // Also whatever a killed or failed earlier run left queued.
    render::render_queued(config, account, store, tally)?;
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
            store.commit_folder_batch(&account.id, folder, empty, &[])?;
        }
        summary.folders_unchanged += 1;
        return Ok(None);
    }
    let uidvalidity = fetch::examine(session, folder).await?;
    if uidvalidity != status.uidvalidity {
        // Changed between STATUS and EXAMINE: let the retry start over.
        return Err(UidValidityChanged::of(folder).into());
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
        store.commit_folder_batch(&account.id, folder, cursor, &[])?;
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

/// Fetches a planned folder batch by batch; each batch's messages (queued for
/// rendering) are committed with the fetch journal by `committer`, on a
/// thread of its own, while the next batch is fetched.
async fn fetch_folder(
    reopen: &narrow::Reopen<'_>,
    session: &mut ImapSession,
    plan: &FolderPlan,
    tally: &mut RunTally,
    committer: &mut Committer,
) -> Result<()> {
    let account = reopen.account;
    let folder = plan.folder.as_str();
    let uids = &plan.uids;
    tracing::debug!(
        "{}: {folder}: fetching {} new messages",
        account.id,
        uids.len()
    );
    examine_unchanged(session, folder, plan.uidvalidity).await?;
    let progress = progress_bar(uids.len() as u64, &account.id, folder);
    let mut done = 0;
    let mut batches = uids.chunks(batch_size()).peekable();
    // Each batch's first pass goes out with the batch before's content.
    let mut planned: Option<Vec<fetch::MessagePlan>> = None;
    while let Some(batch) = batches.next() {
        let plans = match planned.take() {
            Some(plans) => plans,
            None => narrow::plan_batch(reopen, session, batch).await?,
        };
        let next = batches.peek().copied();
        let (fetched, next_plans) = narrow::fetch_batch(reopen, session, plans, next).await?;
        planned = next_plans;
        let mut new_messages = Vec::with_capacity(fetched.len());
        for item in fetched {
            let parsed = match item.parsed {
                Ok(parsed) => parsed,
                Err(reason) => undecodable(folder, item.uid, &reason),
            };
            // How it was fetched is a problem for the summary, not the note.
            let problems: Vec<&str> = item
                .problem
                .into_iter()
                .chain(parsed.problems.iter().map(String::as_str))
                .collect();
            if !problems.is_empty() {
                tally
                    .problems
                    .insert((folder.to_string(), item.uid), problems.join("; "));
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
        let cursor = FolderCursor {
            uidvalidity: plan.uidvalidity,
            last_uid: *batch.last().expect("chunks are never empty"),
            highest_modseq: plan.highest_modseq,
        };
        if !committer.send(folder, cursor, new_messages) {
            // The committer failed; its `finish` says why, and that error
            // is reported ahead of this one. No further folder is fetched.
            progress.finish_and_clear();
            anyhow::bail!("{folder}: the commit thread stopped");
        }
        done += batch.len();
        progress.set_position(done as u64);
        if progress.is_hidden() {
            tracing::info!("{}: {folder}: {done}/{} messages", account.id, uids.len());
        }
    }
    progress.finish_and_clear();
    Ok(())
}

/// A folder's batch for the [`Committer`]: the folder, its fetch journal
/// (cursor) and its messages.
type Batch = (String, FolderCursor, Vec<FetchedMessage>);

/// Commits the fetched batches, folder after folder, in order, on a thread
/// with its own connection to the state store: SQLite's work overlaps the
/// next batch's fetch.
struct Committer {
    batches: Option<std::sync::mpsc::SyncSender<Batch>>,
    thread: Option<std::thread::JoinHandle<(usize, Result<()>)>>,
}

impl Committer {
    fn start(store: &StateStore, account: &str) -> Result<Committer> {
        let mut own = store.batch_writer()?;
        let account = account.to_string();
        // A hand-over, no queue: one batch committing while the next is
        // fetched, so memory stays at two batches.
        let (batches, queue) = std::sync::mpsc::sync_channel::<Batch>(0);
        let thread = std::thread::spawn(move || {
            let mut committed = 0;
            for (folder, cursor, messages) in queue {
                let stored: Result<Vec<(Location, StoredMessage)>> = messages
                    .into_iter()
                    .map(FetchedMessage::into_stored)
                    .collect();
                let result = stored
                    .and_then(|stored| own.commit_folder_batch(&account, &folder, cursor, &stored))
                    .with_context(|| format!("folder {folder}"));
                match result {
                    Ok(new) => committed += new,
                    Err(err) => return (committed, Err(err)),
                }
            }
            (committed, Ok(()))
        });
        Ok(Committer {
            batches: Some(batches),
            thread: Some(thread),
        })
    }

    /// Hands a fetched batch of `folder` over; false when the committer has
    /// failed.
    fn send(&mut self, folder: &str, cursor: FolderCursor, messages: Vec<FetchedMessage>) -> bool {
        self.batches
            .as_ref()
            .is_some_and(|batches| batches.send((folder.to_string(), cursor, messages)).is_ok())
    }

    /// Waits for every batch handed over: how many messages were new to the
    /// store, and the first commit error.
    fn finish(&mut self) -> (usize, Result<()>) {
        self.batches = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => (
                0,
                Err(anyhow::anyhow!("the state store commit thread panicked")),
            ),
            None => (0, Ok(())),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// What a whole run did, kept across reconnects so a retried batch is not
/// counted twice.
#[derive(Default)]
struct RunTally {
    /// Messages new to the state store.
    messages: usize,
    threads_new: usize,
    threads_updated: usize,
    problems: std::collections::BTreeMap<(String, u32), String>,
    drafts: usize,
    drafts_failed: usize,
}

impl RunTally {
    fn fill(&self, summary: &mut SyncSummary) {
        summary.messages = self.messages;
        summary.threads_new = self.threads_new;
        summary.threads_updated = self.threads_updated;
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

    /// The message as the state store keeps it, consuming it: the parsed
    /// message is large, and the committer has no further use for it.
    fn into_stored(self) -> Result<(Location, StoredMessage)> {
        let key = self.key();
        let date_unix = self.date_unix();
        let mut parsed = self.parsed;
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
        let stored = StoredMessage {
            key,
            data_json: serde_json::to_string(&parsed)?,
            in_reply_to: parsed.in_reply_to,
            references: parsed.references,
            subject: parsed.subject.unwrap_or_default(),
            date_unix,
        };
        Ok((self.location, stored))
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
    fn a_uidvalidity_change_during_the_sync_is_retried() {
        let changed = anyhow::Error::from(UidValidityChanged::of("INBOX")).context("folder INBOX");
        assert!(is_retryable(&changed));
        assert!(!is_retryable(&anyhow::anyhow!(
            "UIDVALIDITY of INBOX changed"
        )));
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
