//! Draft generation: the `command` and `openai` generators on their own (a real child
//! process; a local HTTP server that speaks the chat completions protocol), and the
//! rules of when drafts are made, kept, marked stale or answered, through `bridge
//! sync` and `bridge generate` against a real Dovecot.

#[path = "generate/corpus.rs"]
mod corpus;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailbridge::analyze::analyze_thread;
use mailbridge::config::Config;
use mailbridge::credentials::Secret;
use mailbridge::draft::DraftNote;
use mailbridge::generate::{CommandGenerator, DraftInput, Generator, OpenAiGenerator};
use mailbridge::message::{parse_message, ParsedMessage};

use support::*;

// ---------------------------------------------------------------------------
// Generators on their own

fn test_config() -> Config {
    Config::parse(
        "vault: /home/jason/Notes\naccounts:\n  work:\n    email: jason@example.com\n    name: Jason Vallery\n    imap: { host: imap.example.com }\n",
        Path::new("/tmp/config.yaml"),
    )
    .unwrap()
}

fn seed_messages() -> Vec<ParsedMessage> {
    let case = corpus::load("t-en-seed-openai");
    corpus::raw_messages("t-en-seed-openai", &case)
        .iter()
        .map(|raw| parse_message(raw).unwrap())
        .collect()
}

fn seed_input(config: &Config) -> DraftInput<'_> {
    let messages = seed_messages();
    let analysis = analyze_thread(&messages, &["jason@example.com".into()], 0);
    DraftInput {
        account: &config.accounts["work"],
        thread_id: "<t-en-seed-openai-0@corpus.test>".into(),
        subject: "Re: OpenAI".into(),
        messages,
        analysis,
        source_file: "/home/jason/Notes/Sources/Email/2025/x.md".into(),
        source_link: "Sources/Email/2025/x".into(),
        user_addresses: vec!["jason@example.com".into()],
        now_unix: 1_767_640_404,
    }
}

fn sh(script: &str, timeout: Duration) -> Generator {
    Generator::with_command(CommandGenerator {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        timeout,
    })
}

fn response_of(note: &str) -> String {
    DraftNote::parse(Path::new("d.md"), note.to_string())
        .unwrap()
        .email_markdown()
        .to_string()
}

#[test]
fn command_output_is_the_draft_response() {
    let config = test_config();
    let input = seed_input(&config);
    let dir = tempfile::tempdir().unwrap();
    let stdin_copy = dir.path().join("stdin.json");
    // Plain Markdown on stdout; the context arrives as JSON on stdin.
    let generator = sh(
        &format!(
            "cat > '{}'; printf 'Hi John,\\n\\nNo, not yet.\\n\\nJason\\n'",
            stdin_copy.display()
        ),
        Duration::from_secs(10),
    );
    let note = generator.draft_note(&input).unwrap();
    assert_eq!(response_of(&note), "Hi John,\n\nNo, not yet.\n\nJason");
    let context: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stdin_copy).unwrap()).unwrap();
    assert_eq!(context["version"], 1);
    assert_eq!(context["draft"]["to"][0], "John Mao <john@vastdata.com>");
    assert_eq!(
        context["thread"]["messages"][0]["from"]["address"],
        "john@vastdata.com"
    );
    assert_eq!(context["analysis"]["needs_reply"], true);
    assert_eq!(context["questions"].as_array().unwrap().len(), 2);
    // The rest of the note is the template's.
    assert!(note.contains("# Draft Reply to John Mao\n"), "{note}");
    assert!(
        note.contains("## Original Summary\n\n**John Mao**:"),
        "{note}"
    );

    // A JSON object fills the sections it names.
    let generator = sh(
        r#"cat >/dev/null; printf '{"draft_response": "Hi John,\\n\\nYes.", "key_points": ["Rockset: yes"], "summary": "John asks about Rockset."}'"#,
        Duration::from_secs(10),
    );
    let note = generator.draft_note(&input).unwrap();
    assert_eq!(response_of(&note), "Hi John,\n\nYes.");
    assert!(
        note.contains("## Key Points to Address\n\n- Rockset: yes\n"),
        "{note}"
    );
    assert!(
        note.contains("## Original Summary\n\nJohn asks about Rockset.\n"),
        "{note}"
    );
}

#[test]
fn a_failing_command_gives_no_draft_and_says_why() {
    let config = test_config();
    let input = seed_input(&config);
    let err = sh(
        "cat >/dev/null; echo 'model offline' >&2; exit 3",
        Duration::from_secs(10),
    )
    .draft_note(&input)
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(message.contains("model offline"), "{message}");
    for (script, why) in [
        ("cat >/dev/null", "printed nothing"),
        ("cat >/dev/null; echo '{\"text\": 1}'", "draft_response"),
    ] {
        let message = format!(
            "{:#}",
            sh(script, Duration::from_secs(10))
                .draft_note(&input)
                .unwrap_err()
        );
        assert!(message.contains(why), "{script}: {message}");
    }
    let missing = Generator::with_command(CommandGenerator {
        argv: vec!["/nonexistent/drafter".into()],
        timeout: Duration::from_secs(10),
    });
    let message = format!("{:#}", missing.draft_note(&input).unwrap_err());
    assert!(message.contains("/nonexistent/drafter"), "{message}");
}

#[test]
fn a_command_that_hangs_is_killed_with_its_children() {
    let config = test_config();
    let input = seed_input(&config);
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    // A script whose child outlives it unless the whole group is killed; it never
    // reads stdin either.
    let script = format!("sleep 30 & echo $! > '{}'; wait", pid_file.display());
    let started = Instant::now();
    let err = sh(&script, Duration::from_millis(500))
        .draft_note(&input)
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let message = format!("{err:#}");
    assert!(message.contains("did not finish within 0.5s"), "{message}");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = pid.trim();
    wait_for(Duration::from_secs(5), "the command's child to die", || {
        // Gone, or a zombie waiting for init.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.split_whitespace().nth(2) == Some("Z"),
        }
    });
}

// ---------------------------------------------------------------------------
// A chat completions server on 127.0.0.1, scripted per request

#[derive(Clone)]
enum Reply {
    Json(u16, String),
    /// Status, extra header lines, body.
    With(u16, &'static str, String),
    /// Reads the request, then says nothing until the test is long over.
    Hang,
}

#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct FakeServer {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Answers request n with `replies[n]` (the last one again after that), at most
/// 20 requests; every connection is closed after its answer.
fn fake_server(replies: Vec<Reply>) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().take(20).enumerate() {
            let Ok(stream) = stream else { continue };
            let reply = replies[n.min(replies.len() - 1)].clone();
            let log = log.clone();
            std::thread::spawn(move || serve(stream, reply, &log));
        }
    });
    FakeServer { url, seen }
}

fn serve(stream: TcpStream, reply: Reply, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    log.lock().unwrap().push(Seen {
        request_line: request_line.trim_end().to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, extra, body) = match reply {
        Reply::Hang => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        Reply::Json(status, body) => (status, "", body),
        Reply::With(status, extra, body) => (status, extra, body),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn completion(text: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }]
    })
    .to_string()
}

const KEY: &str = "sk-test-0123456789abcdef";

fn openai(server: &FakeServer, timeout: Duration) -> Generator {
    let mut client = OpenAiGenerator::new(
        &format!("{}/", server.url),
        "llama3.1",
        Some(Secret::new(KEY)),
        timeout,
    );
    client.backoff = Duration::from_millis(50);
    Generator::with_openai(client)
}

#[test]
fn openai_success_puts_the_model_reply_in_the_note() {
    let config = test_config();
    let input = seed_input(&config);
    let server = fake_server(vec![Reply::Json(
        200,
        completion(
            "<think>Two questions.</think>\nHi John,\n\nNot yet; I'll check.\n\nBest,\nJason",
        ),
    )]);
    let note = openai(&server, Duration::from_secs(10))
        .draft_note(&input)
        .unwrap();
    assert_eq!(
        response_of(&note),
        "Hi John,\n\nNot yet; I'll check.\n\nBest,\nJason"
    );
    assert!(note.starts_with("---\ntype: draft-reply\n"), "{note}");
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["model"], "llama3.1");
    assert_eq!(body["messages"][0]["role"], "system");
    let prompt = body["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.contains("Has anyone at VAST previously evaluated Rockset"),
        "{prompt}"
    );
    assert!(
        prompt.contains("### From John Mao <john@vastdata.com>"),
        "{prompt}"
    );
}

#[test]
fn openai_429_is_retried_after_retry_after() {
    let config = test_config();
    let input = seed_input(&config);
    let server = fake_server(vec![
        Reply::With(
            429,
            "Retry-After: 1\r\n",
            r#"{"error":{"message":"Rate limit reached"}}"#.into(),
        ),
        Reply::Json(503, "overloaded".into()),
        Reply::Json(200, completion("Hi John,\n\nYes.")),
    ]);
    let started = Instant::now();
    let note = openai(&server, Duration::from_secs(10))
        .draft_note(&input)
        .unwrap();
    assert_eq!(response_of(&note), "Hi John,\n\nYes.");
    assert_eq!(server.seen.lock().unwrap().len(), 3);
    // Retry-After: 1 was honoured (the backoff alone is 50 ms + 100 ms).
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn openai_gives_up_on_repeated_500s() {
    let config = test_config();
    let input = seed_input(&config);
    let server = fake_server(vec![Reply::Json(
        500,
        r#"{"error":{"message":"CUDA out of memory"}}"#.into(),
    )]);
    let err = openai(&server, Duration::from_secs(10))
        .draft_note(&input)
        .unwrap_err();
    let message = format!("{err:#}");
    assert_eq!(server.seen.lock().unwrap().len(), 4, "{message}");
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(message.contains("CUDA out of memory"), "{message}");
    assert!(message.contains("after 4 attempts"), "{message}");
    assert!(!message.contains(KEY), "{message}");
}

#[test]
fn openai_that_hangs_times_out() {
    let config = test_config();
    let input = seed_input(&config);
    let server = fake_server(vec![Reply::Hang]);
    let started = Instant::now();
    let err = openai(&server, Duration::from_millis(700))
        .draft_note(&input)
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let message = format!("{err:#}");
    assert!(message.contains("within 0.7s"), "{message}");
    // A timeout is not retried: the next attempt would hang as long.
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[test]
fn openai_malformed_answers_and_refusals_give_no_draft() {
    let config = test_config();
    let input = seed_input(&config);
    for (reply, expected, requests) in [
        (
            Reply::Json(200, "{\"choices\": [".into()),
            "not a chat completion",
            1,
        ),
        (
            Reply::Json(200, r#"{"choices": []}"#.into()),
            "no choices[0].message.content",
            1,
        ),
        (Reply::Json(200, completion("  ")), "empty reply", 1),
        (
            Reply::Json(401, r#"{"error":{"message":"Incorrect API key"}}"#.into()),
            "refused the API key",
            1,
        ),
        (Reply::Json(404, "404 page not found".into()), "base_url", 1),
    ] {
        let server = fake_server(vec![reply]);
        let err = openai(&server, Duration::from_secs(10))
            .draft_note(&input)
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains(expected), "{expected}: {message}");
        assert!(!message.contains(KEY), "{message}");
        assert_eq!(server.seen.lock().unwrap().len(), requests, "{message}");
    }
}

// ---------------------------------------------------------------------------
// Through bridge sync and bridge generate, against a real Dovecot

/// One test's world: a server, a user, a vault and a config with a `drafts:` part.
struct World {
    server: MailServer,
    user: TestUser,
    vault: tempfile::TempDir,
    config: PathBuf,
}

/// The test mail is from December 2025; this reaches back far enough for it.
const ALL_AGES: &str = "drafts:\n  max_age: 5200w\n";

impl World {
    fn new(hint: &str, drafts_yaml: &str) -> World {
        let server = MailServer::start();
        let user = server.add_user(hint);
        let vault = temp_vault();
        let config = write_config_with(
            &vault.path().join(".config"),
            vault.path(),
            &server,
            &user,
            "",
            drafts_yaml,
        );
        World {
            server,
            user,
            vault,
            config,
        }
    }

    /// Rewrites the config's `drafts:` part.
    fn set_drafts(&self, drafts_yaml: &str) {
        write_config_with(
            &self.vault.path().join(".config"),
            self.vault.path(),
            &self.server,
            &self.user,
            "",
            drafts_yaml,
        );
    }

    fn run(&self, args: &[&str]) -> Output {
        bridge_command(&self.config)
            .args(args)
            .output()
            .expect("run bridge")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "bridge {args:?} failed:\n{}\n{}\n{}",
            text(&output.stdout),
            text(&output.stderr),
            self.server.log()
        );
        output
    }

    fn sync(&self) -> Output {
        self.ok(&["sync"])
    }

    fn me(&self) -> String {
        format!("Test User <{}>", self.user.email)
    }

    fn drafts(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(self.vault.path().join("Drafts/Email"))
            .map(|dir| {
                dir.map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "md"))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }

    fn only_draft(&self) -> (PathBuf, String) {
        let drafts = self.drafts();
        assert_eq!(drafts.len(), 1, "{drafts:?}");
        let text = std::fs::read_to_string(&drafts[0]).unwrap();
        (drafts[0].clone(), text)
    }

    fn source_note(&self, name_part: &str) -> PathBuf {
        let dir = self.vault.path().join("Sources/Email/2025");
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains(name_part))
            .unwrap_or_else(|| panic!("no source note with {name_part} in {}", dir.display()))
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A plain text message; `refs` are the ancestors, oldest first.
fn mail(
    id: &str,
    from: &str,
    to: &str,
    subject: &str,
    date: &str,
    refs: &[&str],
    body: &str,
) -> Vec<u8> {
    support::rfc822(
        Some(id),
        from,
        to,
        subject,
        date,
        refs,
        support::PLAIN_TEXT,
        body,
    )
}

const JOHN: &str = "John Mao <john@vastdata.example>";

fn johns_question(world: &World) -> Vec<u8> {
    mail(
        "<root@vastdata.example>",
        JOHN,
        &world.me(),
        "OpenAI",
        "Fri, 12 Dec 2025 16:04:26 -0800",
        &[],
        "Hi,\n\nHas anyone at VAST evaluated Rockset in depth? And what do you need from my contact?\n\nI will fly to San Francisco in January.\n\nBest,\nJohn",
    )
}

fn johns_followup(world: &World) -> Vec<u8> {
    mail(
        "<followup@vastdata.example>",
        JOHN,
        &world.me(),
        "Re: OpenAI",
        "Sat, 13 Dec 2025 09:15:02 -0800",
        &["<root@vastdata.example>"],
        "One more thing: could you also send me the deck before Friday?\n\nJohn",
    )
}

fn newsletter(world: &World) -> Vec<u8> {
    let mut raw =
        b"List-Id: Storage Weekly <weekly.storage.example>\r\nPrecedence: bulk\r\n".to_vec();
    raw.extend(mail(
        "<nl-212@storage.example>",
        "Storage Weekly <no-reply@storage.example>",
        &world.user.email,
        "Storage Weekly #212",
        "Mon, 15 Dec 2025 06:00:00 +0000",
        &[],
        "What is new this week? Read on!",
    ));
    raw
}

#[test]
fn sync_drafts_a_reply_for_the_thread_that_awaits_one_and_links_both_ways() {
    let world = World::new("gen-basic", ALL_AGES);
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    world
        .server
        .append(&world.user, "INBOX", &newsletter(&world));
    let output = world.sync();
    assert!(
        text(&output.stdout).contains("1 drafts written"),
        "{}",
        text(&output.stdout)
    );
    let (path, draft) = world.only_draft();
    assert_eq!(path.file_name().unwrap(), "2025-12-12_Re-OpenAI.md");
    let note = DraftNote::parse(&path, draft.clone()).unwrap();
    assert_eq!(
        note.text_value("type").unwrap().as_deref(),
        Some("draft-reply")
    );
    assert_eq!(
        note.text_value("status").unwrap().as_deref(),
        Some("pending")
    );
    assert_eq!(note.text_value("to").unwrap().as_deref(), Some(JOHN));
    assert_eq!(
        note.text_value("subject").unwrap().as_deref(),
        Some("Re: OpenAI")
    );
    assert_eq!(
        note.text_value("in_reply_to").unwrap().as_deref(),
        Some("<root@vastdata.example>")
    );
    let source = world.source_note("_OpenAI.md");
    assert_eq!(
        note.text_value("source_file").unwrap().unwrap(),
        std::path::absolute(&source).unwrap().display().to_string()
    );
    let source_link = source
        .strip_prefix(world.vault.path())
        .unwrap()
        .with_extension("");
    assert_eq!(
        note.text_value("source_note").unwrap().unwrap(),
        format!("[[{}]]", source_link.display())
    );
    let email = note.email_markdown();
    assert!(email.starts_with("Hi John,\n"), "{email}");
    assert_eq!(email.matches("[TODO: Add answer]").count(), 2, "{email}");
    assert!(email.ends_with("Best,\nTest"), "{email}");
    // The source note links back.
    let source_text = std::fs::read_to_string(&source).unwrap();
    assert!(
        source_text.contains("draft: \"[[Drafts/Email/2025-12-12_Re-OpenAI]]\"\n"),
        "{source_text}"
    );
    // A second sync changes nothing, in the draft or the source note.
    world.sync();
    assert_eq!(world.only_draft().1, draft);
    assert_eq!(std::fs::read_to_string(&source).unwrap(), source_text);
    // The draft is one push accepts, threaded to John's message.
    let printed = world.ok(&["push", "--dry-run", path.to_str().unwrap()]);
    let message = text(&printed.stdout);
    assert!(
        message.contains("In-Reply-To: <root@vastdata.example>"),
        "{message}"
    );
    assert!(message.contains("Subject: Re: OpenAI"), "{message}");
}

#[test]
fn old_threads_and_no_generate_get_no_draft_until_bridge_generate() {
    // Default max_age (14 days): December 2025 is long ago.
    let world = World::new("gen-old", "");
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    world.sync();
    assert!(world.drafts().is_empty());
    // In range, but --no-generate.
    world.set_drafts(ALL_AGES);
    world
        .server
        .append(&world.user, "INBOX", &johns_followup(&world));
    world.ok(&["sync", "--no-generate"]);
    assert!(world.drafts().is_empty());
    // bridge generate catches up with every thread that awaits a reply.
    let output = world.ok(&["generate"]);
    assert!(
        text(&output.stdout).contains("1 new drafts"),
        "{}",
        text(&output.stdout)
    );
    let (path, draft) = world.only_draft();
    assert_eq!(path.file_name().unwrap(), "2025-12-13_Re-OpenAI.md");
    assert!(draft.contains("could you also send me the deck"), "{draft}");
    // Nothing more to do the second time.
    let output = world.ok(&["generate"]);
    assert!(
        text(&output.stdout).contains("0 new drafts"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(world.only_draft().1, draft);
}

#[test]
fn an_edited_draft_is_never_overwritten_and_news_marks_it_stale() {
    let world = World::new("gen-stale", ALL_AGES);
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    world.sync();
    let (path, draft) = world.only_draft();
    let edited = draft.replacen("[TODO: Add answer]", "Yes, we looked at it in 2024.", 1);
    std::fs::write(&path, &edited).unwrap();
    world
        .server
        .append(&world.user, "INBOX", &johns_followup(&world));
    world.sync();
    let (same_path, now) = world.only_draft();
    assert_eq!(same_path, path);
    // The user's text, with one key more, and not one other byte changed.
    let end = edited[4..].find("\n---\n").unwrap() + 4;
    let expected = format!("{}\nstale: true{}", &edited[..end], &edited[end..]);
    assert_eq!(now, expected);
    // Asked by name, the edited draft is refused rather than overwritten.
    let source = world.source_note("_OpenAI.md");
    let output = world.run(&["generate", source.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("edited"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
}

#[test]
fn an_unedited_draft_follows_the_thread() {
    let world = World::new("gen-regen", ALL_AGES);
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    world.sync();
    let (path, first) = world.only_draft();
    assert!(!first.contains("deck"), "{first}");
    world
        .server
        .append(&world.user, "INBOX", &johns_followup(&world));
    world.sync();
    let (same_path, second) = world.only_draft();
    assert_eq!(same_path, path);
    assert!(
        second.contains("could you also send me the deck before Friday?: [TODO: Add answer]"),
        "{second}"
    );
    assert!(
        second.contains("in_reply_to: \"<followup@vastdata.example>\""),
        "{second}"
    );
    assert!(!second.contains("stale"), "{second}");
}

#[test]
fn the_users_own_reply_marks_the_pending_draft_answered() {
    let world = World::new("gen-answered", ALL_AGES);
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    world.sync();
    let (path, draft) = world.only_draft();
    let reply = mail(
        "<my-reply@example.test>",
        &world.me(),
        JOHN,
        "Re: OpenAI",
        "Sat, 13 Dec 2025 08:00:00 -0800",
        &["<root@vastdata.example>"],
        "Hi John, yes: we evaluated it in 2024. Details to follow.",
    );
    world.server.append(&world.user, "Sent", &reply);
    world.sync();
    let now = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        now,
        draft.replacen("status: pending\n", "status: answered\n", 1)
    );
    // `answered` is history: push refuses it, status counts it.
    let output = world.run(&["push", "--dry-run", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("answered"),
        "{}",
        text(&output.stderr)
    );
    let status = text(&world.ok(&["status", "--json"]).stdout);
    assert!(status.contains("\"answered\": 1"), "{status}");
}

#[test]
fn bridge_generate_for_a_named_note_and_a_draft_given_by_mistake() {
    let world = World::new("gen-named", "");
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    world.ok(&["sync"]);
    assert!(world.drafts().is_empty(), "too old for the default max_age");
    let source = world.source_note("_OpenAI.md");
    let output = world.ok(&["generate", source.to_str().unwrap()]);
    assert!(
        text(&output.stdout).contains("new draft"),
        "{}",
        text(&output.stdout)
    );
    let (path, first) = world.only_draft();
    // Again: unedited, so regenerated in place (same file).
    world.ok(&["generate", source.to_str().unwrap()]);
    assert_eq!(world.only_draft().0, path);
    assert!(first.contains("type: draft-reply"));
    let output = world.run(&["generate", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("is a draft note"),
        "{}",
        text(&output.stderr)
    );
    let output = world.run(&["generate", "/nonexistent/note.md"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("/nonexistent/note.md"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_failing_command_does_not_stop_the_sync_and_is_tried_again() {
    let world = World::new("gen-command", "");
    let dir = world.vault.path().join(".config");
    let script = dir.join("drafter.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncat > /dev/null\nif [ -f \"$0.broken\" ]; then echo 'model offline' >&2; exit 3; fi\nprintf '{\"draft_response\": \"Hi John,\\\\n\\\\nFrom the script.\\\\n\\\\nTest\"}'\n",
    )
    .unwrap();
    std::fs::write(dir.join("drafter.sh.broken"), "").unwrap();
    let yaml = format!(
        "drafts:\n  generator: command\n  command: [\"/bin/sh\", {:?}]\n  timeout: 5s\n  max_age: 5200w\n",
        script.display().to_string()
    );
    world.set_drafts(&yaml);
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    let output = world.sync();
    assert!(world.drafts().is_empty());
    assert!(
        text(&output.stdout).contains("1 drafts failed"),
        "{}",
        text(&output.stdout)
    );
    assert!(
        text(&output.stderr).contains("model offline"),
        "{}",
        text(&output.stderr)
    );
    // Fixed: the next sync, with no new mail, makes the draft it owes.
    std::fs::remove_file(dir.join("drafter.sh.broken")).unwrap();
    let output = world.sync();
    assert!(
        text(&output.stdout).contains(" 0 new messages"),
        "{}",
        text(&output.stdout)
    );
    let (path, _) = world.only_draft();
    let note = DraftNote::load(&path).unwrap();
    assert_eq!(
        note.email_markdown(),
        "Hi John,\n\nFrom the script.\n\nTest"
    );
}

#[test]
fn a_command_that_hangs_is_cut_off_and_the_sync_goes_on() {
    let world = World::new("gen-hang", "");
    world.set_drafts(
        "drafts:\n  generator: command\n  command: [\"/bin/sleep\", \"30\"]\n  timeout: 1s\n  max_age: 5200w\n",
    );
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    let started = Instant::now();
    let output = world.sync();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(world.drafts().is_empty());
    assert!(
        text(&output.stderr).contains("did not finish within 1s"),
        "{}",
        text(&output.stderr)
    );
    assert!(world.source_note("_OpenAI.md").exists());
}

#[test]
fn the_openai_generator_through_sync_with_the_key_from_the_environment() {
    let server = fake_server(vec![Reply::Json(
        200,
        completion("Hi John,\n\nWe have not, but Priya knows Rockset.\n\nBest,\nTest"),
    )]);
    let world = World::new("gen-openai", "");
    world.set_drafts(&format!(
        "drafts:\n  generator: openai\n  openai: {{ base_url: \"{}\", model: \"qwen2.5\", api_key: {{ env: MB_TEST_OPENAI_KEY }} }}\n  max_age: 5200w\n",
        server.url
    ));
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    let output = bridge_command(&world.config)
        .args(["-v", "sync"])
        .env("MB_TEST_OPENAI_KEY", KEY)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let (path, _) = world.only_draft();
    let note = DraftNote::load(&path).unwrap();
    assert_eq!(
        note.email_markdown(),
        "Hi John,\n\nWe have not, but Priya knows Rockset.\n\nBest,\nTest"
    );
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    // The key is in no log line, even at debug level.
    assert!(!text(&output.stderr).contains(KEY));
    assert!(!text(&output.stdout).contains(KEY));
}

#[test]
fn push_auto_puts_new_drafts_in_the_drafts_folder() {
    let world = World::new("gen-auto", "drafts:\n  max_age: 5200w\n  push: auto\n");
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    world.sync();
    let (path, _) = world.only_draft();
    let note = DraftNote::load(&path).unwrap();
    assert_eq!(
        note.text_value("status").unwrap().as_deref(),
        Some("pushed")
    );
    let in_drafts = world.server.messages(&world.user, "Drafts");
    assert_eq!(in_drafts.len(), 1);
    assert_eq!(
        in_drafts[0].header("In-Reply-To").as_deref(),
        Some("<root@vastdata.example>")
    );
    assert!(in_drafts[0].has_flag("\\Draft"));
    // Nothing new: nothing pushed again.
    world.sync();
    assert_eq!(world.server.messages(&world.user, "Drafts").len(), 1);
}

#[test]
fn a_sync_killed_in_the_draft_step_leaves_the_draft_to_the_next_run() {
    let world = World::new("gen-killed", "");
    let dir = world.vault.path().join(".config");
    let script = dir.join("drafter.sh");
    // The first run of the command kills bridge itself (its parent): after the notes
    // and the cursor are committed, before any draft exists.
    std::fs::write(
        &script,
        "#!/bin/sh\ncat > /dev/null\nif [ ! -f \"$0.ran\" ]; then touch \"$0.ran\"; kill -9 $PPID; sleep 5; fi\nprintf 'Hi John,\\n\\nAfter the crash.\\n\\nTest\\n'\n",
    )
    .unwrap();
    world.set_drafts(&format!(
        "drafts:\n  generator: command\n  command: [\"/bin/sh\", {:?}]\n  max_age: 5200w\n",
        script.display().to_string()
    ));
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    let killed = world.run(&["sync"]);
    assert!(!killed.status.success(), "the sync should have been killed");
    assert!(world.drafts().is_empty());
    // Nothing new on the server, but the thread is still queued.
    let output = world.sync();
    assert!(
        text(&output.stdout).contains(" 0 new messages"),
        "{}",
        text(&output.stdout)
    );
    assert!(
        text(&output.stdout).contains("1 drafts written"),
        "{}",
        text(&output.stdout)
    );
    let (path, _) = world.only_draft();
    assert_eq!(
        DraftNote::load(&path).unwrap().email_markdown(),
        "Hi John,\n\nAfter the crash.\n\nTest"
    );
}

#[test]
fn a_lost_state_store_adopts_the_drafts_instead_of_writing_them_twice() {
    let world = World::new("gen-adopt", ALL_AGES);
    world
        .server
        .append(&world.user, "INBOX", &johns_question(&world));
    world.sync();
    let (path, draft) = world.only_draft();
    std::fs::remove_dir_all(world.vault.path().join(".config/state")).unwrap();
    world.sync();
    assert_eq!(world.only_draft(), (path.clone(), draft.clone()));
    // Nothing proves the adopted draft is unedited: news marks it stale.
    world
        .server
        .append(&world.user, "INBOX", &johns_followup(&world));
    world.sync();
    let (_, now) = world.only_draft();
    assert!(now.contains("\nstale: true\n---\n"), "{now}");
    assert_eq!(now.replacen("\nstale: true\n", "\n", 1), draft);
}
