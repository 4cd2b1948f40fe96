//! Procedural texture building blocks: an integer hash, 2-D value noise, band-limited fractal
//! noise (octaves finer than the pixel footprint fade to their mean, so distant surfaces do not
//! alias), and colour helpers. Everything is a pure function of position and seed, so a surface
//! looks the same from every viewpoint (what photometric losses need).

/// Linear RGB-like colour in [0, 1].
pub type Rgb = [f32; 3];

/// A well-mixed 32-bit hash of a lattice point and a seed.
#[inline]
pub fn hash2(x: i64, y: i64, seed: u32) -> u32 {
    let mut h = seed
        ^ (x as u32).wrapping_mul(0x8da6_b343)
        ^ (y as u32).wrapping_mul(0xd816_3841)
        ^ ((x >> 32) as u32).wrapping_mul(0xcb1a_b31f)
        ^ ((y >> 32) as u32).wrapping_mul(0x1656_67b1);
    h = (h ^ (h >> 16)).wrapping_mul(0x7feb_352d);
    h = (h ^ (h >> 15)).wrapping_mul(0x846c_a68b);
    h ^ (h >> 16)
}

/// A hash of one integer and a seed.
#[inline]
pub fn hash1(x: i64, seed: u32) -> u32 {
    hash2(x, 0x5bd1_e995, seed)
}

/// Maps a hash to [0, 1).
#[inline]
pub fn unit(h: u32) -> f32 {
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[inline]
fn quintic(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

/// `x.floor()` as an integer without a libm call (exact for |x| < 2^62; saturates beyond).
#[inline]
fn floor_to_int(x: f64) -> i64 {
    let truncated = x as i64;
    if (truncated as f64) > x { truncated - 1 } else { truncated }
}

/// Value noise in [0, 1] with unit lattice spacing, C2-smooth.
#[inline]
pub fn value_noise(x: f64, y: f64, seed: u32) -> f32 {
    let (xi, yi) = (floor_to_int(x), floor_to_int(y));
    let (xf, yf) = (xi as f64, yi as f64);
    let (tx, ty) = (quintic((x - xf) as f32), quintic((y - yf) as f32));
    let v00 = unit(hash2(xi, yi, seed));
    let v10 = unit(hash2(xi + 1, yi, seed));
    let v01 = unit(hash2(xi, yi + 1, seed));
    let v11 = unit(hash2(xi + 1, yi + 1, seed));
    let a = v00 + (v10 - v00) * tx;
    let b = v01 + (v11 - v01) * tx;
    a + (b - a) * ty
}

/// Fractal value noise in about [0, 1]: `octaves` octaves starting at `base_freq` cycles per
/// metre, each twice the frequency and half the amplitude of the previous one. Octaves whose
/// wavelength is below two pixel footprints (`footprint`, metres) fade to their mean.
pub fn fbm(x: f64, y: f64, base_freq: f64, octaves: u32, footprint: f64, seed: u32) -> f32 {
    let mut sum = 0.0f32;
    let mut norm = 0.0f32;
    let mut freq = base_freq;
    let mut amp = 1.0f32;
    for octave in 0..octaves {
        let wavelength_in_footprints = 1.0 / (freq * footprint.max(1e-9));
        // 1 when the wavelength spans >= 4 footprints, 0 at <= 2: band-limit.
        let keep = ((wavelength_in_footprints - 2.0) * 0.5).clamp(0.0, 1.0) as f32;
        if keep <= 0.0 {
            sum += amp * 0.5;
        } else {
            let n = value_noise(x * freq, y * freq, seed.wrapping_add(octave.wrapping_mul(0x9e37)));
            sum += amp * (0.5 + keep * (n - 0.5));
        }
        norm += amp;
        freq *= 2.0;
        amp *= 0.5;
    }
    sum / norm
}

/// Fraction (0..1) of an interval of width `footprint` around `x` that lies inside the band
/// `|x| < half_width`: an anti-aliased stripe.
#[inline]
pub fn soft_band(x: f64, half_width: f64, footprint: f64) -> f32 {
    let edge = (half_width - x.abs()) / footprint.max(1e-9) + 0.5;
    edge.clamp(0.0, 1.0) as f32
}

/// `a + (b - a) * t` per channel.
#[inline]
pub fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

/// Colour times a scalar.
#[inline]
pub fn scale(c: Rgb, s: f32) -> Rgb {
    [c[0] * s, c[1] * s, c[2] * s]
}

/// Per-channel product.
#[inline]
pub fn modulate(a: Rgb, b: Rgb) -> Rgb {
    [a[0] * b[0], a[1] * b[1], a[2] * b[2]]
}

/// A colour varied around `base` by up to `amount` per channel, from a hash.
#[inline]
pub fn vary(base: Rgb, h: u32, amount: f32) -> Rgb {
    let r = unit(h) - 0.5;
    let g = unit(h.rotate_left(11)) - 0.5;
    let b = unit(h.rotate_left(22)) - 0.5;
    let l = unit(h.rotate_left(5)) - 0.5;
    [
        (base[0] * (1.0 + amount * (l + 0.5 * r))).clamp(0.0, 1.0),
        (base[1] * (1.0 + amount * (l + 0.5 * g))).clamp(0.0, 1.0),
        (base[2] * (1.0 + amount * (l + 0.5 * b))).clamp(0.0, 1.0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_noise_is_bounded_continuous_and_seeded() {
        let mut max_step = 0.0f32;
        let mut prev = value_noise(0.0, 0.3, 7);
        for i in 1..2000 {
            let x = i as f64 * 0.001;
            let v = value_noise(x, 0.3, 7);
            assert!((0.0..=1.0).contains(&v));
            max_step = max_step.max((v - prev).abs());
            prev = v;
        }
        assert!(max_step < 0.01, "noise jumps by {max_step}");
        assert_ne!(value_noise(3.3, 4.4, 1), value_noise(3.3, 4.4, 2));
    }

    #[test]
    fn fbm_fades_octaves_below_the_footprint() {
        // With a huge footprint every octave is at its mean.
        assert_eq!(fbm(12.3, 4.5, 1.0, 5, 100.0, 3), 0.5);
        let fine = fbm(12.3, 4.5, 1.0, 5, 1e-4, 3);
        assert!((0.0..=1.0).contains(&fine));
    }

    #[test]
    fn floor_to_int_matches_floor() {
        for x in [-2.5, -2.0, -0.1, -0.0, 0.0, 0.3, 1.0, 7.9, 1e12 + 0.5, -1e12 - 0.5] {
            assert_eq!(floor_to_int(x), x.floor() as i64, "{x}");
        }
    }

    #[test]
    fn soft_band_is_one_inside_zero_outside() {
        assert_eq!(soft_band(0.0, 0.1, 0.01), 1.0);
        assert_eq!(soft_band(0.5, 0.1, 0.01), 0.0);
        let edge = soft_band(0.1, 0.1, 0.01);
        assert!((edge - 0.5).abs() < 1e-6);
    }
}
