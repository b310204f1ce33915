//! `bridge status [--json]`: accounts with their last sync, threads awaiting
//! a reply, and drafts by status — read from the state store and the vault,
//! never from the network, so it answers at once.
//!
//! The JSON form is a stable interface (`"version": 1`); fields are only
//! ever added. See README §Status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::notes;
use crate::state::StateStore;

#[derive(Debug, Serialize)]
pub struct Status {
    /// Bumped only for incompatible changes.
    pub version: u32,
    pub accounts: Vec<AccountStatus>,
    pub drafts: Vec<DraftStatus>,
    /// Drafts per status, e.g. `{"pending": 2, "pushed": 1}`.
    pub drafts_by_status: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct AccountStatus {
    pub account: String,
    pub email: String,
    pub last_sync: Option<LastSync>,
    /// Source notes of this account.
    pub threads: usize,
    /// Source notes with `needs_reply: true`.
    pub awaiting_reply: usize,
}

#[derive(Debug, Serialize)]
pub struct LastSync {
    /// RFC 3339, UTC.
    pub finished: String,
    pub ok: bool,
    pub summary: String,
}

#[derive(Debug, Serialize)]
pub struct DraftStatus {
    /// Relative to the vault.
    pub path: PathBuf,
    pub status: String,
    /// A new message arrived in the thread after the draft was written.
    pub stale: bool,
    pub account: Option<String>,
    pub subject: Option<String>,
}

/// Gathers the status of every configured account and every draft note.
pub fn collect(config: &Config) -> Result<Status> {
    let store = StateStore::open(&config.state_dir)?;
    let mut per_account: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (_, front) in front_matters(&config.sources_dir()) {
        if text(&front, "type").as_deref() != Some("email-thread") {
            continue;
        }
        let account = text(&front, "account").unwrap_or_default();
        let entry = per_account.entry(account).or_default();
        entry.0 += 1;
        if front.get("needs_reply").and_then(|v| v.as_bool()) == Some(true) {
            entry.1 += 1;
        }
    }
    let mut accounts = Vec::new();
    for account in config.accounts.values() {
        let last_sync = store.last_run(&account.id)?.map(|run| LastSync {
            finished: rfc3339_utc(run.finished_unix),
            ok: run.ok,
            summary: run.summary,
        });
        let (threads, awaiting_reply) = per_account.get(&account.id).copied().unwrap_or_default();
        accounts.push(AccountStatus {
            account: account.id.clone(),
            email: account.email.clone(),
            last_sync,
            threads,
            awaiting_reply,
        });
    }
    let mut drafts = Vec::new();
    let mut drafts_by_status = BTreeMap::new();
    for (path, front) in front_matters(&config.drafts_dir()) {
        if text(&front, "type").as_deref() != Some("draft-reply") {
            continue;
        }
        let status = text(&front, "status").unwrap_or_else(|| "pending".into());
        *drafts_by_status.entry(status.clone()).or_insert(0) += 1;
        drafts.push(DraftStatus {
            path: path
                .strip_prefix(&config.vault)
                .unwrap_or(&path)
                .to_path_buf(),
            status,
            stale: front.get("stale").and_then(|v| v.as_bool()) == Some(true),
            account: text(&front, "account"),
            subject: text(&front, "subject"),
        });
    }
    Ok(Status {
        version: 1,
        accounts,
        drafts,
        drafts_by_status,
    })
}

/// The human-readable form.
pub fn render_text(status: &Status) -> String {
    let mut out = String::new();
    for account in &status.accounts {
        let last = match &account.last_sync {
            Some(run) => format!(
                "last sync {} {}",
                run.finished,
                if run.ok { "ok" } else { "FAILED" }
            ),
            None => "never synced".into(),
        };
        out.push_str(&format!(
            "{} <{}>: {last}; {} threads, {} awaiting a reply\n",
            account.account, account.email, account.threads, account.awaiting_reply
        ));
        if let Some(run) = account.last_sync.as_ref().filter(|r| !r.ok) {
            out.push_str(&format!("  {}\n", run.summary));
        }
    }
    if status.drafts.is_empty() {
        out.push_str("drafts: none\n");
    } else {
        let counts: Vec<String> = status
            .drafts_by_status
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        out.push_str(&format!("drafts: {}\n", counts.join(", ")));
        for draft in &status.drafts {
            out.push_str(&format!(
                "  {:<9} {}{}\n",
                draft.status,
                draft.path.display(),
                if draft.stale { " (stale)" } else { "" }
            ));
        }
    }
    out
}

/// Every Markdown file under `dir` with its front matter (unreadable or
/// front-matter-less files are skipped: status reports, it does not judge).
fn front_matters(dir: &Path) -> Vec<(PathBuf, serde_norway::Mapping)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    if let Ok(front) = notes::read_front_matter(&text) {
                        found.push((path, front));
                    }
                }
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn text(front: &serde_norway::Mapping, key: &str) -> Option<String> {
    front.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

fn rfc3339_utc(unix: i64) -> String {
    notes::NoteDate::from_unix(unix, 0)
        .map(|d| d.rfc3339())
        .unwrap_or_default()
}
