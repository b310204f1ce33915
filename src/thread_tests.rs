use super::*;
use std::collections::HashSet;

const DAY: i64 = 24 * 3600;
const T0: i64 = 1_765_584_266; // 2025-12-12T16:04:26-08:00

fn msg(
    folder: &str,
    uid: u32,
    id: Option<&str>,
    refs: &[&str],
    subject: &str,
    date: i64,
) -> MessageRef {
    MessageRef {
        folder: folder.into(),
        uid,
        message_id: id.map(str::to_string),
        in_reply_to: refs.last().map(|r| r.to_string()),
        references: refs.iter().map(|r| r.to_string()).collect(),
        subject: subject.into(),
        date: Some(date),
    }
}

/// thread_id → member ids, for compact assertions.
fn shape(threads: &[Thread]) -> Vec<(String, Vec<String>)> {
    threads
        .iter()
        .map(|t| {
            (
                t.thread_id.clone(),
                t.messages.iter().map(|m| m.message_id.clone()).collect(),
            )
        })
        .collect()
}

fn assert_partition(input: &[MessageRef], threads: &[Thread]) {
    let mut seen = HashSet::new();
    for t in threads {
        assert!(!t.messages.is_empty());
        for m in &t.messages {
            assert!(
                seen.insert(m.message_id.clone()),
                "{} in two threads",
                m.message_id
            );
        }
    }
    let ids: HashSet<String> = threads
        .iter()
        .flat_map(|t| t.message_ids().map(str::to_string))
        .collect();
    let locations: usize = threads
        .iter()
        .flat_map(|t| &t.messages)
        .map(|m| m.locations.len())
        .sum();
    let distinct_locations: HashSet<(String, u32)> =
        input.iter().map(|r| (r.folder.clone(), r.uid)).collect();
    assert_eq!(
        locations,
        distinct_locations.len(),
        "every location kept exactly once"
    );
    assert!(ids.len() <= input.len());
}

#[test]
fn replies_follow_their_parents_in_date_order() {
    let input = vec![
        msg(
            "INBOX",
            3,
            Some("<c@x>"),
            &["<a@x>", "<b@x>"],
            "Re: Plan",
            T0 + 200,
        ),
        msg("INBOX", 1, Some("<a@x>"), &[], "Plan", T0),
        msg("INBOX", 2, Some("<b@x>"), &["<a@x>"], "Re: Plan", T0 + 100),
    ];
    let threads = thread_messages(&input);
    assert_eq!(
        shape(&threads),
        vec![(
            "<a@x>".into(),
            vec!["<a@x>".into(), "<b@x>".into(), "<c@x>".into()]
        )]
    );
    let t = &threads[0];
    assert!(!t.root_missing);
    assert_eq!(t.subject, "Plan");
    assert_eq!(t.messages[0].parent, None);
    assert_eq!(t.messages[1].parent.as_deref(), Some("<a@x>"));
    assert_eq!(t.messages[2].parent.as_deref(), Some("<b@x>"));
    assert_eq!(t.first_date(), Some(T0));
    assert_eq!(t.last_date(), Some(T0 + 200));
}

#[test]
fn a_message_in_two_folders_counts_once() {
    let input = vec![
        msg("INBOX", 10, Some("<a@x>"), &[], "Budget", T0),
        msg("Sent", 4, Some("<r@me>"), &["<a@x>"], "Re: Budget", T0 + 50),
        msg("Archive", 77, Some("<a@x>"), &[], "Budget", T0),
        msg(
            "INBOX",
            11,
            Some("<r@me>"),
            &["<a@x>"],
            "Re: Budget",
            T0 + 50,
        ), // cc'd to self
    ];
    let threads = thread_messages(&input);
    assert_eq!(threads.len(), 1);
    let t = &threads[0];
    assert_eq!(t.messages.len(), 2);
    let loc = |f: &str, uid| Location {
        folder: f.into(),
        uid,
    };
    assert_eq!(
        t.messages[0].locations,
        vec![loc("Archive", 77), loc("INBOX", 10)]
    );
    assert_eq!(
        t.messages[1].locations,
        vec![loc("INBOX", 11), loc("Sent", 4)]
    );
    assert_partition(&input, &threads);
}

#[test]
fn copies_without_references_take_them_from_the_fuller_copy() {
    // A Sent copy some servers store without In-Reply-To/References.
    let mut bare = msg("Sent", 1, Some("<r@me>"), &[], "Re: Budget", T0 + 50);
    bare.in_reply_to = None;
    let input = vec![
        bare,
        msg("INBOX", 1, Some("<a@x>"), &[], "Budget", T0),
        msg(
            "INBOX",
            2,
            Some("<r@me>"),
            &["<a@x>"],
            "Re: Budget",
            T0 + 50,
        ),
    ];
    let threads = thread_messages(&input);
    assert_eq!(
        shape(&threads),
        vec![("<a@x>".into(), vec!["<a@x>".into(), "<r@me>".into()])]
    );
}

#[test]
fn messages_without_message_id_each_land_in_one_thread() {
    let mut a = msg("INBOX", 5, None, &[], "Cron output", T0);
    a.in_reply_to = None;
    let b = MessageRef {
        uid: 6,
        ..a.clone()
    };
    let input = vec![a.clone(), b];
    let threads = thread_messages(&input);
    assert_eq!(threads.len(), 2, "two id-less messages never merge");
    for t in &threads {
        assert!(t.messages[0].synthetic_id);
        assert!(t.thread_id.ends_with("@mailbridge.invalid>"));
    }
    // Stable: the same message gets the same id on every run.
    assert_eq!(
        thread_messages(&[a.clone()])[0].thread_id,
        thread_messages(&[a])[0].thread_id
    );
    assert_partition(&input, &threads);
}

#[test]
fn replies_to_a_missing_root_group_under_it() {
    let input = vec![
        msg(
            "INBOX",
            1,
            Some("<b@x>"),
            &["<root@x>"],
            "Re: Offsite",
            T0 + 100,
        ),
        msg(
            "INBOX",
            2,
            Some("<c@x>"),
            &["<root@x>"],
            "Re: Offsite",
            T0 + 200,
        ),
        msg(
            "INBOX",
            3,
            Some("<d@x>"),
            &["<root@x>", "<lost@x>"],
            "Re: Offsite",
            T0 + 300,
        ),
    ];
    let threads = thread_messages(&input);
    assert_eq!(threads.len(), 1);
    let t = &threads[0];
    assert_eq!(t.thread_id, "<root@x>");
    assert!(t.root_missing);
    assert_eq!(t.messages.len(), 3);
    assert_eq!(t.messages[2].parent.as_deref(), Some("<lost@x>"));
}

#[test]
fn thread_id_stays_when_later_syncs_add_messages() {
    let reply = msg("INBOX", 2, Some("<b@x>"), &["<a@x>"], "Re: Q", T0 + 100);
    let first = thread_messages(std::slice::from_ref(&reply));
    assert_eq!(first[0].thread_id, "<a@x>");

    // The root turns up (older mail synced later), then a deeper reply.
    let root = msg("Archive", 1, Some("<a@x>"), &[], "Q", T0);
    let deeper = msg(
        "Sent",
        9,
        Some("<c@me>"),
        &["<a@x>", "<b@x>"],
        "Re: Q",
        T0 + 200,
    );
    for input in [
        vec![reply.clone(), root.clone()],
        vec![reply.clone(), deeper.clone()],
        vec![deeper, root, reply],
    ] {
        let threads = thread_messages(&input);
        assert_eq!(threads.len(), 1);
        assert_eq!(threads[0].thread_id, "<a@x>");
    }
}

#[test]
fn a_known_message_keeps_its_place_when_others_claim_otherwise() {
    // <b> says it answers <a>; a later message's References claim <x> precedes <b>.
    let input = vec![
        msg("INBOX", 1, Some("<a@x>"), &[], "Topic", T0),
        msg("INBOX", 2, Some("<b@x>"), &["<a@x>"], "Re: Topic", T0 + 1),
        msg(
            "INBOX",
            3,
            Some("<c@x>"),
            &["<x@x>", "<b@x>"],
            "Re: Topic",
            T0 + 2,
        ),
    ];
    let threads = thread_messages(&input);
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].thread_id, "<a@x>");
}

#[test]
fn in_reply_to_outside_references_is_the_parent() {
    let mut m = msg("INBOX", 2, Some("<b@x>"), &["<old@x>"], "Re: t", T0 + 1);
    m.in_reply_to = Some("<a@x>".into());
    let input = vec![msg("INBOX", 1, Some("<a@x>"), &["<old@x>"], "t", T0), m];
    let threads = thread_messages(&input);
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].thread_id, "<old@x>");
    assert_eq!(threads[0].messages[1].parent.as_deref(), Some("<a@x>"));
}

#[test]
fn cycles_and_self_references_terminate() {
    let input = vec![
        msg("INBOX", 1, Some("<a@x>"), &["<b@x>"], "loop", T0),
        msg("INBOX", 2, Some("<b@x>"), &["<c@x>"], "loop", T0 + 1),
        msg("INBOX", 3, Some("<c@x>"), &["<a@x>"], "loop", T0 + 2),
        msg("INBOX", 4, Some("<s@x>"), &["<s@x>"], "self", T0 + 3),
        msg(
            "INBOX",
            5,
            Some("<t@x>"),
            &["<u@x>", "<t@x>", "<u@x>"],
            "self2",
            T0 + 4,
        ),
        msg(
            "INBOX",
            6,
            Some("<d@x>"),
            &["<e@x>", "<f@x>", "<e@x>", "<d@x>"],
            "dummy loop",
            T0 + 5,
        ),
    ];
    let threads = thread_messages(&input);
    assert_partition(&input, &threads);
    let all: Vec<String> = threads
        .iter()
        .flat_map(|t| t.message_ids().map(str::to_string))
        .collect();
    assert_eq!(all.len(), 6);
    let s = threads
        .iter()
        .find(|t| t.message_ids().any(|m| m == "<s@x>"))
        .unwrap();
    assert_eq!(s.thread_id, "<s@x>");
}

#[test]
fn referenceless_reply_joins_by_subject_within_the_window() {
    let mut lost = msg(
        "INBOX",
        2,
        Some("<b@x>"),
        &[],
        "RE: [team] Offsite agenda",
        T0 + 2 * DAY,
    );
    lost.in_reply_to = None;
    let input = vec![
        msg("INBOX", 1, Some("<a@x>"), &[], "Offsite agenda", T0),
        lost,
    ];
    let threads = thread_messages(&input);
    assert_eq!(
        shape(&threads),
        vec![("<a@x>".into(), vec!["<a@x>".into(), "<b@x>".into()])]
    );
    assert_eq!(threads[0].messages[1].parent.as_deref(), Some("<a@x>"));
}

#[test]
fn subject_grouping_does_not_merge_strangers() {
    let bare = |uid, id: &str, subject: &str, date| {
        let mut m = msg("INBOX", uid, Some(id), &[], subject, date);
        m.in_reply_to = None;
        m
    };
    let input = vec![
        bare(1, "<a@x>", "hello", T0),
        bare(2, "<b@x>", "hello", T0 + DAY), // not a reply: its own thread
        bare(3, "<c@x>", "Re: hello", T0 + 400 * DAY), // a year later: unrelated
        bare(4, "<d@x>", "Fwd: hello", T0 + 2 * DAY), // a forward starts a new thread
        bare(5, "<e@x>", "Re: goodbye", T0 + 2 * DAY), // nothing to join
        msg(
            "INBOX",
            6,
            Some("<f@x>"),
            &["<elsewhere@x>"],
            "Re: hello",
            T0 + 2 * DAY,
        ), // has refs
    ];
    let threads = thread_messages(&input);
    assert_eq!(threads.len(), 6, "{:#?}", shape(&threads));
}

#[test]
fn referenceless_replies_chain_and_pick_the_nearest_thread() {
    let bare = |uid, id: &str, subject: &str, date| {
        let mut m = msg("INBOX", uid, Some(id), &[], subject, date);
        m.in_reply_to = None;
        m
    };
    let input = vec![
        bare(1, "<old@x>", "Status", T0),
        bare(2, "<new@x>", "Status", T0 + 20 * DAY),
        bare(3, "<r1@x>", "Re: Status", T0 + 21 * DAY),
        bare(4, "<r2@x>", "Re: Re: status", T0 + 45 * DAY), // 24 days after r1: joins new's thread
    ];
    let threads = thread_messages(&input);
    assert_eq!(
        shape(&threads),
        vec![
            ("<old@x>".into(), vec!["<old@x>".into()]),
            (
                "<new@x>".into(),
                vec!["<new@x>".into(), "<r1@x>".into(), "<r2@x>".into()]
            ),
        ]
    );
}

#[test]
fn output_does_not_depend_on_input_order() {
    let mut input = vec![
        msg("INBOX", 1, Some("<a@x>"), &[], "A", T0),
        msg("INBOX", 2, Some("<b@x>"), &["<a@x>"], "Re: A", T0 + 10),
        msg(
            "Sent",
            1,
            Some("<c@me>"),
            &["<a@x>", "<b@x>"],
            "Re: A",
            T0 + 20,
        ),
        msg("INBOX", 3, Some("<d@x>"), &["<gone@x>"], "Re: D", T0 + 5),
        msg("INBOX", 4, Some("<e@x>"), &["<gone@x>"], "Re: D", T0 + 5),
        msg("INBOX", 5, None, &[], "no id", T0 + 5),
        msg("Archive", 8, Some("<a@x>"), &[], "A", T0),
        MessageRef {
            date: None,
            ..msg("INBOX", 9, Some("<n@x>"), &[], "undated", 0)
        },
    ];
    let expected = thread_messages(&input);
    let mut seed: u64 = 7;
    for _ in 0..50 {
        for i in (1..input.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            input.swap(i, (seed >> 33) as usize % (i + 1));
        }
        assert_eq!(thread_messages(&input), expected);
    }
    // Undated messages sort last.
    assert_eq!(expected.last().unwrap().thread_id, "<n@x>");
}

#[test]
fn random_reference_graphs_partition_every_message() {
    let mut seed: u64 = 42;
    let mut rnd = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..20 {
        let n = 200;
        let input: Vec<MessageRef> = (0..n)
            .map(|i| {
                let refs: Vec<String> = (0..rnd(4))
                    .map(|_| format!("<m{}@x>", rnd(n + 20)))
                    .collect();
                let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
                let id = if rnd(30) == 0 {
                    None
                } else {
                    Some(format!("<m{}@x>", rnd(n)))
                };
                let subject = ["a", "Re: a", "b", "Re: b"][rnd(4) as usize];
                let folder = ["INBOX", "Sent"][rnd(2) as usize];
                msg(
                    folder,
                    i as u32 + round,
                    id.as_deref(),
                    &refs,
                    subject,
                    T0 + rnd(60) as i64 * DAY,
                )
            })
            .collect();
        let threads = thread_messages(&input);
        assert_partition(&input, &threads);
    }
}

#[test]
fn subject_normalization() {
    let cases = [
        ("Re: hello", "hello", true),
        ("RE: Re: hello", "hello", true),
        ("Re[2]: hello", "hello", true),
        ("Re^3: hello", "hello", true),
        ("AW: WG: Angebot", "angebot", true),
        ("Fwd: hello", "hello", false),
        ("Re : Devis", "devis", true),
        ("Re\u{a0}: Devis", "devis", true),
        ("[rust-users] Re: Borrowing", "borrowing", true),
        ("回复：会议", "会议", true),
        ("Reply needed", "reply needed", false),
        ("Re:", "", true),
        ("  Hello   World ", "hello world", false),
    ];
    for (input, base, reply) in cases {
        assert_eq!(
            normalize_subject(input),
            (base.to_string(), reply),
            "{input}"
        );
    }
}

#[test]
fn synthetic_ids_are_stable_and_distinct() {
    let a = synthetic_message_id(&["x", "y"]);
    assert_eq!(a, synthetic_message_id(&["x", "y"]));
    assert_ne!(a, synthetic_message_id(&["xy"]));
    assert_ne!(a, synthetic_message_id(&["x", "y", ""]));
    insta::assert_snapshot!(a, @"<725f725716f98d94a7e32c23a3ee3881@mailbridge.invalid>");
}

#[test]
fn corpus_threads() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/messages");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let input: Vec<MessageRef> = files
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let parsed = crate::message::parse_message(&std::fs::read(p).unwrap()).unwrap();
            let folder = if parsed.from.as_ref().and_then(|f| f.address.as_deref())
                == Some("jason@example.com")
            {
                "Sent"
            } else {
                "INBOX"
            };
            MessageRef::from_parsed(folder, i as u32 + 1, &parsed)
        })
        .collect();
    let threads = thread_messages(&input);
    assert_partition(&input, &threads);
    insta::assert_yaml_snapshot!(threads);
}

fn synthetic_mailbox(n: usize) -> Vec<MessageRef> {
    // Threads of 1..=40 messages, each reply citing its whole ancestry; a tenth of the
    // messages copied to a second folder; some replies without references.
    let mut out = Vec::with_capacity(n + n / 10);
    let mut seed: u64 = 99;
    let mut rnd = move |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    let mut uid = 0u32;
    let mut t = 0usize;
    while out.len() < n {
        let size = 1 + rnd(40) as usize;
        let mut chain: Vec<String> = Vec::new();
        for k in 0..size {
            uid += 1;
            let id = format!("<t{t}.m{k}@example.com>");
            let subject = if k == 0 {
                format!("Topic {}", t % 5000)
            } else {
                format!("Re: Topic {}", t % 5000)
            };
            let refs: Vec<&str> = if rnd(50) == 0 {
                Vec::new()
            } else {
                chain.iter().map(String::as_str).collect()
            };
            let date = T0 + (t as i64) * 600 + k as i64 * 60;
            let m = msg("INBOX", uid, Some(&id), &refs, &subject, date);
            if rnd(10) == 0 {
                out.push(MessageRef {
                    folder: "Archive".into(),
                    ..m.clone()
                });
            }
            out.push(m);
            chain.push(id);
        }
        t += 1;
    }
    out
}

#[test]
fn a_large_mailbox_partitions_exactly() {
    // Every location lands in exactly one thread at mailbox scale; how fast
    // is measured by the sync benchmark, not here.
    let input = synthetic_mailbox(20_000);
    let threads = thread_messages(&input);
    assert_partition(&input, &threads);
}

#[test]
fn a_deep_thread_stays_one_thread() {
    // Speed is the benchmark's business; this checks depth does not break
    // the tree (no recursion limit, no lost messages).
    let mut chain: Vec<String> = Vec::new();
    let mut input = Vec::new();
    for k in 0..1000 {
        let id = format!("<deep{k}@x>");
        let refs: Vec<&str> = chain.iter().map(String::as_str).collect();
        input.push(msg("INBOX", k, Some(&id), &refs, "Re: deep", T0 + k as i64));
        chain.push(id);
    }
    let threads = thread_messages(&input);
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].messages.len(), 1000);
}

#[test]
fn referenceless_reply_joins_a_thread_whose_root_is_missing() {
    let mut lost = msg("INBOX", 3, Some("<c@x>"), &[], "Re: Offsite", T0 + DAY);
    lost.in_reply_to = None;
    let input = vec![
        msg("INBOX", 1, Some("<b@x>"), &["<root@x>"], "Re: Offsite", T0),
        lost,
    ];
    let threads = thread_messages(&input);
    assert_eq!(
        shape(&threads),
        vec![("<root@x>".into(), vec!["<b@x>".into(), "<c@x>".into()])]
    );
}

/// The messages as the sync threads them: by id hashes.
fn hashed_core(input: &[MessageRef]) -> CoreInput<u64> {
    let mut core = CoreInput::default();
    for r in input {
        core.push_hashed(
            r.message_id.as_deref().unwrap(),
            r.in_reply_to.as_deref(),
            &r.references,
            &r.subject,
            r.date,
        );
    }
    core
}

/// The partition `thread_core` finds over hashed ids, as (root, members) sets
/// of hashes; and the same for `thread_messages`' string threads.
fn hashed_partition(input: &[MessageRef]) -> HashSet<(u64, Vec<u64>)> {
    let core = hashed_core(input);
    let threads = thread_core(&core);
    threads
        .threads
        .iter()
        .map(|t| {
            let mut members: Vec<u64> = threads
                .members_of(t)
                .iter()
                .map(|m| core.messages()[m.message as usize].id)
                .collect();
            members.sort_unstable();
            (t.root, members)
        })
        .collect()
}

fn string_partition(threads: &[Thread]) -> HashSet<(u64, Vec<u64>)> {
    threads
        .iter()
        .map(|t| {
            let mut members: Vec<u64> = t.messages.iter().map(|m| id_hash(&m.message_id)).collect();
            members.sort_unstable();
            (id_hash(&t.thread_id), members)
        })
        .collect()
}

#[test]
fn hashed_ids_thread_as_message_id_strings_do() {
    // One row per Message-ID, as the state store has them (the sync threads
    // its stored messages by hash to keep memory flat).
    let mut seen = HashSet::new();
    let input: Vec<MessageRef> = synthetic_mailbox(5_000)
        .into_iter()
        .filter(|m| seen.insert(m.message_id.clone()))
        .collect();
    let threads = thread_messages(&input);
    assert!(threads.len() > 100, "{}", threads.len());
    assert_eq!(hashed_partition(&input), string_partition(&threads));

    // Parents come back as hashes of the string threads' parents.
    let core = hashed_core(&input);
    let core_threads = thread_core(&core);
    let mut parents_hashed: Vec<(u64, Option<u64>)> = core_threads
        .threads
        .iter()
        .flat_map(|t| core_threads.members_of(t))
        .map(|m| (core.messages()[m.message as usize].id, m.parent))
        .collect();
    let mut parents_string: Vec<(u64, Option<u64>)> = threads
        .iter()
        .flat_map(|t| &t.messages)
        .map(|m| (id_hash(&m.message_id), m.parent.as_deref().map(id_hash)))
        .collect();
    parents_hashed.sort_unstable();
    parents_string.sort_unstable();
    assert_eq!(parents_hashed, parents_string);
}
