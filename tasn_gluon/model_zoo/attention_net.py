"""The TASN attention net: a stride-8 ResNet-18 with a shared-weight multi-dilation head.

Reference: H. Zheng et al., "Looking for the Devil in the Details: Learning Trilinear Attention
Sampling Network for Fine-grained Image Recognition", CVPR 2019 (TASN spec section 2).

Layout and names (inside TASN the whole block has the prefix ``att_``, as the official graph):

* ResNet-18 v2 body with stage strides (1, 1, 2, 1) and no final BN: ``bn_data``, ``conv0``,
  ``bn0``, ``stage{1..4}_unit{1,2}_*`` -> (N, 512, 28, 28) for a 224 input;
* ``conv1``: ``a1 = relu(conv_d1(x)) + relu(conv_d2(x))``, ONE 3x3 weight + bias shared by
  dilations 1 and 2; ``conv2``: the same over ``a1`` with dilations 1, 2, 3. ``X = a2`` (>= 0)
  is the feature map the trilinear attention reads;
* classifier head on X: ``bn1``, ReLU, global average pooling, ``fc1``.
"""
import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .resnet import get_resnet, BN_EPS, BN_MOMENTUM

__all__ = ['MultiDilationConv', 'AttentionNet', 'get_attention_net']


class MultiDilationConv(HybridBlock):
    r"""Sum of ReLU'd 3x3 convolutions at several dilations that share one weight and bias.

    Parameters
    ----------
    channels : int
        Output channels.
    in_channels : int
        Input channels.
    dilations : sequence of int
        Dilation (= padding) of each branch, e.g. (1, 2) or (1, 2, 3).

    Parameters of the block: ``weight`` (channels, in_channels, 3, 3) and ``bias`` (channels,),
    each a single parameter used by every branch.
    """

    def __init__(self, channels, in_channels, dilations, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.dilations = tuple(int(d) for d in dilations)
        with self.name_scope():
            # the official graph initialises these two weights with MSRAPrelu
            self.weight = self.params.get('weight', shape=(channels, in_channels, 3, 3),
                                          init=mx.init.MSRAPrelu())
            self.bias = self.params.get('bias', shape=(channels,), init='zeros')

    def hybrid_forward(self, F, x, weight, bias):
        branches = [F.Activation(F.Convolution(x, weight, bias, kernel=(3, 3), pad=(d, d),
                                               dilate=(d, d), num_filter=self.channels),
                                 act_type='relu')
                    for d in self.dilations]
        return F.add_n(*branches)


class AttentionNet(HybridBlock):
    r"""TASN attention net: (N, 3, S, S) image -> (logits (N, classes), X (N, 512, S/8, S/8)).

    Parameters
    ----------
    classes : int
        Classes of the attention net's own classifier (trained with its own cross-entropy).
    depth : int
        ResNet depth of the body (18 in TASN).
    strides : sequence of int
        Stage strides; (1, 1, 2, 1) gives total stride 8.
    norm_layer, norm_kwargs
        BatchNorm class and extra arguments.
    """

    def __init__(self, classes, depth=18, strides=(1, 1, 2, 1), norm_layer=nn.BatchNorm,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            # prefix '' keeps the body's names flat: att_stage1_unit1_conv1_weight
            self.body = get_resnet(depth, strides=strides, final_bn=False, pool=False,
                                   norm_layer=norm_layer, norm_kwargs=norm_kwargs, prefix='')
            c = self.body.out_channels
            self.channels = c
            self.conv1 = MultiDilationConv(c, c, (1, 2), prefix='conv1_')
            self.conv2 = MultiDilationConv(c, c, (1, 2, 3), prefix='conv2_')
            bn_kwargs = dict(epsilon=BN_EPS, momentum=BN_MOMENTUM)
            bn_kwargs.update(norm_kwargs or {})
            self.bn1 = norm_layer(in_channels=c, prefix='bn1_', **bn_kwargs)
            self.fc1 = nn.Dense(classes, in_units=c, prefix='fc1_')

    def hybrid_forward(self, F, x):
        feats = self.conv2(self.conv1(self.body(x)))
        out = F.Activation(self.bn1(feats), act_type='relu')
        out = F.flatten(F.Pooling(out, kernel=(1, 1), global_pool=True, pool_type='avg'))
        return self.fc1(out), feats


def get_attention_net(classes=200, **kwargs):
    """TASN attention net (see :class:`AttentionNet`); ``kwargs`` go to the class."""
    return AttentionNet(classes, **kwargs)
