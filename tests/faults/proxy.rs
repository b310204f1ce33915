//! A fault-injecting TCP proxy for tests, on 127.0.0.1 and a random port.
//!
//! It forwards bytes, TLS included, without looking into them: the client's
//! TLS session is with the real server behind it, so certificates verify as
//! usual (the server's certificate is for 127.0.0.1). What each connection
//! suffers is decided by a plan, called with the connection's index (0 for
//! the first): pass through, cut both sides after the server has sent a
//! given number of bytes, or trickle the server's bytes slowly.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What happens to one proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways untouched.
    Pass,
    /// Forward until the server has sent this many bytes to the client
    /// (those included), then cut the connection on both sides, as a dropped
    /// network link does.
    CutAfter(u64),
    /// Forward the server's bytes in pieces of at most `chunk` bytes, each
    /// held back for `pause` first: a slow link.
    Slow { chunk: usize, pause: Duration },
}

type Plan = dyn Fn(usize) -> Fault + Send + Sync;

struct Shared {
    upstream: SocketAddr,
    plan: Box<Plan>,
    stop: AtomicBool,
    connections: AtomicUsize,
    cuts: AtomicUsize,
    /// Server→client bytes forwarded, per connection (by index).
    server_bytes: Mutex<Vec<Arc<AtomicU64>>>,
    /// Both sockets of every connection, to close them all on drop.
    sockets: Mutex<Vec<TcpStream>>,
}

/// The proxy; it stops accepting and closes every connection on drop.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy to `127.0.0.1:upstream_port`; `plan(i)` is the fault of the
    /// i-th connection accepted.
    pub fn start(
        upstream_port: u16,
        plan: impl Fn(usize) -> Fault + Send + Sync + 'static,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            plan: Box::new(plan),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            server_bytes: Mutex::new(Vec::new()),
            sockets: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn the proxy thread");
        FaultProxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Server→client bytes forwarded on each connection so far.
    pub fn server_bytes(&self) -> Vec<u64> {
        self.shared
            .server_bytes
            .lock()
            .unwrap()
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for socket in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let index = shared.connections.fetch_add(1, Ordering::SeqCst);
        let fault = (shared.plan)(index);
        let counter = Arc::new(AtomicU64::new(0));
        shared
            .server_bytes
            .lock()
            .unwrap()
            .push(Arc::clone(&counter));
        let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))
        else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        {
            let mut sockets = shared.sockets.lock().unwrap();
            for socket in [&client, &server] {
                if let Ok(clone) = socket.try_clone() {
                    sockets.push(clone);
                }
            }
        }
        let (Ok(client_reader), Ok(server_writer)) = (client.try_clone(), server.try_clone())
        else {
            continue;
        };
        // Client → server: untouched.
        std::thread::spawn(move || {
            let _ = copy(client_reader, server_writer);
        });
        // Server → client: where the faults happen.
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let cut = server_to_client(&server, &client, fault, &counter);
            if cut {
                shared.cuts.fetch_add(1, Ordering::SeqCst);
            }
            let _ = server.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
        });
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) -> std::io::Result<()> {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buffer)?;
        if n == 0 {
            let _ = to.shutdown(Shutdown::Write);
            return Ok(());
        }
        to.write_all(&buffer[..n])?;
    }
}

/// Forwards the server's bytes under `fault`; true when it cut the connection.
fn server_to_client(
    server: &TcpStream,
    client: &TcpStream,
    fault: Fault,
    counter: &AtomicU64,
) -> bool {
    let (mut server, mut client) = (server, client);
    let chunk = match fault {
        Fault::Slow { chunk, .. } => chunk.max(1),
        _ => 16 * 1024,
    };
    let mut buffer = vec![0u8; chunk];
    loop {
        let n = match server.read(&mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let sent = counter.load(Ordering::SeqCst);
        let mut forward = n;
        let mut cut = false;
        match fault {
            Fault::Pass => {}
            Fault::CutAfter(limit) => {
                if sent + n as u64 >= limit {
                    forward = limit.saturating_sub(sent) as usize;
                    cut = true;
                }
            }
            Fault::Slow { pause, .. } => std::thread::sleep(pause),
        }
        if client.write_all(&buffer[..forward]).is_err() {
            return false;
        }
        counter.fetch_add(forward as u64, Ordering::SeqCst);
        if cut {
            return true;
        }
    }
}
