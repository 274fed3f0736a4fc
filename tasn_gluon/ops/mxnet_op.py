"""The AttSampler operator's MXNet face: the C++ (and CUDA) extension library and its Python
functions, ``tasn_gluon.ops.load`` etc. (imported on first use).

``load()`` registers the operators ``AttSampler`` and ``AttSamplerGrid`` with MXNet (once per
process); ``att_sampler`` and ``att_sampler_grid`` call them on NDArrays or Symbols, so they can
be used with ``F`` inside ``hybrid_forward``.
"""
import os
import threading

import mxnet as mx

from ..errors import SetupError

__all__ = ['load', 'library_path', 'att_sampler', 'att_sampler_grid', 'AttSampler']

_LIB_NAME = 'libtasn_ops.so'
_lock = threading.Lock()
_loaded_path = None


def library_path():
    """Absolute path of the extension library inside the installed package."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), _LIB_NAME)


def load():
    """Loads the operator library into MXNet once per process and returns its absolute path.

    Raises
    ------
    SetupError
        When the library has not been built, with the command that builds it.
    """
    global _loaded_path
    with _lock:
        if _loaded_path is None:
            path = library_path()
            if not os.path.isfile(path):
                raise SetupError(
                    'The AttSampler operator library %s has not been built. Build it with '
                    '`make setup` (or `pip install --no-build-isolation -e .` in an environment '
                    'that already has mxnet) from the repository root.' % path)
            mx.library.load(path, verbose=False)
            _loaded_path = path
    return _loaded_path


def _namespace(x):
    load()
    return mx.sym if isinstance(x, mx.sym.Symbol) else mx.nd


def att_sampler(data, att_y, att_x, scale, dense=4.0, iters=5, legacy=False):
    """Attention-based sampling (TASN, spec section 5): resamples ``data`` so that rows and
    columns with more attention get more output pixels.

    Parameters
    ----------
    data : NDArray or Symbol, (N, C, H, W), float32 or float64
    att_y : NDArray or Symbol, (N, Ly) or (N, Ly, 1)
        Row profile: attention per row bin, drives the y coordinates. Ly >= 2.
    att_x : NDArray or Symbol, (N, Lx) or (N, Lx, 1)
        Column profile: attention per column bin, drives the x coordinates. Lx >= 2.
    scale : float
        Output size is (int(H * scale), int(W * scale)); > 0.
    dense : float
        Largest magnification of a bin relative to uniform sampling (>= 1).
    iters : int
        Rounds of clip-and-give-back (>= 0).
    legacy : bool
        The official code's arithmetic (first bin's mass replaced by 1, align-corners mapping,
        zero padding) instead of the clean inverse CDF (half-pixel centres, edge clamping).
        As in the official kernel, the images of one call are one batch: image 0's first
        output row and column sample at marginal position -1 (black), those of image b >= 1
        just inside the image, at -1 / (1 - C_{b-1}[L-1]) with C_{b-1} image b-1's cumulative
        table (spec, section 5).

    Profiles are sanitised, not rejected: negative and non-finite entries count as 0, and an
    all-zero profile means uniform sampling. No gradient flows to the profiles; the gradient
    to ``data`` is the transpose of the bilinear interpolation.

    Returns
    -------
    NDArray or Symbol of shape (N, C, int(H * scale), int(W * scale)), the dtype of ``data``.
    """
    F = _namespace(data)
    return F.AttSampler(data, att_y, att_x, scale=float(scale), dense=float(dense),
                        iters=int(iters), legacy=bool(legacy))


def att_sampler_grid(att_y, att_x, in_h, in_w, scale, dense=4.0, iters=5, legacy=False):
    """The sampling coordinates that ``att_sampler`` uses, as input-pixel coordinates.

    Returns ``(ys, xs)`` of shapes (N, int(in_h * scale)) and (N, int(in_w * scale)): the row
    coordinate of every output row and the column coordinate of every output column (legacy:
    after the align-corners mapping of the official grid; coordinates may lie outside the
    image, where sampling clamps (clean) or reads zeros (legacy)). Same arguments as
    ``att_sampler``.
    """
    F = _namespace(att_y)
    out = F.AttSamplerGrid(att_y, att_x, in_h=int(in_h), in_w=int(in_w), scale=float(scale),
                           dense=float(dense), iters=int(iters), legacy=bool(legacy))
    return out[0], out[1]


class AttSampler(mx.gluon.HybridBlock):
    """``att_sampler`` as a block: ``AttSampler(scale)(data, att_y, att_x)``."""

    def __init__(self, scale, dense=4.0, iters=5, legacy=False, **kwargs):
        super().__init__(**kwargs)
        load()
        self._attrs = dict(scale=float(scale), dense=float(dense), iters=int(iters),
                           legacy=bool(legacy))

    def hybrid_forward(self, F, data, att_y, att_x):
        return F.AttSampler(data, att_y, att_x, **self._attrs)
