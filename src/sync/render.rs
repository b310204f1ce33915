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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{parse_internal_date, RunTally};
use crate::config::{Account, Config};
use crate::message::ParsedMessage;
use crate::notes::{self, NoteDate, NoteMessage, NoteThread, NoteWriter};
use crate::state::{Location, StateStore, StoredMessage};
use crate::thread::{self, Thread, ThreadMessage};

/// Threads per chunk, the unit of rendering. Up to three chunks are held at
/// once (rendering, handed over, being written), so this bounds the text in
/// memory. Each chunk ends with the cores waiting for the last thread
/// built; 200 rather than 100 took 0.05 s off a 10,000-message first sync's
/// 0.6 s render step for under 1 MiB (300: 3 MiB for 0.01 s more).
const RENDER_BATCH: usize = 200;

/// Chunks per durable step: their notes are flushed and renamed into place,
/// and their messages leave the render queue, together. A flush of the
/// filesystem and a state commit cost tens of milliseconds here; only the
/// temp files' paths wait for the step, not the text.
const CHUNKS_PER_DURABLE_STEP: usize = 5;

/// Chunks per durable step, overridable with
/// `MAILBRIDGE_RENDER_CHUNKS_PER_STEP` (tests: many steps from few notes).
fn chunks_per_durable_step() -> usize {
    super::count_from_env("MAILBRIDGE_RENDER_CHUNKS_PER_STEP", CHUNKS_PER_DURABLE_STEP)
}

/// The render chunk size, overridable with `MAILBRIDGE_RENDER_BATCH_SIZE`
/// for tuning and for tests that need many durable steps from few notes.
fn render_batch() -> usize {
    super::count_from_env("MAILBRIDGE_RENDER_BATCH_SIZE", RENDER_BATCH)
}

/// Renders and writes the notes of every thread with a queued message.
pub(super) fn render_queued(
    config: &Config,
    account: &Account,
    store: &mut StateStore,
    tally: &mut RunTally,
) -> Result<()> {
    if !store.render_pending(&account.id)? {
        // Folders fetched with nothing to render (all mail older than `since`,
        // or expunged): their cursors may move now.
        return store.settle_cursors(&account.id);
    }
    super::return_freed_memory();
    let started = std::time::Instant::now();
    let mut index = ThreadIndex::load(store, &account.id)?;
    super::return_freed_memory();
    let sources = config.sources_dir();
    // Temp files of a killed run; those of a live writer are spared.
    if let Err(err) = notes::remove_stale_temp_files(&sources, Duration::from_secs(3600)) {
        tracing::debug!("stale temp file cleanup: {err}");
    }
    tracing::debug!(
        "{}: {} threads to render, of {} messages, in {:.2}s",
        account.id,
        index.thread_count,
        index.message_count,
        started.elapsed().as_secs_f64()
    );
    let mut renderer = Renderer {
        claimed: HashSet::new(),
    };
    let user_addresses = vec![account.email.to_lowercase()];
    // Each chunk's threads are read from the state store and built on every
    // core, each core with a connection of its own (a connection is not
    // shared; this thread's is `store`), then rendered on every core, then
    // written, flushed and recorded by the note writer thread while the next
    // chunk renders.
    let writer_store = store.another_connection()?;
    let mut helper_readers = (1..render_workers())
        .map(|_| store.another_connection())
        .collect::<Result<Vec<_>>>()?;
    // A hand-over, no queue: with room for one chunk, a writer held up by
    // a slow disk left a rendered chunk waiting there as well as the one the
    // loop was building, and the peak moved with the disk's speed (the
    // render step 1 MiB higher with each durable step delayed 200 ms;
    // without the delay, the same either way).
    let (to_writer, written_chunks) = mpsc::sync_channel::<ChunkToWrite>(0);
    let (reports_to_loop, reports) = mpsc::channel::<Result<StepReport>>();
    std::thread::scope(|scope| -> Result<()> {
        let writer = {
            let (sources, account_id) = (&sources, account.id.as_str());
            scope.spawn(move || {
                write_notes(
                    writer_store,
                    account_id,
                    sources,
                    written_chunks,
                    reports_to_loop,
                )
            })
        };
        let rendered = render_pipeline(
            config,
            account,
            store,
            &mut helper_readers,
            &mut index,
            &mut renderer,
            &sources,
            &user_addresses,
            &to_writer,
            &reports,
            tally,
        );
        // The writer records what it was handed, then stops.
        drop(to_writer);
        let joined = writer.join();
        // What was recorded is tallied. Of the errors, the render loop's is
        // reported, else the writer's first (the others are logged: a full
        // disk can fail both the writer and the finisher).
        let mut writer_error: Option<anyhow::Error> = None;
        for report in reports.try_iter() {
            match report {
                Ok(report) => renderer.recorded(report, tally),
                Err(err) if writer_error.is_none() => writer_error = Some(err),
                Err(err) => tracing::warn!("{}: note writer: {err:#}", account.id),
            }
        }
        match (rendered, writer_error) {
            (Err(err), writer_error) => {
                if let Some(writer_error) = writer_error {
                    tracing::warn!("{}: note writer: {writer_error:#}", account.id);
                }
                Err(err)
            }
            (Ok(()), Some(err)) => Err(err),
            (Ok(()), None) => {
                joined.map_err(|_| anyhow::anyhow!("the note writer thread panicked"))
            }
        }
    })?;
    tracing::debug!(
        "{}: {} notes rendered in {:.2}s",
        account.id,
        index.thread_count,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The render loop proper (see [`render_queued`]): each chunk is loaded
/// and built, then rendered, on every core, and handed to the note
/// writer, which writes it while the next chunk renders; new paths are let
/// go as the writer records them. One chunk in flight here, one with the
/// writer: a deeper pipeline held a few more chunks, and its memory grew
/// with the mailbox (+32% from 10,000 to 50,000 messages) for 0.05 s.
#[allow(clippy::too_many_arguments)]
fn render_pipeline(
    config: &Config,
    account: &Account,
    store: &mut StateStore,
    helper_readers: &mut [StateStore],
    index: &mut ThreadIndex,
    renderer: &mut Renderer,
    sources: &Path,
    user_addresses: &[String],
    to_writer: &mpsc::SyncSender<ChunkToWrite>,
    reports: &mpsc::Receiver<Result<StepReport>>,
    tally: &mut RunTally,
) -> Result<()> {
    let now = super::unix_now();
    while let Some(index_chunk) = index.next_chunk(render_batch())? {
        let chunk = &index_chunk.threads;
        for report in reports.try_iter() {
            renderer.recorded(report?, tally);
        }
        let loaded_and_built = {
            let mut readers: Vec<&mut StateStore> = std::iter::once(&mut *store)
                .chain(helper_readers.iter_mut())
                .collect();
            let renderer: &Renderer = renderer;
            StateStore::reading_each(&mut readers, |readers| {
                parallel_map_with(readers, chunk, |reader, tree| -> Result<_> {
                    let loaded = load_thread(reader, account, &index_chunk, renderer, tree)?;
                    let thread_id = loaded
                        .existing
                        .as_ref()
                        .map_or(&loaded.thread.thread_id, |(id, _)| id);
                    let built = build_note_thread(
                        account,
                        user_addresses,
                        &loaded.thread,
                        thread_id,
                        &loaded.rows,
                    );
                    Ok(((loaded.existing, loaded.queued_keys), built))
                })
            })?
        };
        let mut placing = Vec::with_capacity(chunk.len());
        let mut built = Vec::with_capacity(chunk.len());
        for item in loaded_and_built {
            let (place, note) = item?;
            placing.push(place);
            built.push(note);
        }
        // Placing looks up every new note's path and every thread's draft:
        // in one read transaction, not one per query.
        let placed = StateStore::reading_each(&mut [&mut *store], |stores| {
            place_chunk(
                config,
                stores[0],
                account,
                renderer,
                BuiltChunk { placing, built },
                now,
            )
        })??;
        let texts = parallel_map(&placed.notes, |(_, path, note_thread)| {
            let existing = read_existing(&sources.join(path))?;
            let seen = notes::Seen::of(existing.as_deref().map(str::as_bytes));
            Ok((notes::render_note(note_thread, existing.as_deref()), seen))
        });
        let rendered = RenderedChunk {
            notes: placed
                .notes
                .into_iter()
                .zip(texts)
                .map(|((keys, path, _), text)| (keys, path, text))
                .collect(),
            new_paths: placed.new_paths,
            draft_threads: placed.draft_threads,
        };
        if to_writer
            .send(ChunkToWrite::stage(sources, rendered)?)
            .is_err()
        {
            // The writer failed; its report says why.
            return Ok(());
        }
    }
    Ok(())
}

/// The threads with a queued message, from threading the whole mailbox by
/// id hashes, in order: per member a rowid, a parent hash and a queued flag,
/// per thread its root hash, its size and whether its root is missing. They
/// are kept in two temporary files beside the state store and read back a
/// chunk at a time, as the render loop goes: a first sync touches every
/// thread, and held in memory they grew with the mailbox (1.3 MB at 50,000
/// messages, most of the render step's growth from 10,000), for a pass that
/// reads each record once, in order. Strings are read back from the state
/// store a chunk at a time too.
struct ThreadIndex {
    /// Messages in the state store (threaded, touched or not).
    message_count: usize,
    /// Threads with a queued message.
    thread_count: usize,
    /// Threads not yet read back.
    threads_left: usize,
    /// The thread records, by first date, then root id hash.
    threads: std::io::BufReader<std::fs::File>,
    /// The members of every touched thread, thread after thread.
    members: std::io::BufReader<std::fs::File>,
}

/// One chunk of touched threads with their members, read back from the
/// [`ThreadIndex`].
struct IndexChunk {
    threads: Vec<TouchedThread>,
    members: Vec<Member>,
    /// On the render queue, by member.
    queued: Vec<bool>,
}

struct TouchedThread {
    root: u64,
    /// Where its members start in [`IndexChunk::members`], and how many.
    start: u32,
    len: u32,
    root_missing: bool,
}

struct Member {
    rowid: i64,
    /// The parent's id hash; 0 for none (a hash of 0 is taken as none).
    parent: u64,
}

/// A thread's record: root hash, member count, root missing.
const THREAD_RECORD: usize = 8 + 4 + 1;
/// A member's record: rowid, parent hash, queued.
const MEMBER_RECORD: usize = 8 + 8 + 1;

/// The layout of both records, written by [`ThreadIndex::load`] and read by
/// [`ThreadIndex::next_chunk`]: little-endian integers, then a flag byte.
fn thread_record(root: u64, len: u32, root_missing: bool) -> [u8; THREAD_RECORD] {
    let mut record = [0u8; THREAD_RECORD];
    record[..8].copy_from_slice(&root.to_le_bytes());
    record[8..12].copy_from_slice(&len.to_le_bytes());
    record[12] = u8::from(root_missing);
    record
}

/// (root hash, member count, root missing) of a [`thread_record`].
fn read_thread_record(record: &[u8; THREAD_RECORD]) -> (u64, u32, bool) {
    let root = u64::from_le_bytes(record[..8].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(record[8..12].try_into().expect("4 bytes"));
    (root, len, record[12] != 0)
}

fn member_record(rowid: i64, parent: u64, queued: bool) -> [u8; MEMBER_RECORD] {
    let mut record = [0u8; MEMBER_RECORD];
    record[..8].copy_from_slice(&rowid.to_le_bytes());
    record[8..16].copy_from_slice(&parent.to_le_bytes());
    record[16] = u8::from(queued);
    record
}

/// The member and its queued flag, of a [`member_record`].
fn read_member_record(record: &[u8; MEMBER_RECORD]) -> (Member, bool) {
    let member = Member {
        rowid: i64::from_le_bytes(record[..8].try_into().expect("8 bytes")),
        parent: u64::from_le_bytes(record[8..16].try_into().expect("8 bytes")),
    };
    (member, record[16] != 0)
}

impl ThreadIndex {
    fn load(store: &StateStore, account: &str) -> Result<ThreadIndex> {
        // Sized exactly: grown by doubling, these would hold up to twice the room.
        let count = store.message_count(account)?;
        let mut core = thread::CoreInput::with_capacity(count);
        let mut rowids: Vec<i64> = Vec::with_capacity(count);
        let mut queued: Vec<bool> = Vec::with_capacity(count);
        store.for_each_thread_ref(account, |row| {
            core.push_hashed(
                row.key,
                row.in_reply_to,
                row.references,
                row.subject,
                Some(row.date_unix),
            );
            rowids.push(row.rowid);
            queued.push(row.queued);
        })?;
        core.shrink_to_fit();
        let threads = thread::thread_core(&core);
        // The touched threads, by first date, then root.
        let mut touched: Vec<(i64, u64, u32)> = threads
            .threads
            .iter()
            .enumerate()
            .filter_map(|(t, tree)| {
                let members = threads.members_of(tree);
                members.iter().any(|m| queued[m.message as usize]).then(|| {
                    let first = members
                        .iter()
                        .filter_map(|m| core.messages()[m.message as usize].date)
                        .min()
                        .unwrap_or(i64::MAX);
                    (first, tree.root, t as u32)
                })
            })
            .collect();
        drop(core);
        touched.sort_unstable();
        let dir = store
            .path()
            .parent()
            .context("state store path has no directory")?;
        let spill = || {
            tempfile::tempfile_in(dir)
                .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
        };
        let mut thread_records = std::io::BufWriter::new(spill()?);
        let mut member_records = std::io::BufWriter::new(spill()?);
        let written = || format!("cannot write a temporary file in {}", dir.display());
        for &(_, _, t) in &touched {
            let tree = &threads.threads[t as usize];
            let members = threads.members_of(tree);
            let record = thread_record(tree.root, members.len() as u32, tree.root_missing);
            thread_records.write_all(&record).with_context(written)?;
            for member in members {
                let m = member.message as usize;
                let record = member_record(rowids[m], member.parent.unwrap_or(0), queued[m]);
                member_records.write_all(&record).with_context(written)?;
            }
        }
        let rewound = |records: std::io::BufWriter<std::fs::File>| -> Result<_> {
            let mut file = records
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(written)?;
            file.seek(std::io::SeekFrom::Start(0))
                .with_context(written)?;
            Ok(std::io::BufReader::new(file))
        };
        Ok(ThreadIndex {
            message_count: rowids.len(),
            thread_count: touched.len(),
            threads_left: touched.len(),
            threads: rewound(thread_records)?,
            members: rewound(member_records)?,
        })
    }

    /// The next `size` touched threads (fewer at the end) with their
    /// members; `None` once all are read. After an error the index is of no
    /// further use (the render step stops at it).
    fn next_chunk(&mut self, size: usize) -> Result<Option<IndexChunk>> {
        let take = size.min(self.threads_left);
        if take == 0 {
            return Ok(None);
        }
        let unreadable = "cannot read back the render step's temporary thread index";
        let mut chunk = IndexChunk {
            threads: Vec::with_capacity(take),
            members: Vec::new(),
            queued: Vec::new(),
        };
        let mut member_count = 0usize;
        for _ in 0..take {
            let mut record = [0u8; THREAD_RECORD];
            self.threads.read_exact(&mut record).context(unreadable)?;
            let (root, len, root_missing) = read_thread_record(&record);
            chunk.threads.push(TouchedThread {
                root,
                start: u32::try_from(member_count).context(unreadable)?,
                len,
                root_missing,
            });
            member_count += len as usize;
        }
        chunk.members.reserve_exact(member_count);
        chunk.queued.reserve_exact(member_count);
        for _ in 0..member_count {
            let mut record = [0u8; MEMBER_RECORD];
            self.members.read_exact(&mut record).context(unreadable)?;
            let (member, queued) = read_member_record(&record);
            chunk.members.push(member);
            chunk.queued.push(queued);
        }
        self.threads_left -= take;
        Ok(Some(chunk))
    }
}

impl IndexChunk {
    /// A touched thread's members, and which of them are queued.
    fn members_of(&self, tree: &TouchedThread) -> (&[Member], &[bool]) {
        let range = tree.start as usize..(tree.start + tree.len) as usize;
        (&self.members[range.clone()], &self.queued[range])
    }

    /// A thread with its strings, from its members' rows: ids by hash from
    /// the members' own keys and the ids their headers name.
    fn thread(
        &self,
        tree: &TouchedThread,
        rows: &[(i64, StoredMessage, Option<Location>)],
    ) -> Thread {
        let mut names: HashMap<u64, String> = HashMap::new();
        let mut name = |raw: &str| {
            if let Some(id) = thread::normalized_id(raw) {
                names.entry(thread::id_hash(&id)).or_insert(id);
            }
        };
        for (_, stored, _) in rows {
            name(&stored.key);
            stored.references.iter().for_each(|r| name(r));
            if let Some(irt) = &stored.in_reply_to {
                name(irt);
            }
        }
        let messages: Vec<ThreadMessage> = self
            .members_of(tree)
            .0
            .iter()
            .filter_map(|member| {
                let parent = Some(member.parent).filter(|&p| p != 0);
                let (_, stored, location) = rows.iter().find(|(r, _, _)| *r == member.rowid)?;
                Some(ThreadMessage {
                    message_id: stored.key.clone(),
                    synthetic_id: thread::is_synthetic_message_id(&stored.key),
                    parent: parent.and_then(|p| names.get(&p).cloned()),
                    date: Some(stored.date_unix),
                    subject: stored.subject.clone(),
                    locations: location
                        .iter()
                        .map(|l| thread::Location {
                            folder: l.folder.clone(),
                            uid: l.uid,
                        })
                        .collect(),
                })
            })
            .collect();
        let mut thread = Thread::of_messages(String::new(), tree.root_missing, messages);
        thread.thread_id = match names.get(&tree.root) {
            Some(root) => root.clone(),
            None => thread
                .messages
                .first()
                .map(|m| m.message_id.clone())
                .unwrap_or_default(),
        };
        thread
    }
}

/// `f` over `items` on every core, results in the order of `items`.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let mut workers = vec![(); render_workers()];
    parallel_map_with(&mut workers, items, |(), item| f(item))
}

/// How many threads build and render notes: every core, up to 8.
fn render_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8)
}

/// `f` over `items` on one thread per state (this thread takes the first),
/// results in the order of `items`. Each thread takes the next item as it
/// finishes the last: threads of 1 and of 12 messages cost very different
/// times, and halves fixed in advance left a core waiting for the other at
/// the end of every chunk.
fn parallel_map_with<S: Send, T: Sync, R: Send>(
    states: &mut [S],
    items: &[T],
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = |state: &mut S| {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(item) = items.get(index) else {
                return done;
            };
            done.push((index, f(state, item)));
        }
    };
    let workers = states.len().min(items.len().max(1));
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    if let Some((mine, helpers)) = states[..workers].split_first_mut() {
        std::thread::scope(|scope| {
            let work = &work;
            let helpers: Vec<_> = helpers
                .iter_mut()
                .map(|state| scope.spawn(move || work(state)))
                .collect();
            let mine = work(mine);
            let theirs = helpers
                .into_iter()
                .flat_map(|h| h.join().expect("a render worker panicked"));
            for (index, result) in mine.into_iter().chain(theirs) {
                slots[index] = Some(result);
            }
        });
    }
    slots
        .into_iter()
        .map(|slot| slot.expect("every item was taken by a worker"))
        .collect()
}

/// One thread of a chunk as read from the state store.
struct LoadedThread {
    thread: Thread,
    /// Its note, if it has one already (thread id, path).
    existing: Option<(String, PathBuf)>,
    rows: Vec<(StoredMessage, Option<Location>)>,
    /// The messages that leave the render queue once this note is written.
    queued_keys: Vec<String>,
}

/// A thread's existing note (thread id, path), if any, and its queued keys.
type Placing = (Option<(String, PathBuf)>, Vec<String>);

/// Of what was loaded, only what placing the notes needs is kept (each
/// thread's existing note and queued keys): the stored messages are let go
/// as soon as they are built.
struct BuiltChunk {
    placing: Vec<Placing>,
    built: Vec<Result<(NoteThread, FirstMessage)>>,
}

/// A chunk's notes with their paths, ready to render.
struct PlacedChunk {
    /// The queued keys, path and thread of each note.
    notes: Vec<(Vec<String>, PathBuf, NoteThread)>,
    new_paths: Vec<(String, PathBuf)>,
    draft_threads: Vec<(String, PathBuf)>,
}

/// A note's new text, and what its file held when it was rendered.
type RenderedNote = (String, notes::Seen);

/// Rendered notes; the threads they were rendered from are let go.
struct RenderedChunk {
    /// The queued keys and path of each note, its text and the file it was
    /// rendered over.
    notes: Vec<(Vec<String>, PathBuf, Result<RenderedNote>)>,
    new_paths: Vec<(String, PathBuf)>,
    draft_threads: Vec<(String, PathBuf)>,
}

/// Reads a thread from the state store: its messages, first locations and
/// existing note.
fn load_thread(
    store: &StateStore,
    account: &Account,
    index: &IndexChunk,
    renderer: &Renderer,
    tree: &TouchedThread,
) -> Result<LoadedThread> {
    let (members, queued_flags) = index.members_of(tree);
    let rowids: Vec<i64> = members.iter().map(|m| m.rowid).collect();
    let rows = store.messages_by_rowid(&account.id, &rowids)?;
    let thread = index.thread(tree, &rows);
    let existing = renderer.existing_note(store, account, &thread)?;
    let queued: HashSet<i64> = members
        .iter()
        .zip(queued_flags)
        .filter(|(_, &queued)| queued)
        .map(|(m, _)| m.rowid)
        .collect();
    let mut queued_keys = Vec::with_capacity(queued.len());
    let rows: Vec<_> = rows
        .into_iter()
        .map(|(rowid, stored, location)| {
            if queued.contains(&rowid) {
                queued_keys.push(stored.key.clone());
            }
            (stored, location)
        })
        .collect();
    Ok(LoadedThread {
        thread,
        existing,
        rows,
        queued_keys,
    })
}

/// Gives each built note its path (claiming new ones in chunk order, so
/// names do not depend on how the work is split) and picks the threads the
/// draft step is to look at.
fn place_chunk(
    config: &Config,
    store: &StateStore,
    account: &Account,
    renderer: &mut Renderer,
    chunk: BuiltChunk,
    now: i64,
) -> Result<PlacedChunk> {
    let mut placed = PlacedChunk {
        notes: Vec::with_capacity(chunk.placing.len()),
        new_paths: Vec::new(),
        draft_threads: Vec::new(),
    };
    for ((existing, queued_keys), built) in chunk.placing.into_iter().zip(chunk.built) {
        let (note_thread, first) = built?;
        let thread_id = note_thread.thread_id.clone();
        let path = match existing {
            Some((_, path)) => path,
            None => {
                let path = renderer.claim_path(store, account, &note_thread, first)?;
                placed.new_paths.push((thread_id.clone(), path.clone()));
                path
            }
        };
        if crate::generate::wants_draft_step(config, store, &account.id, &note_thread, now)? {
            placed.draft_threads.push((thread_id, path.clone()));
        }
        placed.notes.push((queued_keys, path, note_thread));
    }
    Ok(placed)
}

/// A rendered chunk's notes, staged, on their way to the note writer, and
/// what to record once they are durably in place.
struct ChunkToWrite {
    notes: NoteWriter,
    new_paths: Vec<(String, PathBuf)>,
    draft_threads: Vec<(String, PathBuf)>,
    /// Each note's messages that leave the render queue once it is written.
    rendered_keys: Vec<(PathBuf, Vec<String>)>,
}

impl ChunkToWrite {
    fn stage(sources: &Path, chunk: RenderedChunk) -> Result<ChunkToWrite> {
        let mut notes = NoteWriter::new(sources);
        let mut rendered_keys = Vec::with_capacity(chunk.notes.len());
        for (queued_keys, path, rendered) in chunk.notes {
            let (text, seen) = rendered?;
            notes
                .stage_over(&path, text, seen)
                .with_context(|| format!("cannot stage note {}", path.display()))?;
            rendered_keys.push((path, queued_keys));
        }
        Ok(ChunkToWrite {
            notes,
            new_paths: chunk.new_paths,
            draft_threads: chunk.draft_threads,
            rendered_keys,
        })
    }
}

/// What one durable step wrote and recorded.
struct StepReport {
    /// Paths of new notes, now in the state store.
    new_paths: Vec<PathBuf>,
    written: Vec<PathBuf>,
}

/// The note writer thread: writes each chunk's temp files as it comes, and
/// every [`chunks_per_durable_step`] chunks (and at the end) makes them
/// durable, puts them in place and records them, on a connection of its own,
/// so that flushing and committing overlap the rendering of the next chunks.
/// Stops at the first error, which it reports.
fn write_notes(
    store: StateStore,
    account: &str,
    sources: &Path,
    chunks: mpsc::Receiver<ChunkToWrite>,
    reports: mpsc::Sender<Result<StepReport>>,
) {
    let chunks_per_step = chunks_per_durable_step();
    // Steps are finished (flushed, put in place, recorded) on a thread of
    // their own, in order, while this one writes the next step's temp
    // files: a step waiting on the disk held up this thread, and behind it
    // the render loop (56-77 ms of a first sync's 0.6 s render step). A
    // hand-over, no queue: one step finishing, one being written.
    let (to_finisher, steps) = mpsc::sync_channel::<DurableStep>(0);
    std::thread::scope(|scope| {
        let finisher_reports = reports.clone();
        let finisher = scope.spawn(move || {
            let mut store = store;
            // The fetch step's log (about 30 MB for a first sync of 10,000
            // messages) is copied into the database here, while the first
            // chunks render and this thread has nothing to do; the last
            // connection's close did it at the end of the sync, a 20 ms
            // tail on one core (12 ms copying, 10 ms deleting the log).
            store.copy_log_into_database();
            for step in steps {
                let result = step.finish(&mut store, account, sources);
                let failed = result.is_err();
                if finisher_reports.send(result).is_err() || failed {
                    return;
                }
            }
        });
        match write_steps(chunks, sources, chunks_per_step, &to_finisher) {
            // The last step, empty or not: its report tells the loop the
            // writer is done.
            Ok(Some(last)) => {
                let _ = to_finisher.send(last);
            }
            // The finisher stopped at an error, which it reported (or
            // panicked, which the join below reports).
            Ok(None) => {}
            Err(err) => {
                let _ = reports.send(Err(err));
            }
        }
        drop(to_finisher);
        if finisher.join().is_err() {
            let _ = reports.send(Err(anyhow::anyhow!(
                "the thread making notes durable panicked"
            )));
        }
    });
}

/// Writes each chunk's temp files as it comes, handing every
/// `chunks_per_step` chunks to the finisher as a step: the last step, not
/// yet handed over, or `None` if the finisher has stopped.
fn write_steps(
    // By value: returning early drops it, which is what tells the render
    // loop, waiting to hand over its next chunk, that the writer has stopped.
    chunks: mpsc::Receiver<ChunkToWrite>,
    sources: &Path,
    chunks_per_step: usize,
    to_finisher: &mpsc::SyncSender<DurableStep>,
) -> Result<Option<DurableStep>> {
    let mut step = DurableStep::default();
    for chunk in chunks {
        step.absorb(chunk, sources)?;
        if step.chunks >= chunks_per_step && to_finisher.send(std::mem::take(&mut step)).is_err() {
            return Ok(None);
        }
    }
    Ok(Some(step))
}

/// The chunks whose notes are to become durable together.
#[derive(Default)]
struct DurableStep {
    chunks: usize,
    notes: Option<notes::PreparedNotes>,
    new_paths: Vec<(String, PathBuf)>,
    draft_threads: Vec<(String, PathBuf)>,
    rendered_keys: Vec<(PathBuf, Vec<String>)>,
}

impl DurableStep {
    /// Writes a chunk's temp files and adds the chunk to this step.
    fn absorb(&mut self, mut chunk: ChunkToWrite, sources: &Path) -> Result<()> {
        let prepared = chunk
            .notes
            .write_temps()
            .with_context(|| format!("cannot write notes under {}", sources.display()))?;
        match &mut self.notes {
            Some(notes) => notes.absorb(prepared),
            None => self.notes = Some(prepared),
        }
        self.chunks += 1;
        self.new_paths.extend(chunk.new_paths);
        self.draft_threads.extend(chunk.draft_threads);
        self.rendered_keys.extend(chunk.rendered_keys);
        Ok(())
    }

    /// Makes the notes durable and puts them in place, then records them:
    /// new paths, draft-step queue, and their messages off the render queue.
    /// A note edited on disk while it was being rendered is left as the user
    /// has it, and its messages stay queued: the next sync renders it again
    /// over the edit.
    fn finish(self, store: &mut StateStore, account: &str, sources: &Path) -> Result<StepReport> {
        let Some(notes) = self.notes else {
            return Ok(StepReport {
                new_paths: Vec::new(),
                written: Vec::new(),
            });
        };
        let report = notes
            .publish()
            .with_context(|| format!("cannot write notes under {}", sources.display()))?;
        let conflicts: HashSet<&PathBuf> = report.conflicts.iter().collect();
        for path in &conflicts {
            tracing::warn!(
                "{account}: {} was changed while it was being updated; left as it is, updated by the next sync",
                sources.join(path).display()
            );
        }
        let kept = |path: &PathBuf| !conflicts.contains(path);
        let keys: Vec<&str> = self
            .rendered_keys
            .iter()
            .filter(|(path, _)| kept(path))
            .flat_map(|(_, keys)| keys.iter().map(String::as_str))
            .collect();
        let new_paths: Vec<(String, PathBuf)> = self
            .new_paths
            .into_iter()
            .filter(|(_, path)| kept(path))
            .collect();
        let draft_threads: Vec<(String, PathBuf)> = self
            .draft_threads
            .into_iter()
            .filter(|(_, path)| kept(path))
            .collect();
        store.commit_rendered(account, &new_paths, &draft_threads, &keys)?;
        Ok(StepReport {
            new_paths: new_paths.into_iter().map(|(_, path)| path).collect(),
            written: report.written,
        })
    }
}

/// Finds and claims note paths; the paths of notes not yet committed to the
/// state store are held here, the rest are looked up there.
struct Renderer {
    /// Paths claimed by chunks whose notes are not committed yet.
    claimed: HashSet<PathBuf>,
}

/// What names a new note: its thread's first message, by (date, key, folder, UID).
type FirstMessage = Option<(i64, NoteDate, u32, String)>;

impl Renderer {
    /// A durable step is recorded: the state store answers for its new
    /// paths now.
    fn recorded(&mut self, report: StepReport, tally: &mut RunTally) {
        for path in &report.new_paths {
            self.claimed.remove(path);
        }
        let new: HashSet<&PathBuf> = report.new_paths.iter().collect();
        tally.threads_new += new.len();
        tally.threads_updated += report.written.iter().filter(|p| !new.contains(p)).count();
    }

    /// The note this thread already has, if any (thread id, path): under its
    /// own id, or the id of a thread it has since absorbed.
    fn existing_note(
        &self,
        store: &StateStore,
        account: &Account,
        thread: &Thread,
    ) -> Result<Option<(String, PathBuf)>> {
        // Member ids and the ids they answer (a missing root named by a
        // reply was the thread id before the thread grew).
        let mut candidates: Vec<&str> =
            std::iter::once(thread.thread_id.as_str())
                .chain(thread.messages.iter().flat_map(|m| {
                    std::iter::once(m.message_id.as_str()).chain(m.parent.as_deref())
                }))
                .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let found: BTreeMap<String, PathBuf> = store
            .notes_of(&account.id, &candidates)?
            .into_iter()
            .collect();
        if let Some(path) = found.get(&thread.thread_id) {
            return Ok(Some((thread.thread_id.clone(), path.clone())));
        }
        let mut owners = found.into_iter();
        let first = owners.next();
        if let Some((other, _)) = owners.next() {
            tracing::warn!(
                "threads {} and {other} have merged; the note of the first is kept up to date",
                first.as_ref().map_or("", |(id, _)| id.as_str())
            );
        }
        Ok(first)
    }

    /// A new note's path, named after the thread's first message, made unique
    /// among the notes of the account and claimed.
    fn claim_path(
        &mut self,
        store: &StateStore,
        account: &Account,
        note_thread: &NoteThread,
        first: FirstMessage,
    ) -> Result<PathBuf> {
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
        let mut path = wanted.clone();
        let mut n = 1;
        while self.claimed.contains(&path) || store.note_path_taken(&account.id, &path)? {
            n += 1;
            path = notes::alternative_path(&wanted, n);
        }
        self.claimed.insert(path.clone());
        Ok(path)
    }
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
        let parsed = ParsedMessage::from_stored_json(&stored.data_json)
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
    let (placed, in_order): (Vec<(i64, Location)>, Vec<ParsedMessage>) = parsed_messages
        .into_iter()
        .map(|(date, _, parsed, location)| ((date, location), parsed))
        .unzip();
    // The thread's own last date stands in for "now", so the same thread
    // always gives the same note (a no-change sync writes nothing).
    let as_of = thread.last_date().unwrap_or(0);
    let analysis = crate::analyze::analyze_thread(&in_order, user_addresses, as_of);
    let messages = in_order
        .into_iter()
        .zip(placed)
        .map(|(parsed, (date, location))| note_message(parsed, location, date))
        .collect();
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

fn note_message(parsed: ParsedMessage, location: Location, date_unix: i64) -> NoteMessage {
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
        folder: location.folder,
        from: parsed.from.as_ref().map(address).unwrap_or_default(),
        to: parsed.to.iter().map(address).collect(),
        cc: parsed.cc.iter().map(address).collect(),
        date,
        message_id: parsed.message_id,
        subject: parsed.subject.unwrap_or_default(),
        body_markdown: match &parsed.signature {
            // Kept short by the parser; contact details belong in the note.
            Some(signature) => format!("{}\n\n-- \n{signature}", parsed.body_new.trim_end()),
            None => parsed.body_new,
        },
        quoted: parsed.quoted.map(|q| match &q.attribution {
            Some(attribution) => format!("{attribution}\n{}", q.text),
            None => q.text,
        }),
        attachments: parsed
            .attachments
            .into_iter()
            .filter(|a| !a.inline)
            .map(|a| notes::Attachment {
                name: a.filename.unwrap_or_else(|| "(unnamed)".into()),
                mime_type: a.mime_type,
                size: a.size as u64,
            })
            .collect(),
        problems: parsed.problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_with_keeps_order_and_uses_every_state() {
        // Uneven costs, so the threads take items in no fixed pattern.
        let items: Vec<u64> = (0..200).map(|i| (i * 7919) % 23).collect();
        let mut states = vec![0usize; 3];
        let doubled = parallel_map_with(&mut states, &items, |taken, item| {
            *taken += 1;
            std::thread::sleep(std::time::Duration::from_micros(*item * 10));
            item * 2
        });
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(states.iter().sum::<usize>(), items.len());
        assert!(states.iter().all(|taken| *taken > 0), "{states:?}");
    }

    /// A thread as read back: root, root missing, and per member its
    /// rowid, parent hash and queued flag.
    type ReadThread = (u64, bool, Vec<(i64, u64, bool)>);

    /// Every thread and member of `index`, read back `size` threads at a time.
    fn read_all(mut index: ThreadIndex, size: usize) -> Vec<ReadThread> {
        let mut all = Vec::new();
        while let Some(chunk) = index.next_chunk(size).unwrap() {
            assert!(chunk.threads.len() <= size);
            for tree in &chunk.threads {
                let (members, queued) = chunk.members_of(tree);
                let members = members
                    .iter()
                    .zip(queued)
                    .map(|(m, &q)| (m.rowid, m.parent, q))
                    .collect();
                all.push((tree.root, tree.root_missing, members));
            }
        }
        all
    }

    #[test]
    fn the_thread_index_reads_back_the_same_whatever_the_chunk_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        // Three threads: a1 <- a2 <- a3; b1 alone; c2 and c3 answering a
        // missing c1. a1 and b1 are rendered already: b1's thread is not
        // touched, a1's is, through a2 and a3.
        let message = |key: &str, parent: Option<&str>, date: i64| StoredMessage {
            key: key.into(),
            in_reply_to: parent.map(String::from),
            references: parent.iter().map(|p| p.to_string()).collect(),
            subject: "s".into(),
            date_unix: date,
            data_json: "{}".into(),
        };
        let batch: Vec<(Location, StoredMessage)> = [
            message("<a1@x>", None, 1),
            message("<a2@x>", Some("<a1@x>"), 2),
            message("<a3@x>", Some("<a2@x>"), 3),
            message("<b1@x>", None, 4),
            message("<c2@x>", Some("<c1@x>"), 5),
            message("<c3@x>", Some("<c1@x>"), 6),
        ]
        .into_iter()
        .enumerate()
        .map(|(n, m)| {
            let place = Location {
                folder: "INBOX".into(),
                uid: n as u32 + 1,
            };
            (place, m)
        })
        .collect();
        let cursor = crate::state::FolderCursor {
            uidvalidity: 1,
            last_uid: 6,
            highest_modseq: None,
        };
        store
            .commit_folder_batch("w", "INBOX", cursor, &batch)
            .unwrap();
        store
            .commit_rendered("w", &[], &[], &["<a1@x>", "<b1@x>"])
            .unwrap();
        let whole = read_all(ThreadIndex::load(&store, "w").unwrap(), 100);
        assert_eq!(whole.len(), 2, "{whole:?}");
        let sizes: Vec<usize> = whole.iter().map(|(_, _, m)| m.len()).collect();
        assert_eq!(sizes, [3, 2], "by first date");
        let missing: Vec<bool> = whole.iter().map(|(_, missing, _)| *missing).collect();
        assert_eq!(missing, [false, true]);
        let queued: Vec<Vec<bool>> = whole
            .iter()
            .map(|(_, _, m)| m.iter().map(|&(_, _, queued)| queued).collect())
            .collect();
        assert_eq!(queued[0].iter().filter(|q| !**q).count(), 1, "a1");
        assert!(queued[1].iter().all(|q| *q));
        let parents = whole[0]
            .2
            .iter()
            .filter(|&&(_, parent, _)| parent != 0)
            .count();
        assert_eq!(parents, 2, "a2 and a3 have a parent");
        let mut rowids: Vec<i64> = whole
            .iter()
            .flat_map(|(_, _, m)| m.iter().map(|&(rowid, _, _)| rowid))
            .collect();
        rowids.sort_unstable();
        rowids.dedup();
        assert_eq!(rowids.len(), 5, "every message of a touched thread, once");
        for size in [1, 2] {
            let index = ThreadIndex::load(&store, "w").unwrap();
            assert_eq!(index.thread_count, 2);
            assert_eq!(read_all(index, size), whole, "chunks of {size}");
        }
    }

    /// A chunk of one new note at `name`, its message `key` to dequeue.
    fn chunk_of_one_note(sources: &Path, name: &str, key: &str) -> ChunkToWrite {
        let path = PathBuf::from(name);
        ChunkToWrite::stage(
            sources,
            RenderedChunk {
                notes: vec![(
                    vec![key.to_string()],
                    path.clone(),
                    Ok((format!("note {name}\n"), notes::Seen::of(None))),
                )],
                new_paths: vec![(format!("<{key}>"), path)],
                draft_threads: Vec::new(),
            },
        )
        .unwrap()
    }

    #[test]
    fn a_failed_durable_step_stops_the_writer_and_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let sources = dir.path().join("Sources");
        std::fs::create_dir_all(&sources).unwrap();
        let store = StateStore::open(&dir.path().join("state")).unwrap();
        // The finisher's commit fails: its table is gone.
        rusqlite::Connection::open(store.path())
            .unwrap()
            .execute_batch("DROP TABLE notes")
            .unwrap();
        let (to_writer, chunks) = mpsc::sync_channel::<ChunkToWrite>(0);
        let (reports_to_loop, reports) = mpsc::channel::<Result<StepReport>>();
        let writer = {
            let sources = sources.clone();
            std::thread::spawn(move || {
                write_notes(store, "acct", &sources, chunks, reports_to_loop);
            })
        };
        // More chunks than two durable steps: the first step fails, and the
        // writer must stop handing steps to a finisher that has stopped.
        let steps = chunks_per_durable_step() * 3;
        let mut sent = 0;
        for n in 0..steps {
            let chunk = chunk_of_one_note(&sources, &format!("n{n}.md"), &format!("k{n}"));
            if to_writer.send(chunk).is_err() {
                break;
            }
            sent += 1;
        }
        drop(to_writer);
        writer
            .join()
            .expect("the writer returns, it does not panic");
        let reports: Vec<Result<StepReport>> = reports.try_iter().collect();
        assert_eq!(reports.len(), 1, "one report: the failed step's");
        let err = reports.into_iter().next().unwrap().err().expect("an error");
        assert!(format!("{err:#}").contains("notes"), "{err:#}");
        assert!(
            sent < steps,
            "the writer stopped taking chunks ({sent} taken)"
        );
    }

    #[test]
    fn parallel_map_with_more_states_than_items() {
        let mut states = vec![(); 8];
        assert_eq!(
            parallel_map_with(&mut states, &[1, 2], |(), i| i + 1),
            [2, 3]
        );
        assert!(parallel_map_with(&mut states, &[] as &[i32], |(), i| *i).is_empty());
        let mut none: Vec<()> = Vec::new();
        assert!(parallel_map_with(&mut none, &[] as &[i32], |(), i| *i).is_empty());
        let mut one = vec![()];
        assert_eq!(
            parallel_map_with(&mut one, &[1, 2, 3], |(), i| i * 3),
            [3, 6, 9]
        );
    }
}
