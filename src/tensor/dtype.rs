//! Element types: the names users write (`"float32"`, `"bf16"`, …) and the ones we print.

use anyhow::{bail, Result};
use tch::Kind;

/// The dtypes a script can ask for, with the canonical name first and its aliases after.
const DTYPES: &[(Kind, &[&str])] = &[
    (Kind::Float, &["float32", "f32", "float"]),
    (Kind::Half, &["float16", "f16", "half"]),
    (Kind::BFloat16, &["bfloat16", "bf16"]),
    (Kind::Double, &["float64", "f64", "double"]),
    (Kind::Int64, &["int64", "i64", "long"]),
    (Kind::Int, &["int32", "i32", "int"]),
    (Kind::Uint8, &["uint8", "u8"]),
    (Kind::Bool, &["bool"]),
];

/// Parses a dtype name; an unknown one is an error listing the accepted names.
pub fn parse_dtype(name: &str) -> Result<Kind> {
    for (kind, names) in DTYPES {
        if names.contains(&name) {
            return Ok(*kind);
        }
    }
    bail!("unknown dtype '{name}' (expected one of {})", dtype_names().join(", "))
}

/// The canonical names of the dtypes scripts can ask for.
pub fn dtype_names() -> Vec<&'static str> {
    DTYPES.iter().map(|(_, names)| names[0]).collect()
}

/// The canonical name of a dtype (`"float32"`, `"bfloat16"`, …), as PyTorch prints it.
pub fn dtype_name(kind: Kind) -> String {
    DTYPES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, names)| names[0].to_string())
        .unwrap_or_else(|| format!("{kind:?}").to_lowercase())
}

/// True for the floating-point dtypes (the ones that can require gradients).
pub fn is_floating(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (kind, names) in DTYPES {
            for name in *names {
                assert_eq!(parse_dtype(name).unwrap(), *kind);
            }
            assert_eq!(dtype_name(*kind), names[0]);
        }
        let err = parse_dtype("float8").unwrap_err().to_string();
        assert!(err.contains("float8") && err.contains("bfloat16"), "{err}");
    }
}
