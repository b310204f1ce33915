//! `bridge watch` against a real Dovecot and Postfix: new mail delivered over
//! SMTP shows up as a note within seconds (IDLE), long before the interval.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;

#[test]
fn watch_syncs_on_new_mail_and_stops_cleanly_on_sigterm() {
    let server = MailServer::start();
    let smtp = SmtpServer::start(&server);
    let user = server.add_user("watch");
    let sender = server.add_user("watch-sender");
    let vault = temp_vault();
    let config = write_config_with(
        &vault.path().join(".config"),
        vault.path(),
        &server,
        &user,
        "",
        "schedule:\n  interval: 1h\n",
    );
    let sources = vault.path().join("Sources/Email");
    let mut child = bridge_command(&config)
        .arg("watch")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bridge watch");

    // The first sync runs at start: the state store records it.
    wait_for(
        Duration::from_secs(20),
        "the first sync of bridge watch",
        || {
            let output = bridge_command(&config)
                .args(["status", "--json"])
                .output()
                .unwrap();
            let json: serde_json::Value =
                serde_json::from_slice(&output.stdout).unwrap_or_default();
            json["accounts"][0]["last_sync"]["ok"] == true
        },
    );
    // Let the IDLE connection settle before the mail arrives.
    std::thread::sleep(Duration::from_millis(500));

    let message = format!(
        "From: Sender <{}>\r\nTo: <{}>\r\nSubject: Watch me\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\nMessage-ID: <watch-1@example.test>\r\n\r\nDid the watcher see this?\r\n",
        sender.email, user.email
    );
    smtp.send(&sender, &[&user.email], message.as_bytes());
    wait_for(
        Duration::from_secs(15),
        "the note of the delivered message",
        || note_containing(&sources, "Did the watcher see this?"),
    );

    let pid = child.id() as i32;
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bridge watch ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}\n{}", server.log());
    assert!(stderr.contains("new mail"), "{stderr}");
}

fn note_containing(dir: &std::path::Path, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            note_containing(&path, needle)
        } else {
            std::fs::read_to_string(&path).is_ok_and(|text| text.contains(needle))
        }
    })
}
