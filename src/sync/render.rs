//! The render step of `bridge sync`: the notes of every thread that has a
//! message on the state store's render queue, each written once per run.
//!
//! Fetching only records messages (and queues them); rendering waits until
//! every folder is fetched, so a thread whose messages span INBOX and Sent, or
//! many batches, is threaded with the whole mailbox in view and its note is
//! written once, not once per batch that touches it. The queue is the journal
//! that makes this crash-safe: a message leaves it only in the transaction
//! that records its note, after the note is durably on disk, so a run killed
//! anywhere renders the same threads again, to the same bytes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::{parse_internal_date, RunTally};
use crate::config::{Account, Config};
use crate::message::ParsedMessage;
use crate::notes::{self, NoteDate, NoteMessage, NoteThread, NoteWriter};
use crate::state::{Location, StateStore, StoredMessage};
use crate::thread::{self, MessageRef, Thread};

/// Threads rendered per durable step: one filesystem flush and one state
/// transaction per this many notes, and a bound on the rendered text held
/// (two chunks at most: one rendering, one being written).
const RENDER_BATCH: usize = 200;

/// The render chunk size, overridable with `MAILBRIDGE_RENDER_BATCH_SIZE`
/// for tuning and for tests that need many durable steps from few notes.
fn render_batch() -> usize {
    std::env::var("MAILBRIDGE_RENDER_BATCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(RENDER_BATCH)
}

/// Renders and writes the notes of every thread with a queued message.
pub(super) fn render_queued(
    config: &Config,
    account: &Account,
    store: &mut StateStore,
    tally: &mut RunTally,
) -> Result<()> {
    let queued = store.render_queue(&account.id)?;
    if queued.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let sources = config.sources_dir();
    // Temp files of a killed run; those of a live writer are spared.
    if let Err(err) = notes::remove_stale_temp_files(&sources, Duration::from_secs(3600)) {
        tracing::debug!("stale temp file cleanup: {err}");
    }
    let threads = thread::thread_messages(&message_refs(store, account)?);
    tracing::debug!(
        "{}: {} threads of {} queued messages in {:.2}s",
        account.id,
        threads.len(),
        queued.len(),
        started.elapsed().as_secs_f64()
    );
    let mut renderer = Renderer::new(store, account)?;
    let touched: Vec<&Thread> = threads
        .iter()
        .filter(|t| t.message_ids().any(|id| queued.contains(id)))
        .collect();
    let now = super::unix_now();
    // A chunk's notes are written (and flushed) on a thread of their own while
    // the next chunk renders; its state commit waits for that write.
    let mut writing: Option<ChunkWrite> = None;
    for chunk in touched.chunks(render_batch()) {
        // The state store is read here, one query per thread; decoding,
        // analysis and rendering, the CPU-heavy part, run on every core.
        let mut loaded = Vec::with_capacity(chunk.len());
        for thread in chunk {
            let thread_id = renderer
                .existing_thread_id(thread)
                .unwrap_or_else(|| thread.thread_id.clone());
            let keys: Vec<&str> = thread.message_ids().collect();
            loaded.push((
                *thread,
                thread_id,
                store.thread_messages(&account.id, &keys)?,
            ));
        }
        let built = parallel_map(&loaded, |(thread, thread_id, rows)| {
            build_note_thread(account, &renderer.user_addresses, thread, thread_id, rows)
        });
        drop(loaded);
        let mut new_paths = Vec::new();
        let mut draft_threads = Vec::new();
        let mut to_render = Vec::with_capacity(chunk.len());
        for (thread, built) in chunk.iter().zip(built) {
            let (note_thread, first) = built?;
            let thread_id = note_thread.thread_id.clone();
            let path = match renderer.notes.get(&thread_id) {
                Some(path) => path.clone(),
                None => {
                    let path = renderer.claim_path(&note_thread, first);
                    renderer.notes.insert(thread_id.clone(), path.clone());
                    new_paths.push((thread_id.clone(), path.clone()));
                    path
                }
            };
            if crate::generate::wants_draft_step(config, store, &account.id, &note_thread, now)? {
                draft_threads.push((thread_id, path.clone()));
            }
            to_render.push((*thread, path, note_thread));
        }
        let rendered = parallel_map(&to_render, |(_, path, note_thread)| -> Result<String> {
            let existing = read_existing(&sources.join(path))?;
            Ok(notes::render_note(note_thread, existing.as_deref()))
        });
        let mut writer = NoteWriter::new(&sources);
        let mut rendered_keys = Vec::new();
        for ((thread, path, _), text) in to_render.iter().zip(rendered) {
            writer
                .stage(path, text?)
                .with_context(|| format!("cannot stage note {}", path.display()))?;
            rendered_keys.extend(
                thread
                    .message_ids()
                    .filter(|id| queued.contains(*id))
                    .map(str::to_string),
            );
        }
        drop(to_render);
        if let Some(previous) = writing.take() {
            previous.finish(store, account, tally)?;
        }
        writing = Some(ChunkWrite {
            writer: std::thread::spawn(move || writer.commit()),
            sources: sources.clone(),
            new_paths,
            draft_threads,
            rendered_keys,
        });
    }
    if let Some(last) = writing.take() {
        last.finish(store, account, tally)?;
    }
    tracing::debug!(
        "{}: {} notes rendered in {:.2}s",
        account.id,
        touched.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A chunk of notes being written, and what to record once they are on disk.
struct ChunkWrite {
    writer: std::thread::JoinHandle<std::io::Result<notes::WriteReport>>,
    sources: PathBuf,
    new_paths: Vec<(String, PathBuf)>,
    draft_threads: Vec<(String, PathBuf)>,
    rendered_keys: Vec<String>,
}

impl ChunkWrite {
    /// Waits for the notes to be durably written, then records them: new
    /// paths, draft-step queue, and their messages off the render queue.
    fn finish(self, store: &mut StateStore, account: &Account, tally: &mut RunTally) -> Result<()> {
        let report = self
            .writer
            .join()
            .map_err(|_| anyhow::anyhow!("the note writer thread panicked"))?
            .with_context(|| format!("cannot write notes under {}", self.sources.display()))?;
        let keys: Vec<&str> = self.rendered_keys.iter().map(String::as_str).collect();
        store.commit_rendered(&account.id, &self.new_paths, &self.draft_threads, &keys)?;
        let new: HashSet<&PathBuf> = self.new_paths.iter().map(|(_, path)| path).collect();
        tally.threads_new += new.len();
        tally.threads_updated += report.written.iter().filter(|p| !new.contains(p)).count();
        Ok(())
    }
}

/// Every stored message's threading headers and first location.
fn message_refs(store: &StateStore, account: &Account) -> Result<Vec<MessageRef>> {
    Ok(store
        .message_refs(&account.id)?
        .into_iter()
        .map(|(message, location)| MessageRef {
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
        })
        .collect())
}

/// The notes that exist (thread id → path) and the paths taken.
struct Renderer {
    notes: HashMap<String, PathBuf>,
    claimed_paths: HashSet<PathBuf>,
    user_addresses: Vec<String>,
}

/// What names a new note: its thread's first message, by (date, key, folder, UID).
type FirstMessage = Option<(i64, NoteDate, u32, String)>;

impl Renderer {
    fn new(store: &StateStore, account: &Account) -> Result<Renderer> {
        let notes = store.note_paths(&account.id)?;
        let claimed_paths = notes.values().cloned().collect();
        Ok(Renderer {
            notes,
            claimed_paths,
            user_addresses: vec![account.email.to_lowercase()],
        })
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
            .collect::<BTreeSet<_>>()
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

    /// A new note's path, named after the thread's first message, made unique
    /// among the notes of the account and claimed.
    fn claim_path(&mut self, note_thread: &NoteThread, first: FirstMessage) -> PathBuf {
        let (_, date, uid, folder) = first.unwrap_or_default();
        let naming = NoteThread {
            subject: note_thread.subject.clone(),
            messages: vec![NoteMessage {
                uid,
                folder,
                date,
                ..NoteMessage::default()
            }],
            ..NoteThread::default()
        };
        let wanted = notes::note_relative_path(&naming);
        let path = if self.claimed_paths.contains(&wanted) {
            (2..)
                .map(|n| notes::alternative_path(&wanted, n))
                .find(|p| !self.claimed_paths.contains(p))
                .expect("an unbounded range finds a free path")
        } else {
            wanted
        };
        self.claimed_paths.insert(path.clone());
        path
    }
}

/// `f` over `items` on every core (scoped threads over contiguous slices),
/// results in the order of `items`.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8);
    if workers == 1 || items.len() < 2 {
        return items.iter().map(&f).collect();
    }
    let per_worker = items.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(per_worker)
            .map(|slice| scope.spawn(move || slice.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a render worker panicked"))
            .collect()
    })
}

/// The thread as its note shows it, from its stored messages, and the message
/// that names a new note.
fn build_note_thread(
    account: &Account,
    user_addresses: &[String],
    thread: &Thread,
    thread_id: &str,
    rows: &[(StoredMessage, Option<Location>)],
) -> Result<(NoteThread, FirstMessage)> {
    // (date, key) order: the order the analysis reads the thread in.
    let mut parsed_messages: Vec<(i64, &str, ParsedMessage, Location)> =
        Vec::with_capacity(rows.len());
    for (stored, location) in rows {
        let parsed: ParsedMessage = serde_json::from_str(&stored.data_json)
            .with_context(|| format!("state store: message {} is unreadable", stored.key))?;
        let location = location.clone().unwrap_or(Location {
            folder: String::new(),
            uid: 0,
        });
        parsed_messages.push((stored.date_unix, stored.key.as_str(), parsed, location));
    }
    parsed_messages.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let first = parsed_messages
        .iter()
        .map(|(_, key, parsed, location)| {
            let date = message_date(parsed, None).unwrap_or_default();
            ((date.unix(), *key, &location.folder, location.uid), date)
        })
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|((unix, _, folder, uid), date)| (unix, date, uid, folder.clone()));
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
    let analysis = crate::analyze::analyze_thread(&in_order, user_addresses, as_of);
    let note_thread = NoteThread {
        account: account.id.clone(),
        thread_id: thread_id.to_string(),
        subject: thread.subject.clone(),
        messages,
        analysis: (&analysis).into(),
        user_addresses: user_addresses.to_vec(),
    };
    Ok((note_thread, first))
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
pub(super) fn message_date(
    parsed: &ParsedMessage,
    internal_date: Option<&str>,
) -> Option<NoteDate> {
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
