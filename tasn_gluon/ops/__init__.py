"""The AttSampler operator (TASN spec, section 5): C++ and CUDA kernels (``csrc/``) with two faces.

* The MXNet face (``mxnet_op``): ``load``, ``library_path``, ``att_sampler``,
  ``att_sampler_grid`` and the ``AttSampler`` block, importable as ``tasn_gluon.ops.NAME``.
* The plain C ABI (``c_abi``, ctypes), the CUDA check against the CPU kernels (``cuda_check``)
  and the build rules (``build``), which need no MXNet.
"""
import importlib.util

__all__ = []

# The MXNet face only where MXNet is installed: the C ABI and the CUDA check must import on GPU
# machines without MXNet (MXNet 1.9.1 does not import with NumPy 2, which such machines have).
# A broken MXNet installation still fails loudly here, on import.
if importlib.util.find_spec('mxnet') is not None:
    from .mxnet_op import AttSampler, att_sampler, att_sampler_grid, library_path, load

    __all__ += ['load', 'library_path', 'att_sampler', 'att_sampler_grid', 'AttSampler']
