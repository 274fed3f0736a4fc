"""Parameter files and the one strict way of setting a network's parameters from them.

Two kinds of files are read, neither downloaded:

* Gluon ``save_parameters`` files (structural names such as ``features.1.weight``; older
  ``save_params`` files with prefix names are read through MXNet's own model-zoo definition);
* MXNet Symbol/Module checkpoints (``mx.nd.save`` of ``arg:NAME`` / ``aux:NAME``), such as
  MXNet's ImageNet ``resnet-50-0000.params`` or an official TASN checkpoint. Their BatchNorm
  statistics are ``aux:X_moving_mean`` / ``aux:X_moving_var``, Gluon's ``X_running_mean`` /
  ``X_running_var``.

Which file a backbone starts from, and how each family's names map, is ``pretrained``'s; official
TASN checkpoints are ``tasn_gluon.convert``'s.

:func:`assign` is strict: every parameter of the network must be given, nothing else may be, and
every shape must fit; otherwise it raises :class:`WeightsError` naming every offender (by its
name in the file).
"""
import os

import mxnet as mx

from ..errors import WeightsError, first_few, reason
from ..files import require_file

__all__ = ['WeightsError', 'load_params_file', 'read_gluon_params', 'read_symbol_params',
           'is_symbol_checkpoint', 'symbol_key', 'symbol_to_gluon_names', 'assign',
           'local_params']

# BatchNorm auxiliary states: Symbol naming -> Gluon naming
_AUX_SUFFIXES = (('_moving_mean', '_running_mean'), ('_moving_var', '_running_var'))
_MAX_LISTED = 12


def listing(names):
    """A few of ``names``, sorted: messages name some offenders, never thousands."""
    return first_few(sorted(names), _MAX_LISTED)


def load_params_file(path, what):
    """``{name: NDArray}`` of the MXNet parameter file ``path``; ``what`` names it in errors
    (e.g. '--pretrained'). WeightsError when it is not such a file (a text file, an empty one,
    a trainer's .states) or holds no named parameters."""
    path = require_file(path, what)
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as err:    # a corrupt or foreign file
        raise WeightsError('%s %s is not an MXNet parameter file (%s)'
                           % (what, path, reason(err))) from err
    if not isinstance(loaded, dict) or not loaded:
        raise WeightsError('%s %s holds no named parameters (not a .params file of a network)'
                           % (what, path))
    return loaded


def read_gluon_params(path, zoo_name=None, reference=None):
    """A Gluon ``.params`` file as ``{structural name: numpy array}``.

    Files of ``save_parameters`` (``features.1.weight``) are read directly; older files of
    ``save_params`` (``stage1_conv0_weight``) through a definition of the same network, only to
    recover the structural names: ``reference()`` (a callable returning that block, e.g. the
    GluonCV network) if given, else MXNet's own ``model_zoo.vision`` model ``zoo_name``.
    """
    loaded = load_params_file(path, 'pretrained weights%s' % (' for %s' % zoo_name
                                                               if zoo_name else ''))
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
    except (mx.base.MXNetError, AssertionError) as err:  # names or shapes that do not fit
        raise WeightsError('%s does not match Gluon model zoo %s: %s'
                           % (path, zoo_name, reason(err))) from err
    return {k: p.data().asnumpy() for k, p in ref._collect_params_with_prefix().items()}


def read_symbol_params(path):
    """A Module checkpoint as ``{'arg:NAME' or 'aux:NAME': NDArray}``; WeightsError when the
    file is not an MXNet parameter file or holds names without ``arg:``/``aux:``."""
    loaded = load_params_file(path, 'checkpoint (an MXNet Module checkpoint, NAME-NNNN.params)')
    bad = [k for k in loaded if not k.startswith(('arg:', 'aux:'))]
    if bad:
        raise WeightsError('%s is not a Module checkpoint: names without arg:/aux: %s'
                           % (path, listing(bad)))
    return loaded


def is_symbol_checkpoint(path):
    """True when ``path`` is a readable parameter file with only ``arg:``/``aux:`` names."""
    try:
        loaded = mx.nd.load(os.fspath(path))
    except mx.base.MXNetError:
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
        if not name.startswith(block.prefix):   # a block built wrongly: a bug
            raise RuntimeError('parameter %s lies outside its block prefix %r'
                               % (name, block.prefix))
        out[name[len(block.prefix):]] = p
    return out
