//! The IMAP layer (src/imap/) against a real Dovecot on loopback, plus a few
//! scripted peers for what a real server cannot be made to do on demand
//! (stay silent, omit STARTTLS) or to check the exact bytes we send.

mod support;

#[path = "faults/mitm.rs"]
mod mitm;

use std::time::Duration;

use mailbridge::config::{Endpoint, FolderChoice, Security};
use mailbridge::credentials::Secret;
use mailbridge::imap::{
    self, find_special, ConnectOptions, Credential, FoundBy, ImapError, ResponseCode, SpecialUse,
    Step,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use support::{MailServer, ServerOptions};

fn endpoint(host: &str, port: u16, security: Security) -> Endpoint {
    Endpoint {
        host: host.to_string(),
        port,
        security,
    }
}

fn options() -> ConnectOptions {
    ConnectOptions::default()
}

/// GreenMail (MAILBRIDGE_TEST_SERVER=greenmail) lacks some of what Dovecot
/// offers; tests needing it fail there saying so, never pass silently.
fn dovecot_only(server: &MailServer, feature: &str) {
    assert!(
        !server.is_greenmail(),
        "this test needs {feature}, which GreenMail lacks: run it against Dovecot \
         (unset MAILBRIDGE_TEST_SERVER)"
    );
}

fn password(user: &support::TestUser) -> Credential {
    Credential::Password(Secret::new(user.password.clone()))
}

/// A connection to `server` over implicit TLS, not logged in.
async fn connected(server: &MailServer) -> imap::PreAuth {
    connected_at(server, server.imaps_port(), server.ca_file()).await
}

/// A connection over implicit TLS to `port` on `server`'s host (the server,
/// or a proxy in front of it whose certificate `ca_file` signed).
async fn connected_at(server: &MailServer, port: u16, ca_file: &std::path::Path) -> imap::PreAuth {
    imap::connect(
        &endpoint(server.host(), port, Security::Tls),
        Some(ca_file),
        &options(),
    )
    .await
    .expect("connect")
}

/// A session of `user`'s over implicit TLS.
async fn logged_in(server: &MailServer, user: &support::TestUser) -> imap::ImapSession {
    log_in(connected(server).await, user).await
}

async fn log_in(connection: imap::PreAuth, user: &support::TestUser) -> imap::ImapSession {
    connection
        .login(&user.username, &password(user))
        .await
        .expect("login")
}

#[tokio::test]
async fn implicit_tls_login_capabilities_and_folders() {
    let server = MailServer::start();
    let user = server.add_user("tls");

    let pre = imap::connect(
        &endpoint(server.host(), server.imaps_port(), Security::Tls),
        Some(server.ca_file()),
        &options(),
    )
    .await
    .expect("connect with implicit TLS");
    let tls = pre.tls_summary().expect("a TLS connection");
    assert!(tls.starts_with("TLS 1."), "{tls}");
    assert!(pre.pre_login_capabilities().has("IMAP4rev1"));

    let mut session = pre
        .login(&user.username, &password(&user))
        .await
        .expect("login");
    let caps = session.capabilities();
    for name in [
        "IDLE",
        "UIDPLUS",
        "CONDSTORE",
        "QRESYNC",
        "MOVE",
        "SPECIAL-USE",
    ] {
        assert!(caps.has(name), "Dovecot offers {name}: {caps}");
    }
    assert!(caps.has("idle"), "lookups ignore case");

    let folders = session.list_folders().await.expect("LIST");
    assert!(folders.iter().any(|f| f.name == "INBOX"), "{folders:?}");
    let drafts = find_special(&folders, SpecialUse::Drafts, &FolderChoice::Auto)
        .unwrap_or_else(|| panic!("no Drafts folder in {folders:?}"));
    if !server.is_greenmail() {
        assert_eq!(drafts.found_by, FoundBy::SpecialUse(SpecialUse::Drafts));
    }
    let sent = find_special(&folders, SpecialUse::Sent, &FolderChoice::Auto)
        .unwrap_or_else(|| panic!("no Sent folder in {folders:?}"));
    assert!(sent.folder.is_selectable());

    // Nothing a session prints may hold the password.
    assert!(!format!("{session:?}").contains(&user.password));
    session.logout().await.expect("logout");
}

#[tokio::test]
async fn starttls_upgrades_before_login() {
    let server = MailServer::start();
    let user = server.add_user("starttls");
    let pre = imap::connect(
        &endpoint(server.host(), server.imap_port(), Security::Starttls),
        Some(server.ca_file()),
        &options(),
    )
    .await
    .expect("connect with STARTTLS");
    assert!(pre.tls_summary().is_some(), "upgraded to TLS");
    // The capabilities are those read again over TLS, where Dovecot no
    // longer offers STARTTLS.
    if !server.is_greenmail() {
        assert!(
            !pre.pre_login_capabilities().has("STARTTLS"),
            "{}",
            pre.pre_login_capabilities()
        );
    }
    let mut session = pre
        .login(&user.username, &password(&user))
        .await
        .expect("login");
    assert!(session.capabilities().has("IMAP4rev1"));
    session.list_folders().await.expect("LIST");
    session.logout().await.expect("logout");
}

#[tokio::test]
async fn security_none_on_loopback() {
    let server = MailServer::start();
    let user = server.add_user("plain");
    let pre = imap::connect(
        &endpoint(server.host(), server.imap_port(), Security::None),
        None,
        &options(),
    )
    .await
    .expect("plain connect");
    assert_eq!(pre.tls_summary(), None);
    let session = pre
        .login(&user.username, &password(&user))
        .await
        .expect("plain login on loopback");
    session.logout().await.expect("logout");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_secret() {
    // Its own server: Dovecot slows down logins after a failure.
    let server = MailServer::start();
    let user = server.add_user("wrongpw");
    let wrong = format!("{}-not", user.password);
    let err = imap::connect(
        &endpoint(server.host(), server.imaps_port(), Security::Tls),
        Some(server.ca_file()),
        &options(),
    )
    .await
    .expect("connect")
    .login(
        &user.username,
        &Credential::Password(Secret::new(wrong.clone())),
    )
    .await
    .expect_err("a wrong password must fail");
    assert!(matches!(err, ImapError::Auth { .. }), "{err:?}");
    assert!(err.is_auth_failure());
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(message.contains("authentication"), "{message}");
    assert!(message.contains(&user.username), "{message}");
    for shown in [message, format!("{err:?}")] {
        assert!(!shown.contains(&wrong), "the password leaked: {shown}");
    }
}

#[tokio::test]
async fn append_with_literal_returns_appenduid() {
    let server = MailServer::start();
    let user = server.add_user("append");
    let mut session = logged_in(&server, &user).await;
    let folders = session.list_folders().await.expect("LIST");
    let drafts = find_special(&folders, SpecialUse::Drafts, &FolderChoice::Auto).expect("Drafts");
    let message = b"From: a@example.com\r\nSubject: literal test\r\n\r\nbody\r\n";
    let head = format!("APPEND \"{}\" (\\Draft \\Seen)", drafts.name());
    let completion = session
        .command_with_literal(Step::Command("APPEND"), &head, message, |_| {})
        .await
        .expect("APPEND");
    match completion.code {
        Some(ResponseCode::AppendUid(validity, uids)) => {
            assert!(validity > 0);
            assert_eq!(uids.len(), 1, "{uids:?}");
        }
        other => panic!("Dovecot has UIDPLUS, expected APPENDUID, got {other:?}"),
    }

    let err = session
        .command_with_literal(
            Step::Command("APPEND"),
            "APPEND \"No Such Folder\"",
            message,
            |_| {},
        )
        .await
        .expect_err("no such folder");
    assert!(matches!(err, ImapError::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("TRYCREATE"), "{err}");
    // The session is still usable after a refused APPEND.
    session.list_folders().await.expect("LIST after NO");
    session.logout().await.expect("logout");
}

/// Three short messages in `user`'s INBOX, with texts "first", "second",
/// "third": their UIDs.
fn three_messages(server: &MailServer, user: &support::TestUser) -> Vec<u32> {
    server.append_many(
        user,
        "INBOX",
        &[
            b"Subject: one\r\n\r\nfirst\r\n",
            b"Subject: two\r\n\r\nsecond\r\n",
            b"Subject: three\r\n\r\nthird\r\n",
        ],
    )
}

/// `commands` pipelined: their completions, and how many FETCH answers
/// came.
async fn pipeline_counting_answers(
    session: &mut imap::ImapSession,
    commands: &[String],
) -> (Vec<Result<imap::Completion, ImapError>>, usize) {
    let mut answers = 0;
    let completions = session
        .pipeline(Step::Command("UID FETCH"), commands, |response| {
            if let async_imap::imap_proto::Response::Fetch(..) = response {
                answers += 1;
            }
        })
        .await;
    (completions, answers)
}

/// `count` completions, those at `refused` a refusal (NO or BAD), the
/// others OK.
fn assert_refused_exactly(
    completions: &[Result<imap::Completion, ImapError>],
    count: usize,
    refused: &[usize],
) {
    assert_eq!(completions.len(), count, "{completions:?}");
    for (index, completion) in completions.iter().enumerate() {
        if refused.contains(&index) {
            assert!(
                matches!(completion, Err(ImapError::Rejected { .. })),
                "command {index}: {completion:?}"
            );
        } else {
            assert!(completion.is_ok(), "command {index}: {completion:?}");
        }
    }
}

#[tokio::test]
async fn pipelined_commands_complete_in_order_and_a_refused_one_spares_the_others() {
    let server = MailServer::start();
    let user = server.add_user("pipeline");
    let uids = three_messages(&server, &user);
    let mut session = logged_in(&server, &user).await;
    session.select_folder("INBOX", true).await.expect("EXAMINE");
    let commands = vec![
        format!("UID FETCH {} (UID BODY.PEEK[TEXT])", uids[0]),
        // Refused: BAD, for an item that does not exist.
        format!("UID FETCH {} (UID NO-SUCH-ITEM)", uids[1]),
        format!("UID FETCH {}:{} (UID BODY.PEEK[TEXT])", uids[1], uids[2]),
    ];
    let mut texts = Vec::new();
    let completions = session
        .pipeline(Step::Command("UID FETCH"), &commands, |response| {
            if let async_imap::imap_proto::Response::Fetch(_, attributes) = response {
                for attribute in attributes {
                    if let async_imap::imap_proto::AttributeValue::BodySection {
                        data: Some(data),
                        ..
                    } = attribute
                    {
                        texts.push(String::from_utf8_lossy(data).trim().to_string());
                    }
                }
            }
        })
        .await;
    assert_refused_exactly(&completions, 3, &[1]);
    texts.sort();
    assert_eq!(texts, ["first", "second", "third"]);
    // Every tag was read: the session goes on as after one command.
    session
        .list_folders()
        .await
        .expect("LIST after the pipeline");

    // More than one window's worth of commands (16 KiB go out ahead of
    // their answers): each completion still lands on its own command.
    let padding: Vec<String> = (0..40).map(|i| format!("X-PAD-{i:04}")).collect();
    let commands: Vec<String> = (0..60)
        .map(|i| {
            if i == 45 {
                format!("UID FETCH {} (UID NO-SUCH-ITEM)", uids[i % 3])
            } else {
                format!(
                    "UID FETCH {} (UID BODY.PEEK[HEADER.FIELDS (SUBJECT {})])",
                    uids[i % 3],
                    padding.join(" ")
                )
            }
        })
        .collect();
    assert!(commands.iter().map(String::len).sum::<usize>() > 20 * 1024);
    let (completions, answers) = pipeline_counting_answers(&mut session, &commands).await;
    assert_refused_exactly(&completions, 60, &[45]);
    assert_eq!(answers, 59);
    session
        .list_folders()
        .await
        .expect("LIST after two windows");
    session.logout().await.expect("logout");
}

#[tokio::test]
async fn pipelined_completions_out_of_order_land_on_their_own_commands() {
    let server = MailServer::start();
    let user = server.add_user("swapped");
    let uids = three_messages(&server, &user);
    // Dovecot completes pipelined commands in order; RFC 3501 §5.5 lets a
    // server complete them in any order. The proxy holds a completion back,
    // while a later command is open, until the next one has passed.
    let mitm = mitm::Mitm::start_completions_swapped(server.imaps_port(), server.ca_file());
    let through_proxy = connected_at(&server, mitm.port(), mitm.ca_file()).await;
    let mut session = log_in(through_proxy, &user).await;
    session.select_folder("INBOX", true).await.expect("EXAMINE");
    let commands = vec![
        format!("UID FETCH {} (UID BODY.PEEK[TEXT])", uids[0]),
        format!("UID FETCH {} (UID NO-SUCH-ITEM)", uids[1]),
        format!("UID FETCH {} (UID BODY.PEEK[TEXT])", uids[2]),
        format!("UID FETCH {} (UID NO-SUCH-ITEM)", uids[0]),
        format!("UID FETCH {}:{} (UID BODY.PEEK[TEXT])", uids[1], uids[2]),
    ];
    let (completions, answers) = pipeline_counting_answers(&mut session, &commands).await;
    // Completed as 2, 1, 4, 3, 5: each still lands on its own command.
    assert_eq!(mitm.swapped(), 2, "the proxy reordered the completions");
    assert_refused_exactly(&completions, 5, &[1, 3]);
    assert_eq!(answers, 4);
    session
        .list_folders()
        .await
        .expect("LIST after the pipeline");
    session.logout().await.expect("logout");
}

#[tokio::test]
async fn unknown_ca_is_a_certificate_error_suggesting_ca_file() {
    let server = MailServer::start();
    let err = imap::connect(
        &endpoint(server.host(), server.imaps_port(), Security::Tls),
        None,
        &options(),
    )
    .await
    .expect_err("the harness CA is not in the OS store");
    assert!(matches!(err, ImapError::Certificate { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(message.contains("ca_file"), "{message}");
}

#[tokio::test]
async fn connection_refused_on_a_closed_port() {
    // Port 1 (tcpmux): privileged, so no parallel test's server can take it
    // between choosing it and connecting, as a just-freed ephemeral port can.
    let port = 1;
    let err = imap::connect(
        &endpoint("127.0.0.1", port, Security::Tls),
        None,
        &options(),
    )
    .await
    .expect_err("nothing listens");
    assert!(
        matches!(err, ImapError::ConnectionRefused { .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

/// A server that accepts and then never says a word.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

#[tokio::test]
async fn silent_server_times_out_at_the_step_it_hangs() {
    let (port, task) = silent_server().await;
    let short = ConnectOptions {
        timeout: Duration::from_millis(500),
    };
    for (security, step) in [
        (Security::None, Step::Greeting),
        (Security::Starttls, Step::Greeting),
        (Security::Tls, Step::TlsHandshake),
    ] {
        let started = std::time::Instant::now();
        let err = imap::connect(&endpoint("127.0.0.1", port, security), None, &short)
            .await
            .expect_err("a silent server must time out");
        assert!(started.elapsed() < Duration::from_secs(5), "{security}");
        match &err {
            ImapError::Timeout { step: got, .. } => assert_eq!(*got, step, "{security}"),
            other => panic!("{security}: expected a timeout, got {other:?}"),
        }
        assert!(err.is_retryable());
        assert!(err.to_string().contains("timed out"), "{err}");
    }
    task.abort();
}

#[tokio::test]
async fn gmail_style_drafts_found_by_special_use() {
    let server = MailServer::start_with(ServerOptions {
        drafts_folder: "[Gmail]/Drafts".into(),
        ..Default::default()
    });
    dovecot_only(&server, "SPECIAL-USE");
    let user = server.add_user("gmail");
    let mut session = logged_in(&server, &user).await;
    let folders = session.list_folders().await.expect("LIST");
    let drafts = find_special(&folders, SpecialUse::Drafts, &FolderChoice::Auto)
        .unwrap_or_else(|| panic!("no Drafts in {folders:?}"));
    assert_eq!(drafts.name(), "[Gmail]/Drafts");
    assert_eq!(drafts.found_by, FoundBy::SpecialUse(SpecialUse::Drafts));
    session.logout().await.expect("logout");
}

#[tokio::test]
async fn without_special_use_folders_are_found_by_name() {
    let server = MailServer::start_with(ServerOptions {
        special_use: false,
        ..Default::default()
    });
    let user = server.add_user("names");
    let mut session = logged_in(&server, &user).await;
    let folders = session.list_folders().await.expect("LIST");
    assert!(
        folders.iter().all(|f| f.special_uses().next().is_none()),
        "{folders:?}"
    );
    for (role, name) in [(SpecialUse::Drafts, "Drafts"), (SpecialUse::Sent, "Sent")] {
        let found = find_special(&folders, role, &FolderChoice::Auto)
            .unwrap_or_else(|| panic!("no {role} in {folders:?}"));
        assert_eq!(found.name(), name);
        assert_eq!(found.found_by, FoundBy::Name);
    }
    session.logout().await.expect("logout");
}

#[tokio::test]
async fn xoauth2_login_against_dovecot() {
    let server = MailServer::start_with(ServerOptions {
        oauth2: true,
        ..Default::default()
    });
    let user = server.add_user("oauth");
    let token = server.oauth2_token(&user);
    let connect = || connected(&server);
    let session = connect()
        .await
        .login(
            &user.username,
            &Credential::OAuth2Token(Secret::new(token.clone())),
        )
        .await
        .expect("XOAUTH2 login");
    session.logout().await.expect("logout");

    let bad = format!("{token}x");
    let err = connect()
        .await
        .login(
            &user.username,
            &Credential::OAuth2Token(Secret::new(bad.clone())),
        )
        .await
        .expect_err("an unknown token must fail");
    assert!(matches!(err, ImapError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(&bad), "{err}");
}

/// A peer speaking just enough IMAP to check what the client sends: each
/// script step is (expected client line, with `*` for the tag; reply, with
/// `{tag}` for the client's tag). Returns the lines the client sent.
async fn scripted_server(
    greeting: &'static str,
    script: Vec<(&'static str, &'static str)>,
) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(greeting.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        let mut tag = String::new();
        for (expected, reply) in script {
            let Ok(Some(line)) = lines.next_line().await else {
                break;
            };
            if let Some(rest) = expected.strip_prefix("* ") {
                let (got_tag, got_rest) = line.split_once(' ').unwrap_or((&line, ""));
                assert_eq!(got_rest, rest, "client sent {line:?}");
                tag = got_tag.to_string();
            } else {
                assert_eq!(line, expected, "client sent {line:?}");
            }
            received.push(line);
            write
                .write_all(reply.replace("{tag}", &tag).as_bytes())
                .await
                .unwrap();
        }
        received
    });
    (port, task)
}

#[tokio::test]
async fn xoauth2_sends_the_exact_initial_response() {
    // base64("user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"),
    // Google's documented example.
    const EXPECTED: &str = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==";
    let (port, peer) = scripted_server(
        "* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] scripted\r\n",
        vec![
            ("* AUTHENTICATE XOAUTH2", "+ \r\n"),
            (EXPECTED, "{tag} OK [CAPABILITY IMAP4rev1 IDLE] welcome\r\n"),
            (
                "* CAPABILITY",
                "* CAPABILITY IMAP4rev1 IDLE UIDPLUS\r\n{tag} OK done\r\n",
            ),
            ("* LOGOUT", "* BYE bye\r\n{tag} OK done\r\n"),
        ],
    )
    .await;
    let token =
        Credential::OAuth2Token(Secret::new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"));
    let session = imap::connect(
        &endpoint("127.0.0.1", port, Security::None),
        None,
        &options(),
    )
    .await
    .expect("connect")
    .login("someuser@example.com", &token)
    .await
    .expect("XOAUTH2 accepted");
    assert!(
        session.capabilities().has("UIDPLUS"),
        "{}",
        session.capabilities()
    );
    session.logout().await.expect("logout");
    let received = peer.await.unwrap();
    assert_eq!(received.len(), 4, "{received:?}");
}

#[tokio::test]
async fn xoauth2_failure_answers_the_error_challenge_and_reports_it() {
    // base64 of {"status":"401","schemes":"bearer"}
    let (port, peer) = scripted_server(
        "* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] scripted\r\n",
        vec![
            ("* AUTHENTICATE XOAUTH2", "+ \r\n"),
            (
                "dXNlcj11QGV4YW1wbGUuY29tAWF1dGg9QmVhcmVyIGV4cGlyZWQBAQ==",
                "+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=\r\n",
            ),
            // RFC 7628 §3.2.3: the client answers the error with an empty response.
            (
                "",
                "{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n",
            ),
        ],
    )
    .await;
    let err = imap::connect(
        &endpoint("127.0.0.1", port, Security::None),
        None,
        &options(),
    )
    .await
    .expect("connect")
    .login(
        "u@example.com",
        &Credential::OAuth2Token(Secret::new("expired")),
    )
    .await
    .expect_err("rejected token");
    match &err {
        ImapError::Auth { code, message, .. } => {
            assert_eq!(code.as_deref(), Some("AUTHENTICATIONFAILED"));
            assert!(message.contains("Invalid credentials"), "{message}");
            assert!(message.contains("\"status\":\"401\""), "{message}");
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert!(!err.to_string().contains("expired"), "{err}");
    peer.await.unwrap();
}

#[tokio::test]
async fn starttls_not_offered_is_refused_before_any_secret_is_sent() {
    let (port, peer) = scripted_server(
        "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] no tls here\r\n",
        vec![],
    )
    .await;
    let err = imap::connect(
        &endpoint("127.0.0.1", port, Security::Starttls),
        None,
        &options(),
    )
    .await
    .expect_err("no STARTTLS");
    assert!(
        matches!(err, ImapError::StartTlsUnavailable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not offer STARTTLS"), "{err}");
    assert!(!err.is_retryable());
    assert!(peer.await.unwrap().is_empty(), "the client sent nothing");
}

#[tokio::test]
async fn list_that_fails_is_an_error_not_an_empty_list() {
    let (port, peer) = scripted_server(
        "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] scripted\r\n",
        vec![
            (
                "* LOGIN \"u\" \"p\"",
                "{tag} OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n",
            ),
            (
                "* LIST \"\" \"*\"",
                "* LIST (\\HasNoChildren) \"/\" INBOX\r\n{tag} NO [SERVERBUG] Internal error\r\n",
            ),
        ],
    )
    .await;
    let mut session = imap::connect(
        &endpoint("127.0.0.1", port, Security::None),
        None,
        &options(),
    )
    .await
    .expect("connect")
    .login("u", &Credential::Password(Secret::new("p")))
    .await
    .expect("login");
    let err = session.list_folders().await.expect_err("LIST said NO");
    assert!(
        matches!(
            err,
            ImapError::Rejected {
                step: Step::List,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Internal error"), "{err}");
    peer.await.unwrap();
}

#[tokio::test]
async fn capabilities_are_asked_for_when_the_greeting_has_none() {
    let (port, peer) = scripted_server(
        "* OK plain greeting\r\n",
        vec![(
            "M1 CAPABILITY",
            "* CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE\r\nM1 OK done\r\n",
        )],
    )
    .await;
    let pre = imap::connect(
        &endpoint("127.0.0.1", port, Security::None),
        None,
        &options(),
    )
    .await
    .expect("connect");
    assert!(pre.pre_login_capabilities().has_auth("PLAIN"));
    assert!(pre.pre_login_capabilities().has("IDLE"));
    drop(pre);
    peer.await.unwrap();
}

#[tokio::test]
async fn login_disabled_falls_back_to_authenticate_plain() {
    let (port, peer) = scripted_server(
        "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN] scripted\r\n",
        vec![
            ("* AUTHENTICATE PLAIN", "+ \r\n"),
            // base64("\0u\0p\u{e4}ss")
            ("AHUAcMOkc3M=", "{tag} OK [CAPABILITY IMAP4rev1] in\r\n"),
            (
                "* CAPABILITY",
                "* CAPABILITY IMAP4rev1 IDLE\r\n{tag} OK done\r\n",
            ),
        ],
    )
    .await;
    let session = imap::connect(
        &endpoint("127.0.0.1", port, Security::None),
        None,
        &options(),
    )
    .await
    .expect("connect")
    .login("u", &Credential::Password(Secret::new("p\u{e4}ss")))
    .await
    .expect("AUTHENTICATE PLAIN");
    assert!(session.capabilities().has("IDLE"));
    drop(session);
    assert_eq!(peer.await.unwrap().len(), 3);
}

#[tokio::test]
async fn login_disabled_without_plain_sends_no_password() {
    let (port, peer) = scripted_server(
        "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=GSSAPI] scripted\r\n",
        vec![],
    )
    .await;
    let err = imap::connect(
        &endpoint("127.0.0.1", port, Security::None),
        None,
        &options(),
    )
    .await
    .expect("connect")
    .login("u", &Credential::Password(Secret::new("p")))
    .await
    .expect_err("LOGINDISABLED");
    assert!(matches!(err, ImapError::LoginDisabled { .. }), "{err:?}");
    assert!(peer.await.unwrap().is_empty());
}
