"""``CudaRuntime`` served by ``libcudart`` through ctypes (``cudart_library``)."""
import ctypes

from .cudart_library import load_cudart
from .runtime import CannotRun, CudaError, CudaRuntime

__all__ = ['CudartRuntime']


class CudartRuntime(CudaRuntime):

    def __init__(self, lib=None):
        self._lib = load_cudart() if lib is None else lib
        self.backend = 'ctypes:' + self._lib._name

    def _reason(self, code):
        return 'CUDA error %d (%s)' % (code, self._lib.cudaGetErrorString(code).decode())

    def _check(self, code, what):
        if code != 0:
            raise CudaError('%s failed: %s' % (what, self._reason(code)))

    def _int_out(self, fn, *args):
        value = ctypes.c_int(0)
        self._check(getattr(self._lib, fn)(ctypes.byref(value), *args), fn)
        return value.value

    def device_count(self):
        n = ctypes.c_int(0)
        code = self._lib.cudaGetDeviceCount(ctypes.byref(n))
        if code != 0:
            raise CannotRun('no usable NVIDIA GPU: cudaGetDeviceCount returned %s%s'
                            % (self._reason(code), _driver_hint()))
        if n.value == 0:
            raise CannotRun('no usable NVIDIA GPU: the CUDA runtime sees 0 devices')
        return n.value

    def attribute(self, attr):
        return self._int_out('cudaDeviceGetAttribute', attr, self._int_out('cudaGetDevice'))

    def device_name(self):
        # cudaDeviceProp starts with char name[256] in every CUDA version; 4096 bytes hold it.
        buf = ctypes.create_string_buffer(4096)
        fn = getattr(self._lib, 'cudaGetDeviceProperties_v2', None) or \
            self._lib.cudaGetDeviceProperties
        fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        if fn(buf, self._int_out('cudaGetDevice')) != 0:
            return 'unknown GPU'
        return buf.value.decode(errors='replace')

    def versions(self):
        return self._int_out('cudaDriverGetVersion'), self._int_out('cudaRuntimeGetVersion')

    def malloc(self, nbytes):
        nbytes = max(int(nbytes), 1)
        p = ctypes.c_void_p()
        self._check(self._lib.cudaMalloc(ctypes.byref(p), nbytes), 'cudaMalloc(%d)' % nbytes)
        return p.value

    def free(self, ptr):
        self._check(self._lib.cudaFree(ptr), 'cudaFree')

    def copy(self, dst, src, nbytes, kind):
        self._check(self._lib.cudaMemcpy(dst, src, nbytes, kind), 'cudaMemcpy')

    def memset(self, ptr, value, nbytes):
        self._check(self._lib.cudaMemset(ptr, value, nbytes), 'cudaMemset')

    def synchronize(self):
        self._check(self._lib.cudaDeviceSynchronize(), 'cudaDeviceSynchronize')

    def time_ms(self, fn, repeats):
        fn()
        self.synchronize()
        start, stop = ctypes.c_void_p(), ctypes.c_void_p()
        self._check(self._lib.cudaEventCreate(ctypes.byref(start)), 'cudaEventCreate')
        self._check(self._lib.cudaEventCreate(ctypes.byref(stop)), 'cudaEventCreate')
        try:
            self._check(self._lib.cudaEventRecord(start, None), 'cudaEventRecord')
            for _ in range(repeats):
                fn()
            self._check(self._lib.cudaEventRecord(stop, None), 'cudaEventRecord')
            self._check(self._lib.cudaEventSynchronize(stop), 'cudaEventSynchronize')
            ms = ctypes.c_float()
            self._check(self._lib.cudaEventElapsedTime(ctypes.byref(ms), start, stop),
                        'cudaEventElapsedTime')
            return ms.value / repeats
        finally:
            self._lib.cudaEventDestroy(start)
            self._lib.cudaEventDestroy(stop)


def _driver_hint():
    try:
        ctypes.CDLL('libcuda.so.1')
        return ''
    except OSError:
        return '; there is no NVIDIA driver on this machine (libcuda.so.1 is missing)'
