//! The sync benchmark: `bridge sync` against mbsync (Debian `isync`) on the
//! same Dovecot mailbox over TLS on 127.0.0.1. See bench/README.md; run it
//! with `bench/sync.sh` or `cargo bench --bench sync -- --messages 10000`.
//!
//! For each mailbox size it starts a Dovecot of its own (the integration test
//! harness, `tests/support/`), writes a generated corpus (`bench/corpus.rs`)
//! straight into a fresh user's Maildir, lets Dovecot index it, runs one
//! untimed warm-up of each tool (up to 10,000 messages), then `--rounds`
//! rounds that alternate which tool goes first. Each round times, per tool, an initial sync (fresh local
//! store) and a no-change sync (the same store again): wall time and the
//! child's peak RSS (`wait4` rusage). It prints a table with medians, the
//! bridge/mbsync ratios and the targets of issue #3, then one JSON line.
//!
//! `bridge sync` exiting 2 ("not implemented yet") is reported as not
//! available; its numbers are never made up.

#[path = "../tests/support/mod.rs"]
mod support;

mod corpus;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};

use corpus::Folder;
use support::{MailServer, TestUser};

/// Issue #3's targets.
const TARGET_INITIAL_RATIO: f64 = 0.25;
const TARGET_NO_CHANGE_RATIO: f64 = 0.5;
const TARGET_PEAK_RSS_MIB: f64 = 40.0;
const TARGET_RSS_GROWTH_PCT: f64 = 10.0;

/// The environment variable the bridge config reads the password from.
const PASSWORD_ENV: &str = "BENCH_IMAP_PASSWORD";

#[derive(Parser, Debug)]
#[command(
    name = "sync-bench",
    about = "bridge sync vs mbsync on a generated Dovecot mailbox (see bench/README.md)"
)]
struct Args {
    /// Mailbox sizes, comma-separated; each gets a fresh Dovecot and user.
    /// With several, bridge's peak-RSS growth from the first to the last is reported.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    messages: Vec<usize>,
    /// Timed rounds for sizes up to 10,000 messages.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Timed rounds for sizes above 10,000 (memory runs).
    #[arg(long, default_value_t = 1)]
    large_rounds: usize,
    /// Corpus seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Skip the untimed warm-up run of each tool (sizes above 10,000 never
    /// have one: they are for memory).
    #[arg(long)]
    no_warmup: bool,
    /// Run `bridge sync` with draft generation (default: `--no-generate`,
    /// the same work as mbsync: fetch and store).
    #[arg(long)]
    generate: bool,
    /// The bridge binary (default: the one cargo built with this bench).
    #[arg(long)]
    bridge: Option<PathBuf>,
    /// The mbsync binary.
    #[arg(long, default_value = "mbsync")]
    mbsync: PathBuf,
    /// Kill a sync running longer than this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// Keep the work directory: configs, every sync's stdout/stderr and the
    /// local stores (otherwise removed once a mailbox size is done).
    #[arg(long)]
    keep: bool,
    /// Where the work directory (mbsync's Maildir, bridge's vault and state)
    /// goes; default: the system temp dir. A tmpfs (/dev/shm) takes the
    /// disk's fsync latency out of both tools' times.
    #[arg(long)]
    store_dir: Option<PathBuf>,
    /// Populate the first mailbox size, print a bridge config for it and
    /// keep Dovecot up until stdin closes: for profiling `bridge sync` by
    /// hand (perf, heaptrack) without timing anything.
    #[arg(long)]
    serve: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// When the bench started, for the progress lines.
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// A progress line, prefixed with the seconds since the start.
macro_rules! progress {
    ($($arg:tt)*) => {
        println!(
            "[{:6.1}s] {}",
            START.get_or_init(Instant::now).elapsed().as_secs_f64(),
            format_args!($($arg)*)
        )
    };
}

fn main() {
    START.get_or_init(Instant::now);
    let args = Args::parse();
    if let Err(err) = run(&args) {
        eprintln!("sync bench: error: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let bridge = args
        .bridge
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_bridge")));
    let mbsync_version = tool_version(&args.mbsync, "--version").with_context(|| {
        format!(
            "cannot run {} (Debian package isync)",
            args.mbsync.display()
        )
    })?;
    let dovecot_version = tool_version(Path::new("dovecot"), "--version").unwrap_or_default();
    let machine = Machine::detect();
    println!("machine: {}", machine.describe());
    let source = match &args.bridge {
        Some(_) => "given with --bridge".to_string(),
        None => format!("built from {}", source_version()),
    };
    println!("bridge: {} ({source})", bridge.display());
    println!("mbsync: {mbsync_version}; Dovecot {dovecot_version}");

    let mut results = Vec::new();
    for (i, &messages) in args.messages.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let rounds = if messages > 10_000 {
            args.large_rounds
        } else {
            args.rounds
        };
        let result = bench_size(args, &bridge, messages, rounds.max(1))?;
        progress!("done with {messages} messages");
        print_table(&result, &mbsync_version, &dovecot_version);
        results.push(result);
    }

    let growth = rss_growth(&results);
    if let Some(line) = growth.as_ref().map(Growth::describe) {
        println!("\n{line}");
    } else if results.len() > 1 {
        println!("\nbridge peak RSS growth: not available (bridge sync not built or failed)");
    }

    let json = json!({
        "bench": "sync",
        "machine": machine.to_json(),
        "dovecot": dovecot_version,
        "bridge_source": source,
        "mbsync_version": mbsync_version,
        "runs": results.iter().map(SizeResult::to_json).collect::<Vec<_>>(),
        "bridge_rss_growth": growth.as_ref().map(Growth::to_json),
        "targets": {
            "initial_ratio_max": TARGET_INITIAL_RATIO,
            "no_change_ratio_max": TARGET_NO_CHANGE_RATIO,
            "peak_rss_mib_max": TARGET_PEAK_RSS_MIB,
            "rss_growth_pct_max": TARGET_RSS_GROWTH_PCT,
        },
    });
    println!("{json}");
    Ok(())
}

// ---------------------------------------------------------------------------
// One mailbox size

/// What happened to one tool over the rounds.
#[derive(Default)]
struct ToolRuns {
    initial: Vec<Sample>,
    no_change: Vec<Sample>,
    /// Set when the tool cannot be measured (bridge sync not built, or failed).
    unavailable: Option<String>,
    /// Anything odd that does not invalidate the numbers (shown under the table).
    notes: Vec<String>,
}

#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    max_rss_kib: u64,
}

struct SizeResult {
    messages: usize,
    rounds: usize,
    corpus: corpus::Stats,
    populate: Duration,
    bridge: ToolRuns,
    mbsync: ToolRuns,
    generate: bool,
    warmup: bool,
    /// /proc/loadavg's 1, 5 and 15 minute figures before and after: other
    /// work on the machine shows up here, and in the times.
    load: [String; 2],
    /// The directory the local stores were in.
    store_dir: PathBuf,
}

fn bench_size(
    args: &Args,
    bridge_bin: &Path,
    messages: usize,
    rounds: usize,
) -> Result<SizeResult> {
    let load_before = loadavg();
    progress!("{messages} messages: starting Dovecot (load average {load_before})");
    let server = MailServer::start();
    if server.is_greenmail() {
        bail!("the benchmark needs the harness's own Dovecot: unset MAILBRIDGE_TEST_SERVER");
    }
    let user = server.add_user("bench");
    let mut builder = tempfile::Builder::new();
    builder.prefix("mailbridge-bench-");
    let work = match &args.store_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .context("create the work dir")?;
    let started = Instant::now();
    let (stats, expected) = populate(&server, &user, messages, args.seed)?;
    let populate = started.elapsed();
    progress!(
        "populated in {:.1} s: {}",
        populate.as_secs_f64(),
        stats.describe()
    );

    let ctx = Ctx {
        server: &server,
        user: &user,
        work: work.path(),
        bridge: bridge_bin,
        mbsync: &args.mbsync,
        timeout: Duration::from_secs(args.timeout),
        generate: args.generate,
        expected: &expected,
        threads: stats.threads.len(),
        mbsync_certs: mbsync_certificate_file(&server, work.path())?,
    };
    let mut bridge = ToolRuns::default();
    let mut mbsync = ToolRuns::default();
    let mut modseq = ctx.modseqs();

    // Larger sizes are for memory, which a warm-up does not change; on a
    // slow disk mbsync's warm-up alone takes minutes there.
    if args.serve {
        return serve(&ctx);
    }
    let warmup = !args.no_warmup && messages <= 10_000;
    if warmup {
        ctx.round(Tool::Mbsync, "warmup", &mut mbsync, false)?;
        ctx.round(Tool::Bridge, "warmup", &mut bridge, false)?;
        ctx.check_mailbox_unchanged(&mut modseq, &mut bridge, &mut mbsync);
    }
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Tool::Bridge, Tool::Mbsync]
        } else {
            [Tool::Mbsync, Tool::Bridge]
        };
        for tool in order {
            let runs = match tool {
                Tool::Bridge => &mut bridge,
                Tool::Mbsync => &mut mbsync,
            };
            ctx.round(tool, &format!("round {}/{rounds}", round + 1), runs, true)?;
        }
        ctx.check_mailbox_unchanged(&mut modseq, &mut bridge, &mut mbsync);
    }
    if args.keep {
        progress!("kept the work dir {}", work.keep().display());
    }
    let load_after = loadavg();
    progress!("stopping Dovecot, removing the mailbox (load average {load_after})");
    Ok(SizeResult {
        messages,
        rounds,
        corpus: stats,
        populate,
        bridge,
        mbsync,
        generate: args.generate,
        warmup,
        load: [load_before, load_after],
        store_dir: args.store_dir.clone().unwrap_or_else(std::env::temp_dir),
    })
}

/// `--serve`: a config for the populated mailbox, then wait for stdin to close.
fn serve(ctx: &Ctx) -> Result<SizeResult> {
    let dir = ctx.work.join("serve");
    std::fs::create_dir_all(&dir)?;
    let config = ctx.write_bridge_config(&dir, &dir.join("vault"))?;
    println!(
        "serving; run: {PASSWORD_ENV}='{}' {} --config {} sync --no-generate",
        ctx.user.password,
        ctx.bridge.display(),
        config.display()
    );
    println!(
        "(the vault and state are under {}; close stdin to stop)",
        dir.display()
    );
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    bail!("stopped serving")
}

/// Waits until the wall clock is in a later second than now (plus a margin).
///
/// A no-change sync normally runs minutes after the previous one. Run at
/// once, mbsync finds its Maildir modified "in the current second" and
/// sleeps a whole second before trusting its listing (isync's
/// `maildir_scan`); file-time based change detection in any tool has the
/// same one-second granularity. Both tools get this pause, untimed.
fn next_second() {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let rest =
        Duration::from_secs(1).saturating_sub(Duration::from_nanos(u64::from(now.subsec_nanos())));
    std::thread::sleep(rest + Duration::from_millis(20));
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Bridge,
    Mbsync,
}

struct Ctx<'a> {
    server: &'a MailServer,
    user: &'a TestUser,
    work: &'a Path,
    bridge: &'a Path,
    mbsync: &'a Path,
    timeout: Duration,
    generate: bool,
    /// Messages per folder on the server.
    expected: &'a BTreeMap<Folder, usize>,
    threads: usize,
    /// mbsync's CertificateFile: the CA and the server certificate.
    mbsync_certs: PathBuf,
}

impl Ctx<'_> {
    /// One initial sync on a fresh local store, then a no-change sync on it.
    /// With `record` false (warm-up) the samples are dropped.
    fn round(&self, tool: Tool, label: &str, runs: &mut ToolRuns, record: bool) -> Result<()> {
        if runs.unavailable.is_some() {
            return Ok(());
        }
        let slug: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = self.work.join(format!("{tool:?}-{slug}").to_lowercase());
        std::fs::create_dir_all(&dir)?;
        let result = match tool {
            Tool::Mbsync => self.mbsync_round(&dir),
            Tool::Bridge => self.bridge_round(&dir, runs),
        };
        // The stores stay until the work dir goes, after the last round of
        // this size: on ext4 here, creating files where thousands were just
        // deleted costs up to ten times as much (inode allocation walks the
        // freed inodes), so deleting one round's store would slow the next
        // tool's initial sync by an amount that depends on the order.
        let name = match tool {
            Tool::Mbsync => "mbsync",
            Tool::Bridge => "bridge sync",
        };
        let untimed = if record { "" } else { " (warm-up, untimed)" };
        match result? {
            Some((initial, no_change)) => {
                progress!(
                    "{label} {name}: initial {}, no-change {}; peak RSS {:.1} / {:.1} MiB{untimed}",
                    secs(initial.wall),
                    secs(no_change.wall),
                    initial.max_rss_kib as f64 / 1024.0,
                    no_change.max_rss_kib as f64 / 1024.0,
                );
                if record {
                    runs.initial.push(initial);
                    runs.no_change.push(no_change);
                }
            }
            None => progress!(
                "{label} {name}: {}",
                runs.unavailable.as_deref().unwrap_or("no figures")
            ),
        }
        Ok(())
    }

    /// mbsync's (initial, no-change) samples; any failure is an error.
    fn mbsync_round(&self, dir: &Path) -> Result<Option<(Sample, Sample)>> {
        let store = dir.join("store");
        let rc = self.write_mbsyncrc(dir, &store)?;
        let command = || {
            let mut c = Command::new(self.mbsync);
            c.arg("-c").arg(&rc).arg("-a");
            c
        };
        let initial = measure(command(), &dir.join("initial"), self.timeout)?;
        if !initial.success() {
            bail!(
                "mbsync failed ({}): {}\nconfig {}",
                initial.status,
                initial.stderr_tail,
                rc.display()
            );
        }
        // Every message must have arrived, or the time means nothing.
        for (folder, &want) in self.expected {
            let got = count_maildir(&store.join(folder.name()));
            if got != want {
                bail!(
                    "mbsync stored {got} of {want} messages of {} (see {})",
                    folder.name(),
                    dir.display()
                );
            }
        }
        next_second();
        let no_change = measure(command(), &dir.join("no-change"), self.timeout)?;
        if !no_change.success() {
            bail!(
                "mbsync no-change sync failed ({}): {}",
                no_change.status,
                no_change.stderr_tail
            );
        }
        Ok(Some((initial.sample(), no_change.sample())))
    }

    /// bridge's (initial, no-change) samples, or None with
    /// `runs.unavailable` set when it is not built or failed.
    fn bridge_round(&self, dir: &Path, runs: &mut ToolRuns) -> Result<Option<(Sample, Sample)>> {
        let vault = dir.join("vault");
        let config = self.write_bridge_config(dir, &vault)?;
        let command = || {
            let mut c = Command::new(self.bridge);
            c.arg("--config").arg(&config).arg("sync");
            if !self.generate {
                c.arg("--no-generate");
            }
            c.env(PASSWORD_ENV, &self.user.password)
                .env_remove("BRIDGE_CONFIG")
                .env("NO_COLOR", "1");
            c
        };
        let initial = measure(command(), &dir.join("initial"), self.timeout)?;
        if let Some(reason) = initial.bridge_unavailable() {
            runs.unavailable = Some(reason);
            return Ok(None);
        }
        let notes = count_files(&vault, "md");
        if notes == 0 {
            runs.notes.push(format!(
                "bridge sync wrote no notes under {} (corpus: {} threads)",
                vault.display(),
                self.threads
            ));
        }
        let before = snapshot(&vault);
        next_second();
        let no_change = measure(command(), &dir.join("no-change"), self.timeout)?;
        if let Some(reason) = no_change.bridge_unavailable() {
            runs.unavailable = Some(format!("no-change sync: {reason}"));
            return Ok(None);
        }
        let after = snapshot(&vault);
        let changed = diff_count(&before, &after);
        let note = format!(
            "notes written: {notes} (corpus: {} threads); files changed by the no-change sync: {changed}",
            self.threads
        );
        if !runs.notes.contains(&note) {
            runs.notes.push(note);
        }
        Ok(Some((initial.sample(), no_change.sample())))
    }

    fn write_mbsyncrc(&self, dir: &Path, store: &Path) -> Result<PathBuf> {
        // A fresh store for the initial sync.
        let _ = std::fs::remove_dir_all(store);
        std::fs::create_dir_all(store)?;
        let rc = dir.join("mbsyncrc");
        let text = format!(
            "# Written by the mailbridge sync benchmark.\n\
             IMAPAccount bench\n\
             Host {host}\n\
             Port {port}\n\
             User \"{user}\"\n\
             Pass \"{pass}\"\n\
             SSLType IMAPS\n\
             CertificateFile {certs}\n\
             \n\
             IMAPStore bench-far\n\
             Account bench\n\
             \n\
             MaildirStore bench-near\n\
             Path {store}/\n\
             Inbox {store}/INBOX\n\
             SubFolders Verbatim\n\
             \n\
             Channel bench\n\
             Far :bench-far:\n\
             Near :bench-near:\n\
             Patterns INBOX Sent\n\
             Sync Pull\n\
             Create Near\n\
             SyncState *\n",
            host = self.server.host(),
            port = self.server.imaps_port(),
            user = self.user.username,
            pass = self.user.password,
            certs = self.mbsync_certs.display(),
            store = store.display(),
        );
        write_private(&rc, &text)?;
        Ok(rc)
    }

    fn write_bridge_config(&self, dir: &Path, vault: &Path) -> Result<PathBuf> {
        let _ = std::fs::remove_dir_all(vault);
        let state = dir.join("state");
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(vault)?;
        let q = |p: &Path| support::yaml_str(&p.display().to_string());
        let text = format!(
            "# Written by the mailbridge sync benchmark.\n\
             vault: {vault}\n\
             state_dir: {state}\n\
             accounts:\n  \
               bench:\n    \
                 email: {email}\n    \
                 name: Bench User\n    \
                 username: {username}\n    \
                 imap: {{ host: 127.0.0.1, port: {port}, security: tls }}\n    \
                 ca_file: {ca}\n    \
                 password: {{ env: {PASSWORD_ENV} }}\n    \
                 folders:\n      \
                   sync: [INBOX, Sent]\n\
             drafts:\n  \
               push: manual\n",
            vault = q(vault),
            state = q(&state),
            email = support::yaml_str(&self.user.email),
            username = support::yaml_str(&self.user.username),
            port = self.server.imaps_port(),
            ca = q(self.server.ca_file()),
        );
        let path = dir.join("config.yaml");
        write_private(&path, &text)?;
        Ok(path)
    }

    /// HIGHESTMODSEQ of each folder: a sync must not change the mailbox.
    fn modseqs(&self) -> String {
        self.server.doveadm(&[
            "-f",
            "flow",
            "mailbox",
            "status",
            "-u",
            &self.user.username,
            "messages highestmodseq",
            "INBOX",
            "Sent",
        ])
    }

    fn check_mailbox_unchanged(
        &self,
        last: &mut String,
        bridge: &mut ToolRuns,
        mbsync: &mut ToolRuns,
    ) {
        let now = self.modseqs();
        if now != *last {
            let note = format!(
                "the mailbox changed during the round (a sync must only read): before {:?}, after {:?}",
                last.trim(),
                now.trim()
            );
            bridge.notes.push(note.clone());
            mbsync.notes.push(note);
            *last = now;
        }
    }
}

/// mbsync 1.4 matches the host name against the certificate's DNS names
/// only, never its IP addresses, so `Host 127.0.0.1` fails verification
/// against the harness certificate (SAN `IP:127.0.0.1, DNS:localhost`).
/// mbsync trusts a server certificate listed in `CertificateFile` as it is
/// (exact match, checked before the host name): give it the CA and the
/// server's own certificate, read from the `ssl_cert` of Dovecot's config.
fn mbsync_certificate_file(server: &MailServer, work: &Path) -> Result<PathBuf> {
    let dir = server.dir().context("the harness's Dovecot has no dir")?;
    let conf = std::fs::read_to_string(dir.join("dovecot.conf")).context("read dovecot.conf")?;
    let cert = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("ssl_cert = <"))
        .context("no `ssl_cert = <file` in the harness's dovecot.conf")?;
    let mut pem = std::fs::read_to_string(server.ca_file()).context("read the CA")?;
    pem.push_str(&std::fs::read_to_string(cert.trim()).context("read the server certificate")?);
    let path = work.join("mbsync-certs.pem");
    std::fs::write(&path, pem)?;
    Ok(path)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Populating the mailbox

/// Writes the corpus straight into the user's Maildir folders (Dovecot's own
/// file-name pattern, `,S=<size>`, flags in the name, mtime = date), then has
/// Dovecot index them and checks its message counts.
fn populate(
    server: &MailServer,
    user: &TestUser,
    messages: usize,
    seed: u64,
) -> Result<(corpus::Stats, BTreeMap<Folder, usize>)> {
    use std::os::unix::fs::MetadataExt;
    // The first login creates the Maildir and the auto folders (Sent, ...).
    server.list(user);
    let mut dirs = BTreeMap::new();
    for folder in [Folder::Inbox, Folder::Sent] {
        let path = server.doveadm(&["mailbox", "path", "-u", &user.username, folder.name()]);
        let path = PathBuf::from(path.trim());
        corpus::create_maildir(&path)
            .with_context(|| format!("create the Maildir {}", path.display()))?;
        dirs.insert(folder, path);
    }
    // Files must belong to whoever Dovecot runs mail processes as.
    let owner = std::fs::metadata(&dirs[&Folder::Inbox])?;
    let (uid, gid) = (owner.uid(), owner.gid());
    for dir in dirs.values() {
        for sub in ["", "cur", "new", "tmp"] {
            std::os::unix::fs::chown(dir.join(sub), Some(uid), Some(gid))?;
        }
    }
    let mut options = corpus::Options::new(messages, "Bench User", &user.email);
    options.seed = seed;
    let mut stats = corpus::Stats::default();
    let mut expected = BTreeMap::new();
    for (seq, message) in corpus::Corpus::new(options).enumerate() {
        let path = corpus::write_maildir(&dirs[&message.folder], seq as u64, &message)
            .context("write a message file")?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        *expected.entry(message.folder).or_insert(0) += 1;
        stats.add(&message);
    }
    // Index now, not during the first timed sync; reading vsize also reads
    // every file once.
    for folder in [Folder::Inbox, Folder::Sent] {
        server.doveadm(&["force-resync", "-u", &user.username, folder.name()]);
    }
    let status = server.doveadm(&[
        "-f",
        "flow",
        "mailbox",
        "status",
        "-u",
        &user.username,
        "messages vsize",
        "INBOX",
        "Sent",
    ]);
    for (folder, want) in &expected {
        let line = status
            .lines()
            .find(|l| {
                // `Sent messages=1 vsize=2` (or `mailbox=Sent ...`).
                let name = l.split_whitespace().next().unwrap_or("");
                name.strip_prefix("mailbox=").unwrap_or(name) == folder.name()
            })
            .with_context(|| {
                format!(
                    "doveadm mailbox status printed no {}: {status}",
                    folder.name()
                )
            })?;
        let got: usize = field(line, "messages")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no messages= in {line:?}"))?;
        if got != *want {
            bail!(
                "Dovecot sees {got} messages in {}, {want} were written\n{}",
                folder.name(),
                server.log()
            );
        }
    }
    Ok((stats, expected))
}

/// `key=value` out of a doveadm flow line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn count_maildir(dir: &Path) -> usize {
    ["cur", "new"]
        .iter()
        .map(|sub| {
            std::fs::read_dir(dir.join(sub))
                .map(|entries| entries.filter_map(Result::ok).count())
                .unwrap_or(0)
        })
        .sum()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn count_files(dir: &Path, ext: &str) -> usize {
    let mut files = Vec::new();
    walk(dir, &mut files);
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .count()
}

/// Path → (size, mtime) of every file under `dir`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    let mut files = Vec::new();
    walk(dir, &mut files);
    files
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            Some((p, (meta.len(), meta.modified().ok())))
        })
        .collect()
}

fn diff_count(
    a: &BTreeMap<PathBuf, (u64, Option<SystemTime>)>,
    b: &BTreeMap<PathBuf, (u64, Option<SystemTime>)>,
) -> usize {
    let changed = a.iter().filter(|(p, v)| b.get(*p) != Some(v)).count();
    let added = b.keys().filter(|p| !a.contains_key(*p)).count();
    changed + added
}

// ---------------------------------------------------------------------------
// Measuring a child: wall time and peak RSS from wait4()

struct Measured {
    wall: Duration,
    max_rss_kib: u64,
    /// `exit N` or `signal N`.
    status: String,
    code: Option<i32>,
    stderr_tail: String,
}

impl Measured {
    fn success(&self) -> bool {
        self.code == Some(0)
    }

    fn sample(&self) -> Sample {
        Sample {
            wall: self.wall,
            max_rss_kib: self.max_rss_kib,
        }
    }

    /// Why bridge's numbers cannot be used, if they cannot.
    fn bridge_unavailable(&self) -> Option<String> {
        if self.success() {
            None
        } else if self.code == Some(2) && self.stderr_tail.contains("not implemented") {
            Some("not available (bridge sync not built)".to_string())
        } else {
            Some(format!(
                "not available (bridge sync failed: {}: {})",
                self.status,
                self.stderr_tail.lines().last().unwrap_or("").trim()
            ))
        }
    }
}

/// Runs `command` with stdout/stderr to `<prefix>.out`/`<prefix>.err`,
/// measuring wall time from spawn to exit and the peak RSS the kernel
/// reports for it (`ru_maxrss`). Kills it after `timeout`.
fn measure(mut command: Command, prefix: &Path, timeout: Duration) -> Result<Measured> {
    let out = std::fs::File::create(prefix.with_extension("out"))?;
    let err_path = prefix.with_extension("err");
    let err = std::fs::File::create(&err_path)?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    let start = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let pid = child.id() as libc::pid_t;

    // A watchdog kills the child if it overruns; it is stopped before the
    // child is reaped, so it can never signal a recycled pid.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(timeout) {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            true
        } else {
            false
        }
    });

    // Wait for the exit without reaping it...
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid(2).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child, WNOWAIT leaves it a zombie.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waitid");
        }
    }
    let wall = start.elapsed();
    drop(stop);
    let killed = watchdog.join().unwrap_or(false);

    // ... then reap it with its resource usage.
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4(2).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own exited child.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    // The std handle must not wait for it again; dropping it does not.
    drop(child);

    let (code, status_text) = if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (Some(code), format!("exit {code}"))
    } else if libc::WIFSIGNALED(status) {
        (None, format!("signal {}", libc::WTERMSIG(status)))
    } else {
        (None, format!("wait status {status}"))
    };
    let status_text = if killed {
        format!("killed after the {} s timeout", timeout.as_secs())
    } else {
        status_text
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    Ok(Measured {
        wall,
        // Linux reports kilobytes (KiB).
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        status: status_text,
        code,
        stderr_tail: tail_lines(&stderr, 5),
    })
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// Reporting

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

fn walls(samples: &[Sample]) -> Vec<f64> {
    samples.iter().map(|s| s.wall.as_secs_f64()).collect()
}

fn rss_mib(samples: &[Sample]) -> Vec<f64> {
    samples
        .iter()
        .map(|s| s.max_rss_kib as f64 / 1024.0)
        .collect()
}

fn max_of(values: &[f64]) -> Option<f64> {
    values.iter().copied().reduce(f64::max)
}

fn secs(d: Duration) -> String {
    fmt_secs(d.as_secs_f64())
}

fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.3} s")
    }
}

impl ToolRuns {
    fn available(&self) -> bool {
        self.unavailable.is_none() && !self.initial.is_empty()
    }

    fn to_json(&self) -> Value {
        if let Some(reason) = &self.unavailable {
            return json!({ "available": false, "reason": reason, "notes": self.notes });
        }
        let part = |samples: &[Sample]| {
            json!({
                "wall_s": walls(samples),
                "median_wall_s": median(walls(samples)),
                "peak_rss_mib": rss_mib(samples),
                "median_peak_rss_mib": median(rss_mib(samples)),
                "max_peak_rss_mib": max_of(&rss_mib(samples)),
            })
        };
        json!({
            "available": self.available(),
            "initial": part(&self.initial),
            "no_change": part(&self.no_change),
            "notes": self.notes,
        })
    }
}

impl SizeResult {
    /// bridge/mbsync median wall-time ratios (initial, no-change).
    fn ratios(&self) -> (Option<f64>, Option<f64>) {
        if !self.bridge.available() {
            return (None, None);
        }
        let ratio = |b: &[Sample], m: &[Sample]| Some(median(walls(b))? / median(walls(m))?);
        (
            ratio(&self.bridge.initial, &self.mbsync.initial),
            ratio(&self.bridge.no_change, &self.mbsync.no_change),
        )
    }

    /// bridge's peak RSS over every timed run (initial and no-change).
    fn bridge_peak_rss_mib(&self) -> Option<f64> {
        if !self.bridge.available() {
            return None;
        }
        let mut all = rss_mib(&self.bridge.initial);
        all.extend(rss_mib(&self.bridge.no_change));
        max_of(&all)
    }

    fn to_json(&self) -> Value {
        let (initial, no_change) = self.ratios();
        let peak = self.bridge_peak_rss_mib();
        let c = &self.corpus;
        json!({
            "messages": self.messages,
            "rounds": self.rounds,
            "bridge_args": if self.generate { "sync" } else { "sync --no-generate" },
            "corpus": {
                "bytes": c.bytes,
                "folders": c.folders,
                "threads": c.threads.len(),
                "threads_missing_root": c.threads_missing_root.len(),
                "in_both_folders": c.in_both_folders,
                "without_message_id": c.without_message_id,
                "with_attachment": c.with_attachment,
                "charsets": c.charsets,
                "structures": c.structures,
            },
            "populate_s": self.populate.as_secs_f64(),
            "warmup": self.warmup,
            "loadavg_before": self.load[0],
            "loadavg_after": self.load[1],
            "store_dir": self.store_dir.display().to_string(),
            "mbsync": self.mbsync.to_json(),
            "bridge": self.bridge.to_json(),
            "ratio_initial": initial,
            "ratio_no_change": no_change,
            "bridge_peak_rss_mib": peak,
            "meets": {
                "initial": initial.map(|r| r <= TARGET_INITIAL_RATIO),
                "no_change": no_change.map(|r| r <= TARGET_NO_CHANGE_RATIO),
                "peak_rss": peak.map(|p| p <= TARGET_PEAK_RSS_MIB),
            },
        })
    }
}

fn verdict(value: Option<f64>, limit: f64) -> &'static str {
    match value {
        Some(v) if v <= limit => "met",
        Some(_) => "MISSED",
        None => "n/a",
    }
}

fn print_table(r: &SizeResult, mbsync_version: &str, dovecot_version: &str) {
    let na = "n/a";
    let bridge_na = r.bridge.unavailable.as_deref();
    let med = |samples: &[Sample]| median(walls(samples)).map(fmt_secs);
    let med_rss = |samples: &[Sample]| median(rss_mib(samples)).map(|m| format!("{m:.1} MiB"));
    let cell = |available: bool, value: Option<String>| {
        if available {
            value.unwrap_or_else(|| na.to_string())
        } else {
            na.to_string()
        }
    };
    let b_ok = r.bridge.available();
    let (ri, rn) = r.ratios();
    let ratio = |x: Option<f64>| x.map_or_else(|| na.to_string(), |x| format!("{x:.3}×"));
    let peak = r.bridge_peak_rss_mib();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nsync benchmark: {} messages, {} timed round{} ({}medians; alternating order; {}), \
         Dovecot {dovecot_version} over TLS on 127.0.0.1, {mbsync_version}; local stores in {}",
        r.messages,
        r.rounds,
        if r.rounds == 1 { "" } else { "s" },
        if r.warmup {
            "after an untimed warm-up; "
        } else {
            ""
        },
        if r.generate {
            "bridge sync"
        } else {
            "bridge sync --no-generate"
        },
        r.store_dir.display(),
    );
    let _ = writeln!(
        t,
        "{:<26} {:>16} {:>16} {:>14} {:>22}",
        "",
        if r.generate {
            "bridge sync"
        } else {
            "bridge sync*"
        },
        "mbsync",
        "bridge/mbsync",
        "target"
    );
    let rows = [
        (
            "initial sync, wall",
            cell(b_ok, med(&r.bridge.initial)),
            med(&r.mbsync.initial).unwrap_or_default(),
            ratio(ri),
            format!(
                "≤ {TARGET_INITIAL_RATIO}× ({})",
                verdict(ri, TARGET_INITIAL_RATIO)
            ),
        ),
        (
            "no-change sync, wall",
            cell(b_ok, med(&r.bridge.no_change)),
            med(&r.mbsync.no_change).unwrap_or_default(),
            ratio(rn),
            format!(
                "≤ {TARGET_NO_CHANGE_RATIO}× ({})",
                verdict(rn, TARGET_NO_CHANGE_RATIO)
            ),
        ),
        (
            "initial sync, peak RSS",
            cell(b_ok, med_rss(&r.bridge.initial)),
            med_rss(&r.mbsync.initial).unwrap_or_default(),
            String::new(),
            format!(
                "≤ {TARGET_PEAK_RSS_MIB} MiB ({})",
                verdict(peak, TARGET_PEAK_RSS_MIB)
            ),
        ),
        (
            "no-change sync, peak RSS",
            cell(b_ok, med_rss(&r.bridge.no_change)),
            med_rss(&r.mbsync.no_change).unwrap_or_default(),
            String::new(),
            String::new(),
        ),
    ];
    for (name, b, m, q, target) in rows {
        let _ = writeln!(t, "{name:<26} {b:>16} {m:>16} {q:>14} {target:>22}");
    }
    if !r.generate {
        let _ = writeln!(
            t,
            "* bridge sync --no-generate: fetch and write notes, as mbsync fetches and stores"
        );
    }
    if let Some(reason) = bridge_na {
        let _ = writeln!(t, "bridge sync: {reason}");
    } else if let Some(p) = peak {
        let _ = writeln!(t, "bridge sync: highest peak RSS of any run {p:.1} MiB");
    }
    let raw = |name: &str, s: &[Sample]| {
        format!(
            "{name}: wall {} | peak RSS {}",
            s.iter()
                .map(|x| secs(x.wall))
                .collect::<Vec<_>>()
                .join(", "),
            s.iter()
                .map(|x| format!("{:.1} MiB", x.max_rss_kib as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let _ = writeln!(
        t,
        "load average (1/5/15 min) before {}, after {} on {} CPUs",
        r.load[0],
        r.load[1],
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(t, "runs: {}", raw("mbsync initial", &r.mbsync.initial));
    let _ = writeln!(t, "      {}", raw("mbsync no-change", &r.mbsync.no_change));
    if b_ok {
        let _ = writeln!(t, "      {}", raw("bridge initial", &r.bridge.initial));
        let _ = writeln!(t, "      {}", raw("bridge no-change", &r.bridge.no_change));
    }
    for note in r
        .mbsync
        .notes
        .iter()
        .map(|n| format!("mbsync: {n}"))
        .chain(r.bridge.notes.iter().map(|n| format!("bridge: {n}")))
    {
        let _ = writeln!(t, "note: {note}");
    }
    print!("{t}");
}

/// bridge's peak RSS from the smallest to the largest mailbox of the run.
struct Growth {
    from_messages: usize,
    from_mib: f64,
    to_messages: usize,
    to_mib: f64,
}

impl Growth {
    fn pct(&self) -> f64 {
        (self.to_mib / self.from_mib - 1.0) * 100.0
    }

    fn describe(&self) -> String {
        let pct = self.pct();
        format!(
            "bridge peak RSS: {} messages {:.1} MiB → {} messages {:.1} MiB: growth {pct:+.1}% \
             (target < {TARGET_RSS_GROWTH_PCT}%: {})",
            self.from_messages,
            self.from_mib,
            self.to_messages,
            self.to_mib,
            if pct < TARGET_RSS_GROWTH_PCT {
                "met"
            } else {
                "MISSED"
            }
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "from_messages": self.from_messages,
            "from_peak_rss_mib": self.from_mib,
            "to_messages": self.to_messages,
            "to_peak_rss_mib": self.to_mib,
            "growth_pct": self.pct(),
            "meets": self.pct() < TARGET_RSS_GROWTH_PCT,
        })
    }
}

fn rss_growth(results: &[SizeResult]) -> Option<Growth> {
    let small = results.iter().min_by_key(|r| r.messages)?;
    let large = results.iter().max_by_key(|r| r.messages)?;
    if small.messages == large.messages {
        return None;
    }
    Some(Growth {
        from_messages: small.messages,
        from_mib: small.bridge_peak_rss_mib()?,
        to_messages: large.messages,
        to_mib: large.bridge_peak_rss_mib()?,
    })
}

// ---------------------------------------------------------------------------
// The machine

struct Machine {
    nproc: usize,
    cpu: String,
    mem_mib: u64,
    kernel: String,
}

impl Machine {
    fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            mem_mib: mem_kib / 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} CPUs ({}), {:.1} GiB RAM, Linux {}",
            self.nproc,
            self.cpu,
            self.mem_mib as f64 / 1024.0,
            self.kernel
        )
    }

    fn to_json(&self) -> Value {
        json!({ "nproc": self.nproc, "cpu": self.cpu, "mem_mib": self.mem_mib, "kernel": self.kernel })
    }
}

/// The commit this bench and its bridge were built from, and whether the
/// tree had uncommitted changes (the bridge binary is built from the tree).
fn source_version() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit} with uncommitted changes")
            } else {
                commit
            }
        }
        None => "unknown source".to_string(),
    }
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn tool_version(program: &Path, flag: &str) -> Result<String> {
    let output = Command::new(program)
        .arg(flag)
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}
