"""Colour augmentation on a whole batch, for running on the training device.

Brightness, contrast, saturation and PCA lighting are a third of the CPU time of the record
pipeline at 512 px (bench/data.py). With ``get_train_iter(..., color_on_device=True)`` the
record iterator leaves them out and the trainer applies ``iterator.device_augment`` to each
batch after moving it to the GPU, where they cost next to nothing. The arithmetic is the one of
MXNet's record iterator: per image, factors 1 + U(-v, v), applied in the order brightness,
contrast, saturation on 0..255 RGB values clipped after each step, then AlexNet-style PCA
lighting noise with std ``pca_noise`` on ImageNet's eigenvalues.
"""
import numpy as np

# ImageNet RGB covariance eigenvalues / eigenvectors (columns), as published with AlexNet's
# lighting augmentation and used by MXNet and GluonCV.
EIGVAL = np.array([55.46, 4.794, 1.148], np.float32)
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                   [-0.5808, -0.0045, -0.8140],
                   [-0.5836, -0.6948, 0.4203]], np.float32)
LUMA = (0.299, 0.587, 0.114)                       # grey = ITU-R 601 luma of RGB


class BatchColorJitter(object):
    """Callable: mean-subtracted float RGB batch (B, 3, H, W) NDArray -> augmented batch, same
    context and layout. Random factors come from a NumPy generator seeded with ``seed``."""

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4, pca_noise=0.1,
                 mean_rgb=(123.68, 116.779, 103.939), seed=0):
        for name, v in (('brightness', brightness), ('contrast', contrast),
                        ('saturation', saturation), ('pca_noise', pca_noise)):
            if v < 0:
                raise ValueError('%s must be >= 0, got %r' % (name, v))
        self.brightness, self.contrast = brightness, contrast
        self.saturation, self.pca_noise = saturation, pca_noise
        self.mean_rgb = tuple(float(m) for m in mean_rgb)
        self._rng = np.random.RandomState(seed)

    def _factors(self, amount, n):
        return (1.0 + self._rng.uniform(-amount, amount, n)).astype(np.float32)

    def __call__(self, data):
        from mxnet import nd
        n, ctx = data.shape[0], data.context
        mean = nd.array(self.mean_rgb, ctx=ctx).reshape((1, 3, 1, 1))
        luma = nd.array(LUMA, ctx=ctx).reshape((1, 3, 1, 1))

        def per_image(values):
            return nd.array(values, ctx=ctx).reshape((n, 1, 1, 1))

        x = data + mean
        if self.brightness > 0:
            x = nd.clip(x * per_image(self._factors(self.brightness, n)), 0, 255)
        if self.contrast > 0:
            a = per_image(self._factors(self.contrast, n))
            grey = nd.sum(x * luma, axis=1, keepdims=True).mean(axis=(2, 3), keepdims=True)
            x = nd.clip(x * a + grey * (1 - a), 0, 255)
        if self.saturation > 0:
            a = per_image(self._factors(self.saturation, n))
            grey = nd.sum(x * luma, axis=1, keepdims=True)
            x = nd.clip(nd.broadcast_add(x * a, grey * (1 - a)), 0, 255)
        if self.pca_noise > 0:
            alpha = self._rng.normal(0, self.pca_noise, (n, 3)).astype(np.float32)
            offsets = (alpha * EIGVAL) @ EIGVEC.T                      # (n, 3) RGB
            x = nd.clip(x + nd.array(offsets, ctx=ctx).reshape((n, 3, 1, 1)), 0, 255)
        return x - mean
