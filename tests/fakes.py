"""Small stand-ins for the engine's tests of its own mechanics (checkpoints, resume, NaN guard,
data parallelism, exact evaluation counts): a tiny 5-head network, the real objective, and
in-memory data iterators. Each stand-in has the signature of the library function it replaces
(checked by conftest's ``fake_engine`` fixture, which puts them in place with monkeypatch); the
real model and data are tested elsewhere. This module holds no tests."""
import json
import os
import types

import mxnet as mx
import numpy as np
from mxnet import gluon

from tasn_gluon.losses import HEADS
from tasn_gluon.model_zoo import DISTINCT_MAPS, ModelKind

NUM_CLASSES = 3


class TinyFiveHead(ModelKind, gluon.HybridBlock):
    """conv-BN-relu-pool-dropout, then five linear heads (att, part, master, part_aux,
    master_aux), or one (the baseline). Dropout makes training mode random, like TASN's random
    detail map. Answers the ModelKind questions as TASN (five heads) or the baseline does."""

    def __init__(self, num_classes, heads=5, **kwargs):
        super().__init__(**kwargs)
        tasn = heads > 1
        self.method = 'tasn' if tasn else 'baseline'
        self.validation_outputs = HEADS + (DISTINCT_MAPS,) if tasn else ('top',)
        self.reported_head = 'master_aux' if tasn else 'top'
        self.conv = gluon.nn.Conv2D(8, 3, strides=2, padding=1)
        self.bn = gluon.nn.BatchNorm()
        self.drop = gluon.nn.Dropout(0.3)
        self.heads = gluon.nn.HybridSequential()
        for _ in range(heads):
            self.heads.add(gluon.nn.Dense(num_classes))
        self.num_heads = heads
        self._views = types.SimpleNamespace(stats=None)   # not a child, as in TASN

    def hybrid_forward(self, F, x):
        f = F.relu(self.bn(self.conv(x)))
        f = F.flatten(F.contrib.AdaptiveAvgPooling2D(f, output_size=2))
        f = self.drop(f)
        outs = [h(f) for h in self.heads]
        return tuple(outs) if self.num_heads > 1 else outs[0]

    def reported(self, outputs):
        return outputs[HEADS.index('master_aux')] if self.num_heads > 1 else outputs

    def validation_net(self):
        """As TASN's: the five logits and a per-image count (here a constant 7)."""
        if self.num_heads == 1:
            return self
        if self._views.stats is None:
            self._views.stats = _WithStats(self)
        return self._views.stats


class _WithStats(gluon.HybridBlock):
    def __init__(self, net):
        super().__init__(prefix='')
        self.net = net

    def hybrid_forward(self, F, x):
        outs = self.net(x)
        return tuple(outs) + (F.ones_like(F.slice_axis(outs[0], axis=1, begin=0, end=1))
                              .reshape((-1,)) * 7,)


def _initialised(net, ctx):
    net.initialize(mx.init.Xavier(), ctx=ctx or mx.cpu())
    return net


def get_tasn(net='resnet50', num_classes=200, input_size=512, att_size=224, sample_size=224,
             legacy_sampler=False, uniform_sampler=False, pretrained=None, att_pretrained=None,
             ctx=None, **kwargs):
    return _initialised(TinyFiveHead(num_classes), ctx)


def get_baseline(net='resnet50', num_classes=200, sample_size=224, pretrained=None, ctx=None,
                 **kwargs):
    return _initialised(TinyFiveHead(num_classes, heads=1), ctx)


def make_fake_dataset(out_dir, num_train=24, num_val=10, size=32, seed=0):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'dataset.json'), 'w') as f:
        json.dump(dict(name='fake', num_classes=NUM_CLASSES, num_train=num_train,
                       num_val=num_val, size=size, seed=seed,
                       class_names=['c%d' % i for i in range(NUM_CLASSES)]), f)
    return out_dir


def read_dataset_info(data_dir, check_records=True):
    path = os.path.join(data_dir, 'dataset.json')
    if not os.path.isfile(path):
        raise FileNotFoundError('%s not found' % path)
    with open(path) as f:
        return json.load(f)


def fake_arrays(data_dir, split):
    """(images, labels) of a fake split: noise plus a bright quadrant that names the class."""
    info = read_dataset_info(data_dir)
    n = info['num_train'] if split == 'train' else info['num_val']
    rs = np.random.RandomState(info['seed'] + (0 if split == 'train' else 1))
    labels = np.arange(n) % NUM_CLASSES
    x = rs.normal(0, 1, (n, 3, info['size'], info['size'])).astype(np.float32)
    for i, y in enumerate(labels):  # the class is a bright quadrant
        q = info['size'] // 2
        r, c = divmod(int(y), 2)
        x[i, :, r * q:(r + 1) * q, c * q:(c + 1) * q] += 2.0
    return x, labels.astype(np.float32)


def get_train_iter(data_dir, batch_size, input_size=512, num_parts=1, part_index=0, seed=0,
                   num_threads=None, verify='full', last_batch='wrap', **aug_options):
    x, y = fake_arrays(data_dir, 'train')
    x, y = x[part_index::num_parts], y[part_index::num_parts]
    rs = np.random.RandomState(seed)
    order = rs.permutation(len(y))
    x, y = x[order].copy(), y[order]
    flip = rs.rand(len(y)) < 0.5
    x[flip] = x[flip][:, :, :, ::-1]
    return mx.io.NDArrayIter(x, y, batch_size, shuffle=False,
                             last_batch_handle='roll_over' if last_batch == 'wrap' else 'discard')


def get_val_iter(data_dir, batch_size, input_size=512, num_parts=1, part_index=0,
                 num_threads=None, resize=None, mean_rgb=None, verify='full'):
    x, y = fake_arrays(data_dir, 'val')
    x, y = x[part_index::num_parts], y[part_index::num_parts]
    return mx.io.NDArrayIter(x, y, batch_size, shuffle=False, last_batch_handle='pad')


def check_split(data_dir, split, info, verify='full', num_parts=1, part_index=0):
    return 'none'  # in-memory data: no record files to check


# module path -> the stand-ins that replace its names
REPLACEMENTS = {
    'tasn_gluon.engine.builders': dict(get_tasn=get_tasn, get_baseline=get_baseline,
                                       get_train_iter=get_train_iter, get_val_iter=get_val_iter),
    'tasn_gluon.engine.preparation': dict(read_dataset_info=read_dataset_info,
                                          check_split=check_split),
    'tasn_gluon.engine.evaluation': dict(read_dataset_info=read_dataset_info),
}


def fake_config(tmp_path, **kw):
    data_dir = make_fake_dataset(str(tmp_path / 'data'))
    cfg = dict(dataset='synthetic', data_dir=data_dir, net='resnet18', method='tasn',
               batch_size=4, epochs=2, lr=0.1, lr_steps='1', momentum=0.9, wd=1e-4,
               input_size=32, att_size=16, sample_size=16, out=str(tmp_path / 'run'),
               progress=False, log_interval=2, keep_checkpoints=0, num_data_threads=1)
    cfg.update(kw)
    return cfg
