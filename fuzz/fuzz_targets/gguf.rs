//! Arbitrary bytes as a GGUF file: the header, metadata, tensor infos and data. Reading it,
//! rebuilding a model config and a tokenizer from its metadata and de-quantising its (small)
//! tensors must succeed or return an error, never panic, abort or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moontune::gguf::{dequant, llama, tokenizer, Gguf};

fuzz_target!(|bytes: &[u8]| {
    let Ok(g) = Gguf::from_bytes(bytes.to_vec()) else { return };
    let _ = llama::config(&g);
    if let Ok((json, config)) = tokenizer::tokenizer_json(&g) {
        let _ = moontune::tokenizer::Tok::from_json(&json.to_string(), Some(&config));
    }
    for info in g.tensors.iter().filter(|i| i.elements() <= 1 << 16) {
        let mut out = vec![0f32; info.elements() as usize];
        let _ = dequant::dequantize(info.ggml_type, g.data(info), &mut out);
    }
});
