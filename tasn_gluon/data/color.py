"""Colour augmentation on a whole batch, on the training device, with the record iterator's
own 8-bit arithmetic.

Brightness, contrast, saturation and PCA lighting are a third of the CPU time of the record
pipeline at 512 px (bench/data.py). With ``get_train_iter(..., color_on_device=True)`` the
record iterator leaves them out and the trainer applies ``iterator.device_augment`` to each
batch after moving it to its device.

What MXNet 1.9.1's ImageRecordIter computes (``DefaultImageAugmenter::Process`` in
src/io/image_aug_default.cc, after resize, rotation and crop, before the mirror and the mean
subtraction; checked bit for bit against the iterator in tests/test_data_color.py), on the
decoded 8-bit image in OpenCV's BGR order:

* factors ``alpha_b, alpha_c, alpha_s = 1 + U(-v, v)`` (float32), the order of the three steps
  shuffled per image, each step rounding to 8 bits (OpenCV's saturate_cast: round half to
  even, clamp to 0..255):

  - brightness ``p * alpha_b``;
  - contrast ``p * alpha_c + (1 - alpha_c) * mean(grey)``;
  - saturation ``p * alpha_s + grey * (1 - alpha_s)`` (per pixel);

  where grey is OpenCV's 8-bit RGB2GRAY, called on BGR data, so that B gets RGB2GRAY's red
  weight: ``(4899 B + 9617 G + 1868 R + 8192) >> 14``;
* then PCA lighting: per image an RGB offset ``(eigvec * eigval) @ alpha``,
  ``alpha ~ N(0, pca_noise)``, added as ``int v = p; v += offset`` (the float sum truncated
  toward zero) and clamped to 0..255.

The output of the iterator is float32 ``p - mean``; :meth:`BatchColorJitter.apply` adds the
mean back, rounds to recover the exact 8-bit values, runs the steps above with NDArray ops in
float32 (every intermediate is the same IEEE single-precision operation as in the C++ code,
so the result is the same on CPU and GPU), and subtracts the mean again.
"""
import collections

import numpy as np

from ..errors import ConfigError

# ImageNet RGB covariance eigenvalues / eigenvectors (columns), as published with AlexNet's
# lighting augmentation; the record iterator keeps their products as float32.
EIGVAL = np.array([55.46, 4.794, 1.148], np.float32)
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                   [-0.5808, -0.0045, -0.8140],
                   [-0.5836, -0.6948, 0.4203]], np.float32)
PCA_MATRIX = EIGVEC * EIGVAL[None, :]          # row c: channel c's offset per alpha (float32)

# OpenCV's 8-bit RGB2GRAY: weights 0.299, 0.587, 0.114 in 14-bit fixed point on the channels
# in memory order; applied to BGR data, so in RGB terms R gets 1868 and B gets 4899.
GREY_WEIGHTS_RGB = (1868.0, 9617.0, 4899.0)
GREY_SHIFT = 14

ColorDraws = collections.namedtuple('ColorDraws', 'factors order lighting')
ColorDraws.__doc__ = """Random draws for a batch of n images: ``factors`` (n, 3) float32 per
step (brightness, contrast, saturation), ``order`` (n, 3) int, each row a permutation of
0, 1, 2 (step indices in the order applied), ``lighting`` (n, 3) float32 PCA alphas in the
order r, g, b (zeros: no lighting)."""


def pca_offsets(alphas):
    """(n, 3) float32 RGB offsets from (n, 3) lighting alphas (in the order r, g, b they are
    drawn), summed left to right in float32 as the record iterator does."""
    a = np.asarray(alphas, np.float32)
    m = PCA_MATRIX
    return ((m[:, 0][None] * a[:, 0:1] + m[:, 1][None] * a[:, 1:2])
            + m[:, 2][None] * a[:, 2:3]).astype(np.float32)


def _round_half_even(x):
    """cvRound on float32 values >= 0 (the only ones that matter before clamping): x - floor(x)
    is exact there, so ties are seen exactly."""
    from mxnet import nd
    f = nd.floor(x)
    d = x - f
    odd = f - 2 * nd.floor(f * 0.5)
    return f + (d > 0.5) + (d == 0.5) * odd


class BatchColorJitter(object):
    """Callable: mean-subtracted float32 RGB batch (B, 3, H, W) NDArray -> the batch after the
    record iterator's colour steps, same context and layout.

    Parameters
    ----------
    mean_rgb : sequence of 3 floats
        The mean the iterator subtracted (``pipeline.MEAN_RGB`` in the recipe).
    brightness, contrast, saturation : float
        Factors are 1 + U(-v, v) per image; 0 leaves the step out.
    pca_noise : float
        Std of the lighting alphas; 0 leaves lighting out.
    seed : int
        Seeds the NumPy generator of the draws: the same seed and the same sequence of batch
        sizes give the same draws.
    """

    def __init__(self, mean_rgb, brightness, contrast, saturation, pca_noise, seed=0):
        for name, v in (('brightness', brightness), ('contrast', contrast),
                        ('saturation', saturation), ('pca_noise', pca_noise)):
            if not v >= 0:
                raise ConfigError('%s must be >= 0, got %r' % (name, v))
        if len(mean_rgb) != 3:
            raise ConfigError('mean_rgb needs 3 values (R, G, B), got %r' % (mean_rgb,))
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.saturation, self.pca_noise = float(saturation), float(pca_noise)
        self.mean_rgb = tuple(float(m) for m in mean_rgb)
        self._rng = np.random.RandomState(seed)

    @property
    def amounts(self):
        return (self.brightness, self.contrast, self.saturation)

    def draw(self, n):
        """ColorDraws for ``n`` images from this jitter's generator. As in the iterator, a
        factor is float32(1.0 + float32 U(-v, v)); v = 0 gives exactly 1."""
        u = (self._rng.uniform(-1.0, 1.0, (n, 3)) * np.array(self.amounts)).astype(np.float32)
        factors = (1.0 + u.astype(np.float64)).astype(np.float32)
        order = np.argsort(self._rng.random_sample((n, 3)), axis=1)
        alphas = (self._rng.standard_normal((n, 3)) * self.pca_noise).astype(np.float32)
        return ColorDraws(factors, order, alphas)

    def __call__(self, data):
        return self.apply(data, self.draw(data.shape[0]))

    def apply(self, data, draws):
        """The colour steps on ``data`` with the given ColorDraws (deterministic)."""
        from mxnet import nd
        if data.ndim != 4 or data.shape[1] != 3:
            raise ValueError('expected a (B, 3, H, W) RGB batch, got shape %s' % (data.shape,))
        if data.dtype != np.float32:
            raise ValueError('expected a float32 batch (the iterator\'s output), got %s'
                             % np.dtype(data.dtype).name)
        n = data.shape[0]
        factors = np.asarray(draws.factors, np.float32).reshape(n, 3)
        order = np.asarray(draws.order).reshape(n, 3)
        ctx = data.context

        def per_image(values):
            return nd.array(np.asarray(values, np.float32).reshape(n, 1, 1, 1), ctx=ctx,
                            dtype=np.float32)

        mean = nd.array(self.mean_rgb, ctx=ctx, dtype=np.float32).reshape((1, 3, 1, 1))
        x = nd.clip(_round_half_even(data + mean), 0, 255)
        rows = np.arange(n)
        for slot in range(3):
            step = order[:, slot]
            a = factors[rows, step]
            if np.all(a == 1):           # factor 1 is the identity for every step
                continue
            x_a = nd.broadcast_mul(x, per_image(a))
            uses_grey = step != 0
            if uses_grey.any():
                grey = self._grey(x)
                # contrast: (1 - a) * cv::mean(grey): an exact integer sum in float64, times
                # 1.0 / pixels (as cv::mean does), rounded to float32, times (1 - a) in float32.
                sums = nd.sum(grey.astype('float64'), axis=(1, 2, 3))
                grey_mean = (sums * (1.0 / (grey.shape[2] * grey.shape[3]))).astype('float32')
                one_minus_a = np.float32(1) - a
                beta = nd.array(np.where(step == 1, one_minus_a, 0), ctx=ctx,
                                dtype=np.float32) * grey_mean
                sat = per_image(np.where(step == 2, one_minus_a, 0))
                # saturation images: p * a + grey * (1 - a); contrast: p * a + beta; the other
                # term is exactly 0 for them.
                t = nd.broadcast_add(nd.broadcast_mul(grey, sat), beta.reshape((n, 1, 1, 1)))
                x_a = nd.broadcast_add(x_a, t)
            x = nd.clip(_round_half_even(x_a), 0, 255)
        offsets = pca_offsets(np.asarray(draws.lighting, np.float32).reshape(n, 3))
        if np.any(offsets != 0):
            off = nd.array(offsets.reshape(n, 3, 1, 1), ctx=ctx, dtype=np.float32)
            x = nd.clip(nd.trunc(nd.broadcast_add(x, off)), 0, 255)
        return x - mean

    @staticmethod
    def _grey(x):
        """(B, 1, H, W) OpenCV 8-bit grey of RGB 0..255 integer-valued float32 ``x``; every
        partial sum is an integer below 2 ** 24, so float32 holds it exactly."""
        from mxnet import nd
        w = nd.array(GREY_WEIGHTS_RGB, ctx=x.context, dtype=np.float32).reshape((1, 3, 1, 1))
        s = nd.sum(nd.broadcast_mul(x, w), axis=1, keepdims=True) + (1 << (GREY_SHIFT - 1))
        return nd.floor(s * (1.0 / (1 << GREY_SHIFT)))
