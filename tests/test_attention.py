"""Trilinear attention (every variant) and the maps -> profiles stage against NumPy."""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd

from tasn_gluon.attention import TrilinearAttention, ATTENTION_VARIANTS
from tasn_gluon import maps as tmaps


def _softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def trilinear_np(x, variant='full', scale=7.0):
    """Reference: M = softmax_rows(softmax_hw(s X) X^T) X per image, and the ablations."""
    if variant == 'identity':
        return x.copy()
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        X = x[i].reshape(c, h * w)
        left = _softmax(scale * X, axis=1) if variant in ('full', 'spatial') else X
        R = left @ X.T
        if variant in ('full', 'relation'):
            R = _softmax(R, axis=1)
        out[i] = (R @ X).reshape(c, h, w)
    return out


def resize_np(a, size):
    """Align-corners bilinear resize of (..., H, W) to (..., size, size)."""
    h, w = a.shape[-2:]

    def table(n_in):
        pos = np.arange(size) * ((n_in - 1) / (size - 1) if size > 1 else 0.0)
        lo = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    ylo, yhi, fy = table(h)
    xlo, xhi, fx = table(w)
    rows = a[..., ylo, :] * (1 - fy)[:, None] + a[..., yhi, :] * fy[:, None]
    return rows[..., xlo] * (1 - fx) + rows[..., xhi] * fx


@pytest.mark.parametrize('variant', sorted(ATTENTION_VARIANTS))
@pytest.mark.parametrize('hybridize', [False, True])
def test_trilinear_matches_numpy(variant, hybridize):
    rng = np.random.RandomState(0)
    x = np.abs(rng.randn(2, 6, 4, 5))  # non-negative, like the ReLU'd features X
    att = TrilinearAttention(variant=variant)
    if hybridize:
        att.hybridize()
    out = att(mx.nd.array(x, dtype='float64')).asnumpy()
    assert out.dtype == np.float64 and out.shape == x.shape
    np.testing.assert_allclose(out, trilinear_np(x, variant), rtol=1e-10, atol=1e-12)


def test_trilinear_scale_and_bad_variant():
    x = np.abs(np.random.RandomState(1).randn(1, 3, 2, 3))
    out = TrilinearAttention(softmax_scale=2.5)(mx.nd.array(x, dtype='float64')).asnumpy()
    np.testing.assert_allclose(out, trilinear_np(x, 'full', 2.5), rtol=1e-10)
    with pytest.raises(ValueError, match='variant'):
        TrilinearAttention(variant='bogus')


def test_trilinear_full_rows_are_convex_combinations():
    # softmax rows sum to 1: every map is a convex combination of the feature channels
    x = np.abs(np.random.RandomState(2).randn(1, 5, 3, 3))
    out = TrilinearAttention()(mx.nd.array(x, dtype='float64')).asnumpy()
    assert out.min() >= x.min() - 1e-12
    assert (out.reshape(5, -1).max(axis=1) <= x.reshape(5, -1).max(axis=0).max() + 1e-12).all()


# MXNet's BilinearResize2D computes its source coordinates in float32, also for float64 data
RESIZE_RTOL = 1e-5


@pytest.mark.parametrize('size', [9, 12])
def test_resize_is_align_corners(size):
    a = np.random.RandomState(3).rand(2, 1, 5, 7)
    got = tmaps.resize_bilinear(mx.nd, mx.nd.array(a, dtype='float64'), size).asnumpy()
    np.testing.assert_allclose(got, resize_np(a, size), rtol=RESIZE_RTOL, atol=1e-12)
    np.testing.assert_allclose(got[..., 0, 0], a[..., 0, 0])      # corners kept
    np.testing.assert_allclose(got[..., -1, -1], a[..., -1, -1])


def test_marginal_profiles():
    a = np.random.RandomState(4).rand(3, 6, 8)
    row, col = tmaps.marginal_profiles(mx.nd, mx.nd.array(a, dtype='float64'), (6, 8))
    r, c = a.max(axis=2), a.max(axis=1)
    np.testing.assert_allclose(row.asnumpy(), r / r.sum(1, keepdims=True), rtol=1e-9)
    np.testing.assert_allclose(col.asnumpy(), c / c.sum(1, keepdims=True), rtol=1e-9)
    # an all-zero map gives an all-zero (sampler: uniform) profile, not NaN
    row, col = tmaps.marginal_profiles(mx.nd, mx.nd.zeros((1, 4, 4)), 4)
    assert np.all(row.asnumpy() == 0) and np.all(col.asnumpy() == 0)


def _maps(seed=5, n=3, c=8, h=5):
    return np.random.RandomState(seed).rand(n, c, h, h).astype(np.float64)


@pytest.mark.parametrize('hybridize', [False, True])
def test_maps_to_profiles_predict_mode(hybridize):
    m = _maps()
    blk = tmaps.MapsToProfiles(channels=8, input_size=12)
    if hybridize:
        blk.hybridize()
    dy, dx, sy, sx, dmap, smap = [o.asnumpy() for o in blk(mx.nd.array(m, dtype='float64'))]
    s_up = resize_np(m.sum(axis=1), 12)
    np.testing.assert_allclose(smap, s_up ** 2, rtol=RESIZE_RTOL)    # summed, upsampled, squared
    np.testing.assert_allclose(dmap, s_up, rtol=RESIZE_RTOL)         # inference: sum, not squared
    for prof, amap, axis in ((sy, smap, 2), (sx, smap, 1), (dy, dmap, 2), (dx, dmap, 1)):
        ref = amap.max(axis=axis)
        np.testing.assert_allclose(prof, ref / ref.sum(1, keepdims=True), rtol=1e-9)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('mode', ['record', 'train_mode'])
def test_maps_to_profiles_train_mode_picks_one_channel(hybridize, mode):
    m = _maps(n=4)
    blk = tmaps.MapsToProfiles(channels=8, input_size=12)
    if hybridize:
        blk.hybridize()
    x = mx.nd.array(m, dtype='float64')
    ups = resize_np(m, 12)                                           # (N, C, 12, 12)

    def run(seed):
        mx.random.seed(seed)
        ctx = autograd.record() if mode == 'record' else autograd.train_mode()
        with ctx:
            out = blk(x)
        return [o.asnumpy() for o in out]

    chosen = []
    for seed in range(6):
        dy, dx, sy, sx, dmap, smap = run(seed)
        np.testing.assert_allclose(smap, resize_np(m.sum(axis=1), 12) ** 2, rtol=RESIZE_RTOL)
        picks = []
        for i in range(m.shape[0]):
            err = np.abs(ups[i] - dmap[i][None]).max(axis=(1, 2))
            assert err.min() < 1e-5, 'detail map is not a single upsampled channel'
            picks.append(int(err.argmin()))
        chosen.append(picks)
        assert np.allclose(run(seed)[4], dmap)                       # follows mx.random.seed
    assert len({tuple(p) for p in chosen}) > 1                      # but is random
    # in predict mode it is the channel sum again, after training-mode calls
    np.testing.assert_allclose(blk(x)[4].asnumpy(), resize_np(m.sum(axis=1), 12),
                               rtol=RESIZE_RTOL)


def test_random_channel_is_uniform():
    c, n = 4, 2000
    m = np.zeros((n, c, 2, 2))
    m[:, :, 0, 0] = np.arange(c)                                     # channel k has value k
    mx.random.seed(7)
    with autograd.train_mode():
        w = tmaps.channel_weights(mx.nd, mx.nd.array(m), c).asnumpy()
    assert np.all(w.sum(axis=1) == 1)
    counts = np.bincount(w.argmax(axis=1), minlength=c)
    assert counts.min() > n / c * 0.8, counts


def test_train_indicator():
    ref = mx.nd.ones((3, 2))
    assert np.all(tmaps.train_indicator(mx.nd, ref).asnumpy() == 0)
    with autograd.train_mode():
        assert np.all(tmaps.train_indicator(mx.nd, ref).asnumpy() == 1)
    with autograd.record(train_mode=False):
        assert np.all(tmaps.train_indicator(mx.nd, ref).asnumpy() == 0)


def test_no_gradient_through_maps():
    x = mx.nd.array(_maps(n=2))
    x.attach_grad()
    blk = tmaps.MapsToProfiles(channels=8, input_size=12)
    with autograd.record():
        out = blk(x)
        total = sum(o.sum() for o in out)
    total.backward()
    assert np.all(x.grad.asnumpy() == 0)


@pytest.mark.parametrize('variant', sorted(ATTENTION_VARIANTS))
def test_combine_equals_weighted_sum_of_maps(variant):
    rng = np.random.RandomState(6)
    x = np.abs(rng.randn(2, 6, 4, 5))
    w = rng.rand(2, 3, 6)
    att = TrilinearAttention(variant=variant)
    got = att.combine(mx.nd, mx.nd.array(x, dtype='float64'),
                      mx.nd.array(w, dtype='float64')).asnumpy()
    ref = np.einsum('nkc,nchw->nkhw', w, trilinear_np(x, variant))
    np.testing.assert_allclose(got, ref, rtol=1e-10)


@pytest.mark.parametrize('mode', ['predict', 'train'])
def test_maps_to_profiles_from_features_equals_from_maps(mode):
    """The fused path (features X + attention.combine) gives the profiles of the full maps."""
    x = np.abs(np.random.RandomState(7).randn(2, 8, 5, 5))
    att = TrilinearAttention()
    full = tmaps.MapsToProfiles(8, 12)
    fused = tmaps.MapsToProfiles(8, 12, attention=att)
    maps = att(mx.nd.array(x, dtype='float64'))
    outs = []
    for blk, inp in ((full, maps), (fused, mx.nd.array(x, dtype='float64'))):
        mx.random.seed(3)
        if mode == 'train':
            with autograd.train_mode():
                outs.append([o.asnumpy() for o in blk(inp)])
        else:
            outs.append([o.asnumpy() for o in blk(inp)])
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    sy, sx = tmaps.structure_profiles(mx.nd, mx.nd.array(x, dtype='float64'), 12, attention=att)
    np.testing.assert_allclose(sy.asnumpy(), outs[0][2], rtol=1e-9)
    np.testing.assert_allclose(sx.asnumpy(), outs[0][3], rtol=1e-9)
