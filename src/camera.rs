//! Pinhole camera intrinsics with optional radial-tangential distortion, and their scaling
//! to another image size.

use nalgebra::Matrix3;
use serde::{Deserialize, Serialize};

/// Radial-tangential (Brown-Conrady) distortion coefficients, OpenCV order.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distortion {
    pub k1: f64,
    pub k2: f64,
    pub p1: f64,
    pub p2: f64,
    pub k3: f64,
}

/// Pinhole intrinsics in pixels for an image of `width` x `height`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intrinsics {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    pub width: u32,
    pub height: u32,
    pub distortion: Option<Distortion>,
}

impl Intrinsics {
    /// The 3x3 matrix K.
    pub fn matrix(&self) -> Matrix3<f64> {
        Matrix3::new(self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0)
    }

    /// These intrinsics for the same camera resampled to `width` x `height` (the whole image
    /// stretched, as the networks' resize does).
    pub fn scaled(&self, width: u32, height: u32) -> Self {
        let sx = width as f64 / self.width as f64;
        let sy = height as f64 / self.height as f64;
        Self {
            fx: self.fx * sx,
            fy: self.fy * sy,
            cx: self.cx * sx,
            cy: self.cy * sy,
            width,
            height,
            distortion: self.distortion,
        }
    }
}
