"""The AttSampler operator (TASN spec, section 5): C++ and CUDA kernels (``csrc/``) with two faces.

* The MXNet face (``mxnet_op``): ``load``, ``library_path``, ``att_sampler``,
  ``att_sampler_grid`` and the ``AttSampler`` block, as ``tasn_gluon.ops.NAME``.
* The plain C ABI (``c_abi``, ctypes) and the build rules (``build``), which need no MXNet.

The MXNet face is imported on first use of one of its names, so that the C ABI and the build
rules import where MXNet does not (a GPU machine with NumPy 2; ``setup.py`` before MXNet's
first import).
"""
__all__ = ['load', 'library_path', 'att_sampler', 'att_sampler_grid', 'AttSampler']


def __getattr__(name):
    if name in __all__:
        from . import mxnet_op
        return getattr(mxnet_op, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
