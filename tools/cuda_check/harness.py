"""What ``tools/check_cuda_sampler.py`` runs on a machine with an NVIDIA GPU: getting the runtime
and the library ready, the comparison (``comparison``), the report and the exit status. Needs
NumPy and the standard library only (no MXNet; CuPy optional)."""
import json
import sys
import tempfile

from tasn_gluon.ops import build
from tasn_gluon.ops.build import log_line
from tasn_gluon.ops.c_abi import SamplerError, SamplerLibrary

from .comparison import check_correctness
from .runtime import CannotRun, CudaError, open_runtime

__all__ = ['EXIT_MATCH', 'EXIT_MISMATCH', 'EXIT_CANNOT_RUN', 'CannotRun', 'build_for_device',
           'prepare', 'run_checks', 'error_line', 'log_line']

EXIT_MATCH, EXIT_MISMATCH, EXIT_CANNOT_RUN = 0, 1, 2


def error_line(msg):
    print(msg, file=sys.stderr, flush=True)


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
    cuda = open_runtime()
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
