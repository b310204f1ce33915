//! One Dovecot instance: its config, users file, and process.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::certs::CertFiles;
use super::process::{self, Account, Daemon};
use super::ServerOptions;

/// The mail domain every test user lives in (Postfix delivers it to Dovecot).
pub const DOMAIN: &str = "example.test";

/// The listeners of one instance, all on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub imap: u16,
    pub imaps: u16,
    pub lmtp: u16,
    /// Dovecot's auth-client protocol, for Postfix's `smtpd_sasl_type = dovecot`.
    pub auth: u16,
}

/// Who owns what: as root, Dovecot's own users run its services and the
/// `mail` user owns the mailboxes; otherwise everything runs as us.
pub struct Identity {
    pub root: bool,
    pub internal_user: String,
    /// Set only without root (the group our unix sockets can be given to).
    pub internal_group: Option<String>,
    pub login_user: String,
    pub mail: Account,
}

impl Identity {
    pub fn detect() -> Identity {
        if process::euid() == 0 {
            for user in ["dovecot", "dovenull"] {
                assert!(
                    process::lookup_user(user).is_some(),
                    "Dovecot's system user `{user}` does not exist; reinstall Dovecot: \
                     apt-get install --reinstall -y dovecot-core dovecot-imapd dovecot-lmtpd"
                );
            }
            let mail = process::lookup_user("mail")
                .or_else(|| process::lookup_user("nobody"))
                .expect("neither a `mail` nor a `nobody` user exists to own test mailboxes");
            Identity {
                root: true,
                internal_user: "dovecot".into(),
                internal_group: None,
                login_user: "dovenull".into(),
                mail,
            }
        } else {
            let me = process::current_account();
            Identity {
                root: false,
                internal_user: me.name.clone(),
                internal_group: Some(
                    process::output_of("id", &["-gn"]).unwrap_or_else(|| me.gid.to_string()),
                ),
                login_user: me.name.clone(),
                mail: me,
            }
        }
    }
}

/// Panics with install instructions unless Dovecot with IMAP and LMTP is here.
pub fn check_installed() -> PathBuf {
    let install = "install it with `apt-get install -y dovecot-imapd dovecot-lmtpd postfix` \
                   (or `scripts/install-test-deps.sh`), or run the tests against GreenMail: \
                   `docker compose -f docker/docker-compose.yml up -d` then \
                   `MAILBRIDGE_TEST_SERVER=greenmail cargo test`";
    let Some(binary) = process::find_program("dovecot") else {
        panic!(
            "Dovecot is not installed (no `dovecot` in PATH or /usr/sbin): the integration \
             tests start a real Dovecot on 127.0.0.1; {install}"
        );
    };
    // Debian splits the protocols into packages; the master starts without them.
    let libexec = Path::new("/usr/lib/dovecot");
    if libexec.is_dir() {
        for (program, package) in [("imap", "dovecot-imapd"), ("lmtp", "dovecot-lmtpd")] {
            assert!(
                libexec.join(program).exists(),
                "Dovecot is installed but {} is missing (package {package}); {install}",
                libexec.join(program).display()
            );
        }
    }
    binary
}

/// Everything the config needs.
pub struct Settings<'a> {
    pub dir: &'a Path,
    pub certs: &'a CertFiles,
    pub options: &'a ServerOptions,
    pub identity: &'a Identity,
    pub ports: Ports,
    pub oauth2_url: Option<&'a str>,
}

/// One passwd-file per user (`users.d/<username>`): Dovecot opens a new
/// user's file at its first lookup, whereas a single shared file is re-read
/// at most once a second, which would miss a user added just after a login.
pub fn users_dir(dir: &Path) -> PathBuf {
    dir.join("users.d")
}

pub fn log_file(dir: &Path) -> PathBuf {
    dir.join("dovecot.log")
}

fn conf_value(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Renders dovecot.conf.
pub fn render(settings: &Settings) -> String {
    let dir = settings.dir.display();
    let identity = settings.identity;
    let ports = settings.ports;
    let options = settings.options;
    let mut conf = String::new();
    let mechanisms = if settings.oauth2_url.is_some() {
        "plain login xoauth2 oauthbearer"
    } else {
        "plain login"
    };
    let _ = write!(
        conf,
        r#"# Written by the mailbridge test harness (tests/support/dovecot.rs).
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = mailbridge-test-{port}
log_path = {dir}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
hostname = mail.{DOMAIN}
postmaster_address = postmaster@{DOMAIN}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
# Cleartext LOGIN on the plain port too (loopback), so `security: none` works.
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
# Failed logins answer within 0.5 s (2.3 still batches failures on a 500 ms
# timer) instead of the default 2 s; see also the anvil section below.
auth_failure_delay = 0
auth_verbose = yes
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:~/Maildir:LAYOUT=fs
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users.d/%u
"#,
        port = ports.imaps,
        cert = settings.certs.cert.display(),
        key = settings.certs.key.display(),
        internal = identity.internal_user,
        login = identity.login_user,
        uid = identity.mail.uid,
        gid = identity.mail.gid,
    );
    if settings.oauth2_url.is_some() {
        // Only password mechanisms check passwords; tokens go to oauth2.
        conf.push_str("  mechanisms = plain login\n");
    }
    conf.push_str("}\n");
    if settings.oauth2_url.is_some() {
        let _ = write!(
            conf,
            "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {dir}/oauth2.conf\n}}\n"
        );
    }
    let _ = write!(
        conf,
        r#"userdb {{
  driver = passwd-file
  args = username_format=%u {dir}/users.d/%u
  default_fields = uid={uid} gid={gid} home={dir}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
"#,
        uid = identity.mail.uid,
        gid = identity.mail.gid,
    );
    let folders = [
        ("Sent", "\\Sent"),
        (options.drafts_folder.as_str(), "\\Drafts"),
        ("Archive", "\\Archive"),
        ("Trash", "\\Trash"),
    ];
    for (name, special_use) in folders {
        let _ = writeln!(conf, "  mailbox {} {{", conf_value(name));
        if options.special_use {
            let _ = writeln!(conf, "    special_use = {special_use}");
        }
        conf.push_str("    auto = subscribe\n  }\n");
    }
    conf.push_str("}\n");
    let _ = write!(
        conf,
        r#"service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
# No auth penalty: the auth process cannot reach anvil's penalty socket
# (mode 0), so Dovecot disables penalties instead of delaying the logins
# that follow a failed one by 2, 4, 8... seconds.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  inet_listener auth-client {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
"#,
        imap = ports.imap,
        imaps = ports.imaps,
        lmtp = ports.lmtp,
        auth = ports.auth,
    );
    if let Some(group) = &identity.internal_group {
        let _ = writeln!(conf, "default_internal_group = {group}");
    }
    if !identity.root {
        // Without root there is no chroot(); everything runs as us.
        for service in [
            "imap-login",
            "pop3-login",
            "submission-login",
            "imap-urlauth-login",
            "anvil",
            "ipc",
            "director",
            "aggregator",
            "old-stats",
        ] {
            let _ = writeln!(conf, "service {service} {{\n  chroot =\n}}");
        }
    }
    conf
}

/// The oauth2 passdb's settings: introspect every token with a POST.
pub fn render_oauth2(url: &str) -> String {
    format!(
        "introspection_mode = post\nintrospection_url = {url}\nforce_introspection = yes\n\
         username_attribute = username\nactive_attribute = active\nactive_value = true\n"
    )
}

/// Writes the config, starts `dovecot -F`, and waits until every listener
/// accepts connections. When Dovecot exits at start-up (a port taken
/// meanwhile, or, seen rarely under heavy load, another start-up failure) it
/// returns why, with the log, and the caller retries with fresh ports.
pub fn start(binary: &Path, settings: &Settings) -> Result<Daemon, String> {
    let dir = settings.dir;
    let conf = dir.join("dovecot.conf");
    std::fs::write(&conf, render(settings)).expect("write dovecot.conf");
    if let Some(url) = settings.oauth2_url {
        std::fs::write(dir.join("oauth2.conf"), render_oauth2(url)).expect("write oauth2.conf");
    }
    let log = log_file(dir);
    let _ = std::fs::remove_file(&log);
    let mut command = Command::new(binary);
    command.arg("-F").arg("-c").arg(&conf);
    let mut daemon = Daemon::spawn("dovecot", command, true);
    let ports = settings.ports;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // Its ports answering is not enough: a port can answer for another
        // test's server that took it first, while this master fails on it
        // ("Address already in use", "Failed to start listeners") and exits.
        // The master logs "starting up" only once all its listeners are set
        // up.
        if text.contains("starting up")
            && [ports.imaps, ports.imap, ports.lmtp, ports.auth]
                .iter()
                .all(|&port| process::port_open(port))
        {
            return Ok(daemon);
        }
        if let Some(status) = daemon.exited() {
            return Err(format!(
                "Dovecot exited at start-up ({status}); config {}\n--- {} ---\n{text}",
                conf.display(),
                log.display()
            ));
        }
        if Instant::now() > deadline {
            daemon.stop();
            panic!(
                "Dovecot did not open its ports within 20 s; config {}\n--- {} ---\n{text}",
                conf.display(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
