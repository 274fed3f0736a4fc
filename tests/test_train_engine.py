"""The training engine's mechanics on a tiny stand-in network and in-memory data (fast): the run
directory's contents, resume equal to an uninterrupted run, the NaN guard, data parallelism over
two CPU contexts, and the configuration checks."""
import csv
import hashlib
import os

import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.errors import InputError
from tasn_gluon.engine import (CSV_COLUMNS, TrainingDiverged, find_checkpoint, load_checkpoint,
                               run)
from tasn_gluon.engine.builders import build_loss
from tasn_gluon.engine.config import resolve_config
from tasn_gluon.logs import run_log
from tasn_gluon.engine.training import train_step

from fakes import NUM_CLASSES, TinyFiveHead, fake_arrays, fake_config


def _params(run_dir):
    rec = load_checkpoint(run_dir)
    return {k: v.asnumpy() for k, v in mx.nd.load(rec['params_path']).items()}


def _sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_run_log_of_other_ranks_tags_the_console_and_writes_nothing(tmp_path):
    """Workers of rank r >= 1 write no train.log; their console lines say [rank r] during the
    run (a launcher mixes the workers' output), and the console is as before afterwards."""
    import io
    import logging
    from tasn_gluon.logs import console
    stream = io.StringIO()
    handler = console(stream=stream)
    log = logging.getLogger('tasn_gluon.test')
    try:
        with run_log(str(tmp_path / 'run'), rank=3):
            log.info('during')
        log.info('after')
    finally:
        logging.getLogger('tasn_gluon').removeHandler(handler)
    during, after = stream.getvalue().splitlines()
    assert during.endswith(' INFO [rank 3] during') and after.endswith(' INFO after')
    assert not os.path.exists(tmp_path / 'run')


def test_progress_bar_only_on_a_terminal_unless_asked(monkeypatch):
    import io
    import sys
    from tasn_gluon.logs import progress_bar
    monkeypatch.setattr(sys, 'stderr', io.StringIO())          # a log file, not a terminal
    assert progress_bar(None, 10, 'x', 'img') is None
    assert progress_bar(True, 0, 'x', 'img') is None           # nothing to count
    bar = progress_bar(True, 10, 'x', 'img')
    bar.close()
    assert 'x:   0%' in sys.stderr.getvalue() and '0/10' in sys.stderr.getvalue()
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True, raising=False)
    bar = progress_bar(None, 3, 'x', 'img')
    assert bar is not None and progress_bar(False, 3, 'x', 'img') is None
    bar.close()


@pytest.mark.parametrize('method', ['tasn', 'baseline'])
def test_train_writes_run_directory(tmp_path, method, fake_engine):
    cfg = fake_config(tmp_path, method=method, epochs=3, lr_steps='2')
    with run_log(cfg['out']):
        hist = run(cfg)
    out = cfg['out']
    assert len(hist) == 3
    for name in ('config.json', 'train.log', 'metrics.csv', 'curves.png', 'checkpoint.json',
                 'epoch-0003.params', 'epoch-0003.states', 'epoch-0003.json'):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(out, 'metrics.csv')) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == CSV_COLUMNS
    assert [int(float(r['epoch'])) for r in rows] == [1, 2, 3]
    losses = [float(r['train_loss']) for r in rows]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert float(rows[2]['lr']) == pytest.approx(0.01)
    assert all(int(float(r['num_val_images'])) == 10 for r in rows)
    if method == 'tasn':
        assert all(r['val_master_aux'] != '' and r['val_kd_loss'] != '' for r in rows)
        assert rows[0]['val_top1'] == rows[0]['val_master_aux']
        assert all(float(r['val_distinct_maps']) == 7 for r in rows)   # the stand-in's count
    else:
        assert rows[0]['val_master_aux'] == '' and rows[0]['val_top1'] != ''
    rec = find_checkpoint(out)
    assert rec['epoch'] == 3 and len(rec['history']) == 3


def test_resume_equals_uninterrupted(tmp_path, fake_engine):
    """2 epochs straight == 1 epoch, stop, resume for 1: bit-identical parameters."""
    straight = fake_config(tmp_path / 'a', epochs=2)
    run(straight)
    first = fake_config(tmp_path / 'b', epochs=1)
    run(first)
    assert find_checkpoint(first['out'])['epoch'] == 1
    run(dict(resume=first['out'], epochs=2, progress=False))
    pa, pb = _params(straight['out']), _params(first['out'])
    assert sorted(pa) == sorted(pb)
    for k in pa:
        assert np.array_equal(pa[k], pb[k]), k
    ha = load_checkpoint(straight['out'])['history']
    hb = load_checkpoint(first['out'])['history']
    for ra, rb in zip(ha, hb):
        assert ra['train_loss'] == rb['train_loss'] and ra['val_top1'] == rb['val_top1']


def test_resume_refuses_structural_change_and_clobbering(tmp_path, fake_engine):
    cfg = fake_config(tmp_path, epochs=1)
    run(cfg)
    with pytest.raises(ValueError, match='already holds a checkpoint'):
        run(fake_config(tmp_path, epochs=2))
    with pytest.raises(ValueError, match='sample_size'):
        run(dict(resume=cfg['out'], epochs=2, sample_size=8, progress=False))
    with pytest.raises(ValueError, match='trains into that run directory'):
        run(dict(resume=cfg['out'], epochs=2, out=str(tmp_path / 'elsewhere')))


def test_nan_loss_stops_with_checkpoint_intact(tmp_path, fake_engine, monkeypatch):
    cfg = fake_config(tmp_path, epochs=1)
    run(cfg)
    rec = load_checkpoint(cfg['out'])
    before = {p: _sha(p) for p in (rec['params_path'], rec['states_path'], rec['record_path'])}
    from tasn_gluon.losses import TASNLoss

    class NaNLoss(TASNLoss):
        def hybrid_forward(self, F, *args):
            return super().hybrid_forward(F, *args) * float('nan')

    monkeypatch.setattr('tasn_gluon.engine.builders.TASNLoss', NaNLoss)
    with pytest.raises(TrainingDiverged, match='NaN'):
        run(dict(resume=cfg['out'], epochs=2, progress=False))
    rec2 = load_checkpoint(cfg['out'])
    assert rec2['epoch'] == 1
    assert {p: _sha(p) for p in before} == before
    assert not os.path.exists(os.path.join(cfg['out'], 'epoch-0002.params'))


def test_two_cpu_contexts_match_one(tmp_path):
    """A data-parallel step on cpu(0)+cpu(1) equals, on one context, the sum of the gradients of
    the two halves (BatchNorm statistics are per device, as in the official code), up to float
    rounding (the reduction order differs): rtol 1e-5."""
    from mxnet import autograd, gluon
    loss_fn = build_loss(resolve_config(dict(method='tasn')))
    rs = np.random.RandomState(0)
    data = mx.nd.array(rs.normal(size=(8, 3, 32, 32)))
    label = mx.nd.array(np.arange(8) % 3)

    def make(ctxs):
        mx.random.seed(1)
        net = TinyFiveHead(3)
        net.initialize(mx.init.Xavier(), ctx=ctxs)
        net.hybridize()
        tr = gluon.Trainer(net.collect_params(), 'sgd', dict(learning_rate=0.1, momentum=0.9),
                           kvstore='device')
        return net, tr

    two = [mx.cpu(0), mx.cpu(1)]
    net2, tr2 = make(two)
    mx.random.seed(5)
    train_step(net2, tr2, loss_fn, data, label, two, 8)

    one = [mx.cpu(0)]
    net1, tr1 = make(one)
    for p in net1.collect_params().values():
        p.grad_req = 'add' if p.grad_req != 'null' else 'null'
    net1.collect_params().zero_grad()
    mx.random.seed(5)
    with autograd.record():   # the same random draws in the same order as the two-device step
        outs = [net1(data[:4]), net1(data[4:])]
        losses = [loss_fn(o, y) for o, y in zip(outs, [label[:4], label[4:]])]
    autograd.backward(losses)
    tr1.step(8)
    params2 = net2._collect_params_with_prefix()
    p2 = {k: v.data(mx.cpu(0)).asnumpy() for k, v in params2.items()}
    p2b = {k: v.data(mx.cpu(1)).asnumpy() for k, v in params2.items()}
    p1 = {k: v.data().asnumpy() for k, v in net1._collect_params_with_prefix().items()}
    assert sorted(p1) == sorted(p2)
    for k in p1:
        if 'running' in k:
            continue  # per-device statistics: each device keeps its own half's
        np.testing.assert_allclose(p2[k], p1[k], rtol=1e-5, atol=1e-6, err_msg=k)
        np.testing.assert_array_equal(p2[k], p2b[k], err_msg=k)


def test_train_on_two_cpu_contexts_end_to_end(tmp_path, fake_engine):
    """Validation split over two contexts counts every image once, and the accuracy it records
    is that of the saved parameters: recomputed here on one context, image by image (an image
    whose two best logits lie within float32 rounding may go either way)."""
    cfg = fake_config(tmp_path, epochs=1, num_cpu_contexts=2)
    hist = run(cfg)
    assert hist[0]['num_val_images'] == 10 and hist[0]['train_loss'] > 0
    net = TinyFiveHead(NUM_CLASSES)
    net.load_parameters(load_checkpoint(cfg['out'])['params_path'], ctx=mx.cpu())
    x, y = fake_arrays(cfg['data_dir'], 'val')
    logits = net.reported(net(mx.nd.array(x))).asnumpy()
    top2 = np.sort(logits, axis=1)[:, -2:]
    ties = int((top2[:, 1] - top2[:, 0] <= 1e-5 * np.abs(top2).max(axis=1)).sum())
    correct = int((logits.argmax(axis=1) == y).sum())
    assert abs(hist[0]['val_top1'] * 10 - correct) <= ties, (hist[0]['val_top1'], correct, ties)


def test_batch_size_must_divide_devices(tmp_path, fake_engine):
    cfg = fake_config(tmp_path, epochs=1, num_cpu_contexts=3, batch_size=4)
    with pytest.raises(ValueError, match='does not divide evenly over 3 devices'):
        run(cfg)


def test_bad_settings_are_clear_errors(tmp_path, fake_engine):
    with pytest.raises(ValueError, match='--lr-steps'):
        run(fake_config(tmp_path, lr_steps='5,2'))
    with pytest.raises(ValueError, match='--sample-size'):
        run(fake_config(tmp_path, sample_size=64))
    with pytest.raises(InputError, match='--data-dir .*nowhere: no such folder'):
        run(fake_config(tmp_path, data_dir=str(tmp_path / 'nowhere')))
    with pytest.raises(ValueError, match='unknown run settings: bogus'):
        run(fake_config(tmp_path, bogus=1))
    assert not os.path.exists(str(tmp_path / 'run'))           # a failed start writes nothing


def test_resume_needs_no_imagenet_files(tmp_path, fake_engine):
    """The ImageNet weights a run started from are not read again when it resumes (its
    checkpoint holds the weights): the run continues after the files are gone, e.g. on another
    machine; a new run names a missing file before anything is written."""
    weights = tmp_path / 'resnet-50-0000.params'
    weights.write_bytes(b'x')
    cfg = fake_config(tmp_path, epochs=1, pretrained=str(weights), att_pretrained=str(weights),
                      from_scratch=False)
    run(cfg)
    weights.unlink()
    run(dict(resume=cfg['out'], epochs=2, progress=False))
    assert load_checkpoint(cfg['out'])['epoch'] == 2
    with pytest.raises(InputError, match='--pretrained .*resnet-50-0000.params'):
        run(fake_config(tmp_path / 'new', epochs=1, pretrained=str(weights)))
    assert not os.path.exists(str(tmp_path / 'new' / 'run'))
