// CUDA kernels of the attention sampler: the same operator as sampler_cpu.cc, from the same
// arithmetic (sampler_math.h), computed in the CPU kernels' order so as to equal them bit for
// bit. The kernels' bodies are in sampler_cuda_kernels.cuh (see there for the design) and the
// host side of their launches (scratch layout, tasks, plane blocks) in sampler_cuda_launch.h;
// the tests run both on the CPU. This file launches them on the caller's stream:
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
#include "sampler_cuda_launch.h"
#include "sampler_math.h"

namespace tasn {
namespace {

using cuda_kernels::PlaneShape;
using cuda_kernels::TablesShared;
using cuda_kernels::TablesTask;
using cuda_kernels::Tap;
using cuda_kernels::TapsTask;
using cuda_launch::ChannelGroups;
using cuda_launch::Layout;
using cuda_launch::at;
using cuda_launch::channel_groups;
using cuda_launch::check_limits;
using cuda_launch::kThreads;
using cuda_launch::layout_for;
using cuda_launch::plane_shape;

std::string cuda_error(const char* what, cudaError_t e) {
  std::ostringstream msg;
  msg << "CUDA error in " << what << ": " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e)
      << ")";
  return msg.str();
}

struct BlockBarrier {
  __device__ void operator()() const { __syncthreads(); }
};

template <typename T>
__global__ void __launch_bounds__(kThreads)
tables_kernel(TablesTask<T> task, Layout L, void* scratch) {
  extern __shared__ double dynamic_shared[];
  __shared__ double red[2 * kThreads];
  __shared__ double sums[2];
  const int64_t n = blockIdx.x;
  TablesShared sh;
  sh.m = cuda_launch::budget_work(L, scratch, dynamic_shared, n);
  sh.red = red;
  sh.sums = sums;
  BlockBarrier barrier;
  cuda_kernels::tables_program(task, n, sh, static_cast<int>(threadIdx.x),
                               static_cast<int>(blockDim.x), barrier);
}

template <typename T, typename C>
__global__ void __launch_bounds__(kThreads)
taps_kernel(TapsTask<T, C> task, Layout L, void* scratch) {
  extern __shared__ double dynamic_shared[];  // declared as in tables_kernel: one symbol
  const int64_t n = blockIdx.x;
  int32_t* counts = cuda_launch::count_work(L, scratch,
                                            reinterpret_cast<int32_t*>(dynamic_shared), n);
  BlockBarrier barrier;
  cuda_kernels::taps_program(task, n, counts, static_cast<int>(threadIdx.x),
                             static_cast<int>(blockDim.x), barrier);
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

// Launches tables_kernel, then taps_kernel, for every image: coordinates into ys/xs when
// given, the tap tables when `taps`, their inverses too when `inverse`.
template <typename T, typename C>
std::string launch_grid(const T* att_y, const T* att_x, const Geometry& g,
                        const SamplerParams& params, C* ys, C* xs, bool taps, bool inverse,
                        void* scratch, void* stream) {
  const Layout L = layout_for<T>(g);
  if (L.total > 0 && scratch == nullptr) return "no scratch memory given to the CUDA sampler";
  tables_kernel<T><<<static_cast<unsigned>(g.n), kThreads, L.tables_shared_bytes(),
                     as_stream(stream)>>>(
      cuda_launch::tables_task(att_y, att_x, g, params, L, scratch), L, scratch);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return cuda_error("the tables kernel", e);
  taps_kernel<T, C><<<static_cast<unsigned>(g.n), kThreads, L.taps_shared_bytes(),
                      as_stream(stream)>>>(
      cuda_launch::taps_task<T, C>(g, params, L, scratch, ys, xs, taps, inverse), L, scratch);
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
      data, at<Tap<T>>(scratch, L.ytaps), at<Tap<T>>(scratch, L.xtaps), plane_shape(g), groups,
      out);
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
      grad_out, at<Tap<T>>(scratch, L.ytaps), at<Tap<T>>(scratch, L.xtaps),
      at<int32_t>(scratch, L.row_start), at<int32_t>(scratch, L.row_list),
      at<int32_t>(scratch, L.col_start), at<int32_t>(scratch, L.col_list), plane_shape(g),
      groups, grad_data);
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
