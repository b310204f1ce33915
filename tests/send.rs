//! `bridge send` through a real Postfix into a real Dovecot, checked with the
//! harness's own IMAP client.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use support::*;

const SEED: &str = include_str!("fixtures/seed-draft-reply.md");

/// A sender with SMTP, a recipient on the same server, a vault.
struct World {
    server: MailServer,
    smtp: SmtpServer,
    sender: TestUser,
    recipient: TestUser,
    vault: tempfile::TempDir,
    config: PathBuf,
}

impl World {
    fn new(hint: &str, security: SmtpSecurity) -> World {
        World::with(hint, security, ServerOptions::default(), |_, _| {
            String::new()
        })
    }

    /// `extra` adds account YAML for the sender (e.g. an OAuth2 token).
    fn with(
        hint: &str,
        security: SmtpSecurity,
        options: ServerOptions,
        extra: impl Fn(&MailServer, &TestUser) -> String,
    ) -> World {
        let server = MailServer::start_with(options);
        let smtp = SmtpServer::start(&server);
        let sender = server.add_user(hint);
        let recipient = server.add_user("recipient");
        let vault = temp_vault();
        let config = write_config(
            &vault.path().join(".config"),
            vault.path(),
            &server,
            &sender,
            &format!(
                "{}\n{}",
                smtp.account_yaml(security),
                extra(&server, &sender)
            ),
        );
        World {
            server,
            smtp,
            sender,
            recipient,
            vault,
            config,
        }
    }

    /// The seed, addressed to the recipient, with a Cc and a Bcc outside
    /// the test domain (they land in the outbound sink).
    fn draft(&self, name: &str) -> PathBuf {
        let text = SEED.replace(
            "to: \"John Mao <john@vastdata.com>\"\n",
            &format!(
                "to: \"Rita Recipient <{}>\"\ncc: \"Carol <carol@elsewhere.example>\"\nbcc: \"dan@elsewhere.example\"\n",
                self.recipient.email
            ),
        );
        let path = self.vault.path().join("Drafts/Email").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn bridge(&self, args: &[&str], draft: &Path) -> Output {
        bridge_command(&self.config)
            .args(args)
            .arg(draft)
            .stdin(Stdio::null())
            .output()
            .expect("run bridge")
    }

    fn logs(&self) -> String {
        format!("{}\n{}", self.server.log(), self.smtp.log())
    }

    fn ok(&self, args: &[&str], draft: &Path) -> Output {
        let output = self.bridge(args, draft);
        assert!(
            output.status.success(),
            "bridge {args:?} failed:\n{}\n{}",
            text(&output),
            self.logs()
        );
        output
    }

    fn folder(&self, folder: &str) -> Vec<Message> {
        self.server.messages(&self.sender, folder)
    }

    fn wait_for_delivery(&self, user: &TestUser) -> Vec<Message> {
        wait_for(Duration::from_secs(30), "delivery through Postfix", || {
            !self.server.messages(user, "INBOX").is_empty()
        });
        self.server.messages(user, "INBOX")
    }
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn status_of(path: &Path) -> String {
    let note = std::fs::read_to_string(path).unwrap();
    note.lines()
        .find_map(|l| l.strip_prefix("status: "))
        .unwrap()
        .to_string()
}

fn plain_body(message: &Message) -> String {
    mail_parser::MessageParser::default()
        .parse(&message.raw)
        .unwrap()
        .body_text(0)
        .unwrap()
        .replace("\r\n", "\n")
}

#[test]
fn send_delivers_files_in_sent_removes_the_draft_and_marks_it_sent() {
    let world = World::new("send-starttls", SmtpSecurity::Starttls);
    let path = world.draft("reply.md");
    world.ok(&["push"], &path);
    assert_eq!(world.folder("Drafts").len(), 1);
    let pushed_note = std::fs::read_to_string(&path).unwrap();

    let output = world.ok(&["send", "--yes"], &path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("sent to"), "{}", text(&output));

    let inbox = world.wait_for_delivery(&world.recipient);
    assert_eq!(inbox.len(), 1);
    let delivered = &inbox[0];
    assert_eq!(
        delivered.header("Subject").unwrap(),
        "Re: John Mao update: OpenAI org, data platforms (Rockset, Snowflake, CosmosDB, DAQ) and engineering relationship"
    );
    assert!(delivered
        .header("From")
        .unwrap()
        .contains(&world.sender.email));
    assert!(delivered
        .header("Cc")
        .unwrap()
        .contains("carol@elsewhere.example"));
    assert_eq!(
        delivered.header("Bcc"),
        None,
        "Bcc must not reach recipients"
    );
    assert_eq!(delivered.header("X-Uniform-Type-Identifier"), None);
    assert!(plain_body(delivered).starts_with("Hi John,"));
    assert!(!delivered.text().contains("Original Summary"));
    // Cc and Bcc outside the test domain reach the outbound sink.
    let outside = world.wait_for_delivery(world.smtp.outbound());
    assert!(!outside.is_empty());

    let sent = world.folder("Sent");
    assert_eq!(sent.len(), 1, "a copy in Sent");
    assert!(sent[0].has_flag("\\Seen"));
    assert!(!sent[0].has_flag("\\Draft"));
    assert_eq!(sent[0].header("Message-ID"), delivered.header("Message-ID"));
    assert!(sent[0]
        .header("Bcc")
        .unwrap()
        .contains("dan@elsewhere.example"));
    assert!(
        world.folder("Drafts").is_empty(),
        "the pushed copy is removed"
    );

    let note = std::fs::read_to_string(&path).unwrap();
    assert_eq!(status_of(&path), "sent");
    assert!(note.contains(&format!(
        "message_id: \"{}\"",
        delivered.header("Message-ID").unwrap()
    )));
    assert!(note.contains("sent_at: \""));
    // Only the bridge's keys changed.
    let keys = ["status: ", "message_id: ", "sent_at: "];
    let strip = |text: &str| -> String {
        text.split_inclusive('\n')
            .filter(|l| !keys.iter().any(|k| l.starts_with(k)))
            .collect()
    };
    assert_eq!(strip(&note), strip(&pushed_note));

    // Sent is final.
    let output = world.bridge(&["send", "--yes"], &path);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("`status`"));
    let output = world.bridge(&["push"], &path);
    assert!(!output.status.success());
}

#[test]
fn send_over_implicit_tls_without_a_push_leaves_other_drafts_alone() {
    let world = World::new("send-tls", SmtpSecurity::Tls);
    let theirs = b"From: someone@example.test\r\nSubject: my own draft\r\nMessage-ID: <mine@example.test>\r\n\r\nnot the bridge's\r\n";
    world
        .server
        .append_with(&world.sender, "Drafts", "\\Draft \\Seen", None, theirs);
    let path = world.draft("reply.md");
    world.ok(&["send", "--yes"], &path);
    assert_eq!(world.wait_for_delivery(&world.recipient).len(), 1);
    assert_eq!(world.folder("Sent").len(), 1);
    let drafts = world.folder("Drafts");
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0].raw, theirs);
    assert_eq!(status_of(&path), "sent");
}

#[test]
fn a_failing_smtp_server_changes_nothing() {
    let world = World::new("send-fail", SmtpSecurity::Starttls);
    let path = world.draft("reply.md");
    world.ok(&["push"], &path);
    let drafts_before = world.folder("Drafts");
    // Point SMTP at a port where nothing listens.
    let config = std::fs::read_to_string(&world.config).unwrap();
    // Port 1 (tcpmux): privileged, so no parallel test's server can take it
    // between choosing it and connecting, as a just-freed ephemeral port can.
    let closed: u16 = 1;
    let config = config.replace(
        &format!("port: {}, security: starttls", world.smtp.submission_port()),
        &format!("port: {closed}, security: starttls"),
    );
    std::fs::write(&world.config, config).unwrap();
    let note_before = std::fs::read_to_string(&path).unwrap();

    let output = world.bridge(&["send", "--yes"], &path);
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not sent"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "{stderr}");

    assert_eq!(std::fs::read_to_string(&path).unwrap(), note_before);
    let drafts = world.folder("Drafts");
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0].uid, drafts_before[0].uid);
    assert!(world.folder("Sent").is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert!(world.server.messages(&world.recipient, "INBOX").is_empty());
}

#[test]
fn send_without_yes_off_a_terminal_refuses() {
    let world = World::new("send-confirm", SmtpSecurity::Starttls);
    let path = world.draft("reply.md");
    let output = world.bridge(&["send"], &path);
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(status_of(&path), "pending");
    assert!(world.folder("Sent").is_empty());
}

#[test]
fn a_pushed_copy_edited_in_a_mail_client_survives_the_send() {
    let world = World::new("send-edited", SmtpSecurity::Starttls);
    let path = world.draft("reply.md");
    world.ok(&["push"], &path);
    let pushed = world.folder("Drafts").remove(0);
    // Another client flags the draft: it is the user's now.
    let mut imap = world.server.imap(&world.sender);
    imap.select("Drafts").unwrap().expect_ok("SELECT");
    imap.command(&format!("UID STORE {} +FLAGS (\\Flagged)", pushed.uid))
        .unwrap()
        .expect_ok("STORE");
    imap.logout();
    let output = world.ok(&["send", "--yes"], &path);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("left as it is"),
        "{}",
        text(&output)
    );
    assert_eq!(world.wait_for_delivery(&world.recipient).len(), 1);
    let drafts = world.folder("Drafts");
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0].uid, pushed.uid);
    assert_eq!(status_of(&path), "sent");
}

/// On a terminal (a pseudo-terminal from util-linux `script`), send shows
/// the message and asks; anything but yes sends nothing.
#[test]
fn on_a_terminal_send_asks_first() {
    let world = World::new("send-tty", SmtpSecurity::Starttls);
    let path = world.draft("reply.md");
    let run = |answer: &str| -> Output {
        let command = format!(
            "'{}' --config '{}' send '{}'",
            bridge_binary().display(),
            world.config.display(),
            path.display()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("util-linux `script` (apt-get install -y util-linux) runs the test on a pseudo-terminal");
        use std::io::Write as _;
        // Typed after the prompt shows; the pty buffers it until read.
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let output = run("n\n");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains("Send this message now? [y/N]"),
        "{}",
        text(&output)
    );
    assert!(
        shown.contains("Subject: Re: John Mao update"),
        "{}",
        text(&output)
    );
    assert!(shown.contains("not sent"), "{}", text(&output));
    assert_eq!(status_of(&path), "pending");
    assert!(world.folder("Sent").is_empty());

    let output = run("y\n");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("sent to"),
        "{}\n{}",
        text(&output),
        world.logs()
    );
    assert_eq!(world.wait_for_delivery(&world.recipient).len(), 1);
    assert_eq!(status_of(&path), "sent");
}

/// `auth: xoauth2`: the token that logs in to IMAP authenticates SMTP too.
#[test]
fn send_authenticates_with_an_oauth2_token() {
    let options = ServerOptions {
        oauth2: true,
        ..ServerOptions::default()
    };
    let world = World::with(
        "send-oauth",
        SmtpSecurity::Starttls,
        options,
        |server, user| {
            format!(
                "auth: xoauth2\ntoken: {{ command: \"echo {}\" }}",
                server.oauth2_token(user)
            )
        },
    );
    let path = world.draft("reply.md");
    world.ok(&["send", "--yes"], &path);
    assert_eq!(world.wait_for_delivery(&world.recipient).len(), 1);
    assert!(
        world.smtp.log().contains("sasl_method=XOAUTH2"),
        "{}",
        world.smtp.log()
    );
    assert_eq!(status_of(&path), "sent");
}

#[test]
fn a_server_that_files_sent_mail_itself_gets_no_second_copy() {
    let world = World::with(
        "send-saves-sent",
        SmtpSecurity::Starttls,
        ServerOptions::default(),
        |_, _| String::new(),
    );
    let yaml = std::fs::read_to_string(&world.config).unwrap();
    let yaml = yaml.replace(
        "security: starttls }",
        "security: starttls, saves_sent: true }",
    );
    assert!(yaml.contains("saves_sent: true"), "{yaml}");
    std::fs::write(&world.config, yaml).unwrap();
    let draft = world.draft("saves-sent.md");
    let output = world.ok(&["send", "--yes"], &draft);
    assert!(
        text(&output).contains("the server does that itself"),
        "{}",
        text(&output)
    );
    world.wait_for_delivery(&world.recipient);
    assert!(
        world.folder("Sent").is_empty(),
        "no copy may be filed in Sent"
    );
    assert_eq!(status_of(&draft), "sent");
}
