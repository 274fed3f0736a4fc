"""Validation and checkpoint evaluation: the five accuracies (top-1, top-5), KD loss, counts.

Every image of the validation set is counted exactly once: the iterator pads its last batch
(``batch.pad`` trailing entries) and those entries are dropped here.

A model to evaluate (or to predict with) is loaded by :func:`load_model` from a run directory,
one of its ``epoch-NNNN.params`` files (checked against the SHA-256 in its record) or an
exported graph (``NAME-symbol.json``, with the ``NAME-info.json`` that export writes beside
it); every path checks what it loads the same way, and refuses data whose classes differ.
"""
import dataclasses
import glob
import json
import logging
import math
import os
import warnings
from typing import List, Optional

import mxnet as mx
import numpy as np

from .. import ops
from ..data import DatasetError, read_dataset_info
from ..losses import HEADS, distillation_loss
from . import builders, precision
from .checkpoint import (CheckpointError, atomic_write_text, find_checkpoint, read_export_info,
                         record_of_params)
from .config import RunConfig
from .metrics import TopKCounter

__all__ = ['validate', 'kd_loss_numpy', 'result_dict', 'write_result_json', 'EvaluationError',
           'LoadedModel', 'load_model', 'check_classes', 'evaluate_checkpoint', 'format_result']

logger = logging.getLogger(__name__)


class EvaluationError(RuntimeError):
    """A model that cannot be evaluated as asked (wrong classes, diverged outputs ...)."""


def kd_loss_numpy(part_logits, master_logits, temperature=10.0):
    """Per-sample KD term of spec section 6: -sum_k softmax(part/T)_k log softmax(master/T)_k,
    for NumPy logits, by the objective's own ``distillation_loss`` in float64."""
    part = mx.nd.array(part_logits, dtype=np.float64)
    master = mx.nd.array(master_logits, dtype=np.float64)
    return distillation_loss(mx.nd, part, master, temperature).asnumpy()


def _outputs(net, x):
    out = net(x)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def validate(net, val_iter, ctx, method='tasn', loss_fn=None, temperature=10.0,
             max_batches=None):
    """Runs ``net`` in predict mode over the whole of ``val_iter`` (reset first).

    ``method`` 'tasn': ``net`` is a TASN (five heads, and the number of distinct attention maps
    through ``net.with_attention_stats()``); otherwise a single-output network.

    Returns a dict with, per head, top-1 and top-5 (``att``, ``att_top5``, ...), ``top1`` and
    ``top5`` (the reported accuracy: ``master_aux`` for TASN, the single head otherwise),
    ``loss`` (mean of ``loss_fn`` if given), ``kd_loss`` and ``distinct_maps`` (TASN: the mean
    number of distinct attention maps per image) and ``num_images``.
    """
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    tasn = method == 'tasn'
    heads = list(HEADS) if tasn else ['top']
    model = net.with_attention_stats() if tasn else net
    counters = {h: TopKCounter() for h in heads}
    loss_sum, kd_sum, distinct_sum, n_seen = 0.0, 0.0, 0.0, 0
    val_iter.reset()
    for i, batch in enumerate(val_iter):
        if max_batches is not None and i >= max_batches:
            break
        data, label = batch.data[0], batch.label[0]
        valid = data.shape[0] - int(batch.pad or 0)
        if valid <= 0:
            continue
        datas = mx.gluon.utils.split_and_load(data, ctx, even_split=False)
        labels = mx.gluon.utils.split_and_load(label, ctx, even_split=False)
        outs = [_outputs(model, x) for x in datas]
        if len(outs[0]) != len(heads) + tasn:
            raise EvaluationError('the network returned %d outputs; expected %d (%s)'
                                  % (len(outs[0]), len(heads) + tasn,
                                     ', '.join(heads + ['distinct maps'] * tasn)))
        per_head = [np.concatenate([o[j].asnumpy() for o in outs], axis=0)[:valid]
                    for j in range(len(heads))]
        lab = label.asnumpy()[:valid]
        for h, logits in zip(heads, per_head):
            if not np.all(np.isfinite(logits)):
                raise EvaluationError('non-finite %s logits in validation batch %d: the network '
                                      'has diverged or its parameters are corrupt' % (h, i))
            counters[h].update(logits, lab)
        if loss_fn is not None:
            lv = np.concatenate([loss_fn(o[:len(heads)] if tasn else o[0], y).asnumpy()
                                 .reshape(-1) for o, y in zip(outs, labels)])[:valid]
            loss_sum += float(lv.sum())
        if tasn:
            kd_sum += float(kd_loss_numpy(per_head[HEADS.index('part')],
                                          per_head[HEADS.index('master')], temperature).sum())
            distinct_sum += float(np.concatenate([o[-1].asnumpy() for o in outs])[:valid].sum())
        n_seen += valid
    res = {}
    for h in heads:
        t1, t5 = counters[h].get()
        if h == 'top':
            res['top1'], res['top5'] = t1, t5
        else:
            res[h], res[h + '_top5'] = t1, t5
    if tasn:
        res['top1'], res['top5'] = res['master_aux'], res['master_aux_top5']
    res['loss'] = loss_sum / n_seen if (loss_fn is not None and n_seen) else None
    res['kd_loss'] = kd_sum / n_seen if (tasn and n_seen) else None
    res['distinct_maps'] = distinct_sum / n_seen if (tasn and n_seen) else None
    res['num_images'] = n_seen
    return res


def result_dict(res, **info):
    """The eval JSON: the five head keys (fractions), their ``_top5``, ``kd_loss``,
    ``distinct_maps``, ``num_images``, ``top1``/``top5`` (reported accuracy) and run
    information."""
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
    if result.get('distinct_maps') is not None:
        lines.append('distinct attention maps per image %.1f' % result['distinct_maps'])
    lines.append('images       %d' % result['num_images'])
    if result.get('amp'):
        lines.append('precision    %s mixed precision (AMP)' % result['amp'])
    return '\n'.join(lines)


# ------------------------------------------------------------------------------ loading

@dataclasses.dataclass
class LoadedModel:
    """A model ready to evaluate or predict with.

    ``kind`` is 'tasn' or 'baseline' (a checkpoint: ``net`` is the training network, ``cfg``
    its configuration) or 'exported' (an inference graph whose one output is TASN's master_aux
    logits or the baseline's logits; ``cfg`` holds what its ``-info.json`` records).
    """
    net: object
    kind: str
    cfg: RunConfig
    num_classes: Optional[int]
    class_names: Optional[List[str]]
    source: dict

    @property
    def method(self):
        """tasn or baseline: what was trained."""
        return self.cfg.method

    @property
    def input_size(self):
        return int(self.cfg.input_size)

    @property
    def inference_net(self):
        """The block giving the reported logits: TASN's predictor, else the network itself."""
        return self.net.predictor() if self.kind == 'tasn' else self.net


def _exported_graph(path):
    """NAME-symbol.json for ``path`` (that file, or the prefix NAME), else None."""
    if path.endswith('-symbol.json'):
        return path
    if not os.path.exists(path) and os.path.isfile(path + '-symbol.json'):
        return path + '-symbol.json'
    return None


def _load_exported(sym_file, ctx, overrides):
    prefix = sym_file[:-len('-symbol.json')]
    if not os.path.isfile(sym_file):
        raise FileNotFoundError('exported graph %s does not exist' % sym_file)
    cands = sorted(glob.glob(prefix + '-[0-9][0-9][0-9][0-9].params'))
    params = overrides.pop('params', None) or (cands[-1] if cands else None)
    if params is None:
        raise FileNotFoundError('no %s-NNNN.params beside the exported graph' % prefix)
    info = read_export_info(prefix)
    if info is None:
        logger.warning('%s-info.json is missing (an export of an older version): the classes '
                       'of %s cannot be checked', prefix, sym_file)
        info = {}
    cfg = RunConfig(**{k: v for k, v in dict(info.get('config', {}), **overrides).items()
                       if k in {f.name for f in dataclasses.fields(RunConfig)}})
    ops.load()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            net = mx.gluon.SymbolBlock.imports(sym_file, ['data'], params, ctx=ctx)
        except Exception as e:  # MXNetError for a corrupt graph or parameters
            raise EvaluationError('cannot load the exported graph %s with %s: %s'
                                  % (sym_file, params, e))
    return LoadedModel(net, 'exported', cfg, info.get('num_classes'), info.get('class_names'),
                       dict(checkpoint=os.path.abspath(sym_file), params=os.path.abspath(params)))


def load_model(checkpoint, ctx, overrides=None, amp=False):
    """Loads ``checkpoint``: a run directory (its newest complete checkpoint, verified), an
    ``epoch-NNNN.params`` file (verified against its record when one lies beside it), or an
    exported model (``NAME-symbol.json`` or the prefix NAME). ``overrides`` are network settings
    (``method``, ``net``, ``num_classes``, ``input_size`` ...) for a ``.params`` file without a
    configuration beside it. ``amp``: build the network under mixed precision
    (``precision.enable_amp(ctx)``, for the whole process; checkpoints only: an exported graph
    is a fixed float32 graph). ``cfg.amp`` of the result says how it runs, whatever the run was
    trained with. Returns a :class:`LoadedModel`."""
    overrides = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    overrides['amp'] = bool(amp)
    checkpoint = os.fspath(checkpoint)
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    sym_file = _exported_graph(checkpoint)
    if sym_file is not None:
        if amp:
            # a SymbolBlock runs the graph read from JSON: AMP's patched functions never see it
            raise EvaluationError('--amp applies to checkpoints (a run directory or an '
                                  'epoch-NNNN.params file); the exported graph %s runs in '
                                  'float32' % sym_file)
        return _load_exported(sym_file, ctx, overrides)
    if os.path.isdir(checkpoint):
        record = find_checkpoint(checkpoint)
        if record is None:
            raise CheckpointError('no complete checkpoint in %s' % os.path.abspath(checkpoint))
        params, saved = record['params_path'], record['config']
        source = dict(checkpoint=params, epoch=record['epoch'])
    elif os.path.isfile(checkpoint):
        params, record = checkpoint, record_of_params(checkpoint)
        saved = record['config'] if record else _config_beside(checkpoint)
        source = dict(checkpoint=os.path.abspath(checkpoint),
                      epoch=record['epoch'] if record else None)
    else:
        raise FileNotFoundError('checkpoint %s does not exist (give a run directory, an '
                                'epoch-NNNN.params file, or an exported NAME-symbol.json)'
                                % checkpoint)
    cfg = _network_config(saved, overrides, checkpoint)
    if amp:  # before the network is built
        precision.enable_amp(ctx)
    net = builders.build_net(cfg, ctx)
    try:
        net.load_parameters(params, ctx=ctx)
    except Exception as e:
        raise EvaluationError('%s does not fit a %s %s network with %d classes: %s'
                              % (params, cfg.method, cfg.net, cfg.num_classes, e))
    return LoadedModel(net, cfg.method, cfg, cfg.num_classes, cfg.class_names, source)


def _config_beside(params_path):
    path = os.path.join(os.path.dirname(os.path.abspath(params_path)), 'config.json')
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _network_config(saved, overrides, checkpoint):
    given = dict(saved)
    given.update(overrides)
    missing = [k for k in ('net', 'method', 'num_classes', 'input_size', 'att_size',
                           'sample_size') if given.get(k) is None]
    if missing:
        raise EvaluationError('cannot tell the network of %s: no run configuration beside it; '
                              'give %s' % (checkpoint, ', '.join('--' + m.replace('_', '-')
                                                                for m in missing)))
    known = {f.name for f in dataclasses.fields(RunConfig)}
    # a checkpoint needs no ImageNet weights: its own parameters replace them
    given.update(pretrained=None, att_pretrained=None, from_scratch=True)
    return RunConfig(**{k: v for k, v in given.items() if k in known}).validate()


def check_classes(model, num_classes, class_names, where):
    """Refuses data whose classes differ from the model's (count, and names where both have
    them): the accuracy would be meaningless."""
    if model.num_classes is not None and int(model.num_classes) != int(num_classes):
        raise EvaluationError('the model (%s) has %d classes but %s has %d'
                              % (model.source['checkpoint'], model.num_classes, where,
                                 num_classes))
    if model.class_names and class_names and list(model.class_names) != list(class_names):
        diff = [i for i, (a, b) in enumerate(zip(model.class_names, class_names)) if a != b]
        raise EvaluationError('the model (%s) and %s name their classes differently (first at '
                              'class %d: %r vs %r)' % (model.source['checkpoint'], where, diff[0],
                                                       model.class_names[diff[0]],
                                                       class_names[diff[0]]))


def evaluate_checkpoint(checkpoint, data_dir, ctx, batch_size=None, out=None, overrides=None,
                        num_threads=None, verify='full', amp=False):
    """Evaluates a checkpoint on ``data_dir``'s val set (its record files checked first as
    ``verify`` says: 'full', 'headers' or 'none'); returns (and optionally writes) the eval JSON
    dict. ``amp``: evaluate under mixed precision (see :func:`load_model`); the JSON's ``amp``
    is then the low-precision dtype, else None (float32)."""
    ds = read_dataset_info(data_dir)
    model = load_model(checkpoint, ctx, overrides, amp=amp)
    check_classes(model, ds['num_classes'], ds['class_names'], data_dir)
    bs = int(batch_size or model.cfg.eval_batch_size or model.cfg.batch_size)
    bs = max(len(ctx), bs - bs % len(ctx))
    val_iter = builders.val_loader(model.cfg.replace(num_data_threads=num_threads,
                                                     verify_data=verify), data_dir, bs)
    if model.kind == 'exported':
        res = validate(model.net, val_iter, ctx, method='baseline')
        if model.method == 'tasn':  # the inference graph's output is TASN's master_aux
            res['master_aux'], res['master_aux_top5'] = res['top1'], res['top5']
    else:
        res = validate(model.net, val_iter, ctx, method=model.kind,
                       loss_fn=builders.build_loss(model.cfg), temperature=model.cfg.temperature)
    if res['num_images'] != int(ds['num_val']):
        raise DatasetError('evaluated %d images but %s/dataset.json says the val set has %d'
                           % (res['num_images'], data_dir, int(ds['num_val'])))
    cfg = model.cfg
    result = result_dict(res, method=cfg.method, model_format='exported' if model.kind ==
                         'exported' else 'checkpoint', net=cfg.net,
                         dataset=cfg.dataset,
                         dataset_name=ds.get('name'), data_dir=os.path.abspath(data_dir),
                         num_classes=int(ds['num_classes']), num_train=ds.get('num_train'),
                         num_val=int(ds['num_val']), sample_size=cfg.sample_size,
                         input_size=cfg.input_size, legacy_sampler=cfg.legacy_sampler,
                         uniform_sampler=cfg.uniform_sampler, kd_weight=cfg.kd_weight,
                         amp=precision.amp_dtype() if cfg.amp else None, **model.source)
    if out:
        write_result_json(out, result)
    return result
