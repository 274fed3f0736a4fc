"""Loading ImageNet-pretrained Gluon model-zoo ``.params`` files into this package's blocks (GluonCV
backbones: ``gluoncv_backbones.load_gluoncv_params``, to which :func:`load_pretrained` hands them).

Nothing is downloaded: the caller gives a local file (e.g. ``resnet50_v2-ecdde353.params``,
``resnet18_v2-8aacf80f.params`` or ``vgg19-ad2f660d.params`` from MXNet's Gluon model zoo).

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
import numpy as np
import mxnet as mx

from .attention_net import AttentionNet
from .gluoncv_backbones import GluonCVBackbone, load_gluoncv_params
from .normalization import GLUON_MEAN, GLUON_STD, gluon_input_affine
from .resnet import BasicUnitV2, ResNetV2
from .vgg import VGG
from .weights import assign, is_symbol_checkpoint, load_symbol_checkpoint, read_gluon_params

__all__ = ['GLUON_MEAN', 'GLUON_STD', 'load_pretrained']

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
            raise ValueError('Unexpected parameter %r for a Gluon ResNet v2' % key)
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
        raise ValueError('%s has %d conv layers, the network %d'
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
            raise ValueError('%s is a Symbol-named (arg:/aux:) checkpoint; those are supported '
                             'for ResNets only, give a Gluon model-zoo .params file for %s'
                             % (path, type(net).__name__))
        load_symbol_checkpoint(net, path, ctx=ctx)
        return net
    if isinstance(net, GluonCVBackbone):
        if not fold_input_norm:
            raise ValueError('%s normalises its input in the graph (TASN input in, GluonCV '
                             'normalisation inside); fold_input_norm=False does not apply'
                             % net.zoo_name)
        return load_gluoncv_params(net, path, ctx)
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
