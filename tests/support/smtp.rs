//! A minimal blocking SMTP submission client of the harness's own (EHLO,
//! STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA), for seeding mail through the real
//! delivery path without the code under test.

use std::io;
use std::path::Path;

use base64::Engine as _;

use super::net::{connect_tcp, tls_handshake, Conn, Stream};

/// How the client secures the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (port 465 style).
    Tls,
    /// Plain, then STARTTLS before AUTH.
    Starttls,
    /// Never encrypted (only where the server allows it).
    Plain,
}

/// A reply: code and its text lines.
#[derive(Clone, Debug)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join(" | ")
    }
}

/// Submits `message` from `from` to `to` over the given connection; AUTH PLAIN
/// when `auth` is given. Errors carry the server's reply.
#[allow(clippy::too_many_arguments)]
pub fn submit(
    host: &str,
    port: u16,
    security: SmtpSecurity,
    ca_file: &Path,
    auth: Option<(&str, &str)>,
    from: &str,
    to: &[&str],
    message: &[u8],
) -> io::Result<()> {
    let tcp = connect_tcp(host, port)?;
    let stream = match security {
        SmtpSecurity::Tls => tls_handshake(tcp, host, ca_file)?,
        SmtpSecurity::Starttls | SmtpSecurity::Plain => Stream::Plain(tcp),
    };
    let mut conn = Conn::new(stream);
    expect(read_reply(&mut conn)?, 220, "greeting")?;
    let mut ehlo = command(&mut conn, "EHLO harness.localhost")?;
    expect(ehlo.clone(), 250, "EHLO")?;
    if security == SmtpSecurity::Starttls {
        expect(command(&mut conn, "STARTTLS")?, 220, "STARTTLS")?;
        conn.upgrade_tls(host, ca_file)?;
        ehlo = command(&mut conn, "EHLO harness.localhost")?;
        expect(ehlo.clone(), 250, "EHLO after STARTTLS")?;
    }
    if let Some((username, password)) = auth {
        if !ehlo
            .lines
            .iter()
            .any(|l| l.to_ascii_uppercase().starts_with("AUTH"))
        {
            return Err(io::Error::other(format!(
                "server offers no AUTH: {}",
                ehlo.text()
            )));
        }
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{username}\0{password}"));
        expect(
            command(&mut conn, &format!("AUTH PLAIN {token}"))?,
            235,
            "AUTH",
        )?;
    }
    expect(
        command(&mut conn, &format!("MAIL FROM:<{from}>"))?,
        250,
        "MAIL FROM",
    )?;
    for rcpt in to {
        let reply = command(&mut conn, &format!("RCPT TO:<{rcpt}>"))?;
        if !(250..=252).contains(&reply.code) {
            return Err(io::Error::other(format!(
                "RCPT TO:<{rcpt}> refused: {} {}",
                reply.code,
                reply.text()
            )));
        }
    }
    expect(command(&mut conn, "DATA")?, 354, "DATA")?;
    conn.write_all(&dot_stuff(message))?;
    expect(read_reply(&mut conn)?, 250, "end of DATA")?;
    let _ = command(&mut conn, "QUIT");
    Ok(())
}

fn command(conn: &mut Conn, line: &str) -> io::Result<Reply> {
    conn.write_all(format!("{line}\r\n").as_bytes())?;
    read_reply(conn)
}

fn read_reply(conn: &mut Conn) -> io::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let line = String::from_utf8_lossy(&conn.read_line()?).into_owned();
        if line.len() < 3 {
            return Err(io::Error::other(format!("bad SMTP reply line: {line}")));
        }
        let code: u16 = line[..3]
            .parse()
            .map_err(|_| io::Error::other(format!("bad SMTP reply line: {line}")))?;
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_string());
        if !more {
            return Ok(Reply { code, lines });
        }
    }
}

fn expect(reply: Reply, code: u16, step: &str) -> io::Result<Reply> {
    if reply.code == code {
        Ok(reply)
    } else {
        Err(io::Error::other(format!(
            "SMTP {step}: expected {code}, got {} {}",
            reply.code,
            reply.text()
        )))
    }
}

/// CRLF line endings, leading dots doubled, terminated by `.`.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
    let mut out = Vec::with_capacity(message.len() + 16);
    for line in text.split('\n') {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if text.ends_with('\n') {
        // split() produced a trailing empty line; drop its CRLF.
        out.truncate(out.len() - 2);
    }
    out.extend_from_slice(b".\r\n");
    out
}
