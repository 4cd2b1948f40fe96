// The fused self-supervised (Monodepth2) loss, forward and backward, on raw device buffers.
//
// Formulation (mirrored exactly by src/cuda/twin/loss.rs):
//   D_s      = bilinear upsampling (align_corners=false) of the scale-s disparity to H x W
//   depth    = 1 / (min_disp + (max_disp - min_disp) * D_s)
//   P        = depth * ((x - cx) / fx, (y - cy) / fy, 1);  cam = R P + t  (R, t of the source)
//   (u, v)   = ((fx X + cx Z) / (Z + 1e-7), (fy Y + cy Z) / (Z + 1e-7))
//   warped   = bilinear sample of the source at (u, v) clamped to the image (border padding)
//   pe(a, b) = w * mean_c SSIM-loss(a, b) + (1 - w) * mean_c |a - b|  (3x3, reflection padding;
//              window statistics from centre-shifted sums, see ld_stats)
//   identity_i = pe(source_i, target) + noise_i;  min over [identity.., warped..] (first wins ties)
//   photometric_s = mean_pixels(min); smoothness_s = weight / 2^s * edge-aware smoothness of
//   the mean-normalised scale-s disparity; total = mean_s(photometric_s + smoothness_s).
//
// Passes and their memory traffic (H x W full resolution, n sources, S scales):
//   ld_pose_matrices     n threads; negligible.
//   ld_identity_error    reads target + n sources (12 (n+1) B/px, 3x3 reuse in L1) + n noise,
//                        writes 5 B/px.  Scale independent: run once.
//   ld_smooth_sum        reads each disparity once (4 B per low-res px).
//   ld_loss_forward      per scale: target tile + per source: disparity (upsampled on the fly,
//                        L1 hits), source gather (12 B/px + cache), id_min/id_arg 5 B/px;
//                        writes winner 1 B/px (+ min_error 4 B/px at scale 0). The warped
//                        image never goes to memory (shared-memory tiles with a 1-px halo).
//   ld_smooth_forward    reads disparity + target pyramid level (16 B per low-res px).
//   ld_loss_backward     per scale: recomputes the warp in shared memory (2-px halo), reads
//                        winners (1 B/px, 3x3 reuse) and writes d total / d D_s (4 B/px);
//                        pose and intrinsics gradients are block-reduced, then double atomics.
//   ld_disparity_backward per low-res px: upsampling adjoint (gather of the 4 B/px written
//                        above) fused with the smoothness backward; writes the disparity grad.
//   ld_finalize          one block: scalars, Rodrigues chain rule for the pose gradients.

#define LD_TW 32
#define LD_TH 8
#define LD_THREADS (LD_TW * LD_TH)

// Accumulator layout (doubles), zeroed before each evaluation.
#define LD_ACC_PHOTO 0
#define LD_ACC_SMOOTH 4  // (x, y) edge sums of scale s at LD_ACC_SMOOTH + 2 s, + 2 s + 1
#define LD_ACC_DISP_SUM 12
#define LD_ACC_ID_WINS 16
#define LD_ACC_POSE 20
#define LD_ACC_INTR (LD_ACC_POSE + 12 * LD_MAX_SOURCES)
#define LD_ACC_SIZE (LD_ACC_INTR + 4)

// Output scalars: total, photometric, smoothness, masked_fraction, photometric_s[4], smoothness_s[4].
#define LD_SCALARS 12

struct LdLossParams {
    const float* target;
    const float* sources[LD_MAX_SOURCES];
    const float* disp[LD_MAX_SCALES];
    const float* pyramid[LD_MAX_SCALES];
    const float* noise;
    const float* poses;
    float* transforms;
    u8* winners;
    float* min_error;
    float* id_min;
    u8* id_arg;
    float* grad_full;
    float* grad_disp[LD_MAX_SCALES];
    float* grad_poses;
    float* grad_intrinsics;
    float* scalars;
    double* accum;
    int width, height, n_sources, n_scales, automask, invert_mask;
    float fx, fy, cx, cy, min_disp, max_disp, ssim_weight, smoothness_weight;
};

// ---------------------------------------------------------------------------------------------
// Pose: Rodrigues' rotation and the optional inverse, generic over a dual number
// so that the gradient chain in ld_finalize is exact forward-mode differentiation.

struct LdDual {
    float v, d;
};
__device__ __forceinline__ LdDual operator+(LdDual a, LdDual b) { return {a.v + b.v, a.d + b.d}; }
__device__ __forceinline__ LdDual operator-(LdDual a, LdDual b) { return {a.v - b.v, a.d - b.d}; }
__device__ __forceinline__ LdDual operator-(LdDual a) { return {-a.v, -a.d}; }
__device__ __forceinline__ LdDual operator*(LdDual a, LdDual b) {
    return {a.v * b.v, a.d * b.v + a.v * b.d};
}
__device__ __forceinline__ LdDual operator/(LdDual a, LdDual b) {
    return {a.v / b.v, (a.d * b.v - a.v * b.d) / (b.v * b.v)};
}
__device__ __forceinline__ LdDual ld_lift(float v) { return {v, 0.f}; }
__device__ __forceinline__ float ld_lift_f(float v) { return v; }
__device__ __forceinline__ LdDual ld_sqrt(LdDual a) {
    float s = sqrtf(a.v);
    return {s, (s > 0.f) ? a.d / (2.f * s) : 0.f};
}
__device__ __forceinline__ LdDual ld_sin(LdDual a) { return {sinf(a.v), cosf(a.v) * a.d}; }
__device__ __forceinline__ LdDual ld_cos(LdDual a) { return {cosf(a.v), -sinf(a.v) * a.d}; }
__device__ __forceinline__ float ld_sqrt(float a) { return sqrtf(a); }
__device__ __forceinline__ float ld_sin(float a) { return sinf(a); }
__device__ __forceinline__ float ld_cos(float a) { return cosf(a); }

template <typename T>
__device__ __forceinline__ T ld_const(float v);
template <>
__device__ __forceinline__ float ld_const<float>(float v) { return v; }
template <>
__device__ __forceinline__ LdDual ld_const<LdDual>(float v) { return {v, 0.f}; }

__device__ __forceinline__ float ld_value(float v) { return v; }
__device__ __forceinline__ float ld_value(LdDual v) { return v.v; }

// out = R (row-major 9) then t (3) of x' = R x + t; with invert, the inverse transform.
// Rodrigues: R = I + a [w]x + b [w]x^2 = (1 - b t2) I + a [w]x + b w w^T with t2 = |w|^2,
// a = sin(th) / th, b = (1 - cos th) / th^2 = 2 (sin(th / 2) / th)^2 (no cancellation in f32),
// and their Taylor series for t2 < 1e-6.
template <typename T>
__device__ void ld_pose_transform(const T aa[3], const T tr[3], bool invert, T out[12]) {
    T t2 = aa[0] * aa[0] + aa[1] * aa[1] + aa[2] * aa[2];
    T a, b;
    if (ld_value(t2) < 1e-6f) {
        a = ld_const<T>(1.f) - t2 / ld_const<T>(6.f) + t2 * t2 / ld_const<T>(120.f);
        b = ld_const<T>(0.5f) - t2 / ld_const<T>(24.f) + t2 * t2 / ld_const<T>(720.f);
    } else {
        T th = ld_sqrt(t2);
        a = ld_sin(th) / th;
        T h = ld_sin(th * ld_const<T>(0.5f)) / th;
        b = ld_const<T>(2.f) * h * h;
    }
    T x = aa[0], y = aa[1], z = aa[2];
    T diag = ld_const<T>(1.f) - b * t2;
    T r[9] = {diag + b * x * x,  b * x * y - a * z,  b * x * z + a * y,
              b * x * y + a * z, diag + b * y * y,   b * y * z - a * x,
              b * x * z - a * y, b * y * z + a * x,  diag + b * z * z};
    if (!invert) {
        for (int k = 0; k < 9; ++k) out[k] = r[k];
        for (int k = 0; k < 3; ++k) out[9 + k] = tr[k];
    } else {
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 3; ++k) out[j * 3 + k] = r[k * 3 + j];
        for (int j = 0; j < 3; ++j)
            out[9 + j] = -(out[j * 3 + 0] * tr[0] + out[j * 3 + 1] * tr[1] + out[j * 3 + 2] * tr[2]);
    }
}

extern "C" __global__ void ld_pose_matrices(LdLossParams p) {
    int i = threadIdx.x;
    if (i >= p.n_sources) return;
    float aa[3] = {p.poses[i * 6 + 0], p.poses[i * 6 + 1], p.poses[i * 6 + 2]};
    float tr[3] = {p.poses[i * 6 + 3], p.poses[i * 6 + 4], p.poses[i * 6 + 5]};
    float out[12];
    ld_pose_transform<float>(aa, tr, (p.invert_mask >> i) & 1, out);
    for (int k = 0; k < 12; ++k) p.transforms[i * 12 + k] = out[k];
}

// ---------------------------------------------------------------------------------------------
// Per-pixel building blocks.

// Photometric error from two 3x3x3 windows (index c * 9 + k, centre k = 4).
__device__ __forceinline__ float ld_pe(const float* xw, const float* yw, float alpha) {
    float ssim = 0.f, l1 = 0.f;
    for (int c = 0; c < 3; ++c) {
        ssim += ld_ssim_loss(ld_window_stats(xw, yw, c));
        l1 += fabsf(xw[c * 9 + 4] - yw[c * 9 + 4]);
    }
    return alpha * (ssim * (1.f / 3.f)) + (1.f - alpha) * (l1 * (1.f / 3.f));
}

// Tile coordinate -> reflected image coordinate (positions more than one pixel outside the image
// only feed threads that produce no output; they are clamped to stay in bounds).
__device__ __forceinline__ int ld_tile_coord(int g, int n) {
    if (g < -1) g = -1;
    if (g > n) g = n;
    return ld_reflect(g, n);
}

__device__ __forceinline__ float ld_depth_at(const LdLossParams& p, int s, int x, int y) {
    float d = ld_upsample_at(p.disp[s], p.width >> s, p.height >> s, p.width, p.height, x, y);
    return 1.f / (p.min_disp + (p.max_disp - p.min_disp) * d);
}

struct LdWarp {
    float xn, yn, px, py, pz, cam[3], zinv, u, v;
};

__device__ __forceinline__ void ld_project(const LdLossParams& p, const float* T, int x, int y,
                                           float depth, LdWarp* w) {
    w->xn = ((float)x - p.cx) / p.fx;
    w->yn = ((float)y - p.cy) / p.fy;
    w->px = depth * w->xn;
    w->py = depth * w->yn;
    w->pz = depth;
    for (int j = 0; j < 3; ++j)
        w->cam[j] = T[j * 3 + 0] * w->px + T[j * 3 + 1] * w->py + T[j * 3 + 2] * w->pz + T[9 + j];
    w->zinv = 1.f / (w->cam[2] + LD_PROJ_EPS);
    w->u = (p.fx * w->cam[0] + p.cx * w->cam[2]) * w->zinv;
    w->v = (p.fy * w->cam[1] + p.cy * w->cam[2]) * w->zinv;
}

// Bilinear sample of a planar 3 x H x W image at (u, v) with border padding; optionally the
// derivatives of each channel w.r.t. u and v (zero where the coordinate is clamped).
__device__ __forceinline__ void ld_sample(const float* img, int W, int H, float u, float v,
                                          float out[3], float* ddu, float* ddv) {
    float uc = fminf(fmaxf(u, 0.f), (float)(W - 1));
    float vc = fminf(fmaxf(v, 0.f), (float)(H - 1));
    int x0 = (int)floorf(uc), y0 = (int)floorf(vc);
    float ax = uc - (float)x0, ay = vc - (float)y0;
    bool x1ok = x0 + 1 < W, y1ok = y0 + 1 < H;
    float gu = (u > 0.f && u < (float)(W - 1)) ? 1.f : 0.f;
    float gv = (v > 0.f && v < (float)(H - 1)) ? 1.f : 0.f;
    int plane = W * H;
    for (int c = 0; c < 3; ++c) {
        const float* im = img + c * plane + y0 * W + x0;
        float v00 = im[0];
        float v10 = x1ok ? im[1] : 0.f;
        float v01 = y1ok ? im[W] : 0.f;
        float v11 = (x1ok && y1ok) ? im[W + 1] : 0.f;
        out[c] = (1.f - ax) * (1.f - ay) * v00 + ax * (1.f - ay) * v10 + (1.f - ax) * ay * v01 +
                 ax * ay * v11;
        if (ddu) {
            ddu[c] = gu * ((1.f - ay) * (v10 - v00) + ay * (v11 - v01));
            ddv[c] = gv * ((1.f - ax) * (v01 - v00) + ax * (v11 - v10));
        }
    }
}

// Which source's warped error won at a pixel (winner code -> source index), or -1.
__device__ __forceinline__ int ld_warped_winner(int code, int n, int automask) {
    if (!automask) return code;
    return (code >= n) ? code - n : -1;
}

// ---------------------------------------------------------------------------------------------
// Identity errors: scale independent, once per evaluation.

extern "C" __global__ void __launch_bounds__(LD_THREADS) ld_identity_error(LdLossParams p) {
    int x = blockIdx.x * LD_TW + threadIdx.x, y = blockIdx.y * LD_TH + threadIdx.y;
    int W = p.width, H = p.height, HW = W * H;
    if (x >= W || y >= H) return;
    float yw[27], xw[27];
    for (int c = 0; c < 3; ++c)
        for (int k = 0; k < 9; ++k) {
            int gx = ld_reflect(x + k % 3 - 1, W), gy = ld_reflect(y + k / 3 - 1, H);
            yw[c * 9 + k] = p.target[c * HW + gy * W + gx];
        }
    float best = 0.f;
    int best_i = 0;
    for (int i = 0; i < p.n_sources; ++i) {
        const float* src = p.sources[i];
        for (int c = 0; c < 3; ++c)
            for (int k = 0; k < 9; ++k) {
                int gx = ld_reflect(x + k % 3 - 1, W), gy = ld_reflect(y + k / 3 - 1, H);
                xw[c * 9 + k] = src[c * HW + gy * W + gx];
            }
        float e = ld_pe(xw, yw, p.ssim_weight);
        if (p.noise) e += p.noise[i * HW + y * W + x];
        if (i == 0 || e < best) {
            best = e;
            best_i = i;
        }
    }
    p.id_min[y * W + x] = best;
    p.id_arg[y * W + x] = (u8)best_i;
}

// ---------------------------------------------------------------------------------------------
// Fused forward: warp + SSIM + L1 + per-pixel minimum + automask, one launch for all scales.

extern "C" __global__ void __launch_bounds__(LD_THREADS) ld_loss_forward(LdLossParams p) {
    const int SW = LD_TW + 2, SH = LD_TH + 2, SN = SW * SH;
    __shared__ float t_tile[3 * SN];
    __shared__ float w_tile[3 * SN];
    __shared__ float d_tile[SN];  // depth: the same for every source
    int s = blockIdx.z;
    int W = p.width, H = p.height, HW = W * H;
    int bx = blockIdx.x * LD_TW, by = blockIdx.y * LD_TH;
    int tid = threadIdx.y * LD_TW + threadIdx.x;
    int x = bx + threadIdx.x, y = by + threadIdx.y;
    bool inside = x < W && y < H;
    for (int k = tid; k < SN; k += LD_THREADS) {
        int gx = ld_tile_coord(bx + k % SW - 1, W), gy = ld_tile_coord(by + k / SW - 1, H);
        for (int c = 0; c < 3; ++c) t_tile[c * SN + k] = p.target[c * HW + gy * W + gx];
        d_tile[k] = ld_depth_at(p, s, gx, gy);
    }
    float yw[27], xw[27];
    float best = 0.f;
    int best_i = 0;
    for (int i = 0; i < p.n_sources; ++i) {
        const float* T = p.transforms + 12 * i;
        __syncthreads();
        for (int k = tid; k < SN; k += LD_THREADS) {
            int gx = ld_tile_coord(bx + k % SW - 1, W), gy = ld_tile_coord(by + k / SW - 1, H);
            LdWarp w;
            ld_project(p, T, gx, gy, d_tile[k], &w);
            float val[3];
            ld_sample(p.sources[i], W, H, w.u, w.v, val, 0, 0);
            for (int c = 0; c < 3; ++c) w_tile[c * SN + k] = val[c];
        }
        __syncthreads();
        if (inside) {
            for (int c = 0; c < 3; ++c)
                for (int k = 0; k < 9; ++k) {
                    int ti = (threadIdx.y + k / 3) * SW + threadIdx.x + k % 3;
                    xw[c * 9 + k] = w_tile[c * SN + ti];
                    yw[c * 9 + k] = t_tile[c * SN + ti];
                }
            float e = ld_pe(xw, yw, p.ssim_weight);
            if (i == 0 || e < best) {
                best = e;
                best_i = i;
            }
        }
    }
    float m = 0.f, id_win = 0.f;
    if (inside) {
        int n = p.n_sources, code = best_i;
        m = best;
        if (p.automask) {
            float idm = p.id_min[y * W + x];
            if (best < idm) {
                code = n + best_i;
            } else {
                code = p.id_arg[y * W + x];
                m = idm;
                id_win = 1.f;
            }
        }
        p.winners[(size_t)s * HW + y * W + x] = (u8)code;
        if (s == 0 && p.min_error) p.min_error[y * W + x] = m;
    }
    ld_block_sum_atomic(m, &p.accum[LD_ACC_PHOTO + s]);
    if (s == 0) ld_block_sum_atomic(id_win, &p.accum[LD_ACC_ID_WINS]);
}

// ---------------------------------------------------------------------------------------------
// Fused backward: per scale, d total / d D_s (full resolution) and the pose / intrinsics sums.

extern "C" __global__ void __launch_bounds__(LD_THREADS) ld_loss_backward(LdLossParams p) {
    const int SW = LD_TW + 4, SH = LD_TH + 4, SN = SW * SH;  // warped / target: 2-px halo
    const int KW = LD_TW + 2, KH = LD_TH + 2, KN = KW * KH;  // SSIM coefficients: 1-px halo
    __shared__ float t_tile[3 * SN];
    __shared__ float w_tile[3 * SN];
    __shared__ float k_tile[9 * KN];  // [coef(mu, xx, xy)][channel][KH][KW]
    __shared__ float d_tile[SN];      // depth: the same for every source
    int s = blockIdx.z;
    int W = p.width, H = p.height, HW = W * H, n = p.n_sources;
    int bx = blockIdx.x * LD_TW, by = blockIdx.y * LD_TH;
    int tid = threadIdx.y * LD_TW + threadIdx.x;
    int x = bx + threadIdx.x, y = by + threadIdx.y;
    bool inside = x < W && y < H;
    const u8* winners = p.winners + (size_t)s * HW;
    float g_pix = 1.f / ((float)p.n_scales * (float)HW);
    float alpha = p.ssim_weight;
    for (int k = tid; k < SN; k += LD_THREADS) {
        int gx = ld_tile_coord(bx + k % SW - 2, W), gy = ld_tile_coord(by + k / SW - 2, H);
        for (int c = 0; c < 3; ++c) t_tile[c * SN + k] = p.target[c * HW + gy * W + gx];
        d_tile[k] = ld_depth_at(p, s, gx, gy);
    }
    int gate_q = inside ? ld_warped_winner(winners[y * W + x], n, p.automask) : -1;
    float g_disp = 0.f;
    float g_intr[4] = {0.f, 0.f, 0.f, 0.f};
    float depth_q = inside ? ld_depth_at(p, s, x, y) : 1.f;
    for (int i = 0; i < n; ++i) {
        const float* T = p.transforms + 12 * i;
        __syncthreads();
        for (int k = tid; k < SN; k += LD_THREADS) {
            int gx = ld_tile_coord(bx + k % SW - 2, W), gy = ld_tile_coord(by + k / SW - 2, H);
            LdWarp w;
            ld_project(p, T, gx, gy, d_tile[k], &w);
            float val[3];
            ld_sample(p.sources[i], W, H, w.u, w.v, val, 0, 0);
            for (int c = 0; c < 3; ++c) w_tile[c * SN + k] = val[c];
        }
        __syncthreads();
        for (int k = tid; k < KN; k += LD_THREADS) {
            int kx = k % KW, ky = k / KW;
            int gx = bx + kx - 1, gy = by + ky - 1;
            bool active = gx >= 0 && gx < W && gy >= 0 && gy < H &&
                          ld_warped_winner(winners[gy * W + gx], n, p.automask) == i;
            for (int c = 0; c < 3; ++c) {
                float k_mu = 0.f, k_xx = 0.f, k_xy = 0.f;
                if (active) {
                    float xw[9], yw[9];
                    for (int o = 0; o < 9; ++o) {
                        int ti = c * SN + (ky + o / 3) * SW + kx + o % 3;
                        xw[o] = w_tile[ti];
                        yw[o] = t_tile[ti];
                    }
                    ld_ssim_adjoint(ld_window_stats(xw, yw, 0), g_pix * alpha * (1.f / 3.f), &k_mu,
                                    &k_xx, &k_xy);
                }
                k_tile[(0 * 3 + c) * KN + k] = k_mu;
                k_tile[(1 * 3 + c) * KN + k] = k_xx;
                k_tile[(2 * 3 + c) * KN + k] = k_xy;
            }
        }
        __syncthreads();
        float g_cam[3] = {0.f, 0.f, 0.f};
        LdWarp w;
        w.px = w.py = w.pz = 0.f;
        if (inside) {
            int ti = (threadIdx.y + 2) * SW + threadIdx.x + 2;
            float gw[3], wq[3], tq[3];
            for (int c = 0; c < 3; ++c) {
                wq[c] = w_tile[c * SN + ti];
                tq[c] = t_tile[c * SN + ti];
                gw[c] = (gate_q == i) ? g_pix * (1.f - alpha) * (1.f / 3.f) * ld_sign(wq[c] - tq[c])
                                      : 0.f;
            }
            for (int dy = -1; dy <= 1; ++dy) {
                int py = y + dy;
                if (py < 0 || py >= H) continue;
                int cy = ld_window_count(py, y, H);
                if (cy == 0) continue;
                for (int dx = -1; dx <= 1; ++dx) {
                    int px = x + dx;
                    if (px < 0 || px >= W) continue;
                    int cx = ld_window_count(px, x, W);
                    if (cx == 0) continue;
                    float cnt = (float)(cx * cy);
                    int kk = (threadIdx.y + 1 + dy) * KW + threadIdx.x + 1 + dx;
                    for (int c = 0; c < 3; ++c) {
                        gw[c] += cnt * (k_tile[(0 * 3 + c) * KN + kk] +
                                        k_tile[(1 * 3 + c) * KN + kk] * wq[c] +
                                        k_tile[(2 * 3 + c) * KN + kk] * tq[c]);
                    }
                }
            }
            if (gw[0] != 0.f || gw[1] != 0.f || gw[2] != 0.f) {
                ld_project(p, T, x, y, depth_q, &w);
                float val[3], ddu[3], ddv[3];
                ld_sample(p.sources[i], W, H, w.u, w.v, val, ddu, ddv);
                float gu = gw[0] * ddu[0] + gw[1] * ddu[1] + gw[2] * ddu[2];
                float gv = gw[0] * ddv[0] + gw[1] * ddv[1] + gw[2] * ddv[2];
                g_cam[0] = gu * p.fx * w.zinv;
                g_cam[1] = gv * p.fy * w.zinv;
                g_cam[2] = (gu * (p.cx - w.u) + gv * (p.cy - w.v)) * w.zinv;
                float gpx = T[0] * g_cam[0] + T[3] * g_cam[1] + T[6] * g_cam[2];
                float gpy = T[1] * g_cam[0] + T[4] * g_cam[1] + T[7] * g_cam[2];
                float gpz = T[2] * g_cam[0] + T[5] * g_cam[1] + T[8] * g_cam[2];
                float g_depth = gpx * w.xn + gpy * w.yn + gpz;
                g_disp += g_depth * (-(p.max_disp - p.min_disp) * depth_q * depth_q);
                g_intr[0] += gu * w.cam[0] * w.zinv - gpx * w.px / p.fx;
                g_intr[1] += gv * w.cam[1] * w.zinv - gpy * w.py / p.fy;
                g_intr[2] += gu * w.cam[2] * w.zinv - gpx * depth_q / p.fx;
                g_intr[3] += gv * w.cam[2] * w.zinv - gpy * depth_q / p.fy;
            }
        }
        // d total / d (R, t) of this source: 12 sums in one block reduction.
        float pt[3] = {w.px, w.py, w.pz};
        float g_rt[12];
        for (int j = 0; j < 3; ++j) {
            for (int k = 0; k < 3; ++k) g_rt[j * 3 + k] = g_cam[j] * pt[k];
            g_rt[9 + j] = g_cam[j];
        }
        ld_block_sums_atomic<12>(g_rt, p.accum + LD_ACC_POSE + 12 * i);
    }
    if (inside) p.grad_full[(size_t)s * HW + y * W + x] = g_disp;
    ld_block_sums_atomic<4>(g_intr, p.accum + LD_ACC_INTR);
}

// ---------------------------------------------------------------------------------------------
// Edge-aware smoothness of the mean-normalised disparity (per scale, at the scale's resolution).

__device__ __forceinline__ float ld_edge_weight(const float* img, int plane, int a, int b) {
    float g = 0.f;
    for (int c = 0; c < 3; ++c) g += fabsf(img[c * plane + a] - img[c * plane + b]);
    return expf(-g * (1.f / 3.f));
}

extern "C" __global__ void ld_smooth_sum(LdLossParams p) {
    int s = blockIdx.z;
    int lw = p.width >> s, lh = p.height >> s;
    int q = blockIdx.x * blockDim.x + threadIdx.x;
    float v = (q < lw * lh) ? p.disp[s][q] : 0.f;
    ld_block_sum_atomic(v, p.accum + LD_ACC_DISP_SUM + s);
}

__device__ __forceinline__ float ld_disp_mean(const LdLossParams& p, int s) {
    int lw = p.width >> s, lh = p.height >> s;
    return (float)(p.accum[LD_ACC_DISP_SUM + s] / (double)(lw * lh)) + LD_SMOOTH_EPS;
}

extern "C" __global__ void ld_smooth_forward(LdLossParams p) {
    int s = blockIdx.z;
    int lw = p.width >> s, lh = p.height >> s, plane = lw * lh;
    int q = blockIdx.x * blockDim.x + threadIdx.x;
    float ex = 0.f, ey = 0.f;
    if (q < plane) {
        int x = q % lw, y = q / lw;
        const float* d = p.disp[s];
        const float* img = p.pyramid[s];
        float m = ld_disp_mean(p, s);
        float nd = d[q] / m;
        if (x + 1 < lw) ex = ld_edge_weight(img, plane, q, q + 1) * fabsf(nd - d[q + 1] / m);
        if (y + 1 < lh) ey = ld_edge_weight(img, plane, q, q + lw) * fabsf(nd - d[q + lw] / m);
    }
    float e[2] = {ex, ey};
    ld_block_sums_atomic<2>(e, p.accum + LD_ACC_SMOOTH + 2 * s);
}

// Raw (unweighted) smoothness of scale s from the accumulators.
__device__ __forceinline__ float ld_smooth_raw(const double* acc, int lw, int lh, int s) {
    double nx = (double)((lw - 1) * lh), ny = (double)(lw * (lh - 1));
    return (float)(acc[LD_ACC_SMOOTH + 2 * s] / nx + acc[LD_ACC_SMOOTH + 2 * s + 1] / ny);
}

// d total / d disparity_s: upsampling adjoint of grad_full fused with the smoothness backward.
extern "C" __global__ void ld_disparity_backward(LdLossParams p) {
    int s = blockIdx.z;
    int lw = p.width >> s, lh = p.height >> s, plane = lw * lh;
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= lw || y >= lh) return;
    int q = y * lw + x;
    float g = ld_upsample_adjoint_at(p.grad_full + (size_t)s * p.width * p.height, p.width,
                                     p.height, lw, lh, x, y);
    const float* d = p.disp[s];
    const float* img = p.pyramid[s];
    float m = ld_disp_mean(p, s);
    float nd = d[q] / m;
    float inv_nx = 1.f / (float)((lw - 1) * lh), inv_ny = 1.f / (float)(lw * (lh - 1));
    float gq = 0.f;
    if (x + 1 < lw) gq += ld_edge_weight(img, plane, q, q + 1) * ld_sign(nd - d[q + 1] / m) * inv_nx;
    if (x > 0) gq += ld_edge_weight(img, plane, q - 1, q) * ld_sign(nd - d[q - 1] / m) * inv_nx;
    if (y + 1 < lh) gq += ld_edge_weight(img, plane, q, q + lw) * ld_sign(nd - d[q + lw] / m) * inv_ny;
    if (y > 0) gq += ld_edge_weight(img, plane, q - lw, q) * ld_sign(nd - d[q - lw] / m) * inv_ny;
    float k = p.smoothness_weight / (float)(1 << s) / (float)p.n_scales;
    float raw = ld_smooth_raw(p.accum, lw, lh, s);
    g += k * (gq - raw / (float)plane) / m;
    p.grad_disp[s][q] = g;
}

// ---------------------------------------------------------------------------------------------
// Final scalars and the Rodrigues chain rule for the pose gradients (one block of 32 threads).

extern "C" __global__ void ld_finalize(LdLossParams p) {
    int t = threadIdx.x;
    const double* acc = p.accum;
    if (t == 0) {
        float hw = (float)(p.width * p.height);
        float photometric = 0.f, smoothness = 0.f;
        for (int s = 0; s < LD_MAX_SCALES; ++s) {
            float ph = 0.f, sm = 0.f;
            if (s < p.n_scales) {
                ph = (float)(acc[LD_ACC_PHOTO + s] / (double)hw);
                sm = p.smoothness_weight / (float)(1 << s) *
                     ld_smooth_raw(acc, p.width >> s, p.height >> s, s);
            }
            p.scalars[4 + s] = ph;
            p.scalars[8 + s] = sm;
            photometric += ph;
            smoothness += sm;
        }
        photometric /= (float)p.n_scales;
        smoothness /= (float)p.n_scales;
        p.scalars[0] = photometric + smoothness;
        p.scalars[1] = photometric;
        p.scalars[2] = smoothness;
        p.scalars[3] = p.automask ? (float)(acc[LD_ACC_ID_WINS] / (double)hw) : 0.f;
        if (p.grad_intrinsics)
            for (int k = 0; k < 4; ++k) p.grad_intrinsics[k] = (float)acc[LD_ACC_INTR + k];
    }
    if (t < p.n_sources && p.grad_poses) {
        const double* g = acc + LD_ACC_POSE + 12 * t;
        for (int k = 0; k < 6; ++k) {
            LdDual aa[3], tr[3], out[12];
            for (int j = 0; j < 3; ++j) {
                aa[j] = {p.poses[t * 6 + j], (k == j) ? 1.f : 0.f};
                tr[j] = {p.poses[t * 6 + 3 + j], (k == 3 + j) ? 1.f : 0.f};
            }
            ld_pose_transform<LdDual>(aa, tr, (p.invert_mask >> t) & 1, out);
            float sum = 0.f;
            for (int j = 0; j < 12; ++j) sum += (float)g[j] * out[j].d;
            p.grad_poses[t * 6 + k] = sum;
        }
    }
}
