// Runs the fused loss kernels (kernels/loss.cu, emulated on the CPU) on a scene read from a
// binary file and writes every output, for tests/cuda_emulated.rs. Launch order and grid sizes
// are those of src/cuda/device.rs.
#include "emu.hpp"
#include "kernels_loss.cu"
#include <cstdio>
#include <cstring>

static std::vector<float> read_floats(FILE* f, size_t n) {
    std::vector<float> v(n);
    if (fread(v.data(), sizeof(float), n, f) != n) { fprintf(stderr, "short input\n"); exit(2); }
    return v;
}

int main(int argc, char** argv) {
    if (argc != 3) { fprintf(stderr, "usage: harness IN OUT\n"); return 2; }
    FILE* in = fopen(argv[1], "rb");
    if (!in) return 2;
    int hdr[6];  // w, h, n, scales, automask, invert_mask
    if (fread(hdr, sizeof(int), 6, in) != 6) return 2;
    int w = hdr[0], h = hdr[1], n = hdr[2], scales = hdr[3];
    size_t hw = (size_t)w * h;
    std::vector<float> cfg = read_floats(in, 8);  // fx fy cx cy min_disp max_disp ssim smooth
    std::vector<float> target = read_floats(in, 3 * hw);
    std::vector<std::vector<float>> sources, disps, pyr;
    for (int i = 0; i < n; ++i) sources.push_back(read_floats(in, 3 * hw));
    for (int s = 0; s < scales; ++s) disps.push_back(read_floats(in, (size_t)(w >> s) * (h >> s)));
    for (int s = 0; s < scales; ++s) pyr.push_back(read_floats(in, 3 * (size_t)(w >> s) * (h >> s)));
    std::vector<float> poses = read_floats(in, 6 * n);
    std::vector<float> noise = read_floats(in, n * hw);
    fclose(in);

    std::vector<float> transforms(12 * n), min_error(hw), id_min(hw), grad_full(scales * hw);
    std::vector<u8> winners(scales * hw), id_arg(hw);
    std::vector<std::vector<float>> grad_disp;
    for (int s = 0; s < scales; ++s) grad_disp.emplace_back((size_t)(w >> s) * (h >> s), 0.f);
    std::vector<float> grad_poses(6 * n), grad_intr(4), scalars(LD_SCALARS);
    std::vector<double> accum(LD_ACC_SIZE, 0.0);

    LdLossParams p;
    memset(&p, 0, sizeof(p));
    p.target = target.data();
    for (int i = 0; i < n; ++i) p.sources[i] = sources[i].data();
    for (int s = 0; s < scales; ++s) {
        p.disp[s] = disps[s].data();
        p.pyramid[s] = pyr[s].data();
        p.grad_disp[s] = grad_disp[s].data();
    }
    p.noise = noise.data();
    p.poses = poses.data();
    p.transforms = transforms.data();
    p.winners = winners.data();
    p.min_error = min_error.data();
    p.id_min = id_min.data();
    p.id_arg = id_arg.data();
    p.grad_full = grad_full.data();
    p.grad_poses = grad_poses.data();
    p.grad_intrinsics = grad_intr.data();
    p.scalars = scalars.data();
    p.accum = accum.data();
    p.width = w; p.height = h; p.n_sources = n; p.n_scales = scales;
    p.automask = hdr[4]; p.invert_mask = hdr[5];
    p.fx = cfg[0]; p.fy = cfg[1]; p.cx = cfg[2]; p.cy = cfg[3];
    p.min_disp = cfg[4]; p.max_disp = cfg[5]; p.ssim_weight = cfg[6]; p.smoothness_weight = cfg[7];

    unsigned tx = (w + LD_TW - 1) / LD_TW, ty = (h + LD_TH - 1) / LD_TH;
    dim3 one{1, 1, 1}, warp{32, 1, 1}, tile{LD_TW, LD_TH, 1};
    dim3 flat_grid{(unsigned)((hw + 255) / 256), 1, (unsigned)scales}, flat_block{256, 1, 1};
    emu_launch(one, warp, [&] { ld_pose_matrices(p); });
    if (p.automask) emu_launch({tx, ty, 1}, tile, [&] { ld_identity_error(p); });
    emu_launch(flat_grid, flat_block, [&] { ld_smooth_sum(p); });
    emu_launch({tx, ty, (unsigned)scales}, tile, [&] { ld_loss_forward(p); });
    emu_launch(flat_grid, flat_block, [&] { ld_smooth_forward(p); });
    emu_launch({tx, ty, (unsigned)scales}, tile, [&] { ld_loss_backward(p); });
    emu_launch({(unsigned)(w + 15) / 16, (unsigned)(h + 15) / 16, (unsigned)scales}, {16, 16, 1},
               [&] { ld_disparity_backward(p); });
    emu_launch(one, warp, [&] { ld_finalize(p); });

    FILE* out = fopen(argv[2], "wb");
    if (!out) return 2;
    fwrite(scalars.data(), sizeof(float), scalars.size(), out);
    fwrite(min_error.data(), sizeof(float), hw, out);
    std::vector<float> win0(hw);
    for (size_t i = 0; i < hw; ++i) win0[i] = (float)winners[i];
    fwrite(win0.data(), sizeof(float), hw, out);
    for (int s = 0; s < scales; ++s) fwrite(grad_disp[s].data(), sizeof(float), grad_disp[s].size(), out);
    fwrite(grad_poses.data(), sizeof(float), grad_poses.size(), out);
    fwrite(grad_intr.data(), sizeof(float), 4, out);
    fclose(out);
    return 0;
}
