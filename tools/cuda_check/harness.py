"""The sampler's CUDA kernels against its CPU kernels, through the plain C ABI
(``tasn_gluon.ops.c_abi``), on a machine with an NVIDIA GPU: what ``tools/check_cuda_sampler.py``
runs. Needs NumPy and the standard library only (no MXNet; CuPy optional)."""
import json
import sys
import tempfile

import numpy as np

from tasn_gluon.ops import build
from tasn_gluon.ops.build import log_line
from tasn_gluon.ops.c_abi import SamplerError, SamplerLibrary, call_shape, cpu_run, suffix

from .cases import CASES, max_abs
from .runtime import CannotRun, CudaError, CudaRuntime

__all__ = ['EXIT_MATCH', 'EXIT_MISMATCH', 'EXIT_CANNOT_RUN', 'TOLERANCE', 'CannotRun', 'gpu_run',
           'check_correctness', 'build_for_device', 'prepare', 'run_checks', 'error_line',
           'log_line']

EXIT_MATCH, EXIT_MISMATCH, EXIT_CANNOT_RUN = 0, 1, 2
# Largest CUDA-vs-CPU difference accepted. The two compute the same operations in the same order
# (bit-identical on x86-64 hosts); these bounds leave room for a host compiler that contracts
# into FMAs (an ulp or so per operation, over a handful of operations per output), never for a
# different formula. Coordinates are compared relative to the axis length.
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def error_line(msg):
    print(msg, file=sys.stderr, flush=True)


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
