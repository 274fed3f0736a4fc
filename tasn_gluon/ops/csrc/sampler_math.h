// The attention sampler's arithmetic (TASN spec, section 5), shared by the C++ and CUDA kernels
// so that the two cannot drift. It works on one image and one axis at a time, in double
// precision. The steps that the GPU spreads over a block are written as per-element helpers
// and sums in a fixed order: the CPU loops (profile_to_budget, clip_axis, ...) and the CUDA
// block loops (sampler_cuda_kernels.cuh) both call exactly these, only the loops differ. The
// grid is tiny (a few hundred values per image), and the fixed order makes the CPU and GPU
// grids identical.
#ifndef TASN_SAMPLER_MATH_H_
#define TASN_SAMPLER_MATH_H_

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define TASN_HD __host__ __device__
#else
#define TASN_HD
#endif

#if defined(__CUDA_ARCH__)  // device pass only: the host compiler does not know the pragma
#define TASN_UNROLL _Pragma("unroll")
#else
#define TASN_UNROLL
#endif

namespace tasn {

TASN_HD inline double dmin(double a, double b) { return a < b ? a : b; }
TASN_HD inline double dmax(double a, double b) { return a > b ? a : b; }

// Output length of an axis: int(size * scale), as Python computes it.
TASN_HD inline int64_t output_length(int64_t size, double scale) {
  return static_cast<int64_t>(static_cast<double>(size) * scale);
}

// ---- sizes -------------------------------------------------------------------------------

// Doubles of one image's budgets: the row axis (ly) then the column axis (lx).
TASN_HD inline int64_t budget_entries(int64_t ly, int64_t lx) { return ly + lx; }

// Doubles of one image's cumulative tables: the row table (ly + 1 entries) then the column
// table (lx + 1) at column_table_offset(ly). Clean tables use every entry, legacy ones the
// first L. The tables of a batch lie image after image, table_entries(ly, lx) apart, as the
// official kernel keeps them (legacy mode reads across images, see legacy_before).
TASN_HD inline int64_t table_entries(int64_t ly, int64_t lx) { return ly + lx + 2; }
TASN_HD inline int64_t column_table_offset(int64_t ly) { return ly + 1; }

// ---- sums in a fixed order -----------------------------------------------------------------

// The sequential sums are the GPU grid's critical path (one thread, a dependent add per
// entry), so their loads are issued a chunk ahead of the adds. The adds stay a left fold in
// index order, so the chunking changes no rounding.
constexpr int kChunk = 8;

// Left fold from 0 in index order: the sums of profile_to_budget and clip_axis.
TASN_HD inline double sequential_sum(const double* m, int64_t n) {
  double s = 0.0;
  double next[kChunk];
  int64_t i = 0;
  if (n >= kChunk) {
    TASN_UNROLL
    for (int k = 0; k < kChunk; ++k) next[k] = m[k];
  }
  for (; i + kChunk <= n; i += kChunk) {
    double cur[kChunk];
    TASN_UNROLL
    for (int k = 0; k < kChunk; ++k) cur[k] = next[k];
    if (i + 2 * kChunk <= n) {
      TASN_UNROLL
      for (int k = 0; k < kChunk; ++k) next[k] = m[i + kChunk + k];
    }
    TASN_UNROLL
    for (int k = 0; k < kChunk; ++k) s += cur[k];
  }
  for (; i < n; ++i) s += m[i];
  return s;
}

// out[0] = first; out[1 + i - begin] = out[i - begin] + m[i] for i in [begin, end), the
// running sum kept in a register (a plain `out[i + 1] = out[i] + m[i]` reloads each sum after
// storing it, as the two arrays might alias: a memory round trip on every step of the chain).
TASN_HD inline void prefix_sums(double first, const double* m, int64_t begin, int64_t end,
                                double* out) {
  double s = first;
  out[0] = s;
  double* o = out + 1 - begin;
  double next[kChunk];
  int64_t i = begin;
  if (end - begin >= kChunk) {
    TASN_UNROLL
    for (int k = 0; k < kChunk; ++k) next[k] = m[begin + k];
  }
  for (; i + kChunk <= end; i += kChunk) {
    double cur[kChunk];
    TASN_UNROLL
    for (int k = 0; k < kChunk; ++k) cur[k] = next[k];
    if (i + 2 * kChunk <= end) {
      TASN_UNROLL
      for (int k = 0; k < kChunk; ++k) next[k] = m[i + kChunk + k];
    }
    TASN_UNROLL
    for (int k = 0; k < kChunk; ++k) {
      s += cur[k];
      o[i + k] = s;
    }
  }
  for (; i < end; ++i) {
    s += m[i];
    o[i] = s;
  }
}

// ---- step 1, the budget: m[i] = profile[i] / sum(profile) * out ------------------------------

constexpr double kMaxDouble = 1.7976931348623157e308;

// A profile entry as the budget counts it: negative and non-finite entries are 0.
TASN_HD inline double sanitized(double v) {
  return (v > 0.0 && v <= kMaxDouble) ? v : 0.0;  // false for NaN too
}

// Entry i of the budget from its sanitised profile entry and the sanitised profile's sum; a
// profile that sums to 0 (or overflows) means uniform.
TASN_HD inline double budget_entry(double v, double total, int64_t out, int64_t length) {
  return (total > 0.0 && total <= kMaxDouble)
      ? v / total * static_cast<double>(out)
      : static_cast<double>(out) / static_cast<double>(length);
}

template <typename T>
TASN_HD inline void profile_to_budget(const T* profile, int64_t length, int64_t out, double* m) {
  for (int64_t i = 0; i < length; ++i) m[i] = sanitized(static_cast<double>(profile[i]));
  const double total = sequential_sum(m, length);
  for (int64_t i = 0; i < length; ++i) m[i] = budget_entry(m[i], total, out, length);
}

// ---- step 2, clip and give back --------------------------------------------------------------

// T0 = scale * dense * size / L, the first round's cap of an axis.
TASN_HD inline double first_cap(double scale, double dense, int64_t size, int64_t length) {
  return scale * dense * static_cast<double>(size) / static_cast<double>(length);
}

// The cap of round `round` on an axis: t (the smaller of the two axes' largest bins), and in
// the first round at most T0.
TASN_HD inline double round_cap(int round, double t0, double t) {
  return round == 0 ? dmin(t0, t) : t;
}

// A bin after capping, and what every bin gets back once the capped budget sums to `total`,
// so that the budget again sums to `out`.
TASN_HD inline double capped(double m, double cap) { return dmin(m, cap); }
TASN_HD inline double give_back(int64_t out, double total, int64_t length) {
  return (static_cast<double>(out) - total) / static_cast<double>(length);
}

TASN_HD inline double array_max(const double* m, int64_t n) {
  double v = m[0];
  for (int64_t i = 1; i < n; ++i) v = dmax(v, m[i]);
  return v;
}

// One axis of one round: cap every bin, then give back what the cap removed, evenly.
TASN_HD inline void clip_axis(double* m, int64_t n, int64_t out, double cap) {
  for (int64_t i = 0; i < n; ++i) m[i] = capped(m[i], cap);
  const double give = give_back(out, sequential_sum(m, n), n);
  for (int64_t i = 0; i < n; ++i) m[i] += give;
}

// `iters` rounds on both axes together (the cap couples them).
TASN_HD inline void clip_and_give_back(double* my, int64_t ly, int64_t out_h, double t0_y,
                                       double* mx, int64_t lx, int64_t out_w, double t0_x,
                                       int iters) {
  for (int j = 0; j < iters; ++j) {
    const double t = dmin(array_max(my, ly), array_max(mx, lx));
    clip_axis(my, ly, out_h, round_cap(j, t0_y, t));
    clip_axis(mx, lx, out_w, round_cap(j, t0_x, t));
  }
}

// ---- steps 3 and 4, the cumulative tables and the inverse CDF ------------------------------

// Clean table: cum[0] = 0, cum[i + 1] = cum[i] + m[i] (length + 1 entries).
TASN_HD inline void clean_cdf(const double* m, int64_t length, double* cum) {
  prefix_sums(0.0, m, 0, length, cum);
}

// The official ("legacy") table: C[0] = 1, C[i] = C[i - 1] + m[i] for i >= 1 (length entries).
TASN_HD inline void legacy_cdf(const double* m, int64_t length, double* c) {
  prefix_sums(1.0, m, 1, length, c);
}

TASN_HD inline void cumulative_table(bool legacy, const double* m, int64_t length,
                                     double* table) {
  if (legacy) legacy_cdf(m, length, table);
  else clean_cdf(m, length, table);
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

// C[-1] of image n's legacy table on one axis, `table` being that image's table in the
// batch's buffer (images `stride` doubles apart). The official kernel keeps the tables of the
// whole batch in one buffer and reads the element before the image's own table: for n >= 1,
// image n - 1's last entry C_{n-1}[L-1] of the same axis; image 0 reads before the buffer,
// taken as 0. Where C_{n-1}[L-1] equals C[0] (image n - 1's bins 1.. hold no mass) the
// official division is by zero; that image then reads 0 as image 0 does.
TASN_HD inline double legacy_before(const double* table, int64_t stride, int64_t n,
                                    int64_t length) {
  if (n == 0) return 0.0;
  const double last = table[length - 1 - stride];
  return last != table[0] ? last : 0.0;
}

// Legacy inverse CDF for output pixel k with C[-1] = `before`, mapped to the image with align
// corners.
TASN_HD inline double legacy_coordinate(const double* c, int64_t length, int64_t k, int64_t out,
                                        int64_t size, double before) {
  const double step = c[length - 1] / static_cast<double>(out);
  const double target = static_cast<double>(k) * step;
  // Smallest j with C[j] >= target (the last bin when none is, which rounding alone can cause).
  int64_t lo = 0, hi = length - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (c[mid] >= target) hi = mid; else lo = mid + 1;
  }
  // At j = 0 with C[-1] > C[0] the width is negative, as in the official arithmetic: output
  // pixel 0 then samples at p = -1 / (1 - C[-1]), just inside the image.
  const double width = c[lo] - (lo > 0 ? c[lo - 1] : before);
  const double p = static_cast<double>(lo) + (width != 0.0 ? (target - c[lo]) / width : 0.0);
  const double g = p * 2.0 / static_cast<double>(length - 1) - 1.0;
  return (g + 1.0) * static_cast<double>(size - 1) / 2.0;
}

// Output index k's coordinate on one axis of image n, from that axis' table of image n in the
// batch's table buffer (images `stride` doubles apart).
TASN_HD inline double axis_coordinate(bool legacy, const double* table, int64_t stride, int64_t n,
                                      int64_t length, int64_t k, int64_t out, int64_t size) {
  return legacy ? legacy_coordinate(table, length, k, out, size,
                                    legacy_before(table, stride, n, length))
                : clean_coordinate(table, length, k, out, size);
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
