//! CPU twin of kernels/upsample.cu: bilinear upsampling (align_corners=false) of stacked maps
//! and its exact adjoint.

use super::common::{upsample_adjoint_at, upsample_at};
use crate::cuda::CudaError;

fn check(what: &str, len: usize, w: usize, h: usize, planes: usize) -> Result<(), CudaError> {
    if w == 0 || h == 0 || len != w * h * planes {
        return Err(CudaError::invalid(what, format!("{len} floats for {planes} x {h} x {w}")));
    }
    Ok(())
}

/// `planes` maps of lw x lh -> hw x hh (twin of `ld_upsample_bilinear`).
pub fn upsample_bilinear(
    lo: &[f32],
    (lw, lh): (usize, usize),
    hi: &mut [f32],
    (hw, hh): (usize, usize),
    planes: usize,
) -> Result<(), CudaError> {
    check("upsample input", lo.len(), lw, lh, planes)?;
    check("upsample output", hi.len(), hw, hh, planes)?;
    for p in 0..planes {
        let src = &lo[p * lw * lh..(p + 1) * lw * lh];
        let dst = &mut hi[p * hw * hh..(p + 1) * hw * hh];
        for y in 0..hh {
            for x in 0..hw {
                dst[y * hw + x] = upsample_at(
                    src, lw as i32, lh as i32, hw as i32, hh as i32, x as i32, y as i32,
                );
            }
        }
    }
    Ok(())
}

/// Adjoint: hw x hh gradients -> lw x lh (twin of `ld_upsample_bilinear_adjoint`); adds into
/// `g_lo` when `accumulate`.
pub fn upsample_bilinear_adjoint(
    g_hi: &[f32],
    (hw, hh): (usize, usize),
    g_lo: &mut [f32],
    (lw, lh): (usize, usize),
    planes: usize,
    accumulate: bool,
) -> Result<(), CudaError> {
    check("upsample adjoint input", g_hi.len(), hw, hh, planes)?;
    check("upsample adjoint output", g_lo.len(), lw, lh, planes)?;
    for p in 0..planes {
        let src = &g_hi[p * hw * hh..(p + 1) * hw * hh];
        let dst = &mut g_lo[p * lw * lh..(p + 1) * lw * lh];
        for y in 0..lh {
            for x in 0..lw {
                let v = upsample_adjoint_at(
                    src, hw as i32, hh as i32, lw as i32, lh as i32, x as i32, y as i32,
                );
                let d = &mut dst[y * lw + x];
                *d = if accumulate { *d + v } else { v };
            }
        }
    }
    Ok(())
}
