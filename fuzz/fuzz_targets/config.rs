//! Arbitrary bytes as a model's config.json: parsed as JSON, then as the architecture it names,
//! with every size checked. The result is a config or an error, never a panic or an allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moontune::models::config::HfConfig;
use moontune::models::model::ArchConfig;

fuzz_target!(|bytes: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else { return };
    if let Ok(config) = HfConfig::from_value(value) {
        let _ = ArchConfig::parse(&config);
    }
});
