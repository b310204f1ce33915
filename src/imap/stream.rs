//! The byte stream under async-imap: plain TCP or TLS, with an inactivity
//! timeout on every read and write.
//!
//! One enum type (rather than a generic) lets a single `Session` type serve
//! implicit TLS, STARTTLS and plain connections alike.
//!
//! The timeout lives in the stream, not around each command, so every read
//! async-imap makes — including commands later issues send through
//! [`super::ImapSession::raw`] — is bounded without each caller remembering
//! to wrap it. It measures silence, not total time: a large FETCH that keeps
//! streaming never times out, a server that stops answering does.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection to an IMAP server, TLS or not (`security: none` only).
pub struct ImapStream {
    transport: Transport,
    timeout: Option<Duration>,
    /// Armed when a read finds no data, cleared when one completes. Also
    /// cleared by any completed write: a write starts a new command, so an
    /// old timer left by a cancelled read must not cut the new one short.
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl ImapStream {
    pub(crate) fn plain(tcp: TcpStream, timeout: Option<Duration>) -> ImapStream {
        ImapStream::new(Transport::Plain(tcp), timeout)
    }

    pub(crate) fn tls(tls: TlsStream<TcpStream>, timeout: Option<Duration>) -> ImapStream {
        ImapStream::new(Transport::Tls(Box::new(tls)), timeout)
    }

    fn new(transport: Transport, timeout: Option<Duration>) -> ImapStream {
        ImapStream {
            transport,
            timeout,
            read_timer: None,
            write_timer: None,
        }
    }

    /// The inactivity limit for reads and writes; `None` waits forever.
    ///
    /// IDLE (a later issue) legitimately waits minutes for the server, so it
    /// must lift the limit for the wait and restore it afterwards.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
        self.read_timer = None;
        self.write_timer = None;
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.transport, Transport::Tls(_))
    }

    /// The TCP stream of a plain connection, for the STARTTLS upgrade.
    pub(crate) fn into_plain(self) -> Result<TcpStream, ImapStream> {
        match self.transport {
            Transport::Plain(tcp) => Ok(tcp),
            Transport::Tls(_) => Err(self),
        }
    }

    /// Negotiated protocol and cipher suite, e.g. `TLS 1.3, TLS13_AES_256_GCM_SHA384`.
    pub fn tls_summary(&self) -> Option<String> {
        let Transport::Tls(tls) = &self.transport else {
            return None;
        };
        let (_, connection) = tls.get_ref();
        let version = match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "TLS".to_string(),
        };
        Some(match connection.negotiated_cipher_suite() {
            Some(suite) => format!("{version}, {:?}", suite.suite()),
            None => version,
        })
    }
}

impl fmt::Debug for ImapStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = match &self.transport {
            Transport::Plain(tcp) => tcp.peer_addr().ok(),
            Transport::Tls(tls) => tls.get_ref().0.peer_addr().ok(),
        };
        f.debug_struct("ImapStream")
            .field("tls", &self.is_tls())
            .field("peer", &peer)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Polls `timer` (arming it first) after the I/O it guards returned Pending.
fn poll_timer<T>(
    timer: &mut Option<Pin<Box<Sleep>>>,
    timeout: Option<Duration>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<T>> {
    let Some(limit) = timeout else {
        return Poll::Pending;
    };
    let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => {
            *timer = None;
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server sent nothing for {}s", limit.as_secs()),
            )))
        }
        Poll::Pending => Poll::Pending,
    }
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = match &mut this.transport {
            Transport::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        };
        match polled {
            Poll::Ready(result) => {
                this.read_timer = None;
                Poll::Ready(result)
            }
            Poll::Pending => poll_timer(&mut this.read_timer, this.timeout, cx),
        }
    }
}

impl ImapStream {
    /// Runs one write-side poll under the write timer.
    fn poll_write_side<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(
            Pin<&mut (dyn AsyncWrite + Unpin + Send)>,
            &mut Context<'_>,
        ) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let inner: Pin<&mut (dyn AsyncWrite + Unpin + Send)> = match &mut self.transport {
            Transport::Plain(tcp) => Pin::new(tcp),
            Transport::Tls(tls) => Pin::new(tls.as_mut()),
        };
        match op(inner, cx) {
            Poll::Ready(result) => {
                self.write_timer = None;
                self.read_timer = None;
                Poll::Ready(result)
            }
            Poll::Pending => poll_timer(&mut self.write_timer, self.timeout, cx),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_side(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_write_side(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_write_side(cx, |inner, cx| inner.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair(timeout: Duration) -> (ImapStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (
            ImapStream::plain(client.unwrap(), Some(timeout)),
            server.unwrap().0,
        )
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        let (mut stream, _server) = pair(Duration::from_millis(200)).await;
        let mut buf = [0u8; 16];
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn timeout_measures_silence_not_total_time() {
        let (mut stream, mut server) = pair(Duration::from_millis(300)).await;
        let feeder = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                server.write_all(b"x").await.unwrap();
            }
            server
        });
        let mut buf = [0u8; 1];
        for _ in 0..5 {
            stream.read_exact(&mut buf).await.unwrap();
        }
        let _server = feeder.await.unwrap();
    }

    #[tokio::test]
    async fn cancelled_read_does_not_poison_the_next_command() {
        let (mut stream, mut server) = pair(Duration::from_millis(300)).await;
        let mut buf = [0u8; 4];
        // A read abandoned by its caller leaves a timer behind...
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        // ...which the next command's write clears.
        stream.write_all(b"a1 NOOP\r\n").await.unwrap();
        let mut line = [0u8; 9];
        server.read_exact(&mut line).await.unwrap();
        server.write_all(b"ok").await.unwrap();
        let n = stream.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ok");
    }

    #[tokio::test]
    async fn no_timeout_waits() {
        let (mut stream, mut server) = pair(Duration::from_millis(50)).await;
        stream.set_timeout(None);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.write_all(b"late").await.unwrap();
            server
        });
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"late");
    }
}
