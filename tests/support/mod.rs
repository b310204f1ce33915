//! The real-server integration test harness.
//!
//! Integration tests (`tests/*.rs`, with `mod support;`) talk IMAP to a real
//! Dovecot and SMTP to a real Postfix that this module starts per test, on
//! 127.0.0.1 only, on free random ports, with TLS from a CA generated per
//! server. Every test gets its own servers, users and temp vault, so tests run
//! in parallel (threads and test binaries) without sharing a path or a port.
//!
//! ```ignore
//! mod support;
//! use support::*;
//!
//! #[test]
//! fn pushes_a_draft() {
//!     let server = MailServer::start();
//!     let user = server.add_user("alice");
//!     server.append(&user, "INBOX", b"From: bob@example.test\r\nSubject: hi\r\n\r\nhello\r\n");
//!     let (vault, home) = (temp_vault(), tempfile::tempdir().unwrap());
//!     let config = write_config(home.path(), vault.path(), &server, &user, "");
//!     let out = bridge_command(&config).args(["sync"]).output().unwrap();
//!     assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
//! }
//! ```
//!
//! # What runs
//! - [`MailServer`]: `dovecot -F -c <conf>` as a child process (killed and
//!   reaped on drop) with its own base_dir, state and log in a temp dir;
//!   IMAPS, IMAP with STARTTLS (cleartext LOGIN also allowed, it is loopback),
//!   LMTP, and Dovecot's auth service on TCP for Postfix. Users live in
//!   passwd-files (`users.d/<user>`, one per user, seen at once). Folders:
//!   INBOX, Sent, Drafts (or [`ServerOptions::drafts_folder`], e.g.
//!   `[Gmail]/Drafts`: separator `/`, maildir `LAYOUT=fs`), Archive, Trash with
//!   SPECIAL-USE `\Sent \Drafts \Archive \Trash` (unless
//!   [`ServerOptions::special_use`] is off). With [`ServerOptions::oauth2`], a
//!   second passdb validates XOAUTH2/OAUTHBEARER tokens against an introspection
//!   endpoint the harness serves in a thread; passwords keep working.
//! - [`SmtpServer`]: Postfix's `master` with its own config and queue dirs:
//!   submission (STARTTLS, AUTH only after TLS) and smtps (implicit TLS), SASL
//!   through the Dovecot's auth (same users and passwords), delivery of
//!   `@example.test` to Dovecot over LMTP; every other recipient is delivered
//!   to the [`SmtpServer::outbound`] user instead of leaving the machine.
//!   Postfix logs to `postfix.log` in its dir ([`SmtpServer::log`]).
//!
//! As root (CI), Dovecot runs its services as `dovecot`/`dovenull` and the
//! mailboxes belong to the `mail` user; Postfix runs as `postfix`. As another
//! user, Dovecot runs entirely as that user (no chroot; checked as `nobody`);
//! Postfix cannot (its master needs root), so SMTP tests need root or GreenMail.
//!
//! Start-up takes about 50 ms for Dovecot and as much for Postfix; stopping
//! (SIGTERM to the daemon's process group) about 20 ms.
//!
//! # Failed logins
//! Dovecot's auth penalty (2, 4, 8... s before every login from an address
//! that failed once) is disabled, and `auth_failure_delay = 0`: a wrong
//! password answers within 0.5 s (2.3 flushes failures on a 500 ms timer) and
//! later logins are not delayed. Still, a test that logs in with wrong
//! credentials should use a `MailServer` of its own (they are cheap), never
//! one shared with tests that expect logins to work; on GreenMail, use users
//! of its own.
//!
//! # Missing servers
//! Without Dovecot (or Postfix, for SMTP tests) the harness panics saying what
//! is missing and how to install it (`apt-get install -y dovecot-imapd
//! dovecot-lmtpd postfix`, or `scripts/install-test-deps.sh`): a test never
//! passes silently without its server.
//!
//! # GreenMail (Docker)
//! With `MAILBRIDGE_TEST_SERVER=greenmail`, both servers are the GreenMail
//! started by `docker compose -f docker/docker-compose.yml up -d` (IMAP 3143,
//! IMAPS 3993, SMTP 3025, SMTPS 3465, API 8080 on 127.0.0.1; TLS certificate
//! from `docker/certs/`, signed by `docker/certs/ca.pem`). Users are created
//! through GreenMail's API with unique names; folders are created by IMAP
//! CREATE. GreenMail has no SPECIAL-USE (tests asserting it fail there), and
//! no LMTP, OAuth2, doveadm or outbound sink (those helpers panic saying so).
//! Written without a Docker engine at hand: untested.
//!
//! # Helpers
//! - Seeding and checking mailboxes without the code under test:
//!   [`MailServer::append`], [`MailServer::append_with`] (flags, date),
//!   [`MailServer::append_many`], [`MailServer::messages`],
//!   [`MailServer::list`], [`MailServer::imap`] (a logged-in [`RawImap`]),
//!   [`MailServer::doveadm`], [`MailServer::set_uidvalidity`].
//! - Mail through the real delivery path: [`SmtpServer::send`]; what was sent
//!   to the outside world: `server.messages(smtp.outbound(), "INBOX")`.
//! - The bridge: [`temp_vault`], [`write_config`] (SMTP via
//!   [`SmtpServer::account_yaml`]), [`bridge_command`], [`wait_for`].
//!
//! # Debugging
//! A test that panics prints the tail of the Dovecot and Postfix logs. Set
//! `MAILBRIDGE_TEST_KEEP=1` to keep the servers' temp dirs (config, logs,
//! mailboxes) after the test; their paths are printed.

#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod dovecot;
pub mod greenmail;
pub mod imap;
pub mod net;
pub mod oauth;
pub mod postfix;
pub mod process;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use imap::{ImapResponse, ListEntry, Message, RawImap};
pub use smtp::SmtpSecurity;

use dovecot::DOMAIN;
use process::Daemon;

/// How a [`MailServer`] is set up.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The name of the folder carrying `\Drafts` (default `Drafts`).
    pub drafts_folder: String,
    /// Accept XOAUTH2/OAUTHBEARER tokens from [`MailServer::oauth2_token`].
    pub oauth2: bool,
    /// Mark Sent/Drafts/Archive/Trash with SPECIAL-USE attributes (default
    /// true); off, clients must find them by their names.
    pub special_use: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            drafts_folder: "Drafts".into(),
            oauth2: false,
            special_use: true,
        }
    }
}

/// A user of a [`MailServer`]: log in with `username`/`password`; mail to
/// `email` reaches its INBOX (through [`SmtpServer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestUser {
    pub username: String,
    pub password: String,
    pub email: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Dovecot,
    GreenMail,
}

fn backend() -> Backend {
    match std::env::var("MAILBRIDGE_TEST_SERVER").as_deref() {
        Err(_) | Ok("") | Ok("dovecot") => Backend::Dovecot,
        Ok("greenmail") => Backend::GreenMail,
        Ok(other) => panic!(
            "MAILBRIDGE_TEST_SERVER={other}: expected `greenmail` (Docker) or unset (local Dovecot and Postfix)"
        ),
    }
}

/// One IMAP server (a Dovecot of its own, or the shared GreenMail); Dovecot is
/// stopped and its directory removed on drop.
pub struct MailServer {
    backend: Backend,
    options: ServerOptions,
    ports: dovecot::Ports,
    ca_file: PathBuf,
    /// Dovecot only.
    daemon: Option<Daemon>,
    certs: Option<certs::CertFiles>,
    oauth: Option<oauth::Introspection>,
    log_path: Option<PathBuf>,
    dir: Option<tempfile::TempDir>,
}

impl MailServer {
    /// A server with default options.
    pub fn start() -> MailServer {
        MailServer::start_with(ServerOptions::default())
    }

    pub fn start_with(options: ServerOptions) -> MailServer {
        match backend() {
            Backend::Dovecot => MailServer::start_dovecot(options),
            Backend::GreenMail => MailServer::start_greenmail(options),
        }
    }

    fn start_dovecot(options: ServerOptions) -> MailServer {
        let binary = dovecot::check_installed();
        let identity = dovecot::Identity::detect();
        let dir = server_dir("dovecot");
        let path = dir.path().to_path_buf();
        let certs = certs::generate(&path);
        let home = path.join("home");
        std::fs::create_dir(&home).expect("mkdir home");
        std::os::unix::fs::chown(&home, Some(identity.mail.uid), Some(identity.mail.gid))
            .expect("chown home to the mail user");
        for sub in ["run", "state", "users.d"] {
            std::fs::create_dir(path.join(sub)).expect("mkdir");
        }
        let oauth = options.oauth2.then(oauth::Introspection::start);
        let oauth_url = oauth.as_ref().map(oauth::Introspection::url);
        let mut started = None;
        let mut failure = String::new();
        for _attempt in 0..5 {
            let ports = dovecot::Ports {
                imap: free_port(),
                imaps: free_port(),
                lmtp: free_port(),
                auth: free_port(),
            };
            let settings = dovecot::Settings {
                dir: &path,
                certs: &certs,
                options: &options,
                identity: &identity,
                ports,
                oauth2_url: oauth_url.as_deref(),
            };
            match dovecot::start(&binary, &settings) {
                Ok(daemon) => {
                    started = Some((daemon, ports));
                    break;
                }
                Err(why) => {
                    eprintln!("harness: retrying with fresh ports: {why}");
                    failure = why;
                }
            }
        }
        let Some((daemon, ports)) = started else {
            panic!("Dovecot did not start in 5 attempts; the last: {failure}");
        };
        MailServer {
            backend: Backend::Dovecot,
            options,
            ports,
            ca_file: certs.ca.clone(),
            daemon: Some(daemon),
            certs: Some(certs),
            oauth,
            log_path: Some(dovecot::log_file(&path)),
            dir: Some(dir),
        }
    }

    fn start_greenmail(options: ServerOptions) -> MailServer {
        greenmail::check_running();
        assert!(
            !options.oauth2,
            "GreenMail does not validate OAuth2 tokens: run OAuth2 tests against Dovecot \
             (unset MAILBRIDGE_TEST_SERVER)"
        );
        assert!(
            options.special_use,
            "GreenMail has no SPECIAL-USE to turn off; folders there are found by name only"
        );
        MailServer {
            backend: Backend::GreenMail,
            options,
            ports: dovecot::Ports {
                imap: greenmail::IMAP,
                imaps: greenmail::IMAPS,
                lmtp: 0,
                auth: 0,
            },
            ca_file: greenmail::ca_file(),
            daemon: None,
            certs: None,
            oauth: None,
            log_path: None,
            dir: None,
        }
    }

    /// True when this is the shared GreenMail rather than a Dovecot of our own.
    pub fn is_greenmail(&self) -> bool {
        self.backend == Backend::GreenMail
    }

    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// IMAP over implicit TLS.
    pub fn imaps_port(&self) -> u16 {
        self.ports.imaps
    }

    /// Plain IMAP offering STARTTLS; cleartext LOGIN is allowed too (loopback).
    pub fn imap_port(&self) -> u16 {
        self.ports.imap
    }

    /// Dovecot's LMTP listener (TCP on 127.0.0.1).
    pub fn lmtp_port(&self) -> u16 {
        assert!(!self.is_greenmail(), "GreenMail has no LMTP");
        self.ports.lmtp
    }

    /// Dovecot's auth-client listener (TCP), as Postfix's SASL uses it.
    pub fn auth_port(&self) -> u16 {
        assert!(
            !self.is_greenmail(),
            "GreenMail has no Dovecot auth service"
        );
        self.ports.auth
    }

    /// PEM of the CA that signed the server certificate (SAN 127.0.0.1, localhost).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The server's working directory (config, logs, mailboxes); Dovecot only.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(tempfile::TempDir::path)
    }

    /// The domain of every test user's address.
    pub fn domain(&self) -> &str {
        DOMAIN
    }

    /// Creates a fresh user `<hint>-<random>@example.test` with a random
    /// password; it can log in at once. Its folders (INBOX, Sent, Drafts or
    /// `drafts_folder`, Archive, Trash) exist from its first login.
    pub fn add_user(&self, hint: &str) -> TestUser {
        let local = format!("{}-{}", sanitize(hint), random_hex(8));
        let email = format!("{local}@{DOMAIN}");
        let user = TestUser {
            username: email.clone(),
            password: random_hex(24),
            email,
        };
        match self.backend {
            Backend::Dovecot => {
                let dir = dovecot::users_dir(self.dir().expect("dovecot dir"));
                let tmp = dir.join(format!(".{}.tmp", user.username));
                std::fs::write(
                    &tmp,
                    format!("{}:{{PLAIN}}{}::::::\n", user.username, user.password),
                )
                .expect("write passwd-file");
                std::fs::rename(&tmp, dir.join(&user.username)).expect("rename passwd-file");
                // Dovecot creates a user's INBOX on its first SELECT or
                // EXAMINE; racing a delivery that creates it too, its imap
                // process can die on a lock ("Resource deadlock avoided").
                // Created here, before any test delivers or polls.
                let mut imap = self.imap(&user);
                imap.command("EXAMINE INBOX")
                    .unwrap_or_else(|err| panic!("harness EXAMINE INBOX: {err}\n{}", self.log()))
                    .expect_ok("EXAMINE INBOX");
                imap.logout();
            }
            Backend::GreenMail => {
                greenmail::create_user(&user.email, &user.username, &user.password);
                let mut imap = self.imap(&user);
                for folder in [
                    "Sent",
                    self.options.drafts_folder.as_str(),
                    "Archive",
                    "Trash",
                ] {
                    // "already exists" is fine.
                    let _ = imap.create(folder);
                }
                imap.logout();
            }
        }
        user
    }

    /// A harness IMAP connection (IMAPS), logged in as `user`.
    pub fn imap(&self, user: &TestUser) -> RawImap {
        let mut imap = RawImap::connect_tls(self.host(), self.imaps_port(), self.ca_file())
            .unwrap_or_else(|err| panic!("harness IMAPS connect: {err}\n{}", self.log()));
        let response = imap
            .login(&user.username, &user.password)
            .unwrap_or_else(|err| panic!("harness IMAP LOGIN: {err}\n{}", self.log()));
        assert!(
            response.is_ok(),
            "harness IMAP LOGIN as {} failed: {} {}\n{}",
            user.username,
            response.status,
            response.text,
            self.log()
        );
        imap
    }

    /// Puts a message into `folder` (no flags) with the harness's own IMAP
    /// APPEND, never the code under test. Returns its UID.
    pub fn append(&self, user: &TestUser, folder: &str, rfc822: &[u8]) -> u32 {
        self.append_with(user, folder, "", None, rfc822)
    }

    /// APPEND with flags (e.g. `\Seen \Draft`) and an optional INTERNALDATE
    /// (`01-Jan-2025 10:00:00 +0000`). Returns the UID (APPENDUID).
    pub fn append_with(
        &self,
        user: &TestUser,
        folder: &str,
        flags: &str,
        internal_date: Option<&str>,
        rfc822: &[u8],
    ) -> u32 {
        let mut imap = self.imap(user);
        let response = imap
            .append(folder, flags, internal_date, rfc822)
            .unwrap_or_else(|err| panic!("harness APPEND to {folder}: {err}\n{}", self.log()));
        assert!(
            response.is_ok(),
            "harness APPEND to {folder} failed: {} {}\n{}",
            response.status,
            response.text,
            self.log()
        );
        let uid = appenduid(&response.text).unwrap_or_else(|| {
            // No UIDPLUS (GreenMail): the newest UID of the folder.
            imap.select(folder).expect("select").expect_ok("SELECT");
            imap.uid_search("ALL")
                .expect("search")
                .into_iter()
                .max()
                .unwrap_or(0)
        });
        imap.logout();
        uid
    }

    /// APPENDs many messages (no flags) over one connection; returns their UIDs.
    pub fn append_many(&self, user: &TestUser, folder: &str, messages: &[&[u8]]) -> Vec<u32> {
        let mut imap = self.imap(user);
        let uids = messages
            .iter()
            .map(|rfc822| {
                let response = imap
                    .append(folder, "", None, rfc822)
                    .unwrap_or_else(|err| panic!("harness APPEND to {folder}: {err}"));
                assert!(
                    response.is_ok(),
                    "harness APPEND to {folder} failed: {} {}\n{}",
                    response.status,
                    response.text,
                    self.log()
                );
                appenduid(&response.text).unwrap_or(0)
            })
            .collect();
        imap.logout();
        uids
    }

    /// Every message in `folder` of `user` (UID, flags, raw), read by the harness.
    pub fn messages(&self, user: &TestUser, folder: &str) -> Vec<Message> {
        let mut tries = 0;
        loop {
            let mut imap = self.imap(user);
            match imap.messages(folder) {
                Ok(messages) => {
                    imap.logout();
                    return messages;
                }
                // Dovecot lost a race creating the INBOX with a delivery.
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(err) => panic!("harness FETCH in {folder}: {err}\n{}", self.log()),
            }
        }
    }

    /// The folders of `user` as LIST shows them.
    pub fn list(&self, user: &TestUser) -> Vec<ListEntry> {
        let mut imap = self.imap(user);
        let list = imap.list().expect("LIST");
        imap.logout();
        list
    }

    /// Runs `doveadm -c <this server's config> <args>` and returns its stdout;
    /// panics with its stderr if it fails. Dovecot only. For what IMAP cannot
    /// do, e.g. `["mailbox", "update", "-u", user, "--uid-validity", "7", "INBOX"]`.
    pub fn doveadm(&self, args: &[&str]) -> String {
        assert!(
            !self.is_greenmail(),
            "doveadm needs the harness's Dovecot, not GreenMail"
        );
        let conf = self.dir().expect("dovecot dir").join("dovecot.conf");
        let doveadm = process::find_program("doveadm").expect("doveadm (package dovecot-core)");
        let output = Command::new(doveadm)
            .arg("-c")
            .arg(&conf)
            .args(args)
            .output()
            .expect("run doveadm");
        assert!(
            output.status.success(),
            "doveadm {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Gives `folder` of `user` a new UIDVALIDITY (as after a server-side
    /// rebuild), keeping its messages. Dovecot only.
    pub fn set_uidvalidity(&self, user: &TestUser, folder: &str, uidvalidity: u32) {
        self.doveadm(&[
            "mailbox",
            "update",
            "-u",
            &user.username,
            "--uid-validity",
            &uidvalidity.to_string(),
            folder,
        ]);
    }

    /// A fresh token that Dovecot accepts for `user` over XOAUTH2/OAUTHBEARER.
    /// Needs `ServerOptions { oauth2: true, .. }`.
    pub fn oauth2_token(&self, user: &TestUser) -> String {
        let oauth = self.oauth.as_ref().unwrap_or_else(|| {
            panic!(
                "oauth2_token needs a server started with \
                 MailServer::start_with(ServerOptions {{ oauth2: true, ..Default::default() }})"
            )
        });
        let token = format!("ya29.test-{}", random_hex(32));
        oauth.issue(&token, &user.username);
        token
    }

    /// Dovecot's log, for failure messages.
    pub fn log(&self) -> String {
        match &self.log_path {
            Some(path) => format!(
                "--- Dovecot log {} ---\n{}",
                path.display(),
                std::fs::read_to_string(path).unwrap_or_default()
            ),
            None => "(GreenMail: see `docker compose -f docker/docker-compose.yml logs greenmail`)"
                .to_string(),
        }
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop();
        }
        if std::thread::panicking() && self.log_path.is_some() {
            eprintln!("{}", tail(&self.log(), 60));
        }
        keep_if_asked(&mut self.dir, "Dovecot");
    }
}

/// One SMTP server: a Postfix of its own in front of a [`MailServer`]'s
/// Dovecot (or the shared GreenMail's SMTP).
pub struct SmtpServer {
    submission: u16,
    smtps: u16,
    ca_file: PathBuf,
    outbound: Option<TestUser>,
    daemon: Option<Daemon>,
    log_path: Option<PathBuf>,
    dir: Option<tempfile::TempDir>,
}

impl SmtpServer {
    /// Submission (STARTTLS) and smtps (implicit TLS) with AUTH through
    /// `mail`'s users; `@example.test` is delivered to `mail` over LMTP, any
    /// other recipient to [`SmtpServer::outbound`].
    pub fn start(mail: &MailServer) -> SmtpServer {
        if mail.is_greenmail() {
            return SmtpServer {
                submission: greenmail::SMTP,
                smtps: greenmail::SMTPS,
                ca_file: greenmail::ca_file(),
                outbound: None,
                daemon: None,
                log_path: None,
                dir: None,
            };
        }
        let daemon_dir = postfix::check_installed();
        let outbound = mail.add_user("outbound");
        let dir = server_dir("postfix");
        let path = dir.path().to_path_buf();
        let certs = mail.certs.as_ref().expect("Dovecot certificates");
        let mut started = None;
        for _attempt in 0..5 {
            let ports = postfix::Ports {
                submission: free_port(),
                smtps: free_port(),
            };
            let settings = postfix::Settings {
                dir: &path,
                certs,
                ports: &ports,
                lmtp_port: mail.lmtp_port(),
                auth_port: mail.auth_port(),
                outbound: &outbound.email,
            };
            if let Some(daemon) = postfix::start(&daemon_dir, &settings) {
                started = Some((daemon, ports));
                break;
            }
        }
        let (daemon, ports) = started.expect("Postfix: every attempt hit a port in use");
        SmtpServer {
            submission: ports.submission,
            smtps: ports.smtps,
            ca_file: mail.ca_file().to_path_buf(),
            outbound: Some(outbound),
            daemon: Some(daemon),
            log_path: Some(postfix::log_file(&path)),
            dir: Some(dir),
        }
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// SMTP submission with STARTTLS (AUTH only after TLS).
    pub fn submission_port(&self) -> u16 {
        self.submission
    }

    /// SMTP over implicit TLS (465 style).
    pub fn smtps_port(&self) -> u16 {
        self.smtps
    }

    /// The CA the certificate chains to (the MailServer's).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The user whose INBOX receives every message sent to an address outside
    /// `example.test` (Postfix relays nowhere). Read it with
    /// [`MailServer::messages`].
    pub fn outbound(&self) -> &TestUser {
        self.outbound.as_ref().expect(
            "GreenMail has no outbound sink: it keeps mail for any recipient in a mailbox of that address",
        )
    }

    /// The account's `smtp:` line for [`write_config`]'s extra YAML, e.g.
    /// `smtp: { host: 127.0.0.1, port: 40123, security: starttls }`.
    pub fn account_yaml(&self, security: SmtpSecurity) -> String {
        let (port, security) = match security {
            SmtpSecurity::Tls => (self.smtps, "tls"),
            SmtpSecurity::Starttls => (self.submission, "starttls"),
            SmtpSecurity::Plain => (self.submission, "none"),
        };
        format!("smtp: {{ host: 127.0.0.1, port: {port}, security: {security} }}")
    }

    /// Submits `rfc822` as `from` (AUTH PLAIN after STARTTLS; over smtps on
    /// GreenMail) to `to`, with the harness's own SMTP client. Delivery is
    /// asynchronous: wait for it with [`wait_for`].
    pub fn send(&self, from: &TestUser, to: &[&str], rfc822: &[u8]) {
        let (port, security) = if self.daemon.is_some() {
            (self.submission, SmtpSecurity::Starttls)
        } else {
            (self.smtps, SmtpSecurity::Tls)
        };
        smtp::submit(
            self.host(),
            port,
            security,
            &self.ca_file,
            Some((&from.username, &from.password)),
            &from.email,
            to,
            rfc822,
        )
        .unwrap_or_else(|err| panic!("harness SMTP submission failed: {err}\n{}", self.log()));
    }

    /// Postfix's log, for failure messages.
    pub fn log(&self) -> String {
        match &self.log_path {
            Some(path) => format!(
                "--- Postfix log {} ---\n{}",
                path.display(),
                std::fs::read_to_string(path).unwrap_or_default()
            ),
            None => "(GreenMail: see `docker compose -f docker/docker-compose.yml logs greenmail`)"
                .to_string(),
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop();
        }
        if std::thread::panicking() && self.log_path.is_some() {
            eprintln!("{}", tail(&self.log(), 60));
        }
        keep_if_asked(&mut self.dir, "Postfix");
    }
}

/// A port that was free on 127.0.0.1 a moment ago (bind to port 0). Servers
/// retry with fresh ports if one was taken in between.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0")
}

/// An empty vault directory, removed on drop.
pub fn temp_vault() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mailbridge-vault-")
        .tempdir()
        .expect("create temp vault")
}

/// The `bridge` binary: cargo names it for tests and benches; an example
/// (the demo) finds it beside itself in the same target dir.
pub fn bridge_binary() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_bridge") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/<name> → target/<profile>/bridge
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("bridge"))
        .expect("the bridge binary beside the example")
}

/// `bridge --config <config>`, the binary under test.
pub fn bridge_command(config: &Path) -> Command {
    let mut command = Command::new(bridge_binary());
    command
        .arg("--config")
        .arg(config)
        .env_remove("BRIDGE_CONFIG")
        .env("NO_COLOR", "1");
    command
}

/// Writes `<dir>/config.yaml`: vault `vault`, state in `<dir>/state`, one
/// account `test` for `user` over IMAPS on 127.0.0.1 trusting the server's CA,
/// its password from `{ command: "cat <dir>/test.password" }`, and no SMTP.
/// `extra_account_yaml` holds more keys of the account, unindented, one per
/// line (e.g. `smtp.account_yaml(SmtpSecurity::Tls)` or `since: 30d`).
pub fn write_config(
    dir: &Path,
    vault: &Path,
    server: &MailServer,
    user: &TestUser,
    extra_account_yaml: &str,
) -> PathBuf {
    write_config_with(dir, vault, server, user, extra_account_yaml, "")
}

/// [`write_config`] plus top-level YAML (e.g. a `drafts:` section), unindented.
pub fn write_config_with(
    dir: &Path,
    vault: &Path,
    server: &MailServer,
    user: &TestUser,
    extra_account_yaml: &str,
    extra_top_yaml: &str,
) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("create config dir");
    let password_file = dir.join("test.password");
    std::fs::write(&password_file, format!("{}\n", user.password)).expect("write password file");
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))
        .expect("chmod password file");
    let quoted = |path: &Path| yaml_str(&path.display().to_string());
    let command = format!("cat '{}'", password_file.display());
    let mut yaml = format!(
        "# Written by the mailbridge test harness.\n\
         vault: {vault}\n\
         state_dir: {state}\n\
         accounts:\n  \
           test:\n    \
             email: {email}\n    \
             name: Test User\n    \
             username: {username}\n    \
             imap: {{ host: 127.0.0.1, port: {port}, security: tls }}\n    \
             ca_file: {ca}\n    \
             password: {{ command: {command} }}\n",
        vault = quoted(vault),
        state = quoted(&dir.join("state")),
        email = yaml_str(&user.email),
        username = yaml_str(&user.username),
        port = server.imaps_port(),
        ca = quoted(server.ca_file()),
        command = yaml_str(&command),
    );
    for line in extra_account_yaml.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("    ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml.push_str(extra_top_yaml);
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config.yaml");
    path
}

/// Polls `cond` every 25 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The `Content-Type` line of a plain UTF-8 text message, for [`rfc822`].
pub const PLAIN_TEXT: &str = "Content-Type: text/plain; charset=utf-8";

/// A message as the tests deliver it, with CRLF line ends: `refs` are its
/// ancestors, oldest first (References, and the last as In-Reply-To);
/// `content_type` is the whole `Content-Type` line.
#[allow(clippy::too_many_arguments)]
pub fn rfc822(
    id: Option<&str>,
    from: &str,
    to: &str,
    subject: &str,
    date: &str,
    refs: &[impl AsRef<str>],
    content_type: &str,
    body: &str,
) -> Vec<u8> {
    let mut text = format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n");
    if let Some(id) = id {
        text.push_str(&format!("Message-ID: {id}\r\n"));
    }
    if let Some(parent) = refs.last() {
        let refs: Vec<&str> = refs.iter().map(AsRef::as_ref).collect();
        text.push_str(&format!(
            "In-Reply-To: {}\r\nReferences: {}\r\n",
            parent.as_ref(),
            refs.join(" ")
        ));
    }
    text.push_str(&format!("MIME-Version: 1.0\r\n{content_type}\r\n\r\n"));
    text.push_str(&body.replace('\n', "\r\n"));
    text.push_str("\r\n");
    text.into_bytes()
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
pub fn yaml_str(text: &str) -> String {
    serde_json::to_string(text).expect("string to JSON")
}

fn server_dir(kind: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    // Under /tmp rather than $TMPDIR where possible: Dovecot's unix sockets
    // live in there, and a socket path may not exceed 107 bytes.
    let base = Path::new("/tmp");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix(&format!("mailbridge-{kind}-"))
        .tempdir_in(base)
        .expect("create server temp dir");
    // Dovecot's and Postfix's unprivileged processes must reach inside.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod server dir");
    dir
}

fn keep_if_asked(dir: &mut Option<tempfile::TempDir>, what: &str) {
    if std::env::var_os("MAILBRIDGE_TEST_KEEP").is_some_and(|v| !v.is_empty() && v != "0") {
        if let Some(dir) = dir.take() {
            eprintln!("harness: kept the {what} dir {}", dir.keep().display());
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn appenduid(text: &str) -> Option<u32> {
    let rest = &text[text.find("[APPENDUID ")? + "[APPENDUID ".len()..];
    rest.split([' ', ']']).nth(1)?.parse().ok()
}

/// Lowercase letters, digits and `-` from `hint` (at most 20), or `user`.
fn sanitize(hint: &str) -> String {
    let clean: String = hint
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            '_' | '.' | ' ' => Some('-'),
            _ => None,
        })
        .take(20)
        .collect();
    let clean = clean.trim_matches('-').to_string();
    if clean.is_empty() {
        "user".into()
    } else {
        clean
    }
}

/// `n` random lowercase hex digits (std's RandomState keys, a counter and the clock).
pub fn random_hex(n: usize) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::new();
    while out.len() < n {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        hasher.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out.truncate(n);
    out
}
