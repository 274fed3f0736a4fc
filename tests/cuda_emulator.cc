// Runs the CUDA kernels' bodies (tasn_gluon/ops/csrc/sampler_cuda_kernels.cuh) on the CPU, the
// way sampler_cuda.cu launches them: a block is `threads` std::threads meeting at a pthread
// barrier, the grid's two launches (tables, then taps) run one after the other; the sampling
// programs run once per output (or source) pixel. tests/test_cuda_build.py compiles this with
// g++ and compares it with the CPU kernels bit for bit, so the GPU code's logic is tested
// without a GPU.
//
// The functions take the C ABI's arguments (c_api.cc) plus the block size; 0 or -1 as there.
#include <math.h>
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

// One launch of `blocks` blocks of `threads` threads running program(block, thread, barrier),
// one block after the other. `shared_bytes` of the block's dynamic shared memory are filled
// with garbage, not zeros, before each block: a kernel must not rely on shared memory it did
// not write.
template <typename Program>
void launch(int64_t blocks, int threads, size_t shared_bytes, std::vector<double>* shared,
            Program program) {
  shared->assign((shared_bytes + sizeof(double) - 1) / sizeof(double) + 1, 0.0);
  for (int64_t n = 0; n < blocks; ++n) {
    memset(shared->data(), 0x7f, shared->size() * sizeof(double));
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, nullptr, static_cast<unsigned>(threads));
    std::vector<std::thread> block;
    for (int t = 0; t < threads; ++t) {
      block.emplace_back([&program, &barrier, n, t] {
        HostBarrier b{&barrier};
        program(n, t, b);
      });
    }
    for (auto& th : block) th.join();
    pthread_barrier_destroy(&barrier);
  }
}

// What sampler_cuda.cu's launch_grid does: tables_kernel for every image, then taps_kernel for
// every image, their work memory in "shared" memory. The table buffer starts as NaN, so a
// table entry read before it is written shows up.
template <typename T, typename C>
void run_grid(const T* att_y, const T* att_x, const Geometry& g, const SamplerParams& p,
              TapsTask<T, C> taps, int threads) {
  std::vector<double> tables(g.n * tasn::table_entries(g.ly, g.lx), NAN);
  std::vector<double> shared, red(2 * threads), sums(2);
  const TablesTask<T> first{att_y, att_x, g, p, tables.data()};
  launch(g.n, threads, tasn::budget_entries(g.ly, g.lx) * sizeof(double), &shared,
         [&](int64_t n, int t, HostBarrier& b) {
           TablesShared sh;
           sh.m = shared.data();
           sh.red = red.data();
           sh.sums = sums.data();
           tables_program(first, n, sh, t, threads, b);
         });
  taps.tables = tables.data();
  taps.g = g;
  taps.params = p;
  launch(g.n, threads, taps_counts_per_image(g, threads) * sizeof(int32_t), &shared,
         [&](int64_t n, int t, HostBarrier& b) {
           taps_program(taps, n, reinterpret_cast<int32_t*>(shared.data()), t, threads, b);
         });
}

template <typename T>
struct Tables {
  std::vector<Tap<T>> ytaps, xtaps;
  std::vector<int32_t> row_start, row_list, col_start, col_list;
  Tables(const Geometry& g)
      : ytaps(g.n * g.out_h), xtaps(g.n * g.out_w), row_start(g.n * (g.h + 1), -1),
        row_list(g.n * 2 * g.out_h, -1), col_start(g.n * (g.w + 1), -1),
        col_list(g.n * 2 * g.out_w, -1) {}

  // The taps task that writes these tables (and their inverses when `inverse`).
  TapsTask<T, double> task(bool inverse) {
    TapsTask<T, double> k{};
    k.ytaps = ytaps.data();
    k.xtaps = xtaps.data();
    if (inverse) {
      k.row_start = row_start.data();
      k.row_list = row_list.data();
      k.col_start = col_start.data();
      k.col_list = col_list.data();
    }
    return k;
  }
};

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
  TapsTask<T, double> task{};
  task.ys = ys;
  task.xs = xs;
  run_grid(att_y, att_x, g, p, task, threads);
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
  run_grid(att_y, att_x, g, p, tables.task(false), threads);
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
  run_grid(att_y, att_x, g, p, tables.task(true), threads);
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
