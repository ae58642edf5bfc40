//! Heat-map panels at a size a terminal can show. A recipe may report a 1×5000 matrix or a
//! 4096×4096 tensor; drawn cell by cell that froze the TUI for a minute per frame. Panels are
//! reduced to at most `MAX_ROWS` × `MAX_COLS` cells by averaging blocks of neighbours (the
//! blocks adaptive average pooling uses), each labelled with the range it covers ("0–208").
//! A tensor is pooled by libtorch before it is copied out.

use anyhow::Result;
use tch::{Kind, Tensor};

pub const MAX_ROWS: usize = 32;
pub const MAX_COLS: usize = 24;

/// The block of `n` items that output `i` of `out` covers: [start, end).
fn block(i: usize, n: usize, out: usize) -> (usize, usize) {
    (i * n / out, ((i + 1) * n).div_ceil(out))
}

/// Labels for the `out` blocks of `labels` (unchanged when nothing is merged).
fn merged_labels(labels: &[String], out: usize) -> Vec<String> {
    if out >= labels.len() {
        return labels.to_vec();
    }
    (0..out)
        .map(|i| {
            let (start, end) = block(i, labels.len(), out);
            if end - start == 1 { labels[start].clone() } else { format!("{}–{}", labels[start], labels[end - 1]) }
        })
        .collect()
}

/// A matrix (rows may differ in length: missing cells are left out of the averages) reduced
/// to at most `MAX_ROWS` × `MAX_COLS`, with its labels.
pub fn shrink(values: &[Vec<f64>], rows: &[String], cols: &[String]) -> (Vec<Vec<f64>>, Vec<String>, Vec<String>) {
    let (n_rows, n_cols) = (values.len(), values.iter().map(Vec::len).max().unwrap_or(0));
    let (out_rows, out_cols) = (n_rows.min(MAX_ROWS), n_cols.min(MAX_COLS));
    let shrunk = (0..out_rows)
        .map(|i| {
            let (r0, r1) = block(i, n_rows, out_rows);
            (0..out_cols)
                .map(|j| {
                    let (c0, c1) = block(j, n_cols, out_cols);
                    let cells: Vec<f64> = values[r0..r1].iter().flat_map(|row| row.get(c0..c1.min(row.len())).unwrap_or(&[]).iter().copied()).collect();
                    if cells.is_empty() { f64::NAN } else { cells.iter().sum::<f64>() / cells.len() as f64 }
                })
                .collect()
        })
        .collect();
    (shrunk, merged_labels(rows, out_rows), merged_labels(cols, out_cols))
}

/// Labels given for `n` rows or columns, or their indices.
pub fn labels(given: Option<Vec<String>>, n: usize) -> Vec<String> {
    given.unwrap_or_else(|| (0..n).map(|i| i.to_string()).collect())
}

/// A 2-D tensor as a matrix of at most `MAX_ROWS` × `MAX_COLS` (pooled first if larger), and
/// the labels of its blocks (from `rows` and `cols` if given).
pub fn from_tensor(t: &Tensor, rows: Option<Vec<String>>, cols: Option<Vec<String>>) -> Result<(Vec<Vec<f64>>, Vec<String>, Vec<String>)> {
    let size = t.size();
    let (n_rows, n_cols) = (size[0].max(0) as usize, size[1].max(0) as usize);
    let (out_rows, out_cols) = (n_rows.min(MAX_ROWS), n_cols.min(MAX_COLS));
    let t = t.f_detach()?.f_to_kind(Kind::Double)?;
    let pooled = if (out_rows, out_cols) != (n_rows, n_cols) && out_rows > 0 && out_cols > 0 {
        t.f_unsqueeze(0)?.f_adaptive_avg_pool2d([out_rows as i64, out_cols as i64])?.f_squeeze_dim(0)?
    } else {
        t
    };
    let flat = Vec::<f64>::try_from(&pooled.f_to_device(tch::Device::Cpu)?.f_reshape([-1])?)?;
    let values = flat.chunks(out_cols.max(1)).map(<[f64]>::to_vec).collect();
    Ok((values, merged_labels(&labels(rows, n_rows), out_rows), merged_labels(&labels(cols, n_cols), out_cols)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_panel_is_averaged_into_labelled_blocks() {
        let row: Vec<f64> = (0..5000).map(|i| i as f64).collect();
        let cols: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
        let (values, rows, labels) = shrink(&[row], &["r".into()], &cols);
        assert_eq!((values.len(), values[0].len(), rows.len(), labels.len()), (1, MAX_COLS, 1, MAX_COLS));
        assert_eq!(labels[0], "0–208");
        assert!((values[0][0] - 104.0).abs() < 1e-9, "{}", values[0][0]);
        // Small panels are left as they are.
        let small = vec![vec![1.0, 2.0], vec![3.0]];
        let (same, _, _) = shrink(&small, &["a".into(), "b".into()], &["x".into(), "y".into()]);
        assert_eq!(same[0], vec![1.0, 2.0]);
        assert!(same[1][1].is_nan());
    }

    #[test]
    fn a_large_tensor_is_pooled_before_it_is_copied() {
        let t = Tensor::arange(4096 * 64, (Kind::Float, tch::Device::Cpu)).view([4096, 64]);
        let (values, rows, cols) = from_tensor(&t, None, None).unwrap();
        assert_eq!((values.len(), values[0].len(), rows.len(), cols.len()), (MAX_ROWS, MAX_COLS, MAX_ROWS, MAX_COLS));
        assert_eq!(rows[0], "0–127");
    }
}
