"""Exporting a trained checkpoint as the inference graph (Symbol JSON + Module parameters).

The graph is TASN's inference path (``TASNPredictor``: attention net, structure map, the
AttSampler operator, backbone, shared fc; output = the "master_aux" logits), or the baseline
network for a baseline run. Load it back with ``symbols.module_scorer.load_module`` (Module
API), ``mx.gluon.SymbolBlock.imports`` or ``tools/eval.py --checkpoint NAME-symbol.json``, after
``tasn_gluon.ops.load()``.
"""
import os

import mxnet as mx

__all__ = ['inference_block', 'export_checkpoint']


def inference_block(net, method):
    """The block to export for a network built by the trainer: TASN -> its predictor."""
    if method == 'tasn':
        return net.predictor()
    if method == 'baseline':
        return net
    raise ValueError('cannot export a %r network (tasn or baseline)' % (method,))


def export_checkpoint(checkpoint, prefix, epoch=0, ctx=None, overrides=None):
    """Writes ``PREFIX-symbol.json`` and ``PREFIX-%04d.params`` (``epoch``) for ``checkpoint``.

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
    (symbol_path, params_path, cfg)
    """
    from tasn_gluon.engine.evaluation import load_for_eval
    ctx = ctx or mx.cpu()
    if str(checkpoint).endswith('-symbol.json'):
        raise ValueError('%s is already an exported graph' % checkpoint)
    net, cfg, method, _ = load_for_eval(os.fspath(checkpoint), [ctx], overrides)
    block = inference_block(net, method)
    block.hybridize()
    size = int(cfg['input_size'])
    block(mx.nd.zeros((1, 3, size, size), ctx=ctx))  # builds the graph to export
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    block.export(prefix, epoch=int(epoch))
    return prefix + '-symbol.json', prefix + '-%04d.params' % int(epoch), cfg
