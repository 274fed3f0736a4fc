// Runs the CUDA kernels' bodies (tasn_gluon/ops/csrc/sampler_cuda_kernels.cuh) on the CPU, the
// way sampler_cuda.cu launches them: a block is `threads` std::threads meeting at a pthread
// barrier, with the same aliasing of the block's shared memory; the sampling programs run once
// per output (or source) pixel. tests/test_cuda_build.py compiles this with g++ and compares
// it with the CPU kernels bit for bit, so the GPU code's logic is tested without a GPU.
//
// The functions take the C ABI's arguments (c_api.cc) plus the block size; 0 or -1 as there.
#include <pthread.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "sampler.h"
#include "sampler_cuda_kernels.cuh"

namespace {

using tasn::Geometry;
using tasn::SamplerParams;
using namespace tasn::cuda_kernels;

thread_local std::string last_error;

struct HostBarrier {
  pthread_barrier_t* barrier;
  void operator()() const { pthread_barrier_wait(barrier); }
};

bool setup(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ly, int64_t lx, double scale,
           double dense, int iters, int legacy, Geometry* g, SamplerParams* p) {
  g->n = n; g->c = c; g->h = h; g->w = w; g->ly = ly; g->lx = lx;
  p->scale = scale; p->dense = dense; p->iters = iters; p->legacy = legacy != 0;
  return tasn::validate(*p, g, &last_error);
}

// grid_kernel: one block per image; the budgets and the counters share one buffer, as they
// share the kernel's dynamic shared memory.
template <typename T, typename C>
void run_grid(const GridTask<T, C>& task, int threads) {
  const Geometry& g = task.g;
  const size_t m_bytes = tasn::grid_scratch_per_image(g) * sizeof(double);
  const size_t count_bytes = grid_counts_per_image(g, threads) * sizeof(int32_t);
  std::vector<double> shared((std::max(m_bytes, count_bytes) + sizeof(double) - 1) /
                             sizeof(double));
  std::vector<double> red(2 * threads), sums(2);
  for (int64_t n = 0; n < g.n; ++n) {
    // Garbage, not zeros: a kernel must not rely on shared memory it did not write.
    memset(shared.data(), 0x7f, shared.size() * sizeof(double));
    GridShared sh;
    sh.m = shared.data();
    sh.red = red.data();
    sh.sums = sums.data();
    sh.counts = reinterpret_cast<int32_t*>(shared.data());
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, nullptr, static_cast<unsigned>(threads));
    std::vector<std::thread> block;
    for (int t = 0; t < threads; ++t) {
      block.emplace_back([&task, &sh, &barrier, n, t, threads] {
        HostBarrier b{&barrier};
        grid_program(task, n, sh, t, threads, b);
      });
    }
    for (auto& th : block) th.join();
    pthread_barrier_destroy(&barrier);
  }
}

template <typename T>
struct Tables {
  std::vector<Tap<T>> ytaps, xtaps;
  std::vector<int32_t> row_start, row_list, col_start, col_list;
  Tables(const Geometry& g)
      : ytaps(g.n * g.out_h), xtaps(g.n * g.out_w), row_start(g.n * (g.h + 1), -1),
        row_list(g.n * 2 * g.out_h, -1), col_start(g.n * (g.w + 1), -1),
        col_list(g.n * 2 * g.out_w, -1) {}
};

template <typename T>
GridTask<T, double> task_for(const T* att_y, const T* att_x, const Geometry& g,
                             const SamplerParams& p, Tables<T>* tables, bool inverse) {
  GridTask<T, double> task{};
  task.att_y = att_y;
  task.att_x = att_x;
  task.g = g;
  task.params = p;
  task.ytaps = tables->ytaps.data();
  task.xtaps = tables->xtaps.data();
  if (inverse) {
    task.row_start = tables->row_start.data();
    task.row_list = tables->row_list.data();
    task.col_start = tables->col_start.data();
    task.col_list = tables->col_list.data();
  }
  return task;
}

PlaneShape plane_shape(const Geometry& g) {
  PlaneShape s;
  s.channels = g.c;
  s.h = static_cast<int32_t>(g.h);
  s.w = static_cast<int32_t>(g.w);
  s.out_h = static_cast<int32_t>(g.out_h);
  s.out_w = static_cast<int32_t>(g.out_w);
  return s;
}

template <typename T>
int grid(const T* att_y, const T* att_x, int64_t n, int64_t h, int64_t w, int64_t ly,
         int64_t lx, double scale, double dense, int iters, int legacy, double* ys, double* xs,
         int threads) {
  Geometry g;
  SamplerParams p;
  if (!setup(n, 1, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  GridTask<T, double> task{};
  task.att_y = att_y;
  task.att_x = att_x;
  task.g = g;
  task.params = p;
  task.ys = ys;
  task.xs = xs;
  run_grid(task, threads);
  return 0;
}

template <typename T>
int forward(const T* data, const T* att_y, const T* att_x, int64_t n, int64_t c, int64_t h,
            int64_t w, int64_t ly, int64_t lx, double scale, double dense, int iters, int legacy,
            T* out, int threads) {
  Geometry g;
  SamplerParams p;
  if (!setup(n, c, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  Tables<T> tables(g);
  run_grid(task_for(att_y, att_x, g, p, &tables, false), threads);
  const PlaneShape s = plane_shape(g);
  for (int64_t image = 0; image < n; ++image)
    for (int64_t c0 = 0; c0 < c; c0 += kChannelsPerThread)
      for (int32_t e = 0; e < s.out_h * s.out_w; ++e)
        forward_pixels(data, tables.ytaps.data(), tables.xtaps.data(), s, image, c0,
                       static_cast<int>(std::min<int64_t>(kChannelsPerThread, c - c0)), e, out);
  return 0;
}

template <typename T>
int backward(const T* grad_out, const T* att_y, const T* att_x, int64_t n, int64_t c, int64_t h,
             int64_t w, int64_t ly, int64_t lx, double scale, double dense, int iters,
             int legacy, T* grad_data, int threads) {
  Geometry g;
  SamplerParams p;
  if (!setup(n, c, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  Tables<T> tables(g);
  run_grid(task_for(att_y, att_x, g, p, &tables, true), threads);
  const PlaneShape s = plane_shape(g);
  for (int64_t image = 0; image < n; ++image)
    for (int64_t c0 = 0; c0 < c; c0 += kChannelsPerThread)
      for (int32_t e = 0; e < s.h * s.w; ++e)
        backward_pixels(grad_out, tables.ytaps.data(), tables.xtaps.data(),
                        tables.row_start.data(), tables.row_list.data(),
                        tables.col_start.data(), tables.col_list.data(), s, image, c0,
                        static_cast<int>(std::min<int64_t>(kChannelsPerThread, c - c0)), e,
                        grad_data);
  return 0;
}

}  // namespace

#define EMULATOR_ABI(SUFFIX, T)                                                                \
  int emu_grid_##SUFFIX(const T* att_y, const T* att_x, int64_t n, int64_t h, int64_t w,       \
                        int64_t ly, int64_t lx, double scale, double dense, int iters,         \
                        int legacy, double* ys, double* xs, int threads) {                     \
    return grid(att_y, att_x, n, h, w, ly, lx, scale, dense, iters, legacy, ys, xs, threads);  \
  }                                                                                            \
  int emu_forward_##SUFFIX(const T* data, const T* att_y, const T* att_x, int64_t n,           \
                           int64_t c, int64_t h, int64_t w, int64_t ly, int64_t lx,            \
                           double scale, double dense, int iters, int legacy, T* out,          \
                           int threads) {                                                      \
    return forward(data, att_y, att_x, n, c, h, w, ly, lx, scale, dense, iters, legacy, out,   \
                   threads);                                                                   \
  }                                                                                            \
  int emu_backward_##SUFFIX(const T* grad_out, const T* att_y, const T* att_x, int64_t n,      \
                            int64_t c, int64_t h, int64_t w, int64_t ly, int64_t lx,           \
                            double scale, double dense, int iters, int legacy, T* grad_data,   \
                            int threads) {                                                     \
    return backward(grad_out, att_y, att_x, n, c, h, w, ly, lx, scale, dense, iters, legacy,   \
                    grad_data, threads);                                                       \
  }

extern "C" {
EMULATOR_ABI(f32, float)
EMULATOR_ABI(f64, double)
const char* emu_last_error() { return last_error.c_str(); }
}
