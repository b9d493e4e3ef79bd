//! Small numeric helpers shared by the manager and the monitor.

/// Least-squares line through `(x, y)`: `(slope, r_squared)`; `None` with fewer
/// than two distinct x values.
pub fn linear_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in points {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
        syy += (y - my) * (y - my);
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 { 1.0 } else { (sxy * sxy) / (sxx * syy) };
    Some((slope, r2))
}

/// SplitMix64: a tiny seedable generator, so `gc_probability` is repeatable in tests.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    /// A seed that differs between processes and between calls.
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, RandomState};
        SplitMix64(RandomState::new().hash_one(std::time::SystemTime::now()))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        let (s, r2) = linear_fit(&pts).unwrap();
        assert!((s - 3.0).abs() < 1e-9 && (r2 - 1.0).abs() < 1e-9);
        assert!(linear_fit(&[(1.0, 2.0)]).is_none());
        assert!(linear_fit(&[(1.0, 2.0), (1.0, 3.0)]).is_none());
    }

    #[test]
    fn seeded_generator_repeats() {
        let a: Vec<u64> = {
            let mut g = SplitMix64::new(7);
            (0..5).map(|_| g.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut g = SplitMix64::new(7);
            (0..5).map(|_| g.next_u64()).collect()
        };
        assert_eq!(a, b);
        let mut g = SplitMix64::new(1);
        assert!((0..1000).map(|_| g.next_f64()).all(|x| (0.0..1.0).contains(&x)));
    }
}
