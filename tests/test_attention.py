"""Trilinear attention (every variant) and the maps -> profiles stage against NumPy."""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd

from tasn_gluon.attention import ATTENTION_VARIANTS, TrilinearAttention, combine_maps
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


def tied_maps(seed=5, n=3, c=8, h=5):
    """Random maps in which channels repeat: image i has its channels drawn from a few
    distinct maps (as when channels of X are zero everywhere), in a scrambled order."""
    rs = np.random.RandomState(seed)
    out = np.empty((n, c, h, h))
    for i in range(n):
        distinct = rs.rand(2 + i, h, h)
        out[i] = distinct[rs.randint(0, len(distinct), c)]
        out[i, :len(distinct)] = distinct  # every distinct map is used at least once
        out[i] = out[i, rs.permutation(c)]
    return out


def groups_np(maps):
    """Per image, the tie groups as lists of channels (equal spatial sums), in order of their
    first channel: a reference written from the definition, by hand."""
    result = []
    for m in maps:
        sums = m.reshape(m.shape[0], -1).sum(axis=1)
        groups = []
        for c, v in enumerate(sums):
            for g in groups:
                if sums[g[0]] == v:
                    g.append(c)
                    break
            else:
                groups.append([c])
        result.append(groups)
    return result


def distinct_sum_np(maps):
    return np.stack([sum(m[g[0]] for g in groups) for m, groups in zip(maps, groups_np(maps))])


def official_mask_np(sums):
    """The official Structure_Att weights, transcribed: the mask of the sorted order applied
    in channel order."""
    out = []
    for a in sums:
        s = a[np.argsort(a)]
        out.append(np.concatenate([[1.0], (s[1:] != s[:-1]).astype(float)]))
    return np.stack(out)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('official', [False, True])
def test_maps_to_profiles_predict_mode(hybridize, official):
    m = tied_maps()
    blk = tmaps.MapsToProfiles(input_size=12, official_mask=official)
    if hybridize:
        blk.hybridize()
    dy, dx, sy, sx, dmap, smap, num = [o.asnumpy() for o in blk(mx.nd.array(m, dtype='float64'))]
    if official:
        w = official_mask_np(m.reshape(3, 8, -1).sum(axis=2))
        structure = np.einsum('nc,nchw->nhw', w, m)
    else:
        structure = distinct_sum_np(m)                               # each distinct map once
    np.testing.assert_allclose(smap, resize_np(structure, 12) ** 2, rtol=RESIZE_RTOL)
    # inference: the detail map is the plain sum of all maps, not squared
    np.testing.assert_allclose(dmap, resize_np(m.sum(axis=1), 12), rtol=RESIZE_RTOL)
    np.testing.assert_array_equal(num, [len(g) for g in groups_np(m)])
    assert list(num) == [2, 3, 4]
    for prof, amap, axis in ((sy, smap, 2), (sx, smap, 1), (dy, dmap, 2), (dx, dmap, 1)):
        ref = amap.max(axis=axis)
        np.testing.assert_allclose(prof, ref / ref.sum(1, keepdims=True), rtol=1e-9)


def test_official_mask_keeps_the_wrong_maps():
    """Channel sums [5, 5, 5, 1, 2] (groups {0, 1, 2}, {3}, {4}): sorted 1, 2, 5, 5, 5 gives
    the mask 1, 1, 1, 0, 0 in sorted order, which the official code applies to channels 0..4:
    map 5 three times, maps 1 and 2 dropped. The distinct sum takes 5, 1 and 2 once each."""
    sums = mx.nd.array([[5, 5, 5, 1, 2]], dtype='float64')
    np.testing.assert_array_equal(tmaps.official_structure_mask(mx.nd, sums).asnumpy(),
                                  [[1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(tmaps.distinct_mask(mx.nd, sums).asnumpy(), [[1, 0, 0, 1, 1]])
    rs = np.random.RandomState(0)
    many = rs.randint(0, 6, (50, 20)).astype(np.float64)
    np.testing.assert_array_equal(tmaps.official_structure_mask(mx.nd, mx.nd.array(
        many, dtype='float64')).asnumpy(), official_mask_np(many))
    first = tmaps.distinct_mask(mx.nd, mx.nd.array(many, dtype='float64')).asnumpy()
    for row, f in zip(many, first):
        expected = [1.0 if v not in row[:c] else 0.0 for c, v in enumerate(row)]
        np.testing.assert_array_equal(f, expected)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('mode', ['record', 'train_mode'])
def test_maps_to_profiles_train_mode_draws_a_distinct_map(hybridize, mode):
    m = tied_maps(n=4)
    blk = tmaps.MapsToProfiles(input_size=12)
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
        dy, dx, sy, sx, dmap, smap, num = run(seed)
        np.testing.assert_allclose(smap, resize_np(distinct_sum_np(m), 12) ** 2,
                                   rtol=RESIZE_RTOL)
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


def test_detail_draw_is_uniform_over_distinct_maps():
    """Channel sums 0, 0, 0, 0, 0, 1, 2 (groups of 5, 1 and 1 channels): each group is drawn a
    third of the time, as the official draw over distinct sums does; a draw over all channels
    would pick the first group 5/7 of the time. 3000 images: the count of a group is
    binomial(3000, 1/3), standard deviation 26, so 1000 +- 130 (5 sigma)."""
    n = 3000
    sums = np.tile([0, 0, 0, 0, 0, 1, 2], (n, 1)).astype(np.float32)
    first = tmaps.distinct_mask(mx.nd, mx.nd.array(sums))
    mx.random.seed(7)
    with autograd.train_mode():
        w = tmaps.detail_weights(mx.nd, first, mx.nd.ones((n, 1)))
    w = w.asnumpy()
    assert np.all(w.sum(axis=1) == 1)
    counts = np.bincount(w.argmax(axis=1), minlength=7)
    assert set(np.nonzero(counts)[0]) == {0, 5, 6}                  # a group's first channel
    assert np.all(np.abs(counts[[0, 5, 6]] - n / 3) < 130), counts
    # given channels are taken in either mode (pictures)
    given = tmaps.detail_weights(mx.nd, first[:2], mx.nd.zeros((2, 1)),
                                 channel=mx.nd.array([3, 6])).asnumpy()
    np.testing.assert_array_equal(given.argmax(axis=1), [3, 6])


def test_train_indicator():
    ref = mx.nd.ones((3, 2))
    assert np.all(tmaps.train_indicator(mx.nd, ref).asnumpy() == 0)
    with autograd.train_mode():
        assert np.all(tmaps.train_indicator(mx.nd, ref).asnumpy() == 1)
    with autograd.record(train_mode=False):
        assert np.all(tmaps.train_indicator(mx.nd, ref).asnumpy() == 0)


def test_no_gradient_through_maps():
    x = mx.nd.array(tied_maps(n=2))
    x.attach_grad()
    blk = tmaps.MapsToProfiles(input_size=12)
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
    xs = mx.nd.array(x, dtype='float64')
    got = combine_maps(mx.nd, xs, mx.nd.array(w, dtype='float64'),
                       att.relation(mx.nd, xs)).asnumpy()
    ref = np.einsum('nkc,nchw->nkhw', w, trilinear_np(x, variant))
    np.testing.assert_allclose(got, ref, rtol=1e-10)


@pytest.mark.parametrize('variant', sorted(ATTENTION_VARIANTS))
def test_channel_sums_of_features_equal_sums_of_maps(variant):
    """Zero channels of X give identical maps: their sums tie exactly on the fused path too."""
    x = np.abs(np.random.RandomState(8).randn(2, 6, 4, 5))
    x[:, [1, 4]] = 0
    att = TrilinearAttention(variant=variant)
    xs = mx.nd.array(x, dtype='float64')
    fused = tmaps.channel_sums(mx.nd, xs, att.relation(mx.nd, xs)).asnumpy()
    maps = trilinear_np(x, variant)
    np.testing.assert_allclose(fused, maps.reshape(2, 6, -1).sum(axis=2), rtol=1e-10)
    if variant != 'identity':  # the identity's zero channels are zero maps: tied as well
        assert np.all(fused[:, 1] == fused[:, 4])
    assert np.all(tmaps.distinct_mask(mx.nd, mx.nd.array(fused)).asnumpy()[:, 4] == 0)


@pytest.mark.parametrize('mode', ['predict', 'train'])
@pytest.mark.parametrize('official', [False, True])
def test_maps_to_profiles_from_features_equals_from_maps(mode, official):
    """The fused path (features X + combine_maps) gives the profiles of the full maps."""
    x = np.abs(np.random.RandomState(7).randn(2, 8, 5, 5))
    x[:, [2, 3, 6]] = 0                                              # three tied maps
    att = TrilinearAttention()
    full = tmaps.MapsToProfiles(12, official_mask=official)
    fused = tmaps.MapsToProfiles(12, attention=att, official_mask=official)
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
    assert list(outs[0][6]) == [6, 6]
    sy, sx = tmaps.structure_profiles(mx.nd, mx.nd.array(x, dtype='float64'), 12, attention=att,
                                      official_mask=official)
    np.testing.assert_allclose(sy.asnumpy(), outs[0][2], rtol=1e-9)
    np.testing.assert_allclose(sx.asnumpy(), outs[0][3], rtol=1e-9)
