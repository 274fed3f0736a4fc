"""tools/eval.py and the engine's evaluation: every image counted once, the JSON's keys."""
import importlib.util
import json
import os

import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.engine.evaluation import evaluate_checkpoint, validate, kd_loss_numpy
from tasn_gluon.engine.metrics import HEADS

from test_train_support import tiny_synthetic, trained_runs  # noqa: F401 (fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(name):
    spec = importlib.util.spec_from_file_location(name + '_cli',
                                                  os.path.join(ROOT, 'tools', name + '.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Ident(mx.gluon.HybridBlock):
    """Logits that encode the input's id: each image is counted where it is seen."""

    def hybrid_forward(self, F, x):
        return F.one_hot(F.mean(x, axis=(1, 2, 3)), 10) * 10


def test_validate_counts_padded_batches_once():
    ids = np.arange(10, dtype=np.float32)
    x = np.broadcast_to(ids[:, None, None, None], (10, 1, 2, 2)).copy()
    for bs in (1, 3, 4, 10, 16):
        it = mx.io.NDArrayIter(x, ids, bs, last_batch_handle='pad')
        res = validate(_Ident(), it, [mx.cpu()], method='baseline')
        assert res['num_images'] == 10 and res['top1'] == 1.0, bs
    # two contexts, a batch that does not split evenly
    it = mx.io.NDArrayIter(x, ids, 3, last_batch_handle='pad')
    res = validate(_Ident(), it, [mx.cpu(0), mx.cpu(1)], method='baseline')
    assert res['num_images'] == 10 and res['top1'] == 1.0


def test_kd_loss_numpy_matches_definition():
    rs = np.random.RandomState(0)
    p, m = rs.normal(size=(3, 5)) * 20, rs.normal(size=(3, 5)) * 20
    sp = np.exp(p / 10) / np.exp(p / 10).sum(1, keepdims=True)
    sm = np.exp(m / 10) / np.exp(m / 10).sum(1, keepdims=True)
    np.testing.assert_allclose(kd_loss_numpy(p, m), -(sp * np.log(sm)).sum(1), rtol=1e-10)


def test_eval_cli_every_image_once(tiny_synthetic, trained_runs, tmp_path, capsys):
    """12 val images with batch 5 (last batch padded by 3): the same numbers as batch 12."""
    cli = _cli('eval')
    out5, out12 = str(tmp_path / 'r5.json'), str(tmp_path / 'r12.json')
    assert cli.main(['--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
                     '--batch-size', '5', '--out', out5]) == 0
    assert 'master_aux' in capsys.readouterr().out
    assert cli.main(['--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
                     '--batch-size', '12', '--out', out12]) == 0
    r5, r12 = json.load(open(out5)), json.load(open(out12))
    for k in list(HEADS) + ['%s_top5' % h for h in HEADS] + ['kd_loss', 'num_images']:
        assert k in r5, k
    assert r5['num_images'] == 12
    for k in list(HEADS) + ['kd_loss', 'top1', 'top5']:
        assert r5[k] == pytest.approx(r12[k], rel=1e-5), k
    assert r5['top1'] == r5['master_aux'] and 0.0 <= r5['top1'] <= 1.0


def test_eval_baseline_and_params_file(tiny_synthetic, trained_runs, tmp_path):
    res = evaluate_checkpoint(trained_runs['baseline'], tiny_synthetic, [mx.cpu()],
                              batch_size=5)
    assert res['num_images'] == 12 and res['method'] == 'baseline'
    assert res['top1'] is not None and res.get('master_aux') is None and res['kd_loss'] is None
    params = os.path.join(trained_runs['tasn'], 'epoch-0001.params')
    res2 = evaluate_checkpoint(params, tiny_synthetic, [mx.cpu()], batch_size=12)
    res1 = evaluate_checkpoint(trained_runs['tasn'], tiny_synthetic, [mx.cpu()], batch_size=12)
    assert res2['master_aux'] == res1['master_aux']


def test_eval_errors(tiny_synthetic, trained_runs, tmp_path, capsys):
    cli = _cli('eval')
    assert cli.main(['--checkpoint', str(tmp_path / 'missing'), '--data-dir',
                     tiny_synthetic]) == 2
    assert 'does not exist' in capsys.readouterr().err
    lonely = tmp_path / 'lonely.params'
    lonely.write_bytes(open(os.path.join(trained_runs['tasn'], 'epoch-0001.params'),
                            'rb').read())
    assert cli.main(['--checkpoint', str(lonely), '--data-dir', tiny_synthetic]) == 2
    assert '--net' in capsys.readouterr().err
    # a wrong network description is named, not a crash
    assert cli.main(['--checkpoint', str(lonely), '--data-dir', tiny_synthetic, '--method',
                     'baseline', '--net', 'resnet18', '--num-classes', '4', '--input-size', '64',
                     '--att-size', '32', '--sample-size', '32']) == 2
    assert 'does not fit' in capsys.readouterr().err


def test_eval_exported_inference_graph(tiny_synthetic, trained_runs, tmp_path):
    """An exported TASNPredictor (NAME-symbol.json + NAME-0000.params) gives the checkpoint's
    master_aux accuracy."""
    from tasn_gluon.engine.evaluation import load_for_eval
    net, cfg, _, _ = load_for_eval(trained_runs['tasn'], [mx.cpu()])
    pred = net.predictor()
    pred.hybridize()
    pred(mx.nd.zeros((1, 3, cfg['input_size'], cfg['input_size'])))
    prefix = str(tmp_path / 'tasn')
    pred.export(prefix)
    ref = evaluate_checkpoint(trained_runs['tasn'], tiny_synthetic, [mx.cpu()], batch_size=5)
    res = evaluate_checkpoint(prefix + '-symbol.json', tiny_synthetic, [mx.cpu()], batch_size=5,
                              overrides=dict(input_size=cfg['input_size']))
    assert res['num_images'] == 12 and res['model_format'] == 'exported'
    assert res['method'] == 'tasn' and res['master_aux'] == ref['master_aux']
    assert res.get('att') is None
