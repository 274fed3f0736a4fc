"""Pre-activation (v2) ResNets as MXNet's Symbol code builds them (TASN spec section 2).

References
----------
K. He, X. Zhang, S. Ren, J. Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016.
H. Zheng, J. Fu, Z.-J. Zha, J. Luo, "Looking for the Devil in the Details: Learning Trilinear
Attention Sampling Network for Fine-grained Image Recognition", CVPR 2019.

The structure follows the official TASN graph (and MXNet's ``image-classification`` symbols):

* ``bn_data``: a BatchNorm with fixed gamma on the input (the input is only mean-subtracted);
* ``conv0`` 7x7/2, ``bn0``, ReLU, 3x3/2 max pooling;
* stages of units named ``stage{s}_unit{u}``; a unit is BN-ReLU-conv (``bn1, conv1, bn2, conv2``
  [, ``bn3, conv3``]); the FIRST unit of every stage has a 1x1 projection shortcut ``sc`` taken
  from the unit's first activation (also in stage 1 of ResNet-18/34, where 64 -> 64); the stride
  sits on the 3x3 conv of a bottleneck;
* ``bn1`` + ReLU (final pre-activation), global average pooling.

BN eps 2e-5, momentum 0.9. Parameter names are those of the official graph with Gluon's BN
suffixes: ``stage1_unit1_conv1_weight``, ``bn_data_gamma``, ``bn0_running_mean`` (official:
``bn0_moving_mean``), ``..._running_var`` (official ``..._moving_var``). A prefix (``att_`` for the
attention net) is prepended by the parent block.
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

__all__ = ['BasicUnitV2', 'BottleneckUnitV2', 'ResNetV2', 'resnet_spec', 'get_resnet',
           'resnet18_v2', 'resnet34_v2', 'resnet50_v2', 'resnet101_v2', 'resnet152_v2',
           'BN_EPS', 'BN_MOMENTUM', 'resnet_zoo_name']

BN_EPS = 2e-5
BN_MOMENTUM = 0.9


def _bn(norm_layer, norm_kwargs, in_channels, prefix, **extra):
    kwargs = dict(epsilon=BN_EPS, momentum=BN_MOMENTUM)
    kwargs.update(norm_kwargs or {})
    kwargs.update(extra)
    return norm_layer(in_channels=in_channels, prefix=prefix, **kwargs)


class BasicUnitV2(HybridBlock):
    r"""Pre-activation basic unit (two 3x3 convs), as ``residual_unit(bottle_neck=False)``.

    Parameters
    ----------
    channels : int
        Output channels.
    stride : int
        Stride of the first 3x3 conv (and of the projection).
    dim_match : bool
        True: identity shortcut. False: 1x1 projection ``sc`` from the first activation.
    in_channels : int
        Input channels.
    """

    def __init__(self, channels, stride, dim_match, in_channels, norm_layer=nn.BatchNorm,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.bn1 = _bn(norm_layer, norm_kwargs, in_channels, 'bn1_')
            self.conv1 = nn.Conv2D(channels, 3, stride, 1, use_bias=False,
                                   in_channels=in_channels, prefix='conv1_')
            self.bn2 = _bn(norm_layer, norm_kwargs, channels, 'bn2_')
            self.conv2 = nn.Conv2D(channels, 3, 1, 1, use_bias=False,
                                   in_channels=channels, prefix='conv2_')
            self.sc = None if dim_match else nn.Conv2D(
                channels, 1, stride, use_bias=False, in_channels=in_channels, prefix='sc_')

    def hybrid_forward(self, F, x):
        act1 = F.Activation(self.bn1(x), act_type='relu')
        shortcut = x if self.sc is None else self.sc(act1)
        out = self.conv1(act1)
        out = self.conv2(F.Activation(self.bn2(out), act_type='relu'))
        return out + shortcut


class BottleneckUnitV2(HybridBlock):
    r"""Pre-activation bottleneck unit (1x1, 3x3 with the stride, 1x1 to ``channels``).

    Parameters
    ----------
    channels : int
        Output channels (the bottleneck has ``channels // 4``).
    stride : int
        Stride of the 3x3 conv (and of the projection).
    dim_match : bool
        True: identity shortcut. False: 1x1 projection ``sc`` from the first activation.
    in_channels : int
        Input channels.
    """

    def __init__(self, channels, stride, dim_match, in_channels, norm_layer=nn.BatchNorm,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        mid = channels // 4
        with self.name_scope():
            self.bn1 = _bn(norm_layer, norm_kwargs, in_channels, 'bn1_')
            self.conv1 = nn.Conv2D(mid, 1, 1, 0, use_bias=False, in_channels=in_channels,
                                   prefix='conv1_')
            self.bn2 = _bn(norm_layer, norm_kwargs, mid, 'bn2_')
            self.conv2 = nn.Conv2D(mid, 3, stride, 1, use_bias=False, in_channels=mid,
                                   prefix='conv2_')
            self.bn3 = _bn(norm_layer, norm_kwargs, mid, 'bn3_')
            self.conv3 = nn.Conv2D(channels, 1, 1, 0, use_bias=False, in_channels=mid,
                                   prefix='conv3_')
            self.sc = None if dim_match else nn.Conv2D(
                channels, 1, stride, use_bias=False, in_channels=in_channels, prefix='sc_')

    def hybrid_forward(self, F, x):
        act1 = F.Activation(self.bn1(x), act_type='relu')
        shortcut = x if self.sc is None else self.sc(act1)
        out = self.conv1(act1)
        out = self.conv2(F.Activation(self.bn2(out), act_type='relu'))
        out = self.conv3(F.Activation(self.bn3(out), act_type='relu'))
        return out + shortcut


class ResNetV2(HybridBlock):
    r"""Pre-activation ResNet (MXNet's Symbol layout), as feature extractor or classifier.

    Parameters
    ----------
    unit : type
        ``BasicUnitV2`` or ``BottleneckUnitV2``.
    layers : sequence of int
        Units per stage.
    channels : sequence of int
        Stem channels followed by the output channels of each stage.
    strides : sequence of int
        Stride of each stage; ``(1, 2, 2, 2)`` is the usual ResNet, ``(1, 1, 2, 1)`` the TASN
        attention net (total stride 8).
    final_bn : bool
        Apply ``bn1`` + ReLU after the last stage (True for classifiers and backbones; the TASN
        attention net has its own head instead).
    pool : bool
        Global-average-pool and flatten the output to (N, C).
    classes : int or None
        Add a classifier ``fc1`` with this many outputs (needs ``pool``).
    norm_layer, norm_kwargs
        BatchNorm class (e.g. ``mx.gluon.contrib.nn.SyncBatchNorm``) and extra arguments.

    Outputs: the last stage's map (N, C, H/s, W/s) when not pooled, (N, C) pooled features, or
    (N, classes) logits.
    """

    def __init__(self, unit, layers, channels, strides=(1, 2, 2, 2), final_bn=True, pool=True,
                 classes=None, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        if len(layers) != len(strides) or len(channels) != len(layers) + 1:
            raise ValueError('layers %s, strides %s and channels %s do not match'
                             % (layers, strides, channels))
        if classes is not None and not pool:
            raise ValueError('a classifier needs pool=True')
        self.out_channels = channels[-1]
        self.final_bn, self.pool = final_bn, pool
        self.zoo_name = None  # Gluon model-zoo name of the same network, set by get_resnet
        with self.name_scope():
            # fixed gamma: the input is only mean-subtracted, this BN scales it
            self.bn_data = _bn(norm_layer, norm_kwargs, 3, 'bn_data_', scale=False)
            self.conv0 = nn.Conv2D(channels[0], 7, 2, 3, use_bias=False, in_channels=3,
                                   prefix='conv0_')
            self.bn0 = _bn(norm_layer, norm_kwargs, channels[0], 'bn0_')
            self.pool0 = nn.MaxPool2D(3, 2, 1)
            self.stages = nn.HybridSequential(prefix='')
            in_channels = channels[0]
            with self.stages.name_scope():
                for s, (num, stride) in enumerate(zip(layers, strides)):
                    stage = nn.HybridSequential(prefix='stage%d_' % (s + 1))
                    with stage.name_scope():
                        for u in range(num):
                            # the first unit of each stage always projects (official layout)
                            stage.add(unit(channels[s + 1], stride if u == 0 else 1, u > 0,
                                           in_channels, norm_layer=norm_layer,
                                           norm_kwargs=norm_kwargs, prefix='unit%d_' % (u + 1)))
                            in_channels = channels[s + 1]
                    self.stages.add(stage)
            self.bn1 = _bn(norm_layer, norm_kwargs, in_channels, 'bn1_') if final_bn else None
            self.fc1 = nn.Dense(classes, in_units=in_channels, prefix='fc1_') \
                if classes is not None else None

    def hybrid_forward(self, F, x):
        x = self.bn_data(x)
        x = F.Activation(self.bn0(self.conv0(x)), act_type='relu')
        x = self.stages(self.pool0(x))
        if self.bn1 is not None:
            x = F.Activation(self.bn1(x), act_type='relu')
        if self.pool:
            x = F.flatten(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type='avg'))
        if self.fc1 is not None:
            x = self.fc1(x)
        return x


# depth: (unit, units per stage, channels)
resnet_spec = {
    18: (BasicUnitV2, [2, 2, 2, 2], [64, 64, 128, 256, 512]),
    34: (BasicUnitV2, [3, 4, 6, 3], [64, 64, 128, 256, 512]),
    50: (BottleneckUnitV2, [3, 4, 6, 3], [64, 256, 512, 1024, 2048]),
    101: (BottleneckUnitV2, [3, 4, 23, 3], [64, 256, 512, 1024, 2048]),
    152: (BottleneckUnitV2, [3, 8, 36, 3], [64, 256, 512, 1024, 2048]),
}


def resnet_zoo_name(num_layers):
    """Name of the same network in the Gluon model zoo and GluonCV (their ImageNet files)."""
    return 'resnet%d_v2' % num_layers


def get_resnet(num_layers, **kwargs):
    r"""Pre-activation ResNet of the given depth (``resnet_spec``), MXNet Symbol layout.

    Parameters
    ----------
    num_layers : int
        18, 34, 50, 101 or 152.
    **kwargs
        Passed to :class:`ResNetV2` (``strides``, ``final_bn``, ``pool``, ``classes``,
        ``norm_layer``, ``norm_kwargs``, ``prefix``...).
    """
    if num_layers not in resnet_spec:
        raise ValueError('Invalid ResNet depth %r; options are %s'
                         % (num_layers, sorted(resnet_spec)))
    unit, layers, channels = resnet_spec[num_layers]
    net = ResNetV2(unit, layers, channels, **kwargs)
    net.zoo_name = resnet_zoo_name(num_layers)
    return net


def resnet18_v2(**kwargs):
    """ResNet-18 v2 (see :func:`get_resnet`)."""
    return get_resnet(18, **kwargs)


def resnet34_v2(**kwargs):
    """ResNet-34 v2 (see :func:`get_resnet`)."""
    return get_resnet(34, **kwargs)


def resnet50_v2(**kwargs):
    """ResNet-50 v2 (see :func:`get_resnet`)."""
    return get_resnet(50, **kwargs)


def resnet101_v2(**kwargs):
    """ResNet-101 v2 (see :func:`get_resnet`)."""
    return get_resnet(101, **kwargs)


def resnet152_v2(**kwargs):
    """ResNet-152 v2 (see :func:`get_resnet`)."""
    return get_resnet(152, **kwargs)
