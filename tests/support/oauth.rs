//! A tiny OAuth2 token introspection endpoint (RFC 7662) on 127.0.0.1 for
//! Dovecot's `passdb { driver = oauth2 }`: it answers
//! `{"active":true,"username":"<user>"}` for tokens the harness issued, and
//! `{"active":false}` for anything else.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Introspection {
    port: u16,
    tokens: Arc<Mutex<HashMap<String, String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Introspection {
    pub fn start() -> Introspection {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind introspection endpoint");
        let port = listener.local_addr().expect("local addr").port();
        let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let tokens = Arc::clone(&tokens);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("oauth2-introspection".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Ok(stream) = stream {
                            let _ = answer(stream, &tokens);
                        }
                    }
                })
                .expect("spawn introspection thread")
        };
        Introspection {
            port,
            tokens,
            stop,
            thread: Some(thread),
        }
    }

    /// The URL Dovecot POSTs `token=...` to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/introspect", self.port)
    }

    /// Registers `token` as a valid token of `username`.
    pub fn issue(&self, token: &str, username: &str) {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.to_string(), username.to_string());
    }
}

impl Drop for Introspection {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(mut stream: TcpStream, tokens: &Mutex<HashMap<String, String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..n]);
        if let Some(pos) = find(&request, b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..header_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while request.len() < header_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&request[header_end..]).into_owned();
    // Dovecot (introspection_mode = post) sends `token=...&client_id=&...`;
    // in `get` mode the token would be in the query string.
    let token = body
        .split('&')
        .chain(head.lines().next().unwrap_or("").split(['?', '&', ' ']))
        .find_map(|pair| pair.strip_prefix("token="))
        .map(percent_decode)
        .unwrap_or_default();
    let username = tokens.lock().unwrap().get(&token).cloned();
    let json = match username {
        Some(username) => serde_json::json!({ "active": true, "username": username }),
        None => serde_json::json!({ "active": false }),
    }
    .to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )?;
    stream.flush()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
