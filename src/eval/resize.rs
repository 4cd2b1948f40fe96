//! Bilinear resizing of depth maps with half-pixel centres (the sampling of OpenCV's
//! `cv2.resize(..., interpolation=INTER_LINEAR)`), used to bring a prediction at network
//! resolution to the ground-truth size. The sampling itself is [`crate::frame::resize_bilinear`],
//! shared with disparities.

use crate::frame::{DepthMap, resize_bilinear};

/// `depth` resized to `width` x `height` by bilinear interpolation with half-pixel centres
/// (edges clamped), exactly as OpenCV's INTER_LINEAR samples. Returns an empty map when
/// `depth` or the target is empty.
pub fn bilinear_resize_depth(depth: &DepthMap, width: u32, height: u32) -> DepthMap {
    let mut out = DepthMap::new(width, height);
    resize_bilinear(&depth.data, (depth.width, depth.height), &mut out.data, (width, height));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upscaling_two_pixels_matches_opencv() {
        // cv2.resize(np.array([[1, 3]], np.float32), (4, 1)) == [[1, 1.5, 2.5, 3]]
        let src = DepthMap { width: 2, height: 1, data: vec![1.0, 3.0] };
        let out = bilinear_resize_depth(&src, 4, 1);
        assert_eq!(out.data, vec![1.0, 1.5, 2.5, 3.0]);
    }

    #[test]
    fn downscaling_by_two_averages_pairs() {
        let src =
            DepthMap { width: 4, height: 2, data: vec![1.0, 3.0, 5.0, 7.0, 1.0, 3.0, 5.0, 7.0] };
        let out = bilinear_resize_depth(&src, 2, 1);
        assert_eq!(out.data, vec![2.0, 6.0]);
    }
}
