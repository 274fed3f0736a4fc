"""Exporting a trained checkpoint as the inference graph (Symbol JSON + Module parameters).

The graph is TASN's inference path (``TASNPredictor``: attention net, structure map, the
AttSampler operator, backbone, shared fc; output = the "master_aux" logits), or the baseline
network for a baseline run. Load it back with ``symbols.module_scorer.load_module`` (Module
API), ``mx.gluon.SymbolBlock.imports`` or ``tools/eval.py --checkpoint NAME-symbol.json``, after
``tasn_gluon.ops.load()``.
"""
import os

import mxnet as mx

from tasn_gluon.engine.models import load_model
from tasn_gluon.errors import ConfigError
from tasn_gluon.model_zoo.exported import write_export_info

__all__ = ['export_checkpoint', 'check_prefix']


def check_prefix(prefix, epoch=0):
    """ConfigError unless ``prefix`` names files (NAME in ``DIR/NAME-symbol.json``) and
    ``epoch`` is a number >= 0."""
    if not os.path.basename(os.fspath(prefix)) or os.path.isdir(prefix):
        raise ConfigError('--out %s is a folder; give a name prefix in it, e.g. %s'
                          % (prefix, os.path.join(prefix, 'model')))
    if int(epoch) < 0:
        raise ConfigError('--epoch must be >= 0, not %r' % epoch)


def export_checkpoint(checkpoint, prefix, epoch=0, ctx=None, overrides=None, last_good=False):
    """Writes ``PREFIX-symbol.json``, ``PREFIX-%04d.params`` (``epoch``) and ``PREFIX-info.json``
    (the classes and the run configuration) for ``checkpoint``.

    Parameters
    ----------
    checkpoint : str
        A run directory (its newest complete checkpoint; ``last_good``: the newest intact one)
        or an ``epoch-NNNN.params`` file of one, as the trainer writes them
        (``tasn_gluon.engine.checkpoint``).
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
    check_prefix(prefix, epoch)
    ctx = ctx or mx.cpu()
    if str(checkpoint).endswith('-symbol.json'):
        raise ConfigError('%s is already an exported graph' % checkpoint)
    model = load_model(checkpoint, [ctx], overrides, last_good=last_good)
    block = model.inference_net
    block.hybridize()
    size = model.input_size
    block(mx.nd.zeros((1, 3, size, size), ctx=ctx))  # builds the graph to export
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    block.export(prefix, epoch=int(epoch))
    info = write_export_info(prefix, model.num_classes, model.class_names, model.cfg.to_dict())
    return prefix + '-symbol.json', prefix + '-%04d.params' % int(epoch), info
