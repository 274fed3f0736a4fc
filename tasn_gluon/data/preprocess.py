"""The validation preprocessing of single images: what :func:`~tasn_gluon.data.get_val_iter`
does to each record, for an image file or an image already decoded.

MXNet 1.9.1's ``ImageRecordIter`` (``src/io/iter_image_recordio_2.cc`` and
``src/io/image_aug_default.cc``) decodes a record with libmxnet's OpenCV (``cv::imdecode``, 3
channels; the pip wheel is built without libjpeg-turbo, so there is no TurboJPEG path), then:

1. resizes the shorter side to ``resize`` in C++ integer arithmetic, ``new_long = resize *
   long / short`` truncated (a square image goes to ``resize`` x ``resize``), with
   ``cv::resize`` and ``inter_method`` (:data:`~tasn_gluon.data.pipeline.RESIZE_INTER_METHOD`,
   bilinear), even when the size does not change;
2. crops ``input_size`` x ``input_size`` at ``((rows - input_size) / 2, (cols - input_size) /
   2)``, integer halves;
3. converts to float32 RGB, ``(pixel - mean) * 1 + 0`` per channel (no std, no contrast or
   illumination change in validation), planar (3, H, W).

:func:`val_preprocess` does the same with MXNet's own image functions (``mx.image.imdecode``,
``mx.image.imresize``, ``mx.image.fixed_crop``, ``mx.image.color_normalize``: the OpenCV inside
libmxnet, not opencv-python's, which is another version and may round differently), with the
iterator's constants (``MEAN_RGB``, ``RESIZE_INTER_METHOD``) taken from ``pipeline``. The output
equals the iterator's bit for bit (tests/test_data_preprocess.py extracts the JPEG bytes of
val.rec and compares).
"""

import mxnet as mx
import numpy as np

from ..errors import ConfigError, InputError
from .images import BadImage, check_jpeg_complete
from .pipeline import MEAN_RGB, RESIZE_INTER_METHOD

__all__ = ['BadImage', 'val_resized_size', 'decode_rgb', 'val_preprocess', 'load_val_image']

def val_resized_size(height, width, resize):
    """``(new_height, new_width)`` of an image of ``height`` x ``width`` whose shorter side the
    record iterator resizes to ``resize``: the longer side is ``resize * long // short``
    (C++ int arithmetic on positive ints: truncation), a square goes to ``resize`` x ``resize``
    (image_aug_default.cc: ``rows > cols`` picks the portrait branch, else the other)."""
    height, width, resize = int(height), int(width), int(resize)
    if height < 1 or width < 1 or resize < 1:
        raise ValueError('image %dx%d and resize %d must be positive' % (height, width, resize))
    if height > width:
        return resize * height // width, resize
    return resize, resize * width // height

def decode_rgb(data):
    """Encoded image bytes -> (H, W, 3) uint8 RGB NDArray, decoded as the record iterator does
    (libmxnet's ``cv::imdecode``, colour). Grey and 4-channel images come out as 3 channels.
    Raises :class:`BadImage` for empty, truncated (JPEG without its end marker: decoders would
    silently fill the rest with grey) or undecodable data."""
    if not data:
        raise BadImage('empty file')
    check_jpeg_complete(data)
    try:
        img = mx.image.imdecode(data, flag=1, to_rgb=1)
        img.wait_to_read()
    except mx.base.MXNetError:
        raise BadImage('not a decodable image')
    if img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        raise BadImage('not a decodable image')
    return img

def val_preprocess(image, input_size, resize=None, mean_rgb=MEAN_RGB):
    """One decoded image -> the (3, input_size, input_size) float32 array that
    ``get_val_iter(data_dir, batch, input_size, resize=resize, mean_rgb=mean_rgb)`` yields for
    it (see the module docstring).

    Parameters
    ----------
    image : NDArray or numpy array (H, W, 3) uint8, RGB
        As :func:`decode_rgb` (or ``mx.image.imdecode``) gives it.
    input_size : int
        Side of the centre crop.
    resize : int or None
        Shorter side before the crop (default ``input_size``, as the val iterator).
    mean_rgb : three numbers
        Subtracted per channel (the recipe's ``MEAN_RGB``).
    """
    input_size = int(input_size)
    resize = input_size if resize is None else int(resize)
    if input_size < 1 or resize < input_size:
        raise ConfigError('need 1 <= input_size <= resize, got input_size %r, resize %r'
                          % (input_size, resize))
    if not isinstance(image, mx.nd.NDArray):
        image = mx.nd.array(np.asarray(image), dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError('val_preprocess takes a decoded (H, W, 3) uint8 RGB image, got %s %s'
                         % (image.shape, np.dtype(image.dtype).name))
    height, width = image.shape[:2]
    new_h, new_w = val_resized_size(height, width, resize)
    resized = mx.image.imresize(image, new_w, new_h, interp=RESIZE_INTER_METHOD)
    y0, x0 = (new_h - input_size) // 2, (new_w - input_size) // 2
    crop = mx.image.fixed_crop(resized, x0, y0, input_size, input_size)
    out = mx.image.color_normalize(crop.astype(np.float32),
                                   mx.nd.array(mean_rgb, dtype=np.float32))
    return out.transpose((2, 0, 1)).asnumpy()

def load_val_image(path, input_size, resize=None, mean_rgb=MEAN_RGB):
    """An image file -> :func:`val_preprocess` of it. Raises :class:`BadImage` whose message is
    the reason (missing, unreadable, a folder, empty, truncated, not an image)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except IsADirectoryError:
        raise BadImage('a folder, not an image file')
    except OSError as e:
        raise BadImage('cannot read: %s' % (e.strerror or e))
    return val_preprocess(decode_rgb(data), input_size, resize, mean_rgb)
