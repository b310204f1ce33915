//! The command line without a server: init, config errors, login, and the
//! commands later issues build.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn bridge(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridge"));
    command.arg("--config").arg(config).env_remove("RUST_LOG");
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn help_lists_every_command() {
    let output = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg("--help")
        .output()
        .unwrap();
    let help = text(&output);
    assert!(output.status.success(), "{help}");
    for command in [
        "init", "login", "doctor", "sync", "generate", "push", "send", "status", "watch",
        "schedule",
    ] {
        assert!(
            help.contains(&format!("  {command} ")),
            "`{command}` missing from:\n{help}"
        );
    }
    let version = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(text(&version).starts_with("bridge "), "{}", text(&version));
}

#[test]
fn completions_cover_the_commands() {
    let output = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let script = text(&output);
    assert!(output.status.success(), "{script}");
    for command in ["doctor", "sync", "push", "schedule"] {
        assert!(script.contains(command), "{command} missing");
    }
}

#[test]
fn init_writes_a_valid_config_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sub/config.yaml");
    let output = bridge(&config).arg("init").output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("accounts:"));
    // Validity of the starter config itself is a unit test in config.rs;
    // running doctor on it here would reach for imap.example.com.

    std::fs::write(&config, "# mine\n").unwrap();
    let again = bridge(&config).arg("init").output().unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# mine\n");
}

#[test]
fn bridge_config_env_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("from-env.yaml");
    let output = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg("init")
        .env("BRIDGE_CONFIG", &config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(config.exists());
}

const VALID: &str = "\
vault: /tmp
accounts:
  work:
    email: me@example.com
    imap: { host: imap.example.com }
";

fn doctor_with(yaml: &str) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml).unwrap();
    let output = bridge(&config).arg("doctor").output().unwrap();
    let all = text(&output);
    (output, all.replace(&config.display().to_string(), "CONFIG"))
}

#[test]
fn bad_config_names_file_line_and_key() {
    let (output, all) = doctor_with(&VALID.replace("imap: { host:", "imap: { hots:"));
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FAIL  config: invalid config CONFIG line 5"),
        "{all}"
    );
    assert!(all.contains("accounts.work.imap"), "{all}");
    assert!(all.contains("unknown field `hots`"), "{all}");

    let (_, all) = doctor_with(&format!("{VALID}    since: soon\n"));
    assert!(all.contains("line 6"), "{all}");
    assert!(all.contains("accounts.work.since"), "{all}");
    assert!(all.contains("expected a duration"), "{all}");
}

#[test]
fn security_none_refused_for_a_remote_host_before_any_network() {
    let (output, all) = doctor_with(&VALID.replace(
        "{ host: imap.example.com }",
        "{ host: imap.example.com, security: none }",
    ));
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("line 5"), "{all}");
    assert!(all.contains("accounts.work.imap"), "{all}");
    assert!(all.contains("loopback"), "{all}");
    // Refused at the config line: no connect was attempted.
    assert!(!all.contains("connect"), "{all}");
}

#[test]
fn unknown_account_is_named() {
    let (output, all) = {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, VALID).unwrap();
        let output = bridge(&config)
            .args(["doctor", "--account", "home"])
            .output()
            .unwrap();
        let all = text(&output);
        (output, all)
    };
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("no account `home`"), "{all}");
    assert!(all.contains("work"), "{all}");
}

#[test]
fn missing_config_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let output = bridge(&dir.path().join("none.yaml"))
        .arg("doctor")
        .output()
        .unwrap();
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("bridge init"), "{all}");
}

#[test]
fn generate_is_built() {
    // The last command a later issue built: with nothing synced there is nothing to do.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("vault: {0}/vault\nstate_dir: {0}/state\naccounts:\n  work:\n    email: jason@example.com\n    imap: {{ host: imap.example.com }}\n", dir.path().display()),
    )
    .unwrap();
    let output = bridge(&config).arg("generate").output().unwrap();
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(all.contains("0 new drafts"), "{all}");
    assert!(!all.contains("not implemented"), "{all}");
}

#[test]
fn login_refuses_a_non_terminal_without_password_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, VALID).unwrap();
    let output = bridge(&config)
        .args(["login", "work"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("--password-stdin"), "{all}");
}
