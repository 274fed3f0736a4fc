"""Exporting a trained checkpoint as the inference graph (Symbol JSON + Module parameters).

The graph is TASN's inference path (``TASNPredictor``: attention net, structure map, the
AttSampler operator, backbone, shared fc; output = the "master_aux" logits), or the baseline
network for a baseline run. Load it back with ``tasn_gluon.symbols.module_scorer.load_module``
(Module API), ``mx.gluon.SymbolBlock.imports`` or ``tools/eval.py --checkpoint NAME-symbol.json``,
after ``tasn_gluon.ops.load()``.
"""
import os

import mxnet as mx

from tasn_gluon.engine.checkpoint import write_export_info
from tasn_gluon.engine.evaluation import load_model

__all__ = ['export_checkpoint']


def export_checkpoint(checkpoint, prefix, epoch=0, ctx=None, overrides=None):
    """Writes ``PREFIX-symbol.json``, ``PREFIX-%04d.params`` (``epoch``) and ``PREFIX-info.json``
    (the classes and the run configuration) for ``checkpoint``.

    Parameters
    ----------
    checkpoint : str
        A run directory (its newest complete checkpoint) or an ``epoch-NNNN.params`` file of
        one, as the trainer writes them (``tasn_gluon.engine.checkpoint``).
    prefix : str
        Output path prefix; its folder is created.
    overrides : dict, optional
        Network settings for a ``.params`` file without a run configuration beside it
        (``method``, ``net``, ``num_classes``, ``input_size``, ``att_size``, ``sample_size``,
        ``legacy_sampler``), as ``tools/eval.py`` takes them.

    Returns
    -------
    The paths written: (symbol, params, info).
    """
    ctx = ctx or mx.cpu()
    if str(checkpoint).endswith('-symbol.json'):
        raise ValueError('%s is already an exported graph' % checkpoint)
    model = load_model(checkpoint, [ctx], overrides)
    block = model.inference_net
    block.hybridize()
    size = model.input_size
    block(mx.nd.zeros((1, 3, size, size), ctx=ctx))  # builds the graph to export
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    block.export(prefix, epoch=int(epoch))
    info = write_export_info(prefix, model.num_classes, model.class_names, model.cfg.to_dict())
    return prefix + '-symbol.json', prefix + '-%04d.params' % int(epoch), info
