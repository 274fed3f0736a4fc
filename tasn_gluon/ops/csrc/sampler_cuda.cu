// CUDA kernels of the attention sampler: the same operator as sampler_cpu.cc, built from the
// same arithmetic (sampler_math.h), with results equal to the CPU kernels' bit for bit.
//
// Three kernels, all launched on the caller's stream:
//  * grid_kernel, one block per image: the budget and clip-and-give-back phase (elementwise
//    steps parallel over the block, each sum a sequential fold by one thread per axis, in the
//    CPU's order), then one thread per output index for the inverse CDF and the bilinear taps.
//    For the backward it also inverts the tap tables (which output rows/columns read each
//    source row/column, in the CPU's accumulation order).
//  * forward_kernel, one thread per output pixel: 2 source rows x 2 columns from the tap tables;
//    neighbouring threads read neighbouring columns, so the reads along x coalesce.
//  * backward_kernel, one thread per source pixel, gathering (no atomics): the sum over the
//    output rows and columns that read it, in the order the CPU scatters them. Deterministic.
//
// Bit-for-bit agreement needs IEEE operations as written: this file is compiled with
// -fmad=false (setup.py), and the sampling kernels use explicitly rounded intrinsics as well.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include <sstream>
#include <string>

#include "sampler.h"
#include "sampler_math.h"

namespace tasn {
namespace {

constexpr int kThreads = 256;                      // every kernel; >= 64 (two summing warps)
constexpr size_t kMaxDynamicShared = 40 * 1024;    // below the 48 KiB that needs no opt-in
constexpr size_t kAlign = 256;
constexpr int64_t kMaxIndex = 0x7fffffff;          // in-plane indices are 32-bit

// The two bilinear taps of one output row or column: source indices and weights.
template <typename T>
struct alignas(16) Tap {
  int32_t i0, i1;
  T w0, w1;
};

size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// Where everything lives in the caller's scratch memory (byte offsets), and which per-block
// work tables fit in shared memory (else they live in scratch too).
struct Layout {
  size_t ytaps = 0, xtaps = 0;
  size_t row_start = 0, row_list = 0, col_start = 0, col_list = 0;
  size_t grid_work = 0, invert_work = 0;
  bool grid_shared = true, invert_shared = true;
  size_t grid_doubles = 0, invert_ints = 0;  // per image
  size_t shared_bytes = 0;                   // dynamic shared memory of grid_kernel
  size_t total = 0;
};

Layout make_layout(const Geometry& g, size_t tap_bytes) {
  Layout L;
  size_t off = 0;
  auto take = [&off](size_t bytes) {
    const size_t at = off;
    off += align_up(bytes);
    return at;
  };
  const size_t n = static_cast<size_t>(g.n);
  L.ytaps = take(n * g.out_h * tap_bytes);
  L.xtaps = take(n * g.out_w * tap_bytes);
  L.row_start = take(n * (g.h + 1) * sizeof(int32_t));
  L.row_list = take(n * 2 * g.out_h * sizeof(int32_t));
  L.col_start = take(n * (g.w + 1) * sizeof(int32_t));
  L.col_list = take(n * 2 * g.out_w * sizeof(int32_t));
  // Budgets and cumulative tables of one image (as the CPU's scratch).
  L.grid_doubles = static_cast<size_t>(grid_scratch_per_image(g));
  L.grid_shared = L.grid_doubles * sizeof(double) <= kMaxDynamicShared;
  if (!L.grid_shared) L.grid_work = take(n * L.grid_doubles * sizeof(double));
  // Inverse tables: a counter per source index of the longer axis, one total per thread.
  L.invert_ints = static_cast<size_t>(g.h > g.w ? g.h : g.w) + kThreads;
  L.invert_shared = L.invert_ints * sizeof(int32_t) <= kMaxDynamicShared;
  if (!L.invert_shared) L.invert_work = take(n * L.invert_ints * sizeof(int32_t));
  const size_t a = L.grid_shared ? L.grid_doubles * sizeof(double) : 0;
  const size_t b = L.invert_shared ? L.invert_ints * sizeof(int32_t) : 0;
  L.shared_bytes = a > b ? a : b;
  L.total = off;
  return L;
}

template <typename T>
Layout layout_for(const Geometry& g) { return make_layout(g, sizeof(Tap<T>)); }

std::string cuda_error(const char* what, cudaError_t e) {
  std::ostringstream msg;
  msg << "CUDA error in " << what << ": " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e)
      << ")";
  return msg.str();
}

// The kernels index a plane and an axis with 32-bit integers.
std::string check_limits(const Geometry& g) {
  std::ostringstream msg;
  if (g.h * g.w > kMaxIndex || g.out_h * g.out_w > kMaxIndex || 2 * g.out_h > kMaxIndex ||
      2 * g.out_w > kMaxIndex) {
    msg << "the CUDA sampler needs H*W and out_h*out_w below 2^31, got " << g.h << "x" << g.w
        << " -> " << g.out_h << "x" << g.out_w;
  }
  return msg.str();
}

// Explicitly rounded products and sums: never contracted into FMAs, as on the CPU.
__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add(double a, double b) { return __dadd_rn(a, b); }

// ---- the grid ----------------------------------------------------------------------------

// Sequential left fold from 0, the order of the sums in profile_to_budget and clip_axis.
__device__ double fold_sum(const double* m, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += m[i];
  return s;
}

// The largest entries of two arrays over the whole block. Maximum is exact, so this equals
// array_max whatever the order.
__device__ void block_max2(const double* a, int64_t na, const double* b, int64_t nb,
                           double* red, double* max_a, double* max_b) {
  double va = -INFINITY, vb = -INFINITY;
  for (int64_t i = threadIdx.x; i < na; i += blockDim.x) va = dmax(va, a[i]);
  for (int64_t i = threadIdx.x; i < nb; i += blockDim.x) vb = dmax(vb, b[i]);
  for (int offset = 16; offset > 0; offset >>= 1) {
    va = dmax(va, __shfl_xor_sync(0xffffffffu, va, offset));
    vb = dmax(vb, __shfl_xor_sync(0xffffffffu, vb, offset));
  }
  const int warps = blockDim.x / 32;
  if ((threadIdx.x & 31) == 0) {
    red[threadIdx.x / 32] = va;
    red[32 + threadIdx.x / 32] = vb;
  }
  __syncthreads();
  va = red[0];
  vb = red[32];
  for (int k = 1; k < warps; ++k) {
    va = dmax(va, red[k]);
    vb = dmax(vb, red[32 + k]);
  }
  __syncthreads();  // red is reused by the next call
  *max_a = va;
  *max_b = vb;
}

// The inverse of one axis' tap table: for every source index k, the entries e = 2 * out_index
// + slot (slot 0: i0, 1: i1) that read it, in increasing e, i.e. the order in which the CPU's
// backward accumulates them. A stable counting sort; each thread owns a contiguous range of
// keys and walks the whole table, so no atomics are needed and the order is fixed.
template <typename T>
__device__ void invert_taps(const Tap<T>* taps, int64_t out, int64_t size, int32_t* start,
                            int32_t* list, int32_t* count, int32_t* totals) {
  const int64_t per = (size + blockDim.x - 1) / blockDim.x;
  const int64_t lo = threadIdx.x * per;
  const int64_t hi = lo + per < size ? lo + per : size;
  for (int64_t k = lo; k < hi; ++k) count[k] = 0;
  for (int64_t j = 0; j < out; ++j) {
    const Tap<T> t = taps[j];
    if (t.i0 >= lo && t.i0 < hi) ++count[t.i0];
    if (t.i1 >= lo && t.i1 < hi) ++count[t.i1];
  }
  int32_t mine = 0;
  for (int64_t k = lo; k < hi; ++k) mine += count[k];
  totals[threadIdx.x] = mine;
  __syncthreads();
  if (threadIdx.x == 0) {  // exclusive scan over the threads' ranges (blockDim entries)
    int32_t run = 0;
    for (unsigned k = 0; k < blockDim.x; ++k) {
      const int32_t v = totals[k];
      totals[k] = run;
      run += v;
    }
    start[size] = run;  // == 2 * out
  }
  __syncthreads();
  int32_t pos = totals[threadIdx.x];
  for (int64_t k = lo; k < hi; ++k) {
    const int32_t c = count[k];
    start[k] = pos;
    count[k] = pos;  // now the next free slot of key k
    pos += c;
  }
  for (int64_t j = 0; j < out; ++j) {
    const Tap<T> t = taps[j];
    if (t.i0 >= lo && t.i0 < hi) list[count[t.i0]++] = static_cast<int32_t>(2 * j);
    if (t.i1 >= lo && t.i1 < hi) list[count[t.i1]++] = static_cast<int32_t>(2 * j + 1);
  }
  __syncthreads();  // count and totals are reused
}

struct GridOutputs {
  void* ys;  // C*, optional
  void* xs;
  void* ytaps;  // Tap<T>*, optional
  void* xtaps;
  int32_t *row_start, *row_list, *col_start, *col_list;  // optional (backward)
};

// One block per image: compute_grid_cpu and compute_taps_cpu for that image.
template <typename T, typename C>
__global__ void __launch_bounds__(kThreads)
grid_kernel(const T* __restrict__ att_y, const T* __restrict__ att_x, Geometry g,
            SamplerParams params, GridOutputs o, double* grid_work, int32_t* invert_work,
            int grid_shared, int invert_shared, int64_t grid_doubles, int64_t invert_ints) {
  extern __shared__ double shared[];
  __shared__ double red[64];
  __shared__ double sums[2];
  const int64_t n = blockIdx.x;
  const int64_t ly = g.ly, lx = g.lx;
  const int tid = threadIdx.x;
  const int summer_y = 0, summer_x = 32;  // lane 0 of warps 0 and 1: the two axes in parallel

  double* my = grid_shared ? shared : grid_work + n * grid_doubles;
  double* mx = my + ly;
  double* cy = mx + lx;      // ly + 1 entries
  double* cx = cy + ly + 1;  // lx + 1 entries

  // Step 1, the budget (profile_to_budget, with its elementwise steps spread over the block).
  const double kMax = 1.7976931348623157e308;
  for (int64_t i = tid; i < ly; i += blockDim.x) {
    const double v = static_cast<double>(att_y[n * ly + i]);
    my[i] = (v > 0.0 && v <= kMax) ? v : 0.0;
  }
  for (int64_t i = tid; i < lx; i += blockDim.x) {
    const double v = static_cast<double>(att_x[n * lx + i]);
    mx[i] = (v > 0.0 && v <= kMax) ? v : 0.0;
  }
  __syncthreads();
  if (tid == summer_y) sums[0] = fold_sum(my, ly);
  if (tid == summer_x) sums[1] = fold_sum(mx, lx);
  __syncthreads();
  {
    const double sy = sums[0], sx = sums[1];
    const double oh = static_cast<double>(g.out_h), ow = static_cast<double>(g.out_w);
    for (int64_t i = tid; i < ly; i += blockDim.x)
      my[i] = (sy > 0.0 && sy <= kMax) ? my[i] / sy * oh : oh / static_cast<double>(ly);
    for (int64_t i = tid; i < lx; i += blockDim.x)
      mx[i] = (sx > 0.0 && sx <= kMax) ? mx[i] / sx * ow : ow / static_cast<double>(lx);
  }
  __syncthreads();

  // Step 2, clip and give back (clip_and_give_back / clip_axis, same spreading).
  const double t0_y = first_cap(params.scale, params.dense, g.h, ly);
  const double t0_x = first_cap(params.scale, params.dense, g.w, lx);
  for (int j = 0; j < params.iters; ++j) {
    double max_y, max_x;
    block_max2(my, ly, mx, lx, red, &max_y, &max_x);
    const double t = dmin(max_y, max_x);
    const double cap_y = j == 0 ? dmin(t0_y, t) : t;
    const double cap_x = j == 0 ? dmin(t0_x, t) : t;
    for (int64_t i = tid; i < ly; i += blockDim.x) my[i] = dmin(my[i], cap_y);
    for (int64_t i = tid; i < lx; i += blockDim.x) mx[i] = dmin(mx[i], cap_x);
    __syncthreads();
    if (tid == summer_y) sums[0] = fold_sum(my, ly);
    if (tid == summer_x) sums[1] = fold_sum(mx, lx);
    __syncthreads();
    const double give_y = (static_cast<double>(g.out_h) - sums[0]) / static_cast<double>(ly);
    const double give_x = (static_cast<double>(g.out_w) - sums[1]) / static_cast<double>(lx);
    for (int64_t i = tid; i < ly; i += blockDim.x) my[i] += give_y;
    for (int64_t i = tid; i < lx; i += blockDim.x) mx[i] += give_x;
    __syncthreads();
  }

  // Steps 3/4: the cumulative tables (sequential, shared helpers), then every output index in
  // parallel (shared helpers).
  if (tid == summer_y) {
    if (params.legacy) legacy_cdf(my, ly, cy); else clean_cdf(my, ly, cy);
  }
  if (tid == summer_x) {
    if (params.legacy) legacy_cdf(mx, lx, cx); else clean_cdf(mx, lx, cx);
  }
  __syncthreads();
  C* ys = static_cast<C*>(o.ys);
  C* xs = static_cast<C*>(o.xs);
  Tap<T>* ytaps = static_cast<Tap<T>*>(o.ytaps);
  Tap<T>* xtaps = static_cast<Tap<T>*>(o.xtaps);
  for (int64_t k = tid; k < g.out_h + g.out_w; k += blockDim.x) {
    const bool is_y = k < g.out_h;
    const int64_t idx = is_y ? k : k - g.out_h;
    const double* cum = is_y ? cy : cx;
    const int64_t length = is_y ? ly : lx, out = is_y ? g.out_h : g.out_w;
    const int64_t size = is_y ? g.h : g.w;
    const double coord = params.legacy ? legacy_coordinate(cum, length, idx, out, size)
                                       : clean_coordinate(cum, length, idx, out, size);
    C* coords = is_y ? ys : xs;
    if (coords != nullptr) coords[n * out + idx] = static_cast<C>(coord);
    Tap<T>* taps = is_y ? ytaps : xtaps;
    if (taps != nullptr) {
      int64_t i0, i1;
      T w0, w1;
      bilinear_taps(coord, size, params.legacy, &i0, &i1, &w0, &w1);
      taps[n * out + idx] = Tap<T>{static_cast<int32_t>(i0), static_cast<int32_t>(i1), w0, w1};
    }
  }
  if (o.row_start == nullptr) return;

  // The backward's inverse tables. The taps just written are visible to the whole block after
  // the barrier; the shared work memory of the grid is no longer needed.
  __syncthreads();
  int32_t* count = invert_shared ? reinterpret_cast<int32_t*>(shared)
                                 : invert_work + n * invert_ints;
  int32_t* totals = count + (invert_ints - blockDim.x);
  invert_taps(ytaps + n * g.out_h, g.out_h, g.h, o.row_start + n * (g.h + 1),
              o.row_list + n * 2 * g.out_h, count, totals);
  invert_taps(xtaps + n * g.out_w, g.out_w, g.w, o.col_start + n * (g.w + 1),
              o.col_list + n * 2 * g.out_w, count, totals);
}

// ---- sampling ----------------------------------------------------------------------------

// One thread per output pixel of a plane; blockIdx.y walks the (image, channel) planes.
// Per pixel, as forward_plane: row = a * r0 + b * r1 at the two source columns, then
// wx0 * row[x0] + wx1 * row[x1].
template <typename T>
__global__ void __launch_bounds__(kThreads)
forward_kernel(const T* __restrict__ data, const Tap<T>* __restrict__ ytaps,
               const Tap<T>* __restrict__ xtaps, int64_t channels, int32_t h, int32_t w,
               int32_t out_h, int32_t out_w, int64_t planes, T* __restrict__ out) {
  const int32_t e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= out_h * out_w) return;
  const int32_t i = e / out_w;
  const int32_t j = e - i * out_w;
  const int64_t in_plane = static_cast<int64_t>(h) * w;
  const int64_t out_plane = static_cast<int64_t>(out_h) * out_w;
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const int64_t n = p / channels;
    const Tap<T> ty = ytaps[n * out_h + i];
    const Tap<T> tx = xtaps[n * out_w + j];
    const T* __restrict__ r0 = data + p * in_plane + static_cast<int64_t>(ty.i0) * w;
    const T* __restrict__ r1 = data + p * in_plane + static_cast<int64_t>(ty.i1) * w;
    const T v0 = add(mul(ty.w0, __ldg(r0 + tx.i0)), mul(ty.w1, __ldg(r1 + tx.i0)));
    const T v1 = add(mul(ty.w0, __ldg(r0 + tx.i1)), mul(ty.w1, __ldg(r1 + tx.i1)));
    out[p * out_plane + e] = add(mul(tx.w0, v0), mul(tx.w1, v1));
  }
}

// One thread per source pixel: the transpose of the sampling as a gather. For source row y the
// entries of row_list (output row i, slot) come in the order backward_plane adds them; for
// each, the partial row value at column x is the sum over col_list's entries (output column j,
// slot), again in backward_plane's order, starting from 0. So the sums, and their rounding,
// are the CPU's.
template <typename T>
__global__ void __launch_bounds__(kThreads)
backward_kernel(const T* __restrict__ grad_out, const Tap<T>* __restrict__ ytaps,
                const Tap<T>* __restrict__ xtaps, const int32_t* __restrict__ row_start,
                const int32_t* __restrict__ row_list, const int32_t* __restrict__ col_start,
                const int32_t* __restrict__ col_list, int64_t channels, int32_t h, int32_t w,
                int32_t out_h, int32_t out_w, int64_t planes, T* __restrict__ grad_data) {
  const int32_t e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= h * w) return;
  const int32_t y = e / w;
  const int32_t x = e - y * w;
  const int64_t in_plane = static_cast<int64_t>(h) * w;
  const int64_t out_plane = static_cast<int64_t>(out_h) * out_w;
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const int64_t n = p / channels;
    const int32_t* rs = row_start + n * (h + 1);
    const int32_t* rl = row_list + n * 2 * out_h;
    const int32_t* cs = col_start + n * (w + 1);
    const int32_t* cl = col_list + n * 2 * out_w;
    const Tap<T>* yt = ytaps + n * out_h;
    const Tap<T>* xt = xtaps + n * out_w;
    const T* __restrict__ go = grad_out + p * out_plane;
    const int32_t c0 = cs[x], c1 = cs[x + 1];
    T acc = T(0);
    for (int32_t r = rs[y], r_end = rs[y + 1]; r < r_end; ++r) {
      const int32_t ey = rl[r];
      const Tap<T> ty = yt[ey >> 1];
      const T* __restrict__ gi = go + static_cast<int64_t>(ey >> 1) * out_w;
      T part = T(0);
      for (int32_t q = c0; q < c1; ++q) {
        const int32_t ex = cl[q];
        const Tap<T> tx = xt[ex >> 1];
        part = add(part, mul((ex & 1) ? tx.w1 : tx.w0, __ldg(gi + (ex >> 1))));
      }
      acc = add(acc, mul((ey & 1) ? ty.w1 : ty.w0, part));
    }
    grad_data[p * in_plane + e] = acc;
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

template <typename T, typename C>
std::string launch_grid(const T* att_y, const T* att_x, const Geometry& g,
                        const SamplerParams& params, C* ys, C* xs, bool taps, bool inverse,
                        void* scratch, void* stream) {
  const Layout L = layout_for<T>(g);
  if (L.total > 0 && scratch == nullptr) return "no scratch memory given to the CUDA sampler";
  GridOutputs o{};
  o.ys = ys;
  o.xs = xs;
  if (taps) {
    o.ytaps = tap_table<T>(scratch, L.ytaps);
    o.xtaps = tap_table<T>(scratch, L.xtaps);
  }
  if (inverse) {
    o.row_start = int_table(scratch, L.row_start);
    o.row_list = int_table(scratch, L.row_list);
    o.col_start = int_table(scratch, L.col_start);
    o.col_list = int_table(scratch, L.col_list);
  }
  double* grid_work = L.grid_shared ? nullptr
      : reinterpret_cast<double*>(static_cast<char*>(scratch) + L.grid_work);
  int32_t* invert_work = L.invert_shared ? nullptr : int_table(scratch, L.invert_work);
  grid_kernel<T, C><<<static_cast<unsigned>(g.n), kThreads, L.shared_bytes, as_stream(stream)>>>(
      att_y, att_x, g, params, o, grid_work, invert_work, L.grid_shared ? 1 : 0,
      L.invert_shared ? 1 : 0, static_cast<int64_t>(L.grid_doubles),
      static_cast<int64_t>(L.invert_ints));
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : cuda_error("the grid kernel", e);
}

// Blocks for `elements` threads per plane over `planes` planes.
dim3 plane_blocks(int64_t elements, int64_t planes) {
  const int64_t tiles = (elements + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(planes < 65535 ? planes : 65535));
}

std::string check_call(const Geometry& g) {
  if (g.n > 0x7fffffff) return "the CUDA sampler takes at most 2^31 - 1 images";
  return check_limits(g);
}

}  // namespace

size_t cuda_scratch_bytes(const Geometry& g, size_t elem_size) {
  return elem_size == sizeof(double) ? layout_for<double>(g).total : layout_for<float>(g).total;
}

template <typename T, typename C>
std::string att_sampler_grid_cuda(const T* att_y, const T* att_x, const Geometry& g,
                                  const SamplerParams& params, C* ys, C* xs, void* scratch,
                                  void* stream) {
  std::string error = check_call(g);
  if (!error.empty() || g.n == 0) return error;
  return launch_grid<T, C>(att_y, att_x, g, params, ys, xs, false, false, scratch, stream);
}

template <typename T>
std::string att_sampler_forward_cuda(const T* data, const T* att_y, const T* att_x,
                                     const Geometry& g, const SamplerParams& params, T* out,
                                     void* scratch, void* stream) {
  std::string error = check_call(g);
  const int64_t planes = g.n * g.c;
  if (!error.empty() || planes == 0) return error;
  error = launch_grid<T, double>(att_y, att_x, g, params, nullptr, nullptr, true, false, scratch,
                                 stream);
  if (!error.empty()) return error;
  const Layout L = layout_for<T>(g);
  forward_kernel<T><<<plane_blocks(g.out_h * g.out_w, planes), kThreads, 0, as_stream(stream)>>>(
      data, tap_table<T>(scratch, L.ytaps), tap_table<T>(scratch, L.xtaps), g.c,
      static_cast<int32_t>(g.h), static_cast<int32_t>(g.w), static_cast<int32_t>(g.out_h),
      static_cast<int32_t>(g.out_w), planes, out);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : cuda_error("the forward kernel", e);
}

template <typename T>
std::string att_sampler_backward_cuda(const T* grad_out, const T* att_y, const T* att_x,
                                      const Geometry& g, const SamplerParams& params,
                                      T* grad_data, void* scratch, void* stream) {
  std::string error = check_call(g);
  const int64_t planes = g.n * g.c;
  if (!error.empty() || planes == 0) return error;
  error = launch_grid<T, double>(att_y, att_x, g, params, nullptr, nullptr, true, true, scratch,
                                 stream);
  if (!error.empty()) return error;
  const Layout L = layout_for<T>(g);
  backward_kernel<T><<<plane_blocks(g.h * g.w, planes), kThreads, 0, as_stream(stream)>>>(
      grad_out, tap_table<T>(scratch, L.ytaps), tap_table<T>(scratch, L.xtaps),
      int_table(scratch, L.row_start), int_table(scratch, L.row_list),
      int_table(scratch, L.col_start), int_table(scratch, L.col_list), g.c,
      static_cast<int32_t>(g.h), static_cast<int32_t>(g.w), static_cast<int32_t>(g.out_h),
      static_cast<int32_t>(g.out_w), planes, grad_data);
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
