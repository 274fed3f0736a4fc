"""The sampler's CUDA kernels run beside its CPU kernels on the same inputs, through the plain C
ABI (``tasn_gluon.ops.c_abi``), and the largest difference of each output."""
import numpy as np

from tasn_gluon.ops.build import log_line
from tasn_gluon.ops.c_abi import call_shape, cpu_run, suffix

from .cases import CASES, max_abs

__all__ = ['TOLERANCE', 'gpu_run', 'check_correctness']

# Largest CUDA-vs-CPU difference accepted. The two compute the same operations in the same order
# (bit-identical on x86-64 hosts); these bounds leave room for a host compiler that contracts
# into FMAs (an ulp or so per operation, over a handful of operations per output), never for a
# different formula. Coordinates are compared relative to the axis length.
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


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
