"""Validation: the accuracies (top-1, top-5) of every head a model has, the KD loss and the
number of distinct attention maps, over a whole val iterator.

Every image of the validation set is counted exactly once: the iterator pads its last batch
(``batch.pad`` trailing entries) and those entries are dropped here. What the model outputs is
the model's to say (``model_zoo.ModelKind``): the names of its validation outputs and its
reported head.
"""
import mxnet as mx
import numpy as np

from ..errors import TrainingDiverged
from ..losses import distillation_loss
from ..model_zoo import DISTINCT_MAPS
from .metrics import TopKCounter

__all__ = ['validate', 'kd_loss_numpy']


def kd_loss_numpy(part_logits, master_logits, temperature=10.0):
    """Per-sample KD term of spec section 6: -sum_k softmax(part/T)_k log softmax(master/T)_k,
    for NumPy logits, by the objective's own ``distillation_loss`` in float64."""
    part = mx.nd.array(part_logits, dtype=np.float64)
    master = mx.nd.array(master_logits, dtype=np.float64)
    return distillation_loss(mx.nd, part, master, temperature).asnumpy()


def _outputs(net, x):
    out = net(x)
    return list(out) if isinstance(out, (list, tuple)) else [out]


class _Tally:
    """Running sums of one validation pass."""

    def __init__(self, heads):
        self.counters = {h: TopKCounter() for h in heads}
        self.loss = self.kd = self.distinct = 0.0
        self.images = 0


def validate(model, val_iter, ctx, loss_fn=None, temperature=10.0, max_batches=None):
    """Runs ``model`` (a ``model_zoo.ModelKind``) in predict mode over the whole of
    ``val_iter`` (reset first).

    Returns a dict with, per head, top-1 and top-5 (``att``, ``att_top5``, ...; the baseline's
    one head is ``top``), ``top1`` and ``top5`` (the reported head's), ``loss`` (mean of
    ``loss_fn`` if given), ``kd_loss`` (a model with part and master heads) and
    ``distinct_maps`` (TASN: the mean number of distinct attention maps per image), and
    ``num_images``. Non-finite logits raise TrainingDiverged (the parameters are corrupt or the
    training diverged).
    """
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    names = list(model.validation_outputs)
    heads = [n for n in names if n != DISTINCT_MAPS]
    net = model.validation_net()
    tally = _Tally(heads)
    val_iter.reset()
    for i, batch in enumerate(val_iter):
        if max_batches is not None and i >= max_batches:
            break
        _score_batch(net, batch, ctx, names, heads, tally, loss_fn, temperature, i)
    return _summary(model, heads, tally, loss_fn)


def _score_batch(net, batch, ctx, names, heads, tally, loss_fn, temperature, i):
    data, label = batch.data[0], batch.label[0]
    valid = data.shape[0] - int(batch.pad or 0)
    if valid <= 0:
        return
    datas = mx.gluon.utils.split_and_load(data, ctx, even_split=False)
    labels = mx.gluon.utils.split_and_load(label, ctx, even_split=False)
    outs = [_outputs(net, x) for x in datas]
    if len(outs[0]) != len(names):   # the model's own answer disagrees with its graph: a bug
        raise RuntimeError('the network returned %d outputs; its kind says %d (%s)'
                           % (len(outs[0]), len(names), ', '.join(names)))
    got = {n: np.concatenate([o[j].asnumpy() for o in outs], axis=0)[:valid]
           for j, n in enumerate(names)}
    lab = label.asnumpy()[:valid]
    for h in heads:
        if not np.all(np.isfinite(got[h])):
            raise TrainingDiverged('non-finite %s logits in validation batch %d: the network '
                                   'has diverged or its parameters are corrupt' % (h, i + 1))
        tally.counters[h].update(got[h], lab)
    if loss_fn is not None:
        per_device = [o[:len(heads)] if len(heads) > 1 else o[0] for o in outs]
        values = np.concatenate([loss_fn(o, y).asnumpy().reshape(-1)
                                 for o, y in zip(per_device, labels)])[:valid]
        tally.loss += float(values.sum())
    if 'part' in got and 'master' in got:
        tally.kd += float(kd_loss_numpy(got['part'], got['master'], temperature).sum())
    if DISTINCT_MAPS in got:
        tally.distinct += float(got[DISTINCT_MAPS].sum())
    tally.images += valid


def _summary(model, heads, tally, loss_fn):
    res = {}
    for h in heads:
        t1, t5 = tally.counters[h].get()
        res['top1' if h == 'top' else h], res['top5' if h == 'top' else h + '_top5'] = t1, t5
    if model.reported_head != 'top':
        res['top1'] = res[model.reported_head]
        res['top5'] = res[model.reported_head + '_top5']
    n = tally.images
    res['loss'] = tally.loss / n if (loss_fn is not None and n) else None
    res['kd_loss'] = tally.kd / n if ('part' in heads and 'master' in heads and n) else None
    res['distinct_maps'] = tally.distinct / n if (DISTINCT_MAPS in model.validation_outputs
                                                  and n) else None
    res['num_images'] = n
    return res
