//! Arbitrary bytes as a safetensors file: the header's length, JSON, dtypes, shapes and offsets
//! and the data after it. Reading must return the tensors or an error, never panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = moontune::io::safetensors::parse_safetensors(bytes, tch::Device::Cpu);
});
