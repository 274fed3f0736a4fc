"""The sampler's CUDA kernels against its CPU kernels, through the plain C ABI (``c_abi``), on a
machine with an NVIDIA GPU: the library code of ``tools/check_cuda_sampler.py``.

Needs NumPy and the standard library only (no MXNet; CuPy optional): the CUDA runtime is CuPy's
when CuPy imports and works, else ``libcudart`` through ctypes. ``CASES`` are the sampler's test
shapes, shared by every test of the kernels (MXNet operator, C ABI, emulated CUDA, GPU).
"""
import collections
import ctypes
import ctypes.util
import glob
import json
import os
import sys
import tempfile

import numpy as np

from . import build
from .build import log_line
from .c_abi import SamplerError, SamplerLibrary, call_shape, cpu_run, out_size, suffix

__all__ = ['EXIT_MATCH', 'EXIT_MISMATCH', 'EXIT_CANNOT_RUN', 'TOLERANCE', 'CannotRun',
           'CudaError', 'CudaRuntime', 'Case', 'CASES', 'random_inputs', 'max_abs', 'gpu_run',
           'check_correctness', 'build_for_device', 'prepare', 'run_checks']

EXIT_MATCH, EXIT_MISMATCH, EXIT_CANNOT_RUN = 0, 1, 2
# Largest CUDA-vs-CPU difference accepted. The two compute the same operations in the same order
# (bit-identical on x86-64 hosts); these bounds leave room for a host compiler that contracts
# into FMAs (an ulp or so per operation, over a handful of operations per output), never for a
# different formula. Coordinates are compared relative to the axis length.
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def error_line(msg):
    print(msg, file=sys.stderr, flush=True)


class CannotRun(RuntimeError):
    """The check cannot run here (no GPU, runtime, compiler or library); the message says why."""


class CudaError(RuntimeError):
    """A CUDA runtime call failed."""


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
            raise CudaError('%s failed: CUDA error %d (%s)' % (
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

    def capability(self):
        """The device's compute capability as an int, e.g. 90 for 9.0."""
        return 10 * self.attribute(self.ATTR_CC_MAJOR) + self.attribute(self.ATTR_CC_MINOR)

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


# ---- the test shapes -----------------------------------------------------------------------

class Case(collections.namedtuple('Case', 'n c h w ly lx scale dense iters what')):
    """One sampler call: data (n, c, h, w), profiles of lengths ly and lx, the attributes, and
    what the case exercises."""

    def attrs(self, legacy):
        """The C ABI's (scale, dense, iters, legacy)."""
        return (self.scale, self.dense, self.iters, int(legacy))

    def out_shape(self):
        return (self.n, self.c, out_size(self.h, self.scale), out_size(self.w, self.scale))

    def inputs(self, rng, dtype):
        """(data, att_y, att_x, grad_out) drawn from rng."""
        data, att_y, att_x = random_inputs(rng, self.n, self.c, self.h, self.w, self.ly,
                                           self.lx, dtype)
        return data, att_y, att_x, rng.uniform(-1, 1, self.out_shape()).astype(dtype)


CASES = [
    Case(1, 1, 16, 16, 16, 16, 0.5, 4.0, 5, 'square, profile length = size'),
    Case(3, 2, 20, 13, 7, 11, 0.75, 2.0, 3, 'non-square, short profiles'),
    Case(2, 3, 12, 18, 24, 5, 1.5, 2.0, 3, 'upsampling, profile longer than the image'),
    Case(4, 1, 9, 31, 9, 31, 0.4375, 4.0, 0, 'no clipping rounds'),
    Case(2, 2, 1, 6, 3, 4, 2.0, 4.0, 5, 'a one-pixel-high image'),
    Case(1, 2, 5, 1, 4, 2, 3.0, 4.0, 5, 'a one-pixel-wide image'),
    Case(5, 3, 64, 96, 64, 96, 0.4375, 4.0, 5, 'batch 5, 64x96 -> 28x42'),
    Case(2, 9, 10, 14, 10, 14, 0.75, 4.0, 5, 'channels in several groups'),
    Case(2, 3, 512, 512, 512, 512, 0.4375, 4.0, 5, 'the benchmark shape, batch 2'),
    Case(2, 1, 40, 1400, 40, 2600, 0.5, 3.0, 5, 'profiles too long for shared memory'),
    Case(1, 1, 3, 11000, 3, 50, 0.5, 4.0, 5, 'an axis too long for shared counters'),
]


def random_inputs(rng, n, c, h, w, ly, lx, dtype):
    """Data in [-1, 1] and peaked profiles (so that clipping and give-back really act); the
    last image of a batch has uniform profiles."""
    data = rng.uniform(-1, 1, (n, c, h, w)).astype(dtype)
    att_y = (rng.uniform(0, 1, (n, ly)) ** 4).astype(dtype)
    att_x = (rng.uniform(0, 1, (n, lx)) ** 4).astype(dtype)
    if n > 1:
        att_y[-1] = 1.0
        att_x[-1] = 1.0
    return data, att_y, att_x


def max_abs(a, b):
    """Largest absolute difference (inf for different shapes or NaN against a number)."""
    if a.shape != b.shape:
        return float('inf')
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a.astype(np.float64) - b.astype(np.float64)))
    return float(np.nan_to_num(diff, nan=np.inf).max())


# ---- the comparison ------------------------------------------------------------------------

def gpu_run(lib, cuda, data, att_y, att_x, attrs, grad_out):
    """(ys, xs, out, grad_data) from the CUDA kernels, as c_abi.cpu_run from the CPU ones."""
    n, c, h, w, ly, lx, oh, ow = call_shape(data, att_y, att_x, grad_out, attrs[0])
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


def check_correctness(lib, cuda, log=log_line, cases=CASES):
    """Compares CUDA and CPU on every case, dtype and mode; returns (all_ok, rows of results)."""
    rows, ok = [], True
    rng = np.random.RandomState(0)
    for case in cases:
        for dtype in (np.float32, np.float64):
            for legacy in (False, True):
                data, att_y, att_x, grad_out = case.inputs(rng, dtype)
                attrs = case.attrs(legacy)
                ref = cpu_run(lib, data, att_y, att_x, attrs, grad_out)
                got = gpu_run(lib, cuda, data, att_y, att_x, attrs, grad_out)
                errors = [max_abs(g, r) for g, r in zip(got, ref)]
                identical = all(np.array_equal(g, r, equal_nan=True) for g, r in zip(got, ref))
                tol = TOLERANCE[dtype]
                good = (errors[0] <= tol * max(case.h, 1) and errors[1] <= tol * max(case.w, 1)
                        and errors[2] <= tol and errors[3] <= tol)
                ok &= good
                row = dict(case=case.what, shape=[case.n, case.c, case.h, case.w],
                           profiles=[case.ly, case.lx], scale=case.scale, dense=case.dense,
                           iters=case.iters, dtype=np.dtype(dtype).name, legacy=legacy,
                           grid_y=errors[0], grid_x=errors[1], forward=errors[2],
                           backward=errors[3], bit_identical=identical, ok=good)
                rows.append(row)
                log('%-4s %-7s %-6s %-45s grid %.1e/%.1e  forward %.1e  backward %.1e%s' % (
                    'ok' if good else 'FAIL', row['dtype'], 'legacy' if legacy else 'clean',
                    case.what, errors[0], errors[1], errors[2], errors[3],
                    '  (bit-identical)' if identical else ''))
    return ok, rows


# ---- getting ready: runtime, library ---------------------------------------------------------

def build_for_device(cuda, out_dir, log=log_line):
    """Builds libtasn_sampler.so for this GPU only with this machine's nvcc (build.py's flags,
    as setup.py uses them); returns its path. Raises CannotRun when it cannot be built."""
    nvcc = build.find_nvcc()
    if nvcc is None:
        raise CannotRun('--build needs nvcc (PATH, $NVCC or /usr/local/cuda/bin/nvcc)')
    try:
        build.check_nvcc(nvcc)
        gencode = build.device_gencode_flags(nvcc, cuda.capability())
        return build.build_c_abi_library(out_dir, gencode, log, nvcc=nvcc)
    except build.BuildError as e:
        raise CannotRun('--build failed: %s' % e)


def prepare(library=None, build_first=False, log=log_line):
    """(lib, cuda) ready for the checks: the CUDA runtime with a usable GPU, and the C-ABI
    library at `library` (default: the one `make setup` built), or, with `build_first`, one
    built for this GPU first. Raises CannotRun saying what is missing."""
    cuda = CudaRuntime()
    count = cuda.device_count()
    driver, runtime = cuda.versions()
    log('GPU: %s (%d visible), CUDA driver %d, runtime %d, via %s' % (
        cuda.device_name(), count, driver, runtime, cuda.backend))
    if build_first:
        library = build_for_device(cuda, tempfile.mkdtemp(prefix='tasn_cuda_check_'), log)
    try:
        lib = SamplerLibrary(library)
    except FileNotFoundError as e:
        raise CannotRun(str(e))
    if not lib.has_cuda:
        raise CannotRun('%s was built without CUDA (nvcc was not found, or TASN_CUDA=off); '
                        'rebuild with `make setup` on a machine with nvcc, or run the check '
                        'with --build' % lib.path)
    log('library: %s' % lib.path)
    return lib, cuda


def run_checks(lib, cuda, log=log_line, error=error_line, benchmark=None, json_path=None):
    """The correctness comparison, then `benchmark()` when given (its result goes into the
    report under 'benchmark'); writes the report to json_path when given. Returns the exit
    status: EXIT_MATCH, or EXIT_MISMATCH on a difference or a failed kernel."""
    try:
        ok, rows = check_correctness(lib, cuda, log)
        results = dict(device=cuda.device_name(), library=lib.path, correctness=rows,
                       all_match=ok)
        log('correctness: %s' % ('every CUDA result matches the CPU kernels' if ok
                                 else 'MISMATCH between the CUDA and CPU kernels'))
        if benchmark is not None:
            results['benchmark'] = benchmark()
    except (CudaError, SamplerError) as e:
        error('the CUDA kernels failed to run: %s\n(If this is cudaErrorInsufficientDriver or '
              'cudaErrorNoKernelImageForDevice, the library was built by an nvcc newer than this '
              'driver or without this GPU\'s architecture: run with --build.)' % e)
        return EXIT_MISMATCH
    if json_path:
        with open(json_path, 'w') as f:
            json.dump(results, f, indent=1)
        log('results written to %s' % json_path)
    return EXIT_MATCH if ok else EXIT_MISMATCH
