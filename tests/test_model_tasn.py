"""The TASN block end to end (with the AttSampler operator): shapes at the paper's sizes, the
train/predict switch (imperative and hybridized), gradient isolation of the attention net, the
predictor and its export/import round trip, explain()."""
import os

import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd

from tasn_gluon.errors import InputError
from tasn_gluon import ops
from tasn_gluon import model_zoo as mz
from tasn_gluon.losses import TASNLoss
from tasn_gluon.maps import resize_bilinear

# small settings for the functional tests: 96 input, 64 attention input (8x8 maps), 48 samples
SMALL = dict(num_classes=5, input_size=96, att_size=64, sample_size=48)


def _image(n, size, seed=0):
    return mx.nd.array(np.random.RandomState(seed).uniform(-110, 130, (n, 3, size, size)))


def _small(net='resnet18', **kwargs):
    args = dict(SMALL)
    args.update(kwargs)
    return mz.get_tasn(net, **args)


def _np(outs):
    return [o.asnumpy() for o in outs]


@pytest.mark.parametrize('net', ['resnet18', 'resnet50'])
def test_shapes_at_paper_sizes(net):
    """512 input, 224 attention input (28x28 maps), 224 sampled images, batch 1."""
    model = mz.get_tasn(net, num_classes=200)
    exp = model.explain(_image(1, 512))     # one forward, with the intermediate results
    assert exp['att_input'].shape == (1, 3, 224, 224)
    assert exp['features'].shape == exp['attention_maps'].shape == (1, 512, 28, 28)
    assert exp['structure_map'].shape == exp['detail_map'].shape == (1, 512, 512)
    assert exp['structure_image'].shape == exp['detail_image'].shape == (1, 3, 224, 224)
    assert [o.shape for o in exp['logits']] == [(1, 200)] * 5
    assert all(np.isfinite(o.asnumpy()).all() for o in exp['logits'])


def test_shapes_vgg19_small_and_sample_336():
    model = mz.get_tasn('vgg19', num_classes=3, input_size=64, att_size=32, sample_size=42)
    outs = model(_image(2, 64))
    assert [o.shape for o in outs] == [(2, 3)] * 5
    model = _small(sample_size=63)  # like 336/512: scale = sample / input
    exp = model.explain(_image(1, 96))
    assert exp['structure_image'].shape == (1, 3, 63, 63)
    assert exp['detail_image'].shape == (1, 3, 63, 63)
    assert exp['attention_maps'].shape == (1, 512, 8, 8)


def test_bad_input_shape():
    model = _small()
    with pytest.raises(ValueError, match='96'):
        model(_image(1, 64))
    with pytest.raises(ValueError, match='96'):
        model.predictor()(_image(1, 64))


def test_hybridized_matches_imperative_in_both_modes():
    """In float64: which attention maps tie (equal sums) is exact equality, so in float32 a
    rounding difference between the two execution paths can turn a channel that is zero in
    one into a tiny positive one in the other, and change the draw; in float64 the paths
    agree to ~1e-12 of the logits (see the next test), far below 1e-8."""
    model = _small()
    model.cast('float64')
    x = _image(2, 96).astype('float64')
    pred_imp = _np(model(x))
    mx.random.seed(11)
    with autograd.train_mode():
        train_imp = _np(model(x))
    model.hybridize()
    pred_hyb = _np(model(x))
    mx.random.seed(11)
    with autograd.train_mode():
        train_hyb = _np(model(x))
    # training mode: the same random draws
    for a, b in zip(pred_imp + train_imp, pred_hyb + train_hyb):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8 * np.abs(a).max())


@pytest.mark.parametrize('hybridize', [False, True])
def test_train_mode_draws_random_detail_maps_predict_mode_sums(hybridize):
    """explain() computes the forward's own arithmetic. Compared in float64: the two paths
    (explain's imperative calls, the forward's own graph) may round differently per operation
    (2^-53 relative), and an untrained net's logits (~400) amplify an input difference by
    ~1e4 at most (float32 runs of the two paths once differed by 3e-2 for roundings of
    ~1e-7), so float64 results agree to ~1e-12 of the logits; 1e-8 leaves a wide margin on any
    CPU."""
    model = _small()
    model.cast('float64')
    if hybridize:
        model.hybridize()
    x = _image(2, 96, seed=3).astype('float64')
    # predict mode: deterministic, and the part head sees the channel-sum detail map
    a, b = _np(model(x)), _np(model(x))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    exp = model.explain(x)                        # inference: detail map = sum of the maps
    for k in range(5):
        np.testing.assert_allclose(exp['logits'][k].asnumpy(), a[k], rtol=0,
                                   atol=1e-8 * np.abs(a[k]).max())
    # training mode: the detail image changes with the seed, the structure one does not
    runs = {}
    for seed in (1, 2, 1):
        mx.random.seed(seed)
        with autograd.record():
            out = model(x)
        runs.setdefault(seed, []).append(_np(out))
    same, other = runs[1][0], runs[2][0]
    for u, v in zip(same, runs[1][1]):
        np.testing.assert_array_equal(u, v)                     # follows mx.random.seed
    np.testing.assert_array_equal(same[0], other[0])            # att head: no randomness
    assert not np.allclose(same[1], other[1])                   # part head: another map
    # explain draws as the forward does: same seed, same detail image
    mx.random.seed(1)
    with autograd.train_mode():
        drawn = model.explain(x)
    assert int(drawn['num_distinct'].asnumpy().min()) >= 2
    chosen = [int(np.argmax(np.abs(drawn['detail_map'].asnumpy()[i]
                                   - resize_bilinear(mx.nd, drawn['attention_maps'][i:i + 1],
                                                     96).asnumpy()[0]).max(axis=(1, 2)) == 0))
              for i in range(2)]
    assert all(drawn['distinct'].asnumpy()[i, c] == 1 for i, c in enumerate(chosen))


def test_explain_detail_channel_and_profiles():
    model = _small()
    x = _image(2, 96, seed=4)
    exp = model.explain(x, detail_channel=[3, 17])
    maps = exp['attention_maps']
    for i, c in enumerate([3, 17]):
        ref = resize_bilinear(mx.nd, maps[i:i + 1, c:c + 1], 96)[0, 0]
        np.testing.assert_allclose(exp['detail_map'][i].asnumpy(), ref.asnumpy(), rtol=1e-5,
                                   atol=1e-7)
    sy, sx = exp['structure_profiles']
    assert sy.shape == sx.shape == (2, 96)
    np.testing.assert_allclose(sy.sum(axis=1).asnumpy(), 1, rtol=1e-5)
    np.testing.assert_allclose(exp['structure_image'].asnumpy(),
                               ops.att_sampler(x, sy, sx, 0.5).asnumpy(), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match='detail_channel'):
        model.explain(x, detail_channel=[600, 1])


def _grads(params):
    return {k: p.grad().abs().sum().asscalar() for k, p in params.items()
            if p.grad_req != 'null'}


@pytest.mark.parametrize('detach', [False, True])
def test_attention_net_gets_gradient_only_from_its_cross_entropy(detach):
    model = _small()
    x, y = _image(2, 96, seed=5), mx.nd.array([1, 3])
    att_params = model.att_net.collect_params()
    rest = {k: p for k, p in model.collect_params().items() if not k.startswith('att_')}

    def step(weights):
        with autograd.record():
            loss = TASNLoss(weights=weights, detach_teacher=detach)(model(x), y)
        loss.backward()
        return _grads(att_params), _grads(rest)

    att_g, rest_g = step({'att': 0.0})
    assert all(v == 0 for v in att_g.values()), 'attention net got gradient from other terms'
    assert sum(rest_g.values()) > 0
    att_g, rest_g = step((1.0, 0, 0, 0, 0, 0))
    assert all(v == 0 for v in rest_g.values())
    assert att_g['att_conv1_weight'] > 0 and att_g['att_conv0_weight'] > 0
    assert att_g['att_fc1_weight'] > 0


def test_predictor_matches_master_aux_and_shares_parameters():
    """Two routes to one function (see test_hybridized_matches_imperative_in_both_modes for
    the float64 bound)."""
    model = _small()
    model.cast('float64')
    x = _image(2, 96, seed=6).astype('float64')
    master_aux = model(x)[4].asnumpy()
    pred = model.predictor()
    assert pred is model.predictor()
    np.testing.assert_allclose(pred(x).asnumpy(), master_aux, rtol=0,
                               atol=1e-8 * np.abs(master_aux).max())
    shared = model.collect_params()
    for name, p in pred.collect_params().items():
        assert shared[name] is p
    assert not any(k.startswith('att_fc1') or k.startswith('fullyconnected0')
                   for k in pred.collect_params().keys())
    # the predictor is not a child of TASN: saved parameters stay those of TASN
    assert not any('predictor' in k for k in model._collect_params_with_prefix())


@pytest.mark.parametrize('legacy', [False, True])
def test_export_import_round_trip(tmp_path, legacy):
    """The exported graph runs the predictor's own graph: in float64 equal to 1e-8 of the
    logits (as above), whatever the execution engine does with the order of operations."""
    model = _small(legacy_sampler=legacy)
    model.cast('float64')
    pred = model.predictor()
    pred.hybridize()
    x = _image(2, 96, seed=7).astype('float64')
    expected = pred(x).asnumpy()
    prefix = str(tmp_path / 'tasn')
    pred.export(prefix)
    assert os.path.isfile(prefix + '-symbol.json') and os.path.isfile(prefix + '-0000.params')
    assert 'AttSampler' in open(prefix + '-symbol.json').read()
    ops.load()
    loaded = mx.gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'],
                                          prefix + '-0000.params')
    np.testing.assert_allclose(loaded(x).asnumpy(), expected, rtol=0,
                               atol=1e-8 * np.abs(expected).max())
    saved = mx.nd.load(prefix + '-0000.params')
    assert 'arg:att_stage1_unit1_conv1_weight' in saved and 'arg:fullyconnected2_weight' in saved
    assert 'aux:bn_data_running_mean' in saved


def test_legacy_sampler_changes_the_images():
    mx.random.seed(0)
    clean = _small()
    mx.random.seed(0)
    legacy = _small(legacy_sampler=True)
    for name, p in legacy.collect_params().items():
        np.testing.assert_array_equal(p.data().asnumpy(),
                                      clean.collect_params()[name].data().asnumpy())
    x = _image(1, 96, seed=8)
    a = clean.explain(x)['structure_image'].asnumpy()
    b = legacy.explain(x)['structure_image'].asnumpy()
    assert a.shape == b.shape and not np.allclose(a, b)
    assert np.all(b[:, :, 0, :] == 0)  # legacy: zero padding makes output row 0 black


def test_get_tasn_with_pretrained_files(tmp_path):
    from mxnet.gluon.model_zoo import vision
    paths = {}
    for name in ('resnet18_v2',):
        ref = vision.get_model(name)
        ref.initialize(mx.init.Xavier())
        ref(mx.nd.zeros((1, 3, 32, 32)))
        paths[name] = str(tmp_path / (name + '.params'))
        ref.save_parameters(paths[name])
    model = _small(pretrained=paths['resnet18_v2'], att_pretrained=paths['resnet18_v2'])
    w = vision.get_model('resnet18_v2')
    w.load_parameters(paths['resnet18_v2'])
    np.testing.assert_array_equal(model.backbone.conv0.weight.data().asnumpy(),
                                  w.features[1].weight.data().asnumpy())
    np.testing.assert_array_equal(model.att_net.body.conv0.weight.data().asnumpy(),
                                  w.features[1].weight.data().asnumpy())
    with pytest.raises(InputError, match='missing.params'):
        _small(pretrained=str(tmp_path / 'missing.params'))
