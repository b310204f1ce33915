//! Fetching around responses the IMAP parser cannot read (SPEC
//! §Reliability: one bad message never aborts a sync).
//!
//! Real servers now and then send a FETCH response imap-proto rejects: an
//! unescaped quote in a Content-Description, `NIL` where a string must be,
//! extension data in odd places (emersion/go-imap#659, MailKit#1393,
//! swift-nio-imap#263). async-imap reads nothing after it, so the session is
//! done for; and a retry would fetch the same batch and fail the same way,
//! on every later run too. Instead, after each such failure the batch is
//! fetched again over a fresh session, in smaller sets, down to the messages
//! whose response cannot be parsed:
//!
//! - first pass (structure): such a message is fetched whole, as single-part
//!   ones are; its note is the same (its attachments listed from its MIME
//!   rather than from BODYSTRUCTURE);
//! - second pass (content): a message planned in parts is fetched whole; one
//!   whose whole content cannot be parsed either becomes a placeholder
//!   (`undecodable`), so it is still in a note and the folder moves past it.
//!
//! Each is counted in the summary's problems. A server that cannot write
//! the BODYSTRUCTURE of some kind of mail at all (one that never escapes
//! quotes) would cost two reconnects for each such message: after a few in
//! one batch, the rest of the batch is fetched whole without asking for
//! structures (attachments are then downloaded, and listed from the MIME).
//! The reconnects this costs are
//! no network failures and count nowhere against the sync's retries; a
//! network failure meanwhile fails the attempt and is retried as any other.
//! They are capped per pass over a batch, so a server that breaks every
//! response fails the sync, naming the UIDs, rather than reconnecting on
//! and on.

use anyhow::{Context, Result};

use super::fetch::{self, ContentPlan, Fetched, Interrupted, MessagePlan};
use crate::config::Account;
use crate::imap::{self, ConnectOptions, Credential, ImapSession};

/// Most FETCHes of one pass over a batch that may fail on a response that
/// cannot be parsed, each costing a reconnect. A bad message costs two
/// (servers answer in UID order), so this lets about 30 messages of a batch
/// be bad, and a server whose every answer is unparsable fails the sync
/// after 64 reconnects.
const MAX_FAILURES: usize = 64;

/// Messages of one batch whose BODYSTRUCTURE cannot be parsed, after which
/// the batch's other messages are planned whole without a structure.
const BAD_STRUCTURES_BEFORE_WHOLE: usize = 4;

/// Why a message planned in parts was fetched whole.
pub const PARTS_UNPARSABLE: &str =
    "the server's answer to the FETCH of its parts could not be parsed; fetched whole";
/// Why a message is a placeholder: not even its whole content could be read.
pub const CONTENT_UNPARSABLE: &str = "the server's answer to the FETCH of the whole message \
     could not be parsed";

/// The sets of a batch's UIDs still to fetch after FETCHes that failed on
/// a response that cannot be parsed, narrowed down to the UIDs whose
/// response fails alone.
///
/// Servers answer a FETCH in UID order, so of a failed set the first UID
/// without an answer is almost surely the culprit: it is tried alone first,
/// which costs two failures per bad message. The other unanswered UIDs are
/// tried in two halves, so a server answering in another order still
/// narrows down by bisection, about 2·log2(batch) failures per bad message.
#[derive(Debug)]
pub struct Narrowing {
    /// Sets to fetch, the next one last.
    pending: Vec<Vec<u32>>,
    /// UIDs whose response, fetched alone, could not be parsed.
    bad: Vec<u32>,
    /// How many UIDs the set last handed out has.
    fetching: usize,
    failures: usize,
}

impl Narrowing {
    /// All of `uids`, to be fetched as one set.
    pub fn new(uids: Vec<u32>) -> Narrowing {
        Narrowing {
            pending: vec![uids],
            bad: Vec::new(),
            fetching: 0,
            failures: 0,
        }
    }

    /// The next set to fetch.
    pub fn next_set(&mut self) -> Option<Vec<u32>> {
        let set = self.pending.pop()?;
        self.fetching = set.len();
        Some(set)
    }

    /// Queues `uids` to be fetched next (again, fetched another way).
    pub fn push(&mut self, uids: Vec<u32>) {
        self.pending.push(uids);
    }

    /// The set last fetched failed on a response that could not be parsed,
    /// leaving `unanswered` (the likeliest culprit first). Returns the UID
    /// this proves bad: one that failed fetched alone (a failure after the
    /// other answers of a set might still be a response of no message).
    pub fn failed(&mut self, unanswered: Vec<u32>) -> Option<u32> {
        self.failures += 1;
        match unanswered.split_first() {
            // Every message was answered: the failure came after them.
            None => None,
            Some((&uid, [])) if self.fetching == 1 => {
                self.bad.push(uid);
                Some(uid)
            }
            Some((&suspect, rest)) => {
                // `unanswered` runs on across the batch's later FETCHes (whole
                // messages first, then each group in parts): sorted, each half
                // is a short UID set again, answered in order.
                let mut rest = rest.to_vec();
                rest.sort_unstable();
                let (first, second) = rest.split_at(rest.len() / 2);
                for half in [second, first] {
                    if !half.is_empty() {
                        self.pending.push(half.to_vec());
                    }
                }
                self.pending.push(vec![suspect]);
                None
            }
        }
    }

    pub fn failures(&self) -> usize {
        self.failures
    }

    /// UIDs proven bad so far.
    pub fn bad(&self) -> usize {
        self.bad.len()
    }

    /// Every UID still to fetch, sorted; none is left to fetch after it.
    pub fn take_pending(&mut self) -> Vec<u32> {
        let mut uids: Vec<u32> = self.pending.drain(..).flatten().collect();
        uids.sort_unstable();
        uids
    }

    /// The UIDs not known to be fine (still to fetch, or bad), sorted.
    pub fn unresolved(&self) -> Vec<u32> {
        let mut uids: Vec<u32> = self
            .pending
            .iter()
            .flatten()
            .chain(&self.bad)
            .copied()
            .collect();
        uids.sort_unstable();
        uids
    }
}

/// What reopening the session on a folder takes.
pub struct Reopen<'a> {
    pub account: &'a Account,
    pub credential: &'a Credential,
    /// The folder's name on the server, selected with EXAMINE.
    pub folder: &'a str,
    pub uidvalidity: u32,
}

impl Reopen<'_> {
    /// After a FETCH of `narrowing`'s last set failed: a response that
    /// could not be parsed narrows the set (returning the UID it proves
    /// bad) and replaces the session, which async-imap no longer reads;
    /// any other failure is the attempt's error, retried or not as usual.
    async fn recover(
        &self,
        failure: Interrupted,
        narrowing: &mut Narrowing,
        session: &mut ImapSession,
    ) -> Result<Option<u32>> {
        let Interrupted { error, unanswered } = failure;
        // Another response (a status, an untagged notice) names no message:
        // narrowing would blame the messages fetched alone after it.
        if !error.is_unparsable_fetch() {
            return Err(error.into());
        }
        let bad = narrowing.failed(unanswered);
        if narrowing.failures() > MAX_FAILURES {
            return Err(anyhow::Error::new(error).context(format!(
                "the server's answers for messages among UIDs {} could not be parsed; gave \
                 up after {MAX_FAILURES} reconnects",
                fetch::uid_set(&narrowing.unresolved())
            )));
        }
        tracing::warn!(
            "{}: {}: {error}; reconnecting to fetch around it",
            self.account.id,
            self.folder
        );
        *session = self.fresh_session().await?;
        Ok(bad)
    }

    /// A new session on the folder, checked to be the same folder.
    async fn fresh_session(&self) -> Result<ImapSession> {
        let mut fresh =
            imap::open_session(self.account, self.credential, &ConnectOptions::default()).await?;
        super::examine_unchanged(&mut fresh, self.folder, self.uidvalidity).await?;
        Ok(fresh)
    }
}

/// [`fetch::plan_batch`] for a batch, fetching around responses that cannot
/// be parsed: a message whose BODYSTRUCTURE cannot be read is planned whole.
pub async fn plan_batch(
    reopen: &Reopen<'_>,
    session: &mut ImapSession,
    batch: &[u32],
) -> Result<Vec<MessagePlan>> {
    let mut plans = Vec::with_capacity(batch.len());
    let mut narrowing = Narrowing::new(batch.to_vec());
    while let Some(set) = narrowing.next_set() {
        let (done, result) = fetch::plan_batch(session, &set).await;
        plans.extend(done);
        let Err(failure) = result else { continue };
        if let Some(uid) = reopen.recover(failure, &mut narrowing, session).await? {
            plans.push(MessagePlan::whole(uid, Some(fetch::STRUCTURE_UNPARSABLE)));
        }
        if narrowing.bad() >= BAD_STRUCTURES_BEFORE_WHOLE {
            let rest = narrowing.take_pending();
            tracing::warn!(
                "{}: {}: {} BODYSTRUCTUREs of this batch could not be parsed; its other {} \
                 messages are fetched whole",
                reopen.account.id,
                reopen.folder,
                narrowing.bad(),
                rest.len()
            );
            plans.extend(rest.into_iter().map(|uid| MessagePlan::whole(uid, None)));
        }
    }
    plans.sort_by_key(|plan| plan.uid);
    Ok(plans)
}

/// [`fetch::fetch_batch`] for a batch's plans, fetching around responses
/// that cannot be parsed: a message planned in parts is fetched whole, and
/// one that cannot be read whole either is returned as not parsed.
///
/// With `look_ahead` (the next batch's UIDs), also the next batch's plans
/// when its first pass, sent along with this batch's first FETCHes, came
/// back whole; otherwise the next batch is planned as usual, by
/// [`plan_batch`], around whatever went wrong (on a new session if this
/// one may no longer be read).
pub async fn fetch_batch(
    reopen: &Reopen<'_>,
    session: &mut ImapSession,
    plans: Vec<MessagePlan>,
    look_ahead: Option<&[u32]>,
) -> Result<(Vec<Fetched>, Option<Vec<MessagePlan>>)> {
    let mut look_ahead = look_ahead;
    let mut next_plans = None;
    let mut fetched = Vec::with_capacity(plans.len());
    let mut plans: std::collections::BTreeMap<u32, MessagePlan> =
        plans.into_iter().map(|plan| (plan.uid, plan)).collect();
    let mut narrowing = Narrowing::new(plans.keys().copied().collect());
    while let Some(set) = narrowing.next_set() {
        let chosen: Vec<&MessagePlan> = set.iter().map(|uid| &plans[uid]).collect();
        let with_look_ahead = look_ahead.is_some();
        let batch = fetch::fetch_batch(session, &chosen, look_ahead.take()).await;
        fetched.extend(batch.fetched);
        match batch.look_ahead {
            Some(Ok(plans)) => next_plans = Some(plans),
            // Unreadable, or the connection broke, after this batch's content
            // all came: the session is replaced here (after a failed FETCH of
            // this batch, below).
            Some(Err(error))
                if batch.result.is_ok() && !matches!(error, imap::ImapError::Rejected { .. }) =>
            {
                tracing::debug!(
                    "{}: {}: the next batch's structures: {error}; reconnecting",
                    reopen.account.id,
                    reopen.folder
                );
                *session = reopen.fresh_session().await?;
            }
            _ => {}
        }
        let Err(failure) = batch.result else { continue };
        if with_look_ahead && failure.error.is_unparsable_fetch() {
            // The answer that could not be read may have been one of the
            // next batch's structures, which a server may interleave with
            // this batch's content: no message is blamed for it. What went
            // unanswered is fetched again without them, where a bad answer
            // is this batch's own and narrowed down as usual.
            tracing::warn!(
                "{}: {}: {}; reconnecting to fetch around it",
                reopen.account.id,
                reopen.folder,
                failure.error
            );
            *session = reopen.fresh_session().await?;
            let mut unanswered = failure.unanswered;
            unanswered.sort_unstable();
            if !unanswered.is_empty() {
                narrowing.push(unanswered);
            }
            continue;
        }
        let Some(uid) = reopen.recover(failure, &mut narrowing, session).await? else {
            continue;
        };
        let plan = plans.get_mut(&uid).context("a UID outside the batch")?;
        if plan.content == ContentPlan::Whole {
            fetched.push(Fetched {
                uid,
                internal_date: plan.internal_date.clone(),
                parsed: Err(CONTENT_UNPARSABLE.to_string()),
                problem: plan.problem,
            });
        } else {
            plan.content = ContentPlan::Whole;
            plan.problem = Some(PARTS_UNPARSABLE);
            narrowing.push(vec![uid]);
        }
    }
    fetched.sort_by_key(|f| f.uid);
    Ok((fetched, next_plans))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Narrows `uids` against a simulated server that answers each FETCH in
    /// the order `order` gives and fails at the first bad UID: the bad UIDs
    /// found, and how many FETCHes failed.
    fn narrow(uids: &[u32], bad: &[u32], order: fn(&[u32]) -> Vec<u32>) -> (Vec<u32>, usize) {
        let bad: BTreeSet<u32> = bad.iter().copied().collect();
        let mut narrowing = Narrowing::new(uids.to_vec());
        let mut found = Vec::new();
        let mut fetched = BTreeSet::new();
        while let Some(set) = narrowing.next_set() {
            assert!(!set.is_empty(), "an empty set is never fetched");
            let answered: Vec<u32> = order(&set)
                .into_iter()
                .take_while(|uid| !bad.contains(uid))
                .collect();
            fetched.extend(answered.iter().copied());
            if answered.len() < set.len() {
                // As fetch::plan_batch reports them: in UID order.
                let unanswered = set.iter().filter(|u| !answered.contains(u)).copied();
                found.extend(narrowing.failed(unanswered.collect()));
            }
            assert!(narrowing.failures() <= 2 * uids.len(), "it ends");
        }
        found.sort_unstable();
        let good: BTreeSet<u32> = uids.iter().filter(|u| !bad.contains(u)).copied().collect();
        assert_eq!(fetched, good, "every good UID is fetched");
        (found, narrowing.failures())
    }

    fn ascending(set: &[u32]) -> Vec<u32> {
        set.to_vec()
    }

    fn descending(set: &[u32]) -> Vec<u32> {
        set.iter().rev().copied().collect()
    }

    #[test]
    fn the_halves_of_a_failed_set_are_in_uid_order() {
        let mut narrowing = Narrowing::new(vec![1, 2, 3, 10, 11, 12]);
        let set = narrowing.next_set().unwrap();
        assert_eq!(set.len(), 6);
        // UID 10 failed; after it come 11 and 12, then the UIDs of a later
        // FETCH of the batch.
        assert_eq!(narrowing.failed(vec![10, 11, 12, 1, 2, 3]), None);
        assert_eq!(narrowing.next_set(), Some(vec![10]));
        assert_eq!(narrowing.next_set(), Some(vec![1, 2]));
        assert_eq!(narrowing.next_set(), Some(vec![3, 11, 12]));
        assert_eq!(narrowing.next_set(), None);
    }

    #[test]
    fn what_is_still_to_fetch_can_be_taken_at_once() {
        let mut narrowing = Narrowing::new((1..=9).collect());
        let set = narrowing.next_set().unwrap();
        assert_eq!(narrowing.failed(set[2..].to_vec()), None);
        assert_eq!(narrowing.take_pending(), (3..=9).collect::<Vec<u32>>());
        assert_eq!(narrowing.next_set(), None);
        assert_eq!(narrowing.bad(), 0);
    }

    #[test]
    fn a_batch_without_bad_messages_is_one_fetch() {
        let uids: Vec<u32> = (1..=500).collect();
        assert_eq!(narrow(&uids, &[], ascending), (vec![], 0));
    }

    #[test]
    fn in_uid_order_a_bad_message_costs_two_failures() {
        let uids: Vec<u32> = (1..=500).collect();
        assert_eq!(narrow(&uids, &[137], ascending), (vec![137], 2));
        assert_eq!(narrow(&uids, &[1], ascending), (vec![1], 2));
        assert_eq!(narrow(&uids, &[500], ascending), (vec![500], 2));
        assert_eq!(
            narrow(&uids, &[3, 4, 250, 499], ascending),
            (vec![3, 4, 250, 499], 8)
        );
        let gaps = [10, 12, 15, 40, 41, 90];
        assert_eq!(narrow(&gaps, &[41], ascending), (vec![41], 2));
    }

    #[test]
    fn in_another_order_it_bisects() {
        let uids: Vec<u32> = (1..=500).collect();
        let (found, failures) = narrow(&uids, &[137], descending);
        assert_eq!(found, [137]);
        // log2(500) is about 9.
        assert!(failures <= 2 * 9 + 2, "{failures} failures");
        let (found, failures) = narrow(&uids, &[7, 300], descending);
        assert_eq!(found, [7, 300]);
        assert!(failures <= 4 * 9 + 4, "{failures} failures");
    }

    #[test]
    fn when_every_message_is_bad_it_finds_them_all_and_ends() {
        let uids: Vec<u32> = (1..=40).collect();
        let (found, failures) = narrow(&uids, &uids, ascending);
        assert_eq!(found, uids);
        assert!(failures < 2 * uids.len(), "{failures} failures");
    }

    #[test]
    fn a_failure_after_every_answer_proves_nothing_bad() {
        let mut narrowing = Narrowing::new(vec![1, 2, 3]);
        assert_eq!(narrowing.next_set(), Some(vec![1, 2, 3]));
        assert_eq!(narrowing.failed(vec![]), None);
        assert_eq!(narrowing.next_set(), None);
        assert_eq!(narrowing.failures(), 1);
    }

    #[test]
    fn a_uid_is_called_bad_only_when_it_failed_alone() {
        let mut narrowing = Narrowing::new(vec![1, 2, 3]);
        assert_eq!(narrowing.next_set(), Some(vec![1, 2, 3]));
        assert_eq!(narrowing.failed(vec![3]), None);
        assert_eq!(narrowing.next_set(), Some(vec![3]));
        assert_eq!(narrowing.failed(vec![3]), Some(3));
        assert_eq!(narrowing.next_set(), None);
    }

    #[test]
    fn unresolved_uids_are_those_pending_or_bad() {
        let mut narrowing = Narrowing::new((1..=6).collect());
        narrowing.next_set();
        narrowing.failed(vec![3, 4, 5, 6]);
        assert_eq!(narrowing.next_set(), Some(vec![3]));
        assert_eq!(narrowing.failed(vec![3]), Some(3));
        assert_eq!(narrowing.unresolved(), [3, 4, 5, 6]);
        assert_eq!(narrowing.next_set(), Some(vec![4]));
    }
}
