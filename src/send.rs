//! SMTP: `bridge send`, the transport it uses, and the reachability check
//! of `bridge doctor`.
//!
//! The transport is built inside the tokio runtime (lettre's async transport
//! spawns on it), with certificate verification always on: the OS roots plus
//! the account's `ca_file`.
//!
//! Sending is ordered so that a failure never leaves a wrong record: the
//! IMAP side is opened and the pushed copies checked first (a mailbox that
//! cannot be reached stops the send before anything goes out); if SMTP
//! refuses, nothing is marked or removed. Once the server has accepted the
//! message, `status: sent` is written at once — before filing the Sent copy
//! and removing the draft — because a note still saying `pushed` after a
//! crash would invite sending the same mail twice.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::compose::Variant;
use crate::config::{Account, Config, Endpoint, Security};
use crate::credentials::Secret;
use crate::draft::DraftStatus;
use crate::imap::{self, ConnectOptions, Credential, ImapSession, SpecialUse};
use crate::push::{self, ImapBox, Prepared, Purpose, Removal};
use crate::state::{AccountLock, CopyState, PushedCopy, StateStore};

/// How long one SMTP network step may take before we give up.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The authenticated SMTP transport for `account`, per its `smtp:` settings.
pub fn smtp_transport(
    account: &Account,
    password: &Secret,
) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
    build_transport(
        account,
        Credentials::new(account.username.clone(), password.expose().to_string()),
        vec![Mechanism::Plain, Mechanism::Login],
    )
}

/// The transport for the account's IMAP credential: a password by PLAIN or
/// LOGIN, an OAuth2 access token by XOAUTH2 (the same token IMAP uses).
pub fn smtp_transport_for(
    account: &Account,
    credential: &Credential,
) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
    match credential {
        Credential::Password(password) => smtp_transport(account, password),
        Credential::OAuth2Token(token) => build_transport(
            account,
            Credentials::new(account.username.clone(), token.expose().to_string()),
            vec![Mechanism::Xoauth2],
        ),
    }
}

fn build_transport(
    account: &Account,
    credentials: Credentials,
    mechanisms: Vec<Mechanism>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
    let Some(endpoint) = &account.smtp else {
        bail!(
            "account `{}` has no `smtp:` settings; add `smtp: {{ host: ..., port: 465, security: tls }}`",
            account.id
        );
    };
    let tls = tls_parameters(endpoint, account.ca_file.as_deref())?;
    let builder = match endpoint.security {
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&endpoint.host)
            .tls(Tls::Wrapper(tls)),
        Security::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&endpoint.host)
                .tls(Tls::Required(tls))
        }
        // Config accepts `none` only for loopback hosts.
        Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&endpoint.host),
    };
    Ok(builder
        .port(endpoint.port)
        .timeout(Some(SMTP_TIMEOUT))
        .credentials(credentials)
        .authentication(mechanisms)
        .build())
}

fn tls_parameters(endpoint: &Endpoint, ca_file: Option<&Path>) -> Result<TlsParameters> {
    let mut builder = TlsParameters::builder(endpoint.host.clone());
    if let Some(ca_file) = ca_file {
        let pem = std::fs::read(ca_file)
            .with_context(|| format!("cannot read ca_file {}", ca_file.display()))?;
        let mut count = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert =
                cert.with_context(|| format!("ca_file {} is not valid PEM", ca_file.display()))?;
            builder = builder.add_root_certificate(Certificate::from_der(cert.to_vec())?);
            count += 1;
        }
        if count == 0 {
            bail!("ca_file {} holds no PEM certificate", ca_file.display());
        }
    }
    builder.build_rustls().context("cannot set up TLS for SMTP")
}

/// Connects, upgrades to TLS, and authenticates; returns a one-line summary.
pub async fn check_smtp(account: &Account, password: &Secret) -> Result<String> {
    let transport = smtp_transport(account, password)?;
    let endpoint = account.smtp.as_ref().expect("checked by smtp_transport");
    match transport.test_connection().await {
        Ok(true) => Ok(format!(
            "{}:{} ({}) accepted the login of {}",
            endpoint.host, endpoint.port, endpoint.security, account.username
        )),
        Ok(false) => bail!("{}:{} closed the connection", endpoint.host, endpoint.port),
        Err(err) => Err(describe_smtp_error(endpoint, &err)),
    }
}

/// Turns a lettre error into a sentence that says which step failed.
pub fn describe_smtp_error(
    endpoint: &Endpoint,
    err: &lettre::transport::smtp::Error,
) -> anyhow::Error {
    let place = format!("SMTP {}:{}", endpoint.host, endpoint.port);
    // lettre's Display is terse; its source chain holds the real cause.
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    let code = err.status().map(|code| code.to_string());
    if matches!(code.as_deref(), Some("535") | Some("534") | Some("530")) {
        anyhow::anyhow!("{place}: authentication failed ({detail})")
    } else if err.is_tls() || detail.contains("certificate") {
        anyhow::anyhow!(
            "{place}: TLS failed, a certificate problem ({detail}); if the server uses a private CA, set `ca_file` in the account config"
        )
    } else if err.is_timeout() {
        anyhow::anyhow!("{place}: timed out ({detail})")
    } else {
        anyhow::anyhow!("{place}: {detail}")
    }
}

// ---------------------------------------------------------------------------
// `bridge send`
// ---------------------------------------------------------------------------

/// `bridge send DRAFT`: sends the draft note over SMTP, files a copy in
/// Sent, removes the bridge's pushed copy from Drafts (only if unchanged, as
/// for a re-push) and sets `status: sent`. Without `yes` it asks on a
/// terminal and refuses elsewhere: sending cannot be taken back.
pub fn run(config: &Config, path: &Path, yes: bool, out: &mut dyn Write) -> Result<()> {
    let store = StateStore::open(&config.state_dir)?;
    let prepared = push::prepare(config, Some(&store), path, Purpose::Send, None)?;
    for warning in &prepared.warnings {
        tracing::warn!("{warning}");
    }
    let account = config.account(&prepared.account_id)?;
    if account.smtp.is_none() {
        bail!(
            "account `{}` has no `smtp:` settings, so it cannot send; add `smtp: {{ host: ..., port: 465, security: tls }}`",
            account.id
        );
    }
    let credential = Credential::for_account(account)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "standard input is not a terminal, so there is no one to confirm sending {}: pass --yes to send it without asking",
                path.display()
            );
        }
        if !confirm(&prepared)? {
            bail!("not sent: {} is unchanged", path.display());
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(send_account(
        config,
        account,
        &credential,
        &store,
        prepared,
        out,
    ))
}

/// Shows what is about to go out and asks; only `y` or `yes` sends.
fn confirm(prepared: &Prepared) -> Result<bool> {
    let reply = &prepared.reply;
    let list = |mailboxes: &[lettre::message::Mailbox]| {
        mailboxes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut stderr = std::io::stderr().lock();
    writeln!(stderr, "From:    {}", reply.from)?;
    writeln!(stderr, "To:      {}", list(&reply.to))?;
    if !reply.cc.is_empty() {
        writeln!(stderr, "Cc:      {}", list(&reply.cc))?;
    }
    if !reply.bcc.is_empty() {
        writeln!(stderr, "Bcc:     {}", list(&reply.bcc))?;
    }
    writeln!(stderr, "Subject: {}\n", reply.final_subject())?;
    let body: Vec<&str> = reply.body_markdown.lines().collect();
    for line in body.iter().take(20) {
        writeln!(stderr, "  {line}")?;
    }
    if body.len() > 20 {
        writeln!(stderr, "  … ({} more lines)", body.len() - 20)?;
    }
    write!(stderr, "\nSend this message now? [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

async fn send_account(
    config: &Config,
    account: &Account,
    credential: &Credential,
    store: &StateStore,
    prepared: Prepared,
    out: &mut dyn Write,
) -> Result<()> {
    let not_sent = || format!("{}: not sent", prepared.path().display());
    let _lock = AccountLock::acquire(&config.state_dir, &account.id).with_context(not_sent)?;
    let mut session: ImapSession =
        imap::open_session(account, credential, &ConnectOptions::default())
            .await
            .with_context(not_sent)?;
    let result = send_with_session(account, credential, &mut session, store, prepared, out).await;
    if let Err(err) = session.logout().await {
        tracing::debug!("logout: {err}");
    }
    result
}

async fn send_with_session(
    account: &Account,
    credential: &Credential,
    session: &mut ImapSession,
    store: &StateStore,
    prepared: Prepared,
    out: &mut dyn Write,
) -> Result<()> {
    let path = prepared.path().to_path_buf();
    let not_sent = || format!("{}: not sent", path.display());
    let folders = session.list_folders().await.with_context(not_sent)?;
    let sent_folder = imap::find_special(&folders, SpecialUse::Sent, &account.folders.sent)
        .map(|found| found.name().to_string());
    let mut mailbox = ImapBox::new(session);
    if let Ok(drafts) = push::drafts_folder(account, &folders) {
        mailbox.select(&drafts).await.with_context(not_sent)?;
    }
    let review = push::review_copies(account, &mut mailbox, store, &prepared)
        .await
        .with_context(not_sent)?;

    let message = prepared.reply.message(Variant::Wire)?;
    let recipients: Vec<String> = message
        .envelope()
        .to()
        .iter()
        .map(ToString::to_string)
        .collect();
    let transport = smtp_transport_for(account, credential)?;
    let endpoint = account.smtp.as_ref().expect("checked before");
    if let Err(err) = transport.send(message).await {
        return Err(describe_smtp_error(endpoint, &err)).with_context(|| {
            format!(
                "{}: not sent; nothing was changed (the note and the mailbox are as they were)",
                path.display()
            )
        });
    }
    writeln!(out, "{}: sent to {}", path.display(), recipients.join(", "))?;

    // From here on the mail is out: every later step is attempted, and
    // failures are reported together, saying that it was sent.
    let mut problems = Vec::new();
    let now = push::unix_now();
    let message_id = prepared.reply.message_id.clone();
    if let Err(err) = push::write_status(&path, &message_id, &account.id, now, DraftStatus::Sent) {
        problems.push(format!("cannot set `status: sent` in the note: {err:#}"));
    }
    match &sent_folder {
        // The server files what it sends (Gmail): a copy of ours would be a duplicate.
        _ if account.smtp_saves_sent => writeln!(
            out,
            "{}: not filing a copy in Sent: the server does that itself (`smtp.saves_sent`)",
            path.display()
        )?,
        Some(folder) => {
            let bytes = prepared.reply.bytes(Variant::SentCopy)?;
            let record = PushedCopy {
                account: account.id.clone(),
                message_id: message_id.clone(),
                draft_path: prepared.draft_key.clone(),
                folder: folder.clone(),
                uidvalidity: None,
                uid: None,
                size: bytes.len() as u64,
                sha256: push::sha256_hex(&bytes),
                date_unix: push::unix_of(prepared.reply.date),
                pushed_unix: now,
                in_reply_to: prepared.reply.in_reply_to.clone(),
                state: CopyState::Sent,
            };
            store.record_pushed_copy(&record)?;
            match mailbox.append(folder, &bytes, "(\\Seen)", &message_id).await {
                Ok((uidvalidity, uid)) => {
                    store.set_copy_location(&account.id, &message_id, uidvalidity, uid)?;
                    store.set_copy_state(&account.id, &message_id, CopyState::Sent)?;
                    writeln!(out, "{}: filed a copy in {folder} (UID {uid})", path.display())?;
                }
                Err(err) => problems.push(format!("cannot file a copy in {folder}: {err:#}")),
            }
        }
        None => problems.push(
            "no Sent folder found (no \\Sent special use, no well-known name), so no copy was filed; set `folders.sent: NAME`".into(),
        ),
    }
    for (copy, uid) in &review.unchanged {
        match mailbox.remove(&copy.folder, *uid).await {
            Ok(removal) => {
                store.set_copy_state(&account.id, &copy.message_id, CopyState::Removed)?;
                match removal {
                    Removal::Expunged => writeln!(
                        out,
                        "{}: removed the pushed draft from {} (UID {uid})",
                        path.display(),
                        copy.folder
                    )?,
                    Removal::FlaggedOnly => writeln!(
                        out,
                        "{}: flagged the pushed draft in {} (UID {uid}) \\Deleted; the server lacks UIDPLUS, so your mail client's expunge removes it",
                        path.display(),
                        copy.folder
                    )?,
                }
            }
            Err(err) => problems.push(format!(
                "cannot remove the pushed draft from {} (UID {uid}): {err:#}",
                copy.folder
            )),
        }
    }
    for (copy, why) in &review.changed {
        if !copy.folder.is_empty() {
            store.set_copy_state(&account.id, &copy.message_id, CopyState::Abandoned)?;
        }
        tracing::warn!(
            "{}: the pushed copy {} {why}; left as it is",
            path.display(),
            copy.message_id
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "{}: the message was sent, but: {}",
            path.display(),
            problems.join("; ")
        )
    }
}
