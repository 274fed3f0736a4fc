"""VGG networks with global average pooling, the second backbone setting of TASN.

References
----------
K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015.
H. Zheng et al., "Looking for the Devil in the Details: Learning Trilinear Attention Sampling
Network for Fine-grained Image Recognition", CVPR 2019 (VGG-19 setting).

TASN replaces VGG's fully connected layers fc6/fc7 by global average pooling over the last conv
stage (after ``relu5_4``, before ``pool5``), followed by the task's classifier(s). Parameters are
named as MXNet's VGG symbols name them: ``conv1_1_weight`` ... ``conv5_4_bias``.
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

__all__ = ['VGG', 'vgg_spec', 'get_vgg', 'vgg16', 'vgg19', 'vgg_zoo_name']


class VGG(HybridBlock):
    r"""VGG convolutional body with global average pooling (no fc6/fc7).

    Parameters
    ----------
    layers : sequence of int
        Convs per stage.
    filters : sequence of int
        Channels per stage.
    pool : bool
        Global-average-pool the last stage (after its ReLU; ``pool5`` is not applied) and flatten.
    classes : int or None
        Add a classifier ``fc1`` on the pooled features.

    Outputs: (N, 512, H/16, W/16) when not pooled, (N, 512) pooled features, or (N, classes).
    """

    def __init__(self, layers, filters, pool=True, classes=None, **kwargs):
        super().__init__(**kwargs)
        if len(layers) != len(filters):
            raise ValueError('layers %s and filters %s do not match' % (layers, filters))
        if classes is not None and not pool:
            raise ValueError('a classifier needs pool=True')
        self.out_channels = filters[-1]
        self.pool = pool
        self.zoo_name = None  # Gluon model-zoo name of the same network, set by get_vgg
        with self.name_scope():
            self.features = nn.HybridSequential(prefix='')
            in_channels = 3
            with self.features.name_scope():
                for s, (num, channels) in enumerate(zip(layers, filters)):
                    for c in range(num):
                        self.features.add(nn.Conv2D(channels, 3, padding=1, activation='relu',
                                                    in_channels=in_channels,
                                                    prefix='conv%d_%d_' % (s + 1, c + 1)))
                        in_channels = channels
                    if s + 1 < len(layers):  # pool5 is replaced by global average pooling
                        self.features.add(nn.MaxPool2D(2, 2))
            self.fc1 = nn.Dense(classes, in_units=in_channels, prefix='fc1_') \
                if classes is not None else None

    def hybrid_forward(self, F, x):
        x = self.features(x)
        if self.pool:
            x = F.flatten(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type='avg'))
        if self.fc1 is not None:
            x = self.fc1(x)
        return x


# depth: (convs per stage, channels per stage)
vgg_spec = {
    16: ([2, 2, 3, 3, 3], [64, 128, 256, 512, 512]),
    19: ([2, 2, 4, 4, 4], [64, 128, 256, 512, 512]),
}


def vgg_zoo_name(num_layers):
    """Name of the same network in the Gluon model zoo and GluonCV (their ImageNet files)."""
    return 'vgg%d' % num_layers


def get_vgg(num_layers, **kwargs):
    r"""VGG of the given depth (``vgg_spec``) with global average pooling.

    Parameters
    ----------
    num_layers : int
        16 or 19.
    **kwargs
        Passed to :class:`VGG` (``pool``, ``classes``, ``prefix``).
    """
    if num_layers not in vgg_spec:
        raise ValueError('Invalid VGG depth %r; options are %s' % (num_layers, sorted(vgg_spec)))
    layers, filters = vgg_spec[num_layers]
    net = VGG(layers, filters, **kwargs)
    net.zoo_name = vgg_zoo_name(num_layers)
    return net


def vgg16(**kwargs):
    """VGG-16 with global average pooling (see :func:`get_vgg`)."""
    return get_vgg(16, **kwargs)


def vgg19(**kwargs):
    """VGG-19 with global average pooling (see :func:`get_vgg`)."""
    return get_vgg(19, **kwargs)
