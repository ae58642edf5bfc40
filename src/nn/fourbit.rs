//! 4-bit blockwise storage of a frozen weight, as bitsandbytes' `quantize_4bit` (QLoRA, Dettmers
//! et al. 2023): the flattened weight in blocks of `block` values, each block scaled by its
//! absolute maximum and every value replaced by the nearest of 16 code values — NF4 (equal areas
//! under N(0, 1)) or FP4 (bitsandbytes' E2M1 table) — two codes to a byte, the first in the high
//! nibble. With double quantisation the float32 absmax constants are themselves quantised, as
//! the paper does: their mean subtracted, then 8-bit codes of bitsandbytes' signed dynamic map in
//! blocks of 256, each with a float32 scale. De-quantisation is a few libtorch ops.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// The 16 code values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Nf4,
    Fp4,
}

/// bitsandbytes' NF4 values (`get_4bit_type("nf4")`).
pub const NF4: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// bitsandbytes' FP4 values (`get_4bit_type("fp4")`: these over 12).
pub const FP4_RAW: [f32; 16] = [0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0];

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "nf4" => Ok(Format::Nf4),
            "fp4" => Ok(Format::Fp4),
            other => bail!("type '{other}' is not one of \"nf4\", \"fp4\""),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Nf4 => "nf4",
            Format::Fp4 => "fp4",
        }
    }

    pub fn code(self) -> [f32; 16] {
        match self {
            Format::Nf4 => NF4,
            Format::Fp4 => FP4_RAW.map(|v| v / 12.0),
        }
    }
}

/// bitsandbytes' `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`, sorted:
/// the 8-bit code the absmax constants are stored in.
pub fn dynamic_map() -> Vec<f32> {
    let (max_exp, non_sign) = (7i32, 7i32);
    let mut data: Vec<f64> = Vec::new();
    let linspace_means = |k: usize| -> Vec<f64> {
        let b: Vec<f64> = (0..k).map(|i| 0.1 + (1.0 - 0.1) * i as f64 / (k - 1) as f64).collect();
        b.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
    };
    for i in 0..max_exp {
        let items = 2usize.pow((i + non_sign - max_exp) as u32) + 1;
        let scale = 10f64.powi(-(max_exp - 1) + i);
        for m in linspace_means(items) {
            data.push(scale * m);
            data.push(-scale * m);
        }
    }
    data.push(0.0);
    data.push(1.0);
    while data.len() < 256 {
        data.push(0.0);
    }
    data.sort_by(|a, b| a.total_cmp(b));
    data.into_iter().map(|v| v as f32).collect()
}

/// The index in `code` of the value nearest each of `x` (ties to the lower value, as
/// bitsandbytes' kernels compare `x > midpoint`).
fn nearest(x: &Tensor, code: &[f32]) -> Result<Tensor> {
    let mut order: Vec<usize> = (0..code.len()).collect();
    order.sort_by(|a, b| code[*a].total_cmp(&code[*b]));
    let sorted: Vec<f32> = order.iter().map(|i| code[*i]).collect();
    let mids: Vec<f32> = sorted.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    let device = x.device();
    let mids = Tensor::f_from_slice(&mids)?.f_to_device(device)?;
    let bucket = x.f_contiguous()?.f_bucketize(&mids, false, false)?;
    let back = Tensor::f_from_slice(&order.iter().map(|i| *i as i64).collect::<Vec<_>>())?.f_to_device(device)?;
    Ok(back.f_index_select(0, &bucket.f_flatten(0, -1)?)?.f_view_as(&bucket)?)
}

/// Absmax per block of `block` over a flat tensor padded to whole blocks: (blocks,) and the
/// values scaled into [-1, 1] as (blocks, block).
fn blockwise(flat: &Tensor, block: i64) -> Result<(Tensor, Tensor)> {
    let n = flat.numel() as i64;
    let blocks = (n + block - 1) / block;
    let padded = if blocks * block == n { flat.shallow_clone() } else { Tensor::f_cat(&[flat, &Tensor::f_zeros([blocks * block - n], (Kind::Float, flat.device()))?], 0)? };
    let b = padded.f_view([blocks, block])?;
    let absmax = b.f_abs()?.f_amax([1i64].as_slice(), false)?;
    // An all-zero block scales by 1 (its codes are the zero value either way).
    let safe = absmax.f_where_scalarother(&absmax.f_gt(0.0)?, 1.0)?;
    Ok((absmax, b.f_div(&safe.f_unsqueeze(1)?)?))
}

/// The absmax constants: as they are, or double-quantised.
pub enum Absmax {
    Plain(Tensor),
    Double { codes: Tensor, scales: Tensor, offset: f64 },
}

pub const DOUBLE_BLOCK: i64 = 256;

/// A weight stored in 4 bits.
pub struct FourBit {
    pub format: Format,
    pub block: i64,
    /// uint8 (ceil(n / 2)): two codes per byte.
    pub packed: Tensor,
    pub absmax: Absmax,
    /// The weight's shape, (out, in).
    pub shape: [i64; 2],
    /// The dtype the weight is de-quantised to and the layer computes in.
    pub compute: Kind,
}

impl FourBit {
    /// Quantises `w` (out, in), any floating dtype.
    pub fn quantize(w: &Tensor, format: Format, block: i64, double_quant: bool, compute: Kind) -> Result<FourBit> {
        if block < 2 || block % 2 != 0 {
            bail!("block_size must be an even number of at least 2, got {block}");
        }
        let size = w.size();
        let [out, n_in] = size[..] else { bail!("a weight to quantise must be (out, in), got {size:?}") };
        let _guard = tch::no_grad_guard();
        let flat = w.f_detach()?.f_to_kind(Kind::Float)?.f_flatten(0, -1)?;
        let (absmax, scaled) = blockwise(&flat, block)?;
        let codes = nearest(&scaled.f_flatten(0, -1)?, &format.code())?.f_to_kind(Kind::Uint8)?;
        let pairs = codes.f_view([-1, 2])?;
        let packed = pairs.f_select(1, 0)?.f_bitwise_left_shift_tensor_scalar(4)?.f_bitwise_or_tensor(&pairs.f_select(1, 1)?)?;
        let absmax = if double_quant {
            let offset = absmax.f_mean(Kind::Float)?.double_value(&[]);
            let (scales, scaled2) = blockwise(&absmax.f_sub_scalar(offset)?, DOUBLE_BLOCK)?;
            // Codes for the constants there are (the padding of the last block is not kept).
            let codes = nearest(&scaled2.f_flatten(0, -1)?.f_narrow(0, 0, absmax.numel() as i64)?, &dynamic_map())?.f_to_kind(Kind::Uint8)?;
            Absmax::Double { codes, scales, offset }
        } else {
            Absmax::Plain(absmax)
        };
        Ok(FourBit { format, block, packed, absmax, shape: [out, n_in], compute })
    }

    /// The absmax constants as float32 (blocks,).
    fn absmax(&self) -> Result<Tensor> {
        Ok(match &self.absmax {
            Absmax::Plain(a) => a.shallow_clone(),
            Absmax::Double { codes, scales, offset } => {
                let map = Tensor::f_from_slice(&dynamic_map())?.f_to_device(codes.device())?;
                let blocks = self.blocks();
                let values = map.f_index_select(0, &codes.f_to_kind(Kind::Int64)?)?;
                let scale = scales.f_repeat_interleave_self_int(DOUBLE_BLOCK, Some(0), None)?.f_narrow(0, 0, blocks)?;
                values.f_mul(&scale)?.f_add_scalar(*offset)?
            }
        })
    }

    fn blocks(&self) -> i64 {
        (self.shape[0] * self.shape[1] + self.block - 1) / self.block
    }

    /// The weight (out, in) in the compute dtype.
    pub fn dequantize(&self) -> Result<Tensor> {
        let device = self.packed.device();
        let code = Tensor::f_from_slice(&self.format.code())?.f_to_device(device)?;
        let high = self.packed.f_bitwise_right_shift_tensor_scalar(4)?;
        let low = self.packed.f_bitwise_and(15)?;
        let codes = Tensor::f_stack(&[high, low], 1)?.f_flatten(0, -1)?.f_to_kind(Kind::Int64)?;
        let values = code.f_index_select(0, &codes)?.f_view([-1, self.block])?;
        let n = self.shape[0] * self.shape[1];
        let w = values.f_mul(&self.absmax()?.f_unsqueeze(1)?)?.f_flatten(0, -1)?.f_narrow(0, 0, n)?.f_view(self.shape)?;
        Ok(w.f_to_kind(self.compute)?)
    }

    /// `x Wᵀ + b` in the compute dtype (returned in x's), through an autograd function that keeps
    /// the 4-bit codes for the backward instead of the de-quantised weight.
    pub fn linear(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let code = Tensor::f_from_slice(&self.format.code())?.f_to_device(self.device())?;
        crate::tensor::shim::linear_4bit(x, bias, &self.packed, &self.absmax()?, &code, self.shape, self.block, self.compute)
    }

    /// The constants' tensors (the codes are the layer's weight parameter).
    pub fn constants(&self) -> Vec<&Tensor> {
        match &self.absmax {
            Absmax::Plain(a) => vec![a],
            Absmax::Double { codes, scales, .. } => vec![codes, scales],
        }
    }

    /// Bytes of the codes and of the constants.
    pub fn bytes(&self) -> (i64, i64) {
        let constants = match &self.absmax {
            Absmax::Plain(a) => a.numel() as i64 * 4,
            Absmax::Double { codes, scales, .. } => codes.numel() as i64 + scales.numel() as i64 * 4 + 8,
        };
        (self.packed.numel() as i64, constants)
    }

    pub fn device(&self) -> Device {
        self.packed.device()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dynamic_map_has_256_sorted_values_from_minus_one_to_one() {
        let m = dynamic_map();
        assert_eq!(m.len(), 256);
        assert!(m.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!((m[0], m[255]), (-0.99296875, 1.0));
    }

    /// bitsandbytes' `create_normal_map(offset=0.9677083, use_extra_value=True)`: 8 positive and
    /// 7 negative normal quantiles and zero, scaled to [-1, 1] — what NF4 is built from.
    #[test]
    fn nf4_is_bitsandbytes_normal_map() {
        let linspace = |n: i64| Tensor::linspace(0.9677083, 0.5, n, (Kind::Float, Device::Cpu)).narrow(0, 0, n - 1);
        let positive = linspace(9).special_ndtri();
        let negative = -linspace(8).special_ndtri();
        let values = Tensor::cat(&[positive, negative, Tensor::zeros([1], (Kind::Float, Device::Cpu))], 0).sort(0, false).0;
        let values = &values / values.max();
        let ours = Tensor::from_slice(&NF4);
        assert!(values.allclose(&ours, 1e-6, 1e-6, false), "{values} {ours}");
        let fp4 = Tensor::from_slice(&Format::Fp4.code());
        assert_eq!(fp4.abs().max().double_value(&[]), 1.0);
    }

    /// The errors bitsandbytes' own tests hold NF4 and FP4 to on randn(1024, 1024), block 64
    /// (mean absolute 0.0728 and 0.0965, mean relative 0.2033 and 0.2601, ±1e-3), and the bytes
    /// per parameter with double quantisation.
    #[test]
    fn errors_and_size_match_bitsandbytes() {
        tch::manual_seed(0);
        let a = Tensor::randn([1024, 1024], (Kind::Float, Device::Cpu));
        for (format, abs, rel) in [(Format::Nf4, 0.0728, 0.2033), (Format::Fp4, 0.0965, 0.2601)] {
            for double in [false, true] {
                let q = FourBit::quantize(&a, format, 64, double, Kind::Float).unwrap();
                let err = (&a - q.dequantize().unwrap()).abs();
                let mean_abs = err.mean(Kind::Float).double_value(&[]);
                let mean_rel = (&err / (a.abs() + 1e-8)).mean(Kind::Float).double_value(&[]);
                assert!((mean_abs - abs).abs() < 1e-3 && (mean_rel - rel).abs() < 1e-3, "{format:?} double={double}: {mean_abs} {mean_rel}");
                if double {
                    let (codes, constants) = q.bytes();
                    let per_param = (codes + constants) as f64 / a.numel() as f64;
                    assert!(per_param <= 0.52, "{per_param} bytes per parameter");
                }
            }
        }
    }

    #[test]
    fn packing_and_unpacking_give_the_nearest_code_values() {
        let w = Tensor::from_slice(&[0.5f32, -1.0, 0.08, 1.0, 0.0, -0.2, 0.3, 0.7]).view([2, 4]);
        let q = FourBit::quantize(&w, Format::Nf4, 4, false, Kind::Float).unwrap();
        assert_eq!(q.packed.numel(), 4);
        let back = q.dequantize().unwrap();
        let want = Tensor::from_slice(&[0.44070982933044434f32, -1.0, 0.07958029955625534, 1.0, 0.0, -0.28444138169288635 * 0.7, 0.44070982933044434 * 0.7, 0.7]).view([2, 4]);
        assert!(back.allclose(&want, 1e-5, 1e-6, false), "{back} {want}");
    }
}
