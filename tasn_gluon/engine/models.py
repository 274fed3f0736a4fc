"""A saved model, loaded to evaluate, predict, export or draw with, from any of its three forms:

* a run directory: its newest complete checkpoint (verified against its SHA-256), or with
  ``last_good`` the newest intact one;
* an ``epoch-NNNN.params`` file: checked against its record when one lies beside it, its
  network described by that record, a ``config.json`` beside it, or (a bare file) the network
  flags;
* an exported graph ``NAME-symbol.json`` (or the prefix NAME) with the ``NAME-info.json`` that
  export writes beside it.

Every form reads its saved configuration the one way (``config.read_saved_config``). Flags that
describe a network (``--method``, ``--net``, ``--num-classes``, the sizes, ``--legacy-sampler``)
are for a bare ``.params`` file; where the model carries its own description they must agree
with it, or the load is refused. Evaluating at another input size is the one legitimate change,
asked for by name (``input_size``: ``--override-input-size``) and stated in the results.
"""
import dataclasses
import json
import logging
import os
from typing import List, Optional

import mxnet as mx

from ..errors import ConfigError, InputError, ModelMismatch, WeightsError, reason
from ..files import require_file
from ..model_zoo import ExportedModel, load_exported
from ..model_zoo.exported import graph_file, read_export_info
from . import builders, precision
from .checkpoint import load_checkpoint, record_of_params
from .config import NETWORK_KEYS, RunConfig, flag, read_saved_config, resolve_config

__all__ = ['LoadedModel', 'load_model', 'check_classes']

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadedModel:
    """A model ready to evaluate or predict with: ``net`` answers ``model_zoo.ModelKind``
    (TASN, the baseline, or an ExportedModel), ``cfg`` is its configuration as it runs,
    ``source`` where it came from (``checkpoint``, ``epoch``, ``params``) and
    ``trained_input_size`` the input size it was trained at when another was asked for."""
    net: object
    cfg: RunConfig
    num_classes: Optional[int]
    class_names: Optional[List[str]]
    source: dict
    trained_input_size: Optional[int] = None

    @property
    def kind(self):
        """'tasn', 'baseline' or 'exported' (an inference graph)."""
        return 'exported' if isinstance(self.net, ExportedModel) else self.net.method

    @property
    def method(self):
        """tasn or baseline: what was trained."""
        return self.net.method

    @property
    def input_size(self):
        return int(self.cfg.input_size)

    @property
    def inference_net(self):
        """The block giving the reported logits."""
        return self.net.inference_net()


def load_model(checkpoint, ctx, overrides=None, amp=False, last_good=False, input_size=None):
    """Loads ``checkpoint`` (see the module docstring) on ``ctx``; returns a LoadedModel.

    ``overrides``: network flags (``method``, ``net``, ``num_classes``, ``input_size`` ...).
    ``amp``: build the network under mixed precision (``precision.enable_amp(ctx)``, for the
    whole process; checkpoints only: an exported graph is a fixed float32 graph).
    ``last_good``: a run directory's newest intact checkpoint when the newest is damaged.
    ``input_size``: evaluate at this input size instead of the trained one (checkpoints only).
    """
    overrides = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    checkpoint = os.fspath(checkpoint)
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    graph = graph_file(checkpoint)
    if graph is not None:
        for asked, what in ((amp, '--amp'), (input_size, '--override-input-size')):
            if asked:
                raise ConfigError('%s applies to checkpoints (a run directory or an '
                                  'epoch-NNNN.params file); the exported graph %s is fixed'
                                  % (what, graph))
        return _load_exported(graph, ctx, overrides)
    params, saved, source = _saved_checkpoint(checkpoint, last_good)
    cfg, trained = _network_config(saved, overrides, checkpoint, input_size)
    cfg = cfg.replace(amp=bool(amp), pretrained=None, att_pretrained=None, from_scratch=True)
    if amp:  # before the network is built
        precision.enable_amp(ctx)
    net = builders.build_net(cfg, ctx)
    _load_parameters(net, params, cfg, ctx)
    return LoadedModel(net, cfg, cfg.num_classes, cfg.class_names, source, trained)


def _saved_checkpoint(checkpoint, last_good):
    """(params path, saved configuration or None, source) of a run directory or params file."""
    if os.path.isdir(checkpoint):
        record = load_checkpoint(checkpoint, fallback=last_good)
        return record['params_path'], (record['config'], record['record_path']), dict(
            checkpoint=record['params_path'], epoch=record['epoch'])
    if not os.path.exists(checkpoint):
        raise InputError('--checkpoint %s: no such file or folder (give a run directory, an '
                         'epoch-NNNN.params file, or an exported NAME-symbol.json)' % checkpoint)
    require_file(checkpoint, '--checkpoint')
    if not checkpoint.endswith('.params'):
        raise InputError('--checkpoint %s is not a model: give a run directory, an '
                         'epoch-NNNN.params file or an exported NAME-symbol.json (a .states '
                         'file holds a trainer\'s state, an epoch .json a checkpoint\'s record)'
                         % checkpoint)
    record = record_of_params(checkpoint)
    source = dict(checkpoint=os.path.abspath(checkpoint),
                  epoch=record['epoch'] if record else None)
    if record is not None:
        return checkpoint, (record['config'], record['record_path']), source
    beside = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), 'config.json')
    if os.path.isfile(beside):
        try:
            with open(beside) as f:
                return checkpoint, (json.load(f), beside), source
        except ValueError as e:
            raise ConfigError('%s is not valid JSON: %s' % (beside, e))
    return checkpoint, None, source


def _agree(cfg, overrides, where):
    """ModelMismatch when a network flag differs from the saved description."""
    for key in NETWORK_KEYS:
        if key in overrides and overrides[key] != getattr(cfg, key):
            raise ModelMismatch(
                '--%s %s: %s records %s = %s; network flags describe a bare .params file and '
                'must agree with a saved model%s' % (
                    flag(key), overrides[key], where, key, getattr(cfg, key),
                    ' (to evaluate at another input size: --override-input-size)'
                    if key == 'input_size' else ' (leave the flag out)'))


def _network_config(saved, overrides, checkpoint, input_size):
    """(RunConfig, trained input size when ``input_size`` overrides it, else None)."""
    if saved is not None:
        cfg = read_saved_config(*saved)
        _agree(cfg, overrides, saved[1])
    else:
        missing = [k for k in ('net', 'method', 'num_classes', 'input_size', 'att_size',
                               'sample_size') if overrides.get(k) is None]
        if missing:
            raise ConfigError('cannot tell the network of %s: no run configuration beside it; '
                              'give %s' % (checkpoint, ', '.join('--' + flag(m)
                                                                 for m in missing)))
        cfg = resolve_config(dict(overrides, from_scratch=True))
    if input_size is None or int(input_size) == cfg.input_size:
        return cfg, None
    trained = cfg.input_size
    return cfg.replace(input_size=int(input_size)), trained


def _load_parameters(net, params, cfg, ctx):
    try:
        net.load_parameters(params, ctx=ctx)
    except (mx.base.MXNetError, AssertionError, ValueError) as e:   # the file does not fit
        text = str(e)
        if not isinstance(e, mx.base.MXNetError):  # Gluon's: names the first parameter at fault
            text = text.split(', which contains')[0].split('. Set ')[0]
        else:
            text = reason(e)
        raise WeightsError('%s does not fit a %s %s network with %d classes: %s'
                           % (params, cfg.method, cfg.net, cfg.num_classes, text)) from e


def _load_exported(graph, ctx, overrides):
    prefix = graph[:-len('-symbol.json')]
    info = read_export_info(prefix)
    if info is None:
        logger.warning('%s-info.json is missing (an export of an older version): the classes '
                       'of %s cannot be checked', prefix, graph)
        cfg = resolve_config(dict(overrides, from_scratch=True))
        num_classes, names = None, None
    else:
        where = prefix + '-info.json'
        cfg = read_saved_config(info.get('config') or {}, where)
        _agree(cfg, overrides, where)
        num_classes, names = info.get('num_classes'), info.get('class_names')
    model, params = load_exported(graph, ctx, cfg.method)
    return LoadedModel(model, cfg, num_classes, names,
                       dict(checkpoint=os.path.abspath(graph), params=os.path.abspath(params)))


def check_classes(model, num_classes, class_names, where):
    """Refuses data whose classes differ from the model's (count, and names where both have
    them): the accuracy would be meaningless."""
    if model.num_classes is not None and int(model.num_classes) != int(num_classes):
        raise ModelMismatch('the model (%s) has %d classes but %s has %d'
                            % (model.source['checkpoint'], model.num_classes, where,
                               num_classes))
    if model.class_names and class_names and list(model.class_names) != list(class_names):
        diff = [i for i, (a, b) in enumerate(zip(model.class_names, class_names)) if a != b]
        if not diff:  # one list is the other's start
            raise ModelMismatch('the model (%s) names %d classes and %s %d'
                                % (model.source['checkpoint'], len(model.class_names), where,
                                   len(class_names)))
        raise ModelMismatch('the model (%s) and %s name their classes differently (first at '
                            'class %d: %r vs %r)' % (model.source['checkpoint'], where,
                                                     diff[0], model.class_names[diff[0]],
                                                     class_names[diff[0]]))
