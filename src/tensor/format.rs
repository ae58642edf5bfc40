//! Printing tensors the way PyTorch does (`torch/_tensor_str.py`): `tensor([[1., 2.], …])` with
//! fixed or scientific notation chosen from the values, aligned columns, `...` summaries past
//! 1,000 elements, and `dtype=`/`device=`/`requires_grad=` suffixes when they are not defaults.

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use super::{device_name, dtype::is_floating, dtype_name};

const PRECISION: usize = 4;
const THRESHOLD: usize = 1000;
const EDGE_ITEMS: i64 = 3;
const LINE_WIDTH: usize = 80;
const PREFIX: &str = "tensor(";

/// How each element becomes text; chosen once per tensor, as PyTorch's `_Formatter` does.
enum Style {
    Int,
    Bool,
    FloatInt,
    Fixed,
    Scientific,
}

impl Style {
    fn for_values(kind: Kind, values: &[f64]) -> Style {
        if kind == Kind::Bool {
            return Style::Bool;
        }
        if !is_floating(kind) {
            return Style::Int;
        }
        let finite: Vec<f64> =
            values.iter().copied().filter(|v| v.is_finite() && *v != 0.0).map(f64::abs).collect();
        if finite.is_empty() {
            return Style::FloatInt;
        }
        let max = finite.iter().copied().fold(f64::MIN, f64::max);
        let min = finite.iter().copied().fold(f64::MAX, f64::min);
        let int_mode = values.iter().filter(|v| v.is_finite()).all(|v| v.fract() == 0.0);
        let wide = max / min > 1000.0 || max > 1e8;
        match (int_mode, wide || (!int_mode && min < 1e-4)) {
            (_, true) => Style::Scientific,
            (true, false) => Style::FloatInt,
            (false, false) => Style::Fixed,
        }
    }

    fn text(&self, v: f64) -> String {
        if v.is_nan() {
            return "nan".into();
        }
        if v.is_infinite() {
            return if v > 0.0 { "inf".into() } else { "-inf".into() };
        }
        match self {
            Style::Int => format!("{}", v as i64),
            Style::Bool => (if v != 0.0 { "True" } else { "False" }).into(),
            Style::FloatInt => format!("{v:.0}."),
            Style::Fixed => format!("{v:.PRECISION$}"),
            Style::Scientific => python_sci(v),
        }
    }
}

/// Python's `'{:.4e}'` (a signed exponent of at least two digits), which Rust's `{:e}` is not.
fn python_sci(v: f64) -> String {
    let rust = format!("{v:.PRECISION$e}");
    let (mantissa, exponent) = rust.split_once('e').unwrap_or((&rust, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

/// The tensor as PyTorch prints it. Reads the values through a float64 CPU copy.
pub fn format_tensor(t: &Tensor) -> Result<String> {
    let kind = t.f_kind()?;
    let size = t.size();
    let numel = t.numel();
    let summarize = numel > THRESHOLD;
    let host = t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
    let shown = if summarize { summarized(&host)? } else { host.shallow_clone() };
    let values = Vec::<f64>::try_from(shown.f_reshape([-1])?)?;
    let style = Style::for_values(kind, &values);
    let width = values.iter().map(|v| style.text(*v).len()).max().unwrap_or(1);

    let mut body = String::new();
    if numel == 0 {
        body.push_str("[]");
    } else {
        write_block(&host, &style, width, PREFIX.len(), summarize, &mut body)?;
    }

    let mut suffixes = Vec::new();
    if numel == 0 && size.len() > 1 {
        let dims: Vec<String> = size.iter().map(i64::to_string).collect();
        suffixes.push(format!("size=({})", dims.join(", ")));
    }
    if t.device() != Device::Cpu {
        suffixes.push(format!("device={}", device_name(t.device())));
    }
    let default_kind = matches!(kind, Kind::Float | Kind::Int64 | Kind::Bool);
    if !default_kind {
        suffixes.push(format!("dtype={}", dtype_name(kind)));
    }
    if t.requires_grad() {
        suffixes.push("requires_grad=True".into());
    }
    let mut out = String::from(PREFIX);
    out.push_str(&body);
    for suffix in suffixes {
        out.push_str(", ");
        out.push_str(&suffix);
    }
    out.push(')');
    Ok(out)
}

/// Keeps the first and last EDGE_ITEMS along every dimension, as PyTorch's `get_summarized_data`.
fn summarized(t: &Tensor) -> Result<Tensor> {
    let size = t.size();
    if size.is_empty() {
        return Ok(t.shallow_clone());
    }
    let rows: Vec<i64> = if size[0] > 2 * EDGE_ITEMS {
        (0..EDGE_ITEMS).chain(size[0] - EDGE_ITEMS..size[0]).collect()
    } else {
        (0..size[0]).collect()
    };
    if size.len() == 1 {
        let index = Tensor::from_slice(&rows);
        return Ok(t.f_index_select(0, &index)?);
    }
    let parts = rows.iter().map(|i| summarized(&t.f_get(*i)?)).collect::<Result<Vec<_>>>()?;
    Ok(Tensor::f_stack(&parts, 0)?)
}

fn write_block(
    t: &Tensor,
    style: &Style,
    width: usize,
    indent: usize,
    summarize: bool,
    out: &mut String,
) -> Result<()> {
    let size = t.size();
    if size.is_empty() {
        out.push_str(&style.text(t.f_double_value(&[])?));
        return Ok(());
    }
    let n = size[0];
    let skip = summarize && n > 2 * EDGE_ITEMS;
    let rows: Vec<Option<i64>> = if skip {
        (0..EDGE_ITEMS).map(Some).chain([None]).chain((n - EDGE_ITEMS..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    };
    out.push('[');
    if size.len() == 1 {
        let per_line = ((LINE_WIDTH - indent) / (width + 2)).max(1);
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                out.push(',');
                if i % per_line == 0 {
                    out.push('\n');
                    out.push_str(&" ".repeat(indent + 1));
                } else {
                    out.push(' ');
                }
            }
            match row {
                Some(j) => {
                    let text = style.text(t.f_double_value(&[*j])?);
                    out.push_str(&format!("{text:>width$}"));
                }
                None => out.push_str(" ..."),
            }
        }
    } else {
        let separator = format!(",{}{}", "\n".repeat(size.len() - 1), " ".repeat(indent + 1));
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                out.push_str(&separator);
            }
            match row {
                Some(j) => write_block(&t.f_get(*j)?, style, width, indent + 1, summarize, out)?,
                None => out.push_str("..."),
            }
        }
    }
    out.push(']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(t: &Tensor) -> String {
        format_tensor(t).unwrap()
    }

    #[test]
    fn matches_pytorch_layouts() {
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
        assert_eq!(show(&t), "tensor([[1., 2.],\n        [3., 4.]])");
        let t = Tensor::from_slice(&[0.5f32, -1.25]);
        assert_eq!(show(&t), "tensor([ 0.5000, -1.2500])");
        let t = Tensor::from_slice(&[1i64, 20, 300]);
        assert_eq!(show(&t), "tensor([  1,  20, 300])");
        let t = Tensor::from_slice(&[1e-5f64, 1.0]);
        assert_eq!(show(&t), "tensor([1.0000e-05, 1.0000e+00], dtype=float64)");
        let t = Tensor::from(3.5f32);
        assert_eq!(show(&t), "tensor(3.5000)");
        let t = Tensor::from_slice(&[true, false]);
        assert_eq!(show(&t), "tensor([ True, False])");
        let t = Tensor::arange(2000, (Kind::Int64, Device::Cpu));
        assert_eq!(show(&t), "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])");
    }
}
