"""Training with the library's own TASN, baseline, loss and record pipeline on a tiny synthetic
set (CPU, small sizes: input 64, attention 32, samples 32, ResNet-18, batch 4)."""
import csv
import json
import os

import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.engine import CSV_COLUMNS, load_checkpoint, run
from tasn_gluon.data.synthetic import SYNTHETIC_VERSION
from tasn_gluon.engine.builders import prepare_data_dir
from tasn_gluon.engine.config import resolve_config
from tasn_gluon.errors import ConfigError, DatasetError

from conftest import assert_same_checkpoints, real_config


@pytest.mark.parametrize('method', ['tasn', 'baseline'])
def test_few_steps_loss_finite_and_falls(tiny_synthetic, tmp_path, method):
    """The same first batch every epoch (no shuffle, no augmentation, one batch per epoch):
    the training loss must fall; the run directory must hold what it should."""
    aug = dict(real_config(tiny_synthetic, tmp_path)['aug'], shuffle=False)
    cfg = real_config(tiny_synthetic, tmp_path / method, method=method, epochs=4,
                      max_batches_per_epoch=1, aug=aug)
    hist = run(cfg)
    losses = [r['train_loss'] for r in hist]
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < 0.7 * losses[0], losses
    out = cfg['out']
    for e in range(1, 5):
        assert os.path.isfile(os.path.join(out, 'epoch-%04d.params' % e))
        assert os.path.isfile(os.path.join(out, 'epoch-%04d.states' % e))
    with open(os.path.join(out, 'metrics.csv')) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == CSV_COLUMNS and len(rows) == 4
    assert all(int(r['num_val_images']) == 12 for r in rows)
    filled = [c for c in CSV_COLUMNS if rows[0][c] != '']
    if method == 'tasn':
        assert set(filled) == set(CSV_COLUMNS)
    else:
        assert 'val_master_aux' not in filled and 'val_top1' in filled
    assert os.path.getsize(os.path.join(out, 'curves.png')) > 1000


def test_resume_bit_identical_real_pipeline(tiny_synthetic, tmp_path):
    """2 epochs straight vs 1 epoch + resume for 1 (shuffled, augmented, 2 decoding threads,
    random detail maps): bit-identical parameters and momentum states."""
    aug = dict(rand_mirror=True, brightness=0.4, max_rotate_angle=10)
    a = real_config(tiny_synthetic, tmp_path / 'a', epochs=2, max_batches_per_epoch=2,
                    lr_steps='1', aug=aug)
    b = dict(a, out=str(tmp_path / 'b'), epochs=1)
    run(a)
    run(b)
    run(dict(resume=b['out'], epochs=2, progress=False))
    assert_same_checkpoints(a['out'], b['out'])


def test_colour_on_the_device_batch(tiny_synthetic, tmp_path):
    """With ``augment_on_device`` (the default on GPUs) the record iterator leaves the colour
    steps out and the trainer applies ``it.device_augment`` to each device's share of the
    batch."""
    from tasn_gluon.data import color
    calls = []
    original = color.BatchColorJitter.__call__

    def counting(self, data):
        calls.append(data.shape)
        return original(self, data)
    aug = dict(real_config(tiny_synthetic, tmp_path)['aug'], brightness=0.4, pca_noise=0.1)
    cfg = real_config(tiny_synthetic, tmp_path / 'run', epochs=1, max_batches_per_epoch=2,
                      aug=aug, num_cpu_contexts=2, augment_on_device=True)
    color.BatchColorJitter.__call__ = counting
    try:
        hist = run(cfg)
    finally:
        color.BatchColorJitter.__call__ = original
    assert np.isfinite(hist[0]['train_loss'])
    batch = cfg['batch_size']
    assert calls == [(batch // 2, 3, cfg['input_size'], cfg['input_size'])] * 4, calls


def test_cli_train_one_step(tiny_synthetic, tmp_path, tool):
    out = str(tmp_path / 'cli')
    argv = ['--dataset', 'synthetic', '--data-dir', tiny_synthetic, '--method', 'baseline',
            '--net', 'resnet18', '--input-size', '64', '--sample-size', '32', '--att-size', '32',
            '--batch-size', '4', '--epochs', '1', '--max-batches-per-epoch', '2',
            '--no-progress', '--num-data-threads', '1']
    done = tool('train', *argv, '--out', out)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(out)['epoch'] == 1
    assert 'epoch 1/1' in open(os.path.join(out, 'train.log')).read()
    bad = tool('train', *argv, '--out', str(tmp_path / 'bad'), '--gpus', '0-')
    assert bad.returncode == 2 and 'not a GPU id' in bad.stderr
    assert 'Traceback' not in bad.stderr and not os.path.exists(str(tmp_path / 'bad'))


def test_synthetic_set_generated_once(synthetic_cache, monkeypatch):
    """Generated on first use, reused after, and regenerated when the cached set was made by
    an older design of the generator (version 1 had no version field)."""
    calls = []

    def fake_make(out_dir, num_classes=6, per_class_train=160, per_class_val=40,
                  image_size=256, seed=0, quality=95, num_threads=None):
        calls.append(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, 'dataset.json'), 'w') as f:
            f.write(json.dumps({'synthetic': {'version': SYNTHETIC_VERSION}}))
    monkeypatch.setattr('tasn_gluon.data.synthetic.make_synthetic_dataset', fake_make)
    cfg = resolve_config(dict(dataset='synthetic'))
    assert prepare_data_dir(cfg) == synthetic_cache
    assert prepare_data_dir(cfg) == synthetic_cache
    assert calls == [synthetic_cache]
    with open(os.path.join(synthetic_cache, 'dataset.json'), 'w') as f:
        f.write(json.dumps({'synthetic': {'seed': 0}}))          # an old-design cache
    assert prepare_data_dir(cfg) == synthetic_cache and calls == [synthetic_cache] * 2
    with pytest.raises(DatasetError, match='give --data-dir'):  # a resume never generates
        os.remove(os.path.join(synthetic_cache, 'dataset.json'))
        prepare_data_dir(cfg, may_generate=False)
    with pytest.raises(ConfigError, match='--data-dir is required'):
        prepare_data_dir(resolve_config(dict(dataset='cub', from_scratch=True)))


def test_ablation_switches():
    """kd_weight=0 drops the KD term; uniform_sampler samples with flat profiles (both sampled
    images become the same plain resize)."""
    from tasn_gluon.engine.builders import build_loss, build_net
    cfg = resolve_config(dict(method='tasn', net='resnet18', input_size=64, att_size=32,
                              sample_size=32, uniform_sampler=True, num_classes=3,
                              dataset='synthetic'))
    mx.random.seed(0)
    net = build_net(cfg, [mx.cpu()])
    x = mx.nd.random.normal(shape=(2, 3, 64, 64))
    ex = net.explain(x, detail_channel=5)
    assert np.array_equal(ex['structure_image'].asnumpy(), ex['detail_image'].asnumpy())
    outs = net(x)
    assert len(outs) == 5 and all(np.isfinite(o.asnumpy()).all() for o in outs)
    label = mx.nd.array([0, 2])
    full = build_loss(cfg)
    no_kd = build_loss(cfg.replace(kd_weight=0.0))
    np.testing.assert_allclose(no_kd(outs, label).asnumpy(),
                               (full(outs, label) - full.terms(outs, label)['kd']).asnumpy(),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='--uniform-sampler'):
        cfg.replace(method='baseline')
