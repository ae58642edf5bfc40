//! The generator behind the recipe's `math.random`: xoshiro256**, seeded and projected onto
//! ranges as Lua 5.4's own, but with a state that can be read and restored, so that a resumed
//! run draws the same numbers as one that never stopped.

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Xoshiro(pub [u64; 4]);

impl Xoshiro {
    /// Lua 5.4's `math.randomseed(n1, n2)`: the state {n1, 0xff, n2, 0}, then 16 draws discarded.
    pub fn seeded(n1: u64, n2: u64) -> Xoshiro {
        let mut x = Xoshiro([n1, 0xff, n2, 0]);
        for _ in 0..16 {
            x.next();
        }
        x
    }

    pub fn next(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A float in [0, 1) from the top 53 bits.
    pub fn float(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (0.5f64).powi(53)
    }

    /// An integer in [low, up] (low ≤ up), by Lua's projection: the draw masked to the smallest
    /// 2^b − 1 that covers the interval, drawn again while it falls outside.
    pub fn between(&mut self, low: i64, up: i64) -> i64 {
        let n = (up as u64).wrapping_sub(low as u64);
        let mut ran = self.next();
        let projected = if n & n.wrapping_add(1) == 0 {
            ran & n
        } else {
            let mut lim = n;
            lim |= lim >> 1;
            lim |= lim >> 2;
            lim |= lim >> 4;
            lim |= lim >> 8;
            lim |= lim >> 16;
            lim |= lim >> 32;
            loop {
                ran &= lim;
                if ran <= n {
                    break ran;
                }
                ran = self.next();
            }
        };
        (low as u64).wrapping_add(projected) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_restore_exactly() {
        let mut x = Xoshiro::seeded(42, 0);
        for _ in 0..1000 {
            let v = x.between(-3, 9);
            assert!((-3..=9).contains(&v));
            let f = x.float();
            assert!((0.0..1.0).contains(&f));
        }
        let saved = x;
        let a: Vec<u64> = (0..5).map(|_| x.next()).collect();
        let mut y = saved;
        let b: Vec<u64> = (0..5).map(|_| y.next()).collect();
        assert_eq!(a, b);
        // The whole range takes the draw as it is, shifted by the lower bound.
        assert_eq!(Xoshiro::seeded(1, 0).between(i64::MIN, i64::MAX), (Xoshiro::seeded(1, 0).next() as i64).wrapping_add(i64::MIN));
    }
}
