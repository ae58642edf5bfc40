//! Parser messages in a user's words: serde's "invalid value: integer `-1`, expected usize" (from
//! option tables, safetensors headers, tokenizer.json) becomes "expected a non-negative integer,
//! got integer -1", wherever it stands in a longer message. No Rust type names reach a user.

/// Rewrites every serde type complaint in `message`; the rest of the text is kept.
pub fn plain_words(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    loop {
        let found = ["invalid type: ", "invalid value: ", "invalid length "].iter().filter_map(|m| rest.find(m)).min();
        let Some(start) = found else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        // The complaint ends where serde's position (" at line 3 column 7") or the next part
        // of the message (": ") begins.
        let expected = tail.find(", expected ").map(|i| i + ", expected ".len()).unwrap_or(0);
        let end = [" at line ", ": "].iter().filter_map(|m| tail[expected..].find(m)).min().map(|i| i + expected).unwrap_or(tail.len());
        let end = if end == 0 { tail.len() } else { end };
        out.push_str(&complaint(&tail[..end]));
        rest = &tail[end..];
    }
}

/// One complaint: "invalid type: floating point `1.5`, expected i64" as "expected an integer,
/// got number 1.5".
fn complaint(inner: &str) -> String {
    let rest = inner.strip_prefix("invalid type: ").or_else(|| inner.strip_prefix("invalid value: "));
    let Some((given, wanted)) = rest.and_then(|r| r.rsplit_once(", expected ")) else {
        return match inner.strip_prefix("invalid length ").and_then(|r| r.split_once(", expected a tuple of size ")) {
            Some((n, want)) => format!("expected a list of {want} values, got {n}"),
            None => inner.to_string(),
        };
    };
    let given = given.replace('`', "");
    let given = match given.split_once(' ') {
        Some(("floating", rest)) => format!("number {}", rest.trim_start_matches("point ")),
        _ if given == "map" => "a table with named keys".to_string(),
        _ if given == "sequence" => "a list".to_string(),
        _ => given,
    };
    let wanted = match wanted {
        "f64" | "f32" => "a number",
        "i64" | "i32" | "i16" | "i8" | "isize" => "an integer",
        "u64" | "u32" | "u16" | "u8" | "usize" => "a non-negative integer",
        "bool" | "a boolean" => "true or false",
        "a sequence" => "a list",
        other if other.starts_with("struct ") || other.starts_with("a map") => "a table",
        other if other.starts_with("a tuple of size ") => return format!("expected a list of {} values, got {given}", &other[16..]),
        other => other,
    };
    format!("expected {wanted}, got {given}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_types_become_words_wherever_they_stand() {
        assert_eq!(plain_words("invalid type: floating point `1.5`, expected i64"), "expected an integer, got number 1.5");
        assert_eq!(plain_words("invalid type: string \"fast\", expected f64"), "expected a number, got string \"fast\"");
        assert_eq!(
            plain_words("invalid JSON in header: invalid value: integer `-1`, expected usize at line 1 column 9"),
            "invalid JSON in header: expected a non-negative integer, got integer -1 at line 1 column 9"
        );
        assert_eq!(plain_words("invalid value: integer `-5`, expected u32: more"), "expected a non-negative integer, got integer -5: more");
        assert_eq!(plain_words("invalid type: map, expected struct Options"), "expected a table, got a table with named keys");
        assert_eq!(plain_words("invalid length 1, expected a tuple of size 2"), "expected a list of 2 values, got 1");
        assert_eq!(plain_words("nothing to change here"), "nothing to change here");
    }
}
