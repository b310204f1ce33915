//! `bridge sync` against a real Dovecot: threads become source notes.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::*;

/// One test's world: a server, a user, a vault and a config.
struct World {
    server: MailServer,
    user: TestUser,
    vault: tempfile::TempDir,
    config: PathBuf,
}

impl World {
    fn new(hint: &str) -> World {
        World::with_account_yaml(hint, "folders: { sync: [INBOX, \"\\\\Sent\", Archive] }")
    }

    fn with_account_yaml(hint: &str, extra: &str) -> World {
        let server = MailServer::start();
        let user = server.add_user(hint);
        let vault = temp_vault();
        let config = write_config(
            &vault.path().join(".config"),
            vault.path(),
            &server,
            &user,
            extra,
        );
        World {
            server,
            user,
            vault,
            config,
        }
    }

    fn sync(&self) -> Output {
        let output = bridge_command(&self.config)
            .arg("sync")
            .output()
            .expect("run bridge sync");
        assert!(
            output.status.success(),
            "bridge sync failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.server.log()
        );
        output
    }

    fn sources(&self) -> PathBuf {
        self.vault.path().join("Sources/Email")
    }

    /// Every note: path relative to the sources folder → content.
    fn notes(&self) -> BTreeMap<PathBuf, String> {
        let mut notes = BTreeMap::new();
        collect_notes(&self.sources(), &self.sources(), &mut notes);
        notes
    }
}

fn collect_notes(root: &Path, dir: &Path, notes: &mut BTreeMap<PathBuf, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_notes(root, &path, notes);
        } else if path.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&path).unwrap();
            notes.insert(path.strip_prefix(root).unwrap().to_path_buf(), text);
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A plain text message; `refs` are the ancestors, oldest first.
fn mail(
    id: Option<&str>,
    from: &str,
    to: &str,
    subject: &str,
    date: &str,
    refs: &[&str],
    body: &str,
) -> Vec<u8> {
    let mut text = format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n");
    if let Some(id) = id {
        text.push_str(&format!("Message-ID: {id}\r\n"));
    }
    if let Some(parent) = refs.last() {
        text.push_str(&format!(
            "In-Reply-To: {parent}\r\nReferences: {}\r\n",
            refs.join(" ")
        ));
    }
    text.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    text.push_str(&body.replace('\n', "\r\n"));
    text.push_str("\r\n");
    text.into_bytes()
}

#[test]
fn threads_become_notes_and_a_second_sync_changes_nothing() {
    let world = World::new("sync-basic");
    let me = format!("Test User <{}>", world.user.email);
    let john = "John Mao <john@vastdata.example>";
    let root = mail(
        Some("<root@vast.example>"),
        john,
        &me,
        "OpenAI",
        "Fri, 12 Dec 2025 16:04:26 -0800",
        &[],
        "Hi Jason,\nCan you send the deck by Friday?\nJohn",
    );
    let reply = mail(
        Some("<reply@example.test>"),
        &me,
        john,
        "Re: OpenAI",
        "Sat, 13 Dec 2025 09:00:00 -0800",
        &["<root@vast.example>"],
        "Sure, I will send it.\n\nOn Fri, John wrote:\n> Can you send the deck by Friday?",
    );
    let followup = mail(
        Some("<follow@vast.example>"),
        john,
        &me,
        "Re: OpenAI",
        "Sat, 13 Dec 2025 09:15:02 -0800",
        &["<root@vast.example>", "<reply@example.test>"],
        "Thanks! One more question: who else joins?",
    );
    let other = mail(
        Some("<other@x.example>"),
        "Ann <ann@x.example>",
        &me,
        "Lunch?",
        "Mon, 15 Dec 2025 12:00:00 +0100",
        &[],
        "Lunch on Tuesday?",
    );
    world.server.append(&world.user, "INBOX", &root);
    world.server.append(&world.user, "INBOX", &followup);
    world.server.append(&world.user, "INBOX", &other);
    world.server.append(&world.user, "Sent", &reply);
    // The same message in two folders counts once.
    world.server.append(&world.user, "Archive", &root);

    let first = world.sync();
    let notes = world.notes();
    assert_eq!(notes.len(), 2, "{:#?}\n{}", notes.keys(), stdout(&first));
    if std::env::var_os("SHOW_NOTES").is_some() {
        for (path, text) in &notes {
            println!("=== {}\n{text}", path.display());
        }
    }
    let (path, openai) = notes
        .iter()
        .find(|(_, text)| text.contains("subject: \"OpenAI\"") || text.contains("subject: OpenAI"))
        .expect("the OpenAI thread note");
    assert!(path.starts_with("2025"), "{path:?}");
    assert!(path.to_string_lossy().ends_with("_OpenAI.md"), "{path:?}");
    assert!(
        path.to_string_lossy().contains("2025-12-12_160426_"),
        "{path:?}"
    );
    assert!(openai.contains("message_count: 3"), "{openai}");
    assert!(
        openai.contains("thread_id: \"<root@vast.example>\""),
        "{openai}"
    );
    assert!(openai.contains("## Messages"), "{openai}");
    assert!(openai.contains("who else joins?"), "{openai}");
    assert!(
        stdout(&first).contains("4 new messages") || stdout(&first).contains("new messages"),
        "{}",
        stdout(&first)
    );

    let mtimes: Vec<_> = notes
        .keys()
        .map(|p| {
            std::fs::metadata(world.sources().join(p))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    let second = world.sync();
    assert!(
        stdout(&second).contains(" 0 new messages"),
        "{}",
        stdout(&second)
    );
    assert_eq!(
        world.notes(),
        notes,
        "a no-change sync must not change notes"
    );
    let mtimes_after: Vec<_> = notes
        .keys()
        .map(|p| {
            std::fs::metadata(world.sources().join(p))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    assert_eq!(
        mtimes, mtimes_after,
        "a no-change sync must not touch files"
    );
}
