//! The preprocessing stage shared by live inference and evaluation: resize packed RGB8 to the
//! network size with a Lanczos-3 antialiasing filter that reproduces Pillow's
//! `Image.resize(size, LANCZOS)` on 8-bit images (separable passes, horizontal first, support
//! widened by the downscale factor, 22-bit fixed-point weights, rounding to 8 bits between
//! passes), then normalise per architecture into a planar CHW f32 buffer.
//!
//! Coefficient tables and intermediate buffers are kept between frames of the same size.

use super::EngineError;
use crate::frame::RgbImage;

/// Fixed-point precision of the filter weights (as Pillow: 32 − 8 − 2 bits).
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Lanczos-3 support radius in input pixels at scale 1.
const LANCZOS_SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = x * std::f64::consts::PI;
        px.sin() / px
    }
}

fn lanczos3(x: f64) -> f64 {
    if (-LANCZOS_SUPPORT..LANCZOS_SUPPORT).contains(&x) {
        sinc(x) * sinc(x / LANCZOS_SUPPORT)
    } else {
        0.0
    }
}

/// Per-output-pixel windows of fixed-point weights along one axis.
#[derive(Clone, Debug, PartialEq)]
struct AxisCoefficients {
    in_size: usize,
    out_size: usize,
    /// Window length (stride of `weights`).
    kernel_size: usize,
    /// (first input index, window length) per output index.
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

impl AxisCoefficients {
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = LANCZOS_SUPPORT * filter_scale;
        let inverse_scale = 1.0 / filter_scale;
        let kernel_size = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * kernel_size];
        let mut window = vec![0f64; kernel_size];
        for out in 0..out_size {
            let center = (out as f64 + 0.5) * scale;
            // Truncation toward zero, as the C original's int casts.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let last = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let len = last.saturating_sub(first).min(kernel_size);
            let mut total = 0.0;
            for (i, w) in window.iter_mut().enumerate().take(len) {
                *w = lanczos3((i as f64 + first as f64 - center + 0.5) * inverse_scale);
                total += *w;
            }
            let row = &mut weights[out * kernel_size..(out + 1) * kernel_size];
            for (dst, &w) in row.iter_mut().zip(&window[..len]) {
                let w = if total != 0.0 { w / total } else { w };
                let fixed = w * (1u32 << PRECISION_BITS) as f64;
                *dst = if fixed < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
            }
            bounds.push((first, len));
        }
        Self { in_size, out_size, kernel_size, bounds, weights }
    }

    #[inline]
    fn window(&self, out: usize) -> (usize, &[i32]) {
        let (first, len) = self.bounds[out];
        (first, &self.weights[out * self.kernel_size..out * self.kernel_size + len])
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples along x: `src` is `height` rows of `coeffs.in_size` RGB pixels.
fn resample_horizontal(src: &[u8], height: usize, coeffs: &AxisCoefficients, dst: &mut [u8]) {
    let (in_row, out_row) = (coeffs.in_size * 3, coeffs.out_size * 3);
    for y in 0..height {
        let s = &src[y * in_row..(y + 1) * in_row];
        let d = &mut dst[y * out_row..(y + 1) * out_row];
        for x in 0..coeffs.out_size {
            let (first, w) = coeffs.window(x);
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            let window = &s[first * 3..(first + w.len()) * 3];
            for (&k, p) in w.iter().zip(window.chunks_exact(3)) {
                acc[0] += p[0] as i32 * k;
                acc[1] += p[1] as i32 * k;
                acc[2] += p[2] as i32 * k;
            }
            d[x * 3] = clip8(acc[0]);
            d[x * 3 + 1] = clip8(acc[1]);
            d[x * 3 + 2] = clip8(acc[2]);
        }
    }
}

/// Resamples along y: `src` is `coeffs.in_size` rows of `row_len` bytes.
/// `acc` is scratch space, resized as needed.
fn resample_vertical(
    src: &[u8],
    row_len: usize,
    coeffs: &AxisCoefficients,
    dst: &mut [u8],
    acc: &mut Vec<i32>,
) {
    acc.resize(row_len, 0);
    for y in 0..coeffs.out_size {
        let (first, w) = coeffs.window(y);
        acc.fill(1i32 << (PRECISION_BITS - 1));
        for (i, &k) in w.iter().enumerate() {
            let s = &src[(first + i) * row_len..(first + i + 1) * row_len];
            for (a, &p) in acc.iter_mut().zip(s) {
                *a += p as i32 * k;
            }
        }
        for (d, &a) in dst[y * row_len..(y + 1) * row_len].iter_mut().zip(acc.iter()) {
            *d = clip8(a);
        }
    }
}

/// Resizes with the Pillow-compatible Lanczos-3 filter, reusing `horizontal` / `vertical`
/// tables and the `intermediate` buffer when they already fit.
fn resize_into(
    image: &RgbImage,
    out: &mut RgbImage,
    horizontal: &mut Option<AxisCoefficients>,
    vertical: &mut Option<AxisCoefficients>,
    intermediate: &mut Vec<u8>,
    accumulator: &mut Vec<i32>,
) {
    let (iw, ih) = (image.width as usize, image.height as usize);
    let (ow, oh) = (out.width as usize, out.height as usize);
    if iw == ow && ih == oh {
        out.data.copy_from_slice(&image.data);
        return;
    }
    let refresh = |c: &mut Option<AxisCoefficients>, i: usize, o: usize| {
        if c.as_ref().is_none_or(|c| c.in_size != i || c.out_size != o) {
            *c = Some(AxisCoefficients::new(i, o));
        }
    };
    refresh(horizontal, iw, ow);
    refresh(vertical, ih, oh);
    let (Some(hc), Some(vc)) = (horizontal.as_ref(), vertical.as_ref()) else { return };
    match (iw != ow, ih != oh) {
        (true, true) => {
            intermediate.resize(ow * ih * 3, 0);
            resample_horizontal(&image.data, ih, hc, intermediate);
            resample_vertical(intermediate, ow * 3, vc, &mut out.data, accumulator);
        }
        (true, false) => resample_horizontal(&image.data, ih, hc, &mut out.data),
        (false, true) => resample_vertical(&image.data, iw * 3, vc, &mut out.data, accumulator),
        (false, false) => {}
    }
}

/// Resizes `image` to `width` x `height` with the Pillow-compatible Lanczos-3 filter.
pub fn resize_lanczos(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, EngineError> {
    check_image(image)?;
    if width == 0 || height == 0 {
        return Err(EngineError::InvalidSize { what: "resize target", width, height });
    }
    let mut out = RgbImage::new(width, height);
    resize_into(image, &mut out, &mut None, &mut None, &mut Vec::new(), &mut Vec::new());
    Ok(out)
}

fn check_image(image: &RgbImage) -> Result<(), EngineError> {
    let expected = image.width as usize * image.height as usize * 3;
    if image.width == 0 || image.height == 0 {
        return Err(EngineError::InvalidSize {
            what: "input image",
            width: image.width,
            height: image.height,
        });
    }
    if image.data.len() != expected {
        return Err(EngineError::ImageBuffer {
            width: image.width,
            height: image.height,
            expected,
            found: image.data.len(),
        });
    }
    Ok(())
}

/// The `(mean, std)` that leaves RGB in \[0, 1\] (what our ONNX graphs take: they normalise
/// inside).
pub const UNIT_RGB: ([f32; 3], [f32; 3]) = ([0.0; 3], [1.0; 3]);

/// Resize + normalisation stage for one network input size; reuse it across frames.
#[derive(Debug)]
pub struct Preprocessor {
    resized: RgbImage,
    mean: [f32; 3],
    std: [f32; 3],
    horizontal: Option<AxisCoefficients>,
    vertical: Option<AxisCoefficients>,
    intermediate: Vec<u8>,
    accumulator: Vec<i32>,
}

impl Preprocessor {
    /// A stage producing `width` x `height` inputs normalised as `(x/255 − mean) / std`.
    pub fn new(
        width: u32,
        height: u32,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Self, EngineError> {
        if width == 0 || height == 0 {
            return Err(EngineError::InvalidSize { what: "network input", width, height });
        }
        Ok(Self {
            resized: RgbImage::new(width, height),
            mean,
            std,
            horizontal: None,
            vertical: None,
            intermediate: Vec::new(),
            accumulator: Vec::new(),
        })
    }

    /// A stage producing `width` x `height` inputs as RGB in \[0, 1\] ([`UNIT_RGB`]).
    pub fn unit_rgb(width: u32, height: u32) -> Result<Self, EngineError> {
        Self::new(width, height, UNIT_RGB.0, UNIT_RGB.1)
    }

    /// Output width and height.
    pub fn size(&self) -> (u32, u32) {
        (self.resized.width, self.resized.height)
    }

    /// Number of f32 values [`Self::run`] writes (3 × width × height).
    pub fn output_len(&self) -> usize {
        self.resized.data.len()
    }

    /// The 8-bit image produced by the last [`Self::resize`] or [`Self::run`].
    pub fn resized(&self) -> &RgbImage {
        &self.resized
    }

    /// Resizes `image` to the network size; returns the resized 8-bit image.
    pub fn resize(&mut self, image: &RgbImage) -> Result<&RgbImage, EngineError> {
        check_image(image)?;
        resize_into(
            image,
            &mut self.resized,
            &mut self.horizontal,
            &mut self.vertical,
            &mut self.intermediate,
            &mut self.accumulator,
        );
        Ok(&self.resized)
    }

    /// Resizes and normalises `image` into `out` (planar R, G, B; `output_len` values).
    pub fn run(&mut self, image: &RgbImage, out: &mut [f32]) -> Result<(), EngineError> {
        if out.len() != self.output_len() {
            return Err(EngineError::Internal(format!(
                "preprocess output buffer holds {} values, expected {}",
                out.len(),
                self.output_len()
            )));
        }
        self.resize(image)?;
        let plane = self.output_len() / 3;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        let [mr, mg, mb] = self.mean;
        let [sr, sg, sb] = self.std;
        for (i, px) in self.resized.data.chunks_exact(3).enumerate() {
            // Same f32 operations as ToTensor() followed by (x − mean) / std.
            r[i] = (px[0] as f32 / 255.0 - mr) / sr;
            g[i] = (px[1] as f32 / 255.0 - mg) / sg;
            b[i] = (px[2] as f32 / 255.0 - mb) / sb;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(1242, 640), (375, 192), (100, 300), (7, 3)] {
            let c = AxisCoefficients::new(i, o);
            for out in 0..o {
                let (_, w) = c.window(out);
                let sum: i64 = w.iter().map(|&k| k as i64).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64,
                    "{i}->{o} at {out}: {sum}"
                );
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let mut img = RgbImage::new(50, 31);
        for px in img.data.chunks_exact_mut(3) {
            px.copy_from_slice(&[10, 128, 250]);
        }
        let out = resize_lanczos(&img, 32, 64).unwrap();
        assert!(out.data.chunks_exact(3).all(|p| p == [10, 128, 250]));
    }

    #[test]
    fn bad_buffers_are_errors() {
        let img = RgbImage { width: 4, height: 4, data: vec![0; 10] };
        assert!(matches!(resize_lanczos(&img, 2, 2), Err(EngineError::ImageBuffer { .. })));
        let mut pre = Preprocessor::new(2, 2, [0.0; 3], [1.0; 3]).unwrap();
        let ok = RgbImage::new(4, 4);
        assert!(pre.run(&ok, &mut [0.0; 5]).is_err());
        assert!(pre.run(&ok, &mut [0.0; 12]).is_ok());
    }
}
