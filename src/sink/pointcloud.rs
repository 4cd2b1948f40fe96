//! Coloured point clouds as binary little-endian PLY (`x y z` float, `red green blue` uchar),
//! back-projected from a depth map: P = d · K⁻¹ [u, v, 1]ᵀ for every valid pixel (u, v), in
//! the camera frame (x right, y down, z forward, metres). Lens distortion is ignored: pass
//! depth of an undistorted image.

use super::{SinkError, write_atomic};
use crate::camera::Intrinsics;
use crate::frame::{DepthMap, RgbImage};
use std::io::Write;
use std::path::Path;

/// Bytes per vertex: three f32 and three u8.
pub const PLY_VERTEX_BYTES: usize = 15;

fn valid_depth(d: f32) -> bool {
    d.is_finite() && d > 0.0
}

/// Write the valid pixels of `depth` as a PLY point cloud coloured by `rgb` (grey where
/// `None`), atomically. `intrinsics` are rescaled to the depth map's size if they describe
/// another size. Returns the number of points written.
pub fn write_ply(
    path: &Path,
    depth: &DepthMap,
    intrinsics: &Intrinsics,
    rgb: Option<&RgbImage>,
) -> Result<usize, SinkError> {
    let (width, height) = (depth.width as usize, depth.height as usize);
    if depth.data.len() != width * height {
        return Err(SinkError::invalid(
            path,
            "depth map",
            format!("{width}x{height} needs {} values, got {}", width * height, depth.data.len()),
        ));
    }
    if let Some(rgb) = rgb
        && (rgb.width != depth.width
            || rgb.height != depth.height
            || rgb.data.len() != width * height * 3)
    {
        return Err(SinkError::invalid(
            path,
            "colour image",
            format!("{}x{} does not match the {width}x{height} depth map", rgb.width, rgb.height),
        ));
    }
    let k = if intrinsics.width == depth.width && intrinsics.height == depth.height {
        *intrinsics
    } else {
        intrinsics.scaled(depth.width, depth.height)
    };
    let finite = [k.fx, k.fy, k.cx, k.cy].iter().all(|v| v.is_finite());
    if !finite || k.fx == 0.0 || k.fy == 0.0 {
        return Err(SinkError::invalid(
            path,
            "intrinsics",
            format!("fx, fy must be finite and non-zero, cx, cy finite: {k:?}"),
        ));
    }
    let count = depth.data.iter().filter(|&&d| valid_depth(d)).count();
    write_atomic(path, |w| {
        let io = |e| SinkError::io(path, e);
        write!(
            w,
            "ply\nformat binary_little_endian 1.0\ncomment livedepth point cloud, camera frame, metres\n\
             element vertex {count}\nproperty float x\nproperty float y\nproperty float z\n\
             property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        )
        .map_err(io)?;
        let mut vertex = [0u8; PLY_VERTEX_BYTES];
        for (v, row) in depth.data.chunks_exact(width).enumerate() {
            let y_over_z = (v as f64 - k.cy) / k.fy;
            for (u, &d) in row.iter().enumerate() {
                if !valid_depth(d) {
                    continue;
                }
                let z = f64::from(d);
                let x = (u as f64 - k.cx) / k.fx * z;
                vertex[0..4].copy_from_slice(&(x as f32).to_le_bytes());
                vertex[4..8].copy_from_slice(&((y_over_z * z) as f32).to_le_bytes());
                vertex[8..12].copy_from_slice(&d.to_le_bytes());
                let colour = match rgb {
                    Some(rgb) => {
                        let i = (v * width + u) * 3;
                        [rgb.data[i], rgb.data[i + 1], rgb.data[i + 2]]
                    }
                    None => [128; 3],
                };
                vertex[12..15].copy_from_slice(&colour);
                w.write_all(&vertex).map_err(io)?;
            }
        }
        Ok(())
    })?;
    Ok(count)
}
