//! Lua 5.4 string patterns in Rust (the matcher of lstrlib.c: classes `%a %c %d %g %l %p %s %u
//! %w %x` and their complements, sets `[...]` with ranges, `.`, quantifiers `* + - ?`, anchors,
//! captures and back-references `%1`–`%9`, `%bxy` and `%f[set]`), so that module names can be
//! matched in the core, without a Lua VM, exactly as `string.find` would. Bytes are matched in
//! the C locale. Malformed patterns are errors at compile time, not panics.

use anyhow::{bail, Result};

/// Deepest recursion a match may use (lstrlib's MAXCCALLS).
const MAX_DEPTH: usize = 200;
const MAX_CAPTURES: usize = 32;

/// A checked pattern.
#[derive(Clone, Debug)]
pub struct LuaPattern {
    pattern: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Capture {
    Unfinished(usize),
    Position,
    Closed(usize, usize),
}

struct State<'a> {
    s: &'a [u8],
    p: &'a [u8],
    captures: Vec<Capture>,
    depth: usize,
}

fn class_matches(c: u8, class: u8) -> bool {
    let hit = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => c == b' ' || (b'\t'..=b'\r').contains(&c),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return class == c,
    };
    if class.is_ascii_uppercase() {
        !hit
    } else {
        hit
    }
}

impl LuaPattern {
    /// Checks `pattern`'s syntax (what lstrlib would reject while matching).
    pub fn new(pattern: &str) -> Result<LuaPattern> {
        let p = pattern.as_bytes();
        let mut i = 0;
        let mut open = 0usize;
        let mut closed = 0usize;
        while i < p.len() {
            match p[i] {
                b'(' => {
                    open += 1;
                    if open > MAX_CAPTURES {
                        bail!("pattern '{pattern}' has too many captures");
                    }
                    i += 1;
                }
                b')' => {
                    if closed >= open {
                        bail!("invalid pattern capture in '{pattern}' (a ')' without its '(')");
                    }
                    closed += 1;
                    i += 1;
                }
                b'%' if i + 1 < p.len() && p[i + 1] == b'b' => {
                    if i + 3 >= p.len() {
                        bail!("missing arguments to '%b' in pattern '{pattern}'");
                    }
                    i += 4;
                    i = skip_quantifier(p, i);
                }
                b'%' if i + 1 < p.len() && p[i + 1] == b'f' => {
                    if i + 2 >= p.len() || p[i + 2] != b'[' {
                        bail!("missing '[' after '%f' in pattern '{pattern}'");
                    }
                    i = class_end(p, i + 2).ok_or_else(|| anyhow::anyhow!("malformed pattern '{pattern}' (missing ']')"))?;
                }
                b'%' if i + 1 < p.len() && p[i + 1].is_ascii_digit() => {
                    let l = (p[i + 1] - b'1') as usize;
                    if p[i + 1] == b'0' || l >= closed {
                        bail!("invalid capture index %{} in pattern '{pattern}'", p[i + 1] as char);
                    }
                    i += 2;
                }
                _ => {
                    let end = class_end(p, i).ok_or_else(|| {
                        if p[i] == b'%' {
                            anyhow::anyhow!("malformed pattern '{pattern}' (ends with '%')")
                        } else {
                            anyhow::anyhow!("malformed pattern '{pattern}' (missing ']')")
                        }
                    })?;
                    i = skip_quantifier(p, end);
                }
            }
        }
        if open != closed {
            bail!("unfinished capture in pattern '{pattern}'");
        }
        Ok(LuaPattern { pattern: p.to_vec() })
    }

    /// Whether the pattern matches all of `text` (`text:find("^" .. pattern .. "$")`).
    pub fn matches_whole(&self, text: &str) -> Result<bool> {
        let mut st = State { s: text.as_bytes(), p: &self.pattern, captures: Vec::new(), depth: 0 };
        Ok(st.do_match(0, 0, true)?.is_some())
    }
}

fn skip_quantifier(p: &[u8], i: usize) -> usize {
    if i < p.len() && matches!(p[i], b'*' | b'+' | b'-' | b'?') {
        i + 1
    } else {
        i
    }
}

/// The index just past the single-character class at `i` (None if malformed).
fn class_end(p: &[u8], i: usize) -> Option<usize> {
    match p[i] {
        b'%' => (i + 1 < p.len()).then_some(i + 2),
        b'[' => {
            let mut j = i + 1;
            if j < p.len() && p[j] == b'^' {
                j += 1;
            }
            // The first character is part of the set even if it is ']'.
            loop {
                if j >= p.len() {
                    return None;
                }
                let c = p[j];
                j += 1;
                if c == b'%' {
                    if j >= p.len() {
                        return None;
                    }
                    j += 1;
                }
                if j < p.len() && p[j] == b']' {
                    return Some(j + 1);
                }
                if j >= p.len() {
                    return None;
                }
            }
        }
        _ => Some(i + 1),
    }
}

/// `[set]` at `p[start]` (`end` is the index of its closing ']') against `c`.
fn set_matches(p: &[u8], start: usize, end: usize, c: u8) -> bool {
    let mut i = start;
    let mut positive = true;
    if p[i + 1] == b'^' {
        positive = false;
        i += 1;
    }
    i += 1;
    while i < end {
        if p[i] == b'%' && i + 1 < end {
            i += 1;
            if class_matches(c, p[i]) {
                return positive;
            }
        } else if i + 2 < end && p[i + 1] == b'-' {
            if p[i] <= c && c <= p[i + 2] {
                return positive;
            }
            i += 2;
        } else if p[i] == c {
            return positive;
        }
        i += 1;
    }
    !positive
}

impl State<'_> {
    fn single(&self, s: usize, pi: usize, ep: usize) -> bool {
        let Some(&c) = self.s.get(s) else { return false };
        match self.p[pi] {
            b'.' => true,
            b'%' => class_matches(c, self.p[pi + 1]),
            b'[' => set_matches(self.p, pi, ep - 1, c),
            other => other == c,
        }
    }

    /// Matches the pattern from `pi` at `s`; `whole` requires the match to end at the end of
    /// the text. Returns where the match ends.
    fn do_match(&mut self, mut s: usize, mut pi: usize, whole: bool) -> Result<Option<usize>> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            bail!("pattern too complex");
        }
        let result = loop {
            if pi == self.p.len() {
                break (!whole || s == self.s.len()).then_some(s);
            }
            match self.p[pi] {
                b'(' => {
                    let position = pi + 1 < self.p.len() && self.p[pi + 1] == b')';
                    self.captures.push(if position { Capture::Position } else { Capture::Unfinished(s) });
                    let next = if position { pi + 2 } else { pi + 1 };
                    let r = self.do_match(s, next, whole)?;
                    if r.is_none() {
                        self.captures.pop();
                    }
                    break r;
                }
                b')' => {
                    let open = self.captures.iter().enumerate().rev().find_map(|(i, c)| match c {
                        Capture::Unfinished(start) => Some((i, *start)),
                        _ => None,
                    });
                    let Some((l, start)) = open else { bail!("invalid pattern capture") };
                    self.captures[l] = Capture::Closed(start, s - start);
                    let r = self.do_match(s, pi + 1, whole)?;
                    if r.is_none() {
                        self.captures[l] = Capture::Unfinished(start);
                    }
                    break r;
                }
                b'$' if pi + 1 == self.p.len() => break (s == self.s.len()).then_some(s),
                b'%' if pi + 1 < self.p.len() && self.p[pi + 1] == b'b' => {
                    match self.balance(s, pi + 2) {
                        Some(e) => {
                            s = e;
                            pi += 4;
                            continue;
                        }
                        None => break None,
                    }
                }
                b'%' if pi + 1 < self.p.len() && self.p[pi + 1] == b'f' => {
                    let set = pi + 2;
                    let ep = class_end(self.p, set).unwrap_or(self.p.len());
                    let previous = if s == 0 { 0 } else { self.s[s - 1] };
                    let current = self.s.get(s).copied().unwrap_or(0);
                    if !set_matches(self.p, set, ep - 1, previous) && set_matches(self.p, set, ep - 1, current) {
                        pi = ep;
                        continue;
                    }
                    break None;
                }
                b'%' if pi + 1 < self.p.len() && self.p[pi + 1].is_ascii_digit() => {
                    let l = (self.p[pi + 1] - b'1') as usize;
                    let (start, len) = match self.captures.get(l).copied() {
                        Some(Capture::Closed(start, len)) => (start, len),
                        // As in Lua, a position capture repeats nothing that can match.
                        Some(Capture::Position) => break None,
                        _ => bail!("invalid capture index %{}", l + 1),
                    };
                    if self.s.len() - s >= len && self.s[start..start + len] == self.s[s..s + len] {
                        s += len;
                        pi += 2;
                        continue;
                    }
                    break None;
                }
                _ => {
                    let ep = class_end(self.p, pi).unwrap_or(self.p.len());
                    let quantifier = self.p.get(ep).copied();
                    if !self.single(s, pi, ep) {
                        if matches!(quantifier, Some(b'*' | b'?' | b'-')) {
                            pi = ep + 1;
                            continue;
                        }
                        break None;
                    }
                    match quantifier {
                        Some(b'?') => {
                            if let Some(r) = self.do_match(s + 1, ep + 1, whole)? {
                                break Some(r);
                            }
                            pi = ep + 1;
                        }
                        Some(b'+') => break self.max_expand(s + 1, pi, ep, whole)?,
                        Some(b'*') => break self.max_expand(s, pi, ep, whole)?,
                        Some(b'-') => break self.min_expand(s, pi, ep, whole)?,
                        _ => {
                            s += 1;
                            pi = ep;
                        }
                    }
                }
            }
        };
        self.depth -= 1;
        Ok(result)
    }

    fn max_expand(&mut self, s: usize, pi: usize, ep: usize, whole: bool) -> Result<Option<usize>> {
        let mut count = 0;
        while self.single(s + count, pi, ep) {
            count += 1;
        }
        loop {
            if let Some(r) = self.do_match(s + count, ep + 1, whole)? {
                return Ok(Some(r));
            }
            if count == 0 {
                return Ok(None);
            }
            count -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, pi: usize, ep: usize, whole: bool) -> Result<Option<usize>> {
        loop {
            if let Some(r) = self.do_match(s, ep + 1, whole)? {
                return Ok(Some(r));
            }
            if self.single(s, pi, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    /// `%bxy` with x, y at `self.p[pi]`, `self.p[pi + 1]`.
    fn balance(&self, s: usize, pi: usize) -> Option<usize> {
        let (open, close) = (self.p[pi], self.p[pi + 1]);
        if self.s.get(s) != Some(&open) {
            return None;
        }
        let mut depth = 1;
        let mut i = s + 1;
        while i < self.s.len() {
            let c = self.s[i];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            } else if c == open {
                depth += 1;
            }
            i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(p: &str, s: &str) -> bool {
        LuaPattern::new(p).unwrap().matches_whole(s).unwrap()
    }

    #[test]
    fn matches_like_lua() {
        assert!(whole("model%.layers%.%d+%.self_attn%.q_proj", "model.layers.12.self_attn.q_proj"));
        assert!(!whole("model%.layers%.%d+%.self_attn", "model.layers.12.self_attn.q_proj"));
        assert!(whole(".*q_proj", "model.layers.0.self_attn.q_proj"));
        assert!(whole(".-[qv]_proj", "a.v_proj"));
        assert!(whole("[^.]+%.bias", "lm_head.bias"));
        assert!(!whole("[^.]+%.bias", "a.b.bias"));
        assert!(whole("(%w+)%.%1", "ab.ab"));
        assert!(!whole("(%w+)%.%1", "ab.ac"));
        assert!(whole("x%b()y", "x(a(b)c)y"));
        assert!(whole(".*%f[%w]layer.*", "encoder.layer.3"));
        assert!(whole("[]]", "]"));
        assert!(whole("a?b", "b"));
        assert!(whole("%a+%d*$", "abc"));
    }

    #[test]
    fn rejects_malformed_patterns() {
        for bad in ["abc%", "[abc", "(abc", "abc)", "%b(", "%fabc", "%1", "(a)%2"] {
            assert!(LuaPattern::new(bad).is_err(), "{bad}");
        }
    }
}
