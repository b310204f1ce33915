//! `MAILBRIDGE_TEST_SERVER=greenmail`: the GreenMail of
//! docker/docker-compose.yml (shared by every test, so users are unique per
//! test) instead of a Dovecot per test.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::net::connect_tcp;
use super::process;

pub const HOST: &str = "127.0.0.1";
pub const SMTP: u16 = 3025;
pub const IMAP: u16 = 3143;
pub const SMTPS: u16 = 3465;
pub const IMAPS: u16 = 3993;
pub const API: u16 = 8080;

/// The CA that signed docker/certs/greenmail.p12 (checked in; test-only key).
pub fn ca_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docker/certs/ca.pem")
}

/// Panics with how to start GreenMail unless it answers.
pub fn check_running() {
    let up = [IMAPS, SMTPS, API]
        .iter()
        .all(|&port| process::port_open(port));
    assert!(
        up,
        "MAILBRIDGE_TEST_SERVER=greenmail but GreenMail does not answer on 127.0.0.1 ports \
         {IMAPS} (IMAPS), {SMTPS} (SMTPS) and {API} (API): start it with \
         `docker compose -f docker/docker-compose.yml up -d` (and wait for it to be healthy), \
         or unset MAILBRIDGE_TEST_SERVER to use a local Dovecot and Postfix"
    );
}

/// Creates a user through GreenMail's REST API.
pub fn create_user(email: &str, login: &str, password: &str) {
    let body =
        serde_json::json!({ "email": email, "login": login, "password": password }).to_string();
    let (status, response) = http_post("/api/user", &body);
    assert!(
        status == 200,
        "GreenMail refused to create user {login}: HTTP {status}: {response}"
    );
}

fn http_post(path: &str, body: &str) -> (u16, String) {
    let mut stream = connect_tcp(HOST, API).expect("connect to GreenMail's API");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {HOST}:{API}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send to GreenMail's API");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}
