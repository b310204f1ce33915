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
    support::rfc822(id, from, to, subject, date, refs, support::PLAIN_TEXT, body)
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

#[test]
fn a_new_reply_changes_exactly_its_thread_and_user_text_survives() {
    let world = World::new("sync-update");
    let me = format!("Test User <{}>", world.user.email);
    let ann = "Ann <ann@x.example>";
    let bob = "Bob <bob@y.example>";
    world.server.append(
        &world.user,
        "INBOX",
        &mail(
            Some("<a1@x.example>"),
            ann,
            &me,
            "Budget",
            "Mon, 1 Dec 2025 10:00:00 +0000",
            &[],
            "Can you review the budget?",
        ),
    );
    world.server.append(
        &world.user,
        "INBOX",
        &mail(
            Some("<b1@y.example>"),
            bob,
            &me,
            "Offsite",
            "Tue, 2 Dec 2025 10:00:00 +0000",
            &[],
            "Where shall we meet?",
        ),
    );
    world.sync();
    let before = world.notes();
    assert_eq!(before.len(), 2);
    let (budget_path, budget) = before.iter().find(|(_, t)| t.contains("Budget")).unwrap();
    let (offsite_path, _) = before.iter().find(|(_, t)| t.contains("Offsite")).unwrap();

    // The user writes in the note: under ## Notes, after everything, and a property.
    let mut edited = budget.replacen("---\n", "---\ntags: [finance]\n", 1);
    edited = edited.replace("## Notes\n", "## Notes\nCall Ann before Friday.\n");
    edited.push_str("\nP.S. my own line at the end\n");
    std::fs::write(world.sources().join(budget_path), &edited).unwrap();
    let offsite_mtime = std::fs::metadata(world.sources().join(offsite_path))
        .unwrap()
        .modified()
        .unwrap();

    world.server.append(
        &world.user,
        "INBOX",
        &mail(
            Some("<a2@x.example>"),
            ann,
            &me,
            "Re: Budget",
            "Wed, 3 Dec 2025 10:00:00 +0000",
            &["<a1@x.example>"],
            "Any news on the budget?",
        ),
    );
    let output = world.sync();
    assert!(
        stdout(&output).contains("1 new messages"),
        "{}",
        stdout(&output)
    );
    let after = world.notes();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "file names are kept"
    );
    let budget_after = &after[budget_path];
    assert!(
        budget_after.contains("Any news on the budget?"),
        "{budget_after}"
    );
    assert!(budget_after.contains("message_count: 2"), "{budget_after}");
    assert!(
        budget_after.contains("Call Ann before Friday."),
        "{budget_after}"
    );
    assert!(
        budget_after.contains("P.S. my own line at the end"),
        "{budget_after}"
    );
    assert!(
        budget_after.contains("tags: [finance]") || budget_after.contains("tags:\n- finance"),
        "{budget_after}"
    );
    assert_eq!(
        after[offsite_path], before[offsite_path],
        "the other thread's note is untouched"
    );
    let offsite_mtime_after = std::fs::metadata(world.sources().join(offsite_path))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(offsite_mtime, offsite_mtime_after);
}

#[test]
fn missing_roots_and_messages_without_message_id() {
    let world = World::new("sync-odd");
    let me = format!("Test User <{}>", world.user.email);
    let carl = "Carl <carl@z.example>";
    // Two replies to a root we never got: one thread, not two.
    world.server.append(
        &world.user,
        "INBOX",
        &mail(
            Some("<r1@z.example>"),
            carl,
            &me,
            "Re: Plans",
            "Mon, 1 Dec 2025 10:00:00 +0000",
            &["<lost-root@z.example>"],
            "first reply",
        ),
    );
    world.server.append(
        &world.user,
        "INBOX",
        &mail(
            Some("<r2@z.example>"),
            carl,
            &me,
            "Re: Plans",
            "Mon, 1 Dec 2025 11:00:00 +0000",
            &["<lost-root@z.example>", "<r1@z.example>"],
            "second reply",
        ),
    );
    // No Message-ID at all: still exactly one note, stable across syncs.
    world.server.append(
        &world.user,
        "INBOX",
        &mail(
            None,
            carl,
            &me,
            "No id here",
            "Tue, 2 Dec 2025 10:00:00 +0000",
            &[],
            "anonymous",
        ),
    );
    world.sync();
    let notes = world.notes();
    assert_eq!(notes.len(), 2, "{:#?}", notes.keys());
    let plans = notes.values().find(|t| t.contains("first reply")).unwrap();
    assert!(plans.contains("second reply"), "{plans}");
    assert!(
        plans.contains("thread_id: \"<lost-root@z.example>\""),
        "{plans}"
    );
    assert!(notes.values().any(|t| t.contains("anonymous")));
    world.sync();
    assert_eq!(world.notes(), notes);
}

#[test]
fn malformed_messages_are_noted_not_fatal() {
    let world = World::new("sync-malformed");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/messages");
    let mut names = Vec::new();
    for name in [
        "13-bad-charset.eml",
        "14-broken-boundary.eml",
        "15-raw-8bit-header.eml",
        "16-no-message-id-no-date.eml",
    ] {
        let raw = std::fs::read(corpus.join(name)).unwrap();
        world.server.append(&world.user, "INBOX", &raw);
        names.push(name);
    }
    // A 20 MB attachment: listed, not downloaded into the note.
    let mut big = String::from("From: Dan <dan@w.example>\r\nTo: me@example.test\r\nSubject: Big file\r\nDate: Wed, 3 Dec 2025 10:00:00 +0000\r\nMessage-ID: <big@w.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe video is attached.\r\n--b\r\nContent-Type: video/mp4; name=\"clip.mp4\"\r\nContent-Disposition: attachment; filename=\"clip.mp4\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    let line = "A".repeat(76);
    for _ in 0..(20 * 1024 * 1024 / 77) {
        big.push_str(&line);
        big.push_str("\r\n");
    }
    big.push_str("--b--\r\n");
    world.server.append(&world.user, "INBOX", big.as_bytes());
    let output = world.sync();
    let notes = world.notes();
    assert!(
        notes.len() >= 4,
        "every message lands in a note: {:#?}\n{}",
        notes.keys(),
        stdout(&output)
    );
    let big_note = notes
        .values()
        .find(|t| t.contains("The video is attached."))
        .expect("the big message's note");
    assert!(big_note.contains("clip.mp4"), "{big_note}");
    assert!(
        big_note.len() < 100_000,
        "the attachment must not be in the note"
    );
    assert!(
        !stdout(&output).contains(" 0 messages with problems"),
        "problems are counted: {}",
        stdout(&output)
    );
}

#[test]
fn since_limits_the_first_sync() {
    let world = World::with_account_yaml("sync-since", "since: 30d");
    let me = format!("Test User <{}>", world.user.email);
    let old = mail(
        Some("<old@x.example>"),
        "Old <old@x.example>",
        &me,
        "Ancient",
        "Mon, 1 Jan 2018 10:00:00 +0000",
        &[],
        "old news",
    );
    world.server.append_with(
        &world.user,
        "INBOX",
        "",
        Some("01-Jan-2018 10:00:00 +0000"),
        &old,
    );
    let recent = mail(
        Some("<new@x.example>"),
        "New <new@x.example>",
        &me,
        "Fresh",
        "Mon, 1 Jan 2018 10:00:00 +0000",
        &[],
        "fresh news",
    );
    world.server.append(&world.user, "INBOX", &recent);
    world.sync();
    let notes = world.notes();
    assert_eq!(notes.len(), 1, "{:#?}", notes.keys());
    assert!(notes.values().next().unwrap().contains("fresh news"));
}

#[test]
fn status_json_matches_the_vault() {
    let world = World::new("sync-status");
    let me = format!("Test User <{}>", world.user.email);
    let before = bridge_command(&world.config)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&before.stdout).expect("status --json is JSON");
    assert_eq!(json["accounts"][0]["last_sync"], serde_json::Value::Null);
    world.server.append(
        &world.user,
        "INBOX",
        &mail(
            Some("<s1@x.example>"),
            "Ann <ann@x.example>",
            &me,
            "One",
            "Mon, 1 Dec 2025 10:00:00 +0000",
            &[],
            "one",
        ),
    );
    world.server.append(
        &world.user,
        "INBOX",
        &mail(
            Some("<s2@x.example>"),
            "Ann <ann@x.example>",
            &me,
            "Two",
            "Mon, 1 Dec 2025 11:00:00 +0000",
            &[],
            "two",
        ),
    );
    world.sync();
    let output = bridge_command(&world.config)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("status --json is JSON");
    assert_eq!(json["version"], 1);
    let account = &json["accounts"][0];
    assert_eq!(account["account"], "test");
    assert_eq!(account["threads"], world.notes().len());
    assert_eq!(account["last_sync"]["ok"], true);
    assert!(account["last_sync"]["summary"]
        .as_str()
        .unwrap()
        .contains("2 new messages"));
    let awaiting = world
        .notes()
        .values()
        .filter(|t| t.contains("needs_reply: true"))
        .count();
    assert_eq!(account["awaiting_reply"], awaiting);
}

#[test]
fn a_pushed_draft_sent_from_the_mail_client_becomes_sent() {
    let world = World::new("sync-reconcile");
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-draft-reply.md"),
    )
    .unwrap();
    let draft = world.vault.path().join("Drafts/Email/reply.md");
    std::fs::create_dir_all(draft.parent().unwrap()).unwrap();
    std::fs::write(&draft, &seed).unwrap();
    let push = bridge_command(&world.config)
        .arg("push")
        .arg(&draft)
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    let pushed = std::fs::read_to_string(&draft).unwrap();
    assert!(pushed.contains("status: pushed"), "{pushed}");
    let message_id = pushed
        .lines()
        .find_map(|l| l.strip_prefix("message_id: "))
        .expect("push writes message_id")
        .trim_matches('"')
        .to_string();

    // The user opens the draft in their mail client and sends it: the client
    // files it in Sent with the same Message-ID.
    let me = format!("Test User <{}>", world.user.email);
    world.server.append(
        &world.user,
        "Sent",
        &mail(
            Some(&message_id),
            &me,
            "John Mao <john@vastdata.com>",
            "Re: OpenAI",
            "Sat, 13 Dec 2025 10:00:00 -0800",
            &[],
            "Hi John, ...",
        ),
    );
    world.sync();
    let after = std::fs::read_to_string(&draft).unwrap();
    assert!(after.contains("status: sent"), "{after}");
}

#[test]
fn a_thread_the_user_started_is_named_after_their_first_message() {
    let world = World::new("sync-naming");
    let me = format!("Test User <{}>", world.user.email);
    let ann = "Ann <ann@x.example>";
    // Folders sync INBOX first; the thread began in Sent three days earlier.
    world.server.append(
        &world.user,
        "Sent",
        &mail(
            Some("<start@example.test>"),
            &me,
            ann,
            "Team survey",
            "Sun, 2 Nov 2025 09:30:00 +0100",
            &[],
            "Could you fill in the survey?",
        ),
    );
    world.server.append(
        &world.user,
        "INBOX",
        &mail(
            Some("<answer@x.example>"),
            ann,
            &me,
            "Re: Team survey",
            "Wed, 5 Nov 2025 14:05:00 +0000",
            &["<start@example.test>"],
            "Done!",
        ),
    );
    let output = world.sync();
    let notes = world.notes();
    assert_eq!(notes.len(), 1, "{:#?}", notes.keys());
    let path = notes.keys().next().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        path,
        "2025/2025-11-02_093000_1_Team-survey.md",
        "{}",
        stdout(&output)
    );
    assert!(
        stdout(&output).contains("2 new messages, 1 new threads, 0 updated threads"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_note_that_cannot_be_written_fails_the_sync_and_the_next_run_catches_up() {
    let world = World::new("sync-blocked");
    let me = format!("Test User <{}>", world.user.email);
    for (id, subject, date) in [
        (
            "<early@x.example>",
            "Early",
            "Mon, 4 Mar 2024 10:00:00 +0000",
        ),
        ("<late@x.example>", "Late", "Tue, 4 Mar 2025 10:00:00 +0000"),
    ] {
        let raw = mail(
            Some(id),
            "Ann <ann@x.example>",
            &me,
            subject,
            date,
            &[],
            "hello",
        );
        world.server.append(&world.user, "INBOX", &raw);
    }
    // A file where the 2025 notes folder would go: that note cannot be written.
    std::fs::create_dir_all(world.sources()).unwrap();
    let blocker = world.sources().join("2025");
    std::fs::write(&blocker, "not a folder").unwrap();
    // One note per chunk and per durable step, so the failure comes after an
    // earlier step was recorded, with later chunks in the pipeline.
    let blocked = bridge_command(&world.config)
        .args(["sync", "--no-generate"])
        .env("MAILBRIDGE_RENDER_BATCH_SIZE", "1")
        .env("MAILBRIDGE_RENDER_CHUNKS_PER_STEP", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    assert!(!blocked.status.success(), "{stderr}");
    assert!(stderr.contains("Sources/Email/2025/"), "{stderr}");
    let notes = world.notes();
    assert_eq!(notes.len(), 1, "{:#?}", notes.keys());
    assert!(notes.keys().next().unwrap().starts_with("2024"));

    std::fs::remove_file(&blocker).unwrap();
    let output = world.sync();
    assert!(
        stdout(&output).contains("1 new threads"),
        "{}",
        stdout(&output)
    );
    let notes = world.notes();
    assert_eq!(notes.len(), 2, "{:#?}", notes.keys());
    assert!(notes.keys().any(|p| p.starts_with("2025")));
    let again = world.sync();
    assert!(
        stdout(&again).contains("0 new threads, 0 updated threads"),
        "{}",
        stdout(&again)
    );
    assert_eq!(world.notes(), notes);
}
