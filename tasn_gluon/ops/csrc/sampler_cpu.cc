// CPU kernels of the attention sampler (OpenMP over images for the grid, over image planes
// for the sampling). The sampling is separable: every output row blends two source rows, and
// every output column of that blended row blends two of its pixels.
#include <math.h>
#include <string.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "sampler.h"
#include "sampler_math.h"

namespace tasn {

bool validate(const SamplerParams& params, Geometry* g, std::string* error) {
  std::ostringstream msg;
  if (!(params.scale > 0.0) || !isfinite(params.scale)) {
    msg << "scale must be a finite number > 0, got " << params.scale;
  } else if (!(params.dense >= 1.0) || !isfinite(params.dense)) {
    msg << "dense must be a finite number >= 1, got " << params.dense;
  } else if (params.iters < 0) {
    msg << "iters must be >= 0, got " << params.iters;
  } else if (g->n < 0 || g->c < 0 || g->h < 0 || g->w < 0) {
    msg << "negative data shape";
  } else if (g->ly < 2 || g->lx < 2) {
    msg << "profile lengths must be >= 2, got att_y length " << g->ly << " and att_x length "
        << g->lx;
  } else {
    g->out_h = output_length(g->h, params.scale);
    g->out_w = output_length(g->w, params.scale);
    if (g->out_h < 1 || g->out_w < 1) {
      msg << "empty output: data of " << g->h << "x" << g->w << " at scale " << params.scale
          << " gives " << g->out_h << "x" << g->out_w;
    }
  }
  *error = msg.str();
  return error->empty();
}

int64_t grid_scratch_per_image(const Geometry& g) { return 2 * (g.ly + g.lx) + 2; }

template <typename T>
void compute_grid_cpu(const T* att_y, const T* att_x, const Geometry& g,
                      const SamplerParams& params, double* ys, double* xs) {
  const int64_t ly = g.ly, lx = g.lx;
#pragma omp parallel
  {
    std::vector<double> scratch(grid_scratch_per_image(g));
    double* my = scratch.data();
    double* mx = my + ly;
    double* cy = mx + lx;      // ly + 1 entries
    double* cx = cy + ly + 1;  // lx + 1 entries
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.n; ++n) {
      profile_to_budget(att_y + n * ly, ly, g.out_h, my);
      profile_to_budget(att_x + n * lx, lx, g.out_w, mx);
      clip_and_give_back(my, ly, g.out_h, first_cap(params.scale, params.dense, g.h, ly),
                         mx, lx, g.out_w, first_cap(params.scale, params.dense, g.w, lx),
                         params.iters);
      double* row_coords = ys + n * g.out_h;
      double* col_coords = xs + n * g.out_w;
      if (params.legacy) {
        legacy_cdf(my, ly, cy);
        legacy_cdf(mx, lx, cx);
        for (int64_t k = 0; k < g.out_h; ++k) row_coords[k] = legacy_coordinate(cy, ly, k, g.out_h, g.h);
        for (int64_t k = 0; k < g.out_w; ++k) col_coords[k] = legacy_coordinate(cx, lx, k, g.out_w, g.w);
      } else {
        clean_cdf(my, ly, cy);
        clean_cdf(mx, lx, cx);
        for (int64_t k = 0; k < g.out_h; ++k) row_coords[k] = clean_coordinate(cy, ly, k, g.out_h, g.h);
        for (int64_t k = 0; k < g.out_w; ++k) col_coords[k] = clean_coordinate(cx, lx, k, g.out_w, g.w);
      }
    }
  }
}

template <typename T>
void compute_taps_cpu(const double* ys, const double* xs, const Geometry& g, bool legacy,
                      Taps<T> t) {
  for (int64_t i = 0; i < g.n * g.out_h; ++i)
    bilinear_taps(ys[i], g.h, legacy, &t.y0[i], &t.y1[i], &t.wy0[i], &t.wy1[i]);
  for (int64_t j = 0; j < g.n * g.out_w; ++j)
    bilinear_taps(xs[j], g.w, legacy, &t.x0[j], &t.x1[j], &t.wx0[j], &t.wx1[j]);
}

namespace {

// The span of source columns that image n's output columns read, so row passes skip the rest.
template <typename T>
void column_span(const Taps<T>& t, const Geometry& g, int64_t n, int64_t* lo, int64_t* hi) {
  const int64_t* x0 = t.x0 + n * g.out_w;
  const int64_t* x1 = t.x1 + n * g.out_w;
  int64_t a = g.w, b = -1;
  for (int64_t j = 0; j < g.out_w; ++j) {
    a = std::min(a, std::min(x0[j], x1[j]));
    b = std::max(b, std::max(x0[j], x1[j]));
  }
  *lo = a;
  *hi = b + 1;
}

// Output rows are done kRows at a time: their vertical blends share one pass of the column
// tables (index and weights are loaded once for kRows outputs), which is the costly part.
constexpr int64_t kRows = 4;

template <typename T>
void forward_plane(const T* __restrict__ in, const Geometry& g, const Taps<T>& t, int64_t n,
                   int64_t lo, int64_t hi, T* __restrict__ rows, T* __restrict__ out) {
  const int64_t *y0 = t.y0 + n * g.out_h, *y1 = t.y1 + n * g.out_h;
  const T *wy0 = t.wy0 + n * g.out_h, *wy1 = t.wy1 + n * g.out_h;
  const int64_t* x0 = t.x0 + n * g.out_w;  // taps are adjacent: x1 = x0 + 1
  const T *wx0 = t.wx0 + n * g.out_w, *wx1 = t.wx1 + n * g.out_w;
  const int64_t stride = g.w + 1;
  for (int64_t i = 0; i < g.out_h; i += kRows) {
    const int64_t count = std::min(kRows, g.out_h - i);
    for (int64_t k = 0; k < count; ++k) {
      const T* __restrict__ r0 = in + y0[i + k] * g.w;
      const T* __restrict__ r1 = in + y1[i + k] * g.w;
      const T a = wy0[i + k], b = wy1[i + k];
      T* __restrict__ row = rows + k * stride;
      for (int64_t x = lo; x < hi; ++x) row[x] = a * r0[x] + b * r1[x];
    }
    T* o = out + i * g.out_w;
    if (count == kRows) {
      for (int64_t j = 0; j < g.out_w; ++j) {
        const T* p = rows + x0[j];
        const T a = wx0[j], b = wx1[j];
        o[j] = a * p[0] + b * p[1];
        o[j + g.out_w] = a * p[stride] + b * p[stride + 1];
        o[j + 2 * g.out_w] = a * p[2 * stride] + b * p[2 * stride + 1];
        o[j + 3 * g.out_w] = a * p[3 * stride] + b * p[3 * stride + 1];
      }
    } else {
      for (int64_t k = 0; k < count; ++k)
        for (int64_t j = 0; j < g.out_w; ++j) {
          const T* p = rows + k * stride + x0[j];
          o[k * g.out_w + j] = wx0[j] * p[0] + wx1[j] * p[1];
        }
    }
  }
}

template <typename T>
void backward_plane(const T* __restrict__ gout, const Geometry& g, const Taps<T>& t, int64_t n,
                    int64_t lo, int64_t hi, T* __restrict__ row, T* __restrict__ gin) {
  const int64_t *y0 = t.y0 + n * g.out_h, *y1 = t.y1 + n * g.out_h;
  const T *wy0 = t.wy0 + n * g.out_h, *wy1 = t.wy1 + n * g.out_h;
  const int64_t* x0 = t.x0 + n * g.out_w;  // taps are adjacent: x1 = x0 + 1
  const T *wx0 = t.wx0 + n * g.out_w, *wx1 = t.wx1 + n * g.out_w;
  memset(gin, 0, sizeof(T) * g.h * g.w);
  for (int64_t i = 0; i < g.out_h; ++i) {
    std::fill(row + lo, row + hi, T(0));
    const T* go = gout + i * g.out_w;
    for (int64_t j = 0; j < g.out_w; ++j) {
      T* pair = row + x0[j];
      pair[0] += wx0[j] * go[j];
      pair[1] += wx1[j] * go[j];
    }
    T* __restrict__ r0 = gin + y0[i] * g.w;
    const T a = wy0[i];
    for (int64_t x = lo; x < hi; ++x) r0[x] += a * row[x];
    T* __restrict__ r1 = gin + y1[i] * g.w;
    const T b = wy1[i];
    for (int64_t x = lo; x < hi; ++x) r1[x] += b * row[x];
  }
}

// Runs `plane(n, lo, hi, row, in_offset, out_offset)` over every (image, channel) plane.
template <typename T, typename PlaneFn>
void for_each_plane(const Geometry& g, const Taps<T>& t, PlaneFn plane) {
  std::vector<int64_t> lo(g.n), hi(g.n);
  for (int64_t n = 0; n < g.n; ++n) column_span(t, g, n, &lo[n], &hi[n]);
  const int64_t planes = g.n * g.c;
#pragma omp parallel
  {
    std::vector<T> row(kRows * (g.w + 1), T(0));  // + 1: the pair of the last pixel when w == 1
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      const int64_t n = p / std::max<int64_t>(g.c, 1);
      plane(p, n, lo[n], hi[n], row.data());
    }
  }
}

// Scratch of the whole CPU operator: coordinates and taps for every image.
template <typename T>
struct TapStorage {
  std::vector<double> ys, xs;
  std::vector<int64_t> idx;
  std::vector<T> w;
  Taps<T> taps;
  TapStorage(const T* att_y, const T* att_x, const Geometry& g, const SamplerParams& params)
      : ys(g.n * g.out_h), xs(g.n * g.out_w), idx(2 * g.n * (g.out_h + g.out_w)),
        w(2 * g.n * (g.out_h + g.out_w)) {
    const int64_t rows = g.n * g.out_h, cols = g.n * g.out_w;
    taps = Taps<T>{idx.data(), idx.data() + rows, idx.data() + 2 * rows,
                   idx.data() + 2 * rows + cols, w.data(), w.data() + rows,
                   w.data() + 2 * rows, w.data() + 2 * rows + cols};
    compute_grid_cpu(att_y, att_x, g, params, ys.data(), xs.data());
    compute_taps_cpu(ys.data(), xs.data(), g, params.legacy, taps);
  }
};

}  // namespace

template <typename T>
void sample_forward_cpu(const T* data, const Geometry& g, const Taps<T>& taps, T* out) {
  const int64_t in_plane = g.h * g.w, out_plane = g.out_h * g.out_w;
  for_each_plane(g, taps, [&](int64_t p, int64_t n, int64_t lo, int64_t hi, T* row) {
    forward_plane(data + p * in_plane, g, taps, n, lo, hi, row, out + p * out_plane);
  });
}

template <typename T>
void sample_backward_cpu(const T* grad_out, const Geometry& g, const Taps<T>& taps,
                         T* grad_data) {
  const int64_t in_plane = g.h * g.w, out_plane = g.out_h * g.out_w;
  for_each_plane(g, taps, [&](int64_t p, int64_t n, int64_t lo, int64_t hi, T* row) {
    backward_plane(grad_out + p * out_plane, g, taps, n, lo, hi, row, grad_data + p * in_plane);
  });
}

template <typename T>
void att_sampler_forward_cpu(const T* data, const T* att_y, const T* att_x, const Geometry& g,
                             const SamplerParams& params, T* out) {
  TapStorage<T> s(att_y, att_x, g, params);
  sample_forward_cpu(data, g, s.taps, out);
}

template <typename T>
void att_sampler_backward_cpu(const T* grad_out, const T* att_y, const T* att_x,
                              const Geometry& g, const SamplerParams& params, T* grad_data) {
  TapStorage<T> s(att_y, att_x, g, params);
  sample_backward_cpu(grad_out, g, s.taps, grad_data);
}

#define TASN_INSTANTIATE(T)                                                                  \
  template void compute_grid_cpu<T>(const T*, const T*, const Geometry&, const SamplerParams&, \
                                    double*, double*);                                       \
  template void compute_taps_cpu<T>(const double*, const double*, const Geometry&, bool,      \
                                    Taps<T>);                                                \
  template void sample_forward_cpu<T>(const T*, const Geometry&, const Taps<T>&, T*);         \
  template void sample_backward_cpu<T>(const T*, const Geometry&, const Taps<T>&, T*);        \
  template void att_sampler_forward_cpu<T>(const T*, const T*, const T*, const Geometry&,     \
                                           const SamplerParams&, T*);                        \
  template void att_sampler_backward_cpu<T>(const T*, const T*, const T*, const Geometry&,    \
                                            const SamplerParams&, T*);

TASN_INSTANTIATE(float)
TASN_INSTANTIATE(double)

}  // namespace tasn
