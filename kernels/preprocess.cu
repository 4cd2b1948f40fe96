// Preprocessing: the packed frame GStreamer / nvvidconv hands over (RGB, RGBA or NV12, with a
// row pitch) -> normalised planar float 3 x H x W at the network size, resized bilinearly
// (align_corners=false) or by area averaging, in one pass.
//
// Memory traffic per output pixel: 12 bytes written (3 floats); the source is read through the
// L1/L2 caches, each source byte about once for downscaling (bilinear reads 4 taps, area reads
// its box), so the pass is bound by the source read + 12 bytes/pixel write.
//
// Output channel c = (value / 255 - mean[c]) * inv_std[c].

struct LdNorm {
    float mean[3];
    float inv_std[3];
};

// Area-resampling footprint of output index o over an input axis: [o * r, (o + 1) * r).
__device__ __forceinline__ void ld_area_range(int o, float r, int in_size, int* first, int* last) {
    float b = (float)o * r, e = (float)(o + 1) * r;
    int f = (int)floorf(b);
    int l = (int)ceilf(e) - 1;
    if (f < 0) f = 0;
    if (l > in_size - 1) l = in_size - 1;
    if (l < f) l = f;
    *first = f;
    *last = l;
}

__device__ __forceinline__ float ld_area_weight(int i, int o, float r) {
    float b = (float)o * r, e = (float)(o + 1) * r;
    float lo = fmaxf((float)i, b), hi = fminf((float)(i + 1), e);
    return fmaxf(hi - lo, 0.f);
}

// RGB of one NV12 source pixel (BT.601 limited range), 0..255.
__device__ __forceinline__ void ld_nv12_rgb(const u8* y_plane, int y_pitch, const u8* uv_plane,
                                            int uv_pitch, int x, int y, float rgb[3]) {
    float yy = 1.164f * ((float)y_plane[y * y_pitch + x] - 16.f);
    const u8* uv = uv_plane + (y >> 1) * uv_pitch + (x & ~1);
    float u = (float)uv[0] - 128.f, v = (float)uv[1] - 128.f;
    rgb[0] = fminf(fmaxf(yy + 1.596f * v, 0.f), 255.f);
    rgb[1] = fminf(fmaxf(yy - 0.392f * u - 0.813f * v, 0.f), 255.f);
    rgb[2] = fminf(fmaxf(yy + 2.017f * u, 0.f), 255.f);
}

// format: 0 = packed RGB (channels = 3) or RGBA (channels = 4) in `src` with `pitch`;
//         1 = NV12 with luma `src`/`pitch` and interleaved chroma `uv`/`uv_pitch`.
__device__ __forceinline__ void ld_fetch(int format, const u8* src, int pitch, int channels,
                                         const u8* uv, int uv_pitch, int x, int y, float rgb[3]) {
    if (format == 1) {
        ld_nv12_rgb(src, pitch, uv, uv_pitch, x, y, rgb);
    } else {
        const u8* p = src + y * pitch + x * channels;
        rgb[0] = (float)p[0];
        rgb[1] = (float)p[1];
        rgb[2] = (float)p[2];
    }
}

// One thread per output pixel. mode: 0 = bilinear, 1 = area.
extern "C" __global__ void ld_preprocess(const u8* src, int pitch, int channels, const u8* uv,
                                         int uv_pitch, int format, int src_w, int src_h, float* dst,
                                         int dst_w, int dst_h, int mode, LdNorm norm) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    float rx = (float)src_w / (float)dst_w, ry = (float)src_h / (float)dst_h;
    float acc[3] = {0.f, 0.f, 0.f};
    float rgb[3];
    if (mode == 0) {
        int x0, x1, y0, y1;
        float lx, ly;
        ld_linear_coord(x, rx, src_w, &x0, &x1, &lx);
        ld_linear_coord(y, ry, src_h, &y0, &y1, &ly);
        float w[4] = {(1.f - lx) * (1.f - ly), lx * (1.f - ly), (1.f - lx) * ly, lx * ly};
        int xs[4] = {x0, x1, x0, x1}, ys[4] = {y0, y0, y1, y1};
        for (int k = 0; k < 4; ++k) {
            ld_fetch(format, src, pitch, channels, uv, uv_pitch, xs[k], ys[k], rgb);
            for (int c = 0; c < 3; ++c) acc[c] += w[k] * rgb[c];
        }
    } else {
        int fx0, fx1, fy0, fy1;
        ld_area_range(x, rx, src_w, &fx0, &fx1);
        ld_area_range(y, ry, src_h, &fy0, &fy1);
        float wsum = 0.f;
        for (int sy = fy0; sy <= fy1; ++sy) {
            float wy = ld_area_weight(sy, y, ry);
            for (int sx = fx0; sx <= fx1; ++sx) {
                float wgt = wy * ld_area_weight(sx, x, rx);
                ld_fetch(format, src, pitch, channels, uv, uv_pitch, sx, sy, rgb);
                for (int c = 0; c < 3; ++c) acc[c] += wgt * rgb[c];
                wsum += wgt;
            }
        }
        float inv = (wsum > 0.f) ? 1.f / wsum : 0.f;
        for (int c = 0; c < 3; ++c) acc[c] *= inv;
    }
    int plane = dst_w * dst_h;
    for (int c = 0; c < 3; ++c) {
        dst[c * plane + y * dst_w + x] = (acc[c] * (1.f / 255.f) - norm.mean[c]) * norm.inv_std[c];
    }
}
