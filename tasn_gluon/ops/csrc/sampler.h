// The attention sampler's core: framework-free kernels over plain pointers (NCHW, contiguous).
// Both the MXNet binding and the plain C ABI call these.
#ifndef TASN_SAMPLER_H_
#define TASN_SAMPLER_H_

#include <stdint.h>

#include <string>

namespace tasn {

struct SamplerParams {
  double scale = 1.0;  // output = int(size * scale) per axis
  double dense = 4.0;  // largest magnification of a bin relative to uniform
  int iters = 5;       // clip-and-give-back rounds
  bool legacy = false; // the official code's arithmetic
};

struct Geometry {
  int64_t n = 0, c = 0, h = 0, w = 0;  // input (N, C, H, W)
  int64_t ly = 0, lx = 0;              // profile lengths
  int64_t out_h = 0, out_w = 0;        // output size, from h, w and scale
};

// Fills geometry.out_h/out_w and checks every argument; on a problem returns false with a
// message naming it in *error.
bool validate(const SamplerParams& params, Geometry* geometry, std::string* error);

// Per-image sampling tables: for every output row i, two source rows y0/y1 with weights, and
// for every output column j, two source columns x0/x1 with weights. Index arrays are
// (N, out_h) / (N, out_w).
template <typename T>
struct Taps {
  int64_t *y0, *y1, *x0, *x1;
  T *wy0, *wy1, *wx0, *wx1;
};

// The sampling coordinates (input-pixel units) of every output row (ys: N x out_h) and column
// (xs: N x out_w). Profiles are (N, Ly) and (N, Lx), contiguous. The N images are one batch:
// in legacy mode image n >= 1 reads C[-1] from image n - 1's table, as the official kernel
// does (sampler_math.h, legacy_before), and image 0 of every call starts afresh.
template <typename T>
void compute_grid_cpu(const T* att_y, const T* att_x, const Geometry& g,
                      const SamplerParams& params, double* ys, double* xs);

// Bilinear taps from the coordinates.
template <typename T>
void compute_taps_cpu(const double* ys, const double* xs, const Geometry& g, bool legacy,
                      Taps<T> taps);

// out (N, C, out_h, out_w) = separable bilinear sampling of data (N, C, H, W).
template <typename T>
void sample_forward_cpu(const T* data, const Geometry& g, const Taps<T>& taps, T* out);

// grad_data (N, C, H, W) = transpose of the sampling applied to grad_out; overwrites grad_data.
template <typename T>
void sample_backward_cpu(const T* grad_out, const Geometry& g, const Taps<T>& taps,
                         T* grad_data);

// The whole operator on the CPU (grid, taps, sampling) with its own scratch memory.
template <typename T>
void att_sampler_forward_cpu(const T* data, const T* att_y, const T* att_x, const Geometry& g,
                             const SamplerParams& params, T* out);
template <typename T>
void att_sampler_backward_cpu(const T* grad_out, const T* att_y, const T* att_x,
                              const Geometry& g, const SamplerParams& params, T* grad_data);

#ifdef TASN_WITH_CUDA
// The same operator on the GPU (sampler_cuda.cu). Pointers are device pointers; work is
// launched on `stream` (a cudaStream_t; nullptr is the legacy default stream) and is not
// waited for. `scratch` is device memory of at least cuda_scratch_bytes(g, sizeof(T)) bytes
// (the tap tables, and for the backward their inverses); it may be nullptr only when that size
// is 0. Every function returns "" on success, else a message naming the CUDA error. The
// arithmetic is sampler_math.h's, so results equal the CPU kernels' bit for bit where both
// compilers keep IEEE operations as written (nvcc -fmad=false; g++ on x86-64).
size_t cuda_scratch_bytes(const Geometry& g, size_t elem_size);
template <typename T>
std::string att_sampler_forward_cuda(const T* data, const T* att_y, const T* att_x,
                                     const Geometry& g, const SamplerParams& params, T* out,
                                     void* scratch, void* stream);
// Overwrites grad_data (N, C, H, W); deterministic (no atomics).
template <typename T>
std::string att_sampler_backward_cuda(const T* grad_out, const T* att_y, const T* att_x,
                                      const Geometry& g, const SamplerParams& params,
                                      T* grad_data, void* scratch, void* stream);
// The coordinates, as compute_grid_cpu computes them (legacy C[-1] included), stored as C
// (T or double).
template <typename T, typename C>
std::string att_sampler_grid_cuda(const T* att_y, const T* att_x, const Geometry& g,
                                  const SamplerParams& params, C* ys, C* xs, void* scratch,
                                  void* stream);
// Small runtime helpers for callers compiled without the CUDA headers (the MXNet binding and
// the C ABI): zero `bytes` bytes on a stream, allocate and free device memory, wait.
std::string cuda_zero(void* ptr, size_t bytes, void* stream);
std::string cuda_malloc(size_t bytes, void** ptr);
std::string cuda_free(void* ptr);
std::string cuda_synchronize(void* stream);
#endif

}  // namespace tasn

#endif  // TASN_SAMPLER_H_
