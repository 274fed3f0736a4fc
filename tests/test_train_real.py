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
from tasn_gluon.engine.training import Components, prepare_data_dir

from test_train_support import real_config, tiny_synthetic  # noqa: F401 (fixture)

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools')


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
    ra, rb = load_checkpoint(a['out']), load_checkpoint(b['out'])
    pa, pb = mx.nd.load(ra['params_path']), mx.nd.load(rb['params_path'])
    assert sorted(pa) == sorted(pb)
    for k in pa:
        assert np.array_equal(pa[k].asnumpy(), pb[k].asnumpy()), k
    with open(ra['states_path'], 'rb') as fa, open(rb['states_path'], 'rb') as fb:
        assert fa.read() == fb.read()
    assert [r['train_loss'] for r in ra['history']] == [r['train_loss'] for r in rb['history']]


def test_colour_on_the_device_batch(tiny_synthetic, tmp_path):
    """With ``color_on_device`` (the default on GPUs) the record iterator leaves the colour steps
    out and the trainer applies ``it.device_augment`` to each device's share of the batch."""
    from tasn_gluon.data import color
    calls = []
    original = color.BatchColorJitter.__call__

    def counting(self, data):
        calls.append(data.shape)
        return original(self, data)
    aug = dict(real_config(tiny_synthetic, tmp_path)['aug'], brightness=0.4, pca_noise=0.1,
               color_on_device=True)
    cfg = real_config(tiny_synthetic, tmp_path / 'run', epochs=1, max_batches_per_epoch=2,
                      aug=aug, num_cpu_contexts=2)
    color.BatchColorJitter.__call__ = counting
    try:
        hist = run(cfg)
    finally:
        color.BatchColorJitter.__call__ = original
    assert np.isfinite(hist[0]['train_loss'])
    batch = cfg['batch_size']
    assert calls == [(batch // 2, 3, cfg['input_size'], cfg['input_size'])] * 4, calls


def test_cli_train_one_step(tiny_synthetic, tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location('train_cli', os.path.join(TOOLS, 'train.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = str(tmp_path / 'cli')
    argv = ['--dataset', 'synthetic', '--data-dir', tiny_synthetic, '--method', 'baseline',
            '--net', 'resnet18', '--input-size', '64', '--sample-size', '32', '--att-size', '32',
            '--batch-size', '4', '--epochs', '1', '--max-batches-per-epoch', '2', '--out', out,
            '--no-progress', '--num-data-threads', '1']
    assert cli.main(argv) == 0
    assert load_checkpoint(out)['epoch'] == 1
    assert cli.main(argv + ['--gpus', '0-']) == 2
    assert 'not a GPU id' in capsys.readouterr().err


def test_synthetic_set_generated_once(tmp_path):
    """Generated on first use, reused after, and regenerated when the cached set was made by
    an older design of the generator (version 1 had no version field)."""
    calls = []

    def fake_make(out_dir, seed=0, **kw):
        calls.append(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, 'dataset.json'), 'w') as f:
            f.write(json.dumps({'synthetic': {'version': SYNTHETIC_VERSION}}))
    comps = Components(make_synthetic_dataset=fake_make)
    cache = str(tmp_path / 'cache')
    cfg = dict(dataset='synthetic', synthetic_dir=cache)
    assert prepare_data_dir(cfg, comps) == cache
    assert prepare_data_dir(cfg, comps) == cache
    assert calls == [cache]
    with open(os.path.join(cache, 'dataset.json'), 'w') as f:
        f.write(json.dumps({'synthetic': {'seed': 0}}))          # an old-design cache
    assert prepare_data_dir(cfg, comps) == cache and calls == [cache] * 2
    with pytest.raises(ValueError, match='--data-dir is required'):
        prepare_data_dir(dict(dataset='cub'), comps)


def test_ablation_switches():
    """kd_weight=0 drops the KD term; uniform_sampler samples with flat profiles (both sampled
    images become the same plain resize)."""
    from tasn_gluon.engine.training import build_loss, build_net
    cfg = dict(method='tasn', net='resnet18', input_size=64, att_size=32, sample_size=32,
               uniform_sampler=True)
    mx.random.seed(0)
    net = build_net(cfg, 3, [mx.cpu()])
    x = mx.nd.random.normal(shape=(2, 3, 64, 64))
    ex = net.explain(x, detail_channel=5)
    assert np.array_equal(ex['structure_image'].asnumpy(), ex['detail_image'].asnumpy())
    outs = net(x)
    assert len(outs) == 5 and all(np.isfinite(o.asnumpy()).all() for o in outs)
    label = mx.nd.array([0, 2])
    full = build_loss(dict(method='tasn'))
    no_kd = build_loss(dict(method='tasn', kd_weight=0.0))
    np.testing.assert_allclose(no_kd(outs, label).asnumpy(),
                               (full(outs, label) - full.terms(outs, label)['kd']).asnumpy(),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='--uniform-sampler'):
        build_net(dict(cfg, method='baseline'), 3, [mx.cpu()])
