//! The benchmark's corpus generator (`bench/corpus.rs`): deterministic,
//! parseable in every charset it claims, and with the threading edge cases
//! it promises. No server needed.

#[path = "../bench/corpus.rs"]
mod corpus;

use std::collections::{HashMap, HashSet};

use corpus::{Corpus, Folder, Options};
use mail_parser::MimeHeaders;

fn generate(n: usize) -> Vec<corpus::Message> {
    Corpus::new(Options::new(n, "Jason Vallery", "jason@example.test")).collect()
}

/// Without attachments: the same threads, much faster in a debug build.
fn generate_text_only(n: usize) -> Vec<corpus::Message> {
    let mut options = Options::new(n, "Jason Vallery", "jason@example.test");
    options.attachment_rate = 0.0;
    Corpus::new(options).collect()
}

#[test]
fn same_seed_same_bytes_and_a_smaller_corpus_is_a_prefix() {
    let a = generate(400);
    let b = generate(400);
    let c = generate(250);
    assert_eq!(a.len(), 400);
    assert_eq!(c.len(), 250);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.bytes, y.bytes);
        assert_eq!(x.flags, y.flags);
    }
    for (x, y) in a.iter().zip(&c) {
        assert_eq!(x.bytes, y.bytes);
    }
    let mut other = Options::new(400, "Jason Vallery", "jason@example.test");
    other.seed = 2;
    let d: Vec<_> = Corpus::new(other).collect();
    assert_ne!(a[0].bytes, d[0].bytes, "another seed, another corpus");
}

#[test]
fn every_message_parses_and_decodes_cleanly() {
    let messages = generate(1000);
    let mut stats = corpus::Stats::default();
    for (i, m) in messages.iter().enumerate() {
        stats.add(m);
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.bytes)
            .unwrap_or_else(|| panic!("message {i} does not parse"));
        assert_eq!(parsed.subject().unwrap_or(""), m.subject, "subject of {i}");
        assert_eq!(
            parsed.message_id().map(|id| format!("<{id}>")),
            m.message_id,
            "Message-ID of {i}"
        );
        let text = parsed
            .body_text(0)
            .or_else(|| parsed.body_html(0))
            .unwrap_or_else(|| panic!("message {i} has no text"));
        assert!(!text.trim().is_empty(), "message {i} has an empty body");
        assert!(
            !text.contains('\u{FFFD}'),
            "message {i} ({} {}) decodes with replacement characters:\n{text}",
            m.charset,
            m.encoding
        );
        if let Some((name, size)) = &m.attachment {
            let part = parsed
                .attachments()
                .find(|a| a.attachment_name() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("message {i}: no attachment named {name:?}"));
            assert_eq!(part.contents().len(), *size, "attachment size of {i}");
        }
        // Maildir stores LF; the file name carries the exact size.
        assert!(!m.bytes.contains(&b'\r'));
        assert!(
            corpus::maildir_file_name(i as u64, m).contains(&format!(",S={}:2,", m.bytes.len()))
        );
    }
    for charset in [
        "utf-8",
        "us-ascii",
        "iso-8859-1",
        "windows-1252",
        "iso-2022-jp",
        "shift_jis",
        "koi8-r",
    ] {
        assert!(
            stats.charsets.contains_key(charset),
            "no {charset}: {stats:?}"
        );
    }
    for encoding in ["7bit", "8bit", "quoted-printable", "base64"] {
        assert!(stats.encodings.contains_key(encoding), "no {encoding}");
    }
    for structure in ["text/plain", "text/html", "multipart/alternative"] {
        assert!(stats.structures.contains_key(structure), "no {structure}");
    }
    let rate = stats.with_attachment as f64 / stats.messages as f64;
    assert!((0.03..0.08).contains(&rate), "attachment rate {rate}");
}

#[test]
fn threads_have_the_promised_edge_cases() {
    let messages = generate_text_only(3000);
    let by_id: HashMap<&str, &corpus::Message> = messages
        .iter()
        .filter_map(|m| Some((m.message_id.as_deref()?, m)))
        .collect();
    let mut in_both = 0;
    let mut missing_root_threads = HashSet::new();
    for m in &messages {
        if m.from_user && !m.in_both_folders {
            assert_eq!(m.folder, Folder::Sent, "the user's own mail is in Sent");
        }
        if m.in_both_folders {
            in_both += 1;
            let id = m.message_id.as_deref().expect("a copy has a Message-ID");
            let folders: HashSet<Folder> = messages
                .iter()
                .filter(|o| o.message_id.as_deref() == Some(id))
                .map(|o| o.folder)
                .collect();
            assert_eq!(folders.len(), 2, "{id} should be in INBOX and Sent");
        }
        if let Some(parent) = &m.in_reply_to {
            match by_id.get(parent.as_str()) {
                Some(p) => assert_eq!(p.thread, m.thread, "a reply is in its parent's thread"),
                None => {
                    assert!(m.root_missing, "{parent} is missing but not marked");
                    missing_root_threads.insert(m.thread);
                }
            }
        }
    }
    assert!(in_both > 10, "copies in both folders: {in_both}");
    assert!(
        missing_root_threads.len() > 10,
        "threads without root: {}",
        missing_root_threads.len()
    );
    assert!(
        messages.iter().any(|m| m.message_id.is_none()),
        "some mail has no Message-ID"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.message_id.is_none() && m.in_reply_to.is_some()),
        "some reply has no Message-ID"
    );
    let sent = messages.iter().filter(|m| m.folder == Folder::Sent).count();
    assert!(
        sent * 5 > messages.len(),
        "a fair share of the mail is the user's: {sent}"
    );
    let longest = messages.iter().fold(HashMap::new(), |mut acc, m| {
        *acc.entry(m.thread).or_insert(0usize) += 1;
        acc
    });
    assert!(longest.values().any(|&n| n >= 8), "some long threads");
}
