"""The learning-rate schedule (GluonCV's LRScheduler / LRSequential, per iteration): step mode
reproduces the recipes' step rule exactly; warm-up and cosine against their closed forms; a
run resumed across an epoch boundary with cosine + warm-up is bit-identical (stand-in engine)."""
import math

import numpy as np
import pytest

from tasn_gluon.engine import load_checkpoint, run
from tasn_gluon.engine import training
from tasn_gluon.engine.config import read_saved_config, recipe_config, resolve_config
from tasn_gluon.engine.schedule import lr_at_epoch, lr_schedule

from conftest import assert_same_checkpoints
from fakes import fake_config


@pytest.mark.parametrize('dataset,num_train,batch', [('cub', 5994, 96), ('inat', 579184, 96),
                                                     ('synthetic', 1200, 16)])
def test_step_schedule_equals_lr_at_epoch_at_every_iteration(dataset, num_train, batch):
    """Every iteration of the recipe's whole schedule (cub: 300 epochs x 62 iterations, inat:
    60 x 6033): exactly lr_at_epoch of its epoch. Both compute lr * factor ** n with the same
    float operations, and GluonCV's step count (iteration >= step * iters_per_epoch) is the
    epoch's (epoch >= step) in integers, so == holds, not just closeness."""
    cfg = recipe_config(dataset)
    ipe = num_train // batch
    schedule = lr_schedule(cfg, ipe)
    bad = [i for i in range(cfg.epochs * ipe) if schedule(i) != lr_at_epoch(cfg, i // ipe)]
    assert bad == []
    assert schedule(0) == cfg.lr and schedule(cfg.epochs * ipe - 1) == \
        cfg.lr * cfg.lr_factor ** len(cfg.lr_steps)


def test_step_schedule_with_warmup_after_the_warmup_is_exact():
    cfg = resolve_config(dict(dataset='cub', warmup_epochs=5))
    ipe = 62
    schedule = lr_schedule(cfg, ipe)
    assert all(schedule(i) == lr_at_epoch(cfg, i // ipe)
               for i in range(5 * ipe, cfg.epochs * ipe))
    assert schedule(0) == 0.0 and schedule(5 * ipe - 1) == cfg.lr


def test_warmup_and_cosine_closed_forms():
    """Warm-up: lr * i / (W - 1) for i < W (GluonCV computes lr + (0 - lr)(1 - i / (W - 1)):
    three roundings, so within 4 eps lr), exactly 0 first and lr last. Cosine over the n
    iterations after it: lr (1 + cos(pi T / (n - 1))) / 2 exactly (the same operations: the
    halving is exact in binary), lr first and exactly 0 last."""
    lr, epochs, warm, ipe = 0.1, 10, 2, 7
    cfg = resolve_config(dict(dataset='synthetic', lr=lr, epochs=epochs, warmup_epochs=warm,
                              lr_mode='cosine'))
    schedule = lr_schedule(cfg, ipe)
    w, n = warm * ipe, (epochs - warm) * ipe
    eps = np.finfo(np.float64).eps
    for i in range(w):
        assert abs(schedule(i) - lr * i / (w - 1)) <= 4 * eps * lr, i
    assert schedule(0) == 0.0 and schedule(w - 1) == lr
    for t in range(n):
        assert schedule(w + t) == lr * (1 + math.cos(math.pi * t / (n - 1))) / 2, t
    assert schedule(w) == lr and schedule(w + n - 1) == 0.0
    values = [schedule(i) for i in range(w, w + n)]
    assert all(a > b for a, b in zip(values, values[1:]))          # strictly decreasing
    no_warm = lr_schedule(cfg.replace(warmup_epochs=0), ipe)
    assert no_warm(0) == lr and no_warm(epochs * ipe - 1) == 0.0


def test_schedule_settings_are_checked():
    with pytest.raises(ValueError, match='--lr-mode'):
        resolve_config(dict(lr_mode='poly'))
    with pytest.raises(ValueError, match='--warmup-epochs'):
        resolve_config(dict(dataset='synthetic', warmup_epochs=6))        # epochs 6
    with pytest.raises(ValueError, match='inside the 10 warm-up epochs'):
        resolve_config(dict(dataset='cub', lr_steps='5,100', warmup_epochs=10))
    resolve_config(dict(dataset='cub', lr_steps='5,100', warmup_epochs=10, lr_mode='cosine'))
    with pytest.raises(ValueError, match='at least 2 iterations'):
        lr_schedule(resolve_config(dict(dataset='synthetic', epochs=1, lr_mode='cosine')), 1)
    with pytest.raises(ValueError, match='warm-up needs at least 2'):
        lr_schedule(resolve_config(dict(dataset='synthetic', warmup_epochs=1)), 1)


def test_resume_across_an_epoch_boundary_cosine_warmup(tmp_path, fake_engine, monkeypatch):
    """3 epochs (1 of warm-up, then cosine) straight vs stopped after epoch 2 and resumed:
    bit-identical parameters, trainer states and history; the rate set before every step is
    the schedule's at the run's iteration count, in both runs."""
    settings = dict(epochs=3, warmup_epochs=1, lr_mode='cosine', lr=0.1)
    rates = {}
    real_step, real_epoch = training.train_step, training.train_epoch

    def recording_step(net, trainer, *args, **kwargs):
        rates.setdefault(current[0], []).append(trainer.learning_rate)
        return real_step(net, trainer, *args, **kwargs)

    def stop_after_two(tr, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(tr, epoch)
    monkeypatch.setattr(training, 'train_step', recording_step)

    current = ['straight']
    straight = fake_config(tmp_path / 'a', **settings)
    run(straight)
    current[0] = 'stopped'
    stopped = fake_config(tmp_path / 'b', **settings)
    monkeypatch.setattr(training, 'train_epoch', stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        run(stopped)
    assert load_checkpoint(stopped['out'])['epoch'] == 2
    monkeypatch.setattr(training, 'train_epoch', real_epoch)
    run(dict(resume=stopped['out'], progress=False))

    ra, rb = assert_same_checkpoints(straight['out'], stopped['out'],
                                     history_keys=('lr', 'train_loss', 'val_loss', 'val_top1'))

    ipe = 24 // 4                                   # the stand-in set: 24 images, batch 4
    schedule = lr_schedule(read_saved_config(ra['config'], 'the record'), ipe)
    expected = [schedule(i) for i in range(3 * ipe)]
    assert rates['straight'] == expected == rates['stopped']
    assert expected[0] == 0.0 and expected[ipe - 1] == 0.1 and expected[ipe] == 0.1
    assert expected[-1] == 0.0
    assert [r['lr'] for r in ra['history']] == [expected[0], expected[ipe], expected[2 * ipe]]


def test_train_tool_checks_the_schedule_flags(tool, tmp_path):
    res = tool('train', '--dataset', 'synthetic', '--warmup-epochs', 3, '--epochs', 3,
               '--out', tmp_path / 'run')
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith('error: --warmup-epochs must be')
    res = tool('train', '--lr-mode', 'poly', '--out', tmp_path / 'run')
    assert res.returncode == 2 and "'poly'" in res.stderr and 'cosine' in res.stderr
