//! One Postfix instance: its own config and queue directories, submission
//! (STARTTLS) and smtps (implicit TLS) on 127.0.0.1, SASL through Dovecot,
//! every recipient delivered to Dovecot over LMTP.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::certs::CertFiles;
use super::dovecot::DOMAIN;
use super::process::{self, Daemon};

pub struct Ports {
    pub submission: u16,
    pub smtps: u16,
}

pub struct Settings<'a> {
    pub dir: &'a Path,
    pub certs: &'a CertFiles,
    pub ports: &'a Ports,
    /// Dovecot's LMTP and auth-client ports.
    pub lmtp_port: u16,
    pub auth_port: u16,
    /// Where mail for recipients outside the test domain goes.
    pub outbound: &'a str,
}

pub fn log_file(dir: &Path) -> PathBuf {
    dir.join("postfix.log")
}

/// Panics with install instructions unless Postfix is here and we are root
/// (Postfix's master refuses to run otherwise). Returns daemon_directory.
pub fn check_installed() -> PathBuf {
    let install = "install it with `apt-get install -y dovecot-imapd dovecot-lmtpd postfix` \
                   (or `scripts/install-test-deps.sh`), or run the tests against GreenMail: \
                   `docker compose -f docker/docker-compose.yml up -d` then \
                   `MAILBRIDGE_TEST_SERVER=greenmail cargo test`";
    let Some(postconf) = process::find_program("postconf") else {
        panic!(
            "Postfix is not installed (no `postconf` in PATH or /usr/sbin): the SMTP \
             integration tests start a real Postfix on 127.0.0.1; {install}"
        );
    };
    assert!(
        process::euid() == 0,
        "the SMTP integration tests start a real Postfix, whose master process runs only \
         as root: run them as root (CI does), or use GreenMail: \
         `docker compose -f docker/docker-compose.yml up -d` then \
         `MAILBRIDGE_TEST_SERVER=greenmail cargo test`"
    );
    for (kind, name) in [("user", "postfix"), ("group", "postdrop")] {
        let found = match kind {
            "user" => process::lookup_user(name).is_some(),
            _ => process::lookup_group(name).is_some(),
        };
        assert!(
            found,
            "Postfix's system {kind} `{name}` does not exist; reinstall Postfix: \
             apt-get install --reinstall -y postfix"
        );
    }
    // The compiled-in default, whatever /etc/postfix says (it may not exist).
    let daemon_dir = Command::new(&postconf)
        .args(["-d", "-h", "daemon_directory"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postfix/sbin"));
    assert!(
        daemon_dir.join("master").exists(),
        "Postfix's master is not at {}; {install}",
        daemon_dir.join("master").display()
    );
    daemon_dir
}

fn render_main(settings: &Settings) -> String {
    let dir = settings.dir.display();
    let mut main = String::new();
    let _ = write!(
        main,
        r#"# Written by the mailbridge test harness (tests/support/postfix.rs).
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = smtp.{DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
relayhost =
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:local delivery is disabled in the test server
default_transport = error:the test server relays nowhere
# Every recipient outside {DOMAIN} is rewritten (envelope only) to the
# outbound sink user, so tests can read what was sent to the world.
recipient_canonical_maps = regexp:{dir}/conf/outbound
recipient_canonical_classes = envelope_recipient
virtual_mailbox_domains = {DOMAIN}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
smtpd_reject_unlisted_recipient = no
smtpd_tls_chain_files = {chain}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth}
smtpd_sasl_auth_enable = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
maillog_file = {dir}/postfix.log
maillog_file_prefixes = {dir}
biff = no
smtputf8_enable = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
lmtp_host_lookup = native
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"#,
        lmtp = settings.lmtp_port,
        auth = settings.auth_port,
        chain = settings.certs.chain.display(),
    );
    main
}

fn render_master(ports: &Ports) -> String {
    format!(
        r#"# Written by the mailbridge test harness (tests/support/postfix.rs).
127.0.0.1:{submission} inet n - n - - smtpd
127.0.0.1:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"#,
        submission = ports.submission,
        smtps = ports.smtps,
    )
}

/// The queue layout `postfix check` would create, made directly (faster).
fn make_queue(dir: &Path) {
    let postfix = process::lookup_user("postfix").expect("postfix user");
    let postdrop = process::lookup_group("postdrop").expect("postdrop group");
    let queue = dir.join("queue");
    mkdir(&queue, 0o755, None);
    for sub in [
        "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private",
        "saved", "trace",
    ] {
        mkdir(&queue.join(sub), 0o700, Some((postfix.uid, 0)));
    }
    mkdir(
        &queue.join("maildrop"),
        0o730,
        Some((postfix.uid, postdrop)),
    );
    mkdir(&queue.join("public"), 0o710, Some((postfix.uid, postdrop)));
    mkdir(&queue.join("pid"), 0o755, None);
    mkdir(&dir.join("data"), 0o700, Some((postfix.uid, postfix.gid)));
}

fn mkdir(path: &Path, mode: u32, owner: Option<(u32, u32)>) {
    std::fs::create_dir_all(path).unwrap_or_else(|err| panic!("mkdir {}: {err}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|err| panic!("chmod {}: {err}", path.display()));
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|err| panic!("chown {}: {err}", path.display()));
    }
}

fn backdate(path: &Path) {
    let past = std::time::SystemTime::now() - Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(past))
        .unwrap_or_else(|err| panic!("set mtime of {}: {err}", path.display()));
}

/// Writes config and queue, starts the master, waits for both ports.
/// Returns None when a port was taken meanwhile (the caller retries).
pub fn start(daemon_dir: &Path, settings: &Settings) -> Option<Daemon> {
    let dir = settings.dir;
    let conf = dir.join("conf");
    mkdir(&conf, 0o755, None);
    std::fs::write(conf.join("main.cf"), render_main(settings)).expect("write main.cf");
    std::fs::write(conf.join("master.cf"), render_master(settings.ports)).expect("write master.cf");
    let domain = DOMAIN.replace('.', "\\.");
    std::fs::write(
        conf.join("outbound"),
        format!("!/@{domain}$/ {}\n", settings.outbound),
    )
    .expect("write outbound map");
    // Postfix re-reads a config file every 300 ms until its mtime is in the
    // past second (in case an editor is still writing it): backdate them.
    for file in ["main.cf", "master.cf", "outbound"] {
        backdate(&conf.join(file));
    }
    if !dir.join("queue").exists() {
        make_queue(dir);
    }
    let log = log_file(dir);
    let _ = std::fs::remove_file(&log);
    let mut command = Command::new(daemon_dir.join("master"));
    command.arg("-c").arg(&conf);
    // The master makes its own session (setsid): no process group of ours.
    let mut daemon = Daemon::spawn("postfix master", command, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if process::port_open(settings.ports.submission) && process::port_open(settings.ports.smtps)
        {
            return Some(daemon);
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(status) = daemon.exited() {
            if text.contains("Address already in use") {
                return None;
            }
            panic!(
                "Postfix exited at start-up ({status}); config {}\n--- {} ---\n{text}",
                conf.display(),
                log.display()
            );
        }
        if Instant::now() > deadline {
            daemon.stop();
            panic!(
                "Postfix did not open its ports within 20 s; config {}\n--- {} ---\n{text}",
                conf.display(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
