//! Finding sensitive values in one piece of text. One multi-pattern regex
//! proposes candidates in a single pass; a check per entity type keeps the
//! real ones (word boundaries, Luhn, IBAN length and mod-97, IPv6 parsing,
//! entropy). The earliest candidate wins; at the same start, the type listed
//! first (custom patterns, then known secret shapes, e-mail, IBAN, card,
//! phone, IP, generic secrets). Compiled detectors are cached per
//! configuration: warm instances reuse them across requests.
//! Knows nothing of placeholders or JSON bodies (`redact` does).

use crate::config::{Builtin, Config, CustomSpec};
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input, PatternID};
use std::cell::RefCell;
use std::net::Ipv6Addr;
use std::rc::Rc;

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A built-in entity type.
    Builtin(Builtin),
    /// The custom pattern with this index in the configuration.
    Custom(usize),
}

/// One sensitive value: the byte range `start..end` of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// Its type.
    pub kind: Kind,
}

/// How a candidate is checked (several per built-in type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Email,
    Phone,
    Card,
    Iban,
    Ipv4,
    Ipv6,
    KnownSecret,
    GenericSecret,
    Custom,
}

impl Check {
    /// Candidates of bounded length: after a rejected one, look again from
    /// the next word start rather than after its end (the real value may
    /// start inside it).
    fn bounded(self) -> bool {
        matches!(
            self,
            Check::Phone | Check::Card | Check::Iban | Check::Ipv4 | Check::Ipv6
        )
    }
}

const EMAIL: &str =
    r"[A-Za-z0-9][A-Za-z0-9._%+\-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}";
/// `+` and country code with 2–6 digit groups, or a US number with separators.
const PHONE: &str = r"\+[1-9][0-9]{0,3}(?:[ .\-]?\(?[0-9]{1,4}\)?){2,6}|(?:1[ .\-]?)?(?:\([2-9][0-9]{2}\)[ .\-]?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4}";
const CARD: &str = r"[2-6](?:[ \-]?[0-9]){12,18}";
const IBAN: &str = r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}";
const IPV4: &str = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const IPV6: &str = r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:(?:\.[0-9]{1,3}){3})?";
/// Provider key shapes: OpenAI and Anthropic (`sk-`, `sk-proj-`, `sk-ant-`),
/// AWS access keys, GitHub, Slack, Google, Hugging Face, Groq, Stripe, JWTs
/// and PEM private keys.
const KNOWN_SECRET: &str = concat!(
    r"sk-[A-Za-z0-9_\-]{20,}",
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}",
    r"|gh[pousr]_[A-Za-z0-9]{36,}",
    r"|github_pat_[A-Za-z0-9_]{22,}",
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"|AIza[0-9A-Za-z_\-]{35}",
    r"|hf_[A-Za-z0-9]{30,}",
    r"|gsk_[A-Za-z0-9]{20,}",
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.)*?-----END [A-Z ]*PRIVATE KEY-----",
);
const GENERIC_SECRET: &str = r"[A-Za-z0-9_\-+/]{24,}={0,2}";

/// Shannon entropy (bits per character) a generic token needs.
const MIN_ENTROPY: f64 = 3.5;
/// Above this share of letters in word-like segments, a token is an
/// identifier or a path, not a secret.
const MAX_WORDINESS: f64 = 0.5;
/// Longest match of a bounded pattern (an IBAN with a space between every
/// character: 4 + 2 × 30).
const MAX_BOUNDED_LEN: usize = 64;
/// Compiled-size limit of one custom pattern.
const CUSTOM_SIZE_LIMIT: usize = 1 << 20;

/// Patterns searched together, in priority order, with the check of each.
struct PatternSet {
    regex: Regex,
    rules: Vec<(Kind, Check)>,
}

/// A candidate no pattern accepted.
struct Rejected {
    start: usize,
    end: usize,
    bounded: bool,
}

impl PatternSet {
    fn new(rules: Vec<(Kind, Check, &str)>) -> Result<Option<PatternSet>, String> {
        if rules.is_empty() {
            return Ok(None);
        }
        let patterns: Vec<&str> = rules.iter().map(|r| r.2).collect();
        let regex = Regex::new_many(&patterns)
            .map_err(|e| format!("patterns failed to compile together: {e}"))?;
        Ok(Some(PatternSet {
            regex,
            rules: rules.into_iter().map(|(k, c, _)| (k, c)).collect(),
        }))
    }

    /// The first candidate starting at or after `from`: accepted, or (when
    /// neither its pattern nor a later one matching at the same start passes
    /// its check) rejected.
    fn next(&self, text: &str, from: usize, until: usize) -> Option<Result<Finding, Rejected>> {
        let m = self.regex.search(&Input::new(text).span(from..until))?;
        let (start, end, first) = (m.start(), m.end(), m.pattern().as_usize());
        for p in first..self.rules.len() {
            let (kind, check) = self.rules[p];
            let span = if p == first {
                Some((start, end))
            } else {
                let Ok(id) = PatternID::new(p) else { continue };
                let input = Input::new(text)
                    .span(start..until)
                    .anchored(Anchored::Pattern(id));
                self.regex.search(&input).map(|m| (m.start(), m.end()))
            };
            if let Some((a, b)) = span.and_then(|(a, b)| accept(check, text, a, b))
                && b > a
            {
                return Some(Ok(Finding {
                    start: a,
                    end: b,
                    kind,
                }));
            }
        }
        Some(Err(Rejected {
            start,
            end,
            bounded: self.rules[first].1.bounded(),
        }))
    }
}

/// The compiled patterns of one configuration.
pub struct Detector {
    /// Every enabled pattern.
    all: Option<PatternSet>,
    /// The bounded (number-like) ones again, to look inside rejected
    /// candidates of unbounded patterns.
    bounded: Option<PatternSet>,
    custom: Vec<String>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("patterns", &self.all.as_ref().map_or(0, |s| s.rules.len()))
            .field("custom", &self.custom)
            .finish()
    }
}

thread_local! {
    /// The last configuration's detector: instances are configured before
    /// every request, nearly always with the same table.
    static CACHE: RefCell<Option<(String, Rc<Detector>)>> = const { RefCell::new(None) };
}

/// Built-in patterns in priority order.
const BUILTIN: [(Builtin, Check, &str); 8] = [
    (Builtin::Secret, Check::KnownSecret, KNOWN_SECRET),
    (Builtin::Email, Check::Email, EMAIL),
    (Builtin::Iban, Check::Iban, IBAN),
    (Builtin::CreditCard, Check::Card, CARD),
    (Builtin::Phone, Check::Phone, PHONE),
    (Builtin::IpAddress, Check::Ipv6, IPV6),
    (Builtin::IpAddress, Check::Ipv4, IPV4),
    (Builtin::Secret, Check::GenericSecret, GENERIC_SECRET),
];

impl Detector {
    /// The detector for `config`, compiled or from the cache.
    pub fn cached(config: &Config) -> Result<Rc<Detector>, String> {
        let key = format!("{:?}|{:?}", config.entities, config.custom);
        if let Some(hit) = CACHE.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|(k, _)| *k == key)
                .map(|(_, d)| d.clone())
        }) {
            return Ok(hit);
        }
        let detector = Rc::new(Detector::new(&config.entities, &config.custom)?);
        CACHE.with(|c| *c.borrow_mut() = Some((key, detector.clone())));
        Ok(detector)
    }

    /// Compiles the patterns; a bad custom pattern names `custom[i].pattern`.
    pub fn new(entities: &[Builtin], custom: &[CustomSpec]) -> Result<Detector, String> {
        let mut rules: Vec<(Kind, Check, &str)> = Vec::new();
        for (i, spec) in custom.iter().enumerate() {
            // Alone first, so that the error names the pattern.
            let alone = Regex::builder()
                .configure(Regex::config().nfa_size_limit(Some(CUSTOM_SIZE_LIMIT)))
                .build(&spec.pattern)
                .map_err(|e| {
                    format!(
                        "custom[{i}].pattern: invalid regular expression: {}",
                        build_error(&e)
                    )
                })?;
            if alone.is_match("") {
                return Err(format!("custom[{i}].pattern: matches the empty string"));
            }
            rules.push((Kind::Custom(i), Check::Custom, &spec.pattern));
        }
        for (b, check, pattern) in BUILTIN {
            if entities.contains(&b) {
                rules.push((Kind::Builtin(b), check, pattern));
            }
        }
        let bounded = rules.iter().filter(|r| r.1.bounded()).cloned().collect();
        Ok(Detector {
            all: PatternSet::new(rules)?,
            bounded: PatternSet::new(bounded)?,
            custom: custom.iter().map(|c| c.name.clone()).collect(),
        })
    }

    /// The name of a kind in annotations and messages.
    pub fn name(&self, kind: Kind) -> &str {
        match kind {
            Kind::Builtin(b) => b.name(),
            Kind::Custom(i) => self.custom.get(i).map_or("custom", String::as_str),
        }
    }

    /// The placeholder label of a kind: `EMAIL`, `CUSTOM_EMPLOYEE_ID`.
    pub fn label(&self, kind: Kind) -> String {
        match kind {
            Kind::Builtin(b) => b.name().to_ascii_uppercase(),
            Kind::Custom(_) => format!("CUSTOM_{}", self.name(kind).to_ascii_uppercase()),
        }
    }

    /// Every finding in `text`, in order, without overlaps.
    pub fn find(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        let Some(all) = &self.all else {
            return out;
        };
        let mut at = 0;
        while at <= text.len() {
            match all.next(text, at, text.len()) {
                None => break,
                Some(Ok(f)) => {
                    at = f.end;
                    out.push(f);
                }
                // The real value may start inside a rejected number.
                Some(Err(r)) if r.bounded => at = next_word_start(text, r.start),
                Some(Err(r)) => at = self.inside(text, &r, &mut out),
            }
        }
        out
    }

    /// Looks for bounded values inside a rejected unbounded candidate (a card
    /// number within a rejected token); returns where to go on. Each byte is
    /// looked at once more at most, so the whole search stays linear.
    fn inside(&self, text: &str, r: &Rejected, out: &mut Vec<Finding>) -> usize {
        let mut end = r.end.max(next_char(text, r.start));
        // Every bounded type has digits.
        let Some(bounded) = &self.bounded else {
            return end;
        };
        if !text.as_bytes()[r.start..r.end]
            .iter()
            .any(u8::is_ascii_digit)
        {
            return end;
        }
        // A bounded value starting inside ends within this margin past it.
        let until = text.len().min(r.end + MAX_BOUNDED_LEN);
        let mut at = next_char(text, r.start);
        while at < r.end {
            match bounded.next(text, at, until) {
                Some(Ok(f)) if f.start < r.end => {
                    at = f.end;
                    end = end.max(f.end);
                    out.push(f);
                }
                Some(Err(x)) if x.start < r.end => at = next_word_start(text, x.start),
                _ => break,
            }
        }
        end
    }
}

/// The innermost cause of a build error, on one line ("error: unclosed
/// character class", "exceeded size limit …").
fn build_error(e: &regex_automata::meta::BuildError) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = cause.to_string();
    text.lines().last().unwrap_or("").trim().to_string()
}

/// The accepted span of a candidate (an IBAN may be shorter than its match).
fn accept(check: Check, text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let cand = &text[start..end];
    let ok = match check {
        Check::Custom => true,
        Check::Email => {
            !after(text, end).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@')
        }
        Check::Phone => {
            // A closing parenthesis the number did not open belongs to the text.
            let opened = cand.bytes().filter(|&b| b == b'(').count();
            let closed = cand.bytes().filter(|&b| b == b')').count();
            let end = if closed > opened && cand.ends_with(')') {
                end - 1
            } else {
                end
            };
            let cand = &text[start..end];
            let digits = cand.bytes().filter(u8::is_ascii_digit).count();
            let range = if cand.starts_with('+') {
                8..=15
            } else {
                10..=11
            };
            return (range.contains(&digits) && number_bounds(text, start, end))
                .then_some((start, end));
        }
        Check::Card => card(cand) && number_bounds(text, start, end),
        Check::Iban => return iban(text, start, end),
        Check::Ipv4 => number_bounds(text, start, end),
        Check::Ipv6 => ipv6(cand) && ipv6_bounds(text, start, end),
        Check::KnownSecret => {
            (cand.starts_with("-----BEGIN") || cand.bytes().any(|b| b.is_ascii_digit()))
                && !before(text, start).is_some_and(is_word)
                && !after(text, end).is_some_and(is_word)
        }
        Check::GenericSecret => generic_secret(cand),
    };
    ok.then_some((start, end))
}

fn before(text: &str, i: usize) -> Option<char> {
    text[..i].chars().next_back()
}

fn after(text: &str, i: usize) -> Option<char> {
    text[i..].chars().next()
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn next_char(text: &str, i: usize) -> usize {
    i + after(text, i).map_or(1, char::len_utf8)
}

/// The first index after `i` that follows a non-word character.
fn next_word_start(text: &str, i: usize) -> usize {
    match text[i..].char_indices().find(|(_, c)| !is_word(*c)) {
        Some((j, c)) => i + j + c.len_utf8(),
        None => text.len() + 1,
    }
}

/// Not glued to letters or digits, nor continued by `.5`, `-5`, `/5`.
fn number_bounds(text: &str, start: usize, end: usize) -> bool {
    let mut back = text[..start].chars().rev();
    let ok_before = match back.next() {
        None => true,
        Some(c) if is_word(c) || c == '+' => false,
        Some('.' | '-' | '/') => !back.next().is_some_and(|c| c.is_ascii_digit()),
        Some(_) => true,
    };
    let mut fwd = text[end..].chars();
    let ok_after = match fwd.next() {
        None => true,
        Some(c) if is_word(c) => false,
        Some('.' | '-' | '/') => !fwd.next().is_some_and(|c| c.is_ascii_digit()),
        Some(_) => true,
    };
    ok_before && ok_after
}

fn ipv6_bounds(text: &str, start: usize, end: usize) -> bool {
    let glued = |c: char| is_word(c) || c == ':';
    let mut fwd = text[end..].chars();
    let ok_after = match fwd.next() {
        None => true,
        Some(c) if glued(c) => false,
        Some('.') => !fwd.next().is_some_and(|c| c.is_ascii_digit()),
        Some(_) => true,
    };
    !before(text, start).is_some_and(|c| glued(c) || c == '.') && ok_after
}

/// 13–19 digits starting 2–6, Luhn-valid, not one repeated digit; groups
/// (when separated) of at least 3 digits, one kind of separator.
fn card(cand: &str) -> bool {
    let digits: Vec<u8> = cand
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|d| *d == digits[0]) {
        return false;
    }
    let seps = cand.contains(' ') as u8 + cand.contains('-') as u8;
    if seps > 1 || cand.split([' ', '-']).any(|g| g.len() < 3) {
        return false;
    }
    luhn(&digits)
}

/// The Luhn checksum of card numbers.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = d as u32;
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN lengths by country (SWIFT registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// The country's length of characters (spaces skipped), then mod 97 == 1.
fn iban(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let cand = &text[start..end];
    let len = IBAN_LENGTHS
        .iter()
        .find(|(c, _)| cand.starts_with(c))
        .map(|(_, n)| *n)?;
    let mut compact = Vec::with_capacity(len);
    let mut stop = None;
    for (i, b) in cand.bytes().enumerate() {
        if b == b' ' {
            continue;
        }
        compact.push(b);
        if compact.len() == len {
            stop = Some(start + i + 1);
            break;
        }
    }
    let stop = stop?;
    if before(text, start).is_some_and(is_word) || after(text, stop).is_some_and(is_word) {
        return None;
    }
    (iban_mod97(&compact) == 1).then_some((start, stop))
}

/// ISO 7064 mod 97-10 of an IBAN (country and check digits moved last).
pub fn iban_mod97(compact: &[u8]) -> u32 {
    let (head, tail) = compact.split_at(4.min(compact.len()));
    tail.iter().chain(head).fold(0u32, |r, &b| match b {
        b'0'..=b'9' => (r * 10 + (b - b'0') as u32) % 97,
        b'A'..=b'Z' => (r * 100 + (b - b'A' + 10) as u32) % 97,
        _ => r,
    })
}

/// A parseable IPv6 address that does not look like `a::b` in code.
fn ipv6(cand: &str) -> bool {
    let colons = cand.bytes().filter(|&b| b == b':').count();
    colons >= 2
        && cand.parse::<Ipv6Addr>().is_ok()
        && (colons >= 3 || cand.split(':').any(|g| g.len() == 4))
}

/// At least 24 characters (padding aside), digits and letters, not hex,
/// high entropy, not made of words.
fn generic_secret(cand: &str) -> bool {
    let t = cand.trim_end_matches('=');
    t.len() >= 24
        && t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes().any(|b| b.is_ascii_alphabetic())
        && !t.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && entropy(t) >= MIN_ENTROPY
        && wordiness(t) < MAX_WORDINESS
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Share of letters that sit in word-like segments (camelCase, snake_case,
/// kebab-case and path parts split apart): 3+ letters with a vowel and no
/// run of 4 consonants.
pub fn wordiness(s: &str) -> f64 {
    let b = s.as_bytes();
    let (mut letters, mut wordy, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        if !b[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let start = i;
        if b[i].is_ascii_uppercase() {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_uppercase() {
                j += 1;
            }
            // "HTMLParser": "HTML", then "Parser".
            if j < b.len() && b[j].is_ascii_lowercase() && j - i > 1 {
                i = j - 1;
            } else if j - i > 1 || j >= b.len() || !b[j].is_ascii_lowercase() {
                i = j;
            } else {
                i = j;
                while i < b.len() && b[i].is_ascii_lowercase() {
                    i += 1;
                }
            }
        } else {
            while i < b.len() && b[i].is_ascii_lowercase() {
                i += 1;
            }
        }
        let seg = &b[start..i];
        letters += seg.len();
        if word_like(seg) {
            wordy += seg.len();
        }
    }
    if letters == 0 {
        0.0
    } else {
        wordy as f64 / letters as f64
    }
}

fn word_like(seg: &[u8]) -> bool {
    let vowel = |c: &u8| b"aeiouy".contains(&c.to_ascii_lowercase());
    let mut run = 0;
    for c in seg {
        run = if vowel(c) { 0 } else { run + 1 };
        if run >= 4 {
            return false;
        }
    }
    seg.len() >= 3 && seg.iter().any(vowel)
}

#[cfg(test)]
mod tests;
