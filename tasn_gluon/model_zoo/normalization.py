"""The input normalisation of ImageNet networks from the Gluon model zoo and GluonCV, in terms of
TASN's input.

TASN feeds ``x = r - MEAN_RGB`` (``r`` the RGB image on the 0..255 scale; spec section 7), while
the networks of MXNet's Gluon model zoo and of GluonCV were trained on
``g = (r / 255 - GLUON_MEAN) / GLUON_STD``. Both are affine in ``r``, so per channel
``g = a * x + b`` with ``a = 1 / (255 std)`` and ``b = (MEAN_RGB - 255 mean) / (255 std)``
(:func:`gluon_input_affine`). The loaders either fold this into a network's first layer
(``pretrained``: our ResNets and VGG) or put it in front of the network as a fixed operation
(``gluoncv_backbones``).
"""
import numpy as np

from ..data.pipeline import MEAN_RGB

__all__ = ['MEAN_RGB', 'GLUON_MEAN', 'GLUON_STD', 'gluon_input_affine']

GLUON_MEAN = (0.485, 0.456, 0.406)      # Gluon model zoo's and GluonCV's input normalisation
GLUON_STD = (0.229, 0.224, 0.225)


def gluon_input_affine():
    """``(a, b)``, two float64 arrays of 3 (RGB): GluonCV's input ``g = a * x + b`` per channel
    for TASN's input ``x`` (see the module docstring)."""
    s = 255.0 * np.asarray(GLUON_STD, dtype=np.float64)
    return 1.0 / s, (np.asarray(MEAN_RGB, dtype=np.float64)
                     - 255.0 * np.asarray(GLUON_MEAN, dtype=np.float64)) / s
