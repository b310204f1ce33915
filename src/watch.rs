//! `bridge watch`: sync in the foreground every `schedule.interval`, and at
//! once when new mail arrives (IMAP IDLE on INBOX).
//!
//! One task per account holds an IDLE connection and only *signals* new
//! mail; the sync itself runs in the main loop, one at a time, under the same
//! per-account lock as `bridge sync`, so a scheduled `bridge sync` and a watch
//! never sync an account at once. A signal (SIGINT, SIGTERM) is noticed
//! between syncs: the current sync finishes, then watch exits 0.

use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;

use crate::config::{Account, Config};
use crate::imap::{self, ConnectOptions, Credential};
use crate::sync;

/// RFC 2177: clients re-issue IDLE at least every 29 minutes.
const IDLE_REISSUE: Duration = Duration::from_secs(25 * 60);

/// Reconnect backoff for the IDLE connection: 1 s doubling to 5 minutes.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// New mail in a burst (a thread of replies) triggers one sync, not many.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Runs until SIGINT or SIGTERM.
pub fn run(config: &Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(watch(config))
}

async fn watch(config: &Config) -> Result<()> {
    let mut shutdown = Box::pin(shutdown_signal());
    let (new_mail_tx, mut new_mail) = mpsc::channel::<String>(64);
    for account in config.accounts.values() {
        tokio::spawn(idle_loop(account.clone(), new_mail_tx.clone()));
    }
    drop(new_mail_tx);
    tracing::info!(
        "watching {} account(s): a sync every {}s and on new mail; Ctrl-C stops",
        config.accounts.len(),
        config.schedule.interval.as_secs()
    );
    sync_all(config).await;
    let mut tick = tokio::time::interval(config.schedule.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the first sync just ran
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => sync_all(config).await,
            Some(account) = new_mail.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                // Collapse the burst: every account that signalled meanwhile.
                let mut accounts = vec![account];
                while let Ok(more) = new_mail.try_recv() {
                    if !accounts.contains(&more) {
                        accounts.push(more);
                    }
                }
                for id in accounts {
                    if let Some(account) = config.accounts.get(&id) {
                        tracing::info!("{id}: new mail");
                        sync_one(config, account).await;
                    }
                }
            }
        }
    }
    tracing::info!("stopping: signal received");
    Ok(())
}

async fn sync_all(config: &Config) {
    for account in config.accounts.values() {
        sync_one(config, account).await;
    }
}

/// One account's sync; failures are logged and the watch goes on.
async fn sync_one(config: &Config, account: &Account) {
    let started = sync::unix_now();
    let outcome = sync::sync_account(config, account).await;
    sync::record_run(config, account, started, &outcome);
    match outcome {
        Ok(summary) => tracing::info!("{summary}"),
        Err(err) => tracing::warn!("sync {}: {err:#}", account.id),
    }
}

/// Holds an IDLE connection on the account's INBOX and sends the account id
/// whenever the server reports a change. Reconnects with capped backoff,
/// saying so once per outage rather than on every attempt.
async fn idle_loop(account: Account, new_mail: mpsc::Sender<String>) {
    let mut backoff = BACKOFF_START;
    let mut outage_reported = false;
    loop {
        match idle_session(&account, &new_mail, &mut outage_reported).await {
            Ok(IdleEnd::Unsupported) => {
                tracing::info!(
                    "{}: the server has no IDLE; syncing on the interval only",
                    account.id
                );
                return;
            }
            Ok(IdleEnd::ReceiverGone) => return,
            Err(err) => {
                if !outage_reported {
                    tracing::warn!(
                        "{}: IDLE connection lost ({err:#}); reconnecting with backoff",
                        account.id
                    );
                    outage_reported = true;
                } else {
                    tracing::debug!("{}: reconnect failed: {err:#}", account.id);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

enum IdleEnd {
    Unsupported,
    ReceiverGone,
}

async fn idle_session(
    account: &Account,
    new_mail: &mpsc::Sender<String>,
    outage_reported: &mut bool,
) -> Result<IdleEnd> {
    let credential = Credential::for_account(account)?;
    let session = imap::open_session(account, &credential, &ConnectOptions::default()).await?;
    if !session.capabilities().has("IDLE") {
        return Ok(IdleEnd::Unsupported);
    }
    if *outage_reported {
        tracing::info!("{}: IDLE connection is back", account.id);
        *outage_reported = false;
    }
    let mut raw = session.into_raw();
    raw.examine("INBOX").await?;
    loop {
        // The stream's read timeout would cut a quiet IDLE; IDLE's own
        // re-issue timer takes over while it waits.
        raw.get_mut()
            .set_timeout(Some(IDLE_REISSUE + Duration::from_secs(120)));
        let mut handle = raw.idle();
        handle.init().await?;
        let (wait, _stop) = handle.wait_with_timeout(IDLE_REISSUE);
        let response = wait.await?;
        let changed = matches!(
            response,
            async_imap::extensions::idle::IdleResponse::NewData(_)
        );
        let interrupted = matches!(
            response,
            async_imap::extensions::idle::IdleResponse::ManualInterrupt
        );
        raw = handle.done().await?;
        raw.get_mut().set_timeout(Some(imap::DEFAULT_TIMEOUT));
        if interrupted {
            // async-imap reports a closed connection as an interrupt.
            anyhow::bail!("the server closed the IDLE connection");
        }
        if changed && new_mail.send(account.id.clone()).await.is_err() {
            return Ok(IdleEnd::ReceiverGone);
        }
        // Drop what async-imap queued meanwhile, or its queue of 100 fills.
        while raw.unsolicited_responses.try_recv().is_ok() {}
    }
}

/// Registers the SIGINT/SIGTERM handlers now (so a signal during the first
/// sync is not fatal) and resolves when one arrives.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
        let mut interrupt = signal(SignalKind::interrupt()).expect("install a SIGINT handler");
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
