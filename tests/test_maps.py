"""The maps -> profiles stage against NumPy: which maps are the same map (float64 keys at
float32 resolution; legacy: exact equality and the official mask), the structure and detail
maps, the draw, the profiles.

Tolerances. Arithmetic in float64 on a handful of values: 1e-9 relative covers it by orders
of magnitude. Except RESIZE_RTOL: MXNet's BilinearResize2D computes its source coordinates in
float32, also for float64 data, so an upsampled value is off by up to ~2 u32 (1.2e-7) of the
interpolation weight times the local difference of the map: 1e-5 relative bounds it for the
smooth random maps used here.
"""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd

from maps_reference import keys_np, resize_np, softmax, trilinear_np, unit_roundoff
from tasn_gluon.attention import ATTENTION_VARIANTS, TrilinearAttention, combine_maps
from tasn_gluon import maps as tmaps

RESIZE_RTOL = 1e-5
RTOL = 1e-9


@pytest.mark.parametrize('size', [9, 12])
def test_resize_is_align_corners(size):
    a = np.random.RandomState(3).rand(2, 1, 5, 7)
    got = tmaps.resize_bilinear(mx.nd, mx.nd.array(a, dtype='float64'), size).asnumpy()
    np.testing.assert_allclose(got, resize_np(a, size), rtol=RESIZE_RTOL, atol=1e-12)
    np.testing.assert_allclose(got[..., 0, 0], a[..., 0, 0])      # corners kept
    np.testing.assert_allclose(got[..., -1, -1], a[..., -1, -1])


def test_profiles_of_zero_maps_are_zero_not_nan():
    """An all-zero map gives all-zero profiles (the sampler: uniform), not 0/0."""
    outs = tmaps.MapsToProfiles(input_size=4)(mx.nd.zeros((1, 3, 4, 4)))
    for profile in outs[:4]:
        assert np.all(profile.asnumpy() == 0)


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
    """Per image, the groups of identical maps as lists of channels, in order of their first
    channel: the definition (the same array), by hand."""
    result = []
    for m in maps:
        groups = []
        for c in range(len(m)):
            for g in groups:
                if np.array_equal(m[g[0]], m[c]):      # copies of one array, not computed
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
    blk.cast('float64')
    if hybridize:
        blk.hybridize()
    dy, dx, sy, sx, dmap, smap, first = [o.asnumpy()
                                         for o in blk(mx.nd.array(m, dtype='float64'))]
    if official:
        # the sums of copies are sums of the same numbers in the same order: equal
        w = official_mask_np(m.reshape(3, 8, -1).sum(axis=2))
        structure = np.einsum('nc,nchw->nhw', w, m)
    else:
        structure = distinct_sum_np(m)                               # each distinct map once
    np.testing.assert_allclose(smap, resize_np(structure, 12) ** 2, rtol=RESIZE_RTOL)
    # inference: the detail map is the plain sum of all maps, not squared
    np.testing.assert_allclose(dmap, resize_np(m.sum(axis=1), 12), rtol=RESIZE_RTOL)
    expected_first = np.zeros(first.shape)
    for i, groups in enumerate(groups_np(m)):
        expected_first[i, [g[0] for g in groups]] = 1
    np.testing.assert_array_equal(first, expected_first)
    assert list(first.sum(axis=1)) == [2, 3, 4]
    for prof, amap, axis in ((sy, smap, 2), (sx, smap, 1), (dy, dmap, 2), (dx, dmap, 1)):
        ref = amap.max(axis=axis)
        np.testing.assert_allclose(prof, ref / ref.sum(1, keepdims=True), rtol=RTOL)


def test_official_mask_keeps_the_wrong_maps():
    """Channel sums [5, 5, 5, 1, 2] (groups {0, 1, 2}, {3}, {4}): sorted 1, 2, 5, 5, 5 gives
    the mask 1, 1, 1, 0, 0 in sorted order, which the official code applies to channels 0..4:
    map 5 three times, maps 1 and 2 dropped. The distinct sum takes 5, 1 and 2 once each."""
    sums = mx.nd.array([[5, 5, 5, 1, 2]], dtype='float64')
    np.testing.assert_array_equal(tmaps.official_structure_mask(mx.nd, sums).asnumpy(),
                                  [[1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(tmaps.exact_distinct_mask(mx.nd, sums).asnumpy(),
                                  [[1, 0, 0, 1, 1]])
    rs = np.random.RandomState(0)
    many = rs.randint(0, 6, (50, 20)).astype(np.float64)
    np.testing.assert_array_equal(tmaps.official_structure_mask(mx.nd, mx.nd.array(
        many, dtype='float64')).asnumpy(), official_mask_np(many))
    first = tmaps.exact_distinct_mask(mx.nd, mx.nd.array(many, dtype='float64')).asnumpy()
    for row, f in zip(many, first):
        expected = [1.0 if v not in row[:c] else 0.0 for c, v in enumerate(row)]
        np.testing.assert_array_equal(f, expected)


def _keys_with(rel_offsets, base=(100.0, 350.0, 420.0)):
    """(1, C, 3) float64 keys: channel c is ``base * (1 + rel_offsets[c])``."""
    k = np.array(base)[None, :] * (1 + np.asarray(rel_offsets, np.float64))[:, None]
    return mx.nd.array(k[None], dtype='float64')


def test_same_map_at_float32_resolution():
    """The rule of maps.distinct_mask: keys within eps32 = 2^-23 (plus twice the float64 bound,
    here 0) of each other are one map; farther apart, two. Offsets relative to channel 0:
    1e-12 (float64 rounding of identical maps), 5e-8 (below eps32: saturated relation rows),
    then 3e-7 and 1e-3 (different maps), and a channel equal to channel 3."""
    eps = tmaps.FLOAT32_EPS
    assert eps == np.finfo(np.float32).eps
    keys = _keys_with([0, 1e-12, 5e-8, 3e-7, 1e-3, 3e-7])
    zero = mx.nd.zeros((1, 1, 1), dtype='float64')
    first = tmaps.distinct_mask(mx.nd, keys, zero).asnumpy()
    np.testing.assert_array_equal(first, [[1, 0, 0, 1, 1, 0]])
    # one key differing is enough to tell two maps apart (mass equal, a moment not)
    k = np.array([[[100.0, 350.0, 420.0], [100.0, 350.0, 420.0 * (1 + 1e-5)]]])
    first = tmaps.distinct_mask(mx.nd, mx.nd.array(k, dtype='float64'), zero).asnumpy()
    np.testing.assert_array_equal(first, [[1, 1]])
    # the float64 bound widens the tolerance: 3e-7 apart with a bound of 1e-7, twice
    bound = mx.nd.full((1, 1, 1), 1e-7, dtype='float64')
    first = tmaps.distinct_mask(mx.nd, keys, bound).asnumpy()
    np.testing.assert_array_equal(first, [[1, 0, 0, 0, 1, 0]])


@pytest.mark.parametrize('scale', [1.0, 10.0, 100.0])
def test_key_error_bound_holds(scale):
    """The keys the default mode computes in float64 are within their bound E (relative) of
    the same keys computed in extended precision (np.longdouble, 64-bit significand: its own
    error is ~2000x below float64's) from the same spatial softmax N1 (computed in float32, an
    exact input of the float64 part), for features up to 100; and the bound is far below
    eps32, so that it never merges maps that float32 tells apart."""
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip('np.longdouble is no wider than float64 on this platform')
    rs = np.random.RandomState(11)
    x = np.maximum(rs.randn(2, 16, 7, 7), 0).astype(np.float32) * scale
    x[:, [3, 9]] = 0
    att = TrilinearAttention()
    x32 = mx.nd.array(x)
    rel = att.relation(mx.nd, x32, wide=x32.astype('float64'))
    got = tmaps.map_keys(mx.nd, x32.astype('float64'), rel).asnumpy()
    bound = tmaps.key_error_bound(mx.nd, x32, att).asnumpy().reshape(-1, 1)
    n1 = mx.nd.softmax(x32.reshape((0, 0, -1)) * 7, axis=-1).asnumpy().astype(np.longdouble)
    flat = x.reshape(2, 16, -1).astype(np.longdouble)
    exact_rel = softmax(np.einsum('ncp,ndp->ncd', n1, flat))
    exact = np.einsum('ncd,ndk->nck', exact_rel, keys_np(x.astype(np.longdouble)))
    err = (np.abs(got - exact) / exact).max(axis=-1).astype(np.float64)
    assert np.all(err <= bound), (err / bound).max()
    assert bound.max() < 1e-2 * tmaps.FLOAT32_EPS
    assert bound.min() > 0


def test_identical_rows_form_one_group_however_rounded():
    """Maps identical in exact arithmetic (zero and constant channels of X) form one group
    even when the float64 relation rows are rounded differently, which a BLAS does by where a
    row falls: the same features with each channel placed at another row of the product (a
    permutation) give the same number of groups, and channels of a group stay together."""
    rs = np.random.RandomState(12)
    x = np.maximum(rs.randn(1, 40, 6, 6), 0).astype(np.float32) * 0.5
    dead = [0, 7, 8, 9, 21, 22, 30, 39]
    x[:, dead] = 0
    x[:, [4, 15]] = 2.5                                   # constant channels: the dead map too
    # the other maps are well apart (no relation row saturates): 31 groups in truth
    keys = keys_np(trilinear_np(x.astype(np.float64)))[0]
    live = [c for c in range(40) if c not in dead + [4, 15]] + [0]
    gaps = [np.abs(keys[a] - keys[b]).max() / keys[a].max() for a in live for b in live if a < b]
    assert min(gaps) > 1e-4
    att = TrilinearAttention()
    for seed in range(4):
        order = np.random.RandomState(seed).permutation(40)
        rel, rel_dtype, first, _ = tmaps.map_groups(mx.nd, mx.nd.array(x[:, order]), att)
        first = first.asnumpy()[0]
        assert first.sum() == 40 - len(dead) - 2 + 1
        members = set(dead) | {4, 15}
        assert sum(first[np.flatnonzero(np.isin(order, sorted(members)))]) == 1


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('mode', ['record', 'train_mode'])
def test_maps_to_profiles_train_mode_draws_a_distinct_map(hybridize, mode):
    m = tied_maps(n=4)
    blk = tmaps.MapsToProfiles(input_size=12)
    blk.cast('float64')
    if hybridize:
        blk.hybridize()
    x = mx.nd.array(m, dtype='float64')
    ups = resize_np(m, 12)                                           # (N, C, 12, 12)
    firsts = [{g[0] for g in groups} for groups in groups_np(m)]

    def run(seed):
        mx.random.seed(seed)
        ctx = autograd.record() if mode == 'record' else autograd.train_mode()
        with ctx:
            out = blk(x)
        return [o.asnumpy() for o in out]

    chosen = []
    for seed in range(6):
        dy, dx, sy, sx, dmap, smap, first = run(seed)
        np.testing.assert_allclose(smap, resize_np(distinct_sum_np(m), 12) ** 2,
                                   rtol=RESIZE_RTOL)
        picks = []
        for i in range(m.shape[0]):
            err = np.abs(ups[i] - dmap[i][None]).max(axis=(1, 2)) / np.abs(ups[i]).max()
            assert err.min() < RESIZE_RTOL, 'detail map is not a single upsampled channel'
            picks.append(int(err.argmin()))
            assert picks[-1] in firsts[i]                           # a group's first channel
        chosen.append(picks)
        np.testing.assert_array_equal(run(seed)[4], dmap)            # follows mx.random.seed
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
    first = tmaps.exact_distinct_mask(mx.nd, mx.nd.array(sums))
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
    ref = np.einsum('nkc,nchw->nkhw', w, trilinear_np(x, variant))
    xs = mx.nd.array(x, dtype='float64')
    got = combine_maps(mx.nd, xs, mx.nd.array(w, dtype='float64'),
                       att.relation(mx.nd, xs)).asnumpy()
    np.testing.assert_allclose(got, ref, rtol=RTOL)
    # a float64 relation with float32 features (the default mode's path): weights @ rel in
    # float64, rounded once to float32 (u32 relative), then a float32 product of 6
    # non-negative terms: within (6 + 2) u32 of the same arithmetic in float64 from the same
    # float32 spatial softmax (an exact input of the float64 part)
    x32 = mx.nd.array(x, dtype='float32')
    rel = att.relation(mx.nd, x32, wide=x32.astype('float64'))
    wide = rel is not None                                  # the identity has no relation
    got = combine_maps(mx.nd, x32, mx.nd.array(w, dtype='float64' if wide else 'float32'), rel,
                       rel_dtype='float64' if wide else None, dtype='float32').asnumpy()
    flat = x.astype(np.float32).astype(np.float64).reshape(2, 6, -1)
    if variant in ('full', 'spatial'):
        left = mx.nd.softmax(x32.reshape((0, 0, -1)) * 7, axis=-1).asnumpy().astype(np.float64)
    else:
        left = flat
    relation = np.einsum('ncp,ndp->ncd', left, flat)
    if variant in ('full', 'relation'):
        relation = softmax(relation)
    ref32 = (np.einsum('nkc,ncp->nkp', w, np.einsum('ncd,ndp->ncp', relation, flat))
             if wide else np.einsum('nkc,ncp->nkp', w, flat)).reshape(got.shape)
    np.testing.assert_allclose(got, ref32, rtol=(6 + 2) * unit_roundoff(np.float32))


@pytest.mark.parametrize('variant', sorted(ATTENTION_VARIANTS))
def test_keys_of_features_equal_keys_of_maps(variant):
    """The keys formed from the features (rel @ (X W)) are those of the maps themselves, and
    zero channels of X, whose maps are the same map, form one group."""
    x = np.abs(np.random.RandomState(8).randn(2, 6, 4, 5))
    x[:, [1, 4]] = 0
    att = TrilinearAttention(variant=variant)
    xs = mx.nd.array(x, dtype='float64')
    rel = att.relation(mx.nd, xs)
    fused = tmaps.map_keys(mx.nd, xs, rel).asnumpy()
    maps = trilinear_np(x, variant)
    np.testing.assert_allclose(fused, keys_np(maps), rtol=RTOL)
    np.testing.assert_allclose(tmaps.channel_sums(mx.nd, xs, rel).asnumpy(),
                               maps.reshape(2, 6, -1).sum(axis=2), rtol=RTOL)
    first = tmaps.distinct_mask(mx.nd, mx.nd.array(fused, dtype='float64'),
                                tmaps.key_error_bound(mx.nd, xs, att)).asnumpy()
    assert np.all(first[:, 4] == 0) and np.all(first[:, 1] == 1)
    assert np.all(first.sum(axis=1) == 5)


@pytest.mark.parametrize('mode', ['predict', 'train'])
@pytest.mark.parametrize('official', [False, True])
def test_maps_to_profiles_from_features_equals_from_maps(mode, official):
    """The fused path (features X + combine_maps) gives the profiles of the full maps. The
    default mode with three zero channels of X (one map); legacy mode, whose exact equality
    would split such a group wherever the two paths round its sums differently, without."""
    x = np.abs(np.random.RandomState(7).randn(2, 8, 5, 5))
    if not official:
        x[:, [2, 3, 6]] = 0                                          # three maps the same
    att = TrilinearAttention()
    full = tmaps.MapsToProfiles(12, official_mask=official)
    fused = tmaps.MapsToProfiles(12, attention=att, official_mask=official)
    for blk in (full, fused):
        blk.cast('float64')
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
        np.testing.assert_allclose(a, b, rtol=RTOL)
    assert list(outs[0][6].sum(axis=1)) == ([8, 8] if official else [6, 6])
    sy, sx = fused.structure_profiles(mx.nd, mx.nd.array(x, dtype='float64'))
    np.testing.assert_allclose(sy.asnumpy(), outs[0][2], rtol=RTOL)
    np.testing.assert_allclose(sx.asnumpy(), outs[0][3], rtol=RTOL)
