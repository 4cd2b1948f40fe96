// Runs the preprocessing and upsampling kernels (kernels/preprocess.cu, kernels/upsample.cu,
// emulated on the CPU) for tests/cuda_emulated.rs.
//   harness_image preprocess IN OUT: IN = 8 ints (format 0 packed / 1 NV12, channels, width,
//     height, pitch, uv_pitch, dst_w, dst_h), 1 int mode, 6 floats (mean, inv_std), frame bytes.
//   harness_image upsample IN OUT: IN = 5 ints (lw, lh, hw, hh, planes), lo, g_hi floats;
//     OUT = hi then the adjoint of g_hi.
#include "emu.hpp"
#include "kernels_preprocess.cu"
#include "upsample_body.cu"
#include <cstdio>
#include <cstring>
#include <string>

template <typename T>
static std::vector<T> read_all(FILE* f, size_t n) {
    std::vector<T> v(n);
    if (fread(v.data(), sizeof(T), n, f) != n) { fprintf(stderr, "short input\n"); exit(2); }
    return v;
}

int main(int argc, char** argv) {
    if (argc != 4) return 2;
    std::string mode = argv[1];
    FILE* in = fopen(argv[2], "rb");
    FILE* out = fopen(argv[3], "wb");
    if (!in || !out) return 2;
    if (mode == "preprocess") {
        auto h = read_all<int>(in, 9);
        auto norm = read_all<float>(in, 6);
        int format = h[0], channels = h[1], w = h[2], hh = h[3], pitch = h[4], uv_pitch = h[5];
        int dw = h[6], dh = h[7], resize = h[8];
        size_t bytes = format == 1 ? (size_t)pitch * hh + (size_t)uv_pitch * (hh / 2) : (size_t)pitch * hh;
        auto frame = read_all<u8>(in, bytes);
        std::vector<float> dst(3 * (size_t)dw * dh);
        LdNorm n;
        for (int c = 0; c < 3; ++c) { n.mean[c] = norm[c]; n.inv_std[c] = norm[3 + c]; }
        const u8* uv = frame.data() + (size_t)pitch * hh;
        emu_launch({(unsigned)(dw + 31) / 32, (unsigned)(dh + 7) / 8, 1}, {32, 8, 1}, [&] {
            ld_preprocess(frame.data(), pitch, channels, uv, uv_pitch, format, w, hh, dst.data(), dw, dh,
                          resize, n);
        });
        fwrite(dst.data(), sizeof(float), dst.size(), out);
    } else {
        auto h = read_all<int>(in, 5);
        int lw = h[0], lh = h[1], hw = h[2], hh = h[3], planes = h[4];
        auto lo = read_all<float>(in, (size_t)lw * lh * planes);
        auto g = read_all<float>(in, (size_t)hw * hh * planes);
        std::vector<float> hi((size_t)hw * hh * planes), adj((size_t)lw * lh * planes);
        emu_launch({(unsigned)(hw + 31) / 32, (unsigned)(hh + 7) / 8, (unsigned)planes}, {32, 8, 1},
                   [&] { ld_upsample_bilinear(lo.data(), lw, lh, hi.data(), hw, hh, planes); });
        emu_launch({(unsigned)(lw + 15) / 16, (unsigned)(lh + 15) / 16, (unsigned)planes}, {16, 16, 1},
                   [&] { ld_upsample_bilinear_adjoint(g.data(), hw, hh, adj.data(), lw, lh, planes, 0); });
        fwrite(hi.data(), sizeof(float), hi.size(), out);
        fwrite(adj.data(), sizeof(float), adj.size(), out);
    }
    fclose(in);
    fclose(out);
    return 0;
}
