//! Deterministic synthetic inputs of the fused loss (smooth random images, disparities and
//! poses), shared by the twin's tests, the GPU parity tests and the loss benchmarks.

/// Owned loss inputs with smooth random images, disparities in [0.02, 0.42], small poses (the
/// first source inverted) and tie-break noise of 1e-5: for benchmarks and smoke tests.
#[derive(Clone, Debug)]
pub struct SyntheticLossInputs {
    pub width: usize,
    pub height: usize,
    pub target: Vec<f32>,
    pub sources: Vec<Vec<f32>>,
    pub disparities: Vec<Vec<f32>>,
    pub pyramid: Vec<Vec<f32>>,
    pub poses: Vec<[f32; 6]>,
    pub invert: Vec<bool>,
    pub intrinsics: [f32; 4],
    pub noise: Vec<f32>,
}

/// Deterministic [`SyntheticLossInputs`] for `seed`.
pub fn synthetic_inputs(
    w: usize,
    h: usize,
    n: usize,
    scales: usize,
    seed: u64,
) -> SyntheticLossInputs {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        ((state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32) / (1u64 << 24) as f32
    };
    let image = |next: &mut dyn FnMut() -> f32| {
        let k: Vec<f32> = (0..6).map(|_| next()).collect();
        let mut out = vec![0.0f32; 3 * w * h];
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let (xf, yf) = (x as f32 / w as f32, y as f32 / h as f32);
                    out[c * w * h + y * w + x] = 0.5
                        + 0.25 * (9.0 * xf + 6.0 * k[2 * c] + 4.0 * yf).sin()
                        + 0.2 * (7.0 * yf + 6.0 * k[2 * c + 1]).cos();
                }
            }
        }
        out
    };
    let target = image(&mut next);
    let sources = (0..n).map(|_| image(&mut next)).collect();
    let disparities = (0..scales)
        .map(|s| (0..(w >> s) * (h >> s)).map(|_| 0.02 + 0.4 * next()).collect())
        .collect();
    let mut pyramid = vec![target.clone()];
    for s in 1..scales {
        let (pw, ph) = (w >> (s - 1), h >> (s - 1));
        let (lw, lh) = (w >> s, h >> s);
        let prev: &Vec<f32> = &pyramid[s - 1];
        let mut lvl = vec![0.0f32; 3 * lw * lh];
        for c in 0..3 {
            for y in 0..lh {
                for x in 0..lw {
                    let at = |yy: usize, xx: usize| prev[c * pw * ph + yy * pw + xx];
                    lvl[c * lw * lh + y * lw + x] = 0.25
                        * (at(2 * y, 2 * x)
                            + at(2 * y, 2 * x + 1)
                            + at(2 * y + 1, 2 * x)
                            + at(2 * y + 1, 2 * x + 1));
                }
            }
        }
        pyramid.push(lvl);
    }
    let poses = (0..n)
        .map(|_| std::array::from_fn(|k| if k < 3 { 0.03 } else { 0.1 } * (2.0 * next() - 1.0)))
        .collect();
    let noise = (0..n * w * h).map(|_| 1e-5 * (2.0 * next() - 1.0)).collect();
    SyntheticLossInputs {
        width: w,
        height: h,
        target,
        sources,
        disparities,
        pyramid,
        poses,
        invert: (0..n).map(|i| i == 0).collect(),
        intrinsics: [0.58 * w as f32, 1.92 * h as f32, 0.5 * w as f32, 0.5 * h as f32],
        noise,
    }
}
