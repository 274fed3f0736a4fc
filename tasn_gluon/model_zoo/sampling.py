"""What TASN and its predictor share: their sizes, the check of the input, and the sampling
step (the AttSampler operator, TASN spec section 5)."""
import mxnet as mx
import numpy as np

from .. import ops
from ..attention import amp_float32
from ..errors import ConfigError, InputError

__all__ = ['sampler_scale', 'check_input', 'SamplerMixin']


def sampler_scale(input_size, sample_size):
    """``scale`` such that int(input_size * scale) == sample_size in double and in float32
    arithmetic despite rounding (e.g. 224 / 500)."""
    scale = np.float32(float(sample_size) / float(input_size))
    while int(input_size * float(scale)) < sample_size or \
            int(np.float32(input_size) * scale) < sample_size:
        scale = np.nextafter(scale, np.float32(2.0))
    return float(scale)


def check_input(x, size, who):
    """InputError unless ``x`` (an NDArray) is a batch of (3, size, size) images."""
    if isinstance(x, mx.nd.NDArray) and (x.ndim != 4 or x.shape[1] != 3 or
                                         x.shape[2] != size or x.shape[3] != size):
        raise InputError('%s expects images of shape (N, 3, %d, %d), got %s'
                         % (who, size, size, x.shape))


class SamplerMixin:
    """Sizes and the sampling step shared by TASN and TASNPredictor."""

    def _set_sizes(self, input_size, att_size, sample_size, dense, iters, legacy_sampler,
                   uniform_sampler):
        for name, v in (('input_size', input_size), ('att_size', att_size),
                        ('sample_size', sample_size)):
            if int(v) <= 0:
                raise ConfigError('%s must be positive, got %r' % (name, v))
        self.input_size, self.att_size = int(input_size), int(att_size)
        self.sample_size = int(sample_size)
        self.legacy_sampler, self.uniform_sampler = bool(legacy_sampler), bool(uniform_sampler)
        self._sampler_attrs = dict(scale=sampler_scale(input_size, sample_size),
                                   dense=float(dense), iters=int(iters),
                                   legacy=self.legacy_sampler)

    def _sample(self, F, x, att_y, att_x):
        # no gradient to the profiles (operator); to the image, the transpose of the sampling
        # float32 in (and out) under AMP: its lists do not know the extension operator, whose
        # kernels are float32/float64 only; the backbone's first convolution casts again
        x, att_y, att_x = (amp_float32(F, v) for v in (x, att_y, att_x))
        if self.uniform_sampler:  # ablation: plain resizes, the sampler's contribution removed
            att_y, att_x = F.ones_like(att_y), F.ones_like(att_x)
        return ops.att_sampler(x, att_y, att_x, **self._sampler_attrs)
