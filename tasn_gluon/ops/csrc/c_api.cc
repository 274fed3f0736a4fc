// A plain C ABI over the sampler's kernels, with no MXNet in it: the kernels can be called and
// checked from ctypes (tests, tools/check_cuda_sampler.py). Every function returns 0 on
// success, or -1 with a message readable through tasn_sampler_last_error().
//
// Layouts: data (n, c, h, w), profiles att_y (n, ly) and att_x (n, lx), all contiguous;
// out (n, c, out_h, out_w) with out_h = int(h * scale), out_w = int(w * scale);
// ys (n, out_h) and xs (n, out_w) in double precision.
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
