"""Scoring an exported TASN graph with MXNet's Module API (the official code's interface).

The graph is what ``tools/export.py`` (or ``HybridBlock.export``) writes: ``PREFIX-symbol.json``
with the AttSampler operator inside, and ``PREFIX-EPOCH.params`` with ``arg:`` / ``aux:``
entries. The operator library must be loaded before the graph is read; ``load_module`` does it.

Numerics: on CPU, MXNet's default MKLDNN subgraph backend fuses convolution and BatchNorm
when a Module binds, which moves logits by about 1e-4 of their scale relative to the Gluon
model; ``MXNET_SUBGRAPH_BACKEND=NONE`` in the environment gives the Gluon model's numbers.
"""
import os

import mxnet as mx
import numpy as np

from tasn_gluon import ops
from tasn_gluon.errors import InputError

__all__ = ['load_module', 'score']


def load_module(prefix, epoch=0, data_shape=(1, 3, 512, 512), ctx=None, data_name='data'):
    """Binds the exported graph for inference and returns the ``mx.mod.Module``.

    Parameters
    ----------
    prefix : str
        Path prefix of ``PREFIX-symbol.json`` / ``PREFIX-%04d.params``.
    epoch : int
        The number in the parameter file's name.
    data_shape : tuple
        (batch, 3, input_size, input_size) of the batches to score (another batch size later
        re-binds the module).
    ctx : Context, optional
        Default CPU.

    Raises
    ------
    InputError
        When either file is missing, or the graph's free inputs are not exactly ``data_name``.
    """
    for path in ('%s-symbol.json' % prefix, '%s-%04d.params' % (prefix, epoch)):
        if not os.path.isfile(path):
            raise InputError('%s not found (write it with tools/export.py)' % path)
    ops.load()
    symbol, arg_params, aux_params = mx.model.load_checkpoint(prefix, epoch)
    inputs = [name for name in symbol.list_arguments() if name not in arg_params]
    if inputs != [data_name]:
        raise InputError('expected one input named %r in %s-symbol.json, found %s'
                         % (data_name, prefix, inputs))
    module = mx.mod.Module(symbol, data_names=[data_name], label_names=None,
                           context=ctx or mx.cpu())
    module.bind(data_shapes=[(data_name, tuple(data_shape))], for_training=False)
    module.set_params(arg_params, aux_params, allow_missing=False, allow_extra=False)
    return module


def score(module, images):
    """Logits (N, num_classes) for a batch (N, 3, S, S) of mean-subtracted images (NDArray or
    array-like); a batch size other than the bound one re-binds the module."""
    data = images if isinstance(images, mx.nd.NDArray) else mx.nd.array(np.asarray(images))
    module.forward(mx.io.DataBatch([data]), is_train=False)
    return module.get_outputs()[0]
