"""ImageNet weights: which local file a backbone starts from (:func:`find_pretrained`, the
model-zoo folder of :func:`zoo_file`) and loading it into this package's blocks
(:func:`load_pretrained`): Gluon model-zoo and GluonCV ``.params`` files, and MXNet's Symbol
checkpoints (``resnet-50-0000.params``) for the ResNets, as the official code started from.

Nothing is downloaded: the caller gives a local file (e.g. ``resnet50_v2-ecdde353.params``,
``resnet18_v2-8aacf80f.params`` or ``vgg19-ad2f660d.params`` from MXNet's Gluon model zoo), or
``zoo``: the file where GluonCV (and MXNet's Gluon model zoo) keep their downloads,
``~/.mxnet/models/NAME-HASH.params``.

Mapping (Gluon model zoo ``resnet*_v2`` -> :class:`~tasn_gluon.model_zoo.resnet.ResNetV2`)::

    features.0.*                  -> bn_data.*       (fixed-gamma input BN)
    features.1.weight             -> conv0.weight
    features.2.*                  -> bn0.*
    features.{5+s}.{u}.bnK/convK  -> stages.s.u.bnK/convK    (stage{s+1}_unit{u+1}_...)
    features.{5+s}.{u}.downsample -> stages.s.u.sc
    features.9.*                  -> bn1.*           (final BN; att_bn1 for the attention net,
                                                      as the official code initialises it)
    output.*                      -> not used (ImageNet classifier)

Gluon's ResNet-18/34 have no projection in the first unit of stage 1 (64 -> 64): that unit adds
its raw input x, while MXNet's (the official) layout adds ``sc(relu(bn1(x)))``. The projection
is set to the identity, the closest choice; it computes the same function only where
``relu(bn1(x)) = x``, so a Gluon-initialised ResNet-18 is an approximation of the pretrained
network in that one unit (fine-tuning absorbs it). MXNet's own ImageNet ``resnet-18`` checkpoint,
which the official code used, has the real ``stage1_unit1_sc`` weight.

VGG: the k-th conv of ``features`` -> ``conv{s}_{c}``; fc6/fc7/output are not used (TASN pools).

Input normalisation: Gluon's networks expect ``(x / 255 - mean) / std`` while TASN feeds
``x - MEAN_RGB`` (0..255 scale). With ``fold_input_norm=True`` (default) the difference is folded
into the weights so that the loaded network computes the same function on TASN's input: into the
running statistics of ``bn_data`` (ResNets; exact) and into ``conv1_1`` (VGG; exact away from the
zero-padded border).
"""
import logging
import os

import numpy as np
import mxnet as mx

from ..errors import InputError, WeightsError
from ..files import file_digest
from .attention_net import AttentionNet
from .backbones import backbone_zoo_name
from .gluoncv_backbones import CLASSIFIER, GluonCVBackbone, gluoncv_network
from .normalization import GLUON_MEAN, GLUON_STD, gluon_input_affine
from .resnet import BasicUnitV2, ResNetV2, resnet_zoo_name
from .vgg import VGG
from .weights import (assign, is_symbol_checkpoint, local_params, read_gluon_params,
                      read_symbol_params, symbol_to_gluon_names)

__all__ = ['GLUON_MEAN', 'GLUON_STD', 'ZOO', 'ATTENTION_NET', 'default_model_root', 'zoo_file',
           'find_pretrained', 'load_pretrained', 'load_symbol_checkpoint']

logger = logging.getLogger(__name__)

# ``pretrained`` value that means: the model-zoo folder (:func:`zoo_file`), not a path
ZOO = 'zoo'
ATTENTION_NET = 'attention_net'   # find_pretrained's name for the attention net's ResNet-18

_GLUON_BN_EPS = 1e-5                    # eps of the BatchNorms in the Gluon model zoo


def _resnet_map(num_stages=4):
    """Gluon ``resnet*_v2`` structural-name prefix -> our ResNetV2 structural-name prefix."""
    table = {'features.0.': 'bn_data.', 'features.1.': 'conv0.', 'features.2.': 'bn0.',
             'features.%d.' % (5 + num_stages): 'bn1.'}
    for s in range(num_stages):
        table['features.%d.' % (5 + s)] = 'stages.%d.' % s
    return table


def _translate_resnet(src):
    out = {}
    table = _resnet_map()
    for key, value in src.items():
        if key.startswith('output.'):
            continue
        for old, new in table.items():
            if key.startswith(old):
                rest = key[len(old):].replace('.downsample.', '.sc.')
                out[new + rest] = value
                break
        else:
            raise WeightsError('Unexpected parameter %r for a Gluon ResNet v2' % key)
    return out


def _fold_bn_data(values, eps):
    """Rewrites bn_data's running statistics so that TASN's 0..255 mean-subtracted input gives
    the same normalised output as Gluon's (x/255 - mean)/std input did."""
    # Gluon's BN on g = a x + b equals a BN on x with mean (m - b) / a, var (v + eps_g) / a^2
    a, b = gluon_input_affine()
    rm, rv = values['bn_data.running_mean'], values['bn_data.running_var']
    values['bn_data.running_mean'] = ((rm - b) / a).astype(rm.dtype)
    values['bn_data.running_var'] = ((rv + _GLUON_BN_EPS) / (a * a) - eps).astype(rv.dtype)


def _load_resnet(net, path, zoo_name, fold_input_norm, ctx, final_bn=None):
    src = _translate_resnet(read_gluon_params(path, zoo_name))
    if fold_input_norm:
        _fold_bn_data(src, net.bn_data._kwargs['eps'])
    params = dict(net._collect_params_with_prefix())
    first = net.stages[0][0]
    if isinstance(first, BasicUnitV2) and first.sc is not None \
            and 'stages.0.0.sc.weight' not in src:
        # Gluon's ResNet-18/34 stage 1 has an identity shortcut: same function as a 1x1 eye
        c = first.sc.weight.shape[0]
        src['stages.0.0.sc.weight'] = np.eye(c, dtype=np.float32).reshape(c, c, 1, 1)
    head = {k: v for k, v in params.items() if k.startswith('fc1.')}
    for k in head:
        params.pop(k)
    if final_bn is not None:  # the attention net: the final BN initialises its head's BN
        for k, p in final_bn._collect_params_with_prefix().items():
            params['bn1.' + k] = p
    assign(params, src, path, ctx)


def _load_vgg(net, path, zoo_name, fold_input_norm, ctx):
    src = read_gluon_params(path, zoo_name)
    src_convs = sorted({int(k.split('.')[1]) for k, v in src.items()
                        if k.startswith('features.') and v.ndim == 4})
    ours = [i for i, blk in enumerate(net.features) if isinstance(blk, mx.gluon.nn.Conv2D)]
    if len(src_convs) != len(ours):
        raise WeightsError('%s has %d conv layers, the network %d'
                           % (path, len(src_convs), len(ours)))
    values = {}
    for i, j in zip(src_convs, ours):
        values['features.%d.weight' % j] = src['features.%d.weight' % i]
        values['features.%d.bias' % j] = src['features.%d.bias' % i]
    if fold_input_norm:
        key_w, key_b = 'features.%d.weight' % ours[0], 'features.%d.bias' % ours[0]
        w, b = values[key_w], values[key_b]
        # conv(a x + b) = conv_{w a}(x) + sum(w b) away from the zero-padded border
        a, shift = (v.reshape(1, 3, 1, 1) for v in gluon_input_affine())
        values[key_w] = (w * a).astype(w.dtype)
        values[key_b] = (b + (w * shift).sum(axis=(1, 2, 3))).astype(b.dtype)
    params = {k: p for k, p in net._collect_params_with_prefix().items()
              if k.startswith('features.')}
    assign(params, values, path, ctx)


def load_pretrained(net, path, fold_input_norm=True, ctx=None):
    """Loads a Gluon model-zoo ImageNet ``.params`` file into ``net``.

    Parameters
    ----------
    net : ResNetV2, VGG, AttentionNet or GluonCVBackbone
        The block to fill (its classifier, if any, is left as it is).
    path : str
        Local ``.params`` file of the matching Gluon model-zoo network (``resnet{18,34,50,101,
        152}_v2`` or ``vgg{16,19}``; the attention net takes ``resnet18_v2``; a GluonCV
        backbone its GluonCV network's file), or, for ResNets, an MXNet Symbol checkpoint
        (``resnet-50-0000.params``, ``arg:``/``aux:`` names), which
        :func:`~tasn_gluon.model_zoo.weights.load_symbol_checkpoint` maps without folding.
    fold_input_norm : bool
        Fold Gluon's ``/255, -mean, /std`` input normalisation into the weights (see the module
        docstring) so that the network works on TASN's mean-subtracted 0..255 input. A GluonCV
        backbone computes that normalisation in its graph instead, always (it takes True only).
    ctx : Context or list, optional
        Where to initialise parameters that are not initialised yet.
    """
    ctx = ctx or mx.cpu()
    if is_symbol_checkpoint(path):
        # MXNet Symbol/Module naming (arg:/aux:), e.g. MXNet's ImageNet resnet-50-0000.params
        # as the official code used: weights unchanged
        if not isinstance(net, (ResNetV2, AttentionNet)):
            raise WeightsError('%s is a Symbol-named (arg:/aux:) checkpoint; those are supported '
                               'for ResNets only, give a Gluon model-zoo .params file for %s'
                               % (path, type(net).__name__))
        load_symbol_checkpoint(net, path, ctx=ctx)
        return net
    if isinstance(net, GluonCVBackbone):
        if not fold_input_norm:
            raise ValueError('%s normalises its input in the graph (TASN input in, GluonCV '
                             'normalisation inside); fold_input_norm=False does not apply'
                             % net.zoo_name)
        return _load_gluoncv(net, path, ctx)
    if isinstance(net, AttentionNet):
        _load_resnet(net.body, path, net.body.zoo_name, fold_input_norm, ctx,
                     final_bn=net.bn1)
    elif isinstance(net, ResNetV2):
        _load_resnet(net, path, net.zoo_name, fold_input_norm, ctx)
    elif isinstance(net, VGG):
        _load_vgg(net, path, net.zoo_name, fold_input_norm, ctx)
    else:
        raise TypeError('No pretrained-weight mapping for %s' % type(net).__name__)
    return net


def _load_gluoncv(net, path, ctx=None):
    """Sets ``net`` (a :class:`GluonCVBackbone`) from GluonCV's ImageNet ``.params`` file of the
    same network (``save_parameters`` names; older ``save_params`` files are read through
    GluonCV's own definition). Every parameter must be in the file with its shape; the file's
    classifier ``fc.*`` is not used. Raises WeightsError otherwise."""
    src = read_gluon_params(path, net.zoo_name, reference=lambda: gluoncv_network(net.zoo_name))
    values = {k: v for k, v in src.items() if not k.startswith(CLASSIFIER)}
    assign(dict(net._collect_params_with_prefix()), values, str(path), ctx)
    return net


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


# ------------------------------------------------------------------ where the files are

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


def zoo_file(zoo_name, root=None):
    """The local ImageNet file of the model-zoo network ``zoo_name`` (``resnet50_v1b``,
    ``resnest50``, ``resnet50_v2``...), under the name and in the folder where GluonCV's
    ``get_model(zoo_name, pretrained=True, root=root)`` keeps it: ``ROOT/NAME-SHA1[:8].params``.
    Nothing is downloaded.

    Raises
    ------
    InputError
        Naming the file looked for and the folder, or when GluonCV publishes no ImageNet
        weights of that name.

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
        raise InputError('ImageNet weights of %s not found: no %s in %s (the model-zoo '
                         'folder: $MXNET_HOME/models, else ~/.mxnet/models; nothing is '
                         'downloaded: put the file there or give its path)'
                         % (zoo_name, os.path.basename(path), root))
    if file_digest(path, 'sha1')[1] != sha1:
        logger.warning('%s is not the file GluonCV published (SHA-1 %s); using it anyway',
                       path, sha1)
    return path


def find_pretrained(value, net='resnet50', root=None):
    r"""The local ImageNet weights file that ``value`` means for backbone ``net``.

    Parameters
    ----------
    value : str or None
        A file path (returned as it is), None (None), or ``'zoo'``: the file of ``net``'s
        ImageNet network in the model-zoo folder, named as GluonCV names its downloads
        (``resnet50_v1b-0ecdba34.params``; this package's ``resnet50`` is GluonCV's
        ``resnet50_v2``, ``vgg19`` its ``vgg19``); see :func:`zoo_file`. Nothing is
        downloaded.
    net : str
        A backbone name, or ``'attention_net'`` for the attention net (its ResNet-18 v2).
    root : str, optional
        The model-zoo folder (default ``$MXNET_HOME/models``, else ``~/.mxnet/models``).
    """
    if value is None or os.fspath(value) != ZOO:
        return None if value is None else os.fspath(value)
    name = resnet_zoo_name(18) if net == ATTENTION_NET else backbone_zoo_name(net)
    return zoo_file(name, root)
