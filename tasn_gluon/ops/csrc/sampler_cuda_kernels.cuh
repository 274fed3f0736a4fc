// The bodies of the attention sampler's CUDA kernels, written so that they also compile as
// plain C++: sampler_cuda.cu wraps them in __global__ functions (a block is a set of threads,
// the barrier is __syncthreads), and tests/cuda_emulator.cc runs the very same code on the CPU
// (a block is a set of std::threads, the barrier a pthread barrier), so that the indexing, the
// phase order and the bit-for-bit agreement with the CPU kernels are tested on machines
// without a GPU.
//
// Three programs:
//  * grid_program, one block per image: the budget and clip-and-give-back phase with its
//    elementwise steps spread over the block and each sum a sequential fold by one thread per
//    axis (the CPU's order, so the same rounding), then one thread per output index for the
//    inverse CDF and the bilinear taps (sampler_math.h's helpers), and for the backward the
//    inverse tap tables.
//  * forward_pixels, one thread per output pixel and up to kChannelsPerThread channels: 2 source
//    rows x 2 columns from the tap tables.
//  * backward_pixels, one thread per source pixel and up to kChannelsPerThread channels: a
//    gather over the output rows and columns that read it (from the inverse tables), summed in
//    the order the CPU scatters them. No atomics: deterministic, and equal to the CPU bit for
//    bit.
#ifndef TASN_SAMPLER_CUDA_KERNELS_CUH_
#define TASN_SAMPLER_CUDA_KERNELS_CUH_

#include <math.h>
#include <stdint.h>

#include "sampler.h"
#include "sampler_math.h"

#if defined(__CUDA_ARCH__)  // device pass only: the host compiler does not know the pragma
#define TASN_UNROLL _Pragma("unroll")
#else
#define TASN_UNROLL
#endif

namespace tasn {
namespace cuda_kernels {

// Channels of one image that a sampling thread handles: they share the taps, and their loads
// are all issued before the arithmetic, so more of them are in flight per thread. 3: an RGB
// image is one group, with no idle slot holding registers.
constexpr int kChannelsPerThread = 3;

// The two bilinear taps of one output row or column: source indices and weights.
template <typename T>
struct alignas(16) Tap {
  int32_t i0, i1;
  T w0, w1;
};

// Explicitly rounded products and sums: never contracted into FMAs (the CPU build has none).
TASN_HD inline float mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TASN_HD inline double mul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
TASN_HD inline float add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
TASN_HD inline double add(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// A read-only load (through the non-coherent cache on the GPU).
template <typename T>
TASN_HD inline T load(const T* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  return *p;
#endif
}

// What a grid block computes for image blockIdx / n. Optional outputs are nullptr.
template <typename T, typename C>
struct GridTask {
  const T* att_y;  // (N, ly)
  const T* att_x;  // (N, lx)
  Geometry g;
  SamplerParams params;
  C* ys;  // (N, out_h) coordinates
  C* xs;  // (N, out_w)
  Tap<T>* ytaps;  // (N, out_h)
  Tap<T>* xtaps;  // (N, out_w)
  // The inverse tables (backward): for source row y, row_list[row_start[y] .. row_start[y+1])
  // holds 2 * i + slot for the output rows i whose tap `slot` reads y; likewise for columns.
  int32_t* row_start;  // (N, h + 1)
  int32_t* row_list;   // (N, 2 * out_h)
  int32_t* col_start;  // (N, w + 1)
  int32_t* col_list;   // (N, 2 * out_w)
};

// Memory shared by the threads of one grid block.
struct GridShared {
  double* m;        // budgets and cumulative tables: grid_scratch_per_image(g) doubles
  double* red;      // 2 * threads, for the maxima
  double* sums;     // 2
  int32_t* counts;  // max(h, w) + threads, for the inverse tables
};

inline int64_t grid_counts_per_image(const Geometry& g, int threads) {
  return (g.h > g.w ? g.h : g.w) + threads;
}

// The sequential sums are the grid's critical path (one thread, a dependent add per entry),
// so their loads are issued a chunk ahead of the adds. The adds keep the CPU's order.
constexpr int kChunk = 8;

// Sequential left fold from 0: the sums of profile_to_budget and clip_axis.
TASN_HD inline double fold_sum(const double* m, int64_t n) {
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

// out[0] = first; out[1 + i - begin] = out[i - begin] + m[i] for i in [begin, end): the
// cumulative tables of clean_cdf (first 0, begin 0) and legacy_cdf (first 1, begin 1), same
// adds in the same order. (The helpers themselves reload each sum after storing it, as their
// two arrays might alias, which puts a memory round trip on every step of the chain.)
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

// clean_cdf or legacy_cdf of one axis.
TASN_HD inline void cumulative_table(bool legacy, const double* m, int64_t length, double* cum) {
  if (legacy) prefix_sums(1.0, m, 1, length, cum);  // C[0] = 1, C[i] = C[i-1] + m[i]
  else prefix_sums(0.0, m, 0, length, cum);         // cum[0] = 0, cum[i+1] = cum[i] + m[i]
}

// The largest entries of a and b over the block (a tree over red). The maximum is exact, so
// this equals array_max.
template <typename Barrier>
TASN_HD inline void block_max2(const double* a, int64_t na, const double* b, int64_t nb,
                               double* red, int t, int nt, Barrier& barrier, double* max_a,
                               double* max_b) {
  double va = -INFINITY, vb = -INFINITY;
  for (int64_t i = t; i < na; i += nt) va = dmax(va, a[i]);
  for (int64_t i = t; i < nb; i += nt) vb = dmax(vb, b[i]);
  red[t] = va;
  red[nt + t] = vb;
  barrier();
  int s = 1;
  while (2 * s < nt) s *= 2;
  for (; s > 0; s >>= 1) {
    if (t < s && t + s < nt) {
      red[t] = dmax(red[t], red[t + s]);
      red[nt + t] = dmax(red[nt + t], red[nt + t + s]);
    }
    barrier();
  }
  *max_a = red[0];
  *max_b = red[nt];
  barrier();  // red is written again by the next call
}

// The inverse of one axis' tap table (see GridTask), entries in increasing 2 * i + slot: the
// order in which the CPU's backward accumulates them. A stable counting sort in which every
// thread owns a contiguous range of keys and walks the whole table, so no atomics are needed.
// `first_only` leaves out the i1 entries, as the CPU does along x when the image is 1 pixel
// wide (its i1 tap then lands in a pad column that is never added back).
template <typename T, typename Barrier>
TASN_HD inline void invert_taps(const Tap<T>* taps, int64_t out, int64_t size, bool first_only,
                                int32_t* start, int32_t* list, int32_t* count, int32_t* totals,
                                int t, int nt, Barrier& barrier) {
  const int64_t per = (size + nt - 1) / nt;
  const int64_t lo = t * per < size ? t * per : size;
  const int64_t hi = lo + per < size ? lo + per : size;
  for (int64_t k = lo; k < hi; ++k) count[k] = 0;
  for (int64_t j = 0; j < out; ++j) {
    const Tap<T> tap = taps[j];
    if (tap.i0 >= lo && tap.i0 < hi) ++count[tap.i0];
    if (!first_only && tap.i1 >= lo && tap.i1 < hi) ++count[tap.i1];
  }
  int32_t mine = 0;
  for (int64_t k = lo; k < hi; ++k) mine += count[k];
  totals[t] = mine;
  barrier();
  if (t == 0) {  // exclusive scan over the threads' ranges
    int32_t run = 0;
    for (int k = 0; k < nt; ++k) {
      const int32_t v = totals[k];
      totals[k] = run;
      run += v;
    }
    start[size] = run;
  }
  barrier();
  int32_t pos = totals[t];
  for (int64_t k = lo; k < hi; ++k) {
    const int32_t c = count[k];
    start[k] = pos;
    count[k] = pos;  // from here on: the next free slot of key k
    pos += c;
  }
  for (int64_t j = 0; j < out; ++j) {
    const Tap<T> tap = taps[j];
    if (tap.i0 >= lo && tap.i0 < hi) list[count[tap.i0]++] = static_cast<int32_t>(2 * j);
    if (!first_only && tap.i1 >= lo && tap.i1 < hi)
      list[count[tap.i1]++] = static_cast<int32_t>(2 * j + 1);
  }
  barrier();  // count and totals are reused
}

// compute_grid_cpu and compute_taps_cpu for image n, as thread t of a block of nt (>= 1)
// threads; barrier() waits for the whole block. Every thread must call it.
template <typename T, typename C, typename Barrier>
TASN_HD void grid_program(const GridTask<T, C>& k, int64_t n, const GridShared& sh, int t,
                          int nt, Barrier& barrier) {
  const Geometry& g = k.g;
  const int64_t ly = g.ly, lx = g.lx;
  double* my = sh.m;
  double* mx = my + ly;
  double* cy = mx + lx;      // ly + 1 entries
  double* cx = cy + ly + 1;  // lx + 1 entries
  // The two axes' sequential sums run side by side, in lanes 0 of warps 0 and 1.
  const int sum_y = 0, sum_x = nt > 32 ? 32 : 0;

  // Step 1, the budget: profile_to_budget, its elementwise steps spread over the block.
  const double kMax = 1.7976931348623157e308;
  for (int64_t i = t; i < ly; i += nt) {
    const double v = static_cast<double>(k.att_y[n * ly + i]);
    my[i] = (v > 0.0 && v <= kMax) ? v : 0.0;  // false for NaN too
  }
  for (int64_t i = t; i < lx; i += nt) {
    const double v = static_cast<double>(k.att_x[n * lx + i]);
    mx[i] = (v > 0.0 && v <= kMax) ? v : 0.0;
  }
  barrier();
  if (t == sum_y) sh.sums[0] = fold_sum(my, ly);
  if (t == sum_x) sh.sums[1] = fold_sum(mx, lx);
  barrier();
  {
    const double sy = sh.sums[0], sx = sh.sums[1];
    const double oh = static_cast<double>(g.out_h), ow = static_cast<double>(g.out_w);
    for (int64_t i = t; i < ly; i += nt)
      my[i] = (sy > 0.0 && sy <= kMax) ? my[i] / sy * oh : oh / static_cast<double>(ly);
    for (int64_t i = t; i < lx; i += nt)
      mx[i] = (sx > 0.0 && sx <= kMax) ? mx[i] / sx * ow : ow / static_cast<double>(lx);
  }
  barrier();

  // Step 2, clip and give back: clip_and_give_back and clip_axis, spread the same way.
  const double t0_y = first_cap(k.params.scale, k.params.dense, g.h, ly);
  const double t0_x = first_cap(k.params.scale, k.params.dense, g.w, lx);
  for (int j = 0; j < k.params.iters; ++j) {
    double max_y, max_x;
    block_max2(my, ly, mx, lx, sh.red, t, nt, barrier, &max_y, &max_x);
    const double cap = dmin(max_y, max_x);
    const double cap_y = j == 0 ? dmin(t0_y, cap) : cap;
    const double cap_x = j == 0 ? dmin(t0_x, cap) : cap;
    for (int64_t i = t; i < ly; i += nt) my[i] = dmin(my[i], cap_y);
    for (int64_t i = t; i < lx; i += nt) mx[i] = dmin(mx[i], cap_x);
    barrier();
    if (t == sum_y) sh.sums[0] = fold_sum(my, ly);
    if (t == sum_x) sh.sums[1] = fold_sum(mx, lx);
    barrier();
    const double give_y = (static_cast<double>(g.out_h) - sh.sums[0]) / static_cast<double>(ly);
    const double give_x = (static_cast<double>(g.out_w) - sh.sums[1]) / static_cast<double>(lx);
    for (int64_t i = t; i < ly; i += nt) my[i] += give_y;
    for (int64_t i = t; i < lx; i += nt) mx[i] += give_x;
    barrier();
  }

  // Steps 3 and 4: the cumulative tables (sequential), then every output index in parallel.
  if (t == sum_y) cumulative_table(k.params.legacy, my, ly, cy);
  if (t == sum_x) cumulative_table(k.params.legacy, mx, lx, cx);
  barrier();
  for (int64_t q = t; q < g.out_h + g.out_w; q += nt) {
    const bool is_y = q < g.out_h;
    const int64_t idx = is_y ? q : q - g.out_h;
    const double* cum = is_y ? cy : cx;
    const int64_t length = is_y ? ly : lx, out = is_y ? g.out_h : g.out_w;
    const int64_t size = is_y ? g.h : g.w;
    const double coord = k.params.legacy ? legacy_coordinate(cum, length, idx, out, size)
                                         : clean_coordinate(cum, length, idx, out, size);
    C* coords = is_y ? k.ys : k.xs;
    if (coords != nullptr) coords[n * out + idx] = static_cast<C>(coord);
    Tap<T>* taps = is_y ? k.ytaps : k.xtaps;
    if (taps != nullptr) {
      int64_t i0, i1;
      T w0, w1;
      bilinear_taps(coord, size, k.params.legacy, &i0, &i1, &w0, &w1);
      taps[n * out + idx] = Tap<T>{static_cast<int32_t>(i0), static_cast<int32_t>(i1), w0, w1};
    }
  }
  if (k.row_start == nullptr) return;

  // The backward's inverse tables, from the taps just written (visible after the barrier).
  barrier();
  int32_t* totals = sh.counts + (g.h > g.w ? g.h : g.w);
  invert_taps(k.ytaps + n * g.out_h, g.out_h, g.h, false, k.row_start + n * (g.h + 1),
              k.row_list + n * 2 * g.out_h, sh.counts, totals, t, nt, barrier);
  invert_taps(k.xtaps + n * g.out_w, g.out_w, g.w, g.w == 1, k.col_start + n * (g.w + 1),
              k.col_list + n * 2 * g.out_w, sh.counts, totals, t, nt, barrier);
}

// Shapes of the sampling programs.
struct PlaneShape {
  int64_t channels;
  int32_t h, w, out_h, out_w;
};

// Output pixel e (row-major in its plane) of channels [c0, c0 + count) of image n, count <=
// kChannelsPerThread, as forward_plane computes it: row = a * r0 + b * r1 at the two source
// columns, then wx0 * row[x0] + wx1 * row[x1]. Along a 1-pixel-wide image the CPU's second
// column tap reads a zero pad (its weight is 0 too); so does this.
template <typename T>
TASN_HD inline void forward_pixels(const T* data, const Tap<T>* ytaps, const Tap<T>* xtaps,
                                   const PlaneShape& s, int64_t n, int64_t c0, int count,
                                   int32_t e, T* out) {
  const int32_t i = e / s.out_w;
  const int32_t j = e - i * s.out_w;
  const Tap<T> ty = ytaps[n * s.out_h + i];
  const Tap<T> tx = xtaps[n * s.out_w + j];
  const int64_t in_plane = static_cast<int64_t>(s.h) * s.w;
  const int64_t out_plane = static_cast<int64_t>(s.out_h) * s.out_w;
  const T* src = data + (n * s.channels + c0) * in_plane;
  const int64_t r0 = static_cast<int64_t>(ty.i0) * s.w, r1 = static_cast<int64_t>(ty.i1) * s.w;
  T p00[kChannelsPerThread], p10[kChannelsPerThread], p01[kChannelsPerThread],
      p11[kChannelsPerThread];
  TASN_UNROLL
  for (int k = 0; k < kChannelsPerThread; ++k) {
    if (k < count) {
      const T* plane = src + k * in_plane;
      p00[k] = load(plane + r0 + tx.i0);
      p10[k] = load(plane + r1 + tx.i0);
      p01[k] = load(plane + r0 + tx.i1);
      p11[k] = load(plane + r1 + tx.i1);
    }
  }
  T* dst = out + (n * s.channels + c0) * out_plane + e;
  TASN_UNROLL
  for (int k = 0; k < kChannelsPerThread; ++k) {
    if (k < count) {
      const T v0 = add(mul(ty.w0, p00[k]), mul(ty.w1, p10[k]));
      const T v1 = s.w > 1 ? add(mul(ty.w0, p01[k]), mul(ty.w1, p11[k])) : T(0);
      dst[k * out_plane] = add(mul(tx.w0, v0), mul(tx.w1, v1));
    }
  }
}

// Source pixel e of channels [c0, c0 + count) of image n of the data gradient: for each entry
// (output row i, slot) of source row y, in backward_plane's order, the partial row value at
// column x (the sum over the entries (output column j, slot) of x, in backward_plane's order,
// from 0), times the row weight, added up from 0. So the sums, and their rounding, are the
// CPU's. The channels share the entry lists and run as independent chains.
template <typename T>
TASN_HD inline void backward_pixels(const T* grad_out, const Tap<T>* ytaps, const Tap<T>* xtaps,
                                    const int32_t* row_start, const int32_t* row_list,
                                    const int32_t* col_start, const int32_t* col_list,
                                    const PlaneShape& s, int64_t n, int64_t c0, int count,
                                    int32_t e, T* grad_data) {
  const int32_t y = e / s.w;
  const int32_t x = e - y * s.w;
  const int32_t* rs = row_start + n * (s.h + 1);
  const int32_t* rl = row_list + n * 2 * s.out_h;
  const int32_t* cs = col_start + n * (s.w + 1);
  const int32_t* cl = col_list + n * 2 * s.out_w;
  const Tap<T>* yt = ytaps + n * s.out_h;
  const Tap<T>* xt = xtaps + n * s.out_w;
  const int64_t in_plane = static_cast<int64_t>(s.h) * s.w;
  const int64_t out_plane = static_cast<int64_t>(s.out_h) * s.out_w;
  const T* go = grad_out + (n * s.channels + c0) * out_plane;
  const int32_t c_begin = cs[x], c_end = cs[x + 1];
  T acc[kChannelsPerThread];
  TASN_UNROLL
  for (int k = 0; k < kChannelsPerThread; ++k) acc[k] = T(0);
  for (int32_t r = rs[y], r_end = rs[y + 1]; r < r_end; ++r) {
    const int32_t ey = rl[r];
    const Tap<T> ty = yt[ey >> 1];
    const T wy = (ey & 1) ? ty.w1 : ty.w0;
    const T* gi = go + static_cast<int64_t>(ey >> 1) * s.out_w;
    T part[kChannelsPerThread];
    TASN_UNROLL
    for (int k = 0; k < kChannelsPerThread; ++k) part[k] = T(0);
    for (int32_t q = c_begin; q < c_end; ++q) {
      const int32_t ex = cl[q];
      const Tap<T> tx = xt[ex >> 1];
      const T wx = (ex & 1) ? tx.w1 : tx.w0;
      TASN_UNROLL
      for (int k = 0; k < kChannelsPerThread; ++k)
        if (k < count) part[k] = add(part[k], mul(wx, load(gi + k * out_plane + (ex >> 1))));
    }
    TASN_UNROLL
    for (int k = 0; k < kChannelsPerThread; ++k)
      if (k < count) acc[k] = add(acc[k], mul(wy, part[k]));
  }
  T* dst = grad_data + (n * s.channels + c0) * in_plane + e;
  TASN_UNROLL
  for (int k = 0; k < kChannelsPerThread; ++k)
    if (k < count) dst[k * in_plane] = acc[k];
}

}  // namespace cuda_kernels
}  // namespace tasn

#endif  // TASN_SAMPLER_CUDA_KERNELS_CUH_
