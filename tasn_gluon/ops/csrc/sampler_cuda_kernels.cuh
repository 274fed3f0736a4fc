// The bodies of the attention sampler's CUDA kernels, written so that they also compile as
// plain C++: sampler_cuda.cu wraps them in __global__ functions (a block is a set of threads,
// the barrier is __syncthreads), and tests/cuda_emulator.cc runs the very same code on the CPU
// (a block is a set of std::threads, the barrier a pthread barrier), so that the indexing, the
// phase order and the bit-for-bit agreement with the CPU kernels are tested on machines
// without a GPU.
//
// Four programs, the first two one block per image, in two launches:
//  * tables_program: the budget and clip-and-give-back of image n, their per-element steps
//    (sampler_math.h's) spread over the block and each sum sampler_math.h's sequential sum by
//    one thread per axis (the CPU's order, so the same rounding), then the cumulative tables,
//    written to the batch's table buffer in global memory.
//  * taps_program, launched once every image's tables are written: one thread per output index
//    for the inverse CDF (sampler_math.h's axis_coordinate; legacy reads C[-1] from image
//    n - 1's table, as the CPU does) and the bilinear taps, and for the backward the inverse
//    tap tables.
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

// What a tables block computes for image n.
template <typename T>
struct TablesTask {
  const T* att_y;  // (N, ly)
  const T* att_x;  // (N, lx)
  Geometry g;
  SamplerParams params;
  double* tables;  // (N, table_entries(ly, lx)): the cumulative tables
};

// Memory shared by the threads of one tables block.
struct TablesShared {
  double* m;     // the budgets: budget_entries(ly, lx) doubles
  double* red;   // 2 * threads, for the maxima
  double* sums;  // 2
};

// What a taps block computes for image n. Optional outputs are nullptr.
template <typename T, typename C>
struct TapsTask {
  const double* tables;  // as TablesTask's, complete for every image
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

// Shared counters of one taps block (for the inverse tables): max(h, w) + threads.
inline int64_t taps_counts_per_image(const Geometry& g, int threads) {
  return (g.h > g.w ? g.h : g.w) + threads;
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

// The inverse of one axis' tap table (see TapsTask), entries in increasing 2 * i + slot: the
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

// The first loop of compute_grid_cpu for image n (profile_to_budget, clip_and_give_back,
// cumulative_table on both axes), as thread t of a block of nt (>= 1) threads; barrier() waits
// for the whole block. Every thread must call it.
template <typename T, typename Barrier>
TASN_HD void tables_program(const TablesTask<T>& k, int64_t n, const TablesShared& sh, int t,
                            int nt, Barrier& barrier) {
  const Geometry& g = k.g;
  const int64_t ly = g.ly, lx = g.lx;
  double* my = sh.m;
  double* mx = my + ly;
  // The two axes' sequential sums run side by side, in lanes 0 of warps 0 and 1.
  const int sum_y = 0, sum_x = nt > 32 ? 32 : 0;

  // Step 1, the budget (profile_to_budget).
  for (int64_t i = t; i < ly; i += nt) my[i] = sanitized(static_cast<double>(k.att_y[n * ly + i]));
  for (int64_t i = t; i < lx; i += nt) mx[i] = sanitized(static_cast<double>(k.att_x[n * lx + i]));
  barrier();
  if (t == sum_y) sh.sums[0] = sequential_sum(my, ly);
  if (t == sum_x) sh.sums[1] = sequential_sum(mx, lx);
  barrier();
  {
    const double sy = sh.sums[0], sx = sh.sums[1];
    for (int64_t i = t; i < ly; i += nt) my[i] = budget_entry(my[i], sy, g.out_h, ly);
    for (int64_t i = t; i < lx; i += nt) mx[i] = budget_entry(mx[i], sx, g.out_w, lx);
  }
  barrier();

  // Step 2, clip and give back (clip_and_give_back, clip_axis).
  const double t0_y = first_cap(k.params.scale, k.params.dense, g.h, ly);
  const double t0_x = first_cap(k.params.scale, k.params.dense, g.w, lx);
  for (int j = 0; j < k.params.iters; ++j) {
    double max_y, max_x;
    block_max2(my, ly, mx, lx, sh.red, t, nt, barrier, &max_y, &max_x);
    const double cap = dmin(max_y, max_x);
    const double cap_y = round_cap(j, t0_y, cap), cap_x = round_cap(j, t0_x, cap);
    for (int64_t i = t; i < ly; i += nt) my[i] = capped(my[i], cap_y);
    for (int64_t i = t; i < lx; i += nt) mx[i] = capped(mx[i], cap_x);
    barrier();
    if (t == sum_y) sh.sums[0] = sequential_sum(my, ly);
    if (t == sum_x) sh.sums[1] = sequential_sum(mx, lx);
    barrier();
    const double give_y = give_back(g.out_h, sh.sums[0], ly);
    const double give_x = give_back(g.out_w, sh.sums[1], lx);
    for (int64_t i = t; i < ly; i += nt) my[i] += give_y;
    for (int64_t i = t; i < lx; i += nt) mx[i] += give_x;
    barrier();
  }

  // The cumulative tables (sequential), straight into the batch's buffer.
  double* cy = k.tables + n * table_entries(ly, lx);
  if (t == sum_y) cumulative_table(k.params.legacy, my, ly, cy);
  if (t == sum_x) cumulative_table(k.params.legacy, mx, lx, cy + column_table_offset(ly));
}

// The second loop of compute_grid_cpu and compute_taps_cpu for image n, and for the backward
// the inverse tap tables, as thread t of nt; `counts` holds taps_counts_per_image ints.
template <typename T, typename C, typename Barrier>
TASN_HD void taps_program(const TapsTask<T, C>& k, int64_t n, int32_t* counts, int t, int nt,
                          Barrier& barrier) {
  const Geometry& g = k.g;
  const int64_t stride = table_entries(g.ly, g.lx);
  const double* cy = k.tables + n * stride;
  const double* cx = cy + column_table_offset(g.ly);
  for (int64_t q = t; q < g.out_h + g.out_w; q += nt) {
    const bool is_y = q < g.out_h;
    const int64_t idx = is_y ? q : q - g.out_h;
    const int64_t out = is_y ? g.out_h : g.out_w, size = is_y ? g.h : g.w;
    const double coord = axis_coordinate(k.params.legacy, is_y ? cy : cx, stride, n,
                                         is_y ? g.ly : g.lx, idx, out, size);
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
  int32_t* totals = counts + (g.h > g.w ? g.h : g.w);
  invert_taps(k.ytaps + n * g.out_h, g.out_h, g.h, false, k.row_start + n * (g.h + 1),
              k.row_list + n * 2 * g.out_h, counts, totals, t, nt, barrier);
  invert_taps(k.xtaps + n * g.out_w, g.out_w, g.w, g.w == 1, k.col_start + n * (g.w + 1),
              k.col_list + n * 2 * g.out_w, counts, totals, t, nt, barrier);
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
