//! `bridge push` against a real Dovecot, checked with the harness's own IMAP
//! client (never the code under test).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::*;

/// The seed draft note of SPEC (`../shared/seed-draft-reply.md`), kept
/// byte for byte in the tree.
const SEED: &str = include_str!("fixtures/seed-draft-reply.md");

const SEED_SUBJECT: &str = "Re: John Mao update: OpenAI org, data platforms (Rockset, Snowflake, CosmosDB, DAQ) and engineering relationship";

/// One test's world: a server, a user, a vault and a config.
struct World {
    server: MailServer,
    user: TestUser,
    vault: tempfile::TempDir,
    config: PathBuf,
}

impl World {
    fn new(hint: &str) -> World {
        World::with(hint, MailServer::start())
    }

    fn with(hint: &str, server: MailServer) -> World {
        let user = server.add_user(hint);
        let vault = temp_vault();
        let config = write_config(
            &vault.path().join(".config"),
            vault.path(),
            &server,
            &user,
            "",
        );
        World {
            server,
            user,
            vault,
            config,
        }
    }

    fn draft(&self, name: &str, text: &str) -> PathBuf {
        let path = self.vault.path().join("Drafts/Email").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn bridge(&self, args: &[&str], drafts: &[&Path]) -> Output {
        bridge_command(&self.config)
            .args(args)
            .args(drafts)
            .output()
            .expect("run bridge")
    }

    /// `bridge push` that must succeed.
    fn push(&self, drafts: &[&Path]) -> Output {
        let output = self.bridge(&["push"], drafts);
        assert!(
            output.status.success(),
            "bridge push failed:\n{}\n{}",
            text(&output),
            self.server.log()
        );
        output
    }

    fn drafts(&self) -> Vec<Message> {
        self.server.messages(&self.user, "Drafts")
    }
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The decoded text/plain and text/html bodies, by mail-parser (not ours).
fn bodies(message: &Message) -> (String, String) {
    let parsed = mail_parser::MessageParser::default()
        .parse(&message.raw)
        .expect("the pushed message parses");
    assert_eq!(parsed.text_body_count(), 1, "{}", message.text());
    assert_eq!(parsed.html_body_count(), 1, "{}", message.text());
    (
        parsed.body_text(0).unwrap().replace("\r\n", "\n"),
        parsed.body_html(0).unwrap().replace("\r\n", "\n"),
    )
}

/// A front-matter value as written in the note (quotes removed).
fn front_matter_value(note: &str, key: &str) -> Option<String> {
    let front_matter = note.split("\n---\n").next()?;
    front_matter.lines().find_map(|line| {
        line.strip_prefix(&format!("{key}: "))
            .map(|v| v.trim_matches('"').to_string())
    })
}

#[test]
fn the_seed_draft_is_appended_to_drafts_as_a_reply_and_the_note_records_it() {
    let world = World::new("push-seed");
    let path = world.draft("seed-draft-reply.md", SEED);
    let output = world.push(&[&path]);
    assert!(
        stderr(&output).contains("no In-Reply-To"),
        "push must warn that the reply is not threaded:\n{}",
        text(&output)
    );
    assert!(
        stderr(&output).contains("seed-draft-reply.md"),
        "{}",
        text(&output)
    );

    let drafts = world.drafts();
    assert_eq!(drafts.len(), 1, "{drafts:?}");
    let message = &drafts[0];
    assert!(message.has_flag("\\Draft"), "{:?}", message.flags);
    assert!(message.has_flag("\\Seen"), "{:?}", message.flags);

    let from = message.header("From").unwrap();
    assert!(
        from.contains("Test User") && from.contains(&world.user.email),
        "{from}"
    );
    assert_eq!(
        message.header("To").unwrap(),
        "\"John Mao\" <john@vastdata.com>"
    );
    assert_eq!(message.header("Subject").unwrap(), SEED_SUBJECT);
    assert!(message.header("Date").is_some());
    let message_id = message.header("Message-ID").unwrap();
    assert!(
        message_id.starts_with('<') && message_id.ends_with("@example.test>"),
        "a fresh Message-ID on the account's domain: {message_id}"
    );
    assert_eq!(message.header("In-Reply-To"), None);
    assert_eq!(message.header("References"), None);
    assert_eq!(
        message.header("X-Uniform-Type-Identifier").as_deref(),
        Some("com.apple.mail-draft")
    );
    assert!(message
        .header("Content-Type")
        .unwrap()
        .starts_with("multipart/alternative;"));

    let (plain, html) = bodies(message);
    assert!(
        plain.starts_with("Hi John,\n\nThank you for your email."),
        "{plain}"
    );
    assert!(plain.contains("[TODO: Add answer]"), "{plain}");
    assert!(plain.trim_end().ends_with("Best,\nJason"), "{plain}");
    assert!(html.contains("<p>Hi John,</p>"), "{html}");
    assert!(html.contains("<li>John Mao committed to flying"), "{html}");
    for notes_only in [
        "Key Points to Address",
        "Original Summary",
        "auto-generated",
        "Regarding",
        "Draft Reply to John Mao",
        "Draft Response",
    ] {
        let raw = message.text();
        assert!(!plain.contains(notes_only), "{notes_only} in text/plain");
        assert!(!html.contains(notes_only), "{notes_only} in text/html");
        assert!(!raw.contains(notes_only), "{notes_only} in the message");
    }

    // The note: status, pushed_at, message_id and account written, and
    // nothing else changed, byte for byte.
    let note = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        front_matter_value(&note, "status").as_deref(),
        Some("pushed")
    );
    assert_eq!(front_matter_value(&note, "message_id"), Some(message_id));
    assert_eq!(
        front_matter_value(&note, "account").as_deref(),
        Some("test")
    );
    let pushed_at = front_matter_value(&note, "pushed_at").unwrap();
    assert!(
        pushed_at.len() == 25 && pushed_at.ends_with("+00:00"),
        "{pushed_at}"
    );
    let restored: String = note
        .split_inclusive('\n')
        .filter(|line| {
            !["pushed_at: ", "message_id: ", "account: "]
                .iter()
                .any(|key| line.starts_with(key))
        })
        .collect::<String>()
        .replacen("status: pushed\n", "status: pending\n", 1);
    assert_eq!(restored, SEED, "only the bridge's keys may change");
}

#[test]
fn the_fixture_is_the_seed_of_the_spec() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seed-draft-reply.md");
    if let Ok(original) = std::fs::read_to_string(&shared) {
        assert_eq!(original, SEED, "tests/fixtures/seed-draft-reply.md drifted");
    }
}

#[test]
fn a_gmail_drafts_folder_is_found_by_special_use() {
    let server = MailServer::start_with(ServerOptions {
        drafts_folder: "[Gmail]/Drafts".into(),
        ..ServerOptions::default()
    });
    let world = World::with("push-gmail", server);
    let path = world.draft("seed.md", SEED);
    let output = world.push(&[&path]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("[Gmail]/Drafts"),
        "{}",
        text(&output)
    );
    let drafts = world.server.messages(&world.user, "[Gmail]/Drafts");
    assert_eq!(drafts.len(), 1);
    assert!(drafts[0].has_flag("\\Draft"));
}

#[test]
fn pushing_again_replaces_the_bridges_copy_and_keeps_exactly_one() {
    let world = World::new("push-again");
    let path = world.draft("seed.md", SEED);
    world.push(&[&path]);
    let first = world.drafts();
    assert_eq!(first.len(), 1);

    // Unchanged note: nothing to do, the same copy stays.
    let output = world.push(&[&path]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("unchanged"),
        "{}",
        text(&output)
    );
    let same = world.drafts();
    assert_eq!(same.len(), 1);
    assert_eq!(same[0].uid, first[0].uid);
    assert_eq!(same[0].raw, first[0].raw);

    // Edited note: a new copy replaces the old one.
    let note = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        note.replace("Hi John,", "Hi John, and happy new year,"),
    )
    .unwrap();
    let output = world.push(&[&path]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("replacing the previous copy"),
        "{}",
        text(&output)
    );
    let second = world.drafts();
    assert_eq!(second.len(), 1, "exactly one bridge copy: {second:?}");
    assert_ne!(second[0].uid, first[0].uid);
    assert!(bodies(&second[0]).0.contains("happy new year"));
    let note = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        front_matter_value(&note, "message_id"),
        second[0].header("Message-ID")
    );

    // And once more, for good measure.
    std::fs::write(&path, note.replace("happy new year", "happy holidays")).unwrap();
    world.push(&[&path]);
    let third = world.drafts();
    assert_eq!(third.len(), 1, "{third:?}");
    assert!(bodies(&third[0]).0.contains("happy holidays"));
}

/// What Apple Mail does when the user edits a draft: it appends the edited
/// version and deletes the old one.
fn edit_in_mail_client(world: &World, uid: u32, original: &Message) -> Vec<u8> {
    let edited = original
        .text()
        .replace("Hi John,", "Hi John (edited in my mail client),")
        .into_bytes();
    let mut imap = world.server.imap(&world.user);
    imap.append("Drafts", "\\Draft \\Seen", None, &edited)
        .unwrap()
        .expect_ok("APPEND");
    imap.select("Drafts").unwrap().expect_ok("SELECT");
    imap.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
        .unwrap()
        .expect_ok("STORE");
    imap.command(&format!("UID EXPUNGE {uid}"))
        .unwrap()
        .expect_ok("UID EXPUNGE");
    imap.logout();
    edited
}

#[test]
fn a_copy_edited_in_a_mail_client_is_left_alone_and_push_refuses_without_force() {
    let world = World::new("push-edited");
    let path = world.draft("seed.md", SEED);
    world.push(&[&path]);
    let pushed = world.drafts().remove(0);
    let edited = edit_in_mail_client(&world, pushed.uid, &pushed);
    let theirs = world.drafts();
    assert_eq!(theirs.len(), 1);

    // The note changes too, then push: refused, and theirs is untouched.
    let note = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, note.replace("Best,", "Kind regards,")).unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    let output = world.bridge(&["push"], &[&path]);
    assert!(!output.status.success(), "{}", text(&output));
    let err = stderr(&output);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(err.contains("no longer in Drafts"), "{err}");
    let after = world.drafts();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].uid, theirs[0].uid);
    assert_eq!(after[0].raw, edited);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);

    // --force appends beside it.
    let output = world.bridge(&["push", "--force"], &[&path]);
    assert!(output.status.success(), "{}", text(&output));
    let both = world.drafts();
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[0].uid, theirs[0].uid);
    assert_eq!(both[0].raw, edited, "the user's copy is untouched");
    assert!(bodies(&both[1]).0.contains("Kind regards,"));

    // From now on the new copy is the bridge's: pushing replaces only it.
    let note = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, note.replace("Kind regards,", "Cheers,")).unwrap();
    world.push(&[&path]);
    let now = world.drafts();
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0].raw, edited);
    assert!(bodies(&now[1]).0.contains("Cheers,"));
}

#[test]
fn a_deleted_or_flagged_copy_makes_push_refuse() {
    let world = World::new("push-deleted");
    let flagged = world.draft("flagged.md", SEED);
    let deleted = world.draft("deleted.md", &SEED.replace("Hi John,", "Hello John,"));
    world.push(&[&flagged, &deleted]);
    let drafts = world.drafts();
    assert_eq!(drafts.len(), 2);
    let uid_of = |needle: &str| {
        drafts
            .iter()
            .find(|m| bodies(m).0.contains(needle))
            .map(|m| m.uid)
            .unwrap()
    };
    let (flagged_uid, deleted_uid) = (uid_of("Hi John,"), uid_of("Hello John,"));
    let mut imap = world.server.imap(&world.user);
    imap.select("Drafts").unwrap().expect_ok("SELECT");
    imap.command(&format!("UID STORE {flagged_uid} +FLAGS (\\Flagged)"))
        .unwrap()
        .expect_ok("STORE");
    imap.command(&format!("UID STORE {deleted_uid} +FLAGS (\\Deleted)"))
        .unwrap()
        .expect_ok("STORE");
    imap.command(&format!("UID EXPUNGE {deleted_uid}"))
        .unwrap()
        .expect_ok("UID EXPUNGE");
    imap.logout();
    for (path, why) in [(&flagged, "flagged"), (&deleted, "no longer in Drafts")] {
        let note = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, note.replace("Best,", "Thanks,")).unwrap();
        let output = world.bridge(&["push"], &[path]);
        assert!(!output.status.success(), "{}", text(&output));
        assert!(stderr(&output).contains(why), "{}", text(&output));
    }
    let left = world.drafts();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].uid, flagged_uid);
    assert!(left[0].has_flag("\\Flagged"));
}

#[test]
fn bad_drafts_name_file_and_key_and_nothing_is_appended() {
    let world = World::new("push-bad");
    let no_to = world.draft(
        "no-to.md",
        "---\ntype: draft-reply\nstatus: pending\nsubject: \"Re: x\"\n---\n\n## Draft Response\n\nHi\n",
    );
    let bad_address = world.draft(
        "bad-address.md",
        &SEED.replace(
            "\"John Mao <john@vastdata.com>\"",
            "\"John Mao <john at vastdata>\"",
        ),
    );
    let sent = world.draft("sent.md", &SEED.replace("status: pending", "status: sent"));
    for (path, key) in [
        (&no_to, "`to`"),
        (&bad_address, "`to`"),
        (&sent, "`status`"),
    ] {
        let before = std::fs::read_to_string(path).unwrap();
        let output = world.bridge(&["push"], &[path]);
        assert!(!output.status.success(), "{}", text(&output));
        let err = stderr(&output);
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(key), "{key}: {err}");
        assert_eq!(std::fs::read_to_string(path).unwrap(), before);
    }
    assert!(world.drafts().is_empty());

    // A good draft among bad ones is still pushed; the exit status says
    // that something failed.
    let good = world.draft("good.md", SEED);
    let output = world.bridge(&["push"], &[&no_to, &good, &sent]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(world.drafts().len(), 1);
}

#[test]
fn several_drafts_share_one_connection() {
    let world = World::new("push-many");
    let paths: Vec<PathBuf> = (1..=3)
        .map(|n| {
            world.draft(
                &format!("d{n}.md"),
                &SEED.replace("Hi John,", &format!("Hi John ({n}),")),
            )
        })
        .collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    // Dovecot's log process writes a moment later. The harness logged in
    // once already (it creates each user's INBOX): wait for that session's
    // logout before counting.
    let login = format!("Login: user=<{}>", world.user.username);
    let session = format!("imap({})", world.user.username);
    let count_logouts = || {
        world
            .server
            .log()
            .lines()
            .filter(|line| line.contains(&session) && line.contains("Disconnected"))
            .count()
    };
    let logouts = |n: usize| {
        wait_for(
            std::time::Duration::from_secs(5),
            "a session's logout in the log",
            || count_logouts() >= n,
        )
    };
    logouts(1);
    let logins_before = world.server.log().matches(&login).count();
    let logouts_before = count_logouts();
    world.push(&refs);
    logouts(logouts_before + 1);
    assert_eq!(
        world.server.log().matches(&login).count(),
        logins_before + 1,
        "{}",
        world.server.log()
    );
    assert_eq!(world.drafts().len(), 3);
}

#[test]
fn dry_run_prints_the_message_and_changes_nothing() {
    let world = World::new("push-dry");
    let path = world.draft("seed.md", SEED);
    let output = world.bridge(&["push", "--dry-run"], &[&path]);
    assert!(output.status.success(), "{}", text(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("\r\nX-Uniform-Type-Identifier: com.apple.mail-draft\r\n"),
        "{printed}"
    );
    assert!(
        printed.contains("Content-Type: multipart/alternative;"),
        "{printed}"
    );
    assert!(
        printed.contains("To: \"John Mao\" <john@vastdata.com>"),
        "{printed}"
    );
    assert!(!printed.contains("Original Summary"), "{printed}");
    assert!(
        stderr(&output).contains("no In-Reply-To"),
        "{}",
        text(&output)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), SEED);
    assert!(world.drafts().is_empty());
    assert!(!world.vault.path().join(".config/state").exists());
}

/// The mail behind the seed, synced first: the reply is threaded and quotes
/// the newest message.
#[test]
fn a_draft_of_a_synced_thread_is_threaded_and_quotes_the_last_message() {
    let world = World::new("push-thread");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample-mail");
    for name in [
        "01-john-openai.eml",
        "02-jason-reply.eml",
        "03-john-followup.eml",
    ] {
        world.server.append(
            &world.user,
            "INBOX",
            &std::fs::read(sample.join(name)).unwrap(),
        );
    }
    let output = bridge_command(&world.config).arg("sync").output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let source = std::fs::read_dir(world.vault.path().join("Sources/Email/2025"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "md"))
        .expect("the thread's source note");
    let draft = world.draft(
        "openai.md",
        &SEED.replace(
            "/Users/jason.vallery/Documents/Notes/Sources/Email/2025/2025-12-12_160426_5605_Re-OpenAI.md",
            &source.display().to_string(),
        ),
    );
    let output = world.push(&[&draft]);
    assert!(
        !stderr(&output).contains("In-Reply-To"),
        "{}",
        text(&output)
    );
    let message = world.drafts().remove(0);
    assert_eq!(
        message.header("In-Reply-To").as_deref(),
        Some("<CAJm-openai-update-3@mail.vastdata.com>")
    );
    let references = message.header("References").unwrap();
    assert!(
        references.starts_with("<openai-intro-0@example.com>")
            && references.ends_with("<CAJm-openai-update-3@mail.vastdata.com>"),
        "{references}"
    );
    assert_eq!(message.header("Subject").unwrap(), SEED_SUBJECT);
    let (plain, html) = bodies(&message);
    assert!(
        plain.contains("\nOn Sat, 13 Dec 2025 09:15:02 -0800, John Mao <john@vastdata.com> wrote:\n> Thanks Jason."),
        "{plain}"
    );
    assert!(html.contains("<blockquote type=\"cite\""), "{html}");
    assert!(html.contains("Thanks Jason."), "{html}");
}

/// A run killed between its APPEND and recording the UID left the copy
/// marked `appending`: the next push finds it by Message-ID and replaces it.
#[test]
fn a_push_killed_after_its_append_leaves_no_stray_copy() {
    let world = World::new("push-crash");
    let path = world.draft("seed.md", SEED);
    world.push(&[&path]);
    let state = world.vault.path().join(".config/state/state.sqlite3");
    let db = rusqlite::Connection::open(&state).unwrap();
    let changed = db
        .execute(
            "UPDATE pushed_drafts SET uid = NULL, uidvalidity = NULL, state = 'appending'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    // And a record of an APPEND that never reached the server.
    db.execute(
        "INSERT INTO pushed_drafts SELECT account, '<never@example.test>', draft_path, folder,
             NULL, NULL, size, sha256, date_unix, pushed_unix - 1, in_reply_to, 'appending'
         FROM pushed_drafts",
        [],
    )
    .unwrap();
    drop(db);
    let note = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, note.replace("Best,", "Regards,")).unwrap();
    world.push(&[&path]);
    let drafts = world.drafts();
    assert_eq!(drafts.len(), 1, "{drafts:?}");
    assert!(bodies(&drafts[0]).0.contains("Regards,"));
}

/// After a UIDVALIDITY change the recorded UID means nothing: the copy is
/// found again by its Message-ID and its bytes.
#[test]
fn a_uidvalidity_change_does_not_orphan_the_pushed_copy() {
    let world = World::new("push-uidvalidity");
    let path = world.draft("seed.md", SEED);
    world.push(&[&path]);
    world.server.set_uidvalidity(&world.user, "Drafts", 4242);
    let note = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, note.replace("Best,", "Regards,")).unwrap();
    world.push(&[&path]);
    let drafts = world.drafts();
    assert_eq!(drafts.len(), 1, "{drafts:?}");
    assert!(bodies(&drafts[0]).0.contains("Regards,"));
}
