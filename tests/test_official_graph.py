"""The official TASN graph's inference, head by head: ``tasn_gluon.convert.official_tasn(...,
legacy_sampler=True)`` against the independent reference ``official_reference.py`` (MXNet Symbols
with the official parameter names, NumPy trilinear attention, Structure_Att / Detail_Att and
AttSampler kernel), on an official-format checkpoint made here from
``symbols/official_checkpoint_params.tsv`` with seeded weights; and the default mode's groups of
maps on the same weights.

Both sides of the head-by-head comparison compute in float64. On randomly initialised weights the
graph is ill-conditioned in float32, and the official structure mask compares map sums for
exact equality: sums of maps that are equal in exact arithmetic (the 480 channels of X that are
zero everywhere) come out equal or not depending on how the BLAS rounds each row. So the
reference computes each distinct map once (equal by construction), takes the official mask of
its own float64 sums, and that mask is given to the project's graph (the one function
replaced, ``maps.official_structure_mask``); the function itself is checked separately on the
reference's sums. Everything else of the project's forward runs as it is.

``pytest -s tests/test_official_graph.py`` prints, per head and image, the figure the tests
assert: max |ours - reference| / max |reference| over the classes of that head and image.
"""
import numpy as np
import pytest
import mxnet as mx

import official_reference as ref
from conftest import official_parameters
from maps_reference import keys_np, unit_roundoff
from tasn_gluon import maps as tmaps

NUM_CLASSES = 200
N_IMAGES = 3
LIVE_CHANNELS = 32   # channels of X that are not zero everywhere (see _seeded_arrays)

# Tolerance of the float64 head-by-head comparison, relative to the largest |logit| of the head
# and image. The two sides are the same float64 arithmetic in other summation orders (MXNet's
# convolutions in a Symbol executor there, in Gluon blocks here; the sampler grid in double on
# both). A float64 dot product of K terms in any order is the exact one with each product
# perturbed by at most K u (u = 1.1e-16); the longest is K = 4608 (3x3 over 512 channels), so
# each of the ~70 layers perturbs by at most 5e-13 relative. This graph amplifies a relative
# perturbation by up to ~1e5 on random weights (its float32 ResNet-50 gradients move 10% when
# its sampled images move by 1e-6): 70 * 5e-13 * 1e5 = 4e-6 on each side. TOL = 1e-4 covers
# that 10x over and stays 60x below the smallest effect of either official defect on these
# weights (6e-3), so it hides neither.
TOL = 1e-4
# Distinct map sums of an image lie this far apart, relative to its largest sum (float64, the
# reference's own sums): the official mask is then one of well-separated values.
MIN_GAP = 1e-6
# The default mode's live maps must be this far from each other and from the dead map
# (relative key distance) for the true groups to be known: 8000x eps32, far beyond what float32
# features from another kernel (X within ~1e-6 relative) could move a key.
WELL_APART = 1e-3


# --------------------------------------------------------------- checkpoint and images

def _seeded_arrays(seed=0):
    """{'arg:NAME' / 'aux:NAME': float32 array} for every row of the TSV.

    Convolutions: gaussian, std sqrt(2 / fan_in) (Xavier gaussian, in, 2), times 0.5 for the
    last conv of every residual branch (so that the residual stream does not double its
    variance at every unit) and 0.3 for the two multi-dilation weights (X of order 1: the
    spatial softmax of 7 X is peaked, not one-hot). FCs: gaussian std sqrt(1 / fan_in). BN:
    gamma U(0.9, 1.1), beta N(0, 0.05), moving mean N(0, 0.05), moving var U(0.8, 1.2); the two
    bn_data: moving mean U(-3, 3), var U(2500, 3600) (the input is raw mean-subtracted RGB) and
    gamma U(0.5, 1.5), which the official fix_gamma ignores. Biases N(0, 0.05), except
    att_conv2_bias: -100 outside LIVE_CHANNELS seeded channels, so those channels of X are zero
    everywhere, their attention maps tie, and the official structure mask drops maps.
    """
    rng = np.random.RandomState(seed)
    live = np.random.RandomState(seed + 1).permutation(ref.NUM_MAPS)[:LIVE_CHANNELS]
    arrays = {}
    for kind, name, shape in official_parameters():
        fixed_input_bn = name.startswith(('bn_data', 'att_bn_data'))
        if kind == 'aux' and name.endswith('_moving_mean'):
            v = rng.uniform(-3, 3, shape) if fixed_input_bn else rng.normal(0, 0.05, shape)
        elif kind == 'aux' and name.endswith('_moving_var'):
            v = rng.uniform(2500, 3600, shape) if fixed_input_bn else rng.uniform(0.8, 1.2, shape)
        elif name.endswith('_gamma'):
            v = rng.uniform(0.5, 1.5, shape) if fixed_input_bn else rng.uniform(0.9, 1.1, shape)
        elif name.endswith(('_beta', '_bias')):
            v = rng.normal(0, 0.05, shape)
            if name == 'att_conv2_bias':
                dead = np.ones(shape, bool)
                dead[live] = False
                v[dead] = -100.0
        elif name.endswith('_weight') and len(shape) == 4:
            gain = 1.0
            if name in ('att_conv1_weight', 'att_conv2_weight'):
                gain = 0.3
            elif name.endswith('_conv3_weight') or (name.startswith('att_stage') and
                                                    name.endswith('_conv2_weight')):
                gain = 0.5
            v = rng.normal(0, gain * np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif name.endswith('_weight'):
            v = rng.normal(0, np.sqrt(1.0 / shape[1]), shape)
        else:
            raise AssertionError('no initialisation for %s:%s' % (kind, name))
        arrays['%s:%s' % (kind, name)] = v.astype(np.float32)
    return arrays


def _seeded_images(n=N_IMAGES, seed=1):
    """(n, 3, 512, 512) float32 mean-subtracted RGB: per image and channel a grey level with six
    low-frequency cosines, plus three coloured gaussian blobs, clipped to 0..255."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:ref.INPUT_SIZE, 0:ref.INPUT_SIZE] / float(ref.INPUT_SIZE)
    mean = np.array([123.68, 116.779, 103.939])[:, None, None]
    images = []
    for _ in range(n):
        im = np.full((3,) + yy.shape, 120.0)
        for c in range(3):
            for _ in range(6):
                fy, fx = rng.uniform(0.5, 4, 2)
                im[c] += rng.uniform(10, 30) * np.cos(2 * np.pi * (fy * yy + fx * xx) +
                                                      rng.uniform(0, 2 * np.pi))
        for _ in range(3):
            cy, cx = rng.uniform(0.2, 0.8, 2)
            s = rng.uniform(0.05, 0.15)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
            im += rng.uniform(-100, 100, 3)[:, None, None] * blob
        images.append(np.clip(im, 0, 255) - mean)
    return np.asarray(images, dtype=np.float32)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('official') / 'tasn-0000.params')
    mx.nd.save(path, {k: mx.nd.array(v) for k, v in _seeded_arrays().items()})
    return path


@pytest.fixture(scope='module')
def images():
    return _seeded_images()


@pytest.fixture(scope='module')
def reference(checkpoint):
    return ref.OfficialTASNReference(checkpoint, NUM_CLASSES)


@pytest.fixture(scope='module')
def attention(reference, images):
    """The reference's attention net and maps, float64."""
    return reference.attention(images, np.float64)


@pytest.fixture(scope='module')
def official_mask(attention):
    """(N, C) the official Structure_Att mask of the reference's own float64 sums."""
    return np.stack([ref.structure_weights(a, 'official', np.float64)
                     for a in attention['sums']])


@pytest.fixture(scope='module')
def official(reference, images, attention):
    """The reference with the official arithmetic (mask; batch-contiguous C[-1]), float64."""
    return reference.heads(images, attention, structure_mask='official', c_minus_one='batch')


@pytest.fixture(scope='module')
def ours(checkpoint, images, official_mask):
    """official_tasn(legacy_sampler=True) in float64, with the reference's official mask given
    to its graph (module docstring)."""
    from tasn_gluon.convert import official_tasn
    model = official_tasn(checkpoint, NUM_CLASSES, 224, legacy_sampler=True)
    model.cast('float64')
    assert not mx.autograd.is_training()  # predict mode: the detail map is the channel sum

    def given_mask(F, sums):
        assert sums.shape == official_mask.shape
        return mx.nd.array(official_mask, dtype=sums.dtype, ctx=sums.context)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tmaps, 'official_structure_mask', given_mask)
        outs = model(mx.nd.array(images, dtype='float64'))
    return {h: o.asnumpy() for h, o in zip(ref.HEADS, outs)}


# -------------------------------------------------------------------------------- helpers

def _relative_errors(ours, theirs):
    """{head: (N,) max |ours - theirs| / max |theirs| per image}."""
    return {h: np.abs(ours[h] - theirs[h]).max(axis=1) / np.abs(theirs[h]).max(axis=1)
            for h in ref.HEADS}


def _print_table(title, errors):
    n = len(next(iter(errors.values())))
    print('\n%s\nmax |ours - reference| / max |reference logit|, per head and image (tol %.0e)'
          % (title, TOL))
    print('%-11s' % 'head' + ''.join('%12s' % ('image %d' % (i + 1)) for i in range(n)))
    for h in ref.HEADS:
        print('%-11s' % h + ''.join('%12.2e' % v for v in errors[h]))


def _failures(errors):
    return ['%s image %d: %.2e' % (h, i + 1, v) for h in ref.HEADS
            for i, v in enumerate(errors[h]) if not v <= TOL]


def _dead_channels(features):
    """Per image, the channels of X that are zero everywhere."""
    n, c = features.shape[:2]
    return [np.flatnonzero(f.reshape(c, -1).max(axis=1) == 0) for f in features]


def _assert_well_conditioned_ties(attention):
    """The reference's ties are exactly the channels of X that are zero everywhere (whose maps
    are one map by construction), and its distinct sums lie MIN_GAP apart."""
    for i, (a, dead) in enumerate(zip(attention['sums'], _dead_channels(attention['features']))):
        values, counts = np.unique(a, return_counts=True)
        tied = np.flatnonzero(np.isin(a, values[counts > 1]))
        assert np.array_equal(tied, dead), 'image %d: ties other than the dead channels' % i
        gaps = np.diff(values)
        assert gaps.min() >= MIN_GAP * np.abs(a).max(), \
            'image %d: distinct map sums only %.2e apart (relative)' % (
                i, gaps.min() / np.abs(a).max())


# ---------------------------------------------------------------------------------- tests

def test_reference_reads_every_official_parameter(reference):
    """The reference's two Symbols use exactly the TSV's names, with its shapes."""
    rows = official_parameters()
    assert reference.used_names(N_IMAGES) == {'%s:%s' % (k, n) for k, n, _ in rows}
    expected = {'%s:%s' % (k, n): s for k, n, s in rows}
    att_sym, pm_sym = reference.symbols(N_IMAGES)
    for sym, size in ((att_sym, ref.INPUT_SIZE), (pm_sym, 224)):
        n = N_IMAGES if sym is att_sym else 2 * N_IMAGES
        arg_shapes, _, aux_shapes = sym.infer_shape(data=(n, 3, size, size))
        for kind, names, shapes in (('arg', sym.list_arguments(), arg_shapes),
                                    ('aux', sym.list_auxiliary_states(), aux_shapes)):
            for name, shape in zip(names, shapes):
                if name != 'data':
                    assert tuple(shape) == expected['%s:%s' % (kind, name)], name


def test_reference_sampler_worked_example():
    """The reference's AttSampler reproduces the spec's worked example (legacy, uniform
    profiles, 512 -> 224) and the batch-contiguous C[-1] of image 1."""
    uniform = np.full((2, 512), 1.0 / 512, np.float32)
    ys, xs = ref.sampler_grid(uniform, uniform, 512, 512)
    np.testing.assert_array_equal(ys, xs)
    np.testing.assert_allclose(ys[0, :3], [-1.0, 0.0057, 2.297], atol=1e-3)
    np.testing.assert_allclose(ys[0, -2:], [506.417, 508.709], atol=1e-3)
    np.testing.assert_allclose(np.diff(ys[0, 1:]).mean(), 2.2915, atol=1e-4)
    # image 1 reads image 0's C[L-1] = 1 + 511 * 224 / 512 as C[-1]
    np.testing.assert_allclose(ys[1, 0], -1.0 / (1.0 - (1 + 511 * 224 / 512.0)), atol=2e-5)
    np.testing.assert_array_equal(ys[1, 1:], ys[0, 1:])
    zero, _ = ref.sampler_grid(uniform, uniform, 512, 512, c_minus_one='zero')
    np.testing.assert_array_equal(zero[1], zero[0])


def test_reference_structure_mask_and_detail_candidates():
    """The official Structure_Att mask on a small example: sums (3, 1, 1, 2, 5, 1) sort to
    (1, 1, 1, 2, 3, 5), keep_sorted = (1, 0, 0, 1, 1, 1), applied in channel order: channels 1
    and 2 are dropped (the tie group is 1, 2, 5), channel 5 is kept. The training draw picks
    among one member of each tie group and 3, 0, 4."""
    a = np.array([3, 1, 1, 2, 5, 1], np.float32)
    np.testing.assert_array_equal(ref.keep_sorted(a), [1, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(ref.structure_weights(a, 'official'), [1, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(ref.structure_weights(a, 'none'), np.ones(6))
    cands = ref.detail_candidates(a)
    assert len(cands) == 4 and set(cands) - {1, 2, 5} == {0, 3, 4}
    np.testing.assert_array_equal(np.flatnonzero(ref.structure_weights(a, 'distinct')),
                                  np.sort(cands))
    rng = np.random.RandomState(0)
    draws = [ref.draw_detail_channel(a, rng) for _ in range(400)]
    assert set(draws) == set(cands)
    maps = np.arange(6 * 4, dtype=np.float32).reshape(1, 6, 2, 2)
    got = ref.structure_map(maps, a[None], 'official', size=2)
    np.testing.assert_allclose(got[0], np.square(maps[0, [0, 3, 4, 5]].sum(axis=0)))


def test_seeded_checkpoint_exercises_the_mask(attention, official):
    """Preconditions of the comparison: finite, non-degenerate logits; ties among the map
    sums (so the official mask drops maps), all of them explained."""
    for h in ref.HEADS:
        z = official[h]
        assert z.shape == (N_IMAGES, NUM_CLASSES) and np.isfinite(z).all(), h
        assert (z.std(axis=1) > 0.05 * np.abs(z).max(axis=1)).all(), h
    distinct = [len(np.unique(a)) for a in attention['sums']]
    assert min(distinct) < ref.NUM_MAPS, distinct
    kept = [int(ref.structure_weights(a).sum()) for a in attention['sums']]
    assert min(kept) < ref.NUM_MAPS, kept
    _assert_well_conditioned_ties(attention)
    # the three images differ, and so do their logits
    assert all(np.abs(official['master_aux'][i] - official['master_aux'][j]).max() > 1e-3
               for i in range(N_IMAGES) for j in range(i))


def test_official_structure_mask_on_the_reference_sums(attention, official_mask):
    """The project's official_structure_mask gives the official mask exactly on the
    reference's sums (the mask the comparison below gives the project's graph)."""
    got = tmaps.official_structure_mask(mx.nd, mx.nd.array(attention['sums'], dtype='float64'))
    np.testing.assert_array_equal(got.asnumpy(), official_mask)
    assert (official_mask.sum(axis=1) < ref.NUM_MAPS).all()


def test_official_graph_heads_match_reference(ours, official):
    """Every head of official_tasn(legacy_sampler=True) on every image equals the official
    graph's (the reference with the official mask and the batch-contiguous C[-1]) to TOL, in
    float64."""
    errors = _relative_errors(ours, official)
    _print_table('official_tasn(legacy_sampler=True) vs the official graph, float64 (reference: '
                 "structure_mask='official', c_minus_one='batch')", errors)
    failures = _failures(errors)
    assert not failures, 'heads that differ from the official graph: ' + ', '.join(failures)


def test_default_mode_finds_the_true_groups(checkpoint, images):
    """The default mode on weights whose groups are known (about 480 channels of X zero
    everywhere, one map; the live channels' maps asserted WELL_APART in float64): in float32,
    num_distinct is the number of true groups and the structure map is the float64
    reference's within the bound of its float32 arithmetic. The float64 reference starts from
    the model's own float32 features X, so only the maps' arithmetic differs: weights @ rel
    rounded once to float32 (u), a float32 product of C = 512 non-negative terms (C u), the
    resize (4 u: the same interpolation weights on both sides), the square (2x the relative
    error, + u): (2 C + 11) u, plus the float64 error of the keys' relation, below 1e-9."""
    from tasn_gluon.convert import official_tasn
    model = official_tasn(checkpoint, NUM_CLASSES, 224, legacy_sampler=False)
    exp = model.explain(mx.nd.array(images))
    feats = exp['features'].asnumpy().astype(np.float64)
    maps = ref.trilinear_attention(feats, np.float64)
    for i, dead in enumerate(_dead_channels(feats)):
        groups = [dead[0]] + [c for c in range(ref.NUM_MAPS) if c not in set(dead)]
        assert len(dead) > 400 and len(groups) > LIVE_CHANNELS // 2
        keys = keys_np(maps[i:i + 1])[0][groups]
        a, b = keys[:, None], keys[None, :]
        gaps = (np.abs(a - b) / np.maximum(a, b)).max(axis=-1)
        assert gaps[np.triu_indices(len(groups), 1)].min() > WELL_APART
        assert exp['num_distinct'][i].asscalar() == len(groups)
        first = np.flatnonzero(exp['distinct'][i].asnumpy())
        assert len(first) == len(groups) and first[0] == min(dead[0], first[0]) and \
            set(first) - set(dead) == set(groups[1:])
        small = maps[i][groups].sum(axis=0)
        truth = ref.resize_align_corners(small[None], ref.INPUT_SIZE, np.float64)[0] ** 2
        assert truth.min() > 0
        bound = (2 * ref.NUM_MAPS + 11) * unit_roundoff(np.float32) + 1e-9
        err = np.abs(exp['structure_map'][i].asnumpy() - truth) / truth
        assert err.max() <= bound, (err.max(), bound)
