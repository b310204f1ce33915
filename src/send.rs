//! SMTP: the transport `bridge send` uses, and the reachability check of
//! `bridge doctor`.
//!
//! The transport is built inside the tokio runtime (lettre's async transport
//! spawns on it), with certificate verification always on: the OS roots plus
//! the account's `ca_file`.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::config::{Account, Endpoint, Security};
use crate::credentials::Secret;

/// How long one SMTP network step may take before we give up.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The authenticated SMTP transport for `account`, per its `smtp:` settings.
pub fn smtp_transport(
    account: &Account,
    password: &Secret,
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
    let credentials = Credentials::new(account.username.clone(), password.expose().to_string());
    Ok(builder
        .port(endpoint.port)
        .timeout(Some(SMTP_TIMEOUT))
        .credentials(credentials)
        .authentication(vec![Mechanism::Plain, Mechanism::Login])
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
