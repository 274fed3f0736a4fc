"""``CudaRuntime`` served by CuPy's runtime module (``cupy.cuda.runtime``)."""
from cupy.cuda import runtime as cupy_rt

from .runtime import CannotRun, CudaRuntime

__all__ = ['CupyRuntime']


class CupyRuntime(CudaRuntime):
    backend = 'cupy'

    def device_count(self):
        try:
            count = cupy_rt.getDeviceCount()
        except Exception as e:  # noqa: BLE001 CuPy raises its own CUDARuntimeError
            raise CannotRun('no usable NVIDIA GPU: %s' % e)
        if count == 0:
            raise CannotRun('no usable NVIDIA GPU: the CUDA runtime sees 0 devices')
        return count

    def attribute(self, attr):
        return cupy_rt.deviceGetAttribute(attr, cupy_rt.getDevice())

    def device_name(self):
        name = cupy_rt.getDeviceProperties(cupy_rt.getDevice())['name']
        return name.decode() if isinstance(name, bytes) else str(name)

    def versions(self):
        return cupy_rt.driverGetVersion(), cupy_rt.runtimeGetVersion()

    def malloc(self, nbytes):
        return cupy_rt.malloc(max(int(nbytes), 1))

    def free(self, ptr):
        cupy_rt.free(ptr)

    def copy(self, dst, src, nbytes, kind):
        cupy_rt.memcpy(dst, src, nbytes, kind)

    def memset(self, ptr, value, nbytes):
        cupy_rt.memset(ptr, value, nbytes)

    def synchronize(self):
        cupy_rt.deviceSynchronize()

    def time_ms(self, fn, repeats):
        fn()
        self.synchronize()
        start, stop = cupy_rt.eventCreate(), cupy_rt.eventCreate()
        try:
            cupy_rt.eventRecord(start, 0)
            for _ in range(repeats):
                fn()
            cupy_rt.eventRecord(stop, 0)
            cupy_rt.eventSynchronize(stop)
            return cupy_rt.eventElapsedTime(start, stop) / repeats
        finally:
            cupy_rt.eventDestroy(start)
            cupy_rt.eventDestroy(stop)
