"""An exported inference graph (``tools/export.py``: ``NAME-symbol.json`` + ``NAME-NNNN.params``
+ ``NAME-info.json``) as a model: its one output is the reported logits (TASN's master_aux, or
the baseline's). ``NAME-info.json`` records the classes (count and names) and the run
configuration the graph came from; this module writes and reads it."""
import glob
import json
import os
import warnings

import mxnet as mx

from .. import ops
from ..errors import CheckpointError, WeightsError, reason
from ..files import atomic_write_text, require_file
from .kinds import ModelKind

__all__ = ['INFO_SUFFIX', 'graph_file', 'write_export_info', 'read_export_info',
           'ExportedModel', 'load_exported']

INFO_SUFFIX = '-info.json'
GRAPH_SUFFIX = '-symbol.json'


def graph_file(path):
    """NAME-symbol.json for ``path`` (that file, or the prefix NAME of an existing one), else
    None: ``path`` is not an exported graph."""
    path = os.fspath(path)
    if path.endswith(GRAPH_SUFFIX):
        return path
    if not os.path.exists(path) and os.path.isfile(path + GRAPH_SUFFIX):
        return path + GRAPH_SUFFIX
    return None


def write_export_info(prefix, num_classes, class_names, config):
    return atomic_write_text(prefix + INFO_SUFFIX, json.dumps(
        dict(num_classes=int(num_classes), class_names=class_names, config=config), indent=1,
        default=str) + '\n')


def read_export_info(prefix):
    """What :func:`write_export_info` recorded for the graph ``prefix``, or None when it
    recorded nothing (an export of an older version)."""
    path = prefix + INFO_SUFFIX
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            info = json.load(f)
    except ValueError as e:
        raise CheckpointError('%s is not valid JSON: %s' % (path, e))
    if not isinstance(info, dict):
        raise CheckpointError('%s must hold a JSON object' % path)
    return info


class ExportedModel(ModelKind):
    """The graph of ``block`` (a SymbolBlock) as a model of kind ``method`` ('tasn' or
    'baseline': what was trained; the graph itself has no attention to draw)."""

    def __init__(self, block, method):
        self.block = block
        self.method = method
        self.reported_head = 'master_aux' if method == 'tasn' else 'top'
        self.validation_outputs = (self.reported_head,)

    def __call__(self, x):
        return self.block(x)

    def reported(self, outputs):
        return outputs

    def inference_net(self):
        return self.block

    def validation_net(self):
        return self.block


def load_exported(graph, ctx, method):
    """(ExportedModel, its params file) of the exported ``graph`` (NAME-symbol.json) with the
    newest NAME-NNNN.params beside it, on ``ctx``."""
    prefix = graph[:-len(GRAPH_SUFFIX)]
    require_file(graph, 'exported graph')
    found = sorted(glob.glob(prefix + '-[0-9][0-9][0-9][0-9].params'))
    if not found:
        raise CheckpointError('no %s-NNNN.params beside the exported graph %s' % (prefix, graph))
    params = found[-1]
    ops.load()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            block = mx.gluon.SymbolBlock.imports(graph, ['data'], params, ctx=ctx)
        except (mx.base.MXNetError, AssertionError, ValueError) as e:  # corrupt graph or params
            raise WeightsError('cannot load the exported graph %s with %s: %s'
                               % (graph, params, reason(e)))
    return ExportedModel(block, method), params
