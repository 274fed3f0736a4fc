"""Small stand-ins for the engine's tests of its own mechanics (checkpoints, resume, NaN guard,
data parallelism, exact evaluation counts): a tiny 5-head network, a 5-term loss with a KD term,
and in-memory data iterators with the library's interface. They are passed to the engine through
``tasn_gluon.engine.training.Components``; the real model, loss and data are tested in
test_train_real.py. This module holds no tests."""
import json
import os

import mxnet as mx
import numpy as np
from mxnet import gluon

from tasn_gluon.engine.training import Components

NUM_CLASSES = 3


class TinyFiveHead(gluon.HybridBlock):
    """conv-BN-relu-pool-dropout, then five linear heads (att, part, master, part_aux,
    master_aux). Dropout makes training mode random, like TASN's random detail map."""

    def __init__(self, num_classes, heads=5, **kwargs):
        super().__init__(**kwargs)
        self.conv = gluon.nn.Conv2D(8, 3, strides=2, padding=1)
        self.bn = gluon.nn.BatchNorm()
        self.drop = gluon.nn.Dropout(0.3)
        self.heads = gluon.nn.HybridSequential()
        for _ in range(heads):
            self.heads.add(gluon.nn.Dense(num_classes))
        self.num_heads = heads

    def hybrid_forward(self, F, x):
        f = F.relu(self.bn(self.conv(x)))
        f = F.flatten(F.contrib.AdaptiveAvgPooling2D(f, output_size=2))
        f = self.drop(f)
        outs = [h(f) for h in self.heads]
        return tuple(outs) if self.num_heads > 1 else outs[0]


def get_tasn(net='resnet18', num_classes=NUM_CLASSES, input_size=32, att_size=16,
             sample_size=16, legacy_sampler=False, pretrained=None):
    return TinyFiveHead(num_classes)


def get_baseline(net='resnet18', num_classes=NUM_CLASSES, sample_size=16, pretrained=None):
    return TinyFiveHead(num_classes, heads=1)


class TASNLoss:
    """CE(att) + 0.5 (CE(part) + CE(master) + CE(part_aux) + CE(master_aux)) + KD."""

    def __init__(self, temperature=10.0, detach_teacher=False):
        self.t = temperature
        self.ce = gluon.loss.SoftmaxCrossEntropyLoss()

    def terms(self, outputs, label):
        att, part, master, part_aux, master_aux = outputs
        F = mx.nd
        kd = -(F.softmax(part / self.t) * F.log_softmax(master / self.t)).sum(axis=1)
        return dict(att=self.ce(att, label), part=self.ce(part, label),
                    master=self.ce(master, label), part_aux=self.ce(part_aux, label),
                    master_aux=self.ce(master_aux, label), kd=kd)

    def __call__(self, outputs, label):
        t = self.terms(outputs, label)
        return t['att'] + 0.5 * (t['part'] + t['master'] + t['part_aux'] + t['master_aux']) \
            + t['kd']


def make_fake_dataset(out_dir, num_train=24, num_val=10, size=32, seed=0):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'dataset.json'), 'w') as f:
        json.dump(dict(name='fake', num_classes=NUM_CLASSES, num_train=num_train,
                       num_val=num_val, size=size, seed=seed,
                       class_names=['c%d' % i for i in range(NUM_CLASSES)]), f)
    return out_dir


def read_dataset_info(data_dir):
    with open(os.path.join(data_dir, 'dataset.json')) as f:
        return json.load(f)


def _arrays(data_dir, split):
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


def get_train_iter(data_dir, batch_size, input_size=32, num_parts=1, part_index=0, seed=0,
                   num_threads=None, **aug):
    x, y = _arrays(data_dir, 'train')
    x, y = x[part_index::num_parts], y[part_index::num_parts]
    rs = np.random.RandomState(seed)
    order = rs.permutation(len(y))
    x, y = x[order].copy(), y[order]
    flip = rs.rand(len(y)) < 0.5
    x[flip] = x[flip][:, :, :, ::-1]
    return mx.io.NDArrayIter(x, y, batch_size, shuffle=False, last_batch_handle='discard')


def get_val_iter(data_dir, batch_size, input_size=32, num_parts=1, part_index=0,
                 num_threads=None):
    x, y = _arrays(data_dir, 'val')
    x, y = x[part_index::num_parts], y[part_index::num_parts]
    return mx.io.NDArrayIter(x, y, batch_size, shuffle=False, last_batch_handle='pad')


def components(**extra):
    d = dict(get_tasn=get_tasn, get_baseline=get_baseline, TASNLoss=TASNLoss,
             read_dataset_info=read_dataset_info, get_train_iter=get_train_iter,
             get_val_iter=get_val_iter)
    d.update(extra)
    return Components(**d)


def fake_config(tmp_path, **kw):
    data_dir = make_fake_dataset(str(tmp_path / 'data'))
    cfg = dict(dataset='synthetic', data_dir=data_dir, net='resnet18', method='tasn',
               batch_size=4, epochs=2, lr=0.1, lr_steps='1', momentum=0.9, wd=1e-4,
               input_size=32, att_size=16, sample_size=16, out=str(tmp_path / 'run'),
               progress=False, log_interval=2, keep_checkpoints=0, num_data_threads=1)
    cfg.update(kw)
    return cfg


# ------------------------------------------------------------------ the real synthetic set
import pytest  # noqa: E402

TINY = dict(num_classes=4, per_class_train=6, per_class_val=3, image_size=96, seed=0)
NO_AUG = dict(rand_mirror=False, max_rotate_angle=0, brightness=0, contrast=0, saturation=0,
              pca_noise=0)


# Made once per test session and shared by the modules that import these fixtures (a fixture
# imported into several modules is set up once per module; the cache makes that free).
_CACHE = {}


@pytest.fixture(scope='session')
def tiny_synthetic(tmp_path_factory):
    """A tiny packed synthetic set made by the library (4 classes, 24 train, 12 val, 96 px)."""
    if 'tiny' not in _CACHE:
        from tasn_gluon.data.synthetic import make_synthetic_dataset
        d = str(tmp_path_factory.mktemp('tiny_synthetic'))
        make_synthetic_dataset(d, num_threads=2, **TINY)
        _CACHE['tiny'] = d
    return _CACHE['tiny']


def real_config(data_dir, out, **kw):
    cfg = dict(dataset='synthetic', data_dir=data_dir, net='resnet18', method='tasn',
               batch_size=4, epochs=1, lr=0.01, lr_steps='100', momentum=0.9, wd=0.0,
               input_size=64, att_size=32, sample_size=32, out=str(out), progress=False,
               log_interval=100, keep_checkpoints=0, num_data_threads=2, eval_batch_size=12,
               aug=dict(NO_AUG))
    cfg.update(kw)
    return cfg


@pytest.fixture(scope='session')
def trained_runs(tiny_synthetic, tmp_path_factory):
    """A TASN and a baseline run of one short epoch on the tiny set: {method: run_dir}."""
    if 'runs' not in _CACHE:
        from tasn_gluon.engine import run
        root = tmp_path_factory.mktemp('trained_runs')
        runs = {}
        for method in ('tasn', 'baseline'):
            cfg = real_config(tiny_synthetic, root / method, method=method, epochs=1,
                              max_batches_per_epoch=2)
            run(cfg)
            runs[method] = cfg['out']
        _CACHE['runs'] = runs
    return dict(_CACHE['runs'])
