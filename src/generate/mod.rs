//! Draft generation (SPEC §Draft notes, issue #4): one draft reply note per thread
//! that awaits the user's answer, written by a generator — `template` (the default,
//! offline, minijinja), `command` (the user's program) or `openai` (an
//! OpenAI-compatible chat completions server).
//!
//! **Input.** A thread is read back from its source note's `message_ids` and the
//! state store's parsed copies of those messages (the note alone has lost the
//! headers a reply needs), then analysed (`analyze::analyze_thread`). So `bridge
//! generate` works on any synced note, and a sync needs nothing kept in memory.
//!
//! **When.** `bridge sync` queues every thread whose note it renders, in the state
//! store transaction that records the note, and works the queue after rendering: a
//! sync killed in between leaves the queue for the next run. `bridge generate`
//! looks at every note (or the ones named).
//!
//! **What happens to a thread** (see [`decide`]): no draft yet, and it needs a reply
//! whose last message is within `drafts.max_age` → a new draft. A draft already
//! there is never overwritten once the user edited it (the hash of what was written,
//! over everything but the keys push/send/sync update, is in the state store); news
//! in the thread regenerates an unedited pending draft, marks an edited or pushed
//! one `stale: true`, and marks a pending one `status: answered` when the news is
//! the user's own reply. Sent, answered, discarded or deleted drafts are history: the
//! thread gets a new draft when it needs a reply again.
//!
//! **Links.** The draft names its source note (`source_file`, absolute, as in the
//! seed; `source_note: "[[…]]"`, a wikilink) and the source note gets
//! `draft: "[[…]]"` — a front-matter key the note renderer keeps as it keeps the
//! user's own keys, spliced in changing nothing else.

mod command;
mod context;
mod openai;
mod render;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

pub use command::CommandGenerator;
pub use context::{detect_language, first_name, Context, DraftInput, SCHEMA_VERSION};
pub use openai::{clean_completion, completion_content, parse_retry_after, OpenAiGenerator};
pub use render::{
    check_note, section_safe, yaml_quote, Generated, Templates, DEFAULT_PROMPT, DEFAULT_TEMPLATE,
};

use crate::analyze::{analyze_thread, Analysis};
use crate::config::{Account, Config, Generator as GeneratorKind};
use crate::draft::{self, DraftNote, FmValue};
use crate::message::ParsedMessage;
use crate::state::{AccountLock, DraftRecord, StateStore};

/// A failed thread is retried by this many syncs, then left to `bridge generate`.
const MAX_QUEUE_ATTEMPTS: u32 = 3;

/// The recorded hash of an adopted draft: matches no text, so it counts as edited.
const ADOPTED: &str = "adopted";

/// Front-matter keys that push, send and sync write into a draft after the
/// generator: changing them is not an edit of the user's.
const BRIDGE_KEYS: &[&str] = &[
    "status",
    "stale",
    "pushed_at",
    "sent_at",
    "message_id",
    "account",
];

/// A generator ready to run: templates compiled, command or endpoint set up, the
/// API key resolved once.
pub struct Generator {
    templates: Templates,
    kind: Kind,
}

enum Kind {
    Template,
    Command(CommandGenerator),
    OpenAi(OpenAiGenerator),
}

impl Generator {
    pub fn from_config(config: &Config) -> Result<Generator> {
        let drafts = &config.drafts;
        let templates = Templates::load(drafts.template.as_deref(), drafts.prompt.as_deref())?;
        let kind = match drafts.generator {
            GeneratorKind::Template => Kind::Template,
            GeneratorKind::Command => Kind::Command(CommandGenerator {
                argv: drafts.command.clone().unwrap_or_default(),
                timeout: drafts.timeout,
            }),
            GeneratorKind::Openai => {
                let openai = drafts.openai.as_ref().context("drafts.openai is missing")?;
                let api_key = match &openai.api_key {
                    Some(source) => Some(
                        crate::credentials::resolve("openai", "API key", source)
                            .context("drafts.openai.api_key")?,
                    ),
                    None => None,
                };
                Kind::OpenAi(OpenAiGenerator::new(
                    &openai.base_url,
                    &openai.model,
                    api_key,
                    drafts.timeout,
                ))
            }
        };
        Ok(Generator { templates, kind })
    }

    /// The template generator with the built-in template (tests, benchmarks).
    pub fn builtin_template() -> Generator {
        Generator {
            templates: Templates::load(None, None).expect("the built-in templates compile"),
            kind: Kind::Template,
        }
    }

    /// A generator of the given kind over the built-in templates (tests).
    pub fn with_command(command: CommandGenerator) -> Generator {
        Generator {
            kind: Kind::Command(command),
            ..Generator::builtin_template()
        }
    }

    pub fn with_openai(openai: OpenAiGenerator) -> Generator {
        Generator {
            kind: Kind::OpenAi(openai),
            ..Generator::builtin_template()
        }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Template => "template",
            Kind::Command(_) => "command",
            Kind::OpenAi(_) => "openai",
        }
    }

    /// The draft note for a thread, checked (front matter parses, someone to reply
    /// to, a Draft Response), or why there is none.
    pub fn draft_note(&self, input: &DraftInput) -> Result<String> {
        let ctx = Context::new(input);
        self.draft_note_for(&ctx)
    }

    pub fn draft_note_for(&self, ctx: &Context) -> Result<String> {
        let generated = match &self.kind {
            Kind::Template => None,
            Kind::Command(command) => Some(command.generate(ctx)?),
            Kind::OpenAi(openai) => Some(openai.generate(&self.templates.render_prompt(ctx)?)?),
        };
        let text = self.templates.render_note(ctx, generated.as_ref())?;
        check_note(&text)?;
        Ok(text)
    }
}

/// What the user could have changed in a draft note, hashed: the text with the keys
/// the bridge itself updates later taken out of the front matter, line ends and
/// trailing blanks normalized (an editor that saves CRLF has not edited anything).
pub fn content_hash(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut kept = String::with_capacity(text.len());
    let mut lines = text.lines();
    let mut in_front_matter = false;
    let mut skipping = false;
    if let Some(first) = lines.clone().next() {
        if first.trim_end() == "---" {
            in_front_matter = true;
            kept.push_str("---\n");
            lines.next();
        }
    }
    for line in lines.by_ref() {
        if in_front_matter {
            if line.trim_end() == "---" || line.trim_end() == "..." {
                in_front_matter = false;
                kept.push_str("---\n");
                continue;
            }
            let continuation =
                line.starts_with([' ', '\t']) || line.starts_with("- ") || line.trim() == "-";
            if continuation && skipping {
                continue;
            }
            skipping = false;
            if let Some(key) = front_matter_key(line) {
                if BRIDGE_KEYS.contains(&key.as_str()) {
                    skipping = true;
                    continue;
                }
            }
        }
        kept.push_str(line.trim_end());
        kept.push('\n');
    }
    crate::push::sha256_hex(kept.trim_end().as_bytes())
}

fn front_matter_key(line: &str) -> Option<String> {
    let first = line.chars().next()?;
    if first.is_whitespace() || "-#".contains(first) {
        return None;
    }
    let (key, _) = line.split_once(':')?;
    Some(key.trim().trim_matches(['"', '\'']).to_string())
}

// ---------------------------------------------------------------------------
// Deciding what a thread gets

/// Why the generator runs for a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `bridge sync` touched the thread, or `bridge generate` without arguments:
    /// only threads that need a reply and are recent enough get a draft.
    Auto,
    /// `bridge generate NOTE`: the user asked for this thread's draft.
    Explicit,
}

/// The state of a thread's existing draft note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    None,
    /// Recorded, but the file is gone: the user deleted it.
    Deleted {
        fresh: bool,
    },
    File {
        status: String,
        stale: bool,
        edited: bool,
        /// The thread has no message the draft was not written for.
        fresh: bool,
    },
}

/// The thread, as far as deciding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadFacts {
    pub needs_reply: bool,
    pub last_from_user: bool,
    /// The last message is within `drafts.max_age`.
    pub recent: bool,
    /// Generation is switched on (not `--no-generate`, and the generator loaded).
    pub can_generate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing(&'static str),
    /// A new draft note (a new file).
    Create,
    /// Rewrite the existing, unedited, pending draft.
    Regenerate,
    MarkStale,
    MarkAnswered,
    /// `bridge generate NOTE` cannot do what was asked; why.
    Refuse(&'static str),
}

/// The rules of the module doc, as one table.
pub fn decide(trigger: Trigger, thread: ThreadFacts, existing: &Existing) -> Action {
    let explicit = trigger == Trigger::Explicit;
    let wanted = thread.can_generate && (explicit || (thread.needs_reply && thread.recent));
    let create_or = |reason| {
        if wanted {
            Action::Create
        } else {
            Action::Nothing(reason)
        }
    };
    match existing {
        Existing::None => create_or("no reply needed"),
        Existing::Deleted { fresh: true } if !explicit => Action::Nothing("draft deleted by you"),
        Existing::Deleted { .. } => create_or("no reply needed"),
        Existing::File {
            status,
            stale,
            edited,
            fresh,
        } => match status.as_str() {
            "pending" if *fresh => match (explicit, edited) {
                (false, _) => Action::Nothing("draft up to date"),
                (true, true) => Action::Refuse("you have edited this draft; it is not overwritten"),
                (true, false) if thread.can_generate => Action::Regenerate,
                (true, false) => Action::Nothing("generation is off"),
            },
            "pending" if thread.last_from_user => Action::MarkAnswered,
            "pending" if !edited && wanted => Action::Regenerate,
            "pending" | "pushed" if *stale => {
                if explicit && *edited {
                    Action::Refuse("you have edited this draft; it is not overwritten")
                } else if explicit {
                    Action::Refuse(
                        "this draft was pushed; push it again after editing, or discard it",
                    )
                } else {
                    Action::Nothing("already marked stale")
                }
            }
            "pending" => {
                if explicit && *edited {
                    Action::Refuse("you have edited this draft; it is not overwritten")
                } else {
                    Action::MarkStale
                }
            }
            "pushed" if *fresh || thread.last_from_user => {
                if explicit {
                    Action::Refuse(
                        "this draft was pushed; push it again after editing, or discard it",
                    )
                } else {
                    Action::Nothing("pushed draft up to date")
                }
            }
            "pushed" => {
                if explicit {
                    Action::Refuse(
                        "this draft was pushed; push it again after editing, or discard it",
                    )
                } else {
                    Action::MarkStale
                }
            }
            // sent, answered, discarded (or a status the user made up): history.
            _ if *fresh && !explicit => Action::Nothing("draft done"),
            _ => create_or("no reply needed"),
        },
    }
}

// ---------------------------------------------------------------------------
// One thread

/// What was done for one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(PathBuf),
    Regenerated(PathBuf),
    MarkedStale(PathBuf),
    MarkedAnswered(PathBuf),
    Nothing(&'static str),
}

impl Outcome {
    /// The draft a push should consider (a pending note the generator just wrote).
    pub fn written(&self) -> Option<&Path> {
        match self {
            Outcome::Created(p) | Outcome::Regenerated(p) => Some(p),
            _ => None,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Created(p) => write!(f, "{}: new draft", p.display()),
            Outcome::Regenerated(p) => {
                write!(f, "{}: regenerated (the thread has news)", p.display())
            }
            Outcome::MarkedStale(p) => {
                write!(
                    f,
                    "{}: marked stale (the thread has news; your draft is kept)",
                    p.display()
                )
            }
            Outcome::MarkedAnswered(p) => {
                write!(
                    f,
                    "{}: marked answered (you replied to the thread)",
                    p.display()
                )
            }
            Outcome::Nothing(why) => write!(f, "nothing to do ({why})"),
        }
    }
}

/// Everything one account's draft step needs.
pub struct Drafter<'a> {
    pub config: &'a Config,
    pub account: &'a Account,
    pub store: &'a StateStore,
    /// `None` with `--no-generate`, or when the generator could not be set up: stale
    /// and answered marks still happen.
    pub generator: Option<&'a Generator>,
    pub now_unix: i64,
}

/// A thread read back from its source note and the state store.
pub struct LoadedThread {
    pub thread_id: String,
    pub subject: String,
    pub note_path: PathBuf,
    pub messages: Vec<ParsedMessage>,
    pub analysis: Analysis,
}

impl Drafter<'_> {
    fn user_addresses(&self) -> Vec<String> {
        vec![self.account.email.to_lowercase()]
    }

    /// Reads the source note at `note_path` (absolute) and its messages.
    pub fn load_thread(&self, note_path: &Path) -> Result<LoadedThread> {
        let text = std::fs::read_to_string(note_path)
            .with_context(|| format!("cannot read source note {}", note_path.display()))?;
        let front = crate::notes::read_front_matter(&text)
            .with_context(|| format!("source note {}", note_path.display()))?;
        let text_of = |key: &str| front.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let thread_id = text_of("thread_id").with_context(|| {
            format!(
                "{}: no `thread_id` in its front matter: not a source note of bridge sync",
                note_path.display()
            )
        })?;
        let ids: Vec<String> = match front.get("message_ids") {
            Some(serde_norway::Value::Sequence(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut messages = Vec::with_capacity(keys.len());
        for stored in self.store.messages_with_data(&self.account.id, &keys)? {
            let parsed = ParsedMessage::from_stored_json(&stored.data_json)
                .with_context(|| format!("state store: message {} is unreadable", stored.key))?;
            messages.push((stored.date_unix, stored.key, parsed));
        }
        if messages.is_empty() {
            bail!(
                "{}: its messages are not in the state store of account `{}` (run `bridge sync` first)",
                note_path.display(),
                self.account.id
            );
        }
        // The order and the "as of" date of sync's own analysis, so the draft
        // agrees with the source note it answers.
        messages.sort_by(|(a, ka, _), (b, kb, _)| (a, ka).cmp(&(b, kb)));
        let as_of = messages.last().map_or(self.now_unix, |(date, _, _)| *date);
        let messages: Vec<ParsedMessage> = messages.into_iter().map(|(_, _, p)| p).collect();
        let analysis = analyze_thread(&messages, &self.user_addresses(), as_of);
        Ok(LoadedThread {
            thread_id,
            subject: text_of("subject").unwrap_or_default(),
            note_path: note_path.to_path_buf(),
            messages,
            analysis,
        })
    }

    /// Applies the rules to one thread.
    pub fn handle(&self, thread: &LoadedThread, trigger: Trigger) -> Result<Outcome> {
        let last = thread
            .messages
            .last()
            .expect("load_thread returns messages");
        let last_key = last.stable_id();
        let last_unix = last.date.as_ref().map_or(self.now_unix, |d| d.timestamp);
        let facts = ThreadFacts {
            needs_reply: thread.analysis.needs_reply,
            last_from_user: thread.analysis.last_from_user,
            recent: self.now_unix - last_unix <= self.config.drafts.max_age.as_secs() as i64,
            can_generate: self.generator.is_some(),
        };
        let record = self
            .store
            .draft_record(&self.account.id, &thread.thread_id)?;
        let mut current: Option<(PathBuf, DraftNote)> = None;
        let existing = match &record {
            None => Existing::None,
            Some(record) => {
                let path = self.config.vault.join(&record.path);
                let fresh = record.generated_for == last_key;
                match std::fs::read_to_string(&path) {
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        Existing::Deleted { fresh }
                    }
                    Err(err) => {
                        return Err(err)
                            .with_context(|| format!("cannot read draft note {}", path.display()))
                    }
                    Ok(text) => {
                        let edited = content_hash(&text) != record.content_hash;
                        match DraftNote::parse(&path, text) {
                            Ok(note) => {
                                let status = note
                                    .text_value("status")?
                                    .unwrap_or_else(|| "pending".into());
                                let stale = matches!(
                                    note.front_matter.get("stale"),
                                    Some(serde_norway::Value::Bool(true))
                                );
                                current = Some((path, note));
                                Existing::File {
                                    status,
                                    stale,
                                    edited,
                                    fresh,
                                }
                            }
                            // Broken front matter: the user's to fix, never ours to overwrite.
                            Err(err) => {
                                tracing::warn!("{err:#}; leaving it as it is");
                                return Ok(Outcome::Nothing("draft note unreadable"));
                            }
                        }
                    }
                }
            }
        };
        match decide(trigger, facts, &existing) {
            Action::Nothing(why) => Ok(Outcome::Nothing(why)),
            Action::Refuse(why) => {
                let path = current.map(|(p, _)| p).unwrap_or_default();
                bail!("{}: {why}", path.display())
            }
            Action::MarkStale => {
                let (path, note) = current.expect("a file to mark");
                let text = note.with_front_matter(&[("stale", FmValue::Plain("true".into()))]);
                draft::write_note_durably(&path, &text)?;
                Ok(Outcome::MarkedStale(path))
            }
            Action::MarkAnswered => {
                let (path, note) = current.expect("a file to mark");
                let text = note.with_front_matter(&[("status", FmValue::Plain("answered".into()))]);
                draft::write_note_durably(&path, &text)?;
                Ok(Outcome::MarkedAnswered(path))
            }
            Action::Regenerate => {
                let (path, _) = current.expect("a file to rewrite");
                self.write_draft(thread, &path, &last_key)?;
                Ok(Outcome::Regenerated(path))
            }
            Action::Create => {
                let day = context::last_message_day(&thread.messages, self.now_unix);
                let subject = crate::compose::reply_subject(
                    last.subject
                        .as_deref()
                        .filter(|s| !s.trim().is_empty())
                        .unwrap_or(&thread.subject),
                );
                let stem = format!("{day}_{}", crate::notes::subject_slug(&subject));
                if record.is_none() {
                    if let Some(path) = self.adopt(thread, &stem, &last_key)? {
                        return Ok(Outcome::Created(path));
                    }
                }
                let path = free_path(&self.config.drafts_dir(), &stem);
                self.write_draft(thread, &path, &last_key)?;
                Ok(Outcome::Created(path))
            }
        }
    }

    /// A draft note for this thread that is on disk but not in the state store: a
    /// run killed between writing it and recording it, or a state store that was
    /// lost. It is taken over instead of written twice, counted as edited (nothing
    /// proves it is not), so news only ever marks it stale.
    fn adopt(&self, thread: &LoadedThread, stem: &str, last_key: &str) -> Result<Option<PathBuf>> {
        let dir = self.config.drafts_dir();
        let source_file = absolute(&thread.note_path).display().to_string();
        let candidates = std::iter::once(dir.join(format!("{stem}.md")))
            .chain((2..).map(|n| dir.join(format!("{stem}-{n}.md"))));
        for path in candidates {
            let Ok(text) = std::fs::read_to_string(&path) else {
                return Ok(None);
            };
            let Ok(note) = DraftNote::parse(&path, text) else {
                continue;
            };
            if note.text_value("source_file")?.as_deref() != Some(source_file.as_str()) {
                continue;
            }
            link_source_note(&thread.note_path, &vault_link(&self.config.vault, &path))?;
            self.record(thread, &path, ADOPTED, last_key)?;
            return Ok(Some(path));
        }
        Ok(None)
    }

    fn record(&self, thread: &LoadedThread, path: &Path, hash: &str, last_key: &str) -> Result<()> {
        let relative = path
            .strip_prefix(&self.config.vault)
            .unwrap_or(path)
            .to_path_buf();
        self.store.record_draft(&DraftRecord {
            account: self.account.id.clone(),
            thread_id: thread.thread_id.clone(),
            path: relative,
            content_hash: hash.to_string(),
            generated_for: last_key.to_string(),
            created_unix: self.now_unix,
        })
    }

    /// Generates, writes durably, links the source note to the draft, and records it
    /// — in that order, so a run killed anywhere leaves a draft the next run adopts
    /// (see [`Drafter::adopt`]), never a second one.
    fn write_draft(&self, thread: &LoadedThread, path: &Path, last_key: &str) -> Result<()> {
        let generator = self.generator.context("generation is off")?;
        let input = DraftInput {
            account: self.account,
            thread_id: thread.thread_id.clone(),
            subject: thread.subject.clone(),
            messages: thread.messages.clone(),
            analysis: thread.analysis.clone(),
            source_file: absolute(&thread.note_path).display().to_string(),
            source_link: vault_link(&self.config.vault, &thread.note_path),
            user_addresses: self.user_addresses(),
            now_unix: self.now_unix,
        };
        let text = generator.draft_note(&input)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the drafts folder {}", dir.display()))?;
        }
        draft::write_note_durably(path, &text)?;
        link_source_note(&thread.note_path, &vault_link(&self.config.vault, path))?;
        self.record(thread, path, &content_hash(&text), last_key)
    }
}

/// `<dir>/<stem>.md`, or `<stem>-2.md`… when that name is taken.
fn free_path(dir: &Path, stem: &str) -> PathBuf {
    let first = dir.join(format!("{stem}.md"));
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| dir.join(format!("{stem}-{n}.md")))
        .find(|p| !p.exists())
        .expect("an unbounded range finds a free name")
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The wikilink target of a note: its path in the vault, `/`-separated, no `.md`.
fn vault_link(vault: &Path, note: &Path) -> String {
    let canonical = std::fs::canonicalize(vault).ok();
    let relative = note
        .strip_prefix(vault)
        .ok()
        .or_else(|| canonical.as_deref().and_then(|v| note.strip_prefix(v).ok()))
        .unwrap_or(note);
    let text = relative
        .with_extension("")
        .to_string_lossy()
        .replace('\\', "/");
    text.trim_start_matches('/').to_string()
}

/// `draft: "[[…]]"` in the source note's front matter; nothing else changes, and a
/// note already linking there is not written at all.
fn link_source_note(note_path: &Path, draft_link: &str) -> Result<()> {
    let text = std::fs::read_to_string(note_path)
        .with_context(|| format!("cannot read source note {}", note_path.display()))?;
    let value = format!("[[{draft_link}]]");
    let Some(updated) = draft::set_front_matter(&text, &[("draft", FmValue::Quoted(value))]) else {
        return Ok(());
    };
    if updated != text {
        draft::write_note_durably(note_path, &updated)?;
    }
    Ok(())
}

/// Runs `f`, which blocks (a command, an HTTP request), from async code: on a
/// multi-threaded runtime the worker hands its other tasks off first.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

// ---------------------------------------------------------------------------
// bridge sync

/// What the draft step of one sync did.
#[derive(Debug, Default)]
pub struct SyncDrafts {
    pub outcomes: Vec<Outcome>,
    pub failed: usize,
}

/// The draft step of `bridge sync`, after the account's folders are synced: works
/// the queue of touched threads. Failures are logged and counted, never fatal; a
/// failed thread stays queued for the next syncs ([`MAX_QUEUE_ATTEMPTS`]).
pub fn after_sync(
    config: &Config,
    account: &Account,
    store: &StateStore,
    generate: bool,
    now_unix: i64,
) -> Result<SyncDrafts> {
    let queued = store.queued_threads(&account.id)?;
    let mut done = SyncDrafts::default();
    if queued.is_empty() {
        return Ok(done);
    }
    let generator = if generate {
        match Generator::from_config(config) {
            Ok(generator) => Some(generator),
            Err(err) => {
                tracing::warn!(
                    "{}: drafts: cannot set up the {:?} generator: {err:#}; no drafts this sync",
                    account.id,
                    config.drafts.generator
                );
                None
            }
        }
    } else {
        None
    };
    let drafter = Drafter {
        config,
        account,
        store,
        generator: generator.as_ref(),
        now_unix,
    };
    let sources = config.sources_dir();
    for item in queued {
        let note = sources.join(&item.note_path);
        if store.draft_record(&account.id, &item.thread_id)?.is_none()
            && passed_over(&note, config, now_unix)
        {
            done.outcomes.push(Outcome::Nothing("no reply needed"));
            store.dequeue_thread(&account.id, &item.thread_id)?;
            continue;
        }
        let outcome = drafter
            .load_thread(&note)
            .and_then(|thread| drafter.handle(&thread, Trigger::Auto));
        match outcome {
            Ok(outcome) => {
                if !matches!(outcome, Outcome::Nothing(_)) {
                    tracing::info!("{}: {outcome}", account.id);
                }
                done.outcomes.push(outcome);
                store.dequeue_thread(&account.id, &item.thread_id)?;
            }
            Err(err) => {
                done.failed += 1;
                let attempts = store.count_queue_failure(&account.id, &item.thread_id)?;
                if attempts >= MAX_QUEUE_ATTEMPTS {
                    store.dequeue_thread(&account.id, &item.thread_id)?;
                    tracing::warn!(
                        "{}: no draft for {}: {err:#}; gave up after {attempts} syncs (`bridge generate {}` tries again)",
                        account.id,
                        note.display(),
                        note.display()
                    );
                } else {
                    tracing::warn!(
                        "{}: no draft for {}: {err:#} (the next sync tries again)",
                        account.id,
                        note.display()
                    );
                }
            }
        }
    }
    Ok(done)
}

/// Whether a thread a sync touched has business with the draft step: it has a
/// draft already (which news may make stale, answered or regenerated), or its note
/// says it needs a reply and its last message is within `drafts.max_age`. The rest
/// (most of a first sync: old, answered or bulk mail) is never queued.
pub fn wants_draft_step(
    config: &Config,
    store: &StateStore,
    account: &str,
    thread: &crate::notes::NoteThread,
    now_unix: i64,
) -> Result<bool> {
    let last = thread.messages.iter().map(|m| m.date.unix()).max();
    let recent = last.is_none_or(|d| now_unix - d <= config.drafts.max_age.as_secs() as i64);
    // The note's own say first: it needs no lookup (one per rendered thread).
    if thread.analysis.needs_reply && recent {
        return Ok(true);
    }
    store.has_draft(account, &thread.thread_id)
}

/// The drafts `drafts.push: auto` pushes after a sync: every pending, not stale
/// draft the generator wrote for the account (so a push that failed, or a sync that
/// died before pushing, is made up next time), each checked by `push::prepare`.
pub fn auto_push_candidates(
    config: &Config,
    account: &Account,
    store: &StateStore,
) -> Result<Vec<crate::push::Prepared>> {
    let mut prepared = Vec::new();
    for record in store.draft_records(&account.id)? {
        let path = config.vault.join(&record.path);
        let Ok(note) = DraftNote::load(&path) else {
            continue;
        };
        let pending = note.text_value("status")?.is_none_or(|s| s == "pending");
        let stale = matches!(
            note.front_matter.get("stale"),
            Some(serde_norway::Value::Bool(true))
        );
        if !pending || stale {
            continue;
        }
        match crate::push::prepare(config, Some(store), &path, crate::push::Purpose::Push, None) {
            Ok(p) => {
                for warning in &p.warnings {
                    tracing::warn!("{warning}");
                }
                prepared.push(p);
            }
            Err(err) => tracing::warn!("{}: not pushed: {err:#}", account.id),
        }
    }
    Ok(prepared)
}

// ---------------------------------------------------------------------------
// bridge generate

/// `bridge generate [NOTE...]`: drafts for the named source notes, or for every
/// synced thread that needs one. Prints one line per draft written or changed;
/// false when any thread failed (each failure printed to stderr).
pub fn run(config: &Config, notes: &[PathBuf], now_unix: i64, out: &mut dyn Write) -> Result<bool> {
    let generator = Generator::from_config(config)?;
    let mut all_ok = true;
    let mut counts = [0usize; 4];
    let mut report = |outcome: &Outcome, out: &mut dyn Write| -> Result<()> {
        let slot = match outcome {
            Outcome::Created(_) => 0,
            Outcome::Regenerated(_) => 1,
            Outcome::MarkedStale(_) | Outcome::MarkedAnswered(_) => 2,
            Outcome::Nothing(_) => 3,
        };
        counts[slot] += 1;
        if slot != 3 {
            writeln!(out, "{outcome}")?;
        }
        Ok(())
    };
    if notes.is_empty() {
        for account in config.accounts.values() {
            let _lock = AccountLock::acquire(&config.state_dir, &account.id)?;
            let store = StateStore::open(&config.state_dir)?;
            let drafter = Drafter {
                config,
                account,
                store: &store,
                generator: Some(&generator),
                now_unix,
            };
            let mut paths: Vec<(String, PathBuf)> =
                store.note_paths(&account.id)?.into_iter().collect();
            paths.sort();
            for (thread_id, relative) in paths {
                let note = config.sources_dir().join(relative);
                if !note.exists()
                    || (store.draft_record(&account.id, &thread_id)?.is_none()
                        && passed_over(&note, config, now_unix))
                {
                    continue;
                }
                match drafter
                    .load_thread(&note)
                    .and_then(|t| drafter.handle(&t, Trigger::Auto))
                {
                    Ok(outcome) => report(&outcome, out)?,
                    Err(err) => {
                        all_ok = false;
                        eprintln!("bridge: error: {}: {err:#}", note.display());
                    }
                }
            }
        }
    } else {
        for note in notes {
            match generate_one(config, &generator, note, now_unix) {
                Ok(outcome) => {
                    if let Outcome::Nothing(why) = &outcome {
                        writeln!(out, "{}: no draft ({why})", note.display())?;
                    }
                    report(&outcome, out)?;
                }
                Err(err) => {
                    all_ok = false;
                    eprintln!("bridge: error: {err:#}");
                }
            }
        }
    }
    let [created, regenerated, marked, _] = counts;
    writeln!(
        out,
        "{created} new drafts, {regenerated} regenerated, {marked} marked stale or answered ({} generator)",
        generator.name()
    )?;
    Ok(all_ok)
}

/// `bridge generate NOTE`: the note's account (its `account:`, else the only one).
fn generate_one(
    config: &Config,
    generator: &Generator,
    note: &Path,
    now_unix: i64,
) -> Result<Outcome> {
    let note = std::fs::canonicalize(note)
        .with_context(|| format!("cannot find source note {}", note.display()))?;
    let text = std::fs::read_to_string(&note)
        .with_context(|| format!("cannot read source note {}", note.display()))?;
    let front = crate::notes::read_front_matter(&text)
        .with_context(|| format!("source note {}", note.display()))?;
    if front.get("type").and_then(|v| v.as_str()) == Some("draft-reply") {
        bail!(
            "{} is a draft note; name the source note it answers (its `source_file`)",
            note.display()
        );
    }
    let account = match front.get("account").and_then(|v| v.as_str()) {
        Some(id) => config.account(id)?,
        None => {
            let mut all = config.accounts.values();
            match (all.next(), all.next()) {
                (Some(only), None) => only,
                _ => bail!("{}: no `account:` in its front matter", note.display()),
            }
        }
    };
    let _lock = AccountLock::acquire(&config.state_dir, &account.id)?;
    let store = StateStore::open(&config.state_dir)?;
    let drafter = Drafter {
        config,
        account,
        store: &store,
        generator: Some(generator),
        now_unix,
    };
    let thread = drafter.load_thread(&note)?;
    drafter.handle(&thread, Trigger::Explicit)
}

/// Whether a thread without a draft can be passed over on its source note's word
/// alone (`needs_reply: false`, or a `last_date` older than `drafts.max_age`): the
/// note carries sync's own analysis, so reading the thread's messages back and
/// analysing them again would only agree. Keeps a first sync of 10,000 threads,
/// most of them old or answered, from paying for each.
fn passed_over(note: &Path, config: &Config, now_unix: i64) -> bool {
    let Ok(text) = std::fs::read_to_string(note) else {
        return false;
    };
    let Ok(front) = crate::notes::read_front_matter(&text) else {
        return false;
    };
    let needs_reply = front.get("needs_reply").and_then(|v| v.as_bool());
    let last = front
        .get("last_date")
        .and_then(|v| v.as_str())
        .and_then(crate::notes::NoteDate::parse_rfc3339);
    let old = last.is_some_and(|d| now_unix - d.unix() > config.drafts.max_age.as_secs() as i64);
    needs_reply == Some(false) || old
}
