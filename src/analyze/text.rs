//! A message's new text → sentences with tokens and lexicon hits.
//!
//! Everything downstream works on sentences, so this is where mail's quirks are
//! absorbed: hard-wrapped lines are joined back, list items and greeting lines stand
//! alone, inline `>` quotes (which `message::collapse_quotes` keeps for inline replies)
//! are dropped, and sentence ends are found without being fooled by "e.g.", "Mr.",
//! "v2.5", URLs with `?` or German ordinal dates ("bis zum 15. Dezember").

use super::lexicon::{self, Hit, Substrings, Tag};

/// One sentence of a message, with a lowercased, normalized copy for matching.
pub(super) struct Sentence {
    /// As written, whitespace collapsed.
    pub text: String,
    /// Lowercase; typographic apostrophes and full-width ASCII (`？`, `１２`) folded.
    pub lower: String,
    /// Byte offset in `text` for each byte offset in `lower` (plus one past the end),
    /// so spans found in `lower` can be cut from `text` with their capitals; `None`
    /// when the offsets are the same (ASCII text).
    map: Option<Vec<u32>>,
    toks: Vec<(u32, u32)>,
    pub hits: Vec<Hit<Tag>>,
    /// A list item of its own ("- Rockset for online serving").
    pub list_item: bool,
    /// Contains Japanese (or other CJK) text: matched by substring, not by token.
    pub cjk: bool,
    /// `word_count`, counted on first use (asked many times of some sentences, never
    /// of most).
    words: std::cell::OnceCell<usize>,
}

impl Sentence {
    pub fn new(text: &str, list_item: bool) -> Sentence {
        let text = collapse_ws(text);
        let ascii = text.is_ascii();
        let (lower, map) = fold(&text, ascii);
        let toks = tokenize(&lower);
        // CJK characters are never ASCII: no need to look at each one.
        let cjk = !ascii && text.chars().any(is_cjk);
        let mut s = Sentence {
            text,
            lower,
            map,
            toks,
            hits: Vec::new(),
            list_item,
            cjk,
            words: std::cell::OnceCell::new(),
        };
        let mut hits = Vec::new();
        lexicon::main().scan(s.toks.len(), |i| s.tok(i), &mut hits);
        s.hits = hits;
        s
    }

    fn to_text(&self, lower_offset: usize) -> usize {
        match &self.map {
            None => lower_offset,
            Some(m) => m[lower_offset] as usize,
        }
    }

    pub fn tok(&self, i: usize) -> &str {
        let (a, b) = self.toks[i];
        &self.lower[a as usize..b as usize]
    }

    pub fn ntok(&self) -> usize {
        self.toks.len()
    }

    pub fn has(&self, tag: Tag) -> bool {
        self.hits.iter().any(|h| h.tag == tag)
    }

    pub fn first(&self, tag: Tag) -> Option<&Hit<Tag>> {
        self.hits.iter().find(|h| h.tag == tag)
    }

    /// The original text from token `a` to the end of token `b - 1`.
    pub fn span(&self, a: usize, b: usize) -> &str {
        if a >= b || b > self.toks.len() {
            return "";
        }
        let from = self.to_text(self.toks[a].0 as usize);
        let to = self.to_text(self.toks[b - 1].1 as usize);
        &self.text[from..to]
    }

    /// The original text from token `a` to the end of the sentence.
    pub fn rest_from(&self, a: usize) -> &str {
        if a >= self.toks.len() {
            return "";
        }
        &self.text[self.to_text(self.toks[a].0 as usize)..]
    }

    /// The original text for a byte range of `lower`.
    pub fn orig(&self, a: usize, b: usize) -> &str {
        &self.text[self.to_text(a)..self.to_text(b)]
    }

    /// The character right after token `i` in the original text.
    pub fn char_after_tok(&self, i: usize) -> Option<char> {
        let end = self.to_text(self.toks[i].1 as usize);
        self.text[end..].chars().next()
    }

    pub fn ends_question(&self) -> bool {
        self.lower
            .trim_end_matches(|c: char| is_closer(c) || c.is_whitespace() || c == '.')
            .ends_with(['?', '？'])
    }

    pub fn contains_any(&self, phrases: &Substrings) -> bool {
        // Without an offset map `lower` is ASCII, and cannot contain the Japanese
        // phrases most callers pass.
        phrases.in_text(&self.lower, self.map.is_none())
    }

    /// The sentence without its final punctuation, for suffix tests on Japanese.
    pub fn trimmed_end(&self) -> &str {
        self.lower.trim_end_matches(|c: char| {
            matches!(c, '。' | '.' | '!' | '?' | '！' | '…' | '〜' | '~')
                || is_closer(c)
                || c.is_whitespace()
        })
    }

    /// Words only (no punctuation tokens), a rough length for the summary.
    pub fn word_count(&self) -> usize {
        *self.words.get_or_init(|| {
            (0..self.ntok())
                .filter(|&i| {
                    self.tok(i)
                        .chars()
                        .next()
                        .is_some_and(char::is_alphanumeric)
                })
                .count()
        })
    }
}

pub(super) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF   // kana
        | 0x3400..=0x4DBF // CJK ext A
        | 0x4E00..=0x9FFF // CJK unified
        | 0xF900..=0xFAFF
        | 0xAC00..=0xD7AF // Hangul
    )
}

fn is_closer(c: char) -> bool {
    matches!(
        c,
        ')' | ']' | '"' | '\'' | '»' | '」' | '』' | '）' | '”' | '’' | '*' | '_'
    )
}

fn collapse_ws(s: &str) -> String {
    // Already collapsed (no leading, trailing or double space, no other whitespace):
    // the usual case, checked in one pass.
    // A branch-free pass over the bytes (ASCII whitespace for `char::is_whitespace`
    // is `\t`..=`\r` and the space); characters are decoded only if there are
    // non-ASCII ones, for the Unicode spaces.
    let b = s.as_bytes();
    let mut bad = b.first() == Some(&b' ') || b.last() == Some(&b' ');
    let mut high = false;
    let mut prev_space = false;
    for &x in b {
        let space = x == b' ';
        bad |= (space & prev_space) | (x.wrapping_sub(0x09) <= 0x0D - 0x09);
        high |= !x.is_ascii();
        prev_space = space;
    }
    let unicode_space = high && s.chars().any(|c| !c.is_ascii() && c.is_whitespace());
    let clean = !bad && !unicode_space;
    if clean {
        return s.to_string();
    }
    crate::message::squash_whitespace(s)
}

/// Lowercase with apostrophes and full-width forms folded, and the offset map back.
fn fold(text: &str, ascii: bool) -> (String, Option<Vec<u32>>) {
    if ascii && !text.contains('`') {
        return (text.to_ascii_lowercase(), None);
    }
    let mut lower = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len() + 1);
    let bytes = text.as_bytes();
    let mut o = 0;
    while o < text.len() {
        // ASCII (most of a European sentence): one byte for one, as `to_lowercase`
        // would give, without the char decoding and the lowercase table.
        let b = bytes[o];
        if b.is_ascii() && b != b'`' {
            lower.push(char::from(b.to_ascii_lowercase()));
            map.push(o as u32);
            o += 1;
            continue;
        }
        let c = char_at(text, o);
        let before = lower.len();
        match c {
            '\u{2019}' | '\u{2018}' | '\u{02BC}' | '\u{FF07}' | '`' => lower.push('\''),
            '\u{FF01}'..='\u{FF5E}' => {
                let a = char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c);
                lower.extend(a.to_lowercase());
            }
            '\u{3000}' => lower.push(' '),
            _ => lower.extend(c.to_lowercase()),
        }
        map.extend(std::iter::repeat_n(o as u32, lower.len() - before));
        o += c.len_utf8();
    }
    map.push(text.len() as u32);
    (lower, Some(map))
}

/// French elided articles and pronouns that start a token of their own, so that
/// "j'enverrai" matches like "je enverrai" would and "m'envoyer" has its verb.
const ELISIONS: &[&str] = &[
    "j", "l", "d", "m", "n", "s", "t", "c", "qu", "jusqu", "lorsqu", "puisqu",
];

/// Words (letters and digits, with inner apostrophes), plus the punctuation the
/// patterns need (`,` `;` `:` `?` `!` `/` and dashes) as tokens of their own. Hyphens
/// split words ("pourriez-vous" → "pourriez" "vous"); CJK text yields no tokens.
pub(super) fn tokenize(s: &str) -> Vec<(u32, u32)> {
    // About one token per five bytes of text: most sentences without regrowing.
    let mut out = Vec::with_capacity(s.len() / 4 + 1);
    let b = s.as_bytes();
    let mut start: Option<usize> = None;
    let flush = |start: &mut Option<usize>, end: usize, out: &mut Vec<(u32, u32)>| {
        if let Some(a) = start.take() {
            let word = &s[a..end];
            // A byte loop: words are short, and `find(char)` sets up a searcher.
            if let Some(q) = word.bytes().position(|b| b == b'\'') {
                if ELISIONS.contains(&&word[..q]) && q + 1 < word.len() {
                    out.push((a as u32, (a + q + 1) as u32));
                    out.push(((a + q + 1) as u32, end as u32));
                    return;
                }
            }
            out.push((a as u32, end as u32));
        }
    };
    // Byte by byte, decoding only non-ASCII characters.
    let mut next = 0;
    while next < s.len() {
        let i = next;
        let c = if b[i].is_ascii() {
            char::from(b[i])
        } else {
            char_at(s, i)
        };
        next = i + c.len_utf8();
        let word_char = is_word_char(c)
            || (c == '\'' && start.is_some() && s[next..].chars().next().is_some_and(is_word_char));
        if word_char {
            if start.is_none() {
                start = Some(i);
            }
            continue;
        }
        flush(&mut start, i, &mut out);
        // A French elision at the end of a word ("d'" before a space) still counts.
        if c == '\'' && i > 0 && b[i - 1].is_ascii_alphabetic() {
            if let Some(last) = out.last_mut() {
                if last.1 as usize == i && ELISIONS.contains(&&s[last.0 as usize..i]) {
                    last.1 = (i + 1) as u32;
                }
            }
            continue;
        }
        if matches!(
            c,
            ',' | ';' | ':' | '?' | '!' | '/' | '—' | '–' | '、' | '，' | '*'
        ) {
            out.push((i as u32, (i + c.len_utf8()) as u32));
        } else if c == '-' && s[i + 1..].starts_with([' ', '-']) && (i == 0 || b[i - 1] == b' ') {
            // A spaced hyphen is a dash ("Priya - can you"), not a word joint.
            out.push((i as u32, (i + 1) as u32));
        }
    }
    flush(&mut start, s.len(), &mut out);
    out
}

/// A letter or digit of a word (CJK excepted); ASCII without the Unicode tables.
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric()
    } else {
        c.is_alphanumeric() && !is_cjk(c)
    }
}

// ---------------------------------------------------------------------------
// Blocks and sentences

/// Splits a Markdown body (`ParsedMessage::body_new`) into sentences.
pub(super) fn sentences(body: &str) -> Vec<Sentence> {
    // Room for a sentence per 64 bytes of text: growing a Vec of these large structs
    // meant reallocating (and copying) several times per message.
    let mut out = Vec::with_capacity(body.len() / 64 + 4);
    blocks(body, |text, list_item| {
        split_sentences(text, |s| out.push(Sentence::new(s, list_item)));
    });
    out
}

/// Paragraphs with wrapped lines joined, list items and short lines ending in a comma
/// ("Hi Jason,", "Thanks,") on their own, handed to `out` in order (with whether each
/// is a list item). One buffer serves every block: no allocation per block.
fn blocks(body: &str, mut out: impl FnMut(&str, bool)) {
    let mut cur = String::new();
    let mut cur_list = false;
    let mut flush = |cur: &mut String, list: &mut bool| {
        if !cur.trim().is_empty() {
            out(cur, *list);
        }
        cur.clear();
        *list = false;
    };
    for raw in body.lines() {
        let line = raw.trim();
        if line.starts_with('>') {
            flush(&mut cur, &mut cur_list);
            continue;
        }
        if is_history_start(line) {
            break;
        }
        if line.is_empty() || is_rule(line) {
            flush(&mut cur, &mut cur_list);
            continue;
        }
        let line = unmarkdown(line);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if is_salutation(line) {
            flush(&mut cur, &mut cur_list);
        }
        if let Some(item) = list_item(line) {
            flush(&mut cur, &mut cur_list);
            cur.push_str(item);
            cur_list = true;
            continue;
        }
        if !cur.is_empty() {
            let prev_cjk = cur.chars().last().is_some_and(is_cjk);
            let next_cjk = line.chars().next().is_some_and(is_cjk);
            if !(prev_cjk && next_cjk) {
                cur.push(' ');
            }
        }
        cur.push_str(line);
        // The cheap end test first: most lines end in neither.
        let short_comma = line.ends_with([',', '，']) && line.chars().count() <= 40;
        let ja_salutation =
            (line.ends_with('様') || line.ends_with("さん") || line.ends_with("各位"))
                && line.chars().count() <= 24
                && line.chars().any(is_cjk);
        if short_comma || ja_salutation {
            flush(&mut cur, &mut cur_list);
        }
    }
    flush(&mut cur, &mut cur_list);
}

/// "Best,", "Thanks!", "Hi Jason,", "Mit freundlichen Grüßen": a line of its own even
/// without a blank line before it.
fn is_salutation(line: &str) -> bool {
    const WORDS: &[&str] = &[
        "hi",
        "hello",
        "hey",
        "dear",
        "best",
        "thanks",
        "thank",
        "regards",
        "cheers",
        "kind",
        "warm",
        "sincerely",
        "hallo",
        "liebe",
        "lieber",
        "viele",
        "beste",
        "mit",
        "gruß",
        "grüße",
        "danke",
        "bonjour",
        "salut",
        "cordialement",
        "bien",
        "merci",
        "hola",
        "saludos",
        "gracias",
        "un",
    ];
    // Tested on every line: the end first, then the word count without collecting
    // the words, and the first word lowercased only when it is not ASCII (for ASCII,
    // `to_lowercase` is `eq_ignore_ascii_case` against the lowercase list).
    if !line.ends_with([',', '!', ':']) {
        return false;
    }
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else {
        return false;
    };
    if words.nth(3).is_some() {
        return false;
    }
    let w = first.trim_end_matches([',', '!', ':']);
    if w.is_ascii() {
        WORDS.iter().any(|x| x.eq_ignore_ascii_case(w))
    } else {
        WORDS.contains(&w.to_lowercase().as_str())
    }
}

fn is_rule(line: &str) -> bool {
    // Three or more non-space characters, all of one kind. Tested on every line, so in
    // one pass without collecting, and stopping at the first character of no kind.
    let (mut dash, mut under, mut star, mut equals, mut boxes) = (true, true, true, true, true);
    let mut n = 0;
    for c in line.chars().filter(|c| !c.is_whitespace()) {
        n += 1;
        dash &= c == '-' || c == '\\';
        under &= c == '_' || c == '\\';
        star &= c == '*';
        equals &= c == '=';
        boxes &= c == '━' || c == '─';
        if !(dash || under || star || equals || boxes) {
            return false;
        }
    }
    n >= 3
}

/// History that `message::collapse_quotes` missed (belt and braces: quoted text must
/// never yield questions or commitments).
fn is_history_start(line: &str) -> bool {
    if !line.starts_with(['-', '_', '*', '\\']) && !crate::message::has_colon(line) {
        return false;
    }
    // What could make it history, before copying the line: `l` below starts with the
    // first character outside `*`, `\` and spaces, and ends with the last (only A-Z
    // lowercase to f, v, d).
    let significant = |c: &char| !matches!(c, '*' | '\\') && !c.is_whitespace();
    let first = line.chars().find(significant);
    let last = line.chars().rev().find(significant);
    let may_be = matches!(
        first,
        Some('-' | '_' | 'f' | 'F' | 'v' | 'V' | 'd' | 'D' | '差')
    ) || matches!(last, Some(':' | '：'));
    if !may_be {
        return false;
    }
    let l = line.replace(['*', '\\'], "").to_lowercase();
    let l = l.trim();
    if l.starts_with("---") || l.starts_with("___") {
        let inner = l.trim_matches(|c: char| c == '-' || c == '_' || c.is_whitespace());
        return [
            "original message",
            "ursprüngliche nachricht",
            "message d'origine",
            "message d’origine",
            "mensaje original",
            "forwarded message",
            "weitergeleitete nachricht",
            "message transféré",
            "mensaje reenviado",
            "元のメッセージ",
            "転送メッセージ",
        ]
        .contains(&inner);
    }
    let ends_attribution = (l.ends_with(':') || l.ends_with('：'))
        && [
            "wrote:",
            "schrieb:",
            "a écrit :",
            "a écrit:",
            "escribió:",
            "のメッセージ:",
            "> :",
            ">:",
        ]
        .iter()
        .any(|e| l.ends_with(e));
    if ends_attribution && (l.contains('@') || l.chars().any(|c| c.is_ascii_digit())) {
        return true;
    }
    for label in [
        "from:",
        "von:",
        "de :",
        "de:",
        "差出人:",
        "差出人：",
        "from :",
        "de：",
    ] {
        if let Some(rest) = l.strip_prefix(label) {
            return rest.contains('@') || rest.contains('<');
        }
    }
    false
}

/// Markdown decoration off: escapes, emphasis, headings, links (their text kept).
fn unmarkdown(line: &str) -> std::borrow::Cow<'_, str> {
    if !crate::message::contains_any_ascii(line, b"#\\*_![<") {
        return std::borrow::Cow::Borrowed(line);
    }
    let s = if line.starts_with('#') {
        line.trim_start_matches('#').trim_start()
    } else {
        line
    };
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1).is_some_and(|n| n.is_ascii_punctuation()) => {
                out.push(chars[i + 1]);
                i += 2;
                continue;
            }
            '*' => {
                i += 1;
                continue;
            }
            '_' if chars.get(i + 1) == Some(&'_') => {
                i += 2;
                continue;
            }
            '!' if chars.get(i + 1) == Some(&'[') => {
                i += 1;
                continue;
            }
            '[' => {
                // [text](url) → text
                if let Some(close) = (i + 1..chars.len()).find(|&k| chars[k] == ']') {
                    if chars.get(close + 1) == Some(&'(') {
                        if let Some(end) = (close + 2..chars.len()).find(|&k| chars[k] == ')') {
                            out.extend(&chars[i + 1..close]);
                            i = end + 1;
                            continue;
                        }
                    }
                }
                out.push(c);
            }
            '<' => {
                // <https://…> autolinks → the address
                if let Some(end) = (i + 1..chars.len()).find(|&k| chars[k] == '>') {
                    let inner: String = chars[i + 1..end].iter().collect();
                    if inner.contains("://") || inner.contains('@') {
                        out.push_str(&inner);
                        i = end + 1;
                        continue;
                    }
                }
                out.push(c);
            }
            _ => out.push(c),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// The text of a list item line ("- x", "* x", "1. x", "・x"), if it is one.
fn list_item(line: &str) -> Option<&str> {
    for m in ["- ", "* ", "+ ", "• ", "・", "■ ", "■", "□ "] {
        if let Some(rest) = line.strip_prefix(m) {
            return Some(rest.trim_start());
        }
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if (1..=2).contains(&digits) {
        let rest = &line[digits..];
        if let Some(r) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some(r.trim_start());
        }
    }
    None
}

/// Abbreviations whose period does not end a sentence (lowercase, without the
/// final period).
const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "eg", "ie", "mr", "mrs", "ms", "dr", "prof", "st", "vs", "approx", "inc", "ltd",
    "co", "corp", "jr", "sr", "no", "nos", "nr", "tel", "ext", "fig", "dept", "est", "p.m", "a.m",
    "p.o", "u.s", "u.k", "cf", "al", "z.b", "zb", "d.h", "u.a", "bzw", "ca", "evtl", "ggf", "usw",
    "vgl", "inkl", "exkl", "bspw", "m", "mme", "mlle", "me", "p.ex", "env", "cie", "sra", "srta",
    "ud", "uds", "dra", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "okt", "nov", "dec", "dez", "déc", "janv", "févr", "avr", "juil", "mon", "tue", "tues", "wed",
    "thu", "thur", "thurs", "fri", "sat", "sun", "mo", "di", "mi", "do", "fr", "sa", "so", "lun",
    "mer", "jeu", "ven", "sam", "dim", "v", "vol", "op",
];

const MONTH_WORDS: &[&str] = &[
    "januar",
    "jänner",
    "februar",
    "märz",
    "april",
    "mai",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "dezember",
    "january",
    "february",
    "march",
    "may",
    "june",
    "july",
    "october",
    "december",
];

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '?' | '!' | '？' | '！' | '。' | '…')
}

/// Splits a block into sentences at `.` `?` `!` `…` followed by a space, and at the
/// CJK full stops and marks wherever they are; each non-empty sentence goes to `out`.
///
/// Works on byte offsets (no `Vec<char>` per block): a terminator is an ASCII `.?!` or
/// starts with one of the lead bytes of `…` `。` `？` `！`, which no continuation byte
/// equals, so `memchr`-style scanning for those bytes only lands on char boundaries.
fn split_sentences<'t>(text: &'t str, mut out: impl FnMut(&'t str)) {
    let bytes = text.as_bytes();
    let mut start = 0usize;
    let mut i = 0usize;
    while let Some(off) = bytes[i..]
        .iter()
        .position(|&b| matches!(b, b'.' | b'?' | b'!' | 0xE2 | 0xE3 | 0xEF))
    {
        i += off;
        let c = char_at(text, i);
        if !is_terminator(c) {
            i += c.len_utf8();
            continue;
        }
        // The run of terminators and closers ("?!", ".)", "。」").
        let mut j = i + c.len_utf8();
        let mut next = None;
        while j < text.len() {
            let d = char_at(text, j);
            if !(is_terminator(d) || is_closer(d)) {
                next = Some(d);
                break;
            }
            j += d.len_utf8();
        }
        let cjk_mark = matches!(c, '。' | '？' | '！');
        let mut split = cjk_mark || next.is_none_or(char::is_whitespace);
        if split && !cjk_mark && (c == '.' || c == '…') {
            split = period_ends_sentence(text, i, j);
        }
        if split {
            let s = text[start..j].trim();
            if !s.is_empty() {
                out(s);
            }
            start = j;
        }
        i = j;
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out(s);
    }
}

fn char_at(text: &str, i: usize) -> char {
    text[i..].chars().next().unwrap_or_default()
}

/// The terminator at byte `i` (run of terminators and closers up to byte `j`) ends the
/// sentence.
fn period_ends_sentence(text: &str, i: usize, j: usize) -> bool {
    // The word before the period.
    let from = text[..i]
        .char_indices()
        .rev()
        .find(|&(_, c)| c.is_whitespace() || c == '(')
        .map_or(0, |(k, c)| k + c.len_utf8());
    let raw = &text[from..i];
    // An ASCII word is compared ignoring case (the lists are lowercase) rather than
    // lowercased into a new String; others are lowercased as before.
    let ascii = raw.is_ascii();
    let lowered;
    let word = if ascii {
        raw
    } else {
        lowered = raw.to_lowercase();
        lowered.as_str()
    };
    let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
    let is = |x: &str| {
        if ascii {
            x.eq_ignore_ascii_case(word)
        } else {
            x == word
        }
    };
    // The next word.
    let after = text[j..].trim_start();
    let Some(next) = after.chars().next() else {
        return true;
    };
    let nb = text.len() - after.len();
    if next.is_lowercase() {
        return false;
    }
    if text.as_bytes()[i] == b'.' && i + 1 < j && text.as_bytes()[i + 1] == b'.' {
        // An ellipsis before a capital ends the sentence.
        return true;
    }
    if is("etc") {
        return true;
    }
    if ABBREVIATIONS.iter().any(|a| is(a)) {
        return false;
    }
    let single_initial = word.chars().count() == 1 && word.chars().all(char::is_alphabetic);
    if single_initial {
        return false;
    }
    if !word.is_empty() && word.len() <= 2 && word.chars().all(|c| c.is_ascii_digit()) {
        // "am 14. Januar", "bis zum 15. 12."
        let rest = text[nb..].to_lowercase();
        let next_word: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        if MONTH_WORDS.contains(&next_word.as_str())
            || next_word.chars().all(|c| c.is_ascii_digit())
        {
            return false;
        }
    }
    true
}
