//! The frame type that flows from sources through the pipeline: packed RGB pixels plus the
//! optional ground truth (metric depth, camera-to-world pose) and intrinsics of recorded data;
//! the one single-channel float image type ([`FloatImage`]: [`DepthMap`] and [`Disparity`]) and
//! its bilinear resize.

use crate::camera::Intrinsics;
use nalgebra::Isometry3;
use std::marker::PhantomData;

/// Packed 8-bit RGB image, row-major, `width * height * 3` bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A black image of the given size.
    pub fn new(width: u32, height: u32) -> Self {
        Self { width, height, data: vec![0; width as usize * height as usize * 3] }
    }

    /// Makes this image `width` x `height`, keeping its allocation where it is large enough;
    /// the pixels' values are unspecified (new ones are black).
    pub fn reshape(&mut self, width: u32, height: u32) {
        (self.width, self.height) = (width, height);
        self.data.resize(width as usize * height as usize * 3, 0);
    }

    /// Makes this image a copy of `source`, keeping its allocation where it is large enough.
    pub fn copy_from(&mut self, source: &RgbImage) {
        (self.width, self.height) = (source.width, source.height);
        self.data.clear();
        self.data.extend_from_slice(&source.data);
    }

    /// The RGB triple at (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// A dense single-channel float image, row-major: `width * height` values. The marker `K` says
/// what the values are, so that a depth map and a disparity map share one type and its code
/// (construction, access, the bilinear resize) yet cannot be mixed up: [`DepthMap`] and
/// [`Disparity`].
#[derive(Clone, Debug, PartialEq)]
pub struct FloatImage<K> {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
    kind: PhantomData<K>,
}

/// The values of a [`DepthMap`]: metres, with 0 marking an invalid pixel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metres;

/// The values of a [`Disparity`]: a depth network's sigmoid output in \[0, 1\].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SigmoidDisparity;

/// Dense metric depth in metres, row-major; 0 marks an invalid pixel.
pub type DepthMap = FloatImage<Metres>;

/// A dense disparity map (network sigmoid output in \[0, 1\]), row-major; see
/// `crate::engine::disparity_to_depth` for depth.
pub type Disparity = FloatImage<SigmoidDisparity>;

impl<K> FloatImage<K> {
    /// An all-zero image of the given size (for a depth map: every pixel invalid).
    pub fn new(width: u32, height: u32) -> Self {
        Self::from_data(width, height, vec![0.0; width as usize * height as usize])
    }

    /// The image of `data` (row-major, `width * height` values; the caller checks the length
    /// where it comes from outside).
    pub fn from_data(width: u32, height: u32, data: Vec<f32>) -> Self {
        Self { width, height, data, kind: PhantomData }
    }

    /// Makes this image `width` x `height`, keeping its allocation where it is large enough;
    /// the values are unspecified (new ones are 0).
    pub fn reshape(&mut self, width: u32, height: u32) {
        (self.width, self.height) = (width, height);
        self.data.resize(width as usize * height as usize, 0.0);
    }

    /// The value at (x, y).
    pub fn at(&self, x: u32, y: u32) -> f32 {
        self.data[y as usize * self.width as usize + x as usize]
    }

    /// Bilinear resize with half-pixel centres ([`resize_bilinear`]: OpenCV's INTER_LINEAR,
    /// PyTorch's `align_corners=False` when upsampling), e.g. to the ground-truth size.
    pub fn resized_bilinear(&self, width: u32, height: u32) -> Self {
        let mut out = Self::new(width, height);
        resize_bilinear(&self.data, (self.width, self.height), &mut out.data, (width, height));
        out
    }
}

/// One timestamped frame from a [`crate::source::Source`].
#[derive(Clone, Debug)]
pub struct Frame {
    /// Position in the stream, from 0.
    pub index: u64,
    /// Seconds (stream time for live sources, dataset timestamp for recordings).
    pub timestamp: f64,
    pub rgb: RgbImage,
    /// Ground-truth depth in metres where the source has it.
    pub gt_depth: Option<DepthMap>,
    /// Ground-truth camera-to-world pose where the source has it.
    pub gt_pose: Option<Isometry3<f64>>,
    /// Intrinsics of `rgb` where known.
    pub intrinsics: Option<Intrinsics>,
}

impl Frame {
    /// A frame with pixels only.
    pub fn from_rgb(index: u64, timestamp: f64, rgb: RgbImage) -> Self {
        Self { index, timestamp, rgb, gt_depth: None, gt_pose: None, intrinsics: None }
    }
}

/// Source index pairs and weights of one output coordinate axis.
struct AxisTaps {
    lo: Vec<usize>,
    hi: Vec<usize>,
    weight_hi: Vec<f32>,
}

fn axis_taps(src: u32, dst: u32) -> AxisTaps {
    let scale = src as f64 / dst as f64;
    let last = src as usize - 1;
    let mut taps = AxisTaps {
        lo: Vec::with_capacity(dst as usize),
        hi: Vec::with_capacity(dst as usize),
        weight_hi: Vec::with_capacity(dst as usize),
    };
    for d in 0..dst {
        let pos = (d as f64 + 0.5) * scale - 0.5;
        let floor = pos.floor();
        let (lo, w) = if floor < 0.0 {
            (0, 0.0)
        } else if floor as usize >= last {
            (last, 0.0)
        } else {
            (floor as usize, pos - floor)
        };
        taps.lo.push(lo);
        taps.hi.push((lo + 1).min(last));
        taps.weight_hi.push(w as f32);
    }
    taps
}

/// Resizes the single-channel `src` of `(width, height)` into `out` of `(width, height)` by
/// bilinear interpolation with half-pixel centres and clamped edges (OpenCV's INTER_LINEAR
/// sampling). Leaves `out` as it is when either size is empty or a buffer does not match its
/// size.
pub fn resize_bilinear(src: &[f32], (sw, sh): (u32, u32), out: &mut [f32], (dw, dh): (u32, u32)) {
    let (src_w, dst_w) = (sw as usize, dw as usize);
    if sw == 0
        || sh == 0
        || dw == 0
        || dh == 0
        || src.len() != src_w * sh as usize
        || out.len() != dst_w * dh as usize
    {
        return;
    }
    if (sw, sh) == (dw, dh) {
        out.copy_from_slice(src);
        return;
    }
    let xs = axis_taps(sw, dw);
    let ys = axis_taps(sh, dh);
    for (y, row) in out.chunks_exact_mut(dst_w).enumerate() {
        let top = &src[ys.lo[y] * src_w..][..src_w];
        let bottom = &src[ys.hi[y] * src_w..][..src_w];
        let wy = ys.weight_hi[y];
        for (x, value) in row.iter_mut().enumerate() {
            let (x0, x1, wx) = (xs.lo[x], xs.hi[x], xs.weight_hi[x]);
            let t = top[x0] + (top[x1] - top[x0]) * wx;
            let b = bottom[x0] + (bottom[x1] - bottom[x0]) * wx;
            *value = t + (b - t) * wy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upscaling_two_pixels_matches_opencv() {
        // cv2.resize(np.array([[1, 3]], np.float32), (4, 1)) == [[1, 1.5, 2.5, 3]]
        let src = DepthMap::from_data(2, 1, vec![1.0, 3.0]);
        assert_eq!(src.resized_bilinear(4, 1).data, vec![1.0, 1.5, 2.5, 3.0]);
    }

    #[test]
    fn downscaling_by_two_averages_pairs() {
        let src = DepthMap::from_data(4, 2, vec![1.0, 3.0, 5.0, 7.0, 1.0, 3.0, 5.0, 7.0]);
        assert_eq!(src.resized_bilinear(2, 1).data, vec![2.0, 6.0]);
    }
}
