//! Typed IMAP errors whose message says which step failed and what to do.
//!
//! Callers decide by kind (retry with backoff, or stop and tell the user), so
//! the variants follow what the user or the retry logic can act on, not the
//! layer the error came from. No variant ever holds a secret: auth failures
//! carry the server's text, never the command we sent.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::tls::TlsConfigError;

/// The step of a connection that was under way when something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Resolve,
    Connect,
    TlsHandshake,
    Greeting,
    StartTls,
    Capability,
    Login,
    List,
    Logout,
    /// Any other command, named by its IMAP keyword (later issues: FETCH, APPEND...).
    Command(&'static str),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Resolve => f.write_str("DNS lookup"),
            Step::Connect => f.write_str("TCP connect"),
            Step::TlsHandshake => f.write_str("TLS handshake"),
            Step::Greeting => f.write_str("server greeting"),
            Step::StartTls => f.write_str("STARTTLS"),
            Step::Capability => f.write_str("CAPABILITY"),
            Step::Login => f.write_str("login"),
            Step::List => f.write_str("LIST"),
            Step::Logout => f.write_str("LOGOUT"),
            Step::Command(name) => f.write_str(name),
        }
    }
}

/// Everything that can go wrong talking IMAP. `server` is `host:port`.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("IMAP {host}: DNS lookup failed: {source}")]
    Dns { host: String, source: io::Error },

    #[error("IMAP {server}: connection refused; is the server running and is the port right?")]
    ConnectionRefused { server: String },

    #[error("IMAP {server}: cannot connect: {source}")]
    Connect { server: String, source: io::Error },

    #[error("IMAP {server}: timed out after {}s with no answer (step: {step})", after.as_secs())]
    Timeout {
        server: String,
        step: Step,
        after: Duration,
    },

    /// The server's certificate did not verify. `reason` is rustls's
    /// (UnknownIssuer, NotValidForName, Expired...).
    #[error(
        "IMAP {server}: TLS certificate problem: {reason}; if the server uses a private or \
         self-signed CA, set `ca_file: /path/to/ca.pem` in the account config"
    )]
    Certificate { server: String, reason: String },

    #[error("IMAP {server}: TLS failed during {step}: {reason}")]
    Tls {
        server: String,
        step: Step,
        reason: String,
    },

    #[error(transparent)]
    TlsConfig(#[from] TlsConfigError),

    /// `security: none` to a host that is not loopback. The config refuses
    /// it already; this guards callers that build an `Endpoint` themselves.
    #[error(
        "IMAP {server}: refusing to connect without TLS to a host that is not loopback; \
         use `security: tls` or `starttls`"
    )]
    PlaintextRefused { server: String },

    #[error(
        "IMAP {server}: the server does not offer STARTTLS; use `security: tls` (usually port 993) instead"
    )]
    StartTlsUnavailable { server: String },

    #[error(
        "IMAP {server}: the server refuses LOGIN on this connection (LOGINDISABLED) and offers no \
         AUTH=PLAIN; use `security: tls` or `starttls`"
    )]
    LoginDisabled { server: String },

    /// The server said NO (or BAD) to LOGIN or AUTHENTICATE. `message` is
    /// the server's own text; `code` its response code such as
    /// `AUTHENTICATIONFAILED` or `UNAVAILABLE` (RFC 5530), when it sent one.
    #[error("IMAP {server}: authentication as {username} failed: {message}")]
    Auth {
        server: String,
        username: String,
        code: Option<String>,
        message: String,
    },

    #[error(
        "IMAP {server}: the server closed the connection during {step}{}",
        detail_suffix(detail)
    )]
    ConnectionLost {
        server: String,
        step: Step,
        detail: Option<String>,
    },

    #[error("IMAP {server}: network error during {step}: {source}")]
    Io {
        server: String,
        step: Step,
        source: io::Error,
    },

    /// The server answered NO or BAD to a command other than login.
    #[error("IMAP {server}: {step} failed: {message}")]
    Rejected {
        server: String,
        step: Step,
        message: String,
    },

    #[error("IMAP {server}: protocol error during {step}: {message}")]
    Protocol {
        server: String,
        step: Step,
        message: String,
    },

    /// A response imap-proto cannot parse (real servers send some: an
    /// unescaped quote in a BODYSTRUCTURE string, NIL where a string must
    /// be). async-imap reads nothing more after it, so the connection is
    /// done for; a retry gets the same response, so it is not retryable.
    /// `detail` is the start of the response, never all of it.
    #[error("IMAP {server}: the server's answer to {step} could not be parsed: {detail}")]
    Unparsable {
        server: String,
        step: Step,
        detail: String,
    },
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

impl ImapError {
    /// True for failures that may go away by themselves (network, timeouts,
    /// a server saying it is temporarily unavailable), so a later attempt
    /// with backoff makes sense. Certificate, configuration and credential
    /// problems need the user and are never retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            ImapError::Dns { .. }
            | ImapError::ConnectionRefused { .. }
            | ImapError::Connect { .. }
            | ImapError::Timeout { .. }
            | ImapError::ConnectionLost { .. }
            | ImapError::Io { .. } => true,
            // RFC 5530: UNAVAILABLE is "temporary failure", the
            // credentials may well be right.
            ImapError::Auth { code, .. } => code
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("UNAVAILABLE")),
            ImapError::Certificate { .. }
            | ImapError::Tls { .. }
            | ImapError::TlsConfig(_)
            | ImapError::PlaintextRefused { .. }
            | ImapError::StartTlsUnavailable { .. }
            | ImapError::LoginDisabled { .. }
            | ImapError::Rejected { .. }
            | ImapError::Protocol { .. }
            | ImapError::Unparsable { .. } => false,
        }
    }

    /// True when the server sent a response that cannot be parsed and it
    /// is an untagged FETCH (`* 12 FETCH (...`): the session cannot be used
    /// any more, but the response belongs to one of the messages fetched,
    /// and a fresh session can fetch around it (see `sync::narrow`).
    pub fn is_unparsable_fetch(&self) -> bool {
        let ImapError::Unparsable { detail, .. } = self else {
            return false;
        };
        let mut words = detail.trim_start_matches('`').split_ascii_whitespace();
        words.next() == Some("*")
            && words
                .next()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("FETCH"))
    }

    /// True when the server rejected the credentials (as opposed to not
    /// being reachable), so the user has to fix a password or token.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            ImapError::Auth { .. } | ImapError::LoginDisabled { .. }
        ) && !self.is_retryable()
    }
}

/// Where an error happened, to turn low-level errors into [`ImapError`]s.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub server: String,
    pub timeout: Duration,
}

impl Context {
    /// The connection ended during `step` (`detail`: the server's BYE text).
    pub fn lost(&self, step: Step, detail: Option<String>) -> ImapError {
        ImapError::ConnectionLost {
            server: self.server.clone(),
            step,
            detail,
        }
    }

    /// Classifies an I/O error seen during `step`.
    pub fn io(&self, step: Step, err: io::Error) -> ImapError {
        let server = self.server.clone();
        if err.kind() == io::ErrorKind::TimedOut {
            return ImapError::Timeout {
                server,
                step,
                after: self.timeout,
            };
        }
        // tokio-rustls reports TLS failures as io::Error wrapping rustls::Error.
        if let Some(tls) = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return self.tls(step, tls);
        }
        match err.kind() {
            io::ErrorKind::ConnectionRefused if step == Step::Connect => {
                ImapError::ConnectionRefused { server }
            }
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected => ImapError::ConnectionLost {
                server,
                step,
                detail: Some(err.to_string()),
            },
            // async-imap reports unparsable server data as io "other".
            io::ErrorKind::Other | io::ErrorKind::InvalidData => {
                let message = err.to_string();
                match unparsed_response(&message) {
                    Some(detail) => ImapError::Unparsable {
                        server,
                        step,
                        detail,
                    },
                    None => ImapError::Protocol {
                        server,
                        step,
                        message,
                    },
                }
            }
            _ if step == Step::Connect => ImapError::Connect {
                server,
                source: err,
            },
            _ => ImapError::Io {
                server,
                step,
                source: err,
            },
        }
    }

    pub fn tls(&self, step: Step, err: &rustls::Error) -> ImapError {
        match err {
            rustls::Error::InvalidCertificate(cert) => ImapError::Certificate {
                server: self.server.clone(),
                reason: describe_certificate_error(cert),
            },
            other => ImapError::Tls {
                server: self.server.clone(),
                step,
                reason: other.to_string(),
            },
        }
    }

    /// Classifies an async-imap error seen during `step` (not login: see
    /// [`Context::auth`]).
    pub fn imap(&self, step: Step, err: async_imap::error::Error) -> ImapError {
        use async_imap::error::Error;
        let server = self.server.clone();
        match err {
            Error::Io(io) => self.io(step, io),
            Error::ConnectionLost => ImapError::ConnectionLost {
                server,
                step,
                detail: None,
            },
            Error::No(text) | Error::Bad(text) => ImapError::Rejected {
                server,
                step,
                message: ServerText::from_async_imap(&text).to_string(),
            },
            other => ImapError::Protocol {
                server,
                step,
                message: other.to_string(),
            },
        }
    }

    /// Classifies an error of LOGIN or AUTHENTICATE: a NO or BAD is the
    /// server refusing the credentials; anything else is as for any step.
    pub fn auth(
        &self,
        username: &str,
        err: async_imap::error::Error,
        extra: Option<&str>,
    ) -> ImapError {
        use async_imap::error::Error;
        match err {
            Error::No(text) | Error::Bad(text) => {
                let text = ServerText::from_async_imap(&text);
                let mut message = if text.text.is_empty() {
                    "the server said NO".to_string()
                } else {
                    text.text.clone()
                };
                if let Some(extra) = extra {
                    message.push_str(&format!(" ({extra})"));
                }
                ImapError::Auth {
                    server: self.server.clone(),
                    username: username.to_string(),
                    code: text.code,
                    message,
                }
            }
            // async-imap refuses to quote a CR or LF; the message must not
            // say which of username or password held it.
            Error::Validate(_) => ImapError::Auth {
                server: self.server.clone(),
                username: username.to_string(),
                code: None,
                message: "the username or password contains a line break, which IMAP cannot send"
                    .into(),
            },
            other => self.imap(Step::Login, other),
        }
    }
}

/// The start of the response an async-imap parse error is about, or `None`
/// for any other error. Its message is `{nom error:?} during parsing of
/// {buffer:?}`: the nom error holds the rest of the input as a byte list and
/// the buffer everything unparsed, megabytes of mail at times, so only the
/// response's first line, cut short, goes into an error or a log.
fn unparsed_response(message: &str) -> Option<String> {
    const SHOWN: usize = 120;
    let (_, buffer) = message.split_once(" during parsing of \"")?;
    let buffer = buffer.strip_suffix('"').unwrap_or(buffer);
    let line = unescape_debug(buffer.split("\\r\\n").next().unwrap_or_default());
    let mut shown: String = line.chars().take(SHOWN).collect();
    if shown.len() < line.len() {
        shown.push_str("...");
    }
    Some(format!("`{shown}`"))
}

/// A short name for the certificate failure followed by rustls's own words,
/// so the user can search for either.
pub(crate) fn describe_certificate_error(err: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    let what = match err {
        E::UnknownIssuer => "issued by a CA that is not trusted here",
        E::NotValidForName | E::NotValidForNameContext { .. } => "issued for a different host name",
        E::Expired | E::ExpiredContext { .. } => "expired",
        E::NotValidYet | E::NotValidYetContext { .. } => "not valid yet (check the clock)",
        E::Revoked => "revoked",
        E::BadSignature => "has a bad signature",
        E::BadEncoding => "malformed",
        _ => "rejected",
    };
    format!("the server's certificate is {what} ({err})")
}

/// A NO/BAD reply as async-imap reports it, split back into its parts.
///
/// async-imap formats `Error::No` as `code: {code:?}, info: {text:?}`, and
/// imap-proto leaves response codes it does not know (RFC 5530's
/// `AUTHENTICATIONFAILED`, `UNAVAILABLE`...) as `[CODE]` in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerText {
    pub code: Option<String>,
    pub text: String,
}

impl ServerText {
    pub fn from_async_imap(formatted: &str) -> ServerText {
        let (code_part, info_part) = match formatted.split_once(", info: ") {
            Some((code, info)) => (code.strip_prefix("code: ").unwrap_or(code), info),
            None => return ServerText::from_text(formatted),
        };
        let info = info_part
            .strip_prefix("Some(\"")
            .and_then(|s| s.strip_suffix("\")"))
            .map(unescape_debug)
            .unwrap_or_default();
        let mut parsed = ServerText::from_text(&info);
        if parsed.code.is_none() {
            parsed.code = code_part
                .strip_prefix("Some(")
                .and_then(|s| s.strip_suffix(')'))
                .map(|c| c.split(['(', ' ']).next().unwrap_or(c).to_ascii_uppercase());
        }
        parsed
    }

    /// Splits a leading `[CODE ...]` off a response text.
    pub fn from_text(text: &str) -> ServerText {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix('[') {
            if let Some((code, after)) = rest.split_once(']') {
                let name = code.split(' ').next().unwrap_or(code).to_ascii_uppercase();
                return ServerText {
                    code: Some(name),
                    text: after.trim().to_string(),
                };
            }
        }
        ServerText {
            code: None,
            text: text.to_string(),
        }
    }
}

impl fmt::Display for ServerText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, self.text.is_empty()) {
            (Some(code), true) => write!(f, "[{code}]"),
            (Some(code), false) => write!(f, "[{code}] {}", self.text),
            (None, _) => f.write_str(&self.text),
        }
    }
}

/// Undoes `{:?}` escaping of a str (enough for server text: quotes,
/// backslashes, and the odd control character).
fn unescape_debug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some('u') => {
                let code: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                if let Some(ch) = u32::from_str_radix(&code, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context {
            server: "imap.example.com:993".into(),
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn server_text_from_async_imap_no() {
        let text = ServerText::from_async_imap(
            r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#,
        );
        assert_eq!(text.code.as_deref(), Some("AUTHENTICATIONFAILED"));
        assert_eq!(text.text, "Authentication failed.");
        let text = ServerText::from_async_imap(r#"code: Some(Alert), info: Some("say \"hi\"")"#);
        assert_eq!(text.code.as_deref(), Some("ALERT"));
        assert_eq!(text.text, "say \"hi\"");
        let text = ServerText::from_async_imap("code: None, info: None");
        assert_eq!(text.code, None);
        assert_eq!(text.text, "");
    }

    #[test]
    fn auth_error_carries_server_text_and_code() {
        let err = context().auth(
            "jason@example.com",
            async_imap::error::Error::No(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#.into(),
            ),
            None,
        );
        let message = err.to_string();
        assert_eq!(
            message,
            "IMAP imap.example.com:993: authentication as jason@example.com failed: Authentication failed."
        );
        assert!(!err.is_retryable());
        assert!(err.is_auth_failure());
    }

    #[test]
    fn unavailable_is_retryable() {
        let err = context().auth(
            "u",
            async_imap::error::Error::No(
                r#"code: None, info: Some("[UNAVAILABLE] Try again later")"#.into(),
            ),
            None,
        );
        assert!(err.is_retryable());
        assert!(!err.is_auth_failure());
    }

    #[test]
    fn validate_error_does_not_say_which_secret() {
        let err = context().auth(
            "u",
            async_imap::error::Error::Validate(async_imap::error::ValidateError('\n')),
            None,
        );
        assert!(err.to_string().contains("line break"), "{err}");
    }

    #[test]
    fn io_errors_are_classified() {
        let ctx = context();
        let timeout = ctx.io(Step::Greeting, io::Error::new(io::ErrorKind::TimedOut, "x"));
        assert_eq!(
            timeout.to_string(),
            "IMAP imap.example.com:993: timed out after 30s with no answer (step: server greeting)"
        );
        assert!(timeout.is_retryable());
        let refused = ctx.io(
            Step::Connect,
            io::Error::new(io::ErrorKind::ConnectionRefused, "x"),
        );
        assert!(matches!(refused, ImapError::ConnectionRefused { .. }));
        assert!(refused.to_string().contains("connection refused"));
        assert!(refused.is_retryable());
        let lost = ctx.io(
            Step::List,
            io::Error::new(io::ErrorKind::UnexpectedEof, "eof"),
        );
        assert!(matches!(lost, ImapError::ConnectionLost { .. }));
        assert!(lost.is_retryable());
        let garbage = ctx.io(Step::List, io::Error::other("too large"));
        assert!(matches!(garbage, ImapError::Protocol { .. }));
        assert!(!garbage.is_retryable());
    }

    #[test]
    fn only_an_unparsable_fetch_response_names_a_message() {
        let unparsable = |detail: &str| ImapError::Unparsable {
            server: "imap.example.com".into(),
            step: Step::Command("UID FETCH"),
            detail: detail.into(),
        };
        assert!(
            unparsable("`* 12 FETCH (UID 40 BODYSTRUCTURE ((\"text\"...`").is_unparsable_fetch()
        );
        assert!(unparsable("`* 3 fetch (UID 9`").is_unparsable_fetch());
        assert!(!unparsable("`* OK [HIGHESTMODSEQ x] odd`").is_unparsable_fetch());
        assert!(!unparsable("`* 12 EXISTS junk`").is_unparsable_fetch());
        assert!(!unparsable("`A12 OK done`").is_unparsable_fetch());
    }

    #[tokio::test]
    async fn a_response_that_cannot_be_parsed_is_unparsable_and_ends_the_stream() {
        use tokio::io::AsyncWriteExt;
        let (mut server, client) = tokio::io::duplex(1 << 16);
        // An unescaped quote in a body description, then a big literal the
        // error must not carry.
        let body = "x".repeat(20_000);
        let responses = format!(
            "* 1 FETCH (UID 7 BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL \
             \"the \"final\" one\" \"7bit\" 5 1))\r\n* 2 FETCH (UID 8 BODY[] {{{}}}\r\n{body})\r\n",
            body.len()
        );
        server.write_all(responses.as_bytes()).await.unwrap();
        let mut client = async_imap::Client::new(client);
        let err = client
            .read_response()
            .await
            .expect_err("imap-proto rejects an unescaped quote");
        let err = context().io(Step::Command("UID FETCH"), err);
        assert!(matches!(err, ImapError::Unparsable { .. }), "{err:?}");
        assert!(!err.is_retryable());
        let message = err.to_string();
        assert!(message.contains("UID FETCH"), "{message}");
        assert!(
            message.contains("`* 1 FETCH (UID 7 BODYSTRUCTURE (\"text\" \"plain\""),
            "{message}"
        );
        assert!(message.len() < 300, "{message}");
        // async-imap reads nothing after a parse error: the session is done for.
        assert!(matches!(client.read_response().await, Ok(None)));
    }

    #[test]
    fn certificate_errors_suggest_ca_file() {
        let ctx = context();
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let err = ctx.io(Step::TlsHandshake, wrapped);
        let message = err.to_string();
        assert!(matches!(err, ImapError::Certificate { .. }), "{err:?}");
        assert!(message.contains("certificate"), "{message}");
        assert!(message.contains("UnknownIssuer"), "{message}");
        assert!(message.contains("ca_file"), "{message}");
        assert!(!err.is_retryable());

        let expired = ctx.tls(
            Step::TlsHandshake,
            &rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        assert!(
            expired.to_string().contains("expired (Expired)"),
            "{expired}"
        );
        let other = ctx.tls(
            Step::TlsHandshake,
            &rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert!(matches!(other, ImapError::Tls { .. }));
        assert!(!other.to_string().contains("ca_file"));
    }

    #[test]
    fn rejected_command_text() {
        let err = context().imap(
            Step::List,
            async_imap::error::Error::Bad(
                r#"code: None, info: Some("Error in IMAP command")"#.into(),
            ),
        );
        assert_eq!(
            err.to_string(),
            "IMAP imap.example.com:993: LIST failed: Error in IMAP command"
        );
    }
}
