//! CPU twin of kernels/preprocess.cu: a packed RGB / RGBA / NV12 frame with row pitch ->
//! normalised planar float 3 x H x W at the network size, bilinear or area resize, one pass.

use super::common::linear_coord;
use crate::cuda::CudaError;
use crate::cuda::frame_format::{Normalization, PackedFrame, PixelFormat, Resize};

/// BT.601 limited-range YUV -> RGB (0..255), as `ld_nv12_rgb`.
#[inline]
pub fn nv12_to_rgb(y: u8, u: u8, v: u8) -> [f32; 3] {
    let yy = 1.164f32 * (y as f32 - 16.0);
    let u = u as f32 - 128.0;
    let v = v as f32 - 128.0;
    [
        (yy + 1.596 * v).clamp(0.0, 255.0),
        (yy - 0.392 * u - 0.813 * v).clamp(0.0, 255.0),
        (yy + 2.017 * u).clamp(0.0, 255.0),
    ]
}

#[inline]
fn fetch(frame: &PackedFrame, uv_offset: usize, x: usize, y: usize) -> [f32; 3] {
    match frame.format {
        PixelFormat::Nv12 { uv_pitch } => {
            let luma = frame.data[y * frame.pitch + x];
            let uv = uv_offset + (y >> 1) * uv_pitch + (x & !1);
            nv12_to_rgb(luma, frame.data[uv], frame.data[uv + 1])
        }
        PixelFormat::Rgb | PixelFormat::Rgba => {
            let bpp = if frame.format == PixelFormat::Rgb { 3 } else { 4 };
            let p = y * frame.pitch + x * bpp;
            [frame.data[p] as f32, frame.data[p + 1] as f32, frame.data[p + 2] as f32]
        }
    }
}

/// Area footprint [first, last] of output o (`ld_area_range`).
#[inline]
pub fn area_range(o: usize, r: f32, in_size: usize) -> (usize, usize) {
    let b = o as f32 * r;
    let e = (o + 1) as f32 * r;
    let f = (b.floor() as i64).max(0);
    let l = ((e.ceil() as i64) - 1).min(in_size as i64 - 1).max(f);
    (f as usize, l as usize)
}

/// Overlap of input cell i with the footprint of output o (`ld_area_weight`).
#[inline]
pub fn area_weight(i: usize, o: usize, r: f32) -> f32 {
    let b = o as f32 * r;
    let e = (o + 1) as f32 * r;
    ((i as f32 + 1.0).min(e) - (i as f32).max(b)).max(0.0)
}

/// Twin of `ld_preprocess`: writes 3 x dst_h x dst_w floats into `dst`.
pub fn preprocess(
    frame: &PackedFrame,
    dst_w: usize,
    dst_h: usize,
    resize: Resize,
    norm: &Normalization,
    dst: &mut [f32],
) -> Result<(), CudaError> {
    let uv_offset = frame.validate()?;
    let inv_std = norm.inv_std()?;
    if dst_w == 0 || dst_h == 0 || dst.len() != 3 * dst_w * dst_h {
        return Err(CudaError::invalid(
            "preprocess output",
            format!("{} floats for 3 x {dst_h} x {dst_w}", dst.len()),
        ));
    }
    let rx = frame.width as f32 / dst_w as f32;
    let ry = frame.height as f32 / dst_h as f32;
    let plane = dst_w * dst_h;
    for y in 0..dst_h {
        for x in 0..dst_w {
            let mut acc = [0.0f32; 3];
            match resize {
                Resize::Bilinear => {
                    let (x0, x1, lx) = linear_coord(x as i32, rx, frame.width as i32);
                    let (y0, y1, ly) = linear_coord(y as i32, ry, frame.height as i32);
                    let w = [(1.0 - lx) * (1.0 - ly), lx * (1.0 - ly), (1.0 - lx) * ly, lx * ly];
                    let xs = [x0, x1, x0, x1];
                    let ys = [y0, y0, y1, y1];
                    for k in 0..4 {
                        let rgb = fetch(frame, uv_offset, xs[k] as usize, ys[k] as usize);
                        for c in 0..3 {
                            acc[c] += w[k] * rgb[c];
                        }
                    }
                }
                Resize::Area => {
                    let (fx0, fx1) = area_range(x, rx, frame.width);
                    let (fy0, fy1) = area_range(y, ry, frame.height);
                    let mut wsum = 0.0f32;
                    for sy in fy0..=fy1 {
                        let wy = area_weight(sy, y, ry);
                        for sx in fx0..=fx1 {
                            let wgt = wy * area_weight(sx, x, rx);
                            let rgb = fetch(frame, uv_offset, sx, sy);
                            for c in 0..3 {
                                acc[c] += wgt * rgb[c];
                            }
                            wsum += wgt;
                        }
                    }
                    let inv = if wsum > 0.0 { 1.0 / wsum } else { 0.0 };
                    for a in &mut acc {
                        *a *= inv;
                    }
                }
            }
            for c in 0..3 {
                dst[c * plane + y * dst_w + x] =
                    (acc[c] * (1.0 / 255.0) - norm.mean[c]) * inv_std[c];
            }
        }
    }
    Ok(())
}
