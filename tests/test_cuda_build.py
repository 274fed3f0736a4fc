"""The CUDA path without a GPU: setup.py compiles and links the CUDA kernels (one architecture,
to stay quick), the result loads and runs its CPU operators in this (CPU-only) MXNet, its CUDA
entry points fail cleanly without a GPU, and the kernels' bodies, run on the CPU by
tests/cuda_emulator.cc, equal the CPU kernels bit for bit. The check tool's flow runs on the
emulator, and the tool itself says clearly why it cannot run here. On a GPU machine,
tools/check_cuda_sampler.py is the check of the kernels themselves."""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sampler_reference as ref
from cuda_check import bandwidth, comparison, cudart_library, harness, runtime
from cuda_check.cases import CASES, max_abs, random_inputs
from tasn_gluon.ops import build, c_abi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'check_cuda_sampler.py')

NVCC = build.find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason='nvcc not found (PATH, $NVCC, '
                                '/usr/local/cuda/bin): the CUDA sources cannot be compiled here')


def lowest_arch():
    """The oldest architecture setup.py builds by default with this nvcc."""
    return build.default_architectures(NVCC)[0]


@pytest.fixture(scope='module')
def cuda_build(tmp_path_factory):
    """Both libraries, built by setup.py with CUDA for one architecture."""
    out = tmp_path_factory.mktemp('cuda_build')
    env = dict(os.environ, TASN_CUDA='on', TASN_CUDA_ARCHS=str(lowest_arch()), NVCC=NVCC)
    result = subprocess.run(
        [sys.executable, 'setup.py', 'build_ext', '--build-lib', str(out / 'lib'),
         '--build-temp', str(out / 'temp')], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '-fmad=false' in result.stdout, result.stdout
    if 'no libcudart_static.a' not in result.stdout:  # toolkits without it link libcudart.so
        assert '-lcudart_static' in result.stdout, result.stdout
    lib_dir = out / 'lib' / 'tasn_gluon' / 'ops'
    return dict(ops=str(lib_dir / 'libtasn_ops.so'), sampler=str(lib_dir / 'libtasn_sampler.so'),
                log=result.stdout)


@pytest.mark.nvcc
@pytest.mark.multiprocess
@pytest.mark.slow
@needs_nvcc
def test_setup_builds_cuda_libraries_with_static_runtime(cuda_build):
    assert 'arch=compute_%d,code=sm_%d' % (lowest_arch(), lowest_arch()) in cuda_build['log']
    lib = c_abi.SamplerLibrary(cuda_build['sampler'])
    assert lib.has_cuda
    readelf = shutil.which('readelf')
    if readelf and '-lcudart_static' in cuda_build['log']:
        for path in (cuda_build['ops'], cuda_build['sampler']):
            needed = subprocess.run([readelf, '-d', path], capture_output=True, text=True).stdout
            assert 'libcudart' not in needed, needed  # loads where no CUDA runtime is installed


def gpu_available():
    try:
        return runtime.open_runtime().device_count() > 0
    except runtime.CannotRun:
        return False


@pytest.mark.nvcc
@pytest.mark.multiprocess
@pytest.mark.slow
@needs_nvcc
def test_cuda_entry_points_fail_cleanly_or_match_without_mxnet(cuda_build):
    """Without a GPU the CUDA functions return -1 with the CUDA error; with one they run and
    must equal the CPU kernels."""
    lib = c_abi.SamplerLibrary(cuda_build['sampler'])
    attrs = (0.5, 4.0, 5, 0)
    # Bad arguments are reported before any CUDA call.
    assert lib.lib.tasn_sampler_cuda_forward_f32(
        None, None, None, 2, 3, 12, 10, 1, 10, *attrs, None, None, None) == -1
    assert 'profile lengths must be >= 2' in lib.error()
    assert lib.scratch_bytes(2, 3, 12, 10, 12, 10, attrs, 4) > 0
    if not gpu_available():
        # The library allocates its scratch first, which fails without a GPU.
        assert lib.lib.tasn_sampler_cuda_forward_f32(
            None, None, None, 2, 3, 12, 10, 12, 10, *attrs, None, None, None) == -1
        assert 'CUDA error' in lib.error(), lib.error()
        return
    case = CASES[1]
    for legacy in (False, True):
        data, att_y, att_x, grad_out = case.inputs(np.random.RandomState(0), np.float32)
        got = comparison.gpu_run(lib, runtime.open_runtime(), data, att_y, att_x,
                                    case.attrs(legacy), grad_out)
        want = c_abi.cpu_run(lib, data, att_y, att_x, case.attrs(legacy), grad_out)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=comparison.TOLERANCE[np.float32])


@pytest.mark.nvcc
@pytest.mark.multiprocess
@pytest.mark.slow
@needs_nvcc
def test_cuda_build_loads_into_cpu_only_mxnet(cuda_build, tmp_path):
    """The library registers gpu kernels; the CPU-only MXNet wheel still loads it and runs the
    CPU operator (what CI does)."""
    rng = np.random.RandomState(1)
    data, att_y, att_x = random_inputs(rng, 3, 3, 14, 11, 7, 9, np.float32)
    np.savez(tmp_path / 'case.npz', data=data, att_y=att_y, att_x=att_x)
    script = textwrap.dedent('''
        import sys, numpy as np, mxnet as mx
        mx.library.load(sys.argv[1], verbose=False)
        z = np.load(sys.argv[2])
        out = mx.nd.AttSampler(mx.nd.array(z['data']), mx.nd.array(z['att_y']),
                               mx.nd.array(z['att_x']), scale=0.75, legacy=True)
        np.save(sys.argv[3], out.asnumpy())
        print('gpu support in this MXNet:', mx.context.num_gpus() > 0
              if hasattr(mx.context, 'num_gpus') else 'unknown')
    ''')
    result = subprocess.run([sys.executable, '-c', script, cuda_build['ops'],
                             str(tmp_path / 'case.npz'), str(tmp_path / 'out.npy')],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = ref.sample(data, att_y, att_x, scale=0.75, legacy=True)
    np.testing.assert_allclose(np.load(tmp_path / 'out.npy'), expected, atol=1e-5)


@pytest.mark.multiprocess
def test_setup_rejects_a_missing_nvcc(tmp_path):
    env = dict(os.environ, TASN_CUDA='on', NVCC=str(tmp_path / 'no-such-nvcc'))
    result = subprocess.run([sys.executable, 'setup.py', 'build_ext', '--build-lib',
                             str(tmp_path / 'lib'), '--build-temp', str(tmp_path / 'temp')],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert 'is not an executable' in result.stderr, result.stderr[-2000:]


# ---- the kernels' bodies on the CPU ----------------------------------------------------------

@pytest.fixture(scope='module')
def emulator(tmp_path_factory):
    cxx = build.find_cxx()
    assert cxx is not None, 'no g++ (or $CXX) to build tests/cuda_emulator.cc'
    target = str(tmp_path_factory.mktemp('emulator') / 'libemu.so')
    subprocess.check_call([cxx, '-O2', '-std=c++17', '-ffp-contract=off', '-fPIC', '-shared',
                           '-pthread', '-fopenmp', '-I' + build.CSRC,
                           os.path.join(ROOT, 'tests', 'cuda_emulator.cc'),
                           build.source_path('sampler_cpu.cc'), '-o', target])
    lib = ctypes.CDLL(target)
    i64, d, i, vp = ctypes.c_int64, ctypes.c_double, ctypes.c_int, ctypes.c_void_p
    for sfx in ('f32', 'f64'):
        getattr(lib, 'emu_grid_' + sfx).argtypes = [vp, vp] + [i64] * 5 + [d, d, i, i, vp, vp, i]
        for name in ('forward_', 'backward_'):
            getattr(lib, 'emu_' + name + sfx).argtypes = \
                [vp, vp, vp] + [i64] * 6 + [d, d, i, i, vp, i]
    lib.emu_last_error.restype = ctypes.c_char_p
    return lib


@pytest.fixture(scope='module')
def cpu_library():
    return c_abi.SamplerLibrary()  # FileNotFoundError naming `make setup` when not built


def emulate(emu, data, att_y, att_x, attrs, grad_out, threads):
    """(ys, xs, out, grad) from the emulated CUDA kernels, as c_abi.cpu_run returns them."""
    n, c, h, w, ly, lx, oh, ow = c_abi.call_shape(data, att_y, att_x, grad_out, attrs[0])
    sfx = c_abi.suffix(data.dtype)
    ys, xs = np.full((n, oh), np.nan), np.full((n, ow), np.nan)
    out = np.full((n, c, oh, ow), np.nan, data.dtype)
    grad = np.full(data.shape, np.nan, data.dtype)
    shape = (n, c, h, w, ly, lx) + tuple(attrs)
    assert getattr(emu, 'emu_grid_' + sfx)(att_y.ctypes.data, att_x.ctypes.data, n, h, w, ly,
                                           lx, *attrs, ys.ctypes.data, xs.ctypes.data,
                                           threads) == 0, emu.emu_last_error()
    assert getattr(emu, 'emu_forward_' + sfx)(data.ctypes.data, att_y.ctypes.data,
                                              att_x.ctypes.data, *shape, out.ctypes.data,
                                              threads) == 0, emu.emu_last_error()
    assert getattr(emu, 'emu_backward_' + sfx)(grad_out.ctypes.data, att_y.ctypes.data,
                                               att_x.ctypes.data, *shape, grad.ctypes.data,
                                               threads) == 0, emu.emu_last_error()
    return ys, xs, out, grad


def assert_bit_identical(got, want, what):
    for name, g, w in zip(('ys', 'xs', 'forward', 'backward'), got, want):
        assert np.array_equal(g, w), '%s differs for %s: max %.3g' % (
            name, what, max_abs(g, w))


# The check's cases, less the benchmark shape (it only differs on the GPU: global memory, and
# it takes long here); the cases of batch 3 to 5 cover legacy mode's reads across images.
EMULATED = [c for c in CASES if c.h * c.w < 100000]


@pytest.mark.multiprocess  # compiles the emulator with g++
@pytest.mark.parametrize('threads', [256, 37])  # the kernels' block size, and an odd one
@pytest.mark.parametrize('legacy', [False, True])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_cuda_kernel_bodies_equal_cpu_kernels_bit_for_bit(emulator, cpu_library, dtype, legacy,
                                                           threads):
    rng = np.random.RandomState(threads + legacy)
    for case in EMULATED:
        data, att_y, att_x, grad_out = case.inputs(rng, dtype)
        got = emulate(emulator, data, att_y, att_x, case.attrs(legacy), grad_out, threads)
        want = c_abi.cpu_run(cpu_library, data, att_y, att_x, case.attrs(legacy), grad_out)
        assert_bit_identical(got, want, case.what)


@pytest.mark.multiprocess  # compiles the emulator with g++
@pytest.mark.parametrize('legacy', [False, True])
def test_cuda_kernel_bodies_propagate_bad_profiles_like_cpu(emulator, cpu_library, legacy):
    """Non-finite and negative profile entries, all-zero profiles, and (legacy) an image whose
    table is flat before another: sanitised and read identically."""
    rng = np.random.RandomState(5)
    data, att_y, att_x = random_inputs(rng, 4, 2, 9, 12, 9, 12, np.float32)
    att_y[0, 2], att_y[0, 4], att_x[0, 1] = np.nan, -3.0, np.inf
    att_y[1], att_x[2] = 0.0, np.nan
    att_y[2] = 0.0  # all mass in bin 0: with no clipping and dense >= L, C = [1, 1, ..., 1]
    att_y[2, 0] = 1.0
    grad_out = rng.uniform(-1, 1, (4, 2, 9, 12)).astype(np.float32)
    for attrs in ((0.5, 4.0, 5, int(legacy)), (1.0, 12.0, 0, int(legacy))):
        go = grad_out[:, :, :int(9 * attrs[0]), :int(12 * attrs[0])].copy()
        got = emulate(emulator, data, att_y, att_x, attrs, go, 256)
        want = c_abi.cpu_run(cpu_library, data, att_y, att_x, attrs, go)
        assert_bit_identical(got, want, 'bad profiles %s' % (attrs,))


# ---- the check tool --------------------------------------------------------------------------

class HostMemoryCuda(runtime.CudaRuntime):
    """'Device' memory in host memory, a pretend GPU: with EmulatedLibrary it runs the check's
    whole flow (correctness, bandwidth, report) without a GPU."""

    backend = 'host emulation'

    def __init__(self):
        self._buffers = {}

    def device_count(self):
        return 1

    def attribute(self, attr):
        return {self.ATTR_MEMORY_CLOCK_KHZ: 1000000, self.ATTR_BUS_WIDTH_BITS: 1024,
                self.ATTR_CC_MAJOR: 9, self.ATTR_CC_MINOR: 0}[attr]

    def device_name(self):
        return 'host emulation'

    def malloc(self, nbytes):
        buf = np.zeros(max(int(nbytes), 1), np.uint8)
        self._buffers[buf.ctypes.data] = buf
        return buf.ctypes.data

    def free(self, ptr):
        del self._buffers[ptr]

    def copy(self, dst, src, nbytes, kind):
        ctypes.memmove(dst, src, nbytes)

    def memset(self, ptr, value, nbytes):
        ctypes.memset(ptr, value, nbytes)

    def synchronize(self):
        pass

    def time_ms(self, fn, repeats):
        fn()
        return 1.0


class EmulatedLibrary:
    """The C ABI with its tasn_sampler_cuda_* functions served by the emulator."""

    def __init__(self, cpu, emu):
        self.cpu, self.emu, self.lib = cpu, emu, cpu.lib
        self.path, self.has_cuda = 'emulator', True

    def error(self):
        return self.cpu.error()

    def scratch_bytes(self, *args):
        return 1

    def call(self, name, *args):
        prefix = 'tasn_sampler_cuda_'
        if not name.startswith(prefix):
            return self.cpu.call(name, *args)
        if name == prefix + 'synchronize':
            return
        # The same arguments, less scratch and stream, plus the block size.
        fn = getattr(self.emu, 'emu_' + name[len(prefix):])
        assert fn(*(args[:-2] + (256,))) == 0, self.emu.emu_last_error()


@pytest.mark.multiprocess  # compiles the emulator with g++
@pytest.mark.slow
def test_check_runs_end_to_end_on_the_emulator(emulator, cpu_library, tmp_path):
    """What tools/check_cuda_sampler.py runs: correctness, then the bandwidth benchmark, the
    report as JSON."""
    lines, errors = [], []
    lib, cuda = EmulatedLibrary(cpu_library, emulator), HostMemoryCuda()
    code = harness.run_checks(
        lib, cuda, lines.append, errors.append,
        benchmark=lambda: bandwidth.benchmark(lib, cuda, lines.append, batch=2, repeats=1,
                                                 copy_bytes=1 << 20),
        json_path=str(tmp_path / 'check.json'))
    assert code == harness.EXIT_MATCH, '\n'.join(lines + errors)
    with open(tmp_path / 'check.json') as f:
        results = json.load(f)
    assert results['all_match']
    assert len(results['correctness']) == 4 * len(CASES)
    assert all(row['bit_identical'] for row in results['correctness'])
    runs = results['benchmark']['runs']
    assert [(r['profiles'], r['legacy']) for r in runs] == [
        ('attention', False), ('attention', True), ('uniform', False), ('uniform', True)]
    for r in runs:
        # Attention profiles skip rows and columns; uniform 512 -> 224 reads 448 of 512 rows.
        assert 0 < r['bytes_actual'] < r['bytes_nominal'] + 2 * 16 * 2 * 448
    assert results['benchmark']['peak_gbs'] == pytest.approx(256.0)
    assert any('target (forward >= 70% of peak bandwidth)' in line for line in lines)


def test_check_reports_a_failing_kernel_as_a_mismatch(cpu_library):
    class Broken(EmulatedLibrary):
        def call(self, name, *args):
            if name.startswith('tasn_sampler_cuda_'):
                raise c_abi.SamplerError('%s failed: CUDA error in the taps kernel' % name)
            return self.cpu.call(name, *args)
    lines, errors = [], []
    code = harness.run_checks(Broken(cpu_library, None), HostMemoryCuda(), lines.append,
                                 errors.append)
    assert code == harness.EXIT_MISMATCH
    assert len(errors) == 1 and 'the CUDA kernels failed to run' in errors[0], errors


def run_tool(args, **kwargs):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', PYTHONPATH=ROOT)  # hides any GPU here
    env.update(kwargs.pop('env', {}))
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, timeout=300,
                          env=env, **kwargs)


@pytest.mark.multiprocess
@pytest.mark.parametrize('flags', [[], ['--build', '--json', 'never-written.json']])
def test_check_tool_says_in_one_line_when_there_is_no_gpu(flags, tmp_path):
    result = run_tool([TOOL] + flags, cwd=str(tmp_path))
    assert result.returncode == harness.EXIT_CANNOT_RUN, result.stdout + result.stderr
    assert result.stdout == '' and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith('check_cuda_sampler: cannot run: ')
    assert ('no usable NVIDIA GPU' in result.stderr or 'no CUDA runtime' in result.stderr), \
        result.stderr
    assert not (tmp_path / 'never-written.json').exists()


@pytest.mark.multiprocess
def test_check_tool_says_how_to_run_it_when_tasn_gluon_is_not_importable(tmp_path):
    # -S: no site-packages, so neither the installed package nor NumPy; PYTHONPATH unset.
    result = run_tool(['-S', TOOL], cwd=str(tmp_path), env=dict(PYTHONPATH=''))
    assert result.returncode == harness.EXIT_CANNOT_RUN, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert 'PYTHONPATH=. python tools/check_cuda_sampler.py' in result.stderr, result.stderr


def test_cudart_is_looked_for_in_the_runtime_wheels_and_a_bad_one_is_named(tmp_path,
                                                                             monkeypatch):
    """Where no toolkit is installed (a PyTorch or CuPy machine) libcudart comes from the
    nvidia-cuda-runtime wheel on sys.path; a file there that does not load is named."""
    lib_dir = tmp_path / 'nvidia' / 'cuda_runtime' / 'lib'
    lib_dir.mkdir(parents=True)
    fake = lib_dir / 'libcudart.so.12'
    fake.write_text('not a shared library')
    monkeypatch.delenv('TASN_CUDART', raising=False)
    monkeypatch.setattr(sys, 'path', sys.path + [str(tmp_path)])
    assert str(fake) in list(cudart_library.cudart_candidates())
    with pytest.raises(runtime.CannotRun, match='no CUDA runtime.*%s' % fake.name) as caught:
        cudart_library.load_cudart([str(fake)])
    assert str(fake) in str(caught.value) and 'TASN_CUDART' in str(caught.value)


def test_bytes_moved_counts_touched_sectors_once():
    # Uniform 8 -> 4 on one 1-channel float32 image: the taps (0, 1), (2, 3), (4, 5), (6, 7)
    # touch all 8 rows, each one 32-byte sector wide; plus the tap tables (written and read,
    # 16 bytes per output row and column) and the 4x4 output.
    ys, xs = ref.grid(np.ones((1, 8)), np.ones((1, 8)), 8, 8, 0.5)
    actual, nominal = bandwidth.bytes_moved(ys, xs, 1, 1, 8, 8, 4, 4, 4, False)
    assert actual == 8 * 32 + 2 * 16 * (4 + 4) + 4 * 16
    assert nominal == 4 * (64 + 16)
    # Two columns out of 64 (a 256-byte row): one sector per row, not eight.
    ys, xs = np.array([[0.0]]), np.array([[10.5]])
    actual, _ = bandwidth.bytes_moved(ys, xs, 1, 1, 2, 64, 1, 1, 4, False)
    assert actual == 2 * 32 + 2 * 16 * 2 + 4


@pytest.mark.multiprocess  # runs nvcc --list-gpu-arch
def test_architecture_flags():
    """One parser of nvcc's list (build.py); setup.py and --build take their flags from it."""
    listed = build.listed_architectures(NVCC) if NVCC else []
    assert build.gencode_flags([75, 90]) == [
        '-gencode', 'arch=compute_75,code=sm_75', '-gencode', 'arch=compute_90,code=sm_90',
        '-gencode', 'arch=compute_90,code=compute_90']
    with pytest.raises(build.BuildError, match='compute capabilities like'):
        build.requested_architectures(NVCC or 'nvcc', 'eighty')
    if listed:
        newest = listed[-1]
        assert build.device_gencode_flags(NVCC, newest) == \
            ['-gencode', 'arch=compute_%d,code=sm_%d' % (newest, newest)]
        # A GPU newer than this nvcc: PTX of the newest architecture it knows.
        assert build.device_gencode_flags(NVCC, newest + 100) == \
            ['-gencode', 'arch=compute_%d,code=compute_%d' % (newest, newest)]
        assert build.requested_architectures(NVCC, 'sm_%d' % newest) == [newest]
        with pytest.raises(build.BuildError, match='does not support'):
            build.requested_architectures(NVCC, '12')


@pytest.mark.nvcc
@pytest.mark.multiprocess
@needs_nvcc
def test_check_builds_a_library_for_one_gpu(tmp_path):
    """--build compiles for the GPU at hand; here a pretend one of the oldest architecture
    setup.py builds."""
    arch = lowest_arch()

    class FakeGpu:
        @staticmethod
        def capability():
            return arch
    lines = []
    path = harness.build_for_device(FakeGpu(), str(tmp_path), lines.append)
    assert any('code=sm_%d' % arch in line and '-fmad=false' in line for line in lines), lines
    assert c_abi.SamplerLibrary(path).has_cuda
