"""The CUDA runtime the check needs, without MXNet: CuPy's when CuPy imports and works, else
``libcudart`` through ctypes."""
import ctypes
import ctypes.util
import glob
import os

import numpy as np

__all__ = ['CannotRun', 'CudaError', 'CudaRuntime']


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


