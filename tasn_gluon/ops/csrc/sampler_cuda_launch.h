// How sampler_cuda.cu launches the kernels of sampler_cuda_kernels.cuh, on the host side: where
// everything lives in the caller's scratch memory, the tasks the two grid kernels get, the
// shape of the sampling planes and how their blocks walk the (image, channel group) pairs.
// Plain C++ (no CUDA runtime): sampler_cuda.cu launches with it, and tests/cuda_emulator.cc
// runs the kernel bodies on the CPU with it, so a launch mistake here shows in the emulation.
#ifndef TASN_SAMPLER_CUDA_LAUNCH_H_
#define TASN_SAMPLER_CUDA_LAUNCH_H_

#include <stdint.h>

#include <sstream>
#include <string>

#include "sampler.h"
#include "sampler_cuda_kernels.cuh"
#include "sampler_math.h"

namespace tasn {
namespace cuda_launch {

using cuda_kernels::PlaneShape;
using cuda_kernels::TablesTask;
using cuda_kernels::Tap;
using cuda_kernels::TapsTask;

constexpr int kThreads = 256;                    // every kernel
constexpr size_t kMaxDynamicShared = 40 * 1024;  // with the static part, below the 48 KiB limit
constexpr size_t kAlign = 256;
constexpr int64_t kMaxIndex = 0x7fffffff;        // in-plane indices are 32-bit

inline size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// Where everything lives in the caller's scratch memory (byte offsets), and whether the grid
// blocks' work memory fits in shared memory (else it lives in scratch, one set per image).
struct Layout {
  size_t ytaps = 0, xtaps = 0;
  size_t row_start = 0, row_list = 0, col_start = 0, col_list = 0;
  size_t tables = 0;                     // the batch's cumulative tables
  size_t m_work = 0, count_work = 0;
  bool m_shared = true, count_shared = true;
  size_t m_doubles = 0;   // per image: tables_kernel's budgets
  size_t count_ints = 0;  // per image: taps_kernel's counters
  size_t total = 0;

  size_t tables_shared_bytes() const { return m_shared ? m_doubles * sizeof(double) : 0; }
  size_t taps_shared_bytes() const { return count_shared ? count_ints * sizeof(int32_t) : 0; }
};

// The layout for blocks of `threads` threads (the kernels: kThreads).
template <typename T>
Layout layout_for(const Geometry& g, int threads = kThreads) {
  Layout L;
  size_t off = 0;
  auto take = [&off](size_t bytes) {
    const size_t at = off;
    off += align_up(bytes);
    return at;
  };
  const size_t n = static_cast<size_t>(g.n);
  L.ytaps = take(n * g.out_h * sizeof(Tap<T>));
  L.xtaps = take(n * g.out_w * sizeof(Tap<T>));
  L.row_start = take(n * (g.h + 1) * sizeof(int32_t));
  L.row_list = take(n * 2 * g.out_h * sizeof(int32_t));
  L.col_start = take(n * (g.w + 1) * sizeof(int32_t));
  L.col_list = take(n * 2 * g.out_w * sizeof(int32_t));
  L.tables = take(n * table_entries(g.ly, g.lx) * sizeof(double));
  L.m_doubles = static_cast<size_t>(budget_entries(g.ly, g.lx));
  L.m_shared = L.m_doubles * sizeof(double) <= kMaxDynamicShared;
  if (!L.m_shared) L.m_work = take(n * L.m_doubles * sizeof(double));
  L.count_ints = static_cast<size_t>(cuda_kernels::taps_counts_per_image(g, threads));
  L.count_shared = L.count_ints * sizeof(int32_t) <= kMaxDynamicShared;
  if (!L.count_shared) L.count_work = take(n * L.count_ints * sizeof(int32_t));
  L.total = off;
  return L;
}

// The kernels index a plane and an axis with 32-bit integers, images with a grid dimension.
inline std::string check_limits(const Geometry& g) {
  std::ostringstream msg;
  if (g.h * g.w > kMaxIndex || g.out_h * g.out_w > kMaxIndex || 2 * g.out_h > kMaxIndex ||
      2 * g.out_w > kMaxIndex || g.n > kMaxIndex) {
    msg << "the CUDA sampler needs N, H*W and out_h*out_w below 2^31, got N=" << g.n << ", "
        << g.h << "x" << g.w << " -> " << g.out_h << "x" << g.out_w;
  }
  return msg.str();
}

template <typename P>
TASN_HD P* at(void* scratch, size_t offset) {
  return reinterpret_cast<P*>(static_cast<char*>(scratch) + offset);
}

// tables_kernel's task: every image's cumulative tables into the scratch's table buffer.
template <typename T>
TablesTask<T> tables_task(const T* att_y, const T* att_x, const Geometry& g,
                          const SamplerParams& params, const Layout& L, void* scratch) {
  return TablesTask<T>{att_y, att_x, g, params, at<double>(scratch, L.tables)};
}

// taps_kernel's task: coordinates into ys/xs when given, the tap tables when `taps`, their
// inverses too when `inverse`.
template <typename T, typename C>
TapsTask<T, C> taps_task(const Geometry& g, const SamplerParams& params, const Layout& L,
                         void* scratch, C* ys, C* xs, bool taps, bool inverse) {
  TapsTask<T, C> k{};
  k.tables = at<double>(scratch, L.tables);
  k.g = g;
  k.params = params;
  k.ys = ys;
  k.xs = xs;
  if (taps || inverse) {
    k.ytaps = at<Tap<T>>(scratch, L.ytaps);
    k.xtaps = at<Tap<T>>(scratch, L.xtaps);
  }
  if (inverse) {
    k.row_start = at<int32_t>(scratch, L.row_start);
    k.row_list = at<int32_t>(scratch, L.row_list);
    k.col_start = at<int32_t>(scratch, L.col_start);
    k.col_list = at<int32_t>(scratch, L.col_list);
  }
  return k;
}

// The work memory of image n of a grid block: in the block's shared memory when it fits
// (`shared`), else its part of the scratch.
TASN_HD inline double* budget_work(const Layout& L, void* scratch, double* shared, int64_t n) {
  return L.m_shared ? shared : at<double>(scratch, L.m_work) + n * L.m_doubles;
}

TASN_HD inline int32_t* count_work(const Layout& L, void* scratch, int32_t* shared, int64_t n) {
  return L.count_shared ? shared : at<int32_t>(scratch, L.count_work) + n * L.count_ints;
}

inline PlaneShape plane_shape(const Geometry& g) {
  PlaneShape s;
  s.channels = g.c;
  s.h = static_cast<int32_t>(g.h);
  s.w = static_cast<int32_t>(g.w);
  s.out_h = static_cast<int32_t>(g.out_h);
  s.out_w = static_cast<int32_t>(g.out_w);
  return s;
}

// The sampling kernels' blocks walk the (image, channel group) pairs; the first channel of
// group q of image n is (q mod per_image) * kChannelsPerThread.
struct ChannelGroups {
  int64_t per_image, total;

  // Group q -> its image n, first channel c0 and channel count (the last group may be short).
  TASN_HD void locate(int64_t q, int64_t channels, int64_t* n, int64_t* c0, int* count) const {
    *n = q / per_image;
    *c0 = (q - *n * per_image) * cuda_kernels::kChannelsPerThread;
    const int64_t left = channels - *c0;
    *count = left < cuda_kernels::kChannelsPerThread ? static_cast<int>(left)
                                                     : cuda_kernels::kChannelsPerThread;
  }
};

inline ChannelGroups channel_groups(const Geometry& g) {
  const int64_t per_image = (g.c + cuda_kernels::kChannelsPerThread - 1) /
                            cuda_kernels::kChannelsPerThread;
  return ChannelGroups{per_image, g.n * per_image};
}

}  // namespace cuda_launch
}  // namespace tasn

#endif  // TASN_SAMPLER_CUDA_LAUNCH_H_
