// CPU kernels of the attention sampler (OpenMP over images for the grid, over image planes
// for the sampling). The sampling is separable: every output row blends two source rows, and
// every output column of that blended row blends two of its pixels.
#include <math.h>
#include <string.h>

#include <algorithm>
#include <sstream>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

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

template <typename T>
void compute_grid_cpu(const T* att_y, const T* att_x, const Geometry& g,
                      const SamplerParams& params, double* ys, double* xs) {
  const int64_t ly = g.ly, lx = g.lx, stride = table_entries(ly, lx);
  // Every image's tables first, then the coordinates: a legacy image reads its C[-1] from the
  // previous image's table (legacy_before), which must be complete by then.
  std::vector<double> tables(g.n * stride);
#pragma omp parallel
  {
    std::vector<double> budget(budget_entries(ly, lx));
    double* my = budget.data();
    double* mx = my + ly;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.n; ++n) {
      profile_to_budget(att_y + n * ly, ly, g.out_h, my);
      profile_to_budget(att_x + n * lx, lx, g.out_w, mx);
      clip_and_give_back(my, ly, g.out_h, first_cap(params.scale, params.dense, g.h, ly),
                         mx, lx, g.out_w, first_cap(params.scale, params.dense, g.w, lx),
                         params.iters);
      double* cy = tables.data() + n * stride;
      cumulative_table(params.legacy, my, ly, cy);
      cumulative_table(params.legacy, mx, lx, cy + column_table_offset(ly));
    }
  }
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < g.n; ++n) {
    const double* cy = tables.data() + n * stride;
    const double* cx = cy + column_table_offset(ly);
    for (int64_t k = 0; k < g.out_h; ++k)
      ys[n * g.out_h + k] = axis_coordinate(params.legacy, cy, stride, n, ly, k, g.out_h, g.h);
    for (int64_t k = 0; k < g.out_w; ++k)
      xs[n * g.out_w + k] = axis_coordinate(params.legacy, cx, stride, n, lx, k, g.out_w, g.w);
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

// Output rows of the scalar path (forward_plane, below) are done kRows at a time: their
// vertical blends share one pass of the column tables (index and weights are loaded once for
// kRows outputs), which is the costly part.
constexpr int64_t kRows = 4;

// The scalar paths blend source rows into rows of w + 1 values: + 1 for the pair of the last
// pixel when w == 1 (its second tap, of weight 0, reads this pad).
inline int64_t row_stride(const Geometry& g) { return g.w + 1; }

// The SIMD path of the forward: how many output rows of a plane it did (all whole blocks of 8
// for float on a CPU with AVX, else none), and the scratch elements it needs per thread.
template <typename T>
int64_t forward_rows_simd(const T*, const Geometry&, const Taps<T>&, int64_t, int64_t, int64_t,
                          T*, T*) {
  return 0;
}
template <typename T>
int64_t forward_simd_scratch(const Geometry&) {
  return 0;
}

#if defined(__x86_64__) && defined(__GNUC__)
// AVX path of the float forward, eight output rows at a time. The scalar gather (forward_plane,
// below) loads two pixels, two weights and an index per output; here the eight rows' blends
// are stored transposed (column x holds the eight rows' values side by side), so one output
// column of all eight rows is two 8-wide loads and two multiplies. Only mul/add are used (no
// FMA), in the scalar code's order, so the results are bit-identical to it.

// forward_rows8_avx's scratch, carved from one buffer of floats(g) floats: the eight rows'
// blends over the column span, transposed ((w + 1) x 8), and their horizontal results,
// transposed too (out_w x 8).
struct Avx8Scratch {
  float* cols;
  float* outs;
  static int64_t floats(const Geometry& g) { return 8 * (g.w + 1) + 8 * g.out_w; }
  Avx8Scratch(float* base, const Geometry& g) : cols(base), outs(base + 8 * (g.w + 1)) {}
};

template <>
int64_t forward_simd_scratch<float>(const Geometry& g) {
  return Avx8Scratch::floats(g);
}

__attribute__((target("avx"))) inline void transpose8(__m256* v) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Output rows i .. i + 7 of one plane, source columns [lo, hi).
__attribute__((target("avx"))) void forward_rows8_avx(
    const float* in, const Geometry& g, const int64_t* y0, const int64_t* y1, const float* wy0,
    const float* wy1, const int64_t* x0, const float* wx0, const float* wx1, int64_t lo,
    int64_t hi, const Avx8Scratch& s, float* out) {
  float* cols = s.cols;
  float* outs = s.outs;
  const float* r0[8];
  const float* r1[8];
  __m256 a[8], b[8];
  for (int k = 0; k < 8; ++k) {
    r0[k] = in + y0[k] * g.w;
    r1[k] = in + y1[k] * g.w;
    a[k] = _mm256_set1_ps(wy0[k]);
    b[k] = _mm256_set1_ps(wy1[k]);
  }
  int64_t x = lo;
  for (; x + 8 <= hi; x += 8) {  // blend 8 columns of the 8 rows, store them transposed
    __m256 v[8];
    for (int k = 0; k < 8; ++k)
      v[k] = _mm256_add_ps(_mm256_mul_ps(a[k], _mm256_loadu_ps(r0[k] + x)),
                           _mm256_mul_ps(b[k], _mm256_loadu_ps(r1[k] + x)));
    transpose8(v);
    for (int m = 0; m < 8; ++m) _mm256_storeu_ps(cols + (x - lo + m) * 8, v[m]);
  }
  for (; x < hi; ++x)
    for (int k = 0; k < 8; ++k) cols[(x - lo) * 8 + k] = wy0[k] * r0[k][x] + wy1[k] * r1[k][x];
  for (int64_t j = 0; j < g.out_w; ++j) {  // the horizontal taps, for the 8 rows at once
    const float* p = cols + (x0[j] - lo) * 8;
    _mm256_storeu_ps(outs + j * 8,
                     _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(wx0[j]), _mm256_loadu_ps(p)),
                                   _mm256_mul_ps(_mm256_set1_ps(wx1[j]), _mm256_loadu_ps(p + 8))));
  }
  int64_t j = 0;
  for (; j + 8 <= g.out_w; j += 8) {  // back to 8 output rows
    __m256 v[8];
    for (int m = 0; m < 8; ++m) v[m] = _mm256_loadu_ps(outs + (j + m) * 8);
    transpose8(v);
    for (int k = 0; k < 8; ++k) _mm256_storeu_ps(out + k * g.out_w + j, v[k]);
  }
  for (; j < g.out_w; ++j)
    for (int k = 0; k < 8; ++k) out[k * g.out_w + j] = outs[j * 8 + k];
}

template <>
int64_t forward_rows_simd<float>(const float* in, const Geometry& g, const Taps<float>& t,
                                 int64_t n, int64_t lo, int64_t hi, float* scratch, float* out) {
  static const bool has_avx = __builtin_cpu_supports("avx");
  if (!has_avx) return 0;
  const Avx8Scratch s(scratch, g);
  const int64_t rows = g.out_h - g.out_h % 8;
  for (int64_t i = 0; i < rows; i += 8)
    forward_rows8_avx(in, g, t.y0 + n * g.out_h + i, t.y1 + n * g.out_h + i,
                      t.wy0 + n * g.out_h + i, t.wy1 + n * g.out_h + i, t.x0 + n * g.out_w,
                      t.wx0 + n * g.out_w, t.wx1 + n * g.out_w, lo, hi, s, out + i * g.out_w);
  return rows;
}
#endif

// Scratch elements per thread of the forward: kRows blended rows, or the SIMD path's.
template <typename T>
int64_t forward_scratch(const Geometry& g) {
  return std::max(kRows * row_stride(g), forward_simd_scratch<T>(g));
}

template <typename T>
void forward_plane(const T* __restrict__ in, const Geometry& g, const Taps<T>& t, int64_t n,
                   int64_t lo, int64_t hi, T* __restrict__ rows, T* __restrict__ out) {
  const int64_t *y0 = t.y0 + n * g.out_h, *y1 = t.y1 + n * g.out_h;
  const T *wy0 = t.wy0 + n * g.out_h, *wy1 = t.wy1 + n * g.out_h;
  const int64_t* x0 = t.x0 + n * g.out_w;  // taps are adjacent: x1 = x0 + 1
  const T *wx0 = t.wx0 + n * g.out_w, *wx1 = t.wx1 + n * g.out_w;
  const int64_t stride = row_stride(g);
  for (int64_t i = forward_rows_simd(in, g, t, n, lo, hi, rows, out); i < g.out_h; i += kRows) {
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

// Scratch elements per thread of the backward: one row.
inline int64_t backward_scratch(const Geometry& g) { return row_stride(g); }

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

// Runs `plane(p, n, lo, hi, scratch)` over every (image, channel) plane p = n * C + channel,
// in parallel: n is p's image, [lo, hi) the span of source columns its image's taps read, and
// `scratch` points to `scratch_elems` elements (zeroed once) of the calling thread.
template <typename T, typename PlaneFn>
void for_each_plane(const Geometry& g, const Taps<T>& t, int64_t scratch_elems, PlaneFn plane) {
  std::vector<int64_t> lo(g.n), hi(g.n);
  for (int64_t n = 0; n < g.n; ++n) column_span(t, g, n, &lo[n], &hi[n]);
  const int64_t planes = g.n * g.c;
#pragma omp parallel
  {
    std::vector<T> scratch(scratch_elems, T(0));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      const int64_t n = p / std::max<int64_t>(g.c, 1);
      plane(p, n, lo[n], hi[n], scratch.data());
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
  for_each_plane(g, taps, forward_scratch<T>(g), [&](int64_t p, int64_t n, int64_t lo,
                                                     int64_t hi, T* row) {
    forward_plane(data + p * in_plane, g, taps, n, lo, hi, row, out + p * out_plane);
  });
}

template <typename T>
void sample_backward_cpu(const T* grad_out, const Geometry& g, const Taps<T>& taps,
                         T* grad_data) {
  const int64_t in_plane = g.h * g.w, out_plane = g.out_h * g.out_w;
  for_each_plane(g, taps, backward_scratch(g), [&](int64_t p, int64_t n, int64_t lo,
                                                  int64_t hi, T* row) {
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
