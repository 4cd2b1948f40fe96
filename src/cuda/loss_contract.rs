//! What the fused-loss kernels (kernels/loss.cu) accept, checked on the host before a launch:
//! their limits on sources and scales ([`MAX_SOURCES`], [`MAX_SCALES`]), the shapes, poses and
//! intrinsics of the [`LossInputs`] ([`validate_for_kernels`]), and the disparity range of the
//! [`LossConfig`] ([`disparity_range`]). Shared by the GPU launcher and the kernels' CPU twin.

use super::CudaError;
use crate::loss::{LossConfig, LossError, LossInputs};

/// Most source frames and scales a kernel launch handles.
pub const MAX_SOURCES: usize = 4;
pub const MAX_SCALES: usize = 4;

/// (min_disp, max_disp) = (1 / max_depth, 1 / min_depth) of a checked loss config, as the
/// kernels take them.
pub fn disparity_range(config: &LossConfig) -> Result<(f32, f32), CudaError> {
    config.validate().map_err(|e| match e {
        LossError::Config { field, expected, got } => CudaError::invalid(
            format!("loss config `{field}`"),
            format!("expected {expected}, got {got}"),
        ),
        other => CudaError::invalid("loss config", other.to_string()),
    })?;
    Ok((1.0 / config.max_depth, 1.0 / config.min_depth))
}

fn check_len(what: String, len: usize, expected: usize) -> Result<(), CudaError> {
    if len != expected {
        return Err(CudaError::invalid(what, format!("{len} floats, expected {expected}")));
    }
    Ok(())
}

/// Checks the counts, shapes, poses and intrinsics of `inputs` against the kernels' limits
/// (what both the twin and the kernels require). Unlike the CPU loss, the kernels do not scan
/// images and disparities for non-finite values: a non-finite result is the caller's verdict.
pub fn validate_for_kernels(inputs: &LossInputs) -> Result<(), CudaError> {
    let (w, h) = (inputs.width, inputs.height);
    let n = inputs.sources.len();
    let scales = inputs.disparities.len();
    check_geometry(w, h, n, scales, inputs.intrinsics)?;
    if inputs.poses.len() != n {
        return Err(CudaError::invalid(
            "poses",
            format!("{} poses for {n} sources", inputs.poses.len()),
        ));
    }
    if inputs.target_pyramid.len() != scales {
        return Err(CudaError::invalid(
            "target_pyramid",
            format!("{} levels for {scales} scales", inputs.target_pyramid.len()),
        ));
    }
    check_len("target".into(), inputs.target.len(), 3 * w * h)?;
    for (i, s) in inputs.sources.iter().enumerate() {
        check_len(format!("sources[{i}]"), s.len(), 3 * w * h)?;
    }
    for s in 0..scales {
        let plane = (w >> s) * (h >> s);
        check_len(format!("disparities[{s}]"), inputs.disparities[s].len(), plane)?;
        check_len(format!("target_pyramid[{s}]"), inputs.target_pyramid[s].len(), 3 * plane)?;
    }
    if let Some(noise) = inputs.tie_break_noise {
        check_len("tie_break_noise".into(), noise.len(), n * w * h)?;
    }
    for (i, p) in inputs.poses.iter().enumerate() {
        if p.row().iter().any(|v| !v.is_finite()) {
            return Err(CudaError::invalid(format!("poses[{i}]"), format!("{p:?} is not finite")));
        }
    }
    Ok(())
}

/// The checks every launch needs, on host or device inputs alike: `n` sources and `scales`
/// scales within the kernels' limits, an image whose coarsest scale is at least 2 x 2 and whose
/// indices fit the kernels' 32-bit arithmetic, and finite intrinsics with non-zero focal lengths.
pub fn check_geometry(
    w: usize,
    h: usize,
    n: usize,
    scales: usize,
    intrinsics: [f32; 4],
) -> Result<(), CudaError> {
    if !(1..=MAX_SOURCES).contains(&n) {
        return Err(CudaError::invalid("sources", format!("{n} given, need 1..={MAX_SOURCES}")));
    }
    if !(1..=MAX_SCALES).contains(&scales) {
        return Err(CudaError::invalid(
            "disparities",
            format!("{scales} scales given, need 1..={MAX_SCALES}"),
        ));
    }
    if (w >> (scales - 1)) < 2
        || (h >> (scales - 1)) < 2
        || w > i32::MAX as usize / 4
        || h > i32::MAX as usize / 4
    {
        return Err(CudaError::invalid(
            "image size",
            format!("{w}x{h} with {scales} scales: the coarsest scale must be at least 2x2"),
        ));
    }
    let [fx, fy, cx, cy] = intrinsics;
    if !(fx.is_finite()
        && fy.is_finite()
        && cx.is_finite()
        && cy.is_finite()
        && fx != 0.0
        && fy != 0.0)
    {
        return Err(CudaError::invalid(
            "intrinsics",
            format!("{intrinsics:?}: need finite values, fx, fy != 0"),
        ));
    }
    Ok(())
}
