//! Command-line surface: every command of SPEC §Commands, parsed with clap.
//!
//! This module only describes arguments; `main.rs` dispatches each command to
//! one small function.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bridge",
    version,
    about = "Bridge an IMAP mailbox and a Markdown notes vault",
    long_about = "mailbridge fetches IMAP threads into Markdown source notes, writes a draft \
                  reply note for each thread awaiting an answer, and appends approved drafts \
                  to the mailbox's Drafts folder."
)]
pub struct Cli {
    /// Config file (default: the platform config dir, e.g. ~/.config/mailbridge/config.yaml).
    #[arg(long, global = true, env = "BRIDGE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less log output (-q: warnings only, -qq: errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter config (never overwrites an existing one).
    Init,
    /// Store an account's password in the OS keychain.
    Login {
        /// Account name, as under `accounts:` in the config.
        account: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Check config, credentials, TLS, login, capabilities, folders, vault and SMTP.
    Doctor {
        /// Check only this account.
        #[arg(long)]
        account: Option<String>,
    },
    /// Fetch new mail into source notes and write drafts for threads awaiting a reply.
    Sync {
        /// Sync only this account.
        #[arg(long)]
        account: Option<String>,
        /// Do not run the draft generator.
        #[arg(long)]
        no_generate: bool,
    },
    /// Run the draft generator on source notes (default: every thread awaiting a reply without a draft).
    Generate {
        /// Source notes to generate drafts for.
        notes: Vec<PathBuf>,
    },
    /// Append draft notes to the mailbox's Drafts folder.
    Push {
        /// Draft notes to push.
        #[arg(required = true)]
        drafts: Vec<PathBuf>,
        /// Print the RFC 5322 message instead of appending it.
        #[arg(long)]
        dry_run: bool,
        /// Push even if the previously pushed copy was changed in the mail client.
        #[arg(long)]
        force: bool,
    },
    /// Send a draft over SMTP, file it in Sent and remove its pushed copy from Drafts.
    Send {
        /// The draft note to send.
        draft: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Show accounts with their last sync, and drafts by status.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Sync on a schedule in the foreground, and at once on new mail (IDLE).
    Watch,
    /// Print a shell completion script (e.g. `bridge completions bash > /etc/bash_completion.d/bridge`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Install or remove a scheduled `bridge sync` (launchd on macOS, systemd user timer on Linux).
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Install the scheduled job.
    Install,
    /// Remove the scheduled job.
    Uninstall,
}
