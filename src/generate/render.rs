//! The minijinja side: the note template (built in or `drafts.template`), the openai
//! prompt template (built in or `drafts.prompt`), the filters they may use, and the
//! checks a rendered note must pass before it is written.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use minijinja::value::{Enumerator, Object};

use super::context::{Context, ThreadView};
use crate::draft::{self, DraftNote};

/// The built-in note template: the format of SPEC's `seed-draft-reply.md`.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../config/draft-reply.md");

/// The built-in prompt of the openai generator.
pub const DEFAULT_PROMPT: &str = include_str!("../../config/draft-prompt.md");

const NOTE: &str = "note";
const PROMPT: &str = "prompt";

/// What a `command` or `openai` generator wrote; the note template puts it in place
/// of the parts it would otherwise fill from the analysis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    /// The `## Draft Response` section: the email.
    pub draft_response: String,
    /// Replaces the `## Key Points to Address` section when given.
    #[serde(default, deserialize_with = "text_or_list")]
    pub key_points: Option<String>,
    /// Replaces the `## Original Summary` section when given.
    #[serde(default, deserialize_with = "text_or_list")]
    pub summary: Option<String>,
}

/// A command may give key points as one Markdown string or as a list of lines.
fn text_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrList {
        Text(String),
        List(Vec<String>),
    }
    Ok(match Option::<TextOrList>::deserialize(d)? {
        None => None,
        Some(TextOrList::Text(t)) => Some(t),
        Some(TextOrList::List(items)) => Some(
            items
                .iter()
                .map(|i| format!("- {}", oneline(i)))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
    .filter(|s| !s.trim().is_empty()))
}

/// The compiled templates, built once per run: 10,000 drafts render from one.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The note template from `template` (else the built-in one) and the prompt from
    /// `prompt` (else the built-in one); a syntax error is reported now, with the file.
    pub fn load(template: Option<&Path>, prompt: Option<&Path>) -> Result<Templates> {
        let read = |path: Option<&Path>, default: &'static str, what: &str| -> Result<String> {
            match path {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the {what} {}", path.display())),
                None => Ok(default.to_string()),
            }
        };
        let note = read(
            template,
            DEFAULT_TEMPLATE,
            "draft template (drafts.template)",
        )?;
        let prompt_text = read(prompt, DEFAULT_PROMPT, "prompt template (drafts.prompt)")?;
        let mut env = environment();
        let name = |path: Option<&Path>, builtin: &str| {
            path.map_or(builtin.to_string(), |p| p.display().to_string())
        };
        env.add_template_owned(NOTE, note)
            .map_err(|e| template_error(e, &name(template, "the built-in draft template")))?;
        env.add_template_owned(PROMPT, prompt_text)
            .map_err(|e| template_error(e, &name(prompt, "the built-in prompt template")))?;
        Ok(Templates { env })
    }

    /// The whole draft note.
    pub fn render_note(&self, ctx: &Context, generated: Option<&Generated>) -> Result<String> {
        let generated = generated.map(|g| Generated {
            draft_response: section_safe(&g.draft_response),
            key_points: g.key_points.as_deref().map(section_safe),
            summary: g.summary.as_deref().map(section_safe),
        });
        let value = minijinja::context! {
            generated => Value::from_serialize(generated),
            ..template_context(ctx)
        };
        let text = self
            .env
            .get_template(NOTE)
            .and_then(|t| t.render(value))
            .map_err(|e| template_error(e, "the draft template"))?;
        Ok(text)
    }

    /// The user message for the openai generator.
    pub fn render_prompt(&self, ctx: &Context) -> Result<String> {
        self.env
            .get_template(PROMPT)
            .and_then(|t| t.render(template_context(ctx)))
            .map_err(|e| template_error(e, "the prompt template"))
    }
}

/// The context as the templates see it: every field of [`Context`], with the
/// thread as a lazy object (the messages are serialized only if the template reads
/// them, which the built-in draft template does not: 10,000 drafts a second).
fn template_context(ctx: &Context) -> Value {
    minijinja::context! {
        version => ctx.version,
        account => Value::from_serialize(&ctx.account),
        thread => Value::from_object(LazyThread(ctx.thread.clone())),
        analysis => Value::from_serialize(&ctx.analysis),
        questions => Value::from_serialize(&ctx.questions),
        user_commitments => Value::from_serialize(&ctx.user_commitments),
        their_commitments => Value::from_serialize(&ctx.their_commitments),
        draft => Value::from_serialize(&ctx.draft),
        phrases => Value::from_serialize(&ctx.phrases),
    }
}

#[derive(Debug)]
struct LazyThread(Arc<ThreadView>);

impl Object for LazyThread {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let thread = &self.0;
        Some(match key.as_str()? {
            "thread_id" => Value::from(thread.thread_id.as_str()),
            "subject" => Value::from(thread.subject.as_str()),
            "participants" => Value::from_serialize(&thread.participants),
            "messages" => Value::from_serialize(&thread.messages),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["thread_id", "subject", "participants", "messages"])
    }
}

/// minijinja's message with the template's line, and the chain of causes.
fn template_error(err: Error, what: &str) -> anyhow::Error {
    let mut message = format!("{what}: {}", err.kind());
    if let Some(detail) = err.detail() {
        message.push_str(&format!(": {detail}"));
    }
    if let Some(line) = err.line() {
        message.push_str(&format!(" (line {line})"));
    }
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    anyhow::anyhow!(message)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A block tag on a line of its own leaves no blank line behind.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    // Markdown, not HTML: nothing is escaped.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // A misspelt variable in a user's template is an error naming the line, not a
    // silently empty part of a draft.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("yaml", yaml_filter);
    env.add_filter("addresses", addresses_filter);
    env.add_filter("oneline", |s: String| oneline(&s));
    env.add_filter("section_safe", |s: String| section_safe(&s));
    env.add_filter("clip", |s: String, n: usize| clip(&s, n));
    env.add_filter("first_name", |s: String| {
        super::context::first_name(&s).unwrap_or_default()
    });
    env
}

/// A YAML double-quoted scalar: JSON's escapes are valid YAML and cover everything
/// YAML could read as a line break, so subjects with quotes or colons stay one value.
pub fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// `value | yaml`: strings quoted, lists as flow lists, none as `""`.
fn yaml_filter(value: Value) -> Result<String, Error> {
    if value.is_none() || value.is_undefined() {
        return Ok("\"\"".into());
    }
    if let Some(s) = value.as_str() {
        return Ok(yaml_quote(s));
    }
    match value.kind() {
        minijinja::value::ValueKind::Bool | minijinja::value::ValueKind::Number => {
            Ok(value.to_string())
        }
        minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Iterable => {
            let items: Result<Vec<String>, Error> = value.try_iter()?.map(yaml_filter).collect();
            Ok(format!("[{}]", items?.join(", ")))
        }
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("the yaml filter takes text or a list, not {}", value.kind()),
        )),
    }
}

/// `list | addresses`: one address as a quoted string (as the seed writes `to:`),
/// several as a flow list.
fn addresses_filter(value: Value) -> Result<String, Error> {
    if value.as_str().is_some() {
        return yaml_filter(value);
    }
    let items: Vec<Value> = value.try_iter()?.collect();
    match items.as_slice() {
        [one] => yaml_filter(one.clone()),
        _ => yaml_filter(Value::from(items)),
    }
}

/// One line: a list item that stays one list item.
pub fn oneline(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `n` characters, cut at a character boundary with `…`.
pub fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", s[..at].trim_end()),
        None => s.to_string(),
    }
}

/// Text that cannot end the section it is put in: `push` cuts the email at the next
/// `# `/`## ` heading or `---` rule, so generated text demotes its headings and
/// drops its rules.
pub fn section_safe(s: &str) -> String {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    for line in s.trim().lines() {
        let trimmed = line.trim_start();
        if let Some(open) = &fence {
            if trimmed.starts_with(open.as_str()) {
                fence = None;
            }
            out.push(line.to_string());
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(trimmed[..3].to_string());
            out.push(line.to_string());
            continue;
        }
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if (hashes == 1 || hashes == 2)
            && (trimmed.len() == hashes || trimmed[hashes..].starts_with(' '))
        {
            out.push(format!("###{}", &trimmed[hashes..]));
            continue;
        }
        let rule = trimmed
            .chars()
            .next()
            .filter(|c| matches!(c, '-' | '*' | '_'))
            .is_some_and(|m| {
                trimmed.chars().all(|c| c == m || c == ' ' || c == '\t')
                    && trimmed.chars().filter(|c| *c == m).count() >= 3
            });
        if rule {
            out.push(String::new());
            continue;
        }
        out.push(line.trim_end().to_string());
    }
    out.join("\n")
}

/// A rendered note must be a draft note push accepts: front matter that parses,
/// `type: draft-reply`, recipients that parse, and a Draft Response to send.
pub fn check_note(text: &str) -> Result<()> {
    let note = DraftNote::parse(Path::new("(generated draft)"), text.to_string())?;
    if note.text_value("type")?.as_deref() != Some("draft-reply") {
        bail!("the generated note has no `type: draft-reply`");
    }
    if note.addresses("to")?.is_empty() {
        bail!("the thread has no one to reply to (no sender address other than yours)");
    }
    note.addresses("cc")?;
    if draft::draft_response(note.body()).is_none_or(|r| r.trim().is_empty()) {
        bail!(
            "the generated note has no text under `## {}`",
            draft::RESPONSE_HEADING
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_quoting_survives_quotes_colons_and_newlines() {
        let s = "Re: \"Q4\" plan: yes\nno # not a comment";
        let quoted = yaml_quote(s);
        let back: String = serde_norway::from_str(&quoted).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            yaml_filter(Value::from(vec!["a: b", "c"])).unwrap(),
            r#"["a: b", "c"]"#
        );
        assert_eq!(
            addresses_filter(Value::from(vec!["\"Mao, John\" <j@x.com>"])).unwrap(),
            r#""\"Mao, John\" <j@x.com>""#
        );
    }

    #[test]
    fn generated_text_cannot_end_its_section() {
        assert_eq!(
            section_safe("Hi,\n\n## Plan\n---\n```\n---\n```\n# Top\n### keep"),
            "Hi,\n\n### Plan\n\n```\n---\n```\n### Top\n### keep"
        );
    }

    #[test]
    fn templates_see_every_field_of_the_context() {
        let config = crate::config::Config::parse(
            "vault: /v\naccounts:\n  w:\n    email: a@b.c\n    imap: { host: h }\n",
            Path::new("/c.yaml"),
        )
        .unwrap();
        let messages = vec![crate::message::parse_message(
            b"From: Ann <ann@x.example>\nTo: a@b.c\nSubject: s\nMessage-ID: <m@x>\n\nCan you?",
        )
        .unwrap()];
        let input = super::super::DraftInput {
            account: &config.accounts["w"],
            thread_id: "<m@x>".into(),
            subject: "s".into(),
            analysis: crate::analyze::analyze_thread(&messages, &["a@b.c".into()], 0),
            messages,
            source_file: "/v/n.md".into(),
            source_link: "n".into(),
            user_addresses: vec!["a@b.c".into()],
            now_unix: 0,
        };
        let ctx = Context::new(&input);
        let json = serde_json::to_value(&ctx).unwrap();
        let value = template_context(&ctx);
        let env = environment();
        for (key, field) in json.as_object().unwrap() {
            let rendered = env
                .render_str(&format!("{{{{ {key} is defined }}}}"), value.clone())
                .unwrap();
            assert_eq!(rendered, "True", "{key}");
            if let Some(inner) = field.as_object() {
                for sub in inner.keys() {
                    let rendered = env
                        .render_str(&format!("{{{{ {key}.{sub} is defined }}}}"), value.clone())
                        .unwrap();
                    assert_eq!(rendered, "True", "{key}.{sub}");
                }
            }
        }
        let rendered = env
            .render_str("{{ thread.messages[0].from.address }}", value)
            .unwrap();
        assert_eq!(rendered, "ann@x.example");
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("日本語のテキスト", 3), "日本語…");
        assert_eq!(clip("short", 10), "short");
    }
}
