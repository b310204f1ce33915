//! IMAP's modified UTF-7 for mailbox names (RFC 3501 §5.1.3).
//!
//! Servers send non-ASCII folder names such as `Entw&APw-rfe` (Entwürfe);
//! users write them in UTF-8 in their config and expect them decoded in
//! output, while commands need the encoded form back.

use base64::alphabet::IMAP_MUTF7;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes a mailbox name; `None` if it is not valid modified UTF-7 (a
/// server that sends raw UTF-8, as some do, gets its name shown as sent).
pub fn decode(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('-')?;
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = ENGINE.decode(encoded).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            for ch in char::decode_utf16(units) {
                out.push(ch.ok()?);
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Decodes for display, falling back to the name as the server sent it.
pub fn decode_lossy(name: &str) -> String {
    decode(name).unwrap_or_else(|| name.to_string())
}

/// Encodes a UTF-8 name for use in a command.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&ENGINE.encode(bytes));
        out.push('-');
        pending.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_rfc_examples_and_localized_names() {
        assert_eq!(decode("INBOX").unwrap(), "INBOX");
        assert_eq!(decode("Entw&APw-rfe").unwrap(), "Entwürfe");
        assert_eq!(decode("&-").unwrap(), "&");
        assert_eq!(decode("Tom &- Jerry").unwrap(), "Tom & Jerry");
        // RFC 3501 §5.1.3's example.
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/台北/日本語"
        );
        assert_eq!(decode("&BCcENQRABD0EPgQyBDgEOgQ4-").unwrap(), "Черновики");
        assert_eq!(decode("&2D3eAA-").unwrap(), "😀");
    }

    #[test]
    fn invalid_input_is_none_and_lossy_keeps_it() {
        assert_eq!(decode("broken&AP"), None);
        assert_eq!(decode("bad&*-"), None);
        assert_eq!(decode_lossy("broken&AP"), "broken&AP");
        // Raw UTF-8 from a non-conforming server passes through.
        assert_eq!(decode_lossy("Entwürfe"), "Entwürfe");
    }

    #[test]
    fn encodes_and_round_trips() {
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        for name in ["Черновики", "Éléments envoyés", "😀 x", "a&b", "plain"] {
            assert_eq!(decode(&encode(name)).unwrap(), name);
        }
    }
}
