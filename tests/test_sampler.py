"""The AttSampler operator against the NumPy reference of the spec, OpenCV, finite differences,
the spec's legacy worked example and legacy mode's C[-1] across the images of one call, and its
error handling, through MXNet's NDArray, Symbol and Gluon faces."""
import os
import subprocess
import sys
import textwrap

import cv2
import mxnet as mx
import numpy as np
import pytest

import sampler_reference as ref
from tasn_gluon import ops
from cuda_check.cases import CASES, random_inputs

# The dense reference builds (out, size) interpolation matrices: cases up to 10^4 pixels.
REFERENCE_CASES = [c for c in CASES if c.h * c.w <= 10000]


@pytest.fixture(scope='module', autouse=True)
def operators():
    """The operator library, loaded into MXNet (FileNotFoundError naming `make setup` when it
    has not been built)."""
    return ops.load()


def nd(*arrays):
    return [mx.nd.array(a, dtype=a.dtype) for a in arrays]


@pytest.mark.parametrize('legacy', [False, True])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('case', REFERENCE_CASES, ids=lambda c: c.what)
def test_forward_and_grid_match_reference(case, dtype, legacy):
    n, c, h, w, ly, lx, scale = case[:7]
    rng = np.random.RandomState(h * w + legacy)
    data, att_y, att_x = random_inputs(rng, n, c, h, w, ly, lx, dtype)
    kwargs = dict(scale=scale, dense=case.dense, iters=case.iters, legacy=legacy)
    out = ops.att_sampler(*nd(data, att_y, att_x), **kwargs).asnumpy()
    expected = ref.sample(data, att_y, att_x, **kwargs)
    assert out.dtype == dtype
    assert out.shape == case.out_shape()
    # 2 x 2 taps of |data| <= 1 in `dtype` against float64: a few roundings of its epsilon.
    tol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out, expected, atol=tol, rtol=tol)

    ys, xs = ops.att_sampler_grid(*nd(att_y, att_x), in_h=h, in_w=w, **kwargs)
    ref_ys, ref_xs = ref.grid(att_y, att_x, h, w, **kwargs)
    # The operator returns the coordinates in `dtype`: relative rounding of its epsilon.
    np.testing.assert_allclose(ys.asnumpy(), ref_ys, atol=tol * h, rtol=tol)
    np.testing.assert_allclose(xs.asnumpy(), ref_xs, atol=tol * w, rtol=tol)


@pytest.mark.parametrize('legacy', [False, True])
def test_backward_matches_reference(legacy):
    rng = np.random.RandomState(7)
    # Three images: in legacy mode images 1 and 2 read the previous image's table.
    data, att_y, att_x = random_inputs(rng, 3, 3, 14, 10, 9, 6, np.float64)
    grad_out_shape = (3, 3, int(14 * 0.7), int(10 * 0.7))
    head = rng.uniform(-1, 1, grad_out_shape)
    x, ay, ax = nd(data, att_y, att_x)
    for a in (x, ay, ax):
        a.attach_grad()
    with mx.autograd.record():
        out = ops.att_sampler(x, ay, ax, scale=0.7, legacy=legacy)
    out.backward(mx.nd.array(head, dtype=np.float64))
    expected = ref.sample_backward(head, data.shape, att_y, att_x, scale=0.7, legacy=legacy)
    np.testing.assert_allclose(x.grad.asnumpy(), expected, atol=1e-12)
    assert not ay.grad.asnumpy().any() and not ax.grad.asnumpy().any()


@pytest.mark.parametrize('legacy', [False, True])
def test_data_gradient_by_finite_differences(legacy):
    rng = np.random.RandomState(3)
    data, att_y, att_x = random_inputs(rng, 3, 2, 7, 6, 5, 4, np.float64)
    weights = rng.uniform(-1, 1, (3, 2, int(7 * 1.3), int(6 * 1.3)))
    attrs = dict(scale=1.3, dense=3.0, legacy=legacy)

    def objective(d):
        out = ops.att_sampler(*nd(d, att_y, att_x), **attrs).asnumpy()
        return float((out * weights).sum())

    x = mx.nd.array(data, dtype=np.float64)
    x.attach_grad()
    with mx.autograd.record():
        loss = (ops.att_sampler(x, *nd(att_y, att_x), **attrs)
                * mx.nd.array(weights, dtype=np.float64)).sum()
    loss.backward()
    numeric = np.zeros_like(data)
    eps = 1e-6
    for idx in np.ndindex(*data.shape):
        plus, minus = data.copy(), data.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (objective(plus) - objective(minus)) / (2 * eps)
    np.testing.assert_allclose(x.grad.asnumpy(), numeric, atol=1e-7)


@pytest.mark.parametrize('h, w, scale', [(32, 32, 0.5), (40, 24, 0.43), (10, 12, 2.5),
                                          (17, 29, 0.7)])
def test_uniform_profiles_equal_opencv_resize(h, w, scale):
    # Clean mode with uniform profiles of length = image size is a bilinear resize with
    # half-pixel centres: OpenCV's INTER_LINEAR on float data.
    rng = np.random.RandomState(h)
    image = rng.uniform(0, 255, (2, h, w)).astype(np.float32)
    out = ops.att_sampler(mx.nd.array(image[None]), mx.nd.ones((1, h)), mx.nd.ones((1, w)),
                          scale=scale).asnumpy()[0]
    size = (int(w * scale), int(h * scale))
    for channel in range(2):
        expected = cv2.resize(image[channel], size, interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(out[channel], expected, atol=2e-3, rtol=1e-5)


def test_legacy_grid_matches_worked_example():
    """Spec, section 5: legacy, uniform profiles, 512 -> 224, derived from its closed form. Every
    bin gets m = out / L: clipping does not act (the cap is min(T0, max m) = m), so C[j] = 1 +
    j m and step = C[L-1] / out. Output pixel k >= 1 lies in a bin j >= 1, at p_k = j + (k step
    - C[j]) / m = (k step - 1) / m; pixel 0 lies in bin 0, at p_0 = (0 - C[0]) / (C[0] - C[-1]),
    -1 for image 0 (C[-1] = 0) and 1 / (C[L-1] - 1) for the images after it (C[-1] is the
    previous image's C[L-1]). With L = size the align-corners mapping is the identity."""
    size, out, batch = 512, 224, 3
    m = out / size
    last = 1 + (size - 1) * m  # C[L-1]
    step = last / out
    k = np.arange(out)
    image0 = np.where(k == 0, -1.0, (k * step - 1) / m)
    later = np.where(k == 0, 1 / (last - 1), image0)
    # The spec's figures, as printed there (rounded), are image 0's.
    assert ['%.1f' % image0[0], '%.4f' % image0[1], '%.3f' % image0[2]] == \
        ['-1.0', '0.0057', '2.297']
    assert ['%.3f' % v for v in image0[-2:]] == ['506.417', '508.709']
    assert '%.4f' % (step / m) == '2.2915' and '%.4f' % later[0] == '0.0045'

    ones = mx.nd.ones((batch, size), dtype=np.float64)
    ys, xs = ops.att_sampler_grid(ones, ones, size, size, scale=out / size, legacy=True)
    ys = ys.asnumpy()
    # C[j] and m are exact (multiples of 1/16); the rest is a few roundings of values below 512.
    np.testing.assert_allclose(ys[0], image0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ys[1:], np.broadcast_to(later, (batch - 1, out)), rtol=0,
                               atol=1e-12)
    np.testing.assert_array_equal(xs.asnumpy(), ys)
    # Zero padding: image 0's first output row and column sample at -1, outside the image
    # (black, up to rounding of -1); the later images' sample just inside it.
    ones32 = ones.astype('float32')
    image = ops.att_sampler(mx.nd.ones((batch, 1, size, size)), ones32, ones32, scale=out / size,
                            legacy=True).asnumpy()[:, 0]
    np.testing.assert_allclose(image[0, 0], 0, atol=1e-6)
    np.testing.assert_allclose(image[0, :, 0], 0, atol=1e-6)
    np.testing.assert_allclose(image[0, 1:, 1:], 1, rtol=1e-6)
    np.testing.assert_allclose(image[1:], 1, rtol=1e-6)


def test_legacy_first_pixel_across_images_and_calls():
    """Legacy output pixel 0 of image b >= 1 of one call samples at p = -1 / (1 - C_{b-1}[L-1])
    (image b-1's last table entry on the same axis); image 0 of every call at p = -1."""
    rng = np.random.RandomState(21)
    n, h, w, ly, lx, scale = 4, 20, 13, 7, 11, 0.75
    data, att_y, att_x = random_inputs(rng, n, 2, h, w, ly, lx, np.float64)
    kwargs = dict(scale=scale, dense=2.0, iters=3, legacy=True)
    budgets = ref.budgets(att_y, att_x, h, w, scale, 2.0, 3)
    ys, xs = [a.asnumpy() for a in ops.att_sampler_grid(*nd(att_y, att_x), h, w, **kwargs)]
    for axis, coords, length, size in ((0, ys, ly, h), (1, xs, lx, w)):
        last = np.array([1 + b[axis][1:].sum() for b in budgets])
        p0 = np.concatenate([[-1.0], -1 / (1 - last[:-1])])
        # p0 is 1 over a sum of at most 11 doubles: relative error ~1e-15; 1e-10 is generous.
        np.testing.assert_allclose(coords[:, 0], p0 * (size - 1) / (length - 1), rtol=1e-10)
    # A second call on images 2.. starts afresh: its image 0 samples at -1 again.
    ys2, _ = [a.asnumpy() for a in ops.att_sampler_grid(*nd(att_y[2:], att_x[2:]), h, w,
                                                         **kwargs)]
    np.testing.assert_allclose(ys2[0, 0], -1.0 * (h - 1) / (ly - 1), rtol=1e-12)
    np.testing.assert_array_equal(ys2[1:], ys[3:])
    out = ops.att_sampler(*nd(data, att_y, att_x), **kwargs).asnumpy()
    np.testing.assert_allclose(out, ref.sample(data, att_y, att_x, **kwargs), atol=1e-12)


def test_profile_sanitising():
    rng = np.random.RandomState(0)
    data = mx.nd.array(rng.uniform(size=(2, 1, 12, 12)))
    uniform = ops.att_sampler(data, mx.nd.ones((2, 12)), mx.nd.ones((2, 12)), scale=0.5)
    zeros = ops.att_sampler(data, mx.nd.zeros((2, 12)), mx.nd.zeros((2, 12)), scale=0.5)
    np.testing.assert_array_equal(zeros.asnumpy(), uniform.asnumpy())
    profile = rng.uniform(0.1, 1, (2, 12)).astype(np.float32)
    dirty = profile.copy()
    dirty[:, 3] = np.nan
    dirty[:, 5] = -2.0
    dirty[:, 7] = np.inf
    clean = profile.copy()
    clean[:, [3, 5, 7]] = 0
    a = ops.att_sampler(data, mx.nd.array(dirty), mx.nd.array(dirty), scale=0.5).asnumpy()
    b = ops.att_sampler(data, mx.nd.array(clean), mx.nd.array(clean), scale=0.5).asnumpy()
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    # A profile that is nothing but NaN means uniform too.
    nan = mx.nd.full((2, 12), np.nan)
    np.testing.assert_array_equal(ops.att_sampler(data, nan, nan, scale=0.5).asnumpy(),
                                  uniform.asnumpy())


def test_trailing_unit_axis_and_symbol_api():
    rng = np.random.RandomState(1)
    data, att_y, att_x = random_inputs(rng, 2, 3, 10, 8, 10, 8, np.float32)
    flat = ops.att_sampler(*nd(data, att_y, att_x), scale=0.5).asnumpy()
    column = ops.att_sampler(*nd(data, att_y[..., None], att_x[..., None]), scale=0.5).asnumpy()
    np.testing.assert_array_equal(flat, column)

    sym = ops.att_sampler(mx.sym.var('data'), mx.sym.var('att_y'), mx.sym.var('att_x'),
                          scale=0.5)
    _, out_shapes, _ = sym.infer_shape(data=data.shape, att_y=att_y.shape, att_x=att_x.shape)
    assert out_shapes == [(2, 3, 5, 4)]
    exe = sym.bind(mx.cpu(), args=dict(zip(('data', 'att_y', 'att_x'), nd(data, att_y, att_x))))
    np.testing.assert_array_equal(exe.forward()[0].asnumpy(), flat)


class SampleAfterConv(mx.gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = mx.gluon.nn.Conv2D(2, 3, padding=1, in_channels=3)
        self.sampler = ops.AttSampler(scale=0.5, dense=3.0)

    def hybrid_forward(self, F, x, att_y, att_x):
        return self.sampler(self.conv(x), att_y, att_x)


@pytest.mark.parametrize('hybrid', [None, dict(), dict(static_alloc=True, static_shape=True)])
def test_hybridized_block_trains(hybrid):
    mx.random.seed(0)
    rng = np.random.RandomState(2)
    data, att_y, att_x = random_inputs(rng, 2, 3, 12, 12, 12, 12, np.float32)
    net = SampleAfterConv()
    net.initialize(mx.init.Xavier())
    eager = net(*nd(data, att_y, att_x)).asnumpy()
    if hybrid is not None:
        net.hybridize(**hybrid)
    trainer = mx.gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    target = mx.nd.zeros((2, 2, 6, 6))
    losses = []
    for _ in range(3):
        with mx.autograd.record():
            out = net(*nd(data, att_y, att_x))
            loss = ((out - target) ** 2).mean()
        loss.backward()
        grad = net.conv.weight.grad().asnumpy()
        assert np.abs(grad).sum() > 0
        trainer.step(1)
        losses.append(loss.asscalar())
        if len(losses) == 1:
            np.testing.assert_allclose(out.asnumpy(), eager, rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0]


@pytest.mark.multiprocess
def test_export_and_reload_in_fresh_process(tmp_path):
    rng = np.random.RandomState(4)
    data, att_y, att_x = random_inputs(rng, 2, 3, 12, 12, 12, 12, np.float32)
    net = SampleAfterConv()
    net.initialize(mx.init.Xavier())
    net.hybridize()
    expected = net(*nd(data, att_y, att_x)).asnumpy()
    prefix = str(tmp_path / 'sampler_net')
    net.export(prefix)
    np.savez(tmp_path / 'inputs.npz', data=data, att_y=att_y, att_x=att_x, expected=expected)
    script = textwrap.dedent('''
        import sys, numpy as np, mxnet as mx
        from tasn_gluon import ops
        ops.load()
        prefix = sys.argv[1]
        z = np.load(prefix.rsplit('/', 1)[0] + '/inputs.npz')
        net = mx.gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data0', 'data1', 'data2'],
                                           prefix + '-0000.params')
        out = net(mx.nd.array(z['data']), mx.nd.array(z['att_y']), mx.nd.array(z['att_x']))
        np.testing.assert_array_equal(out.asnumpy(), z['expected'])
        print('same output')
    ''')
    assert 'AttSampler' in open(prefix + '-symbol.json').read()
    result = subprocess.run([sys.executable, '-c', script, prefix], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'same output' in result.stdout


def expect_error(fn, *words):
    with pytest.raises(mx.MXNetError) as info:
        fn().wait_to_read()
    message = str(info.value)
    for word in words:
        assert word in message, message


def test_bad_inputs_raise_named_errors():
    x = mx.nd.ones((2, 3, 8, 8))
    p = mx.nd.ones((2, 8))
    run = mx.nd.AttSampler
    expect_error(lambda: run(mx.nd.ones((3, 8, 8)), p, p, scale=0.5), 'data must be 4-D')
    expect_error(lambda: run(x, mx.nd.ones((3, 8)), p, scale=0.5), 'batch mismatch', 'att_y')
    expect_error(lambda: run(x, p, mx.nd.ones((2, 8, 2)), scale=0.5), 'att_x', 'shape')
    expect_error(lambda: run(x, mx.nd.ones((2, 1)), p, scale=0.5), 'profile lengths must be >= 2')
    expect_error(lambda: run(x, p, p, scale=0), 'scale must be')
    expect_error(lambda: run(x, p, p, scale=-1), 'scale must be')
    expect_error(lambda: run(x, p, p, scale=0.05), 'empty output')
    expect_error(lambda: run(x, p, p, scale=0.5, dense=0.5), 'dense must be')
    expect_error(lambda: run(x, p, p, scale=0.5, iters=-1), 'iters must be')
    expect_error(lambda: run(x, p, p, scale=0.5, colour='red'), "unknown attribute 'colour'")
    expect_error(lambda: run(x, p, p, scale='half'), "scale='half' does not parse")
    expect_error(lambda: run(x, p, p, scale=0.5, legacy='maybe'), 'legacy', 'boolean')
    expect_error(lambda: run(x, p, p), "'scale' is required")
    expect_error(lambda: run(x, p.astype('float64'), p, scale=0.5), 'one dtype')
    expect_error(lambda: run(x.astype('int32'), p, p, scale=0.5), 'float32 or float64')
    expect_error(lambda: mx.nd.AttSamplerGrid(p, p, scale=0.5), 'in_h and in_w')
    # The process survives and the operator still works afterwards.
    assert run(x, p, p, scale=0.5).shape == (2, 3, 4, 4)


def test_load_is_idempotent_and_absolute():
    assert ops.load() == ops.load() == ops.library_path()
    assert os.path.isabs(ops.library_path())
