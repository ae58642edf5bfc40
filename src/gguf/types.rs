//! The ggml tensor types moontune reads and writes: their codes in a GGUF file, their block sizes
//! (elements per block) and type sizes (bytes per block), as in ggml's `type_traits`.

use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    BF16,
}

/// Elements in a k-quant super-block.
pub const QK_K: usize = 256;

impl GgmlType {
    pub const ALL: [GgmlType; 13] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::BF16,
    ];

    pub fn code(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::BF16 => 30,
        }
    }

    pub fn from_code(code: u32) -> Result<GgmlType> {
        match GgmlType::ALL.into_iter().find(|t| t.code() == code) {
            Some(t) => Ok(t),
            None => bail!(
                "ggml type {code} is not supported (supported: {})",
                GgmlType::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The name llama.cpp and the `gguf` package give the type.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::BF16 => "BF16",
        }
    }

    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => 32,
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 2 + 16,
            GgmlType::Q4_1 => 2 + 2 + 16,
            GgmlType::Q5_0 => 2 + 4 + 16,
            GgmlType::Q5_1 => 2 + 2 + 4 + 16,
            GgmlType::Q8_0 => 2 + 32,
            GgmlType::Q2K => 2 + 2 + QK_K / 16 + QK_K / 4,
            GgmlType::Q3K => 2 + QK_K / 4 + QK_K / 8 + 12,
            GgmlType::Q4K => 2 + 2 + QK_K / 2 + 12,
            GgmlType::Q5K => 2 + 2 + QK_K / 2 + QK_K / 8 + 12,
            GgmlType::Q6K => 2 + QK_K / 2 + QK_K / 4 + QK_K / 16,
        }
    }

    /// The bytes a tensor of these dimensions (ggml order) takes; rows must be whole blocks.
    pub fn bytes_for(self, dims: &[u64]) -> Result<u64> {
        let row = *dims.first().unwrap_or(&1);
        let block = self.block_size() as u64;
        if row % block != 0 {
            bail!("a {} tensor's rows must be a multiple of {block} elements, got {row}", self.name());
        }
        let mut elements: u64 = 1;
        for d in dims {
            elements = match elements.checked_mul(*d) {
                Some(e) => e,
                None => bail!("the element count overflows"),
            };
        }
        match (elements / block).checked_mul(self.type_size() as u64) {
            Some(b) => Ok(b),
            None => bail!("the byte size overflows"),
        }
    }
}
