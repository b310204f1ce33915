//! `bridge doctor`: one line per check, so a user sees at a glance which step
//! of the chain (config → credentials → connect → TLS → login → folders →
//! vault → SMTP) is broken, and why.
//!
//! Checks after a failed one that depends on it are not run: a failed login
//! says nothing about folders, and reporting them would bury the real cause.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use crate::config::{Account, AuthMethod, Config};
use crate::credentials;
use crate::imap::{self, Capabilities, ConnectOptions, Credential, SpecialUse};

/// Capabilities the bridge uses, and what is lost without each.
const CAPABILITIES_THAT_MATTER: &[(&str, &str)] = &[
    (
        "IDLE",
        "`bridge watch` polls instead of reacting to new mail at once",
    ),
    ("UIDPLUS", "re-push cannot remove the old draft copy by UID"),
    ("CONDSTORE", "every sync re-checks each folder"),
    ("QRESYNC", "every sync re-checks each folder"),
    ("MOVE", "none for now"),
    (
        "SPECIAL-USE",
        "Drafts and Sent are found by well-known names only",
    ),
];

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// Works, with a limitation worth knowing.
    Warn,
    Fail,
    /// Not applicable (e.g. no SMTP configured).
    Skip,
}

struct Report<'a> {
    out: &'a mut dyn Write,
    failures: usize,
}

impl Report<'_> {
    fn line(
        &mut self,
        outcome: Outcome,
        check: &str,
        detail: impl std::fmt::Display,
    ) -> Result<()> {
        let label = match outcome {
            Outcome::Ok => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        };
        if outcome == Outcome::Fail {
            self.failures += 1;
        }
        writeln!(self.out, "{label}  {check}: {detail}")?;
        Ok(())
    }
}

/// Runs every check, printing one line each; true when none failed.
pub fn run(config_path: &Path, only_account: Option<&str>, out: &mut dyn Write) -> Result<bool> {
    let mut report = Report { out, failures: 0 };
    let config = match Config::load(config_path) {
        Ok(config) => {
            report.line(Outcome::Ok, "config", config_path.display())?;
            config
        }
        Err(err) => {
            report.line(Outcome::Fail, "config", &err)?;
            return Ok(false);
        }
    };
    let accounts = match config.selected_accounts(only_account) {
        Ok(accounts) => accounts,
        Err(err) => {
            report.line(Outcome::Fail, "account", format!("{err:#}"))?;
            return Ok(false);
        }
    };
    check_vault(&config, &mut report)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for account in accounts {
        runtime.block_on(check_account(account, &mut report))?;
    }
    Ok(report.failures == 0)
}

/// The vault and the note folders exist (or can be made) and take a file.
fn check_vault(config: &Config, report: &mut Report) -> Result<()> {
    if !config.vault.is_dir() {
        return report.line(
            Outcome::Fail,
            "vault",
            format!(
                "{} does not exist or is not a folder; create it or fix `vault` in {}",
                config.vault.display(),
                config.path.display()
            ),
        );
    }
    match probe_writable(&config.vault) {
        Ok(()) => report.line(
            Outcome::Ok,
            "vault",
            format!("{} is writable", config.vault.display()),
        )?,
        Err(err) => report.line(
            Outcome::Fail,
            "vault",
            format!("{} is not writable: {err}", config.vault.display()),
        )?,
    }
    match std::fs::create_dir_all(&config.state_dir)
        .and_then(|()| probe_writable(&config.state_dir))
    {
        Ok(()) => report.line(
            Outcome::Ok,
            "state",
            format!("{} is writable", config.state_dir.display()),
        ),
        Err(err) => report.line(
            Outcome::Fail,
            "state",
            format!("{} is not writable: {err}", config.state_dir.display()),
        ),
    }
}

/// Creates and removes a probe file: the only honest test of writability.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".mailbridge-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(&probe)
}

async fn check_account(account: &Account, report: &mut Report<'_>) -> Result<()> {
    let who = format!("[{}]", account.id);
    let credential = match resolve_credential(account) {
        Ok((credential, source)) => {
            report.line(Outcome::Ok, &format!("{who} credentials"), source)?;
            credential
        }
        Err(err) => {
            report.line(
                Outcome::Fail,
                &format!("{who} credentials"),
                format!("{err:#}"),
            )?;
            return Ok(());
        }
    };
    check_imap(account, &credential, &who, report).await?;
    check_smtp(account, &credential, &who, report).await
}

/// The secret login uses, and a description of where it came from.
fn resolve_credential(account: &Account) -> Result<(Credential, String)> {
    match account.auth {
        AuthMethod::Login => {
            let password = credentials::resolve(&account.id, "password", &account.password)?;
            Ok((
                Credential::Password(password),
                describe_source(&account.password, "password"),
            ))
        }
        AuthMethod::Xoauth2 => {
            let source = account
                .token
                .as_ref()
                .expect("config requires a token for xoauth2");
            let token = credentials::resolve(&account.id, "token", source)?;
            Ok((
                Credential::OAuth2Token(token),
                describe_source(source, "OAuth2 token"),
            ))
        }
    }
}

fn describe_source(source: &crate::config::SecretSource, what: &str) -> String {
    match source {
        crate::config::SecretSource::Keyring => format!("{what} found in the OS keychain"),
        crate::config::SecretSource::Command(command) => format!("{what} from command `{command}`"),
        crate::config::SecretSource::Env(variable) => format!("{what} from ${variable}"),
    }
}

async fn check_imap(
    account: &Account,
    credential: &Credential,
    who: &str,
    report: &mut Report<'_>,
) -> Result<()> {
    let endpoint = &account.imap;
    let place = format!(
        "{}:{} ({})",
        endpoint.host, endpoint.port, endpoint.security
    );
    let options = ConnectOptions::default();
    let pre_auth = match imap::connect(endpoint, account.ca_file.as_deref(), &options).await {
        Ok(pre_auth) => {
            report.line(Outcome::Ok, &format!("{who} connect"), &place)?;
            pre_auth
        }
        Err(err) => {
            let check = match err {
                imap::ImapError::Certificate { .. } | imap::ImapError::Tls { .. } => "TLS",
                _ => "connect",
            };
            return report.line(Outcome::Fail, &format!("{who} {check}"), &err);
        }
    };
    match pre_auth.tls_summary() {
        Some(summary) => report.line(
            Outcome::Ok,
            &format!("{who} TLS"),
            format!("{summary}, certificate verified for {}", endpoint.host),
        )?,
        None => report.line(
            Outcome::Warn,
            &format!("{who} TLS"),
            "none (`security: none`, loopback only): the password crosses the connection in clear text",
        )?,
    }
    let mut session = match pre_auth.login(&account.username, credential).await {
        Ok(session) => {
            report.line(
                Outcome::Ok,
                &format!("{who} login"),
                format!("as {}", account.username),
            )?;
            session
        }
        Err(err) => return report.line(Outcome::Fail, &format!("{who} login"), &err),
    };
    report_capabilities(session.capabilities(), who, report)?;
    match session.list_folders().await {
        Ok(folders) => {
            for (role, choice, check) in [
                (SpecialUse::Drafts, &account.folders.drafts, "Drafts folder"),
                (SpecialUse::Sent, &account.folders.sent, "Sent folder"),
            ] {
                match imap::find_special(&folders, role, choice) {
                    Some(found) => report.line(Outcome::Ok, &format!("{who} {check}"), &found)?,
                    None => report.line(
                        Outcome::Fail,
                        &format!("{who} {check}"),
                        format!(
                            "not found by SPECIAL-USE nor by a well-known name; set `folders.{}` to its name",
                            if role == SpecialUse::Drafts { "drafts" } else { "sent" }
                        ),
                    )?,
                }
            }
            let resolved = imap::resolve_sync_folders(&folders, &account.folders);
            let missing: Vec<&str> = resolved
                .iter()
                .filter(|entry| entry.found.is_none())
                .map(|entry| entry.entry.as_str())
                .collect();
            let found: Vec<String> = resolved
                .iter()
                .filter_map(|entry| entry.found.as_ref().map(|m| m.to_string()))
                .collect();
            if missing.is_empty() {
                report.line(
                    Outcome::Ok,
                    &format!("{who} sync folders"),
                    found.join(", "),
                )?;
            } else {
                report.line(
                    Outcome::Fail,
                    &format!("{who} sync folders"),
                    format!("not found: {} (fix `folders.sync`)", missing.join(", ")),
                )?;
            }
        }
        Err(err) => report.line(Outcome::Fail, &format!("{who} folders"), &err)?,
    }
    if let Err(err) = session.logout().await {
        tracing::debug!("logout: {err}");
    }
    Ok(())
}

fn report_capabilities(capabilities: &Capabilities, who: &str, report: &mut Report) -> Result<()> {
    let (present, missing): (Vec<_>, Vec<_>) = CAPABILITIES_THAT_MATTER
        .iter()
        .partition(|(name, _)| capabilities.has(name));
    let present: Vec<&str> = present.iter().map(|(name, _)| *name).collect();
    if missing.is_empty() {
        report.line(
            Outcome::Ok,
            &format!("{who} capabilities"),
            present.join(" "),
        )
    } else {
        let missing: Vec<String> = missing
            .iter()
            .map(|(name, effect)| format!("{name} ({effect})"))
            .collect();
        report.line(
            Outcome::Warn,
            &format!("{who} capabilities"),
            format!("{}; missing: {}", present.join(" "), missing.join("; ")),
        )
    }
}

async fn check_smtp(
    account: &Account,
    credential: &Credential,
    who: &str,
    report: &mut Report<'_>,
) -> Result<()> {
    if account.smtp.is_none() {
        return report.line(
            Outcome::Skip,
            &format!("{who} SMTP"),
            "no `smtp:` settings (needed only by `bridge send`)",
        );
    }
    let Credential::Password(password) = credential else {
        return report.line(
            Outcome::Skip,
            &format!("{who} SMTP"),
            "XOAUTH2 for SMTP is not supported yet; `bridge send` needs `auth: login`",
        );
    };
    match crate::send::check_smtp(account, password).await {
        Ok(summary) => report.line(Outcome::Ok, &format!("{who} SMTP"), summary),
        Err(err) => report.line(Outcome::Fail, &format!("{who} SMTP"), format!("{err:#}")),
    }
}
