"""tools/eval.py and the engine's evaluation: every image counted once, the JSON's keys."""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.data import get_val_iter
from tasn_gluon.engine.evaluation import evaluate_checkpoint
from tasn_gluon.engine.models import load_model
from tasn_gluon.engine.validation import kd_loss_numpy, validate
from tasn_gluon.losses import HEADS
from tasn_gluon.model_zoo import ModelKind

# Two float32 executions of one network (another batch size, or the exported graph instead of
# the training block) round differently, ~1e-6 of the logits' scale here (float32 eps 6e-8
# times the depth of the net). An accuracy is the same in both only when no image's top two
# logits are that close: MARGIN, far above the rounding, is checked first (_assert_decisive).
MARGIN = 1e-4


def _assert_decisive(run_dir, data_dir):
    """Every val image's top two logits of every head differ by more than MARGIN times the
    head's largest logit, so that rounding cannot change a prediction. Returns the number of
    distinct attention maps of each image (TASN)."""
    model = load_model(run_dir, [mx.cpu()])
    view = model.net.validation_net()
    (batch,) = list(get_val_iter(data_dir, 12, model.input_size, num_threads=1))
    outs = view(batch.data[0].as_in_context(mx.cpu()))
    for logits in (outs[:len(HEADS)] if model.kind == 'tasn' else [outs]):
        z = np.sort(logits.asnumpy(), axis=1)
        assert np.all(z[:, -1] - z[:, -2] > MARGIN * np.abs(z).max()), z[:, -2:]
    return outs[-1].asnumpy() if model.kind == 'tasn' else None


class _Ident(ModelKind, mx.gluon.HybridBlock):
    """Logits that encode the input's id: each image is counted where it is seen (a model of
    one head, as the baseline)."""
    method, validation_outputs, reported_head = 'baseline', ('top',), 'top'

    def hybrid_forward(self, F, x):
        return F.one_hot(F.mean(x, axis=(1, 2, 3)), 10) * 10


def test_validate_counts_padded_batches_once():
    ids = np.arange(10, dtype=np.float32)
    x = np.broadcast_to(ids[:, None, None, None], (10, 1, 2, 2)).copy()
    for bs in (1, 3, 4, 10, 16):
        it = mx.io.NDArrayIter(x, ids, bs, last_batch_handle='pad')
        res = validate(_Ident(), it, [mx.cpu()])
        assert res['num_images'] == 10 and res['top1'] == 1.0, bs
    # two contexts, a batch that does not split evenly
    it = mx.io.NDArrayIter(x, ids, 3, last_batch_handle='pad')
    res = validate(_Ident(), it, [mx.cpu(0), mx.cpu(1)])
    assert res['num_images'] == 10 and res['top1'] == 1.0


def test_kd_loss_numpy_matches_definition():
    rs = np.random.RandomState(0)
    p, m = rs.normal(size=(3, 5)) * 20, rs.normal(size=(3, 5)) * 20
    sp = np.exp(p / 10) / np.exp(p / 10).sum(1, keepdims=True)
    sm = np.exp(m / 10) / np.exp(m / 10).sum(1, keepdims=True)
    np.testing.assert_allclose(kd_loss_numpy(p, m), -(sp * np.log(sm)).sum(1), rtol=1e-10)


def test_eval_cli_every_image_once(tiny_synthetic, trained_runs, tmp_path, tool):
    """12 val images with batch 5 (last batch padded by 3): the same numbers as batch 12."""
    out5, out12 = str(tmp_path / 'r5.json'), str(tmp_path / 'r12.json')
    done = tool('eval', '--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
                '--batch-size', '5', '--out', out5)
    assert done.returncode == 0, done.stderr
    assert 'master_aux' in done.stdout and 'distinct attention maps' in done.stdout
    r12 = evaluate_checkpoint(trained_runs['tasn'], tiny_synthetic, [mx.cpu()], batch_size=12,
                              out=out12)
    r5 = json.load(open(out5))
    for k in list(HEADS) + ['%s_top5' % h for h in HEADS] + ['kd_loss', 'num_images',
                                                              'distinct_maps']:
        assert k in r5, k
    distinct = _assert_decisive(trained_runs['tasn'], tiny_synthetic)
    assert r5['num_images'] == 12 and r5['distinct_maps'] == pytest.approx(distinct.mean())
    explained = load_model(trained_runs['tasn'], [mx.cpu()]).net.explain(
        mx.nd.array(next(iter(get_val_iter(tiny_synthetic, 12, 64, num_threads=1))).data[0]
                    .asnumpy()))
    np.testing.assert_array_equal(explained['num_distinct'].asnumpy(), distinct)
    assert np.all(explained['distinct'].asnumpy().sum(axis=1) == distinct)
    for k in list(HEADS) + ['top1', 'top5']:
        assert r5[k] == r12[k], k
    assert r5['kd_loss'] == pytest.approx(r12['kd_loss'], rel=1e-5)  # ~1e-6 from the rounding
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


def test_eval_errors(tiny_synthetic, trained_runs, tmp_path, tool):
    done = tool('eval', '--checkpoint', tmp_path / 'missing', '--data-dir', tiny_synthetic)
    assert done.returncode == 2 and 'no such file or folder' in done.stderr
    lonely = tmp_path / 'lonely.params'
    lonely.write_bytes(open(os.path.join(trained_runs['tasn'], 'epoch-0001.params'),
                            'rb').read())
    with pytest.raises(Exception, match='--net'):
        load_model(str(lonely), [mx.cpu()])
    # a wrong network description is named, not a crash
    done = tool('eval', '--checkpoint', lonely, '--data-dir', tiny_synthetic, '--method',
                'baseline', '--net', 'resnet18', '--num-classes', '4', '--input-size', '64',
                '--att-size', '32', '--sample-size', '32')
    assert done.returncode == 2 and 'does not fit' in done.stderr
    assert 'Traceback' not in done.stderr


def test_eval_exported_inference_graph(tiny_synthetic, trained_runs, tmp_path):
    """An exported TASNPredictor (NAME-symbol.json + NAME-0000.params) gives the checkpoint's
    master_aux accuracy."""
    from symbols.export import export_checkpoint
    prefix = str(tmp_path / 'tasn')
    export_checkpoint(trained_runs['tasn'], prefix)
    ref = evaluate_checkpoint(trained_runs['tasn'], tiny_synthetic, [mx.cpu()], batch_size=5)
    res = evaluate_checkpoint(prefix + '-symbol.json', tiny_synthetic, [mx.cpu()], batch_size=5)
    _assert_decisive(trained_runs['tasn'], tiny_synthetic)
    assert res['num_images'] == 12 and res['model_format'] == 'exported'
    assert res['method'] == 'tasn' and res['master_aux'] == ref['master_aux']
    assert res.get('att') is None
