"""Weights stored in MXNet Symbol naming, loaded into this project's networks.

Two kinds of files, both Module checkpoints (``mx.nd.save`` of ``arg:NAME`` / ``aux:NAME``):

* **Official TASN checkpoints** (the official code's ``tasn-NNNN.params``). Their names are
  listed in ``official_checkpoint_params.tsv``; this project's TASN uses the same names except
  Gluon's BatchNorm suffixes (official ``aux:X_moving_mean`` / ``aux:X_moving_var`` = our
  ``X_running_mean`` / ``X_running_var``)::

      att_*             attention net (ResNet-18 body, att_conv1/att_conv2, att_bn1, att_fc1)
      bn_data ... bn1   backbone (ResNet-50)
      fullyconnected0   part-net fc (fc_part)      fullyconnected1   master-net fc (fc_master)
      fullyconnected2   shared fc (fc; its output on the structure image is "master_aux")

  :func:`load_official` returns the inference block (``TASNPredictor``), :func:`official_tasn`
  the whole TASN, :func:`convert_official` writes the weights as a run directory of this
  project (the trainer's checkpoint format, read by ``tools/eval.py`` and ``tools/export.py``).

* **MXNet model-zoo ImageNet checkpoints** of the pre-activation ResNets (``resnet-18-0000.params``,
  ``resnet-50-0000.params``: ``arg:stage1_unit1_conv1_weight``, ``aux:bn_data_moving_mean``, an
  ``fc1`` classifier), which the official code used to initialise the attention net and the
  backbone. :func:`load_symbol_checkpoint` fills a ``ResNetV2`` or an ``AttentionNet`` with
  them, unchanged (same input convention as the official code: no normalisation folding).

Every loader is strict: every name of the file must be used (except an ImageNet classifier,
which a backbone does not have) and every parameter of the network filled, with the right shape;
anything else raises :class:`ConversionError` naming the parameters.
"""
import os
import re

import mxnet as mx

__all__ = ['ConversionError', 'read_symbol_params', 'is_symbol_checkpoint', 'official_to_ours',
           'assign_params', 'official_tasn', 'load_official', 'official_config',
           'convert_official', 'load_symbol_checkpoint']

# BatchNorm auxiliary states: Symbol naming -> Gluon naming
_AUX_SUFFIXES = (('_moving_mean', '_running_mean'), ('_moving_var', '_running_var'))
_MAX_LISTED = 12


class ConversionError(ValueError):
    """A file whose names or shapes do not fit the network; the message names them."""


def _listing(names):
    names = sorted(names)
    more = len(names) - _MAX_LISTED
    return ', '.join(names[:_MAX_LISTED]) + (' ... (%d more)' % more if more > 0 else '')


def read_symbol_params(path):
    """Reads a Module checkpoint into ``{'arg:NAME' or 'aux:NAME': NDArray}``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist (nothing is downloaded).
    ConversionError
        When the file is not an MXNet parameter file, or holds names without ``arg:``/``aux:``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError('checkpoint not found: %s (expected a local MXNet Module '
                                'checkpoint, NAME-NNNN.params; nothing is downloaded)' % path)
    try:
        loaded = mx.nd.load(path)
    except Exception as err:  # MXNetError on a corrupt or foreign file
        raise ConversionError('cannot read %s as an MXNet .params file: %s' % (path, err)) \
            from err
    if not isinstance(loaded, dict) or not loaded:
        raise ConversionError('%s holds no named parameters' % path)
    bad = [k for k in loaded if not k.startswith(('arg:', 'aux:'))]
    if bad:
        raise ConversionError('%s is not a Module checkpoint: names without arg:/aux: %s'
                              % (path, _listing(bad)))
    return loaded


def is_symbol_checkpoint(path):
    """True when ``path`` is a readable parameter file with ``arg:``/``aux:`` names (Symbol /
    Module naming), False otherwise (missing, unreadable, or Gluon naming)."""
    try:
        loaded = mx.nd.load(os.fspath(path))
    except Exception:
        return False
    return isinstance(loaded, dict) and bool(loaded) and \
        all(k.startswith(('arg:', 'aux:')) for k in loaded)


def _gluon_name(key):
    """``arg:NAME`` -> NAME; ``aux:X_moving_mean`` -> X_running_mean (likewise var). An aux
    state of another form keeps its name (and will be reported as unexpected)."""
    kind, name = key.split(':', 1)
    if kind == 'aux':
        for sym, glu in _AUX_SUFFIXES:
            if name.endswith(sym):
                return name[:-len(sym)] + glu
        return 'aux:' + name
    for _, glu in _AUX_SUFFIXES:  # a BN statistic stored as arg: is not one of ours
        if name.endswith(glu):
            return 'arg:' + name
    return name


def _symbol_key(name, is_aux):
    for sym, glu in _AUX_SUFFIXES:
        if is_aux and name.endswith(glu):
            return 'aux:' + name[:-len(glu)] + sym
    return ('aux:' if is_aux else 'arg:') + name


def official_to_ours(arrays):
    """``{'arg:NAME'/'aux:NAME': array}`` of the official graph -> ``{our name: (file key,
    array)}`` (the renaming of BatchNorm statistics; every other name is kept)."""
    return {_gluon_name(k): (k, v) for k, v in arrays.items()}


def assign_params(params, values, source, ctx=None):
    """Sets every Parameter of ``params`` (``{name: Parameter}``) from ``values`` (``{name:
    (file key, array)}``), after checking that the two sets of names are equal and every shape
    fits; otherwise raises ConversionError listing the missing, unexpected and misshapen
    entries (by their names in the file, ``source``)."""
    missing = sorted(set(params) - set(values))
    extra = sorted(values[n][0] for n in set(values) - set(params))
    shapes = ['%s %s (expected %s)' % (values[n][0], tuple(values[n][1].shape),
                                      tuple(params[n].shape))
              for n in sorted(set(params) & set(values))
              if tuple(values[n][1].shape) != tuple(params[n].shape)]
    problems = []
    if missing:
        problems.append('missing %d parameter(s) of the network: %s' % (
            len(missing), _listing(_symbol_key(n, n.endswith(('_running_mean', '_running_var')))
                                   for n in missing)))
    if extra:
        problems.append('%d unexpected name(s): %s' % (len(extra), _listing(extra)))
    if shapes:
        problems.append('%d wrong shape(s): %s' % (len(shapes), _listing(shapes)))
    if problems:
        raise ConversionError('%s does not fit the network: %s' % (source, '; '.join(problems)))
    ctx = ctx or mx.cpu()
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    for name, param in params.items():
        value = values[name][1]
        value = value if isinstance(value, mx.nd.NDArray) else mx.nd.array(value)
        value = value.astype(param.dtype, copy=False)
        if param._data is None:
            # _load_init: sets the data without running the initialiser (as load_parameters)
            param._load_init(value, ctx)
        else:
            param.set_data(value)


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
    from .model_zoo.tasn import TASN
    arrays = read_symbol_params(params_path)
    if num_classes is None:
        w = arrays.get('arg:fullyconnected2_weight')
        if w is None:
            raise ConversionError('%s has no arg:fullyconnected2_weight (the shared fc) to take '
                                  'the number of classes from; give num_classes' % params_path)
        num_classes = int(w.shape[0])
    kwargs.setdefault('prefix', '')
    model = TASN(net, int(num_classes), input_size, att_size, sample_size,
                 legacy_sampler=legacy_sampler, **kwargs)
    assign_params(dict(model.collect_params().items()), official_to_ours(arrays),
                  os.fspath(params_path), ctx)
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
    from .engine.recipes import resolve_config
    overrides = dict(method='tasn', sample_size=int(sample_size),
                     legacy_sampler=bool(legacy_sampler))
    overrides.update({k: sizes[k] for k in ('net', 'input_size', 'att_size') if k in sizes})
    cfg = resolve_config(overrides, dataset)
    cfg['num_classes'] = int(num_classes)
    return cfg


_EPOCH_RE = re.compile(r'-(\d{4})\.params$')


def convert_official(params_path, out_dir, num_classes=None, sample_size=224,
                     legacy_sampler=True, dataset='cub', epoch=None, **sizes):
    """Writes an official checkpoint as this project's run directory ``out_dir``
    (``epoch-NNNN.params`` + record + ``config.json``; see ``engine.checkpoint``).

    ``epoch`` defaults to the number in the file name (``tasn-0300.params`` -> 300), else 0.
    Returns the path of the checkpoint record (``epoch-NNNN.json``).
    """
    from .engine.checkpoint import atomic_write_text, find_checkpoint, save_checkpoint
    from .engine.recipes import format_config
    if find_checkpoint(out_dir, verify=False) is not None:
        raise ValueError('%s already holds a checkpoint; choose another output folder' % out_dir)
    model = official_tasn(params_path, num_classes, sample_size, legacy_sampler, **sizes)
    if epoch is None:
        m = _EPOCH_RE.search(os.fspath(params_path))
        epoch = int(m.group(1)) if m else 0
    cfg = official_config(model.num_classes, sample_size, legacy_sampler, dataset, **sizes)
    cfg['out'] = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, 'config.json'), format_config(cfg) + '\n')
    return save_checkpoint(out_dir, int(epoch), model, config=cfg,
                           extra=dict(converted_from=os.path.abspath(params_path)))


# -------------------------------------------------- MXNet model-zoo ImageNet ResNet checkpoints

def _local_params(block):
    """``{name without the block's prefix: Parameter}``."""
    out = {}
    for name, p in block.collect_params().items():
        if not name.startswith(block.prefix):
            raise ConversionError('parameter %s lies outside its block prefix %r'
                                  % (name, block.prefix))
        out[name[len(block.prefix):]] = p
    return out


def load_symbol_checkpoint(net, path, ctx=None):
    """Initialises a pre-activation ResNet from an MXNet model-zoo ImageNet checkpoint in Symbol
    naming (``resnet-18-0000.params``, ``resnet-50-0000.params``), as the official code did.

    Parameters
    ----------
    net : ResNetV2 or AttentionNet
        A backbone (its ``bn1`` is the checkpoint's final BN) or the TASN attention net (the
        ResNet-18 body; the checkpoint's final ``bn1`` initialises the head's ``bn1``; the
        multi-dilation convs and ``fc1`` keep their initialisation).
    path : str
        The local checkpoint. Its ImageNet classifier ``fc1`` is not used unless ``net`` has a
        classifier of the same shape.
    ctx : Context or list, optional

    The weights are used unchanged: these networks read the mean-subtracted 0..255 input of
    TASN through their own ``bn_data``, like the official graph.

    Raises
    ------
    ConversionError
        Names or shapes that do not fit (e.g. a ResNet-50 file for a ResNet-18), listed.
    """
    from .model_zoo.resnet import ResNetV2
    from .model_zoo.attention_net import AttentionNet
    if isinstance(net, AttentionNet):
        params = _local_params(net.body)
        params.update({'bn1_' + k: p for k, p in _local_params(net.bn1).items()})
    elif isinstance(net, ResNetV2):
        params = _local_params(net)
    else:
        raise TypeError('no Symbol-checkpoint mapping for %s (ResNetV2 or AttentionNet)'
                        % type(net).__name__)
    values = official_to_ours(read_symbol_params(path))
    has_fc = any(k.startswith('fc1_') for k in params)
    if not has_fc:  # the ImageNet classifier: not part of a backbone
        values = {k: v for k, v in values.items() if not k.startswith('fc1_')}
    assign_params(params, values, os.fspath(path), ctx)
    return net
