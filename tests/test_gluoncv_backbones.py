"""GluonCV's ImageNet networks as TASN's backbone: every name builds; a GluonCV ``.params`` file
(made here with ``save_parameters``) loads into it by name, given as a file or found in a
``~/.mxnet/models``-style folder; the loaded block computes GluonCV's own network's features on
the equivalent input; a TASN training step with it; wrong names and missing files."""
import json
import os

import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon.data.vision import transforms

from tasn_gluon.errors import InputError
from tasn_gluon import model_zoo as mz
from tasn_gluon.engine import prepare, train
from tasn_gluon.engine.training import train_step
from tasn_gluon.losses import TASNLoss
from tasn_gluon.model_zoo.gluoncv_backbones import gluoncv_network
from tasn_gluon.model_zoo.normalization import GLUON_MEAN, GLUON_STD, MEAN_RGB

from conftest import randomize_bn_stats, real_config

# GluonCV's published file names (gluoncv.model_zoo.model_store): NAME-SHA1[:8].params
ZOO_FILES = {'resnet18_v1b': 'resnet18_v1b-2d9d980c.params',
             'resnet18_v2': 'resnet18_v2-a81db45f.params',
             'resnet50_v2': 'resnet50_v2-ecdde353.params'}


def _gluoncv_file(path, name, legacy=False, seed=0):
    """GluonCV's network ``name`` with random weights and non-trivial BN statistics, saved as
    GluonCV saves its ImageNet files (``save_parameters``; ``legacy``: the old prefix names)."""
    ref = gluoncv_network(name)
    ref.initialize(mx.init.Xavier(magnitude=2))
    ref(mx.nd.zeros((1, 3, 32, 32)))
    randomize_bn_stats(ref, seed)
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    if legacy:
        ref.collect_params().save(str(path), strip_prefix=ref.prefix)
    else:
        ref.save_parameters(str(path))
    return ref


def _images(n, size, seed=0):
    """``(r, x, g)``: uint8 RGB images r (N, H, W, 3), TASN's input x = r - MEAN_RGB (N, 3, H, W)
    and GluonCV's input g from r by MXNet's ToTensor + Normalize (GluonCV's eval transform)."""
    r = np.random.RandomState(seed).randint(0, 256, (n, size, size, 3)).astype(np.uint8)
    x = r.transpose(0, 3, 1, 2).astype(np.float32) - \
        np.asarray(MEAN_RGB, np.float32).reshape(1, 3, 1, 1)
    norm = transforms.Compose([transforms.ToTensor(), transforms.Normalize(GLUON_MEAN, GLUON_STD)])
    g = mx.nd.stack(*[norm(mx.nd.array(im, dtype='uint8')) for im in r])
    return r, mx.nd.array(x), g


@pytest.mark.parametrize('name', sorted(mz.gluoncv_spec))
def test_every_gluoncv_name_builds(name):
    """Each --net name builds, gives (N, out_channels) features, and has exactly GluonCV's
    parameters (structural names and shapes) but the ImageNet classifier; GluonCV publishes
    ImageNet weights under that name."""
    from gluoncv.model_zoo import model_store
    assert name in mz.backbone_names() and name in model_store._model_sha1
    net = mz.get_backbone(name)
    net.initialize()
    feats = net(mx.nd.array(np.random.RandomState(0).uniform(-110, 130, (2, 3, 32, 32))))
    assert feats.shape == (2, net.out_channels)
    assert net.out_channels == (512 if name in ('resnet18_v1b', 'resnet34_v1b') else 2048)
    assert np.isfinite(feats.asnumpy()).all()
    ref = gluoncv_network(name)
    ref.initialize()
    ref(mx.nd.zeros((1, 3, 32, 32)))
    theirs = {k: p.shape for k, p in ref._collect_params_with_prefix().items()
              if not k.startswith('fc.')}
    assert {k: p.shape for k, p in net._collect_params_with_prefix().items()} == theirs


@pytest.mark.parametrize('name,legacy', [('resnet18_v1b', False), ('resnet50_v1d', False),
                                         ('resnest14', False), ('resnet18_v1b', True)])
def test_loaded_network_computes_gluoncv_features(tmp_path, name, legacy):
    """Loaded from GluonCV's file, the block on TASN's input computes GluonCV's network on
    GluonCV's input of the same images:

    * its input step gives GluonCV's normalised input to within 2.4e-6: both sides are a few
      float32 roundings of values below 4 (ulp 2.4e-7 each); here 2 ulp are seen;
    * from that input on, GluonCV's own blocks: its features through GluonCV's classifier (the
      file's fc) are bit-identical to GluonCV's full forward;
    * end to end, the difference is only the network's response to that input rounding (a
      guard: within 1e-5 of the logits' scale; about 2.5e-7 is seen).
    """
    path = tmp_path / ('%s.params' % name)
    ref = _gluoncv_file(path, name, legacy)
    net = mz.get_backbone(name)
    net.initialize()
    mz.load_pretrained(net, str(path))
    _, x, g = _images(2, 64)
    g_ours = net.gluoncv_input(mx.nd, x)
    np.testing.assert_allclose(g_ours.asnumpy(), g.asnumpy(), rtol=0, atol=2.4e-6)
    feats = net(x)
    w, b = ref.fc.weight.data(), ref.fc.bias.data()
    logits = mx.nd.FullyConnected(feats, w, b, num_hidden=w.shape[0]).asnumpy()
    assert np.array_equal(logits, ref(g_ours).asnumpy())
    theirs = ref(g).asnumpy()
    np.testing.assert_allclose(logits, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


def test_hybridized_resnest_does_not_drop_at_inference():
    """GluonCV's ResNeSt-26 factory sets DropBlock 0.1, whose train/inference choice a hybridized
    block would freeze at its first (training) call (GluonCV's own network, so used, gives
    random outputs at inference); switched off here, inference after a training call is
    deterministic and equals the imperative inference. 224 px: the size GluonCV's DropBlocks
    are built for."""
    net = mz.get_backbone('resnest26')
    net.initialize(mx.init.Xavier())
    x = mx.nd.array(np.random.RandomState(1).uniform(-110, 130, (1, 3, 224, 224)))
    plain = net(x).asnumpy()
    net.hybridize()
    with autograd.record(train_mode=True):
        net(x)
    with autograd.predict_mode():
        a, b = net(x).asnumpy(), net(x).asnumpy()
    assert np.array_equal(a, b)
    np.testing.assert_allclose(a, plain, rtol=1e-5, atol=1e-5 * np.abs(plain).max())


@pytest.mark.parametrize('name', ['resnet18_v1b', 'resnest14'])
def test_tasn_training_step_with_gluoncv_backbone(name):
    """One TASN step (input 64, attention 32, samples 32): finite loss; every trainable backbone
    parameter moves."""
    model = mz.get_tasn(name, num_classes=4, input_size=64, att_size=32, sample_size=32)
    model.hybridize(static_alloc=True)
    trainer = gluon.Trainer(model.collect_params(), 'sgd', dict(learning_rate=0.1))
    data = mx.nd.array(np.random.RandomState(2).uniform(-110, 130, (4, 3, 64, 64)))
    model(data)   # GluonCV's v1b convs infer their input channels at the first forward
    params = {k: p for k, p in model.backbone.collect_params().items() if p.grad_req != 'null'}
    before = {k: p.data().asnumpy().copy() for k, p in params.items()}
    label = mx.nd.array([0, 1, 2, 3])
    values, logits = train_step(model, trainer, TASNLoss(), data, label, [mx.cpu()], 4)
    assert np.isfinite(values).all() and logits.shape == (4, 4)
    unchanged = [k for k, p in params.items() if np.array_equal(p.data().asnumpy(), before[k])]
    assert len(params) > 20 and unchanged == []


def test_pretrained_zoo_from_a_fake_home(tiny_synthetic, tmp_path, monkeypatch, caplog):
    """``pretrained='zoo'``: the file under GluonCV's name in $HOME/.mxnet/models (HOME is a
    test folder) is found, recorded in config.json, and loaded; a file that is not the published
    one (its SHA-1) is used with a warning; one TASN step trains from it."""
    home = tmp_path / 'home'
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.delenv('MXNET_HOME', raising=False)
    path = home / '.mxnet' / 'models' / ZOO_FILES['resnet18_v1b']
    ref = _gluoncv_file(path, 'resnet18_v1b')
    assert mz.find_pretrained('zoo', 'resnet18_v1b') == str(path)
    cfg = real_config(tiny_synthetic, tmp_path / 'run', net='resnet18_v1b', pretrained='zoo',
                      max_batches_per_epoch=1)
    with caplog.at_level('WARNING'):
        tr = prepare(cfg)
    assert tr.cfg.pretrained == str(path)
    assert 'is not the file GluonCV published' in caplog.text
    np.testing.assert_array_equal(tr.net.backbone.layer4[1].conv2.weight.data().asnumpy(),
                                  ref.layer4[1].conv2.weight.data().asnumpy())
    hist = train(tr)
    assert np.isfinite(hist[0]['train_loss'])
    with open(os.path.join(cfg['out'], 'config.json')) as f:
        assert json.load(f)['pretrained'] == str(path)


def test_zoo_folder_lookup_and_errors(tmp_path, monkeypatch):
    """The folder: model_root, else $MXNET_HOME/models, else ~/.mxnet/models; a missing file is
    an error naming the file and the folder; the official names map to GluonCV's v2 files."""
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.delenv('MXNET_HOME', raising=False)
    default = os.path.join(str(tmp_path / 'home'), '.mxnet', 'models')
    with pytest.raises(InputError) as e:
        mz.find_pretrained('zoo', 'resnet50')
    assert ZOO_FILES['resnet50_v2'] in str(e.value) and default in str(e.value)
    with pytest.raises(InputError, match=ZOO_FILES['resnet18_v2']):
        mz.find_pretrained('zoo', mz.ATTENTION_NET)
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxhome'))
    with pytest.raises(InputError, match=str(tmp_path / 'mxhome' / 'models')):
        mz.find_pretrained('zoo', 'resnet18_v1b')
    root = tmp_path / 'root'
    _gluoncv_file(root / ZOO_FILES['resnet18_v1b'], 'resnet18_v1b')
    assert mz.find_pretrained('zoo', 'resnet18_v1b', str(root)) == \
        str(root / ZOO_FILES['resnet18_v1b'])
    assert mz.find_pretrained(str(root / 'x.params'), 'resnet18_v1b') == str(root / 'x.params')
    assert mz.find_pretrained(None, 'resnet18_v1b') is None


def test_wrong_name_and_wrong_files(tmp_path):
    with pytest.raises(ValueError) as e:
        mz.get_backbone('resnet50_v9')
    assert 'resnet50_v9' in str(e.value) and 'resnet50_v1d' in str(e.value) \
        and 'resnest50' in str(e.value)
    with pytest.raises(ValueError, match='resnet50_v1d'):
        mz.get_tasn('resnet50_v9', num_classes=3)
    net = mz.get_backbone('resnet50_v1d')
    net.initialize()
    with pytest.raises(InputError, match='missing.params'):
        mz.load_pretrained(net, str(tmp_path / 'missing.params'))
    path = tmp_path / 'resnet18_v1b.params'
    _gluoncv_file(path, 'resnet18_v1b')
    with pytest.raises(mz.WeightsError, match='conv1.0.weight'):   # v1d's deep stem is missing
        mz.load_pretrained(net, str(path))
    sym = tmp_path / 'resnet-18-0000.params'
    mx.nd.save(str(sym), {'arg:conv0_weight': mx.nd.zeros((64, 3, 7, 7))})
    with pytest.raises(ValueError, match='Symbol-named'):
        mz.load_pretrained(net, str(sym))


def test_train_tool_with_gluoncv_backbone(tiny_synthetic, tmp_path, tool):
    """tools/train.py --net resnet18_v1b --pretrained FILE trains; a wrong --net lists the valid
    names; a missing --pretrained file or zoo folder entry is one error line, exit 2."""
    path = tmp_path / 'r18.params'
    _gluoncv_file(path, 'resnet18_v1b')
    common = ['--dataset', 'synthetic', '--data-dir', tiny_synthetic, '--net', 'resnet18_v1b',
              '--input-size', 64, '--att-size', 32, '--sample-size', 32, '--batch-size', 4,
              '--epochs', 1, '--max-batches-per-epoch', 1, '--num-data-threads', 2,
              '--no-progress']
    res = tool('train', *common, '--pretrained', path, '--out', tmp_path / 'run')
    assert res.returncode == 0, res.stderr[-2000:]
    with open(tmp_path / 'run' / 'config.json') as f:
        assert json.load(f)['pretrained'] == str(path)
    res = tool('train', '--net', 'resnet50_v9', '--out', tmp_path / 'x')
    assert res.returncode == 2 and 'resnet50_v9' in res.stderr and 'resnet50_v1d' in res.stderr
    res = tool('train', *common, '--pretrained', tmp_path / 'nope.params', '--out',
               tmp_path / 'y')
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == \
        'error: --pretrained %s: no such file' % (tmp_path / 'nope.params')
    res = tool('train', *common, '--pretrained', 'zoo', '--model-root', tmp_path / 'empty',
               '--out', tmp_path / 'z')
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: --pretrained zoo: ') and ZOO_FILES['resnet18_v1b'] in last \
        and str(tmp_path / 'empty') in last
    assert not os.path.exists(tmp_path / 'y') and not os.path.exists(tmp_path / 'z')
