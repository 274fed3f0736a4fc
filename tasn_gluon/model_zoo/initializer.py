"""The official recipe's initialisation of new layers (TASN spec section 7)."""
import mxnet as mx
from mxnet import initializer

__all__ = ['default_initializer', 'initialize']


def default_initializer():
    """Xavier(gaussian, in, 2); BatchNorm gamma 1, beta 0."""
    return initializer.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)


def initialize(net, ctx=None):
    """Initialises every parameter of ``net`` with :func:`default_initializer` on ``ctx``
    (default CPU)."""
    net.collect_params().initialize(default_initializer(), ctx=ctx or mx.cpu())
    return net
