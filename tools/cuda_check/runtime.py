"""The CUDA runtime the check needs, without MXNet: ``open_runtime()`` gives CuPy's when CuPy
imports and works (``cupy_runtime``), else ``libcudart`` through ctypes (``cudart``). Both
answer the interface of ``CudaRuntime``."""
import numpy as np

__all__ = ['CannotRun', 'CudaError', 'CudaRuntime', 'open_runtime']


class CannotRun(RuntimeError):
    """The check cannot run here (no GPU, runtime, compiler or library); the message says why."""


class CudaError(RuntimeError):
    """A CUDA runtime call failed."""


class CudaRuntime:
    """The few runtime calls the check needs: memory, copies, events, device attributes. A
    backend implements the methods that raise NotImplementedError; device pointers are ints."""

    backend = None  # what serves the calls, for the log
    H2D, D2H, D2D = 1, 2, 3  # cudaMemcpyKind
    ATTR_MEMORY_CLOCK_KHZ, ATTR_BUS_WIDTH_BITS = 36, 37  # cudaDeviceAttr
    ATTR_CC_MAJOR, ATTR_CC_MINOR = 75, 76

    def device_count(self):
        """Number of usable GPUs; raises CannotRun with the runtime's reason when there is none."""
        raise NotImplementedError

    def attribute(self, attr):
        """cudaDeviceGetAttribute of the current device."""
        raise NotImplementedError

    def device_name(self):
        raise NotImplementedError

    def versions(self):
        """(driver version, runtime version), as CUDA numbers them (e.g. 12040)."""
        raise NotImplementedError

    def malloc(self, nbytes):
        raise NotImplementedError

    def free(self, ptr):
        raise NotImplementedError

    def copy(self, dst, src, nbytes, kind):
        raise NotImplementedError

    def memset(self, ptr, value, nbytes):
        raise NotImplementedError

    def synchronize(self):
        raise NotImplementedError

    def time_ms(self, fn, repeats):
        """Mean milliseconds of fn() on the default stream, by CUDA events, after a warm-up."""
        raise NotImplementedError

    # -- built on the calls above -----------------------------------------------------------
    def capability(self):
        """The device's compute capability as an int, e.g. 90 for 9.0."""
        return 10 * self.attribute(self.ATTR_CC_MAJOR) + self.attribute(self.ATTR_CC_MINOR)

    def upload(self, array):
        array = np.ascontiguousarray(array)
        ptr = self.malloc(array.nbytes)
        self.copy(ptr, array.ctypes.data, array.nbytes, self.H2D)
        return ptr

    def download(self, ptr, shape, dtype):
        out = np.empty(shape, dtype)
        self.copy(out.ctypes.data, ptr, out.nbytes, self.D2H)
        return out


def open_runtime():
    """CuPy's runtime when CuPy imports (it is optional), else libcudart's; raises CannotRun
    when neither is there."""
    try:
        from .cupy_runtime import CupyRuntime
        return CupyRuntime()
    except Exception:  # noqa: BLE001 absent, or present without a working CUDA
        pass
    from .cudart import CudartRuntime
    return CudartRuntime()
