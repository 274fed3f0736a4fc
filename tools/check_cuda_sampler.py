"""Checks the AttSampler's CUDA kernels against its CPU kernels on a machine with an NVIDIA GPU,
through the plain C ABI (libtasn_sampler.so): no MXNet needed, CuPy optional (else ctypes and
libcudart). From the checkout's root (tasn_gluon need not be installed):

    PYTHONPATH=. python tools/check_cuda_sampler.py      # the library `make setup` built
    PYTHONPATH=. python tools/check_cuda_sampler.py --build --json OUT.json
                                  # first builds one for this GPU with this machine's nvcc

It runs grid, forward and backward on random inputs on both devices (tools/cuda_check/: both
modes, float32 and float64, shapes that exercise every code path) and prints the largest
absolute difference of each, then times the forward at batch 96 of 3x512x512 -> 224x224
float32 against the GPU's peak bandwidth (tools/cuda_check/bandwidth.py).

Exit status: 0 when every CUDA result matches the CPU (float32 within 1e-5, float64 within
1e-12), 1 on a mismatch or a failed kernel, 2 when it cannot run (no GPU, CUDA runtime,
compiler or library, or tasn_gluon not importable); the reason is one line on stderr.
"""
import argparse
import sys

PROG = 'check_cuda_sampler'


def cannot_run(message):
    print('%s: cannot run: %s' % (PROG, message), file=sys.stderr, flush=True)
    return 2  # harness.EXIT_CANNOT_RUN, which may not be importable here


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--library', help='libtasn_sampler.so to check (default: the one in '
                   'tasn_gluon/ops/ that `make setup` built)')
    p.add_argument('--build', action='store_true',
                   help='build a fresh library with this machine\'s nvcc for this GPU first')
    p.add_argument('--batch', type=int, default=96, help='benchmark batch size (default 96)')
    p.add_argument('--repeats', type=int, default=20, help='timed runs per measurement')
    p.add_argument('--copy-mib', type=int, default=1024,
                   help='size of the device-to-device copy that measures the practical peak')
    p.add_argument('--skip-benchmark', action='store_true', help='only check correctness')
    p.add_argument('--json', help='also write the results to this file')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        import tasn_gluon  # noqa: F401 (first: the package alone needs nothing installed)
        from cuda_check import bandwidth, harness   # beside this file
    except ImportError as e:
        if (e.name or '').split('.')[0] == 'tasn_gluon':
            return cannot_run('cannot import %s: run this tool from the checkout\'s root as '
                              '`PYTHONPATH=. python tools/check_cuda_sampler.py ...`' % e.name)
        return cannot_run('cannot import %s, which the check needs (%s)' % (e.name, e))
    except Exception as e:  # a package that fails on import (MXNet 1.9.1 under NumPy 2)
        return cannot_run('importing the check failed (%s: %s); it needs no MXNet: run it where '
                          'MXNet imports or is not installed' % (type(e).__name__, e))
    try:
        lib, cuda = harness.prepare(args.library, args.build)
    except harness.CannotRun as e:
        return cannot_run(e)

    def benchmark():
        return bandwidth.benchmark(lib, cuda, harness.log_line, args.batch, args.repeats,
                                   args.copy_mib << 20)
    return harness.run_checks(
        lib, cuda, error=lambda msg: print('%s: %s' % (PROG, msg), file=sys.stderr, flush=True),
        benchmark=None if args.skip_benchmark else benchmark, json_path=args.json)


if __name__ == '__main__':
    sys.exit(main())
