//! The frame type that flows from sources through the pipeline: packed RGB pixels plus the
//! optional ground truth (metric depth, camera-to-world pose) and intrinsics of recorded data.

use crate::camera::Intrinsics;
use nalgebra::Isometry3;

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

    /// The RGB triple at (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// Dense metric depth in metres, row-major; 0 marks an invalid pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthMap {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

impl DepthMap {
    /// An all-invalid depth map of the given size.
    pub fn new(width: u32, height: u32) -> Self {
        Self { width, height, data: vec![0.0; width as usize * height as usize] }
    }

    /// Depth at (x, y) in metres (0 = invalid).
    pub fn at(&self, x: u32, y: u32) -> f32 {
        self.data[y as usize * self.width as usize + x as usize]
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
