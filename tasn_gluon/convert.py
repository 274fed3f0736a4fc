"""Official TASN checkpoints (the official code's Module checkpoints ``tasn-NNNN.params``,
``mx.nd.save`` of ``arg:NAME`` / ``aux:NAME``) as this project's networks and run directories.

Their names are listed in ``official_checkpoint_params.tsv`` (shipped in the ``symbols`` package);
this project's TASN uses the same names except Gluon's BatchNorm suffixes (official
``aux:X_moving_mean`` / ``aux:X_moving_var`` = our ``X_running_mean`` / ``X_running_var``)::

    att_*             attention net (ResNet-18 body, att_conv1/att_conv2, att_bn1, att_fc1)
    bn_data ... bn1   backbone (ResNet-50)
    fullyconnected0   part-net fc (fc_part)      fullyconnected1   master-net fc (fc_master)
    fullyconnected2   shared fc (fc; its output on the structure image is "master_aux")

:func:`load_official` returns the inference block (``TASNPredictor``), :func:`official_tasn` the
whole TASN, :func:`convert_official` writes the weights as a run directory of this project (the
trainer's checkpoint format, read by ``tools/eval.py``, ``tools/predict.py`` and
``tools/export.py``). Loading is strict (``model_zoo.weights.assign``): every name of the file
must be used and every parameter filled, with the right shape; anything else raises
``WeightsError`` naming the parameters. MXNet's ImageNet ResNet checkpoints in the same naming
(which the official code started from) are read by ``model_zoo.weights.load_symbol_checkpoint``.
"""
import os
import re

from .engine.checkpoint import save_checkpoint
from .engine.config import format_config
from .engine.config import resolve_config
from .engine.runs import RunLock
from .errors import ConfigError, WeightsError
from .files import atomic_write_text
from .model_zoo import TASN
from .model_zoo.weights import assign, read_symbol_params, symbol_to_gluon_names

__all__ = ['official_tasn', 'load_official', 'official_config', 'convert_official']


# ------------------------------------------------------------------ official TASN checkpoints

def official_tasn(params_path, num_classes=None, sample_size=224, legacy_sampler=True,
                  input_size=512, att_size=224, net='resnet50', ctx=None, **kwargs):
    """The whole :class:`~tasn_gluon.model_zoo.TASN` (five heads) with an official checkpoint's
    weights.

    Parameters
    ----------
    params_path : str
        The official Module checkpoint (``arg:``/``aux:`` names of the official graph).
    num_classes : int or None
        Classes; None takes them from ``fullyconnected2_weight``.
    sample_size : int
        Side of the sampled images (224, or 336 for the official cub_336 model).
    legacy_sampler : bool
        The official sampler's arithmetic (default True: the official graph's predictions).
    input_size, att_size, net
        Input side (512), attention-net input (224), backbone (``resnet50``).
    ctx : Context or list of Context
    **kwargs
        Other :class:`TASN` arguments (``dense``, ``iters``...).
    """
    arrays = read_symbol_params(params_path)
    if num_classes is None:
        w = arrays.get('arg:fullyconnected2_weight')
        if w is None:
            raise WeightsError('%s has no arg:fullyconnected2_weight (the shared fc) to take '
                                  'the number of classes from; give num_classes' % params_path)
        num_classes = int(w.shape[0])
    kwargs.setdefault('prefix', '')
    model = TASN(net, int(num_classes), input_size, att_size, sample_size,
                 legacy_sampler=legacy_sampler, **kwargs)
    values, name_in_file = symbol_to_gluon_names(arrays)
    assign(dict(model.collect_params().items()), values, os.fspath(params_path), ctx,
           name_in_file)
    return model


def load_official(params_path, num_classes=None, sample_size=224, legacy_sampler=True, **sizes):
    """The inference block (:class:`~tasn_gluon.model_zoo.TASNPredictor`) with an official
    checkpoint's weights: on mean-subtracted RGB images (N, 3, 512, 512) it returns the official
    "master_aux" logits (N, num_classes). Arguments as :func:`official_tasn` (``input_size``,
    ``att_size``, ``net``, ``ctx`` among ``sizes``)."""
    return official_tasn(params_path, num_classes, sample_size, legacy_sampler,
                         **sizes).predictor()


def official_config(num_classes, sample_size=224, legacy_sampler=True, dataset='cub', **sizes):
    """The run configuration recorded beside converted weights: the dataset's recipe (cub: the
    official one) with the network settings of the official model."""
    overrides = dict(method='tasn', sample_size=int(sample_size),
                     legacy_sampler=bool(legacy_sampler), num_classes=int(num_classes),
                     from_scratch=True)  # the weights are the official ones, no ImageNet start
    overrides.update({k: sizes[k] for k in ('net', 'input_size', 'att_size') if k in sizes})
    return resolve_config(overrides, dataset)


_EPOCH_RE = re.compile(r'-(\d{4})\.params$')


def convert_official(params_path, out_dir, num_classes=None, sample_size=224,
                     legacy_sampler=True, dataset='cub', epoch=None, **sizes):
    """Writes an official checkpoint as this project's run directory ``out_dir``
    (``epoch-NNNN.params`` + record + ``config.json``; see ``engine.checkpoint``), holding the
    folder's lock while it writes (``engine.runs``).

    ``epoch`` defaults to the number in the file name (``tasn-0300.params`` -> 300), else 0.
    Returns the path of the checkpoint record (``epoch-NNNN.json``).
    """
    if epoch is not None and int(epoch) < 0:
        raise ConfigError('--epoch must be >= 0, not %r' % epoch)
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise ConfigError('%s already exists and is not empty; choose a new output folder'
                          % out_dir)
    model = official_tasn(params_path, num_classes, sample_size, legacy_sampler, **sizes)
    if epoch is None:
        m = _EPOCH_RE.search(os.fspath(params_path))
        epoch = int(m.group(1)) if m else 0
    cfg = official_config(model.num_classes, sample_size, legacy_sampler, dataset, **sizes)
    cfg = cfg.replace(out=os.path.abspath(out_dir))
    with RunLock(out_dir):
        atomic_write_text(os.path.join(out_dir, 'config.json'), format_config(cfg) + '\n')
        return save_checkpoint(out_dir, int(epoch), model, config=cfg.to_dict(),
                               extra=dict(converted_from=os.path.abspath(params_path)))
