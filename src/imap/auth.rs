//! SASL responses for AUTHENTICATE: XOAUTH2, and PLAIN for passwords LOGIN
//! cannot carry.
//!
//! async-imap base64-encodes what these return and sends it as its own line.
//! The bytes hold the secret, so nothing here implements Debug over them or
//! logs them.

use crate::credentials::Secret;

/// The XOAUTH2 initial client response, before base64
/// (`user=<u>^Aauth=Bearer <token>^A^A`, Google's and Microsoft's format).
pub fn xoauth2_response(username: &str, token: &Secret) -> Vec<u8> {
    format!("user={username}\x01auth=Bearer {}\x01\x01", token.expose()).into_bytes()
}

/// The SASL PLAIN response (RFC 4616): `\0user\0password`, before base64.
pub fn plain_response(username: &str, password: &Secret) -> Vec<u8> {
    format!("\0{username}\0{}", password.expose()).into_bytes()
}

/// Answers the first challenge with the prepared response and any later
/// one with an empty line.
///
/// The empty line matters for XOAUTH2: on failure the server sends a
/// base64 JSON error as a second challenge and waits for an empty response
/// before its tagged NO. That JSON (status, scope) is kept for the error.
pub(crate) struct OneShot {
    response: Option<Vec<u8>>,
    pub server_error: Option<String>,
}

impl OneShot {
    pub fn new(response: Vec<u8>) -> OneShot {
        OneShot {
            response: Some(response),
            server_error: None,
        }
    }
}

impl async_imap::Authenticator for &mut OneShot {
    type Response = Vec<u8>;

    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        match self.response.take() {
            Some(response) => response,
            None => {
                if !challenge.is_empty() {
                    self.server_error = Some(String::from_utf8_lossy(challenge).into_owned());
                }
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::Authenticator as _;
    use base64::Engine as _;

    #[test]
    fn xoauth2_encoding_matches_googles_example() {
        // developers.google.com/gmail/imap/xoauth2-protocol gives this pair.
        let raw = xoauth2_response(
            "someuser@example.com",
            &Secret::new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
        );
        assert_eq!(
            raw,
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&raw),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn plain_encoding() {
        assert_eq!(
            plain_response("tim", &Secret::new("tanstaaftanstaaf")),
            b"\0tim\0tanstaaftanstaaf"
        );
    }

    #[test]
    fn one_shot_answers_once_then_keeps_the_error() {
        let mut auth = OneShot::new(b"first".to_vec());
        let mut handle = &mut auth;
        assert_eq!(handle.process(b""), b"first");
        assert_eq!(handle.process(br#"{"status":"401"}"#), b"");
        assert_eq!(auth.server_error.as_deref(), Some(r#"{"status":"401"}"#));
    }
}
