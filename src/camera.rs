//! Pinhole camera intrinsics with optional radial-tangential distortion: scaling to another
//! image size, projection and back-projection through the lens model, and undistortion of
//! images and depth maps ([`UndistortMap`]).

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

impl Distortion {
    /// Whether all coefficients are zero (the model is then the identity).
    pub fn is_zero(&self) -> bool {
        self.k1 == 0.0 && self.k2 == 0.0 && self.p1 == 0.0 && self.p2 == 0.0 && self.k3 == 0.0
    }

    /// Applies the radial-tangential model to an ideal normalised image point (x/z, y/z),
    /// giving the distorted normalised point.
    pub fn distort(&self, x: f64, y: f64) -> (f64, f64) {
        let r2 = x * x + y * y;
        let radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3));
        let xd = x * radial + 2.0 * self.p1 * x * y + self.p2 * (r2 + 2.0 * x * x);
        let yd = y * radial + self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * x * y;
        (xd, yd)
    }

    /// Inverts [`Distortion::distort`] by fixed-point iteration (converges for the moderate
    /// distortion of real lenses inside the image).
    pub fn undistort(&self, xd: f64, yd: f64) -> (f64, f64) {
        let (mut x, mut y) = (xd, yd);
        for _ in 0..20 {
            let (dx, dy) = self.distort(x, y);
            let (ex, ey) = (dx - xd, dy - yd);
            x -= ex;
            y -= ey;
            if ex.abs() < 1e-12 && ey.abs() < 1e-12 {
                break;
            }
        }
        (x, y)
    }
}

impl Intrinsics {
    /// The viewing ray through pixel (u, v) (pixel centres at integer coordinates), as a point
    /// with z = 1, undoing the lens distortion where there is one.
    pub fn unproject(&self, u: f64, v: f64) -> nalgebra::Vector3<f64> {
        let xd = (u - self.cx) / self.fx;
        let yd = (v - self.cy) / self.fy;
        let (x, y) = match &self.distortion {
            Some(d) if !d.is_zero() => d.undistort(xd, yd),
            _ => (xd, yd),
        };
        nalgebra::Vector3::new(x, y, 1.0)
    }

    /// The pixel (u, v) where the camera-frame point `p` is imaged, applying the lens
    /// distortion where there is one; `None` for points at or behind the camera.
    pub fn project(&self, p: &nalgebra::Vector3<f64>) -> Option<(f64, f64)> {
        if p.z <= 1e-9 {
            return None;
        }
        let (x, y) = (p.x / p.z, p.y / p.z);
        let (xd, yd) = match &self.distortion {
            Some(d) if !d.is_zero() => d.distort(x, y),
            _ => (x, y),
        };
        Some((self.fx * xd + self.cx, self.fy * yd + self.cy))
    }
}

/// A precomputed remapping from a distorted image to the undistorted pinhole image with the
/// same K and size: for every output pixel, the source position in the distorted image.
/// Build it once per camera and reuse it for every frame.
#[derive(Clone, Debug)]
pub struct UndistortMap {
    width: u32,
    height: u32,
    /// Interleaved (x, y) source coordinates, one pair per output pixel, row-major.
    source_xy: Vec<f32>,
}

impl UndistortMap {
    /// The map for `intrinsics` (identity where it has no distortion).
    pub fn new(intrinsics: &Intrinsics) -> Self {
        let (width, height) = (intrinsics.width, intrinsics.height);
        let mut source_xy = Vec::with_capacity(width as usize * height as usize * 2);
        let pinhole = Intrinsics { distortion: None, ..*intrinsics };
        for v in 0..height {
            for u in 0..width {
                let ray = pinhole.unproject(u as f64, v as f64);
                let (su, sv) = intrinsics.project(&ray).unwrap_or((-1.0, -1.0));
                source_xy.push(su as f32);
                source_xy.push(sv as f32);
            }
        }
        Self { width, height, source_xy }
    }

    /// The image size the map was built for.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Remaps an RGB image bilinearly; pixels whose source falls outside the image are black.
    /// Returns `None` when `image` is not of the map's size.
    pub fn remap_rgb(&self, image: &crate::frame::RgbImage) -> Option<crate::frame::RgbImage> {
        if (image.width, image.height) != (self.width, self.height) {
            return None;
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = crate::frame::RgbImage::new(self.width, self.height);
        for (dst, xy) in out.data.chunks_exact_mut(3).zip(self.source_xy.chunks_exact(2)) {
            let (sx, sy) = (xy[0], xy[1]);
            if !(sx >= 0.0 && sy >= 0.0 && sx <= (w - 1) as f32 && sy <= (h - 1) as f32) {
                continue;
            }
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (ax, ay) = (sx - x0 as f32, sy - y0 as f32);
            for (c, d) in dst.iter_mut().enumerate() {
                let p = |x: usize, y: usize| image.data[(y * w + x) * 3 + c] as f32;
                let top = p(x0, y0) * (1.0 - ax) + p(x1, y0) * ax;
                let bottom = p(x0, y1) * (1.0 - ax) + p(x1, y1) * ax;
                *d = (top * (1.0 - ay) + bottom * ay).round().clamp(0.0, 255.0) as u8;
            }
        }
        Some(out)
    }

    /// Remaps a depth map by nearest neighbour (depth is never blended across edges); pixels
    /// whose source falls outside are invalid (0). Returns `None` on a size mismatch.
    pub fn remap_depth(&self, depth: &crate::frame::DepthMap) -> Option<crate::frame::DepthMap> {
        if (depth.width, depth.height) != (self.width, self.height) {
            return None;
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = crate::frame::DepthMap::new(self.width, self.height);
        for (dst, xy) in out.data.iter_mut().zip(self.source_xy.chunks_exact(2)) {
            let (sx, sy) = (xy[0].round(), xy[1].round());
            if sx >= 0.0 && sy >= 0.0 && (sx as usize) < w && (sy as usize) < h {
                *dst = depth.data[sy as usize * w + sx as usize];
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{DepthMap, RgbImage};

    fn tum() -> Intrinsics {
        crate::source::dataset::freiburg1_intrinsics()
    }

    #[test]
    fn unproject_inverts_project_through_the_distortion() {
        let k = tum();
        for (u, v) in [(0.0, 0.0), (639.0, 479.0), (320.0, 240.0), (100.0, 400.0)] {
            let ray = k.unproject(u, v);
            let (pu, pv) = k.project(&(ray * 2.5)).unwrap();
            assert!((pu - u).abs() < 1e-6 && (pv - v).abs() < 1e-6, "({u}, {v}) -> ({pu}, {pv})");
        }
        // The corner moves visibly under this distortion.
        let pinhole = Intrinsics { distortion: None, ..k };
        assert!((pinhole.unproject(0.0, 0.0) - k.unproject(0.0, 0.0)).norm() > 0.01);
        assert!(k.project(&nalgebra::Vector3::new(0.0, 0.0, -1.0)).is_none());
    }

    #[test]
    fn undistort_map_is_the_identity_without_distortion() {
        let k = Intrinsics { distortion: None, width: 8, height: 4, ..tum() }.scaled(8, 4);
        let map = UndistortMap::new(&k);
        let mut rgb = RgbImage::new(8, 4);
        rgb.data.iter_mut().enumerate().for_each(|(i, v)| *v = (i * 7 % 251) as u8);
        assert_eq!(map.remap_rgb(&rgb).unwrap(), rgb);
        let depth = DepthMap::from_data(8, 4, (0..32).map(|i| i as f32).collect());
        assert_eq!(map.remap_depth(&depth).unwrap(), depth);
        assert!(map.remap_rgb(&RgbImage::new(4, 4)).is_none(), "size mismatch");
    }

    #[test]
    fn undistort_map_samples_where_the_lens_images_each_ray() {
        let k = tum();
        let map = UndistortMap::new(&k);
        // A depth map whose value encodes its pixel: after remapping, output pixel (u, v) holds
        // the source pixel nearest to project(unproject_pinhole(u, v)).
        let depth = DepthMap::from_data(640, 480, (0..640 * 480).map(|i| i as f32 + 1.0).collect());
        let out = map.remap_depth(&depth).unwrap();
        let pinhole = Intrinsics { distortion: None, ..k };
        let (su, sv) = k.project(&pinhole.unproject(600.0, 50.0)).unwrap();
        let expected = (sv.round() * 640.0 + su.round()) as f32 + 1.0;
        assert_eq!(out.at(600, 50), expected);
        assert_eq!(out.at(319, 255), depth.at(319, 255), "near the principal point: unmoved");
    }
}
