//! A TLS man in the middle for tests, on 127.0.0.1 and a random port: it
//! injects the faults a real server cannot be made to (SPEC: a mock server
//! only for those), responses imap-proto cannot parse.
//!
//! It terminates TLS towards the client with a certificate of a CA of its
//! own ([`Mitm::ca_file`]), connects to the real server over TLS, forwards
//! the client's bytes as they come and the server's a response at a time
//! (its lines and the literals they announce), rewriting the FETCH
//! responses a [`Rewrite`] picks. Each rewritten response is parsed with
//! imap-proto, the parser the bridge uses, so a test can check that its
//! fault really is one ([`Mitm::rejected`]), not a response that still
//! parses or one the parser waits on for more bytes.
//!
//! Two constructors also change the order of answers to pipelined
//! commands, as RFC 3501 §5.5 lets a server send them (Dovecot does
//! neither):
//! - [`Mitm::start_structures_last`]: the answers to a BODYSTRUCTURE FETCH
//!   are held back until that command's own completion, so they come after
//!   the completions of the commands sent before it, as a server that
//!   answers pipelined commands strictly one after the other would send
//!   them (Dovecot interleaves them);
//! - [`Mitm::start_completions_swapped`]: a command's tagged completion,
//!   while a later command is still open, is held back until the next
//!   completion has passed, so commands complete out of order.

// Included by more than one test crate, each using part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_imap::imap_proto::Response;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{certs, net};

/// Which server responses to rewrite, and how.
#[derive(Clone, Debug)]
pub struct Rewrite {
    /// The message (folder, UID) whose FETCH responses are rewritten;
    /// `None`: every message's.
    pub message: Option<(&'static str, u32)>,
    /// Only responses whose first line holds this (`BODYSTRUCTURE`, `BODY[]`).
    pub item: &'static str,
    /// Its first occurrence in the response is replaced by `to`.
    pub from: &'static str,
    pub to: &'static str,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    rewritten: AtomicUsize,
    rejected: AtomicUsize,
    /// The start of each rewritten response that imap-proto still took.
    accepted: Mutex<Vec<String>>,
}

struct Shared {
    upstream_port: u16,
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    rewrites: Vec<Rewrite>,
    counts: Counts,
    order: Order,
    /// Completions forwarded after a later command's.
    swapped: AtomicUsize,
}

/// The order in which answers reach the client.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Order {
    AsServed,
    StructuresLast,
    CompletionsSwapped,
}

/// The proxy; it stops, closing every connection, on drop.
pub struct Mitm {
    port: u16,
    ca_file: PathBuf,
    shared: Arc<Shared>,
    /// Dropped first: its tasks end before the certificates go.
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl Mitm {
    /// A proxy to the TLS port `upstream_port` on 127.0.0.1, whose
    /// certificate `upstream_ca` signed.
    pub fn start(upstream_port: u16, upstream_ca: &Path, rewrites: Vec<Rewrite>) -> Mitm {
        Mitm::with_order(upstream_port, upstream_ca, rewrites, Order::AsServed)
    }

    /// [`Mitm::start`], with the answers to a BODYSTRUCTURE FETCH held back
    /// until that command's completion (see the module docs).
    pub fn start_structures_last(
        upstream_port: u16,
        upstream_ca: &Path,
        rewrites: Vec<Rewrite>,
    ) -> Mitm {
        Mitm::with_order(upstream_port, upstream_ca, rewrites, Order::StructuresLast)
    }

    /// [`Mitm::start`], with a completion held back while a later command
    /// is open, until the next completion has passed (see the module docs).
    pub fn start_completions_swapped(upstream_port: u16, upstream_ca: &Path) -> Mitm {
        Mitm::with_order(
            upstream_port,
            upstream_ca,
            Vec::new(),
            Order::CompletionsSwapped,
        )
    }

    fn with_order(
        upstream_port: u16,
        upstream_ca: &Path,
        rewrites: Vec<Rewrite>,
        order: Order,
    ) -> Mitm {
        let dir = tempfile::tempdir().expect("temp dir for the proxy's certificates");
        let files = certs::generate(dir.path());
        let shared = Arc::new(Shared {
            upstream_port,
            acceptor: tokio_rustls::TlsAcceptor::from(server_config(&files)),
            connector: tokio_rustls::TlsConnector::from(net::tls_config(upstream_ca)),
            rewrites,
            counts: Counts::default(),
            order,
            swapped: AtomicUsize::new(0),
        });
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let accepting = Arc::clone(&shared);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((client, _)) = listener.accept().await {
                accepting.counts.connections.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&accepting);
                tokio::spawn(async move {
                    let _ = relay(client, &shared).await;
                });
            }
        });
        Mitm {
            port,
            ca_file: files.ca,
            shared,
            runtime: Some(runtime),
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA a client must trust to talk through the proxy.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.counts.connections.load(Ordering::SeqCst)
    }

    /// Responses rewritten so far.
    pub fn rewritten(&self) -> usize {
        self.shared.counts.rewritten.load(Ordering::SeqCst)
    }

    /// Rewritten responses imap-proto rejected (an error, not "incomplete").
    pub fn rejected(&self) -> usize {
        self.shared.counts.rejected.load(Ordering::SeqCst)
    }

    /// Completions forwarded after a later command's.
    pub fn swapped(&self) -> usize {
        self.shared.swapped.load(Ordering::SeqCst)
    }

    /// The first line of each rewritten response imap-proto still parsed.
    pub fn accepted(&self) -> Vec<String> {
        self.shared.counts.accepted.lock().unwrap().clone()
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn server_config(files: &certs::CertFiles) -> Arc<rustls::ServerConfig> {
    let cert_pem = std::fs::read(&files.cert).expect("read the proxy's certificate");
    let key_pem = std::fs::read(&files.key).expect("read the proxy's key");
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .expect("key PEM")
        .expect("a private key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the proxy's certificate and key");
    Arc::new(config)
}

/// One client connection: TLS on both sides, bytes both ways until either
/// side closes.
async fn relay(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let client = shared.acceptor.accept(client).await?;
    let upstream = TcpStream::connect(("127.0.0.1", shared.upstream_port)).await?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP address is a server name");
    let upstream = shared.connector.connect(name, upstream).await?;
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(upstream);
    // The folder the client selected last: UIDs are per folder.
    let selected = Mutex::new(String::new());
    // The tags of the client's BODYSTRUCTURE FETCHes, and of every command
    // not yet completed.
    let structure_tags: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    let open_tags: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    let to_server = async {
        let mut chunk = vec![0u8; 16 * 1024];
        // The client's current line: a command comes in several writes.
        let mut line = Vec::new();
        loop {
            let n = match client_read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &byte in &chunk[..n] {
                line.push(byte);
                if line.ends_with(b"\r\n") {
                    if let Some(folder) = selected_folder(&line) {
                        *selected.lock().unwrap() = folder;
                    }
                    // Recorded before the command reaches the server.
                    if let Some(tag) = structure_command_tag(&line) {
                        structure_tags.lock().unwrap().insert(tag);
                    }
                    if let Some(tag) = command_tag(&line) {
                        open_tags.lock().unwrap().insert(tag);
                    }
                    line.clear();
                }
            }
            if server_write.write_all(&chunk[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let to_client = async {
        let mut pending = Vec::new();
        let mut held = Vec::new();
        let mut held_completion = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match server_read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
            let folder = selected.lock().unwrap().clone();
            let order = Held {
                structures: &mut held,
                completion: &mut held_completion,
                structure_tags: &structure_tags,
                open_tags: &open_tags,
            };
            if forward_responses(&mut pending, &mut client_write, shared, &folder, order)
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = client_write.write_all(&held).await;
        let _ = client_write.write_all(&held_completion).await;
        let _ = client_write.write_all(&pending).await;
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        () = to_server => {}
        () = to_client => {}
    }
    Ok(())
}

/// What the proxy holds back on a connection to change the order of
/// answers ([`Order`]).
struct Held<'a> {
    /// BODYSTRUCTURE answers (rewritten already) not yet forwarded.
    structures: &'a mut Vec<u8>,
    /// A completion to forward after the next one.
    completion: &'a mut Vec<u8>,
    structure_tags: &'a Mutex<HashSet<String>>,
    open_tags: &'a Mutex<HashSet<String>>,
}

/// Writes every whole response at the start of `pending` to `client`,
/// rewritten where a rewrite says so; leaves a partial one.
async fn forward_responses(
    pending: &mut Vec<u8>,
    client: &mut (impl AsyncWrite + Unpin),
    shared: &Shared,
    folder: &str,
    held: Held<'_>,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    while let Some(length) = response_length(pending) {
        let response: Vec<u8> = pending.drain(..length).collect();
        let response = match rewrite(&response, folder, &shared.rewrites) {
            Some(rewritten) => {
                check_rejected(&rewritten, &shared.counts);
                rewritten
            }
            None => response,
        };
        let tag = completion_tag(&response);
        let still_open = tag.as_ref().map(|tag| {
            let mut open = held.open_tags.lock().unwrap();
            open.remove(tag);
            !open.is_empty()
        });
        match shared.order {
            Order::AsServed => {}
            Order::StructuresLast => {
                if is_structure_answer(&response) {
                    held.structures.extend_from_slice(&response);
                    continue;
                }
                // A structure FETCH's completion: its answers first.
                if tag.is_some_and(|tag| held.structure_tags.lock().unwrap().contains(&tag)) {
                    out.append(held.structures);
                }
            }
            Order::CompletionsSwapped => {
                if still_open == Some(true) && held.completion.is_empty() {
                    held.completion.extend_from_slice(&response);
                    continue;
                }
                if tag.is_some() && !held.completion.is_empty() {
                    out.extend_from_slice(&response);
                    out.append(held.completion);
                    shared.swapped.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
            }
        }
        out.extend_from_slice(&response);
    }
    client.write_all(&out).await?;
    client.flush().await
}

/// The tag of a client command line (not of a literal's data or a
/// continuation of the client's).
fn command_tag(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let (tag, rest) = text.split_once(' ')?;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '.';
    let is_tag = !tag.is_empty() && tag.chars().all(word);
    let command = rest.split(' ').next().unwrap_or("");
    let known = [
        "UID",
        "FETCH",
        "LOGIN",
        "AUTHENTICATE",
        "SELECT",
        "EXAMINE",
        "STATUS",
        "LIST",
        "CAPABILITY",
        "LOGOUT",
        "NOOP",
        "APPEND",
        "SEARCH",
        "ENABLE",
        "ID",
        "STARTTLS",
        "CLOSE",
        "STORE",
        "EXPUNGE",
        "COPY",
        "MOVE",
        "CREATE",
        "IDLE",
    ];
    (is_tag && known.iter().any(|k| command.eq_ignore_ascii_case(k))).then(|| tag.to_string())
}

/// The tag of a client command line that FETCHes BODYSTRUCTURE.
fn structure_command_tag(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let (tag, command) = text.split_once(' ')?;
    let fetch = command.starts_with("UID FETCH ") || command.starts_with("FETCH ");
    (fetch && command.contains("BODYSTRUCTURE")).then(|| tag.to_string())
}

/// An untagged FETCH answer whose first line has BODYSTRUCTURE.
fn is_structure_answer(response: &[u8]) -> bool {
    let first_line = response.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = String::from_utf8_lossy(first_line);
    first_line.starts_with("* ")
        && first_line.contains(" FETCH (")
        && first_line.contains("BODYSTRUCTURE")
}

/// The tag of a tagged completion (`tag OK|NO|BAD ...`).
fn completion_tag(response: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(response);
    let (tag, rest) = text.split_once(' ')?;
    let completes = ["OK ", "NO ", "BAD "]
        .iter()
        .any(|status| rest.starts_with(status));
    (tag != "*" && tag != "+" && completes).then(|| tag.to_string())
}

/// The length of the first whole response in `buffer`: a line, and while a
/// line ends in a literal's `{n}`, the n bytes and the next line.
fn response_length(buffer: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let end = at + buffer[at..].windows(2).position(|w| w == b"\r\n")? + 2;
        match literal_length(&buffer[at..end - 2]) {
            Some(n) if end + n <= buffer.len() => at = end + n,
            Some(_) => return None,
            None => return Some(end),
        }
    }
}

fn literal_length(line: &[u8]) -> Option<usize> {
    let inside = line.strip_suffix(b"}")?;
    let open = inside.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&inside[open + 1..]).ok()?.parse().ok()
}

/// The response rewritten, if a rewrite picks it: an untagged FETCH in
/// `folder` whose first line has the message's `UID <uid>` and the
/// rewrite's item.
fn rewrite(response: &[u8], folder: &str, rewrites: &[Rewrite]) -> Option<Vec<u8>> {
    let first_line = response.split(|&b| b == b'\n').next()?;
    let first_line = String::from_utf8_lossy(first_line);
    if !first_line.starts_with("* ") || !first_line.contains(" FETCH (") {
        return None;
    }
    let uid = fetch_uid(&first_line);
    let chosen = rewrites.iter().find(|r| {
        let message = r
            .message
            .is_none_or(|(want_folder, want_uid)| want_folder == folder && uid == Some(want_uid));
        message && first_line.contains(r.item)
    })?;
    let at = find(response, chosen.from.as_bytes())?;
    let mut rewritten = response[..at].to_vec();
    rewritten.extend_from_slice(chosen.to.as_bytes());
    rewritten.extend_from_slice(&response[at + chosen.from.len()..]);
    Some(rewritten)
}

/// The folder of an `EXAMINE` or `SELECT` command line from the client
/// (its name as sent, without quotes).
fn selected_folder(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let (_, rest) = text
        .split_once(" EXAMINE ")
        .or_else(|| text.split_once(" SELECT "))?;
    let name = rest.split("\r\n").next()?.trim();
    Some(name.trim_matches('"').to_string())
}

/// The `UID n` of a FETCH response's first line.
fn fetch_uid(line: &str) -> Option<u32> {
    let (_, rest) = line
        .split_once("(UID ")
        .or_else(|| line.split_once(" UID "))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn check_rejected(response: &[u8], counts: &Counts) {
    counts.rewritten.fetch_add(1, Ordering::SeqCst);
    match Response::parse(response) {
        Err(err) if !err.is_incomplete() => {
            counts.rejected.fetch_add(1, Ordering::SeqCst);
        }
        _ => {
            let line = response.split(|&b| b == b'\n').next().unwrap_or_default();
            counts
                .accepted
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(line).into_owned());
        }
    }
}

#[test]
fn responses_are_framed_by_their_literals() {
    let fetch = "* 1 FETCH (UID 4 BODY[] {4}\r\na\r\nb)\r\n";
    let two = format!("{fetch}* OK x\r\n");
    let two = two.as_bytes();
    assert_eq!(response_length(two), Some(fetch.len()));
    assert_eq!(response_length(&two[..fetch.len() - 3]), None);
    assert_eq!(response_length(&two[fetch.len()..]), Some(8));
    assert_eq!(fetch_uid("* 1 FETCH (UID 4 BODY[] {4}"), Some(4));
    assert_eq!(fetch_uid("* 1 FETCH (FLAGS () UID 42)"), Some(42));
    assert_eq!(
        selected_folder(b"A0007 EXAMINE \"INBOX\"\r\n").as_deref(),
        Some("INBOX")
    );
}
