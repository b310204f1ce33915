//! `bridge doctor` against a real Dovecot and Postfix on loopback.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::*;

/// Runs `bridge -vv doctor` (trace logging, so a leak through logs would show).
fn doctor(config: &Path) -> Output {
    bridge_command(config)
        .args(["-vv", "doctor"])
        .output()
        .expect("run bridge doctor")
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Replaces one line of a written config (the harness writes `imap:` on one line).
fn replace_in_config(config: &Path, from: &str, to: &str) {
    let yaml = std::fs::read_to_string(config).unwrap();
    assert!(yaml.contains(from), "config has no `{from}`:\n{yaml}");
    std::fs::write(config, yaml.replace(from, to)).unwrap();
}

fn vault_and_config(
    server: &MailServer,
    user: &TestUser,
    extra: &str,
) -> (tempfile::TempDir, PathBuf) {
    let vault = temp_vault();
    let config = write_config(
        &vault.path().join(".config"),
        vault.path(),
        server,
        user,
        extra,
    );
    (vault, config)
}

#[test]
fn doctor_passes_against_dovecot_and_postfix() {
    let server = MailServer::start();
    let smtp = SmtpServer::start(&server);
    let user = server.add_user("doctor-ok");
    let extra = format!(
        "smtp: {{ host: 127.0.0.1, port: {}, security: starttls }}",
        smtp.submission_port()
    );
    let (_vault, config) = vault_and_config(&server, &user, &extra);
    let output = doctor(&config);
    let all = text(&output);
    assert!(
        output.status.success(),
        "{all}\n{}\n{}",
        server.log(),
        smtp.log()
    );
    for expected in [
        "ok    config:",
        "ok    vault:",
        "ok    [test] credentials: password from command",
        "ok    [test] connect: 127.0.0.1:",
        "ok    [test] TLS: TLS 1.3",
        "certificate verified for 127.0.0.1",
        "ok    [test] login: as ",
        "ok    [test] capabilities: IDLE UIDPLUS CONDSTORE QRESYNC MOVE SPECIAL-USE",
        "ok    [test] Drafts folder: Drafts (by special-use \\Drafts)",
        "ok    [test] Sent folder: Sent (by special-use \\Sent)",
        "ok    [test] sync folders: INBOX",
        "ok    [test] SMTP: 127.0.0.1:",
    ] {
        assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
    }
    assert!(!all.contains(&user.password), "password leaked:\n{all}");
}

#[test]
fn doctor_over_starttls_and_smtps() {
    let server = MailServer::start();
    let smtp = SmtpServer::start(&server);
    let user = server.add_user("doctor-starttls");
    let extra = format!(
        "smtp: {{ host: 127.0.0.1, port: {}, security: tls }}",
        smtp.smtps_port()
    );
    let (_vault, config) = vault_and_config(&server, &user, &extra);
    replace_in_config(
        &config,
        &format!("port: {}, security: tls }}", server.imaps_port()),
        &format!("port: {}, security: starttls }}", server.imap_port()),
    );
    let output = doctor(&config);
    let all = text(&output);
    assert!(output.status.success(), "{all}\n{}", server.log());
    assert!(
        all.contains(&format!(
            "connect: 127.0.0.1:{} (starttls)",
            server.imap_port()
        )),
        "{all}"
    );
    assert!(all.contains("ok    [test] TLS: TLS"), "{all}");
    assert!(
        all.contains(&format!("SMTP: 127.0.0.1:{} (tls)", smtp.smtps_port())),
        "{all}"
    );
}

#[test]
fn doctor_plain_on_loopback_warns_about_cleartext() {
    let server = MailServer::start();
    let user = server.add_user("doctor-plain");
    let (_vault, config) = vault_and_config(&server, &user, "");
    replace_in_config(
        &config,
        &format!("port: {}, security: tls }}", server.imaps_port()),
        &format!("port: {}, security: none }}", server.imap_port()),
    );
    let output = doctor(&config);
    let all = text(&output);
    assert!(output.status.success(), "{all}\n{}", server.log());
    assert!(all.contains("warn  [test] TLS: none"), "{all}");
}

#[test]
fn wrong_password_says_authentication_failed() {
    // A server of its own: Dovecot may delay logins after a failure.
    let server = MailServer::start();
    let mut user = server.add_user("doctor-wrong");
    user.password = "definitely-not-the-password".into();
    let (_vault, config) = vault_and_config(&server, &user, "");
    let output = doctor(&config);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("FAIL  [test] login:"), "{all}");
    assert!(all.contains("authentication"), "{all}");
    assert!(all.contains("failed"), "{all}");
    assert!(
        !all.contains("definitely-not-the-password"),
        "password leaked:\n{all}"
    );
    // No folder checks after a failed login: they would bury the cause.
    assert!(!all.contains("Drafts folder"), "{all}");
}

#[test]
fn unknown_ca_is_a_certificate_problem() {
    let server = MailServer::start();
    let user = server.add_user("doctor-ca");
    let (_vault, config) = vault_and_config(&server, &user, "");
    let ca_line = format!("ca_file: \"{}\"\n", server.ca_file().display());
    let yaml = std::fs::read_to_string(&config).unwrap();
    let without_ca: String = yaml
        .lines()
        .filter(|line| !line.trim_start().starts_with("ca_file:"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(yaml, without_ca, "expected a ca_file line like {ca_line}");
    std::fs::write(&config, without_ca).unwrap();
    let output = doctor(&config);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("FAIL  [test] TLS:"), "{all}");
    assert!(all.contains("certificate"), "{all}");
    assert!(all.contains("ca_file"), "{all}");
}

#[test]
fn drafts_named_gmail_style_found_by_special_use() {
    let server = MailServer::start_with(ServerOptions {
        drafts_folder: "[Gmail]/Drafts".into(),
        ..ServerOptions::default()
    });
    let user = server.add_user("doctor-gmail");
    let (_vault, config) = vault_and_config(&server, &user, "");
    let output = doctor(&config);
    let all = text(&output);
    assert!(output.status.success(), "{all}\n{}", server.log());
    assert!(
        all.contains("ok    [test] Drafts folder: [Gmail]/Drafts (by special-use \\Drafts)"),
        "{all}"
    );
}

#[test]
fn missing_drafts_folder_fails_with_the_fix() {
    let server = MailServer::start_with(ServerOptions {
        drafts_folder: "Unsent Replies".into(),
        special_use: false,
        ..ServerOptions::default()
    });
    let user = server.add_user("doctor-nodrafts");
    let (_vault, config) = vault_and_config(&server, &user, "");
    let output = doctor(&config);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FAIL  [test] Drafts folder: not found"),
        "{all}"
    );
    assert!(all.contains("folders.drafts"), "{all}");
    // Sent is still found, by its well-known name.
    assert!(
        all.contains("ok    [test] Sent folder: Sent (by its name)"),
        "{all}"
    );
}

#[test]
fn xoauth2_login_through_doctor() {
    let server = MailServer::start_with(ServerOptions {
        oauth2: true,
        ..ServerOptions::default()
    });
    let user = server.add_user("doctor-oauth");
    let token = server.oauth2_token(&user);
    let extra = "auth: xoauth2\ntoken: { env: MAILBRIDGE_TEST_TOKEN }";
    let (_vault, config) = vault_and_config(&server, &user, extra);
    let output = bridge_command(&config)
        .args(["-vv", "doctor"])
        .env("MAILBRIDGE_TEST_TOKEN", &token)
        .output()
        .unwrap();
    let all = text(&output);
    assert!(output.status.success(), "{all}\n{}", server.log());
    assert!(
        all.contains("OAuth2 token from $MAILBRIDGE_TEST_TOKEN"),
        "{all}"
    );
    assert!(all.contains("ok    [test] login:"), "{all}");
    assert!(!all.contains(&token), "token leaked:\n{all}");
}

#[test]
fn smtp_unreachable_fails_only_smtp() {
    let server = MailServer::start();
    let smtp = SmtpServer::start(&server);
    let user = server.add_user("doctor-smtp");
    // SMTP on a port nothing listens on: connect fails, IMAP checks still pass.
    // Port 1 (tcpmux): privileged, so no parallel test's server can take it
    // between choosing it and connecting, as a just-freed ephemeral port can.
    let closed: u16 = 1;
    let extra = format!("smtp: {{ host: 127.0.0.1, port: {closed}, security: tls }}");
    let (_vault, config) = vault_and_config(&server, &user, &extra);
    let output = doctor(&config);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("ok    [test] login:"), "{all}");
    assert!(
        all.contains(&format!("FAIL  [test] SMTP: SMTP 127.0.0.1:{closed}")),
        "{all}"
    );
    drop(smtp);
}

#[test]
fn connection_refused_names_the_server() {
    let server = MailServer::start();
    let user = server.add_user("doctor-refused");
    let (_vault, config) = vault_and_config(&server, &user, "");
    // Port 1 (tcpmux): privileged, so no parallel test's server can take it
    // between choosing it and connecting, as a just-freed ephemeral port can.
    let closed: u16 = 1;
    replace_in_config(
        &config,
        &format!("port: {}, security: tls }}", server.imaps_port()),
        &format!("port: {closed}, security: tls }}"),
    );
    let output = doctor(&config);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!(
            "FAIL  [test] connect: IMAP 127.0.0.1:{closed}: connection refused"
        )),
        "{all}"
    );
}

#[test]
fn vault_missing_fails() {
    let server = MailServer::start();
    let user = server.add_user("doctor-novault");
    let dir = temp_vault();
    let missing = dir.path().join("no-such-vault");
    let config = write_config(&dir.path().join(".config"), &missing, &server, &user, "");
    let output = doctor(&config);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("FAIL  vault:"), "{all}");
    assert!(all.contains("does not exist"), "{all}");
}

#[test]
fn login_stores_in_the_keychain_and_doctor_uses_it() {
    use std::io::Write;
    let server = MailServer::start();
    let user = server.add_user("doctor-keyring");
    let (_vault, config) = vault_and_config(&server, &user, "");
    // The keychain is shared by the whole OS user: a unique account name per run.
    let account = format!("kr{}", std::process::id());
    let yaml = std::fs::read_to_string(&config).unwrap();
    let yaml = yaml.replace("  test:\n", &format!("  {account}:\n"));
    let yaml: String = yaml
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("password:") {
                "    password: keyring\n".to_string()
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&config, yaml).unwrap();

    let mut login = bridge_command(&config)
        .args(["login", &account, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(login.stdin.take().unwrap(), "{}", user.password).unwrap();
    let login = login.wait_with_output().unwrap();
    assert!(login.status.success(), "{}", text(&login));
    assert!(!text(&login).contains(&user.password));

    let output = doctor(&config);
    let all = text(&output);
    // Remove the entry whatever happened, so runs leave no secrets behind.
    let _ = keyring::Entry::new("mailbridge", &account).and_then(|e| e.delete_credential());
    assert!(output.status.success(), "{all}\n{}", server.log());
    assert!(
        all.contains(&format!(
            "ok    [{account}] credentials: password found in the OS keychain"
        )),
        "{all}"
    );
    assert!(all.contains(&format!("ok    [{account}] login:")), "{all}");
    assert!(!all.contains(&user.password), "password leaked:\n{all}");
}
