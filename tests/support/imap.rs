//! A minimal blocking IMAP client of the harness's own, independent of
//! src/imap.rs: enough to seed mailboxes (APPEND) and to check what the
//! bridge did (LIST, SELECT, FETCH, SEARCH) without trusting the code under test.

use std::io;
use std::path::Path;

use base64::Engine as _;

use super::net::{connect_tcp, tls_handshake, Conn, Stream};

/// One untagged response: its text (literal contents left out, `{N}` markers
/// kept) and the literals it carried, in order.
#[derive(Clone, Debug)]
pub struct Untagged {
    pub line: String,
    pub literals: Vec<Vec<u8>>,
}

/// The complete answer to one command.
#[derive(Clone, Debug)]
pub struct ImapResponse {
    pub untagged: Vec<Untagged>,
    /// `OK`, `NO` or `BAD`.
    pub status: String,
    /// The tagged line after the status, e.g. `[APPENDUID 1 5] Append completed.`
    pub text: String,
}

impl ImapResponse {
    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }

    /// Panics with the server's answer unless the command succeeded.
    pub fn expect_ok(self, what: &str) -> ImapResponse {
        assert!(
            self.is_ok(),
            "IMAP {what} failed: {} {}",
            self.status,
            self.text
        );
        self
    }

    /// Untagged lines as text (literals left out).
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.untagged.iter().map(|u| u.line.as_str())
    }
}

/// A mailbox as listed by LIST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// Attributes such as `\HasNoChildren`, `\Drafts`.
    pub attributes: Vec<String>,
    pub delimiter: Option<String>,
    pub name: String,
}

impl ListEntry {
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }
}

/// One fetched message.
#[derive(Clone, Debug)]
pub struct Message {
    pub uid: u32,
    pub flags: Vec<String>,
    /// The raw RFC 5322 message (BODY.PEEK[]).
    pub raw: Vec<u8>,
}

impl Message {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }

    /// The first header field `name` (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':') {
                if key.eq_ignore_ascii_case(name) {
                    value = Some(rest.trim().to_string());
                }
            }
        }
        value
    }
}

/// A blocking IMAP connection.
pub struct RawImap {
    conn: Conn,
    next_tag: u32,
    greeting: String,
}

impl RawImap {
    /// Implicit TLS (IMAPS), trusting `ca_file` only.
    pub fn connect_tls(host: &str, port: u16, ca_file: &Path) -> io::Result<RawImap> {
        let stream = tls_handshake(connect_tcp(host, port)?, host, ca_file)?;
        RawImap::start(Conn::new(stream))
    }

    /// Plain TCP (call [`RawImap::starttls`] to upgrade).
    pub fn connect_plain(host: &str, port: u16) -> io::Result<RawImap> {
        RawImap::start(Conn::new(Stream::Plain(connect_tcp(host, port)?)))
    }

    fn start(mut conn: Conn) -> io::Result<RawImap> {
        let greeting = String::from_utf8_lossy(&conn.read_line()?).into_owned();
        if !greeting.starts_with("* OK") && !greeting.starts_with("* PREAUTH") {
            return Err(io::Error::other(format!("unexpected greeting: {greeting}")));
        }
        Ok(RawImap {
            conn,
            next_tag: 1,
            greeting,
        })
    }

    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// STARTTLS, then the TLS handshake trusting `ca_file`.
    pub fn starttls(&mut self, host: &str, ca_file: &Path) -> io::Result<()> {
        let response = self.command("STARTTLS")?;
        if !response.is_ok() {
            return Err(io::Error::other(format!(
                "STARTTLS refused: {} {}",
                response.status, response.text
            )));
        }
        self.conn.upgrade_tls(host, ca_file)
    }

    fn tag(&mut self) -> String {
        let tag = format!("h{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// Sends one command line (no literals) and reads its complete response.
    /// An unexpected continuation request is answered with an empty line
    /// (which is how a failed SASL exchange is acknowledged).
    pub fn command(&mut self, command: &str) -> io::Result<ImapResponse> {
        let tag = self.tag();
        self.conn
            .write_all(format!("{tag} {command}\r\n").as_bytes())?;
        self.read_response(&tag, None)
    }

    fn read_response(&mut self, tag: &str, mut literal: Option<&[u8]>) -> io::Result<ImapResponse> {
        let mut untagged = Vec::new();
        loop {
            let first = self.conn.read_line()?;
            if first.starts_with(b"+") {
                match literal.take() {
                    Some(bytes) => {
                        let mut data = bytes.to_vec();
                        data.extend_from_slice(b"\r\n");
                        self.conn.write_all(&data)?;
                    }
                    None => self.conn.write_all(b"\r\n")?,
                }
                continue;
            }
            let mut line = String::new();
            let mut literals = Vec::new();
            let mut piece = first;
            loop {
                let text = String::from_utf8_lossy(&piece).into_owned();
                let size = literal_size(&text);
                line.push_str(&text);
                match size {
                    Some(n) => {
                        literals.push(self.conn.read_bytes(n)?);
                        piece = self.conn.read_line()?;
                    }
                    None => break,
                }
            }
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
                return Ok(ImapResponse {
                    untagged,
                    status: status.to_ascii_uppercase(),
                    text: text.to_string(),
                });
            }
            untagged.push(Untagged { line, literals });
        }
    }

    pub fn capabilities(&mut self) -> io::Result<Vec<String>> {
        let response = self.command("CAPABILITY")?.expect_ok("CAPABILITY");
        Ok(response
            .lines()
            .filter_map(|l| l.strip_prefix("* CAPABILITY "))
            .flat_map(|caps| caps.split_whitespace().map(str::to_string))
            .collect())
    }

    /// LOGIN; returns the response (check `is_ok()`).
    pub fn login(&mut self, username: &str, password: &str) -> io::Result<ImapResponse> {
        self.command(&format!("LOGIN {} {}", quote(username), quote(password)))
    }

    /// AUTHENTICATE XOAUTH2 with an initial response (SASL-IR).
    pub fn authenticate_xoauth2(
        &mut self,
        username: &str,
        token: &str,
    ) -> io::Result<ImapResponse> {
        let ir = base64::engine::general_purpose::STANDARD
            .encode(format!("user={username}\x01auth=Bearer {token}\x01\x01"));
        self.command(&format!("AUTHENTICATE XOAUTH2 {ir}"))
    }

    /// AUTHENTICATE OAUTHBEARER (RFC 7628) with an initial response.
    pub fn authenticate_oauthbearer(
        &mut self,
        username: &str,
        token: &str,
    ) -> io::Result<ImapResponse> {
        let ir = base64::engine::general_purpose::STANDARD
            .encode(format!("n,a={username},\x01auth=Bearer {token}\x01\x01"));
        self.command(&format!("AUTHENTICATE OAUTHBEARER {ir}"))
    }

    /// LIST "" "*", parsed.
    pub fn list(&mut self) -> io::Result<Vec<ListEntry>> {
        let response = self.command("LIST \"\" \"*\"")?.expect_ok("LIST");
        Ok(response
            .untagged
            .iter()
            .filter_map(|u| parse_list(&u.line, &u.literals))
            .collect())
    }

    pub fn create(&mut self, folder: &str) -> io::Result<ImapResponse> {
        self.command(&format!("CREATE {}", quote(folder)))
    }

    /// SELECT; returns the response (EXISTS, UIDVALIDITY... among untagged lines).
    pub fn select(&mut self, folder: &str) -> io::Result<ImapResponse> {
        self.command(&format!("SELECT {}", quote(folder)))
    }

    /// APPEND with flags such as `\Seen \Draft` (may be empty) and an optional
    /// INTERNALDATE such as `01-Jan-2025 10:00:00 +0000`.
    pub fn append(
        &mut self,
        folder: &str,
        flags: &str,
        internal_date: Option<&str>,
        message: &[u8],
    ) -> io::Result<ImapResponse> {
        let tag = self.tag();
        let mut command = format!("{tag} APPEND {}", quote(folder));
        if !flags.trim().is_empty() {
            command.push_str(&format!(" ({})", flags.trim()));
        }
        if let Some(date) = internal_date {
            command.push_str(&format!(" {}", quote(date)));
        }
        command.push_str(&format!(" {{{}}}\r\n", message.len()));
        self.conn.write_all(command.as_bytes())?;
        self.read_response(&tag, Some(message))
    }

    /// UID SEARCH in the selected folder.
    pub fn uid_search(&mut self, criteria: &str) -> io::Result<Vec<u32>> {
        let response = self
            .command(&format!("UID SEARCH {criteria}"))?
            .expect_ok("UID SEARCH");
        Ok(response
            .lines()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|rest| rest.split_whitespace().filter_map(|n| n.parse().ok()))
            .collect())
    }

    /// Every message of `folder` (selected read-only), with UID, flags and
    /// raw content, in UID order.
    /// Every message of `folder`. An EXAMINE that Dovecot refuses with
    /// `[ALREADYEXISTS]` is an `Interrupted` error: it creates a missing
    /// INBOX on EXAMINE, and loses that race when a delivery creates it at
    /// the same moment; the caller asks again.
    pub fn messages(&mut self, folder: &str) -> io::Result<Vec<Message>> {
        let examined = self.command(&format!("EXAMINE {}", quote(folder)))?;
        if !examined.is_ok() && examined.text.contains("[ALREADYEXISTS]") {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                format!("EXAMINE {folder}: {} {}", examined.status, examined.text),
            ));
        }
        examined.expect_ok(&format!("EXAMINE {folder}"));
        let response = self.command("UID FETCH 1:* (UID FLAGS BODY.PEEK[])")?;
        let mut messages: Vec<Message> = response
            .untagged
            .iter()
            .filter(|u| u.line.contains(" FETCH "))
            .filter_map(|u| {
                Some(Message {
                    uid: number_after(&u.line, "UID ")?,
                    flags: parenthesized_after(&u.line, "FLAGS (")
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                    raw: u.literals.first().cloned().unwrap_or_default(),
                })
            })
            .collect();
        messages.sort_by_key(|m| m.uid);
        Ok(messages)
    }

    pub fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }
}

/// An IMAP quoted string.
pub fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `{N}` or `{N+}` at the end of a line: the size of the literal that follows.
fn literal_size(line: &str) -> Option<usize> {
    let open = line.rfind('{')?;
    let inner = line[open + 1..].strip_suffix('}')?;
    inner.trim_end_matches('+').parse().ok()
}

fn number_after(line: &str, key: &str) -> Option<u32> {
    let start = line.find(key)? + key.len();
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn parenthesized_after<'a>(line: &'a str, key: &str) -> &'a str {
    line.find(key)
        .map(|start| {
            let rest = &line[start + key.len()..];
            &rest[..rest.find(')').unwrap_or(rest.len())]
        })
        .unwrap_or("")
}

/// `* LIST (\HasNoChildren \Drafts) "/" "Drafts"` → entry.
fn parse_list(line: &str, literals: &[Vec<u8>]) -> Option<ListEntry> {
    let rest = line.strip_prefix("* LIST (")?;
    let close = rest.find(')')?;
    let attributes = rest[..close]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let rest = rest[close + 1..].trim_start();
    let (delimiter, rest) = if let Some(after) = rest.strip_prefix("NIL") {
        (None, after)
    } else {
        let (value, after) = read_quoted(rest)?;
        (Some(value), after)
    };
    let rest = rest.trim();
    let name = if rest.starts_with('"') {
        read_quoted(rest)?.0
    } else if literal_size(rest).is_some() {
        String::from_utf8_lossy(literals.first()?).into_owned()
    } else {
        rest.to_string()
    };
    Some(ListEntry {
        attributes,
        delimiter,
        name,
    })
}

fn read_quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?.1),
            '"' => return Some((value, &body[i + 1..])),
            c => value.push(c),
        }
    }
    None
}
