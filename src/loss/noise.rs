//! Seedable Gaussian tie-break noise for the auto-mask: a counter-based generator (SplitMix64
//! seeding a PCG-style stream per image row) so that rows fill in parallel and the result
//! depends only on (seed, call index, row), never on the thread count.

use super::real::Real;
use rayon::prelude::*;

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small permuted congruential generator (PCG-XSH-RR 64/32), two outputs per 64-bit draw.
struct RowRng {
    state: u64,
    increment: u64,
}

impl RowRng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Self { state: 0, increment: (splitmix64(stream) << 1) | 1 };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(splitmix64(seed));
        rng.next_u32();
        rng
    }

    fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(self.increment);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        (f64::from(self.next_u32()) + 1.0) / 4_294_967_296.0
    }
}

/// Fills `out` (rows of `width`) with N(0, std²) samples determined by (seed, call, row).
pub fn fill_normal<T: Real>(out: &mut [T], width: usize, std: f64, seed: u64, call: u64) {
    let call_seed = splitmix64(seed ^ splitmix64(call));
    out.par_chunks_mut(width).enumerate().for_each(|(row, values)| {
        let mut rng = RowRng::new(call_seed, row as u64);
        for pair in values.chunks_mut(2) {
            // Box–Muller.
            let radius = (-2.0 * rng.uniform().ln()).sqrt() * std;
            let angle = std::f64::consts::TAU * rng.uniform();
            let (s, c) = angle.sin_cos();
            pair[0] = T::from_f64(radius * c);
            if let Some(second) = pair.get_mut(1) {
                *second = T::from_f64(radius * s);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_deterministic_and_has_the_requested_spread() {
        let mut a = vec![0f64; 64 * 100];
        let mut b = vec![0f64; 64 * 100];
        fill_normal(&mut a, 64, 2.0, 7, 0);
        fill_normal(&mut b, 64, 2.0, 7, 0);
        assert_eq!(a, b);
        fill_normal(&mut b, 64, 2.0, 7, 1);
        assert_ne!(a, b);
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.1, "std {}", var.sqrt());
    }
}
