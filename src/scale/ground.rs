//! The `ground` scale source: a camera at a known height above a road. The lower part of each
//! depth map is back-projected with the intrinsics, a plane is fitted to it robustly (RANSAC
//! over 3-point samples, then least squares on the inliers), and the plane's distance from the
//! camera centre is the camera height in the network's units; `scale = known height / fitted
//! height`.
//!
//! A fit counts only when the plane is roughly horizontal (its normal within
//! [`MAX_TILT_DEG`] of the camera's down axis, y down in the camera frame), lies below the
//! camera, and holds at least [`MIN_INLIER_FRACTION`] of the sampled points. The scale served is
//! the median of the last [`HISTORY`] accepted fits, so one bad frame (a car filling the lower
//! image, a speed bump) neither moves it nor leaves a gap; before the first accepted fit there
//! is no scale.

use super::{ScaleEstimate, ScaleFallback};
use crate::camera::Intrinsics;
use crate::frame::DepthMap;
use nalgebra::{Matrix3, Vector3};
use std::collections::VecDeque;

/// Largest angle between the fitted normal and the camera's down axis, degrees.
pub const MAX_TILT_DEG: f64 = 25.0;
/// Smallest share of the sampled points that must lie on the plane.
pub const MIN_INLIER_FRACTION: f64 = 0.25;
/// Accepted fits the served scale is the median of.
pub const HISTORY: usize = 9;
/// Inlier band: this fraction of the candidate plane's height.
const INLIER_BAND: f64 = 0.05;
const RANSAC_ITERATIONS: usize = 200;
/// The image region searched for the ground: rows from this fraction of the height down.
const FIRST_ROW: f64 = 0.55;
/// Columns from this fraction of the width to one minus it.
const SIDE_MARGIN: f64 = 0.15;

/// A plane fitted to the ground.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroundPlane {
    /// Distance of the camera centre from the plane, in the depth map's units.
    pub height: f64,
    /// Unit normal pointing down (positive y in the camera frame).
    pub normal: [f64; 3],
    /// Share of the sampled points within the inlier band.
    pub inlier_fraction: f64,
    pub inliers: usize,
}

/// Back-projected points of the ground region (every second pixel), in the depth map's units.
fn ground_region_points(depth: &DepthMap, k: &Intrinsics) -> Vec<Vector3<f64>> {
    let (w, h) = (depth.width as usize, depth.height as usize);
    let k = if (k.width, k.height) == (depth.width, depth.height) {
        *k
    } else {
        k.scaled(depth.width, depth.height)
    };
    let (u0, u1) = ((SIDE_MARGIN * w as f64) as usize, ((1.0 - SIDE_MARGIN) * w as f64) as usize);
    let mut points = Vec::new();
    for v in ((FIRST_ROW * h as f64) as usize..h).step_by(2) {
        for u in (u0..u1).step_by(2) {
            let z = f64::from(depth.data[v * w + u]);
            if z.is_finite() && z > 0.0 {
                points.push(Vector3::new(
                    (u as f64 - k.cx) / k.fx * z,
                    (v as f64 - k.cy) / k.fy * z,
                    z,
                ));
            }
        }
    }
    points
}

/// A plane through three points as (unit normal pointing down, height), if it is a candidate
/// ground: not degenerate, tilted at most [`MAX_TILT_DEG`], below the camera.
fn candidate(a: &Vector3<f64>, b: &Vector3<f64>, c: &Vector3<f64>) -> Option<(Vector3<f64>, f64)> {
    let n = (b - a).cross(&(c - a));
    let norm = n.norm();
    if norm < 1e-12 {
        return None;
    }
    let n = if n.y < 0.0 { -n / norm } else { n / norm };
    let height = n.dot(a);
    (n.y >= MAX_TILT_DEG.to_radians().cos() && height > 0.0).then_some((n, height))
}

/// Fits the ground plane of `depth` (intrinsics `k`, any size: rescaled), deterministically
/// for a given `seed`. None when no plane passes the checks.
pub fn fit_ground_plane(depth: &DepthMap, k: &Intrinsics, seed: u64) -> Option<GroundPlane> {
    let points = ground_region_points(depth, k);
    if points.len() < 50 {
        return None;
    }
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let count_inliers = |n: &Vector3<f64>, height: f64| {
        points.iter().filter(|p| (n.dot(p) - height).abs() < INLIER_BAND * height).count()
    };
    let mut best: Option<(Vector3<f64>, f64, usize)> = None;
    for _ in 0..RANSAC_ITERATIONS {
        let (a, b, c) = (next(points.len()), next(points.len()), next(points.len()));
        let Some((n, height)) = candidate(&points[a], &points[b], &points[c]) else { continue };
        let inliers = count_inliers(&n, height);
        if best.is_none_or(|(_, _, most)| inliers > most) {
            best = Some((n, height, inliers));
        }
    }
    let (n, height, _) = best?;
    // Least squares on the inliers: the plane through their centroid normal to the direction of
    // least spread.
    let inliers: Vec<&Vector3<f64>> =
        points.iter().filter(|p| (n.dot(p) - height).abs() < INLIER_BAND * height).collect();
    let centroid = inliers.iter().fold(Vector3::zeros(), |acc, p| acc + *p) / inliers.len() as f64;
    let covariance = inliers.iter().fold(Matrix3::zeros(), |acc, p| {
        let d = *p - centroid;
        acc + d * d.transpose()
    });
    let eigen = covariance.symmetric_eigen();
    let smallest = eigen.eigenvalues.imin();
    let mut normal: Vector3<f64> = eigen.eigenvectors.column(smallest).into_owned();
    if normal.y < 0.0 {
        normal = -normal;
    }
    let height = normal.dot(&centroid);
    let inliers = count_inliers(&normal, height);
    let inlier_fraction = inliers as f64 / points.len() as f64;
    let tilt_ok = normal.y >= MAX_TILT_DEG.to_radians().cos();
    (tilt_ok && height > 0.0 && inlier_fraction >= MIN_INLIER_FRACTION).then_some(GroundPlane {
        height,
        normal: [normal.x, normal.y, normal.z],
        inlier_fraction,
        inliers,
    })
}

/// The ground scale source over a sequence.
#[derive(Clone, Debug)]
pub struct GroundScale {
    camera_height: f64,
    history: VecDeque<f64>,
    frames: u64,
}

impl GroundScale {
    /// A source for a camera `camera_height` metres above the ground.
    pub fn new(camera_height: f64) -> Self {
        Self { camera_height, history: VecDeque::with_capacity(HISTORY), frames: 0 }
    }

    /// The scale for the next frame of the sequence (depth in the network's units).
    pub fn update(&mut self, depth: &DepthMap, k: &Intrinsics) -> ScaleEstimate {
        self.frames += 1;
        let fit = fit_ground_plane(depth, k, self.frames);
        let confidence = fit.map_or(0.0, |f| f.inlier_fraction);
        if let Some(fit) = fit {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(self.camera_height / fit.height);
        }
        let mut sorted: Vec<f64> = self.history.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        match (sorted.get(sorted.len() / 2), fit) {
            (Some(&scale), Some(_)) => ScaleEstimate { scale, confidence, fallback: None },
            (Some(&scale), None) => {
                ScaleEstimate { scale, confidence, fallback: Some(ScaleFallback::Previous) }
            }
            (None, _) => {
                ScaleEstimate { scale: 1.0, confidence, fallback: Some(ScaleFallback::None) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat floor `height` below a level camera, with a wall at `wall` in the upper rows.
    fn floor(height: f64, wall: f32) -> (DepthMap, Intrinsics) {
        let (w, h) = (160u32, 96u32);
        let k = Intrinsics {
            fx: 100.0,
            fy: 100.0,
            cx: 79.5,
            cy: 47.5,
            width: w,
            height: h,
            distortion: None,
        };
        let mut data = vec![wall; (w * h) as usize];
        for v in 0..h as usize {
            let ray_y = (v as f64 - k.cy) / k.fy;
            if ray_y > 0.01 {
                let z = (height / ray_y).min(f64::from(wall)) as f32;
                for u in 0..w as usize {
                    data[v * w as usize + u] = z;
                }
            }
        }
        (DepthMap::from_data(w, h, data), k)
    }

    #[test]
    fn a_flat_floor_gives_its_height_and_the_scale_to_metres() {
        let (depth, k) = floor(0.1, 5.0);
        let fit = fit_ground_plane(&depth, &k, 1).unwrap();
        assert!((fit.height - 0.1).abs() < 1e-3, "{fit:?}");
        assert!(fit.normal[1] > 0.999);
        let mut source = GroundScale::new(1.65);
        let estimate = source.update(&depth, &k);
        assert!((estimate.scale - 16.5).abs() < 0.1, "{estimate:?}");
        assert_eq!(estimate.fallback, None);
    }

    #[test]
    fn no_ground_in_view_falls_back_to_the_last_scale_then_to_none() {
        let (wall, k) = (DepthMap::from_data(160, 96, vec![3.0; 160 * 96]), floor(0.1, 5.0).1);
        let mut source = GroundScale::new(1.65);
        let first = source.update(&wall, &k);
        assert_eq!(first.fallback, Some(ScaleFallback::None));
        let (depth, _) = floor(0.1, 5.0);
        source.update(&depth, &k);
        let after = source.update(&wall, &k);
        assert_eq!(after.fallback, Some(ScaleFallback::Previous));
        assert!((after.scale - 16.5).abs() < 0.1);
    }
}
