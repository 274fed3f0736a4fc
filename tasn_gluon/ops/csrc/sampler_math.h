// The attention sampler's arithmetic (TASN spec, section 5), shared by the C++ and CUDA kernels
// so that the two cannot drift. Everything here works on one image and one axis at a time, in
// double precision, sequentially and in a fixed order: the grid is tiny (a few hundred values
// per image), and a fixed order makes the CPU and GPU grids identical.
#ifndef TASN_SAMPLER_MATH_H_
#define TASN_SAMPLER_MATH_H_

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define TASN_HD __host__ __device__
#else
#define TASN_HD
#endif

namespace tasn {

TASN_HD inline double dmin(double a, double b) { return a < b ? a : b; }
TASN_HD inline double dmax(double a, double b) { return a > b ? a : b; }

// Output length of an axis: int(size * scale), as Python computes it.
TASN_HD inline int64_t output_length(int64_t size, double scale) {
  return static_cast<int64_t>(static_cast<double>(size) * scale);
}

// Step 1, the budget: m[i] = profile[i] / sum(profile) * out, the output pixels given to bin i.
// Negative and non-finite entries count as 0; an all-zero profile means uniform.
template <typename T>
TASN_HD inline void profile_to_budget(const T* profile, int64_t length, int64_t out, double* m) {
  const double kMax = 1.7976931348623157e308;
  double sum = 0.0;
  for (int64_t i = 0; i < length; ++i) {
    const double v = static_cast<double>(profile[i]);
    m[i] = (v > 0.0 && v <= kMax) ? v : 0.0;  // false for NaN too
    sum += m[i];
  }
  if (sum > 0.0 && sum <= kMax) {
    for (int64_t i = 0; i < length; ++i) m[i] = m[i] / sum * static_cast<double>(out);
  } else {
    for (int64_t i = 0; i < length; ++i) m[i] = static_cast<double>(out) / static_cast<double>(length);
  }
}

TASN_HD inline double array_max(const double* m, int64_t n) {
  double v = m[0];
  for (int64_t i = 1; i < n; ++i) v = dmax(v, m[i]);
  return v;
}

// One axis of one clip-and-give-back round: cap every bin at `cap`, then spread what the cap
// removed evenly over all bins so the budget again sums to `out`.
TASN_HD inline void clip_axis(double* m, int64_t n, int64_t out, double cap) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    m[i] = dmin(m[i], cap);
    sum += m[i];
  }
  const double give = (static_cast<double>(out) - sum) / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) m[i] += give;
}

// Step 2, `iters` rounds on both axes together: the cap of a round is the smaller of the two
// axes' largest bins; the first round also caps at T0 = scale * dense * size / L per axis.
TASN_HD inline void clip_and_give_back(double* my, int64_t ly, int64_t out_h, double t0_y,
                                       double* mx, int64_t lx, int64_t out_w, double t0_x,
                                       int iters) {
  for (int j = 0; j < iters; ++j) {
    const double t = dmin(array_max(my, ly), array_max(mx, lx));
    clip_axis(my, ly, out_h, j == 0 ? dmin(t0_y, t) : t);
    clip_axis(mx, lx, out_w, j == 0 ? dmin(t0_x, t) : t);
  }
}

TASN_HD inline double first_cap(double scale, double dense, int64_t size, int64_t length) {
  return scale * dense * static_cast<double>(size) / static_cast<double>(length);
}

// Step 3, clean cumulative table: cum[0] = 0, cum[i + 1] = cum[i] + m[i] (length + 1 entries).
TASN_HD inline void clean_cdf(const double* m, int64_t length, double* cum) {
  cum[0] = 0.0;
  for (int64_t i = 0; i < length; ++i) cum[i + 1] = cum[i] + m[i];
}

// Clean inverse CDF for output pixel k: bin i spreads its mass evenly over marginal positions
// [i - 0.5, i + 0.5]; returns the input-pixel coordinate (p + 0.5) * size / L - 0.5.
TASN_HD inline double clean_coordinate(const double* cum, int64_t length, int64_t k, int64_t out,
                                       int64_t size) {
  const double target = (static_cast<double>(k) + 0.5) * cum[length] / static_cast<double>(out);
  // Smallest bin i with cum[i + 1] > target: then cum[i] <= target and bin i has mass.
  int64_t lo = 0, hi = length - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (cum[mid + 1] > target) hi = mid; else lo = mid + 1;
  }
  const double mass = cum[lo + 1] - cum[lo];
  const double frac = mass > 0.0 ? (target - cum[lo]) / mass : 0.5;
  const double p = static_cast<double>(lo) - 0.5 + frac;
  return (p + 0.5) * static_cast<double>(size) / static_cast<double>(length) - 0.5;
}

// Step 4, the official ("legacy") table: C[0] = 1, C[i] = C[i - 1] + m[i] for i >= 1.
TASN_HD inline void legacy_cdf(const double* m, int64_t length, double* c) {
  c[0] = 1.0;
  for (int64_t i = 1; i < length; ++i) c[i] = c[i - 1] + m[i];
}

// Legacy inverse CDF for output pixel k, mapped to the image with align corners. The official
// code read C[-1] from before its buffer; it is 0 here.
TASN_HD inline double legacy_coordinate(const double* c, int64_t length, int64_t k, int64_t out,
                                        int64_t size) {
  const double step = c[length - 1] / static_cast<double>(out);
  const double target = static_cast<double>(k) * step;
  // Smallest j with C[j] >= target (the last bin when none is, which rounding alone can cause).
  int64_t lo = 0, hi = length - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (c[mid] >= target) hi = mid; else lo = mid + 1;
  }
  const double prev = lo > 0 ? c[lo - 1] : 0.0;
  const double width = c[lo] - prev;
  const double p = static_cast<double>(lo) + (width > 0.0 ? (target - c[lo]) / width : 0.0);
  const double g = p * 2.0 / static_cast<double>(length - 1) - 1.0;
  return (g + 1.0) * static_cast<double>(size - 1) / 2.0;
}

// The two bilinear taps of a coordinate on an axis of `size` pixels, always as an adjacent pair
// (i1 = i0 + 1 when size >= 2) so that kernels can read both with one index. Clean: the
// coordinate is clamped to the image (edge replicate). Legacy: taps outside the image weigh 0
// (zero padding).
template <typename T>
TASN_HD inline void bilinear_taps(double coord, int64_t size, bool legacy, int64_t* i0,
                                  int64_t* i1, T* w0, T* w1) {
  const double last = static_cast<double>(size - 1);
  // Beyond [-2, size + 1] every legacy tap reads 0 anyway; the clamp keeps floor() in range.
  const double c = legacy ? dmin(dmax(coord, -2.0), last + 2.0) : dmin(dmax(coord, 0.0), last);
  const int64_t f = static_cast<int64_t>(floor(c));
  const double frac = c - static_cast<double>(f);
  if (size == 1) {
    *i0 = *i1 = 0;
    *w0 = static_cast<T>((f == 0 ? 1.0 - frac : 0.0) + (f + 1 == 0 ? frac : 0.0));
    *w1 = static_cast<T>(0.0);
    return;
  }
  // Re-base the taps f (weight 1 - frac) and f + 1 (weight frac) on the in-image pair
  // (b, b + 1); a tap that falls outside the pair lies outside the image and is dropped.
  const int64_t b = f < 0 ? 0 : (f > size - 2 ? size - 2 : f);
  *i0 = b;
  *i1 = b + 1;
  *w0 = static_cast<T>((f == b ? 1.0 - frac : 0.0) + (f + 1 == b ? frac : 0.0));
  *w1 = static_cast<T>((f == b + 1 ? 1.0 - frac : 0.0) + (f + 1 == b + 1 ? frac : 0.0));
}

}  // namespace tasn

#endif  // TASN_SAMPLER_MATH_H_
