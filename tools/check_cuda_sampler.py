"""Checks the AttSampler's CUDA kernels against its CPU kernels on a machine with an NVIDIA GPU,
through the plain C ABI (libtasn_sampler.so): no MXNet needed, CuPy optional (else ctypes and
libcudart's cudaMalloc).

It runs the grid, the forward and the backward on random inputs on both devices (both modes,
float32 and float64, shapes that exercise every code path), prints the largest absolute
difference of each, then times the forward at batch 96 of 3x512x512 -> 224x224 float32 and
reports the bandwidth it achieves against the GPU's peak (from its memory clock and bus width,
and from a measured device-to-device copy).

    python tools/check_cuda_sampler.py            # the library `make setup` built
    python tools/check_cuda_sampler.py --build    # first build one with this machine's nvcc,
                                                  # for this GPU only (about a minute)

Exit status: 0 when every CUDA result matches the CPU (float32 within 1e-5, float64 within
1e-12), 1 on a mismatch, 2 when it cannot run (no GPU, no CUDA runtime, no library).
"""
import argparse
import ctypes
import ctypes.util
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, 'tasn_gluon', 'ops', 'csrc')
DEFAULT_LIBRARY = os.path.join(ROOT, 'tasn_gluon', 'ops', 'libtasn_sampler.so')
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}
EXIT_MISMATCH, EXIT_CANNOT_RUN = 1, 2


class CannotRun(RuntimeError):
    """The check cannot run here (no GPU, runtime or library); the message says why."""


# ---- the CUDA runtime: CuPy when present, else libcudart through ctypes --------------------

class CudaRuntime:
    """The few runtime calls the check needs: memory, copies, events, device attributes."""

    H2D, D2H, D2D = 1, 2, 3
    ATTR_MEMORY_CLOCK_KHZ, ATTR_BUS_WIDTH_BITS = 36, 37
    ATTR_CC_MAJOR, ATTR_CC_MINOR = 75, 76

    def __init__(self):
        self.backend = None
        try:
            import cupy  # noqa: F401  (optional)
            from cupy.cuda import runtime
            self._rt = runtime
            self.backend = 'cupy'
        except Exception:  # absent, or present without a working CUDA
            self._lib = self._load_cudart()
            self.backend = 'ctypes:' + self._lib._name
            self._declare()

    # -- libcudart ---------------------------------------------------------------------------
    @staticmethod
    def _cudart_candidates():
        if os.environ.get('TASN_CUDART'):
            yield os.environ['TASN_CUDART']
        found = ctypes.util.find_library('cudart')
        if found:
            yield found
        roots = [os.environ.get(v) for v in ('CUDA_HOME', 'CUDA_PATH')] + ['/usr/local/cuda']
        for root in filter(None, roots):
            for sub in ('lib64', 'lib', 'targets/x86_64-linux/lib', 'targets/sbsa-linux/lib'):
                yield from sorted(glob.glob(os.path.join(root, sub, 'libcudart.so*')),
                                  reverse=True)
        for path in sys.path:  # the nvidia-cuda-runtime wheels
            yield from sorted(glob.glob(os.path.join(path, 'nvidia', 'cuda_runtime', 'lib',
                                                     'libcudart.so*')), reverse=True)
        for name in ('libcudart.so', 'libcudart.so.13', 'libcudart.so.12', 'libcudart.so.11.0'):
            yield name

    def _load_cudart(self):
        tried = []
        for candidate in self._cudart_candidates():
            try:
                return ctypes.CDLL(candidate)
            except OSError as e:
                tried.append('%s (%s)' % (candidate, e))
        raise CannotRun('no CUDA runtime: neither CuPy nor libcudart.so could be loaded (tried %s).'
                        ' This check needs a machine with an NVIDIA GPU and the CUDA toolkit or '
                        'runtime; point TASN_CUDART at libcudart.so if it is elsewhere.'
                        % ('; '.join(tried[:6]) or 'nothing'))

    def _declare(self):
        L = self._lib
        vp, sz, i, ip = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.POINTER(ctypes.c_int)
        sigs = {
            'cudaGetDeviceCount': [ip],
            'cudaMalloc': [ctypes.POINTER(vp), sz],
            'cudaFree': [vp],
            'cudaMemcpy': [vp, vp, sz, i],
            'cudaMemset': [vp, i, sz],
            'cudaDeviceSynchronize': [],
            'cudaDeviceGetAttribute': [ip, i, i],
            'cudaGetDevice': [ip],
            'cudaEventCreate': [ctypes.POINTER(vp)],
            'cudaEventRecord': [vp, vp],
            'cudaEventSynchronize': [vp],
            'cudaEventElapsedTime': [ctypes.POINTER(ctypes.c_float), vp, vp],
            'cudaEventDestroy': [vp],
            'cudaDriverGetVersion': [ip],
            'cudaRuntimeGetVersion': [ip],
        }
        for name, args in sigs.items():
            fn = getattr(L, name)
            fn.argtypes = args
            fn.restype = ctypes.c_int
        L.cudaGetErrorString.argtypes = [ctypes.c_int]
        L.cudaGetErrorString.restype = ctypes.c_char_p

    def _check(self, code, what):
        if code != 0:
            raise RuntimeError('%s failed: CUDA error %d (%s)' % (
                what, code, self._lib.cudaGetErrorString(code).decode()))

    # -- the calls ---------------------------------------------------------------------------
    def device_count(self):
        """Number of usable GPUs; raises CannotRun with the runtime's reason when there is none."""
        if self.backend == 'cupy':
            try:
                count = self._rt.getDeviceCount()
            except Exception as e:
                raise CannotRun('no usable NVIDIA GPU: %s' % e)
        else:
            n = ctypes.c_int(0)
            code = self._lib.cudaGetDeviceCount(ctypes.byref(n))
            if code != 0:
                raise CannotRun('no usable NVIDIA GPU: cudaGetDeviceCount returned CUDA error %d '
                                '(%s)%s' % (code, self._lib.cudaGetErrorString(code).decode(),
                                            self._driver_hint()))
            count = n.value
        if count == 0:
            raise CannotRun('no usable NVIDIA GPU: the CUDA runtime sees 0 devices')
        return count

    @staticmethod
    def _driver_hint():
        try:
            ctypes.CDLL('libcuda.so.1')
            return ''
        except OSError:
            return '; there is no NVIDIA driver on this machine (libcuda.so.1 is missing)'

    def attribute(self, attr):
        if self.backend == 'cupy':
            return self._rt.deviceGetAttribute(attr, self._rt.getDevice())
        dev, v = ctypes.c_int(0), ctypes.c_int(0)
        self._check(self._lib.cudaGetDevice(ctypes.byref(dev)), 'cudaGetDevice')
        self._check(self._lib.cudaDeviceGetAttribute(ctypes.byref(v), attr, dev.value),
                    'cudaDeviceGetAttribute')
        return v.value

    def device_name(self):
        if self.backend == 'cupy':
            name = self._rt.getDeviceProperties(self._rt.getDevice())['name']
            return name.decode() if isinstance(name, bytes) else str(name)
        # cudaDeviceProp starts with char name[256] in every CUDA version.
        buf = ctypes.create_string_buffer(4096)
        dev = ctypes.c_int(0)
        self._lib.cudaGetDevice(ctypes.byref(dev))
        fn = getattr(self._lib, 'cudaGetDeviceProperties_v2', None) or \
            self._lib.cudaGetDeviceProperties
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
        fn.restype = ctypes.c_int
        if fn(buf, dev.value) != 0:
            return 'unknown GPU'
        return buf.value.decode(errors='replace')

    def versions(self):
        if self.backend == 'cupy':
            return self._rt.driverGetVersion(), self._rt.runtimeGetVersion()
        d, r = ctypes.c_int(0), ctypes.c_int(0)
        self._lib.cudaDriverGetVersion(ctypes.byref(d))
        self._lib.cudaRuntimeGetVersion(ctypes.byref(r))
        return d.value, r.value

    def malloc(self, nbytes):
        nbytes = max(int(nbytes), 1)
        if self.backend == 'cupy':
            return self._rt.malloc(nbytes)
        p = ctypes.c_void_p()
        self._check(self._lib.cudaMalloc(ctypes.byref(p), nbytes), 'cudaMalloc(%d)' % nbytes)
        return p.value

    def free(self, ptr):
        if self.backend == 'cupy':
            self._rt.free(ptr)
        else:
            self._check(self._lib.cudaFree(ptr), 'cudaFree')

    def upload(self, array):
        array = np.ascontiguousarray(array)
        ptr = self.malloc(array.nbytes)
        self.copy(ptr, array.ctypes.data, array.nbytes, self.H2D)
        return ptr

    def download(self, ptr, shape, dtype):
        out = np.empty(shape, dtype)
        self.copy(out.ctypes.data, ptr, out.nbytes, self.D2H)
        return out

    def copy(self, dst, src, nbytes, kind):
        if self.backend == 'cupy':
            self._rt.memcpy(dst, src, nbytes, kind)
        else:
            self._check(self._lib.cudaMemcpy(dst, src, nbytes, kind), 'cudaMemcpy')

    def memset(self, ptr, value, nbytes):
        if self.backend == 'cupy':
            self._rt.memset(ptr, value, nbytes)
        else:
            self._check(self._lib.cudaMemset(ptr, value, nbytes), 'cudaMemset')

    def synchronize(self):
        if self.backend == 'cupy':
            self._rt.deviceSynchronize()
        else:
            self._check(self._lib.cudaDeviceSynchronize(), 'cudaDeviceSynchronize')

    def time_ms(self, fn, repeats):
        """Mean milliseconds of fn() on the default stream, by CUDA events, after a warm-up."""
        fn()
        self.synchronize()
        if self.backend == 'cupy':
            start, stop = self._rt.eventCreate(), self._rt.eventCreate()
            self._rt.eventRecord(start, 0)
            for _ in range(repeats):
                fn()
            self._rt.eventRecord(stop, 0)
            self._rt.eventSynchronize(stop)
            ms = self._rt.eventElapsedTime(start, stop)
            self._rt.eventDestroy(start)
            self._rt.eventDestroy(stop)
            return ms / repeats
        start, stop = ctypes.c_void_p(), ctypes.c_void_p()
        self._check(self._lib.cudaEventCreate(ctypes.byref(start)), 'cudaEventCreate')
        self._check(self._lib.cudaEventCreate(ctypes.byref(stop)), 'cudaEventCreate')
        self._check(self._lib.cudaEventRecord(start, None), 'cudaEventRecord')
        for _ in range(repeats):
            fn()
        self._check(self._lib.cudaEventRecord(stop, None), 'cudaEventRecord')
        self._check(self._lib.cudaEventSynchronize(stop), 'cudaEventSynchronize')
        ms = ctypes.c_float()
        self._check(self._lib.cudaEventElapsedTime(ctypes.byref(ms), start, stop),
                    'cudaEventElapsedTime')
        self._lib.cudaEventDestroy(start)
        self._lib.cudaEventDestroy(stop)
        return ms.value / repeats


# ---- the library's C ABI -------------------------------------------------------------------

class SamplerLibrary:
    """ctypes binding of c_api.cc (CPU functions always, CUDA ones when built with CUDA)."""

    def __init__(self, path):
        if not os.path.isfile(path):
            raise CannotRun('%s does not exist: build it with `make setup` (or run this check '
                            'with --build)' % path)
        self.path = path
        self.lib = ctypes.CDLL(path)
        L = self.lib
        L.tasn_sampler_last_error.restype = ctypes.c_char_p
        L.tasn_sampler_has_cuda.restype = ctypes.c_int
        self.has_cuda = bool(L.tasn_sampler_has_cuda())
        i64, d, i, vp = ctypes.c_int64, ctypes.c_double, ctypes.c_int, ctypes.c_void_p
        shape7 = [i64] * 6 + [d, d, i, i]  # n, c, h, w, ly, lx, scale, dense, iters, legacy
        shape_grid = [i64] * 5 + [d, d, i, i]  # n, h, w, ly, lx, ...
        for suffix in ('f32', 'f64'):
            for prefix, extra in (('tasn_sampler_', []), ('tasn_sampler_cuda_', [vp, vp])):
                if prefix.endswith('cuda_') and not self.has_cuda:
                    continue
                fn = getattr(L, prefix + 'grid_' + suffix)
                fn.argtypes = [vp, vp] + shape_grid + [vp, vp] + extra
                fn.restype = i
                for name in ('forward_', 'backward_'):
                    fn = getattr(L, prefix + name + suffix)
                    fn.argtypes = [vp, vp, vp] + shape7 + [vp] + extra
                    fn.restype = i
        if self.has_cuda:
            L.tasn_sampler_cuda_scratch_bytes.argtypes = shape7 + [i]
            L.tasn_sampler_cuda_scratch_bytes.restype = i64
            L.tasn_sampler_cuda_synchronize.argtypes = [vp]
            L.tasn_sampler_cuda_synchronize.restype = i

    def error(self):
        return self.lib.tasn_sampler_last_error().decode()

    def call(self, name, *args):
        if getattr(self.lib, name)(*args) != 0:
            raise RuntimeError('%s failed: %s' % (name, self.error()))

    def scratch_bytes(self, n, c, h, w, ly, lx, attrs, elem_size):
        v = self.lib.tasn_sampler_cuda_scratch_bytes(n, c, h, w, ly, lx, *attrs, elem_size)
        if v < 0:
            raise RuntimeError('tasn_sampler_cuda_scratch_bytes failed: %s' % self.error())
        return v


def suffix(dtype):
    return 'f32' if np.dtype(dtype) == np.float32 else 'f64'


def out_size(size, scale):
    return int(size * scale)


def cpu_run(lib, data, att_y, att_x, attrs, grad_out=None):
    """(ys, xs, out, grad_data) from the CPU kernels; data (N, C, H, W)."""
    n, c, h, w = data.shape
    ly, lx = att_y.shape[1], att_x.shape[1]
    oh, ow = out_size(h, attrs[0]), out_size(w, attrs[0])
    sfx = suffix(data.dtype)
    ys, xs = np.empty((n, oh)), np.empty((n, ow))
    lib.call('tasn_sampler_grid_' + sfx, att_y.ctypes.data, att_x.ctypes.data, n, h, w, ly, lx,
             *attrs, ys.ctypes.data, xs.ctypes.data)
    out = np.empty((n, c, oh, ow), data.dtype)
    lib.call('tasn_sampler_forward_' + sfx, data.ctypes.data, att_y.ctypes.data,
             att_x.ctypes.data, n, c, h, w, ly, lx, *attrs, out.ctypes.data)
    grad = np.empty_like(data)
    lib.call('tasn_sampler_backward_' + sfx, grad_out.ctypes.data, att_y.ctypes.data,
             att_x.ctypes.data, n, c, h, w, ly, lx, *attrs, grad.ctypes.data)
    return ys, xs, out, grad


def gpu_run(lib, cuda, data, att_y, att_x, attrs, grad_out):
    """The same from the CUDA kernels (device buffers, the library's scratch)."""
    n, c, h, w = data.shape
    ly, lx = att_y.shape[1], att_x.shape[1]
    oh, ow = out_size(h, attrs[0]), out_size(w, attrs[0])
    sfx = suffix(data.dtype)
    owned = []

    def up(a):
        owned.append(cuda.upload(a))
        return owned[-1]

    def alloc(nbytes):
        owned.append(cuda.malloc(nbytes))
        return owned[-1]

    try:
        d_data, d_y, d_x, d_go = up(data), up(att_y), up(att_x), up(grad_out)
        scratch = alloc(lib.scratch_bytes(n, c, h, w, ly, lx, attrs, data.itemsize))
        d_ys, d_xs = alloc(8 * n * oh), alloc(8 * n * ow)
        d_out = alloc(data.itemsize * n * c * oh * ow)
        d_grad = alloc(data.nbytes)
        cuda.memset(d_out, 0xff, data.itemsize * n * c * oh * ow)  # NaN: unwritten shows up
        cuda.memset(d_grad, 0xff, data.nbytes)
        lib.call('tasn_sampler_cuda_grid_' + sfx, d_y, d_x, n, h, w, ly, lx, *attrs, d_ys, d_xs,
                 scratch, None)
        lib.call('tasn_sampler_cuda_forward_' + sfx, d_data, d_y, d_x, n, c, h, w, ly, lx,
                 *attrs, d_out, scratch, None)
        lib.call('tasn_sampler_cuda_backward_' + sfx, d_go, d_y, d_x, n, c, h, w, ly, lx,
                 *attrs, d_grad, scratch, None)
        lib.call('tasn_sampler_cuda_synchronize', None)
        return (cuda.download(d_ys, (n, oh), np.float64), cuda.download(d_xs, (n, ow), np.float64),
                cuda.download(d_out, (n, c, oh, ow), data.dtype),
                cuda.download(d_grad, data.shape, data.dtype))
    finally:
        for p in owned:
            cuda.free(p)


# ---- correctness ---------------------------------------------------------------------------

# n, c, h, w, ly, lx, scale, dense, iters: what each exercises.
CASES = [
    ((1, 1, 16, 16, 16, 16, 0.5, 4.0, 5), 'square, profile length = size'),
    ((3, 2, 20, 13, 7, 11, 0.75, 2.0, 3), 'non-square, short profiles'),
    ((2, 3, 12, 18, 24, 5, 1.5, 2.0, 3), 'upsampling, profile longer than the image'),
    ((4, 1, 9, 31, 9, 31, 0.4375, 4.0, 0), 'no clipping rounds'),
    ((2, 2, 1, 6, 3, 4, 2.0, 4.0, 5), 'a one-pixel-high image'),
    ((1, 2, 5, 1, 4, 2, 3.0, 4.0, 5), 'a one-pixel-wide image'),
    ((5, 3, 64, 96, 64, 96, 0.4375, 4.0, 5), 'batch 5, 64x96 -> 28x42'),
    ((2, 9, 10, 14, 10, 14, 0.75, 4.0, 5), 'channels in several groups'),
    ((2, 3, 512, 512, 512, 512, 0.4375, 4.0, 5), 'the benchmark shape, batch 2'),
    ((2, 1, 40, 1400, 40, 2600, 0.5, 3.0, 5), 'profiles too long for shared memory'),
    ((1, 1, 3, 11000, 3, 50, 0.5, 4.0, 5), 'an axis too long for shared counters'),
]


def random_inputs(rng, n, c, h, w, ly, lx, dtype):
    data = rng.uniform(-1, 1, (n, c, h, w)).astype(dtype)
    att_y = (rng.uniform(0, 1, (n, ly)) ** 4).astype(dtype)  # peaked: clipping really acts
    att_x = (rng.uniform(0, 1, (n, lx)) ** 4).astype(dtype)
    if n > 1:
        att_y[-1] = 1.0  # one uniform image per batch
        att_x[-1] = 1.0
    return data, att_y, att_x


def max_abs(a, b):
    if a.shape != b.shape:
        return float('inf')
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a.astype(np.float64) - b.astype(np.float64)))
    return float(np.nan_to_num(diff, nan=np.inf).max())


def check_correctness(lib, cuda, log):
    """Compares every case; returns (all_ok, rows of results)."""
    rows, ok = [], True
    rng = np.random.RandomState(0)
    for (n, c, h, w, ly, lx, scale, dense, iters), what in CASES:
        for dtype in (np.float32, np.float64):
            for legacy in (False, True):
                attrs = (scale, dense, iters, int(legacy))
                data, att_y, att_x = random_inputs(rng, n, c, h, w, ly, lx, dtype)
                grad_out = rng.uniform(-1, 1, (n, c, out_size(h, scale),
                                               out_size(w, scale))).astype(dtype)
                ref = cpu_run(lib, data, att_y, att_x, attrs, grad_out)
                got = gpu_run(lib, cuda, data, att_y, att_x, attrs, grad_out)
                errors = [max_abs(g, r) for g, r in zip(got, ref)]
                identical = all(np.array_equal(g, r, equal_nan=True) for g, r in zip(got, ref))
                tol = TOLERANCE[dtype]
                # Coordinates are doubles in input-pixel units: compare relative to the size.
                good = (errors[0] <= tol * max(h, 1) and errors[1] <= tol * max(w, 1)
                        and errors[2] <= tol and errors[3] <= tol)
                ok &= good
                row = dict(case=what, shape=[n, c, h, w], profiles=[ly, lx], scale=scale,
                           dense=dense, iters=iters, dtype=np.dtype(dtype).name, legacy=legacy,
                           grid_y=errors[0], grid_x=errors[1], forward=errors[2],
                           backward=errors[3], bit_identical=identical, ok=good)
                rows.append(row)
                log('%-4s %-7s %-6s %-45s grid %.1e/%.1e  forward %.1e  backward %.1e%s' % (
                    'ok' if good else 'FAIL', row['dtype'], 'legacy' if legacy else 'clean',
                    what, errors[0], errors[1], errors[2], errors[3],
                    '  (bit-identical)' if identical else ''))
    return ok, rows


# ---- bandwidth -----------------------------------------------------------------------------

def attention_profiles(rng, n, length):
    """Smooth single-peaked profiles, like the row/column maxima of an attention map."""
    pos = np.arange(length)
    centre = rng.uniform(0.3, 0.7, (n, 1)) * length
    width = rng.uniform(0.08, 0.2, (n, 1)) * length
    p = np.exp(-0.5 * ((pos - centre) / width) ** 2) + 0.05 * rng.uniform(0, 1, (n, length))
    return p.astype(np.float32)


def bytes_moved(ys, xs, n, c, h, w, oh, ow, elem, legacy):
    """Bytes the forward reads and writes in DRAM: the 32-byte sectors of the source rows its
    taps touch (each once), the output, and the tap tables; and the nominal count (whole
    input + output)."""
    def taps(coords, size):
        c_ = np.clip(coords, -2.0, size + 1.0) if legacy else np.clip(coords, 0.0, size - 1.0)
        f = np.floor(c_).astype(np.int64)
        b = np.clip(f, 0, max(size - 2, 0))
        return np.concatenate([b, np.minimum(b + 1, size - 1)], axis=-1)
    read = 0
    for i in range(n):
        rows = np.unique(taps(ys[i], h))
        sectors = np.unique(taps(xs[i], w) * elem // 32)
        read += c * len(rows) * len(sectors) * 32
    tap_bytes = 16 * n * (oh + ow)
    written = elem * n * c * oh * ow
    return read + 2 * tap_bytes + written, elem * n * c * (h * w + oh * ow)


def peak_bandwidth(cuda, nbytes=1 << 30):
    """(from the memory clock and bus width, from a device-to-device copy of nbytes), bytes per
    second."""
    clock_khz = cuda.attribute(CudaRuntime.ATTR_MEMORY_CLOCK_KHZ)
    bus_bits = cuda.attribute(CudaRuntime.ATTR_BUS_WIDTH_BITS)
    theoretical = 2.0 * clock_khz * 1e3 * bus_bits / 8  # double data rate
    a, b = cuda.malloc(nbytes), cuda.malloc(nbytes)
    try:
        ms = cuda.time_ms(lambda: cuda.copy(b, a, nbytes, CudaRuntime.D2D), 10)
    finally:
        cuda.free(a)
        cuda.free(b)
    return theoretical, 2.0 * nbytes / (ms * 1e-3)


def benchmark(lib, cuda, log, batch=96, repeats=20, copy_bytes=1 << 30):
    n, c, h, w, scale = batch, 3, 512, 512, 224 / 512
    oh, ow = out_size(h, scale), out_size(w, scale)
    rng = np.random.RandomState(1)
    data = rng.uniform(0, 1, (n, c, h, w)).astype(np.float32)
    theoretical, copy = peak_bandwidth(cuda, copy_bytes)
    log('peak bandwidth: %.0f GB/s (memory clock x bus width), %.0f GB/s (measured '
        'device-to-device copy)' % (theoretical / 1e9, copy / 1e9))
    results = dict(peak_gbs=theoretical / 1e9, copy_gbs=copy / 1e9, runs=[])
    d_data = cuda.upload(data)
    d_out = cuda.malloc(4 * n * c * oh * ow)
    d_grad = cuda.malloc(data.nbytes)
    try:
        for profile in ('attention', 'uniform'):
            for legacy in (False, True):
                attrs = (scale, 4.0, 5, int(legacy))
                if profile == 'uniform':
                    att_y = np.ones((n, h), np.float32)
                    att_x = np.ones((n, w), np.float32)
                else:
                    att_y, att_x = attention_profiles(rng, n, h), attention_profiles(rng, n, w)
                ys, xs = np.empty((n, oh)), np.empty((n, ow))
                lib.call('tasn_sampler_grid_f32', att_y.ctypes.data, att_x.ctypes.data, n, h, w,
                         h, w, *attrs, ys.ctypes.data, xs.ctypes.data)
                actual, nominal = bytes_moved(ys, xs, n, c, h, w, oh, ow, 4, legacy)
                d_y, d_x = cuda.upload(att_y), cuda.upload(att_x)
                d_ys, d_xs = cuda.malloc(8 * n * oh), cuda.malloc(8 * n * ow)
                scratch = cuda.malloc(lib.scratch_bytes(n, c, h, w, h, w, attrs, 4))
                try:
                    def forward():
                        lib.call('tasn_sampler_cuda_forward_f32', d_data, d_y, d_x, n, c, h, w,
                                 h, w, *attrs, d_out, scratch, None)

                    def grid():
                        lib.call('tasn_sampler_cuda_grid_f32', d_y, d_x, n, h, w, h, w, *attrs,
                                 d_ys, d_xs, scratch, None)

                    def backward():
                        lib.call('tasn_sampler_cuda_backward_f32', d_out, d_y, d_x, n, c, h, w,
                                 h, w, *attrs, d_grad, scratch, None)
                    t_fwd = cuda.time_ms(forward, repeats)
                    t_grid = cuda.time_ms(grid, repeats)
                    t_bwd = cuda.time_ms(backward, repeats)
                    lib.call('tasn_sampler_cuda_synchronize', None)
                finally:
                    for p in (d_y, d_x, d_ys, d_xs, scratch):
                        cuda.free(p)
                gbs = actual / (t_fwd * 1e-3) / 1e9
                bwd_bytes = 4 * n * c * (h * w + oh * ow)  # writes all of grad, reads grad_out
                run = dict(profiles=profile, legacy=legacy, forward_ms=t_fwd, grid_ms=t_grid,
                           backward_ms=t_bwd, bytes_actual=actual, bytes_nominal=nominal,
                           forward_gbs=gbs, forward_nominal_gbs=nominal / (t_fwd * 1e-3) / 1e9,
                           forward_fraction_of_peak=gbs * 1e9 / theoretical,
                           forward_fraction_of_copy=gbs * 1e9 / copy,
                           backward_gbs=bwd_bytes / (t_bwd * 1e-3) / 1e9)
                results['runs'].append(run)
                log('forward %-9s %-6s %7.3f ms (grid alone %.3f ms): %6.0f GB/s over %.0f MB '
                    'actually moved = %3.0f%% of peak, %3.0f%% of copy  [%.0f GB/s nominal]; '
                    'backward %.3f ms, %.0f GB/s' % (
                        profile, 'legacy' if legacy else 'clean', t_fwd, t_grid, gbs,
                        actual / 1e6, 100 * run['forward_fraction_of_peak'],
                        100 * run['forward_fraction_of_copy'], run['forward_nominal_gbs'],
                        t_bwd, run['backward_gbs']))
    finally:
        for p in (d_data, d_out, d_grad):
            cuda.free(p)
    return results


# ---- building a library for this machine ---------------------------------------------------

def cuda_library_dirs(nvcc):
    """The -L directories nvcc itself passes to the linker (right even when nvcc is a wrapper
    script), then the usual places under its toolkit."""
    out = subprocess.run([nvcc, '--dryrun', '-c', '-x', 'cu', os.devnull, '-o', os.devnull],
                         capture_output=True, text=True)
    dirs = []
    for line in (out.stdout + out.stderr).splitlines():
        if 'LIBRARIES=' in line:
            dirs += [os.path.normpath(t[2:]) for t in
                     line.split('LIBRARIES=', 1)[1].replace('"', ' ').split()
                     if t.startswith('-L') and not t.rstrip('/').endswith('stubs')]
    root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    dirs += [os.path.join(root, sub) for sub in ('lib64', 'lib', 'targets/x86_64-linux/lib',
                                                 'targets/sbsa-linux/lib')]
    return [d for d in dict.fromkeys(dirs) if glob.glob(os.path.join(d, 'libcudart*'))]


def build_library(cuda, out_dir, log):
    """Compiles libtasn_sampler.so (CPU core, C ABI, CUDA kernels) for this GPU only, with the
    flags setup.py uses."""
    nvcc = os.environ.get('NVCC') or shutil.which('nvcc') or '/usr/local/cuda/bin/nvcc'
    cxx = os.environ.get('CXX') or shutil.which('g++')
    if not (os.path.isfile(nvcc) or shutil.which(nvcc)):
        raise CannotRun('--build needs nvcc (PATH, $NVCC or /usr/local/cuda/bin/nvcc)')
    if cxx is None:
        raise CannotRun('--build needs g++ (or $CXX)')
    arch = 10 * cuda.attribute(CudaRuntime.ATTR_CC_MAJOR) + \
        cuda.attribute(CudaRuntime.ATTR_CC_MINOR)
    listed = subprocess.run([nvcc, '--list-gpu-arch'], capture_output=True, text=True).stdout
    listed = sorted(int(a.split('_')[1]) for a in listed.split()
                    if a.startswith('compute_') and a.split('_')[1].isdigit())
    if not listed or arch in listed:
        gencode = 'arch=compute_%d,code=sm_%d' % (arch, arch)
    else:  # a GPU newer than this nvcc: PTX of the newest architecture it knows, JIT-compiled
        older = [a for a in listed if a < arch] or listed
        gencode = 'arch=compute_%d,code=compute_%d' % (older[-1], older[-1])
    lib_dirs = cuda_library_dirs(nvcc)
    static = any(os.path.isfile(os.path.join(d, 'libcudart_static.a')) for d in lib_dirs)
    objs = []
    for src in ('sampler_cpu.cc', 'c_api.cc'):
        obj = os.path.join(out_dir, src + '.o')
        cmd = [cxx, '-O3', '-std=c++17', '-fPIC', '-fopenmp', '-DTASN_WITH_CUDA', '-I' + CSRC,
               '-c', os.path.join(CSRC, src), '-o', obj]
        log(' '.join(cmd))
        subprocess.check_call(cmd)
        objs.append(obj)
    obj = os.path.join(out_dir, 'sampler_cuda.cu.o')
    cmd = [nvcc, '-O3', '-std=c++17', '-fmad=false', '-Xcompiler', '-fPIC', '-DTASN_WITH_CUDA',
           '-gencode', gencode, '-I' + CSRC, '-c', os.path.join(CSRC, 'sampler_cuda.cu'),
           '-o', obj]
    log(' '.join(cmd))
    subprocess.check_call(cmd)
    objs.append(obj)
    target = os.path.join(out_dir, 'libtasn_sampler.so')
    cmd = [cxx, '-shared', '-fopenmp', '-o', target] + objs + ['-L' + d for d in lib_dirs] + \
        (['-lcudart_static', '-ldl', '-lrt', '-lpthread'] if static else
         ['-lcudart'] + ['-Wl,-rpath,' + d for d in lib_dirs])
    log(' '.join(cmd))
    subprocess.check_call(cmd)
    return target


# ---- main ----------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--library', default=DEFAULT_LIBRARY,
                   help='libtasn_sampler.so to check (default: %(default)s)')
    p.add_argument('--build', action='store_true',
                   help='build a fresh library with this machine\'s nvcc for this GPU first')
    p.add_argument('--batch', type=int, default=96, help='benchmark batch size (default 96)')
    p.add_argument('--repeats', type=int, default=20, help='timed runs per measurement')
    p.add_argument('--copy-mib', type=int, default=1024,
                   help='size of the device-to-device copy that measures the practical peak')
    p.add_argument('--skip-benchmark', action='store_true', help='only check correctness')
    p.add_argument('--json', help='also write the results to this file')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def log(msg):
        print(msg, flush=True)

    try:
        cuda = CudaRuntime()
        count = cuda.device_count()
        driver, runtime = cuda.versions()
        log('GPU: %s (%d visible), CUDA driver %d, runtime %d, via %s' % (
            cuda.device_name(), count, driver, runtime, cuda.backend))
        build_dir = None
        if args.build:
            build_dir = tempfile.mkdtemp(prefix='tasn_cuda_check_')
            args.library = build_library(cuda, build_dir, log)
        lib = SamplerLibrary(args.library)
        if not lib.has_cuda:
            raise CannotRun('%s was built without CUDA (nvcc was not found, or TASN_CUDA=off); '
                            'rebuild with `make setup` on a machine with nvcc, or run this '
                            'check with --build' % lib.path)
        log('library: %s' % lib.path)
    except CannotRun as e:
        print('check_cuda_sampler: cannot run: %s' % e, file=sys.stderr, flush=True)
        return EXIT_CANNOT_RUN
    return run_checks(lib, cuda, args, log)


def run_checks(lib, cuda, args, log):
    """Correctness, then (unless args.skip_benchmark) the benchmark; returns the exit status."""
    try:
        ok, rows = check_correctness(lib, cuda, log)
        results = dict(device=cuda.device_name(), library=lib.path, correctness=rows,
                       all_match=ok)
        log('correctness: %s' % ('every CUDA result matches the CPU kernels' if ok
                                 else 'MISMATCH between the CUDA and CPU kernels'))
        if not args.skip_benchmark:
            results['benchmark'] = benchmark(lib, cuda, log, args.batch, args.repeats,
                                             args.copy_mib << 20)
            runs = results['benchmark']['runs']
            best = max(r['forward_fraction_of_peak'] for r in runs)
            worst = min(r['forward_fraction_of_peak'] for r in runs)
            log('target (forward >= 70%% of peak bandwidth): %s (%.0f%% .. %.0f%%)' % (
                'met' if worst >= 0.7 else 'NOT met in every run', 100 * worst, 100 * best))
    except RuntimeError as e:
        print('check_cuda_sampler: the CUDA kernels failed to run: %s\n(If this is '
              'cudaErrorInsufficientDriver or cudaErrorNoKernelImageForDevice, the library was '
              'built by an nvcc newer than this driver or without this GPU\'s architecture: run '
              'with --build.)' % e, file=sys.stderr, flush=True)
        return EXIT_MISMATCH
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
        log('results written to %s' % args.json)
    return 0 if ok else EXIT_MISMATCH


if __name__ == '__main__':
    sys.exit(main())
