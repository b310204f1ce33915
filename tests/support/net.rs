//! Blocking TCP/TLS connections for the harness's own small IMAP and SMTP
//! clients: rustls (ring) trusting only the given CA file, never our src/ code.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// How long one network read or write may take before a harness client gives up.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A client TLS config trusting exactly the certificates in `ca_file`.
pub fn tls_config(ca_file: &Path) -> Arc<ClientConfig> {
    let pem = std::fs::read(ca_file)
        .unwrap_or_else(|err| panic!("read ca_file {}: {err}", ca_file.display()));
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.expect("ca_file is valid PEM"))
            .expect("ca_file holds a usable CA certificate");
    }
    assert!(
        !roots.is_empty(),
        "ca_file {} holds no certificate",
        ca_file.display()
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A plain or TLS stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// TCP connect with timeouts on connect, read and write.
pub fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}")))?;
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Runs the TLS handshake over `tcp` at once, so that a certificate problem
/// shows up here as an error (kind InvalidData, rustls's message).
pub fn tls_handshake(mut tcp: TcpStream, host: &str, ca_file: &Path) -> io::Result<Stream> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let mut conn = ClientConnection::new(tls_config(ca_file), name)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
}

/// A buffered line-oriented connection (CRLF lines plus counted byte runs).
pub struct Conn {
    stream: Option<Stream>,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: Stream) -> Conn {
        Conn {
            stream: Some(stream),
            buf: Vec::new(),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(Stream::is_tls)
    }

    fn stream(&mut self) -> &mut Stream {
        self.stream.as_mut().expect("connection in use")
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream().read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// One line without its CRLF (or bare LF).
    pub fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            self.fill()?;
        }
    }

    /// Exactly `n` bytes.
    pub fn read_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.stream();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Upgrades a plain connection to TLS (after STARTTLS was accepted).
    pub fn upgrade_tls(&mut self, host: &str, ca_file: &Path) -> io::Result<()> {
        if !self.buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "server sent data after accepting STARTTLS (response injection)",
            ));
        }
        match self.stream.take() {
            Some(Stream::Plain(tcp)) => {
                self.stream = Some(tls_handshake(tcp, host, ca_file)?);
                Ok(())
            }
            other => {
                self.stream = other;
                Err(io::Error::other("connection is already TLS"))
            }
        }
    }
}
