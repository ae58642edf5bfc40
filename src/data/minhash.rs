//! Near-duplicate detection: MinHash signatures of a text's word n-gram shingles and
//! locality-sensitive hashing over bands of them (Broder 1997; Leskovec et al., Mining of Massive
//! Datasets, ch. 3), with the band count chosen as datasketch's `MinHashLSH` chooses it (the
//! split that minimises the even-weighted false-positive and false-negative areas). Candidates
//! that share a band are confirmed by the signatures' agreement, which estimates the Jaccard
//! similarity.

use std::collections::HashMap;

/// 2^61 − 1, the Mersenne prime the permutations work modulo.
const PRIME: u64 = (1 << 61) - 1;

/// FNV-1a over bytes, then SplitMix64's finaliser: a fixed 64-bit hash, the same everywhere.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// (a·x + b) mod 2^61 − 1 for a, x, b below the prime, by the Mersenne reduction (no division).
fn affine_mod(a: u64, x: u64, b: u64) -> u64 {
    let v = a as u128 * x as u128 + b as u128;
    let mut r = (v & PRIME as u128) as u64 + (v >> 61) as u64;
    r = (r & PRIME) + (r >> 61);
    if r >= PRIME {
        r - PRIME
    } else {
        r
    }
}

pub struct MinHasher {
    /// (a, b) of each permutation x ↦ (a·x + b) mod p.
    perms: Vec<(u64, u64)>,
    /// Words per shingle.
    shingle: usize,
}

impl MinHasher {
    pub fn new(num_perm: usize, shingle: usize, seed: u64) -> MinHasher {
        let mut rng = super::rng::Rng::new(seed, 0x4D49_4E48);
        let perms = (0..num_perm).map(|_| (1 + rng.below(PRIME - 1), rng.below(PRIME))).collect();
        MinHasher { perms, shingle: shingle.max(1) }
    }

    /// The hashes of the text's shingles: lower-cased word n-grams (the whole text when it has
    /// fewer words), each the hash of its words' hashes in order.
    fn shingles(&self, text: &str) -> Vec<u64> {
        let words: Vec<u64> = text.split_whitespace().map(|w| hash_bytes(w.to_lowercase().as_bytes())).collect();
        if words.is_empty() {
            return vec![hash_bytes(b"") % PRIME];
        }
        let n = self.shingle.min(words.len());
        let mut out: Vec<u64> = words.windows(n).map(|w| hash_bytes(&w.iter().flat_map(|h| h.to_le_bytes()).collect::<Vec<u8>>()) % PRIME).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn signature(&self, text: &str) -> Vec<u64> {
        let shingles = self.shingles(text);
        self.perms.iter().map(|&(a, b)| shingles.iter().map(|&x| affine_mod(a, x, b)).min().unwrap_or(u64::MAX)).collect()
    }
}

/// The fraction of positions where two signatures agree: an estimate of the Jaccard similarity.
pub fn similarity(a: &[u64], b: &[u64]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

fn integrate(f: impl Fn(f64) -> f64, from: f64, to: f64) -> f64 {
    let steps = 1000;
    let h = (to - from) / steps as f64;
    (0..steps).map(|i| f(from + (i as f64 + 0.5) * h) * h).sum()
}

/// (bands, rows) for `threshold` with `num_perm` permutations, as datasketch's `_optimal_param`.
pub fn optimal_bands(threshold: f64, num_perm: usize) -> (usize, usize) {
    let mut best = (1, num_perm);
    let mut least = f64::INFINITY;
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
            let false_positive = integrate(p, 0.0, threshold);
            let false_negative = integrate(|s| 1.0 - p(s), threshold, 1.0);
            let error = 0.5 * false_positive + 0.5 * false_negative;
            if error < least {
                least = error;
                best = (b, r);
            }
        }
    }
    best
}

/// The signatures kept so far, findable by band.
pub struct Lsh {
    bands: usize,
    rows: usize,
    threshold: f64,
    buckets: HashMap<(usize, u64), Vec<usize>>,
    kept: Vec<Vec<u64>>,
}

impl Lsh {
    pub fn new(threshold: f64, num_perm: usize) -> Lsh {
        let (bands, rows) = optimal_bands(threshold, num_perm);
        Lsh { bands, rows, threshold, buckets: HashMap::new(), kept: Vec::new() }
    }

    fn band_key(&self, sig: &[u64], band: usize) -> u64 {
        let slice = &sig[band * self.rows..(band + 1) * self.rows];
        let bytes: Vec<u8> = slice.iter().flat_map(|v| v.to_le_bytes()).collect();
        hash_bytes(&bytes)
    }

    /// Whether `sig` is a near-duplicate of a kept signature; if not, keeps it.
    pub fn insert_unless_near(&mut self, sig: Vec<u64>) -> bool {
        let keys: Vec<u64> = (0..self.bands).map(|b| self.band_key(&sig, b)).collect();
        for (band, key) in keys.iter().enumerate() {
            if let Some(ids) = self.buckets.get(&(band, *key)) {
                if ids.iter().any(|&i| similarity(&self.kept[i], &sig) >= self.threshold) {
                    return true;
                }
            }
        }
        let id = self.kept.len();
        for (band, key) in keys.into_iter().enumerate() {
            self.buckets.entry((band, key)).or_default().push(id);
        }
        self.kept.push(sig);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_match_datasketch() {
        // datasketch 2.0.0's _optimal_param(t, 128, 0.5, 0.5) for t = 0.8, 0.5, 0.7, 0.9.
        assert_eq!(optimal_bands(0.8, 128), (9, 13));
        assert_eq!(optimal_bands(0.5, 128), (25, 5));
        assert_eq!(optimal_bands(0.7, 128), (14, 9));
        assert_eq!(optimal_bands(0.9, 128), (5, 25));
    }

    #[test]
    fn the_mersenne_reduction_equals_the_remainder() {
        let mut rng = crate::data::rng::Rng::new(5, 5);
        for _ in 0..10_000 {
            let (a, x, b) = (rng.below(PRIME), rng.below(PRIME), rng.below(PRIME));
            assert_eq!(affine_mod(a, x, b), ((a as u128 * x as u128 + b as u128) % PRIME as u128) as u64);
        }
        assert_eq!(affine_mod(PRIME - 1, PRIME - 1, PRIME - 1), (((PRIME - 1) as u128 * (PRIME - 1) as u128 + (PRIME - 1) as u128) % PRIME as u128) as u64);
    }

    #[test]
    fn near_duplicates_are_found_and_different_texts_are_not() {
        let m = MinHasher::new(128, 3, 1);
        let a = "the quick brown fox jumps over the lazy dog near the river bank today";
        let b = "the quick brown fox jumps over the lazy dog near the river bank tonight";
        let c = "stock markets fell sharply on monday as investors weighed new data";
        let mut lsh = Lsh::new(0.7, 128);
        assert!(!lsh.insert_unless_near(m.signature(a)));
        assert!(lsh.insert_unless_near(m.signature(b)));
        assert!(!lsh.insert_unless_near(m.signature(c)));
    }
}
