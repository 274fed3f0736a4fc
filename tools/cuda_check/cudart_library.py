"""Finding and loading ``libcudart`` through ctypes, with the signatures of the calls
``cudart.CudartRuntime`` makes."""
import ctypes
import ctypes.util
import glob
import os
import sys

from .runtime import CannotRun

__all__ = ['load_cudart']

_VP, _SZ, _INT = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
_INTP = ctypes.POINTER(ctypes.c_int)
# Argument types of every call made; each returns a cudaError_t (int).
SIGNATURES = {
    'cudaGetDeviceCount': [_INTP],
    'cudaMalloc': [ctypes.POINTER(_VP), _SZ],
    'cudaFree': [_VP],
    'cudaMemcpy': [_VP, _VP, _SZ, _INT],
    'cudaMemset': [_VP, _INT, _SZ],
    'cudaDeviceSynchronize': [],
    'cudaDeviceGetAttribute': [_INTP, _INT, _INT],
    'cudaGetDevice': [_INTP],
    'cudaEventCreate': [ctypes.POINTER(_VP)],
    'cudaEventRecord': [_VP, _VP],
    'cudaEventSynchronize': [_VP],
    'cudaEventElapsedTime': [ctypes.POINTER(ctypes.c_float), _VP, _VP],
    'cudaEventDestroy': [_VP],
    'cudaDriverGetVersion': [_INTP],
    'cudaRuntimeGetVersion': [_INTP],
}


def cudart_candidates():
    """Where libcudart may be, most specific first: $TASN_CUDART, the loader's search, CUDA
    toolkits, the nvidia-cuda-runtime wheels on sys.path, then bare sonames."""
    if os.environ.get('TASN_CUDART'):
        yield os.environ['TASN_CUDART']
    found = ctypes.util.find_library('cudart')
    if found:
        yield found
    roots = [os.environ.get(v) for v in ('CUDA_HOME', 'CUDA_PATH')] + ['/usr/local/cuda']
    for root in filter(None, roots):
        for sub in ('lib64', 'lib', 'targets/x86_64-linux/lib', 'targets/sbsa-linux/lib'):
            yield from sorted(glob.glob(os.path.join(root, sub, 'libcudart.so*')), reverse=True)
    for path in sys.path:
        yield from sorted(glob.glob(os.path.join(path, 'nvidia', 'cuda_runtime', 'lib',
                                                 'libcudart.so*')), reverse=True)
    yield from ('libcudart.so', 'libcudart.so.13', 'libcudart.so.12', 'libcudart.so.11.0')


def load_cudart(candidates=None):
    """The first candidate that loads, its calls declared; raises CannotRun naming what was
    tried when none does."""
    tried = []
    for candidate in cudart_candidates() if candidates is None else candidates:
        try:
            lib = ctypes.CDLL(candidate)
        except OSError as e:
            tried.append('%s (%s)' % (candidate, e))
            continue
        for name, args in SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, ctypes.c_int
        lib.cudaGetErrorString.argtypes = [ctypes.c_int]
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        return lib
    raise CannotRun('no CUDA runtime: neither CuPy nor libcudart.so could be loaded (tried %s).'
                    ' This check needs a machine with an NVIDIA GPU and the CUDA toolkit or '
                    'runtime; point TASN_CUDART at libcudart.so if it is elsewhere.'
                    % ('; '.join(tried[:6]) or 'nothing'))
