"""The plain C ABI (libtasn_sampler.so, c_api.cc) on the CPU against the NumPy reference of the
spec: grid, forward and backward, both dtypes, both modes, legacy mode's C[-1] across the images
of one call, its error reporting; and that the framework-free modules (tasn_gluon.ops.c_abi,
build, tools/cuda_check/) import and run without MXNet and without what NumPy 2
removed."""
import ast
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sampler_reference as ref
from tasn_gluon.ops import c_abi
from cuda_check.cases import CASES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The dense reference builds (out, size) interpolation matrices: cases up to 10^4 pixels.
REFERENCE_CASES = [c for c in CASES if c.h * c.w <= 10000]


@pytest.fixture(scope='module')
def lib():
    return c_abi.SamplerLibrary()  # FileNotFoundError naming `make setup` when not built


@pytest.mark.parametrize('legacy', [False, True])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('case', REFERENCE_CASES, ids=lambda c: c.what)
def test_cpu_path_matches_reference(lib, case, dtype, legacy):
    rng = np.random.RandomState(case.h * case.w + 10 * legacy)
    data, att_y, att_x, grad_out = case.inputs(rng, dtype)
    ys, xs, out, grad = c_abi.cpu_run(lib, data, att_y, att_x, case.attrs(legacy), grad_out)
    kwargs = dict(scale=case.scale, dense=case.dense, iters=case.iters, legacy=legacy)
    ref_ys, ref_xs = ref.grid(att_y, att_x, case.h, case.w, **kwargs)
    # Coordinates are double precision whatever the inputs; the reference sums in another order
    # (pairwise, and cumsum from 1 in legacy mode): a few hundred roundings of values below
    # 10^3, far inside 1e-9 relative.
    np.testing.assert_allclose(ys, ref_ys, atol=1e-9 * case.h, rtol=1e-9)
    np.testing.assert_allclose(xs, ref_xs, atol=1e-9 * case.w, rtol=1e-9)
    # Outputs: 2 x 2 taps of |data| <= 1, weights <= 1, computed in `dtype` by the kernels and in
    # float64 by the reference: a few roundings of the dtype's epsilon (float32 1.2e-7).
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert out.dtype == dtype and grad.dtype == dtype
    np.testing.assert_allclose(out, ref.sample(data, att_y, att_x, **kwargs), atol=tol)
    np.testing.assert_allclose(grad, ref.sample_backward(grad_out, data.shape, att_y, att_x,
                                                         **kwargs), atol=tol)


def legacy_first_positions(att_y, att_x, h, w, scale, dense, iters):
    """Spec, section 5: marginal position p of output pixel 0 of every image on each axis:
    -1 for image 0, -1 / (1 - C_{b-1}[L-1]) for image b >= 1, where C_{b-1}[L-1] =
    1 + sum(m_{b-1}[1:]) is image b-1's last legacy table entry on the same axis."""
    budgets = ref.budgets(att_y, att_x, h, w, scale, dense, iters)
    first = []
    for axis in (0, 1):
        last = [1.0 + m[axis][1:].sum() for m in budgets]
        first.append(np.array([-1.0] + [-1.0 / (1.0 - c) for c in last[:-1]]))
    return first


def to_image(p, length, size):
    """The legacy align-corners mapping of marginal position p: (2p/(L-1) - 1 + 1)(size-1)/2."""
    return p * (size - 1) / (length - 1)


def test_legacy_first_pixel_reads_the_previous_images_table(lib):
    case = CASES[3]  # batch of 4, profile lengths = image sizes, no clipping rounds
    n, c, h, w, ly, lx = case[:6]
    rng = np.random.RandomState(11)
    data, att_y, att_x, grad_out = case.inputs(rng, np.float64)
    ys, xs, out, _ = c_abi.cpu_run(lib, data, att_y, att_x, case.attrs(True), grad_out)
    py, px = legacy_first_positions(att_y, att_x, h, w, case.scale, case.dense, case.iters)
    # Image 0 at -1 (outside the image), the others inside bin 0 (C_{b-1}[L-1] > C[0] = 1).
    assert py[0] == px[0] == -1.0
    assert ((py[1:] > 0) & (py[1:] < 1)).all() and ((px[1:] > 0) & (px[1:] < 1)).all()
    # p0 is 1 over a sum of at most 31 budget entries (each within a few ulps of the
    # reference's): relative error below 1e-13, 1e-10 leaves room.
    np.testing.assert_allclose(ys[:, 0], to_image(py, ly, h), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(xs[:, 0], to_image(px, lx, w), rtol=1e-10, atol=1e-14)
    # Image 0's first row and column sample outside the image (black); the others' do not.
    assert np.abs(out[0, :, 0, :]).max() < 1e-12 and np.abs(out[0, :, :, 0]).max() < 1e-12
    assert (np.abs(out[1:, :, 0, :]).max(axis=-1) > 0.01).all()


def test_legacy_each_call_starts_afresh(lib):
    """Each call's image 0 reads C[-1] = 0 (a device's share of a batch is its own call);
    images after it are the same in the whole batch and in the share."""
    case = CASES[1]  # batch of 3
    rng = np.random.RandomState(12)
    data, att_y, att_x, grad_out = case.inputs(rng, np.float64)
    whole = c_abi.cpu_run(lib, data, att_y, att_x, case.attrs(True), grad_out)
    share = c_abi.cpu_run(lib, data[1:], att_y[1:], att_x[1:], case.attrs(True), grad_out[1:])
    for a, b in zip(whole, share):
        np.testing.assert_array_equal(a[2:], b[1:])
    py, px = legacy_first_positions(att_y[1:], att_x[1:], case.h, case.w, case.scale,
                                    case.dense, case.iters)
    assert py[0] == -1.0
    np.testing.assert_allclose(share[0][:, 0], to_image(py, case.ly, case.h), rtol=1e-10)
    np.testing.assert_allclose(share[1][:, 0], to_image(px, case.lx, case.w), rtol=1e-10)
    assert not np.array_equal(whole[0][1], share[0][0])  # image 1 differs between the two
    # Clean mode does not read across images.
    clean = [c_abi.cpu_run(lib, d, y, x, case.attrs(False), g) for d, y, x, g in
             ((data, att_y, att_x, grad_out), (data[1:], att_y[1:], att_x[1:], grad_out[1:]))]
    for a, b in zip(*clean):
        np.testing.assert_array_equal(a[1:], b)


def test_legacy_flat_previous_table_reads_zero(lib):
    """A profile with all its mass in bin 0 and no clipping rounds (iters = 0) leaves m = [out,
    0, ...] and C = [1, 1, ..., 1]: for the next image the official division by C[0] - C[-1] = 0
    would be infinite; it reads C[-1] = 0 instead, as image 0 does."""
    h = w = 4  # profiles of length 4 too
    attrs = (1.0, 4.0, 0, 1)
    flat = np.array([1.0, 0, 0, 0])
    rng = np.random.RandomState(13)
    other = rng.uniform(0.1, 1, (1, 4))
    att = np.vstack([flat, other[0]])
    data = rng.uniform(-1, 1, (2, 1, h, w))
    grad_out = rng.uniform(-1, 1, (2, 1, h, w))
    batch = c_abi.cpu_run(lib, data, att, att, attrs, grad_out)
    alone = c_abi.cpu_run(lib, data[1:], other, other, attrs, grad_out[1:])
    for a, b in zip(batch, alone):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a[1:], b)
    ref_ys, ref_xs = ref.grid(att, att, h, w, *attrs[:3], legacy=True)
    np.testing.assert_allclose(batch[0], ref_ys, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batch[1], ref_xs, rtol=1e-12, atol=1e-12)


def test_errors_are_reported_through_last_error(lib):
    data = np.zeros((2, 3, 8, 8), np.float32)
    prof = np.ones((2, 8), np.float32)
    out = np.zeros((2, 3, 4, 4), np.float32)

    def forward(h=8, ly=8, scale=0.5, dense=4.0, iters=5):
        return lib.lib.tasn_sampler_forward_f32(
            data.ctypes.data, prof.ctypes.data, prof.ctypes.data, 2, 3, h, 8, ly, 8, scale,
            dense, iters, 0, out.ctypes.data)

    for kwargs, words in [(dict(ly=1), 'profile lengths must be >= 2'),
                          (dict(scale=0.0), 'scale must be'),
                          (dict(scale=0.05), 'empty output'),
                          (dict(dense=0.5), 'dense must be'),
                          (dict(iters=-1), 'iters must be'),
                          (dict(h=-1), 'negative data shape')]:
        assert forward(**kwargs) == -1
        assert words in lib.error(), (kwargs, lib.error())
    assert forward() == 0
    assert lib.error() == ''
    with pytest.raises(c_abi.SamplerError, match='profile lengths must be >= 2'):
        lib.call('tasn_sampler_forward_f32', data.ctypes.data, prof.ctypes.data,
                 prof.ctypes.data, 2, 3, 8, 8, 1, 8, 0.5, 4.0, 5, 0, out.ctypes.data)


def test_python_side_rejects_mismatched_arrays(lib):
    data = np.zeros((2, 3, 8, 8))
    prof = np.ones((2, 8))
    grad = np.zeros((2, 3, 4, 4))
    attrs = (0.5, 4.0, 5, 0)
    for args, words in [((data[0], prof, prof, grad), 'data must be'),
                        ((data, prof[:1], prof, grad), 'att_y must be'),
                        ((data, prof, prof, grad[:, :2]), 'grad_out must be'),
                        ((data, prof, prof.astype(np.float32), grad), 'one dtype')]:
        with pytest.raises(ValueError, match=words):
            c_abi.cpu_run(lib, args[0], args[1], args[2], attrs, args[3])
    with pytest.raises(TypeError, match='float32 or float64'):
        c_abi.suffix(np.int32)
    with pytest.raises(FileNotFoundError, match='make setup'):
        c_abi.SamplerLibrary(os.path.join(ROOT, 'no-such-library.so'))


def test_has_cuda_is_a_flag_and_cuda_functions_exist_when_set(lib):
    assert lib.has_cuda in (False, True)
    if lib.has_cuda:
        attrs = (0.5, 4.0, 5, 0)
        assert lib.scratch_bytes(2, 3, 8, 8, 8, 8, attrs, 4) > 0
        assert lib.lib.tasn_sampler_cuda_scratch_bytes(2, 3, 8, 8, 8, 8, *attrs, 2) == -1
        assert 'elem_size' in lib.error()
    else:
        with pytest.raises(AttributeError):
            lib.lib.tasn_sampler_cuda_forward_f32


def test_zero_images_or_channels_succeed_and_write_nothing(lib):
    """An empty batch, or images with no channels, is a valid call: it succeeds, and the output
    buffers (here longer than the empty output, filled with a sentinel) are not touched."""
    attrs = (0.5, 4.0, 5, 0)
    for n, c in ((0, 3), (2, 0)):
        prof = np.ones((max(n, 1), 8), np.float32)
        source = np.ones(64, np.float32)
        out, grad = np.full(64, 7.0, np.float32), np.full(64, 7.0, np.float32)
        assert lib.lib.tasn_sampler_forward_f32(source.ctypes.data, prof.ctypes.data,
                                                prof.ctypes.data, n, c, 8, 8, 8, 8, *attrs,
                                                out.ctypes.data) == 0, lib.error()
        assert lib.lib.tasn_sampler_backward_f32(source.ctypes.data, prof.ctypes.data,
                                                 prof.ctypes.data, n, c, 8, 8, 8, 8, *attrs,
                                                 grad.ctypes.data) == 0, lib.error()
        assert (out == 7.0).all() and (grad == 7.0).all(), (n, c)
    ys, xs = np.full(8, 7.0), np.full(8, 7.0)
    assert lib.lib.tasn_sampler_grid_f32(prof.ctypes.data, prof.ctypes.data, 0, 8, 8, 8, 8,
                                         *attrs, ys.ctypes.data, xs.ctypes.data) == 0
    assert (ys == 7.0).all() and (xs == 7.0).all()


# ---- without MXNet, with NumPy 2 ---------------------------------------------------------------

FRAMEWORK_FREE = ['tasn_gluon/__init__.py', 'tasn_gluon/ops/__init__.py', 'tasn_gluon/ops/c_abi.py',
                  'tasn_gluon/ops/build.py', 'tools/check_cuda_sampler.py'] + [
                      'tools/cuda_check/%s.py' % m for m in (
                          '__init__', 'runtime', 'cupy_runtime', 'cudart', 'cudart_library',
                          'cases', 'comparison', 'harness', 'bandwidth')]

# Names NumPy 2.0 removed from its main namespace (NEP 52, the 2.0 release notes), and ndarray
# methods it removed.
NUMPY2_REMOVED = [
    'alltrue', 'sometrue', 'product', 'cumproduct', 'round_', 'asfarray', 'msort', 'who',
    'float_', 'complex_', 'string_', 'unicode_', 'cfloat', 'clongfloat', 'longcomplex',
    'longfloat', 'singlecomplex', 'Inf', 'Infinity', 'infty', 'NaN', 'NINF', 'PINF', 'NZERO',
    'PZERO', 'cast', 'disp', 'find_common_type', 'issubclass_', 'issctype', 'issubsctype',
    'maximum_sctype', 'obj2sctype', 'sctype2char', 'sctypes', 'nbytes', 'safe_eval', 'source',
    'lookfor', 'deprecate', 'deprecate_with_doc', 'fastCopyAndTranspose', 'set_numeric_ops',
    'set_string_function', 'geterrobj', 'seterrobj', 'recfromcsv', 'recfromtxt', 'byte_bounds',
    'compare_chararrays', 'format_parser', 'mat', 'DataSource', 'tracemalloc_domain']
NUMPY2_REMOVED_METHODS = ['ptp', 'itemset', 'newbyteorder']


def test_framework_free_modules_use_nothing_numpy2_removed():
    for rel in FRAMEWORK_FREE:
        tree = ast.parse(open(os.path.join(ROOT, rel)).read(), rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                if isinstance(node.value, ast.Name) and node.value.id in ('np', 'numpy'):
                    assert node.attr not in NUMPY2_REMOVED, '%s:%d np.%s' % (
                        rel, node.lineno, node.attr)
                assert node.attr not in NUMPY2_REMOVED_METHODS, '%s:%d .%s' % (
                    rel, node.lineno, node.attr)
            if isinstance(node, ast.Call):  # NumPy 2: copy=False raises where a copy is needed
                for kw in node.keywords:
                    assert not (kw.arg == 'copy' and isinstance(kw.value, ast.Constant)
                                and kw.value.value is False), '%s:%d copy=False' % (
                        rel, node.lineno)


@pytest.mark.multiprocess
def test_framework_free_modules_import_and_run_without_mxnet(lib):
    """In a process where `import mxnet` fails and NumPy lacks what NumPy 2 removed, the C ABI,
    the check module, the build module and the GPU benchmark import and run their CPU parts;
    tasn_gluon.ops then has no MXNet face."""
    script = textwrap.dedent('''
        import sys
        sys.modules['mxnet'] = None  # `import mxnet` raises ImportError, find_spec finds none
        import numpy as np
        for name in sys.argv[1].split(','):
            if hasattr(np, name):
                delattr(np, name)
        from tasn_gluon import ops
        from tasn_gluon.ops import build, c_abi
        from cuda_check import bandwidth, cases, comparison, cudart, harness, runtime
        try:
            ops.load
        except ImportError as e:        # the MXNet face is there only where MXNet is
            assert 'mxnet' in str(e), e
        else:
            raise AssertionError('tasn_gluon.ops.load without MXNet')
        lib = c_abi.SamplerLibrary()
        case = cases.CASES[1]
        for legacy in (False, True):
            data, att_y, att_x, grad_out = case.inputs(np.random.RandomState(0), np.float32)
            ys, xs, out, grad = c_abi.cpu_run(lib, data, att_y, att_x, case.attrs(legacy),
                                              grad_out)
            assert np.isfinite(out).all() and cases.max_abs(out, out) == 0
            actual, nominal = bandwidth.bytes_moved(ys, xs, *data.shape, *out.shape[2:], 4,
                                                    legacy)
            assert 0 < actual and 0 < nominal
        assert cases.Case(*case).attrs(True) == case.attrs(True)
        assert build.gencode_flags([80, 90])[-1] == 'arch=compute_90,code=compute_90'
        assert 'mxnet' not in [m.split('.')[0] for m, v in sys.modules.items() if v is not None]
        print('ok without mxnet')
    ''')
    result = subprocess.run([sys.executable, '-c', script, ','.join(NUMPY2_REMOVED)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                [ROOT, os.path.join(ROOT, 'tools')])), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'ok without mxnet' in result.stdout
