//! Draft notes (SPEC §Draft notes): the Markdown file a person edits before
//! it becomes a draft in their mailbox.
//!
//! A draft note belongs to the user. The bridge reads it and writes back
//! only the few front-matter keys it owns (`status`, `pushed_at`,
//! `message_id`, `account`, `sent_at`), splicing them into the text so that
//! every other byte (comments, key order, quoting, the body) stays exactly as
//! the user or the generator left it. Re-serializing the YAML would reflow
//! it, which is why nothing here round-trips through serde.
//!
//! Only the `## Draft Response` section becomes the email; the rest of the
//! note (key points, summaries) is for the user and never leaves the vault.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use lettre::message::{Mailbox, Mailboxes};
use serde_norway::{Mapping, Value};

/// The heading that starts the part of a draft note that is the email.
pub const RESPONSE_HEADING: &str = "Draft Response";

/// Where a draft note is in its life (SPEC: `pending` → `pushed` → `sent`,
/// or `discarded` by the user, or `answered` when the user replied to the
/// thread some other way before the draft was pushed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftStatus {
    Pending,
    Pushed,
    Sent,
    Discarded,
    Answered,
}

impl DraftStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DraftStatus::Pending => "pending",
            DraftStatus::Pushed => "pushed",
            DraftStatus::Sent => "sent",
            DraftStatus::Discarded => "discarded",
            DraftStatus::Answered => "answered",
        }
    }
}

impl fmt::Display for DraftStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A draft note as read from disk.
#[derive(Debug, Clone)]
pub struct DraftNote {
    pub path: PathBuf,
    /// The whole file, as read.
    pub text: String,
    pub front_matter: Mapping,
    body_start: usize,
}

/// An error about one key of one draft note: the file and key are always
/// named, so a batch push says exactly what to fix where.
pub fn key_error(path: &Path, key: &str, message: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{}: front matter `{key}`: {message}", path.display())
}

impl DraftNote {
    pub fn load(path: &Path) -> Result<DraftNote> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read draft note {}", path.display()))?;
        DraftNote::parse(path, text)
    }

    /// `path` is only used to name the file in errors.
    pub fn parse(path: &Path, text: String) -> Result<DraftNote> {
        let Some(split) = split_front_matter(&text) else {
            bail!(
                "{}: not a draft note: it does not start with `---` front matter (closed by another `---` line)",
                path.display()
            );
        };
        let front_matter = match serde_norway::from_str::<Value>(&text[split.inner.clone()]) {
            Ok(Value::Mapping(map)) => map,
            Ok(Value::Null) => Mapping::new(),
            Ok(_) => bail!(
                "{}: the front matter is not a mapping of keys to values",
                path.display()
            ),
            Err(err) => bail!(
                "{}: the front matter is not valid YAML: {err}",
                path.display()
            ),
        };
        let note = DraftNote {
            path: path.to_path_buf(),
            body_start: split.body_start,
            text,
            front_matter,
        };
        if let Some(kind) = note.text_value("type")? {
            if kind != "draft-reply" {
                return Err(key_error(
                    path,
                    "type",
                    format!("`{kind}` is not a draft note (expected `draft-reply`)"),
                ));
            }
        }
        Ok(note)
    }

    /// Everything after the front matter.
    pub fn body(&self) -> &str {
        &self.text[self.body_start..]
    }

    /// The Markdown that is the email: the `## Draft Response` section, or
    /// the whole body of a draft without one.
    pub fn email_markdown(&self) -> &str {
        draft_response(self.body()).unwrap_or_else(|| trim_blank_lines(self.body()))
    }

    /// A scalar value as text; `None` when missing, null or empty.
    pub fn text_value(&self, key: &str) -> Result<Option<String>> {
        match self.front_matter.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(key_error(&self.path, key, "expected a single value")),
        }
    }

    /// A value that may be one string or a list of strings.
    pub fn text_list(&self, key: &str) -> Result<Vec<String>> {
        match self.front_matter.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.trim().to_string()),
                    _ => Err(key_error(&self.path, key, "expected a list of text values")),
                })
                .filter(|item| item.as_ref().map_or(true, |s| !s.is_empty()))
                .collect(),
            Some(_) => Ok(self.text_value(key)?.into_iter().collect()),
        }
    }

    /// Addresses such as `"John Mao <john@vastdata.com>, ann@x.com"` or a
    /// YAML list of them; an address that does not parse names the key.
    pub fn addresses(&self, key: &str) -> Result<Vec<Mailbox>> {
        let mut all = Vec::new();
        for item in self.text_list(key)? {
            let parsed = Mailboxes::from_str(&item).map_err(|_| {
                key_error(
                    &self.path,
                    key,
                    format!(
                        "cannot read `{item}` as email addresses (expected e.g. \"Name <name@example.com>\", several separated by commas)"
                    ),
                )
            })?;
            all.extend(parsed);
        }
        Ok(all)
    }

    pub fn status(&self) -> Result<DraftStatus> {
        match self.text_value("status")?.as_deref() {
            None | Some("pending") => Ok(DraftStatus::Pending),
            Some("pushed") => Ok(DraftStatus::Pushed),
            Some("sent") => Ok(DraftStatus::Sent),
            Some("discarded") => Ok(DraftStatus::Discarded),
            Some("answered") => Ok(DraftStatus::Answered),
            Some(other) => Err(key_error(
                &self.path,
                "status",
                format!("unknown status `{other}` (expected pending, pushed, sent, discarded or answered)"),
            )),
        }
    }

    /// The file's text with `updates` written into its front matter and
    /// nothing else changed.
    pub fn with_front_matter(&self, updates: &[(&str, FmValue)]) -> String {
        set_front_matter(&self.text, updates).expect("parsed notes have front matter")
    }
}

/// A front-matter value as the bridge writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FmValue {
    /// Written bare (`status: pushed`), for keywords.
    Plain(String),
    /// Written as a YAML double-quoted string.
    Quoted(String),
}

impl FmValue {
    fn render(&self) -> String {
        match self {
            FmValue::Plain(s) => s.clone(),
            FmValue::Quoted(s) => yaml_quoted(s),
        }
    }

    fn as_value(&self) -> &str {
        match self {
            FmValue::Plain(s) | FmValue::Quoted(s) => s,
        }
    }
}

/// A YAML double-quoted scalar; JSON's escapes are valid YAML, and JSON
/// escapes every character YAML could read as a line break.
fn yaml_quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

struct FrontMatterSplit {
    /// The YAML between the `---` lines.
    inner: std::ops::Range<usize>,
    body_start: usize,
}

fn split_front_matter(text: &str) -> Option<FrontMatterSplit> {
    let start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let mut lines = text[start..].split_inclusive('\n');
    let first = lines.next()?;
    if first.trim_end() != "---" {
        return None;
    }
    let inner_start = start + first.len();
    let mut pos = inner_start;
    for line in lines {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed == "..." {
            return Some(FrontMatterSplit {
                inner: inner_start..pos,
                body_start: pos + line.len(),
            });
        }
        pos += line.len();
    }
    None
}

/// The key a line starts, if it starts a top-level mapping entry.
fn top_level_key(line: &str) -> Option<String> {
    let line = line.trim_end_matches(['\n', '\r']);
    let first = line.chars().next()?;
    if first.is_whitespace() || "-#?:[]{},&*!|>%@`".contains(first) {
        return None;
    }
    if first == '"' || first == '\'' {
        let close = line[1..].find(first)? + 1;
        let rest = line[close + 1..].trim_start();
        return (rest.starts_with(':')).then(|| line[1..close].to_string());
    }
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b':' if bytes.get(i + 1).is_none_or(|n| *n == b' ' || *n == b'\t') => {
                return Some(line[..i].trim_end().to_string());
            }
            b'#' if i > 0 && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') => return None,
            _ => {}
        }
    }
    None
}

/// A line that continues the entry above it: indented, or a block-sequence
/// item, which YAML allows at the key's own indentation.
fn is_continuation(line: &str) -> bool {
    line.starts_with([' ', '\t']) || line.starts_with("- ") || line.trim_end() == "-"
}

/// Writes `updates` into the front matter of `text`: an existing key's
/// entry (its line and continuation lines) is replaced in place, a new key
/// is added at the end of the front matter, a key already holding the value
/// is left byte for byte. `None` when `text` has no front matter.
pub fn set_front_matter(text: &str, updates: &[(&str, FmValue)]) -> Option<String> {
    let split = split_front_matter(text)?;
    let inner = &text[split.inner.clone()];
    let newline = if inner.contains("\r\n") || text.contains("---\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let current: Mapping = match serde_norway::from_str::<Value>(inner) {
        Ok(Value::Mapping(map)) => map,
        _ => Mapping::new(),
    };
    let lines: Vec<&str> = inner.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len() + 128);
    out.push_str(&text[..split.inner.start]);
    let mut done = vec![false; updates.len()];
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let key = top_level_key(line);
        let update = key
            .as_deref()
            .and_then(|k| updates.iter().position(|(name, _)| *name == k));
        let Some(which) = update.filter(|which| !done[*which]) else {
            out.push_str(line);
            index += 1;
            continue;
        };
        // The entry: its key line, then continuation lines (blank lines
        // only when more of the entry follows them).
        let mut end = index + 1;
        let mut scan = end;
        while scan < lines.len() {
            if is_continuation(lines[scan]) {
                scan += 1;
                end = scan;
            } else if lines[scan].trim().is_empty() {
                scan += 1;
            } else {
                break;
            }
        }
        done[which] = true;
        let (name, value) = &updates[which];
        let unchanged = matches!(current.get(*name), Some(Value::String(s)) if s == value.as_value())
            && end == index + 1;
        if unchanged {
            out.push_str(line);
        } else {
            out.push_str(&format!("{name}: {}{newline}", value.render()));
        }
        index = end;
    }
    if !out.ends_with('\n') && !out.ends_with(&text[..split.inner.start]) {
        out.push_str(newline);
    }
    for (which, (name, value)) in updates.iter().enumerate() {
        if !done[which] {
            out.push_str(&format!("{name}: {}{newline}", value.render()));
        }
    }
    out.push_str(&text[split.inner.end..]);
    Some(out)
}

/// The `## Draft Response` section: from below its heading up to the next
/// thematic break (`---`) or heading of level 1 or 2, with blank lines
/// trimmed at both ends. Rules and headings inside fenced code blocks do
/// not end it.
pub fn draft_response(body: &str) -> Option<&str> {
    let mut pos = 0;
    let mut start = None;
    let mut fence: Option<(char, usize)> = None;
    for line in body.split_inclusive('\n') {
        let here = pos;
        pos += line.len();
        if let Some((c, n)) = fence {
            if closes_fence(line, c, n) {
                fence = None;
            }
            continue;
        }
        if let Some(open) = opens_fence(line) {
            fence = Some(open);
            continue;
        }
        match start {
            None => {
                if is_response_heading(line) {
                    start = Some(pos);
                }
            }
            Some(from) => {
                if is_section_end(line) {
                    return Some(trim_blank_lines(&body[from..here]));
                }
            }
        }
    }
    start.map(|from| trim_blank_lines(&body[from..]))
}

fn is_response_heading(line: &str) -> bool {
    let Some(rest) = line.trim().strip_prefix("##") else {
        return false;
    };
    if rest.starts_with('#') {
        return false;
    }
    let title = rest.trim().trim_end_matches('#').trim();
    title.eq_ignore_ascii_case(RESPONSE_HEADING)
}

/// A `# ` or `## ` heading, or a thematic break (`---`, `***`, `___`).
fn is_section_end(line: &str) -> bool {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return false;
    }
    let text = line.trim();
    let hashes = text.chars().take_while(|c| *c == '#').count();
    if (hashes == 1 || hashes == 2) && (text.len() == hashes || text[hashes..].starts_with(' ')) {
        return true;
    }
    let Some(marker) = text.chars().next().filter(|c| matches!(c, '-' | '*' | '_')) else {
        return false;
    };
    text.chars().all(|c| c == marker || c == ' ' || c == '\t')
        && text.chars().filter(|c| *c == marker).count() >= 3
}

fn opens_fence(line: &str) -> Option<(char, usize)> {
    let text = line.trim_start_matches(' ');
    if line.len() - text.len() > 3 {
        return None;
    }
    let c = text.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = text.chars().take_while(|x| *x == c).count();
    (n >= 3).then_some((c, n))
}

fn closes_fence(line: &str, c: char, n: usize) -> bool {
    let text = line.trim();
    text.chars().take_while(|x| *x == c).count() >= n && text.chars().all(|x| x == c)
}

/// Drops blank lines at the start and whitespace at the end.
fn trim_blank_lines(text: &str) -> &str {
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            start += line.len();
        } else {
            break;
        }
    }
    text[start..].trim_end()
}

/// Replaces the file at `path` with `text` durably: a temp file beside it,
/// fsync, rename, fsync of the directory. A crash leaves the old note or
/// the new one, never half of each; the file's permissions are kept.
pub fn write_note_durably(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.mailbridge-{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        crate::durable::sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write draft note {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../tests/fixtures/seed-draft-reply.md");

    fn seed() -> DraftNote {
        DraftNote::parse(Path::new("seed.md"), SEED.to_string()).unwrap()
    }

    #[test]
    fn seed_reads() {
        let note = seed();
        assert_eq!(note.status().unwrap(), DraftStatus::Pending);
        let to = note.addresses("to").unwrap();
        assert_eq!(to.len(), 1);
        assert_eq!(to[0].email.to_string(), "john@vastdata.com");
        assert_eq!(to[0].name.as_deref(), Some("John Mao"));
        assert!(note.addresses("cc").unwrap().is_empty());
        assert!(note
            .text_value("source_file")
            .unwrap()
            .unwrap()
            .ends_with("2025-12-12_160426_5605_Re-OpenAI.md"));
    }

    #[test]
    fn only_the_draft_response_is_the_email() {
        let email = seed().email_markdown().to_string();
        assert!(
            email.starts_with("Hi John,\n\nThank you for your email."),
            "{email}"
        );
        assert!(email.ends_with("Best,\nJason"), "{email}");
        for notes_only in [
            "Key Points to Address",
            "Original Summary",
            "auto-generated",
            "**Regarding**",
            "# Draft Reply",
        ] {
            assert!(!email.contains(notes_only), "{notes_only} leaked:\n{email}");
        }
    }

    #[test]
    fn section_ends_at_a_heading_and_not_inside_code() {
        let body =
            "## Draft Response\n\nHi,\n\n```\n---\n## not a heading\n```\n\nBye\n## Notes\nmine\n";
        assert_eq!(
            draft_response(body),
            Some("Hi,\n\n```\n---\n## not a heading\n```\n\nBye")
        );
        assert_eq!(
            draft_response("# T\n\n## draft response ##\nx\n\n* * *\nrest"),
            Some("x")
        );
        // A level-3 heading belongs to the response.
        assert_eq!(
            draft_response("## Draft Response\nA\n### Details\nB\n"),
            Some("A\n### Details\nB")
        );
        assert_eq!(draft_response("# Only a title\ntext"), None);
    }

    #[test]
    fn without_the_section_the_whole_body_is_the_email() {
        let note = DraftNote::parse(
            Path::new("d.md"),
            "---\nto: a@example.com\n---\n\nJust this.\n\nThanks\n".into(),
        )
        .unwrap();
        assert_eq!(note.email_markdown(), "Just this.\n\nThanks");
    }

    #[test]
    fn front_matter_update_changes_nothing_else() {
        let note = seed();
        let updated = note.with_front_matter(&[
            ("status", FmValue::Plain("pushed".into())),
            (
                "pushed_at",
                FmValue::Quoted("2026-01-06T10:00:00+00:00".into()),
            ),
            ("message_id", FmValue::Quoted("<mb.1@example.com>".into())),
            ("account", FmValue::Quoted("work".into())),
        ]);
        let expected = SEED
            .replacen("status: pending\n", "status: pushed\n", 1)
            .replacen(
                "source_file: \"/Users/jason.vallery/Documents/Notes/Sources/Email/2025/2025-12-12_160426_5605_Re-OpenAI.md\"\n",
                "source_file: \"/Users/jason.vallery/Documents/Notes/Sources/Email/2025/2025-12-12_160426_5605_Re-OpenAI.md\"\n\
                 pushed_at: \"2026-01-06T10:00:00+00:00\"\n\
                 message_id: \"<mb.1@example.com>\"\n\
                 account: \"work\"\n",
                1,
            );
        assert_eq!(updated, expected);
        let again = DraftNote::parse(Path::new("seed.md"), updated.clone()).unwrap();
        assert_eq!(again.status().unwrap(), DraftStatus::Pushed);
        // Writing the same values again is a no-op, byte for byte.
        assert_eq!(
            again.with_front_matter(&[
                ("status", FmValue::Plain("pushed".into())),
                ("account", FmValue::Quoted("work".into())),
            ]),
            updated
        );
    }

    #[test]
    fn multi_line_entries_are_replaced_whole_and_comments_kept() {
        let text = "---\r\n# mine\r\nstatus:\r\n  pending\r\ntags:\r\n- a\r\n\r\n- b\r\nto: x@y.z # who\r\n---\r\nbody\r\n";
        let out = set_front_matter(text, &[("status", FmValue::Plain("pushed".into()))]).unwrap();
        assert_eq!(
            out,
            "---\r\n# mine\r\nstatus: pushed\r\ntags:\r\n- a\r\n\r\n- b\r\nto: x@y.z # who\r\n---\r\nbody\r\n"
        );
        let out = set_front_matter(text, &[("tags", FmValue::Quoted("z".into()))]).unwrap();
        assert!(
            out.contains("tags: \"z\"\r\nto: x@y.z # who\r\n---\r\n"),
            "{out:?}"
        );
    }

    #[test]
    fn errors_name_file_and_key() {
        let bad = |fm: &str| DraftNote::parse(Path::new("/v/d.md"), format!("---\n{fm}\n---\nx\n"));
        let note = bad("to: \"not an address\"").unwrap();
        let err = note.addresses("to").unwrap_err().to_string();
        assert!(err.contains("/v/d.md") && err.contains("`to`"), "{err}");
        let note = bad("status: maybe").unwrap();
        let err = note.status().unwrap_err().to_string();
        assert!(err.contains("`status`") && err.contains("maybe"), "{err}");
        let err = bad("type: email-thread").unwrap_err().to_string();
        assert!(err.contains("`type`"), "{err}");
        let err = DraftNote::parse(Path::new("/v/d.md"), "no front matter".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/v/d.md"), "{err}");
    }

    #[test]
    fn address_lists() {
        let note = DraftNote::parse(
            Path::new("d.md"),
            "---\nto: [\"A <a@x.com>\", \"b@y.com, \\\"Mao, John\\\" <j@z.com>\"]\n---\n".into(),
        )
        .unwrap();
        let to = note.addresses("to").unwrap();
        let emails: Vec<String> = to.iter().map(|m| m.email.to_string()).collect();
        assert_eq!(emails, ["a@x.com", "b@y.com", "j@z.com"]);
        assert_eq!(to[2].name.as_deref(), Some("Mao, John"));
    }

    #[test]
    fn durable_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.md");
        std::fs::write(&path, "old").unwrap();
        write_note_durably(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
