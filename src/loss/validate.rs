//! Checks on the loss inputs before anything is computed: every buffer has the size the
//! image, scale and source counts imply, and every value is finite; each error names the field
//! and what was expected.

use super::{LossError, LossInputs, Real};

fn shape_error(
    field: impl Into<String>,
    expected: impl Into<String>,
    got: impl Into<String>,
) -> LossError {
    LossError::Shape { field: field.into(), expected: expected.into(), got: got.into() }
}

fn check_finite<T: Real>(field: impl Fn() -> String, values: &[T]) -> Result<(), LossError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(LossError::NonFinite { field: field(), index }),
        None => Ok(()),
    }
}

fn check_len<T>(
    field: impl Fn() -> String,
    values: &[T],
    expected: usize,
    what: &str,
) -> Result<(), LossError> {
    if values.len() != expected {
        return Err(shape_error(
            field(),
            format!("{expected} values ({what})"),
            format!("{} values", values.len()),
        ));
    }
    Ok(())
}

/// Checks every shape and value of `inputs`.
pub(super) fn validate<T: Real>(inputs: &LossInputs<T>) -> Result<(), LossError> {
    let (w, h) = (inputs.width, inputs.height);
    let n = inputs.sources.len();
    let scales = inputs.disparities.len();
    if n == 0 || n > 127 {
        return Err(shape_error("sources", "1 to 127 source images", format!("{n}")));
    }
    if scales == 0 || scales > 8 {
        return Err(shape_error("disparities", "1 to 8 scales", format!("{scales}")));
    }
    if (w >> (scales - 1)) < 2 || (h >> (scales - 1)) < 2 {
        return Err(shape_error(
            "width/height",
            format!("at least 2 x 2 pixels at the coarsest of {scales} scales"),
            format!("{w} x {h}"),
        ));
    }
    let hw = w * h;
    let plane = format!("3 x {h} x {w}");
    check_len(|| "target".into(), inputs.target, 3 * hw, &plane)?;
    check_finite(|| "target".into(), inputs.target)?;
    for (i, src) in inputs.sources.iter().enumerate() {
        check_len(|| format!("sources[{i}]"), src, 3 * hw, &plane)?;
        check_finite(|| format!("sources[{i}]"), src)?;
    }
    if inputs.target_pyramid.len() != scales {
        return Err(shape_error(
            "target_pyramid",
            format!("{scales} levels (one per disparity scale)"),
            format!("{}", inputs.target_pyramid.len()),
        ));
    }
    for s in 0..scales {
        let (sw, sh) = (w >> s, h >> s);
        check_len(
            || format!("disparities[{s}]"),
            inputs.disparities[s],
            sw * sh,
            &format!("{sh} x {sw}"),
        )?;
        check_finite(|| format!("disparities[{s}]"), inputs.disparities[s])?;
        let level = inputs.target_pyramid[s];
        check_len(
            || format!("target_pyramid[{s}]"),
            level,
            3 * sw * sh,
            &format!("3 x {sh} x {sw}"),
        )?;
        check_finite(|| format!("target_pyramid[{s}]"), level)?;
    }
    if inputs.poses.len() != n {
        return Err(shape_error(
            "poses",
            format!("{n} poses (one per source)"),
            format!("{}", inputs.poses.len()),
        ));
    }
    for (i, pose) in inputs.poses.iter().enumerate() {
        check_finite(|| format!("poses[{i}].axis_angle"), &pose.axis_angle)?;
        check_finite(|| format!("poses[{i}].translation"), &pose.translation)?;
    }
    check_finite(|| "intrinsics".into(), &inputs.intrinsics)?;
    if inputs.intrinsics[0] == T::ZERO || inputs.intrinsics[1] == T::ZERO {
        return Err(shape_error(
            "intrinsics",
            "non-zero fx and fy",
            format!("{:?}", inputs.intrinsics),
        ));
    }
    if let Some(noise) = inputs.tie_break_noise {
        check_len(|| "tie_break_noise".into(), noise, n * hw, &format!("{n} x {h} x {w}"))?;
        check_finite(|| "tie_break_noise".into(), noise)?;
    }
    Ok(())
}
