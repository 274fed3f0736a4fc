"""The plain C ABI (libtasn_sampler.so, c_api.cc) on the CPU against the NumPy reference of the
spec: grid, forward and backward, both dtypes, both modes, and its error reporting. The ctypes
binding is tools/check_cuda_sampler.py's, the one the GPU check uses."""
import importlib.util
import os

import numpy as np
import pytest

import sampler_reference as ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = os.path.join(ROOT, 'tasn_gluon', 'ops', 'libtasn_sampler.so')


def load_checker():
    spec = importlib.util.spec_from_file_location(
        'check_cuda_sampler', os.path.join(ROOT, 'tools', 'check_cuda_sampler.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chk = load_checker()


@pytest.fixture(scope='module')
def lib():
    if not os.path.isfile(LIBRARY):
        pytest.fail('%s is missing: run `make setup`' % LIBRARY)
    return chk.SamplerLibrary(LIBRARY)


CASES = [
    # n, c, h, w, ly, lx, scale, dense, iters
    (1, 1, 16, 16, 16, 16, 0.5, 4.0, 5),
    (3, 2, 20, 13, 7, 11, 0.75, 2.0, 3),
    (2, 3, 12, 18, 24, 5, 1.5, 2.0, 3),    # upsampling, profile longer than the image
    (4, 1, 9, 31, 9, 31, 0.4375, 4.0, 0),
    (2, 2, 1, 6, 3, 4, 2.0, 4.0, 5),       # one-pixel axes
    (1, 2, 5, 1, 4, 2, 3.0, 4.0, 5),
]


@pytest.mark.parametrize('legacy', [False, True])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('case', CASES)
def test_cpu_path_matches_reference(lib, case, dtype, legacy):
    n, c, h, w, ly, lx, scale, dense, iters = case
    rng = np.random.RandomState(sum(case[:6]) + 10 * legacy)
    data, att_y, att_x = chk.random_inputs(rng, n, c, h, w, ly, lx, dtype)
    oh, ow = int(h * scale), int(w * scale)
    grad_out = rng.uniform(-1, 1, (n, c, oh, ow)).astype(dtype)
    ys, xs, out, grad = chk.cpu_run(lib, data, att_y, att_x, (scale, dense, iters, int(legacy)),
                                    grad_out)
    kwargs = dict(scale=scale, dense=dense, iters=iters, legacy=legacy)
    ref_ys, ref_xs = ref.grid(att_y, att_x, h, w, **kwargs)
    # Coordinates are always double precision; only the inputs are float32.
    np.testing.assert_allclose(ys, ref_ys, atol=1e-9 * h, rtol=1e-9)
    np.testing.assert_allclose(xs, ref_xs, atol=1e-9 * w, rtol=1e-9)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert out.dtype == dtype and grad.dtype == dtype
    np.testing.assert_allclose(out, ref.sample(data, att_y, att_x, **kwargs), atol=tol)
    np.testing.assert_allclose(grad, ref.sample_backward(grad_out, data.shape, att_y, att_x,
                                                         **kwargs), atol=tol)


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


def test_zero_images_or_channels_do_nothing(lib):
    prof = np.ones((0, 8), np.float32)
    out = np.zeros(0, np.float32)
    data = np.zeros(0, np.float32)
    assert lib.lib.tasn_sampler_forward_f32(data.ctypes.data, prof.ctypes.data, prof.ctypes.data,
                                            0, 3, 8, 8, 8, 8, 0.5, 4.0, 5, 0,
                                            out.ctypes.data) == 0
