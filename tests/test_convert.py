"""tasn_gluon.convert: official TASN checkpoints (names and shapes from
official_checkpoint_params.tsv, random values) -> TASNPredictor / this project's run directory,
and model_zoo.weights: MXNet model-zoo ImageNet ResNet checkpoints in Symbol naming -> backbone
and attention-net initialisation, the strict assignment. Every file here is fabricated; the
official one holds 36 M random values."""
import os

import mxnet as mx
import numpy as np
import pytest

from tasn_gluon import convert
from tasn_gluon.errors import InputError, WeightsError
from tasn_gluon.model_zoo import pretrained, weights

from conftest import fabricate, official_parameters


_CACHE = {}


@pytest.fixture(scope='module')
def official(tmp_path_factory):
    """(path of a fabricated official checkpoint, its arrays by file key)."""
    if 'official' not in _CACHE:
        arrays = fabricate(official_parameters())
        path = str(tmp_path_factory.mktemp('official') / 'tasn-0300.params')
        mx.nd.save(path, {k: mx.nd.array(v) for k, v in arrays.items()})
        _CACHE['official'] = (path, arrays)
    return _CACHE['official']


def images(n=2, size=512, seed=0):
    """Mean-subtracted smooth random images."""
    rs = np.random.RandomState(seed)
    coarse = rs.uniform(-120, 130, (n, 3, 8, 8)).astype(np.float32)
    return mx.nd.contrib.BilinearResize2D(mx.nd.array(coarse), height=size, width=size)


def our_name(key):
    name = key.split(':', 1)[1]
    return name.replace('_moving_mean', '_running_mean').replace('_moving_var', '_running_var')


# The same function computed by two routes (the inference block, the training block's
# master_aux head; different batch compositions and products) rounds differently per operation;
# in float64 (2^-53) the two agree to ~1e-12 of the logits even through ResNet-50's
# amplification, so 1e-9 holds on any CPU (float32 could differ by ~1e-5 of the scale).
ROUTES = 1e-9


@pytest.mark.slow
def test_official_predictor_equals_master_aux(official, tmp_path, tool):
    path, arrays = official
    pred = convert.load_official(path, 200)
    assert pred._sampler_attrs['legacy'] is True
    pred.cast('float64')
    x = images().astype('float64')
    out = pred(x).asnumpy()
    assert out.shape == (2, 200) and np.all(np.isfinite(out))
    assert out.std() > 1e-3 and not np.allclose(out[0], out[1])

    # another route: the training block, initialised differently, weights set by our names,
    # its master_aux head in predict mode
    from tasn_gluon.model_zoo import TASN
    mx.random.seed(123)
    ref = TASN('resnet50', 200, legacy_sampler=True, prefix='')
    ref.initialize(mx.init.Uniform(0.01))
    for name, p in ref.collect_params().items():
        key = [k for k in arrays if our_name(k) == name]
        assert len(key) == 1, name
        p.set_data(mx.nd.array(arrays[key[0]]))
    ref.cast('float64')
    np.testing.assert_allclose(ref(x)[4].asnumpy(), out, rtol=0,
                               atol=ROUTES * np.abs(out).max())
    # spot checks of the mapping
    np.testing.assert_array_equal(pred.fc.weight.data().asnumpy(),
                                  arrays['arg:fullyconnected2_weight'])
    np.testing.assert_array_equal(pred.backbone.bn1.running_var.data().asnumpy(),
                                  arrays['aux:bn1_moving_var'])
    np.testing.assert_array_equal(pred.att_conv2.weight.data().asnumpy(),
                                  arrays['arg:att_conv2_weight'])

    # the converted run directory evaluates through the trainer's loader to the same logits
    run = str(tmp_path / 'official_run')
    assert tool('convert_official', path, '--out', run).returncode == 0
    from tasn_gluon.engine import load_checkpoint
    from tasn_gluon.engine.models import load_model
    record = load_checkpoint(run)
    assert record['epoch'] == 300 and record['config']['legacy_sampler'] is True
    assert record['config']['num_classes'] == 200 and record['config']['net'] == 'resnet50'
    model = load_model(run, [mx.cpu()])
    assert model.kind == 'tasn'
    model.net.cast('float64')
    np.testing.assert_allclose(model.inference_net(x).asnumpy(), out, rtol=0,
                               atol=ROUTES * np.abs(out).max())
    again = tool('convert_official', path, '--out', run)
    assert again.returncode == 2 and 'already exists and is not empty' in again.stderr  # never


def _tasn(num_classes=200):
    from tasn_gluon.model_zoo import TASN
    return TASN('resnet50', num_classes, legacy_sampler=True, prefix='')


def _assign(arrays, model=None):
    model = model or _tasn()
    values, name_in_file = weights.symbol_to_gluon_names(arrays)
    weights.assign(dict(model.collect_params().items()), values, 'official.params',
                   name_in_file=name_in_file)


def test_official_errors_name_the_parameters(official, tmp_path, tool):
    _, arrays = official
    missing = dict(arrays)
    del missing['aux:stage3_unit2_bn1_moving_var']
    del missing['arg:att_conv1_bias']
    with pytest.raises(WeightsError) as e:
        _assign(missing)
    assert 'missing 2' in str(e.value) and 'aux:stage3_unit2_bn1_moving_var' in str(e.value) \
        and 'arg:att_conv1_bias' in str(e.value)

    extra = dict(arrays)
    extra['arg:fullyconnected3_weight'] = np.zeros((200, 2048), np.float32)
    extra['aux:bn0_moving_std'] = np.zeros((64,), np.float32)
    extra['arg:bn0_moving_mean'] = np.zeros((64,), np.float32)  # a statistic stored as arg
    with pytest.raises(WeightsError) as e:
        _assign(extra)
    msg = str(e.value)
    assert '3 unexpected' in msg and 'arg:fullyconnected3_weight' in msg \
        and 'aux:bn0_moving_std' in msg and 'arg:bn0_moving_mean' in msg

    shape = dict(arrays)
    shape['arg:stage1_unit1_conv2_weight'] = np.zeros((64, 64, 1, 1), np.float32)
    with pytest.raises(WeightsError, match=r'arg:stage1_unit1_conv2_weight \(64, 64, 1, 1\) '
                                              r'\(expected \(64, 64, 3, 3\)\)'):
        _assign(shape)
    # a checkpoint of another class count
    with pytest.raises(WeightsError, match='fullyconnected2_weight'):
        _assign(arrays, _tasn(100))

    # file-level errors
    with pytest.raises(InputError, match='nowhere.params'):
        convert.load_official(str(tmp_path / 'nowhere.params'), 200)
    gluon_file = str(tmp_path / 'gluon.params')
    mx.nd.save(gluon_file, {'features.0.weight': mx.nd.zeros((1,))})
    with pytest.raises(WeightsError, match='not a Module checkpoint'):
        convert.load_official(gluon_file, 200)
    done = tool('convert_official', gluon_file, '--out', tmp_path / 'r')
    assert done.returncode == 2 and 'not a Module checkpoint' in done.stderr
    assert not os.path.exists(str(tmp_path / 'r'))


# ------------------------------------------------- MXNet model-zoo ImageNet ResNets (Symbol)

def zoo_rows(depth):
    """Names and shapes of MXNet's ImageNet resnet-DEPTH-0000.params, taken from our own
    ResNetV2 (same layout as MXNet's symbol) plus the 1000-class fc1."""
    from tasn_gluon.model_zoo.resnet import get_resnet
    net = get_resnet(depth, prefix='')
    rows = []
    for name, p in net.collect_params().items():
        aux = name.endswith(('running_mean', 'running_var'))
        name = name.replace('_running_mean', '_moving_mean').replace('_running_var', '_moving_var')
        rows.append(('aux' if aux else 'arg', name, p.shape))
    rows += [('arg', 'fc1_weight', (1000, net.out_channels)), ('arg', 'fc1_bias', (1000,))]
    return rows


def _save(path, arrays):
    mx.nd.save(path, {k: mx.nd.array(v) for k, v in arrays.items()})
    return path


def test_symbol_resnet_checkpoints_initialise_backbone_and_attention_net(tmp_path):
    from tasn_gluon.model_zoo import TASN
    r18 = fabricate(zoo_rows(18), seed=1)
    r50 = fabricate(zoo_rows(50), seed=2)
    p18 = _save(str(tmp_path / 'resnet-18-0000.params'), r18)
    p50 = _save(str(tmp_path / 'resnet-50-0000.params'), r50)
    assert weights.is_symbol_checkpoint(p18)
    assert not weights.is_symbol_checkpoint(str(tmp_path / 'missing.params'))

    model = TASN('resnet50', 5, input_size=64, att_size=32, sample_size=32, prefix='')
    model.initialize()
    pretrained.load_symbol_checkpoint(model.backbone, p50)
    pretrained.load_symbol_checkpoint(model.att_net, p18)
    np.testing.assert_array_equal(model.backbone.stages[2][4].conv2.weight.data().asnumpy(),
                                  r50['arg:stage3_unit5_conv2_weight'])
    np.testing.assert_array_equal(model.backbone.bn_data.running_mean.data().asnumpy(),
                                  r50['aux:bn_data_moving_mean'])  # unchanged: no folding
    body = model.att_net.body
    np.testing.assert_array_equal(body.stages[0][0].sc.weight.data().asnumpy(),
                                  r18['arg:stage1_unit1_sc_weight'])
    np.testing.assert_array_equal(model.att_net.bn1.gamma.data().asnumpy(), r18['arg:bn1_gamma'])
    np.testing.assert_array_equal(model.att_net.bn1.running_var.data().asnumpy(),
                                  r18['aux:bn1_moving_var'])
    # the ImageNet ResNet computes the same features as MXNet's network would: compare the
    # backbone with a plain ResNetV2 classifier holding the same weights and fc1
    from tasn_gluon.model_zoo.resnet import get_resnet
    clf = get_resnet(18, classes=1000, prefix='')
    pretrained.load_symbol_checkpoint(clf, p18)
    np.testing.assert_array_equal(clf.fc1.weight.data().asnumpy(), r18['arg:fc1_weight'])
    x = images(1, 32, seed=4)
    assert np.all(np.isfinite(clf(x).asnumpy()))

    # wrong depth: named
    with pytest.raises(WeightsError) as e:
        pretrained.load_symbol_checkpoint(model.att_net, p50)
    msg = str(e.value)  # every ResNet-18 name exists in ResNet-50, with other shapes
    assert 'unexpected' in msg and 'arg:stage1_unit1_bn3_beta' in msg and 'wrong shape' in msg
    with pytest.raises(WeightsError, match='arg:stage1_unit1_conv1_weight'):
        pretrained.load_symbol_checkpoint(model.backbone, p18)
    bad = dict(r18)
    bad['arg:stage9_unit1_conv1_weight'] = np.zeros((1,), np.float32)
    with pytest.raises(WeightsError, match='unexpected name.*stage9_unit1_conv1_weight'):
        pretrained.load_symbol_checkpoint(model.att_net, _save(str(tmp_path / 'bad.params'), bad))


def test_get_tasn_pretrained_symbol_checkpoints(tmp_path):
    """--pretrained / --att-pretrained: model_zoo.load_pretrained hands Symbol-named files to
    tasn_gluon.convert."""
    from tasn_gluon.model_zoo import get_tasn
    r18 = fabricate(zoo_rows(18), seed=1)
    p18 = _save(str(tmp_path / 'resnet-18-0000.params'), r18)
    model = get_tasn('resnet18', 5, input_size=64, att_size=32, sample_size=32,
                     pretrained=p18, att_pretrained=p18)
    np.testing.assert_array_equal(model.backbone.conv0.weight.data().asnumpy(),
                                  r18['arg:conv0_weight'])
    np.testing.assert_array_equal(model.att_net.body.stages[3][1].conv2.weight.data().asnumpy(),
                                  r18['arg:stage4_unit2_conv2_weight'])
