//! CPU twins of the device helpers in kernels/common.cuh, operation for operation in f32 so that
//! each kernel's twin computes what the kernel computes.

/// SSIM stabilisers (for a dynamic range of 1).
pub const SSIM_C1: f32 = 1.0e-4;
pub const SSIM_C2: f32 = 9.0e-4;
/// Added to the projected depth before dividing (as Monodepth2's projection does).
pub const PROJ_EPS: f32 = 1.0e-7;
/// Added to the disparity mean of the smoothness normalisation.
pub const SMOOTH_EPS: f32 = 1.0e-7;

/// Reflection padding by one pixel: -1 -> 1, n -> n - 2 (`ld_reflect`).
#[inline]
pub fn reflect(i: i32, n: i32) -> i32 {
    let i = if i < 0 { -i } else { i };
    if i >= n { 2 * n - 2 - i } else { i }
}

/// Multiplicity of pixel q in the 3x3 reflected window of pixel p (`ld_window_count`).
#[inline]
pub fn window_count(p: i32, q: i32, n: i32) -> i32 {
    (-1..=1).filter(|o| reflect(p + o, n) == q).count() as i32
}

/// sign with sign(0) = 0.
#[inline]
pub fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Bilinear source coordinate, align_corners=false (`ld_linear_coord`): (i0, i1, lambda1).
#[inline]
pub fn linear_coord(o: i32, scale: f32, in_size: i32) -> (i32, i32, f32) {
    let mut src = (o as f32 + 0.5) * scale - 0.5;
    if src < 0.0 {
        src = 0.0;
    }
    let mut a = src as i32;
    if a > in_size - 1 {
        a = in_size - 1;
    }
    let b = a + i32::from(a < in_size - 1);
    (a, b, src - a as f32)
}

/// Weight of input i in output o (`ld_linear_weight`).
#[inline]
pub fn linear_weight(o: i32, i: i32, scale: f32, in_size: i32) -> f32 {
    let (i0, i1, l1) = linear_coord(o, scale, in_size);
    (if i0 == i { 1.0 - l1 } else { 0.0 }) + (if i1 == i { l1 } else { 0.0 })
}

/// Outputs whose footprint can include input i (`ld_adjoint_range`).
#[inline]
pub fn adjoint_range(i: i32, scale: f32, out_size: i32) -> (i32, i32) {
    let f = ((i as f32 - 0.5) / scale - 0.5).floor() as i32 - 1;
    let l = ((i as f32 + 1.5) / scale - 0.5).ceil() as i32 + 1;
    (f.max(0), l.min(out_size - 1))
}

/// Bilinear upsampling of a lw x lh map at output (x, y) of hw x hh (`ld_upsample_at`).
#[inline]
pub fn upsample_at(lo: &[f32], lw: i32, lh: i32, hw: i32, hh: i32, x: i32, y: i32) -> f32 {
    let sx = lw as f32 / hw as f32;
    let sy = lh as f32 / hh as f32;
    let (x0, x1, lx) = linear_coord(x, sx, lw);
    let (y0, y1, ly) = linear_coord(y, sy, lh);
    let at = |yy: i32, xx: i32| lo[(yy * lw + xx) as usize];
    let top = (1.0 - lx) * at(y0, x0) + lx * at(y0, x1);
    let bot = (1.0 - lx) * at(y1, x0) + lx * at(y1, x1);
    (1.0 - ly) * top + ly * bot
}

/// Adjoint of [`upsample_at`] at input (x, y) (`ld_upsample_adjoint_at`).
pub fn upsample_adjoint_at(
    g_hi: &[f32],
    hw: i32,
    hh: i32,
    lw: i32,
    lh: i32,
    x: i32,
    y: i32,
) -> f32 {
    let sx = lw as f32 / hw as f32;
    let sy = lh as f32 / hh as f32;
    let (oy0, oy1) = adjoint_range(y, sy, hh);
    let (ox0, ox1) = adjoint_range(x, sx, hw);
    let mut acc = 0.0f32;
    for oy in oy0..=oy1 {
        let wy = linear_weight(oy, y, sy, lh);
        if wy == 0.0 {
            continue;
        }
        let mut row = 0.0f32;
        for ox in ox0..=ox1 {
            let wx = linear_weight(ox, x, sx, lw);
            if wx != 0.0 {
                row += wx * g_hi[(oy * hw + ox) as usize];
            }
        }
        acc += wy * row;
    }
    acc
}

/// SSIM statistics of one channel's 3x3 window (`LdStats`).
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub mx: f32,
    pub my: f32,
    pub vx: f32,
    pub vy: f32,
    pub cxy: f32,
}

/// Statistics from sums of values shifted by the window centre (`ld_stats`).
#[inline]
pub fn stats(xc: f32, yc: f32, sx: f32, sy: f32, sxx: f32, syy: f32, sxy: f32) -> Stats {
    let inv9 = 1.0f32 / 9.0;
    let dx = sx * inv9;
    let dy = sy * inv9;
    Stats {
        mx: xc + dx,
        my: yc + dy,
        vx: sxx * inv9 - dx * dx,
        vy: syy * inv9 - dy * dy,
        cxy: sxy * inv9 - dx * dy,
    }
}

/// Statistics of channel c of two 27-value windows (`ld_window_stats`).
#[inline]
pub fn window_stats(xw: &[f32], yw: &[f32], c: usize) -> Stats {
    let xc = xw[c * 9 + 4];
    let yc = yw[c * 9 + 4];
    let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for k in 0..9 {
        let a = xw[c * 9 + k] - xc;
        let b = yw[c * 9 + k] - yc;
        sx += a;
        sy += b;
        sxx += a * a;
        syy += b * b;
        sxy += a * b;
    }
    stats(xc, yc, sx, sy, sxx, syy, sxy)
}

/// SSIM loss of one channel (`ld_ssim_loss`).
#[inline]
pub fn ssim_loss(st: Stats) -> f32 {
    let n = (2.0 * st.mx * st.my + SSIM_C1) * (2.0 * st.cxy + SSIM_C2);
    let d = (st.mx * st.mx + st.my * st.my + SSIM_C1) * (st.vx + st.vy + SSIM_C2);
    let l = (1.0 - n / d) * 0.5;
    l.clamp(0.0, 1.0)
}

/// Adjoint coefficients (k_mu, k_xx, k_xy) of [`ssim_loss`] under upstream gradient g
/// (`ld_ssim_adjoint`): d loss / d x_q = k_mu + k_xx x_q + k_xy y_q per window member.
#[inline]
pub fn ssim_adjoint(st: Stats, g: f32) -> (f32, f32, f32) {
    let inv9 = 1.0f32 / 9.0;
    let n1 = 2.0 * st.mx * st.my + SSIM_C1;
    let n2 = 2.0 * st.cxy + SSIM_C2;
    let d1 = st.mx * st.mx + st.my * st.my + SSIM_C1;
    let d2 = st.vx + st.vy + SSIM_C2;
    let d = d1 * d2;
    let ssim = n1 * n2 / d;
    let l = (1.0 - ssim) * 0.5;
    if !(l > 0.0 && l < 1.0) {
        return (0.0, 0.0, 0.0);
    }
    let ds_dmx = 2.0 * st.my * n2 / d - ssim * 2.0 * st.mx / d1;
    let ds_dvx = -ssim / d2;
    let ds_dcxy = 2.0 * n1 / d;
    let gs = -0.5 * g;
    let k_xx = gs * ds_dvx * 2.0 * inv9;
    let k_xy = gs * ds_dcxy * inv9;
    (gs * ds_dmx * inv9 - k_xx * st.mx - k_xy * st.my, k_xx, k_xy)
}

/// Photometric error from two 3x3x3 windows, index c * 9 + k with centre k = 4 (`ld_pe`).
#[inline]
pub fn photometric_error(xw: &[f32; 27], yw: &[f32; 27], alpha: f32) -> f32 {
    let mut ssim = 0.0f32;
    let mut l1 = 0.0f32;
    for c in 0..3 {
        ssim += ssim_loss(window_stats(xw, yw, c));
        l1 += (xw[c * 9 + 4] - yw[c * 9 + 4]).abs();
    }
    alpha * (ssim * (1.0 / 3.0)) + (1.0 - alpha) * (l1 * (1.0 / 3.0))
}

/// The 3x3x3 reflected window of a planar 3 x h x w image around (x, y).
#[inline]
pub fn window(img: &[f32], w: i32, h: i32, x: i32, y: i32) -> [f32; 27] {
    let plane = (w * h) as usize;
    let mut out = [0.0f32; 27];
    for c in 0..3 {
        for k in 0..9i32 {
            let gx = reflect(x + k % 3 - 1, w);
            let gy = reflect(y + k / 3 - 1, h);
            out[c * 9 + k as usize] = img[c * plane + (gy * w + gx) as usize];
        }
    }
    out
}
