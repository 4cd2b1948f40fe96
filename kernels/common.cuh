// livedepth CUDA prelude, prepended to every kernels/*.cu file before NVRTC compiles it.
// NVRTC ships none of the toolkit headers, so everything here is self-contained: small
// index helpers, bilinear coordinates, the SSIM + L1 photometric error and its adjoint, and
// block reductions that end in double-precision atomics.
//
// Conventions shared with the Rust twins in src/cuda/twin/: images are planar float
// 3 x H x W, pixel centres at integer coordinates, row-major, channel-major.

typedef unsigned char u8;

#define LD_MAX_SOURCES 4
#define LD_MAX_SCALES 4
#define LD_SSIM_C1 1.0e-4f
#define LD_SSIM_C2 9.0e-4f
#define LD_PROJ_EPS 1.0e-7f
#define LD_SMOOTH_EPS 1.0e-7f

// Reflection padding by one pixel (PyTorch ReflectionPad2d(1)): -1 -> 1, n -> n - 2.
__device__ __forceinline__ int ld_reflect(int i, int n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * n - 2 - i;
    return i;
}

// How many offsets o in {-1, 0, 1} give ld_reflect(p + o, n) == q: the multiplicity with which
// pixel q enters the 3x3 SSIM window of pixel p (2 at the border, where reflection repeats it).
__device__ __forceinline__ int ld_window_count(int p, int q, int n) {
    int c = 0;
    for (int o = -1; o <= 1; ++o) c += (ld_reflect(p + o, n) == q) ? 1 : 0;
    return c;
}

__device__ __forceinline__ float ld_sign(float v) { return (v > 0.f) ? 1.f : ((v < 0.f) ? -1.f : 0.f); }

// Source coordinate of bilinear resampling with align_corners=false (PyTorch's upsample_bilinear2d):
// src = (o + 0.5) * in/out - 0.5, clamped at 0; neighbours i0, i1 = min(i0 + 1, in - 1).
__device__ __forceinline__ void ld_linear_coord(int o, float scale, int in_size, int* i0, int* i1,
                                                float* lambda1) {
    float src = ((float)o + 0.5f) * scale - 0.5f;
    if (src < 0.f) src = 0.f;
    int a = (int)src;
    if (a > in_size - 1) a = in_size - 1;
    *i0 = a;
    *i1 = a + ((a < in_size - 1) ? 1 : 0);
    *lambda1 = src - (float)a;
}

// SSIM statistics of one channel's 3x3 window from sums of the values shifted by the window
// centre (xc, yc): sx = sum(x - xc), sxx = sum((x - xc)^2), sxy = sum((x - xc)(y - yc)).
// Equal to the plain statistics in exact arithmetic, but the variances no longer come from the
// float cancellation E[x^2] - E[x]^2 of nearly equal numbers.
struct LdStats {
    float mx, my, vx, vy, cxy;
};

__device__ __forceinline__ LdStats ld_stats(float xc, float yc, float sx, float sy, float sxx,
                                            float syy, float sxy) {
    const float inv9 = 1.0f / 9.0f;
    float dx = sx * inv9, dy = sy * inv9;
    LdStats st;
    st.mx = xc + dx;
    st.my = yc + dy;
    st.vx = sxx * inv9 - dx * dx;
    st.vy = syy * inv9 - dy * dy;
    st.cxy = sxy * inv9 - dx * dy;
    return st;
}

// Shifted window sums of channel c of two 3x3 windows (index c * 9 + k, centre k = 4).
__device__ __forceinline__ LdStats ld_window_stats(const float* xw, const float* yw, int c) {
    float xc = xw[c * 9 + 4], yc = yw[c * 9 + 4];
    float sx = 0.f, sy = 0.f, sxx = 0.f, syy = 0.f, sxy = 0.f;
    for (int k = 0; k < 9; ++k) {
        float a = xw[c * 9 + k] - xc, b = yw[c * 9 + k] - yc;
        sx += a;
        sy += b;
        sxx += a * a;
        syy += b * b;
        sxy += a * b;
    }
    return ld_stats(xc, yc, sx, sy, sxx, syy, sxy);
}

// SSIM loss clamp((1 - ssim) / 2, 0, 1) of one channel (x = prediction, y = target).
__device__ __forceinline__ float ld_ssim_loss(LdStats st) {
    float n = (2.f * st.mx * st.my + LD_SSIM_C1) * (2.f * st.cxy + LD_SSIM_C2);
    float d = (st.mx * st.mx + st.my * st.my + LD_SSIM_C1) * (st.vx + st.vy + LD_SSIM_C2);
    float l = (1.f - n / d) * 0.5f;
    return fminf(fmaxf(l, 0.f), 1.f);
}

// Adjoint of ld_ssim_loss w.r.t. the prediction: with upstream gradient g on the loss, returns
// coefficients so that d loss / d x_q = k_mu + k_xx * x_q + k_xy * y_q for every x_q in the
// window (weighted by its multiplicity): mx moves by 1/9, vx by 2 (x_q - mx) / 9 and cxy by
// (y_q - my) / 9 per unit of x_q.
__device__ __forceinline__ void ld_ssim_adjoint(LdStats st, float g, float* k_mu, float* k_xx,
                                                float* k_xy) {
    const float inv9 = 1.0f / 9.0f;
    float n1 = 2.f * st.mx * st.my + LD_SSIM_C1;
    float n2 = 2.f * st.cxy + LD_SSIM_C2;
    float d1 = st.mx * st.mx + st.my * st.my + LD_SSIM_C1;
    float d2 = st.vx + st.vy + LD_SSIM_C2;
    float d = d1 * d2;
    float ssim = n1 * n2 / d;
    float l = (1.f - ssim) * 0.5f;
    if (!(l > 0.f && l < 1.f)) {
        *k_mu = 0.f; *k_xx = 0.f; *k_xy = 0.f;
        return;
    }
    float ds_dmx = 2.f * st.my * n2 / d - ssim * 2.f * st.mx / d1;
    float ds_dvx = -ssim / d2;
    float ds_dcxy = 2.f * n1 / d;
    float gs = -0.5f * g;  // d loss / d ssim
    *k_xx = gs * ds_dvx * 2.f * inv9;
    *k_xy = gs * ds_dcxy * inv9;
    *k_mu = gs * ds_dmx * inv9 - *k_xx * st.mx - *k_xy * st.my;
}

// (tests/cuda_emulator replaces the two block reductions below with barrier-based equivalents,
// because emulating warp shuffles with threads is slow.)
#ifndef LD_EMULATED_REDUCTIONS
// Sum of a float over the block (any blockDim up to 1024), added atomically in double to *acc.
__device__ __forceinline__ void ld_block_sum_atomic(float v, double* acc) {
    __shared__ float ld_partials[32];
    int lane = (threadIdx.x + threadIdx.y * blockDim.x) & 31;
    int warp = (threadIdx.x + threadIdx.y * blockDim.x) >> 5;
    int nwarps = (blockDim.x * blockDim.y + 31) >> 5;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    __syncthreads();
    if (lane == 0) ld_partials[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = (lane < nwarps) ? ld_partials[lane] : 0.f;
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
        if (lane == 0 && v != 0.f) atomicAdd(acc, (double)v);
    }
}

// Sums of N floats over the block in one pass (warp shuffles, one shared round trip), each
// added atomically in double to acc[j]. Every thread of the block must call it.
template <int N>
__device__ __forceinline__ void ld_block_sums_atomic(float (&v)[N], double* acc) {
    __shared__ float ld_partials_n[N][32];
    int tid = threadIdx.x + threadIdx.y * blockDim.x;
    int lane = tid & 31, warp = tid >> 5;
    int nwarps = (blockDim.x * blockDim.y + 31) >> 5;
    for (int j = 0; j < N; ++j)
        for (int off = 16; off > 0; off >>= 1) v[j] += __shfl_down_sync(0xffffffffu, v[j], off);
    __syncthreads();
    if (lane == 0)
        for (int j = 0; j < N; ++j) ld_partials_n[j][warp] = v[j];
    __syncthreads();
    if (tid < N) {
        float sum = 0.f;
        for (int w = 0; w < nwarps; ++w) sum += ld_partials_n[tid][w];
        if (sum != 0.f) atomicAdd(acc + tid, (double)sum);
    }
}
#endif  // LD_EMULATED_REDUCTIONS

// Weight of input index i in bilinear output o (align_corners=false); both neighbours may be i
// at the border, where their weights add.
__device__ __forceinline__ float ld_linear_weight(int o, int i, float scale, int in_size) {
    int i0, i1;
    float l1;
    ld_linear_coord(o, scale, in_size, &i0, &i1, &l1);
    return ((i0 == i) ? 1.f - l1 : 0.f) + ((i1 == i) ? l1 : 0.f);
}

// Range of output indices whose bilinear footprint can include input index i.
__device__ __forceinline__ void ld_adjoint_range(int i, float scale, int out_size, int* first,
                                                 int* last) {
    int f = (int)floorf(((float)i - 0.5f) / scale - 0.5f) - 1;
    int l = (int)ceilf(((float)i + 1.5f) / scale - 0.5f) + 1;
    *first = (f < 0) ? 0 : f;
    *last = (l > out_size - 1) ? out_size - 1 : l;
}

// Adjoint of bilinear upsampling at input pixel (x, y) of a lw x lh grid: the sum over the hw x hh
// output gradient of each output's weight on this input (a gather, so no atomics are needed).
__device__ __forceinline__ float ld_upsample_adjoint_at(const float* g_hi, int hw, int hh, int lw,
                                                        int lh, int x, int y) {
    float sx = (float)lw / (float)hw, sy = (float)lh / (float)hh;
    int oy0, oy1, ox0, ox1;
    ld_adjoint_range(y, sy, hh, &oy0, &oy1);
    ld_adjoint_range(x, sx, hw, &ox0, &ox1);
    float acc = 0.f;
    for (int oy = oy0; oy <= oy1; ++oy) {
        float wy = ld_linear_weight(oy, y, sy, lh);
        if (wy == 0.f) continue;
        float row = 0.f;
        for (int ox = ox0; ox <= ox1; ++ox) {
            float wx = ld_linear_weight(ox, x, sx, lw);
            if (wx != 0.f) row += wx * g_hi[oy * hw + ox];
        }
        acc += wy * row;
    }
    return acc;
}

// Bilinear sample (align_corners=false) of a lw x lh map at output pixel (x, y) of hw x hh.
__device__ __forceinline__ float ld_upsample_at(const float* lo, int lw, int lh, int hw, int hh,
                                                int x, int y) {
    float sx = (float)lw / (float)hw, sy = (float)lh / (float)hh;
    int x0, x1, y0, y1;
    float lx, ly;
    ld_linear_coord(x, sx, lw, &x0, &x1, &lx);
    ld_linear_coord(y, sy, lh, &y0, &y1, &ly);
    float top = (1.f - lx) * lo[y0 * lw + x0] + lx * lo[y0 * lw + x1];
    float bot = (1.f - lx) * lo[y1 * lw + x0] + lx * lo[y1 * lw + x1];
    return (1.f - ly) * top + ly * bot;
}
