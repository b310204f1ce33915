//! Our IMAP layer over async-imap: connecting (implicit TLS, STARTTLS, or
//! plain on loopback), logging in (LOGIN or XOAUTH2), capabilities and
//! folder discovery, with errors that say which step failed.
//!
//! async-imap is used for what it does well (parsing, LOGIN/AUTHENTICATE,
//! SELECT/FETCH for later issues). We wrap what it lacks:
//!
//! - STARTTLS: sent by hand on the plain stream; whatever the server sent
//!   after its OK is discarded with the old client (RFC 3501 §11.1 / the
//!   STARTTLS response-injection attacks), capabilities are read again.
//! - Timeouts: in the stream ([`ImapStream`]), so no read or write waits
//!   more than [`ConnectOptions::timeout`] for a silent server.
//! - Commands whose tagged status matters: async-imap's LIST and CAPABILITY
//!   stop at the tagged line without looking at it (a NO, or a dropped
//!   connection, yields a silently short list). [`ImapSession::command`]
//!   reads to the tagged completion and returns its response code, which is
//!   also how a later issue sends APPEND and reads APPENDUID.
//! - Secrets: async-imap `trace!`s every command it encodes, LOGIN
//!   included. Cargo.toml compiles `log`'s trace level out (feature
//!   `max_level_debug`), so no logger configuration can bring it back.
//!
//! Never sent: `SEARCH ... RETURN` (ESEARCH; async-imap cannot parse it).

mod auth;
mod capabilities;
mod error;
mod folders;
pub mod mutf7;
mod stream;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_imap::imap_proto::{MailboxDatum, NameAttribute, Outcome, RequestId, Response, Status};
use async_imap::types::UnsolicitedResponse;
use async_imap::{Client, Connection, Session};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::{Account, AuthMethod, Endpoint, Security};
use crate::credentials::{self, Secret};

/// Response codes of a [`Completion`] (APPENDUID, COPYUID...), from imap-proto.
pub use async_imap::imap_proto::ResponseCode;
pub use auth::{plain_response, xoauth2_response};
pub use capabilities::Capabilities;
pub use error::{ImapError, Step};
pub use folders::{
    find_named, find_special, resolve_sync_folders, Folder, FolderMatch, FoundBy, SpecialUse,
    SyncFolder,
};
pub use stream::ImapStream;

use error::{Context, ServerText};

/// How long any single network step may stay silent.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the account logs in with. Holds a [`Secret`], so Debug shows `***`.
#[derive(Debug, Clone)]
pub enum Credential {
    /// For LOGIN (or AUTHENTICATE PLAIN when LOGIN cannot carry it).
    Password(Secret),
    /// An OAuth2 access token, for AUTHENTICATE XOAUTH2.
    OAuth2Token(Secret),
}

impl Credential {
    /// The account's credential per its `auth:` method, from its configured
    /// source (keychain, command or environment).
    pub fn for_account(account: &Account) -> anyhow::Result<Credential> {
        match account.auth {
            AuthMethod::Login => Ok(Credential::Password(credentials::resolve(
                &account.id,
                "password",
                &account.password,
            )?)),
            AuthMethod::Xoauth2 => {
                let source = account.token.as_ref().ok_or_else(|| {
                    anyhow::anyhow!(
                        "account `{}` uses `auth: xoauth2` but has no `token:` source",
                        account.id
                    )
                })?;
                Ok(Credential::OAuth2Token(credentials::resolve(
                    &account.id,
                    "token",
                    source,
                )?))
            }
        }
    }
}

/// Connection settings that are not part of the account config.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Longest silence allowed from the server at any step (connect, TLS
    /// handshake, each read and write).
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A connected, TLS-upgraded, not yet authenticated connection.
///
/// A separate stage so `doctor` can report connect and TLS before trying
/// the credentials.
#[derive(Debug)]
pub struct PreAuth {
    client: Client<ImapStream>,
    ctx: Context,
    security: Security,
    capabilities: Capabilities,
}

/// Connects to `endpoint` and, unless `security: none`, sets up verified TLS
/// (OS roots plus `ca_file`).
pub async fn connect(
    endpoint: &Endpoint,
    ca_file: Option<&Path>,
    options: &ConnectOptions,
) -> Result<PreAuth, ImapError> {
    // IPv6 literals may be written in brackets, as in URLs.
    let host = endpoint
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let ctx = Context {
        server: if host.contains(':') {
            format!("[{host}]:{}", endpoint.port)
        } else {
            format!("{host}:{}", endpoint.port)
        },
        timeout: options.timeout,
    };
    // Before any network I/O: a bad ca_file is a config error, not a
    // connection failure.
    let tls = match endpoint.security {
        Security::None if !crate::config::is_loopback_host(&host) => {
            return Err(ImapError::PlaintextRefused { server: ctx.server });
        }
        Security::None => None,
        Security::Tls | Security::Starttls => Some(crate::tls::tls_config(ca_file)?),
    };
    let tcp = tcp_connect(&host, endpoint.port, &ctx).await?;
    let timeout = Some(options.timeout);
    let stream = match (&endpoint.security, &tls) {
        (Security::Tls, Some(config)) => {
            ImapStream::tls(tls_handshake(config, &host, tcp, &ctx).await?, timeout)
        }
        _ => ImapStream::plain(tcp, timeout),
    };
    let mut client = Client::new(stream);
    let mut capabilities = read_greeting(&mut client, &ctx).await?;

    if let (Security::Starttls, Some(config)) = (&endpoint.security, &tls) {
        let offered = match capabilities.take() {
            Some(caps) => caps,
            None => preauth_capabilities(&mut client, &ctx).await?,
        };
        if !offered.has("STARTTLS") {
            return Err(ImapError::StartTlsUnavailable {
                server: ctx.server.clone(),
            });
        }
        send_preauth(&mut client, "M2 STARTTLS", &ctx, Step::StartTls).await?;
        read_tagged(&mut client, "M2", &ctx, Step::StartTls, |_| {}).await?;
        let tcp = match client.into_inner().into_plain() {
            Ok(tcp) => tcp,
            Err(_) => unreachable!("STARTTLS runs on a plain stream"),
        };
        let tls_stream = tls_handshake(config, &host, tcp, &ctx).await?;
        client = Client::new(ImapStream::tls(tls_stream, timeout));
        // Capabilities from before TLS may have been forged; ask again.
        capabilities = None;
    }
    let capabilities = match capabilities {
        Some(caps) => caps,
        None => preauth_capabilities(&mut client, &ctx).await?,
    };
    Ok(PreAuth {
        client,
        ctx,
        security: endpoint.security,
        capabilities,
    })
}

/// Connects and logs in: what everything but `doctor` needs.
pub async fn open_session(
    account: &Account,
    credential: &Credential,
    options: &ConnectOptions,
) -> Result<ImapSession, ImapError> {
    connect(&account.imap, account.ca_file.as_deref(), options)
        .await?
        .login(&account.username, credential)
        .await
}

async fn tcp_connect(host: &str, port: u16, ctx: &Context) -> Result<TcpStream, ImapError> {
    let lookup = tokio::time::timeout(ctx.timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| ImapError::Timeout {
            server: ctx.server.clone(),
            step: Step::Resolve,
            after: ctx.timeout,
        })?;
    let addresses: Vec<_> = lookup
        .map_err(|source| ImapError::Dns {
            host: host.to_string(),
            source,
        })?
        .collect();
    let mut last_error = None;
    // `localhost` may resolve to ::1 and 127.0.0.1 with the server on only
    // one of them: try each, report the last failure.
    for address in addresses {
        match tokio::time::timeout(ctx.timeout, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => {
                tcp.set_nodelay(true).ok();
                return Ok(tcp);
            }
            Ok(Err(err)) => last_error = Some(ctx.io(Step::Connect, err)),
            Err(_) => {
                last_error = Some(ImapError::Timeout {
                    server: ctx.server.clone(),
                    step: Step::Connect,
                    after: ctx.timeout,
                })
            }
        }
    }
    Err(last_error.unwrap_or_else(|| ImapError::Dns {
        host: host.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses found"),
    }))
}

async fn tls_handshake(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
    ctx: &Context,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImapError> {
    let server_name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|err| {
        ImapError::Tls {
            server: ctx.server.clone(),
            step: Step::TlsHandshake,
            reason: format!("`{host}` cannot be checked against a certificate: {err}"),
        }
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    match tokio::time::timeout(ctx.timeout, connector.connect(server_name, tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(err)) => Err(ctx.io(Step::TlsHandshake, err)),
        Err(_) => Err(ImapError::Timeout {
            server: ctx.server.clone(),
            step: Step::TlsHandshake,
            after: ctx.timeout,
        }),
    }
}

/// Reads the greeting; returns the capabilities if it carried them (as
/// Dovecot's does), saving a round trip.
async fn read_greeting(
    client: &mut Client<ImapStream>,
    ctx: &Context,
) -> Result<Option<Capabilities>, ImapError> {
    let response = client
        .read_response()
        .await
        .map_err(|err| ctx.io(Step::Greeting, err))?
        .ok_or_else(|| ctx.lost(Step::Greeting, None))?;
    match response.parsed() {
        Response::Data {
            status: Status::Ok,
            outcome,
        } => Ok(match &outcome.code {
            Some(ResponseCode::Capabilities(caps)) => Some(Capabilities::from_proto(caps)),
            _ => None,
        }),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(ImapError::Rejected {
            server: ctx.server.clone(),
            step: Step::Greeting,
            message: format!(
                "the server refused the connection: {}",
                outcome.information.as_deref().unwrap_or("BYE")
            ),
        }),
        Response::Data {
            status: Status::PreAuth,
            ..
        } => Err(ImapError::Protocol {
            server: ctx.server.clone(),
            step: Step::Greeting,
            message: "the server greeted with PREAUTH (already logged in), which is not supported"
                .into(),
        }),
        other => Err(ImapError::Protocol {
            server: ctx.server.clone(),
            step: Step::Greeting,
            message: format!("unexpected greeting {other:?}"),
        }),
    }
}

/// Writes one pre-login command with our own tag. async-imap keeps its
/// tagged-command API private before login; its tags are `A0001`..., ours
/// `M1`, `M2`, so they never collide.
async fn send_preauth(
    client: &mut Client<ImapStream>,
    line: &str,
    ctx: &Context,
    step: Step,
) -> Result<(), ImapError> {
    let stream = client.get_mut();
    stream
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|err| ctx.io(step, err))?;
    stream.flush().await.map_err(|err| ctx.io(step, err))
}

async fn preauth_capabilities(
    client: &mut Client<ImapStream>,
    ctx: &Context,
) -> Result<Capabilities, ImapError> {
    send_preauth(client, "M1 CAPABILITY", ctx, Step::Capability).await?;
    let mut caps = Capabilities::default();
    read_tagged(client, "M1", ctx, Step::Capability, |response| {
        if let Response::Capabilities(list) = response {
            caps = Capabilities::from_proto(list);
        }
    })
    .await?;
    Ok(caps)
}

/// The tagged OK that ended a command: its response code (APPENDUID,
/// COPYUID, READ-WRITE...) and text.
#[derive(Debug)]
pub struct Completion {
    pub code: Option<ResponseCode<'static>>,
    pub text: String,
}

/// Reads responses until the one tagged `tag`, passing every other one to
/// `on_untagged`. A NO or BAD becomes [`ImapError::Rejected`]; the end of
/// the stream [`ImapError::ConnectionLost`] with the server's BYE text.
async fn read_tagged(
    conn: &mut Connection<ImapStream>,
    tag: &str,
    ctx: &Context,
    step: Step,
    on_untagged: impl FnMut(&Response<'_>),
) -> Result<Completion, ImapError> {
    read_completions(conn, &[tag], ctx, step, on_untagged)
        .await
        .pop()
        .expect("one completion per tag")
}

/// Most bytes of command lines [`ImapSession::pipeline`] sends ahead of
/// their answers: well within any socket's send buffer, so a write never
/// waits on a server that, its own output unread, has stopped reading.
const PIPELINE_WINDOW: usize = 16 * 1024;

/// Reads responses until every command of `tags` has completed, passing
/// every untagged one to `on_untagged`: each command's completion, in the
/// order of `tags`, as [`read_tagged`] gives it. If the stream fails first,
/// the first command still open gets that error and those after it
/// [`ImapError::ConnectionLost`].
async fn read_completions(
    conn: &mut Connection<ImapStream>,
    tags: &[&str],
    ctx: &Context,
    step: Step,
    mut on_untagged: impl FnMut(&Response<'_>),
) -> Vec<Result<Completion, ImapError>> {
    let mut completions: Vec<Option<Result<Completion, ImapError>>> =
        tags.iter().map(|_| None).collect();
    let mut open = tags.len();
    let mut bye: Option<String> = None;
    while open > 0 {
        let response = match conn.read_response().await {
            Ok(Some(response)) => response,
            failed => {
                let error = match failed {
                    Err(err) => ctx.io(step, err),
                    _ => ctx.lost(step, bye.take()),
                };
                if let Some(first_open) = completions.iter_mut().find(|c| c.is_none()) {
                    *first_open = Some(Err(error));
                }
                break;
            }
        };
        let parsed = response.parsed();
        if let Response::Done {
            tag: RequestId(done),
            status,
            outcome,
        } = parsed
        {
            if let Some(index) = tags.iter().position(|tag| tag == done) {
                // A tag completed twice is answered once.
                if completions[index].is_none() {
                    completions[index] = Some(completion(ctx, step, status, outcome));
                    open -= 1;
                }
                continue;
            }
        }
        match parsed {
            Response::Data {
                status: Status::Bye,
                outcome,
            } => {
                bye = outcome.information.as_deref().map(str::to_string);
            }
            other => on_untagged(other),
        }
    }
    completions
        .into_iter()
        .map(|c| c.unwrap_or_else(|| Err(ctx.lost(step, None))))
        .collect()
}

/// A command's tagged completion: OK, or a NO or BAD as
/// [`ImapError::Rejected`].
fn completion(
    ctx: &Context,
    step: Step,
    status: &Status,
    outcome: &Outcome<'_>,
) -> Result<Completion, ImapError> {
    let text = outcome.information.as_deref().unwrap_or("").to_string();
    match status {
        Status::Ok => Ok(Completion {
            code: outcome.code.as_ref().and_then(owned_code),
            text,
        }),
        _ => Err(ImapError::Rejected {
            server: ctx.server.clone(),
            step,
            message: rejection_text(status, outcome.code.as_ref(), &text),
        }),
    }
}

/// An owned copy of a response code (imap-proto's is not `Clone`, and the
/// response it borrows from is gone once the command completes). `None`
/// only for codes a newer imap-proto might add.
fn owned_code(code: &ResponseCode<'_>) -> Option<ResponseCode<'static>> {
    use async_imap::imap_proto::Capability;
    use std::borrow::Cow;
    let owned = |s: &Cow<'_, str>| Cow::Owned(s.to_string());
    Some(match code {
        ResponseCode::Alert => ResponseCode::Alert,
        ResponseCode::BadCharset(v) => {
            ResponseCode::BadCharset(v.as_ref().map(|v| v.iter().map(owned).collect()))
        }
        ResponseCode::Capabilities(v) => ResponseCode::Capabilities(
            v.iter()
                .map(|c| match c {
                    Capability::Imap4rev1 => Capability::Imap4rev1,
                    Capability::Auth(s) => Capability::Auth(owned(s)),
                    Capability::Atom(s) => Capability::Atom(owned(s)),
                })
                .collect(),
        ),
        ResponseCode::HighestModSeq(v) => ResponseCode::HighestModSeq(*v),
        ResponseCode::Parse => ResponseCode::Parse,
        ResponseCode::PermanentFlags(v) => {
            ResponseCode::PermanentFlags(v.iter().map(owned).collect())
        }
        ResponseCode::ReadOnly => ResponseCode::ReadOnly,
        ResponseCode::ReadWrite => ResponseCode::ReadWrite,
        ResponseCode::TryCreate => ResponseCode::TryCreate,
        ResponseCode::UidNext(v) => ResponseCode::UidNext(*v),
        ResponseCode::UidValidity(v) => ResponseCode::UidValidity(*v),
        ResponseCode::Unseen(v) => ResponseCode::Unseen(*v),
        ResponseCode::AppendUid(validity, uids) => ResponseCode::AppendUid(*validity, uids.clone()),
        ResponseCode::CopyUid(validity, from, to) => {
            ResponseCode::CopyUid(*validity, from.clone(), to.clone())
        }
        ResponseCode::UidNotSticky => ResponseCode::UidNotSticky,
        ResponseCode::MetadataLongEntries(v) => ResponseCode::MetadataLongEntries(*v),
        ResponseCode::MetadataMaxSize(v) => ResponseCode::MetadataMaxSize(*v),
        ResponseCode::MetadataTooMany => ResponseCode::MetadataTooMany,
        ResponseCode::MetadataNoPrivate => ResponseCode::MetadataNoPrivate,
        _ => return None,
    })
}

fn rejection_text(status: &Status, code: Option<&ResponseCode<'_>>, text: &str) -> String {
    let mut parsed = ServerText::from_text(text);
    if parsed.code.is_none() {
        parsed.code = code.map(|c| {
            let debug = format!("{c:?}");
            debug
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or(&debug)
                .to_ascii_uppercase()
        });
    }
    let word = match status {
        Status::Bad => "BAD",
        _ => "NO",
    };
    if parsed.text.is_empty() && parsed.code.is_none() {
        format!("the server said {word}")
    } else {
        parsed.to_string()
    }
}

impl PreAuth {
    /// Capabilities before login (after STARTTLS, if used): what `login`
    /// chooses its mechanism by. Servers often list more after login.
    pub fn pre_login_capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Protocol version and cipher suite; `None` for `security: none`.
    pub fn tls_summary(&self) -> Option<String> {
        self.client.get_ref().tls_summary()
    }

    pub fn security(&self) -> Security {
        self.security
    }

    /// `host:port`, as used in error messages.
    pub fn server(&self) -> &str {
        &self.ctx.server
    }

    /// Authenticates; on success the session knows the post-login
    /// capabilities.
    ///
    /// A password goes by LOGIN, unless LOGIN cannot carry it: when the
    /// server says LOGINDISABLED, or the password is not ASCII (LOGIN's
    /// quoted strings are 7-bit), AUTHENTICATE PLAIN is used if offered.
    pub async fn login(
        self,
        username: &str,
        credential: &Credential,
    ) -> Result<ImapSession, ImapError> {
        let PreAuth {
            client,
            ctx,
            security,
            capabilities,
        } = self;
        let (session, caps) = match credential {
            Credential::Password(password) => {
                let login_disabled = capabilities.has("LOGINDISABLED");
                let plain_offered = capabilities.has_auth("PLAIN");
                if (login_disabled || !password.expose().is_ascii()) && plain_offered {
                    let session = authenticate(
                        client,
                        "PLAIN",
                        plain_response(username, password),
                        &ctx,
                        username,
                    )
                    .await?;
                    (session, None)
                } else if login_disabled {
                    return Err(ImapError::LoginDisabled { server: ctx.server });
                } else {
                    client
                        .login_with_capabilities(username, password.expose())
                        .await
                        .map(|(session, caps)| {
                            (session, caps.map(|c| Capabilities::from_async_imap(&c)))
                        })
                        .map_err(|(err, _client)| ctx.auth(username, err, None))?
                }
            }
            Credential::OAuth2Token(token) => {
                if !capabilities.has_auth("XOAUTH2") {
                    let offered: Vec<&str> = capabilities.auth_mechanisms().collect();
                    return Err(ImapError::Auth {
                        server: ctx.server,
                        username: username.to_string(),
                        code: None,
                        message: format!(
                            "the server does not offer XOAUTH2 (it offers: {})",
                            if offered.is_empty() {
                                "no SASL mechanism".to_string()
                            } else {
                                offered.join(", ")
                            }
                        ),
                    });
                }
                let session = authenticate(
                    client,
                    "XOAUTH2",
                    xoauth2_response(username, token),
                    &ctx,
                    username,
                )
                .await?;
                (session, None)
            }
        };
        let mut session = ImapSession {
            session,
            ctx,
            security,
            capabilities: Capabilities::default(),
        };
        session.capabilities = match caps {
            Some(caps) if !caps.is_empty() => caps,
            _ => session.fetch_capabilities().await?,
        };
        Ok(session)
    }
}

async fn authenticate(
    client: Client<ImapStream>,
    mechanism: &str,
    response: Vec<u8>,
    ctx: &Context,
    username: &str,
) -> Result<Session<ImapStream>, ImapError> {
    let mut authenticator = auth::OneShot::new(response);
    let result = client.authenticate(mechanism, &mut authenticator).await;
    result.map_err(|(err, _client)| {
        let extra = authenticator
            .server_error
            .as_deref()
            .map(|json| format!("server detail: {json}"));
        ctx.auth(username, err, extra.as_deref())
    })
}

/// A logged-in connection.
#[derive(Debug)]
pub struct ImapSession {
    session: Session<ImapStream>,
    ctx: Context,
    security: Security,
    capabilities: Capabilities,
}

impl ImapSession {
    /// Capabilities after login, read once.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn tls_summary(&self) -> Option<String> {
        self.session.get_ref().tls_summary()
    }

    pub fn security(&self) -> Security {
        self.security
    }

    /// `host:port`, as used in error messages.
    pub fn server(&self) -> &str {
        &self.ctx.server
    }

    /// Every folder (`LIST "" "*"`), with special-use attributes.
    ///
    /// Servers with LIST-EXTENDED and SPECIAL-USE are asked with
    /// `RETURN (SPECIAL-USE)`, since RFC 6154 only requires the attributes
    /// then; Dovecot and Gmail send them in a plain LIST too, which is what
    /// everyone else gets.
    pub async fn list_folders(&mut self) -> Result<Vec<Folder>, ImapError> {
        let command =
            if self.capabilities.has("LIST-EXTENDED") && self.capabilities.has("SPECIAL-USE") {
                r#"LIST "" "*" RETURN (SPECIAL-USE)"#
            } else {
                r#"LIST "" "*""#
            };
        let mut folders = Vec::new();
        self.command(Step::List, command, |response| {
            if let Response::MailboxData(MailboxDatum::List(data)) = response {
                folders.push(Folder::new(
                    unquote(&data.name),
                    data.delimiter.as_deref().map(unquote).as_deref(),
                    data.name_attributes.iter().map(attribute_name).collect(),
                ));
            }
        })
        .await?;
        Ok(folders)
    }

    /// Sends `command` and reads to its tagged completion, passing each
    /// untagged response to `on_untagged`; a NO or BAD is an error.
    ///
    /// For commands async-imap lacks or gets wrong (LIST, APPEND with
    /// APPENDUID in [`Completion::code`]). The command line is not logged,
    /// but it goes through async-imap's encoder: never put a secret in it.
    pub async fn command(
        &mut self,
        step: Step,
        command: &str,
        on_untagged: impl FnMut(&Response<'_>),
    ) -> Result<Completion, ImapError> {
        let tag = self
            .session
            .run_command(command)
            .await
            .map_err(|err| self.ctx.imap(step, err))?;
        read_tagged(&mut self.session, &tag.0, &self.ctx, step, on_untagged).await
    }

    /// Sends the commands of `commands` at once, then reads until each has
    /// completed, passing every untagged response to `on_untagged`: the
    /// server goes from one command to the next without waiting a round
    /// trip for the next line. Each command's completion, in order; if the
    /// connection fails, the first command still open gets that error and
    /// the others [`ImapError::ConnectionLost`].
    ///
    /// At most [`PIPELINE_WINDOW`] bytes of commands are sent ahead of their
    /// answers; more wait for those before them to complete.
    ///
    /// Only for commands that may run in any order without ambiguity (UID
    /// FETCHes, RFC 3501 §5.5): a server may run them at once, and their
    /// untagged responses may interleave.
    pub async fn pipeline(
        &mut self,
        step: Step,
        commands: &[String],
        mut on_untagged: impl FnMut(&Response<'_>),
    ) -> Vec<Result<Completion, ImapError>> {
        let mut completions = Vec::with_capacity(commands.len());
        let mut start = 0;
        while start < commands.len() {
            let mut end = start + 1;
            let mut bytes = commands[start].len();
            while end < commands.len() && bytes + commands[end].len() <= PIPELINE_WINDOW {
                bytes += commands[end].len();
                end += 1;
            }
            let mut tags = Vec::with_capacity(end - start);
            for command in &commands[start..end] {
                match self.session.run_command(command).await {
                    Ok(tag) => tags.push(tag.0),
                    Err(err) => {
                        // The connection is gone: nothing sent will be answered.
                        completions.push(Err(self.ctx.imap(step, err)));
                        completions.extend(
                            (start + 1..commands.len()).map(|_| Err(self.ctx.lost(step, None))),
                        );
                        return completions;
                    }
                }
            }
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            let window =
                read_completions(&mut self.session, &tags, &self.ctx, step, &mut on_untagged).await;
            // Anything but a refusal means the stream failed.
            let broken = window
                .iter()
                .any(|completion| matches!(completion, Err(error) if !matches!(error, ImapError::Rejected { .. })));
            completions.extend(window);
            if broken {
                completions.extend((end..commands.len()).map(|_| Err(self.ctx.lost(step, None))));
                break;
            }
            start = end;
        }
        completions
    }

    /// Sends `head {N}`, waits for the server's go-ahead, sends `literal`
    /// (N bytes), and reads to the tagged completion: the shape of APPEND,
    /// whose `[APPENDUID validity uid]` async-imap throws away but
    /// [`Completion::code`] keeps.
    ///
    /// A synchronizing literal, so a server refusing up front (no such
    /// folder, too big) answers NO before the message is sent.
    pub async fn command_with_literal(
        &mut self,
        step: Step,
        head: &str,
        literal: &[u8],
        mut on_untagged: impl FnMut(&Response<'_>),
    ) -> Result<Completion, ImapError> {
        let tag = self
            .session
            .run_command(format!("{head} {{{}}}", literal.len()))
            .await
            .map_err(|err| self.ctx.imap(step, err))?;
        loop {
            let Some(response) = self
                .session
                .read_response()
                .await
                .map_err(|err| self.ctx.io(step, err))?
            else {
                return Err(self.ctx.lost(step, None));
            };
            match response.parsed() {
                Response::Continue(_) => break,
                Response::Done {
                    tag: RequestId(done),
                    status,
                    outcome,
                } if *done == tag.0 => {
                    let text = outcome.information.as_deref().unwrap_or("");
                    return Err(ImapError::Rejected {
                        server: self.ctx.server.clone(),
                        step,
                        message: rejection_text(status, outcome.code.as_ref(), text),
                    });
                }
                other => on_untagged(other),
            }
        }
        let stream = self.session.get_mut();
        let written = async {
            stream.write_all(literal).await?;
            stream.write_all(b"\r\n").await?;
            stream.flush().await
        }
        .await;
        written.map_err(|err| self.ctx.io(step, err))?;
        read_tagged(&mut self.session, &tag.0, &self.ctx, step, on_untagged).await
    }

    async fn fetch_capabilities(&mut self) -> Result<Capabilities, ImapError> {
        let mut caps = Capabilities::default();
        self.command(Step::Capability, "CAPABILITY", |response| {
            if let Response::Capabilities(list) = response {
                caps = Capabilities::from_proto(list);
            }
        })
        .await?;
        Ok(caps)
    }

    /// SELECT (or, `read_only`, EXAMINE) a folder; returns its UIDVALIDITY.
    /// EXAMINE is what a sync wants: nothing it does can change the folder.
    pub async fn select_folder(&mut self, folder: &str, read_only: bool) -> Result<u32, ImapError> {
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        let mut uidvalidity = 0;
        let completion = self
            .command(
                Step::Command(verb),
                &format!("{verb} {}", quote(folder)),
                |response| {
                    if let Response::Data { outcome, .. } = response {
                        if let Some(ResponseCode::UidValidity(v)) = outcome.code {
                            uidvalidity = v;
                        }
                    }
                },
            )
            .await?;
        if let Some(ResponseCode::UidValidity(v)) = completion.code {
            uidvalidity = v;
        }
        Ok(uidvalidity)
    }

    /// The async-imap session itself, for what consumes it (IDLE's handle).
    pub fn into_raw(self) -> Session<ImapStream> {
        self.session
    }

    /// Responses the server sent unasked (EXISTS, EXPUNGE...) during
    /// async-imap's own commands. Its queue holds 100 and then drops new
    /// ones silently, so whoever uses [`ImapSession::raw`] for a while
    /// should drain it.
    pub fn drain_unsolicited(&mut self) -> Vec<UnsolicitedResponse> {
        let mut drained = Vec::new();
        while let Ok(response) = self.session.unsolicited_responses.try_recv() {
            drained.push(response);
        }
        drained
    }

    /// Lifts or changes the inactivity timeout (IDLE waits minutes).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.session.get_mut().set_timeout(timeout);
    }

    /// Turns an async-imap error from a raw command into an [`ImapError`].
    pub fn error(&self, step: Step, err: async_imap::error::Error) -> ImapError {
        self.ctx.imap(step, err)
    }

    /// The async-imap session, for the commands later issues add (SELECT,
    /// FETCH...). Map its errors with [`ImapSession::error`].
    pub fn raw(&mut self) -> &mut Session<ImapStream> {
        &mut self.session
    }

    /// Says goodbye. A server that hangs up before its tagged OK has still
    /// logged us out, so a lost connection here is not an error.
    pub async fn logout(mut self) -> Result<(), ImapError> {
        match self.session.logout().await {
            Ok(()) => Ok(()),
            Err(async_imap::error::Error::ConnectionLost) => Ok(()),
            Err(err) => match self.ctx.imap(Step::Logout, err) {
                ImapError::ConnectionLost { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// imap-proto hands quoted strings over with their `\"` and `\\` escapes
/// still in; mailbox names need them undone to be usable in commands.
/// An IMAP quoted string (folder names, search keys).
pub fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

fn unquote(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn attribute_name(attribute: &NameAttribute<'_>) -> String {
    match attribute {
        NameAttribute::NoInferiors => "\\Noinferiors".into(),
        NameAttribute::NoSelect => "\\Noselect".into(),
        NameAttribute::Marked => "\\Marked".into(),
        NameAttribute::Unmarked => "\\Unmarked".into(),
        NameAttribute::All => "\\All".into(),
        NameAttribute::Archive => "\\Archive".into(),
        NameAttribute::Drafts => "\\Drafts".into(),
        NameAttribute::Flagged => "\\Flagged".into(),
        NameAttribute::Junk => "\\Junk".into(),
        NameAttribute::Sent => "\\Sent".into(),
        NameAttribute::Trash => "\\Trash".into(),
        NameAttribute::Extension(name) => name.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_logging_is_compiled_out() {
        // async-imap logs LOGIN (password included) at trace level.
        assert!(log::STATIC_MAX_LEVEL < log::LevelFilter::Trace);
        assert!(!log::log_enabled!(log::Level::Trace));
    }

    #[test]
    fn credential_follows_the_auth_method() {
        let yaml = "vault: /tmp/v\naccounts:\n  a:\n    email: a@example.com\n    \
                    imap: { host: imap.example.com }\n    \
                    password: { env: MAILBRIDGE_IMAP_TEST_PW }\n  b:\n    \
                    email: b@example.com\n    imap: { host: imap.example.com }\n    \
                    auth: xoauth2\n    token: { env: MAILBRIDGE_IMAP_TEST_TOKEN }\n";
        let config = crate::config::Config::parse(yaml, Path::new("/c.yaml")).unwrap();
        std::env::set_var("MAILBRIDGE_IMAP_TEST_PW", "pw");
        std::env::set_var("MAILBRIDGE_IMAP_TEST_TOKEN", "tok");
        match Credential::for_account(&config.accounts["a"]).unwrap() {
            Credential::Password(secret) => assert_eq!(secret.expose(), "pw"),
            other => panic!("{other:?}"),
        }
        match Credential::for_account(&config.accounts["b"]).unwrap() {
            Credential::OAuth2Token(secret) => assert_eq!(secret.expose(), "tok"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn credential_debug_hides_the_secret() {
        let password = Credential::Password(Secret::new("hunter2"));
        let token = Credential::OAuth2Token(Secret::new("ya29.token"));
        assert_eq!(format!("{password:?}"), "Password(Secret(***))");
        assert!(!format!("{token:?}").contains("ya29"));
    }

    #[tokio::test]
    async fn plaintext_to_a_remote_host_is_refused_before_connecting() {
        let endpoint = Endpoint {
            host: "imap.example.com".into(),
            port: 143,
            security: Security::None,
        };
        let err = connect(&endpoint, None, &ConnectOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ImapError::PlaintextRefused { .. }), "{err:?}");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn bad_ca_file_is_reported_before_connecting() {
        let endpoint = Endpoint {
            host: "imap.example.com".into(),
            port: 993,
            security: Security::Tls,
        };
        let err = connect(
            &endpoint,
            Some(Path::new("/nonexistent/ca.pem")),
            &ConnectOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ImapError::TlsConfig(_)), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn list_response_becomes_folder() {
        let raw = b"* LIST (\\HasNoChildren \\Drafts) \"/\" \"Entw&APw-rfe\"\r\n";
        let (_, response) = Response::parse(raw).unwrap();
        let Response::MailboxData(MailboxDatum::List(data)) = response else {
            panic!("{response:?}");
        };
        let folder = Folder::new(
            unquote(&data.name),
            data.delimiter.as_deref(),
            data.name_attributes.iter().map(attribute_name).collect(),
        );
        assert_eq!(folder.name, "Entw&APw-rfe");
        assert_eq!(folder.display_name, "Entwürfe");
        assert_eq!(folder.delimiter.as_deref(), Some("/"));
        assert_eq!(folder.attributes, ["\\HasNoChildren", "\\Drafts"]);
        assert_eq!(
            folder.special_uses().collect::<Vec<_>>(),
            [SpecialUse::Drafts]
        );
    }

    #[test]
    fn quoted_names_are_unescaped() {
        let (_, response) = Response::parse(b"* LIST () \"\\\\\" \"say \\\"hi\\\"\"\r\n").unwrap();
        let Response::MailboxData(MailboxDatum::List(data)) = response else {
            panic!("{response:?}");
        };
        assert_eq!(unquote(&data.name), "say \"hi\"");
        assert_eq!(unquote(data.delimiter.as_deref().unwrap()), "\\");
    }

    #[test]
    fn rejection_text_keeps_code_and_text() {
        assert_eq!(
            rejection_text(&Status::No, None, "[NONEXISTENT] Mailbox doesn't exist: X"),
            "[NONEXISTENT] Mailbox doesn't exist: X"
        );
        assert_eq!(
            rejection_text(&Status::Bad, None, ""),
            "the server said BAD"
        );
        assert_eq!(
            rejection_text(
                &Status::No,
                Some(&ResponseCode::TryCreate),
                "no such mailbox"
            ),
            "[TRYCREATE] no such mailbox"
        );
    }
}
