//! Personal data in text: e-mail addresses, phone numbers, IP addresses (v4 and v6), payment
//! card numbers that pass the Luhn check and IBANs that pass the ISO 13616 mod-97 check, found
//! and replaced by typed placeholders (`[EMAIL]`, `[PHONE]`, `[IP]`, `[CARD]`, `[IBAN]`).
//! Kinds are matched in that order of precedence: IBAN, card, e-mail, IP, phone, so that the
//! digits of a card are not also taken for a phone number.

use std::sync::LazyLock;

use anyhow::{bail, Result};
use regex::Regex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Iban,
    Card,
    Email,
    Ip,
    Phone,
}

pub const ALL: [Kind; 5] = [Kind::Iban, Kind::Card, Kind::Email, Kind::Ip, Kind::Phone];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Iban => "iban",
            Kind::Card => "card",
            Kind::Email => "email",
            Kind::Ip => "ip",
            Kind::Phone => "phone",
        }
    }

    pub fn named(name: &str) -> Result<Kind> {
        match ALL.iter().find(|k| k.name() == name) {
            Some(k) => Ok(*k),
            None => bail!("unknown kind of personal data \"{name}\" (known: {})", ALL.map(Kind::name).join(", ")),
        }
    }

    pub fn placeholder(self) -> &'static str {
        match self {
            Kind::Iban => "[IBAN]",
            Kind::Card => "[CARD]",
            Kind::Email => "[EMAIL]",
            Kind::Ip => "[IP]",
            Kind::Phone => "[PHONE]",
        }
    }

    fn pattern(self) -> &'static Regex {
        static IBAN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b").expect("valid regex"));
        static CARD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[0-9](?:[ -]?[0-9]){12,18}\b").expect("valid regex"));
        static EMAIL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b").expect("valid regex"));
        static IP: LazyLock<Regex> = LazyLock::new(|| {
            let octet = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
            let v4 = format!(r"\b{octet}(?:\.{octet}){{3}}\b");
            let h = r"[0-9A-Fa-f]{1,4}";
            let v6 = format!(r"\b(?:{h}:){{7}}{h}\b|\b(?:{h}:){{1,6}}:(?:{h}(?::{h}){{0,5}})?(?:\b|$)|::(?:{h}(?::{h}){{0,6}})\b");
            Regex::new(&format!("{v4}|{v6}")).expect("valid regex")
        });
        static PHONE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{1,4}\)[ .-]?)?\b[0-9]{2,4}(?:[ .-][0-9]{2,4}){1,4}\b|\+[0-9]{7,15}\b").expect("valid regex")
        });
        match self {
            Kind::Iban => &IBAN,
            Kind::Card => &CARD,
            Kind::Email => &EMAIL,
            Kind::Ip => &IP,
            Kind::Phone => &PHONE,
        }
    }

    /// Whether a match of the pattern is really of this kind (checksums, digit counts).
    fn confirms(self, found: &str) -> bool {
        let digits: Vec<u32> = found.chars().filter_map(|c| c.to_digit(10)).collect();
        match self {
            Kind::Iban => iban_valid(found),
            Kind::Card => (13..=19).contains(&digits.len()) && luhn(&digits),
            Kind::Phone if found.starts_with('+') => (8..=15).contains(&digits.len()),
            Kind::Phone => (7..=11).contains(&digits.len()) && !looks_like_date_or_number(found),
            Kind::Ip => found.contains(':') || found.split('.').count() == 4,
            Kind::Email => true,
        }
    }
}

/// The Luhn checksum of a card number.
pub fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    sum % 10 == 0
}

/// ISO 13616: the country code and check digits moved to the end, letters as 10..35, mod 97 = 1.
pub fn iban_valid(found: &str) -> bool {
    let s: String = found.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    let rearranged = s[4..].chars().chain(s[..4].chars());
    let mut rem: u64 = 0;
    for c in rearranged {
        let v = match c.to_digit(36) {
            Some(v) => v as u64,
            None => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// Years, dates and plain decimal numbers that the phone pattern would otherwise take
/// ("2019-2020", "12.05.2021", "3.14159").
fn looks_like_date_or_number(s: &str) -> bool {
    let parts: Vec<&str> = s.split(['-', '.', ' ', '/']).filter(|p| !p.is_empty()).collect();
    let date = parts.len() == 3 && parts.iter().all(|p| p.len() <= 4) && parts.iter().any(|p| p.len() == 4) && parts.iter().filter(|p| p.len() <= 2).count() == 2;
    let years = parts.len() == 2 && parts.iter().all(|p| p.len() == 4 && (p.starts_with("19") || p.starts_with("20")));
    date || years || (s.matches('.').count() == 1 && !s.contains(' ') && !s.contains('-'))
}

/// The personal data of `kinds` in `text`: (kind, byte range), in text order, not overlapping.
pub fn find(text: &str, kinds: &[Kind]) -> Vec<(Kind, std::ops::Range<usize>)> {
    let mut found: Vec<(Kind, std::ops::Range<usize>)> = Vec::new();
    for &kind in ALL.iter().filter(|k| kinds.contains(k)) {
        for m in kind.pattern().find_iter(text) {
            let r = m.range();
            let overlaps = found.iter().any(|(_, f)| f.start < r.end && r.start < f.end);
            if !overlaps && kind.confirms(m.as_str()) {
                found.push((kind, r));
            }
        }
    }
    found.sort_by_key(|(_, r)| r.start);
    found
}

/// `text` with each piece of personal data replaced by its placeholder, and what was replaced.
pub fn redact(text: &str, kinds: &[Kind]) -> (String, Vec<Kind>) {
    let found = find(text, kinds);
    if found.is_empty() {
        return (text.to_string(), Vec::new());
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (kind, r) in &found {
        out.push_str(&text[at..r.start]);
        out.push_str(kind.placeholder());
        at = r.end;
    }
    out.push_str(&text[at..]);
    (out, found.into_iter().map(|(k, _)| k).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_kind_and_leaves_look_alikes() {
        let text = "Mail jane.doe@example.co.uk or call +1 415-555-0132; card 4111 1111 1111 1111, not 4111 1111 1111 1112; \
                    IBAN GB82 WEST 1234 5698 7654 32 (GB82 WEST 1234 5698 7654 33 is wrong); from 192.168.0.1 and 2001:db8::1; \
                    in 2019-2020 on 12.05.2021 pi is 3.14159.";
        let (out, kinds) = redact(text, &ALL);
        assert_eq!(
            out,
            "Mail [EMAIL] or call [PHONE]; card [CARD], not 4111 1111 1111 1112; \
                    IBAN [IBAN] (GB82 WEST 1234 5698 7654 33 is wrong); from [IP] and [IP]; \
                    in 2019-2020 on 12.05.2021 pi is 3.14159."
        );
        assert_eq!(kinds, vec![Kind::Email, Kind::Phone, Kind::Card, Kind::Iban, Kind::Ip, Kind::Ip]);
    }
}
