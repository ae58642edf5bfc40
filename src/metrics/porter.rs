//! The Porter stemmer as NLTK implements it in its default mode (`PorterStemmer()`, NLTK
//! extensions: a few irregular forms, and its departures from the 1980 paper in steps 1a, 1b, 1c
//! and 2), which is what rouge-score stems with. Words are lowercase ASCII here (rouge-score's
//! tokens); anything else is returned as it is.

const IRREGULAR: [(&str, &str); 16] = [
    ("sky", "sky"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("news", "news"),
    ("innings", "inning"),
    ("inning", "inning"),
    ("outings", "outing"),
    ("outing", "outing"),
    ("cannings", "canning"),
    ("canning", "canning"),
    ("howe", "howe"),
    ("proceed", "proceed"),
    ("exceed", "exceed"),
    ("succeed", "succeed"),
];

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// NLTK's `_is_consonant`: a `y` counts as a consonant after a vowel, as a vowel after a
/// consonant, deciding a run of `y`s from the letter before them.
fn is_consonant(w: &[u8], mut i: usize) -> bool {
    if is_vowel(w[i]) {
        return false;
    }
    if w[i] == b'y' {
        let mut negate = false;
        while i > 0 && w[i] == b'y' {
            negate = !negate;
            i -= 1;
        }
        return (!is_vowel(w[i])) != negate;
    }
    true
}

/// NLTK's `_consonant_flags`.
fn consonant_flags(w: &[u8]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let f = if is_vowel(c) {
            false
        } else if c == b'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(f);
    }
    flags
}

/// m in [C](VC)^m[V]: the number of vowel-consonant transitions.
fn measure(w: &[u8]) -> usize {
    consonant_flags(w).windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(w: &[u8]) -> bool {
    !consonant_flags(w).iter().all(|&c| c)
}

fn ends_double_consonant(w: &[u8]) -> bool {
    w.len() >= 2 && w[w.len() - 1] == w[w.len() - 2] && is_consonant(w, w.len() - 1)
}

fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1) && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

/// A rule's condition on the stem left once the suffix is removed.
type Condition<'a> = Option<&'a dyn Fn(&[u8]) -> bool>;

/// NLTK's `_apply_rule_list`: the first rule whose suffix the word has decides — its
/// replacement if its condition holds on the stem, else the word unchanged. The suffix "*d"
/// means a double consonant.
fn apply_rules(w: &[u8], rules: &[(&str, &[u8], Condition)]) -> Vec<u8> {
    for (suffix, replacement, condition) in rules {
        if *suffix == "*d" && ends_double_consonant(w) {
            let stem = &w[..w.len() - 2];
            return if condition.is_none_or(|c| c(stem)) { [stem, replacement].concat() } else { w.to_vec() };
        }
        if w.ends_with(suffix.as_bytes()) {
            let stem = &w[..w.len() - suffix.len()];
            return if condition.is_none_or(|c| c(stem)) { [stem, replacement].concat() } else { w.to_vec() };
        }
    }
    w.to_vec()
}

fn replace_suffix(w: &[u8], suffix: &str, replacement: &str) -> Vec<u8> {
    [&w[..w.len() - suffix.len()], replacement.as_bytes()].concat()
}

fn step1a(w: &[u8]) -> Vec<u8> {
    if w.ends_with(b"ies") && w.len() == 4 {
        return replace_suffix(w, "ies", "ie");
    }
    apply_rules(w, &[("sses", b"ss", None), ("ies", b"i", None), ("ss", b"ss", None), ("s", b"", None)])
}

fn step1b(w: &[u8]) -> Vec<u8> {
    if w.ends_with(b"ied") {
        return replace_suffix(w, "ied", if w.len() == 4 { "ie" } else { "i" });
    }
    if w.ends_with(b"eed") {
        let stem = &w[..w.len() - 3];
        return if measure(stem) > 0 { [stem, b"ee".as_slice()].concat() } else { w.to_vec() };
    }
    let mut intermediate = None;
    for suffix in ["ed", "ing"] {
        if w.ends_with(suffix.as_bytes()) {
            let stem = &w[..w.len() - suffix.len()];
            if contains_vowel(stem) {
                intermediate = Some(stem);
                break;
            }
        }
    }
    let Some(stem) = intermediate else { return w.to_vec() };
    let last = [stem[stem.len() - 1]];
    let not_lsz = |_: &[u8]| !matches!(last[0], b'l' | b's' | b'z');
    let cvc = |s: &[u8]| measure(s) == 1 && ends_cvc(s);
    apply_rules(stem, &[("at", b"ate", None), ("bl", b"ble", None), ("iz", b"ize", None), ("*d", &last, Some(&not_lsz)), ("", b"e", Some(&cvc))])
}

fn step1c(w: &[u8]) -> Vec<u8> {
    let cond = |s: &[u8]| s.len() > 1 && is_consonant(s, s.len() - 1);
    apply_rules(w, &[("y", b"i", Some(&cond))])
}

fn positive(s: &[u8]) -> bool {
    measure(s) > 0
}

fn step2(w: &[u8]) -> Vec<u8> {
    if w.ends_with(b"alli") && positive(&w[..w.len() - 4]) {
        return step2(&replace_suffix(w, "alli", "al"));
    }
    let p: Condition = Some(&positive);
    let logi = |_: &[u8]| positive(&w[..w.len() - 3]);
    apply_rules(
        w,
        &[
            ("ational", b"ate", p),
            ("tional", b"tion", p),
            ("enci", b"ence", p),
            ("anci", b"ance", p),
            ("izer", b"ize", p),
            ("bli", b"ble", p),
            ("alli", b"al", p),
            ("entli", b"ent", p),
            ("eli", b"e", p),
            ("ousli", b"ous", p),
            ("ization", b"ize", p),
            ("ation", b"ate", p),
            ("ator", b"ate", p),
            ("alism", b"al", p),
            ("iveness", b"ive", p),
            ("fulness", b"ful", p),
            ("ousness", b"ous", p),
            ("aliti", b"al", p),
            ("iviti", b"ive", p),
            ("biliti", b"ble", p),
            ("fulli", b"ful", p),
            ("logi", b"log", Some(&logi)),
        ],
    )
}

fn step3(w: &[u8]) -> Vec<u8> {
    let p: Condition = Some(&positive);
    apply_rules(w, &[("icate", b"ic", p), ("ative", b"", p), ("alize", b"al", p), ("iciti", b"ic", p), ("ical", b"ic", p), ("ful", b"", p), ("ness", b"", p)])
}

fn step4(w: &[u8]) -> Vec<u8> {
    let gt1 = |s: &[u8]| measure(s) > 1;
    let ion = |s: &[u8]| measure(s) > 1 && matches!(s.last(), Some(b's' | b't'));
    let m: Condition = Some(&gt1);
    apply_rules(
        w,
        &[
            ("al", b"", m),
            ("ance", b"", m),
            ("ence", b"", m),
            ("er", b"", m),
            ("ic", b"", m),
            ("able", b"", m),
            ("ible", b"", m),
            ("ant", b"", m),
            ("ement", b"", m),
            ("ment", b"", m),
            ("ent", b"", m),
            ("ion", b"", Some(&ion)),
            ("ou", b"", m),
            ("ism", b"", m),
            ("ate", b"", m),
            ("iti", b"", m),
            ("ous", b"", m),
            ("ive", b"", m),
            ("ize", b"", m),
        ],
    )
}

fn step5a(w: &[u8]) -> Vec<u8> {
    if let Some(stem) = w.strip_suffix(b"e") {
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w.to_vec()
}

fn step5b(w: &[u8]) -> Vec<u8> {
    let cond = |_: &[u8]| measure(&w[..w.len() - 1]) > 1;
    apply_rules(w, &[("ll", b"l", Some(&cond))])
}

/// `PorterStemmer().stem(word)` for a lowercase ASCII word.
pub fn stem(word: &str) -> String {
    if !word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return word.to_string();
    }
    if let Some((_, s)) = IRREGULAR.iter().find(|(w, _)| *w == word) {
        return s.to_string();
    }
    if word.len() <= 2 {
        return word.to_string();
    }
    let steps: [fn(&[u8]) -> Vec<u8>; 8] = [step1a, step1b, step1c, step2, step3, step4, step5a, step5b];
    let out = steps.iter().fold(word.as_bytes().to_vec(), |w, step| step(&w));
    String::from_utf8(out).unwrap_or_else(|_| word.to_string())
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn stems_as_nltk() {
        for (w, s) in [("caresses", "caress"), ("ponies", "poni"), ("ties", "tie"), ("agreed", "agre"), ("plastered", "plaster"),
                       ("motoring", "motor"), ("hopping", "hop"), ("filing", "file"), ("happy", "happi"), ("relational", "relat"),
                       ("dying", "die"), ("generalization", "gener"), ("controll", "control"), ("skies", "sky")] {
            assert_eq!(stem(w), s, "{w}");
        }
    }
}
