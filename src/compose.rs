//! A reply as an RFC 5322 message (SPEC §Push): the bytes a draft is
//! appended as, sent as, and filed in Sent as.
//!
//! Pure: no files, no network, no clock and no randomness of its own. The
//! date and Message-ID come in with the [`Reply`], so the same reply always
//! composes to the same bytes; that makes the MIME testable by snapshot and
//! lets `push` tell an unchanged draft from an edited one by composing it
//! again with the date and id of the copy it pushed before. The MIME
//! boundary is derived from the Message-ID for the same reason.
//!
//! What mail clients need to treat the message as a threaded, editable
//! draft: `In-Reply-To` and `References` (Apple Mail, Outlook and Gmail
//! thread by them), `X-Uniform-Type-Identifier: com.apple.mail-draft` (Apple
//! Mail opens such a message in its editor rather than as received mail),
//! and a `multipart/alternative` body whose HTML part clients edit.

use std::fmt::Write as _;
use std::time::SystemTime;

use anyhow::{Context, Result};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use pulldown_cmark::{Event, Options, Parser};

/// The message as a reply: everything but the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    /// As written in the draft; see [`Reply::is_reply`].
    pub subject: String,
    /// A reply gets exactly one `Re: ` in front of its subject.
    pub is_reply: bool,
    /// The email's text, Markdown.
    pub body_markdown: String,
    /// `<id>`s, angle brackets included.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// The message replied to, quoted below the reply.
    pub quote: Option<Quote>,
    pub date: SystemTime,
    /// `<id>`, angle brackets included.
    pub message_id: String,
}

/// The message a reply quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// `On <date>, <name> wrote:`
    pub attribution: String,
    /// Its text, Markdown.
    pub markdown: String,
}

/// Which copy of the message to compose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The copy appended to Drafts: marked as an Apple Mail draft, keeping
    /// `Bcc` (mail clients keep it in drafts, or it would be lost on edit).
    Draft,
    /// What goes over SMTP: no `Bcc` header (the envelope carries those
    /// recipients), no draft marker.
    Wire,
    /// The copy filed in Sent: the sent message, with `Bcc` kept so the
    /// user can see whom they blind-copied, as mail clients do.
    SentCopy,
}

/// Marks a message as an Apple Mail draft.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UniformTypeIdentifier(String);

impl Header for UniformTypeIdentifier {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Uniform-Type-Identifier")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(UniformTypeIdentifier(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The value Apple Mail writes into drafts it saves.
pub const APPLE_MAIL_DRAFT: &str = "com.apple.mail-draft";

impl Reply {
    /// The subject as it goes out.
    pub fn final_subject(&self) -> String {
        let subject = one_line(&self.subject);
        if self.is_reply {
            reply_subject(&subject)
        } else {
            subject
        }
    }

    /// The message as lettre builds it.
    pub fn message(&self, variant: Variant) -> Result<Message> {
        let mut builder = Message::builder().date(self.date).from(self.from.clone());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        for cc in &self.cc {
            builder = builder.cc(cc.clone());
        }
        // lettre takes the envelope from the headers, then drops `Bcc`
        // unless told to keep it.
        for bcc in &self.bcc {
            builder = builder.bcc(bcc.clone());
        }
        if variant != Variant::Wire {
            builder = builder.keep_bcc();
        }
        builder = builder
            .subject(self.final_subject())
            .message_id(Some(self.message_id.clone()));
        if let Some(parent) = &self.in_reply_to {
            builder = builder.in_reply_to(parent.clone());
        }
        if !self.references.is_empty() {
            builder = builder.references(self.references.join(" "));
        }
        if variant == Variant::Draft {
            builder = builder.header(UniformTypeIdentifier(APPLE_MAIL_DRAFT.into()));
        }
        let body = MultiPart::alternative()
            .boundary(boundary_for(&self.message_id))
            .singlepart(SinglePart::plain(self.plain_text()))
            .singlepart(SinglePart::html(self.html()));
        builder
            .multipart(body)
            .context("cannot compose the message")
    }

    /// The message's bytes (CRLF line endings).
    pub fn bytes(&self, variant: Variant) -> Result<Vec<u8>> {
        Ok(self.message(variant)?.formatted())
    }

    /// The `text/plain` part: the Markdown as written (it reads well as
    /// text), then the quoted message with `> ` lines.
    pub fn plain_text(&self) -> String {
        let mut text = normalize_newlines(self.body_markdown.trim_end());
        text.push('\n');
        if let Some(quote) = &self.quote {
            let _ = write!(text, "\n{}\n", one_line(&quote.attribution));
            for line in normalize_newlines(quote.markdown.trim_end()).lines() {
                if line.is_empty() {
                    text.push_str(">\n");
                } else {
                    let _ = writeln!(text, "> {line}");
                }
            }
        }
        text
    }

    /// The `text/html` part: the Markdown rendered, then the quoted message
    /// in a `<blockquote type="cite">` (what clients collapse as history).
    pub fn html(&self) -> String {
        let mut html = String::from(
            "<!DOCTYPE html>\n<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\n</head>\n<body>\n",
        );
        html.push_str(&markdown_to_html(&self.body_markdown));
        if let Some(quote) = &self.quote {
            let _ = write!(
                html,
                "<br>\n<div>{}</div>\n<blockquote type=\"cite\" style=\"margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex\">\n{}</blockquote>\n",
                escape_html(&one_line(&quote.attribution)),
                markdown_to_html(&quote.markdown)
            );
        }
        html.push_str("</body>\n</html>\n");
        html
    }
}

/// Markdown to an HTML fragment. Raw HTML in the Markdown is shown as text,
/// never passed through: drafts come from generators and quoted mail from
/// strangers, and neither should be able to put markup into the message. A
/// single line break stays a line break, as Obsidian shows it and as people
/// write "Best,\nJason".
pub fn markdown_to_html(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::SoftBreak => Event::HardBreak,
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Header text on one line: a line break in a subject or name from a note
/// must not become a header break.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `subject` with exactly one `Re: ` in front: any run of reply prefixes
/// (`Re:`, `RE:`, `Re[2]:`, and the `AW:`/`SV:`/`Antw:` of German,
/// Scandinavian and Dutch clients) becomes one.
pub fn reply_subject(subject: &str) -> String {
    let mut rest = subject.trim();
    while let Some(after) = strip_reply_prefix(rest) {
        rest = after;
    }
    if rest.is_empty() {
        "Re:".to_string()
    } else {
        format!("Re: {rest}")
    }
}

fn strip_reply_prefix(subject: &str) -> Option<&str> {
    let word_len = subject
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(subject.len());
    let word = &subject[..word_len];
    if !["re", "aw", "sv", "antw"]
        .iter()
        .any(|p| word.eq_ignore_ascii_case(p))
    {
        return None;
    }
    let mut rest = &subject[word_len..];
    // `Re[2]:` / `Re(2):` counters.
    if let Some(inner) = rest.strip_prefix(['[', '(']) {
        let close = inner.find([']', ')'])?;
        if !inner[..close].chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        rest = &inner[close + 1..];
    }
    let rest = rest.trim_start_matches(' ').strip_prefix(':')?;
    Some(rest.trim_start())
}

/// A boundary that cannot occur in the encoded parts (`=_` never appears in
/// quoted-printable or base64 output), stable for a given Message-ID.
fn boundary_for(message_id: &str) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in message_id.bytes() {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        b = (b ^ u64::from(byte))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(5);
    }
    format!("=_mailbridge_{a:016x}{b:016x}")
}

/// `<random@domain>` on the domain of `email`: a Message-ID that no other
/// message has, from the OS random source (through the TLS provider
/// already linked for IMAP and SMTP).
pub fn new_message_id(email: &str) -> String {
    let domain = email
        .rsplit_once('@')
        .map(|(_, d)| d.trim().trim_end_matches('>'))
        .filter(|d| !d.is_empty())
        .unwrap_or("mailbridge.invalid");
    let mut random = [0u8; 16];
    if rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut random)
        .is_err()
    {
        // Never seen in practice; fall back to something unique enough.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        random[..16].copy_from_slice(&nanos.to_le_bytes());
        random[0] ^= std::process::id() as u8;
    }
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("<mailbridge.{hex}@{domain}>")
}

/// `<id>` with its angle brackets, or `None` for something that is not one
/// message id (empty, spaces inside, several ids).
pub fn normalize_message_id(id: &str) -> Option<String> {
    let id = id.trim();
    let inner = id.strip_prefix('<').unwrap_or(id);
    let inner = inner.strip_suffix('>').unwrap_or(inner);
    let valid = !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '\\'));
    valid.then(|| format!("<{inner}>"))
}

/// References as RFC 5322 §3.6.4 builds them: the parent's References, then
/// the parent. Long chains keep the root and the most recent ids, as mail
/// clients do, so the header stays a sane length.
pub fn references_for(parent_references: &[String], parent: Option<&str>) -> Vec<String> {
    const KEEP: usize = 20;
    let mut ids: Vec<String> = Vec::new();
    for id in parent_references.iter().map(String::as_str).chain(parent) {
        if let Some(id) = normalize_message_id(id) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    if ids.len() > KEEP {
        let tail = ids.split_off(ids.len() - (KEEP - 1));
        ids.truncate(1);
        ids.extend(tail);
    }
    ids
}

/// `On Sat, 13 Dec 2025 09:15:02 -0800, John Mao <john@vastdata.com> wrote:`
/// with the date in the sender's own offset, as it was written.
pub fn attribution(date_unix: Option<i64>, offset_minutes: i32, who: &str) -> String {
    let who = one_line(who);
    let who = if who.is_empty() { "someone" } else { &who };
    match date_unix {
        Some(unix) => format!("On {}, {who} wrote:", rfc2822_date(unix, offset_minutes)),
        None => format!("{who} wrote:"),
    }
}

/// An RFC 2822 date, `Sat, 13 Dec 2025 09:15:02 -0800`.
pub fn rfc2822_date(unix: i64, offset_minutes: i32) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = unix + i64::from(offset_minutes) * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let offset = offset_minutes.unsigned_abs();
    format!(
        "{}, {day} {} {year} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        offset / 60,
        offset % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn mailbox(text: &str) -> Mailbox {
        text.parse().unwrap()
    }

    /// 2026-01-06 10:00:00 UTC.
    fn fixed_date() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_693_600)
    }

    fn reply() -> Reply {
        Reply {
            from: mailbox("Jason Vallery <jason@example.com>"),
            to: vec![mailbox("John Mao <john@vastdata.com>")],
            cc: vec![mailbox("Priya Natarajan <priya@vastdata.com>")],
            bcc: vec![mailbox("archive@example.com")],
            subject: "Re: RE: Re[2]: OpenAI".into(),
            is_reply: true,
            body_markdown: "Hi John,\n\n- **Rockset**: scaling limits\n- CosmosDB <b>usage</b>\n\nBest,\nJason\n".into(),
            in_reply_to: Some("<c@x>".into()),
            references: vec!["<a@x>".into(), "<b@x>".into(), "<c@x>".into()],
            quote: Some(Quote {
                attribution: attribution(Some(1_765_646_102), -480, "John Mao <john@vastdata.com>"),
                markdown: "Could you send the questions?\n\nJohn".into(),
            }),
            date: fixed_date(),
            message_id: "<mailbridge.0001@example.com>".into(),
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn subjects_get_one_re() {
        assert_eq!(reply_subject("OpenAI"), "Re: OpenAI");
        assert_eq!(reply_subject("Re: OpenAI"), "Re: OpenAI");
        assert_eq!(reply_subject("RE: Re: re:OpenAI"), "Re: OpenAI");
        assert_eq!(reply_subject("Re[3]: AW: SV : Antw: x"), "Re: x");
        assert_eq!(reply_subject("Rebooting: x"), "Re: Rebooting: x");
        assert_eq!(reply_subject("Regarding x"), "Re: Regarding x");
        assert_eq!(reply_subject("  "), "Re:");
    }

    #[test]
    fn variants_differ_only_where_they_should() {
        let reply = reply();
        let draft = text(reply.bytes(Variant::Draft).unwrap());
        let wire = text(reply.bytes(Variant::Wire).unwrap());
        let sent = text(reply.bytes(Variant::SentCopy).unwrap());
        assert!(draft.contains("X-Uniform-Type-Identifier: com.apple.mail-draft\r\n"));
        assert!(draft.contains("Bcc: archive@example.com\r\n"));
        assert!(!wire.contains("X-Uniform-Type-Identifier"));
        assert!(!wire.contains("Bcc:"));
        assert!(!sent.contains("X-Uniform-Type-Identifier"));
        assert!(sent.contains("Bcc: archive@example.com\r\n"));
        let envelope = reply.message(Variant::Wire).unwrap().envelope().clone();
        let rcpts: Vec<String> = envelope.to().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            rcpts,
            [
                "john@vastdata.com",
                "priya@vastdata.com",
                "archive@example.com"
            ]
        );
    }

    #[test]
    fn composing_is_deterministic() {
        let reply = reply();
        assert_eq!(
            reply.bytes(Variant::Draft).unwrap(),
            reply.bytes(Variant::Draft).unwrap()
        );
    }

    #[test]
    fn threaded_reply_snapshot() {
        insta::assert_snapshot!(text(reply().bytes(Variant::Draft).unwrap()));
    }

    #[test]
    fn html_escapes_raw_markup_and_keeps_line_breaks() {
        let html = markdown_to_html("Best,\nJason <script>x</script>");
        assert!(html.contains("Best,<br />\nJason &lt;script&gt;"), "{html}");
    }

    #[test]
    fn plain_text_quotes_with_markers() {
        let plain = reply().plain_text();
        assert!(plain.ends_with(
            "\nOn Sat, 13 Dec 2025 09:15:02 -0800, John Mao <john@vastdata.com> wrote:\n> Could you send the questions?\n>\n> John\n"
        ), "{plain}");
    }

    #[test]
    fn header_text_stays_on_one_line() {
        let mut reply = reply();
        reply.subject = "Hello\r\nBcc: evil@example.com".into();
        let draft = text(reply.bytes(Variant::Wire).unwrap());
        assert!(
            draft.contains("Subject: Re: Hello Bcc: evil@example.com\r\n"),
            "{draft}"
        );
    }

    #[test]
    fn message_ids() {
        let id = new_message_id("Jason <jason@example.com>");
        assert!(
            id.starts_with("<mailbridge.") && id.ends_with("@example.com>"),
            "{id}"
        );
        assert_ne!(id, new_message_id("jason@example.com"));
        assert_eq!(normalize_message_id("a@b").as_deref(), Some("<a@b>"));
        assert_eq!(normalize_message_id(" <a@b> ").as_deref(), Some("<a@b>"));
        assert_eq!(normalize_message_id("<a@b> <c@d>"), None);
        assert_eq!(normalize_message_id(""), None);
    }

    #[test]
    fn long_reference_chains_keep_root_and_recent() {
        let refs: Vec<String> = (0..30).map(|i| format!("<{i}@x>")).collect();
        let out = references_for(&refs, Some("<30@x>"));
        assert_eq!(out.len(), 20);
        assert_eq!(out[0], "<0@x>");
        assert_eq!(out[1], "<12@x>");
        assert_eq!(out.last().unwrap(), "<30@x>");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc2822_date(0, 0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc2822_date(1_765_646_102, -480),
            "Sat, 13 Dec 2025 09:15:02 -0800"
        );
        assert_eq!(
            rfc2822_date(951_782_400, 330),
            "Tue, 29 Feb 2000 05:30:00 +0530"
        );
    }
}
