//! Python's string semantics where the reference metrics depend on them: `str.split()` and
//! `str.rstrip()` split on what `str.isspace()` calls whitespace (Unicode White_Space plus the
//! ASCII separators U+001C..U+001F).

/// Whether Python's `str.isspace()` holds for `c`.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s.split()`.
pub fn split_whitespace(s: &str) -> Vec<&str> {
    s.split(is_python_space).filter(|w| !w.is_empty()).collect()
}

/// `s.rstrip()`.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_python_space)
}

/// `s.lower()`.
pub fn lower(s: &str) -> String {
    s.to_lowercase()
}
