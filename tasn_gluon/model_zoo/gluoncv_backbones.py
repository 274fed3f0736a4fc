"""GluonCV ImageNet classification networks as TASN's backbone (the master/part net).

``--net resnet50_v1d`` (or any name of :data:`gluoncv_spec`) puts GluonCV's network where the
official ResNet-50 v2 sits: it sees the two sampled images (and the baseline's resized image) and
gives pooled features (N, D) to TASN's heads.

References: K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (v1b: stride
on the 3x3 conv); T. He et al., "Bag of Tricks for Image Classification with Convolutional Neural
Networks", CVPR 2019 (v1c: deep stem, v1d: deep stem + average-pool downsampling; v1s: wide deep
stem); H. Zhang et al., "ResNeSt: Split-Attention Networks", 2020.

What :class:`GluonCVBackbone` is
--------------------------------
* GluonCV's own blocks (``gluoncv.model_zoo.resnetv1b`` / ``resnest``), built by GluonCV's
  factory, under the same attribute names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so its
  parameters have GluonCV's structural names and a GluonCV ``.params`` file (``save_parameters``)
  loads by name: every entry but the ImageNet classifier ``fc.*``, which is dropped with the
  network's head (global average pooling, then TASN's own heads).
* Input: TASN's mean-subtracted 0..255 RGB ``x``. GluonCV's networks were trained on
  ``(r / 255 - mean) / std``; the block computes that as a fixed per-channel affine
  ``a * x + b`` in front of GluonCV's first conv (``normalization.gluon_input_affine``), in the
  graph and without parameters. Folding it into the first conv, as ``pretrained`` does for VGG,
  would not be exact here: that conv zero-pads, and a zero of ``x`` is not a zero of GluonCV's
  input, so the border would change.
* ResNeSt's DropBlocks are switched off (drop probability 0, GluonCV's ``set_drop_prob``; its
  factories fix ``dropblock_prob=0.1`` for ResNeSt-26/50/101): GluonCV's ``DropBlock`` chooses
  between training and inference with a Python ``autograd.is_training()`` test, which a
  hybridized block (TASN always hybridizes) freezes at its first call, so after a training
  step it would keep dropping blocks at validation. DropBlock has no parameters; the ImageNet
  weights are unaffected.
  ResNeSt-200/269 (trained at 256/320 px with a dropout before the classifier) are left out.

GluonCV is imported only when one of these networks is built (see :func:`_gluoncv_factory`).
"""
import functools

from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from ..errors import ConfigError
from .normalization import gluon_input_affine

__all__ = ['gluoncv_spec', 'CLASSIFIER', 'gluoncv_network', 'GluonCVBackbone',
           'get_gluoncv_backbone']

# name (GluonCV's) -> the gluoncv.model_zoo module of its factory; every name has ImageNet
# weights in GluonCV's model store
gluoncv_spec = {}
for _depth in (18, 34, 50, 101, 152):
    gluoncv_spec['resnet%d_v1b' % _depth] = 'resnetv1b'
for _depth in (50, 101, 152):
    for _v in 'cds':
        gluoncv_spec['resnet%d_v1%s' % (_depth, _v)] = 'resnetv1b'
for _depth in (14, 26, 50, 101):
    gluoncv_spec['resnest%d' % _depth] = 'resnest'
del _depth, _v

# GluonCV's ResNetV1b and ResNeSt: the feature blocks in forward order; then avgpool, flat, fc
_FEATURE_BLOCKS = ('conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4')
CLASSIFIER = 'fc.'       # the ImageNet classifier's parameters, not kept


def _gluoncv_factory(name):
    if name not in gluoncv_spec:
        raise ConfigError('Unknown GluonCV backbone %r; options are %s'
                          % (name, ', '.join(sorted(gluoncv_spec))))
    # Imported here, when a GluonCV network is built: importing gluoncv loads its whole model
    # zoo, SciPy and more, which `import tasn_gluon.model_zoo` and the other networks do not need.
    import importlib
    module = importlib.import_module('gluoncv.model_zoo.' + gluoncv_spec[name])
    return getattr(module, name)


def gluoncv_network(name, norm_layer=nn.BatchNorm, norm_kwargs=None):
    """GluonCV's complete ImageNet network ``name`` (classifier included), built by GluonCV's
    factory (random weights, nothing downloaded) with its DropBlocks off (module docstring):
    the network :class:`GluonCVBackbone` takes its blocks from, and the reference for files."""
    net = _gluoncv_factory(name)(pretrained=False, norm_layer=norm_layer,
                                 norm_kwargs=norm_kwargs)
    from gluoncv.nn.dropblock import set_drop_prob   # GluonCV's own switch (DropBlockScheduler)
    net.apply(functools.partial(set_drop_prob, 0.0))
    return net


class GluonCVBackbone(HybridBlock):
    r"""A GluonCV classification network without its classifier, on TASN's input:
    (N, 3, S, S) mean-subtracted 0..255 RGB -> pooled features (N, ``out_channels``).

    Parameters
    ----------
    name : str
        A key of :data:`gluoncv_spec` (``resnet50_v1b``, ``resnet50_v1d``, ``resnest50``...).
    norm_layer, norm_kwargs
        BatchNorm class (e.g. SyncBatchNorm) and its extra arguments, passed to GluonCV.
    """

    def __init__(self, name, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.zoo_name = name
        with self.name_scope():
            net = gluoncv_network(name, norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        # the feature blocks become this block's children under GluonCV's attribute names (so
        # structural parameter names are GluonCV's); the classifier is not kept
        for attr in _FEATURE_BLOCKS:
            setattr(self, attr, getattr(net, attr))
        self.pool = nn.GlobalAvgPool2D()
        self.out_channels = int(net.fc._in_units)
        a, b = gluon_input_affine()
        self._affine = tuple(zip((float(v) for v in a), (float(v) for v in b)))

    def gluoncv_input(self, F, x):
        """GluonCV's input ``(r / 255 - mean) / std`` from TASN's ``x = r - MEAN_RGB``: one
        multiply and one add per value, in x's precision."""
        channels = F.split(x, num_outputs=3, axis=1)
        return F.concat(*[c * a + b for c, (a, b) in zip(channels, self._affine)], dim=1)

    def hybrid_forward(self, F, x):
        x = self.gluoncv_input(F, x)
        for attr in _FEATURE_BLOCKS:
            x = getattr(self, attr)(x)
        return F.flatten(self.pool(x))


def get_gluoncv_backbone(name, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
    """:class:`GluonCVBackbone` ``name``; ``kwargs`` for the Block (``prefix``)."""
    return GluonCVBackbone(name, norm_layer=norm_layer, norm_kwargs=norm_kwargs, **kwargs)
