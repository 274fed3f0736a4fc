"""Validation and checkpoint evaluation: the five accuracies (top-1, top-5), KD loss, counts.

Every image of the validation set is counted exactly once: the iterator pads its last batch
(``batch.pad`` trailing entries) and those entries are dropped here.
"""
import glob
import json
import logging
import math
import os
import warnings

import mxnet as mx
import numpy as np

from .checkpoint import atomic_write_text, find_checkpoint, CheckpointError
from .metrics import HEADS, TopKCounter
from ..losses import distillation_loss

__all__ = ['validate', 'kd_loss_numpy', 'result_dict', 'write_result_json', 'EvaluationError',
           'load_for_eval', 'evaluate_checkpoint', 'format_result']

logger = logging.getLogger('tasn_gluon')


class EvaluationError(RuntimeError):
    pass


def kd_loss_numpy(part_logits, master_logits, temperature=10.0):
    """Per-sample KD term of spec section 6: -sum_k softmax(part/T)_k log softmax(master/T)_k,
    for NumPy logits, by the objective's own ``distillation_loss`` in float64."""
    part = mx.nd.array(part_logits, dtype=np.float64)
    master = mx.nd.array(master_logits, dtype=np.float64)
    return distillation_loss(mx.nd, part, master, temperature).asnumpy()


def output_list(out):
    """A network's output as a list (one entry for a single-headed network)."""
    return list(out) if isinstance(out, (list, tuple)) else [out]


def validate(net, val_iter, ctx, method='tasn', loss_fn=None, temperature=10.0,
             heads=None, max_batches=None):
    """Runs ``net`` in predict mode over the whole of ``val_iter`` (reset first).

    Returns a dict with, per head, top-1 and top-5 (``att``, ``att_top5``, ...), ``top1`` and
    ``top5`` (the reported accuracy: ``master_aux`` for TASN, the single head otherwise),
    ``loss`` (mean of ``loss_fn`` if given), ``kd_loss`` (TASN) and ``num_images``.
    """
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    if heads is None:
        heads = list(HEADS) if method == 'tasn' else ['top']
    counters = {h: TopKCounter() for h in heads}
    loss_sum, kd_sum, n_seen = 0.0, 0.0, 0
    val_iter.reset()
    for i, batch in enumerate(val_iter):
        if max_batches is not None and i >= max_batches:
            break
        data, label = batch.data[0], batch.label[0]
        total = data.shape[0]
        pad = int(batch.pad or 0)
        valid = total - pad
        if valid <= 0:
            continue
        datas = mx.gluon.utils.split_and_load(data, ctx, even_split=False)
        labels = mx.gluon.utils.split_and_load(label, ctx, even_split=False)
        outs = [output_list(net(x)) for x in datas]
        if len(outs[0]) != len(heads):
            raise EvaluationError('the network returned %d outputs; expected %d (%s)'
                                  % (len(outs[0]), len(heads), ', '.join(heads)))
        per_head = [np.concatenate([o[j].asnumpy() for o in outs], axis=0)[:valid]
                    for j in range(len(heads))]
        lab = label.asnumpy()[:valid]
        for h, logits in zip(heads, per_head):
            if not np.all(np.isfinite(logits)):
                raise EvaluationError('non-finite %s logits in validation batch %d: the network '
                                      'has diverged or its parameters are corrupt' % (h, i))
            counters[h].update(logits, lab)
        if loss_fn is not None:
            losses = []
            for o, y in zip(outs, labels):
                lo = loss_fn(o if len(o) > 1 else o[0], y)
                losses.append(lo.asnumpy().reshape(-1))
            lv = np.concatenate(losses)[:valid]
            loss_sum += float(lv.sum())
        if 'part' in heads and 'master' in heads:
            kd_sum += float(kd_loss_numpy(per_head[heads.index('part')],
                                          per_head[heads.index('master')], temperature).sum())
        n_seen += valid
    res = {}
    for h in heads:
        t1, t5 = counters[h].get()
        if h == 'top':
            res['top1'], res['top5'] = t1, t5
        else:
            res[h], res[h + '_top5'] = t1, t5
    if 'master_aux' in heads:
        res['top1'], res['top5'] = res['master_aux'], res['master_aux_top5']
    res['loss'] = loss_sum / n_seen if (loss_fn is not None and n_seen) else None
    res['kd_loss'] = kd_sum / n_seen if ('part' in heads and 'master' in heads and n_seen) \
        else None
    res['num_images'] = n_seen
    return res


def result_dict(res, **info):
    """The eval JSON: the five head keys (fractions), their ``_top5``, ``kd_loss``,
    ``num_images``, ``top1``/``top5`` (reported accuracy) and run information."""
    out = dict(info)
    for k, v in res.items():
        if isinstance(v, float) and math.isnan(v):
            v = None
        out[k] = v
    return out


def write_result_json(path, result):
    atomic_write_text(path, json.dumps(result, indent=1, sort_keys=True, default=str) + '\n')
    return path


def format_result(result):
    lines = []
    heads = [h for h in HEADS if result.get(h) is not None]
    if heads:
        lines.append('%-12s %8s %8s' % ('head', 'top-1', 'top-5'))
        for h in heads:
            lines.append('%-12s %7.2f%% %7.2f%%' % (h, 100 * result[h], 100 * result[h + '_top5']))
    if result.get('top1') is not None:
        lines.append('%-12s %7.2f%% %7.2f%%   (reported accuracy)' %
                     ('top1' if not heads else 'reported', 100 * result['top1'],
                      100 * result['top5']))
    if result.get('kd_loss') is not None:
        lines.append('KD loss      %.4f' % result['kd_loss'])
    lines.append('images       %d' % result['num_images'])
    return '\n'.join(lines)


def load_for_eval(checkpoint, ctx, overrides=None, components=None):
    """Finds the network and its configuration for ``checkpoint``.

    ``checkpoint`` is a run directory (its newest complete checkpoint), an ``epoch-NNNN.params``
    file of a run directory, or an exported model (``NAME-symbol.json`` with ``NAME-0000.params``
    beside it, or the prefix ``NAME``; inference graph: reported accuracy only). Returns
    ``(net, cfg, method, info)``.
    """
    from .training import build_net  # noqa: avoid a cycle at import time
    overrides = dict(overrides or {})
    path = checkpoint
    sym_file = None
    if path.endswith('-symbol.json'):
        sym_file = path
    elif not os.path.exists(path) and os.path.isfile(path + '-symbol.json'):
        sym_file = path + '-symbol.json'
    if sym_file is not None:
        prefix = sym_file[:-len('-symbol.json')]
        params = overrides.get('params') or _newest_export_params(prefix)
        try:
            from .. import ops
            ops.load()
        except Exception as e:  # the graph may not need the operator
            logger.warning('could not load the AttSampler operator library: %s', e)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            net = mx.gluon.SymbolBlock.imports(sym_file, ['data'], params, ctx=ctx)
        return net, dict(overrides), 'exported', dict(checkpoint=os.path.abspath(sym_file),
                                                     params=os.path.abspath(params))
    if os.path.isdir(path):
        record = find_checkpoint(path)
        if record is None:
            raise CheckpointError('no complete checkpoint in %s' % os.path.abspath(path))
        params, cfg = record['params_path'], dict(record['config'])
        info = dict(checkpoint=record['params_path'], epoch=record['epoch'])
    elif os.path.isfile(path):
        params = path
        meta = path[:-len('.params')] + '.json' if path.endswith('.params') else None
        cfg = {}
        for candidate in (meta, os.path.join(os.path.dirname(path), 'config.json')):
            if candidate and os.path.isfile(candidate):
                with open(candidate) as f:
                    d = json.load(f)
                cfg = dict(d.get('config', d))
                break
        info = dict(checkpoint=os.path.abspath(path))
    else:
        raise FileNotFoundError('checkpoint %s does not exist (give a run directory, an '
                                'epoch-NNNN.params file, or an exported NAME-symbol.json)' % path)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    missing = [k for k in ('net', 'method', 'num_classes', 'input_size', 'att_size',
                           'sample_size') if cfg.get(k) is None]
    if missing:
        raise EvaluationError('cannot tell the network of %s: no run configuration beside it; '
                              'give %s' % (path, ', '.join('--' + m.replace('_', '-')
                                                            for m in missing)))
    net = build_net(cfg, cfg['num_classes'], ctx, initialize=False, components=components)
    try:
        net.load_parameters(params, ctx=ctx)
    except Exception as e:
        raise EvaluationError('%s does not fit a %s %s network with %d classes: %s'
                              % (params, cfg['method'], cfg['net'], cfg['num_classes'], e))
    return net, cfg, cfg['method'], info


def _newest_export_params(prefix):
    cands = sorted(glob.glob(prefix + '-[0-9][0-9][0-9][0-9].params'))
    if not cands:
        raise FileNotFoundError('no %s-NNNN.params beside the exported graph' % prefix)
    return cands[-1]


def evaluate_checkpoint(checkpoint, data_dir, ctx, batch_size=None, out=None, overrides=None,
                        num_threads=None, components=None):
    """Evaluates a checkpoint on ``data_dir``'s val set; returns (and optionally writes) the
    eval JSON dict."""
    from .training import get_val_dataloader, build_loss, _components
    info_ds = _components(components).read_dataset_info(data_dir)
    net, cfg, method, info = load_for_eval(checkpoint, ctx, overrides, components)
    if method == 'exported':
        input_size = int(cfg.get('input_size') or 512)
    else:
        input_size = int(cfg['input_size'])
        if int(cfg['num_classes']) != int(info_ds['num_classes']):
            raise EvaluationError('the checkpoint has %d classes but %s has %d'
                                  % (cfg['num_classes'], data_dir, info_ds['num_classes']))
    bs = int(batch_size or cfg.get('eval_batch_size') or cfg.get('batch_size') or 16)
    bs = max(len(ctx), bs - bs % len(ctx))
    val_iter = get_val_dataloader(data_dir, bs, input_size, num_threads=num_threads,
                                  components=components)
    loss_fn = build_loss(cfg, components) if method in ('tasn', 'baseline') else None
    heads = ['top'] if method in ('baseline', 'exported') else None
    res = validate(net, val_iter, ctx, method=method if method != 'exported' else 'baseline',
                   loss_fn=loss_fn, temperature=float(cfg.get('temperature', 10.0)), heads=heads)
    expected = info_ds.get('num_val')
    if expected is not None and res['num_images'] != int(expected):
        raise EvaluationError('evaluated %d images but %s/dataset.json says the val set has %d'
                              % (res['num_images'], data_dir, int(expected)))
    if method == 'exported':  # the inference graph's output is TASN's master_aux
        res['master_aux'], res['master_aux_top5'] = res['top1'], res['top5']
    result = result_dict(res, method=cfg.get('method') or ('tasn' if method == 'exported'
                                                           else method),
                         model_format='exported' if method == 'exported' else 'checkpoint',
                         net=cfg.get('net'),
                         dataset=cfg.get('dataset', info_ds.get('name')),
                         dataset_name=info_ds.get('name'), data_dir=os.path.abspath(data_dir),
                         sample_size=cfg.get('sample_size'), input_size=input_size,
                         legacy_sampler=cfg.get('legacy_sampler'),
                         uniform_sampler=cfg.get('uniform_sampler'), kd_weight=cfg.get('kd_weight'),
                         **info)
    if out:
        write_result_json(out, result)
    return result
