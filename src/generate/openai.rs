//! `generator: openai`: an OpenAI-compatible chat completions endpoint writes the
//! Draft Response (OpenAI, Ollama, llama.cpp's server, vLLM, LM Studio all speak
//! `POST {base_url}/chat/completions`).
//!
//! The prompt is a template (`config/draft-prompt.md`, or `drafts.prompt`) over the
//! same context as the note template; the answer goes into the same note format.
//! 429 and 5xx answers are retried with exponential backoff, honouring
//! `Retry-After`; a timeout, a refusal (4xx) or an answer that is not a completion
//! is an error for this thread only. The API key is sent as `Authorization: Bearer`
//! and appears in no log line and no error (it is a [`Secret`] until the header is
//! built, and ureq redacts headers in its own debug logs).

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;

use super::render::{clip, Generated};
use crate::credentials::Secret;

/// What the model is told before the prompt.
const SYSTEM: &str =
    "You draft email replies for the user. Answer with the body of the reply only, \
as Markdown: no subject line, no headings, no commentary before or after it. Never invent facts, \
figures, dates or commitments; where an answer needs information you do not have, write \
[TODO: Add answer] in its place.";

/// Attempts in all (the first and the retries) for 429 and 5xx answers.
pub const MAX_ATTEMPTS: u32 = 4;

/// A `Retry-After` longer than this is not waited for: the attempt fails instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// How much of an error body an error message quotes.
const BODY_QUOTED: usize = 300;

pub struct OpenAiGenerator {
    pub base_url: String,
    pub model: String,
    pub api_key: Option<Secret>,
    /// Per request, connect to last byte.
    pub timeout: Duration,
    /// The first retry's wait; each further one doubles it.
    pub backoff: Duration,
    agent: ureq::Agent,
}

impl OpenAiGenerator {
    pub fn new(
        base_url: &str,
        model: &str,
        api_key: Option<Secret>,
        timeout: Duration,
    ) -> OpenAiGenerator {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(os_roots())
            .build();
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // Status codes are ours to interpret (retry, or say what was wrong).
            .http_status_as_error(false)
            .user_agent(concat!("mailbridge/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        OpenAiGenerator {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key,
            timeout,
            backoff: Duration::from_secs(1),
            agent: config.into(),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    /// The model's reply to `prompt`, cleaned to a Draft Response.
    pub fn generate(&self, prompt: &str) -> Result<Generated> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": [
                { "role": "system", "content": SYSTEM },
                { "role": "user", "content": prompt },
            ],
            "temperature": 0.3,
            "stream": false,
        });
        let body = serde_json::to_vec(&body)?;
        let content = self.complete(&body)?;
        let response = clean_completion(&content);
        if response.is_empty() {
            bail!(
                "{}: model `{}` answered with an empty reply",
                self.endpoint(),
                self.model
            );
        }
        Ok(Generated {
            draft_response: response,
            ..Generated::default()
        })
    }

    /// POSTs `body`, retrying 429 and 5xx; the first choice's message content.
    fn complete(&self, body: &[u8]) -> Result<String> {
        let url = self.endpoint();
        let mut attempt = 1;
        loop {
            let mut request = self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json");
            if let Some(key) = &self.api_key {
                request = request.header("Authorization", format!("Bearer {}", key.expose()));
            }
            let mut response = match request.send(body) {
                Ok(response) => response,
                Err(ureq::Error::Timeout(_)) => bail!(
                    "{url}: no answer within {}s (drafts.timeout); no draft written",
                    self.timeout.as_secs_f32()
                ),
                Err(err) if attempt < MAX_ATTEMPTS && is_transient(&err) => {
                    let wait = self.backoff * 2u32.pow(attempt - 1);
                    tracing::warn!(
                        "{url}: {err}; retrying in {:.1}s (attempt {attempt} of {MAX_ATTEMPTS})",
                        wait.as_secs_f32()
                    );
                    std::thread::sleep(wait);
                    attempt += 1;
                    continue;
                }
                Err(err) => return Err(anyhow!("{url}: {err}")),
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let mut text = String::new();
            let read = response
                .body_mut()
                .with_config()
                .limit(16 * 1024 * 1024)
                .reader()
                .read_to_string(&mut text);
            if let Err(err) = read {
                if err.to_string().to_lowercase().contains("timed out")
                    || err.kind() == std::io::ErrorKind::TimedOut
                {
                    bail!(
                        "{url}: the answer did not arrive within {}s (drafts.timeout); no draft written",
                        self.timeout.as_secs_f32()
                    );
                }
                return Err(anyhow!("{url}: cannot read the answer: {err}"));
            }
            match status {
                200..=299 => return completion_content(&text).with_context(|| url.clone()),
                429 | 500..=599 if attempt < MAX_ATTEMPTS => {
                    let wait = match retry_after {
                        Some(wait) if wait > MAX_RETRY_AFTER => bail!(
                            "{url}: HTTP {status}, and the server asks to wait {}s before retrying; giving up",
                            wait.as_secs()
                        ),
                        Some(wait) => wait,
                        None => self.backoff * 2u32.pow(attempt - 1),
                    };
                    tracing::warn!(
                        "{url}: HTTP {status}{}; retrying in {:.1}s (attempt {attempt} of {MAX_ATTEMPTS})",
                        error_detail(&text),
                        wait.as_secs_f32()
                    );
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                429 | 500..=599 => bail!(
                    "{url}: HTTP {status}{} after {MAX_ATTEMPTS} attempts; giving up",
                    error_detail(&text)
                ),
                401 | 403 => bail!(
                    "{url}: HTTP {status}{}: the server refused the API key (drafts.openai.api_key)",
                    error_detail(&text)
                ),
                404 => bail!(
                    "{url}: HTTP 404{}: check drafts.openai.base_url (it usually ends in /v1) and the model name `{}`",
                    error_detail(&text),
                    self.model
                ),
                _ => bail!("{url}: HTTP {status}{}", error_detail(&text)),
            }
        }
    }
}

/// The OS trust store for HTTPS endpoints, Mozilla's roots when it is empty.
fn os_roots() -> ureq::tls::RootCerts {
    let loaded = rustls_native_certs::load_native_certs();
    let certs: Vec<ureq::tls::Certificate<'static>> = loaded
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if certs.is_empty() {
        ureq::tls::RootCerts::WebPki
    } else {
        ureq::tls::RootCerts::new_with_certs(&certs)
    }
}

/// Worth another attempt: the server was not reached or dropped the connection.
fn is_transient(err: &ureq::Error) -> bool {
    matches!(
        err,
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_)
    )
}

/// `{"error": {"message": "..."}}` as OpenAI and most servers send it, else the body.
fn error_detail(body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| body.trim().to_string());
    if message.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            clip(&super::render::oneline(&message), BODY_QUOTED)
        )
    }
}

/// `choices[0].message.content` of a chat completion.
pub fn completion_content(body: &str) -> Result<String> {
    #[derive(Deserialize)]
    struct Completion {
        choices: Vec<Choice>,
    }
    #[derive(Deserialize)]
    struct Choice {
        message: Message,
    }
    #[derive(Deserialize)]
    struct Message {
        content: Option<String>,
    }
    let completion: Completion = serde_json::from_str(body).map_err(|err| {
        anyhow!(
            "the answer is not a chat completion ({err}): {}",
            clip(body.trim(), BODY_QUOTED)
        )
    })?;
    completion
        .choices
        .into_iter()
        .next()
        .and_then(|c| c.message.content)
        .ok_or_else(|| anyhow!("the answer has no choices[0].message.content"))
}

/// The model's text as a Draft Response: reasoning (`<think>…</think>`) dropped, a
/// fence around the whole answer removed, and if it wrote a whole note anyway, its
/// `## Draft Response` section.
pub fn clean_completion(content: &str) -> String {
    let mut text = content.to_string();
    while let Some(start) = text.find("<think>") {
        match text[start..].find("</think>") {
            Some(end) => text.replace_range(start..start + end + "</think>".len(), ""),
            None => text.truncate(start),
        }
    }
    let mut text = text.trim().to_string();
    if text.starts_with("```") && text.ends_with("```") && text.len() > 6 {
        let inner = &text[3..text.len() - 3];
        let inner = inner.split_once('\n').map_or("", |(_, rest)| rest);
        text = inner.trim().to_string();
    }
    if let Some(section) = crate::draft::draft_response(&text) {
        text = section.trim().to_string();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = parse_http_date(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs((when - now).max(0) as u64))
}

/// IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`, the form servers send.
fn parse_http_date(value: &str) -> Option<i64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let days = crate::notes::days_from_civil(year, month, day);
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn completions_are_cleaned_to_a_response() {
        assert_eq!(
            clean_completion("<think>plan it</think>\n\nHi Ann,\n\nYes.\n"),
            "Hi Ann,\n\nYes."
        );
        assert_eq!(clean_completion("```markdown\nHi,\n\nOK\n```"), "Hi,\n\nOK");
        assert_eq!(
            clean_completion("# Draft\n\n## Draft Response\n\nHi,\nOK\n\n## Notes\nx"),
            "Hi,\nOK"
        );
    }

    #[test]
    fn completion_content_reads_the_first_choice() {
        let body =
            r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"}}]}"#;
        assert_eq!(completion_content(body).unwrap(), "Hi");
        assert!(completion_content("{\"choices\": []}").is_err());
        assert!(completion_content("<html>oops</html>").is_err());
    }
}
