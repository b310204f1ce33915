//! Secrets: the OS keychain, a command, or an environment variable.
//!
//! A secret is held in [`Secret`], whose `Debug` and `Display` never show the
//! value, so a stray `{:?}` in a log or an error cannot leak it. Errors name the
//! account and the source, never the secret.

use std::fmt;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::config::SecretSource;

/// The keychain service under which every account's password is stored.
pub const KEYRING_SERVICE: &str = "mailbridge";

/// A password, token or API key. Shows as `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Fetches the secret for `account` from `source`; `what` ("password", "token")
/// only shapes error messages.
pub fn resolve(account: &str, what: &str, source: &SecretSource) -> Result<Secret> {
    match source {
        SecretSource::Keyring => from_keyring(account),
        SecretSource::Command(command) => from_command(account, what, command),
        SecretSource::Env(variable) => from_env(account, what, variable),
    }
}

/// Stores `secret` as the keychain password of `account`.
pub fn store_in_keyring(account: &str, secret: &Secret) -> Result<()> {
    let entry = keyring_entry(account)?;
    entry
        .set_password(secret.expose())
        .map_err(|err| keyring_failure(account, "store the password in", err))
}

fn keyring_entry(account: &str) -> Result<keyring::Entry> {
    ensure_session_keyring();
    keyring::Entry::new(KEYRING_SERVICE, account)
        .map_err(|err| keyring_failure(account, "open", err))
}

fn from_keyring(account: &str) -> Result<Secret> {
    let entry = keyring_entry(account)?;
    match entry.get_password() {
        Ok(password) => Ok(Secret(password)),
        Err(keyring::Error::NoEntry) => bail!(
            "no password stored in the OS keychain for account `{account}`: run `bridge login {account}`, \
             or set `password: {{ command: \"...\" }}` or `password: {{ env: VARIABLE }}` for this account"
        ),
        Err(err) => Err(keyring_failure(account, "read", err)),
    }
}

/// Wraps a keychain failure with the alternatives that need no keychain.
fn keyring_failure(account: &str, action: &str, err: keyring::Error) -> anyhow::Error {
    // keyring errors describe the platform failure, never the password.
    anyhow::anyhow!(
        "cannot {action} the OS keychain for account `{account}`: {err}. Without a keychain (a headless \
         machine), set `password: {{ command: \"pass show mail/{account}\" }}` or \
         `password: {{ env: VARIABLE }}` for this account instead"
    )
}

/// On Linux the keyutils store needs a session keyring, which processes
/// started outside a login session (cron, ssh without PAM, containers) lack.
/// Creating one is harmless when it exists and lets `login` and `sync` share it.
fn ensure_session_keyring() {
    #[cfg(target_os = "linux")]
    {
        use linux_keyutils::{KeyRing, KeyRingIdentifier};
        if let Err(err) = KeyRing::from_special_id(KeyRingIdentifier::Session, true) {
            tracing::debug!("could not create a session keyring: {err:?}");
        }
    }
}

fn from_command(account: &str, what: &str, command: &str) -> Result<Secret> {
    let output = shell(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| {
            format!("account `{account}`: cannot run the {what} command `{command}`")
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first_line = stderr.lines().next().unwrap_or("").trim();
        bail!(
            "account `{account}`: the {what} command `{command}` failed ({}){}",
            output.status,
            if first_line.is_empty() {
                String::new()
            } else {
                format!(": {first_line}")
            }
        );
    }
    let stdout = String::from_utf8(output.stdout).map_err(|_| {
        anyhow::anyhow!("account `{account}`: the {what} command `{command}` printed invalid UTF-8")
    })?;
    // Like mbsync's PassCmd, the first line is the secret; the rest (pass
    // stores metadata below the password) is ignored.
    let secret = stdout.lines().next().unwrap_or("").trim();
    if secret.is_empty() {
        bail!("account `{account}`: the {what} command `{command}` printed nothing");
    }
    Ok(Secret(secret.to_string()))
}

fn shell(command: &str) -> Command {
    if cfg!(windows) {
        let mut cmd = Command::new("cmd");
        cmd.args(["/C", command]);
        cmd
    } else {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", command]);
        cmd
    }
}

fn from_env(account: &str, what: &str, variable: &str) -> Result<Secret> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(Secret(value)),
        Ok(_) => bail!("account `{account}`: the {what} variable {variable} is empty"),
        Err(std::env::VarError::NotPresent) => {
            bail!("account `{account}`: the {what} variable {variable} is not set")
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("account `{account}`: the {what} variable {variable} is not valid UTF-8")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_shows() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn command_first_line_trimmed() {
        let secret = resolve(
            "work",
            "password",
            &SecretSource::Command("printf '  s3cret \\nmetadata: x\\n'".into()),
        )
        .unwrap();
        assert_eq!(secret.expose(), "s3cret");
    }

    #[test]
    fn failing_command_is_a_clear_error() {
        let err = resolve(
            "work",
            "password",
            &SecretSource::Command("echo nope >&2; exit 3".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("account `work`"), "{err}");
        assert!(err.contains("failed"), "{err}");
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn empty_command_output_is_an_error() {
        let err = resolve("work", "token", &SecretSource::Command("true".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("printed nothing"), "{err}");
    }

    #[test]
    fn env_source() {
        std::env::set_var("MAILBRIDGE_TEST_SECRET_ENV", "from-env");
        let secret = resolve(
            "work",
            "password",
            &SecretSource::Env("MAILBRIDGE_TEST_SECRET_ENV".into()),
        )
        .unwrap();
        assert_eq!(secret.expose(), "from-env");
        let err = resolve(
            "work",
            "password",
            &SecretSource::Env("MAILBRIDGE_TEST_SECRET_UNSET".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("MAILBRIDGE_TEST_SECRET_UNSET is not set"),
            "{err}"
        );
    }

    #[test]
    fn keyring_errors_name_the_alternatives() {
        // keyring's mock store, so the test touches no real keychain.
        keyring::set_default_credential_builder(keyring::mock::default_credential_builder());
        let err = from_keyring("nobody").unwrap_err().to_string();
        assert!(err.contains("bridge login nobody"), "{err}");
        assert!(err.contains("command"), "{err}");
        assert!(err.contains("env"), "{err}");
    }
}
