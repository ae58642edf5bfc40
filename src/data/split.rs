//! Splitting a dataset into named parts by fractions (`train = 0.8, val = 0.1, test = 0.1`), in a
//! seeded random order, optionally stratified by a field so that each part has the label
//! proportions of the whole. Parts are views by position of the same data; every example lands
//! in exactly one part.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::dataset::Dataset;
use super::rng::Rng;

/// How many of `n` each part gets: floor of its share, the remainder to the largest fractional
/// parts (ties to the earlier part).
fn allocate(n: u64, fractions: &[f64]) -> Vec<u64> {
    let total: f64 = fractions.iter().sum();
    let exact: Vec<f64> = fractions.iter().map(|f| f / total * n as f64).collect();
    let mut counts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut order: Vec<usize> = (0..fractions.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    let mut left = n - counts.iter().sum::<u64>();
    for i in order.into_iter().cycle() {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    counts
}

/// The parts' positions into `data`.
pub fn split(data: &Dataset, parts: &[(String, f64)], seed: u64, stratify: Option<&str>) -> Result<Vec<(String, Vec<u64>)>> {
    if parts.is_empty() {
        bail!("give at least one part, e.g. {{ train = 0.9, test = 0.1 }}");
    }
    if parts.iter().any(|(_, f)| !f.is_finite() || *f < 0.0) || parts.iter().map(|(_, f)| f).sum::<f64>() <= 0.0 {
        bail!("the parts' fractions must be positive numbers");
    }
    let total: f64 = parts.iter().map(|(_, f)| f).sum();
    if (total - 1.0).abs() > 1e-6 {
        bail!("the parts' fractions add up to {total}, not 1");
    }
    let n = data.len()?.ok_or_else(|| anyhow::anyhow!("split needs data of known length (not interleaved, packed or batched)"))?;
    let fractions: Vec<f64> = parts.iter().map(|(_, f)| *f).collect();
    let mut rng = Rng::new(seed, 0x5350_4C49);
    let mut out: Vec<Vec<u64>> = vec![Vec::new(); parts.len()];
    let groups: Vec<Vec<u64>> = match stratify {
        None => vec![(0..n).collect()],
        Some(field) => {
            let mut by_label: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            for i in 0..n {
                let ex = data.get(i)?;
                let label = ex.field(field, i)?.to_json()?.to_string();
                by_label.entry(label).or_default().push(i);
            }
            by_label.into_values().collect()
        }
    };
    for mut group in groups {
        rng.shuffle(&mut group);
        let counts = allocate(group.len() as u64, &fractions);
        let mut at = 0usize;
        for (part, c) in out.iter_mut().zip(counts) {
            part.extend_from_slice(&group[at..at + c as usize]);
            at += c as usize;
        }
    }
    for part in &mut out {
        rng.shuffle(part);
    }
    Ok(parts.iter().map(|(name, _)| name.clone()).zip(out).collect())
}
