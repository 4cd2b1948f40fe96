//! 16-bit depth PNGs in the KITTI convention: value = round(depth · 256) (1/256 m steps, up to
//! 255.99 m), 0 = invalid.

use super::{SinkError, write_atomic};
use crate::frame::DepthMap;
use image::ImageEncoder;
use std::path::Path;

/// Depth units per metre in the KITTI convention.
pub const KITTI_DEPTH_SCALE: f32 = 256.0;

/// The KITTI 16-bit code of a depth in metres: 0 for invalid (0, negative, NaN, infinite);
/// otherwise round(depth · 256) clamped to 1..=65535, so a valid depth never reads as invalid.
pub fn depth_to_kitti_u16(depth: f32) -> u16 {
    if depth.is_finite() && depth > 0.0 {
        (depth * KITTI_DEPTH_SCALE).round().clamp(1.0, f32::from(u16::MAX)) as u16
    } else {
        0
    }
}

/// The depth in metres of a KITTI 16-bit code (0 stays invalid).
pub fn kitti_u16_to_depth(code: u16) -> f32 {
    f32::from(code) / KITTI_DEPTH_SCALE
}

/// Write `depth` as a 16-bit grayscale PNG (KITTI convention), atomically.
pub fn write_depth_png(path: &Path, depth: &DepthMap) -> Result<(), SinkError> {
    let expected = depth.width as usize * depth.height as usize;
    if depth.width == 0 || depth.height == 0 || depth.data.len() != expected {
        return Err(SinkError::invalid(
            path,
            "depth map",
            format!(
                "{}x{} needs {expected} values, got {}",
                depth.width,
                depth.height,
                depth.data.len()
            ),
        ));
    }
    let bytes: Vec<u8> =
        depth.data.iter().flat_map(|&d| depth_to_kitti_u16(d).to_ne_bytes()).collect();
    write_atomic(path, |w| {
        image::codecs::png::PngEncoder::new(w)
            .write_image(&bytes, depth.width, depth.height, image::ExtendedColorType::L16)
            .map_err(|source| SinkError::Image { path: path.to_path_buf(), source })
    })
}

/// Read a 16-bit grayscale KITTI depth PNG back into metres.
pub fn read_depth_png(path: &Path) -> Result<DepthMap, SinkError> {
    let file = std::fs::File::open(path).map_err(|e| SinkError::io(path, e))?;
    let image = image::load(std::io::BufReader::new(file), image::ImageFormat::Png)
        .map_err(|source| SinkError::Image { path: path.to_path_buf(), source })?;
    let image::DynamicImage::ImageLuma16(gray) = image else {
        return Err(SinkError::Format {
            path: path.to_path_buf(),
            reason: format!("expected a 16-bit grayscale depth PNG, found {:?}", image.color()),
        });
    };
    let (width, height) = gray.dimensions();
    let data = gray.into_raw().into_iter().map(kitti_u16_to_depth).collect();
    Ok(DepthMap::from_data(width, height, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kitti_codes() {
        assert_eq!(depth_to_kitti_u16(0.0), 0);
        assert_eq!(depth_to_kitti_u16(-1.0), 0);
        assert_eq!(depth_to_kitti_u16(f32::NAN), 0);
        assert_eq!(depth_to_kitti_u16(f32::INFINITY), 0);
        assert_eq!(depth_to_kitti_u16(1e-6), 1);
        assert_eq!(depth_to_kitti_u16(1.0), 256);
        assert_eq!(depth_to_kitti_u16(1000.0), u16::MAX);
        assert_eq!(kitti_u16_to_depth(512), 2.0);
    }
}
