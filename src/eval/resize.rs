//! Bilinear resizing of depth maps with half-pixel centres (the sampling of OpenCV's
//! `cv2.resize(..., interpolation=INTER_LINEAR)`), used to bring a prediction at network
//! resolution to the ground-truth size.

use crate::frame::DepthMap;

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

/// `depth` resized to `width` x `height` by bilinear interpolation with half-pixel centres
/// (edges clamped), exactly as OpenCV's INTER_LINEAR samples. Returns an empty map when
/// `depth` or the target is empty.
pub fn bilinear_resize_depth(depth: &DepthMap, width: u32, height: u32) -> DepthMap {
    let mut out = DepthMap::new(width, height);
    if depth.width == 0
        || depth.height == 0
        || width == 0
        || height == 0
        || depth.data.len() != depth.width as usize * depth.height as usize
    {
        return out;
    }
    if (depth.width, depth.height) == (width, height) {
        out.data.copy_from_slice(&depth.data);
        return out;
    }
    let xs = axis_taps(depth.width, width);
    let ys = axis_taps(depth.height, height);
    let src_w = depth.width as usize;
    for (y, row) in out.data.chunks_exact_mut(width as usize).enumerate() {
        let top = &depth.data[ys.lo[y] * src_w..][..src_w];
        let bottom = &depth.data[ys.hi[y] * src_w..][..src_w];
        let wy = ys.weight_hi[y];
        for (x, value) in row.iter_mut().enumerate() {
            let (x0, x1, wx) = (xs.lo[x], xs.hi[x], xs.weight_hi[x]);
            let t = top[x0] + (top[x1] - top[x0]) * wx;
            let b = bottom[x0] + (bottom[x1] - bottom[x0]) * wx;
            *value = t + (b - t) * wy;
        }
    }
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
