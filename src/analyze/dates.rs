//! Due dates in a sentence ("by Friday", "bis zum 15. Dezember", "avant jeudi",
//! "12月26日まで", "tomorrow"), resolved against the date of the message that says them.
//!
//! Resolving against the message, not the clock, keeps a note's analysis a function of
//! the thread alone: re-syncing an unchanged thread next week must render the same
//! bytes (notes skip identical writes), and "by Friday" meant the Friday after the mail.

use super::lexicon::{Tag, Time, JA_TIMES, JA_WEEKDAYS};
use super::text::Sentence;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Due {
    /// As written ("by Friday", "bis Freitag", "金曜日までに").
    pub text: String,
    /// Days after the message's date, when the expression names a day.
    pub days: Option<i64>,
    /// A deadline: introduced by "by", "bis", "avant", "まで"…, or a day close enough to
    /// be one by itself ("today", "tomorrow", "EOD", "this week", "ASAP").
    pub firm: bool,
}

/// The civil day number (days since 1970-01-01) in the sender's time zone.
pub(super) fn civil_day(unix: i64, offset_minutes: i32) -> i64 {
    (unix + i64::from(offset_minutes) * 60).div_euclid(86_400)
}

/// Monday = 0.
pub(super) fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(super) use crate::notes::days_from_civil;

pub(super) fn year_of(day: i64) -> i64 {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(m <= 2)
}

/// The next occurrence of month/day on or after roughly a month before `today`
/// ("January 15" written in December is next year's).
fn date_days(today: i64, month: i64, day: i64, year: Option<i64>) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = year.unwrap_or_else(|| year_of(today));
    let mut target = days_from_civil(y, month, day);
    if year.is_none() && target < today - 31 {
        target = days_from_civil(y + 1, month, day);
    }
    Some(target - today)
}

fn number(tok: &str) -> Option<i64> {
    let t = tok.trim_end_matches(|c: char| c.is_alphabetic());
    if t.is_empty() || t.len() > 4 || !t.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // "19th", "1st", "1er", "15." (the period is not a token)
    let suffix = &tok[t.len()..];
    if !matches!(suffix, "" | "st" | "nd" | "rd" | "th" | "er" | "e" | "º") {
        return None;
    }
    t.parse().ok()
}

/// Tokens that may sit between a deadline preposition and its time ("by the 15th",
/// "bis zum", "avant le", "antes del").
const FILLERS: &[&str] = &[
    "the",
    "this",
    "le",
    "la",
    "el",
    "zum",
    "am",
    "den",
    "dem",
    "de",
    "del",
    "end",
    "of",
    "ce",
    "cette",
    "coming",
    "next",
    "nächsten",
    "kommenden",
    "próximo",
];

/// The first due date in tokens `[a, b)` of a sentence (all of it for Japanese).
pub(super) fn find_due(s: &Sentence, a: usize, b: usize, today: i64) -> Option<Due> {
    if s.cjk {
        if let Some(d) = find_due_ja(s, today) {
            return Some(d);
        }
    }
    let mut skip_until = 0;
    for h in &s.hits {
        if h.start < a || h.end > b || h.start < skip_until {
            continue;
        }
        let (start, end, days, strong) = match h.tag {
            Tag::Time(t) => {
                let w = s.tok(h.start);
                let prev = (h.start > 0).then(|| s.tok(h.start - 1));
                if w == "morgen" && prev == Some("guten") {
                    continue;
                }
                let mut t = t;
                if w == "mañana" {
                    match prev {
                        Some("esta") => t = Time::Today,
                        Some("la" | "por") => continue,
                        _ => {}
                    }
                }
                let (days, strong) = resolve(t, today);
                let mut days = days;
                if let Time::Weekday(_) = t {
                    let next_before = prev.is_some_and(|p| {
                        matches!(p, "next" | "nächsten" | "kommenden" | "próximo")
                    });
                    let next_after =
                        h.end < s.ntok() && matches!(s.tok(h.end), "prochain" | "próximo" | "que");
                    if next_before || next_after {
                        days = days.map(|d| d + 7);
                    }
                }
                (h.start, h.end, days, strong)
            }
            Tag::Month(m) => {
                let m = i64::from(m);
                // "December 19(, 2025)" or "19 December", "19. Dezember", "19 de diciembre"
                let after = (h.end < s.ntok()).then(|| number(s.tok(h.end))).flatten();
                let mut before_at = h.start;
                if before_at > 0 && s.tok(before_at - 1) == "de" {
                    before_at -= 1;
                }
                let before = (before_at > 0)
                    .then(|| number(s.tok(before_at - 1)))
                    .flatten();
                match (after, before) {
                    (Some(d), _) if d <= 31 => {
                        let mut end = h.end + 1;
                        let mut year = None;
                        let mut k = end;
                        if k < s.ntok() && s.tok(k) == "," {
                            k += 1;
                        }
                        if let Some(y) = (k < s.ntok()).then(|| number(s.tok(k))).flatten() {
                            if (1900..2200).contains(&y) {
                                year = Some(y);
                                end = k + 1;
                            }
                        }
                        (h.start, end, date_days(today, m, d, year), false)
                    }
                    (_, Some(d)) if d <= 31 => {
                        (before_at - 1, h.end, date_days(today, m, d, None), false)
                    }
                    _ => continue,
                }
            }
            Tag::Prep => {
                // Numeric dates only after a deadline word: "by 12/15", "bis zum 15.12."
                let mut k = h.end;
                while k < s.ntok() && FILLERS.contains(&s.tok(k)) {
                    k += 1;
                }
                let n1 = (k < s.ntok()).then(|| number(s.tok(k))).flatten();
                let Some(n1) = n1 else { continue };
                let slash = k + 1 < s.ntok() && s.tok(k + 1) == "/";
                let second = if slash { k + 2 } else { k + 1 };
                let Some(n2) = (second < s.ntok()).then(|| number(s.tok(second))).flatten() else {
                    continue;
                };
                // Dotted day.month needs its trailing period ("15.12."), or "grew by
                // 2.5%" would be a date.
                if !slash && s.char_after_tok(second) != Some('.') {
                    continue;
                }
                let (m, d) = if slash && n1 <= 12 {
                    (n1, n2)
                } else {
                    (n2, n1)
                };
                let Some(days) = date_days(today, m, d, None) else {
                    continue;
                };
                return Some(Due {
                    text: trim_due(s.span(h.start, second + 1)),
                    days: Some(days),
                    firm: true,
                });
            }
            _ => continue,
        };
        skip_until = end;
        // A deadline word right before (fillers allowed), or "since" (no deadline).
        let mut k = start;
        let (prep, since) = loop {
            let prep = s
                .hits
                .iter()
                .filter(|p| p.tag == Tag::Prep && p.end == k && p.start >= a)
                .map(|p| p.start)
                .min();
            let since = s.hits.iter().any(|p| p.tag == Tag::Since && p.end == k);
            if prep.is_some() || since || k <= a || !FILLERS.contains(&s.tok(k - 1)) {
                break (prep, since);
            }
            k -= 1;
        };
        if since {
            continue;
        }
        let from = prep.unwrap_or(start);
        return Some(Due {
            text: trim_due(s.span(from, end)),
            days,
            firm: prep.is_some() || strong,
        });
    }
    None
}

fn trim_due(s: &str) -> String {
    s.trim_end_matches([',', '.', ';', ':'])
        .trim_end_matches("'s")
        .trim_end_matches("’s")
        .to_string()
}

/// Days from the message's day, and whether the expression is a deadline by itself.
fn resolve(t: Time, today: i64) -> (Option<i64>, bool) {
    match t {
        Time::Today | Time::Asap => (Some(0), true),
        Time::Tomorrow => (Some(1), true),
        Time::DayAfter => (Some(2), true),
        Time::ThisWeek => (Some((4 - weekday(today)).max(0)), true),
        Time::NextWeek => (Some(7), false),
        Time::NextMonth => (Some(30), false),
        Time::Weekday(d) => (Some((i64::from(d) - weekday(today)).rem_euclid(7)), false),
        Time::Vague => (None, false),
    }
}

/// Japanese: 本日中, 明日までに, 金曜日まで, 12月26日, 今週中.
fn find_due_ja(s: &Sentence, today: i64) -> Option<Due> {
    let l = s.lower.as_str();
    let mut found: Option<(usize, usize, Option<i64>, bool)> = None;
    let mut consider = |pos: usize, end: usize, days: Option<i64>, strong: bool| {
        if found.is_none_or(|f| pos < f.0) {
            found = Some((pos, end, days, strong));
        }
    };
    for &(w, days) in JA_TIMES {
        if let Some(p) = l.find(w) {
            let days = days.or_else(|| Some((4 - weekday(today)).max(0)));
            let strong = days.is_some_and(|d| d <= 1) || w.ends_with('中');
            consider(p, p + w.len(), days, strong);
        }
    }
    for (d, w) in JA_WEEKDAYS.iter().enumerate() {
        if let Some(p) = l.find(w) {
            let mut end = p + w.len();
            if l[end..].starts_with('日') {
                end += '日'.len_utf8();
            }
            let days = (d as i64 - weekday(today)).rem_euclid(7);
            consider(p, end, Some(days), false);
        }
    }
    // M月D日
    if let Some(p) = l.find('月') {
        let digits_before: String = l[..p]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let after = &l[p + '月'.len_utf8()..];
        let digits_after: String = after.chars().take_while(char::is_ascii_digit).collect();
        if !digits_before.is_empty()
            && !digits_after.is_empty()
            && after[digits_after.len()..].starts_with('日')
        {
            let m: i64 = digits_before.parse().unwrap_or(0);
            let d: i64 = digits_after.parse().unwrap_or(0);
            let start = p - digits_before.len();
            let end = p + '月'.len_utf8() + digits_after.len() + '日'.len_utf8();
            consider(start, end, date_days(today, m, d, None), false);
        }
    }
    let (pos, mut end, days, strong) = found?;
    // A weekday in parentheses after a date: 12月17日(水)
    for paren in ["(", "（"] {
        if l[end..].starts_with(paren) {
            if let Some(close) = l[end..].find([')', '）']) {
                if close <= 6 {
                    end += close + l[end + close..].chars().next().map_or(1, char::len_utf8);
                }
            }
        }
    }
    let mut firm = strong;
    for marker in ["までに", "まで"] {
        if l[end..].starts_with(marker) {
            end += marker.len();
            firm = true;
            break;
        }
    }
    Some(Due {
        text: s.orig(pos, end).to_string(),
        days,
        firm,
    })
}
