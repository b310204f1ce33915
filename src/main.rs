//! `bridge`: the mailbridge command line.
//!
//! `main` only turns the outcome of `try_main` into an exit code; `try_main`
//! parses arguments and dispatches to one small function per command.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use mailbridge::cli::{Cli, Command, ScheduleAction};
use mailbridge::config::{self, Config};
use mailbridge::credentials::{self, Secret};
use mailbridge::doctor;

// jemalloc, as ripgrep uses on musl, where the system allocator is slow:
// a first sync makes about three million allocations across its fetch,
// parser, commit, render and writer threads, and glibc's allocator was
// about a tenth of its CPU. Alternating first syncs of 10,000 messages on
// one server (medians of 5): CPU 1.43 -> 1.32 s, wall 1.20 -> 1.06 s.
//
// Its settings keep peak memory flat as the mailbox grows (bench/README.md,
// "Memory"): one arena, not four per CPU, each of which kept its own freed
// pages; freed pages given back after 200 ms instead of 10 s, without the
// second, "muzzy" stage. With the defaults, peak RSS grew 19% from 10,000
// to 50,000 messages; with these, 4-5%. `_RJEM_MALLOC_CONF` in the
// environment still overrides them.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(unix)]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static _rjem_malloc_conf: &[u8] = b"narenas:1,dirty_decay_ms:200,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match try_main(cli) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("bridge: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main(cli: Cli) -> Result<ExitCode> {
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(config::default_config_path);
    match cli.command {
        Command::Init => init(&config_path),
        Command::Login {
            account,
            password_stdin,
        } => login(&config_path, &account, password_stdin),
        Command::Doctor { account } => run_doctor(&config_path, account.as_deref()),
        Command::Sync {
            account,
            no_generate,
        } => sync(&config_path, account.as_deref(), no_generate),
        Command::Generate { notes } => generate(&config_path, &notes),
        Command::Push {
            drafts,
            dry_run,
            force,
        } => push(&config_path, &drafts, dry_run, force),
        Command::Send { draft, yes } => send(&config_path, &draft, yes),
        Command::Status { json } => status(&config_path, json),
        Command::Watch => watch(&config_path),
        Command::Schedule { action } => schedule(&config_path, action),
        Command::Completions { shell } => completions(shell),
    }
}

/// Logs go to stderr; `RUST_LOG` overrides `-v`/`-q`.
fn init_logging(verbose: u8, quiet: u8) {
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("mailbridge={level},bridge={level},warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// `bridge init`: writes the starter config, refusing to overwrite one.
fn init(config_path: &Path) -> Result<ExitCode> {
    if let Some(parent) = config_path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // create_new makes the no-overwrite rule atomic: no check-then-write race.
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(config_path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; not overwriting it (edit it, or pass --config PATH for a new one)",
            config_path.display()
        ),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot create {}", config_path.display()))
        }
    };
    file.write_all(config::STARTER_CONFIG.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    println!("wrote {}", config_path.display());
    println!(
        "next: edit it, then `bridge login ACCOUNT` and `bridge doctor` (config: --config {} or BRIDGE_CONFIG)",
        config_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `bridge login ACCOUNT`: stores the account's password in the OS keychain.
fn login(config_path: &Path, account_id: &str, password_stdin: bool) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let account = config.account(account_id)?;
    if account.password != config::SecretSource::Keyring {
        tracing::warn!(
            "account `{account_id}` takes its password from {:?}, not the keychain; storing it anyway",
            account.password
        );
    }
    let password = if password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from standard input")?;
        // A trailing newline from `echo` or a file is not part of the password.
        text.trim_end_matches(['\r', '\n']).to_string()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("standard input is not a terminal: pass --password-stdin to read the password from it");
        }
        rpassword::prompt_password(format!(
            "Password for {} ({}): ",
            account_id, account.username
        ))
        .context("cannot read the password")?
    };
    if password.is_empty() {
        bail!("empty password; nothing stored");
    }
    credentials::store_in_keyring(account_id, &Secret::new(password))?;
    println!(
        "stored the password of `{account_id}` in the OS keychain (service `{}`, user `{account_id}`)",
        credentials::KEYRING_SERVICE
    );
    Ok(ExitCode::SUCCESS)
}

/// `bridge doctor`: one line per check, exit 1 on any failure.
fn run_doctor(config_path: &Path, account: Option<&str>) -> Result<ExitCode> {
    let healthy = doctor::run(config_path, account, &mut std::io::stdout())?;
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `bridge sync`: new mail into source notes, per account under its lock.
/// Then drafts for the threads that await a reply, unless `--no-generate`.
fn sync(config_path: &Path, account: Option<&str>, no_generate: bool) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let options = mailbridge::sync::SyncOptions {
        generate: !no_generate,
    };
    let all_ok = mailbridge::sync::run_with(&config, account, options)?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `bridge generate [NOTE...]`: drafts for the named source notes, or for every
/// thread awaiting a reply that has none; exit 1 if any thread failed.
fn generate(config_path: &Path, notes: &[PathBuf]) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let now = mailbridge::sync::unix_now();
    let all_ok = mailbridge::generate::run(&config, notes, now, &mut std::io::stdout().lock())?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `bridge push DRAFT...`: each draft into the Drafts folder (or printed,
/// `--dry-run`); one bad draft fails alone, so exit 1 means "some failed",
/// each named on stderr, the others pushed.
fn push(config_path: &Path, drafts: &[PathBuf], dry_run: bool, force: bool) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let options = mailbridge::push::PushOptions { dry_run, force };
    let all_ok = mailbridge::push::run(&config, drafts, options, &mut std::io::stdout().lock())?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `bridge send DRAFT`: SMTP, then the Sent copy, the draft's removal and
/// `status: sent`; asks first on a terminal unless `--yes`.
fn send(config_path: &Path, draft: &Path, yes: bool) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    mailbridge::send::run(&config, draft, yes, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// `bridge schedule install|uninstall`: a systemd user timer or launchd agent
/// running `bridge sync` with this config every `schedule.interval`.
fn schedule(config_path: &Path, action: ScheduleAction) -> Result<ExitCode> {
    match action {
        ScheduleAction::Install => {
            let config = Config::load(config_path)?;
            mailbridge::schedule::install(&config)?;
        }
        ScheduleAction::Uninstall => mailbridge::schedule::uninstall()?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `bridge status [--json]`: last syncs, threads awaiting a reply, drafts by
/// status; from the state store and the vault only, so it needs no network.
fn status(config_path: &Path, json: bool) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let status = mailbridge::status::collect(&config)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", mailbridge::status::render_text(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// `bridge watch`: sync every `schedule.interval` and on new mail (IDLE),
/// in the foreground, until SIGINT/SIGTERM (then exit 0).
fn watch(config_path: &Path) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    mailbridge::watch::run(&config)?;
    Ok(ExitCode::SUCCESS)
}

/// `bridge completions SHELL`: the completion script, generated from the
/// same clap definition as the parser, so it can never drift from it.
fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "bridge", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
