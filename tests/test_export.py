"""tools/export.py and symbols/: a trainer checkpoint -> NAME-symbol.json + NAME-0000.params of
the inference graph (the AttSampler operator inside), scored with the Module API
(symbols/module_scorer.py) exactly as the Gluon model predicts. Tiny sizes (input 64,
attention 32, samples 32, ResNet-18), no training needed: the trainer's own ``build_net`` and
``save_checkpoint`` make the run directory."""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.errors import InputError
from tasn_gluon import maps as tmaps
from tasn_gluon.engine.builders import build_net
from tasn_gluon.engine.checkpoint import save_checkpoint
from tasn_gluon.engine.config import resolve_config
from symbols.module_scorer import load_module, score

SIZE = 64


def _run_dir(tmp_path, method='tasn', legacy=False):
    cfg = resolve_config(dict(method=method, net='resnet18', num_classes=4, input_size=SIZE,
                              att_size=32, sample_size=32, legacy_sampler=legacy,
                              dataset='synthetic', batch_size=2,
                              class_names=['a', 'b', 'c', 'd']))
    mx.random.seed(3)
    net = build_net(cfg, [mx.cpu()])
    rs = np.random.RandomState(0)
    for name, p in net.collect_params().items():  # trained-looking BN statistics
        raw_input = 'bn_data' in name                # the input BN sees raw pixels
        if name.endswith('running_mean'):
            p.set_data(mx.nd.array(rs.uniform(-3, 3, p.shape) if raw_input else
                                   rs.normal(0, 0.2, p.shape)))
        elif name.endswith('running_var'):
            p.set_data(mx.nd.array(rs.uniform(2500, 3600, p.shape) if raw_input else
                                   rs.uniform(0.5, 2.0, p.shape)))
        elif name.startswith(('att_conv1_weight', 'att_conv2_weight')):
            # X of order 1: no relation row saturates, so no two maps lie near the threshold
            # of the rule that tells maps apart (a well-conditioned fixture; asserted below)
            p.set_data(p.data() * 0.1)
    run = str(tmp_path / ('run_%s_%d' % (method, legacy)))
    save_checkpoint(run, 1, net, config=cfg.to_dict())
    return run, net


def _images(n=3, seed=1):
    return mx.nd.array(np.random.RandomState(seed).uniform(-120, 130, (n, 3, SIZE, SIZE)))


@pytest.fixture
def no_fusion(monkeypatch):
    # MKLDNN's conv+BN fusion (default on CPU) moves logits by ~1e-4 of their scale; without
    # it the Module computes exactly what Gluon computes
    monkeypatch.setenv('MXNET_SUBGRAPH_BACKEND', 'NONE')


@pytest.mark.parametrize('legacy', [False, True])
def test_module_scores_like_gluon(tmp_path, legacy, no_fusion, tool):
    run, net = _run_dir(tmp_path, legacy=legacy)
    prefix = str(tmp_path / 'export' / 'tasn')
    assert tool('export', '--checkpoint', run, '--out', prefix).returncode == 0
    info = json.load(open(prefix + '-info.json'))
    assert info['num_classes'] == 4 and info['class_names'] == ['a', 'b', 'c', 'd']
    with open(prefix + '-symbol.json') as f:
        graph = json.load(f)
    samplers = [n for n in graph['nodes'] if n['op'] == 'AttSampler']
    assert len(samplers) == 1 and samplers[0]['attrs']['legacy'] == str(legacy)
    saved = mx.nd.load(prefix + '-0000.params')
    assert 'arg:fullyconnected2_weight' in saved and 'aux:bn_data_running_mean' in saved
    assert not any('fullyconnected0' in k or 'att_fc1' in k for k in saved)

    x = _images()
    expected = net.predictor()(x).asnumpy()  # = master_aux (tests/test_model_tasn.py)
    module = load_module(prefix, 0, data_shape=x.shape)
    got = score(module, x).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # another batch size: the module re-binds
    np.testing.assert_allclose(score(module, x[:1]).asnumpy(), expected[:1], rtol=1e-5,
                               atol=1e-5)


def _key_gaps(net, x):
    """Per image, the relative distances of every pair of attention maps' keys (float64)."""
    feats = net.explain(x)['features'].astype('float64')
    keys = tmaps.map_keys(mx.nd, feats, net.attention.relation(mx.nd, feats)).asnumpy()
    a, b = keys[:, :, None], keys[:, None, :]
    gaps = (np.abs(a - b) / np.maximum(np.maximum(a, b), 1e-300)).max(axis=-1)
    iu = np.triu_indices(keys.shape[1], 1)
    return gaps[:, iu[0], iu[1]]


def _amplification(net, x, rel):
    """How much the predictor's logits move, relative to their scale, per unit of a relative
    perturbation ``rel`` (random sign) of every parameter: the fixture's conditioning."""
    params = net.collect_params()
    saved = {k: p.data().copy() for k, p in params.items()}
    base = net.predictor()(x).asnumpy()
    rs = np.random.RandomState(1)
    for k, p in params.items():
        p.set_data(saved[k] * mx.nd.array(1 + rel * rs.choice([-1.0, 1.0], p.shape)))
    moved = net.predictor()(x).asnumpy()
    for k, p in params.items():
        p.set_data(saved[k])
    return np.abs(moved - base).max() / np.abs(base).max() / rel


def test_module_with_default_fusion_same_predictions(tmp_path):
    """MKLDNN's fusion folds each BatchNorm into its convolution's weights (one float32
    rounding, u, per weight) and sums in another order. A float32 dot product of K terms in
    any order is the exact one with every product perturbed by at most gamma_K = K u
    (backward error), so both graphs are the exact network with parameters perturbed by at
    most (K + 1) u, K = 4608 the longest dot product (3x3 convolutions over 512 channels).
    The logits then differ by at most 2 A (K + 1) u of their scale, A the network's
    amplification of a relative parameter perturbation, measured on this fixture (random signs,
    4 u). The fixture is asserted well-conditioned: A below 1e3, and no two attention maps'
    keys near the threshold at which the maps are told apart (a discontinuity)."""
    from symbols.export import export_checkpoint
    run, net = _run_dir(tmp_path)
    prefix = str(tmp_path / 'tasn')
    export_checkpoint(run, prefix)
    x = _images(4, seed=5)
    u = np.finfo(np.float32).eps / 2
    gaps = _key_gaps(net, x)
    # a pair of maps changes group only if its gap crosses eps32; none lies within 100x of it
    assert not np.any((gaps > 1e-9) & (gaps < 1e2 * tmaps.FLOAT32_EPS))
    amplification = _amplification(net, x, 4 * u)
    assert amplification < 1e3
    expected = net.predictor()(x).asnumpy()
    got = score(load_module(prefix, 0, data_shape=x.shape), x).asnumpy()
    tol = 2 * amplification * (4608 + 1) * u * np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
    top2 = np.sort(expected, axis=1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > 2 * tol
    assert decisive.any()
    np.testing.assert_array_equal(got.argmax(axis=1)[decisive], expected.argmax(axis=1)[decisive])


def test_export_params_file_and_baseline(tmp_path, no_fusion):
    from symbols.export import export_checkpoint
    run, net = _run_dir(tmp_path, method='baseline')
    prefix = str(tmp_path / 'base')
    params = os.path.join(run, 'epoch-0001.params')
    export_checkpoint(params, prefix, epoch=7)
    module = load_module(prefix, 7, data_shape=(2, 3, SIZE, SIZE))
    x = _images(2)
    np.testing.assert_allclose(score(module, x).asnumpy(), net(x).asnumpy(), rtol=1e-5,
                               atol=1e-5)


def test_export_errors(tmp_path, tool):
    done = tool('export', '--checkpoint', tmp_path / 'nothing', '--out', tmp_path / 'x')
    assert done.returncode == 2 and 'no such file or folder' in done.stderr
    lonely = tmp_path / 'lonely.params'
    mx.nd.save(str(lonely), {'w': mx.nd.zeros((1,))})
    done = tool('export', '--checkpoint', lonely, '--out', tmp_path / 'x')
    assert done.returncode == 2 and '--net' in done.stderr and 'Traceback' not in done.stderr
    with pytest.raises(InputError, match='missing-symbol.json'):
        load_module(str(tmp_path / 'missing'))
    assert not os.path.exists(str(tmp_path / 'x-symbol.json'))
