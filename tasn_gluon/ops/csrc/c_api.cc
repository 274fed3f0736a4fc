// A plain C ABI over the sampler's kernels, with no MXNet in it: the kernels can be called and
// checked from ctypes (tests, tools/check_cuda_sampler.py). Every function returns 0 on
// success, or -1 with a message readable through tasn_sampler_last_error().
//
// Layouts: data (n, c, h, w), profiles att_y (n, ly) and att_x (n, lx), all contiguous;
// out (n, c, out_h, out_w) with out_h = int(h * scale), out_w = int(w * scale);
// ys (n, out_h) and xs (n, out_w) in double precision. The n images of one call are one batch:
// in legacy mode image b >= 1 reads C[-1] from image b - 1's table (sampler.h).
//
// Builds with CUDA (tasn_sampler_has_cuda() == 1) add tasn_sampler_cuda_*: the same three
// functions over device pointers, plus `scratch` (device memory of at least
// tasn_sampler_cuda_scratch_bytes(...) bytes) and `stream` (a cudaStream_t; NULL is the legacy
// default stream). With a scratch pointer they only enqueue work on the stream (synchronise it
// before reading results, e.g. with tasn_sampler_cuda_synchronize); with scratch == NULL they
// allocate it, wait for the stream and free it.
#include <string>

#include "sampler.h"

namespace {

thread_local std::string last_error;

bool setup(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ly, int64_t lx, double scale,
           double dense, int iters, int legacy, tasn::Geometry* g, tasn::SamplerParams* p) {
  g->n = n; g->c = c; g->h = h; g->w = w; g->ly = ly; g->lx = lx;
  p->scale = scale; p->dense = dense; p->iters = iters; p->legacy = legacy != 0;
  return tasn::validate(*p, g, &last_error);
}

template <typename T>
int grid(const T* att_y, const T* att_x, int64_t n, int64_t h, int64_t w, int64_t ly,
         int64_t lx, double scale, double dense, int iters, int legacy, double* ys, double* xs) {
  tasn::Geometry g;
  tasn::SamplerParams p;
  if (!setup(n, 1, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  tasn::compute_grid_cpu(att_y, att_x, g, p, ys, xs);
  return 0;
}

template <typename T>
int forward(const T* data, const T* att_y, const T* att_x, int64_t n, int64_t c, int64_t h,
            int64_t w, int64_t ly, int64_t lx, double scale, double dense, int iters, int legacy,
            T* out) {
  tasn::Geometry g;
  tasn::SamplerParams p;
  if (!setup(n, c, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  tasn::att_sampler_forward_cpu(data, att_y, att_x, g, p, out);
  return 0;
}

template <typename T>
int backward(const T* grad_out, const T* att_y, const T* att_x, int64_t n, int64_t c, int64_t h,
             int64_t w, int64_t ly, int64_t lx, double scale, double dense, int iters,
             int legacy, T* grad_data) {
  tasn::Geometry g;
  tasn::SamplerParams p;
  if (!setup(n, c, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  tasn::att_sampler_backward_cpu(grad_out, att_y, att_x, g, p, grad_data);
  return 0;
}

}  // namespace

#define TASN_C_ABI(SUFFIX, T)                                                                  \
  int tasn_sampler_grid_##SUFFIX(const T* att_y, const T* att_x, int64_t n, int64_t h,         \
                                 int64_t w, int64_t ly, int64_t lx, double scale,              \
                                 double dense, int iters, int legacy, double* ys, double* xs) { \
    return grid(att_y, att_x, n, h, w, ly, lx, scale, dense, iters, legacy, ys, xs);           \
  }                                                                                            \
  int tasn_sampler_forward_##SUFFIX(const T* data, const T* att_y, const T* att_x, int64_t n,  \
                                    int64_t c, int64_t h, int64_t w, int64_t ly, int64_t lx,   \
                                    double scale, double dense, int iters, int legacy,         \
                                    T* out) {                                                  \
    return forward(data, att_y, att_x, n, c, h, w, ly, lx, scale, dense, iters, legacy, out);  \
  }                                                                                            \
  int tasn_sampler_backward_##SUFFIX(const T* grad_out, const T* att_y, const T* att_x,        \
                                     int64_t n, int64_t c, int64_t h, int64_t w, int64_t ly,   \
                                     int64_t lx, double scale, double dense, int iters,        \
                                     int legacy, T* grad_data) {                               \
    return backward(grad_out, att_y, att_x, n, c, h, w, ly, lx, scale, dense, iters, legacy,   \
                    grad_data);                                                                \
  }

extern "C" {

TASN_C_ABI(f32, float)
TASN_C_ABI(f64, double)

const char* tasn_sampler_last_error() { return last_error.c_str(); }

// 1 when this build has the CUDA kernels.
int tasn_sampler_has_cuda() {
#ifdef TASN_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

}  // extern "C"

#ifdef TASN_WITH_CUDA
namespace {

// Runs `launch(scratch)` with the caller's scratch, or with its own (allocated, waited for,
// freed) when the caller gives none.
template <typename T, typename Launch>
int with_scratch(const tasn::Geometry& g, void* scratch, void* stream, Launch launch) {
  void* own = nullptr;
  if (scratch == nullptr) {
    last_error = tasn::cuda_malloc(tasn::cuda_scratch_bytes(g, sizeof(T)), &own);
    if (!last_error.empty()) return -1;
    scratch = own;
  }
  last_error = launch(scratch);
  if (own != nullptr) {
    const std::string sync = tasn::cuda_synchronize(stream);
    const std::string freed = tasn::cuda_free(own);
    if (last_error.empty()) last_error = sync.empty() ? freed : sync;
  }
  return last_error.empty() ? 0 : -1;
}

template <typename T>
int cuda_grid(const T* att_y, const T* att_x, int64_t n, int64_t h, int64_t w, int64_t ly,
              int64_t lx, double scale, double dense, int iters, int legacy, double* ys,
              double* xs, void* scratch, void* stream) {
  tasn::Geometry g;
  tasn::SamplerParams p;
  if (!setup(n, 1, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  return with_scratch<T>(g, scratch, stream, [&](void* s) {
    return tasn::att_sampler_grid_cuda<T, double>(att_y, att_x, g, p, ys, xs, s, stream);
  });
}

template <typename T>
int cuda_forward(const T* data, const T* att_y, const T* att_x, int64_t n, int64_t c, int64_t h,
                 int64_t w, int64_t ly, int64_t lx, double scale, double dense, int iters,
                 int legacy, T* out, void* scratch, void* stream) {
  tasn::Geometry g;
  tasn::SamplerParams p;
  if (!setup(n, c, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  return with_scratch<T>(g, scratch, stream, [&](void* s) {
    return tasn::att_sampler_forward_cuda<T>(data, att_y, att_x, g, p, out, s, stream);
  });
}

template <typename T>
int cuda_backward(const T* grad_out, const T* att_y, const T* att_x, int64_t n, int64_t c,
                  int64_t h, int64_t w, int64_t ly, int64_t lx, double scale, double dense,
                  int iters, int legacy, T* grad_data, void* scratch, void* stream) {
  tasn::Geometry g;
  tasn::SamplerParams p;
  if (!setup(n, c, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  return with_scratch<T>(g, scratch, stream, [&](void* s) {
    return tasn::att_sampler_backward_cuda<T>(grad_out, att_y, att_x, g, p, grad_data, s,
                                              stream);
  });
}

}  // namespace

#define TASN_C_ABI_CUDA(SUFFIX, T)                                                             \
  int tasn_sampler_cuda_grid_##SUFFIX(const T* att_y, const T* att_x, int64_t n, int64_t h,    \
                                      int64_t w, int64_t ly, int64_t lx, double scale,         \
                                      double dense, int iters, int legacy, double* ys,         \
                                      double* xs, void* scratch, void* stream) {               \
    return cuda_grid(att_y, att_x, n, h, w, ly, lx, scale, dense, iters, legacy, ys, xs,       \
                     scratch, stream);                                                         \
  }                                                                                            \
  int tasn_sampler_cuda_forward_##SUFFIX(const T* data, const T* att_y, const T* att_x,        \
                                         int64_t n, int64_t c, int64_t h, int64_t w,           \
                                         int64_t ly, int64_t lx, double scale, double dense,   \
                                         int iters, int legacy, T* out, void* scratch,         \
                                         void* stream) {                                       \
    return cuda_forward(data, att_y, att_x, n, c, h, w, ly, lx, scale, dense, iters, legacy,   \
                        out, scratch, stream);                                                 \
  }                                                                                            \
  int tasn_sampler_cuda_backward_##SUFFIX(const T* grad_out, const T* att_y, const T* att_x,   \
                                          int64_t n, int64_t c, int64_t h, int64_t w,          \
                                          int64_t ly, int64_t lx, double scale, double dense,  \
                                          int iters, int legacy, T* grad_data, void* scratch,  \
                                          void* stream) {                                      \
    return cuda_backward(grad_out, att_y, att_x, n, c, h, w, ly, lx, scale, dense, iters,      \
                         legacy, grad_data, scratch, stream);                                  \
  }

extern "C" {

TASN_C_ABI_CUDA(f32, float)
TASN_C_ABI_CUDA(f64, double)

// Bytes of device scratch that the tasn_sampler_cuda_* functions need for this call (the same
// for grid, forward and backward), or -1 on bad arguments. elem_size: 4 (f32) or 8 (f64).
int64_t tasn_sampler_cuda_scratch_bytes(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ly,
                                        int64_t lx, double scale, double dense, int iters,
                                        int legacy, int elem_size) {
  tasn::Geometry g;
  tasn::SamplerParams p;
  if (elem_size != 4 && elem_size != 8) {
    last_error = "elem_size must be 4 (float32) or 8 (float64)";
    return -1;
  }
  if (!setup(n, c, h, w, ly, lx, scale, dense, iters, legacy, &g, &p)) return -1;
  return static_cast<int64_t>(tasn::cuda_scratch_bytes(g, static_cast<size_t>(elem_size)));
}

// Waits for `stream` and reports an error of the work on it.
int tasn_sampler_cuda_synchronize(void* stream) {
  last_error = tasn::cuda_synchronize(stream);
  return last_error.empty() ? 0 : -1;
}

}  // extern "C"
#endif  // TASN_WITH_CUDA
