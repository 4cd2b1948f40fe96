// Disparity upsampling (bilinear, align_corners=false, PyTorch's F.interpolate semantics) and
// its exact adjoint, as standalone kernels over `planes` stacked maps.
//
// Memory traffic: forward reads each low-resolution value ~once through the cache and writes
// 4 bytes per output pixel; the adjoint (a gather, no atomics) reads each high-resolution
// gradient ~once per covering input pixel (cache hits) and writes 4 bytes per input pixel.

extern "C" __global__ void ld_upsample_bilinear(const float* lo, int lw, int lh, float* hi, int hw,
                                                int hh, int planes) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int p = blockIdx.z;
    if (x >= hw || y >= hh || p >= planes) return;
    hi[(size_t)p * hw * hh + y * hw + x] =
        ld_upsample_at(lo + (size_t)p * lw * lh, lw, lh, hw, hh, x, y);
}

// accumulate != 0 adds into g_lo instead of overwriting it.
extern "C" __global__ void ld_upsample_bilinear_adjoint(const float* g_hi, int hw, int hh,
                                                        float* g_lo, int lw, int lh, int planes,
                                                        int accumulate) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int p = blockIdx.z;
    if (x >= lw || y >= lh || p >= planes) return;
    float v = ld_upsample_adjoint_at(g_hi + (size_t)p * hw * hh, hw, hh, lw, lh, x, y);
    size_t i = (size_t)p * lw * lh + y * lw + x;
    g_lo[i] = accumulate ? g_lo[i] + v : v;
}
