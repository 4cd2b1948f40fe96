//! CPU twin of the pose part of kernels/loss.cu: Rodrigues' rotation, the optional inverse,
//! and the exact forward-mode derivative used to chain the reduced d loss / d (R, t) back to
//! the six pose parameters.

use std::ops::{Add, Div, Mul, Neg, Sub};

/// Arithmetic the Rodrigues formula needs, for f32 and for [`Dual`].
pub trait PoseScalar:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    fn constant(v: f32) -> Self;
    fn value(self) -> f32;
    fn sqrt(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
}

impl PoseScalar for f32 {
    fn constant(v: f32) -> Self {
        v
    }
    fn value(self) -> f32 {
        self
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn sin(self) -> Self {
        f32::sin(self)
    }
    fn cos(self) -> Self {
        f32::cos(self)
    }
}

/// A dual number v + d ε (`LdDual`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dual {
    pub v: f32,
    pub d: f32,
}

impl Add for Dual {
    type Output = Self;
    fn add(self, b: Self) -> Self {
        Dual { v: self.v + b.v, d: self.d + b.d }
    }
}
impl Sub for Dual {
    type Output = Self;
    fn sub(self, b: Self) -> Self {
        Dual { v: self.v - b.v, d: self.d - b.d }
    }
}
impl Mul for Dual {
    type Output = Self;
    fn mul(self, b: Self) -> Self {
        Dual { v: self.v * b.v, d: self.d * b.v + self.v * b.d }
    }
}
impl Div for Dual {
    type Output = Self;
    fn div(self, b: Self) -> Self {
        Dual { v: self.v / b.v, d: (self.d * b.v - self.v * b.d) / (b.v * b.v) }
    }
}
impl Neg for Dual {
    type Output = Self;
    fn neg(self) -> Self {
        Dual { v: -self.v, d: -self.d }
    }
}

impl PoseScalar for Dual {
    fn constant(v: f32) -> Self {
        Dual { v, d: 0.0 }
    }
    fn value(self) -> f32 {
        self.v
    }
    fn sqrt(self) -> Self {
        let s = self.v.sqrt();
        Dual { v: s, d: if s > 0.0 { self.d / (2.0 * s) } else { 0.0 } }
    }
    fn sin(self) -> Self {
        Dual { v: self.v.sin(), d: self.v.cos() * self.d }
    }
    fn cos(self) -> Self {
        Dual { v: self.v.cos(), d: -self.v.sin() * self.d }
    }
}

/// R (row-major 3x3) then t of x' = R x + t for axis-angle `aa` and translation `tr`; with
/// `invert`, the inverse transform (twin of `ld_pose_transform`): R = (1 - b t2) I + a [w]x +
/// b w w^T, a = sin(th) / th, b = 2 (sin(th / 2) / th)^2, Taylor series for t2 < 1e-6.
pub fn pose_transform<T: PoseScalar>(aa: [T; 3], tr: [T; 3], invert: bool) -> [T; 12] {
    let c = T::constant;
    let t2 = aa[0] * aa[0] + aa[1] * aa[1] + aa[2] * aa[2];
    let (a, b) = if t2.value() < 1e-6 {
        (c(1.0) - t2 / c(6.0) + t2 * t2 / c(120.0), c(0.5) - t2 / c(24.0) + t2 * t2 / c(720.0))
    } else {
        let th = t2.sqrt();
        let h = (th * c(0.5)).sin() / th;
        (th.sin() / th, c(2.0) * h * h)
    };
    let (x, y, z) = (aa[0], aa[1], aa[2]);
    let diag = c(1.0) - b * t2;
    let r = [
        diag + b * x * x,
        b * x * y - a * z,
        b * x * z + a * y,
        b * x * y + a * z,
        diag + b * y * y,
        b * y * z - a * x,
        b * x * z - a * y,
        b * y * z + a * x,
        diag + b * z * z,
    ];
    let mut out = [T::constant(0.0); 12];
    if !invert {
        out[..9].copy_from_slice(&r);
        out[9..].copy_from_slice(&tr);
    } else {
        for j in 0..3 {
            for k in 0..3 {
                out[j * 3 + k] = r[k * 3 + j];
            }
        }
        for j in 0..3 {
            out[9 + j] = -(out[j * 3] * tr[0] + out[j * 3 + 1] * tr[1] + out[j * 3 + 2] * tr[2]);
        }
    }
    out
}

/// The transform of a pose given as (axis-angle, translation).
pub fn pose_matrix(pose: &[f32; 6], invert: bool) -> [f32; 12] {
    pose_transform([pose[0], pose[1], pose[2]], [pose[3], pose[4], pose[5]], invert)
}

/// d loss / d pose from d loss / d (R row-major, t) (twin of the chain in `ld_finalize`).
pub fn pose_gradient(pose: &[f32; 6], invert: bool, g_transform: &[f64; 12]) -> [f32; 6] {
    let mut out = [0.0f32; 6];
    for (k, o) in out.iter_mut().enumerate() {
        let mut p = [Dual { v: 0.0, d: 0.0 }; 6];
        for j in 0..6 {
            p[j] = Dual { v: pose[j], d: if j == k { 1.0 } else { 0.0 } };
        }
        let t = pose_transform([p[0], p[1], p[2]], [p[3], p[4], p[5]], invert);
        let mut sum = 0.0f32;
        for j in 0..12 {
            sum += g_transform[j] as f32 * t[j].d;
        }
        *o = sum;
    }
    out
}
