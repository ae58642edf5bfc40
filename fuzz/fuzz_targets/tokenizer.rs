//! Arbitrary text as a tokenizer.json, then a short text encoded and decoded with it. The input
//! is split at its first NUL byte: the tokenizer, then the text to encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moontune::tokenizer::Tok;

fuzz_target!(|bytes: &[u8]| {
    let mut parts = bytes.splitn(2, |b| *b == 0);
    let json = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let text = String::from_utf8_lossy(parts.next().unwrap_or(b"hello world"));
    let Ok(tok) = Tok::from_json(&json, None) else { return };
    if let Ok((ids, _)) = tok.encode(&text, true) {
        let _ = tok.decode(&ids, false);
    }
});
