// A tiny CPU emulation of the CUDA execution model, enough to run kernels/*.cu unchanged on the
// host for tests: one block at a time, one std::thread per CUDA thread, __syncthreads as a block
// barrier, warp shuffles through a per-warp buffer and barrier, atomics through atomic_ref.
// It checks the kernels' indexing, tiling and synchronisation logic without a GPU (not their
// performance, and not device-specific floating-point behaviour).
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;

struct EmuBlock {
    std::unique_ptr<std::barrier<>> block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<float> shuffle;
};
inline EmuBlock* emu_block = nullptr;

inline int emu_tid() { return threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y; }

inline void __syncthreads() { emu_block->block->arrive_and_wait(); }

inline float __shfl_down_sync(unsigned, float v, int offset) {
    int tid = emu_tid();
    int lane = tid & 31, warp = tid >> 5;
    emu_block->shuffle[tid] = v;
    emu_block->warps[warp]->arrive_and_wait();
    float r = (lane + offset < 32) ? emu_block->shuffle[tid + offset] : v;
    emu_block->warps[warp]->arrive_and_wait();
    return r;
}

inline double atomicAdd(double* address, double v) {
    return std::atomic_ref<double>(*address).fetch_add(v);
}

// Runs kernel(args...) over the grid, block by block.
template <typename F>
void emu_launch(dim3 grid, dim3 block, F kernel) {
    int threads = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                EmuBlock b;
                b.block = std::make_unique<std::barrier<>>(threads);
                int warps = (threads + 31) / 32;
                for (int w = 0; w < warps; ++w)
                    b.warps.push_back(std::make_unique<std::barrier<>>(std::min(32, threads - 32 * w)));
                b.shuffle.assign(warps * 32, 0.f);
                emu_block = &b;
                blockIdx = {bx, by, bz};
                blockDim = block;
                gridDim = grid;
                std::vector<std::thread> pool;
                for (unsigned tz = 0; tz < block.z; ++tz)
                    for (unsigned ty = 0; ty < block.y; ++ty)
                        for (unsigned tx = 0; tx < block.x; ++tx)
                            pool.emplace_back([=] {
                                threadIdx = {tx, ty, tz};
                                kernel();
                            });
                for (auto& t : pool) t.join();
                emu_block = nullptr;
            }
}

// The kernels' block reductions (ld_block_sum_atomic, ld_block_sums_atomic in kernels/common.cuh)
// use warp shuffles, which cost two thread barriers each here; under emulation they become the
// same sums through a shared double accumulator (three block barriers per reduction).
#define LD_EMULATED_REDUCTIONS
template <int N>
inline void ld_block_sums_atomic(float (&v)[N], double* acc) {
    static double partial[N];
    int tid = emu_tid();
    __syncthreads();
    if (tid == 0)
        for (int j = 0; j < N; ++j) partial[j] = 0.0;
    __syncthreads();
    for (int j = 0; j < N; ++j) std::atomic_ref<double>(partial[j]).fetch_add((double)v[j]);
    __syncthreads();
    if (tid < N && partial[tid] != 0.0) atomicAdd(acc + tid, partial[tid]);
}
inline void ld_block_sum_atomic(float v, double* acc) {
    float a[1] = {v};
    ld_block_sums_atomic<1>(a, acc);
}
