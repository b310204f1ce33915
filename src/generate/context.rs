//! What a draft generator is given: the thread, its analysis and the reply's headers,
//! as one serializable value. The note template renders it, the `command` generator
//! reads it as JSON on stdin, the `openai` prompt template renders it too, so all
//! three see exactly the same facts (README, "Draft templates", documents the fields).

use std::sync::Arc;

use serde::Serialize;

use crate::analyze::{Analysis, Commitment, Question};
use crate::compose;
use crate::config::Account;
use crate::message::{Mailbox, ParsedMessage};
use crate::notes::{self, NoteDate};

/// Bumped when a field is removed or changes meaning; fields are only ever added.
pub const SCHEMA_VERSION: u32 = 1;

/// One thread to write a draft for.
#[derive(Debug, Clone)]
pub struct DraftInput<'a> {
    pub account: &'a Account,
    pub thread_id: String,
    /// The thread's subject as its source note has it.
    pub subject: String,
    /// In date order, oldest first.
    pub messages: Vec<ParsedMessage>,
    pub analysis: Analysis,
    /// The source note, absolute: the draft's `source_file`.
    pub source_file: String,
    /// The source note's path inside the vault without `.md`: the wikilink target.
    pub source_link: String,
    /// The user's own addresses, lowercase: never a recipient of the reply.
    pub user_addresses: Vec<String>,
    /// `created`, and what "now" means for the draft.
    pub now_unix: i64,
}

/// The whole context. Serialized as is into templates and to the command's stdin.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub version: u32,
    pub account: AccountView,
    /// Shared, so a template gets it without a copy and serializes the messages
    /// only if it reads them (see `render.rs`).
    #[serde(serialize_with = "serialize_arc")]
    pub thread: Arc<ThreadView>,
    pub analysis: Analysis,
    /// The open questions, each with whether to name its asker in the draft.
    pub questions: Vec<QuestionView>,
    /// Promises the user made: the follow-ups the reply mentions.
    pub user_commitments: Vec<CommitmentView>,
    /// Promises of the other side.
    pub their_commitments: Vec<CommitmentView>,
    pub draft: DraftView,
    /// Greeting, sign-off and the fixed sentences of the reply in the thread's language.
    pub phrases: Phrases,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub first_name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadView {
    pub thread_id: String,
    pub subject: String,
    pub participants: Vec<AddressView>,
    pub messages: Vec<MessageView>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AddressView {
    pub name: Option<String>,
    pub address: String,
    /// `Name <address>`, quoted where RFC 5322 needs it.
    pub display: String,
    pub first_name: Option<String>,
    pub is_user: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub message_id: Option<String>,
    pub from: Option<AddressView>,
    pub to: Vec<AddressView>,
    pub cc: Vec<AddressView>,
    pub reply_to: Vec<AddressView>,
    /// RFC 3339 in the sender's offset.
    pub date: Option<String>,
    pub subject: String,
    /// What the sender wrote in this message (quoted history and signature cut).
    pub body: String,
    pub quoted: Option<String>,
    pub signature: Option<String>,
    pub attachments: Vec<String>,
    pub from_user: bool,
    /// List, bulk or automatic mail.
    pub automated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuestionView {
    #[serde(flatten)]
    pub question: Question,
    /// Someone other than the person greeted asked it: the draft says who.
    pub name_asker: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommitmentView {
    #[serde(flatten)]
    pub commitment: Commitment,
    /// "John Mao committed to flying to San Francisco…", as the source note shows it.
    pub rendered: String,
    /// The promise as a first-person follow-up line ("send the deck (by Friday)").
    pub follow_up: String,
}

/// The reply: its headers, where it lives, and how to address and sign it.
#[derive(Debug, Clone, Serialize)]
pub struct DraftView {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// The subject with exactly one `Re: `.
    pub subject: String,
    /// The subject without reply prefixes (the seed's **Regarding** line).
    pub regarding: String,
    /// The main recipient's display name (or address), for `# Draft Reply to …`.
    pub to_name: String,
    /// The main recipient's first name, for the greeting; `None` without a name.
    pub greeting_name: Option<String>,
    /// The account name's first name, for the sign-off.
    pub sign_off_name: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    pub urgency: String,
    pub source_file: String,
    /// `[[Sources/Email/2025/…]]`.
    pub source_note: String,
    pub account: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// `en`, `de`, `fr`, `es` or `ja`: the language the thread's new text is in.
    pub lang: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Phrases {
    /// With `{name}` where the name goes; see `greeting_plain` without a name.
    pub greeting: String,
    pub greeting_plain: String,
    pub thanks: String,
    pub answers_intro: String,
    pub follow_ups_intro: String,
    pub closing: String,
    pub sign_off: String,
    pub todo_answer: String,
    pub todo_reply: String,
}

impl Context {
    pub fn new(input: &DraftInput) -> Context {
        let user = |address: &str| {
            input
                .user_addresses
                .iter()
                .any(|u| u.eq_ignore_ascii_case(address.trim()))
        };
        let view = |m: &Mailbox| address_view(m, &user);
        let messages: Vec<MessageView> = input
            .messages
            .iter()
            .map(|p| MessageView {
                message_id: p.message_id.clone(),
                from: p.from.as_ref().map(view),
                to: p.to.iter().map(view).collect(),
                cc: p.cc.iter().map(view).collect(),
                reply_to: p.reply_to.iter().map(view).collect(),
                date: p.date.as_ref().map(|d| d.rfc3339.clone()),
                subject: p.subject.clone().unwrap_or_default(),
                body: p.body_new.trim().to_string(),
                quoted: p.quoted.as_ref().map(|q| q.text.clone()),
                signature: p.signature.clone(),
                attachments: p
                    .attachments
                    .iter()
                    .filter(|a| !a.inline)
                    .map(|a| a.filename.clone().unwrap_or_else(|| "(unnamed)".into()))
                    .collect(),
                from_user: p
                    .from
                    .as_ref()
                    .and_then(|f| f.address.as_deref())
                    .is_some_and(user),
                automated: p.is_list_bulk_or_auto(),
            })
            .collect();
        let participants = participants(&messages);
        let reply = Recipients::for_thread(&input.messages, &user);

        let subject_source = input
            .messages
            .last()
            .and_then(|m| m.subject.clone())
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| input.subject.clone());
        let subject = compose::reply_subject(&subject_source);
        let regarding = subject
            .strip_prefix("Re:")
            .map(str::trim)
            .unwrap_or(&subject)
            .to_string();
        let main = reply.to.first();
        let to_name = main
            .map(|a| a.name.clone().unwrap_or_else(|| a.address.clone()))
            .unwrap_or_default();
        let greeting_name = main.and_then(|a| a.first_name.clone());
        let lang = detect_language(&input.messages, input.analysis.unanswered_from);
        let phrases = phrases(&lang);

        let questions = {
            let greeted = greeting_name.as_deref().map(str::to_lowercase);
            let mut askers: Vec<&str> = input
                .analysis
                .questions
                .iter()
                .map(|q| q.asked_by.as_str())
                .collect();
            askers.sort_unstable();
            askers.dedup();
            let several = askers.len() > 1;
            input
                .analysis
                .questions
                .iter()
                .map(|q| {
                    let asker_first = first_name(&q.asked_by).map(|n| n.to_lowercase());
                    QuestionView {
                        question: q.clone(),
                        name_asker: several || (greeted.is_some() && asker_first != greeted),
                    }
                })
                .collect()
        };
        let commitment = |c: &Commitment| CommitmentView {
            commitment: c.clone(),
            rendered: c.render(),
            follow_up: follow_up(c),
        };

        Context {
            version: SCHEMA_VERSION,
            account: AccountView {
                id: input.account.id.clone(),
                email: input.account.email.clone(),
                name: input.account.display_name.clone(),
                first_name: input.account.display_name.as_deref().and_then(first_name),
            },
            thread: Arc::new(ThreadView {
                thread_id: input.thread_id.clone(),
                subject: input.subject.clone(),
                participants,
                messages,
            }),
            questions,
            user_commitments: input.analysis.user_commitments().map(commitment).collect(),
            their_commitments: input.analysis.their_commitments().map(commitment).collect(),
            draft: DraftView {
                to: reply.to.iter().map(|a| a.display.clone()).collect(),
                cc: reply.cc.iter().map(|a| a.display.clone()).collect(),
                subject,
                regarding,
                to_name,
                greeting_name,
                sign_off_name: input.account.display_name.as_deref().and_then(first_name),
                created: crate::push::rfc3339_utc(input.now_unix),
                urgency: input.analysis.urgency.as_str().to_string(),
                source_file: input.source_file.clone(),
                source_note: format!("[[{}]]", input.source_link),
                account: input.account.id.clone(),
                in_reply_to: reply.in_reply_to,
                references: reply.references,
                lang,
            },
            phrases,
            analysis: input.analysis.clone(),
        }
    }
}

fn serialize_arc<S: serde::Serializer, T: Serialize>(
    value: &Arc<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    value.as_ref().serialize(serializer)
}

fn address_view(m: &Mailbox, is_user: &dyn Fn(&str) -> bool) -> AddressView {
    let address = m.address.clone().unwrap_or_default();
    let name = m
        .name
        .clone()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case(address.trim()));
    AddressView {
        display: notes::Address::new(name.as_deref(), &address).display(),
        first_name: name.as_deref().and_then(first_name),
        is_user: is_user(&address),
        name,
        address,
    }
}

/// Everyone in the thread, first appearance first, once each (by address).
fn participants(messages: &[MessageView]) -> Vec<AddressView> {
    let mut out: Vec<AddressView> = Vec::new();
    for m in messages {
        for a in m.from.iter().chain(&m.to).chain(&m.cc) {
            if a.address.is_empty() {
                continue;
            }
            match out
                .iter_mut()
                .find(|o| o.address.eq_ignore_ascii_case(&a.address))
            {
                Some(known) if known.name.is_none() && a.name.is_some() => *known = a.clone(),
                Some(_) => {}
                None => out.push(a.clone()),
            }
        }
    }
    out
}

/// "John Mao" → "John"; "Mao, John" → "John"; "Dr. Frank Müller" → "Frank";
/// "田中 太郎" → "田中" (a Japanese name starts with the family name, which is what
/// a Japanese greeting uses).
pub fn first_name(name: &str) -> Option<String> {
    let name = name.trim().trim_matches(['"', '\'']);
    let given = match name.split_once(',') {
        Some((_, given)) if !given.trim().is_empty() => given.trim(),
        _ => name,
    };
    given
        .split_whitespace()
        .find(|w| {
            !matches!(
                w.to_lowercase().as_str(),
                "dr." | "dr" | "prof." | "prof" | "mr." | "mrs." | "ms." | "mr" | "mrs" | "ms"
            )
        })
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
        .filter(|w| !w.is_empty() && !w.contains('@'))
}

/// The reply-all recipients and the message replied to.
struct Recipients {
    to: Vec<AddressView>,
    cc: Vec<AddressView>,
    in_reply_to: Option<String>,
    references: Vec<String>,
}

impl Recipients {
    /// To the sender of the newest message not the user's own (its Reply-To when it
    /// has one), Cc everyone else it went to; never the user. A thread of only the
    /// user's messages replies to whom the newest one went to.
    fn for_thread(messages: &[ParsedMessage], is_user: &dyn Fn(&str) -> bool) -> Recipients {
        let from_user = |m: &ParsedMessage| {
            m.from
                .as_ref()
                .and_then(|f| f.address.as_deref())
                .is_some_and(is_user)
        };
        let base = messages
            .iter()
            .rev()
            .find(|m| !from_user(m))
            .or(messages.last());
        let Some(base) = base else {
            return Recipients {
                to: Vec::new(),
                cc: Vec::new(),
                in_reply_to: None,
                references: Vec::new(),
            };
        };
        let view = |m: &Mailbox| address_view(m, is_user);
        let (to_boxes, cc_boxes): (Vec<&Mailbox>, Vec<&Mailbox>) = if from_user(base) {
            (base.to.iter().collect(), base.cc.iter().collect())
        } else {
            let primary: Vec<&Mailbox> = if base.reply_to.iter().any(|m| m.address.is_some()) {
                base.reply_to.iter().collect()
            } else {
                base.from.iter().collect()
            };
            (primary, base.to.iter().chain(&base.cc).collect())
        };
        let mut seen: Vec<String> = Vec::new();
        let mut take = |boxes: Vec<&Mailbox>| -> Vec<AddressView> {
            let mut out = Vec::new();
            for b in boxes {
                let v = view(b);
                let key = v.address.trim().to_lowercase();
                if key.is_empty() || !key.contains('@') || v.is_user || seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                out.push(v);
            }
            out
        };
        let mut to = take(to_boxes);
        let mut cc = take(cc_boxes);
        if to.is_empty() && !cc.is_empty() {
            // Reply-To named only the user: the first other recipient becomes To.
            to.push(cc.remove(0));
        }
        let in_reply_to = base
            .message_id
            .as_deref()
            .and_then(compose::normalize_message_id);
        let references = compose::references_for(&base.references, in_reply_to.as_deref());
        Recipients {
            to,
            cc,
            in_reply_to,
            references,
        }
    }
}

/// The follow-up line for a promise of the user's: the promised action as they
/// would write it ("send the pricing (tomorrow)").
fn follow_up(c: &Commitment) -> String {
    let mut what = if c.verb_phrase {
        c.what.trim().to_string()
    } else {
        c.text.trim().to_string()
    };
    if what.is_empty() {
        what = c.text.trim().to_string();
    }
    if let Some(due) = &c.due {
        if !what.contains(due.as_str()) {
            what.push_str(&format!(" ({due})"));
        }
    }
    what.trim_end_matches(['.', '。']).to_string()
}

/// The language of what the others wrote since the user's last message (else of the
/// whole thread), by script and common words; English when unsure.
pub fn detect_language(messages: &[ParsedMessage], unanswered_from: usize) -> String {
    let recent: Vec<&ParsedMessage> = match messages.get(unanswered_from..) {
        Some(rest) if !rest.is_empty() => rest.iter().collect(),
        _ => messages.iter().collect(),
    };
    // A few hundred words tell the language; a long message need not be read whole.
    const ENOUGH: usize = 2000;
    let mut text = String::new();
    for m in recent {
        let body = &m.body_new;
        let cut = body
            .char_indices()
            .nth(ENOUGH.saturating_sub(text.len()))
            .map_or(body.len(), |(at, _)| at);
        text.push_str(&body[..cut]);
        text.push('\n');
        if text.len() >= ENOUGH {
            break;
        }
    }
    let kana = text
        .chars()
        .filter(|c| matches!(*c as u32, 0x3040..=0x30ff))
        .count();
    if kana >= 2 {
        return "ja".into();
    }
    const WORDS: &[(&str, &[&str])] = &[
        (
            "en",
            &[
                "the", "and", "to", "you", "is", "for", "we", "i", "can", "please", "thanks",
                "with", "could", "would", "your", "this", "of",
            ],
        ),
        (
            "de",
            &[
                "und", "der", "die", "das", "ich", "nicht", "sie", "bitte", "danke", "mit", "für",
                "ist", "wir", "ihnen", "können", "wir", "ein", "eine", "zu", "den",
            ],
        ),
        (
            "fr",
            &[
                "le", "les", "et", "vous", "je", "pour", "est", "des", "une", "merci", "pas",
                "nous", "avec", "pourriez", "votre", "du", "à",
            ],
        ),
        (
            "es",
            &[
                "el", "los", "las", "y", "que", "usted", "para", "por", "gracias", "una", "está",
                "con", "pero", "podrías", "puedes", "tu", "del",
            ],
        ),
    ];
    let mut scores = [0usize; 4];
    for word in text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        for (i, (_, list)) in WORDS.iter().enumerate() {
            if list.contains(&word.as_str()) {
                scores[i] += 1;
            }
        }
    }
    let (best, score) = scores
        .iter()
        .enumerate()
        .max_by_key(|(i, s)| (**s, usize::MAX - i))
        .expect("four languages");
    if *score == 0 {
        "en".into()
    } else {
        WORDS[best].0.into()
    }
}

/// The fixed sentences of a reply, per language.
pub fn phrases(lang: &str) -> Phrases {
    let p = |greeting: &str,
             greeting_plain: &str,
             thanks: &str,
             answers_intro: &str,
             follow_ups_intro: &str,
             closing: &str,
             sign_off: &str| Phrases {
        greeting: greeting.into(),
        greeting_plain: greeting_plain.into(),
        thanks: thanks.into(),
        answers_intro: answers_intro.into(),
        follow_ups_intro: follow_ups_intro.into(),
        closing: closing.into(),
        sign_off: sign_off.into(),
        // Placeholders stay English in every language: `bridge send` looks for them.
        todo_answer: "[TODO: Add answer]".into(),
        todo_reply: "[TODO: Write your reply]".into(),
    };
    match lang {
        "de" => p(
            "Hallo {name},",
            "Hallo,",
            "vielen Dank für Ihre Nachricht.",
            "Zu Ihren Fragen:",
            "Ich kümmere mich um:",
            "Bei Fragen melden Sie sich gern.",
            "Viele Grüße",
        ),
        "fr" => p(
            "Bonjour {name},",
            "Bonjour,",
            "Merci pour votre message.",
            "Pour répondre à vos questions :",
            "Je reviens vers vous sur :",
            "N'hésitez pas si vous avez des questions.",
            "Cordialement,",
        ),
        "es" => p(
            "Hola {name}:",
            "Hola:",
            "Gracias por tu mensaje.",
            "Respecto a tus preguntas:",
            "Me encargo de:",
            "Quedo atento a cualquier duda.",
            "Saludos,",
        ),
        "ja" => p(
            "{name}様",
            "お世話になっております。",
            "ご連絡ありがとうございます。",
            "ご質問への回答：",
            "対応予定：",
            "ご不明な点がございましたらお知らせください。",
            "よろしくお願いいたします。",
        ),
        _ => p(
            "Hi {name},",
            "Hi,",
            "Thank you for your email.",
            "To answer your questions:",
            "I'll follow up on:",
            "Let me know if you have any questions.",
            "Best,",
        ),
    }
}

/// `YYYY-MM-DD` of the thread's last message in its sender's offset (the draft's
/// file name), or of `now` for a thread without dates.
pub fn last_message_day(messages: &[ParsedMessage], now_unix: i64) -> String {
    let date = messages
        .iter()
        .rev()
        .find_map(|m| m.date.as_ref())
        .and_then(|d| NoteDate::from_unix(d.timestamp, d.offset_minutes as i16))
        .or_else(|| NoteDate::from_unix(now_unix, 0))
        .unwrap_or_default();
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}
