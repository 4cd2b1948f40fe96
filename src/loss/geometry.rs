//! Pose algebra in double precision: Rodrigues' rotation from an axis-angle vector, the rigid
//! transform target→source (optionally inverted, as Monodepth2 does for earlier frames), and the
//! chain rule from gradients with respect to the 3x4 transform back to the 6 pose parameters.

/// 3x3 matrix, row-major.
pub type Mat3 = [[f64; 3]; 3];

fn skew(w: [f64; 3]) -> Mat3 {
    [[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]]
}

fn mat_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Coefficients of Rodrigues' formula R = I + a·[ω]× + b·[ω]×² and their derivatives divided
/// by θ (da/dθ / θ, db/dθ / θ), with Taylor forms near θ = 0.
fn rodrigues_coefficients(theta_sq: f64) -> (f64, f64, f64, f64) {
    if theta_sq < 1e-8 {
        let t2 = theta_sq;
        (
            1.0 - t2 / 6.0 + t2 * t2 / 120.0,
            0.5 - t2 / 24.0 + t2 * t2 / 720.0,
            -1.0 / 3.0 + t2 / 30.0,
            -1.0 / 12.0 + t2 / 180.0,
        )
    } else {
        let theta = theta_sq.sqrt();
        let (s, c) = theta.sin_cos();
        (
            s / theta,
            (1.0 - c) / theta_sq,
            (theta * c - s) / (theta_sq * theta),
            (theta * s - 2.0 * (1.0 - c)) / (theta_sq * theta_sq),
        )
    }
}

/// Rotation matrix of the axis-angle vector `w` (Rodrigues' formula).
pub fn rotation(w: [f64; 3]) -> Mat3 {
    let (a, b, _, _) = rodrigues_coefficients(w[0] * w[0] + w[1] * w[1] + w[2] * w[2]);
    let k = skew(w);
    let k2 = mat_mul(&k, &k);
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = if i == j { 1.0 } else { 0.0 } + a * k[i][j] + b * k2[i][j];
        }
    }
    r
}

/// ∂R/∂ω_k for k = 0, 1, 2.
pub fn rotation_derivatives(w: [f64; 3]) -> [Mat3; 3] {
    let (a, b, da, db) = rodrigues_coefficients(w[0] * w[0] + w[1] * w[1] + w[2] * w[2]);
    let k = skew(w);
    let k2 = mat_mul(&k, &k);
    let mut out = [[[0.0; 3]; 3]; 3];
    for (axis, d) in out.iter_mut().enumerate() {
        let mut e = [0.0; 3];
        e[axis] = 1.0;
        let ek = skew(e);
        let ek_k = mat_mul(&ek, &k);
        let k_ek = mat_mul(&k, &ek);
        for i in 0..3 {
            for j in 0..3 {
                d[i][j] = da * w[axis] * k[i][j]
                    + a * ek[i][j]
                    + db * w[axis] * k2[i][j]
                    + b * (ek_k[i][j] + k_ek[i][j]);
            }
        }
    }
    out
}

/// The transform applied to target-camera points, Q = M·P + t: [R | t], or its inverse
/// [Rᵀ | −Rᵀt] when `invert`.
pub fn transform(axis_angle: [f64; 3], translation: [f64; 3], invert: bool) -> (Mat3, [f64; 3]) {
    let r = rotation(axis_angle);
    if !invert {
        return (r, translation);
    }
    let mut m = [[0.0; 3]; 3];
    let mut t = [0.0; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = r[j][i];
        }
        t[i] = -(0..3).map(|j| r[j][i] * translation[j]).sum::<f64>();
    }
    (m, t)
}

/// Chains dL/dM (3x3) and dL/dt (3) of [`transform`]'s output back to
/// (dL/dω, dL/dtranslation) as 6 values.
pub fn pose_gradient(
    axis_angle: [f64; 3],
    translation: [f64; 3],
    invert: bool,
    grad_m: &Mat3,
    grad_t: [f64; 3],
) -> [f64; 6] {
    let (grad_r, grad_translation) = if invert {
        // M = Rᵀ, t' = −Rᵀ·t  ⇒  dL/dR = (dL/dM)ᵀ − t·(dL/dt')ᵀ, dL/dt = −R·dL/dt'.
        let r = rotation(axis_angle);
        let mut gr = [[0.0; 3]; 3];
        let mut gt = [0.0; 3];
        for i in 0..3 {
            for j in 0..3 {
                gr[i][j] = grad_m[j][i] - translation[i] * grad_t[j];
            }
            gt[i] = -(0..3).map(|j| r[i][j] * grad_t[j]).sum::<f64>();
        }
        (gr, gt)
    } else {
        (*grad_m, grad_t)
    };
    let d = rotation_derivatives(axis_angle);
    let mut out = [0.0; 6];
    for k in 0..3 {
        out[k] = (0..3)
            .flat_map(|i| (0..3).map(move |j| (i, j)))
            .map(|(i, j)| grad_r[i][j] * d[k][i][j])
            .sum();
        out[3 + k] = grad_translation[k];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss_of(m: &Mat3, t: &[f64; 3], weights: &Mat3, tw: &[f64; 3]) -> f64 {
        let mut s = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                s += m[i][j] * weights[i][j];
            }
            s += t[i] * tw[i];
        }
        s
    }

    #[test]
    fn rotation_is_orthonormal_and_matches_known_quarter_turn() {
        let r = rotation([0.0, 0.0, std::f64::consts::FRAC_PI_2]);
        assert!((r[0][1] + 1.0).abs() < 1e-12 && (r[1][0] - 1.0).abs() < 1e-12);
        let r = rotation([0.3, -0.2, 0.5]);
        let rrt = mat_mul(
            &r,
            &[
                [r[0][0], r[1][0], r[2][0]],
                [r[0][1], r[1][1], r[2][1]],
                [r[0][2], r[1][2], r[2][2]],
            ],
        );
        for (i, row) in rrt.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn pose_gradient_matches_central_differences_including_near_zero_rotation() {
        let weights = [[0.3, -1.2, 0.7], [0.5, 0.1, -0.4], [-0.9, 0.8, 0.2]];
        let tw = [0.6, -0.3, 1.1];
        for &(w, invert) in &[
            ([0.1, -0.2, 0.05], false),
            ([0.1, -0.2, 0.05], true),
            ([1e-6, 2e-6, -1e-6], true),
            ([0.0, 0.0, 0.0], false),
        ] {
            let t = [0.2, -0.1, 0.4];
            let analytic = pose_gradient(w, t, invert, &weights, tw);
            for k in 0..6 {
                let h = 1e-6;
                let (mut wp, mut wm, mut tp, mut tm) = (w, w, t, t);
                if k < 3 {
                    wp[k] += h;
                    wm[k] -= h;
                } else {
                    tp[k - 3] += h;
                    tm[k - 3] -= h;
                }
                let (mp, tpp) = transform(wp, tp, invert);
                let (mm, tmm) = transform(wm, tm, invert);
                let fd = (loss_of(&mp, &tpp, &weights, &tw) - loss_of(&mm, &tmm, &weights, &tw))
                    / (2.0 * h);
                assert!((fd - analytic[k]).abs() < 1e-7, "k={k} fd={fd} analytic={}", analytic[k]);
            }
        }
    }
}
