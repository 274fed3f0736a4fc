"""Networks of TASN: pre-activation ResNets, VGG with global pooling, GluonCV's ImageNet networks
as backbones (one registry: ``backbones``), the attention net, TASN, its predictor, the
baseline and exported graphs, each answering the ``kinds.ModelKind`` questions; ImageNet
weights (``pretrained``) and parameter files (``weights``). GluonCV itself is imported only when
one of its networks is built or its model-zoo folder is searched."""
from ..errors import WeightsError
from .resnet import (BasicUnitV2, BottleneckUnitV2, ResNetV2, resnet_spec, get_resnet,
                     resnet18_v2, resnet34_v2, resnet50_v2, resnet101_v2, resnet152_v2)
from .vgg import VGG, vgg_spec, get_vgg, vgg16, vgg19
from .attention_net import MultiDilationConv, AttentionNet, get_attention_net
from .gluoncv_backbones import GluonCVBackbone, gluoncv_spec, get_gluoncv_backbone
from .backbones import backbone_spec, backbone_names, check_backbone, get_backbone
from .initializer import default_initializer
from .pretrained import ATTENTION_NET, ZOO, find_pretrained, load_pretrained, zoo_file
from .kinds import DISTINCT_MAPS, ModelKind
from .tasn import TASN, get_tasn
from .predictor import TASNPredictor
from .baseline import Baseline, get_baseline
from .exported import ExportedModel, load_exported

__all__ = ['BasicUnitV2', 'BottleneckUnitV2', 'ResNetV2', 'resnet_spec', 'get_resnet',
           'resnet18_v2', 'resnet34_v2', 'resnet50_v2', 'resnet101_v2', 'resnet152_v2',
           'VGG', 'vgg_spec', 'get_vgg', 'vgg16', 'vgg19',
           'MultiDilationConv', 'AttentionNet', 'get_attention_net',
           'GluonCVBackbone', 'gluoncv_spec', 'get_gluoncv_backbone',
           'backbone_spec', 'backbone_names', 'check_backbone', 'get_backbone',
           'default_initializer', 'ATTENTION_NET', 'ZOO', 'find_pretrained', 'load_pretrained',
           'zoo_file', 'WeightsError', 'DISTINCT_MAPS', 'ModelKind', 'TASN', 'get_tasn',
           'TASNPredictor', 'Baseline', 'get_baseline', 'ExportedModel', 'load_exported']
