//! Self-tests of the real-server harness (tests/support/): real Dovecot and
//! Postfix on loopback, checked with clients that are not the code under test
//! (the harness's own raw IMAP/SMTP clients, and lettre for submission).

mod support;

use std::time::{Duration, Instant};

use support::*;

fn message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 01 Dec 2025 10:00:00 +0000\r\n\
         Message-ID: <{}@harness.test>\r\n\r\n{body}\r\n",
        random_hex(12)
    )
    .into_bytes()
}

#[test]
fn imaps_users_append_and_special_use() {
    let server = MailServer::start();
    let alice = server.add_user("alice");
    let bob = server.add_user("Bob Smith");
    assert_ne!(alice.username, bob.username);
    assert!(bob.email.starts_with("bob-smith-"), "{}", bob.email);
    assert!(alice.email.ends_with("@example.test"));

    let uid = server.append(
        &alice,
        "INBOX",
        &message(
            "carol@example.org",
            &alice.email,
            "Seeded",
            "hello .\r\n.dot line",
        ),
    );
    assert_eq!(uid, 1);
    let uid = server.append_with(
        &alice,
        "Archive",
        "\\Seen \\Flagged",
        Some("02-Dec-2025 09:30:00 +0000"),
        &message("carol@example.org", &alice.email, "Archived", "old"),
    );
    assert_eq!(uid, 1);

    // A client of our own, trusting only the generated CA.
    let mut imap =
        RawImap::connect_tls(server.host(), server.imaps_port(), server.ca_file()).unwrap();
    assert!(imap.is_tls());
    assert!(imap
        .login(&alice.username, &alice.password)
        .unwrap()
        .is_ok());
    let list = imap.list().unwrap();
    let find = |name: &str| {
        list.iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name} in {list:?}"))
    };
    assert!(find("INBOX").delimiter.as_deref() == Some("/"));
    assert!(find("Sent").has("\\Sent"), "{list:?}");
    assert!(find("Drafts").has("\\Drafts"), "{list:?}");
    assert!(find("Archive").has("\\Archive"), "{list:?}");
    assert!(find("Trash").has("\\Trash"), "{list:?}");
    let caps = imap.capabilities().unwrap();
    for cap in [
        "UIDPLUS",
        "SPECIAL-USE",
        "IDLE",
        "CONDSTORE",
        "QRESYNC",
        "MOVE",
    ] {
        assert!(caps.iter().any(|c| c == cap), "{cap} missing from {caps:?}");
    }
    let inbox = imap.messages("INBOX").unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].header("Subject").as_deref(), Some("Seeded"));
    assert!(inbox[0].text().contains("\r\n.dot line"));
    assert!(!inbox[0].has_flag("\\Seen"));
    let archive = imap.messages("Archive").unwrap();
    assert!(archive[0].has_flag("\\Seen") && archive[0].has_flag("\\Flagged"));
    imap.logout();

    // Users are isolated.
    assert!(server.messages(&bob, "INBOX").is_empty());
    let batch: Vec<Vec<u8>> = (0..20)
        .map(|i| message("carol@example.org", &bob.email, &format!("n{i}"), "x"))
        .collect();
    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    let uids = server.append_many(&bob, "INBOX", &refs);
    assert_eq!(uids, (1..=20).collect::<Vec<u32>>());
    assert_eq!(server.messages(&bob, "INBOX").len(), 20);
    assert_eq!(server.messages(&alice, "INBOX").len(), 1);
    server.set_uidvalidity(&bob, "INBOX", 4242);
    let mut imap = server.imap(&bob);
    let select = imap.select("INBOX").unwrap().expect_ok("SELECT");
    assert!(
        select.lines().any(|l| l.contains("[UIDVALIDITY 4242]")),
        "{select:?}"
    );
    assert_eq!(imap.messages("INBOX").unwrap().len(), 20);
    imap.logout();

    // Another CA is refused: verification is real.
    let other = tempfile::tempdir().unwrap();
    let other_ca = support::certs::generate(other.path()).ca;
    let err = RawImap::connect_tls(server.host(), server.imaps_port(), &other_ca)
        .err()
        .expect("a foreign CA must not verify the server");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    // So is a name the certificate does not carry.
    let err = RawImap::connect_tls("127.0.0.2", server.imaps_port(), server.ca_file()).err();
    assert!(err.is_some(), "127.0.0.2 is not in the certificate");
}

#[test]
fn starttls_and_plain_login_on_the_imap_port() {
    let server = MailServer::start();
    let user = server.add_user("plain");

    let mut imap = RawImap::connect_plain(server.host(), server.imap_port()).unwrap();
    let caps = imap.capabilities().unwrap();
    assert!(caps.iter().any(|c| c == "STARTTLS"), "{caps:?}");
    imap.starttls(server.host(), server.ca_file()).unwrap();
    assert!(imap.is_tls());
    assert!(imap.login(&user.username, &user.password).unwrap().is_ok());
    imap.logout();

    // `security: none` on loopback: cleartext LOGIN is accepted.
    let mut imap = RawImap::connect_plain(server.host(), server.imap_port()).unwrap();
    let response = imap.login(&user.username, &user.password).unwrap();
    assert!(response.is_ok(), "{response:?}\n{}", server.log());
    imap.select("INBOX").unwrap().expect_ok("SELECT");
    imap.logout();
}

#[test]
fn wrong_passwords_fail_fast_and_do_not_delay_later_logins() {
    let server = MailServer::start();
    let user = server.add_user("penalty");
    let connect =
        || RawImap::connect_tls(server.host(), server.imaps_port(), server.ca_file()).unwrap();
    for _ in 0..3 {
        let mut imap = connect();
        let started = Instant::now();
        let response = imap.login(&user.username, "not-the-password").unwrap();
        assert_eq!(response.status, "NO", "{response:?}");
        assert!(
            response.text.contains("AUTHENTICATIONFAILED"),
            "{response:?}"
        );
        // Dovecot 2.3 answers failures on a 500 ms timer; no growing penalty.
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "a failed login took {:?}\n{}",
            started.elapsed(),
            server.log()
        );
    }
    // An unknown user is a plain authentication failure too.
    let mut imap = connect();
    let response = imap.login("nobody-here@example.test", "x").unwrap();
    assert!(
        response.text.contains("AUTHENTICATIONFAILED"),
        "{response:?}"
    );
    // And the right password gets in at once, without a penalty delay.
    let started = Instant::now();
    server.imap(&user).logout();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "a login after failed ones was delayed: {:?}\n{}",
        started.elapsed(),
        server.log()
    );
}

#[test]
fn gmail_style_drafts_folder() {
    let server = MailServer::start_with(ServerOptions {
        drafts_folder: "[Gmail]/Drafts".into(),
        ..Default::default()
    });
    let user = server.add_user("gmail");
    let list = server.list(&user);
    let drafts: Vec<&ListEntry> = list.iter().filter(|e| e.has("\\Drafts")).collect();
    assert_eq!(drafts.len(), 1, "{list:?}");
    assert_eq!(drafts[0].name, "[Gmail]/Drafts");
    assert_eq!(drafts[0].delimiter.as_deref(), Some("/"));
    assert!(!list.iter().any(|e| e.name == "Drafts"), "{list:?}");
    let uid = server.append_with(
        &user,
        "[Gmail]/Drafts",
        "\\Draft \\Seen",
        None,
        &message(&user.email, "x@example.org", "Draft", "text"),
    );
    let drafts = server.messages(&user, "[Gmail]/Drafts");
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0].uid, uid);
    assert!(drafts[0].has_flag("\\Draft"));
}

#[test]
fn special_use_can_be_turned_off() {
    let server = MailServer::start_with(ServerOptions {
        special_use: false,
        ..Default::default()
    });
    let user = server.add_user("nosu");
    let list = server.list(&user);
    let drafts = list.iter().find(|e| e.name == "Drafts").expect("Drafts");
    assert!(!drafts.has("\\Drafts"), "{list:?}");
    assert!(!list.iter().any(|e| e.has("\\Sent")), "{list:?}");
}

#[test]
fn oauth2_tokens_are_validated() {
    let server = MailServer::start_with(ServerOptions {
        oauth2: true,
        ..Default::default()
    });
    let user = server.add_user("oauth");
    let other = server.add_user("other");
    let token = server.oauth2_token(&user);
    let connect =
        || RawImap::connect_tls(server.host(), server.imaps_port(), server.ca_file()).unwrap();

    let mut imap = connect();
    let caps = imap.capabilities().unwrap();
    assert!(caps.iter().any(|c| c == "AUTH=XOAUTH2"), "{caps:?}");
    let response = imap.authenticate_xoauth2(&user.username, &token).unwrap();
    assert!(response.is_ok(), "{response:?}\n{}", server.log());
    imap.select("INBOX")
        .unwrap()
        .expect_ok("SELECT after XOAUTH2");
    imap.logout();

    let mut imap = connect();
    let response = imap
        .authenticate_oauthbearer(&user.username, &token)
        .unwrap();
    assert!(response.is_ok(), "{response:?}\n{}", server.log());

    // A wrong token, or a token for someone else, is refused.
    let mut imap = connect();
    let response = imap
        .authenticate_xoauth2(&user.username, "ya29.wrong")
        .unwrap();
    assert_eq!(response.status, "NO", "{response:?}");
    let mut imap = connect();
    let response = imap.authenticate_xoauth2(&other.username, &token).unwrap();
    assert_eq!(response.status, "NO", "{response:?}");
    // A password is not a token.
    let mut imap = connect();
    let response = imap
        .authenticate_xoauth2(&user.username, &user.password)
        .unwrap();
    assert_eq!(response.status, "NO", "{response:?}");

    // Passwords keep working on the same server; a token is not a password.
    server.imap(&user).logout();
    let mut imap = connect();
    assert_eq!(imap.login(&user.username, &token).unwrap().status, "NO");
}

#[test]
fn smtp_submission_delivers_over_lmtp() {
    let mail = MailServer::start();
    let smtp = SmtpServer::start(&mail);
    let alice = mail.add_user("alice");
    let bob = mail.add_user("bob");

    // lettre (not our code) over STARTTLS with AUTH, trusting the generated CA.
    let subject = format!("lettre {}", random_hex(6));
    let raw = message(&alice.email, &bob.email, &subject, "Hi Bob");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
        let ca = std::fs::read(smtp.ca_file()).unwrap();
        let tls = TlsParameters::builder(smtp.host().to_string())
            .add_root_certificate(Certificate::from_pem(&ca).unwrap())
            .build_rustls()
            .unwrap();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host())
            .port(smtp.submission_port())
            .tls(Tls::Required(tls))
            .credentials(Credentials::new(
                alice.username.clone(),
                alice.password.clone(),
            ))
            .timeout(Some(Duration::from_secs(15)))
            .build();
        let envelope = lettre::address::Envelope::new(
            Some(alice.email.parse().unwrap()),
            vec![bob.email.parse().unwrap()],
        )
        .unwrap();
        transport
            .send_raw(&envelope, &raw)
            .await
            .unwrap_or_else(|err| panic!("lettre submission: {err}\n{}", smtp.log()));
    });
    wait_for(
        Duration::from_secs(10),
        "the message in Bob's INBOX",
        || {
            mail.messages(&bob, "INBOX")
                .iter()
                .any(|m| m.header("Subject").as_deref() == Some(subject.as_str()))
        },
    );

    // Implicit TLS (smtps) with the harness client, to an outside address:
    // it lands in the outbound sink, not on the internet.
    let raw = message(&bob.email, "john@vastdata.example", "to the world", "Hello");
    support::smtp::submit(
        smtp.host(),
        smtp.smtps_port(),
        SmtpSecurity::Tls,
        smtp.ca_file(),
        Some((&bob.username, &bob.password)),
        &bob.email,
        &["john@vastdata.example"],
        &raw,
    )
    .unwrap_or_else(|err| panic!("smtps: {err}\n{}", smtp.log()));
    wait_for(Duration::from_secs(10), "the outbound copy", || {
        mail.messages(smtp.outbound(), "INBOX").iter().any(|m| {
            m.header("To").as_deref() == Some("john@vastdata.example")
                && m.header("Subject").as_deref() == Some("to the world")
        })
    });

    // SmtpServer::send: harness submission over STARTTLS.
    smtp.send(
        &bob,
        &[&alice.email],
        &message(&bob.email, &alice.email, "reply", "Hi"),
    );
    wait_for(
        Duration::from_secs(10),
        "Bob's reply in Alice's INBOX",
        || mail.messages(&alice, "INBOX").len() == 1,
    );

    // No AUTH before STARTTLS, no relaying without AUTH, no wrong password.
    let plain_auth = support::smtp::submit(
        smtp.host(),
        smtp.submission_port(),
        SmtpSecurity::Plain,
        smtp.ca_file(),
        Some((&alice.username, &alice.password)),
        &alice.email,
        &[&bob.email],
        &raw,
    );
    assert!(
        plain_auth.unwrap_err().to_string().contains("no AUTH"),
        "AUTH must need TLS"
    );
    let anonymous = support::smtp::submit(
        smtp.host(),
        smtp.submission_port(),
        SmtpSecurity::Starttls,
        smtp.ca_file(),
        None,
        &alice.email,
        &[&bob.email],
        &raw,
    );
    assert!(
        anonymous.is_err(),
        "unauthenticated submission must be refused"
    );
    let wrong = support::smtp::submit(
        smtp.host(),
        smtp.smtps_port(),
        SmtpSecurity::Tls,
        smtp.ca_file(),
        Some((&alice.username, "wrong")),
        &alice.email,
        &[&bob.email],
        &raw,
    );
    assert!(wrong.unwrap_err().to_string().contains("AUTH"));
}

#[test]
fn parallel_servers_do_not_collide() {
    let handles: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let server = MailServer::start();
                let user = server.add_user(&format!("par{i}"));
                server.append(
                    &user,
                    "INBOX",
                    &message("a@example.org", &user.email, "p", "x"),
                );
                assert_eq!(server.messages(&user, "INBOX").len(), 1);
                (server.imaps_port(), server.imap_port(), server.lmtp_port())
            })
        })
        .collect();
    let mut ports: Vec<u16> = handles
        .into_iter()
        .flat_map(|h| {
            let (a, b, c) = h.join().unwrap();
            [a, b, c]
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 9);
}

#[test]
fn config_written_for_the_bridge_is_valid() {
    let server = MailServer::start();
    let user = server.add_user("config");
    let vault = temp_vault();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        vault.path(),
        &server,
        &user,
        "since: 30d\nsmtp: { host: 127.0.0.1, port: 2525, security: starttls }",
    );
    let loaded = mailbridge::config::Config::load(&config)
        .unwrap_or_else(|err| panic!("{err}\n{}", std::fs::read_to_string(&config).unwrap()));
    let account = loaded.account("test").unwrap();
    assert_eq!(account.username, user.username);
    assert_eq!(account.imap.port, server.imaps_port());
    assert_eq!(account.ca_file.as_deref(), Some(server.ca_file()));
    assert_eq!(account.smtp.as_ref().unwrap().port, 2525);
    assert_eq!(loaded.vault, vault.path());
    // The password command yields the password, and the file is not readable by others.
    let secret = mailbridge::credentials::resolve("test", "password", &account.password).unwrap();
    assert_eq!(secret.expose(), user.password);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        !text.contains(&user.password),
        "no plaintext password in the config"
    );

    // The binary under test takes it (`bridge --config ... status`, any exit
    // but a config error).
    let output = bridge_command(&config).arg("status").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("invalid config"), "{stderr}");
}

#[test]
#[should_panic(expected = "timed out after 50ms waiting for Godot")]
fn wait_for_names_what_it_waited_for() {
    wait_for(Duration::from_millis(50), "Godot", || false);
}

/// Started in a child process by `a_missing_server_fails_saying_how_to_get_one`.
#[test]
#[ignore = "run by a_missing_server_fails_saying_how_to_get_one in a child process"]
fn probe_start_server() {
    let _server = MailServer::start();
}

#[test]
fn a_missing_server_fails_saying_how_to_get_one() {
    let run = |backend: &str| {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "probe_start_server", "--ignored", "--nocapture"])
            .env("MAILBRIDGE_TEST_SERVER", backend)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!output.status.success(), "the probe must fail, not pass");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };
    if !support::process::port_open(support::greenmail::IMAPS) {
        let text = run("greenmail");
        assert!(
            text.contains("docker compose -f docker/docker-compose.yml up -d"),
            "{text}"
        );
    }
    let text = run("exchange");
    assert!(text.contains("MAILBRIDGE_TEST_SERVER=exchange"), "{text}");
}

#[test]
fn smtp_xoauth2_through_dovecot() {
    let mail = MailServer::start_with(ServerOptions {
        oauth2: true,
        ..Default::default()
    });
    let smtp = SmtpServer::start(&mail);
    let user = mail.add_user("oauth-smtp");
    let token = mail.oauth2_token(&user);
    let raw = message(&user.email, &user.email, "xoauth2 submission", "Hi me");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use lettre::transport::smtp::authentication::{Credentials, Mechanism};
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
        let ca = std::fs::read(smtp.ca_file()).unwrap();
        let tls = TlsParameters::builder(smtp.host().to_string())
            .add_root_certificate(Certificate::from_pem(&ca).unwrap())
            .build_rustls()
            .unwrap();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host())
            .port(smtp.smtps_port())
            .tls(Tls::Wrapper(tls))
            .credentials(Credentials::new(user.username.clone(), token.clone()))
            .authentication(vec![Mechanism::Xoauth2])
            .timeout(Some(Duration::from_secs(15)))
            .build();
        let envelope = lettre::address::Envelope::new(
            Some(user.email.parse().unwrap()),
            vec![user.email.parse().unwrap()],
        )
        .unwrap();
        transport
            .send_raw(&envelope, &raw)
            .await
            .unwrap_or_else(|err| panic!("XOAUTH2 submission: {err}\n{}", smtp.log()));
    });
    wait_for(Duration::from_secs(10), "the message in the INBOX", || {
        mail.messages(&user, "INBOX").len() == 1
    });
}
