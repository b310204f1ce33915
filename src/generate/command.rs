//! `generator: command`: the user's own program writes the reply.
//!
//! It is run without a shell (`drafts.command` is an argv list), gets the generator
//! context as JSON on stdin (README "Draft templates" has the schema), and prints
//! either the Draft Response as plain Markdown, or a JSON object
//! `{"draft_response": "...", "key_points": "..." | [...], "summary": "..."}`.
//! A non-zero exit, empty output or a timeout is an error: no draft is written, the
//! caller logs why and goes on with the next thread.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::context::Context;
use super::render::Generated;

/// How much of the command's stderr an error message quotes.
const STDERR_QUOTED: usize = 500;

pub struct CommandGenerator {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

impl CommandGenerator {
    pub fn generate(&self, ctx: &Context) -> Result<Generated> {
        let input = serde_json::to_vec(ctx)?;
        let output = run(&self.argv, &input, self.timeout)?;
        parse_output(&output).with_context(|| format!("`{}`", self.argv.join(" ")))
    }
}

/// The command's stdout: a JSON object with `draft_response`, or Markdown.
pub fn parse_output(stdout: &str) -> Result<Generated> {
    let trimmed = stdout.trim();
    if trimmed.starts_with('{') {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) {
            if value.get("draft_response").is_none() {
                bail!("printed a JSON object without a `draft_response` field");
            }
            let generated: Generated = serde_json::from_value(value)
                .context("printed a JSON object whose fields are not text")?;
            if generated.draft_response.trim().is_empty() {
                bail!("printed an empty `draft_response`");
            }
            return Ok(generated);
        }
    }
    if trimmed.is_empty() {
        bail!("printed nothing");
    }
    Ok(Generated {
        draft_response: trimmed.to_string(),
        ..Generated::default()
    })
}

/// Runs `argv` with `input` on stdin; its stdout, or why not. On timeout the whole
/// process group is killed, so a script's children do not outlive it holding the
/// pipes open.
fn run(argv: &[String], input: &[u8], timeout: Duration) -> Result<String> {
    let (program, args) = argv.split_first().context("drafts.command is empty")?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run the draft command `{program}`"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    // A command that never reads its stdin must not block us: write from a thread.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = reader(child.stdout.take().expect("piped"));
    let stderr = reader(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            bail!(
                "the draft command `{}` did not finish within {}s and was killed",
                argv.join(" "),
                timeout.as_secs_f32()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr = stderr.trim();
        bail!(
            "the draft command `{}` failed ({status}){}",
            argv.join(" "),
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {}", super::render::clip(stderr, STDERR_QUOTED))
            }
        );
    }
    String::from_utf8(stdout).map_err(|_| {
        anyhow::anyhow!(
            "the draft command `{}` printed invalid UTF-8",
            argv.join(" ")
        )
    })
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

fn kill(child: &mut Child) {
    #[cfg(unix)]
    {
        // The group the child leads (process_group(0) above).
        let group = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group; no memory
        // is involved.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_markdown_or_a_json_object() {
        assert_eq!(
            parse_output("  Hi Ann,\n\nYes.\n").unwrap().draft_response,
            "Hi Ann,\n\nYes."
        );
        let g = parse_output(
            r#"{"draft_response": "Hi", "key_points": ["a", "b\nc"], "summary": "S"}"#,
        )
        .unwrap();
        assert_eq!(g.draft_response, "Hi");
        assert_eq!(g.key_points.as_deref(), Some("- a\n- b c"));
        assert_eq!(g.summary.as_deref(), Some("S"));
        assert!(parse_output(r#"{"text": "Hi"}"#).is_err());
        assert!(parse_output(r#"{"draft_response": "  "}"#).is_err());
        assert!(parse_output(" \n").is_err());
        // Not JSON after all: Markdown that starts with a brace.
        assert_eq!(
            parse_output("{not json} Hi").unwrap().draft_response,
            "{not json} Hi"
        );
    }
}
