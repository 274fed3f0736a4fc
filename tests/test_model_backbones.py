"""Backbones (pre-activation ResNets, VGG with pooling), the attention net, pretrained loading,
parameter names and the model registry. None of these needs the sampler operator."""
import os

import numpy as np
import pytest
import mxnet as mx
from mxnet.gluon.model_zoo import vision

from tasn_gluon.errors import ConfigError, InputError
from tasn_gluon import model_zoo as mz
from tasn_gluon.model_zoo.normalization import MEAN_RGB, GLUON_MEAN, GLUON_STD

from conftest import randomize_bn_stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




def _gluon_zoo_file(tmp_path, name, legacy=False):
    """A Gluon model-zoo network with random weights saved as the zoo's .params would be."""
    ref = vision.get_model(name)
    ref.initialize(mx.init.Xavier(magnitude=2))
    ref(mx.nd.zeros((1, 3, 32, 32)))
    randomize_bn_stats(ref)
    if name in ('resnet18_v2', 'resnet34_v2'):
        # Gluon's first unit of stage 1 adds its raw input x, the official layout a projection
        # of relu(bn1(x)); they agree when bn1 is the identity (x >= 0 there, after max pooling
        # of a ReLU), which lets the rest of the mapping be checked exactly.
        bn = ref.features[5][0].bn1
        bn.gamma.set_data(mx.nd.ones(bn.gamma.shape))
        bn.beta.set_data(mx.nd.zeros(bn.beta.shape))
        bn.running_mean.set_data(mx.nd.zeros(bn.running_mean.shape))
        bn.running_var.set_data(mx.nd.ones(bn.running_var.shape) * (1 - 2e-5))
    path = str(tmp_path / ('%s%s.params' % (name, '-legacy' if legacy else '')))
    if legacy:
        ref.collect_params().save(path, strip_prefix=ref.prefix)  # as the old save_params
    else:
        ref.save_parameters(path)
    return ref, path


def _to_gluon_input(x):
    """TASN input (0..255 minus MEAN_RGB) -> Gluon model-zoo input ((x/255 - mean) / std)."""
    mean = np.asarray(MEAN_RGB).reshape(1, 3, 1, 1)
    return ((x + mean) / 255.0 - np.asarray(GLUON_MEAN).reshape(1, 3, 1, 1)) \
        / np.asarray(GLUON_STD).reshape(1, 3, 1, 1)


def _image(shape, seed=0):
    return np.random.RandomState(seed).uniform(-110, 130, shape).astype(np.float32)


@pytest.mark.parametrize('depth,legacy', [(18, False), (50, False), (18, True)])
def test_resnet_matches_gluon_zoo_network(tmp_path, depth, legacy):
    """Loaded from a Gluon model-zoo file, our ResNet v2 computes the zoo network's features on
    TASN's input (normalisation folded into bn_data), including ResNet-18's stage-1 identity."""
    ref, path = _gluon_zoo_file(tmp_path, 'resnet%d_v2' % depth, legacy)
    net = mz.get_resnet(depth)
    net.initialize()
    mz.load_pretrained(net, path)
    x = _image((2, 3, 64, 64))
    ours = net(mx.nd.array(x)).asnumpy()
    theirs = ref.features(mx.nd.array(_to_gluon_input(x))).asnumpy()
    assert ours.shape == theirs.shape == (2, net.out_channels)
    np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=2e-3 * np.abs(theirs).max())


def test_vgg19_matches_gluon_zoo_network(tmp_path):
    ref, path = _gluon_zoo_file(tmp_path, 'vgg19')
    net = mz.vgg19(pool=False)
    net.initialize()
    mz.load_pretrained(net, path)
    x = _image((1, 3, 32, 32), seed=1)
    ours = net(mx.nd.array(x)).asnumpy()
    theirs = ref.features[:36](mx.nd.array(_to_gluon_input(x))).asnumpy()  # through relu5_4
    assert ours.shape == theirs.shape == (1, 512, 2, 2)
    # the folded normalisation is exact away from the zero-padded border
    np.testing.assert_allclose(ours, theirs, rtol=1e-2, atol=1e-2 * np.abs(theirs).max())
    pooled = mz.vgg19()
    pooled.initialize()
    mz.load_pretrained(pooled, path)
    np.testing.assert_allclose(pooled(mx.nd.array(x)).asnumpy(), ours.mean(axis=(2, 3)),
                               rtol=1e-5, atol=1e-6)


def test_pretrained_errors(tmp_path):
    net = mz.get_resnet(18)
    net.initialize()
    missing = str(tmp_path / 'nope' / 'resnet18_v2.params')
    with pytest.raises(InputError, match='nope'):
        mz.load_pretrained(net, missing)
    bad = tmp_path / 'corrupt.params'
    bad.write_bytes(b'not a params file')
    with pytest.raises(ValueError, match='corrupt.params'):
        mz.load_pretrained(net, str(bad))
    _, path50 = _gluon_zoo_file(tmp_path, 'resnet50_v2')
    with pytest.raises(ValueError, match='shape'):
        mz.load_pretrained(net, path50)            # a ResNet-50 file into a ResNet-18
    with pytest.raises(InputError, match='nope'):
        mz.get_baseline('resnet18', 5, pretrained=missing)


def test_resnet_v2_layout():
    """Fixed-gamma input BN, projection in every stage's first unit, eps 2e-5, momentum 0.9."""
    net = mz.get_resnet(50, prefix='')
    names = net.collect_params().keys()
    assert 'bn_data_gamma' in names and 'conv0_weight' in names and 'bn1_gamma' in names
    assert net.collect_params()['bn_data_gamma'].grad_req == 'null'
    for s, n in enumerate([3, 4, 6, 3]):
        assert 'stage%d_unit1_sc_weight' % (s + 1) in names
        assert 'stage%d_unit2_sc_weight' % (s + 1) not in names
        assert 'stage%d_unit%d_conv3_weight' % (s + 1, n) in names
    bn = net.stages[0][0].bn1
    assert bn._kwargs['eps'] == 2e-5 and bn._kwargs['momentum'] == 0.9
    # stride on the 3x3 conv of a bottleneck
    unit = net.stages[1][0]
    assert unit.conv1._kwargs['stride'] == (1, 1) and unit.conv2._kwargs['stride'] == (2, 2)
    sc = mz.get_resnet(18, prefix='').collect_params()['stage1_unit1_sc_weight']
    assert sc.shape == (64, 64, 1, 1)
    with pytest.raises(ValueError, match='depth'):
        mz.get_resnet(19)


def test_attention_net_shapes_and_shared_dilation_weights():
    net = mz.get_attention_net(7, prefix='att_')
    net.initialize(mz.default_initializer())
    logits, feats = net(mx.nd.array(_image((1, 3, 224, 224))))
    assert logits.shape == (1, 7) and feats.shape == (1, 512, 28, 28)   # stride 8
    assert feats.min().asscalar() >= 0                                  # X = sum of ReLUs
    params = net.collect_params()
    conv_w = [n for n in params.keys() if n.startswith('att_conv1_') or n.startswith('att_conv2_')]
    assert sorted(conv_w) == ['att_conv1_bias', 'att_conv1_weight',
                              'att_conv2_bias', 'att_conv2_weight']
    assert params['att_conv1_weight'].shape == (512, 512, 3, 3)
    assert net.conv1.dilations == (1, 2) and net.conv2.dilations == (1, 2, 3)


def test_multi_dilation_conv_against_separate_convs():
    blk = mz.MultiDilationConv(4, 3, (1, 2, 3))
    blk.initialize(mx.init.Normal(0.5))
    blk.bias.set_data(mx.nd.array([0.1, -0.2, 0.3, 0.0]))
    x = mx.nd.random.normal(shape=(2, 3, 9, 9))
    w, b = blk.weight.data(), blk.bias.data()
    ref = sum(mx.nd.relu(mx.nd.Convolution(x, w, b, kernel=(3, 3), pad=(d, d), dilate=(d, d),
                                           num_filter=4)) for d in (1, 2, 3))
    np.testing.assert_allclose(blk(x).asnumpy(), ref.asnumpy(), rtol=1e-5, atol=1e-6)
    # both gradients accumulate into the single shared weight
    with mx.autograd.record():
        y = blk(x).sum()
    y.backward()
    assert blk.weight.grad().abs().sum().asscalar() > 0
    assert len(list(blk.collect_params().keys())) == 2


def test_attention_net_pretrained_from_resnet18(tmp_path):
    ref, path = _gluon_zoo_file(tmp_path, 'resnet18_v2')
    net = mz.get_attention_net(5, prefix='att_')
    net.initialize(mz.default_initializer())
    mz.load_pretrained(net, path)
    src = ref._collect_params_with_prefix()
    np.testing.assert_array_equal(net.body.conv0.weight.data().asnumpy(),
                                  src['features.1.weight'].data().asnumpy())
    np.testing.assert_array_equal(net.body.stages[3][1].conv2.weight.data().asnumpy(),
                                  src['features.8.1.conv2.weight'].data().asnumpy())
    # the ResNet's final BN initialises the head's att_bn1, as in the official code
    np.testing.assert_array_equal(net.bn1.gamma.data().asnumpy(),
                                  src['features.9.gamma'].data().asnumpy())


def _official_names():
    for path in (os.path.join(REPO, 'symbols', 'official_checkpoint_params.tsv'),
                 os.path.join(REPO, 'docs', 'official_checkpoint_params.tsv'),
                 os.path.join(REPO, '..', 'shared', 'spec', 'official_checkpoint_params.tsv')):
        if os.path.isfile(path):
            rows = [line.rstrip('\n').split('\t') for line in open(path)
                    if line.strip() and not line.startswith('#') and not line.startswith('kind')]
            return {n.replace('_moving_mean', '_running_mean').replace('_moving_var',
                                                                        '_running_var'):
                    tuple(int(v) for v in shape.split('x')) for _, n, shape in rows}
    pytest.skip('official_checkpoint_params.tsv not found')


def test_tasn_parameter_names_match_official_graph():
    """get_tasn('resnet50') has exactly the official graph's parameters, names and shapes
    (Gluon's running_mean/var for the official moving_mean/var)."""
    official = _official_names()
    model = mz.get_tasn('resnet50', 200)
    ours = {k: tuple(p.shape) for k, p in model.collect_params().items()}
    assert ours == official


def test_baseline_and_registry():
    """The baseline answers as a model of one head; the backbone registry builds every family
    by name and lists the valid names when given a wrong one."""
    model = mz.get_baseline('resnet18', num_classes=6, sample_size=32)
    out = model(mx.nd.array(_image((2, 3, 48, 48))))
    assert out.shape == (2, 6)
    assert (model.method, model.has_attention, model.validation_outputs) == \
        ('baseline', False, ('top',))
    assert model.reported(out) is out and model.inference_net() is model
    feats = mz.get_backbone('vgg19')
    assert feats.out_channels == 512
    assert {'resnet18', 'resnet50', 'vgg19', 'resnet50_v1d', 'resnest50'} <= \
        set(mz.backbone_names())
    with pytest.raises(ConfigError, match='resnet50, resnet50_v1b'):
        mz.get_backbone('resnet51')


def test_baseline_resizes_align_corners():
    model = mz.get_baseline('resnet18', 3, sample_size=16)
    x = mx.nd.array(_image((1, 3, 40, 40)))
    small = mx.nd.contrib.BilinearResize2D(x, height=16, width=16, align_corners=True)
    np.testing.assert_allclose(model(x).asnumpy(),
                               model.fc(model.backbone(small)).asnumpy(), rtol=1e-5)


def test_sizes_and_sampler_scale():
    from tasn_gluon.model_zoo.sampling import sampler_scale
    for inp, out in ((512, 224), (512, 336), (500, 224), (600, 337)):
        scale = sampler_scale(inp, out)
        assert int(inp * scale) == out and int(np.float32(inp) * np.float32(scale)) == out
        assert abs(scale - out / inp) < 1e-6
    with pytest.raises(ValueError, match='sample_size'):
        mz.TASN('resnet18', 5, sample_size=0)
    model = mz.TASN('resnet18', 5, input_size=96, att_size=64, sample_size=48, prefix='')
    assert model.maps.input_size == 96 and model._sampler_attrs['scale'] == 0.5
