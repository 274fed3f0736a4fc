// Runs the CUDA kernels' bodies (tasn_gluon/ops/csrc/sampler_cuda_kernels.cuh) on the CPU,
// launched by the same launch code as sampler_cuda.cu (sampler_cuda_launch.h: scratch layout,
// tasks, work memory, channel groups): a block is `threads` std::threads meeting at a pthread
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
#include "sampler_cuda_launch.h"

namespace {

using tasn::Geometry;
using tasn::SamplerParams;
using namespace tasn::cuda_kernels;
using namespace tasn::cuda_launch;

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

// What sampler_cuda.cu's launch_grid does, with its layout (sampler_cuda_launch.h):
// tables_kernel for every image, then taps_kernel for every image, in one scratch buffer. The
// scratch starts as all-ones bytes (NaN doubles, -1 integers), so an entry read before it is
// written shows up.
template <typename T, typename C>
std::vector<char> run_grid(const T* att_y, const T* att_x, const Geometry& g,
                           const SamplerParams& p, C* ys, C* xs, bool taps, bool inverse,
                           int threads, Layout* L) {
  *L = layout_for<T>(g, threads);
  std::vector<char> scratch(L->total + 1, static_cast<char>(0xff));
  void* s = scratch.data();
  std::vector<double> shared, red(2 * threads), sums(2);
  const TablesTask<T> first = tables_task(att_y, att_x, g, p, *L, s);
  launch(g.n, threads, L->tables_shared_bytes(), &shared,
         [&](int64_t n, int t, HostBarrier& b) {
           TablesShared sh;
           sh.m = budget_work(*L, s, shared.data(), n);
           sh.red = red.data();
           sh.sums = sums.data();
           tables_program(first, n, sh, t, threads, b);
         });
  const TapsTask<T, C> second = taps_task<T, C>(g, p, *L, s, ys, xs, taps, inverse);
  launch(g.n, threads, L->taps_shared_bytes(), &shared,
         [&](int64_t n, int t, HostBarrier& b) {
           int32_t* counts = count_work(*L, s, reinterpret_cast<int32_t*>(shared.data()), n);
           taps_program(second, n, counts, t, threads, b);
         });
  return scratch;
}

template <typename T>
int grid(const T* att_y, const T* att_x, int64_t n, int64_t h, int64_t w, int64_t ly,
         int64_t lx, double scale, double dense, int iters, int legacy, double* ys, double* xs,
         int threads) {
  Geometry g;
  SamplerParams p;
  if (!setup(n, 1, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  Layout L;
  run_grid(att_y, att_x, g, p, ys, xs, false, false, threads, &L);
  return 0;
}

// The plane kernels: every (image, channel group) pair in blockIdx.y order, every pixel.
template <typename Pixel>
void each_plane_pixel(const Geometry& g, int64_t pixels, Pixel pixel) {
  const ChannelGroups groups = channel_groups(g);
  for (int64_t q = 0; q < groups.total; ++q) {
    int64_t n, c0;
    int count;
    groups.locate(q, g.c, &n, &c0, &count);
    for (int32_t e = 0; e < pixels; ++e) pixel(n, c0, count, e);
  }
}

template <typename T>
int forward(const T* data, const T* att_y, const T* att_x, int64_t n, int64_t c, int64_t h,
            int64_t w, int64_t ly, int64_t lx, double scale, double dense, int iters, int legacy,
            T* out, int threads) {
  Geometry g;
  SamplerParams p;
  if (!setup(n, c, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  Layout L;
  std::vector<char> scratch = run_grid<T, double>(att_y, att_x, g, p, nullptr, nullptr, true,
                                                  false, threads, &L);
  void* s = scratch.data();
  const PlaneShape shape = plane_shape(g);
  each_plane_pixel(g, g.out_h * g.out_w, [&](int64_t image, int64_t c0, int count, int32_t e) {
    forward_pixels(data, at<Tap<T>>(s, L.ytaps), at<Tap<T>>(s, L.xtaps), shape, image, c0,
                   count, e, out);
  });
  return 0;
}

template <typename T>
int backward(const T* grad_out, const T* att_y, const T* att_x, int64_t n, int64_t c, int64_t h,
             int64_t w, int64_t ly, int64_t lx, double scale, double dense, int iters,
             int legacy, T* grad_data, int threads) {
  Geometry g;
  SamplerParams p;
  if (!setup(n, c, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  Layout L;
  std::vector<char> scratch = run_grid<T, double>(att_y, att_x, g, p, nullptr, nullptr, true,
                                                  true, threads, &L);
  void* s = scratch.data();
  const PlaneShape shape = plane_shape(g);
  each_plane_pixel(g, g.h * g.w, [&](int64_t image, int64_t c0, int count, int32_t e) {
    backward_pixels(grad_out, at<Tap<T>>(s, L.ytaps), at<Tap<T>>(s, L.xtaps),
                    at<int32_t>(s, L.row_start), at<int32_t>(s, L.row_list),
                    at<int32_t>(s, L.col_start), at<int32_t>(s, L.col_list), shape, image, c0,
                    count, e, grad_data);
  });
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
