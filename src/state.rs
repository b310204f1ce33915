//! The sync state store: one SQLite database under `state_dir`.
//!
//! Like mbsync's state files plus journal, it is what lets an interrupted sync
//! resume exactly. The rules that make this work: how far a folder is fetched
//! (`folders.fetched_uid`) moves in the same transaction that records the
//! messages *and* queues them for rendering (`render_queue`); a message leaves
//! that queue only in the transaction that records its thread's note, after the
//! note is durably on disk; and the cursor proper (`folders.last_uid`) moves up
//! to what is fetched only when the queue is empty, so it never covers a
//! message whose note is not written (SPEC §Reliability). A run killed
//! anywhere finds either messages still to fetch or messages still to render,
//! and redoes exactly that, writing the same bytes.
//!
//! The database runs in WAL mode with `synchronous = FULL`, so a commit that
//! returned is on disk.
//!
//! A message's parsed data lives beside the database, in `messages.pack`: an
//! append-only file of LZ4-compressed JSON records that the `messages` rows
//! point into (offset, length). Kept in rows, every byte of it went through
//! the write-ahead log, was copied into the database at a checkpoint and
//! filled the pages that threading scans for headers: a first sync wrote
//! and read its data about four times over. A batch's records are appended
//! and synced while its transaction holds the write lock, before it commits,
//! so a committed row never points at bytes that are not on disk; what a
//! killed run appended without committing is never pointed at, and the next
//! append goes after it.

use std::cell::OnceCell;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Bumped whenever the schema changes incompatibly.
/// 2: `messages.data` may hold LZ4-compressed JSON (a BLOB) besides plain
/// JSON (TEXT); a build that knows only 1 could not read it.
/// 3: `messages.data` may leave out what quote collapsing derives from the
/// body (`body_new`, `quoted`, `signature`); a build that knows only 2 would
/// render such messages without their text.
/// 4: a message's data may be in `messages.pack` (`pack_offset`,
/// `pack_length`) instead of `messages.data`.
const SCHEMA_VERSION: i64 = 4;

/// The file beside the database that holds messages' parsed data.
const PACK_FILE: &str = "messages.pack";

/// Where a folder's sync stands, as the fetch step reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderCursor {
    pub uidvalidity: u32,
    /// The highest UID whose message is recorded (0: none yet): where the
    /// next fetch starts. The cursor proper trails it until the notes are
    /// written ([`StateStore::notes_cursor`]).
    pub last_uid: u32,
    /// CONDSTORE's HIGHESTMODSEQ at the last sync, when the server has it.
    pub highest_modseq: Option<u64>,
}

/// A message as the state store keeps it: threading headers for JWZ, and the
/// parsed message (opaque JSON) so a thread's note can be re-rendered when a
/// new message joins it without fetching the old ones again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The Message-ID, or a stable synthesized key for messages without one.
    pub key: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub subject: String,
    pub date_unix: i64,
    pub data_json: String,
}

/// One stored message's threading headers, borrowed from its row.
#[derive(Debug, Clone, Copy)]
pub struct ThreadRef<'a> {
    pub rowid: i64,
    pub key: &'a str,
    pub in_reply_to: Option<&'a str>,
    pub references: &'a [String],
    pub subject: &'a str,
    pub date_unix: i64,
    /// On the render queue: its thread's note is to be (re)rendered.
    pub queued: bool,
}

/// One place a message lives: a folder and UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub folder: String,
    pub uid: u32,
}

/// The outcome of one sync run, for `bridge status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    pub account: String,
    pub started_unix: i64,
    pub finished_unix: i64,
    pub ok: bool,
    pub summary: String,
}

/// The copies of draft notes the bridge appended (`bridge push`, `send`).
/// `CREATE ... IF NOT EXISTS`, so it joins schema 1 without a migration.
const PUSHED_DRAFTS_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS pushed_drafts (
        account TEXT NOT NULL,
        message_id TEXT NOT NULL,
        draft_path TEXT NOT NULL,
        folder TEXT NOT NULL,
        uidvalidity INTEGER,
        uid INTEGER,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        date_unix INTEGER NOT NULL,
        pushed_unix INTEGER NOT NULL,
        in_reply_to TEXT,
        state TEXT NOT NULL,
        PRIMARY KEY (account, message_id)
    );
    CREATE INDEX IF NOT EXISTS pushed_drafts_by_draft ON pushed_drafts (account, draft_path);";

/// The draft notes the generator wrote, one per thread, the threads a sync
/// touched whose drafts are still to be looked at, and the messages whose
/// thread's note is still to be rendered. Like `pushed_drafts`, they join
/// schema 1 with `CREATE ... IF NOT EXISTS`.
const DRAFTS_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS drafts (
        account TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        path TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        generated_for TEXT NOT NULL,
        created_unix INTEGER NOT NULL,
        PRIMARY KEY (account, thread_id)
    );
    DROP INDEX IF EXISTS locations_by_key;
    CREATE INDEX IF NOT EXISTS locations_by_key_place ON locations (account, key, folder, uid);
    CREATE INDEX IF NOT EXISTS notes_by_path ON notes (account, path);
    CREATE TABLE IF NOT EXISTS render_queue (
        account TEXT NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (account, key)
    );
    CREATE TABLE IF NOT EXISTS draft_queue (
        account TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        note_path TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, thread_id)
    );";

/// The draft note the generator wrote for a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftRecord {
    pub account: String,
    pub thread_id: String,
    /// Relative to the vault.
    pub path: PathBuf,
    /// The hash of the note as written, over what the user could change (see
    /// `generate::content_hash`): a file that no longer matches was edited.
    pub content_hash: String,
    /// The key of the thread's newest message when the draft was written: a thread
    /// whose newest message differs has news the draft does not know.
    pub generated_for: String,
    pub created_unix: i64,
}

/// A thread a sync touched, waiting for the draft step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedThread {
    pub thread_id: String,
    /// Relative to the sources folder.
    pub note_path: PathBuf,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// What became of a message the bridge appended.
///
/// The bridge may delete only its own unchanged copies, so it records each
/// one *before* appending it (`Appending`: the APPEND may or may not have
/// happened if the run dies now) and learns its UID after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// About to be appended; the UID is not known yet.
    Appending,
    /// In the folder at `uid`, as appended, as far as the bridge knows.
    Present,
    /// Removed by the bridge (or flagged `\Deleted` where UID EXPUNGE is missing).
    Removed,
    /// Changed, moved or deleted by the user; the bridge leaves it alone.
    Abandoned,
    /// The draft was sent (by `bridge send`, or from a mail client); for
    /// the copy filed in Sent, that copy.
    Sent,
}

impl CopyState {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Appending => "appending",
            CopyState::Present => "present",
            CopyState::Removed => "removed",
            CopyState::Abandoned => "abandoned",
            CopyState::Sent => "sent",
        }
    }

    fn parse(text: &str) -> CopyState {
        match text {
            "appending" => CopyState::Appending,
            "present" => CopyState::Present,
            "removed" => CopyState::Removed,
            "sent" => CopyState::Sent,
            _ => CopyState::Abandoned,
        }
    }

    /// Believed to be (or maybe be) in the mailbox as the bridge left it.
    pub fn is_live(self) -> bool {
        matches!(self, CopyState::Appending | CopyState::Present)
    }
}

/// One message the bridge appended for a draft note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedCopy {
    pub account: String,
    /// `<id>`: unique per copy (every push composes a fresh one).
    pub message_id: String,
    /// The draft note it was composed from (absolute path).
    pub draft_path: String,
    pub folder: String,
    pub uidvalidity: Option<u32>,
    pub uid: Option<u32>,
    /// RFC822.SIZE and SHA-256 (hex) of the appended bytes: a copy whose
    /// fetched bytes still match is one the user has not touched.
    pub size: u64,
    pub sha256: String,
    /// The message's `Date`, so the draft can be composed again exactly.
    pub date_unix: i64,
    pub pushed_unix: i64,
    /// The message the draft replies to, for reconciling sends made from
    /// a mail client.
    pub in_reply_to: Option<String>,
    pub state: CopyState,
}

pub struct StateStore {
    conn: Connection,
    path: PathBuf,
    /// `messages.pack`, opened on first read.
    pack_reader: PackReader,
    /// `messages.pack`, opened on first append.
    pack_writer: OnceCell<File>,
}

impl StateStore {
    /// Opens (creating if needed) `state_dir/state.sqlite3`.
    pub fn open(state_dir: &Path) -> Result<StateStore> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create state dir {}", state_dir.display()))?;
        let path = state_dir.join("state.sqlite3");
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open state store {}", path.display()))?;
        configure(&conn)
            .with_context(|| format!("cannot configure state store {}", path.display()))?;
        // Lookups by key lists prepare one statement per list length
        // (`messages_by_rowid`, `notes_of`): keep them all.
        conn.set_prepared_statement_cache_capacity(256);
        let mut store = StateStore {
            conn,
            path,
            pack_reader: PackReader::default(),
            pack_writer: OnceCell::new(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// A second connection for committing fetched batches, without an fsync
    /// per commit (`synchronous = NORMAL`; the WAL is still synced at each
    /// checkpoint, and SQLite stays consistent on power loss). What a power
    /// loss can take back is only the last fetched batches, and those the next
    /// run fetches again: the render step's commit (on a `FULL` connection)
    /// syncs the whole WAL, so a batch whose notes were written is durable.
    pub fn batch_writer(&self) -> Result<StateStore> {
        let store = self.another_connection()?;
        // A bigger page cache and a checkpoint only every 32 MiB of log:
        // each batch inserts hundreds of random keys into the key indexes,
        // and with the default 512 KiB cache and a checkpoint every 4 MiB
        // those index pages were read back from the log and copied into the
        // database again and again. Replaying a 10,000-message first sync's
        // commits took 12-22% less CPU and about half the fsync waits.
        store
            .conn
            .execute_batch(
                "PRAGMA synchronous = NORMAL;
                 PRAGMA cache_size = -2048;
                 PRAGMA wal_autocheckpoint = 8192;",
            )
            .with_context(|| format!("cannot configure state store {}", store.path.display()))?;
        Ok(store)
    }

    /// Copies what the write-ahead log holds into the database without
    /// waiting on any reader or writer (a passive checkpoint), and lets the
    /// log shrink to 4 MiB when it starts over. Best effort: on failure the
    /// last connection's close copies it, as it would anyway.
    pub fn copy_log_into_database(&self) {
        let copied = self.conn.execute_batch(
            "PRAGMA journal_size_limit = 4194304;
             PRAGMA wal_checkpoint(PASSIVE);",
        );
        if let Err(err) = copied {
            tracing::debug!("checkpoint of {}: {err}", self.path.display());
        }
    }

    /// Another connection to the same store, for a thread of its own.
    pub fn another_connection(&self) -> Result<StateStore> {
        let state_dir = self
            .path
            .parent()
            .context("state store path has no directory")?;
        StateStore::open(state_dir)
    }

    /// Runs `read` with each of `stores` in a read transaction: one snapshot
    /// per connection, and one round of the write-ahead log's locks instead
    /// of one per query (thousands of `fcntl` calls when rendering a first
    /// sync's notes). All begin or none does, and all end whatever `read`
    /// did: a connection left in a read transaction would refuse the writes
    /// of a retried sync.
    pub fn reading_each<T>(
        stores: &mut [&mut StateStore],
        read: impl FnOnce(&mut [&mut StateStore]) -> T,
    ) -> Result<T> {
        if let Err(err) = stores.iter().try_for_each(|store| store.begin_read()) {
            for store in stores.iter() {
                let _ = store.end_read();
            }
            return Err(err);
        }
        let result = read(stores);
        let ended: Vec<Result<()>> = stores.iter().map(|store| store.end_read()).collect();
        ended.into_iter().collect::<Result<()>>()?;
        Ok(result)
    }

    fn begin_read(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN")?;
        Ok(())
    }

    /// Ends the read transaction `begin_read` started, if one is open.
    fn end_read(&self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the store or brings it to [`SCHEMA_VERSION`]. Two processes
    /// may open a new or older store at once (`bridge status` polled while
    /// `bridge watch` starts its first sync): the changes are made in one
    /// write transaction, which the other waits for and then finds nothing
    /// left to do. Checking first keeps the common open, of a current store,
    /// from taking the write lock at all.
    fn migrate(&mut self) -> Result<()> {
        if self.schema_is_current()? {
            return Ok(());
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match self.create_or_upgrade() {
            Ok(()) => Ok(self.conn.execute_batch("COMMIT")?),
            Err(err) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(err)
            }
        }
    }

    fn schema_version(&self) -> Result<i64> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            bail!(
                "state store {} was written by a newer mailbridge (schema {version}, this build knows {SCHEMA_VERSION})",
                self.path.display()
            );
        }
        Ok(version)
    }

    /// The store is at this schema. [`Self::create_or_upgrade`] sets the
    /// version in the transaction that makes every change, so a current
    /// version means every table, index and column is there.
    fn schema_is_current(&self) -> Result<bool> {
        Ok(self.schema_version()? == SCHEMA_VERSION)
    }

    /// The schema's changes, inside [`Self::migrate`]'s transaction; each
    /// step does nothing where it was done before. Schemas 2 and 3 only
    /// widened what `messages.data` may hold; 4 added the pack columns.
    fn create_or_upgrade(&self) -> Result<()> {
        if self.schema_version()? == 0 {
            self.conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS folders (
                 account TEXT NOT NULL,
                 folder TEXT NOT NULL,
                 uidvalidity INTEGER NOT NULL,
                 last_uid INTEGER NOT NULL,
                 highest_modseq INTEGER,
                 PRIMARY KEY (account, folder)
             );
             CREATE TABLE IF NOT EXISTS messages (
                 account TEXT NOT NULL,
                 key TEXT NOT NULL,
                 in_reply_to TEXT,
                 refs TEXT NOT NULL,
                 subject TEXT NOT NULL,
                 date_unix INTEGER NOT NULL,
                 data TEXT NOT NULL,
                 PRIMARY KEY (account, key)
             );
             CREATE TABLE IF NOT EXISTS locations (
                 account TEXT NOT NULL,
                 folder TEXT NOT NULL,
                 uid INTEGER NOT NULL,
                 key TEXT NOT NULL,
                 PRIMARY KEY (account, folder, uid),
                 FOREIGN KEY (account, key) REFERENCES messages (account, key)
             );
             CREATE TABLE IF NOT EXISTS notes (
                 account TEXT NOT NULL,
                 thread_id TEXT NOT NULL,
                 path TEXT NOT NULL,
                 PRIMARY KEY (account, thread_id)
             );
             CREATE TABLE IF NOT EXISTS sync_runs (
                 account TEXT NOT NULL,
                 started_unix INTEGER NOT NULL,
                 finished_unix INTEGER NOT NULL,
                 ok INTEGER NOT NULL,
                 summary TEXT NOT NULL
             );",
            )?;
        }
        // Added to schema 1 after stores were created with it.
        self.conn.execute_batch(PUSHED_DRAFTS_SCHEMA)?;
        self.conn.execute_batch(DRAFTS_SCHEMA)?;
        // `folders.fetched_uid`, the fetch step's journal: how far a folder
        // is fetched into the store, while `last_uid`, the cursor, moves only
        // once the notes of everything fetched are written (SPEC
        // §Reliability). Added to schema 1 in place; an older store starts
        // with the two equal.
        self.add_columns_once(
            "folders",
            "fetched_uid",
            "ALTER TABLE folders ADD COLUMN fetched_uid INTEGER NOT NULL DEFAULT 0;
             UPDATE folders SET fetched_uid = last_uid;",
        )?;
        // Schema 4: where in `messages.pack` a message's data is; both NULL
        // for data kept in the row, as schemas 1-3 stored it.
        self.add_columns_once(
            "messages",
            "pack_offset",
            "ALTER TABLE messages ADD COLUMN pack_offset INTEGER;
             ALTER TABLE messages ADD COLUMN pack_length INTEGER;",
        )?;
        self.conn
            .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
        Ok(())
    }

    /// `sql`, which adds `column` to `table`, unless the column is there.
    fn add_columns_once(&self, table: &str, column: &str, sql: &str) -> Result<()> {
        let has: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            params![table, column],
            |row| row.get(0),
        )?;
        if !has {
            self.conn.execute_batch(sql)?;
        }
        Ok(())
    }

    pub fn folder_cursor(&self, account: &str, folder: &str) -> Result<Option<FolderCursor>> {
        Ok(self
            .conn
            .query_row(
                "SELECT uidvalidity, MAX(last_uid, fetched_uid), highest_modseq FROM folders WHERE account = ?1 AND folder = ?2",
                params![account, folder],
                |row| {
                    Ok(FolderCursor {
                        uidvalidity: row.get(0)?,
                        last_uid: row.get(1)?,
                        highest_modseq: row.get::<_, Option<i64>>(2)?.map(|m| m as u64),
                    })
                },
            )
            .optional()?)
    }

    /// Forgets a folder whose UIDVALIDITY changed: its UIDs mean nothing now.
    /// The messages stay (other folders may hold them, and their notes must
    /// keep their paths); re-reading the folder re-links them by key.
    pub fn reset_folder(&mut self, account: &str, folder: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM locations WHERE account = ?1 AND folder = ?2",
            params![account, folder],
        )?;
        tx.execute(
            "DELETE FROM folders WHERE account = ?1 AND folder = ?2",
            params![account, folder],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records messages fetched from `folder`, queues them for rendering and
    /// moves the fetch journal, atomically. Returns how many of the messages were new
    /// to the store (a copy in a second folder, or a batch redone after a
    /// reconnect, is not).
    pub fn commit_folder_batch(
        &mut self,
        account: &str,
        folder: &str,
        cursor: FolderCursor,
        messages: &[(Location, StoredMessage)],
    ) -> Result<usize> {
        // Taking the write lock at BEGIN makes the pack's end stable until
        // COMMIT: no other connection, here or in another process, appends.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let end = match std::fs::metadata(pack_path(&self.path)) {
            Ok(meta) => meta.len(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
            Err(err) => {
                return Err(err).with_context(|| {
                    format!(
                        "cannot read the size of {}",
                        pack_path(&self.path).display()
                    )
                })
            }
        };
        let mut appended: Vec<u8> = Vec::new();
        let mut new_messages = 0;
        {
            let mut insert_message = tx.prepare_cached(
                "INSERT INTO messages (account, key, in_reply_to, refs, subject, date_unix, data, pack_offset, pack_length)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7, ?8)
                 ON CONFLICT (account, key) DO NOTHING",
            )?;
            let mut insert_location = tx.prepare_cached(
                "INSERT OR REPLACE INTO locations (account, folder, uid, key) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut queue = tx.prepare_cached(
                "INSERT OR IGNORE INTO render_queue (account, key) VALUES (?1, ?2)",
            )?;
            for (location, message) in messages {
                let data = compress_data(&message.data_json);
                let inserted = insert_message.execute(params![
                    account,
                    message.key,
                    message.in_reply_to,
                    serde_json::to_string(&message.references)?,
                    message.subject,
                    message.date_unix,
                    (end + appended.len() as u64) as i64,
                    data.len() as i64,
                ])?;
                // A message the store has (another folder's copy) keeps its
                // data: only new rows' records are appended.
                if inserted > 0 {
                    appended.extend_from_slice(&data);
                    new_messages += inserted;
                }
                insert_location.execute(params![
                    account,
                    location.folder,
                    location.uid,
                    message.key
                ])?;
                queue.execute(params![account, message.key])?;
            }
        }
        // The journal moves here; the cursor (`last_uid`) only once these
        // messages' notes are written ([`StateStore::settle_cursors`]).
        tx.execute(
            "INSERT INTO folders (account, folder, uidvalidity, last_uid, fetched_uid, highest_modseq)
             VALUES (?1, ?2, ?3, 0, ?4, ?5)
             ON CONFLICT (account, folder) DO UPDATE SET
                 uidvalidity = excluded.uidvalidity,
                 fetched_uid = excluded.fetched_uid,
                 highest_modseq = excluded.highest_modseq",
            params![
                account,
                folder,
                cursor.uidvalidity,
                cursor.last_uid,
                cursor.highest_modseq.map(|m| m as i64)
            ],
        )?;
        if !appended.is_empty() {
            let pack = open_pack(&self.pack_writer, &self.path, true)?;
            write_all_at(pack, &appended, end)
                .and_then(|()| pack.sync_data())
                .with_context(|| format!("cannot append to {}", pack_path(&self.path).display()))?;
        }
        tx.commit()?;
        Ok(new_messages)
    }

    /// The messages whose thread's note is still to be (re)rendered.
    pub fn render_queue(&self, account: &str) -> Result<std::collections::HashSet<String>> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT key FROM render_queue WHERE account = ?1")?;
        let rows = statement.query_map(params![account], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records rendered notes, atomically: the paths of new notes, their threads
    /// queued for the draft step, and their messages taken off the render queue.
    /// Call only after the notes are durably written.
    pub fn commit_rendered(
        &mut self,
        account: &str,
        note_paths: &[(String, PathBuf)],
        draft_threads: &[(String, PathBuf)],
        rendered_keys: &[&str],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert_note = tx.prepare_cached(
                "INSERT INTO notes (account, thread_id, path) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account, thread_id) DO UPDATE SET path = excluded.path",
            )?;
            for (thread_id, path) in note_paths {
                insert_note.execute(params![account, thread_id, path_to_text(path)?])?;
            }
            let mut dequeue =
                tx.prepare_cached("DELETE FROM render_queue WHERE account = ?1 AND key = ?2")?;
            for key in rendered_keys {
                dequeue.execute(params![account, key])?;
            }
        }
        queue_threads(&tx, account, draft_threads)?;
        settle_cursors(&tx, account)?;
        tx.commit()?;
        Ok(())
    }

    /// Moves every folder's cursor up to what is fetched, when nothing fetched
    /// waits for its note any more (the render step calls this when there was
    /// nothing to render; [`Self::commit_rendered`] does it itself).
    pub fn settle_cursors(&self, account: &str) -> Result<()> {
        settle_cursors(&self.conn, account)
    }

    /// The cursor proper: the highest UID of `folder` whose note is written
    /// (what `folder_cursor` reports is how far it is fetched).
    pub fn notes_cursor(&self, account: &str, folder: &str) -> Result<Option<u32>> {
        Ok(self
            .conn
            .query_row(
                "SELECT last_uid FROM folders WHERE account = ?1 AND folder = ?2",
                params![account, folder],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// True when some message's thread is still to be rendered: a no-change
    /// sync asks this and reads nothing else.
    pub fn render_pending(&self, account: &str) -> Result<bool> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM render_queue WHERE account = ?1)")?;
        Ok(statement.query_row(params![account], |row| row.get(0))?)
    }

    /// How many messages the account has: what the thread index sizes itself by.
    pub fn message_count(&self, account: &str) -> Result<usize> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM messages WHERE account = ?1")?;
        Ok(statement.query_row(params![account], |row| row.get::<_, i64>(0))? as usize)
    }

    /// Every message's threading headers, in one streaming pass (the caller
    /// keeps what it needs, not the rows): rowid, key, In-Reply-To,
    /// References, subject, date, and whether it is on the render queue.
    /// In rowid order: the unary `+` keeps SQLite from walking the
    /// `(account, key)` index and looking each row up from it, which made
    /// threading's read of 10,000 messages take a third longer (the
    /// threading core does not depend on the order of its input).
    pub fn for_each_thread_ref(
        &self,
        account: &str,
        mut each: impl FnMut(ThreadRef<'_>),
    ) -> Result<()> {
        let mut statement = self.conn.prepare_cached(
            "SELECT m.rowid, m.key, m.in_reply_to, m.refs, m.subject, m.date_unix,
                    EXISTS (SELECT 1 FROM render_queue q WHERE q.account = m.account AND q.key = m.key)
             FROM messages m WHERE +m.account = ?1",
        )?;
        let mut rows = statement.query(params![account])?;
        while let Some(row) = rows.next()? {
            let refs: String = row.get(3)?;
            let references: Vec<String> = serde_json::from_str(&refs).unwrap_or_default();
            each(ThreadRef {
                rowid: row.get(0)?,
                key: row.get_ref(1)?.as_str()?,
                in_reply_to: row.get_ref(2)?.as_str_or_null()?,
                references: &references,
                subject: row.get_ref(4)?.as_str()?,
                date_unix: row.get(5)?,
                queued: row.get(6)?,
            });
        }
        Ok(())
    }

    /// Messages by rowid, with their parsed data and first location (by
    /// folder and UID): what rendering a thread's note needs.
    pub fn messages_by_rowid(
        &self,
        account: &str,
        rowids: &[i64],
    ) -> Result<Vec<(i64, StoredMessage, Option<Location>)>> {
        // The unary `+` keeps SQLite on rowid lookups, not a scan of the account.
        self.query_in_list(
            "SELECT m.key, m.in_reply_to, m.refs, m.subject, m.date_unix, m.data, m.pack_offset, m.pack_length,
                    l.folder, l.uid, m.rowid
             FROM messages m LEFT JOIN locations l ON l.rowid = (
                 SELECT rowid FROM locations WHERE account = m.account AND key = m.key
                 ORDER BY folder, uid LIMIT 1)
             WHERE +m.account = ? AND m.rowid IN",
            account,
            rowids,
            |row| {
                let message = row_to_message(row, &self.pack_reader, &self.path)?;
                let folder: Option<String> = row.get(8)?;
                let uid: Option<u32> = row.get(9)?;
                let location = folder
                    .zip(uid)
                    .map(|(folder, uid)| Location { folder, uid });
                Ok((row.get(10)?, message, location))
            },
        )
    }

    /// The notes of any of these thread ids (thread id → path).
    pub fn notes_of(&self, account: &str, thread_ids: &[&str]) -> Result<Vec<(String, PathBuf)>> {
        self.query_in_list(
            "SELECT thread_id, path FROM notes WHERE account = ? AND thread_id IN",
            account,
            thread_ids,
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    PathBuf::from(row.get::<_, String>(1)?),
                ))
            },
        )
    }

    /// `sql` (ending in `IN`, its one other parameter the account) run for
    /// `items` 64 at a time, with the list appended. One statement per list
    /// length, cached: the lists come in few lengths.
    fn query_in_list<V: rusqlite::ToSql, R>(
        &self,
        sql: &str,
        account: &str,
        items: &[V],
        mut map_row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<R>,
    ) -> Result<Vec<R>> {
        let mut found = Vec::with_capacity(items.len());
        for chunk in items.chunks(64) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let mut statement = self
                .conn
                .prepare_cached(&format!("{sql} ({placeholders})"))?;
            let params = std::iter::once(&account as &dyn rusqlite::ToSql)
                .chain(chunk.iter().map(|item| item as &dyn rusqlite::ToSql));
            let mut rows = statement.query(rusqlite::params_from_iter(params))?;
            while let Some(row) = rows.next()? {
                found.push(map_row(row)?);
            }
        }
        Ok(found)
    }

    /// True when some thread's note already has this path.
    pub fn note_path_taken(&self, account: &str, path: &Path) -> Result<bool> {
        let mut statement = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM notes WHERE account = ?1 AND path = ?2)",
        )?;
        Ok(statement.query_row(params![account, path_to_text(path)?], |row| row.get(0))?)
    }

    /// Every message of the account, without its parsed body: the input of threading.
    pub fn messages(&self, account: &str) -> Result<Vec<StoredMessage>> {
        self.query_messages(
            "SELECT key, in_reply_to, refs, subject, date_unix, '', NULL, NULL FROM messages WHERE account = ?1",
            params![account],
        )
    }

    /// Every thread's note path (thread id → path relative to the sources folder).
    pub fn note_paths(&self, account: &str) -> Result<std::collections::HashMap<String, PathBuf>> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT thread_id, path FROM notes WHERE account = ?1")?;
        let rows = statement.query_map(params![account], |row| {
            Ok((
                row.get::<_, String>(0)?,
                PathBuf::from(row.get::<_, String>(1)?),
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The given messages with their parsed bodies.
    pub fn messages_with_data(&self, account: &str, keys: &[&str]) -> Result<Vec<StoredMessage>> {
        let mut found = Vec::with_capacity(keys.len());
        let mut statement = self.conn.prepare_cached(
            "SELECT key, in_reply_to, refs, subject, date_unix, data, pack_offset, pack_length
             FROM messages WHERE account = ?1 AND key = ?2",
        )?;
        for key in keys {
            if let Some(message) = statement
                .query_row(params![account, key], |row| {
                    row_to_message(row, &self.pack_reader, &self.path)
                })
                .optional()?
            {
                found.push(message);
            }
        }
        Ok(found)
    }

    fn query_messages(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredMessage>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let rows = statement.query_map(params, |row| {
            row_to_message(row, &self.pack_reader, &self.path)
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Where a message is, folder and UID; empty when only other folders had it.
    pub fn locations(&self, account: &str, key: &str) -> Result<Vec<Location>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT folder, uid FROM locations WHERE account = ?1 AND key = ?2 ORDER BY folder, uid",
        )?;
        let rows = statement.query_map(params![account, key], |row| {
            Ok(Location {
                folder: row.get(0)?,
                uid: row.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The note path chosen for a thread when its note was first written.
    pub fn note_path(&self, account: &str, thread_id: &str) -> Result<Option<PathBuf>> {
        Ok(self
            .conn
            .query_row(
                "SELECT path FROM notes WHERE account = ?1 AND thread_id = ?2",
                params![account, thread_id],
                |row| row.get::<_, String>(0),
            )
            .optional()?
            .map(PathBuf::from))
    }

    pub fn record_run(&self, run: &SyncRun) -> Result<()> {
        self.conn.execute(
            "INSERT INTO sync_runs (account, started_unix, finished_unix, ok, summary) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run.account, run.started_unix, run.finished_unix, run.ok, run.summary],
        )?;
        Ok(())
    }

    pub fn last_run(&self, account: &str) -> Result<Option<SyncRun>> {
        Ok(self
            .conn
            .query_row(
                "SELECT account, started_unix, finished_unix, ok, summary FROM sync_runs
                 WHERE account = ?1 ORDER BY finished_unix DESC, rowid DESC LIMIT 1",
                params![account],
                |row| {
                    Ok(SyncRun {
                        account: row.get(0)?,
                        started_unix: row.get(1)?,
                        finished_unix: row.get(2)?,
                        ok: row.get(3)?,
                        summary: row.get(4)?,
                    })
                },
            )
            .optional()?)
    }
}

// Pushed drafts (`bridge push` / `send`).
impl StateStore {
    /// Inserts or replaces the record of one copy.
    pub fn record_pushed_copy(&self, copy: &PushedCopy) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO pushed_drafts (account, message_id, draft_path, folder,
                 uidvalidity, uid, size, sha256, date_unix, pushed_unix, in_reply_to, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                copy.account,
                copy.message_id,
                copy.draft_path,
                copy.folder,
                copy.uidvalidity,
                copy.uid,
                copy.size as i64,
                copy.sha256,
                copy.date_unix,
                copy.pushed_unix,
                copy.in_reply_to,
                copy.state.as_str(),
            ],
        )?;
        Ok(())
    }

    /// Where an appended copy landed; it is `Present` from now on.
    pub fn set_copy_location(
        &self,
        account: &str,
        message_id: &str,
        uidvalidity: u32,
        uid: u32,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE pushed_drafts SET uidvalidity = ?3, uid = ?4, state = 'present'
             WHERE account = ?1 AND message_id = ?2",
            params![account, message_id, uidvalidity, uid],
        )?;
        Ok(())
    }

    pub fn set_copy_state(&self, account: &str, message_id: &str, state: CopyState) -> Result<()> {
        self.conn.execute(
            "UPDATE pushed_drafts SET state = ?3 WHERE account = ?1 AND message_id = ?2",
            params![account, message_id, state.as_str()],
        )?;
        Ok(())
    }

    pub fn pushed_copy(&self, account: &str, message_id: &str) -> Result<Option<PushedCopy>> {
        Ok(self
            .conn
            .query_row(
                &format!("{PUSHED_COLUMNS} WHERE account = ?1 AND message_id = ?2"),
                params![account, message_id],
                row_to_copy,
            )
            .optional()?)
    }

    /// Every copy appended for the draft note at `draft_path`, oldest first.
    pub fn pushed_copies_for_draft(
        &self,
        account: &str,
        draft_path: &str,
    ) -> Result<Vec<PushedCopy>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "{PUSHED_COLUMNS} WHERE account = ?1 AND draft_path = ?2 ORDER BY pushed_unix, rowid"
        ))?;
        let rows = statement.query_map(params![account, draft_path], row_to_copy)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The account's copies that may still be in Drafts as appended.
    pub fn live_pushed_copies(&self, account: &str) -> Result<Vec<PushedCopy>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "{PUSHED_COLUMNS} WHERE account = ?1 AND state IN ('appending', 'present')
             ORDER BY pushed_unix, rowid"
        ))?;
        let rows = statement.query_map(params![account], row_to_copy)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// True when a synced message with this key lives in one of `folders`.
    pub fn message_in_folders(&self, account: &str, key: &str, folders: &[&str]) -> Result<bool> {
        Ok(self
            .locations(account, key)?
            .iter()
            .any(|l| folders.contains(&l.folder.as_str())))
    }

    /// Synced messages in `folders` that reply to `parent` (their
    /// In-Reply-To), with their parsed data.
    pub fn replies_in_folders(
        &self,
        account: &str,
        parent: &str,
        folders: &[&str],
    ) -> Result<Vec<StoredMessage>> {
        let keys: Vec<String> = {
            let mut statement = self.conn.prepare_cached(
                "SELECT key FROM messages WHERE account = ?1 AND in_reply_to = ?2",
            )?;
            let rows = statement.query_map(params![account, parent], |row| row.get(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()?
        };
        let mut found = Vec::new();
        for key in keys {
            if self.message_in_folders(account, &key, folders)? {
                found.extend(self.messages_with_data(account, &[&key])?);
            }
        }
        Ok(found)
    }
}

// Generated drafts (`generate`).
impl StateStore {
    pub fn queued_threads(&self, account: &str) -> Result<Vec<QueuedThread>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT thread_id, note_path, attempts FROM draft_queue WHERE account = ?1 ORDER BY rowid",
        )?;
        let rows = statement.query_map(params![account], |row| {
            Ok(QueuedThread {
                thread_id: row.get(0)?,
                note_path: PathBuf::from(row.get::<_, String>(1)?),
                attempts: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn dequeue_thread(&self, account: &str, thread_id: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM draft_queue WHERE account = ?1 AND thread_id = ?2",
            params![account, thread_id],
        )?;
        Ok(())
    }

    /// Counts a failed attempt; the new count.
    pub fn count_queue_failure(&self, account: &str, thread_id: &str) -> Result<u32> {
        self.conn.execute(
            "UPDATE draft_queue SET attempts = attempts + 1 WHERE account = ?1 AND thread_id = ?2",
            params![account, thread_id],
        )?;
        Ok(self
            .conn
            .query_row(
                "SELECT attempts FROM draft_queue WHERE account = ?1 AND thread_id = ?2",
                params![account, thread_id],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// True when the generator has written a draft for the thread.
    pub fn has_draft(&self, account: &str, thread_id: &str) -> Result<bool> {
        let mut statement = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM drafts WHERE account = ?1 AND thread_id = ?2)",
        )?;
        Ok(statement.query_row(params![account, thread_id], |row| row.get(0))?)
    }

    pub fn draft_record(&self, account: &str, thread_id: &str) -> Result<Option<DraftRecord>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "{DRAFT_COLUMNS} WHERE account = ?1 AND thread_id = ?2"
        ))?;
        Ok(statement
            .query_row(params![account, thread_id], row_to_draft)
            .optional()?)
    }

    pub fn draft_records(&self, account: &str) -> Result<Vec<DraftRecord>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "{DRAFT_COLUMNS} WHERE account = ?1 ORDER BY rowid"
        ))?;
        let rows = statement.query_map(params![account], row_to_draft)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Records (or replaces) the thread's draft.
    pub fn record_draft(&self, record: &DraftRecord) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO drafts (account, thread_id, path, content_hash, generated_for, created_unix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                record.account,
                record.thread_id,
                path_to_text(&record.path)?,
                record.content_hash,
                record.generated_for,
                record.created_unix
            ],
        )?;
        Ok(())
    }
}

const DRAFT_COLUMNS: &str =
    "SELECT account, thread_id, path, content_hash, generated_for, created_unix FROM drafts";

fn row_to_draft(row: &rusqlite::Row) -> rusqlite::Result<DraftRecord> {
    Ok(DraftRecord {
        account: row.get(0)?,
        thread_id: row.get(1)?,
        path: PathBuf::from(row.get::<_, String>(2)?),
        content_hash: row.get(3)?,
        generated_for: row.get(4)?,
        created_unix: row.get(5)?,
    })
}

const PUSHED_COLUMNS: &str = "SELECT account, message_id, draft_path, folder, uidvalidity, uid,
    size, sha256, date_unix, pushed_unix, in_reply_to, state FROM pushed_drafts";

fn row_to_copy(row: &rusqlite::Row) -> rusqlite::Result<PushedCopy> {
    Ok(PushedCopy {
        account: row.get(0)?,
        message_id: row.get(1)?,
        draft_path: row.get(2)?,
        folder: row.get(3)?,
        uidvalidity: row.get(4)?,
        uid: row.get(5)?,
        size: row.get::<_, i64>(6)? as u64,
        sha256: row.get(7)?,
        date_unix: row.get(8)?,
        pushed_unix: row.get(9)?,
        in_reply_to: row.get(10)?,
        state: CopyState::parse(&row.get::<_, String>(11)?),
    })
}

/// A `messages` row read as `key, in_reply_to, refs, subject, date_unix,
/// data, pack_offset, pack_length` (columns 0–7), its data from the row or
/// from the pack.
fn row_to_message(
    row: &rusqlite::Row,
    pack: &PackReader,
    store_path: &Path,
) -> rusqlite::Result<StoredMessage> {
    let refs: String = row.get(2)?;
    let key: String = row.get(0)?;
    let data_json = match row.get::<_, Option<i64>>(7)? {
        Some(length) => read_packed(pack, store_path, &key, row.get(6)?, length)?,
        None => decompress_data(row.get_ref(5)?)?,
    };
    Ok(StoredMessage {
        key,
        in_reply_to: row.get(1)?,
        references: serde_json::from_str(&refs).unwrap_or_default(),
        subject: row.get(3)?,
        date_unix: row.get(4)?,
        data_json,
    })
}

/// A connection's settings. WAL mode stays in the file, so only a new store
/// switches to it; the switch does not wait on the busy handler, and a
/// second process opening the same new store at that moment (`bridge
/// status` while `bridge watch` starts) was refused at once: it retries.
fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mode = conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        });
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => break,
            Ok(_)
            | Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error {
                    code: rusqlite::ErrorCode::DatabaseBusy,
                    ..
                },
                _,
            )) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(mode) => bail!("it cannot use write-ahead logging (its journal mode stays {mode})"),
            Err(err) => return Err(err.into()),
        }
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -512;",
    )?;
    Ok(())
}

fn pack_path(store_path: &Path) -> PathBuf {
    store_path.with_file_name(PACK_FILE)
}

/// The store's pack, opened once: to read, or (`append`) to write,
/// creating it. A pack this creates has its directory entry synced before
/// anything points into it: syncing the file's data does not promise that
/// on every filesystem.
fn open_pack<'a>(pack: &'a OnceCell<File>, store_path: &Path, append: bool) -> Result<&'a File> {
    if let Some(file) = pack.get() {
        return Ok(file);
    }
    let path = pack_path(store_path);
    let creating = append && !path.exists();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(append)
        .create(append)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the message pack {}", path.display()))?;
    if creating {
        if let Some(dir) = path.parent() {
            crate::durable::sync_dir(dir)
                .with_context(|| format!("cannot sync the directory of {}", path.display()))?;
        }
    }
    Ok(pack.get_or_init(|| file))
}

/// The pack as a connection reads it: opened on first read, its size read
/// again only when a record reaches past the size last seen (appends only
/// ever grow it), not once per message.
#[derive(Default)]
struct PackReader {
    file: OnceCell<File>,
    size: std::cell::Cell<u64>,
}

/// One message's data from the pack, where its row says it is.
fn read_packed(
    pack: &PackReader,
    store_path: &Path,
    key: &str,
    offset: i64,
    length: i64,
) -> rusqlite::Result<String> {
    let damaged = |err: anyhow::Error| {
        rusqlite::Error::FromSqlConversionFailure(
            6,
            rusqlite::types::Type::Integer,
            format!(
                "message {key}: {err:#}; the state store is damaged: remove {} and run \
                 `bridge sync` again to rebuild it (notes are rewritten in place and keep \
                 what you wrote in them)",
                store_path.parent().unwrap_or(store_path).display()
            )
            .into(),
        )
    };
    let file = open_pack(&pack.file, store_path, false).map_err(damaged)?;
    let (Ok(offset_u), Ok(length_u)) = (u64::try_from(offset), u64::try_from(length)) else {
        return Err(damaged(anyhow::anyhow!(
            "its row points at {offset}+{length}"
        )));
    };
    let end = offset_u.checked_add(length_u);
    // Checked before allocating: a damaged row must not ask for gigabytes.
    if end.is_none_or(|end| end > pack.size.get()) {
        let size = file
            .metadata()
            .with_context(|| {
                format!(
                    "cannot read the size of {}",
                    pack_path(store_path).display()
                )
            })
            .map_err(damaged)?
            .len();
        pack.size.set(size);
    }
    let size = pack.size.get();
    if end.is_none_or(|end| end > size) {
        return Err(damaged(anyhow::anyhow!(
            "its record ({length} bytes at {offset}) lies beyond the end of {} ({size} bytes)",
            pack_path(store_path).display()
        )));
    }
    let mut record = vec![0; length_u as usize];
    read_exact_at(file, &mut record, offset_u)
        .with_context(|| {
            format!(
                "cannot read {length} bytes at {offset} of {}",
                pack_path(store_path).display()
            )
        })
        .map_err(damaged)?;
    let json = lz4_flex::block::decompress_size_prepended(&record)
        .with_context(|| {
            format!(
                "the record at {offset} of {} is damaged",
                pack_path(store_path).display()
            )
        })
        .map_err(damaged)?;
    String::from_utf8(json)
        .context("its data is not UTF-8")
        .map_err(damaged)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

/// Elsewhere through the file position: each connection has its own handle
/// and is used by one thread at a time.
#[cfg(not(unix))]
fn read_exact_at(mut file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

#[cfg(not(unix))]
fn write_all_at(mut file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(buf)
}

/// A message's parsed data as the store keeps it: LZ4-compressed JSON (a
/// third to a half of its size), a record of the pack (schema 4) or, before,
/// the row's `data`. Every byte of it is written once and read back to
/// render.
fn compress_data(json: &str) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(json.as_bytes())
}

/// [`compress_data`] undone; plain JSON (TEXT) is what schema 1 stored.
fn decompress_data(value: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<String> {
    use rusqlite::types::{FromSqlError, ValueRef};
    let bad = |err: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(5, value.data_type(), err)
    };
    match value {
        ValueRef::Text(text) => String::from_utf8(text.to_vec()).map_err(|e| bad(e.into())),
        ValueRef::Blob(blob) => {
            let json =
                lz4_flex::block::decompress_size_prepended(blob).map_err(|e| bad(e.into()))?;
            String::from_utf8(json).map_err(|e| bad(e.into()))
        }
        _ => Err(FromSqlError::InvalidType.into()),
    }
}

/// Queues threads for the draft step, in the transaction that records their
/// notes ([`StateStore::commit_rendered`]), so a sync killed after the notes
/// still gets their drafts made by the next run. A thread queued again (new
/// mail) starts its attempts afresh.
fn settle_cursors(conn: &Connection, account: &str) -> Result<()> {
    conn.execute(
        "UPDATE folders SET last_uid = fetched_uid
         WHERE account = ?1 AND last_uid != fetched_uid
           AND NOT EXISTS (SELECT 1 FROM render_queue WHERE account = ?1)",
        params![account],
    )?;
    Ok(())
}

fn queue_threads(conn: &Connection, account: &str, threads: &[(String, PathBuf)]) -> Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO draft_queue (account, thread_id, note_path, attempts) VALUES (?1, ?2, ?3, 0)
         ON CONFLICT (account, thread_id) DO UPDATE SET note_path = excluded.note_path, attempts = 0",
    )?;
    for (thread_id, path) in threads {
        statement.execute(params![account, thread_id, path_to_text(path)?])?;
    }
    Ok(())
}

fn path_to_text(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("note path {} is not valid UTF-8", path.display()))
}

/// An exclusive, per-account lock: two bridge processes never sync the same
/// account at once. Held by an OS file lock, so a killed process releases it.
pub struct AccountLock {
    _file: File,
}

impl AccountLock {
    /// Takes the lock or fails at once, naming the account.
    pub fn acquire(state_dir: &Path, account: &str) -> Result<AccountLock> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create state dir {}", state_dir.display()))?;
        let path = state_dir.join(format!("{account}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(AccountLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another bridge process is syncing account `{account}` or pushing or sending its drafts (lock {} is held); try again when it finishes",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(err)) => {
                Err(err).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str, date: i64) -> StoredMessage {
        StoredMessage {
            key: key.into(),
            in_reply_to: None,
            references: vec!["<root@x>".into()],
            subject: "Hello".into(),
            date_unix: date,
            data_json: format!("{{\"key\":\"{key}\"}}"),
        }
    }

    /// Commits `key` as INBOX's message 1.
    fn commit_one(store: &mut StateStore, key: &str) {
        let cursor = FolderCursor {
            uidvalidity: 1,
            last_uid: 1,
            highest_modseq: None,
        };
        let place = Location {
            folder: "INBOX".into(),
            uid: 1,
        };
        store
            .commit_folder_batch("w", "INBOX", cursor, &[(place, message(key, 1))])
            .unwrap();
    }

    #[test]
    fn the_log_is_copied_into_the_database_before_the_last_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        let batch: Vec<_> = (1..=300)
            .map(|uid| {
                let place = Location {
                    folder: "INBOX".into(),
                    uid,
                };
                (place, message(&format!("<m{uid}@x>"), i64::from(uid)))
            })
            .collect();
        let cursor = FolderCursor {
            uidvalidity: 1,
            last_uid: 300,
            highest_modseq: None,
        };
        store
            .commit_folder_batch("w", "INBOX", cursor, &batch)
            .unwrap();
        let database = dir.path().join("state.sqlite3");
        let size = || std::fs::metadata(&database).unwrap().len();
        let before = size();
        // Another connection, as the note writer's is: the store stays open.
        let writer = store.another_connection().unwrap();
        writer.copy_log_into_database();
        assert!(
            size() > before,
            "the committed pages are in the database file: {before} -> {}",
            size()
        );
        assert_eq!(store.message_count("w").unwrap(), 300);
    }

    #[test]
    fn cursor_and_messages_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        assert_eq!(store.folder_cursor("work", "INBOX").unwrap(), None);
        let cursor = FolderCursor {
            uidvalidity: 7,
            last_uid: 2,
            highest_modseq: Some(11),
        };
        let batch = vec![
            (
                Location {
                    folder: "INBOX".into(),
                    uid: 1,
                },
                message("<a@x>", 10),
            ),
            (
                Location {
                    folder: "INBOX".into(),
                    uid: 2,
                },
                message("<b@x>", 20),
            ),
        ];
        store
            .commit_folder_batch("work", "INBOX", cursor, &batch)
            .unwrap();
        assert_eq!(
            store.render_queue("work").unwrap(),
            ["<a@x>".to_string(), "<b@x>".to_string()].into()
        );
        // Fetched, not rendered: the cursor proper has not moved.
        assert_eq!(store.notes_cursor("work", "INBOX").unwrap(), Some(0));
        store.settle_cursors("work").unwrap();
        assert_eq!(store.notes_cursor("work", "INBOX").unwrap(), Some(0));
        store
            .commit_rendered(
                "work",
                &[("<a@x>".into(), PathBuf::from("2025/a.md"))],
                &[],
                &["<a@x>", "<b@x>"],
            )
            .unwrap();
        assert!(store.render_queue("work").unwrap().is_empty());
        // Every fetched message's note is written: now the cursor moves.
        assert_eq!(store.notes_cursor("work", "INBOX").unwrap(), Some(2));
        drop(store);
        let store = StateStore::open(dir.path()).unwrap();
        assert_eq!(store.folder_cursor("work", "INBOX").unwrap(), Some(cursor));
        assert_eq!(store.messages("work").unwrap().len(), 2);
        let full = store.messages_with_data("work", &["<b@x>"]).unwrap();
        assert_eq!(full[0].data_json, "{\"key\":\"<b@x>\"}");
        assert_eq!(full[0].references, vec!["<root@x>"]);
        assert_eq!(
            store.note_path("work", "<a@x>").unwrap(),
            Some(PathBuf::from("2025/a.md"))
        );
        assert_eq!(store.messages("home").unwrap().len(), 0);
    }

    #[test]
    fn parsed_data_is_packed_compressed_and_older_rows_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        let cursor = FolderCursor {
            uidvalidity: 1,
            last_uid: 1,
            highest_modseq: None,
        };
        let mut new = message("<new@x>", 10);
        new.data_json = format!("{{\"body\":\"{}\"}}", "Grüße, ".repeat(200));
        let place = |uid| Location {
            folder: "INBOX".into(),
            uid,
        };
        store
            .commit_folder_batch("w", "INBOX", cursor, &[(place(1), new.clone())])
            .unwrap();
        // Rows as schema 1 (plain JSON text) and schemas 2-3 (LZ4 in the row) wrote them.
        store
            .conn
            .execute(
                "INSERT INTO messages (account, key, in_reply_to, refs, subject, date_unix, data)
                 VALUES ('w', '<old@x>', NULL, '[]', 'Old', 5, '{\"body\":\"old\"}'),
                        ('w', '<mid@x>', NULL, '[]', 'Mid', 6, ?1)",
                [compress_data("{\"body\":\"mid\"}")],
            )
            .unwrap();
        let (row_data, length): (usize, usize) = store
            .conn
            .query_row(
                "SELECT length(data), pack_length FROM messages WHERE key = '<new@x>'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(row_data, 0, "the data is in the pack, not the row");
        let pack_size = std::fs::metadata(dir.path().join(PACK_FILE)).unwrap().len();
        assert_eq!(pack_size, length as u64);
        assert!(
            length * 4 < new.data_json.len(),
            "{length} of {}",
            new.data_json.len()
        );
        drop(store);
        let store = StateStore::open(dir.path()).unwrap();
        let found = store
            .messages_with_data("w", &["<new@x>", "<old@x>", "<mid@x>"])
            .unwrap();
        assert_eq!(found[0].data_json, new.data_json);
        assert_eq!(found[1].data_json, "{\"body\":\"old\"}");
        assert_eq!(found[2].data_json, "{\"body\":\"mid\"}");
    }

    #[test]
    fn pack_appends_never_overwrite_and_skip_what_a_killed_run_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        let mut writer = store.batch_writer().unwrap();
        let place = |folder: &str, uid| Location {
            folder: folder.into(),
            uid,
        };
        let cursor = |last_uid| FolderCursor {
            uidvalidity: 1,
            last_uid,
            highest_modseq: None,
        };
        let with_body = |key: &str, body: &str| {
            let mut m = message(key, 1);
            m.data_json = format!("{{\"body\":\"{body}\"}}");
            m
        };
        store
            .commit_folder_batch(
                "w",
                "INBOX",
                cursor(1),
                &[(place("INBOX", 1), with_body("<a@x>", "first"))],
            )
            .unwrap();
        // Another connection (the fetch step's committer) appends after it,
        // though it opened the pack before that append.
        writer
            .commit_folder_batch(
                "w",
                "INBOX",
                cursor(2),
                &[(place("INBOX", 2), with_body("<b@x>", "second"))],
            )
            .unwrap();
        // A run killed between appending and committing left bytes no row points at.
        let pack = dir.path().join(PACK_FILE);
        let mut tail = std::fs::OpenOptions::new()
            .append(true)
            .open(&pack)
            .unwrap();
        std::io::Write::write_all(&mut tail, b"torn record of a killed run").unwrap();
        let size = std::fs::metadata(&pack).unwrap().len();
        store
            .commit_folder_batch(
                "w",
                "INBOX",
                cursor(3),
                &[(place("INBOX", 3), with_body("<c@x>", "third"))],
            )
            .unwrap();
        let grown = std::fs::metadata(&pack).unwrap().len();
        // The same message again, from another folder: nothing appended.
        writer
            .commit_folder_batch(
                "w",
                "Sent",
                cursor(1),
                &[(place("Sent", 1), with_body("<a@x>", "echo"))],
            )
            .unwrap();
        assert_eq!(std::fs::metadata(&pack).unwrap().len(), grown);
        assert!(grown > size);
        let found = store
            .messages_with_data("w", &["<a@x>", "<b@x>", "<c@x>"])
            .unwrap();
        let bodies: Vec<&str> = found.iter().map(|m| m.data_json.as_str()).collect();
        assert_eq!(
            bodies,
            [
                "{\"body\":\"first\"}",
                "{\"body\":\"second\"}",
                "{\"body\":\"third\"}"
            ]
        );
    }

    #[test]
    fn a_row_pointing_past_the_pack_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let store = {
            let mut store = StateStore::open(dir.path()).unwrap();
            commit_one(&mut store, "<a@x>");
            store
        };
        store
            .conn
            .execute("UPDATE messages SET pack_length = 1099511627776", [])
            .unwrap();
        let err = format!(
            "{:#}",
            store.messages_with_data("w", &["<a@x>"]).unwrap_err()
        );
        assert!(err.contains("message <a@x>"), "{err}");
        assert!(err.contains("beyond the end of"), "{err}");
    }

    #[test]
    fn has_draft_is_per_account_and_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert!(!store.has_draft("w", "<t@x>").unwrap());
        store
            .record_draft(&DraftRecord {
                account: "w".into(),
                thread_id: "<t@x>".into(),
                path: PathBuf::from("Drafts/t.md"),
                content_hash: "h".into(),
                generated_for: "<m@x>".into(),
                created_unix: 1,
            })
            .unwrap();
        assert!(store.has_draft("w", "<t@x>").unwrap());
        assert!(!store.has_draft("w", "<u@x>").unwrap());
        assert!(!store.has_draft("home", "<t@x>").unwrap());
    }

    #[test]
    fn a_missing_pack_is_an_error_naming_it_and_the_message() {
        let dir = tempfile::tempdir().unwrap();
        commit_one(&mut StateStore::open(dir.path()).unwrap(), "<a@x>");
        std::fs::remove_file(dir.path().join(PACK_FILE)).unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let err = format!(
            "{:#}",
            store.messages_with_data("w", &["<a@x>"]).unwrap_err()
        );
        assert!(err.contains("message <a@x>"), "{err}");
        assert!(err.contains(PACK_FILE), "{err}");
    }

    #[test]
    fn a_read_transaction_ends_once_and_only_if_begun() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        store.end_read().unwrap();
        store.begin_read().unwrap();
        assert_eq!(store.message_count("work").unwrap(), 0);
        store.end_read().unwrap();
        store.end_read().unwrap();
        // The connection writes again.
        store.reset_folder("work", "INBOX").unwrap();
        let mut other = store.another_connection().unwrap();
        let counts = StateStore::reading_each(&mut [&mut store, &mut other], |stores| {
            stores
                .iter()
                .map(|s| s.message_count("work").unwrap())
                .sum::<usize>()
        })
        .unwrap();
        assert_eq!(counts, 0);
        store.reset_folder("work", "INBOX").unwrap();
        other.reset_folder("work", "INBOX").unwrap();
    }

    #[test]
    fn processes_opening_a_new_store_at_once_all_get_it_whole() {
        // `bridge status` polled while `bridge watch` starts its first sync:
        // both create and upgrade the same new store.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let start = std::sync::Barrier::new(6);
            let opened: Vec<Result<StateStore>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..6)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            StateStore::open(dir.path())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for store in opened {
                commit_one(&mut store.map_err(|e| format!("{e:#}")).unwrap(), "<a@x>");
            }
        }
    }

    #[test]
    fn new_and_upgraded_stores_are_current_and_reopening_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert!(store.schema_is_current().unwrap());
        drop(store);
        for older in 1..SCHEMA_VERSION {
            Connection::open(dir.path().join("state.sqlite3"))
                .unwrap()
                .execute_batch(&format!("PRAGMA user_version = {older};"))
                .unwrap();
            let store = StateStore::open(dir.path()).unwrap();
            assert!(store.schema_is_current().unwrap(), "from schema {older}");
        }
        // A current store is opened without a write: no lock taken.
        let watcher = Connection::open(dir.path().join("state.sqlite3")).unwrap();
        let version = |c: &Connection| -> i64 {
            c.query_row("PRAGMA data_version", [], |row| row.get(0))
                .unwrap()
        };
        let before = version(&watcher);
        drop(StateStore::open(dir.path()).unwrap());
        assert_eq!(version(&watcher), before);
    }

    #[test]
    fn older_schemas_are_upgraded_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let version = |dir: &Path| -> i64 {
            Connection::open(dir.join("state.sqlite3"))
                .unwrap()
                .query_row("PRAGMA user_version", [], |row| row.get(0))
                .unwrap()
        };
        let set_version = |dir: &Path, v: i64| {
            Connection::open(dir.join("state.sqlite3"))
                .unwrap()
                .execute_batch(&format!("PRAGMA user_version = {v};"))
                .unwrap();
        };
        drop(StateStore::open(dir.path()).unwrap());
        assert_eq!(version(dir.path()), SCHEMA_VERSION);
        for older in 1..SCHEMA_VERSION {
            set_version(dir.path(), older);
            drop(StateStore::open(dir.path()).unwrap());
            assert_eq!(version(dir.path()), SCHEMA_VERSION, "from schema {older}");
        }
        set_version(dir.path(), SCHEMA_VERSION + 1);
        let err = StateStore::open(dir.path()).err().unwrap().to_string();
        let newer = format!("newer mailbridge (schema {}", SCHEMA_VERSION + 1);
        assert!(err.contains(&newer), "{err}");
    }

    #[test]
    fn same_message_in_two_folders_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        let cursor = FolderCursor {
            uidvalidity: 1,
            last_uid: 5,
            highest_modseq: None,
        };
        store
            .commit_folder_batch(
                "w",
                "INBOX",
                cursor,
                &[(
                    Location {
                        folder: "INBOX".into(),
                        uid: 5,
                    },
                    message("<m@x>", 1),
                )],
            )
            .unwrap();
        store
            .commit_folder_batch(
                "w",
                "Sent",
                cursor,
                &[(
                    Location {
                        folder: "Sent".into(),
                        uid: 5,
                    },
                    message("<m@x>", 1),
                )],
            )
            .unwrap();
        assert_eq!(store.messages("w").unwrap().len(), 1);
        assert_eq!(store.locations("w", "<m@x>").unwrap().len(), 2);
        store.reset_folder("w", "Sent").unwrap();
        assert_eq!(store.locations("w", "<m@x>").unwrap().len(), 1);
        assert_eq!(store.folder_cursor("w", "Sent").unwrap(), None);
        assert_eq!(store.messages("w").unwrap().len(), 1);
    }

    #[test]
    fn runs_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert_eq!(store.last_run("w").unwrap(), None);
        let run = SyncRun {
            account: "w".into(),
            started_unix: 1,
            finished_unix: 2,
            ok: true,
            summary: "3 new".into(),
        };
        store.record_run(&run).unwrap();
        assert_eq!(store.last_run("w").unwrap(), Some(run));
    }

    fn copy(message_id: &str, state: CopyState) -> PushedCopy {
        PushedCopy {
            account: "w".into(),
            message_id: message_id.into(),
            draft_path: "/v/Drafts/a.md".into(),
            folder: "Drafts".into(),
            uidvalidity: None,
            uid: None,
            size: 10,
            sha256: "ab".into(),
            date_unix: 5,
            pushed_unix: 6,
            in_reply_to: Some("<p@x>".into()),
            state,
        }
    }

    #[test]
    fn pushed_copies_are_recorded_and_located() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store
            .record_pushed_copy(&copy("<1@x>", CopyState::Appending))
            .unwrap();
        assert_eq!(store.live_pushed_copies("w").unwrap().len(), 1);
        store.set_copy_location("w", "<1@x>", 7, 42).unwrap();
        let found = store.pushed_copy("w", "<1@x>").unwrap().unwrap();
        assert_eq!((found.uidvalidity, found.uid), (Some(7), Some(42)));
        assert_eq!(found.state, CopyState::Present);
        store
            .set_copy_state("w", "<1@x>", CopyState::Removed)
            .unwrap();
        assert!(store.live_pushed_copies("w").unwrap().is_empty());
        assert_eq!(
            store
                .pushed_copies_for_draft("w", "/v/Drafts/a.md")
                .unwrap()[0]
                .state,
            CopyState::Removed
        );
        assert!(store
            .pushed_copies_for_draft("x", "/v/Drafts/a.md")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn schema_1_stores_from_before_pushed_drafts_get_the_table() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateStore::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("state.sqlite3")).unwrap();
        // As such a store is: schema 1, without the table.
        conn.execute_batch("DROP TABLE pushed_drafts; PRAGMA user_version = 1;")
            .unwrap();
        drop(conn);
        let store = StateStore::open(dir.path()).unwrap();
        store
            .record_pushed_copy(&copy("<1@x>", CopyState::Present))
            .unwrap();
    }

    #[test]
    fn replies_are_found_by_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        let cursor = FolderCursor {
            uidvalidity: 1,
            last_uid: 3,
            highest_modseq: None,
        };
        let mut reply = message("<r@x>", 9);
        reply.in_reply_to = Some("<p@x>".into());
        store
            .commit_folder_batch(
                "w",
                "Sent",
                cursor,
                &[(
                    Location {
                        folder: "Sent".into(),
                        uid: 3,
                    },
                    reply,
                )],
            )
            .unwrap();
        assert_eq!(
            store
                .replies_in_folders("w", "<p@x>", &["Sent"])
                .unwrap()
                .len(),
            1
        );
        assert!(store
            .replies_in_folders("w", "<p@x>", &["INBOX"])
            .unwrap()
            .is_empty());
        assert!(store.message_in_folders("w", "<r@x>", &["Sent"]).unwrap());
    }

    #[test]
    fn lock_is_exclusive_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = AccountLock::acquire(dir.path(), "work").unwrap();
        let err = AccountLock::acquire(dir.path(), "work")
            .err()
            .expect("second lock must fail")
            .to_string();
        assert!(err.contains("account `work`"), "{err}");
        let _other = AccountLock::acquire(dir.path(), "home").unwrap();
        drop(first);
        AccountLock::acquire(dir.path(), "work").unwrap();
    }
}
