"""The one registry of backbones: the networks that see TASN's sampled images (and the
baseline's resized image), by the names ``--net`` takes.

``resnet*`` / ``vgg*``: this package's networks under the official graph's parameter names
(``resnet50``: the official TASN backbone, ``vgg19``: the paper's second setting); the others:
GluonCV's ImageNet networks (:mod:`gluoncv_backbones`). Every backbone gives globally
average-pooled features (N, ``out_channels``).
"""
from mxnet.gluon import nn

from ..errors import ConfigError
from .gluoncv_backbones import get_gluoncv_backbone, gluoncv_spec
from .resnet import get_resnet, resnet_zoo_name
from .vgg import get_vgg, vgg_zoo_name

__all__ = ['backbone_spec', 'backbone_names', 'check_backbone', 'get_backbone',
           'backbone_zoo_name']

# backbone name -> (family, depth or GluonCV name)
backbone_spec = {
    'resnet18': ('resnet', 18), 'resnet34': ('resnet', 34), 'resnet50': ('resnet', 50),
    'resnet101': ('resnet', 101), 'resnet152': ('resnet', 152),
    'vgg16': ('vgg', 16), 'vgg19': ('vgg', 19),
}
backbone_spec.update({name: ('gluoncv', name) for name in gluoncv_spec})


def backbone_names():
    """The backbones TASN and the baseline accept (``--net``), sorted."""
    return sorted(backbone_spec)


def check_backbone(name):
    """``(family, depth or GluonCV name)`` of backbone ``name``; ConfigError listing the valid
    names otherwise."""
    if name not in backbone_spec:
        raise ConfigError('Unknown backbone %r; options are %s'
                          % (name, ', '.join(backbone_names())))
    return backbone_spec[name]


def backbone_zoo_name(name):
    """The model-zoo name of backbone ``name``'s ImageNet network (``resnet50`` is GluonCV's
    ``resnet50_v2``, ``vgg19`` its ``vgg19``, a GluonCV backbone its own name)."""
    family, depth = check_backbone(name)
    return {'resnet': resnet_zoo_name, 'vgg': vgg_zoo_name}.get(family, str)(depth)


def get_backbone(name, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
    r"""Pooled-feature backbone by name (``backbone_names()``): (N, 3, S, S) mean-subtracted
    0..255 RGB -> (N, D), D = ``.out_channels``.

    Parameters
    ----------
    name : str
        ``resnet50`` (TASN default), ``vgg19`` (the paper's second setting), ``resnet18`` (quick
        runs), a GluonCV network (``resnet50_v1b``, ``resnet50_v1d``, ``resnest50``...; see
        ``gluoncv_backbones``), or another entry of ``backbone_spec``.
    norm_layer, norm_kwargs
        BatchNorm class and extra arguments (ResNets and GluonCV networks).
    """
    family, depth = check_backbone(name)
    if family == 'resnet':
        return get_resnet(depth, pool=True, norm_layer=norm_layer, norm_kwargs=norm_kwargs,
                          **kwargs)
    if family == 'gluoncv':
        return get_gluoncv_backbone(depth, norm_layer=norm_layer, norm_kwargs=norm_kwargs,
                                    **kwargs)
    return get_vgg(depth, pool=True, **kwargs)
