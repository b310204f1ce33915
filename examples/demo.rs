//! The newcomer's demo (`scripts/demo.sh`): a local IMAP + SMTP server with
//! sample mail, and the whole loop run against it with the real `bridge`.
//!
//! It starts the same Dovecot and Postfix the integration tests use (on
//! random loopback ports, TLS from a CA generated now), fills a mailbox with
//! `examples/sample-mail/` (including the thread behind
//! `../shared/seed-draft-reply.md`), writes a config, and runs each step of
//! the loop, printing what it did and where to look. On a terminal it then
//! keeps the servers up until Enter, so you can open the mailbox with any
//! IMAP client.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{MailServer, SmtpSecurity, SmtpServer};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bridge = support::bridge_binary();
    let demo_dir = root.join("target/demo");
    let _ = std::fs::remove_dir_all(&demo_dir);
    let vault = demo_dir.join("vault");
    std::fs::create_dir_all(&vault).expect("create the demo vault");

    println!("== starting a local Dovecot (IMAP) and Postfix (SMTP) on 127.0.0.1");
    let server = MailServer::start();
    let smtp = SmtpServer::start(&server);
    let user = server.add_user("jason");

    let samples = root.join("examples/sample-mail");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&samples)
        .expect("examples/sample-mail")
        .map(|e| e.expect("read sample").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    for file in &files {
        let raw = std::fs::read(file).expect("read sample mail");
        // The user's own replies go to Sent, like a mail client files them.
        let folder = if String::from_utf8_lossy(&raw).starts_with("From: Jason Vallery") {
            "Sent"
        } else {
            "INBOX"
        };
        server.append(&user, folder, &raw);
    }
    println!(
        "   mailbox {} holds {} sample messages",
        user.username,
        files.len()
    );

    let config = support::write_config_with(
        &demo_dir.join("config"),
        &vault,
        &server,
        &user,
        &smtp.account_yaml(SmtpSecurity::Starttls),
        // The sample mail is from December 2025: let threads of any age get a draft.
        "drafts:\n  max_age: 520w\n",
    );
    // The sample mail is Jason's: his address and name, whatever the login.
    let yaml = std::fs::read_to_string(&config).expect("read demo config");
    let yaml = yaml
        .replace("name: Test User", "name: Jason Vallery")
        .replace("  test:\n", "  jason:\n")
        .replace(
            &format!("email: \"{}\"", user.email),
            "email: \"jason@example.com\"",
        );
    std::fs::write(&config, yaml).expect("write demo config");
    println!("   config: {}", config.display());

    let steps: &[(&str, &[&str])] = &[
        ("check the setup", &["doctor"]),
        ("sync: mail → source notes → draft notes", &["sync"]),
        ("sync again: nothing new, no file touched", &["sync"]),
    ];
    let mut failed = false;
    for (what, args) in steps {
        failed |= !run_bridge(&bridge, &config, what, args);
    }
    let mut drafts = Vec::new();
    collect(&vault.join("Drafts"), &mut drafts);
    drafts.sort();
    if drafts.is_empty() {
        println!("\n== no draft was written: nothing awaits a reply");
        failed = true;
    } else {
        let mut args: Vec<&str> = vec!["push"];
        let paths: Vec<String> = drafts.iter().map(|p| p.display().to_string()).collect();
        args.extend(paths.iter().map(String::as_str));
        failed |= !run_bridge(&bridge, &config, "push: drafts → the Drafts folder", &args);
        failed |= !run_bridge(
            &bridge,
            &config,
            "push again: unchanged drafts keep their one copy",
            &args,
        );
    }
    failed |= !run_bridge(&bridge, &config, "status", &["status"]);
    let in_drafts = server.messages(&user, "Drafts");
    println!(
        "\n== the Drafts folder now holds {} message(s): {}",
        in_drafts.len(),
        in_drafts
            .iter()
            .map(|m| m.header("Subject").unwrap_or_default())
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!("\n== where to look");
    let mut notes = Vec::new();
    collect(&vault, &mut notes);
    notes.sort();
    for note in &notes {
        println!("   {}", note.display());
    }
    println!(
        "\n   IMAP: {}:{} (TLS), user {} password {}\n   CA certificate: {}",
        server.host(),
        server.imaps_port(),
        user.username,
        user.password,
        server.ca_file().display()
    );
    println!(
        "   e.g.: openssl s_client -quiet -CAfile {} -connect {}:{}  then  a LOGIN {} {}  /  b SELECT Drafts",
        server.ca_file().display(),
        server.host(),
        server.imaps_port(),
        user.username,
        user.password
    );
    if std::io::stdin().is_terminal() {
        println!("\nThe servers stay up until you press Enter.");
        let _ = std::io::stdin().lock().lines().next();
    }
    drop(smtp);
    drop(server);
    if failed {
        std::process::exit(1);
    }
}

/// Runs one `bridge` step, printing what it is; false when it failed.
fn run_bridge(bridge: &Path, config: &Path, what: &str, args: &[&str]) -> bool {
    println!(
        "\n== bridge {} ({what})",
        args.first().copied().unwrap_or_default()
    );
    let status = Command::new(bridge)
        .arg("--config")
        .arg(config)
        .args(args)
        .status()
        .expect("run bridge");
    if !status.success() {
        println!("   exited with {status}");
    }
    status.success()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}
