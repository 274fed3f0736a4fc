"""Networks of TASN: pre-activation ResNets, VGG with global pooling, GluonCV's ImageNet networks
as backbones, the attention net, TASN, its predictor and the baseline, with a ``get_model(name)``
registry. GluonCV itself is imported only when one of its networks is built or its model-zoo
folder is searched."""
from functools import partial

from .resnet import (BasicUnitV2, BottleneckUnitV2, ResNetV2, resnet_spec, get_resnet,
                     resnet18_v2, resnet34_v2, resnet50_v2, resnet101_v2, resnet152_v2)
from .vgg import VGG, vgg_spec, get_vgg, vgg16, vgg19
from .attention_net import MultiDilationConv, AttentionNet, get_attention_net
from .gluoncv_backbones import GluonCVBackbone, gluoncv_spec, get_gluoncv_backbone
from .pretrained import load_pretrained
from .weights import WeightsError, load_symbol_checkpoint, zoo_file
from .tasn import (backbone_spec, backbone_names, get_backbone, find_pretrained, ATTENTION_NET,
                   TASN, TASNPredictor, Baseline, get_tasn, get_baseline, default_initializer)

__all__ = ['get_model', 'get_model_list',
           'BasicUnitV2', 'BottleneckUnitV2', 'ResNetV2', 'resnet_spec', 'get_resnet',
           'resnet18_v2', 'resnet34_v2', 'resnet50_v2', 'resnet101_v2', 'resnet152_v2',
           'VGG', 'vgg_spec', 'get_vgg', 'vgg16', 'vgg19',
           'MultiDilationConv', 'AttentionNet', 'get_attention_net',
           'GluonCVBackbone', 'gluoncv_spec', 'get_gluoncv_backbone',
           'load_pretrained', 'WeightsError', 'load_symbol_checkpoint', 'zoo_file',
           'backbone_spec', 'backbone_names', 'get_backbone', 'find_pretrained',
           'ATTENTION_NET', 'TASN',
           'TASNPredictor', 'Baseline', 'get_tasn', 'get_baseline', 'default_initializer']


def _models():
    models = {
        'resnet18_v2': resnet18_v2, 'resnet34_v2': resnet34_v2, 'resnet50_v2': resnet50_v2,
        'resnet101_v2': resnet101_v2, 'resnet152_v2': resnet152_v2,
        'vgg16': vgg16, 'vgg19': vgg19,
        'attention_net': get_attention_net,
    }
    for name in backbone_spec:
        models['tasn_' + name] = partial(get_tasn, name)
        models['baseline_' + name] = partial(get_baseline, name)
    return models


_MODELS = _models()


def get_model_list():
    """Names accepted by :func:`get_model`."""
    return sorted(_MODELS)


def get_model(name, **kwargs):
    """Returns a network by name.

    ``resnet{18,34,50,101,152}_v2`` and ``vgg{16,19}`` are the bare networks (give ``classes``
    for a classifier, otherwise pooled features); ``attention_net`` the TASN attention net;
    ``tasn_<backbone>`` and ``baseline_<backbone>`` the initialised TASN and baseline
    (:func:`get_tasn`, :func:`get_baseline`; ``<backbone>`` one of ``backbone_spec``).

    Raises
    ------
    ValueError
        For an unknown name, listing the valid ones.
    """
    name = name.lower()
    if name not in _MODELS:
        raise ValueError('Model %r is not supported. Available options are:\n\t%s'
                         % (name, '\n\t'.join(get_model_list())))
    return _MODELS[name](**kwargs)
