// CUDA kernels of the attention sampler: the same operator as sampler_cpu.cc, from the same
// arithmetic (sampler_math.h), computed in the CPU kernels' order so as to equal them bit for
// bit. The kernels' bodies are in sampler_cuda_kernels.cuh (see there for the design; they are
// also run on the CPU by the tests); this file launches them on the caller's stream:
//  * tables_kernel: one block of kThreads per image (budget, clipping, cumulative tables into
//    the batch's table buffer in scratch memory);
//  * taps_kernel: one block per image (inverse CDF, taps, and for the backward the inverse tap
//    tables). A second launch because a legacy image reads the previous image's table (C[-1],
//    as the official kernel does): the launch boundary orders every image's tables before any
//    image's coordinates, with no inter-block waiting and no recomputation;
//  * forward_kernel: one thread per output pixel and group of kChannelsPerThread channels,
//    blockIdx.y walking the (image, channel group) pairs; neighbouring threads read
//    neighbouring source columns, so loads coalesce;
//  * backward_kernel: the same per source pixel, a deterministic gather (no atomics).
//
// Bit-for-bit agreement needs IEEE operations as written: this file is compiled with
// -fmad=false (setup.py), and the sampling uses explicitly rounded intrinsics as well.
#include <cuda_runtime.h>
#include <stdint.h>

#include <sstream>
#include <string>

#include "sampler.h"
#include "sampler_cuda_kernels.cuh"
#include "sampler_math.h"

namespace tasn {
namespace {

using cuda_kernels::PlaneShape;
using cuda_kernels::TablesShared;
using cuda_kernels::TablesTask;
using cuda_kernels::Tap;
using cuda_kernels::TapsTask;

constexpr int kThreads = 256;                    // every kernel
constexpr size_t kMaxDynamicShared = 40 * 1024;  // with the static part, below the 48 KiB limit
constexpr size_t kAlign = 256;
constexpr int64_t kMaxIndex = 0x7fffffff;        // in-plane indices are 32-bit

size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

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

template <typename T>
Layout layout_for(const Geometry& g) {
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
  L.count_ints = static_cast<size_t>(cuda_kernels::taps_counts_per_image(g, kThreads));
  L.count_shared = L.count_ints * sizeof(int32_t) <= kMaxDynamicShared;
  if (!L.count_shared) L.count_work = take(n * L.count_ints * sizeof(int32_t));
  L.total = off;
  return L;
}

std::string cuda_error(const char* what, cudaError_t e) {
  std::ostringstream msg;
  msg << "CUDA error in " << what << ": " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e)
      << ")";
  return msg.str();
}

// The kernels index a plane and an axis with 32-bit integers, images with a grid dimension.
std::string check_limits(const Geometry& g) {
  std::ostringstream msg;
  if (g.h * g.w > kMaxIndex || g.out_h * g.out_w > kMaxIndex || 2 * g.out_h > kMaxIndex ||
      2 * g.out_w > kMaxIndex || g.n > kMaxIndex) {
    msg << "the CUDA sampler needs N, H*W and out_h*out_w below 2^31, got N=" << g.n << ", "
        << g.h << "x" << g.w << " -> " << g.out_h << "x" << g.out_w;
  }
  return msg.str();
}

struct BlockBarrier {
  __device__ void operator()() const { __syncthreads(); }
};

template <typename T>
__global__ void __launch_bounds__(kThreads)
tables_kernel(TablesTask<T> task, double* m_work, int m_shared, int64_t m_doubles) {
  extern __shared__ double dynamic_shared[];
  __shared__ double red[2 * kThreads];
  __shared__ double sums[2];
  const int64_t n = blockIdx.x;
  TablesShared sh;
  sh.m = m_shared ? dynamic_shared : m_work + n * m_doubles;
  sh.red = red;
  sh.sums = sums;
  BlockBarrier barrier;
  cuda_kernels::tables_program(task, n, sh, static_cast<int>(threadIdx.x),
                               static_cast<int>(blockDim.x), barrier);
}

template <typename T, typename C>
__global__ void __launch_bounds__(kThreads)
taps_kernel(TapsTask<T, C> task, int32_t* count_work, int count_shared, int64_t count_ints) {
  extern __shared__ double dynamic_shared[];  // declared as in tables_kernel: one symbol
  const int64_t n = blockIdx.x;
  int32_t* counts = count_shared ? reinterpret_cast<int32_t*>(dynamic_shared)
                                 : count_work + n * count_ints;
  BlockBarrier barrier;
  cuda_kernels::taps_program(task, n, counts, static_cast<int>(threadIdx.x),
                             static_cast<int>(blockDim.x), barrier);
}

// blockIdx.y (striding) walks the (image, channel group) pairs; the first channel of group g of
// image n is g * kChannelsPerThread.
struct ChannelGroups {
  int64_t per_image, total;

  // Group q -> its image n, first channel c0 and channel count (the last group may be short).
  __device__ void locate(int64_t q, int64_t channels, int64_t* n, int64_t* c0,
                         int* count) const {
    *n = q / per_image;
    *c0 = (q - *n * per_image) * cuda_kernels::kChannelsPerThread;
    const int64_t left = channels - *c0;
    *count = left < cuda_kernels::kChannelsPerThread ? static_cast<int>(left)
                                                     : cuda_kernels::kChannelsPerThread;
  }
};

ChannelGroups channel_groups(const Geometry& g) {
  const int64_t per_image = (g.c + cuda_kernels::kChannelsPerThread - 1) /
                            cuda_kernels::kChannelsPerThread;
  return ChannelGroups{per_image, g.n * per_image};
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
forward_kernel(const T* __restrict__ data, const Tap<T>* __restrict__ ytaps,
               const Tap<T>* __restrict__ xtaps, PlaneShape s, ChannelGroups groups,
               T* __restrict__ out) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= static_cast<int64_t>(s.out_h) * s.out_w) return;
  const int32_t e = static_cast<int32_t>(index);
  for (int64_t q = blockIdx.y; q < groups.total; q += gridDim.y) {
    int64_t n, c0;
    int count;
    groups.locate(q, s.channels, &n, &c0, &count);
    cuda_kernels::forward_pixels(data, ytaps, xtaps, s, n, c0, count, e, out);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
backward_kernel(const T* __restrict__ grad_out, const Tap<T>* __restrict__ ytaps,
                const Tap<T>* __restrict__ xtaps, const int32_t* __restrict__ row_start,
                const int32_t* __restrict__ row_list, const int32_t* __restrict__ col_start,
                const int32_t* __restrict__ col_list, PlaneShape s, ChannelGroups groups,
                T* __restrict__ grad_data) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= static_cast<int64_t>(s.h) * s.w) return;
  const int32_t e = static_cast<int32_t>(index);
  for (int64_t q = blockIdx.y; q < groups.total; q += gridDim.y) {
    int64_t n, c0;
    int count;
    groups.locate(q, s.channels, &n, &c0, &count);
    cuda_kernels::backward_pixels(grad_out, ytaps, xtaps, row_start, row_list, col_start,
                                  col_list, s, n, c0, count, e, grad_data);
  }
}

// ---- launches ----------------------------------------------------------------------------

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

template <typename T>
Tap<T>* tap_table(void* scratch, size_t offset) {
  return reinterpret_cast<Tap<T>*>(static_cast<char*>(scratch) + offset);
}

int32_t* int_table(void* scratch, size_t offset) {
  return reinterpret_cast<int32_t*>(static_cast<char*>(scratch) + offset);
}

// Launches tables_kernel, then taps_kernel, for every image: coordinates into ys/xs when
// given, the tap tables when `taps`, their inverses too when `inverse`.
template <typename T, typename C>
std::string launch_grid(const T* att_y, const T* att_x, const Geometry& g,
                        const SamplerParams& params, C* ys, C* xs, bool taps, bool inverse,
                        void* scratch, void* stream) {
  const Layout L = layout_for<T>(g);
  if (L.total > 0 && scratch == nullptr) return "no scratch memory given to the CUDA sampler";
  char* base = static_cast<char*>(scratch);
  double* tables = reinterpret_cast<double*>(base + L.tables);
  TablesTask<T> first{att_y, att_x, g, params, tables};
  double* m_work = L.m_shared ? nullptr : reinterpret_cast<double*>(base + L.m_work);
  tables_kernel<T><<<static_cast<unsigned>(g.n), kThreads, L.tables_shared_bytes(),
                     as_stream(stream)>>>(first, m_work, L.m_shared ? 1 : 0,
                                          static_cast<int64_t>(L.m_doubles));
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return cuda_error("the tables kernel", e);

  TapsTask<T, C> second{};
  second.tables = tables;
  second.g = g;
  second.params = params;
  second.ys = ys;
  second.xs = xs;
  if (taps || inverse) {
    second.ytaps = tap_table<T>(scratch, L.ytaps);
    second.xtaps = tap_table<T>(scratch, L.xtaps);
  }
  if (inverse) {
    second.row_start = int_table(scratch, L.row_start);
    second.row_list = int_table(scratch, L.row_list);
    second.col_start = int_table(scratch, L.col_start);
    second.col_list = int_table(scratch, L.col_list);
  }
  int32_t* count_work = L.count_shared ? nullptr : int_table(scratch, L.count_work);
  taps_kernel<T, C><<<static_cast<unsigned>(g.n), kThreads, L.taps_shared_bytes(),
                      as_stream(stream)>>>(second, count_work, L.count_shared ? 1 : 0,
                                           static_cast<int64_t>(L.count_ints));
  e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : cuda_error("the taps kernel", e);
}

// Blocks of kThreads for `elements` threads per plane; blockIdx.y strides over the channel
// groups.
dim3 plane_blocks(int64_t elements, const ChannelGroups& groups) {
  const int64_t tiles = (elements + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(tiles),
              static_cast<unsigned>(groups.total < 65535 ? groups.total : 65535));
}

PlaneShape plane_shape(const Geometry& g) {
  PlaneShape s;
  s.channels = g.c;
  s.h = static_cast<int32_t>(g.h);
  s.w = static_cast<int32_t>(g.w);
  s.out_h = static_cast<int32_t>(g.out_h);
  s.out_w = static_cast<int32_t>(g.out_w);
  return s;
}

}  // namespace

size_t cuda_scratch_bytes(const Geometry& g, size_t elem_size) {
  return elem_size == sizeof(double) ? layout_for<double>(g).total : layout_for<float>(g).total;
}

template <typename T, typename C>
std::string att_sampler_grid_cuda(const T* att_y, const T* att_x, const Geometry& g,
                                  const SamplerParams& params, C* ys, C* xs, void* scratch,
                                  void* stream) {
  const std::string error = check_limits(g);
  if (!error.empty() || g.n == 0) return error;
  return launch_grid<T, C>(att_y, att_x, g, params, ys, xs, false, false, scratch, stream);
}

template <typename T>
std::string att_sampler_forward_cuda(const T* data, const T* att_y, const T* att_x,
                                     const Geometry& g, const SamplerParams& params, T* out,
                                     void* scratch, void* stream) {
  std::string error = check_limits(g);
  const int64_t planes = g.n * g.c;
  if (!error.empty() || planes == 0) return error;
  error = launch_grid<T, double>(att_y, att_x, g, params, nullptr, nullptr, true, false, scratch,
                                 stream);
  if (!error.empty()) return error;
  const Layout L = layout_for<T>(g);
  const ChannelGroups groups = channel_groups(g);
  forward_kernel<T><<<plane_blocks(g.out_h * g.out_w, groups), kThreads, 0, as_stream(stream)>>>(
      data, tap_table<T>(scratch, L.ytaps), tap_table<T>(scratch, L.xtaps), plane_shape(g),
      groups, out);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : cuda_error("the forward kernel", e);
}

template <typename T>
std::string att_sampler_backward_cuda(const T* grad_out, const T* att_y, const T* att_x,
                                      const Geometry& g, const SamplerParams& params,
                                      T* grad_data, void* scratch, void* stream) {
  std::string error = check_limits(g);
  const int64_t planes = g.n * g.c;
  if (!error.empty() || planes == 0) return error;
  error = launch_grid<T, double>(att_y, att_x, g, params, nullptr, nullptr, true, true, scratch,
                                 stream);
  if (!error.empty()) return error;
  const Layout L = layout_for<T>(g);
  const ChannelGroups groups = channel_groups(g);
  backward_kernel<T><<<plane_blocks(g.h * g.w, groups), kThreads, 0, as_stream(stream)>>>(
      grad_out, tap_table<T>(scratch, L.ytaps), tap_table<T>(scratch, L.xtaps),
      int_table(scratch, L.row_start), int_table(scratch, L.row_list),
      int_table(scratch, L.col_start), int_table(scratch, L.col_list), plane_shape(g), groups,
      grad_data);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : cuda_error("the backward kernel", e);
}

std::string cuda_zero(void* ptr, size_t bytes, void* stream) {
  if (bytes == 0) return std::string();
  const cudaError_t e = cudaMemsetAsync(ptr, 0, bytes, as_stream(stream));
  return e == cudaSuccess ? std::string() : cuda_error("cudaMemsetAsync", e);
}

std::string cuda_malloc(size_t bytes, void** ptr) {
  *ptr = nullptr;
  if (bytes == 0) return std::string();
  const cudaError_t e = cudaMalloc(ptr, bytes);
  return e == cudaSuccess ? std::string() : cuda_error("cudaMalloc", e);
}

std::string cuda_free(void* ptr) {
  const cudaError_t e = cudaFree(ptr);
  return e == cudaSuccess ? std::string() : cuda_error("cudaFree", e);
}

std::string cuda_synchronize(void* stream) {
  const cudaError_t e = cudaStreamSynchronize(as_stream(stream));
  return e == cudaSuccess ? std::string() : cuda_error("the sampler's kernels", e);
}

#define TASN_CUDA_INSTANTIATE(T)                                                              \
  template std::string att_sampler_forward_cuda<T>(const T*, const T*, const T*,             \
                                                   const Geometry&, const SamplerParams&, T*, \
                                                   void*, void*);                            \
  template std::string att_sampler_backward_cuda<T>(const T*, const T*, const T*,            \
                                                    const Geometry&, const SamplerParams&,   \
                                                    T*, void*, void*);                       \
  template std::string att_sampler_grid_cuda<T, T>(const T*, const T*, const Geometry&,      \
                                                   const SamplerParams&, T*, T*, void*,      \
                                                   void*);

TASN_CUDA_INSTANTIATE(float)
TASN_CUDA_INSTANTIATE(double)
template std::string att_sampler_grid_cuda<float, double>(const float*, const float*,
                                                          const Geometry&,
                                                          const SamplerParams&, double*,
                                                          double*, void*, void*);

}  // namespace tasn
