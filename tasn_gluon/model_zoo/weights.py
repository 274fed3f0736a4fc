"""Parameter files and the one strict way of setting a network's parameters from them.

Two kinds of files are read, neither downloaded:

* Gluon ``save_parameters`` files (structural names such as ``features.1.weight``; older
  ``save_params`` files with prefix names are read through MXNet's own model-zoo definition);
* MXNet Symbol/Module checkpoints (``mx.nd.save`` of ``arg:NAME`` / ``aux:NAME``), such as
  MXNet's ImageNet ``resnet-50-0000.params`` or an official TASN checkpoint. Their BatchNorm
  statistics are ``aux:X_moving_mean`` / ``aux:X_moving_var``, Gluon's ``X_running_mean`` /
  ``X_running_var``.

:func:`zoo_file` finds an ImageNet file where GluonCV (and MXNet's Gluon model zoo) keep their
downloads, ``~/.mxnet/models/NAME-HASH.params``; it only looks, it never downloads.

:func:`assign` is strict: every parameter of the network must be given, nothing else may be, and
every shape must fit; otherwise it raises :class:`WeightsError` naming every offender (by its
name in the file).
"""
import hashlib
import logging
import os

import mxnet as mx

__all__ = ['WeightsError', 'read_gluon_params', 'read_symbol_params', 'is_symbol_checkpoint',
           'symbol_key', 'symbol_to_gluon_names', 'assign', 'local_params',
           'load_symbol_checkpoint', 'ZOO', 'default_model_root', 'zoo_file']

logger = logging.getLogger(__name__)

# ``pretrained`` value that means: the model-zoo folder (:func:`zoo_file`), not a path
ZOO = 'zoo'

# BatchNorm auxiliary states: Symbol naming -> Gluon naming
_AUX_SUFFIXES = (('_moving_mean', '_running_mean'), ('_moving_var', '_running_var'))
_MAX_LISTED = 12


class WeightsError(ValueError):
    """A parameter file that cannot be read, or whose names or shapes do not fit the network;
    the message names the file and the parameters."""


def listing(names):
    """'a, b, c ... (7 more)': messages name a few offenders, never thousands."""
    names = sorted(names)
    more = len(names) - _MAX_LISTED
    return ', '.join(names[:_MAX_LISTED]) + (' ... (%d more)' % more if more > 0 else '')


def _load(path, what):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError('%s not found: %s (a local file is expected; nothing is '
                                'downloaded)' % (what, path))
    try:
        loaded = mx.nd.load(path)
    except Exception as err:  # MXNetError on a corrupt or foreign file
        raise WeightsError('cannot read %s as an MXNet .params file: %s' % (path, err)) from err
    if not isinstance(loaded, dict) or not loaded:
        raise WeightsError('%s holds no named parameters' % path)
    return loaded


def read_gluon_params(path, zoo_name=None, reference=None):
    """A Gluon ``.params`` file as ``{structural name: numpy array}``.

    Files of ``save_parameters`` (``features.1.weight``) are read directly; older files of
    ``save_params`` (``stage1_conv0_weight``) through a definition of the same network, only to
    recover the structural names: ``reference()`` (a callable returning that block, e.g. the
    GluonCV network) if given, else MXNet's own ``model_zoo.vision`` model ``zoo_name``.
    """
    loaded = _load(path, 'pretrained weights%s' % (' for %s' % zoo_name if zoo_name else ''))
    if any('.' in k for k in loaded):
        return {k.split(':', 1)[-1]: v.asnumpy() for k, v in loaded.items()}
    if zoo_name is None and reference is None:
        raise WeightsError('%s uses prefix names; give zoo_name to read it' % path)
    if reference is not None:
        ref = reference()
    else:
        from mxnet.gluon.model_zoo import vision
        ref = vision.get_model(zoo_name)
    try:
        ref.load_parameters(os.fspath(path), ctx=mx.cpu())
    except Exception as err:
        raise WeightsError('%s does not match Gluon model zoo %s: %s' % (path, zoo_name, err)) \
            from err
    return {k: p.data().asnumpy() for k, p in ref._collect_params_with_prefix().items()}


def read_symbol_params(path):
    """A Module checkpoint as ``{'arg:NAME' or 'aux:NAME': NDArray}``; WeightsError when the
    file is not an MXNet parameter file or holds names without ``arg:``/``aux:``."""
    loaded = _load(path, 'checkpoint (an MXNet Module checkpoint, NAME-NNNN.params)')
    bad = [k for k in loaded if not k.startswith(('arg:', 'aux:'))]
    if bad:
        raise WeightsError('%s is not a Module checkpoint: names without arg:/aux: %s'
                           % (path, listing(bad)))
    return loaded


def is_symbol_checkpoint(path):
    """True when ``path`` is a readable parameter file with only ``arg:``/``aux:`` names."""
    try:
        loaded = mx.nd.load(os.fspath(path))
    except Exception:
        return False
    return isinstance(loaded, dict) and bool(loaded) and \
        all(k.startswith(('arg:', 'aux:')) for k in loaded)


def _gluon_name(key):
    """``arg:NAME`` -> NAME; ``aux:X_moving_mean`` -> X_running_mean (likewise var). Anything
    else keeps a name no parameter has, so that it is reported as unexpected."""
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


def symbol_key(name):
    """Our parameter name -> its key in a Symbol checkpoint."""
    for sym, glu in _AUX_SUFFIXES:
        if name.endswith(glu):
            return 'aux:' + name[:-len(glu)] + sym
    return 'arg:' + name


def symbol_to_gluon_names(arrays):
    """``{'arg:NAME'/'aux:NAME': array}`` -> ``({our name: array}, name_in_file)``, the second a
    function for :func:`assign`'s messages (file keys for the file's entries, the key a
    missing parameter would have had otherwise)."""
    values, keys = {}, {}
    for key, value in arrays.items():
        name = _gluon_name(key)
        values[name], keys[name] = value, key
    return values, lambda name: keys.get(name) or symbol_key(name)


def _fits(shape, expected):
    """A value's shape fits a parameter's: same rank, and equal wherever the parameter's size is
    known (Gluon marks a size not inferred yet, e.g. a conv's input channels, as 0)."""
    shape, expected = tuple(shape), tuple(expected)
    return len(shape) == len(expected) and all(e in (0, s) for s, e in zip(shape, expected))


def assign(params, values, source, ctx=None, name_in_file=None):
    """Sets every Parameter of ``params`` (``{name: Parameter}``) from ``values`` (``{name:
    array}``), after checking that the two sets of names are equal and that every shape fits.

    Parameters
    ----------
    source : str
        The file, for messages.
    ctx : Context or list, optional
        Where parameters not initialised yet are created (default CPU).
    name_in_file : callable, optional
        Our name -> the entry's name in the file, so that messages name entries as the file
        does (default: the same name).

    Raises
    ------
    WeightsError
        Listing the missing, unexpected and misshapen entries.
    """
    key = name_in_file or (lambda name: name)
    missing = sorted(set(params) - set(values))
    extra = sorted(key(n) for n in set(values) - set(params))
    shapes = ['%s %s (expected %s)' % (key(n), tuple(values[n].shape), tuple(params[n].shape))
              for n in sorted(set(params) & set(values))
              if not _fits(values[n].shape, params[n].shape)]
    problems = []
    if missing:
        problems.append('missing %d parameter(s) of the network: %s'
                        % (len(missing), listing(key(n) for n in missing)))
    if extra:
        problems.append('%d unexpected name(s): %s' % (len(extra), listing(extra)))
    if shapes:
        problems.append('%d wrong shape(s): %s' % (len(shapes), listing(shapes)))
    if problems:
        raise WeightsError('%s does not fit the network: %s' % (source, '; '.join(problems)))
    ctx = ctx or mx.cpu()
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    for name, param in params.items():
        value = values[name]
        value = value if isinstance(value, mx.nd.NDArray) else mx.nd.array(value)
        value = value.astype(param.dtype, copy=False)
        if param._data is None:
            # _load_init: sets the data without running the initialiser (as load_parameters)
            param._load_init(value, ctx)
        else:
            param.set_data(value)


def local_params(block):
    """``{name without the block's prefix: Parameter}``."""
    out = {}
    for name, p in block.collect_params().items():
        if not name.startswith(block.prefix):
            raise WeightsError('parameter %s lies outside its block prefix %r'
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
        classifier of the same name.
    ctx : Context or list, optional

    The weights are used unchanged: these networks read the mean-subtracted 0..255 input of
    TASN through their own ``bn_data``, like the official graph.
    """
    from .resnet import ResNetV2
    from .attention_net import AttentionNet
    if isinstance(net, AttentionNet):
        params = local_params(net.body)
        params.update({'bn1_' + k: p for k, p in local_params(net.bn1).items()})
    elif isinstance(net, ResNetV2):
        params = local_params(net)
    else:
        raise TypeError('no Symbol-checkpoint mapping for %s (ResNetV2 or AttentionNet)'
                        % type(net).__name__)
    values, name_in_file = symbol_to_gluon_names(read_symbol_params(path))
    if not any(k.startswith('fc1_') for k in params):  # the ImageNet classifier
        values = {k: v for k, v in values.items() if not k.startswith('fc1_')}
    assign(params, values, os.fspath(path), ctx, name_in_file)
    return net


def default_model_root():
    """Where GluonCV and MXNet's Gluon model zoo keep ImageNet files: ``$MXNET_HOME/models`` when
    MXNET_HOME is set, else ``~/.mxnet/models``."""
    if os.environ.get('MXNET_HOME'):
        return os.path.join(os.environ['MXNET_HOME'], 'models')
    return os.path.join(os.path.expanduser('~'), '.mxnet', 'models')


def _published_sha1(zoo_name):
    """SHA-1 of GluonCV's published ImageNet file ``zoo_name`` (its model store's table), or
    None. MXNet's Gluon model zoo publishes the same files for the names they share."""
    # gluoncv is imported here only (a lookup in the model-zoo folder): importing it loads its
    # whole model zoo, SciPy and more, which nothing else in model_zoo needs at import time
    from gluoncv.model_zoo import model_store
    return model_store._model_sha1.get(zoo_name)


def _sha1(path):
    h = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def zoo_file(zoo_name, root=None):
    """The local ImageNet file of the model-zoo network ``zoo_name`` (``resnet50_v1b``,
    ``resnest50``, ``resnet50_v2``...), under the name and in the folder where GluonCV's
    ``get_model(zoo_name, pretrained=True, root=root)`` keeps it: ``ROOT/NAME-SHA1[:8].params``.
    Nothing is downloaded.

    Parameters
    ----------
    zoo_name : str
    root : str, optional
        The folder (default :func:`default_model_root`).

    Raises
    ------
    FileNotFoundError
        Naming the file looked for and the folder.
    WeightsError
        When GluonCV publishes no ImageNet weights of that name.

    A file whose SHA-1 differs from the published one is used (its names and shapes are checked
    when it is loaded) with a warning.
    """
    root = os.path.abspath(os.path.expanduser(root or default_model_root()))
    sha1 = _published_sha1(zoo_name)
    if sha1 is None:
        raise WeightsError('GluonCV publishes no ImageNet weights named %r; give the weights '
                           'file itself' % zoo_name)
    path = os.path.join(root, '%s-%s.params' % (zoo_name, sha1[:8]))
    if not os.path.isfile(path):
        raise FileNotFoundError('ImageNet weights of %s not found: no %s in %s (the model-zoo '
                                'folder: $MXNET_HOME/models, else ~/.mxnet/models; nothing is '
                                'downloaded: put the file there or give its path)'
                                % (zoo_name, os.path.basename(path), root))
    if _sha1(path) != sha1:
        logger.warning('%s is not the file GluonCV published (SHA-1 %s); using it anyway',
                       path, sha1)
    return path
