use super::*;
use std::path::PathBuf;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/messages");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, std::fs::read(&p).expect("read corpus file"))
        })
        .collect()
}

fn corpus_file(prefix: &str) -> ParsedMessage {
    let (_, raw) = corpus()
        .into_iter()
        .find(|(n, _)| n.starts_with(prefix))
        .expect("corpus file");
    parse_message(&raw).expect("parses")
}

#[test]
fn corpus_snapshots() {
    let files = corpus();
    assert!(files.len() >= 19, "corpus went missing");
    for (name, raw) in files {
        let parsed = parse_message(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_yaml_snapshot!(name, parsed);
    }
}

#[test]
fn crlf_and_lf_parse_alike() {
    for (name, raw) in corpus() {
        let lf = parse_message(&raw).unwrap();
        let mut crlf_raw = Vec::new();
        for &b in &raw {
            if b == b'\n' {
                crlf_raw.push(b'\r');
            }
            crlf_raw.push(b);
        }
        let crlf = parse_message(&crlf_raw).unwrap();
        assert_eq!(lf.message_id, crlf.message_id, "{name}");
        assert_eq!(lf.subject, crlf.subject, "{name}");
        assert_eq!(lf.from, crlf.from, "{name}");
        assert_eq!(lf.date, crlf.date, "{name}");
        assert_eq!(lf.body, crlf.body, "{name}");
        assert_eq!(lf.body_new, crlf.body_new, "{name}");
        assert_eq!(lf.quoted, crlf.quoted, "{name}");
        assert_eq!(lf.signature, crlf.signature, "{name}");
        assert_eq!(lf.problems, crlf.problems, "{name}");
    }
}

#[test]
fn truncated_and_garbled_messages_never_panic() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (name, raw) in corpus() {
        for cut in (0..raw.len()).step_by(37) {
            let _ = parse_message(&raw[..cut]);
        }
        for _ in 0..20 {
            let mut bytes = raw.clone();
            for _ in 0..8 {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            let _ = parse_message(&bytes);
        }
        let _ = name;
    }
    for _ in 0..200 {
        let len = (next() % 600) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = parse_message(&bytes);
    }
}

#[test]
fn nothing_decodable_is_an_error() {
    assert_eq!(parse_message(b""), Err(ParseError::Empty));
    assert_eq!(parse_message(b"\r\n \r\n"), Err(ParseError::Empty));
}

#[test]
fn headerless_text_still_gives_something() {
    // Not a message at all, but the sync must keep what it can.
    let p = parse_message(b"just some words\nand more\n");
    if let Ok(p) = p {
        assert!(p.problems.iter().any(|x| x.contains("Message-ID")));
    }
}

#[test]
fn message_id_normalization() {
    assert_eq!(normalize_message_id(" <a@b> "), Some("<a@b>".into()));
    assert_eq!(normalize_message_id("a@b"), Some("<a@b>".into()));
    assert_eq!(normalize_message_id("<a@\r\n b>"), Some("<a@b>".into()));
    assert_eq!(normalize_message_id("<>"), None);
    assert_eq!(normalize_message_id("   "), None);
}

#[test]
fn ids_survive_comments_and_garbage() {
    let raw = b"Message-ID: <m1@x>\nIn-Reply-To: <p1@x> (John's message of Fri, 12 Dec)\nReferences: <r0@x>\n <p1@x>  <p1@x>\nSubject: s\nFrom: a@x\nDate: Fri, 12 Dec 2025 16:04:26 -0800\n\nbody\n";
    let p = parse_message(raw).unwrap();
    assert_eq!(p.message_id.as_deref(), Some("<m1@x>"));
    assert_eq!(p.in_reply_to.as_deref(), Some("<p1@x>"));
    assert_eq!(
        p.references,
        vec!["<r0@x>".to_string(), "<p1@x>".to_string()]
    );
    let d = p.date.unwrap();
    assert_eq!(d.rfc3339, "2025-12-12T16:04:26-08:00");
    assert_eq!(d.timestamp, 1765584266);
    assert_eq!(d.offset_minutes, -480);
}

#[test]
fn missing_date_falls_back_to_received() {
    let raw =
        b"Received: from a by b; Sat, 13 Dec 2025 09:00:00 +0100\nFrom: a@x\nSubject: s\n\nbody\n";
    let p = parse_message(raw).unwrap();
    assert_eq!(p.date.unwrap().rfc3339, "2025-12-13T09:00:00+01:00");
    assert!(p.problems.contains(&"no Date header".to_string()));
    assert!(p
        .problems
        .contains(&"date taken from the Received header".to_string()));
}

#[test]
fn stable_id_is_stable_and_distinct() {
    let a = corpus_file("16-");
    assert!(a.message_id.is_none());
    let id = a.stable_id();
    assert!(
        id.starts_with('<') && id.ends_with("@mailbridge.invalid>"),
        "{id}"
    );
    assert_eq!(id, corpus_file("16-").stable_id());
    let b = parse_message(b"From: cron@build.example.com\nSubject: other\n\nx\n").unwrap();
    assert_ne!(id, b.stable_id());
    let c = corpus_file("01-");
    assert_eq!(c.stable_id(), "<CAJm3f=plain01@mail.vastdata.example>");
}

#[test]
fn bulk_and_auto_detection() {
    assert!(corpus_file("02-").is_list_bulk_or_auto());
    assert!(corpus_file("16-").is_list_bulk_or_auto());
    assert!(corpus_file("19-").is_list_bulk_or_auto());
    assert!(!corpus_file("01-").is_list_bulk_or_auto());
    assert!(!corpus_file("04-").is_list_bulk_or_auto());
}

#[test]
fn html_leaks_nothing_hidden() {
    let p = corpus_file("02-");
    for leak in [
        "font-family",
        "@media",
        "dataLayer",
        "track(",
        "BEGIN HEADER",
        "END FOOTER",
        "Preheader",
        "async closures, a faster",
        "Hidden mobile-only",
        "t.example.net",
        "cdn.example.net",
        "noscript",
        "MSO",
        "<",
    ] {
        assert!(!p.body.contains(leak), "{leak:?} leaked into:\n{}", p.body);
    }
    assert!(p.body.contains("# Rust Weekly #412"));
    assert!(p
        .body
        .contains("[Async closures are stable](https://click.example.net/"));
    // htmd renders a data table nested in a layout table cell by cell.
    assert!(p.body.contains("serde\n\n1.2M"));
    assert_eq!(p.list_id.as_deref(), Some("weekly.rustweekly.example"));
}

#[test]
fn header_and_parts_mode_matches_whole_message() {
    let header = b"Message-ID: <5e0c1a2b-alt03@mail.example.de>\r\nDate: Sat, 13 Dec 2025 10:15:00 +0100\r\nFrom: =?UTF-8?Q?Maria_M=C3=BCller?= <maria@example.de>\r\nSubject: Hallo\r\n";
    let part = TextPart {
        mime_header: b"Content-Type: text/plain; charset=\"ISO-8859-1\"\r\nContent-Transfer-Encoding: quoted-printable",
        body: b"Gr=FC=DFe aus M=FCnchen\r\n\r\nAm 12.12.2025 um 16:04 schrieb Jason <j@x>:\r\n> alt\r\n",
    };
    let p = parse_header_and_parts(header, &[part]).unwrap();
    assert_eq!(
        p.from.as_ref().unwrap().to_string(),
        "Maria Müller <maria@example.de>"
    );
    assert_eq!(p.body_source, BodySource::Plain);
    assert_eq!(p.body_new, "Grüße aus München");
    assert_eq!(p.quoted.as_ref().unwrap().text, "alt");
    let html = TextPart {
        mime_header: b"Content-Type: text/html; charset=utf-8\r\n",
        body: b"<p>Hi <b>there</b></p><style>p{}</style>",
    };
    let p = parse_header_and_parts(header, &[html]).unwrap();
    assert_eq!(p.body, "Hi **there**");
    assert_eq!(p.body_source, BodySource::Html);
    assert_eq!(parse_header_and_parts(b"", &[]), Err(ParseError::Empty));
}

#[test]
fn plain_text_cannot_inject_html_tags_or_wikilinks() {
    let md = plain_to_markdown(
        "See <img src=http://t/x.gif> and <https://example.org/a> or <bob@x.org>\n# not a heading\n#general channel, issue #42, C# code\n[[Secret]] link\n",
    );
    insta::assert_snapshot!(md, @r"
    See \<img src=http://t/x.gif> and <https://example.org/a> or <bob@x.org>
    \# not a heading
    \#general channel, issue #42, C# code
    \[[Secret]] link
    ");
}

#[test]
fn format_flowed_is_unwrapped() {
    let text =
        "This is a long \nparagraph that \nflows.\n> quoted \n> continues\n>> deeper\n-- \nSig\n";
    assert_eq!(
        unflow(text, false),
        "This is a long paragraph that flows.\n> quoted continues\n> > deeper\n-- \nSig\n"
    );
    assert_eq!(unflow("abc \ndef\n", true), "abcdef\n");
}

#[test]
fn bottom_posted_quotes_fold_away() {
    let c = collapse_quotes("On Mon, Jan 5, 2026 at 9:00 AM Ann <ann@x.org> wrote:\n> Can you come?\n> \n> Ann\n\nYes, I can.\n");
    assert_eq!(c.new, "Yes, I can.");
    let q = c.quoted.unwrap();
    assert_eq!(
        q.attribution.as_deref(),
        Some("On Mon, Jan 5, 2026 at 9:00 AM Ann <ann@x.org> wrote:")
    );
    assert_eq!(q.text, "Can you come?\n\nAnn");
    assert_eq!(q.kind, QuoteKind::Reply);
}

#[test]
fn inline_replies_keep_their_context() {
    let body = "> Q1?\n\nA1.\n\n> Q2?\n\nA2.\n\n> old signature\n";
    let c = collapse_quotes(body);
    assert_eq!(c.new, "> Q1?\n\nA1.\n\n> Q2?\n\nA2.");
    assert_eq!(c.quoted.unwrap().text, "old signature");
}

#[test]
fn top_posted_attribution_without_quote_marks_cuts() {
    let c =
        collapse_quotes("Sounds good.\n\nOn Tue, Jan 6, 2026, Bob wrote:\nWhat about Friday?\n");
    assert_eq!(c.new, "Sounds good.");
    let q = c.quoted.unwrap();
    assert_eq!(
        q.attribution.as_deref(),
        Some("On Tue, Jan 6, 2026, Bob wrote:")
    );
    assert_eq!(q.text, "What about Friday?");
}

#[test]
fn prose_ending_in_wrote_is_not_a_quote_header() {
    let c = collapse_quotes("Thanks for the report.\nHere is what I wrote.\nMore text follows.\n");
    assert_eq!(
        c.new,
        "Thanks for the report.\nHere is what I wrote.\nMore text follows."
    );
    assert!(c.quoted.is_none());
}

#[test]
fn quote_headers_in_many_languages() {
    for attribution in [
        "On Fri, Dec 12, 2025 at 4:04 PM John Mao <john@x.com> wrote:",
        "Am 12.12.2025 um 16:04 schrieb John Mao <john@x.com>:",
        "Le ven. 12 déc. 2025 à 16:04, John Mao <john@x.com> a écrit :",
        "El vie, 12 dic 2025 a las 16:04, John Mao (<john@x.com>) escribió:",
        "Il giorno ven 12 dic 2025 alle ore 16:04 John Mao <john@x.com> ha scritto:",
        "Op vr 12 dec. 2025 om 16:04 schreef John Mao <john@x.com>:",
        "2025年12月12日(金) 16:04 John Mao <john@x.com>:",
        "2025/12/12 16:04、John Mao <john@x.com> のメッセージ:",
        "2025/12/12 16:04、John Mao が書きました:",
    ] {
        let body = format!("New text.\n\n{attribution}\n> old text\n");
        let c = collapse_quotes(&body);
        assert_eq!(c.new, "New text.", "{attribution}");
        let q = c.quoted.expect(attribution);
        assert_eq!(q.attribution.as_deref(), Some(attribution));
        assert_eq!(q.text, "old text", "{attribution}");
    }
}

#[test]
fn separators_and_header_blocks() {
    let cases = [
        ("Ok.\n\n-----Original Message-----\nFrom: A\nSent: B\nTo: C\nSubject: D\n\nold\n", QuoteKind::Reply),
        ("Ok.\n\n-----Ursprüngliche Nachricht-----\nVon: A\nGesendet: B\nAn: C\nBetreff: D\n\nalt\n", QuoteKind::Reply),
        ("Ok.\n\n________________________________\nDe : A\nEnvoyé : B\nÀ : C\nObjet : D\n\nvieux\n", QuoteKind::Reply),
        ("Ok.\n\n**From:** A  \n**Sent:** B  \n**To:** C\n\nold\n", QuoteKind::Reply),
        ("Ok.\n\n差出人: A\n送信日時: B\n宛先: C\n件名: D\n\n古い\n", QuoteKind::Reply),
        ("Ok.\n\n---------- Forwarded message ---------\nFrom: A\nDate: B\nSubject: C\nTo: D\n\nfw\n", QuoteKind::Forward),
        ("Ok.\n\nBegin forwarded message:\n\nFrom: A\nSubject: C\n\nfw\n", QuoteKind::Forward),
        ("Ok.\n\n-------- Weitergeleitete Nachricht --------\nBetreff: C\n\nfw\n", QuoteKind::Forward),
    ];
    for (body, kind) in cases {
        let c = collapse_quotes(body);
        assert_eq!(c.new, "Ok.", "{body}");
        assert_eq!(c.quoted.as_ref().map(|q| q.kind), Some(kind), "{body}");
    }
}

#[test]
fn a_from_line_in_prose_is_not_a_header_block() {
    let c = collapse_quotes("From: the team, with love.\nWe shipped it!\n");
    assert!(c.quoted.is_none());
}

#[test]
fn signatures_are_kept_short() {
    let c = collapse_quotes("Hi.\n\n-- \nA\nB\nC\nD\nE\nF\n");
    assert_eq!(c.new, "Hi.");
    assert_eq!(c.signature.as_deref(), Some("A\nB\nC\nD\n…"));
    let c = collapse_quotes("Hi.\n-- \nAnn\n\nOn Mon, Ann <a@x> wrote:\n> q\n");
    assert_eq!(c.signature.as_deref(), Some("Ann"));
    assert_eq!(c.quoted.unwrap().text, "q");
}

#[test]
fn only_quotes_means_no_new_text() {
    let c = collapse_quotes("> a\n> b\n");
    assert_eq!(c.new, "");
    assert_eq!(c.quoted.unwrap().text, "a\nb");
    assert_eq!(collapse_quotes(""), CollapsedBody::default());
}

#[test]
fn links_are_dropped_from_attributions() {
    assert_eq!(
        unlink("Ann <[a@x.org](mailto:a@x.org)> wrote:"),
        "Ann <a@x.org> wrote:"
    );
    assert_eq!(unlink("[x] and [y](u) and [z"), "[x] and y and [z");
}

#[test]
fn deeply_nested_html_does_not_overflow_the_stack() {
    for (n, plain) in [(100usize, false), (1000, false), (20_000, true)] {
        let html = format!(
            "{}deep text{}",
            "<div><span>".repeat(n),
            "</span></div>".repeat(n)
        );
        let mut problems = Vec::new();
        let md = html_to_markdown_checked(&html, &mut problems);
        assert_eq!(md, "deep text", "{n}");
        assert_eq!(!problems.is_empty(), plain, "{n}: {problems:?}");
    }
    assert_eq!(
        html_nesting_depth("<p>a<p>b<br><img src=x/><div/><b>c</b></p>"),
        1
    );
    assert_eq!(
        html_nesting_depth("<div><div></div><div><i>x</i></div></div>"),
        3
    );
    assert_eq!(html_nesting_depth("a < b <!-- <div> -->"), 1);
}

#[test]
fn pathological_bodies_stay_linear() {
    let head =
        "From: a@x\nSubject: big\nMessage-ID: <big@x>\nDate: Fri, 12 Dec 2025 16:04:26 -0800\n";
    let bodies = [
        format!("Content-Type: text/plain\n\n{}\n", "<a".repeat(300_000)),
        format!(
            "Content-Type: text/plain\n\n{}\n",
            "> x\nOn Mon, Ann wrote:\n".repeat(30_000)
        ),
        format!("Content-Type: text/html\n\n{}\n", "[](<b>".repeat(100_000)),
        format!(
            "Content-Type: text/html\n\n<p>{}</p>\n",
            "word &amp; <i>more</i> ".repeat(50_000)
        ),
    ];
    for body in bodies {
        let raw = format!("{head}{body}");
        let parsed = parse_message(raw.as_bytes()).unwrap();
        assert!(!parsed.body.is_empty());
    }
}

#[test]
fn byte_searches_match_their_char_forms() {
    let lines = [
        "",
        "plain words",
        "time 16:04",
        "全角：コロン",
        "ｆｕｌｌ width ｗｏｒｄｓ",
        "a # b",
        "<tag>",
        "[[link]]",
        "Grüße\\ *x*",
    ];
    for line in lines {
        assert_eq!(has_colon(line), line.contains([':', '：']), "{line:?}");
        for set in ["#<[", "*\\", "`#$%", "#\\*_![<", ":", "-"] {
            let chars: Vec<char> = set.chars().collect();
            assert_eq!(
                contains_any_ascii(line, set.as_bytes()),
                line.contains(chars.as_slice()),
                "{line:?} {set:?}"
            );
        }
    }
}

#[test]
fn text_is_normalized_in_one_pass_as_by_the_replacements() {
    let by_replacements = |text: &str| -> String {
        text.replace("\r\n", "\n")
            .replace('\r', "\n")
            .chars()
            .filter(|&c| !is_invisible(c))
            .map(|c| if c == '\u{A0}' { ' ' } else { c })
            .collect()
    };
    for text in [
        "plain",
        "a\r\nb",
        "a\rb\r",
        "\r\u{200B}\n",
        "\r\r\n\n",
        "no\u{A0}break and soft\u{AD}hyphen\u{FEFF}",
        "Grüße\r\n",
        "\u{200B}",
    ] {
        assert_eq!(normalize_text(text), by_replacements(text), "{text:?}");
    }
}

#[test]
fn headers_end_at_the_first_empty_line() {
    assert_eq!(header_end(b"A: 1\nB: 2\n\nbody"), 11);
    assert_eq!(header_end(b"A: 1\r\n\r\nbody"), 8);
    assert_eq!(header_end(b"A: 1\nB: 2\n"), 10);
    assert_eq!(header_end(b""), 0);
}

#[test]
fn lines_are_split_as_str_lines_splits_them() {
    for text in [
        "", "\n", "\r\n", "a", "a\n", "a\r", "a\r\n", "a\r\r\nb", "\n\nb\r", "a\nb\n\n", "é\r\n\r",
    ] {
        assert_eq!(
            lines_of(text).collect::<Vec<_>>(),
            text.lines().collect::<Vec<_>>(),
            "{text:?}"
        );
    }
}

#[test]
fn lines_tidied_as_they_come_are_tidied_as_joined() {
    let lines = [
        "", " ", "> q", "text\t", "", "", ">> r", "\t", "s", "> t", "", "u", "",
    ];
    for from in 0..lines.len() {
        for to in from..=lines.len() {
            let part = &lines[from..to];
            assert_eq!(
                tidy_lines(part.iter().copied(), 0),
                tidy_markdown(&part.join("\n")),
                "{part:?}"
            );
        }
    }
}

/// What `attribution_in` relies on to compare openers ignoring ASCII case:
/// only the Kelvin sign and the dotted capital I lowercase to something
/// starting with an ASCII character.
#[test]
fn no_other_character_lowercases_to_ascii() {
    let to_ascii: Vec<char> = (0x80..=0x10FFFF)
        .filter_map(char::from_u32)
        .filter(|c| c.to_lowercase().next().is_some_and(|l| l.is_ascii()))
        .collect();
    assert_eq!(to_ascii, ['\u{130}', '\u{212A}']);
    assert_eq!("\u{130}".to_lowercase(), "i\u{307}");
    assert!(ATTRIBUTION_OPENERS
        .iter()
        .all(|o| o.is_ascii() && !o.contains('k') && o.ends_with(' ')));
}

#[test]
fn needs_normalizing_finds_what_normalizing_changes() {
    for c in [
        '\r', '\u{A0}', '\u{AD}', '\u{34F}', '\u{200B}', '\u{200C}', '\u{2060}', '\u{FEFF}',
    ] {
        assert!(needs_normalizing(format!("ab{c}é").as_bytes()), "{c:?}");
    }
    for text in [
        "plain",
        "Grüße — “quoted” ’",
        "\u{200D}\u{2061}\u{FEFE}\u{34E}\u{AC}",
    ] {
        assert!(!needs_normalizing(text.as_bytes()), "{text:?}");
    }
}

#[test]
fn numbers_are_padded_as_format_pads_them() {
    for (n, width) in [
        (0, 2),
        (7, 2),
        (42, 2),
        (123, 2),
        (5, 4),
        (2025, 4),
        (65535, 4),
        (u32::MAX, 2),
    ] {
        let mut s = String::new();
        push_padded(&mut s, n, width);
        assert_eq!(s, format!("{n:0width$}"));
    }
}

#[test]
fn a_message_stored_without_its_collapsed_body_reads_back_the_same() {
    for (name, raw) in corpus() {
        let Ok(full) = parse_message(&raw) else {
            continue;
        };
        let stored = parse_message_to_store(&raw).unwrap();
        assert!(
            stored.body_new.is_empty() && stored.quoted.is_none(),
            "{name}"
        );
        let json = serde_json::to_string(&stored).unwrap();
        assert!(
            json.len() < serde_json::to_string(&full).unwrap().len() || full.body.is_empty(),
            "{name}"
        );
        assert_eq!(
            ParsedMessage::from_stored_json(&json).unwrap(),
            full,
            "{name}"
        );
        // Data stored in full (schema 2) reads as it is.
        let old = serde_json::to_string(&full).unwrap();
        assert_eq!(
            ParsedMessage::from_stored_json(&old).unwrap(),
            full,
            "{name}"
        );
    }
}
