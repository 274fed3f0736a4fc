"""ctypes binding of the sampler's plain C ABI (``libtasn_sampler.so``, ``csrc/c_api.cc``): the
CPU kernels always, the CUDA kernels in builds with CUDA.

It needs NumPy and the standard library only, no MXNet, so that the CUDA check
(``tools/check_cuda_sampler.py``) runs on GPU machines where MXNet is not installed.

Arguments follow the C ABI: ``attrs`` is ``(scale, dense, iters, legacy)``; arrays are C-contiguous
NumPy arrays (data ``(N, C, H, W)``, profiles ``(N, L)``) passed by address.
"""
import ctypes
import os

import numpy as np

__all__ = ['LIBRARY_NAME', 'default_library_path', 'SamplerLibrary', 'SamplerError', 'suffix',
           'out_size', 'call_shape', 'cpu_run']

LIBRARY_NAME = 'libtasn_sampler.so'


def default_library_path():
    """The library `make setup` builds, inside this package."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME)


class SamplerError(RuntimeError):
    """A C ABI function returned -1; the message is the library's last error."""


class SamplerLibrary:
    """The C ABI of one ``libtasn_sampler.so``.

    Raises
    ------
    FileNotFoundError
        When the library has not been built, with the command that builds it.
    """

    def __init__(self, path=None):
        path = default_library_path() if path is None else path
        if not os.path.isfile(path):
            raise FileNotFoundError(
                'The AttSampler C-ABI library %s has not been built. Build it with `make setup` '
                'from the repository root (on a GPU machine without MXNet: '
                '`PYTHONPATH=. python tools/check_cuda_sampler.py --build`).' % path)
        self.path = os.path.abspath(path)
        self.lib = ctypes.CDLL(self.path)
        L = self.lib
        L.tasn_sampler_last_error.restype = ctypes.c_char_p
        L.tasn_sampler_has_cuda.restype = ctypes.c_int
        self.has_cuda = bool(L.tasn_sampler_has_cuda())
        i64, d, i, vp = ctypes.c_int64, ctypes.c_double, ctypes.c_int, ctypes.c_void_p
        attrs = [d, d, i, i]              # scale, dense, iters, legacy
        shape = [i64] * 6 + attrs         # n, c, h, w, ly, lx, ...
        grid_shape = [i64] * 5 + attrs    # n, h, w, ly, lx, ...
        for sfx in ('f32', 'f64'):
            for prefix, extra in (('tasn_sampler_', []), ('tasn_sampler_cuda_', [vp, vp])):
                if prefix.endswith('cuda_') and not self.has_cuda:
                    continue  # absent from CPU-only builds
                fn = getattr(L, prefix + 'grid_' + sfx)
                # att_y, att_x, sizes, ys, xs[, scratch, stream]
                fn.argtypes = [vp, vp] + grid_shape + [vp, vp] + extra
                fn.restype = i
                for name in ('forward_', 'backward_'):
                    fn = getattr(L, prefix + name + sfx)
                    fn.argtypes = [vp, vp, vp] + shape + [vp] + extra
                    fn.restype = i
        if self.has_cuda:
            L.tasn_sampler_cuda_scratch_bytes.argtypes = shape + [i]
            L.tasn_sampler_cuda_scratch_bytes.restype = i64
            L.tasn_sampler_cuda_synchronize.argtypes = [vp]
            L.tasn_sampler_cuda_synchronize.restype = i

    def error(self):
        """The last error message of this thread ('' after a success)."""
        return self.lib.tasn_sampler_last_error().decode()

    def call(self, name, *args):
        """Calls C function `name`; raises SamplerError with the library's message on -1."""
        if getattr(self.lib, name)(*args) != 0:
            raise SamplerError('%s failed: %s' % (name, self.error()))

    def scratch_bytes(self, n, c, h, w, ly, lx, attrs, elem_size):
        """Device scratch the tasn_sampler_cuda_* functions need for this call."""
        v = self.lib.tasn_sampler_cuda_scratch_bytes(n, c, h, w, ly, lx, *attrs, elem_size)
        if v < 0:
            raise SamplerError('tasn_sampler_cuda_scratch_bytes failed: %s' % self.error())
        return v


def suffix(dtype):
    """The C ABI's name suffix of a dtype: float32 -> 'f32', float64 -> 'f64'."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError('the sampler takes float32 or float64, not %s' % dtype)
    return 'f32' if dtype == np.float32 else 'f64'


def out_size(size, scale):
    """Output length of an axis: int(size * scale), as the kernels compute it."""
    return int(size * scale)


def call_shape(data, att_y, att_x, grad_out, scale):
    """(n, c, h, w, ly, lx, out_h, out_w) of one call, after checking that the arrays fit each
    other (the C functions trust the caller with every size); raises ValueError otherwise."""
    if data.ndim != 4:
        raise ValueError('data must be (N, C, H, W), got shape %s' % (data.shape,))
    n, c, h, w = data.shape
    for name, a in (('att_y', att_y), ('att_x', att_x)):
        if a.ndim != 2 or a.shape[0] != n:
            raise ValueError('%s must be (%d, L), got shape %s' % (name, n, a.shape))
    oh, ow = out_size(h, scale), out_size(w, scale)
    if grad_out.shape != (n, c, oh, ow):
        raise ValueError('grad_out must be %s, got %s' % ((n, c, oh, ow), grad_out.shape))
    for name, a in (('att_y', att_y), ('att_x', att_x), ('grad_out', grad_out)):
        if a.dtype != data.dtype:
            raise ValueError('%s is %s, data %s: one dtype for all' % (name, a.dtype, data.dtype))
    return n, c, h, w, att_y.shape[1], att_x.shape[1], oh, ow


def cpu_run(lib, data, att_y, att_x, attrs, grad_out):
    """(ys, xs, out, grad_data) from the CPU kernels, for data (N, C, H, W), profiles (N, Ly)
    and (N, Lx), and the output gradient grad_out (N, C, out_h, out_w)."""
    n, c, h, w, ly, lx, oh, ow = call_shape(data, att_y, att_x, grad_out, attrs[0])
    sfx = suffix(data.dtype)
    data, att_y, att_x, grad_out = (np.ascontiguousarray(a) for a in (data, att_y, att_x, grad_out))
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
